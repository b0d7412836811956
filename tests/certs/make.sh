#!/bin/sh
# Test certificates for the tls+tcp transport tests, generated once and committed:
# a CA with a server and a client it signed, and a rogue CA with a client of its own.
#
# Keys are EC P-256 (mbedTLS 2.28, which nng uses here, verifies them); leaves name
# localhost and 127.0.0.1 in their subjectAltName; everything is valid for 100 years.
# The CA keys are deleted after signing: to add a certificate, run this script again.
set -eu
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ca() { # ca NAME CN
    newkey "$tmp/$1.key"
    openssl req -new -x509 -key "$tmp/$1.key" -out "$1.pem" -days "$days" -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
}

leaf() { # leaf NAME CN CA USAGE
    newkey "$1.key"
    openssl req -new -key "$1.key" -out "$tmp/$1.csr" -subj "/CN=$2"
    cat >"$tmp/$1.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = $4
subjectAltName = DNS:localhost, IP:127.0.0.1
EXT
    openssl x509 -req -in "$tmp/$1.csr" -CA "$3.pem" -CAkey "$tmp/$3.key" -CAcreateserial \
        -CAserial "$tmp/$3.srl" -out "$1.pem" -days "$days" -extfile "$tmp/$1.ext"
}

ca ca "tern test CA"
ca rogue-ca "tern rogue CA"
leaf server localhost ca serverAuth
leaf client tern-client ca clientAuth
leaf rogue-client tern-client rogue-ca clientAuth
chmod 644 ./*.pem ./*.key

/* Signed control requests over tls+tcp. nng 1.5.2 verifies a client's certificate in the
 * TLS handshake but does not tell the server which certificate it was (1.6 has
 * NNG_OPT_TLS_PEER_CN). So a client also sends its certificate in the request, with a
 * signature by its key over the request's encoding and the time: the server checks the
 * certificate against the CA and the signature with the certificate's key, and names the
 * sender by the certificate's CN. The request travels inside TLS, so nobody on the path
 * sees it to replay it; the time bounds what a copy would be worth anyway. */
#include <errno.h>
#include <mbedtls/md.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "ctl.h"

#define CERT_MAX (64u << 10)
#define SKEW_MS  (5 * 60 * 1000)

static int rng(void *ctx, unsigned char *buf, size_t len)
{
    (void)ctx;
    return getrandom(buf, len, 0) == (ssize_t)len ? 0 : -1;
}

/* SHA-256 of r's encoding without its signature. */
static tn_err digest(const tn_ctl_req *r, unsigned char out[32])
{
    tn_ctl_req c = *r;
    c.sig = (tn_str){"", 0};
    tn_buf b = {0};
    tn_err e = tn_ctl_req_encode(&c, &b);
    if (!e && mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                         (const unsigned char *)b.data, b.size, out) != 0)
        e = TN_ERR_INTERNAL;
    tn_buf_free(&b);
    return e;
}

tn_err tn_ctl_sign(tn_ctl_req *r, const char *cert_file, const char *key_file, char **keep,
                   tn_errmsg *msg)
{
    FILE *f = fopen(cert_file, "re");
    if (!f)
        return tn_errmsg_set(msg, TN_ERR_NOENT, "%s: cannot read the certificate: %s",
                             cert_file, strerror(errno));
    char *buf = malloc(CERT_MAX + MBEDTLS_PK_SIGNATURE_MAX_SIZE);
    size_t n = buf ? fread(buf, 1, CERT_MAX, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n >= CERT_MAX) {
        free(buf);
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s: empty or larger than %u bytes", cert_file,
                             CERT_MAX);
    }
    mbedtls_pk_context pk;
    mbedtls_pk_init(&pk);
    unsigned char h[32];
    size_t slen = 0;
    unsigned char *sig = (unsigned char *)buf + CERT_MAX;
    r->cert = (tn_str){buf, (uint32_t)n};
    r->sig = (tn_str){"", 0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->ts = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    tn_err e = TN_OK;
    int rv = mbedtls_pk_parse_keyfile(&pk, key_file, NULL);
    if (rv != 0)
        e = tn_errmsg_set(msg, TN_ERR_INVAL,
                          "%s: not a private key (PEM, unencrypted): -0x%04x", key_file,
                          (unsigned)-rv);
    else if ((e = digest(r, h)) != TN_OK)
        tn_errmsg_set(msg, e, "cannot encode the request");
    else if ((rv = mbedtls_pk_sign(&pk, MBEDTLS_MD_SHA256, h, sizeof(h), sig, &slen, rng,
                                   NULL)) != 0)
        e = tn_errmsg_set(msg, TN_ERR_INVAL, "%s: cannot sign with this key: -0x%04x", key_file,
                          (unsigned)-rv);
    mbedtls_pk_free(&pk);
    if (e) {
        free(buf);
        r->cert = (tn_str){"", 0};
        r->ts = 0;
        return e;
    }
    r->sig = (tn_str){(const char *)sig, (uint32_t)slen};
    *keep = buf;
    return TN_OK;
}

/* The value of attribute oid in the subject, escaped, into out ("" when absent). */
static void subject_attr(const mbedtls_x509_crt *c, const char *oid, size_t oidlen, char *out,
                         size_t cap)
{
    out[0] = '\0';
    for (const mbedtls_x509_name *n = &c->subject; n; n = n->next)
        if (n->oid.p && n->oid.len == oidlen && memcmp(n->oid.p, oid, oidlen) == 0)
            tn_ctl_escape((const char *)n->val.p, n->val.len, out, cap);
}

/* The certificate of r: parsed, chained to the CA, usable for client authentication. */
static tn_err check_cert(const tn_ctl_req *r, const char *ca_file, mbedtls_x509_crt *crt,
                         tn_errmsg *msg)
{
    mbedtls_x509_crt ca;
    mbedtls_x509_crt_init(&ca);
    uint32_t flags = 0;
    tn_err e = TN_OK;
    /* PEM parsing wants the terminating NUL inside the length */
    char *pem = r->cert.len < CERT_MAX ? malloc(r->cert.len + 1) : NULL;
    if (pem) {
        memcpy(pem, r->cert.p, r->cert.len);
        pem[r->cert.len] = '\0';
    }
    if (!pem || mbedtls_x509_crt_parse(crt, (const unsigned char *)pem, r->cert.len + 1) != 0)
        e = tn_errmsg_set(msg, TN_ERR_PERM, "the certificate sent is not one (PEM)");
    else if (!ca_file || mbedtls_x509_crt_parse_file(&ca, ca_file) != 0)
        e = tn_errmsg_set(msg, TN_ERR_PERM,
                          "the master has no CA to check certificates "
                          "against (--tls-ca)");
    else if (mbedtls_x509_crt_verify(crt, &ca, NULL, NULL, &flags, NULL, NULL) != 0)
        e = tn_errmsg_set(msg, TN_ERR_PERM,
                          "the certificate sent is not signed by the master's CA, or has "
                          "expired (flags 0x%x)",
                          (unsigned)flags);
    else if (mbedtls_x509_crt_check_extended_key_usage(
                 crt, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)) != 0)
        e = tn_errmsg_set(msg, TN_ERR_PERM,
                          "the certificate sent is not for clients "
                          "(extendedKeyUsage lacks clientAuth)");
    free(pem);
    mbedtls_x509_crt_free(&ca);
    return e;
}

tn_err tn_ctl_verify(const tn_ctl_req *r, const char *ca_file, int64_t now_ms, char *cn,
                     size_t cnlen, char *ou, size_t oulen, tn_errmsg *msg)
{
    if (!r->cert.len || !r->sig.len)
        return tn_errmsg_set(msg, TN_ERR_PERM, "no certificate and signature in the request");
    if (r->ts < now_ms - SKEW_MS || r->ts > now_ms + SKEW_MS)
        return tn_errmsg_set(msg, TN_ERR_PERM,
                             "the request's time is more than 5 minutes from the master's "
                             "(check both clocks)");
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    unsigned char h[32];
    tn_err e = check_cert(r, ca_file, &crt, msg);
    if (!e && digest(r, h) != TN_OK)
        e = tn_errmsg_set(msg, TN_ERR_PERM, "cannot encode the request");
    if (!e && mbedtls_pk_verify(&crt.pk, MBEDTLS_MD_SHA256, h, sizeof(h),
                                (const unsigned char *)r->sig.p, r->sig.len) != 0)
        e = tn_errmsg_set(msg, TN_ERR_PERM, "the signature is not the certificate's key's");
    if (!e) {
        subject_attr(&crt, MBEDTLS_OID_AT_CN, MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN), cn, cnlen);
        subject_attr(&crt, MBEDTLS_OID_AT_ORG_UNIT, MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_ORG_UNIT),
                     ou, oulen);
        if (!cn[0])
            e = tn_errmsg_set(msg, TN_ERR_PERM, "the certificate has no CN to name its holder");
    }
    mbedtls_x509_crt_free(&crt);
    return e;
}

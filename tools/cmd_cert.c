/* tern cert: a small PKI for tls+tcp, with mbedTLS (which nng's TLS links already).
 *   tern cert init  --dir D                              a CA: D/ca.pem, D/ca.key
 *   tern cert issue --dir D --role R --name N [--out O]  O/N.pem, O/N.key signed by D's CA
 * Keys are EC P-256, written 0600; certificates say CN=name, OU=role (master, worker,
 * client): the master knows a worker by its CN, a worker takes work only from OU=master. */
#include <errno.h>
#include <fcntl.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stddef.h>

#include "cli.h"
#include "opt.h"

#define PEM_BUF    8192
#define YEARS_CA   20
#define YEARS_LEAF 5

typedef struct cert_opts {
    const char *dir, *role, *name, *out;
} cert_opts;

static const tn_opt cert_table[] = {
    {"dir", 0, TN_OPT_STR, offsetof(cert_opts, dir), "D",
     .help = "the CA's folder (ca.pem, ca.key)", TN_OPT_REQ},
    {"role", 0, TN_OPT_STR, offsetof(cert_opts, role), "ROLE",
     .help = "issue: master, worker or client (the certificate's OU)"},
    {"name", 0, TN_OPT_STR, offsetof(cert_opts, name), "N",
     .help = "issue: the certificate's CN (a worker's name, a user)"},
    {"out", 0, TN_OPT_STR, offsetof(cert_opts, out), "O",
     .help = "issue: where N.pem and N.key go (default D)"},
    {0}};

const tn_opt_cmd tn_spec_cert = {
    "cert", (const char *const[]){"init", "issue", NULL},
    "init makes a certificate authority in D (ca.pem, and ca.key, mode 0600: keep it off\n"
    "the daemons' hosts). issue makes N.pem and N.key (0600) in O (default D), signed by\n"
    "D's CA, with subject CN=N, OU=ROLE. Give every daemon ca.pem (--tls-ca), its own\n"
    "certificate (--tls-cert) and key (--tls-key). A worker's name is its certificate's\n"
    "CN; a worker takes DISPATCH and KILL only from a certificate with OU=master.\n",
    cert_table, .max_args = 1};

typedef struct cert_rng {
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
} cert_rng;

static int write_file(const char *path, const char *data, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return tn_cli_fail("cert", "%s: cannot create: %s%s", path, strerror(errno),
                           errno == EEXIST ? " (remove it first to replace it)" : "");
    size_t n = strlen(data);
    bool ok = write(fd, data, n) == (ssize_t)n && fchmod(fd, mode) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(path);
        return tn_cli_fail("cert", "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}

static int mbed_fail(const char *what, int rv)
{
    return tn_cli_fail("cert", "%s: mbedTLS error -0x%04x", what, (unsigned)-rv);
}

static int new_key(cert_rng *r, mbedtls_pk_context *key)
{
    int rv = mbedtls_pk_setup(key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (!rv)
        rv = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key),
                                 mbedtls_ctr_drbg_random, &r->drbg);
    return rv ? mbed_fail("key generation", rv) : 0;
}

static void validity(char *from, char *to, int years)
{
    time_t now = time(NULL) - 3600; /* an hour of clock skew between hosts */
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(from, 16, "%Y%m%d%H%M%S", &tm);
    tm.tm_year += years;
    strftime(to, 16, "%Y%m%d%H%M%S", &tm);
}

/* Write a certificate for subject with key `key`, signed by issuer_key as issuer_name. */
static int write_cert(cert_rng *r, const char *path, const char *subject, const char *issuer,
                      mbedtls_pk_context *key, mbedtls_pk_context *issuer_key, bool ca)
{
    mbedtls_x509write_cert w;
    mbedtls_x509write_crt_init(&w);
    unsigned char serial[16], pem[PEM_BUF];
    mbedtls_ctr_drbg_random(&r->drbg, serial, sizeof(serial));
    serial[0] &= 0x7f; /* positive */
    char from[16], to[16];
    validity(from, to, ca ? YEARS_CA : YEARS_LEAF);
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, key);
    mbedtls_x509write_crt_set_issuer_key(&w, issuer_key);
    mbedtls_mpi sn;
    mbedtls_mpi_init(&sn);
    int rv = mbedtls_mpi_read_binary(&sn, serial, sizeof(serial));
    if (!rv)
        rv = mbedtls_x509write_crt_set_serial(&w, &sn);
    if (!rv)
        rv = mbedtls_x509write_crt_set_subject_name(&w, subject);
    if (!rv)
        rv = mbedtls_x509write_crt_set_issuer_name(&w, issuer);
    if (!rv)
        rv = mbedtls_x509write_crt_set_validity(&w, from, to);
    if (!rv)
        rv = mbedtls_x509write_crt_set_basic_constraints(&w, ca, ca ? 0 : -1);
    if (!rv)
        rv = mbedtls_x509write_crt_set_key_usage(
            &w, ca ? MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN :
                     MBEDTLS_X509_KU_DIGITAL_SIGNATURE | MBEDTLS_X509_KU_KEY_AGREEMENT);
    if (!rv)
        rv = mbedtls_x509write_crt_set_subject_key_identifier(&w);
    if (!rv)
        rv = mbedtls_x509write_crt_pem(&w, pem, sizeof(pem), mbedtls_ctr_drbg_random, &r->drbg);
    mbedtls_mpi_free(&sn);
    mbedtls_x509write_crt_free(&w);
    return rv ? mbed_fail(path, rv) : write_file(path, (const char *)pem, 0644);
}

static int write_key(const char *path, mbedtls_pk_context *key)
{
    unsigned char pem[PEM_BUF];
    int rv = mbedtls_pk_write_key_pem(key, pem, sizeof(pem));
    int rc = rv ? mbed_fail(path, rv) : write_file(path, (const char *)pem, 0600);
    explicit_bzero(pem, sizeof(pem));
    return rc;
}

/* A CN or OU value: what mbedTLS's subject parser takes unquoted. */
static bool name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
            return false;
    return true;
}

static int cert_init(cert_rng *r, const char *dir)
{
    char crt[4200], key[4200];
    mbedtls_pk_context k;
    mbedtls_pk_init(&k);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tn_cli_fail("cert", "%s: cannot make the folder: %s", dir, strerror(errno));
    snprintf(crt, sizeof(crt), "%s/ca.pem", dir);
    snprintf(key, sizeof(key), "%s/ca.key", dir);
    int rc = new_key(r, &k);
    if (!rc)
        rc = write_key(key, &k);
    if (!rc && (rc = write_cert(r, crt, "CN=tern CA,OU=ca", "CN=tern CA,OU=ca", &k, &k, true)))
        unlink(key);
    mbedtls_pk_free(&k);
    if (!rc)
        printf("wrote %s and %s (keep the key private)\n", crt, key);
    return rc;
}

static int cert_issue(cert_rng *r, const char *dir, const char *role, const char *name,
                      const char *out)
{
    char cacrt[4200], cakey[4200], crt[4200], key[4200], subject[200];
    mbedtls_pk_context k, ck;
    mbedtls_x509_crt ca;
    mbedtls_pk_init(&k);
    mbedtls_pk_init(&ck);
    mbedtls_x509_crt_init(&ca);
    snprintf(cacrt, sizeof(cacrt), "%s/ca.pem", dir);
    snprintf(cakey, sizeof(cakey), "%s/ca.key", dir);
    snprintf(crt, sizeof(crt), "%s/%s.pem", out, name);
    snprintf(key, sizeof(key), "%s/%s.key", out, name);
    snprintf(subject, sizeof(subject), "CN=%s,OU=%s", name, role);
    char issuer[300] = "";
    int rv, rc = 1;
    if ((rv = mbedtls_x509_crt_parse_file(&ca, cacrt)) != 0) {
        rc = tn_cli_fail("cert",
                         "%s: cannot read the CA (mbedTLS -0x%04x); run `tern cert init "
                         "--dir %s` first",
                         cacrt, (unsigned)-rv, dir);
        goto out;
    }
    if ((rv = mbedtls_pk_parse_keyfile(&ck, cakey, NULL)) != 0) {
        rc = tn_cli_fail("cert", "%s: cannot read the CA key (mbedTLS -0x%04x)", cakey,
                         (unsigned)-rv);
        goto out;
    }
    if (mbedtls_x509_dn_gets(issuer, sizeof(issuer), &ca.subject) < 0) {
        rc = tn_cli_fail("cert", "%s: cannot read the CA's subject", cacrt);
        goto out;
    }
    if ((rc = new_key(r, &k)) || (rc = write_key(key, &k)))
        goto out;
    if ((rc = write_cert(r, crt, subject, issuer, &k, &ck, false))) {
        unlink(key);
        goto out;
    }
    printf("wrote %s and %s (%s)\n", crt, key, subject);
out:
    mbedtls_pk_free(&k);
    mbedtls_pk_free(&ck);
    mbedtls_x509_crt_free(&ca);
    return rc;
}

int tn_cmd_cert(int argc, char **argv)
{
    cert_opts o = {0};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_cert, argc, argv, &o, &a);
    if (rc)
        return rc;
    const char *verb = a.n == 1 ? a.v[0] : ""; /* points into argv */
    tn_opt_args_free(&a);
    const char *dir = o.dir, *role = o.role, *name = o.name, *out = o.out;
    bool issue = strcmp(verb, "issue") == 0;
    if (!issue && strcmp(verb, "init") != 0)
        return tn_cli_usage("cert", "say init or issue");
    if (!dir)
        return tn_cli_usage("cert", "--dir is required");
    if (issue &&
        (!role || (strcmp(role, "master") && strcmp(role, "worker") && strcmp(role, "client"))))
        return tn_cli_usage("cert", "--role must be master, worker or client");
    if (issue && !name_ok(name))
        return tn_cli_usage("cert", "--name: 1 to 64 of a-z A-Z 0-9 - _ .");
    cert_rng r;
    mbedtls_entropy_init(&r.ent);
    mbedtls_ctr_drbg_init(&r.drbg);
    int rv = mbedtls_ctr_drbg_seed(&r.drbg, mbedtls_entropy_func, &r.ent,
                                   (const unsigned char *)"tern cert", 9);
    rc = rv    ? mbed_fail("random generator", rv) :
         issue ? cert_issue(&r, dir, role, name, out ? out : dir) :
                 cert_init(&r, dir);
    mbedtls_ctr_drbg_free(&r.drbg);
    mbedtls_entropy_free(&r.ent);
    return rc;
}

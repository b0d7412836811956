/* The control client: one request to a running master's control socket, and the
 * printing of its reply, shared by every command that talks to a master. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctlsrv.h"
#include "logread.h"
#include "ha.h"
#include "master.h"
#include "zk.h"
#include "rpc.h"
#include "cli.h"

/* The leader's control URL from ZooKeeper ("HOSTS/CLUSTER"); false (said why) if none. */
static bool zk_leader_ctl(const char *spec, char *url, size_t len)
{
    char hosts[1024];
    const char *slash = strrchr(spec, '/');
    if (!slash || slash == spec || !slash[1] || (size_t)(slash - spec) >= sizeof(hosts)) {
        fprintf(stderr, "tern: --zk \"%s\": give HOST:PORT[,HOST:PORT...]/CLUSTER\n", spec);
        return false;
    }
    snprintf(hosts, sizeof(hosts), "%.*s", (int)(slash - spec), spec);
    tn_zk_opts zo = {.hosts = hosts, .cluster = slash + 1, .name = "client"};
    tn_zk *z = NULL;
    tn_errmsg em = {{0}};
    char info[3000];
    bool ok = tn_zk_open(&zo, &z, &em) == TN_OK &&
              tn_zk_leader(z, NULL, NULL, 0, info, sizeof(info), &em) == TN_OK &&
              tn_ha_info_get(info, "ctl", url, len);
    tn_zk_close(z);
    if (!ok)
        fprintf(stderr, "tern: %s\n", em.text[0] ? em.text : "the leader record has no ctl=");
    return ok;
}

void tn_client_url(const tn_ctl_common *o, char *url, size_t len)
{
    const char *zk = o->zk ? o->zk : o->master ? NULL : getenv("TERN_ZK");
    if (o->master)
        snprintf(url, len, "%s", o->master);
    else if (zk && zk[0]) {
        if (!zk_leader_ctl(zk, url, len))
            snprintf(url, len, "ipc:///nonexistent/tern-no-leader.ctl");
    } else
        tn_master_default_ctl(o->data ? o->data : TN_DEFAULT_DATA, url, len);
}

static const char *token_file;

void tn_client_set_token_file(const char *path)
{
    token_file = path;
}

/* The token to send into buf ("" when none): --token-file's first line, else
 * $TERN_TOKEN. Returns 1 (after saying why) when the file cannot be read. */
static int load_token(const char *cmd, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (!token_file) {
        const char *env = getenv("TERN_TOKEN");
        snprintf(buf, cap, "%s", env ? env : "");
    } else {
        FILE *f = fopen(token_file, "re");
        if (!f)
            return tn_cli_fail(cmd, "%s: cannot read the token file: %s", token_file,
                               strerror(errno));
        if (!fgets(buf, (int)cap, f))
            buf[0] = '\0';
        fclose(f);
    }
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

int tn_client_call(const char *cmd, const char *url, const char *data, tn_ctl_req *r,
                   tn_ctl_rep *rep, void **raw)
{
    char token[256];
    if (load_token(cmd, token, sizeof(token)))
        return 1;
    r->token = tn_str_c(token);
    r->actor = (tn_str){"", 0}; /* the master takes who sends from the connection */
    tn_rpc_tls tls = {getenv("TERN_TLS_CA"), getenv("TERN_TLS_CERT"), getenv("TERN_TLS_KEY")};
    bool tls_url = strncmp(url, "tls+", 4) == 0;
    if (tls_url && !tls.ca_file)
        return tn_cli_fail(cmd,
                           "%s: set TERN_TLS_CA to the CA that signed the master's "
                           "certificate (and TERN_TLS_CERT, TERN_TLS_KEY, or a token)",
                           url);
    char *keep = NULL;
    tn_errmsg sm = {{0}};
    /* no token: the certificate names the sender (ctlsign.c) */
    if (tls_url && !token[0] && tls.cert_file && tls.key_file &&
        tn_ctl_sign(r, tls.cert_file, tls.key_file, &keep, &sm) != TN_OK)
        return tn_cli_fail(cmd, "%s", sm.text);
    tn_buf b = {0};
    tn_err enc = tn_ctl_req_encode(r, &b);
    free(keep);
    r->cert = r->sig = (tn_str){"", 0};
    r->ts = 0;
    explicit_bzero(token, sizeof(token));
    r->token = (tn_str){"", 0};
    if (enc) {
        tn_buf_free(&b);
        return tn_cli_fail(cmd, "request too large");
    }
    size_t rl;
    tn_errmsg m = {{0}};
    tn_err e = tn_rpc_call_tls(url, &tls, b.data, b.size, 30000, raw, &rl, &m);
    if (b.data)
        explicit_bzero(b.data, b.size);
    tn_buf_free(&b);
    if (e) {
        if (e == TN_ERR_TIMEOUT)
            return tn_cli_fail(cmd,
                               "%s: no answer within 30s (is the master busy, or not "
                               "running? `tern master --data %s`)",
                               url, data);
        return tn_cli_fail(cmd, "%s", m.text);
    }
    if (tn_ctl_rep_decode(*raw, rl, rep)) {
        free(*raw);
        *raw = NULL;
        return tn_cli_fail(cmd, "%s: malformed reply (a master of another version?)", url);
    }
    /* a standby of a cluster of masters names its leader: asked once, there */
    static int redirects;
    if (!rep->ok && rep->code == TN_CTL_REDIRECT && rep->url.len && redirects == 0) {
        char leader[4200];
        snprintf(leader, sizeof(leader), "%.*s", (int)rep->url.len, rep->url.p);
        free(*raw);
        *raw = NULL;
        redirects++;
        int rc = tn_client_call(cmd, leader, data, r, rep, raw);
        redirects--;
        return rc;
    }
    return 0;
}

int tn_client_show(const char *cmd, bool json, const tn_ctl_rep *rep)
{
    if (!rep->ok) {
        if (json)
            printf("%.*s\n", (int)rep->json.len, rep->json.p);
        fprintf(stderr, "tern %s: %.*s\n", cmd, (int)rep->text.len, rep->text.p);
        return rep->code ? rep->code : 1;
    }
    if (json)
        printf("%.*s\n", (int)rep->json.len, rep->json.p);
    else if (rep->text.len)
        printf("%.*s%s", (int)rep->text.len, rep->text.p,
               rep->text.p[rep->text.len - 1] == '\n' ? "" : "\n");
    return 0;
}

/* A read (ls, status) answered from the store itself when no master runs: the same
 * handler the master uses, on a read-only transaction beside any writer. */
static int read_store(const char *cmd, const char *data, bool json, tn_ctl_req *r)
{
    tn_store *st;
    tn_errmsg m = {{0}};
    if (tn_log_open_read(data, &st, &m) != TN_OK)
        return tn_cli_fail(cmd, "%s", m.text);
    tn_buf b = {0};
    if (tn_ctl_req_encode(r, &b)) {
        tn_log_close_read(st);
        return tn_cli_fail(cmd, "request too large");
    }
    tn_ctlsrv srv = {.ro = st};
    void *raw = NULL;
    size_t rl = 0;
    static const tn_rpc_peer self = {.kind = TN_RPC_PEER_INPROC, .uid = -1, .pid = -1};
    tn_ctlsrv_handle(&srv, &self, b.data, b.size, &raw, &rl);
    tn_buf_free(&b);
    tn_ctl_rep rep;
    int rc = raw && tn_ctl_rep_decode(raw, rl, &rep) == TN_OK ?
                 tn_client_show(cmd, json, &rep) :
                 tn_cli_fail(cmd, "cannot read the store in %s", data);
    free(raw);
    tn_log_close_read(st);
    fprintf(stderr, "(from the store; no master is running)\n");
    return rc;
}

int tn_client_request(const char *cmd, const tn_ctl_common *o, tn_ctl_req *r)
{
    return tn_client_op(cmd, cmd, o, r);
}

int tn_client_op(const char *cmd, const char *op, const tn_ctl_common *o, tn_ctl_req *r)
{
    char url[4200];
    tn_client_url(o, url, sizeof(url));
    r->cmd = tn_str_c(op);
    tn_client_set_token_file(o->token_file);
    const char *data = o->data ? o->data : TN_DEFAULT_DATA;
    if (!o->master && tn_ctlsrv_is_read(r->cmd) && !tn_client_probe(url))
        return read_store(cmd, data, o->json, r);
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc = tn_client_call(cmd, url, data, r, &rep, &raw);
    if (rc == 0)
        rc = tn_client_show(cmd, o->json, &rep);
    free(raw);
    return rc;
}

bool tn_client_probe(const char *url)
{
    void *probe = NULL;
    size_t pl;
    tn_rpc_tls tls = {getenv("TERN_TLS_CA"), getenv("TERN_TLS_CERT"), getenv("TERN_TLS_KEY")};
    if (tn_rpc_call_tls(url, &tls, "", 0, 2000, &probe, &pl, NULL) != TN_OK)
        return false;
    free(probe);
    return true;
}

int tn_ctl_try_remote(const char *cmd, const char *data, tn_ctl_req *r)
{
    char url[4200];
    tn_master_default_ctl(data, url, sizeof(url));
    if (!tn_client_probe(url))
        return -1;
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc = tn_client_call(cmd, url, data, r, &rep, &raw);
    if (!rc)
        rc = tn_client_show(cmd, false, &rep);
    free(raw);
    return rc;
}

typedef struct id_opts {
    tn_ctl_common c;
} id_opts;

const tn_opt tn_client_common_table[] = {TN_CTL_COMMON_OPTS(id_opts), {0}};

int tn_client_id_request(const tn_opt_cmd *spec, int argc, char **argv, const char *what)
{
    id_opts o = {{0}};
    tn_opt_args a;
    int rc = tn_opt_cli(spec, argc, argv, &o, &a);
    if (rc)
        return rc;
    uint64_t id = 0;
    bool ok = a.n == 1 && tn_cli_id(a.v[0], &id);
    tn_opt_args_free(&a);
    if (!ok)
        return tn_cli_usage(spec->name, "give one %s id (a positive integer)", what);
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r)
        return tn_cli_fail(spec->name, "out of memory");
    r->id = id;
    rc = tn_client_request(spec->name, &o.c, r);
    free(r);
    return rc;
}

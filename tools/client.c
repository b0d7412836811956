/* The control client: one request to a running master's control socket, and the
 * printing of its reply, shared by every command that talks to a master. */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctlsrv.h"
#include "logread.h"
#include "master.h"
#include "rpc.h"
#include "cli.h"

void tn_client_url(const tn_ctl_common *o, char *url, size_t len)
{
    if (o->master)
        snprintf(url, len, "%s", o->master);
    else
        tn_master_default_ctl(o->data ? o->data : TN_DEFAULT_DATA, url, len);
}

int tn_client_call(const char *cmd, const char *url, const char *data, tn_ctl_req *r,
                   tn_ctl_rep *rep, void **raw)
{
    tn_buf b = {0};
    if (tn_ctl_req_encode(r, &b))
        return tn_cli_fail(cmd, "request too large");
    size_t rl;
    tn_errmsg m = {{0}};
    tn_err e = tn_rpc_call(url, b.data, b.size, 30000, raw, &rl, &m);
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
    tn_ctlsrv_handle(&srv, b.data, b.size, &raw, &rl);
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
    char url[4200];
    tn_client_url(o, url, sizeof(url));
    r->cmd = tn_str_c(cmd);
    r->actor = TN_STR("user:cli");
    const char *data = o->data ? o->data : TN_DEFAULT_DATA;
    if (!o->master && (!strcmp(cmd, "ls") || !strcmp(cmd, "status")) && !tn_client_probe(url))
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
    if (tn_rpc_call(url, "", 0, 2000, &probe, &pl, NULL) != TN_OK)
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

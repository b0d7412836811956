/* The engine in this process, on a store no master serves: `tern def apply`,
 * `tern taskgroup set` and `tern env set` fall back to it when no master answers. */
#include <stdio.h>
#include <stdlib.h>

#include "ctl.h"
#include "engine.h"
#include "inproc.h"
#include "util.h"
#include "cli.h"

int tn_local_open(const char *cmd, const char *data, tn_local *l)
{
    char logs[4200];
    snprintf(logs, sizeof(logs), "%s/logs", data);
    tn_errmsg m = {{0}};
    if (tn_mkdir_p(data) != 0)
        return tn_cli_fail(cmd, "%s: cannot create the data directory: %m; check --data", data);
    if (tn_inproc_new(logs, &l->x))
        return tn_cli_fail(cmd, "%s: cannot create the task log directory", logs);
    tn_engine_opts o = {
        .data_dir = data, .log = {.create = true}, .executor = tn_inproc_executor(l->x)};
    if (tn_engine_open(&o, &l->e, &m)) {
        tn_inproc_free(l->x);
        return tn_cli_fail(cmd, "%s", m.text);
    }
    if (tn_evlog_created(tn_engine_log(l->e)))
        fprintf(stderr, "created a new store in %s\n", data);
    tn_inproc_bind(l->x, l->e);
    tn_engine_step(l->e, NULL);
    return 0;
}

void tn_local_close(tn_local *l)
{
    tn_engine_close(l->e);
    tn_inproc_free(l->x);
}

int tn_local_set(const char *cmd, const char *data, tn_cmd *c)
{
    /* a running master owns the store: go through it */
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (r) {
        r->cmd = tn_str_c(cmd);
        r->name = tn_str_c(c->name);
        r->slots = c->slots;
        r->bytes = tn_str_c(c->text);
        r->actor = TN_STR("user:cli");
        int remote = tn_ctl_try_remote(cmd, data, r);
        free(r);
        if (remote >= 0)
            return remote;
    }
    tn_local l;
    int rc = tn_local_open(cmd, data, &l);
    if (rc)
        return rc;
    if (tn_engine_call(l.e, c))
        rc = tn_cli_fail(cmd, "%s", c->msg);
    else
        printf("%s\n", c->msg);
    tn_local_close(&l);
    return rc;
}

/* The engine in this process, on a store no master serves: `tern def apply`,
 * `tern taskgroup set` and `tern env set` fall back to it when no master answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "def.h"
#include "engine.h"
#include "logread.h"
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

/* A workflow a sub_workflow task names exists at apply: among the definitions applied
 * together (which may name each other) or in the store. The store is read through its
 * own read-only transaction, so call this before the local engine opens it. */
int tn_cli_check_subs(const char *cmd, const char *data, tn_def *const *defs,
                      const char *const *paths, size_t n)
{
    tn_store *st = NULL;
    bool opened = false;
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < defs[i]->n_tasks; k++) {
            const tn_def_task *t = &defs[i]->tasks[k];
            if (t->type != TN_DEF_TASK_SUB_WORKFLOW || !t->sub.workflow)
                continue;
            bool found = false;
            for (size_t j = 0; j < n && !found; j++)
                found = strcmp(defs[j]->name, t->sub.workflow) == 0;
            if (!found && !opened) {
                opened = true;
                if (tn_log_open_read(data, &st, NULL) != TN_OK)
                    st = NULL; /* no store yet: nothing is in it */
            }
            uint32_t version = 0;
            if (!found && st)
                found = tn_log_def_latest(st, t->sub.workflow, &version, NULL) == TN_OK;
            if (found)
                continue;
            uint32_t line =
                t->key_line[TN_DEF_TK_WORKFLOW] ? t->key_line[TN_DEF_TK_WORKFLOW] : t->line;
            tn_log_close_read(st);
            return tn_cli_fail(cmd,
                               "%s:%u: sub_workflow task \"%s\" runs workflow \"%s\", which is "
                               "neither in %s nor in the files applied with it: apply it "
                               "first, or in the same `tern def apply`",
                               paths[i], line, t->name, t->sub.workflow, data);
        }
    }
    tn_log_close_read(st);
    return 0;
}

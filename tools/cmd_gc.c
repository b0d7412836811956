/* `tern gc --older-than AGE`: remove the projections of finished instances that ended
 * longer ago than AGE from the store; their events stay (core/log/gc.h). */
#include <inttypes.h>
#include <stdio.h>

#include "gc.h"
#include "sm_gen.h"
#include "util.h"
#include "cli.h"
#include "jsonout.h"

typedef struct gc_opts {
    const char *data;
    uint64_t older_ms;
    bool dry_run, json;
} gc_opts;

static const tn_opt gc_table[] = {
    {"older-than", 0, TN_OPT_DURATION, offsetof(gc_opts, older_ms), "AGE",
     .help = "collect the instances that ended longer ago than AGE (e.g. 30d, 12h)",
     TN_OPT_REQ},
    {"dry-run", 0, TN_OPT_FLAG, offsetof(gc_opts, dry_run), NULL,
     .help = "list what would be collected; change nothing"},
    {"data", 0, TN_OPT_STR, offsetof(gc_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)"},
    {"json", 0, TN_OPT_FLAG, offsetof(gc_opts, json), NULL, .help = "print JSON for scripts"},
    {0}};

const tn_opt_cmd tn_spec_gc = {
    "gc", NULL,
    "Remove from the store the projections (workflow and task state) of the instances that\n"
    "finished (SUCCESS, FAILURE, STOP) longer ago than AGE. Their events stay in the log:\n"
    "`tern audit ID` still prints their timeline, `tern replay` still rebuilds and verifies\n"
    "them, and `tern status ID` says that the instance was collected. Unfinished instances\n"
    "(paused ones included) and sub-workflow instances whose parent is unfinished are never\n"
    "collected; a collected instance can no longer be rerun or recovered. gc writes the\n"
    "store: it runs while no master, standalone or run holds DIR (stop the master, gc,\n"
    "start it again). See docs/OPERATIONS.md.\n",
    gc_table, .max_args = 0};

typedef struct gc_out {
    bool json, dry_run;
    uint64_t n;
} gc_out;

static void show(void *ctx, const tn_wf_proj *w, uint64_t ntasks)
{
    gc_out *g = ctx;
    char ended[48];
    tn_cli_time_ns(w->ended_at, ended, sizeof(ended));
    const char *state = tn_sm_state_name(&tn_sm_workflow, w->state);
    if (!g->json) {
        printf("%s workflow %s instance %" PRIu64 " (%s, ended %s, %" PRIu64 " tasks)\n",
               g->dry_run ? "would collect" : "collected", w->name, w->id, state, ended,
               ntasks);
        return;
    }
    printf("%s", g->n++ ? "," : "");
    tn_cli_json_put(stdout, json_pack("{s:I,s:o,s:s,s:s,s:I}", "id", (json_int_t)w->id, "name",
                                      tn_jo_str(w->name), "state", state, "ended_at", ended,
                                      "tasks", (json_int_t)ntasks));
}

int tn_cmd_gc(int argc, char **argv)
{
    gc_opts o = {.data = TN_DEFAULT_DATA, .older_ms = UINT64_MAX};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_gc, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a);
    if (o.older_ms == UINT64_MAX)
        return tn_cli_usage("gc", "give --older-than AGE (e.g. 30d): the instances that "
                                  "ended longer ago are collected");
    int64_t now = tn_now_ns();
    int64_t age =
        o.older_ms > (uint64_t)INT64_MAX / 1000000 ? INT64_MAX : (int64_t)o.older_ms * 1000000;
    int64_t before = now - age;
    gc_out g = {.json = o.json, .dry_run = o.dry_run};
    if (o.json)
        printf("{\"dry_run\":%s,\"collected\":[", o.dry_run ? "true" : "false");
    tn_log_gc_report rep;
    tn_errmsg m = {{0}};
    tn_err e = tn_log_gc(o.data, before, now, o.dry_run, show, &g, &rep, &m);
    if (o.json)
        printf("],\"workflows\":%" PRIu64 ",\"tasks\":%" PRIu64 "}\n", e ? 0 : rep.workflows,
               e ? 0 : rep.tasks);
    if (e == TN_ERR_BUSY)
        return tn_cli_fail("gc",
                           "%s; gc runs while the store is not in use: stop the master "
                           "(systemctl stop tern-master), run gc, start it again",
                           m.text);
    if (e)
        return tn_cli_fail("gc", "%s", m.text);
    if (!o.json)
        printf("%s %" PRIu64 " workflow instances and %" PRIu64
               " task instances; their events remain in the log\n",
               o.dry_run ? "would collect" : "collected", rep.workflows, rep.tasks);
    return 0;
}

/* `tern replay`: verify the log by replaying it through the generated tables and
 * comparing the projections it rebuilds with the stored ones. It only reads the store. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "util.h"
#include "sm.h"
#include "logread.h"
#include "cli.h"

typedef struct replay_opts {
    const char *data;
    uint64_t until;
    int64_t until_time;
    bool no_chain, json;
    const char *coverage_out;
} replay_opts;

static const tn_opt replay_table[] = {
    {"data", 0, TN_OPT_STR, offsetof(replay_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)"},
    {"until", 0, TN_OPT_U64, offsetof(replay_opts, until), "SEQ",
     .help = "replay events 1..SEQ only (no comparison with the store)", .min = 1,
     .want = "a seq (a positive integer)"},
    {"until-time", 0, TN_OPT_TIME, offsetof(replay_opts, until_time), "ISO8601",
     .help = "replay events up to this time, e.g. 2026-11-22T10:00:00Z"},
    {"no-chain", 0, TN_OPT_FLAG, offsetof(replay_opts, no_chain), NULL,
     .help = "skip the hash chain check"},
    {"json", 0, TN_OPT_FLAG, offsetof(replay_opts, json), NULL,
     .help = "print the summary as JSON"},
    {"coverage-out", 0, TN_OPT_STR, offsetof(replay_opts, coverage_out), "FILE",
     .help = "append the transitions replayed, one \"MACHINE FROM EVENT TO COUNT\" line\n"
             "each, to FILE (read by `tern sm coverage`)"},
    {0}};

const tn_opt_cmd tn_spec_replay = {
    "replay", NULL,
    "Rebuild every projection (workflows, tasks, definitions, meta) from the events alone,\n"
    "check every event against the generated state machine tables (from-state, event,\n"
    "to-state) and the hash chain, and compare the rebuilt projections with the stored\n"
    "ones. Prints a summary; exits 1 naming the first offending seq and why.\n"
    "Replay only reads: it never repairs a store.\n",
    replay_table, .max_args = 0};

static void print_states(FILE *f, const tn_sm *sm, const uint64_t *counts, bool json)
{
    bool first = true;
    for (unsigned i = 1; i < sm->nstates && i < TN_REPLAY_MAX_STATES; i++) {
        if (!counts[i])
            continue;
        if (json)
            fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", sm->state_names[i], counts[i]);
        else
            fprintf(f, "%s%s %" PRIu64, first ? "" : ", ", sm->state_names[i], counts[i]);
        first = false;
    }
    if (first && !json)
        fputs("none", f);
}

static void print_json(const tn_replay_report *r)
{
    printf("{\"ok\":%s,\"events\":%" PRIu64 ",\"last_seq\":%" PRIu64 ",\"workflows\":%" PRIu64
           ",\"tasks\":%" PRIu64 ",\"system_events\":%" PRIu64 ",\"workflow_states\":{",
           r->err ? "false" : "true", r->events, r->last_seq, r->workflows, r->tasks,
           r->system_events);
    print_states(stdout, &tn_sm_workflow, r->wf_states, true);
    printf("},\"task_states\":{");
    print_states(stdout, &tn_sm_task, r->task_states, true);
    printf("},\"chain_checked\":%s,\"compared\":%s,\"error\":",
           r->chain_checked ? "true" : "false", r->compared ? "true" : "false");
    if (r->err) {
        printf("{\"seq\":%" PRIu64 ",\"code\":\"%s\",\"why\":", r->bad_seq, tn_errname(r->err));
        tn_json_cstr(stdout, r->why);
        printf("}");
    } else {
        printf("null");
    }
    printf("}\n");
}

static void print_text(const tn_replay_report *r)
{
    printf("replay: %" PRIu64 " events (seq 1..%" PRIu64 "), %" PRIu64 " workflows, %" PRIu64
           " tasks, %" PRIu64 " system events\n",
           r->events, r->last_seq, r->workflows, r->tasks, r->system_events);
    printf("workflows: ");
    print_states(stdout, &tn_sm_workflow, r->wf_states, false);
    printf("\ntasks: ");
    print_states(stdout, &tn_sm_task, r->task_states, false);
    printf("\nchain: %s; projections: %s\n",
           !r->chain_checked      ? "not checked" :
           r->err == TN_ERR_CHAIN ? "BROKEN" :
                                    "intact",
           !r->compared ? "not compared (partial replay)" :
           r->err       ? "see below" :
                          "equal to the stored ones");
    if (!r->err)
        printf("OK\n");
}

/* Say what is wrong with the store, and that it was left as it was. */
static void print_error(tn_store *s, const tn_replay_report *r)
{
    if (r->bad_seq)
        tn_cli_fail("replay", "%s: seq %" PRIu64 ": %s: %s", tn_log_store_path(s), r->bad_seq,
                    tn_strerror(r->err), r->why);
    else
        tn_cli_fail("replay", "%s: %s: %s", tn_log_store_path(s), tn_strerror(r->err), r->why);
    fprintf(stderr, "tern replay: the store is not consistent; it was not changed. Restore "
                    "it from a backup, or keep it for inspection with `tern audit`.\n");
}

static int replay(const replay_opts *o, tn_store *s, tn_replay_report *r)
{
    tn_replay_opts ro = {.verify_chain = !o->no_chain,
                         .compare = true,
                         .until_seq = o->until,
                         .until_ns = o->until_time};
    tn_err e = tn_replay_run(s, &ro, r);
    if (e)
        return tn_cli_fail("replay", "%s: cannot read the log: %s", tn_log_store_path(s),
                           tn_strerror(e));
    if (o->json)
        print_json(r);
    else
        print_text(r);
    int rc = 0;
    if (o->coverage_out && (e = tn_replay_coverage_write(r, o->coverage_out)))
        rc = tn_cli_fail("replay", "%s: cannot append the coverage: %s", o->coverage_out,
                         tn_strerror(e));
    if (!r->err)
        return rc;
    print_error(s, r);
    return 1;
}

int tn_cmd_replay(int argc, char **argv)
{
    replay_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_replay, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a); /* no positional arguments; data points into argv */
    tn_store *s;
    if (tn_cli_store_ro("replay", o.data, &s))
        return 1;
    tn_replay_report *r = malloc(sizeof(*r));
    rc = r ? replay(&o, s, r) : tn_cli_fail("replay", "out of memory");
    free(r);
    tn_log_close_read(s);
    return rc;
}

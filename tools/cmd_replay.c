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
#include "jsonout.h"

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

static void print_states(FILE *f, const tn_sm *sm, const uint64_t *counts)
{
    bool first = true;
    for (unsigned i = 1; i < sm->nstates && i < TN_REPLAY_MAX_STATES; i++) {
        if (!counts[i])
            continue;
        fprintf(f, "%s%s %" PRIu64, first ? "" : ", ", sm->state_names[i], counts[i]);
        first = false;
    }
    if (first)
        fputs("none", f);
}

/* {"STATE": count} of the states that have any. */
static json_t *states_json(const tn_sm *sm, const uint64_t *counts)
{
    json_t *o = json_object();
    for (unsigned i = 1; o && i < sm->nstates && i < TN_REPLAY_MAX_STATES; i++)
        if (counts[i])
            tn_jo_set(o, sm->state_names[i], json_integer((json_int_t)counts[i]));
    return o;
}

static void print_json(const tn_replay_report *r)
{
    json_t *err = r->err ? json_pack("{s:I,s:s,s:o}", "seq", (json_int_t)r->bad_seq, "code",
                                     tn_errname(r->err), "why", tn_jo_str(r->why)) :
                           json_null();
    tn_cli_json_put(
        stdout, json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:b,s:b,s:o}", "ok", !r->err,
                          "events", (json_int_t)r->events, "last_seq", (json_int_t)r->last_seq,
                          "workflows", (json_int_t)r->workflows, "tasks", (json_int_t)r->tasks,
                          "system_events", (json_int_t)r->system_events, "workflow_states",
                          states_json(&tn_sm_workflow, r->wf_states), "task_states",
                          states_json(&tn_sm_task, r->task_states), "chain_checked",
                          r->chain_checked, "compared", r->compared, "error", err));
    printf("\n");
}

static void print_text(const tn_replay_report *r)
{
    printf("replay: %" PRIu64 " events (seq 1..%" PRIu64 "), %" PRIu64 " workflows, %" PRIu64
           " tasks, %" PRIu64 " system events\n",
           r->events, r->last_seq, r->workflows, r->tasks, r->system_events);
    printf("workflows: ");
    print_states(stdout, &tn_sm_workflow, r->wf_states);
    printf("\ntasks: ");
    print_states(stdout, &tn_sm_task, r->task_states);
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

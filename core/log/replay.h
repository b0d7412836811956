/* Replay: rebuild every projection from the events alone, check every event against
 * the generated tables (from-state, event, to-state) and the hash chain, and compare
 * the rebuilt projections with the stored ones. Replay only reads; it never repairs. */
#ifndef TN_REPLAY_H
#define TN_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "sm.h"

typedef struct tn_store tn_store; /* opaque: store/store.h is core/log's business */

typedef struct tn_replay_opts {
    uint64_t until_seq; /* stop after this seq; 0 = the whole log */
    int64_t until_ns;   /* stop before the first event later than this; 0 = no bound */
    bool verify_chain;  /* check the hash chain (and the stored chain head) */
    bool compare;       /* compare with the stored projections (whole log only) */
    bool sequential;    /* no helper threads (chain check, mapping pages ahead): the same
                         * report, in one thread; tests compare the two */
} tn_replay_opts;

#define TN_REPLAY_MAX_STATES 64
#define TN_REPLAY_MAX_EVENTS 32

typedef struct tn_replay_report {
    uint64_t events;   /* events replayed */
    uint64_t last_seq; /* seq of the last event replayed */
    uint64_t workflows, tasks, system_events;
    uint64_t wf_states[TN_REPLAY_MAX_STATES];   /* instances per workflow state */
    uint64_t task_states[TN_REPLAY_MAX_STATES]; /* instances per task state */
    /* transitions replayed, by [machine][from state][event] (the spec gives the to) */
    uint32_t cov[TN_MACHINE_MAX + 1][TN_REPLAY_MAX_STATES][TN_REPLAY_MAX_EVENTS];
    bool chain_checked;
    bool compared;
    /* the verdict: TN_OK, or the first problem found */
    tn_err err;
    uint64_t bad_seq; /* the offending event's seq; 0 when the problem is not an event's */
    char why[512];
} tn_replay_report;

/* Replay the log of `s`. Returns TN_OK when it could run (the verdict is in
 * rep->err); another error when the store could not be read at all. */
tn_err tn_replay_run(tn_store *s, const tn_replay_opts *opts, tn_replay_report *rep);

/* Append the transitions rep counted to the file at `path` (created if need be), one
 * line each: "MACHINE FROM EVENT TO COUNT". `tern sm coverage` reads these. */
tn_err tn_replay_coverage_write(const tn_replay_report *rep, const char *path);

/* Call `fn` for every event of workflow `wf` (its own and its tasks'), in seq order.
 * The event's strings are valid during the call only. A non-zero return from fn stops
 * the walk and is returned. TN_ERR_NOENT when the workflow has no events. */
typedef int (*tn_replay_event_fn)(void *ctx, const tn_event *ev);
tn_err tn_replay_wf_events(tn_store *s, uint64_t wf, tn_replay_event_fn fn, void *ctx,
                           int *fn_ret);

/* The task instances of a workflow's current run (after its last RERUN), in the order
 * they were created, as a malloc'd array the caller frees. */
tn_err tn_replay_run_tasks(tn_store *s, uint64_t wf, uint64_t **ids, size_t *n);

#endif

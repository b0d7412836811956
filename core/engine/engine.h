/* The engine: the master's single writer. Inputs (control commands, executor reports,
 * due timers) go through the generated tables into events; one group commit makes a
 * batch durable; only then are its effects released (dispatches, kills, answers).
 *
 * All workflow and task state in memory is a fold of the events the engine appended,
 * through the same function that rebuilds an instance after a restart, so live and
 * recovered state cannot drift apart.
 *
 * Threads: the engine's functions run in one thread (the engine thread), except
 * tn_engine_report, tn_engine_after, tn_engine_submit, tn_engine_submit_wait,
 * tn_engine_wake, tn_engine_request and tn_engine_read_wf/_task, which any thread may
 * call. Another thread never reads the engine's (or its log's) memory: it asks the
 * engine thread (a command or a request), reads committed projections from the store,
 * or is told of commits by an observer. */
#ifndef TN_ENGINE_H
#define TN_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "def.h"
#include "err.h"
#include "evlog.h"
#include "executor.h"
#include "schedule.h"
#include "prom.h"
#include "sm.h"

typedef enum tn_start_mode {
    TN_MODE_ALL = 0,   /* the whole DAG */
    TN_MODE_TASK_ONLY, /* only the start nodes */
    TN_MODE_TASK_PRE,  /* the start nodes and everything upstream of them */
    TN_MODE_TASK_POST, /* the start nodes and everything downstream of them */
} tn_start_mode;

const char *tn_start_mode_name(tn_start_mode m);
int tn_start_mode_parse(const char *s); /* -1 when unknown */

typedef struct tn_engine_opts {
    const char *data_dir;
    tn_evlog_opts log;
    tn_executor executor;
    const char *master_id; /* actor "master:ID"; default "local" */
    /* Simulated time: the clock starts at start_ns and, when the engine has nothing
     * to do, jumps to the next timer. For tests and benchmarks. */
    bool virtual_clock;
    int64_t start_ns;
    uint32_t max_batch; /* a step fires timers until it took this many inputs, and starts at
                         * most this many tasks; 0 = 4096 */
    /* alerts for workflows without an `alerts:` block (the master's config); copied */
    const tn_def_alert *alerts;
    uint32_t nalerts;
} tn_engine_opts;

/* Open the store and recover: unfinished instances are loaded (paging through the
 * store, never every instance at once), their timers re-armed with their original due
 * times, and attempts the executor no longer runs failed over. */
tn_err tn_engine_open(const tn_engine_opts *opts, tn_engine **out, tn_errmsg *msg);
void tn_engine_close(tn_engine *e); /* accepts NULL */
tn_evlog *tn_engine_log(tn_engine *e);

/* --- commands ------------------------------------------------------------------
 * Each command is an input: tn_engine_submit queues it (any thread); the engine thread
 * processes it in its next step and, after the commit, marks it done with its result.
 * tn_engine_call does both from the engine thread and returns the result. */

typedef enum tn_cmd_kind {
    TN_CMD_APPLY_DEF = 1, /* def_bytes (canonical encoding) */
    TN_CMD_START,
    TN_CMD_PAUSE,
    TN_CMD_RESUME,
    TN_CMD_STOP,
    TN_CMD_RERUN,
    TN_CMD_RECOVER,       /* recover-failed, or after stop */
    TN_CMD_FORCE_SUCCESS, /* task id */
    TN_CMD_KILL_TASK,     /* task id */
    TN_CMD_TASKGROUP_SET, /* name, slots */
    TN_CMD_ENV_SET,       /* name, text */
    TN_CMD_WHY,           /* task id: msg = why it waits for dispatch ("" if it does not) */
    /* schedules, keyed by the workflow's name (`workflow`) */
    TN_CMD_SCHED_SET,    /* sched: the whole spec (replaces the previous one) */
    TN_CMD_SCHED_PAUSE,  /* text: the reason (optional) */
    TN_CMD_SCHED_RESUME, /* nominal times that came while paused are skipped */
    TN_CMD_SCHED_RM,
    TN_CMD_SCHED_TRIGGER, /* fire now (also when paused): out_id = the instance */
    /* backfills (DolphinScheduler's complement data) */
    TN_CMD_BACKFILL,        /* workflow, dates, parallel, params: out_id = the backfill */
    TN_CMD_BACKFILL_STOP,   /* id: stops its running instances, starts no more */
    TN_CMD_BACKFILL_RESUME, /* id: starts the dates not started yet */
    /* an alert sender's outcome: id = the alert, slots = the attempt, text = the outcome,
     * sched_ns = when to try again (0: delivered); name = "drop" to give it up */
    TN_CMD_ALERT_RESULT,
} tn_cmd_kind;

typedef struct tn_cmd {
    tn_cmd_kind kind;
    const char *actor; /* "user:NAME"; default "user:local" */
    uint64_t id;       /* workflow instance id, or task id for FORCE_SUCCESS/KILL_TASK */
    /* APPLY_DEF */
    const void *def_bytes;
    size_t def_len;
    /* START */
    const char *workflow;
    const char *const *param_keys, *const *param_values; /* start-time overrides */
    uint32_t nparams;
    const char *const *from; /* start nodes */
    uint32_t nfrom;
    tn_start_mode mode;
    bool dry_run;
    int64_t sched_ns; /* schedule (biz) time; 0 = now */
    /* START overrides of the definition's values for this instance; NULL = the
     * definition's: the zone its dates are read in (TERN_TZ's otherwise), its priority
     * and failure strategy (tn_def words), and the worker group of its tasks that use
     * the default group */
    const char *tz, *priority, *failure_strategy, *worker_group;
    /* SCHED_SET */
    const struct tn_sched_spec *sched;
    /* BACKFILL: schedule times (unix ns) in the order to run them; parallel 0 = 1 */
    const int64_t *dates;
    uint32_t ndates;
    uint32_t parallel;
    /* TASKGROUP_SET / ENV_SET */
    const char *name;
    int64_t slots;
    const char *text;

    /* result, filled by the engine */
    bool done;
    tn_err err;
    uint64_t out_id; /* START: the new instance; APPLY_DEF: the version */
    bool unchanged;  /* APPLY_DEF: content equal to the latest version */
    char msg[512];
    struct tn_cmd *next; /* queue link, owned by the engine while queued */
} tn_cmd;

/* Queue a command; the caller keeps it alive until cmd->done (read under
 * tn_engine_wait_cmd when another thread runs the engine). */
void tn_engine_submit(tn_engine *e, tn_cmd *cmd);
/* From another thread, while the engine thread runs: submit and wait until done. */
tn_err tn_engine_submit_wait(tn_engine *e, tn_cmd *cmd);
/* From the engine thread: submit and step until it is done. */
tn_err tn_engine_call(tn_engine *e, tn_cmd *cmd);

/* --- running ------------------------------------------------------------------- */

/* Process what is due now: queued inputs and due timers, one group commit, then the
 * effects. Returns the number of inputs processed and instances run again for the tasks
 * a step could not start (0 = idle). */
size_t tn_engine_step(tn_engine *e, tn_errmsg *msg);
/* Step until workflow `wf` is final (wf = 0: until nothing is left to do). With a
 * real clock this sleeps between timers; with a virtual one it jumps. Returns the
 * workflow's final state, or -1 on a store error (msg says which). */
int tn_engine_run_until(tn_engine *e, uint64_t wf, tn_errmsg *msg);
/* Virtual clock only: move the clock to the next timer's due time. false when no
 * timer is armed. For tests that step through a run. */
bool tn_engine_advance(tn_engine *e);
/* Wait (real clock) until an input arrives or the next timer is due, at most max_ns. */
void tn_engine_wait(tn_engine *e, int64_t max_ns);
/* Wake a tn_engine_wait from another thread. */
void tn_engine_wake(tn_engine *e);

/* --- reading state ------------------------------------------------------------- */

typedef struct tn_task_view {
    uint64_t id;
    const char *name;
    uint8_t state; /* tn_task state; TN_SM_NEW when never created */
    uint32_t attempt;
    int64_t started_at, ended_at;
    bool skipped;
} tn_task_view;

/* Live (unfinished) instance state; TN_ERR_NOENT when the instance is not in memory
 * (finished instances are read from the store's projections instead). */
typedef struct tn_wf_view {
    uint64_t id;
    const char *name;
    uint8_t state;
    uint32_t run;
    uint32_t ntasks;
} tn_wf_view;
tn_err tn_engine_wf_view(tn_engine *e, uint64_t wf, tn_wf_view *out);

/* Counters for gauges and benchmarks. */
typedef struct tn_engine_stats {
    uint64_t inputs, events, commits, rejected;
    uint64_t live_workflows, live_tasks, timers;
    uint64_t recovered_workflows;
    uint64_t def_decodes; /* definitions decoded from the store (the cache's misses) */
    /* commits left in flight while the next batch was built, those that failed, and
     * those with commands (answered once the batch is durable) */
    uint64_t flights, flight_failures, command_flights;
} tn_engine_stats;
void tn_engine_stats_get(tn_engine *e, tn_engine_stats *out);

/* For /metrics: what the engine committed since it opened, kept by the engine thread.
 * Read it there (a tn_engine_request): another thread gets a copy, never the live one. */
#define TN_ENGINE_METRIC_STATES 64
#define TN_ENGINE_METRIC_EVENTS 32
typedef struct tn_engine_metrics {
    uint64_t transitions[TN_MACHINE_MAX + 1][TN_ENGINE_METRIC_EVENTS]; /* machine, event */
    /* entries minus exits of each state, by machine (NEW not counted): added to the
     * store's counts at open, the instances in each state now */
    int64_t states[TN_MACHINE_MAX + 1][TN_ENGINE_METRIC_STATES];
    tn_prom_hist commit_seconds;   /* one group commit (the store's write and sync) */
    tn_prom_hist batch_events;     /* events per group commit */
    tn_prom_hist dispatch_seconds; /* a task's queued -> dispatched (placed on a worker) */
    uint64_t queue_depth;          /* entries in the dispatch queue */
    uint64_t group_waits;          /* tasks waiting for a task-group slot */
    /* a schedule's fire (not a trigger): its start's time past its nominal time */
    tn_prom_hist sched_lateness_seconds;
} tn_engine_metrics;
void tn_engine_metrics_get(tn_engine *e, tn_engine_metrics *out);
/* Each live task that waits for dispatch, with why ("" when not tried yet). Engine
 * thread only. */
void tn_engine_each_waiting(tn_engine *e, void (*fn)(void *ctx, const char *why), void *ctx);

/* Why live task `task` waits for dispatch; "" when it does not (or is not live). The
 * string lives until the engine's next step. */
const char *tn_engine_why(tn_engine *e, uint64_t task);

/* --- from other threads ---------------------------------------------------------- */

/* A request: fn(e, ctx) runs on the engine thread between batches — after a step's
 * commit and effects, so it never sees a batch half built — where it may call the
 * reading functions above (tn_engine_why, tn_engine_wf_view,
 * tn_engine_stats_get, tn_evlog_wf/_task on tn_engine_log) and tn_engine_observe. It
 * must not add events or submit commands, and should be short: the engine waits for it. */
typedef void (*tn_engine_req_fn)(tn_engine *e, void *ctx);
/* From another thread while one steps the engine: queue fn(e, ctx) and wait until it has
 * run, at most timeout_ns. TN_ERR_TIMEOUT when the engine did not take it in time: it
 * then never runs (once taken, it is waited for to its end). */
tn_err tn_engine_request(tn_engine *e, tn_engine_req_fn fn, void *ctx, int64_t timeout_ns);

/* Committed projections, from any thread: read in a read-only store transaction, never
 * from the log's caches. TN_ERR_NOENT when no committed event made the instance. */
tn_err tn_engine_read_wf(tn_engine *e, uint64_t id, tn_wf_proj *out);
tn_err tn_engine_read_task(tn_engine *e, uint64_t id, tn_task_proj *out);

/* What a committed event was, for an observer. */
typedef struct tn_engine_event {
    uint64_t seq, wf, task;
    int64_t at;
    uint8_t machine, event, from, to;
} tn_engine_event;
/* After each successful group commit, on the engine thread, fn gets the batch's events
 * in seq order (valid during the call). It may do what a request may; keep it short.
 * Engine thread only (or before a thread runs the engine; from another thread, inside a
 * tn_engine_request), so an observer sees whole batches; fn = NULL removes it. */
typedef void (*tn_engine_commit_fn)(void *arg, const tn_engine_event *evs, size_t n);
void tn_engine_observe(tn_engine *e, tn_engine_commit_fn fn, void *arg);

/* A gate between a batch's commit and its effects (dispatches, answers to clients): fn is
 * called on the engine thread with the last committed seq and returns when the effects
 * may go (a master with --sync-standbys waits there for its standbys to hold the batch).
 * Set before the engine runs; fn = NULL removes it. */
typedef void (*tn_engine_gate_fn)(void *arg, uint64_t last_seq);
void tn_engine_gate(tn_engine *e, tn_engine_gate_fn fn, void *arg);

#endif

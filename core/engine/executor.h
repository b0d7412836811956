/* The executor interface: how the engine hands tasks to whatever runs them (an
 * in-process runner, or workers over the wire) and how their reports come back.
 *
 * The engine calls the operations from its own thread, only after the events that
 * decided them are committed (persist before effect). They must not block. Reports go
 * back with tn_engine_report(), from any thread; the engine treats them as inputs:
 * checked against the tables and fenced by attempt number, so a late, duplicate or
 * stale report never moves a task backwards. */
#ifndef TN_EXECUTOR_H
#define TN_EXECUTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "def.h"

typedef struct tn_engine tn_engine;
struct tn_report;

/* One task attempt to run. Everything in it is valid during the dispatch call only;
 * an executor copies what it keeps. */
typedef struct tn_dispatch_req {
    uint64_t wf;
    uint64_t task;
    uint32_t attempt;
    const tn_def *def;
    const tn_def_task *node;
    const char *command;           /* shell: the command after parameter substitution */
    const char *env_prelude;       /* shell: the named environment's text, or NULL */
    const char *const *param_keys; /* effective params of the task */
    const char *const *param_values;
    uint32_t nparams;
    int64_t deadline_ns;      /* 0 = none */
    uint8_t priority;         /* workflow priority * 8 + task priority; lower first */
    const char *tenant;       /* shell: the OS user to run as (home, groups); NULL = the
                          * executor's own user */
    const char *worker_group; /* where it runs: node->worker_group unless the instance
                               * was started with another group for its default tasks */
} tn_dispatch_req;

/* What placement needs to know of a task waiting for dispatch. */
typedef struct tn_place_req {
    uint64_t wf, task;
    uint32_t attempt;
    const tn_def_task *node;  /* memory_max, ... */
    const char *worker_group; /* its group (see tn_dispatch_req) */
} tn_place_req;

typedef struct tn_executor_ops {
    /* Start one attempt. The executor reports ACCEPTED (or a RESULT straight away). */
    void (*dispatch)(void *self, const tn_dispatch_req *req);
    /* Kill an attempt: TERM, grace, KILL. Reports KILL_RESULT, or the RESULT that beat it. */
    void (*kill)(void *self, uint64_t wf, uint64_t task, uint32_t attempt, uint64_t grace_ms);
    /* Does the executor still run this attempt? (After a restart of the engine.)
     * 1 yes, 0 no (fail it over now), -1 not known yet (the executor will report
     * TN_REPORT_LOST later if it turns out lost). */
    int (*running)(void *self, uint64_t task, uint32_t attempt);
    /* Optional. Choose where a task runs, in the engine thread before DISPATCHED is
     * recorded: true with the worker's name in `worker`, or false with why it cannot be
     * placed now (the task waits; the engine tries again at its next step). The choice
     * reserves capacity for the attempt. NULL: every task goes to the executor itself. */
    bool (*place)(void *self, const tn_place_req *req, char *worker, size_t wlen, char *why,
                  size_t whylen);
    /* Optional. Called after the commit for every report the engine processed (applied,
     * or ignored as a duplicate or stale one): the report is in the log, or never will
     * be, so its sender may forget it (PERSISTED). */
    void (*ack)(void *self, const struct tn_report *r);
} tn_executor_ops;

typedef struct tn_executor {
    const tn_executor_ops *ops;
    void *self;
    const char *name; /* "inproc", "workers" */
} tn_executor;

typedef enum tn_report_kind {
    TN_REPORT_ACCEPTED = 1, /* the attempt's process started (pid) */
    TN_REPORT_RESULT,       /* it finished: success or failure, exit code, outputs */
    TN_REPORT_KILL_RESULT,  /* it was killed */
    TN_REPORT_LOST,         /* the executor lost it (its worker died): fail it over */
} tn_report_kind;

typedef struct tn_report {
    tn_report_kind kind;
    uint64_t report_id; /* the sender's id of this report (for ack), 0 = none */
    uint64_t wf, task;
    uint32_t attempt;
    bool success;            /* RESULT */
    int64_t exit_code;       /* RESULT */
    int64_t pid;             /* ACCEPTED */
    const char *worker;      /* who ran it ("inproc", "worker:w1") */
    const char *reason;      /* optional text: "spawn failed: ...", "killed by timeout" */
    const char *containment; /* ACCEPTED: how it is contained ("cgroup pids=v2:4096") */
    /* KILL_RESULT: the application kill hooks the worker ran, one line (attr "hooks") */
    const char *hooks;
    /* RESULT: values passed downstream (setValue / noop outputs) */
    const char *const *out_keys;
    const char *const *out_values;
    uint32_t nout;
} tn_report;

/* Queue a report for the engine; thread-safe; copies everything. */
void tn_engine_report(tn_engine *e, const tn_report *r);

/* Call fn(arg) from the engine thread once the engine clock reaches due_ns. For
 * in-process executors (noop durations). Thread-safe. */
typedef void (*tn_engine_timer_fn)(tn_engine *e, void *arg);
void tn_engine_after(tn_engine *e, int64_t due_ns, tn_engine_timer_fn fn, void *arg);
/* The engine's clock (real, or virtual in simulations). */
int64_t tn_engine_now(tn_engine *e);

#endif

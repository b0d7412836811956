/* Engine internals shared by its source files (engine.c: the loop, commands and
 * recovery; sched.c: the DAG decisions; logic.c: the tasks that run in the master).
 * Not a public header. */
#ifndef TN_ENGINE_INT_H
#define TN_ENGINE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "def.h"
#include "engine.h"
#include "evlog.h"
#include "log.h"
#include "map.h"
#include "params.h"
#include "sm_gen.h"

/* task_run.flags */
enum {
    TF_SKIP = 1 << 0,     /* branch not taken: never created, successors may skip too */
    TF_SENT = 1 << 1,     /* handed to the executor for the current attempt */
    TF_QUEUED = 1 << 2,   /* waiting in the dispatch queue */
    TF_KILLREQ = 1 << 3,  /* a kill was requested for the current attempt */
    TF_TIMEDOUT = 1 << 4, /* its timeout fired for the current attempt */
    TF_SLOT = 1 << 5,     /* holds a task-group slot */
    TF_HANDED = 1 << 6,   /* the current attempt reached a worker once (kept by FAILOVER) */
};

typedef struct wf_run wf_run;

/* Runtime state of one node of one workflow instance's current run: the fold of its
 * task's events. */
typedef struct task_run {
    wf_run *w;
    uint32_t node;
    uint64_t id;   /* task instance id; 0 = not created in this run */
    uint8_t state; /* TN_TASK_S_*; TN_SM_NEW when not created */
    uint8_t flags;
    uint32_t attempt;
    uint32_t failures;  /* failed attempts in this run: retries left = retries - failures + 1 */
    uint32_t gen;       /* bumped at every transition: older timers are stale */
    int64_t due;        /* DELAY_EXECUTION: when it may go on */
    int64_t queued_at;  /* entered DISPATCH */
    int64_t started_at; /* RUNNING_EXECUTION */
    int64_t ended_at;
    uint64_t child; /* sub_workflow: the child instance */
    tn_kv *pool;    /* values visible downstream: inherited + own outputs (SUCCESS) */
    char *why;      /* why it waits for dispatch, when it does */
    void *proj;     /* the log's handle of its projection (tn_evlog_add_hint) */
} task_run;

/* Runtime state of a workflow instance: the fold of its events. */
struct wf_run {
    uint64_t id;
    uint8_t state; /* TN_WF_S_* */
    tn_def *def;   /* the pinned version (shared, refcounted in the def cache) */
    uint32_t version;
    uint32_t run;
    uint32_t gen;     /* bumped at every run/stop: older workflow timers are stale */
    tn_kv *overrides; /* start-time params */
    tn_kv *inherited; /* sub_workflow: the parent's effective globals */
    tn_kv *globals;   /* effective global params (built once per run) */
    uint8_t mode;
    uint32_t *from;
    uint32_t nfrom;
    bool dry_run;
    uint8_t *in_scope; /* [n_tasks]: 1 when the node runs in this run */
    uint64_t parent_wf, parent_task;
    int64_t sched_ns;
    int64_t created_at, started_at;
    /* what started it and the overrides it was started with (SUBMIT attrs) */
    char *schedule;     /* the schedule that fired it, or NULL */
    uint64_t backfill;  /* the backfill that started it, or 0 */
    char *tz;           /* zone of its dates, or NULL (TERN_TZ) */
    char *worker_group; /* for its tasks in the default group, or NULL */
    uint8_t priority;   /* tn_def_priority: the definition's unless overridden */
    uint8_t failure_strategy;
    bool timeout_fired;
    uint8_t takeover; /* in FAILOVER: the state it was taken over in; 0 otherwise */
    task_run *t;      /* [def->n_tasks] */
    void *proj;       /* the log's handle of its projection (tn_evlog_add_hint) */
    /* counters kept by the fold */
    uint32_t active;  /* created, non-final tasks */
    uint32_t n_fail;  /* tasks in FAILURE whose failure no conditions task handles */
    uint32_t n_kill;  /* tasks in KILL */
    uint32_t n_pause; /* tasks in PAUSE */
    /* scheduling scratch (not state): nodes that may have become ready */
    uint32_t *cand;
    uint32_t ncand, capcand;
    bool touched;      /* in the current batch's touched list */
    bool dirty;        /* touched since its last scheduling run in this batch */
    bool loaded_final; /* loaded on demand while final: unload after the batch */
};

typedef struct def_entry {
    char name[TN_DEF_MAX_NAME + 1];
    uint32_t version;
    uint32_t refs;
    tn_def *def;
    struct def_entry *next, *prev; /* the cache's recency list */
    struct def_entry *hnext;       /* the (name, version) index's chain */
} def_entry;

enum {
    TIMER_TASK = 1,
    TIMER_WF,
    TIMER_CALLBACK,
    TIMER_SCHED /* schedules and backfills: schedule.c */
};
enum {
    TT_DUE = 1,
    TT_TIMEOUT,
    TT_DISPATCH_TIMEOUT,
    TT_POLL
};

typedef struct timer {
    int64_t due;
    uint8_t kind, sub;
    uint32_t node, gen;
    uint64_t wf;
    tn_engine_timer_fn fn;
    void *arg;
} timer;

typedef struct qentry { /* dispatch queue: lower key first */
    uint64_t key;
    uint64_t wf;
    uint32_t node, attempt;
} qentry;

/* The dispatch queue of one worker group (a min-heap by key). Placement is tried per
 * lane, in key order across lanes; a lane whose tasks keep being refused stops for the
 * rest of the step, so a step costs what it places, not what waits. */
typedef struct lane {
    char name[TN_DEF_MAX_NAME + 1];
    qentry *q;
    size_t n, cap;
    uint32_t misses; /* refusals in this step */
    char *why;       /* why the last refused task of the lane waits */
    struct lane *next;
} lane;

/* FX_KILL_STALE: kill an attempt older than the task's (fencing), once the batch that
 * superseded it is committed */
enum {
    FX_DISPATCH = 1,
    FX_KILL,
    FX_CMD_DONE,
    FX_KILL_STALE
};

typedef struct effect {
    uint8_t kind;
    uint64_t wf, task;
    uint32_t node, attempt;
    tn_cmd *cmd;
} effect;

typedef struct input { /* one block: the struct, then its output pointers and strings */
    struct input *next;
    tn_report r; /* strings below are copies in the block */
    char *worker, *reason, *containment, *hooks;
    char **out_keys, **out_values;
    bool small; /* a free-list block (INPUT_SMALL bytes) */
} input;

typedef struct request request; /* a tn_engine_request waiting for the engine thread */

typedef struct tgroup {
    char name[TN_DEF_MAX_NAME + 1];
    int64_t slots; /* -1 = not set: unlimited */
    uint32_t used;
    qentry *wait; /* tasks waiting for a slot, FIFO by priority key */
    size_t nwait, capwait;
    struct tgroup *next;
} tgroup;

struct tn_engine {
    tn_evlog *log;
    tn_executor ex;
    char actor[80];
    bool virtual_clock;
    int64_t vnow;
    uint32_t max_batch;

    pthread_mutex_t mu; /* guards the queues below and the timers of callbacks */
    pthread_cond_t cv;
    tn_cmd *cmd_head, *cmd_tail;
    input *in_head, *in_tail;
    input *in_free; /* small input blocks for reuse */
    size_t nin_free;
    timer *cb_timers; /* callback timers added from other threads */
    size_t ncb, capcb;
    timer *cb_spare; /* the other buffer, the engine thread's (no lock) */
    size_t capspare;
    /* callback timers taken from cb_timers, in due order (equal ones as they came): the
     * engine thread's; fired merged with the heap (fire_due_timers) */
    timer *cbq;
    size_t cbq_head, cbq_n, capcbq;
    request *req_head, *req_tail;

    tn_map wfs;   /* id -> wf_run*, live (unfinished) instances and those loaded on demand */
    tn_map tasks; /* task id -> task_run* of live instances */
    def_entry *defs, *defs_tail; /* most recently used first */
    tn_map def_by_key;           /* hash of (name, version) -> def_entry chain */
    tn_map def_by_ptr;           /* tn_def pointer -> def_entry */
    uint32_t ndefs_idle;     /* entries no instance uses (kept decoded for the next start) */
    def_entry *defs_pending; /* applied in the batch being built */
    tn_map latest_def;       /* unused slot kept simple: see def_latest() */
    tgroup *groups;
    struct esched *esched; /* schedules and backfills (schedule.c) */
    tn_def_alert *alerts;  /* the master's default alerts (alert.c) */
    uint32_t nalerts;

    timer *timers; /* min-heap by due */
    size_t ntimers, captimers;
    lane *lanes; /* dispatch queues, one per worker group */
    lane *last_lane;
    qentry *later; /* could not be placed in this step */
    size_t nlater, caplater;
    /* Task starts left in this step (max_batch each): a workflow of 100k ready tasks
     * starts them over several batches, each committed while the next is built, instead
     * of one batch whose commit the engine would wait for with nothing else to do. The
     * instances with candidates left over are run again at the next step. */
    uint32_t starts_left;
    uint64_t *more;
    size_t nmore, capmore;

    effect *fx;
    size_t nfx, capfx;
    wf_run **touched;
    size_t ntouched, captouched;
    tn_cmd **cmds_batch; /* commands processed in this batch */
    size_t ncmds, capcmds;
    tn_engine_gate_fn gate_fn; /* between commit and effects (tn_engine_gate) */
    void *gate_arg;
    tn_engine_commit_fn obs_fn; /* the commit observer, and the batch's events for it */
    void *obs_arg;
    tn_engine_event *obs;
    size_t nobs, capobs;

    /* The batch whose commit is in flight (tn_evlog_commit_start) while the next one is
     * built, with what may happen only once it is durable: its effects, observed events
     * and acknowledgements, the answers to its commands, and its touched instances (to
     * free the finished ones, or to reload them if it fails). A batch that applies a
     * definition is committed and waited for at once. */
    struct {
        bool on;
        int64_t t0;
        input *ins;
        effect *fx;
        size_t nfx, capfx;
        wf_run **touched;
        size_t ntouched, captouched;
        tn_engine_event *obs;
        size_t nobs, capobs;
        tn_cmd **cmds;
        size_t ncmds, capcmds;
    } fl;

    uint64_t *takeover; /* instances taken over at open: the first step ends it */
    size_t ntakeover, captakeover;

    tn_errmsg msg;
    tn_engine_stats stats;
    tn_engine_metrics metrics; /* folded from each committed batch (obs) */
    const char *cur_actor;     /* actor of the events being emitted */
    bool refuse;               /* the store is full: new work is refused */
    tn_log_every commit_log;   /* a failing commit repeats every step: log it per interval */
};

/* engine.c */
int64_t eng_now(tn_engine *e);
tn_err eng_emit_wf(tn_engine *e, wf_run *w, unsigned event, tn_event *ev);
tn_err eng_emit_task(tn_engine *e, task_run *t, unsigned event, tn_event *ev);
void eng_event(tn_event *ev, unsigned machine, unsigned event, uint64_t wf, uint64_t task);
void eng_timer_task(tn_engine *e, task_run *t, uint8_t sub, int64_t due);
void eng_timer_wf(tn_engine *e, wf_run *w, int64_t due);
void eng_fx(tn_engine *e, uint8_t kind, task_run *t);
void eng_touch(tn_engine *e, wf_run *w);
wf_run *eng_wf(tn_engine *e, uint64_t id);
wf_run *eng_load_wf(tn_engine *e, uint64_t id, tn_errmsg *msg);
tn_err eng_def_latest(tn_engine *e, const char *name, tn_def **def, uint32_t *version);
tn_err eng_def_version(tn_engine *e, const char *name, uint32_t *version);
tgroup *eng_group(tn_engine *e, const char *name);
void eng_queue_push(tn_engine *e, task_run *t);
bool eng_queue_requeue(tn_engine *e, const qentry *q);
lane *eng_lane(tn_engine *e, const char *group);
/* The non-empty lane whose head comes first and that has not stopped for this step
 * (misses < max_misses); NULL when none. */
lane *eng_lane_next(tn_engine *e, uint32_t max_misses);
bool eng_lane_pop(lane *l, qentry *out);
/* Why a task waits for dispatch: its own reason, else its lane's. */
const char *eng_task_why(tn_engine *e, const task_run *t);

/* sched.c */
void sched_fold_wf(tn_engine *e, wf_run *w, const tn_event *ev);
void sched_fold_task(tn_engine *e, task_run *t, const tn_event *ev);
void sched_reset_run(tn_engine *e, wf_run *w);
bool sched_satisfied(const wf_run *w, uint32_t node);
void sched_candidates_all(wf_run *w);
void sched_add_succ(wf_run *w, uint32_t node);
tn_err sched_run(tn_engine *e, wf_run *w);
tn_err sched_start_task(tn_engine *e, task_run *t);
tn_err sched_task_finished(tn_engine *e, task_run *t);
tn_err sched_kill_task(tn_engine *e, task_run *t, const char *reason);
tn_err sched_pause_wf(tn_engine *e, wf_run *w);
tn_err sched_stop_wf(tn_engine *e, wf_run *w, const char *reason);
tn_err sched_admit(tn_engine *e, wf_run *w);
tn_err sched_serial_release(tn_engine *e, const char *name);
tn_err sched_dispatch(tn_engine *e);
tn_err sched_timer(tn_engine *e, const timer *tm);
tn_err sched_report(tn_engine *e, const tn_report *r);
tn_err sched_child_final(tn_engine *e, wf_run *child);
tn_err sched_recovered(tn_engine *e, wf_run *w);
tn_err sched_takeover(tn_engine *e, wf_run *w);
tn_err sched_takeover_begin(tn_engine *e, wf_run *w);
tn_err sched_takeover_end(tn_engine *e, wf_run *w);
tn_err sched_recover_wf(tn_engine *e, wf_run *w);
bool sched_failure_handled(const tn_def *d, uint32_t node);

/* engine.c, for schedule.c: start an instance of the latest version of c->workflow with
 * c's params and overrides; id = 0 allocates one (a fire allocates it first, to name
 * it in its FIRE event). `schedule` / `backfill` tag the SUBMIT. */
tn_err eng_start(tn_engine *e, tn_cmd *c, uint64_t id, const char *schedule, uint64_t backfill,
                 wf_run **out);
void eng_timer_sched(tn_engine *e, int64_t due);
/* params maps in event attrs (msgpack map str -> str) */
tn_err eng_kv_attr(tn_event *ev, const char *key, const tn_kv *kv, tn_buf *scratch);
tn_err eng_kv_from_attr(const tn_event *ev, const char *key, tn_kv **out);
tn_err eng_kv_unpack(const void *buf, size_t len, tn_kv **out);
tn_err eng_emit(tn_engine *e, tn_event *ev);
/* The worker group a task of w dispatches to. */
const char *eng_worker_group(const wf_run *w, const tn_def_task *node);

/* alert.c: raise the alerts a workflow's outcome asks for (its `alerts:`, else the
 * engine's defaults); t = the task, for a task's failure or timeout */
tn_err eng_alert(tn_engine *e, wf_run *w, tn_def_alert_on on, task_run *t, const char *reason);
tn_err eng_alert_cmd(tn_engine *e, tn_cmd *c); /* TN_CMD_ALERT_RESULT */
tn_err eng_alert_defaults(tn_engine *e, const tn_def_alert *a, uint32_t n);
void eng_alert_close(tn_engine *e);

/* schedule.c: schedules and backfills */
tn_err esched_open(tn_engine *e, tn_errmsg *msg); /* after recovery */
void esched_close(tn_engine *e);
tn_err esched_cmd(tn_engine *e, tn_cmd *c);      /* TN_CMD_SCHED_*, TN_CMD_BACKFILL* */
tn_err esched_tick(tn_engine *e);                /* a TIMER_SCHED fired */
tn_err esched_wf_final(tn_engine *e, wf_run *w); /* an instance reached a final state */
/* A definition with a schedule block was applied: set its schedule (c->msg says so). */
tn_err esched_apply_def(tn_engine *e, const char *name, const tn_sched_spec *sp, tn_cmd *c);
void esched_rollback(tn_engine *e); /* a batch was dropped: back to what the log holds */

/* logic.c: conditions, switch, dependent, sub_workflow */
tn_err logic_start(tn_engine *e, task_run *t);
tn_err logic_poll(tn_engine *e, task_run *t);
tn_err task_params(tn_engine *e, task_run *t, tn_kv **out, tn_errmsg *msg);
/* The param context of a task (logic.c): one for its params and its command. */
tn_param_ctx eng_param_ctx(tn_engine *e, task_run *t);
/* TERN_TZ, or NULL (local time) when unset or empty. */
const char *eng_tz_name(void);

#endif

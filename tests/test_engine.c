/* Scenario tests of the workflow engine: DAG execution, failure strategies, retries,
 * timeouts, delays, pause/resume/stop/recover/rerun, force-success, start modes, logic
 * tasks, serial execution, task groups, params and restarts. Time is simulated: the
 * engine's virtual clock jumps to the next timer, so no test waits on the wall clock.
 * After every scenario, replay verifies the whole log. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <signal.h>
#include <time.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "replay.h"
#include "sm_gen.h"
#include "testutil.h"

/* ------------------------------------------------------------------------------ */
/* a scripted executor: per task name, the outcome of each attempt */

typedef struct script {
    const char *task;     /* task name */
    const char *outcomes; /* one letter per attempt: s success, f failure, h hang (never
                             report), n never accept; the last letter repeats */
    int64_t duration_ms;
} script;

typedef struct sx {
    tn_engine *e;
    const script *scripts;
    int running;           /* attempts started and not reported */
    int max_running_group; /* max concurrent attempts of tasks named "g*" */
    int cur_group;
    bool drop_kills;       /* kills are lost (a crash between a commit and its effects) */
    bool no_worker;        /* placement finds no worker: tasks wait in the queue */
    int slots;             /* > 0: placement refuses beyond this many placed attempts */
    int placed;            /* placed and not finished */
    unsigned places;       /* placement calls */
    int kills;             /* kill calls */
    int kills_uncommitted; /* kill calls made while the engine had uncommitted events */
    struct live {
        uint64_t wf, task;
        uint32_t attempt;
        bool group, live;
        char name[65];
    } live[256];
} sx;

static sx X;

static const script *find_script(const char *name)
{
    for (const script *s = X.scripts; s && s->task; s++)
        if (strcmp(s->task, name) == 0)
            return s;
    return NULL;
}

typedef struct done_arg {
    int slot;
    bool ok;
    uint32_t attempt;
} done_arg;

/* Completions waiting on engine timers; a ring, so an engine closed with some pending
 * (a restart) leaks nothing. */
static done_arg pending[4096];
static unsigned npending;

static done_arg *new_done(int slot, bool ok, uint32_t attempt)
{
    done_arg *d = &pending[npending++ % 4096];
    *d = (done_arg){slot, ok, attempt};
    return d;
}

static void finish_slot(int i)
{
    if (!X.live[i].live)
        return;
    X.live[i].live = false;
    X.running--;
    if (X.placed > 0)
        X.placed--;
    if (X.live[i].group)
        X.cur_group--;
}

static void sx_done(tn_engine *e, void *arg)
{
    done_arg *d = arg;
    struct live *l = &X.live[d->slot];
    if (l->live && l->attempt == d->attempt) {
        tn_report r = {.kind = TN_REPORT_RESULT,
                       .wf = l->wf,
                       .task = l->task,
                       .attempt = l->attempt,
                       .success = d->ok,
                       .exit_code = d->ok ? 0 : 1,
                       .worker = "test"};
        finish_slot(d->slot);
        tn_engine_report(e, &r);
    }
}

static void sx_dispatch(void *self, const tn_dispatch_req *req)
{
    (void)self;
    int slot = -1;
    for (int i = 0; i < 256 && slot < 0; i++)
        if (!X.live[i].live)
            slot = i;
    cr_assert_geq(slot, 0, "too many live attempts");
    const script *s = find_script(req->node->name);
    char outcome = 's';
    int64_t dur =
        req->node->type == TN_DEF_TASK_NOOP ? (int64_t)req->node->noop.duration_ms : 100;
    if (s) {
        size_t n = strlen(s->outcomes);
        outcome = s->outcomes[req->attempt - 1 < n ? req->attempt - 1 : n - 1];
        dur = s->duration_ms;
    } else if (req->node->type == TN_DEF_TASK_NOOP) {
        outcome = req->node->noop.result == TN_DEF_NOOP_SUCCESS ? 's' : 'f';
    }
    if (outcome == 'n')
        return; /* never accepted: a worker that does not take it */
    struct live *l = &X.live[slot];
    *l = (struct live){req->wf, req->task, req->attempt, req->node->name[0] == 'g', true, ""};
    snprintf(l->name, sizeof(l->name), "%s", req->node->name);
    X.running++;
    if (l->group && ++X.cur_group > X.max_running_group)
        X.max_running_group = X.cur_group;
    tn_report r = {.kind = TN_REPORT_ACCEPTED,
                   .wf = req->wf,
                   .task = req->task,
                   .attempt = req->attempt,
                   .pid = 1000 + slot,
                   .worker = "test"};
    tn_engine_report(X.e, &r);
    if (outcome == 'h')
        return;
    /* noop outputs travel as a real task's setValue would */
    done_arg *d = new_done(slot, outcome == 's', req->attempt);
    if (req->node->type == TN_DEF_TASK_NOOP && req->node->noop.outputs.n && outcome == 's') {
        /* report now with outputs after the duration: keep it simple, report at once */
        const char *k[16], *v[16];
        uint32_t n = req->node->noop.outputs.n < 16 ? req->node->noop.outputs.n : 16;
        for (uint32_t i = 0; i < n; i++) {
            k[i] = req->node->noop.outputs.items[i].key;
            v[i] = req->node->noop.outputs.items[i].value;
        }
        tn_report res = {.kind = TN_REPORT_RESULT,
                         .wf = req->wf,
                         .task = req->task,
                         .attempt = req->attempt,
                         .success = true,
                         .worker = "test",
                         .out_keys = k,
                         .out_values = v,
                         .nout = n};
        finish_slot(slot);
        tn_engine_report(X.e, &res);
        return;
    }
    tn_engine_after(X.e, tn_engine_now(X.e) + dur * 1000000, sx_done, d);
}

static void sx_kill(void *self, uint64_t wf, uint64_t task, uint32_t attempt, uint64_t grace)
{
    (void)self;
    (void)grace;
    X.kills++;
    if (tn_evlog_pending(tn_engine_log(X.e)) > 0)
        X.kills_uncommitted++;
    if (X.drop_kills)
        return;
    for (int i = 0; i < 256; i++)
        if (X.live[i].live && X.live[i].task == task && X.live[i].attempt == attempt) {
            finish_slot(i);
            tn_report r = {.kind = TN_REPORT_KILL_RESULT,
                           .wf = wf,
                           .task = task,
                           .attempt = attempt,
                           .worker = "test"};
            tn_engine_report(X.e, &r);
            return;
        }
    tn_report r = {.kind = TN_REPORT_KILL_RESULT,
                   .wf = wf,
                   .task = task,
                   .attempt = attempt,
                   .worker = "test",
                   .reason = "not running"};
    tn_engine_report(X.e, &r);
}

static int sx_running(void *self, uint64_t task, uint32_t attempt)
{
    (void)self;
    for (int i = 0; i < 256; i++)
        if (X.live[i].live && X.live[i].task == task && X.live[i].attempt == attempt)
            return true;
    return false;
}

static bool sx_place(void *self, const tn_place_req *req, char *worker, size_t wlen, char *why,
                     size_t whylen)
{
    (void)self;
    X.places++;
    if (X.no_worker) {
        snprintf(why, whylen, "no live worker in group \"%s\"", req->node->worker_group);
        return false;
    }
    if (X.slots > 0 && X.placed >= X.slots) {
        snprintf(why, whylen, "all %d slots are taken", X.slots);
        return false;
    }
    X.placed++;
    snprintf(worker, wlen, "test");
    return true;
}

static const tn_executor_ops sx_ops = {sx_dispatch, sx_kill, sx_running, sx_place, NULL};

/* ------------------------------------------------------------------------------ */
/* harness */

static char *dir;
static tn_engine *E;
static int64_t vclock;

/* Open without a step: what recovery decided (the takeovers) is still pending. */
static void open_engine_nostep(void)
{
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .no_sync = true},
                        .executor = {&sx_ops, &X, "test"},
                        .virtual_clock = true,
                        .start_ns = vclock};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    X.e = E;
}

static void open_engine(void)
{
    open_engine_nostep();
    tn_engine_step(E, NULL);
}

static void setup(void)
{
    dir = tu_tmpdir();
    memset(&X, 0, sizeof(X));
    vclock = 1795000000LL * 1000000000LL; /* 2026-11-20T... */
    setenv("TERN_TZ", "UTC", 1);
    open_engine();
}

/* The transitions every scenario's log replays are appended to
 * $TERN_COVERAGE_DIR/engine.cov, which the sm-coverage test reads; emptied once per run. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *d = getenv("TERN_COVERAGE_DIR");
    char cov_path[4096];
    if (!d)
        return;
    mkdir(d, 0755);
    snprintf(cov_path, sizeof(cov_path), "%s/engine.cov", d);
    FILE *f = fopen(cov_path, "we");
    if (f)
        fclose(f);
}

static void verify_log(void)
{
    static tn_replay_report rep;
    tn_replay_opts o = {.verify_chain = true, .compare = true};
    cr_assert_eq(tn_replay_run(tn_evlog_store(tn_engine_log(E)), &o, &rep), TN_OK);
    cr_assert_eq(rep.err, TN_OK, "replay: seq %" PRIu64 ": %s", rep.bad_seq, rep.why);
    const char *d = getenv("TERN_COVERAGE_DIR");
    char path[4096];
    if (d) {
        snprintf(path, sizeof(path), "%s/engine.cov", d);
        cr_assert_eq(tn_replay_coverage_write(&rep, path), TN_OK, "cannot append to %s", path);
    }
}

static void teardown(void)
{
    if (E) {
        verify_log();
        tn_engine_close(E);
        E = NULL;
    }
    tu_rm_rf(dir);
    free(dir);
}

/* A restart: the engine goes away with whatever it had in memory (as after SIGKILL:
 * only committed events survive) and the executor forgets everything it ran. */
static void restart(bool executor_lost)
{
    vclock = tn_engine_now(E);
    tn_engine_close(E);
    if (executor_lost)
        memset(X.live, 0, sizeof(X.live)), X.running = 0, X.cur_group = 0;
    open_engine();
    /* what the executor kept running goes on: its completions move to the new engine */
    for (int i = 0; i < 256; i++)
        if (X.live[i].live) {
            done_arg *d = new_done(i, true, X.live[i].attempt);
            tn_engine_after(E, tn_engine_now(E) + 1000000000LL, sx_done, d);
        }
}

/* Process inputs, then let simulated time move `ticks` timers forward. */
static void settle(int ticks)
{
    for (int i = 0; i <= ticks; i++) {
        while (tn_engine_step(E, NULL) > 0)
            ;
        if (i < ticks && !tn_engine_advance(E))
            break;
    }
}

static void apply(const char *yaml)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_def_parse("test.yaml", yaml, strlen(yaml), &d, &m), TN_OK, "%s", m.text);
    char *b;
    size_t n;
    cr_assert_eq(tn_def_encode(d, &b, &n), TN_OK);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = n};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
    free(b);
    tn_def_free(d);
}

static uint64_t start_opts(const char *name, tn_cmd *c)
{
    c->kind = TN_CMD_START;
    c->workflow = name;
    cr_assert_eq(tn_engine_call(E, c), TN_OK, "%s", c->msg);
    return c->out_id;
}

static uint64_t start(const char *name)
{
    tn_cmd c = {0};
    return start_opts(name, &c);
}

static int run(uint64_t wf)
{
    tn_errmsg m = {{0}};
    int st = tn_engine_run_until(E, wf, &m);
    return st;
}

static int cmd(tn_cmd_kind kind, uint64_t id)
{
    tn_cmd c = {.kind = kind, .id = id};
    tn_engine_call(E, &c);
    return c.err;
}

typedef struct tinfo {
    uint64_t id;
    uint8_t state;
    uint32_t attempt;
    bool found;
} tinfo;

typedef struct tfind {
    const char *name;
    uint64_t id;
} tfind;

static int tfind_cb(void *ctx, const tn_event *ev)
{
    tfind *f = ctx;
    if (ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_RERUN)
        f->id = 0;
    const tn_attr *a = tn_event_attr(ev, "name");
    if (ev->machine == TN_MACHINE_TASK && a && tn_str_eq(a->s, f->name))
        f->id = ev->task;
    return 0;
}

/* The task called `name` in the current run of workflow wf. */
static tinfo task(uint64_t wf, const char *name)
{
    tfind f = {name, 0};
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, tfind_cb, &f, &fr);
    tinfo t = {0};
    if (!f.id)
        return t;
    tn_task_proj p;
    cr_assert_eq(tn_evlog_task(tn_engine_log(E), f.id, &p), TN_OK);
    t.id = f.id;
    t.state = p.state;
    t.attempt = p.attempt;
    t.found = true;
    return t;
}

static uint8_t wf_state(uint64_t wf)
{
    tn_wf_proj p;
    cr_assert_eq(tn_evlog_wf(tn_engine_log(E), wf, &p), TN_OK);
    return p.state;
}

static const char *tsn(uint8_t s)
{
    return tn_sm_state_name(&tn_sm_task, s);
}
static const char *wsn(int s)
{
    return s < 0 ? "(none)" : tn_sm_state_name(&tn_sm_workflow, (unsigned)s);
}

#define ASSERT_WF(wf, want)                                                                    \
    do {                                                                                       \
        int _s = (int)wf_state(wf);                                                            \
        cr_assert_eq(_s, want, "workflow %" PRIu64 " is %s, want %s", (uint64_t)(wf), wsn(_s), \
                     wsn(want));                                                               \
    } while (0)

#define ASSERT_TASK(wf, name, want_state, want_attempt)                                   \
    do {                                                                                  \
        tinfo _t = task(wf, name);                                                        \
        cr_assert(_t.found, "task %s was never created", name);                           \
        cr_assert_eq(_t.state, want_state, "task %s is %s, want %s", name, tsn(_t.state), \
                     tsn(want_state));                                                    \
        cr_assert_eq(_t.attempt, want_attempt, "task %s attempt %u, want %u", name,       \
                     _t.attempt, (unsigned)(want_attempt));                               \
    } while (0)

#define ASSERT_NO_TASK(wf, name) \
    cr_assert_not(task(wf, name).found, "task %s was created", name)

/* Count events of a kind for a task/workflow. */
typedef struct ecount {
    unsigned machine, event;
    uint64_t task;
    int n;
    int64_t first_at;
} ecount;

static int ecount_cb(void *ctx, const tn_event *ev)
{
    ecount *c = ctx;
    if (ev->machine == c->machine && ev->event == c->event &&
        (!c->task || ev->task == c->task)) {
        if (!c->n)
            c->first_at = ev->at;
        c->n++;
    }
    return 0;
}

static ecount events(uint64_t wf, unsigned machine, unsigned event, uint64_t task_id)
{
    ecount c = {machine, event, task_id, 0, 0};
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, ecount_cb, &c, &fr);
    return c;
}

TestSuite(start, .init = setup, .fini = teardown);
TestSuite(control, .init = setup, .fini = teardown);
TestSuite(logic, .init = setup, .fini = teardown);
TestSuite(serial, .init = setup, .fini = teardown);
TestSuite(params, .init = setup, .fini = teardown);
TestSuite(scale, .init = setup, .fini = teardown);
TestSuite(restart, .init = setup, .fini = teardown);

/* ------------------------------------------------------------------------------ */
/* start */

static int fired[8];
static unsigned nfired;

static void note_fired(tn_engine *e, void *arg)
{
    (void)e;
    if (nfired < 8)
        fired[nfired++] = (int)(intptr_t)arg;
}

/* Callback timers fire from their own list merged with the heap: still earliest first,
 * equal ones in the order they were added, later ones only when due. */
Test(start, callback_timers_fire_in_due_order)
{
    int64_t now = tn_engine_now(E);
    nfired = 0;
    const int64_t ms = 1000000;
    tn_engine_after(E, now + 30 * ms, note_fired, (void *)(intptr_t)3);
    tn_engine_after(E, now + 10 * ms, note_fired, (void *)(intptr_t)1);
    tn_engine_after(E, now + 20 * ms, note_fired, (void *)(intptr_t)2);
    tn_engine_after(E, now + 10 * ms, note_fired, (void *)(intptr_t)11);
    tn_engine_after(E, now + 500 * ms, note_fired, (void *)(intptr_t)5);
    tn_engine_step(E, NULL);
    cr_assert_eq(nfired, 0, "nothing is due yet");
    for (int i = 0; i < 100 && nfired < 5; i++)
        if (tn_engine_step(E, NULL) == 0)
            tn_engine_advance(E);
    cr_assert_eq(nfired, 5);
    int want[] = {1, 11, 2, 3, 5};
    for (unsigned i = 0; i < 5; i++)
        cr_assert_eq(fired[i], want[i], "fired[%u] = %d, want %d", i, fired[i], want[i]);
}

Test(start, serial_chain)
{
    apply("name: chain\ntasks:\n"
          "  - {name: a, type: noop, duration: 1s}\n"
          "  - {name: b, type: noop, deps: [a], duration: 1s}\n"
          "  - {name: c, type: noop, deps: [b], duration: 1s}\n");
    uint64_t wf = start("chain");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "c", TN_TASK_S_SUCCESS, 1);
    /* b started only after a ended */
    ecount ra = events(wf, TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, task(wf, "a").id);
    ecount sb = events(wf, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, task(wf, "b").id);
    cr_assert_geq(sb.first_at, ra.first_at);
}

Test(start, parallel_and_diamond)
{
    apply("name: diamond\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - {name: b, type: noop, deps: [a], duration: 3s}\n"
          "  - {name: c, type: noop, deps: [a], duration: 1s}\n"
          "  - {name: d, type: noop, deps: [b, c]}\n"
          "  - {name: e, type: noop, deps: [d]}\n"
          "  - {name: f, type: noop, deps: [d]}\n"
          "  - {name: g, type: noop, deps: [e, f]}\n");
    uint64_t wf = start("diamond");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    const char *all[] = {"a", "b", "c", "d", "e", "f", "g"};
    for (int i = 0; i < 7; i++)
        ASSERT_TASK(wf, all[i], TN_TASK_S_SUCCESS, 1);
    /* d waited for the slower of b and c */
    ecount rb = events(wf, TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, task(wf, "b").id);
    ecount sd = events(wf, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, task(wf, "d").id);
    cr_assert_geq(sd.first_at, rb.first_at);
}

Test(start, fan_in_with_mixed_results_continue)
{
    apply("name: fanin\nfailure_strategy: continue\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - {name: b, type: noop, result: failure}\n"
          "  - {name: c, type: noop, deps: [a, b]}\n"
          "  - {name: x, type: noop, duration: 5s}\n"
          "  - {name: y, type: noop, deps: [x]}\n");
    uint64_t wf = start("fanin");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_FAILURE, 1);
    ASSERT_NO_TASK(wf, "c");                    /* downstream of a failure is never created */
    ASSERT_TASK(wf, "y", TN_TASK_S_SUCCESS, 1); /* an independent branch finishes */
}

Test(start, failure_strategy_end_kills_running_siblings)
{
    apply("name: endfail\nfailure_strategy: end\ntasks:\n"
          "  - {name: a, type: noop, result: failure, duration: 1s}\n"
          "  - {name: long, type: noop, duration: 1h}\n"
          "  - {name: after, type: noop, deps: [long]}\n");
    uint64_t wf = start("endfail");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_TASK(wf, "a", TN_TASK_S_FAILURE, 1);
    ASSERT_TASK(wf, "long", TN_TASK_S_KILL, 1);
    ASSERT_NO_TASK(wf, "after");
}

Test(start, retry_then_success)
{
    static const script s[] = {{"flaky", "ffs", 1000}, {0}};
    X.scripts = s;
    apply("name: retry\ntasks:\n"
          "  - {name: flaky, type: shell, command: 'true', retries: 3, retry_interval: 10s}\n"
          "  - {name: next, type: noop, deps: [flaky]}\n");
    uint64_t wf = start("retry");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "flaky", TN_TASK_S_SUCCESS, 3);
    ASSERT_TASK(wf, "next", TN_TASK_S_SUCCESS, 1);
    tinfo f = task(wf, "flaky");
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_RETRY, f.id).n, 2);
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_RUNNING, f.id).n, 3);
}

Test(start, retries_exhausted)
{
    static const script s[] = {{"bad", "f", 100}, {0}};
    X.scripts = s;
    apply("name: exhaust\ntasks:\n"
          "  - {name: bad, type: shell, command: 'false', retries: 2, retry_interval: 1s}\n");
    uint64_t wf = start("exhaust");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_TASK(wf, "bad", TN_TASK_S_FAILURE, 3);
}

Test(start, timeout_warn_fail_warnfail)
{
    static const script s[] = {{"slow", "s", 10000}, {0}};
    X.scripts = s;
    apply(
        "name: tw\ntasks:\n"
        "  - {name: slow, type: shell, command: sleep, timeout: 1s, timeout_strategy: warn}\n");
    uint64_t wf = start("tw");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "slow", TN_TASK_S_SUCCESS, 1);
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_TIMEOUT, 0).n, 1);

    /* fail and warnfail, as DolphinScheduler 3.3 does it: the task is killed and not
     * retried (retries apply to failures, not kills), the others go on, and the run ends
     * STOP */
    const char *strat[] = {"fail", "warnfail"};
    for (int i = 0; i < 2; i++) {
        char y[320];
        snprintf(y, sizeof(y),
                 "name: tf%d\ntasks:\n"
                 "  - {name: slow, type: shell, command: sleep, timeout: 1s, "
                 "timeout_strategy: %s, retries: 1}\n"
                 "  - {name: other, type: noop, duration: 1h}\n"
                 "  - {name: after, type: noop, deps: [slow]}\n",
                 i, strat[i]);
        apply(y);
        snprintf(y, sizeof(y), "tf%d", i);
        wf = start(y);
        cr_assert_eq(run(wf), TN_WF_S_STOP, "%s: the run stops", strat[i]);
        ASSERT_TASK(wf, "slow", TN_TASK_S_KILL, 1);
        ASSERT_TASK(wf, "other", TN_TASK_S_SUCCESS, 1);
        ASSERT_NO_TASK(wf, "after");
        tinfo sl = task(wf, "slow");
        cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_TIMEOUT, 0).n, 1);
        cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_RETRY, sl.id).n, 0, "not retried");
    }
}

static void task_reason(uint64_t wf, const char *name, char *out, size_t len)
{
    tn_task_proj p;
    cr_assert_eq(tn_evlog_task(tn_engine_log(E), task(wf, name).id, &p), TN_OK);
    snprintf(out, len, "%s", p.reason);
}

#define ASSERT_REASON(wf, name, want)                                                       \
    do {                                                                                    \
        char _r[256];                                                                       \
        task_reason(wf, name, _r, sizeof(_r));                                              \
        cr_assert(strstr(_r, want), "task %s: reason \"%s\" lacks \"%s\"", name, _r, want); \
    } while (0)

/* Every failed or killed task says why, in its projection (replay rebuilds it byte for
 * byte: teardown compares): the exit status, a timeout, who killed it, a dispatch
 * timeout, a stop; a success says nothing. */
Test(start, failed_and_killed_tasks_say_why)
{
    static const script s[] = {{"bad", "f", 100}, {"slow", "s", 10000}, {0}};
    X.scripts = s;
    apply("name: why\nfailure_strategy: continue\ntasks:\n"
          "  - {name: bad, type: shell, command: x}\n"
          "  - {name: slow, type: shell, command: x, timeout: 1s, timeout_strategy: fail}\n"
          "  - {name: fine, type: noop}\n"
          "  - {name: victim, type: noop, duration: 1h}\n");
    uint64_t wf = start("why");
    settle(0);
    tn_cmd k = {.kind = TN_CMD_KILL_TASK, .id = task(wf, "victim").id, .actor = "user:alice"};
    cr_assert_eq(tn_engine_call(E, &k), TN_OK, "%s", k.msg);
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_REASON(wf, "bad", "exit status 1");
    ASSERT_REASON(wf, "slow", "timed out after 1.0s (timeout_strategy fail)");
    ASSERT_REASON(wf, "victim", "killed by user:alice");
    char r[256];
    task_reason(wf, "fine", r, sizeof(r));
    cr_assert_str_eq(r, "", "a success has no reason");

    X.no_worker = true;
    apply("name: why2\ntasks:\n  - {name: a, type: noop, dispatch_timeout: 10s}\n");
    apply("name: why3\ntasks:\n  - {name: a, type: noop}\n");
    uint64_t w2 = start("why2"), w3 = start("why3");
    settle(0);
    tn_cmd st = {.kind = TN_CMD_STOP, .id = w3, .actor = "user:bob"};
    cr_assert_eq(tn_engine_call(E, &st), TN_OK, "%s", st.msg);
    cr_assert_eq(run(w2), TN_WF_S_FAILURE);
    cr_assert_eq(run(w3), TN_WF_S_STOP);
    ASSERT_REASON(w2, "a", "dispatch timeout");
    ASSERT_REASON(w3, "a", "killed by user:bob: the workflow was stopped");
}

Test(start, delay_before_dispatch)
{
    apply("name: delayed\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - {name: b, type: noop, deps: [a], delay: 30s}\n");
    uint64_t wf = start("delayed");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    tinfo b = task(wf, "b");
    ecount sub = events(wf, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, b.id);
    ecount dis = events(wf, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, b.id);
    cr_assert_eq(dis.first_at - sub.first_at, 30LL * 1000000000LL);
}

Test(start, workflow_timeout_warn_only_records)
{
    apply("name: wto\ntimeout: 1m\ntasks:\n  - {name: a, type: noop, duration: 5m}\n");
    uint64_t wf = start("wto");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_eq(events(wf, TN_MACHINE_WORKFLOW, TN_WF_E_TIMEOUT, 0).n, 1);
}

/* A workflow timeout with fail or warnfail does what it says: its running tasks are
 * killed, nothing else starts, nothing is retried, and the run ends FAILURE when the
 * timeout passes (not when its tasks would have ended). */
Test(start, workflow_timeout_fail_kills_its_tasks_and_fails)
{
    const char *strat[] = {"fail", "warnfail"};
    for (int i = 0; i < 2; i++) {
        char y[400];
        snprintf(y, sizeof(y),
                 "name: wtf%d\ntimeout: 2s\ntimeout_strategy: %s\ntasks:\n"
                 "  - {name: a, type: noop, duration: 6s}\n"
                 "  - {name: b, type: noop, deps: [a]}\n"
                 "  - {name: c, type: noop, result: failure, retries: 3, retry_interval: 1s}\n",
                 i, strat[i]);
        apply(y);
        snprintf(y, sizeof(y), "wtf%d", i);
        uint64_t wf = start(y);
        cr_assert_eq(run(wf), TN_WF_S_FAILURE, "%s", strat[i]);
        ASSERT_TASK(wf, "a", TN_TASK_S_KILL, 1);
        ASSERT_NO_TASK(wf, "b");
        tinfo c = task(wf, "c");
        cr_assert_eq(c.state, TN_TASK_S_KILL, "c waited for its retry and was killed");
        cr_assert_lt(c.attempt, 4, "no retry after the timeout");
        tn_wf_proj p;
        cr_assert_eq(tn_evlog_wf(tn_engine_log(E), wf, &p), TN_OK);
        cr_assert_eq(p.ended_at - p.started_at, 2000000000LL, "it ends at its timeout");
    }
}

Test(start, disabled_task_is_skipped_and_successors_go_on)
{
    apply("name: dis\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - {name: b, type: noop, deps: [a], enabled: false}\n"
          "  - {name: c, type: noop, deps: [b]}\n");
    uint64_t wf = start("dis");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_NO_TASK(wf, "b");
    ASSERT_TASK(wf, "c", TN_TASK_S_SUCCESS, 1);
}

Test(start, dry_run_marks_tasks_successful)
{
    static const script s[] = {{"a", "f", 100}, {0}};
    X.scripts = s;
    apply("name: dry\ntasks:\n"
          "  - {name: a, type: shell, command: 'exit 1'}\n"
          "  - {name: b, type: noop, deps: [a]}\n");
    tn_cmd c = {.dry_run = true};
    uint64_t wf = start_opts("dry", &c);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 1);
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, 0).n, 0, "nothing ran");
}

Test(start, dispatch_timeout_fails_a_task_nobody_took)
{
    static const script s[] = {{"orphan", "n", 0}, {0}};
    X.scripts = s;
    apply("name: dto\ntasks:\n"
          "  - {name: orphan, type: shell, command: 'true', dispatch_timeout: 30s}\n");
    uint64_t wf = start("dto");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_TASK(wf, "orphan", TN_TASK_S_FAILURE, 1);
}

Test(start, start_from_node_modes)
{
    const char *y = "name: modes\ntasks:\n"
                    "  - {name: a, type: noop}\n"
                    "  - {name: b, type: noop, deps: [a]}\n"
                    "  - {name: c, type: noop, deps: [b]}\n"
                    "  - {name: d, type: noop, deps: [c]}\n";
    apply(y);
    const char *from[] = {"b"};
    struct {
        tn_start_mode mode;
        const char *ran, *not_ran;
    } cases[] = {{TN_MODE_TASK_ONLY, "b", "acd"},
                 {TN_MODE_TASK_PRE, "ab", "cd"},
                 {TN_MODE_TASK_POST, "bcd", "a"}};
    for (int i = 0; i < 3; i++) {
        tn_cmd c = {.from = from, .nfrom = 1, .mode = cases[i].mode};
        uint64_t wf = start_opts("modes", &c);
        cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
        for (const char *p = cases[i].ran; *p; p++) {
            char n[2] = {*p, 0};
            ASSERT_TASK(wf, n, TN_TASK_S_SUCCESS, 1);
        }
        for (const char *p = cases[i].not_ran; *p; p++) {
            char n[2] = {*p, 0};
            ASSERT_NO_TASK(wf, n);
        }
    }
}

/* ------------------------------------------------------------------------------ */
/* control */

Test(control, pause_then_resume)
{
    apply("name: pz\ntasks:\n"
          "  - {name: a, type: noop, duration: 10s}\n"
          "  - {name: b, type: noop, deps: [a]}\n");
    uint64_t wf = start("pz");
    tn_engine_step(E, NULL); /* a is accepted and running */
    tn_engine_step(E, NULL);
    cr_assert_eq(cmd(TN_CMD_PAUSE, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_PAUSE);
    /* pause never interrupts a running task; its successor is created in PAUSE */
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_PAUSE, 1);
    cr_assert_eq(cmd(TN_CMD_RESUME, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 1); /* no new attempt */
}

Test(control, stop_then_recover)
{
    apply("name: st\ntasks:\n"
          "  - {name: a, type: noop, duration: 1h}\n"
          "  - {name: b, type: noop, deps: [a]}\n");
    uint64_t wf = start("st");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    ASSERT_TASK(wf, "a", TN_TASK_S_KILL, 1);
    ASSERT_NO_TASK(wf, "b");
    cr_assert_eq(cmd(TN_CMD_RECOVER, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 2); /* a killed task gets a new attempt */
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 1);
}

Test(control, stop_of_a_task_waiting_for_retry_and_of_a_logic_task)
{
    static const script s[] = {{"r", "f", 100}, {0}};
    X.scripts = s;
    apply("name: stw\ntasks:\n"
          "  - {name: r, type: shell, command: 'false', retries: 5, retry_interval: 1h}\n"
          "  - name: dep\n    type: dependent\n    depends: [{workflow: nothing_here}]\n"
          "    check_interval: 1m\n");
    uint64_t wf = start("stw");
    settle(1);

    cr_assert_eq(task(wf, "r").state, TN_TASK_S_DELAY_EXECUTION);
    cr_assert_eq(task(wf, "dep").state, TN_TASK_S_RUNNING_EXECUTION);
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    ASSERT_TASK(wf, "r", TN_TASK_S_KILL, 2);
    ASSERT_TASK(wf, "dep", TN_TASK_S_KILL, 1);
    /* nothing of them survives: no timer fires later */
    tn_engine_run_until(E, 0, NULL);
    ASSERT_TASK(wf, "r", TN_TASK_S_KILL, 2);
}

Test(control, rerun_reuses_the_instance)
{
    apply("name: rr\ntasks:\n  - {name: a, type: noop}\n");
    tn_cmd c = {.from = (const char *[]){"a"}, .nfrom = 1, .mode = TN_MODE_TASK_ONLY};
    uint64_t wf = start_opts("rr", &c);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    uint64_t first = task(wf, "a").id;
    cr_assert_eq(cmd(TN_CMD_RERUN, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    tn_wf_proj p;
    tn_evlog_wf(tn_engine_log(E), wf, &p);
    cr_assert_eq(p.run, 2);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    cr_assert_neq(task(wf, "a").id, first, "a new run has new task instances");
    cr_assert_eq(cmd(TN_CMD_RERUN, 999), TN_ERR_NOENT);
}

Test(control, recover_failed_keeps_successes)
{
    static const script s[] = {{"b", "fs", 100}, {0}};
    X.scripts = s;
    apply("name: rf\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - {name: b, type: shell, command: x, deps: [a]}\n"
          "  - {name: c, type: noop, deps: [b]}\n");
    uint64_t wf = start("rf");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_TASK(wf, "b", TN_TASK_S_FAILURE, 1);
    cr_assert_eq(cmd(TN_CMD_RECOVER, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 2);
    ASSERT_TASK(wf, "c", TN_TASK_S_SUCCESS, 1);
    tn_wf_proj p;
    tn_evlog_wf(tn_engine_log(E), wf, &p);
    cr_assert_eq(p.id, wf);
    cr_assert_eq(p.run, 2, "recover-failed is a new run of the same instance");
}

Test(control, force_success_then_recover)
{
    static const script s[] = {{"b", "f", 100}, {0}};
    X.scripts = s;
    apply("name: fs\ntasks:\n"
          "  - {name: b, type: shell, command: x}\n"
          "  - {name: c, type: noop, deps: [b]}\n");
    uint64_t wf = start("fs");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    tinfo b = task(wf, "b");
    cr_assert_eq(cmd(TN_CMD_FORCE_SUCCESS, b.id), TN_OK);
    ASSERT_TASK(wf, "b", TN_TASK_S_FORCED_SUCCESS, 1);
    cr_assert_eq(cmd(TN_CMD_RECOVER, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "c", TN_TASK_S_SUCCESS, 1);
    /* a successful task cannot be forced */
    cr_assert_eq(cmd(TN_CMD_FORCE_SUCCESS, task(wf, "c").id), TN_ERR_ILLEGAL);
}

Test(control, kill_one_task)
{
    apply("name: k1\nfailure_strategy: continue\ntasks:\n"
          "  - {name: a, type: noop, duration: 1h}\n"
          "  - {name: b, type: noop, duration: 1s}\n");
    uint64_t wf = start("k1");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    cr_assert_eq(cmd(TN_CMD_KILL_TASK, task(wf, "a").id), TN_OK);
    int st = run(wf);
    ASSERT_TASK(wf, "a", TN_TASK_S_KILL, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 1);
    cr_assert_eq(st, TN_WF_S_STOP, "a run with a killed task ends STOP, got %s", wsn(st));
}

Test(control, illegal_commands_are_refused)
{
    apply("name: il\ntasks:\n  - {name: a, type: noop}\n");
    uint64_t wf = start("il");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_eq(cmd(TN_CMD_PAUSE, wf), TN_ERR_ILLEGAL);
    cr_assert_eq(cmd(TN_CMD_RESUME, wf), TN_ERR_ILLEGAL);
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_ERR_ILLEGAL);
    cr_assert_eq(cmd(TN_CMD_RECOVER, wf), TN_ERR_ILLEGAL);
    cr_assert_eq(cmd(TN_CMD_KILL_TASK, task(wf, "a").id), TN_ERR_ILLEGAL);
    tn_cmd c = {.kind = TN_CMD_START, .workflow = "nope"};
    cr_assert_eq(tn_engine_call(E, &c), TN_ERR_NOENT);
    cr_assert(strstr(c.msg, "def apply"), "%s", c.msg);
}

/* ------------------------------------------------------------------------------ */
/* logic tasks */

Test(logic, conditions_handle_a_failure)
{
    apply("name: cond\ntasks:\n"
          "  - {name: a, type: noop, result: failure}\n"
          "  - name: check\n    type: conditions\n    deps: [a]\n"
          "    when: {all: [{task: a, state: success}]}\n"
          "    on_success: [load]\n    on_failure: [alert]\n"
          "  - {name: load, type: noop, deps: [check]}\n"
          "  - {name: alert, type: noop, deps: [check]}\n");
    uint64_t wf = start("cond");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS, "a failure handled by a conditions task");
    ASSERT_TASK(wf, "check", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "alert", TN_TASK_S_SUCCESS, 1);
    ASSERT_NO_TASK(wf, "load");
}

Test(logic, conditions_success_branch)
{
    apply("name: cond2\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - name: check\n    type: conditions\n    deps: [a]\n"
          "    when: {all: [{task: a, state: success}]}\n"
          "    on_success: [load]\n    on_failure: [alert]\n"
          "  - {name: load, type: noop, deps: [check]}\n"
          "  - {name: alert, type: noop, deps: [check]}\n"
          "  - {name: after_alert, type: noop, deps: [alert]}\n");
    uint64_t wf = start("cond2");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "load", TN_TASK_S_SUCCESS, 1);
    ASSERT_NO_TASK(wf, "alert");
    ASSERT_NO_TASK(wf, "after_alert"); /* the whole branch is skipped */
}

Test(logic, switch_follows_a_passed_value)
{
    apply("name: sw\ntasks:\n"
          "  - {name: count, type: noop, outputs: {rows: \"42\"}}\n"
          "  - name: route\n    type: switch\n    deps: [count]\n"
          "    cases:\n      - {when: \"${rows} > 100\", then: big}\n"
          "      - {when: \"${rows} > 0\", then: small}\n"
          "    default: none\n"
          "  - {name: big, type: noop, deps: [route]}\n"
          "  - {name: small, type: noop, deps: [route]}\n"
          "  - {name: none, type: noop, deps: [route]}\n"
          "  - {name: join, type: noop, deps: [big, small, none]}\n");
    uint64_t wf = start("sw");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "small", TN_TASK_S_SUCCESS, 1);
    ASSERT_NO_TASK(wf, "big");
    ASSERT_NO_TASK(wf, "none");
    ASSERT_TASK(wf, "join", TN_TASK_S_SUCCESS, 1);
}

Test(logic, dependent_waits_then_follows)
{
    apply("name: upstream\ntasks:\n  - {name: u, type: noop, duration: 1m}\n");
    apply("name: downstream\ntasks:\n"
          "  - name: wait\n    type: dependent\n"
          "    depends: [{workflow: upstream, task: ALL, cycle: day, date: today}]\n"
          "    check_interval: 10s\n"
          "  - {name: after, type: noop, deps: [wait]}\n");
    uint64_t down = start("downstream");
    /* no upstream instance in the window: it keeps waiting */
    settle(3);

    cr_assert_eq(task(down, "wait").state, TN_TASK_S_RUNNING_EXECUTION);
    uint64_t up = start("upstream");
    cr_assert_eq(run(up), TN_WF_S_SUCCESS);
    cr_assert_eq(run(down), TN_WF_S_SUCCESS);
    ASSERT_TASK(down, "after", TN_TASK_S_SUCCESS, 1);
}

/* A dependent task's date window is in the zone of the run's params (TERN_TZ): at 01:00
 * in Shanghai, an upstream run of 23:00 the evening before is "yesterday", though both
 * fall on one UTC day. */
Test(logic, dependent_window_is_in_the_params_zone)
{
    setenv("TERN_TZ", "Asia/Shanghai", 1);
    tn_engine_close(E);
    vclock = 1795014000LL * 1000000000LL; /* 2026-11-18 15:00 UTC, 23:00 in Shanghai */
    open_engine();
    apply("name: upstream\ntasks:\n  - {name: u, type: noop}\n");
    apply("name: d_today\ntasks:\n  - name: wait\n    type: dependent\n"
          "    depends: [{workflow: upstream, task: ALL, cycle: day, date: today}]\n"
          "    check_interval: 10s\n");
    apply("name: d_yesterday\ntasks:\n  - name: wait\n    type: dependent\n"
          "    depends: [{workflow: upstream, task: ALL, cycle: day, date: last1}]\n"
          "    check_interval: 10s\n");
    uint64_t up = start("upstream");
    cr_assert_eq(run(up), TN_WF_S_SUCCESS);
    int64_t later = vclock + 2LL * 3600 * 1000000000LL; /* 01:00 the next day in Shanghai */
    tn_cmd c1 = {.sched_ns = later}, c2 = {.sched_ns = later};
    uint64_t today = start_opts("d_today", &c1), yest = start_opts("d_yesterday", &c2);
    cr_assert_eq(run(yest), TN_WF_S_SUCCESS);
    settle(3);
    cr_assert_eq(task(today, "wait").state, TN_TASK_S_RUNNING_EXECUTION,
                 "today's window saw the run of the day before");
    cr_assert_eq(cmd(TN_CMD_STOP, today), TN_OK);
    settle(3);
    setenv("TERN_TZ", "UTC", 1);
}

Test(logic, dependent_on_a_failed_workflow_fails)
{
    apply("name: upf\ntasks:\n  - {name: u, type: noop, result: failure}\n");
    apply("name: downf\ntasks:\n"
          "  - name: wait\n    type: dependent\n"
          "    depends: [{workflow: upf}]\n");
    uint64_t up = start("upf");
    cr_assert_eq(run(up), TN_WF_S_FAILURE);
    uint64_t down = start("downf");
    cr_assert_eq(run(down), TN_WF_S_FAILURE);
    ASSERT_TASK(down, "wait", TN_TASK_S_FAILURE, 1);
}

static uint64_t child_of(uint64_t wf, const char *name)
{
    tinfo t = task(wf, name);
    ecount c = events(wf, TN_MACHINE_TASK, TN_TASK_E_RUNNING, t.id);
    cr_assert_gt(c.n, 0);
    tn_task_proj p;
    tn_evlog_task(tn_engine_log(E), t.id, &p);
    /* the child's id is in the RUNNING event; find it through the projections */
    tn_wf_proj w;
    for (uint64_t id = 1; id < 1000; id++)
        if (tn_evlog_wf(tn_engine_log(E), id, &w) == TN_OK && w.parent_task == t.id)
            return id;
    return 0;
}

Test(logic, sub_workflow_success_failure_and_stop)
{
    apply("name: child_ok\nparams: {who: child}\ntasks:\n  - {name: c1, type: noop}\n");
    apply("name: child_bad\ntasks:\n  - {name: c1, type: noop, result: failure}\n");
    apply("name: child_long\ntasks:\n  - {name: c1, type: noop, duration: 1h}\n");
    apply("name: parent\nparams: {who: parent, extra: x}\ntasks:\n"
          "  - {name: sub, type: sub_workflow, workflow: child_ok}\n"
          "  - {name: after, type: noop, deps: [sub]}\n");
    uint64_t wf = start("parent");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "sub", TN_TASK_S_SUCCESS, 1);
    uint64_t child = child_of(wf, "sub");
    cr_assert_neq(child, 0);
    ASSERT_WF(child, TN_WF_S_SUCCESS);

    apply("name: parent2\ntasks:\n  - {name: sub, type: sub_workflow, workflow: child_bad}\n");
    wf = start("parent2");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    ASSERT_TASK(wf, "sub", TN_TASK_S_FAILURE, 1);
    ASSERT_REASON(wf, "sub", "ended FAILURE"); /* "its sub-workflow instance N ended ..." */

    apply("name: parent3\ntasks:\n  - {name: sub, type: sub_workflow, workflow: child_long}\n");
    wf = start("parent3");
    for (int i = 0; i < 6; i++)
        tn_engine_step(E, NULL);
    child = child_of(wf, "sub");
    cr_assert_neq(child, 0);
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    cr_assert_eq(run(child), TN_WF_S_STOP, "stop goes down to the child");
    ASSERT_TASK(child, "c1", TN_TASK_S_KILL, 1);
    /* recover: the same child instance runs again, killed tasks with a new attempt */
    cr_assert_eq(cmd(TN_CMD_RECOVER, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_eq(child_of(wf, "sub"), child, "never a second child instance");
    ASSERT_TASK(child, "c1", TN_TASK_S_SUCCESS, 2);
}

Test(logic, sub_workflow_pause_cascades)
{
    apply("name: kid\ntasks:\n"
          "  - {name: k1, type: noop, duration: 1m}\n"
          "  - {name: k2, type: noop, deps: [k1]}\n");
    apply("name: mom\ntasks:\n  - {name: sub, type: sub_workflow, workflow: kid}\n");
    uint64_t wf = start("mom");
    for (int i = 0; i < 6; i++)
        tn_engine_step(E, NULL);
    uint64_t child = child_of(wf, "sub");
    cr_assert_eq(cmd(TN_CMD_PAUSE, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_PAUSE);
    ASSERT_WF(child, TN_WF_S_PAUSE);
    ASSERT_TASK(child, "k2", TN_TASK_S_PAUSE, 1);
    cr_assert_eq(cmd(TN_CMD_RESUME, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_WF(child, TN_WF_S_SUCCESS);
    cr_assert_eq(child_of(wf, "sub"), child);
}

/* A stop of the parent kills the child's task; forced to success, the child has nothing
 * left to run, so recovering the parent ends the child in the same engine step, after the
 * parent's own scheduling pass: the parent must still go on to its next task. */
Test(logic, parent_recovered_with_a_child_that_ends_at_once_goes_on)
{
    static const script s[] = {{"hold", "h", 0}, {0}};
    X.scripts = s;
    apply("name: kid1\ntasks:\n  - {name: hold, type: shell, command: sleep 300}\n");
    apply("name: mom1\ntasks:\n"
          "  - {name: sub, type: sub_workflow, workflow: kid1}\n"
          "  - {name: post, type: noop, deps: [sub]}\n");
    uint64_t wf = start("mom1");
    for (int i = 0; i < 6; i++)
        tn_engine_step(E, NULL);
    uint64_t child = child_of(wf, "sub");
    cr_assert_neq(child, 0);
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    ASSERT_TASK(child, "hold", TN_TASK_S_KILL, 1);
    cr_assert_eq(cmd(TN_CMD_FORCE_SUCCESS, task(child, "hold").id), TN_OK);
    cr_assert_eq(cmd(TN_CMD_RECOVER, wf), TN_OK);
    int st = run(wf);
    cr_assert_eq(st, TN_WF_S_SUCCESS, "parent ended %s", wsn(st));
    ASSERT_WF(child, TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "post", TN_TASK_S_SUCCESS, 1);
}

/* ------------------------------------------------------------------------------ */
/* execution types and task groups */

Test(serial, serial_wait_runs_one_after_the_other)
{
    apply(
        "name: sw1\nexecution: serial_wait\ntasks:\n  - {name: a, type: noop, duration: 1m}\n");
    uint64_t w1 = start("sw1"), w2 = start("sw1");
    tn_engine_step(E, NULL);
    ASSERT_WF(w2, TN_WF_S_SERIAL_WAIT);
    cr_assert_eq(run(w2), TN_WF_S_SUCCESS);
    ASSERT_WF(w1, TN_WF_S_SUCCESS);
    ecount e1 = events(w1, TN_MACHINE_WORKFLOW, TN_WF_E_SUCCEED, 0);
    ecount s2 = events(w2, TN_MACHINE_WORKFLOW, TN_WF_E_START, 0);
    cr_assert_geq(s2.first_at, e1.first_at);
}

Test(serial, serial_discard_stops_the_newcomer)
{
    apply("name: sd\nexecution: serial_discard\ntasks:\n  - {name: a, type: noop, duration: "
          "1m}\n");
    uint64_t w1 = start("sd"), w2 = start("sd");
    ASSERT_WF(w2, TN_WF_S_STOP);
    cr_assert_eq(run(w1), TN_WF_S_SUCCESS);
}

/* DolphinScheduler 3.3 (its serial priority integration test): r1, r2, r3 started while
 * r1 runs end r1 STOP, r2 STOP, r3 SUCCESS: the newest wins, the running one included. */
Test(serial, serial_priority_newest_wins_and_stops_the_running_one)
{
    apply("name: sp\nexecution: serial_priority\ntasks:\n  - {name: a, type: noop, duration: "
          "1m}\n");
    uint64_t w1 = start("sp");
    settle(0);
    ASSERT_TASK(w1, "a", TN_TASK_S_RUNNING_EXECUTION, 1);
    uint64_t w2 = start("sp"), w3 = start("sp");
    cr_assert_eq(run(w3), TN_WF_S_SUCCESS);
    ASSERT_WF(w1, TN_WF_S_STOP);
    ASSERT_WF(w2, TN_WF_S_STOP);
    ASSERT_TASK(w1, "a", TN_TASK_S_KILL, 1);
    ASSERT_NO_TASK(w2, "a");
    ecount e1 = events(w1, TN_MACHINE_WORKFLOW, TN_WF_E_STOPPED, 0);
    ecount s3 = events(w3, TN_MACHINE_WORKFLOW, TN_WF_E_START, 0);
    cr_assert_geq(s3.first_at, e1.first_at, "r3 starts once r1 is stopped");
}

Test(serial, task_group_limits_concurrency_across_workflows)
{
    tn_cmd c = {.kind = TN_CMD_TASKGROUP_SET, .name = "db", .slots = 1};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
    apply("name: tg\ntasks:\n"
          "  - {name: g1, type: shell, command: x, task_group: db}\n"
          "  - {name: g2, type: shell, command: x, task_group: db}\n");
    static const script s[] = {{"g1", "s", 1000}, {"g2", "s", 1000}, {0}};
    X.scripts = s;
    uint64_t a = start("tg"), b = start("tg");
    cr_assert_eq(run(a), TN_WF_S_SUCCESS);
    cr_assert_eq(run(b), TN_WF_S_SUCCESS);
    cr_assert_eq(X.max_running_group, 1, "at most one task of the group ran at once");
}

Test(serial, priorities_order_dispatch)
{
    tn_cmd c = {.kind = TN_CMD_TASKGROUP_SET, .name = "one", .slots = 1};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK);
    apply("name: pr\ntasks:\n"
          "  - {name: g_low, type: shell, command: x, task_group: one, priority: lowest}\n"
          "  - {name: g_high, type: shell, command: x, task_group: one, priority: highest}\n"
          "  - {name: g_mid, type: shell, command: x, task_group: one, priority: medium}\n");
    static const script s[] = {
        {"g_low", "s", 100}, {"g_high", "s", 100}, {"g_mid", "s", 100}, {0}};
    X.scripts = s;
    uint64_t wf = start("pr");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    int64_t h = events(wf, TN_MACHINE_TASK, TN_TASK_E_RUNNING, task(wf, "g_high").id).first_at;
    int64_t m = events(wf, TN_MACHINE_TASK, TN_TASK_E_RUNNING, task(wf, "g_mid").id).first_at;
    int64_t l = events(wf, TN_MACHINE_TASK, TN_TASK_E_RUNNING, task(wf, "g_low").id).first_at;
    cr_assert(h <= m && m <= l, "highest first: %" PRId64 " %" PRId64 " %" PRId64, h, m, l);
}

/* ------------------------------------------------------------------------------ */
/* params and the var pool */

typedef struct cap_exec {
    char cmd[512];
} cap_exec;
static cap_exec CAP;

static void cap_dispatch(void *self, const tn_dispatch_req *req)
{
    (void)self;
    if (req->command)
        snprintf(CAP.cmd, sizeof(CAP.cmd), "%s", req->command);
    sx_dispatch(NULL, req);
}
static const tn_executor_ops cap_ops = {cap_dispatch, sx_kill, sx_running, NULL, NULL};

Test(params, precedence_and_passing)
{
    restart(true);
    tn_engine_close(E);
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .no_sync = true},
                        .executor = {&cap_ops, &X, "test"},
                        .virtual_clock = true,
                        .start_ns = vclock};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    X.e = E;
    apply("name: pp\nparams: {g: global, over: global, up: global}\ntasks:\n"
          "  - {name: a, type: noop, outputs: {up: passed}}\n"
          "  - name: b\n    type: shell\n    deps: [a]\n"
          "    params: {local: mine, over: local}\n"
          "    command: echo ${g}/${up}/${local}/${over}/${system.workflow.instance.id}\n");
    uint64_t wf = start("pp");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    char want[256];
    snprintf(want, sizeof(want), "echo global/passed/mine/local/%" PRIu64, wf);
    cr_assert_str_eq(CAP.cmd, want);
    /* start-time overrides win over everything */
    const char *k[] = {"over"}, *v[] = {"cli"};
    tn_cmd c = {.param_keys = k, .param_values = v, .nparams = 1};
    wf = start_opts("pp", &c);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    snprintf(want, sizeof(want), "echo global/passed/mine/cli/%" PRIu64, wf);
    cr_assert_str_eq(CAP.cmd, want);
}

/* The engine with the capturing executor (the command each dispatch carried). */
static void cap_open(void)
{
    tn_engine_close(E);
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .no_sync = true},
                        .executor = {&cap_ops, &X, "test"},
                        .virtual_clock = true,
                        .start_ns = vclock};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    X.e = E;
}

/* The zone of TERN_TZ is the zone of every date of a task, and the command and its params
 * are substituted in one context: $[HH] reads the same in both. */
Test(params, time_zone_is_one_for_command_and_params)
{
    const char *zones[] = {"Asia/Shanghai", "+08:00"};
    for (int z = 0; z < 2; z++) {
        setenv("TERN_TZ", zones[z], 1);
        cap_open();
        apply("name: tz\nparams: {h: '$[HH]', d: '$[yyyyMMdd-1]', id: "
              "'${system.task.instance.id}'}\ntasks:\n"
              "  - {name: a, type: shell, params: {l: '$[HH]'}, command: 'echo "
              "${system.biz.date} ${d} ${h} ${l} $[HH] ${id}=${system.task.instance.id}'}\n");
        uint64_t wf = start("tz");
        cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
        /* the schedule time in Shanghai, computed here without tern */
        tn_wf_proj p;
        cr_assert_eq(tn_evlog_wf(tn_engine_log(E), wf, &p), TN_OK);
        time_t sh = (time_t)(p.created_at / 1000000000LL) + 8 * 3600, y = sh - 86400;
        struct tm tm, ty;
        gmtime_r(&sh, &tm);
        gmtime_r(&y, &ty);
        uint64_t tid = task(wf, "a").id;
        char want[256];
        snprintf(want, sizeof(want),
                 "echo %04d%02d%02d %04d%02d%02d %02d %02d %02d %" PRIu64 "=%" PRIu64,
                 ty.tm_year + 1900, ty.tm_mon + 1, ty.tm_mday, ty.tm_year + 1900, ty.tm_mon + 1,
                 ty.tm_mday, tm.tm_hour, tm.tm_hour, tm.tm_hour, tid, tid);
        cr_assert_str_eq(CAP.cmd, want, "zone %s", zones[z]);
    }
    setenv("TERN_TZ", "UTC", 1);
}

/* --param system.biz.date=... sets the run's business date: the instance records it and
 * every built-in date and $[...] derives from it; a bad value is refused at start. */
Test(params, business_date_set_at_start)
{
    cap_open();
    apply("name: bd\ntasks:\n  - {name: a, type: shell, command: 'echo ${system.biz.date} "
          "${system.biz.curdate} ${system.datetime} $[yyyyMMdd-1] $[HH]'}\n");
    const char *k[] = {"system.biz.date"}, *v[] = {"20240229"};
    tn_cmd c = {.param_keys = k, .param_values = v, .nparams = 1};
    uint64_t wf = start_opts("bd", &c);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_str_eq(CAP.cmd, "echo 20240229 20240301 20240301000000 20240229 00");
    const char *k2[] = {"system.datetime"}, *v2[] = {"20231231153000"};
    tn_cmd c2 = {.param_keys = k2, .param_values = v2, .nparams = 1};
    wf = start_opts("bd", &c2);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_str_eq(CAP.cmd, "echo 20231230 20231231 20231231153000 20231230 15");
    /* refused at start, with the accepted form */
    const char *bad[] = {"2024-02-29", "20240230", "yesterday", ""};
    for (int i = 0; i < 4; i++) {
        const char *bv[] = {bad[i]};
        tn_cmd b = {.kind = TN_CMD_START,
                    .workflow = "bd",
                    .param_keys = k,
                    .param_values = bv,
                    .nparams = 1};
        tn_engine_call(E, &b);
        cr_assert_eq(b.err, TN_ERR_INVAL, "%s accepted", bad[i]);
        cr_assert(strstr(b.msg, "yyyyMMdd"), "%s", b.msg);
    }
    const char *k3[] = {"system.biz.date", "system.biz.curdate"},
               *v3[] = {"20240101", "20240105"};
    tn_cmd b = {.kind = TN_CMD_START,
                .workflow = "bd",
                .param_keys = k3,
                .param_values = v3,
                .nparams = 2};
    tn_engine_call(E, &b);
    cr_assert_eq(b.err, TN_ERR_INVAL);
    cr_assert(strstr(b.msg, "disagrees"), "%s", b.msg);
    /* a tenant (--tenant, the system.tenant param) that is no user name: refused too */
    const char *k4[] = {"system.tenant"}, *v4[] = {"bad/name"};
    tn_cmd t = {.kind = TN_CMD_START,
                .workflow = "bd",
                .param_keys = k4,
                .param_values = v4,
                .nparams = 1};
    tn_engine_call(E, &t);
    cr_assert_eq(t.err, TN_ERR_INVAL);
    cr_assert(strstr(t.msg, "bad tenant"), "%s", t.msg);
}

/* ------------------------------------------------------------------------------ */
/* restart in the middle of each state */

Test(restart, running_tasks_fail_over_and_finish)
{
    apply("name: rs\ntasks:\n"
          "  - {name: a, type: noop, duration: 1m}\n"
          "  - {name: b, type: noop, deps: [a], duration: 1m}\n");
    uint64_t wf = start("rs");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    cr_assert_eq(task(wf, "a").state, TN_TASK_S_RUNNING_EXECUTION);
    restart(true);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 2); /* failed over with a new attempt */
    ASSERT_TASK(wf, "b", TN_TASK_S_SUCCESS, 1);
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_FAILOVER, 0).n, 1);
}

Test(restart, still_running_tasks_continue)
{
    apply("name: rc\ntasks:\n  - {name: a, type: noop, duration: 1m}\n");
    uint64_t wf = start("rc");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    restart(false); /* the executor kept it running */
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_FAILOVER, 0).n, 0);
}

typedef struct due_scan {
    uint64_t task;
    int64_t retry_due, last_dispatch;
} due_scan;

static int due_cb(void *ctx, const tn_event *ev)
{
    due_scan *d = ctx;
    if (ev->task != d->task || ev->machine != TN_MACHINE_TASK)
        return 0;
    if (ev->event == TN_TASK_E_RETRY)
        tn_event_int(ev, "due", &d->retry_due);
    if (ev->event == TN_TASK_E_DISPATCH)
        d->last_dispatch = ev->at;
    return 0;
}

/* A task waiting for a worker when the master restarts waits again (SUBMITTED_SUCCESS,
 * same attempt, its dispatch timeout counted from when it was first queued), and runs
 * once a worker is there. */
Test(restart, a_task_waiting_for_a_worker_waits_again)
{
    X.no_worker = true;
    apply("name: rw\ntasks:\n  - {name: a, type: noop}\n");
    apply("name: rwt\ntasks:\n  - {name: a, type: noop, dispatch_timeout: 1m}\n");
    uint64_t wf = start("rw"), wt = start("rwt");
    settle(0);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUBMITTED_SUCCESS, 1);
    restart(false);
    settle(0);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUBMITTED_SUCCESS, 1);
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, 0).n, 1,
                 "requeued as it was, not queued anew");
    cr_assert_eq(run(wt), TN_WF_S_FAILURE, "its dispatch timeout still fires");
    ecount q = events(wt, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, 0);
    ecount f = events(wt, TN_MACHINE_TASK, TN_TASK_E_FAILED, 0);
    cr_assert_eq(f.first_at - q.first_at, 60LL * 1000000000LL);
    X.no_worker = false;
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
}

Test(restart, retry_due_time_is_kept)
{
    static const script s[] = {{"r", "fs", 100}, {0}};
    X.scripts = s;
    apply("name: rd\ntasks:\n"
          "  - {name: r, type: shell, command: x, retries: 1, retry_interval: 1h}\n");
    uint64_t wf = start("rd");
    settle(1);

    cr_assert_eq(task(wf, "r").state, TN_TASK_S_DELAY_EXECUTION);
    restart(true);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    ASSERT_TASK(wf, "r", TN_TASK_S_SUCCESS, 2);
    due_scan d = {task(wf, "r").id, 0, 0};
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, due_cb, &d, &fr);
    cr_assert_neq(d.retry_due, 0);
    cr_assert_eq(d.last_dispatch, d.retry_due, "the retry ran at its original due time");
}

Test(restart, in_ready_pause_ready_stop_and_serial_wait)
{
    apply("name: rp\ntasks:\n"
          "  - {name: a, type: noop, duration: 1m}\n"
          "  - {name: b, type: noop, deps: [a]}\n");
    uint64_t p = start("rp");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    cr_assert_eq(cmd(TN_CMD_PAUSE, p), TN_OK);
    ASSERT_WF(p, TN_WF_S_READY_PAUSE);
    restart(false);
    cr_assert_eq(run(p), TN_WF_S_PAUSE);
    ASSERT_TASK(p, "b", TN_TASK_S_PAUSE, 1);

    uint64_t s = start("rp");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    cr_assert_eq(cmd(TN_CMD_STOP, s), TN_OK);
    restart(true);
    cr_assert_eq(run(s), TN_WF_S_STOP);

    apply(
        "name: rsw\nexecution: serial_wait\ntasks:\n  - {name: a, type: noop, duration: 1m}\n");
    uint64_t w1 = start("rsw"), w2 = start("rsw");
    ASSERT_WF(w2, TN_WF_S_SERIAL_WAIT);
    restart(true);
    cr_assert_eq(run(w2), TN_WF_S_SUCCESS);
    ASSERT_WF(w1, TN_WF_S_SUCCESS);
}

Test(restart, finished_instances_are_not_loaded)
{
    apply("name: fin\ntasks:\n  - {name: a, type: noop}\n");
    for (int i = 0; i < 20; i++)
        cr_assert_eq(run(start("fin")), TN_WF_S_SUCCESS);
    apply("name: live\ntasks:\n  - {name: a, type: noop, duration: 1h}\n");
    uint64_t live = start("live");
    tn_engine_step(E, NULL);
    restart(false);
    tn_engine_stats st;
    tn_engine_stats_get(E, &st);
    cr_assert_eq(st.recovered_workflows, 1);
    cr_assert_eq(st.live_workflows, 1);
    cr_assert_eq(run(live), TN_WF_S_SUCCESS);
}

Test(restart, sub_workflow_child_is_not_created_twice)
{
    apply("name: kid2\ntasks:\n  - {name: k, type: noop, duration: 1m}\n");
    apply("name: mom2\ntasks:\n  - {name: sub, type: sub_workflow, workflow: kid2}\n");
    uint64_t wf = start("mom2");
    for (int i = 0; i < 4; i++)
        tn_engine_step(E, NULL);
    uint64_t child = child_of(wf, "sub");
    cr_assert_neq(child, 0);
    restart(true);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_eq(child_of(wf, "sub"), child);
    tn_wf_proj p;
    int children = 0;
    for (uint64_t id = 1; id < 100; id++)
        if (tn_evlog_wf(tn_engine_log(E), id, &p) == TN_OK && p.parent_wf == wf)
            children++;
    cr_assert_eq(children, 1);
}

/* SIGKILL the engine's process at random moments and start it again on the same data
 * directory: unfinished instances continue and end as they would have, and the log
 * stays consistent. Real processes, real clock, the in-process executor. */
#include "inproc.h"

static void child_run(const char *d, bool start_them, int ready_fd)
{
    tn_inproc *x;
    tn_engine *e;
    tn_errmsg m;
    char logs[600];
    snprintf(logs, sizeof(logs), "%s/logs", d);
    if (tn_inproc_new(logs, &x))
        _exit(3);
    tn_engine_opts o = {
        .data_dir = d, .log = {.create = true}, .executor = tn_inproc_executor(x)};
    if (tn_engine_open(&o, &e, &m))
        _exit(4);
    tn_inproc_bind(x, e);
    if (start_them) {
        const char *y = "name: crashy\ntasks:\n"
                        "  - {name: a, type: noop, duration: 20ms}\n"
                        "  - {name: b, type: noop, deps: [a], duration: 30ms, delay: 10ms}\n"
                        "  - {name: c, type: noop, deps: [a], duration: 10ms}\n"
                        "  - {name: d, type: noop, deps: [b, c], duration: 20ms}\n"
                        "  - {name: e, type: noop, deps: [d], result: failure, retries: 1,\n"
                        "     retry_interval: 15ms}\n"
                        "  - name: f\n    type: conditions\n    deps: [e]\n"
                        "    when: {all: [{task: e, state: success}]}\n"
                        "    on_success: [g]\n    on_failure: [h]\n"
                        "  - {name: g, type: noop, deps: [f]}\n"
                        "  - {name: h, type: noop, deps: [f], duration: 10ms}\n";
        tn_def *def;
        char *b;
        size_t n;
        if (tn_def_parse("c.yaml", y, strlen(y), &def, &m) || tn_def_encode(def, &b, &n))
            _exit(5);
        tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = n};
        tn_engine_call(e, &c);
        for (int i = 0; i < 8; i++) {
            tn_cmd s = {.kind = TN_CMD_START, .workflow = "crashy"};
            if (tn_engine_call(e, &s))
                _exit(6);
        }
        /* the starts are committed: the parent may kill from now on */
        if (write(ready_fd, "r", 1) != 1)
            _exit(7);
    }
    for (;;) {
        tn_engine_run_until(e, 0, &m);
        tn_engine_stats st;
        tn_engine_stats_get(e, &st);
        if (st.live_workflows == 0 && tn_inproc_running(x) == 0)
            break;
        tn_engine_wait(e, 5000000);
    }
    tn_engine_close(e);
    tn_inproc_free(x);
    _exit(0);
}

/* The master crashed after committing a kill and before sending it: recovery finds the
 * attempt still running with a kill requested and asks for the kill again. */
Test(restart, a_kill_committed_before_a_crash_is_sent_again)
{
    apply("name: kc\ntasks:\n  - {name: a, type: noop, duration: 1h}\n");
    uint64_t wf = start("kc");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    uint64_t a = task(wf, "a").id;
    cr_assert(sx_running(NULL, a, 1), "attempt 1 runs");
    X.drop_kills = true;
    cr_assert_eq(cmd(TN_CMD_KILL_TASK, a), TN_OK);
    settle(0);
    cr_assert_eq(X.kills, 1);
    cr_assert_neq(task(wf, "a").state, TN_TASK_S_KILL);
    X.drop_kills = false;
    restart(false); /* the executor still runs attempt 1; it would succeed in 1 s */
    int st = run(wf);
    cr_assert_eq(X.kills, 2, "the kill is asked again after the restart");
    ASSERT_TASK(wf, "a", TN_TASK_S_KILL, 1);
    cr_assert_eq(st, TN_WF_S_STOP, "got %s", wsn(st));
}

/* A late ACCEPTED of an attempt that was failed over in the same batch: the stale attempt
 * is killed, but only once that batch is committed (a batch that fails to commit is rolled
 * back, and a kill sent from it would end the attempt the engine rolled back to). */
Test(restart, a_stale_attempt_is_killed_only_after_its_batch_commits)
{
    static const script s[] = {{"a", "ns", 100}, {0}}; /* attempt 1 never taken */
    X.scripts = s;
    apply("name: st\ntasks:\n  - {name: a, type: shell, command: x}\n");
    uint64_t wf = start("st");
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    tinfo a = task(wf, "a");
    cr_assert_eq(a.attempt, 1);
    tn_report lost = {.kind = TN_REPORT_LOST,
                      .wf = wf,
                      .task = a.id,
                      .attempt = 1,
                      .worker = "test",
                      .reason = "test: worker lost"};
    tn_report late = {.kind = TN_REPORT_ACCEPTED,
                      .wf = wf,
                      .task = a.id,
                      .attempt = 1,
                      .pid = 4242,
                      .worker = "test"};
    tn_engine_report(E, &lost);
    tn_engine_report(E, &late);
    int st = run(wf);
    cr_assert_eq(st, TN_WF_S_SUCCESS, "got %s", wsn(st));
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 2);
    cr_assert_eq(X.kills, 1, "the stale attempt 1 is killed");
    cr_assert_eq(X.kills_uncommitted, 0, "and not before its batch is committed");
}

Test(restart, sigkill_at_random_moments)
{
    /* this test brings its own engine processes */
    tn_engine_close(E);
    E = NULL;
    unsigned seed = getenv("TERN_TEST_SEED") ? (unsigned)atoi(getenv("TERN_TEST_SEED")) :
                                               (unsigned)time(NULL);
    cr_log_info("seed %u", seed);
    srand(seed);
    int kills = 0;
    for (int round = 0; round < 12; round++) {
        int pfd[2];
        cr_assert_eq(pipe(pfd), 0);
        pid_t pid = fork();
        if (pid == 0)
            child_run(dir, round == 0, pfd[1]);
        close(pfd[1]);
        char b;
        if (round == 0)
            cr_assert_eq(read(pfd[0], &b, 1), 1, "the first child started the workflows");
        close(pfd[0]);
        struct timespec ts = {0, (long)(5 + rand() % 60) * 1000000L};
        nanosleep(&ts, NULL);
        int st;
        if (waitpid(pid, &st, WNOHANG) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            kills++;
        } else {
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "seed %u round %d: child status %d", seed, round, st);
        }
    }
    /* a last run to the end */
    pid_t pid = fork();
    if (pid == 0)
        child_run(dir, false, -1);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "seed %u: final run status %d", seed, st);
    cr_assert_gt(kills, 0);
    /* every instance ended as an uninterrupted run would have */
    open_engine();
    for (uint64_t wf = 1; wf <= 8; wf++) {
        ASSERT_WF(wf, TN_WF_S_SUCCESS);
        ASSERT_TASK(wf, "e", TN_TASK_S_FAILURE, task(wf, "e").attempt);
        cr_assert_geq(task(wf, "e").attempt, 2);
        cr_assert_eq(task(wf, "h").state, TN_TASK_S_SUCCESS);
        ASSERT_NO_TASK(wf, "g");
    }
}

/* The in-process executor reports a task killed by signal N with exit code 128+N, as a
 * shell does and as the worker does: SIGTERM is 143. */
static void inproc_setup(void)
{
    dir = tu_tmpdir();
}

static void inproc_teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

Test(inproc, a_task_killed_by_a_signal_reports_128_plus_the_signal, .init = inproc_setup,
     .fini = inproc_teardown, .timeout = 60)
{
    char logs[600];
    snprintf(logs, sizeof(logs), "%s/logs", dir);
    tn_inproc *x;
    cr_assert_eq(tn_inproc_new(logs, &x), TN_OK);
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .no_sync = true},
                        .executor = tn_inproc_executor(x)};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    tn_inproc_bind(x, E);
    apply("name: sig\ntasks:\n  - {name: a, type: shell, command: 'kill -TERM $$'}\n");
    uint64_t wf = start("sig");
    int st = run(wf);
    cr_assert_eq(st, TN_WF_S_FAILURE, "got %s", wsn(st));
    tn_task_proj p;
    cr_assert_eq(tn_evlog_task(tn_engine_log(E), task(wf, "a").id, &p), TN_OK);
    cr_assert_eq(p.exit_code, 128 + SIGTERM, "exit code %" PRId64, p.exit_code);
    cr_assert(strstr(p.reason, "killed by signal 15"), "reason: %s", p.reason);
    tn_engine_close(E);
    E = NULL;
    tn_inproc_free(x);
}

/* The reason of a task's last FAILED event ("" if none). */
typedef struct reason_find {
    uint64_t task;
    char why[1024];
} reason_find;

static int reason_cb(void *ctx, const tn_event *ev)
{
    reason_find *r = ctx;
    const tn_attr *a = tn_event_attr(ev, "reason");
    if (ev->machine == TN_MACHINE_TASK && ev->task == r->task &&
        ev->event == TN_TASK_E_FAILED && a && a->type == TN_ATTR_STR)
        snprintf(r->why, sizeof(r->why), "%.*s", (int)a->s.len, a->s.p);
    return 0;
}

static const char *fail_reason(uint64_t wf, const char *name)
{
    static reason_find r;
    memset(&r, 0, sizeof(r));
    r.task = task(wf, name).id;
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, reason_cb, &r, &fr);
    return r.why;
}

/* A task whose params, command or environment cannot be prepared fails with that reason
 * and nothing is spawned: never the command with its params left empty. */
Test(inproc, a_param_error_fails_the_task_and_nothing_runs, .init = inproc_setup,
     .fini = inproc_teardown, .timeout = 60)
{
    char logs[600];
    snprintf(logs, sizeof(logs), "%s/logs", dir);
    tn_inproc *x;
    cr_assert_eq(tn_inproc_new(logs, &x), TN_OK);
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .no_sync = true},
                        .executor = tn_inproc_executor(x)};
    setenv("TERN_TZ", "UTC", 1);
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    tn_inproc_bind(x, E);
    static const struct {
        const char *yaml, *name, *why;
    } cases[] = {
        {"params: {r1: '${r1}'}\ntasks:\n  - {name: a, type: shell, command: 'touch %s/ran; "
         "echo ${r1}'}\n",
         "cycle", "param error"},
        {"tasks:\n  - {name: a, type: shell, command: 'touch %s/ran; echo "
         "$[yyyyMMdd-99999999999999]'}\n",
         "range", "param error in the command"},
        {"tasks:\n  - {name: a, type: shell, params: {p: '$[yyyyMMdd'}, command: 'touch "
         "%s/ran'}\n",
         "unclosed", "param error"},
        {"tasks:\n  - {name: a, type: shell, environment: nosuchenv, command: 'touch "
         "%s/ran'}\n",
         "noenv", "tern env set nosuchenv"},
    };
    char ran[700];
    snprintf(ran, sizeof(ran), "%s/ran", dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[1024], body[900];
        snprintf(body, sizeof(body), cases[i].yaml, dir);
        snprintf(yaml, sizeof(yaml), "name: %s\n%s", cases[i].name, body);
        apply(yaml);
        uint64_t wf = start(cases[i].name);
        int st = run(wf);
        cr_assert_eq(st, TN_WF_S_FAILURE, "%s: got %s", cases[i].name, wsn(st));
        ASSERT_TASK(wf, "a", TN_TASK_S_FAILURE, 1);
        const char *why = fail_reason(wf, "a");
        cr_assert(strstr(why, cases[i].why), "%s: reason \"%s\"", cases[i].name, why);
        cr_assert_neq(access(ran, F_OK), 0, "%s: the command ran", cases[i].name);
    }
    /* outputs cut by a limit fail the task that printed them, saying which limit, and the
     * task that would have used them does not run */
    char body[1024];
    snprintf(body, sizeof(body),
             "name: big\ntasks:\n  - {name: a, type: shell, command: \"printf "
             "'${setValue(v=%%070000d)}' 0\"}\n"
             "  - {name: b, type: shell, deps: [a], command: 'touch %s/ran'}\n",
             dir);
    apply(body);
    uint64_t big = start("big");
    cr_assert_eq(run(big), TN_WF_S_FAILURE);
    ASSERT_TASK(big, "a", TN_TASK_S_FAILURE, 1);
    const char *cut = fail_reason(big, "a");
    cr_assert(strstr(cut, "65536-byte limit"), "reason \"%s\"", cut);
    cr_assert_neq(access(ran, F_OK), 0, "the downstream task ran");
    /* an unknown zone: every task that substitutes fails, naming the zone */
    setenv("TERN_TZ", "Nowhere/Atlantis", 1);
    apply("name: zone\ntasks:\n  - {name: a, type: shell, command: 'echo $[HH]'}\n");
    uint64_t wf = start("zone");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    const char *why = fail_reason(wf, "a");
    cr_assert(strstr(why, "Nowhere/Atlantis") && strstr(why, "time zone"), "%s", why);
    setenv("TERN_TZ", "UTC", 1);
    tn_engine_close(E);
    E = NULL;
    tn_inproc_free(x);
}

/* ------------------------------------------------------------------------------ */
/* the spec: commands are legal where the tables say, and every transition is reached */

typedef struct tcount {
    unsigned machine, from, event;
    int n;
} tcount;

static int tcount_cb(void *ctx, const tn_event *ev)
{
    tcount *c = ctx;
    c->n += ev->machine == c->machine && ev->from == c->from && ev->event == c->event;
    return 0;
}

/* How often workflow wf's log has machine's transition (from, event). */
static int transitions(uint64_t wf, unsigned machine, unsigned from, unsigned event)
{
    tcount c = {machine, from, event, 0};
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, tcount_cb, &c, &fr);
    return c.n;
}

/* A master restart whose first step has not run yet: live instances are in FAILOVER. */
static void restart_nostep(void)
{
    vclock = tn_engine_now(E);
    tn_engine_close(E);
    open_engine_nostep();
    for (int i = 0; i < 256; i++)
        if (X.live[i].live) {
            done_arg *d = new_done(i, true, X.live[i].attempt);
            tn_engine_after(E, tn_engine_now(E) + 1000000000LL, sx_done, d);
        }
}

/* A command sent while the engine is in its first step after a restart. */
static tn_err cmd_in_takeover(tn_cmd_kind kind, uint64_t wf)
{
    tn_cmd c = {.kind = kind, .id = wf};
    tn_engine_submit(E, &c);
    tn_engine_step(E, NULL);
    cr_assert(c.done);
    return c.err;
}

static uint64_t started_long(const char *name)
{
    char y[512];
    snprintf(y, sizeof(y),
             "name: %s\ntasks:\n"
             "  - {name: a, type: noop, duration: 10m}\n"
             "  - {name: b, type: noop, deps: [a]}\n",
             name);
    apply(y);
    uint64_t wf = start(name);
    tn_engine_step(E, NULL);
    tn_engine_step(E, NULL);
    ASSERT_TASK(wf, "a", TN_TASK_S_RUNNING_EXECUTION, 1);
    return wf;
}

TestSuite(spec, .init = setup, .fini = teardown);

Test(spec, pause_in_failover_is_accepted)
{
    uint64_t wf = started_long("pf");
    restart_nostep(); /* FAILOVER is recorded by the first step, before its commands */
    cr_assert_eq(cmd_in_takeover(TN_CMD_PAUSE, wf), TN_OK, "the spec allows FAILOVER + PAUSE");
    cr_assert_eq(transitions(wf, TN_MACHINE_WORKFLOW, TN_WF_S_FAILOVER, TN_WF_E_PAUSE), 1);
    cr_assert_eq(run(wf), TN_WF_S_PAUSE);
    ASSERT_TASK(wf, "a", TN_TASK_S_SUCCESS, 1);
    ASSERT_TASK(wf, "b", TN_TASK_S_PAUSE, 1);
}

Test(spec, stop_in_failover_is_accepted)
{
    uint64_t wf = started_long("sf");
    restart_nostep();
    cr_assert_eq(cmd_in_takeover(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(transitions(wf, TN_MACHINE_WORKFLOW, TN_WF_S_FAILOVER, TN_WF_E_STOP), 1);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
}

Test(spec, refusal_names_state_event_and_accepted_events)
{
    apply("name: ok\ntasks:\n  - {name: a, type: noop}\n");
    uint64_t wf = start("ok");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    tn_cmd c = {.kind = TN_CMD_PAUSE, .id = wf};
    tn_engine_call(E, &c);
    cr_assert_eq(c.err, TN_ERR_ILLEGAL);
    char want[256];
    snprintf(want, sizeof(want),
             "workflow %" PRIu64 " is SUCCESS: the workflow state machine "
             "does not allow PAUSE there (SUCCESS accepts: RERUN)",
             wf);
    cr_assert_str_eq(c.msg, want);
    tn_cmd k = {.kind = TN_CMD_FORCE_SUCCESS, .id = task(wf, "a").id};
    tn_engine_call(E, &k);
    cr_assert_eq(k.err, TN_ERR_ILLEGAL);
    cr_assert(strstr(k.msg, "is SUCCESS") && strstr(k.msg, "FORCE_SUCCESS") &&
                  strstr(k.msg, "(SUCCESS accepts: nothing)"),
              "%s", k.msg);
}

Test(spec, takeover_puts_pausing_and_stopping_instances_back)
{
    uint64_t p = started_long("tp"), s = started_long("ts");
    cr_assert_eq(cmd(TN_CMD_PAUSE, p), TN_OK);
    X.drop_kills = true; /* s stays READY_STOP: its task is not killed yet */
    cr_assert_eq(cmd(TN_CMD_STOP, s), TN_OK);
    ASSERT_WF(p, TN_WF_S_READY_PAUSE);
    ASSERT_WF(s, TN_WF_S_READY_STOP);
    X.drop_kills = false;
    restart(false);
    cr_assert_eq(transitions(p, TN_MACHINE_WORKFLOW, TN_WF_S_READY_PAUSE, TN_WF_E_FAILOVER), 1);
    cr_assert_eq(transitions(p, TN_MACHINE_WORKFLOW, TN_WF_S_FAILOVER, TN_WF_E_PAUSE), 1);
    cr_assert_eq(transitions(s, TN_MACHINE_WORKFLOW, TN_WF_S_READY_STOP, TN_WF_E_FAILOVER), 1);
    cr_assert_eq(transitions(s, TN_MACHINE_WORKFLOW, TN_WF_S_FAILOVER, TN_WF_E_STOP), 1);
    cr_assert_eq(run(p), TN_WF_S_PAUSE);
    cr_assert_eq(run(s), TN_WF_S_STOP);
}

Test(spec, pausing_workflow_ends_by_its_running_tasks)
{
    static const script sc[] = {{"bad", "f", 60000}, {0}};
    X.scripts = sc;
    apply("name: one\ntimeout: 1m\ntasks:\n  - {name: a, type: noop, duration: 5m}\n");
    apply("name: two\ntasks:\n  - {name: bad, type: shell, command: x}\n");
    apply("name: three\ntasks:\n  - {name: a, type: noop, duration: 5m}\n");
    uint64_t w1 = start("one"), w2 = start("two"), w3 = start("three");
    settle(0);
    cr_assert_eq(cmd(TN_CMD_PAUSE, w1), TN_OK);
    cr_assert_eq(cmd(TN_CMD_PAUSE, w2), TN_OK);
    cr_assert_eq(cmd(TN_CMD_PAUSE, w3), TN_OK);
    cr_assert_eq(cmd(TN_CMD_STOP, w3), TN_OK);
    cr_assert_eq(run(w1), TN_WF_S_SUCCESS, "its only task succeeded while it paused");
    cr_assert_eq(run(w2), TN_WF_S_FAILURE, "its only task failed while it paused");
    cr_assert_eq(run(w3), TN_WF_S_STOP);
    cr_assert_eq(transitions(w1, TN_MACHINE_WORKFLOW, TN_WF_S_READY_PAUSE, TN_WF_E_TIMEOUT), 1);
    cr_assert_eq(transitions(w1, TN_MACHINE_WORKFLOW, TN_WF_S_READY_PAUSE, TN_WF_E_SUCCEED), 1);
    cr_assert_eq(transitions(w2, TN_MACHINE_WORKFLOW, TN_WF_S_READY_PAUSE, TN_WF_E_FAILED), 1);
    cr_assert_eq(transitions(w3, TN_MACHINE_WORKFLOW, TN_WF_S_READY_PAUSE, TN_WF_E_STOP), 1);
}

Test(spec, stopping_workflow_times_out)
{
    apply("name: sto\ntimeout: 1m\ntasks:\n  - {name: a, type: noop, duration: 5m}\n");
    uint64_t wf = start("sto");
    settle(0);
    X.drop_kills = true; /* the kill is lost: the task runs on past the timeout */
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    cr_assert_eq(transitions(wf, TN_MACHINE_WORKFLOW, TN_WF_S_READY_STOP, TN_WF_E_TIMEOUT), 1);
}

Test(spec, rerun_of_paused_stopped_and_failed)
{
    apply("name: rp\ntasks:\n"
          "  - {name: a, type: noop, duration: 10s}\n"
          "  - {name: b, type: noop, deps: [a]}\n");
    apply("name: rf\ntasks:\n  - {name: a, type: noop, result: failure}\n");
    uint64_t p = start("rp"), s = start("rp"), f = start("rf");
    settle(0);
    cr_assert_eq(cmd(TN_CMD_PAUSE, p), TN_OK);
    cr_assert_eq(cmd(TN_CMD_STOP, s), TN_OK);
    cr_assert_eq(run(p), TN_WF_S_PAUSE);
    cr_assert_eq(run(s), TN_WF_S_STOP);
    cr_assert_eq(run(f), TN_WF_S_FAILURE);
    uint64_t ids[3] = {p, s, f};
    unsigned from[3] = {TN_WF_S_PAUSE, TN_WF_S_STOP, TN_WF_S_FAILURE};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cmd(TN_CMD_RERUN, ids[i]), TN_OK);
        run(ids[i]);
        cr_assert_eq(transitions(ids[i], TN_MACHINE_WORKFLOW, from[i], TN_WF_E_RERUN), 1);
    }
}

Test(spec, environment_set)
{
    tn_cmd c = {.kind = TN_CMD_ENV_SET, .name = "py", .text = "export A=1\n"};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
}

Test(spec, delayed_logic_task_and_pause_during_delay)
{
    apply("name: dl\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - name: check\n    type: conditions\n    deps: [a]\n    delay: 10s\n"
          "    when: {all: [{task: a, state: success}]}\n"
          "    on_success: [b]\n    on_failure: [c]\n"
          "  - {name: b, type: noop, deps: [check]}\n"
          "  - {name: c, type: noop, deps: [check]}\n");
    apply("name: dp\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - {name: b, type: noop, deps: [a], delay: 1h}\n");
    uint64_t wf = start("dl");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    tinfo ck = task(wf, "check");
    cr_assert_eq(transitions(wf, TN_MACHINE_TASK, TN_TASK_S_DELAY_EXECUTION, TN_TASK_E_RUNNING),
                 1, "check %" PRIu64, ck.id);
    uint64_t p = start("dp");
    settle(0);
    ASSERT_TASK(p, "b", TN_TASK_S_DELAY_EXECUTION, 1);
    cr_assert_eq(cmd(TN_CMD_PAUSE, p), TN_OK);
    cr_assert_eq(run(p), TN_WF_S_PAUSE);
    ASSERT_TASK(p, "b", TN_TASK_S_PAUSE, 1);
}

/* A task waiting for a task-group slot waits in SUBMITTED_SUCCESS (DolphinScheduler's
 * state for a task no worker took yet); a kill or a pause ends it there at once. */
Test(spec, queued_task_paused_or_killed)
{
    tn_cmd g = {.kind = TN_CMD_TASKGROUP_SET, .name = "one", .slots = 1};
    cr_assert_eq(tn_engine_call(E, &g), TN_OK, "%s", g.msg);
    apply("name: q\ntasks:\n"
          "  - {name: g1, type: noop, duration: 1m, task_group: one}\n"
          "  - {name: g2, type: noop, duration: 1m, task_group: one}\n");
    uint64_t p = start("q");
    settle(0);
    tinfo q =
        task(p, "g1").state == TN_TASK_S_SUBMITTED_SUCCESS ? task(p, "g1") : task(p, "g2");
    cr_assert_eq(q.state, TN_TASK_S_SUBMITTED_SUCCESS, "one of them waits for the slot");
    cr_assert_eq(
        transitions(p, TN_MACHINE_TASK, TN_TASK_S_SUBMITTED_SUCCESS, TN_TASK_E_DISPATCHED), 1,
        "only the other was handed to a worker");
    cr_assert_eq(cmd(TN_CMD_KILL_TASK, q.id), TN_OK);
    cr_assert_eq(transitions(p, TN_MACHINE_TASK, TN_TASK_S_SUBMITTED_SUCCESS, TN_TASK_E_KILL),
                 1);
    cr_assert_eq(run(p), TN_WF_S_STOP);
    uint64_t r = start("q");
    settle(0);
    cr_assert_eq(cmd(TN_CMD_PAUSE, r), TN_OK);
    cr_assert_eq(transitions(r, TN_MACHINE_TASK, TN_TASK_S_SUBMITTED_SUCCESS, TN_TASK_E_PAUSE),
                 1);
    cr_assert_eq(run(r), TN_WF_S_PAUSE);
}

/* DolphinScheduler shows a task no worker took yet as SUBMITTED_SUCCESS: tern too, with
 * why it waits; it is DISPATCH once a worker is chosen, and a dispatch timeout that fires
 * while it waits fails it from SUBMITTED_SUCCESS. */
Test(spec, task_waits_for_a_worker_in_submitted_success)
{
    X.no_worker = true;
    apply("name: nw\ntasks:\n  - {name: a, type: noop, duration: 1s}\n");
    apply("name: nwt\ntasks:\n"
          "  - {name: a, type: shell, command: x, dispatch_timeout: 30s}\n");
    uint64_t wf = start("nw"), wt = start("nwt");
    settle(0);
    tinfo a = task(wf, "a");
    cr_assert_eq(a.state, TN_TASK_S_SUBMITTED_SUCCESS, "a is %s", tsn(a.state));
    tn_cmd why = {.kind = TN_CMD_WHY, .id = a.id};
    cr_assert_eq(tn_engine_call(E, &why), TN_OK);
    cr_assert_str_eq(why.msg, "no live worker in group \"default\"");
    cr_assert_eq(events(wf, TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, 0).n, 0);
    cr_assert_eq(run(wt), TN_WF_S_FAILURE, "the dispatch timeout fails the waiting task");
    ASSERT_TASK(wt, "a", TN_TASK_S_FAILURE, 1);
    cr_assert_eq(
        transitions(wt, TN_MACHINE_TASK, TN_TASK_S_SUBMITTED_SUCCESS, TN_TASK_E_FAILED), 1);
    X.no_worker = false; /* a worker comes: the task is placed, DISPATCH, and runs */
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_eq(
        transitions(wf, TN_MACHINE_TASK, TN_TASK_S_SUBMITTED_SUCCESS, TN_TASK_E_DISPATCHED), 1);
    cr_assert_eq(transitions(wf, TN_MACHINE_TASK, TN_TASK_S_DISPATCH, TN_TASK_E_RUNNING), 1);
}

/* A task handed to a worker that never took it is killed through that worker: the kill
 * is asked (DISPATCH + KILL) and its answer ends it (DISPATCH + KILLED). */
Test(spec, stop_of_a_task_handed_to_a_worker_that_did_not_take_it)
{
    static const script sc[] = {{"a", "n", 0}, {0}}; /* never ACCEPTED */
    X.scripts = sc;
    apply("name: hk\ntasks:\n  - {name: a, type: shell, command: x}\n");
    uint64_t wf = start("hk");
    settle(0);
    ASSERT_TASK(wf, "a", TN_TASK_S_DISPATCH, 1);
    cr_assert_eq(cmd(TN_CMD_STOP, wf), TN_OK);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    ASSERT_TASK(wf, "a", TN_TASK_S_KILL, 1);
    cr_assert_eq(transitions(wf, TN_MACHINE_TASK, TN_TASK_S_DISPATCH, TN_TASK_E_KILL), 1);
    cr_assert_eq(transitions(wf, TN_MACHINE_TASK, TN_TASK_S_DISPATCH, TN_TASK_E_KILLED), 1);
}

Test(spec, result_overtakes_accepted)
{
    static const script sc[] = {{"a", "n", 0}, {0}}; /* never ACCEPTED */
    X.scripts = sc;
    apply("name: ov\ntasks:\n  - {name: a, type: shell, command: x}\n");
    uint64_t wf = start("ov");
    settle(0);
    tinfo a = task(wf, "a");
    cr_assert_eq(a.state, TN_TASK_S_DISPATCH);
    tn_report r = {.kind = TN_REPORT_RESULT,
                   .wf = wf,
                   .task = a.id,
                   .attempt = 1,
                   .success = true,
                   .worker = "test"};
    tn_engine_report(E, &r);
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    cr_assert_eq(transitions(wf, TN_MACHINE_TASK, TN_TASK_S_DISPATCH, TN_TASK_E_SUCCEEDED), 1);
}

Test(spec, lost_task_of_a_pausing_workflow_pauses)
{
    static const script sc[] = {{"a", "h", 0}, {0}}; /* runs until lost */
    X.scripts = sc;
    apply("name: lp\ntasks:\n  - {name: a, type: shell, command: x}\n");
    uint64_t wf = start("lp");
    settle(0);
    tinfo a = task(wf, "a");
    cr_assert_eq(a.state, TN_TASK_S_RUNNING_EXECUTION);
    cr_assert_eq(cmd(TN_CMD_PAUSE, wf), TN_OK);
    tn_report lost = {.kind = TN_REPORT_LOST,
                      .wf = wf,
                      .task = a.id,
                      .attempt = 1,
                      .worker = "test",
                      .reason = "test: worker lost"};
    tn_engine_report(E, &lost);
    cr_assert_eq(run(wf), TN_WF_S_PAUSE);
    cr_assert_eq(
        transitions(wf, TN_MACHINE_TASK, TN_TASK_S_NEED_FAULT_TOLERANCE, TN_TASK_E_PAUSE), 1);
}

Test(spec, task_command_in_takeover_ends_it_first)
{
    uint64_t wf = started_long("kf");
    uint64_t a = task(wf, "a").id;
    restart_nostep(); /* FAILOVER is recorded by the first step, before its commands */
    cr_assert_eq(cmd_in_takeover(TN_CMD_KILL_TASK, a), TN_OK);
    cr_assert_eq(transitions(wf, TN_MACHINE_WORKFLOW, TN_WF_S_FAILOVER, TN_WF_E_START), 1);
    cr_assert_eq(run(wf), TN_WF_S_STOP);
    ASSERT_TASK(wf, "a", TN_TASK_S_KILL, 1);
    cr_assert_eq(
        transitions(wf, TN_MACHINE_WORKFLOW, TN_WF_S_RUNNING_EXECUTION, TN_WF_E_TASK_FINISHED),
        1, "the kill is a task end the workflow saw");
}

/* A commit that keeps failing (a full store, every step refused again) is logged once
 * per interval with the count of repeats, not once per step. */
Test(engine, repeating_commit_failure_is_logged_once_per_interval, .fini = teardown)
{
    dir = tu_tmpdir();
    memset(&X, 0, sizeof(X));
    tn_errmsg m = {{0}};
    tn_engine_opts o = {
        .data_dir = dir,
        .log = {.create = true, .no_sync = true, .map_size = 1 << 20, .map_max = 1 << 20},
        .executor = {&sx_ops, &X, "test"}};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    X.e = E;
    tn_engine_step(E, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tn_log_set_stream(f);
    static char yaml[80000];
    int failures = 0;
    for (int i = 0; i < 200 && failures < 30; i++) {
        int n =
            snprintf(yaml, sizeof(yaml),
                     "name: big%d\ntasks:\n  - name: a\n    type: shell\n    command: \"", i);
        memset(yaml + n, 'x', 60000);
        snprintf(yaml + n + 60000, sizeof(yaml) - (size_t)n - 60000, "\"\n");
        tn_def *d;
        cr_assert_eq(tn_def_parse("big.yaml", yaml, strlen(yaml), &d, &m), TN_OK, "%s", m.text);
        char *b;
        size_t bl;
        cr_assert_eq(tn_def_encode(d, &b, &bl), TN_OK);
        tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = bl};
        failures += tn_engine_call(E, &c) == TN_ERR_FULL;
        free(b);
        tn_def_free(d);
    }
    tn_log_set_stream(NULL);
    fclose(f);
    cr_assert_eq(failures, 30, "the store filled up");
    int lines = 0;
    for (const char *p = buf; (p = strstr(p, "commit failed")); p++)
        lines++;
    cr_assert_eq(lines, 1, "30 failures in well under 10 s log one line:\n%s", buf);
    free(buf);
}

/* ------------------------------------------------------------------------------ */
/* pipelined commits: a batch built while the one before is written */

#include "logread.h"

/* An executor that checks, as each effect happens, that what caused it is durable: a
 * dispatch only once its DISPATCHED is committed, an acknowledgement only once the
 * report's RESULT is; and reports success at once. */
static struct {
    tn_engine *e;
    uint64_t dispatches, acks, early_dispatches, early_acks;
} PX;

static bool px_committed(uint64_t task, uint32_t attempt, bool final)
{
    tn_task_proj p;
    tn_store *s = tn_evlog_store(tn_engine_log(PX.e));
    return tn_log_task_get(s, task, &p) == TN_OK && p.attempt == attempt &&
           (final ? tn_sm_task.final[p.state] : p.state == TN_TASK_S_DISPATCH);
}

static void px_dispatch(void *self, const tn_dispatch_req *req)
{
    (void)self;
    PX.dispatches++;
    PX.early_dispatches += !px_committed(req->task, req->attempt, false);
    tn_report r = {.kind = TN_REPORT_RESULT,
                   .wf = req->wf,
                   .task = req->task,
                   .attempt = req->attempt,
                   .success = true,
                   .worker = "px"};
    tn_engine_report(PX.e, &r);
}

static void px_ack(void *self, const tn_report *r)
{
    (void)self;
    PX.acks++;
    PX.early_acks += !px_committed(r->task, r->attempt, true);
}

static void px_kill(void *self, uint64_t wf, uint64_t task, uint32_t attempt, uint64_t grace)
{
    (void)self, (void)wf, (void)task, (void)attempt, (void)grace;
}

static int px_running(void *self, uint64_t task, uint32_t attempt)
{
    (void)self, (void)task, (void)attempt;
    return 0;
}

static const tn_executor_ops px_ops = {px_dispatch, px_kill, px_running, NULL, px_ack};

static void px_open(size_t map_max)
{
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .no_sync = true, .map_max = map_max},
                        .executor = {&px_ops, &PX, "px"}};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    PX.e = E;
}

/* A fresh store whose handed-over commits each take delay_ms (an effect let out before
 * its batch is durable is then seen); map_max 0: the default. */
static void px_start(const char *delay_ms, size_t map_max)
{
    dir = tu_tmpdir();
    memset(&PX, 0, sizeof(PX));
    setenv("TERN_FAULT_COMMIT_DELAY_MS", delay_ms, 1);
    px_open(map_max);
    unsetenv("TERN_FAULT_COMMIT_DELAY_MS");
}

/* Start `n` workflows of a chain of `tasks` noop tasks, and run until none is live or
 * `steps` steps went by. Each step then ends one task of every workflow and dispatches
 * its next: batches big enough to be left in flight, with dispatches among their
 * effects. */
static void px_run(const char *name, unsigned tasks, unsigned n, unsigned steps)
{
    static char yaml[1 << 16];
    size_t l = (size_t)snprintf(yaml, sizeof(yaml), "name: %s\ntasks:\n", name);
    l += (size_t)snprintf(yaml + l, sizeof(yaml) - l, "  - {name: t0, type: noop}\n");
    for (unsigned i = 1; i < tasks; i++)
        l += (size_t)snprintf(yaml + l, sizeof(yaml) - l,
                              "  - {name: t%u, type: noop, deps: [t%u]}\n", i, i - 1);
    apply(yaml);
    static tn_cmd c[1000];
    cr_assert_leq(n, 1000);
    for (unsigned i = 0; i < n; i++) { /* one batch starts them all */
        c[i] = (tn_cmd){.kind = TN_CMD_START, .workflow = name};
        tn_engine_submit(E, &c[i]);
    }
    tn_engine_stats st;
    for (unsigned i = 0; i < steps; i++) {
        tn_engine_step(E, NULL);
        tn_engine_stats_get(E, &st);
        if (st.live_workflows == 0)
            break;
    }
}

Test(engine, pipelined_commits_release_nothing_before_it_is_durable, .fini = teardown)
{
    /* each commit in flight takes 20 ms: an effect let out before its end is seen */
    px_start("20", 0);
    px_run("chain", 8, 300, 100000);
    tn_engine_stats st;
    tn_engine_stats_get(E, &st);
    cr_assert_eq(st.live_workflows, 0, "all 300 workflows ended");
    cr_assert_gt(st.flights, 0, "some commits were left in flight while the next was built");
    cr_assert_eq(PX.dispatches, 2400);
    cr_assert_eq(PX.early_dispatches, 0,
                 "a dispatch went out before its DISPATCHED was durable");
    cr_assert_eq(PX.acks, 2400);
    cr_assert_eq(PX.early_acks, 0, "a report was acknowledged before its RESULT was durable");
}

/* A commit in flight that fails (the store is full) takes the batch built on it along:
 * neither's effects go out, and every instance either touched is reloaded from the log,
 * so that the work is done again, exactly once, when there is room. */
Test(engine, a_failed_commit_in_flight_drops_the_batch_built_on_it, .fini = teardown)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tn_log_set_stream(f);
    px_start("5", 2u << 20);
    px_run("chain", 8, 400, 60);
    tn_log_set_stream(NULL);
    fclose(f);
    tn_engine_stats st;
    tn_engine_stats_get(E, &st);
    cr_assert_gt(st.flight_failures, 0,
                 "a commit failed in flight (the 2 MiB store filled):\n%s", buf);
    free(buf);
    cr_assert_eq(PX.early_dispatches, 0,
                 "a dispatch went out before its DISPATCHED was durable");
    cr_assert_eq(PX.early_acks, 0, "a report was acknowledged before its RESULT was durable");
    verify_log();
    /* reopened with room: every task of every workflow ends, each once */
    tn_engine_close(E);
    E = NULL;
    uint64_t before = PX.dispatches;
    px_open(0);
    for (int i = 0; i < 100000; i++) {
        tn_engine_step(E, NULL);
        tn_engine_stats_get(E, &st);
        if (st.live_workflows == 0)
            break;
    }
    cr_assert_eq(st.live_workflows, 0);
    cr_assert_eq(PX.early_dispatches, 0);
    uint64_t tasks[64] = {0}, wfs[64] = {0};
    cr_assert_eq(tn_log_state_counts(tn_evlog_store(tn_engine_log(E)), wfs, tasks, 64), TN_OK);
    /* (starts refused while the store was full never made their workflow) */
    uint64_t nwf = 0, ntask = 0;
    for (int i = 0; i < 64; i++)
        nwf += wfs[i], ntask += tasks[i];
    cr_assert_gt(wfs[TN_WF_S_SUCCESS], 5);
    cr_assert_eq(wfs[TN_WF_S_SUCCESS], nwf, "every workflow succeeded");
    cr_assert_eq(tasks[TN_TASK_S_SUCCESS], 8 * nwf, "every task succeeded");
    cr_assert_eq(ntask, 8 * nwf, "each task once");
    cr_assert_gt(PX.dispatches, before, "the dropped work was dispatched again");
}

/* Commands from another thread while the engine steps: STARTs of chains, each answered
 * only once the batch it is in is durable (with commits delayed in flight, an answer
 * let out early finds its workflow missing from the store). */
#define CF_MAX 3000
static tn_cmd cf_cmds[CF_MAX];
static unsigned cf_n;
static atomic_uint cf_submitted;

static void *cf_submit(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < cf_n; i++) {
        cf_cmds[i] = (tn_cmd){.kind = TN_CMD_START, .workflow = "chain"};
        tn_engine_submit(E, &cf_cmds[i]);
        atomic_store(&cf_submitted, i + 1);
        if (i % 50 == 49)
            sched_yield();
    }
    return NULL;
}

/* Submit n STARTs from another thread and step until every one is answered (and, with
 * all_ok, no workflow is live), checking each answer when it is seen: a started
 * workflow is in the store, a failed start left nothing there. Returns the answers that
 * were errors other than the refusal of new work once the store was found full. */
static unsigned cf_run(unsigned n_cmds, bool all_ok)
{
    static bool seen[CF_MAX];
    memset(seen, 0, sizeof(seen));
    cf_n = n_cmds;
    atomic_store(&cf_submitted, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, cf_submit, NULL), 0);
    unsigned answered = 0, failed = 0;
    tn_store *s = tn_evlog_store(tn_engine_log(E));
    tn_engine_stats st = {0};
    for (unsigned k = 0; answered < cf_n || (all_ok && st.live_workflows > 0); k++) {
        cr_assert_lt(k, 10000000, "%u of %u commands answered", answered, cf_n);
        if (tn_engine_step(E, NULL) == 0)
            tn_engine_wait(E, 1000000); /* the submitter is behind */
        unsigned n = atomic_load(&cf_submitted);
        for (unsigned i = 0; i < n; i++) {
            if (seen[i] || !cf_cmds[i].done)
                continue;
            seen[i] = true;
            answered++;
            tn_wf_proj p;
            if (cf_cmds[i].err) {
                failed += strncmp(cf_cmds[i].msg, "the store is full", 17) != 0;
                cr_assert(!all_ok, "start %u failed: %s", i, cf_cmds[i].msg);
                cr_assert(!cf_cmds[i].out_id ||
                              tn_log_wf_get(s, cf_cmds[i].out_id, &p) == TN_ERR_NOENT,
                          "a failed start left its workflow in the store");
                continue;
            }
            cr_assert_eq(tn_log_wf_get(s, cf_cmds[i].out_id, &p), TN_OK,
                         "start %u was answered before its workflow was durable", i);
        }
        tn_engine_stats_get(E, &st);
    }
    pthread_join(th, NULL);
    cr_assert_eq(answered, cf_n, "%u of %u commands answered", answered, cf_n);
    return failed;
}

static const char chain4[] = "name: chain\ntasks:\n  - {name: t0, type: noop}\n"
                             "  - {name: t1, type: noop, deps: [t0]}\n"
                             "  - {name: t2, type: noop, deps: [t1]}\n"
                             "  - {name: t3, type: noop, deps: [t2]}\n";

Test(engine, commands_are_answered_once_their_batch_in_flight_is_durable, .fini = teardown)
{
    px_start("5", 0);
    apply(chain4);
    cr_assert_eq(cf_run(600, true), 0);
    tn_engine_stats st;
    tn_engine_stats_get(E, &st);
    cr_assert_eq(st.live_workflows, 0);
    cr_assert_gt(st.command_flights, 0, "batches with commands were left in flight");
    cr_assert_eq(PX.dispatches, 4 * 600);
    cr_assert_eq(PX.early_dispatches, 0);
    cr_assert_eq(PX.early_acks, 0);
}

/* The store fills with commands in flight: each is answered once, an error for those
 * whose batch failed, and what was answered OK is in the store, what failed is not. */
Test(engine, commands_in_a_failed_flight_fail_and_are_answered, .fini = teardown)
{
    FILE *f = fopen("/dev/null", "we");
    tn_log_set_stream(f);
    px_start("5", 1u << 20);
    apply(chain4);
    unsigned failed = cf_run(CF_MAX, false);
    tn_log_set_stream(NULL);
    fclose(f);
    tn_engine_stats st;
    tn_engine_stats_get(E, &st);
    cr_assert_gt(failed, 0, "starts in a batch whose commit failed failed with it");
    cr_assert_gt(st.flight_failures, 0, "a commit failed in flight");
    cr_assert_gt(st.command_flights, 0);
    unsigned ok = 0;
    for (unsigned i = 0; i < CF_MAX; i++)
        ok += cf_cmds[i].err == TN_OK;
    /* reopened with room: the workflows of the starts answered OK, and only those, run */
    tn_engine_close(E);
    E = NULL;
    px_open(0);
    for (int i = 0; i < 100000 && st.live_workflows; i++) {
        tn_engine_step(E, NULL);
        tn_engine_stats_get(E, &st);
    }
    cr_assert_eq(st.live_workflows, 0);
    uint64_t tasks[64] = {0}, wfs[64] = {0};
    cr_assert_eq(tn_log_state_counts(tn_evlog_store(tn_engine_log(E)), wfs, tasks, 64), TN_OK);
    cr_assert_eq(wfs[TN_WF_S_SUCCESS], ok, "%" PRIu64 " workflows for %u starts answered OK",
                 wfs[TN_WF_S_SUCCESS], ok);
    cr_assert_eq(tasks[TN_TASK_S_SUCCESS], 4 * ok);
    cr_assert_eq(PX.early_dispatches, 0);
}

/* ------------------------------------------------------------------------------ */
/* schedules and backfills */

#include "logread.h"
#include "schedule.h"

#define SEC 1000000000LL

static const char *sched_yaml(const char *name, const char *duration, const char *result)
{
    static char y[512];
    snprintf(y, sizeof(y),
             "name: %s\ntasks:\n  - name: a\n    type: noop\n    duration: %s\n"
             "    result: %s\n",
             name, duration, result);
    return y;
}

static int sched_set(const char *name, const char *cron, tn_overlap ov, int64_t catchup_ms,
                     bool pof)
{
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    snprintf(sp.cron, sizeof(sp.cron), "%s", cron);
    sp.overlap = ov;
    sp.catchup_ms = catchup_ms;
    sp.pause_on_failure = pof;
    cr_assert_eq(tn_sched_spec_param(&sp, "region", "eu"), TN_OK);
    tn_cmd c = {.kind = TN_CMD_SCHED_SET, .workflow = name, .sched = &sp};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
    tn_sched_spec_fini(&sp);
    return c.err;
}

static int sched_cmd(tn_cmd_kind kind, const char *name, uint64_t *out)
{
    tn_cmd c = {.kind = kind, .workflow = name};
    tn_engine_call(E, &c);
    if (out)
        *out = c.out_id;
    return c.err;
}

typedef struct fires {
    int64_t nominal[256];
    uint64_t inst[256];
    bool manual[256];
    int n;
} fires;

static int fire_cb(void *ctx, int64_t nominal, uint64_t inst, bool manual)
{
    fires *f = ctx;
    if (f->n < 256) {
        f->nominal[f->n] = nominal;
        f->manual[f->n] = manual;
        f->inst[f->n++] = inst;
    }
    return 0;
}

static fires fires_of(const char *name)
{
    fires f = {.n = 0};
    cr_assert_eq(tn_log_fire_each(tn_evlog_store(tn_engine_log(E)), name, 0, fire_cb, &f),
                 TN_OK);
    return f;
}

static tn_sched_proj sproj(const char *name)
{
    tn_sched_proj p;
    cr_assert_eq(tn_log_sched_get(tn_evlog_store(tn_engine_log(E)), name, &p), TN_OK);
    tn_sched_proj_fini(&p); /* the tests read the scalar fields only */
    return p;
}

static void no_op(tn_engine *e, void *arg)
{
    (void)e;
    (void)arg;
}

/* Run the engine with simulated time until `t` (a timer there stops the clock). */
static void run_to(int64_t t)
{
    tn_engine_after(E, t, no_op, NULL);
    while (tn_engine_now(E) < t) {
        while (tn_engine_step(E, NULL) > 0)
            ;
        if (!tn_engine_advance(E))
            break;
    }
    while (tn_engine_step(E, NULL) > 0)
        ;
}

typedef struct submit_info {
    int64_t sched;
    char schedule[64];
    char region[16];
} submit_info;

static int submit_cb(void *ctx, const tn_event *ev)
{
    submit_info *s = ctx;
    if (ev->machine != TN_MACHINE_WORKFLOW || ev->event != TN_WF_E_SUBMIT)
        return 0;
    tn_event_int(ev, "sched", &s->sched);
    const tn_attr *a = tn_event_attr(ev, "schedule");
    if (a)
        snprintf(s->schedule, sizeof(s->schedule), "%.*s", (int)a->s.len, a->s.p);
    a = tn_event_attr(ev, "params");
    if (a && memmem(a->s.p, a->s.len, "eu", 2))
        snprintf(s->region, sizeof(s->region), "eu");
    return 1;
}

static submit_info submit_of(uint64_t wf)
{
    submit_info s = {0};
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, submit_cb, &s, &fr);
    return s;
}

Test(schedule, fires_every_nominal_time_once_with_its_business_time, .init = setup,
     .fini = teardown)
{
    apply(sched_yaml("tick", "1s", "success"));
    int64_t t0 = tn_engine_now(E);
    sched_set("tick", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 60000, false);
    run_to(t0 + 65 * SEC);
    fires f = fires_of("tick");
    cr_assert_eq(f.n, 6, "fires in 65 s of a 10 s schedule set on a boundary: %d", f.n);
    for (int i = 0; i < f.n; i++) {
        cr_assert_eq(f.nominal[i], t0 + (i + 1) * 10 * SEC, "fire %d at %" PRId64, i,
                     f.nominal[i] - t0);
        submit_info s = submit_of(f.inst[i]);
        cr_assert_eq(s.sched, f.nominal[i], "the instance's schedule time is its nominal time");
        cr_assert_str_eq(s.schedule, "tick");
        cr_assert_str_eq(s.region, "eu", "the schedule's params reach its instances");
        ASSERT_WF(f.inst[i], TN_WF_S_SUCCESS);
    }
    tn_sched_proj p = sproj("tick");
    cr_assert_eq(p.fires, 6);
    cr_assert_eq(p.last_nominal, t0 + 60 * SEC);
}

Test(schedule, restart_and_clock_set_back_never_start_a_time_twice, .init = setup,
     .fini = teardown)
{
    apply(sched_yaml("tick", "1s", "success"));
    int64_t t0 = tn_engine_now(E);
    sched_set("tick", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 3600 * 1000, false);
    run_to(t0 + 35 * SEC);
    cr_assert_eq(fires_of("tick").n, 3);
    /* the clock goes back 30 s across a restart: the times already decided stay decided */
    vclock = t0 + 5 * SEC;
    tn_engine_close(E);
    open_engine();
    run_to(t0 + 45 * SEC);
    fires f = fires_of("tick");
    cr_assert_eq(f.n, 4, "10, 20, 30 once each, then 40: %d fires", f.n);
    for (int i = 0; i < f.n; i++)
        cr_assert_eq(f.nominal[i], t0 + (i + 1) * 10 * SEC);
    /* the log itself refuses a FIRE of a decided time */
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_SCHEDULE, TN_SCHED_E_FIRE, 0, 0);
    tn_event_set_str(&ev, "schedule", "tick");
    tn_event_set_int(&ev, "nominal", t0 + 20 * SEC);
    tn_event_set_int(&ev, "instance", 999);
    ev.actor = TN_STR("user:test");
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_evlog_add(tn_engine_log(E), &ev, &m), TN_ERR_ILLEGAL);
    cr_assert(strstr(m.text, "decided already"), "%s", m.text);
    tn_evlog_discard(tn_engine_log(E));
}

Test(schedule, downtime_fires_within_catchup_and_skips_older_with_a_reason, .init = setup,
     .fini = teardown)
{
    apply(sched_yaml("tick", "1s", "success"));
    int64_t t0 = tn_engine_now(E);
    sched_set("tick", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 25000, false);
    run_to(t0 + 12 * SEC);
    cr_assert_eq(fires_of("tick").n, 1);
    /* down from t0+12 to t0+105: 20..100 were missed; 80, 90, 100 are within 25 s */
    vclock = t0 + 105 * SEC;
    tn_engine_close(E);
    open_engine();
    run_to(t0 + 106 * SEC);
    fires f = fires_of("tick");
    cr_assert_eq(f.n, 4, "%d fires", f.n);
    cr_assert_eq(f.nominal[1], t0 + 80 * SEC, "oldest first within the window");
    cr_assert_eq(f.nominal[3], t0 + 100 * SEC);
    tn_sched_proj p = sproj("tick");
    cr_assert_eq(p.skips, 6, "20..70 recorded as skipped: %" PRIu64, p.skips);
    cr_assert(strstr(p.reason, "catchup"), "%s", p.reason);
}

static int count_state(const fires *f, uint8_t st)
{
    int n = 0;
    for (int i = 0; i < f->n; i++)
        n += wf_state(f->inst[i]) == st;
    return n;
}

Test(schedule, overlap_skip_buffer_and_cancel, .init = setup, .fini = teardown)
{
    /* instances take 25 s, fires come every 10 s */
    apply(sched_yaml("skip", "25s", "success"));
    apply(sched_yaml("buf", "25s", "success"));
    apply(sched_yaml("cancel", "25s", "success"));
    apply(sched_yaml("all", "25s", "success"));
    int64_t t0 = tn_engine_now(E);
    sched_set("skip", "*/10 * * * * ?", TN_OVERLAP_SKIP, 60000, false);
    sched_set("buf", "*/10 * * * * ?", TN_OVERLAP_BUFFER_ONE, 60000, false);
    sched_set("cancel", "*/10 * * * * ?", TN_OVERLAP_CANCEL_OTHER, 60000, false);
    sched_set("all", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 60000, false);
    run_to(t0 + 41 * SEC);
    /* skip: 10 runs to 35; 20, 30 skipped; 40 fires */
    fires f = fires_of("skip");
    cr_assert_eq(f.n, 2, "skip: %d", f.n);
    cr_assert_eq(f.nominal[1], t0 + 40 * SEC);
    cr_assert_eq(sproj("skip").skips, 2);
    /* buffer_one: 20 waits, 30 is skipped (one waits already), 20 starts when 10 ends at
     * 35; 40 waits for it */
    f = fires_of("buf");
    cr_assert_eq(f.n, 2, "buffer_one: %d", f.n);
    cr_assert_eq(f.nominal[1], t0 + 20 * SEC);
    tn_sched_proj p = sproj("buf");
    cr_assert_eq(p.skips, 1);
    cr_assert_eq(p.nbuffered, 1);
    cr_assert_eq(p.buffered[0], t0 + 40 * SEC);
    /* cancel_other: every fire stops the one before */
    f = fires_of("cancel");
    cr_assert_eq(f.n, 4);
    cr_assert_eq(count_state(&f, TN_WF_S_STOP), 3, "three were stopped by the next fire");
    /* allow_all: all four run at once */
    f = fires_of("all");
    cr_assert_eq(f.n, 4);
    cr_assert_eq(count_state(&f, TN_WF_S_STOP), 0);
}

Test(schedule, pause_resume_trigger_remove_and_pause_on_failure, .init = setup,
     .fini = teardown)
{
    apply(sched_yaml("tick", "1s", "success"));
    apply(sched_yaml("bad", "1s", "failure"));
    int64_t t0 = tn_engine_now(E);
    sched_set("tick", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 60000, false);
    sched_set("bad", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 60000, true);
    run_to(t0 + 15 * SEC);
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_PAUSE, "tick", NULL), TN_OK);
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_PAUSE, "tick", NULL), TN_ERR_ILLEGAL,
                 "pausing a paused schedule is refused by the table");
    run_to(t0 + 45 * SEC);
    cr_assert_eq(fires_of("tick").n, 1, "nothing fires while paused");
    /* a failed instance paused its schedule */
    cr_assert_eq(sproj("bad").state, TN_SCHED_S_PAUSED);
    cr_assert(strstr(sproj("bad").reason, "failed"), "%s", sproj("bad").reason);
    cr_assert_eq(fires_of("bad").n, 1);
    uint64_t inst = 0;
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_TRIGGER, "tick", &inst), TN_OK);
    cr_assert_neq(inst, 0);
    fires f = fires_of("tick");
    cr_assert_eq(f.n, 2);
    cr_assert(f.manual[1], "a trigger is a manual fire");
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_RESUME, "tick", NULL), TN_OK);
    run_to(t0 + 61 * SEC);
    f = fires_of("tick");
    cr_assert_eq(f.n, 4, "resumed at 45: 50 and 60 fire, 20..40 do not: %d", f.n);
    cr_assert_eq(f.nominal[3], t0 + 60 * SEC);
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_RM, "tick", NULL), TN_OK);
    run_to(t0 + 90 * SEC);
    cr_assert_eq(fires_of("tick").n, 4);
    cr_assert_eq(sproj("tick").state, TN_SCHED_S_REMOVED);
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_PAUSE, "tick", NULL), TN_ERR_NOENT);
    /* set again after removal: a new schedule from now */
    sched_set("tick", "*/10 * * * * ?", TN_OVERLAP_ALLOW_ALL, 60000, false);
    sched_set("tick", "*/20 * * * * ?", TN_OVERLAP_SKIP, 60000, false);
    cr_assert_eq(sproj("tick").state, TN_SCHED_S_ACTIVE);
    cr_assert_str_eq(sproj("tick").cron, "*/20 * * * * ?", "a set replaces the spec");
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_PAUSE, "tick", NULL), TN_OK);
    sched_set("tick", "*/30 * * * * ?", TN_OVERLAP_SKIP, 60000, false);
    cr_assert_eq(sproj("tick").state, TN_SCHED_S_PAUSED,
                 "changing a paused one keeps it paused");
    cr_assert_eq(sched_cmd(TN_CMD_SCHED_RM, "tick", NULL), TN_OK);
}

Test(schedule, refuses_unknown_workflow_and_bad_spec, .init = setup, .fini = teardown)
{
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    snprintf(sp.cron, sizeof(sp.cron), "0 0 25 * * ?");
    tn_cmd c = {.kind = TN_CMD_SCHED_SET, .workflow = "nope", .sched = &sp};
    tn_engine_call(E, &c);
    cr_assert_eq(c.err, TN_ERR_NOENT, "%s", c.msg);
    apply(sched_yaml("tick", "1s", "success"));
    c = (tn_cmd){.kind = TN_CMD_SCHED_SET, .workflow = "tick", .sched = &sp};
    tn_engine_call(E, &c);
    cr_assert_eq(c.err, TN_ERR_INVAL);
    cr_assert(strstr(c.msg, "hour 25"), "%s", c.msg);
}

typedef struct bf_info {
    tn_backfill_proj p;
} bf_info;

Test(schedule, backfill_runs_dates_in_order_with_stop_and_resume, .init = setup,
     .fini = teardown)
{
    apply(sched_yaml("etl", "5s", "success"));
    int64_t d0 = 1767225600LL * SEC; /* 2026-01-01T00:00:00Z */
    int64_t dates[4] = {d0, d0 + 86400 * SEC, d0 + 2 * 86400 * SEC, d0 + 3 * 86400 * SEC};
    tn_cmd c = {
        .kind = TN_CMD_BACKFILL, .workflow = "etl", .dates = dates, .ndates = 4, .parallel = 1};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
    cr_assert_eq(c.err, TN_OK, "%s", c.msg);
    uint64_t bf = c.out_id;
    tn_store *st = tn_evlog_store(tn_engine_log(E));
    uint64_t i0, i1;
    cr_assert_eq(tn_log_backfill_instance(st, bf, 0, &i0), TN_OK);
    cr_assert_eq(tn_log_backfill_instance(st, bf, 1, &i1), TN_ERR_NOENT,
                 "serial: one at a time");
    run(i0);
    cr_assert_eq(tn_log_backfill_instance(st, bf, 1, &i1), TN_OK);
    cr_assert_eq(submit_of(i1).sched, dates[1], "each instance has its business time");
    cr_assert_eq(cmd(TN_CMD_BACKFILL_STOP, bf), TN_OK);
    settle(5);
    cr_assert_eq(wf_state(i1), TN_WF_S_STOP, "stopping the backfill stops its instance");
    uint64_t i2;
    cr_assert_eq(tn_log_backfill_instance(st, bf, 2, &i2), TN_ERR_NOENT);
    /* a restart keeps it stopped; resume goes on with the dates not started */
    restart(true);
    cr_assert_eq(cmd(TN_CMD_BACKFILL_RESUME, bf), TN_OK);
    settle(20);
    uint64_t i3;
    cr_assert_eq(tn_log_backfill_instance(st = tn_evlog_store(tn_engine_log(E)), bf, 3, &i3),
                 TN_OK);
    run(i3);
    settle(2);
    tn_backfill_proj p;
    cr_assert_eq(tn_log_backfill_get(st, bf, &p), TN_OK);
    cr_assert_eq(p.state, TN_BF_S_DONE);
    cr_assert_eq(p.next, 4);
    tn_backfill_proj_fini(&p);
    cr_assert_eq(cmd(TN_CMD_BACKFILL_STOP, bf), TN_ERR_NOENT, "a finished backfill is gone");
}

Test(schedule, a_definition_schedule_block_sets_the_schedule, .init = setup, .fini = teardown)
{
    int64_t t0 = tn_engine_now(E);
    apply("name: blk\nschedule:\n  cron: \"*/10 * * * * ?\"\n  timezone: Asia/Shanghai\n"
          "  overlap: skip\n  params: {region: eu}\n"
          "tasks:\n  - name: a\n    type: noop\n    duration: 1s\n");
    tn_sched_proj p = sproj("blk");
    cr_assert_eq(p.state, TN_SCHED_S_ACTIVE);
    cr_assert_str_eq(p.tz, "Asia/Shanghai");
    cr_assert_str_eq(p.overlap, "skip");
    run_to(t0 + 21 * SEC);
    fires f = fires_of("blk");
    cr_assert_eq(f.n, 2);
    cr_assert_str_eq(submit_of(f.inst[0]).region, "eu");
}

/* ------------------------------------------------------------------------------ */
/* alerts: which outcomes raise which alerts */

typedef struct raised {
    char on[8][16];
    uint64_t task[8];
    int n;
} raised;

static int raised_cb(void *ctx, const tn_alert_proj *p)
{
    raised *r = ctx;
    if (r->n < 8) {
        snprintf(r->on[r->n], sizeof(r->on[0]), "%s", p->on);
        r->task[r->n++] = p->task;
    }
    return 0;
}

static raised raised_alerts(void)
{
    raised r = {.n = 0};
    cr_assert_eq(tn_log_alert_each(tn_evlog_store(tn_engine_log(E)), 1, false, raised_cb, &r),
                 TN_OK);
    return r;
}

Test(alerts, outcomes_raise_the_alerts_asked_for, .init = setup, .fini = teardown)
{
    apply("name: al\ntimeout: 1h\n"
          "alerts:\n  - {on: [failure, task_failure], webhook: 'http://127.0.0.1:1/x'}\n"
          "  - {on: [success], webhook: 'http://127.0.0.1:1/y'}\n"
          "tasks:\n  - {name: a, type: noop, result: failure}\n"
          "  - {name: b, type: noop}\n");
    uint64_t wf = start("al");
    cr_assert_eq(run(wf), TN_WF_S_FAILURE);
    raised r = raised_alerts();
    cr_assert_eq(r.n, 2, "the task's failure and the workflow's, not success: %d", r.n);
    cr_assert_str_eq(r.on[0], "task_failure");
    cr_assert_eq(r.task[0], task(wf, "a").id);
    cr_assert_str_eq(r.on[1], "failure");
    /* a stopped instance is a kill; nothing asks for kill here, so nothing is raised */
    apply("name: slow\nalerts:\n  - {on: [kill, timeout], webhook: 'http://127.0.0.1:1/z'}\n"
          "tasks:\n  - {name: a, type: noop, duration: 1h}\n");
    uint64_t w2 = start("slow");
    while (tn_engine_step(E, NULL) > 0)
        ;
    cr_assert_eq(cmd(TN_CMD_STOP, w2), TN_OK);
    run(w2);
    r = raised_alerts();
    cr_assert_eq(r.n, 3);
    cr_assert_str_eq(r.on[2], "kill");
}

/* ------------------------------------------------------------------------------ */
/* big definitions */

/* Per node of a workflow whose tasks are named t0..tN-1: how often each was submitted,
 * dispatched and succeeded, and whether one was submitted before a dep succeeded. */
typedef struct runs {
    uint32_t n;
    uint8_t *submit, *dispatched, *ok;
    uint64_t *ids, *task_node; /* task ids in submission order (they grow), and their nodes */
    uint32_t nids;
    const uint32_t (*deps)[2]; /* two deps per node, or none (UINT32_MAX) */
    bool early;                /* submitted before a dep succeeded */
} runs;

/* The node of a SUBMIT event: its name is t<node>. */
static uint32_t runs_node(const tn_event *ev)
{
    const tn_attr *a = tn_event_attr(ev, "name");
    char nm[16];
    if (!a || a->type != TN_ATTR_STR || a->s.len < 2 || a->s.len >= sizeof(nm))
        return UINT32_MAX;
    memcpy(nm, a->s.p, a->s.len);
    nm[a->s.len] = 0;
    return (uint32_t)strtoul(nm + 1, NULL, 10);
}

static int runs_cb(void *ctx, const tn_event *ev)
{
    runs *r = ctx;
    if (ev->machine != TN_MACHINE_TASK)
        return 0;
    if (ev->event == TN_TASK_E_SUBMIT) {
        uint32_t node = runs_node(ev);
        cr_assert_lt(node, r->n);
        r->submit[node]++;
        r->ids[r->nids] = ev->task;
        r->task_node[r->nids++] = node;
        for (int k = 0; r->deps && k < 2; k++)
            if (r->deps[node][k] != UINT32_MAX && !r->ok[r->deps[node][k]])
                r->early = true;
        return 0;
    }
    if (ev->event != TN_TASK_E_DISPATCHED && ev->event != TN_TASK_E_SUCCEEDED)
        return 0;
    /* the task's node: ids are in submission order, so a binary search finds it */
    uint32_t lo = 0, hi = r->nids;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (r->ids[mid] < ev->task)
            lo = mid + 1;
        else
            hi = mid;
    }
    cr_assert(lo < r->nids && r->ids[lo] == ev->task, "event of an unknown task");
    uint32_t node = (uint32_t)r->task_node[lo];
    if (ev->event == TN_TASK_E_DISPATCHED)
        r->dispatched[node]++;
    else
        r->ok[node]++;
    return 0;
}

static void runs_check(uint64_t wf, uint32_t n, const uint32_t (*deps)[2])
{
    runs r = {.n = n, .deps = deps};
    r.submit = calloc(n, 1);
    r.dispatched = calloc(n, 1);
    r.ok = calloc(n, 1);
    r.ids = calloc(n, sizeof(uint64_t));
    r.task_node = calloc(n, sizeof(uint64_t));
    int fr;
    cr_assert_eq(tn_replay_wf_events(tn_evlog_store(tn_engine_log(E)), wf, runs_cb, &r, &fr),
                 TN_OK);
    cr_assert_eq(r.nids, n, "%u of %u tasks created", r.nids, n);
    for (uint32_t i = 0; i < n; i++)
        cr_assert(r.submit[i] == 1 && r.dispatched[i] == 1 && r.ok[i] == 1,
                  "t%u: submitted %u, dispatched %u, succeeded %u times", i, r.submit[i],
                  r.dispatched[i], r.ok[i]);
    cr_assert(!r.early, "a task was submitted before one of its deps succeeded");
    free(r.submit);
    free(r.dispatched);
    free(r.ok);
    free(r.ids);
    free(r.task_node);
}

/* Rows of 100 tasks, each on two tasks of the row above (as `tern bench engine --scale`). */
static char *layered_yaml(uint32_t n, uint32_t (*deps)[2])
{
    size_t cap = 64 + (size_t)n * 72, l;
    char *y = malloc(cap);
    cr_assert(y);
    l = (size_t)snprintf(y, cap, "name: layered\ntasks:\n");
    for (uint32_t i = 0; i < n; i++) {
        if (i < 100) {
            deps[i][0] = deps[i][1] = UINT32_MAX;
            l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop}\n", i);
            continue;
        }
        uint32_t row = i / 100 * 100;
        deps[i][0] = i - 100;
        deps[i][1] = row - 100 + (i - row + 1) % 100;
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop, deps: [t%u, t%u]}\n",
                              i, deps[i][0], deps[i][1]);
    }
    return y;
}

Test(scale, layered_dag_of_10k_tasks_runs_each_task_once_after_its_deps)
{
    const uint32_t n = 10000;
    uint32_t(*deps)[2] = calloc(n, sizeof(*deps));
    char *y = layered_yaml(n, deps);
    apply(y);
    free(y);
    uint64_t wf = start("layered");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS, "%s", wsn(wf_state(wf)));
    runs_check(wf, n, (const uint32_t(*)[2])deps);
    free(deps);
}

Test(scale, wide_workflow_of_20k_tasks_runs_each_task_once)
{
    const uint32_t n = 20000;
    size_t cap = 64 + (size_t)n * 40, l;
    char *y = malloc(cap);
    l = (size_t)snprintf(y, cap, "name: wide\ntasks:\n");
    for (uint32_t i = 0; i < n; i++)
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop}\n", i);
    X.slots = 200; /* the scripted executor keeps at most 256 attempts */
    apply(y);
    free(y);
    uint64_t wf = start("wide");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS, "%s", wsn(wf_state(wf)));
    runs_check(wf, n, NULL);
}

static char *wide_yaml(const char *name, uint32_t n)
{
    size_t cap = 64 + (size_t)n * 40, l;
    char *y = malloc(cap);
    cr_assert(y);
    l = (size_t)snprintf(y, cap, "name: %s\ntasks:\n", name);
    for (uint32_t i = 0; i < n; i++)
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop}\n", i);
    return y;
}

static int submitted(uint64_t wf)
{
    return events(wf, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, 0).n;
}

/* A workflow wider than a batch starts its tasks over several (4096 starts a step, each
 * batch committed while the next one is built), each task once: also when the engine
 * restarts between them, and none after a stop between them. */
Test(scale, a_workflow_wider_than_a_batch_starts_over_several_each_task_once)
{
    const int n = 20000;
    char *y = wide_yaml("wide", (uint32_t)n);
    apply(y);
    free(y);
    X.no_worker = true; /* created tasks wait in the queue: the starts are what is counted */

    uint64_t a = start("wide");
    int k = submitted(a);
    cr_assert(k > 0 && k < n, "the start is answered before all its tasks start (%d)", k);
    settle(0);
    cr_assert_eq(submitted(a), n, "the following steps start the rest");

    uint64_t b = start("wide");
    cr_assert_lt(submitted(b), n);
    restart(true); /* the rest is started by the restarted engine */
    settle(0);
    cr_assert_eq(submitted(b), n);

    uint64_t c = start("wide");
    cr_assert_eq(cmd(TN_CMD_STOP, c), TN_OK);
    settle(0);
    ASSERT_WF(c, TN_WF_S_STOP);
    k = submitted(c);
    cr_assert(k > 0 && k < n, "nothing is started after the stop (%d)", k);
    cr_assert_eq(k % 4096, 0, "whole steps of starts (%d)", k);

    X.no_worker = false;
    X.slots = 200; /* the scripted executor keeps at most 256 attempts */
    cr_assert_eq(run(a), TN_WF_S_SUCCESS, "%s", wsn(wf_state(a)));
    cr_assert_eq(run(b), TN_WF_S_SUCCESS, "%s", wsn(wf_state(b)));
    runs_check(a, (uint32_t)n, NULL);
    runs_check(b, (uint32_t)n, NULL);
}

/* Tasks that wait for a slot are not all tried again at every step: a step tries what
 * it places and at most a few more (it was every waiting task, so a workflow's
 * placement work grew with the square of its size). Those not tried say why they wait. */
Test(scale, waiting_tasks_are_not_all_tried_at_every_step)
{
    const uint32_t n = 2000;
    size_t cap = 64 + (size_t)n * 56, l;
    char *y = malloc(cap);
    l = (size_t)snprintf(y, cap, "name: few\ntasks:\n");
    for (uint32_t i = 0; i < n; i++)
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop, duration: 1s}\n", i);
    X.slots = 4;
    apply(y);
    free(y);
    uint64_t wf = start("few");
    settle(0);
    tinfo last = task(wf, "t1999");
    cr_assert_eq(last.state, TN_TASK_S_SUBMITTED_SUCCESS, "%s", tsn(last.state));
    tn_cmd why = {.kind = TN_CMD_WHY, .id = last.id};
    cr_assert_eq(tn_engine_call(E, &why), TN_OK);
    cr_assert_str_eq(why.msg, "all 4 slots are taken", "a task not tried says why it waits");
    unsigned steps = 0;
    for (;;) {
        while (tn_engine_step(E, NULL) > 0)
            steps++;
        if (wf_state(wf) == TN_WF_S_SUCCESS || !tn_engine_advance(E))
            break;
        steps++;
    }
    cr_assert_eq(wf_state(wf), TN_WF_S_SUCCESS);
    runs_check(wf, n, NULL);
    /* each step places what fits and stops after 8 refusals */
    cr_assert_leq(X.places, n + 9 * (steps + 1), "%u placements in %u steps", X.places, steps);
    cr_assert_lt(X.places, 20 * n, "%u placements for %u tasks", X.places, n);
}

/* A definition is decoded once: when it is applied; it stays decoded while instances use
 * it and for the next start (a start decoded it twice, and every start of a finished one
 * again). After a restart, the first start decodes it. */
Test(scale, definition_decoded_once_for_many_starts)
{
    apply(
        "name: dd\ntasks:\n  - {name: a, type: noop}\n  - {name: b, type: noop, deps: [a]}\n");
    tn_engine_stats s0, s1;
    tn_engine_stats_get(E, &s0);
    for (int i = 0; i < 5; i++) {
        uint64_t wf = start("dd");
        cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    }
    uint64_t w1 = start("dd"), w2 = start("dd");
    cr_assert_eq(run(w1), TN_WF_S_SUCCESS);
    cr_assert_eq(run(w2), TN_WF_S_SUCCESS);
    tn_engine_stats_get(E, &s1);
    cr_assert_eq(s1.def_decodes - s0.def_decodes, 0, "%" PRIu64 " decodes for 7 starts",
                 s1.def_decodes - s0.def_decodes);
    /* a new version is decoded once too, and the old one's instances keep theirs */
    apply("name: dd\ntasks:\n  - {name: a, type: noop}\n");
    uint64_t w3 = start("dd");
    cr_assert_eq(run(w3), TN_WF_S_SUCCESS);
    ASSERT_TASK(w3, "a", TN_TASK_S_SUCCESS, 1);
    cr_assert(!task(w3, "b").found, "the new version has no task b");
    tn_engine_stats_get(E, &s1);
    cr_assert_eq(s1.def_decodes - s0.def_decodes, 0);
    restart(false);
    tn_engine_stats_get(E, &s0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(run(start("dd")), TN_WF_S_SUCCESS);
    tn_engine_stats_get(E, &s1);
    cr_assert_eq(s1.def_decodes - s0.def_decodes, 1,
                 "read from the store once after a restart");
    ASSERT_TASK(w3, "a", TN_TASK_S_SUCCESS, 1);
}

/* More idle definitions than the cache keeps: the least recently used go, and each
 * still starts (decoded again). */
Test(scale, idle_definitions_beyond_the_cache_are_dropped_and_reloaded)
{
    char y[128], name[16];
    for (int i = 0; i < 40; i++) {
        snprintf(y, sizeof(y), "name: d%d\ntasks:\n  - {name: a, type: noop}\n", i);
        apply(y);
    }
    tn_engine_stats s0, s1;
    tn_engine_stats_get(E, &s0);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 40; i++) {
            snprintf(name, sizeof(name), "d%d", i);
            cr_assert_eq(run(start(name)), TN_WF_S_SUCCESS);
        }
    tn_engine_stats_get(E, &s1);
    cr_assert_eq(s1.def_decodes - s0.def_decodes, 80, "40 > the cache: every start decodes");
    tn_engine_stats_get(E, &s0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(run(start("d39")), TN_WF_S_SUCCESS);
    tn_engine_stats_get(E, &s1);
    cr_assert_eq(s1.def_decodes - s0.def_decodes, 0, "the last used stays decoded");
}

/* A task with no params anywhere (none of its own, no globals, nothing upstream, no
 * start-time overrides) gets its command substituted as one with params does: the
 * built-ins still resolve; TERN_TZ unset is the local zone. */
Test(params, task_without_any_params_still_gets_builtins)
{
    unsetenv("TERN_TZ");
    cap_open();
    apply("name: bare\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - name: b\n    type: shell\n    deps: [a]\n"
          "    command: echo ${system.workflow.instance.id}/${system.task.instance.id}/${x}\n");
    uint64_t wf = start("bare");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    char want[256];
    snprintf(want, sizeof(want), "echo %" PRIu64 "/%" PRIu64 "/${x}", wf, task(wf, "b").id);
    cr_assert_str_eq(CAP.cmd, want);
    /* the same with a global param: the resolving path, the same result for the rest */
    apply("name: bare\nparams: {g: 1}\ntasks:\n"
          "  - {name: a, type: noop}\n"
          "  - name: b\n    type: shell\n    deps: [a]\n"
          "    command: echo ${system.workflow.instance.id}/${system.task.instance.id}/${x}\n");
    wf = start("bare");
    cr_assert_eq(run(wf), TN_WF_S_SUCCESS);
    snprintf(want, sizeof(want), "echo %" PRIu64 "/%" PRIu64 "/${x}", wf, task(wf, "b").id);
    cr_assert_str_eq(CAP.cmd, want);
    setenv("TERN_TZ", "UTC", 1);
}

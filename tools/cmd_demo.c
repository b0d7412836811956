/* `tern demo`: record a demo workflow instance's transitions through the event log
 * (each checked against the generated tables, chained, group-committed), then print
 * its replayed timeline and verify the whole log. */
#include <stdarg.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "evlog.h"
#include "logread.h"
#include "replay.h"
#include "util.h"
#include "sm_gen.h"
#include "cli.h"

typedef struct demo_opts {
    const char *data;
} demo_opts;

static const tn_opt demo_table[] = {
    {"data", 0, TN_OPT_STR, offsetof(demo_opts, data), "DIR",
     .help = "the data directory, created if needed (default ./tern-data)"},
    {0}};

const tn_opt_cmd tn_spec_demo = {
    "demo", NULL,
    "Record the transitions of a demo workflow instance (extract -> transform, which fails\n"
    "once and is retried -> a conditions task -> load) in the event log under DIR, then\n"
    "print its timeline as `tern audit` does and verify the whole log as `tern replay`\n"
    "does. Each run adds one instance.\n",
    demo_table, .max_args = 0};

typedef struct demo {
    tn_evlog *log;
    tn_errmsg msg;
    int64_t clock; /* a simulated clock so the timeline reads like a real run */
    tn_err err;
} demo;

/* Record one event; attrs as (key, is_int, int value, string value) quadruples ended by
 * a NULL key. */
static void rec(demo *d, unsigned machine, unsigned event, uint64_t wf, uint64_t task,
                const char *actor, int64_t ms, ...)
{
    if (d->err)
        return;
    tn_event ev;
    tn_event_init(&ev, machine, event, wf, task);
    ev.actor = tn_str_c(actor);
    d->clock += ms * 1000000;
    ev.at = d->clock;
    va_list ap;
    va_start(ap, ms);
    for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
        int is_int = va_arg(ap, int);
        int64_t i = va_arg(ap, int64_t);
        const char *s = va_arg(ap, const char *);
        if (is_int)
            tn_event_set_int(&ev, k, i);
        else
            tn_event_set_str(&ev, k, s);
    }
    va_end(ap);
    d->err = tn_evlog_add(d->log, &ev, &d->msg);
}

#define I(k, v) k, 1, (int64_t)(v), (const char *)NULL
#define S(k, v) k, 0, (int64_t)0, (const char *)(v)
#define END     (const char *)NULL

static void run_task(demo *d, uint64_t wf, uint64_t t, const char *worker, int attempt, int pid,
                     int exit_code, int64_t ms)
{
    rec(d, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, wf, t, "master:demo", 1, I("attempt", attempt),
        I("priority", 2), END);
    rec(d, TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, wf, t, "master:demo", 1, S("worker", worker),
        I("attempt", attempt), END);
    rec(d, TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, t, worker, 2, I("pid", pid),
        I("attempt", attempt), S("containment", "cgroup"), END);
    if (exit_code == 0)
        rec(d, TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, wf, t, worker, ms, I("exit", 0),
            I("attempt", attempt), END);
    else
        rec(d, TN_MACHINE_TASK, TN_TASK_E_FAILED, wf, t, worker, ms, I("exit", exit_code),
            I("attempt", attempt), END);
}

static void task_done(demo *d, uint64_t wf, uint64_t t, const char *name)
{
    rec(d, TN_MACHINE_WORKFLOW, TN_WF_E_TASK_FINISHED, wf, 0, "master:demo", 0, I("task", t),
        S("task_name", name), END);
}

static int print_event(void *ctx, const tn_event *ev)
{
    const tn_sm *sm = tn_sm_get(ev->machine);
    char ts[40];
    tn_fmt_time(ev->at, ts, sizeof(ts));
    printf("  %s  seq=%-4" PRIu64 " %-12.*s %-8s %-3" PRIu64 " %-13s %s -> %s", ts + 11,
           ev->seq, (int)ev->actor.len, ev->actor.p, sm->name,
           ev->machine == TN_MACHINE_TASK ? ev->task : ev->wf, tn_sm_event_name(sm, ev->event),
           tn_sm_state_name(sm, ev->from), tn_sm_state_name(sm, ev->to));
    for (uint32_t i = 0; i < ev->nattrs; i++) {
        const tn_attr *a = &ev->attrs[i];
        if (a->type == TN_ATTR_INT)
            printf(" %.*s=%" PRId64, (int)a->key.len, a->key.p, a->i);
        else
            printf(" %.*s=%.*s", (int)a->key.len, a->key.p, (int)a->s.len, a->s.p);
    }
    putchar('\n');
    (void)ctx;
    return 0;
}

int tn_cmd_demo(int argc, char **argv)
{
    demo_opts opts = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_demo, argc, argv, &opts, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a); /* no positional arguments; data points into argv */
    const char *data = opts.data;
    demo d = {0};
    tn_evlog_opts o = {.create = true};
    if (tn_evlog_open(data, &o, &d.log, &d.msg))
        return tn_cli_fail("demo", "%s", d.msg.text);
    d.clock = tn_now_ns();
    uint64_t wf = tn_evlog_new_wf_id(d.log);
    uint64_t extract = tn_evlog_new_task_id(d.log), transform = tn_evlog_new_task_id(d.log);
    uint64_t check = tn_evlog_new_task_id(d.log), load = tn_evlog_new_task_id(d.log);

    rec(&d, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0, "user:demo", 0, S("name", "daily_etl"),
        I("version", 1), I("run", 1), S("execution", "parallel"), END);
    rec(&d, TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0, "master:demo", 1, END);
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, extract, "master:demo", 0,
        S("name", "extract"), I("attempt", 1), END);
    run_task(&d, wf, extract, "worker:w1", 1, 4242, 0, 820);
    task_done(&d, wf, extract, "extract");
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, transform, "master:demo", 0,
        S("name", "transform"), I("attempt", 1), END);
    run_task(&d, wf, transform, "worker:w2", 1, 5150, 3, 310);
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_RETRY, wf, transform, "master:demo", 0, I("attempt", 2),
        I("retry_interval_ms", 2000), I("due", d.clock + 2000000000LL), END);
    d.clock += 2000000000LL;
    run_task(&d, wf, transform, "worker:w1", 2, 5177, 0, 640);
    task_done(&d, wf, transform, "transform");
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, check, "master:demo", 0, S("name", "check"),
        I("attempt", 1), END);
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, check, "master:demo", 0,
        S("type", "conditions"), END);
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, wf, check, "master:demo", 0,
        S("branch", "on_success"), S("skipped", "alert"), END);
    task_done(&d, wf, check, "check");
    rec(&d, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, load, "master:demo", 0, S("name", "load"),
        I("attempt", 1), END);
    run_task(&d, wf, load, "worker:w2", 1, 5301, 0, 450);
    task_done(&d, wf, load, "load");
    rec(&d, TN_MACHINE_WORKFLOW, TN_WF_E_SUCCEED, wf, 0, "master:demo", 0, I("tasks", 4), END);
    size_t n = tn_evlog_pending(d.log);
    if (!d.err)
        d.err = tn_evlog_commit(d.log, &d.msg);
    if (d.err) {
        rc = tn_cli_fail("demo", "%s", d.msg.text);
        tn_evlog_close(d.log);
        return rc;
    }
    tn_store *s = tn_evlog_store(d.log);
    printf("recorded workflow instance %" PRIu64
           " (daily_etl): %zu events in one commit, in %s\n\n",
           wf, n, tn_log_store_path(s));
    printf("timeline (replayed from the log; `tern audit %" PRIu64 " --data %s`):\n", wf, data);
    int fr;
    tn_replay_wf_events(s, wf, print_event, NULL, &fr);
    tn_replay_report rep;
    tn_replay_opts ro = {.verify_chain = true, .compare = true};
    tn_err e = tn_replay_run(s, &ro, &rep);
    if (e || rep.err) {
        rc = tn_cli_fail("demo", "replay found a problem at seq %" PRIu64 ": %s", rep.bad_seq,
                         e ? tn_strerror(e) : rep.why);
    } else {
        printf("\nreplay of the whole log: %" PRIu64 " events, %" PRIu64 " workflows, %" PRIu64
               " tasks; every transition legal, hash chain intact, projections equal to the "
               "stored ones\n",
               rep.events, rep.workflows, rep.tasks);
    }
    tn_evlog_close(d.log);
    return rc;
}

/* The master's engine metrics (see apimetrics.h). */
#include "apimetrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logread.h"
#include "prom.h"
#include "sm_gen.h"

enum {
    SNAP_WAIT_NS = 2000000000, /* a busy engine: the last copy is served, marked stale */
    NREASONS = 6,
};

static const char *const reasons[NREASONS] = {"not_tried",  "no_worker",  "workers_full",
                                              "overloaded", "task_group", "other"};

typedef struct snap {
    tn_engine_metrics m;
    tn_engine_stats st;
    uint64_t waiting[NREASONS];
} snap;

struct tn_apimetrics {
    tn_engine *e;
    uint64_t base_wf[TN_ENGINE_METRIC_STATES], base_task[TN_ENGINE_METRIC_STATES];
    tn_engine_metrics base; /* the engine's state deltas when the store was counted */
    pthread_mutex_t mu;     /* last, and one scrape at a time */
    snap last;
    bool have_last;
};

const char *tn_apimetrics_reason(const char *why)
{
    if (!why[0])
        return reasons[0];
    if (strstr(why, "no live worker"))
        return reasons[1];
    if (strstr(why, "overloaded"))
        return reasons[3];
    if (strstr(why, "are full"))
        return reasons[2];
    if (strstr(why, "task group"))
        return reasons[4];
    return reasons[5];
}

static void count_waiting(void *ctx, const char *why)
{
    snap *s = ctx;
    const char *r = tn_apimetrics_reason(why);
    for (int i = 0; i < NREASONS; i++)
        if (r == reasons[i])
            s->waiting[i]++;
}

static void snap_cb(tn_engine *e, void *ctx)
{
    snap *s = ctx;
    tn_engine_metrics_get(e, &s->m);
    tn_engine_stats_get(e, &s->st);
    tn_engine_each_waiting(e, count_waiting, s);
    /* a task that waits for a group slot was queued but never tried by a worker */
    uint64_t g = s->m.group_waits < s->waiting[0] ? s->m.group_waits : s->waiting[0];
    s->waiting[0] -= g;
    s->waiting[4] += g;
}

tn_err tn_apimetrics_new(tn_engine *e, tn_apimetrics **out, tn_errmsg *msg)
{
    tn_apimetrics *m = calloc(1, sizeof(*m));
    if (!m)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    m->e = e;
    pthread_mutex_init(&m->mu, NULL);
    if (e) {
        tn_err err = tn_log_state_counts(tn_evlog_store(tn_engine_log(e)), m->base_wf,
                                         m->base_task, TN_ENGINE_METRIC_STATES);
        if (err) {
            tn_apimetrics_free(m);
            return tn_errmsg_set(msg, err, "metrics: cannot count the store's instances: %s",
                                 tn_strerror(err));
        }
        tn_engine_metrics_get(e, &m->base);
    }
    *out = m;
    return TN_OK;
}

void tn_apimetrics_free(tn_apimetrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* tern_instances / tern_tasks: the store's counts at start plus what changed since. */
static void write_states(tn_apimetrics *a, const snap *s, tn_sb *b)
{
    static const struct {
        const char *name, *help;
        unsigned machine;
    } g[] = {{"tern_instances", "Workflow instances by state.", TN_MACHINE_WORKFLOW},
             {"tern_tasks", "Task instances by state.", TN_MACHINE_TASK}};
    for (size_t k = 0; k < TN_ARRAY_LEN(g); k++) {
        const tn_sm *sm = tn_sm_get(g[k].machine);
        const uint64_t *base = k == 0 ? a->base_wf : a->base_task;
        tn_prom_head(b, g[k].name, "gauge", g[k].help);
        for (unsigned st = 1; st < sm->nstates && st < TN_ENGINE_METRIC_STATES; st++) {
            int64_t v = (int64_t)base[st] + s->m.states[g[k].machine][st] -
                        a->base.states[g[k].machine][st];
            char l[96];
            snprintf(l, sizeof(l), "state=\"%s\"", tn_sm_state_name(sm, st));
            tn_prom_sample(b, g[k].name, l, (double)(v < 0 ? 0 : v));
        }
    }
}

static void write_transitions(const snap *s, tn_sb *b)
{
    tn_prom_head(b, "tern_transitions_total", "counter",
                 "Committed state-machine transitions since the master started, by machine "
                 "and event.");
    for (unsigned mc = 1; mc <= TN_MACHINE_MAX; mc++) {
        const tn_sm *sm = tn_sm_get(mc);
        for (unsigned ev = 0; sm && ev < sm->nevents && ev < TN_ENGINE_METRIC_EVENTS; ev++) {
            char l[128];
            snprintf(l, sizeof(l), "machine=\"%s\",event=\"%s\"", sm->name,
                     tn_sm_event_name(sm, ev));
            tn_prom_sample(b, "tern_transitions_total", l, (double)s->m.transitions[mc][ev]);
        }
    }
}

static void write_engine(const snap *s, tn_sb *b)
{
    tn_prom_head(b, "tern_commit_duration_seconds", "histogram",
                 "Time of one group commit of the event log (write and sync).");
    tn_prom_hist_write(b, "tern_commit_duration_seconds", NULL, &s->m.commit_seconds);
    tn_prom_head(b, "tern_commit_batch_events", "histogram", "Events per group commit.");
    tn_prom_hist_write(b, "tern_commit_batch_events", NULL, &s->m.batch_events);
    tn_prom_head(b, "tern_dispatch_latency_seconds", "histogram",
                 "Time from a task queued for dispatch to its placement on a worker.");
    tn_prom_hist_write(b, "tern_dispatch_latency_seconds", NULL, &s->m.dispatch_seconds);
    tn_prom_head(b, "tern_schedule_lateness_seconds", "histogram",
                 "How late a schedule's fire started its instance, past its nominal time "
                 "(triggers not counted).");
    tn_prom_hist_write(b, "tern_schedule_lateness_seconds", NULL, &s->m.sched_lateness_seconds);
    tn_prom_head(b, "tern_dispatch_queue_depth", "gauge", "Entries in the dispatch queue.");
    tn_prom_sample(b, "tern_dispatch_queue_depth", NULL, (double)s->m.queue_depth);
    tn_prom_head(b, "tern_tasks_waiting", "gauge",
                 "Tasks waiting for dispatch, by why they wait.");
    for (int i = 0; i < NREASONS; i++) {
        char l[64];
        snprintf(l, sizeof(l), "reason=\"%s\"", reasons[i]);
        tn_prom_sample(b, "tern_tasks_waiting", l, (double)s->waiting[i]);
    }
    tn_prom_head(b, "tern_engine_events_total", "counter", "Events the engine appended.");
    tn_prom_sample(b, "tern_engine_events_total", NULL, (double)s->st.events);
    tn_prom_head(b, "tern_engine_commits_total", "counter", "Group commits.");
    tn_prom_sample(b, "tern_engine_commits_total", NULL, (double)s->st.commits);
    tn_prom_head(b, "tern_engine_live_instances", "gauge",
                 "Unfinished workflow instances in the engine's memory.");
    tn_prom_sample(b, "tern_engine_live_instances", NULL, (double)s->st.live_workflows);
    tn_prom_head(b, "tern_engine_timers", "gauge", "Armed timers.");
    tn_prom_sample(b, "tern_engine_timers", NULL, (double)s->st.timers);
}

void tn_apimetrics_write(tn_apimetrics *a, tn_sb *b)
{
    if (!a->e)
        return;
    snap *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    pthread_mutex_lock(&a->mu);
    bool fresh = tn_engine_request(a->e, snap_cb, s, SNAP_WAIT_NS) == TN_OK;
    if (fresh) {
        a->last = *s;
        a->have_last = true;
    } else {
        *s = a->last;
    }
    bool any = fresh || a->have_last;
    pthread_mutex_unlock(&a->mu);
    tn_prom_head(b, "tern_metrics_stale", "gauge",
                 "1 when the engine was too busy to answer and the last copy is shown.");
    tn_prom_sample(b, "tern_metrics_stale", NULL, fresh ? 0 : 1);
    if (any) {
        write_states(a, s, b);
        write_transitions(s, b);
        write_engine(s, b);
    }
    free(s);
}

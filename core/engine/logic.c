/* Logic tasks, run by the master engine as state plus timers: conditions, switch,
 * dependent and sub_workflow; and the effective params of a task. A logic task that is
 * killed or stopped ends in that same transition: its timers are fenced by attempt and
 * state, so none of them survives it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "log.h"
#include "logread.h"
#include "replay.h"
#include "util.h"

tn_err eng_new_child(tn_engine *e, const char *name, const tn_kv *inherited, task_run *parent,
                     wf_run **out);

#define NODE(t) (&(t)->w->def->tasks[(t)->node])

/* The one context a task's params and its command are substituted in: the instance's
 * schedule (business) time, the ids, and the zone of TERN_TZ (an IANA name, "UTC" or an
 * offset; unset or empty: the process's local time). */
tn_param_ctx eng_param_ctx(tn_engine *e, task_run *t)
{
    tn_param_ctx c;
    memset(&c, 0, sizeof(c));
    c.sched_ns = t->w->sched_ns;
    c.now_ns = eng_now(e);
    c.wf_id = t->w->id;
    c.task_id = t->id;
    c.tz = t->w->tz ? t->w->tz : eng_tz_name();
    return c;
}

const char *eng_tz_name(void)
{
    const char *tz = getenv("TERN_TZ");
    return tz && *tz ? tz : NULL;
}

/* The instance's effective globals for one task: what it inherited, its own globals over
 * them, resolved in the task's context (so ${system.task.instance.id} is the task's). */
static tn_err globals(tn_engine *e, task_run *t, tn_kv **out, tn_errmsg *msg)
{
    wf_run *w = t->w;
    tn_param_ctx c = eng_param_ctx(e, t);
    tn_kv *own = NULL, *all = NULL;
    tn_err err = tn_params_globals(&w->def->params, &c, &own, msg);
    if (!err)
        err = tn_kv_copy(w->inherited, &all);
    if (!err)
        err = tn_kv_merge(all, own);
    tn_kv_free(own);
    if (err) {
        tn_kv_free(all);
        return err;
    }
    *out = all;
    return TN_OK;
}

/* No params anywhere (the common case): the result is empty, without resolving. With
 * TERN_TZ set the resolution runs anyway, as it checks the zone. */
static bool no_params(const task_run *t)
{
    const wf_run *w = t->w;
    const tn_def_task *n = NODE(t);
    if (n->params.n || w->def->params.n || tn_kv_len(w->inherited) || tn_kv_len(w->overrides) ||
        eng_tz_name())
        return false;
    for (uint32_t i = 0; i < n->n_deps; i++)
        if (tn_kv_len(w->t[n->deps[i].index].pool))
            return false;
    return true;
}

tn_err task_params(tn_engine *e, task_run *t, tn_kv **out, tn_errmsg *msg)
{
    wf_run *w = t->w;
    if (no_params(t))
        return (*out = tn_kv_new()) ? TN_OK : TN_ERR_NOMEM;
    tn_kv *g = NULL;
    tn_err err = globals(e, t, &g, msg);
    if (err)
        return err;
    const tn_def_task *n = NODE(t);
    tn_kv *up = NULL;
    for (uint32_t i = 0; i < n->n_deps; i++) {
        const task_run *d = &w->t[n->deps[i].index];
        if (!d->pool)
            continue;
        if (!up && !(up = tn_kv_new())) {
            tn_kv_free(g);
            return TN_ERR_NOMEM;
        }
        if ((err = tn_kv_merge(up, d->pool))) {
            tn_kv_free(up);
            tn_kv_free(g);
            return err;
        }
    }
    tn_param_ctx c = eng_param_ctx(e, t);
    err = tn_params_task(g, up, &n->params, w->overrides, &c, out, msg);
    tn_kv_free(up);
    tn_kv_free(g);
    return err;
}

static tn_err finish(tn_engine *e, task_run *t, bool ok, const char *reason, const char *skip,
                     const char *branch)
{
    tn_event ev;
    eng_event(&ev, TN_MACHINE_TASK, ok ? TN_TASK_E_SUCCEEDED : TN_TASK_E_FAILED, t->w->id,
              t->id);
    tn_event_set_int(&ev, "attempt", t->attempt);
    if (reason)
        tn_event_set_str(&ev, "reason", reason);
    if (branch)
        tn_event_set_str(&ev, "branch", branch);
    if (skip && *skip)
        tn_event_set_str(&ev, "skip", skip);
    tn_err err = eng_emit_task(e, t, 0, &ev);
    return err ? err : sched_task_finished(e, t);
}

static tn_err running(tn_engine *e, task_run *t, uint64_t child)
{
    tn_event ev;
    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_RUNNING, t->w->id, t->id);
    tn_event_set_int(&ev, "attempt", t->attempt);
    tn_event_set_str(&ev, "type", tn_def_task_type_name(NODE(t)->type));
    if (child)
        tn_event_set_int(&ev, "child", (int64_t)child);
    tn_err err = eng_emit_task(e, t, 0, &ev);
    if (!err && NODE(t)->timeout_ms) {
        task_run tmp = *t;
        tmp.gen = t->attempt;
        eng_timer_task(e, &tmp, TT_TIMEOUT,
                       t->started_at + (int64_t)NODE(t)->timeout_ms * 1000000);
    }
    return err;
}

/* A comma-separated list of names. */
static void list_add(char *buf, size_t cap, const char *name)
{
    size_t l = strlen(buf);
    snprintf(buf + l, cap - l, "%s%s", l ? "," : "", name);
}

static bool in_refs(const tn_def_ref *refs, uint32_t n, uint32_t idx)
{
    for (uint32_t i = 0; i < n; i++)
        if (refs[i].index == idx)
            return true;
    return false;
}

static tn_err run_conditions(tn_engine *e, task_run *t)
{
    wf_run *w = t->w;
    const tn_def_task *n = NODE(t);
    bool all = n->cond.mode == TN_DEF_COND_ALL, res = all;
    for (uint32_t i = 0; i < n->cond.n_when; i++) {
        const task_run *d = &w->t[n->cond.when[i].task.index];
        bool success = d->state == TN_TASK_S_SUCCESS || d->state == TN_TASK_S_FORCED_SUCCESS ||
                       !w->def->tasks[d->node].enabled || !w->in_scope[d->node];
        bool want = n->cond.when[i].state == TN_DEF_STATE_SUCCESS;
        bool hit = success == want;
        res = all ? (res && hit) : (res || hit);
    }
    /* the branch not taken is never created */
    const tn_def_ref *other = res ? n->cond.on_failure : n->cond.on_success;
    uint32_t nother = res ? n->cond.n_on_failure : n->cond.n_on_success;
    const tn_def_ref *taken = res ? n->cond.on_success : n->cond.on_failure;
    uint32_t ntaken = res ? n->cond.n_on_success : n->cond.n_on_failure;
    size_t cap = (size_t)(nother + 1) * (TN_DEF_MAX_NAME + 1) + 1;
    char *skip = calloc(1, cap);
    if (!skip)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; i < nother; i++)
        if (!in_refs(taken, ntaken, other[i].index))
            list_add(skip, cap, other[i].name);
    tn_err err = running(e, t, 0);
    if (!err)
        err = finish(e, t, true, NULL, skip, res ? "on_success" : "on_failure");
    free(skip);
    return err;
}

static tn_err run_switch(tn_engine *e, task_run *t)
{
    wf_run *w = t->w;
    const tn_def_task *n = NODE(t);
    tn_kv *params = NULL;
    tn_errmsg m = {{0}};
    tn_err err = running(e, t, 0);
    if (err)
        return err;
    if (task_params(e, t, &params, &m)) {
        char why[600];
        snprintf(why, sizeof(why), "params: %s", m.text);
        return finish(e, t, false, why, NULL, NULL);
    }
    tn_param_ctx c = eng_param_ctx(e, t);
    int32_t chosen = -1;
    for (uint32_t i = 0; i < n->sw.n_cases && chosen < 0; i++) {
        char *expr = NULL;
        bool val = false;
        if (tn_params_subst(n->sw.cases[i].when, params, &c, TN_PARAMS_QUOTE, &expr, &m) ||
            tn_expr_eval(expr, &val, &m)) {
            free(expr);
            tn_kv_free(params);
            char why[700];
            snprintf(why, sizeof(why), "case %u (%s): %s", i + 1, n->sw.cases[i].when, m.text);
            return finish(e, t, false, why, NULL, NULL);
        }
        free(expr);
        if (val)
            chosen = (int32_t)n->sw.cases[i].then.index;
    }
    tn_kv_free(params);
    if (chosen < 0 && n->sw.has_default)
        chosen = (int32_t)n->sw.dflt.index;
    if (chosen < 0)
        return finish(e, t, false, "no case matched and there is no default", NULL, NULL);
    size_t cap = (size_t)(n->sw.n_cases + 2) * (TN_DEF_MAX_NAME + 1) + 1;
    char *skip = calloc(1, cap);
    if (!skip)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; i <= n->sw.n_cases; i++) {
        const tn_def_ref *r =
            i < n->sw.n_cases ? &n->sw.cases[i].then : (n->sw.has_default ? &n->sw.dflt : NULL);
        if (!r || (int32_t)r->index == chosen)
            continue;
        bool dup = false; /* several cases may share a target */
        for (uint32_t j = 0; j < i && !dup; j++)
            dup = n->sw.cases[j].then.index == r->index;
        if (!dup)
            list_add(skip, cap, r->name);
    }
    err = finish(e, t, true, NULL, skip, w->def->tasks[chosen].name);
    free(skip);
    return err;
}

/* ------------------------------------------------------------------------------ */
/* dependent */

/* A civil time whose fields may be out of range (mday 0, mon -1), normalized as calendar
 * arithmetic (timegm on the fields alone), then read in zone tz: unix ns. */
static bool civil_ns(const char *tz, struct tm *t, int64_t *ns)
{
    time_t flat = timegm(t);
    struct tm n;
    if (!gmtime_r(&flat, &n))
        return false;
    tn_civil c = {n.tm_year + 1900, n.tm_mon + 1, n.tm_mday, n.tm_hour, n.tm_min, n.tm_sec, 0};
    int64_t sec;
    if (tn_params_instant(tz, &c, &sec, NULL))
        return false;
    *ns = sec * 1000000000LL;
    return true;
}

/* The [lo, hi) window, unix ns, of a date spec relative to the schedule time, in the zone
 * of the run's params (TERN_TZ), so "today" is the same day as ${system.biz.curdate}. */
static bool window(const char *tz, int64_t sched_ns, tn_def_cycle cycle, const char *date,
                   int64_t *lo, int64_t *hi)
{
    tn_civil now;
    if (tn_params_civil(tz, sched_ns / 1000000000LL, &now, NULL))
        return false;
    struct tm tm = {.tm_year = now.year - 1900,
                    .tm_mon = now.month - 1,
                    .tm_mday = now.day,
                    .tm_hour = now.hour,
                    .tm_min = now.minute,
                    .tm_sec = now.second,
                    .tm_wday = now.weekday};
    int n = 0;
    if (strncmp(date, "last", 4) == 0 && date[4] >= '0' && date[4] <= '9')
        n = atoi(date + 4);
    struct tm a = tm, b;
    switch (cycle) {
    case TN_DEF_CYCLE_HOUR:
        a.tm_min = a.tm_sec = 0;
        b = a;
        if (n) {
            a.tm_hour -= n;
        } else {
            b.tm_hour += 1;
        }
        break;
    case TN_DEF_CYCLE_DAY:
        a.tm_hour = a.tm_min = a.tm_sec = 0;
        b = a;
        if (n)
            a.tm_mday -= n;
        else
            b.tm_mday += 1;
        break;
    case TN_DEF_CYCLE_WEEK: {
        a.tm_hour = a.tm_min = a.tm_sec = 0;
        int since_monday = (a.tm_wday + 6) % 7;
        a.tm_mday -= since_monday; /* this week's Monday */
        b = a;
        static const char *const days[] = {"last_monday",   "last_tuesday", "last_wednesday",
                                           "last_thursday", "last_friday",  "last_saturday",
                                           "last_sunday"};
        if (strcmp(date, "this_week") == 0) {
            b.tm_mday += 7;
        } else if (strcmp(date, "last_week") == 0) {
            a.tm_mday -= 7;
        } else {
            int d = -1;
            for (int i = 0; i < 7; i++)
                if (strcmp(date, days[i]) == 0)
                    d = i;
            if (d < 0)
                return false;
            a.tm_mday += d - 7;
            b = a;
            b.tm_mday += 1;
        }
        break;
    }
    case TN_DEF_CYCLE_MONTH:
        a.tm_hour = a.tm_min = a.tm_sec = 0;
        a.tm_mday = 1;
        b = a;
        if (strcmp(date, "this_month") == 0) {
            b.tm_mon += 1;
        } else if (strcmp(date, "last_month") == 0) {
            a.tm_mon -= 1;
        } else if (strcmp(date, "last_month_begin") == 0) {
            a.tm_mon -= 1;
            b = a;
            b.tm_mday += 1;
        } else if (strcmp(date, "last_month_end") == 0) {
            a.tm_mday -= 1; /* the day before this month's first */
        } else {
            return false;
        }
        break;
    default: return false;
    }
    return civil_ns(tz, &a, lo) && civil_ns(tz, &b, hi) && *hi > *lo;
}

/* The newest instance of workflow `name` created in [lo, hi): 0 if none. Ids grow
 * with creation time, so a binary search finds the window's first id. */
static uint64_t find_instance(tn_engine *e, const char *name, int64_t lo, int64_t hi,
                              tn_wf_proj *out)
{
    tn_log_wf_iter *it;
    if (tn_log_wf_iter_open(tn_evlog_store(e->log), &it))
        return 0;
    tn_wf_proj p;
    uint64_t a = 1, b = UINT64_C(1) << 62;
    while (a < b) { /* first id whose instance was created at or after lo */
        uint64_t mid = a + (b - a) / 2;
        tn_err err = tn_log_wf_iter_seek(it, mid, &p);
        if (err != TN_OK && err != TN_ERR_CORRUPT) {
            b = mid;
            continue;
        }
        if (err == TN_OK && p.created_at < lo)
            a = p.id + 1;
        else
            b = mid;
    }
    uint64_t found = 0;
    for (tn_err err = tn_log_wf_iter_seek(it, a, &p); err == TN_OK || err == TN_ERR_CORRUPT;
         err = tn_log_wf_iter_next(it, &p)) {
        if (err == TN_ERR_CORRUPT)
            continue;
        if (p.created_at >= hi)
            break;
        if (p.created_at >= lo && strcmp(p.name, name) == 0) {
            found = p.id;
            *out = p;
        }
    }
    tn_log_wf_iter_close(it);
    return found;
}

typedef struct task_find {
    const char *name;
    uint64_t task;
    uint8_t state;
    bool found;
    uint32_t run_events; /* events since the last RERUN: only the current run counts */
} task_find;

static int find_task_cb(void *ctx, const tn_event *ev)
{
    task_find *x = ctx;
    if (ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_RERUN)
        x->found = false, x->task = 0;
    if (ev->machine != TN_MACHINE_TASK)
        return 0;
    const tn_attr *a = tn_event_attr(ev, "name");
    if (a && a->type == TN_ATTR_STR && tn_str_eq(a->s, x->name))
        x->task = ev->task;
    if (ev->task == x->task && x->task) {
        x->state = ev->to;
        x->found = true;
    }
    return 0;
}

/* 1 true, 0 false, -1 still waiting */
static int dep_item(tn_engine *e, task_run *t, const tn_def_depend *d)
{
    int64_t lo, hi;
    if (!window(t->w->tz ? t->w->tz : eng_tz_name(), t->w->sched_ns, d->cycle, d->date, &lo,
                &hi))
        return 0;
    tn_wf_proj p;
    if (!find_instance(e, d->workflow, lo, hi, &p))
        return -1; /* no instance in the window yet: keep waiting */
    if (strcmp(d->task, TN_DEF_DEPEND_ALL) == 0) {
        if (!tn_sm_workflow.final[p.state])
            return -1;
        return p.state == TN_WF_S_SUCCESS;
    }
    task_find x = {.name = d->task};
    int fr;
    tn_replay_wf_events(tn_evlog_store(e->log), p.id, find_task_cb, &x, &fr);
    if (!x.found)
        return tn_sm_workflow.final[p.state] ? 0 : -1;
    if (!tn_sm_task.final[x.state])
        return -1;
    return x.state == TN_TASK_S_SUCCESS || x.state == TN_TASK_S_FORCED_SUCCESS;
}

tn_err logic_poll(tn_engine *e, task_run *t)
{
    const tn_def_task *n = NODE(t);
    bool and_rel = n->dep.relation == TN_DEF_REL_AND;
    int agg = and_rel ? 1 : 0;
    bool waiting = false;
    for (uint32_t i = 0; i < n->dep.n_depends; i++) {
        int r = dep_item(e, t, &n->dep.depends[i]);
        if (r < 0)
            waiting = true;
        else if (and_rel && r == 0)
            agg = 0;
        else if (!and_rel && r == 1)
            agg = 1;
    }
    /* decided: and with a false item, or with a true item; else wait for the rest */
    bool decided = and_rel ? (agg == 0 || !waiting) : (agg == 1 || !waiting);
    int64_t now = eng_now(e);
    if (decided && agg == 1)
        return finish(e, t, true, NULL, NULL, NULL);
    if (decided && agg == 0) {
        bool wait = n->dep.failure_policy == TN_DEF_FPOLICY_WAIT &&
                    now < t->started_at + (int64_t)n->dep.failure_wait_ms * 1000000;
        if (!wait)
            return finish(e, t, false, "the workflows it depends on did not succeed", NULL,
                          NULL);
    }
    task_run tmp = *t;
    tmp.gen = t->attempt;
    eng_timer_task(e, &tmp, TT_POLL, now + (int64_t)n->dep.check_interval_ms * 1000000);
    return TN_OK;
}

/* ------------------------------------------------------------------------------ */
/* sub_workflow */

static tn_err run_sub(tn_engine *e, task_run *t)
{
    wf_run *w = t->w;
    const tn_def_task *n = NODE(t);
    tn_err err;
    if (t->child) {
        /* never a second child: the same instance resumes, recovers or runs again */
        wf_run *c = eng_load_wf(e, t->child, &e->msg);
        if (!c)
            return finish(e, t, false, "its child instance cannot be loaded", NULL, NULL);
        if ((err = running(e, t, c->id)))
            return err;
        c->loaded_final = false;
        if (c->state == TN_WF_S_PAUSE || c->state == TN_WF_S_STOP ||
            c->state == TN_WF_S_FAILURE)
            return sched_recover_wf(e, c);
        if (c->state == TN_WF_S_SUCCESS) {
            tn_event ev;
            eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_RERUN, c->id, 0);
            tn_event_set_int(&ev, "run", c->run + 1);
            err = eng_emit_wf(e, c, 0, &ev);
            return err ? err : sched_admit(e, c);
        }
        return TN_OK; /* still running: follow it */
    }
    tn_errmsg m = {{0}};
    tn_kv *inh = NULL;
    if ((err = globals(e, t, &inh, &m))) {
        char why[600];
        snprintf(why, sizeof(why), "params: %s", m.text);
        return finish(e, t, false, why, NULL, NULL);
    }
    if ((err = tn_kv_merge(inh, w->overrides))) {
        tn_kv_free(inh);
        return err;
    }
    wf_run *c = NULL;
    err = eng_new_child(e, n->sub.workflow, inh, t, &c);
    tn_kv_free(inh);
    if (err == TN_ERR_NOENT) {
        char why[200];
        snprintf(why, sizeof(why), "no workflow named \"%s\"", n->sub.workflow);
        if ((err = running(e, t, 0)))
            return err;
        return finish(e, t, false, why, NULL, NULL);
    }
    if (err)
        return err;
    if ((err = running(e, t, c->id)))
        return err;
    /* a child that finished at once (stopped by serial_discard, or a dry run) */
    if (tn_sm_workflow.final[c->state])
        return sched_child_final(e, c);
    return TN_OK;
}

tn_err logic_start(tn_engine *e, task_run *t)
{
    switch (NODE(t)->type) {
    case TN_DEF_TASK_CONDITIONS: return run_conditions(e, t);
    case TN_DEF_TASK_SWITCH: return run_switch(e, t);
    case TN_DEF_TASK_DEPENDENT: {
        tn_err err = running(e, t, 0);
        return err ? err : logic_poll(e, t);
    }
    case TN_DEF_TASK_SUB_WORKFLOW: return run_sub(e, t);
    default: return TN_ERR_INTERNAL;
    }
}

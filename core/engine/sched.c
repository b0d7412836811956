/* The DAG decisions of the engine: the fold of events into runtime state, and the
 * choices that follow (what to start, retry, kill, pause, finish), DolphinScheduler
 * 3.3 semantics. Every choice is an event; state changes only through the fold. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "log.h"
#include "util.h"

tn_err eng_kv_attr(tn_event *ev, const char *key, const tn_kv *kv, tn_buf *scratch);
tn_err eng_kv_from_attr(const tn_event *ev, const char *key, tn_kv **out);
tn_err eng_new_child(tn_engine *e, const char *name, const tn_kv *inherited, task_run *parent,
                     wf_run **out);

static tn_err failover(tn_engine *e, task_run *t, const char *reason);
static bool wf_timed_out_fail(const wf_run *w);

#define FINAL_T(s) (tn_sm_task.final[(s)])
#define FINAL_W(s) (tn_sm_workflow.final[(s)])
#define NODE(t)    (&(t)->w->def->tasks[(t)->node])

static bool is_logic(const tn_def_task *n)
{
    return n->type == TN_DEF_TASK_CONDITIONS || n->type == TN_DEF_TASK_SWITCH ||
           n->type == TN_DEF_TASK_DEPENDENT || n->type == TN_DEF_TASK_SUB_WORKFLOW;
}

static bool ok_state(uint8_t s)
{
    return s == TN_TASK_S_SUCCESS || s == TN_TASK_S_FORCED_SUCCESS;
}

bool sched_failure_handled(const tn_def *d, uint32_t node)
{
    const tn_def_task *n = &d->tasks[node];
    if (n->n_succ == 0)
        return false;
    for (uint32_t i = 0; i < n->n_succ; i++)
        if (d->tasks[n->succ[i]].type != TN_DEF_TASK_CONDITIONS)
            return false;
    return true;
}

/* ------------------------------------------------------------------------------ */
/* candidates: nodes that may have become ready (scratch, not state) */

static void cand_push(wf_run *w, uint32_t node)
{
    if (w->ncand == w->capcand) {
        uint32_t nc = w->capcand ? w->capcand * 2 : 16;
        uint32_t *n = realloc(w->cand, nc * sizeof(uint32_t));
        if (!n)
            return;
        w->cand = n;
        w->capcand = nc;
    }
    w->cand[w->ncand++] = node;
}

void sched_add_succ(wf_run *w, uint32_t node)
{
    const tn_def_task *n = &w->def->tasks[node];
    /* pushed in reverse: candidates pop from the end, so they start in written order */
    for (uint32_t i = n->n_succ; i-- > 0;)
        cand_push(w, n->succ[i]);
}

void sched_candidates_all(wf_run *w)
{
    w->ncand = 0;
    /* topological order, so a run of starts reads naturally in the log */
    for (uint32_t i = w->def->n_tasks; i-- > 0;)
        cand_push(w, w->def->topo[i]);
}

/* ------------------------------------------------------------------------------ */
/* scope and skips */

static void mark_scope(wf_run *w, uint32_t node, bool up)
{
    /* iterative DFS over deps (up) or successors (down) */
    uint32_t n = w->def->n_tasks;
    uint32_t *stack = malloc(n * sizeof(uint32_t) + 4);
    size_t sp = 0;
    if (!stack)
        return;
    stack[sp++] = node;
    while (sp) {
        uint32_t x = stack[--sp];
        if (w->in_scope[x])
            continue;
        w->in_scope[x] = 1;
        const tn_def_task *t = &w->def->tasks[x];
        if (up) {
            for (uint32_t i = 0; i < t->n_deps; i++)
                if (!w->in_scope[t->deps[i].index])
                    stack[sp++] = t->deps[i].index;
        } else {
            for (uint32_t i = 0; i < t->n_succ; i++)
                if (!w->in_scope[t->succ[i]])
                    stack[sp++] = t->succ[i];
        }
    }
    free(stack);
}

void sched_reset_run(tn_engine *e, wf_run *w)
{
    uint32_t n = w->def->n_tasks;
    for (uint32_t i = 0; i < n; i++) {
        task_run *t = &w->t[i];
        if (t->id)
            tn_map_del(&e->tasks, t->id);
        tn_kv_free(t->pool);
        free(t->why);
        memset(t, 0, sizeof(*t));
        t->w = w;
        t->node = i;
        t->state = TN_SM_NEW;
    }
    w->active = w->n_fail = w->n_kill = w->n_pause = 0;
    tn_kv_free(w->globals);
    w->globals = NULL;
    if (w->mode == TN_MODE_ALL || w->nfrom == 0) {
        memset(w->in_scope, 1, n);
        return;
    }
    memset(w->in_scope, 0, n);
    for (uint32_t i = 0; i < w->nfrom; i++) {
        uint32_t f = w->from[i];
        if (w->mode == TN_MODE_TASK_ONLY)
            w->in_scope[f] = 1;
        else
            mark_scope(w, f, w->mode == TN_MODE_TASK_PRE);
    }
}

/* A node counts as done for its successors. */
static bool dep_done(const wf_run *w, uint32_t d, bool for_conditions)
{
    if (!w->in_scope[d] || !w->def->tasks[d].enabled)
        return true;
    const task_run *t = &w->t[d];
    if (t->id == 0)
        return false;
    if (for_conditions)
        return ok_state(t->state) || t->state == TN_TASK_S_FAILURE ||
               t->state == TN_TASK_S_KILL;
    return ok_state(t->state);
}

static bool dep_skipped(const wf_run *w, uint32_t d)
{
    return w->in_scope[d] && w->def->tasks[d].enabled && (w->t[d].flags & TF_SKIP);
}

bool sched_satisfied(const wf_run *w, uint32_t node)
{
    const tn_def_task *n = &w->def->tasks[node];
    bool cond = n->type == TN_DEF_TASK_CONDITIONS;
    bool any = n->n_deps == 0;
    for (uint32_t i = 0; i < n->n_deps; i++) {
        uint32_t d = n->deps[i].index;
        if (dep_skipped(w, d))
            continue;
        any = true;
        if (!dep_done(w, d, cond))
            return false;
    }
    return any;
}

static bool all_deps_skipped(const wf_run *w, uint32_t node)
{
    const tn_def_task *n = &w->def->tasks[node];
    if (n->n_deps == 0)
        return false;
    for (uint32_t i = 0; i < n->n_deps; i++)
        if (!dep_skipped(w, n->deps[i].index))
            return false;
    return true;
}

/* Skip a branch: the node, and every successor all of whose deps are skipped. */
static void mark_skip(wf_run *w, uint32_t node)
{
    uint32_t n = w->def->n_tasks;
    uint32_t *stack = malloc(n * sizeof(uint32_t) + 4);
    size_t sp = 0;
    if (!stack)
        return;
    stack[sp++] = node;
    while (sp) {
        uint32_t x = stack[--sp];
        task_run *t = &w->t[x];
        if (t->id || (t->flags & TF_SKIP) || !w->in_scope[x])
            continue;
        t->flags |= TF_SKIP;
        const tn_def_task *d = &w->def->tasks[x];
        for (uint32_t i = 0; i < d->n_succ; i++) {
            uint32_t s = d->succ[i];
            if (all_deps_skipped(w, s))
                stack[sp++] = s;
            else
                cand_push(w, s);
        }
    }
    free(stack);
}

static void apply_skips(wf_run *w, const tn_event *ev)
{
    const tn_attr *a = tn_event_attr(ev, "skip");
    if (!a || a->type != TN_ATTR_STR)
        return;
    const char *p = a->s.p, *end = a->s.p + a->s.len;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        size_t l = (size_t)((c ? c : end) - p);
        char tmp[TN_DEF_MAX_NAME + 1];
        if (l && l <= TN_DEF_MAX_NAME) {
            memcpy(tmp, p, l);
            tmp[l] = 0;
            int32_t idx = tn_def_task_find(w->def, tmp);
            if (idx >= 0)
                mark_skip(w, (uint32_t)idx);
        }
        p += l + 1;
    }
}

/* ------------------------------------------------------------------------------ */
/* the fold */

void sched_fold_wf(tn_engine *e, wf_run *w, const tn_event *ev)
{
    w->state = ev->to;
    w->takeover = ev->event == TN_WF_E_FAILOVER ? ev->from : 0;
    int64_t v;
    switch (ev->event) {
    case TN_WF_E_START:
        if (ev->from == TN_WF_S_FAILOVER) {
            /* the run goes on where the previous master left it: same start, same timeout */
            w->gen++;
            break;
        }
        /* fall through */
    case TN_WF_E_RECOVER:
        if (tn_event_int(ev, "run", &v))
            w->run = (uint32_t)v;
        w->started_at = ev->at;
        w->timeout_fired = false;
        w->gen++;
        break;
    case TN_WF_E_RERUN:
        if (tn_event_int(ev, "run", &v))
            w->run = (uint32_t)v;
        sched_reset_run(e, w);
        w->gen++;
        break;
    case TN_WF_E_TIMEOUT: w->timeout_fired = true; break;
    default:
        if (FINAL_W(ev->to))
            w->gen++;
        break;
    }
}

/* The values a node sees from upstream: its deps' pools, merged in deps order. */
static tn_kv *inherited_pool(wf_run *w, uint32_t node)
{
    const tn_def_task *n = &w->def->tasks[node];
    tn_kv *kv = NULL;
    for (uint32_t i = 0; i < n->n_deps; i++) {
        const task_run *d = &w->t[n->deps[i].index];
        if (!d->pool)
            continue;
        if (!kv && !(kv = tn_kv_new()))
            return NULL;
        tn_kv_merge(kv, d->pool);
    }
    return kv;
}

static void slot_release(tn_engine *e, task_run *t)
{
    if (!(t->flags & TF_SLOT))
        return;
    t->flags &= (uint8_t)~TF_SLOT;
    const tn_def_task *n = NODE(t);
    tgroup *g = n->task_group ? eng_group(e, n->task_group) : NULL;
    if (g && g->used)
        g->used--;
}

/* The workflow's counters of its tasks' states, as one task goes from old to nw. */
static void fold_counters(wf_run *w, const task_run *t, uint8_t old, uint8_t nw)
{
    /* only a failure asks: the definition's task records are cold in a big workflow */
    bool handled = (old == TN_TASK_S_FAILURE || nw == TN_TASK_S_FAILURE) &&
                   sched_failure_handled(w->def, t->node);
    bool was_active = old != TN_SM_NEW && !FINAL_T(old);
    bool is_active = !FINAL_T(nw);
    w->active += (uint32_t)is_active - (uint32_t)was_active;
    if (old == TN_TASK_S_FAILURE && !handled)
        w->n_fail--;
    if (nw == TN_TASK_S_FAILURE && !handled)
        w->n_fail++;
    if (old == TN_TASK_S_KILL)
        w->n_kill--;
    if (nw == TN_TASK_S_KILL)
        w->n_kill++;
    if (old == TN_TASK_S_PAUSE)
        w->n_pause--;
    if (nw == TN_TASK_S_PAUSE)
        w->n_pause++;
}

/* What each event of a task changes beyond its state. */
static void fold_task_event(tn_engine *e, task_run *t, const tn_event *ev)
{
    wf_run *w = t->w;
    int64_t v;
    switch (ev->event) {
    case TN_TASK_E_START:
        if (tn_event_int(ev, "due", &v))
            t->due = v;
        break;
    case TN_TASK_E_DISPATCH:
        if (tn_event_int(ev, "attempt", &v) && (uint32_t)v != t->attempt) {
            t->attempt = (uint32_t)v;
            t->flags &= (uint8_t)~TF_HANDED;
        }
        t->queued_at = ev->at;
        t->flags &= (uint8_t) ~(TF_SENT | TF_KILLREQ | TF_TIMEDOUT);
        t->flags |= TF_QUEUED;
        break;
    case TN_TASK_E_DISPATCHED:
        t->flags |= TF_SENT | TF_HANDED;
        t->flags &= (uint8_t)~TF_QUEUED;
        if (NODE(t)->task_group) {
            tgroup *g = eng_group(e, NODE(t)->task_group);
            if (g)
                g->used++;
            t->flags |= TF_SLOT;
        }
        break;
    case TN_TASK_E_RUNNING:
        t->started_at = ev->at;
        if (tn_event_int(ev, "child", &v))
            t->child = (uint64_t)v;
        t->flags &= (uint8_t)~TF_QUEUED;
        break;
    case TN_TASK_E_RETRY:
        if (tn_event_int(ev, "attempt", &v))
            t->attempt = (uint32_t)v;
        if (tn_event_int(ev, "due", &v))
            t->due = v;
        t->flags &= (uint8_t) ~(TF_SENT | TF_KILLREQ | TF_TIMEDOUT | TF_QUEUED | TF_HANDED);
        break;
    case TN_TASK_E_FAILED: t->failures++; break;
    case TN_TASK_E_SUCCEEDED: {
        tn_kv *out = NULL;
        tn_kv *pool = inherited_pool(w, t->node);
        if (eng_kv_from_attr(ev, "vars", &out) == TN_OK && out) {
            if (!pool)
                pool = out;
            else {
                tn_kv_merge(pool, out);
                tn_kv_free(out);
            }
        }
        tn_kv_free(t->pool);
        t->pool = pool;
        apply_skips(w, ev);
        break;
    }
    case TN_TASK_E_FORCE_SUCCESS:
        tn_kv_free(t->pool);
        t->pool = inherited_pool(w, t->node);
        break;
    case TN_TASK_E_KILL: t->flags |= TF_KILLREQ; break;
    case TN_TASK_E_TIMEOUT: t->flags |= TF_TIMEDOUT; break;
    case TN_TASK_E_FAILOVER: t->flags &= (uint8_t)~TF_SENT; break;
    case TN_TASK_E_RECOVER:
        if (tn_event_int(ev, "attempt", &v))
            t->attempt = (uint32_t)v;
        if (tn_event_int(ev, "reset", &v) && v)
            t->failures = 0;
        t->flags = 0;
        break;
    default: break;
    }
}

void sched_fold_task(tn_engine *e, task_run *t, const tn_event *ev)
{
    wf_run *w = t->w;
    uint8_t old = t->state == TN_SM_NEW ? TN_SM_NEW : t->state, nw = ev->to;
    int64_t v;
    if (old == TN_SM_NEW) {
        t->id = ev->task;
        tn_map_put(&e->tasks, t->id, t);
        t->attempt = tn_event_int(ev, "attempt", &v) ? (uint32_t)v : 1;
        t->failures = 0;
        t->flags = 0;
        t->child = 0;
    }
    fold_counters(w, t, old, nw);
    t->state = nw;
    t->gen++;
    fold_task_event(e, t, ev);
    if (FINAL_T(nw) || nw == TN_TASK_S_NEED_FAULT_TOLERANCE)
        slot_release(e, t);
    if (FINAL_T(nw))
        t->ended_at = ev->at;
    /* what may follow: successors of a task that is done with */
    if (ok_state(nw) || (nw == TN_TASK_S_FAILURE || nw == TN_TASK_S_KILL))
        sched_add_succ(w, t->node);
}

/* ------------------------------------------------------------------------------ */
/* starting tasks */

static tn_err go(tn_engine *e, task_run *t)
{
    const tn_def_task *n = NODE(t);
    tn_event ev;
    tn_err err;
    if (is_logic(n)) {
        return logic_start(e, t);
    }
    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, t->w->id, t->id);
    tn_event_set_int(&ev, "attempt", t->attempt);
    tn_event_set_str(&ev, "group", eng_worker_group(t->w, n));
    if (n->task_group)
        tn_event_set_str(&ev, "task_group", n->task_group);
    if ((err = eng_emit_task(e, t, 0, &ev)))
        return err;
    eng_queue_push(e, t);
    if (n->dispatch_timeout_ms) {
        int64_t due = t->queued_at + (int64_t)n->dispatch_timeout_ms * 1000000;
        task_run tmp = *t;
        tmp.gen = t->attempt; /* dispatch timeouts are fenced by attempt */
        eng_timer_task(e, &tmp, TT_DISPATCH_TIMEOUT, due);
    }
    return TN_OK;
}

tn_err sched_start_task(tn_engine *e, task_run *t)
{
    const tn_def_task *n = NODE(t);
    wf_run *w = t->w;
    tn_event ev;
    if (w->dry_run) {
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, w->id, t->id);
        tn_event_set_int(&ev, "dry_run", 1);
        tn_err err = eng_emit_task(e, t, 0, &ev);
        return err ? err : sched_task_finished(e, t);
    }
    if (n->delay_ms) {
        int64_t due = eng_now(e) + (int64_t)n->delay_ms * 1000000;
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_START, w->id, t->id);
        tn_event_set_int(&ev, "due", due);
        tn_event_set_int(&ev, "delay_ms", (int64_t)n->delay_ms);
        tn_err err = eng_emit_task(e, t, 0, &ev);
        if (!err)
            eng_timer_task(e, t, TT_DUE, due);
        return err;
    }
    return go(e, t);
}

static tn_err create_task(tn_engine *e, wf_run *w, uint32_t node, bool paused)
{
    task_run *t = &w->t[node];
    tn_event ev;
    eng_event(&ev, TN_MACHINE_TASK, paused ? TN_TASK_E_PAUSED : TN_TASK_E_SUBMIT, w->id,
              tn_evlog_new_task_id(e->log));
    tn_event_set_str(&ev, "name", w->def->tasks[node].name);
    tn_event_set_int(&ev, "attempt", 1);
    tn_event_set_str(&ev, "type", tn_def_task_type_name(w->def->tasks[node].type));
    tn_err err = eng_emit_task(e, t, 0, &ev);
    if (err || paused)
        return err;
    return sched_start_task(e, t);
}

/* ------------------------------------------------------------------------------ */
/* finishing */

static tn_err wf_finish(tn_engine *e, wf_run *w, unsigned event, const char *reason)
{
    tn_event ev;
    eng_event(&ev, TN_MACHINE_WORKFLOW, event, w->id, 0);
    if (reason)
        tn_event_set_str(&ev, "reason", reason);
    tn_err err = eng_emit_wf(e, w, 0, &ev);
    if (err || !FINAL_W(w->state))
        return err;
    if (w->state != TN_WF_S_PAUSE)
        err = eng_alert(e, w,
                        w->state == TN_WF_S_SUCCESS ? TN_DEF_ALERT_SUCCESS :
                        w->state == TN_WF_S_FAILURE ? TN_DEF_ALERT_FAILURE :
                                                      TN_DEF_ALERT_KILL,
                        NULL, reason);
    if (err)
        return err;
    if (w->parent_wf)
        err = sched_child_final(e, w);
    if (!err && w->def->execution != TN_DEF_EXEC_PARALLEL)
        err = sched_serial_release(e, w->def->name);
    if (!err && (w->schedule || w->backfill))
        err = esched_wf_final(e, w);
    return err;
}

static bool failing(const wf_run *w)
{
    return w->n_fail > 0 && w->failure_strategy == TN_DEF_FAILURE_END;
}

static tn_err check_done(tn_engine *e, wf_run *w)
{
    if (w->active > 0 || w->ncand > 0)
        return TN_OK;
    if ((w->state == TN_WF_S_RUNNING_EXECUTION || w->state == TN_WF_S_READY_PAUSE) &&
        wf_timed_out_fail(w))
        return wf_finish(e, w, TN_WF_E_FAILED, "the workflow timed out");
    switch (w->state) {
    case TN_WF_S_RUNNING_EXECUTION:
        if (w->n_fail > 0)
            return wf_finish(e, w, TN_WF_E_FAILED, "a task failed");
        if (w->n_kill > 0) {
            tn_err err = eng_emit_wf(e, w, TN_WF_E_STOP, NULL);
            return err ? err : wf_finish(e, w, TN_WF_E_STOPPED, "a task was killed");
        }
        if (w->n_pause > 0) {
            tn_err err = eng_emit_wf(e, w, TN_WF_E_PAUSE, NULL);
            return err ? err : wf_finish(e, w, TN_WF_E_PAUSED, "a sub-workflow paused");
        }
        return wf_finish(e, w, TN_WF_E_SUCCEED, NULL);
    case TN_WF_S_READY_PAUSE:
        if (w->n_pause > 0)
            return wf_finish(e, w, TN_WF_E_PAUSED, NULL);
        if (w->n_fail > 0)
            return wf_finish(e, w, TN_WF_E_FAILED, "a task failed");
        if (w->n_kill > 0) {
            tn_err err = eng_emit_wf(e, w, TN_WF_E_STOP, NULL);
            return err ? err : wf_finish(e, w, TN_WF_E_STOPPED, "a task was killed");
        }
        return wf_finish(e, w, TN_WF_E_SUCCEED, NULL);
    case TN_WF_S_READY_STOP: return wf_finish(e, w, TN_WF_E_STOPPED, NULL);
    default: return TN_OK;
    }
}

tn_err sched_run(tn_engine *e, wf_run *w)
{
    tn_err err = TN_OK;
    if (w->state != TN_WF_S_RUNNING_EXECUTION && w->state != TN_WF_S_READY_PAUSE &&
        w->state != TN_WF_S_READY_STOP) {
        w->ncand = 0;
        return TN_OK;
    }
    while (w->ncand > 0 && !err && e->starts_left > 0) {
        uint32_t node = w->cand[--w->ncand];
        task_run *t = &w->t[node];
        if (t->id || (t->flags & TF_SKIP) || !w->in_scope[node] || !w->def->tasks[node].enabled)
            continue;
        if (w->state == TN_WF_S_READY_STOP || failing(w) || wf_timed_out_fail(w))
            continue;
        if (all_deps_skipped(w, node)) {
            mark_skip(w, node);
            continue;
        }
        if (!sched_satisfied(w, node))
            continue;
        e->starts_left--;
        err = create_task(e, w, node, w->state == TN_WF_S_READY_PAUSE);
    }
    if (!err)
        err = check_done(e, w);
    return err;
}

tn_err sched_kill_task(tn_engine *e, task_run *t, const char *reason)
{
    tn_event ev;
    tn_err err;
    const tn_def_task *n = NODE(t);
    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_KILL, t->w->id, t->id);
    if (reason)
        tn_event_set_str(&ev, "reason", reason);
    tn_event_set_int(&ev, "attempt", t->attempt);
    switch (t->state) {
    case TN_TASK_S_SUBMITTED_SUCCESS: /* waiting for a worker: killed here and now */
    case TN_TASK_S_DELAY_EXECUTION:
        t->flags &= (uint8_t)~TF_QUEUED;
        err = eng_emit_task(e, t, 0, &ev);
        return err ? err : sched_task_finished(e, t);
    case TN_TASK_S_DISPATCH: /* handed to a worker: the worker kills it */
        if (t->flags & TF_KILLREQ)
            return TN_OK;
        if ((err = eng_emit_task(e, t, 0, &ev)))
            return err;
        eng_fx(e, FX_KILL, t);
        return TN_OK;
    case TN_TASK_S_RUNNING_EXECUTION:
        if (t->flags & TF_KILLREQ)
            return TN_OK;
        if ((err = eng_emit_task(e, t, 0, &ev)))
            return err;
        if (!is_logic(n)) {
            eng_fx(e, FX_KILL, t);
            return TN_OK;
        }
        /* a logic task ends in the same transition: its timers die with its gen */
        if (n->type == TN_DEF_TASK_SUB_WORKFLOW && t->child) {
            wf_run *c = eng_load_wf(e, t->child, &e->msg);
            if (c && !FINAL_W(c->state) && c->state != TN_WF_S_READY_STOP &&
                (err = sched_stop_wf(e, c, "parent task killed")))
                return err;
        }
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_KILLED, t->w->id, t->id);
        tn_event_set_int(&ev, "attempt", t->attempt);
        err = eng_emit_task(e, t, 0, &ev);
        return err ? err : sched_task_finished(e, t);
    default: return TN_OK;
    }
}

tn_err sched_task_finished(tn_engine *e, task_run *t)
{
    wf_run *w = t->w;
    const tn_def_task *n = NODE(t);
    tn_event ev;
    tn_err err = TN_OK;
    if (t->state == TN_TASK_S_FAILURE && t->failures <= n->retries &&
        (w->state == TN_WF_S_RUNNING_EXECUTION || w->state == TN_WF_S_READY_PAUSE) &&
        !(t->flags & TF_KILLREQ) && !wf_timed_out_fail(w)) {
        int64_t due = eng_now(e) + (int64_t)n->retry_interval_ms * 1000000;
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_RETRY, w->id, t->id);
        tn_event_set_int(&ev, "attempt", t->attempt + 1);
        tn_event_set_int(&ev, "due", due);
        tn_event_set_int(&ev, "retry", t->failures);
        tn_event_set_int(&ev, "retries", n->retries);
        if ((err = eng_emit_task(e, t, 0, &ev)))
            return err;
        eng_timer_task(e, t, TT_DUE, due);
        if (w->state == TN_WF_S_READY_PAUSE)
            err = eng_emit_task(e, t, TN_TASK_E_PAUSE, NULL);
        return err;
    }
    if (!FINAL_T(t->state) || t->state == TN_TASK_S_PAUSE)
        return TN_OK;
    if (t->state == TN_TASK_S_FAILURE &&
        (err = eng_alert(e, w, TN_DEF_ALERT_TASK_FAILURE, t, NULL)))
        return err;
    if (w->state == TN_WF_S_RUNNING_EXECUTION || w->state == TN_WF_S_READY_PAUSE ||
        w->state == TN_WF_S_READY_STOP) {
        eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_TASK_FINISHED, w->id, 0);
        tn_event_set_int(&ev, "task", (int64_t)t->id);
        tn_event_set_str(&ev, "task_name", n->name);
        tn_event_set_str(&ev, "task_state", tn_sm_state_name(&tn_sm_task, t->state));
        if ((err = eng_emit_wf(e, w, 0, &ev)))
            return err;
    }
    /* failure strategy end: a failure no conditions task handles kills the others */
    if (t->state == TN_TASK_S_FAILURE && failing(w) && w->state == TN_WF_S_RUNNING_EXECUTION &&
        !sched_failure_handled(w->def, t->node)) {
        char why[TN_DEF_MAX_NAME + 64];
        snprintf(why, sizeof(why), "failure strategy end: task %s failed", n->name);
        for (uint32_t i = 0; i < w->def->n_tasks && !err; i++) {
            task_run *o = &w->t[i];
            if (o->id && !FINAL_T(o->state))
                err = sched_kill_task(e, o, why);
        }
    }
    eng_touch(e, w);
    return err;
}

/* ------------------------------------------------------------------------------ */
/* pause, stop, recover */

tn_err sched_pause_wf(tn_engine *e, wf_run *w)
{
    tn_err err = eng_emit_wf(e, w, TN_WF_E_PAUSE, NULL);
    for (uint32_t i = 0; i < w->def->n_tasks && !err; i++) {
        task_run *t = &w->t[i];
        if (!t->id)
            continue;
        switch (t->state) {
        case TN_TASK_S_SUBMITTED_SUCCESS: /* waiting for a worker: it leaves the queue */
        case TN_TASK_S_DELAY_EXECUTION:
        case TN_TASK_S_NEED_FAULT_TOLERANCE:
            t->flags &= (uint8_t)~TF_QUEUED;
            err = eng_emit_task(e, t, TN_TASK_E_PAUSE, NULL);
            break;
        case TN_TASK_S_RUNNING_EXECUTION:
            /* running tasks finish; a sub-workflow pauses its child */
            if (NODE(t)->type == TN_DEF_TASK_SUB_WORKFLOW && t->child) {
                wf_run *c = eng_load_wf(e, t->child, &e->msg);
                if (c && c->state == TN_WF_S_RUNNING_EXECUTION)
                    err = sched_pause_wf(e, c);
            }
            break;
        default: break;
        }
    }
    return err;
}

tn_err sched_stop_wf(tn_engine *e, wf_run *w, const char *reason)
{
    if (w->state == TN_WF_S_SUBMITTED_SUCCESS || w->state == TN_WF_S_SERIAL_WAIT)
        return wf_finish(e, w, TN_WF_E_STOP, reason);
    tn_event ev;
    eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_STOP, w->id, 0);
    if (reason)
        tn_event_set_str(&ev, "reason", reason);
    tn_err err = eng_emit_wf(e, w, 0, &ev);
    for (uint32_t i = 0; i < w->def->n_tasks && !err; i++) {
        task_run *t = &w->t[i];
        if (t->id && !FINAL_T(t->state))
            err = sched_kill_task(e, t, reason);
    }
    eng_touch(e, w);
    return err;
}

static void after_start(tn_engine *e, wf_run *w)
{
    sched_candidates_all(w);
    if (w->def->timeout_ms && !w->timeout_fired)
        eng_timer_wf(e, w, w->started_at + (int64_t)w->def->timeout_ms * 1000000);
    eng_touch(e, w);
}

/* Resume (from PAUSE) or recover (from STOP or FAILURE) an instance. */
tn_err sched_recover_wf(tn_engine *e, wf_run *w);
tn_err sched_recover_wf(tn_engine *e, wf_run *w)
{
    bool resume = w->state == TN_WF_S_PAUSE;
    /* recovering a failed or stopped run is a new run of the same instance */
    tn_event wev;
    eng_event(&wev, TN_MACHINE_WORKFLOW, TN_WF_E_RECOVER, w->id, 0);
    if (!resume)
        tn_event_set_int(&wev, "run", w->run + 1);
    tn_err err = eng_emit_wf(e, w, 0, &wev);
    for (uint32_t i = 0; i < w->def->n_tasks && !err; i++) {
        task_run *t = &w->t[i];
        if (!t->id)
            continue;
        bool again = t->state == TN_TASK_S_PAUSE ||
                     (!resume && (t->state == TN_TASK_S_KILL || t->state == TN_TASK_S_FAILURE));
        if (!again)
            continue;
        tn_event ev;
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_RECOVER, w->id, t->id);
        /* a paused task continues its attempt, unless a worker had it (it failed over
         * before it paused: that worker may still run it, so the attempt is spent); a
         * killed or failed one gets a new one */
        uint32_t attempt = t->state == TN_TASK_S_PAUSE && !(t->flags & TF_HANDED) ?
                               t->attempt :
                               t->attempt + 1;
        tn_event_set_int(&ev, "attempt", attempt);
        if (t->state != TN_TASK_S_PAUSE)
            tn_event_set_int(&ev, "reset", 1);
        if (!(err = eng_emit_task(e, t, 0, &ev)))
            err = sched_start_task(e, t);
    }
    if (!err)
        after_start(e, w);
    return err;
}

/* ------------------------------------------------------------------------------ */
/* admission: execution types across instances of one definition */

static bool active_wf(const wf_run *w)
{
    return w->state == TN_WF_S_RUNNING_EXECUTION || w->state == TN_WF_S_READY_PAUSE ||
           w->state == TN_WF_S_READY_STOP || w->state == TN_WF_S_FAILOVER;
}

/* serial_priority, as DolphinScheduler 3.3 does it: the newest instance wins; every
 * older one ends STOP, the waiting ones at once and the running ones by a stop that kills
 * their tasks. The newcomer waits until they are stopped (sched_serial_release). */
static tn_err serial_priority_stop_older(tn_engine *e, wf_run *w)
{
    char why[96];
    snprintf(why, sizeof(why), "serial_priority: a newer instance (%" PRIu64 ") was started",
             w->id);
    tn_err err = TN_OK;
    for (size_t i = 0; i < e->wfs.cap && !err; i++) {
        wf_run *o = e->wfs.slots[i].key ? e->wfs.slots[i].val : NULL;
        if (!o || o == w || strcmp(o->def->name, w->def->name) != 0)
            continue;
        if (o->state == TN_WF_S_SERIAL_WAIT)
            err = wf_finish(e, o, TN_WF_E_STOP, why);
        else if (o->state == TN_WF_S_RUNNING_EXECUTION || o->state == TN_WF_S_READY_PAUSE ||
                 o->state == TN_WF_S_FAILOVER)
            err = sched_stop_wf(e, o, why);
    }
    return err;
}

tn_err sched_admit(tn_engine *e, wf_run *w)
{
    tn_err err;
    if (w->def->execution != TN_DEF_EXEC_PARALLEL) {
        bool busy = false, waiting = false;
        for (size_t i = 0; i < e->wfs.cap; i++) {
            wf_run *o = e->wfs.slots[i].key ? e->wfs.slots[i].val : NULL;
            if (!o || o == w || strcmp(o->def->name, w->def->name) != 0)
                continue;
            busy |= active_wf(o);
            waiting |= o->state == TN_WF_S_SERIAL_WAIT;
        }
        if (busy || (waiting && w->def->execution == TN_DEF_EXEC_SERIAL_WAIT)) {
            switch (w->def->execution) {
            case TN_DEF_EXEC_SERIAL_DISCARD:
                return wf_finish(e, w, TN_WF_E_STOP, "serial_discard: another instance runs");
            case TN_DEF_EXEC_SERIAL_PRIORITY:
                if ((err = serial_priority_stop_older(e, w)))
                    return err;
                return eng_emit_wf(e, w, TN_WF_E_WAIT, NULL);
            default: return eng_emit_wf(e, w, TN_WF_E_WAIT, NULL);
            }
        }
    }
    if ((err = eng_emit_wf(e, w, TN_WF_E_START, NULL)))
        return err;
    after_start(e, w);
    return TN_OK;
}

tn_err sched_serial_release(tn_engine *e, const char *name)
{
    wf_run *pick = NULL;
    for (size_t i = 0; i < e->wfs.cap; i++) {
        wf_run *o = e->wfs.slots[i].key ? e->wfs.slots[i].val : NULL;
        if (!o || strcmp(o->def->name, name) != 0)
            continue;
        if (active_wf(o))
            return TN_OK;
        if (o->state != TN_WF_S_SERIAL_WAIT)
            continue;
        bool newest = o->def->execution == TN_DEF_EXEC_SERIAL_PRIORITY;
        if (!pick || (newest ? o->id > pick->id : o->id < pick->id))
            pick = o;
    }
    if (!pick)
        return TN_OK;
    tn_err err = eng_emit_wf(e, pick, TN_WF_E_START, NULL);
    if (!err)
        after_start(e, pick);
    return err;
}

/* ------------------------------------------------------------------------------ */
/* dispatch */

static bool grow_later(tn_engine *e, const qentry *q)
{
    if (!tn_grow((void **)&e->later, &e->caplater, e->nlater + 1, sizeof(qentry)))
        return false;
    e->later[e->nlater++] = *q;
    return true;
}

/* Why a task waits for dispatch (not state: shown by status, recomputed each try). */
static void task_run_why(task_run *t, const char *why)
{
    if (why && t->why && strcmp(t->why, why) == 0)
        return; /* a queue of thousands waits for the same reason at every step */
    free(t->why);
    t->why = why ? strdup(why) : NULL;
}

/* A lane stops for the step after this many refusals: placement is refused for what
 * the group lacks (a free slot, load, memory), which its next tasks mostly lack too, and
 * trying every waiting task at every step made a step cost the whole queue (a workflow
 * of 100k tasks on a few slots took time quadratic in its size). */
#define LANE_MAX_MISSES 8

static void lane_why(lane *l, const char *why)
{
    if (l->why && why && strcmp(l->why, why) == 0)
        return;
    free(l->why);
    l->why = why ? strdup(why) : NULL;
}

tn_err sched_dispatch(tn_engine *e)
{
    /* tasks waiting for a task-group slot go back to the queue when one is free */
    for (tgroup *g = e->groups; g; g = g->next) {
        size_t k = 0;
        while (k < g->nwait && (g->slots < 0 || g->used + k < (uint64_t)g->slots))
            k++;
        for (size_t i = 0; i < k; i++) {
            qentry q = g->wait[i];
            wf_run *w = eng_wf(e, q.wf);
            if (w && q.node < w->def->n_tasks && w->t[q.node].attempt == q.attempt &&
                w->t[q.node].state == TN_TASK_S_SUBMITTED_SUCCESS)
                eng_queue_push(e, &w->t[q.node]);
        }
        if (k) {
            memmove(g->wait, g->wait + k, (g->nwait - k) * sizeof(qentry));
            g->nwait -= k;
        }
    }
    for (lane *l = e->lanes; l; l = l->next)
        l->misses = 0;
    qentry q;
    tn_err err = TN_OK;
    lane *l;
    while (!err && (l = eng_lane_next(e, LANE_MAX_MISSES)) && eng_lane_pop(l, &q)) {
        wf_run *w = eng_wf(e, q.wf);
        if (!w || q.node >= w->def->n_tasks)
            continue;
        task_run *t = &w->t[q.node];
        if (t->state != TN_TASK_S_SUBMITTED_SUCCESS || t->attempt != q.attempt ||
            (t->flags & TF_SENT) || !(t->flags & TF_QUEUED) || (t->flags & TF_KILLREQ))
            continue;
        const tn_def_task *n = NODE(t);
        if (n->task_group) {
            tgroup *g = eng_group(e, n->task_group);
            if (g && g->slots >= 0 && g->used >= (uint64_t)g->slots) {
                if (g->nwait == g->capwait) {
                    size_t nc = g->capwait ? g->capwait * 2 : 16;
                    qentry *nq = realloc(g->wait, nc * sizeof(qentry));
                    if (!nq)
                        return TN_ERR_NOMEM;
                    g->wait = nq;
                    g->capwait = nc;
                }
                g->wait[g->nwait++] = q;
                continue;
            }
        }
        char worker[TN_DEF_MAX_NAME + 16];
        snprintf(worker, sizeof(worker), "%s", e->ex.name ? e->ex.name : "executor");
        if (e->ex.ops->place) {
            char why[160];
            tn_place_req pr = {w->id, t->id, t->attempt, n, eng_worker_group(w, n)};
            if (!e->ex.ops->place(e->ex.self, &pr, worker, sizeof(worker), why, sizeof(why))) {
                /* it waits, and says why; tried again at the next step */
                task_run_why(t, why);
                lane_why(l, why);
                l->misses++;
                if (!grow_later(e, &q))
                    return TN_ERR_NOMEM;
                continue;
            }
        }
        task_run_why(t, NULL);
        if (l->why)
            lane_why(l, NULL);
        tn_event ev;
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, w->id, t->id);
        tn_event_set_str(&ev, "worker", worker);
        tn_event_set_int(&ev, "attempt", t->attempt);
        int64_t queued = t->queued_at;
        if (!(err = eng_emit_task(e, t, 0, &ev))) {
            eng_fx(e, FX_DISPATCH, t);
            if (queued > 0 && ev.at >= queued)
                tn_prom_hist_observe(&e->metrics.dispatch_seconds,
                                     (double)(ev.at - queued) / 1e9);
        }
    }
    /* what could not be placed goes back to the queue for the next step */
    for (size_t i = 0; i < e->nlater; i++)
        if (!eng_queue_requeue(e, &e->later[i]))
            return TN_ERR_NOMEM;
    e->nlater = 0;
    return err;
}

/* ------------------------------------------------------------------------------ */
/* timers and reports */

static tn_err task_timeout(tn_engine *e, task_run *t)
{
    const tn_def_task *n = NODE(t);
    tn_event ev;
    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_TIMEOUT, t->w->id, t->id);
    tn_event_set_int(&ev, "timeout_ms", (int64_t)n->timeout_ms);
    tn_event_set_str(&ev, "strategy", tn_def_timeout_strategy_name(n->timeout_strategy));
    tn_event_set_int(&ev, "attempt", t->attempt);
    tn_err err = eng_emit_task(e, t, 0, &ev);
    if (!err)
        err = eng_alert(e, t->w, TN_DEF_ALERT_TIMEOUT, t, NULL);
    if (err || n->timeout_strategy == TN_DEF_TIMEOUT_WARN)
        return err;
    /* fail / warnfail, as DolphinScheduler 3.3 does it: the task is killed (it ends KILL,
     * and a killed task is not retried); the other tasks go on, and the run, once nothing
     * is left, ends STOP (FAILURE if another task failed) */
    char why[96], d[32];
    tn_fmt_duration((int64_t)n->timeout_ms * 1000000, d, sizeof(d));
    snprintf(why, sizeof(why), "timed out after %s (timeout_strategy %s)", d,
             tn_def_timeout_strategy_name(n->timeout_strategy));
    return sched_kill_task(e, t, why);
}

/* The workflow's own timeout with fail or warnfail: its live tasks are killed, nothing
 * new starts, nothing is retried, and the run ends FAILURE (check_done). */
static bool wf_timed_out_fail(const wf_run *w)
{
    return w->timeout_fired && w->def->timeout_strategy != TN_DEF_TIMEOUT_WARN;
}

static tn_err wf_timeout(tn_engine *e, wf_run *w)
{
    tn_event ev;
    eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_TIMEOUT, w->id, 0);
    tn_event_set_int(&ev, "timeout_ms", (int64_t)w->def->timeout_ms);
    tn_event_set_str(&ev, "strategy", tn_def_timeout_strategy_name(w->def->timeout_strategy));
    tn_err err = eng_emit_wf(e, w, 0, &ev);
    if (!err)
        err = eng_alert(e, w, TN_DEF_ALERT_TIMEOUT, NULL, NULL);
    if (err || !wf_timed_out_fail(w) || w->state == TN_WF_S_READY_STOP)
        return err;
    char why[128], d[32];
    tn_fmt_duration((int64_t)w->def->timeout_ms * 1000000, d, sizeof(d));
    snprintf(why, sizeof(why), "the workflow timed out after %s (timeout_strategy %s)", d,
             tn_def_timeout_strategy_name(w->def->timeout_strategy));
    for (uint32_t i = 0; i < w->def->n_tasks && !err; i++) {
        task_run *t = &w->t[i];
        if (t->id && !FINAL_T(t->state))
            err = sched_kill_task(e, t, why);
    }
    eng_touch(e, w);
    return err;
}

tn_err sched_timer(tn_engine *e, const timer *tm)
{
    wf_run *w = eng_wf(e, tm->wf);
    if (!w)
        return TN_OK;
    if (tm->kind == TIMER_WF) {
        if (tm->gen != w->gen || w->timeout_fired || !active_wf(w))
            return TN_OK;
        return wf_timeout(e, w);
    }
    if (tm->node >= w->def->n_tasks)
        return TN_OK;
    task_run *t = &w->t[tm->node];
    switch (tm->sub) {
    case TT_DUE:
        if (t->state != TN_TASK_S_DELAY_EXECUTION || t->due != tm->due || tm->gen != t->gen)
            return TN_OK;
        return go(e, t);
    case TT_TIMEOUT:
        if (t->state != TN_TASK_S_RUNNING_EXECUTION || tm->gen != t->attempt ||
            (t->flags & (TF_TIMEDOUT | TF_KILLREQ)))
            return TN_OK;
        return task_timeout(e, t);
    case TT_DISPATCH_TIMEOUT: {
        /* still queued, or handed to a worker that has not taken it */
        if ((t->state != TN_TASK_S_SUBMITTED_SUCCESS && t->state != TN_TASK_S_DISPATCH) ||
            tm->gen != t->attempt || (t->flags & TF_KILLREQ))
            return TN_OK;
        if (t->flags & TF_SENT)
            eng_fx(e, FX_KILL, t);
        t->flags &= (uint8_t)~TF_QUEUED;
        tn_event ev;
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_FAILED, w->id, t->id);
        tn_event_set_str(&ev, "reason", "dispatch timeout: no worker took the task in time");
        tn_event_set_int(&ev, "attempt", t->attempt);
        tn_err err = eng_emit_task(e, t, 0, &ev);
        return err ? err : sched_task_finished(e, t);
    }
    case TT_POLL:
        if (t->state != TN_TASK_S_RUNNING_EXECUTION || tm->gen != t->attempt ||
            (t->flags & TF_KILLREQ))
            return TN_OK;
        return logic_poll(e, t);
    default: return TN_OK;
    }
}

static void arm_timeout(tn_engine *e, task_run *t)
{
    const tn_def_task *n = NODE(t);
    if (!n->timeout_ms)
        return;
    task_run tmp = *t;
    tmp.gen = t->attempt;
    eng_timer_task(e, &tmp, TT_TIMEOUT, t->started_at + (int64_t)n->timeout_ms * 1000000);
}

tn_err sched_report(tn_engine *e, const tn_report *r)
{
    task_run *t = tn_map_get(&e->tasks, r->task);
    if (!t || (r->wf && t->w->id != r->wf)) {
        tn_debug("engine", "msg=\"report for a task not in memory\" task=%" PRIu64, r->task);
        return TN_OK;
    }
    if (r->attempt != t->attempt) {
        /* fencing: a stale attempt's report is ignored and its process killed */
        tn_info("engine", "msg=\"stale report ignored\" task=%" PRIu64 " attempt=%u current=%u",
                r->task, r->attempt, t->attempt);
        if (r->kind == TN_REPORT_ACCEPTED) {
            /* after the commit: the attempt that supersedes it may be in this very batch,
             * and a batch that does not commit must leave no trace */
            effect f = {FX_KILL_STALE, t->w->id, r->task, t->node, r->attempt, NULL};
            if (tn_grow((void **)&e->fx, &e->capfx, e->nfx + 1, sizeof(effect)))
                e->fx[e->nfx++] = f;
        }
        return TN_OK;
    }
    tn_event ev;
    tn_err err = TN_OK;
    bool live = t->state == TN_TASK_S_DISPATCH || t->state == TN_TASK_S_RUNNING_EXECUTION;
    switch (r->kind) {
    case TN_REPORT_ACCEPTED:
        if (t->state != TN_TASK_S_DISPATCH)
            return TN_OK; /* duplicate, or overtaken by its result */
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_RUNNING, t->w->id, t->id);
        tn_event_set_int(&ev, "attempt", t->attempt);
        tn_event_set_int(&ev, "pid", r->pid);
        if (r->worker)
            tn_event_set_str(&ev, "worker", r->worker);
        if (r->containment)
            tn_event_set_str(&ev, "containment", r->containment);
        if ((err = eng_emit_task(e, t, 0, &ev)))
            return err;
        arm_timeout(e, t);
        return TN_OK;
    case TN_REPORT_RESULT: {
        if (!live)
            return TN_OK;
        tn_buf scratch = {0};
        eng_event(&ev, TN_MACHINE_TASK, r->success ? TN_TASK_E_SUCCEEDED : TN_TASK_E_FAILED,
                  t->w->id, t->id);
        tn_event_set_int(&ev, "attempt", t->attempt);
        tn_event_set_int(&ev, "exit", r->exit_code);
        if (r->reason)
            tn_event_set_str(&ev, "reason", r->reason);
        if (r->success && r->nout) {
            tn_kv *kv = tn_kv_new();
            for (uint32_t i = 0; kv && i < r->nout; i++)
                tn_kv_set(kv, r->out_keys[i], r->out_values[i]);
            if (kv)
                err = eng_kv_attr(&ev, "vars", kv, &scratch);
            tn_kv_free(kv);
        }
        if (!err)
            err = eng_emit_task(e, t, 0, &ev);
        tn_buf_free(&scratch);
        return err ? err : sched_task_finished(e, t);
    }
    case TN_REPORT_LOST:
        if (!live || !(t->flags & TF_SENT))
            return TN_OK;
        return failover(e, t, r->reason ? r->reason : "its worker was lost");
    case TN_REPORT_KILL_RESULT:
        if (!live)
            return TN_OK;
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_KILLED, t->w->id, t->id);
        tn_event_set_int(&ev, "attempt", t->attempt);
        if (r->reason)
            tn_event_set_str(&ev, "reason", r->reason);
        if (r->hooks)
            tn_event_set_str(&ev, "hooks", r->hooks);
        err = eng_emit_task(e, t, 0, &ev);
        return err ? err : sched_task_finished(e, t);
    }
    return TN_OK;
}

/* Fail an attempt over: NEED_FAULT_TOLERANCE, then dispatched again with a new attempt
 * (a failover does not use up a retry), or paused with its pausing workflow. If it was
 * being killed (every task of a stopping workflow is), the kill is done. */
static tn_err failover(tn_engine *e, task_run *t, const char *reason)
{
    tn_event ev;
    tn_err err;
    wf_run *w = t->w;
    if ((t->flags & TF_KILLREQ) || w->state == TN_WF_S_READY_STOP) {
        eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_KILLED, w->id, t->id);
        tn_event_set_int(&ev, "attempt", t->attempt);
        tn_event_set_str(&ev, "reason", reason);
        err = eng_emit_task(e, t, 0, &ev);
        return err ? err : sched_task_finished(e, t);
    }
    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_FAILOVER, w->id, t->id);
    tn_event_set_int(&ev, "attempt", t->attempt);
    tn_event_set_str(&ev, "reason", reason);
    if ((err = eng_emit_task(e, t, 0, &ev)))
        return err;
    if (w->state == TN_WF_S_READY_PAUSE)
        return eng_emit_task(e, t, TN_TASK_E_PAUSE, NULL);
    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, w->id, t->id);
    tn_event_set_int(&ev, "attempt", t->attempt + 1);
    tn_event_set_str(&ev, "group", eng_worker_group(t->w, NODE(t)));
    if (!(err = eng_emit_task(e, t, 0, &ev)))
        eng_queue_push(e, t);
    return err;
}

/* A sub-workflow's child reached a final state: its parent task follows it. */
tn_err sched_child_final(tn_engine *e, wf_run *child)
{
    wf_run *p = eng_wf(e, child->parent_wf);
    if (!p)
        return TN_OK;
    task_run *t = tn_map_get(&e->tasks, child->parent_task);
    if (!t || t->w != p || t->child != child->id || t->state != TN_TASK_S_RUNNING_EXECUTION)
        return TN_OK;
    unsigned ev_id;
    switch (child->state) {
    case TN_WF_S_SUCCESS: ev_id = TN_TASK_E_SUCCEEDED; break;
    case TN_WF_S_FAILURE: ev_id = TN_TASK_E_FAILED; break;
    case TN_WF_S_PAUSE: ev_id = TN_TASK_E_PAUSED; break;
    default: ev_id = TN_TASK_E_KILLED; break;
    }
    tn_event ev;
    eng_event(&ev, TN_MACHINE_TASK, ev_id, p->id, t->id);
    tn_event_set_int(&ev, "child", (int64_t)child->id);
    tn_event_set_str(&ev, "child_state", tn_sm_state_name(&tn_sm_workflow, child->state));
    tn_event_set_int(&ev, "attempt", t->attempt);
    tn_err err = eng_emit_task(e, t, 0, &ev);
    return err ? err : sched_task_finished(e, t);
}

/* A restarted master takes each live instance over: FAILOVER records that the previous
 * master's watch ended there. The engine's first step records it (sched_takeover_begin)
 * before its commands and ends the takeover after them, so a pause or stop sent
 * meanwhile applies to the instance in FAILOVER, as the spec allows. Instances not
 * running are recovered at once. */
tn_err sched_takeover(tn_engine *e, wf_run *w)
{
    if (w->state != TN_WF_S_RUNNING_EXECUTION && w->state != TN_WF_S_READY_PAUSE &&
        w->state != TN_WF_S_READY_STOP)
        return sched_recovered(e, w);
    if (!tn_grow((void **)&e->takeover, &e->captakeover, e->ntakeover + 1, sizeof(uint64_t)))
        return TN_ERR_NOMEM;
    e->takeover[e->ntakeover++] = w->id;
    return TN_OK;
}

/* Emitted in the step, on the engine's thread, not at open: the log's read transaction
 * for a batch must begin and end on the thread that commits it. */
tn_err sched_takeover_begin(tn_engine *e, wf_run *w)
{
    if (w->state != TN_WF_S_RUNNING_EXECUTION && w->state != TN_WF_S_READY_PAUSE &&
        w->state != TN_WF_S_READY_STOP)
        return TN_OK;
    tn_event ev;
    eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_FAILOVER, w->id, 0);
    tn_event_set_str(&ev, "reason", "the master restarted");
    return eng_emit_wf(e, w, 0, &ev);
}

/* The end of a takeover: back to the state the instance was taken over in (unless a
 * command already moved it on), then the recovery of its tasks. */
tn_err sched_takeover_end(tn_engine *e, wf_run *w)
{
    for (size_t i = 0; i < e->ntakeover; i++) /* once per instance */
        if (e->takeover[i] == w->id)
            e->takeover[i] = 0;
    if (w->state == TN_WF_S_FAILOVER) {
        unsigned back = w->takeover == TN_WF_S_READY_PAUSE ? TN_WF_E_PAUSE :
                        w->takeover == TN_WF_S_READY_STOP  ? TN_WF_E_STOP :
                                                             TN_WF_E_START;
        tn_err err = eng_emit_wf(e, w, back, NULL);
        if (err)
            return err;
    }
    return sched_recovered(e, w);
}

/* After an instance was rebuilt from the log: re-arm its timers with their original
 * due times, requeue what waited for dispatch, fail over what the executor lost. */
tn_err sched_recovered(tn_engine *e, wf_run *w)
{
    tn_err err = TN_OK;
    eng_touch(e, w);
    if (w->state == TN_WF_S_FAILOVER) /* a takeover that did not end: end it */
        return sched_takeover_end(e, w);
    if (w->state == TN_WF_S_SUBMITTED_SUCCESS)
        return sched_admit(e, w);
    if (w->state == TN_WF_S_SERIAL_WAIT)
        return sched_serial_release(e, w->def->name);
    if (!active_wf(w))
        return TN_OK;
    if (w->def->timeout_ms && !w->timeout_fired)
        eng_timer_wf(e, w, w->started_at + (int64_t)w->def->timeout_ms * 1000000);
    for (uint32_t i = 0; i < w->def->n_tasks && !err; i++) {
        task_run *t = &w->t[i];
        const tn_def_task *n = NODE(t);
        if (!t->id)
            continue;
        tn_event ev;
        switch (t->state) {
        case TN_TASK_S_SUBMITTED_SUCCESS:
            if (!(t->flags & TF_QUEUED)) {
                err = sched_start_task(e, t);
                break;
            }
            /* it waited for a worker: back to the queue, with its dispatch timeout */
            eng_queue_push(e, t);
            if (n->dispatch_timeout_ms) {
                task_run tmp = *t;
                tmp.gen = t->attempt;
                eng_timer_task(e, &tmp, TT_DISPATCH_TIMEOUT,
                               t->queued_at + (int64_t)n->dispatch_timeout_ms * 1000000);
            }
            break;
        case TN_TASK_S_DELAY_EXECUTION: eng_timer_task(e, t, TT_DUE, t->due); break;
        case TN_TASK_S_NEED_FAULT_TOLERANCE:
            eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_DISPATCH, w->id, t->id);
            tn_event_set_int(&ev, "attempt", t->attempt + 1);
            tn_event_set_str(&ev, "group", eng_worker_group(t->w, n));
            if (!(err = eng_emit_task(e, t, 0, &ev)))
                eng_queue_push(e, t);
            break;
        case TN_TASK_S_DISPATCH:
        case TN_TASK_S_RUNNING_EXECUTION:
            if (is_logic(n)) {
                if (t->flags & TF_KILLREQ) {
                    eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_KILLED, w->id, t->id);
                    err = eng_emit_task(e, t, 0, &ev);
                    if (!err)
                        err = sched_task_finished(e, t);
                } else if (n->type == TN_DEF_TASK_SUB_WORKFLOW && t->child) {
                    tn_wf_proj cp;
                    if (tn_evlog_wf(e->log, t->child, &cp) == TN_OK && FINAL_W(cp.state)) {
                        wf_run *c = eng_load_wf(e, t->child, &e->msg);
                        if (c)
                            err = sched_child_final(e, c);
                    }
                } else if (n->type == TN_DEF_TASK_DEPENDENT) {
                    err = logic_poll(e, t);
                }
                /* conditions and switch decide in the batch that starts them */
                break;
            }
            int still =
                e->ex.ops->running ? e->ex.ops->running(e->ex.self, t->id, t->attempt) : 0;
            if (still != 0) {
                /* running (or not known yet: the executor reports LOST if it was lost); a
                 * kill committed before the restart is asked again: the crash may have
                 * come between its commit and its effect */
                if (t->flags & TF_KILLREQ)
                    eng_fx(e, FX_KILL, t);
                else if (t->state == TN_TASK_S_RUNNING_EXECUTION)
                    arm_timeout(e, t);
                break;
            }
            if (t->flags & TF_KILLREQ) {
                /* it was being killed and is gone: that kill is done */
                eng_event(&ev, TN_MACHINE_TASK, TN_TASK_E_KILLED, w->id, t->id);
                tn_event_set_str(&ev, "reason", "gone after a restart while being killed");
                err = eng_emit_task(e, t, 0, &ev);
                if (!err)
                    err = sched_task_finished(e, t);
                break;
            }
            /* the executor lost it: fail over with a new attempt */
            err = failover(e, t, "not running after a restart");
            break;
        default: break;
        }
    }
    sched_candidates_all(w);
    return err;
}

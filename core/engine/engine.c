/* The engine loop: inputs -> tables -> events -> one group commit -> effects.
 * Also commands, the definition cache, timers, the dispatch queue and recovery. */
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_int.h"
#include "log.h"
#include "logread.h"
#include "mp.h"
#include "replay.h"
#include "util.h"

/* ------------------------------------------------------------------------------ */
/* small vectors */

const char *tn_start_mode_name(tn_start_mode m)
{
    static const char *const names[] = {"all", "task_only", "task_pre", "task_post"};
    return (unsigned)m < 4 ? names[m] : "?";
}

int tn_start_mode_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, tn_start_mode_name((tn_start_mode)i)) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------------ */
/* clock and timers */

int64_t eng_now(tn_engine *e)
{
    return e->virtual_clock ? e->vnow : tn_now_ns();
}
int64_t tn_engine_now(tn_engine *e)
{
    return eng_now(e);
}

static void heap_up(timer *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].due <= h[i].due)
            break;
        timer t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static void heap_down(timer *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].due < h[m].due)
            m = l;
        if (r < n && h[r].due < h[m].due)
            m = r;
        if (m == i)
            return;
        timer t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
}

static void timer_push(tn_engine *e, const timer *t)
{
    if (!tn_grow((void **)&e->timers, &e->captimers, e->ntimers + 1, sizeof(timer))) {
        tn_error("engine", "msg=\"out of memory arming a timer\"");
        return;
    }
    e->timers[e->ntimers] = *t;
    heap_up(e->timers, e->ntimers++);
}

void eng_timer_task(tn_engine *e, task_run *t, uint8_t sub, int64_t due)
{
    timer tm = {.due = due,
                .kind = TIMER_TASK,
                .sub = sub,
                .node = t->node,
                .gen = t->gen,
                .wf = t->w->id};
    timer_push(e, &tm);
}

void eng_timer_wf(tn_engine *e, wf_run *w, int64_t due)
{
    timer tm = {.due = due, .kind = TIMER_WF, .gen = w->gen, .wf = w->id};
    timer_push(e, &tm);
}

void tn_engine_after(tn_engine *e, int64_t due_ns, tn_engine_timer_fn fn, void *arg)
{
    pthread_mutex_lock(&e->mu);
    if (tn_grow((void **)&e->cb_timers, &e->capcb, e->ncb + 1, sizeof(timer))) {
        timer tm = {.due = due_ns, .kind = TIMER_CALLBACK, .fn = fn, .arg = arg};
        e->cb_timers[e->ncb++] = tm;
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ------------------------------------------------------------------------------ */
/* dispatch queue (min-heap by key) */

static void q_up(qentry *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= h[i].key)
            break;
        qentry t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static void q_down(qentry *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].key < h[m].key)
            m = l;
        if (r < n && h[r].key < h[m].key)
            m = r;
        if (m == i)
            return;
        qentry t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
}

lane *eng_lane(tn_engine *e, const char *group)
{
    if (e->last_lane && strcmp(e->last_lane->name, group) == 0)
        return e->last_lane;
    lane *l = e->lanes;
    while (l && strcmp(l->name, group) != 0)
        l = l->next;
    if (!l && (l = calloc(1, sizeof(*l)))) {
        snprintf(l->name, sizeof(l->name), "%s", group);
        l->next = e->lanes;
        e->lanes = l;
    }
    e->last_lane = l ? l : e->last_lane;
    return l;
}

static bool lane_push(lane *l, const qentry *q)
{
    if (!tn_grow((void **)&l->q, &l->cap, l->n + 1, sizeof(qentry)))
        return false;
    l->q[l->n] = *q;
    q_up(l->q, l->n++);
    return true;
}

void eng_queue_push(tn_engine *e, task_run *t)
{
    const tn_def_task *n = &t->w->def->tasks[t->node];
    /* workflow priority, task priority, then age (the task id grows with submission) */
    uint64_t key = ((uint64_t)t->w->priority << 60) | ((uint64_t)n->priority << 56) |
                   (t->id & ((UINT64_C(1) << 56) - 1));
    qentry q = {key, t->w->id, t->node, t->attempt};
    lane *l = eng_lane(e, n->worker_group ? n->worker_group : "");
    if (!l || !lane_push(l, &q))
        return;
    t->flags |= TF_QUEUED;
}

/* Put an entry back (one that could not be placed in this step). */
bool eng_queue_requeue(tn_engine *e, const qentry *q)
{
    wf_run *w = eng_wf(e, q->wf);
    if (!w || q->node >= w->def->n_tasks)
        return true; /* its instance is gone: nothing waits */
    const char *g = w->def->tasks[q->node].worker_group;
    lane *l = eng_lane(e, g ? g : "");
    return l && lane_push(l, q);
}

lane *eng_lane_next(tn_engine *e, uint32_t max_misses)
{
    lane *best = NULL;
    for (lane *l = e->lanes; l; l = l->next)
        if (l->n && l->misses < max_misses && (!best || l->q[0].key < best->q[0].key))
            best = l;
    return best;
}

bool eng_lane_pop(lane *l, qentry *out)
{
    if (l->n == 0)
        return false;
    *out = l->q[0];
    l->q[0] = l->q[--l->n];
    q_down(l->q, l->n, 0);
    return true;
}

const char *eng_task_why(tn_engine *e, const task_run *t)
{
    if (t->why)
        return t->why;
    /* one in a task group may wait for its slot instead: no reason of the lane's then */
    if (t->state != TN_TASK_S_SUBMITTED_SUCCESS || !(t->flags & TF_QUEUED) ||
        t->w->def->tasks[t->node].task_group)
        return "";
    const char *g = t->w->def->tasks[t->node].worker_group;
    for (lane *l = e->lanes; l; l = l->next)
        if (strcmp(l->name, g ? g : "") == 0)
            return l->why ? l->why : "";
    return "";
}

tgroup *eng_group(tn_engine *e, const char *name)
{
    for (tgroup *g = e->groups; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return g;
    tgroup *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    snprintf(g->name, sizeof(g->name), "%s", name);
    g->slots = -1;
    /* slots come from the log's projection (TASKGROUP_SET) */
    int64_t slots;
    if (tn_log_taskgroup_get(tn_evlog_store(e->log), name, &slots) == TN_OK)
        g->slots = slots;
    g->next = e->groups;
    e->groups = g;
    return g;
}

/* ------------------------------------------------------------------------------ */
/* events */

void eng_event(tn_event *ev, unsigned machine, unsigned event, uint64_t wf, uint64_t task)
{
    tn_event_init(ev, machine, event, wf, task);
}

static tn_err emit(tn_engine *e, tn_event *ev, void **hint);
tn_err eng_emit(tn_engine *e, tn_event *ev)
{
    return emit(e, ev, NULL);
}

void eng_timer_sched(tn_engine *e, int64_t due)
{
    timer tm = {.due = due, .kind = TIMER_SCHED};
    timer_push(e, &tm);
}

const char *eng_worker_group(const wf_run *w, const tn_def_task *node)
{
    if (w->worker_group && !strcmp(node->worker_group, TN_DEF_DEFAULT_WORKER_GROUP))
        return w->worker_group;
    return node->worker_group;
}

/* `hint`: the instance's handle of its projection in the log, or NULL. */
static tn_err emit(tn_engine *e, tn_event *ev, void **hint)
{
    ev->actor = tn_str_c(e->cur_actor ? e->cur_actor : e->actor);
    ev->at = eng_now(e);
    tn_err err = tn_evlog_add_hint(e->log, ev, hint, &e->msg);
    if (err) {
        /* the engine only emits what its own state says is legal: this is a bug */
        e->stats.rejected++;
        tn_error("engine", "msg=\"event refused\" why=\"%s\"", e->msg.text);
        return err;
    }
    e->stats.events++;
    /* kept for the observer and the metrics, folded in when the batch commits */
    if (tn_grow((void **)&e->obs, &e->capobs, e->nobs + 1, sizeof(*e->obs)))
        e->obs[e->nobs++] = (tn_engine_event){ev->seq,     ev->wf,    ev->task, ev->at,
                                              ev->machine, ev->event, ev->from, ev->to};
    return TN_OK;
}

void eng_touch(tn_engine *e, wf_run *w)
{
    w->dirty = true;
    if (w->touched)
        return;
    if (!tn_grow((void **)&e->touched, &e->captouched, e->ntouched + 1, sizeof(wf_run *)))
        return;
    e->touched[e->ntouched++] = w;
    w->touched = true;
}

tn_err eng_emit_wf(tn_engine *e, wf_run *w, unsigned event, tn_event *ev)
{
    tn_event local;
    if (!ev) {
        ev = &local;
        eng_event(ev, TN_MACHINE_WORKFLOW, event, w->id, 0);
    }
    tn_err err = emit(e, ev, ev->wf == w->id ? &w->proj : NULL);
    if (err)
        return err;
    eng_touch(e, w);
    sched_fold_wf(e, w, ev);
    return TN_OK;
}

tn_err eng_emit_task(tn_engine *e, task_run *t, unsigned event, tn_event *ev)
{
    tn_event local;
    if (!ev) {
        ev = &local;
        eng_event(ev, TN_MACHINE_TASK, event, t->w->id, t->id);
    }
    tn_err err = emit(e, ev, ev->task == t->id ? &t->proj : NULL);
    if (err)
        return err;
    eng_touch(e, t->w);
    sched_fold_task(e, t, ev);
    return TN_OK;
}

void eng_fx(tn_engine *e, uint8_t kind, task_run *t)
{
    if (!tn_grow((void **)&e->fx, &e->capfx, e->nfx + 1, sizeof(effect)))
        return;
    e->fx[e->nfx++] = (effect){kind, t->w->id, t->id, t->node, t->attempt, NULL};
}

/* ------------------------------------------------------------------------------ */
/* definitions */

/* Definitions stay decoded while instances use them, and the last few after that (a
 * definition is started again and again: decoding a big one costs more than running a
 * step of it). Most recently used first. */
#define DEF_IDLE_MAX 16

/* The cache is a recency list (front: most recent) with two indexes, by (name, version)
 * and by the decoded definition: a start looks its definition up and an instance's end
 * gives it back, so with thousands of workflows (a schedule each) neither may scan. */
static uint64_t def_key(const char *name, uint32_t version)
{
    uint64_t h = 1469598103934665603ull ^ version;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h | 1;
}

static def_entry *def_find(tn_engine *e, const char *name, uint32_t version)
{
    for (def_entry *d = tn_map_get(&e->def_by_key, def_key(name, version)); d; d = d->hnext)
        if (d->version == version && strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

static void def_unlink(tn_engine *e, def_entry *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else
        e->defs = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        e->defs_tail = d->prev;
    d->next = d->prev = NULL;
}

static void def_push_front(tn_engine *e, def_entry *d)
{
    d->prev = NULL;
    d->next = e->defs;
    if (e->defs)
        e->defs->prev = d;
    else
        e->defs_tail = d;
    e->defs = d;
}

/* Into the list and both indexes; false when out of memory (nothing changed). */
static bool def_insert(tn_engine *e, def_entry *d)
{
    uint64_t k = def_key(d->name, d->version);
    def_entry *head = tn_map_get(&e->def_by_key, k);
    if (tn_map_put(&e->def_by_ptr, (uint64_t)(uintptr_t)d->def, d))
        return false;
    d->hnext = head;
    if (tn_map_put(&e->def_by_key, k, d)) {
        tn_map_del(&e->def_by_ptr, (uint64_t)(uintptr_t)d->def);
        return false;
    }
    def_push_front(e, d);
    return true;
}

static void def_remove(tn_engine *e, def_entry *d)
{
    uint64_t k = def_key(d->name, d->version);
    def_entry *head = tn_map_get(&e->def_by_key, k), **pp = &head;
    while (*pp && *pp != d)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = d->hnext;
    if (head)
        tn_map_put(&e->def_by_key, k, head);
    else
        tn_map_del(&e->def_by_key, k);
    tn_map_del(&e->def_by_ptr, (uint64_t)(uintptr_t)d->def);
    def_unlink(e, d);
}

static tn_err def_load(tn_engine *e, const char *name, uint32_t version, tn_def **out)
{
    def_entry *d = def_find(e, name, version);
    if (d) {
        if (d->refs++ == 0)
            e->ndefs_idle--;
        def_unlink(e, d); /* to the front */
        def_push_front(e, d);
        *out = d->def;
        return TN_OK;
    }
    tn_buf bytes = {0};
    tn_def *def = NULL;
    tn_err err = tn_log_def_get(tn_evlog_store(e->log), name, version, &bytes);
    if (!err)
        err = tn_def_decode(bytes.data, bytes.size, &def, &e->msg);
    tn_buf_free(&bytes);
    if (err)
        return err;
    e->stats.def_decodes++;
    d = calloc(1, sizeof(*d));
    if (d) {
        snprintf(d->name, sizeof(d->name), "%s", name);
        d->version = version;
        d->refs = 1;
        d->def = def;
    }
    if (!d || !def_insert(e, d)) {
        free(d);
        tn_def_free(def);
        return TN_ERR_NOMEM;
    }
    *out = def;
    return TN_OK;
}

static void def_unref(tn_engine *e, tn_def *def)
{
    def_entry *d = tn_map_get(&e->def_by_ptr, (uint64_t)(uintptr_t)def);
    if (!d || --d->refs > 0 || ++e->ndefs_idle <= DEF_IDLE_MAX)
        return;
    /* too many idle: the least recently used idle one goes (idle ones are the old ones,
     * found from the back of the list) */
    def_entry *v = e->defs_tail;
    while (v && v->refs > 0)
        v = v->prev;
    if (v) {
        def_remove(e, v);
        tn_def_free(v->def);
        free(v);
        e->ndefs_idle--;
    }
}

/* A definition just applied, decoded already: it joins the cache once its batch is
 * committed (before, its version is not the store's). Takes def; NULL when kept. */
static tn_def *def_pending_add(tn_engine *e, tn_def *def, uint32_t version)
{
    def_entry *d = calloc(1, sizeof(*d));
    if (!d)
        return def;
    snprintf(d->name, sizeof(d->name), "%s", def->name);
    d->version = version;
    d->def = def;
    d->next = e->defs_pending;
    e->defs_pending = d;
    return NULL;
}

static bool def_pending_has(const def_entry *list, const def_entry *d)
{
    for (const def_entry *x = list; x; x = x->next)
        if (x != d && x->version == d->version && strcmp(x->name, d->name) == 0)
            return true;
    return false;
}

/* After the batch: committed, the applied definitions are cached as idle entries (the
 * least recently used idle ones make room); not committed, they are dropped. */
static void defs_pending_end(tn_engine *e, bool committed)
{
    while (e->defs_pending) {
        def_entry *d = e->defs_pending;
        e->defs_pending = d->next;
        if (!committed || def_find(e, d->name, d->version) ||
            def_pending_has(e->defs_pending, d) || (d->refs = 1, !def_insert(e, d))) {
            tn_def_free(d->def);
            free(d);
            continue;
        }
        def_unref(e, d->def); /* idle now, within the cache's bound */
    }
}

/* The newest stored version of a definition: (0, NOENT) when there is none. */
static tn_err def_latest_version(tn_engine *e, const char *name, uint32_t *version,
                                 tn_buf *bytes)
{
    return tn_log_def_latest(tn_evlog_store(e->log), name, version, bytes);
}

tn_err eng_def_version(tn_engine *e, const char *name, uint32_t *version)
{
    return def_latest_version(e, name, version, NULL);
}

tn_err eng_def_latest(tn_engine *e, const char *name, tn_def **def, uint32_t *version)
{
    tn_err err = def_latest_version(e, name, version, NULL);
    if (err)
        return err;
    return def_load(e, name, *version, def);
}

/* ------------------------------------------------------------------------------ */
/* instances */

wf_run *eng_wf(tn_engine *e, uint64_t id)
{
    return tn_map_get(&e->wfs, id);
}

static void wf_run_free(tn_engine *e, wf_run *w)
{
    if (!w)
        return;
    if (w->t) {
        for (uint32_t i = 0; i < w->def->n_tasks; i++) {
            if (w->t[i].id)
                tn_map_del(&e->tasks, w->t[i].id);
            tn_kv_free(w->t[i].pool);
            free(w->t[i].why);
        }
    }
    free(w->t);
    free(w->in_scope);
    free(w->from);
    free(w->cand);
    tn_kv_free(w->overrides);
    tn_kv_free(w->inherited);
    tn_kv_free(w->globals);
    free(w->schedule);
    free(w->tz);
    free(w->worker_group);
    if (w->def)
        def_unref(e, w->def);
    free(w);
}

/* kv <-> msgpack map, for event attrs */
static tn_err kv_pack(const tn_kv *kv, tn_buf *out)
{
    msgpack_packer pk;
    out->size = 0;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    uint32_t n = kv ? tn_kv_len(kv) : 0;
    msgpack_pack_map(&pk, n);
    for (uint32_t i = 0; i < n; i++) {
        const char *k = tn_kv_key(kv, i), *v = tn_kv_value(kv, i);
        msgpack_pack_str_with_body(&pk, k, strlen(k));
        msgpack_pack_str_with_body(&pk, v, strlen(v));
    }
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

static tn_err kv_unpack(const void *buf, size_t len, tn_kv **out)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    uint32_t n;
    if (!tn_mp_map(&r, TN_DEF_MAX_PARAMS * 4, &n))
        return r.err;
    tn_kv *kv = tn_kv_new();
    if (!kv)
        return TN_ERR_NOMEM;
    char k[TN_DEF_MAX_NAME + 1];
    for (uint32_t i = 0; i < n; i++) {
        const char *v;
        uint32_t vl;
        if (!tn_mp_str_copy(&r, k, sizeof(k)) || !tn_mp_str(&r, TN_DEF_MAX_STRING, &v, &vl))
            break;
        char *vs = strndup(v, vl);
        tn_err err = vs ? tn_kv_set(kv, k, vs) : TN_ERR_NOMEM;
        free(vs);
        if (err) {
            tn_kv_free(kv);
            return err;
        }
    }
    if (!tn_mp_done(&r)) {
        tn_kv_free(kv);
        return r.err;
    }
    *out = kv;
    return TN_OK;
}

tn_err eng_kv_attr(tn_event *ev, const char *key, const tn_kv *kv, tn_buf *scratch)
{
    tn_err err = kv_pack(kv, scratch);
    return err ? err : tn_event_set_bin(ev, key, scratch->data, scratch->size);
}

tn_err eng_kv_unpack(const void *buf, size_t len, tn_kv **out)
{
    *out = NULL;
    return len ? kv_unpack(buf, len, out) : TN_OK;
}

tn_err eng_kv_from_attr(const tn_event *ev, const char *key, tn_kv **out)
{
    const tn_attr *a = tn_event_attr(ev, key);
    *out = NULL;
    if (!a)
        return TN_OK;
    if (a->type != TN_ATTR_BIN)
        return TN_ERR_CORRUPT;
    return kv_unpack(a->s.p, a->s.len, out);
}

static char *attr_dup(const tn_event *ev, const char *key)
{
    const tn_attr *a = tn_event_attr(ev, key);
    if (!a || a->type != TN_ATTR_STR || a->s.len == 0)
        return NULL;
    return strndup(a->s.p, a->s.len);
}

/* What a SUBMIT says of where the instance came from and how it differs from its
 * definition: schedule, backfill, zone, priority, failure strategy, worker group. */
static tn_err submit_overrides(wf_run *w, const tn_event *ev)
{
    int64_t bf = 0;
    tn_event_int(ev, "backfill", &bf);
    w->backfill = (uint64_t)bf;
    w->priority = (uint8_t)w->def->priority;
    w->failure_strategy = (uint8_t)w->def->failure_strategy;
    char *p = attr_dup(ev, "priority"), *f = attr_dup(ev, "failure_strategy");
    tn_def_priority pr;
    tn_def_failure_strategy fs;
    if (p && tn_def_priority_parse(p, &pr) == TN_OK)
        w->priority = (uint8_t)pr;
    if (f && tn_def_failure_strategy_parse(f, &fs) == TN_OK)
        w->failure_strategy = (uint8_t)fs;
    free(p);
    free(f);
    w->schedule = attr_dup(ev, "schedule");
    w->tz = attr_dup(ev, "tz");
    w->worker_group = attr_dup(ev, "worker_group");
    return (tn_event_attr(ev, "schedule") && !w->schedule) ? TN_ERR_NOMEM : TN_OK;
}

/* Build a workflow's runtime from its SUBMIT event (live, or replaying its events). */
static wf_run *wf_run_from_submit(tn_engine *e, const tn_event *ev)
{
    const tn_attr *name = tn_event_attr(ev, "name");
    int64_t version = 0, run = 1, mode = 0, dry = 0, sched = 0, pwf = 0, ptask = 0;
    tn_event_int(ev, "version", &version);
    tn_event_int(ev, "run", &run);
    tn_event_int(ev, "mode", &mode);
    tn_event_int(ev, "dry_run", &dry);
    tn_event_int(ev, "sched", &sched);
    tn_event_int(ev, "parent_wf", &pwf);
    tn_event_int(ev, "parent_task", &ptask);
    if (!name || name->type != TN_ATTR_STR || name->s.len > TN_DEF_MAX_NAME || version <= 0)
        return NULL;
    char nm[TN_DEF_MAX_NAME + 1];
    memcpy(nm, name->s.p, name->s.len);
    nm[name->s.len] = 0;
    wf_run *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->id = ev->wf;
    w->version = (uint32_t)version;
    w->run = (uint32_t)run;
    w->mode = (uint8_t)mode;
    w->dry_run = dry != 0;
    w->sched_ns = sched ? sched : ev->at;
    w->parent_wf = (uint64_t)pwf;
    w->parent_task = (uint64_t)ptask;
    w->created_at = ev->at;
    if (def_load(e, nm, w->version, &w->def)) {
        free(w);
        return NULL;
    }
    if (submit_overrides(w, ev))
        goto fail;
    uint32_t n = w->def->n_tasks;
    if (n > 64) { /* a big workflow's tasks are created at once: no rehash on the way */
        (void)tn_map_reserve(&e->tasks, e->tasks.len + n);
        tn_evlog_reserve_tasks(e->log, n);
    }
    w->t = calloc(n, sizeof(task_run));
    w->in_scope = calloc(n, 1);
    if (w->t && n > 64)
        tn_populate(w->t, n * sizeof(task_run));
    if (!w->t || !w->in_scope || eng_kv_from_attr(ev, "params", &w->overrides) ||
        eng_kv_from_attr(ev, "inherited", &w->inherited))
        goto fail;
    const tn_attr *from = tn_event_attr(ev, "from");
    if (from && from->type == TN_ATTR_STR && from->s.len) {
        /* comma-separated node names */
        w->from = calloc(n, sizeof(uint32_t));
        if (!w->from)
            goto fail;
        const char *p = from->s.p, *end = from->s.p + from->s.len;
        while (p < end) {
            const char *c = memchr(p, ',', (size_t)(end - p));
            size_t l = (size_t)((c ? c : end) - p);
            char tmp[TN_DEF_MAX_NAME + 1];
            if (l <= TN_DEF_MAX_NAME) {
                memcpy(tmp, p, l);
                tmp[l] = 0;
                int32_t idx = tn_def_task_find(w->def, tmp);
                if (idx >= 0 && w->nfrom < n)
                    w->from[w->nfrom++] = (uint32_t)idx;
            }
            p += l + 1;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        w->t[i].w = w;
        w->t[i].node = i;
        w->t[i].state = TN_SM_NEW;
    }
    w->state = TN_SM_NEW;
    sched_reset_run(e, w);
    return w;
fail:
    wf_run_free(e, w);
    return NULL;
}

/* Fold one stored event into the in-memory instances (recovery). */
static tn_err replay_event(tn_engine *e, wf_run **wp, const tn_event *ev)
{
    wf_run *w = *wp;
    if (ev->machine == TN_MACHINE_WORKFLOW) {
        if (ev->event == TN_WF_E_SUBMIT) {
            if (w)
                return TN_ERR_CORRUPT;
            w = wf_run_from_submit(e, ev);
            if (!w)
                return TN_ERR_CORRUPT;
            *wp = w;
        }
        if (!w)
            return TN_ERR_CORRUPT;
        sched_fold_wf(e, w, ev);
        return TN_OK;
    }
    if (ev->machine == TN_MACHINE_ALERT)
        return w ? TN_OK : TN_ERR_CORRUPT; /* indexed under its instance, for audit */
    if (ev->machine != TN_MACHINE_TASK || !w)
        return TN_ERR_CORRUPT;
    task_run *t = tn_map_get(&e->tasks, ev->task);
    if (!t) {
        const tn_attr *name = tn_event_attr(ev, "name");
        char nm[TN_DEF_MAX_NAME + 1];
        if (!name || name->type != TN_ATTR_STR || name->s.len > TN_DEF_MAX_NAME)
            return TN_ERR_CORRUPT;
        memcpy(nm, name->s.p, name->s.len);
        nm[name->s.len] = 0;
        int32_t idx = tn_def_task_find(w->def, nm);
        if (idx < 0)
            return TN_ERR_CORRUPT;
        t = &w->t[idx];
    }
    sched_fold_task(e, t, ev);
    return TN_OK;
}

typedef struct load_ctx {
    tn_engine *e;
    wf_run *w;
    tn_err err;
    uint64_t seq;
} load_ctx;

static int load_one(void *vctx, const tn_event *ev)
{
    load_ctx *x = vctx;
    /* a child's events are indexed under the parent too? no: by its own wf id only */
    if (ev->wf != (x->w ? x->w->id : ev->wf))
        return 0;
    x->err = replay_event(x->e, &x->w, ev);
    x->seq = ev->seq;
    return x->err ? 1 : 0;
}

/* Rebuild one instance from its events. */
static wf_run *load_wf(tn_engine *e, uint64_t id, tn_errmsg *msg)
{
    load_ctx x = {e, NULL, TN_OK, 0};
    int fr;
    tn_err err = tn_replay_wf_events(tn_evlog_store(e->log), id, load_one, &x, &fr);
    if (err || x.err || !x.w) {
        tn_errmsg_set(msg,
                      err   ? err :
                      x.err ? x.err :
                              TN_ERR_NOENT,
                      "workflow instance %" PRIu64 " cannot be loaded (%s at seq %" PRIu64
                      "): run `tern replay` to check the log",
                      id,
                      tn_strerror(err   ? err :
                                  x.err ? x.err :
                                          TN_ERR_NOENT),
                      x.seq);
        if (x.w)
            wf_run_free(e, x.w);
        return NULL;
    }
    wf_run *w = x.w;
    if (tn_map_put(&e->wfs, w->id, w)) {
        wf_run_free(e, w);
        return NULL;
    }
    for (uint32_t i = 0; i < w->def->n_tasks; i++)
        if (w->t[i].id)
            tn_map_put(&e->tasks, w->t[i].id, &w->t[i]);
    return w;
}

wf_run *eng_load_wf(tn_engine *e, uint64_t id, tn_errmsg *msg)
{
    wf_run *w = eng_wf(e, id);
    if (w)
        return w;
    w = load_wf(e, id, msg);
    if (w && tn_sm_workflow.final[w->state])
        w->loaded_final = true;
    return w;
}


/* ------------------------------------------------------------------------------ */
/* open / close / recovery */

static tn_err recover(tn_engine *e, tn_errmsg *msg)
{
    /* page through the workflow projections: unfinished ones are loaded */
    uint64_t after = 0;
    const size_t page = 512;
    for (;;) {
        uint64_t ids[512];
        size_t n = 0;
        tn_log_wf_iter *it;
        tn_err err = tn_log_wf_iter_open(tn_evlog_store(e->log), &it);
        if (err)
            return tn_errmsg_set(msg, err, "cannot read the store: %s", tn_strerror(err));
        bool more = false;
        tn_wf_proj p;
        for (err = tn_log_wf_iter_seek(it, after + 1, &p);
             err == TN_OK || err == TN_ERR_CORRUPT; err = tn_log_wf_iter_next(it, &p)) {
            if (n == page) {
                more = true;
                break;
            }
            if (err == TN_ERR_CORRUPT)
                continue;
            after = p.id;
            if (!tn_sm_workflow.final[p.state])
                ids[n++] = p.id;
        }
        tn_log_wf_iter_close(it);
        for (size_t i = 0; i < n; i++) {
            wf_run *w = load_wf(e, ids[i], msg);
            if (!w)
                return TN_ERR_CORRUPT;
            e->stats.recovered_workflows++;
        }
        if (!more)
            break;
    }
    /* then take each over (the live ones) or let it decide what it needs: timers,
     * dispatches, failovers; loading a sub-workflow's child may grow the map, so the ids
     * are taken first */
    size_t nw = 0;
    uint64_t *ids = malloc((e->wfs.len + 1) * sizeof(uint64_t));
    if (!ids)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < e->wfs.cap; i++)
        if (e->wfs.slots[i].key)
            ids[nw++] = e->wfs.slots[i].key;
    for (size_t i = 0; i < nw; i++) {
        wf_run *w = eng_wf(e, ids[i]);
        if (w)
            sched_takeover(e, w);
    }
    free(ids);
    return TN_OK;
}

tn_err tn_engine_open(const tn_engine_opts *opts, tn_engine **out, tn_errmsg *msg)
{
    tn_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    tn_map_init(&e->wfs);
    tn_map_init(&e->def_by_key);
    tn_map_init(&e->def_by_ptr);
    tn_map_init_dense(&e->tasks);
    e->ex = opts->executor;
    snprintf(e->actor, sizeof(e->actor), "master:%s",
             opts->master_id ? opts->master_id : "local");
    e->virtual_clock = opts->virtual_clock;
    e->vnow = opts->start_ns ? opts->start_ns : tn_now_ns();
    static const double secs[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                  0.05,   0.1,    0.25,  0.5,    1,     2.5,  10};
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
    tn_prom_hist_init(&e->metrics.commit_seconds, secs, TN_ARRAY_LEN(secs));
    tn_prom_hist_init(&e->metrics.dispatch_seconds, secs, TN_ARRAY_LEN(secs));
    tn_prom_hist_init(&e->metrics.batch_events, sizes, TN_ARRAY_LEN(sizes));
    static const double late[] = {0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600};
    tn_prom_hist_init(&e->metrics.sched_lateness_seconds, late, TN_ARRAY_LEN(late));
    e->max_batch = opts->max_batch ? opts->max_batch : 4096;
    tn_err err = tn_evlog_open(opts->data_dir, &opts->log, &e->log, msg);
    if (err)
        goto fail;
    if ((err = eng_alert_defaults(e, opts->alerts, opts->nalerts))) {
        tn_errmsg_set(msg, err, "out of memory");
        goto fail;
    }
    if ((err = recover(e, msg)) || (err = esched_open(e, msg)))
        goto fail;
    /* what recovery decided (failovers, dispatches) is committed by the first step,
     * once the caller has bound its executor */
    *out = e;
    return TN_OK;
fail:
    tn_engine_close(e);
    return err;
}

static tn_err settle(tn_engine *e, tn_errmsg *msg);

void tn_engine_close(tn_engine *e)
{
    if (!e)
        return;
    settle(e, NULL); /* a batch in flight ends as it would have */
    for (size_t i = 0; i < e->wfs.cap; i++)
        if (e->wfs.slots[i].key)
            wf_run_free(e, e->wfs.slots[i].val);
    tn_map_fini(&e->wfs);
    tn_map_fini(&e->tasks);
    esched_close(e);
    eng_alert_close(e);
    defs_pending_end(e, false);
    while (e->defs) {
        def_entry *d = e->defs;
        e->defs = d->next;
        tn_def_free(d->def);
        free(d);
    }
    tn_map_fini(&e->def_by_key);
    tn_map_fini(&e->def_by_ptr);
    while (e->groups) {
        tgroup *g = e->groups;
        e->groups = g->next;
        free(g->wait);
        free(g);
    }
    for (input *in = e->in_head, *next; in; in = next) {
        next = in->next;
        free(in);
    }
    for (input *in = e->in_free, *next; in; in = next) {
        next = in->next;
        free(in);
    }
    free(e->timers);
    free(e->cb_timers);
    free(e->cb_spare);
    free(e->cbq);
    while (e->lanes) {
        lane *l = e->lanes;
        e->lanes = l->next;
        free(l->q);
        free(l->why);
        free(l);
    }
    free(e->later);
    free(e->more);
    free(e->fx);
    free(e->touched);
    free(e->cmds_batch);
    free(e->takeover);
    free(e->obs);
    free(e->fl.fx);
    free(e->fl.touched);
    free(e->fl.obs);
    free(e->fl.cmds);
    tn_evlog_close(e->log);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

tn_evlog *tn_engine_log(tn_engine *e)
{
    return e->log;
}

/* ------------------------------------------------------------------------------ */
/* inputs */

void tn_engine_submit(tn_engine *e, tn_cmd *cmd)
{
    cmd->done = false;
    cmd->err = TN_OK;
    cmd->msg[0] = 0;
    cmd->next = NULL;
    pthread_mutex_lock(&e->mu);
    if (e->cmd_tail)
        e->cmd_tail->next = cmd;
    else
        e->cmd_head = cmd;
    e->cmd_tail = cmd;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* A report's input is one block: the struct, its output pointers and its strings.
 * Blocks of the common size (no outputs, short strings) are kept on a free list; sized
 * tight, as a wide workflow queues one per task at once. */
#define INPUT_SMALL    ((sizeof(input) + 64 + 15) & ~(size_t)15)
#define INPUT_FREE_MAX 4096

static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static char *put_str(char **p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = memcpy(*p, s, n);
    *p += n;
    return d;
}

static input *input_alloc(tn_engine *e, size_t size)
{
    if (size <= INPUT_SMALL) {
        pthread_mutex_lock(&e->mu);
        input *in = e->in_free;
        if (in) {
            e->in_free = in->next;
            e->nin_free--;
        }
        pthread_mutex_unlock(&e->mu);
        return in ? in : malloc(INPUT_SMALL);
    }
    return malloc(size);
}

void tn_engine_report(tn_engine *e, const tn_report *r)
{
    size_t strs = slen(r->worker) + slen(r->reason) + slen(r->containment) + slen(r->hooks);
    for (uint32_t i = 0; i < r->nout; i++)
        strs += slen(r->out_keys[i]) + slen(r->out_values[i]);
    size_t size = sizeof(input) + r->nout * 2 * sizeof(char *) + strs;
    input *in = input_alloc(e, size);
    if (!in) {
        tn_error("engine", "msg=\"out of memory queueing a report\" task=%" PRIu64, r->task);
        return;
    }
    memset(in, 0, sizeof(*in));
    in->small = size <= INPUT_SMALL;
    in->r = *r;
    in->out_keys = (char **)(in + 1);
    in->out_values = in->out_keys + r->nout;
    char *p = (char *)(in->out_values + r->nout);
    in->worker = put_str(&p, r->worker);
    in->reason = put_str(&p, r->reason);
    in->containment = put_str(&p, r->containment);
    in->hooks = put_str(&p, r->hooks);
    for (uint32_t i = 0; i < r->nout; i++) {
        in->out_keys[i] = put_str(&p, r->out_keys[i]);
        in->out_values[i] = put_str(&p, r->out_values[i]);
    }
    in->r.worker = in->worker;
    in->r.reason = in->reason;
    in->r.containment = in->containment;
    in->r.hooks = in->hooks;
    in->r.out_keys = (const char *const *)in->out_keys;
    in->r.out_values = (const char *const *)in->out_values;
    pthread_mutex_lock(&e->mu);
    if (e->in_tail)
        e->in_tail->next = in;
    else
        e->in_head = in;
    e->in_tail = in;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* Give a batch's inputs back: small ones to the free list (up to a bound). */
static void inputs_free(tn_engine *e, input *ins)
{
    input *keep = NULL, *tail = NULL;
    size_t nkeep = 0;
    for (input *in = ins, *next; in; in = next) {
        next = in->next;
        if (in->small && nkeep < INPUT_FREE_MAX) {
            in->next = keep;
            keep = in;
            tail = tail ? tail : in;
            nkeep++;
        } else {
            free(in);
        }
    }
    if (!keep)
        return;
    pthread_mutex_lock(&e->mu);
    if (e->nin_free < INPUT_FREE_MAX) {
        tail->next = e->in_free;
        e->in_free = keep;
        e->nin_free += nkeep;
        keep = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    while (keep) {
        input *n = keep->next;
        free(keep);
        keep = n;
    }
}

static void cmd_fail(tn_cmd *c, tn_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cmd_fail(tn_cmd *c, tn_err err, const char *fmt, ...)
{
    c->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------ */
/* commands */

static tn_err cmd_apply_def(tn_engine *e, tn_cmd *c)
{
    tn_def *def = NULL;
    tn_errmsg m;
    if (tn_def_decode(c->def_bytes, c->def_len, &def, &m)) {
        cmd_fail(c, TN_ERR_INVAL, "definition refused: %s", m.text);
        return TN_OK;
    }
    uint32_t version = 0;
    tn_buf latest = {0};
    tn_err err = def_latest_version(e, def->name, &version, &latest);
    if (err && err != TN_ERR_NOENT) {
        tn_def_free(def);
        tn_buf_free(&latest);
        return err;
    }
    if (version && latest.size == c->def_len &&
        memcmp(latest.data, c->def_bytes, c->def_len) == 0) {
        c->unchanged = true;
        c->out_id = version;
        snprintf(c->msg, sizeof(c->msg), "%s: unchanged (version %u)", def->name, version);
    } else {
        tn_event ev;
        eng_event(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_DEF_APPLIED, 0, 0);
        tn_event_set_str(&ev, "name", def->name);
        tn_event_set_int(&ev, "version", version + 1);
        tn_event_set_bin(&ev, "def", c->def_bytes, c->def_len);
        tn_event_set_int(&ev, "tasks", def->n_tasks);
        if ((err = emit(e, &ev, NULL)) == TN_OK) {
            c->out_id = version + 1;
            snprintf(c->msg, sizeof(c->msg), "%s: version %u", def->name, version + 1);
            /* a schedule block sets the workflow's schedule, as `tern schedule set` does */
            if (def->schedule)
                err = esched_apply_def(e, def->name, def->schedule, c);
            if (!err)
                def = def_pending_add(e, def, version + 1); /* the first start needs it */
        }
    }
    tn_def_free(def);
    tn_buf_free(&latest);
    return err;
}

/* Where an instance comes from: a fire or a backfill, and a pre-allocated id. */
typedef struct origin {
    uint64_t id;
    const char *schedule;
    uint64_t backfill;
} origin;

static void submit_attrs(tn_event *ev, const tn_cmd *c, const origin *o)
{
    if (o && o->schedule)
        tn_event_set_str(ev, "schedule", o->schedule);
    if (o && o->backfill)
        tn_event_set_int(ev, "backfill", (int64_t)o->backfill);
    if (c->tz && *c->tz)
        tn_event_set_str(ev, "tz", c->tz);
    if (c->priority && *c->priority)
        tn_event_set_str(ev, "priority", c->priority);
    if (c->failure_strategy && *c->failure_strategy)
        tn_event_set_str(ev, "failure_strategy", c->failure_strategy);
    if (c->worker_group && *c->worker_group)
        tn_event_set_str(ev, "worker_group", c->worker_group);
}

static tn_err new_instance(tn_engine *e, const char *name, uint32_t version, tn_cmd *c,
                           const tn_kv *inherited, uint64_t parent_wf, uint64_t parent_task,
                           const origin *o, wf_run **out)
{
    tn_buf scratch = {0}, scratch2 = {0};
    tn_event ev;
    uint64_t id = o && o->id ? o->id : tn_evlog_new_wf_id(e->log);
    eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, id, 0);
    tn_event_set_str(&ev, "name", name);
    tn_event_set_int(&ev, "version", version);
    tn_event_set_int(&ev, "run", 1);
    tn_err err = TN_OK;
    char from[4096];
    size_t fl = 0;
    from[0] = 0;
    if (c) {
        if (c->mode)
            tn_event_set_int(&ev, "mode", c->mode);
        if (c->dry_run)
            tn_event_set_int(&ev, "dry_run", 1);
        if (c->sched_ns)
            tn_event_set_int(&ev, "sched", c->sched_ns);
        submit_attrs(&ev, c, o);
        for (uint32_t i = 0; i < c->nfrom; i++) {
            int n = snprintf(from + fl, sizeof(from) - fl, "%s%s", i ? "," : "", c->from[i]);
            if (n < 0 || (size_t)n >= sizeof(from) - fl)
                return TN_ERR_TOOBIG;
            fl += (size_t)n;
        }
        if (fl)
            tn_event_set_str(&ev, "from", from);
        if (c->nparams) {
            tn_kv *kv = tn_kv_new();
            for (uint32_t i = 0; kv && i < c->nparams; i++)
                tn_kv_set(kv, c->param_keys[i], c->param_values[i]);
            err = kv ? eng_kv_attr(&ev, "params", kv, &scratch) : TN_ERR_NOMEM;
            tn_kv_free(kv);
        }
    } else {
        tn_event_set_int(&ev, "sched", (int64_t)0);
    }
    if (!err && inherited)
        err = eng_kv_attr(&ev, "inherited", inherited, &scratch2);
    if (parent_wf) {
        tn_event_set_int(&ev, "parent_wf", (int64_t)parent_wf);
        tn_event_set_int(&ev, "parent_task", (int64_t)parent_task);
    }
    if (!err)
        err = emit(e, &ev, NULL);
    wf_run *w = NULL;
    if (!err) {
        w = wf_run_from_submit(e, &ev);
        if (!w || tn_map_put(&e->wfs, w->id, w)) {
            wf_run_free(e, w);
            err = TN_ERR_NOMEM;
        } else {
            eng_touch(e, w);
            sched_fold_wf(e, w, &ev);
        }
    }
    tn_buf_free(&scratch);
    tn_buf_free(&scratch2);
    if (!err)
        *out = w;
    return err;
}

tn_err eng_new_child(tn_engine *e, const char *name, const tn_kv *inherited, task_run *parent,
                     wf_run **out);
tn_err eng_new_child(tn_engine *e, const char *name, const tn_kv *inherited, task_run *parent,
                     wf_run **out)
{
    uint32_t version;
    tn_err err = def_latest_version(e, name, &version, NULL);
    if (err)
        return err;
    err = new_instance(e, name, version, NULL, inherited, parent->w->id, parent->id, NULL, out);
    if (!err)
        err = sched_admit(e, *out);
    return err;
}

static bool start_overrides_valid(tn_cmd *c)
{
    tn_def_priority pr;
    tn_def_failure_strategy fs;
    tn_tz *tz = NULL;
    tn_errmsg m = {{0}};
    if (c->priority && *c->priority && tn_def_priority_parse(c->priority, &pr)) {
        cmd_fail(c, TN_ERR_INVAL, "unknown priority \"%.32s\" (allowed: %s)", c->priority,
                 tn_def_priority_allowed());
        return false;
    }
    if (c->failure_strategy && *c->failure_strategy &&
        tn_def_failure_strategy_parse(c->failure_strategy, &fs)) {
        cmd_fail(c, TN_ERR_INVAL, "unknown failure strategy \"%.32s\" (allowed: %s)",
                 c->failure_strategy, tn_def_failure_strategy_allowed());
        return false;
    }
    if (c->worker_group && *c->worker_group && !tn_def_name_valid(c->worker_group)) {
        cmd_fail(c, TN_ERR_INVAL, "bad worker group name \"%.64s\"", c->worker_group);
        return false;
    }
    if (c->tz && *c->tz && tn_tz_open(c->tz, &tz, &m)) {
        cmd_fail(c, TN_ERR_INVAL, "%s", m.text);
        return false;
    }
    tn_tz_free(tz);
    return true;
}
static tn_err start_checked(tn_engine *e, tn_cmd *c, uint32_t version);

static tn_err cmd_start(tn_engine *e, tn_cmd *c)
{
    if (!c->workflow || !tn_def_name_valid(c->workflow)) {
        cmd_fail(c, TN_ERR_INVAL, "no workflow name given, or not a valid name");
        return TN_OK;
    }
    uint32_t version;
    tn_err err = def_latest_version(e, c->workflow, &version, NULL);
    if (err == TN_ERR_NOENT) {
        cmd_fail(c, TN_ERR_NOENT,
                 "no workflow named \"%s\": apply its definition first "
                 "(`tern def apply FILE`)",
                 c->workflow);
        return TN_OK;
    }
    if (err)
        return err;
    tn_def *def;
    if ((err = def_load(e, c->workflow, version, &def)))
        return err;
    for (uint32_t i = 0; i < c->nfrom; i++)
        if (tn_def_task_find(def, c->from[i]) < 0) {
            cmd_fail(c, TN_ERR_INVAL, "workflow \"%s\" has no task \"%s\"", c->workflow,
                     c->from[i]);
            def_unref(e, def);
            return TN_OK;
        }
    err = start_checked(e, c, version);
    def_unref(e, def); /* after the instance took its own reference */
    return err;
}

/* The rest of a start, its definition pinned by the caller. */
static tn_err start_checked(tn_engine *e, tn_cmd *c, uint32_t version)
{
    tn_err err;
    if (c->mode != TN_MODE_ALL && c->nfrom == 0) {
        cmd_fail(c, TN_ERR_INVAL, "mode %s needs start tasks (--from TASK)",
                 tn_start_mode_name(c->mode));
        return TN_OK;
    }
    /* --param system.biz.date=... sets the run's business date: recorded as its schedule
     * time, which every built-in date and $[...] of the run derives from */
    bool biz = false;
    tn_errmsg bm = {{0}};
    int64_t sched = 0;
    if (tn_params_biz_time(c->param_keys, c->param_values, c->nparams, eng_tz_name(), &sched,
                           &biz, &bm)) {
        cmd_fail(c, TN_ERR_INVAL, "%s", bm.text);
        return TN_OK;
    }
    if (biz)
        c->sched_ns = sched;
    for (uint32_t i = 0; i < c->nparams; i++)
        if (!strcmp(c->param_keys[i], TN_PARAM_TENANT) &&
            !tn_def_tenant_valid(c->param_values[i])) {
            cmd_fail(c, TN_ERR_INVAL,
                     "bad tenant \"%.64s\": an OS user name of 1..32 characters "
                     "[A-Za-z0-9._-], not starting with '-'",
                     c->param_values[i]);
            return TN_OK;
        }
    if (!start_overrides_valid(c))
        return TN_OK;
    wf_run *w;
    if ((err = new_instance(e, c->workflow, version, c, NULL, 0, 0, NULL, &w)))
        return err;
    c->out_id = w->id;
    snprintf(c->msg, sizeof(c->msg), "started %s instance %" PRIu64, c->workflow, w->id);
    return sched_admit(e, w);
}

tn_err eng_start(tn_engine *e, tn_cmd *c, uint64_t id, const char *schedule, uint64_t backfill,
                 wf_run **out)
{
    uint32_t version;
    tn_err err = def_latest_version(e, c->workflow, &version, NULL);
    if (err)
        return err;
    origin o = {id, schedule, backfill};
    wf_run *w;
    if ((err = new_instance(e, c->workflow, version, c, NULL, 0, 0, &o, &w)))
        return err;
    if (out)
        *out = w;
    return sched_admit(e, w);
}

static wf_run *cmd_wf(tn_engine *e, tn_cmd *c)
{
    tn_wf_proj p;
    if (tn_evlog_wf(e->log, c->id, &p) != TN_OK) {
        cmd_fail(c, TN_ERR_NOENT, "no workflow instance %" PRIu64, c->id);
        return NULL;
    }
    tn_errmsg m;
    wf_run *w = eng_load_wf(e, c->id, &m);
    if (!w)
        cmd_fail(c, TN_ERR_CORRUPT, "%s", m.text);
    return w;
}

static task_run *cmd_task(tn_engine *e, tn_cmd *c)
{
    task_run *t = tn_map_get(&e->tasks, c->id);
    if (t)
        return t;
    tn_task_proj p;
    if (tn_evlog_task(e->log, c->id, &p) != TN_OK) {
        cmd_fail(c, TN_ERR_NOENT, "no task instance %" PRIu64, c->id);
        return NULL;
    }
    tn_errmsg m;
    wf_run *w = eng_load_wf(e, p.wf, &m);
    if (!w) {
        cmd_fail(c, TN_ERR_CORRUPT, "%s", m.text);
        return NULL;
    }
    t = tn_map_get(&e->tasks, c->id);
    if (!t)
        cmd_fail(c, TN_ERR_NOENT,
                 "task instance %" PRIu64 " belongs to an earlier run of "
                 "workflow %" PRIu64 "; it cannot change any more",
                 c->id, p.wf);
    return t;
}

/* The transition each instance command asks for: its legality is the spec's, looked up
 * once in the generated table (cmd_legal), never re-coded here. RESUME is RECOVER from
 * the user's side: what the spec allows for one it allows for the other. */
static const struct {
    uint8_t machine, event;
} cmd_events[] = {
    [TN_CMD_PAUSE] = {TN_MACHINE_WORKFLOW, TN_WF_E_PAUSE},
    [TN_CMD_RESUME] = {TN_MACHINE_WORKFLOW, TN_WF_E_RECOVER},
    [TN_CMD_STOP] = {TN_MACHINE_WORKFLOW, TN_WF_E_STOP},
    [TN_CMD_RERUN] = {TN_MACHINE_WORKFLOW, TN_WF_E_RERUN},
    [TN_CMD_RECOVER] = {TN_MACHINE_WORKFLOW, TN_WF_E_RECOVER},
    [TN_CMD_FORCE_SUCCESS] = {TN_MACHINE_TASK, TN_TASK_E_FORCE_SUCCESS},
    [TN_CMD_KILL_TASK] = {TN_MACHINE_TASK, TN_TASK_E_KILL},
};

/* Whether the spec allows the command's event in the instance's state. When it does not,
 * the command fails naming the state, the event and the events that state accepts. */
static bool cmd_legal(tn_cmd *c, uint64_t id, unsigned state)
{
    const tn_sm *m = tn_sm_get(cmd_events[c->kind].machine);
    unsigned event = cmd_events[c->kind].event;
    if (tn_sm_next(m, state, event).to != TN_SM_ILLEGAL)
        return true;
    char acc[512];
    size_t n = 0;
    acc[0] = 0;
    for (unsigned ev = 0; ev < m->nevents && n < sizeof(acc); ev++) {
        if (tn_sm_next(m, state, ev).to == TN_SM_ILLEGAL)
            continue;
        int k =
            snprintf(acc + n, sizeof(acc) - n, "%s%s", n ? ", " : "", tn_sm_event_name(m, ev));
        n += k > 0 ? (size_t)k : 0;
    }
    cmd_fail(c, TN_ERR_ILLEGAL,
             "%s %" PRIu64 " is %s: the %s state machine does not allow "
             "%s there (%s accepts: %s)",
             m->name, id, tn_sm_state_name(m, state), m->name, tn_sm_event_name(m, event),
             tn_sm_state_name(m, state), n ? acc : "nothing");
    return false;
}

/* pause, resume, stop, rerun, recover: one workflow's transition */
static tn_err cmd_wf_event(tn_engine *e, tn_cmd *c, wf_run **wp)
{
    wf_run *w = *wp = cmd_wf(e, c);
    if (!w || !cmd_legal(c, w->id, w->state))
        return TN_OK;
    switch (c->kind) {
    case TN_CMD_PAUSE: return sched_pause_wf(e, w);
    case TN_CMD_STOP: return sched_stop_wf(e, w, "the workflow was stopped");
    case TN_CMD_RERUN: {
        w->loaded_final = false;
        tn_event ev;
        eng_event(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_RERUN, w->id, 0);
        tn_event_set_int(&ev, "run", w->run + 1);
        tn_err err = eng_emit_wf(e, w, 0, &ev);
        return err ? err : sched_admit(e, w);
    }
    default: /* RESUME, RECOVER */ w->loaded_final = false; return sched_recover_wf(e, w);
    }
}

/* force-success, kill: one task's transition */
static tn_err cmd_task_event(tn_engine *e, tn_cmd *c, task_run **tp)
{
    task_run *t = *tp = cmd_task(e, c);
    /* a task's workflow comes back from its takeover first: what follows a task's end
     * (TASK_FINISHED, the failure strategy) is for a workflow that runs */
    tn_err err = t && t->w->state == TN_WF_S_FAILOVER ? sched_takeover_end(e, t->w) : TN_OK;
    if (err || !t || !cmd_legal(c, t->id, t->state))
        return err;
    if (c->kind == TN_CMD_KILL_TASK)
        return sched_kill_task(e, t, NULL); /* its reason: "killed by ACTOR" */
    err = eng_emit_task(e, t, TN_TASK_E_FORCE_SUCCESS, NULL);
    return err ? err : sched_task_finished(e, t);
}

static tn_err cmd_taskgroup_set(tn_engine *e, tn_cmd *c)
{
    if (!c->name || !tn_def_name_valid(c->name) || c->slots < 0) {
        cmd_fail(c, TN_ERR_INVAL, "a task group needs a valid name and slots >= 0");
        return TN_OK;
    }
    tn_event ev;
    eng_event(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_TASKGROUP_SET, 0, 0);
    tn_event_set_str(&ev, "name", c->name);
    tn_event_set_int(&ev, "slots", c->slots);
    tn_err err = emit(e, &ev, NULL);
    if (err)
        return err;
    tgroup *g = eng_group(e, c->name);
    if (g)
        g->slots = c->slots;
    snprintf(c->msg, sizeof(c->msg), "task group %s: %lld slots", c->name, (long long)c->slots);
    return TN_OK;
}

static tn_err cmd_env_set(tn_engine *e, tn_cmd *c)
{
    if (!c->name || !tn_def_name_valid(c->name) || !c->text) {
        cmd_fail(c, TN_ERR_INVAL, "an environment needs a valid name and a text");
        return TN_OK;
    }
    tn_event ev;
    eng_event(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_ENV_SET, 0, 0);
    tn_event_set_str(&ev, "name", c->name);
    tn_event_set_str(&ev, "text", c->text);
    tn_err err = emit(e, &ev, NULL);
    if (!err)
        snprintf(c->msg, sizeof(c->msg), "environment %s: %zu bytes", c->name, strlen(c->text));
    return err;
}

static tn_err run_cmd(tn_engine *e, tn_cmd *c)
{
    wf_run *w = NULL;
    task_run *t = NULL;
    tn_err err = TN_OK;
    if (e->refuse && (c->kind == TN_CMD_START || c->kind == TN_CMD_APPLY_DEF ||
                      c->kind == TN_CMD_RERUN || c->kind == TN_CMD_RECOVER)) {
        cmd_fail(c, TN_ERR_FULL, "the store is full: new work is refused (%s)", e->msg.text);
        return TN_OK;
    }
    e->cur_actor = c->actor ? c->actor : "user:local";
    switch (c->kind) {
    case TN_CMD_APPLY_DEF: err = cmd_apply_def(e, c); break;
    case TN_CMD_START: err = cmd_start(e, c); break;
    case TN_CMD_PAUSE:
    case TN_CMD_RESUME:
    case TN_CMD_STOP:
    case TN_CMD_RERUN:
    case TN_CMD_RECOVER: err = cmd_wf_event(e, c, &w); break;
    case TN_CMD_FORCE_SUCCESS:
    case TN_CMD_KILL_TASK: err = cmd_task_event(e, c, &t); break;
    case TN_CMD_TASKGROUP_SET: err = cmd_taskgroup_set(e, c); break;
    case TN_CMD_ENV_SET: err = cmd_env_set(e, c); break;
    case TN_CMD_SCHED_SET:
    case TN_CMD_SCHED_PAUSE:
    case TN_CMD_SCHED_RESUME:
    case TN_CMD_SCHED_RM:
    case TN_CMD_SCHED_TRIGGER:
    case TN_CMD_BACKFILL:
    case TN_CMD_BACKFILL_STOP:
    case TN_CMD_BACKFILL_RESUME: err = esched_cmd(e, c); break;
    case TN_CMD_ALERT_RESULT: err = eng_alert_cmd(e, c); break;
    case TN_CMD_WHY: {
        task_run *q = tn_map_get(&e->tasks, c->id);
        snprintf(c->msg, sizeof(c->msg), "%s", q ? eng_task_why(e, q) : "");
        break;
    }
    default: cmd_fail(c, TN_ERR_INVAL, "unknown command %d", (int)c->kind);
    }
    if (w)
        eng_touch(e, w);
    if (t)
        eng_touch(e, t->w);
    e->cur_actor = NULL;
    return err;
}

/* ------------------------------------------------------------------------------ */
/* the step */

/* Merge the sorted a[na] and b[nb] into out by due time, a's first on a tie (stable). */
static void merge_by_due(const timer *a, size_t na, const timer *b, size_t nb, timer *out)
{
    size_t ia = 0, ib = 0, k = 0;
    while (ia < na && ib < nb)
        out[k++] = b[ib].due < a[ia].due ? b[ib++] : a[ia++];
    while (ia < na)
        out[k++] = a[ia++];
    while (ib < nb)
        out[k++] = b[ib++];
}

/* Sort callback timers by due time, equal ones in arrival order; false when out of
 * memory (nothing moved). They usually arrive sorted already. */
static bool sort_by_due(timer *a, size_t n)
{
    size_t i = 1;
    while (i < n && a[i - 1].due <= a[i].due)
        i++;
    if (i >= n)
        return true;
    timer *tmp = malloc(n * sizeof(timer));
    if (!tmp)
        return false;
    /* bottom-up merge sort: stable */
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            merge_by_due(a + lo, mid - lo, a + mid, hi - mid, tmp + lo);
        }
        memcpy(a, tmp, n * sizeof(timer));
    }
    free(tmp);
    return true;
}

static void fire_timer(tn_engine *e, timer *tm)
{
    if (tm->kind == TIMER_CALLBACK)
        tm->fn(e, tm->arg);
    else if (tm->kind == TIMER_SCHED)
        esched_tick(e);
    else
        sched_timer(e, tm);
}

/* Merge the sorted b[nb] after the queue's sorted rest (the queue's first on a tie: it
 * came first); false when out of memory (nothing changed). */
static bool cbq_merge(tn_engine *e, const timer *b, size_t nb)
{
    size_t na = e->cbq_n;
    timer *m = malloc((na + nb) * sizeof(timer));
    if (!m)
        return false;
    merge_by_due(e->cbq + e->cbq_head, na, b, nb, m);
    free(e->cbq);
    e->cbq = m;
    e->capcbq = na + nb;
    e->cbq_head = 0;
    e->cbq_n = na + nb;
    return true;
}

/* Move the callback timers other threads added into the engine's queue of them, kept
 * in due order. */
static void cbq_take(tn_engine *e)
{
    pthread_mutex_lock(&e->mu);
    timer *b = e->cb_timers;
    size_t nb = e->ncb, capb = e->capcb;
    e->cb_timers = e->cb_spare;
    e->capcb = e->capspare;
    e->ncb = 0;
    pthread_mutex_unlock(&e->mu);
    bool ok = sort_by_due(b, nb);
    if (ok && nb && e->cbq_n == 0) { /* the usual case: adopt the buffer */
        TN_SWAP(e->cbq, b);
        TN_SWAP(e->capcbq, capb);
        e->cbq_head = 0;
        e->cbq_n = nb;
    } else if (ok && nb && b[0].due >= e->cbq[e->cbq_head + e->cbq_n - 1].due) {
        memmove(e->cbq, e->cbq + e->cbq_head, e->cbq_n * sizeof(timer));
        e->cbq_head = 0;
        ok = tn_grow((void **)&e->cbq, &e->capcbq, e->cbq_n + nb, sizeof(timer));
        if (ok) {
            memcpy(e->cbq + e->cbq_n, b, nb * sizeof(timer));
            e->cbq_n += nb;
        }
    } else if (ok && nb) {
        ok = cbq_merge(e, b, nb);
    }
    if (!ok) /* out of memory: the heap takes them, as it took every timer once */
        for (size_t i = 0; i < nb; i++)
            timer_push(e, &b[i]);
    e->cb_spare = b; /* the engine thread's alone: other threads use cb_timers */
    e->capspare = capb;
}

/* Fire what is due, earliest first (the heap's first on a tie). Callback timers (an
 * in-process executor's task ends: up to a whole batch of them a step) fire from their
 * own queue, merged with the heap, rather than through it: a heap of 100k timers costs
 * a chain of cache misses per pop. */
static void fire_due_timers(tn_engine *e, size_t *n)
{
    cbq_take(e);
    int64_t now = eng_now(e);
    while (*n < e->max_batch) {
        bool heap = e->ntimers && e->timers[0].due <= now;
        const timer *q = e->cbq_n ? &e->cbq[e->cbq_head] : NULL;
        bool list = q && q->due <= now;
        timer tm;
        if (heap && (!list || e->timers[0].due <= q->due)) {
            tm = e->timers[0];
            e->timers[0] = e->timers[--e->ntimers];
            heap_down(e->timers, e->ntimers, 0);
        } else if (list) {
            tm = *q;
            e->cbq_head++;
            e->cbq_n--;
        } else {
            break;
        }
        fire_timer(e, &tm);
        (*n)++;
    }
}

/* After a failed commit: forget what the batch did and reload the touched instances
 * from the store, which holds the truth. */
static void rollback(tn_engine *e)
{
    uint64_t *ids = malloc(e->ntouched * sizeof(uint64_t) + 1);
    size_t n = 0;
    for (size_t i = 0; i < e->ntouched; i++) {
        wf_run *w = e->touched[i];
        if (ids)
            ids[n++] = w->id;
        tn_map_del(&e->wfs, w->id);
        wf_run_free(e, w);
    }
    e->ntouched = 0;
    e->nfx = 0;
    for (size_t i = 0; i < n; i++) {
        tn_wf_proj p;
        if (tn_evlog_wf(e->log, ids[i], &p) == TN_OK && !tn_sm_workflow.final[p.state]) {
            tn_errmsg m;
            wf_run *w = load_wf(e, ids[i], &m);
            if (w)
                sched_recovered(e, w);
        }
    }
    free(ids);
    esched_rollback(e);
}

/* What a shell task runs, prepared before anything is spawned: its effective params, the
 * command after substitution and its environment's text. Any error here is the task's:
 * it fails with `why` and nothing runs (a command with its params left empty, or run
 * without the environment it names, is the wrong command). */
static tn_err prepare_dispatch(tn_engine *e, task_run *t, tn_kv **params, char **cmd,
                               char **prelude, char *why, size_t wl)
{
    const tn_def_task *node = &t->w->def->tasks[t->node];
    tn_errmsg m = {{0}};
    tn_err err = task_params(e, t, params, &m);
    if (err) {
        snprintf(why, wl, "param error: %s", m.text[0] ? m.text : tn_strerror(err));
        return err;
    }
    if (node->command) {
        tn_param_ctx pc = eng_param_ctx(e, t);
        if ((err = tn_params_subst(node->command, *params, &pc, 0, cmd, &m))) {
            snprintf(why, wl, "param error in the command: %s",
                     m.text[0] ? m.text : tn_strerror(err));
            return err;
        }
    }
    if (node->environment) {
        err = tn_log_env_get(tn_evlog_store(e->log), node->environment, prelude);
        if (err == TN_ERR_NOENT)
            snprintf(why, wl,
                     "environment \"%s\" is not defined: define it with `tern env set %s "
                     "FILE`",
                     node->environment, node->environment);
        else if (err)
            snprintf(why, wl, "environment \"%s\" could not be read: %s", node->environment,
                     tn_strerror(err));
        return err;
    }
    return TN_OK;
}

/* Hand one attempt to the executor, or fail it with the reason it cannot run. The failure
 * is a report like an executor's, so it goes through the tables and the fencing. */
static void dispatch_one(tn_engine *e, wf_run *w, task_run *t)
{
    const tn_def_task *node = &w->def->tasks[t->node];
    tn_kv *params = NULL;
    char *cmd = NULL, *prelude = NULL, why[700];
    if (prepare_dispatch(e, t, &params, &cmd, &prelude, why, sizeof(why))) {
        tn_warn("engine", "msg=\"task not started\" task=%" PRIu64 " why=\"%s\"", t->id, why);
        tn_report r = {.kind = TN_REPORT_RESULT,
                       .wf = w->id,
                       .task = t->id,
                       .attempt = t->attempt,
                       .success = false,
                       .exit_code = -1,
                       .reason = why};
        tn_engine_report(e, &r);
        free(prelude);
        free(cmd);
        tn_kv_free(params);
        return;
    }
    /* the tenant: `tern start --tenant` (the system.tenant param, inherited by
     * sub-workflows), else the definition's */
    const char *tenant = tn_kv_get(params, TN_PARAM_TENANT);
    if (!tenant || !*tenant)
        tenant = w->def->tenant;
    uint32_t np = params ? tn_kv_len(params) : 0;
    const char *kbuf[32], *vbuf[32]; /* most tasks have a few params: no allocation */
    const char **keys = np < 32 ? kbuf : calloc(np + 1, sizeof(char *));
    const char **vals = np < 32 ? vbuf : calloc(np + 1, sizeof(char *));
    for (uint32_t j = 0; keys && vals && j < np; j++) {
        keys[j] = tn_kv_key(params, j);
        vals[j] = tn_kv_value(params, j);
    }
    tn_dispatch_req req = {.wf = w->id,
                           .task = t->id,
                           .attempt = t->attempt,
                           .def = w->def,
                           .node = node,
                           .command = cmd ? cmd : node->command,
                           .env_prelude = prelude,
                           .param_keys = keys,
                           .param_values = vals,
                           .nparams = keys && vals ? np : 0,
                           .deadline_ns =
                               node->timeout_ms && t->started_at ?
                                   t->started_at + (int64_t)node->timeout_ms * 1000000 :
                                   0,
                           .priority = (uint8_t)(w->priority * 8 + node->priority),
                           .tenant = tenant,
                           .worker_group = eng_worker_group(w, node)};
    e->ex.ops->dispatch(e->ex.self, &req);
    free(prelude);
    if (keys != kbuf)
        free(keys);
    if (vals != vbuf)
        free(vals);
    free(cmd);
    tn_kv_free(params);
}

static void release_effects(tn_engine *e)
{
    for (size_t i = 0; i < e->nfx; i++) {
        effect *f = &e->fx[i];
        if (f->kind == FX_KILL_STALE) {
            e->ex.ops->kill(e->ex.self, f->wf, f->task, f->attempt, 0);
            continue;
        }
        wf_run *w = eng_wf(e, f->wf);
        task_run *t = w && f->node < w->def->n_tasks ? &w->t[f->node] : NULL;
        if (!t || t->id != f->task || t->attempt != f->attempt)
            continue;
        if (f->kind == FX_DISPATCH) {
            if (t->state != TN_TASK_S_DISPATCH || !(t->flags & TF_SENT))
                continue;
            dispatch_one(e, w, t);
        } else if (f->kind == FX_KILL) {
            e->ex.ops->kill(e->ex.self, w->id, t->id, t->attempt,
                            w->def->tasks[t->node].kill_grace_ms);
        }
    }
    e->nfx = 0;
}

/* ------------------------------------------------------------------------------ */
/* requests and observers: how other threads learn engine state */

struct request {
    request *next;
    tn_engine_req_fn fn;
    void *ctx;
    bool taken, done; /* under e->mu */
};

static void run_requests(tn_engine *e)
{
    pthread_mutex_lock(&e->mu);
    request *rq = e->req_head;
    e->req_head = e->req_tail = NULL;
    for (request *r = rq; r; r = r->next)
        r->taken = true; /* from now on its thread waits for it to the end */
    pthread_mutex_unlock(&e->mu);
    while (rq) {
        request *next = rq->next; /* once done, its thread may return: read before */
        rq->fn(e, rq->ctx);
        pthread_mutex_lock(&e->mu);
        rq->done = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        rq = next;
    }
}

tn_err tn_engine_request(tn_engine *e, tn_engine_req_fn fn, void *ctx, int64_t timeout_ns)
{
    request rq = {.fn = fn, .ctx = ctx};
    int64_t until = tn_now_ns() + timeout_ns; /* e->cv waits on the realtime clock */
    struct timespec ts = {until / 1000000000LL, until % 1000000000LL};
    pthread_mutex_lock(&e->mu);
    if (e->req_tail)
        e->req_tail->next = &rq;
    else
        e->req_head = &rq;
    e->req_tail = &rq;
    pthread_cond_broadcast(&e->cv);
    int rc = 0;
    while (!rq.done && (rq.taken || rc != ETIMEDOUT))
        rc = rq.taken ? pthread_cond_wait(&e->cv, &e->mu) :
                        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    if (!rq.done) { /* not taken in time: out of the queue, never to run */
        request **pp = &e->req_head, *prev = NULL;
        while (*pp != &rq) {
            prev = *pp;
            pp = &(*pp)->next;
        }
        *pp = rq.next;
        if (e->req_tail == &rq)
            e->req_tail = prev;
    }
    pthread_mutex_unlock(&e->mu);
    return rq.done ? TN_OK : TN_ERR_TIMEOUT;
}

void tn_engine_gate(tn_engine *e, tn_engine_gate_fn fn, void *arg)
{
    e->gate_fn = fn;
    e->gate_arg = arg;
}

void tn_engine_observe(tn_engine *e, tn_engine_commit_fn fn, void *arg)
{
    e->obs_fn = fn;
    e->obs_arg = arg;
}

const char *tn_engine_why(tn_engine *e, uint64_t task)
{
    task_run *t = tn_map_get(&e->tasks, task);
    return t ? eng_task_why(e, t) : "";
}

/* Committed projections, in a read-only transaction of their own (core/log/logread.h):
 * never the engine's caches, so any thread may call these. */
tn_err tn_engine_read_wf(tn_engine *e, uint64_t id, tn_wf_proj *out)
{
    return tn_log_wf_get(tn_evlog_store(e->log), id, out);
}

tn_err tn_engine_read_task(tn_engine *e, uint64_t id, tn_task_proj *out)
{
    return tn_log_task_get(tn_evlog_store(e->log), id, out);
}

/* ------------------------------------------------------------------------------ */

/* The batch's commands, between the takeovers recovery decided at open: they begin
 * before the first commands and end after them (see sched_takeover). */
static size_t run_commands(tn_engine *e, tn_cmd *cmds)
{
    size_t n = 0;
    e->ncmds = 0;
    for (size_t i = 0; i < e->ntakeover; i++) {
        wf_run *w = eng_wf(e, e->takeover[i]);
        if (w)
            sched_takeover_begin(e, w);
    }
    for (tn_cmd *c = cmds, *next; c; c = next) {
        next = c->next;
        if (tn_grow((void **)&e->cmds_batch, &e->capcmds, e->ncmds + 1, sizeof(tn_cmd *)))
            e->cmds_batch[e->ncmds++] = c;
        tn_err err = run_cmd(e, c);
        if (err && !c->err)
            cmd_fail(c, err, "%s", e->msg.text[0] ? e->msg.text : tn_strerror(err));
        n++;
    }
    for (size_t i = 0; i < e->ntakeover; i++) {
        wf_run *w = e->takeover[i] ? eng_wf(e, e->takeover[i]) : NULL;
        if (w)
            sched_takeover_end(e, w);
    }
    e->ntakeover = 0;
    return n;
}

/* Decisions that follow from the inputs: schedule what became ready. One instance's run
 * can change another already run in this pass (a child that ends in it finishes its
 * parent's task): that one runs again, until none was changed so. */
static void schedule_touched(tn_engine *e)
{
    for (int pass = 0, again = 1; again && pass < 16; pass++) {
        again = 0;
        for (size_t i = 0; i < e->ntouched; i++) {
            wf_run *w = e->touched[i];
            if (!w->dirty)
                continue;
            sched_run(e, w);
            w->dirty = false; /* what its own run did, it has seen */
        }
        for (size_t i = 0; i < e->ntouched && !again; i++)
            again = e->touched[i]->dirty;
    }
    /* the step's starts ran out: who has candidates left runs again at the next step */
    for (size_t i = 0; i < e->ntouched; i++) {
        wf_run *w = e->touched[i];
        if (w->ncand > 0 &&
            tn_grow((void **)&e->more, &e->capmore, e->nmore + 1, sizeof(uint64_t)))
            e->more[e->nmore++] = w->id;
    }
}

/* The instances whose starts ran out at the last step run again in this one. */
static size_t touch_more(tn_engine *e)
{
    size_t n = e->nmore;
    for (size_t i = 0; i < e->nmore; i++) {
        wf_run *w = eng_wf(e, e->more[i]);
        if (w)
            eng_touch(e, w);
    }
    e->nmore = 0;
    return n;
}

/* The committed batch's events into the metrics. */
static void fold_metrics(tn_engine *e)
{
    tn_engine_metrics *m = &e->metrics;
    if (e->nobs)
        tn_prom_hist_observe(&m->batch_events, (double)e->nobs);
    for (size_t i = 0; i < e->nobs; i++) {
        const tn_engine_event *ev = &e->obs[i];
        if (ev->machine > TN_MACHINE_MAX)
            continue;
        if (ev->event < TN_ENGINE_METRIC_EVENTS)
            m->transitions[ev->machine][ev->event]++;
        if (ev->from != ev->to && ev->to < TN_ENGINE_METRIC_STATES &&
            ev->from < TN_ENGINE_METRIC_STATES) {
            m->states[ev->machine][ev->to]++;
            if (ev->from != TN_SM_NEW)
                m->states[ev->machine][ev->from]--;
        }
    }
}

void tn_engine_metrics_get(tn_engine *e, tn_engine_metrics *out)
{
    *out = e->metrics;
    out->queue_depth = 0;
    for (const lane *l = e->lanes; l; l = l->next)
        out->queue_depth += l->n;
    out->group_waits = 0;
    for (tgroup *g = e->groups; g; g = g->next)
        out->group_waits += g->nwait;
}

void tn_engine_each_waiting(tn_engine *e, void (*fn)(void *ctx, const char *why), void *ctx)
{
    for (size_t i = 0; i < e->tasks.cap; i++) {
        task_run *t = e->tasks.slots[i].key ? e->tasks.slots[i].val : NULL;
        if (t && t->state == TN_TASK_S_SUBMITTED_SUCCESS && !(t->flags & TF_SENT))
            fn(ctx, t->why ? t->why : "");
    }
}

/* After the batch's commit (or without one): on success its effects are released, on
 * failure the batch is dropped (its commands fail, its instances are reloaded). */
static tn_err batch_done(tn_engine *e, tn_err err, bool committed, tn_errmsg *msg)
{
    if (err) {
        e->refuse = err == TN_ERR_FULL;
        tn_log_every_f(&e->commit_log, TN_LOG_ERROR, "engine",
                       "msg=\"commit failed; the batch is dropped and its instances "
                       "reloaded\" why=\"%s\"",
                       e->msg.text);
        if (msg)
            *msg = e->msg;
        for (size_t i = 0; i < e->ncmds; i++)
            if (!e->cmds_batch[i]->err)
                cmd_fail(e->cmds_batch[i], err, "%s", e->msg.text);
        rollback(e);
        defs_pending_end(e, false);
    } else {
        defs_pending_end(e, true);
        if (e->refuse && tn_evlog_pending(e->log) == 0)
            e->refuse = false;
        if (committed)
            tn_log_every_reset(&e->commit_log);
        if (committed && e->gate_fn)
            e->gate_fn(e->gate_arg, tn_evlog_last_seq(e->log));
        release_effects(e);
        fold_metrics(e);
        if (e->obs_fn && e->nobs)
            e->obs_fn(e->obs_arg, e->obs, e->nobs);
    }
    e->nobs = 0;
    return err;
}

static void commit_timed(tn_engine *e, int64_t t0)
{
    e->stats.commits++;
    tn_prom_hist_observe(&e->metrics.commit_seconds, (double)(tn_mono_ns() - t0) / 1e9);
}

/* One group commit of the batch, waited for. */
static tn_err commit_batch(tn_engine *e, tn_errmsg *msg)
{
    tn_err err = TN_OK;
    bool committed = false;
    if (tn_evlog_pending(e->log)) {
        int64_t t0 = tn_mono_ns();
        err = tn_evlog_commit(e->log, &e->msg);
        committed = !err;
        if (!err)
            commit_timed(e, t0);
    }
    return batch_done(e, err, committed, msg);
}

/* Exchange the batch being built's effects, touched list and observed events with the
 * in-flight batch's. */
static void swap_flight(tn_engine *e)
{
    TN_SWAP(e->fx, e->fl.fx);
    TN_SWAP(e->nfx, e->fl.nfx);
    TN_SWAP(e->capfx, e->fl.capfx);
    TN_SWAP(e->touched, e->fl.touched);
    TN_SWAP(e->ntouched, e->fl.ntouched);
    TN_SWAP(e->captouched, e->fl.captouched);
    TN_SWAP(e->obs, e->fl.obs);
    TN_SWAP(e->nobs, e->fl.nobs);
    TN_SWAP(e->capobs, e->fl.capobs);
    TN_SWAP(e->cmds_batch, e->fl.cmds);
    TN_SWAP(e->ncmds, e->fl.ncmds);
    TN_SWAP(e->capcmds, e->fl.capcmds);
}

/* The commands are answered: their submitters may go on (and free them). */
static void cmds_answer(tn_engine *e, tn_cmd **cmds, size_t *n)
{
    if (!*n)
        return;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < *n; i++)
        cmds[i]->done = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *n = 0;
}

/* The in-flight batch is durable: its effects, observers and acknowledgements go out,
 * and its finished instances leave memory unless the batch being built touched them.
 * Its lists are in e's fields (swap_flight). */
static void flight_done(tn_engine *e, tn_errmsg *msg)
{
    commit_timed(e, e->fl.t0);
    batch_done(e, TN_OK, true, msg);
    for (input *in = e->fl.ins; in; in = in->next)
        if (e->ex.ops->ack && in->r.kind != TN_REPORT_LOST)
            e->ex.ops->ack(e->ex.self, &in->r);
    for (size_t i = 0; i < e->ntouched; i++) {
        wf_run *w = e->touched[i];
        if (!w->touched && tn_sm_workflow.final[w->state]) {
            tn_map_del(&e->wfs, w->id);
            wf_run_free(e, w);
        }
    }
    e->ntouched = 0;
}

/* The in-flight batch failed: nothing of it, nor of the batch built on it (the log
 * dropped that one too), was written. Every instance either touched is reloaded. Its
 * lists are in e's fields, the batch being built's in e->fl; after it e's lists hold
 * what the reloads touched and e->fl's are empty. */
static void flight_failed(tn_engine *e, tn_err err, tn_errmsg *msg)
{
    for (size_t i = 0; i < e->ntouched; i++)
        e->touched[i]->touched = true; /* one list of both, each instance once */
    for (size_t i = 0; i < e->fl.ntouched; i++) {
        wf_run *w = e->fl.touched[i];
        if (!w->touched &&
            tn_grow((void **)&e->touched, &e->captouched, e->ntouched + 1, sizeof(wf_run *))) {
            e->touched[e->ntouched++] = w;
            w->touched = true;
        }
    }
    e->fl.ntouched = e->fl.nfx = e->fl.nobs = 0;
    batch_done(e, err, false, msg); /* rolls back every instance on the list */
}

/* Wait for the batch in flight, if any; TN_ERR_* when it failed (the batch being built
 * on it is then gone: its inputs are not acknowledged, its instances reloaded). */
static tn_err settle(tn_engine *e, tn_errmsg *msg)
{
    if (!e->fl.on)
        return TN_OK;
    tn_err err = tn_evlog_commit_wait(e->log, &e->msg);
    e->fl.on = false;
    swap_flight(e);
    if (err) {
        /* both batches are gone; what the reloads touched (rollback: sched_recovered)
         * is the batch being built now, in e's lists as after any failed commit. The
         * commands of both fail and are answered. */
        e->stats.flight_failures++;
        for (size_t i = 0; i < e->fl.ncmds; i++)
            if (!e->fl.cmds[i]->err)
                cmd_fail(e->fl.cmds[i], err, "%s", e->msg.text);
        cmds_answer(e, e->fl.cmds, &e->fl.ncmds);
        flight_failed(e, err, msg);
        cmds_answer(e, e->cmds_batch, &e->ncmds);
    } else {
        flight_done(e, msg);
        cmds_answer(e, e->cmds_batch, &e->ncmds);
        swap_flight(e);
    }
    inputs_free(e, e->fl.ins);
    e->fl.ins = NULL;
    return err;
}

/* After the commit: reports acknowledged (they are in the log, or never will be: their
 * senders may forget them), finished instances out of memory, commands answered. */
static void finish_batch(tn_engine *e, input *ins, tn_err err)
{
    for (input *in = ins; in; in = in->next)
        if (!err && e->ex.ops->ack && in->r.kind != TN_REPORT_LOST)
            e->ex.ops->ack(e->ex.self, &in->r);
    inputs_free(e, ins);
    for (size_t i = 0; i < e->ntouched; i++) {
        wf_run *w = e->touched[i];
        w->touched = false;
        w->dirty = false;
        if (tn_sm_workflow.final[w->state]) {
            tn_map_del(&e->wfs, w->id);
            wf_run_free(e, w);
        }
    }
    e->ntouched = 0;
    cmds_answer(e, e->cmds_batch, &e->ncmds);
}

/* Commit the batch built; it may be left in flight, its effects and its commands'
 * answers held back until it is durable (settle), while the next one is built. One
 * that applies a definition is waited for at once. */
static void commit_or_start(tn_engine *e, input *ins, tn_errmsg *msg)
{
    if (e->defs_pending || !tn_evlog_pending(e->log)) {
        finish_batch(e, ins, commit_batch(e, msg));
        return;
    }
    int64_t t0 = tn_mono_ns();
    tn_err err = tn_evlog_commit_start(e->log, &e->msg);
    if (err || !tn_evlog_inflight(e->log)) { /* it committed (or failed) at once */
        if (!err)
            commit_timed(e, t0);
        finish_batch(e, ins, batch_done(e, err, !err, msg));
        return;
    }
    swap_flight(e);
    for (size_t i = 0; i < e->fl.ntouched; i++)
        e->fl.touched[i]->touched = false; /* the next batch lists them again */
    e->fl.on = true;
    e->stats.flights++;
    e->stats.command_flights += e->fl.ncmds > 0;
    e->fl.t0 = t0;
    e->fl.ins = ins;
}

/* Whether a commit in flight can stay so past this step: more work is queued (the next
 * step overlaps it) and no reader waits for the state between batches. */
static bool keep_flying(tn_engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool keep = (e->cmd_head || e->in_head || e->nmore) && !e->req_head;
    pthread_mutex_unlock(&e->mu);
    return keep;
}

/* How far ahead run_reports fetches: the map slot of the report AHEAD_SLOT places on,
 * the task record and its projection of the one AHEAD_TASK places on. */
#define AHEAD_SLOT 8
#define AHEAD_TASK 4

/* Apply the reports. Each names a task spread over maps and records far larger than the
 * cache (a wide workflow has 100k), so the misses of the next ones are started early. */
static void run_reports(tn_engine *e, input *ins, size_t *n)
{
    input *slot = ins, *task = ins;
    for (int k = 0; k < AHEAD_SLOT && slot; k++, slot = slot->next)
        tn_map_prefetch(&e->tasks, slot->r.task);
    for (int k = 0; k < AHEAD_TASK && task; k++, task = task->next)
        ;
    for (input *in = ins; in; in = in->next) {
        if (slot) {
            tn_map_prefetch(&e->tasks, slot->r.task);
            slot = slot->next;
        }
        if (task) {
            const task_run *t = tn_map_get(&e->tasks, task->r.task);
            if (t) {
                __builtin_prefetch(t);
                tn_evlog_prefetch(t->proj);
            }
            task = task->next;
        }
        sched_report(e, &in->r);
        (*n)++;
    }
}

size_t tn_engine_step(tn_engine *e, tn_errmsg *msg)
{
    /* take the queued inputs */
    pthread_mutex_lock(&e->mu);
    tn_cmd *cmds = e->cmd_head;
    input *ins = e->in_head;
    e->cmd_head = e->cmd_tail = NULL;
    e->in_head = e->in_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    e->starts_left = e->max_batch;
    size_t more = touch_more(e);
    size_t n = run_commands(e, cmds);
    run_reports(e, ins, &n);
    fire_due_timers(e, &n);
    schedule_touched(e);
    sched_dispatch(e);
    e->stats.inputs += n;
    tn_err err = settle(e, msg); /* the batch before this one */
    if (err)
        finish_batch(e, ins, err); /* built on it: dropped with it */
    else
        commit_or_start(e, ins, msg);
    if (e->fl.on && !keep_flying(e) && (err = settle(e, msg)))
        finish_batch(e, NULL, err); /* what the reloads touched, as after any failure */
    if (!e->fl.on)
        run_requests(e); /* between batches */
    return n + more;     /* an instance run again for its starts is work, as an input is */
}

tn_err tn_engine_submit_wait(tn_engine *e, tn_cmd *cmd)
{
    tn_engine_submit(e, cmd);
    pthread_mutex_lock(&e->mu);
    while (!cmd->done)
        pthread_cond_wait(&e->cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    return cmd->err;
}

tn_err tn_engine_call(tn_engine *e, tn_cmd *cmd)
{
    tn_engine_submit(e, cmd);
    while (!cmd->done)
        tn_engine_step(e, NULL);
    return cmd->err;
}

static int64_t next_due(tn_engine *e)
{
    int64_t due = e->ntimers ? e->timers[0].due : INT64_MAX;
    if (e->cbq_n && e->cbq[e->cbq_head].due < due)
        due = e->cbq[e->cbq_head].due;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->ncb; i++)
        if (e->cb_timers[i].due < due)
            due = e->cb_timers[i].due;
    pthread_mutex_unlock(&e->mu);
    return due;
}

void tn_engine_wait(tn_engine *e, int64_t max_ns)
{
    int64_t due = next_due(e);
    int64_t now = tn_now_ns();
    int64_t until = now + max_ns;
    if (due < until)
        until = due;
    if (until <= now || e->nmore)
        return;
    struct timespec ts = {until / 1000000000LL, until % 1000000000LL};
    pthread_mutex_lock(&e->mu);
    if (!e->cmd_head && !e->in_head && e->ncb == 0 && !e->req_head)
        pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    pthread_mutex_unlock(&e->mu);
}

bool tn_engine_advance(tn_engine *e)
{
    int64_t due = next_due(e);
    if (!e->virtual_clock || due == INT64_MAX)
        return false;
    if (due > e->vnow)
        e->vnow = due;
    return true;
}

void tn_engine_wake(tn_engine *e)
{
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static bool has_inputs(tn_engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool r = e->cmd_head || e->in_head || e->ncb || e->req_head || e->nmore;
    pthread_mutex_unlock(&e->mu);
    return r;
}

int tn_engine_run_until(tn_engine *e, uint64_t wf, tn_errmsg *msg)
{
    for (;;) {
        size_t n = tn_engine_step(e, msg);
        if (wf) {
            wf_run *w = eng_wf(e, wf);
            if (!w) {
                tn_wf_proj p;
                if (tn_evlog_wf(e->log, wf, &p) != TN_OK)
                    return -1;
                if (tn_sm_workflow.final[p.state])
                    return p.state;
            }
        } else if (e->wfs.len == 0 && !has_inputs(e)) {
            return 0;
        }
        if (n > 0 || has_inputs(e))
            continue;
        int64_t due = next_due(e);
        if (due == INT64_MAX) {
            if (wf && !e->virtual_clock) {
                tn_engine_wait(e, 100000000LL); /* an executor thread may still report */
                continue;
            }
            /* nothing will ever happen: the workflow waits on something outside */
            return wf ? -2 : 0;
        }
        if (e->virtual_clock) {
            if (due > e->vnow)
                e->vnow = due;
        } else {
            tn_engine_wait(e, 1000000000LL);
        }
    }
}

tn_err tn_engine_wf_view(tn_engine *e, uint64_t wf, tn_wf_view *out)
{
    wf_run *w = eng_wf(e, wf);
    if (!w)
        return TN_ERR_NOENT;
    out->id = w->id;
    out->name = w->def->name;
    out->state = w->state;
    out->run = w->run;
    out->ntasks = w->def->n_tasks;
    return TN_OK;
}

void tn_engine_stats_get(tn_engine *e, tn_engine_stats *out)
{
    *out = e->stats;
    out->live_workflows = e->wfs.len;
    out->live_tasks = e->tasks.len;
    out->timers = e->ntimers + e->cbq_n;
}

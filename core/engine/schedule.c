/* Schedules and backfills in the engine: when nominal times are due, what each one
 * decides (fire, skip, buffer) and the instances they start.
 *
 * Exactly once: a fire is a FIRE event naming its instance, emitted just before that
 * instance's SUBMIT, in the same batch, so one commit holds both or neither. The event
 * log refuses to decide a nominal time at or before the schedule's last decided one
 * (objproj.h), so a restart, a replay or a clock set back cannot start a time again.
 * What is due is computed from the log's projection (last_nominal), never from memory
 * that a crash would lose. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "logread.h"
#include "util.h"

#define NS_PER_MS      1000000LL
#define NS_PER_S       1000000000LL
#define TICK_MAX       1000     /* decisions per tick: the rest wait for the next step */
#define SKIP_COUNT_MAX 10000    /* a skipped range is counted up to this many times */
#define CATCHUP_MIN_MS 5000     /* a fire reached a little late is never skipped for that */
#define RETRY_NS       NS_PER_S /* after a dropped batch, the next try (a full store) */

typedef struct srt { /* a schedule's runtime */
    char name[TN_DEF_MAX_NAME + 1];
    bool active; /* ACTIVE (not PAUSED); removed schedules leave the table */
    tn_cron cron;
    tn_tz *tz;
    char tzname[TN_TZ_MAX_NAME + 1];
    int64_t start, end, catchup;
    tn_overlap overlap;
    bool pause_on_failure;
    char priority[16], failure_strategy[16], worker_group[TN_DEF_MAX_NAME + 1];
    tn_kv *params;
    int64_t last; /* the projection's last_nominal, kept in step */
    int64_t next; /* the first nominal time after last in the window; 0 = none */
    int64_t *buffered;
    uint32_t nbuffered;
    uint64_t *running; /* unfinished instances it started */
    size_t nrun, caprun;
    size_t hidx; /* in the due heap, or SIZE_MAX */
    struct srt *chain;
} srt;

struct brt { /* a backfill's runtime */
    uint64_t id;
    char workflow[TN_DEF_MAX_NAME + 1];
    bool running;
    bool done; /* FINISHed: forgotten at the next tick */
    int64_t *dates;
    uint32_t ndates, next, parallel;
    tn_kv *params;
    uint64_t *inflight;
    size_t ninflight, capinflight;
    struct brt *link;
};

struct esched {
    tn_map by_name; /* hash -> srt chain */
    srt **heap;     /* by next, active schedules with a next time */
    size_t nheap, capheap;
    struct brt *bfs;
    int64_t armed; /* due of the armed TIMER_SCHED, 0 = none */
    int64_t hold;  /* after a dropped batch: no decision before this time */
};

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h | 1;
}

static srt *find(struct esched *x, const char *name)
{
    for (srt *s = tn_map_get(&x->by_name, name_hash(name)); s; s = s->chain)
        if (!strcmp(s->name, name))
            return s;
    return NULL;
}

static bool ids_add(uint64_t **a, size_t *n, size_t *cap, uint64_t id)
{
    if (!tn_grow((void **)a, cap, *n + 1, sizeof(**a)))
        return false;
    (*a)[(*n)++] = id;
    return true;
}

static bool ids_del(uint64_t *a, size_t *n, uint64_t id)
{
    for (size_t i = 0; i < *n; i++)
        if (a[i] == id) {
            a[i] = a[--*n];
            return true;
        }
    return false;
}

static void fmt_time(int64_t ns, char *buf, size_t len)
{
    tn_fmt_time(ns, buf, len);
}

/* ---- the due heap ------------------------------------------------------------------- */

static bool before(const srt *a, const srt *b)
{
    return a->next < b->next;
}

static void heap_swap(struct esched *x, size_t i, size_t j)
{
    srt *t = x->heap[i];
    x->heap[i] = x->heap[j];
    x->heap[j] = t;
    x->heap[i]->hidx = i;
    x->heap[j]->hidx = j;
}

static void heap_fix(struct esched *x, size_t i)
{
    while (i > 0 && before(x->heap[i], x->heap[(i - 1) / 2])) {
        heap_swap(x, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < x->nheap && before(x->heap[l], x->heap[m]))
            m = l;
        if (r < x->nheap && before(x->heap[r], x->heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(x, i, m);
        i = m;
    }
}

static void heap_remove(struct esched *x, srt *s)
{
    if (s->hidx == SIZE_MAX)
        return;
    size_t i = s->hidx;
    s->hidx = SIZE_MAX;
    if (i != --x->nheap) {
        x->heap[i] = x->heap[x->nheap];
        x->heap[i]->hidx = i;
        heap_fix(x, i);
    }
}

/* Put s where its next time says (out of the heap when paused or done). */
static void heap_place(tn_engine *e, srt *s)
{
    struct esched *x = e->esched;
    if (!s->active || !s->next) {
        heap_remove(x, s);
        return;
    }
    if (s->hidx == SIZE_MAX) {
        if (!tn_grow((void **)&x->heap, &x->capheap, x->nheap + 1, sizeof(srt *)))
            return; /* out of memory: it fires when the master restarts */
        s->hidx = x->nheap;
        x->heap[x->nheap++] = s;
    }
    heap_fix(x, s->hidx);
    /* arm the engine's timer for the earliest time, once */
    int64_t due = x->heap[0]->next;
    if (!x->armed || due < x->armed) {
        x->armed = due;
        eng_timer_sched(e, due);
    }
}

/* The first nominal time after `after` in s's window; 0 when there is none. */
static int64_t next_after(srt *s, int64_t after)
{
    if (s->start && after < s->start - 1)
        after = s->start - 1;
    int64_t n;
    if (tn_cron_next(&s->cron, s->tz, after, &n, NULL))
        return 0;
    return s->end && n > s->end ? 0 : n;
}

/* ---- building runtimes from projections ---------------------------------------------- */

static void srt_free(srt *s)
{
    if (!s)
        return;
    tn_tz_free(s->tz);
    tn_kv_free(s->params);
    free(s->buffered);
    free(s->running);
    free(s);
}

/* (Re)read s's spec and position from its projection. */
static tn_err srt_load(srt *s, const tn_sched_proj *p, tn_errmsg *msg)
{
    tn_cron c;
    tn_tz *tz = NULL;
    tn_kv *params = NULL;
    tn_err err = tn_cron_parse(p->cron, &c, msg);
    if (!err)
        err = tn_tz_open(p->tz[0] ? p->tz : "UTC", &tz, msg);
    if (!err && (err = eng_kv_unpack(p->params, p->params_len, &params)))
        tn_errmsg_set(msg, err, "schedule %s: its params do not decode", p->name);
    int64_t *buf = NULL;
    if (!err && p->nbuffered && !(buf = malloc(p->nbuffered * sizeof(int64_t))))
        err = TN_ERR_NOMEM;
    if (err) {
        tn_tz_free(tz);
        tn_kv_free(params);
        return err;
    }
    tn_tz_free(s->tz);
    tn_kv_free(s->params);
    free(s->buffered);
    snprintf(s->name, sizeof(s->name), "%s", p->name);
    s->cron = c;
    s->tz = tz;
    snprintf(s->tzname, sizeof(s->tzname), "%s", p->tz[0] ? p->tz : "UTC");
    s->params = params;
    s->start = p->start_ns;
    s->end = p->end_ns;
    s->catchup = (p->catchup_ms > CATCHUP_MIN_MS ? p->catchup_ms : CATCHUP_MIN_MS) * NS_PER_MS;
    if (tn_overlap_parse(p->overlap, &s->overlap))
        s->overlap = TN_OVERLAP_ALLOW_ALL;
    s->pause_on_failure = p->pause_on_failure;
    snprintf(s->priority, sizeof(s->priority), "%s", p->priority);
    snprintf(s->failure_strategy, sizeof(s->failure_strategy), "%s", p->failure_strategy);
    snprintf(s->worker_group, sizeof(s->worker_group), "%s", p->worker_group);
    s->active = p->state == TN_SCHED_S_ACTIVE;
    s->last = p->last_nominal;
    s->buffered = buf;
    s->nbuffered = p->nbuffered;
    if (buf)
        memcpy(buf, p->buffered, p->nbuffered * sizeof(int64_t));
    s->next = next_after(s, s->last);
    return TN_OK;
}

static srt *srt_get(tn_engine *e, const char *name, bool create)
{
    struct esched *x = e->esched;
    srt *s = find(x, name);
    if (s || !create)
        return s;
    if (!(s = calloc(1, sizeof(*s))))
        return NULL;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->hidx = SIZE_MAX;
    uint64_t h = name_hash(name);
    s->chain = tn_map_get(&x->by_name, h);
    if (tn_map_put(&x->by_name, h, s)) {
        free(s);
        return NULL;
    }
    return s;
}

static void srt_drop(tn_engine *e, srt *s)
{
    struct esched *x = e->esched;
    heap_remove(x, s);
    uint64_t h = name_hash(s->name);
    srt *head = tn_map_get(&x->by_name, h), **pp = &head;
    while (*pp && *pp != s)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = s->chain;
    if (head)
        tn_map_put(&x->by_name, h, head);
    else
        tn_map_del(&x->by_name, h);
    srt_free(s);
}

/* Refresh s from the log's pending projection (after an event changed it). */
static tn_err srt_refresh(tn_engine *e, srt *s)
{
    tn_sched_proj p;
    tn_errmsg m = {{0}};
    tn_err err = tn_evlog_sched(tn_engine_log(e), s->name, &p);
    if (err)
        return err;
    err = srt_load(s, &p, &m);
    tn_sched_proj_fini(&p);
    if (!err)
        heap_place(e, s);
    return err;
}

/* ---- events --------------------------------------------------------------------------- */

static void sched_event(tn_event *ev, unsigned event, const char *name)
{
    eng_event(ev, TN_MACHINE_SCHEDULE, event, 0, 0);
    tn_event_set_str(ev, "schedule", name);
}

/* A params map as the key and value arrays a START takes (borrowed from kv; the caller
 * frees the arrays). */
static tn_err kv_arrays(const tn_kv *kv, const char ***keys, const char ***vals)
{
    uint32_t np = tn_kv_len(kv);
    *keys = calloc(np + 1, sizeof(char *));
    *vals = calloc(np + 1, sizeof(char *));
    if (!*keys || !*vals) {
        free(*keys);
        free(*vals);
        return TN_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < np; i++) {
        (*keys)[i] = tn_kv_key(kv, i);
        (*vals)[i] = tn_kv_value(kv, i);
    }
    return TN_OK;
}

/* Start the instance of one nominal time: FIRE naming the instance, then its SUBMIT. */
static tn_err fire(tn_engine *e, srt *s, int64_t nominal, bool manual, bool buffered,
                   uint64_t *out)
{
    uint32_t np = tn_kv_len(s->params);
    const char **keys, **vals;
    if (kv_arrays(s->params, &keys, &vals))
        return TN_ERR_NOMEM;
    tn_cmd c = {.kind = TN_CMD_START,
                .workflow = s->name,
                .param_keys = keys,
                .param_values = vals,
                .nparams = np,
                .sched_ns = nominal,
                .tz = s->tzname,
                .priority = s->priority,
                .failure_strategy = s->failure_strategy,
                .worker_group = s->worker_group};
    uint64_t id = tn_evlog_new_wf_id(tn_engine_log(e));
    tn_event ev;
    sched_event(&ev, TN_SCHED_E_FIRE, s->name);
    tn_event_set_int(&ev, "nominal", nominal);
    tn_event_set_int(&ev, "instance", (int64_t)id);
    if (manual)
        tn_event_set_int(&ev, "manual", 1);
    if (buffered)
        tn_event_set_int(&ev, "buffered", 1);
    tn_err err = eng_emit(e, &ev);
    wf_run *w = NULL;
    if (!err)
        err = eng_start(e, &c, id, s->name, 0, &w);
    free(keys);
    free(vals);
    if (err)
        return err;
    if (!manual && !buffered && nominal > s->last)
        s->last = nominal;
    if (!manual) { /* a buffered fire's wait for the earlier instance counts as late */
        int64_t late = eng_now(e) - nominal;
        tn_prom_hist_observe(&e->metrics.sched_lateness_seconds,
                             late > 0 ? (double)late / 1e9 : 0);
    }
    if (w && !tn_sm_workflow.final[w->state])
        ids_add(&s->running, &s->nrun, &s->caprun, w->id);
    if (out)
        *out = id;
    return TN_OK;
}

static tn_err skip(tn_engine *e, srt *s, int64_t through, int64_t count, const char *reason)
{
    tn_event ev;
    sched_event(&ev, TN_SCHED_E_SKIP, s->name);
    tn_event_set_int(&ev, "after", s->last);
    tn_event_set_int(&ev, "through", through);
    if (count > 0)
        tn_event_set_int(&ev, "count", count);
    tn_event_set_str(&ev, "reason", reason);
    tn_err err = eng_emit(e, &ev);
    if (!err)
        s->last = through;
    return err;
}

static tn_err buffer(tn_engine *e, srt *s, int64_t nominal, const char *reason)
{
    int64_t *nb = realloc(s->buffered, (s->nbuffered + 1) * sizeof(int64_t));
    if (!nb)
        return TN_ERR_NOMEM;
    s->buffered = nb;
    tn_event ev;
    sched_event(&ev, TN_SCHED_E_BUFFER, s->name);
    tn_event_set_int(&ev, "nominal", nominal);
    tn_event_set_str(&ev, "reason", reason);
    tn_err err = eng_emit(e, &ev);
    if (!err) {
        s->buffered[s->nbuffered++] = nominal;
        s->last = nominal;
    }
    return err;
}

typedef struct brt brt;
static tn_err bf_pump(tn_engine *e, brt *b);
static void brt_free(brt *b);

/* ---- what a due nominal time does ------------------------------------------------------- */

/* Missed times older than the catchup window (now - t > catchup): one SKIP for all. */
static tn_err skip_missed(tn_engine *e, srt *s, int64_t now)
{
    int64_t cut = now - s->catchup - 1; /* the newest time that is too old */
    if (s->next > cut)
        return TN_OK;
    int64_t count = 0;
    for (int64_t t = s->next; t && t <= cut && count <= SKIP_COUNT_MAX; t = next_after(s, t))
        count++;
    char why[160], at[40];
    fmt_time(now, at, sizeof(at));
    snprintf(why, sizeof(why),
             "missed: more than the catchup window (%" PRId64 " ms) late at %s",
             (int64_t)(s->catchup / NS_PER_MS), at);
    int64_t through = s->end && s->end < cut ? s->end : cut;
    tn_err err = skip(e, s, through, count > SKIP_COUNT_MAX ? 0 : count, why);
    if (!err)
        s->next = next_after(s, s->last);
    return err;
}

static tn_err cancel_running(tn_engine *e, srt *s, int64_t nominal)
{
    char why[160], at[40];
    fmt_time(nominal, at, sizeof(at));
    snprintf(why, sizeof(why), "overlap policy cancel_other: the schedule fired again (%s)",
             at);
    for (size_t i = s->nrun; i-- > 0;) {
        tn_errmsg m;
        wf_run *w = eng_load_wf(e, s->running[i], &m);
        if (!w || tn_sm_workflow.final[w->state])
            continue;
        if (w->state == TN_WF_S_READY_STOP || w->state == TN_WF_S_STOP)
            continue;
        tn_err err = sched_stop_wf(e, w, why);
        if (err)
            return err;
        eng_touch(e, w);
    }
    return TN_OK;
}

/* One due nominal time within the catchup window, under the overlap policy. */
static tn_err decide(tn_engine *e, srt *s, int64_t nominal)
{
    if (s->nrun == 0 && s->nbuffered == 0)
        return fire(e, s, nominal, false, false, NULL);
    char why[200];
    snprintf(why, sizeof(why), "overlap policy %s: instance %" PRIu64 " still runs",
             tn_overlap_name(s->overlap), s->nrun ? s->running[0] : 0);
    switch (s->overlap) {
    case TN_OVERLAP_SKIP: return skip(e, s, nominal, 1, why);
    case TN_OVERLAP_BUFFER_ONE:
        if (s->nbuffered)
            return skip(e, s, nominal, 1, "overlap policy buffer_one: one fire waits already");
        return buffer(e, s, nominal, why);
    case TN_OVERLAP_BUFFER_ALL:
        if (s->nbuffered >= TN_SCHED_BUFFER_MAX)
            return skip(e, s, nominal, 1, "overlap policy buffer_all: the buffer is full");
        return buffer(e, s, nominal, why);
    case TN_OVERLAP_CANCEL_OTHER: {
        tn_err err = cancel_running(e, s, nominal);
        return err ? err : fire(e, s, nominal, false, false, NULL);
    }
    default: return fire(e, s, nominal, false, false, NULL);
    }
}

/* Everything due for s at `now`, at most *budget decisions. */
static tn_err run_due(tn_engine *e, srt *s, int64_t now, int *budget)
{
    tn_err err = TN_OK;
    while (!err && s->active && s->next && s->next <= now && *budget > 0) {
        if (s->catchup >= 0 && now - s->next > s->catchup) {
            err = skip_missed(e, s, now);
        } else {
            err = decide(e, s, s->next);
            s->next = next_after(s, s->last);
        }
        (*budget)--;
    }
    return err;
}

tn_err esched_tick(tn_engine *e)
{
    struct esched *x = e->esched;
    if (!x)
        return TN_OK;
    int64_t now = eng_now(e);
    if (now < x->hold)
        return TN_OK; /* the timer armed at x->hold comes */
    x->armed = 0;
    int budget = TICK_MAX;
    tn_err err = TN_OK;
    for (brt **pp = &x->bfs; *pp;) {
        brt *b = *pp;
        if (!err && b->running && b->ninflight < b->parallel)
            err = bf_pump(e, b);
        if (b->done) {
            *pp = b->link;
            brt_free(b);
        } else {
            pp = &b->link;
        }
    }
    while (!err && x->nheap && x->heap[0]->next <= now && budget > 0) {
        srt *s = x->heap[0];
        err = run_due(e, s, now, &budget);
        heap_place(e, s);
    }
    if (x->nheap) {
        int64_t due = x->heap[0]->next <= now ? now : x->heap[0]->next;
        x->armed = due;
        eng_timer_sched(e, due);
    }
    return err;
}

/* ---- backfills -------------------------------------------------------------------------- */

static brt *bf_find(struct esched *x, uint64_t id)
{
    for (brt *b = x->bfs; b; b = b->link)
        if (b->id == id)
            return b;
    return NULL;
}

static void brt_free(brt *b)
{
    free(b->dates);
    tn_kv_free(b->params);
    free(b->inflight);
    free(b);
}

static brt *brt_from(tn_engine *e, const tn_backfill_proj *p)
{
    brt *b = calloc(1, sizeof(*b));
    if (!b || !(b->dates = malloc(p->ndates * sizeof(int64_t))) ||
        eng_kv_unpack(p->params, p->params_len, &b->params)) {
        if (b)
            free(b->dates);
        free(b);
        return NULL;
    }
    b->id = p->id;
    snprintf(b->workflow, sizeof(b->workflow), "%s", p->workflow);
    memcpy(b->dates, p->dates, p->ndates * sizeof(int64_t));
    b->ndates = p->ndates;
    b->next = p->next;
    b->parallel = p->parallel ? p->parallel : 1;
    b->running = p->state == TN_BF_S_RUNNING;
    b->link = e->esched->bfs;
    e->esched->bfs = b;
    return b;
}

static tn_err bf_event(tn_engine *e, brt *b, unsigned event, const char *reason)
{
    tn_event ev;
    eng_event(&ev, TN_MACHINE_BACKFILL, event, 0, 0);
    tn_event_set_int(&ev, "backfill", (int64_t)b->id);
    if (reason)
        tn_event_set_str(&ev, "reason", reason);
    return eng_emit(e, &ev);
}

/* Start dates while the backfill runs and has room; FINISH when all are done. */
static tn_err bf_pump(tn_engine *e, brt *b)
{
    tn_err err = TN_OK;
    while (!err && b->running && b->next < b->ndates && b->ninflight < b->parallel) {
        const char **keys, **vals;
        if ((err = kv_arrays(b->params, &keys, &vals)))
            break;
        tn_cmd c = {.kind = TN_CMD_START,
                    .workflow = b->workflow,
                    .param_keys = keys,
                    .param_values = vals,
                    .nparams = tn_kv_len(b->params),
                    .sched_ns = b->dates[b->next]};
        uint64_t id = tn_evlog_new_wf_id(tn_engine_log(e));
        tn_event ev;
        eng_event(&ev, TN_MACHINE_BACKFILL, TN_BF_E_START_DATE, 0, 0);
        tn_event_set_int(&ev, "backfill", (int64_t)b->id);
        tn_event_set_int(&ev, "index", b->next);
        tn_event_set_int(&ev, "date", b->dates[b->next]);
        tn_event_set_int(&ev, "instance", (int64_t)id);
        wf_run *w = NULL;
        if (!(err = eng_emit(e, &ev)) && !(err = eng_start(e, &c, id, NULL, b->id, &w))) {
            b->next++;
            if (w && !tn_sm_workflow.final[w->state])
                ids_add(&b->inflight, &b->ninflight, &b->capinflight, w->id);
        }
        free(keys);
        free(vals);
    }
    if (!err && b->running && b->next == b->ndates && b->ninflight == 0) {
        err = bf_event(e, b, TN_BF_E_FINISH, "every date ran");
        b->running = false;
        b->done = true;
    }
    return err;
}

/* ---- commands ---------------------------------------------------------------------------- */

static void cmd_fail(tn_cmd *c, tn_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void cmd_fail(tn_cmd *c, tn_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    c->err = err;
}

static bool workflow_known(tn_engine *e, tn_cmd *c)
{
    uint32_t v;
    if (!c->workflow || !tn_def_name_valid(c->workflow)) {
        cmd_fail(c, TN_ERR_INVAL, "no workflow name given, or not a valid name");
        return false;
    }
    if (eng_def_version(e, c->workflow, &v)) {
        cmd_fail(c, TN_ERR_NOENT,
                 "no workflow named \"%s\": apply its definition first (`tern def apply FILE`)",
                 c->workflow);
        return false;
    }
    return true;
}

static tn_err set_attrs(tn_event *ev, const tn_sched_spec *sp, tn_buf *scratch)
{
    tn_event_set_str(ev, "cron", sp->cron);
    tn_event_set_str(ev, "tz", sp->tz[0] ? sp->tz : "UTC");
    tn_event_set_int(ev, "start", sp->start_ns);
    tn_event_set_int(ev, "end", sp->end_ns);
    tn_event_set_str(ev, "overlap", tn_overlap_name(sp->overlap));
    tn_event_set_int(ev, "catchup", sp->catchup_ms);
    tn_event_set_int(ev, "pause_on_failure", sp->pause_on_failure);
    tn_event_set_str(ev, "priority", sp->priority);
    tn_event_set_str(ev, "failure_strategy", sp->failure_strategy);
    tn_event_set_str(ev, "worker_group", sp->worker_group);
    if (!sp->nparams)
        return TN_OK;
    tn_kv *kv = tn_kv_new();
    tn_err err = kv ? TN_OK : TN_ERR_NOMEM;
    for (uint32_t i = 0; !err && i < sp->nparams; i++)
        err = tn_kv_set(kv, sp->param_keys[i], sp->param_values[i]);
    if (!err)
        err = eng_kv_attr(ev, "params", kv, scratch);
    tn_kv_free(kv);
    return err;
}

/* `known`: the definition is in this batch (def apply), not yet readable from the store */
static tn_err cmd_set(tn_engine *e, tn_cmd *c, bool known)
{
    tn_errmsg m = {{0}};
    if (!known && !workflow_known(e, c))
        return TN_OK;
    if (!c->sched || tn_sched_spec_validate(c->sched, &m)) {
        cmd_fail(c, TN_ERR_INVAL, "schedule of %s: %s", c->workflow,
                 c->sched ? m.text : "no spec given");
        return TN_OK;
    }
    srt *s = srt_get(e, c->workflow, true);
    if (!s)
        return TN_ERR_NOMEM;
    tn_event ev;
    tn_buf scratch = {0};
    sched_event(&ev, TN_SCHED_E_SET, c->workflow);
    tn_err err = set_attrs(&ev, c->sched, &scratch);
    tn_event_set_int(&ev, "after", eng_now(e));
    if (!err)
        err = eng_emit(e, &ev);
    tn_buf_free(&scratch);
    if (!err)
        err = srt_refresh(e, s);
    if (!err) {
        char at[40] = "never";
        if (s->next)
            fmt_time(s->next, at, sizeof(at));
        snprintf(c->msg, sizeof(c->msg), "schedule of %s set; next fire %s", c->workflow, at);
    }
    return err;
}

static tn_err cmd_state(tn_engine *e, tn_cmd *c, srt *s)
{
    tn_event ev;
    char why[TN_REASON_MAX + 1];
    snprintf(why, sizeof(why), "%s", c->text && *c->text ? c->text : "");
    unsigned event = c->kind == TN_CMD_SCHED_PAUSE  ? TN_SCHED_E_PAUSE :
                     c->kind == TN_CMD_SCHED_RESUME ? TN_SCHED_E_RESUME :
                                                      TN_SCHED_E_REMOVE;
    uint8_t from = s->active ? TN_SCHED_S_ACTIVE : TN_SCHED_S_PAUSED;
    if (tn_sm_next(&tn_sm_schedule, from, event).to == TN_SM_ILLEGAL) {
        cmd_fail(c, TN_ERR_ILLEGAL, "the schedule of %s is %s: it cannot take %s", c->workflow,
                 tn_sm_state_name(&tn_sm_schedule, from),
                 tn_sm_event_name(&tn_sm_schedule, event));
        return TN_OK;
    }
    sched_event(&ev, event, c->workflow);
    if (event == TN_SCHED_E_RESUME) {
        /* the times that came while it was paused are not due: resuming starts now */
        tn_event_set_int(&ev, "through", eng_now(e) > s->last ? eng_now(e) : s->last);
        if (!why[0])
            snprintf(why, sizeof(why), "resumed; fires while paused are not run");
    }
    tn_event_set_str(&ev, "reason", why[0] ? why : "by request");
    tn_err err = eng_emit(e, &ev);
    if (err)
        return err;
    if (event == TN_SCHED_E_REMOVE) {
        srt_drop(e, s);
        snprintf(c->msg, sizeof(c->msg), "schedule of %s removed", c->workflow);
        return TN_OK;
    }
    snprintf(c->msg, sizeof(c->msg), "schedule of %s %s", c->workflow,
             event == TN_SCHED_E_PAUSE ? "paused" : "resumed");
    return srt_refresh(e, s);
}

static tn_err cmd_backfill(tn_engine *e, tn_cmd *c)
{
    if (!workflow_known(e, c))
        return TN_OK;
    if (!c->dates || c->ndates == 0 || c->ndates > TN_BACKFILL_MAX_DATES) {
        cmd_fail(c, TN_ERR_INVAL, "a backfill needs 1 to %d dates, not %u",
                 TN_BACKFILL_MAX_DATES, c->ndates);
        return TN_OK;
    }
    uint8_t *dates = malloc((size_t)c->ndates * 8);
    tn_kv *kv = tn_kv_new();
    tn_buf scratch = {0};
    tn_err err = dates && kv ? TN_OK : TN_ERR_NOMEM;
    for (uint32_t i = 0; !err && i < c->ndates; i++)
        tn_put_be64(dates + 8 * i, (uint64_t)c->dates[i]);
    for (uint32_t i = 0; !err && i < c->nparams; i++)
        err = tn_kv_set(kv, c->param_keys[i], c->param_values[i]);
    uint64_t id = tn_evlog_next_seq(tn_engine_log(e));
    tn_event ev;
    eng_event(&ev, TN_MACHINE_BACKFILL, TN_BF_E_CREATE, 0, 0);
    tn_event_set_int(&ev, "backfill", (int64_t)id);
    tn_event_set_str(&ev, "workflow", c->workflow);
    tn_event_set_bin(&ev, "dates", dates, (size_t)c->ndates * 8);
    tn_event_set_int(&ev, "parallel", c->parallel ? c->parallel : 1);
    if (!err && c->nparams)
        err = eng_kv_attr(&ev, "params", kv, &scratch);
    if (!err)
        err = eng_emit(e, &ev);
    tn_backfill_proj p;
    brt *b = NULL;
    if (!err && !(err = tn_evlog_backfill(tn_engine_log(e), id, &p))) {
        if (!(b = brt_from(e, &p)))
            err = TN_ERR_NOMEM;
        tn_backfill_proj_fini(&p);
    }
    free(dates);
    tn_kv_free(kv);
    tn_buf_free(&scratch);
    if (err)
        return err;
    c->out_id = id;
    snprintf(c->msg, sizeof(c->msg), "backfill %" PRIu64 " of %s: %u dates, %u at a time", id,
             c->workflow, c->ndates, b->parallel);
    return bf_pump(e, b);
}

static tn_err cmd_bf_state(tn_engine *e, tn_cmd *c)
{
    brt *b = bf_find(e->esched, c->id);
    if (!b || b->done) {
        cmd_fail(c, TN_ERR_NOENT, "no running or stopped backfill %" PRIu64, c->id);
        return TN_OK;
    }
    bool stop = c->kind == TN_CMD_BACKFILL_STOP;
    if (b->running != stop) {
        cmd_fail(c, TN_ERR_ILLEGAL, "backfill %" PRIu64 " is %s already", c->id,
                 stop ? "stopped" : "running");
        return TN_OK;
    }
    tn_err err = bf_event(e, b, stop ? TN_BF_E_STOP : TN_BF_E_RESUME, "by request");
    if (err)
        return err;
    b->running = !stop;
    snprintf(c->msg, sizeof(c->msg), "backfill %" PRIu64 " %s", c->id,
             stop ? "stopped" : "resumed");
    if (!stop)
        return bf_pump(e, b);
    char why[80];
    snprintf(why, sizeof(why), "backfill %" PRIu64 " was stopped", b->id);
    for (size_t i = 0; i < b->ninflight && !err; i++) {
        tn_errmsg m;
        wf_run *w = eng_load_wf(e, b->inflight[i], &m);
        if (w && !tn_sm_workflow.final[w->state] && w->state != TN_WF_S_READY_STOP) {
            err = sched_stop_wf(e, w, why);
            eng_touch(e, w);
        }
    }
    return err;
}

tn_err esched_apply_def(tn_engine *e, const char *name, const tn_sched_spec *sp, tn_cmd *c)
{
    tn_cmd set = {.kind = TN_CMD_SCHED_SET, .workflow = name, .sched = sp, .actor = c->actor};
    tn_err err = cmd_set(e, &set, true);
    size_t n = strlen(c->msg);
    snprintf(c->msg + n, sizeof(c->msg) - n, "; %s", set.msg);
    if (!err && set.err) /* validated at parse: a store that cannot take it */
        c->err = set.err;
    return err;
}

tn_err esched_cmd(tn_engine *e, tn_cmd *c)
{
    switch (c->kind) {
    case TN_CMD_SCHED_SET: return cmd_set(e, c, false);
    case TN_CMD_BACKFILL: return cmd_backfill(e, c);
    case TN_CMD_BACKFILL_STOP:
    case TN_CMD_BACKFILL_RESUME: return cmd_bf_state(e, c);
    default: break;
    }
    srt *s = c->workflow ? srt_get(e, c->workflow, false) : NULL;
    if (!s) {
        cmd_fail(c, TN_ERR_NOENT, "workflow \"%s\" has no schedule (`tern schedule set`)",
                 c->workflow ? c->workflow : "");
        return TN_OK;
    }
    if (c->kind != TN_CMD_SCHED_TRIGGER)
        return cmd_state(e, c, s);
    uint64_t id;
    tn_err err = fire(e, s, eng_now(e), true, false, &id);
    if (!err) {
        c->out_id = id;
        snprintf(c->msg, sizeof(c->msg), "triggered %s: instance %" PRIu64, c->workflow, id);
    }
    return err;
}

/* ---- an instance ended ---------------------------------------------------------------- */

tn_err esched_wf_final(tn_engine *e, wf_run *w)
{
    struct esched *x = e->esched;
    tn_err err = TN_OK;
    if (w->backfill) {
        brt *b = bf_find(x, w->backfill);
        if (b && ids_del(b->inflight, &b->ninflight, w->id))
            err = bf_pump(e, b);
    }
    srt *s = w->schedule ? find(x, w->schedule) : NULL;
    if (err || !s || !ids_del(s->running, &s->nrun, w->id))
        return err;
    if (w->state == TN_WF_S_FAILURE && s->pause_on_failure && s->active) {
        tn_event ev;
        char why[120];
        snprintf(why, sizeof(why), "pause_on_failure: instance %" PRIu64 " failed", w->id);
        sched_event(&ev, TN_SCHED_E_PAUSE, s->name);
        tn_event_set_str(&ev, "reason", why);
        if ((err = eng_emit(e, &ev)))
            return err;
        s->active = false;
        heap_place(e, s);
    }
    /* a buffered time starts when nothing of the schedule runs any more */
    if (s->nrun == 0 && s->nbuffered) {
        int64_t nominal = s->buffered[0];
        memmove(s->buffered, s->buffered + 1, (s->nbuffered - 1) * sizeof(int64_t));
        s->nbuffered--;
        err = fire(e, s, nominal, false, true, NULL);
    }
    return err;
}

/* ---- open / close ----------------------------------------------------------------------- */

typedef struct load_ctx {
    tn_engine *e;
    tn_err err;
    tn_errmsg *msg;
} load_ctx;

static int load_sched(void *ctx, const tn_sched_proj *p)
{
    load_ctx *l = ctx;
    if (p->state == TN_SCHED_S_REMOVED)
        return 0;
    srt *s = srt_get(l->e, p->name, true);
    if (!s) {
        l->err = TN_ERR_NOMEM;
        return 1;
    }
    tn_errmsg m = {{0}};
    if (srt_load(s, p, &m)) {
        /* a schedule the code cannot read any more must not stop the master */
        tn_warn("schedule", "msg=\"schedule not loaded\" schedule=\"%s\" why=\"%s\"", p->name,
                m.text);
        srt_drop(l->e, s);
    }
    return 0;
}

static int load_bf(void *ctx, const tn_backfill_proj *p)
{
    load_ctx *l = ctx;
    if (p->state == TN_BF_S_DONE)
        return 0;
    if (!brt_from(l->e, p)) {
        l->err = TN_ERR_NOMEM;
        return 1;
    }
    return 0;
}

tn_err esched_open(tn_engine *e, tn_errmsg *msg)
{
    struct esched *x = calloc(1, sizeof(*x));
    if (!x)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    tn_map_init(&x->by_name);
    e->esched = x;
    load_ctx l = {e, TN_OK, msg};
    tn_store *st = tn_evlog_store(tn_engine_log(e));
    tn_err err = tn_log_sched_each(st, load_sched, &l);
    if (!err)
        err = tn_log_backfill_each(st, load_bf, &l);
    if (err || l.err)
        return tn_errmsg_set(msg, err ? err : l.err, "cannot load schedules: %s",
                             tn_strerror(err ? err : l.err));
    /* the unfinished instances recovery loaded are what each schedule has running */
    for (size_t i = 0; i < e->wfs.cap; i++) {
        wf_run *w = e->wfs.slots[i].key ? e->wfs.slots[i].val : NULL;
        if (!w || tn_sm_workflow.final[w->state])
            continue;
        srt *s = w->schedule ? find(x, w->schedule) : NULL;
        brt *b = w->backfill ? bf_find(x, w->backfill) : NULL;
        if (s)
            ids_add(&s->running, &s->nrun, &s->caprun, w->id);
        if (b)
            ids_add(&b->inflight, &b->ninflight, &b->capinflight, w->id);
    }
    for (size_t i = 0; i < x->by_name.cap; i++)
        for (srt *s = x->by_name.slots[i].key ? x->by_name.slots[i].val : NULL; s; s = s->chain)
            heap_place(e, s);
    /* backfills whose instances all ended while the master was down go on */
    for (brt *b = x->bfs; b; b = b->link)
        if (b->running && b->ninflight < b->parallel)
            eng_timer_sched(e, eng_now(e));
    return TN_OK;
}

/* A dropped batch may have fired, skipped or buffered nominal times, moved a buffer or
 * started instances that never were: the runtimes go back to what the log committed
 * (what a restart would read), so those times are decided again. */
void esched_rollback(tn_engine *e)
{
    if (!e->esched)
        return;
    tn_errmsg m = {{0}};
    esched_close(e);
    if (esched_open(e, &m))
        tn_warn("schedule", "msg=\"schedules not reloaded after a dropped batch\" why=\"%s\"",
                m.text);
    /* what was due is tried again in a while, not at once (the store may still be full) */
    if (e->esched) {
        e->esched->hold = eng_now(e) + RETRY_NS;
        eng_timer_sched(e, e->esched->hold);
    }
}

void esched_close(tn_engine *e)
{
    struct esched *x = e->esched;
    if (!x)
        return;
    for (size_t i = 0; i < x->by_name.cap; i++)
        for (srt *s = x->by_name.slots[i].key ? x->by_name.slots[i].val : NULL, *n; s; s = n) {
            n = s->chain;
            srt_free(s);
        }
    tn_map_fini(&x->by_name);
    while (x->bfs) {
        brt *b = x->bfs;
        x->bfs = b->link;
        brt_free(b);
    }
    free(x->heap);
    free(x);
    e->esched = NULL;
}

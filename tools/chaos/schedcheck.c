/* `tern chaos`: the schedules' exactly-once invariant (schedcheck.h). The events are
 * folded into per-schedule lists of decisions and spec segments; the checks run at the
 * end, when the window is known. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "schedcheck.h"
#include "sm_gen.h"
#include "tz.h"
#include "util.h"

#define NAME_MAX_B 256
#define TIMES_MAX  1000000 /* nominal times enumerated per segment, a guard */

enum {
    D_FIRE,
    D_BUF_FIRE,
    D_MANUAL,
    D_SKIP,
    D_BUFFER
};

typedef struct dec {
    int kind;
    int64_t a, b; /* FIRE/BUFFER: a = nominal; SKIP: (a, b] */
    uint64_t seq;
    int seg; /* the segment it was decided in */
} dec;

/* The span of one spec: times in (from, to] of this cron are due. to = INT64_MAX while
 * the spec is current. */
typedef struct seg {
    int64_t from, to, start, end;
    char cron[TN_CRON_MAX_LEN + 1], tz[TN_TZ_MAX_NAME + 1];
    uint64_t seq;
} seg;

typedef struct ival {
    int64_t a, b;
} ival;

typedef struct sch {
    char name[NAME_MAX_B];
    bool live;    /* set and not removed */
    int64_t last; /* every time <= last is decided or not due, as the log's projection */
    seg *segs;
    size_t nseg, capseg;
    dec *decs;
    size_t ndec, capdec;
    ival *exempt; /* not due: came while paused */
    size_t nex, capex;
} sch;

typedef struct pending_fire {
    bool on;
    uint64_t seq, instance;
    int64_t nominal;
    char name[NAME_MAX_B];
} pending_fire;

struct chaos_schedchk {
    chaos_schedchk_fn fn;
    void *ctx;
    sch *v;
    size_t n, cap;
    pending_fire pf;
    chaos_schedchk_stats st;
    bool nomem;
};

static void viol(chaos_schedchk *c, uint64_t seq, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void viol(chaos_schedchk *c, uint64_t seq, const char *name, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    c->st.violations++;
    if (c->fn)
        c->fn(c->ctx, seq, name, what);
}

static void fmt_t(int64_t ns, char *buf, size_t len)
{
    tn_fmt_time(ns, buf, len);
}

chaos_schedchk *chaos_schedchk_new(chaos_schedchk_fn fn, void *ctx)
{
    chaos_schedchk *c = calloc(1, sizeof(*c));
    if (c) {
        c->fn = fn;
        c->ctx = ctx;
    }
    return c;
}

static bool attr_str(const tn_event *ev, const char *key, char *buf, size_t len)
{
    const tn_attr *a = tn_event_attr(ev, key);
    if (!a || a->type != TN_ATTR_STR || a->s.len >= len)
        return false;
    memcpy(buf, a->s.p, a->s.len);
    buf[a->s.len] = 0;
    return true;
}

static int64_t attr_i(const tn_event *ev, const char *key, int64_t dflt)
{
    int64_t v;
    return tn_event_int(ev, key, &v) ? v : dflt;
}

static sch *sch_get(chaos_schedchk *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].name, name) == 0)
            return &c->v[i];
    if (!tn_grow((void **)&c->v, &c->cap, c->n + 1, sizeof(*c->v))) {
        c->nomem = true;
        return NULL;
    }
    sch *s = &c->v[c->n++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", name);
    return s;
}

static void add_dec(chaos_schedchk *c, sch *s, dec d)
{
    d.seg = (int)s->nseg - 1;
    if (!tn_grow((void **)&s->decs, &s->capdec, s->ndec + 1, sizeof(*s->decs))) {
        c->nomem = true;
        return;
    }
    s->decs[s->ndec++] = d;
}

/* SET: a new segment from "after" (creation) or from the last decided time (a change). */
static void on_set(chaos_schedchk *c, sch *s, const tn_event *ev)
{
    seg g = {.to = INT64_MAX, .seq = ev->seq};
    if (!attr_str(ev, "cron", g.cron, sizeof(g.cron)) ||
        !attr_str(ev, "tz", g.tz, sizeof(g.tz)))
        viol(c, ev->seq, s->name, "SET without a cron or tz attr");
    g.start = attr_i(ev, "start", 0);
    g.end = attr_i(ev, "end", 0);
    if (s->live && s->nseg) {
        s->segs[s->nseg - 1].to = s->last;
        g.from = s->last;
    } else {
        g.from = attr_i(ev, "after", ev->at);
        s->last = g.from;
        if (!tn_event_attr(ev, "after"))
            viol(c, ev->seq, s->name, "the creating SET has no \"after\" attr");
    }
    s->live = true;
    if (!tn_grow((void **)&s->segs, &s->capseg, s->nseg + 1, sizeof(*s->segs))) {
        c->nomem = true;
        return;
    }
    s->segs[s->nseg++] = g;
}

static void on_decide(chaos_schedchk *c, sch *s, const tn_event *ev)
{
    int64_t nominal = attr_i(ev, "nominal", 0);
    dec d = {.seq = ev->seq, .a = nominal};
    const tn_attr *why;
    switch (ev->event) {
    case TN_SCHED_E_FIRE:
        d.kind = attr_i(ev, "manual", 0)   ? D_MANUAL :
                 attr_i(ev, "buffered", 0) ? D_BUF_FIRE :
                                             D_FIRE;
        if (!tn_event_attr(ev, "instance") || !nominal)
            viol(c, ev->seq, s->name, "FIRE without a nominal or instance attr");
        c->pf = (pending_fire){.on = true,
                               .seq = ev->seq,
                               .instance = (uint64_t)attr_i(ev, "instance", 0),
                               .nominal = nominal};
        snprintf(c->pf.name, sizeof(c->pf.name), "%s", s->name);
        break;
    case TN_SCHED_E_SKIP:
        d.kind = D_SKIP;
        d.a = attr_i(ev, "after", 0);
        d.b = attr_i(ev, "through", 0);
        if (!(why = tn_event_attr(ev, "reason")) || why->type != TN_ATTR_STR || !why->s.len)
            viol(c, ev->seq, s->name, "SKIP without a reason");
        if (d.b <= d.a)
            viol(c, ev->seq, s->name,
                 "SKIP of an empty range (after %" PRId64 ", through %" PRId64 ")", d.a, d.b);
        nominal = d.b;
        break;
    default: d.kind = D_BUFFER;
    }
    if (d.kind != D_MANUAL && d.kind != D_BUF_FIRE && nominal > s->last)
        s->last = nominal;
    add_dec(c, s, d);
}

static void on_sched(chaos_schedchk *c, const tn_event *ev)
{
    char name[NAME_MAX_B];
    if (!attr_str(ev, "schedule", name, sizeof(name))) {
        viol(c, ev->seq, "?", "schedule event without a \"schedule\" attr");
        return;
    }
    sch *s = sch_get(c, name);
    if (!s)
        return;
    switch (ev->event) {
    case TN_SCHED_E_SET: on_set(c, s, ev); break;
    case TN_SCHED_E_REMOVE:
        if (s->nseg)
            s->segs[s->nseg - 1].to = s->last;
        s->live = false;
        break;
    case TN_SCHED_E_RESUME: {
        int64_t through = attr_i(ev, "through", ev->at);
        if (through > s->last) {
            if (tn_grow((void **)&s->exempt, &s->capex, s->nex + 1, sizeof(*s->exempt)))
                s->exempt[s->nex++] = (ival){s->last, through};
            s->last = through;
        }
        break;
    }
    case TN_SCHED_E_PAUSE: break;
    default:
        if (!s->nseg)
            viol(c, ev->seq, name, "%s before any SET",
                 tn_sm_event_name(&tn_sm_schedule, ev->event));
        else
            on_decide(c, s, ev);
    }
}

/* The event after a FIRE: the SUBMIT of its instance, naming the same schedule and time. */
static void check_submit(chaos_schedchk *c, const tn_event *ev)
{
    pending_fire *pf = &c->pf;
    bool submit = ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_SUBMIT;
    char name[NAME_MAX_B] = "";
    bool named = submit && attr_str(ev, "schedule", name, sizeof(name));
    if (pf->on) {
        pf->on = false;
        if (!submit || ev->seq != pf->seq + 1 || ev->wf != pf->instance)
            viol(c, pf->seq, pf->name,
                 "FIRE of instance %" PRIu64 " is not followed by that instance's SUBMIT "
                 "(seq %" PRIu64 " is %s %s of instance %" PRIu64 ")",
                 pf->instance, ev->seq, tn_machine_name(ev->machine),
                 ev->machine == TN_MACHINE_WORKFLOW ?
                     tn_sm_event_name(&tn_sm_workflow, ev->event) :
                     "event",
                 ev->wf);
        else if (!named || strcmp(name, pf->name) != 0 || attr_i(ev, "sched", 0) != pf->nominal)
            viol(c, ev->seq, pf->name,
                 "the SUBMIT of instance %" PRIu64 " carries schedule \"%s\" and sched "
                 "%" PRId64 ", not those of its FIRE (%s, %" PRId64 ")",
                 ev->wf, name, attr_i(ev, "sched", 0), pf->name, pf->nominal);
        return;
    }
    if (named)
        viol(c, ev->seq, name,
             "instance %" PRIu64 " was started for the schedule without a FIRE before it",
             ev->wf);
}

void chaos_schedchk_event(chaos_schedchk *c, const tn_event *ev)
{
    if (!c)
        return;
    check_submit(c, ev);
    if (ev->machine == TN_MACHINE_SCHEDULE)
        on_sched(c, ev);
}

/* ---- the checks at the end ------------------------------------------------------------ */

static int64_t seg_hi(const seg *g, int64_t window_end)
{
    int64_t hi = g->to < window_end ? g->to : window_end;
    return g->end && g->end < hi ? g->end : hi;
}

/* The due times of segment g up to hi, ascending (*out malloc'd); -1 when the cron or
 * zone does not load. */
static long seg_times(const seg *g, int64_t hi, int64_t **out)
{
    tn_cron cr;
    tn_tz *tz = NULL;
    *out = NULL;
    if (tn_cron_parse(g->cron, &cr, NULL) || tn_tz_open(g->tz[0] ? g->tz : "UTC", &tz, NULL))
        return -1;
    int64_t t = g->from;
    if (g->start && t < g->start - 1)
        t = g->start - 1;
    size_t n = 0, cap = 0;
    int64_t *v = NULL;
    while (n < TIMES_MAX && tn_cron_next(&cr, tz, t, &t, NULL) == TN_OK && t <= hi) {
        if (!tn_grow((void **)&v, &cap, n + 1, sizeof(*v)))
            break;
        v[n++] = t;
    }
    tn_tz_free(tz);
    *out = v;
    return (long)n;
}

static bool exempt(const sch *s, int64_t t)
{
    for (size_t i = 0; i < s->nex; i++)
        if (t > s->exempt[i].a && t <= s->exempt[i].b)
            return true;
    return false;
}

static bool in_times(const int64_t *v, long n, int64_t t)
{
    long lo = 0, hi = n;
    while (lo < hi) {
        long m = (lo + hi) / 2;
        if (v[m] < t)
            lo = m + 1;
        else
            hi = m;
    }
    return lo < n && v[lo] == t;
}

/* One nominal time t of s: how it was decided. */
static void check_time(chaos_schedchk *c, const sch *s, int64_t t)
{
    unsigned nf = 0, nb = 0, nbf = 0, ns = 0;
    uint64_t seq2 = 0;
    for (size_t i = 0; i < s->ndec; i++) {
        const dec *d = &s->decs[i];
        bool hit = d->kind == D_SKIP ? t > d->a && t <= d->b : d->a == t;
        if (!hit || d->kind == D_MANUAL)
            continue;
        unsigned *k = d->kind == D_FIRE   ? &nf :
                      d->kind == D_BUFFER ? &nb :
                      d->kind == D_SKIP   ? &ns :
                                            &nbf;
        if (++*k > 1 || nf + nb + ns > 1)
            seq2 = d->seq;
    }
    char at[40];
    fmt_t(t, at, sizeof(at));
    bool ex = exempt(s, t);
    c->st.nominal++;
    if (ex)
        c->st.not_due++;
    if (nf + nb + ns == 0 && !ex)
        viol(c, 0, s->name, "nominal time %s was never decided (no FIRE, SKIP or BUFFER of it)",
             at);
    else if (nf + nb + ns > 1)
        viol(c, seq2, s->name, "nominal time %s decided %u times (%u FIRE, %u SKIP, %u BUFFER)",
             at, nf + nb + ns, nf, ns, nb);
    if (nbf > 1 || (nbf && !nb))
        viol(c, seq2, s->name, "nominal time %s: %u buffered FIRE(s) for %u BUFFER", at, nbf,
             nb);
    c->st.fired += nf;
    c->st.skipped += ns && nf + nb + ns == 1;
    c->st.buffered += nb;
    c->st.buffered_fired += nbf;
    c->st.pending += nb && !nbf;
}

/* The decisions of segment k of s that are not of a due time (a FIRE or BUFFER of a time
 * its cron does not give, or one at or before the SET's "after"). */
static void check_strays(chaos_schedchk *c, const sch *s, size_t k, const int64_t *v, long n,
                         int64_t hi)
{
    for (size_t i = 0; i < s->ndec; i++) {
        const dec *d = &s->decs[i];
        if (d->seg != (int)k)
            continue;
        c->st.manual += d->kind == D_MANUAL;
        if (d->kind == D_MANUAL || d->kind == D_SKIP || d->a > hi || in_times(v, n, d->a))
            continue;
        char at[40];
        fmt_t(d->a, at, sizeof(at));
        viol(c, d->seq, s->name,
             "%s of %s, which is not a nominal time of its cron (%s) after the SET",
             d->kind == D_BUFFER ? "BUFFER" : "FIRE", at, s->segs[k].cron);
    }
}

static void check_sched(chaos_schedchk *c, const sch *s, int64_t window_end)
{
    c->st.schedules++;
    for (size_t k = 0; k < s->nseg; k++) {
        const seg *g = &s->segs[k];
        int64_t hi = seg_hi(g, window_end);
        int64_t *v;
        long n = seg_times(g, hi, &v);
        if (n < 0) {
            viol(c, g->seq, s->name, "its cron \"%s\" or zone \"%s\" does not load", g->cron,
                 g->tz);
            continue;
        }
        for (long i = 0; i < n; i++)
            check_time(c, s, v[i]);
        check_strays(c, s, k, v, n, hi);
        free(v);
    }
}

uint64_t chaos_schedchk_finish(chaos_schedchk *c, int64_t window_end, chaos_schedchk_stats *st)
{
    if (!c) {
        if (st)
            *st = (chaos_schedchk_stats){.violations = 1};
        return 1;
    }
    if (c->pf.on)
        viol(c, c->pf.seq, c->pf.name,
             "FIRE of instance %" PRIu64 " is the last event: no SUBMIT follows it",
             c->pf.instance);
    if (c->nomem)
        viol(c, 0, "?", "out of memory while reading the log");
    for (size_t i = 0; i < c->n; i++)
        check_sched(c, &c->v[i], window_end);
    uint64_t nv = c->st.violations;
    if (st)
        *st = c->st;
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].segs);
        free(c->v[i].decs);
        free(c->v[i].exempt);
    }
    free(c->v);
    free(c);
    return nv;
}

uint64_t chaos_schedchk_run(const tn_event *evs, size_t n, int64_t window_end,
                            chaos_schedchk_fn fn, void *ctx, chaos_schedchk_stats *st)
{
    chaos_schedchk *c = chaos_schedchk_new(fn, ctx);
    for (size_t i = 0; c && i < n; i++)
        chaos_schedchk_event(c, &evs[i]);
    return chaos_schedchk_finish(c, window_end, st);
}

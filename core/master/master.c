/* The master daemon: engine thread, workers over the transport (placement, dispatch,
 * kill, acks, heartbeats, failover, reconciliation) and the control socket. */
#include "master.h"
#include "alerts.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctlsrv.h"
#include "httpapi.h"
#include "jsonout.h"
#include "prom.h"
#include "engine.h"
#include "log.h"
#include "map.h"
#include "mp.h"
#include "util.h"
#include "proto.h"
#include "daemon.h"
#include "rpc.h"

#define MAX_GROUPS 16
#define MAX_GAUGES 32

/* Limits agree end to end: what a definition may hold fits a DISPATCH, a DISPATCH fits a
 * frame, a frame fits the receiver's bound and a worker's send queue. The definition's
 * params (up to TN_DEF_MAX_PARAMS values of TN_DEF_MAX_STRING bytes each, with upstream
 * outputs added at run time) can exceed any frame: a DISPATCH over TN_PROTO_MSG_MAX is
 * refused when encoded, and the task fails once with the reason (ex_dispatch). */
#define DISPATCH_FIXED_MAX                                              \
    ((size_t)TN_DEF_MAX_COMMAND + TN_DEF_MAX_STRING /* env prelude */ + \
     4 * TN_PROTO_ID_MAX /* name, group, user, sender */ + TN_PROTO_TYPE_MAX + 1024)
_Static_assert(TN_DEF_MAX_COMMAND <= TN_PROTO_COMMAND_MAX, "a definition's command fits");
_Static_assert(TN_DEF_MAX_STRING <= TN_PROTO_ENV_MAX, "an environment prelude fits");
_Static_assert(TN_DEF_MAX_STRING <= TN_PROTO_VALUE_MAX, "a param value fits");
_Static_assert(TN_DEF_MAX_NAME <= TN_PROTO_KEY_MAX, "a param name fits");
_Static_assert(TN_DEF_MAX_NAME <= TN_PROTO_ID_MAX, "a task name fits");
_Static_assert(TN_DEF_MAX_PARAMS <= TN_PROTO_PAIRS_MAX, "a params map fits");
/* the largest command with the most params of 1 KiB each, and as many noop outputs */
_Static_assert(DISPATCH_FIXED_MAX + 2ull * TN_DEF_MAX_PARAMS * (TN_DEF_MAX_NAME + 1024 + 16) <=
                   TN_PROTO_MSG_MAX,
               "a DISPATCH of the format's maximum command and params fits a message");
_Static_assert(TN_PROTO_MSG_MAX + 1024 <= TN_PROTO_FRAME_MAX,
               "the largest message fits a frame");
_Static_assert(TN_PROTO_QUEUE_MAX >= TN_PROTO_MSG_MAX,
               "a worker's queue takes the largest one");

typedef struct worker_view {
    struct worker_view *next;
    char name[TN_PROTO_ID_MAX + 1];
    char listen_url[TN_PROTO_URL_MAX + 1], ctl_url[TN_PROTO_URL_MAX + 1];
    char groups[MAX_GROUPS][TN_PROTO_ID_MAX + 1];
    unsigned ngroups;
    uint32_t slots, running, load_milli, max_load_milli;
    uint64_t mem_free, mem_reserve, epoch;
    int64_t last_hb; /* monotonic ns */
    int64_t first_seen;
    bool alive;
    uint64_t reconcile_seq; /* assignments before this were asked about */
    int64_t reconcile_at;   /* monotonic ns of the last RECONCILE sent */
    bool reconcile_open;    /* the last RECONCILE is not answered: asked again each second */
    tn_tx tx;               /* dispatches go here */
    tn_outq *q;
    uint32_t assigned;
    char gauge_keys[MAX_GAUGES][40];
    uint64_t gauge_vals[MAX_GAUGES];
    unsigned ngauges;
    char degraded[512];  /* the worker's last spawn failure ("" = healthy) */
    int64_t degraded_at; /* unix ns */
    bool gone;           /* its registry (ZooKeeper) session ended: lost at once */
} worker_view;

/* An attempt placed on a worker (the latest attempt of each task). */
typedef struct placement {
    uint64_t task;
    uint32_t attempt;
    uint64_t seq;   /* placement order: compared with a worker's reconcile_seq */
    bool confirmed; /* after a restart: the worker said it runs it */
    char worker[TN_PROTO_ID_MAX + 1];
    /* DISPATCH until ACCEPTED, KILL until its result: resent with backoff (the wire may
     * drop them; the worker takes each attempt once) */
    void *enc;
    size_t len;
    int64_t next_send;
    uint32_t tries;
} placement;

static void placement_free(placement *a)
{
    if (a)
        free(a->enc);
    free(a);
}

/* Keep an encoding (taken: freed with a) to resend to a's worker until answered. */
static void placement_keep_enc(placement *a, tn_buf *b)
{
    free(a->enc);
    a->enc = b->data;
    a->len = b->size;
    a->tries = 0;
    a->next_send = tn_mono_ns() + 1000000000LL;
    *b = (tn_buf){0};
}

/* Keep an encoded message to resend to a's worker until answered. */
static void placement_keep(placement *a, const tn_msg *m)
{
    tn_buf b = {0};
    free(a->enc);
    a->enc = NULL;
    if (tn_msg_encode(m, &b) == TN_OK) {
        a->enc = b.data;
        a->len = b.size;
        a->tries = 0;
        a->next_send = tn_mono_ns() + 1000000000LL;
    } else {
        tn_buf_free(&b);
    }
}

struct tn_master {
    tn_master_opts o;
    char data[PATH_MAX], ctl[4200], id[80];
    tn_engine *e;
    tn_alerter *alerter;
    tn_rpc_server *rpc;
    tn_ctlsrv cs;
    tn_httpapi *http; /* the HTTP API and /metrics, when --http is given */
    tn_tx rx;         /* reports from workers */
    tn_tx_tls tls;
    bool use_tls;
    pthread_t thread;
    atomic_bool stop;
    /* the engine's first step is done: a restart's takeover has named every attempt the
     * log left running (ex_running), so a worker's RECONCILED can be judged by them */
    atomic_bool taken_over;
    const char *takeover_hold; /* fault injection (TERN_FAULT_TAKEOVER_HOLD) */
    pthread_mutex_t mu;        /* workers and assignments */
    worker_view *workers;
    tn_map asgs; /* task id -> placement* */
    uint64_t seq;
    uint32_t rr; /* round robin cursor */
    uint64_t rng;
    int64_t started; /* monotonic */
    /* the store's cluster id, in every frame; frames of another cluster are refused */
    char cluster[TN_PROTO_CLUSTER_MAX + 1];
    atomic_llong cluster_refused_at; /* monotonic ns of the last "another cluster" error */
    atomic_ullong cluster_refused;   /* frames of another cluster refused since */

    /* the leader epoch every frame to workers carries (0 without ZooKeeper); passive: a
     * leader that lost its session (or was fenced) sends nothing to workers */
    atomic_ullong epoch;
    atomic_bool passive, fenced;
    atomic_ullong fenced_epoch;      /* the newest epoch a worker said it follows */
    atomic_ullong fenced_answers;    /* FENCED answers taken */
    tn_log_every fenced_ignored_log; /* under mu */

    uint32_t nworkers;
    int64_t full_logged; /* monotonic ns of the last "too many workers" line */
    uint64_t refused;    /* frames and reports refused (sender checks) */
};

int tn_selector_parse(const char *s)
{
    if (!s || strcmp(s, "lower_weight") == 0)
        return TN_SELECT_LOWER_WEIGHT;
    if (strcmp(s, "random") == 0)
        return TN_SELECT_RANDOM;
    if (strcmp(s, "round_robin") == 0)
        return TN_SELECT_ROUND_ROBIN;
    return -1;
}

const char *tn_master_ctl_url(const tn_master *m)
{
    return m->ctl;
}

const char *tn_master_cluster_id(const tn_master *m)
{
    return m->cluster;
}

static worker_view *find_worker(tn_master *m, const char *name)
{
    for (worker_view *w = m->workers; w; w = w->next)
        if (strcmp(w->name, name) == 0)
            return w;
    return NULL;
}

static void send_to(tn_master *m, worker_view *w, const tn_msg *msg)
{
    if (!w->q || !w->tx.ops || atomic_load(&m->passive))
        return;
    if (tn_outq_push(w->q, msg) == TN_OK)
        (void)tn_outq_flush(w->q, w->tx, NULL);
}

/* ------------------------------------------------------------------------------ */
/* the executor the engine sees */

static bool in_group(const worker_view *w, const char *g)
{
    for (unsigned i = 0; i < w->ngroups; i++)
        if (strcmp(w->groups[i], g) == 0)
            return true;
    return false;
}

static bool ex_place(void *self, const tn_place_req *r, char *worker, size_t wlen, char *why,
                     size_t whylen)
{
    tn_master *m = self;
    const char *g = r->worker_group ? r->worker_group : r->node->worker_group;
    pthread_mutex_lock(&m->mu);
    unsigned in = 0, full = 0, over = 0, nc = 0;
    worker_view *cand[256];
    for (worker_view *w = m->workers; w; w = w->next) {
        if (!w->alive || !in_group(w, g))
            continue;
        in++;
        if (w->assigned >= w->slots) {
            full++;
            continue;
        }
        bool mem =
            w->mem_free > w->mem_reserve && w->mem_free - w->mem_reserve >= r->node->memory_max;
        if ((w->max_load_milli && w->load_milli >= w->max_load_milli) || !mem) {
            over++;
            continue;
        }
        if (nc < 256)
            cand[nc++] = w;
    }
    worker_view *pick = NULL;
    if (nc) {
        switch (m->o.selector) {
        case TN_SELECT_RANDOM:
            m->rng ^= m->rng << 13;
            m->rng ^= m->rng >> 7;
            m->rng ^= m->rng << 17;
            pick = cand[m->rng % nc];
            break;
        case TN_SELECT_ROUND_ROBIN: pick = cand[m->rr++ % nc]; break;
        default: {
            /* lower weight: load and how full it is, by heartbeat and by our own count */
            uint64_t best = UINT64_MAX;
            for (unsigned i = 0; i < nc; i++) {
                uint64_t wgt =
                    (uint64_t)cand[i]->load_milli +
                    1000ull * cand[i]->assigned / (cand[i]->slots ? cand[i]->slots : 1);
                if (wgt < best) {
                    best = wgt;
                    pick = cand[i];
                }
            }
        }
        }
    }
    if (pick) {
        placement *a = tn_map_get(&m->asgs, r->task);
        if (!a && (a = calloc(1, sizeof(*a))) && tn_map_put(&m->asgs, r->task, a)) {
            free(a);
            a = NULL;
        }
        if (a) {
            if (a->worker[0] && a->attempt != r->attempt) {
                worker_view *old = find_worker(m, a->worker);
                if (old && old->assigned)
                    old->assigned--;
            }
            a->task = r->task;
            a->attempt = r->attempt;
            a->seq = ++m->seq;
            a->confirmed = true;
            snprintf(a->worker, sizeof(a->worker), "%s", pick->name);
            pick->assigned++;
        }
        snprintf(worker, wlen, "%s", pick->name);
    } else if (in == 0) {
        snprintf(why, whylen, "no live worker in group \"%s\"", g);
    } else if (full == in) {
        snprintf(why, whylen, "all %u workers of group \"%s\" are full", in, g);
    } else {
        snprintf(why, whylen,
                 "all %u workers of group \"%s\" are full or overloaded (%u over "
                 "their load or memory limit)",
                 in, g, over);
    }
    pthread_mutex_unlock(&m->mu);
    return pick != NULL;
}

static tn_pair *pairs(const char *const *k, const char *const *v, uint32_t n)
{
    tn_pair *p = calloc(n ? n : 1, sizeof(*p));
    for (uint32_t i = 0; p && i < n; i++) {
        p[i].key = tn_str_c(k[i]);
        p[i].val = tn_str_c(v[i]);
    }
    return p;
}

/* A DISPATCH that cannot be encoded (over a wire bound) never will be: the attempt fails
 * once with the reason, instead of failing over to be dispatched again (and again). */
static void dispatch_unsendable(tn_master *m, const tn_dispatch_req *r, tn_err e,
                                const char *worker)
{
    char why[400];
    snprintf(why, sizeof(why),
             "the dispatch cannot be sent: %s (a DISPATCH holds at most %u bytes, %u params "
             "of %u bytes each, a command of %u bytes): make the command or params smaller",
             tn_strerror(e), (unsigned)TN_PROTO_MSG_MAX, (unsigned)TN_PROTO_PAIRS_MAX,
             (unsigned)TN_PROTO_VALUE_MAX, (unsigned)TN_PROTO_COMMAND_MAX);
    tn_error("master",
             "msg=\"dispatch cannot be sent, the task fails\" task=%" PRIu64 " attempt=%u "
             "worker=%s why=\"%s\"",
             r->task, r->attempt, worker, tn_strerror(e));
    pthread_mutex_lock(&m->mu);
    placement *a = tn_map_get(&m->asgs, r->task);
    if (a && a->attempt == r->attempt) {
        worker_view *w = find_worker(m, a->worker);
        if (w && w->assigned)
            w->assigned--;
        placement_free(tn_map_del(&m->asgs, r->task));
    }
    pthread_mutex_unlock(&m->mu);
    tn_report fail = {.kind = TN_REPORT_RESULT,
                      .wf = r->wf,
                      .task = r->task,
                      .attempt = r->attempt,
                      .success = false,
                      .exit_code = -1,
                      .reason = why};
    tn_engine_report(m->e, &fail);
}

/* Encode, queue and keep (for resend until ACCEPTED) a DISPATCH for the placed worker. */
static void send_dispatch(tn_master *m, const tn_dispatch_req *r, tn_msg *msg)
{
    tn_buf enc = {0};
    bool sent = false;
    char who[TN_PROTO_ID_MAX + 1] = "?";
    pthread_mutex_lock(&m->mu);
    placement *a = tn_map_get(&m->asgs, r->task);
    worker_view *w = a && a->attempt == r->attempt ? find_worker(m, a->worker) : NULL;
    if (w) {
        msg->dispatch.worker_epoch = w->epoch; /* a later run of that worker drops it */
        snprintf(who, sizeof(who), "%s", w->name);
    }
    tn_err e = tn_msg_encode(msg, &enc);
    if (e == TN_ERR_TOOBIG || e == TN_ERR_INVAL) {
        pthread_mutex_unlock(&m->mu);
        tn_buf_free(&enc);
        dispatch_unsendable(m, r, e, who);
        return;
    }
    if (!e && w && w->alive && w->q) {
        /* passive (no lease): kept, sent by check_workers once the lease is back */
        tn_err qe = atomic_load(&m->passive) ? TN_OK : tn_outq_push(w->q, msg);
        if (qe == TN_OK && !atomic_load(&m->passive))
            (void)tn_outq_flush(w->q, w->tx, NULL);
        else /* a backlog (the queue holds any one message): resent with backoff */
            tn_warn("master",
                    "msg=\"worker queue full, the dispatch waits for a resend\" task=%" PRIu64
                    " worker=%s why=\"%s\"",
                    r->task, w->name, tn_strerror(qe));
        placement_keep_enc(a, &enc);
        sent = true;
    }
    pthread_mutex_unlock(&m->mu);
    tn_buf_free(&enc);
    if (!sent) {
        /* the worker went away between placement and now: fail the attempt over */
        tn_report lost = {.kind = TN_REPORT_LOST,
                          .wf = r->wf,
                          .task = r->task,
                          .attempt = r->attempt,
                          .reason = "its worker went away before the "
                                    "dispatch was sent"};
        tn_engine_report(m->e, &lost);
    }
}

static void ex_dispatch(void *self, const tn_dispatch_req *r)
{
    tn_master *m = self;
    const tn_def_task *n = r->node;
    tn_msg msg = {.type = TN_MSG_DISPATCH};
    tn_msg_dispatch *d = &msg.dispatch;
    d->task = r->task;
    d->wf = r->wf;
    d->attempt = r->attempt;
    d->name = tn_str_c(n->name);
    d->type = tn_str_c(tn_def_task_type_name(n->type));
    d->command = tn_str_c(r->command);
    d->env_prelude = tn_str_c(r->env_prelude);
    tn_pair *pp = pairs(r->param_keys, r->param_values, r->nparams);
    d->params = (tn_pairs){pp, pp ? r->nparams : 0};
    d->worker_group = tn_str_c(r->worker_group ? r->worker_group : n->worker_group);
    d->timeout_ms = n->timeout_ms;
    d->kill_grace_ms = n->kill_grace_ms;
    d->memory_max = n->memory_max;
    d->cpu_max_milli = n->cpu_max_milli;
    d->pids_max = n->pids_max;
    d->noop_success = n->noop.result == TN_DEF_NOOP_SUCCESS;
    d->noop_duration_ms = n->noop.duration_ms;
    tn_pair *op = calloc(n->noop.outputs.n ? n->noop.outputs.n : 1, sizeof(tn_pair));
    for (uint32_t i = 0; op && i < n->noop.outputs.n; i++) {
        op[i].key = tn_str_c(n->noop.outputs.items[i].key);
        op[i].val = tn_str_c(n->noop.outputs.items[i].value);
    }
    d->noop_outputs = (tn_pairs){op, op ? n->noop.outputs.n : 0};
    d->deadline_ns = r->deadline_ns;
    d->user = tn_str_c(r->tenant);
    send_dispatch(m, r, &msg);
    free(pp);
    free(op);
}

static void ex_kill(void *self, uint64_t wf, uint64_t task, uint32_t attempt, uint64_t grace_ms)
{
    tn_master *m = self;
    tn_msg msg = {.type = TN_MSG_KILL};
    msg.kill = (tn_msg_kill){task, attempt, grace_ms, TN_STR("killed by the master")};
    pthread_mutex_lock(&m->mu);
    placement *a = tn_map_get(&m->asgs, task);
    bool current = a && a->attempt == attempt;
    worker_view *w = current ? find_worker(m, a->worker) : NULL;
    if (w) {
        send_to(m, w, &msg);
        placement_keep(a, &msg);
    } else {
        /* a stale attempt, or one we do not know the place of: every worker hears it,
         * those that do not run it ignore it */
        for (worker_view *x = m->workers; x; x = x->next)
            if (x->alive)
                send_to(m, x, &msg);
    }
    bool known = w && w->alive;
    /* recovered after a restart, its worker not heard from yet: the kill waits for it
     * (resent once it is known); if it does not come back in time, check_workers loses it */
    bool pending = current && !w && !a->confirmed;
    if (pending) {
        placement_keep(a, &msg);
    } else if (!known && current) {
        /* lost: should its worker come back running it, it is stale there (fencing) */
        if (w && w->assigned)
            w->assigned--;
        placement_free(tn_map_del(&m->asgs, task));
    }
    pthread_mutex_unlock(&m->mu);
    (void)wf;
    if (!known && current && !pending) {
        /* nobody can kill it: its worker is gone; losing it ends it */
        tn_report lost = {.kind = TN_REPORT_LOST,
                          .wf = wf,
                          .task = task,
                          .attempt = attempt,
                          .reason = "its worker is gone"};
        tn_engine_report(m->e, &lost);
    }
}

static int ex_running(void *self, uint64_t task, uint32_t attempt)
{
    tn_master *m = self;
    /* after a restart the master does not know yet: it asks the worker (RECONCILE) and
     * reports LOST for what the worker does not run, or if it never comes back. Which
     * worker ran it is filled in from the log by the first liveness check (the engine is
     * still opening here). */
    pthread_mutex_lock(&m->mu);
    placement *a = tn_map_get(&m->asgs, task);
    if (!a && (a = calloc(1, sizeof(*a))) && tn_map_put(&m->asgs, task, a)) {
        free(a);
        a = NULL;
    }
    if (a) {
        a->task = task;
        a->attempt = attempt;
        a->seq = 0;
        a->confirmed = false;
        a->worker[0] = 0;
    }
    pthread_mutex_unlock(&m->mu);
    return a ? -1 : 0;
}

static void ex_ack(void *self, const tn_report *r)
{
    tn_master *m = self;
    if (!r->worker && r->kind == TN_REPORT_RESULT) {
        /* the engine failed the attempt before dispatch (a param error): its placement
         * never reached the worker, so its slot is freed here */
        pthread_mutex_lock(&m->mu);
        placement *a = tn_map_get(&m->asgs, r->task);
        if (a && a->attempt == r->attempt) {
            worker_view *w = find_worker(m, a->worker);
            if (w && w->assigned)
                w->assigned--;
            placement_free(tn_map_del(&m->asgs, r->task));
        }
        pthread_mutex_unlock(&m->mu);
        return;
    }
    if (!r->report_id || !r->worker)
        return;
    tn_msg msg = {.type = TN_MSG_PERSISTED};
    msg.persisted = (tn_msg_persisted){r->report_id, r->task, r->attempt};
    pthread_mutex_lock(&m->mu);
    worker_view *w = find_worker(m, r->worker);
    if (w)
        send_to(m, w, &msg);
    /* a finished attempt frees its slot */
    if (r->kind == TN_REPORT_RESULT || r->kind == TN_REPORT_KILL_RESULT) {
        placement *a = tn_map_get(&m->asgs, r->task);
        if (a && a->attempt == r->attempt && strcmp(a->worker, r->worker) == 0) {
            if (w && w->assigned)
                w->assigned--;
            placement_free(tn_map_del(&m->asgs, r->task));
        }
    }
    pthread_mutex_unlock(&m->mu);
}

static const tn_executor_ops wire_ops = {ex_dispatch, ex_kill, ex_running, ex_place, ex_ack};

/* ------------------------------------------------------------------------------ */
/* worker messages (transport thread) */

static void lost_attempts(tn_master *m, worker_view *w, const tn_task_attempts *still,
                          uint64_t before, const char *why)
{
    /* called with mu held: every assignment on w placed before `before` and not in
     * `still` is lost; collect first, report after (reports take the engine lock) */
    tn_report *lost = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < m->asgs.cap; i++) {
        placement *a = m->asgs.slots[i].key ? m->asgs.slots[i].val : NULL;
        if (!a || strcmp(a->worker, w->name) != 0 || a->seq >= before)
            continue;
        bool runs = false;
        for (uint32_t j = 0; still && j < still->n; j++)
            if (still->v[j].task == a->task && still->v[j].attempt == a->attempt)
                runs = true;
        if (runs) {
            a->confirmed = true;
            continue;
        }
        if (!tn_grow((void **)&lost, &cap, n + 1, sizeof(*lost)))
            break;
        /* no workflow id: LOST is fenced by task and attempt */
        lost[n++] = (tn_report){
            .kind = TN_REPORT_LOST, .task = a->task, .attempt = a->attempt, .reason = why};
        if (w->assigned)
            w->assigned--;
        placement_free(tn_map_del(&m->asgs, a->task));
        i = (size_t)-1; /* the table moved: start over */
        if (!m->asgs.cap)
            break;
    }
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++)
        tn_engine_report(m->e, &lost[i]);
    free(lost);
    pthread_mutex_lock(&m->mu);
}

/* Ask w what it runs (RECONCILE); its answer decides what is lost. With mu held. */
static void ask_reconcile(tn_master *m, worker_view *w)
{
    w->reconcile_seq = ++m->seq;
    w->reconcile_at = tn_mono_ns();
    w->reconcile_open = true;
    tn_msg rc = {.type = TN_MSG_RECONCILE};
    rc.reconcile.epoch = w->reconcile_seq;
    send_to(m, w, &rc);
}

/* What a heartbeat says of its worker (groups, capacity, load, gauges). With m->mu held. */
static void heartbeat_copy(worker_view *w, const tn_msg_heartbeat *h)
{
    w->ngroups = 0;
    for (uint32_t i = 0; i < h->groups.n && i < MAX_GROUPS; i++)
        snprintf(w->groups[w->ngroups++], TN_PROTO_ID_MAX + 1, "%.*s", (int)h->groups.v[i].len,
                 h->groups.v[i].p);
    w->slots = h->slots;
    w->running = h->running;
    w->load_milli = h->load_milli;
    w->mem_free = h->mem_free;
    w->mem_reserve = h->mem_reserve;
    w->epoch = h->epoch;
    w->last_hb = tn_mono_ns();
    snprintf(w->degraded, sizeof(w->degraded), "%.*s", (int)h->degraded.len, h->degraded.p);
    w->degraded_at = h->degraded_at;
    w->max_load_milli = 0;
    w->ngauges = 0;
    for (uint32_t i = 0; i < h->gauges.n && w->ngauges < MAX_GAUGES; i++) {
        if (tn_str_eq(h->gauges.v[i].key, "max_load_milli"))
            w->max_load_milli = (uint32_t)h->gauges.v[i].val;
        snprintf(w->gauge_keys[w->ngauges], 40, "%.*s", (int)h->gauges.v[i].key.len,
                 h->gauges.v[i].key.p);
        w->gauge_vals[w->ngauges++] = h->gauges.v[i].val;
    }
}

/* A sender to the worker's listen URL (its certificate's name checked over TLS). With
 * m->mu held; false, logged, when the worker cannot be reached. */
static bool worker_redial(tn_master *m, worker_view *w)
{
    tn_tx_free(&w->tx);
    tn_outq_free(w->q);
    w->q = NULL;
    tn_errmsg em = {{0}};
    tn_tx inner;
    /* over TLS the worker's listener must present the certificate of that name */
    tn_tx_tls tls = m->tls;
    tls.server_name = w->name;
    tn_err e =
        tn_tx_new(w->listen_url, true, m->use_tls ? &tls : NULL, NULL, NULL, &inner, &em);
    if (!e)
        e = tn_tx_fault_from_env(inner, &w->tx, &em);
    if (!e)
        e = tn_tx_dial(w->tx, w->listen_url, &em);
    if (!e)
        e = tn_outq_new(m->id, 256, 4u << 20, TN_PROTO_QUEUE_MAX, &w->q);
    if (!e) {
        tn_outq_set_cluster(w->q, m->cluster);
        tn_outq_set_epoch(w->q, atomic_load(&m->epoch));
    }
    if (e) {
        char en[300], eu[4 * TN_PROTO_URL_MAX + 8], ew[1100];
        tn_error("master", "msg=\"cannot reach worker\" worker=%s url=%s why=%s",
                 tn_log_escape(w->name, en, sizeof(en)),
                 tn_log_escape(w->listen_url, eu, sizeof(eu)),
                 tn_log_escape(em.text, ew, sizeof(ew)));
        return false;
    }
    return true;
}

/* A worker has seen a leader newer than us: we are fenced; nothing we send is taken
 * there, and we stop sending (the cluster's leader is another master). `how`: what said
 * so (its heartbeat, or its FENCED answer to our frames). */
static void fenced_by(tn_master *m, const char *worker, uint64_t seen, const char *how)
{
    uint64_t ours = atomic_load(&m->epoch);
    if (seen <= ours)
        return;
    atomic_store(&m->passive, true);
    uint64_t was = atomic_load(&m->fenced_epoch);
    while (seen > was && !atomic_compare_exchange_weak(&m->fenced_epoch, &was, seen))
        ;
    if (atomic_exchange(&m->fenced, true))
        return;
    char en[300];
    tn_error("master",
             "msg=\"fenced: a worker follows a newer leader; this master stops dispatching\" "
             "worker=%s epoch=%" PRIu64 " newer=%" PRIu64 " by=%s",
             tn_log_escape(worker, en, sizeof(en)), ours, seen, how);
}

/* A worker refused our frames as a fenced leader's: we are fenced if its epoch is newer
 * than ours. Taken only from a worker we know, about us, with a newer epoch; anything else
 * is ignored (logged once per 10 s: a peer may send it at will). */
static void on_fenced(tn_master *m, const char *sender, const tn_msg_fenced *f)
{
    char worker[TN_PROTO_ID_MAX + 1], about[TN_PROTO_ID_MAX + 1];
    snprintf(worker, sizeof(worker), "%.*s", (int)f->worker.len, f->worker.p);
    snprintf(about, sizeof(about), "%.*s", (int)f->master.len, f->master.p);
    uint64_t ours = atomic_load(&m->epoch);
    pthread_mutex_lock(&m->mu);
    const char *why = strcmp(worker, sender) != 0 ? "it names another worker than its sender" :
                      !find_worker(m, worker)     ? "not from a worker of this master" :
                      strcmp(about, m->id) != 0   ? "it is about another master" :
                      f->epoch <= ours            ? "its epoch is not newer than ours" :
                                                    NULL;
    if (why) {
        char ew[300], ea[300];
        tn_log_every_f(&m->fenced_ignored_log, TN_LOG_WARN, "master",
                       "msg=\"FENCED ignored\" why=\"%s\" worker=%s master=%s epoch=%" PRIu64
                       " ours=%" PRIu64 " refused=%" PRIu64,
                       why, tn_log_escape(worker, ew, sizeof(ew)),
                       tn_log_escape(about, ea, sizeof(ea)), f->epoch, ours, f->refused);
        pthread_mutex_unlock(&m->mu);
        return;
    }
    pthread_mutex_unlock(&m->mu);
    atomic_fetch_add(&m->fenced_answers, 1);
    fenced_by(m, worker, f->epoch, "FENCED");
}

static void on_heartbeat(tn_master *m, const tn_msg_heartbeat *h)
{
    char name[TN_PROTO_ID_MAX + 1];
    snprintf(name, sizeof(name), "%.*s", (int)h->worker.len, h->worker.p);
    pthread_mutex_lock(&m->mu);
    worker_view *w = find_worker(m, name);
    bool fresh = !w;
    if (!w && m->nworkers >= m->o.max_workers) {
        int64_t now = tn_mono_ns();
        if (now - m->full_logged > 1000000000LL) {
            char en[300];
            tn_warn("master",
                    "msg=\"worker refused: too many workers\" worker=%s max_workers=%u "
                    "detail=\"raise --max-workers, or wait: silent workers are forgotten\"",
                    tn_log_escape(name, en, sizeof(en)), m->o.max_workers);
            m->full_logged = now;
        }
        pthread_mutex_unlock(&m->mu);
        return;
    }
    if (!w) {
        w = calloc(1, sizeof(*w));
        if (!w) {
            pthread_mutex_unlock(&m->mu);
            return;
        }
        snprintf(w->name, sizeof(w->name), "%s", name);
        w->first_seen = tn_mono_ns();
        w->next = m->workers;
        m->workers = w;
        m->nworkers++;
    }
    char url[TN_PROTO_URL_MAX + 1];
    snprintf(url, sizeof(url), "%.*s", (int)h->listen_url.len, h->listen_url.p);
    bool redial = fresh || strcmp(url, w->listen_url) != 0 || !w->tx.ops;
    bool rebooted = !fresh && w->epoch != h->epoch;
    bool back = !w->alive;
    snprintf(w->listen_url, sizeof(w->listen_url), "%s", url);
    snprintf(w->ctl_url, sizeof(w->ctl_url), "%.*s", (int)h->ctl_url.len, h->ctl_url.p);
    heartbeat_copy(w, h);
    if (redial && !worker_redial(m, w)) {
        pthread_mutex_unlock(&m->mu);
        return;
    }
    w->alive = true;
    uint64_t hb_ms = 0;
    for (uint32_t i = 0; i < h->gauges.n; i++) {
        if (tn_str_eq(h->gauges.v[i].key, "heartbeat_ms"))
            hb_ms = h->gauges.v[i].val;
        if (tn_str_eq(h->gauges.v[i].key, "master_epoch"))
            fenced_by(m, w->name, h->gauges.v[i].val, "heartbeat");
    }
    if ((fresh || rebooted) && hb_ms && m->o.heartbeat_timeout_ms < 3 * hb_ms)
        tn_warn("master",
                "msg=\"heartbeat timeout under 3 heartbeats: the worker may be lost while "
                "alive\" worker=%s heartbeat_ms=%" PRIu64 " heartbeat_timeout_ms=%" PRIu64
                " fix=\"raise --heartbeat-timeout or lower the worker's --heartbeat\"",
                w->name, hb_ms, m->o.heartbeat_timeout_ms);
    if (fresh || rebooted || back || redial) {
        /* ask what it runs: what it does not is lost, what it runs and is not ours is
         * killed (fencing) */
        char en[300], eu[4 * TN_PROTO_URL_MAX + 8];
        tn_info("master", "msg=\"worker joined\" worker=%s url=%s epoch=%" PRIu64 " slots=%u",
                tn_log_escape(w->name, en, sizeof(en)),
                tn_log_escape(w->listen_url, eu, sizeof(eu)), w->epoch, w->slots);
        ask_reconcile(m, w);
    }
    pthread_mutex_unlock(&m->mu);
    tn_engine_wake(m->e);
}

static void on_reconciled(tn_master *m, const char *worker, const tn_msg_reconciled *r)
{
    pthread_mutex_lock(&m->mu);
    worker_view *w = find_worker(m, worker);
    if (!w || !atomic_load(&m->taken_over)) {
        /* before the takeover, the attempts the log left running are not placed yet: the
         * answer would make them stale and kill them. It stays open, asked again after. */
        if (w)
            tn_debug("master",
                     "msg=\"RECONCILED before the takeover; asked again after it\" "
                     "worker=%s",
                     w->name);
        pthread_mutex_unlock(&m->mu);
        return;
    }
    /* what it runs that is not the current attempt placed on it is stale: kill it. A
     * current attempt recovered from the log whose worker is not named yet (name_recovered
     * runs beside this) is not: it is the one placed, and it was killed, its workflow
     * stopped, when a restarted master heard RECONCILED first */
    for (uint32_t i = 0; i < r->running.n; i++) {
        placement *a = tn_map_get(&m->asgs, r->running.v[i].task);
        if (a && a->attempt == r->running.v[i].attempt &&
            (!a->worker[0] || strcmp(a->worker, w->name) == 0))
            continue;
        tn_msg k = {.type = TN_MSG_KILL};
        k.kill = (tn_msg_kill){r->running.v[i].task, r->running.v[i].attempt, 0,
                               TN_STR("stale attempt (fenced)")};
        tn_info("master",
                "msg=\"killing a stale attempt\" worker=%s task=%" PRIu64 " attempt=%u",
                w->name, r->running.v[i].task, r->running.v[i].attempt);
        send_to(m, w, &k);
    }
    if (r->epoch == w->reconcile_seq)
        w->reconcile_open = false;
    lost_attempts(m, w, &r->running, r->epoch, "its worker does not run it any more");
    pthread_mutex_unlock(&m->mu);
    tn_engine_wake(m->e);
}

typedef struct rx_ctx {
    tn_master *m;
} rx_ctx;

/* A frame being decoded and who sent it (the transport says). */
typedef struct frame_ctx {
    tn_master *m;
    const tn_peer *peer;
    bool checked, ok; /* the frame's sender against the peer, once per frame */
} frame_ctx;

/* Whether the peer may speak for worker `claimed`: a TLS peer with a name only for itself,
 * with a worker's certificate; peers without a name (ipc of our uid, inproc, plain tcp
 * under --insecure) as they claim. Logs a refusal. */
static bool sender_ok(tn_master *m, const tn_peer *peer, const char *claimed, const char *what)
{
    if (!peer->name[0] && !peer->role[0])
        return true;
    if (strcmp(peer->name, claimed) == 0 &&
        (!peer->role[0] || strcmp(peer->role, "worker") == 0))
        return true;
    char ec[300], en[300], er[80];
    tn_warn("master",
            "msg=\"frame refused: sender is not the authenticated peer\" what=%s claimed=%s "
            "cn=%s ou=%s pipe=%u",
            what, tn_log_escape(claimed, ec, sizeof(ec)),
            tn_log_escape(peer->name, en, sizeof(en)),
            tn_log_escape(peer->role, er, sizeof(er)), peer->pipe);
    __atomic_add_fetch(&m->refused, 1, __ATOMIC_RELAXED);
    return false;
}

/* Whether a report about (task, attempt) from worker is applied: only from the worker the
 * attempt is placed on. Reports for attempts not placed here go to the engine, which
 * fences them by task and attempt. */
static bool report_ok(tn_master *m, const tn_peer *peer, const char *worker, uint64_t task,
                      uint32_t attempt, const char *what)
{
    pthread_mutex_lock(&m->mu);
    placement *a = tn_map_get(&m->asgs, task);
    char placed[TN_PROTO_ID_MAX + 1] = "";
    if (a && a->worker[0] && strcmp(a->worker, "?") != 0 && strcmp(a->worker, worker) != 0)
        snprintf(placed, sizeof(placed), "%s", a->worker);
    pthread_mutex_unlock(&m->mu);
    if (!placed[0])
        return true;
    char ec[300], en[300], ep[300];
    tn_warn("master",
            "msg=\"report refused: not from the worker the attempt is placed on\" what=%s "
            "task=%" PRIu64 " attempt=%u claimed=%s peer=%s placed_on=%s",
            what, task, attempt, tn_log_escape(worker, ec, sizeof(ec)),
            peer->name[0]       ? tn_log_escape(peer->name, en, sizeof(en)) :
            peer->authenticated ? "unnamed" :
                                  "unauthenticated",
            tn_log_escape(placed, ep, sizeof(ep)));
    __atomic_add_fetch(&m->refused, 1, __ATOMIC_RELAXED);
    return false;
}

/* The kill hooks a worker ran, as one line for the KILLED event's "hooks" attr:
 * "CMD -> OUTCOME; ..." (a refused id: "ID -> refused: ..."), cut at TN_HOOKS_ATTR_MAX
 * with a marker. */
#define TN_HOOKS_ATTR_MAX 2048
static void hooks_line(const tn_hook_runs *h, char *out, size_t cap)
{
    static const char cut[] = " ...(cut)";
    size_t o = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < h->n && o < cap; i++) {
        const tn_str *what = h->v[i].command.len ? &h->v[i].command : &h->v[i].id;
        int n = snprintf(out + o, cap - o, "%s%.*s -> %.*s", i ? "; " : "", (int)what->len,
                         what->p, (int)h->v[i].outcome.len, h->v[i].outcome.p);
        o += n > 0 ? (size_t)n : 0;
    }
    if (o >= cap) /* cut: the marker replaces the end */
        memcpy(out + cap - sizeof(cut), cut, sizeof(cut));
    for (char *p = out; *p; p++) /* one line, whatever a worker sent */
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            *p = '?';
}

static void on_kill_result(tn_master *m, tn_report *r, const tn_msg_kill_result *k)
{
    char hooks[TN_HOOKS_ATTR_MAX];
    r->kind = TN_REPORT_KILL_RESULT;
    r->report_id = k->report_id;
    r->task = k->task;
    r->attempt = k->attempt;
    if (k->survivors.n)
        r->reason = "processes survived the kill (see the worker's log)";
    if (k->hooks.n) {
        hooks_line(&k->hooks, hooks, sizeof(hooks));
        r->hooks = hooks;
    }
    tn_engine_report(m->e, r);
}

static tn_err on_msg(void *arg, tn_str sender, const tn_msg *msg)
{
    frame_ctx *fc = arg;
    tn_master *m = fc->m;
    char worker[TN_PROTO_ID_MAX + 1];
    snprintf(worker, sizeof(worker), "%.*s", (int)sender.len, sender.p);
    tn_report r = {.worker = worker};
    char containment[TN_PROTO_CONTAINMENT_MAX + 1];
    if (!fc->checked) {
        fc->ok = sender_ok(m, fc->peer, worker, "frame");
        fc->checked = true;
    }
    if (!fc->ok)
        return TN_ERR_PERM; /* the rest of the frame is not looked at */
    if (msg->type == TN_MSG_HEARTBEAT) {
        char hw[TN_PROTO_ID_MAX + 1];
        snprintf(hw, sizeof(hw), "%.*s", (int)msg->heartbeat.worker.len,
                 msg->heartbeat.worker.p);
        if (!sender_ok(m, fc->peer, hw, "HEARTBEAT"))
            return TN_OK;
    }
    if ((msg->type == TN_MSG_ACCEPTED && !report_ok(m, fc->peer, worker, msg->accepted.task,
                                                    msg->accepted.attempt, "ACCEPTED")) ||
        (msg->type == TN_MSG_RESULT &&
         !report_ok(m, fc->peer, worker, msg->result.task, msg->result.attempt, "RESULT")) ||
        (msg->type == TN_MSG_KILL_RESULT &&
         !report_ok(m, fc->peer, worker, msg->kill_result.task, msg->kill_result.attempt,
                    "KILL_RESULT")))
        return TN_OK;
    switch (msg->type) {
    case TN_MSG_HEARTBEAT: on_heartbeat(m, &msg->heartbeat); return TN_OK;
    case TN_MSG_RECONCILED: on_reconciled(m, worker, &msg->reconciled); return TN_OK;
    case TN_MSG_FENCED: on_fenced(m, worker, &msg->fenced); return TN_OK;
    case TN_MSG_ACCEPTED: {
        pthread_mutex_lock(&m->mu);
        placement *a = tn_map_get(&m->asgs, msg->accepted.task);
        if (a && a->attempt == msg->accepted.attempt && a->enc && a->tries < UINT32_MAX) {
            /* a DISPATCH is answered by ACCEPTED; a KILL waits for its result */
            tn_mp rd;
            tn_mp_init(&rd, a->enc, a->len);
            uint32_t n;
            uint64_t type = 0;
            if (tn_mp_array(&rd, 64, &n) && tn_mp_u64(&rd, &type) && type == TN_MSG_DISPATCH) {
                free(a->enc);
                a->enc = NULL;
            }
        }
        pthread_mutex_unlock(&m->mu);
    }
        r.kind = TN_REPORT_ACCEPTED;
        r.report_id = msg->accepted.report_id;
        r.task = msg->accepted.task;
        r.attempt = msg->accepted.attempt;
        r.pid = msg->accepted.pid;
        snprintf(containment, sizeof(containment), "%.*s", (int)msg->accepted.containment.len,
                 msg->accepted.containment.p);
        r.containment = containment[0] ? containment : NULL;
        break;
    case TN_MSG_RESULT: {
        const tn_msg_result *x = &msg->result;
        r.kind = TN_REPORT_RESULT;
        r.report_id = x->report_id;
        r.task = x->task;
        r.attempt = x->attempt;
        r.success = x->success;
        r.exit_code = x->exit_code;
        char *reason = x->reason.len ? strndup(x->reason.p, x->reason.len) : NULL;
        r.reason = reason;
        char **k = calloc(x->outputs.n + 1, sizeof(char *)),
             **v = calloc(x->outputs.n + 1, sizeof(char *));
        for (uint32_t i = 0; k && v && i < x->outputs.n; i++) {
            k[i] = strndup(x->outputs.v[i].key.p, x->outputs.v[i].key.len);
            v[i] = strndup(x->outputs.v[i].val.p, x->outputs.v[i].val.len);
        }
        r.out_keys = (const char *const *)k;
        r.out_values = (const char *const *)v;
        r.nout = k && v ? x->outputs.n : 0;
        /* the task's workflow id is the engine's business: fenced by task and attempt */
        tn_engine_report(m->e, &r);
        for (uint32_t i = 0; k && v && i < x->outputs.n; i++) {
            free(k[i]);
            free(v[i]);
        }
        free(k);
        free(v);
        free(reason);
        return TN_OK;
    }
    case TN_MSG_KILL_RESULT: on_kill_result(m, &r, &msg->kill_result); return TN_OK;
    default: return TN_OK; /* a master->worker type sent to us: ignore */
    }
    tn_engine_report(m->e, &r);
    return TN_OK;
}

/* A frame from a worker bound to another cluster (it ran for a master on another store)
 * is refused whole: its reports name task ids of that store, and what it runs is not ours
 * to kill. Loud, once per 10 s. A worker not bound yet sends "" and binds to us. */
static bool cluster_accepts(tn_master *m, const void *buf, size_t len)
{
    tn_str sender, c;
    if (tn_frame_header(buf, len, &sender, &c) != TN_OK || c.len == 0 ||
        (c.len == strlen(m->cluster) && memcmp(c.p, m->cluster, c.len) == 0))
        return true;
    unsigned long long n = atomic_fetch_add(&m->cluster_refused, 1) + 1;
    long long now = tn_mono_ns(), last = atomic_load(&m->cluster_refused_at);
    if ((last == 0 || now - last >= 10000000000LL) &&
        atomic_compare_exchange_strong(&m->cluster_refused_at, &last, now)) {
        atomic_store(&m->cluster_refused, 0);
        tn_error("master",
                 "msg=\"frame from a worker of another cluster refused\" sender=\"%.*s\" "
                 "cluster=\"%.*s\" ours=%s refused=%llu data=%s hint=\"this master's store "
                 "is not the one that worker ran for: check --data, or remove the worker's "
                 "DATA/cluster-id to move it here\"",
                 (int)sender.len, sender.p, (int)c.len, c.p, m->cluster, n, m->data);
    }
    return false;
}

static void on_frame(void *arg, const void *buf, size_t len, const tn_peer *peer)
{
    tn_master *m = arg;
    tn_errmsg em = {{0}};
    frame_ctx fc = {m, peer, false, false};
    if (!m->o.insecure && !peer->authenticated) {
        tn_warn("master", "msg=\"frame refused: peer not authenticated\" pipe=%u bytes=%zu",
                peer->pipe, len);
        return;
    }
    if (!cluster_accepts(m, buf, len))
        return;
    tn_err e = tn_frame_decode(buf, len, on_msg, &fc, &em);
    if (e != TN_OK && e != TN_ERR_PERM) {
        char ew[1100];
        tn_warn("master", "msg=\"malformed frame dropped\" bytes=%zu why=%s", len,
                tn_log_escape(em.text, ew, sizeof(ew)));
    }
}

/* ------------------------------------------------------------------------------ */
/* liveness (engine thread, between steps) */

/* Attempts recovered from the log: which worker had them. The projections are read
 * with m->mu released: the engine thread takes m->mu (placement) while it holds a read
 * transaction, so holding m->mu while opening one would order the two locks both ways. */
static void name_recovered(tn_master *m)
{
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->asgs.cap; i++) {
        placement *a = m->asgs.slots[i].key ? m->asgs.slots[i].val : NULL;
        if (a && !a->worker[0] && tn_grow((void **)&ids, &cap, n + 1, sizeof(*ids)))
            ids[n++] = a->task;
    }
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++) {
        tn_task_proj p;
        bool known = tn_evlog_task(tn_engine_log(m->e), ids[i], &p) == TN_OK && p.worker[0];
        pthread_mutex_lock(&m->mu);
        placement *a = tn_map_get(&m->asgs, ids[i]);
        if (a && !a->worker[0]) {
            snprintf(a->worker, sizeof(a->worker), "%s", known ? p.worker : "?");
            worker_view *w = find_worker(m, a->worker);
            if (w && w->alive) /* it may have answered RECONCILE already: ask again */
                ask_reconcile(m, w);
        }
        pthread_mutex_unlock(&m->mu);
    }
    free(ids);
}

/* Workers silent for forget_after_ms with nothing placed on them are forgotten: their
 * sender (a dialer redialling a URL that may be dead for good) is closed and freed. With
 * mu held. Bounds what heartbeats of made-up workers can leave behind. */
static void forget_workers(tn_master *m, int64_t now)
{
    int64_t limit = (int64_t)m->o.forget_after_ms * 1000000;
    for (worker_view **pw = &m->workers; *pw;) {
        worker_view *w = *pw;
        if (w->alive || w->assigned || now - w->last_hb <= limit) {
            pw = &w->next;
            continue;
        }
        bool placed = false;
        for (size_t i = 0; i < m->asgs.cap && !placed; i++) {
            placement *a = m->asgs.slots[i].key ? m->asgs.slots[i].val : NULL;
            placed = a && strcmp(a->worker, w->name) == 0;
        }
        if (placed) {
            pw = &w->next;
            continue;
        }
        *pw = w->next;
        m->nworkers--;
        char en[300];
        tn_info("master", "msg=\"worker forgotten\" worker=%s silent_ms=%" PRId64,
                tn_log_escape(w->name, en, sizeof(en)), (now - w->last_hb) / 1000000);
        tn_tx_free(&w->tx);
        tn_outq_free(w->q);
        free(w);
    }
}

static void check_workers(tn_master *m)
{
    int64_t now = tn_mono_ns(), limit = (int64_t)m->o.heartbeat_timeout_ms * 1000000;
    name_recovered(m);
    pthread_mutex_lock(&m->mu);
    /* a RECONCILE or its answer the wire lost would leave what it asks about (recovered
     * attempts, a new run's predecessor's, stale ones to kill) waiting for ever: a live
     * worker is asked again every second until it answers the last one */
    for (worker_view *w = m->workers; w; w = w->next)
        if (w->alive && w->reconcile_open && now - w->reconcile_at > 1000000000LL)
            ask_reconcile(m, w);
    for (worker_view *w = m->workers; w; w = w->next) {
        if (!w->alive || now - w->last_hb <= limit)
            continue;
        w->alive = false;
        char en[300];
        tn_warn("master", "msg=\"worker lost\" worker=%s silent_ms=%" PRId64,
                tn_log_escape(w->name, en, sizeof(en)), (now - w->last_hb) / 1000000);
        lost_attempts(m, w, NULL, UINT64_MAX,
                      w->gone ? "its worker's registry session ended" :
                                "its worker stopped sending heartbeats");
        w->gone = false;
        w->assigned = 0;
        /* What was queued for it when its connection broke went with that socket
         * (transport/nng.c, sockgen); what is sent later waits for its next run, which
         * drops a DISPATCH meant for another run and has a stale attempt killed at its
         * first reconcile (docs/RELIABILITY.md, bug 8). */
    }
    forget_workers(m, now);
    /* DISPATCH and KILL the wire may have dropped: again, with backoff */
    for (size_t i = 0; i < m->asgs.cap; i++) {
        placement *a = m->asgs.slots[i].key ? m->asgs.slots[i].val : NULL;
        if (!a || !a->enc || a->next_send > now)
            continue;
        worker_view *w = find_worker(m, a->worker);
        if (!w || !w->alive || !w->tx.ops || atomic_load(&m->passive))
            continue;
        tn_buf b = {0};
        tn_frame f;
        if (tn_frame_begin_epoch(&f, &b, m->id, m->cluster, atomic_load(&m->epoch)) == TN_OK &&
            tn_frame_add_encoded(&f, a->enc, a->len) == TN_OK && tn_frame_end(&f) == TN_OK)
            (void)tn_tx_send(w->tx, b.data, b.size);
        tn_buf_free(&b);
        a->tries++;
        int64_t back = 1000000000LL << (a->tries < 4 ? a->tries : 4);
        a->next_send = now + back;
    }
    /* attempts recovered from the log whose worker never came back */
    if (now - m->started > limit) {
        tn_report *lost = NULL;
        size_t n = 0, cap = 0;
        for (size_t i = 0; i < m->asgs.cap; i++) {
            placement *a = m->asgs.slots[i].key ? m->asgs.slots[i].val : NULL;
            if (!a || a->confirmed)
                continue;
            worker_view *w = find_worker(m, a->worker);
            if (w && w->alive)
                continue; /* asked; its answer decides */
            if (!tn_grow((void **)&lost, &cap, n + 1, sizeof(*lost)))
                break;
            lost[n++] = (tn_report){.kind = TN_REPORT_LOST,
                                    .task = a->task,
                                    .attempt = a->attempt,
                                    .reason = "its worker did not come back after the master "
                                              "restarted"};
            a->confirmed = true; /* reported once */
        }
        /* lost: should its worker come back running it, it is stale there (fencing) */
        for (size_t i = 0; i < n; i++)
            placement_free(tn_map_del(&m->asgs, lost[i].task));
        pthread_mutex_unlock(&m->mu);
        for (size_t i = 0; i < n; i++)
            tn_engine_report(m->e, &lost[i]);
        free(lost);
        return;
    }
    pthread_mutex_unlock(&m->mu);
}

static void *engine_thread(void *arg)
{
    tn_master *m = arg;
    int64_t last_check = 0;
    /* held (fault injection): workers join and answer before the takeover, at most 60 s */
    for (int64_t until = tn_mono_ns() + 60000000000LL;
         m->takeover_hold && access(m->takeover_hold, F_OK) != 0 && !atomic_load(&m->stop) &&
         tn_mono_ns() < until;)
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    while (!atomic_load(&m->stop)) {
        tn_errmsg em = {{0}};
        size_t n = tn_engine_step(m->e, &em);
        if (!atomic_load(&m->taken_over)) {
            /* the takeover is done: what workers answered before it is asked again */
            atomic_store(&m->taken_over, true);
            pthread_mutex_lock(&m->mu);
            for (worker_view *w = m->workers; w; w = w->next)
                if (w->alive && w->reconcile_open)
                    ask_reconcile(m, w);
            pthread_mutex_unlock(&m->mu);
        }
        int64_t now = tn_mono_ns();
        if (now - last_check > 100000000LL) {
            check_workers(m);
            last_check = now;
        }
        if (em.text[0]) {
            /* the commit failed (a full store): the timers it rolled back are due again at
             * once; pause instead of spinning (and logging) at full speed until it fits */
            struct timespec ts = {0, 200000000L};
            nanosleep(&ts, NULL);
        } else if (n == 0) {
            tn_engine_wait(m->e, 50000000LL);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------ */
/* control helpers */

static bool worker_ctl(void *arg, const char *worker, char *url, size_t len)
{
    tn_master *m = arg;
    pthread_mutex_lock(&m->mu);
    worker_view *w = find_worker(m, worker);
    bool ok = w && w->alive && w->ctl_url[0];
    if (ok)
        snprintf(url, len, "%s", w->ctl_url);
    pthread_mutex_unlock(&m->mu);
    return ok;
}

/* One worker of `tern workers --json`. */
static json_t *worker_json(const worker_view *w, double ago)
{
    json_t *groups = json_array(), *gauges = json_object();
    for (unsigned g = 0; groups && g < w->ngroups; g++)
        tn_jo_push(groups, tn_jo_str(w->groups[g]));
    for (unsigned g = 0; gauges && g < w->ngauges; g++)
        tn_jo_set(gauges, w->gauge_keys[g], json_integer((json_int_t)w->gauge_vals[g]));
    return json_pack("{s:o,s:b,s:o,s:I,s:I,s:I,s:o,s:I,s:I,s:o,s:o,s:b,s:o,s:I,s:o}", "name",
                     tn_jo_str(w->name), "alive", w->alive, "groups", groups, "slots",
                     (json_int_t)w->slots, "running", (json_int_t)w->running, "assigned",
                     (json_int_t)w->assigned, "load", tn_jo_milli(w->load_milli / 1000.0),
                     "mem_free", (json_int_t)w->mem_free, "mem_reserve",
                     (json_int_t)w->mem_reserve, "last_heartbeat_s", tn_jo_milli(ago), "listen",
                     tn_jo_str(w->listen_url), "degraded", w->degraded[0] != 0, "last_error",
                     tn_jo_str(w->degraded), "last_error_at_ns", (json_int_t)w->degraded_at,
                     "gauges", gauges);
}

static void workers_table(void *arg, tn_sb *text, tn_sb *json)
{
    tn_master *m = arg;
    int64_t now = tn_mono_ns();
    tn_sb_printf(text, "%-16s %-6s %-20s %5s %7s %6s %10s %8s  %s\n", "WORKER", "ALIVE",
                 "GROUPS", "SLOTS", "RUNNING", "LOAD", "MEM_FREE", "HB_AGO", "LISTEN");
    json_t *arr = json_array();
    pthread_mutex_lock(&m->mu);
    unsigned i = 0;
    for (worker_view *w = m->workers; w; w = w->next, i++) {
        char groups[256] = "";
        for (unsigned g = 0; g < w->ngroups; g++)
            snprintf(groups + strlen(groups), sizeof(groups) - strlen(groups), "%s%s",
                     g ? "," : "", w->groups[g]);
        double ago = (double)(now - w->last_hb) / 1e9;
        tn_sb_printf(text, "%-16s %-6s %-20s %5u %7u %6.2f %9" PRIu64 "M %7.1fs  %s\n", w->name,
                     w->alive ? "yes" : "no", groups, w->slots, w->running,
                     w->load_milli / 1000.0, w->mem_free >> 20, ago, w->listen_url);
        tn_jo_push(arr, worker_json(w, ago));
        if (w->degraded[0]) {
            char when[64];
            tn_fmt_time(w->degraded_at, when, sizeof(when));
            tn_sb_printf(text, "    DEGRADED since %s: %s\n", when, w->degraded);
        }
        if (w->ngauges) {
            tn_sb_printf(text, "    ");
            for (unsigned g = 0; g < w->ngauges; g++)
                tn_sb_printf(text, " %s=%" PRIu64, w->gauge_keys[g], w->gauge_vals[g]);
            tn_sb_printf(text, "\n");
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (!tn_jo_dump(json, arr))
        tn_sb_printf(json,
                     "{\"error\":\"out of memory writing the workers' JSON; try again\"}");
}

/* /metrics: the workers the master knows and their slots. */
static void workers_metrics(void *arg, tn_sb *b)
{
    tn_master *m = arg;
    uint64_t alive = 0, dead = 0, slots = 0, running = 0, assigned = 0;
    pthread_mutex_lock(&m->mu);
    for (worker_view *w = m->workers; w; w = w->next) {
        if (!w->alive) {
            dead++;
            continue;
        }
        alive++;
        slots += w->slots;
        running += w->running;
        assigned += w->assigned;
    }
    pthread_mutex_unlock(&m->mu);
    tn_prom_head(b, "tern_workers", "gauge", "Workers the master knows, alive or lost.");
    tn_prom_sample(b, "tern_workers", "state=\"alive\"", (double)alive);
    tn_prom_sample(b, "tern_workers", "state=\"lost\"", (double)dead);
    tn_prom_head(b, "tern_cluster_slots", "gauge",
                 "Slots of the alive workers: their total, the tasks they run (their last "
                 "heartbeat) and the attempts the master placed on them.");
    tn_prom_sample(b, "tern_cluster_slots", "kind=\"total\"", (double)slots);
    tn_prom_sample(b, "tern_cluster_slots", "kind=\"running\"", (double)running);
    tn_prom_sample(b, "tern_cluster_slots", "kind=\"assigned\"", (double)assigned);
    tn_prom_head(b, "tern_master_fenced", "gauge",
                 "1 when a worker follows a newer leader than this master (it stopped "
                 "dispatching); the epoch label is that leader's.");
    char l[64];
    snprintf(l, sizeof(l), "epoch=\"%llu\"", (unsigned long long)atomic_load(&m->fenced_epoch));
    tn_prom_sample(b, "tern_master_fenced", l, atomic_load(&m->fenced) ? 1 : 0);
    tn_prom_head(b, "tern_master_fenced_answers_total", "counter",
                 "FENCED answers taken from workers that refused this master's frames.");
    tn_prom_sample(b, "tern_master_fenced_answers_total", NULL,
                   (double)atomic_load(&m->fenced_answers));
}

/* /metrics: the master's, then its owner's (opts.metrics: a cluster's gauges). */
static void master_metrics(void *arg, tn_sb *b)
{
    tn_master *m = arg;
    workers_metrics(m, b);
    if (m->o.metrics)
        m->o.metrics(m->o.metrics_arg, b);
}

/* The HTTP API on --http, before the engine thread runs (see tn_httpapi_start). */
static tn_err http_serve(tn_master *m, tn_errmsg *msg)
{
    const tn_master_opts *o = &m->o;
    if (!o->http_addr)
        return TN_OK;
    tn_httpapi_opts ho = {.http = {.addr = o->http_addr,
                                   .cert = o->http_cert,
                                   .key = o->http_key,
                                   .ca = o->http_ca},
                          .cs = &m->cs,
                          .log_tls = {o->tls_ca, o->tls_cert, o->tls_key},
                          .metrics = master_metrics,
                          .arg = m,
                          .ui_dir = o->ui_dir};
    return tn_httpapi_start(&ho, &m->http, msg);
}

int tn_master_http_port(const tn_master *m)
{
    return m->http ? tn_httpapi_port(m->http) : 0;
}

/* The control socket: ipc (the default) in a 0700 data directory; tcp only when asked
 * for with ctl_insecure (warned at every start); tls+tcp with the master's TLS files. */
static tn_err ctl_serve(tn_master *m, tn_errmsg *msg)
{
    const tn_master_opts *o = &m->o;
    bool ipc = strncmp(m->ctl, "ipc://", 6) == 0;
    if (!ipc && strncmp(m->ctl, "inproc://", 9) != 0 && strncmp(m->ctl, "tls+", 4) != 0) {
        if (!o->ctl_insecure)
            return tn_errmsg_set(msg, TN_ERR_INVAL,
                                 "%s: a plain tcp control socket carries tokens in clear; use "
                                 "tls+tcp:// (with --tls-ca, --tls-cert, --tls-key), or pass "
                                 "--insecure to accept that",
                                 m->ctl);
        tn_warn("master",
                "msg=\"control socket on plain tcp (--insecure): tokens and commands travel "
                "in clear; anyone on the path can read and replay them\" ctl=%s",
                m->ctl);
    }
    char dflt[4200];
    tn_master_default_ctl(m->data, dflt, sizeof(dflt));
    /* the data dir holds the store, the tokens and the socket: only its user goes in */
    if (ipc && strcmp(dflt, m->ctl) == 0 && chmod(m->data, 0700) != 0)
        tn_warn("master", "msg=\"cannot make the data directory 0700\" data=%s why=\"%m\"",
                m->data);
    tn_rpc_tls tls = {o->tls_ca, o->tls_cert, o->tls_key};
    return tn_rpc_serve_peer(m->ctl, &tls, tn_ctlsrv_handle, &m->cs, &m->rpc, msg);
}

/* ------------------------------------------------------------------------------ */

tn_err tn_master_start(const tn_master_opts *opts, tn_master **out, tn_errmsg *msg)
{
    tn_master *m = calloc(1, sizeof(*m));
    if (!m)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    m->o = *opts;
    if (!m->o.heartbeat_timeout_ms)
        m->o.heartbeat_timeout_ms = 10000;
    if (!m->o.max_workers)
        m->o.max_workers = 1024;
    if (!m->o.forget_after_ms)
        m->o.forget_after_ms = 10 * m->o.heartbeat_timeout_ms;
    pthread_mutex_init(&m->mu, NULL);
    tn_map_init(&m->asgs);
    m->rng = (uint64_t)tn_now_ns() | 1;
    atomic_store(&m->epoch, opts->epoch);
    atomic_store(&m->passive, opts->passive);
    m->started = tn_mono_ns();
    snprintf(m->id, sizeof(m->id), "master:%s", opts->id ? opts->id : "local");
    tn_err e;
    if (tn_mkdir_p(opts->data_dir) != 0) {
        e = tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot create the data directory; check --data",
                          opts->data_dir);
        goto fail;
    }
    if (!realpath(opts->data_dir, m->data))
        snprintf(m->data, sizeof(m->data), "%s", opts->data_dir);
    if (opts->ctl_url)
        snprintf(m->ctl, sizeof(m->ctl), "%s", opts->ctl_url);
    else
        tn_master_default_ctl(m->data, m->ctl, sizeof(m->ctl));
    if (opts->tls_cert || opts->tls_key || opts->tls_ca) {
        m->tls = (tn_tx_tls){opts->tls_ca, opts->tls_cert, opts->tls_key, NULL};
        m->use_tls = true;
    }
    tn_executor ex = {&wire_ops, m, "workers"};
    tn_engine_opts eo = {.data_dir = m->data,
                         .log = opts->log,
                         .executor = ex,
                         .master_id = opts->id,
                         .alerts = opts->alerts,
                         .nalerts = opts->nalerts};
    eo.log.create = true;
    if ((e = tn_engine_open(&eo, &m->e, msg)))
        goto fail;
    if (opts->gate)
        tn_engine_gate(m->e, opts->gate, opts->gate_arg);
    snprintf(m->cluster, sizeof(m->cluster), "%s", tn_evlog_cluster_id(tn_engine_log(m->e)));

    /* the operator learns at once when a --data path made a new store (a typo would) */
    if (tn_evlog_created(tn_engine_log(m->e)))
        fprintf(stderr, "created a new store in %s\n", m->data);
    /* embedded without a listen URL: no receiver (nothing would reach it) */
    if (opts->listen_url &&
        ((e = tn_tx_new(opts->listen_url, false, m->use_tls ? &m->tls : NULL, on_frame, m,
                        &m->rx, msg)) ||
         (e = tn_tx_listen(m->rx, opts->listen_url, msg))))
        goto fail;
    m->cs = (tn_ctlsrv){m->e, m, worker_ctl, workers_table, m->data, opts->tls_ca, NULL, NULL};
    m->takeover_hold = getenv("TERN_FAULT_TAKEOVER_HOLD");
    if (m->takeover_hold && !*m->takeover_hold)
        m->takeover_hold = NULL;
    if (m->takeover_hold) {
        char eh[1100];
        tn_info("master", "msg=\"faults injected\" takeover_hold=%s",
                tn_log_escape(m->takeover_hold, eh, sizeof(eh)));
    }
    if ((e = ctl_serve(m, msg)) || (e = http_serve(m, msg)))
        goto fail;
    if (pthread_create(&m->thread, NULL, engine_thread, m) != 0) {
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the engine thread");
        goto fail;
    }
    {
        const char *dflt = NULL;
        for (uint32_t i = 0; i < opts->nalerts; i++)
            if (opts->alerts[i].command)
                dflt = opts->alerts[i].command;
        tn_alerter_opts ao = {.allow_commands = opts->allow_alert_commands,
                              .default_command = dflt};
        if (tn_alerter_start(m->e, &ao, &m->alerter, msg) != TN_OK)
            tn_warn("master", "msg=\"alerts will not be sent\" why=\"%s\"", msg->text);
    }
    tn_info("master", "msg=\"started\" data=%s cluster=%s listen=%s ctl=%s", m->data,
            m->cluster, opts->listen_url ? opts->listen_url : "-", m->ctl);
    *out = m;
    return TN_OK;
fail:
    tn_httpapi_stop(m->http);
    tn_rpc_server_free(m->rpc);
    tn_tx_free(&m->rx);
    tn_engine_close(m->e);
    pthread_mutex_destroy(&m->mu);
    tn_map_fini(&m->asgs);
    free(m);
    return e;
}

static void wake_engine(void *arg)
{
    tn_master *m = arg;
    tn_engine_wake(m->e);
}

void tn_master_stop(tn_master *m)
{
    if (!m)
        return;
    tn_alerter_stop(m->alerter); /* it talks to the engine thread: before that stops */
    tn_httpapi_stop(m->http);    /* its requests wait on the engine thread: first */
    tn_daemon_stop(m->rpc, &m->rx, &m->stop, wake_engine, NULL, m, m->thread);
    /* close every sender first (never blocks), so their sockets go down together and
     * the frees below wait for each about as long as for the slowest one */
    for (worker_view *w = m->workers; w; w = w->next)
        tn_tx_close(w->tx);
    while (m->workers) {
        worker_view *w = m->workers;
        m->workers = w->next;
        tn_tx_free(&w->tx);
        tn_outq_free(w->q);
        free(w);
    }
    for (size_t i = 0; i < m->asgs.cap; i++)
        if (m->asgs.slots[i].key)
            placement_free(m->asgs.slots[i].val);
    tn_map_fini(&m->asgs);
    tn_engine_close(m->e);
    pthread_mutex_destroy(&m->mu);
    free(m);
    tn_info("master", "msg=\"stopped\"");
}

tn_engine *tn_master_engine(tn_master *m)
{
    return m->e;
}

void tn_master_set_passive(tn_master *m, bool passive)
{
    atomic_store(&m->passive, passive);
    if (!passive)
        tn_engine_wake(m->e);
}

bool tn_master_fenced(tn_master *m)
{
    return atomic_load(&m->fenced);
}

uint64_t tn_master_epoch(tn_master *m)
{
    return atomic_load(&m->epoch);
}

void tn_master_worker_gone(tn_master *m, const char *name)
{
    pthread_mutex_lock(&m->mu);
    worker_view *w = find_worker(m, name);
    if (w && w->alive) {
        /* the next liveness check (within 100 ms) loses it and fails its attempts over */
        w->last_hb = tn_mono_ns() - (int64_t)m->o.heartbeat_timeout_ms * 1000000 - 1;
        w->gone = true;
        tn_warn("master", "msg=\"worker's registry session ended: lost\" worker=%s", w->name);
    }
    pthread_mutex_unlock(&m->mu);
    tn_engine_wake(m->e);
}

void tn_master_workers_each(tn_master *m, void (*fn)(void *arg, const char *name), void *arg)
{
    char(*names)[TN_PROTO_ID_MAX + 1] = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&m->mu);
    for (worker_view *w = m->workers; w; w = w->next)
        if (w->alive && tn_grow((void **)&names, &cap, n + 1, sizeof(*names)))
            snprintf(names[n++], sizeof(*names), "%s", w->name);
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < n; i++)
        fn(arg, names[i]);
    free(names);
}

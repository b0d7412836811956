/* Replay: the verifier. Walks the events in seq order, re-runs the generated tables,
 * re-folds the projections and re-computes the chain; then compares with the store. */
#include "replay.h"

#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evlog.h"
#include "map.h"
#include "gc.h"
#include "proj.h"
#include "util.h"
#include "sm_gen.h"
#include "objlog.h"
#include "store.h"
#include "wfindex.h"

/* Instances are dense by id (ids are handed out by counters), so the rebuilt
 * projections live in arrays indexed by id: no hashing on the hot path. The arrays are
 * sized once from the store's id counters (calloc: untouched pages cost nothing), and
 * grow only when an event names an id above them (a damaged counter). */
typedef struct dense {
    void *items;
    size_t cap;  /* entries */
    size_t size; /* bytes per entry */
} dense;

/* Ids above this are never given an array slot (a damaged event is refused instead). */
#define DENSE_MAX_IDS ((uint64_t)1 << 32)

static void dense_presize(dense *d, uint64_t max_id)
{
    if (max_id == 0 || max_id >= DENSE_MAX_IDS)
        return;
    d->items = calloc((size_t)max_id + 1, d->size);
    if (d->items)
        d->cap = (size_t)max_id + 1;
}

static __attribute__((noinline)) void *dense_grow(dense *d, uint64_t id, bool grow)
{
    if (!grow || id >= DENSE_MAX_IDS)
        return NULL;
    size_t nc = d->cap ? d->cap : 1024;
    while (nc <= id)
        nc *= 2;
    void *ni = realloc(d->items, nc * d->size);
    if (!ni)
        return NULL;
    memset((char *)ni + d->cap * d->size, 0, (nc - d->cap) * d->size);
    d->items = ni;
    d->cap = nc;
    return (char *)d->items + id * d->size;
}

static inline void *dense_at(dense *d, uint64_t id, bool grow)
{
    if (id >= d->cap)
        return dense_grow(d, id, grow);
    return (char *)d->items + id * d->size;
}

/* Without a comparison, replay keeps only what the table check needs: per workflow its
 * state, per task its state and workflow (st1: 0 = no such instance yet, else state +
 * 1). 1 and 16 bytes instead of whole projections. */
typedef struct lite_task {
    uint64_t wf;
    uint8_t st1;
} lite_task;

/* A small key/value list for the system projections (defs, meta). */
typedef struct kv {
    int db;
    size_t klen, vlen;
    uint8_t *key, *val;
} kv;

typedef struct rctx {
    bool full;        /* whole projections (for the comparison), else lite ones */
    dense wfs, tasks; /* tn_wf_proj / tn_task_proj, or uint8_t / lite_task */
    kv *kvs;
    size_t nkv, capkv;
    tn_map kvidx;    /* kv_hash -> index + 1 */
    tn_objlog *objs; /* schedules and backfills, rebuilt from their events alone */
    tn_replay_report *rep;
} rctx;

/* The index of (db, key) in x->kvs through x->kvidx (hash -> index + 1); a hash shared by
 * two keys (rare) falls back to a scan. Fires add a key each: a scan per put would make
 * replay quadratic in the number of fires. */
static uint64_t kv_hash(int db, const void *k, size_t kl)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)db;
    for (size_t i = 0; i < kl; i++)
        h = (h ^ ((const uint8_t *)k)[i]) * 1099511628211ull;
    return h | 1;
}

static bool kv_is(const kv *e, int db, const void *k, size_t kl)
{
    return e->db == db && e->klen == kl && memcmp(e->key, k, kl) == 0;
}

static kv *kv_lookup(const rctx *x, int db, const void *k, size_t kl)
{
    uintptr_t i = (uintptr_t)tn_map_get(&x->kvidx, kv_hash(db, k, kl));
    if (!i)
        return NULL;
    if (kv_is(&x->kvs[i - 1], db, k, kl))
        return &x->kvs[i - 1];
    for (size_t j = 0; j < x->nkv; j++)
        if (kv_is(&x->kvs[j], db, k, kl))
            return &x->kvs[j];
    return NULL;
}

static tn_err kv_put(void *c, int db, const void *k, size_t kl, const void *v, size_t vl)
{
    rctx *x = c;
    kv *slot = kv_lookup(x, db, k, kl);
    if (!slot) {
        if (x->nkv == x->capkv) {
            size_t nc = x->capkv ? x->capkv * 2 : 32;
            kv *n = realloc(x->kvs, nc * sizeof(*n));
            if (!n)
                return TN_ERR_NOMEM;
            x->kvs = n;
            x->capkv = nc;
        }
        uint64_t h = kv_hash(db, k, kl);
        if (!tn_map_get(&x->kvidx, h) &&
            tn_map_put(&x->kvidx, h, (void *)(uintptr_t)(x->nkv + 1)))
            return TN_ERR_NOMEM;
        slot = &x->kvs[x->nkv++];
        slot->db = db;
        slot->klen = kl;
        slot->key = malloc(kl ? kl : 1);
        slot->val = NULL;
        if (!slot->key)
            return TN_ERR_NOMEM;
        memcpy(slot->key, k, kl);
    }
    free(slot->val);
    slot->val = malloc(vl ? vl : 1);
    if (!slot->val)
        return TN_ERR_NOMEM;
    memcpy(slot->val, v, vl);
    slot->vlen = vl;
    return TN_OK;
}

static const kv *kv_find(const rctx *x, int db, const void *k, size_t kl)
{
    return kv_lookup(x, db, k, kl);
}

static void rctx_fini(rctx *x)
{
    free(x->wfs.items);
    free(x->tasks.items);
    for (size_t i = 0; i < x->nkv; i++) {
        free(x->kvs[i].key);
        free(x->kvs[i].val);
    }
    free(x->kvs);
    tn_map_fini(&x->kvidx);
    tn_objlog_free(x->objs);
}

static void verdict(tn_replay_report *rep, tn_err e, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void verdict(tn_replay_report *rep, tn_err e, uint64_t seq, const char *fmt, ...)
{
    if (rep->err)
        return;
    rep->err = e;
    rep->bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->why, sizeof(rep->why), fmt, ap);
    va_end(ap);
}

/* The instance `ev` acts on: its slot (*p), whether it exists yet and its current
 * state (TN_SM_NEW when it does not). false = verdict given. */
static inline __attribute__((always_inline)) bool instance_of(rctx *x, const tn_event *ev,
                                                              void **p, bool *exists,
                                                              uint8_t *cur)
{
    tn_replay_report *rep = x->rep;
    if (ev->machine == TN_MACHINE_WORKFLOW) {
        if (ev->wf == 0 || ev->task != 0 || !(*p = dense_at(&x->wfs, ev->wf, true))) {
            verdict(rep, ev->wf ? TN_ERR_NOMEM : TN_ERR_ILLEGAL, ev->seq,
                    "workflow event without a workflow id (or out of memory)");
            return false;
        }
        const tn_wf_proj *w = *p;
        uint8_t st1 = x->full ? (w->id ? w->state + 1 : 0) : *(const uint8_t *)*p;
        *exists = st1 != 0;
        *cur = st1 ? st1 - 1 : TN_SM_NEW;
        return true;
    }
    if (ev->wf == 0 || ev->task == 0 || !(*p = dense_at(&x->tasks, ev->task, true))) {
        verdict(rep, ev->task ? TN_ERR_NOMEM : TN_ERR_ILLEGAL, ev->seq,
                "task event without a task or workflow id (or out of memory)");
        return false;
    }
    const tn_task_proj *tp = *p;
    const lite_task *lt = *p;
    uint8_t st1 = x->full ? (tp->id ? tp->state + 1 : 0) : lt->st1;
    uint64_t wf = x->full ? tp->wf : lt->wf;
    *exists = st1 != 0;
    *cur = st1 ? st1 - 1 : TN_SM_NEW;
    if (*exists && wf != ev->wf) {
        verdict(rep, TN_ERR_ILLEGAL, ev->seq, "task %llu moved from workflow %llu to %llu",
                (unsigned long long)ev->task, (unsigned long long)wf,
                (unsigned long long)ev->wf);
        return false;
    }
    return true;
}

static unsigned state_slot(uint8_t st)
{
    return st < TN_REPLAY_MAX_STATES ? st : 0;
}

/* Fold a checked workflow or task event into its slot and move the instance between
 * the report's state counts (kept as they change: no sweep over the arrays after). */
static inline __attribute__((always_inline)) void fold(rctx *x, const tn_event *ev, void *p,
                                                       bool exists, uint8_t cur)
{
    bool wf = ev->machine == TN_MACHINE_WORKFLOW;
    uint64_t *total = wf ? &x->rep->workflows : &x->rep->tasks;
    uint64_t *states = wf ? x->rep->wf_states : x->rep->task_states;
    if (exists)
        states[state_slot(cur)]--;
    else
        (*total)++;
    states[state_slot(ev->to)]++;
    if (x->full) {
        if (wf)
            tn_proj_wf_apply(p, ev);
        else
            tn_proj_task_apply(p, ev);
    } else if (wf) {
        *(uint8_t *)p = (uint8_t)(ev->to + 1);
    } else {
        ((lite_task *)p)->wf = ev->wf;
        ((lite_task *)p)->st1 = (uint8_t)(ev->to + 1);
    }
}

/* Check one decoded event against the tables and fold it. false = verdict given. */
/* A schedule, backfill or alert event: its object's state, rebuilt from its events
 * alone (objlog without a store). */
static bool object_state(rctx *x, const tn_event *ev, const tn_sm *sm, uint8_t *cur)
{
    tn_err e = x->objs ? TN_OK : tn_objlog_new(&x->objs);
    if (e || (e = tn_objlog_state(x->objs, NULL, ev, cur))) {
        verdict(x->rep, e == TN_ERR_INVAL ? TN_ERR_ILLEGAL : e, ev->seq,
                "%s event %s does not name its object", sm->name,
                tn_sm_event_name(sm, ev->event));
        return false;
    }
    return true;
}

static bool object_fold(rctx *x, const tn_event *ev)
{
    tn_errmsg m = {{0}};
    tn_err e = tn_objlog_stage(x->objs, NULL, kv_put, x, ev, &m);
    tn_objlog_committed(x->objs);
    if (e)
        verdict(x->rep, e == TN_ERR_CORRUPT ? TN_ERR_ILLEGAL : e, ev->seq, "%s",
                m.text[0] ? m.text : "schedule, backfill or alert event lacks its attributes");
    return e == TN_OK;
}

static __attribute__((noinline)) bool bad_transition(tn_replay_report *rep, const tn_sm *sm,
                                                     const tn_event *ev, uint8_t cur,
                                                     tn_sm_trans tr)
{
    verdict(rep, TN_ERR_ILLEGAL, ev->seq,
            "%s %llu: recorded %s -%s-> %s, but the instance was in %s and the table "
            "says %s",
            sm->name, (unsigned long long)(ev->machine == TN_MACHINE_TASK ? ev->task : ev->wf),
            tn_sm_state_name(sm, ev->from), tn_sm_event_name(sm, ev->event),
            tn_sm_state_name(sm, ev->to), tn_sm_state_name(sm, cur),
            tr.to == TN_SM_ILLEGAL ? "illegal" : tn_sm_state_name(sm, tr.to));
    return false;
}

/* A workflow or task event (nearly every event): apply's checks in apply's order,
 * without the lookups only the other machines need. */
static inline bool apply_instance(rctx *x, const tn_event *ev)
{
    const tn_sm *sm = ev->machine == TN_MACHINE_WORKFLOW ? &tn_sm_workflow : &tn_sm_task;
    if (ev->event >= sm->nevents) {
        verdict(x->rep, TN_ERR_ILLEGAL, ev->seq, "unknown machine %u or event %u", ev->machine,
                ev->event);
        return false;
    }
    uint8_t cur;
    void *p = NULL;
    bool exists = true;
    if (!instance_of(x, ev, &p, &exists, &cur))
        return false;
    tn_sm_trans tr = tn_sm_next(sm, cur, ev->event);
    if (ev->from != cur || tr.to == TN_SM_ILLEGAL || tr.to != ev->to)
        return bad_transition(x->rep, sm, ev, cur, tr);
    if (cur < TN_REPLAY_MAX_STATES && ev->event < TN_REPLAY_MAX_EVENTS)
        x->rep->cov[ev->machine][cur][ev->event]++;
    fold(x, ev, p, exists, cur);
    return true;
}

static bool apply(rctx *x, const tn_event *ev, uint8_t *sys_state)
{
    if (ev->machine == TN_MACHINE_WORKFLOW || ev->machine == TN_MACHINE_TASK)
        return apply_instance(x, ev);
    tn_replay_report *rep = x->rep;
    const tn_sm *sm = tn_sm_get(ev->machine);
    if (!sm || ev->event >= sm->nevents) {
        verdict(rep, TN_ERR_ILLEGAL, ev->seq, "unknown machine %u or event %u", ev->machine,
                ev->event);
        return false;
    }
    bool system = ev->machine != TN_MACHINE_WORKFLOW && ev->machine != TN_MACHINE_TASK;
    uint8_t cur = *sys_state;
    void *p = NULL;
    bool exists = true;
    if (!system && !instance_of(x, ev, &p, &exists, &cur))
        return false;
    if (tn_objlog_handles(ev->machine) && !object_state(x, ev, sm, &cur))
        return false;
    tn_sm_trans tr = tn_sm_next(sm, cur, ev->event);
    if (ev->from != cur || tr.to == TN_SM_ILLEGAL || tr.to != ev->to)
        return bad_transition(rep, sm, ev, cur, tr);
    if (cur < TN_REPLAY_MAX_STATES && ev->event < TN_REPLAY_MAX_EVENTS)
        rep->cov[ev->machine][cur][ev->event]++;
    if (!system) {
        fold(x, ev, p, exists, cur);
        return true;
    }
    if (tn_objlog_handles(ev->machine))
        return object_fold(x, ev);
    *sys_state = tr.to;
    rep->system_events++;
    tn_err e = tn_proj_system_apply(ev, kv_put, x);
    if (e) {
        verdict(rep, e == TN_ERR_CORRUPT ? TN_ERR_ILLEGAL : e, ev->seq,
                "system event %s lacks the attributes it needs",
                tn_sm_event_name(sm, ev->event));
        return false;
    }
    return true;
}

/* Rebuilt projections that `tern gc` removed from the store on purpose: those of the
 * workflows it marked (and their tasks). A marked workflow must have ended. */
static uint64_t count_collected(tn_rtxn *t, rctx *x, bool task)
{
    dense *d = task ? &x->tasks : &x->wfs;
    uint64_t n = 0;
    for (uint64_t id = 1; id < d->cap && !x->rep->err; id++) {
        void *p = dense_at(d, id, false);
        uint64_t own = task ? ((tn_task_proj *)p)->id : ((tn_wf_proj *)p)->id;
        uint64_t wf = task ? ((tn_task_proj *)p)->wf : own;
        if (!own || !tn_log_gc_marked(t, wf))
            continue;
        if (!task && !tn_sm_is_final(&tn_sm_workflow, ((tn_wf_proj *)p)->state))
            verdict(x->rep, TN_ERR_CORRUPT, 0,
                    "workflow %llu is marked collected but its events leave it unfinished",
                    (unsigned long long)wf);
        n++;
    }
    return n;
}

/* Compare one stored database of projections with the rebuilt ones. */
static void compare_dense(tn_rtxn *t, rctx *x, bool task, uint64_t *count)
{
    tn_replay_report *rep = x->rep;
    dense *d = task ? &x->tasks : &x->wfs;
    tn_buf buf = {0};
    tn_cursor *c;
    tn_val k, v;
    uint64_t stored = 0;
    const char *what = task ? "task" : "workflow";
    if (tn_cursor_open(t, task ? TN_DB_TASKS : TN_DB_WF, &c)) {
        verdict(rep, TN_ERR_IO, 0, "cannot read the stored %s projections", what);
        return;
    }
    for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK && !rep->err;
         e = tn_cursor_next(c, &k, &v)) {
        stored++;
        uint64_t id = k.len == 8 ? tn_get_be64(k.data) : 0;
        void *p = id ? dense_at(d, id, false) : NULL;
        bool present = p && (task ? ((tn_task_proj *)p)->id : ((tn_wf_proj *)p)->id);
        if (!present) {
            verdict(rep, TN_ERR_CORRUPT, 0,
                    "stored %s projection %llu has no events in the log", what,
                    (unsigned long long)id);
            break;
        }
        buf.size = 0;
        if (task)
            tn_proj_task_encode(p, &buf);
        else
            tn_proj_wf_encode(p, &buf);
        if (buf.size != v.len || memcmp(buf.data, v.data, v.len) != 0) {
            uint64_t last = task ? ((tn_task_proj *)p)->last_seq : ((tn_wf_proj *)p)->last_seq;
            verdict(rep, TN_ERR_CORRUPT, last,
                    "stored %s projection %llu differs from the one rebuilt from the events "
                    "(last event seq %llu)",
                    what, (unsigned long long)id, (unsigned long long)last);
        }
    }
    tn_cursor_close(c);
    tn_buf_free(&buf);
    if (!rep->err && stored != *count && stored + count_collected(t, x, task) != *count)
        verdict(rep, TN_ERR_CORRUPT, 0,
                "the log rebuilds %llu %s projections but the store holds %llu",
                (unsigned long long)*count, what, (unsigned long long)stored);
}

/* Compare the defs and meta databases with the rebuilt ones; `head` is the rebuilt chain
 * head, or NULL when the chain was not checked (the stored head is then not compared). */
static void compare_kv(tn_rtxn *t, rctx *x, const uint8_t *head, uint64_t last_seq,
                       uint64_t max_wf, uint64_t max_task)
{
    tn_replay_report *rep = x->rep;
    /* the derived meta values join the system projections for the comparison */
    uint8_t b[3][8];
    tn_put_be64(b[0], last_seq);
    tn_put_be64(b[1], max_wf);
    tn_put_be64(b[2], max_task);
    kv_put(x, TN_DB_META, TN_META_LAST_SEQ, strlen(TN_META_LAST_SEQ), b[0], 8);
    kv_put(x, TN_DB_META, TN_META_MAX_WF, strlen(TN_META_MAX_WF), b[1], 8);
    kv_put(x, TN_DB_META, TN_META_MAX_TASK, strlen(TN_META_MAX_TASK), b[2], 8);
    if (head)
        kv_put(x, TN_DB_META, TN_META_CHAIN_HEAD, strlen(TN_META_CHAIN_HEAD), head,
               TN_HASH_LEN);
    static const tn_db dbs[] = {TN_DB_DEFS, TN_DB_META};
    for (size_t i = 0; i < 2 && !rep->err; i++) {
        tn_cursor *c;
        tn_val k, v;
        size_t stored = 0, rebuilt = 0;
        if (tn_cursor_open(t, dbs[i], &c)) {
            verdict(rep, TN_ERR_IO, 0, "cannot read the %s database", tn_db_name(dbs[i]));
            return;
        }
        for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK && !rep->err;
             e = tn_cursor_next(c, &k, &v)) {
            if (dbs[i] == TN_DB_META && k.len == strlen(TN_META_FORMAT) &&
                memcmp(k.data, TN_META_FORMAT, k.len) == 0)
                continue; /* written by the store itself at creation */
            if (dbs[i] == TN_DB_META && k.len == strlen(TN_META_CHECKPOINT) &&
                memcmp(k.data, TN_META_CHECKPOINT, k.len) == 0)
                continue; /* where the writer's open verification starts, not derived */
            if (dbs[i] == TN_DB_META && tn_log_gc_meta_key(k.data, k.len))
                continue; /* what `tern gc` collected (checked against the projections) */
            if (dbs[i] == TN_DB_META && !head && k.len == strlen(TN_META_CHAIN_HEAD) &&
                memcmp(k.data, TN_META_CHAIN_HEAD, k.len) == 0)
                continue; /* the chain was not asked for: its head was not computed */
            stored++;
            const kv *r = kv_find(x, dbs[i], k.data, k.len);
            if (!r || r->vlen != v.len || memcmp(r->val, v.data, v.len) != 0)
                verdict(rep, TN_ERR_CORRUPT, 0, "%s entry \"%.*s\" %s", tn_db_name(dbs[i]),
                        (int)(k.len > 64 ? 64 : k.len), (const char *)k.data,
                        r ? "differs from the value rebuilt from the events" :
                            "is not derived from any event");
        }
        tn_cursor_close(c);
        for (size_t j = 0; j < x->nkv; j++)
            rebuilt += x->kvs[j].db == (int)dbs[i];
        if (!rep->err && stored != rebuilt)
            verdict(rep, TN_ERR_CORRUPT, 0,
                    "the events rebuild %zu %s entries but the store holds %zu", rebuilt,
                    tn_db_name(dbs[i]), stored);
    }
}

/* Which of seq k-1 and k broke the chain at k? If k's own bytes still hash to what
 * k+1 (or the stored chain head) recorded, k is intact and k-1 was altered. */
static uint64_t blame(tn_cursor *c, const uint8_t *hash_k, const uint8_t *stored_head,
                      uint64_t k, bool *k_intact)
{
    tn_val key, val;
    tn_event next;
    *k_intact = false;
    if (tn_cursor_next(c, &key, &val) == TN_OK) {
        if (tn_event_decode(val.data, val.len, &next) == TN_OK &&
            memcmp(next.prev, hash_k, TN_HASH_LEN) == 0)
            *k_intact = true;
    } else if (stored_head && memcmp(stored_head, hash_k, TN_HASH_LEN) == 0) {
        *k_intact = true;
    }
    return *k_intact ? k - 1 : k;
}

static bool decode_one(tn_replay_report *rep, const tn_val *v, uint64_t seq, tn_event *ev)
{
    tn_err de = tn_event_decode(v->data, v->len, ev);
    if (de) {
        verdict(rep, TN_ERR_CORRUPT, seq, "event cannot be decoded: %s", tn_strerror(de));
        return false;
    }
    if (ev->seq != seq) {
        verdict(rep, TN_ERR_CORRUPT, seq, "event records seq %llu under key %llu",
                (unsigned long long)ev->seq, (unsigned long long)seq);
        return false;
    }
    return true;
}

/* The hash chain at one event: its prev must be the hash of the event before (`prev`,
 * which then becomes this event's hash). */
static bool chain_one(tn_replay_report *rep, tn_cursor *c, const tn_val *v, const tn_event *ev,
                      uint8_t *prev, const uint8_t *stored_head)
{
    uint8_t h[TN_HASH_LEN];
    tn_event_hash(v->data, v->len, h);
    if (memcmp(ev->prev, prev, TN_HASH_LEN) != 0) {
        bool intact;
        uint64_t bad = blame(c, h, stored_head, ev->seq, &intact);
        verdict(rep, TN_ERR_CHAIN, bad,
                intact ? "the content of this event no longer matches the hash the "
                         "next event recorded: it was altered" :
                         "this event's prev hash does not match the event before it: "
                         "it was altered");
        return false;
    }
    memcpy(prev, h, TN_HASH_LEN);
    return true;
}

/* --- the chain check in parallel ----------------------------------------------- */

/* Each event's hash depends on its own bytes only, so the chain check splits into
 * independent jobs "hash(event k-1) == the prev event k recorded", hashed by helper
 * threads (and by the walking thread when they fall behind) while the walk decodes and
 * folds. The event bytes are pointers into the read transaction's map, valid until it
 * ends, which is after every job is done. Any mismatch makes the caller replay again
 * sequentially, so that the verdict (which seq, which of k-1 and k to blame) is the
 * sequential one. */
#define CHAIN_BLOCK   1024 /* jobs per block handed to a thread */
#define CHAIN_QUEUE   8    /* blocks queued before the walker hashes one itself */
#define CHAIN_THREADS 3    /* helper threads at most */
#define CHAIN_MIN     4096 /* events in the log below which threads are not worth it */

typedef struct chain_job {
    const void *data; /* event k-1's bytes */
    size_t len;
    uint64_t seq;              /* k */
    uint8_t want[TN_HASH_LEN]; /* event k's prev */
} chain_job;

typedef struct chain_block {
    struct chain_block *next;
    size_t n;
    chain_job jobs[CHAIN_BLOCK];
} chain_block;

typedef struct chain_pool {
    pthread_mutex_t mu;
    pthread_cond_t work;
    chain_block *head, *tail; /* queued blocks, oldest first */
    chain_block *spare;       /* hashed blocks, for reuse */
    size_t queued;
    bool stop;
    bool bad;         /* some job did not match (under mu) */
    bool walker_bad;  /* the walker saw a mismatch or could not queue a job */
    chain_block *cur; /* the block the walker fills */
    pthread_t th[CHAIN_THREADS];
    unsigned nth;
} chain_pool;

/* Hash a block's events four at a time (tn_event_hash4; the last group repeats its
 * first event to fill the lanes) and compare each with the prev its successor recorded. */
static void chain_check_block(chain_pool *cp, chain_block *b)
{
    bool bad = false;
    for (size_t i = 0; i < b->n; i += 4) {
        size_t m = b->n - i < 4 ? b->n - i : 4;
        const void *enc[4];
        size_t len[4];
        uint8_t h[4][TN_HASH_LEN];
        for (size_t k = 0; k < 4; k++) {
            const chain_job *j = &b->jobs[i + (k < m ? k : 0)];
            enc[k] = j->data;
            len[k] = j->len;
        }
        tn_event_hash4(enc, len, h);
        for (size_t k = 0; k < m; k++)
            bad |= memcmp(h[k], b->jobs[i + k].want, TN_HASH_LEN) != 0;
    }
    pthread_mutex_lock(&cp->mu);
    cp->bad |= bad;
    b->next = cp->spare;
    cp->spare = b;
    pthread_mutex_unlock(&cp->mu);
}

/* Take the oldest queued block; with cp->mu held. */
static chain_block *chain_pop(chain_pool *cp)
{
    chain_block *b = cp->head;
    if (b) {
        cp->head = b->next;
        if (!cp->head)
            cp->tail = NULL;
        cp->queued--;
    }
    return b;
}

static void *chain_thread(void *arg)
{
    chain_pool *cp = arg;
    pthread_mutex_lock(&cp->mu);
    for (;;) {
        chain_block *b = chain_pop(cp);
        if (!b && cp->stop)
            break;
        if (!b) {
            pthread_cond_wait(&cp->work, &cp->mu);
            continue;
        }
        pthread_mutex_unlock(&cp->mu);
        chain_check_block(cp, b);
        pthread_mutex_lock(&cp->mu);
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

/* Start helpers, one per spare CPU (none on one CPU: the walker then hashes each
 * block itself, still four events at a time), when the log is long enough; false
 * means: check the chain in line. */
static bool chain_start(chain_pool *cp, uint64_t events)
{
    memset(cp, 0, sizeof(*cp));
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (events < CHAIN_MIN)
        return false;
    unsigned want = cpus < 2                 ? 0 :
                    cpus - 1 > CHAIN_THREADS ? CHAIN_THREADS :
                                               (unsigned)(cpus - 1);
    pthread_mutex_init(&cp->mu, NULL);
    pthread_cond_init(&cp->work, NULL);
    while (cp->nth < want && pthread_create(&cp->th[cp->nth], NULL, chain_thread, cp) == 0)
        cp->nth++;
    return true;
}

/* Queue the walker's full (or, at the end, last) block; hash the oldest one itself
 * when the helpers are behind. */
static void chain_flush(chain_pool *cp)
{
    chain_block *b = cp->cur, *mine = NULL;
    cp->cur = NULL;
    if (!b || b->n == 0) {
        free(b);
        return;
    }
    b->next = NULL;
    pthread_mutex_lock(&cp->mu);
    if (cp->tail)
        cp->tail->next = b;
    else
        cp->head = b;
    cp->tail = b;
    cp->queued++;
    if (cp->queued > CHAIN_QUEUE || cp->nth == 0)
        mine = chain_pop(cp);
    pthread_cond_signal(&cp->work);
    pthread_mutex_unlock(&cp->mu);
    if (mine)
        chain_check_block(cp, mine);
}

static void chain_add(chain_pool *cp, const tn_val *prev_ev, const tn_event *ev)
{
    if (!cp->cur) {
        pthread_mutex_lock(&cp->mu);
        cp->cur = cp->spare;
        if (cp->cur)
            cp->spare = cp->cur->next;
        pthread_mutex_unlock(&cp->mu);
        if (!cp->cur && !(cp->cur = malloc(sizeof(*cp->cur)))) {
            cp->walker_bad = true; /* not checked here: the sequential run will */
            return;
        }
        cp->cur->n = 0;
    }
    chain_job *j = &cp->cur->jobs[cp->cur->n++];
    j->data = prev_ev->data;
    j->len = prev_ev->len;
    j->seq = ev->seq;
    memcpy(j->want, ev->prev, TN_HASH_LEN);
    if (cp->cur->n == CHAIN_BLOCK)
        chain_flush(cp);
}

/* Wait for every job; true when all matched. */
static bool chain_finish(chain_pool *cp)
{
    chain_flush(cp);
    pthread_mutex_lock(&cp->mu);
    cp->stop = true;
    pthread_cond_broadcast(&cp->work);
    chain_block *b;
    while ((b = chain_pop(cp))) { /* help drain */
        pthread_mutex_unlock(&cp->mu);
        chain_check_block(cp, b);
        pthread_mutex_lock(&cp->mu);
    }
    pthread_mutex_unlock(&cp->mu);
    for (unsigned i = 0; i < cp->nth; i++)
        pthread_join(cp->th[i], NULL);
    while ((b = cp->spare)) {
        cp->spare = b->next;
        free(b);
    }
    pthread_cond_destroy(&cp->work);
    pthread_mutex_destroy(&cp->mu);
    return !cp->bad && !cp->walker_bad;
}

/* --- the walk -------------------------------------------------------------------- */

typedef struct walk {
    const tn_replay_opts *o;
    rctx *x;
    bool have_head;
    uint8_t stored_head[TN_HASH_LEN];
    uint8_t prev[TN_HASH_LEN]; /* hash of the last event replayed (with the chain) */
    uint64_t meta_last, meta_max_wf, meta_max_task;
    uint64_t max_wf, max_task;
    chain_pool *cp;  /* NULL: the chain is checked in line (or not at all) */
    tn_prefault *pf; /* NULL: the walk takes its own page faults */
} walk;

static void read_meta(tn_rtxn *t, walk *w)
{
    tn_val v;
    if (tn_store_get(t, TN_DB_META, TN_META_CHAIN_HEAD, strlen(TN_META_CHAIN_HEAD), &v) ==
            TN_OK &&
        v.len == TN_HASH_LEN) {
        memcpy(w->stored_head, v.data, TN_HASH_LEN);
        w->have_head = true;
    }
    static const char *const keys[] = {TN_META_LAST_SEQ, TN_META_MAX_WF, TN_META_MAX_TASK};
    uint64_t *outs[] = {&w->meta_last, &w->meta_max_wf, &w->meta_max_task};
    for (int i = 0; i < 3; i++)
        if (tn_store_get(t, TN_DB_META, keys[i], strlen(keys[i]), &v) == TN_OK && v.len == 8)
            *outs[i] = tn_get_be64(v.data);
}

/* The seq an events key holds (8 bytes big-endian), 0 for a key of another size. One
 * load, where tn_get_be64's byte loop costs a few ns an event here. */
static inline uint64_t key_seq(const tn_val *k)
{
    uint64_t v;
    if (k->len != 8)
        return 0;
    memcpy(&v, k->data, 8);
    return __builtin_bswap64(v);
}

/* Walk the events in seq order: decode, chain, table check, fold. Stops at the first
 * verdict or the end of the range asked for. */
static void walk_events(tn_cursor *c, walk *w)
{
    tn_replay_report *rep = w->x->rep;
    const tn_replay_opts *o = w->o;
    uint8_t sys_state = TN_SM_NEW;
    uint64_t expect = 1;
    tn_val k, v, last = {0};
    tn_event ev;
    for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
        uint64_t seq = key_seq(&k);
        if (o->until_seq && seq > o->until_seq)
            break;
        if (seq != expect) {
            verdict(rep, TN_ERR_CORRUPT, expect, "seq %llu is missing (next key found: %llu)",
                    (unsigned long long)expect, (unsigned long long)seq);
            break;
        }
        /* LMDB fills a leaf page from its end down, so with the seqs appended in order
         * the next event sits just below this one: ask for its lines now, while this
         * one is decoded (a prefetch never faults, wherever it points) */
        __builtin_prefetch((const char *)v.data - 128);
        __builtin_prefetch((const char *)v.data - 192);
        if ((seq & 1023) == 0) /* how far the walk is, for the pages mapped ahead */
            tn_store_prefault_at(w->pf, v.data);
        if (!decode_one(rep, &v, seq, &ev))
            break;
        if (o->until_ns && ev.at > o->until_ns)
            break;
        if (o->verify_chain && w->cp && seq > 1) {
            chain_add(w->cp, &last, &ev);
        } else if (o->verify_chain && w->cp) {
            static const uint8_t zero[TN_HASH_LEN];
            w->cp->walker_bad |= memcmp(ev.prev, zero, TN_HASH_LEN) != 0;
        } else if (o->verify_chain &&
                   !chain_one(rep, c, &v, &ev, w->prev, w->have_head ? w->stored_head : NULL)) {
            break;
        }
        if (!apply(w->x, &ev, &sys_state))
            break;
        if (ev.wf > w->max_wf)
            w->max_wf = ev.wf;
        if (ev.task > w->max_task)
            w->max_task = ev.task;
        rep->events++;
        rep->last_seq = seq;
        last = v;
        expect++;
    }
    /* in line, w->prev is the last event's hash already; with helpers, hash it here */
    if (w->cp && last.data)
        tn_event_hash(last.data, last.len, w->prev);
}

/* One replay; with `parallel`, the chain may be checked by helper threads, and
 * *chain_bad then says a mismatch was seen (the caller replays sequentially). */
static tn_err replay_once(tn_store *s, const tn_replay_opts *opts, tn_replay_report *rep,
                          bool parallel, bool *chain_bad)
{
    memset(rep, 0, sizeof(*rep));
    *chain_bad = false;
    bool whole = opts->until_seq == 0 && opts->until_ns == 0;
    rctx x;
    memset(&x, 0, sizeof(x));
    x.full = opts->compare && whole;
    x.wfs.size = x.full ? sizeof(tn_wf_proj) : sizeof(uint8_t);
    x.tasks.size = x.full ? sizeof(tn_task_proj) : sizeof(lite_task);
    x.rep = rep;
    walk w = {.o = opts, .x = &x};
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    read_meta(t, &w);
    dense_presize(&x.wfs, w.meta_max_wf);
    dense_presize(&x.tasks, w.meta_max_task);
    tn_cursor *c;
    if ((e = tn_cursor_open(t, TN_DB_EVENTS, &c))) {
        tn_store_read_end(t);
        rctx_fini(&x);
        return e;
    }
    rep->chain_checked = opts->verify_chain;
    chain_pool cp;
    if (parallel && opts->verify_chain && chain_start(&cp, w.meta_last))
        w.cp = &cp;
    /* the pages mapped ahead by a CPU the chain pool left free (on two CPUs, a third
     * thread beside the walker and a chain helper would only take turns with them) */
    long spare = sysconf(_SC_NPROCESSORS_ONLN) - 1 - (w.cp ? (long)w.cp->nth : 0);
    w.pf = parallel && spare >= 1 ? tn_store_prefault_begin(t) : NULL;
    walk_events(c, &w);
    tn_cursor_close(c);
    tn_store_prefault_end(w.pf); /* the walk is over: it stops, before the txn ends */
    if (w.cp && !chain_finish(w.cp)) {
        *chain_bad = true;
        goto out;
    }
    if (!rep->err && opts->verify_chain && whole && rep->events > 0 &&
        (!w.have_head || memcmp(w.prev, w.stored_head, TN_HASH_LEN) != 0))
        verdict(rep, TN_ERR_CHAIN, rep->last_seq,
                "the content of the last event no longer matches the stored chain head: it "
                "was altered");
    if (!rep->err && x.full) {
        rep->compared = true;
        compare_dense(t, &x, false, &rep->workflows);
        if (!rep->err)
            compare_dense(t, &x, true, &rep->tasks);
        if (!rep->err)
            compare_kv(t, &x, opts->verify_chain ? w.prev : NULL, rep->last_seq, w.max_wf,
                       w.max_task);
    }
out:
    tn_store_read_end(t);
    rctx_fini(&x);
    return TN_OK;
}

tn_err tn_replay_run(tn_store *s, const tn_replay_opts *opts, tn_replay_report *rep)
{
    /* libsodium picks its fastest BLAKE2b for this CPU here (the portable one otherwise:
     * 1.6x slower); a process that only reads may not have initialised it */
    if (opts->verify_chain && sodium_init() < 0)
        return TN_ERR_INTERNAL;
    bool chain_bad;
    tn_err e = replay_once(s, opts, rep, !opts->sequential, &chain_bad);
    if (e == TN_OK && chain_bad)
        e = replay_once(s, opts, rep, false, &chain_bad);
    return e;
}

/* Walk one by_wf entry: each of its seqs must be above `*last` (entries and their seqs
 * ascend); call fn for each event. TN_ERR_CORRUPT on a malformed entry or a seq the
 * log lacks; a non-zero fn return stops the walk (*stop). */
static tn_err wf_entry_events(tn_rtxn *t, const tn_val *k, const tn_val *v, uint64_t *last,
                              tn_event *ev, tn_replay_event_fn fn, void *ctx, int *fn_ret)
{
    tn_wfidx_iter it;
    tn_err e = tn_wfidx_iter_init(&it, k->data, k->len, v->data, v->len);
    uint64_t seq;
    while (e == TN_OK && (e = tn_wfidx_iter_next(&it, &seq)) == TN_OK) {
        if (seq <= *last)
            return TN_ERR_CORRUPT;
        *last = seq;
        uint8_t sk[8];
        tn_put_be64(sk, seq);
        tn_val bytes;
        if ((e = tn_store_get(t, TN_DB_EVENTS, sk, 8, &bytes)))
            return e == TN_ERR_NOENT ? TN_ERR_CORRUPT : e;
        if ((e = tn_event_decode(bytes.data, bytes.len, ev)))
            return e;
        if ((*fn_ret = fn(ctx, ev)) != 0)
            return TN_OK;
    }
    return e == TN_ERR_NOENT ? TN_OK : e;
}

tn_err tn_replay_wf_events(tn_store *s, uint64_t wf, tn_replay_event_fn fn, void *ctx,
                           int *fn_ret)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    tn_cursor *c;
    if ((e = tn_cursor_open(t, TN_DB_BY_WF, &c))) {
        tn_store_read_end(t);
        return e;
    }
    uint8_t key[TN_WFIDX_KEY_LEN];
    tn_wfidx_key(key, wf, 0);
    tn_val k, v;
    tn_event *ev = malloc(sizeof(*ev));
    if (!ev) {
        e = TN_ERR_NOMEM;
        goto out;
    }
    *fn_ret = 0;
    size_t seen = 0;
    uint64_t last = 0;
    /* the workflow's entries are adjacent, in seq order: from (wf, 0) while the key
     * still names wf */
    for (e = tn_cursor_seek(c, key, sizeof(key), &k, &v); e == TN_OK && *fn_ret == 0;
         e = tn_cursor_next(c, &k, &v)) {
        if (k.len != TN_WFIDX_KEY_LEN) {
            e = TN_ERR_CORRUPT;
            break;
        }
        if (tn_wfidx_key_wf(k.data) != wf)
            break;
        seen++;
        if ((e = wf_entry_events(t, &k, &v, &last, ev, fn, ctx, fn_ret)))
            break;
    }
    if (e == TN_OK || e == TN_ERR_NOENT)
        e = seen > 0 ? TN_OK : TN_ERR_NOENT;
out:
    free(ev);
    tn_cursor_close(c);
    tn_store_read_end(t);
    return e;
}

typedef struct run_tasks {
    uint64_t *ids;
    size_t n, cap;
    bool oom;
} run_tasks;

static int run_tasks_cb(void *ctx, const tn_event *ev)
{
    run_tasks *x = ctx;
    if (ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_RERUN)
        x->n = 0;
    if (ev->machine != TN_MACHINE_TASK ||
        (ev->event != TN_TASK_E_SUBMIT && ev->event != TN_TASK_E_PAUSED))
        return 0;
    if (x->n == x->cap) {
        size_t nc = x->cap ? x->cap * 2 : 64;
        uint64_t *ni = realloc(x->ids, nc * sizeof(uint64_t));
        if (!ni) {
            x->oom = true;
            return 1;
        }
        x->ids = ni;
        x->cap = nc;
    }
    x->ids[x->n++] = ev->task;
    return 0;
}

tn_err tn_replay_run_tasks(tn_store *s, uint64_t wf, uint64_t **ids, size_t *n)
{
    run_tasks x = {0};
    int fr;
    tn_err e = tn_replay_wf_events(s, wf, run_tasks_cb, &x, &fr);
    if (!e && x.oom)
        e = TN_ERR_NOMEM;
    if (e) {
        free(x.ids);
        return e;
    }
    *ids = x.ids;
    *n = x.n;
    return TN_OK;
}

tn_err tn_replay_coverage_write(const tn_replay_report *rep, const char *path)
{
    char *b = NULL;
    size_t len = 0, cap = 0;
    tn_err e = TN_OK;
    for (unsigned mi = 1; mi <= TN_MACHINE_MAX && !e; mi++) {
        const tn_sm *m = tn_sm_get(mi);
        for (unsigned st = 0; st < m->nstates && st < TN_REPLAY_MAX_STATES && !e; st++)
            for (unsigned ev = 0; ev < m->nevents && ev < TN_REPLAY_MAX_EVENTS && !e; ev++) {
                uint32_t n = rep->cov[mi][st][ev];
                if (!n)
                    continue;
                if (!tn_grow((void **)&b, &cap, len + 256, 1)) {
                    e = TN_ERR_NOMEM;
                    break;
                }
                int l = snprintf(b + len, 256, "%s %s %s %s %u\n", m->name,
                                 tn_sm_state_name(m, st), tn_sm_event_name(m, ev),
                                 tn_sm_state_name(m, tn_sm_next(m, st, ev).to), n);
                len += l > 0 && l < 256 ? (size_t)l : 0;
            }
    }
    /* one write to a file opened for appending: runs that share the file do not
     * interleave their lines */
    int fd = e ? -1 : open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (!e && fd < 0)
        e = TN_ERR_IO;
    if (!e && len && write(fd, b, len) != (ssize_t)len)
        e = TN_ERR_IO;
    if (fd >= 0)
        close(fd);
    free(b);
    return e;
}

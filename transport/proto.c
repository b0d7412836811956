/* The master <-> worker codec: msgpack-c's packer writes frames, core/mp.h reads them
 * (strict, bounded, zero copy), and tn_outq batches messages into frames. */
#include "proto.h"

#include <msgpack.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"

/* tn_buf has msgpack_sbuffer's layout (core/event.c checks it too), so the packer writes
 * straight into it. */
_Static_assert(sizeof(tn_buf) == sizeof(msgpack_sbuffer), "tn_buf mirrors msgpack_sbuffer");
_Static_assert(offsetof(tn_buf, size) == offsetof(msgpack_sbuffer, size), "layout");
_Static_assert(offsetof(tn_buf, data) == offsetof(msgpack_sbuffer, data), "layout");
_Static_assert(offsetof(tn_buf, alloc) == offsetof(msgpack_sbuffer, alloc), "layout");

static const struct {
    const char *name;
    uint32_t len; /* array length, type included */
} msg_info[TN_MSG__MAX + 1] = {
#define TN_MSG_INFO(name, id, len) [id] = {#name, len},
    TN_MSG_LIST(TN_MSG_INFO)
#undef TN_MSG_INFO
};

const char *tn_msg_name(unsigned type)
{
    return type >= 1 && type <= TN_MSG__MAX ? msg_info[type].name : "?";
}

bool tn_msg_to_worker(unsigned type)
{
    return type >= TN_MSG_DISPATCH && type <= TN_MSG_RECONCILE;
}

/* ---- bounds, shared by the encoder and the decoder --------------------------------------- */

static bool str_ok(tn_str s, uint32_t min, uint32_t max)
{
    return s.len >= min && s.len <= max;
}

/* Keys come from peers: hashed with SipHash (crypto_shorthash) under a key drawn at
 * random once per process, so no one can craft keys that collide in the table below (with
 * an unkeyed hash, 15 MB of colliding keys cost seconds of CPU per frame). */
static unsigned char hash_key[crypto_shorthash_KEYBYTES];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void hash_key_init(void)
{
    if (sodium_init() < 0)
        abort(); /* no randomness for the key: nothing safe to do */
    randombytes_buf(hash_key, sizeof(hash_key));
}

static uint32_t key_hash(const tn_str *k)
{
    unsigned char out[crypto_shorthash_BYTES];
    pthread_once(&hash_once, hash_key_init);
    crypto_shorthash(out, (const unsigned char *)k->p, k->len, hash_key);
    uint32_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}

/* Whether any two of n keys are equal: keys at base, base + stride... (the first member of
 * each element is its tn_str key). A hash set on the stack: n <= TN_PROTO_PAIRS_MAX. */
static bool dup_keys(const void *base, size_t stride, uint32_t n)
{
    uint16_t slot[2048]; /* index + 1; 0 = empty; >= 2 * PAIRS_MAX */
    _Static_assert(2 * TN_PROTO_PAIRS_MAX <= 2048 && 2 * TN_PROTO_GAUGES_MAX <= 2048 &&
                       2 * TN_PROTO_GROUPS_MAX <= 2048,
                   "dup_keys table");
    if (n < 2)
        return false;
    uint32_t size = 4;
    while (size < 2 * n)
        size *= 2;
    memset(slot, 0, size * sizeof(slot[0]));
    for (uint32_t i = 0; i < n; i++) {
        const tn_str *k = (const tn_str *)((const char *)base + i * stride);
        uint32_t h = key_hash(k);
        for (uint32_t s = h & (size - 1);; s = (s + 1) & (size - 1)) {
            if (!slot[s]) {
                slot[s] = (uint16_t)(i + 1);
                break;
            }
            const tn_str *o = (const tn_str *)((const char *)base + (slot[s] - 1) * stride);
            if (o->len == k->len && memcmp(o->p, k->p, k->len) == 0)
                return true;
        }
    }
    return false;
}

static tn_err check_pairs(tn_pairs p)
{
    if (p.n > TN_PROTO_PAIRS_MAX)
        return TN_ERR_TOOBIG;
    for (uint32_t i = 0; i < p.n; i++) {
        if (p.v[i].key.len > TN_PROTO_KEY_MAX || p.v[i].val.len > TN_PROTO_VALUE_MAX)
            return TN_ERR_TOOBIG;
        if (p.v[i].key.len == 0)
            return TN_ERR_INVAL;
    }
    return dup_keys(p.v, sizeof(tn_pair), p.n) ? TN_ERR_INVAL : TN_OK;
}

/* The bounds of m, before anything is written. */
static tn_err check_msg(const tn_msg *m)
{
    tn_err e;
    switch (m->type) {
    case TN_MSG_DISPATCH: {
        const tn_msg_dispatch *d = &m->dispatch;
        if (!str_ok(d->name, 1, TN_PROTO_ID_MAX) || !str_ok(d->type, 1, TN_PROTO_TYPE_MAX) ||
            !str_ok(d->worker_group, 1, TN_PROTO_ID_MAX))
            return d->name.len && d->type.len && d->worker_group.len ? TN_ERR_TOOBIG :
                                                                       TN_ERR_INVAL;
        if (d->command.len > TN_PROTO_COMMAND_MAX || d->env_prelude.len > TN_PROTO_ENV_MAX ||
            d->user.len > TN_PROTO_ID_MAX)
            return TN_ERR_TOOBIG;
        if ((e = check_pairs(d->params)) != TN_OK ||
            (e = check_pairs(d->noop_outputs)) != TN_OK)
            return e;
        return TN_OK;
    }
    case TN_MSG_KILL: return m->kill.reason.len > TN_PROTO_REASON_MAX ? TN_ERR_TOOBIG : TN_OK;
    case TN_MSG_PERSISTED:
    case TN_MSG_RECONCILE: return TN_OK;
    case TN_MSG_ACCEPTED:
        if (m->accepted.pid < 0)
            return TN_ERR_INVAL;
        return m->accepted.containment.len > TN_PROTO_CONTAINMENT_MAX ? TN_ERR_TOOBIG : TN_OK;
    case TN_MSG_RESULT:
        if (m->result.reason.len > TN_PROTO_REASON_MAX)
            return TN_ERR_TOOBIG;
        return check_pairs(m->result.outputs);
    case TN_MSG_KILL_RESULT: {
        const tn_msg_kill_result *k = &m->kill_result;
        if (k->signalled.n > TN_PROTO_PIDS_MAX || k->survivors.n > TN_PROTO_PIDS_MAX)
            return TN_ERR_TOOBIG;
        for (uint32_t i = 0; i < k->signalled.n; i++)
            if (k->signalled.v[i] <= 0)
                return TN_ERR_INVAL;
        for (uint32_t i = 0; i < k->survivors.n; i++) {
            if (k->survivors.v[i].pid <= 0)
                return TN_ERR_INVAL;
            if (!str_ok(k->survivors.v[i].state, 1, TN_PROTO_STATE_MAX))
                return k->survivors.v[i].state.len ? TN_ERR_TOOBIG : TN_ERR_INVAL;
        }
        if (k->hooks.n > TN_PROTO_HOOKS_MAX)
            return TN_ERR_TOOBIG;
        for (uint32_t i = 0; i < k->hooks.n; i++) {
            const tn_hook_run *h = &k->hooks.v[i];
            if (!h->id.len || !h->outcome.len)
                return TN_ERR_INVAL;
            if (h->id.len > TN_PROTO_HOOK_ID_MAX || h->command.len > TN_PROTO_REASON_MAX ||
                h->outcome.len > TN_PROTO_OUTCOME_MAX)
                return TN_ERR_TOOBIG;
        }
        return TN_OK;
    }
    case TN_MSG_HEARTBEAT: {
        const tn_msg_heartbeat *h = &m->heartbeat;
        if (!str_ok(h->worker, 1, TN_PROTO_ID_MAX))
            return h->worker.len ? TN_ERR_TOOBIG : TN_ERR_INVAL;
        if (h->listen_url.len > TN_PROTO_URL_MAX || h->ctl_url.len > TN_PROTO_URL_MAX ||
            h->groups.n > TN_PROTO_GROUPS_MAX || h->gauges.n > TN_PROTO_GAUGES_MAX ||
            h->degraded.len > TN_PROTO_REASON_MAX)
            return TN_ERR_TOOBIG;
        for (uint32_t i = 0; i < h->groups.n; i++)
            if (!str_ok(h->groups.v[i], 1, TN_PROTO_ID_MAX))
                return h->groups.v[i].len ? TN_ERR_TOOBIG : TN_ERR_INVAL;
        for (uint32_t i = 0; i < h->gauges.n; i++)
            if (!str_ok(h->gauges.v[i].key, 1, TN_PROTO_KEY_MAX))
                return h->gauges.v[i].key.len ? TN_ERR_TOOBIG : TN_ERR_INVAL;
        if (dup_keys(h->groups.v, sizeof(tn_str), h->groups.n) ||
            dup_keys(h->gauges.v, sizeof(tn_gauge), h->gauges.n))
            return TN_ERR_INVAL;
        return TN_OK;
    }
    case TN_MSG_RECONCILED:
        return m->reconciled.running.n > TN_PROTO_RUNNING_MAX ? TN_ERR_TOOBIG : TN_OK;
    case TN_MSG_FENCED:
        if (!str_ok(m->fenced.worker, 1, TN_PROTO_ID_MAX) ||
            !str_ok(m->fenced.master, 1, TN_PROTO_ID_MAX))
            return m->fenced.worker.len && m->fenced.master.len ? TN_ERR_TOOBIG : TN_ERR_INVAL;
        return TN_OK;
    }
    return TN_ERR_INVAL; /* unknown type */
}

/* ---- encoding ---------------------------------------------------------------------------- */

static void pk_str(msgpack_packer *pk, tn_str s)
{
    msgpack_pack_str(pk, s.len);
    msgpack_pack_str_body(pk, s.p, s.len);
}

static void pk_bool(msgpack_packer *pk, bool b)
{
    if (b)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void pk_pairs(msgpack_packer *pk, tn_pairs p)
{
    msgpack_pack_map(pk, p.n);
    for (uint32_t i = 0; i < p.n; i++) {
        pk_str(pk, p.v[i].key);
        pk_str(pk, p.v[i].val);
    }
}

static void pack_dispatch(msgpack_packer *pk, const tn_msg_dispatch *d)
{
    msgpack_pack_uint64(pk, d->task);
    msgpack_pack_uint64(pk, d->wf);
    msgpack_pack_uint32(pk, d->attempt);
    pk_str(pk, d->name);
    pk_str(pk, d->type);
    pk_str(pk, d->command);
    pk_str(pk, d->env_prelude);
    pk_pairs(pk, d->params);
    pk_str(pk, d->worker_group);
    msgpack_pack_uint64(pk, d->timeout_ms);
    msgpack_pack_uint64(pk, d->kill_grace_ms);
    msgpack_pack_uint64(pk, d->memory_max);
    msgpack_pack_uint64(pk, d->cpu_max_milli);
    pk_str(pk, d->user);
    pk_bool(pk, d->noop_success);
    msgpack_pack_uint64(pk, d->noop_duration_ms);
    pk_pairs(pk, d->noop_outputs);
    msgpack_pack_int64(pk, d->deadline_ns);
    msgpack_pack_uint64(pk, d->worker_epoch);
    msgpack_pack_uint32(pk, d->pids_max);
}

static void pack_kill_result(msgpack_packer *pk, const tn_msg_kill_result *k)
{
    msgpack_pack_uint64(pk, k->report_id);
    msgpack_pack_uint64(pk, k->task);
    msgpack_pack_uint32(pk, k->attempt);
    msgpack_pack_array(pk, k->signalled.n);
    for (uint32_t i = 0; i < k->signalled.n; i++)
        msgpack_pack_int64(pk, k->signalled.v[i]);
    msgpack_pack_array(pk, k->survivors.n);
    for (uint32_t i = 0; i < k->survivors.n; i++) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_int64(pk, k->survivors.v[i].pid);
        pk_str(pk, k->survivors.v[i].state);
    }
    msgpack_pack_array(pk, k->hooks.n);
    for (uint32_t i = 0; i < k->hooks.n; i++) {
        msgpack_pack_array(pk, 3);
        pk_str(pk, k->hooks.v[i].id);
        pk_str(pk, k->hooks.v[i].command);
        pk_str(pk, k->hooks.v[i].outcome);
    }
}

static void pack_heartbeat(msgpack_packer *pk, const tn_msg_heartbeat *h)
{
    pk_str(pk, h->worker);
    pk_str(pk, h->listen_url);
    pk_str(pk, h->ctl_url);
    msgpack_pack_array(pk, h->groups.n);
    for (uint32_t i = 0; i < h->groups.n; i++)
        pk_str(pk, h->groups.v[i]);
    msgpack_pack_uint32(pk, h->slots);
    msgpack_pack_uint32(pk, h->running);
    msgpack_pack_uint32(pk, h->load_milli);
    msgpack_pack_uint64(pk, h->mem_free);
    msgpack_pack_uint64(pk, h->mem_reserve);
    msgpack_pack_map(pk, h->gauges.n);
    for (uint32_t i = 0; i < h->gauges.n; i++) {
        pk_str(pk, h->gauges.v[i].key);
        msgpack_pack_uint64(pk, h->gauges.v[i].val);
    }
    msgpack_pack_uint64(pk, h->epoch);
    pk_str(pk, h->degraded);
    msgpack_pack_int64(pk, h->degraded_at);
}

static void pack_msg(msgpack_packer *pk, const tn_msg *m)
{
    msgpack_pack_array(pk, msg_info[m->type].len);
    msgpack_pack_uint8(pk, (uint8_t)m->type);
    switch (m->type) {
    case TN_MSG_DISPATCH: pack_dispatch(pk, &m->dispatch); break;
    case TN_MSG_KILL:
        msgpack_pack_uint64(pk, m->kill.task);
        msgpack_pack_uint32(pk, m->kill.attempt);
        msgpack_pack_uint64(pk, m->kill.grace_ms);
        pk_str(pk, m->kill.reason);
        break;
    case TN_MSG_PERSISTED:
        msgpack_pack_uint64(pk, m->persisted.report_id);
        msgpack_pack_uint64(pk, m->persisted.task);
        msgpack_pack_uint32(pk, m->persisted.attempt);
        break;
    case TN_MSG_RECONCILE: msgpack_pack_uint64(pk, m->reconcile.epoch); break;
    case TN_MSG_ACCEPTED:
        msgpack_pack_uint64(pk, m->accepted.report_id);
        msgpack_pack_uint64(pk, m->accepted.task);
        msgpack_pack_uint32(pk, m->accepted.attempt);
        msgpack_pack_int64(pk, m->accepted.pid);
        pk_str(pk, m->accepted.containment);
        break;
    case TN_MSG_RESULT:
        msgpack_pack_uint64(pk, m->result.report_id);
        msgpack_pack_uint64(pk, m->result.task);
        msgpack_pack_uint32(pk, m->result.attempt);
        pk_bool(pk, m->result.success);
        msgpack_pack_int64(pk, m->result.exit_code);
        pk_str(pk, m->result.reason);
        pk_pairs(pk, m->result.outputs);
        break;
    case TN_MSG_KILL_RESULT: pack_kill_result(pk, &m->kill_result); break;
    case TN_MSG_HEARTBEAT: pack_heartbeat(pk, &m->heartbeat); break;
    case TN_MSG_RECONCILED:
        msgpack_pack_uint64(pk, m->reconciled.epoch);
        msgpack_pack_array(pk, m->reconciled.running.n);
        for (uint32_t i = 0; i < m->reconciled.running.n; i++) {
            msgpack_pack_array(pk, 2);
            msgpack_pack_uint64(pk, m->reconciled.running.v[i].task);
            msgpack_pack_uint32(pk, m->reconciled.running.v[i].attempt);
        }
        break;
    case TN_MSG_FENCED:
        pk_str(pk, m->fenced.worker);
        msgpack_pack_uint64(pk, m->fenced.epoch);
        msgpack_pack_uint64(pk, m->fenced.refused);
        pk_str(pk, m->fenced.master);
        break;
    }
}

tn_err tn_msg_encode(const tn_msg *m, tn_buf *out)
{
    tn_err e = check_msg(m);
    if (e)
        return e;
    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    pack_msg(&pk, m);
    if (!out->data) /* msgpack-c reports allocation failure only by leaving data NULL */
        return TN_ERR_NOMEM;
    if (out->size - start > TN_PROTO_MSG_MAX) {
        out->size = start;
        return TN_ERR_TOOBIG;
    }
    return TN_OK;
}

tn_err tn_frame_begin(tn_frame *f, tn_buf *buf, const char *sender)
{
    return tn_frame_begin_cluster(f, buf, sender, NULL);
}

tn_err tn_frame_begin_cluster(tn_frame *f, tn_buf *buf, const char *sender, const char *cluster)
{
    return tn_frame_begin_epoch(f, buf, sender, cluster, 0);
}

tn_err tn_frame_begin_epoch(tn_frame *f, tn_buf *buf, const char *sender, const char *cluster,
                            uint64_t epoch)
{
    size_t n = sender ? strlen(sender) : 0, cn = cluster ? strlen(cluster) : 0;
    if (n == 0)
        return TN_ERR_INVAL;
    if (n > TN_PROTO_ID_MAX || cn > TN_PROTO_CLUSTER_MAX)
        return TN_ERR_TOOBIG;
    f->buf = buf;
    f->start = buf->size;
    f->count = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint8(&pk, TN_PROTO_VERSION);
    msgpack_pack_str(&pk, n);
    msgpack_pack_str_body(&pk, sender, n);
    msgpack_pack_str(&pk, cn);
    msgpack_pack_str_body(&pk, cluster ? cluster : "", cn);
    msgpack_pack_uint64(&pk, epoch);
    /* array32 header with a count patched by tn_frame_end: always 5 bytes, so messages can
     * be appended without knowing how many there will be. */
    static const char hdr[5] = {(char)0xdd, 0, 0, 0, 0};
    f->count_at = buf->size + 1;
    msgpack_sbuffer_write(buf, hdr, sizeof(hdr));
    if (!buf->data) {
        buf->size = f->start;
        return TN_ERR_NOMEM;
    }
    return TN_OK;
}

/* Keep the last message only if the frame stays in bounds. */
static tn_err frame_accept(tn_frame *f, size_t before)
{
    if (!f->buf->data)
        return TN_ERR_NOMEM;
    if (f->buf->size - f->start > TN_PROTO_FRAME_MAX || f->count >= TN_PROTO_FRAME_MSGS_MAX) {
        f->buf->size = before;
        return TN_ERR_TOOBIG;
    }
    f->count++;
    return TN_OK;
}

tn_err tn_frame_add(tn_frame *f, const tn_msg *m)
{
    size_t before = f->buf->size;
    tn_err e = tn_msg_encode(m, f->buf);
    return e ? e : frame_accept(f, before);
}

tn_err tn_frame_add_encoded(tn_frame *f, const void *enc, size_t len)
{
    size_t before = f->buf->size;
    if (len > TN_PROTO_MSG_MAX)
        return TN_ERR_TOOBIG;
    msgpack_sbuffer_write(f->buf, enc, len);
    return frame_accept(f, before);
}

tn_err tn_frame_end(tn_frame *f)
{
    unsigned char *p = (unsigned char *)f->buf->data + f->count_at;
    p[0] = (unsigned char)(f->count >> 24);
    p[1] = (unsigned char)(f->count >> 16);
    p[2] = (unsigned char)(f->count >> 8);
    p[3] = (unsigned char)f->count;
    return TN_OK;
}

/* ---- decoding ---------------------------------------------------------------------------- */

/* Scratch memory for a message's lists: one slot per list (a message has at most three),
 * grown as needed and reused for the next message; freed after the frame. Separate slots,
 * so growing one never moves another that is already pointed to. */
#define SCRATCH_SLOTS 3
typedef struct scratch {
    void *p[SCRATCH_SLOTS];
    size_t cap[SCRATCH_SLOTS];
    int used;
} scratch;

static void *scratch_get(tn_mp *r, scratch *s, size_t bytes)
{
    int i = s->used++;
    if (i >= SCRATCH_SLOTS) { /* a message type with more lists than slots: a bug here */
        tn_mp_fail(r, TN_ERR_INTERNAL);
        return NULL;
    }
    if (bytes == 0)
        return NULL;
    if (bytes > s->cap[i]) {
        void *n = realloc(s->p[i], bytes);
        if (!n) {
            tn_mp_fail(r, TN_ERR_NOMEM);
            return NULL;
        }
        s->p[i] = n;
        s->cap[i] = bytes;
    }
    return s->p[i];
}

static void scratch_free(scratch *s)
{
    for (int i = 0; i < SCRATCH_SLOTS; i++)
        free(s->p[i]);
}

static bool rd_str(tn_mp *r, uint32_t min, uint32_t max, tn_str *out)
{
    if (!tn_mp_str(r, max, &out->p, &out->len))
        return false;
    if (out->len < min)
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    return true;
}

static bool rd_u32(tn_mp *r, uint32_t *out)
{
    uint64_t v;
    if (!tn_mp_uint_max(r, UINT32_MAX, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* A list header of at most max items each at least min_bytes long: a claim larger than
 * the bytes left is truncation, found before anything is allocated. */
static bool rd_count(tn_mp *r, bool map, uint32_t max, size_t min_bytes, uint32_t *n)
{
    if (!(map ? tn_mp_map(r, max, n) : tn_mp_array(r, max, n)))
        return false;
    if ((size_t)*n > tn_mp_left(r) / min_bytes)
        return tn_mp_fail(r, TN_ERR_TRUNCATED);
    return true;
}

static bool rd_pairs(tn_mp *r, scratch *s, tn_pairs *out)
{
    uint32_t n;
    if (!rd_count(r, true, TN_PROTO_PAIRS_MAX, 2, &n))
        return false;
    tn_pair *v = scratch_get(r, s, n * sizeof(*v));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_str(r, 1, TN_PROTO_KEY_MAX, &v[i].key) ||
            !rd_str(r, 0, TN_PROTO_VALUE_MAX, &v[i].val))
            return false;
    if (dup_keys(v, sizeof(*v), n))
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    out->v = v;
    out->n = n;
    return true;
}

static bool rd_header(tn_mp *r, uint64_t *report_id, uint64_t *task, uint32_t *attempt)
{
    return (!report_id || tn_mp_u64(r, report_id)) && tn_mp_u64(r, task) && rd_u32(r, attempt);
}

static bool rd_dispatch(tn_mp *r, scratch *s, tn_msg_dispatch *d)
{
    return tn_mp_u64(r, &d->task) && tn_mp_u64(r, &d->wf) && rd_u32(r, &d->attempt) &&
           rd_str(r, 1, TN_PROTO_ID_MAX, &d->name) &&
           rd_str(r, 1, TN_PROTO_TYPE_MAX, &d->type) &&
           rd_str(r, 0, TN_PROTO_COMMAND_MAX, &d->command) &&
           rd_str(r, 0, TN_PROTO_ENV_MAX, &d->env_prelude) && rd_pairs(r, s, &d->params) &&
           rd_str(r, 1, TN_PROTO_ID_MAX, &d->worker_group) && tn_mp_u64(r, &d->timeout_ms) &&
           tn_mp_u64(r, &d->kill_grace_ms) && tn_mp_u64(r, &d->memory_max) &&
           tn_mp_u64(r, &d->cpu_max_milli) && rd_str(r, 0, TN_PROTO_ID_MAX, &d->user) &&
           tn_mp_bool(r, &d->noop_success) && tn_mp_u64(r, &d->noop_duration_ms) &&
           rd_pairs(r, s, &d->noop_outputs) && tn_mp_i64(r, &d->deadline_ns) &&
           tn_mp_u64(r, &d->worker_epoch) && rd_u32(r, &d->pids_max);
}

static bool rd_hooks(tn_mp *r, scratch *s, tn_hook_runs *out)
{
    uint32_t n;
    if (!rd_count(r, false, TN_PROTO_HOOKS_MAX, 4, &n))
        return false;
    tn_hook_run *v = scratch_get(r, s, n * sizeof(*v));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t three;
        if (!tn_mp_array(r, 3, &three))
            return false;
        if (three != 3)
            return tn_mp_fail(r, TN_ERR_CORRUPT);
        if (!rd_str(r, 1, TN_PROTO_HOOK_ID_MAX, &v[i].id) ||
            !rd_str(r, 0, TN_PROTO_REASON_MAX, &v[i].command) ||
            !rd_str(r, 1, TN_PROTO_OUTCOME_MAX, &v[i].outcome))
            return false;
    }
    *out = (tn_hook_runs){v, n};
    return true;
}

/* legacy: a version 3 KILL_RESULT (no hooks) from a worker's outbox of before an upgrade */
static bool rd_kill_result(tn_mp *r, scratch *s, tn_msg_kill_result *k, bool legacy)
{
    uint32_t n;
    if (!rd_header(r, &k->report_id, &k->task, &k->attempt) ||
        !rd_count(r, false, TN_PROTO_PIDS_MAX, 1, &n))
        return false;
    int64_t *pids = scratch_get(r, s, n * sizeof(*pids));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        if (!tn_mp_i64(r, &pids[i]))
            return false;
        if (pids[i] <= 0)
            return tn_mp_fail(r, TN_ERR_CORRUPT);
    }
    k->signalled = (tn_pids){pids, n};
    if (!rd_count(r, false, TN_PROTO_PIDS_MAX, 3, &n))
        return false;
    tn_survivor *sv = scratch_get(r, s, n * sizeof(*sv));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        if (!tn_mp_array(r, 2, &two))
            return false;
        if (two != 2)
            return tn_mp_fail(r, TN_ERR_CORRUPT);
        if (!tn_mp_i64(r, &sv[i].pid) || !rd_str(r, 1, TN_PROTO_STATE_MAX, &sv[i].state))
            return false;
        if (sv[i].pid <= 0)
            return tn_mp_fail(r, TN_ERR_CORRUPT);
    }
    k->survivors = (tn_survivors){sv, n};
    return legacy || rd_hooks(r, s, &k->hooks);
}

static bool rd_heartbeat(tn_mp *r, scratch *s, tn_msg_heartbeat *h)
{
    uint32_t n;
    if (!rd_str(r, 1, TN_PROTO_ID_MAX, &h->worker) ||
        !rd_str(r, 0, TN_PROTO_URL_MAX, &h->listen_url) ||
        !rd_str(r, 0, TN_PROTO_URL_MAX, &h->ctl_url) ||
        !rd_count(r, false, TN_PROTO_GROUPS_MAX, 1, &n))
        return false;
    tn_str *g = scratch_get(r, s, n * sizeof(*g));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_str(r, 1, TN_PROTO_ID_MAX, &g[i]))
            return false;
    if (dup_keys(g, sizeof(*g), n))
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    h->groups = (tn_strs){g, n};
    if (!rd_u32(r, &h->slots) || !rd_u32(r, &h->running) || !rd_u32(r, &h->load_milli) ||
        !tn_mp_u64(r, &h->mem_free) || !tn_mp_u64(r, &h->mem_reserve) ||
        !rd_count(r, true, TN_PROTO_GAUGES_MAX, 2, &n))
        return false;
    tn_gauge *v = scratch_get(r, s, n * sizeof(*v));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_str(r, 1, TN_PROTO_KEY_MAX, &v[i].key) || !tn_mp_u64(r, &v[i].val))
            return false;
    if (dup_keys(v, sizeof(*v), n))
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    h->gauges = (tn_gauges){v, n};
    return tn_mp_u64(r, &h->epoch) && rd_str(r, 0, TN_PROTO_REASON_MAX, &h->degraded) &&
           tn_mp_i64(r, &h->degraded_at);
}

static bool rd_reconciled(tn_mp *r, scratch *s, tn_msg_reconciled *c)
{
    uint32_t n;
    if (!tn_mp_u64(r, &c->epoch) || !rd_count(r, false, TN_PROTO_RUNNING_MAX, 3, &n))
        return false;
    tn_task_attempt *v = scratch_get(r, s, n * sizeof(*v));
    if (r->err)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        if (!tn_mp_array(r, 2, &two))
            return false;
        if (two != 2)
            return tn_mp_fail(r, TN_ERR_CORRUPT);
        if (!tn_mp_u64(r, &v[i].task) || !rd_u32(r, &v[i].attempt))
            return false;
    }
    c->running = (tn_task_attempts){v, n};
    return true;
}

/* One message into *m; false with r->err set on any fault. */
static bool rd_msg(tn_mp *r, scratch *s, tn_msg *m)
{
    const uint8_t *start = r->p;
    uint32_t n;
    uint64_t type;
    s->used = 0;
    memset(m, 0, sizeof(*m));
    if (!tn_mp_array(r, 64, &n))
        return false;
    if (n == 0)
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    if (!tn_mp_u64(r, &type))
        return false;
    if (type < 1 || type > TN_MSG__MAX)
        return tn_mp_fail(r, TN_ERR_TYPE);
    m->type = (tn_msg_type)type; /* named in an error message from here on */
    bool legacy = type == TN_MSG_KILL_RESULT && n == msg_info[type].len - 1;
    if (n != msg_info[type].len && !legacy)
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    bool ok = false;
    switch (m->type) {
    case TN_MSG_DISPATCH: ok = rd_dispatch(r, s, &m->dispatch); break;
    case TN_MSG_KILL:
        ok = rd_header(r, NULL, &m->kill.task, &m->kill.attempt) &&
             tn_mp_u64(r, &m->kill.grace_ms) &&
             rd_str(r, 0, TN_PROTO_REASON_MAX, &m->kill.reason);
        break;
    case TN_MSG_PERSISTED:
        ok = rd_header(r, &m->persisted.report_id, &m->persisted.task, &m->persisted.attempt);
        break;
    case TN_MSG_RECONCILE: ok = tn_mp_u64(r, &m->reconcile.epoch); break;
    case TN_MSG_ACCEPTED:
        ok = rd_header(r, &m->accepted.report_id, &m->accepted.task, &m->accepted.attempt) &&
             tn_mp_i64(r, &m->accepted.pid) &&
             rd_str(r, 0, TN_PROTO_CONTAINMENT_MAX, &m->accepted.containment);
        if (ok && m->accepted.pid < 0)
            return tn_mp_fail(r, TN_ERR_CORRUPT);
        break;
    case TN_MSG_RESULT:
        ok = rd_header(r, &m->result.report_id, &m->result.task, &m->result.attempt) &&
             tn_mp_bool(r, &m->result.success) && tn_mp_i64(r, &m->result.exit_code) &&
             rd_str(r, 0, TN_PROTO_REASON_MAX, &m->result.reason) &&
             rd_pairs(r, s, &m->result.outputs);
        break;
    case TN_MSG_KILL_RESULT: ok = rd_kill_result(r, s, &m->kill_result, legacy); break;
    case TN_MSG_HEARTBEAT: ok = rd_heartbeat(r, s, &m->heartbeat); break;
    case TN_MSG_RECONCILED: ok = rd_reconciled(r, s, &m->reconciled); break;
    case TN_MSG_FENCED:
        ok = rd_str(r, 1, TN_PROTO_ID_MAX, &m->fenced.worker) &&
             tn_mp_u64(r, &m->fenced.epoch) && tn_mp_u64(r, &m->fenced.refused) &&
             rd_str(r, 1, TN_PROTO_ID_MAX, &m->fenced.master);
        break;
    }
    if (ok && (size_t)(r->p - start) > TN_PROTO_MSG_MAX)
        return tn_mp_fail(r, TN_ERR_TOOBIG);
    return ok;
}

/* [version, sender, cluster, epoch, count...]: the header, up to the message count. */
static tn_err rd_frame_header(tn_mp *r, const void *buf, size_t len, tn_str *sender,
                              tn_str *cluster, uint64_t *epoch, uint32_t *count, tn_errmsg *msg)
{
    if (len > TN_PROTO_FRAME_MAX)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG, "frame: %zu bytes, over the %u byte limit",
                             len, TN_PROTO_FRAME_MAX);
    tn_mp_init(r, buf, len);
    uint32_t n;
    uint64_t version;
    if (tn_mp_array(r, 16, &n) && n == 0)
        tn_mp_fail(r, TN_ERR_CORRUPT);
    if (!tn_mp_u64(r, &version))
        return tn_errmsg_set(msg, r->err, "frame: bad header: %s", tn_strerror(r->err));
    if (version != TN_PROTO_VERSION)
        return tn_errmsg_set(msg, TN_ERR_VERSION,
                             "frame: protocol version %llu; this tern speaks version %d: run "
                             "the same tern version on the master and the workers",
                             (unsigned long long)version, TN_PROTO_VERSION);
    if (n != 5)
        return tn_errmsg_set(msg, TN_ERR_CORRUPT, "frame: %u elements, expected 5", n);
    if (!rd_str(r, 1, TN_PROTO_ID_MAX, sender) ||
        !rd_str(r, 0, TN_PROTO_CLUSTER_MAX, cluster) || !tn_mp_u64(r, epoch) ||
        !rd_count(r, false, TN_PROTO_FRAME_MSGS_MAX, 2, count))
        return tn_errmsg_set(msg, r->err, "frame: bad header: %s", tn_strerror(r->err));
    return TN_OK;
}

tn_err tn_frame_header(const void *buf, size_t len, tn_str *sender, tn_str *cluster)
{
    uint64_t epoch;
    return tn_frame_header_epoch(buf, len, sender, cluster, &epoch);
}

tn_err tn_frame_header_epoch(const void *buf, size_t len, tn_str *sender, tn_str *cluster,
                             uint64_t *epoch)
{
    tn_mp r;
    uint32_t count;
    return rd_frame_header(&r, buf, len, sender, cluster, epoch, &count, NULL);
}

tn_err tn_frame_decode(const void *buf, size_t len, tn_frame_cb cb, void *arg, tn_errmsg *msg)
{
    tn_mp r;
    uint32_t count;
    tn_str sender = {"", 0}, cluster = {"", 0};
    uint64_t epoch;
    tn_err he = rd_frame_header(&r, buf, len, &sender, &cluster, &epoch, &count, msg);
    if (he)
        return he;
    const uint8_t *msgs = r.p;
    scratch s = {{NULL}, {0}, 0};
    tn_msg m;
    tn_err e = TN_OK;
    /* Pass 1 checks everything; pass 2 decodes again (cheap: nothing is copied) and hands
     * the messages over, so a bad frame reaches no callback. */
    for (int pass = 1; pass <= 2 && e == TN_OK; pass++) {
        r.p = msgs;
        for (uint32_t i = 0; i < count; i++) {
            size_t at = (size_t)(r.p - (const uint8_t *)buf);
            if (!rd_msg(&r, &s, &m)) {
                e = tn_errmsg_set(msg, r.err,
                                  "frame from %.*s: message %u (%s) at byte %zu: %s",
                                  (int)sender.len, sender.p, i + 1, tn_msg_name(m.type), at,
                                  tn_strerror(r.err));
                break;
            }
            if (pass == 2 && (e = cb(arg, sender, &m)) != TN_OK)
                break;
        }
        if (pass == 1 && e == TN_OK && r.p != r.end)
            e = tn_errmsg_set(msg, TN_ERR_CORRUPT,
                              "frame from %.*s: %zu bytes after the last message",
                              (int)sender.len, sender.p, (size_t)(r.end - r.p));
    }
    scratch_free(&s);
    return e;
}

/* ---- outgoing queue ---------------------------------------------------------------------- */

#define OUTQ_DEFAULT_MAX_QUEUED (64u << 20)

struct tn_outq {
    pthread_mutex_t mu;
    char sender[TN_PROTO_ID_MAX + 1];
    char cluster[TN_PROTO_CLUSTER_MAX + 1];
    uint64_t epoch; /* the leader epoch its frames carry */
    uint32_t max_msgs;
    size_t max_bytes, max_queued;
    tn_buf data; /* encoded messages, back to back; data.data[head..size) is queued */
    size_t head;
    uint32_t *lens; /* lengths of the queued messages, lens[lhead..nlens) */
    uint32_t lhead, nlens, lcap;
    tn_buf frame; /* reused for each frame */
};

tn_err tn_outq_new(const char *sender, uint32_t max_msgs, size_t max_bytes, size_t max_queued,
                   tn_outq **out)
{
    size_t n = sender ? strlen(sender) : 0;
    if (n == 0 || n > TN_PROTO_ID_MAX || max_msgs == 0 || max_msgs > TN_PROTO_FRAME_MSGS_MAX)
        return TN_ERR_INVAL;
    tn_outq *q = calloc(1, sizeof(*q));
    if (!q)
        return TN_ERR_NOMEM;
    pthread_mutex_init(&q->mu, NULL);
    memcpy(q->sender, sender, n + 1);
    q->max_msgs = max_msgs;
    q->max_bytes = max_bytes && max_bytes < TN_PROTO_FRAME_MAX ? max_bytes : TN_PROTO_FRAME_MAX;
    q->max_queued = max_queued ? max_queued : OUTQ_DEFAULT_MAX_QUEUED;
    *out = q;
    return TN_OK;
}

void tn_outq_free(tn_outq *q)
{
    if (!q)
        return;
    free(q->data.data);
    free(q->frame.data);
    free(q->lens);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

tn_err tn_outq_push(tn_outq *q, const tn_msg *m)
{
    pthread_mutex_lock(&q->mu);
    tn_err e = TN_OK;
    if (q->nlens == q->lcap) {
        if (q->lhead > 0) { /* slide the live lengths down first */
            memmove(q->lens, q->lens + q->lhead, (q->nlens - q->lhead) * sizeof(*q->lens));
            q->nlens -= q->lhead;
            q->lhead = 0;
        }
        if (q->nlens == q->lcap) {
            uint32_t cap = q->lcap ? 2 * q->lcap : 64;
            uint32_t *l = realloc(q->lens, cap * sizeof(*l));
            if (!l) {
                e = TN_ERR_NOMEM;
                goto out;
            }
            q->lens = l;
            q->lcap = cap;
        }
    }
    if (q->head > 0 && q->head >= q->data.size / 2) { /* reclaim what was sent */
        memmove(q->data.data, q->data.data + q->head, q->data.size - q->head);
        q->data.size -= q->head;
        q->head = 0;
    }
    size_t before = q->data.size;
    if ((e = tn_msg_encode(m, &q->data)) != TN_OK)
        goto out;
    if (q->data.size - q->head > q->max_queued) {
        q->data.size = before;
        e = TN_ERR_FULL;
        goto out;
    }
    q->lens[q->nlens++] = (uint32_t)(q->data.size - before);
out:
    pthread_mutex_unlock(&q->mu);
    return e;
}

tn_err tn_outq_flush(tn_outq *q, tn_tx tx, uint32_t *nsent)
{
    uint32_t sent = 0;
    tn_err e = TN_OK;
    pthread_mutex_lock(&q->mu);
    while (q->lhead < q->nlens) {
        tn_frame f;
        q->frame.size = 0;
        if ((e = tn_frame_begin_epoch(&f, &q->frame, q->sender, q->cluster, q->epoch)) != TN_OK)
            break;
        size_t at = q->head;
        uint32_t k = 0;
        while (q->lhead + k < q->nlens && k < q->max_msgs) {
            uint32_t l = q->lens[q->lhead + k];
            if (k > 0 && q->frame.size + l > q->max_bytes)
                break;
            if ((e = tn_frame_add_encoded(&f, q->data.data + at, l)) != TN_OK)
                break;
            at += l;
            k++;
        }
        if (e == TN_ERR_TOOBIG && k > 0)
            e = TN_OK; /* the frame is full: send what fits */
        if (e)
            break;
        tn_frame_end(&f);
        if ((e = tn_tx_send(tx, q->frame.data, q->frame.size)) != TN_OK)
            break; /* stays queued */
        q->head = at;
        q->lhead += k;
        sent += k;
    }
    if (q->lhead == q->nlens) {
        q->lhead = q->nlens = 0;
        q->head = q->data.size = 0;
    }
    pthread_mutex_unlock(&q->mu);
    if (nsent)
        *nsent = sent;
    return e;
}

uint32_t tn_outq_len(tn_outq *q)
{
    pthread_mutex_lock(&q->mu);
    uint32_t n = q->nlens - q->lhead;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void tn_outq_set_cluster(tn_outq *q, const char *cluster)
{
    pthread_mutex_lock(&q->mu);
    snprintf(q->cluster, sizeof(q->cluster), "%s", cluster ? cluster : "");
    pthread_mutex_unlock(&q->mu);
}

void tn_outq_set_epoch(tn_outq *q, uint64_t epoch)
{
    pthread_mutex_lock(&q->mu);
    q->epoch = epoch;
    pthread_mutex_unlock(&q->mu);
}

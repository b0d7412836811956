/* The event envelope: building, msgpack encoding (msgpack-c's packer) and strict
 * bounded decoding (core/mp.h), plus the chain hash (libsodium's BLAKE2b). */
#include "event.h"

#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"
#include "sm.h"

void tn_event_init(tn_event *ev, unsigned machine, unsigned event, uint64_t wf, uint64_t task)
{
    ev->seq = 0;
    ev->at = 0;
    ev->machine = (uint8_t)machine;
    ev->event = (uint8_t)event;
    ev->wf = wf;
    ev->task = task;
    ev->from = 0;
    ev->to = 0;
    ev->actor.p = "";
    ev->actor.len = 0;
    ev->nattrs = 0;
    memset(ev->prev, 0, sizeof(ev->prev));
}

static tn_attr *attr_add(tn_event *ev, const char *key)
{
    if (ev->nattrs >= TN_ATTRS_MAX)
        return NULL;
    tn_attr *a = &ev->attrs[ev->nattrs++];
    a->key = tn_str_c(key);
    a->i = 0;
    a->s.p = "";
    a->s.len = 0;
    return a;
}

tn_err tn_event_set_int(tn_event *ev, const char *key, int64_t v)
{
    tn_attr *a = attr_add(ev, key);
    if (!a)
        return TN_ERR_TOOBIG;
    a->type = TN_ATTR_INT;
    a->i = v;
    return TN_OK;
}

tn_err tn_event_set_strn(tn_event *ev, const char *key, const char *v, size_t len)
{
    if (len > TN_ATTR_VAL_MAX)
        return TN_ERR_TOOBIG;
    tn_attr *a = attr_add(ev, key);
    if (!a)
        return TN_ERR_TOOBIG;
    a->type = TN_ATTR_STR;
    a->s.p = v;
    a->s.len = (uint32_t)len;
    return TN_OK;
}

tn_err tn_event_set_str(tn_event *ev, const char *key, const char *v)
{
    return tn_event_set_strn(ev, key, v ? v : "", v ? strlen(v) : 0);
}

tn_err tn_event_set_bin(tn_event *ev, const char *key, const void *v, size_t len)
{
    tn_err e = tn_event_set_strn(ev, key, (const char *)v, len);
    if (e == TN_OK)
        ev->attrs[ev->nattrs - 1].type = TN_ATTR_BIN;
    return e;
}

const tn_attr *tn_event_attr(const tn_event *ev, const char *key)
{
    for (uint32_t i = 0; i < ev->nattrs; i++)
        if (tn_str_eq(ev->attrs[i].key, key))
            return &ev->attrs[i];
    return NULL;
}

bool tn_event_int(const tn_event *ev, const char *key, int64_t *out)
{
    const tn_attr *a = tn_event_attr(ev, key);
    if (!a || a->type != TN_ATTR_INT)
        return false;
    *out = a->i;
    return true;
}

static void pack_bytes(msgpack_packer *pk, tn_str s, bool bin)
{
    if (bin) {
        msgpack_pack_bin(pk, s.len);
        msgpack_pack_bin_body(pk, s.p, s.len);
    } else {
        msgpack_pack_str(pk, s.len);
        msgpack_pack_str_body(pk, s.p, s.len);
    }
}

tn_err tn_event_encode(const tn_event *ev, tn_buf *out)
{
    if (ev->actor.len > TN_ACTOR_MAX || ev->nattrs > TN_ATTRS_MAX)
        return TN_ERR_TOOBIG;
    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 12);
    msgpack_pack_uint8(&pk, TN_EVENT_VERSION);
    msgpack_pack_uint64(&pk, ev->seq);
    msgpack_pack_int64(&pk, ev->at);
    msgpack_pack_uint8(&pk, ev->machine);
    msgpack_pack_uint8(&pk, ev->event);
    msgpack_pack_uint64(&pk, ev->wf);
    msgpack_pack_uint64(&pk, ev->task);
    msgpack_pack_uint8(&pk, ev->from);
    msgpack_pack_uint8(&pk, ev->to);
    pack_bytes(&pk, ev->actor, false);
    msgpack_pack_map(&pk, ev->nattrs);
    for (uint32_t i = 0; i < ev->nattrs; i++) {
        const tn_attr *a = &ev->attrs[i];
        if (a->key.len == 0 || a->key.len > TN_ATTR_KEY_MAX ||
            (a->type != TN_ATTR_INT && a->s.len > TN_ATTR_VAL_MAX)) {
            out->size = start;
            return TN_ERR_TOOBIG;
        }
        pack_bytes(&pk, a->key, false);
        if (a->type == TN_ATTR_INT)
            msgpack_pack_int64(&pk, a->i);
        else
            pack_bytes(&pk, a->s, a->type == TN_ATTR_BIN);
        /* (a->s is ignored for ints, so a decoded event re-encodes to the same bytes) */
    }
    msgpack_pack_bin(&pk, TN_HASH_LEN);
    msgpack_pack_bin_body(&pk, ev->prev, TN_HASH_LEN);
    if (!out->data) /* msgpack-c reports allocation failure only by leaving data NULL */
        return TN_ERR_NOMEM;
    if (out->size - start > TN_EVENT_MAX_BYTES) {
        out->size = start;
        return TN_ERR_TOOBIG;
    }
    return TN_OK;
}

tn_err tn_event_decode_strict(const void *buf, size_t len, tn_event *ev)
{
    if (len > TN_EVENT_MAX_BYTES)
        return TN_ERR_TOOBIG;
    tn_mp r;
    tn_mp_init(&r, buf, len);
    uint32_t n;
    uint64_t v = 0, machine = 0, event = 0, from = 0, to = 0;
    if (!tn_mp_array(&r, 64, &n))
        return r.err;
    if (n == 0 || !tn_mp_u64(&r, &v))
        return r.err ? r.err : TN_ERR_TRUNCATED;
    if (v != TN_EVENT_VERSION)
        return TN_ERR_VERSION;
    if (n != 12)
        return TN_ERR_CORRUPT;
    tn_mp_u64(&r, &ev->seq);
    tn_mp_i64(&r, &ev->at);
    tn_mp_uint_max(&r, TN_MACHINE_MAX, &machine);
    tn_mp_uint_max(&r, 254, &event);
    tn_mp_u64(&r, &ev->wf);
    tn_mp_u64(&r, &ev->task);
    tn_mp_uint_max(&r, 254, &from);
    tn_mp_uint_max(&r, 254, &to);
    tn_mp_str(&r, TN_ACTOR_MAX, &ev->actor.p, &ev->actor.len);
    if (!tn_mp_map(&r, TN_ATTRS_MAX, &ev->nattrs))
        return r.err;
    for (uint32_t i = 0; i < ev->nattrs; i++) {
        tn_attr *a = &ev->attrs[i];
        if (!tn_mp_str(&r, TN_ATTR_KEY_MAX, &a->key.p, &a->key.len))
            return r.err;
        if (a->key.len == 0)
            return TN_ERR_CORRUPT;
        int t = tn_mp_peek(&r);
        if (t < 0)
            return TN_ERR_TRUNCATED;
        if (t == 0xc4 || t == 0xc5 || t == 0xc6) {
            a->type = TN_ATTR_BIN;
            tn_mp_bytes(&r, true, TN_ATTR_VAL_MAX, &a->s.p, &a->s.len);
        } else if ((t & 0xe0) == 0xa0 || t == 0xd9 || t == 0xda || t == 0xdb) {
            a->type = TN_ATTR_STR;
            tn_mp_str(&r, TN_ATTR_VAL_MAX, &a->s.p, &a->s.len);
        } else {
            a->type = TN_ATTR_INT;
            a->s.p = "";
            a->s.len = 0;
            tn_mp_i64(&r, &a->i);
        }
        if (r.err)
            return r.err;
    }
    const char *h;
    uint32_t hl;
    if (!tn_mp_bytes(&r, true, TN_HASH_LEN, &h, &hl))
        return r.err;
    if (hl != TN_HASH_LEN)
        return TN_ERR_CORRUPT;
    if (!tn_mp_done(&r))
        return r.err;
    if (machine == 0)
        return TN_ERR_CORRUPT;
    memcpy(ev->prev, h, TN_HASH_LEN);
    ev->machine = (uint8_t)machine;
    ev->event = (uint8_t)event;
    ev->from = (uint8_t)from;
    ev->to = (uint8_t)to;
    return TN_OK;
}

/* --- the fast path ------------------------------------------------------------------
 * tn_event_encode writes one shape: an array of 12, the smallest msgpack int for each
 * number, short strings, a bin8 of 32 bytes for prev. The fast path reads only that
 * shape, every read bounded, with no per-read error state and few branches; anything
 * else (a negative or signed-typed number, a long key or actor, a length past the end,
 * a truncation) sends the event to the strict reader, which decodes it or says what is
 * wrong. So the fast path accepts a subset of what the strict reader accepts, with the
 * same result, and every verdict on malformed bytes is the strict reader's. */

#define FAST_INLINE static inline __attribute__((always_inline))

/* Bytes of the unsigned msgpack int whose type byte is t (positive fixint, uint8..64),
 * 0 for any other type; and the shift that leaves its value in a big-endian 8-byte
 * load from its first value byte (the type byte itself for a fixint). */
static const uint8_t uint_width[256] = {
    [0x00 ... 0x7f] = 1, [0xcc] = 2, [0xcd] = 3, [0xce] = 5, [0xcf] = 9};
static const uint8_t uint_shift[256] = {
    [0x00 ... 0x7f] = 56, [0xcc] = 56, [0xcd] = 48, [0xce] = 32, [0xcf] = 0};

/* The unsigned int at p, of uint_width[*p] >= 1 bytes; 9 bytes at p must be readable
 * whatever its width (one load and one shift, no branch on the width). */
FAST_INLINE uint64_t fast_uint_at(const uint8_t *p)
{
    uint64_t raw;
    memcpy(&raw, p + (p[0] >> 7), 8); /* a fixint is its own value byte */
    return __builtin_bswap64(raw) >> uint_shift[p[0]];
}

/* A header field: an unsigned int <= max at *p, with 9 readable bytes there. */
FAST_INLINE bool fast_uint(const uint8_t **p, uint64_t max, uint64_t *out)
{
    unsigned w = uint_width[**p];
    uint64_t v = fast_uint_at(*p);
    if (w == 0 || v > max)
        return false;
    *out = v;
    *p += w;
    return true;
}

/* A str or bin at p < lim, of at most max bytes, ending at or before lim. */
FAST_INLINE bool fast_bytes(const uint8_t **p, const uint8_t *lim, uint32_t max, uint8_t *type,
                            tn_str *out)
{
    const uint8_t *q = *p;
    size_t left = (size_t)(lim - q);
    uint8_t t = q[0];
    unsigned hw;
    uint64_t n;
    if ((t & 0xe0) == 0xa0) {
        hw = 1;
        n = t & 0x1f;
    } else if ((t == 0xd9 || t == 0xc4) && left >= 2) {
        hw = 2;
        n = q[1];
    } else if ((t == 0xda || t == 0xc5) && left >= 3) {
        hw = 3;
        n = tn_mp_be(q + 1, 2);
    } else if ((t == 0xdb || t == 0xc6) && left >= 5) {
        hw = 5;
        n = tn_mp_be(q + 1, 4);
    } else {
        return false;
    }
    if (n > max || n > left - hw)
        return false;
    *type = (t == 0xc4 || t == 0xc5 || t == 0xc6) ? TN_ATTR_BIN : TN_ATTR_STR;
    out->p = (const char *)q + hw;
    out->len = (uint32_t)n;
    *p = q + hw + n;
    return true;
}

/* One attr at *p < lim: a key of 1 to 31 bytes as a fixstr, then a non-negative int,
 * a str or a bin, all before lim. The 34 bytes of prev follow lim, so 9 bytes are
 * readable at any p < lim. */
FAST_INLINE bool fast_attr(const uint8_t **pp, const uint8_t *lim, tn_attr *a)
{
    const uint8_t *p = *pp;
    unsigned kl = *p & 0x1f;
    if ((*p & 0xe0) != 0xa0 || kl == 0 || (size_t)(lim - p) < 2u + kl)
        return false;
    a->key.p = (const char *)p + 1;
    a->key.len = kl;
    p += 1 + kl;
    unsigned w = uint_width[*p];
    if (w) {
        uint64_t v = fast_uint_at(p);
        if (w > (size_t)(lim - p) || v > (uint64_t)INT64_MAX)
            return false;
        a->type = TN_ATTR_INT;
        a->i = (int64_t)v;
        a->s.p = "";
        a->s.len = 0;
        p += w;
    } else if (!fast_bytes(&p, lim, TN_ATTR_VAL_MAX, &a->type, &a->s)) {
        return false;
    }
    *pp = p;
    return true;
}

/* The attrs map at *p < lim (where prev starts); all of it before lim. */
FAST_INLINE bool fast_attrs(const uint8_t **pp, const uint8_t *lim, tn_event *ev)
{
    const uint8_t *p = *pp;
    uint32_t n;
    if ((*p & 0xf0) == 0x80) {
        n = *p++ & 0x0f;
    } else if (*p == 0xde && lim - p >= 3 &&
               (n = (uint32_t)tn_mp_be(p + 1, 2)) <= TN_ATTRS_MAX) {
        p += 3;
    } else {
        return false;
    }
    for (uint32_t i = 0; i < n; i++)
        if (p >= lim || !fast_attr(&p, lim, &ev->attrs[i]))
            return false;
    ev->nattrs = n;
    *pp = p;
    return true;
}

/* Two fixints at p: both values, and the position after them. */
FAST_INLINE bool fast_fix2(const uint8_t **p, uint64_t *a, uint64_t *b)
{
    const uint8_t *q = *p;
    if ((q[0] | q[1]) & 0x80)
        return false;
    *a = q[0];
    *b = q[1];
    *p = q + 2;
    return true;
}

/* at, machine and event, and later from and to. Each field's position needs the width
 * of the one before, a chain of dependent loads that is most of the decode's time; but
 * at is nearly always a uint64 (a time in ns) and the others fixints, and then their
 * positions are known at once: checked, not waited for. Else one field at a time. With
 * 21 bytes readable at p. */
FAST_INLINE bool fast_at_machine_event(const uint8_t **pp, uint64_t *at, uint64_t *machine,
                                       uint64_t *event)
{
    const uint8_t *p = *pp + 9;
    if (**pp == 0xcf && fast_fix2(&p, machine, event)) {
        uint64_t raw;
        memcpy(&raw, *pp + 1, 8);
        *at = __builtin_bswap64(raw);
        *pp = p;
        return *at <= INT64_MAX && *machine <= TN_MACHINE_MAX;
    }
    return fast_uint(pp, INT64_MAX, at) && fast_uint(pp, TN_MACHINE_MAX, machine) &&
           fast_uint(pp, 254, event);
}

/* The header fields take at most 46 bytes and each read loads 9: events shorter than
 * this go to the strict reader. */
#define FAST_MIN_LEN 56

/* The whole event in the shape tn_event_encode writes; false = ask the strict reader. */
static bool decode_fast(const uint8_t *b, size_t len, tn_event *ev)
{
    if (len < FAST_MIN_LEN || len > TN_EVENT_MAX_BYTES || b[0] != 0x9c ||
        b[1] != TN_EVENT_VERSION)
        return false;
    const uint8_t *p = b + 2, *lim = b + len - 2 - TN_HASH_LEN;
    uint64_t machine, event, from, to, at;
    if (!fast_uint(&p, UINT64_MAX, &ev->seq) ||
        !fast_at_machine_event(&p, &at, &machine, &event) ||
        !fast_uint(&p, UINT64_MAX, &ev->wf) || !fast_uint(&p, UINT64_MAX, &ev->task) ||
        (!fast_fix2(&p, &from, &to) &&
         (!fast_uint(&p, 254, &from) || !fast_uint(&p, 254, &to))) ||
        machine == 0)
        return false;
    uint8_t actor_type;
    if (p >= lim || !fast_bytes(&p, lim, TN_ACTOR_MAX, &actor_type, &ev->actor) ||
        actor_type != TN_ATTR_STR || p >= lim || !fast_attrs(&p, lim, ev))
        return false;
    if (p != lim || lim[0] != 0xc4 || lim[1] != TN_HASH_LEN)
        return false;
    memcpy(ev->prev, lim + 2, TN_HASH_LEN);
    ev->at = (int64_t)at;
    ev->machine = (uint8_t)machine;
    ev->event = (uint8_t)event;
    ev->from = (uint8_t)from;
    ev->to = (uint8_t)to;
    return true;
}

tn_err tn_event_decode(const void *buf, size_t len, tn_event *ev)
{
    if (decode_fast((const uint8_t *)buf, len, ev))
        return TN_OK;
    return tn_event_decode_strict(buf, len, ev);
}

void tn_event_hash(const void *enc, size_t len, uint8_t out[TN_HASH_LEN])
{
    crypto_generichash(out, TN_HASH_LEN, (const unsigned char *)enc, len, NULL, 0);
}

const char *tn_machine_name(unsigned machine)
{
    const tn_sm *m = tn_sm_get(machine);
    return m ? m->name : "?";
}

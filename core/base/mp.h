/* A strict, bounded, zero-copy msgpack reader for the hot decoders (events, wire).
 * Writing uses msgpack-c's packer; reading the log at millions of events a second
 * cannot afford msgpack-c's unpacker, which builds an object tree in a zone per
 * message. This reader checks every length against the bytes left before touching
 * them, reads only the types a schema asks for, and never allocates: strings and
 * binaries it returns point into the input buffer. */
#ifndef TN_MP_H
#define TN_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "err.h"

typedef struct tn_mp {
    const uint8_t *p;
    const uint8_t *end;
    tn_err err; /* first error seen; every read after an error fails too */
} tn_mp;

static inline void tn_mp_init(tn_mp *r, const void *buf, size_t len)
{
    r->p = (const uint8_t *)buf;
    r->end = r->p + len;
    r->err = TN_OK;
}

static inline bool tn_mp_fail(tn_mp *r, tn_err e)
{
    if (r->err == TN_OK)
        r->err = e;
    r->p = r->end;
    return false;
}

static inline size_t tn_mp_left(const tn_mp *r)
{
    return (size_t)(r->end - r->p);
}

static inline bool tn_mp_need(tn_mp *r, size_t n)
{
    if (r->err != TN_OK)
        return false;
    if (tn_mp_left(r) < n)
        return tn_mp_fail(r, TN_ERR_TRUNCATED);
    return true;
}

/* A big-endian integer of n bytes; the widths msgpack uses load whole (replay decodes
 * millions of events a second, several such fields each). */
static inline uint64_t tn_mp_be(const uint8_t *p, unsigned n)
{
    uint32_t v32;
    uint64_t v = 0;
    switch (n) {
    case 1: return p[0];
    case 2: return (uint64_t)p[0] << 8 | p[1];
    case 4: memcpy(&v32, p, 4); return __builtin_bswap32(v32);
    case 8: memcpy(&v, p, 8); return __builtin_bswap64(v);
    default:
        for (unsigned i = 0; i < n; i++)
            v = (v << 8) | p[i];
        return v;
    }
}

/* The type byte of the next item without consuming it; -1 at the end. */
static inline int tn_mp_peek(const tn_mp *r)
{
    return (r->err == TN_OK && r->p < r->end) ? *r->p : -1;
}

/* An unsigned integer (positive fixint, uint8..64, or a non-negative int). */
static inline bool tn_mp_u64(tn_mp *r, uint64_t *out)
{
    if (!tn_mp_need(r, 1))
        return false;
    uint8_t t = *r->p;
    unsigned n;
    if (t <= 0x7f) {
        *out = t;
        r->p++;
        return true;
    }
    switch (t) {
    case 0xcc:
    case 0xd0: n = 1; break;
    case 0xcd:
    case 0xd1: n = 2; break;
    case 0xce:
    case 0xd2: n = 4; break;
    case 0xcf:
    case 0xd3: n = 8; break;
    default: return tn_mp_fail(r, TN_ERR_TYPE);
    }
    if (!tn_mp_need(r, 1 + n))
        return false;
    uint64_t v = tn_mp_be(r->p + 1, n);
    if (t >= 0xd0) { /* signed: must be non-negative */
        if (v >> (n * 8 - 1))
            return tn_mp_fail(r, TN_ERR_TYPE);
    }
    r->p += 1 + n;
    *out = v;
    return true;
}

/* A signed integer (any msgpack int that fits in int64). */
static inline bool tn_mp_i64(tn_mp *r, int64_t *out)
{
    if (!tn_mp_need(r, 1))
        return false;
    uint8_t t = *r->p;
    if (t >= 0xe0) {
        *out = (int8_t)t;
        r->p++;
        return true;
    }
    unsigned n;
    switch (t) {
    case 0xd0: n = 1; break;
    case 0xd1: n = 2; break;
    case 0xd2: n = 4; break;
    case 0xd3: n = 8; break;
    default: {
        uint64_t u;
        if (!tn_mp_u64(r, &u))
            return false;
        if (u > (uint64_t)INT64_MAX)
            return tn_mp_fail(r, TN_ERR_TYPE);
        *out = (int64_t)u;
        return true;
    }
    }
    if (!tn_mp_need(r, 1 + n))
        return false;
    uint64_t v = tn_mp_be(r->p + 1, n);
    unsigned bits = n * 8;
    if (bits < 64 && (v >> (bits - 1)))
        v |= ~((UINT64_C(1) << bits) - 1); /* sign-extend */
    r->p += 1 + n;
    *out = (int64_t)v;
    return true;
}

/* An unsigned integer that must be <= max. */
static inline bool tn_mp_uint_max(tn_mp *r, uint64_t max, uint64_t *out)
{
    if (!tn_mp_u64(r, out))
        return false;
    if (*out > max)
        return tn_mp_fail(r, TN_ERR_TOOBIG);
    return true;
}

/* An array header; its length must be <= max. */
static inline bool tn_mp_array(tn_mp *r, uint32_t max, uint32_t *len)
{
    if (!tn_mp_need(r, 1))
        return false;
    uint8_t t = *r->p;
    uint64_t n;
    if ((t & 0xf0) == 0x90) {
        n = t & 0x0f;
        r->p++;
    } else if (t == 0xdc || t == 0xdd) {
        unsigned w = t == 0xdc ? 2 : 4;
        if (!tn_mp_need(r, 1 + w))
            return false;
        n = tn_mp_be(r->p + 1, w);
        r->p += 1 + w;
    } else {
        return tn_mp_fail(r, TN_ERR_TYPE);
    }
    if (n > max)
        return tn_mp_fail(r, TN_ERR_TOOBIG);
    *len = (uint32_t)n;
    return true;
}

/* A map header; its number of pairs must be <= max. */
static inline bool tn_mp_map(tn_mp *r, uint32_t max, uint32_t *len)
{
    if (!tn_mp_need(r, 1))
        return false;
    uint8_t t = *r->p;
    uint64_t n;
    if ((t & 0xf0) == 0x80) {
        n = t & 0x0f;
        r->p++;
    } else if (t == 0xde || t == 0xdf) {
        unsigned w = t == 0xde ? 2 : 4;
        if (!tn_mp_need(r, 1 + w))
            return false;
        n = tn_mp_be(r->p + 1, w);
        r->p += 1 + w;
    } else {
        return tn_mp_fail(r, TN_ERR_TYPE);
    }
    if (n > max)
        return tn_mp_fail(r, TN_ERR_TOOBIG);
    *len = (uint32_t)n;
    return true;
}

/* A str (bin = false) or bin (bin = true) of at most max bytes; *s points into the
 * input. */
static inline bool tn_mp_bytes(tn_mp *r, bool bin, uint32_t max, const char **s, uint32_t *len)
{
    if (!tn_mp_need(r, 1))
        return false;
    uint8_t t = *r->p;
    unsigned w;
    uint64_t n;
    if (!bin && (t & 0xe0) == 0xa0) {
        n = t & 0x1f;
        w = 0;
    } else if ((!bin && t == 0xd9) || (bin && t == 0xc4)) {
        w = 1;
    } else if ((!bin && t == 0xda) || (bin && t == 0xc5)) {
        w = 2;
    } else if ((!bin && t == 0xdb) || (bin && t == 0xc6)) {
        w = 4;
    } else {
        return tn_mp_fail(r, TN_ERR_TYPE);
    }
    if (!tn_mp_need(r, 1 + w))
        return false;
    if (w)
        n = tn_mp_be(r->p + 1, w);
    if (n > max)
        return tn_mp_fail(r, TN_ERR_TOOBIG);
    if (!tn_mp_need(r, 1 + w + n))
        return false;
    *s = (const char *)r->p + 1 + w;
    *len = (uint32_t)n;
    r->p += 1 + w + n;
    return true;
}

static inline bool tn_mp_str(tn_mp *r, uint32_t max, const char **s, uint32_t *len)
{
    return tn_mp_bytes(r, false, max, s, len);
}

/* A str copied into dst (NUL-terminated); its length must be < cap. */
static inline bool tn_mp_str_copy(tn_mp *r, char *dst, size_t cap)
{
    const char *s;
    uint32_t n;
    if (!tn_mp_str(r, (uint32_t)(cap - 1), &s, &n))
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

/* A nil. */
static inline bool tn_mp_nil(tn_mp *r)
{
    if (!tn_mp_need(r, 1))
        return false;
    if (*r->p != 0xc0)
        return tn_mp_fail(r, TN_ERR_TYPE);
    r->p++;
    return true;
}

/* A bool. */
static inline bool tn_mp_bool(tn_mp *r, bool *out)
{
    if (!tn_mp_need(r, 1))
        return false;
    if (*r->p != 0xc2 && *r->p != 0xc3)
        return tn_mp_fail(r, TN_ERR_TYPE);
    *out = *r->p == 0xc3;
    r->p++;
    return true;
}

/* True when the whole input was consumed without error; trailing bytes are an error. */
static inline bool tn_mp_done(tn_mp *r)
{
    if (r->err != TN_OK)
        return false;
    if (r->p != r->end)
        return tn_mp_fail(r, TN_ERR_CORRUPT);
    return true;
}

#endif

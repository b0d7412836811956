/* The per-workflow index's entry layout: keys, LEB128 gaps, and a bounded reader. */
#include "wfindex.h"

#include "util.h"

void tn_wfidx_key(uint8_t key[TN_WFIDX_KEY_LEN], uint64_t wf, uint64_t first)
{
    tn_put_be64(key, wf);
    tn_put_be64(key + 8, first);
}

uint64_t tn_wfidx_key_wf(const void *key)
{
    return tn_get_be64(key);
}

size_t tn_wfidx_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* One LEB128 u64 from [*p, end); false when truncated, over 10 bytes or over 64 bits. */
static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0, shift = 0; i < TN_WFIDX_VARINT_MAX; i++, shift += 7) {
        if (*p >= end)
            return false;
        uint8_t b = *(*p)++;
        if (i == TN_WFIDX_VARINT_MAX - 1 && b > 1)
            return false; /* the 10th byte holds bit 63 only */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

tn_err tn_wfidx_iter_init(tn_wfidx_iter *it, const void *key, size_t klen, const void *val,
                          size_t vlen)
{
    if (klen != TN_WFIDX_KEY_LEN)
        return TN_ERR_CORRUPT;
    it->p = val;
    it->end = it->p + vlen;
    it->next = tn_get_be64((const uint8_t *)key + 8);
    uint64_t n;
    /* every gap takes at least one byte: a count above that is a lie */
    if (it->next == 0 || !get_varint(&it->p, it->end, &n) || n == 0 ||
        n - 1 > (uint64_t)(it->end - it->p))
        return TN_ERR_CORRUPT;
    it->left = n;
    return TN_OK;
}

tn_err tn_wfidx_iter_next(tn_wfidx_iter *it, uint64_t *seq)
{
    if (it->left == 0)
        return it->p == it->end ? TN_ERR_NOENT : TN_ERR_CORRUPT;
    *seq = it->next;
    if (--it->left > 0) {
        uint64_t gap;
        if (!get_varint(&it->p, it->end, &gap) || gap == 0 || gap > UINT64_MAX - it->next)
            return TN_ERR_CORRUPT;
        it->next += gap;
    }
    return TN_OK;
}

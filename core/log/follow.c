/* Log shipping: reads of committed events by seq, and appends of the leader's events to a
 * standby's log (see follow.h). */
#include "follow.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "mp.h"
#include "store.h"
#include "util.h"

/* The hash of event `seq` (its encoding's), read in t. */
static tn_err hash_of(tn_rtxn *t, uint64_t seq, uint8_t out[TN_HASH_LEN])
{
    if (seq == 0) {
        memset(out, 0, TN_HASH_LEN);
        return TN_OK;
    }
    uint8_t key[8];
    tn_put_be64(key, seq);
    tn_val v;
    tn_err e = tn_store_get(t, TN_DB_EVENTS, key, 8, &v);
    if (!e)
        tn_event_hash(v.data, v.len, out);
    return e;
}

static uint64_t last_seq_of(tn_rtxn *t)
{
    tn_val v;
    if (tn_store_get(t, TN_DB_META, TN_META_LAST_SEQ, strlen(TN_META_LAST_SEQ), &v) != TN_OK ||
        v.len != 8)
        return 0;
    return tn_get_be64(v.data);
}

tn_err tn_follow_read(tn_store *s, uint64_t from, uint32_t max, size_t max_bytes, tn_buf *out,
                      uint32_t *n, uint64_t *last, uint8_t head[TN_HASH_LEN])
{
    *n = 0;
    if (from == 0)
        from = 1;
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    *last = last_seq_of(t);
    if (from - 1 > *last) {
        tn_store_read_end(t);
        return TN_ERR_NOENT;
    }
    uint8_t h[TN_HASH_LEN];
    if ((e = hash_of(t, from - 1, h))) {
        tn_store_read_end(t);
        return e;
    }
    if (head)
        memcpy(head, h, TN_HASH_LEN);
    uint64_t avail = *last - (from - 1);
    uint32_t want = avail < max ? (uint32_t)avail : max;
    /* count first: the array header says how many, and a byte bound may cut it short */
    size_t bytes = 0;
    uint32_t k = 0;
    for (; k < want; k++) {
        uint8_t key[8];
        tn_val v;
        tn_put_be64(key, from + k);
        if ((e = tn_store_get(t, TN_DB_EVENTS, key, 8, &v)))
            break;
        if (k > 0 && bytes + v.len > max_bytes)
            break;
        bytes += v.len;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, k);
    for (uint32_t i = 0; i < k; i++) {
        uint8_t key[8];
        tn_val v;
        tn_put_be64(key, from + i);
        if (tn_store_get(t, TN_DB_EVENTS, key, 8, &v) != TN_OK)
            break; /* not reached: the same snapshot had it above */
        msgpack_pack_bin(&pk, v.len);
        msgpack_pack_bin_body(&pk, v.data, v.len);
    }
    tn_store_read_end(t);
    if (!out->data)
        return TN_ERR_NOMEM;
    *n = k;
    return TN_OK;
}

tn_err tn_evlog_head_hash(tn_evlog *l, uint8_t out[TN_HASH_LEN])
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(tn_evlog_store(l), &t);
    if (e)
        return e;
    e = hash_of(t, tn_evlog_last_seq(l), out);
    tn_store_read_end(t);
    return e;
}

tn_err tn_evlog_follow(tn_evlog *l, const void *enc, size_t len, tn_errmsg *msg)
{
    tn_event theirs, ours;
    if (tn_event_decode(enc, len, &theirs) != TN_OK) {
        tn_evlog_discard(l);
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "shipped event (%zu bytes) does not decode: the leader runs "
                             "another tern version, or the stream is damaged",
                             len);
    }
    uint64_t want = tn_evlog_next_seq(l);
    if (theirs.seq != want) {
        tn_evlog_discard(l);
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "shipped event has seq %" PRIu64 ", expected %" PRIu64, theirs.seq,
                             want);
    }
    /* the log fills seq, from, to and prev itself: from the tables and our head */
    ours = theirs;
    tn_err e = tn_evlog_add(l, &ours, msg);
    if (e) {
        tn_evlog_discard(l);
        return e;
    }
    tn_buf re = {0};
    bool same = memcmp(ours.prev, theirs.prev, TN_HASH_LEN) == 0 && ours.from == theirs.from &&
                ours.to == theirs.to && tn_event_encode(&ours, &re) == TN_OK &&
                re.size == len && memcmp(re.data, enc, len) == 0;
    tn_buf_free(&re);
    if (!same) {
        tn_evlog_discard(l);
        return tn_errmsg_set(msg, TN_ERR_CHAIN,
                             "shipped event %" PRIu64
                             " does not follow our log (its prev hash, "
                             "state transition or encoding differ): the logs diverged at or "
                             "before seq %" PRIu64,
                             theirs.seq, theirs.seq - 1);
    }
    return TN_OK;
}

tn_err tn_evlog_follow_batch(tn_evlog *l, const void *buf, size_t len, uint32_t *n,
                             tn_errmsg *msg)
{
    *n = 0;
    tn_mp r;
    tn_mp_init(&r, buf, len);
    uint32_t count;
    if (!tn_mp_array(&r, UINT32_MAX, &count))
        return tn_errmsg_set(msg, TN_ERR_CORRUPT, "shipped batch: not an array");
    for (uint32_t i = 0; i < count; i++) {
        const char *bp;
        uint32_t blen;
        if (!tn_mp_bytes(&r, true, TN_EVENT_MAX_BYTES, &bp, &blen)) {
            tn_evlog_discard(l);
            return tn_errmsg_set(msg, TN_ERR_CORRUPT, "shipped batch: event %u is not bin", i);
        }
        tn_err e = tn_evlog_follow(l, bp, blen, msg);
        if (e)
            return e;
    }
    if (!tn_mp_done(&r)) {
        tn_evlog_discard(l);
        return tn_errmsg_set(msg, TN_ERR_CORRUPT, "shipped batch: trailing bytes");
    }
    tn_err e = count ? tn_evlog_commit(l, msg) : TN_OK;
    if (!e)
        *n = count;
    return e;
}

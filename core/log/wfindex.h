/* The per-workflow index (the store's by_wf database): which events belong to a
 * workflow (its own and its tasks'), without scanning the log. One entry per workflow
 * and commit, not per event: an event costs the writer a few bytes in its workflow's
 * entry instead of an LMDB put of its own.
 *
 * Entry layout (store format 2):
 *   key   = workflow id (u64 big-endian) || first seq of the entry (u64 big-endian)
 *   value = n (LEB128, >= 1), then n - 1 gaps (LEB128, each >= 1): the entry's seqs are
 *           first, first + gap1, first + gap1 + gap2, ... strictly ascending.
 * A commit's events get seqs above every earlier commit's, so a workflow's entries in
 * key order list its events in seq order. */
#ifndef TN_WFINDEX_H
#define TN_WFINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TN_WFIDX_KEY_LEN    16
#define TN_WFIDX_VARINT_MAX 10 /* bytes of one LEB128 u64 */

/* Build the key of workflow `wf`'s entry whose first seq is `first`. */
void tn_wfidx_key(uint8_t key[TN_WFIDX_KEY_LEN], uint64_t wf, uint64_t first);

/* Append v as LEB128 at p (room for TN_WFIDX_VARINT_MAX bytes); returns bytes written. */
size_t tn_wfidx_put_varint(uint8_t *p, uint64_t v);

/* A bounded reader of one entry: every seq it yields is checked (at least one, gaps
 * >= 1, no overflow, no bytes left over). */
typedef struct tn_wfidx_iter {
    const uint8_t *p, *end;
    uint64_t next; /* the seq to yield next */
    uint64_t left; /* seqs still to yield */
} tn_wfidx_iter;

/* Start reading an entry from its key and value (valid while the caller reads).
 * TN_ERR_CORRUPT when the key is not 16 bytes or the value's count is malformed. */
tn_err tn_wfidx_iter_init(tn_wfidx_iter *it, const void *key, size_t klen, const void *val,
                          size_t vlen);
/* The workflow id in an entry's key (klen must be TN_WFIDX_KEY_LEN). */
uint64_t tn_wfidx_key_wf(const void *key);
/* Yield the next seq in *seq: TN_OK, TN_ERR_NOENT at the end of the entry (and the value
 * was used exactly), TN_ERR_CORRUPT on a malformed value. */
tn_err tn_wfidx_iter_next(tn_wfidx_iter *it, uint64_t *seq);

#endif

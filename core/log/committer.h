/* The event log's committer thread. While the engine thread is still adding events to
 * a batch, the committer chains them (each encoding ends with the previous event's
 * hash, which it fills in), hashes them and appends them to the store's write
 * transaction; the commit then only has the rest of the batch (projections, index,
 * meta) and the fsync left. A commit may also be started and waited for later, while
 * the next batch is staged: the committer writes and syncs batch k, then goes on with
 * batch k+1 (chained to k). The engine thread, when it waits for commit k, chains and
 * hashes batch k+1 meanwhile (once k is chained), so that the committer only appends
 * those. Nothing is durable before its commit ends, and a failed or aborted batch
 * writes nothing.
 *
 * Two staging sets: the one being staged, and the one being committed. Single
 * producer: one engine thread stages, starts, waits and aborts. Internal to core/log. */
#ifndef TN_COMMITTER_H
#define TN_COMMITTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "store.h"

typedef struct tn_committer tn_committer;

tn_err tn_committer_new(tn_store *s, tn_committer **out);
/* Wait for a started commit, abort what is staged, stop the thread; accepts NULL. */
void tn_committer_free(tn_committer *c);

/* Stage the next encoded event: `len` bytes whose last TN_HASH_LEN are its prev hash,
 * which the committer overwrites. Events are numbered on from the last seq given to
 * tn_committer_reset, through every commit since. */
tn_err tn_committer_stage(tn_committer *c, const void *enc, size_t len);
/* Events staged since the last start, commit or abort. */
size_t tn_committer_staged(const tn_committer *c);
/* Whether the committer thread has been handed any of them yet: a batch it has not is
 * committed by the calling thread itself (no hand-off in the way of a small commit). */
bool tn_committer_handed(const tn_committer *c);
/* Where the chain goes on: the last committed seq and its hash. Only with nothing
 * staged and no commit started. */
void tn_committer_reset(tn_committer *c, uint64_t last_seq, const uint8_t head[TN_HASH_LEN]);

/* Commit the staged events, then `b` (the committer adds the chain head to it, and with
 * `ckpt` the checkpoint, to TN_DB_META), durably, and wait. On success `head` is the
 * hash of the last event. On error nothing was written. The staged events are gone. */
tn_err tn_committer_commit(tn_committer *c, tn_batch *b, bool ckpt, uint8_t head[TN_HASH_LEN],
                           tn_errmsg *msg);
/* The same without waiting: the committer owns `b` until tn_committer_wait, and staging
 * goes on into the other set. Only with no commit started. */
void tn_committer_start(tn_committer *c, tn_batch *b, bool ckpt);
/* Wait for the started commit; its outcome as tn_committer_commit's. TN_OK when none
 * was started. */
tn_err tn_committer_wait(tn_committer *c, uint8_t head[TN_HASH_LEN], tn_errmsg *msg);
/* Drop the staged events, writing nothing. Only with no commit started. */
void tn_committer_abort(tn_committer *c);
/* Events the engine thread chained and hashed while it waited, since the start. */
uint64_t tn_committer_helped(tn_committer *c);

#endif

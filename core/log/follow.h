/* Log shipping: a standby master follows the leader's log. The leader reads committed
 * events by seq (tn_follow_read); the standby appends each to its own log with
 * tn_evlog_follow, which checks it as the leader's engine did: the seq is the next one,
 * its prev is our head (the hash chain), the state machine tables accept it in the state
 * our projections are in, and re-encoding it gives the leader's bytes exactly. An event
 * that fails any check is refused and nothing of the batch is kept: the standby's log is
 * a prefix of the leader's or nothing. */
#ifndef TN_FOLLOW_H
#define TN_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "evlog.h"
#include "str.h"

typedef struct tn_store tn_store; /* opaque: store/store.h is core/log's business */

/* Committed events from seq `from` on: at most max events and, past the first, max_bytes
 * bytes, appended to out as a msgpack array of bin (each an event's encoding); *n says how
 * many, *last the store's last committed seq, head (may be NULL) the chain hash of event
 * from-1 (what the follower's head must be; zeros for from = 1). TN_ERR_NOENT when from-1
 * is past the last seq (the follower is ahead: it diverged). */
tn_err tn_follow_read(tn_store *s, uint64_t from, uint32_t max, size_t max_bytes, tn_buf *out,
                      uint32_t *n, uint64_t *last, uint8_t head[TN_HASH_LEN]);

/* Append one shipped event (the leader's encoding) to the pending batch, checked as above:
 * TN_ERR_CORRUPT (undecodable, or the seq is not the next one), TN_ERR_CHAIN (its prev is
 * not our head, or it re-encodes differently: the logs diverged), TN_ERR_ILLEGAL (the
 * tables refuse it). On error the pending batch is discarded. */
tn_err tn_evlog_follow(tn_evlog *l, const void *enc, size_t len, tn_errmsg *msg);

/* Append a batch from tn_follow_read and commit it (one transaction); *n: events added. */
tn_err tn_evlog_follow_batch(tn_evlog *l, const void *buf, size_t len, uint32_t *n,
                             tn_errmsg *msg);

/* The chain hash of the last committed event (zeros for an empty log). */
tn_err tn_evlog_head_hash(tn_evlog *l, uint8_t out[TN_HASH_LEN]);

#endif

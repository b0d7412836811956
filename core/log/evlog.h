/* The event log: the one writer's view of the store. Events are added to a pending
 * batch — each checked against the generated state machine tables (its from-state is
 * the instance's current state; an illegal pair is refused and nothing is added),
 * given the next seq, chained to the previous event's hash, indexed by workflow and
 * folded into the projections — and committed together in one LMDB transaction
 * (group commit). Nothing is visible to readers, or durable, before the commit.
 *
 * Single-threaded: one engine thread owns a tn_evlog. */
#ifndef TN_EVLOG_H
#define TN_EVLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "objproj.h"
#include "proj.h"

typedef struct tn_store tn_store; /* opaque: store/store.h is core/log's business */

typedef struct tn_evlog tn_evlog;

typedef struct tn_evlog_opts {
    size_t map_size; /* initial map size in bytes; 0 = 64 MiB (or the existing size) */
    size_t map_max;  /* the map grows up to this; 0 = 16 GiB */
    bool create;     /* create the store (and its genesis INIT event) if missing */
    bool no_sync;    /* NOT durable: throwaway stores only */
    /* A checkpoint (seq and chain hash) is stored every this many events; every open
     * re-hashes the events after the last one. 0 = TN_EVLOG_CHECKPOINT_EVERY. */
    uint32_t checkpoint_every;
    /* A standby's store (follow.h): created empty, without its own genesis INIT event;
     * the leader's arrives first. */
    bool follower;
} tn_evlog_opts;

#define TN_EVLOG_CHECKPOINT_EVERY 8192

/* Open the log in `dir`. With opts->create a new store is made only in a missing or
 * empty directory (one holding only lock files and empty directories); a directory
 * with other files and no store is refused. Before returning, the hash chain is
 * verified from the last checkpoint to the head: a damaged store is refused
 * (TN_ERR_CHAIN or TN_ERR_CORRUPT) with the file and the seq.
 * On error `msg` says what and where; *out untouched. */
tn_err tn_evlog_open(const char *dir, const tn_evlog_opts *opts, tn_evlog **out,
                     tn_errmsg *msg);
/* Close; pending (uncommitted) events are discarded. Accepts NULL. */
void tn_evlog_close(tn_evlog *l);

/* The log's store, owned by the log: to pass to the readers of logread.h and replay.h
 * (committed data only), never to write to. */
tn_store *tn_evlog_store(tn_evlog *l);
/* The cluster id: the store's random id (meta store_id, made with the store by its
 * genesis INIT event), fixed for the store's life. Carried in every master<->worker frame
 * so a worker bound to one store's master refuses another's. "" if the store has none. */
const char *tn_evlog_cluster_id(const tn_evlog *l);

/* Whether this open created the store (the caller says so to the operator). */
bool tn_evlog_created(const tn_evlog *l);
/* The seq of the last committed event. */
uint64_t tn_evlog_last_seq(const tn_evlog *l);
/* Allocate a fresh workflow / task instance id (never used by a committed event). */
uint64_t tn_evlog_new_wf_id(tn_evlog *l);
uint64_t tn_evlog_new_task_id(tn_evlog *l);

/* Add `ev` to the pending batch. The caller sets machine, event, wf, task, actor,
 * attrs and optionally `at` (0 = now); the log fills seq, from, to and prev.
 * TN_ERR_ILLEGAL: the event is illegal in the instance's current state (msg says
 * which); TN_ERR_INVAL: malformed (unknown machine/event, missing ids or attrs).
 * In both cases nothing was added. Borrowed attr strings need only live until return. */
tn_err tn_evlog_add(tn_evlog *l, tn_event *ev, tn_errmsg *msg);
/* The same, for a caller that keeps its own record of the instance: `*hint` (NULL, or
 * what an earlier add of the same log left there, however old) lets the log find the
 * instance's projection without a lookup; on success *hint is that projection's handle
 * for the next add. A stale handle is recognised and ignored: the log's projections come
 * from memory it keeps until it is closed, so a handle is safe to pass, never to read. */
tn_err tn_evlog_add_hint(tn_evlog *l, tn_event *ev, void **hint, tn_errmsg *msg);
/* Room for `n` more task projections, about to be added (a big workflow's start): a
 * hint, ignored when out of memory. */
void tn_evlog_reserve_tasks(tn_evlog *l, size_t n);
/* Start fetching the projection behind a hint (any hint, NULL too) for an add soon. */
static inline void tn_evlog_prefetch(const void *hint)
{
    if (hint)
        __builtin_prefetch(hint);
}
/* Events waiting for the commit. */
size_t tn_evlog_pending(const tn_evlog *l);
/* Commit every pending event in one durable transaction. On error (TN_ERR_FULL: the
 * store is full) nothing was written, the pending events are discarded and the
 * in-memory state is back where the last commit left it. */
tn_err tn_evlog_commit(tn_evlog *l, tn_errmsg *msg);
/* The same in two halves, so that the next batch is built while this one is written
 * and synced: start hands the pending batch to the log's committer thread and returns
 * (a small batch, or one with schedule, backfill or system events, is committed before
 * it returns); new events then build on it. Wait returns when it is durable. Nothing
 * of a started batch may take effect (be sent, answered, acknowledged) before wait
 * returns TN_OK. When it fails, nothing of it was written and the batch built on it is
 * discarded too: the in-memory state is back at the last commit that succeeded. Start
 * first waits for a batch still in flight (and returns its failure). */
tn_err tn_evlog_commit_start(tn_evlog *l, tn_errmsg *msg);
tn_err tn_evlog_commit_wait(tn_evlog *l, tn_errmsg *msg);
/* A started commit was not yet waited for. */
bool tn_evlog_inflight(const tn_evlog *l);
/* Events of later batches this thread chained and hashed while it waited for a commit
 * (the committer then only appends them), since the log was opened. */
uint64_t tn_evlog_hashed_waiting(const tn_evlog *l);
/* Drop the pending events (after waiting for a commit in flight); state returns to the
 * last commit. */
void tn_evlog_discard(tn_evlog *l);

/* Current (pending included) projection of an instance; TN_ERR_NOENT if none. */
tn_err tn_evlog_wf(tn_evlog *l, uint64_t id, tn_wf_proj *out);
tn_err tn_evlog_task(tn_evlog *l, uint64_t id, tn_task_proj *out);

/* Meta keys the log derives from the events (replay checks them too). */
#define TN_META_FORMAT     "format"
#define TN_META_LAST_SEQ   "last_seq"
#define TN_META_CHAIN_HEAD "chain_head"
#define TN_META_MAX_WF     "max_wf"
#define TN_META_MAX_TASK   "max_task"
/* seq (u64 BE) and chain hash of an event the writer hashed itself: opens verify the
 * chain from here. Not derived from the events (replay skips it). */
#define TN_META_CHECKPOINT "checkpoint"

/* The pending projection of schedule `name` / backfill `id` (events added but not yet
 * committed included), copied with its members duplicated: the caller finis it.
 * TN_ERR_NOENT when there is none. */
tn_err tn_evlog_sched(tn_evlog *l, const char *name, tn_sched_proj *out);
tn_err tn_evlog_backfill(tn_evlog *l, uint64_t id, tn_backfill_proj *out);
tn_err tn_evlog_alert(tn_evlog *l, uint64_t id, tn_alert_proj *out);
/* The seq the next added event will get. */
uint64_t tn_evlog_next_seq(const tn_evlog *l);

#endif

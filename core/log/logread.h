/* Reads of the committed log: the projections and system facts the event log keeps in
 * the store (definitions, environments, task groups, workflow and task instances).
 * core/log is the only code that knows the store's keys and databases; everything
 * above reads through these functions and sees the store only as an opaque tn_store.
 *
 * Every function here reads COMMITTED data only: events pending in a tn_evlog batch
 * are invisible (the writer asks tn_evlog_wf/tn_evlog_task for those).
 *
 * Threads: any thread may call these on a store it can reach (the engine's, through
 * tn_evlog_store, or one opened with tn_log_open_read); each call runs its own
 * read-only transaction, so readers never block the writer. The one exception is the
 * workflow iterator, which holds its read transaction from open to close: it belongs
 * to the thread that opened it, and that thread must close it before it commits to the
 * same store (a commit that must grow the map cannot while this thread reads it). */
#ifndef TN_LOGREAD_H
#define TN_LOGREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "objproj.h"
#include "proj.h"
#include "str.h"

typedef struct tn_store tn_store; /* opaque: store/store.h is core/log's business */

/* Open the store in `dir` read-only, for a process that only reads (a CLI listing,
 * an audit, a checker) and may run beside the writing process. Not in a process that
 * already has this store open (LMDB allows one open of an environment per process):
 * there, read through tn_evlog_store. On error `msg` (may be NULL) says what and
 * where, and *out is untouched; on success the caller closes *out with
 * tn_log_close_read. */
tn_err tn_log_open_read(const char *dir, tn_store **out, tn_errmsg *msg);
/* Close a store from tn_log_open_read; accepts NULL. No iterator may be open on it. */
void tn_log_close_read(tn_store *s);
/* The store's data file ("DIR/data.mdb"), for messages; owned by the store. */
const char *tn_log_store_path(const tn_store *s);

/* --- system facts (ENV_SET, TASKGROUP_SET) ------------------------------------- */

/* The text of environment `name` as the last ENV_SET left it, as a malloc'd
 * NUL-terminated copy the caller frees. TN_ERR_NOENT when never set; *text is
 * written only on success. */
tn_err tn_log_env_get(tn_store *s, const char *name, char **text);
/* The slots of task group `name` as the last TASKGROUP_SET left them. TN_ERR_NOENT
 * when never set; TN_ERR_CORRUPT when the stored value is not 8 bytes. */
tn_err tn_log_taskgroup_get(tn_store *s, const char *name, int64_t *slots);

/* Every environment (value: its text, not NUL-terminated) or task group (value: slots,
 * 8 bytes be64) in name order; `name` and `val` are valid during the call only. A non-zero
 * return from fn stops the walk. */
typedef int (*tn_log_meta_fn)(void *ctx, const char *name, const void *val, size_t len);
tn_err tn_log_env_each(tn_store *s, tn_log_meta_fn fn, void *ctx);
tn_err tn_log_taskgroup_each(tn_store *s, tn_log_meta_fn fn, void *ctx);

/* --- definitions (DEF_APPLIED) -------------------------------------------------- */

/* The canonical bytes of definition `name` at `version`, copied into `out` (its
 * previous contents replaced; the caller owns the buffer). TN_ERR_NOENT if absent. */
tn_err tn_log_def_get(tn_store *s, const char *name, uint32_t version, tn_buf *out);
/* The newest stored version of `name` in *version and, when `out` is not NULL, its
 * bytes as for tn_log_def_get. TN_ERR_NOENT (and *version = 0) when there is none. */
tn_err tn_log_def_latest(tn_store *s, const char *name, uint32_t *version, tn_buf *out);
/* Call `fn` for every stored definition version, by name then version ascending.
 * `name` and `bytes` are valid during the call only. A non-zero return from fn stops
 * the walk and is returned in *fn_ret (may be NULL). */
typedef int (*tn_log_def_fn)(void *ctx, const char *name, uint32_t version, const void *bytes,
                             size_t len);
tn_err tn_log_def_each(tn_store *s, tn_log_def_fn fn, void *ctx, int *fn_ret);

/* --- instances ------------------------------------------------------------------ */

/* The committed projection of workflow / task `id`. TN_ERR_NOENT if none;
 * TN_ERR_CORRUPT if it does not decode. */
tn_err tn_log_wf_get(tn_store *s, uint64_t id, tn_wf_proj *out);
tn_err tn_log_task_get(tn_store *s, uint64_t id, tn_task_proj *out);

/* An iterator over the committed workflow projections in id order, inside one
 * read-only transaction (a consistent snapshot). Thread rule: see the top. */
typedef struct tn_log_wf_iter tn_log_wf_iter;

/* Open an iterator on `s`; the caller closes it with tn_log_wf_iter_close. */
tn_err tn_log_wf_iter_open(tn_store *s, tn_log_wf_iter **out);
void tn_log_wf_iter_close(tn_log_wf_iter *it); /* accepts NULL */
/* Position at the first workflow whose id is >= `id` (tn_log_wf_iter_seek), or step
 * to the one after the current position (tn_log_wf_iter_next; before any seek, the
 * first), and decode it into *out. Returns TN_OK; TN_ERR_NOENT past the last;
 * TN_ERR_CORRUPT when that entry does not decode: then only out->id is set (to the
 * entry's id) and the iterator still stands on it, so next moves past it. */
tn_err tn_log_wf_iter_seek(tn_log_wf_iter *it, uint64_t id, tn_wf_proj *out);
tn_err tn_log_wf_iter_next(tn_log_wf_iter *it, tn_wf_proj *out);

/* --- schedules and backfills ---------------------------------------------------- */

/* The committed projection of the schedule of workflow `name` / of backfill `id`; the
 * caller frees the members with tn_sched_proj_fini / tn_backfill_proj_fini.
 * TN_ERR_NOENT when there is none (a removed schedule is found, in state REMOVED). */
tn_err tn_log_sched_get(tn_store *s, const char *name, tn_sched_proj *out);
tn_err tn_log_backfill_get(tn_store *s, uint64_t id, tn_backfill_proj *out);
/* Every schedule in name order / backfill in id order; `p` is valid during the call
 * only (its members are freed after). A non-zero return from fn stops the walk. */
typedef int (*tn_log_sched_fn)(void *ctx, const tn_sched_proj *p);
typedef int (*tn_log_backfill_fn)(void *ctx, const tn_backfill_proj *p);
tn_err tn_log_sched_each(tn_store *s, tn_log_sched_fn fn, void *ctx);
tn_err tn_log_backfill_each(tn_store *s, tn_log_backfill_fn fn, void *ctx);
/* The fires of schedule `name` with nominal time >= from_ns, ascending: the instance
 * each started (0 never). A non-zero return from fn stops the walk. */
typedef int (*tn_log_fire_fn)(void *ctx, int64_t nominal_ns, uint64_t instance, bool manual);
tn_err tn_log_fire_each(tn_store *s, const char *name, int64_t from_ns, tn_log_fire_fn fn,
                        void *ctx);
/* Alerts: one by id, or those with id >= from_id in id order (only PENDING ones when
 * pending_only). */
typedef int (*tn_log_alert_fn)(void *ctx, const tn_alert_proj *p);
tn_err tn_log_alert_get(tn_store *s, uint64_t id, tn_alert_proj *out);
tn_err tn_log_alert_each(tn_store *s, uint64_t from_id, bool pending_only, tn_log_alert_fn fn,
                         void *ctx);
/* The instance started by backfill `id` for its dates[index], or TN_ERR_NOENT. */
tn_err tn_log_backfill_instance(tn_store *s, uint64_t id, uint32_t index, uint64_t *instance);

#endif

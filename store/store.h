/* The store: one LMDB environment holding the event log, its indexes and the
 * projections. It knows LMDB and the on-disk layout; it does not know what an event
 * means (core/ encodes events and projections and hands the store bytes).
 *
 * Writes go in batches: a tn_batch collects puts and deletes, tn_store_commit runs them
 * in ONE write transaction (one fsync: group commit). Either the whole batch is durable
 * or none of it is. When the map is full the store grows it and retries the same batch;
 * at the configured maximum it refuses the batch with TN_ERR_FULL and writes nothing.
 *
 * Threads: one writer (the engine) commits; readers may run in other threads, each with
 * its own read transaction. Data returned by reads is valid only inside the read
 * transaction that produced it: decode it into memory you own. */
#ifndef TN_STORE_H
#define TN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* On-disk format of the store; written at creation, checked at every open. */
#define TN_STORE_FORMAT 2 /* 2: by_wf holds one entry per workflow and commit */

typedef enum tn_db {
    TN_DB_EVENTS, /* seq (u64 big-endian) -> encoded event; appended in order */
    TN_DB_BY_WF,  /* wf id (u64 BE) || first seq (u64 BE) -> that commit's seqs of the
                   * workflow (core/log/wfindex.h) */
    TN_DB_DEFS,   /* definition key -> encoded definition (a projection) */
    TN_DB_WF,     /* wf id (u64 BE) -> encoded workflow projection */
    TN_DB_TASKS,  /* task id (u64 BE) -> encoded task projection */
    TN_DB_META,   /* name -> value: format, last_seq, chain_head, id counters, ... */
    TN_DB__COUNT
} tn_db;

/* Name of a database ("events"); never NULL. */
const char *tn_db_name(tn_db db);

typedef struct tn_store tn_store;

typedef struct tn_store_opts {
    size_t map_size; /* initial map size in bytes; 0 = 64 MiB (or the existing size) */
    size_t map_max;  /* the map grows up to this; 0 = 16 GiB */
    bool create;     /* create the directory and an empty store if missing (an existing
                      * store is opened as it is: a missing database is an error) */
    bool read_only;  /* open read-only (replay, audit); no writes allowed */
    bool no_sync;    /* skip fsync at commit: NOT durable; only for throwaway stores */
} tn_store_opts;

/* Open (or with opts->create, create) the store in directory `dir`.
 * Errors: TN_ERR_NOENT (no store there and !create), TN_ERR_VERSION (unknown format),
 * TN_ERR_CORRUPT (not an LMDB file, or damaged), TN_ERR_PERM, TN_ERR_BUSY, TN_ERR_IO.
 * On error, `msg` (may be NULL) says what, which file, and what to do; *out is
 * untouched. On success the caller owns *out and frees it with tn_store_close. */
tn_err tn_store_open(const char *dir, const tn_store_opts *opts, tn_store **out,
                     tn_errmsg *msg);
/* Close the store; accepts NULL. No transaction may be open. */
void tn_store_close(tn_store *s);
/* The directory and the data file ("DIR/data.mdb") of the store. */
const char *tn_store_dir(const tn_store *s);
const char *tn_store_path(const tn_store *s);
/* Whether this open created the store (opts.create on a new environment). */
bool tn_store_created(const tn_store *s);

/* --- writing ----------------------------------------------------------------- */

typedef struct tn_batch tn_batch;

/* A batch owns copies of every key and value given to it. */
tn_err tn_batch_new(tn_batch **out);
void tn_batch_free(tn_batch *b);  /* accepts NULL */
void tn_batch_reset(tn_batch *b); /* empty it, keep its memory */
size_t tn_batch_count(const tn_batch *b);
/* Queue a put (replaces an existing value). */
tn_err tn_batch_put(tn_batch *b, tn_db db, const void *key, size_t klen, const void *val,
                    size_t vlen);
/* Queue a put whose key is greater than every key in `db` (TN_DB_EVENTS): cheaper. */
tn_err tn_batch_append(tn_batch *b, tn_db db, const void *key, size_t klen, const void *val,
                       size_t vlen);
/* Queue a delete of `key` (a missing key is no error). */
tn_err tn_batch_del(tn_batch *b, tn_db db, const void *key, size_t klen);

/* Run every queued operation, in order, in one durable write transaction.
 * TN_ERR_FULL: the map reached opts.map_max (or the disk is full): nothing was
 * written; `msg` says so and what to do. Any other error: nothing was written. The
 * batch is not modified, so the caller may retry it. */
tn_err tn_store_commit(tn_store *s, const tn_batch *b, tn_errmsg *msg);

/* A streamed commit: appends fed while the rest of the batch is still being built, then
 * the batch, then one durable commit. Everything runs in the thread that began it (the
 * event log's committer thread). Nothing is visible or durable before the commit; an
 * abort writes nothing. */
typedef struct tn_stream tn_stream;

/* Feeds every append again, in order, from the caller's own copy: called by the commit
 * after the map grew (the transaction that met the full map wrote nothing). */
typedef tn_err (*tn_stream_refeed_fn)(void *ctx, tn_stream *t);

tn_err tn_store_stream_begin(tn_store *s, tn_stream **out, tn_errmsg *msg);
/* Append `key` (greater than every key of `db`) -> `val`. A full map is not an error
 * here: the stream remembers it, skips later appends, and the commit grows the map and
 * refeeds. Any other failure is remembered and returned by the commit; TN_OK or that
 * first failure is returned. */
tn_err tn_store_stream_append(tn_stream *t, tn_db db, const void *key, size_t klen,
                              const void *val, size_t vlen);
/* Run `b` (may be NULL) after the appends and commit durably; ends the stream whatever
 * the outcome. Errors as tn_store_commit; nothing was written on error. */
tn_err tn_store_stream_commit(tn_stream *t, const tn_batch *b, tn_stream_refeed_fn refeed,
                              void *ctx, tn_errmsg *msg);
/* End the stream writing nothing; accepts NULL. */
void tn_store_stream_abort(tn_stream *t);

/* --- reading ----------------------------------------------------------------- */

typedef struct tn_val {
    const void *data;
    size_t len;
} tn_val;

typedef struct tn_rtxn tn_rtxn;

/* A read transaction: a consistent snapshot. One per thread at a time. */
tn_err tn_store_read_begin(tn_store *s, tn_rtxn **out);
void tn_store_read_end(tn_rtxn *t); /* accepts NULL */

/* Look up `key`. TN_ERR_NOENT when absent. *val is valid until tn_store_read_end. */
tn_err tn_store_get(tn_rtxn *t, tn_db db, const void *key, size_t klen, tn_val *val);

typedef struct tn_cursor tn_cursor;

tn_err tn_cursor_open(tn_rtxn *t, tn_db db, tn_cursor **out);
void tn_cursor_close(tn_cursor *c); /* accepts NULL */
/* Position at the first entry / the first key >= `key`; then step forward.
 * Each returns TN_ERR_NOENT past the end. key/val may be NULL when not wanted. */
tn_err tn_cursor_first(tn_cursor *c, tn_val *key, tn_val *val);
tn_err tn_cursor_seek(tn_cursor *c, const void *k, size_t klen, tn_val *key, tn_val *val);
tn_err tn_cursor_next(tn_cursor *c, tn_val *key, tn_val *val);

/* A reader about to walk most of the store (replay): a helper thread maps the pages in
 * use into this process (MADV_POPULATE_READ, a megabyte at a time from the file's
 * start, where the oldest events are) while the walk runs, so the walk does not stop
 * for a page fault every few pages (with the file in the page cache those faults are
 * about half of a cursor scan's time) and a file not yet cached is read ahead of it.
 * It keeps within 32 MiB past the furthest point the walk reported with
 * tn_store_prefault_at (any address the walk read from the store: every thousand
 * events or so is plenty), so a store larger than memory is not read ahead into
 * evicting itself. The map stays valid while `t` is open: call tn_store_prefault_end,
 * which stops the helper and waits for it, before tn_store_read_end(t). NULL when
 * nothing was started (one CPU, no thread, a kernel without MADV_POPULATE_READ: the
 * walk then faults as before); the other two accept NULL. Never changes what a read
 * returns. */
typedef struct tn_prefault tn_prefault;
tn_prefault *tn_store_prefault_begin(tn_rtxn *t);
void tn_store_prefault_at(tn_prefault *p, const void *at);
/* Whether the helper has mapped all it may for now (the end of the pages in use, or the
 * window past the reported point) or has stopped; *mapped (may be NULL) gets how many
 * bytes from the file's start it has mapped. For tests, which wait for it instead of
 * sleeping. */
bool tn_store_prefault_idle(tn_prefault *p, size_t *mapped);
void tn_store_prefault_end(tn_prefault *p);

/* --- information -------------------------------------------------------------- */

typedef struct tn_store_stat {
    size_t map_size;   /* current map size in bytes */
    size_t map_max;    /* the limit it may grow to */
    size_t used_bytes; /* pages in use * page size */
    uint64_t entries[TN_DB__COUNT];
} tn_store_stat;

tn_err tn_store_stat_get(tn_store *s, tn_store_stat *out);

#endif

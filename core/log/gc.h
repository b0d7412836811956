/* Garbage collection of finished instances: their workflow and task projections leave
 * the store, the events stay. `tern audit` still reads them (through the by_wf index,
 * which gc keeps), and replay still rebuilds them: a mark in the meta database (key
 * "gc/" + the instance id) tells replay that the stored projection is missing on purpose
 * and `tern status` that the instance was collected. */
#ifndef TN_GC_H
#define TN_GC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "proj.h"

typedef struct tn_store tn_store;
typedef struct tn_rtxn tn_rtxn;

/* What the mark of a collected workflow instance keeps, for `tern status`. */
typedef struct tn_log_gc_mark {
    int64_t collected_at, ended_at; /* ns since the epoch */
    uint8_t state;                  /* the final state it was collected in */
    char name[TN_NAME_MAX + 1];
} tn_log_gc_mark;

typedef struct tn_log_gc_report {
    uint64_t workflows, tasks; /* instances collected (or, dry run, that would be) */
} tn_log_gc_report;

/* Called for each workflow instance collected, with its projection and its tasks' count. */
typedef void (*tn_log_gc_fn)(void *ctx, const tn_wf_proj *wf, uint64_t ntasks);

/* Collect, in the store in `dir`, every workflow instance that finished (SUCCESS,
 * FAILURE, STOP: final, and not PAUSE, which waits for a resume) before `ended_before`
 * (ns since the epoch), with its task projections; a sub-workflow instance only when its
 * parent is finished (or collected) too. Unfinished instances are
 * never touched. `now` is recorded in each mark. With dry_run nothing is written. The
 * store is opened as its writer: TN_ERR_BUSY (msg says what to do) while a master,
 * standalone or run holds it. One transaction: all of it or nothing. */
tn_err tn_log_gc(const char *dir, int64_t ended_before, int64_t now, bool dry_run,
                 tn_log_gc_fn fn, void *ctx, tn_log_gc_report *rep, tn_errmsg *msg);

/* The mark of collected workflow instance `wf`: TN_ERR_NOENT when it was not collected. */
tn_err tn_log_gc_mark_get(tn_store *s, uint64_t wf, tn_log_gc_mark *out);

/* For replay (core/log only): whether `key` of the meta database is a gc mark, and
 * whether workflow `wf` carries one in the transaction `t`. */
bool tn_log_gc_meta_key(const void *key, size_t len);
bool tn_log_gc_marked(tn_rtxn *t, uint64_t wf);

#endif

/* The event log's side of the schedule and backfill machines (private to core/log): a
 * cache of their projections, the state an event is checked against, and the store
 * writes an event makes (the projection, and the fire / backfill-date index entries
 * that key each started instance by (schedule, nominal time) or (backfill, date)). */
#ifndef TN_OBJLOG_H
#define TN_OBJLOG_H

#include <stdbool.h>

#include "event.h"
#include "objproj.h"
#include "store.h"

typedef struct tn_objlog tn_objlog;

tn_err tn_objlog_new(tn_objlog **out);
void tn_objlog_free(tn_objlog *o); /* accepts NULL */

/* Whether the log layer handles this machine here. */
bool tn_objlog_handles(unsigned machine);

/* The current (pending) state of the object `ev` names, for the table check: NEW when
 * it does not exist. `t` is a read transaction for cache misses (NULL: nothing is
 * read from the store, as in replay, which rebuilds every object from its events). TN_ERR_INVAL when the
 * event does not name its object. */
tn_err tn_objlog_state(tn_objlog *o, tn_rtxn *t, const tn_event *ev, uint8_t *state);

/* Fold the checked event (from/to/seq/at set) into a copy of the object's projection and
 * hand its store writes to `put` (the pending batch; replay collects them to compare); only when all of that succeeds does the cached projection
 * change. TN_ERR_ILLEGAL (a nominal time or date decided twice) and TN_ERR_CORRUPT
 * (missing attrs) refuse the event and leave everything as it was; `msg` says why. */
tn_err tn_objlog_stage(tn_objlog *o, tn_rtxn *t, tn_proj_put_fn put, void *put_ctx,
                       const tn_event *ev, tn_errmsg *msg);

/* The pending batch was committed / discarded. */
void tn_objlog_committed(tn_objlog *o);
void tn_objlog_discard(tn_objlog *o);

/* The pending projection of a schedule / backfill (the engine's view), copied into *out
 * with its members duplicated (caller finis). TN_ERR_NOENT when none. */
tn_err tn_objlog_sched(tn_objlog *o, tn_rtxn *t, const char *name, tn_sched_proj *out);
tn_err tn_objlog_backfill(tn_objlog *o, tn_rtxn *t, uint64_t id, tn_backfill_proj *out);
tn_err tn_objlog_alert(tn_objlog *o, tn_rtxn *t, uint64_t id, tn_alert_proj *out);

/* Store keys, shared with the readers in objread.c. */
size_t tn_obj_sched_key(const char *name, uint8_t *key);                 /* "sch/NAME" */
size_t tn_obj_fire_key(const char *name, int64_t nominal, uint8_t *key); /* "fire/NAME\0" ns */
size_t tn_obj_bf_key(uint64_t id, uint8_t *key);                         /* "bf/" id */
size_t tn_obj_bfd_key(uint64_t id, uint32_t index, uint8_t *key);        /* "bfd/" id index */
size_t tn_obj_alert_key(uint64_t id, uint8_t *key);                      /* "al/" id */
#define TN_OBJ_KEY_MAX (TN_NAME_MAX + 16)

#endif

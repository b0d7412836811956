/* The master's engine metrics for /metrics: instances and tasks by state, transitions,
 * commit and dispatch latency, batch sizes, the dispatch queue and why tasks wait. The
 * numbers are copied on the engine thread (a tn_engine_request); this thread formats
 * the copy. */
#ifndef TN_APIMETRICS_H
#define TN_APIMETRICS_H

#include "engine.h"
#include "err.h"
#include "util.h"

typedef struct tn_apimetrics tn_apimetrics;

/* Count the store's instances by state now: e's thread must not run yet (e may be NULL:
 * nothing but the store-less metrics). */
tn_err tn_apimetrics_new(tn_engine *e, tn_apimetrics **out, tn_errmsg *msg);
/* Append the exposition (format 0.0.4). */
void tn_apimetrics_write(tn_apimetrics *m, tn_sb *out);
void tn_apimetrics_free(tn_apimetrics *m); /* accepts NULL */

/* The reason label of a task that waits for dispatch, from the engine's why text. */
const char *tn_apimetrics_reason(const char *why);

#endif

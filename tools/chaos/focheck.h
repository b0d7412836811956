/* `tern chaos failover`: the end checks over what the masters, the workers and the tasks
 * left behind. Kept apart from the run (failover.c) so that a unit test can feed them
 * crafted logs; every violation is reported through a callback and counted.
 *
 *   logs      every master's event log is identical to the longest where they overlap
 *             (compared by seq, on a digest of each event's bytes);
 *   submits   every submission the cluster accepted is SUBMITted exactly once in the final
 *             leader's log, and no instance is SUBMITted twice;
 *   epochs    a worker's "new leader epoch" lines (every incarnation, one file) never go
 *             back: it never took frames of an older leader after a newer one;
 *   runs      no task attempt started twice (the tasks write "WF TASK ATTEMPT" lines). */
#ifndef TN_CHAOS_FOCHECK_H
#define TN_CHAOS_FOCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

/* Called once per violation with what was wrong. */
typedef void (*chaos_fo_fn)(void *ctx, const char *what);

/* One master's log: digest[i] is the digest of its event first + i (n events). */
typedef struct chaos_fo_log {
    const char *name;
    const uint64_t *digest;
    uint64_t first;
    size_t n;
} chaos_fo_log;

/* A 64-bit digest of an event's bytes (FNV-1a), for chaos_fo_log. */
uint64_t chaos_fo_digest(const void *b, size_t len);

/* Each log against the longest (the first of the longest): one violation per log, at the
 * first seq where they differ. Returns the number of violations. */
uint64_t chaos_fo_check_logs(const chaos_fo_log *logs, size_t n, chaos_fo_fn fn, void *ctx);

/* The submissions of one log, fed event by event. */
typedef struct chaos_fo_submits chaos_fo_submits;

/* A counter, or NULL when out of memory. */
chaos_fo_submits *chaos_fo_submits_new(void);
/* Feed one event (in seq order); only what is needed is copied. */
void chaos_fo_submits_event(chaos_fo_submits *c, const tn_event *ev);
/* Each of accepted[0..n) SUBMITted exactly once, no instance SUBMITted twice. Returns the
 * number of violations, *submits (may be NULL) the SUBMITs seen. Frees c. */
uint64_t chaos_fo_submits_finish(chaos_fo_submits *c, const uint64_t *accepted, size_t n,
                                 chaos_fo_fn fn, void *ctx, uint64_t *submits);

/* A worker's log text (NUL-terminated): its "new leader epoch" lines never go back.
 * Returns the number of violations, *switches (may be NULL) the lines seen and *refused
 * (may be NULL) the stale frames it reported refusing (the highest count of each
 * incarnation, summed). */
uint64_t chaos_fo_check_epochs(const char *worker, const char *text, chaos_fo_fn fn, void *ctx,
                               uint64_t *switches, uint64_t *refused);

/* The tasks' "WF TASK ATTEMPT" lines (NUL-terminated text): none twice. Returns the number
 * of violations, *lines (may be NULL) the lines read. */
uint64_t chaos_fo_check_runs(const char *text, chaos_fo_fn fn, void *ctx, uint64_t *lines);

#endif

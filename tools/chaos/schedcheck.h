/* `tern chaos`: the schedules' exactly-once invariant, checked from a log's event stream.
 * Kept apart from the run (chaos.h) so that a unit test can feed it crafted logs.
 *
 * For each schedule, every nominal time of its cron in (the SET's "after", the end of the
 * checked window] (within the schedule's start/end bounds) is decided exactly once:
 *   - started: one FIRE of it (neither manual nor buffered), or
 *   - skipped: covered by exactly one SKIP range (after, through] that gives a reason, or
 *   - buffered: one BUFFER of it, then at most one FIRE with buffered = 1 (none: pending);
 * a time in (the last decided time, through] of a RESUME is not due (it came while the
 * schedule was paused): decided at most once. Every FIRE (manual ones too) is followed,
 * at the next seq, by the workflow SUBMIT of the instance it names, whose "schedule" and
 * "sched" attrs equal the FIRE's schedule and nominal time; no SUBMIT names a schedule
 * without that FIRE before it. Decisions of times that are not nominal times of the cron
 * after the SET are violations too. */
#ifndef TN_CHAOS_SCHEDCHECK_H
#define TN_CHAOS_SCHEDCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef struct chaos_schedchk chaos_schedchk;

typedef struct chaos_schedchk_stats {
    uint64_t schedules, nominal; /* nominal times checked */
    uint64_t fired, skipped, buffered, buffered_fired, pending, not_due, manual;
    uint64_t violations;
} chaos_schedchk_stats;

/* Called once per violation: the seq it is about (0: none), the schedule and what. */
typedef void (*chaos_schedchk_fn)(void *ctx, uint64_t seq, const char *schedule,
                                  const char *what);

/* A checker, or NULL when out of memory. */
chaos_schedchk *chaos_schedchk_new(chaos_schedchk_fn fn, void *ctx);
/* Feed one event of the log; the events come in seq order. Only what it needs is
 * copied: ev may be reused after the call. */
void chaos_schedchk_event(chaos_schedchk *c, const tn_event *ev);
/* The checks over the window ending at window_end (unix ns): nominal times after it are
 * not checked. Returns the number of violations (each reported through fn); *st (may be
 * NULL) gets the counts. Frees c. */
uint64_t chaos_schedchk_finish(chaos_schedchk *c, int64_t window_end, chaos_schedchk_stats *st);

/* The whole check over evs[0..n): the stream form of the three calls above. */
uint64_t chaos_schedchk_run(const tn_event *evs, size_t n, int64_t window_end,
                            chaos_schedchk_fn fn, void *ctx, chaos_schedchk_stats *st);

#endif

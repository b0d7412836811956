/* Projections of the schedule and backfill machines: one per schedule (keyed by its
 * workflow's name) and one per backfill (keyed by its id), folded from their events
 * like the instance projections, kept in the store by the event log and rebuilt by replay.
 *
 * Schedule events carry the schedule's name in the attr "schedule":
 *   SET     the whole spec: cron, tz, start, end (ns, 0 = open), overlap, catchup (ms),
 *           pause_on_failure (0/1), priority, failure_strategy, worker_group ("" = the
 *           workflow's), params (bin, msgpack map str -> str); on creation also "after"
 *           (ns): the nominal times up to it are not due (a new schedule fires after
 *           the moment it was set)
 *   PAUSE   reason;  RESUME  through (ns) and reason: nominal times <= through that came
 *           while paused are not due;  REMOVE  reason
 *   FIRE    nominal (ns), instance (the workflow instance whose SUBMIT commits in the same
 *           transaction); manual = 1 for `schedule trigger` (not a cron time), buffered =
 *           1 for a nominal time a BUFFER held back
 *   SKIP    after, through (ns): every nominal time in (after, through] starts nothing;
 *           count (when known) and reason (the policy: catchup window, overlap skip, ...)
 *   BUFFER  nominal (ns), reason: held until the running instance ends
 * The event log refuses a FIRE, SKIP or BUFFER of a nominal time not after the last one
 * decided (and a buffered FIRE of a time not buffered), so no nominal time is decided
 * twice: that is the exactly-once rule, enforced where the events are appended.
 *
 * Backfill events carry the backfill id in the attr "backfill":
 *   CREATE      workflow, dates (bin: be64 ns each, in run order), parallel, params (bin)
 *   START_DATE  index (into dates), date (ns), instance (commits with its SUBMIT)
 *   STOP, RESUME, FINISH  reason
 *
 * Alert events carry the alert id (the seq of its RAISE) in the attr "alert":
 *   RAISE    workflow, instance, task (0 = the instance's), on (failure, timeout, success,
 *            kill, task_failure), kind (webhook | command), target (URL or command),
 *            state (the instance's or task's), reason
 *   ATTEMPT  attempt (1, 2, ...), outcome ("HTTP 503", "exit 1", ...), retry_at (ns)
 *   DELIVER  attempt, outcome;  DROP  reason (it cannot be sent at all) */
#ifndef TN_OBJPROJ_H
#define TN_OBJPROJ_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "proj.h"

#define TN_SCHED_PROJ_BUFFER_MAX 64    /* = TN_SCHED_BUFFER_MAX of core/def/schedule.h */
#define TN_BACKFILL_MAX_DATES    10000 /* dates in one backfill */

typedef struct tn_sched_proj {
    char name[TN_NAME_MAX + 1]; /* the workflow */
    uint8_t state;              /* TN_SCHED_S_* */
    char cron[257];
    char tz[65];
    int64_t start_ns, end_ns;
    char overlap[16];
    int64_t catchup_ms;
    bool pause_on_failure;
    char priority[16], failure_strategy[16];
    char worker_group[TN_NAME_MAX + 1];
    uint8_t *params; /* msgpack map bytes as in the SET event (malloc'd), or NULL */
    uint32_t params_len;
    int64_t created_at, updated_at;
    int64_t last_nominal; /* every nominal time <= this is decided (fired/skipped/buffered) */
    int64_t last_fire;    /* nominal of the newest fire; 0 = none */
    uint64_t last_instance;
    uint64_t fires, skips, buffers;
    uint32_t nbuffered;
    int64_t buffered[TN_SCHED_PROJ_BUFFER_MAX]; /* ascending */
    char reason[TN_REASON_MAX + 1];             /* of the last PAUSE, SKIP or REMOVE */
    uint64_t last_seq;
} tn_sched_proj;

typedef struct tn_backfill_proj {
    uint64_t id;
    uint8_t state; /* TN_BF_S_* */
    char workflow[TN_NAME_MAX + 1];
    int64_t *dates; /* [ndates] (malloc'd) */
    uint32_t ndates;
    uint32_t parallel;
    uint32_t next; /* dates[0..next) have started */
    uint8_t *params;
    uint32_t params_len;
    int64_t created_at, updated_at;
    char reason[TN_REASON_MAX + 1];
    uint64_t last_seq;
} tn_backfill_proj;

typedef struct tn_alert_proj {
    uint64_t id;
    uint8_t state; /* TN_ALERT_S_* */
    char workflow[TN_NAME_MAX + 1];
    uint64_t wf, task;
    char on[16];   /* failure, timeout, success, kill, task_failure */
    char kind[8];  /* webhook, command */
    char *target;  /* URL or command (malloc'd) */
    char what[32]; /* the state that raised it (FAILURE, ...) */
    char reason[TN_REASON_MAX + 1];
    uint32_t attempts;
    int64_t raised_at, updated_at, retry_at;
    char outcome[TN_REASON_MAX + 1]; /* of the last attempt */
    uint64_t last_seq;
} tn_alert_proj;

/* Fold one (checked, legal) event; `p` is zeroed on creation. TN_ERR_CORRUPT when the
 * event lacks an attr it needs; TN_ERR_ILLEGAL when it decides a nominal time already
 * decided (see the top); TN_ERR_NOMEM. On error *p is unchanged. */
tn_err tn_sched_proj_apply(tn_sched_proj *p, const tn_event *ev);
tn_err tn_backfill_proj_apply(tn_backfill_proj *p, const tn_event *ev);
tn_err tn_alert_proj_apply(tn_alert_proj *p, const tn_event *ev);
/* Free the malloc'd members (not the struct). */
void tn_sched_proj_fini(tn_sched_proj *p);
void tn_backfill_proj_fini(tn_backfill_proj *p);
void tn_alert_proj_fini(tn_alert_proj *p);

/* Canonical encodings and strict, bounded decoders (decoders allocate the members). */
tn_err tn_sched_proj_encode(const tn_sched_proj *p, tn_buf *out);
tn_err tn_sched_proj_decode(const void *buf, size_t len, tn_sched_proj *p);
tn_err tn_backfill_proj_encode(const tn_backfill_proj *p, tn_buf *out);
tn_err tn_backfill_proj_decode(const void *buf, size_t len, tn_backfill_proj *p);
tn_err tn_alert_proj_encode(const tn_alert_proj *p, tn_buf *out);
tn_err tn_alert_proj_decode(const void *buf, size_t len, tn_alert_proj *p);

/* The key of a schedule / backfill object in the log's maps ("s/NAME", "b/ID"). */

#endif

/* Task log retention on a worker: the logs (DATA/logs/TASK-ATTEMPT.log) and exec dirs
 * (DATA/exec/TASK-ATTEMPT) of finished attempts go when older than an age, and the oldest
 * go first while all logs together are over a size. A running attempt's are never
 * touched. The worker applies it every minute (--log-retention, --log-max-bytes). */
#ifndef TN_RETENTION_H
#define TN_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tn_retention {
    uint64_t max_age_ms; /* a finished attempt's log older than this goes; 0 = no age */
    uint64_t max_bytes;  /* the logs together stay under this; 0 = no size */
} tn_retention;

typedef struct tn_retention_stats {
    uint64_t removed, removed_bytes; /* attempts whose log (or exec dir) went */
    uint64_t kept, kept_bytes;       /* logs left, running ones included */
} tn_retention_stats;

/* Whether attempt `attempt` of task `task` is running (its files are kept). */
typedef bool (*tn_retention_running_fn)(void *ctx, uint64_t task, uint32_t attempt);

/* Apply r to data_dir at `now_ns` (unix ns; a log's age is from its last write, which is
 * when its attempt ended). Files whose names are not TASK-ATTEMPT(.log) are left alone.
 * Returns 0, or -1 when DATA/logs cannot be read (errno set). */
int tn_retention_apply(const char *data_dir, const tn_retention *r, int64_t now_ns,
                       tn_retention_running_fn running, void *ctx, tn_retention_stats *st);

#endif

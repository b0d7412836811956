/* A schedule's specification: when a workflow's instances start (cron, zone, window), how
 * (params, priority, worker group, failure strategy) and what happens when fires come
 * late or while an earlier instance still runs (catchup, overlap, pause on failure).
 * The same spec comes from `tern schedule set` and from a definition's `schedule:` block;
 * the engine records it in a schedule SET event (tn_sched_spec_attrs names the attrs). */
#ifndef TN_SCHEDULE_H
#define TN_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "cron.h"
#include "err.h"
#include "tz.h"

/* What a fire does while an earlier instance of the same schedule still runs (Temporal's
 * set). allow_all leaves concurrency to the workflow's `execution` (DolphinScheduler). */
#define TN_OVERLAP_LIST(X)    \
    X(ALLOW_ALL, allow_all)   \
    X(SKIP, skip)             \
    X(BUFFER_ONE, buffer_one) \
    X(BUFFER_ALL, buffer_all) \
    X(CANCEL_OTHER, cancel_other)

#define TN_OVERLAP__E(c, w) TN_OVERLAP_##c,
typedef enum tn_overlap {
    TN_OVERLAP_LIST(TN_OVERLAP__E) TN_OVERLAP__COUNT
} tn_overlap;

const char *tn_overlap_name(tn_overlap o);                  /* "?" when out of range */
tn_err tn_overlap_parse(const char *word, tn_overlap *out); /* TN_ERR_INVAL when unknown */
const char *tn_overlap_allowed(void);                       /* "skip, buffer_one, ..." */

#define TN_SCHED_DEFAULT_CATCHUP_MS 60000 /* Quartz's misfire threshold, as DolphinScheduler */
#define TN_SCHED_MAX_PARAMS         1000
#define TN_SCHED_PARAM_MAX          (64u << 10) /* bytes of one param value */
#define TN_SCHED_BUFFER_MAX         64          /* nominal times a buffer_all policy may hold */

typedef struct tn_sched_spec {
    char cron[TN_CRON_MAX_LEN + 1];
    char tz[TN_TZ_MAX_NAME + 1]; /* IANA zone, "UTC" or an offset; "" = UTC */
    int64_t start_ns, end_ns;    /* the window, unix ns; 0 = open */
    tn_overlap overlap;
    int64_t catchup_ms; /* missed fires newer than this still run; older are skipped */
    bool pause_on_failure;
    /* Overrides of the workflow's values for the instances it starts; "" = the
     * workflow's own (priority and failure_strategy are tn_def words). */
    char priority[16];
    char failure_strategy[16];
    char worker_group[256];
    /* start-time params of its instances (as `tern start --param`), owned by the spec */
    char **param_keys, **param_values;
    uint32_t nparams;
} tn_sched_spec;

/* A spec with the defaults (cron "" must be set before validation). */
void tn_sched_spec_init(tn_sched_spec *s);
/* Free the params (the struct itself is the caller's). */
void tn_sched_spec_fini(tn_sched_spec *s);
/* Add a param (copies both); TN_ERR_TOOBIG past the bounds, TN_ERR_INVAL for a bad key. */
tn_err tn_sched_spec_param(tn_sched_spec *s, const char *key, const char *value);
/* Copy *src into *dst (params deep-copied). */
tn_err tn_sched_spec_copy(tn_sched_spec *dst, const tn_sched_spec *src);

/* Check a spec: the cron parses, the zone exists, start < end, the words are known, the
 * catchup is >= 0. On error the message names the field and what to do. */
tn_err tn_sched_spec_validate(const tn_sched_spec *s, tn_errmsg *e);

/* Parse a window bound: "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS]" or "YYYY-MM-DDTHH:MM[:SS]"
 * read as civil time in zone tz (NULL or "" = UTC), or a full ISO time with an offset
 * or Z. A bound that falls in a DST gap is refused. */
tn_err tn_sched_parse_time(const char *s, const char *tz, int64_t *out_ns, tn_errmsg *e);

#endif

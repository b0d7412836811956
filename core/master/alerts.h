/* The alert sender: delivers the alerts the engine raised (RAISE events) to their webhook
 * (an HTTP POST of the alert as JSON, through libcurl) or command (the JSON on its stdin),
 * on its own thread, and records each attempt's outcome through the engine as an event.
 * Undelivered alerts are retried with backoff (1 s, doubling, at most 5 min) until
 * delivered: at least once, since an alert sent just before a crash whose DELIVER was not
 * committed is sent again after the restart. */
#ifndef TN_ALERTS_H
#define TN_ALERTS_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"

typedef struct tn_alerter tn_alerter;

typedef struct tn_alerter_opts {
    /* Command alerts run on the master's host as its user: a definition may name one only
     * when the operator allows it (--allow-alert-commands); otherwise they are dropped
     * with that reason. The master's own default command is always allowed. */
    bool allow_commands;
    const char *default_command; /* the master's --alert-command, allowed */
    int64_t timeout_ms;          /* per attempt; default 10000 */
    int64_t max_backoff_ms;      /* default 300000 */
} tn_alerter_opts;

/* Start the sender for engine `e` (run by another thread). */
tn_err tn_alerter_start(tn_engine *e, const tn_alerter_opts *o, tn_alerter **out,
                        tn_errmsg *msg);
/* Stop it (an attempt in flight finishes or times out first). Accepts NULL. */
void tn_alerter_stop(tn_alerter *a);

/* The JSON an alert is sent as (malloc'd, caller frees); NULL when out of memory. */
char *tn_alert_json(const struct tn_alert_proj *p, uint32_t attempt);

#endif

/* The control server's schedule and backfill operations (`tern schedule ...`,
 * `tern backfill ...`): a table of handlers ctlsrv.c dispatches to, the encodings of
 * their request payloads, and the fire-time listing the client also prints offline. */
#ifndef TN_CTLSCHED_H
#define TN_CTLSCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "ctl.h"
#include "schedule.h"
#include "token.h"
#include "util.h"

struct tn_ctlsrv;

/* What a handler answers: the text a person reads and the JSON a script reads; on a
 * failure ok is false, code the client's exit status and both say why. */
typedef struct tn_ctl_out {
    tn_sb text, json;
    bool ok;
    int code;
    const char *actor; /* who asks (the authenticated identity), for the log */
} tn_ctl_out;

void tn_ctl_out_fail(tn_ctl_out *o, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

typedef struct tn_ctl_op {
    const char *cmd; /* the request's cmd: "schedule-set", "backfill-ls", ... */
    tn_role role;    /* the role it needs */
    bool read;       /* only reads the store: answered from it when no master runs */
    void (*run)(struct tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o);
} tn_ctl_op;

/* The operation named cmd, or NULL when it is not one of these. */
const tn_ctl_op *tn_ctl_sched_op(tn_str cmd);

/* schedule-set's payload (tn_ctl_req.bytes): the whole spec, params included, as a
 * msgpack map. The decoder is strict and bounded (the spec's own bounds) and leaves the
 * checking of the values to tn_sched_spec_validate; *s must be tn_sched_spec_init'ed,
 * the caller finis it (also after an error). */
tn_err tn_ctl_spec_encode(const tn_sched_spec *s, tn_buf *out);
tn_err tn_ctl_spec_decode(const void *buf, size_t len, tn_sched_spec *s);

/* backfill's payload: the dates as the user wrote them, read by the master (in the
 * schedule's zone unless tz is given). Either from and to, or dates. */
typedef struct tn_ctl_bf_req {
    tn_str from, to, tz;
    bool desc; /* run the latest date first */
    uint32_t ndates;
    tn_str *dates; /* decode: malloc'd (the caller frees), pointing into the buffer */
} tn_ctl_bf_req;

#define TN_CTL_DATE_MAX 64 /* bytes of one date as written */

tn_err tn_ctl_bf_encode(const tn_ctl_bf_req *r, tn_buf *out);
tn_err tn_ctl_bf_decode(const void *buf, size_t len, tn_ctl_bf_req *r);

/* The next n (<= TN_CTL_NEXT_MAX) fire times of cron in zone tz ("" = UTC) strictly after
 * after_ns, inside the window [start_ns, end_ns] (0 = open), appended to o: a line each
 * with the local time and UTC, and a JSON array of {"local","utc","ns"}. Fewer when the
 * expression or the window ends. A bad cron or zone fails o with code 2. */
#define TN_CTL_NEXT_MAX 1000
void tn_ctl_next_fires(const char *cron, const char *tz, int64_t start_ns, int64_t end_ns,
                       int64_t after_ns, uint32_t n, tn_ctl_out *o);

#endif

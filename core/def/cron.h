/* Cron expressions: DolphinScheduler's Quartz form and the 5-field Unix form, parsed into
 * a compact table of bitsets, and the next fire time after an instant in a time zone. */
#ifndef TN_CRON_H
#define TN_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "tz.h"

/* Forms, told apart by the number of fields:
 *  Quartz (6 or 7 fields): second minute hour day-of-month month day-of-week [year]
 *    second, minute 0-59; hour 0-23; day-of-month 1-31; month 1-12 or JAN-DEC;
 *    day-of-week 1-7 or SUN-SAT (1 = Sunday); year 1970-2261.
 *    Exactly one of day-of-month and day-of-week is '?' (the other one rules).
 *    '*' all; a-b range (a range that runs backwards wraps: FRI-MON, 22-2); a/n, a-b/n
 *    and * /n steps; lists with ','; in day-of-month: L (last day), L-n (n days before
 *    the last), nW (the weekday nearest day n, never leaving the month), LW (the last
 *    weekday); in day-of-week: L alone (= 7, Saturday), nL (the last weekday n of the
 *    month: 6L = last Friday), n#k (the k-th weekday n, k 1-5: 6#3 = third Friday).
 *    L, L-n, LW, nW, nL and n#k stand alone in their field (no lists).
 *  Unix (5 fields): minute hour day-of-month month day-of-week, second 0;
 *    day-of-week 0-7 (0 and 7 = Sunday) or SUN-SAT; no '?', L, W or #; a range must not
 *    run backwards. As in Vixie cron, when both day fields are restricted (neither starts
 *    with '*'), a day matches when either matches; otherwise both must.
 * Names are case-insensitive. Fields are separated by spaces or tabs.
 *
 * Time zones and DST. The fields are read as local civil time in the zone passed to
 * tn_cron_next, and the rules are those of Quartz's CronTrigger:
 *  - gap (spring forward, e.g. 02:00-02:59 on 2026-03-29 in Europe/Berlin, which does not
 *    exist): a civil time in the gap does not fire that day. It is skipped, not moved:
 *    daily 02:30 fires on the 28th at 02:30 CET and next on the 30th at 02:30 CEST;
 *    hourly "0 15 * * * ?" fires at 01:15 CET and next at 03:15 CEST. A day a zone
 *    skipped whole (Pacific/Apia, 2011-12-30) fires nothing.
 *  - overlap (fall back, e.g. 02:00-02:59 on 2026-10-25 in Europe/Berlin, which happens
 *    at 00:xx UTC and again at 01:xx UTC): a civil time fires once, at its first
 *    occurrence (CEST), and during the repeated hour nothing fires a second time: hourly
 *    "0 0 * * * ?" fires at 02:00 CEST (00:00 UTC) and next at 03:00 CET (02:00 UTC);
 *    every 15 minutes fires at 02:45 CEST (00:45 UTC) and next at 03:00 CET (02:00 UTC).
 * So the fire times are the first occurrences of the matching civil times that exist, in
 * civil order, and asking from any instant gives the same sequence.
 *
 * Everything here is a pure function of its arguments; tn_cron values may be shared
 * between threads freely (tn_tz serializes itself). */

#define TN_CRON_MAX_LEN  256u /* bytes of an expression */
#define TN_CRON_YEAR_MIN 1970
#define TN_CRON_YEAR_MAX 2261 /* unix ns in int64 end in April 2262 */

/* The parsed table. Plain data: copy it, compare it with memcmp, keep it in a struct. */
typedef struct tn_cron {
    uint64_t sec;   /* bit s: second s fires (0-59) */
    uint64_t min;   /* bit m: minute m */
    uint32_t hour;  /* bit h: hour h */
    uint32_t dom;   /* bit d: day of month d (1-31) */
    uint16_t month; /* bit m: month m (1-12) */
    uint8_t dow;    /* bit w: weekday w (0=Sunday..6=Saturday) */
    uint8_t flags;  /* TN_CRON_F_* */
    uint64_t year[(TN_CRON_YEAR_MAX - TN_CRON_YEAR_MIN) / 64 + 1]; /* bit y-1970 */
    int8_t dom_last;    /* L-n: n (0 for L); -1 when not used */
    int8_t dom_near;    /* nW: n; 0 when not used */
    int8_t dow_last;    /* nL: weekday 0-6; -1 when not used */
    int8_t dow_nth_day; /* n#k: weekday 0-6; -1 when not used */
    int8_t dow_nth;     /* n#k: k (1-5) */
} tn_cron;

#define TN_CRON_F_UNIX    0x01 /* 5-field form */
#define TN_CRON_F_DOM_ANY 0x02 /* day-of-month is '?' or starts with '*' */
#define TN_CRON_F_DOW_ANY 0x04 /* day-of-week is '?' or starts with '*' */
#define TN_CRON_F_DOM_Q   0x08 /* day-of-month is '?' (Quartz) */
#define TN_CRON_F_DOW_Q   0x10 /* day-of-week is '?' (Quartz) */
#define TN_CRON_F_LW      0x20 /* day-of-month is LW */

/* Parse expr into *out (written only on success). A wrong expression is TN_ERR_PARSE
 * with a message giving the 1-based character position and what was expected:
 *   cron: "0 0 25 * * ?": position 5: hour 25 is out of range 0-23
 * TN_ERR_TOOBIG for an expression over TN_CRON_MAX_LEN bytes. e may be NULL. */
tn_err tn_cron_parse(const char *expr, tn_cron *out, tn_errmsg *e);

/* The first fire time strictly after after_ns (unix ns), read in zone tz; written to
 * *next_ns only on success. Fire times are whole seconds from 1970 on. TN_ERR_NOENT
 * ("never fires", with a message in e, which may be NULL) when there is none up to the
 * end of TN_CRON_YEAR_MAX: Feb 30, a year already past, 31W in a list of short months.
 * The search skips whole years, months, days, hours and minutes that cannot match, so
 * even a hopeless expression costs at most a few hundred thousand cheap steps. Errors
 * from tz pass through. */
tn_err tn_cron_next(const tn_cron *c, tn_tz *tz, int64_t after_ns, int64_t *next_ns,
                    tn_errmsg *e);

#endif

/* Time zones: IANA zones (through ICU), "UTC" and fixed offsets, and the conversion
 * between unix nanoseconds and local civil time, with DST gaps and overlaps made explicit. */
#ifndef TN_TZ_H
#define TN_TZ_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* A zone. Thread-safe: one tn_tz may be shared by any number of threads; every call
 * serializes on a mutex inside the object (ICU's UCalendar, which each IANA zone owns,
 * is not safe to use from two threads at once). Calls are short (no I/O after open). */
typedef struct tn_tz tn_tz;

#define TN_TZ_MAX_NAME 64u /* bytes of a zone name, without the NUL */

/* Local civil time, proleptic Gregorian, whole seconds. */
typedef struct tn_civil {
    int32_t year;    /* e.g. 2026 */
    int32_t month;   /* 1..12 */
    int32_t day;     /* 1..31 */
    int32_t hour;    /* 0..23 */
    int32_t minute;  /* 0..59 */
    int32_t second;  /* 0..59 (no leap seconds: unix time has none) */
    int32_t weekday; /* 0=Sunday .. 6=Saturday; ignored by tn_tz_from_civil */
} tn_civil;

/* Open a zone by name into *out (written only on success; free with tn_tz_free):
 *  - an IANA id known to ICU's zone data ("Europe/Berlin", "America/New_York", "Etc/UTC");
 *  - "UTC" (also "Z"), or a fixed offset "+08:00" / "-05:30" (sign, two-digit hours up to
 *    18, colon, two-digit minutes) — these need no zone data and never have DST.
 * Unknown names are refused with TN_ERR_NOENT and a message naming the zone (ICU itself
 * would quietly fall back to "Etc/Unknown", i.e. GMT). TN_ERR_TOOBIG for a name longer
 * than TN_TZ_MAX_NAME, TN_ERR_NOMEM, TN_ERR_INTERNAL when ICU fails. */
tn_err tn_tz_open(const char *name, tn_tz **out, tn_errmsg *e);
/* Free the zone; NULL is allowed. No call on it may be running. */
void tn_tz_free(tn_tz *tz);
/* The name as given to tn_tz_open; valid until tn_tz_free. */
const char *tn_tz_name(const tn_tz *tz);

/* The zone's total UTC offset (standard + DST), in seconds east of UTC, at an instant. */
tn_err tn_tz_offset(tn_tz *tz, int64_t unix_ns, int32_t *offset_s);

/* The local civil time at an instant (sub-second part dropped, rounding toward the past). */
tn_err tn_tz_to_civil(tn_tz *tz, int64_t unix_ns, tn_civil *out);

/* What to do with a civil time that does not exist (it falls in a gap, e.g. 02:30 on the
 * day clocks spring forward from 02:00 to 03:00). */
typedef enum tn_tz_gap {
    TN_TZ_GAP_SHIFT,      /* read it with the offset in force before the gap, so it moves
                           * forward by the gap's length: 02:30 -> 03:30 (what ICU, Java
                           * and POSIX mktime do by default) */
    TN_TZ_GAP_NEXT_VALID, /* the first valid instant, the transition itself: 02:30 -> 03:00 */
    TN_TZ_GAP_REFUSE,     /* TN_ERR_NOENT */
} tn_tz_gap;

/* What to do with a civil time that happens twice (it falls in an overlap, e.g. 02:30 on
 * the day clocks fall back from 03:00 to 02:00). */
typedef enum tn_tz_overlap {
    TN_TZ_OVERLAP_EARLIER, /* the first occurrence (still on the pre-transition offset) */
    TN_TZ_OVERLAP_LATER,   /* the second occurrence */
    TN_TZ_OVERLAP_REFUSE,  /* TN_ERR_EXISTS */
} tn_tz_overlap;

/* How a civil time maps to instants. */
typedef enum tn_tz_kind {
    TN_TZ_UNIQUE,  /* exactly one instant */
    TN_TZ_GAP,     /* none: resolved by the tn_tz_gap policy */
    TN_TZ_OVERLAP, /* two: resolved by the tn_tz_overlap policy */
} tn_tz_kind;

/* The instant of a civil time in this zone, with the caller's policy for gaps and
 * overlaps. weekday is ignored; the other fields must be in range (TN_ERR_INVAL; day
 * beyond the month's length is out of range). *unix_ns, and *kind if not NULL, are
 * written on success; *kind is also written when the policy refuses. TN_ERR_TOOBIG when
 * the instant does not fit in int64 nanoseconds (years outside ~1678..2261). */
tn_err tn_tz_from_civil(tn_tz *tz, const tn_civil *c, tn_tz_gap gap, tn_tz_overlap overlap,
                        int64_t *unix_ns, tn_tz_kind *kind);

/* The first second in (lo_ns, hi_ns] at which the offset differs from the offset at lo_ns,
 * for a span holding at most one transition (a span of hours, say). TN_ERR_NOENT when the
 * offsets at lo_ns and hi_ns are equal. *at_ns is written on success. */
tn_err tn_tz_transition(tn_tz *tz, int64_t lo_ns, int64_t hi_ns, int64_t *at_ns);

/* Pure civil-calendar helpers (no zone), shared with the cron module. */
/* Days in a month of a proleptic Gregorian year (month 1..12). */
int tn_civil_days_in_month(int64_t year, int month);
/* 0=Sunday .. 6=Saturday. */
int tn_civil_weekday(int64_t year, int month, int day);
/* Days since 1970-01-01 of a civil date. */
int64_t tn_civil_days_from(int64_t year, int month, int day);
/* The civil fields (weekday included) of a count of seconds since 1970-01-01T00:00 read
 * as local time, i.e. unix seconds plus the UTC offset. */
void tn_civil_from_seconds(int64_t local_s, tn_civil *out);

#endif

/* Tests of cron expressions and time zones: a corpus of expressions with their next fire
 * times (each written as a UTC instant worked out by hand), DST, errors, and zones. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "tz.h"

/* ---- helpers -------------------------------------------------------------------------- */

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000000000LL;
}

static const char *iso(int64_t ns, char buf[32])
{
    time_t t = (time_t)(ns / 1000000000LL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static tn_tz *tz_open(const char *name)
{
    tn_tz *tz = NULL;
    tn_errmsg e = {{0}};
    tn_err err = tn_tz_open(name, &tz, &e);
    cr_assert_eq(err, TN_OK, "tz %s: %s", name, e.text);
    return tz;
}

/* One row: after `after` in zone tz, expr next fires at `want` (0: never). */
typedef struct row {
    const char *expr;
    const char *tz;
    int64_t after;
    int64_t want;
} row;

static void check_rows(const row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const row *r = &rows[i];
        tn_cron c;
        tn_errmsg e = {{0}};
        cr_assert_eq(tn_cron_parse(r->expr, &c, &e), TN_OK, "parse \"%s\": %s", r->expr,
                     e.text);
        tn_tz *tz = tz_open(r->tz);
        int64_t got = 0;
        tn_err err = tn_cron_next(&c, tz, r->after, &got, &e);
        char a[32], w[32], g[32];
        if (r->want == 0) {
            cr_expect_eq(err, TN_ERR_NOENT, "\"%s\" in %s after %s: want never, got %s (%s)",
                         r->expr, r->tz, iso(r->after, a), err ? "error" : iso(got, g), e.text);
            cr_expect(strstr(e.text, "never fires") != NULL, "message: %s", e.text);
        } else {
            cr_expect_eq(err, TN_OK, "\"%s\": %s", r->expr, e.text);
            cr_expect_eq(got, r->want, "\"%s\" in %s after %s: want %s, got %s", r->expr, r->tz,
                         iso(r->after, a), iso(r->want, w), iso(got, g));
        }
        tn_tz_free(tz);
    }
}

#define CHECK(rows) check_rows(rows, sizeof(rows) / sizeof(rows[0]))

/* 2026-03-04T10:00:00Z, a Wednesday. March 2026: the 1st is a Sunday, the 31st a Tuesday. */
#define A utc(2026, 3, 4, 10, 0, 0)

/* ---- Quartz's CronTrigger tutorial table ------------------------------------------------ */

Test(cron, quartz_tutorial)
{
    const row rows[] = {
        {"0 0 12 * * ?", "UTC", A, utc(2026, 3, 4, 12, 0, 0)},
        {"0 0 12 * * ?", "UTC", utc(2026, 3, 4, 12, 0, 0), utc(2026, 3, 5, 12, 0, 0)},
        {"0 15 10 ? * *", "UTC", A, utc(2026, 3, 4, 10, 15, 0)},
        {"0 15 10 * * ? 2005", "UTC", A, 0},
        {"0 15 10 * * ? 2005", "UTC", utc(2004, 12, 31, 10, 15, 0), utc(2005, 1, 1, 10, 15, 0)},
        {"0 15 10 * * ? 2005", "UTC", utc(2005, 12, 31, 10, 15, 0), 0},
        {"0 * 14 * * ?", "UTC", A, utc(2026, 3, 4, 14, 0, 0)},
        {"0 * 14 * * ?", "UTC", utc(2026, 3, 4, 14, 0, 0), utc(2026, 3, 4, 14, 1, 0)},
        {"0 * 14 * * ?", "UTC", utc(2026, 3, 4, 14, 59, 0), utc(2026, 3, 5, 14, 0, 0)},
        {"0 0/5 14 * * ?", "UTC", utc(2026, 3, 4, 14, 0, 0), utc(2026, 3, 4, 14, 5, 0)},
        {"0 0/5 14 * * ?", "UTC", utc(2026, 3, 4, 14, 55, 0), utc(2026, 3, 5, 14, 0, 0)},
        {"0 0/5 14,18 * * ?", "UTC", utc(2026, 3, 4, 14, 55, 0), utc(2026, 3, 4, 18, 0, 0)},
        {"0 0-5 14 * * ?", "UTC", utc(2026, 3, 4, 14, 3, 30), utc(2026, 3, 4, 14, 4, 0)},
        {"0 0-5 14 * * ?", "UTC", utc(2026, 3, 4, 14, 5, 0), utc(2026, 3, 5, 14, 0, 0)},
        /* Wednesdays in March only; the first in March 2027 is the 3rd. */
        {"0 10,44 14 ? 3 WED", "UTC", A, utc(2026, 3, 4, 14, 10, 0)},
        {"0 10,44 14 ? 3 WED", "UTC", utc(2026, 3, 4, 14, 44, 0), utc(2026, 3, 11, 14, 10, 0)},
        {"0 10,44 14 ? 3 WED", "UTC", utc(2026, 3, 25, 14, 44, 0), utc(2027, 3, 3, 14, 10, 0)},
        /* Friday the 6th -> Monday the 9th. */
        {"0 15 10 ? * MON-FRI", "UTC", utc(2026, 3, 6, 10, 15, 0), utc(2026, 3, 9, 10, 15, 0)},
        {"0 15 10 15 * ?", "UTC", A, utc(2026, 3, 15, 10, 15, 0)},
        {"0 15 10 L * ?", "UTC", A, utc(2026, 3, 31, 10, 15, 0)},
        {"0 15 10 L * ?", "UTC", utc(2026, 3, 31, 10, 15, 0), utc(2026, 4, 30, 10, 15, 0)},
        {"0 15 10 L * ?", "UTC", utc(2026, 2, 1, 0, 0, 0), utc(2026, 2, 28, 10, 15, 0)},
        {"0 15 10 L-2 * ?", "UTC", A, utc(2026, 3, 29, 10, 15, 0)},
        {"0 15 10 L-2 * ?", "UTC", utc(2026, 3, 29, 10, 15, 0), utc(2026, 4, 28, 10, 15, 0)},
        /* Last Friday: March 27, April 24. */
        {"0 15 10 ? * 6L", "UTC", A, utc(2026, 3, 27, 10, 15, 0)},
        {"0 15 10 ? * 6L", "UTC", utc(2026, 3, 27, 10, 15, 0), utc(2026, 4, 24, 10, 15, 0)},
        /* January 2002's last Friday is the 25th; December 2005's the 30th. */
        {"0 15 10 ? * 6L 2002-2005", "UTC", A, 0},
        {"0 15 10 ? * 6L 2002-2005", "UTC", utc(2001, 6, 1, 0, 0, 0),
         utc(2002, 1, 25, 10, 15, 0)},
        {"0 15 10 ? * 6L 2002-2005", "UTC", utc(2005, 12, 30, 10, 15, 0), 0},
        /* Third Friday: the Fridays of March 2026 are 6, 13, 20, 27. */
        {"0 15 10 ? * 6#3", "UTC", A, utc(2026, 3, 20, 10, 15, 0)},
        {"0 15 10 ? * 6#3", "UTC", utc(2026, 3, 20, 10, 15, 0), utc(2026, 4, 17, 10, 15, 0)},
        /* Days 1, 6, 11, 16, 21, 26, 31. */
        {"0 0 12 1/5 * ?", "UTC", A, utc(2026, 3, 6, 12, 0, 0)},
        {"0 0 12 1/5 * ?", "UTC", utc(2026, 3, 26, 12, 0, 0), utc(2026, 3, 31, 12, 0, 0)},
        {"0 0 12 1/5 * ?", "UTC", utc(2026, 3, 31, 12, 0, 0), utc(2026, 4, 1, 12, 0, 0)},
        {"0 11 11 11 11 ?", "UTC", A, utc(2026, 11, 11, 11, 11, 0)},
        {"0 11 11 11 11 ?", "UTC", utc(2026, 11, 11, 11, 11, 0), utc(2027, 11, 11, 11, 11, 0)},
    };
    CHECK(rows);
}

/* ---- DolphinScheduler's presets (7 fields, year '*') and other Quartz forms ------------- */

Test(cron, dolphinscheduler_presets)
{
    const row rows[] = {
        {"* * * * * ? *", "UTC", A, A + 1000000000LL},
        {"* * * * * ? *", "UTC", A + 500000000LL, A + 1000000000LL},
        {"* * * * * ? *", "UTC", A - 1, A},
        {"0 * * * * ? *", "UTC", utc(2026, 3, 4, 10, 0, 30), utc(2026, 3, 4, 10, 1, 0)},
        {"0 0 * * * ? *", "UTC", A, utc(2026, 3, 4, 11, 0, 0)},
        {"0 0 0 * * ? *", "UTC", A, utc(2026, 3, 5, 0, 0, 0)},
        {"0 0 0 ? * 2 *", "UTC", A, utc(2026, 3, 9, 0, 0, 0)}, /* 2 = Monday */
        {"0 0 0 1 * ? *", "UTC", A, utc(2026, 4, 1, 0, 0, 0)},
        {"0 0 0 1 1 ? *", "UTC", A, utc(2027, 1, 1, 0, 0, 0)},
        {"0 0 12 ? * L", "UTC", A, utc(2026, 3, 7, 12, 0, 0)},       /* L = Saturday */
        {"0 0 12 ? * FRI-MON", "UTC", A, utc(2026, 3, 6, 12, 0, 0)}, /* wraps */
        {"0 0 12 ? * FRI-MON", "UTC", utc(2026, 3, 6, 12, 0, 0), utc(2026, 3, 7, 12, 0, 0)},
        {"0 0 12 ? * FRI-MON", "UTC", utc(2026, 3, 9, 12, 0, 0), utc(2026, 3, 13, 12, 0, 0)},
        {"0 0 22-2 * * ?", "UTC", A, utc(2026, 3, 4, 22, 0, 0)},
        {"0 0 22-2 * * ?", "UTC", utc(2026, 3, 4, 23, 0, 0), utc(2026, 3, 5, 0, 0, 0)},
        {"0 0 22-2 * * ?", "UTC", utc(2026, 3, 5, 2, 0, 0), utc(2026, 3, 5, 22, 0, 0)},
        {"10-50/20 0 0 * * ?", "UTC", utc(2026, 3, 5, 0, 0, 10), utc(2026, 3, 5, 0, 0, 30)},
        {"0 0 12 ? * sun#2", "UTC", A, utc(2026, 3, 8, 12, 0, 0)}, /* case-insensitive */
        {"0 0 12 ? jan-feb,dec 2", "UTC", A, utc(2026, 12, 7, 12, 0, 0)},
    };
    CHECK(rows);
}

/* ---- the Unix 5-field form ----------------------------------------------------------- */

Test(cron, unix_form)
{
    const row rows[] = {
        {"*/15 * * * *", "UTC", A, utc(2026, 3, 4, 10, 15, 0)},
        {"* * * * *", "UTC", utc(2026, 3, 4, 10, 0, 30), utc(2026, 3, 4, 10, 1, 0)},
        {"0 9 * * 1-5", "UTC", utc(2026, 3, 6, 9, 0, 0), utc(2026, 3, 9, 9, 0, 0)},
        {"0 0 * * 0", "UTC", A, utc(2026, 3, 8, 0, 0, 0)},
        {"0 0 * * 7", "UTC", A, utc(2026, 3, 8, 0, 0, 0)},
        {"0 0 * * SUN", "UTC", A, utc(2026, 3, 8, 0, 0, 0)},
        /* Both day fields restricted: the 1st, the 15th or any Friday (Vixie's OR). */
        {"0 0 1,15 * 5", "UTC", A, utc(2026, 3, 6, 0, 0, 0)},
        {"0 0 1,15 * 5", "UTC", utc(2026, 3, 13, 0, 0, 0), utc(2026, 3, 15, 0, 0, 0)},
        /* Day-of-month starts with '*': AND. Odd days that are Mondays: the 9th. */
        {"0 0 */2 * 1", "UTC", A, utc(2026, 3, 9, 0, 0, 0)},
        {"0 0 */2 * 1", "UTC", utc(2026, 3, 9, 0, 0, 0), utc(2026, 3, 23, 0, 0, 0)},
        {"30 4 1 JAN *", "UTC", A, utc(2027, 1, 1, 4, 30, 0)},
        {"5 0 * 8 *", "UTC", A, utc(2026, 8, 1, 0, 5, 0)},
        {"0 0 29 2 *", "UTC", A, utc(2028, 2, 29, 0, 0, 0)},
        {"0 12 * * *", "+08:00", A, utc(2026, 3, 5, 4, 0, 0)},
        {"0 12 * * *", "-05:30", A, utc(2026, 3, 4, 17, 30, 0)},
    };
    CHECK(rows);
}

/* ---- W, LW, Feb 29 and never ---------------------------------------------------------- */

Test(cron, month_edges)
{
    const row rows[] = {
        /* LW: May 31 2026 is a Sunday -> Fri 29; Jan 31 a Saturday -> Fri 30; Feb 28 a
         * Saturday -> Fri 27; March 31 a Tuesday. */
        {"0 0 12 LW * ?", "UTC", utc(2026, 5, 1, 0, 0, 0), utc(2026, 5, 29, 12, 0, 0)},
        {"0 0 12 LW * ?", "UTC", utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 30, 12, 0, 0)},
        {"0 0 12 LW * ?", "UTC", utc(2026, 1, 30, 12, 0, 0), utc(2026, 2, 27, 12, 0, 0)},
        {"0 0 12 LW * ?", "UTC", A, utc(2026, 3, 31, 12, 0, 0)},
        /* 15W: Mar 15 is a Sunday -> Mon 16; Aug 15 a Saturday -> Fri 14. */
        {"0 0 12 15W * ?", "UTC", A, utc(2026, 3, 16, 12, 0, 0)},
        {"0 0 12 15W * ?", "UTC", utc(2026, 8, 1, 0, 0, 0), utc(2026, 8, 14, 12, 0, 0)},
        /* 1W: Aug 1 2026 is a Saturday; the month is not left: Monday the 3rd. */
        {"0 0 12 1W * ?", "UTC", utc(2026, 7, 31, 12, 0, 0), utc(2026, 8, 3, 12, 0, 0)},
        /* 31W: May 31 a Sunday -> Fri 29; 30-day months have no 31st. */
        {"0 0 12 31W * ?", "UTC", utc(2026, 5, 1, 0, 0, 0), utc(2026, 5, 29, 12, 0, 0)},
        {"0 0 12 31W * ?", "UTC", utc(2026, 3, 31, 12, 0, 0), utc(2026, 5, 29, 12, 0, 0)},
        /* Feb 29: 2028 is leap; 2100 is not, so 2096 is followed by 2104. */
        {"0 0 0 29 2 ?", "UTC", A, utc(2028, 2, 29, 0, 0, 0)},
        {"0 0 0 29 2 ?", "UTC", utc(2096, 2, 29, 0, 0, 0), utc(2104, 2, 29, 0, 0, 0)},
        {"0 0 0 L 2 ?", "UTC", utc(2027, 3, 1, 0, 0, 0), utc(2028, 2, 29, 0, 0, 0)},
        {"0 0 0 L 2 ?", "UTC", utc(2026, 3, 1, 0, 0, 0), utc(2027, 2, 28, 0, 0, 0)},
        {"0 0 0 30 2 ?", "UTC", A, 0},
        {"0 0 0 31 4,6,9,11 ?", "UTC", A, 0},
        {"0 0 0 * * ? 2261", "UTC", utc(2261, 12, 31, 0, 0, 0), 0},
        {"0 0 0 * * ?", "UTC", utc(2261, 12, 31, 0, 0, 0), 0},
        {"0 0 0 * * ? 2261", "UTC", utc(2261, 12, 30, 12, 0, 0), utc(2261, 12, 31, 0, 0, 0)},
        {"0 0 0 1 1 ? 2030", "UTC", -1000000000000000000LL, utc(2030, 1, 1, 0, 0, 0)},
    };
    CHECK(rows);
}

/* ---- DST -------------------------------------------------------------------------------- */

/* Europe/Berlin: 2026-03-29 01:00Z CET 02:00 -> CEST 03:00 (02:xx does not exist);
 * 2026-10-25 01:00Z CEST 03:00 -> CET 02:00 (02:xx happens at 00:xxZ and 01:xxZ). */
Test(cron, dst_berlin)
{
    const row rows[] = {
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 3, 27, 12, 0, 0),
         utc(2026, 3, 28, 1, 30, 0)},
        /* gap: 02:30 moves on by the gap's hour: 03:30 CEST */
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 3, 28, 1, 30, 0),
         utc(2026, 3, 29, 1, 30, 0)},
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 3, 29, 1, 30, 0),
         utc(2026, 3, 30, 0, 30, 0)},
        /* hourly: 01:00 CET, [02:00 -> 03:00 CEST], 04:00 CEST: no gap, no double fire */
        {"0 0 * * * ?", "Europe/Berlin", utc(2026, 3, 28, 23, 30, 0),
         utc(2026, 3, 29, 0, 0, 0)},
        {"0 0 * * * ?", "Europe/Berlin", utc(2026, 3, 29, 0, 0, 0), utc(2026, 3, 29, 1, 0, 0)},
        {"0 0 * * * ?", "Europe/Berlin", utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 29, 2, 0, 0)},
        {"0 30 * * * ?", "Europe/Berlin", utc(2026, 3, 29, 0, 30, 0),
         utc(2026, 3, 29, 1, 30, 0)},
        {"0 30 * * * ?", "Europe/Berlin", utc(2026, 3, 29, 1, 30, 0),
         utc(2026, 3, 29, 2, 30, 0)},
        /* asked after the change but before the shifted time: 02:30 is still to come */
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 3, 29, 1, 10, 0),
         utc(2026, 3, 29, 1, 30, 0)},
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 3, 29, 1, 29, 59) + 999999999,
         utc(2026, 3, 29, 1, 30, 0)},
        {"0 15,45 2 * * ?", "Europe/Berlin", utc(2026, 3, 29, 1, 20, 0),
         utc(2026, 3, 29, 1, 45, 0)},
        /* overlap: daily 02:30 fires once, at the first (CEST) occurrence */
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 10, 24, 23, 0, 0),
         utc(2026, 10, 25, 0, 30, 0)},
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 10, 25, 0, 30, 0),
         utc(2026, 10, 26, 1, 30, 0)},
        /* hourly: 02:00 CEST (00:00Z), then 03:00 CET (02:00Z); 02:00 CET (01:00Z) is a repeat */
        {"0 0 * * * ?", "Europe/Berlin", utc(2026, 10, 24, 23, 30, 0),
         utc(2026, 10, 25, 0, 0, 0)},
        {"0 0 * * * ?", "Europe/Berlin", utc(2026, 10, 25, 0, 0, 0),
         utc(2026, 10, 25, 2, 0, 0)},
        /* after an instant inside the repeated hour */
        {"0 45 2 * * ?", "Europe/Berlin", utc(2026, 10, 25, 1, 15, 0),
         utc(2026, 10, 26, 1, 45, 0)},
        {"0 */15 * * * ?", "Europe/Berlin", utc(2026, 10, 25, 1, 15, 0),
         utc(2026, 10, 25, 2, 0, 0)},
        {"0 */15 * * * ?", "Europe/Berlin", utc(2026, 10, 25, 0, 50, 0),
         utc(2026, 10, 25, 2, 0, 0)},
        {"30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12, 0, 0), utc(2026, 3, 29, 1, 30, 0)},
    };
    CHECK(rows);
}

/* America/New_York: 2026-03-08 07:00Z EST 02:00 -> EDT 03:00; 2026-11-01 06:00Z EDT 02:00
 * -> EST 01:00 (01:xx happens at 05:xxZ and 06:xxZ). */
Test(cron, dst_new_york)
{
    const row rows[] = {
        {"0 30 2 * * ?", "America/New_York", utc(2026, 3, 7, 12, 0, 0),
         utc(2026, 3, 8, 7, 30, 0)},
        {"30 2 * * *", "America/New_York", utc(2026, 3, 7, 12, 0, 0),
         utc(2026, 3, 8, 7, 30, 0)},
        {"0 30 2 * * ?", "America/New_York", utc(2026, 3, 8, 7, 30, 0),
         utc(2026, 3, 9, 6, 30, 0)},
        {"0 0 * * * ?", "America/New_York", utc(2026, 3, 8, 6, 0, 0), utc(2026, 3, 8, 7, 0, 0)},
        {"0 0 * * * ?", "America/New_York", utc(2026, 3, 8, 7, 0, 0), utc(2026, 3, 8, 8, 0, 0)},
        {"0 30 1 * * ?", "America/New_York", utc(2026, 11, 1, 0, 0, 0),
         utc(2026, 11, 1, 5, 30, 0)},
        {"0 30 1 * * ?", "America/New_York", utc(2026, 11, 1, 5, 30, 0),
         utc(2026, 11, 2, 6, 30, 0)},
        {"0 0 * * * ?", "America/New_York", utc(2026, 11, 1, 5, 0, 0),
         utc(2026, 11, 1, 7, 0, 0)},
        {"0 0 * * * ?", "America/New_York", utc(2026, 11, 1, 6, 0, 0),
         utc(2026, 11, 1, 7, 0, 0)},
    };
    CHECK(rows);
}

/* Australia/Lord_Howe moves by 30 minutes: 2026-10-03 15:30Z, 02:00 +10:30 -> 02:30 +11:00.
 * A gap time read shifted (02:25 -> 02:55 local, 15:55Z) comes after a regular time that
 * follows the gap (02:40, 15:40Z): fire times go in instant order, not civil order. */
Test(cron, dst_half_hour_gap)
{
    const char *L = "Australia/Lord_Howe", *x = "0 25,40 * * * ?";
    const row rows[] = {
        {x, L, utc(2026, 10, 3, 15, 10, 0) - 1, utc(2026, 10, 3, 15, 10, 0)},
        {x, L, utc(2026, 10, 3, 15, 10, 0), utc(2026, 10, 3, 15, 40, 0)},
        {x, L, utc(2026, 10, 3, 15, 40, 0), utc(2026, 10, 3, 15, 55, 0)},
        {x, L, utc(2026, 10, 3, 15, 55, 0), utc(2026, 10, 3, 16, 25, 0)},
        {x, L, utc(2026, 10, 3, 15, 30, 0), utc(2026, 10, 3, 15, 40, 0)},
    };
    CHECK(rows);
}

/* Pacific/Apia skipped Friday 2011-12-30 entirely (-10:00 -> +14:00 at 10:00Z): noon on
 * the 30th is read shifted by the gap's day, to noon on the 31st, and fires once. */
Test(cron, dst_skipped_day)
{
    const char *P = "Pacific/Apia";
    const row rows[] = {
        {"0 0 12 * * ?", P, utc(2011, 12, 28, 22, 0, 0), utc(2011, 12, 29, 22, 0, 0)},
        {"0 0 12 * * ?", P, utc(2011, 12, 29, 22, 0, 0), utc(2011, 12, 30, 22, 0, 0)},
        {"0 0 12 * * ?", P, utc(2011, 12, 30, 22, 0, 0), utc(2011, 12, 31, 22, 0, 0)},
        {"0 0 12 30 12 ?", P, utc(2011, 12, 1, 0, 0, 0), utc(2011, 12, 30, 22, 0, 0)},
        {"0 0 12 ? * FRI", P, utc(2011, 12, 24, 0, 0, 0), utc(2011, 12, 30, 22, 0, 0)},
    };
    CHECK(rows);
}

/* Walking fire times across DST changes: each is after the one before, and asking just
 * before a fire time gives that fire time (the sequence does not depend on where one
 * starts asking). */
Test(cron, walk_is_consistent)
{
    const char *zones[] = {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                           "Pacific/Apia"};
    const char *exprs[] = {"0 0/20 * * * ?", "0 25,40 1-3 * * ?", "30 2 * * *",
                           "0 0 0-3 * * ?",  "17 7,37 * * * ?",   "0 0 12 * * ?"};
    for (size_t z = 0; z < 4; z++) {
        tn_tz *tz = tz_open(zones[z]);
        for (size_t x = 0; x < sizeof(exprs) / sizeof(exprs[0]); x++) {
            tn_cron c;
            cr_assert_eq(tn_cron_parse(exprs[x], &c, NULL), TN_OK);
            int64_t windows[] = {utc(2026, 3, 7, 0, 0, 0),  utc(2026, 3, 27, 0, 0, 0),
                                 utc(2026, 10, 2, 0, 0, 0), utc(2026, 10, 23, 0, 0, 0),
                                 utc(2026, 4, 3, 0, 0, 0),  utc(2026, 10, 30, 0, 0, 0),
                                 utc(2011, 12, 28, 0, 0, 0)};
            for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
                int64_t at = windows[w];
                for (int i = 0; i < 300; i++) {
                    int64_t next, again;
                    cr_assert_eq(tn_cron_next(&c, tz, at, &next, NULL), TN_OK);
                    cr_assert_gt(next, at);
                    cr_assert_eq(tn_cron_next(&c, tz, next - 1, &again, NULL), TN_OK);
                    cr_assert_eq(again, next, "%s %s: after %lld", zones[z], exprs[x],
                                 (long long)(next - 1));
                    at = next;
                }
            }
        }
        tn_tz_free(tz);
    }
}

/* ---- errors ----------------------------------------------------------------------------- */

static void expect_error(const char *expr, tn_err want, const char *msg)
{
    tn_cron c;
    memset(&c, 0x5a, sizeof(c));
    tn_cron before = c;
    tn_errmsg e = {{0}};
    tn_err err = tn_cron_parse(expr, &c, &e);
    cr_expect_eq(err, want, "\"%s\": err %d, message %s", expr, err, e.text);
    cr_expect(strstr(e.text, msg) != NULL, "\"%s\": want \"%s\" in \"%s\"", expr, msg, e.text);
    cr_expect(memcmp(&c, &before, sizeof(c)) == 0, "\"%s\": output written on error", expr);
}

Test(cron, errors)
{
    expect_error("0 0 25 * * ?", TN_ERR_PARSE,
                 "cron: \"0 0 25 * * ?\": position 5: hour 25 is out of range 0-23");
    expect_error("61 * * * * ?", TN_ERR_PARSE, "position 1: second 61 is out of range 0-59");
    expect_error("0 0 12 * * MON", TN_ERR_PARSE,
                 "position 12: day-of-month and day-of-week are both given: set exactly one of "
                 "them to '?'");
    expect_error("0 0 12 ? * ?", TN_ERR_PARSE,
                 "position 12: day-of-month and day-of-week are "
                 "both '?'");
    expect_error("0 0 12", TN_ERR_PARSE, "expected 5 fields");
    expect_error("0 0 12", TN_ERR_PARSE, "found 3");
    expect_error("", TN_ERR_PARSE, "found 0");
    expect_error("0 0 12 * * ? 2030 9", TN_ERR_PARSE, "position 19: expected at most 7 fields");
    expect_error("0 0/0 * * * ?", TN_ERR_PARSE,
                 "position 5: minute step 0 is out of range 1-60");
    expect_error("0 0/ * * * ?", TN_ERR_PARSE, "position 5: expected a step number after '/'");
    expect_error("0 0 12 * FOO ?", TN_ERR_PARSE,
                 "position 10: expected a month name (JAN-DEC) or number, found \"FOO\"");
    expect_error("0 0 12 ? * 6#6", TN_ERR_PARSE,
                 "position 14: day-of-week 6#6: the week number");
    expect_error("0 0 12 ? * 8", TN_ERR_PARSE,
                 "position 12: day-of-week 8 is out of range 1-7");
    expect_error("0 0 12 ? * 1,6L", TN_ERR_PARSE, "position 12: expected nL or n#k alone");
    expect_error("0 0 12 L-31 * ?", TN_ERR_PARSE, "position 10: day-of-month L-31: the offset");
    expect_error("0 0 12 LX * ?", TN_ERR_PARSE, "position 8: expected L, L-n, LW or nW alone");
    expect_error("0 0 12 32W * ?", TN_ERR_PARSE, "position 8: day-of-month 32W: the day must");
    expect_error("0 0 12 1,,2 * ?", TN_ERR_PARSE,
                 "position 10: expected a number in the day-of-month field, found ','");
    expect_error("0 0 12 5X * ?", TN_ERR_PARSE,
                 "position 9: expected ',', '-', '/' or a space");
    expect_error("0 0 12 * * ? 1969", TN_ERR_PARSE, "position 14: year 1969 is out of range");
    expect_error("0 0 12 0 * ?", TN_ERR_PARSE,
                 "position 8: day-of-month 0 is out of range 1-31");
    expect_error("0 ? 12 * * ?", TN_ERR_PARSE, "position 3: '?' is allowed only");
    expect_error("* * ? * *", TN_ERR_PARSE, "position 5: '?' is allowed only");
    expect_error("0 0 * * 5-1", TN_ERR_PARSE,
                 "position 9: day-of-week range 5-1 runs backwards");
    expect_error("0 0 L * *", TN_ERR_PARSE,
                 "position 5: expected a number in the day-of-month");
    expect_error("0 0 * * 8", TN_ERR_PARSE, "position 9: day-of-week 8 is out of range 0-7");
    expect_error("0 0 12 * * \x01", TN_ERR_PARSE, "found byte 0x01");
    char big[400];
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    expect_error(big, TN_ERR_TOOBIG, "longer than 256 bytes");
}

/* The table is the same whichever way a set is written. */
Test(cron, equivalent_forms)
{
    const char *pairs[][2] = {
        {"0 0 12 ? * MON-FRI", "0 0 12 ? * 2,3,4,5,6"},
        {"0 0/15 * * * ?", "0 0,15,30,45 * * * ?"},
        {"0 */20 * * * ?", "0 0-59/20 * * * ?"},
        {"0 0 0 ? JAN-MAR *", "0 0 0 ? 1-3 *"},
        {"0 0 0 ? * 7", "0 0 0 ? * SAT"},
        {"0 0 * * 0", "0 0 * * 7"},
        {"0 0 12 * * ?", "0 0 12 * * ? *"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        tn_cron a, b;
        cr_assert_eq(tn_cron_parse(pairs[i][0], &a, NULL), TN_OK);
        cr_assert_eq(tn_cron_parse(pairs[i][1], &b, NULL), TN_OK);
        cr_expect(memcmp(&a, &b, sizeof(a)) == 0, "%s vs %s", pairs[i][0], pairs[i][1]);
    }
}

/* ---- time zones ------------------------------------------------------------------------- */

Test(tz, unknown_refused)
{
    const char *bad[] = {"Mars/Olympus",   "Etc/Unknown",  "",      "Europe/Berlin ",
                         "europe/nowhere", "+19:00",       "08:00", "+8:00",
                         "GMT+8x",         "Europe/Bérlin"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tn_tz *tz = (tn_tz *)0x1;
        tn_errmsg e = {{0}};
        cr_expect_eq(tn_tz_open(bad[i], &tz, &e), TN_ERR_NOENT, "%s", bad[i]);
        cr_expect_eq(tz, (tn_tz *)0x1, "%s: output written on error", bad[i]);
        cr_expect(strstr(e.text, "is unknown") != NULL, "%s: %s", bad[i], e.text);
    }
}

Test(tz, offsets)
{
    struct {
        const char *name;
        int64_t at;
        int32_t off;
    } cases[] = {
        {"UTC", A, 0},
        {"+08:00", A, 8 * 3600},
        {"-05:30", A, -(5 * 3600 + 1800)},
        {"Europe/Berlin", utc(2026, 1, 15, 0, 0, 0), 3600},
        {"Europe/Berlin", utc(2026, 7, 1, 0, 0, 0), 7200},
        {"Europe/Berlin", utc(2026, 3, 29, 0, 59, 59), 3600},
        {"Europe/Berlin", utc(2026, 3, 29, 1, 0, 0), 7200},
        {"America/New_York", utc(2026, 1, 15, 0, 0, 0), -5 * 3600},
        {"America/New_York", utc(2026, 7, 1, 0, 0, 0), -4 * 3600},
        {"Asia/Kolkata", A, 5 * 3600 + 1800},
        {"Etc/UTC", A, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tn_tz *tz = tz_open(cases[i].name);
        int32_t off = 12345;
        cr_expect_eq(tn_tz_offset(tz, cases[i].at, &off), TN_OK);
        cr_expect_eq(off, cases[i].off, "%s: %d", cases[i].name, off);
        cr_expect_str_eq(tn_tz_name(tz), cases[i].name);
        tn_tz_free(tz);
    }
}

Test(tz, to_civil)
{
    tn_tz *tz = tz_open("Europe/Berlin");
    tn_civil c;
    cr_assert_eq(tn_tz_to_civil(tz, utc(2026, 3, 29, 0, 59, 59), &c), TN_OK);
    cr_expect(c.year == 2026 && c.month == 3 && c.day == 29 && c.hour == 1 && c.minute == 59 &&
              c.second == 59 && c.weekday == 0);
    cr_assert_eq(tn_tz_to_civil(tz, utc(2026, 3, 29, 1, 0, 0), &c), TN_OK);
    cr_expect(c.hour == 3 && c.minute == 0 && c.second == 0);
    /* 2026-12-31T23:30Z is 00:30 on Friday 2027-01-01 in Berlin */
    cr_assert_eq(tn_tz_to_civil(tz, utc(2026, 12, 31, 23, 30, 0) + 999999999, &c), TN_OK);
    cr_expect(c.year == 2027 && c.month == 1 && c.day == 1 && c.hour == 0 && c.minute == 30 &&
              c.second == 0 && c.weekday == 5);
    tn_tz_free(tz);
    tz = tz_open("UTC");
    cr_assert_eq(tn_tz_to_civil(tz, -1, &c), TN_OK); /* rounds toward the past */
    cr_expect(c.year == 1969 && c.month == 12 && c.day == 31 && c.hour == 23 &&
              c.second == 59 && c.weekday == 3);
    tn_tz_free(tz);
}

static void expect_resolve(const char *zone, tn_civil c, tn_tz_gap gap, tn_tz_overlap ov,
                           tn_err want_err, tn_tz_kind want_kind, int64_t want_ns)
{
    tn_tz *tz = tz_open(zone);
    int64_t ns = 7;
    tn_tz_kind kind = (tn_tz_kind)99;
    tn_err err = tn_tz_from_civil(tz, &c, gap, ov, &ns, &kind);
    char a[32], b[32];
    cr_expect_eq(err, want_err, "%s %02d:%02d: err %d", zone, c.hour, c.minute, err);
    cr_expect_eq(kind, want_kind, "%s %02d:%02d: kind %d", zone, c.hour, c.minute, kind);
    if (want_err == TN_OK)
        cr_expect_eq(ns, want_ns, "%s %02d:%02d: want %s, got %s", zone, c.hour, c.minute,
                     iso(want_ns, a), iso(ns, b));
    else
        cr_expect_eq(ns, 7, "output written on error");
    tn_tz_free(tz);
}

Test(tz, gap_and_overlap)
{
    tn_civil gap = {2026, 3, 29, 2, 30, 0, 0}, ovl = {2026, 10, 25, 2, 30, 0, 0};
    tn_civil ny_gap = {2026, 3, 8, 2, 30, 0, 0}, ny_ovl = {2026, 11, 1, 1, 30, 0, 0};
    tn_civil plain = {2026, 7, 1, 12, 0, 0, 0};
    const char *B = "Europe/Berlin", *N = "America/New_York";
    expect_resolve(B, gap, TN_TZ_GAP_SHIFT, 0, TN_OK, TN_TZ_GAP, utc(2026, 3, 29, 1, 30, 0));
    expect_resolve(B, gap, TN_TZ_GAP_NEXT_VALID, 0, TN_OK, TN_TZ_GAP,
                   utc(2026, 3, 29, 1, 0, 0));
    expect_resolve(B, gap, TN_TZ_GAP_REFUSE, 0, TN_ERR_NOENT, TN_TZ_GAP, 0);
    expect_resolve(B, ovl, 0, TN_TZ_OVERLAP_EARLIER, TN_OK, TN_TZ_OVERLAP,
                   utc(2026, 10, 25, 0, 30, 0));
    expect_resolve(B, ovl, 0, TN_TZ_OVERLAP_LATER, TN_OK, TN_TZ_OVERLAP,
                   utc(2026, 10, 25, 1, 30, 0));
    expect_resolve(B, ovl, 0, TN_TZ_OVERLAP_REFUSE, TN_ERR_EXISTS, TN_TZ_OVERLAP, 0);
    expect_resolve(B, plain, TN_TZ_GAP_REFUSE, TN_TZ_OVERLAP_REFUSE, TN_OK, TN_TZ_UNIQUE,
                   utc(2026, 7, 1, 10, 0, 0));
    expect_resolve(N, ny_gap, TN_TZ_GAP_SHIFT, 0, TN_OK, TN_TZ_GAP, utc(2026, 3, 8, 7, 30, 0));
    expect_resolve(N, ny_gap, TN_TZ_GAP_NEXT_VALID, 0, TN_OK, TN_TZ_GAP,
                   utc(2026, 3, 8, 7, 0, 0));
    expect_resolve(N, ny_ovl, 0, TN_TZ_OVERLAP_EARLIER, TN_OK, TN_TZ_OVERLAP,
                   utc(2026, 11, 1, 5, 30, 0));
    expect_resolve(N, ny_ovl, 0, TN_TZ_OVERLAP_LATER, TN_OK, TN_TZ_OVERLAP,
                   utc(2026, 11, 1, 6, 30, 0));
    tn_civil midnight = {2026, 1, 1, 0, 0, 0, 0};
    expect_resolve("-05:30", midnight, TN_TZ_GAP_REFUSE, TN_TZ_OVERLAP_REFUSE, TN_OK,
                   TN_TZ_UNIQUE, utc(2026, 1, 1, 5, 30, 0));
    expect_resolve("+08:00", midnight, 0, 0, TN_OK, TN_TZ_UNIQUE, utc(2025, 12, 31, 16, 0, 0));
}

Test(tz, invalid_civil)
{
    tn_tz *tz = tz_open("UTC");
    tn_civil bad[] = {{2026, 2, 29, 0, 0, 0, 0},
                      {2026, 13, 1, 0, 0, 0, 0},
                      {2026, 1, 1, 24, 0, 0, 0},
                      {2026, 1, 1, 0, 60, 0, 0},
                      {2026, 1, 0, 0, 0, 0, 0}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ns;
        cr_expect_eq(tn_tz_from_civil(tz, &bad[i], 0, 0, &ns, NULL), TN_ERR_INVAL, "case %zu",
                     i);
    }
    tn_civil far = {9000, 1, 1, 0, 0, 0, 0}, farther = {2000000000, 1, 1, 0, 0, 0, 0};
    int64_t ns;
    cr_expect_eq(tn_tz_from_civil(tz, &far, 0, 0, &ns, NULL), TN_ERR_TOOBIG);
    tn_tz_free(tz);
    tz = tz_open("Europe/Berlin");
    cr_expect_eq(tn_tz_from_civil(tz, &far, 0, 0, &ns, NULL), TN_ERR_TOOBIG);
    cr_expect_eq(tn_tz_from_civil(tz, &farther, 0, 0, &ns, NULL), TN_ERR_TOOBIG);
    tn_tz_free(tz);
}

/* One zone shared by several threads gives every thread the answers it gives one. */
static tn_tz *shared_tz;

static void *hammer(void *arg)
{
    intptr_t bad = 0;
    for (int i = 0; i < 2000; i++) {
        int32_t off;
        int64_t at = (i % 2) ? utc(2026, 1, 15, 0, 0, 0) : utc(2026, 7, 1, 0, 0, 0);
        if (tn_tz_offset(shared_tz, at, &off) || off != ((i % 2) ? 3600 : 7200))
            bad++;
        tn_civil c = {2026, 10, 25, 2, 30, 0, 0};
        int64_t ns;
        if (tn_tz_from_civil(shared_tz, &c, 0, TN_TZ_OVERLAP_LATER, &ns, NULL) ||
            ns != utc(2026, 10, 25, 1, 30, 0))
            bad++;
    }
    return (void *)bad;
}

Test(tz, shared_between_threads)
{
    shared_tz = tz_open("Europe/Berlin");
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        cr_expect_eq((intptr_t)bad, 0);
    }
    tn_tz_free(shared_tz);
}

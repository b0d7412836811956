/* Tests of cron expressions and time zones: the corpus (tests/cron_corpus.txt: expressions
 * with their next fire times worked out by hand, and wrong ones with their errors), DST
 * days, consistency of the fire sequence, and zones. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
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

/* ---- the corpus (tests/cron_corpus.txt) ------------------------------------------------- */

/* "2026-03-29T03:00:00+02:00" or "...Z" into unix ns, and the offset written (seconds east),
 * *has_off false for Z. False when the text is not that. */
static bool parse_instant(const char *s, int64_t *ns, int32_t *off, bool *has_off)
{
    int y, mo, d, h, mi, sec, n = 0, oh, om;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return false;
    *off = 0;
    *has_off = s[19] != 'Z';
    if (!*has_off && s[20] == 0) {
        *ns = utc(y, mo, d, h, mi, sec);
        return true;
    }
    if ((s[19] != '+' && s[19] != '-') || sscanf(s + 20, "%2d:%2d", &oh, &om) != 2 ||
        strlen(s) != 25)
        return false;
    *off = (s[19] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    *ns = utc(y, mo, d, h, mi, sec) - (int64_t)*off * 1000000000LL;
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n'))
        s[--n] = 0;
    return s;
}

/* "! EXPR | MESSAGE": parsing EXPR fails with exactly MESSAGE, and writes nothing. */
static void corpus_error(int ln, char *line)
{
    char *bar = strchr(line, '|');
    cr_assert(bar, "corpus line %d: no '|'", ln);
    *bar = 0;
    const char *expr = trim(line + 1), *msg = trim(bar + 1);
    tn_cron c, before;
    memset(&c, 0x5a, sizeof(c));
    before = c;
    tn_errmsg e = {{0}};
    cr_expect_eq(tn_cron_parse(expr, &c, &e), TN_ERR_PARSE, "line %d: \"%s\" parsed", ln, expr);
    cr_expect_str_eq(e.text, msg, "line %d", ln);
    cr_expect(memcmp(&c, &before, sizeof(c)) == 0, "line %d: output written on error", ln);
}

/* "EXPR | ZONE | AFTER | FIRE...": each fire time is the next after the one before; asked
 * one nanosecond before a fire time, the answer is that fire time. */
static void corpus_fires(int ln, char *line)
{
    char *f[4] = {line, NULL, NULL, NULL};
    for (int i = 1; i < 4; i++) {
        f[i] = strchr(f[i - 1], '|');
        cr_assert(f[i], "corpus line %d: expected 4 fields split by '|'", ln);
        *f[i]++ = 0;
    }
    const char *expr = trim(f[0]), *zone = trim(f[1]);
    tn_cron c;
    tn_errmsg e = {{0}};
    cr_assert_eq(tn_cron_parse(expr, &c, &e), TN_OK, "line %d: %s", ln, e.text);
    tn_tz *tz = tz_open(zone);
    int64_t at, want;
    int32_t off, zoff;
    bool has_off;
    cr_assert(parse_instant(trim(f[2]), &at, &off, &has_off), "line %d: bad instant", ln);
    int count = 0;
    for (char *save = NULL, *w = strtok_r(trim(f[3]), " ", &save); w;
         w = strtok_r(NULL, " ", &save), count++) {
        int64_t got = 0, again = 0;
        e.text[0] = 0;
        tn_err err = tn_cron_next(&c, tz, at, &got, &e);
        char a[32], g[32], x[32];
        if (strcmp(w, "never") == 0) {
            cr_expect_eq(err, TN_ERR_NOENT, "line %d: \"%s\" after %s: want never, got %s", ln,
                         expr, iso(at, a), err ? e.text : iso(got, g));
            cr_expect(strstr(e.text, "never fires") != NULL, "line %d: %s", ln, e.text);
            cr_assert_null(strtok_r(NULL, " ", &save), "line %d: a fire time after never", ln);
            count++;
            break;
        }
        cr_assert(parse_instant(w, &want, &off, &has_off), "line %d: bad instant %s", ln, w);
        cr_assert_eq(tn_tz_offset(tz, want, &zoff), TN_OK);
        cr_expect(!has_off || off == zoff, "line %d: %s: %s's offset there is %d s", ln, w,
                  zone, zoff);
        cr_expect_eq(err, TN_OK, "line %d: %s", ln, e.text);
        cr_expect_eq(got, want, "line %d: \"%s\" in %s after %s: want %s (%s), got %s", ln,
                     expr, zone, iso(at, a), iso(want, x), w, iso(got, g));
        cr_expect_eq(tn_cron_next(&c, tz, want - 1, &again, NULL), TN_OK);
        cr_expect_eq(again, want, "line %d: asked 1 ns before %s", ln, w);
        at = want;
    }
    cr_expect_geq(count, 1, "line %d: no fire times", ln);
    tn_tz_free(tz);
}

Test(cron, corpus)
{
    const char *src = getenv("TERN_SRC");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/cron_corpus.txt", src ? src : "..");
    FILE *fp = fopen(path, "r");
    cr_assert(fp, "%s: cannot open (TERN_SRC names the source tree)", path);
    char line[1024];
    int ln = 0, fires = 0, errors = 0;
    while (fgets(line, sizeof(line), fp)) {
        ln++;
        char *s = trim(line);
        if (*s == 0 || *s == '#')
            continue;
        if (*s == '!')
            corpus_error(ln, s), errors++;
        else
            corpus_fires(ln, s), fires++;
    }
    fclose(fp);
    /* the whole file was read: a truncated corpus would pass quietly */
    cr_expect_geq(fires, 100, "%d expression lines", fires);
    cr_expect_geq(errors, 25, "%d error lines", errors);
}

/* What the corpus cannot write: sub-second instants, and asking from long before 1970. */
Test(cron, edges)
{
    const row rows[] = {
        {"* * * * * ? *", "UTC", A + 500000000LL, A + 1000000000LL},
        {"* * * * * ? *", "UTC", A - 1, A},
        {"0 30 2 * * ?", "Europe/Berlin", utc(2026, 3, 29, 0, 59, 59) + 999999999,
         utc(2026, 3, 30, 0, 30, 0)},
        {"0 0 0 * * ?", "UTC", utc(2261, 12, 31, 0, 0, 0), 0},
        {"0 0 0 1 1 ? 2030", "UTC", -1000000000000000000LL, utc(2030, 1, 1, 0, 0, 0)},
        {"0 0 1 * * ?", "UTC", -1000000000000000000LL, utc(1970, 1, 1, 1, 0, 0)},
    };
    CHECK(rows);
}

/* On a day clocks spring forward, every-minute fires once for each civil minute that
 * exists (23 hours' worth); on a day they fall back, once per civil minute too (24 hours'
 * worth, not 25): the repeated hour fires nothing the second time. */
static int fires_between(const char *expr, const char *zone, int64_t from, int64_t to)
{
    tn_cron c;
    cr_assert_eq(tn_cron_parse(expr, &c, NULL), TN_OK);
    tn_tz *tz = tz_open(zone);
    int n = 0;
    for (int64_t at = from, next; tn_cron_next(&c, tz, at, &next, NULL) == TN_OK && next < to;
         at = next)
        n++;
    tn_tz_free(tz);
    return n;
}

Test(cron, dst_days_fire_each_civil_time_once)
{
    const int64_t H = 3600000000000LL;
    /* local midnights: Berlin 2026-03-29 00:00 CET = 03-28 23:00Z; 03-30 00:00 CEST = 03-29
     * 22:00Z; 10-25 00:00 CEST = 10-24 22:00Z; 10-26 00:00 CET = 10-25 23:00Z. */
    int64_t bs = utc(2026, 3, 28, 23, 0, 0) - 1, be = utc(2026, 3, 29, 22, 0, 0) - 1;
    int64_t bf = utc(2026, 10, 24, 22, 0, 0) - 1, bfe = utc(2026, 10, 25, 23, 0, 0) - 1;
    cr_expect_eq(fires_between("0 * * * * ?", "Europe/Berlin", bs, be + 1), 23 * 60);
    cr_expect_eq(fires_between("0 * * * * ?", "Europe/Berlin", bf, bfe + 1), 24 * 60);
    cr_expect_eq(fires_between("0 0 * * * ?", "Europe/Berlin", bs, be + 1), 23);
    cr_expect_eq(fires_between("0 0 * * * ?", "Europe/Berlin", bf, bfe + 1), 24);
    cr_expect_eq(fires_between("0 0/15 * * * ?", "Europe/Berlin", bf, bfe + 1), 96);
    cr_expect_eq(fires_between("0 30 2 * * ?", "Europe/Berlin", bs, be + 1), 0);
    cr_expect_eq(fires_between("0 30 2 * * ?", "Europe/Berlin", bf, bfe + 1), 1);
    /* New York: 2026-03-08 00:00 EST = 05:00Z, 03-09 00:00 EDT = 04:00Z; 11-01 00:00 EDT =
     * 04:00Z, 11-02 00:00 EST = 05:00Z. */
    int64_t ns = utc(2026, 3, 8, 5, 0, 0) - 1, nf = utc(2026, 11, 1, 4, 0, 0) - 1;
    cr_expect_eq(fires_between("* * * * *", "America/New_York", ns, ns + 1 + 23 * H), 23 * 60);
    cr_expect_eq(fires_between("* * * * *", "America/New_York", nf, nf + 1 + 25 * H), 24 * 60);
    cr_expect_eq(fires_between("0 0 * * * ?", "America/New_York", nf, nf + 1 + 25 * H), 24);
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

/* ---- errors the corpus cannot hold -------------------------------------------------------- */

Test(cron, errors)
{
    tn_cron c;
    tn_errmsg e = {{0}};
    char big[400];
    memset(big, '1', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    cr_expect_eq(tn_cron_parse(big, &c, &e), TN_ERR_TOOBIG);
    cr_expect(strstr(e.text, "longer than 256 bytes") != NULL, "%s", e.text);
    cr_expect_eq(tn_cron_parse("0 0 12 * * \x01", &c, &e), TN_ERR_PARSE);
    cr_expect_str_eq(e.text,
                     "cron: \"0 0 12 * * \x01\": position 12: expected a number or name "
                     "in the day-of-week field, found byte 0x01");
    cr_expect_eq(tn_cron_parse("\t0 0 12 * * ?", &c, &e), TN_OK); /* tabs separate too */
    cr_expect_eq(tn_cron_parse(NULL, &c, &e), TN_ERR_INVAL);
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

/* Tests of task parameters: the tn_kv map, built-ins, date arithmetic, substitution and
 * quoting, precedence, setValue scanning, switch conditions, and malformed input. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "params.h"

/* ---- helpers -------------------------------------------------------------------------- */

static int64_t utc_ns(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000000000LL;
}

/* The fixed context of most tests: 2026-11-22T03:04:05Z (a Sunday), in UTC. */
static tn_param_ctx ctx_at(int64_t ns)
{
    tn_param_ctx c = {.sched_ns = ns,
                      .now_ns = utc_ns(2001, 1, 1, 0, 0, 0),
                      .wf_id = 42,
                      .task_id = 7,
                      .tz = "UTC"};
    return c;
}

static tn_param_ctx base_ctx(void)
{
    return ctx_at(utc_ns(2026, 11, 22, 3, 4, 5));
}

/* A map from NULL-terminated key, value pairs. */
static tn_kv *kv_of(const char *k, ...)
{
    tn_kv *kv = tn_kv_new();
    cr_assert_not_null(kv);
    va_list ap;
    va_start(ap, k);
    for (; k; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        cr_assert_eq(tn_kv_set(kv, k, v), TN_OK, "set %s", k);
    }
    va_end(ap);
    return kv;
}

/* Definition params (sorted, owned by the test) from NULL-terminated pairs. */
typedef struct dkv {
    tn_def_kvs kvs;
    tn_def_kv items[64];
} dkv;

static int dkv_cmp(const void *a, const void *b)
{
    return strcmp(((const tn_def_kv *)a)->key, ((const tn_def_kv *)b)->key);
}

static dkv *def_of(const char *k, ...)
{
    dkv *d = calloc(1, sizeof(*d));
    cr_assert_not_null(d);
    va_list ap;
    va_start(ap, k);
    for (; k; k = va_arg(ap, const char *)) {
        cr_assert(d->kvs.n < 64);
        d->items[d->kvs.n].key = (char *)k;
        d->items[d->kvs.n].value = (char *)va_arg(ap, const char *);
        d->kvs.n++;
    }
    va_end(ap);
    qsort(d->items, d->kvs.n, sizeof(d->items[0]), dkv_cmp);
    d->kvs.items = d->items;
    return d;
}

static void expect_sub(const char *in, const tn_kv *vars, const tn_param_ctx *c, unsigned flags,
                       const char *want)
{
    char *out = NULL;
    tn_errmsg m = {{0}};
    tn_err err = tn_params_subst(in, vars, c, flags, &out, &m);
    cr_assert_eq(err, TN_OK, "%s: %s: %s", in, tn_errname(err), m.text);
    cr_assert_str_eq(out, want, "%s", in);
    free(out);
}

static void expect_date(const tn_param_ctx *c, const char *in, const char *want)
{
    expect_sub(in, NULL, c, 0, want);
}

static tn_err sub_err(const char *in, const tn_kv *vars, const tn_param_ctx *c, tn_errmsg *m)
{
    char *out = NULL;
    memset(m, 0, sizeof(*m));
    tn_err err = tn_params_subst(in, vars, c, 0, &out, m);
    cr_assert_null(out, "%s: output written on error", in);
    return err;
}

static void expect_sub_fail(const char *in, tn_err want, const char *text)
{
    tn_param_ctx c = base_ctx();
    tn_errmsg m;
    tn_err err = sub_err(in, NULL, &c, &m);
    cr_assert_eq(err, want, "%s: got %s: %s", in, tn_errname(err), m.text);
    cr_assert(strstr(m.text, text), "%s: message \"%s\" lacks \"%s\"", in, m.text, text);
}

static char *repeat(char ch, size_t n)
{
    char *s = malloc(n + 1);
    cr_assert_not_null(s);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

/* ---- tn_kv ---------------------------------------------------------------------------- */

Test(params, kv_set_get_replace_order)
{
    tn_kv *kv = tn_kv_new();
    cr_assert_eq(tn_kv_len(kv), 0);
    cr_assert_eq(tn_kv_set(kv, "zeta", "1"), TN_OK);
    cr_assert_eq(tn_kv_set(kv, "alpha", "2"), TN_OK);
    cr_assert_eq(tn_kv_set(kv, "mid.x-y_z", ""), TN_OK);
    cr_assert_eq(tn_kv_set(kv, "zeta", "3"), TN_OK);
    cr_assert_eq(tn_kv_len(kv), 3);
    cr_assert_str_eq(tn_kv_key(kv, 0), "alpha");
    cr_assert_str_eq(tn_kv_key(kv, 1), "mid.x-y_z");
    cr_assert_str_eq(tn_kv_key(kv, 2), "zeta");
    cr_assert_str_eq(tn_kv_value(kv, 2), "3");
    cr_assert_str_eq(tn_kv_get(kv, "mid.x-y_z"), "");
    cr_assert_null(tn_kv_get(kv, "alph"));
    cr_assert_null(tn_kv_get(kv, "alphaa"));
    cr_assert_str_eq(tn_kv_getn(kv, "alpha+junk", 5), "2");
    cr_assert_null(tn_kv_key(kv, 3));
    cr_assert(tn_kv_del(kv, "alpha"));
    cr_assert(!tn_kv_del(kv, "alpha"));
    cr_assert_eq(tn_kv_len(kv), 2);
    cr_assert_null(tn_kv_get(NULL, "x"));
    cr_assert_eq(tn_kv_len(NULL), 0);
    tn_kv_free(kv);
    tn_kv_free(NULL);
}

Test(params, kv_bounds_leave_map_unchanged)
{
    tn_kv *kv = kv_of("a", "1", NULL);
    cr_assert_eq(tn_kv_set(kv, "", "x"), TN_ERR_INVAL);
    cr_assert_eq(tn_kv_set(kv, "bad key", "x"), TN_ERR_INVAL);
    cr_assert_eq(tn_kv_set(kv, "k/x", "x"), TN_ERR_INVAL);
    char *long_key = repeat('k', 65);
    cr_assert_eq(tn_kv_set(kv, long_key, "x"), TN_ERR_INVAL);
    long_key[64] = '\0';
    cr_assert_eq(tn_kv_set(kv, long_key, "x"), TN_OK);
    free(long_key);
    char *big = repeat('v', TN_PARAMS_MAX_VALUE + 1);
    cr_assert_eq(tn_kv_set(kv, "a", big), TN_ERR_TOOBIG);
    cr_assert_str_eq(tn_kv_get(kv, "a"), "1");
    big[TN_PARAMS_MAX_VALUE] = '\0';
    cr_assert_eq(tn_kv_set(kv, "a", big), TN_OK);
    free(big);
    cr_assert_eq(tn_kv_setn(kv, "b", 1, "x\0y", 3), TN_ERR_INVAL);
    cr_assert_eq(tn_kv_setn(kv, "b", 1, NULL, 0), TN_OK);
    cr_assert_str_eq(tn_kv_get(kv, "b"), "");
    cr_assert_eq(tn_kv_len(kv), 3);
    tn_kv_free(kv);
}

Test(params, kv_copy_merge_from_def)
{
    tn_kv *a = kv_of("a", "1", "c", "3", "e", "5", NULL);
    tn_kv *b = kv_of("b", "two", "c", "three", "f", "six", NULL);
    tn_kv *copy = NULL;
    cr_assert_eq(tn_kv_copy(a, &copy), TN_OK);
    cr_assert_eq(tn_kv_merge(a, b), TN_OK);
    cr_assert_eq(tn_kv_merge(a, NULL), TN_OK);
    const char *want[][2] = {
        {"a", "1"}, {"b", "two"}, {"c", "three"}, {"e", "5"}, {"f", "six"}};
    cr_assert_eq(tn_kv_len(a), 5);
    for (uint32_t i = 0; i < 5; i++) {
        cr_assert_str_eq(tn_kv_key(a, i), want[i][0]);
        cr_assert_str_eq(tn_kv_value(a, i), want[i][1]);
    }
    /* the copy is deep and untouched; src is untouched */
    cr_assert_str_eq(tn_kv_get(copy, "c"), "3");
    cr_assert_eq(tn_kv_len(copy), 3);
    cr_assert_str_eq(tn_kv_get(b, "c"), "three");
    tn_kv *empty = NULL;
    cr_assert_eq(tn_kv_copy(NULL, &empty), TN_OK);
    cr_assert_eq(tn_kv_len(empty), 0);
    cr_assert_eq(tn_kv_merge(empty, b), TN_OK);
    cr_assert_eq(tn_kv_len(empty), 3);

    dkv *d = def_of("x", "${y}", "w", "", NULL);
    tn_kv *fd = NULL;
    cr_assert_eq(tn_kv_from_def(&d->kvs, &fd), TN_OK);
    cr_assert_str_eq(tn_kv_get(fd, "x"), "${y}");
    cr_assert_str_eq(tn_kv_get(fd, "w"), "");
    free(d);
    tn_kv_free(fd);
    tn_kv_free(empty);
    tn_kv_free(copy);
    tn_kv_free(a);
    tn_kv_free(b);
}

Test(params, kv_merge_large_interleaved)
{
    tn_kv *a = tn_kv_new(), *b = tn_kv_new();
    char k[32], v[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%05d", i);
        snprintf(v, sizeof(v), "%s%d", i % 2 ? "b" : "a", i);
        cr_assert_eq(tn_kv_set(i % 2 ? b : a, k, v), TN_OK);
        if (i % 3 == 0) /* some keys in both: b wins */
            cr_assert_eq(tn_kv_set(b, k, "B"), TN_OK);
    }
    cr_assert_eq(tn_kv_merge(a, b), TN_OK);
    cr_assert_eq(tn_kv_len(a), 2000);
    for (uint32_t i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "k%05u", i);
        cr_assert_str_eq(tn_kv_key(a, i), k);
        if (i % 3 == 0)
            cr_assert_str_eq(tn_kv_value(a, i), "B");
        else
            cr_assert_eq(tn_kv_value(a, i)[0], i % 2 ? 'b' : 'a');
    }
    tn_kv_free(a);
    tn_kv_free(b);
}

/* ---- built-ins ------------------------------------------------------------------------ */

Test(params, builtins)
{
    tn_param_ctx c = base_ctx();
    expect_sub("${system.biz.date}", NULL, &c, 0, "20261121");
    expect_sub("${system.biz.curdate}", NULL, &c, 0, "20261122");
    expect_sub("${system.datetime}", NULL, &c, 0, "20261122030405");
    expect_sub("${system.workflow.instance.id}/${system.task.instance.id}", NULL, &c, 0,
               "42/7");

    /* the day before crosses month, year and leap-day boundaries */
    c = ctx_at(utc_ns(2026, 1, 1, 0, 0, 0));
    expect_sub("${system.biz.date} ${system.biz.curdate}", NULL, &c, 0, "20251231 20260101");
    c = ctx_at(utc_ns(2024, 3, 1, 23, 59, 59));
    expect_sub("${system.biz.date} ${system.datetime}", NULL, &c, 0, "20240229 20240301235959");

    /* no schedule time: now is used */
    c = ctx_at(0);
    expect_sub("${system.datetime}", NULL, &c, 0, "20010101000000");

    /* vars never shadow built-ins, but other system.* names come from vars */
    tn_kv *vars = kv_of("system.biz.date", "shadow", "system.custom", "mine", NULL);
    c = base_ctx();
    expect_sub("${system.biz.date} ${system.custom}", vars, &c, 0, "20261121 mine");
    /* without a context there are no built-ins */
    expect_sub("${system.biz.date} ${system.datetime}", vars, NULL, 0,
               "shadow ${system.datetime}");
    tn_kv_free(vars);
}

Test(params, time_zones)
{
    tn_param_ctx c = ctx_at(utc_ns(2026, 11, 22, 20, 0, 0));
    c.tz = "+08:00";
    expect_sub("${system.datetime} ${system.biz.date}", NULL, &c, 0, "20261123040000 20261122");
    c.tz = "-0530";
    expect_sub("${system.datetime}", NULL, &c, 0, "20261122143000");
    c.tz = "+09";
    expect_date(&c, "$[yyyy-MM-dd HH:mm]", "2026-11-23 05:00");
    c.tz = "GMT";
    expect_date(&c, "$[HHmmss]", "200000");

    /* NULL: the process's local time */
    setenv("TZ", "JST-9", 1);
    tzset();
    c.tz = NULL;
    expect_sub("${system.datetime}", NULL, &c, 0, "20261123050000");
    expect_date(&c, "$[unixtime(yyyyMMddHHmmss)]", "1795377600");

    tn_errmsg m;
    const char *bad[] = {"Mars/Olympus_Mons", "", "+8", "+08:", "+24:00", "+08:60", "08:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c.tz = bad[i];
        cr_assert_eq(sub_err("plain", NULL, &c, &m), TN_ERR_INVAL, "tz %s", bad[i]);
        cr_assert(strstr(m.text, "time zone"), "%s", m.text);
    }
}

/* IANA names go through ICU: the zone's rules, DST included, for built-ins and $[...]. */
Test(params, iana_time_zones)
{
    /* 2026-11-22 20:00 UTC is 2026-11-23 04:00 in Shanghai (UTC+8, no DST) */
    tn_param_ctx c = ctx_at(utc_ns(2026, 11, 22, 20, 0, 0));
    c.tz = "Asia/Shanghai";
    expect_sub("${system.datetime} ${system.biz.date} ${system.biz.curdate}", NULL, &c, 0,
               "20261123040000 20261122 20261123");
    expect_date(&c, "$[yyyyMMdd-1] $[HH]", "20261122 04");
    expect_date(&c, "$[unixtime(yyyyMMddHHmmss)]", "1795377600");
    expect_date(&c, "$[month_begin(yyyyMMdd,0)]", "20261101");
    /* New York: EDT (-4) in July, EST (-5) in January, from the same code path */
    c = ctx_at(utc_ns(2026, 7, 1, 12, 0, 0));
    c.tz = "America/New_York";
    expect_date(&c, "$[yyyyMMddHH]", "2026070108");
    expect_date(&c, "$[unixtime(yyyyMMddHHmmss)]", "1782907200");
    c = ctx_at(utc_ns(2026, 1, 15, 12, 0, 0));
    c.tz = "America/New_York";
    expect_date(&c, "$[HH]", "07");
    /* across the spring-forward night: a day is exactly 24 h (E is exact arithmetic on
     * seconds), so 12:00 EDT minus one day reads 11:00 EST */
    c = ctx_at(utc_ns(2026, 3, 8, 16, 0, 0)); /* 12:00 EDT */
    c.tz = "America/New_York";
    expect_date(&c, "$[yyyyMMddHH-1]", "2026030711");
    tn_errmsg m;
    c.tz = "Asia/Nowhere";
    cr_assert_eq(sub_err("$[yyyyMMdd]", NULL, &c, &m), TN_ERR_INVAL);
    cr_assert(strstr(m.text, "Asia/Nowhere") && strstr(m.text, "time zone"), "%s", m.text);
}

/* ---- date arithmetic ------------------------------------------------------------------ */

Test(params, date_basic)
{
    tn_param_ctx c = base_ctx();
    expect_date(&c, "$[yyyyMMdd]", "20261122");
    expect_date(&c, "$[yyyyMMdd-1]", "20261121");
    expect_date(&c, "$[yyyy-MM-dd+7]", "2026-11-29");
    expect_date(&c, "$[yyyy-MM-dd-1]", "2026-11-21");
    expect_date(&c, "$[HHmmss]", "030405");
    expect_date(&c, "$[yyyyMMddHHmmss-1/24]", "20261122020405");
    expect_date(&c, "$[yyyyMMddHHmmss+1/24/60]", "20261122030505");
    expect_date(&c, "$[HH:mm:ss+90/24/60]", "04:34:05");
    expect_date(&c, "$[yyyyMMdd+7*2]", "20261206");
    expect_date(&c, "$[yyyyMMdd-7*2]", "20261108");
    expect_date(&c, "$[yyyyMMdd+(1+1)*3]", "20261128");
    expect_date(&c, "$[yyyyMMddHHmmss-1/24/60/60]", "20261122030404");
    expect_date(&c, "$[yyyyMMdd - 1]", "20261122 - 1"); /* no digit after the sign: literal */
    expect_date(&c, "$[yyyy/MM/dd'T'HH]", "2026/11/22'T'03");
    expect_date(&c, "$[yyyy]test1$[yyyy:***]", "2026test12026:***");
    expect_date(&c, "$[yyyyy MMM d]", "2026y 11M d");
    expect_date(&c, "$[yyyy(MM)]", "2026(11)");
    expect_date(&c, "a $[MM] b $[dd] c", "a 11 b 22 c");
}

Test(params, date_functions)
{
    tn_param_ctx c = base_ctx(); /* Sunday 2026-11-22 */
    expect_date(&c, "$[add_months(yyyyMMdd,-1)]", "20261022");
    expect_date(&c, "$[add_months(yyyyMMdd,12*2)]", "20281122");
    expect_date(&c, "$[add_months(yyyy-MM-dd HH:mm, 2)]", "2027-01-22 03:04");
    expect_date(&c, "$[this_day(yyyy-MM-dd)]", "2026-11-22");
    expect_date(&c, "$[last_day(yyyy-MM-dd)]", "2026-11-21");
    expect_date(&c, "$[month_begin(yyyyMMdd,0)]", "20261101");
    expect_date(&c, "$[month_begin(yyyyMMdd,-1)]", "20261031");
    expect_date(&c, "$[month_end(yyyyMMdd,0)]", "20261130");
    expect_date(&c, "$[month_end(yyyyMMdd,-1)]", "20261129");
    expect_date(&c, "$[week_begin(yyyyMMdd,0)]", "20261116"); /* the Monday before */
    expect_date(&c, "$[week_end(yyyyMMdd,0)]", "20261122");   /* Sunday itself */
    expect_date(&c, "$[week_first_day(yyyyMMdd,1)]", "20261123");
    expect_date(&c, "$[week_last_day(yyyyMMdd,-1)]", "20261115");
    expect_date(&c, "$[month_first_day(yyyy-MM-dd)]", "2026-11-01");
    expect_date(&c, "$[month_last_day(yyyy-MM-dd,3)]", "2027-02-28");
    expect_date(&c, "$[year_week(yyyy-MM-dd)]", "2026-47");
    expect_date(&c, "$[year_week(yyyyMMdd,7)]", "202647");
    expect_date(&c, "$[ add_months( yyyyMMdd , -1 ) ]", "20261022");
    expect_date(&c, "$[this_day(HH:mm:ss)]", "03:04:05"); /* time of day kept */
}

/* DolphinScheduler's own expectations (its tests run on 2022-08-26 00:00 in UTC+8). */
Test(params, date_dolphinscheduler_cases)
{
    tn_param_ctx c = ctx_at(utc_ns(2022, 8, 25, 16, 0, 0));
    c.tz = "+08:00";
    expect_date(&c,
                "$[yyyy-MM-dd-1],$[month_begin(yyyyMMdd, 1)],$[month_end(yyyyMMdd, -1)],"
                "$[week_begin(yyyyMMdd, 1)],$[week_end(yyyyMMdd, -1)]",
                "2022-08-25,20220802,20220830,20220823,20220827");
    expect_date(&c, "$[this_day(yyyyMMdd)] $[last_day(yyyy-MM-dd)]", "20220826 2022-08-25");
    expect_date(&c, "$[year_week(yyyy-MM-dd)] $[year_week(yyyyMMdd)]", "2022-34 202234");
    expect_date(&c, "$[year_week(yyyy-MM-dd,5)] $[year_week(yyyyMMdd,5)]", "2022-35 202235");
    expect_date(&c, "$[month_first_day(yyyy-MM-dd,-1)] $[month_last_day(yyyyMMdd,-1)]",
                "2022-07-01 20220731");
    expect_date(&c, "$[week_first_day(yyyy-MM-dd,0)] $[week_last_day(yyyyMMdd,0)]",
                "2022-08-22 20220828");
    expect_date(&c, "$[timestamp(yyyyMMddHHmmss)]", "1661443200");
    expect_date(&c, "$[timestamp(yyyyMMddHHmmss-1)]", "1661356800");
    expect_date(&c, "$[unixtime(yyyyMMddHHmmss-1)]", "1661356800");
    expect_date(&c, "$[milli_unixtime(yyyyMMddHHmmss-1)]", "1661356800000");
    expect_date(&c, "$[mirco_unixtime(yyyyMMddHHmmss-1)]", "1661356800000000");
    expect_date(&c, "$[micro_unixtime(yyyyMMddHHmmss-1)]", "1661356800000000");
    expect_date(&c, "$[nano_unixtime(yyyyMMddHHmmss-1)]", "1661356800000000000");
    expect_date(&c, "$[unixtime(week_begin(yyyyMMddHHmmss, 1))]", "1661184000");
    expect_date(&c, "$[milli_unixtime(week_begin(yyyyMMddHHmmss, 1))]", "1661184000000");
    expect_date(&c, "$[unixtime(yyyyMMdd000000)]", "1661443200");
}

Test(params, date_boundaries_and_leap_years)
{
    tn_param_ctx c = ctx_at(utc_ns(2024, 2, 29, 12, 0, 0));
    expect_date(&c, "$[yyyyMMdd+1]", "20240301");
    expect_date(&c, "$[yyyyMMdd+365]", "20250228");
    expect_date(&c, "$[add_months(yyyyMMdd,12)]", "20250228");
    expect_date(&c, "$[add_months(yyyyMMdd,48)]", "20280229");
    expect_date(&c, "$[month_end(yyyyMMdd,0)] $[month_last_day(yyyy-MM-dd)]",
                "20240229 2024-02-29");

    c = ctx_at(utc_ns(2024, 3, 1, 0, 0, 0));
    expect_date(&c, "$[yyyyMMdd-1] $[last_day(yyyyMMdd)]", "20240229 20240229");
    expect_date(&c, "$[month_last_day(yyyyMMdd,-1)] $[month_end(yyyyMMdd,-31)]",
                "20240229 20240229");

    c = ctx_at(utc_ns(2025, 2, 10, 0, 0, 0));
    expect_date(&c, "$[month_last_day(yyyy-MM-dd)] $[month_end(yyyyMMdd,0)]",
                "2025-02-28 20250228");

    /* add_months from the 31st clamps to the month's last day */
    c = ctx_at(utc_ns(2026, 1, 31, 0, 0, 0));
    expect_date(&c, "$[add_months(yyyyMMdd,1)] $[add_months(yyyyMMdd,-2)]",
                "20260228 20251130");
    c = ctx_at(utc_ns(2024, 1, 31, 0, 0, 0));
    expect_date(&c, "$[add_months(yyyyMMdd,1)]", "20240229");
    c = ctx_at(utc_ns(2024, 3, 31, 0, 0, 0));
    expect_date(&c, "$[add_months(yyyyMMdd,-1)]", "20240229");

    /* year boundaries */
    c = ctx_at(utc_ns(2025, 12, 31, 23, 30, 0));
    expect_date(&c, "$[yyyyMMdd+1] $[yyyyMMddHHmm+1/24]", "20260101 202601010030");
    expect_date(&c, "$[add_months(yyyy-MM,1)] $[month_begin(yyyyMMdd,31)]", "2026-01 20260101");
    c = ctx_at(utc_ns(2026, 1, 1, 0, 0, 0));
    expect_date(&c, "$[week_begin(yyyyMMdd,0)] $[yyyyMMdd-1]", "20251229 20251231");

    /* week_begin on a Sunday is the Monday before; week_end is the day itself */
    c = ctx_at(utc_ns(2024, 3, 3, 9, 0, 0)); /* Sunday */
    expect_date(&c, "$[week_begin(yyyyMMdd,0)] $[week_end(yyyyMMdd,0)]", "20240226 20240303");
    c = ctx_at(utc_ns(2024, 2, 26, 9, 0, 0)); /* Monday */
    expect_date(&c, "$[week_begin(yyyyMMdd,0)] $[week_end(yyyyMMdd,0)]", "20240226 20240303");

    /* weeks at the turn of the year belong to the year that holds most of them */
    c = ctx_at(utc_ns(2024, 12, 30, 0, 0, 0));
    expect_date(&c, "$[year_week(yyyy-MM-dd)]", "2025-01");
    c = ctx_at(utc_ns(2021, 1, 1, 0, 0, 0));
    expect_date(&c, "$[year_week(yyyy-MM-dd)]", "2020-53");
    c = ctx_at(utc_ns(2026, 1, 1, 0, 0, 0));
    expect_date(&c, "$[year_week(yyyyMMdd)]", "202601");

    /* centuries: 1900 and 2100 are not leap years, 2000 is */
    c = ctx_at(utc_ns(2100, 2, 28, 0, 0, 0));
    expect_date(&c, "$[yyyyMMdd+1]", "21000301");
    c = ctx_at(utc_ns(2000, 2, 28, 0, 0, 0));
    expect_date(&c, "$[yyyyMMdd+1]", "20000229");
    c = ctx_at(utc_ns(1900, 3, 1, 0, 0, 0));
    expect_date(&c, "$[yyyyMMdd-1]", "19000228");
}

Test(params, date_params_inside_and_errors)
{
    tn_param_ctx c = base_ctx();
    tn_kv *vars = kv_of("n", "3", "fmt", "yyyy", NULL);
    expect_sub("$[yyyyMMdd-${n}] $[${fmt}-MM]", vars, &c, 0, "20261119 2026-11");
    tn_kv_free(vars);

    expect_sub_fail("x $[foo(yyyy)]", TN_ERR_PARSE, "unknown function \"foo\"");
    expect_sub_fail("$[foo(yyyy)]", TN_ERR_PARSE, "$[foo(yyyy)]");
    expect_sub_fail("$[add_months(yyyyMMdd)]", TN_ERR_PARSE, "add_months(format, months)");
    expect_sub_fail("$[add_months(yyyyMMdd,1,2)]", TN_ERR_PARSE, "add_months");
    expect_sub_fail("$[add_months(yyyyMMdd,1.5)]", TN_ERR_PARSE, "bad number");
    expect_sub_fail("$[add_months(yyyyMMdd,1/2)]", TN_ERR_PARSE, "not a whole number");
    expect_sub_fail("$[add_months(yyyyMMdd,x)]", TN_ERR_PARSE, "bad number");
    expect_sub_fail("$[add_months(,1)]", TN_ERR_PARSE, "no date format");
    expect_sub_fail("$[add_months(yyyyMMdd,1]", TN_ERR_PARSE, "expected \")\"");
    expect_sub_fail("$[month_end(yyyyMMdd,(1)]", TN_ERR_PARSE, "unbalanced");
    expect_sub_fail("$[yyyyMMdd-1/0]", TN_ERR_PARSE, "division by zero");
    expect_sub_fail("$[yyyyMMdd+1)]", TN_ERR_PARSE, "unexpected text");
    expect_sub_fail("$[yyyyMMdd+(1]", TN_ERR_PARSE, "expected \")\"");
    expect_sub_fail("$[]", TN_ERR_PARSE, "empty expression");
    expect_sub_fail("$[  ]", TN_ERR_PARSE, "empty expression");
    expect_sub_fail("$[-1]", TN_ERR_PARSE, "no date format");
    expect_sub_fail("$[year_week(yyyy,9)]", TN_ERR_PARSE, "1 (Monday) .. 7 (Sunday)");
    expect_sub_fail("$[unixtime(yyyyMMdd)]", TN_ERR_PARSE, "yyyyMMddHHmmss");
    expect_sub_fail("$[yyyyMMdd+99999999999999]", TN_ERR_PARSE, "too large");
    expect_sub_fail("$[yyyyMMdd+9999999999]", TN_ERR_INVAL, "out of range");
    expect_sub_fail("$[yyyyMMdd+99999999]", TN_ERR_INVAL, "out of range");
    expect_sub_fail("$[add_months(yyyyMMdd,99999)]", TN_ERR_INVAL, "out of range");
    expect_sub_fail("echo ok\n  x $[yyyyMMdd", TN_ERR_PARSE, "line 2, column 5");
    expect_date(&c, "$[yyyyMMdd-${nope}]", "20261122-${nope}"); /* left as written */

    char *inner = repeat('y', 300), tmpl[400];
    snprintf(tmpl, sizeof(tmpl), "$[unixtime(%s)]", inner);
    expect_sub_fail(tmpl, TN_ERR_TOOBIG, "inner expression");
    free(inner);

    tn_errmsg m;
    cr_assert_eq(sub_err("$[yyyy]", NULL, NULL, &m), TN_ERR_INVAL);
    cr_assert(strstr(m.text, "schedule time"), "%s", m.text);
}

/* ---- substitution --------------------------------------------------------------------- */

typedef struct unknowns {
    int n;
    char names[8][72];
} unknowns;

static void on_unknown(void *arg, const char *name)
{
    unknowns *u = arg;
    if (u->n < 8)
        snprintf(u->names[u->n], sizeof(u->names[0]), "%s", name);
    u->n++;
}

Test(params, subst_rules)
{
    unknowns u = {0};
    tn_param_ctx c = base_ctx();
    c.on_unknown = on_unknown;
    c.on_unknown_arg = &u;
    tn_kv *vars =
        kv_of("dt", "20261121", "x", "X", "loop", "${x}", "date", "$[yyyy]", "empty", "", NULL);
    expect_sub("./run.sh --date ${dt} --x=${x}${x}", vars, &c, 0,
               "./run.sh --date 20261121 --x=XX");
    expect_sub("echo ${HOME} ${nope} ${x}", vars, &c, 0, "echo ${HOME} ${nope} X");
    cr_assert_eq(u.n, 2);
    cr_assert_str_eq(u.names[0], "HOME");
    cr_assert_str_eq(u.names[1], "nope");
    /* values are not expanded again */
    expect_sub("${loop} ${date}", vars, &c, 0, "${x} $[yyyy]");
    /* shell syntax is copied, with placeholders inside it still replaced */
    expect_sub("${VAR:-${x}} ${#arr} ${ x } ${}", vars, &c, 0, "${VAR:-X} ${#arr} ${ x } ${}");
    /* $ without { or [ is copied; #{...} is never substituted */
    expect_sub("$HOME $$ $1 cost: 5$ #{x} $", vars, &c, 0, "$HOME $$ $1 cost: 5$ #{x} $");
    expect_sub("$${x}", vars, &c, 0, "$X");
    /* setValue markers are kept; placeholders inside them are replaced */
    expect_sub("echo '${setValue(day=${dt})}' #{setValue(k=${x})}", vars, &c, 0,
               "echo '${setValue(day=20261121)}' #{setValue(k=X)}");
    /* an unclosed ${ is copied, and what follows is still substituted */
    expect_sub("a ${x b ${x}", vars, &c, 0, "a ${x b X");
    expect_sub("${empty}|${x", vars, &c, 0, "|${x");
    expect_sub("", vars, &c, 0, "");
    char *long_name = repeat('n', 65);
    char tmpl[128];
    snprintf(tmpl, sizeof(tmpl), "${%s}", long_name);
    expect_sub(tmpl, vars, &c, 0, tmpl);
    free(long_name);
    tn_kv_free(vars);

    char *out = NULL;
    tn_errmsg m;
    cr_assert_eq(tn_params_subst("x", NULL, &c, 4, &out, &m), TN_ERR_INVAL);
    cr_assert_eq(tn_params_subst(NULL, NULL, &c, 0, &out, &m), TN_ERR_INVAL);
    cr_assert_null(out);
}

Test(params, subst_output_bound)
{
    char *v = repeat('a', TN_PARAMS_MAX_VALUE);
    tn_kv *vars = kv_of("v", v, NULL);
    free(v);
    char tmpl[65 * 4 + 1] = "";
    for (int i = 0; i < 64; i++)
        strcat(tmpl, "${v}");
    tn_param_ctx c = base_ctx();
    char *out = NULL;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_params_subst(tmpl, vars, &c, 0, &out, &m), TN_OK, "%s", m.text);
    cr_assert_eq(strlen(out), (size_t)TN_PARAMS_MAX_OUT);
    free(out);
    out = NULL;
    strcat(tmpl, "${v}");
    cr_assert_eq(tn_params_subst(tmpl, vars, &c, 0, &out, &m), TN_ERR_TOOBIG);
    cr_assert_null(out);
    cr_assert(strstr(m.text, "exceeds"), "%s", m.text);
    tn_kv_free(vars);
}

Test(params, quote_mode)
{
    tn_param_ctx c = base_ctx();
    tn_kv *vars = kv_of("n", "42", "neg", "-1.5", "s", "abc", "q", "it's", "bs", "a\\b", "t",
                        "true", "f", "false", "e", "", "exp", "1e5", "dq", "say \"hi\"", "inj",
                        "x' || 'a' == 'a", "sp", " 7", NULL);
    unsigned Q = TN_PARAMS_QUOTE;
    expect_sub("${n} ${neg} ${t} ${f}", vars, &c, Q, "42 -1.5 true false");
    expect_sub("${s} == 'abc'", vars, &c, Q, "'abc' == 'abc'");
    expect_sub("${q}", vars, &c, Q, "'it\\'s'");
    expect_sub("${bs}", vars, &c, Q, "'a\\\\b'");
    expect_sub("${e} ${exp} ${sp}", vars, &c, Q, "'' '1e5' ' 7'");
    expect_sub("${dq}", vars, &c, Q, "'say \"hi\"'");
    /* inside a quoted string of the template: escaped for that quote only */
    expect_sub("'${q}' \"${q}\"", vars, &c, Q, "'it\\'s' \"it's\"");
    expect_sub("\"${dq}\" '${n}'", vars, &c, Q, "\"say \\\"hi\\\"\" '42'");
    expect_sub("'a\\'${s}' == ${s}", vars, &c, Q, "'a\\'abc' == 'abc'");
    /* dates too */
    expect_sub("$[yyyy-MM-dd] $[yyyyMMdd] '$[yyyy-MM]'", vars, &c, Q,
               "'2026-11-22' 20261122 '2026-11'");
    /* unknown names stay as written */
    expect_sub("${nope} == 1", vars, &c, Q, "${nope} == 1");
    /* without the flag nothing is quoted */
    expect_sub("${q} ${s}", vars, &c, 0, "it's abc");

    /* end to end: a value never escapes its quotes */
    const struct {
        const char *cond;
        bool want;
    } cases[] = {
        {"${s} == 'abc'", true},
        {"'${s}' == 'abc'", true},
        {"\"${s}\" == \"abc\"", true},
        {"${q} == \"it's\"", true},
        {"${inj} == 'a'", false},
        {"${inj} != 'a'", true},
        {"${n} > 9", true},
        {"${n} == '42'", false},
        {"'${n}' == '42'", true},
        {"${t} && !${f}", true},
        {"${e}", false},
        {"${bs} == 'a\\\\b'", true},
        {"${neg} < -1", true},
        {"${dq} == 'say \"hi\"'", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *expr = NULL;
        tn_errmsg m = {{0}};
        cr_assert_eq(tn_params_subst(cases[i].cond, vars, &c, Q, &expr, &m), TN_OK);
        bool r = !cases[i].want;
        tn_err err = tn_expr_eval(expr, &r, &m);
        cr_assert_eq(err, TN_OK, "%s -> %s: %s", cases[i].cond, expr, m.text);
        cr_assert_eq(r, cases[i].want, "%s -> %s", cases[i].cond, expr);
        free(expr);
    }
    tn_kv_free(vars);
}

/* ---- precedence ----------------------------------------------------------------------- */

Test(params, precedence_matrix)
{
    tn_param_ctx c = base_ctx();
    const char *names[] = {"g", "u", "l", "o"};
    for (unsigned mask = 0; mask < 16; mask++) {
        dkv *g = def_of(mask & 1 ? "k" : "other_g", "g", NULL);
        tn_kv *u = kv_of(mask & 2 ? "k" : "other_u", "u", NULL);
        dkv *l = def_of(mask & 4 ? "k" : "other_l", "l", NULL);
        tn_kv *o = kv_of(mask & 8 ? "k" : "other_o", "o", NULL);
        tn_kv *eff = NULL;
        tn_errmsg m = {{0}};
        cr_assert_eq(tn_params_effective(&g->kvs, u, &l->kvs, o, &c, &eff, &m), TN_OK, "%s",
                     m.text);
        const char *want = NULL;
        for (int b = 3; b >= 0 && !want; b--)
            if (mask & (1u << b))
                want = names[b];
        if (want)
            cr_assert_str_eq(tn_kv_get(eff, "k"), want, "mask %u", mask);
        else
            cr_assert_null(tn_kv_get(eff, "k"), "mask %u", mask);
        /* every key of every layer is there */
        cr_assert_eq(tn_kv_len(eff), 4 - __builtin_popcount(mask) + (mask ? 1 : 0));
        tn_kv_free(eff);
        tn_kv_free(u);
        tn_kv_free(o);
        free(g);
        free(l);
    }
}

Test(params, precedence_empty_local_takes_upstream)
{
    tn_param_ctx c = base_ctx();
    dkv *g = def_of("rows", "0", "name", "global", NULL);
    tn_kv *u = kv_of("rows", "1234", NULL);
    dkv *l = def_of("rows", "", "name", "", "fresh", "", NULL);
    tn_kv *eff = NULL;
    cr_assert_eq(tn_params_effective(&g->kvs, u, &l->kvs, NULL, &c, &eff, NULL), TN_OK);
    cr_assert_str_eq(tn_kv_get(eff, "rows"), "1234");
    cr_assert_str_eq(tn_kv_get(eff, "name"), ""); /* nothing passed: stays empty */
    cr_assert_str_eq(tn_kv_get(eff, "fresh"), "");
    tn_kv_free(eff);
    tn_kv_free(u);
    free(g);
    free(l);
}

Test(params, precedence_resolution)
{
    unknowns un = {0};
    tn_param_ctx c = base_ctx();
    c.on_unknown = on_unknown;
    c.on_unknown_arg = &un;
    /* globals refer to built-ins and to each other, in any order */
    dkv *g = def_of("dt", "${system.biz.date}", "a", "${b}-x", "b", "$[yyyyMMdd]", "c",
                    "${a}/${dt}/${b}", "path", "/data/${dt}/${region}", "region", "eu", NULL);
    tn_kv *u = kv_of("up", "$[yyyy]", "region", "us", NULL);
    dkv *l = def_of("dt", "${dt}_x", "mix", "${region}:${up}:${c}", "loc2", "${dt}", "other",
                    "${mix}", NULL);
    tn_kv *o = kv_of("ovr", "${system.biz.date}", NULL);
    tn_kv *eff = NULL;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_params_effective(&g->kvs, u, &l->kvs, o, &c, &eff, &m), TN_OK, "%s",
                 m.text);
    cr_assert_str_eq(tn_kv_get(eff, "a"), "20261122-x");
    cr_assert_str_eq(tn_kv_get(eff, "b"), "20261122");
    cr_assert_str_eq(tn_kv_get(eff, "c"), "20261122-x/20261121/20261122");
    cr_assert_str_eq(tn_kv_get(eff, "path"), "/data/20261121/eu"); /* globals see globals */
    cr_assert_str_eq(tn_kv_get(eff, "region"), "us");              /* upstream beats global */
    cr_assert_str_eq(tn_kv_get(eff, "dt"), "20261121_x");          /* local extends global */
    cr_assert_str_eq(tn_kv_get(eff, "loc2"), "20261121");          /* not the local dt */
    /* locals see upstream over globals, literally */
    cr_assert_str_eq(tn_kv_get(eff, "mix"), "us:$[yyyy]:20261122-x/20261121/20261122");
    cr_assert_str_eq(tn_kv_get(eff, "other"), "${mix}"); /* locals do not see locals */
    cr_assert_str_eq(tn_kv_get(eff, "up"), "$[yyyy]");   /* upstream values are literal */
    cr_assert_str_eq(tn_kv_get(eff, "ovr"), "${system.biz.date}"); /* so are overrides */
    cr_assert_eq(un.n, 1);
    cr_assert_str_eq(un.names[0], "mix");

    /* the two steps give the same result */
    tn_kv *gl = NULL, *eff2 = NULL;
    cr_assert_eq(tn_params_globals(&g->kvs, &c, &gl, NULL), TN_OK);
    cr_assert_str_eq(tn_kv_get(gl, "c"), "20261122-x/20261121/20261122");
    cr_assert_eq(tn_params_task(gl, u, &l->kvs, o, &c, &eff2, NULL), TN_OK);
    cr_assert_eq(tn_kv_len(eff2), tn_kv_len(eff));
    for (uint32_t i = 0; i < tn_kv_len(eff); i++) {
        cr_assert_str_eq(tn_kv_key(eff2, i), tn_kv_key(eff, i));
        cr_assert_str_eq(tn_kv_value(eff2, i), tn_kv_value(eff, i));
    }
    /* a dt passed from upstream is what the local extends */
    tn_kv *u2 = kv_of("dt", "19990101", NULL);
    tn_kv *eff3 = NULL;
    cr_assert_eq(tn_params_task(gl, u2, &l->kvs, NULL, &c, &eff3, NULL), TN_OK);
    cr_assert_str_eq(tn_kv_get(eff3, "dt"), "19990101_x");
    tn_kv_free(eff3);
    tn_kv_free(u2);
    tn_kv_free(eff2);
    tn_kv_free(gl);
    tn_kv_free(eff);
    tn_kv_free(u);
    tn_kv_free(o);
    free(g);
    free(l);

    /* all layers empty */
    cr_assert_eq(tn_params_effective(NULL, NULL, NULL, NULL, &c, &eff, NULL), TN_OK);
    cr_assert_eq(tn_kv_len(eff), 0);
    tn_kv_free(eff);
}

Test(params, precedence_errors)
{
    tn_param_ctx c = base_ctx();
    tn_kv *eff = NULL;
    tn_errmsg m = {{0}};

    dkv *cyc = def_of("a", "${b}", "b", "x${c}", "c", "${a}", "ok", "1", NULL);
    cr_assert_eq(tn_params_effective(&cyc->kvs, NULL, NULL, NULL, &c, &eff, &m), TN_ERR_INVAL);
    cr_assert(strstr(m.text, "cycle: a -> b -> c -> a"), "%s", m.text);
    cr_assert_null(eff);
    free(cyc);

    dkv *self = def_of("a", "pre ${a}", NULL);
    cr_assert_eq(tn_params_effective(&self->kvs, NULL, NULL, NULL, &c, &eff, &m), TN_ERR_INVAL);
    cr_assert(strstr(m.text, "cycle: a -> a"), "%s", m.text);
    free(self);

    /* a chain deeper than the bound */
    static char keys[40][16], vals[40][24];
    dkv *chain = calloc(1, sizeof(*chain));
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof(keys[i]), "p%02d", i);
        if (i < 39)
            snprintf(vals[i], sizeof(vals[i]), "${p%02d}", i + 1);
        else
            snprintf(vals[i], sizeof(vals[i]), "end");
        chain->items[i].key = keys[i];
        chain->items[i].value = vals[i];
    }
    chain->kvs.items = chain->items;
    chain->kvs.n = 40;
    cr_assert_eq(tn_params_effective(&chain->kvs, NULL, NULL, NULL, &c, &eff, &m),
                 TN_ERR_INVAL);
    cr_assert(strstr(m.text, "nest more than 32"), "%s", m.text);
    chain->kvs.items = chain->items + 10; /* 30 deep is fine */
    chain->kvs.n = 30;
    cr_assert_eq(tn_params_effective(&chain->kvs, NULL, NULL, NULL, &c, &eff, &m), TN_OK, "%s",
                 m.text);
    cr_assert_str_eq(tn_kv_get(eff, "p10"), "end");
    tn_kv_free(eff);
    eff = NULL;
    free(chain);

    dkv *bad = def_of("fine", "x", "dt", "$[yyyyMMdd-1/0]", NULL);
    cr_assert_eq(tn_params_effective(&bad->kvs, NULL, NULL, NULL, &c, &eff, &m), TN_ERR_PARSE);
    cr_assert(!strncmp(m.text, "global param \"dt\": bad date expression", 38), "%s", m.text);
    free(bad);

    /* an error in a global found through another names the one that is wrong */
    dkv *deep = def_of("a", "${b}", "b", "$[nope(x)]", NULL);
    cr_assert_eq(tn_params_effective(&deep->kvs, NULL, NULL, NULL, &c, &eff, &m), TN_ERR_PARSE);
    cr_assert(!strncmp(m.text, "global param \"b\": ", 18), "%s", m.text);
    free(deep);

    dkv *loc = def_of("p", "$[add_months(yyyyMMdd)]", NULL);
    cr_assert_eq(tn_params_effective(NULL, NULL, &loc->kvs, NULL, &c, &eff, &m), TN_ERR_PARSE);
    cr_assert(!strncmp(m.text, "local param \"p\": ", 17), "%s", m.text);
    free(loc);

    /* a value that grows past the bound */
    char big[64];
    snprintf(big, sizeof(big), "${x}${x}");
    char *xv = repeat('x', TN_PARAMS_MAX_VALUE / 2 + 1);
    dkv *grow = def_of("x", xv, "y", big, NULL);
    cr_assert_eq(tn_params_effective(&grow->kvs, NULL, NULL, NULL, &c, &eff, &m),
                 TN_ERR_TOOBIG);
    cr_assert(strstr(m.text, "global param \"y\""), "%s", m.text);
    free(grow);
    free(xv);

    /* lists that are not sorted are refused, not misread */
    dkv *unsorted = def_of("b", "1", "a", "2", NULL);
    tn_def_kv t = unsorted->items[0];
    unsorted->items[0] = unsorted->items[1];
    unsorted->items[1] = t;
    cr_assert_eq(tn_params_effective(&unsorted->kvs, NULL, NULL, NULL, &c, &eff, &m),
                 TN_ERR_INVAL);
    free(unsorted);

    tn_param_ctx badtz = c;
    badtz.tz = "Nowhere";
    cr_assert_eq(tn_params_effective(NULL, NULL, NULL, NULL, &badtz, &eff, &m), TN_ERR_INVAL);
    cr_assert_null(eff);
}

/* ---- setValue scanning ---------------------------------------------------------------- */

static void expect_kv(const tn_kv *kv, const char *const *pairs, size_t n)
{
    cr_assert_eq(tn_kv_len(kv), n / 2);
    for (size_t i = 0; i < n; i += 2) {
        const char *v = tn_kv_get(kv, pairs[i]);
        cr_assert_not_null(v, "missing %s", pairs[i]);
        cr_assert_str_eq(v, pairs[i + 1], "key %s", pairs[i]);
    }
}

static const char scan_text[] =
    "starting\n"
    "${setValue(rows=1234)} and ${setValue(name=a b)}#{setValue(hash=1)}\n"
    "${setValue(bad key=1)} ${setValue(=1)} ${setValue(k/x=1)} ${setValue(nokey)}\n"
    "${setValue(eq=a=b)} ${setValue(paren=f(x) + g)} ${setValue(json={\"a\":[1]})}\n"
    "${setValue(multi=line1\nline2)} ${setValue(empty=)} $${setValue(dd=1)}\n"
    "#${setValue(hd=2)} ${setValue(rows=99)} ${setValue(brace=x}y)} ${ setValue(sp=1)}\n"
    "${setValue(pp=a))} ${setValue(open=never closed";

static const char *const scan_want[] = {
    "rows",     "99",   "name",        "a b",   "hash",         "1",     "eq", "a=b", "paren",
    "f(x) + g", "json", "{\"a\":[1]}", "multi", "line1\nline2", "empty", "",   "dd",  "1",
    "hd",       "2",    "brace",       "x}y",   "pp",           "a)",
};

Test(params, scan_outputs)
{
    tn_kv *kv = tn_kv_new();
    cr_assert_eq(tn_params_scan_outputs(scan_text, strlen(scan_text), kv), TN_OK);
    expect_kv(kv, scan_want, sizeof(scan_want) / sizeof(scan_want[0]));
    tn_kv_free(kv);

    /* several on one line, later wins, across calls into the same map */
    kv = kv_of("pre", "kept", NULL);
    const char *line = "${setValue(a=1)}${setValue(b=2)}${setValue(a=3)}";
    cr_assert_eq(tn_params_scan_outputs(line, strlen(line), kv), TN_OK);
    const char *want[] = {"pre", "kept", "a", "3", "b", "2"};
    expect_kv(kv, want, 6);
    cr_assert_eq(tn_params_scan_outputs(NULL, 0, kv), TN_OK);
    tn_kv_free(kv);

    /* key length: 64 is fine, 65 is not */
    char text[256];
    char *k64 = repeat('k', 64);
    snprintf(text, sizeof(text), "${setValue(%s=v)} ${setValue(%sk=w)}", k64, k64);
    kv = tn_kv_new();
    cr_assert_eq(tn_params_scan_outputs(text, strlen(text), kv), TN_OK);
    cr_assert_eq(tn_kv_len(kv), 1);
    cr_assert_str_eq(tn_kv_get(kv, k64), "v");
    free(k64);
    tn_kv_free(kv);

    /* a NUL inside a value drops the marker */
    const char nul[] = "${setValue(a=x\0y)} ${setValue(b=ok)}";
    kv = tn_kv_new();
    cr_assert_eq(tn_params_scan_outputs(nul, sizeof(nul) - 1, kv), TN_OK);
    cr_assert_null(tn_kv_get(kv, "a"));
    cr_assert_str_eq(tn_kv_get(kv, "b"), "ok");
    tn_kv_free(kv);
}

Test(params, scan_chunked_equals_whole)
{
    size_t n = strlen(scan_text);
    /* every split into two chunks */
    for (size_t cut = 0; cut <= n; cut++) {
        tn_kv *kv = tn_kv_new();
        tn_params_scanner s;
        tn_params_scanner_init(&s);
        cr_assert_eq(tn_params_scanner_feed(&s, scan_text, cut, kv), TN_OK);
        cr_assert_eq(tn_params_scanner_feed(&s, scan_text + cut, n - cut, kv), TN_OK);
        tn_params_scanner_fini(&s);
        expect_kv(kv, scan_want, sizeof(scan_want) / sizeof(scan_want[0]));
        tn_kv_free(kv);
    }
    /* one byte at a time */
    tn_kv *kv = tn_kv_new();
    tn_params_scanner s;
    tn_params_scanner_init(&s);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(tn_params_scanner_feed(&s, scan_text + i, 1, kv), TN_OK);
    cr_assert_eq(s.dropped, 4); /* bad key, =1, k/x, nokey; the open one is not counted */
    tn_params_scanner_fini(&s);
    expect_kv(kv, scan_want, sizeof(scan_want) / sizeof(scan_want[0]));
    tn_kv_free(kv);
}

Test(params, scan_bounds)
{
    /* a value of exactly the bound is kept; one byte more is dropped, and scanning goes
     * on inside it */
    size_t vmax = TN_PARAMS_MAX_VALUE;
    char *buf = malloc(2 * vmax + 256);
    size_t n = (size_t)sprintf(buf, "${setValue(ok=");
    memset(buf + n, 'v', vmax);
    n += vmax;
    n += (size_t)sprintf(buf + n, ")} ${setValue(big=");
    memset(buf + n, 'w', vmax + 1);
    n += vmax + 1;
    n += (size_t)sprintf(buf + n, "${setValue(after=1)})}");
    tn_kv *kv = tn_kv_new();
    tn_params_scanner s;
    tn_params_scanner_init(&s);
    cr_assert_eq(tn_params_scanner_feed(&s, buf, n, kv), TN_OK);
    cr_assert_eq(s.dropped, 1);
    tn_params_scanner_fini(&s);
    cr_assert_eq(strlen(tn_kv_get(kv, "ok")), vmax);
    cr_assert_null(tn_kv_get(kv, "big"));
    cr_assert_str_eq(tn_kv_get(kv, "after"), "1");
    tn_kv_free(kv);
    free(buf);

    /* more than the allowed number of keys: the first ones stay, updates still apply */
    size_t cap = (TN_PARAMS_MAX_OUTPUTS + 10) * 40;
    buf = malloc(cap);
    n = 0;
    for (unsigned i = 0; i < TN_PARAMS_MAX_OUTPUTS + 5; i++)
        n += (size_t)snprintf(buf + n, cap - n, "${setValue(k%04u=%u)}\n", i, i);
    n += (size_t)snprintf(buf + n, cap - n, "${setValue(k0000=last)}");
    kv = tn_kv_new();
    cr_assert_eq(tn_params_scan_outputs(buf, n, kv), TN_ERR_TOOBIG);
    cr_assert_eq(tn_kv_len(kv), TN_PARAMS_MAX_OUTPUTS);
    cr_assert_str_eq(tn_kv_get(kv, "k0000"), "last");
    cr_assert_str_eq(tn_kv_get(kv, "k0999"), "999");
    cr_assert_null(tn_kv_get(kv, "k1000"));
    tn_kv_free(kv);
    free(buf);

    /* a large log: 16 MiB of noise with markers in it; memory stays bounded by the map */
    size_t big = 16u << 20;
    buf = malloc(big);
    for (size_t i = 0; i < big; i++)
        buf[i] = "ab$#{(=)}\n sV"[(i * 7919) % 13];
    for (size_t at = 1000; at + 64 < big; at += 1u << 20)
        memcpy(buf + at, "${setValue(m=hit)}", 18);
    kv = tn_kv_new();
    cr_assert_eq(tn_params_scan_outputs(buf, big, kv), TN_OK);
    cr_assert_str_eq(tn_kv_get(kv, "m"), "hit");
    tn_kv_free(kv);
    free(buf);
}

/* ---- switch conditions ---------------------------------------------------------------- */

typedef struct ecase {
    const char *expr;
    tn_err err;
    bool want;
    const char *msg; /* part of the message, for errors */
} ecase;

static const ecase expr_cases[] = {
    {"1 == 1", TN_OK, true, NULL},
    {"1 == 2", TN_OK, false, NULL},
    {"1 != 2", TN_OK, true, NULL},
    {"2 > 1", TN_OK, true, NULL},
    {"2 < 1", TN_OK, false, NULL},
    {"2 >= 2", TN_OK, true, NULL},
    {"2 <= 1", TN_OK, false, NULL},
    {"-1 < 0", TN_OK, true, NULL},
    {"-1.5 < -1.25", TN_OK, true, NULL},
    {"-10 < -9", TN_OK, true, NULL},
    {"1.50 == 1.5", TN_OK, true, NULL},
    {"007 == 7", TN_OK, true, NULL},
    {"-0 == 0", TN_OK, true, NULL},
    {"0.1 < 0.10001", TN_OK, true, NULL},
    {"10 > 9", TN_OK, true, NULL},
    {"123456789012345678901234567890 > 123456789012345678901234567889", TN_OK, true, NULL},
    {"'10' > '9'", TN_OK, false, NULL},
    {"'abc' == 'abc'", TN_OK, true, NULL},
    {"'abc' < 'abd'", TN_OK, true, NULL},
    {"'ab' < 'abc'", TN_OK, true, NULL},
    {"\"x\" == 'x'", TN_OK, true, NULL},
    {"'it\\'s' == \"it's\"", TN_OK, true, NULL},
    {"'' == \"\"", TN_OK, true, NULL},
    {"1 == '1'", TN_OK, false, NULL},
    {"1 != '1'", TN_OK, true, NULL},
    {"true == 1", TN_OK, false, NULL},
    {"true", TN_OK, true, NULL},
    {"false", TN_OK, false, NULL},
    {"!false", TN_OK, true, NULL},
    {"!!true", TN_OK, true, NULL},
    {"true == true", TN_OK, true, NULL},
    {"true != false", TN_OK, true, NULL},
    {"1 == 1 && 2 == 2", TN_OK, true, NULL},
    {"1 == 1 && 2 == 3", TN_OK, false, NULL},
    {"1 == 2 || 2 == 2", TN_OK, true, NULL},
    {"true || false && false", TN_OK, true, NULL}, /* && binds tighter than || */
    {"false && false || true", TN_OK, true, NULL},
    {"(true || false) && false", TN_OK, false, NULL},
    {"!(1 == 2)", TN_OK, true, NULL},
    {"!1 == false", TN_OK, true, NULL}, /* ! binds tighter than == */
    {"0", TN_OK, false, NULL},
    {"42", TN_OK, true, NULL},
    {"-0.0", TN_OK, false, NULL},
    {"'x'", TN_OK, true, NULL},
    {"''", TN_OK, false, NULL},
    {"'false'", TN_OK, true, NULL},
    {"  ( ( 1 < 2 ) )  ", TN_OK, true, NULL},
    {"1<2&&2<3", TN_OK, true, NULL},
    {"'a' == 'a' && 3 >= 3.0", TN_OK, true, NULL},
    {"\n1 ==\t1\r\n", TN_OK, true, NULL},
    {"1 || 1 < 'a'", TN_ERR_TYPE, false, "cannot order a number and a string"},
    {"", TN_ERR_PARSE, false, "empty"},
    {"   ", TN_ERR_PARSE, false, "empty"},
    {"1 ==", TN_ERR_PARSE, false, "expected an operand at column 5"},
    {"1 == 1 &&", TN_ERR_PARSE, false, "expected an operand at column 10"},
    {"== 1", TN_ERR_PARSE, false, "expected an operand at column 1"},
    {"(1 == 1", TN_ERR_PARSE, false, "expected \")\" to close the \"(\" of column 1"},
    {"1 == 1)", TN_ERR_PARSE, false, "unexpected \")\" at column 7"},
    {"1 = 1", TN_ERR_PARSE, false, "compare with =="},
    {"'abc == 1", TN_ERR_PARSE, false, "unterminated string at column 1"},
    {"1 < 'a'", TN_ERR_TYPE, false,
     "cannot order a number and a string with \"<\" at column 3"},
    {"true < false", TN_ERR_TYPE, false, "booleans cannot be ordered"},
    {"1 < 2 < 3", TN_ERR_PARSE, false, "comparisons do not chain"},
    {"abc == 'abc'", TN_ERR_PARSE, false, "unknown word \"abc\" at column 1"},
    {"1 & 2", TN_ERR_PARSE, false, "unexpected \"&\" at column 3"},
    {"1 2", TN_ERR_PARSE, false, "unexpected \"2\" at column 3"},
    {"${rows} > 0", TN_ERR_PARSE, false, "unresolved parameter \"${rows}\" at column 1"},
    {"1.2.3 == 1", TN_ERR_PARSE, false, "bad number"},
    {"12abc", TN_ERR_PARSE, false, "bad number \"12abc\""},
    {"1. == 1", TN_ERR_PARSE, false, "bad number"},
    {"!", TN_ERR_PARSE, false, "expected an operand at column 2"},
    {"()", TN_ERR_PARSE, false, "expected an operand at column 2"},
    {"1 ==\n 2 ||", TN_ERR_PARSE, false, "column 11"},
    {"- 1 == -1", TN_ERR_PARSE, false, "expected an operand at column 1"},
    {"1 => 1", TN_ERR_PARSE, false, "compare with =="},
};

Test(params, expr_table)
{
    cr_assert(sizeof(expr_cases) / sizeof(expr_cases[0]) >= 40);
    for (size_t i = 0; i < sizeof(expr_cases) / sizeof(expr_cases[0]); i++) {
        const ecase *e = &expr_cases[i];
        bool r = !e->want;
        tn_errmsg m = {{0}};
        tn_err err = tn_expr_eval(e->expr, &r, &m);
        cr_assert_eq(err, e->err, "[%s]: got %s: %s", e->expr, tn_errname(err), m.text);
        if (err == TN_OK) {
            cr_assert_eq(r, e->want, "[%s]", e->expr);
        } else {
            cr_assert_eq(r, !e->want, "[%s]: result written on error", e->expr);
            cr_assert(strstr(m.text, e->msg), "[%s]: \"%s\" lacks \"%s\"", e->expr, m.text,
                      e->msg);
        }
    }
}

Test(params, expr_bounds)
{
    bool r;
    tn_errmsg m;
    char buf[512];
    /* 64 levels of parentheses are fine, 65 are not */
    for (int depth = 64; depth <= 65; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            buf[n++] = '(';
        buf[n++] = '1';
        for (int i = 0; i < depth; i++)
            buf[n++] = ')';
        buf[n] = '\0';
        tn_err err = tn_expr_eval(buf, &r, &m);
        cr_assert_eq(err, depth == 64 ? TN_OK : TN_ERR_TOOBIG, "depth %d: %s", depth, m.text);
    }
    memset(buf, '!', 65);
    strcpy(buf + 65, "true");
    cr_assert_eq(tn_expr_eval(buf, &r, &m), TN_ERR_TOOBIG);
    cr_assert_eq(tn_expr_eval(buf + 1, &r, &m), TN_OK);
    cr_assert_eq(r, true);

    /* length */
    char *big = repeat(' ', TN_EXPR_MAX_LEN + 1);
    big[0] = '1';
    cr_assert_eq(tn_expr_eval(big, &r, &m), TN_ERR_TOOBIG);
    big[TN_EXPR_MAX_LEN] = '\0';
    cr_assert_eq(tn_expr_eval(big, &r, &m), TN_OK);
    free(big);
    /* a long string literal, decoded */
    big = repeat('a', TN_EXPR_MAX_LEN);
    big[0] = big[TN_EXPR_MAX_LEN - 1] = '\'';
    cr_assert_eq(tn_expr_eval(big, &r, &m), TN_OK);
    cr_assert(r);
    free(big);

    cr_assert_eq(tn_expr_eval(NULL, &r, &m), TN_ERR_INVAL);
    cr_assert_eq(tn_expr_eval("1", NULL, &m), TN_ERR_INVAL);
}

/* ---- malformed input ------------------------------------------------------------------ */

static const char tricky[] =
    "a ${x} $[yyyy-MM-dd+1] ${setValue(k=${y})} $[add_months(yyyyMMdd,-(1+1))] ${VAR:-${x}} "
    "'${q}' \"$[HH]\\\"\" $[unixtime(week_begin(yyyyMMddHHmmss, 1))] $[year_week(yyyy-MM,7)] "
    "#{setValue(z=1)} $[${n}] ${system.biz.date}$";

Test(params, malformed_templates_never_crash)
{
    tn_param_ctx c = base_ctx();
    tn_kv *vars = kv_of("x", "X", "y", "${x}", "q", "it's", "n", "yyyy", NULL);
    size_t n = strlen(tricky);
    char *buf = malloc(n + 1);
    int ok = 0;
    for (size_t start = 0; start <= n; start += 7) {
        for (size_t end = start; end <= n; end++) {
            memcpy(buf, tricky + start, end - start);
            buf[end - start] = '\0';
            for (unsigned flags = 0; flags <= TN_PARAMS_QUOTE; flags++) {
                char *out = NULL;
                tn_errmsg m = {{0}};
                tn_err err = tn_params_subst(buf, vars, &c, flags, &out, &m);
                if (err == TN_OK) {
                    cr_assert_not_null(out);
                    cr_assert(strlen(out) < 4 * n + 64);
                    ok++;
                    /* whatever comes out, the evaluator copes */
                    bool r;
                    tn_errmsg em = {{0}};
                    if (tn_expr_eval(out, &r, &em) != TN_OK)
                        cr_assert(em.text[0], "no message for [%s]", out);
                    free(out);
                } else {
                    cr_assert_null(out);
                    cr_assert(m.text[0], "no message for [%s]", buf);
                    cr_assert(err == TN_ERR_PARSE, "[%s]: %s: %s", buf, tn_errname(err),
                              m.text);
                }
            }
        }
    }
    cr_assert(ok > 100);
    /* the whole template works */
    expect_sub(tricky, vars, &c, 0,
               "a X 2026-11-23 ${setValue(k=${x})} 20260922 ${VAR:-X} 'it's' \"03\\\"\" "
               "1794884645 2026-47 #{setValue(z=1)} 2026 20261121$");
    free(buf);
    tn_kv_free(vars);
}

static const char tricky_expr[] =
    "!(${a} == 'x\\'y' || -1.5 <= 2) && \"q\\\"\" != 'r' || (true && !false) || 007 >= 7.0";

Test(params, malformed_conditions_never_crash)
{
    size_t n = strlen(tricky_expr);
    char *buf = malloc(n + 1);
    for (size_t start = 0; start <= n; start++) {
        for (size_t end = start; end <= n; end++) {
            memcpy(buf, tricky_expr + start, end - start);
            buf[end - start] = '\0';
            bool r;
            tn_errmsg m = {{0}};
            tn_err err = tn_expr_eval(buf, &r, &m);
            if (err != TN_OK)
                cr_assert(strstr(m.text, "column") || strstr(m.text, "empty"), "[%s]: %s", buf,
                          m.text);
        }
    }
    free(buf);
}

Test(params, malformed_outputs_never_crash)
{
    const char *t = "${setValue(a=${setValue(b=1)})} #{setValue(c=)}) ${setValue(d=x)}}$#{";
    size_t n = strlen(t);
    for (size_t start = 0; start <= n; start++) {
        for (size_t end = start; end <= n; end++) {
            tn_kv *kv = tn_kv_new();
            cr_assert_eq(tn_params_scan_outputs(t + start, end - start, kv), TN_OK);
            tn_kv_free(kv);
        }
    }
    tn_kv *kv = tn_kv_new();
    cr_assert_eq(tn_params_scan_outputs(t, n, kv), TN_OK);
    const char *want[] = {"a", "${setValue(b=1", "c", "", "d", "x"};
    expect_kv(kv, want, 6);
    tn_kv_free(kv);
}

/* ---- threads -------------------------------------------------------------------------- */

static void *subst_worker(void *arg)
{
    const tn_kv *vars = arg;
    tn_param_ctx c = base_ctx();
    for (int i = 0; i < 2000; i++) {
        char *out = NULL;
        if (tn_params_subst("${a}-$[yyyyMMdd-1]-${system.datetime}", vars, &c, 0, &out, NULL) ||
            strcmp(out, "A-20261121-20261122030405")) {
            free(out);
            return (void *)1;
        }
        free(out);
    }
    return NULL;
}

Test(params, concurrent_readers)
{
    tn_kv *vars = kv_of("a", "A", NULL);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, subst_worker, vars), 0);
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(th[i], &r);
        cr_assert_null(r);
    }
    tn_kv_free(vars);
}

/* The split of date-function arguments and the two levels of && and ||. */
Test(params, date_arguments_and_logic_levels)
{
    expect_sub_fail("$[add_months(yyyyMMdd),1)]", TN_ERR_PARSE, "unbalanced parentheses");
    expect_sub_fail("$[add_months(yyyyMMdd,(1)]", TN_ERR_PARSE, "unbalanced parentheses");
    expect_sub_fail("$[add_months(yyyyMMdd,1,2,3)]", TN_ERR_PARSE,
                    "expected add_months(format, months)");
    expect_sub_fail("$[add_months( ,1)]", TN_ERR_PARSE, "no date format");
    tn_param_ctx c = base_ctx();
    expect_sub("$[add_months( yyyyMMdd , (2-1) )]", NULL, &c, 0, "20261222");
    expect_sub("$[year_week(yyyy-ww, 7)]", NULL, &c, 0, "2026-47");

    static const struct {
        const char *expr;
        tn_err err;
        bool want;
        const char *msg;
    } cases[] = {
        {"false && true || true", TN_OK, true, NULL},
        {"true || false && false", TN_OK, true, NULL},
        {"(true || false) && false", TN_OK, false, NULL},
        {"1 < 2 && 2 < 3 && 3 < 4", TN_OK, true, NULL},
        {"false || false || 'a' == 'a'", TN_OK, true, NULL},
        /* the right side is read even when the left decides */
        {"true || nope", TN_ERR_PARSE, false, "unknown word \"nope\" at column 9"},
        {"false && 'open", TN_ERR_PARSE, false, "unterminated string at column 10"},
        {"true &&", TN_ERR_PARSE, false, "expected an operand at column 8"},
        {"true | false", TN_ERR_PARSE, false, "expected && or ||"},
        {"(1 == 1", TN_ERR_PARSE, false, "expected \")\" to close the \"(\" of column 1"},
        {"12ab == 1", TN_ERR_PARSE, false, "bad number \"12ab\""},
        {"${x} == 1", TN_ERR_PARSE, false, "unresolved parameter \"${x}\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool r = !cases[i].want;
        tn_errmsg m = {{0}};
        tn_err err = tn_expr_eval(cases[i].expr, &r, &m);
        cr_expect_eq(err, cases[i].err, "[%s]: got %s: %s", cases[i].expr, tn_errname(err),
                     m.text);
        if (err == TN_OK)
            cr_expect_eq(r, cases[i].want, "[%s]", cases[i].expr);
        else
            cr_expect(strstr(m.text, cases[i].msg), "[%s]: \"%s\" lacks \"%s\"", cases[i].expr,
                      m.text, cases[i].msg);
    }
}

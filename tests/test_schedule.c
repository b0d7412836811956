/* Tests of schedule specs: defaults, params, validation messages, and window bounds read
 * in a time zone (instants worked out independently, as UTC seconds). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"

#define NS 1000000000LL

static tn_sched_spec valid_spec(void)
{
    tn_sched_spec s;
    tn_sched_spec_init(&s);
    strcpy(s.cron, "0 0 2 * * ?");
    return s;
}

/* validate fails with a message containing `want` */
static void expect_invalid(const tn_sched_spec *s, const char *want)
{
    tn_errmsg e = {{0}};
    cr_expect_neq(tn_sched_spec_validate(s, &e), TN_OK, "accepted; expected \"%s\"", want);
    cr_expect(strstr(e.text, want) != NULL, "message \"%s\" lacks \"%s\"", e.text, want);
}

Test(schedule, overlap_words)
{
    tn_overlap o = TN_OVERLAP_ALLOW_ALL;
    for (int i = 0; i < TN_OVERLAP__COUNT; i++) {
        cr_assert_eq(tn_overlap_parse(tn_overlap_name((tn_overlap)i), &o), TN_OK);
        cr_assert_eq((int)o, i);
        cr_assert(strstr(tn_overlap_allowed(), tn_overlap_name((tn_overlap)i)));
    }
    cr_assert_str_eq(tn_overlap_name(TN_OVERLAP_BUFFER_ONE), "buffer_one");
    cr_assert_str_eq(tn_overlap_name(TN_OVERLAP__COUNT), "?");
    o = TN_OVERLAP_SKIP;
    cr_assert_eq(tn_overlap_parse("queue", &o), TN_ERR_INVAL);
    cr_assert_eq(tn_overlap_parse(NULL, &o), TN_ERR_INVAL);
    cr_assert_eq(o, TN_OVERLAP_SKIP, "untouched on error");
    cr_assert_str_eq(tn_overlap_allowed(),
                     "allow_all, skip, buffer_one, buffer_all, cancel_other");
}

Test(schedule, defaults)
{
    tn_sched_spec s;
    memset(&s, 0x5a, sizeof(s));
    tn_sched_spec_init(&s);
    cr_assert_str_eq(s.cron, "");
    cr_assert_str_eq(s.tz, "UTC");
    cr_assert_eq(s.start_ns, 0);
    cr_assert_eq(s.end_ns, 0);
    cr_assert_eq(s.overlap, TN_OVERLAP_ALLOW_ALL);
    cr_assert_eq(s.catchup_ms, 60000);
    cr_assert_not(s.pause_on_failure);
    cr_assert_str_eq(s.priority, "");
    cr_assert_str_eq(s.failure_strategy, "");
    cr_assert_str_eq(s.worker_group, "");
    cr_assert_eq(s.nparams, 0);
    tn_errmsg e = {{0}};
    cr_assert_neq(tn_sched_spec_validate(&s, &e), TN_OK, "no cron yet");
    cr_assert(strstr(e.text, "cron"), "%s", e.text);
    strcpy(s.cron, "0 2 * * *");
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
    s.tz[0] = '\0'; /* "" = UTC */
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
}

Test(schedule, params_and_copy)
{
    tn_sched_spec s = valid_spec(), c;
    cr_assert_eq(tn_sched_spec_param(&s, "region", "eu"), TN_OK);
    cr_assert_eq(tn_sched_spec_param(&s, "dt", ""), TN_OK);
    cr_assert_eq(tn_sched_spec_param(&s, "region", "us"), TN_OK, "a second value replaces");
    cr_assert_eq(s.nparams, 2);
    cr_assert_str_eq(s.param_keys[0], "region");
    cr_assert_str_eq(s.param_values[0], "us");
    cr_assert_eq(tn_sched_spec_param(&s, "bad key", "x"), TN_ERR_INVAL);
    cr_assert_eq(tn_sched_spec_param(&s, "", "x"), TN_ERR_INVAL);
    cr_assert_eq(tn_sched_spec_param(&s, "a/b", "x"), TN_ERR_INVAL);
    char key[80];
    memset(key, 'k', 65);
    key[65] = '\0';
    cr_assert_eq(tn_sched_spec_param(&s, key, "x"), TN_ERR_INVAL, "65-byte key");
    key[64] = '\0';
    cr_assert_eq(tn_sched_spec_param(&s, key, "x"), TN_OK, "64-byte key");
    char *big = malloc(TN_SCHED_PARAM_MAX + 2);
    memset(big, 'v', TN_SCHED_PARAM_MAX + 1);
    big[TN_SCHED_PARAM_MAX + 1] = '\0';
    cr_assert_eq(tn_sched_spec_param(&s, "big", big), TN_ERR_TOOBIG);
    big[TN_SCHED_PARAM_MAX] = '\0';
    cr_assert_eq(tn_sched_spec_param(&s, "big", big), TN_OK);
    free(big);
    cr_assert_eq(s.nparams, 4);

    cr_assert_eq(tn_sched_spec_copy(&c, &s), TN_OK);
    cr_assert_eq(c.nparams, 4);
    cr_assert_neq(c.param_keys, s.param_keys, "deep copy");
    cr_assert_neq(c.param_values[0], s.param_values[0], "deep copy");
    cr_assert_str_eq(c.param_values[0], "us");
    cr_assert_str_eq(c.cron, s.cron);
    tn_sched_spec_fini(&s);
    cr_assert_str_eq(c.param_keys[1], "dt", "the copy outlives the original");
    tn_sched_spec_fini(&c);

    tn_sched_spec m = valid_spec();
    for (int i = 0; i < TN_SCHED_MAX_PARAMS; i++) {
        snprintf(key, sizeof(key), "p%d", i);
        cr_assert_eq(tn_sched_spec_param(&m, key, "v"), TN_OK);
    }
    cr_assert_eq(tn_sched_spec_param(&m, "one_more", "v"), TN_ERR_TOOBIG);
    cr_assert_eq(tn_sched_spec_param(&m, "p7", "w"), TN_OK, "replacing stays in bounds");
    tn_errmsg e;
    cr_assert_eq(tn_sched_spec_validate(&m, &e), TN_OK, "%s", e.text);
    tn_sched_spec_fini(&m);
}

Test(schedule, validate_errors)
{
    tn_sched_spec s = valid_spec();
    tn_errmsg e = {{0}};
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);

    strcpy(s.cron, "0 0 25 * * ?");
    expect_invalid(&s, "cron: \"0 0 25 * * ?\": position 5");
    s = valid_spec();
    strcpy(s.tz, "Mars/Olympus");
    expect_invalid(&s, "Mars/Olympus");
    s = valid_spec();
    s.start_ns = 2000 * NS;
    s.end_ns = 2000 * NS;
    expect_invalid(&s, "not before its end");
    s.end_ns = 2001 * NS;
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
    s.start_ns = 0; /* open start, any end */
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
    s.start_ns = -NS;
    expect_invalid(&s, "before 1970");
    s = valid_spec();
    strcpy(s.priority, "urgent");
    expect_invalid(&s, "highest, high, medium, low, lowest");
    strcpy(s.priority, "high");
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
    strcpy(s.failure_strategy, "stop");
    expect_invalid(&s, "end, continue");
    strcpy(s.failure_strategy, "continue");
    strcpy(s.worker_group, "a/b");
    expect_invalid(&s, "worker group");
    strcpy(s.worker_group, "gpu");
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
    s.catchup_ms = -1;
    expect_invalid(&s, "catchup");
    s.catchup_ms = 3650LL * 86400 * 1000 + 1;
    expect_invalid(&s, "catchup");
    s.catchup_ms = 0; /* never run a late fire */
    cr_assert_eq(tn_sched_spec_validate(&s, &e), TN_OK, "%s", e.text);
    s.overlap = TN_OVERLAP__COUNT;
    expect_invalid(&s, "overlap");
    s.overlap = TN_OVERLAP_CANCEL_OTHER;
    /* a key that tn_sched_spec_param would have refused */
    cr_assert_eq(tn_sched_spec_param(&s, "ok", "v"), TN_OK);
    s.param_keys[0][0] = ' ';
    expect_invalid(&s, "param name");
    tn_sched_spec_fini(&s);
}

/* Seconds of a bound parsed in zone tz; fails the test on an error. */
static int64_t at(const char *text, const char *tz)
{
    int64_t ns = -1;
    tn_errmsg e = {{0}};
    cr_assert_eq(tn_sched_parse_time(text, tz, &ns, &e), TN_OK, "%s in %s: %s", text,
                 tz ? tz : "(null)", e.text);
    cr_assert_eq(ns % NS, 0);
    return ns / NS;
}

Test(schedule, parse_time_in_zone)
{
    /* 2026-01-01T00:00:00Z = 1767225600; Shanghai is +08:00 all year */
    cr_assert_eq(at("2026-01-01", NULL), 1767225600);
    cr_assert_eq(at("2026-01-01", ""), 1767225600);
    cr_assert_eq(at("2026-01-01", "UTC"), 1767225600);
    cr_assert_eq(at("2026-01-01", "Asia/Shanghai"), 1767196800);
    cr_assert_eq(at("2026-01-01 00:00:00", "Asia/Shanghai"), 1767196800);
    cr_assert_eq(at("2026-01-01 08:30", "Asia/Shanghai"), 1767227400);
    cr_assert_eq(at("2026-01-01T08:30:15", "Asia/Shanghai"), 1767227415);
    cr_assert_eq(at("2027-01-01 00:00:00", "Asia/Shanghai"), 1798732800);
    cr_assert_eq(at("2026-01-01 00:00", "+08:00"), 1767196800);
    /* with an offset the zone does not matter */
    cr_assert_eq(at("2026-01-01T00:00:00Z", "Asia/Shanghai"), 1767225600);
    cr_assert_eq(at("2026-01-01T08:00:00+08:00", "America/New_York"), 1767225600);
    cr_assert_eq(at("2026-01-01T00:00:00-0530", NULL), 1767225600 + 5 * 3600 + 1800);
    cr_assert_eq(at("2026-01-01 08:00+08:00", NULL), 1767225600);
    /* a repeated hour (Berlin falls back at 03:00 CEST on 2026-10-25): the first one */
    cr_assert_eq(at("2026-10-25 02:30", "Europe/Berlin"), 1792888200);
    cr_assert_eq(at("2026-03-08 03:30", "America/New_York"), 1772955000);
}

Test(schedule, parse_time_errors)
{
    static const struct {
        const char *text, *tz, *want;
    } bad[] = {
        {"2026-03-08 02:30", "America/New_York",
         "does not exist in time zone America/New_York"},
        {"2026-03-29T02:00:00", "Europe/Berlin", "does not exist"},
        {"tomorrow", NULL, "\"tomorrow\" is not understood"},
        {"2026-1-1", NULL, "YYYY-MM-DD"},
        {"2026-01-01 8:00", NULL, "YYYY-MM-DD HH:MM[:SS]"},
        {"2026-01-01 08:00:00.5", NULL, "not understood"},
        {"2026-01-01 08:00 ", NULL, "not understood"},
        {"2026-01-01T08:00+25:00", NULL, "not understood"},
        {"2026-02-29", NULL, "not a valid date"},
        {"2026-13-01", NULL, "not a valid date"},
        {"2026-01-01 24:00", NULL, "not a valid date"},
        {"2026-01-01 23:60", NULL, "not a valid date"},
        {"", NULL, "not understood"},
        {"2026-01-01", "Mars/Olympus", "Mars/Olympus"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ns = 42;
        tn_errmsg e = {{0}};
        cr_expect_neq(tn_sched_parse_time(bad[i].text, bad[i].tz, &ns, &e), TN_OK,
                      "\"%s\" accepted", bad[i].text);
        cr_expect_eq(ns, 42, "\"%s\": out untouched", bad[i].text);
        cr_expect(strstr(e.text, bad[i].want) != NULL, "\"%s\": message \"%s\" lacks \"%s\"",
                  bad[i].text, e.text, bad[i].want);
    }
    /* the message names the text and the accepted forms */
    tn_errmsg e = {{0}};
    int64_t ns;
    cr_assert_neq(tn_sched_parse_time("next monday", "UTC", &ns, &e), TN_OK);
    cr_assert(strstr(e.text, "\"next monday\""), "%s", e.text);
    cr_assert(strstr(e.text, "YYYY-MM-DDTHH:MM[:SS]"), "%s", e.text);
    cr_assert(strstr(e.text, "+08:00"), "%s", e.text);
    cr_assert_eq(tn_sched_parse_time(NULL, "UTC", &ns, &e), TN_ERR_INVAL);
    /* 2026-02-28 is fine, and 2028 is a leap year */
    cr_assert_eq(at("2026-02-28", NULL), 1772236800);
    cr_assert_eq(at("2028-02-29", NULL), 1835395200);
}

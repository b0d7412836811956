/* `tern schedule` and `tern backfill` as a user drives them: a real `tern standalone` in a
 * temp dir, the CLI against it (and against its store once it is gone), the output read
 * back as --json. Fires, pauses, triggers and backfill dates are checked against the
 * instances they started. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <time.h>

#include "testutil.h"
#include "rpc.h"

static char *dir;
static pid_t sa_pid;
static char data[600];

static void setup(void)
{
    dir = tu_tmpdir();
    sa_pid = 0;
    unsetenv("TERN_TOKEN");
    setenv("TERN_TZ", "UTC", 1); /* business dates of the master and of the reads */
    snprintf(data, sizeof(data), "%s/d", dir);
}

static void stop_standalone(void)
{
    if (sa_pid <= 0)
        return;
    kill(sa_pid, SIGTERM);
    int st;
    for (int t = 0; t < 500 && waitpid(sa_pid, &st, WNOHANG) != sa_pid; t++)
        usleep(10000);
    if (waitpid(sa_pid, &st, WNOHANG) == 0) {
        kill(sa_pid, SIGKILL);
        waitpid(sa_pid, &st, 0);
    }
    sa_pid = 0;
}

static void teardown(void)
{
    stop_standalone();
    tu_rm_rf(dir);
    free(dir);
}

TestSuite(schedcli, .init = setup, .fini = teardown, .timeout = 240);

/* `tern standalone --data DIR/d` (its output in DIR/sa.log); returns once it answers. */
static void start_standalone(void)
{
    char log[700], url[700];
    snprintf(log, sizeof(log), "%s/sa.log", dir);
    snprintf(url, sizeof(url), "ipc://%s/master.ctl", data);
    sa_pid = fork();
    cr_assert_geq(sa_pid, 0);
    if (sa_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(tu_tern(), tu_tern(), "standalone", "--data", data, "--no-cgroup", NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        void *r = NULL;
        size_t rl;
        if (tn_rpc_call(url, "", 0, 200, &r, &rl, NULL) == TN_OK) {
            free(r);
            return;
        }
        usleep(10000);
    }
    cr_assert_fail("the standalone did not answer on %s", url);
}

static char *out, *err;

/* `tern ARGS` (run in DIR); its exit status, output in out and err. */
__attribute__((format(printf, 1, 2))) static int tern(const char *fmt, ...)
{
    char args[4096], line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "cd '%s' && '%s' %s", dir, tu_tern(), args);
    free(out);
    free(err);
    return tu_run(line, &out, &err);
}

static void write_file(const char *name, const char *text)
{
    char path[900];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void apply(const char *name, const char *yaml)
{
    write_file(name, yaml);
    cr_assert_eq(tern("def apply %s --data d", name), 0, "%s", err);
}

/* The number after the first "key": at or after s; -1 when missing. */
static int64_t jnum(const char *s, const char *key)
{
    char k[80];
    snprintf(k, sizeof(k), "\"%s\":", key);
    const char *p = s ? strstr(s, k) : NULL;
    return p ? strtoll(p + strlen(k), NULL, 10) : -1;
}

/* The string after the first "key": at or after s, into buf ("" when missing). */
static const char *jstr(const char *s, const char *key, char *buf, size_t cap)
{
    char k[80];
    snprintf(k, sizeof(k), "\"%s\":\"", key);
    const char *p = s ? strstr(s, k) : NULL;
    buf[0] = 0;
    if (p) {
        p += strlen(k);
        const char *q = strchr(p, '"');
        snprintf(buf, cap, "%.*s", (int)(q ? q - p : 0), p);
    }
    return buf;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* `schedule show WF --json` until its "fires" reaches n (polling; the suite's timeout
 * bounds it). Returns the count. */
static int64_t wait_fires(const char *wf, int64_t n)
{
    int64_t f = -1;
    for (int i = 0; i < 6000; i++) {
        cr_assert_eq(tern("schedule show %s --data d --json", wf), 0, "%s", err);
        f = jnum(out, "fires");
        if (f >= n)
            return f;
        usleep(20000);
    }
    cr_assert_fail("%s never reached %" PRId64 " fires: %s", wf, n, out);
    return f;
}

/* The state of instance id once it is final (polling `status --json`); its JSON in out. */
static void wait_final(uint64_t id, char *state, size_t cap)
{
    for (int i = 0; i < 6000; i++) {
        cr_assert_eq(tern("status %" PRIu64 " --data d --json", id), 0, "%s", err);
        jstr(out, "state", state, cap);
        if (!strcmp(state, "SUCCESS") || !strcmp(state, "FAILURE") || !strcmp(state, "STOP") ||
            !strcmp(state, "PAUSE"))
            return;
        usleep(20000);
    }
    cr_assert_fail("instance %" PRIu64 " never ended: %s", id, out);
}

/* Sleep past the next two whole seconds: a schedule firing every second would have
 * fired meanwhile (a wait for something that must not happen cannot poll). */
static void pass_two_seconds(void)
{
    int64_t t = now_ns(), until = (t / 1000000000LL + 2) * 1000000000LL + 300000000LL;
    while ((t = now_ns()) < until)
        usleep((useconds_t)((until - t) / 1000));
}

static const char noop_wf[] = "name: w\ntasks:\n  - name: a\n    type: noop\n";

/* Every fire in `schedule show --json`'s last_fires: its instance reached SUCCESS with
 * the fire's nominal time as its business time. Returns how many it checked. */
static int check_fires(const char *show)
{
    const char *lf = strstr(show, "\"last_fires\":[");
    cr_assert_not_null(lf, "%s", show);
    int n = 0;
    char *copy = strdup(lf);
    for (const char *p = strstr(copy, "{\"nominal\""); p; p = strstr(p + 1, "{\"nominal\"")) {
        char nominal[64], biz[64], state[32];
        jstr(p, "nominal", nominal, sizeof(nominal));
        uint64_t inst = (uint64_t)jnum(p, "instance");
        cr_assert_gt(inst, 0, "%s", p);
        wait_final(inst, state, sizeof(state));
        cr_expect_str_eq(state, "SUCCESS", "instance %" PRIu64 ": %s", inst, out);
        jstr(out, "business_time", biz, sizeof(biz));
        /* nominal "YYYY-MM-DDTHH:MM:SSZ", business time the same to the millisecond */
        cr_expect(strlen(nominal) == 20 && strncmp(nominal, biz, 19) == 0 &&
                      strcmp(biz + 19, ".000Z") == 0,
                  "fire %s started instance %" PRIu64 " with business time %s", nominal, inst,
                  biz);
        n++;
    }
    free(copy);
    return n;
}

/* A schedule firing every second starts an instance per fire, each with the fire's
 * nominal time as its business time; pause stops the fires, resume skips what was missed,
 * trigger starts one now, rm ends it. */
Test(schedcli, fires_pause_resume_trigger_rm)
{
    start_standalone();
    apply("w.yaml", noop_wf);
    cr_assert_eq(tern("schedule set w --cron '* * * * * ?' --param who=cron --data d"), 0, "%s",
                 err);
    wait_fires("w", 2);
    cr_assert_geq(check_fires(out), 2, "%s", out);
    /* check_fires left the last fire's status in out: the schedule's params reached it */
    cr_expect(strstr(out, "\"overrides\":{\"who\":\"cron\"}"), "%s", out);
    cr_assert_eq(tern("schedule ls --data d --json"), 0, "%s", err);
    cr_expect(strstr(out, "\"workflow\":\"w\"") && strstr(out, "\"state\":\"ACTIVE\""), "%s",
              out);

    cr_assert_eq(tern("schedule pause w --reason 'upstream late' --data d"), 0, "%s", err);
    cr_assert_eq(tern("schedule show w --data d --json"), 0, "%s", err);
    int64_t paused_fires = jnum(out, "fires"), last_before = 0;
    for (const char *p = strstr(out, "\"nominal_ns\":"); p;
         p = strstr(p + 1, "\"nominal_ns\":"))
        last_before = strtoll(p + 13, NULL, 10); /* ascending: the last is the newest */
    char buf[64];
    cr_expect_str_eq(jstr(out, "state", buf, sizeof(buf)), "PAUSED");
    cr_expect(strstr(out, "upstream late"), "%s", out);
    pass_two_seconds();
    cr_assert_eq(tern("schedule show w --data d --json"), 0, "%s", err);
    cr_expect_eq(jnum(out, "fires"), paused_fires, "a paused schedule fired: %s", out);

    int64_t resumed_at = now_ns();
    cr_assert_eq(tern("schedule resume w --data d"), 0, "%s", err);
    wait_fires("w", paused_fires + 2);
    /* no fire of a nominal time that came while paused */
    const char *lf = strstr(out, "\"last_fires\"");
    for (const char *p = strstr(lf, "\"nominal_ns\":"); p;
         p = strstr(p + 1, "\"nominal_ns\":")) {
        int64_t nom = strtoll(p + 13, NULL, 10);
        cr_expect(nom <= last_before || nom > resumed_at,
                  "nominal %" PRId64 " fired though it came while paused: %s", nom, out);
    }

    cr_assert_eq(tern("schedule trigger w --data d"), 0, "%s", err);
    uint64_t trig = 0;
    cr_assert_eq(sscanf(out, "instance %" SCNu64, &trig), 1, "%s", out);
    wait_final(trig, buf, sizeof(buf));
    cr_expect_str_eq(buf, "SUCCESS");
    cr_assert_eq(tern("schedule trigger w --data d --json"), 0, "%s", err);
    cr_expect_gt(jnum(out, "instance"), (int64_t)trig, "%s", out);

    cr_assert_eq(tern("schedule rm w --data d"), 0, "%s", err);
    cr_assert_eq(tern("schedule show w --data d --json"), 0, "%s", err);
    int64_t removed_fires = jnum(out, "fires");
    cr_expect_str_eq(jstr(out, "state", buf, sizeof(buf)), "REMOVED");
    cr_assert_eq(tern("schedule ls --data d"), 0, "%s", err);
    cr_expect(!strstr(out, "\nw "), "a removed schedule is listed: %s", out);
    cr_assert_eq(tern("schedule ls --all --data d"), 0, "%s", err);
    cr_expect(strstr(out, "REMOVED"), "%s", out);
    pass_two_seconds();
    cr_assert_eq(tern("schedule show w --data d --json"), 0, "%s", err);
    cr_expect_eq(jnum(out, "fires"), removed_fires, "a removed schedule fired: %s", out);
    cr_expect_eq(tern("schedule pause w --data d"), 1);
    cr_expect(strstr(err, "has no schedule"), "%s", err);

    /* with the master gone, the reads answer from the store */
    stop_standalone();
    cr_assert_eq(tern("schedule show w --data d"), 0, "%s", err);
    cr_expect(strstr(out, "REMOVED") && strstr(err, "(from the store"), "%s%s", out, err);
    cr_expect_eq(tern("schedule trigger w --data d"), 1, "%s", out);
}

/* `schedule next` tries an expression with no store: local and UTC times across a DST
 * change, --json, and the errors. */
Test(schedcli, next_of_an_expression)
{
    cr_assert_eq(tern("schedule next --cron '0 0 2 * * ?' --tz Europe/Berlin -n 3 "
                      "--after 2026-10-23T12:00:00Z"),
                 0, "%s", err);
    /* Oct 25 02:00 happens twice (clocks fall back at 03:00 CEST): it fires once, at the
     * first, and the next day is on CET */
    cr_expect_str_eq(out, "2026-10-24 02:00:00 +02:00 Europe/Berlin   2026-10-24T00:00:00Z\n"
                          "2026-10-25 02:00:00 +02:00 Europe/Berlin   2026-10-25T00:00:00Z\n"
                          "2026-10-26 02:00:00 +01:00 Europe/Berlin   2026-10-26T01:00:00Z\n");
    /* Mar 29 02:00 does not exist (clocks spring forward to 03:00): that day has no fire */
    cr_assert_eq(tern("schedule next --cron '0 0 2 * * ?' --tz Europe/Berlin -n 3 "
                      "--after 2026-03-27T12:00:00Z"),
                 0, "%s", err);
    cr_expect_str_eq(out, "2026-03-28 02:00:00 +01:00 Europe/Berlin   2026-03-28T01:00:00Z\n"
                          "2026-03-30 02:00:00 +02:00 Europe/Berlin   2026-03-30T00:00:00Z\n"
                          "2026-03-31 02:00:00 +02:00 Europe/Berlin   2026-03-31T00:00:00Z\n");
    cr_assert_eq(tern("schedule next --cron '0 0 2 * * ?' --tz Europe/Berlin -n 1 "
                      "--after 2026-10-23T12:00:00Z --json"),
                 0, "%s", err);
    cr_expect_str_eq(out, "[{\"local\":\"2026-10-24 02:00:00 +02:00\",\"utc\":\"2026-10-24T00:"
                          "00:00Z\",\"ns\":1792800000000000000}]\n");
    cr_expect_eq(tern("schedule next --cron '0 0 25 * * ?'"), 2);
    cr_expect(strstr(err, "position 5") && strstr(err, "hour 25"), "%s", err);
    cr_expect_eq(tern("schedule next --cron '0 0 2 * * ?' --tz Mars/Olympus"), 2);
    cr_expect(strstr(err, "Mars/Olympus"), "%s", err);
    cr_expect_eq(tern("schedule next --cron '0 0 2 * * ?' -n 0"), 2);
}

/* Usage errors exit 2 and say what to do; an unknown workflow or schedule exits 1. */
Test(schedcli, errors)
{
    cr_expect_eq(tern("schedule"), 2);
    cr_expect_eq(tern("schedule shwo w"), 2);
    cr_expect(strstr(err, "did you mean `tern schedule show`"), "%s", err);
    cr_expect_eq(tern("schedule set w --data d"), 2);
    cr_expect(strstr(err, "--cron"), "%s", err);
    cr_expect_eq(tern("schedule set w --cron '0 0 2 * *  ?' --overlap sometimes"), 2);
    cr_expect(strstr(err, "buffer_one"), "%s", err);
    cr_expect_eq(tern("schedule set w --cron '0 61 2 * * ?'"), 2);
    cr_expect(strstr(err, "position"), "%s", err);
    cr_expect_eq(tern("schedule set w --cron '0 0 2 * * ?' --tz Nowhere/City"), 2);
    cr_expect(strstr(err, "Nowhere/City"), "%s", err);
    cr_expect_eq(tern("schedule set w --cron '0 0 2 * * ?' --start 2026-13-01"), 2);
    cr_expect_eq(tern("backfill w"), 2);
    cr_expect(strstr(err, "--from"), "%s", err);
    cr_expect_eq(tern("backfill w --dates 2026-01-01 --from 2026-01-01 --to 2026-01-02"), 2);
    cr_expect_eq(tern("backfill w --dates 2026-01-01,someday"), 2);
    cr_expect(strstr(err, "someday"), "%s", err);
    cr_expect_eq(tern("backfill w --from 2026-01-01 --to 2026-01-02 --order sideways"), 2);
    cr_expect_eq(tern("backfill shwo 1"), 2);
    cr_expect(strstr(err, "did you mean `tern backfill show`"), "%s", err);
    cr_expect_eq(tern("backfill show x"), 2);
    cr_assert_eq(tern("help"), 0);
    cr_expect(strstr(out, "schedule") && strstr(out, "backfill"), "%s", out);
    cr_assert_eq(tern("schedule --help"), 0);
    cr_expect(strstr(out, "--overlap") && !strstr(out, "--after"), "%s", out);

    start_standalone();
    apply("w.yaml", noop_wf);
    cr_expect_eq(tern("schedule set nope --cron '0 0 2 * * ?' --data d"), 1);
    cr_expect(strstr(err, "no workflow named \"nope\""), "%s", err);
    cr_expect_eq(tern("schedule show w --data d"), 1);
    cr_expect(strstr(err, "has no schedule"), "%s", err);
    cr_expect_eq(tern("schedule trigger w --data d"), 1);
    cr_expect_eq(tern("backfill nope --dates 2026-01-01 --data d"), 1);
    cr_expect(strstr(err, "no workflow named \"nope\""), "%s", err);
    cr_expect_eq(tern("backfill w --from 2026-01-05 --to 2026-01-01 --data d"), 2);
    cr_expect(strstr(err, "after"), "%s", err);
    cr_expect_eq(tern("backfill w --from 1990-01-01 --to 2030-01-01 --data d"), 2);
    cr_expect(strstr(err, "more than 10000"), "%s", err);
    cr_expect_eq(tern("backfill show 99 --data d"), 1);
    cr_expect(strstr(err, "no backfill 99"), "%s", err);
}

/* A viewer token reads schedules but cannot change them; an operator's can. */
Test(schedcli, roles)
{
    start_standalone();
    apply("w.yaml", noop_wf);
    cr_assert_eq(tern("token add v --role viewer --data d"), 0, "%s", err);
    write_file("v.tok", out);
    cr_assert_eq(tern("token add o --role operator --data d"), 0, "%s", err);
    write_file("o.tok", out);
    cr_expect_eq(tern("schedule set w --cron '0 0 2 * * ?' --token-file v.tok --data d"), 1);
    cr_expect(strstr(err, "permission denied") && strstr(err, "operator"), "%s", err);
    cr_expect_eq(tern("backfill w --dates 2026-01-01 --token-file v.tok --data d"), 1);
    cr_expect(strstr(err, "permission denied"), "%s", err);
    cr_assert_eq(tern("schedule set w --cron '0 0 2 * * ?' --token-file o.tok --data d"), 0,
                 "%s", err);
    cr_expect_eq(tern("schedule ls --token-file v.tok --data d"), 0, "%s", err);
    cr_expect(strstr(out, "0 0 2 * * ?"), "%s", out);
    cr_expect_eq(tern("schedule show w --token-file v.tok --data d"), 0, "%s", err);
    cr_expect_eq(tern("schedule next w -n 2 --token-file v.tok --data d"), 0, "%s", err);
    cr_expect_eq(tern("schedule pause w --token-file v.tok --data d"), 1);
    cr_expect_eq(tern("schedule pause w --token-file o.tok --data d"), 0, "%s", err);
}

static const char bf_wf[] = "name: bf\n"
                            "params:\n"
                            "  day: \"${system.biz.date}\"\n"
                            "tasks:\n"
                            "  - name: a\n"
                            "    type: noop\n";

/* `backfill show ID --json` until every date started and its instance ended (or, with
 * want_state, until the backfill is in that state). */
static void wait_backfill(uint64_t id, const char *want_state)
{
    char st[32];
    for (int i = 0; i < 6000; i++) {
        cr_assert_eq(tern("backfill show %" PRIu64 " --data d --json", id), 0, "%s", err);
        if (want_state && strcmp(jstr(out, "state", st, sizeof(st)), want_state) == 0)
            return;
        const char *dates = strstr(out, "\"dates\":[");
        bool done = !want_state && jnum(out, "started") == jnum(out, "total") && dates &&
                    !strstr(dates, "\"state\":\"RUNNING_EXECUTION\"") &&
                    !strstr(dates, "\"state\":\"SUBMITTED_SUCCESS\"") &&
                    !strstr(dates, "\"state\":\"waiting\"");
        if (done)
            return;
        usleep(20000);
    }
    cr_assert_fail("backfill %" PRIu64 " never got there: %s", id, out);
}

/* Three dates, one at a time: three instances in date order, each after the previous
 * ended, each with ${system.biz.date} the day before its date. */
Test(schedcli, backfill_runs_the_dates_in_order)
{
    start_standalone();
    apply("bf.yaml", bf_wf);
    cr_assert_eq(tern("backfill bf --dates 2026-01-03,2026-01-01,2026-01-02 --parallel 1 "
                      "--param who=bf --json --data d"),
                 0, "%s", err);
    cr_expect(strstr(out, "\"dates\":[\"2026-01-01T00:00:00Z\",\"2026-01-02T00:00:00Z\","
                          "\"2026-01-03T00:00:00Z\"]"),
              "%s", out);
    uint64_t id = (uint64_t)jnum(out, "id");
    cr_assert_gt(id, 0, "%s", out);
    wait_backfill(id, NULL);
    cr_expect_eq(jnum(out, "total"), 3, "%s", out);
    char *show = strdup(out);
    static const char *const biz[] = {"20251231", "20260101", "20260102"};
    uint64_t prev = 0;
    char prev_end[64] = "";
    const char *p = strstr(show, "\"dates\":[");
    for (int i = 0; i < 3; i++) {
        p = strstr(p + 1, "{\"date\"");
        cr_assert_not_null(p, "%s", show);
        char state[32], day[32], line[64];
        uint64_t inst = (uint64_t)jnum(p, "instance");
        cr_expect_str_eq(jstr(p, "state", state, sizeof(state)), "SUCCESS", "%s", show);
        cr_expect_gt(inst, prev, "date %d ran before the one before it: %s", i, show);
        cr_assert_eq(tern("status %" PRIu64 " --data d --json", inst), 0, "%s", err);
        const char *params = strstr(out, "\"params\":");
        cr_expect_str_eq(jstr(params, "day", day, sizeof(day)), biz[i], "%s", out);
        cr_expect(strstr(out, "\"overrides\":{\"who\":\"bf\"}"), "%s", out);
        /* one at a time: it started after the previous one ended */
        cr_assert_eq(tern("ls --data d --json"), 0, "%s", err);
        snprintf(line, sizeof(line), "{\"id\":%" PRIu64 ",", inst);
        const char *row = strstr(out, line);
        cr_assert_not_null(row, "%s", out);
        char started[64], ended[64];
        jstr(row, "started_at", started, sizeof(started));
        jstr(row, "ended_at", ended, sizeof(ended));
        cr_expect(strcmp(started, prev_end) >= 0, "instance %" PRIu64 " started %s, before %s",
                  inst, started, prev_end);
        snprintf(prev_end, sizeof(prev_end), "%s", ended);
        prev = inst;
    }
    free(show);
    cr_assert_eq(tern("backfill ls --data d --json"), 0, "%s", err);
    cr_expect(strstr(out, "\"workflow\":\"bf\"") && jnum(out, "started") == 3, "%s", out);
    /* with the master gone, the reads answer from the store; the changes need a master */
    stop_standalone();
    cr_assert_eq(tern("backfill show %" PRIu64 " --data d", id), 0, "%s", err);
    cr_expect(strstr(out, "3 of 3 dates started") && strstr(err, "(from the store"), "%s%s",
              out, err);
    cr_expect_eq(tern("backfill stop %" PRIu64 " --data d", id), 1);
}

/* --from/--to: the schedule's fire times in the range, read in its zone, up to the end
 * of the --to day; with no schedule every day at 00:00; none at all is refused. */
Test(schedcli, backfill_range_dates)
{
    start_standalone();
    apply("bf.yaml", bf_wf);
    apply("w.yaml", noop_wf);
    cr_assert_eq(tern("backfill w --from 2026-01-01 --to 2026-01-03 --order desc --json "
                      "--data d"),
                 0, "%s", err);
    cr_expect(strstr(out, "\"dates\":[\"2026-01-03T00:00:00Z\",\"2026-01-02T00:00:00Z\","
                          "\"2026-01-01T00:00:00Z\"]"),
              "%s", out);
    cr_assert_eq(tern("schedule set bf --cron '0 0 6 * * ?' --tz Asia/Shanghai --data d"), 0,
                 "%s", err);
    cr_assert_eq(tern("backfill bf --from 2026-01-01 --to 2026-01-02 --json --data d"), 0, "%s",
                 err);
    cr_expect(strstr(out, "\"dates\":[\"2025-12-31T22:00:00Z\",\"2026-01-01T22:00:00Z\"]"),
              "%s", out);
    cr_assert_eq(tern("schedule set bf --cron '0 0 6 1 1 ?' --data d"), 0, "%s", err);
    cr_expect_eq(tern("backfill bf --from 2026-02-01 --to 2026-02-03 --data d"), 2);
    cr_expect(strstr(err, "no dates"), "%s", err);
}

/* stop: the running date's instance is stopped and no more start; resume starts the rest. */
Test(schedcli, backfill_stop_and_resume)
{
    start_standalone();
    char yaml[1200];
    snprintf(yaml, sizeof(yaml),
             "name: gate\ntasks:\n  - name: wait\n    type: shell\n"
             "    command: while [ ! -f '%s/go' ]; do sleep 0.05; done\n",
             dir);
    apply("gate.yaml", yaml);
    cr_assert_eq(tern("backfill gate --dates 2026-01-01,2026-01-02,2026-01-03 --json --data d"),
                 0, "%s", err);
    uint64_t id = (uint64_t)jnum(out, "id");
    char state[32];
    for (int i = 0; i < 6000; i++) { /* the first date's instance runs (and waits) */
        cr_assert_eq(tern("backfill show %" PRIu64 " --data d --json", id), 0, "%s", err);
        if (strstr(out, "\"state\":\"RUNNING_EXECUTION\""))
            break;
        usleep(20000);
    }
    uint64_t first = (uint64_t)jnum(strstr(out, "\"dates\":["), "instance");
    cr_assert_gt(first, 0, "%s", out);
    cr_assert_eq(tern("backfill stop %" PRIu64 " --data d", id), 0, "%s", err);
    wait_final(first, state, sizeof(state));
    cr_expect_str_eq(state, "STOP");
    cr_assert_eq(tern("backfill show %" PRIu64 " --data d --json", id), 0, "%s", err);
    cr_expect_str_eq(jstr(out, "state", state, sizeof(state)), "STOPPED", "%s", out);
    cr_expect_eq(jnum(out, "started"), 1, "%s", out);

    write_file("go", "");
    cr_assert_eq(tern("backfill resume %" PRIu64 " --data d", id), 0, "%s", err);
    wait_backfill(id, NULL);
    cr_expect_eq(jnum(out, "started"), 3, "%s", out);
    const char *d2 = strstr(strstr(out, "\"dates\":[") + 10, "{\"date\"");
    cr_expect_str_eq(jstr(strstr(d2 + 1, "{\"date\""), "state", state, sizeof(state)),
                     "SUCCESS", "%s", out);
    wait_backfill(id, "DONE");
}

/* Every option of `set` reaches the schedule (show --json), the window bounds read in
 * the zone, the next fire times start at the window; a second set replaces the whole
 * spec. */
Test(schedcli, set_carries_every_option_and_replaces_the_whole_spec)
{
    start_standalone();
    apply("w.yaml", noop_wf);
    cr_assert_eq(
        tern("schedule set w --cron '0 0 6 * * ?' --tz Asia/Shanghai --start 2030-01-01 "
             "--end '2030-02-01 12:00' --param a=1 --param 'b=x y' --overlap buffer_one "
             "--catchup 5m --pause-on-failure --priority high --worker-group gpu "
             "--failure-strategy continue --data d"),
        0, "%s", err);
    cr_assert_eq(tern("schedule show w --json --data d"), 0, "%s", err);
    static const char *const want[] = {
        "\"cron\":\"0 0 6 * * ?\"", "\"tz\":\"Asia/Shanghai\"",
        "\"start\":\"2029-12-31T16:00:00Z\"", "\"end\":\"2030-02-01T04:00:00Z\"",
        "\"overlap\":\"buffer_one\"", "\"catchup_ms\":300000", "\"pause_on_failure\":true",
        "\"priority\":\"high\"", "\"failure_strategy\":\"continue\"",
        "\"worker_group\":\"gpu\"", "\"params\":{\"a\":\"1\",\"b\":\"x y\"}",
        /* the first fire is the window's first: Jan 1 06:00 in Shanghai */
        "\"next\":[{\"local\":\"2030-01-01 06:00:00 +08:00\",\"utc\":\"2029-12-31T22:00:00Z\""};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_expect(strstr(out, want[i]), "no %s in %s", want[i], out);
    cr_assert_eq(tern("schedule next w -n 40 --data d"), 0, "%s", err);
    cr_expect(strstr(out, "2030-02-01 06:00:00 +08:00") && !strstr(out, "2030-02-02"),
              "the window ends on Feb 1 12:00: %s", out);

    cr_assert_eq(tern("schedule set w --cron '0 0 6 * * ?' --data d"), 0, "%s", err);
    cr_assert_eq(tern("schedule show w --json --data d"), 0, "%s", err);
    static const char *const reset[] = {"\"tz\":\"UTC\"",       "\"start\":null",
                                        "\"end\":null",         "\"overlap\":\"allow_all\"",
                                        "\"catchup_ms\":60000", "\"pause_on_failure\":false",
                                        "\"priority\":\"\"",    "\"worker_group\":\"\"",
                                        "\"params\":{}"};
    for (size_t i = 0; i < sizeof(reset) / sizeof(reset[0]); i++)
        cr_expect(strstr(out, reset[i]), "no %s in %s", reset[i], out);
}

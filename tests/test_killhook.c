/* Application kill hooks (core/worker/killhook.h) on their own: the hook syntax and its
 * errors, what a killed attempt's log yields (distinct ids, refusals, the scanned tail),
 * the commands run once each with the id quoted, and their timeout. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>

#include "testutil.h"
#include "killhook.h"
#include "util.h"

static char *dir;

static void setup(void)
{
    dir = tu_tmpdir();
}

static void teardown(void)
{
    if (dir)
        tu_rm_rf(dir);
    free(dir);
    dir = NULL;
}

TestSuite(killhook, .init = setup, .fini = teardown, .timeout = 120);

static char *path_of(const char *name)
{
    char *p = malloc(700);
    snprintf(p, 700, "%s/%s", dir, name);
    return p;
}

static void write_text(const char *name, const char *text)
{
    char *p = path_of(name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(p);
}

static char *read_text(const char *name)
{
    char *p = path_of(name), *out = NULL;
    FILE *f = fopen(p, "r");
    free(p);
    if (!f)
        return strdup("");
    size_t cap = 1 << 16, n = fread(out = malloc(cap), 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    return out;
}

static size_t count(const char *text, const char *s)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, s)); p += strlen(s))
        n++;
    return n;
}

static tn_kill_hooks *hooks_of(const char *spec, uint64_t timeout_ms)
{
    tn_kill_hooks *h = NULL;
    tn_errmsg em = {{0}};
    const char *specs[] = {spec};
    cr_assert_eq(tn_kill_hooks_new(specs, 1, timeout_ms, &h, &em), TN_OK, "%s", em.text);
    cr_assert_not_null(h);
    return h;
}

/* Polls s until every command ended; a bound far above any hook here, not a speed check. */
static void wait_done(tn_hook_set *s)
{
    for (int i = 0; i < 6000; i++) {
        if (tn_hook_set_poll(s, tn_mono_ns()))
            return;
        usleep(5000);
    }
    cr_assert_fail("the kill hooks never ended");
}

/* The run whose id is id, or NULL. */
static const tn_hook_run *run_of(tn_hook_runs r, const char *id)
{
    for (uint32_t i = 0; i < r.n; i++)
        if (tn_str_eq(r.v[i].id, id))
            return &r.v[i];
    return NULL;
}

Test(killhook, bad_hooks_are_refused_naming_the_hook_and_why)
{
    static const struct {
        const char *spec, *want;
    } cases[] = {
        {"application_[0-9]+", "no '='"},
        {"=yarn application -kill {id}", "regex before '=' must be 1-1024 bytes"},
        {"app(=kill {id}", "regex \"app(\""},
        {"application_[0-9]+=yarn application -kill", "name the matched id as {id}"},
    };
    for (size_t i = 0; i < TN_ARRAY_LEN(cases); i++) {
        const char *specs[] = {"ok_[0-9]+=echo {id}", cases[i].spec};
        tn_kill_hooks *h = (tn_kill_hooks *)1;
        tn_errmsg em = {{0}};
        cr_expect_eq(tn_kill_hooks_new(specs, 2, 0, &h, &em), TN_ERR_INVAL, "%s",
                     cases[i].spec);
        cr_expect_null(h);
        cr_expect(strstr(em.text, "kill hook 2 "), "%s", em.text);
        cr_expect(strstr(em.text, cases[i].want), "%s: %s", cases[i].spec, em.text);
    }
    const char *many[TN_KILL_HOOKS_MAX + 1];
    for (int i = 0; i <= TN_KILL_HOOKS_MAX; i++)
        many[i] = "a=echo {id}";
    tn_kill_hooks *h = NULL;
    tn_errmsg em = {{0}};
    cr_expect_eq(tn_kill_hooks_new(many, TN_KILL_HOOKS_MAX + 1, 0, &h, &em), TN_ERR_INVAL);
    cr_expect(strstr(em.text, "at most 16"), "%s", em.text);
    /* a '=' of the regex as [=], spaces around both parts trimmed (the config file form) */
    const char *ok[] = {"  job[=_][0-9]+ = echo {id}  "};
    cr_assert_eq(tn_kill_hooks_new(ok, 1, 0, &h, &em), TN_OK, "%s", em.text);
    write_text("t.log", "x job_12 y\n");
    char *log = path_of("t.log");
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 1, 1, NULL);
    cr_assert_not_null(s);
    wait_done(s);
    tn_hook_runs r = tn_hook_set_runs(s);
    cr_assert_eq(r.n, 1);
    cr_expect(tn_str_eq(r.v[0].command, "echo 'job_12'"), "%.*s", (int)r.v[0].command.len,
              r.v[0].command.p);
    tn_hook_set_free(s);
    tn_kill_hooks_free(h);
    free(log);
}

/* Two ids, one of them twice, and matches that would be shell: each id's command runs once
 * with the id as one quoted word; the others are refused and never reach a shell. */
Test(killhook, each_distinct_id_runs_once_and_shell_in_the_log_never_runs)
{
    char spec[1200];
    snprintf(spec, sizeof(spec), "application_[^ ]+=printf '%%s|\\n' {id} >>%s/calls", dir);
    tn_kill_hooks *h = hooks_of(spec, 0);
    char text[2000];
    snprintf(text, sizeof(text),
             "Submitted application application_1700000000000_0001\n"
             "tracking application_1700000000000_0002 and application_1700000000000_0001\n"
             "evil application_1;touch %s/pwned1\n"
             "evil application_$(touch${IFS}%s/pwned2)\n"
             "evil application_`touch${IFS}%s/pwned3`\n"
             "the end application_1700000000000_0002\n",
             dir, dir, dir);
    write_text("t.log", text);
    char *log = path_of("t.log");
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 7, 2, "etl");
    cr_assert_not_null(s);
    wait_done(s);
    char *calls = read_text("calls");
    cr_expect_eq(count(calls, "application_1700000000000_0001|\n"), 1, "%s", calls);
    cr_expect_eq(count(calls, "application_1700000000000_0002|\n"), 1, "%s", calls);
    cr_expect_eq(count(calls, "|\n"), 2, "only the two ids ran: %s", calls);
    struct stat st;
    for (int i = 1; i <= 3; i++) {
        char p[800];
        snprintf(p, sizeof(p), "%s/pwned%d", dir, i);
        cr_expect_neq(stat(p, &st), 0, "%s exists: the log ran as shell", p);
    }
    tn_hook_runs r = tn_hook_set_runs(s);
    cr_expect_eq(r.n, 5, "2 commands and 3 refusals");
    const tn_hook_run *one = run_of(r, "application_1700000000000_0001");
    cr_assert_not_null(one);
    cr_expect(tn_str_eq(one->outcome, "exit 0"));
    cr_expect(strstr(one->command.p, "'application_1700000000000_0001'"));
    uint32_t refused = 0;
    for (uint32_t i = 0; i < r.n; i++)
        if (r.v[i].command.len == 0) {
            refused++;
            cr_expect(strncmp(r.v[i].outcome.p, "refused: ", 9) == 0);
        }
    cr_expect_eq(refused, 3);
    cr_expect_not_null(run_of(r, "application_1;touch"));
    tn_hook_set_free(s);
    /* the task's log says what ran */
    char *after = read_text("t.log");
    cr_expect(strstr(after, "[tern] kill hook: printf"), "%s", after);
    cr_expect(strstr(after, "'application_1700000000000_0002' >>"), "%s", after);
    cr_expect(strstr(after, "-> exit 0"), "%s", after);
    free(after);
    free(calls);
    free(log);
    tn_kill_hooks_free(h);
}

Test(killhook, no_match_runs_nothing_and_an_exit_status_is_reported)
{
    char spec[1200];
    snprintf(spec, sizeof(spec), "job_[0-9]+=echo {id} >>%s/calls; exit 3", dir);
    tn_kill_hooks *h = hooks_of(spec, 0);
    write_text("t.log", "application_1700000000000_0001\nnothing else\n");
    char *log = path_of("t.log");
    cr_expect_null(tn_kill_hooks_start(h, log, dir, 1, 1, NULL));
    char *missing = path_of("no-such.log");
    cr_expect_null(tn_kill_hooks_start(h, missing, dir, 1, 1, NULL));
    cr_expect_null(tn_kill_hooks_start(NULL, log, dir, 1, 1, NULL));
    char *calls = read_text("calls");
    cr_expect_str_eq(calls, "");
    free(calls);
    write_text("t.log", "job_42\n");
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 1, 1, NULL);
    cr_assert_not_null(s);
    wait_done(s);
    tn_hook_runs r = tn_hook_set_runs(s);
    cr_assert_eq(r.n, 1);
    cr_expect(tn_str_eq(r.v[0].outcome, "exit 3"), "%.*s", (int)r.v[0].outcome.len,
              r.v[0].outcome.p);
    tn_hook_set_free(s);
    free(log);
    free(missing);
    tn_kill_hooks_free(h);
}

/* A command past its timeout is killed with everything it started. */
Test(killhook, a_command_past_its_timeout_is_killed_with_its_children)
{
    char spec[1200];
    snprintf(spec, sizeof(spec), "job_[0-9]+=sleep 300 & echo $! >%s/child; wait; echo {id}",
             dir);
    tn_kill_hooks *h = hooks_of(spec, 300);
    write_text("t.log", "job_1\n");
    char *log = path_of("t.log");
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 1, 1, NULL);
    cr_assert_not_null(s);
    wait_done(s);
    tn_hook_runs r = tn_hook_set_runs(s);
    cr_assert_eq(r.n, 1);
    cr_expect(tn_str_eq(r.v[0].outcome, "timed out after 300ms; killed"), "%.*s",
              (int)r.v[0].outcome.len, r.v[0].outcome.p);
    char *child = read_text("child");
    pid_t pid = (pid_t)atoi(child);
    cr_assert_gt(pid, 0, "the hook wrote its child's pid");
    /* the sleep was in the hook's process group: killed (and reaped by init or us) */
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; i++) {
        char p[64], st[512] = "";
        snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
        FILE *f = fopen(p, "r");
        if (f) {
            (void)!fgets(st, sizeof(st), f);
            fclose(f);
        }
        gone = !f || strstr(st, ") Z ") != NULL;
        if (!gone)
            usleep(5000);
    }
    cr_expect(gone, "the hook's child %d outlived its timeout", (int)pid);
    free(child);
    tn_hook_set_free(s);
    free(log);
    tn_kill_hooks_free(h);
}

/* Only the last 8 MiB of the log are read, from a line start: an id before them, or the
 * rest of one on the line they cut ("cdef_2" of "abcdef_2"), is not run; one after is. */
Test(killhook, only_the_logs_tail_is_scanned)
{
    char spec[1200];
    snprintf(spec, sizeof(spec), "[a-f]+_[0-9]+=echo {id} >>%s/calls", dir);
    tn_kill_hooks *h = hooks_of(spec, 0);
    char *log = path_of("t.log");
    FILE *f = fopen(log, "w");
    cr_assert_not_null(f);
    static const char l1[] = "fed_1 before the tail\n", l2[] = "abcdef_2 and its line\n",
                      l3[] = "fed_3 in the tail\n";
    fputs(l1, f);
    fputs(l2, f);
    /* the tail starts 2 bytes into l2 */
    long filler = (long)TN_KILL_HOOK_SCAN_MAX - (long)strlen(l2) - (long)strlen(l3) + 2;
    for (long i = 0; i < filler; i++)
        fputc(i % 100 == 99 || i == filler - 1 ? '\n' : 'x', f);
    fputs(l3, f);
    fclose(f);
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 1, 1, NULL);
    cr_assert_not_null(s);
    wait_done(s);
    cr_expect_eq(tn_hook_set_runs(s).n, 1);
    tn_hook_set_free(s);
    char *calls = read_text("calls");
    cr_expect_str_eq(calls, "fed_3\n");
    free(calls);
    free(log);
    tn_kill_hooks_free(h);
}

/* A regex that is slow on the log (glibc's regexec is quadratic for [a-z]+_ on a long run
 * of letters, and the log is the task's) cannot hold the worker: the scan stops after 1 s,
 * newest lines first, and says so; what it found runs. 2048 lines of 4 KiB of letters take
 * minutes to scan in full. */
Test(killhook, a_slow_scan_stops_newest_lines_first_and_says_so)
{
    char spec[1200];
    snprintf(spec, sizeof(spec), "[a-z]+_[0-9]+=echo {id} >>%s/calls", dir);
    tn_kill_hooks *h = hooks_of(spec, 0);
    char *log = path_of("t.log");
    FILE *f = fopen(log, "w");
    cr_assert_not_null(f);
    fputs("job_1 the oldest\n", f);
    for (int l = 0; l < 2000; l++) {
        for (int i = 0; i < 4000; i++)
            fputc('x', f);
        fputc('\n', f);
    }
    fputs("job_9 the newest\n", f);
    fclose(f);
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 1, 1, NULL);
    cr_assert_not_null(s);
    wait_done(s);
    tn_hook_runs r = tn_hook_set_runs(s);
    const tn_hook_run *cut = run_of(r, "(scan)");
    cr_assert_not_null(cut);
    cr_expect(strstr(cut->outcome.p, "stopped after 1s"), "%s", cut->outcome.p);
    cr_expect_not_null(run_of(r, "job_9"));
    cr_expect_null(run_of(r, "job_1"));
    tn_hook_set_free(s);
    char *calls = read_text("calls");
    cr_expect_str_eq(calls, "job_9\n");
    free(calls);
    free(log);
    tn_kill_hooks_free(h);
}

/* At most 16 commands per killed attempt; the rest are counted in one more line. */
Test(killhook, commands_per_kill_are_bounded)
{
    char spec[1200];
    snprintf(spec, sizeof(spec), "job_[0-9]+=echo {id} >>%s/calls", dir);
    tn_kill_hooks *h = hooks_of(spec, 0);
    char text[4000] = "";
    for (int i = 0; i < 20; i++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), "job_%d\n", i);
    write_text("t.log", text);
    char *log = path_of("t.log");
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 1, 1, NULL);
    cr_assert_not_null(s);
    wait_done(s);
    tn_hook_runs r = tn_hook_set_runs(s);
    cr_expect_eq(r.n, TN_KILL_HOOK_RUNS_MAX + 1);
    const tn_hook_run *more = run_of(r, "(more)");
    cr_assert_not_null(more);
    cr_expect(strstr(more->outcome.p, "4 more ids"), "%.*s", (int)more->outcome.len,
              more->outcome.p);
    tn_hook_set_free(s);
    char *calls = read_text("calls");
    cr_expect_eq(count(calls, "\n"), TN_KILL_HOOK_RUNS_MAX, "%s", calls);
    free(calls);
    free(log);
    tn_kill_hooks_free(h);
}

/* The command's environment names the attempt, its tenant and the id, whatever the worker's
 * environment said of them; it runs in the directory it is given. */
Test(killhook, the_command_knows_the_attempt_and_its_tenant)
{
    char spec[1200];
    snprintf(spec, sizeof(spec),
             "job_[0-9]+=echo $TERN_KILL_HOOK_TASK_INSTANCE_ID $TERN_KILL_HOOK_TASK_ATTEMPT "
             "$TERN_KILL_HOOK_TASK_USER $TERN_KILL_HOOK_ID $(pwd) {id} >>%s/calls",
             dir);
    setenv("TERN_KILL_HOOK_TASK_USER", "forged", 1);
    tn_kill_hooks *h = hooks_of(spec, 0);
    write_text("t.log", "job_5\n");
    char *log = path_of("t.log");
    tn_hook_set *s = tn_kill_hooks_start(h, log, dir, 42, 3, "etl");
    cr_assert_not_null(s);
    wait_done(s);
    tn_hook_set_free(s);
    char *calls = read_text("calls"), want[900];
    snprintf(want, sizeof(want), "42 3 etl job_5 %s job_5\n", dir);
    cr_expect_str_eq(calls, want);
    free(calls);
    free(log);
    tn_kill_hooks_free(h);
}

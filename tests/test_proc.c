/* Tests of task processes: spawn, exit codes, logs, the kill ladder on a process tree with
 * escapees, leftovers, restart recovery and the sweeper, in cgroup and session mode. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "util.h"
#include "testutil.h"

extern char **environ;

static char *tmp;         /* per-test temp dir */
static char cg_test[512]; /* per-test cgroup2 root, when created */
static char mark[64];     /* TERN_TEST_MARK=<value> in every task we start */
static char name[64];     /* worker name */
static tn_procs *P;
static pid_t crash_child; /* a forked "worker" to SIGKILL, for the restart tests */
static char **task_env;
static tn_errmsg msg;

/* ---------------------------------------------------------------------------------- */
/* Seeing processes independently of the implementation: the marker in their environment */

static bool has_mark(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    static char buf[1 << 16];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    size_t ml = strlen(mark);
    for (char *s = buf; s < buf + n; s += strlen(s) + 1)
        if (strncmp(s, mark, ml) == 0 && s[ml] == '\0')
            return true;
    return false;
}

static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    return rp && rp[1] ? rp[2] : 0;
}

/* Live processes carrying this test's marker; pids into out (up to max). */
static int marked(pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid == getpid() || !has_mark(pid) || proc_state(pid) == 'Z')
            continue;
        if (out && n < max)
            out[n] = pid;
        n++;
    }
    closedir(d);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded, a hang guard, not an assertion on time) until at least `want` marked
 * processes run and the count is stable. */
static int wait_marked(int want)
{
    int last = -1;
    for (int i = 0; i < 1000; i++) {
        int n = marked(NULL, 0);
        if (n >= want && n == last)
            return n;
        last = n;
        sleep_ms(20);
    }
    return last;
}

/* ---------------------------------------------------------------------------------- */
/* Setup */

static void setup(void)
{
    tmp = tu_tmpdir();
    srand((unsigned)(getpid() ^ tn_now_ns()));
    snprintf(mark, sizeof(mark), "TERN_TEST_MARK=%d-%08x", (int)getpid(), (unsigned)rand());
    snprintf(name, sizeof(name), "w%d", (int)getpid());
    size_t n = 0;
    while (environ[n])
        n++;
    task_env = calloc(n + 3, sizeof(*task_env));
    memcpy(task_env, environ, n * sizeof(*task_env));
    task_env[n] = mark;
    task_env[n + 1] = "FOO=bar baz";
}

static int rm_cg(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    char path[1024];
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        rm_cg(path);
    }
    closedir(d);
    return rmdir(dir);
}

static void teardown(void)
{
    if (crash_child > 0) {
        kill(crash_child, SIGKILL);
        waitpid(crash_child, NULL, 0);
    }
    tn_procs_free(P);
    P = NULL;
    /* belt and braces: whatever carries our marker dies, whatever the code under test did */
    pid_t pids[4096];
    int n = marked(pids, 4096);
    for (int i = 0; i < n && i < 4096; i++)
        kill(pids[i], SIGKILL);
    if (cg_test[0]) {
        char path[600];
        snprintf(path, sizeof(path), "%s/cgroup.kill", cg_test);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!write(fd, "1", 1);
            close(fd);
        }
        for (int i = 0; i < 200 && rm_cg(cg_test) != 0 && errno == EBUSY; i++)
            sleep_ms(10);
    }
    cg_test[0] = '\0';
    if (tmp)
        tu_rm_rf(tmp);
    free(tmp);
    tmp = NULL;
    free(task_env);
    task_env = NULL;
}

TestSuite(proc, .init = setup, .fini = teardown, .timeout = 120);

/* The cgroup2 mount, found here independently of core/proc.c. */
static bool cgroup2_mount(char *out, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - cgroup2 ");
        char mnt[1024];
        if (sep && sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1 && strlen(mnt) < len) {
            strcpy(out, mnt);
            found = true;
        }
    }
    fclose(f);
    return found;
}

/* A writable cgroup2 root for this test, else the test is skipped. */
static const char *cgroup_root_or_skip(void)
{
    char mnt[512];
    if (!cgroup2_mount(mnt, sizeof(mnt)))
        cr_skip_test("no cgroup2 mount here: cgroup mode cannot be tested");
    if (snprintf(cg_test, sizeof(cg_test), "%s/tern-test-%d", mnt, (int)getpid()) >=
        (int)sizeof(cg_test))
        cr_skip_test("cgroup2 mount path too long");
    char procs[600];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg_test);
    if (mkdir(cg_test, 0755) != 0 || access(procs, W_OK) != 0) {
        int e = errno;
        cg_test[0] = '\0';
        cr_skip_test("cgroup v2 at %s not writable (%s): cgroup mode cannot be tested", mnt,
                     strerror(e));
    }
    return cg_test;
}

static void open_mgr(tn_contain_mode mode)
{
    tn_proc_opts o = {.name = name, .leftover_grace_ms = 100, .verify_ms = 3000};
    o.cgroup_root = mode == TN_CONTAIN_CGROUP ? cgroup_root_or_skip() : "";
    cr_assert_eq(tn_procs_new(&o, &P, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_procs_mode(P), mode);
}

/* Attempt 1 of `task` in TMP/sub, its log TMP/task-T.log; pids_max 0: the default. */
/* Attempt 1 of `task` in TMP/sub with the environment envp, its log TMP/task-T.log. */
static tn_proc *start_env(uint64_t task, const char *script, const char *sub, uint32_t pids_max,
                          char **envp)
{
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/%s", tmp, sub);
    snprintf(log, sizeof(log), "%s/task-%llu.log", tmp, (unsigned long long)task);
    tn_spawn s = {.task = task,
                  .attempt = 1,
                  .script = script,
                  .exec_dir = dir,
                  .log_path = log,
                  .envp = envp,
                  .pids_max = pids_max};
    tn_proc *t = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_OK, "%s", msg.text);
    cr_assert_not_null(t);
    return t;
}

static tn_proc *start_in(uint64_t task, const char *script, const char *sub, uint32_t pids_max)
{
    return start_env(task, script, sub, pids_max, task_env);
}

static tn_proc *start(uint64_t task, const char *script, const char *sub)
{
    return start_in(task, script, sub ? sub : "run", 0);
}

/* Reports reaped while waiting for another attempt. */
static tn_proc_exit stash[16];
static size_t nstash;

/* Ticks and reaps until t is reported (a hang guard bounds the loop). */
static tn_proc_exit wait_exit(tn_proc *t)
{
    for (int i = 0; i < 20000; i++) {
        for (size_t k = 0; k < nstash; k++) {
            if (stash[k].proc == t) {
                tn_proc_exit e = stash[k];
                stash[k] = stash[--nstash];
                return e;
            }
        }
        tn_procs_tick(P, tn_mono_ns());
        tn_proc_exit ex[8];
        size_t n = tn_procs_reap(P, ex, 8);
        for (size_t k = 0; k < n; k++)
            if (nstash < 16)
                stash[nstash++] = ex[k];
        if (!n)
            sleep_ms(2);
    }
    cr_assert_fail("attempt %d never finished", (int)tn_proc_pid(t));
    return (tn_proc_exit){0};
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return strdup("");
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* ---------------------------------------------------------------------------------- */
/* Modes */

Test(proc, session_mode_when_cgroups_disabled)
{
    open_mgr(TN_CONTAIN_SESSION);
    cr_assert_null(tn_procs_cgroup_dir(P));
}

Test(proc, discovery_finds_cgroup2_when_writable)
{
    char mnt[512];
    tn_proc_opts o = {.name = name};
    cr_assert_eq(tn_procs_new(&o, &P, &msg), TN_OK, "%s", msg.text);
    char probe[600];
    snprintf(probe, sizeof(probe), "%s/tern/%s/cgroup.procs",
             cgroup2_mount(mnt, sizeof(mnt)) ? mnt : "/nonexistent", name);
    bool writable = access(probe, W_OK) == 0;
    cr_assert_eq(tn_procs_mode(P), writable ? TN_CONTAIN_CGROUP : TN_CONTAIN_SESSION);
    if (writable)
        cr_assert(strstr(tn_procs_cgroup_dir(P), "/tern/") != NULL);
    tn_procs_free(P);
    P = NULL;
    snprintf(probe, sizeof(probe), "%s/tern/%s", mnt, name);
    cr_assert_neq(access(probe, F_OK), 0, "the worker's sub-tree is removed at free");
}

Test(proc, bad_name_and_unusable_root_are_clear_errors)
{
    tn_proc_opts o = {.name = "../etc", .cgroup_root = ""};
    cr_assert_eq(tn_procs_new(&o, &P, &msg), TN_ERR_INVAL);
    cr_assert(strstr(msg.text, "worker name") != NULL, "%s", msg.text);
    cr_assert_null(P);
    tn_proc_opts o2 = {.name = name, .cgroup_root = tmp}; /* a plain directory */
    cr_assert_eq(tn_procs_new(&o2, &P, &msg), TN_ERR_UNSUPPORTED);
    cr_assert(strstr(msg.text, "cgroup2") != NULL, "%s", msg.text);
    cr_assert_null(P);
}

/* ---------------------------------------------------------------------------------- */
/* Running */

static void exit_codes(tn_contain_mode mode)
{
    open_mgr(mode);
    tn_proc *a = start(1, "true", NULL);
    tn_proc *b = start(2, "exit 3", NULL);
    cr_assert_eq(tn_proc_mode(a), mode);
    tn_proc_exit ea = wait_exit(a), eb = wait_exit(b);
    cr_assert(WIFEXITED(ea.status) && WEXITSTATUS(ea.status) == 0);
    cr_assert(WIFEXITED(eb.status) && WEXITSTATUS(eb.status) == 3);
    cr_assert_eq(ea.task, 1);
    cr_assert_eq(eb.attempt, 1);
    cr_assert(!ea.killed && !eb.killed);
    cr_assert_eq(ea.leftovers, 0);
    cr_assert_null(tn_proc_kill_report(a), "no kill happened");
    tn_proc_free(a);
    tn_proc_free(b);
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(st.cgroups, 0, "task cgroups are removed when attempts finish");
}

Test(proc, exit_codes_session)
{
    exit_codes(TN_CONTAIN_SESSION);
}
Test(proc, exit_codes_cgroup)
{
    exit_codes(TN_CONTAIN_CGROUP);
}

static void cwd_log_env(tn_contain_mode mode)
{
    open_mgr(mode);
    char log[512], dir[512];
    snprintf(log, sizeof(log), "%s/task-5.log", tmp);
    snprintf(dir, sizeof(dir), "%s/exec-5", tmp);
    FILE *f = fopen(log, "we");
    fputs("earlier line\n", f);
    fclose(f);
    tn_proc *t = start(5,
                       "pwd > cwd.txt; echo out-line; echo err-line >&2; echo \"FOO=$FOO\"; "
                       "echo \"TAG=$TERN_ATTEMPT_TAG\"; read x || echo stdin-empty",
                       "exec-5");
    tn_proc_exit ex = wait_exit(t);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 0);
    char cwdf[600];
    snprintf(cwdf, sizeof(cwdf), "%s/cwd.txt", dir);
    char *cwd = slurp(cwdf), *out = slurp(log), want[600];
    snprintf(want, sizeof(want), "%s\n", dir);
    cr_assert_str_eq(cwd, want);
    cr_assert(strstr(out, "earlier line\n") == out, "the log is appended to: %s", out);
    cr_assert(strstr(out, "out-line\n") != NULL, "%s", out);
    cr_assert(strstr(out, "err-line\n") != NULL, "%s", out);
    cr_assert(strstr(out, "FOO=bar baz\n") != NULL, "%s", out);
    cr_assert(strstr(out, "stdin-empty\n") != NULL, "%s", out);
    char tag[128];
    snprintf(tag, sizeof(tag), "TAG=%s/5/1\n", name);
    cr_assert(strstr(out, tag) != NULL, "%s", out);
    free(cwd);
    free(out);
    tn_proc_free(t);
}

Test(proc, cwd_log_env_session)
{
    cwd_log_env(TN_CONTAIN_SESSION);
}
Test(proc, cwd_log_env_cgroup)
{
    cwd_log_env(TN_CONTAIN_CGROUP);
}

static void spawn_errors(tn_contain_mode mode)
{
    open_mgr(mode);
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/no/such/parent", tmp);
    snprintf(log, sizeof(log), "%s/x.log", tmp);
    tn_spawn s = {.task = 9, .attempt = 1, .script = "true", .exec_dir = dir, .log_path = log};
    tn_proc *t = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_ERR_NOENT);
    cr_assert(strstr(msg.text, "parent") && strstr(msg.text, dir), "%s", msg.text);
    cr_assert_null(t);
    snprintf(dir, sizeof(dir), "%s/ok", tmp);
    s.user = "tern-no-such-user-q7";
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_ERR_NOENT);
    cr_assert(strstr(msg.text, "tern-no-such-user-q7"), "%s", msg.text);
    cr_assert_null(t);
    s.user = NULL;
    s.script = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_ERR_INVAL);
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(st.cgroups, 0, "a failed start leaves no cgroup");
    cr_assert_eq(tn_procs_reap(P, &(tn_proc_exit){0}, 1), 0);
}

Test(proc, spawn_errors_session)
{
    spawn_errors(TN_CONTAIN_SESSION);
}
Test(proc, spawn_errors_cgroup)
{
    spawn_errors(TN_CONTAIN_CGROUP);
}

/* A failure in the child (here exec: one variable longer than the kernel takes) comes back
 * from tn_proc_start, leaves nothing behind, and the next start works. */
static void exec_failure(tn_contain_mode mode)
{
    open_mgr(mode);
    size_t big = 256 * 1024;
    char *var = malloc(big + 8);
    memcpy(var, "BIG=", 4);
    memset(var + 4, 'x', big);
    var[4 + big] = '\0';
    char *env[] = {mark, var, NULL};
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/run", tmp);
    snprintf(log, sizeof(log), "%s/big.log", tmp);
    /* through the shell, and run directly (the exec of the command meets it) */
    const char *scripts[] = {"true;", "true"}, *says[] = {"/bin/sh", "exec of the command"};
    for (int i = 0; i < 2; i++) {
        tn_spawn s = {.task = 12,
                      .attempt = 1,
                      .script = scripts[i],
                      .exec_dir = dir,
                      .log_path = log,
                      .envp = env};
        tn_proc *t = NULL;
        cr_assert_neq(tn_proc_start(P, &s, &t, &msg), TN_OK);
        cr_assert_null(t);
        cr_assert(strstr(msg.text, says[i]) && strstr(msg.text, strerror(E2BIG)), "%s",
                  msg.text);
        cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "the failed child was reaped");
    }
    free(var);
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(st.cgroups, 0, "a failed start leaves no cgroup");
    tn_proc *ok = start(13, "exit 4", NULL);
    tn_proc_exit ex = wait_exit(ok);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 4);
    tn_proc_free(ok);
}

Test(proc, exec_failure_is_reported_session)
{
    exec_failure(TN_CONTAIN_SESSION);
}
Test(proc, exec_failure_is_reported_cgroup)
{
    exec_failure(TN_CONTAIN_CGROUP);
}

/* ---------------------------------------------------------------------------------- */
/* Commands run without the shell */

Test(proc, simple_words_are_only_what_the_shell_leaves_alone)
{
    static const struct {
        const char *cmd, *words; /* words joined by '|'; NULL: through the shell */
    } cases[] = {
        {"true", "true"},
        {"  /usr/bin/env  -i A=1\tB=2 ", "/usr/bin/env|-i|A=1|B=2"},
        {"exec tern-bench-stamp /tmp/x.stamp", "tern-bench-stamp|/tmp/x.stamp"},
        {"python3 run.py --date=2026-12-03 a,b +1 @x 50%",
         "python3|run.py|--date=2026-12-03|a,b|+1|@x|50%"},
        {"./job.sh", "./job.sh"},
        {"true x", NULL}, /* the builtin ignores x; /bin/true --help would not */
        {"false", "false"},
        {"echo hi", NULL}, /* dash's echo and /bin/echo differ (-e, -n, \\c) */
        {"cd /tmp", NULL},
        {". ./env.sh", NULL},
        {"exec", NULL},
        {"exec FOO=1 cmd", NULL},
        {"FOO=1 cmd", NULL},
        {"cmd $HOME", NULL},
        {"cmd 'a b'", NULL},
        {"cmd \"a\"", NULL},
        {"cmd a\\ b", NULL},
        {"cmd *.txt", NULL},
        {"cmd ~/x", NULL},
        {"cmd # note", NULL},
        {"cmd > out", NULL},
        {"cmd; other", NULL},
        {"cmd && other", NULL},
        {"cmd | other", NULL},
        {"cmd &", NULL},
        {"cmd\nother", NULL},
        {"cmd `x`", NULL},
        {"cmd {a,b}", NULL},
        {"cmd (x)", NULL},
        {"if", NULL},
        {"while", NULL},
        {"", NULL},
        {"   ", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256], *w[16], joined[256] = "";
        size_t n = tn_proc_simple_words(cases[i].cmd, buf, sizeof(buf), w, 16);
        if (!cases[i].words) {
            cr_assert_eq(n, 0, "\"%s\" goes through the shell", cases[i].cmd);
            continue;
        }
        cr_assert_gt(n, 0, "\"%s\" runs directly", cases[i].cmd);
        cr_assert_null(w[n]);
        for (size_t k = 0; k < n; k++)
            snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s",
                     k ? "|" : "", w[k]);
        cr_assert_str_eq(joined, cases[i].words, "\"%s\"", cases[i].cmd);
    }
    char buf[8], *w[4];
    cr_assert_eq(tn_proc_simple_words("/bin/true", buf, sizeof(buf), w, 4), 0, "too long");
    cr_assert_eq(tn_proc_simple_words("a b c d", buf, sizeof(buf), w, 4), 0, "too many words");
}

static char *exe_of(pid_t pid)
{
    char p[64], *out = calloc(1, 4096);
    snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
    cr_assert_gt(readlink(p, out, 4095), 0);
    return out;
}

/* A simple command is the attempt's leader; one with shell syntax runs under /bin/sh. */
static void direct_leader(tn_contain_mode mode)
{
    open_mgr(mode);
    tn_proc *a = start(31, "exec /bin/sleep 300", "a"), *b = start(32, "/bin/sleep 300;", "b");
    char *ea = exe_of(tn_proc_pid(a)), *eb = exe_of(tn_proc_pid(b));
    cr_assert(strstr(ea, "sleep") != NULL, "the leader is the command itself: %s", ea);
    cr_assert(strstr(eb, "dash") || strstr(eb, "/sh"), "the leader is the shell: %s", eb);
    free(ea);
    free(eb);
    tn_proc *t[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tn_proc_kill(P, t[i], 0), TN_OK);
        tn_proc_exit ex = wait_exit(t[i]);
        cr_assert(ex.killed);
        tn_proc_free(t[i]);
    }
}

Test(proc, a_simple_command_is_the_leader_session)
{
    direct_leader(TN_CONTAIN_SESSION);
}
Test(proc, a_simple_command_is_the_leader_cgroup)
{
    direct_leader(TN_CONTAIN_CGROUP);
}

/* The bare run a benchmark sets the spawn against: its status, a new session, and in
 * cgroup mode a cgroup of its own under the worker's sub-tree, gone when the run returns. */
static void bare_run(tn_contain_mode mode)
{
    open_mgr(mode);
    char out[600], script[1400];
    snprintf(out, sizeof(out), "%s/bare.out", tmp);
    snprintf(script, sizeof(script),
             "read -r _ _ _ _ _ sid _ < /proc/$$/stat; echo \"$$ $sid\" > %s; "
             "grep '^0::' /proc/self/cgroup >> %s; exit 3",
             out, out);
    char *argv[] = {"/bin/sh", "-c", script, NULL};
    int st = -1;
    cr_assert_eq(tn_procs_run_bare(P, argv, task_env, &st), 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "status %d", st);
    char *text = slurp(out);
    int pid = 0, sid = -1;
    cr_assert_eq(sscanf(text, "%d %d", &pid, &sid), 2, "%s", text);
    cr_expect_eq(pid, sid, "a session of its own: %s", text);
    const char *line = strstr(text, "0::");
    cr_assert_not_null(line, "%s", text);
    if (mode == TN_CONTAIN_CGROUP) { /* 0::REL/bare-N, where DIR (the sub-tree) ends in REL */
        const char *dir = tn_procs_cgroup_dir(P), *rel = line + 3;
        const char *bare = strstr(rel, "/bare-");
        cr_assert_not_null(bare, "its own cgroup: %s", line);
        size_t rl = (size_t)(bare - rel), dl = strlen(dir);
        cr_expect(dl >= rl && strncmp(dir + dl - rl, rel, rl) == 0, "%s is not under %s", line,
                  dir);
        char path[1200];
        snprintf(path, sizeof(path), "%s%.*s", dir, (int)strcspn(bare, "\n"), bare);
        cr_expect_neq(access(path, F_OK), 0, "its cgroup %s is removed", path);
    }
    free(text);
    char *missing[] = {"/nonexistent/tern-bare", NULL};
    cr_assert_eq(tn_procs_run_bare(P, missing, task_env, &st), 0);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 127, "a failed exec: status %d", st);
}

Test(proc, bare_run_is_contained_and_cleaned_up_session)
{
    bare_run(TN_CONTAIN_SESSION);
}
Test(proc, bare_run_is_contained_and_cleaned_up_cgroup)
{
    bare_run(TN_CONTAIN_CGROUP);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "we");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

/* Each command run directly ends as it does through the shell (the same command with a
 * trailing ';', which sends it to /bin/sh): exit status, output, PWD, the task's PATH. */
static void direct_as_shell(tn_contain_mode mode)
{
    open_mgr(mode);
    char bin[512], path[600], pathvar[700];
    snprintf(bin, sizeof(bin), "%s/bin", tmp);
    cr_assert_eq(mkdir(bin, 0755), 0);
    snprintf(path, sizeof(path), "%s/hello", bin);
    write_file(path, "#!/bin/sh\necho \"hello $# $1 $2 pwd=$PWD\"\nexit 5\n", 0755);
    snprintf(path, sizeof(path), "%s/noshebang", bin);
    write_file(path, "echo \"plain $1\"\n", 0755);
    snprintf(path, sizeof(path), "%s/notexec", bin);
    write_file(path, "#!/bin/sh\necho never\n", 0644);
    size_t n = 0;
    while (task_env[n])
        n++;
    char **env = calloc(n + 2, sizeof(*env));
    snprintf(pathvar, sizeof(pathvar), "PATH=/nonexistent:%s:/usr/bin:/bin", bin);
    memcpy(env, task_env, n * sizeof(*env));
    env[n] = pathvar; /* last: the one the shell (and the worker) use */
    static const struct {
        const char *cmd, *out; /* out: what the log must hold, both ways */
        int status;
    } cases[] = {
        {"hello a=1 b", "hello 2 a=1 b pwd=", 5},
        {"exec hello x", "hello 1 x  pwd=", 5},
        {"hello\tt1", "hello 1 t1  pwd=", 5},
        {"noshebang one", "plain one", 0},
        {"notexec", "notexec: Permission denied", 127}, /* dash: 127 after a PATH search */
        {"/etc/passwd x", "/etc/passwd: Permission denied", 126},
        {"no-such-command-q7", "no-such-command-q7: not found", 127},
        {"./no-such-file", "./no-such-file: not found", 127},
        {"false", "", 1},
        {"true", "", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[256], *w[8];
        cr_assert_gt(tn_proc_simple_words(cases[i].cmd, buf, sizeof(buf), w, 8), 0);
        for (int way = 0; way < 2; way++) {
            char script[256], dir[64], log[600], xdir[512];
            uint64_t task = 40 + i * 2 + (size_t)way;
            snprintf(script, sizeof(script), "%s%s", cases[i].cmd, way ? " ;" : "");
            snprintf(dir, sizeof(dir), "d-%zu-%d", i, way);
            snprintf(log, sizeof(log), "%s/task-%llu.log", tmp, (unsigned long long)task);
            snprintf(xdir, sizeof(xdir), "%s/%s", tmp, dir);
            tn_proc *t = start_env(task, script, dir, 0, env);
            tn_proc_exit ex = wait_exit(t);
            char *out = slurp(log);
            cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == cases[i].status,
                      "\"%s\": status %d, want exit %d; log: %s", script, ex.status,
                      cases[i].status, out);
            cr_assert(strstr(out, cases[i].out), "\"%s\": log %s", script, out);
            if (strstr(cases[i].out, "pwd=")) {
                char want[600];
                snprintf(want, sizeof(want), "pwd=%s\n", xdir);
                cr_assert(strstr(out, want), "\"%s\": PWD is the exec dir: %s", script, out);
            }
            free(out);
            tn_proc_free(t);
        }
    }
    free(env);
}

Test(proc, a_simple_command_ends_as_through_the_shell_session)
{
    direct_as_shell(TN_CONTAIN_SESSION);
}
Test(proc, a_simple_command_ends_as_through_the_shell_cgroup)
{
    direct_as_shell(TN_CONTAIN_CGROUP);
}

/* The wait fd lets a loop sleep until an exit: quiet while the leader runs, readable when
 * it exits, quiet again once reaped. In cgroup mode a running attempt needs no tick. */
static void wait_fd(tn_contain_mode mode)
{
    open_mgr(mode);
    int fd = tn_procs_wait_fd(P);
    if (fd < 0)
        cr_skip_test("no pidfd or epoll here: exits are noticed by ticking");
    tn_proc *t = start(14, "sleep 0.3", NULL);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&pf, 1, 0), 0, "quiet while the leader runs");
    if (mode == TN_CONTAIN_CGROUP)
        cr_assert_eq(tn_procs_next_tick(P), 0, "nothing to tick for while it runs");
    cr_assert_eq(poll(&pf, 1, 10000), 1, "readable when the leader exits");
    tn_proc_exit ex = wait_exit(t);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 0);
    cr_assert_eq(poll(&pf, 1, 0), 0, "quiet once reaped");
    tn_proc_free(t);
}

Test(proc, wait_fd_session)
{
    wait_fd(TN_CONTAIN_SESSION);
}
Test(proc, wait_fd_cgroup)
{
    wait_fd(TN_CONTAIN_CGROUP);
}

/* The leader is in its task cgroup from its first instruction (clone3 CLONE_INTO_CGROUP, or
 * a write to cgroup.procs before exec). */
Test(proc, leader_starts_in_its_cgroup)
{
    open_mgr(TN_CONTAIN_CGROUP);
    tn_proc *t = start(15, "sleep 300", NULL);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)tn_proc_pid(t));
    char *cg = slurp(path);
    const char *v2 = strstr(cg, "0::");
    cr_assert_not_null(v2, "%s", cg);
    char suffix[128];
    snprintf(suffix, sizeof(suffix), "/%s/task-15-1\n", name);
    cr_assert(strstr(v2, suffix) != NULL, "leader in %s, want .../%s/task-15-1", v2, name);
    free(cg);
    cr_assert_eq(tn_proc_kill(P, t, 0), TN_OK);
    (void)wait_exit(t);
    tn_proc_free(t);
}

static void as_user(tn_contain_mode mode)
{
    struct passwd *pw = getpwnam("nobody");
    if (geteuid() != 0 || !pw)
        cr_skip_test("needs root and a \"nobody\" user");
    open_mgr(mode);
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/as-user", tmp);
    snprintf(log, sizeof(log), "%s/u.log", tmp);
    chmod(tmp, 0755);
    tn_spawn s = {.task = 11,
                  .attempt = 1,
                  .script = "id -u; id -g; touch mine",
                  .exec_dir = dir,
                  .log_path = log,
                  .user = "nobody",
                  .envp = task_env};
    tn_proc *t = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_OK, "%s", msg.text);
    tn_proc_exit ex = wait_exit(t);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 0);
    char *out = slurp(log), want[64];
    snprintf(want, sizeof(want), "%u\n%u\n", (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
    cr_assert_str_eq(out, want);
    free(out);
    tn_proc_free(t);
}

Test(proc, runs_as_tenant_user_session)
{
    as_user(TN_CONTAIN_SESSION);
}
Test(proc, runs_as_tenant_user_cgroup)
{
    as_user(TN_CONTAIN_CGROUP);
}

/* ---------------------------------------------------------------------------------- */
/* Killing */

/* 10 subshells with 2 sleeps each, a setsid escapee, a double-forked daemon, a setsid
 * double-forked daemon, a shell ignoring TERM and a shell that records TERM and keeps
 * going (and starts a new sleep from its handler). */
static const char *tree_script = "for i in $(seq 10); do (sleep 300 & sleep 300; wait) & done\n"
                                 "setsid sleep 300 &\n"
                                 "( (sleep 300 &) & )\n"
                                 "( setsid sh -c 'sleep 300 & exit 0' & )\n"
                                 "sh -c 'trap \"\" TERM; : > ignoring; sleep 300' &\n"
                                 "sh -c 'trap \"echo term >> trapped\" TERM; : > trapping; "
                                 "while :; do sleep 300 & wait $!; done' &\n"
                                 "wait\n";
#define TREE_MIN 37 /* leader 1, subshells 30, escapees 3, TERM-ignoring 1, trapper 2 */

static void kill_tree(tn_contain_mode mode)
{
    open_mgr(mode);
    tn_proc *t = start(42, tree_script, "tree");
    /* the traps are set before the kill (a bounded wait, not a time assertion) */
    char ready[2][600];
    snprintf(ready[0], sizeof(ready[0]), "%s/tree/ignoring", tmp);
    snprintf(ready[1], sizeof(ready[1]), "%s/tree/trapping", tmp);
    for (int i = 0; i < 2000 && (access(ready[0], F_OK) || access(ready[1], F_OK)); i++)
        sleep_ms(5);
    cr_assert(!access(ready[0], F_OK) && !access(ready[1], F_OK), "the shells never started");
    int n = wait_marked(TREE_MIN);
    cr_assert_geq(n, TREE_MIN, "the tree did not start: %d processes", n);
    pid_t before[256];
    int nb = marked(before, 256);
    const uint64_t grace_ms = 200;
    cr_assert_eq(tn_proc_kill(P, t, grace_ms), TN_OK);
    tn_proc_exit ex = wait_exit(t);
    const tn_kill_report *r = tn_proc_kill_report(t);
    cr_assert_not_null(r);
    cr_assert(r->done);
    /* nothing of the task survives */
    cr_assert_eq(marked(NULL, 0), 0, "processes of the task survived the kill");
    cr_assert_eq(r->survivors, 0);
    cr_assert(ex.killed);
    cr_assert_eq(ex.survivors, 0);
    /* every process that ran was signalled and is listed */
    cr_assert_geq(r->signalled, (uint32_t)nb);
    for (int i = 0; i < nb; i++) {
        bool listed = false;
        for (uint32_t k = 0; k < r->npids && !listed; k++)
            listed = r->pids[k] == before[i];
        cr_assert(listed, "pid %d was not in the kill report", (int)before[i]);
    }
    /* the grace was honoured: TERM first, handled, and SIGKILL only at the deadline */
    char trapped[600];
    snprintf(trapped, sizeof(trapped), "%s/tree/trapped", tmp);
    char *tr = slurp(trapped);
    cr_assert(strstr(tr, "term") != NULL, "the trapping shell never saw TERM");
    free(tr);
    cr_assert(r->escalated, "TERM-proof processes needed SIGKILL");
    cr_assert_geq(r->kill_ns - r->term_ns, (int64_t)grace_ms * 1000000);
    cr_assert_geq(r->done_ns, r->kill_ns);
    char ck[600];
    snprintf(ck, sizeof(ck), "%s/cgroup.kill", cg_test);
    if (mode == TN_CONTAIN_CGROUP && access(ck, F_OK) == 0)
        cr_assert(r->cgroup_kill, "the KILL went through cgroup.kill");
    fprintf(stderr,
            "kill-time mode=%s processes=%d signalled=%u kill_to_empty_ms=%.1f "
            "total_minus_grace_ms=%.1f\n",
            tn_contain_mode_name(mode), nb, r->signalled,
            (double)(r->done_ns - r->kill_ns) / 1e6,
            (double)(r->done_ns - r->term_ns - (int64_t)grace_ms * 1000000) / 1e6);
    tn_proc_free(t);
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.live, 0);
    cr_assert_eq(st.cgroups, 0);
}

Test(proc, kill_tree_session)
{
    kill_tree(TN_CONTAIN_SESSION);
}
Test(proc, kill_tree_cgroup)
{
    kill_tree(TN_CONTAIN_CGROUP);
}

static void kill_no_grace(tn_contain_mode mode)
{
    open_mgr(mode);
    tn_proc *t = start(43, "sleep 300 & sleep 300 & wait", NULL);
    cr_assert_geq(wait_marked(3), 3);
    cr_assert_eq(tn_proc_kill(P, t, 0), TN_OK);
    tn_proc_exit ex = wait_exit(t);
    const tn_kill_report *r = tn_proc_kill_report(t);
    cr_assert(r && r->done && ex.killed);
    cr_assert(WIFSIGNALED(ex.status) && WTERMSIG(ex.status) == SIGKILL);
    cr_assert_eq(r->term_ns, r->kill_ns, "grace 0: straight to SIGKILL");
    cr_assert_eq(marked(NULL, 0), 0);
    tn_proc_free(t);
}

Test(proc, kill_without_grace_session)
{
    kill_no_grace(TN_CONTAIN_SESSION);
}
Test(proc, kill_without_grace_cgroup)
{
    kill_no_grace(TN_CONTAIN_CGROUP);
}

static void leftovers(tn_contain_mode mode)
{
    open_mgr(mode);
    tn_proc *t = start(44, "sleep 300 & (setsid sleep 301 &); echo leader-done", NULL);
    tn_proc_exit ex = wait_exit(t);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 0, "the leader's status");
    cr_assert(!ex.killed);
    cr_assert_geq(ex.leftovers, 1, "the background sleeps were left behind");
    cr_assert_eq(marked(NULL, 0), 0, "nothing outlives its task");
    const tn_kill_report *r = tn_proc_kill_report(t);
    cr_assert(r && r->done && r->signalled >= 1);
    tn_proc_free(t);
}

Test(proc, leftovers_are_killed_session)
{
    leftovers(TN_CONTAIN_SESSION);
}
Test(proc, leftovers_are_killed_cgroup)
{
    leftovers(TN_CONTAIN_CGROUP);
}

static void free_running(tn_contain_mode mode)
{
    open_mgr(mode);
    tn_proc *t = start(45, "sleep 300 & sleep 300", NULL);
    cr_assert_geq(wait_marked(3), 3);
    tn_proc_free(t); /* detached: killed, reaped and removed by the manager */
    for (int i = 0; i < 5000 && marked(NULL, 0) > 0; i++) {
        tn_procs_tick(P, tn_mono_ns());
        sleep_ms(2);
    }
    cr_assert_eq(marked(NULL, 0), 0);
    for (int i = 0; i < 1000; i++) {
        tn_procs_stats st;
        tn_procs_tick(P, tn_mono_ns());
        tn_procs_stats_get(P, &st);
        if (st.live == 0 && st.cgroups == 0)
            return;
        sleep_ms(2);
    }
    cr_assert_fail("a detached attempt was not cleaned up");
}

Test(proc, free_of_running_attempt_kills_it_session)
{
    free_running(TN_CONTAIN_SESSION);
}
Test(proc, free_of_running_attempt_kills_it_cgroup)
{
    free_running(TN_CONTAIN_CGROUP);
}

Test(proc, setsid_daemon_found_by_its_tag_session)
{
    /* the daemon leaves the session and is orphaned before any scan sees it: only the
     * attempt's environment tag can attribute it */
    open_mgr(TN_CONTAIN_SESSION);
    tn_proc *t = start(47, "( setsid sh -c 'sleep 300 & exit 0' & ); sleep 301", NULL);
    cr_assert_geq(wait_marked(3), 3);
    cr_assert_eq(tn_proc_kill(P, t, 100), TN_OK);
    tn_proc_exit ex = wait_exit(t);
    cr_assert(ex.killed);
    cr_assert_eq(marked(NULL, 0), 0, "the setsid daemon survived");
    tn_proc_free(t);
}

Test(proc, manager_free_kills_running_attempts)
{
    open_mgr(TN_CONTAIN_SESSION);
    (void)start(46, "sleep 300 & sleep 300", NULL);
    cr_assert_geq(wait_marked(3), 3);
    tn_procs_free(P);
    P = NULL;
    cr_assert_eq(marked(NULL, 0), 0);
}

/* ---------------------------------------------------------------------------------- */
/* Restart recovery */

typedef struct seen {
    int calls;
    uint64_t task;
    uint32_t attempt;
    uint32_t npids, survivors;
} seen;

static void on_leftover(void *ud, const tn_leftover *l)
{
    seen *s = ud;
    s->calls++;
    s->task = l->task;
    s->attempt = l->attempt;
    s->npids += l->npids;
    s->survivors += l->survivors;
}

/* A "worker" in a child process starts task 7 attempt 2 and is SIGKILLed: a crash. The
 * leader's identity comes back through a pipe. */
static tn_pid_ident crashed_worker(const char *root, const char *script)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    crash_child = fork();
    cr_assert_geq(crash_child, 0);
    if (crash_child == 0) {
        tn_proc_opts o = {.name = name, .cgroup_root = root};
        tn_procs *w;
        tn_errmsg m;
        tn_pid_ident id = {0};
        if (tn_procs_new(&o, &w, &m) == TN_OK) {
            char dir[512], log[512];
            snprintf(dir, sizeof(dir), "%s/crash", tmp);
            snprintf(log, sizeof(log), "%s/crash.log", tmp);
            tn_spawn s = {.task = 7,
                          .attempt = 2,
                          .script = script,
                          .exec_dir = dir,
                          .log_path = log,
                          .envp = task_env};
            tn_proc *t;
            if (tn_proc_start(w, &s, &t, &m) == TN_OK)
                id = tn_proc_ident(t);
        }
        (void)!write(pfd[1], &id, sizeof(id));
        for (;;)
            pause();
    }
    close(pfd[1]);
    tn_pid_ident id = {0};
    cr_assert_eq(read(pfd[0], &id, sizeof(id)), (ssize_t)sizeof(id));
    close(pfd[0]);
    cr_assert_gt(id.pid, 0, "the crashing worker could not start its task");
    cr_assert_geq(wait_marked(3), 3);
    kill(crash_child, SIGKILL);
    waitpid(crash_child, NULL, 0);
    crash_child = 0;
    return id;
}

Test(proc, restart_adopts_leftover_cgroup)
{
    const char *root = cgroup_root_or_skip();
    (void)crashed_worker(root, "sleep 300 & sleep 300 & wait");
    int before = marked(NULL, 0);
    cr_assert_geq(before, 3, "the task outlived its worker, as after a crash");
    char cg[700];
    snprintf(cg, sizeof(cg), "%s/%s/task-7-2", root, name);
    cr_assert_eq(access(cg, F_OK), 0, "the crashed worker left its task cgroup");

    tn_proc_opts o = {.name = name, .cgroup_root = root, .verify_ms = 3000};
    cr_assert_eq(tn_procs_new(&o, &P, &msg), TN_OK, "%s", msg.text);
    seen s = {0};
    uint32_t n = 0;
    cr_assert_eq(tn_procs_adopt_leftovers(P, on_leftover, &s, &n), TN_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.task, 7);
    cr_assert_eq(s.attempt, 2);
    cr_assert_geq(s.npids, (uint32_t)before);
    cr_assert_eq(s.survivors, 0);
    cr_assert_eq(marked(NULL, 0), 0);
    cr_assert_neq(access(cg, F_OK), 0, "the leftover cgroup is removed");
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.adopted_total, 1);
    cr_assert_eq(st.cgroups, 0);
}

Test(proc, restart_adopts_tagged_leftovers_session)
{
    (void)crashed_worker("", "sleep 300 & (setsid sleep 301 &); sleep 302");
    int before = marked(NULL, 0);
    cr_assert_geq(before, 3);
    open_mgr(TN_CONTAIN_SESSION);
    seen s = {0};
    cr_assert_eq(tn_procs_adopt_leftovers(P, on_leftover, &s, NULL), TN_OK);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.task, 7);
    cr_assert_eq(s.attempt, 2);
    cr_assert_geq(s.npids, (uint32_t)before);
    cr_assert_eq(marked(NULL, 0), 0);
}

Test(proc, kill_recorded_pids_session)
{
    /* the task drops the tag: only the recorded leader and its session find them */
    tn_pid_ident id = crashed_worker(
        "", "env -u TERN_ATTEMPT_TAG sh -c 'sleep 300 & sleep 301 & wait'; sleep 302");
    int before = marked(NULL, 0);
    cr_assert_geq(before, 4);
    open_mgr(TN_CONTAIN_SESSION);
    /* a stale identity (same pid, another start time) kills nothing */
    tn_pid_ident stale = {.pid = id.pid, .start_ticks = id.start_ticks + 1};
    seen s0 = {0};
    cr_assert_eq(tn_procs_kill_pids(P, 999, 1, &stale, 1, on_leftover, &s0), TN_OK);
    cr_assert_eq(s0.calls, 1);
    cr_assert_eq(s0.npids, 0);
    cr_assert_eq(marked(NULL, 0), before);
    seen s = {0};
    cr_assert_eq(tn_procs_kill_pids(P, 7, 2, &id, 1, on_leftover, &s), TN_OK);
    cr_assert_eq(s.calls, 1);
    cr_assert_geq(s.npids, (uint32_t)before);
    cr_assert_eq(s.survivors, 0);
    cr_assert_eq(marked(NULL, 0), 0);
}

/* ---------------------------------------------------------------------------------- */
/* Sweeping and limits */

Test(proc, sweeper_counts_a_leaked_cgroup)
{
    open_mgr(TN_CONTAIN_CGROUP);
    tn_proc *t = start(50, "sleep 300", NULL);
    char leak[700];
    snprintf(leak, sizeof(leak), "%s/task-99-1", tn_procs_cgroup_dir(P));
    cr_assert_eq(mkdir(leak, 0755), 0, "%s", strerror(errno));
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.cgroups, 2);
    cr_assert_eq(tn_procs_sweep(P), 1, "the leaked cgroup, not the live attempt's");
    cr_assert_neq(access(leak, F_OK), 0);
    cr_assert_eq(tn_procs_sweep(P), 0);
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.swept_total, 1);
    cr_assert_eq(st.cgroups, 1);
    cr_assert_eq(st.live, 1);
    cr_assert_eq(tn_proc_kill(P, t, 100), TN_OK);
    (void)wait_exit(t);
    tn_proc_free(t);
}

Test(proc, sweeper_in_session_mode_has_nothing)
{
    open_mgr(TN_CONTAIN_SESSION);
    cr_assert_eq(tn_procs_sweep(P), 0);
}

static void limits(tn_contain_mode mode)
{
    open_mgr(mode);
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/lim", tmp);
    snprintf(log, sizeof(log), "%s/lim.log", tmp);
    tn_spawn s = {.task = 60,
                  .attempt = 1,
                  .script = "cat /proc/self/cgroup; sleep 300",
                  .exec_dir = dir,
                  .log_path = log,
                  .envp = task_env,
                  .memory_max = 64u << 20,
                  .cpu_max_milli = 500};
    tn_proc *t = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_OK, "%s", msg.text);
    const char *note = tn_proc_limits_note(t);
    cr_assert(note && note[0]);
    if (mode == TN_CONTAIN_SESSION) /* cgroup_root "" means no cgroups at all */
        cr_assert(strstr(note, "unsupported") != NULL, "%s", note);
    cr_assert_geq(wait_marked(1), 1);
    if (strstr(note, "memory=v1")) {
        /* the leader's v1 memory cgroup carries the limit */
        char path[128], line[1024], mnt[600] = "";
        snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)tn_proc_pid(t));
        FILE *f = fopen(path, "re");
        char cg[900] = "";
        while (f && fgets(line, sizeof(line), f))
            if (strstr(line, ":memory:"))
                sscanf(strstr(line, ":memory:") + 8, "%899s", cg);
        if (f)
            fclose(f);
        cr_assert(strstr(cg, "/task-60-1") != NULL, "leader in %s", cg);
        FILE *m = fopen("/proc/self/mountinfo", "re");
        while (m && fgets(line, sizeof(line), m))
            if (strstr(line, " - cgroup ") && strstr(line, "memory"))
                sscanf(line, "%*s %*s %*s %*s %599s", mnt);
        if (m)
            fclose(m);
        char lim[1600];
        snprintf(lim, sizeof(lim), "%s%s/memory.limit_in_bytes", mnt, cg);
        char *v = slurp(lim);
        cr_assert_eq(strtoull(v, NULL, 10), 64ull << 20, "%s: %s", lim, v);
        free(v);
    }
    fprintf(stderr, "limits mode=%s note=\"%s\"\n", tn_contain_mode_name(mode), note);
    cr_assert_eq(tn_proc_kill(P, t, 100), TN_OK);
    (void)wait_exit(t);
    tn_proc_free(t);
    tn_procs_stats st;
    tn_procs_stats_get(P, &st);
    cr_assert_eq(st.cgroups, 0, "v1 limit cgroups are removed with the attempt");
}

Test(proc, limits_session)
{
    limits(TN_CONTAIN_SESSION);
}
Test(proc, limits_cgroup)
{
    limits(TN_CONTAIN_CGROUP);
}

Test(proc, same_attempt_twice_is_refused)
{
    open_mgr(TN_CONTAIN_SESSION);
    tn_proc *t = start(70, "sleep 300", NULL);
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/run", tmp);
    snprintf(log, sizeof(log), "%s/y.log", tmp);
    tn_spawn s = {.task = 70, .attempt = 1, .script = "true", .exec_dir = dir, .log_path = log};
    tn_proc *u = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &u, &msg), TN_ERR_EXISTS);
    cr_assert_null(u);
    cr_assert_eq(tn_proc_kill(P, t, 50), TN_OK);
    (void)wait_exit(t);
    tn_proc_free(t);
}

/* The worker's sub-tree removed under a running manager (a cleanup script, another
 * program's rmdir): the next attempt makes it again and runs contained, instead of
 * failing with "No such file or directory". */
Test(proc, a_removed_worker_subtree_is_made_again_at_the_next_start)
{
    open_mgr(TN_CONTAIN_CGROUP);
    const char *sub = tn_procs_cgroup_dir(P);
    cr_assert_not_null(sub);
    char path[600];
    snprintf(path, sizeof(path), "%s", sub);
    cr_assert_eq(rmdir(path), 0, "rmdir %s: %s", path, strerror(errno));
    tn_proc *t = start(1, "exit 0", NULL);
    cr_assert_eq(tn_proc_mode(t), TN_CONTAIN_CGROUP);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "%s was not made again", path);
    tn_proc_exit e = wait_exit(t);
    cr_assert(WIFEXITED(e.status) && WEXITSTATUS(e.status) == 0);
    tn_proc_free(t);
}

/* ---------------------------------------------------------------------------------- */
/* The pids limit */

/* A task that forks in a loop is stopped at its pids limit: its forks fail, what it started
 * is at most the limit, and every process it started is gone when it ends. */
static void pids_limit(tn_contain_mode mode)
{
    open_mgr(mode);
    char dir[512], log[512];
    snprintf(dir, sizeof(dir), "%s/run", tmp);
    snprintf(log, sizeof(log), "%s/task-pids.log", tmp);
    tn_spawn s = {.task = 45,
                  .attempt = 1,
                  .script = "set +e; i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); "
                            "done; echo loop-done; exit 0",
                  .exec_dir = dir,
                  .log_path = log,
                  .envp = task_env,
                  .pids_max = 20};
    tn_proc *t = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_OK, "%s", msg.text);
    const char *pn = tn_proc_pids_note(t);
    if (strcmp(pn, "none") == 0) {
        char note[256];
        snprintf(note, sizeof(note), "%s", tn_proc_limits_note(t));
        tn_proc_free(t);
        teardown(); /* a skipped test's .fini does not run: nothing may stay behind */
        cr_skip_test("no pids controller and the tests run as root: %s", note);
    }
    cr_assert(strstr(pn, ":20"), "the limit that applied: %s", pn);
    cr_assert(strstr(tn_proc_limits_note(t), "pids="), "%s", tn_proc_limits_note(t));
    int most = 0;
    for (int i = 0; i < 50; i++) { /* while it runs: never more than the limit */
        int n = marked(NULL, 0);
        most = n > most ? n : most;
        sleep_ms(10);
    }
    tn_proc_exit ex = wait_exit(t);
    char *out = slurp(log);
    cr_expect_leq(most, 20, "processes of the task at once: %d", most);
    cr_expect_leq(ex.leftovers, 20);
    cr_expect(strstr(out, "fork") || strstr(out, "Resource temporarily unavailable"),
              "its forks failed: %s", out);
    free(out);
    cr_assert_eq(marked(NULL, 0), 0, "nothing outlives its task");
    tn_proc_free(t);
}

Test(proc, pids_limit_stops_a_fork_loop_session)
{
    pids_limit(TN_CONTAIN_SESSION);
}
Test(proc, pids_limit_stops_a_fork_loop_cgroup)
{
    pids_limit(TN_CONTAIN_CGROUP);
}

/* ---------------------------------------------------------------------------------- */
/* Spare v1 pids cgroups */

/* The worker's v1 pids sub-tree, found here independently of core/worker: the pids
 * hierarchy's mount and this process's path in it, then tern/<name>. */
static bool v1_pids_dir(char *out, size_t len)
{
    char cg[2100];
    if (!tu_v1_pids_cgroup(cg, sizeof(cg)))
        return false;
    int n = snprintf(out, len, "%s/tern/%s", cg, name);
    return n > 0 && (size_t)n < len;
}

static int count_spares(const char *dir)
{
    return tu_count_prefix(dir, "spare-");
}

/* A manager keeping 3 spare pids cgroups, else the test is skipped (no v1 pids hierarchy
 * here: the pids limit is v2's or none, and there is nothing to keep). */
static void open_spares_or_skip(tn_contain_mode mode, char *dir, size_t len)
{
    open_mgr(mode);
    tn_procs_spares(P, 3);
    uint32_t made = tn_procs_fill_spares(P, 10);
    if (made == 0 || !v1_pids_dir(dir, len)) {
        teardown(); /* a skipped test's .fini does not run: nothing may stay behind */
        cr_skip_test("no v1 pids hierarchy here: no spare pids cgroups");
    }
    cr_assert_eq(made, 3, "made ahead up to the count asked");
    cr_assert_eq(tn_procs_fill_spares(P, 10), 0, "and no more");
    cr_assert_eq(count_spares(dir), 3);
}

static tn_proc *start_pids(uint64_t task, const char *script, uint32_t pids_max)
{
    char sub[64];
    snprintf(sub, sizeof(sub), "run-%llu", (unsigned long long)task);
    return start_in(task, script, sub, pids_max);
}

/* A spawn takes a spare (renamed to its task-T-A, limit written); a clean end gives it back,
 * a killed attempt's cgroup is removed; the manager's free leaves no spare behind. */
static void pids_spares(tn_contain_mode mode)
{
    char dir[600];
    open_spares_or_skip(mode, dir, sizeof(dir));
    tn_proc *t = start_pids(71, "exit 0", 7);
    cr_assert_str_eq(tn_proc_pids_note(t), "v1:7");
    cr_assert_eq(count_spares(dir), 2, "the attempt took a spare");
    char task_cg[700], max[32] = "";
    snprintf(task_cg, sizeof(task_cg), "%s/task-71-1/pids.max", dir);
    FILE *f = fopen(task_cg, "re");
    cr_assert_not_null(f, "the spare is the attempt's cgroup now: %s", task_cg);
    cr_assert_not_null(fgets(max, sizeof(max), f));
    fclose(f);
    cr_assert_str_eq(max, "7\n", "its limit is the attempt's");
    tn_proc_exit ex = wait_exit(t);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 0);
    tn_proc_free(t);
    cr_assert_eq(count_spares(dir), 3, "a clean end gives its cgroup back");
    snprintf(task_cg, sizeof(task_cg), "%s/task-71-1", dir);
    cr_assert_neq(access(task_cg, F_OK), 0, "under its spare name");

    /* a spare taken again carries the next attempt's limit */
    t = start_pids(72, "sleep 300", 4);
    cr_assert_str_eq(tn_proc_pids_note(t), "v1:4");
    cr_assert_eq(tn_proc_kill(P, t, 0), TN_OK);
    (void)wait_exit(t);
    tn_proc_free(t);
    cr_assert_eq(count_spares(dir), 2, "a killed attempt's cgroup is removed, not kept");
    tn_procs_free(P);
    P = NULL;
    cr_assert_neq(access(dir, F_OK), 0, "no spare (nor the sub-tree) is left: %s", dir);
}

/* (cgroup mode only: a manager told to use no cgroups uses no v1 pids cgroup either) */
Test(proc, spare_pids_cgroups_cgroup)
{
    pids_spares(TN_CONTAIN_CGROUP);
}

/* Spares a previous run left (a worker killed with SIGKILL) are removed at the next start,
 * with the leftovers. */
Test(proc, spare_pids_cgroups_of_a_previous_run_are_removed)
{
    char dir[600], left[700];
    open_spares_or_skip(TN_CONTAIN_CGROUP, dir, sizeof(dir));
    snprintf(left, sizeof(left), "%s/spare-900", dir); /* as a killed run leaves them */
    cr_assert_eq(mkdir(left, 0755), 0, "%s", strerror(errno));
    cr_assert_eq(tn_procs_adopt_leftovers(P, NULL, NULL, NULL), TN_OK);
    cr_assert_neq(access(left, F_OK), 0, "a previous run's spare is removed");
    cr_assert_eq(count_spares(dir), 0, "all of them");
    cr_assert_eq(tn_procs_fill_spares(P, 10), 3, "and new ones are made");
}

/* A log with other names (an empty log's name points at the file all of them share) is
 * never appended to: the attempt gets a new file under that name. */
Test(proc, a_log_with_other_names_is_replaced_not_appended)
{
    open_mgr(TN_CONTAIN_SESSION);
    char shared[600], log[600], dir[600];
    snprintf(shared, sizeof(shared), "%s/shared-empty", tmp);
    snprintf(log, sizeof(log), "%s/task-81.log", tmp);
    snprintf(dir, sizeof(dir), "%s/run-81", tmp);
    int fd = open(shared, O_WRONLY | O_CREAT | O_EXCL, 0640);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(link(shared, log), 0);
    tn_spawn s = {.task = 81,
                  .attempt = 1,
                  .script = "echo written",
                  .exec_dir = dir,
                  .log_path = log,
                  .envp = task_env};
    tn_proc *t = NULL;
    cr_assert_eq(tn_proc_start(P, &s, &t, &msg), TN_OK, "%s", msg.text);
    tn_proc_exit ex = wait_exit(t);
    cr_assert(WIFEXITED(ex.status) && WEXITSTATUS(ex.status) == 0);
    tn_proc_free(t);
    char *out = slurp(log), *other = slurp(shared);
    cr_expect_str_eq(out, "written\n");
    cr_expect_str_eq(other, "", "the other name's file is untouched");
    free(out);
    free(other);
}

/* Integration tests: real `tern master` and `tern worker` processes on ipc:// sockets in
 * a temp dir, driven through the `tern` CLI: shell DAGs, values passed downstream, logs,
 * a kill that really kills (with and without cgroup v2), timeouts, stop, worker and
 * master crashes, and a lossy network. Every process started is ended; nothing is left. */
#include "util.h"
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"
#include "ctlsrv.h"
#include "inproc.h"
#include "proto.h"
#include "sm_gen.h"
#include "transport.h"

static char *dir;
static pid_t procs[8];
static char names[8][32];
static int nprocs;

static void setup(void)
{
    dir = tu_tmpdir();
    nprocs = 0;
}

/* Signal process i and reap it: its wait status, or -1 when it had not ended after ms
 * (then it is killed). */
static int stop_proc_within(int i, int sig, int ms)
{
    if (procs[i] <= 0)
        return -1;
    kill(procs[i], sig);
    int st;
    for (int t = 0; t < ms / 10; t++) {
        if (waitpid(procs[i], &st, WNOHANG) == procs[i]) {
            procs[i] = 0;
            return st;
        }
        usleep(10000);
    }
    kill(procs[i], SIGKILL);
    waitpid(procs[i], &st, 0);
    procs[i] = 0;
    return -1;
}

/* Signal process i and reap it; SIGKILL when it has not exited after 30 s, past the
 * daemons' own bounds on a socket close that stalls in nng (5 s for a control server, 10 s
 * for a sender). Returns its wait status when it exited on its own, -1 when it had to be
 * killed (or was not there). */
static int stop_proc_status(int i, int sig)
{
    return stop_proc_within(i, sig, 30000);
}

static void stop_proc(int i, int sig)
{
    (void)stop_proc_status(i, sig);
}

static void teardown(void)
{
    for (int i = nprocs - 1; i >= 0; i--)
        stop_proc(i, SIGTERM);
    nprocs = 0;
    if (dir) {
        tu_rm_workers_cgroups(dir); /* of a worker that had to be killed */
        tu_rm_rf(dir);
    }
    free(dir);
    dir = NULL; /* a test's own fini may run it first */
}

/* Start `tern ARGS...` in the background, output in DIR/NAME.log. Returns its index. */
static int spawn(const char *name, const char *const *args, const char *faults)
{
    char mark[700];
    snprintf(mark, sizeof(mark), "%s", dir);
    char log[600];
    snprintf(log, sizeof(log), "%s/%s.log", dir, name);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("TERN_LOG_LEVEL", "debug", 1);
        /* every task process inherits this: the test's own way to find them */
        setenv("TERN_TEST_MARK", mark, 1);
        if (faults)
            setenv("TERN_FAULTS", faults, 1);
        char *argv[40];
        int n = 0;
        argv[n++] = (char *)tu_tern();
        for (; args[n - 1] && n < 39; n++)
            argv[n] = (char *)args[n - 1];
        argv[n] = NULL;
        execv(argv[0], argv);
        _exit(127);
    }
    procs[nprocs] = pid;
    snprintf(names[nprocs], sizeof(names[nprocs]), "%s", name);
    return nprocs++;
}

static char murl[600], mdata[600], mctl[600];

/* A master on DIR/master, its output in DIR/LOG_NAME.log. */
static int start_master_logged(const char *log_name, const char *hb_timeout, const char *faults)
{
    snprintf(murl, sizeof(murl), "ipc://%s/m.sock", dir);
    snprintf(mdata, sizeof(mdata), "%s/master", dir);
    snprintf(mctl, sizeof(mctl), "ipc://%s/m.ctl", dir);
    const char *a[] = {"master",   "--listen", murl, "--data",
                       mdata,      "--ctl",    mctl, "--heartbeat-timeout",
                       hb_timeout, NULL};
    return spawn(log_name, a, faults);
}

static int start_master(const char *hb_timeout, const char *faults)
{
    return start_master_logged("master", hb_timeout, faults);
}

static int start_worker(const char *name, bool cgroup, const char *faults, const char *slots)
{
    /* worker names are host-wide (they name cgroups): unique per test process */
    char wname[64];
    snprintf(wname, sizeof(wname), "t%d-%s", (int)getpid(), name);
    char listen[600], data[600], ctl[600];
    snprintf(listen, sizeof(listen), "ipc://%s/%s.sock", dir, name);
    snprintf(data, sizeof(data), "%s/%s", dir, name);
    snprintf(ctl, sizeof(ctl), "ipc://%s/%s.ctl", dir, name);
    const char *a[] = {"worker", "--master", murl,  "--listen",
                       listen,   "--data",   data,  "--name",
                       wname,    "--ctl",    ctl,   "--heartbeat",
                       "200ms",  "--slots",  slots, cgroup ? NULL : "--no-cgroup",
                       NULL};
    return spawn(name, a, faults);
}

/* A worker with extra arguments (NULL-ended), in session containment. */
static int start_worker_with(const char *name, const char *const *extra)
{
    char wname[64];
    snprintf(wname, sizeof(wname), "t%d-%s", (int)getpid(), name);
    char listen[600], data[600], ctl[600];
    snprintf(listen, sizeof(listen), "ipc://%s/%s.sock", dir, name);
    snprintf(data, sizeof(data), "%s/%s", dir, name);
    snprintf(ctl, sizeof(ctl), "ipc://%s/%s.ctl", dir, name);
    const char *a[40] = {"worker", "--master",    murl,     "--listen",   listen,
                         "--data", data,          "--name", wname,        "--ctl",
                         ctl,      "--heartbeat", "200ms",  "--no-cgroup"};
    int n = 14;
    for (int i = 0; extra && extra[i] && n < 38; i++)
        a[n++] = extra[i];
    a[n] = NULL;
    return spawn(name, a, NULL);
}

/* Run a tern client command against the master; returns exit status, stdout in *out. */
static int ctl(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ctl(char **out, const char *fmt, ...)
{
    char args[2048], cmd[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s %s --master %s", tu_tern(), args, mctl);
    char *err = NULL;
    int rc = tu_run(cmd, out, &err);
    free(err);
    return rc;
}

static void wait_workers(int n)
{
    for (int i = 0; i < 600; i++) {
        char *out = NULL;
        if (ctl(&out, "workers --json") == 0) {
            int alive = 0;
            for (char *p = out; (p = strstr(p, "\"alive\":true")); p++)
                alive++;
            free(out);
            if (alive >= n)
                return;
        } else {
            free(out);
        }
        usleep(50000);
    }
    cr_assert_fail("%d workers did not join", n);
}

static char *write_file(const char *name, const char *text)
{
    char *p = malloc(600);
    snprintf(p, 600, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

static uint64_t start_wf(const char *yaml_name, const char *yaml, const char *wf)
{
    char *f = write_file(yaml_name, yaml), *out = NULL;
    cr_assert_eq(ctl(&out, "def apply %s", f), 0, "%s", out);
    free(out);
    cr_assert_eq(ctl(&out, "start %s --json", wf), 0, "%s", out);
    char *id = strstr(out, "\"id\":");
    cr_assert_not_null(id, "%s", out);
    uint64_t wid = strtoull(id + 5, NULL, 10);
    free(out);
    free(f);
    return wid;
}

/* The instance's state, from `tern status --json`. */
static void wf_state(uint64_t wf, char *state, size_t len)
{
    char *out = NULL;
    state[0] = 0;
    if (ctl(&out, "status %" PRIu64 " --json", wf) == 0) {
        char *s = strstr(out, "\"state\":\"");
        if (s)
            snprintf(state, len, "%.*s", (int)strcspn(s + 9, "\""), s + 9);
    }
    free(out);
}

static bool is_final(const char *s)
{
    return !strcmp(s, "SUCCESS") || !strcmp(s, "FAILURE") || !strcmp(s, "STOP") ||
           !strcmp(s, "PAUSE");
}

static void wait_final(uint64_t wf, char *state, size_t len)
{
    for (int i = 0; i < 1200; i++) {
        wf_state(wf, state, len);
        if (is_final(state))
            return;
        usleep(50000);
    }
    cr_assert_fail("workflow %" PRIu64 " did not finish (state %s)", wf, state);
}

/* The status JSON of a task by name: state and attempts. */
static void task_state(uint64_t wf, const char *name, char *state, size_t len, int *attempts)
{
    char *out = NULL, key[128];
    state[0] = 0;
    *attempts = 0;
    cr_assert_eq(ctl(&out, "status %" PRIu64 " --json", wf), 0);
    snprintf(key, sizeof(key), "\"name\":\"%s\"", name);
    char *t = strstr(out, key);
    if (t) {
        char *s = strstr(t, "\"state\":\""), *a = strstr(t, "\"attempts\":");
        if (s)
            snprintf(state, len, "%.*s", (int)strcspn(s + 9, "\""), s + 9);
        if (a)
            *attempts = atoi(a + 11);
    }
    free(out);
}

/* Wait (up to 30 s) until task `name` of wf runs; its state and attempts as task_state. */
static void wait_task_running(uint64_t wf, const char *name, char *state, size_t len,
                              int *attempts)
{
    for (int i = 0; i < 600; i++) {
        task_state(wf, name, state, len, attempts);
        if (!strcmp(state, "RUNNING_EXECUTION"))
            return;
        usleep(50000);
    }
    cr_assert_fail("task %s of workflow %" PRIu64 " never ran (state %s)", name, wf, state);
}

static uint64_t task_id(uint64_t wf, const char *name)
{
    char *out = NULL, key[128];
    cr_assert_eq(ctl(&out, "status %" PRIu64 " --json", wf), 0);
    snprintf(key, sizeof(key), "\"name\":\"%s\"", name);
    char *t = strstr(out, key);
    uint64_t id = 0;
    /* the id comes right before the name in each task object */
    while (t && t > out && strncmp(t, "{\"id\":", 6) != 0)
        t--;
    if (t)
        id = strtoull(t + 6, NULL, 10);
    free(out);
    return id;
}

/* Task processes of this test (their environment has the worker's TERN_TEST_MARK and a
 * task attempt), optionally only those of one attempt: the test's own view of what lives,
 * independent of how the worker tracks them. */
static int count_tasks(int attempt)
{
    char mark[700], att[64];
    snprintf(mark, sizeof(mark), "TERN_TEST_MARK=%s", dir);
    snprintf(att, sizeof(att), "TERN_TASK_ATTEMPT=%d", attempt);
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    char *buf = malloc(1 << 20);
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char p[300];
        snprintf(p, sizeof(p), "/proc/%s/environ", de->d_name);
        int fd = open(p, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t r = read(fd, buf, (1 << 20) - 1);
        close(fd);
        if (r <= 0)
            continue;
        bool has_mark = false, has_att = false;
        for (char *e = buf; e < buf + r; e += strlen(e) + 1) {
            if (strcmp(e, mark) == 0)
                has_mark = true;
            if (attempt ? strcmp(e, att) == 0 : strncmp(e, "TERN_TASK_ATTEMPT=", 18) == 0)
                has_att = true;
        }
        n += has_mark && has_att;
    }
    free(buf);
    closedir(d);
    return n;
}

TestSuite(cluster, .init = setup, .fini = teardown, .timeout = 240);

Test(cluster, shell_dag_values_and_logs)
{
    start_master("5s", NULL);
    start_worker("w1", true, NULL, "4");
    wait_workers(1);
    uint64_t wf =
        start_wf("dag.yaml",
                 "name: dag\nparams: {greeting: hello}\ntasks:\n"
                 "  - name: a\n    type: shell\n"
                 "    command: |\n      echo \"${greeting} from a\"\n"
                 "      echo '${setValue(rows=42)}'\n"
                 "  - {name: b, type: shell, deps: [a], command: 'echo b got ${rows}'}\n"
                 "  - {name: c, type: shell, deps: [a], command: 'exit 0'}\n"
                 "  - name: d\n    type: shell\n    deps: [b, c]\n"
                 "    command: 'test \"${rows}\" = 42'\n",
                 "dag");
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    char *out = NULL;
    cr_assert_eq(ctl(&out, "logs %" PRIu64, task_id(wf, "b")), 0, "%s", out);
    cr_assert(strstr(out, "b got 42"), "the value passed downstream: %s", out);
    free(out);
    cr_assert_eq(ctl(&out, "logs %" PRIu64, task_id(wf, "a")), 0);
    cr_assert(strstr(out, "hello from a"), "%s", out);
    free(out);
    cr_assert_eq(ctl(&out, "ls"), 0);
    cr_assert(strstr(out, "dag") && strstr(out, "SUCCESS"), "%s", out);
    free(out);
}

/* Through master and worker: a param error fails the task with its reason (and frees the
 * worker's slot: the next run on the one-slot worker goes on); `tern status` shows the
 * instance's params and what each task passed, `tern audit` the values, not byte counts. */
Test(cluster, param_errors_fail_and_param_values_are_shown)
{
    start_master("5s", NULL);
    start_worker("w1", false, NULL, "1");
    wait_workers(1);
    uint64_t bad = start_wf("bad.yaml",
                            "name: bad\nparams: {r1: '${r1}'}\ntasks:\n"
                            "  - {name: a, type: shell, command: 'echo ${r1}'}\n",
                            "bad");
    char st[64];
    wait_final(bad, st, sizeof(st));
    cr_assert_str_eq(st, "FAILURE");
    char *out = NULL;
    cr_assert_eq(ctl(&out, "status %" PRIu64 " --json", bad), 0);
    cr_assert(
        strstr(out,
               "\"reason\":\"param error: global params refer to each other in a cycle: r1"),
        "%s", out);
    free(out);
    cr_assert_eq(ctl(&out, "status %" PRIu64, bad), 0);
    cr_assert(strstr(out, "  param error: global params refer"), "the REASON column: %s", out);
    free(out);
    /* outputs over the value limit fail the task that printed them, naming the limit */
    uint64_t big = start_wf("big.yaml",
                            "name: big\ntasks:\n  - {name: a, type: shell, command: \"printf "
                            "'${setValue(v=%070000d)}' 0\"}\n",
                            "big");
    wait_final(big, st, sizeof(st));
    cr_assert_str_eq(st, "FAILURE");
    cr_assert_eq(ctl(&out, "status %" PRIu64, big), 0);
    cr_assert(strstr(out, "  1 ${setValue(...)} output(s) not passed on: a value over "
                          "the 65536-byte limit"),
              "%s", out);
    free(out);
    uint64_t wf = start_wf("pv.yaml",
                           "name: pv\nparams: {greeting: 'hello world', day: '$[yyyyMMdd]'}\n"
                           "tasks:\n"
                           "  - {name: a, type: shell, command: \"echo '${setValue(rows=4 "
                           "2)}'\"}\n"
                           "  - {name: b, type: shell, deps: [a], command: 'echo ${rows}'}\n",
                           "pv");
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS", "the slot of the failed task was not freed");
    cr_assert_eq(ctl(&out, "status %" PRIu64, wf), 0);
    cr_assert(strstr(out, "params: day=") && strstr(out, "greeting=\"hello world\""), "%s",
              out);
    cr_assert(strstr(out, "passed: rows=\"4 2\""), "%s", out);
    free(out);
    cr_assert_eq(ctl(&out, "status %" PRIu64 " --json", wf), 0);
    cr_assert(strstr(out, "\"params\":{\"day\":\"") &&
                  strstr(out, "\"greeting\":\"hello world\"}"),
              "%s", out);
    cr_assert(strstr(out, "\"passed\":{\"rows\":\"4 2\"}"), "%s", out);
    free(out);
    /* audit reads the store; the master keeps it open, but LMDB allows readers */
    char *err = NULL, cmd[1400];
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --data %s", tu_tern(), wf, mdata);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "vars={rows=\"4 2\"}"), "%s", out);
    cr_assert(strstr(out, "effective={day=") && !strstr(out, "bytes"), "%s", out);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --data %s --json", tu_tern(), wf, mdata);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "\"vars\":{\"rows\":\"4 2\"}"), "%s", out);
    cr_assert(strstr(out, "\"effective\":{\"day\":"), "%s", out);
    free(out);
    free(err);
}

/* Tenants: a user (and a group of it) the test creates and removes. */
static char tenant_user[64], tenant_group[64];

static void tenant_teardown(void)
{
    teardown();
    char cmd[256];
    if (tenant_user[0]) {
        snprintf(cmd, sizeof(cmd), "userdel -r %s >/dev/null 2>&1", tenant_user);
        (void)!system(cmd);
    }
    if (tenant_group[0]) {
        snprintf(cmd, sizeof(cmd), "groupdel %s >/dev/null 2>&1", tenant_group);
        (void)!system(cmd);
    }
}

/* The log of task `name` of instance wf, through `tern logs`. */
static char *task_log(uint64_t wf, const char *name)
{
    char cmd[1200], *out = NULL, *err = NULL;
    uint64_t id = task_id(wf, name);
    snprintf(cmd, sizeof(cmd), "%s logs %" PRIu64 " --master %s", tu_tern(), id, mctl);
    int rc = tu_run(cmd, &out, &err);
    cr_assert_eq(rc, 0, "tern logs %" PRIu64 " (task %s): exit %d: %s%s", id, name, rc,
                 out ? out : "", err ? err : "");
    free(err);
    return out;
}

/* A workflow's `tenant:` (and `tern start --tenant`) runs its shell tasks as that OS user,
 * with its home, its supplementary groups and an exec dir it owns; a missing user fails
 * the task with that reason; without a tenant tasks run as the worker's own user. */
Test(cluster, tenant_runs_shell_tasks_as_its_user, .fini = tenant_teardown)
{
    if (geteuid() != 0)
        cr_skip_test("creating a user needs root");
    snprintf(tenant_user, sizeof(tenant_user), "tern-t-%d", (int)getpid());
    snprintf(tenant_group, sizeof(tenant_group), "tern-g-%d", (int)getpid());
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "groupadd %s && useradd -m -G %s %s", tenant_group, tenant_group,
             tenant_user);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    start_master("5s", NULL);
    start_worker("w1", false, NULL, "2");
    wait_workers(1);
    static const char *const body =
        "tasks:\n"
        "  - name: a\n    type: shell\n"
        "    command: |\n"
        "      echo \"user=$(id -un) groups=$(id -Gn) home=$HOME owner=$(stat -c %U .)\"\n";
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), "name: ten\ntenant: %s\n", tenant_user);
    size_t l = strlen(yaml);
    snprintf(yaml + l, sizeof(yaml) - l, "%s", body);
    uint64_t wf = start_wf("ten.yaml", yaml, "ten");
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    char want[256], *log = task_log(wf, "a");
    snprintf(want, sizeof(want), "user=%s groups=", tenant_user);
    cr_assert(strstr(log, want), "%s", log);
    cr_assert(strstr(log, tenant_group), "supplementary group missing: %s", log);
    snprintf(want, sizeof(want), "home=/home/%s owner=%s", tenant_user, tenant_user);
    cr_assert(strstr(log, want), "%s", log);
    free(log);

    /* no tenant: the worker's own user */
    snprintf(yaml, sizeof(yaml), "name: own\n");
    l = strlen(yaml);
    snprintf(yaml + l, sizeof(yaml) - l, "%s", body);
    wf = start_wf("own.yaml", yaml, "own");
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    log = task_log(wf, "a");
    cr_assert(strstr(log, "user=root "), "%s", log);
    free(log);

    /* --tenant over a definition without one */
    char *out = NULL;
    cr_assert_eq(ctl(&out, "start own --tenant %s --json", tenant_user), 0, "%s", out);
    char *id = strstr(out, "\"id\":");
    cr_assert_not_null(id, "%s", out);
    wf = strtoull(id + 5, NULL, 10);
    free(out);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    log = task_log(wf, "a");
    snprintf(want, sizeof(want), "user=%s ", tenant_user);
    cr_assert(strstr(log, want), "%s", log);
    free(log);

    /* a user that does not exist: the task fails and says so */
    cr_assert_eq(ctl(&out, "start own --tenant tern-nouser-%d --json", (int)getpid()), 0, "%s",
                 out);
    id = strstr(out, "\"id\":");
    cr_assert_not_null(id, "%s", out);
    wf = strtoull(id + 5, NULL, 10);
    free(out);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "FAILURE");
    cr_assert_eq(ctl(&out, "status %" PRIu64 " --json", wf), 0);
    cr_assert(strstr(out, "does not exist"), "%s", out);
    free(out);
    /* a name that is no user name is refused at start */
    cr_assert_neq(ctl(&out, "start own --tenant 'bad/name'"), 0, "%s", out);
    free(out);
}

static const char *tree_script =
    "name: tree\ntasks:\n  - name: t\n    type: shell\n    kill_grace: 1s\n"
    "    command: |\n"
    "      for i in 1 2 3 4 5; do (sleep 300 & sleep 300 & wait) & done\n"
    "      for i in 1 2 3 4 5; do sleep 300 & done\n"
    "      setsid sleep 300 &\n"
    "      ( (sleep 300 &) & )\n"
    "      sh -c 'trap \"\" TERM; sleep 300' &\n"
    "      echo started\n"
    "      wait\n";

static void kill_test(bool cgroup)
{
    start_master("5s", NULL);
    start_worker("w1", cgroup, NULL, "4");
    wait_workers(1);
    uint64_t wf = start_wf("tree.yaml", tree_script, "tree");
    /* wait until the whole tree runs: 20+ processes */
    int n = 0;
    for (int i = 0; i < 400 && n < 20; i++) {
        n = count_tasks(0);
        usleep(50000);
    }
    cr_assert_geq(n, 20, "the task started %d processes", n);
    char *out = NULL;
    cr_assert_eq(ctl(&out, "kill %" PRIu64, task_id(wf, "t")), 0, "%s", out);
    free(out);
    char st[64];
    int att;
    for (int i = 0; i < 400; i++) {
        task_state(wf, "t", st, sizeof(st), &att);
        if (!strcmp(st, "KILL"))
            break;
        usleep(50000);
    }
    cr_assert_str_eq(st, "KILL");
    /* KILL_RESULT comes after verify-empty: nothing of the task survives */
    cr_assert_eq(count_tasks(0), 0, "processes of the killed task survive");
}

Test(cluster, kill_really_kills_with_cgroup)
{
    kill_test(true);
}
Test(cluster, kill_really_kills_without_cgroup)
{
    kill_test(false);
}

Test(cluster, timeout_kills_and_stop_kills_running_tasks)
{
    start_master("5s", NULL);
    start_worker("w1", true, NULL, "4");
    wait_workers(1);
    uint64_t wf = start_wf("to.yaml",
                           "name: to\ntasks:\n"
                           "  - {name: slow, type: shell, command: 'sleep 300', timeout: 1s,\n"
                           "     timeout_strategy: fail, kill_grace: 200ms}\n",
                           "to");
    char st[64];
    int att;
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "STOP");
    task_state(wf, "slow", st, sizeof(st), &att);
    cr_assert_str_eq(st, "KILL");

    wf = start_wf("st.yaml",
                  "name: st\ntasks:\n"
                  "  - {name: a, type: shell, command: 'sleep 300', kill_grace: 200ms}\n"
                  "  - {name: b, type: shell, command: 'sleep 300', kill_grace: 200ms}\n",
                  "st");
    wait_task_running(wf, "b", st, sizeof(st), &att);
    char *out = NULL;
    cr_assert_eq(ctl(&out, "stop %" PRIu64, wf), 0, "%s", out);
    free(out);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "STOP");
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_str_eq(st, "KILL");
}

Test(cluster, worker_crash_fails_over_and_the_old_attempt_never_succeeds)
{
    start_master("1500ms", NULL);
    int w1 = start_worker("w1", true, NULL, "1");
    wait_workers(1);
    /* attempt 1 would run long and then write; attempts after a failover are quick. The
     * old attempt must never write (its worker kills it when it comes back), and its
     * success must never be recorded. */
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "name: fo\ntasks:\n  - name: long\n    type: shell\n    command: |\n"
             "      if [ \"$TERN_TASK_ATTEMPT\" = 1 ]; then sleep 60; fi\n"
             "      echo \"done $TERN_TASK_ATTEMPT\" >> %s/done.txt\n",
             dir);
    uint64_t wf = start_wf("fo.yaml", yaml, "fo");
    char st[64];
    int att;
    wait_task_running(wf, "long", st, sizeof(st), &att);
    stop_proc(w1, SIGKILL); /* the worker dies; its task's processes live on for now */
    start_worker("w2", true, NULL, "1");
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    task_state(wf, "long", st, sizeof(st), &att);
    cr_assert_eq(att, 2, "failed over with a new attempt");
    /* the stale attempt still runs on the dead worker's host until w1 comes back... */
    cr_assert_gt(count_tasks(1), 0, "attempt 1 lives on while its worker is down");
    start_worker("w1", true, NULL, "1");
    wait_workers(2);
    /* ...which kills what its previous run left */
    for (int i = 0; i < 200 && count_tasks(1) > 0; i++)
        usleep(50000);
    cr_assert_eq(count_tasks(1), 0, "the stale attempt's processes were killed");
    char done[600];
    snprintf(done, sizeof(done), "%s/done.txt", dir);
    FILE *f = fopen(done, "r");
    cr_assert_not_null(f);
    char line[64];
    int lines = 0;
    while (fgets(line, sizeof(line), f)) {
        lines++;
        cr_assert_str_eq(line, "done 2\n", "only the current attempt finished: %s", line);
    }
    fclose(f);
    cr_assert_eq(lines, 1);
    /* and the log records one success, attempt 2's */
    char *out = NULL, cmd[1200];
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --json --data %s", tu_tern(), wf, mdata);
    stop_proc(0, SIGTERM);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0);
    int succeeded = 0;
    for (char *p = out; (p = strstr(p, "\"event\":\"SUCCEEDED\"")); p++)
        succeeded++;
    cr_assert_eq(succeeded, 1, "%s", out);
    cr_assert(strstr(out, "\"event\":\"SUCCEEDED\"") &&
                  strstr(strstr(out, "\"event\":\"SUCCEEDED\""), "\"attempt\":2"),
              "%s", out);
    free(out);
}

Test(cluster, master_crash_restart_reconciles)
{
    int m = start_master("5s", NULL);
    start_worker("w1", true, NULL, "4");
    wait_workers(1);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "name: mc\ntasks:\n"
             "  - {name: a, type: shell, command: 'sleep 1'}\n"
             "  - {name: b, type: shell, deps: [a], command: 'sleep 2'}\n"
             "  - {name: c, type: shell, deps: [b], command: 'true'}\n");
    uint64_t wf = start_wf("mc.yaml", yaml, "mc");
    char st[64];
    int att;
    wait_task_running(wf, "b", st, sizeof(st), &att);
    stop_proc(m, SIGKILL);
    start_master("5s", NULL);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    /* b kept running on the worker across the restart: still its first attempt */
    task_state(wf, "b", st, sizeof(st), &att);
    cr_assert_str_eq(st, "SUCCESS");
    cr_assert_eq(att, 1);
    /* each task's success is recorded once */
    char *out = NULL, cmd[1200];
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --json --data %s", tu_tern(), wf, mdata);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0);
    int succeeded = 0;
    for (char *p = out; (p = strstr(p, "\"event\":\"SUCCEEDED\"")); p++)
        succeeded++;
    cr_assert_eq(succeeded, 3, "%s", out);
    free(out);
}

Test(cluster, lossy_network_changes_no_final_state)
{
    const char *faults = "seed=7,drop=0.2,dup=0.2,delay=0.2,max_delay_ms=40,reorder=0.1";
    start_master("5s", faults);
    start_worker("w1", true, faults, "4");
    wait_workers(1);
    uint64_t wf = start_wf("lossy.yaml",
                           "name: lossy\nfailure_strategy: continue\ntasks:\n"
                           "  - {name: a, type: shell, command: 'true'}\n"
                           "  - {name: b, type: shell, deps: [a], command: 'true'}\n"
                           "  - {name: c, type: shell, deps: [a], command: 'exit 3'}\n"
                           "  - {name: d, type: noop, deps: [b]}\n",
                           "lossy");
    char st[64];
    int att;
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "FAILURE");
    task_state(wf, "b", st, sizeof(st), &att);
    cr_assert_str_eq(st, "SUCCESS");
    task_state(wf, "c", st, sizeof(st), &att);
    cr_assert_str_eq(st, "FAILURE");
    task_state(wf, "d", st, sizeof(st), &att);
    cr_assert_str_eq(st, "SUCCESS");
    /* and the log is consistent */
    char *out = NULL, cmd[1200];
    stop_proc(0, SIGTERM);
    snprintf(cmd, sizeof(cmd), "%s replay --data %s", tu_tern(), mdata);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0, "%s", out);
    free(out);
}

/* ---- the worker's side of fencing, with the test as the master ------------------------ */

typedef struct fake_master {
    pthread_mutex_t mu;
    uint64_t epoch;        /* the worker's, from its last heartbeat */
    uint64_t master_epoch; /* the leader epoch its last heartbeat says it has seen */
    int accepted[4];       /* ACCEPTED per task id */
    int ended[4][4];       /* per task and attempt: 1 RESULT, 2 KILL_RESULT */
    int64_t code[4][4];    /* per task and attempt: the RESULT's exit code */
    int fenced;            /* FENCED answers received, and the last one's fields */
    char fenced_worker[300], fenced_master[300];
    uint64_t fenced_epoch, fenced_refused;
} fake_master;

static tn_err fm_msg(void *arg, tn_str sender, const tn_msg *m)
{
    (void)sender;
    fake_master *f = arg;
    pthread_mutex_lock(&f->mu);
    if (m->type == TN_MSG_HEARTBEAT) {
        f->epoch = m->heartbeat.epoch;
        for (uint32_t i = 0; i < m->heartbeat.gauges.n; i++)
            if (tn_str_eq(m->heartbeat.gauges.v[i].key, "master_epoch"))
                f->master_epoch = m->heartbeat.gauges.v[i].val;
    } else if (m->type == TN_MSG_ACCEPTED && m->accepted.task < 4)
        f->accepted[m->accepted.task]++;
    else if (m->type == TN_MSG_RESULT && m->result.task < 4 && m->result.attempt < 4) {
        f->ended[m->result.task][m->result.attempt] = 1;
        f->code[m->result.task][m->result.attempt] = m->result.exit_code;
    } else if (m->type == TN_MSG_KILL_RESULT && m->kill_result.task < 4 &&
               m->kill_result.attempt < 4)
        f->ended[m->kill_result.task][m->kill_result.attempt] = 2;
    else if (m->type == TN_MSG_FENCED) {
        f->fenced++;
        snprintf(f->fenced_worker, sizeof(f->fenced_worker), "%.*s", (int)m->fenced.worker.len,
                 m->fenced.worker.p);
        snprintf(f->fenced_master, sizeof(f->fenced_master), "%.*s", (int)m->fenced.master.len,
                 m->fenced.master.p);
        f->fenced_epoch = m->fenced.epoch;
        f->fenced_refused = m->fenced.refused;
    }
    pthread_mutex_unlock(&f->mu);
    return TN_OK;
}

static void fm_recv(void *arg, const void *buf, size_t len, const tn_peer *peer)
{
    (void)peer;
    tn_errmsg em = {{0}};
    if (tn_frame_decode(buf, len, fm_msg, arg, &em) != TN_OK)
        fprintf(stderr, "fake master: %s\n", em.text);
}

static uint64_t fm_epoch(fake_master *f, uint64_t not )
{
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&f->mu);
        uint64_t e = f->epoch;
        pthread_mutex_unlock(&f->mu);
        if (e && e != not )
            return e;
        usleep(10000);
    }
    cr_assert_fail("no heartbeat from a new run of the worker");
    return 0;
}

/* DISPATCH attempt of task, for the worker run epoch: a shell command, or noop if NULL. */
static void fm_dispatch_cmd(tn_tx tx, uint64_t task, uint32_t attempt, uint64_t epoch,
                            const char *command)
{
    tn_msg m = {.type = TN_MSG_DISPATCH};
    tn_msg_dispatch *d = &m.dispatch;
    d->task = task;
    d->wf = 1;
    d->attempt = attempt;
    d->name = TN_STR("t");
    d->type = command ? TN_STR("shell") : TN_STR("noop");
    d->command = tn_str_c(command);
    d->worker_group = TN_STR("default");
    d->noop_success = true;
    d->worker_epoch = epoch;
    tn_buf b = {0};
    tn_frame f;
    cr_assert_eq(tn_frame_begin(&f, &b, "master:test"), TN_OK);
    cr_assert_eq(tn_frame_add(&f, &m), TN_OK);
    cr_assert_eq(tn_frame_end(&f), TN_OK);
    cr_assert_eq(tn_tx_send(tx, b.data, b.size), TN_OK);
    tn_buf_free(&b);
}

static void fm_dispatch(tn_tx tx, uint64_t task, uint64_t epoch)
{
    fm_dispatch_cmd(tx, task, 1, epoch, NULL);
}

/* The test as the master of a real worker "w1": rx takes its reports at murl, tx dials
 * its listen URL; the worker's index in *w; its boot id. */
static uint64_t fm_start(fake_master *f, tn_tx *rx, tn_tx *tx, int *w)
{
    tn_errmsg em = {{0}};
    snprintf(murl, sizeof(murl), "ipc://%s/m.sock", dir);
    cr_assert_eq(tn_tx_nng_new(false, NULL, fm_recv, f, rx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_listen(*rx, murl, &em), TN_OK, "%s", em.text);
    *w = start_worker("w1", false, NULL, "2");
    uint64_t e = fm_epoch(f, 0);
    char wurl[600];
    snprintf(wurl, sizeof(wurl), "ipc://%s/w1.sock", dir);
    cr_assert_eq(tn_tx_nng_new(true, NULL, NULL, NULL, tx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(*tx, wurl, &em), TN_OK, "%s", em.text);
    return e;
}

/* A DISPATCH sent to a worker that died is kept by the transport and reaches the worker's
 * next run when it comes back: that run must not start it (it carries the boot id of the
 * run it was for), while one for the current run starts. */
Test(cluster, worker_drops_a_dispatch_meant_for_its_previous_run)
{
    fake_master f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_tx rx, tx;
    int w;
    uint64_t e1 = fm_start(&f, &rx, &tx, &w);

    stop_proc(w, SIGKILL);
    usleep(300000);
    fm_dispatch(tx, 1, e1); /* queued while the worker is down, for the run that died */
    start_worker("w1", false, NULL, "2");
    uint64_t e2 = fm_epoch(&f, e1);
    fm_dispatch(tx, 3, e1); /* for the old run, sent to the new one */
    /* for this run: it starts. Resent every second until accepted, as the master does (a
     * send can die with the pipe the transport is replacing). Up to a minute: a dial that
     * met the worker as it was killed is only replaced after nng's 10 s handshake bound
     * (transport/nng.c, watch_dialer) */
    int acc2 = 0;
    for (int i = 0; i < 6000 && !acc2; i++) {
        if (i % 100 == 0)
            fm_dispatch(tx, 2, e2);
        pthread_mutex_lock(&f.mu);
        acc2 = f.accepted[2];
        pthread_mutex_unlock(&f.mu);
        if (!acc2)
            usleep(10000);
    }
    cr_assert_gt(acc2, 0, "the dispatch for the current run was not accepted");
    pthread_mutex_lock(&f.mu);
    cr_assert_eq(f.accepted[1], 0, "a dispatch kept for the dead run was started");
    cr_assert_eq(f.accepted[3], 0, "a dispatch for the old run was started");
    pthread_mutex_unlock(&f.mu);
    char cmd[800];
    snprintf(cmd, sizeof(cmd),
             "grep -c 'dispatch for another run of this worker dropped' %s/w1.log", dir);
    char *out = NULL;
    cr_assert_eq(tu_run(cmd, &out, NULL), 0, "the worker did not say it dropped them");
    free(out);
    tn_tx_free(&tx);
    tn_tx_free(&rx);
}

/* ---- the master's side of a worker's restart, with the test as the worker -------------- */

typedef struct fake_worker {
    pthread_mutex_t mu;
    char name[64], url[600];
    uint64_t epoch; /* the boot id its heartbeats carry */
    uint64_t task;  /* of the last DISPATCH */
    uint32_t attempt;
    int reconciles;     /* RECONCILEs received */
    int dispatches;     /* DISPATCHes received, resends included */
    uint64_t reconcile; /* the last one's epoch */
    bool stop;
    tn_tx tx; /* to the master */
} fake_worker;

static tn_err fw_msg(void *arg, tn_str sender, const tn_msg *m)
{
    (void)sender;
    fake_worker *f = arg;
    pthread_mutex_lock(&f->mu);
    if (m->type == TN_MSG_DISPATCH) {
        f->task = m->dispatch.task;
        f->attempt = m->dispatch.attempt;
        f->dispatches++;
    } else if (m->type == TN_MSG_RECONCILE) {
        f->reconciles++;
        f->reconcile = m->reconcile.epoch;
    }
    pthread_mutex_unlock(&f->mu);
    return TN_OK;
}

static void fw_recv(void *arg, const void *buf, size_t len, const tn_peer *peer)
{
    (void)peer;
    tn_errmsg em = {{0}};
    if (tn_frame_decode(buf, len, fw_msg, arg, &em) != TN_OK)
        fprintf(stderr, "fake worker: %s\n", em.text);
}

static void fw_send(fake_worker *f, const tn_msg *m)
{
    tn_buf b = {0};
    tn_frame fr;
    cr_assert_eq(tn_frame_begin(&fr, &b, f->name), TN_OK);
    cr_assert_eq(tn_frame_add(&fr, m), TN_OK);
    cr_assert_eq(tn_frame_end(&fr), TN_OK);
    (void)tn_tx_send(f->tx, b.data, b.size); /* a lost one is sent again, or retried */
    tn_buf_free(&b);
}

static void *fw_heartbeats(void *arg)
{
    fake_worker *f = arg;
    static const tn_str groups[] = {TN_STR("default")};
    for (;;) {
        pthread_mutex_lock(&f->mu);
        bool stop = f->stop;
        uint64_t epoch = f->epoch;
        pthread_mutex_unlock(&f->mu);
        if (stop)
            return NULL;
        tn_msg m = {.type = TN_MSG_HEARTBEAT};
        m.heartbeat = (tn_msg_heartbeat){.worker = tn_str_c(f->name),
                                         .listen_url = tn_str_c(f->url),
                                         .ctl_url = TN_STR(""),
                                         .groups = {groups, 1},
                                         .slots = 1,
                                         .mem_free = 1u << 30,
                                         .epoch = epoch};
        fw_send(f, &m);
        usleep(100000);
    }
}

/* Wait (up to 30 s) until the fake worker got a DISPATCH of `attempt` or `n` RECONCILEs. */
static bool fw_wait(fake_worker *f, uint32_t attempt, int n)
{
    for (int i = 0; i < 3000; i++) {
        pthread_mutex_lock(&f->mu);
        bool ok = attempt ? f->attempt == attempt : f->reconciles >= n;
        pthread_mutex_unlock(&f->mu);
        if (ok)
            return true;
        usleep(10000);
    }
    return false;
}

/* A worker comes back as a new run (new boot id) and the wire loses the master's first
 * RECONCILE: the master must ask again until the new run answers, and then fail over the
 * attempt the previous run had. Asked once only, the attempt stayed RUNNING for ever
 * (chaos `mixed` seed 14, docs/RELIABILITY.md). */
Test(cluster, a_worker_back_as_a_new_run_is_asked_until_it_answers)
{
    start_master("60s", NULL); /* no failover by heartbeat timeout in this test */
    fake_worker f = {.mu = PTHREAD_MUTEX_INITIALIZER, .epoch = 1001};
    snprintf(f.name, sizeof(f.name), "t%d-fake", (int)getpid());
    snprintf(f.url, sizeof(f.url), "ipc://%s/fake.sock", dir);
    tn_tx rx;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(false, NULL, fw_recv, &f, &rx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_listen(rx, f.url, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_nng_new(true, NULL, NULL, NULL, &f.tx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(f.tx, murl, &em), TN_OK, "%s", em.text);
    pthread_t hb;
    cr_assert_eq(pthread_create(&hb, NULL, fw_heartbeats, &f), 0);
    wait_workers(1);

    uint64_t wf = start_wf("rb.yaml", "name: rb\ntasks:\n  - {name: a, type: noop}\n", "rb");
    cr_assert(fw_wait(&f, 1, 0), "attempt 1 was not dispatched");
    pthread_mutex_lock(&f.mu);
    tn_msg acc = {.type = TN_MSG_ACCEPTED};
    acc.accepted = (tn_msg_accepted){1, f.task, 1, 0, TN_STR("none")};
    pthread_mutex_unlock(&f.mu);
    char st[64];
    int att;
    for (int i = 0; i < 300; i++) {
        fw_send(&f, &acc); /* until it runs: the master applies it once */
        task_state(wf, "a", st, sizeof(st), &att);
        if (!strcmp(st, "RUNNING_EXECUTION"))
            break;
        usleep(100000);
    }
    cr_assert_str_eq(st, "RUNNING_EXECUTION");

    /* the worker restarts: a new boot id, and attempt 1 died with the old run. The first
     * RECONCILE goes unanswered, as if the wire had lost it. */
    pthread_mutex_lock(&f.mu);
    int before = f.reconciles;
    f.epoch = 1002;
    pthread_mutex_unlock(&f.mu);
    cr_assert(fw_wait(&f, 0, before + 1), "no RECONCILE for the new run");
    cr_assert(fw_wait(&f, 0, before + 2), "RECONCILE was not asked again");
    pthread_mutex_lock(&f.mu);
    tn_msg rec = {.type = TN_MSG_RECONCILED};
    rec.reconciled = (tn_msg_reconciled){f.reconcile, {NULL, 0}};
    pthread_mutex_unlock(&f.mu);
    fw_send(&f, &rec);
    bool again = fw_wait(&f, 2, 0);
    for (int i = 0; i < 50 && !again; i++) { /* our answer may be lost too: answer anew */
        pthread_mutex_lock(&f.mu);
        rec.reconciled.epoch = f.reconcile;
        pthread_mutex_unlock(&f.mu);
        fw_send(&f, &rec);
        again = fw_wait(&f, 2, 0);
    }
    cr_assert(again, "the attempt of the previous run was not failed over");
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_eq(att, 2);

    pthread_mutex_lock(&f.mu);
    f.stop = true;
    pthread_mutex_unlock(&f.mu);
    pthread_join(hb, NULL);
    tn_tx_free(&f.tx);
    tn_tx_free(&rx);
}

/* A newer attempt of a task comes to the worker that still runs the older one (the master
 * failed it over and placed it here again): the worker kills the older one (fencing) and
 * must end both, each under its own attempt. It once took the older one's exit for the
 * newer job, freed its process record, and kept the older job for ever: no KILL_RESULT,
 * and a SIGSEGV when the worker stopped (chaos cores, docs/RELIABILITY.md bug 12). */
Test(cluster, worker_ends_both_attempts_when_a_newer_one_comes)
{
    fake_master f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_tx rx, tx;
    int w;
    uint64_t e = fm_start(&f, &rx, &tx, &w);

    int acc = 0;
    for (int i = 0; i < 1000 && !acc; i++) { /* resent until accepted, as the master does */
        if (i % 100 == 0)
            fm_dispatch_cmd(tx, 1, 1, e, "sleep 30");
        pthread_mutex_lock(&f.mu);
        acc = f.accepted[1];
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_gt(acc, 0, "attempt 1 was not accepted");
    int old = 0, cur = 0;
    for (int i = 0; i < 3000 && !(old && cur); i++) {
        if (i % 100 == 0)
            fm_dispatch_cmd(tx, 1, 2, e, "true");
        pthread_mutex_lock(&f.mu);
        old = f.ended[1][1];
        cur = f.ended[1][2];
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_eq(old, 2, "attempt 1, fenced, ended with a KILL_RESULT");
    cr_assert_eq(cur, 1, "attempt 2 ended with its RESULT");

    /* and the worker stops cleanly */
    kill(procs[w], SIGTERM);
    int st = 0;
    cr_assert_eq(waitpid(procs[w], &st, 0), procs[w]);
    procs[w] = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the worker's stop: status %d", st);
    tn_tx_free(&tx);
    tn_tx_free(&rx);
}

/* A task killed by signal N reports exit code 128+N, as a shell does and as the in-process
 * executor does: SIGTERM is 143. */
Test(cluster, worker_reports_a_signalled_task_as_128_plus_the_signal)
{
    fake_master f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_tx rx, tx;
    int w;
    uint64_t e = fm_start(&f, &rx, &tx, &w);
    int ended = 0;
    for (int i = 0; i < 1000 && !ended; i++) { /* resent until it ends, as the master does */
        if (i % 100 == 0)
            fm_dispatch_cmd(tx, 1, 1, e, "kill -TERM $$");
        pthread_mutex_lock(&f.mu);
        ended = f.ended[1][1];
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_eq(ended, 1, "the attempt ended with a RESULT");
    pthread_mutex_lock(&f.mu);
    int64_t code = f.code[1][1];
    pthread_mutex_unlock(&f.mu);
    cr_assert_eq(code, 128 + SIGTERM, "exit code %" PRId64, code);
    tn_tx_free(&tx);
    tn_tx_free(&rx);
}

/* ------------------------------------------------------------------------------ */
/* the control server's reads while the engine runs in its own thread */

typedef struct live_engine {
    tn_engine *e;
    tn_inproc *x;
    pthread_t thread;
    atomic_bool stop;
    tn_ctlsrv cs;
    uint64_t wfs[4];
    atomic_int replies, waiting; /* status replies; those with a task waiting for a slot */
    atomic_int bad;              /* failed replies (asserted on the test's thread) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t finals; /* counted by the commit observer, on the engine thread */
} live_engine;

static void *le_thread(void *arg)
{
    live_engine *l = arg;
    while (!atomic_load(&l->stop))
        if (tn_engine_step(l->e, NULL) == 0)
            tn_engine_wait(l->e, 5000000);
    return NULL;
}

static void le_commit(void *arg, const tn_engine_event *evs, size_t n)
{
    live_engine *l = arg;
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < n; i++)
        if (evs[i].machine == TN_MACHINE_WORKFLOW && tn_sm_workflow.final[evs[i].to])
            l->finals++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* Placement refuses seven times in eight, so tasks wait in DISPATCH with a reason only
 * the engine knows (it is called on the engine thread). */
static unsigned le_places;
static tn_executor_ops le_ops;

static bool le_place(void *self, const tn_place_req *r, char *worker, size_t wlen, char *why,
                     size_t whylen)
{
    (void)self;
    (void)r;
    (void)worker;
    (void)wlen;
    if (++le_places % 8 == 0)
        return true;
    snprintf(why, whylen, "test: no worker has room");
    return false;
}

/* The peer of the test's requests: this process, as the standalone's clients are. */
static const tn_rpc_peer le_peer = {.kind = TN_RPC_PEER_INPROC, .uid = -1, .pid = -1};

/* One control request through the handler the RPC thread runs; the reply's JSON. No
 * Criterion assertion here: it runs in other threads too. */
static char *le_ctl(live_engine *l, const char *cmd, uint64_t id, bool *ok)
{
    tn_ctl_req r = {.cmd = tn_str_c(cmd), .id = id};
    tn_buf b = {0};
    void *rep = NULL;
    size_t rl = 0;
    tn_ctl_rep p = {0};
    *ok = false;
    if (tn_ctl_req_encode(&r, &b) == TN_OK)
        tn_ctlsrv_handle(&l->cs, &le_peer, b.data, b.size, &rep, &rl);
    tn_buf_free(&b);
    if (!rep || tn_ctl_rep_decode(rep, rl, &p) != TN_OK) {
        free(rep);
        return strdup("(no reply)");
    }
    *ok = p.ok;
    char *json = strndup(p.json.p, p.json.len);
    free(rep);
    return json;
}

static void *le_reader(void *arg)
{
    live_engine *l = arg;
    while (!atomic_load(&l->stop)) {
        for (int i = 0; i < 4; i++) {
            bool ok;
            char *j = le_ctl(l, "status", l->wfs[i], &ok);
            if (!ok)
                atomic_fetch_add(&l->bad, 1);
            atomic_fetch_add(&l->replies, 1);
            for (char *w = j; (w = strstr(w, "\"waiting_for\":\"")); w++)
                if (w[15] != '"') {
                    atomic_fetch_add(&l->waiting, 1);
                    break;
                }
            /* a task's committed projection: `logs` reads it (no worker: it says so) */
            char *t = strstr(j, "\"tasks\":[{\"id\":");
            if (t) {
                free(le_ctl(l, "logs", strtoull(t + 15, NULL, 10), &ok));
            }
            free(j);
        }
    }
    return NULL;
}

/* Many status (and logs) requests from other threads while the engine thread runs
 * workflows: every read goes through committed projections or an engine request, so
 * nothing here reads the engine's caches while it changes them (the ThreadSanitizer
 * build checks it). Placement often refuses, so tasks wait in DISPATCH and the reason
 * status shows comes from the engine thread. */
Test(ctlsrv, status_while_the_engine_runs)
{
    char *d = tu_tmpdir(), logs[600];
    snprintf(logs, sizeof(logs), "%s/logs", d);
    live_engine *l = calloc(1, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_inproc_new(logs, &l->x), TN_OK);
    tn_executor ex = tn_inproc_executor(l->x);
    le_ops = *ex.ops;
    le_ops.place = le_place;
    ex.ops = &le_ops;
    tn_engine_opts o = {
        .data_dir = d, .log = {.create = true, .no_sync = true}, .executor = ex};
    cr_assert_eq(tn_engine_open(&o, &l->e, &m), TN_OK, "%s", m.text);
    tn_inproc_bind(l->x, l->e);
    l->cs = (tn_ctlsrv){.engine = l->e};
    char y[4096];
    size_t n = (size_t)snprintf(y, sizeof(y), "name: busy\ntasks:\n");
    /* a chain: each instance runs for a while (placement refusals add steps), so the
     * readers overlap the engine's work whatever the machine's speed */
    n += (size_t)snprintf(y + n, sizeof(y) - n, "  - {name: t0, type: noop, duration: 3ms}\n");
    for (int i = 1; i < 12; i++)
        n += (size_t)snprintf(y + n, sizeof(y) - n,
                              "  - {name: t%d, type: noop, duration: "
                              "%dms, deps: [t%d]}\n",
                              i, 2 + i % 3, i - 1);
    tn_def *def;
    char *bytes;
    size_t blen;
    cr_assert_eq(tn_def_parse("busy.yaml", y, strlen(y), &def, &m), TN_OK, "%s", m.text);
    cr_assert_eq(tn_def_encode(def, &bytes, &blen), TN_OK);
    tn_def_free(def);
    tn_cmd ac = {.kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = blen};
    cr_assert_eq(tn_engine_call(l->e, &ac), TN_OK, "%s", ac.msg);
    free(bytes);
    tn_engine_observe(l->e, le_commit, l); /* before the engine thread starts */
    for (int i = 0; i < 4; i++) {
        tn_cmd sc = {.kind = TN_CMD_START, .workflow = "busy"};
        cr_assert_eq(tn_engine_call(l->e, &sc), TN_OK, "%s", sc.msg);
        l->wfs[i] = sc.out_id;
    }
    cr_assert_eq(pthread_create(&l->thread, NULL, le_thread, l), 0);
    pthread_t readers[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&readers[i], NULL, le_reader, l), 0);
    /* the observer says when all four are final: no polling of the engine */
    pthread_mutex_lock(&l->mu);
    while (l->finals < 4)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
    atomic_store(&l->stop, true);
    tn_engine_wake(l->e);
    for (int i = 0; i < 3; i++)
        pthread_join(readers[i], NULL);
    pthread_join(l->thread, NULL);
    for (int i = 0; i < 4; i++) {
        bool ok;
        char *j = le_ctl(l, "status", l->wfs[i], &ok);
        cr_assert(ok && strstr(j, "\"state\":\"SUCCESS\",\"run\""), "%s", j);
        free(j);
    }
    cr_assert_eq(atomic_load(&l->bad), 0, "a status request failed");
    cr_assert_gt(atomic_load(&l->replies), 4, "status answered while the engine ran");
    cr_assert_gt(atomic_load(&l->waiting), 0,
                 "a waiting task reason came from the engine %d/%d", atomic_load(&l->waiting),
                 atomic_load(&l->replies));
    tn_engine_close(l->e);
    tn_inproc_free(l->x);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    tu_rm_rf(d);
    free(d);
}

/* A request no thread takes (the engine is not running) times out, leaves the queue,
 * and never runs later. */
static void count_cb(tn_engine *e, void *ctx)
{
    (void)e;
    (*(int *)ctx)++;
}

Test(ctlsrv, an_untaken_request_times_out_and_never_runs)
{
    char *d = tu_tmpdir();
    tn_engine *e;
    tn_errmsg m = {{0}};
    tn_engine_opts o = {.data_dir = d, .log = {.create = true, .no_sync = true}};
    cr_assert_eq(tn_engine_open(&o, &e, &m), TN_OK, "%s", m.text);
    int runs = 0;
    cr_assert_eq(tn_engine_request(e, count_cb, &runs, 20000000LL), TN_ERR_TIMEOUT);
    tn_engine_step(e, NULL);
    cr_assert_eq(runs, 0, "a withdrawn request ran");
    tn_engine_close(e);
    tu_rm_rf(d);
    free(d);
}

/* ---- one identity per worker and per host; one cluster per store ----------------------- */

/* Whether the file at DIR/rel contains text. */
static bool file_has(const char *rel, const char *text)
{
    char p[900];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    FILE *f = fopen(p, "r");
    if (!f)
        return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

static void wait_file_has(const char *rel, const char *text)
{
    for (int i = 0; i < 300 && !file_has(rel, text); i++)
        usleep(50000);
    cr_assert(file_has(rel, text), "%s never said \"%s\"", rel, text);
}

/* ---- a restart's takeover and its workers' answers ------------------------------------ */

/* A restarted master asks each worker that joins what it runs (RECONCILE). An answer that
 * came before the engine's first step (the takeover that names the attempts the log left
 * running) found none of them placed and killed them all as stale: the workflow ended
 * STOP. The takeover is held (TERN_FAULT_TAKEOVER_HOLD) until the answer is in. */
Test(cluster, an_answer_before_the_takeover_kills_nothing_the_log_left_running)
{
    int m = start_master("5s", NULL);
    start_worker("w1", false, NULL, "4");
    wait_workers(1);
    char yaml[1024];
    snprintf(
        yaml, sizeof(yaml),
        "name: hold\ntasks:\n"
        "  - {name: a, type: shell, command: 'while [ ! -e %s/go ]; do sleep 0.05; done'}\n"
        "  - {name: b, type: shell, deps: [a], command: 'true'}\n",
        dir);
    uint64_t wf = start_wf("hold.yaml", yaml, "hold");
    char st[64], hold[700], go[700];
    int att;
    wait_task_running(wf, "a", st, sizeof(st), &att);
    stop_proc(m, SIGKILL);
    snprintf(hold, sizeof(hold), "%s/hold", dir);
    setenv("TERN_FAULT_TAKEOVER_HOLD", hold, 1);
    start_master_logged("master2", "5s", NULL);
    unsetenv("TERN_FAULT_TAKEOVER_HOLD");
    /* the worker joined the held master and its answer (a running) came in */
    for (int i = 0; i < 1200 && !file_has("master2.log", "RECONCILED before the takeover") &&
                    !file_has("master2.log", "killing a stale attempt");
         i++)
        usleep(50000);
    cr_assert(file_has("master2.log", "RECONCILED before the takeover"),
              "no answer was held back for the takeover");
    fclose(fopen(hold, "w"));
    snprintf(go, sizeof(go), "%s/go", dir);
    fclose(fopen(go, "w"));
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_str_eq(st, "SUCCESS");
    cr_assert_eq(att, 1, "a ran again: its attempt was lost or killed");
    cr_assert(!file_has("master2.log", "killing a stale attempt"));
}

/* A standalone on DIR/name, its control socket in mctl (the one ctl() talks to). */
static int start_standalone(const char *name)
{
    char data[600];
    snprintf(data, sizeof(data), "%s/%s", dir, name);
    snprintf(mctl, sizeof(mctl), "ipc://%s/%s/master.ctl", dir, name);
    const char *a[] = {"standalone", "--data", data, NULL};
    int i = spawn(name, a, NULL);
    wait_workers(1);
    return i;
}

/* Every `tern run` and `tern standalone` used the cgroup folder tern/local, killed what
 * another one ran there as "its previous run's leftovers" at start, and removed the folder
 * at exit, so the other's next task failed to spawn. A standalone's task keeps running
 * while another standalone starts, runs a task and exits, and its next task runs. */
Test(cluster, two_standalones_on_one_host_leave_each_others_tasks_alone)
{
    start_standalone("sa");
    uint64_t wf = start_wf("long.yaml",
                           "name: long\ntasks:\n"
                           "  - {name: a, type: shell, command: 'sleep 3'}\n"
                           "  - {name: b, type: shell, deps: [a], command: 'true'}\n",
                           "long");
    char st[64];
    int att;
    wait_task_running(wf, "a", st, sizeof(st), &att);
    char sa_ctl[600];
    snprintf(sa_ctl, sizeof(sa_ctl), "%s", mctl);
    /* the other one: starts, runs a task, exits while a still runs */
    int b = start_standalone("sb");
    uint64_t wf2 =
        start_wf("quick.yaml",
                 "name: quick\ntasks:\n  - {name: q, type: shell, command: 'true'}\n", "quick");
    wait_final(wf2, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    stop_proc(b, SIGTERM);
    snprintf(mctl, sizeof(mctl), "%s", sa_ctl);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS", "the first standalone's workflow");
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_eq(att, 1, "a was killed and ran again");
    /* two identities, two cgroup folders */
    cr_assert(!file_has("sa/worker/worker-id", "local"));
    char ida[80] = "", idb[80] = "", p[700];
    snprintf(p, sizeof(p), "%s/sa/worker/worker-id", dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(ida, sizeof(ida), f));
    fclose(f);
    snprintf(p, sizeof(p), "%s/sb/worker/worker-id", dir);
    f = fopen(p, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(idb, sizeof(idb), f));
    fclose(f);
    cr_assert_eq(strlen(ida), 17, "16 hex digits and a newline: %s", ida);
    cr_assert_str_neq(ida, idb);
}

/* Two workers with the same name (the host name by default) on one host, different data
 * dirs: the second one's start does not kill the first one's running task. */
Test(cluster, two_workers_with_one_name_keep_each_others_tasks)
{
    start_master("5s", NULL);
    char listen[600], data[600], ctlu[600];
    snprintf(listen, sizeof(listen), "ipc://%s/x1.sock", dir);
    snprintf(data, sizeof(data), "%s/x1", dir);
    snprintf(ctlu, sizeof(ctlu), "ipc://%s/x1.ctl", dir);
    const char *a1[] = {"worker", "--master",    murl,     "--listen",  listen,
                        "--data", data,          "--name", "same-name", "--ctl",
                        ctlu,     "--heartbeat", "200ms",  NULL};
    spawn("x1", a1, NULL);
    wait_workers(1);
    uint64_t wf =
        start_wf("one.yaml",
                 "name: one\ntasks:\n  - {name: a, type: shell, command: 'sleep 3'}\n", "one");
    char st[64];
    int att;
    wait_task_running(wf, "a", st, sizeof(st), &att);
    /* another worker of the same name on this host, with its own data dir, pointed at a
     * master that is not there: only its start (and leftover hunt) matters here */
    char l2[600], d2[600], c2[600], m2[600];
    snprintf(l2, sizeof(l2), "ipc://%s/x2.sock", dir);
    snprintf(d2, sizeof(d2), "%s/x2", dir);
    snprintf(c2, sizeof(c2), "ipc://%s/x2.ctl", dir);
    snprintf(m2, sizeof(m2), "ipc://%s/nobody.sock", dir);
    const char *a2[] = {"worker", "--master", m2,          "--listen", l2, "--data",
                        d2,       "--name",   "same-name", "--ctl",    c2, NULL};
    int x2 = spawn("x2", a2, NULL);
    wait_file_has("x2.log", "msg=\"started\"");
    stop_proc(x2, SIGTERM);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_eq(att, 1, "the other worker killed a as its leftover");
}

/* A second worker on the same data dir would share its outbox and kill its tasks as
 * leftovers: it is refused, with the dir and the pid that holds it. */
Test(cluster, a_second_worker_on_the_same_data_dir_is_refused)
{
    start_master("5s", NULL);
    int w1 = start_worker("w1", false, NULL, "2");
    wait_workers(1);
    char listen[600], data[600], ctlu[600];
    snprintf(listen, sizeof(listen), "ipc://%s/w1b.sock", dir);
    snprintf(data, sizeof(data), "%s/w1", dir);
    snprintf(ctlu, sizeof(ctlu), "ipc://%s/w1b.ctl", dir);
    const char *a[] = {"worker", "--master", murl, "--listen",    listen, "--data",
                       data,     "--ctl",    ctlu, "--no-cgroup", NULL};
    int w2 = spawn("w1b", a, NULL);
    int st = 0;
    pid_t got = 0;
    for (int i = 0; i < 500 && got == 0; i++) {
        got = waitpid(procs[w2], &st, WNOHANG);
        if (!got)
            usleep(10000);
    }
    cr_assert_eq(got, procs[w2], "the second worker on one data dir kept running");
    procs[w2] = 0;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    char pid[32];
    snprintf(pid, sizeof(pid), "(pid %d)", (int)procs[w1]);
    cr_assert(file_has("w1b.log", "another worker"), "no reason given");
    cr_assert(file_has("w1b.log", data), "the data dir is not named");
    cr_assert(file_has("w1b.log", pid), "the holder's pid is not named");
}

/* The worker's current cgroup sub-tree, from its "containment" log line ("" in session
 * mode). */
static void worker_cgroup(const char *log, char *out, size_t len)
{
    char p[700], line[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, log);
    out[0] = '\0';
    FILE *f = fopen(p, "r");
    while (f && fgets(line, sizeof(line), f)) {
        char *c = strstr(line, "msg=\"containment\"");
        char *g = c ? strstr(c, " cgroup=") : NULL;
        if (g && g[8] != '-')
            snprintf(out, len, "%.*s", (int)strcspn(g + 8, " \n"), g + 8);
    }
    if (f)
        fclose(f);
}

/* A spawn that fails (here: the exec dir cannot be made) fails the task with the reason,
 * logs it at error level, and the worker reports itself degraded until a spawn works. */
Test(cluster, a_spawn_failure_fails_the_task_with_its_reason_and_marks_the_worker_degraded)
{
    start_master("5s", NULL);
    start_worker("w1", false, NULL, "2");
    wait_workers(1);
    char p[700];
    snprintf(p, sizeof(p), "%s/w1/exec", dir);
    tu_rm_rf(p);
    FILE *f = fopen(p, "w"); /* a file where the exec dirs' parent should be */
    fclose(f);
    uint64_t wf = start_wf(
        "sf.yaml", "name: sf\ntasks:\n  - {name: a, type: shell, command: 'true'}\n", "sf");
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "FAILURE");
    char *out = NULL, cmd[1200];
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --json --data %s", tu_tern(), wf, mdata);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0);
    char *failed = strstr(out, "\"event\":\"FAILED\"");
    cr_assert_not_null(failed, "%s", out);
    cr_assert_not_null(strstr(out, "\"reason\":\"spawn failed: task "), "%s", out);
    free(out);
    cr_assert(file_has("w1.log", "level=error"), "the failure was not logged as an error");
    cr_assert(file_has("w1.log", "msg=\"spawn failed\""));
    /* the heartbeat says so, and `tern workers` shows it */
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ctl(&out, "workers --json"), 0);
        bool deg = strstr(out, "\"degraded\":true") != NULL;
        if (deg)
            break;
        free(out);
        out = NULL;
        usleep(50000);
    }
    cr_assert_not_null(strstr(out, "\"degraded\":true"), "%s", out);
    cr_assert_not_null(strstr(out, "\"last_error\":\"spawn failed: "), "%s", out);
    free(out);
    cr_assert_eq(ctl(&out, "workers"), 0);
    cr_assert_not_null(strstr(out, "DEGRADED since "), "%s", out);
    free(out);
    /* a spawn that works again clears it */
    tu_rm_rf(p);
    cr_assert_eq(mkdir(p, 0755), 0);
    uint64_t wf2 = start_wf(
        "ok.yaml", "name: ok\ntasks:\n  - {name: a, type: shell, command: 'true'}\n", "ok");
    wait_final(wf2, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(ctl(&out, "workers --json"), 0);
        if (strstr(out, "\"degraded\":false"))
            break;
        free(out);
        out = NULL;
        usleep(50000);
    }
    cr_assert_not_null(strstr(out, "\"degraded\":false"), "%s", out);
    free(out);
}

/* The worker's cgroup sub-tree removed under it (a cleanup script, another program):
 * the next task runs, in a sub-tree made again, and the worker says so. */
Test(cluster, a_vanished_cgroup_subtree_is_recreated_at_the_next_spawn)
{
    start_master("5s", NULL);
    start_worker("w1", true, NULL, "2");
    wait_workers(1);
    char cg[4096];
    worker_cgroup("w1.log", cg, sizeof(cg));
    if (!cg[0]) { /* a skipped test gets no teardown */
        teardown();
        cr_skip_test("no cgroup v2 here");
    }
    cr_assert_eq(rmdir(cg), 0, "rmdir %s: %s", cg, strerror(errno));
    uint64_t wf = start_wf(
        "cg.yaml", "name: cg\ntasks:\n  - {name: a, type: shell, command: 'true'}\n", "cg");
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    cr_assert(file_has("w1.log", "sub-tree had disappeared; recreated"));
    struct stat sb;
    cr_assert_eq(stat(cg, &sb), 0, "%s was not made again", cg);
    /* and it is <cgroup2>/tern/<worker-id> */
    char id[80], p[700];
    snprintf(p, sizeof(p), "%s/w1", dir);
    cr_assert(tu_worker_id(p, id, sizeof(id)), "%s/worker-id", p);
    const char *base = strrchr(cg, '/');
    cr_assert_str_eq(base + 1, id, "the sub-tree is named by the worker id: %s", cg);
    cr_assert(strstr(cg, "/tern/") != NULL, "%s", cg);
}

/* A worker bound to one cluster (the first master frame it took) refuses frames of
 * another: a KILL from a master of another store does not kill its task, and it says so
 * with both cluster ids. */
Test(cluster, a_worker_refuses_a_master_of_another_cluster_and_its_task_survives)
{
    fake_master f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_tx rx, tx;
    int w;
    uint64_t e1 = fm_start(&f, &rx, &tx, &w);
    tn_msg m = {.type = TN_MSG_DISPATCH};
    tn_msg_dispatch *d = &m.dispatch;
    d->task = 1;
    d->wf = 1;
    d->attempt = 1;
    d->name = TN_STR("t");
    d->type = TN_STR("shell");
    d->command = TN_STR("sleep 2");
    d->worker_group = TN_STR("default");
    d->worker_epoch = e1;
    tn_buf b = {0};
    tn_frame fr;
    int acc = 0;
    for (int i = 0; i < 1000 && !acc; i++) {
        if (i % 100 == 0) {
            b.size = 0;
            cr_assert_eq(tn_frame_begin_cluster(&fr, &b, "master:one", "aaaa1111"), TN_OK);
            cr_assert_eq(tn_frame_add(&fr, &m), TN_OK);
            tn_frame_end(&fr);
            cr_assert_eq(tn_tx_send(tx, b.data, b.size), TN_OK);
        }
        pthread_mutex_lock(&f.mu);
        acc = f.accepted[1];
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_gt(acc, 0);
    /* a master of another store: its KILL is refused */
    tn_msg k = {.type = TN_MSG_KILL};
    k.kill = (tn_msg_kill){1, 1, 0, TN_STR("stale attempt (fenced)")};
    b.size = 0;
    cr_assert_eq(tn_frame_begin_cluster(&fr, &b, "master:two", "bbbb2222"), TN_OK);
    cr_assert_eq(tn_frame_add(&fr, &k), TN_OK);
    tn_frame_end(&fr);
    cr_assert_eq(tn_tx_send(tx, b.data, b.size), TN_OK);
    /* the task runs to its end: a RESULT with exit 0, not a KILL_RESULT */
    int ended = 0;
    for (int i = 0; i < 500 && !ended; i++) {
        pthread_mutex_lock(&f.mu);
        ended = f.ended[1][1];
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_eq(ended, 1, "the task was killed by another cluster's master");
    cr_assert_eq(f.code[1][1], 0);
    cr_assert(file_has("w1/cluster-id", "aaaa1111"), "the worker did not record its cluster");
    cr_assert(file_has("w1.log", "frame from another cluster refused"));
    cr_assert(file_has("w1.log", "cluster=\"bbbb2222\" ours=aaaa1111"));
    tn_buf_free(&b);
    tn_tx_free(&tx);
    tn_tx_free(&rx);
}

/* Send one message in a frame of leader epoch `epoch`. */
static void fm_send_epoch(tn_tx tx, const char *sender, uint64_t epoch, const tn_msg *m)
{
    tn_buf b = {0};
    tn_frame fr;
    cr_assert_eq(tn_frame_begin_epoch(&fr, &b, sender, "aaaa1111", epoch), TN_OK);
    cr_assert_eq(tn_frame_add(&fr, m), TN_OK);
    tn_frame_end(&fr);
    cr_assert_eq(tn_tx_send(tx, b.data, b.size), TN_OK);
    tn_buf_free(&b);
}

static tn_msg fm_shell(uint64_t task, uint64_t worker_epoch, const char *cmd)
{
    tn_msg m = {.type = TN_MSG_DISPATCH};
    m.dispatch = (tn_msg_dispatch){.task = task,
                                   .wf = 1,
                                   .attempt = 1,
                                   .name = TN_STR("t"),
                                   .type = TN_STR("shell"),
                                   .command = tn_str_c(cmd),
                                   .worker_group = TN_STR("default"),
                                   .worker_epoch = worker_epoch};
    return m;
}

/* Dispatch (resent every second, as a master does) until ACCEPTED; the count. */
static int fm_dispatch_until_accepted(fake_master *f, tn_tx tx, uint64_t epoch, const tn_msg *m)
{
    int acc = 0;
    for (int i = 0; i < 1000 && !acc; i++) {
        if (i % 100 == 0)
            fm_send_epoch(tx, "master:new", epoch, m);
        pthread_mutex_lock(&f->mu);
        acc = f->accepted[m->dispatch.task];
        pthread_mutex_unlock(&f->mu);
        usleep(10000);
    }
    return acc;
}

/* Fencing: once a worker took a frame of leader epoch 5, a master of epoch 4 (a leader
 * paused past its ZooKeeper session and woken up) has nothing accepted: its DISPATCH does
 * not start, its KILL does not kill. The worker says so, answers the old leader FENCED,
 * keeps the epoch in its data dir and reports it in its heartbeats. */
Test(cluster, a_worker_refuses_frames_of_an_older_leader_epoch)
{
    fake_master f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_tx rx, tx;
    int w;
    uint64_t e1 = fm_start(&f, &rx, &tx, &w);
    tn_msg run = fm_shell(1, e1, "sleep 2");
    cr_assert_gt(fm_dispatch_until_accepted(&f, tx, 5, &run), 0);
    /* the old leader (epoch 4): a DISPATCH and a KILL, then the new leader's DISPATCH on
     * the same connection: once that one is accepted, the old frames were handled */
    tn_msg stale = fm_shell(2, e1, "true");
    fm_send_epoch(tx, "master:old", 4, &stale);
    tn_msg k = {.type = TN_MSG_KILL};
    k.kill = (tn_msg_kill){1, 1, 0, TN_STR("killed by the old leader")};
    fm_send_epoch(tx, "master:old", 4, &k);
    tn_msg next = fm_shell(3, e1, "true");
    cr_assert_gt(fm_dispatch_until_accepted(&f, tx, 5, &next), 0);
    pthread_mutex_lock(&f.mu);
    cr_assert_eq(f.accepted[2], 0, "a dispatch of the fenced leader was started");
    pthread_mutex_unlock(&f.mu);
    int ended = 0;
    for (int i = 0; i < 500 && !ended; i++) {
        pthread_mutex_lock(&f.mu);
        ended = f.ended[1][1];
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_eq(ended, 1, "the fenced leader's KILL killed the task");
    cr_assert_eq(f.code[1][1], 0);
    uint64_t seen = 0;
    for (int i = 0; i < 300 && seen != 5; i++) {
        pthread_mutex_lock(&f.mu);
        seen = f.master_epoch;
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_eq(seen, 5, "the heartbeat carries the newest epoch seen");
    cr_assert(file_has("w1/master-epoch", "5"));
    cr_assert(file_has("w1.log", "frame from a fenced master refused"));
    cr_assert(file_has("w1.log", "epoch=4 current=5"));
    /* the old leader was answered (here at the worker's --master, the test's rx) */
    int fenced = 0;
    for (int i = 0; i < 500 && !fenced; i++) {
        pthread_mutex_lock(&f.mu);
        fenced = f.fenced;
        pthread_mutex_unlock(&f.mu);
        usleep(10000);
    }
    cr_assert_geq(fenced, 1, "no FENCED answer to the fenced master");
    char wname[64];
    snprintf(wname, sizeof(wname), "t%d-w1", (int)getpid());
    pthread_mutex_lock(&f.mu);
    cr_expect_str_eq(f.fenced_worker, wname);
    cr_expect_str_eq(f.fenced_master, "master:old", "the answer names whom it fences");
    cr_expect_eq(f.fenced_epoch, 5, "the answer carries the newest epoch");
    cr_expect_geq(f.fenced_refused, 1);
    cr_expect_leq(f.fenced_refused, 2, "two frames were refused");
    cr_expect_leq(f.fenced, 2);
    pthread_mutex_unlock(&f.mu);
    cr_assert(file_has("w1.log", "answered a fenced master with FENCED"));
    cr_assert_eq(f.accepted[2], 0, "a dispatch of the fenced leader was started");
    tn_tx_free(&tx);
    tn_tx_free(&rx);
}

static const char *log_tail(const char *name, char *buf, size_t len);

/* A master restarted on an empty store (a mistyped --data) with the same --listen: the
 * workers of the old store's cluster are refused, loudly, instead of having their running
 * tasks killed as stale; back on the right store, the master finds them running. */
Test(cluster, a_master_on_an_empty_store_refuses_the_old_clusters_worker)
{
    int m = start_master("5s", NULL);
    start_worker("w1", false, NULL, "2");
    wait_workers(1);
    uint64_t wf = start_wf(
        "keep.yaml", "name: keep\ntasks:\n  - {name: a, type: shell, command: 'sleep 4'}\n",
        "keep");
    char st[64];
    int att;
    wait_task_running(wf, "a", st, sizeof(st), &att);
    stop_proc(m, SIGKILL);
    /* the wrong store, the same --listen */
    char wrong[600];
    snprintf(wrong, sizeof(wrong), "%s/typo", dir);
    const char *a[] = {"master", "--listen", murl, "--data",
                       wrong,    "--ctl",    mctl, "--heartbeat-timeout",
                       "5s",     NULL};
    int m2 = spawn("typo", a, NULL);
    usleep(2500000); /* heartbeats every 200 ms: it had every chance to reconcile */
    static char wl[4000], tl[4000], ml[4000]; /* the logs, for a failure's message */
    cr_assert_gt(count_tasks(1), 0, "the task was killed; w1.log:\n%s\ntypo.log:\n%s",
                 log_tail("w1", wl, sizeof(wl)), log_tail("typo", tl, sizeof(tl)));
    wait_file_has("typo.log", "frame from a worker of another cluster refused");
    char *out = NULL;
    cr_assert_eq(ctl(&out, "workers --json"), 0, "typo.log:\n%s",
                 log_tail("typo", tl, sizeof(tl)));
    cr_assert_null(strstr(out, "\"alive\":true"), "the other cluster's worker joined: %s", out);
    free(out);
    stop_proc(m2, SIGTERM);
    start_master("5s", NULL);
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS", "master.log:\n%s\nw1.log:\n%s",
                     log_tail("master", ml, sizeof(ml)), log_tail("w1", wl, sizeof(wl)));
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_eq(att, 1, "a ran again; master.log:\n%s", log_tail("master", ml, sizeof(ml)));
}

static int fw_dispatches(fake_worker *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->dispatches;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Wait (up to 30 s) until the fake worker got more than n DISPATCHes. */
static bool fw_wait_dispatches(fake_worker *f, int n)
{
    for (int i = 0; i < 3000 && fw_dispatches(f) <= n; i++)
        usleep(10000);
    return fw_dispatches(f) > n;
}

static void fw_fenced(fake_worker *f, const char *worker, uint64_t epoch, const char *master)
{
    tn_msg m = {.type = TN_MSG_FENCED};
    m.fenced = (tn_msg_fenced){tn_str_c(worker), epoch, 3, tn_str_c(master)};
    fw_send(f, &m);
}

/* The master's side of fencing, with the test as a worker that has seen leader epoch 7:
 * FENCED answers that are not about this master, not newer than its epoch, or not from a
 * worker it knows change nothing; a real one fences it: from then on nothing it has
 * queued or placed reaches a worker (no DISPATCH, not even a resend), and it says so. */
Test(cluster, a_master_answered_fenced_by_a_worker_stops_dispatching)
{
    start_master("60s", NULL);
    fake_worker f = {.mu = PTHREAD_MUTEX_INITIALIZER, .epoch = 3001};
    snprintf(f.name, sizeof(f.name), "t%d-fake", (int)getpid());
    snprintf(f.url, sizeof(f.url), "ipc://%s/fake.sock", dir);
    tn_tx rx;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(false, NULL, fw_recv, &f, &rx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_listen(rx, f.url, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_nng_new(true, NULL, NULL, NULL, &f.tx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(f.tx, murl, &em), TN_OK, "%s", em.text);
    pthread_t hb;
    cr_assert_eq(pthread_create(&hb, NULL, fw_heartbeats, &f), 0);
    wait_workers(1);

    const char *noop = "name: fa\ntasks:\n  - {name: a, type: noop}\n";
    start_wf("fa.yaml", noop, "fa");
    cr_assert(fw_wait_dispatches(&f, 0), "nothing was dispatched");
    /* ignored: about another master, not newer (this master has epoch 0), another worker */
    fw_fenced(&f, f.name, 7, "master:other");
    fw_fenced(&f, f.name, 0, "master:local");
    fw_fenced(&f, "nobody", 7, "master:local");
    wait_file_has("master.log", "FENCED ignored");
    int before = fw_dispatches(&f);
    start_wf("fb.yaml", "name: fb\ntasks:\n  - {name: b, type: noop}\n", "fb");
    cr_assert(fw_wait_dispatches(&f, before), "an ignored FENCED stopped the master");
    cr_assert(!file_has("master.log", "by=FENCED"));

    fw_fenced(&f, f.name, 7, "master:local");
    wait_file_has("master.log", "by=FENCED");
    cr_assert(file_has("master.log", "newer=7"));
    /* what was sent before it is in flight: count from a quiet moment on, then give the
     * master many resend rounds (1 s each) and a new workflow */
    usleep(300000);
    before = fw_dispatches(&f);
    start_wf("fc.yaml", "name: fc\ntasks:\n  - {name: c, type: noop}\n", "fc");
    usleep(3000000);
    cr_assert_eq(fw_dispatches(&f), before, "a fenced master dispatched");

    pthread_mutex_lock(&f.mu);
    f.stop = true;
    pthread_mutex_unlock(&f.mu);
    pthread_join(hb, NULL);
    tn_tx_free(&f.tx);
    tn_tx_free(&rx);
}

/* ---- trust: who may speak for whom on the wire ------------------------------------------ */

/* The master with extra flags (hb_timeout as in start_master). */
static int start_master_with(const char *hb_timeout, const char *listen,
                             const char *const *extra)
{
    snprintf(murl, sizeof(murl), "%s", listen ? listen : "");
    if (!listen)
        snprintf(murl, sizeof(murl), "ipc://%s/m.sock", dir);
    snprintf(mdata, sizeof(mdata), "%s/master", dir);
    snprintf(mctl, sizeof(mctl), "ipc://%s/m.ctl", dir);
    const char *a[32] = {"master",  "--listen", murl, "--data",
                         mdata,     "--ctl",    mctl, "--heartbeat-timeout",
                         hb_timeout};
    int n = 9;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        a[n++] = extra[i];
    a[n] = NULL;
    return spawn("master", a, NULL);
}

/* Workers the master knows (alive or not), by `tern workers --json`; -1 if no answer. */
static int count_workers(const char *name)
{
    char *out = NULL;
    if (ctl(&out, "workers --json") != 0) {
        free(out);
        return -1;
    }
    int n = 0;
    char key[200];
    snprintf(key, sizeof(key), "{\"name\":\"%s\"", name ? name : "");
    for (char *p = out; (p = strstr(p, name ? key : "{\"name\":")); p++)
        n++;
    free(out);
    return n;
}

/* A sender to murl whose frames say `sender`; tls NULL: plain (ipc). */
static tn_tx frame_sender(const tn_tx_tls *tls)
{
    tn_tx tx;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(true, tls, NULL, NULL, &tx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(tx, murl, &em), TN_OK, "%s", em.text);
    return tx;
}

static void send_msgs(tn_tx tx, const char *sender, const tn_msg *m, int n)
{
    tn_buf b = {0};
    tn_frame fr;
    cr_assert_eq(tn_frame_begin(&fr, &b, sender), TN_OK);
    for (int i = 0; i < n; i++)
        cr_assert_eq(tn_frame_add(&fr, &m[i]), TN_OK);
    cr_assert_eq(tn_frame_end(&fr), TN_OK);
    for (int i = 0; i < 200 && tn_tx_send(tx, b.data, b.size) != TN_OK; i++)
        usleep(10000);
    tn_buf_free(&b);
}

/* A RESULT(success) sent under another worker's name for an attempt running on the fake
 * worker is refused: the task stays running; the real worker's RESULT then ends it. On
 * the old master the forged RESULT was applied and the real one dropped. */
Test(cluster, a_report_from_another_worker_is_not_applied)
{
    start_master("60s", NULL);
    fake_worker f = {.mu = PTHREAD_MUTEX_INITIALIZER, .epoch = 7};
    snprintf(f.name, sizeof(f.name), "t%d-real", (int)getpid());
    snprintf(f.url, sizeof(f.url), "ipc://%s/fake.sock", dir);
    tn_tx rx;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(false, NULL, fw_recv, &f, &rx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_listen(rx, f.url, &em), TN_OK, "%s", em.text);
    f.tx = frame_sender(NULL);
    pthread_t hb;
    cr_assert_eq(pthread_create(&hb, NULL, fw_heartbeats, &f), 0);
    wait_workers(1);
    uint64_t wf = start_wf("wr.yaml", "name: wr\ntasks:\n  - {name: a, type: noop}\n", "wr");
    cr_assert(fw_wait(&f, 1, 0), "attempt 1 was not dispatched");
    pthread_mutex_lock(&f.mu);
    uint64_t task = f.task;
    pthread_mutex_unlock(&f.mu);
    tn_msg acc = {.type = TN_MSG_ACCEPTED};
    acc.accepted = (tn_msg_accepted){1, task, 1, 0, TN_STR("none")};
    char st[64];
    int att;
    for (int i = 0; i < 300; i++) {
        fw_send(&f, &acc);
        task_state(wf, "a", st, sizeof(st), &att);
        if (!strcmp(st, "RUNNING_EXECUTION"))
            break;
        usleep(100000);
    }
    cr_assert_str_eq(st, "RUNNING_EXECUTION");
    tn_tx evil = frame_sender(NULL);
    tn_msg res = {.type = TN_MSG_RESULT};
    res.result = (tn_msg_result){.report_id = 9, .task = task, .attempt = 1, .success = true};
    for (int i = 0; i < 10; i++) {
        send_msgs(evil, "worker:evil", &res, 1);
        usleep(100000);
    }
    task_state(wf, "a", st, sizeof(st), &att);
    cr_assert_str_eq(st, "RUNNING_EXECUTION", "a forged RESULT was applied");
    res.result.report_id = 2;
    for (int i = 0; i < 300; i++) {
        fw_send(&f, &res);
        task_state(wf, "a", st, sizeof(st), &att);
        if (!strcmp(st, "SUCCESS"))
            break;
        usleep(100000);
    }
    cr_assert_str_eq(st, "SUCCESS", "the real worker's RESULT was not applied");
    pthread_mutex_lock(&f.mu);
    f.stop = true;
    pthread_mutex_unlock(&f.mu);
    pthread_join(hb, NULL);
    tn_tx_free(&evil);
    tn_tx_free(&f.tx);
    tn_tx_free(&rx);
}

/* One frame of 3000 heartbeats with distinct names and dead URLs: the master keeps at most
 * --max-workers of them, forgets them once silent (10 x the heartbeat timeout), and still
 * stops promptly on SIGTERM. The old master kept and redialled all of them for ever. */
Test(cluster, heartbeats_of_3000_identities_are_bounded_and_forgotten)
{
    const char *extra[] = {"--max-workers", "100", NULL};
    int mi = start_master_with("1s", NULL, extra); /* the smallest timeout allowed */
    for (int i = 0; i < 300 && count_workers(NULL) < 0; i++)
        usleep(20000);
    static const tn_str groups[] = {TN_STR("default")};
    enum {
        N = 3000
    };
    static char names_[N][32], urls[N][96];
    static tn_msg hb[N];
    for (int i = 0; i < N; i++) {
        snprintf(names_[i], sizeof(names_[i]), "ghost-%d", i);
        snprintf(urls[i], sizeof(urls[i]), "ipc://%s/dead-%d.sock", dir, i);
        hb[i] = (tn_msg){.type = TN_MSG_HEARTBEAT};
        hb[i].heartbeat = (tn_msg_heartbeat){.worker = tn_str_c(names_[i]),
                                             .listen_url = tn_str_c(urls[i]),
                                             .ctl_url = TN_STR(""),
                                             .groups = {groups, 1},
                                             .slots = 1,
                                             .mem_free = 1u << 30,
                                             .epoch = 1};
    }
    tn_tx tx = frame_sender(NULL);
    send_msgs(tx, "ghost-0", hb, N);
    int n = -1;
    for (int i = 0; i < 100 && n < 100; i++) {
        usleep(50000);
        n = count_workers(NULL);
    }
    cr_assert_eq(n, 100, "the master keeps %d workers, --max-workers 100", n);
    for (int i = 0; i < 600 && n > 0; i++) { /* forgotten after 10 s of silence */
        usleep(50000);
        n = count_workers(NULL);
    }
    cr_assert_eq(n, 0, "silent workers were not forgotten (%d left)", n);
    send_msgs(tx, "ghost-0", hb, N); /* 100 again, with their dialers, then stop */
    usleep(300000);
    tn_tx_free(&tx);
    /* a clean stop on SIGTERM, not one the harness had to end with SIGKILL */
    int st = stop_proc_status(mi, SIGTERM);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the master did not stop cleanly on SIGTERM (status %d)", st);
}

/* ---- trust over tls+tcp: certificates made by `tern cert` -------------------------------- */

static char pki[700];

static void make_pki(void)
{
    snprintf(pki, sizeof(pki), "%s/pki", dir);
    char cmd[8000];
    snprintf(
        cmd, sizeof(cmd),
        "%s cert init --dir %s >/dev/null && %s cert issue --dir %s --role master --name m1 "
        ">/dev/null && %s cert issue --dir %s --role worker --name w1 >/dev/null && %s cert "
        "issue --dir %s --role worker --name w2 >/dev/null",
        tu_tern(), pki, tu_tern(), pki, tu_tern(), pki, tu_tern(), pki);
    cr_assert_eq(system(cmd), 0, "tern cert failed");
}

static tn_tx_tls tls_of(const char *name, char *buf)
{
    /* buf: 3 x 800 bytes */
    snprintf(buf, 800, "%s/ca.pem", pki);
    snprintf(buf + 800, 800, "%s/%s.pem", pki, name);
    snprintf(buf + 1600, 800, "%s/%s.key", pki, name);
    return (tn_tx_tls){buf, buf + 800, buf + 1600, NULL};
}

static int test_port(int k)
{
    return 20000 + (int)(getpid() * 7 + k) % 30000;
}

/* A heartbeat claiming worker w1 sent with w2's certificate does not make w1 join; w2's own
 * heartbeat does. (On plain tcp anyone could claim any name.) */
Test(cluster, tls_a_forged_heartbeat_is_refused)
{
    make_pki();
    char listen[100], ca[800], cert[800], key[800];
    snprintf(listen, sizeof(listen), "tls+tcp://127.0.0.1:%d", test_port(1));
    snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
    snprintf(cert, sizeof(cert), "%s/m1.pem", pki);
    snprintf(key, sizeof(key), "%s/m1.key", pki);
    const char *extra[] = {"--tls-ca", ca, "--tls-cert", cert, "--tls-key", key, NULL};
    start_master_with("60s", listen, extra);
    for (int i = 0; i < 300 && count_workers(NULL) < 0; i++)
        usleep(20000);
    char b2[2400];
    tn_tx_tls t2 = tls_of("w2", b2);
    tn_tx tx = frame_sender(&t2);
    static const tn_str groups[] = {TN_STR("default")};
    tn_msg hb = {.type = TN_MSG_HEARTBEAT};
    char wurl[100];
    snprintf(wurl, sizeof(wurl), "tls+tcp://127.0.0.1:%d", test_port(2));
    hb.heartbeat = (tn_msg_heartbeat){.worker = TN_STR("w1"),
                                      .listen_url = tn_str_c(wurl),
                                      .ctl_url = TN_STR(""),
                                      .groups = {groups, 1},
                                      .slots = 1,
                                      .mem_free = 1u << 30,
                                      .epoch = 1};
    for (int i = 0; i < 10; i++) {
        send_msgs(tx, "w1", &hb, 1);
        usleep(100000);
    }
    cr_assert_eq(count_workers("w1"), 0, "a heartbeat claiming w1 made it join");
    hb.heartbeat.worker = TN_STR("w2");
    int n = 0;
    for (int i = 0; i < 50 && n == 0; i++) {
        send_msgs(tx, "w2", &hb, 1);
        usleep(100000);
        n = count_workers("w2");
    }
    cr_assert_eq(n, 1, "w2's own heartbeat over TLS was not taken");
    tn_tx_free(&tx);
}

/* A DISPATCH to a real worker's listener from a worker's certificate is refused (the task's
 * command does not run); the same from the master's certificate runs. */
Test(cluster, tls_worker_takes_dispatch_only_from_the_master_certificate)
{
    make_pki();
    char mlisten[100], wlisten[100], ca[800], cert[800], key[800], data[700];
    snprintf(mlisten, sizeof(mlisten), "tls+tcp://127.0.0.1:%d", test_port(3));
    snprintf(wlisten, sizeof(wlisten), "tls+tcp://127.0.0.1:%d", test_port(4));
    snprintf(murl, sizeof(murl), "%s", mlisten);
    fake_master f = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char bm[2400];
    tn_tx_tls tm = tls_of("m1", bm);
    tn_tx rx;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(false, &tm, fm_recv, &f, &rx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_listen(rx, mlisten, &em), TN_OK, "%s", em.text);
    snprintf(ca, sizeof(ca), "%s/ca.pem", pki);
    snprintf(cert, sizeof(cert), "%s/w1.pem", pki);
    snprintf(key, sizeof(key), "%s/w1.key", pki);
    snprintf(data, sizeof(data), "%s/w1", dir);
    const char *a[] = {"worker",   "--master", mlisten,       "--listen", wlisten,
                       "--data",   data,       "--heartbeat", "200ms",    "--no-cgroup",
                       "--tls-ca", ca,         "--tls-cert",  cert,       "--tls-key",
                       key,        NULL};
    spawn("w1", a, NULL);
    uint64_t epoch = fm_epoch(&f, 0);
    char bw[2400], evil_file[800], good_file[800], cmd[2000];
    snprintf(evil_file, sizeof(evil_file), "%s/evil-ran", dir);
    snprintf(good_file, sizeof(good_file), "%s/good-ran", dir);
    tn_tx_tls tw = tls_of("w2", bw);
    tn_tx evil;
    cr_assert_eq(tn_tx_nng_new(true, &tw, NULL, NULL, &evil, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(evil, wlisten, &em), TN_OK, "%s", em.text);
    snprintf(cmd, sizeof(cmd), "touch %s", evil_file);
    for (int i = 0; i < 10; i++) {
        fm_dispatch_cmd(evil, 1, 1, epoch, cmd);
        usleep(100000);
    }
    cr_assert_neq(access(evil_file, F_OK), 0, "a DISPATCH from a worker certificate ran");
    tn_tx good;
    cr_assert_eq(tn_tx_nng_new(true, &tm, NULL, NULL, &good, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(good, wlisten, &em), TN_OK, "%s", em.text);
    snprintf(cmd, sizeof(cmd), "touch %s", good_file);
    bool ran = false;
    for (int i = 0; i < 100 && !ran; i++) {
        if (i % 10 == 0)
            fm_dispatch_cmd(good, 2, 1, epoch, cmd);
        usleep(100000);
        ran = access(good_file, F_OK) == 0;
    }
    cr_assert(ran, "the master's DISPATCH did not run");
    stop_proc(nprocs - 1, SIGTERM);
    tn_tx_free(&evil);
    tn_tx_free(&good);
    tn_tx_free(&rx);
}

/* Plain tcp is refused by the daemons unless --insecure says so, with what to do. */
Test(cluster, plain_tcp_needs_insecure)
{
    const char *cmds[] = {"master --listen tcp://127.0.0.1:0 --data %s/m",
                          "worker --master tcp://127.0.0.1:1 --listen ipc://%s/w.sock --data "
                          "%s/w"};
    for (int i = 0; i < 2; i++) {
        char args[1500], cmd[2000];
        snprintf(args, sizeof(args), cmds[i], dir, dir);
        snprintf(cmd, sizeof(cmd), "%s %s", tu_tern(), args);
        char *out = NULL, *err = NULL;
        int rc = tu_run(cmd, &out, &err);
        cr_assert_eq(rc, 2, "%s: exit %d", cmd, rc);
        cr_assert(err && strstr(err, "--insecure") && strstr(err, "tern cert"), "%s",
                  err ? err : "");
        free(out);
        free(err);
    }
}

/* `tern run` says why each failed or killed task ended, in its table (REASON) and in
 * --json (reason): an exit status, a signal, a task timeout, and a workflow timeout
 * with timeout_strategy fail that ends the run FAILURE at its limit. */
Test(cluster, run_prints_why_tasks_failed_or_were_killed)
{
    char path[700], cmd[2048], *out = NULL, *err = NULL;
    snprintf(path, sizeof(path), "%s/why.yaml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("name: why\nfailure_strategy: continue\ntasks:\n"
          "  - {name: ok, type: shell, command: 'true'}\n"
          "  - {name: bad, type: shell, command: 'exit 3'}\n"
          "  - {name: sig, type: shell, command: 'kill -TERM $$'}\n"
          "  - {name: slow, type: shell, command: 'sleep 30', timeout: 1s,\n"
          "     timeout_strategy: fail, retries: 1, kill_grace: 200ms}\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "cd %s && %s run why.yaml --data d", dir, tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 1, "%s%s", out, err);
    cr_assert(strstr(out, "REASON"), "%s", out);
    cr_assert(strstr(out, "exit status 3"), "%s", out);
    cr_assert(strstr(out, "killed by signal 15"), "%s", out);
    cr_assert(strstr(out, "timed out after 1.0s (timeout_strategy fail)"), "%s", out);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "cd %s && %s run why.yaml --data d --json", dir, tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 1, "%s%s", out, err);
    cr_assert(strstr(out, "\"name\":\"bad\",\"state\":\"FAILURE\",\"attempts\":1,"
                          "\"reason\":\"exit status 3\""),
              "%s", out);
    cr_assert(strstr(out, "\"name\":\"slow\",\"state\":\"KILL\",\"attempts\":1,"
                          "\"reason\":\"killed by "),
              "%s", out);
    free(out);
    free(err);

    snprintf(path, sizeof(path), "%s/wto.yaml", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("name: wto\ntimeout: 2s\ntimeout_strategy: fail\ntasks:\n"
          "  - {name: a, type: shell, command: 'sleep 6', kill_grace: 200ms}\n",
          f);
    fclose(f);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(cmd, sizeof(cmd), "cd %s && %s run wto.yaml --data d", dir, tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 1, "%s%s", out, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert(strstr(out, "workflow wto instance 3: FAILURE"), "%s", out);
    cr_assert(strstr(out, "the workflow timed out after 2.0s"), "%s", out);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 5, "it ends at its timeout, not after its task");
    free(out);
    free(err);
}

/* `tern status` shows each task's reason (REASON column, "reason" in --json), and why a
 * task no worker took waits, in SUBMITTED_SUCCESS (its group has no live worker). */
Test(cluster, status_shows_reasons_and_why_a_task_waits)
{
    start_master("5s", NULL);
    start_worker("w1", false, NULL, "4");
    wait_workers(1);
    uint64_t wf =
        start_wf("st.yaml",
                 "name: st\nfailure_strategy: continue\ntasks:\n"
                 "  - {name: bad, type: shell, command: 'exit 7'}\n"
                 "  - {name: lost, type: shell, command: 'true', worker_group: none}\n",
                 "st");
    char *out = NULL;
    for (int i = 0; i < 400; i++) {
        free(out);
        out = NULL;
        ctl(&out, "status %" PRIu64 " --json", wf);
        if (strstr(out, "\"reason\":\"exit status 7\"") && strstr(out, "no live worker"))
            break;
        usleep(50000);
    }
    cr_assert(strstr(out, "\"name\":\"bad\",\"state\":\"FAILURE\""), "%s", out);
    cr_assert(strstr(out, "\"reason\":\"exit status 7\""), "%s", out);
    cr_assert(strstr(out, "\"name\":\"lost\",\"state\":\"SUBMITTED_SUCCESS\""), "%s", out);
    cr_assert(strstr(out, "\"waiting_for\":\"no live worker in group \\\"none\\\""), "%s", out);
    free(out);
    out = NULL;
    cr_assert_eq(ctl(&out, "status %" PRIu64, wf), 0, "%s", out);
    cr_assert(strstr(out, "REASON"), "%s", out);
    cr_assert(strstr(out, "exit status 7"), "%s", out);
    cr_assert(strstr(out, "waiting for: no live worker"), "%s", out);
    free(out);
    out = NULL;
    cr_assert_eq(ctl(&out, "stop %" PRIu64, wf), 0, "%s", out);
    free(out);
}

/* ---- limits, options and the task environment ---------------------------------------- */

/* `tern ARGS` exits 2 and its stderr names want. */
static void expect_usage(const char *args, const char *want)
{
    char cmd[1024], *out = NULL, *err = NULL;
    /* bounded and in the test's dir: a daemon that accepted the value would run on */
    snprintf(cmd, sizeof(cmd), "cd %s && timeout 20 %s %s", dir, tu_tern(), args);
    int rc = tu_run(cmd, &out, &err);
    cr_expect_eq(rc, 2, "`tern %s` exit %d: %s", args, rc, err ? err : "");
    cr_expect(err && strstr(err, want), "`tern %s`: %s (want %s)", args, err ? err : "", want);
    free(out);
    free(err);
}

Test(cluster, daemon_options_out_of_range_are_usage_errors_naming_the_range)
{
    expect_usage("master --listen ipc:///nonexistent/m --heartbeat-timeout 1ms", "1s..1h");
    expect_usage("master --listen ipc:///nonexistent/m --heartbeat-timeout 2h", "1s..1h");
    expect_usage("master --listen ipc:///nonexistent/m --map-max 1K", "--map-max");
    expect_usage("worker --master ipc:///nonexistent/m --listen ipc:///nonexistent/w "
                 "--heartbeat 1ms",
                 "100ms..10s");
    expect_usage("worker --master ipc:///nonexistent/m --listen ipc:///nonexistent/w --slots 0",
                 "1..4096");
    expect_usage("worker --master ipc:///nonexistent/m --listen ipc:///nonexistent/w "
                 "--slots 5000",
                 "1..4096");
    expect_usage("worker --master ipc:///nonexistent/m --listen ipc:///nonexistent/w "
                 "--pids-max 0",
                 "1..4194304");
    expect_usage("standalone --slots 100000", "1..4096");
    expect_usage("standalone --pids-max 0", "1..4194304");
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *b = calloc(1, 1 << 20);
    size_t n = fread(b, 1, (1 << 20) - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

/* For a failure's message: the end of DIR/NAME.log (tu_log_tail). */
static const char *log_tail(const char *name, char *buf, size_t len)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s.log", dir, name);
    return tu_log_tail(path, buf, len);
}

/* Whether the NUL-free `env` output has the line exactly. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == 0))
            return true;
    return false;
}

Test(cluster, tasks_start_from_a_clean_environment_with_params_and_pass_env)
{
    setenv("WORKER_SECRET", "s3cret", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "aws", 1);
    start_master("5s", NULL);
    start_worker_with("w1", NULL);
    start_worker_with("w2", (const char *[]){"--group", "pass", "--pass-env", "WORKER_SECRET",
                                             "--pass-env", "NOT_SET_ANYWHERE", NULL});
    unsetenv("WORKER_SECRET");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    wait_workers(2);
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "name: envt\nparams: {greeting: hello world, HOME: /param/home}\ntasks:\n"
             "  - name: plain\n    type: shell\n    params: {local_one: 'x=1'}\n"
             "    command: 'env > %s/plain.env'\n"
             "  - name: passed\n    type: shell\n    worker_group: pass\n"
             "    command: 'env > %s/passed.env'\n",
             dir, dir);
    uint64_t wf = start_wf("env.yaml", yaml, "envt");
    char st[64], path[700];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    snprintf(path, sizeof(path), "%s/plain.env", dir);
    char *e = slurp(path);
    cr_assert_not_null(e);
    cr_expect_null(strstr(e, "WORKER_SECRET"), "%s", e);
    cr_expect_null(strstr(e, "AWS_SECRET_ACCESS_KEY"), "%s", e);
    cr_expect(has_line(e, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
              "%s", e);
    cr_expect(has_line(e, "SHELL=/bin/sh"), "%s", e);
    cr_expect(strstr(e, "\nLANG=") || !strncmp(e, "LANG=", 5), "%s", e);
    cr_expect(strstr(e, "\nUSER=") || !strncmp(e, "USER=", 5), "%s", e);
    cr_expect(strstr(e, "\nLOGNAME="), "%s", e);
    cr_expect(has_line(e, "greeting=hello world"), "a workflow param: %s", e);
    cr_expect(has_line(e, "local_one=x=1"), "a task param: %s", e);
    cr_expect(has_line(e, "HOME=/param/home"), "a param replaces the default: %s", e);
    cr_expect(has_line(e, "TERN_TASK_NAME=plain"), "%s", e);
    free(e);
    snprintf(path, sizeof(path), "%s/passed.env", dir);
    e = slurp(path);
    cr_assert_not_null(e);
    cr_expect(has_line(e, "WORKER_SECRET=s3cret"), "--pass-env passes it: %s", e);
    cr_expect_null(strstr(e, "AWS_SECRET_ACCESS_KEY"), "%s", e);
    cr_expect_null(strstr(e, "NOT_SET_ANYWHERE"), "%s", e);
    free(e);
}

/* A YAML file of one workflow NAME whose params are n of vlen bytes each, with one shell
 * task running command (a block scalar, its lines indented by the caller). */
static char *big_def(const char *name, uint32_t n, size_t vlen, const char *command)
{
    size_t cap = (size_t)n * (vlen + 32) + strlen(command) + 4096;
    char *y = malloc(cap), *p = y;
    p += sprintf(p, "name: %s\nparams:\n", name);
    for (uint32_t i = 0; i < n; i++) {
        p += sprintf(p, "  p%u: ", i);
        memset(p, 'v', vlen);
        p += vlen;
        *p++ = '\n';
    }
    p += sprintf(p, "tasks:\n  - name: big\n    type: shell\n    command: |-\n%s\n", command);
    return y;
}

/* How many times the event log records TRANSITION ("task DISPATCH DISPATCHED"), by
 * `tern replay --coverage-out` over the master's store. */
static long count_transitions(const char *transition)
{
    char cov[700], cmd[2000], *out = NULL, *err = NULL;
    snprintf(cov, sizeof(cov), "%s/coverage.txt", dir);
    unlink(cov);
    snprintf(cmd, sizeof(cmd), "%s replay --data %s --coverage-out %s", tu_tern(), mdata, cov);
    tu_run(cmd, &out, &err);
    free(out);
    free(err);
    char *c = slurp(cov);
    cr_assert_not_null(c, "no coverage from replay");
    long n = 0;
    for (char *l = c; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, transition, strlen(transition)) == 0) {
            char line[256];
            snprintf(line, sizeof(line), "%.*s", (int)strcspn(l, "\n"), l);
            n += strtol(strrchr(line, ' ') + 1, NULL, 10);
        }
    free(c);
    return n;
}

Test(cluster, a_task_at_the_formats_maximum_sizes_runs_end_to_end)
{
    start_master("5s", NULL);
    start_worker("w1", true, NULL, "4");
    wait_workers(1);
    /* a command of exactly 1 MiB (TN_DEF_MAX_COMMAND): a long comment, then lines that
     * run only if it arrived whole; and the most params a map may hold */
    char tail[1024];
    int tl = snprintf(tail, sizeof(tail),
                      "\n      test \"$(env | grep -c '^p[0-9]*=')\" = 1000"
                      "\n      echo \"ok $p999\" > %s/max.out",
                      dir);
    size_t cmd_len = 1u << 20, ind = 6;
    /* YAML strips the 6-space indent of each of the lines: 2 lines after the comment */
    size_t comment = cmd_len - (size_t)(tl - 2 * (int)ind);
    char *command = malloc(comment + ind + (size_t)tl + 1);
    memset(command, ' ', ind);
    command[ind] = '#';
    memset(command + ind + 1, 'x', comment - 1);
    memcpy(command + ind + comment, tail, (size_t)tl + 1);
    char *y = big_def("maxsz", 1000, 64, command);
    free(command);
    uint64_t wf = start_wf("max.yaml", y, "maxsz");
    free(y);
    char st[64], path[700];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    snprintf(path, sizeof(path), "%s/max.out", dir);
    char *o = slurp(path);
    char want[100] = "ok ";
    memset(want + 3, 'v', 64);
    strcpy(want + 67, "\n");
    cr_assert(o && strcmp(o, want) == 0, "the command's last line ran: %s", o ? o : "(none)");
    free(o);
    int att;
    task_state(wf, "big", st, sizeof(st), &att);
    cr_expect_eq(att, 1);
}

Test(cluster, an_unsendable_dispatch_fails_the_task_once_with_the_reason)
{
    start_master("5s", NULL);
    start_worker("w1", true, NULL, "4");
    wait_workers(1);
    /* 140 params of 64,000 bytes: a valid definition whose DISPATCH is over 8 MiB */
    char *y = big_def("unsendable", 140, 64000, "      echo never");
    uint64_t wf = start_wf("uns.yaml", y, "unsendable");
    free(y);
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "FAILURE");
    int att;
    task_state(wf, "big", st, sizeof(st), &att);
    cr_expect_str_eq(st, "FAILURE");
    cr_expect_eq(att, 1, "failed once, not failed over");
    usleep(500000); /* a loop would go on dispatching */
    cr_expect_eq(count_transitions("task SUBMITTED_SUCCESS DISPATCHED"), 1);
    cr_expect_eq(count_transitions("task NEED_FAULT_TOLERANCE"), 0);
    char *out = NULL;
    char cmd[1000], *err = NULL;
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --data %s", tu_tern(), wf, mdata);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "FAILED") && strstr(out, "the dispatch cannot be sent"),
              "the FAILED event's reason: %s", out);
    free(out);
    free(err);
    char log[700];
    snprintf(log, sizeof(log), "%s/master.log", dir);
    char *ml = slurp(log);
    cr_expect(ml && strstr(ml, "dispatch cannot be sent") && strstr(ml, "level=error"),
              "logged at error level: %s", ml ? ml : "");
    free(ml);
}

/* pids_max from the definition reaches the worker, the fork loop is stopped at it, and the
 * task's RUNNING event records which limit applied. */
Test(cluster, pids_max_from_the_definition_limits_the_task_and_is_recorded)
{
    start_master("5s", NULL);
    start_worker("w1", true, NULL, "4");
    wait_workers(1);
    uint64_t wf = start_wf("pids.yaml",
                           "name: pids\ntasks:\n  - name: forker\n    type: shell\n"
                           "    pids_max: 10\n    command: |\n"
                           "      i=0; while [ $i -lt 100 ]; do sleep 300 & i=$((i+1)); done\n"
                           "      echo all-forked\n",
                           "pids");
    char st[64];
    wait_final(wf, st, sizeof(st));
    char cmd[1000], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --data %s", tu_tern(), wf, mdata);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    bool none = strstr(out, "pids=none") != NULL;
    if (!none) {
        cr_expect_str_eq(st, "FAILURE", "its forks failed: %s", out);
        cr_expect(strstr(out, "pids=v2:10") || strstr(out, "pids=v1:10") ||
                      strstr(out, "pids=rlimit:10"),
                  "the containment attr names the limit: %s", out);
    }
    free(out);
    free(err);
    cr_assert_eq(ctl(&out, "logs %" PRIu64, task_id(wf, "forker")), 0);
    if (!none)
        cr_expect_null(strstr(out, "all-forked"), "%s", out);
    free(out);
    cr_assert_eq(count_tasks(0), 0, "every process it started is gone");
    if (none)
        cr_skip_test("no pids controller and the worker runs as root: not enforced");
}

/* ---- application kill hooks ----------------------------------------------------------- */

/* A fake `yarn` in DIR/bin that appends its arguments to DIR/yarn.calls; the hook spec that
 * runs it for application ids, in spec. */
static void fake_yarn(char *spec, size_t len)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/bin", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    char text[1200];
    snprintf(text, sizeof(text),
             "#!/bin/sh\necho \"$*\" >> %s/yarn.calls\n"
             "echo \"$TERN_KILL_HOOK_TASK_USER\" > %s/yarn.user\n"
             "echo \"Killed application $3\"\n",
             dir, dir);
    char *y = write_file("bin/yarn", text);
    cr_assert_eq(chmod(y, 0755), 0);
    snprintf(spec, len, "application_[0-9]+_[0-9]+=%s application -kill {id}", y);
    free(y);
}

/* How many lines of DIR/yarn.calls are exactly line. */
static int yarn_calls(const char *line)
{
    char p[700], buf[512];
    snprintf(p, sizeof(p), "%s/yarn.calls", dir);
    FILE *f = fopen(p, "r");
    int n = 0;
    while (f && fgets(buf, sizeof(buf), f))
        n += strcmp(buf, line) == 0;
    if (f)
        fclose(f);
    return n;
}

static int yarn_lines(void)
{
    char p[700], buf[512];
    snprintf(p, sizeof(p), "%s/yarn.calls", dir);
    FILE *f = fopen(p, "r");
    int n = 0;
    while (f && fgets(buf, sizeof(buf), f))
        n++;
    if (f)
        fclose(f);
    return n;
}

/* Waits until the log of task `name` of wf shows text (the task is running by then). */
static void wait_log_has(uint64_t wf, const char *name, const char *text)
{
    for (int i = 0; i < 400; i++) {
        char *out = NULL;
        uint64_t id = task_id(wf, name);
        bool has = id && ctl(&out, "logs %" PRIu64, id) == 0 && out && strstr(out, text);
        free(out);
        if (has)
            return;
        usleep(50000);
    }
    cr_assert_fail("the log of %s never showed %s", name, text);
}

static void wait_task_state(uint64_t wf, const char *name, const char *want)
{
    char st[64];
    int att;
    for (int i = 0; i < 600; i++) {
        task_state(wf, name, st, sizeof(st), &att);
        if (!strcmp(st, want))
            return;
        usleep(50000);
    }
    cr_assert_fail("task %s is %s, not %s", name, st, want);
}

/* The "hooks" attr of the KILLED event of task `name` in wf's audit (JSON), "" when the
 * event has none; NULL when there is no KILLED event. */
static char *killed_hooks(uint64_t wf, const char *name, const char *data)
{
    char cmd[1200], *out = NULL, *err = NULL, key[64];
    snprintf(cmd, sizeof(cmd), "%s audit %" PRIu64 " --json --data %s", tu_tern(), wf, data);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    free(err);
    snprintf(key, sizeof(key), "\"id\":%" PRIu64 ",\"event\":\"KILLED\"", task_id(wf, name));
    char *ev = strstr(out, key), *res = NULL;
    if (ev) {
        char *end = strchr(ev, '\n'), *h = strstr(ev, "\"hooks\":\"");
        if (h && (!end || h < end))
            res = strndup(h + 9, strcspn(h + 9, "\n"));
        else
            res = strdup("");
    }
    free(out);
    return res;
}

/* A master and a worker with the fake yarn's hook and one for job_ ids, every message sent
 * twice both ways (a resent KILL, a resent KILL_RESULT); the yarn path in yarn. */
static void start_hooked(char *yarn, size_t len)
{
    static char spec[1000], job[1000];
    fake_yarn(spec, sizeof(spec));
    snprintf(yarn, len, "%s/bin/yarn", dir);
    snprintf(job, sizeof(job), "job_[^ ]+=%s job -kill {id}", yarn);
    const char *faults = "seed=3,dup=1";
    start_master("5s", faults);
    const char *extra[] = {"--kill-hook", spec, "--kill-hook", job, NULL};
    start_worker_with("w1", extra);
    wait_workers(1);
}

/* Tasks that printed YARN application ids are killed with `tern kill`: the worker's hook
 * runs `yarn application -kill ID` once per distinct id, even with every KILL and
 * KILL_RESULT sent twice, and the KILLED event records the command and its exit status.
 * No id: no command, no attr. Shell in the log never runs. */
Test(cluster, kill_hooks_run_once_per_id_with_the_command_in_the_audit)
{
    char yarn[900];
    start_hooked(yarn, sizeof(yarn));
    char yaml[2000];
    snprintf(yaml, sizeof(yaml),
             "name: kh\ntasks:\n"
             "  - name: one\n    type: shell\n    kill_grace: 200ms\n    command: |\n"
             "      echo 'Submitted application application_1700000000000_0001'\n"
             "      sleep 300\n"
             "  - name: two\n    type: shell\n    kill_grace: 200ms\n    command: |\n"
             "      echo 'application_1700000000000_0002 application_1700000000000_0003'\n"
             "      echo 'again application_1700000000000_0002'\n"
             "      sleep 300\n"
             "  - name: none\n    type: shell\n    kill_grace: 200ms\n    command: |\n"
             "      echo 'no application here'\n"
             "      sleep 300\n"
             "  - name: evil\n    type: shell\n    kill_grace: 200ms\n    command: |\n"
             "      echo 'job_1;touch %s/pwned1 job_$(touch${IFS}%s/pwned2)'\n"
             "      sleep 300\n",
             dir, dir);
    uint64_t wf = start_wf("kh.yaml", yaml, "kh");
    static const char *const tasks[] = {"one", "two", "none", "evil"};
    static const char *const shows[] = {"_0001", "again", "no application", "job_1"};
    for (int i = 0; i < 4; i++)
        wait_log_has(wf, tasks[i], shows[i]);
    for (int i = 0; i < 4; i++) {
        char *out = NULL;
        cr_assert_eq(ctl(&out, "kill %" PRIu64, task_id(wf, tasks[i])), 0, "%s", out);
        free(out);
        wait_task_state(wf, tasks[i], "KILL");
    }
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0001\n"), 1);
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0002\n"), 1);
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0003\n"), 1);
    cr_expect_eq(yarn_lines(), 3, "no other command ran");
    struct stat sb;
    char p[800];
    for (int i = 1; i <= 2; i++) {
        snprintf(p, sizeof(p), "%s/pwned%d", dir, i);
        cr_expect_neq(stat(p, &sb), 0, "the log ran as shell");
    }
    char *h = killed_hooks(wf, "one", mdata), want[1200];
    cr_assert_not_null(h);
    snprintf(want, sizeof(want),
             "%s application -kill 'application_1700000000000_0001' -> exit 0", yarn);
    cr_expect(strstr(h, want), "%s", h);
    free(h);
    h = killed_hooks(wf, "two", mdata);
    cr_assert_not_null(h);
    cr_expect(strstr(h, "'application_1700000000000_0002' -> exit 0; "), "%s", h);
    cr_expect(strstr(h, "'application_1700000000000_0003' -> exit 0"), "%s", h);
    free(h);
    h = killed_hooks(wf, "none", mdata);
    cr_assert_not_null(h);
    cr_expect_str_eq(h, "", "no id, no hooks attr");
    free(h);
    h = killed_hooks(wf, "evil", mdata);
    cr_assert_not_null(h);
    cr_expect(strstr(h, "job_1;touch -> refused: "), "%s", h);
    free(h);
}

/* A timeout with strategy fail and a stop of the workflow run the hook too, once. */
Test(cluster, kill_hooks_run_on_a_timeout_and_a_stop)
{
    char yarn[900];
    start_hooked(yarn, sizeof(yarn));
    uint64_t wf =
        start_wf("kt.yaml",
                 "name: kt\ntasks:\n"
                 "  - {name: slow, type: shell, timeout: 2s, timeout_strategy: fail,\n"
                 "     kill_grace: 200ms,\n"
                 "     command: 'echo application_1700000000000_0004; sleep 300'}\n",
                 "kt");
    wait_task_state(wf, "slow", "KILL");
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0004\n"), 1);
    char *h = killed_hooks(wf, "slow", mdata);
    cr_assert_not_null(h);
    cr_expect(strstr(h, "'application_1700000000000_0004' -> exit 0"), "%s", h);
    free(h);

    wf = start_wf("ks.yaml",
                  "name: ks\ntasks:\n"
                  "  - {name: s, type: shell, kill_grace: 200ms,\n"
                  "     command: 'echo application_1700000000000_0005; sleep 300'}\n",
                  "ks");
    wait_log_has(wf, "s", "application_1700000000000_0005");
    char *out = NULL;
    cr_assert_eq(ctl(&out, "stop %" PRIu64, wf), 0, "%s", out);
    free(out);
    wait_task_state(wf, "s", "KILL");
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0005\n"), 1);
    h = killed_hooks(wf, "s", mdata);
    cr_assert_not_null(h);
    cr_expect(strstr(h, "'application_1700000000000_0005' -> exit 0"), "%s", h);
    free(h);
    cr_expect_eq(yarn_lines(), 2, "each id once, nothing else");
}

/* A bad hook stops the worker, the standalone and `tern run` before anything starts: a
 * usage error that names it and says why. */
Test(cluster, a_bad_kill_hook_is_a_usage_error)
{
    char cmd[2000], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof(cmd),
             "%s worker --master ipc://%s/m --listen ipc://%s/w --data %s/w "
             "--kill-hook 'application_[0-9+=yarn application -kill {id}'",
             tu_tern(), dir, dir, dir);
    cr_expect_eq(tu_run(cmd, &out, &err), 2);
    cr_expect(strstr(err, "kill hook 1"), "%s", err);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd),
             "%s standalone --data %s/s --kill-hook 'application_[0-9]+=yarn -kill'", tu_tern(),
             dir);
    cr_expect_eq(tu_run(cmd, &out, &err), 2);
    cr_expect(strstr(err, "{id}"), "%s", err);
    free(out);
    free(err);
    char *f =
        write_file("r.yaml", "name: r\ntasks:\n  - {name: a, type: shell, command: 'true'}\n");
    snprintf(cmd, sizeof(cmd), "cd %s && %s run %s --data %s/r --kill-hook 'no separator'", dir,
             tu_tern(), f, dir);
    cr_expect_eq(tu_run(cmd, &out, &err), 2);
    cr_expect(strstr(err, "no '='"), "%s", err);
    free(out);
    free(err);
    free(f);
    snprintf(cmd, sizeof(cmd), "%s/r", dir);
    struct stat sb;
    cr_expect_neq(stat(cmd, &sb), 0, "nothing was created");
}

/* `tern run` runs the hooks of its embedded worker: a task timed out with strategy fail. */
Test(cluster, run_kills_a_timed_out_tasks_application)
{
    char spec[1000];
    fake_yarn(spec, sizeof(spec));
    char *f = write_file("r.yaml",
                         "name: r\ntasks:\n"
                         "  - {name: slow, type: shell, timeout: 1s, timeout_strategy: fail,\n"
                         "     kill_grace: 200ms,\n"
                         "     command: 'echo application_1700000000000_0042; sleep 300'}\n");
    char cmd[3000], *out = NULL, *err = NULL;
    snprintf(cmd, sizeof(cmd), "cd %s && %s run %s --data %s/r --kill-hook '%s'", dir,
             tu_tern(), f, dir, spec);
    cr_expect_eq(tu_run(cmd, &out, &err), 1, "the workflow was stopped: %s %s", out, err);
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0042\n"), 1);
    cr_expect_eq(yarn_lines(), 1);
    free(out);
    free(err);
    free(f);
}

/* `tern standalone --kill-hook`: its worker runs the hook when a workflow is stopped, and
 * tells it the task's tenant (root, where the test may switch users). */
Test(cluster, standalone_kills_a_stopped_tasks_application)
{
    bool root = geteuid() == 0;
    char spec[1000], data[600];
    fake_yarn(spec, sizeof(spec));
    snprintf(data, sizeof(data), "%s/sa", dir);
    snprintf(mctl, sizeof(mctl), "ipc://%s/sa/master.ctl", dir);
    const char *a[] = {"standalone", "--data", data, "--no-cgroup", "--kill-hook", spec, NULL};
    spawn("sa", a, NULL);
    wait_workers(1);
    uint64_t wf =
        start_wf("s.yaml",
                 root ? "name: s\ntenant: root\ntasks:\n"
                        "  - {name: t, type: shell, kill_grace: 200ms,\n"
                        "     command: 'echo application_1700000000000_0077; sleep 300'}\n" :
                        "name: s\ntasks:\n"
                        "  - {name: t, type: shell, kill_grace: 200ms,\n"
                        "     command: 'echo application_1700000000000_0077; sleep 300'}\n",
                 "s");
    wait_log_has(wf, "t", "application_1700000000000_0077");
    char *out = NULL;
    cr_assert_eq(ctl(&out, "stop %" PRIu64, wf), 0, "%s", out);
    free(out);
    wait_task_state(wf, "t", "KILL");
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0077\n"), 1);
    char *h = killed_hooks(wf, "t", data);
    cr_assert_not_null(h);
    cr_expect(strstr(h, "'application_1700000000000_0077' -> exit 0"), "%s", h);
    free(h);
    cr_expect(file_has("yarn.user", root ? "root\n" : "\n"), "the hook was told the tenant");
}

/* A worker stopping kills its tasks, and their applications with them, before it exits. */
Test(cluster, a_stopping_worker_runs_the_kill_hooks_of_its_tasks)
{
    char yarn[900];
    start_hooked(yarn, sizeof(yarn));
    uint64_t wf = start_wf("kw.yaml",
                           "name: kw\ntasks:\n"
                           "  - {name: t, type: shell, kill_grace: 200ms,\n"
                           "     command: 'echo application_1700000000000_0009; sleep 300'}\n",
                           "kw");
    wait_log_has(wf, "t", "application_1700000000000_0009");
    /* the worker: master 0, worker 1. Its own bounds: 2 s for its tasks to die, up to 6 s
     * for their hooks and reports */
    int st = stop_proc_within(1, SIGTERM, 30000);
    static char wl[6000];
    cr_assert(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "the worker did not stop cleanly (wait status %d); w1.log:\n%s", st,
              log_tail("w1", wl, sizeof(wl)));
    cr_expect_eq(yarn_calls("application -kill application_1700000000000_0009\n"), 1);
    cr_expect_eq(yarn_lines(), 1);
}

/* Twenty ids: sixteen commands run, the rest are counted, and the KILLED event's one
 * hooks attr is cut at 2 KiB with a marker. */
Test(cluster, a_long_hooks_attr_is_cut_with_a_marker)
{
    char spec[1000], pad[200];
    fake_yarn(spec, sizeof(spec));
    memset(pad, 'p', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    size_t l = strlen(spec);
    snprintf(spec + l, sizeof(spec) - l, " # %s", pad);
    start_master("5s", NULL);
    const char *extra[] = {"--kill-hook", spec, NULL};
    start_worker_with("w1", extra);
    wait_workers(1);
    uint64_t wf =
        start_wf("many.yaml",
                 "name: many\ntasks:\n"
                 "  - name: t\n    type: shell\n    kill_grace: 200ms\n"
                 "    command: |\n"
                 "      for i in $(seq 10 29); do echo application_1700000000000_00$i; "
                 "done\n"
                 "      echo printed\n"
                 "      sleep 300\n",
                 "many");
    wait_log_has(wf, "t", "printed");
    char *out = NULL;
    cr_assert_eq(ctl(&out, "kill %" PRIu64, task_id(wf, "t")), 0, "%s", out);
    free(out);
    wait_task_state(wf, "t", "KILL");
    cr_expect_eq(yarn_lines(), 16, "at most 16 commands per kill");
    char *h = killed_hooks(wf, "t", mdata);
    cr_assert_not_null(h);
    /* the JSON string: 2047 bytes at most, then the closing quote */
    size_t n = strcspn(h, "\"");
    cr_expect_leq(n, 2047, "%zu: %s", n, h);
    cr_expect(n >= 9 && strncmp(h + n - 9, " ...(cut)", 9) == 0, "%.*s", (int)n, h);
    free(h);
}

/* ---- dispatch passes over a full executor ------------------------------------------ */

/* Placement that always refuses, counting how often it is asked. */
static unsigned rf_places;
static tn_executor_ops rf_ops;

static bool rf_place(void *self, const tn_place_req *r, char *worker, size_t wlen, char *why,
                     size_t whylen)
{
    (void)self;
    (void)worker;
    (void)wlen;
    rf_places++;
    snprintf(why, whylen, "test: every worker of %s is full", r->worker_group);
    return false;
}

/* An engine on the in-process executor whose placement always refuses; def applied and
 * one instance started. Returns the engine; *x the executor to free. */
static tn_engine *rf_engine(const char *d, tn_inproc **x, const char *yaml)
{
    char logs[600];
    snprintf(logs, sizeof(logs), "%s/logs", d);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_inproc_new(logs, x), TN_OK);
    tn_executor ex = tn_inproc_executor(*x);
    rf_ops = *ex.ops;
    rf_ops.place = rf_place;
    ex.ops = &rf_ops;
    tn_engine_opts o = {
        .data_dir = d, .log = {.create = true, .no_sync = true}, .executor = ex};
    tn_engine *e;
    cr_assert_eq(tn_engine_open(&o, &e, &m), TN_OK, "%s", m.text);
    tn_inproc_bind(*x, e);
    tn_def *def;
    char *bytes;
    size_t blen;
    cr_assert_eq(tn_def_parse("wide.yaml", yaml, strlen(yaml), &def, &m), TN_OK, "%s", m.text);
    cr_assert_eq(tn_def_encode(def, &bytes, &blen), TN_OK);
    tn_def_free(def);
    tn_cmd ac = {.kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = blen};
    cr_assert_eq(tn_engine_call(e, &ac), TN_OK, "%s", ac.msg);
    free(bytes);
    rf_places = 0;
    tn_cmd sc = {.kind = TN_CMD_START, .workflow = "wide"};
    cr_assert_eq(tn_engine_call(e, &sc), TN_OK, "%s", sc.msg);
    return e;
}

/* Every task of the instance waits, and says why (from the refusal). */
static void rf_all_wait_with(tn_engine *e, unsigned ntasks, const char *why)
{
    unsigned seen = 0;
    for (uint64_t id = 1; id <= ntasks + 8; id++) {
        tn_task_proj p;
        if (tn_engine_read_task(e, id, &p) != TN_OK)
            continue;
        seen++;
        cr_expect_eq(p.state, TN_TASK_S_SUBMITTED_SUCCESS, "task %s", p.name);
        cr_expect_str_eq(tn_engine_why(e, id), why, "task %s", p.name);
    }
    cr_expect_eq(seen, ntasks);
}

/* 200 tasks of one worker group on a full executor: the group's lane stops after a few
 * refusals (8) instead of asking for every queued task, and each still says why it
 * waits. */
Test(dispatch, a_uniform_queue_is_asked_a_bounded_number_of_times_per_pass)
{
    char *d = tu_tmpdir(), y[16384];
    size_t n = (size_t)snprintf(y, sizeof(y), "name: wide\ntasks:\n");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(y + n, sizeof(y) - n, "  - {name: t%d, type: noop}\n", i);
    tn_inproc *x;
    tn_engine *e = rf_engine(d, &x, y);
    cr_expect(rf_places >= 1 && rf_places <= 8, "placement asked %u times for one pass",
              rf_places);
    rf_all_wait_with(e, 200, "test: every worker of default is full");
    tn_engine_close(e);
    tn_inproc_free(x);
    tu_rm_rf(d);
    free(d);
}

/* Two worker groups in the queue: a refusal for one says nothing of the other, so both
 * are asked, once per group while the same group follows. */
Test(dispatch, a_mixed_queue_asks_each_group)
{
    char *d = tu_tmpdir(), y[16384];
    size_t n = (size_t)snprintf(y, sizeof(y), "name: wide\ntasks:\n");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(y + n, sizeof(y) - n,
                              "  - {name: t%d, type: noop, worker_group: %s}\n", i,
                              i < 10 ? "default" : "gpu");
    tn_inproc *x;
    tn_engine *e = rf_engine(d, &x, y);
    cr_expect_geq(rf_places, 2, "both groups asked (%u)", rf_places);
    cr_expect_leq(rf_places, 16, "asked %u times", rf_places);
    for (uint64_t id = 1; id <= 28; id++) {
        tn_task_proj p;
        if (tn_engine_read_task(e, id, &p) != TN_OK)
            continue;
        const char *want = atoi(p.name + 1) < 10 ? "test: every worker of default is full" :
                                                   "test: every worker of gpu is full";
        cr_expect_str_eq(tn_engine_why(e, id), want, "task %s", p.name);
    }
    tn_engine_close(e);
    tn_inproc_free(x);
    tu_rm_rf(d);
    free(d);
}

/* ---- spare exec dirs, logs and cgroups ---------------------------------------------- */

static int count_prefix(const char *rel, const char *prefix)
{
    char p[900];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return tu_count_prefix(p, prefix);
}

/* The worker's v1 pids sub-tree (where it keeps spare pids cgroups), if this host has one:
 * <pids mount><this process's pids cgroup>/tern/<worker id>; the worker is our child, in
 * the same cgroups. */
static bool worker_pids_dir(const char *wdir, char *out, size_t len)
{
    char p[900], id[80], cg[2100];
    snprintf(p, sizeof(p), "%s/%s", dir, wdir);
    if (!tu_worker_id(p, id, sizeof(id)) || !tu_v1_pids_cgroup(cg, sizeof(cg)))
        return false;
    int n = snprintf(out, len, "%s/tern/%s", cg, id);
    return n > 0 && (size_t)n < len;
}

/* Shell tasks that print nothing: each log keeps its name and reads empty through `tern
 * logs`; in cgroup mode they are names of one shared empty file, and an empty log's inode
 * is the next attempt's log. A task that prints keeps its own. */
Test(cluster, empty_logs_read_empty_and_in_cgroup_mode_share_one_file)
{
    start_master("5s", NULL); /* the worker stays connected through a loaded CI's pauses */
    int w1 = start_worker("w1", true, NULL, "1");
    wait_workers(1);
    uint64_t wf = start_wf("el.yaml",
                           "name: el\ntasks:\n"
                           "  - {name: a, type: shell, command: 'true'}\n"
                           "  - {name: b, type: shell, command: 'true', deps: [a]}\n"
                           "  - {name: c, type: shell, command: 'echo said', deps: [b]}\n"
                           "  - {name: d, type: shell, command: 'true', deps: [c]}\n",
                           "el");
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    const char *tnames[] = {"a", "b", "c", "d"};
    struct stat sts[4];
    for (int i = 0; i < 4; i++) {
        char *out = task_log(wf, tnames[i]);
        cr_expect_str_eq(out, i == 2 ? "said\n" : "", "task %s's log", tnames[i]);
        free(out);
        char p[1000];
        snprintf(p, sizeof(p), "%s/w1/logs/%" PRIu64 "-1.log", dir, task_id(wf, tnames[i]));
        cr_assert_eq(stat(p, &sts[i]), 0, "%s: %s", p, strerror(errno));
    }
    stop_proc(w1, SIGTERM);
    cr_assert_eq(count_prefix("w1/logs", ".spare-"), 0, "no spare log is left");
    if (!file_has("w1.log", "mode=cgroup"))
        return; /* session mode: empty logs are kept as they are */
    cr_expect_eq(sts[0].st_ino, sts[1].st_ino, "a's and b's logs: one shared empty file");
    cr_expect_gt(sts[0].st_nlink, 1);
    cr_expect_neq(sts[2].st_ino, sts[0].st_ino, "c's log is its own");
    cr_expect_eq(sts[2].st_nlink, 1);
    cr_expect_eq(sts[3].st_ino, sts[0].st_ino, "d's too is a name of the shared file");
}

/* A worker killed with SIGKILL leaves its spares (exec dirs, pids cgroups; spare logs are
 * unnamed files, but a named one may be there too); its next run removes them at start, so
 * once that run stops, nothing of either is left. */
Test(cluster, spares_of_a_killed_worker_are_removed_by_its_next_run)
{
    start_master("1500ms", NULL);
    int w1 = start_worker("w1", true, NULL, "2");
    wait_workers(1);
    uint64_t wf = start_wf("sp.yaml",
                           "name: sp\ntasks:\n"
                           "  - {name: a, type: shell, command: 'true'}\n"
                           "  - {name: b, type: shell, command: 'true'}\n",
                           "sp");
    char st[64];
    wait_final(wf, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS");
    char pids[1200], p[1300];
    bool v1 = worker_pids_dir("w1", pids, sizeof(pids)) && access(pids, F_OK) == 0;
    for (int i = 0; i < 200 && v1 && tu_count_prefix(pids, "spare-") == 0; i++)
        usleep(20000); /* made on the worker's idle turns */
    stop_proc(w1, SIGKILL);
    cr_assert_gt(count_prefix("w1/exec", ".spare-"), 0, "the killed run left spare exec dirs");
    if (v1)
        cr_assert_gt(tu_count_prefix(pids, "spare-"), 0, "and spare pids cgroups in %s", pids);
    /* and ones under names the next run will not make itself */
    snprintf(p, sizeof(p), "%s/w1/exec/.spare-99999", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/w1/exec/.spare-99999/x", dir);
    fclose(fopen(p, "w"));
    snprintf(p, sizeof(p), "%s/w1/logs/.spare-99999", dir);
    fclose(fopen(p, "w"));
    snprintf(p, sizeof(p), "%s/spare-99999", pids);
    cr_assert(!v1 || mkdir(p, 0755) == 0, "%s: %s", p, strerror(errno));

    w1 = start_worker("w1", true, NULL, "2");
    wait_file_has("w1.log", "spares of a previous run removed");
    cr_assert_neq(stop_proc_status(w1, SIGTERM), -1, "w1 stops on SIGTERM");
    cr_assert_eq(count_prefix("w1/exec", ".spare-"), 0, "no spare exec dir is left");
    cr_assert_eq(count_prefix("w1/logs", ".spare-"), 0, "no spare log is left");
    if (v1)
        cr_assert_neq(access(pids, F_OK), 0, "the pids sub-tree is gone, spares and all: %s",
                      pids);
}

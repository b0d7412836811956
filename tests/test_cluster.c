/* Integration tests: real `tern master` and `tern worker` processes on ipc:// sockets in
 * a temp dir, driven through the `tern` CLI: shell DAGs, values passed downstream, logs,
 * a kill that really kills (with and without cgroup v2), timeouts, stop, worker and
 * master crashes, and a lossy network. Every process started is ended; nothing is left. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "proto.h"
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

static void stop_proc(int i, int sig)
{
    if (procs[i] <= 0)
        return;
    kill(procs[i], sig);
    int st;
    for (int t = 0; t < 500; t++) {
        if (waitpid(procs[i], &st, WNOHANG) == procs[i]) {
            procs[i] = 0;
            return;
        }
        usleep(10000);
    }
    kill(procs[i], SIGKILL);
    waitpid(procs[i], &st, 0);
    procs[i] = 0;
}

static void teardown(void)
{
    for (int i = nprocs - 1; i >= 0; i--)
        stop_proc(i, SIGTERM);
    tu_rm_rf(dir);
    free(dir);
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

static int start_master(const char *hb_timeout, const char *faults)
{
    snprintf(murl, sizeof(murl), "ipc://%s/m.sock", dir);
    snprintf(mdata, sizeof(mdata), "%s/master", dir);
    snprintf(mctl, sizeof(mctl), "ipc://%s/m.ctl", dir);
    const char *a[] = {"master",   "--listen", murl, "--data",
                       mdata,      "--ctl",    mctl, "--heartbeat-timeout",
                       hb_timeout, NULL};
    return spawn("master", a, faults);
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
    for (int i = 0; i < 200; i++) {
        task_state(wf, "b", st, sizeof(st), &att);
        if (!strcmp(st, "RUNNING_EXECUTION"))
            break;
        usleep(50000);
    }
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
    for (int i = 0; i < 200; i++) {
        task_state(wf, "long", st, sizeof(st), &att);
        if (!strcmp(st, "RUNNING_EXECUTION"))
            break;
        usleep(50000);
    }
    cr_assert_str_eq(st, "RUNNING_EXECUTION");
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
    for (int i = 0; i < 200; i++) {
        task_state(wf, "b", st, sizeof(st), &att);
        if (!strcmp(st, "RUNNING_EXECUTION"))
            break;
        usleep(50000);
    }
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
    uint64_t epoch;     /* the worker's, from its last heartbeat */
    int accepted[4];    /* ACCEPTED per task id */
    int ended[4][4];    /* per task and attempt: 1 RESULT, 2 KILL_RESULT */
    int64_t code[4][4]; /* per task and attempt: the RESULT's exit code */
} fake_master;

static tn_err fm_msg(void *arg, tn_str sender, const tn_msg *m)
{
    (void)sender;
    fake_master *f = arg;
    pthread_mutex_lock(&f->mu);
    if (m->type == TN_MSG_HEARTBEAT)
        f->epoch = m->heartbeat.epoch;
    else if (m->type == TN_MSG_ACCEPTED && m->accepted.task < 4)
        f->accepted[m->accepted.task]++;
    else if (m->type == TN_MSG_RESULT && m->result.task < 4 && m->result.attempt < 4) {
        f->ended[m->result.task][m->result.attempt] = 1;
        f->code[m->result.task][m->result.attempt] = m->result.exit_code;
    } else if (m->type == TN_MSG_KILL_RESULT && m->kill_result.task < 4 &&
               m->kill_result.attempt < 4)
        f->ended[m->kill_result.task][m->kill_result.attempt] = 2;
    pthread_mutex_unlock(&f->mu);
    return TN_OK;
}

static void fm_recv(void *arg, const void *buf, size_t len)
{
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
     * send can die with the pipe the transport is replacing) */
    int acc2 = 0;
    for (int i = 0; i < 1000 && !acc2; i++) {
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
    } else if (m->type == TN_MSG_RECONCILE) {
        f->reconciles++;
        f->reconcile = m->reconcile.epoch;
    }
    pthread_mutex_unlock(&f->mu);
    return TN_OK;
}

static void fw_recv(void *arg, const void *buf, size_t len)
{
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
    cr_expect_eq(count_transitions("task DISPATCH DISPATCHED"), 1);
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

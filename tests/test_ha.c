/* A cluster of masters on a real ZooKeeper (tests/zkutil.h): three `tern master --zk`
 * processes, workers with --zk, the leader killed (SIGKILL), paused past its session
 * (SIGSTOP), stopped (SIGTERM) with a standby following it, a worker's session expiring;
 * and in one process, log shipping's divergence and its commit gate (core/master/ship.c),
 * and tn_ha_start's failure. Every daemon must end cleanly: one that exits with another
 * status than 0 at its SIGTERM, or whose log holds a sanitizer's report, fails the test. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* the synchronous calls of the multithreaded client, to look at the nodes */
#define THREADED
#include <zookeeper/zookeeper.h>

#include "follow.h"
#include "ha.h"
#include "proto.h"
#include "sm_gen.h"
#include "ship.h"
#include "zk.h"
#include "zkutil.h"

/* a standby's reads: control requests, tokens, the replica's store */
#include "ctl.h"
#include "logread.h"
#include "rpc.h"
#include "standby.h"
#include "token.h"

static char *dir;
static tu_zk srv;
static char hosts[256];
static pid_t procs[16];
static char pnames[16][32];
static int nprocs;

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int spawn(const char *name, const char *const *args)
{
    char log[700];
    snprintf(log, sizeof(log), "%s/%s.log", dir, name);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("TERN_LOG_LEVEL", "info", 1);
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
    snprintf(pnames[nprocs], sizeof(pnames[nprocs]), "%s", name);
    return nprocs++;
}

static int find_proc(const char *name)
{
    for (int i = 0; i < nprocs; i++)
        if (strcmp(pnames[i], name) == 0 && procs[i] > 0)
            return i;
    return -1;
}

/* Whether a daemon's log holds a sanitizer's report (ASan, UBSan, LSan, TSan). */
static bool sanitizer_report(const char *name)
{
    static const char *marks[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                  "WARNING: ThreadSanitizer",
                                  "runtime error:", "ERROR: ThreadSanitizer"};
    char p[700], line[1024];
    snprintf(p, sizeof(p), "%s/%s.log", dir, name);
    FILE *f = fopen(p, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]) && !found; i++)
            found = strstr(line, marks[i]) != NULL;
    /* then the report and the daemon's warnings, for the test's log */
    if (f && found)
        rewind(f);
    for (int shown = 0; f && found && shown < 400 && fgets(line, sizeof(line), f);)
        if (strncmp(line, "ts=", 3) != 0 || strstr(line, "level=warn") ||
            strstr(line, "level=error"))
            shown += fprintf(stderr, "%s: %s", name, line) > 0;
    if (f)
        fclose(f);
    return found;
}

/* Reap process i, waiting (a failsafe bound of two minutes) for it to exit; false when
 * it did not (it is then killed). *status: its wait status. */
static bool reap(int i, int *status)
{
    for (int k = 0; k < 1200; k++) {
        pid_t r = waitpid(procs[i], status, WNOHANG);
        if (r == procs[i] || (r < 0 && errno != EINTR)) {
            procs[i] = 0;
            return r > 0;
        }
        msleep(100);
    }
    kill(procs[i], SIGKILL);
    waitpid(procs[i], status, 0);
    procs[i] = 0;
    return false;
}

/* SIGTERM process `name` and wait for it: it must exit, with status 0, and without a
 * sanitizer's report. */
static void term_proc(const char *name)
{
    int i = find_proc(name);
    cr_assert_geq(i, 0, "no process %s", name);
    kill(procs[i], SIGCONT); /* a stopped one must see its SIGTERM */
    kill(procs[i], SIGTERM);
    int st = 0;
    cr_assert(reap(i, &st), "%s did not exit at SIGTERM (see its log)", name);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s ended with status 0x%x at SIGTERM",
              name, st);
    cr_assert_not(sanitizer_report(name), "a sanitizer reported in %s's log", name);
}

static void signal_proc(const char *name, int sig)
{
    int i = find_proc(name);
    cr_assert_geq(i, 0, "no process %s", name);
    kill(procs[i], sig);
    if (sig == SIGKILL) {
        waitpid(procs[i], NULL, 0);
        procs[i] = 0;
    }
}

/* Stop every daemon still running, each checked as term_proc does; and every log, of
 * those killed too, checked for a sanitizer's report. A failed check fails the test
 * (after all are stopped). */
static void stop_all(void)
{
    char bad[2048] = "";
    for (int i = nprocs - 1; i >= 0; i--) {
        if (procs[i] > 0) {
            kill(procs[i], SIGCONT);
            kill(procs[i], SIGTERM);
            int st = 0;
            bool exited = reap(i, &st);
            if (!exited || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                size_t o = strlen(bad);
                snprintf(bad + o, sizeof(bad) - o, " %s: %s (0x%x);", pnames[i],
                         exited ? "ended badly at SIGTERM" : "did not exit at SIGTERM", st);
            }
        }
        if (sanitizer_report(pnames[i])) {
            size_t o = strlen(bad);
            snprintf(bad + o, sizeof(bad) - o, " %s: a sanitizer's report in its log;",
                     pnames[i]);
        }
    }
    nprocs = 0;
    cr_expect_str_empty(bad, "daemons:%s", bad);
}

static void setup(void)
{
    cr_assert(tu_zk_available(), "the zookeeper package is missing: run tools/setup.sh");
    dir = tu_tmpdir();
    tu_zk_start(&srv);
    tu_zk_hosts(&srv, 1, hosts, sizeof(hosts));
}

static void teardown(void)
{
    stop_all();
    tu_zk_stop(&srv);
    if (dir)
        tu_rm_rf(dir);
    free(dir);
    dir = NULL;
}

/* A master of cluster "t"; http: its --http HOST:PORT, or NULL for none. */
static void start_master_http(const char *id, const char *sync, const char *http)
{
    char listen[700], ctl[700], data[700], ship[700];
    snprintf(listen, sizeof(listen), "ipc://%s/%s.sock", dir, id);
    snprintf(ctl, sizeof(ctl), "ipc://%s/%s.ctl", dir, id);
    snprintf(data, sizeof(data), "%s/%s", dir, id);
    snprintf(ship, sizeof(ship), "ipc://%s/%s.ship", dir, id);
    const char *a[] = {"master", "--zk",
                       hosts,    "--cluster",
                       "t",      "--id",
                       id,       "--listen",
                       listen,   "--ctl",
                       ctl,      "--data",
                       data,     "--ship",
                       ship,     "--zk-session",
                       "2s",     "--heartbeat-timeout",
                       "30s",    "--sync-standbys",
                       sync,     http ? "--http" : NULL,
                       http,     NULL};
    spawn(id, a);
}

static void start_master(const char *id, const char *sync)
{
    start_master_http(id, sync, NULL);
}

static void start_worker(const char *name)
{
    char listen[700], data[700];
    snprintf(listen, sizeof(listen), "ipc://%s/%s.sock", dir, name);
    snprintf(data, sizeof(data), "%s/%s", dir, name);
    const char *a[] = {"worker",      "--zk",     hosts,     "--cluster", "t",  "--name",
                       name,          "--listen", listen,    "--data",    data, "--no-cgroup",
                       "--heartbeat", "200ms",    "--slots", "8",         NULL};
    spawn(name, a);
}

/* A client handle on ZooKeeper, to ask who leads. */
static tn_zk *observer(void)
{
    tn_zk_opts o = {.hosts = hosts, .cluster = "t", .name = "test-observer"};
    tn_zk *z = NULL;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_zk_open(&o, &z, &em), TN_OK, "%s", em.text);
    return z;
}

/* The leader's name and epoch, waiting for one other than `not` (a failsafe bound). */
static uint64_t leader(tn_zk *z, const char * not, char *name, size_t len)
{
    for (int i = 0; i < 2400; i++) {
        uint64_t e;
        if (tn_zk_leader(z, &e, name, len, NULL, 0, NULL) == TN_OK &&
            (!not || strcmp(name, not ) != 0))
            return e;
        msleep(50);
    }
    cr_assert_fail("no leader (other than %s)", not ? not : "-");
    return 0;
}

static int tern(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tern(char **out, const char *fmt, ...)
{
    char args[2000], cmd[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s %s", tu_tern(), args);
    int st = tu_run(cmd, out, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Until the leader `who` answers on its control socket and has `n` live workers. */
static void wait_ready(const char *who, int n)
{
    for (int i = 0; i < 1200; i++) {
        char *out = NULL;
        int rc = tern(&out, "workers --json --master ipc://%s/%s.ctl", dir, who);
        int alive = 0;
        for (const char *p = out; rc == 0 && p && (p = strstr(p, "\"alive\":true")); p++)
            alive++;
        free(out);
        if (alive >= n)
            return;
        msleep(100);
    }
    cr_assert_fail("%s never had %d workers", who, n);
}

/* The state of workflow instance wf and the largest attempt count of its tasks. */
static void wf_state(const char *who, int wf, char *state, size_t len, int *max_attempts)
{
    char *out = NULL;
    state[0] = 0;
    *max_attempts = 0;
    if (tern(&out, "status %d --json --master ipc://%s/%s.ctl", wf, dir, who) == 0 && out) {
        const char *s = strstr(out, "\"state\":\"");
        if (s)
            snprintf(state, len, "%.*s", (int)strcspn(s + 9, "\""), s + 9);
        for (const char *p = out; (p = strstr(p, "\"attempts\":")); p++) {
            int a = atoi(p + 11);
            if (a > *max_attempts)
                *max_attempts = a;
        }
    }
    free(out);
}

/* For a failure's message: what `tern status wf` says to who (both streams), and the end of
 * who's log. */
static void explain(const char *who, int wf)
{
    char cmd[2600], p[700];
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof(cmd), "%s status %d --master ipc://%s/%s.ctl", tu_tern(), wf, dir,
             who);
    int st = tu_run(cmd, &out, &err);
    fprintf(stderr, "tern status %d on %s: wait status %d\nstdout: %s\nstderr: %s\n", wf, who,
            st, out ? out : "", err ? err : "");
    free(out);
    free(err);
    snprintf(p, sizeof(p), "%s/%s.log", dir, who);
    static char tail[8000];
    fprintf(stderr, "the end of %s.log:\n%s\n", who, tu_log_tail(p, tail, sizeof(tail)));
}

/* Until a task of workflow instance wf runs on its worker (the worker accepted it). */
static void wait_running(const char *who, int wf)
{
    for (int i = 0; i < 1200; i++) {
        char *out = NULL;
        bool running =
            tern(&out, "status %d --json --master ipc://%s/%s.ctl", wf, dir, who) == 0 && out &&
            strstr(out, "\"RUNNING_EXECUTION\"");
        free(out);
        if (running)
            return;
        msleep(100);
    }
    cr_assert_fail("no task of instance %d ever ran", wf);
}

/* Count the lines of DIR/runs that are `line`. */
static int runs_of(const char *line)
{
    char p[700], buf[256];
    snprintf(p, sizeof(p), "%s/runs", dir);
    FILE *f = fopen(p, "r");
    int n = 0;
    while (f && fgets(buf, sizeof(buf), f)) {
        buf[strcspn(buf, "\n")] = 0;
        n += strcmp(buf, line) == 0;
    }
    if (f)
        fclose(f);
    return n;
}

static bool file_has(const char *name, const char *what)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (!f)
        return false;
    char *buf = malloc(1 << 22);
    size_t n = fread(buf, 1, (1 << 22) - 1, f);
    buf[n] = 0;
    fclose(f);
    bool has = strstr(buf, what) != NULL;
    free(buf);
    return has;
}

/* The workflow "ha": a, then b. With gated, a runs until the file DIR/go exists (a test
 * then knows it still runs, however slow the build). */
static void apply_def_gated(const char *who, bool gated)
{
    char p[700], wait[800] = "";
    snprintf(p, sizeof(p), "%s/ha.yaml", dir);
    if (gated)
        snprintf(wait, sizeof(wait), "while [ ! -e %s/go ]; do sleep 0.1; done; ", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    /* every run of a task appends its instance, name and attempt: a task run twice shows */
    fprintf(f,
            "name: ha\n"
            "tasks:\n"
            "  - {name: a, type: shell, command: '%ssleep 1; echo \"$TERN_WORKFLOW_INSTANCE_ID "
            "a\" >> %s/runs'}\n"
            "  - {name: b, type: shell, command: 'sleep 1; echo \"$TERN_WORKFLOW_INSTANCE_ID "
            "b\" >> %s/runs', deps: [a]}\n",
            wait, dir, dir);
    fclose(f);
    cr_assert_eq(tern(NULL, "def apply %s --master ipc://%s/%s.ctl", p, dir, who), 0);
}

static void apply_def(const char *who)
{
    apply_def_gated(who, false);
}

/* Let a gated task a end. */
static void open_gate(void)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/go", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fclose(f);
}

TestSuite(ha, .init = setup, .fini = teardown, .timeout = 600);

/* The leader SIGKILLed with workflows running: a standby leads with the next epoch, every
 * submission the old leader accepted finishes, and no task runs twice. */
Test(ha, leader_sigkill_a_standby_takes_over_nothing_lost_nothing_twice)
{
    start_master("m1", "1");
    tn_zk *z = observer();
    char first[64];
    cr_assert_eq(leader(z, NULL, first, sizeof(first)), 1);
    start_master("m2", "1");
    start_master("m3", "1");
    start_worker("w1");
    wait_ready(first, 1);
    apply_def(first);
    enum {
        N = 6
    };
    /* through the leader, through ZooKeeper, and through a standby (it names the leader) */
    const char *standby = strcmp(first, "m2") ? "m2" : "m3";
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            cr_assert_eq(tern(NULL, "start ha --master ipc://%s/%s.ctl", dir, first), 0);
        else if (i % 3 == 1)
            cr_assert_eq(tern(NULL, "start ha --zk %s/t", hosts), 0);
        else
            cr_assert_eq(tern(NULL, "start ha --master ipc://%s/%s.ctl", dir, standby), 0);
    }
    msleep(1500); /* some tasks run, some wait */
    signal_proc(first, SIGKILL);
    char next[64];
    uint64_t e = leader(z, first, next, sizeof(next));
    cr_assert_eq(e, 2, "the takeover bumped the epoch");
    char st[64];
    int att = 0;
    for (int wf = 1; wf <= N; wf++) {
        for (int i = 0; i < 1200; i++) {
            wf_state(next, wf, st, sizeof(st), &att);
            if (!strcmp(st, "SUCCESS") || !strcmp(st, "FAILURE"))
                break;
            msleep(100);
        }
        cr_assert_str_eq(st, "SUCCESS", "instance %d (accepted by the old leader)", wf);
        cr_assert_eq(att, 1, "instance %d: a task was run again", wf);
        char line[64];
        snprintf(line, sizeof(line), "%d a", wf);
        cr_assert_eq(runs_of(line), 1, "%s ran %d times", line, runs_of(line));
        snprintf(line, sizeof(line), "%d b", wf);
        cr_assert_eq(runs_of(line), 1, "%s ran %d times", line, runs_of(line));
    }
    tn_zk_close(z);
    stop_all();
}

/* The leader SIGSTOPped past its session and resumed: another leads; what the old one sends
 * when it wakes is refused by the worker; it steps down and follows as a standby (its
 * unreplicated tail, if it wrote one, dropped). */
Test(ha, a_paused_leader_is_fenced_and_rejoins_as_standby)
{
    start_master("m1", "0");
    tn_zk *z = observer();
    char first[64];
    leader(z, NULL, first, sizeof(first));
    start_master("m2", "0");
    start_worker("w1");
    wait_ready(first, 1);
    apply_def(first);
    cr_assert_eq(tern(NULL, "start ha --master ipc://%s/%s.ctl", dir, first), 0);
    wait_running(first, 1);
    signal_proc(first, SIGSTOP);
    char next[64];
    uint64_t e = leader(z, first, next, sizeof(next));
    cr_assert_eq(e, 2);
    /* the worker follows the new leader (epoch 2) before the old one wakes */
    bool follows = false;
    for (int i = 0; i < 1200 && !follows; i++) {
        char *out = NULL;
        follows = tern(&out, "workers --json --master ipc://%s/%s.ctl", dir, next) == 0 &&
                  out && strstr(out, "\"master_epoch\":2") && strstr(out, "\"alive\":true");
        free(out);
        if (!follows)
            msleep(100);
    }
    cr_assert(follows, "the worker never followed the new leader");
    signal_proc(first, SIGCONT);
    char log[80];
    snprintf(log, sizeof(log), "%s.log", first);
    for (int i = 0; i < 1200 && !file_has(log, "role=standby epoch=0\n"); i++)
        msleep(100);
    cr_assert(file_has(log, "role=lost"), "the old leader learnt its session ended");
    cr_assert(file_has(log, "stepping down"));
    char st[64];
    int att = 0;
    for (int i = 0; i < 1200; i++) {
        wf_state(next, 1, st, sizeof(st), &att);
        if (!strcmp(st, "SUCCESS") || !strcmp(st, "FAILURE"))
            break;
        msleep(100);
    }
    if (strcmp(st, "SUCCESS") != 0)
        explain(next, 1);
    cr_assert_str_eq(st, "SUCCESS");
    cr_assert_eq(runs_of("1 a"), 1);
    cr_assert_eq(runs_of("1 b"), 1);
    /* the worker follows epoch 2 (what epoch 1 sends is refused: test_cluster's fencing) */
    char *out = NULL;
    cr_assert_eq(tern(&out, "workers --json --master ipc://%s/%s.ctl", dir, next), 0);
    cr_assert(strstr(out, "\"master_epoch\":2"), "%s", out);
    free(out);
    /* the old leader follows the new one: it asks for the log from past the common seq */
    char nlog[80], want[160];
    snprintf(nlog, sizeof(nlog), "%s.log", next);
    snprintf(want, sizeof(want), "standby following\" standby=%s", first);
    for (int i = 0; i < 1200 && !file_has(nlog, want); i++)
        msleep(100);
    cr_assert(file_has(nlog, want), "the old leader did not follow the new one");
    tn_zk_close(z);
    stop_all();
}

/* The test as a master of cluster "t": its reports (heartbeats, ACCEPTED, FENCED). */
typedef struct fake_leader {
    pthread_mutex_t mu;
    int heartbeats, accepted, fenced;
    uint64_t master_epoch; /* the last heartbeat's */
    char fenced_worker[300], fenced_master[300];
    uint64_t fenced_epoch, fenced_refused;
} fake_leader;

static tn_err fl_msg(void *arg, tn_str sender, const tn_msg *m)
{
    (void)sender;
    fake_leader *f = arg;
    pthread_mutex_lock(&f->mu);
    if (m->type == TN_MSG_HEARTBEAT) {
        f->heartbeats++;
        for (uint32_t i = 0; i < m->heartbeat.gauges.n; i++)
            if (tn_str_eq(m->heartbeat.gauges.v[i].key, "master_epoch"))
                f->master_epoch = m->heartbeat.gauges.v[i].val;
    } else if (m->type == TN_MSG_ACCEPTED) {
        f->accepted++;
    } else if (m->type == TN_MSG_FENCED) {
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

static void fl_recv(void *arg, const void *buf, size_t len, const tn_peer *peer)
{
    (void)peer;
    (void)tn_frame_decode(buf, len, fl_msg, arg, NULL);
}

/* A candidate "name" of cluster t whose leader record names listen=url; f takes its
 * reports there. */
static tn_zk *fl_start(fake_leader *f, const char *name, tn_tx *rx)
{
    char info[800], url[700];
    snprintf(url, sizeof(url), "ipc://%s/%s.sock", dir, name);
    snprintf(info, sizeof(info), "listen=%s", url);
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(false, NULL, fl_recv, f, rx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_listen(*rx, url, &em), TN_OK, "%s", em.text);
    tn_zk_opts o = {.hosts = hosts, .cluster = "t", .name = name, .info = info};
    tn_zk *z = NULL;
    cr_assert_eq(tn_zk_open(&o, &z, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_zk_campaign(z, 0, &em), TN_OK, "%s", em.text);
    return z;
}

static int fl_get(fake_leader *f, const int *field)
{
    pthread_mutex_lock(&f->mu);
    int v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

static uint64_t fl_epoch(fake_leader *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t v = f->master_epoch;
    pthread_mutex_unlock(&f->mu);
    return v;
}

/* Issue 14's paused leader, with the test as both masters: a leads, b takes over, and a
 * (woken up) sends the worker a DISPATCH of its old epoch. The worker refuses it and
 * answers a FENCED at the URL a's leader record gave (not b, the master it reports to);
 * the task does not run. */
Test(ha, a_deposed_leader_is_answered_fenced_at_its_own_url)
{
    fake_leader fa = {.mu = PTHREAD_MUTEX_INITIALIZER}, fb = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_tx rxa, rxb, tx;
    tn_zk *a = fl_start(&fa, "a", &rxa);
    uint64_t ea = 0;
    for (int i = 0; i < 600 && tn_zk_role_get(a, &ea) != TN_ZK_LEADER; i++)
        msleep(50);
    cr_assert_gt(ea, 0, "a does not lead");
    tn_zk *b = fl_start(&fb, "b", &rxb);
    start_worker("w1");
    for (int i = 0; i < 600 && fl_get(&fa, &fa.heartbeats) == 0; i++)
        msleep(50);
    cr_assert_gt(fl_get(&fa, &fa.heartbeats), 0, "the worker does not report to the leader");
    char wurl[700];
    snprintf(wurl, sizeof(wurl), "ipc://%s/w1.sock", dir);
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_tx_nng_new(true, NULL, NULL, NULL, &tx, &em), TN_OK, "%s", em.text);
    cr_assert_eq(tn_tx_dial(tx, wurl, &em), TN_OK, "%s", em.text);

    tn_zk_close(a); /* a's lead ends; b leads the next epoch, and the worker follows it */
    uint64_t eb = 0;
    for (int i = 0; i < 600 && tn_zk_role_get(b, &eb) != TN_ZK_LEADER; i++)
        msleep(50);
    cr_assert_eq(eb, ea + 1);
    for (int i = 0; i < 600 && fl_epoch(&fb) != eb; i++)
        msleep(50);
    cr_assert_eq(fl_epoch(&fb), eb, "the worker does not follow the new leader");

    tn_msg d = {.type = TN_MSG_DISPATCH};
    d.dispatch = (tn_msg_dispatch){.task = 1,
                                   .wf = 1,
                                   .attempt = 1,
                                   .name = TN_STR("t"),
                                   .type = TN_STR("noop"),
                                   .worker_group = TN_STR("default"),
                                   .noop_success = true};
    tn_buf buf = {0};
    tn_frame fr;
    cr_assert_eq(tn_frame_begin_epoch(&fr, &buf, "master:a", "", ea), TN_OK);
    cr_assert_eq(tn_frame_add(&fr, &d), TN_OK);
    cr_assert_eq(tn_frame_end(&fr), TN_OK);
    /* resent as a master resends, until answered (the first may race the dial) */
    for (int i = 0; i < 300 && fl_get(&fa, &fa.fenced) == 0; i++) {
        if (i % 10 == 0)
            (void)tn_tx_send(tx, buf.data, buf.size);
        msleep(50);
    }
    tn_buf_free(&buf);
    cr_assert_gt(fl_get(&fa, &fa.fenced), 0, "the deposed leader got no FENCED");
    pthread_mutex_lock(&fa.mu);
    cr_expect_str_eq(fa.fenced_worker, "w1");
    cr_expect_str_eq(fa.fenced_master, "master:a");
    cr_expect_eq(fa.fenced_epoch, eb, "the answer names the newer epoch");
    cr_expect_geq(fa.fenced_refused, 1);
    pthread_mutex_unlock(&fa.mu);
    cr_expect_eq(fl_get(&fb, &fb.fenced), 0, "the new leader was told instead");
    cr_expect_eq(fl_get(&fa, &fa.accepted) + fl_get(&fb, &fb.accepted), 0,
                 "the deposed leader's task ran");
    cr_assert(file_has("w1.log", "answered a fenced master with FENCED"));
    stop_all();
    tn_tx_free(&tx);
    tn_tx_free(&rxa);
    tn_tx_free(&rxb);
    tn_zk_close(b);
}

/* A worker whose ZooKeeper session expires is dead for the leader at once (long before the
 * 30 s heartbeat timeout): its attempt fails over. */
Test(ha, a_workers_expired_session_fails_its_attempts_over)
{
    start_master("m1", "0");
    tn_zk *z = observer();
    char first[64];
    leader(z, NULL, first, sizeof(first));
    start_worker("w1");
    wait_ready(first, 1);
    apply_def_gated(first, true);
    cr_assert_eq(tern(NULL, "start ha --master ipc://%s/%s.ctl", dir, first), 0);
    wait_running(first, 1); /* an attempt on w1 */
    signal_proc("w1", SIGSTOP);
    /* the worker's session (6 s) expires; the heartbeat timeout is 30 s */
    char log[80];
    snprintf(log, sizeof(log), "%s.log", first);
    for (int i = 0; i < 1200 && !file_has(log, "registry session ended"); i++)
        msleep(100);
    cr_assert(file_has(log, "registry session ended"), "the leader did not see it go");
    /* it is lost (and its attempts failed over, in the same step) before it wakes */
    const char *lost = "msg=\"worker lost\" worker=w1";
    for (int i = 0; i < 1200 && !file_has(log, lost); i++)
        msleep(100);
    cr_assert(file_has(log, lost), "the leader never lost w1");
    open_gate();
    signal_proc("w1", SIGCONT);
    char st[64];
    int att = 0;
    for (int i = 0; i < 1200; i++) {
        wf_state(first, 1, st, sizeof(st), &att);
        if (!strcmp(st, "SUCCESS") || !strcmp(st, "FAILURE"))
            break;
        msleep(100);
    }
    cr_assert_str_eq(st, "SUCCESS");
    cr_assert_eq(att, 2, "the attempt on the expired worker failed over");
    tn_zk_close(z);
    stop_all();
}

/* The leader stopped (SIGTERM) while a standby follows its log, with --sync-standbys 1
 * (the engine's gate holds the ship server): it exits (cleanly, at once: its stop closes
 * the ship server within a bound), and the standby leads without waiting for a session
 * timeout. */
Test(ha, a_leader_stopped_with_a_standby_following_exits_and_the_standby_leads)
{
    start_master("m1", "1");
    tn_zk *z = observer();
    char first[64];
    cr_assert_eq(leader(z, NULL, first, sizeof(first)), 1);
    start_master("m2", "0"); /* alone once it leads: it must not wait for a standby */
    char log[80], want[160];
    snprintf(log, sizeof(log), "%s.log", first);
    snprintf(want, sizeof(want), "standby following\" standby=m2");
    for (int i = 0; i < 1200 && !file_has(log, want); i++)
        msleep(100);
    cr_assert(file_has(log, want), "m2 never followed m1");
    /* a batch through the gate: it waits for m2 to hold it */
    apply_def(first);
    term_proc(first);
    char next[64];
    cr_assert_eq(leader(z, first, next, sizeof(next)), 2);
    cr_assert_str_eq(next, "m2");
    /* the definition the old leader applied is the new leader's: it starts a run of it
     * (once its control socket serves) */
    int rc = -1;
    for (int i = 0; i < 1200 && rc != 0; i++) {
        rc = tern(NULL, "start ha --master ipc://%s/m2.ctl", dir);
        if (rc != 0)
            msleep(100);
    }
    cr_assert_eq(rc, 0, "the new leader does not know the definition \"ha\"");
    tn_zk_close(z);
    stop_all();
}

/* The nodes under /tern/t/masters now. */
static int masters_in_line(void)
{
    zhandle_t *zh = zookeeper_init(hosts, NULL, 4000, NULL, NULL, 0);
    cr_assert_not_null(zh);
    for (int i = 0; i < 1200 && zoo_state(zh) != ZOO_CONNECTED_STATE; i++)
        msleep(50);
    struct String_vector v = {0};
    int rc = zoo_get_children(zh, "/tern/t/masters", 0, &v);
    int n = rc == ZOK ? v.count : rc == ZNONODE ? 0 : -1;
    deallocate_String_vector(&v);
    zookeeper_close(zh);
    cr_assert_geq(n, 0, "cannot list the masters: %s", zerror(rc));
    return n;
}

/* tn_ha_start fails when the store cannot be followed into: it returns the error and
 * leaves nothing behind (no control socket served, no node in ZooKeeper, nothing leaked:
 * the ASan build checks); the same master then starts on a good store, leads, and
 * stops. */
Test(ha, a_failed_start_leaves_nothing_behind)
{
    char data[700], ctl[800], ship[800], mdb[800];
    snprintf(data, sizeof(data), "%s/m1", dir);
    snprintf(ctl, sizeof(ctl), "ipc://%s/m1.ctl", dir);
    snprintf(ship, sizeof(ship), "ipc://%s/m1.ship", dir);
    snprintf(mdb, sizeof(mdb), "%s/data.mdb", data);
    cr_assert_eq(mkdir(data, 0700), 0);
    FILE *f = fopen(mdb, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 4096; i++)
        fputc('x', f); /* not a store */
    fclose(f);
    tn_ha_opts o = {.master = {.data_dir = data, .id = "m1", .ctl_url = ctl},
                    .zk = hosts,
                    .cluster = "t",
                    .ship_url = ship,
                    .session_ms = 4000};
    tn_ha *h = NULL;
    tn_errmsg em = {{0}};
    cr_assert_neq(tn_ha_start(&o, &h, &em), TN_OK);
    cr_assert(strstr(em.text, data), "%s", em.text);
    struct stat sb;
    cr_assert_neq(stat(ctl + 6, &sb), 0, "the standby's control socket was left served");
    cr_assert_eq(masters_in_line(), 0, "a node was left in ZooKeeper");
    /* a good store: it starts, leads, stops */
    cr_assert_eq(unlink(mdb), 0);
    cr_assert_eq(tn_ha_start(&o, &h, &em), TN_OK, "%s", em.text);
    for (int i = 0; i < 1200 && tn_ha_role(h, NULL) != TN_ZK_LEADER; i++)
        msleep(100);
    uint64_t e;
    cr_assert_eq(tn_ha_role(h, &e), TN_ZK_LEADER);
    cr_assert_eq(e, 1);
    tn_ha_stop(h);
    cr_assert_eq(masters_in_line(), 0, "the stopped master left its node");
}

/* ---- a standby's reads --------------------------------------------------------------- */

/* One HTTP request on its own connection: the status (-1 when nothing listens); the body
 * and the Location header (empty when none) into *body and loc (malloc'd body). */
static int http_req(int port, const char *method, const char *path, const char *token,
                    char **body, char *loc, size_t llen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) { /* not listening now */
        close(fd);
        *body = strdup(strerror(errno));
        loc[0] = 0;
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: 0\r\nAuthorization: Bearer %s\r\n\r\n",
                     method, path, token);
    cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) { /* Connection: close: the server closes after its answer */
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    int status = 0;
    loc[0] = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) { /* a server closing as it answered */
        *body = buf;
        return -1;
    }
    char *end = strstr(buf, "\r\n\r\n");
    cr_assert_not_null(end, "%s", buf);
    *end = 0;
    loc[0] = 0;
    const char *l = strcasestr(buf, "\r\nLocation: ");
    if (l)
        snprintf(loc, llen, "%.*s", (int)strcspn(l + 12, "\r\n"), l + 12);
    *body = strdup(end + 4);
    free(buf);
    return status;
}

/* One control request to url, as this user: its reply (free *raw after). */
static tn_ctl_rep ctl_call(const char *url, const char *cmd, uint64_t id, void **raw)
{
    tn_ctl_req r = {.cmd = tn_str_c(cmd), .id = id, .name = TN_STR("ha")};
    tn_buf b = {0};
    cr_assert_eq(tn_ctl_req_encode(&r, &b), TN_OK);
    size_t rl = 0;
    tn_errmsg em = {{0}};
    *raw = NULL;
    tn_err e = tn_rpc_call(url, b.data, b.size, 5000, raw, &rl, &em);
    tn_buf_free(&b);
    tn_ctl_rep rp = {.ok = false, .text = tn_str_c("no answer")};
    if (e == TN_OK)
        cr_assert_eq(tn_ctl_rep_decode(*raw, rl, &rp), TN_OK);
    return rp;
}

/* A token of each master's own store (a standby checks the tokens of its data dir). */
static void add_token(const char *id, char *secret)
{
    char data[700];
    tn_errmsg em = {{0}};
    snprintf(data, sizeof(data), "%s/%s/data.mdb", dir, id);
    for (int i = 0; i < 200; i++) { /* the daemon makes its store first */
        struct stat sb;
        if (stat(data, &sb) == 0)
            break;
        msleep(50);
    }
    snprintf(data, sizeof(data), "%s/%s", dir, id);
    cr_assert_eq(tn_token_add(data, "adm", TN_ROLE_ADMIN, secret, &em), TN_OK, "%s", em.text);
}

/* Until who answers as the leader on its control socket (a standby sends `workers` to
 * the leader). */
static void wait_ctl(const char *who)
{
    for (int i = 0; i < 600; i++, msleep(50))
        if (tern(NULL, "workers --master ipc://%s/%s.ctl", dir, who) == 0)
            return;
    cr_assert_fail("%s never answered on its control socket", who);
}

/* A Prometheus sample's value in text (-1 when absent). */
static double sample(const char *text, const char *series)
{
    char key[200];
    snprintf(key, sizeof(key), "\n%s ", series);
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* The state of instance 1 in a status JSON ("" when none). */
static void state_in(const char *json, char *st, size_t len)
{
    const char *s = json ? strstr(json, "\"state\":\"") : NULL;
    snprintf(st, len, "%.*s", s ? (int)strcspn(s + 9, "\"") : 0, s ? s + 9 : "");
}

/* A leader and a standby, each with an HTTP API: the standby answers reads from its
 * replica (saying so, with the leader's state once replicated), sends writes to the
 * leader (the control socket's redirect, HTTP 307 to the leader's API), and when it takes
 * over, its read servers give way to the master's on the same endpoints. */
Test(ha, a_standby_serves_reads_from_its_replica_and_redirects_writes)
{
    int p1 = tu_free_port(), p2 = tu_free_port();
    while (p2 == p1)
        p2 = tu_free_port();
    char h1[64], h2[64], t1[TN_TOKEN_LEN + 1], t2[TN_TOKEN_LEN + 1], url[800], loc[2048];
    snprintf(h1, sizeof(h1), "127.0.0.1:%d", p1);
    snprintf(h2, sizeof(h2), "127.0.0.1:%d", p2);
    start_master_http("m1", "0", h1);
    tn_zk *z = observer();
    char first[64];
    leader(z, NULL, first, sizeof(first));
    cr_assert_str_eq(first, "m1");
    start_master_http("m2", "0", h2);
    add_token("m1", t1);
    add_token("m2", t2);
    start_worker("w1");
    wait_ready("m1", 1);
    apply_def("m1");
    cr_assert_eq(tern(NULL, "start ha --master ipc://%s/m1.ctl", dir), 0);
    char st[64] = "";
    int att = 0;
    for (int i = 0; i < 600 && strcmp(st, "SUCCESS") != 0; i++, msleep(100))
        wf_state("m1", 1, st, sizeof(st), &att);
    cr_assert_str_eq(st, "SUCCESS");
    /* the control socket: status from the replica, once it has the leader's state */
    snprintf(url, sizeof(url), "ipc://%s/m2.ctl", dir);
    void *raw = NULL;
    tn_ctl_rep rp = {0};
    for (int i = 0; i < 300; i++, msleep(100)) {
        free(raw);
        rp = ctl_call(url, "status", 1, &raw);
        char json[4096];
        snprintf(json, sizeof(json), "%.*s", (int)rp.json.len, rp.json.p);
        state_in(json, st, sizeof(st));
        if (rp.ok && strcmp(st, "SUCCESS") == 0)
            break;
    }
    cr_assert(rp.ok, "%.*s", (int)rp.text.len, rp.text.p);
    cr_assert_str_eq(st, "SUCCESS", "the standby's replica has the leader's state");
    const char *tag = "{\"served_by\":\"standby\",\"standby\":\"m2\",\"log_seq\":";
    cr_assert(rp.json.len > strlen(tag) && strncmp(rp.json.p, tag, strlen(tag)) == 0, "%.*s",
              (int)rp.json.len, rp.json.p);
    cr_assert(memmem(rp.text.p, rp.text.len, "served by standby m2", 20), "%.*s",
              (int)rp.text.len, rp.text.p);
    free(raw);
    /* a write, and a read of the leader's live state: the leader's control URL */
    const char *elsewhere[] = {"start", "workers"};
    char want[800];
    snprintf(want, sizeof(want), "ipc://%s/m1.ctl", dir);
    for (size_t i = 0; i < 2; i++) {
        rp = ctl_call(url, elsewhere[i], 0, &raw);
        cr_assert(!rp.ok && rp.code == TN_CTL_REDIRECT, "%s: %.*s", elsewhere[i],
                  (int)rp.text.len, rp.text.p);
        cr_assert(tn_str_eq(rp.url, want), "%s: %.*s", elsewhere[i], (int)rp.url.len, rp.url.p);
        free(raw);
    }
    /* the CLI: the standby's read, and a write that lands on the leader */
    char *out = NULL;
    cr_assert_eq(tern(&out, "status 1 --master %s", url), 0);
    cr_assert(strstr(out, "(served by standby m2 from its replica at log seq "), "%s", out);
    free(out);
    /* HTTP: a GET from the replica, the rest to the leader */
    char *body = NULL;
    cr_assert_eq(http_req(p2, "GET", "/api/v1/instances/1", t2, &body, loc, sizeof(loc)), 200);
    cr_assert(strstr(body, "\"served_by\":\"standby\",\"standby\":\"m2\",\"log_seq\":"), "%s",
              body);
    state_in(body, st, sizeof(st));
    cr_assert_str_eq(st, "SUCCESS", "%s", body);
    free(body);
    char lurl[200];
    snprintf(lurl, sizeof(lurl), "http://%s/api/v1/instances/1/rerun", h1);
    cr_assert_eq(http_req(p2, "POST", "/api/v1/instances/1/rerun", t2, &body, loc, sizeof(loc)),
                 307, "%s", body);
    cr_assert_str_eq(loc, lurl);
    free(body);
    snprintf(lurl, sizeof(lurl), "http://%s/api/v1/workers", h1);
    cr_assert_eq(http_req(p2, "GET", "/api/v1/workers", t2, &body, loc, sizeof(loc)), 307);
    cr_assert_str_eq(loc, lurl);
    free(body);
    /* the leader's own answer is not tagged */
    cr_assert_eq(http_req(p1, "GET", "/api/v1/instances/1", t1, &body, loc, sizeof(loc)), 200);
    cr_assert(!strstr(body, "served_by"), "%s", body);
    free(body);
    /* the takeover: the standby's servers give way to the master's on the same endpoints */
    signal_proc("m1", SIGKILL);
    char next[64];
    cr_assert_eq(leader(z, "m1", next, sizeof(next)), 2);
    cr_assert_str_eq(next, "m2");
    int status = 0;
    for (int i = 0; i < 300; i++, msleep(100)) {
        status = http_req(p2, "GET", "/api/v1/instances/1", t2, &body, loc, sizeof(loc));
        bool lead = status == 200 && !strstr(body, "served_by");
        free(body);
        if (lead)
            break;
    }
    cr_assert_eq(status, 200);
    cr_assert_eq(tern(NULL, "status 1 --master %s", url), 0);
    cr_assert(!file_has("m2.log", "cannot lead"), "the master did not start on m2");
    tn_zk_close(z);
}

/* A standby whose leader runs no HTTP API cannot send a write anywhere: 503, said in
 * JSON; its reads are still its own. */
Test(ha, a_standby_with_no_leader_api_answers_writes_503)
{
    int p2 = tu_free_port();
    char h2[64], t2[TN_TOKEN_LEN + 1], loc[2048];
    snprintf(h2, sizeof(h2), "127.0.0.1:%d", p2);
    start_master("m1", "0");
    tn_zk *z = observer();
    char first[64];
    leader(z, NULL, first, sizeof(first));
    start_master_http("m2", "0", h2);
    add_token("m2", t2);
    wait_ctl("m1");
    apply_def("m1");
    char *body = NULL;
    int st = 0;
    for (int i = 0; i < 300; i++, msleep(100)) { /* until the standby's API is up */
        st = http_req(p2, "GET", "/api/v1/definitions", t2, &body, loc, sizeof(loc));
        bool has = st == 200 && strstr(body, "\"ha\"");
        free(body);
        if (has)
            break;
    }
    cr_assert_eq(st, 200, "the standby answers a read from its replica");
    st = http_req(p2, "POST", "/api/v1/instances/1/pause", t2, &body, loc, sizeof(loc));
    cr_assert_eq(st, 503, "%s", body);
    cr_assert_str_eq(loc, "");
    cr_assert(strstr(body, "\"code\":\"unavailable\"") && strstr(body, "no leader's HTTP API"),
              "%s", body);
    free(body);
    tn_zk_close(z);
}

/* /metrics: each master's role and last seq; the standby's lag behind the leader, the
 * leader's connected and synced standbys. */
Test(ha, the_ha_gauges_say_roles_lag_and_standbys)
{
    int p1 = tu_free_port(), p2 = tu_free_port();
    while (p2 == p1)
        p2 = tu_free_port();
    char h1[64], h2[64], loc[2048], t[TN_TOKEN_LEN + 1] = "x";
    snprintf(h1, sizeof(h1), "127.0.0.1:%d", p1);
    snprintf(h2, sizeof(h2), "127.0.0.1:%d", p2);
    start_master_http("m1", "0", h1);
    tn_zk *z = observer();
    char first[64];
    leader(z, NULL, first, sizeof(first));
    start_master_http("m2", "0", h2);
    wait_ctl("m1");
    apply_def("m1");
    char *lm = NULL, *sm = NULL;
    bool ok = false;
    for (int i = 0; i < 300 && !ok; i++, msleep(100)) {
        free(lm);
        free(sm);
        lm = sm = NULL;
        if (http_req(p1, "GET", "/metrics", t, &lm, loc, sizeof(loc)) != 200 ||
            http_req(p2, "GET", "/metrics", t, &sm, loc, sizeof(loc)) != 200)
            continue;
        ok = sample(lm, "tern_ha_standbys{state=\"synced\"}") == 1 &&
             sample(sm, "tern_ha_last_seq") == sample(lm, "tern_ha_last_seq");
    }
    cr_assert(ok, "leader:\n%s\nstandby:\n%s", lm, sm);
    cr_assert_eq(sample(lm, "tern_ha_role{role=\"leader\"}"), 1);
    cr_assert_eq(sample(lm, "tern_ha_role{role=\"standby\"}"), 0);
    cr_assert_eq(sample(lm, "tern_ha_standbys{state=\"connected\"}"), 1);
    cr_assert_eq(sample(lm, "tern_ha_leader_seq"), -1, "a leader follows nobody");
    cr_assert_gt(sample(lm, "tern_ha_last_seq"), 0, "the definition is in the log");
    cr_assert_eq(sample(sm, "tern_ha_role{role=\"standby\"}"), 1);
    cr_assert_eq(sample(sm, "tern_ha_role{role=\"leader\"}"), 0);
    cr_assert_eq(sample(sm, "tern_ha_leader_seq"), sample(lm, "tern_ha_last_seq"));
    cr_assert_eq(sample(sm, "tern_ha_replication_lag_events"), 0);
    cr_assert_eq(sample(sm, "tern_ha_standbys{state=\"connected\"}"), -1);
    free(lm);
    free(sm);
    tn_zk_close(z);
}

/* A cluster's master cannot advertise an API on a port the kernel picks. */
Test(ha, a_cluster_master_refuses_http_port_0)
{
    char cmd[2000], *err = NULL;
    snprintf(cmd, sizeof(cmd),
             "%s master --zk %s --cluster t --id m1 --listen ipc://%s/m1.sock --data %s/m1 "
             "--http 127.0.0.1:0",
             tu_tern(), hosts, dir, dir);
    int st = tu_run(cmd, NULL, &err);
    cr_assert_eq(st, 2, "%s", err);
    cr_assert(strstr(err, "--http \"127.0.0.1:0\"") && strstr(err, "fixed port"), "%s", err);
    free(err);
}

/* ---- in one process: log shipping ------------------------------------------------------ */

static uint64_t add_run(tn_evlog *l, const char *actor)
{
    uint64_t wf = tn_evlog_new_wf_id(l);
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0);
    ev.actor = tn_str_c(actor);
    cr_assert_eq(tn_evlog_add(l, &ev, NULL), TN_OK);
    cr_assert_eq(tn_evlog_commit(l, NULL), TN_OK);
    return wf;
}

static bool ship_url(void *arg, char *url, size_t len)
{
    snprintf(url, len, "%s", (const char *)arg);
    return true;
}

TestSuite(ship, .timeout = 120);

/* A follower whose log went further than the leader's (it led, and wrote events never
 * shipped) finds the common seq by the chain, keeps its log up to there, sets the rest
 * aside, and follows: its log becomes the leader's. */
Test(ship, a_diverged_follower_drops_its_tail_and_follows)
{
    char *d = tu_tmpdir(), ld[700], fd[700], url[800];
    snprintf(ld, sizeof(ld), "%s/leader", d);
    snprintf(fd, sizeof(fd), "%s/follower", d);
    snprintf(url, sizeof(url), "ipc://%s/ship", d);
    tn_evlog *lead, *fol;
    tn_evlog_opts lo = {.create = true}, fo = {.create = true, .follower = true};
    cr_assert_eq(tn_evlog_open(ld, &lo, &lead, NULL), TN_OK);
    cr_assert_eq(tn_evlog_open(fd, &fo, &fol, NULL), TN_OK);
    add_run(lead, "user:a");
    /* the follower takes the leader's log so far, by hand */
    tn_buf b = {0};
    uint32_t n, added;
    uint64_t last;
    cr_assert_eq(tn_follow_read(tn_evlog_store(lead), 1, 100, 1 << 20, &b, &n, &last, NULL),
                 TN_OK);
    cr_assert_eq(tn_evlog_follow_batch(fol, b.data, b.size, &added, NULL), TN_OK);
    tn_buf_free(&b);
    uint64_t common = tn_evlog_last_seq(fol);
    /* then each writes its own: the follower's three are the unreplicated tail */
    for (int i = 0; i < 3; i++)
        add_run(fol, "user:old-leader");
    for (int i = 0; i < 5; i++)
        add_run(lead, "user:new-leader");
    tn_evlog_close(fol);
    tn_ship *s;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_ship_serve(url, NULL, false, lead, 0, &s, &em), TN_OK, "%s", em.text);
    tn_follower *f;
    tn_follower_opts o = {.name = "old", .data_dir = fd, .leader_url = ship_url, .arg = url};
    cr_assert_eq(tn_follower_start(&o, &f, &em), TN_OK, "%s", em.text);
    for (int i = 0; i < 600 && tn_follower_seq(f) != tn_evlog_last_seq(lead); i++)
        msleep(20);
    cr_assert_eq(tn_follower_seq(f), tn_evlog_last_seq(lead));
    uint64_t seq = tn_follower_stop(f);
    cr_assert_eq(seq, tn_evlog_last_seq(lead));
    /* the same log now: same head */
    cr_assert_eq(tn_evlog_open(fd, &fo, &fol, NULL), TN_OK);
    uint8_t h1[TN_HASH_LEN], h2[TN_HASH_LEN];
    cr_assert_eq(tn_evlog_head_hash(fol, h1), TN_OK);
    cr_assert_eq(tn_evlog_head_hash(lead, h2), TN_OK);
    cr_assert(memcmp(h1, h2, TN_HASH_LEN) == 0);
    tn_evlog_close(fol);
    /* the dropped tail is kept aside for the operator, named by the first seq dropped */
    char aside[800];
    snprintf(aside, sizeof(aside), "%s/diverged-%llu.mdb", fd, (unsigned long long)common + 1);
    struct stat sb;
    cr_assert_eq(stat(aside, &sb), 0, "%s", aside);
    tn_ship_free(s);
    tn_evlog_close(lead);
    tu_rm_rf(d);
    free(d);
}

typedef struct gate_ctx {
    tn_ship *s;
    uint64_t seq;
    atomic_bool done;
} gate_ctx;

static void *gate_thread(void *arg)
{
    gate_ctx *g = arg;
    tn_ship_gate(g->s, g->seq);
    atomic_store(&g->done, true);
    return NULL;
}

/* --sync-standbys 1: the gate holds a batch's effects until a standby asked past it (that
 * is, holds it durably); it lets them go once it did. */
Test(ship, the_gate_waits_for_a_standby_to_hold_the_batch)
{
    char *d = tu_tmpdir(), ld[700], fd[700], url[800];
    snprintf(ld, sizeof(ld), "%s/leader", d);
    snprintf(fd, sizeof(fd), "%s/follower", d);
    snprintf(url, sizeof(url), "ipc://%s/ship", d);
    tn_evlog *lead;
    tn_evlog_opts lo = {.create = true};
    cr_assert_eq(tn_evlog_open(ld, &lo, &lead, NULL), TN_OK);
    add_run(lead, "user:a");
    tn_ship *s;
    cr_assert_eq(tn_ship_serve(url, NULL, false, lead, 1, &s, NULL), TN_OK);
    gate_ctx g = {s, tn_evlog_last_seq(lead), false};
    pthread_t th;
    pthread_create(&th, NULL, gate_thread, &g);
    msleep(300);
    cr_assert(!atomic_load(&g.done), "the gate opened with no standby");
    uint32_t holding;
    cr_assert_eq(tn_ship_standbys(s, g.seq, &holding), 0);
    tn_follower *f;
    tn_follower_opts o = {.name = "sb", .data_dir = fd, .leader_url = ship_url, .arg = url};
    cr_assert_eq(tn_follower_start(&o, &f, NULL), TN_OK);
    pthread_join(th, NULL); /* returns once the standby asked past g.seq */
    cr_assert_geq(tn_follower_seq(f), g.seq, "the gate opened before the standby held it");
    cr_assert_eq(tn_ship_standbys(s, g.seq, &holding), 1);
    cr_assert_eq(holding, 1);
    tn_follower_stop(f);
    tn_ship_free(s);
    tn_evlog_close(lead);
    tu_rm_rf(d);
    free(d);
}

typedef struct held_ctx {
    const char *url;
    atomic_bool go; /* the leader is known (leader_url answers) */
    tn_follower *f;
    atomic_bool stopped;
} held_ctx;

static bool held_url(void *arg, char *url, size_t len)
{
    held_ctx *h = arg;
    if (!atomic_load(&h->go))
        return false;
    snprintf(url, len, "%s", h->url);
    return true;
}

static void *stop_thread(void *arg)
{
    held_ctx *h = arg;
    tn_follower_stop(h->f);
    atomic_store(&h->stopped, true);
    return NULL;
}

/* A standby's read holds its replica: a takeover (tn_follower_stop) waits for the read to
 * end before it closes the store, refuses new holds meanwhile, and the store reads on. */
Test(ship, a_held_replica_outlives_a_takeover_until_released)
{
    char *d = tu_tmpdir(), fd[700];
    snprintf(fd, sizeof(fd), "%s/follower", d);
    tn_evlog *l;
    tn_evlog_opts fo = {.create = true, .follower = true};
    cr_assert_eq(tn_evlog_open(fd, &fo, &l, NULL), TN_OK);
    uint64_t wf = add_run(l, "user:a"), last = tn_evlog_last_seq(l);
    tn_evlog_close(l);
    held_ctx h = {.url = "none"};
    tn_follower_opts o = {.name = "sb", .data_dir = fd, .leader_url = held_url, .arg = &h};
    cr_assert_eq(tn_follower_start(&o, &h.f, NULL), TN_OK);
    uint64_t seq = 0;
    tn_evlog *held = tn_follower_hold(h.f, &seq);
    cr_assert_not_null(held);
    cr_assert_eq(seq, last);
    pthread_t th;
    pthread_create(&th, NULL, stop_thread, &h);
    bool refused = false;
    for (int i = 0; i < 500 && !refused; i++) { /* the stop began: no new hold */
        tn_evlog *again = tn_follower_hold(h.f, NULL);
        refused = again == NULL;
        if (again)
            tn_follower_release(h.f);
        msleep(10);
    }
    cr_assert(refused, "a stopping follower gave a new hold");
    msleep(200);
    cr_assert(!atomic_load(&h.stopped), "the store closed under a read");
    tn_wf_proj w;
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(held), wf, &w), TN_OK);
    cr_assert_eq(w.id, wf);
    tn_follower_release(h.f);
    pthread_join(th, NULL);
    cr_assert(atomic_load(&h.stopped));
    tu_rm_rf(d);
    free(d);
}

/* A rejoin that replaces a diverged replica waits for the read that holds the old one:
 * the old store is neither set aside nor closed until it is released; then the follower
 * rebuilds, follows, and a new hold reads the leader's log. */
Test(ship, a_held_replica_outlives_its_replacement_until_released)
{
    char *d = tu_tmpdir(), ld[700], fd[700], url[800], aside[800], rebuilt[800];
    snprintf(ld, sizeof(ld), "%s/leader", d);
    snprintf(fd, sizeof(fd), "%s/follower", d);
    snprintf(url, sizeof(url), "ipc://%s/ship", d);
    tn_evlog *lead, *fol;
    tn_evlog_opts lo = {.create = true}, fo = {.create = true, .follower = true};
    cr_assert_eq(tn_evlog_open(ld, &lo, &lead, NULL), TN_OK);
    cr_assert_eq(tn_evlog_open(fd, &fo, &fol, NULL), TN_OK);
    add_run(lead, "user:a");
    tn_buf b = {0};
    uint32_t n, added;
    uint64_t last;
    cr_assert_eq(tn_follow_read(tn_evlog_store(lead), 1, 100, 1 << 20, &b, &n, &last, NULL),
                 TN_OK);
    cr_assert_eq(tn_evlog_follow_batch(fol, b.data, b.size, &added, NULL), TN_OK);
    tn_buf_free(&b);
    uint64_t common = tn_evlog_last_seq(fol);
    uint64_t tail = add_run(fol, "user:old-leader"); /* only the follower has it */
    uint64_t newest = 0;
    for (int i = 0; i < 3; i++)
        newest = add_run(lead, "user:new-leader");
    tn_evlog_close(fol);
    snprintf(aside, sizeof(aside), "%s/diverged-%llu.mdb", fd, (unsigned long long)common + 1);
    snprintf(rebuilt, sizeof(rebuilt), "%s/.rebuild/data.mdb", fd);
    tn_ship *s;
    cr_assert_eq(tn_ship_serve(url, NULL, false, lead, 0, &s, NULL), TN_OK);
    held_ctx h = {.url = url};
    tn_follower_opts o = {.name = "old", .data_dir = fd, .leader_url = held_url, .arg = &h};
    cr_assert_eq(tn_follower_start(&o, &h.f, NULL), TN_OK);
    tn_evlog *held = tn_follower_hold(h.f, NULL);
    cr_assert_not_null(held);
    atomic_store(&h.go, true); /* it pulls, finds the divergence, rebuilds, waits for us */
    struct stat sb;
    for (int i = 0; i < 500 && stat(rebuilt, &sb) != 0; i++)
        msleep(10);
    msleep(300);
    cr_assert_neq(stat(aside, &sb), 0, "the held store was set aside under a read");
    tn_wf_proj w;
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(held), tail, &w), TN_OK,
                 "the held store reads on");
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(held), newest, &w), TN_ERR_NOENT,
                 "the held store is the old one");
    tn_follower_release(h.f);
    for (int i = 0; i < 600 && tn_follower_seq(h.f) != tn_evlog_last_seq(lead); i++)
        msleep(20);
    cr_assert_eq(tn_follower_seq(h.f), tn_evlog_last_seq(lead));
    cr_assert_eq(stat(aside, &sb), 0, "%s", aside);
    uint64_t seq = 0;
    held = tn_follower_hold(h.f, &seq);
    cr_assert_not_null(held);
    cr_assert_eq(seq, tn_evlog_last_seq(lead));
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(held), newest, &w), TN_OK,
                 "the new replica is the leader's log");
    tn_follower_release(h.f);
    tn_follower_stop(h.f);
    tn_ship_free(s);
    tn_evlog_close(lead);
    tu_rm_rf(d);
    free(d);
}

/* Where a reply came from: a JSON object gets the standby's members first (an empty one
 * included, without a stray comma), other JSON stays as it is, the text gets a last line. */
Test(ship, a_standby_reply_is_tagged_with_its_name_and_seq)
{
    const char *in[] = {"{\"a\":1}", "{ \n}", "[1,2]", ""};
    const char *want[] = {
        "{\"served_by\":\"standby\",\"standby\":\"m\\\"2\",\"log_seq\":7,\"a\":1}",
        "{\"served_by\":\"standby\",\"standby\":\"m\\\"2\",\"log_seq\":7}", "[1,2]", ""};
    for (size_t i = 0; i < 4; i++) {
        tn_ctl_result o = {0};
        tn_sb_printf(&o.json, "%s", in[i]);
        tn_sb_printf(&o.text, "%s", i % 2 ? "line\n" : "line");
        tn_standby_tag(&o, "m\"2", 7);
        cr_assert_str_eq(o.json.s ? o.json.s : "", want[i]);
        cr_assert_str_eq(o.text.s,
                         "line\n(served by standby m\"2 from its replica at log seq 7: the "
                         "leader may be ahead)\n");
        tn_ctl_result_free(&o);
    }
}

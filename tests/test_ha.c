/* A cluster of masters on a real ZooKeeper (tests/zkutil.h): three `tern master --zk`
 * processes, workers with --zk, the leader killed (SIGKILL), paused past its session
 * (SIGSTOP), a worker's session expiring; and in one process, log shipping's divergence
 * and its commit gate (core/master/ship.c). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "follow.h"
#include "proto.h"
#include "sm_gen.h"
#include "ship.h"
#include "zk.h"
#include "zkutil.h"

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

static void stop_all(void)
{
    for (int i = nprocs - 1; i >= 0; i--) {
        if (procs[i] <= 0)
            continue;
        kill(procs[i], SIGCONT);
        kill(procs[i], SIGTERM);
        int st;
        for (int k = 0; k < 100 && waitpid(procs[i], &st, WNOHANG) == 0; k++)
            msleep(100);
        if (waitpid(procs[i], &st, WNOHANG) == 0) {
            kill(procs[i], SIGKILL);
            waitpid(procs[i], NULL, 0);
        }
        procs[i] = 0;
    }
    nprocs = 0;
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

static void start_master(const char *id, const char *sync)
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
                       sync,     NULL};
    spawn(id, a);
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
    for (int i = 0; i < 600; i++) {
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
    for (int i = 0; i < 600; i++) {
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

static void apply_def(const char *who)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/ha.yaml", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    /* every run of a task appends its instance, name and attempt: a task run twice shows */
    fprintf(f,
            "name: ha\n"
            "tasks:\n"
            "  - {name: a, type: shell, command: 'sleep 1; echo \"$TERN_WORKFLOW_INSTANCE_ID "
            "a\" >> %s/runs'}\n"
            "  - {name: b, type: shell, command: 'sleep 1; echo \"$TERN_WORKFLOW_INSTANCE_ID "
            "b\" >> %s/runs', deps: [a]}\n",
            dir, dir);
    fclose(f);
    cr_assert_eq(tern(NULL, "def apply %s --master ipc://%s/%s.ctl", p, dir, who), 0);
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
        for (int i = 0; i < 600; i++) {
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
    msleep(500);
    signal_proc(first, SIGSTOP);
    char next[64];
    uint64_t e = leader(z, first, next, sizeof(next));
    cr_assert_eq(e, 2);
    msleep(3000); /* the worker follows the new leader (epoch 2) */
    signal_proc(first, SIGCONT);
    char log[80];
    snprintf(log, sizeof(log), "%s.log", first);
    for (int i = 0; i < 300 && !file_has(log, "role=standby epoch=0\n"); i++)
        msleep(100);
    cr_assert(file_has(log, "role=lost"), "the old leader learnt its session ended");
    cr_assert(file_has(log, "stepping down"));
    char st[64];
    int att = 0;
    for (int i = 0; i < 600; i++) {
        wf_state(next, 1, st, sizeof(st), &att);
        if (!strcmp(st, "SUCCESS") || !strcmp(st, "FAILURE"))
            break;
        msleep(100);
    }
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
    for (int i = 0; i < 300 && !file_has(nlog, want); i++)
        msleep(100);
    cr_assert(file_has(nlog, want), "the old leader did not follow the new one");
    tn_zk_close(z);
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
    apply_def(first);
    cr_assert_eq(tern(NULL, "start ha --master ipc://%s/%s.ctl", dir, first), 0);
    msleep(500);
    signal_proc("w1", SIGSTOP);
    /* the worker's session (6 s) expires; the heartbeat timeout is 30 s */
    char log[80];
    snprintf(log, sizeof(log), "%s.log", first);
    for (int i = 0; i < 200 && !file_has(log, "registry session ended"); i++)
        msleep(100);
    cr_assert(file_has(log, "registry session ended"), "the leader did not see it go");
    for (int i = 0; i < 50 && !file_has(log, "its worker's registry session ended"); i++)
        msleep(100);
    signal_proc("w1", SIGCONT);
    char st[64];
    int att = 0;
    for (int i = 0; i < 600; i++) {
        wf_state(first, 1, st, sizeof(st), &att);
        if (!strcmp(st, "SUCCESS") || !strcmp(st, "FAILURE"))
            break;
        msleep(100);
    }
    cr_assert_str_eq(st, "SUCCESS");
    cr_assert_eq(att, 2, "the attempt on the expired worker failed over");
    tn_zk_close(z);
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

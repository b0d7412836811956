/* `tern chaos failover`: three masters with --zk (one synchronous standby) on a three-member
 * ZooKeeper ensemble (zkens.h), two workers on lossy links (TERN_FAULTS), a schedule that
 * fires every two seconds and starts through ZooKeeper, while the seed draws the faults:
 * the leader SIGKILLed and restarted, the leader SIGSTOPped past its session and resumed,
 * a ZooKeeper member (now and then two: the quorum lost for a moment) killed and
 * restarted, a worker SIGKILLed and restarted. Then everything heals and (focheck.h):
 *   1. every start the cluster accepted finished SUCCESS;
 *   2. no task attempt started twice;
 *   3. replay of the last leader's log: legal transitions, intact chain;
 *   4. every master's log is identical to the longest where they overlap;
 *   5. every accepted start is SUBMITted exactly once in the last leader's log;
 *   6. the schedule decided each of its nominal times exactly once there (schedcheck.h);
 *   7. no worker took an older leader's frames after a newer one's;
 *   8. every daemon exits within its stop budget (else its stacks, by gdb, are kept). */
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"
#include "cli.h"
#include "focheck.h"
#include "hacluster.h"
#include "logread.h"
#include "schedcheck.h"
#include "store.h"
#include "util.h"
#include "zkens.h"

#define MAX_STARTS     512
#define STOP_BUDGET_MS 30000
#define NMASTERS       3

static const char *const masters[NMASTERS] = {"m1", "m2", "m3"};
static const char *const workers[2] = {"w1", "w2"};

typedef struct fo_run {
    tn_hac h;
    zkens z;
    uint64_t rng, seed;
    char zk[160], net[160];
    uint64_t ids[MAX_STARTS];
    int nids, violations;
    unsigned spawns;
    int64_t sched_end_ns;
    /* what was injected, and what the cluster did */
    unsigned leader_kills, leader_pauses, zk_kills, quorum_losses, worker_kills;
    uint64_t step_downs, takeovers, refused, switches, submits, runs;
    double takeover_max_ms; /* the slowest takeover (the masters' "leading" lines) */
} fo_run;

static uint64_t next_rand(fo_run *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return f->rng;
}

static void fo_viol(fo_run *f, int inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fo_viol(fo_run *f, int inv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("violation %d: ", inv);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    f->violations++;
}

/* Each daemon sends through the fault wrapper with a seed of its own. */
static void set_faults(fo_run *f)
{
    char v[220];
    snprintf(v, sizeof(v), "seed=%" PRIu64 ",%s", f->seed * 100 + ++f->spawns, f->net);
    setenv("TERN_FAULTS", v, 1);
}

static void master_up(fo_run *f, const char *id)
{
    set_faults(f);
    tn_hac_master_up(&f->h, id, "c", "1");
}

static void worker_up(fo_run *f, const char *name)
{
    set_faults(f);
    tn_hac_worker_up(&f->h, name, "c", NULL);
}

static void fo_def(fo_run *f)
{
    char p[700], args[1600];
    snprintf(p, sizeof(p), "%s/fo.yaml", f->h.dir);
    FILE *fp = fopen(p, "w");
    if (!fp)
        return;
    /* each attempt says so when it starts: an attempt run twice shows twice */
    fprintf(fp,
            "name: fo\ntasks:\n"
            "  - {name: a, type: shell, command: 'echo \"$TERN_WORKFLOW_INSTANCE_ID a "
            "$TERN_TASK_ATTEMPT\" >> %s/runs; sleep 0.5'}\n"
            "  - {name: b, type: shell, command: 'echo \"$TERN_WORKFLOW_INSTANCE_ID b "
            "$TERN_TASK_ATTEMPT\" >> %s/runs; sleep 0.5', deps: [a]}\n",
            f->h.dir, f->h.dir);
    fclose(fp);
    snprintf(args, sizeof(args), "def apply %s --zk %s", p, f->zk);
    for (int i = 0; i < 100; i++) {
        char *out = tn_hac_tern(&f->h, args);
        free(out);
        if (out)
            return;
        tn_hac_sleep(100);
    }
}

/* A schedule of fo every two seconds up to the end of the window (a whole even second):
 * every nominal time until then must be decided exactly once. */
static void fo_schedule(fo_run *f, int64_t duration_ms)
{
    int64_t end_s = (tn_now_ns() / 1000000000LL + duration_ms / 1000) / 2 * 2;
    time_t t = (time_t)end_s;
    struct tm tm;
    char iso[40], args[1200];
    gmtime_r(&t, &tm);
    strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(args, sizeof(args),
             "schedule set fo --cron '*/2 * * * * ?' --end %s --catchup 60s --zk %s", iso,
             f->zk);
    for (int i = 0; i < 100; i++) {
        char *out = tn_hac_tern(&f->h, args);
        free(out);
        if (out) {
            f->sched_end_ns = end_s * 1000000000LL;
            return;
        }
        tn_hac_sleep(100);
    }
    printf("chaos failover: the schedule could not be set (tern %s)\n", args);
}

static void fo_start(fo_run *f)
{
    char args[300];
    snprintf(args, sizeof(args), "start fo --json --zk %s", f->zk);
    char *out = tn_hac_tern(&f->h, args);
    const char *id = out ? strstr(out, "\"id\":") : NULL;
    if (id && f->nids < MAX_STARTS)
        f->ids[f->nids++] = strtoull(id + 5, NULL, 10);
    free(out);
}

/* Starts while a fault lasts: ms of them. */
static void busy_sleep(fo_run *f, long ms)
{
    for (long t = 0; t < ms; t += 500) {
        fo_start(f);
        tn_hac_sleep(500);
    }
}

/* A ZooKeeper member killed and restarted; now and then a second one for a moment (the
 * quorum lost, for less than a session). */
static void fo_zk_fault(fo_run *f)
{
    int i = (int)(next_rand(f) % ZKENS_N);
    bool two = next_rand(f) % 4 == 0;
    fprintf(stderr, "chaos failover: SIGKILL ZooKeeper member %d%s\n", i + 1,
            two ? " and another one for 1.5s" : "");
    zkens_kill(&f->z, i);
    f->zk_kills++;
    if (two) {
        int k = (i + 1 + (int)(next_rand(f) % 2)) % ZKENS_N;
        zkens_kill(&f->z, k);
        f->zk_kills++;
        f->quorum_losses++;
        tn_hac_sleep(1500);
        zkens_restart(&f->z, k);
    }
    busy_sleep(f, 1000 + (long)(next_rand(f) % 3000));
    zkens_restart(&f->z, i);
}

/* One fault, drawn; it heals before returning (the cluster keeps three masters). */
static void fo_fault(fo_run *f)
{
    char lead[64];
    unsigned k = (unsigned)(next_rand(f) % 4);
    if (k == 2) {
        fo_zk_fault(f);
        return;
    }
    if (k == 3) {
        const char *w = workers[next_rand(f) % 2];
        fprintf(stderr, "chaos failover: SIGKILL worker %s\n", w);
        tn_hac_down(&f->h, w, SIGKILL);
        f->worker_kills++;
        busy_sleep(f, 1000);
        worker_up(f, w);
        return;
    }
    if (!tn_hac_leader(&f->h, "c", NULL, lead, sizeof(lead)))
        return;
    if (k == 0) {
        fprintf(stderr, "chaos failover: SIGKILL leader %s\n", lead);
        tn_hac_down(&f->h, lead, SIGKILL);
        f->leader_kills++;
        busy_sleep(f, 1000);
        master_up(f, lead);
    } else {
        fprintf(stderr, "chaos failover: SIGSTOP leader %s for 4s\n", lead);
        tn_hac_down(&f->h, lead, SIGSTOP);
        f->leader_pauses++;
        busy_sleep(f, 4000); /* twice the session */
        tn_hac_down(&f->h, lead, SIGCONT);
    }
}

/* ---- the end checks ---------------------------------------------------------------------- */

static void on_runs(void *ctx, const char *what)
{
    fo_viol(ctx, 2, "%s", what);
}

static void on_logs(void *ctx, const char *what)
{
    fo_viol(ctx, 4, "%s", what);
}

static void on_submits(void *ctx, const char *what)
{
    fo_viol(ctx, 5, "%s", what);
}

static void on_epochs(void *ctx, const char *what)
{
    fo_viol(ctx, 7, "%s", what);
}

/* Invariant 1: each accepted instance reaches SUCCESS (a failsafe bound of 120 s). */
static void fo_check_done(fo_run *f)
{
    int64_t settle_end = tn_mono_ns() + 120000000000LL; /* the whole settle: 120 s */
    for (int i = 0; i < f->nids; i++) {
        char args[300];
        const char *want = "\"name\":\"fo\",\"state\":\"SUCCESS\"";
        snprintf(args, sizeof(args), "status %" PRIu64 " --json --zk %s", f->ids[i], f->zk);
        char *out = NULL;
        for (;;) {
            free(out);
            out = tn_hac_tern(&f->h, args);
            if ((out && strstr(out, want)) || tn_mono_ns() > settle_end)
                break;
            tn_hac_sleep(100);
        }
        if (!out || !strstr(out, want))
            fo_viol(f, 1, "instance %" PRIu64 " (accepted) did not succeed: %s", f->ids[i],
                    out ? out : "(no status)");
        free(out);
    }
}

/* A whole file, NUL-terminated (malloc'd), or NULL. */
static char *slurp(const char *dir, const char *name)
{
    char p[800];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *fp = fopen(p, "re");
    if (!fp)
        return NULL;
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + n, 1, cap - n - 1, fp)) > 0)
        if ((n += r) + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
    fclose(fp);
    if (b)
        b[n] = 0;
    return b;
}

static uint64_t count_of(const char *text, const char *what)
{
    uint64_t n = 0;
    for (const char *p = text; p && (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* Every event of a master's store: its digest into lg (malloc'd); the last leader's also
 * into the submissions counter and the schedule check. */
static void read_log(fo_run *f, const char *id, chaos_fo_log *lg, chaos_fo_submits *sub,
                     chaos_schedchk *sc)
{
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/%s", f->h.dir, id);
    *lg = (chaos_fo_log){.name = id, .first = 1};
    tn_store *s = NULL;
    tn_rtxn *t;
    tn_cursor *cur;
    tn_errmsg m = {{0}};
    if (tn_log_open_read(dir, &s, &m) != TN_OK) {
        fo_viol(f, 4, "%s's log cannot be read: %s", id, m.text);
        return;
    }
    if (tn_store_read_begin(s, &t) == TN_OK) {
        if (tn_cursor_open(t, TN_DB_EVENTS, &cur) == TN_OK) {
            uint64_t *d = NULL;
            size_t cap = 0;
            tn_event *ev = malloc(sizeof(*ev));
            tn_val k, v;
            for (tn_err e = tn_cursor_first(cur, &k, &v); ev && e == TN_OK;
                 e = tn_cursor_next(cur, &k, &v)) {
                if (tn_event_decode(v.data, v.len, ev) != TN_OK)
                    continue;
                if (lg->n == 0)
                    lg->first = ev->seq;
                if (lg->n == cap) {
                    cap = cap ? cap * 2 : 4096;
                    uint64_t *nd = realloc(d, cap * sizeof(*nd));
                    if (!nd)
                        break;
                    d = nd;
                }
                d[lg->n++] = chaos_fo_digest(v.data, v.len);
                chaos_fo_submits_event(sub, ev);
                if (sc)
                    chaos_schedchk_event(sc, ev);
            }
            free(ev);
            lg->digest = d;
            tn_cursor_close(cur);
        }
        tn_store_read_end(t);
    }
    tn_log_close_read(s);
}

static void on_sched(void *ctx, uint64_t seq, const char *schedule, const char *what)
{
    fo_viol(ctx, 6, "seq %" PRIu64 " schedule of %s: %s", seq, schedule, what);
}

/* Invariants 4, 5 and 6 from the stores of the stopped masters. */
static void fo_check_logs(fo_run *f, const char *lead)
{
    chaos_fo_log logs[NMASTERS];
    chaos_fo_submits *sub = NULL;
    chaos_schedchk *sc = NULL;
    for (int i = 0; i < NMASTERS; i++) {
        bool last = strcmp(masters[i], lead) == 0;
        if (last) {
            sub = chaos_fo_submits_new();
            sc = chaos_schedchk_new(on_sched, f);
        }
        read_log(f, masters[i], &logs[i], last ? sub : NULL, last ? sc : NULL);
    }
    chaos_fo_check_logs(logs, NMASTERS, on_logs, f);
    chaos_fo_submits_finish(sub, f->ids, (size_t)f->nids, on_submits, f, &f->submits);
    chaos_schedchk_stats st = {0};
    if (sc && f->sched_end_ns)
        chaos_schedchk_finish(sc, f->sched_end_ns, &st);
    printf("logs: %s %zu events, %s %zu, %s %zu; schedule: %" PRIu64 " nominal times, %" PRIu64
           " fired, %" PRIu64 " skipped\n",
           masters[0], logs[0].n, masters[1], logs[1].n, masters[2], logs[2].n, st.nominal,
           st.fired, st.skipped);
    for (int i = 0; i < NMASTERS; i++)
        free((void *)logs[i].digest);
}

/* Invariants 2 and 7, and the counts, from the daemons' logs and the tasks' lines. */
static void fo_check_files(fo_run *f)
{
    char *runs = slurp(f->h.dir, "runs");
    chaos_fo_check_runs(runs ? runs : "", on_runs, f, &f->runs);
    free(runs);
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%s.log", workers[i]);
        char *text = slurp(f->h.dir, name);
        uint64_t sw = 0, ref = 0;
        chaos_fo_check_epochs(workers[i], text ? text : "", on_epochs, f, &sw, &ref);
        f->switches += sw;
        f->refused += ref;
        free(text);
    }
    for (int i = 0; i < NMASTERS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%s.log", masters[i]);
        char *text = slurp(f->h.dir, name);
        /* not those of the final stop */
        f->step_downs += count_of(text, "msg=\"stepping down\"") -
                         count_of(text, "msg=\"stepping down\" why=\"stopping\"");
        f->takeovers += count_of(text, "msg=\"leading\"");
        for (const char *p = text; p && (p = strstr(p, "takeover_ms=")); p += 12) {
            double ms = strtod(p + 12, NULL);
            f->takeover_max_ms = ms > f->takeover_max_ms ? ms : f->takeover_max_ms;
        }
        free(text);
    }
}

static void fo_replay(fo_run *f, const char *lead)
{
    char args[900];
    snprintf(args, sizeof(args), "replay --data %s/%s", f->h.dir, lead);
    char *out = tn_hac_tern(&f->h, args);
    if (!out)
        fo_viol(f, 3, "replay of %s's log failed (tern %s)", lead, args);
    free(out);
}

/* Every daemon: SIGCONT and SIGTERM together, then each must exit within the budget; one
 * that does not is a violation: its threads (gdb, when there is one) into DIR/NAME.stacks,
 * then SIGKILL. */
static void fo_stop_all(fo_run *f)
{
    tn_hac *h = &f->h;
    for (int i = 0; i < h->n; i++)
        if (h->procs[i] > 0) {
            kill(h->procs[i], SIGCONT);
            kill(h->procs[i], SIGTERM);
        }
    int64_t deadline = tn_mono_ns() + STOP_BUDGET_MS * 1000000LL;
    for (int i = 0; i < h->n; i++) {
        if (h->procs[i] <= 0)
            continue;
        pid_t r;
        while ((r = waitpid(h->procs[i], NULL, WNOHANG)) == 0 && tn_mono_ns() < deadline)
            tn_hac_sleep(50);
        if (r == 0) {
            fo_viol(f, 8, "%s (pid %d) did not exit within %d s of its SIGTERM", h->names[i],
                    (int)h->procs[i], STOP_BUDGET_MS / 1000);
            if (access("/usr/bin/gdb", X_OK) == 0) {
                char cmd[1400];
                snprintf(cmd, sizeof(cmd),
                         "/usr/bin/gdb -batch -p %d -ex 'thread apply all bt' >%s/%s.stacks "
                         "2>&1 </dev/null",
                         (int)h->procs[i], h->dir, h->names[i]);
                if (system(cmd) == 0)
                    printf("its stacks are in %s/%s.stacks\n", h->dir, h->names[i]);
            }
            kill(h->procs[i], SIGKILL);
            waitpid(h->procs[i], NULL, 0);
        }
        h->procs[i] = 0;
    }
    h->n = 0;
}

/* ---- the run ------------------------------------------------------------------------------- */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* The fault window: starts every few hundred ms, a fault 1.5 to 3.5 s after the last
 * one healed. */
static void fo_window(fo_run *f, int64_t duration_ms)
{
    int64_t end = tn_mono_ns() + duration_ms * 1000000;
    int64_t next_fault = tn_mono_ns() + 1500000000LL;
    while (tn_mono_ns() < end && !chaos_interrupted) {
        fo_start(f);
        if (tn_mono_ns() >= next_fault) {
            fo_fault(f);
            next_fault = tn_mono_ns() + 1500000000LL + (int64_t)(next_rand(f) % 2000) * 1000000;
        }
        tn_hac_sleep(300 + (long)(next_rand(f) % 400));
    }
}

/* Everything healed, settled, stopped and checked. */
static void fo_end(fo_run *f)
{
    for (int i = 0; i < ZKENS_N; i++)
        zkens_restart(&f->z, i); /* those down only */
    fo_check_done(f);
    /* the schedule's last time is due and decided, the standbys catch up */
    int64_t wait_ns = f->sched_end_ns + 3000000000LL - tn_now_ns();
    tn_hac_sleep(wait_ns > 0 ? (long)(wait_ns / 1000000) + 3000 : 3000);
    char lead[64] = "";
    if (!tn_hac_leader(&f->h, "c", NULL, lead, sizeof(lead)))
        fo_viol(f, 3, "no leader at the end");
    fo_stop_all(f);
    int forced = zkens_stop(&f->z, STOP_BUDGET_MS);
    if (forced)
        fo_viol(f, 8, "%d ZooKeeper member(s) did not exit within their stop budget", forced);
    fo_check_files(f);
    if (lead[0]) {
        fo_replay(f, lead);
        fo_check_logs(f, lead);
    }
    printf("faults: leader_kills=%u leader_pauses=%u zk_kills=%u quorum_losses=%u "
           "worker_kills=%u\n",
           f->leader_kills, f->leader_pauses, f->zk_kills, f->quorum_losses, f->worker_kills);
    printf("cluster: last_leader=%s takeovers=%" PRIu64 " step_downs=%" PRIu64
           " takeover_max_ms=%.0f epoch_switches=%" PRIu64 " stale_frames_refused=%" PRIu64
           " submits=%" PRIu64 " task_runs=%" PRIu64 "\n",
           lead[0] ? lead : "-", f->takeovers, f->step_downs, f->takeover_max_ms, f->switches,
           f->refused, f->submits, f->runs);
}

/* The lossy links, drawn from the seed: drop 2-10%, dup 5%, delay 10% (up to 100 ms),
 * reorder 5%. */
static void draw_net(fo_run *f)
{
    snprintf(f->net, sizeof(f->net),
             "drop=0.%02u,dup=0.05,delay=0.1,max_delay_ms=100,reorder=0.05",
             2 + (unsigned)(next_rand(f) % 9));
}

static int fo_setup(fo_run *f, const char *dir)
{
    if (dir) {
        snprintf(f->h.dir, sizeof(f->h.dir), "%s", dir);
        tn_mkdir_p(dir);
    } else {
        snprintf(f->h.dir, sizeof(f->h.dir), "/tmp/tern-chaos-failover-XXXXXX");
        if (!mkdtemp(f->h.dir))
            return tn_cli_fail("chaos", "cannot create a temporary directory: %m");
    }
    ssize_t sl = readlink("/proc/self/exe", f->h.self, sizeof(f->h.self) - 1);
    f->h.self[sl > 0 ? sl : 0] = 0;
    setenv("TERN_LOG_LEVEL", "info", 1);
    if (access(TN_HAC_ZK_JAR, R_OK) != 0 || !zkens_start(&f->z, f->h.dir))
        return tn_cli_fail("chaos",
                           "failover needs ZooKeeper (the zookeeper package: run "
                           "tools/setup.sh); see %s/zk*/server.log",
                           f->h.dir);
    memcpy(f->h.hosts, f->z.hosts, sizeof(f->h.hosts)); /* 47 bytes at most */
    f->h.hosts[sizeof(f->h.hosts) - 1] = 0;
    snprintf(f->zk, sizeof(f->zk), "%s/c", f->h.hosts);
    return 0;
}

int tn_chaos_failover(uint64_t seed, int64_t duration_ms, const char *dir)
{
    fo_run *f = calloc(1, sizeof(*f));
    if (!f)
        return tn_cli_fail("chaos", "out of memory");
    f->seed = seed;
    f->rng = seed * 0x9e3779b97f4a7c15ull | 1;
    draw_net(f);
    printf("tern chaos: seed %" PRIu64 " scenario failover duration %.1fs dir %s\n", seed,
           (double)duration_ms / 1000, dir ? dir : "(temporary)");
    fflush(stdout);
    if (fo_setup(f, dir)) {
        free(f);
        return 1;
    }
    printf("zookeeper: %s; links: %s\n", f->z.hosts, f->net);
    fflush(stdout);
    char lead[64];
    master_up(f, "m1");
    tn_hac_leader(&f->h, "c", NULL, lead, sizeof(lead));
    master_up(f, "m2");
    master_up(f, "m3");
    worker_up(f, "w1");
    worker_up(f, "w2");
    tn_hac_sleep(2500);
    fo_def(f);
    fo_schedule(f, duration_ms);
    fo_window(f, duration_ms);
    fo_end(f);
    printf("result: %s (seed %" PRIu64 ", scenario failover, %d starts accepted, %d "
           "violations)\n",
           f->violations ? "FAIL" : "PASS", seed, f->nids, f->violations);
    int rc = f->violations ? 1 : 0;
    if (!dir && !f->violations)
        nftw(f->h.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    else if (f->violations)
        printf("its directory %s is kept\n", f->h.dir);
    unsetenv("TERN_FAULTS");
    free(f);
    return rc;
}

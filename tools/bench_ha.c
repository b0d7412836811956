/* `tern bench ha`: a cluster of masters on a ZooKeeper started here from the Debian
 * package (java, /usr/share/java/zookeeper.jar) on a loopback port, masters and a worker
 * as processes of this binary, all in a temporary directory removed afterwards.
 *   ha_failover_p50/p99: SIGKILL of the leader to the first task dispatched by the new one
 *     (20 runs; 5 with --quick), next to the ZooKeeper session timeout;
 *   ha_noop_sync0/1/2: noop tasks/s of three masters with 0, 1, 2 synchronous standbys,
 *     next to a single master without ZooKeeper. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "hacluster.h"
#include "util.h"
#include "zk.h"

extern char **environ;

#define ZK_JAR     "/usr/share/java/zookeeper.jar"
#define SESSION_MS 2000


static void bench_line_ha(const char *name, double value, const char *unit, double baseline)
{
    printf("BENCH name=%s value=%.0f unit=%s baseline=%.0f ratio=%.2f\n", name, value, unit,
           baseline, baseline > 0 ? value / baseline : 0.0);
    fflush(stdout);
}

void tn_hac_sleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int tn_hac_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static pid_t spawn_out(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = -1;
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* A standalone ZooKeeper on a free port; false when it did not come up. */
bool tn_hac_zk_up(tn_hac *h)
{
    int port = tn_hac_free_port();
    char conf[700], data[700], log[700];
    snprintf(data, sizeof(data), "%s/zk", h->dir);
    snprintf(conf, sizeof(conf), "%s/zoo.cfg", h->dir);
    snprintf(log, sizeof(log), "%s/zk.log", h->dir);
    tn_mkdir_p(data);
    FILE *f = fopen(conf, "w");
    if (!f)
        return false;
    fprintf(f,
            "tickTime=500\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=30000\n",
            data, port);
    fclose(f);
    char *argv[] = {"/usr/bin/java",
                    "-Xmx96m",
                    "-XX:+UseSerialGC",
                    "-XX:-UsePerfData", /* no /tmp/hsperfdata_USER left behind */
                    "-cp",
                    ZK_JAR,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    conf,
                    NULL};
    h->zk = spawn_out(argv, log);
    snprintf(h->hosts, sizeof(h->hosts), "127.0.0.1:%d", port);
    for (int i = 0; i < 600 && h->zk > 0; i++) {
        tn_zk_opts o = {
            .hosts = h->hosts, .cluster = "probe", .name = "bench", .session_ms = 1000};
        tn_zk *z = NULL;
        if (tn_zk_open(&o, &z, NULL) == TN_OK) {
            tn_zk_close(z);
            return true;
        }
        tn_hac_sleep(100);
    }
    return false;
}

static int proc_index(tn_hac *h, const char *name)
{
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0)
            return i;
    return h->n < 8 ? h->n++ : 7;
}

/* `tern master` (zk: in cluster `cluster` with `sync` standbys; else a single master). */
void tn_hac_master_up(tn_hac *h, const char *id, const char *cluster, const char *sync)
{
    char listen[700], ctl[700], data[700], ship[700], log[700];
    snprintf(listen, sizeof(listen), "ipc://%s/%s.sock", h->dir, id);
    snprintf(ctl, sizeof(ctl), "ipc://%s/%s.ctl", h->dir, id);
    snprintf(data, sizeof(data), "%s/%s", h->dir, id);
    snprintf(ship, sizeof(ship), "ipc://%s/%s.ship", h->dir, id);
    snprintf(log, sizeof(log), "%s/%s.log", h->dir, id);
    char *zargv[] = {h->self, "master",          "--listen",   listen,          "--ctl",
                     ctl,     "--data",          data,         "--id",          (char *)id,
                     "--zk",  h->hosts,          "--cluster",  (char *)cluster, "--ship",
                     ship,    "--sync-standbys", (char *)sync, "--zk-session",  "2s",
                     NULL};
    if (!cluster)
        zargv[10] = NULL;
    int i = proc_index(h, id);
    snprintf(h->names[i], sizeof(h->names[i]), "%s", id);
    h->procs[i] = spawn_out(zargv, log);
}

void tn_hac_worker_up(tn_hac *h, const char *name, const char *cluster, const char *single)
{
    char listen[700], data[700], log[700], murl[700];
    snprintf(listen, sizeof(listen), "ipc://%s/%s-%s.sock", h->dir, name,
             cluster ? cluster : "s");
    snprintf(data, sizeof(data), "%s/%s-%s", h->dir, name, cluster ? cluster : "s");
    snprintf(log, sizeof(log), "%s/%s.log", h->dir, name);
    snprintf(murl, sizeof(murl), "ipc://%s/%s.sock", h->dir, single ? single : "");
    char *argv[] = {h->self,
                    "worker",
                    "--listen",
                    listen,
                    "--data",
                    data,
                    "--name",
                    (char *)name,
                    "--slots",
                    "256",
                    "--heartbeat",
                    "200ms",
                    "--no-cgroup",
                    cluster ? "--zk" : "--master",
                    cluster ? h->hosts : murl,
                    cluster ? "--cluster" : NULL,
                    (char *)cluster,
                    NULL};
    int i = proc_index(h, name);
    snprintf(h->names[i], sizeof(h->names[i]), "%s", name);
    h->procs[i] = spawn_out(argv, log);
}

void tn_hac_down(tn_hac *h, const char *name, int sig)
{
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0 && h->procs[i] > 0) {
            kill(h->procs[i], sig);
            if (sig == SIGSTOP || sig == SIGCONT)
                continue;
            if (sig != SIGKILL)
                kill(h->procs[i], SIGCONT); /* a stopped one must see its SIGTERM */
            waitpid(h->procs[i], NULL, 0);
            h->procs[i] = 0;
        }
}

void tn_hac_all_down(tn_hac *h)
{
    for (int i = h->n - 1; i >= 0; i--)
        tn_hac_down(h, h->names[i], SIGTERM);
    h->n = 0;
}

/* Run `tern ARGS` and return its stdout (malloc'd) or NULL on a non-zero exit. */
char *tn_hac_tern(tn_hac *h, const char *args)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", h->self, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NULL;
    size_t cap = 1 << 16, len = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + len, 1, cap - len - 1, p)) > 0) {
        len += r;
        if (len + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb)
                break;
            b = nb;
        }
    }
    if (b)
        b[len] = 0;
    if (pclose(p) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

/* The current leader's id (waits, a failsafe bound); false when none came. */
bool tn_hac_leader(tn_hac *h, const char *cluster, const char *other, char *name, size_t len)
{
    tn_zk_opts o = {.hosts = h->hosts, .cluster = cluster, .name = "bench"};
    tn_zk *z = NULL;
    if (tn_zk_open(&o, &z, NULL) != TN_OK)
        return false;
    bool ok = false;
    for (int i = 0; i < 3000 && !ok; i++) {
        ok = tn_zk_leader(z, NULL, name, len, NULL, 0, NULL) == TN_OK &&
             (!other || strcmp(name, other) != 0);
        if (!ok)
            tn_hac_sleep(5);
    }
    tn_zk_close(z);
    return ok;
}

void tn_hac_noop_def(tn_hac *h, const char *name, int tasks)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/%s.yaml", h->dir, name);
    FILE *f = fopen(p, "w");
    if (!f)
        return;
    fprintf(f, "name: %s\ntasks:\n", name);
    for (int i = 0; i < tasks; i++)
        fprintf(f, "  - {name: t%d, type: noop}\n", i);
    fclose(f);
}

/* Wait until workflow id on ctl is in state `want` (or any final state); the state. */
bool tn_hac_wait_status(tn_hac *h, const char *ctl, const char *id, const char *want,
                        int max_ms)
{
    char args[1000];
    snprintf(args, sizeof(args), "status %s --json --master %s", id, ctl);
    for (int t = 0; t < max_ms; t += 10) {
        char *out = tn_hac_tern(h, args);
        bool ok = out && strstr(out, want);
        free(out);
        if (ok)
            return true;
        tn_hac_sleep(10);
    }
    return false;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One failover: kill the leader, start a one-task workflow on the new one; the time to
 * its task dispatched (the engine's DISPATCH state or later). */
static double one_failover(tn_hac *h, int run)
{
    char lead[64], next[64], ctl[800], args[1200];
    if (!tn_hac_leader(h, "fo", NULL, lead, sizeof(lead)))
        return -1;
    int64_t t0 = tn_mono_ns();
    tn_hac_down(h, lead, SIGKILL);
    if (!tn_hac_leader(h, "fo", lead, next, sizeof(next)))
        return -1;
    snprintf(ctl, sizeof(ctl), "ipc://%s/%s.ctl", h->dir, next);
    snprintf(args, sizeof(args), "start fo --json --master %s", ctl);
    char *out = NULL;
    for (int i = 0; i < 2000 && !(out = tn_hac_tern(h, args)); i++)
        tn_hac_sleep(2);
    const char *idp = out ? strstr(out, "\"id\":") : NULL;
    char id[32] = "";
    if (idp)
        snprintf(id, sizeof(id), "%ld", strtol(idp + 5, NULL, 10));
    free(out);
    bool ok = id[0] && tn_hac_wait_status(h, ctl, id, "\"worker\":\"w1\"", 30000);
    double ms = ok ? (double)(tn_mono_ns() - t0) / 1e6 : -1;
    tn_hac_master_up(h, lead, "fo", "0"); /* back as a standby for the next run */
    tn_hac_sleep(1500 + run % 2);
    return ms;
}

static void bench_failover(tn_hac *h, bool quick)
{
    tn_hac_master_up(h, "m1", "fo", "0");
    char lead[64];
    tn_hac_leader(h, "fo", NULL, lead, sizeof(lead));
    tn_hac_master_up(h, "m2", "fo", "0");
    tn_hac_worker_up(h, "w1", "fo", NULL);
    tn_hac_sleep(2000);
    tn_hac_noop_def(h, "fo", 1);
    char args[1600];
    snprintf(args, sizeof(args), "def apply %s/fo.yaml --master ipc://%s/%s.ctl", h->dir,
             h->dir, lead);
    free(tn_hac_tern(h, args));
    int runs = quick ? 5 : 20, n = 0;
    double v[20];
    for (int i = 0; i < runs; i++) {
        double ms = one_failover(h, i);
        if (ms >= 0)
            v[n++] = ms;
    }
    tn_hac_all_down(h);
    if (!n) {
        fprintf(stderr, "tern bench: no failover completed (see %s)\n", h->dir);
        return;
    }
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    bench_line_ha("ha_failover_p50_ms", v[n / 2], "ms", SESSION_MS);
    bench_line_ha("ha_failover_p99_ms", v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], "ms",
                  SESSION_MS);
}

/* noop tasks/s of one workflow of `tasks` independent noop tasks on the leader at ctl. */
static double noop_rate(tn_hac *h, const char *ctl, int tasks, const char *wf)
{
    char args[1600];
    tn_hac_noop_def(h, wf, tasks);
    snprintf(args, sizeof(args), "def apply %s/%s.yaml --master %s", h->dir, wf, ctl);
    free(tn_hac_tern(h, args));
    snprintf(args, sizeof(args), "start %s --json --master %s", wf, ctl);
    int64_t t0 = tn_mono_ns();
    char *out = tn_hac_tern(h, args);
    const char *idp = out ? strstr(out, "\"id\":") : NULL;
    char id[32] = "";
    if (idp)
        snprintf(id, sizeof(id), "%ld", strtol(idp + 5, NULL, 10));
    free(out);
    char want[200]; /* the workflow's own state (its tasks' come after) */
    snprintf(want, sizeof(want), "\"name\":\"%s\",\"state\":\"SUCCESS\"", wf);
    if (!id[0] || !tn_hac_wait_status(h, ctl, id, want, 600000))
        return 0;
    return tasks / ((double)(tn_mono_ns() - t0) / 1e9);
}

static void bench_sync(tn_hac *h, bool quick)
{
    int tasks = quick ? 500 : 3000;
    char ctl[800];
    /* a single master without ZooKeeper: the baseline */
    tn_hac_master_up(h, "single", NULL, "0");
    tn_hac_worker_up(h, "w1", NULL, "single");
    tn_hac_sleep(2000);
    snprintf(ctl, sizeof(ctl), "ipc://%s/single.ctl", h->dir);
    double base = noop_rate(h, ctl, tasks, "nb");
    tn_hac_all_down(h);
    for (int k = 0; k <= 2; k++) {
        char cluster[16], sync[4], ids[3][16], lead[64];
        snprintf(cluster, sizeof(cluster), "s%d", k);
        snprintf(sync, sizeof(sync), "%d", k);
        for (int i = 0; i < 3; i++) {
            snprintf(ids[i], sizeof(ids[i]), "s%d-m%d", k, i + 1);
            tn_hac_master_up(h, ids[i], cluster, sync);
            if (i == 0)
                tn_hac_leader(h, cluster, NULL, lead, sizeof(lead));
        }
        tn_hac_worker_up(h, "w1", cluster, NULL);
        tn_hac_sleep(2500); /* the standbys follow, the worker registers */
        snprintf(ctl, sizeof(ctl), "ipc://%s/%s.ctl", h->dir, lead);
        double r = noop_rate(h, ctl, tasks, "nb");
        char name[40];
        snprintf(name, sizeof(name), "ha_noop_sync%d", k);
        bench_line_ha(name, r, "tasks/s", base);
        tn_hac_all_down(h);
    }
}

static int rm_ha(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int tn_bench_ha(const char *base, bool quick)
{
    if (access(ZK_JAR, R_OK) != 0 || access("/usr/bin/java", X_OK) != 0)
        return tn_cli_fail("bench", "ha needs the zookeeper package (%s): run tools/setup.sh",
                           ZK_JAR);
    tn_hac *h = calloc(1, sizeof(*h));
    if (!h)
        return tn_cli_fail("bench", "out of memory");
    snprintf(h->dir, sizeof(h->dir), "%s/tern-bench-ha-XXXXXX", base);
    if (!mkdtemp(h->dir)) {
        free(h);
        return tn_cli_fail("bench", "%s: cannot create a temporary directory: %m", base);
    }
    ssize_t sl = readlink("/proc/self/exe", h->self, sizeof(h->self) - 1);
    h->self[sl > 0 ? sl : 0] = 0;
    setenv("TERN_LOG_LEVEL", "warn", 1);
    int rc = 0;
    if (!tn_hac_zk_up(h)) {
        rc = tn_cli_fail("bench", "ZooKeeper did not start (see %s/zk.log)", h->dir);
    } else {
        bench_failover(h, quick);
        bench_sync(h, quick);
    }
    tn_hac_all_down(h);
    if (h->zk > 0) {
        kill(h->zk, SIGTERM);
        waitpid(h->zk, NULL, 0);
    }
    nftw(h->dir, rm_ha, 16, FTW_DEPTH | FTW_PHYS);
    free(h);
    return rc;
}

/* `tern chaos failover`: three masters with --zk (one synchronous standby), a ZooKeeper
 * and two workers (tools/hacluster.h); workflows started through ZooKeeper while the
 * leader is SIGKILLed and restarted, SIGSTOPped past its session and resumed, and a worker
 * is SIGKILLed and restarted, in an order the seed draws. Then everything heals and:
 *   1. every start the cluster accepted finished SUCCESS;
 *   2. no task ran more times than it had attempts (an attempt never runs twice);
 *   3. replay of the last leader's log: legal transitions, intact chain. */
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chaos.h"
#include "cli.h"
#include "hacluster.h"
#include "util.h"

#define MAX_STARTS 512

typedef struct fo_run {
    tn_hac h;
    uint64_t rng;
    char zk[128];
    long ids[MAX_STARTS];
    int nids;
    int violations;
} fo_run;

static uint64_t next_rand(fo_run *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return f->rng;
}

static void fo_def(fo_run *f)
{
    char p[700], args[1600];
    snprintf(p, sizeof(p), "%s/fo.yaml", f->h.dir);
    FILE *fp = fopen(p, "w");
    if (!fp)
        return;
    fprintf(fp,
            "name: fo\ntasks:\n"
            "  - {name: a, type: shell, command: 'sleep 0.5; echo \"$TERN_WORKFLOW_INSTANCE_ID "
            "a\" >> %s/runs'}\n"
            "  - {name: b, type: shell, command: 'sleep 0.5; echo \"$TERN_WORKFLOW_INSTANCE_ID "
            "b\" >> %s/runs', deps: [a]}\n",
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

static void fo_start(fo_run *f)
{
    char args[300];
    snprintf(args, sizeof(args), "start fo --json --zk %s", f->zk);
    char *out = tn_hac_tern(&f->h, args);
    const char *id = out ? strstr(out, "\"id\":") : NULL;
    if (id && f->nids < MAX_STARTS)
        f->ids[f->nids++] = strtol(id + 5, NULL, 10);
    free(out);
}

/* One fault, drawn; it heals before returning (the cluster keeps three masters). */
static void fo_fault(fo_run *f)
{
    char lead[64];
    if (!tn_hac_leader(&f->h, "c", NULL, lead, sizeof(lead)))
        return;
    switch (next_rand(f) % 3) {
    case 0:
        fprintf(stderr, "chaos failover: SIGKILL leader %s\n", lead);
        tn_hac_down(&f->h, lead, SIGKILL);
        tn_hac_sleep(1000);
        fo_start(f);
        tn_hac_master_up(&f->h, lead, "c", "1");
        break;
    case 1:
        fprintf(stderr, "chaos failover: SIGSTOP leader %s for 4s\n", lead);
        tn_hac_down(&f->h, lead, SIGSTOP);
        tn_hac_sleep(4000);
        tn_hac_down(&f->h, lead, SIGCONT);
        break;
    default: {
        const char *w = next_rand(f) % 2 ? "w1" : "w2";
        fprintf(stderr, "chaos failover: SIGKILL worker %s\n", w);
        tn_hac_down(&f->h, w, SIGKILL);
        tn_hac_sleep(1000);
        tn_hac_worker_up(&f->h, w, "c", NULL);
    }
    }
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int runs_of(fo_run *f, long wf, const char *task)
{
    char p[700], line[128], want[64];
    snprintf(p, sizeof(p), "%s/runs", f->h.dir);
    snprintf(want, sizeof(want), "%ld %s\n", wf, task);
    FILE *fp = fopen(p, "r");
    int n = 0;
    while (fp && fgets(line, sizeof(line), fp))
        n += strcmp(line, want) == 0;
    if (fp)
        fclose(fp);
    return n;
}

/* The attempts of task `task` in a status JSON ({"name":"a","state":..,"attempts":N}). */
static int attempts_of(const char *json, const char *task)
{
    char key[64];
    snprintf(key, sizeof(key), "\"name\":\"%s\",\"state\"", task);
    const char *p = json ? strstr(json, key) : NULL;
    p = p ? strstr(p, "\"attempts\":") : NULL;
    return p ? atoi(p + 11) : 0;
}

static void fo_check(fo_run *f)
{
    int64_t settle_end = tn_mono_ns() + 120000000000LL; /* the whole settle: 120 s */
    for (int i = 0; i < f->nids; i++) {
        char args[300], want[64];
        snprintf(args, sizeof(args), "status %ld --json --zk %s", f->ids[i], f->zk);
        snprintf(want, sizeof(want), "\"name\":\"fo\",\"state\":\"SUCCESS\"");
        char *out = NULL;
        for (;;) {
            free(out);
            out = tn_hac_tern(&f->h, args);
            if ((out && strstr(out, want)) || tn_mono_ns() > settle_end)
                break;
            tn_hac_sleep(100);
        }
        if (!out || !strstr(out, want)) {
            printf("violation 1: instance %ld (accepted) did not succeed: %s\n", f->ids[i],
                   out ? out : "(no status)");
            f->violations++;
        }
        for (int t = 0; t < 2; t++) {
            const char *task = t ? "b" : "a";
            int runs = runs_of(f, f->ids[i], task), att = attempts_of(out, task);
            if (runs > att) {
                printf("violation 2: instance %ld task %s ran %d times in %d attempts\n",
                       f->ids[i], task, runs, att);
                f->violations++;
            }
        }
        free(out);
    }
}

static void fo_replay(fo_run *f, const char *lead)
{
    char args[900];
    snprintf(args, sizeof(args), "replay --data %s/%s", f->h.dir, lead);
    char *out = tn_hac_tern(&f->h, args);
    if (!out) {
        printf("violation 3: replay of %s's log failed (tern %s)\n", lead, args);
        f->violations++;
    }
    free(out);
}

int tn_chaos_failover(uint64_t seed, int64_t duration_ms, const char *dir)
{
    fo_run *f = calloc(1, sizeof(*f));
    if (!f)
        return tn_cli_fail("chaos", "out of memory");
    f->rng = seed | 1;
    if (dir) {
        snprintf(f->h.dir, sizeof(f->h.dir), "%s", dir);
        tn_mkdir_p(dir);
    } else {
        snprintf(f->h.dir, sizeof(f->h.dir), "/tmp/tern-chaos-failover-XXXXXX");
        if (!mkdtemp(f->h.dir)) {
            free(f);
            return tn_cli_fail("chaos", "cannot create a temporary directory: %m");
        }
    }
    ssize_t sl = readlink("/proc/self/exe", f->h.self, sizeof(f->h.self) - 1);
    f->h.self[sl > 0 ? sl : 0] = 0;
    setenv("TERN_LOG_LEVEL", "info", 1);
    printf("tern chaos: seed %" PRIu64 " scenario failover duration %.1fs dir %s\n", seed,
           (double)duration_ms / 1000, f->h.dir);
    fflush(stdout);
    if (access(TN_HAC_ZK_JAR, R_OK) != 0 || !tn_hac_zk_up(&f->h)) {
        free(f);
        return tn_cli_fail("chaos", "failover needs ZooKeeper (the zookeeper package: run "
                                    "tools/setup.sh)");
    }
    snprintf(f->zk, sizeof(f->zk), "%s/c", f->h.hosts);
    char lead[64];
    tn_hac_master_up(&f->h, "m1", "c", "1");
    tn_hac_leader(&f->h, "c", NULL, lead, sizeof(lead));
    tn_hac_master_up(&f->h, "m2", "c", "1");
    tn_hac_master_up(&f->h, "m3", "c", "1");
    tn_hac_worker_up(&f->h, "w1", "c", NULL);
    tn_hac_worker_up(&f->h, "w2", "c", NULL);
    tn_hac_sleep(2500);
    fo_def(f);
    int64_t end = tn_mono_ns() + duration_ms * 1000000;
    int64_t next_fault = tn_mono_ns() + 2000000000LL;
    while (tn_mono_ns() < end) {
        fo_start(f);
        if (tn_mono_ns() >= next_fault) {
            fo_fault(f);
            next_fault = tn_mono_ns() + 2000000000LL + (int64_t)(next_rand(f) % 3000) * 1000000;
        }
        tn_hac_sleep(300 + (long)(next_rand(f) % 400));
    }
    fo_check(f);
    tn_hac_leader(&f->h, "c", NULL, lead, sizeof(lead));
    tn_hac_all_down(&f->h);
    fo_replay(f, lead);
    if (f->h.zk > 0) {
        kill(f->h.zk, SIGTERM);
        waitpid(f->h.zk, NULL, 0);
    }
    printf("result: %s (seed %" PRIu64 ", scenario failover, %d starts accepted)\n",
           f->violations ? "FAIL" : "PASS", seed, f->nids);
    int rc = f->violations ? 1 : 0;
    if (!dir && !f->violations) {
        nftw(f->h.dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    } else if (f->violations) {
        printf("its directory %s is kept\n", f->h.dir);
    }
    free(f);
    return rc;
}

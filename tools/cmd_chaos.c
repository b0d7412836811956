/* `tern chaos`: a real master and workers on loopback, a workload and a fault schedule drawn
 * from a seed, then the invariants checked from the log, the workers' journals and /proc. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "def.h"
#include "map.h"
#include "proj.h"
#include "replay.h"
#include "util.h"
#include "sm.h"
#include "sm_gen.h"
#include "logread.h"
#include "store.h"
#include "cli.h"
#include "rpc.h"

const char tn_usage_chaos[] =
    "usage: tern chaos [--seed N] [--duration 60s] [--workers K] [--workflows W] [--dir DIR]\n"
    "                  [--settle 120s] [--rss-max 256M] [--json] SCENARIO\n"
    "       tern chaos --replay-schedule FILE [--dir DIR] [--json]\n"
    "\n"
    "Start a real master and K workers (this binary) on 127.0.0.1 in a temp dir, drive W\n"
    "workflows through the control socket (shell and noop DAGs with retries, timeouts,\n"
    "conditions, a switch and sub-workflows; pauses, resumes, stops, recovers and task kills\n"
    "issued during the run) and inject faults for the duration. Then heal every fault, let\n"
    "the cluster settle (at most --settle) and check:\n"
    "  1. every workflow reached a final state, and one its definition gives unless a user\n"
    "     command touched it;\n"
    "  2. replay of the master's log: legal transitions, intact chain, equal projections;\n"
    "  3. no task attempt ran on two workers at once, and every result applied is of the\n"
    "     task's latest attempt and comes after that attempt ended in a worker's journal;\n"
    "  4. no task process outlived its attempt, nor its worker's stop;\n"
    "  5. every start the client was told was accepted is in the log;\n"
    "  6. the RssAnon of the master and of each worker stayed under --rss-max;\n"
    "and that no daemon exited unless the harness killed it and the cluster settled. Each\n"
    "violation names the seq, task and attempt it is about; the exit status is 1 when there\n"
    "is one.\n"
    "\n"
    "Scenarios (faults from a PRNG seeded with --seed; the same seed draws the same schedule):\n"
    "  master-crash  SIGKILL and restart of the master, at random points and right after it\n"
    "                answered a start (between a commit and its effects)\n"
    "  worker-crash  SIGKILL and restart of a worker, before and after the heartbeat timeout\n"
    "  partition     SIGSTOP of a worker (sometimes the master) past the heartbeat timeout,\n"
    "                then SIGCONT\n"
    "  lossy-net     every daemon drops, duplicates, delays and reorders what it sends\n"
    "                (TERN_FAULTS, read by the transport)\n"
    "  disk-full     the master's and the workers' stores (small --map-max) filled to the\n"
    "                last page by ballast the harness writes, then freed; and slow disks: a\n"
    "                daemon's writes throttled to a few a second (cgroup v1 blkio, as root)\n"
    "  mixed         all of the above\n"
    "\n"
    "The schedule is written to DIR/schedule.txt; --replay-schedule FILE runs one again\n"
    "(its seed, scenario, sizes and every fault and user action). The directory is removed\n"
    "at the end unless --dir was given or a check failed; then its path is printed. It holds\n"
    "the daemons' logs (master.log, wN.log), their data and the workers' journals.\n"
    "\n"
    "  --seed N          PRNG seed (default: from the clock; printed first)\n"
    "  --duration D      how long faults are injected and work is submitted (default 60s)\n"
    "  --workers K       worker processes, 4 slots each (default 3, at most 16)\n"
    "  --workflows W     workflow starts (default: one per second of duration, at least 8)\n"
    "  --dir DIR         work in DIR (created; kept)\n"
    "  --settle D        how long to wait for the cluster to settle after healing (120s)\n"
    "  --rss-max BYTES   the memory bound of invariant 6 (default 256M)\n"
    "  --json            the report as JSON on stdout (progress stays on stderr)\n";

#define MAXW 16
#define HB_TIMEOUT_MS 2000
#define NDEFS 6
#define CTL_TIMEOUT_MS 5000
#define MAX_VIOLATIONS_SHOWN 200
#define MIB (1024ull * 1024)

/* ------------------------------------------------------------------------------ */
/* the PRNG: splitmix64, one stream for the workload and one for the faults, so a change
 * in one does not move the other */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

static int64_t rng_range(rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------------------------------------ */
/* scenarios, the workload's definitions, the schedule */

enum { SC_MASTER_CRASH, SC_WORKER_CRASH, SC_PARTITION, SC_LOSSY_NET, SC_DISK_FULL, SC_MIXED,
       SC__COUNT };
static const char *const scenario_names[SC__COUNT] = {
    "master-crash", "worker-crash", "partition", "lossy-net", "disk-full", "mixed"};

typedef enum kind {
    /* the workload (its own thread) */
    K_START, K_START_CRASH, K_PAUSE, K_RESUME, K_STOP, K_RECOVER, K_KILL,
    /* faults (the main thread) */
    K_MASTER_KILL, K_MASTER_STOP, K_WORKER_KILL, K_WORKER_STOP, K_DISK_FULL, K_SLOW_DISK,
    K__COUNT
} kind;
static const char *const kind_names[K__COUNT] = {
    "start", "start-crash", "pause", "resume", "stop", "recover", "kill",
    "master-kill", "master-stop", "worker-kill", "worker-stop", "disk-full", "slow-disk"};
#define IS_FAULT(k) ((k) >= K_MASTER_KILL)

/* The definitions the workload starts, and the final state each gives when no user
 * command touched its instance (whatever the faults). */
typedef struct wdef {
    const char *name, *expect, *yaml;
    unsigned weight; /* of 100, for top-level starts */
} wdef;

static const wdef defs[NDEFS] = {
    {"chaos_etl", "SUCCESS",
     "name: chaos_etl\n"
     "description: shell and noop tasks, a retried failure, a value passed down, a branch\n"
     "failure_strategy: end\n"
     "tasks:\n"
     "  - name: extract\n"
     "    type: shell\n"
     "    command: |\n"
     "      sleep 0.05\n"
     "      echo '${setValue(rows=42)}'\n"
     "  - name: flaky\n"
     "    type: shell\n"
     "    deps: [extract]\n"
     "    command: |\n"
     "      [ \"$TERN_TASK_ATTEMPT\" -ge 2 ] || exit 3\n"
     "      sleep 0.05\n"
     "    retries: 3\n"
     "    retry_interval: 200ms\n"
     "  - name: side\n"
     "    type: noop\n"
     "    deps: [extract]\n"
     "    duration: 100ms\n"
     "    outputs: {side: \"1\"}\n"
     "  - name: check\n"
     "    type: conditions\n"
     "    deps: [flaky]\n"
     "    when: {all: [{task: flaky, state: success}]}\n"
     "    on_success: [load]\n"
     "    on_failure: [alert]\n"
     "  - name: load\n"
     "    type: shell\n"
     "    deps: [check, side]\n"
     "    command: |\n"
     "      echo \"loading ${rows} rows\"\n"
     "      sleep 0.05\n"
     "  - name: alert\n"
     "    type: noop\n"
     "    deps: [check]\n",
     30},
    {"chaos_fail", "FAILURE",
     "name: chaos_fail\n"
     "description: a failure that exhausts its retries; independent branches go on\n"
     "failure_strategy: continue\n"
     "tasks:\n"
     "  - {name: a, type: noop, duration: 50ms, outputs: {v: \"7\"}}\n"
     "  - {name: bad, type: noop, deps: [a], result: failure, retries: 1, "
     "retry_interval: 100ms}\n"
     "  - {name: after_bad, type: noop, deps: [bad]}\n"
     "  - name: b\n"
     "    type: shell\n"
     "    deps: [a]\n"
     "    command: sleep 0.1\n"
     "  - name: route\n"
     "    type: switch\n"
     "    deps: [a, b]\n"
     "    cases:\n"
     "      - {when: \"${v} > 5\", then: big}\n"
     "    default: small\n"
     "  - {name: big, type: noop, deps: [route]}\n"
     "  - {name: small, type: noop, deps: [route]}\n",
     15},
    {"chaos_timeout", "STOP",
     "name: chaos_timeout\n"
     "description: a task that outlives its timeout is killed and the run stops\n"
     "tasks:\n"
     "  - name: quick\n"
     "    type: shell\n"
     "    command: sleep 0.05\n"
     "  - name: hang\n"
     "    type: shell\n"
     "    deps: [quick]\n"
     "    command: sleep 300\n"
     "    timeout: 1s\n"
     "    timeout_strategy: fail\n"
     "    kill_grace: 500ms\n",
     10},
    {"chaos_parent", "SUCCESS",
     "name: chaos_parent\n"
     "description: a sub-workflow between two tasks\n"
     "tasks:\n"
     "  - {name: pre, type: noop, duration: 20ms}\n"
     "  - {name: child, type: sub_workflow, deps: [pre], workflow: chaos_child}\n"
     "  - name: post\n"
     "    type: shell\n"
     "    deps: [child]\n"
     "    command: sleep 0.05\n",
     15},
    {"chaos_long", "SUCCESS",
     "name: chaos_long\n"
     "description: seconds-long shell tasks and a process tree, what crashes interrupt\n"
     "tasks:\n"
     "  - name: l1\n"
     "    type: shell\n"
     "    command: sleep 2\n"
     "  - name: tree\n"
     "    type: shell\n"
     "    command: |\n"
     "      sleep 3 &\n"
     "      sleep 3 &\n"
     "      wait\n"
     "  - name: l2\n"
     "    type: shell\n"
     "    deps: [l1]\n"
     "    command: sleep 1.5\n"
     "    retries: 1\n"
     "    retry_interval: 200ms\n"
     "  - {name: l3, type: noop, deps: [l2, tree], duration: 1s}\n",
     30},
    /* applied before chaos_parent, which names it; started only as its child */
    {"chaos_child", "SUCCESS",
     "name: chaos_child\n"
     "description: the child of chaos_parent\n"
     "tasks:\n"
     "  - name: c1\n"
     "    type: shell\n"
     "    command: sleep 0.2\n"
     "  - {name: c2, type: noop, deps: [c1], duration: 100ms}\n",
     0},
};

static const wdef *find_def(const char *name)
{
    for (int i = 0; i < NDEFS; i++)
        if (strcmp(defs[i].name, name) == 0)
            return &defs[i];
    return NULL;
}

typedef struct act {
    int64_t at_ms; /* from the start of the run */
    kind k;
    int target;    /* faults: worker index, -1 = the master; user actions: start index */
    int64_t ms;    /* restart delay, stop, fill or slow-down duration */
    int64_t iops;  /* slow-disk: write operations per second allowed */
    char wf[40];   /* starts: the definition */
} act;

typedef struct sched {
    uint64_t seed;
    int scenario;
    int64_t duration_ms;
    int workers, workflows;
    char net[200];            /* TERN_FAULTS without the seed; "" = none */
    uint64_t master_map_max;  /* 0 = the default */
    uint64_t worker_map_max;
    act *v;
    size_t n, cap;
} sched;

static void sched_add(sched *s, act a)
{
    if (!tn_grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v))) {
        fprintf(stderr, "tern chaos: out of memory\n");
        exit(1);
    }
    s->v[s->n++] = a;
}

static int act_cmp(const void *a, const void *b)
{
    const act *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return (int)x->k - (int)y->k;
}

/* Draw the schedule: the workload from one stream, the faults from another. */
static void sched_draw(sched *s)
{
    rng wl = {s->seed ^ 0x5eed0f10adull}, fr = {s->seed ^ 0xfa017ull};
    int64_t D = s->duration_ms;
    int scen = s->scenario;
    bool mixed = scen == SC_MIXED;

    /* configuration */
    s->net[0] = 0;
    if (scen == SC_LOSSY_NET || mixed) {
        double k = mixed ? 0.5 : 1.0;
        snprintf(s->net, sizeof(s->net),
                 "drop=%.3f,dup=%.3f,delay=%.3f,max_delay_ms=%d,reorder=%.3f",
                 k * (0.05 + 0.15 * rng_unit(&fr)), k * (0.05 + 0.15 * rng_unit(&fr)),
                 k * (0.1 + 0.2 * rng_unit(&fr)), (int)rng_range(&fr, 20, 200),
                 k * (0.05 + 0.15 * rng_unit(&fr)));
    }
    if (scen == SC_DISK_FULL || mixed) {
        /* room for the run's own log, so that the ballast, not the workload, fills it */
        s->master_map_max = 8 * MIB + (uint64_t)s->workflows * 64 * 1024;
        s->worker_map_max = 1 * MIB;
    }

    /* the workload: starts spread over the first 80% of the window, user commands on
     * about a third of them */
    int64_t span = D * 8 / 10 > 1000 ? D * 8 / 10 : 1000, last = 0;
    for (int i = 0; i < s->workflows; i++) {
        act a = {.at_ms = 300 + span * i / s->workflows +
                          rng_range(&wl, 0, span / s->workflows / 2),
                 .k = K_START, .target = i};
        /* strictly increasing: a replayed schedule numbers its starts by their order */
        if (a.at_ms <= last)
            a.at_ms = last + 1;
        last = a.at_ms;
        unsigned p = (unsigned)rng_range(&wl, 0, 99), acc = 0;
        const wdef *d = &defs[0];
        for (int j = 0; j < NDEFS; j++) {
            acc += defs[j].weight;
            if (p < acc) {
                d = &defs[j];
                break;
            }
        }
        snprintf(a.wf, sizeof(a.wf), "%s", d->name);
        sched_add(s, a);
        /* commands go mostly to the runs that last long enough to be caught running */
        bool slow = strcmp(d->name, "chaos_long") == 0 || strcmp(d->name, "chaos_parent") == 0;
        if (rng_unit(&wl) >= (slow ? 0.6 : 0.2))
            continue;
        int64_t t1 = a.at_ms + rng_range(&wl, 50, slow ? 1500 : 400);
        int what = (int)rng_range(&wl, 0, 3);
        if (t1 >= D)
            continue;
        switch (what) {
        case 0: { /* pause, then resume */
            sched_add(s, (act){.at_ms = t1, .k = K_PAUSE, .target = i});
            int64_t t2 = t1 + rng_range(&wl, 500, 3000);
            sched_add(s, (act){.at_ms = t2 < D ? t2 : D, .k = K_RESUME, .target = i});
            break;
        }
        case 1:
            sched_add(s, (act){.at_ms = t1, .k = K_STOP, .target = i});
            break;
        case 2: { /* stop, then recover */
            sched_add(s, (act){.at_ms = t1, .k = K_STOP, .target = i});
            int64_t t2 = t1 + rng_range(&wl, 1000, 2500);
            if (t2 < D)
                sched_add(s, (act){.at_ms = t2, .k = K_RECOVER, .target = i});
            break;
        }
        default:
            sched_add(s, (act){.at_ms = t1, .k = K_KILL, .target = i});
        }
    }

    /* the faults; busy[] keeps two faults off one process at once */
    int64_t busy[MAXW + 1] = {0}; /* [0] master, [1 + i] worker i */
    kind kinds[8];
    int nk = 0;
    int64_t gap_lo = 1500, gap_hi = 4000;
    switch (scen) {
    case SC_MASTER_CRASH: kinds[nk++] = K_MASTER_KILL; gap_lo = 2000; gap_hi = 5000; break;
    case SC_WORKER_CRASH: kinds[nk++] = K_WORKER_KILL; break;
    case SC_PARTITION:
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_MASTER_STOP;
        gap_lo = 2000;
        gap_hi = 5000;
        break;
    case SC_LOSSY_NET: break;
    case SC_DISK_FULL:
        kinds[nk++] = K_DISK_FULL;
        kinds[nk++] = K_DISK_FULL;
        kinds[nk++] = K_SLOW_DISK;
        gap_lo = 3000;
        gap_hi = 6000;
        break;
    default:
        kinds[nk++] = K_MASTER_KILL;
        kinds[nk++] = K_WORKER_KILL;
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_MASTER_STOP;
        kinds[nk++] = K_DISK_FULL;
        kinds[nk++] = K_SLOW_DISK;
    }
    for (int64_t t = 1000 + rng_range(&fr, 0, 1000); nk && t < D - 500;
         t += rng_range(&fr, gap_lo, gap_hi)) {
        act a = {.at_ms = t, .k = kinds[rng_range(&fr, 0, nk - 1)]};
        switch (a.k) {
        case K_MASTER_KILL: a.target = -1; a.ms = rng_range(&fr, 0, 2500); break;
        case K_MASTER_STOP: a.target = -1; a.ms = rng_range(&fr, 2500, 4000); break;
        case K_WORKER_KILL:
            a.target = (int)rng_range(&fr, 0, s->workers - 1);
            a.ms = rng_range(&fr, 100, 4000);
            break;
        case K_WORKER_STOP:
            a.target = (int)rng_range(&fr, 0, s->workers - 1);
            a.ms = rng_range(&fr, 2500, 6000);
            break;
        case K_SLOW_DISK: /* the master one time in two */
            a.target = rng_unit(&fr) < 0.5 ? -1 : (int)rng_range(&fr, 0, s->workers - 1);
            a.ms = rng_range(&fr, 2000, 5000);
            a.iops = rng_range(&fr, 4, 20);
            break;
        default: /* disk-full: the master one time in two */
            a.target = rng_unit(&fr) < 0.5 ? -1 : (int)rng_range(&fr, 0, s->workers - 1);
            a.ms = rng_range(&fr, 1500, 4000);
        }
        int b = a.target + 1;
        if (busy[b] > t)
            continue;
        busy[b] = t + a.ms + 1000;
        sched_add(s, a);
    }
    /* master-crash: some starts crash the master the moment it answers, away from the
     * other faults on the master */
    if (scen == SC_MASTER_CRASH || mixed) {
        for (size_t i = 0; i < s->n; i++) {
            act *a = &s->v[i];
            if (a->k != K_START || rng_unit(&fr) >= (mixed ? 0.15 : 0.3))
                continue;
            int64_t ms = rng_range(&fr, 0, 1500), from = a->at_ms - 200,
                    to = a->at_ms + ms + 500;
            bool clash = false;
            for (size_t j = 0; j < s->n; j++) {
                const act *b = &s->v[j];
                bool on_master =
                    j != i && (b->k == K_START_CRASH || (IS_FAULT(b->k) && b->target < 0));
                if (on_master && b->at_ms < to && b->at_ms + b->ms + 500 > from)
                    clash = true;
            }
            if (clash)
                continue;
            a->k = K_START_CRASH;
            a->ms = ms;
        }
    }
    qsort(s->v, s->n, sizeof(act), act_cmp);
}

static void target_name(const act *a, char *buf, size_t len)
{
    if (a->k == K_START || a->k == K_START_CRASH)
        snprintf(buf, len, "%s", a->wf);
    else if (!IS_FAULT(a->k))
        snprintf(buf, len, "#%d", a->target);
    else if (a->k == K_MASTER_KILL || a->k == K_MASTER_STOP)
        buf[0] = 0;
    else if (a->target < 0)
        snprintf(buf, len, "master");
    else
        snprintf(buf, len, "w%d", a->target);
}

static int sched_write(const sched *s, const char *path)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    fprintf(f, "# tern chaos schedule v1: `tern chaos --replay-schedule %s` runs it again\n",
            path);
    fprintf(f, "seed %" PRIu64 "\nscenario %s\nduration_ms %" PRId64 "\nworkers %d\n"
            "workflows %d\nnet %s\nmaster_map_max %" PRIu64 "\nworker_map_max %" PRIu64 "\n",
            s->seed, scenario_names[s->scenario], s->duration_ms, s->workers, s->workflows,
            s->net[0] ? s->net : "-", s->master_map_max, s->worker_map_max);
    fprintf(f, "# AT_MS ACTION [TARGET] [MS]\n");
    for (size_t i = 0; i < s->n; i++) {
        const act *a = &s->v[i];
        char t[64];
        target_name(a, t, sizeof(t));
        fprintf(f, "%" PRId64 " %s%s%s", a->at_ms, kind_names[a->k], t[0] ? " " : "", t);
        if (a->k == K_START_CRASH || IS_FAULT(a->k))
            fprintf(f, " %" PRId64, a->ms);
        if (a->k == K_SLOW_DISK)
            fprintf(f, " %" PRId64, a->iops);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Read a schedule written by sched_write. Returns 0, or prints what is wrong and returns 1. */
static int sched_read(const char *path, sched *s)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return tn_cli_fail("chaos", "%s: cannot read the schedule: %m", path);
    char line[512];
    int ln = 0, rc = 0;
    bool have_seed = false, have_sc = false;
    s->scenario = -1;
    while (!rc && fgets(line, sizeof(line), f)) {
        ln++;
        line[strcspn(line, "\r\n")] = 0;
        char *p = line;
        while (*p == ' ')
            p++;
        if (!*p || *p == '#')
            continue;
        char w1[64] = "", w2[200] = "", w3[64] = "", w4[64] = "", w5[64] = "";
        int n = sscanf(p, "%63s %199s %63s %63s %63s", w1, w2, w3, w4, w5);
        if (isdigit((unsigned char)w1[0])) {
            act a = {.at_ms = strtoll(w1, NULL, 10), .k = K__COUNT};
            for (int k = 0; k < K__COUNT; k++)
                if (strcmp(w2, kind_names[k]) == 0)
                    a.k = (kind)k;
            const char *ms = NULL, *tg = w3;
            if (a.k == K__COUNT) {
                rc = 1;
            } else if (a.k == K_START || a.k == K_START_CRASH) {
                rc = !find_def(w3) || find_def(w3)->weight == 0;
                snprintf(a.wf, sizeof(a.wf), "%.*s", (int)sizeof(a.wf) - 1, w3);
                ms = a.k == K_START_CRASH ? w4 : NULL;
            } else if (!IS_FAULT(a.k)) {
                rc = w3[0] != '#';
                a.target = atoi(w3 + 1);
            } else if (a.k == K_MASTER_KILL || a.k == K_MASTER_STOP) {
                a.target = -1;
                ms = w3;
            } else {
                ms = w4;
                if (strcmp(tg, "master") == 0)
                    a.target = -1;
                else if (tg[0] == 'w' && isdigit((unsigned char)tg[1]))
                    a.target = atoi(tg + 1);
                else
                    rc = 1;
            }
            if (ms)
                a.ms = strtoll(ms, NULL, 10);
            if (a.k == K_SLOW_DISK && (a.iops = strtoll(w5, NULL, 10)) <= 0)
                rc = 1;
            if (rc || (ms && !*ms)) {
                rc = tn_cli_fail("chaos", "%s:%d: expected `AT_MS ACTION [TARGET] [MS]` with "
                                 "ACTION one of start, start-crash, pause, resume, stop, "
                                 "recover, kill, master-kill, master-stop, worker-kill, "
                                 "worker-stop, disk-full, slow-disk", path, ln);
                break;
            }
            sched_add(s, a);
        } else if (n >= 2 && strcmp(w1, "seed") == 0) {
            s->seed = strtoull(w2, NULL, 10);
            have_seed = true;
        } else if (n >= 2 && strcmp(w1, "scenario") == 0) {
            for (int i = 0; i < SC__COUNT; i++)
                if (strcmp(w2, scenario_names[i]) == 0)
                    s->scenario = i;
            have_sc = s->scenario >= 0;
        } else if (n >= 2 && strcmp(w1, "duration_ms") == 0) {
            s->duration_ms = strtoll(w2, NULL, 10);
        } else if (n >= 2 && strcmp(w1, "workers") == 0) {
            s->workers = atoi(w2);
        } else if (n >= 2 && strcmp(w1, "workflows") == 0) {
            s->workflows = atoi(w2);
        } else if (n >= 2 && strcmp(w1, "net") == 0) {
            snprintf(s->net, sizeof(s->net), "%s", strcmp(w2, "-") ? w2 : "");
        } else if (n >= 2 && strcmp(w1, "master_map_max") == 0) {
            s->master_map_max = strtoull(w2, NULL, 10);
        } else if (n >= 2 && strcmp(w1, "worker_map_max") == 0) {
            s->worker_map_max = strtoull(w2, NULL, 10);
        } else {
            rc = tn_cli_fail("chaos", "%s:%d: unknown line \"%s\"", path, ln, p);
        }
    }
    fclose(f);
    if (rc)
        return rc;
    if (!have_seed || !have_sc || s->duration_ms <= 0 || s->workers < 1 || s->workers > MAXW)
        return tn_cli_fail("chaos", "%s: not a complete schedule (seed, scenario, duration_ms "
                           "and workers 1..%d are required)", path, MAXW);
    /* starts are numbered in the order they come (#N in the commands) */
    int nstarts = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].k == K_START || s->v[i].k == K_START_CRASH)
            s->v[i].target = nstarts++;
    s->workflows = nstarts;
    for (size_t i = 0; i < s->n; i++)
        if (!IS_FAULT(s->v[i].k) && s->v[i].target >= nstarts)
            return tn_cli_fail("chaos", "%s: a command names start #%d; the schedule has %d "
                               "starts", path, s->v[i].target, nstarts);
    for (size_t i = 0; i < s->n; i++)
        if (IS_FAULT(s->v[i].k) && s->v[i].target >= s->workers)
            return tn_cli_fail("chaos", "%s: a fault names worker w%d; the schedule has %d",
                               path, s->v[i].target, s->workers);
    qsort(s->v, s->n, sizeof(act), act_cmp);
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* the run */

/* One daemon process, over all its incarnations. */
typedef struct dproc {
    char role[16];      /* "master", "w0" ... */
    pid_t pid;          /* 0: not running */
    bool killed;        /* we sent SIGKILL/SIGTERM: its exit is expected */
    bool terming;       /* we sent SIGTERM: it must exit with status 0 */
    bool stopped;       /* SIGSTOPped */
    int64_t restart_at; /* monotonic ms; 0: none due */
    int64_t cont_at;    /* SIGCONT due (monotonic ms) */
    uint32_t starts;
    uint64_t rss_max;   /* bytes of RssAnon, over every incarnation */
    char exit_note[320]; /* an exit we did not cause */
} dproc;

typedef struct viol {
    int inv;
    uint64_t seq, task;
    uint32_t attempt;
    char what[400];
} viol;

typedef struct inst {
    uint64_t id;   /* 0: never accepted */
    bool touched;  /* a user command was sent about it */
    int outcome;   /* start: 1 accepted, 2 refused, 3 unknown */
} inst;

typedef struct ballast {
    uint32_t keys;       /* ballast keys in the store now */
    uint64_t map_max;    /* the store's size limit as the harness opens it */
    int64_t free_at;     /* monotonic ms when the disk frees again; 0: not full */
    int64_t next_topup;
} ballast;

/* A slow disk: the daemon moved into a blkio (cgroup v1) group whose writes to the data
 * directory's device are throttled to a few operations a second, so every fsync crawls. */
typedef struct slowdisk {
    int64_t until; /* monotonic ms; 0: not slowed */
    pid_t pid;     /* the process moved */
    char orig[256]; /* its blkio group before */
} slowdisk;

typedef struct run {
    sched s;
    char exe[PATH_MAX], dir[PATH_MAX], runid[16];
    bool keep, json;
    int64_t settle_ms;
    uint64_t rss_bound;
    int master_port, worker_port[MAXW];
    char master_url[64], ctl_url[PATH_MAX + 32];
    dproc d[MAXW + 1]; /* [0] master, [1 + i] worker i */
    ballast disk[MAXW + 1];
    slowdisk slow[MAXW + 1];
    char blkio[PATH_MAX];     /* the blkio hierarchy's mount, "" when there is none */
    char blkdev[32];          /* "MAJ:MIN" of the device under DIR */
    char slow_why[200];       /* why slow disks cannot be injected here */
    pthread_mutex_t mu; /* d[], inst[], counters below (the workload thread and main) */
    inst *inst;
    int64_t t0;         /* monotonic ms of the start of the window */
    /* counters */
    uint64_t faults[K__COUNT], skipped[K__COUNT], ballast_bytes;
    uint64_t starts_accepted, starts_refused_full, starts_refused_other, starts_unknown;
    uint64_t cmds_ok[K__COUNT], cmds_refused[K__COUNT], cmds_unknown[K__COUNT];
    uint64_t not_issued;    /* workload actions still due when the window closed */
    atomic_bool workload_done;
    char last_refusal[300], last_cmd_refusal[300];
    /* results */
    viol *viols;
    size_t nviols, capviols;
    uint64_t inv_count[8];
    char inv_note[8][300];
    int64_t settle_took_ms;
    bool settled;
    char waiting_on[1000];
    uint64_t wf_states[TN_WF_S__COUNT];
    uint64_t replay_events;
    uint64_t journal_attempts, journal_reruns, journal_cross;
    uint64_t results_checked;
} run;

static atomic_bool interrupted;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&interrupted, true);
}

static int64_t now_ms(void) { return tn_mono_ns() / 1000000; }

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void say(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run *r, const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    int64_t t = r->t0 ? now_ms() - r->t0 : 0;
    fprintf(stderr, "chaos: t=%" PRId64 ".%01" PRId64 "s %s\n", t / 1000, (t % 1000) / 100, buf);
}

static void violation(run *r, int inv, uint64_t seq, uint64_t task, uint32_t attempt,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void violation(run *r, int inv, uint64_t seq, uint64_t task, uint32_t attempt,
                      const char *fmt, ...)
{
    if (!tn_grow((void **)&r->viols, &r->capviols, r->nviols + 1, sizeof(*r->viols)))
        return;
    viol *v = &r->viols[r->nviols++];
    *v = (viol){.inv = inv, .seq = seq, .task = task, .attempt = attempt};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->what, sizeof(v->what), fmt, ap);
    va_end(ap);
}

/* Whether 127.0.0.1:port can be bound now; port 0: any, *got says which. */
static bool port_free(int port, int *got)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (ok && got)
        *got = ntohs(a.sin_port);
    close(fd);
    return ok;
}

/* A port for a daemon to listen at, for the whole run (a restarted daemon listens there
 * again). It is below the kernel's ephemeral range: one picked from that range was taken
 * by some process's outgoing connection between the pick and the listen (a worker failed
 * to start: "Address in use"), and could be while a daemon is down between a kill and its
 * restart. Not drawn from the schedule's seed: ports are not part of the schedule. */
static int free_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    int lo = 32768, a, b;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    if (f) {
        if (fscanf(f, "%d %d", &a, &b) == 2 && a > 2048 && a <= 65535)
            lo = a;
        fclose(f);
    }
    for (int i = 0; i < 200; i++) {
        int port = 1024 + (int)((unsigned)rand_r(&seed) % (unsigned)(lo - 1024));
        if (port_free(port, NULL))
            return port;
    }
    int port = -1;
    return port_free(0, &port) ? port : -1;
}

static void worker_name(const run *r, int i, char *buf, size_t len)
{
    snprintf(buf, len, "chaos-%s-w%d", r->runid, i);
}

/* Start daemon idx (0 master, 1 + i worker i) with its log appended to DIR/ROLE.log.
 * Called with r->mu held. */
static int spawn_daemon(run *r, int idx)
{
    dproc *d = &r->d[idx];
    char a[24][PATH_MAX + 32];
    char *argv[25];
    int n = 0;
#define ARG(...) (snprintf(a[n], sizeof(a[n]), __VA_ARGS__), argv[n] = a[n], n++)
    ARG("%s", r->exe);
    if (idx == 0) {
        ARG("master");
        ARG("--listen");
        ARG("%s", r->master_url);
        ARG("--data");
        ARG("%s/master", r->dir);
        ARG("--ctl");
        ARG("%s", r->ctl_url);
        ARG("--heartbeat-timeout");
        ARG("%dms", HB_TIMEOUT_MS);
        ARG("--id");
        ARG("chaos");
        if (r->s.master_map_max) {
            ARG("--map-max");
            ARG("%" PRIu64, r->disk[0].map_max);
        }
    } else {
        int w = idx - 1;
        char name[64];
        worker_name(r, w, name, sizeof(name));
        ARG("worker");
        ARG("--master");
        ARG("%s", r->master_url);
        ARG("--listen");
        ARG("tcp://127.0.0.1:%d", r->worker_port[w]);
        ARG("--data");
        ARG("%s/w%d", r->dir, w);
        ARG("--ctl");
        ARG("ipc://%s/w%d.ctl", r->dir, w);
        ARG("--name");
        ARG("%s", name);
        ARG("--heartbeat");
        ARG("200ms");
        ARG("--slots");
        ARG("4");
        if (r->s.worker_map_max) {
            ARG("--map-max");
            ARG("%" PRIu64, r->disk[idx].map_max);
        }
    }
#undef ARG
    argv[n] = NULL;
    /* the environment: ours, without what would confuse the run, plus the run's marker
     * (every task process inherits it) and the network faults */
    extern char **environ;
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 4, sizeof(char *));
    char mark[96], faults[300], level[] = "TERN_LOG_LEVEL=info";
    if (!envp)
        return -1;
    size_t k = 0;
    bool has_level = false;
    for (size_t i = 0; i < ne; i++) {
        if (!strncmp(environ[i], "TERN_FAULTS=", 12) ||
            !strncmp(environ[i], "TERN_CHAOS_RUN=", 15) ||
            !strncmp(environ[i], "TERN_ATTEMPT_TAG=", 17))
            continue;
        has_level |= !strncmp(environ[i], "TERN_LOG_LEVEL=", 15);
        envp[k++] = environ[i];
    }
    snprintf(mark, sizeof(mark), "TERN_CHAOS_RUN=%s", r->runid);
    envp[k++] = mark;
    if (!has_level)
        envp[k++] = level;
    if (r->s.net[0]) {
        /* a seed per process and incarnation, drawn from the run's seed */
        snprintf(faults, sizeof(faults), "TERN_FAULTS=seed=%" PRIu64 ",%s",
                 (uint64_t)(r->s.seed * 1000003ull + (uint64_t)idx * 7919ull + d->starts),
                 r->s.net);
        envp[k++] = faults;
    }
    envp[k] = NULL;
    char logp[PATH_MAX + 32];
    snprintf(logp, sizeof(logp), "%s/%s.log", r->dir, d->role);
    int lfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* our terminal's Ctrl-C is for the harness, which stops them */
        /* a daemon that crashes by itself leaves a core where the host's core_pattern says */
        struct rlimit core;
        if (getrlimit(RLIMIT_CORE, &core) == 0) {
            core.rlim_cur = core.rlim_max;
            (void)setrlimit(RLIMIT_CORE, &core);
        }
        if (nfd >= 0)
            dup2(nfd, 0);
        if (lfd >= 0) {
            dup2(lfd, 1);
            dup2(lfd, 2);
        }
        for (long fd = 3; fd < maxfd; fd++)
            close((int)fd);
        execve(r->exe, argv, envp);
        _exit(127);
    }
    if (lfd >= 0)
        close(lfd);
    if (nfd >= 0)
        close(nfd);
    free(envp);
    if (pid < 0)
        return -1;
    d->pid = pid;
    d->killed = false;
    d->stopped = false;
    d->restart_at = 0;
    d->cont_at = 0;
    d->starts++;
    return 0;
}

/* Reap every child: our daemons (an exit we did not cause is noted) and the task
 * processes orphaned to us (the harness is a child subreaper). */
static void reap(run *r)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        pthread_mutex_lock(&r->mu);
        for (int i = 0; i <= r->s.workers; i++) {
            dproc *d = &r->d[i];
            if (d->pid != pid)
                continue;
            bool bad_stop = d->terming && !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            if (!d->killed || bad_stop) {
                char note[sizeof(d->exit_note)];
                snprintf(note, sizeof(note),
                         "%s (pid %d) %s: %s %d%s; see %.100s/%s.log", d->role, (int)pid,
                         bad_stop ? "failed its stop (SIGTERM)" : "exited by itself",
                         WIFEXITED(st) ? "status" : "signal",
                         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                         WIFSIGNALED(st) && WCOREDUMP(st)
                             ? " (core dumped: /proc/sys/kernel/core_pattern says where)"
                             : "",
                         r->dir, d->role);
                memcpy(d->exit_note, note, sizeof(note));
                violation(r, 0, 0, 0, 0, "%s", d->exit_note);
                say(r, "%s", d->exit_note);
                if (!d->killed)
                    d->restart_at = now_ms() + 500; /* recorded; the run goes on */
            }
            d->pid = 0;
            d->stopped = false;
            d->terming = false;
        }
        pthread_mutex_unlock(&r->mu);
    }
}

/* SIGKILL a daemon and have it restarted after ms. With r->mu held. */
static bool kill_daemon(run *r, int idx, int64_t restart_ms)
{
    dproc *d = &r->d[idx];
    if (!d->pid || d->killed)
        return false;
    d->killed = true;
    kill(d->pid, SIGKILL);
    d->restart_at = now_ms() + restart_ms;
    if (d->restart_at == 0)
        d->restart_at = 1;
    d->cont_at = 0;
    return true;
}

static uint64_t rss_anon(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    return tn_proc_kb(p, "RssAnon") * 1024;
}

/* ------------------------------------------------------------------------------ */
/* the control socket */

typedef struct reply {
    int rc;          /* 0 answered ok, 1 answered not ok, -1 no answer (no master), -2 timeout */
    char text[600];
    char json[8192];
} reply;

static void ctl_call(run *r, tn_ctl_req *q, int timeout_ms, reply *out)
{
    tn_buf b = {0};
    out->rc = -1;
    out->text[0] = out->json[0] = 0;
    if (tn_ctl_req_encode(q, &b)) {
        snprintf(out->text, sizeof(out->text), "request too large");
        return;
    }
    void *raw = NULL;
    size_t rl = 0;
    tn_errmsg m = {{0}};
    tn_err e = tn_rpc_call(r->ctl_url, b.data, b.size, timeout_ms, &raw, &rl, &m);
    tn_buf_free(&b);
    if (e) {
        out->rc = e == TN_ERR_TIMEOUT ? -2 : -1;
        snprintf(out->text, sizeof(out->text), "%s", m.text);
        return;
    }
    tn_ctl_rep rep;
    if (tn_ctl_rep_decode(raw, rl, &rep) == TN_OK) {
        out->rc = rep.ok ? 0 : 1;
        snprintf(out->text, sizeof(out->text), "%.*s", (int)rep.text.len, rep.text.p);
        snprintf(out->json, sizeof(out->json), "%.*s", (int)rep.json.len, rep.json.p);
    } else {
        snprintf(out->text, sizeof(out->text), "malformed reply");
    }
    free(raw);
}

/* A command as a user would send it: while nothing listens (the master is down), try again
 * for a while; a timeout leaves the outcome unknown and is not retried. */
static void ctl_retry(run *r, tn_ctl_req *q, reply *out)
{
    int64_t until = now_ms() + 8000;
    for (;;) {
        ctl_call(r, q, CTL_TIMEOUT_MS, out);
        if (out->rc != -1 || now_ms() > until || atomic_load(&interrupted))
            return;
        sleep_ms(200);
    }
}

static uint64_t json_u64(const char *json, const char *key)
{
    const char *p = strstr(json, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static int apply_defs(run *r)
{
    char dd[PATH_MAX + 8];
    snprintf(dd, sizeof(dd), "%s/defs", r->dir);
    tn_mkdir_p(dd);
    /* chaos_child before chaos_parent, which names it */
    static const int order[NDEFS] = {5, 0, 1, 2, 3, 4};
    for (int oi = 0; oi < NDEFS; oi++) {
        const wdef *w = &defs[order[oi]];
        char path[PATH_MAX + 80];
        snprintf(path, sizeof(path), "%s/%s.yaml", dd, w->name);
        FILE *f = fopen(path, "we");
        if (!f || fputs(w->yaml, f) < 0 || fclose(f) != 0)
            return tn_cli_fail("chaos", "%s: cannot write: %m", path);
        tn_def *d;
        tn_errmsg m = {{0}};
        if (tn_def_parse_file(path, &d, &m))
            return tn_cli_fail("chaos", "%s", m.text);
        char *bytes;
        size_t len;
        if (tn_def_encode(d, &bytes, &len)) {
            tn_def_free(d);
            return tn_cli_fail("chaos", "%s: cannot encode", path);
        }
        tn_def_free(d);
        tn_ctl_req *q = calloc(1, sizeof(*q));
        reply rp;
        if (!q) {
            free(bytes);
            return tn_cli_fail("chaos", "out of memory");
        }
        q->cmd = TN_STR("apply");
        q->file = tn_str_c(path);
        q->bytes = (tn_str){bytes, (uint32_t)len};
        q->actor = TN_STR("user:chaos");
        ctl_retry(r, q, &rp);
        free(q);
        free(bytes);
        if (rp.rc != 0)
            return tn_cli_fail("chaos", "%s: the master did not take the definition: %s", path,
                               rp.text);
    }
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* the workload thread */

/* A task of the instance to kill: a running one, else one being dispatched. */
static uint64_t pick_task(const char *json)
{
    const char *want[] = {"\"state\":\"RUNNING_EXECUTION\"", "\"state\":\"DISPATCH\""};
    const char *tasks = strstr(json, "\"tasks\":[");
    if (!tasks)
        return 0;
    for (int w = 0; w < 2; w++) {
        for (const char *p = tasks; (p = strstr(p, "{\"id\":")); p++) {
            const char *end = strchr(p, '}');
            const char *s = strstr(p, want[w]);
            if (s && end && s < end)
                return strtoull(p + 6, NULL, 10);
        }
    }
    return 0;
}

static void do_start(run *r, const act *a)
{
    tn_ctl_req *q = calloc(1, sizeof(*q));
    reply rp;
    if (!q)
        return;
    q->cmd = TN_STR("start");
    q->name = tn_str_c(a->wf);
    q->actor = TN_STR("user:chaos");
    ctl_retry(r, q, &rp);
    free(q);
    pthread_mutex_lock(&r->mu);
    inst *in = &r->inst[a->target];
    if (rp.rc == 0 && (in->id = json_u64(rp.json, "\"id\":")) > 0) {
        in->outcome = 1;
        r->starts_accepted++;
        if (a->k == K_START_CRASH && kill_daemon(r, 0, a->ms)) {
            r->faults[K_START_CRASH]++;
            say(r, "start-crash: %s instance %" PRIu64 " accepted; master SIGKILLed at once, "
                "restart in %" PRId64 "ms", a->wf, in->id, a->ms);
        } else if (a->k == K_START_CRASH) {
            r->skipped[K_START_CRASH]++;
        }
    } else if (rp.rc == 1) {
        in->outcome = 2;
        if (strstr(rp.text, "full"))
            r->starts_refused_full++;
        else
            r->starts_refused_other++;
        snprintf(r->last_refusal, sizeof(r->last_refusal), "%.290s", rp.text);
    } else {
        in->outcome = 3;
        r->starts_unknown++;
    }
    pthread_mutex_unlock(&r->mu);
}

static void do_command(run *r, const act *a)
{
    pthread_mutex_lock(&r->mu);
    inst *in = &r->inst[a->target];
    uint64_t id = in->id;
    if (id)
        in->touched = true;
    pthread_mutex_unlock(&r->mu);
    if (!id)
        return; /* its start was not accepted */
    tn_ctl_req *q = calloc(1, sizeof(*q));
    reply rp = {.rc = 0};
    if (!q)
        return;
    q->actor = TN_STR("user:chaos");
    q->id = id;
    if (a->k == K_KILL) {
        q->cmd = TN_STR("status");
        ctl_retry(r, q, &rp);
        q->id = rp.rc == 0 ? pick_task(rp.json) : 0;
    }
    if (q->id) {
        q->cmd = tn_str_c(kind_names[a->k]);
        ctl_retry(r, q, &rp);
    }
    free(q);
    pthread_mutex_lock(&r->mu);
    if (rp.rc == 0)
        r->cmds_ok[a->k]++;
    else if (rp.rc == 1) {
        r->cmds_refused[a->k]++;
        snprintf(r->last_cmd_refusal, sizeof(r->last_cmd_refusal), "%s #%d: %.250s",
                 kind_names[a->k], a->target, rp.text);
    }
    else
        r->cmds_unknown[a->k]++;
    pthread_mutex_unlock(&r->mu);
}

static void *workload_thread(void *arg)
{
    run *r = arg;
    for (size_t i = 0; i < r->s.n && !atomic_load(&interrupted); i++) {
        const act *a = &r->s.v[i];
        if (IS_FAULT(a->k))
            continue;
        if (now_ms() - r->t0 >= r->s.duration_ms) {
            /* behind schedule (calls waited on a master that was down): the window is
             * over, and with it the workload */
            pthread_mutex_lock(&r->mu);
            r->not_issued++;
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        while (now_ms() - r->t0 < a->at_ms && !atomic_load(&interrupted))
            sleep_ms(a->at_ms - (now_ms() - r->t0) > 50 ? 50 : a->at_ms - (now_ms() - r->t0));
        if (a->k == K_START || a->k == K_START_CRASH)
            do_start(r, a);
        else
            do_command(r, a);
    }
    atomic_store(&r->workload_done, true);
    return NULL;
}

/* ------------------------------------------------------------------------------ */
/* the full disk: ballast written into a daemon's store until a commit fails, freed later */

static void store_dir(const run *r, int idx, char *buf, size_t len)
{
    if (idx == 0)
        snprintf(buf, len, "%s/master", r->dir);
    else
        snprintf(buf, len, "%s/w%d", r->dir, idx - 1);
}

/* Fill: puts of shrinking size until even a small one does not fit. Returns bytes put. */
static uint64_t ballast_fill(run *r, int idx)
{
    char dir[PATH_MAX + 16];
    store_dir(r, idx, dir, sizeof(dir));
    ballast *b = &r->disk[idx];
    tn_store_opts o = {.map_max = b->map_max};
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_store_open(dir, &o, &s, &m) != TN_OK) {
        say(r, "disk-full: cannot open %s: %s", dir, m.text);
        return 0;
    }
    tn_batch *bt;
    uint64_t put = 0;
    static char zeros[256 * 1024];
    if (tn_batch_new(&bt) == TN_OK) {
        for (size_t sz = sizeof(zeros); sz >= 256; sz /= 4) {
            for (int tries = 0; tries < 4096; tries++) {
                char key[48];
                int kl = snprintf(key, sizeof(key), "chaos/ballast/%06u", b->keys);
                tn_batch_reset(bt);
                tn_batch_put(bt, TN_DB_META, key, (size_t)kl, zeros, sz);
                tn_err e = tn_store_commit(s, bt, &m);
                if (e != TN_OK)
                    break;
                b->keys++;
                put += sz;
            }
        }
        tn_batch_free(bt);
    }
    tn_store_close(s);
    return put;
}

/* Free the disk: delete the ballast (in a store grown by 1 MiB, since even a delete needs
 * fresh pages), then commit twice more: LMDB reuses the pages a transaction frees only
 * from the second transaction after it, and a daemon whose every commit fails never gets
 * there by itself (a failed transaction does not advance the transaction id). */
static void ballast_free(run *r, int idx)
{
    char dir[PATH_MAX + 16];
    store_dir(r, idx, dir, sizeof(dir));
    ballast *b = &r->disk[idx];
    uint64_t grown = b->map_max + MIB;
    tn_store_opts o = {.map_size = grown, .map_max = grown};
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_store_open(dir, &o, &s, &m) != TN_OK) {
        say(r, "disk-full: cannot open %s to free it: %s", dir, m.text);
        return;
    }
    tn_batch *bt;
    tn_err e = tn_batch_new(&bt);
    for (uint32_t i = 0; !e && i < b->keys; i++) {
        char key[48];
        int kl = snprintf(key, sizeof(key), "chaos/ballast/%06u", i);
        tn_batch_del(bt, TN_DB_META, key, (size_t)kl);
    }
    /* a commit even with nothing to delete, so the new size reaches the file */
    if (!e && !b->keys)
        tn_batch_del(bt, TN_DB_META, "chaos/ballast/none", 18);
    if (!e)
        e = tn_store_commit(s, bt, &m);
    /* two more transactions, so that the daemon's next one may reuse what was freed */
    for (int i = 0; !e && i < 2; i++) {
        tn_batch_reset(bt);
        if (i == 0)
            tn_batch_put(bt, TN_DB_META, "chaos/ballast/flush", 19, "x", 1);
        else
            tn_batch_del(bt, TN_DB_META, "chaos/ballast/flush", 19);
        e = tn_store_commit(s, bt, &m);
    }
    tn_batch_free(bt);
    tn_store_close(s);
    if (e != TN_OK) {
        say(r, "disk-full: cannot free %s: %s", dir, m.text);
        return;
    }
    b->keys = 0;
    b->map_max = grown;
}

/* The blkio hierarchy and the whole-disk device under DIR; false (and why) when this host
 * cannot throttle. */
static bool slow_probe(run *r)
{
    if (r->blkio[0])
        return true;
    if (r->slow_why[0])
        return false;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    while (f && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - cgroup ");
        char mp[PATH_MAX];
        if (sep && strstr(sep, "blkio") && sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1) {
            snprintf(r->blkio, sizeof(r->blkio), "%s", mp);
            break;
        }
    }
    if (f)
        fclose(f);
    struct stat st;
    if (!r->blkio[0]) {
        snprintf(r->slow_why, sizeof(r->slow_why), "no cgroup v1 blkio hierarchy is mounted");
        return false;
    }
    if (stat(r->dir, &st) != 0 || major(st.st_dev) == 0) {
        snprintf(r->slow_why, sizeof(r->slow_why), "%.150s is not on a block device", r->dir);
        r->blkio[0] = 0;
        return false;
    }
    /* a partition is throttled through its disk */
    char p[128], dev[32] = "";
    snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/partition", major(st.st_dev), minor(st.st_dev));
    if (access(p, F_OK) == 0)
        snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../dev", major(st.st_dev),
                 minor(st.st_dev));
    else
        snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/dev", major(st.st_dev), minor(st.st_dev));
    f = fopen(p, "re");
    if (f && fgets(dev, sizeof(dev), f))
        dev[strcspn(dev, "\n")] = 0;
    if (f)
        fclose(f);
    if (!dev[0]) {
        snprintf(r->slow_why, sizeof(r->slow_why), "%s: cannot find the device", p);
        r->blkio[0] = 0;
        return false;
    }
    snprintf(r->blkdev, sizeof(r->blkdev), "%s", dev);
    return true;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void slow_group(const run *r, int idx, char *buf, size_t len)
{
    snprintf(buf, len, "%s/tern-chaos-%s-%s", r->blkio, r->runid, r->d[idx].role);
}

/* Throttle daemon idx's writes to iops a second. With r->mu held. */
static bool slow_start(run *r, int idx, int64_t iops, char *why, size_t wlen)
{
    pid_t pid = r->d[idx].pid;
    if (!pid || !slow_probe(r)) {
        snprintf(why, wlen, "%s", pid ? r->slow_why : "not running");
        return false;
    }
    char g[PATH_MAX + 64], f[PATH_MAX + 128], v[64], line[512];
    slow_group(r, idx, g, sizeof(g));
    if (mkdir(g, 0755) != 0 && errno != EEXIST) {
        snprintf(why, wlen, "%.200s: %s", g, strerror(errno));
        return false;
    }
    snprintf(f, sizeof(f), "%s/blkio.throttle.write_iops_device", g);
    snprintf(v, sizeof(v), "%s %" PRId64, r->blkdev, iops);
    if (write_file(f, v) != 0) {
        snprintf(why, wlen, "%.200s: %s", f, strerror(errno));
        return false;
    }
    /* where it was, to put it back */
    slowdisk *sd = &r->slow[idx];
    snprintf(f, sizeof(f), "/proc/%d/cgroup", (int)pid);
    FILE *cf = fopen(f, "re");
    snprintf(sd->orig, sizeof(sd->orig), "/");
    while (cf && fgets(line, sizeof(line), cf)) {
        char *c = strstr(line, ":blkio:");
        if (c) {
            c[7 + strcspn(c + 7, "\n")] = 0;
            snprintf(sd->orig, sizeof(sd->orig), "%s", c + 7);
        }
    }
    if (cf)
        fclose(cf);
    snprintf(f, sizeof(f), "%s/cgroup.procs", g);
    snprintf(v, sizeof(v), "%d", (int)pid);
    if (write_file(f, v) != 0) {
        snprintf(why, wlen, "%.200s: %s", f, strerror(errno));
        return false;
    }
    sd->pid = pid;
    return true;
}

static void slow_end(run *r, int idx)
{
    slowdisk *sd = &r->slow[idx];
    char f[PATH_MAX + 300], v[32];
    snprintf(f, sizeof(f), "%s%s/cgroup.procs", r->blkio, sd->orig);
    snprintf(v, sizeof(v), "%d", (int)sd->pid);
    if (sd->pid && sd->pid == r->d[idx].pid)
        (void)write_file(f, v);
    sd->until = 0;
    sd->pid = 0;
}

/* At the end: the groups go (empty by then: their daemons stopped or moved back). */
static void slow_cleanup(run *r)
{
    for (int i = 0; r->blkio[0] && i <= r->s.workers; i++) {
        char g[PATH_MAX + 64];
        slow_group(r, i, g, sizeof(g));
        (void)rmdir(g);
    }
}

/* ------------------------------------------------------------------------------ */
/* faults (main thread) */

static void do_fault(run *r, const act *a)
{
    int idx = a->target + 1;
    char t[64];
    target_name(a, t, sizeof(t));
    if (!t[0])
        snprintf(t, sizeof(t), "master");
    pthread_mutex_lock(&r->mu);
    dproc *d = &r->d[idx];
    bool done = false;
    switch (a->k) {
    case K_MASTER_KILL:
    case K_WORKER_KILL:
        done = kill_daemon(r, idx, a->ms);
        if (done)
            say(r, "%s %s: SIGKILL, restart in %" PRId64 "ms", kind_names[a->k], t, a->ms);
        break;
    case K_MASTER_STOP:
    case K_WORKER_STOP:
        if (d->pid && !d->killed && !d->stopped) {
            kill(d->pid, SIGSTOP);
            d->stopped = true;
            d->cont_at = now_ms() + a->ms;
            done = true;
            say(r, "%s %s: SIGSTOP for %" PRId64 "ms (heartbeat timeout %dms)", kind_names[a->k],
                t, a->ms, HB_TIMEOUT_MS);
        }
        break;
    case K_DISK_FULL:
        if (r->disk[idx].map_max && !r->disk[idx].free_at) {
            pthread_mutex_unlock(&r->mu);
            uint64_t n = ballast_fill(r, idx);
            pthread_mutex_lock(&r->mu);
            r->ballast_bytes += n;
            r->disk[idx].free_at = now_ms() + a->ms;
            r->disk[idx].next_topup = now_ms() + 250;
            done = true;
            say(r, "disk-full %s: %" PRIu64 " KiB of ballast, the store is full for %" PRId64
                "ms", t, n / 1024, a->ms);
        }
        break;
    case K_SLOW_DISK: {
        char why[300];
        if (!r->slow[idx].until && slow_start(r, idx, a->iops, why, sizeof(why))) {
            r->slow[idx].until = now_ms() + a->ms;
            done = true;
            say(r, "slow-disk %s: writes throttled to %" PRId64 "/s for %" PRId64 "ms", t,
                a->iops, a->ms);
        } else if (!r->slow[idx].until) {
            say(r, "slow-disk %s: not injected: %s", t, why);
        }
        break;
    }
    default:
        break;
    }
    if (done)
        r->faults[a->k]++;
    else
        r->skipped[a->k]++;
    pthread_mutex_unlock(&r->mu);
}

/* Restarts, SIGCONTs and disk frees that are due; heal_all: all of them now. */
static void tick(run *r, bool heal_all)
{
    reap(r);
    int64_t now = now_ms();
    for (int i = 0; i <= r->s.workers; i++) {
        pthread_mutex_lock(&r->mu);
        dproc *d = &r->d[i];
        if (d->stopped && d->pid && (heal_all || now >= d->cont_at)) {
            kill(d->pid, SIGCONT);
            d->stopped = false;
            say(r, "%s: SIGCONT", d->role);
        }
        if (!d->pid && d->restart_at && (heal_all || now >= d->restart_at)) {
            if (spawn_daemon(r, i) != 0)
                say(r, "%s: cannot restart: %m", d->role);
            else
                say(r, "%s: restarted (pid %d)", d->role, (int)d->pid);
        }
        if (r->slow[i].until && (heal_all || now >= r->slow[i].until || !d->pid)) {
            slow_end(r, i);
            say(r, "slow-disk %s: back to full speed", d->role);
        }
        if (d->pid) {
            uint64_t rss = rss_anon(d->pid);
            if (rss > d->rss_max)
                d->rss_max = rss;
        }
        ballast *b = &r->disk[i];
        bool free_now = b->free_at && (heal_all || now >= b->free_at);
        bool topup = b->free_at && !free_now && now >= b->next_topup;
        pthread_mutex_unlock(&r->mu);
        if (free_now) {
            ballast_free(r, i);
            b->free_at = 0;
            say(r, "disk-full %s: ballast deleted and the store grown to %" PRIu64 " KiB: it has "
                "room again", d->role, b->map_max / 1024);
        } else if (topup) {
            /* the daemon's own commits free pages too: keep the disk full */
            r->ballast_bytes += ballast_fill(r, i);
            b->next_topup = now_ms() + 250;
        }
    }
}

/* ------------------------------------------------------------------------------ */
/* reading the master's store and the hosts */

static bool wf_final(uint8_t s) { return s < tn_sm_workflow.nstates && tn_sm_workflow.final[s]; }

typedef struct wfrow {
    uint64_t id, parent;
    uint8_t state;
    char name[TN_NAME_MAX + 1];
} wfrow;

/* Every workflow projection. Returns how many (*out malloc'd), or -1. */
static long read_wfs(const char *dir, wfrow **out)
{
    tn_store *s;
    if (tn_log_open_read(dir, &s, NULL) != TN_OK)
        return -1;
    tn_log_wf_iter *it;
    long n = 0, cap = 0;
    wfrow *v = NULL;
    if (tn_log_wf_iter_open(s, &it) == TN_OK) {
        tn_wf_proj p;
        for (tn_err e = tn_log_wf_iter_next(it, &p); e == TN_OK || e == TN_ERR_CORRUPT;
             e = tn_log_wf_iter_next(it, &p)) {
            if (e == TN_ERR_CORRUPT)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                wfrow *nv = realloc(v, (size_t)cap * sizeof(*nv));
                if (!nv)
                    break;
                v = nv;
            }
            v[n] = (wfrow){.id = p.id, .parent = p.parent_wf, .state = p.state};
            snprintf(v[n].name, sizeof(v[n].name), "%s", p.name);
            n++;
        }
        tn_log_wf_iter_close(it);
    }
    tn_log_close_read(s);
    *out = v;
    return n;
}

/* A task projection (state, attempt), or false. */
typedef struct task_lookup {
    tn_store *s;
} task_lookup;

static bool task_get(task_lookup *tl, uint64_t id, tn_task_proj *p)
{
    return tl->s && tn_log_task_get(tl->s, id, p) == TN_OK;
}

/* The workers' journals: per (task, attempt), its starts and ends on each worker. */
typedef struct jent {
    int worker;
    bool start;
    int64_t ns;
    char how[24];
} jent;

typedef struct jatt {
    uint64_t task;
    uint32_t attempt;
    jent *v;
    size_t n, cap;
} jatt;

static uint64_t jkey(uint64_t task, uint32_t attempt) { return task << 20 | (attempt & 0xfffff); }

static void journals_free(tn_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) {
            jatt *a = m->slots[i].val;
            free(a->v);
            free(a);
        }
    tn_map_fini(m);
}

static void journals_read(run *r, tn_map *m)
{
    tn_map_init(m);
    for (int w = 0; w < r->s.workers; w++) {
        char p[PATH_MAX + 32], line[512];
        snprintf(p, sizeof(p), "%s/w%d/journal", r->dir, w);
        FILE *f = fopen(p, "re");
        while (f && fgets(line, sizeof(line), f)) {
            char kw[8], how[24] = "";
            uint64_t task;
            unsigned att;
            long long a3 = 0, a4 = 0;
            jent e = {.worker = w};
            if (sscanf(line, "%7s %" SCNu64 " %u %lld %lld", kw, &task, &att, &a3, &a4) < 4)
                continue;
            if (strcmp(kw, "start") == 0) {
                e.start = true;
                e.ns = a4;
            } else if (strcmp(kw, "end") == 0 &&
                       sscanf(line, "%*s %*s %*s %lld %23s", &a3, how) == 2) {
                e.ns = a3;
                snprintf(e.how, sizeof(e.how), "%s", how);
            } else {
                continue;
            }
            uint64_t key = jkey(task, att);
            jatt *ja = tn_map_get(m, key);
            if (!ja) {
                ja = calloc(1, sizeof(*ja));
                if (!ja || tn_map_put(m, key, ja) != TN_OK) {
                    free(ja);
                    continue;
                }
                ja->task = task;
                ja->attempt = att;
            }
            if (!tn_grow((void **)&ja->v, &ja->cap, ja->n + 1, sizeof(*ja->v)))
                continue;
            ja->v[ja->n++] = e;
        }
        if (f)
            fclose(f);
    }
}

/* The last journal entry of (task, attempt) on worker w: 1 start, 2 end, 0 none. */
static int journal_last(const tn_map *m, uint64_t task, uint32_t attempt, int w)
{
    jatt *ja = tn_map_get(m, jkey(task, attempt));
    int last = 0;
    for (size_t i = 0; ja && i < ja->n; i++)
        if (ja->v[i].worker == w)
            last = ja->v[i].start ? 1 : 2;
    return last;
}

/* A task process of this run, found in /proc by its environment. */
typedef struct tproc {
    pid_t pid;
    int worker; /* -1: carries the run's marker but no attempt tag */
    uint64_t task;
    uint32_t attempt;
} tproc;

static bool is_daemon_pid(run *r, pid_t pid)
{
    bool yes = false;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i <= r->s.workers; i++)
        if (r->d[i].pid == pid)
            yes = true;
    pthread_mutex_unlock(&r->mu);
    return yes;
}

/* Every live (not zombie) process whose environment carries this run's marker, except our
 * daemons. Returns how many (*out malloc'd). */
static size_t scan_procs(run *r, tproc **out)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    size_t n = 0, cap = 0;
    tproc *v = NULL;
    char mark[96], tagp[96];
    snprintf(mark, sizeof(mark), "TERN_CHAOS_RUN=%s", r->runid);
    snprintf(tagp, sizeof(tagp), "TERN_ATTEMPT_TAG=chaos-%s-w", r->runid);
    size_t ml = strlen(mark), tl = strlen(tagp);
    static char buf[1 << 20];
    while (d && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid == getpid())
            continue;
        char p[64];
        snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
        FILE *sf = fopen(p, "re");
        char st[512] = "";
        if (sf) {
            if (!fgets(st, sizeof(st), sf))
                st[0] = 0;
            fclose(sf);
        }
        const char *rp = strrchr(st, ')');
        if (!rp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X')
            continue;
        snprintf(p, sizeof(p), "/proc/%d/environ", (int)pid);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = 0, got;
        while (len < (ssize_t)sizeof(buf) - 1 &&
               (got = read(fd, buf + len, sizeof(buf) - 1 - (size_t)len)) > 0)
            len += got;
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = 0;
        bool marked = false;
        tproc t = {.pid = pid, .worker = -1};
        for (char *e = buf; e < buf + len; e += strlen(e) + 1) {
            if (strncmp(e, mark, ml) == 0 && e[ml] == 0)
                marked = true;
            else if (strncmp(e, tagp, tl) == 0) {
                unsigned w, att;
                uint64_t task;
                if (sscanf(e + tl, "%u/%" SCNu64 "/%u", &w, &task, &att) == 3) {
                    t.worker = (int)w;
                    t.task = task;
                    t.attempt = att;
                    marked = true;
                }
            }
        }
        if (!marked || is_daemon_pid(r, pid))
            continue;
        if (t.worker < 0) {
            /* a worker's child between fork and exec still has the worker's environment
             * (and is this binary): not a task process yet */
            char exe[PATH_MAX];
            snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
            ssize_t el = readlink(p, exe, sizeof(exe) - 1);
            if (el > 0) {
                exe[el] = 0;
                if (strcmp(exe, r->exe) == 0)
                    continue;
            }
        }
        if (!tn_grow((void **)&v, &cap, n + 1, sizeof(*v)))
            break;
        v[n++] = t;
    }
    if (d)
        closedir(d);
    *out = v;
    return n;
}

/* ------------------------------------------------------------------------------ */
/* settle: every fault healed, wait (bounded) for final states and no task process left */

static bool settled_now(run *r, char *why, size_t wlen)
{
    why[0] = 0;
    char mdir[PATH_MAX + 16];
    store_dir(r, 0, mdir, sizeof(mdir));
    wfrow *wfs = NULL;
    long n = read_wfs(mdir, &wfs);
    long open = 0;
    char ids[300] = "";
    for (long i = 0; i < n; i++)
        if (!wf_final(wfs[i].state)) {
            if (open++ < 8)
                snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%" PRIu64 " %s (%s)",
                         open > 1 ? ", " : "", wfs[i].id, wfs[i].name,
                         tn_sm_state_name(&tn_sm_workflow, wfs[i].state));
        }
    free(wfs);
    if (n < 0)
        snprintf(why, wlen, "the master's store cannot be read");
    else if (open)
        snprintf(why, wlen, "%ld workflow(s) not final: %s%s", open, ids, open > 8 ? ", ..." : "");
    tproc *ps = NULL;
    size_t np = scan_procs(r, &ps);
    if (np) {
        size_t l = strlen(why);
        snprintf(why + l, wlen - l, "%s%zu task process(es) alive:", l ? "; " : "", np);
        for (size_t i = 0; i < np && i < 6; i++) {
            l = strlen(why);
            snprintf(why + l, wlen - l, " pid %d (w%d task %" PRIu64 " attempt %u)",
                     (int)ps[i].pid, ps[i].worker, ps[i].task, ps[i].attempt);
        }
    }
    free(ps);
    if (!why[0]) {
        /* every report the workers hold was persisted */
        tn_ctl_req *q = calloc(1, sizeof(*q));
        reply *rp = calloc(1, sizeof(*rp));
        if (q && rp) {
            q->cmd = TN_STR("workers");
            ctl_call(r, q, 3000, rp);
            int alive = 0;
            uint64_t outbox = 0;
            for (const char *p = rp->json; (p = strstr(p, "\"alive\":true")); p++)
                alive++;
            for (const char *p = rp->json; (p = strstr(p, "\"outbox_entries\":")); p++)
                outbox += strtoull(p + 17, NULL, 10);
            if (rp->rc != 0)
                snprintf(why, wlen, "the master does not answer: %s", rp->text);
            else if (alive < r->s.workers)
                snprintf(why, wlen, "%d of %d workers alive", alive, r->s.workers);
            else if (outbox)
                snprintf(why, wlen, "%" PRIu64 " report(s) in the workers' outboxes not "
                         "persisted yet", outbox);
        }
        free(q);
        free(rp);
    }
    return why[0] == 0;
}

/* ------------------------------------------------------------------------------ */
/* the checks */

/* 4, before the workers stop: no process of an attempt that ended or was superseded, or of
 * a task that is final. */
static void check_procs_live(run *r, const tn_map *jr)
{
    tproc *ps = NULL;
    size_t np = scan_procs(r, &ps);
    char mdir[PATH_MAX + 16];
    store_dir(r, 0, mdir, sizeof(mdir));
    task_lookup tl = {0};
    if (np && tn_log_open_read(mdir, &tl.s, NULL) != TN_OK)
        tl.s = NULL;
    for (size_t i = 0; i < np; i++) {
        tproc *t = &ps[i];
        tn_task_proj p;
        if (t->worker < 0) {
            violation(r, 4, 0, 0, 0, "pid %d carries this run's marker but no attempt tag: a "
                      "task process that escaped its tag", (int)t->pid);
            continue;
        }
        int last = journal_last(jr, t->task, t->attempt, t->worker);
        bool have = task_get(&tl, t->task, &p);
        if (last == 2)
            violation(r, 4, 0, t->task, t->attempt, "pid %d on w%d outlived its attempt: the "
                      "worker's journal says it ended", (int)t->pid, t->worker);
        else if (last == 0)
            violation(r, 4, 0, t->task, t->attempt, "pid %d on w%d runs an attempt the worker "
                      "never journaled", (int)t->pid, t->worker);
        else if (have && p.attempt > t->attempt)
            violation(r, 4, 0, t->task, t->attempt, "pid %d on w%d still runs a superseded "
                      "attempt (the task is at attempt %u, %s)", (int)t->pid, t->worker,
                      p.attempt, tn_sm_state_name(&tn_sm_task, p.state));
        else if (have && tn_sm_task.final[p.state])
            violation(r, 4, 0, t->task, t->attempt, "pid %d on w%d still runs but its task is "
                      "%s", (int)t->pid, t->worker, tn_sm_state_name(&tn_sm_task, p.state));
    }
    r->inv_count[4] += np;
    tn_log_close_read(tl.s);
    free(ps);
}

/* Stop a daemon with SIGTERM (SIGKILL after 30s, which is a finding). */
static void stop_daemon(run *r, int idx)
{
    pthread_mutex_lock(&r->mu);
    dproc *d = &r->d[idx];
    pid_t pid = d->pid;
    if (pid) {
        d->killed = true;
        d->terming = true;
        d->restart_at = 0;
        if (d->stopped)
            kill(pid, SIGCONT);
        kill(pid, SIGTERM);
    }
    pthread_mutex_unlock(&r->mu);
    if (!pid)
        return;
    int64_t until = now_ms() + 30000;
    while (now_ms() < until) {
        reap(r);
        pthread_mutex_lock(&r->mu);
        bool gone = d->pid == 0;
        pthread_mutex_unlock(&r->mu);
        if (gone)
            return;
        sleep_ms(20);
    }
    violation(r, 0, 0, 0, 0, "%s (pid %d) did not stop within 30s of SIGTERM; killed", d->role,
              (int)pid);
    pthread_mutex_lock(&r->mu);
    d->terming = false; /* reported above */
    pthread_mutex_unlock(&r->mu);
    kill(pid, SIGKILL);
    for (int i = 0; i < 200 && d->pid; i++) {
        reap(r);
        sleep_ms(10);
    }
}

typedef struct tstate {
    uint32_t latest;
    bool worker_task;
    uint32_t handed;              /* the attempt of the last DISPATCHED */
    char worker[TN_NAME_MAX + 1]; /* and the worker it named */
} tstate;

typedef struct logscan {
    run *r;
    tn_map tasks; /* task -> tstate */
    const tn_map *jr;
} logscan;

/* 3, from the log: each result a worker reported and the master applied is of the task's
 * latest attempt, and that attempt ended (journal) before the event was written. */
static void scan_event(logscan *x, const tn_event *ev)
{
    if (ev->machine != TN_MACHINE_TASK)
        return;
    tstate *ts = tn_map_get(&x->tasks, ev->task);
    if (!ts) {
        ts = calloc(1, sizeof(*ts));
        if (!ts || tn_map_put(&x->tasks, ev->task, ts) != TN_OK) {
            free(ts);
            return;
        }
    }
    int64_t att = 0;
    bool has_att = tn_event_int(ev, "attempt", &att);
    if (ev->event == TN_TASK_E_SUBMIT || ev->event == TN_TASK_E_PAUSED) {
        const tn_attr *ty = tn_event_attr(ev, "type");
        if (ty && (tn_str_eq(ty->s, "shell") || tn_str_eq(ty->s, "noop")))
            ts->worker_task = true;
    }
    /* one attempt is handed to one worker: fencing compares attempts, so an attempt that
     * two workers were given cannot tell their results apart */
    const tn_attr *wk = tn_event_attr(ev, "worker");
    if (ev->event == TN_TASK_E_DISPATCHED && has_att && wk && wk->type == TN_ATTR_STR) {
        char name[TN_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.*s", (int)wk->s.len, wk->s.p);
        if (ts->handed == (uint32_t)att && ts->worker[0] && strcmp(ts->worker, name) != 0)
            violation(x->r, 3, ev->seq, ev->task, (uint32_t)att, "attempt %u handed to %s after "
                      "%s had it: one attempt, two workers", (uint32_t)att, name, ts->worker);
        ts->handed = (uint32_t)att;
        snprintf(ts->worker, sizeof(ts->worker), "%s", name);
    }
    bool result = (ev->event == TN_TASK_E_SUCCEEDED || ev->event == TN_TASK_E_FAILED) &&
                  tn_event_attr(ev, "exit") != NULL;
    if (result && ts->worker_task) {
        x->r->results_checked++;
        uint32_t a = (uint32_t)att;
        const char *what = tn_sm_event_name(&tn_sm_task, ev->event);
        if (!has_att)
            violation(x->r, 3, ev->seq, ev->task, 0, "%s applied without an attempt", what);
        else if (a != ts->latest)
            violation(x->r, 3, ev->seq, ev->task, a, "%s applied for attempt %u while the "
                      "task's latest attempt is %u", what, a, ts->latest);
        jatt *ja = tn_map_get(x->jr, jkey(ev->task, a));
        bool started = false, ended = false;
        for (size_t i = 0; ja && i < ja->n; i++) {
            if (ja->v[i].start || strcmp(ja->v[i].how, "spawn-failed") == 0)
                started = true;
            if (!ja->v[i].start && ja->v[i].ns <= ev->at)
                ended = true;
        }
        if (has_att && !started)
            violation(x->r, 3, ev->seq, ev->task, a, "%s applied for attempt %u, which no "
                      "worker's journal shows starting", what, a);
        else if (has_att && !ended)
            violation(x->r, 3, ev->seq, ev->task, a, "%s applied for attempt %u before that "
                      "attempt ended on any worker (a superseded or foreign result)", what, a);
    }
    if (has_att && (uint32_t)att > ts->latest)
        ts->latest = (uint32_t)att;
}

/* 3, from the journals: one attempt never ran on two workers at overlapping times. */
static void check_journals(run *r, const tn_map *jr)
{
    for (size_t i = 0; i < jr->cap; i++) {
        if (!jr->slots[i].key)
            continue;
        jatt *ja = jr->slots[i].val;
        r->journal_attempts++;
        /* intervals per worker: a start opens one, the next end on that worker closes it;
         * one never closed runs to the end of time */
        typedef struct ival {
            int w;
            int64_t a, b;
        } ival;
        ival iv[64];
        int n = 0;
        for (size_t k = 0; k < ja->n && n < 64; k++) {
            jent *e = &ja->v[k];
            if (e->start) {
                iv[n++] = (ival){e->worker, e->ns, INT64_MAX};
                continue;
            }
            for (int j = n - 1; j >= 0; j--)
                if (iv[j].w == e->worker && iv[j].b == INT64_MAX) {
                    iv[j].b = e->ns;
                    break;
                }
        }
        bool rerun = false;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b < n; b++)
                rerun |= iv[a].w == iv[b].w;
        if (rerun)
            r->journal_reruns++;
        bool cross = false;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b < n; b++) {
                if (iv[a].w == iv[b].w)
                    continue;
                cross = true;
                if (iv[a].a < iv[b].b && iv[b].a < iv[a].b)
                    violation(r, 3, 0, ja->task, ja->attempt, "attempt ran on w%d and w%d at the "
                              "same time (journals: started %.3fs apart; %s)", iv[a].w, iv[b].w,
                              (double)(iv[b].a - iv[a].a) / 1e9,
                              iv[a].b == INT64_MAX || iv[b].b == INT64_MAX
                                  ? "one never journaled an end"
                                  : "overlapping");
            }
        if (cross)
            r->journal_cross++;
    }
}

static int log_cb(void *ctx, const tn_event *ev)
{
    scan_event(ctx, ev);
    return 0;
}

/* 2, 3, 5 and 1 (final states), from the master's store once the master is stopped. */
static void check_store(run *r, const tn_map *jr)
{
    char mdir[PATH_MAX + 16];
    store_dir(r, 0, mdir, sizeof(mdir));
    tn_store_opts o = {.read_only = true};
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_store_open(mdir, &o, &s, &m) != TN_OK) {
        violation(r, 2, 0, 0, 0, "the master's store cannot be opened: %s", m.text);
        return;
    }
    /* 2: replay */
    tn_replay_report *rep = calloc(1, sizeof(*rep));
    tn_replay_opts ro = {.verify_chain = true, .compare = true};
    if (!rep || tn_replay_run(s, &ro, rep) != TN_OK)
        violation(r, 2, 0, 0, 0, "replay could not read the log");
    else if (rep->err)
        violation(r, 2, rep->bad_seq, 0, 0, "replay: %s: %s", tn_strerror(rep->err), rep->why);
    if (rep) {
        r->replay_events = rep->events;
        snprintf(r->inv_note[2], sizeof(r->inv_note[2]), "%" PRIu64 " events, %" PRIu64
                 " workflows, %" PRIu64 " tasks; chain %s; projections %s", rep->events,
                 rep->workflows, rep->tasks, rep->err == TN_ERR_CHAIN ? "BROKEN" : "intact",
                 rep->err ? "see the violation" : "equal to the stored ones");
    }
    free(rep);

    /* 3: every event in seq order */
    logscan x = {.r = r, .jr = jr};
    tn_map_init(&x.tasks);
    tn_rtxn *t;
    if (tn_store_read_begin(s, &t) == TN_OK) {
        tn_cursor *c;
        if (tn_cursor_open(t, TN_DB_EVENTS, &c) == TN_OK) {
            tn_val k, v;
            tn_event *ev = malloc(sizeof(*ev));
            for (tn_err e = tn_cursor_first(c, &k, &v); ev && e == TN_OK;
                 e = tn_cursor_next(c, &k, &v))
                if (tn_event_decode(v.data, v.len, ev) == TN_OK)
                    log_cb(&x, ev);
            free(ev);
            tn_cursor_close(c);
        }
        tn_store_read_end(t);
    }
    for (size_t i = 0; i < x.tasks.cap; i++)
        if (x.tasks.slots[i].key)
            free(x.tasks.slots[i].val);
    tn_map_fini(&x.tasks);
    tn_store_close(s);

    /* 1 and 5: the workflows */
    wfrow *wfs = NULL;
    long n = read_wfs(mdir, &wfs);
    if (n < 0) {
        violation(r, 1, 0, 0, 0, "the workflow projections cannot be read");
        return;
    }
    tn_map byid;
    tn_map_init(&byid);
    for (long i = 0; i < n; i++)
        (void)tn_map_put(&byid, wfs[i].id, &wfs[i]);
    tn_map touched;
    tn_map_init(&touched);
    for (int i = 0; i < r->s.workflows; i++) {
        inst *in = &r->inst[i];
        if (!in->id)
            continue;
        r->inv_count[5]++;
        wfrow *w = tn_map_get(&byid, in->id);
        const act *st = NULL;
        for (size_t j = 0; j < r->s.n; j++)
            if ((r->s.v[j].k == K_START || r->s.v[j].k == K_START_CRASH) && r->s.v[j].target == i)
                st = &r->s.v[j];
        if (!w)
            violation(r, 5, 0, 0, 0, "start #%d was accepted as workflow %" PRIu64 " but the log "
                      "has no such instance", i, in->id);
        else if (st && strcmp(w->name, st->wf) != 0)
            violation(r, 5, 0, 0, 0, "start #%d of %s was accepted as workflow %" PRIu64 ", which "
                      "the log has as %s", i, st->wf, in->id, w->name);
        if (in->touched)
            (void)tn_map_put(&touched, in->id, (void *)1);
    }
    for (long i = 0; i < n; i++) {
        wfrow *w = &wfs[i];
        r->inv_count[1]++;
        if (w->state < TN_WF_S__COUNT)
            r->wf_states[w->state]++;
        if (!wf_final(w->state)) {
            violation(r, 1, 0, 0, 0, "workflow %" PRIu64 " (%s) is %s, not final%s%s", w->id,
                      w->name, tn_sm_state_name(&tn_sm_workflow, w->state),
                      r->s.net[0] ? "; network faults are still injected: " : "",
                      r->s.net[0] ? r->s.net : "");
            continue;
        }
        /* touched: itself, or any ancestor */
        bool tch = false;
        for (wfrow *a = w; a && !tch; a = a->parent ? tn_map_get(&byid, a->parent) : NULL)
            tch = tn_map_get(&touched, a->id) != NULL;
        const wdef *d = find_def(w->name);
        const char *got = tn_sm_state_name(&tn_sm_workflow, w->state);
        if (!tch && d && strcmp(d->expect, got) != 0)
            violation(r, 1, 0, 0, 0, "workflow %" PRIu64 " (%s) ended %s; untouched by any user "
                      "command it ends %s whatever the faults", w->id, w->name, got, d->expect);
    }
    tn_map_fini(&touched);
    tn_map_fini(&byid);
    free(wfs);
}

/* Task cgroups left populated under the workers' sub-trees (cgroup mode). */
static void check_cgroups(run *r)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096], mnt[PATH_MAX] = "";
    while (f && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - cgroup2 ");
        if (!sep)
            continue;
        char mp[PATH_MAX];
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1) {
            snprintf(mnt, sizeof(mnt), "%s", mp);
            break;
        }
    }
    if (f)
        fclose(f);
    if (!mnt[0])
        return;
    for (int w = 0; w < r->s.workers; w++) {
        char name[64], dir[PATH_MAX + 128];
        worker_name(r, w, name, sizeof(name));
        snprintf(dir, sizeof(dir), "%s/tern/%s", mnt, name);
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (strncmp(de->d_name, "task-", 5) != 0)
                continue;
            char procs[PATH_MAX + 400];
            snprintf(procs, sizeof(procs), "%s/%s/cgroup.procs", dir, de->d_name);
            FILE *pf = fopen(procs, "re");
            int pid = 0;
            bool populated = pf && fscanf(pf, "%d", &pid) == 1;
            if (pf)
                fclose(pf);
            if (populated)
                violation(r, 4, 0, 0, 0, "cgroup %s/%s still holds pid %d after its worker "
                          "stopped", dir, de->d_name, pid);
        }
        if (d)
            closedir(d);
    }
}

/* ------------------------------------------------------------------------------ */
/* the report */

static const char *const inv_names[7] = {
    "daemons, settle", "final states", "replay", "attempts", "processes", "accepted submissions",
    "memory"};

static bool inv_ok(const run *r, int inv)
{
    for (size_t i = 0; i < r->nviols; i++)
        if (r->viols[i].inv == inv)
            return false;
    return true;
}

/* The one-line detail of each check, for both reports. */
static void fill_notes(run *r)
{
    uint64_t mrss = r->d[0].rss_max, wrss = 0;
    for (int i = 1; i <= r->s.workers; i++)
        if (r->d[i].rss_max > wrss)
            wrss = r->d[i].rss_max;
    snprintf(r->inv_note[0], sizeof(r->inv_note[0]), "%s",
             inv_ok(r, 0) ? "none exited unless the harness killed it; the cluster settled"
                          : "see below");
    snprintf(r->inv_note[1], sizeof(r->inv_note[1]), "%" PRIu64 " instances (children included)",
             r->inv_count[1]);
    snprintf(r->inv_note[3], sizeof(r->inv_note[3]), "%" PRIu64 " attempts journaled (%" PRIu64
             " run again on the same worker after a restart, %" PRIu64 " on two workers one "
             "after the other), %" PRIu64 " worker results applied and checked",
             r->journal_attempts, r->journal_reruns, r->journal_cross, r->results_checked);
    snprintf(r->inv_note[4], sizeof(r->inv_note[4]), "%" PRIu64 " task processes alive at the "
             "end, 0 allowed", r->inv_count[4]);
    snprintf(r->inv_note[5], sizeof(r->inv_note[5]), "%" PRIu64 " accepted starts looked up",
             r->inv_count[5]);
    snprintf(r->inv_note[6], sizeof(r->inv_note[6]), "RssAnon max: master %.1f MiB, workers "
             "%.1f MiB; bound %.0f MiB", (double)mrss / MIB, (double)wrss / MIB,
             (double)r->rss_bound / MIB);
}

static void report_text(run *r)
{
    printf("faults injected:");
    bool any = false;
    for (int k = K_START_CRASH; k < K__COUNT; k++) {
        if (k > K_START_CRASH && !IS_FAULT(k))
            continue;
        if (r->faults[k] || r->skipped[k]) {
            printf("%s %s %" PRIu64, any ? "," : "", kind_names[k], r->faults[k]);
            if (r->skipped[k])
                printf(" (%" PRIu64 " skipped: target down or busy)", r->skipped[k]);
            any = true;
        }
    }
    if (r->ballast_bytes)
        printf("%s ballast %" PRIu64 " KiB", any ? "," : "", r->ballast_bytes / 1024), any = true;
    if (r->s.net[0])
        printf("%s network on every daemon: %s", any ? "," : "", r->s.net), any = true;
    printf("%s\n", any ? "" : " none");
    if (r->skipped[K_SLOW_DISK] && r->slow_why[0])
        printf("slow disk not injected: %s\n", r->slow_why);
    printf("workload: %d starts: %" PRIu64 " accepted, %" PRIu64 " refused (store full), %" PRIu64
           " refused (other), %" PRIu64 " unknown (no answer)\n", r->s.workflows,
           r->starts_accepted, r->starts_refused_full, r->starts_refused_other, r->starts_unknown);
    printf("commands:");
    for (int k = K_PAUSE; k <= K_KILL; k++)
        printf("%s %s %" PRIu64 " ok/%" PRIu64 " refused/%" PRIu64 " unknown",
               k > K_PAUSE ? "," : "", kind_names[k], r->cmds_ok[k], r->cmds_refused[k],
               r->cmds_unknown[k]);
    printf("\n");
    if (r->not_issued)
        printf("not issued: %" PRIu64 " workload actions were still due when the window "
               "closed (calls had waited on a master that was down)\n", r->not_issued);
    if (r->starts_refused_other)
        printf("last start refused: %s\n", r->last_refusal);
    if (r->last_cmd_refusal[0])
        printf("last command refused: %s\n", r->last_cmd_refusal);
    printf("workflows by final state:");
    any = false;
    for (int i = 1; i < TN_WF_S__COUNT; i++)
        if (r->wf_states[i]) {
            printf("%s %s %" PRIu64, any ? "," : "", tn_sm_state_name(&tn_sm_workflow, (unsigned)i),
                   r->wf_states[i]);
            any = true;
        }
    printf("%s\n", any ? "" : " none");
    printf("settle: %s in %.1fs%s%s\n", r->settled ? "settled" : "NOT settled",
           (double)r->settle_took_ms / 1000, r->settled ? "" : "; still waiting on ",
           r->settled ? "" : r->waiting_on);
    printf("invariants:\n");
    for (int i = 1; i <= 6; i++)
        printf("  %d %-22s %s  %s\n", i, inv_names[i], inv_ok(r, i) ? "ok  " : "FAIL",
               r->inv_note[i]);
    printf("  - %-22s %s  %s\n", inv_names[0], inv_ok(r, 0) ? "ok  " : "FAIL", r->inv_note[0]);
    size_t shown = 0;
    for (size_t i = 0; i < r->nviols && shown < MAX_VIOLATIONS_SHOWN; i++, shown++) {
        viol *v = &r->viols[i];
        printf("violation [%d %s]", v->inv, inv_names[v->inv]);
        if (v->seq)
            printf(" seq %" PRIu64, v->seq);
        if (v->task)
            printf(" task %" PRIu64, v->task);
        if (v->attempt)
            printf(" attempt %u", v->attempt);
        printf(": %s\n", v->what);
    }
    if (r->nviols > shown)
        printf("... and %zu more violations\n", r->nviols - shown);
}

static void report_json(run *r)
{
    printf("{\"seed\":%" PRIu64 ",\"scenario\":\"%s\",\"duration_ms\":%" PRId64 ",\"workers\":%d,"
           "\"workflows\":%d,\"dir\":",
           r->s.seed, scenario_names[r->s.scenario], r->s.duration_ms, r->s.workers,
           r->s.workflows);
    tn_json_cstr(stdout, r->dir);
    printf(",\"kept\":%s,\"faults\":{", r->keep || r->nviols ? "true" : "false");
    bool first = true;
    for (int k = K_START_CRASH; k < K__COUNT; k++) {
        if (k > K_START_CRASH && !IS_FAULT(k))
            continue;
        printf("%s\"%s\":%" PRIu64, first ? "" : ",", kind_names[k], r->faults[k]);
        first = false;
    }
    printf(",\"ballast_bytes\":%" PRIu64 ",\"net\":", r->ballast_bytes);
    tn_json_cstr(stdout, r->s.net);
    printf("},\"workload\":{\"starts\":%d,\"accepted\":%" PRIu64 ",\"refused_full\":%" PRIu64
           ",\"refused_other\":%" PRIu64 ",\"unknown\":%" PRIu64,
           r->s.workflows, r->starts_accepted, r->starts_refused_full, r->starts_refused_other,
           r->starts_unknown);
    printf(",\"not_issued\":%" PRIu64, r->not_issued);
    for (int k = K_PAUSE; k <= K_KILL; k++)
        printf(",\"%s\":{\"ok\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"unknown\":%" PRIu64 "}",
               kind_names[k], r->cmds_ok[k], r->cmds_refused[k], r->cmds_unknown[k]);
    printf("},\"final_states\":{");
    first = true;
    for (int i = 1; i < TN_WF_S__COUNT; i++)
        if (r->wf_states[i]) {
            printf("%s\"%s\":%" PRIu64, first ? "" : ",",
                   tn_sm_state_name(&tn_sm_workflow, (unsigned)i), r->wf_states[i]);
            first = false;
        }
    printf("},\"settled\":%s,\"settle_ms\":%" PRId64 ",\"waiting_on\":",
           r->settled ? "true" : "false", r->settle_took_ms);
    tn_json_cstr(stdout, r->waiting_on);
    printf(",\"rss_max\":{\"master\":%" PRIu64 ",\"workers\":[", r->d[0].rss_max);
    for (int i = 1; i <= r->s.workers; i++)
        printf("%s%" PRIu64, i > 1 ? "," : "", r->d[i].rss_max);
    printf("],\"bound\":%" PRIu64 "},\"invariants\":[", r->rss_bound);
    for (int i = 0; i <= 6; i++) {
        printf("%s{\"n\":%d,\"name\":\"%s\",\"ok\":%s,\"detail\":", i ? "," : "", i, inv_names[i],
               inv_ok(r, i) ? "true" : "false");
        tn_json_cstr(stdout, r->inv_note[i]);
        printf("}");
    }
    printf("],\"violations\":[");
    for (size_t i = 0; i < r->nviols; i++) {
        viol *v = &r->viols[i];
        printf("%s{\"invariant\":%d,\"seq\":%" PRIu64 ",\"task\":%" PRIu64 ",\"attempt\":%u,"
               "\"what\":", i ? "," : "", v->inv, v->seq, v->task, v->attempt);
        tn_json_cstr(stdout, v->what);
        printf("}");
    }
    printf("],\"ok\":%s}\n", r->nviols ? "false" : "true");
}

/* ------------------------------------------------------------------------------ */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void kill_everything(run *r)
{
    for (int i = r->s.workers; i >= 0; i--)
        stop_daemon(r, i);
    tproc *ps = NULL;
    size_t np = scan_procs(r, &ps);
    for (size_t i = 0; i < np; i++)
        kill(ps[i].pid, SIGKILL);
    free(ps);
    reap(r);
}

/* Wait for the master to answer and the workers to join. */
static int wait_cluster(run *r)
{
    int64_t until = now_ms() + 20000;
    tn_ctl_req *q = calloc(1, sizeof(*q));
    reply *rp = calloc(1, sizeof(*rp));
    int rc = 1;
    while (q && rp && now_ms() < until && !atomic_load(&interrupted)) {
        reap(r);
        if (r->d[0].pid == 0)
            break;
        q->cmd = TN_STR("workers");
        ctl_call(r, q, 2000, rp);
        int alive = 0;
        for (const char *p = rp->json; (p = strstr(p, "\"alive\":true")); p++)
            alive++;
        if (rp->rc == 0 && alive >= r->s.workers) {
            rc = 0;
            break;
        }
        sleep_ms(100);
    }
    free(q);
    free(rp);
    if (rc)
        tn_cli_fail("chaos", "the cluster did not come up within 20s; see the logs in %s", r->dir);
    return rc;
}

/* For a cluster that did not settle: every daemon's threads, into DIR/ROLE.stacks, when
 * gdb is there to take them. */
static void dump_stacks(run *r)
{
    if (access("/usr/bin/gdb", X_OK) != 0)
        return;
    for (int i = 0; i <= r->s.workers; i++) {
        pthread_mutex_lock(&r->mu);
        pid_t pid = r->d[i].pid;
        pthread_mutex_unlock(&r->mu);
        if (!pid)
            continue;
        char cmd[PATH_MAX + 200];
        snprintf(cmd, sizeof(cmd), "timeout 60 /usr/bin/gdb -p %d -batch -ex 'thread apply all "
                 "bt' > %s/%s.stacks 2>&1", (int)pid, r->dir, r->d[i].role);
        if (system(cmd) == 0)
            say(r, "%s: its threads are in %s/%s.stacks", r->d[i].role, r->dir, r->d[i].role);
    }
}

static int parse_args(int argc, char **argv, run *r, const char **replay)
{
    static const struct option lo[] = {
        {"seed", 1, 0, 's'}, {"duration", 1, 0, 'd'}, {"workers", 1, 0, 'w'},
        {"workflows", 1, 0, 'W'}, {"dir", 1, 0, 'D'}, {"replay-schedule", 1, 0, 'R'},
        {"json", 0, 0, 'j'}, {"settle", 1, 0, 'S'}, {"rss-max", 1, 0, 'm'}, {0, 0, 0, 0}};
    bool have_seed = false, sized = false;
    int c;
    uint64_t u;
    optind = 1;
    opterr = 0;
    r->s.duration_ms = 60000;
    r->s.workers = 3;
    r->settle_ms = 120000;
    r->rss_bound = 256 * MIB;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 's':
            if (!tn_cli_u64(optarg, &r->s.seed))
                return tn_cli_usage("chaos", "--seed wants a number");
            have_seed = true;
            break;
        case 'd':
            if (tn_parse_duration_ms(optarg, &u) != TN_OK || u < 1000)
                return tn_cli_usage("chaos", "--duration wants a duration of at least 1s, such "
                                    "as 60s or 30m");
            r->s.duration_ms = (int64_t)u;
            sized = true;
            break;
        case 'S':
            if (tn_parse_duration_ms(optarg, &u) != TN_OK)
                return tn_cli_usage("chaos", "--settle wants a duration such as 120s");
            r->settle_ms = (int64_t)u;
            break;
        case 'w':
            if (!tn_cli_u64(optarg, &u) || u < 1 || u > MAXW)
                return tn_cli_usage("chaos", "--workers wants a number 1..%d", MAXW);
            r->s.workers = (int)u;
            sized = true;
            break;
        case 'W':
            if (!tn_cli_u64(optarg, &u) || u < 1 || u > 100000)
                return tn_cli_usage("chaos", "--workflows wants a number 1..100000");
            r->s.workflows = (int)u;
            sized = true;
            break;
        case 'm':
            if (tn_parse_size(optarg, &u) != TN_OK || u == 0)
                return tn_cli_usage("chaos", "--rss-max wants a size such as 256M");
            r->rss_bound = u;
            break;
        case 'D': snprintf(r->dir, sizeof(r->dir), "%s", optarg); r->keep = true; break;
        case 'R': *replay = optarg; break;
        case 'j': r->json = true; break;
        default: return tn_cli_usage("chaos", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    const char *scen = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc)
        return tn_cli_usage("chaos", "unexpected argument \"%s\"", argv[optind + 1]);
    if (*replay) {
        if (have_seed || sized)
            return tn_cli_usage("chaos", "--replay-schedule takes the seed, duration, workers "
                                "and workflows from the schedule; drop those options");
        int rc = sched_read(*replay, &r->s);
        if (rc)
            return rc;
        if (scen && strcmp(scen, scenario_names[r->s.scenario]) != 0)
            return tn_cli_usage("chaos", "the schedule is of scenario %s, not %s",
                                scenario_names[r->s.scenario], scen);
        return 0;
    }
    if (!scen)
        return tn_cli_usage("chaos", "give a scenario: master-crash, worker-crash, partition, "
                            "lossy-net, disk-full or mixed");
    r->s.scenario = -1;
    for (int i = 0; i < SC__COUNT; i++)
        if (strcmp(scen, scenario_names[i]) == 0)
            r->s.scenario = i;
    if (r->s.scenario < 0)
        return tn_cli_usage("chaos", "unknown scenario \"%s\" (master-crash, worker-crash, "
                            "partition, lossy-net, disk-full, mixed)", scen);
    if (!have_seed)
        r->s.seed = (uint64_t)tn_now_ns() % 1000000007ull ^ (uint64_t)getpid();
    if (!r->s.workflows) {
        int64_t w = r->s.duration_ms / 1000;
        r->s.workflows = (int)(w < 8 ? 8 : w > 5000 ? 5000 : w);
    }
    sched_draw(&r->s);
    return 0;
}

int tn_cmd_chaos(int argc, char **argv)
{
    run *r = calloc(1, sizeof(*r));
    if (!r)
        return tn_cli_fail("chaos", "out of memory");
    const char *replay = NULL;
    int rc = parse_args(argc, argv, r, &replay);
    if (rc) {
        free(r->s.v);
        free(r);
        return rc;
    }
    const char *sc = scenario_names[r->s.scenario];
    fprintf(r->json ? stderr : stdout, "tern chaos: seed %" PRIu64 " scenario %s duration %.1fs "
            "workers %d workflows %d%s%s\n", r->s.seed, sc, (double)r->s.duration_ms / 1000,
            r->s.workers, r->s.workflows, replay ? " from " : "", replay ? replay : "");
    fflush(stdout);
    pthread_mutex_init(&r->mu, NULL);
    snprintf(r->runid, sizeof(r->runid), "%d", (int)getpid());
    ssize_t el = readlink("/proc/self/exe", r->exe, sizeof(r->exe) - 1);
    if (el <= 0) {
        free(r);
        return tn_cli_fail("chaos", "cannot find this binary (/proc/self/exe): %m");
    }
    r->exe[el] = 0;
    if (r->dir[0]) {
        if (tn_mkdir_p(r->dir) != 0) {
            int frc = tn_cli_fail("chaos", "%s: cannot create the directory: %m", r->dir);
            free(r);
            return frc;
        }
        char abs[PATH_MAX];
        if (realpath(r->dir, abs))
            snprintf(r->dir, sizeof(r->dir), "%s", abs);
    } else {
        snprintf(r->dir, sizeof(r->dir), "/tmp/tern-chaos-XXXXXX");
        if (!mkdtemp(r->dir)) {
            free(r);
            return tn_cli_fail("chaos", "cannot create a temp dir under /tmp: %m");
        }
    }
    if (strlen(r->dir) > 80) {
        int frc = tn_cli_fail("chaos", "%s: too long for the ipc:// sockets under it (80 bytes "
                              "at most); use a shorter --dir", r->dir);
        free(r);
        return frc;
    }
    char sp[PATH_MAX + 32];
    snprintf(sp, sizeof(sp), "%s/schedule.txt", r->dir);
    if (!replay || strcmp(replay, sp) != 0) {
        if (sched_write(&r->s, sp) != 0) {
            free(r);
            return tn_cli_fail("chaos", "%s: cannot write the schedule: %m", sp);
        }
    }
    r->inst = calloc((size_t)r->s.workflows + 1, sizeof(inst));
    r->master_port = free_port();
    snprintf(r->master_url, sizeof(r->master_url), "tcp://127.0.0.1:%d", r->master_port);
    /* the control socket where a master puts it by default, on ipc: clients that give up
     * on it mid-handshake while the master is stopped are part of the test (nng#1518,
     * docs/RELIABILITY.md bug 9) */
    snprintf(r->ctl_url, sizeof(r->ctl_url), "ipc://%s/master.ctl", r->dir);
    snprintf(r->d[0].role, sizeof(r->d[0].role), "master");
    r->disk[0].map_max = r->s.master_map_max;
    for (int i = 0; i < r->s.workers; i++) {
        r->worker_port[i] = free_port();
        snprintf(r->d[1 + i].role, sizeof(r->d[1 + i].role), "w%d", i);
        r->disk[1 + i].map_max = r->s.worker_map_max;
    }
    if (!r->inst || r->master_port <= 0) {
        free(r);
        return tn_cli_fail("chaos", "cannot set up the run (memory or a free port)");
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);

    /* up */
    pthread_mutex_lock(&r->mu);
    int sr = spawn_daemon(r, 0);
    for (int i = 0; i < r->s.workers && !sr; i++)
        sr = spawn_daemon(r, 1 + i);
    pthread_mutex_unlock(&r->mu);
    if (sr)
        say(r, "cannot start the daemons: %m");
    if (sr || wait_cluster(r) || apply_defs(r)) {
        kill_everything(r);
        fprintf(stderr, "tern chaos: kept %s\n", r->dir);
        free(r->inst);
        free(r->s.v);
        free(r);
        return 1;
    }

    /* the window: faults here, the workload in its thread */
    r->t0 = now_ms();
    say(r, "cluster up (master %s, %d workers), dir %s", r->master_url, r->s.workers, r->dir);
    pthread_t wt;
    bool wt_ok = pthread_create(&wt, NULL, workload_thread, r) == 0;
    size_t next = 0;
    while (!atomic_load(&interrupted) && now_ms() - r->t0 < r->s.duration_ms) {
        while (next < r->s.n && r->s.v[next].at_ms <= now_ms() - r->t0) {
            if (IS_FAULT(r->s.v[next].k))
                do_fault(r, &r->s.v[next]);
            next++;
        }
        tick(r, false);
        sleep_ms(50);
    }
    /* the workload's last call may still be waiting on the master: keep restarting what
     * is due meanwhile */
    while (wt_ok && !atomic_load(&r->workload_done)) {
        tick(r, false);
        sleep_ms(50);
    }
    if (wt_ok)
        pthread_join(wt, NULL);
    /* heal: SIGCONT, restart, free the disks */
    say(r, "window over: healing every fault; settling (at most %.0fs)",
        (double)r->settle_ms / 1000);
    tick(r, true);
    /* settled: the conditions hold over a heartbeat timeout and a half, so a daemon the
     * heal just restarted has been seen, reconciled and has nothing left to do */
    int64_t s0 = now_ms(), last_say = s0, quiet_since = 0;
    while (!atomic_load(&interrupted)) {
        tick(r, false);
        if (!settled_now(r, r->waiting_on, sizeof(r->waiting_on))) {
            quiet_since = 0;
        } else if (!quiet_since) {
            quiet_since = now_ms();
        } else if (now_ms() - quiet_since >= HB_TIMEOUT_MS * 3 / 2) {
            r->settled = true;
            break;
        }
        if (now_ms() - s0 > r->settle_ms)
            break;
        if (now_ms() - last_say > 10000) {
            say(r, "settling: waiting on %s", r->waiting_on);
            last_say = now_ms();
        }
        sleep_ms(250);
    }
    r->settle_took_ms = now_ms() - s0;
    if (r->settled) {
        say(r, "settled in %.1fs", (double)r->settle_took_ms / 1000);
    } else {
        say(r, "not settled after %.1fs: still waiting on %s", (double)r->settle_took_ms / 1000,
            r->waiting_on);
        violation(r, 0, 0, 0, 0, "the cluster did not settle within %.0fs of the heal: still "
                  "waiting on %s", (double)r->settle_ms / 1000, r->waiting_on);
        dump_stacks(r);
    }

    /* checks on the live hosts, then stop everything */
    tn_map jr;
    journals_read(r, &jr);
    check_procs_live(r, &jr);
    for (int i = r->s.workers; i >= 1; i--)
        stop_daemon(r, i);
    tproc *ps = NULL;
    size_t np = scan_procs(r, &ps);
    for (size_t i = 0; i < np; i++) {
        violation(r, 4, 0, ps[i].task, ps[i].attempt, "pid %d (w%d) survived the stop of every "
                  "worker", (int)ps[i].pid, ps[i].worker);
        kill(ps[i].pid, SIGKILL);
    }
    free(ps);
    check_cgroups(r);
    stop_daemon(r, 0);
    slow_cleanup(r);
    reap(r);
    journals_free(&jr);
    journals_read(r, &jr); /* with the ends the stops wrote */
    check_journals(r, &jr);
    check_store(r, &jr);
    journals_free(&jr);
    for (int i = 0; i <= r->s.workers; i++)
        if (r->d[i].rss_max > r->rss_bound)
            violation(r, 6, 0, 0, 0, "%s reached %.1f MiB of RssAnon (bound %.1f MiB)",
                      r->d[i].role, (double)r->d[i].rss_max / MIB, (double)r->rss_bound / MIB);
    if (atomic_load(&interrupted))
        violation(r, 0, 0, 0, 0, "interrupted: the run did not complete");

    fill_notes(r);
    if (r->json)
        report_json(r);
    else
        report_text(r);
    bool keep = r->keep || r->nviols;
    if (!r->json)
        printf("result: %s (seed %" PRIu64 ", scenario %s)\n", r->nviols ? "FAIL" : "PASS",
               r->s.seed, sc);
    if (keep)
        fprintf(r->json ? stderr : stdout, "kept %s (schedule.txt, master.log, wN.log, data, "
                "journals); re-run with `tern chaos --replay-schedule %s/schedule.txt`\n", r->dir,
                r->dir);
    else
        nftw(r->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    rc = r->nviols ? 1 : 0;
    free(r->viols);
    free(r->inst);
    free(r->s.v);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return rc;
}

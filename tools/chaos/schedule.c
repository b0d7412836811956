/* `tern chaos`: the fault schedule. Drawn from a seed (the workload from one PRNG stream,
 * the faults from another), written to DIR/schedule.txt and read back to run it again. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "cli.h"

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

static double rng_unit(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static int64_t rng_range(rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------------------------------------ */
/* scenarios, the workload's definitions */

const char *const chaos_scenario_names[SC__COUNT] = {
    "master-crash", "worker-crash", "partition", "lossy-net", "disk-full", "mixed", "schedule"};

const char *const chaos_kind_names[K__COUNT] = {
    "start",       "start-crash", "pause",       "resume",      "stop",      "recover",  "kill",
    "master-kill", "master-stop", "worker-kill", "worker-stop", "disk-full", "slow-disk"};

const wdef chaos_defs[NDEFS] = {
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


const wdef *schedule_def(const char *name)
{
    for (int i = 0; i < NDEFS; i++)
        if (strcmp(chaos_defs[i].name, name) == 0)
            return &chaos_defs[i];
    return NULL;
}

static int name_index(const char *const *names, int n, const char *name)
{
    int found = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            found = i;
    return found;
}

int schedule_scenario(const char *name)
{
    return name_index(chaos_scenario_names, SC__COUNT, name);
}

/* ------------------------------------------------------------------------------ */
/* drawing */

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

/* The network faults and the store sizes, from the fault stream. */
static void draw_config(sched *s, rng *fr)
{
    int scen = s->scenario;
    bool mixed = scen == SC_MIXED;
    s->net[0] = 0;
    if (scen == SC_LOSSY_NET || mixed) {
        double k = mixed ? 0.5 : 1.0;
        snprintf(s->net, sizeof(s->net),
                 "drop=%.3f,dup=%.3f,delay=%.3f,max_delay_ms=%d,reorder=%.3f",
                 k * (0.05 + 0.15 * rng_unit(fr)), k * (0.05 + 0.15 * rng_unit(fr)),
                 k * (0.1 + 0.2 * rng_unit(fr)), (int)rng_range(fr, 20, 200),
                 k * (0.05 + 0.15 * rng_unit(fr)));
    }
    if (scen == SC_DISK_FULL || mixed || scen == SC_SCHEDULE) {
        /* room for the run's own log, so that the ballast, not the workload, fills it */
        s->master_map_max = 8 * MIB + (uint64_t)s->workflows * 64 * 1024;
        s->worker_map_max = 1 * MIB;
    }
}

/* The definition a top-level start runs, by the weights. */
static const wdef *draw_def(rng *wl)
{
    unsigned p = (unsigned)rng_range(wl, 0, 99), acc = 0;
    for (int j = 0; j < NDEFS; j++) {
        acc += chaos_defs[j].weight;
        if (p < acc)
            return &chaos_defs[j];
    }
    return &chaos_defs[0];
}

/* Perhaps a user command (or two) about start i, made at start_ms, of a run of d. */
static void draw_command(sched *s, rng *wl, int i, int64_t start_ms, const wdef *d)
{
    int64_t D = s->duration_ms;
    /* commands go mostly to the runs that last long enough to be caught running */
    bool slow = strcmp(d->name, "chaos_long") == 0 || strcmp(d->name, "chaos_parent") == 0;
    if (rng_unit(wl) >= (slow ? 0.6 : 0.2))
        return;
    int64_t t1 = start_ms + rng_range(wl, 50, slow ? 1500 : 400);
    int what = (int)rng_range(wl, 0, 3);
    if (t1 >= D)
        return;
    switch (what) {
    case 0: { /* pause, then resume */
        sched_add(s, (act){.at_ms = t1, .k = K_PAUSE, .target = i});
        int64_t t2 = t1 + rng_range(wl, 500, 3000);
        sched_add(s, (act){.at_ms = t2 < D ? t2 : D, .k = K_RESUME, .target = i});
        break;
    }
    case 1: sched_add(s, (act){.at_ms = t1, .k = K_STOP, .target = i}); break;
    case 2: { /* stop, then recover */
        sched_add(s, (act){.at_ms = t1, .k = K_STOP, .target = i});
        int64_t t2 = t1 + rng_range(wl, 1000, 2500);
        if (t2 < D)
            sched_add(s, (act){.at_ms = t2, .k = K_RECOVER, .target = i});
        break;
    }
    default: sched_add(s, (act){.at_ms = t1, .k = K_KILL, .target = i});
    }
}

/* The workload: starts spread over the first 80% of the window, user commands on about a
 * third of them. */
static void draw_workload(sched *s, rng *wl)
{
    int64_t D = s->duration_ms;
    int64_t span = D * 8 / 10 > 1000 ? D * 8 / 10 : 1000, last = 0;
    for (int i = 0; i < s->workflows; i++) {
        act a = {.at_ms =
                     300 + span * i / s->workflows + rng_range(wl, 0, span / s->workflows / 2),
                 .k = K_START,
                 .target = i};
        /* strictly increasing: a replayed schedule numbers its starts by their order */
        if (a.at_ms <= last)
            a.at_ms = last + 1;
        last = a.at_ms;
        const wdef *d = draw_def(wl);
        snprintf(a.wf, sizeof(a.wf), "%s", d->name);
        sched_add(s, a);
        draw_command(s, wl, i, a.at_ms, d);
    }
}

/* The fault kinds of a scenario (returns how many) and the gaps between faults. */
static int fault_kinds(int scen, kind kinds[8], int64_t *gap_lo, int64_t *gap_hi)
{
    int nk = 0;
    *gap_lo = 1500;
    *gap_hi = 4000;
    switch (scen) {
    case SC_MASTER_CRASH:
        kinds[nk++] = K_MASTER_KILL;
        *gap_lo = 2000;
        *gap_hi = 5000;
        break;
    case SC_WORKER_CRASH: kinds[nk++] = K_WORKER_KILL; break;
    case SC_PARTITION:
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_MASTER_STOP;
        *gap_lo = 2000;
        *gap_hi = 5000;
        break;
    case SC_LOSSY_NET: break;
    case SC_DISK_FULL:
        kinds[nk++] = K_DISK_FULL;
        kinds[nk++] = K_DISK_FULL;
        kinds[nk++] = K_SLOW_DISK;
        *gap_lo = 3000;
        *gap_hi = 6000;
        break;
    case SC_SCHEDULE: /* what a schedule's fires must survive: the master's faults */
        kinds[nk++] = K_MASTER_KILL;
        kinds[nk++] = K_MASTER_KILL;
        kinds[nk++] = K_MASTER_STOP;
        kinds[nk++] = K_DISK_FULL;
        *gap_lo = 1500;
        *gap_hi = 3500;
        break;
    default:
        kinds[nk++] = K_MASTER_KILL;
        kinds[nk++] = K_WORKER_KILL;
        kinds[nk++] = K_WORKER_STOP;
        kinds[nk++] = K_MASTER_STOP;
        kinds[nk++] = K_DISK_FULL;
        kinds[nk++] = K_SLOW_DISK;
    }
    return nk;
}

/* A fault's target and durations. The disk faults hit the master one time in two. */
static void draw_fault(const sched *s, rng *fr, act *a)
{
    switch (a->k) {
    case K_MASTER_KILL:
        a->target = -1;
        a->ms = rng_range(fr, 0, 2500);
        break;
    case K_MASTER_STOP:
        a->target = -1;
        a->ms = rng_range(fr, 2500, 4000);
        break;
    case K_WORKER_KILL:
        a->target = (int)rng_range(fr, 0, s->workers - 1);
        a->ms = rng_range(fr, 100, 4000);
        break;
    case K_WORKER_STOP:
        a->target = (int)rng_range(fr, 0, s->workers - 1);
        a->ms = rng_range(fr, 2500, 6000);
        break;
    case K_SLOW_DISK:
        a->target = rng_unit(fr) < 0.5 ? -1 : (int)rng_range(fr, 0, s->workers - 1);
        a->ms = rng_range(fr, 2000, 5000);
        a->iops = rng_range(fr, 4, 20);
        break;
    default: /* disk-full; the schedule scenario fills the master's, where fires commit */
        a->target = rng_unit(fr) < 0.5 ? -1 : (int)rng_range(fr, 0, s->workers - 1);
        a->ms = rng_range(fr, 1500, 4000);
        if (s->scenario == SC_SCHEDULE)
            a->target = -1;
    }
}

/* The faults; busy[] keeps two faults off one process at once. */
static void draw_faults(sched *s, rng *fr)
{
    int64_t busy[MAXW + 1] = {0}; /* [0] master, [1 + i] worker i */
    kind kinds[8];
    int64_t gap_lo, gap_hi;
    int nk = fault_kinds(s->scenario, kinds, &gap_lo, &gap_hi);
    for (int64_t t = 1000 + rng_range(fr, 0, 1000); nk && t < s->duration_ms - 500;
         t += rng_range(fr, gap_lo, gap_hi)) {
        act a = {.at_ms = t, .k = kinds[rng_range(fr, 0, nk - 1)]};
        draw_fault(s, fr, &a);
        int b = a.target + 1;
        if (busy[b] > t)
            continue;
        busy[b] = t + a.ms + 1000;
        sched_add(s, a);
    }
}

/* Whether a crash of the master over [from, to) would meet another fault on the master
 * (action i aside). */
static bool master_clash(const sched *s, size_t i, int64_t from, int64_t to)
{
    bool clash = false;
    for (size_t j = 0; j < s->n; j++) {
        const act *b = &s->v[j];
        bool on_master = j != i && (b->k == K_START_CRASH || (IS_FAULT(b->k) && b->target < 0));
        if (on_master && b->at_ms < to && b->at_ms + b->ms + 500 > from)
            clash = true;
    }
    return clash;
}

/* master-crash: some starts crash the master the moment it answers, away from the other
 * faults on the master. */
static void draw_start_crashes(sched *s, rng *fr)
{
    bool mixed = s->scenario == SC_MIXED;
    if (s->scenario != SC_MASTER_CRASH && !mixed)
        return;
    for (size_t i = 0; i < s->n; i++) {
        act *a = &s->v[i];
        if (a->k != K_START || rng_unit(fr) >= (mixed ? 0.15 : 0.3))
            continue;
        int64_t ms = rng_range(fr, 0, 1500);
        if (master_clash(s, i, a->at_ms - 200, a->at_ms + ms + 500))
            continue;
        a->k = K_START_CRASH;
        a->ms = ms;
    }
}

void schedule_draw(sched *s)
{
    rng wl = {s->seed ^ 0x5eed0f10adull}, fr = {s->seed ^ 0xfa017ull};
    draw_config(s, &fr);
    draw_workload(s, &wl);
    draw_faults(s, &fr);
    draw_start_crashes(s, &fr);
    qsort(s->v, s->n, sizeof(act), act_cmp);
}

/* ------------------------------------------------------------------------------ */
/* the schedule file */

void schedule_target_name(const act *a, char *buf, size_t len)
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

int schedule_write(const sched *s, const char *path)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -1;
    fprintf(f, "# tern chaos schedule v1: `tern chaos --replay-schedule %s` runs it again\n",
            path);
    fprintf(f,
            "seed %" PRIu64 "\nscenario %s\nduration_ms %" PRId64 "\nworkers %d\n"
            "workflows %d\nnet %s\nmaster_map_max %" PRIu64 "\nworker_map_max %" PRIu64 "\n",
            s->seed, chaos_scenario_names[s->scenario], s->duration_ms, s->workers,
            s->workflows, s->net[0] ? s->net : "-", s->master_map_max, s->worker_map_max);
    fprintf(f, "# AT_MS ACTION [TARGET] [MS]\n");
    for (size_t i = 0; i < s->n; i++) {
        const act *a = &s->v[i];
        char t[64];
        schedule_target_name(a, t, sizeof(t));
        fprintf(f, "%" PRId64 " %s%s%s", a->at_ms, chaos_kind_names[a->k], t[0] ? " " : "", t);
        if (a->k == K_START_CRASH || IS_FAULT(a->k))
            fprintf(f, " %" PRId64, a->ms);
        if (a->k == K_SLOW_DISK)
            fprintf(f, " %" PRId64, a->iops);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* An action line's words after AT_MS (w2 the action): false when they are not one. */
static bool read_act(const char *w2, const char *w3, const char *w4, const char *w5, act *a)
{
    int k = name_index(chaos_kind_names, K__COUNT, w2);
    const char *ms = NULL;
    bool bad = false;
    if (k < 0)
        return false;
    a->k = (kind)k;
    if (a->k == K_START || a->k == K_START_CRASH) {
        bad = !schedule_def(w3) || schedule_def(w3)->weight == 0;
        snprintf(a->wf, sizeof(a->wf), "%.*s", (int)sizeof(a->wf) - 1, w3);
        ms = a->k == K_START_CRASH ? w4 : NULL;
    } else if (!IS_FAULT(a->k)) {
        bad = w3[0] != '#';
        a->target = atoi(w3 + 1);
    } else if (a->k == K_MASTER_KILL || a->k == K_MASTER_STOP) {
        a->target = -1;
        ms = w3;
    } else {
        ms = w4;
        if (strcmp(w3, "master") == 0)
            a->target = -1;
        else if (w3[0] == 'w' && isdigit((unsigned char)w3[1]))
            a->target = atoi(w3 + 1);
        else
            bad = true;
    }
    if (ms)
        a->ms = strtoll(ms, NULL, 10);
    if (a->k == K_SLOW_DISK && (a->iops = strtoll(w5, NULL, 10)) <= 0)
        bad = true;
    return !bad && !(ms && !*ms);
}

/* A setting line ("seed 7"): false when it is not one. */
static bool read_setting(sched *s, const char *w1, const char *w2, bool *have_seed,
                         bool *have_sc)
{
    if (strcmp(w1, "seed") == 0) {
        s->seed = strtoull(w2, NULL, 10);
        *have_seed = true;
    } else if (strcmp(w1, "scenario") == 0) {
        int sc = schedule_scenario(w2);
        if (sc >= 0)
            s->scenario = sc;
        *have_sc = s->scenario >= 0;
    } else if (strcmp(w1, "duration_ms") == 0) {
        s->duration_ms = strtoll(w2, NULL, 10);
    } else if (strcmp(w1, "workers") == 0) {
        s->workers = atoi(w2);
    } else if (strcmp(w1, "workflows") == 0) {
        s->workflows = atoi(w2);
    } else if (strcmp(w1, "net") == 0) {
        snprintf(s->net, sizeof(s->net), "%s", strcmp(w2, "-") ? w2 : "");
    } else if (strcmp(w1, "master_map_max") == 0) {
        s->master_map_max = strtoull(w2, NULL, 10);
    } else if (strcmp(w1, "worker_map_max") == 0) {
        s->worker_map_max = strtoull(w2, NULL, 10);
    } else {
        return false;
    }
    return true;
}

/* A schedule read whole: complete, and its actions name starts and workers it has. */
static int sched_check(const char *path, sched *s, bool have_seed, bool have_sc)
{
    if (!have_seed || !have_sc || s->duration_ms <= 0 || s->workers < 1 || s->workers > MAXW)
        return tn_cli_fail("chaos",
                           "%s: not a complete schedule (seed, scenario, duration_ms "
                           "and workers 1..%d are required)",
                           path, MAXW);
    /* starts are numbered in the order they come (#N in the commands) */
    int nstarts = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].k == K_START || s->v[i].k == K_START_CRASH)
            s->v[i].target = nstarts++;
    s->workflows = nstarts;
    for (size_t i = 0; i < s->n; i++)
        if (!IS_FAULT(s->v[i].k) && s->v[i].target >= nstarts)
            return tn_cli_fail("chaos",
                               "%s: a command names start #%d; the schedule has %d "
                               "starts",
                               path, s->v[i].target, nstarts);
    for (size_t i = 0; i < s->n; i++)
        if (IS_FAULT(s->v[i].k) && s->v[i].target >= s->workers)
            return tn_cli_fail("chaos", "%s: a fault names worker w%d; the schedule has %d",
                               path, s->v[i].target, s->workers);
    qsort(s->v, s->n, sizeof(act), act_cmp);
    return 0;
}

int schedule_read(const char *path, sched *s)
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
            if (!read_act(w2, w3, w4, w5, &a)) {
                rc = tn_cli_fail("chaos",
                                 "%s:%d: expected `AT_MS ACTION [TARGET] [MS]` with "
                                 "ACTION one of start, start-crash, pause, resume, stop, "
                                 "recover, kill, master-kill, master-stop, worker-kill, "
                                 "worker-stop, disk-full, slow-disk",
                                 path, ln);
                break;
            }
            sched_add(s, a);
        } else if (n < 2 || !read_setting(s, w1, w2, &have_seed, &have_sc)) {
            rc = tn_cli_fail("chaos", "%s:%d: unknown line \"%s\"", path, ln, p);
        }
    }
    fclose(f);
    if (rc)
        return rc;
    return sched_check(path, s, have_seed, have_sc);
}

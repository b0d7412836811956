/* `tern chaos`: a real master and workers on loopback, a workload and a fault schedule drawn
 * from a seed, then the invariants checked from the log, the workers' journals and /proc. */
#include <ftw.h>
#include <stddef.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "chaos.h"
#include "cli.h"
#include "def.h"
#include "opt.h"

/* The options as given; the run's defaults are applied after parsing, so that what was
 * given can be told apart (--replay-schedule refuses --seed and the sizes). */
typedef struct chaos_opts {
    const char *seed, *dir, *replay;
    uint64_t duration_ms, settle_ms, workers, workflows, rss_max;
    bool json;
} chaos_opts;

static const tn_opt chaos_table[] = {
    {"seed", 0, TN_OPT_STR, offsetof(chaos_opts, seed), "N",
     .help = "PRNG seed (default: from the clock; printed first)"},
    {"duration", 0, TN_OPT_DURATION, offsetof(chaos_opts, duration_ms), "D",
     .help = "how long faults are injected and work is submitted (default 60s)", .min = 1000,
     .want = "a duration of at least 1s, such as 60s or 30m"},
    {"workers", 0, TN_OPT_U64, offsetof(chaos_opts, workers), "K",
     .help = "worker processes, 4 slots each (default 3, at most 16)", .min = 1, .max = MAXW},
    {"workflows", 0, TN_OPT_U64, offsetof(chaos_opts, workflows), "W",
     .help = "workflow starts (default: one per second of duration, at least 8)", .min = 1,
     .max = 100000},
    {"dir", 0, TN_OPT_STR, offsetof(chaos_opts, dir), "DIR",
     .help = "work in DIR (created; kept)"},
    {"settle", 0, TN_OPT_DURATION, offsetof(chaos_opts, settle_ms), "D",
     .help = "how long to wait for the cluster to settle after healing (120s)"},
    {"rss-max", 0, TN_OPT_SIZE, offsetof(chaos_opts, rss_max), "BYTES",
     .help = "the memory bound of invariant 6 (default 256M)", .min = 1},
    {"replay-schedule", 0, TN_OPT_STR, offsetof(chaos_opts, replay), "FILE",
     .help = "run a schedule file again (its seed, scenario, sizes and every action)"},
    {"json", 0, TN_OPT_FLAG, offsetof(chaos_opts, json), NULL,
     .help = "the report as JSON on stdout (progress stays on stderr)"},
    {0}};

const tn_opt_cmd tn_spec_chaos = {
    "chaos", (const char *const[]){"SCENARIO", "--replay-schedule FILE", NULL},
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
    "  7. each schedule decided each of its nominal times exactly once: one FIRE that\n"
    "     commits with its instance's SUBMIT, or one SKIP with a reason, or one BUFFER\n"
    "     (then one buffered FIRE, or still pending); times that came while it was\n"
    "     paused are not due;\n"
    "and that no daemon exited unless the harness killed it and the cluster settled. Each\n"
    "violation names the seq, task and attempt it is about; the exit status is 1 when there\n"
    "is one.\n"
    "\n"
    "Scenarios (faults from a PRNG seeded with --seed; the same seed draws the same "
    "schedule):\n"
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
    "  schedule      five schedules firing every second or two (each overlap policy,\n"
    "                catchup windows of 5s to 60s) beside the workload, through SIGKILLs\n"
    "                and SIGSTOPs of the master and its store filled around fire times\n"
    "  failover      three masters (--zk) on a three-member ZooKeeper ensemble, two workers\n"
    "                on lossy links, starts and a schedule every 2s: the leader SIGKILLed or\n"
    "                SIGSTOPped past its session, ZooKeeper members (now and then two) and\n"
    "                workers killed. Its own checks: every accepted start succeeds, is\n"
    "                SUBMITted once in the last leader's log, whose replay is clean; every\n"
    "                master's log equals the longest where they overlap; the schedule's\n"
    "                times are decided once; no worker takes an older leader's frames after\n"
    "                a newer one's; no attempt starts twice; every daemon stops within 30s\n"
    "\n"
    "The schedule is written to DIR/schedule.txt; --replay-schedule FILE runs one again\n"
    "(its seed, scenario, sizes and every fault and user action). The directory is removed\n"
    "at the end unless --dir was given or a check failed; then its path is printed. It holds\n"
    "the daemons' logs (master.log, wN.log), their data and the workers' journals.\n"
    "\n",
    chaos_table, .max_args = 1};

atomic_bool chaos_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&chaos_interrupted, true);
}

bool chaos_mount_point(const char *type, const char *opt, char *buf, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096], sepw[64];
    bool found = false;
    snprintf(sepw, sizeof(sepw), " - %s ", type);
    while (f && !found && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, sepw);
        char mp[PATH_MAX];
        if (sep && (!opt || strstr(sep, opt)) &&
            sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1) {
            snprintf(buf, len, "%s", mp);
            found = true;
        }
    }
    if (f)
        fclose(f);
    return found;
}

/* ------------------------------------------------------------------------------ */
/* the command line */

/* `tern chaos failover` (failover.c): three masters on ZooKeeper, its own run. */
static bool failover_scenario;

/* The options into r; have_seed and sized: whether --seed and the sizes were given.
 * Returns 0, or the exit status of a usage error. */
static int parse_opts(const chaos_opts *o, run *r, bool *have_seed, bool *sized)
{
    r->s.duration_ms = o->duration_ms ? (int64_t)o->duration_ms : 60000;
    r->s.workers = o->workers ? (int)o->workers : 3;
    r->s.workflows = (int)o->workflows;
    r->settle_ms = o->settle_ms ? (int64_t)o->settle_ms : 120000;
    r->rss_bound = o->rss_max ? o->rss_max : 256 * MIB;
    r->json = o->json;
    *sized = o->duration_ms || o->workers || o->workflows;
    *have_seed = o->seed != NULL;
    if (o->seed && !tn_cli_u64(o->seed, &r->s.seed))
        return tn_cli_usage("chaos", "--seed wants a number, not \"%s\"", o->seed);
    if (o->dir) {
        snprintf(r->dir, sizeof(r->dir), "%s", o->dir);
        r->keep = true;
    }
    return 0;
}

/* The command line into r: the schedule drawn, or read from *replay. Returns 0, or the exit
 * status of an error. */
static int parse_args(int argc, char **argv, run *r, const char **replay)
{
    bool have_seed = false, sized = false;
    chaos_opts o = {0};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_chaos, argc, argv, &o, &a);
    if (rc)
        return rc;
    const char *scen = a.n ? a.v[0] : NULL; /* points into argv */
    *replay = o.replay;
    rc = parse_opts(&o, r, &have_seed, &sized);
    tn_opt_args_free(&a);
    if (rc)
        return rc;
    if (*replay) {
        if (have_seed || sized)
            return tn_cli_usage("chaos", "--replay-schedule takes the seed, duration, workers "
                                         "and workflows from the schedule; drop those options");
        rc = schedule_read(*replay, &r->s);
        if (rc)
            return rc;
        if (scen && strcmp(scen, chaos_scenario_names[r->s.scenario]) != 0)
            return tn_cli_usage("chaos", "the schedule is of scenario %s, not %s",
                                chaos_scenario_names[r->s.scenario], scen);
        return 0;
    }
    if (!scen)
        return tn_cli_usage("chaos", "give a scenario: master-crash, worker-crash, partition, "
                                     "lossy-net, disk-full, mixed, schedule or failover");
    if (strcmp(scen, "failover") == 0) { /* a cluster of masters: failover.c */
        if (!have_seed)
            r->s.seed = (uint64_t)tn_now_ns() % 1000000007ull ^ (uint64_t)getpid();
        failover_scenario = true;
        return 0;
    }
    r->s.scenario = schedule_scenario(scen);
    if (r->s.scenario < 0)
        return tn_cli_usage("chaos",
                            "unknown scenario \"%s\" (master-crash, worker-crash, "
                            "partition, lossy-net, disk-full, mixed, schedule)",
                            scen);
    if (!have_seed)
        r->s.seed = (uint64_t)tn_now_ns() % 1000000007ull ^ (uint64_t)getpid();
    if (!r->s.workflows) {
        int64_t w = r->s.duration_ms / 1000;
        r->s.workflows = (int)(w < 8 ? 8 : w > 5000 ? 5000 : w);
    }
    schedule_draw(&r->s);
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* the run */

static void run_free(run *r)
{
    free(r->viols);
    free(r->inst);
    free(r->s.v);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The run's directory: --dir (created), else a new one under /tmp. */
static int run_dir(run *r)
{
    if (r->dir[0]) {
        if (tn_mkdir_p(r->dir) != 0)
            return tn_cli_fail("chaos", "%s: cannot create the directory: %m", r->dir);
        char abs[PATH_MAX];
        if (realpath(r->dir, abs))
            snprintf(r->dir, sizeof(r->dir), "%s", abs);
    } else {
        snprintf(r->dir, sizeof(r->dir), "/tmp/tern-chaos-XXXXXX");
        if (!mkdtemp(r->dir))
            return tn_cli_fail("chaos", "cannot create a temp dir under /tmp: %m");
    }
    if (strlen(r->dir) > 80)
        return tn_cli_fail("chaos",
                           "%s: too long for the ipc:// sockets under it (80 bytes "
                           "at most); use a shorter --dir",
                           r->dir);
    return 0;
}

/* This binary, the directory, the schedule written there, the ports and the daemons'
 * names. Returns 0, or prints why not and returns 1. */
static int run_setup(run *r, const char *replay)
{
    snprintf(r->runid, sizeof(r->runid), "%d", (int)getpid());
    ssize_t el = readlink("/proc/self/exe", r->exe, sizeof(r->exe) - 1);
    if (el <= 0)
        return tn_cli_fail("chaos", "cannot find this binary (/proc/self/exe): %m");
    r->exe[el] = 0;
    if (run_dir(r))
        return 1;
    char sp[PATH_MAX + 32];
    snprintf(sp, sizeof(sp), "%s/schedule.txt", r->dir);
    if ((!replay || strcmp(replay, sp) != 0) && schedule_write(&r->s, sp) != 0)
        return tn_cli_fail("chaos", "%s: cannot write the schedule: %m", sp);
    r->inst = calloc((size_t)r->s.workflows + 1, sizeof(inst));
    r->master_port = daemon_port();
    snprintf(r->master_url, sizeof(r->master_url), "tcp://127.0.0.1:%d", r->master_port);
    /* the control socket where a master puts it by default, on ipc: clients that give up
     * on it mid-handshake while the master is stopped are part of the test (nng#1518,
     * docs/RELIABILITY.md bug 9) */
    snprintf(r->ctl_url, sizeof(r->ctl_url), "ipc://%s/master.ctl", r->dir);
    snprintf(r->d[0].role, sizeof(r->d[0].role), "master");
    r->disk[0].map_max = r->s.master_map_max;
    for (int i = 0; i < r->s.workers; i++) {
        r->worker_port[i] = daemon_port();
        snprintf(r->d[1 + i].role, sizeof(r->d[1 + i].role), "w%d", i);
        r->disk[1 + i].map_max = r->s.worker_map_max;
    }
    if (!r->inst || r->master_port <= 0)
        return tn_cli_fail("chaos", "cannot set up the run (memory or a free port)");
    return 0;
}

/* Start the daemons, wait for the cluster and apply the definitions: 0, or 1 with every
 * process of the run stopped and the directory kept. */
static int run_up(run *r)
{
    if (schedrun_seed(r)) {
        fprintf(stderr, "tern chaos: kept %s\n", r->dir);
        return 1;
    }
    pthread_mutex_lock(&r->mu);
    int sr = daemon_spawn(r, 0);
    for (int i = 0; i < r->s.workers && !sr; i++)
        sr = daemon_spawn(r, 1 + i);
    pthread_mutex_unlock(&r->mu);
    if (sr)
        chaos_say(r, "cannot start the daemons: %m");
    if (sr || daemon_wait_up(r) || workload_apply_defs(r)) {
        daemon_kill_all(r);
        fprintf(stderr, "tern chaos: kept %s\n", r->dir);
        return 1;
    }
    return 0;
}

/* The window: faults here, the workload in its thread. */
static void run_window(run *r)
{
    r->t0 = now_ms();
    chaos_say(r, "cluster up (master %s, %d workers), dir %s", r->master_url, r->s.workers,
              r->dir);
    pthread_t wt;
    bool wt_ok = pthread_create(&wt, NULL, workload_thread, r) == 0;
    size_t next = 0;
    while (!atomic_load(&chaos_interrupted) && now_ms() - r->t0 < r->s.duration_ms) {
        while (next < r->s.n && r->s.v[next].at_ms <= now_ms() - r->t0) {
            if (IS_FAULT(r->s.v[next].k))
                fault_inject(r, &r->s.v[next]);
            next++;
        }
        fault_tick(r, false);
        sleep_ms(50);
    }
    /* the workload's last call may still be waiting on the master: keep restarting what
     * is due meanwhile */
    while (wt_ok && !atomic_load(&r->workload_done)) {
        fault_tick(r, false);
        sleep_ms(50);
    }
    if (wt_ok)
        pthread_join(wt, NULL);
}

/* Heal every fault, then wait (at most --settle) for the cluster to settle: the conditions
 * hold over a heartbeat timeout and a half, so a daemon the heal just restarted has been
 * seen, reconciled and has nothing left to do. */
static void run_settle(run *r)
{
    chaos_say(r, "window over: healing every fault; settling (at most %.0fs)",
              (double)r->settle_ms / 1000);
    fault_tick(r, true);
    int64_t s0 = now_ms(), last_say = s0, quiet_since = 0;
    while (!atomic_load(&chaos_interrupted)) {
        fault_tick(r, false);
        if (!check_settled(r, r->waiting_on, sizeof(r->waiting_on))) {
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
            chaos_say(r, "settling: waiting on %s", r->waiting_on);
            last_say = now_ms();
        }
        sleep_ms(250);
    }
    r->settle_took_ms = now_ms() - s0;
    if (r->settled) {
        chaos_say(r, "settled in %.1fs", (double)r->settle_took_ms / 1000);
        return;
    }
    chaos_say(r, "not settled after %.1fs: still waiting on %s",
              (double)r->settle_took_ms / 1000, r->waiting_on);
    chaos_violation(r, 0, 0, 0, 0,
                    "the cluster did not settle within %.0fs of the heal: still "
                    "waiting on %s",
                    (double)r->settle_ms / 1000, r->waiting_on);
    daemon_dump_stacks(r);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* The report, and the directory kept (a violation, or --dir) or removed. */
static void run_finish(run *r)
{
    report_print(r);
    bool keep = r->keep || r->nviols;
    if (!r->json)
        printf("result: %s (seed %" PRIu64 ", scenario %s)\n", r->nviols ? "FAIL" : "PASS",
               r->s.seed, chaos_scenario_names[r->s.scenario]);
    if (keep)
        fprintf(r->json ? stderr : stdout,
                "kept %s (schedule.txt, master.log, wN.log, data, "
                "journals); re-run with `tern chaos --replay-schedule %s/schedule.txt`\n",
                r->dir, r->dir);
    else
        nftw(r->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int tn_cmd_chaos(int argc, char **argv)
{
    failover_scenario = false;
    run *r = calloc(1, sizeof(*r));
    if (!r)
        return tn_cli_fail("chaos", "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    const char *replay = NULL;
    int rc = parse_args(argc, argv, r, &replay);
    if (rc || failover_scenario) {
        if (!rc)
            rc = tn_chaos_failover(r->s.seed, r->s.duration_ms, r->keep ? r->dir : NULL);
        run_free(r);
        return rc;
    }
    fprintf(r->json ? stderr : stdout,
            "tern chaos: seed %" PRIu64 " scenario %s duration %.1fs "
            "workers %d workflows %d%s%s\n",
            r->s.seed, chaos_scenario_names[r->s.scenario], (double)r->s.duration_ms / 1000,
            r->s.workers, r->s.workflows, replay ? " from " : "", replay ? replay : "");
    fflush(stdout);
    if (run_setup(r, replay)) {
        run_free(r);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (run_up(r)) {
        run_free(r);
        return 1;
    }
    run_window(r);
    run_settle(r);
    check_all(r);
    if (atomic_load(&chaos_interrupted))
        chaos_violation(r, 0, 0, 0, 0, "interrupted: the run did not complete");
    run_finish(r);
    rc = r->nviols ? 1 : 0;
    run_free(r);
    return rc;
}

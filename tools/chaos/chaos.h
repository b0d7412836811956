/* `tern chaos`, shared by its parts: the schedule (schedule.c), the daemons and the task
 * processes (daemons.c), the workload over the control socket (workload.c), the faults
 * (faults.c), the invariants (checks.c), the report (report.c) and the run (chaos.c). */
#ifndef TN_CHAOS_H
#define TN_CHAOS_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "ctl.h"
#include "map.h"
#include "sm_gen.h"
#include "util.h"

#define MAXW           16
#define HB_TIMEOUT_MS  2000
#define NDEFS          6
#define CTL_TIMEOUT_MS 5000
#define MIB            (1024ull * 1024)

/* ------------------------------------------------------------------------------ */
/* scenarios, the workload's definitions, the schedule (schedule.c) */

enum {
    SC_MASTER_CRASH,
    SC_WORKER_CRASH,
    SC_PARTITION,
    SC_LOSSY_NET,
    SC_DISK_FULL,
    SC_MIXED,
    SC_SCHEDULE,
    SC__COUNT
};
extern const char *const chaos_scenario_names[SC__COUNT];

typedef enum kind {
    /* the workload (its own thread) */
    K_START,
    K_START_CRASH,
    K_PAUSE,
    K_RESUME,
    K_STOP,
    K_RECOVER,
    K_KILL,
    /* faults (the main thread) */
    K_MASTER_KILL,
    K_MASTER_STOP,
    K_WORKER_KILL,
    K_WORKER_STOP,
    K_DISK_FULL,
    K_SLOW_DISK,
    K__COUNT
} kind;
extern const char *const chaos_kind_names[K__COUNT];
#define IS_FAULT(k) ((k) >= K_MASTER_KILL)

/* The definitions the workload starts, and the final state each gives when no user
 * command touched its instance (whatever the faults). */
typedef struct wdef {
    const char *name, *expect, *yaml;
    unsigned weight; /* of 100, for top-level starts */
} wdef;
extern const wdef chaos_defs[NDEFS];

typedef struct act {
    int64_t at_ms; /* from the start of the run */
    kind k;
    int target;   /* faults: worker index, -1 = the master; user actions: start index */
    int64_t ms;   /* restart delay, stop, fill or slow-down duration */
    int64_t iops; /* slow-disk: write operations per second allowed */
    char wf[40];  /* starts: the definition */
} act;

typedef struct sched {
    uint64_t seed;
    int scenario;
    int64_t duration_ms;
    int workers, workflows;
    char net[200];           /* TERN_FAULTS without the seed; "" = none */
    uint64_t master_map_max; /* 0 = the default */
    uint64_t worker_map_max;
    act *v;
    size_t n, cap;
} sched;

/* The definition of that name, or NULL. */
const wdef *schedule_def(const char *name);
/* The index of the scenario of that name, or -1. */
int schedule_scenario(const char *name);
/* Draw s's schedule from its seed, scenario and sizes: the same ones draw the same. */
void schedule_draw(sched *s);
/* What an action is about as the schedule file names it ("" for the master's faults). */
void schedule_target_name(const act *a, char *buf, size_t len);
/* Write the schedule to path: 0, or -1 with errno. */
int schedule_write(const sched *s, const char *path);
/* Read a schedule written by schedule_write. Returns 0, or prints what is wrong and
 * returns 1. */
int schedule_read(const char *path, sched *s);

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
    uint64_t rss_max;    /* bytes of RssAnon, over every incarnation */
    char exit_note[320]; /* an exit we did not cause */
} dproc;

typedef struct viol {
    int inv;
    uint64_t seq, task;
    uint32_t attempt;
    char what[400];
} viol;

typedef struct inst {
    uint64_t id;  /* 0: never accepted */
    bool touched; /* a user command was sent about it */
    int outcome;  /* start: 1 accepted, 2 refused, 3 unknown */
} inst;

typedef struct ballast {
    uint32_t keys;    /* ballast keys in the store now */
    uint64_t map_max; /* the store's size limit as the harness opens it */
    int64_t free_at;  /* monotonic ms when the disk frees again; 0: not full */
    int64_t next_topup;
} ballast;

/* A slow disk: the daemon moved into a blkio (cgroup v1) group whose writes to the data
 * directory's device are throttled to a few operations a second, so every fsync crawls. */
typedef struct slowdisk {
    int64_t until;  /* monotonic ms; 0: not slowed */
    pid_t pid;      /* the process moved */
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
    char blkio[PATH_MAX]; /* the blkio hierarchy's mount, "" when there is none */
    char blkdev[32];      /* "MAJ:MIN" of the device under DIR */
    char slow_why[200];   /* why slow disks cannot be injected here */
    pthread_mutex_t mu;   /* d[], inst[], counters below (the workload thread and main) */
    inst *inst;
    int64_t t0; /* monotonic ms of the start of the window */
    /* counters */
    uint64_t faults[K__COUNT], skipped[K__COUNT], ballast_bytes;
    uint64_t starts_accepted, starts_refused_full, starts_refused_other, starts_unknown;
    uint64_t cmds_ok[K__COUNT], cmds_refused[K__COUNT], cmds_unknown[K__COUNT];
    uint64_t not_issued; /* workload actions still due when the window closed */
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
    int64_t sched_end_ns; /* the schedule scenario: its schedules' end (unix ns) */
} run;

/* Set by SIGINT and SIGTERM (chaos.c): every loop of the run ends early. */
extern atomic_bool chaos_interrupted;

static inline int64_t now_ms(void)
{
    return tn_mono_ns() / 1000000;
}

static inline void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The mount point of the first file system of that type (mountinfo's "- TYPE ") whose
 * mount options name opt (NULL: any) into buf; false when none is mounted (chaos.c). */
bool chaos_mount_point(const char *type, const char *opt, char *buf, size_t len);

/* ------------------------------------------------------------------------------ */
/* progress and findings (report.c) */

/* A progress line on stderr, stamped with the time since the window opened. */
void chaos_say(run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Record a violation of invariant inv (0: daemons and settle) about seq, task, attempt
 * (0: none). */
void chaos_violation(run *r, int inv, uint64_t seq, uint64_t task, uint32_t attempt,
                     const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The report on stdout: JSON with --json, else text. */
void report_print(run *r);

/* ------------------------------------------------------------------------------ */
/* the daemons and the task processes (daemons.c) */

/* A port for a daemon to listen at for the whole run, or -1. */
int daemon_port(void);
void daemon_worker_name(const run *r, int i, char *buf, size_t len);
/* The data directory of daemon idx (0 master, 1 + i worker i). */
void daemon_store_dir(const run *r, int idx, char *buf, size_t len);
/* Start daemon idx with its log appended to DIR/ROLE.log: 0, or -1 with errno. With r->mu
 * held. */
int daemon_spawn(run *r, int idx);
/* Reap every exited child; a daemon exit the harness did not cause is a violation. */
void daemon_reap(run *r);
/* SIGKILL a daemon and have it restarted after restart_ms; false when it is down already.
 * With r->mu held. */
bool daemon_kill(run *r, int idx, int64_t restart_ms);
/* Stop a daemon with SIGTERM and wait (SIGKILL after 30s, which is a violation). */
void daemon_stop(run *r, int idx);
/* Wait for the master to answer and the workers to join: 0, or prints why not and 1. */
int daemon_wait_up(run *r);
/* Stop every daemon and SIGKILL every task process left. */
void daemon_kill_all(run *r);
/* For a cluster that did not settle: every daemon's threads into DIR/ROLE.stacks. */
void daemon_dump_stacks(run *r);
uint64_t daemon_rss_anon(pid_t pid);

/* A task process of this run, found in /proc by its environment. */
typedef struct tproc {
    pid_t pid;
    int worker; /* -1: carries the run's marker but no attempt tag */
    uint64_t task;
    uint32_t attempt;
} tproc;

/* Every live (not zombie) process whose environment carries this run's marker, except our
 * daemons. Returns how many (*out malloc'd). */
size_t daemon_scan_tasks(run *r, tproc **out);
/* SIGKILL every task process of the run; report: each is a violation of invariant 4 (it
 * survived the stop of every worker). */
void daemon_kill_tasks(run *r, bool report);

/* ------------------------------------------------------------------------------ */
/* the control socket and the workload (workload.c) */

typedef struct reply {
    int rc; /* 0 answered ok, 1 answered not ok, -1 no answer (no master), -2 timeout */
    char text[600];
    char json[8192];
} reply;

void chaos_ctl_call(run *r, tn_ctl_req *q, int timeout_ms, reply *out);
/* The master's `workers` answer into *rp; returns how many workers it has alive. */
int chaos_ctl_workers(run *r, int timeout_ms, reply *rp);
/* Apply the workload's definitions through the master: 0, or prints why not and 1. */
int workload_apply_defs(run *r);
/* The thread that issues the schedule's starts and user commands (arg: the run). */
void *workload_thread(void *arg);

/* ------------------------------------------------------------------------------ */
/* the faults (faults.c), from the main thread */

void fault_inject(run *r, const act *a);
/* Restarts, SIGCONTs and disk frees that are due; heal_all: all of them now. */
void fault_tick(run *r, bool heal_all);
/* At the end: the blkio groups of the slow disks go. */
void fault_cleanup(run *r);

/* ------------------------------------------------------------------------------ */
/* the checks (checks.c) */

/* Whether the cluster is settled now; if not, why into why. */
bool check_settled(run *r, char *why, size_t wlen);
/* Every invariant: on the live hosts, then (stopping every daemon) from the journals and
 * the master's store. */
void check_all(run *r);

/* `tern chaos failover` (failover.c): three masters on ZooKeeper, two workers, the
 * leader killed and paused; 0 when every invariant held. */
int tn_chaos_failover(uint64_t seed, int64_t duration_ms, const char *dir);

/* ------------------------------------------------------------------------------ */
/* the schedules (schedrun.c) */

/* The schedule scenario: its definitions applied and its schedules set on the master's
 * store, before the master first starts. 0, or prints why not and returns 1. */
int schedrun_seed(run *r);
/* 7: every schedule in the master's log decided each of its nominal times exactly once. */
struct tn_store;
void schedrun_check(run *r, struct tn_store *s);

#endif

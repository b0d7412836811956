/* Running task attempts as contained processes on a worker, and killing them for real:
 * a cgroup v2 per attempt where the host allows it, else a session plus a /proc walk.
 *
 * One manager (tn_procs) per worker owns every attempt (tn_proc) it starts. The worker is
 * made a child subreaper: orphans of its tasks re-parent to it, and all reaping goes
 * through tn_procs_reap (the worker must not call waitpid itself, nor set SIGCHLD to
 * SIG_IGN; tn_procs_new resets an ignored SIGCHLD to the default).
 *
 * Containment, per manager (tn_procs_mode) and recorded per attempt (tn_proc_mode):
 * - TN_CONTAIN_CGROUP: each attempt gets <root>/<name>/task-<task>-<attempt>, the leader
 *   joins it between fork and exec, so every process the task ever makes is in it (or a
 *   sub-cgroup the task makes). Membership is cgroup.procs; the kill is freeze, TERM to
 *   each, thaw, grace, freeze, cgroup.kill; empty is cgroup.events "populated 0".
 * - TN_CONTAIN_SESSION: the leader is a new session (setsid). Members are found by
 *   scanning /proc/<pid>/stat: session or process group equal to the leader's pid, plus
 *   every descendant of a member through ppid links, plus pids seen as members in earlier
 *   scans (matched by pid and start time, so a reused pid is never taken), plus orphans
 *   re-parented to the worker whose environment carries the attempt's tag (below). The
 *   final kill stops members with SIGSTOP until a scan finds nobody new, then SIGKILLs
 *   them, so a forking task cannot outrun it.
 *   Hole: a process that leaves the session (setsid), is orphaned, and drops or replaces
 *   its environment (env -i) all between two scans is not found. Scans run on every tick
 *   during a kill and at least every TN_PROC_SCAN_MS otherwise.
 *   Hole in both modes: a task running as root can move itself out of its cgroup, or
 *   re-parent and rewrite its environment; only a tenant user (tn_spawn.user) stops that.
 *
 * Every task process gets TERN_ATTEMPT_TAG=<name>/<task>/<attempt> in its environment
 * (replacing any inherited one). It attributes orphans in session mode and lets
 * tn_procs_adopt_leftovers find leftovers of a crashed worker in either mode.
 *
 * Lifetime of an attempt: start -> running -> the leader exits (status recorded) -> if
 * processes are left behind, they are killed (TERM, leftover grace, KILL): nothing
 * outlives its task -> finished: cgroups removed, reported once by tn_procs_reap ->
 * tn_proc_free. DolphinScheduler reports when the leader exits and leaves its children
 * running; here the result is the leader's status, reported after the leftovers are gone.
 *
 * Threads: every function that takes a tn_procs locks it, so tn_procs_reap may run on a
 * SIGCHLD thread while the loop starts and kills. tn_proc accessors read fields fixed at
 * start. A kill report is updated by tn_proc_kill, tn_procs_tick and tn_procs_reap: read
 * it from the thread that calls those, or once it is done (then it no longer changes).
 * Nothing here calls back into the worker except tn_procs_adopt_leftovers and
 * tn_procs_kill_pids, synchronously and with the manager locked: their callback must not
 * call tn_procs_* or tn_proc_* functions.
 *
 * Costs: session mode reads /proc/<pid>/stat of every process on the host per scan (and
 * /proc/<pid>/environ of unattributed orphans of the worker); cgroup mode reads only the
 * attempt's cgroup files. */
#ifndef TN_PROC_H
#define TN_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Session-mode scan period while attempts run and are not being killed. */
#define TN_PROC_SCAN_MS    200
/* At most this many pids are listed in a kill report (all are still counted). */
#define TN_PROC_REPORT_MAX 4096

typedef enum {
    TN_CONTAIN_CGROUP = 1,
    TN_CONTAIN_SESSION = 2
} tn_contain_mode;

/* "cgroup" or "session". */
const char *tn_contain_mode_name(tn_contain_mode m);

typedef struct tn_proc_opts {
    /* Where worker sub-trees live; the worker's is <cgroup_root>/<name>.
     * NULL: discover: the cgroup2 mount in /proc/self/mountinfo, then <mount>/tern; if
     *   that is unusable (no cgroup2, not writable, no cgroup.procs), session mode.
     * "": never use cgroups, not even v1 ones for limits (session mode).
     * A path: use it; if it is unusable, tn_procs_new fails (a configuration error). */
    const char *cgroup_root;
    /* The worker's id (DATA/worker-id, not its name, which is a label two workers may
     * share): 1..64 of [A-Za-z0-9._-], not starting with '.'. Names the cgroup sub-tree
     * <cgroup2>/tern/<id> and the environment tag, so leftovers found by it are this data
     * dir's previous run's and nobody else's. */
    const char *name;
    /* TERM-to-KILL grace for processes a task leaves behind when its leader exits.
     * 0 = 1000 ms. */
    uint64_t leftover_grace_ms;
    /* After SIGKILL, how long to wait for the processes to go before the kill report is
     * done with survivors (a process in uninterruptible sleep dies when its I/O ends).
     * 0 = 5000 ms. */
    uint64_t verify_ms;
} tn_proc_opts;

typedef struct tn_procs tn_procs; /* the manager: one per worker */
typedef struct tn_proc tn_proc;   /* one running attempt */

/* Makes the calling process a child subreaper (PR_SET_CHILD_SUBREAPER), picks the
 * containment mode, creates the worker's cgroup sub-tree when in cgroup mode, and finds
 * where memory/cpu limits can be applied (cgroup2 controllers, else the v1 memory and cpu
 * hierarchies under the worker's own v1 cgroups, else none). *out is written only on
 * success; the caller frees it with tn_procs_free. Cgroups left by a previous run are
 * not touched: call tn_procs_adopt_leftovers next. */
tn_err tn_procs_new(const tn_proc_opts *o, tn_procs **out, tn_errmsg *msg);
tn_contain_mode tn_procs_mode(const tn_procs *p);
/* The worker's cgroup sub-tree (cgroup mode), else NULL. Owned by the manager. */
const char *tn_procs_cgroup_dir(const tn_procs *p);
/* The bare contained run that a benchmark sets tern's spawn against: argv[0] (a path) with
 * envp in a new session and, in cgroup mode, a new v2 cgroup under the manager's sub-tree,
 * started as tn_proc_start starts an attempt (clone3 with CLONE_VM, CLONE_VFORK and
 * CLONE_INTO_CGROUP), waited for, its cgroup removed. None of the rest: no exec dir, log,
 * limits, user, environment or kill. 0 and *status as waitpid gives it, or an errno. */
int tn_procs_run_bare(tn_procs *p, char *const argv[], char *const envp[], int *status);
/* Kills whatever still runs (SIGKILL, waits up to verify_ms while reaping), removes the
 * task cgroups and the worker's sub-tree if empty, frees every tn_proc. Accepts NULL.
 * A crashed worker does none of this: see tn_procs_adopt_leftovers. */
void tn_procs_free(tn_procs *p);

/* Spare v1 pids cgroups (where the pids limit is applied by one), so a spawn renames a
 * directory instead of making one, and a clean end renames it back instead of removing it
 * (mkdir and rmdir in cgroupfs cost ~0.1 ms each). Keeps up to `ahead` spares made ahead
 * (tn_procs_fill_spares) and up to twice that from attempts that ended clean (exited,
 * nothing left behind, no kill, no sub-cgroup, nobody in it); pids.max is written when a
 * spare is taken, as for a new one. The v2 task cgroup is still made per attempt: cgroup2
 * has no rename (EPERM). 0 (the default) keeps none. Spares are DIR/spare-N:
 * tn_procs_free removes them, tn_procs_adopt_leftovers removes those a previous run left. */
void tn_procs_spares(tn_procs *p, uint32_t ahead);
/* Makes up to max spares while fewer than `ahead` wait; call it off the spawn path (an
 * idle turn of the loop). Returns how many it made. */
uint32_t tn_procs_fill_spares(tn_procs *p, uint32_t max);

typedef struct tn_spawn {
    uint64_t task;
    uint32_t attempt;
    const char *script;     /* run as /bin/sh -e -c script (the caller prepends env preludes);
                               one over 64 KiB as /bin/sh -e EXEC_DIR/.tern-script; a
                               simple command without the shell (tn_proc_simple_words) */
    const char *exec_dir;   /* created if missing (its parent must exist); the cwd */
    const char *log_path;   /* stdout and stderr, opened O_APPEND; created 0640 */
    char *const *envp;      /* NULL = the worker's environment */
    const char *user;       /* OS user (tenant): initgroups/setgid/setuid in the child, and
                             exec_dir is chowned to it; NULL = as the worker */
    uint64_t memory_max;    /* bytes, 0 = none */
    uint64_t cpu_max_milli; /* 1000 = one CPU, 0 = none */
    /* processes (and threads) the attempt may have at once, 0 = none: the task cgroup's
     * pids.max (v2, where the pids controller is delegated), else a v1 pids cgroup, else
     * RLIMIT_NPROC in the child, which counts every process of the task's user and which
     * root ignores: for a root task without a pids controller the limit is not enforced
     * (the limits note says which applied) */
    uint32_t pids_max;
} tn_spawn;

/* Starts one attempt. Everything in *s is copied or used during the call only. stdin is
 * /dev/null; signal dispositions and the mask are reset; only fds 0-2 are inherited.
 * Errors (nothing is left running, *out untouched): INVAL (bad spawn fields), EXISTS (the
 * attempt runs already, or its cgroup is still populated), NOENT (unknown user, missing
 * exec_dir parent), PERM, IO, NOMEM, and the exec failure of /bin/sh carried back from
 * the child (a vfork-style child: the call returns once it has exec'd or failed). The
 * leader is in its task cgroup from birth (clone3 CLONE_INTO_CGROUP where the kernel has
 * it, else the child joins before exec). Limits that cannot be applied do not fail
 * the start: see tn_proc_limits_note. *out belongs to the manager; the caller releases it
 * with tn_proc_free. */
tn_err tn_proc_start(tn_procs *p, const tn_spawn *s, tn_proc **out, tn_errmsg *msg);
/* Whether tn_proc_start runs script itself instead of through /bin/sh: one simple command
 * whose every byte is literal to the shell (letters, digits, _ . / : , + @ % - =, blanks
 * between words; no '=' in the command word), optionally after `exec`, whose command
 * word is no shell builtin or reserved word (but `true` or `false` alone). Then the words
 * go to words (at most max - 1 of them, NULL after the last), copied into buf (cap bytes),
 * and their count is returned; else 0. Run so, the command is the attempt's leader (no
 * shell process above it), found in the task's PATH, with PWD exported, a file without a
 * #! line run by /bin/sh, and the shell's exit status and message in the task log when
 * nothing runs (127 after a PATH search; 126 for a path that will not run). */
size_t tn_proc_simple_words(const char *script, char *buf, size_t cap, char **words,
                            size_t max);
pid_t tn_proc_pid(const tn_proc *t);
uint64_t tn_proc_task(const tn_proc *t);
uint32_t tn_proc_attempt(const tn_proc *t);
tn_contain_mode tn_proc_mode(const tn_proc *t);
/* How the limits were applied, for the task log: "no limits requested", "memory=v1
 * cpu=v1", "memory=v2; cpu limit unsupported here (...)". Owned by t. */
const char *tn_proc_limits_note(const tn_proc *t);
/* The pids limit that applied: "v2:N" (cgroup2 pids.max), "v1:N" (a v1 pids cgroup),
 * "rlimit:N" (RLIMIT_NPROC), "none" (root without a pids controller), "" (none asked). */
const char *tn_proc_pids_note(const tn_proc *t);

/* A process named durably: pid plus start time in clock ticks since boot (field 22 of
 * /proc/<pid>/stat), so a reused pid is not mistaken for it. */
typedef struct tn_pid_ident {
    pid_t pid;
    uint64_t start_ticks; /* 0 = unknown: match the pid alone */
} tn_pid_ident;
/* The leader's identity; a session-mode worker records it to kill leftovers after a
 * crash (tn_procs_kill_pids). */
tn_pid_ident tn_proc_ident(const tn_proc *t);

/* Releases an attempt. A finished one (reported by tn_procs_reap) is freed now; one still
 * running is SIGKILLed and detached: the manager reaps it, removes its cgroup and frees
 * it without reporting it. t must not be used afterwards. Accepts NULL. */
void tn_proc_free(tn_proc *t);

typedef struct tn_proc_exit {
    uint64_t task;
    uint32_t attempt;
    int status;         /* the leader's wait status (WIFEXITED/WEXITSTATUS, WIFSIGNALED) */
    bool killed;        /* tn_proc_kill was called before the leader exited */
    uint32_t leftovers; /* processes still running when the leader exited, then killed */
    uint32_t survivors; /* processes that outlived the kill (also in the kill report);
                           their cgroup stays for tn_procs_sweep */
    tn_proc *proc;      /* the attempt, for tn_proc_kill_report and tn_proc_free */
} tn_proc_exit;

/* Reaps every child (waitpid(-1, WNOHANG): task leaders and orphans re-parented to the
 * worker), advances kills as tn_procs_tick does, and writes up to `max` finished attempts
 * to out, each once; the rest come on the next call. Never blocks. */
size_t tn_procs_reap(tn_procs *p, tn_proc_exit *out, size_t max);

/* The kill ladder (seed 000), non-blocking: SIGTERM now to every process of the attempt,
 * SIGKILL to all at now + grace_ms (0: at once) from tn_procs_tick, then verify empty.
 * Killing an attempt already being killed only brings its deadline forward; killing one
 * whose leader exited kills what it left behind. Errors: INVAL. */
tn_err tn_proc_kill(tn_procs *p, tn_proc *t, uint64_t grace_ms);

/* Reaps, escalates to SIGKILL at deadlines, verifies kills, scans /proc in session mode,
 * and finishes attempts. Call it often: at least at tn_procs_next_tick. */
void tn_procs_tick(tn_procs *p, int64_t now_mono_ns);
/* When tn_procs_tick should run next (CLOCK_MONOTONIC ns), or 0 when nothing waits.
 * A running attempt whose exit tn_procs_wait_fd does not signal asks for a tick every
 * 2 ms. */
int64_t tn_procs_next_tick(tn_procs *p);
/* An fd that polls readable (POLLIN) while the leader of an attempt has exited and is not
 * reaped yet (an epoll set of pidfds), so a loop can sleep until an exit instead of
 * ticking; tn_procs_tick or tn_procs_reap makes it quiet again. -1 without pidfd or epoll
 * support. Owned by the manager; do not read it. */
int tn_procs_wait_fd(const tn_procs *p);

typedef struct tn_kill_report {
    uint32_t signalled; /* distinct processes signalled (TERM or KILL) */
    pid_t *pids;        /* the first TN_PROC_REPORT_MAX of them */
    uint32_t npids;
    uint32_t survivors;    /* alive when the kill gave up waiting (verify_ms) */
    pid_t *survivor_pids;  /* the first TN_PROC_REPORT_MAX of them */
    char *survivor_states; /* /proc state of each: 'D' = uninterruptible sleep */
    bool done;             /* verified empty, or survivors listed */
    bool escalated;        /* SIGKILL was needed: something outlived TERM and the grace */
    bool cgroup_kill;      /* the KILL went through cgroup.kill */
    int64_t term_ns;       /* CLOCK_MONOTONIC: TERM sent */
    int64_t kill_ns;       /* SIGKILL sent (0 if all left during the grace) */
    int64_t done_ns;       /* done set */
} tn_kill_report;

/* The report of the kill of t (asked for, or of the leftovers after its leader exited),
 * or NULL when none was started. Owned by t, valid until tn_proc_free. */
const tn_kill_report *tn_proc_kill_report(const tn_proc *t);

/* One attempt's leftovers killed by tn_procs_adopt_leftovers or tn_procs_kill_pids. */
typedef struct tn_leftover {
    uint64_t task;
    uint32_t attempt;
    const pid_t *pids; /* every process killed; valid during the callback */
    uint32_t npids;
    uint32_t survivors; /* still alive after verify_ms */
} tn_leftover;
typedef void (*tn_leftover_fn)(void *ud, const tn_leftover *l);

/* At worker start: finds the processes of a previous run of this worker (same name):
 * its task cgroups (cgroup mode), its v1 limit cgroups, and any process whose environment
 * carries this worker's tag; SIGKILLs them (stopping a session's members first), waits up
 * to verify_ms, removes the cgroups, and calls cb (may be NULL) once per attempt, task and
 * attempt parsed from the cgroup name or the tag. Blocks. *nattempts (may be NULL) gets
 * how many attempts had leftovers. Attempts of this manager are not touched. */
tn_err tn_procs_adopt_leftovers(tn_procs *p, tn_leftover_fn cb, void *ud, uint32_t *nattempts);
/* Session mode after a crash: kill the attempt whose leaders the worker recorded durably
 * (tn_proc_ident), with their session members, descendants and the attempt's tagged
 * processes. Stale identities (the pid now names another process) are skipped. Blocks up
 * to verify_ms; calls cb (may be NULL) once, also when nothing was left. */
tn_err tn_procs_kill_pids(tn_procs *p, uint64_t task, uint32_t attempt, const tn_pid_ident *ids,
                          size_t n, tn_leftover_fn cb, void *ud);

typedef struct tn_procs_stats {
    uint32_t live;          /* attempts started and not yet finished */
    uint32_t cgroups;       /* task cgroups existing in the worker's sub-trees (v2 and v1) */
    uint64_t swept_total;   /* leaked cgroups removed by tn_procs_sweep since start */
    uint64_t adopted_total; /* attempts whose leftovers were killed at start */
} tn_procs_stats;
void tn_procs_stats_get(tn_procs *p, tn_procs_stats *st);

/* Removes task cgroups (v2 and v1) that no unfinished attempt owns and that are empty;
 * returns how many (tern_leaked_resources_total counts them; expected 0). A populated
 * orphan cgroup is not touched here: that is tn_procs_adopt_leftovers' job. */
uint32_t tn_procs_sweep(tn_procs *p);

#endif

/* The worker daemon: dispatch in, contained processes, kill ladder, durable outbox of
 * reports resent with backoff until PERSISTED, heartbeats, reconciliation, log serving. */
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"
#include "map.h"
#include "mp.h"
#include "params.h"
#include "spares.h"
#include "killhook.h"
#include "proc.h"
#include "retention.h"
#include "taskenv.h"
#include "fence.h"
#include "outbox.h"
#include "outbox_store.h"
#include "util.h"
#include "proto.h"
#include "daemon.h"
#include "http.h"
#include "prom.h"
#include "rpc.h"

/* One attempt this worker runs. */
typedef struct job {
    struct job *next, *prev; /* w->jobs, newest first */
    uint64_t task, wf;
    uint32_t attempt;
    bool noop, noop_ok, killed, done;
    int64_t noop_due; /* monotonic */
    tn_proc *proc;
    char **out_keys, **out_vals; /* noop outputs */
    uint32_t nout;
    char *exec_dir, *log_path; /* shell attempts (sized: hundreds of jobs live at once) */
    tn_hook_set *hooks; /* killed, its processes gone: the kill hooks run, KILL_RESULT waits */
    char *user;         /* its tenant, for the kill hooks; NULL: the worker's user */
} job;

/* Attempts per generation of the finished-attempt maps. */
#define FINISHED_GEN 8192

/* A frame from the master, copied; decoded by the worker thread (what the decoder
 * returns lives only during its callback). */
typedef struct inmsg {
    struct inmsg *next;
    size_t len;
    char buf[];
} inmsg;

struct tn_worker {
    tn_worker_opts o;
    char data[PATH_MAX], name[TN_PROTO_ID_MAX + 1], ctl[4200], listen[4200];
    char groups[16][TN_PROTO_ID_MAX + 1];
    unsigned ngroups;
    tn_procs *procs;
    tn_outbox_store *st; /* the outbox and the attempt records, in DATA/ */
    tn_tx rx, tx;
    tn_tx_tls tls;
    bool use_tls;
    uint64_t refused_frames; /* frames from a peer that is not the master */
    tn_outq *q;
    tn_rpc_server *rpc;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu; /* inbound queue, jobs (for the log server's `running`) */
    int wake;           /* eventfd: a frame was queued, or stop */
    inmsg *in_head, *in_tail;
    job *jobs;
    uint32_t njobs;
    /* jobs done and not released; noop jobs; jobs whose kill hooks run; jobs that are not
     * their task's newest (fenced by a newer attempt): the loop's walks of w->jobs are
     * skipped while their count is 0 */
    uint32_t ndone, nnoop, nhooks, nfenced;
    tn_map newest; /* task -> its newest job: the lookups of reports and kills */
    tn_outbox ob;
    /* task -> last finished attempt, so a resent DISPATCH is not run twice; two bounded
     * generations (a resend comes within seconds; older attempts are fenced anyway) */
    tn_map finished, finished_old;
    uint64_t epoch;
    uint64_t swept, exec_dirs;
    tn_spares *exec_spares, *log_spares; /* made ahead, renamed into place (spares.h) */
    int journal; /* DATA/journal: append-only lines of attempt starts and ends */
    int lock_fd; /* flock on DATA/worker.lock: one worker per data dir */
    char id[TN_PROTO_ID_MAX + 1]; /* DATA/worker-id: names cgroups and task tags */
    /* DATA/cluster-id: the cluster (master store) this worker is bound to; "" until the
     * first frame it accepts */
    char cluster[TN_PROTO_CLUSTER_MAX + 1];
    bool rebound;           /* opts.cluster_id replaced another cluster at start */
    int64_t refused_log_at; /* monotonic: the last "another cluster" error */
    tn_fence fence;         /* the newest leader epoch seen (fence.h) */
    /* a new leader's URL (tn_worker_set_master), taken by the worker thread; guarded by mu */
    char next_master[TN_PROTO_URL_MAX + 1];
    uint64_t next_epoch;
    /* the master the worker reports to (w->tx), and the last leaders it followed, by epoch:
     * where a FENCED answer to a leader of an older epoch goes (worker thread only) */
    char master_url[TN_PROTO_URL_MAX + 1];
    struct {
        uint64_t epoch;
        char url[TN_PROTO_URL_MAX + 1]; /* "": a free slot */
        tn_tx tx;                       /* dialed at its first answer */
    } leaders[4];
    unsigned leaders_next; /* the slot the next leader takes */
    uint64_t refused;      /* frames refused since that log line */
    /* the last spawn failure, until a spawn succeeds (heartbeat, `tern workers`) */
    char degraded[TN_PROTO_REASON_MAX / 4];
    int64_t degraded_at; /* unix ns */
    tn_taskenv env;      /* what every task's environment starts from */
    /* monotonic: the last task log retention pass */
    int64_t retention_at;
    tn_kill_hooks *hooks; /* application kill hooks; NULL: none */
    /* for /metrics: written by the worker thread, read by the metrics server's */
    struct {
        _Atomic uint64_t jobs, running, outbox, exec_dirs, swept, started, finished;
    } pub;
    tn_http_server *metrics;
};

/* The execution journal, for the fault-injection checker (and people): one line per
 * attempt start and end, appended with one write(2) each, never rewritten:
 *   start TASK ATTEMPT PID UNIX_NS WORKER
 *   end TASK ATTEMPT UNIX_NS HOW        (HOW: exit=N, killed, spawn-failed, noop) */
static void journal(tn_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void journal(tn_worker *w, const char *fmt, ...)
{
    if (w->journal < 0)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    if ((size_t)n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    (void)!write(w->journal, line, (size_t)n);
}

/* The newest job of task (a newer attempt is put in front; the older one, killed by
 * fencing, stays until its processes are gone). */
static job *find_job(tn_worker *w, uint64_t task)
{
    return tn_map_get(&w->newest, task);
}

static job *find_attempt(tn_worker *w, uint64_t task, uint32_t attempt)
{
    job *n = find_job(w, task);
    if (!n || n->attempt == attempt || !w->nfenced)
        return n && n->attempt == attempt ? n : NULL;
    for (job *j = w->jobs; j; j = j->next) /* an older attempt, being killed: rare */
        if (j->task == task && j->attempt == attempt)
            return j;
    return NULL;
}

/* ------------------------------------------------------------------------------ */
/* attempts */

/* The attempt is over here: released by the next collect. */
static void finish(tn_worker *w, job *j)
{
    if (!j->done)
        w->ndone++;
    j->done = true;
}

/* The record that lets a restart find what this run left behind. */
static void record_task(tn_worker *w, job *j, bool live)
{
    if (!live) {
        (void)tn_outbox_store_del_task(w->st, j->task);
        return;
    }
    tn_pid_ident id = j->proc ? tn_proc_ident(j->proc) : (tn_pid_ident){0, 0};
    (void)tn_outbox_store_put_task(w->st, j->task, j->attempt, id.pid, id.start_ticks);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* One release path for every per-task resource, whatever ended the attempt. */
static void release(tn_worker *w, job *j)
{
    journal(w, "end %" PRIu64 " %u %" PRId64 " %s", j->task, j->attempt, tn_now_ns(),
            j->killed ? "killed" :
            j->noop   ? "noop" :
            j->proc   ? "exit" :
                        "spawn-failed");
    record_task(w, j, false);
    if (w->finished.len >= FINISHED_GEN) {
        /* the older table is emptied and reused: freeing it and growing a new one by
         * doubling every generation fragmented the heap, which kept growing */
        tn_map t = w->finished_old;
        if (t.slots)
            memset(t.slots, 0, t.cap * sizeof(*t.slots));
        t.len = 0;
        w->finished_old = w->finished;
        w->finished = t;
    }
    (void)tn_map_put(&w->finished, j->task, (void *)(uintptr_t)j->attempt);
    /* most tasks leave their exec dir empty: kept as a spare for the next attempt (no
     * process of this one is left to use it; in session mode, short of the hole proc.h
     * describes: an escapee never found keeps its cwd), else one rmdir, the walk only when
     * it is not empty */
    const tn_kill_report *kr = j->proc ? tn_proc_kill_report(j->proc) : NULL;
    bool clean = j->proc && (!kr || (kr->done && !kr->survivors));
    if (j->exec_dir &&
        ((clean && tn_spares_give(w->exec_spares, j->exec_dir)) || rmdir(j->exec_dir) == 0 ||
         nftw(j->exec_dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS) == 0) &&
        w->exec_dirs)
        w->exec_dirs--;
    /* a log that stayed empty: its inode kept for the next attempt, its name pointed at the
     * shared empty file (spares.h). Only in cgroup mode, where the attempt ended with its
     * cgroup empty: no process of it can still hold the log open and write to it. */
    if (clean && j->log_path && tn_proc_mode(j->proc) == TN_CONTAIN_CGROUP)
        (void)tn_spares_give(w->log_spares, j->log_path);
    free(j->exec_dir);
    free(j->log_path);
    free(j->user);
    tn_hook_set_free(j->hooks);
    if (j->proc)
        tn_proc_free(j->proc);
    for (uint32_t i = 0; i < j->nout; i++) {
        free(j->out_keys[i]);
        free(j->out_vals[i]);
    }
    free(j->out_keys);
    free(j->out_vals);
    pthread_mutex_lock(&w->mu);
    if (j->prev)
        j->prev->next = j->next;
    else
        w->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    w->njobs--;
    w->ndone -= j->done;
    w->nnoop -= j->noop;
    w->nhooks -= j->hooks != NULL;
    if (tn_map_get(&w->newest, j->task) != j) {
        w->nfenced--;
    } else {
        job *same = NULL; /* the newest other job of its task: one fenced, being killed */
        for (job *o = w->jobs; w->nfenced && o && !same; o = o->next)
            if (o->task == j->task)
                same = o;
        if (same) {
            (void)tn_map_put(&w->newest, j->task, same);
            w->nfenced--;
        } else {
            tn_map_del(&w->newest, j->task);
        }
    }
    atomic_fetch_add(&w->pub.finished, 1);
    pthread_mutex_unlock(&w->mu);
    free(j);
}

static void report_result(tn_worker *w, job *j, bool ok, int64_t code, const char *reason,
                          tn_kv *outs)
{
    tn_msg m = {.type = TN_MSG_RESULT};
    m.result.task = j->task;
    m.result.attempt = j->attempt;
    m.result.success = ok;
    m.result.exit_code = code;
    m.result.reason = tn_str_c(reason);
    uint32_t n = outs ? tn_kv_len(outs) : j->nout;
    tn_pair *pp = calloc(n ? n : 1, sizeof(*pp));
    for (uint32_t i = 0; pp && i < n; i++) {
        pp[i].key = tn_str_c(outs ? tn_kv_key(outs, i) : j->out_keys[i]);
        pp[i].val = tn_str_c(outs ? tn_kv_value(outs, i) : j->out_vals[i]);
    }
    m.result.outputs = (tn_pairs){pp, pp && ok ? n : 0};
    (void)tn_outbox_put(&w->ob, &m);
    free(pp);
}

static void report_killed(tn_worker *w, job *j)
{
    tn_msg m = {.type = TN_MSG_KILL_RESULT};
    m.kill_result.task = j->task;
    m.kill_result.attempt = j->attempt;
    const tn_kill_report *kr = j->proc ? tn_proc_kill_report(j->proc) : NULL;
    int64_t *pids = NULL;
    tn_survivor *sv = NULL;
    char *states = NULL;
    if (kr) {
        pids = calloc(kr->npids + 1, sizeof(int64_t));
        for (uint32_t i = 0; pids && i < kr->npids; i++)
            pids[i] = kr->pids[i];
        m.kill_result.signalled = (tn_pids){pids, pids ? kr->npids : 0};
        uint32_t ns = kr->survivors < TN_PROC_REPORT_MAX ? kr->survivors : TN_PROC_REPORT_MAX;
        sv = calloc(ns + 1, sizeof(*sv));
        states = calloc(ns + 1, 2);
        for (uint32_t i = 0; sv && states && i < ns; i++) {
            states[2 * i] = kr->survivor_states ? kr->survivor_states[i] : '?';
            sv[i] = (tn_survivor){kr->survivor_pids[i], {states + 2 * i, 1}};
        }
        m.kill_result.survivors = (tn_survivors){sv, sv && states ? ns : 0};
        tn_info("worker",
                "msg=\"killed\" task=%" PRIu64 " attempt=%u signalled=%u survivors=%u "
                "escalated=%d",
                j->task, j->attempt, kr->signalled, kr->survivors, (int)kr->escalated);
        for (uint32_t i = 0; sv && i < ns; i++)
            tn_warn("worker",
                    "msg=\"process survived the kill\" task=%" PRIu64 " pid=%" PRId64
                    " state=%c",
                    j->task, sv[i].pid, states[2 * i]);
    }
    m.kill_result.hooks = tn_hook_set_runs(j->hooks);
    (void)tn_outbox_put(&w->ob, &m);
    free(pids);
    free(sv);
    free(states);
}

/* Whether d is to run here: not meant for another run of this worker, not run already,
 * not a duplicate. A newer attempt of a task fences the older one (killed). */
static bool dispatch_wanted(tn_worker *w, const tn_msg_dispatch *d)
{
    if (d->worker_epoch != w->epoch) {
        /* meant for an earlier run of this worker (the transport kept it while we were
         * down): the master declares that attempt lost once we tell it what we run */
        tn_warn("worker",
                "msg=\"dispatch for another run of this worker dropped\" task=%" PRIu64
                " attempt=%u epoch=%" PRIu64 " ours=%" PRIu64,
                d->task, d->attempt, d->worker_epoch, w->epoch);
        return false;
    }
    uintptr_t fin = (uintptr_t)tn_map_get(&w->finished, d->task);
    if (!fin)
        fin = (uintptr_t)tn_map_get(&w->finished_old, d->task);
    if (fin && fin >= d->attempt)
        return false; /* ran already; its report is in the outbox or was persisted */
    job *old = find_job(w, d->task);
    if (old) {
        if (old->attempt >= d->attempt)
            return false; /* a duplicate DISPATCH (or an older one, late) */
        /* fencing: a newer attempt of the same task: the old one must not run on */
        if (!old->done && old->proc && !old->killed) {
            old->killed = true;
            (void)tn_proc_kill(w->procs, old->proc, 0);
        }
    }
    return true;
}

static void start_noop(tn_worker *w, job *j, const tn_msg_dispatch *d, tn_msg *acc)
{
    j->noop = true;
    w->nnoop++;
    j->noop_ok = d->noop_success;
    j->noop_due = tn_mono_ns() + (int64_t)d->noop_duration_ms * 1000000;
    j->nout = d->noop_outputs.n;
    j->out_keys = calloc(j->nout + 1, sizeof(char *));
    j->out_vals = calloc(j->nout + 1, sizeof(char *));
    for (uint32_t i = 0; j->out_keys && j->out_vals && i < j->nout; i++) {
        j->out_keys[i] = strndup(d->noop_outputs.v[i].key.p, d->noop_outputs.v[i].key.len);
        j->out_vals[i] = strndup(d->noop_outputs.v[i].val.p, d->noop_outputs.v[i].val.len);
    }
    acc->accepted.containment = TN_STR("none");
    journal(w, "start %" PRIu64 " %u 0 %" PRId64 " %s", j->task, j->attempt, tn_now_ns(),
            w->name);
    (void)tn_outbox_put(&w->ob, acc);
}

/* The attempt's clean environment (taskenv.h): the worker's base, the params, then what
 * identifies the attempt (in ids). The caller frees the array and *strs. */
static char **attempt_env(const tn_worker *w, const job *j, const tn_msg_dispatch *d,
                          char ids[4][256], char **strs)
{
    snprintf(ids[0], 256, "TERN_TASK_INSTANCE_ID=%" PRIu64, j->task);
    snprintf(ids[1], 256, "TERN_WORKFLOW_INSTANCE_ID=%" PRIu64, j->wf);
    snprintf(ids[2], 256, "TERN_TASK_ATTEMPT=%u", j->attempt);
    snprintf(ids[3], 256, "TERN_TASK_NAME=%.*s", (int)d->name.len, d->name.p);
    char *const idv[4] = {ids[0], ids[1], ids[2], ids[3]};
    return tn_taskenv_build(&w->env, &d->params, idv, 4, strs);
}

/* A shell attempt's exec dir, log and process. */
static tn_err spawn_shell(tn_worker *w, job *j, const tn_msg_dispatch *d, tn_errmsg *em)
{
    if (asprintf(&j->exec_dir, "%s/exec/%" PRIu64 "-%u", w->data, j->task, j->attempt) < 0)
        j->exec_dir = NULL;
    if (asprintf(&j->log_path, "%s/logs/%" PRIu64 "-%u.log", w->data, j->task, j->attempt) < 0)
        j->log_path = NULL;
    /* spares renamed into place; else tn_proc_start makes them */
    if (j->exec_dir)
        (void)tn_spares_take(w->exec_spares, j->exec_dir);
    if (j->log_path)
        (void)tn_spares_take(w->log_spares, j->log_path);
    char *script = malloc((size_t)d->env_prelude.len + d->command.len + 2);
    char ids[4][256], *strs = NULL, user[TN_PROTO_ID_MAX + 1];
    snprintf(user, sizeof(user), "%.*s", (int)d->user.len, d->user.p);
    j->user = user[0] ? strdup(user) : NULL;
    char **envp = attempt_env(w, j, d, ids, &strs);
    tn_err e = TN_ERR_NOMEM;
    if (script && envp && j->exec_dir && j->log_path) {
        snprintf(script, (size_t)d->env_prelude.len + d->command.len + 2, "%.*s%s%.*s",
                 (int)d->env_prelude.len, d->env_prelude.p, d->env_prelude.len ? "\n" : "",
                 (int)d->command.len, d->command.p);
        tn_spawn sp = {.task = j->task,
                       .attempt = j->attempt,
                       .script = script,
                       .exec_dir = j->exec_dir,
                       .log_path = j->log_path,
                       .envp = envp,
                       .user = user[0] ? user : NULL, /* the tenant */
                       .memory_max = d->memory_max,
                       .cpu_max_milli = d->cpu_max_milli,
                       .pids_max = d->pids_max ? d->pids_max : w->o.pids_max};
        e = tn_proc_start(w->procs, &sp, &j->proc, em);
    }
    free(script);
    free(envp);
    free(strs);
    return e;
}

static void start_job(tn_worker *w, const tn_msg_dispatch *d)
{
    if (!dispatch_wanted(w, d))
        return;
    job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->task = d->task;
    j->wf = d->wf;
    j->attempt = d->attempt;
    pthread_mutex_lock(&w->mu);
    bool fences = tn_map_get(&w->newest, j->task) != NULL;
    if (tn_map_put(&w->newest, j->task, j)) {
        pthread_mutex_unlock(&w->mu);
        free(j);
        return;
    }
    w->nfenced += fences;
    j->next = w->jobs;
    if (w->jobs)
        w->jobs->prev = j;
    w->jobs = j;
    w->njobs++;
    atomic_fetch_add(&w->pub.started, 1);
    pthread_mutex_unlock(&w->mu);
    tn_msg acc = {.type = TN_MSG_ACCEPTED};
    acc.accepted.task = j->task;
    acc.accepted.attempt = j->attempt;
    if (tn_str_eq(d->type, "noop")) {
        start_noop(w, j, d, &acc);
        return;
    }
    if (!tn_str_eq(d->type, "shell")) {
        report_result(w, j, false, -1, "this worker does not run this task type", NULL);
        finish(w, j);
        return;
    }
    tn_errmsg em = {{0}};
    tn_err e = spawn_shell(w, j, d, &em);
    if (e) {
        char why[600];
        snprintf(why, sizeof(why), "spawn failed: %s", em.text[0] ? em.text : tn_strerror(e));
        /* the task fails with the reason, and the worker says it is unwell until a spawn
         * works again: a worker that fails every task must not look healthy */
        tn_error("worker", "msg=\"spawn failed\" task=%" PRIu64 " attempt=%u why=\"%s\"",
                 j->task, j->attempt, why);
        snprintf(w->degraded, sizeof(w->degraded), "%s", why);
        w->degraded_at = tn_now_ns();
        report_result(w, j, false, -1, why, NULL);
        finish(w, j);
        return;
    }
    if (w->degraded[0]) {
        tn_info("worker", "msg=\"spawning works again; no longer degraded\" task=%" PRIu64,
                j->task);
        w->degraded[0] = '\0';
        w->degraded_at = 0;
    }
    w->exec_dirs++;
    journal(w, "start %" PRIu64 " %u %d %" PRId64 " %s", j->task, j->attempt,
            (int)tn_proc_pid(j->proc), tn_now_ns(), w->name);
    acc.accepted.pid = tn_proc_pid(j->proc);
    /* "session pids=v1:4096": how it is contained and which pids limit applied */
    char cont[TN_PROTO_CONTAINMENT_MAX + 1];
    const char *pn = tn_proc_pids_note(j->proc);
    snprintf(cont, sizeof(cont), "%s%s%s", tn_contain_mode_name(tn_proc_mode(j->proc)),
             pn[0] ? " pids=" : "", pn);
    acc.accepted.containment = tn_str_c(cont);
    record_task(w, j, true);
    (void)tn_outbox_put(&w->ob, &acc);
}

static void kill_job(tn_worker *w, const tn_msg_kill *k)
{
    job *j = find_attempt(w, k->task, k->attempt);
    if (!j) {
        j = find_job(w, k->task);
        if (!j || j->attempt < k->attempt) {
            /* never here: nothing to kill, say so (the master fences the rest) */
            job tmp = {.task = k->task, .attempt = k->attempt};
            report_killed(w, &tmp);
        }
        return;
    }
    if (j->done || j->killed)
        return;
    j->killed = true;
    if (j->noop) {
        report_killed(w, j);
        finish(w, j);
        return;
    }
    (void)tn_proc_kill(w->procs, j->proc, k->grace_ms);
}

static void reconcile(tn_worker *w, uint64_t epoch)
{
    tn_task_attempt *ta = calloc(w->njobs + 1, sizeof(*ta));
    uint32_t n = 0;
    for (job *j = w->jobs; ta && j; j = j->next)
        if (!j->done)
            ta[n++] = (tn_task_attempt){j->task, j->attempt};
    tn_msg m = {.type = TN_MSG_RECONCILED};
    m.reconciled.epoch = epoch;
    m.reconciled.running = (tn_task_attempts){ta, n};
    tn_debug("worker", "msg=\"answered RECONCILE\" seq=%" PRIu64 " running=%u", epoch, n);
    if (tn_outq_push(w->q, &m) == TN_OK)
        (void)tn_outq_flush(w->q, w->tx, NULL);
    free(ta);
}

/* ------------------------------------------------------------------------------ */
/* heartbeats */

static uint64_t mem_available(void)
{
    return tn_proc_kb("/proc/meminfo", "MemAvailable") * 1024;
}

static void heartbeat(tn_worker *w)
{
    double la[1] = {0};
    (void)getloadavg(la, 1);
    tn_procs_stats ps;
    tn_procs_stats_get(w->procs, &ps);
    tn_str groups[16];
    for (unsigned i = 0; i < w->ngroups; i++)
        groups[i] = tn_str_c(w->groups[i]);
    tn_gauge g[] = {
        {TN_STR("live_task_contexts"), w->njobs},
        {TN_STR("outbox_entries"), tn_outbox_len(&w->ob)},
        {TN_STR("open_log_fds"), 0},
        {TN_STR("cgroups"), ps.cgroups},
        {TN_STR("exec_dirs"), w->exec_dirs},
        {TN_STR("tern_leaked_resources_total"), ps.swept_total + w->swept},
        {TN_STR("leftovers_killed_total"), ps.adopted_total},
        {TN_STR("containment_cgroup"), tn_procs_mode(w->procs) == TN_CONTAIN_CGROUP},
        {TN_STR("max_load_milli"), w->o.max_load_milli},
        {TN_STR("heartbeat_ms"), w->o.heartbeat_ms}, /* the master checks its timeout */
        /* the newest leader epoch seen: a master of an older one learns it is fenced */
        {TN_STR("master_epoch"), w->fence.highest},
        {TN_STR("fenced_frames_total"), w->fence.refused},
    };
    uint32_t running = w->njobs - w->ndone;
    tn_msg m = {.type = TN_MSG_HEARTBEAT};
    m.heartbeat = (tn_msg_heartbeat){tn_str_c(w->name),
                                     tn_str_c(w->listen),
                                     tn_str_c(w->ctl),
                                     {groups, w->ngroups},
                                     w->o.slots,
                                     running,
                                     (uint32_t)(la[0] * 1000),
                                     mem_available(),
                                     w->o.mem_reserve,
                                     {g, TN_ARRAY_LEN(g)},
                                     w->epoch,
                                     tn_str_c(w->degraded),
                                     w->degraded_at};
    if (tn_outq_push(w->q, &m) == TN_OK)
        (void)tn_outq_flush(w->q, w->tx, NULL);
}

static bool job_running(void *ctx, uint64_t task, uint32_t attempt)
{
    for (const job *j = ((tn_worker *)ctx)->jobs; j; j = j->next)
        if (j->task == task && j->attempt == attempt)
            return true;
    return false;
}

/* Task log retention, once a minute (retention.h); the attempts in w->jobs are kept. */
static void retention(tn_worker *w)
{
    tn_retention r = {w->o.log_retention_ms, w->o.log_max_bytes};
    int64_t now = tn_mono_ns();
    if ((!r.max_age_ms && !r.max_bytes) || now - w->retention_at < 60000000000LL)
        return;
    w->retention_at = now;
    tn_retention_stats st;
    if (tn_retention_apply(w->data, &r, tn_now_ns(), job_running, w, &st) != 0)
        tn_warn("worker", "msg=\"cannot read the task logs for retention\" dir=%s/logs err=%s",
                w->data, strerror(errno));
    else if (st.removed)
        tn_info("worker",
                "msg=\"task logs removed by retention\" removed=%" PRIu64 " bytes=%" PRIu64
                " kept=%" PRIu64 " kept_bytes=%" PRIu64,
                st.removed, st.removed_bytes, st.kept, st.kept_bytes);
}

/* Exec dirs without a live attempt: leaks; removed and counted. And task log retention. */
static void sweep(tn_worker *w)
{
    retention(w);
    char dir[4300];
    snprintf(dir, sizeof(dir), "%s/exec", w->data);
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t n = 0;
    while (d && (de = readdir(d))) {
        uint64_t task;
        unsigned attempt;
        if (sscanf(de->d_name, "%" SCNu64 "-%u", &task, &attempt) != 2)
            continue;
        job *j = find_attempt(w, task, attempt);
        if (j && !j->done)
            continue;
        char p[4600];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        if (nftw(p, rm_cb, 8, FTW_DEPTH | FTW_PHYS) == 0)
            n++;
    }
    if (d)
        closedir(d);
    w->swept += n + tn_procs_sweep(w->procs);
    if (n)
        tn_warn("worker", "msg=\"swept leaked exec dirs\" count=%" PRIu64, n);
}

/* ------------------------------------------------------------------------------ */
/* /metrics */

/* What the metrics server may read, published by the worker thread each turn. */
static void publish(tn_worker *w)
{
    atomic_store(&w->pub.jobs, w->njobs);
    atomic_store(&w->pub.running, w->njobs - w->ndone);
    atomic_store(&w->pub.outbox, tn_outbox_len(&w->ob));
    atomic_store(&w->pub.exec_dirs, w->exec_dirs);
    atomic_store(&w->pub.swept, w->swept);
}

/* Open descriptors of this process, and those on a task log (DATA/logs/...). The unnamed
 * files made ahead for the next attempts' logs (spares.h: O_TMPFILE, "#INODE (deleted)")
 * are not task logs yet. */
static void count_fds(const char *data, uint64_t *all, uint64_t *logs)
{
    char logdir[PATH_MAX + 8];
    snprintf(logdir, sizeof(logdir), "%s/logs/", data);
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        (*all)++;
        char p[300], target[PATH_MAX + 1];
        snprintf(p, sizeof(p), "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(p, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = 0;
            size_t ll = strlen(logdir), tl = (size_t)n;
            bool spare = tl > ll && target[ll] == '#' && tl >= 10 &&
                         strcmp(target + tl - 10, " (deleted)") == 0;
            *logs += strncmp(target, logdir, ll) == 0 && !spare;
        }
    }
    if (d)
        closedir(d);
}

static void metric(tn_sb *b, const char *name, const char *type, const char *help, double v)
{
    tn_prom_head(b, name, type, help);
    tn_prom_sample(b, name, NULL, v);
}

static void serve_metrics(void *arg, const tn_http_req *r, tn_http_rep *rep)
{
    tn_worker *w = arg;
    if (strcmp(r->path, "/metrics") != 0 || strcmp(r->method, "GET") != 0) {
        rep->status = 404;
        tn_sb_printf(&rep->body, "{\"error\":{\"code\":\"not_found\",\"status\":404,"
                                 "\"message\":\"a worker serves only GET /metrics\"}}");
        return;
    }
    rep->ctype = "text/plain; version=0.0.4; charset=utf-8";
    tn_procs_stats ps;
    tn_procs_stats_get(w->procs, &ps); /* tn_procs is locked: any thread */
    uint64_t fds = 0, logs = 0;
    count_fds(w->data, &fds, &logs);
    tn_sb *b = &rep->body;
    metric(b, "tern_worker_slots", "gauge", "Attempts this worker runs at once.", w->o.slots);
    metric(b, "tern_worker_running_tasks", "gauge", "Attempts running now.",
           (double)atomic_load(&w->pub.running));
    metric(b, "tern_worker_live_task_contexts", "gauge",
           "Attempts the worker keeps state for (running, or finished and not yet released).",
           (double)atomic_load(&w->pub.jobs));
    metric(b, "tern_worker_outbox_entries", "gauge",
           "Reports kept until the master confirms it persisted them.",
           (double)atomic_load(&w->pub.outbox));
    metric(b, "tern_worker_open_log_fds", "gauge",
           "Descriptors of this process open on a task log (a task's own process writes its "
           "log: expected 0).",
           (double)logs);
    metric(b, "tern_worker_open_fds", "gauge", "Descriptors open in the worker process.",
           (double)fds);
    metric(b, "tern_worker_cgroups", "gauge", "Task cgroups in the worker's sub-trees.",
           ps.cgroups);
    metric(b, "tern_worker_exec_dirs", "gauge", "Task exec directories.",
           (double)atomic_load(&w->pub.exec_dirs));
    metric(b, "tern_leaked_resources_total", "counter",
           "Resources found leaked and removed (cgroups, exec directories); expected 0.",
           (double)(ps.swept_total + atomic_load(&w->pub.swept)));
    metric(b, "tern_worker_leftovers_killed_total", "counter",
           "Attempts of a previous run whose processes were killed at start.",
           (double)ps.adopted_total);
    metric(b, "tern_worker_tasks_started_total", "counter", "Attempts started.",
           (double)atomic_load(&w->pub.started));
    metric(b, "tern_worker_tasks_finished_total", "counter",
           "Attempts finished and released (reported).", (double)atomic_load(&w->pub.finished));
}

int tn_worker_metrics_port(const tn_worker *w)
{
    return w->metrics ? tn_http_port(w->metrics) : 0;
}

/* ------------------------------------------------------------------------------ */
/* the loop */

static tn_err process(void *arg, tn_str sender, const tn_msg *m)
{
    tn_worker *w = arg;
    (void)sender;
    switch (m->type) {
    case TN_MSG_DISPATCH: start_job(w, &m->dispatch); break;
    case TN_MSG_KILL: kill_job(w, &m->kill); break;
    case TN_MSG_PERSISTED: tn_outbox_done(&w->ob, m->persisted.report_id); break;
    case TN_MSG_RECONCILE: reconcile(w, m->reconcile.epoch); break;
    default: break; /* a worker->master type sent to us: ignore */
    }
    return TN_OK;
}

static int write_small(const char *path, const char *text);

/* Binds the worker to cluster c (DATA/cluster-id, 0600) and makes its frames carry it. */
static void bind_cluster(tn_worker *w, const char *c, size_t len)
{
    snprintf(w->cluster, sizeof(w->cluster), "%.*s", (int)len, c);
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/cluster-id", w->data);
    if (write_small(p, w->cluster) != 0)
        tn_error("worker", "msg=\"cannot record the cluster id\" path=%s why=\"%s\"", p,
                 strerror(errno));
    if (w->q)
        tn_outq_set_cluster(w->q, w->cluster);
    snprintf(w->ob.cluster, sizeof(w->ob.cluster), "%s", w->cluster);
    tn_info("worker", "msg=\"bound to cluster\" cluster=%s", w->cluster);
}

/* A frame of another cluster (a master on another store: a mistyped --data, a new store
 * with the same --listen) is refused whole: its RECONCILE would kill our tasks as stale and
 * its task ids are not ours. Loud, but once per 10 s. The first cluster seen binds. */
static bool cluster_accepts(tn_worker *w, const void *buf, size_t len)
{
    tn_str sender, c;
    if (tn_frame_header(buf, len, &sender, &c) != TN_OK)
        return true; /* the decoder says what is wrong with it */
    if (!w->cluster[0]) {
        if (c.len)
            bind_cluster(w, c.p, c.len);
        return true;
    }
    if (c.len == strlen(w->cluster) && memcmp(c.p, w->cluster, c.len) == 0)
        return true;
    w->refused++;
    int64_t now = tn_mono_ns();
    if (!w->refused_log_at || now - w->refused_log_at >= 10000000000LL) {
        tn_error("worker",
                 "msg=\"frame from another cluster refused; tasks keep running\" "
                 "sender=\"%.*s\" cluster=\"%.*s\" ours=%s refused=%" PRIu64 " data=%s "
                 "hint=\"the master runs on another store: point it at its own --data, "
                 "or remove %s/cluster-id to rebind this worker\"",
                 (int)sender.len, sender.p, (int)c.len, c.p, w->cluster, w->refused, w->data,
                 w->data);
        w->refused_log_at = now;
        w->refused = 0;
    }
    return false;
}

/* Where a FENCED answer to a leader of `epoch` goes: the leader of that epoch this worker
 * followed (ZooKeeper named its URL), else the master it reports to (with --master, the
 * only one; a new leader that gets an answer naming another master ignores it). */
static tn_tx fenced_route(tn_worker *w, uint64_t epoch)
{
    for (size_t i = 0; i < TN_ARRAY_LEN(w->leaders); i++) {
        if (!w->leaders[i].url[0] || w->leaders[i].epoch != epoch ||
            strcmp(w->leaders[i].url, w->master_url) == 0)
            continue;
        const char *url = w->leaders[i].url;
        tn_errmsg em = {{0}};
        tn_tx tx = {0};
        if (!w->leaders[i].tx.ops &&
            (tn_tx_new(url, true, w->use_tls ? &w->tls : NULL, NULL, NULL, &tx, &em) ||
             tn_tx_dial(tx, url, &em))) {
            tn_tx_free(&tx);
            tn_warn("worker",
                    "msg=\"cannot reach a fenced master to answer it; it is still fenced\" "
                    "url=%s epoch=%" PRIu64 " why=\"%s\"",
                    url, epoch, em.text);
            return w->tx;
        }
        if (!w->leaders[i].tx.ops)
            w->leaders[i].tx = tx;
        return w->leaders[i].tx;
    }
    return w->tx;
}

/* Tell the sender of a refused frame it is fenced: FENCED with the newest epoch and the
 * frames refused from it, at most once per 100 ms per sender (fence.h). */
static void answer_fenced(tn_worker *w, tn_str sender, uint64_t epoch)
{
    uint64_t refused;
    if (!tn_fence_answer_due(&w->fence, sender.p, sender.len, tn_mono_ns(), &refused))
        return;
    tn_msg m = {.type = TN_MSG_FENCED};
    m.fenced = (tn_msg_fenced){tn_str_c(w->name), w->fence.highest, refused, sender};
    tn_buf buf = {0};
    tn_frame f;
    tn_err e = tn_frame_begin_cluster(&f, &buf, w->name, w->cluster);
    if (!e && !(e = tn_frame_add(&f, &m)) && !(e = tn_frame_end(&f)))
        e = tn_tx_send(fenced_route(w, epoch), buf.data, buf.size);
    tn_buf_free(&buf);
    if (refused == 1 || e)
        tn_logf(e ? TN_LOG_WARN : TN_LOG_INFO, "worker",
                "msg=\"answered a fenced master with FENCED\" sender=\"%.*s\" epoch=%" PRIu64
                " current=%" PRIu64 " refused=%" PRIu64 " sent=%s",
                (int)sender.len, sender.p, epoch, w->fence.highest, refused,
                e ? tn_strerror(e) : "yes");
}

/* A frame of a leader older than the newest seen is refused whole (fence.h), and its
 * sender told so. */
static bool epoch_accepts(tn_worker *w, const void *buf, size_t len)
{
    tn_str sender, c;
    uint64_t epoch;
    if (tn_frame_header_epoch(buf, len, &sender, &c, &epoch) != TN_OK)
        return true; /* the decoder says what is wrong with it */
    if (tn_fence_accept(&w->fence, epoch, sender.p, sender.len))
        return true;
    answer_fenced(w, sender, epoch);
    return false;
}

/* Keep the URL of the leader of `epoch` (a FENCED answer may have to reach it later). */
static void remember_leader(tn_worker *w, const char *url, uint64_t epoch)
{
    unsigned i = w->leaders_next++ % TN_ARRAY_LEN(w->leaders);
    tn_tx_free(&w->leaders[i].tx);
    w->leaders[i].epoch = epoch;
    snprintf(w->leaders[i].url, sizeof(w->leaders[i].url), "%s", url);
    snprintf(w->master_url, sizeof(w->master_url), "%s", url);
}

static void forget_leaders(tn_worker *w)
{
    for (size_t i = 0; i < TN_ARRAY_LEN(w->leaders); i++)
        tn_tx_free(&w->leaders[i].tx);
}

static void take_inbound(tn_worker *w)
{
    pthread_mutex_lock(&w->mu);
    inmsg *in = w->in_head;
    w->in_head = w->in_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    while (in) {
        inmsg *next = in->next;
        tn_errmsg em = {{0}};
        if (!cluster_accepts(w, in->buf, in->len) || !epoch_accepts(w, in->buf, in->len))
            ; /* refused and logged */
        else if (tn_frame_decode(in->buf, in->len, process, w, &em) != TN_OK)
            tn_warn("worker", "msg=\"malformed frame dropped\" bytes=%zu why=\"%s\"", in->len,
                    em.text);
        free(in);
        in = next;
    }
}

static void collect(tn_worker *w)
{
    tn_proc_exit ex[64];
    size_t n;
    while ((n = tn_procs_reap(w->procs, ex, 64)) > 0) {
        for (size_t i = 0; i < n; i++) {
            /* by attempt: the task may have a newer one here too */
            job *j = find_attempt(w, ex[i].task, ex[i].attempt);
            if (!j || j->proc != ex[i].proc) {
                tn_proc_free(ex[i].proc);
                continue;
            }
            if (j->killed || ex[i].killed) {
                /* the processes are gone: the kill hooks, once per attempt, and the report
                 * when they end (poll_hooks) */
                if (!j->noop && w->hooks &&
                    (j->hooks = tn_kill_hooks_start(w->hooks, j->log_path, w->data, j->task,
                                                    j->attempt, j->user))) {
                    w->nhooks++;
                    continue;
                }
                report_killed(w, j);
            } else {
                int64_t code = tn_exit_code(ex[i].status);
                bool ok = code == 0;
                tn_kv *outs = tn_kv_new();
                char why[200], cut[200] = "";
                if (WIFSIGNALED(ex[i].status)) /* not by a kill of ours: say which signal */
                    snprintf(why, sizeof(why), "killed by signal %d (%s): exit status %" PRId64,
                             WTERMSIG(ex[i].status), strsignal(WTERMSIG(ex[i].status)), code);
                else
                    snprintf(why, sizeof(why), "exit status %" PRId64, code);
                /* outputs cut by a limit fail the task, never silently (see params.h) */
                if (outs &&
                    tn_params_scan_file_why(j->log_path, outs, cut, sizeof(cut)) ==
                        TN_ERR_TOOBIG &&
                    ok) {
                    ok = false;
                    snprintf(why, sizeof(why), "%s", cut);
                    tn_warn("worker",
                            "msg=\"task failed: outputs over a limit\" task=%" PRIu64
                            " why=\"%s\"",
                            j->task, why);
                }
                report_result(w, j, ok, code, ok ? NULL : why, outs);
                tn_kv_free(outs);
            }
            finish(w, j);
        }
    }
    /* noop attempts whose time came */
    int64_t now = tn_mono_ns();
    for (job *j = w->nnoop ? w->jobs : NULL; j; j = j->next)
        if (j->noop && !j->done && j->noop_due <= now) {
            report_result(w, j, j->noop_ok, j->noop_ok ? 0 : 1,
                          j->noop_ok ? NULL : "noop task configured to fail", NULL);
            finish(w, j);
        }
    /* what is finished leaves */
    for (job *j = w->ndone ? w->jobs : NULL, *next; j; j = next) {
        next = j->next;
        if (j->done)
            release(w, j);
    }
}

/* Killed attempts whose kill hooks ended are reported. True while some still run. */
static bool poll_hooks(tn_worker *w, int64_t now)
{
    bool running = false;
    for (job *j = w->nhooks ? w->jobs : NULL; j; j = j->next) {
        if (!j->hooks || j->done)
            continue;
        if (tn_hook_set_poll(j->hooks, now)) {
            report_killed(w, j);
            finish(w, j);
        } else {
            running = true;
        }
    }
    return running;
}

/* Reports and heartbeats go to a new leader (cluster of masters): a new sender to its
 * URL; what the outbox holds is resent there. The new leader's epoch fences the old one. */
static bool switch_master(tn_worker *w)
{
    char url[TN_PROTO_URL_MAX + 1];
    pthread_mutex_lock(&w->mu);
    snprintf(url, sizeof(url), "%s", w->next_master);
    w->next_master[0] = 0;
    uint64_t epoch = w->next_epoch;
    pthread_mutex_unlock(&w->mu);
    if (!url[0])
        return false;
    tn_fence_raise(&w->fence, epoch);
    tn_errmsg em = {{0}};
    tn_tx inner, tx;
    tn_err e = tn_tx_new(url, true, w->use_tls ? &w->tls : NULL, NULL, NULL, &inner, &em);
    if (!e && (e = tn_tx_fault_from_env(inner, &tx, &em)))
        tn_tx_free(&inner);
    if (!e && (e = tn_tx_dial(tx, url, &em)))
        tn_tx_free(&tx);
    if (e) {
        tn_error("worker", "msg=\"cannot reach the new leader\" url=%s why=\"%s\"", url,
                 em.text);
        return false;
    }
    tn_tx_free(&w->tx);
    w->tx = tx;
    remember_leader(w, url, epoch);
    tn_info("worker", "msg=\"following a new leader\" url=%s epoch=%" PRIu64, url, epoch);
    /* the reports the old leader did not persist reach the new one before our heartbeat,
     * hence before our answer to its RECONCILE: a finished attempt is not taken for lost */
    tn_outbox_resend_now(&w->ob);
    tn_outbox_send(&w->ob, w->tx, w->name, tn_mono_ns());
    return true;
}

void tn_worker_set_master(tn_worker *w, const char *url, uint64_t epoch)
{
    pthread_mutex_lock(&w->mu);
    snprintf(w->next_master, sizeof(w->next_master), "%s", url);
    w->next_epoch = epoch;
    pthread_mutex_unlock(&w->mu);
    uint64_t one = 1;
    (void)!write(w->wake, &one, sizeof(one));
}

static void *worker_thread(void *arg)
{
    tn_worker *w = arg;
    int64_t last_hb = 0, last_sweep = tn_mono_ns();
    while (!atomic_load(&w->stop)) {
        uint64_t v;
        (void)!read(w->wake, &v, sizeof(v)); /* before taking: a later frame wakes again */
        take_inbound(w);
        if (switch_master(w))
            last_hb = 0; /* the new leader hears from us at once */
        int64_t now = tn_mono_ns();
        tn_procs_tick(w->procs, now);
        (void)poll_hooks(w, now);
        collect(w);
        tn_outbox_commit(&w->ob, false, &w->stop);
        tn_outbox_send(&w->ob, w->tx, w->name, now);
        publish(w);
        if (now - last_hb >= (int64_t)w->o.heartbeat_ms * 1000000) {
            heartbeat(w);
            last_hb = now;
        }
        if (now - last_sweep > 10000000000LL) {
            sweep(w);
            last_sweep = now;
        }
        /* sleep until a frame arrives, a leader exits (the procs' wait fd; without one,
         * tn_procs_next_tick asks for short ticks), a kill step, a noop or deferred
         * deletes are due, or 20 ms */
        int64_t wake = now + 20000000LL;
        int64_t t = tn_procs_next_tick(w->procs);
        if (t && t < wake)
            wake = t;
        for (job *j = w->nnoop ? w->jobs : NULL; j; j = j->next)
            if (j->noop && !j->done && j->noop_due < wake)
                wake = j->noop_due;
        int64_t due = tn_outbox_due(&w->ob);
        if (due && due < wake)
            wake = due;
        int64_t left = wake - tn_mono_ns();
        if (left > 0) {
            /* about to sleep: a few spare pids cgroups, off the spawn path */
            (void)tn_procs_fill_spares(w->procs, 4);
            left = wake - tn_mono_ns();
        }
        if (left > 0) {
            struct pollfd fds[2] = {{.fd = w->wake, .events = POLLIN},
                                    {.fd = tn_procs_wait_fd(w->procs), .events = POLLIN}};
            struct timespec ts = {(time_t)(left / 1000000000LL), (long)(left % 1000000000LL)};
            (void)ppoll(fds, 2, &ts, NULL);
        }
    }
    /* stopping: what still runs is killed (its reports stay in the outbox) */
    for (job *j = w->jobs; j; j = j->next)
        if (!j->done && !j->killed && j->proc) {
            j->killed = true;
            (void)tn_proc_kill(w->procs, j->proc, 2000);
        }
    /* kill hooks may outlast the 6 s: each ends by its own timeout */
    for (int i = 0; w->jobs && (i < 600 || poll_hooks(w, tn_mono_ns())); i++) {
        tn_procs_tick(w->procs, tn_mono_ns());
        (void)poll_hooks(w, tn_mono_ns());
        for (job *j = w->jobs; j; j = j->next)
            if (j->noop)
                finish(w, j);
        collect(w);
        tn_outbox_commit(&w->ob, true, &w->stop);
        usleep(10000);
    }
    tn_outbox_commit(&w->ob, true, &w->stop);
    tn_outbox_send(&w->ob, w->tx, w->name, tn_mono_ns());
    return NULL;
}

/* ------------------------------------------------------------------------------ */
/* what the master sends (transport thread) */

/* Wake the worker thread: a frame was queued, or stop. */
static void wake_thread(void *arg)
{
    tn_worker *w = arg;
    uint64_t one = 1;
    (void)!write(w->wake, &one, sizeof(one));
}

/* Whether peer may send this worker DISPATCH, KILL and RECONCILE: a TLS peer whose
 * certificate is the master's (OU=master, or CN = --master-name), an ipc peer of our uid
 * or root, inproc; a plain tcp peer only because --insecure said so (nothing is known). */
static bool from_master(const tn_worker *w, const tn_peer *peer)
{
    if (!peer->authenticated)
        return !w->use_tls;
    if (!peer->name[0] && !peer->role[0])
        return true; /* ipc (uid checked), inproc, or TLS without names: chain verified */
    if (w->o.master_name && w->o.master_name[0])
        return strcmp(peer->name, w->o.master_name) == 0;
    return strcmp(peer->role, "master") == 0;
}

static void on_frame(void *arg, const void *buf, size_t len, const tn_peer *peer)
{
    tn_worker *w = arg;
    if (!from_master(w, peer)) {
        char name[300], role[80];
        tn_warn("worker",
                "msg=\"frame refused: the peer is not the master\" cn=%s ou=%s pipe=%u "
                "bytes=%zu detail=\"DISPATCH and KILL are taken from the master's certificate "
                "only (OU=master, or --master-name)\"",
                tn_log_escape(peer->name, name, sizeof(name)),
                tn_log_escape(peer->role, role, sizeof(role)), peer->pipe, len);
        __atomic_add_fetch(&w->refused_frames, 1, __ATOMIC_RELAXED);
        return;
    }
    inmsg *in = malloc(sizeof(*in) + len);
    if (!in)
        return; /* the master resends what matters */
    in->next = NULL;
    in->len = len;
    memcpy(in->buf, buf, len);
    pthread_mutex_lock(&w->mu);
    if (w->in_tail)
        w->in_tail->next = in;
    else
        w->in_head = in;
    w->in_tail = in;
    pthread_mutex_unlock(&w->mu);
    wake_thread(w);
}

/* ------------------------------------------------------------------------------ */
/* logs */

static void serve_logs(void *arg, const void *req, size_t len, void **rep, size_t *rlen)
{
    tn_worker *w = arg;
    tn_ctl_req *r = malloc(sizeof(*r));
    tn_ctl_rep rp = {.ok = false, .code = 2, .text = TN_STR("malformed request")};
    char *data = NULL, text[4600];
    if (r && len && tn_ctl_req_decode(req, len, r) == TN_OK && tn_str_eq(r->cmd, "log")) {
        char path[4300];
        snprintf(path, sizeof(path), "%s/logs/%" PRIu64 "-%u.log", w->data, r->id, r->attempt);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(text, sizeof(text),
                     "%s: no log for task %" PRIu64 " attempt %u on worker %s", path, r->id,
                     r->attempt, w->name);
            rp = (tn_ctl_rep){.ok = false, .code = 1, .text = tn_str_c(text)};
        } else {
            size_t cap = 256 * 1024;
            data = malloc(cap);
            ssize_t got = data ? pread(fd, data, cap, (off_t)r->offset) : -1;
            struct stat st;
            fstat(fd, &st);
            close(fd);
            pthread_mutex_lock(&w->mu);
            const job *j = find_attempt(w, r->id, r->attempt);
            bool running = j && !j->done;
            pthread_mutex_unlock(&w->mu);
            size_t n = got > 0 ? (size_t)got : 0;
            rp = (tn_ctl_rep){.ok = true,
                              .data = {data ? data : "", (uint32_t)n},
                              .offset = r->offset + n,
                              .eof = r->offset + n >= (uint64_t)st.st_size,
                              .running = running};
        }
    }
    tn_buf b = {0};
    if (tn_ctl_rep_encode(&rp, &b) == TN_OK) {
        *rep = b.data;
        *rlen = b.size;
    }
    free(data);
    free(r);
}

/* ------------------------------------------------------------------------------ */

static void leftover(void *ud, const tn_leftover *l)
{
    journal(ud, "end %" PRIu64 " %u %" PRId64 " leftover-killed", l->task, l->attempt,
            tn_now_ns());
    tn_warn("worker",
            "msg=\"killed what a previous run left\" task=%" PRIu64 " attempt=%u "
            "processes=%u survivors=%u",
            l->task, l->attempt, l->npids, l->survivors);
}

/* An attempt the previous run recorded as running: what is left of it is killed. */
static void kill_recorded(void *ud, uint64_t task, uint32_t attempt, int64_t pid,
                          uint64_t start)
{
    tn_worker *w = ud;
    tn_pid_ident id = {(pid_t)pid, start};
    if (id.pid > 0)
        (void)tn_procs_kill_pids(w->procs, task, attempt, &id, 1, leftover, w);
}

/* Tasks the previous run of this worker had running: kill what is left of them; then the
 * spare pids cgroups start (the leftovers pass removed the previous run's). */
static void recover_tasks(tn_worker *w)
{
    uint32_t n = 0;
    (void)tn_procs_adopt_leftovers(w->procs, leftover, w, &n);
    n += tn_outbox_store_take_tasks(w->st, kill_recorded, w);
    if (n)
        tn_info("worker", "msg=\"previous run's tasks found and killed\" count=%u", n);
    /* then spare v1 pids cgroups, made on idle turns of the loop (as many as exec dirs) */
    tn_procs_spares(w->procs, w->o.slots < 256 ? w->o.slots : 256);
}

/* ------------------------------------------------------------------------------ */
/* identity: one worker per data dir, an id made once, the cluster it is bound to */

/* Writes text to path (0600) through a temporary file and rename, so a crash leaves the
 * old file or the new one. 0 or -1 with errno. */
static int write_small(const char *path, const char *text)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    int e = errno;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        e = ok ? errno : e;
        (void)unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

/* The first line of a small file: its length, 0 if missing or empty, -1 if unreadable. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    return (ssize_t)strlen(buf);
}

static bool id_chars_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TN_PROTO_ID_MAX || s[0] == '.')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* DATA/worker.lock, held (flock) for the worker's life: a second worker on the same data
 * dir would share its outbox, records and cgroups, and kill its tasks as leftovers. The
 * holder's pid is written in it for the error message. */
static tn_err lock_data(tn_worker *w, tn_errmsg *msg)
{
    char p[PATH_MAX + 16], pid[32] = "";
    snprintf(p, sizeof(p), "%s/worker.lock", w->data);
    w->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (w->lock_fd < 0)
        return tn_errmsg_set(msg, tn_err_from_errno(errno), "%s: cannot open: %s", p,
                             strerror(errno));
    if (flock(w->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        ssize_t n = pread(w->lock_fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? strcspn(pid, "\n") < (size_t)n ? strcspn(pid, "\n") : (size_t)n : 0] = '\0';
        return tn_errmsg_set(msg, TN_ERR_BUSY,
                             "%s: another worker%s%s%s uses this data directory; stop it, or "
                             "give this worker its own --data",
                             w->data, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
    }
    snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(w->lock_fd, 0) != 0 ||
        pwrite(w->lock_fd, pid, strlen(pid), 0) != (ssize_t)strlen(pid))
        tn_warn("worker", "msg=\"cannot write the pid to the lock file\" path=%s", p);
    return TN_OK;
}

/* DATA/worker-id: made once (16 random hex digits), then read at every start. It names the
 * worker's cgroup sub-tree and its tasks' environment tag, so leftovers of a previous run
 * are this data dir's, never another worker's of the same name. */
static tn_err load_identity(tn_worker *w, const char *cluster_opt, tn_errmsg *msg)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof(p), "%s/worker-id", w->data);
    ssize_t n = read_small(p, w->id, sizeof(w->id));
    if (n < 0 || (n > 0 && !id_chars_ok(w->id)))
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "%s: unreadable or not a worker id (1-64 of A-Z a-z 0-9 . _ -); "
                             "remove it to give this data dir a new identity",
                             p);
    if (n == 0) {
        uint8_t rnd[8];
        randombytes_buf(rnd, sizeof(rnd));
        for (int i = 0; i < 8; i++)
            snprintf(w->id + 2 * i, 3, "%02x", rnd[i]);
        if (write_small(p, w->id) != 0)
            return tn_errmsg_set(msg, tn_err_from_errno(errno), "%s: cannot write: %s", p,
                                 strerror(errno));
        tn_info("worker", "msg=\"new worker identity\" id=%s path=%s", w->id, p);
    }
    snprintf(p, sizeof(p), "%s/cluster-id", w->data);
    n = read_small(p, w->cluster, sizeof(w->cluster));
    if (n < 0)
        return tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot read: %s", p, strerror(errno));
    if (cluster_opt && *cluster_opt && strcmp(cluster_opt, w->cluster) != 0) {
        /* the standalone: its worker belongs to the master in the same process */
        w->rebound = w->cluster[0] != '\0';
        if (w->cluster[0])
            tn_warn("worker",
                    "msg=\"rebinding to the embedded master's cluster\" was=%s now=%s",
                    w->cluster, cluster_opt);
        snprintf(w->cluster, sizeof(w->cluster), "%s", cluster_opt);
        if (write_small(p, w->cluster) != 0)
            return tn_errmsg_set(msg, tn_err_from_errno(errno), "%s: cannot write: %s", p,
                                 strerror(errno));
    }
    return TN_OK;
}

/* Reports of the cluster this worker was bound to before a rebind: their task ids are
 * another store's, and the new master must never apply them to its own tasks. */
static void drop_old_reports(tn_worker *w)
{
    uint64_t *ids = calloc(w->ob.pend.len + 1, sizeof(*ids));
    size_t n = 0;
    for (size_t i = 0; ids && i < w->ob.pend.cap; i++)
        if (w->ob.pend.slots[i].key && n < w->ob.pend.len)
            ids[n++] = w->ob.pend.slots[i].key;
    for (size_t i = 0; i < n; i++)
        tn_outbox_done(&w->ob, ids[i]);
    free(ids);
    if (n) {
        tn_outbox_commit(&w->ob, true, &w->stop);
        tn_warn("worker", "msg=\"reports of the previous cluster dropped\" count=%zu", n);
    }
}

/* The worker's name (or the host's), control URL, listen URL and groups. */
static void set_names(tn_worker *w, const tn_worker_opts *opts)
{
    if (opts->name)
        snprintf(w->name, sizeof(w->name), "%s", opts->name);
    else if (gethostname(w->name, sizeof(w->name) - 1) != 0)
        snprintf(w->name, sizeof(w->name), "worker");
    if (opts->ctl_url)
        snprintf(w->ctl, sizeof(w->ctl), "%s", opts->ctl_url);
    else
        snprintf(w->ctl, sizeof(w->ctl), "ipc://%s/worker.ctl", w->data);
    snprintf(w->listen, sizeof(w->listen), "%s", opts->listen_url);
    const char *g = opts->groups && *opts->groups ? opts->groups : "default";
    while (*g && w->ngroups < 16) {
        size_t l = strcspn(g, ",");
        snprintf(w->groups[w->ngroups++], TN_PROTO_ID_MAX + 1, "%.*s", (int)l, g);
        g += l + (g[l] == ',');
    }
}

/* Over TLS the master knows this worker by its certificate's CN, so that is its name:
 * taken when --name is not given, and a --name that differs is an error. */
static tn_err cert_name(tn_worker *w, const tn_worker_opts *opts, tn_errmsg *msg)
{
    char cn[TN_PROTO_ID_MAX + 1], ou[32];
    tn_err e;
    if (!opts->tls_cert)
        return TN_OK;
    if ((e = tn_tx_tls_cert_subject(opts->tls_cert, cn, sizeof(cn), ou, sizeof(ou), msg)))
        return e;
    if (!cn[0])
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "tls certificate %s has no subject CN: the master names workers "
                             "by it; make one with `tern cert issue --role worker --name N`",
                             opts->tls_cert);
    if (opts->name && strcmp(opts->name, cn) != 0)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "worker name %s differs from its certificate's CN %s (%s): the "
                             "master knows a worker by its certificate; use --name %s",
                             opts->name, cn, opts->tls_cert, cn);
    if (ou[0] && strcmp(ou, "worker") != 0)
        tn_warn("worker", "msg=\"certificate is not a worker's\" cert=%s ou=%s", opts->tls_cert,
                ou);
    snprintf(w->name, sizeof(w->name), "%s", cn);
    return TN_OK;
}

/* The sender to the master (faults from $TERN_FAULTS) and the receiver of its frames. */
static tn_err connect_master(tn_worker *w, const tn_worker_opts *opts, tn_errmsg *msg)
{
    tn_err e;
    if (opts->tls_cert || opts->tls_key || opts->tls_ca) {
        w->tls = (tn_tx_tls){opts->tls_ca, opts->tls_cert, opts->tls_key, NULL};
        w->use_tls = true;
        if ((e = cert_name(w, opts, msg)) != TN_OK)
            return e;
    }
    tn_tx inner;
    if ((e = tn_outq_new(w->name, 256, 4u << 20, TN_PROTO_QUEUE_MAX, &w->q)) ||
        (tn_outq_set_cluster(w->q, w->cluster), false) ||
        (e = tn_tx_new(opts->master_url, true, w->use_tls ? &w->tls : NULL, NULL, NULL, &inner,
                       msg)))
        return e;
    if ((e = tn_tx_fault_from_env(inner, &w->tx, msg))) {
        tn_tx_free(&inner);
        return e;
    }
    if ((e = tn_tx_dial(w->tx, opts->master_url, msg)) ||
        (e = tn_tx_new(opts->listen_url, false, w->use_tls ? &w->tls : NULL, on_frame, w,
                       &w->rx, msg)) ||
        (e = tn_tx_listen(w->rx, opts->listen_url, msg)))
        return e;
    /* a ":0" port: tell the master the real one */
    (void)tn_tx_bound_url(w->rx, w->listen, sizeof(w->listen));
    snprintf(w->master_url, sizeof(w->master_url), "%s", opts->master_url);
    if (opts->master_epoch)
        remember_leader(w, opts->master_url, opts->master_epoch);
    return TN_OK;
}

/* What every task starts from (its environment) and what a killed one ends with (the kill
 * hooks). */
static tn_err task_setup(tn_worker *w, const tn_worker_opts *opts, tn_errmsg *msg)
{
    tn_err e = tn_taskenv_base(&w->env, opts->pass_env, opts->npass_env, msg);
    return e ? e :
               tn_kill_hooks_new(opts->kill_hooks, opts->nkill_hooks,
                                 opts->kill_hook_timeout_ms, &w->hooks, msg);
}

static void task_setup_free(tn_worker *w)
{
    tn_taskenv_free(&w->env);
    tn_kill_hooks_free(w->hooks);
}

/* The pools of spare exec dirs and logs (spares.h), after the data dir's lock: a spare
 * left in it is a previous run's. As many ahead as slots, up to 256: a burst of dispatches
 * takes them at once; logs made ahead up to 64, each an open fd (O_TMPFILE) counted
 * against RLIMIT_NOFILE with the running tasks' pidfds and logs. */
static tn_err make_spares(tn_worker *w, tn_errmsg *msg)
{
    uint32_t ahead = w->o.slots < 256 ? w->o.slots : 256, gone[2] = {0, 0};
    const char *sub[2] = {"exec", "logs"};
    tn_spares **pool[2] = {&w->exec_spares, &w->log_spares};
    for (int i = 0; i < 2; i++) {
        char root[PATH_MAX + 8];
        snprintf(root, sizeof(root), "%s/%s", w->data, sub[i]);
        /* room for what the filler made and a slot's worth of returns (a returned log is
         * a named file: it holds no fd) */
        uint32_t logs_ahead = ahead < 64 ? ahead : 64;
        uint32_t cap = ahead + w->o.slots;
        tn_err e = tn_spares_new(root, i == 0 ? TN_SPARE_DIR : TN_SPARE_FILE, cap,
                                 i == 0 ? ahead : logs_ahead, pool[i], &gone[i]);
        if (e)
            return tn_errmsg_set(msg, e, "%s: cannot keep spares: %s", root, tn_strerror(e));
    }
    if (gone[0] || gone[1])
        tn_info("worker", "msg=\"spares of a previous run removed\" exec_dirs=%u logs=%u",
                gone[0], gone[1]);
    return TN_OK;
}

/* The pools of spares, once nothing takes or gives (tn_daemon_stop's joined: the loop
 * has ended). */
static void free_spares(void *arg)
{
    tn_worker *w = arg;
    tn_spares_free(w->exec_spares);
    tn_spares_free(w->log_spares);
}

/* A worker with its options' defaults, nothing opened but its wake eventfd. */
static tn_worker *worker_new(const tn_worker_opts *opts)
{
    tn_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->o = *opts;
    if (!w->o.slots)
        w->o.slots = 4;
    if (!w->o.heartbeat_ms)
        w->o.heartbeat_ms = 1000;
    if (!w->o.pids_max)
        w->o.pids_max = 4096;
    pthread_mutex_init(&w->mu, NULL);
    w->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    tn_map_init(&w->finished);
    tn_map_init(&w->newest);
    tn_map_init(&w->finished_old);
    w->journal = -1;
    w->lock_fd = -1;
    return w;
}

tn_err tn_worker_start(const tn_worker_opts *opts, tn_worker **out, tn_errmsg *msg)
{
    tn_worker *w = worker_new(opts);
    if (!w)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    tn_err e;
    if (w->wake < 0) {
        e = tn_errmsg_set(msg, TN_ERR_IO, "eventfd: %s", strerror(errno));
        goto fail;
    }
    if (!opts->master_url || !opts->listen_url) {
        e = tn_errmsg_set(msg, TN_ERR_INVAL, "a worker needs --master URL and --listen URL");
        goto fail;
    }
    if (tn_mkdir_p(opts->data_dir) != 0 || !realpath(opts->data_dir, w->data)) {
        e = tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot create the data directory; check --data",
                          opts->data_dir);
        goto fail;
    }
    char sub[4300];
    snprintf(sub, sizeof(sub), "%s/logs", w->data);
    tn_mkdir_p(sub);
    snprintf(sub, sizeof(sub), "%s/exec", w->data);
    tn_mkdir_p(sub);
    if ((e = lock_data(w, msg)) || (e = load_identity(w, opts->cluster_id, msg)))
        goto fail;
    set_names(w, opts);
    tn_fence_init(&w->fence, w->data);
    if ((e = make_spares(w, msg)))
        goto fail;
    if (!id_chars_ok(w->name)) { /* a label, but one that goes into logs and the journal */
        e = tn_errmsg_set(msg, TN_ERR_INVAL,
                          "worker name \"%s\" is invalid: use 1-64 of A-Z a-z 0-9 . _ -, "
                          "not starting with '.' (--name)",
                          w->name);
        goto fail;
    }
    randombytes_buf(&w->epoch, sizeof(w->epoch));
    char jp[4300];
    snprintf(jp, sizeof(jp), "%s/journal", w->data);
    w->journal = open(jp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if ((e = tn_outbox_store_open(w->data, opts->map_max, &w->st, msg)))
        goto fail;
    if ((e = task_setup(w, opts, msg)))
        goto fail;
    /* the id, not the name: names are labels two workers may share */
    tn_proc_opts po = {.cgroup_root = opts->cgroup_root, .name = w->id};
    if ((e = tn_procs_new(&po, &w->procs, msg)))
        goto fail;
    tn_info("worker", "msg=\"containment\" worker=%s id=%s mode=%s cgroup=%s", w->name, w->id,
            tn_contain_mode_name(tn_procs_mode(w->procs)),
            tn_procs_cgroup_dir(w->procs) ? tn_procs_cgroup_dir(w->procs) : "-");
    recover_tasks(w);
    tn_outbox_init(&w->ob, w->st);
    snprintf(w->ob.cluster, sizeof(w->ob.cluster), "%s", w->cluster);
    if (w->rebound)
        drop_old_reports(w);
    if ((e = connect_master(w, opts, msg)))
        goto fail;
    if ((e = tn_rpc_serve(w->ctl, serve_logs, w, &w->rpc, msg)))
        goto fail;
    tn_http_opts ho = {.addr = opts->metrics_addr, .threads = 1};
    if (opts->metrics_addr && (e = tn_http_start(&ho, serve_metrics, w, &w->metrics, msg)))
        goto fail;
    char cluster[sizeof(w->cluster)]; /* the worker thread may bind it from now on */
    snprintf(cluster, sizeof(cluster), "%s", w->cluster[0] ? w->cluster : "-");
    if (pthread_create(&w->thread, NULL, worker_thread, w) != 0) {
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the worker thread");
        goto fail;
    }
    tn_info("worker",
            "msg=\"started\" worker=%s id=%s cluster=%s master=%s listen=%s slots=%u "
            "groups=%s kill_hooks=%u",
            w->name, w->id, cluster, opts->master_url, w->listen, w->o.slots,
            opts->groups ? opts->groups : "default", opts->nkill_hooks);
    *out = w;
    return TN_OK;
fail:
    tn_http_stop(w->metrics);
    tn_rpc_server_free(w->rpc);
    tn_tx_free(&w->rx);
    tn_tx_free(&w->tx);
    forget_leaders(w);
    tn_outq_free(w->q);
    tn_procs_free(w->procs);
    free_spares(w);
    tn_outbox_fini(&w->ob);
    tn_outbox_store_close(w->st);
    if (w->journal >= 0)
        close(w->journal);
    if (w->lock_fd >= 0)
        close(w->lock_fd);
    if (w->wake >= 0)
        close(w->wake);
    task_setup_free(w);
    free(w);
    return e;
}

void tn_worker_stop(tn_worker *w)
{
    if (!w)
        return;
    tn_http_stop(w->metrics);
    /* The spares go before any socket closes (a close can stall in nng for seconds), so a
     * stop cut short there by the service manager's SIGKILL leaves none behind. The control
     * server after: serve_logs does not wait on the loop; it reads only the jobs, which
     * stay until after it. */
    tn_daemon_stop(NULL, &w->rx, &w->stop, wake_thread, free_spares, w, w->thread);
    tn_rpc_server_free(w->rpc);
    if (w->q)
        (void)tn_outq_flush(w->q, w->tx, NULL);
    tn_tx_free(&w->tx);
    forget_leaders(w);
    tn_outq_free(w->q);
    while (w->in_head) {
        inmsg *in = w->in_head;
        w->in_head = in->next;
        free(in);
    }
    while (w->jobs) {
        job *j = w->jobs;
        w->jobs = j->next;
        tn_proc_free(j->proc);
        tn_hook_set_free(j->hooks);
        free(j->user);
        free(j->exec_dir);
        free(j->log_path);
        free(j);
    }
    tn_outbox_fini(&w->ob);
    tn_map_fini(&w->finished);
    tn_map_fini(&w->newest);
    tn_map_fini(&w->finished_old);
    tn_procs_free(w->procs);
    tn_outbox_store_close(w->st);
    if (w->journal >= 0)
        close(w->journal);
    if (w->lock_fd >= 0)
        close(w->lock_fd); /* the lock goes last: nothing of this run is left to clean */
    close(w->wake);
    task_setup_free(w);
    free(w);
    tn_info("worker", "msg=\"stopped\"");
}

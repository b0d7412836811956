/* The in-process executor: noop tasks on engine timers, shell tasks as local process
 * groups watched by a thread each. Reports go back through tn_engine_report. */
#include "inproc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "params.h"
#include "util.h"

extern char **environ;

typedef struct job {
    struct job *next, *prev; /* the running list: O(1) removal */
    tn_inproc *x;
    uint64_t wf, task;
    uint32_t attempt;
    int refs;      /* the list, a running thread, a pending timer */
    bool killed;   /* a kill was asked: report KILL_RESULT, not a result */
    bool finished; /* its report went out */
    pid_t pid;     /* shell: the process group leader */
    /* noop */
    bool ok;
    char **out_keys, **out_values;
    uint32_t nout;
    /* shell */
    char *script, *log_path;
    char **envp;
} job;

struct tn_inproc {
    tn_engine *e;
    char *log_dir;
    pthread_mutex_t mu;
    job *jobs;
    unsigned running;
    job *free; /* finished jobs' memory, for the next ones (a free list) */
    unsigned nfree;
    unsigned watchers; /* shell threads not yet returned: free waits for them */
};

#define JOB_FREE_MAX 4096

static void job_unref(job *j)
{
    tn_inproc *x = j->x;
    pthread_mutex_lock(&x->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&x->mu);
    if (!last)
        return;
    for (uint32_t i = 0; i < j->nout; i++) {
        free(j->out_keys[i]);
        free(j->out_values[i]);
    }
    free(j->out_keys);
    free(j->out_values);
    free(j->script);
    free(j->log_path);
    if (j->envp) {
        for (char **p = j->envp; *p; p++)
            free(*p);
        free(j->envp);
    }
    pthread_mutex_lock(&x->mu); /* kept for the next dispatch, up to a bound */
    if (x->nfree < JOB_FREE_MAX) {
        j->next = x->free;
        x->free = j;
        x->nfree++;
        j = NULL;
    }
    pthread_mutex_unlock(&x->mu);
    free(j);
}

/* Take a job off the running list once; false if it already was. */
static bool job_finish(job *j)
{
    tn_inproc *x = j->x;
    pthread_mutex_lock(&x->mu);
    bool first = !j->finished;
    if (first) {
        j->finished = true;
        if (j->prev)
            j->prev->next = j->next;
        else
            x->jobs = j->next;
        if (j->next)
            j->next->prev = j->prev;
        j->next = j->prev = NULL;
        j->refs--; /* the list's reference; the caller holds another */
        x->running--;
    }
    pthread_mutex_unlock(&x->mu);
    return first;
}

static void report(job *j, tn_report_kind kind, bool ok, int64_t code, int64_t pid,
                   const char *reason, tn_kv *outputs)
{
    tn_report r = {.kind = kind,
                   .wf = j->wf,
                   .task = j->task,
                   .attempt = j->attempt,
                   .success = ok,
                   .exit_code = code,
                   .pid = pid,
                   .worker = "inproc",
                   .reason = reason};
    const char **k = NULL, **v = NULL;
    if (outputs && tn_kv_len(outputs)) {
        uint32_t n = tn_kv_len(outputs);
        k = calloc(n, sizeof(char *));
        v = calloc(n, sizeof(char *));
        if (k && v) {
            for (uint32_t i = 0; i < n; i++) {
                k[i] = tn_kv_key(outputs, i);
                v[i] = tn_kv_value(outputs, i);
            }
            r.out_keys = k;
            r.out_values = v;
            r.nout = n;
        }
    } else if (j->nout && kind == TN_REPORT_RESULT && ok) {
        r.out_keys = (const char *const *)j->out_keys;
        r.out_values = (const char *const *)j->out_values;
        r.nout = j->nout;
    }
    tn_engine_report(j->x->e, &r);
    free(k);
    free(v);
}

static void noop_done(tn_engine *e, void *arg)
{
    job *j = arg;
    (void)e;
    if (job_finish(j))
        report(j, TN_REPORT_RESULT, j->ok, j->ok ? 0 : 1, 0,
               j->ok ? NULL : "noop task configured to fail", NULL);
    job_unref(j);
}

/* ------------------------------------------------------------------------------ */
/* shell */

static void *shell_thread(void *arg)
{
    job *j = arg;
    int st = 0;
    pid_t r;
    do {
        r = waitpid(j->pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    /* the leader is gone; make sure nothing of its group lingers */
    (void)kill(-j->pid, SIGKILL);
    int64_t code = r == j->pid ? tn_exit_code(st) : -1;
    bool ok = code == 0;
    tn_kv *outs = tn_kv_new();
    char cut[200] = "";
    /* outputs cut by a limit fail the task, never silently (see params.h) */
    if (outs && tn_params_scan_file_why(j->log_path, outs, cut, sizeof(cut)) == TN_ERR_TOOBIG &&
        ok)
        ok = false;
    else
        cut[0] = '\0';
    if (job_finish(j)) {
        pthread_mutex_lock(&j->x->mu);
        bool killed = j->killed;
        pthread_mutex_unlock(&j->x->mu);
        char why[96];
        if (r == j->pid && WIFSIGNALED(st))
            snprintf(why, sizeof(why), "killed by signal %d (%s): exit status %" PRId64,
                     WTERMSIG(st), strsignal(WTERMSIG(st)), code);
        else
            snprintf(why, sizeof(why), "exit status %" PRId64, code);
        if (killed)
            report(j, TN_REPORT_KILL_RESULT, false, code, 0, "killed", NULL);
        else
            report(j, TN_REPORT_RESULT, ok, code, 0, ok ? NULL : cut[0] ? cut : why, outs);
    }
    tn_kv_free(outs);
    tn_inproc *x = j->x;
    job_unref(j);
    pthread_mutex_lock(&x->mu);
    x->watchers--; /* the last touch of x: free may go on once this is 0 */
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

static char **make_env(const tn_dispatch_req *req)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + req->nparams + 4, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        env[k++] = strdup(environ[i]);
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "TERN_WORKFLOW_INSTANCE_ID=%" PRIu64, req->wf);
    env[k++] = strdup(tmp);
    snprintf(tmp, sizeof(tmp), "TERN_TASK_INSTANCE_ID=%" PRIu64, req->task);
    env[k++] = strdup(tmp);
    snprintf(tmp, sizeof(tmp), "TERN_TASK_ATTEMPT=%u", req->attempt);
    env[k++] = strdup(tmp);
    env[k] = NULL;
    return env;
}

static void start_shell(tn_inproc *x, job *j, const tn_dispatch_req *req)
{
    size_t len = (req->env_prelude ? strlen(req->env_prelude) + 1 : 0) +
                 strlen(req->command ? req->command : "") + 1;
    j->script = malloc(len + 1);
    char path[4200];
    snprintf(path, sizeof(path), "%s/%" PRIu64 "-%u.log", x->log_dir, req->task, req->attempt);
    j->log_path = strdup(path);
    j->envp = make_env(req);
    const char *why = NULL;
    if (!j->script || !j->log_path || !j->envp) {
        why = "out of memory";
        goto fail;
    }
    if (req->tenant) { /* never run as the wrong user: switching users is the worker's */
        why = "the in-process executor cannot run a task as a tenant: run it on a worker "
              "(tern standalone, tern run, or tern master with tern worker)";
        goto fail;
    }
    snprintf(j->script, len + 1, "%s%s%s", req->env_prelude ? req->env_prelude : "",
             req->env_prelude ? "\n" : "", req->command ? req->command : "");
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, j->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    char *argv[] = {"/bin/sh", "-e", "-c", j->script, NULL};
    int rc = posix_spawn(&j->pid, "/bin/sh", &fa, &at, argv, j->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        why = "spawn of /bin/sh failed";
        goto fail;
    }
    report(j, TN_REPORT_ACCEPTED, true, 0, j->pid, NULL, NULL);
    pthread_t th;
    pthread_attr_t ta;
    pthread_attr_init(&ta);
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&x->mu);
    j->refs++;
    x->watchers++;
    pthread_mutex_unlock(&x->mu);
    if (pthread_create(&th, &ta, shell_thread, j) != 0) {
        pthread_mutex_lock(&x->mu);
        j->refs--;
        x->watchers--;
        pthread_mutex_unlock(&x->mu);
        (void)kill(-j->pid, SIGKILL);
        (void)waitpid(j->pid, NULL, 0);
        why = "cannot start a watcher thread";
        pthread_attr_destroy(&ta);
        goto fail;
    }
    pthread_attr_destroy(&ta);
    return;
fail:
    if (job_finish(j))
        report(j, TN_REPORT_RESULT, false, -1, 0, why, NULL);
}

/* ------------------------------------------------------------------------------ */
/* the operations */

static void op_dispatch(void *self, const tn_dispatch_req *req)
{
    tn_inproc *x = self;
    pthread_mutex_lock(&x->mu);
    job *j = x->free;
    if (j) {
        x->free = j->next;
        x->nfree--;
    }
    pthread_mutex_unlock(&x->mu);
    if (j)
        memset(j, 0, sizeof(*j));
    else if (!(j = calloc(1, sizeof(*j))))
        return;
    j->x = x;
    j->wf = req->wf;
    j->task = req->task;
    j->attempt = req->attempt;
    j->refs = 1;
    pthread_mutex_lock(&x->mu);
    j->next = x->jobs;
    j->prev = NULL;
    if (x->jobs)
        x->jobs->prev = j;
    x->jobs = j;
    x->running++;
    pthread_mutex_unlock(&x->mu);
    const tn_def_task *n = req->node;
    if (n->type == TN_DEF_TASK_SHELL) {
        start_shell(x, j, req);
        return;
    }
    /* noop: accepted now, done after its duration */
    j->ok = n->noop.result == TN_DEF_NOOP_SUCCESS;
    if (n->noop.outputs.n) {
        j->out_keys = calloc(n->noop.outputs.n, sizeof(char *));
        j->out_values = calloc(n->noop.outputs.n, sizeof(char *));
        if (j->out_keys && j->out_values) {
            for (uint32_t i = 0; i < n->noop.outputs.n; i++) {
                j->out_keys[i] = strdup(n->noop.outputs.items[i].key);
                j->out_values[i] = strdup(n->noop.outputs.items[i].value);
            }
            j->nout = n->noop.outputs.n;
        }
    }
    report(j, TN_REPORT_ACCEPTED, true, 0, 0, NULL, NULL);
    pthread_mutex_lock(&x->mu);
    j->refs++; /* the timer's */
    pthread_mutex_unlock(&x->mu);
    tn_engine_after(x->e, tn_engine_now(x->e) + (int64_t)n->noop.duration_ms * 1000000,
                    noop_done, j);
}

typedef struct escalate {
    tn_inproc *x;
    job *j;
} escalate;

static void escalate_cb(tn_engine *e, void *arg)
{
    escalate *s = arg;
    (void)e;
    pthread_mutex_lock(&s->x->mu);
    bool alive = !s->j->finished && s->j->pid > 0;
    pthread_mutex_unlock(&s->x->mu);
    if (alive)
        (void)kill(-s->j->pid, SIGKILL);
    job_unref(s->j);
    free(s);
}

static void op_kill(void *self, uint64_t wf, uint64_t task, uint32_t attempt, uint64_t grace_ms)
{
    tn_inproc *x = self;
    job *j = NULL;
    pthread_mutex_lock(&x->mu);
    for (job *p = x->jobs; p; p = p->next)
        if (p->task == task && p->attempt == attempt && p->wf == wf)
            j = p;
    if (j) {
        j->killed = true;
        j->refs++;
    }
    pthread_mutex_unlock(&x->mu);
    if (!j) {
        /* nothing runs it (finished, or never here): say so, the engine fences the rest */
        tn_report r = {.kind = TN_REPORT_KILL_RESULT,
                       .wf = wf,
                       .task = task,
                       .attempt = attempt,
                       .worker = "inproc",
                       .reason = "not running"};
        tn_engine_report(x->e, &r);
        return;
    }
    if (j->pid > 0) {
        (void)kill(-j->pid, SIGTERM);
        escalate *s = malloc(sizeof(*s));
        if (s) {
            s->x = x;
            s->j = j; /* our reference moves to the escalation */
            tn_engine_after(x->e, tn_engine_now(x->e) + (int64_t)grace_ms * 1000000,
                            escalate_cb, s);
        } else {
            (void)kill(-j->pid, SIGKILL);
            job_unref(j);
        }
        return; /* the watcher thread reports KILL_RESULT */
    }
    if (job_finish(j))
        report(j, TN_REPORT_KILL_RESULT, false, 0, 0, "killed", NULL);
    job_unref(j);
}

static int op_running(void *self, uint64_t task, uint32_t attempt)
{
    tn_inproc *x = self;
    bool r = false;
    pthread_mutex_lock(&x->mu);
    for (job *p = x->jobs; p; p = p->next)
        if (p->task == task && p->attempt == attempt)
            r = true;
    pthread_mutex_unlock(&x->mu);
    return r;
}

static const tn_executor_ops inproc_ops = {op_dispatch, op_kill, op_running, NULL, NULL};

tn_err tn_inproc_new(const char *log_dir, tn_inproc **out)
{
    tn_inproc *x = calloc(1, sizeof(*x));
    if (!x)
        return TN_ERR_NOMEM;
    x->log_dir = strdup(log_dir);
    pthread_mutex_init(&x->mu, NULL);
    if (!x->log_dir || tn_mkdir_p(log_dir) != 0) {
        tn_inproc_free(x);
        return TN_ERR_IO;
    }
    *out = x;
    return TN_OK;
}

void tn_inproc_free(tn_inproc *x)
{
    if (!x)
        return;
    /* Kill what still runs and wait for the watcher threads to report and let go. The
     * engine is closed first, so no noop timer will fire: those jobs are freed here. */
    for (;;) {
        pthread_mutex_lock(&x->mu);
        bool shells = x->watchers > 0;
        for (job *p = x->jobs; p; p = p->next)
            if (p->pid > 0) {
                (void)kill(-p->pid, SIGKILL);
                shells = true;
            }
        pthread_mutex_unlock(&x->mu);
        if (!shells)
            break;
        usleep(1000);
    }
    while (x->jobs) {
        job *j = x->jobs;
        x->jobs = j->next;
        j->refs = 1;
        job_unref(j);
    }
    while (x->free) {
        job *j = x->free;
        x->free = j->next;
        free(j);
    }
    pthread_mutex_destroy(&x->mu);
    free(x->log_dir);
    free(x);
}

tn_executor tn_inproc_executor(tn_inproc *x)
{
    tn_executor ex = {&inproc_ops, x, "inproc"};
    return ex;
}

void tn_inproc_bind(tn_inproc *x, tn_engine *e)
{
    x->e = e;
}

unsigned tn_inproc_running(tn_inproc *x)
{
    pthread_mutex_lock(&x->mu);
    unsigned r = x->running;
    pthread_mutex_unlock(&x->mu);
    return r;
}

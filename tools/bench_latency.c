/* `tern bench latency`: a `tern standalone` with 4 slots as a child process, driven from
 * this process over its control socket as any client would, to compare with the peers
 * (tools/bench/peers/) on the same two workloads:
 *   - submit -> task process started: a one-task workflow whose command runs
 *     tern-bench-stamp, which writes the wall clock; the client reads its own clock just
 *     before sending the start. Once from this process (a client already running) and
 *     once through a `tern start` process (the CLI's start-up included);
 *   - 10,000 noop tasks at 4 slots: one workflow of 10,000 independent noop tasks.
 * Baselines: posix_spawn of the same command from this process (latency); four threads
 * doing one raw nng request/reply over ipc per task (throughput). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "def.h"
#include "logread.h"
#include "replay.h"
#include "rpc.h"
#include "sm_gen.h"
#include "util.h"
#include "cli.h"

extern char **environ;

typedef struct lat {
    char dir[4000], data[4100], url[4200], self[4096], stamp[4096], stampf[4100], cmd[8300];
    pid_t sa;
    tn_rpc_client *kept; /* NULL: a connection per request */
} lat;

static void bline(const char *name, double value, const char *unit, double baseline)
{
    printf("BENCH name=%s value=%.0f unit=%s baseline=%.0f ratio=%.2f\n", name, value, unit,
           baseline, baseline > 0 ? value / baseline : 0.0);
    fflush(stdout);
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pctl(int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), cmp64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i < n ? i : n - 1];
}

/* One control request; the reply's json (NUL-terminated, malloc'd) or NULL. */
static char *ctl(const lat *l, const tn_ctl_req *r, bool *ok)
{
    tn_buf b = {0};
    if (tn_ctl_req_encode(r, &b))
        return NULL;
    void *raw = NULL;
    size_t rl;
    tn_err e = l->kept ? tn_rpc_client_call(l->kept, b.data, b.size, 30000, &raw, &rl, NULL) :
                         tn_rpc_call(l->url, b.data, b.size, 30000, &raw, &rl, NULL);
    tn_buf_free(&b);
    tn_ctl_rep rep;
    char *json = NULL;
    if (!e && tn_ctl_rep_decode(raw, rl, &rep) == TN_OK) {
        json = strndup(rep.json.p ? rep.json.p : "", rep.json.len);
        if (ok)
            *ok = rep.ok;
    }
    free(raw);
    return json;
}

static uint64_t ctl_start(const lat *l, tn_ctl_req *r, const char *wf)
{
    memset(r, 0, sizeof(*r));
    r->cmd = tn_str_c("start");
    r->name = tn_str_c(wf);
    bool ok = false;
    char *j = ctl(l, r, &ok);
    const char *p = j && ok ? strstr(j, "\"id\":") : NULL;
    uint64_t id = p ? strtoull(p + 5, NULL, 10) : 0;
    free(j);
    return id;
}

/* Wait (polling every 2 ms) until instance id is in a final state. */
static bool wait_final(const lat *l, tn_ctl_req *r, uint64_t id, const char *cmd)
{
    for (int i = 0; i < 30000; i++) {
        memset(r, 0, sizeof(*r));
        r->cmd = tn_str_c(cmd); /* status (one instance) or ls (the list, not its tasks) */
        r->id = id;
        char *j = ctl(l, r, NULL);
        char want[64];
        snprintf(want, sizeof(want), "\"id\":%" PRIu64 ",", id);
        const char *p = j ? strstr(j, want) : NULL;
        const char *s = p ? strstr(p, "\"state\":\"") : NULL;
        bool fin = s && (!strncmp(s + 9, "SUCCESS", 7) || !strncmp(s + 9, "FAIL", 4) ||
                         !strncmp(s + 9, "STOP", 4) || !strncmp(s + 9, "KILL", 4));
        free(j);
        if (fin)
            return true;
        usleep(2000);
    }
    return false;
}

static int apply(const lat *l, tn_ctl_req *r, const char *yaml)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    if (tn_def_parse("bench.yaml", yaml, strlen(yaml), &d, &m))
        return tn_cli_fail("bench", "%s", m.text);
    char *bytes;
    size_t n;
    tn_err e = tn_def_encode(d, &bytes, &n);
    tn_def_free(d);
    if (e)
        return tn_cli_fail("bench", "cannot encode a definition");
    memset(r, 0, sizeof(*r));
    r->cmd = tn_str_c("apply");
    r->file = tn_str_c("bench.yaml");
    r->bytes = (tn_str){bytes, n};
    bool ok = false;
    char *j = ctl(l, r, &ok);
    free(j);
    free(bytes);
    return ok ? 0 : tn_cli_fail("bench", "the standalone refused a definition");
}

/* The stamp the task wrote (ns since the epoch), removed; 0 after 10 s without one. */
static int64_t read_stamp(const char *file)
{
    for (int i = 0; i < 100000; i++) {
        FILE *f = fopen(file, "re");
        if (f) {
            long long v = 0;
            int got = fscanf(f, "%lld", &v);
            fclose(f);
            unlink(file);
            return got == 1 ? (int64_t)v : 0;
        }
        usleep(100);
    }
    return 0;
}

static pid_t spawn_quiet(char *const argv[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* The standalone as a child (stderr to DIR/standalone.log); wait until its worker joined. */
static int up(lat *l, tn_ctl_req *r)
{
    char logf[4100], slots[] = "4";
    snprintf(logf, sizeof(logf), "%s/standalone.log", l->dir);
    char *argv[] = {l->self,
                    "standalone",
                    "--data",
                    l->data,
                    "--slots",
                    slots,
                    getenv("TERN_BENCH_NO_CGROUP") ? "--no-cgroup" : NULL,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, logf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    setenv("TERN_LOG_LEVEL", "warn", 1);
    int e = posix_spawn(&l->sa, l->self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e)
        return tn_cli_fail("bench", "cannot start a standalone: %s", strerror(e));
    for (int i = 0; i < 400; i++) {
        memset(r, 0, sizeof(*r));
        r->cmd = tn_str_c("workers");
        char *j = ctl(l, r, NULL);
        bool alive = j && strstr(j, "\"alive\":true");
        free(j);
        if (alive)
            return 0;
        usleep(25000);
    }
    return tn_cli_fail("bench", "the standalone did not come up (see %s)", logf);
}

typedef struct evs {
    int64_t submit, running;
} evs;

static int ev_cb(void *ctx, const tn_event *ev)
{
    evs *t = ctx;
    if (ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_SUBMIT && !t->submit)
        t->submit = ev->at;
    if (ev->machine == TN_MACHINE_TASK && ev->event == TN_TASK_E_RUNNING && !t->running)
        t->running = ev->at;
    return 0;
}

/* The master's SUBMIT and RUNNING times of instance wf, read beside the standalone. */
static evs wf_times(const lat *l, uint64_t wf)
{
    evs t = {0, 0};
    tn_store *st;
    if (tn_log_open_read(l->data, &st, NULL) != TN_OK)
        return t;
    int fr;
    tn_replay_wf_events(st, wf, ev_cb, &t, &fr);
    tn_log_close_read(st);
    return t;
}

/* The baseline of submit -> started: the same command spawned from this process, n times
 * (ns into base). */
static void spawn_times(lat *l, int64_t *base, unsigned n)
{
    char *sh[] = {"/bin/sh", "-c", l->cmd, NULL};
    for (unsigned i = 0; i < n; i++) {
        int64_t t0 = tn_now_ns();
        pid_t p = spawn_quiet(sh);
        base[i] = read_stamp(l->stampf) - t0;
        waitpid(p, NULL, 0);
    }
}

/* submit -> started from this process: n runs of the one-task workflow, against the
 * spawn's percentiles b50 and b99. kept: the client keeps one connection for its
 * requests (as a program using tern would, and as Celery's client keeps its broker's);
 * else each request makes its own, as a `tern` command does. */
static void lat_client(lat *l, tn_ctl_req *r, unsigned n, bool kept, double b50, double b99)
{
    int64_t *v = calloc(n * 3, sizeof(int64_t)), *sub = v + n, *run = v + 2 * n;
    unsigned k = 0;
    tn_errmsg em = {{0}};
    if (kept && tn_rpc_client_open(l->url, NULL, &l->kept, &em) != TN_OK) {
        tn_cli_fail("bench", "%s", em.text);
        free(v);
        return;
    }
    for (unsigned i = 0; v && i < n; i++) {
        int64_t t0 = tn_now_ns();
        uint64_t id = ctl_start(l, r, "one");
        int64_t st = id ? read_stamp(l->stampf) : 0;
        if (!st || !wait_final(l, r, id, "status"))
            continue;
        evs t = wf_times(l, id);
        v[k] = st - t0;
        sub[k] = t.submit - t0;
        run[k++] = st - t.submit;
    }
    tn_rpc_client_close(l->kept);
    l->kept = NULL;
    const char *pre = kept ? "latency.kept_" : "latency.";
    char name[128];
#define LINE(what, arr, p, b)                     \
    snprintf(name, sizeof(name), "%s" what, pre); \
    bline(name, pctl(arr, k, p) / 1000.0, "us", b)
    LINE("submit_to_started.p50_us", v, 0.5, b50);
    LINE("submit_to_started.p99_us", v, 0.99, b99);
    /* the two halves, each against the spawn's own percentile: where the tail is */
    LINE("client_to_submit_event.p50_us", sub, 0.5, b50);
    LINE("client_to_submit_event.p99_us", sub, 0.99, b99);
    LINE("submit_event_to_started.p50_us", run, 0.5, b50);
    LINE("submit_event_to_started.p99_us", run, 0.99, b99);
#undef LINE
    free(v);
}

/* the same through a `tern start` process, and that process's start-up alone */
static void lat_cli(lat *l, tn_ctl_req *r, unsigned n)
{
    int64_t *v = calloc(n * 2, sizeof(int64_t)), *help = v + n;
    unsigned k = 0, nh = 0;
    char *argv[] = {l->self, "start", "one", "--data", l->data, NULL};
    char *hargv[] = {l->self, "start", "--help", NULL};
    for (unsigned i = 0; v && i < n; i++) {
        int64_t t0 = tn_now_ns();
        pid_t p = spawn_quiet(argv);
        int64_t st = p > 0 ? read_stamp(l->stampf) : 0;
        if (p > 0)
            waitpid(p, NULL, 0);
        memset(r, 0, sizeof(*r));
        r->cmd = tn_str_c("ls");
        char *j = ctl(l, r, NULL); /* the newest instance is listed first */
        const char *ip = j ? strstr(j, "\"id\":") : NULL;
        if (st && ip && wait_final(l, r, strtoull(ip + 5, NULL, 10), "status"))
            v[k++] = st - t0;
        free(j);
        t0 = tn_now_ns();
        p = spawn_quiet(hargv);
        if (p > 0 && waitpid(p, NULL, 0) == p)
            help[nh++] = tn_now_ns() - t0;
    }
    double h50 = pctl(help, nh, 0.5) / 1000.0;
    bline("latency.cli_submit_to_started.p50_us", pctl(v, k, 0.5) / 1000.0, "us", h50);
    bline("latency.cli_submit_to_started.p99_us", pctl(v, k, 0.99) / 1000.0, "us", h50);
    bline("latency.cli_start_help.p50_us", h50, "us", h50);
    free(v);
}

typedef struct rr {
    char url[4300];
    unsigned n;
} rr;

static void *rr_client(void *p)
{
    rr *a = p;
    nng_socket s;
    if (nng_req0_open(&s) || nng_dial(s, a->url, NULL, 0))
        return NULL;
    char msg[128] = {0};
    for (unsigned i = 0; i < a->n; i++) {
        void *buf;
        size_t len;
        if (nng_send(s, msg, sizeof(msg), 0) || nng_recv(s, &buf, &len, NNG_FLAG_ALLOC))
            break;
        nng_free(buf, len);
    }
    nng_close(s);
    return NULL;
}

/* Raw nng request/reply over ipc, four clients, one round trip per task: tasks/s. */
static double raw_rr(const char *dir, unsigned n)
{
    rr a;
    snprintf(a.url, sizeof(a.url), "ipc://%s/rr.sock", dir);
    a.n = n / 4;
    nng_socket rep;
    if (nng_rep0_open(&rep) || nng_listen(rep, a.url, NULL, 0))
        return 0;
    pthread_t th[4];
    int64_t t0 = tn_mono_ns();
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, rr_client, &a);
    for (unsigned i = 0; i < a.n * 4; i++) {
        void *buf;
        size_t len;
        if (nng_recv(rep, &buf, &len, NNG_FLAG_ALLOC))
            break;
        nng_free(buf, len);
        nng_send(rep, "ok", 2, 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    double rate = (double)(a.n * 4) * 1e9 / (double)(tn_mono_ns() - t0);
    nng_close(rep);
    return rate;
}

static void noop_rate(lat *l, tn_ctl_req *r, unsigned n)
{
    size_t cap = 64 + (size_t)n * 48;
    char *y = malloc(cap);
    if (!y)
        return;
    size_t off = (size_t)snprintf(y, cap, "name: wide\ntasks:\n");
    for (unsigned i = 0; i < n; i++)
        off += (size_t)snprintf(y + off, cap - off, "  - {name: t%u, type: noop}\n", i);
    int rc = apply(l, r, y);
    free(y);
    if (rc)
        return;
    int64_t t0 = tn_mono_ns();
    uint64_t id = ctl_start(l, r, "wide");
    if (!id || !wait_final(l, r, id, "ls"))
        return;
    double rate = n * 1e9 / (double)(tn_mono_ns() - t0);
    bline("latency.noop4.tasks", rate, "tasks/s", raw_rr(l->dir, n));
}

static void down(lat *l)
{
    if (l->sa > 0) {
        kill(l->sa, SIGTERM);
        waitpid(l->sa, NULL, 0);
    }
    char *argv[] = {"/bin/rm", "-rf", l->dir, NULL};
    pid_t p = spawn_quiet(argv);
    if (p > 0)
        waitpid(p, NULL, 0);
}

static int prepare(lat *l, const char *base)
{
    snprintf(l->dir, sizeof(l->dir), "%s/tern-bench-XXXXXX", base);
    if (!mkdtemp(l->dir))
        return tn_cli_fail("bench", "%s: cannot create a temporary directory: %m", base);
    snprintf(l->data, sizeof(l->data), "%s/data", l->dir);
    snprintf(l->url, sizeof(l->url), "ipc://%s/master.ctl", l->data);
    snprintf(l->stampf, sizeof(l->stampf), "%s/stamp", l->dir);
    ssize_t sl = readlink("/proc/self/exe", l->self, sizeof(l->self) - 1);
    l->self[sl > 0 ? sl : 0] = 0;
    char *slash = strrchr(l->self, '/');
    snprintf(l->stamp, sizeof(l->stamp), "%.*s/tern-bench-stamp",
             slash ? (int)(slash - l->self) : 1, slash ? l->self : ".");
    if (access(l->stamp, X_OK) != 0)
        return tn_cli_fail("bench", "%s: not found (built next to tern by `ninja -C build`)",
                           l->stamp);
    snprintf(l->cmd, sizeof(l->cmd), "exec %s %s", l->stamp, l->stampf);
    return 0;
}

int tn_bench_latency(const char *base, bool quick)
{
    lat *l = calloc(1, sizeof(*l));
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!l || !r) {
        free(l);
        free(r);
        return tn_cli_fail("bench", "out of memory");
    }
    int rc = prepare(l, base);
    if (!rc)
        rc = up(l, r);
    char y[9000];
    snprintf(y, sizeof(y), "name: one\ntasks:\n  - {name: t, type: shell, command: '%s'}\n",
             l->cmd);
    if (!rc)
        rc = apply(l, r, y);
    if (!rc) {
        noop_rate(l, r, quick ? 1000 : 10000);
        unsigned n = quick ? 20 : 200;
        int64_t *sp = calloc(n, sizeof(int64_t));
        if (sp) {
            spawn_times(l, sp, n);
            double b50 = pctl(sp, n, 0.5) / 1000.0, b99 = pctl(sp, n, 0.99) / 1000.0;
            lat_client(l, r, n, false, b50, b99);
            lat_client(l, r, n, true, b50, b99);
            free(sp);
        }
        lat_cli(l, r, quick ? 10 : 100);
    }
    down(l);
    free(r);
    free(l);
    return rc;
}

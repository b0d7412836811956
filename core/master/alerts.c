/* The alert sender (see alerts.h). */
#include "alerts.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jsonout.h"
#include "log.h"
#include "logread.h"
#include "sm_gen.h"
#include "util.h"

#define MS          1000000LL
#define POLL_MS     500 /* new alerts are picked up within this */
#define MAX_PENDING 10000

extern char **environ;

typedef struct pending {
    tn_alert_proj p;
    int64_t next; /* when to try (ns, wall clock) */
} pending;

struct tn_alerter {
    tn_engine *e;
    tn_alerter_opts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint64_t next_id; /* alerts with ids below this are known */
    pending *q;
    size_t nq, capq;
};

char *tn_alert_json(const tn_alert_proj *p, uint32_t attempt)
{
    char at[40];
    tn_fmt_time(p->raised_at, at, sizeof(at));
    /* keys in sorted order, as receivers have always had them; a reason (a peer's words)
     * or a name that is not UTF-8 has U+FFFD for its bad bytes */
    json_t *o =
        json_pack("{s:I,s:I,s:I,s:o,s:s,s:o,s:o}", "alert", (json_int_t)p->id, "attempt",
                  (json_int_t)attempt, "instance", (json_int_t)p->wf, "on", tn_jo_str(p->on),
                  "raised_at", at, "reason", tn_jo_str(p->reason), "state", tn_jo_str(p->what));
    if (o && p->task)
        tn_jo_set(o, "task", json_integer((json_int_t)p->task));
    if (o)
        tn_jo_set(o, "workflow", tn_jo_str(p->workflow));
    tn_sb b = {0};
    if (!tn_jo_dump(&b, o)) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* ---- delivery ---------------------------------------------------------------------- */

static size_t discard(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

/* libcurl, loaded at the first webhook: linked in, its ~30 libraries (TLS, Kerberos,
 * LDAP, ...) cost every `tern` command ~5 ms of dynamic loading at start, for a feature
 * only a master with a webhook uses. */
static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    char why[256]; /* empty once loaded */
} cu;

static void curl_load(void)
{
    void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(cu.why, sizeof(cu.why),
                 "cannot load libcurl.so.4 (apt-get install libcurl4): %s", dlerror());
        return;
    }
    /* POSIX: a function pointer round-trips through dlsym's void * */
#define CU_SYM(field, name) *(void **)&cu.field = dlsym(h, name)
    CU_SYM(global_init, "curl_global_init");
    CU_SYM(easy_init, "curl_easy_init");
    CU_SYM(easy_setopt, "curl_easy_setopt");
    CU_SYM(easy_perform, "curl_easy_perform");
    CU_SYM(easy_getinfo, "curl_easy_getinfo");
    CU_SYM(easy_cleanup, "curl_easy_cleanup");
    CU_SYM(easy_strerror, "curl_easy_strerror");
    CU_SYM(slist_append, "curl_slist_append");
    CU_SYM(slist_free_all, "curl_slist_free_all");
#undef CU_SYM
    if (!cu.global_init || !cu.easy_init || !cu.easy_setopt || !cu.easy_perform ||
        !cu.easy_getinfo || !cu.easy_cleanup || !cu.easy_strerror || !cu.slist_append ||
        !cu.slist_free_all) {
        snprintf(cu.why, sizeof(cu.why), "libcurl.so.4 lacks a function tern needs");
        return;
    }
    cu.global_init(CURL_GLOBAL_DEFAULT);
}

/* POST the body; true on a 2xx answer. */
static bool send_webhook(tn_alerter *a, const char *url, const char *body, char *out,
                         size_t len)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_load);
    if (cu.why[0]) {
        size_t n = strnlen(cu.why, len - 1); /* cut to what the caller keeps */
        memcpy(out, cu.why, n);
        out[n] = '\0';
        return false;
    }
    CURL *c = cu.easy_init();
    if (!c) {
        snprintf(out, len, "libcurl failed to initialise");
        return false;
    }
    struct curl_slist *h = cu.slist_append(NULL, "Content-Type: application/json");
    char err[CURL_ERROR_SIZE] = "";
    cu.easy_setopt(c, CURLOPT_URL, url);
    cu.easy_setopt(c, CURLOPT_POSTFIELDS, body);
    cu.easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cu.easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)a->o.timeout_ms);
    cu.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    cu.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    cu.easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    cu.easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    cu.easy_setopt(c, CURLOPT_USERAGENT, "tern-alert/1");
    CURLcode rc = cu.easy_perform(c);
    long status = 0;
    cu.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    cu.slist_free_all(h);
    cu.easy_cleanup(c);
    if (rc != CURLE_OK) {
        snprintf(out, len, "%s", err[0] ? err : cu.easy_strerror(rc));
        return false;
    }
    snprintf(out, len, "HTTP %ld", status);
    return status >= 200 && status < 300;
}

/* Write all of body to fd (a pipe), giving up at the deadline. */
static void feed(int fd, const char *body, int64_t deadline)
{
    size_t n = strlen(body), off = 0;
    while (off < n && tn_mono_ns() < deadline) {
        struct pollfd p = {fd, POLLOUT, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t w = write(fd, body + off, n - off);
        if (w < 0 && errno != EINTR && errno != EAGAIN)
            break;
        if (w > 0)
            off += (size_t)w;
    }
}

/* /bin/sh -c CMD with the body on stdin, in its own process group, killed at the
 * timeout; true when it exits 0. */
static bool run_command(tn_alerter *a, const char *cmd, const char *body, char *out, size_t len)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(out, len, "pipe: %s", strerror(errno));
        return false;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
    posix_spawnattr_init(&at);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(fds[0]);
    if (rc != 0) {
        close(fds[1]);
        snprintf(out, len, "cannot run /bin/sh: %s", strerror(rc));
        return false;
    }
    int64_t deadline = tn_mono_ns() + a->o.timeout_ms * MS;
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    feed(fds[1], body, deadline);
    close(fds[1]);
    int st = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (tn_mono_ns() >= deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            snprintf(out, len, "timed out after %" PRId64 " ms", a->o.timeout_ms);
            return false;
        }
        struct timespec ts = {0, 20 * MS};
        nanosleep(&ts, NULL);
    }
    if (WIFSIGNALED(st))
        snprintf(out, len, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(out, len, "exit %d", WEXITSTATUS(st));
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void record(tn_alerter *a, uint64_t id, uint32_t attempt, const char *outcome,
                   int64_t retry_at, bool drop)
{
    tn_cmd c = {.kind = TN_CMD_ALERT_RESULT,
                .actor = "master:alerts",
                .id = id,
                .slots = attempt,
                .text = outcome,
                .sched_ns = retry_at,
                .name = drop ? "drop" : NULL};
    if (tn_engine_submit_wait(a->e, &c) != TN_OK || (c.err && c.err != TN_ERR_ILLEGAL))
        tn_warn("alerts", "msg=\"outcome not recorded\" alert=%" PRIu64 " why=\"%s\"", id,
                c.msg);
}

/* One attempt at q[i]; false when it is done with (delivered or dropped). */
static bool attempt(tn_alerter *a, pending *q)
{
    uint32_t n = q->p.attempts + 1;
    char out[200];
    bool cmd = !strcmp(q->p.kind, "command");
    if (cmd && !a->o.allow_commands &&
        !(a->o.default_command && !strcmp(a->o.default_command, q->p.target))) {
        record(a, q->p.id, n,
               "command alerts of workflows are not allowed on this master: start it with "
               "--allow-alert-commands",
               0, true);
        return false;
    }
    char *body = tn_alert_json(&q->p, n);
    bool ok = body && (cmd ? run_command(a, q->p.target, body, out, sizeof(out)) :
                             send_webhook(a, q->p.target, body, out, sizeof(out)));
    if (!body)
        snprintf(out, sizeof(out), "out of memory");
    free(body);
    int64_t backoff = 1000;
    for (uint32_t i = 1; i < n && backoff < a->o.max_backoff_ms; i++)
        backoff *= 2;
    if (backoff > a->o.max_backoff_ms)
        backoff = a->o.max_backoff_ms;
    int64_t retry = ok ? 0 : tn_now_ns() + backoff * MS;
    tn_info("alerts", "msg=\"alert sent\" alert=%" PRIu64 " attempt=%u to=%s outcome=\"%s\"",
            q->p.id, n, q->p.kind, out);
    record(a, q->p.id, n, out, retry, false);
    q->p.attempts = n;
    q->next = retry;
    return !ok;
}

/* ---- the thread -------------------------------------------------------------------- */

static int collect(void *ctx, const tn_alert_proj *p)
{
    tn_alerter *a = ctx;
    if (p->id >= a->next_id)
        a->next_id = p->id + 1;
    if (a->nq >= MAX_PENDING || !tn_grow((void **)&a->q, &a->capq, a->nq + 1, sizeof(pending)))
        return 0; /* picked up again after a restart */
    pending *q = &a->q[a->nq];
    q->p = *p;
    if (!(q->p.target = strdup(p->target)))
        return 0;
    q->next = p->retry_at;
    a->nq++;
    return 0;
}

static void *alerter_thread(void *arg)
{
    tn_alerter *a = arg;
    tn_store *s = tn_evlog_store(tn_engine_log(a->e));
    pthread_mutex_lock(&a->mu);
    while (!a->stop) {
        pthread_mutex_unlock(&a->mu);
        tn_log_alert_each(s, a->next_id, true, collect, a);
        int64_t now = tn_now_ns();
        for (size_t i = 0; i < a->nq && !a->stop;) {
            if (a->q[i].next <= now && !attempt(a, &a->q[i])) {
                tn_alert_proj_fini(&a->q[i].p);
                a->q[i] = a->q[--a->nq];
            } else {
                i++;
            }
        }
        pthread_mutex_lock(&a->mu);
        if (!a->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += POLL_MS * MS;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
        }
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

tn_err tn_alerter_start(tn_engine *e, const tn_alerter_opts *o, tn_alerter **out,
                        tn_errmsg *msg)
{
    tn_alerter *a = calloc(1, sizeof(*a));
    if (!a)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    a->e = e;
    if (o)
        a->o = *o;
    if (a->o.timeout_ms <= 0)
        a->o.timeout_ms = 10000;
    if (a->o.max_backoff_ms <= 0)
        a->o.max_backoff_ms = 300000;
    a->next_id = 1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->thread, NULL, alerter_thread, a) != 0) {
        pthread_mutex_destroy(&a->mu);
        pthread_cond_destroy(&a->cv);
        free(a);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the alert thread");
    }
    *out = a;
    return TN_OK;
}

void tn_alerter_stop(tn_alerter *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    a->stop = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    for (size_t i = 0; i < a->nq; i++)
        tn_alert_proj_fini(&a->q[i].p);
    free(a->q);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}

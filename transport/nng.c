/* The nng transport: push (sender) and pull (receiver) sockets for tcp, ipc, inproc and
 * tls+tcp behind tn_tx_ops, with connection logs, a receive bound and TLS failure counts. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <nng/supplemental/tls/engine.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ipcprobe.h"
#include "log.h"
#include "transport.h"
#include "util.h"

#define COMP          "tx"
#define MAX_ENDPOINTS 16         /* listens + dials of one endpoint */
#define PEM_MAX       (1u << 20) /* bytes of one PEM file */
#define MONITOR_MS    250        /* how often nng's TLS failure counters are read */
/* for an ipc probe's connection: well under 1 ms unless the machine is starved */
#define PROBE_WAIT_MS 3000
#define NNG_BUF_MAX   8192  /* nng's limit for send-buffer and recv-buffer */
#define CLOSE_WAIT_MS 10000 /* how long free waits for nng_close (see tx_free) */
#define MAX_CONNS     4096  /* default bound on a receiver's connections */
#define NAME_MAX_LEN  64    /* a certificate CN kept for a connection */
#define ROLE_MAX_LEN  16    /* a certificate OU */
#define NEGO_MS       10000 /* nng 1.5.2's bound on an SP header exchange (not an option) */
#define WATCH_MS      1000  /* how often a send reads an unconnected dialer's counters */

/* A receiver's connection: who it is (established at connect) and its rate bucket. */
typedef struct pipeinfo {
    uint32_t id;
    char name[NAME_MAX_LEN + 1], role[ROLE_MAX_LEN + 1];
    int64_t uid;
    bool auth;
    double tok_msgs, tok_bytes; /* tokens left */
    int64_t refill_ns;          /* monotonic ns of the last refill */
} pipeinfo;

static const tn_tx_scheme schemes[] = {
    {"tcp", false, true, tn_tx_nng_new},
    {"ipc", false, false, tn_tx_nng_new},
    {"inproc", false, false, tn_tx_nng_new},
    {"tls+tcp", true, true, tn_tx_nng_new},
};

const tn_tx_scheme *tn_tx_scheme_find(const char *url)
{
    const char *sep = url ? strstr(url, "://") : NULL;
    if (!sep)
        return NULL;
    size_t n = (size_t)(sep - url);
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
        if (strlen(schemes[i].scheme) == n && memcmp(url, schemes[i].scheme, n) == 0)
            return &schemes[i];
    return NULL;
}

tn_err tn_tx_new(const char *url, bool sender, const tn_tx_tls *tls, tn_tx_recv_fn fn,
                 void *arg, tn_tx *out, tn_errmsg *msg)
{
    const tn_tx_scheme *sc = tn_tx_scheme_find(url);
    if (!sc)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: unknown URL scheme; use tcp://, ipc://, inproc:// or "
                             "tls+tcp://",
                             url ? url : "(no URL)");
    return sc->make(sender, tls, fn, arg, out, msg);
}

/* nng's error codes stop here. */
static tn_err from_nng(int rv)
{
    switch (rv) {
    case 0: return TN_OK;
    case NNG_ENOMEM: return TN_ERR_NOMEM;
    case NNG_EINVAL:
    case NNG_EADDRINVAL: return TN_ERR_INVAL;
    case NNG_EADDRINUSE:
    case NNG_EBUSY:
    case NNG_EAGAIN: return TN_ERR_BUSY;
    case NNG_ENOTSUP: return TN_ERR_UNSUPPORTED;
    case NNG_EPERM: return TN_ERR_PERM;
    case NNG_ECLOSED: return TN_ERR_CLOSED;
    case NNG_ETIMEDOUT: return TN_ERR_TIMEOUT;
    case NNG_EMSGSIZE: return TN_ERR_TOOBIG;
    case NNG_ENOENT: return TN_ERR_NOENT;
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH: return TN_ERR_PEER;
    default: return TN_ERR_IO;
    }
}

typedef struct endpoint {
    bool listener;
    char *url;
    uint64_t auth_seen; /* nng's "auth" counter of this listener or dialer at the last poll */
    /* a receiver's ipc listener, watched for nanomsg/nng#1518 (see mon_watch) */
    bool ipc;
    bool suspect;        /* "other" rose past what its connections' ends explain: probe */
    bool relisten;       /* closed as stuck, not listening yet: try again */
    bool lost_told;      /* warned that the path is no longer ours */
    bool rise_seen;      /* the last poll saw the unexplained count above its settled level */
    uint64_t gone;       /* connections this listener handed over that ended (pipe_cb) */
    int64_t unexplained; /* settled level of nng's "other" counter minus gone */
    tn_ipc_file file;    /* the socket file it made */
} endpoint;

struct nngtx;

/* One nng socket of an endpoint, with the listener or dialer of each of its endpoints
 * (same index as nngtx.eps).
 *
 * nng 1.5.2's push socket can keep a connection on its list of ready connections after
 * the connection is closed and freed: a send that completed just before the close puts
 * it back (push0_send_cb -> push0_pipe_ready -> nni_list_append, after push0_pipe_close
 * took it off). The next send, or the next connection to join, then writes through freed
 * memory; the master died of it in the chaos runs (docs/RELIABILITY.md, bug 10). So a
 * sender's socket is used for one connection only: once its connection is gone (REM_POST,
 * which nng runs before it frees the connection) the socket is spent. Its dialer is
 * closed before it redials (and a connection that still came would be refused before nng
 * starts it, ADD_PRE), the next send closes it and opens a fresh one, and no send ever
 * runs on it again: a send holds mu from the spent check to the end of nng_send, and
 * REM_POST takes mu, so the connection is not freed under a send. The messages still queued in a spent socket are lost with it, like those
 * in flight on a broken connection. */
typedef struct sockgen {
    struct nngtx *t;
    nng_socket sock;
    nng_listener l[MAX_ENDPOINTS];
    nng_dialer d[MAX_ENDPOINTS];
    pthread_mutex_t mu; /* spent; held across a send on this socket */
    bool spent;
    atomic_bool up; /* sender: a connection was made (ADD_POST) */
    /* sender, under send_mu: the dialer watch (watch_dialer) */
    int64_t check_ns; /* the next look at the dialer's counters */
    int64_t moved_ns; /* when they were last seen to move (or the dialer started) */
    uint64_t tries_seen;
} sockgen;

typedef struct nngtx {
    sockgen *gen; /* the socket in use; replaced under send_mu and mu; NULL once freed */
    pthread_mutex_t send_mu; /* one send at a time; the only place gen is replaced */
    tn_tx_nng_opts o;
    char *name;
    /* TLS: the PEM texts, loaded once by the constructor (key zeroed at free). */
    bool tls;
    char *ca_pem, *cert_pem, *key_pem, *server_name;
    char *ca_file, *cert_file; /* for messages */
    tn_tx_recv_fn fn;
    void *arg;
    nng_aio *aio; /* the one receive in flight (receivers) */

    pthread_mutex_t mu; /* closed, eps, bound, gen's handles, closing, abandoned */
    bool closed;
    endpoint eps[MAX_ENDPOINTS];
    int neps;
    char *bound;

    atomic_uint_fast64_t connects, disconnects, refused, handshake_errors, oversized, sent,
        received, renewals, rate_dropped, peer_refused, redials;
    pipeinfo *pipes; /* receiver: live connections, under mu */
    uint32_t npipes, pipes_cap;
    int64_t rate_logged_ns; /* the last "rate bound" line, under mu */
    uint64_t rate_logged_n; /* rate_dropped at that line */
    struct nngtx *mon_next; /* in the monitor's list, under mon.mu */
    bool monitored;

    /* teardown: nng_close runs on helper threads (see tx_free) */
    pthread_cond_t closed_cv;
    int closing; /* sockets whose nng_close has not returned yet */
    bool abandoned;
} nngtx;

/* ---- TLS failure monitor ----------------------------------------------------------------
 * nng 1.5 has no callback for a failed handshake (no pipe is made) and no log: the only
 * trace is the "auth" counter of the listener or dialer in nng's statistics. One thread per
 * process polls those counters for every TLS endpoint and logs each increase. */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nngtx *head;
    bool running;
    uint64_t gen; /* a thread runs while the generation it was started with is current */
    pthread_t thread;
} mon = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, false, 0, 0};

static uint64_t stat_counter(nng_stat *scope, const char *name)
{
    nng_stat *s = scope ? nng_stat_find(scope, name) : NULL;
    return s ? nng_stat_value(s) : 0;
}

/* nanomsg/nng#1518 (see mon_watch): nng's "other" counter of an ipc listener counts the
 * failed handshake of a stuck listener, but also the end of every connection it handed
 * over (the read fails with NNG_ECONNSHUT), the probe's own among them: what the ends
 * counted in pipe_cb do not explain is suspect. An end is counted there just after nng
 * counts it, so a rise is believed only when two polls in a row see it; without that a
 * probe's hang-up would call for the next probe, four times a second for ever. A fall
 * (ends that counted elsewhere: a reset) lowers the settled level. t->mu held. */
static void note_other(endpoint *e, uint64_t other)
{
    int64_t u = (int64_t)(other - e->gone);
    if (u <= e->unexplained) {
        e->unexplained = u;
        e->rise_seen = false;
    } else if (e->rise_seen) {
        e->unexplained = u;
        e->rise_seen = false;
        e->suspect = true;
    } else {
        e->rise_seen = true;
    }
}

/* Read the counters of every monitored endpoint; mon.mu held. */
static void mon_poll(void)
{
    nng_stat *all;
    if (!mon.head || nng_stats_get(&all) != 0)
        return;
    for (nngtx *t = mon.head; t; t = t->mon_next) {
        pthread_mutex_lock(&t->mu);
        for (int i = 0; t->gen && i < t->neps; i++) {
            endpoint *e = &t->eps[i];
            nng_stat *s = e->listener ? nng_stat_find_listener(all, t->gen->l[i]) :
                                        nng_stat_find_dialer(all, t->gen->d[i]);
            if (e->listener && e->ipc)
                note_other(e, stat_counter(s, "other"));
            uint64_t v = stat_counter(s, "auth");
            if (v > e->auth_seen) {
                atomic_fetch_add(&t->handshake_errors, v - e->auth_seen);
                tn_warn(COMP,
                        "msg=\"tls handshake failed\" tx=%s side=%s url=%s failures=%" PRIu64
                        " total=%" PRIu64 " detail=\"peer and reason not reported by nng 1.5\"",
                        t->name, e->listener ? "listener" : "dialer", e->url, v - e->auth_seen,
                        v);
                e->auth_seen = v;
            }
        }
        pthread_mutex_unlock(&t->mu);
    }
    nng_stats_free(all);
}

static void mon_watch(void);

static void *mon_main(void *arg)
{
    uint64_t gen = (uint64_t)(uintptr_t)arg;
    pthread_mutex_lock(&mon.mu);
    while (mon.gen == gen) {
        mon_poll();
        mon_watch();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += MONITOR_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&mon.cv, &mon.mu, &ts);
    }
    pthread_mutex_unlock(&mon.mu);
    return NULL;
}

static void mon_add(nngtx *t)
{
    pthread_mutex_lock(&mon.mu);
    if (!t->monitored) {
        t->mon_next = mon.head;
        mon.head = t;
        t->monitored = true;
        if (!mon.running &&
            pthread_create(&mon.thread, NULL, mon_main, (void *)(uintptr_t)mon.gen) == 0)
            mon.running = true;
    }
    pthread_mutex_unlock(&mon.mu);
}

/* Unlink t; the last one out stops the thread and waits for it. */
static void mon_remove(nngtx *t)
{
    pthread_mutex_lock(&mon.mu);
    if (!t->monitored) {
        pthread_mutex_unlock(&mon.mu);
        return;
    }
    mon_poll(); /* a failure counted just before free is still logged */
    for (nngtx **p = &mon.head; *p; p = &(*p)->mon_next) {
        if (*p == t) {
            *p = t->mon_next;
            break;
        }
    }
    t->monitored = false;
    if (mon.head || !mon.running) {
        pthread_mutex_unlock(&mon.mu);
        return;
    }
    pthread_t th = mon.thread;
    mon.gen++;
    mon.running = false;
    pthread_cond_broadcast(&mon.cv);
    pthread_mutex_unlock(&mon.mu);
    pthread_join(th, NULL);
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* The receive bound nng enforces: twice ours, so that a frame over our bound is read and
 * logged with its size and the limit (nng closes a connection over its own bound without a
 * word); memory stays bounded by twice the largest frame. */
static size_t nng_bound(size_t max_msg)
{
    return max_msg > SIZE_MAX / 2 ? max_msg : 2 * max_msg;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

tn_err tn_tls_read_pem(const char *what, const char *path, char **out, tn_errmsg *msg)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return tn_errmsg_set(msg, TN_ERR_NOENT, "tls %s %s: cannot open: %m", what, path);
    char *buf = malloc(PEM_MAX + 1);
    if (!buf) {
        fclose(f);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "tls %s %s: out of memory", what, path);
    }
    size_t n = fread(buf, 1, PEM_MAX + 1, f);
    bool err = ferror(f);
    fclose(f);
    if (err || n == 0 || n > PEM_MAX) {
        free(buf);
        return tn_errmsg_set(msg, TN_ERR_INVAL, "tls %s %s: %s", what, path,
                             err ? "read error" :
                             n   ? "larger than 1 MiB" :
                                   "empty file");
    }
    buf[n] = '\0';
    *out = buf;
    return TN_OK;
}

void tn_tls_free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* The host of "scheme://host:port/..." into buf; "" when there is none. */
static void url_host(const char *url, char *buf, size_t cap)
{
    const char *h = strstr(url, "://");
    buf[0] = '\0';
    if (!h)
        return;
    h += 3;
    const char *end;
    if (*h == '[') { /* [v6]:port */
        h++;
        end = strchr(h, ']');
    } else {
        end = h + strcspn(h, ":/");
    }
    if (!end || (size_t)(end - h) >= cap)
        return;
    memcpy(buf, h, (size_t)(end - h));
    buf[end - h] = '\0';
}

static bool is_ip_literal(const char *host)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

/* ---- peer identity -----------------------------------------------------------------------
 * nng 1.5.2 tells whether a TLS peer was verified (NNG_OPT_TLS_VERIFIED) but not who it is
 * (NNG_OPT_TLS_PEER_CN came in a later nng). Its TLS engine is pluggable, though: the
 * engine nng registered is wrapped so that its "verified" operation, which nng calls on the
 * thread that asks for NNG_OPT_TLS_VERIFIED, also leaves the peer certificate's subject CN
 * and OU in a thread-local slot. pipe_cb asks at ADD_PRE and files them with the pipe. The
 * wrapper reads mbedTLS's context at the place nng 1.5.2's engine keeps it; it is installed
 * only when the engine is that one ("mbed", nng 1.5.2), otherwise TLS peers carry no name. */

struct mbed_conn_head { /* nng 1.5.2 src/supplemental/tls/mbedtls/tls.c, nng_tls_engine_conn */
    void *tls;
    mbedtls_ssl_context ctx;
};

struct tls_config_head { /* nng 1.5.2 src/supplemental/tls/tls_common.c, nng_tls_config */
    nng_tls_engine_config_ops ops;
    const nng_tls_engine *engine;
};

static struct {
    pthread_once_t once;
    bool ok;
    nng_tls_engine engine;
    nng_tls_engine_conn_ops conn_ops;
    bool (*verified)(nng_tls_engine_conn *);
} wrap = {PTHREAD_ONCE_INIT, false, {0}, {0}, NULL};

static _Thread_local struct {
    bool set;
    char cn[NAME_MAX_LEN + 1], ou[ROLE_MAX_LEN + 1];
} tl_peer;

/* The first value of attribute oid in a subject, NUL-terminated into buf ("" if none). */
static void subject_attr(const mbedtls_x509_name *n, const char *oid, size_t oidlen, char *buf,
                         size_t cap)
{
    buf[0] = '\0';
    for (; n; n = n->next) {
        if (n->oid.len == oidlen && memcmp(n->oid.p, oid, oidlen) == 0) {
            size_t len = n->val.len < cap - 1 ? n->val.len : cap - 1;
            memcpy(buf, n->val.p, len);
            buf[len] = '\0';
            return;
        }
    }
}

static bool wrapped_verified(nng_tls_engine_conn *ec)
{
    bool v = wrap.verified(ec);
    tl_peer.set = false;
    const mbedtls_x509_crt *c =
        v ? mbedtls_ssl_get_peer_cert(&((struct mbed_conn_head *)(void *)ec)->ctx) : NULL;
    if (c) {
        subject_attr(&c->subject, MBEDTLS_OID_AT_CN, MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN),
                     tl_peer.cn, sizeof(tl_peer.cn));
        subject_attr(&c->subject, MBEDTLS_OID_AT_ORG_UNIT,
                     MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_ORG_UNIT), tl_peer.ou, sizeof(tl_peer.ou));
        tl_peer.set = true;
    }
    return v;
}

static void install_engine(void)
{
    nng_tls_config *cfg;
    if (strcmp(nng_version(), "1.5.2") != 0 || nng_tls_config_alloc(&cfg, NNG_TLS_MODE_CLIENT))
        return;
    const nng_tls_engine *orig = ((const struct tls_config_head *)(const void *)cfg)->engine;
    if (orig && orig->version == NNG_TLS_ENGINE_VERSION && orig->name &&
        strcmp(orig->name, "mbed") == 0 && orig->conn_ops && orig->conn_ops->verified &&
        orig->conn_ops->size >= sizeof(struct mbed_conn_head)) {
        wrap.engine = *orig;
        wrap.conn_ops = *orig->conn_ops;
        wrap.verified = orig->conn_ops->verified;
        wrap.conn_ops.verified = wrapped_verified;
        wrap.engine.conn_ops = &wrap.conn_ops;
        wrap.ok = nng_tls_engine_register(&wrap.engine) == 0;
    }
    nng_tls_config_free(cfg);
    if (!wrap.ok)
        tn_warn(COMP,
                "msg=\"tls peer names unavailable: TLS peers are verified but unnamed\" "
                "nng=%s",
                nng_version());
}

bool tn_tx_tls_names_available(void)
{
    pthread_once(&wrap.once, install_engine);
    return wrap.ok;
}

tn_err tn_tx_tls_cert_subject(const char *cert_file, char *cn, size_t cncap, char *ou,
                              size_t oucap, tn_errmsg *msg)
{
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int rv = mbedtls_x509_crt_parse_file(&crt, cert_file);
    if (rv != 0) {
        mbedtls_x509_crt_free(&crt);
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "tls certificate %s: cannot read it (mbedTLS error -0x%04x)",
                             cert_file, (unsigned)-rv);
    }
    subject_attr(&crt.subject, MBEDTLS_OID_AT_CN, MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_CN), cn,
                 cncap);
    subject_attr(&crt.subject, MBEDTLS_OID_AT_ORG_UNIT,
                 MBEDTLS_OID_SIZE(MBEDTLS_OID_AT_ORG_UNIT), ou, oucap);
    mbedtls_x509_crt_free(&crt);
    return TN_OK;
}

/* Who is at the other end of p: filled at ADD_PRE. Returns false to refuse the pipe (an
 * ipc peer of another uid), with why. */
static bool peer_identify(nng_pipe p, pipeinfo *pi, const char **why)
{
    *pi = (pipeinfo){.id = nng_pipe_id(p), .uid = -1};
    bool verified = false;
    tl_peer.set = false;
    if (nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified) == 0) {
        pi->auth = verified;
        if (verified && tl_peer.set) {
            snprintf(pi->name, sizeof(pi->name), "%s", tl_peer.cn);
            snprintf(pi->role, sizeof(pi->role), "%s", tl_peer.ou);
        }
        return true;
    }
    uint64_t uid; /* nng 1.5.2 hands it out as a u64 */
    if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &uid) == 0) {
        pi->uid = (int64_t)uid;
        pi->auth = uid == (uint64_t)geteuid() || uid == 0;
        *why = "ipc peer of another user (same uid or root only)";
        return pi->auth;
    }
    nng_sockaddr sa;
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0 && sa.s_family == NNG_AF_INPROC)
        pi->auth = true;
    else if (nng_pipe_get_addr(p, NNG_OPT_LOCADDR, &sa) == 0 && sa.s_family == NNG_AF_INPROC)
        pi->auth = true;
    return true;
}

/* File pi with t's connections; false when there are max_conns already. t->mu held. */
static bool pipes_add(nngtx *t, const pipeinfo *pi)
{
    uint32_t max = t->o.max_conns ? t->o.max_conns : MAX_CONNS;
    if (t->npipes >= max)
        return false;
    if (t->npipes == t->pipes_cap) {
        uint32_t cap = t->pipes_cap ? t->pipes_cap * 2 : 8;
        pipeinfo *n = realloc(t->pipes, cap * sizeof(*n));
        if (!n)
            return false;
        t->pipes = n;
        t->pipes_cap = cap;
    }
    t->pipes[t->npipes] = *pi;
    t->pipes[t->npipes].tok_msgs = 2.0 * t->o.rate_msgs;
    t->pipes[t->npipes].tok_bytes = 2.0 * (double)t->o.rate_bytes;
    t->pipes[t->npipes].refill_ns = tn_mono_ns();
    t->npipes++;
    return true;
}

static pipeinfo *pipes_find(nngtx *t, uint32_t id)
{
    for (uint32_t i = 0; i < t->npipes; i++)
        if (t->pipes[i].id == id)
            return &t->pipes[i];
    return NULL;
}

static void pipes_del(nngtx *t, uint32_t id)
{
    pipeinfo *pi = pipes_find(t, id);
    if (pi)
        *pi = t->pipes[--t->npipes];
}

/* A connection that listener of g handed over ended: one of the "other" counts it
 * explains (note_other). t->mu held. */
static void count_gone(nngtx *t, sockgen *g, nng_pipe p)
{
    int id = nng_listener_id(nng_pipe_listener(p));
    for (int i = 0; id > 0 && i < t->neps; i++)
        if (t->eps[i].listener && nng_listener_id(g->l[i]) == id)
            t->eps[i].gone++;
}

/* Take one message of len bytes from pi's bucket; false: over the bound. t->mu held. */
static bool rate_take(nngtx *t, pipeinfo *pi, size_t len)
{
    int64_t now = tn_mono_ns();
    double dt = (double)(now - pi->refill_ns) / 1e9;
    pi->refill_ns = now;
    if (t->o.rate_msgs) {
        pi->tok_msgs += dt * t->o.rate_msgs;
        if (pi->tok_msgs > 2.0 * t->o.rate_msgs)
            pi->tok_msgs = 2.0 * t->o.rate_msgs;
    }
    if (t->o.rate_bytes) {
        double cap = 2.0 * (double)t->o.rate_bytes;
        if (cap < (double)t->o.max_msg)
            cap = (double)t->o.max_msg; /* one largest message always fits a full bucket */
        pi->tok_bytes += dt * (double)t->o.rate_bytes;
        if (pi->tok_bytes > cap)
            pi->tok_bytes = cap;
    }
    if ((t->o.rate_msgs && pi->tok_msgs < 1.0) ||
        (t->o.rate_bytes && pi->tok_bytes < (double)len))
        return false;
    pi->tok_msgs -= 1.0;
    pi->tok_bytes -= (double)len;
    return true;
}

/* A TLS configuration for one listener (server) or dialer (client). Mutual: both modes
 * require and verify the peer's certificate against the CA. */
static tn_err tls_config(nngtx *t, bool server, const char *url, nng_tls_config **out,
                         tn_errmsg *msg)
{
    nng_tls_config *cfg;
    int rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT);
    if (rv)
        return tn_errmsg_set(msg, from_nng(rv), "%s: tls: %s", t->name, nng_strerror(rv));
    const char *step = "CA";
    if ((rv = nng_tls_config_ca_chain(cfg, t->ca_pem, NULL)) != 0)
        goto fail;
    step = "certificate and key";
    if (t->cert_pem && (rv = nng_tls_config_own_cert(cfg, t->cert_pem, t->key_pem, NULL)) != 0)
        goto fail;
    step = "auth mode";
    if ((rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) != 0)
        goto fail;
    if (!server) {
        char host[256];
        const char *sn = t->server_name;
        url_host(url, host, sizeof(host));
        if (!sn && host[0] && !is_ip_literal(host))
            sn = host;
        step = "server name";
        if (sn && (rv = nng_tls_config_server_name(cfg, sn)) != 0)
            goto fail;
    }
    *out = cfg;
    return TN_OK;
fail:
    nng_tls_config_free(cfg);
    return tn_errmsg_set(msg, from_nng(rv), "%s: tls %s (CA %s, certificate %s): %s", t->name,
                         step, t->ca_file, t->cert_file ? t->cert_file : "none",
                         nng_strerror(rv));
}

/* "1.2.3.4:80", "[::1]:80", "/path/sock", "inproc-name" */
static void fmt_addr(const nng_sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    switch (sa->s_family) {
    case NNG_AF_INET:
        inet_ntop(AF_INET, &sa->s_in.sa_addr, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, ntohs(sa->s_in.sa_port));
        break;
    case NNG_AF_INET6:
        inet_ntop(AF_INET6, sa->s_in6.sa_addr, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, ntohs(sa->s_in6.sa_port));
        break;
    case NNG_AF_IPC: snprintf(buf, cap, "%s", sa->s_ipc.sa_path); break;
    case NNG_AF_INPROC: snprintf(buf, cap, "%s", sa->s_inproc.sa_name); break;
    default: snprintf(buf, cap, "?");
    }
}

/* The URL of the listener or dialer of g a pipe came from; "?" if not found. t->mu held. */
static const char *pipe_url(sockgen *g, nng_pipe p)
{
    nngtx *t = g->t;
    nng_listener l = nng_pipe_listener(p);
    nng_dialer d = nng_pipe_dialer(p);
    for (int i = 0; i < t->neps; i++) {
        endpoint *e = &t->eps[i];
        if ((e->listener && l.id && g->l[i].id == l.id) ||
            (!e->listener && d.id && g->d[i].id == d.id))
            return e->url;
    }
    return "?";
}

/* ADD_PRE: who the peer is; an ipc peer of another user is refused (both ends), and a
 * receiver files the connection (refused past max_conns). */
static void pipe_admit(nngtx *t, nng_pipe p, const char *url, const char *peer)
{
    pipeinfo pi;
    const char *why = NULL;
    bool ok = peer_identify(p, &pi, &why);
    if (ok && !t->o.sender) {
        pthread_mutex_lock(&t->mu);
        ok = pipes_add(t, &pi);
        pthread_mutex_unlock(&t->mu);
        why = "too many connections";
    }
    if (ok) {
        if (pi.name[0]) {
            char ename[4 * NAME_MAX_LEN + 8], erole[4 * ROLE_MAX_LEN + 8];
            tn_log_escape(pi.name, ename, sizeof(ename));
            tn_log_escape(pi.role, erole, sizeof(erole));
            tn_info(COMP, "msg=\"peer authenticated\" tx=%s url=%s peer=%s pipe=%u cn=%s ou=%s",
                    t->name, url, peer, pi.id, ename, erole);
        }
        return;
    }
    atomic_fetch_add(&t->peer_refused, 1);
    tn_warn(COMP, "msg=\"peer refused\" tx=%s url=%s peer=%s pipe=%u uid=%lld why=\"%s\"",
            t->name, url, peer, pi.id, (long long)pi.uid, why);
    nng_pipe_close(p);
}

/* Connection events, on nng's threads. ADD_PRE may still refuse the pipe. */
static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    sockgen *g = arg;
    nngtx *t = g->t;
    if (t->o.sender && ev == NNG_PIPE_EV_ADD_PRE) {
        pthread_mutex_lock(&g->mu);
        bool spent = g->spent;
        pthread_mutex_unlock(&g->mu);
        if (spent) { /* its dialer is closed: only a connection already under way */
            nng_pipe_close(p);
            return;
        }
    } else if (t->o.sender && ev == NNG_PIPE_EV_REM_POST) {
        pthread_mutex_lock(&g->mu); /* waits for a send under way on this socket */
        g->spent = true;
        pthread_mutex_unlock(&g->mu);
        /* No redial from a spent socket: nng would start it after this callback. A
         * connection made only to be refused is a client hanging up early, which wedges
         * an nng 1.5.2 ipc listener on the other side (nanomsg/nng#1518). */
        nng_dialer_close(nng_pipe_dialer(p));
    }
    char peer[300] = "?", extra[64] = "", url[512];
    nng_sockaddr sa;
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0)
        fmt_addr(&sa, peer, sizeof(peer));
    int pid;
    if (nng_pipe_get_int(p, NNG_OPT_IPC_PEER_PID, &pid) == 0)
        snprintf(extra, sizeof(extra), " peer_pid=%d", pid);
    bool verified = false;
    bool is_tls = nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &verified) == 0;
    pthread_mutex_lock(&t->mu);
    snprintf(url, sizeof(url), "%s", pipe_url(g, p));
    pthread_mutex_unlock(&t->mu);
    switch (ev) {
    case NNG_PIPE_EV_ADD_PRE:
        /* With auth mode REQUIRED mbedTLS has already refused an unverified peer; this is
         * a second lock on the door, should a configuration ever say otherwise. */
        if (is_tls && !verified) {
            atomic_fetch_add(&t->refused, 1);
            tn_warn(COMP, "msg=\"peer refused: certificate not verified\" tx=%s url=%s peer=%s",
                    t->name, url, peer);
            nng_pipe_close(p);
            break;
        }
        pipe_admit(t, p, url, peer);
        break;
    case NNG_PIPE_EV_ADD_POST:
        atomic_store(&g->up, true);
        atomic_fetch_add(&t->connects, 1);
        tn_info(COMP, "msg=connected tx=%s url=%s peer=%s pipe=%u%s%s", t->name, url, peer,
                nng_pipe_id(p), extra, is_tls ? " tls_verified=true" : "");
        break;
    case NNG_PIPE_EV_REM_POST:
        pthread_mutex_lock(&t->mu);
        pipes_del(t, nng_pipe_id(p));
        count_gone(t, g, p);
        pthread_mutex_unlock(&t->mu);
        atomic_fetch_add(&t->disconnects, 1);
        tn_info(COMP, "msg=disconnected tx=%s url=%s peer=%s pipe=%u", t->name, url, peer,
                nng_pipe_id(p));
        break;
    default: break;
    }
}

/* ---- receive ---------------------------------------------------------------------------- */

/* Log the rate bound's drops at most once a second; t->mu held. */
static void rate_log(nngtx *t, uint32_t pipe)
{
    int64_t now = tn_mono_ns();
    uint64_t n = atomic_load(&t->rate_dropped);
    if (t->rate_logged_ns && now - t->rate_logged_ns < 1000000000LL)
        return;
    tn_warn(COMP,
            "msg=\"messages over the per-connection rate bound dropped\" tx=%s pipe=%u "
            "dropped=%" PRIu64 " total=%" PRIu64 " max_msgs_per_s=%u max_bytes_per_s=%" PRIu64,
            t->name, pipe, n - t->rate_logged_n, n, t->o.rate_msgs, t->o.rate_bytes);
    t->rate_logged_ns = now;
    t->rate_logged_n = n;
}

/* Who sent a message on pipe p, into *who (name and role copied to the buffers given);
 * false when the message is over the pipe's rate bound (dropped). */
static bool peer_of(nngtx *t, nng_pipe p, size_t len, tn_peer *who, char *name, char *role)
{
    bool ok = true;
    pthread_mutex_lock(&t->mu);
    pipeinfo *pi = pipes_find(t, nng_pipe_id(p));
    if (pi) {
        who->authenticated = pi->auth;
        who->uid = pi->uid;
        who->pipe = pi->id;
        memcpy(name, pi->name, sizeof(pi->name));
        memcpy(role, pi->role, sizeof(pi->role));
        who->name = name;
        who->role = role;
        if (!rate_take(t, pi, len)) {
            atomic_fetch_add(&t->rate_dropped, 1);
            rate_log(t, pi->id);
            ok = false;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

static void recv_cb(void *arg)
{
    nngtx *t = arg;
    int rv = nng_aio_result(t->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return; /* closed: no new receive */
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(t->aio);
        size_t len = nng_msg_len(m);
        pthread_mutex_lock(&t->mu);
        bool deliver = !t->closed; /* the decision to start a callback, ordered with close */
        pthread_mutex_unlock(&t->mu);
        if (deliver && len > t->o.max_msg) {
            /* the bound is ours: nng's (nng_bound) is twice it, so that a frame over it
             * reaches here and is logged with its size; inproc has no nng bound at all */
            atomic_fetch_add(&t->oversized, 1);
            tn_warn(COMP, "msg=\"oversized message dropped\" tx=%s bytes=%zu max=%zu", t->name,
                    len, t->o.max_msg);
            deliver = false;
        }
        tn_peer who = {.name = "", .role = "", .uid = -1};
        char name[NAME_MAX_LEN + 1] = "", role[ROLE_MAX_LEN + 1] = "";
        if (deliver)
            deliver = peer_of(t, nng_msg_get_pipe(m), len, &who, name, role);
        if (deliver) {
            atomic_fetch_add(&t->received, 1);
            t->fn(t->arg, nng_msg_body(m), len, &who);
        }
        nng_msg_free(m);
    } else {
        tn_warn(COMP, "msg=\"receive failed\" tx=%s err=\"%s\"", t->name, nng_strerror(rv));
    }
    pthread_mutex_lock(&t->mu);
    bool closed = t->closed;
    pthread_mutex_unlock(&t->mu);
    if (!closed)
        nng_recv_aio(t->gen->sock, t->aio); /* a receiver's socket is never replaced */
}

/* ---- operations ------------------------------------------------------------------------- */

static tn_err check_url(nngtx *t, const char *url, const tn_tx_scheme **out, tn_errmsg *msg)
{
    const tn_tx_scheme *sc = url ? tn_tx_scheme_find(url) : NULL;
    if (!sc)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: %s: unknown URL scheme; use tcp://, ipc://, inproc:// or "
                             "tls+tcp://",
                             t->name, url ? url : "(null)");
    if (sc->tls && !t->tls)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: %s: tls+tcp needs a TLS configuration (CA, certificate, key)",
                             t->name, url);
    if (!sc->tls && sc->network && t->tls)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: %s: TLS is configured but the URL is plain tcp; use "
                             "tls+tcp://",
                             t->name, url);
    *out = sc;
    return TN_OK;
}

/* Reserve slot *idx for a listener or dialer about to start on the socket in use: pipes
 * may come before start returns, and their logs name the URL. A sender has one socket per
 * connection (see sockgen), so it dials one URL and listens at none.
 * TN_ERR_CLOSED, TN_ERR_TOOBIG, TN_ERR_UNSUPPORTED, TN_ERR_NOMEM. */
static tn_err add_endpoint(nngtx *t, bool listener, nng_listener l, nng_dialer d,
                           const char *url, int *idx, tn_errmsg *msg)
{
    tn_err e = TN_OK;
    const char *why = NULL;
    char *u = strdup(url);
    pthread_mutex_lock(&t->mu);
    if (t->closed || !t->gen) {
        e = TN_ERR_CLOSED;
    } else if (t->o.sender && listener) {
        e = TN_ERR_UNSUPPORTED;
        why = "a sender dials; listen with the receiver";
    } else if (t->o.sender && t->neps > 0) {
        e = TN_ERR_UNSUPPORTED;
        why = "a sender dials one URL; use one sender per peer";
    } else if (t->neps == MAX_ENDPOINTS) {
        e = TN_ERR_TOOBIG;
        why = "too many listeners and dialers";
    } else if (!u) {
        e = TN_ERR_NOMEM;
    } else {
        *idx = t->neps;
        t->gen->l[*idx] = l;
        t->gen->d[*idx] = d;
        t->eps[t->neps++] = (endpoint){.listener = listener, .url = u};
    }
    pthread_mutex_unlock(&t->mu);
    if (e) {
        free(u);
        return tn_errmsg_set(msg, e, "%s: %s %s: %s", t->name, listener ? "listen" : "dial",
                             url, why ? why : tn_strerror(e));
    }
    return TN_OK;
}

/* Forget the last endpoint added (its start failed). */
static void drop_endpoint(nngtx *t)
{
    pthread_mutex_lock(&t->mu);
    free(t->eps[--t->neps].url);
    pthread_mutex_unlock(&t->mu);
}

/* url with the port nng chose for ":0" */
static char *resolve_bound(nng_listener l, const char *url)
{
    int port;
    size_t n = strlen(url);
    if (n < 2 || strcmp(url + n - 2, ":0") != 0 ||
        nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
        return strdup(url);
    char *b = malloc(n + 8);
    if (b)
        snprintf(b, n + 8, "%.*s:%d", (int)(n - 2), url, port);
    return b;
}

/* An ipc socket only its owner can open (0600; the peer's uid is checked too, pipe_admit),
 * in a folder only its owner can enter: one made 0700 here when missing; an existing one
 * that others may write to is refused. */
static tn_err ipc_prepare(nngtx *t, nng_listener l, const char *path, tn_errmsg *msg)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        struct stat st;
        if (stat(dir, &st) != 0 && mkdir(dir, 0700) != 0)
            return tn_errmsg_set(msg, TN_ERR_IO,
                                 "%s: listen ipc://%s: cannot make folder %s: %m", t->name,
                                 path, dir);
        if (stat(dir, &st) == 0 && (st.st_mode & 0022) && !(st.st_mode & S_ISVTX))
            return tn_errmsg_set(msg, TN_ERR_PERM,
                                 "%s: listen ipc://%s: folder %s is writable by other users "
                                 "(mode %03o): use a folder only you can write to "
                                 "(chmod 0700)",
                                 t->name, path, dir, (unsigned)(st.st_mode & 0777));
    }
    int rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
    if (rv && rv != NNG_ENOTSUP)
        return tn_errmsg_set(msg, from_nng(rv), "%s: listen ipc://%s: permissions: %s", t->name,
                             path, nng_strerror(rv));
    return TN_OK;
}

/* A listener for url on the receiver's socket with the endpoint's options (TLS, the
 * receive bound, an ipc socket file's mode and folder), not started yet. */
static tn_err make_listener(nngtx *t, const char *url, bool tls, nng_listener *out,
                            tn_errmsg *msg)
{
    nng_tls_config *cfg;
    nng_listener l;
    tn_err e;
    int rv = nng_listener_create(&l, t->gen->sock, url);
    if (rv)
        return tn_errmsg_set(msg, from_nng(rv), "%s: listen %s: %s", t->name, url,
                             nng_strerror(rv));
    if (tls) {
        if ((e = tls_config(t, true, url, &cfg, msg)) != TN_OK)
            goto fail;
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg); /* the listener holds its own reference */
        if (rv)
            goto fail_nng;
    }
    if ((rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, nng_bound(t->o.max_msg))) != 0)
        goto fail_nng;
    if (strncmp(url, "ipc://", 6) == 0 && (e = ipc_prepare(t, l, url + 6, msg)) != TN_OK)
        goto fail;
    *out = l;
    return TN_OK;
fail_nng:
    e = tn_errmsg_set(msg, from_nng(rv), "%s: listen %s: %s", t->name, url, nng_strerror(rv));
fail:
    nng_listener_close(l);
    return e;
}

static tn_err tx_listen(void *self, const char *url, tn_errmsg *msg)
{
    nngtx *t = self;
    const tn_tx_scheme *sc;
    nng_listener l;
    int idx, rv;
    tn_err e = check_url(t, url, &sc, msg);
    if (e)
        return e;
    if (t->o.sender) /* before any nng call: the reason, not nng's */
        return add_endpoint(t, true, (nng_listener)NNG_LISTENER_INITIALIZER,
                            (nng_dialer)NNG_DIALER_INITIALIZER, url, &idx, msg);
    if (sc->tls && !t->cert_pem)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: %s: a TLS listener needs a certificate "
                             "and key",
                             t->name, url);
    if ((e = make_listener(t, url, sc->tls, &l, msg)) != TN_OK)
        return e;
    if ((e = add_endpoint(t, true, l, (nng_dialer)NNG_DIALER_INITIALIZER, url, &idx, msg)))
        goto fail;
    if ((rv = nng_listener_start(l, 0)) != 0) {
        drop_endpoint(t);
        goto fail_nng;
    }
    char *bound = resolve_bound(l, url);
    char *ep_url = bound ? strdup(bound) : NULL;
    pthread_mutex_lock(&t->mu);
    if (bound) {
        free(t->bound);
        t->bound = bound;
    }
    if (ep_url) { /* logs name the port, not ":0" */
        free(t->eps[idx].url);
        t->eps[idx].url = ep_url;
    }
    bool ipc = strncmp(url, "ipc://", 6) == 0 && tn_ipc_file_note(url + 6, &t->eps[idx].file);
    t->eps[idx].ipc = ipc;
    pthread_mutex_unlock(&t->mu);
    if (sc->tls || ipc)
        mon_add(t);
    tn_info(COMP, "msg=listening tx=%s role=receiver url=%s", t->name, bound ? bound : url);
    return TN_OK;
fail_nng:
    e = tn_errmsg_set(msg, from_nng(rv), "%s: listen %s: %s", t->name, url, nng_strerror(rv));
fail:
    nng_listener_close(l);
    return e;
}

static uint64_t rx_connects(void *arg)
{
    return atomic_load(&((nngtx *)arg)->connects);
}

static bool rx_closed(void *arg)
{
    nngtx *t = arg;
    pthread_mutex_lock(&t->mu);
    bool closed = t->closed;
    pthread_mutex_unlock(&t->mu);
    return closed;
}

/* Close receiver t's stuck ipc listener idx (if its path is still the file it made) and
 * listen again on the same socket; mon.mu held, t->mu not. */
static void relisten(nngtx *t, int idx)
{
    pthread_mutex_lock(&t->mu);
    endpoint *e = &t->eps[idx];
    char *url = strdup(e->url);
    nng_listener old = t->gen->l[idx];
    bool was_open = !e->relisten;
    tn_ipc_file file = e->file;
    pthread_mutex_unlock(&t->mu);
    if (!url)
        return;
    const char *path = url + 6;
    struct stat st;
    if (was_open ? !tn_ipc_file_is(path, &file) : (stat(path, &st) == 0 || errno != ENOENT)) {
        /* removed, or taken by another process: theirs to keep, never unlinked here */
        pthread_mutex_lock(&t->mu);
        bool told = e->lost_told;
        e->lost_told = true;
        pthread_mutex_unlock(&t->mu);
        if (!told)
            tn_warn(COMP,
                    "msg=\"socket file removed or replaced; not reachable there\" tx=%s "
                    "url=%s",
                    t->name, url);
        free(url);
        return;
    }
    /* nng unlinks the path as it closes the listener and closes the connections it made;
     * their senders' sockets are spent and dial again */
    if (was_open)
        nng_listener_close(old);
    tn_errmsg em = {0};
    nng_listener l;
    int rv = 0;
    tn_err err = make_listener(t, url, false, &l, &em);
    if (err == TN_OK && (rv = nng_listener_start(l, 0)) != 0) {
        nng_listener_close(l);
        err = tn_errmsg_set(&em, from_nng(rv), "%s: listen %s: %s", t->name, url,
                            nng_strerror(rv));
    }
    pthread_mutex_lock(&t->mu);
    e->relisten = err != TN_OK;
    if (err == TN_OK) {
        t->gen->l[idx] = l;
        /* the new listener's counters start at 0; the old one's ends are not counted */
        e->gone = 0;
        e->unexplained = 0;
        e->rise_seen = false;
        (void)tn_ipc_file_note(path, &e->file);
    }
    pthread_mutex_unlock(&t->mu);
    if (err == TN_OK)
        tn_warn(COMP, "msg=\"ipc listener stopped accepting; listening again\" tx=%s url=%s",
                t->name, url);
    else if (was_open)
        tn_warn(COMP,
                "msg=\"ipc listener stopped accepting; cannot listen again, retrying\" tx=%s "
                "url=%s err=\"%s\"",
                t->name, url, em.text);
    free(url);
}

/* nanomsg/nng#1518 on a receiver's ipc listeners (see ipcprobe.h). A listener that stops
 * this way counts the failed handshake in its "other" counter, which mon_poll reads; that
 * also counts harmless failures (a peer hanging up a little later, a bad header), so a
 * listener whose counter moved is probed: we dial it as a sender would, and when nng does
 * not hand that connection to the socket within PROBE_WAIT_MS the listener is replaced.
 * Without nng statistics nothing is probed. mon.mu held. */
static void mon_watch(void)
{
    for (nngtx *t = mon.head; t; t = t->mon_next) {
        for (int i = 0;; i++) {
            pthread_mutex_lock(&t->mu);
            bool done = i >= t->neps || t->closed || !t->gen;
            bool probe = !done && t->eps[i].ipc && t->eps[i].suspect && !t->eps[i].relisten;
            bool retry = !done && t->eps[i].ipc && t->eps[i].relisten;
            char *url = probe ? strdup(t->eps[i].url) : NULL;
            if (!done)
                t->eps[i].suspect = false;
            pthread_mutex_unlock(&t->mu);
            if (done)
                break;
            /* a pull socket's peer is a push0 (0x50) */
            if ((url &&
                 !tn_ipc_probe(url + 6, 0x50, rx_connects, rx_closed, t, PROBE_WAIT_MS) &&
                 !rx_closed(t)) ||
                retry)
                relisten(t, i);
            free(url);
        }
    }
}

/* Dial url, endpoint idx, from g's socket: a dialer with the endpoint's options, started in
 * the background. g->d[idx] is set (under t->mu) before the start, for the logs. */
static tn_err start_dialer(nngtx *t, sockgen *g, int idx, const char *url, bool tls,
                           tn_errmsg *msg)
{
    nng_tls_config *cfg;
    nng_dialer d;
    tn_err e;
    int rv = nng_dialer_create(&d, g->sock, url);
    if (rv)
        return tn_errmsg_set(msg, from_nng(rv), "%s: dial %s: %s", t->name, url,
                             nng_strerror(rv));
    if (tls) {
        if ((e = tls_config(t, false, url, &cfg, msg)) != TN_OK)
            goto fail;
        rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg); /* the dialer holds its own reference */
        if (rv)
            goto fail_nng;
    }
    if ((rv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, nng_bound(t->o.max_msg))) != 0 ||
        (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, t->o.reconnect_min_ms)) != 0 ||
        (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, t->o.reconnect_max_ms)) != 0)
        goto fail_nng;
    pthread_mutex_lock(&t->mu);
    g->d[idx] = d;
    pthread_mutex_unlock(&t->mu);
    g->moved_ns = tn_mono_ns();
    g->check_ns = g->moved_ns + WATCH_MS * 1000000LL;
    g->tries_seen = 0;
    /* Non-blocking: a refused first attempt is retried in the background like any other. */
    if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0)
        goto fail_nng;
    return TN_OK;
fail_nng:
    e = tn_errmsg_set(msg, from_nng(rv), "%s: dial %s: %s", t->name, url, nng_strerror(rv));
fail:
    nng_dialer_close(d);
    return e;
}

static tn_err tx_dial(void *self, const char *url, tn_errmsg *msg)
{
    nngtx *t = self;
    const tn_tx_scheme *sc;
    int idx;
    tn_err e = check_url(t, url, &sc, msg);
    if (e)
        return e;
    /* One dial at a time: send_mu also keeps the socket from being replaced under it. */
    pthread_mutex_lock(&t->send_mu);
    if ((e = add_endpoint(t, false, (nng_listener)NNG_LISTENER_INITIALIZER,
                          (nng_dialer)NNG_DIALER_INITIALIZER, url, &idx, msg)) == TN_OK &&
        (e = start_dialer(t, t->gen, idx, url, sc->tls, msg)) != TN_OK)
        drop_endpoint(t);
    pthread_mutex_unlock(&t->send_mu);
    if (e)
        return e;
    if (sc->tls)
        mon_add(t);
    tn_info(COMP, "msg=dialing tx=%s role=%s url=%s", t->name,
            t->o.sender ? "sender" : "receiver", url);
    return TN_OK;
}

static tn_err open_gen(nngtx *t, sockgen **out, tn_errmsg *msg);
static void close_gen(nngtx *t, sockgen *g);

/* A dialer of the sender's URL (endpoint 0) from g; send_mu held. Nothing dialed yet is
 * not an error. */
static tn_err dial_sender_url(nngtx *t, sockgen *g, tn_errmsg *msg)
{
    pthread_mutex_lock(&t->mu);
    char *url = t->neps ? strdup(t->eps[0].url) : NULL;
    bool none = !t->neps;
    pthread_mutex_unlock(&t->mu);
    if (none)
        return TN_OK;
    if (!url)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", t->name);
    const tn_tx_scheme *sc = tn_tx_scheme_find(url);
    tn_err e = start_dialer(t, g, 0, url, sc && sc->tls, msg);
    free(url);
    return e;
}

/* The spent socket's successor, dialing the sender's URL; send_mu held. */
static tn_err renew(nngtx *t)
{
    tn_errmsg em = {0};
    sockgen *g = NULL;
    tn_err e = open_gen(t, &g, &em);
    if (e == TN_OK)
        e = dial_sender_url(t, g, &em);
    if (e) {
        if (g)
            close_gen(t, g);
        tn_warn(COMP,
                "msg=\"cannot open a fresh socket; retrying at the next send\" tx=%s "
                "err=\"%s\"",
                t->name, em.text);
        return e;
    }
    pthread_mutex_lock(&t->mu);
    sockgen *old = t->gen;
    t->gen = g;
    t->eps[0].auth_seen = 0; /* the new dialer's counters start at 0 */
    pthread_mutex_unlock(&t->mu);
    close_gen(t, old);
    uint64_t n = atomic_fetch_add(&t->renewals, 1) + 1;
    tn_debug(COMP, "msg=\"connection gone; fresh socket\" tx=%s renewals=%" PRIu64, t->name, n);
    return TN_OK;
}

/* Every attempt of dialer d nng counted (made, refused, failed, timed out); UINT64_MAX when
 * nng keeps no statistics. */
static uint64_t dialer_tries(nng_dialer d)
{
    static const char *const names[] = {"connect", "refused", "disconnect", "canceled",
                                        "other",   "timeout", "proto",      "auth",
                                        "oom",     "reject"};
    nng_stat *all, *s;
    if (nng_stats_get(&all) != 0)
        return UINT64_MAX;
    uint64_t n = UINT64_MAX;
    if ((s = nng_stat_find_dialer(all, d)) != NULL) {
        n = 0;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            n += stat_counter(s, names[i]);
    }
    nng_stats_free(all);
    return n;
}

/* nng 1.5.2 ends a dialer for good when its SP header write fails with EPIPE (the peer
 * closed first: a worker killed just as we connect): the dialer takes the error, which it
 * maps to NNG_ECLOSED, for its own close and never redials, so a sender would queue for
 * that peer forever. A live dialer counts an attempt at least every NEGO_MS plus the
 * backoff (an attempt ends connected, refused, failed, or at the header exchange's
 * timeout), so one that has made no connection and counted nothing for that long has
 * stopped: it is closed and a fresh one dials. Waiting out NEGO_MS keeps us from hanging
 * up on a slow peer in the middle of the exchange, which would wedge its ipc listener
 * (nanomsg/nng#1518). Without nng statistics, any dialer that has connected nowhere for
 * that long is replaced. Under send_mu, on each send: a peer that is sent nothing needs no
 * connection. */
static void watch_dialer(nngtx *t, sockgen *g)
{
    if (!t->neps || atomic_load(&g->up))
        return;
    int64_t now = tn_mono_ns();
    if (now < g->check_ns)
        return;
    g->check_ns = now + WATCH_MS * 1000000LL;
    pthread_mutex_lock(&t->mu);
    nng_dialer d = g->d[0];
    pthread_mutex_unlock(&t->mu);
    uint64_t tries = dialer_tries(d);
    if (tries != UINT64_MAX && tries != g->tries_seen) {
        g->tries_seen = tries;
        g->moved_ns = now;
        return;
    }
    int64_t quiet_ms = (now - g->moved_ns) / 1000000;
    if (quiet_ms < NEGO_MS + 2LL * t->o.reconnect_max_ms)
        return;
    pthread_mutex_lock(&g->mu);
    bool spent = g->spent;
    pthread_mutex_unlock(&g->mu);
    if (spent)
        return;
    tn_errmsg em = {0};
    nng_dialer_close(d);
    tn_err e = dial_sender_url(t, g, &em);
    uint64_t n = atomic_fetch_add(&t->redials, 1) + 1;
    if (e)
        g->moved_ns = now; /* the next try in a full period */
    pthread_mutex_lock(&t->mu);
    tn_warn(COMP,
            "msg=\"no connection and no dial attempt counted; dialing anew\" tx=%s url=%s "
            "quiet_ms=%lld redials=%" PRIu64 "%s%s%s",
            t->name, t->eps[0].url, (long long)quiet_ms, n, e ? " err=\"" : "",
            e ? em.text : "", e ? "\"" : "");
    pthread_mutex_unlock(&t->mu);
}

static tn_err tx_send(void *self, const void *buf, size_t len)
{
    nngtx *t = self;
    if (!t->o.sender)
        return TN_ERR_INVAL;
    if (len > t->o.max_msg)
        return TN_ERR_TOOBIG;
    pthread_mutex_lock(&t->mu);
    bool closed = t->closed;
    pthread_mutex_unlock(&t->mu);
    if (closed)
        return TN_ERR_CLOSED;
    int rv = NNG_ECLOSED;
    tn_err e = TN_OK;
    pthread_mutex_lock(&t->send_mu);
    for (int round = 0; t->gen && round < 2; round++) {
        sockgen *g = t->gen;
        watch_dialer(t, g);
        pthread_mutex_lock(&g->mu);
        bool spent = g->spent;
        /* nng_send copies buf into a message; with send_wait_ms the socket's send timeout
         * bounds the wait, else the send never waits. */
        if (!spent)
            rv = nng_send(g->sock, (void *)buf, len,
                          t->o.send_wait_ms > 0 ? 0 : NNG_FLAG_NONBLOCK);
        pthread_mutex_unlock(&g->mu);
        if (!spent)
            break;
        rv = NNG_EAGAIN; /* a socket spent as soon as it was made: try again later */
        if ((e = renew(t)) != TN_OK)
            break;
    }
    pthread_mutex_unlock(&t->send_mu);
    if (e)
        return TN_ERR_BUSY;
    if (rv == 0) {
        atomic_fetch_add(&t->sent, 1);
        return TN_OK;
    }
    if (rv == NNG_EAGAIN || rv == NNG_ETIMEDOUT)
        return TN_ERR_BUSY;
    return from_nng(rv);
}

static tn_err tx_bound_url(void *self, char *buf, size_t cap)
{
    nngtx *t = self;
    tn_err e = TN_OK;
    pthread_mutex_lock(&t->mu);
    if (!t->bound)
        e = TN_ERR_NOENT;
    else if (strlen(t->bound) >= cap)
        e = TN_ERR_TOOBIG;
    else
        memcpy(buf, t->bound, strlen(t->bound) + 1);
    pthread_mutex_unlock(&t->mu);
    return e;
}

static void tx_close(void *self)
{
    nngtx *t = self;
    pthread_mutex_lock(&t->mu);
    bool was = t->closed;
    t->closed = true;
    pthread_mutex_unlock(&t->mu);
    /* Cancelling only asks: a completion already under way sees closed and stops. */
    if (!was && t->aio)
        nng_aio_cancel(t->aio);
}

/* Release what nng no longer uses: after every nng_close has returned. */
static void release(nngtx *t)
{
    if (t->aio)
        nng_aio_free(t->aio);
    for (int i = 0; i < t->neps; i++)
        free(t->eps[i].url);
    free(t->bound);
    free(t->pipes);
    free(t->name);
    free(t->ca_pem);
    free(t->cert_pem);
    tn_tls_free_secret(t->key_pem);
    free(t->server_name);
    free(t->ca_file);
    free(t->cert_file);
    pthread_cond_destroy(&t->closed_cv);
    pthread_mutex_destroy(&t->send_mu);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static void gen_free(sockgen *g)
{
    pthread_mutex_destroy(&g->mu);
    free(g);
}

static void *closer_main(void *arg)
{
    sockgen *g = arg;
    nngtx *t = g->t;
    nng_close(g->sock); /* closes listeners, dialers and pipes; waits for them */
    gen_free(g);
    pthread_mutex_lock(&t->mu);
    bool last = --t->closing == 0, abandoned = t->abandoned;
    pthread_cond_broadcast(&t->closed_cv);
    pthread_mutex_unlock(&t->mu);
    if (abandoned && last) {
        tn_warn(COMP, "msg=\"late socket close finished\" tx=%s", t->name);
        release(t);
    }
    return NULL;
}

/* Close g's socket on a helper thread of its own (see tx_free); free waits for them all. */
static void close_gen(nngtx *t, sockgen *g)
{
    if (!g->sock.id) {
        gen_free(g);
        return;
    }
    pthread_mutex_lock(&t->mu);
    t->closing++;
    pthread_mutex_unlock(&t->mu);
    pthread_t th;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &a, closer_main, g) != 0)
        closer_main(g);
    pthread_attr_destroy(&a);
}

/* nng 1.5.2 can deadlock in nng_close when a message is in flight on one of the socket's
 * connections: a task of nng's single reaper thread never completes. Measured here with a
 * plain nng program (no tern code): tls+tcp push closed under load, peer in another
 * process, about one close in three; tcp only when both ends are in one process. Upstream
 * reports of this family: nanomsg/nng#1543, #1813. So that a caller never hangs on it,
 * sockets are closed on helper threads: free waits up to CLOSE_WAIT_MS for all of them
 * (the one in use and any spent ones still closing), then logs an error and leaves them
 * and this endpoint behind (the last helper frees it if nng_close ever returns). The
 * receive callback is stopped first, so in either case no callback runs once free
 * returns. nng's reaper stays stuck: later teardowns in the process stall too. */
static void tx_free(void *self)
{
    nngtx *t = self;
    if (!t)
        return;
    tx_close(t);
    mon_remove(t);
    if (t->aio)
        nng_aio_stop(t->aio); /* waits for a running receive callback; none starts after */
    pthread_mutex_lock(&t->send_mu);
    pthread_mutex_lock(&t->mu);
    sockgen *g = t->gen;
    t->gen = NULL;
    pthread_mutex_unlock(&t->mu);
    pthread_mutex_unlock(&t->send_mu);
    if (g)
        close_gen(t, g);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += CLOSE_WAIT_MS / 1000;
    pthread_mutex_lock(&t->mu);
    while (t->closing && pthread_cond_timedwait(&t->closed_cv, &t->mu, &ts) == 0)
        ;
    bool done = !t->closing;
    t->abandoned = !done;
    pthread_mutex_unlock(&t->mu);
    if (done) {
        release(t);
        return;
    }
    tn_error(COMP,
             "msg=\"socket close stuck in nng; leaving it behind\" tx=%s wait_ms=%d "
             "detail=\"known nng 1.5.2 deadlock; upgrade nng\"",
             t->name, CLOSE_WAIT_MS);
}

static const tn_tx_ops nng_ops = {
    .name = "nng",
    .listen = tx_listen,
    .dial = tx_dial,
    .send = tx_send,
    .bound_url = tx_bound_url,
    .close = tx_close,
    .free = tx_free,
};

/* ---- construction ----------------------------------------------------------------------- */

void tn_tx_nng_opts_init(tn_tx_nng_opts *o, bool sender)
{
    *o = (tn_tx_nng_opts){
        .sender = sender,
        .max_msg = TN_TX_RECV_MAX_DEFAULT,
        .send_buf = 1024,
        .recv_buf = 0,
        .send_wait_ms = 0,
        .reconnect_min_ms = 100,
        .reconnect_max_ms = 2000,
        .rate_msgs = TN_TX_RATE_MSGS_DEFAULT,
        .rate_bytes = TN_TX_RATE_BYTES_DEFAULT,
        .max_conns = MAX_CONNS,
    };
}

static tn_err load_tls(nngtx *t, const tn_tx_tls *tls, tn_errmsg *msg)
{
    tn_err e;
    if (!tls->ca_file)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: tls: a CA file is required (peers are "
                             "verified both ways)",
                             t->name);
    if (!tls->cert_file != !tls->key_file)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s: tls: give both a certificate and its key",
                             t->name);
    if ((e = tn_tls_read_pem("CA", tls->ca_file, &t->ca_pem, msg)) != TN_OK)
        return e;
    if (tls->cert_file) {
        if ((e = tn_tls_read_pem("certificate", tls->cert_file, &t->cert_pem, msg)) != TN_OK ||
            (e = tn_tls_read_pem("key", tls->key_file, &t->key_pem, msg)) != TN_OK)
            return e;
    }
    if ((tls->server_name && !(t->server_name = strdup(tls->server_name))) ||
        !(t->ca_file = strdup(tls->ca_file)) ||
        (tls->cert_file && !(t->cert_file = strdup(tls->cert_file))))
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", t->name);
    t->tls = true;
    (void)tn_tx_tls_names_available(); /* before our first configuration: see peer identity */
    /* Build one configuration now so a bad PEM is reported by the constructor. */
    nng_tls_config *cfg;
    if ((e = tls_config(t, t->cert_pem != NULL, "", &cfg, msg)) != TN_OK)
        return e;
    nng_tls_config_free(cfg);
    return TN_OK;
}

/* A socket for t with its options and connection callbacks, no listener or dialer yet.
 * *out is NULL on failure. */
static tn_err open_gen(nngtx *t, sockgen **out, tn_errmsg *msg)
{
    const tn_tx_nng_opts *o = &t->o;
    sockgen *g = calloc(1, sizeof(*g));
    *out = NULL;
    if (!g)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", t->name);
    g->t = t;
    pthread_mutex_init(&g->mu, NULL);
    int rv = o->sender ? nng_push0_open(&g->sock) : nng_pull0_open(&g->sock);
    if (rv) {
        gen_free(g);
        return tn_errmsg_set(msg, from_nng(rv), "%s: nng: %s", t->name, nng_strerror(rv));
    }
    if ((rv = nng_socket_set_size(g->sock, NNG_OPT_RECVMAXSZ, nng_bound(o->max_msg))) != 0 ||
        (rv = nng_socket_set_ms(g->sock, NNG_OPT_RECONNMINT, o->reconnect_min_ms)) != 0 ||
        (rv = nng_socket_set_ms(g->sock, NNG_OPT_RECONNMAXT, o->reconnect_max_ms)) != 0)
        goto fail;
    if (o->sender) {
        if ((rv = nng_socket_set_int(g->sock, NNG_OPT_SENDBUF, o->send_buf)) != 0 ||
            (o->send_wait_ms > 0 &&
             (rv = nng_socket_set_ms(g->sock, NNG_OPT_SENDTIMEO, o->send_wait_ms)) != 0))
            goto fail;
    } else if ((rv = nng_socket_set_int(g->sock, NNG_OPT_RECVBUF, o->recv_buf)) != 0) {
        goto fail;
    }
    if ((rv = nng_pipe_notify(g->sock, NNG_PIPE_EV_ADD_PRE, pipe_cb, g)) != 0 ||
        (rv = nng_pipe_notify(g->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, g)) != 0 ||
        (rv = nng_pipe_notify(g->sock, NNG_PIPE_EV_REM_POST, pipe_cb, g)) != 0)
        goto fail;
    *out = g;
    return TN_OK;
fail:
    nng_close(g->sock); /* nothing connected yet: nothing to wait for */
    gen_free(g);
    return tn_errmsg_set(msg, from_nng(rv), "%s: nng: %s", t->name, nng_strerror(rv));
}

tn_err tn_tx_nng_new_opts(const tn_tx_nng_opts *o, tn_tx_recv_fn fn, void *arg, tn_tx *out,
                          tn_errmsg *msg)
{
    const char *name = o->name ? o->name : "tx";
    if (!o->sender && !fn)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s: a receiver needs a callback", name);
    if (o->max_msg == 0 || o->send_buf < 1 || o->send_buf > NNG_BUF_MAX || o->recv_buf < 0 ||
        o->recv_buf > NNG_BUF_MAX || o->send_wait_ms < 0 || o->reconnect_min_ms < 1 ||
        o->reconnect_max_ms < o->reconnect_min_ms)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: bad transport options (max_msg > 0, send_buf 1..8192, "
                             "recv_buf 0..8192, reconnect 1 <= min <= max ms)",
                             name);
    nngtx *t = calloc(1, sizeof(*t));
    if (!t)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", name);
    pthread_mutex_init(&t->mu, NULL);
    pthread_mutex_init(&t->send_mu, NULL);
    pthread_cond_init(&t->closed_cv, NULL);
    t->o = *o;
    t->o.name = NULL;
    t->o.tls = NULL;
    t->fn = fn;
    t->arg = arg;
    tn_err e = TN_ERR_NOMEM;
    int rv;
    if (!(t->name = xstrdup(name)))
        goto fail;
    if (o->tls && (e = load_tls(t, o->tls, msg)) != TN_OK)
        goto fail_msg;
    if ((e = open_gen(t, &t->gen, msg)) != TN_OK)
        goto fail_msg;
    if (!o->sender) {
        if ((rv = nng_aio_alloc(&t->aio, recv_cb, t)) != 0) {
            e = tn_errmsg_set(msg, from_nng(rv), "%s: nng: %s", name, nng_strerror(rv));
            goto fail_msg;
        }
        nng_recv_aio(t->gen->sock, t->aio);
    }
    out->ops = &nng_ops;
    out->self = t;
    return TN_OK;
fail:
    tn_errmsg_set(msg, e, "%s: out of memory", name);
fail_msg:
    tx_free(t);
    return e;
}

tn_err tn_tx_nng_new(bool sender, const tn_tx_tls *tls, tn_tx_recv_fn fn, void *arg, tn_tx *out,
                     tn_errmsg *msg)
{
    tn_tx_nng_opts o;
    tn_tx_nng_opts_init(&o, sender);
    o.tls = tls;
    return tn_tx_nng_new_opts(&o, fn, arg, out, msg);
}

tn_err tn_tx_nng_stats_get(tn_tx t, tn_tx_nng_stats *out)
{
    if (t.ops != &nng_ops)
        return TN_ERR_INVAL;
    nngtx *x = t.self;
    pthread_mutex_lock(&mon.mu);
    mon_poll(); /* fresh TLS failure counts */
    pthread_mutex_unlock(&mon.mu);

    *out = (tn_tx_nng_stats){
        .connects = atomic_load(&x->connects),
        .disconnects = atomic_load(&x->disconnects),
        .refused = atomic_load(&x->refused),
        .handshake_errors = atomic_load(&x->handshake_errors),
        .oversized = atomic_load(&x->oversized),
        .sent = atomic_load(&x->sent),
        .received = atomic_load(&x->received),
        .renewals = atomic_load(&x->renewals),
        .rate_dropped = atomic_load(&x->rate_dropped),
        .peer_refused = atomic_load(&x->peer_refused),
        .redials = atomic_load(&x->redials),
    };
    return TN_OK;
}

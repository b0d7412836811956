/* Request/reply over nng: a server thread answering one request at a time, and a
 * one-shot client call.
 *
 * nng 1.5.2 (nanomsg/nng#1518, fixed in 1.6.0): a client that hangs up on an ipc://
 * listener before the SP header exchange ends (killed while dialing, a bare connect, or
 * another process's nng_listen checking whether the path is live) leaves that listener
 * handing nothing over ever after. So an ipc server probes its own listener when idle, as
 * a req0 dialer, and listens again when the probe's pipe does not reach the socket. */
#include "rpc.h"
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipcprobe.h"
#include "log.h"

#define PROBE_EVERY_MS 1000 /* at most this often, and only when idle */
/* for the probe's pipe: well under 1 ms unless the machine is starved */
#define PROBE_WAIT_MS  3000

struct tn_rpc_server {
    nng_socket sock;
    pthread_t thread;
    atomic_bool stop;
    tn_rpc_handler fn;
    tn_rpc_peer_handler pfn; /* instead of fn */
    void *arg;
    tn_rpc_peer_kind kind;
    /* ipc:// only, touched by the server's thread alone once it runs */
    char *url; /* NULL: nothing to probe */
    nng_listener lis;
    bool listening;     /* lis is open */
    tn_ipc_file file;   /* the socket file lis made */
    bool lost_told;     /* warned that the path is no longer ours */
    int64_t next_probe; /* ms, monotonic */
    atomic_uint added;  /* pipes taken in so far (nng's threads count them) */
};

static tn_err from_nng(int rv)
{
    switch (rv) {
    case 0: return TN_OK;
    case NNG_ENOMEM: return TN_ERR_NOMEM;
    case NNG_ETIMEDOUT: return TN_ERR_TIMEOUT;
    case NNG_ECLOSED: return TN_ERR_CLOSED;
    case NNG_EADDRINUSE: return TN_ERR_BUSY;
    case NNG_ECONNREFUSED:
    case NNG_ENOENT: return TN_ERR_PEER;
    case NNG_EMSGSIZE: return TN_ERR_TOOBIG;
    case NNG_EPERM: return TN_ERR_PERM;
    default: return TN_ERR_IO;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the ipc path is still the socket file our listener made. */
static bool path_is_ours(const tn_rpc_server *s)
{
    return tn_ipc_file_is(s->url + 6, &s->file);
}

/* Listen on s->url and note which file that made. */
static int listen_ipc(tn_rpc_server *s)
{
    /* 0600: only this uid (and root) may connect; the peer check below says the same */
    int rv = nng_listener_create(&s->lis, s->sock, s->url);
    if (rv == 0 && (rv = nng_listener_set_int(s->lis, NNG_OPT_IPC_PERMISSIONS, 0600)) == 0)
        rv = nng_listener_start(s->lis, 0);
    else if (rv == 0)
        nng_listener_close(s->lis);
    s->listening = rv == 0;
    if (rv == 0)
        (void)tn_ipc_file_note(s->url + 6, &s->file);
    return rv;
}

/* Counts the pipes the socket took in: what a stuck listener no longer hands over. */
static void on_pipe_added(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    tn_rpc_server *s = arg;
    atomic_fetch_add(&s->added, 1);
}

/* An ipc peer of another uid (root excepted) is closed before it can send anything:
 * the socket file's mode says the same, but a mode can be changed, a uid cannot. */
static void on_pipe_check(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    uint64_t uid = 0, pid = 0;
    if (nng_pipe_get_uint64(pipe, NNG_OPT_IPC_PEER_UID, &uid) != 0)
        uid = UINT64_MAX; /* unknown: refused */
    if (uid == (uint64_t)geteuid() || uid == 0)
        return;
    (void)nng_pipe_get_uint64(pipe, NNG_OPT_IPC_PEER_PID, &pid);
    tn_warn("rpc",
            "msg=\"connection refused: another user\" url=%s peer_uid=%" PRIu64
            " peer_pid=%" PRIu64 " allowed=\"uid %u or root\"",
            ((tn_rpc_server *)arg)->url, uid, pid, (unsigned)geteuid());
    nng_pipe_close(pipe);
}

/* What the connection of a request says about its sender. */
static void peer_of(const tn_rpc_server *s, nng_pipe p, tn_rpc_peer *out)
{
    *out = (tn_rpc_peer){.kind = s->kind, .uid = -1, .pid = -1};
    uint64_t v;
    if (s->kind == TN_RPC_PEER_IPC) {
        if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_UID, &v) == 0)
            out->uid = (int64_t)v;
        if (nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &v) == 0)
            out->pid = (int64_t)v;
        return;
    }
    if (s->kind == TN_RPC_PEER_TLS &&
        nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &out->tls_verified) != 0)
        out->tls_verified = false;
    nng_sockaddr sa;
    char ip[INET6_ADDRSTRLEN] = "?";
    if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0)
        return;
    if (sa.s_family == NNG_AF_INET) {
        inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
        snprintf(out->addr, sizeof(out->addr), "%s:%u", ip, ntohs(sa.s_in.sa_port));
    } else if (sa.s_family == NNG_AF_INET6) {
        inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip));
        snprintf(out->addr, sizeof(out->addr), "[%s]:%u", ip, ntohs(sa.s_in6.sa_port));
    }
}

static uint64_t pipes_added(void *arg)
{
    return atomic_load(&((tn_rpc_server *)arg)->added);
}

/* A server being stopped is closed whole: no listener is replaced then (nng 1.5.2 leaks
 * what a listener closed with a pipe in its handshake held). */
static bool stopping(void *arg)
{
    return atomic_load(&((tn_rpc_server *)arg)->stop);
}

/* The idle-time check of an ipc listener (see the top of the file). */
static void check_ipc(tn_rpc_server *s)
{
    if (!s->listening) {
        /* listening again failed earlier: retry only while nobody holds the path */
        struct stat st;
        if (stat(s->url + 6, &st) != 0 && errno == ENOENT && listen_ipc(s) == 0)
            tn_warn("rpc", "msg=\"listening again\" url=%s", s->url);
        return;
    }
    if (!path_is_ours(s)) {
        /* removed, or taken by another process: theirs to keep, never unlinked here */
        if (!s->lost_told)
            tn_warn("rpc",
                    "msg=\"socket file removed or replaced; not reachable there\" "
                    "url=%s",
                    s->url);
        s->lost_told = true;
        return;
    }
    if (tn_ipc_probe(s->url + 6, 0x30, pipes_added, stopping, s, PROBE_WAIT_MS) ||
        !path_is_ours(s))
        return;
    /* nng unlinks the path as it closes the listener (hence the check just above) and
     * closes the pipes it made; their req0 peers dial again and resend */
    nng_listener_close(s->lis);
    s->listening = false;
    int rv = listen_ipc(s);
    if (rv == 0)
        tn_warn("rpc", "msg=\"ipc listener stopped accepting; listening again\" url=%s",
                s->url);
    else
        tn_warn("rpc",
                "msg=\"ipc listener stopped accepting; cannot listen again\" url=%s "
                "why=\"%s\"",
                s->url, nng_strerror(rv));
}

static void *serve(void *p)
{
    tn_rpc_server *s = p;
    s->next_probe = now_ms() + PROBE_EVERY_MS;
    while (!atomic_load(&s->stop)) {
        nng_msg *m = NULL;
        int rv = nng_recvmsg(s->sock, &m, 0);
        if (rv == NNG_ETIMEDOUT) {
            if (s->url && now_ms() >= s->next_probe && !atomic_load(&s->stop)) {
                check_ipc(s);
                s->next_probe = now_ms() + PROBE_EVERY_MS;
            }
            continue;
        }
        if (rv != 0)
            break;
        void *rep = NULL;
        size_t rlen = 0;
        if (s->pfn) {
            tn_rpc_peer peer;
            peer_of(s, nng_msg_get_pipe(m), &peer);
            s->pfn(s->arg, &peer, nng_msg_body(m), nng_msg_len(m), &rep, &rlen);
        } else {
            s->fn(s->arg, nng_msg_body(m), nng_msg_len(m), &rep, &rlen);
        }
        nng_msg_free(m);
        rv = nng_send(s->sock, rep ? rep : "", rep ? rlen : 0, 0);
        if (rv != 0)
            tn_warn("rpc", "msg=\"reply not sent\" why=\"%s\"", nng_strerror(rv));
        free(rep);
    }
    return NULL;
}


/* The host of "tls+tcp://host:port" when it is a DNS name (mbedTLS 2.28 under nng does
 * not match IP subjectAltNames: for an IP literal only the chain is verified). */
static bool dns_host(const char *url, char *buf, size_t cap)
{
    const char *h = strstr(url, "://");
    if (!h || h[3] == '[')
        return false;
    h += 3;
    size_t n = strcspn(h, ":/");
    if (n == 0 || n >= cap)
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    unsigned char tmp[16];
    return inet_pton(AF_INET, buf, tmp) != 1;
}

/* A TLS configuration: a server verifies a client's certificate when one is shown
 * (OPTIONAL: a client may come with a token instead; the handler sees tls_verified); a
 * client requires and verifies the server's. */
static tn_err tls_config(const tn_rpc_tls *t, bool server, const char *url,
                         nng_tls_config **out, tn_errmsg *msg)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    tn_err e = tn_tls_read_pem("CA", t->ca_file, &ca, msg);
    if (!e && (server || t->cert_file))
        e = tn_tls_read_pem("certificate", t->cert_file, &cert, msg);
    if (!e && cert)
        e = tn_tls_read_pem("key", t->key_file, &key, msg);
    nng_tls_config *cfg = NULL;
    int rv = 0;
    const char *step = "setup";
    if (!e && (rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER :
                                                        NNG_TLS_MODE_CLIENT)) == 0) {
        char host[256];
        if ((rv = nng_tls_config_ca_chain(cfg, ca, NULL)) != 0)
            step = "CA";
        else if (cert && (rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0)
            step = "certificate and key";
        else if ((rv = nng_tls_config_auth_mode(cfg, server ? NNG_TLS_AUTH_MODE_OPTIONAL :
                                                              NNG_TLS_AUTH_MODE_REQUIRED)))
            step = "auth mode";
        else if (!server && dns_host(url, host, sizeof(host)) &&
                 (rv = nng_tls_config_server_name(cfg, host)) != 0)
            step = "server name";
    }
    free(ca);
    free(cert);
    tn_tls_free_secret(key);
    if (!e && rv) {
        if (cfg)
            nng_tls_config_free(cfg);
        return tn_errmsg_set(msg, from_nng(rv), "%s: tls %s (CA %s, certificate %s): %s", url,
                             step, t->ca_file, t->cert_file ? t->cert_file : "none",
                             nng_strerror(rv));
    }
    if (!e)
        *out = cfg;
    return e;
}

/* Listen on a tcp:// or tls+tcp:// url. */
static tn_err listen_net(tn_rpc_server *s, const char *url, const tn_rpc_tls *tls, int *rvp,
                         tn_errmsg *msg)
{
    nng_listener l;
    int rv = nng_listener_create(&l, s->sock, url);
    if (rv == 0 && s->kind == TN_RPC_PEER_TLS) {
        nng_tls_config *cfg;
        if (!tls)
            return tn_errmsg_set(msg, TN_ERR_INVAL,
                                 "%s: tls+tcp needs --tls-ca, --tls-cert and --tls-key", url);
        tn_err e = tls_config(tls, true, url, &cfg, msg);
        if (e)
            return e;
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg);
        nng_tls_config_free(cfg); /* the listener holds its own reference */
    }
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    *rvp = rv;
    return TN_OK;
}

static tn_rpc_peer_kind kind_of(const char *url)
{
    if (strncmp(url, "ipc://", 6) == 0)
        return TN_RPC_PEER_IPC;
    if (strncmp(url, "tls+", 4) == 0)
        return TN_RPC_PEER_TLS;
    if (strncmp(url, "inproc://", 9) == 0)
        return TN_RPC_PEER_INPROC;
    return TN_RPC_PEER_TCP;
}

/* Listen on url; *rvp is nng's answer. */
static tn_err serve_listen(tn_rpc_server *s, const char *url, const tn_rpc_tls *tls, int *rvp,
                           tn_errmsg *msg)
{
    bool ipc = s->kind == TN_RPC_PEER_IPC;
    int rv = nng_rep0_open(&s->sock);
    if (rv == 0) {
        nng_setopt_ms(s->sock, NNG_OPT_RECVTIMEO, 200);
        /* a reply that cannot go out does not hold the server's thread (and its stop) */
        nng_setopt_ms(s->sock, NNG_OPT_SENDTIMEO, 5000);
        nng_setopt_size(s->sock, NNG_OPT_RECVMAXSZ, TN_RPC_MAX_MSG);
        if (ipc && (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, on_pipe_added, s)) == 0)
            rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, on_pipe_check, s);
    }
    *rvp = rv;
    if (rv != 0)
        return TN_OK;
    if (!ipc) {
        if (s->kind == TN_RPC_PEER_INPROC)
            *rvp = nng_listen(s->sock, url, NULL, 0);
        else
            return listen_net(s, url, tls, rvp, msg);
        return TN_OK;
    }
    rv = listen_ipc(s);
    if (rv == NNG_EADDRINUSE) {
        /* a socket file left by a dead process: nobody answers on it, replace it */
        void *r = NULL;
        size_t rl;
        if (tn_rpc_call(url, "", 0, 300, &r, &rl, NULL) == TN_ERR_TIMEOUT || r == NULL) {
            (void)unlink(url + 6);
            rv = listen_ipc(s);
        }
        free(r);
    }
    *rvp = rv;
    return TN_OK;
}

static tn_err serve_start(const char *url, const tn_rpc_tls *tls, tn_rpc_handler fn,
                          tn_rpc_peer_handler pfn, void *arg, tn_rpc_server **out,
                          tn_errmsg *msg)
{
    tn_rpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    s->fn = fn;
    s->pfn = pfn;
    s->arg = arg;
    s->kind = kind_of(url);
    if (s->kind == TN_RPC_PEER_IPC && !(s->url = strdup(url))) {
        free(s);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    }
    int rv = 0;
    tn_err e = serve_listen(s, url, tls, &rv, msg);
    if (!e && rv != 0) {
        e = from_nng(rv);
        tn_errmsg_set(msg, e, "%s: cannot listen: %s%s", url, nng_strerror(rv),
                      rv == NNG_EADDRINUSE ? " (another tern is serving there)" : "");
    }
    if (!e && pthread_create(&s->thread, NULL, serve, s) != 0)
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the rpc thread");
    if (e) {
        nng_close(s->sock);
        free(s->url);
        free(s);
        return e;
    }
    *out = s;
    return TN_OK;
}

tn_err tn_rpc_serve_peer(const char *url, const tn_rpc_tls *tls, tn_rpc_peer_handler fn,
                         void *arg, tn_rpc_server **out, tn_errmsg *msg)
{
    return serve_start(url, tls, NULL, fn, arg, out, msg);
}

tn_err tn_rpc_serve(const char *url, tn_rpc_handler fn, void *arg, tn_rpc_server **out,
                    tn_errmsg *msg)
{
    return serve_start(url, NULL, fn, NULL, arg, out, msg);
}

/* How long a server's stop waits for nng_close: nng 1.5.2 was seen to hang there for good
 * (a master's stop with a standby connected to its log server), and a daemon's stop
 * must end. */
#define CLOSE_BOUND_MS 5000

typedef struct closer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done, abandoned;
    tn_rpc_server *s;
} closer;

static void closer_free(closer *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* nng_close and the free of the server, on their own thread; the last of this thread and
 * the waiter frees the closer. */
static void *close_thread(void *arg)
{
    closer *c = arg;
    nng_close(c->s->sock);
    free(c->s->url);
    free(c->s); /* the pipe callbacks use it: only after the close */
    pthread_mutex_lock(&c->mu);
    c->done = true;
    bool last = c->abandoned;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    if (last)
        closer_free(c);
    return NULL;
}

/* Close the socket, waiting at most CLOSE_BOUND_MS; past that the close goes on without
 * us (the process may exit). false when it did not end in time. */
static bool close_bounded(tn_rpc_server *s)
{
    closer *c = calloc(1, sizeof(*c));
    pthread_condattr_t ca;
    pthread_t th;
    if (!c)
        goto inline_close;
    c->s = s;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&th, NULL, close_thread, c) != 0) {
        closer_free(c);
        goto inline_close;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += CLOSE_BOUND_MS / 1000;
    pthread_mutex_lock(&c->mu);
    while (!c->done && pthread_cond_timedwait(&c->cv, &c->mu, &ts) != ETIMEDOUT)
        ;
    bool done = c->done;
    c->abandoned = !done;
    pthread_mutex_unlock(&c->mu);
    if (done) {
        pthread_join(th, NULL);
        closer_free(c);
    } else {
        pthread_detach(th);
    }
    return done;
inline_close:
    nng_close(s->sock);
    free(s->url);
    free(s);
    return true;
}

void tn_rpc_server_free(tn_rpc_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    /* the handler's last call ends here: from now on nothing calls it with s->arg */
    pthread_join(s->thread, NULL);
    char url[128];
    snprintf(url, sizeof(url), "%s", s->url ? s->url : "-");
    if (!close_bounded(s))
        tn_warn("rpc",
                "msg=\"the socket did not close within %d ms; left to the process's exit\" "
                "url=%s",
                CLOSE_BOUND_MS, url);
}

/* Dial url (with TLS for tls+tcp://); flags: 0 or NNG_FLAG_NONBLOCK. */
static int dial(nng_socket sock, const char *url, const tn_rpc_tls *tls, int flags,
                tn_errmsg *msg, tn_err *e)
{
    if (!tls || strncmp(url, "tls+", 4) != 0)
        return nng_dial(sock, url, NULL, flags);
    nng_dialer d;
    nng_tls_config *cfg;
    int rv = nng_dialer_create(&d, sock, url);
    if (rv != 0)
        return rv;
    if ((*e = tls_config(tls, false, url, &cfg, msg)) != TN_OK)
        return -1;
    rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
    nng_tls_config_free(cfg); /* the dialer holds its own reference */
    return rv ? rv : nng_dialer_start(d, flags);
}

/* bounded: the dial does not wait (a peer that accepts but never answers, a stopped
 * process, would hold a synchronous one for nng's 10 s negotiation timeout): the send
 * waits for the connection (req0 sends only on a pipe) up to BOUNDED_CONNECT_MS, the
 * receive for the reply up to timeout_ms. */
#define BOUNDED_CONNECT_MS 100

/* A call's bounds on sock: the reply within timeout_ms, the send (which waits for a
 * connection: req0 sends only on one) within send_ms; a request is never resent within
 * the call (a START resent would start twice). */
static void set_bounds(nng_socket sock, int timeout_ms, int send_ms)
{
    nng_setopt_ms(sock, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_setopt_ms(sock, NNG_OPT_SENDTIMEO, send_ms);
    nng_setopt_ms(sock, NNG_OPT_REQ_RESENDTIME, timeout_ms > 0 ? timeout_ms * 2 : 60000);
}

/* A req0 socket for calls: replies up to TN_RPC_MAX_MSG. */
static tn_err open_req(nng_socket *sock, tn_errmsg *msg)
{
    int rv = nng_req0_open(sock);
    if (rv != 0)
        return tn_errmsg_set(msg, from_nng(rv), "cannot open a socket: %s", nng_strerror(rv));
    nng_setopt_size(*sock, NNG_OPT_RECVMAXSZ, TN_RPC_MAX_MSG);
    return TN_OK;
}

/* A call to url that failed with nng's rv: what to tell the user. */
static tn_err call_failed(const char *url, int rv, tn_errmsg *msg)
{
    return tn_errmsg_set(msg, from_nng(rv), "%s: %s", url,
                         rv == NNG_ECONNREFUSED || rv == NNG_ENOENT ?
                             "nothing listens there (is the master running? start it with "
                             "`tern master` or `tern standalone`, or pass --master URL)" :
                         rv == NNG_EPERM ? "permission denied: the control socket belongs to "
                                           "another user (run as that user or root)" :
                                           nng_strerror(rv));
}

/* Send req on sock and take the reply (rv: the dial's result, 0 to go on). */
static tn_err exchange(nng_socket sock, int rv, const char *url, const void *req, size_t len,
                       void **rep, size_t *rlen, tn_errmsg *msg)
{
    if (rv == 0)
        rv = nng_send(sock, (void *)(len ? req : ""), len, 0);
    void *buf = NULL;
    size_t blen = 0;
    if (rv == 0)
        rv = nng_recv(sock, &buf, &blen, NNG_FLAG_ALLOC);
    tn_err e = from_nng(rv);
    if (rv == 0) {
        *rep = malloc(blen ? blen : 1);
        if (!*rep)
            e = TN_ERR_NOMEM;
        else {
            memcpy(*rep, buf, blen);
            *rlen = blen;
        }
        nng_free(buf, blen);
    } else {
        call_failed(url, rv, msg);
    }
    return e;
}

/* An ipc dial whose connection was cut in the SP handshake, before anything was sent (so
 * it is safe to dial again): a server that replaces a stuck ipc listener (see probe)
 * resets what waited in the old one's backlog, and listens again at once. nng 1.5.2 says
 * so as "connection shutdown" or, as often, "object closed" (of the connection: the
 * socket is ours and open). Only ipc, and a few times: a tcp or TLS peer that closes in
 * the handshake (a refused certificate, not an SP server) is told at once. */
#define HANDSHAKE_REDIALS 5

static bool cut_in_handshake(const char *url, int rv)
{
    return strncmp(url, "ipc://", 6) == 0 && (rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT ||
                                              rv == NNG_ECONNABORTED || rv == NNG_ECLOSED);
}

static tn_err call(const char *url, const tn_rpc_tls *tls, const void *req, size_t len,
                   int timeout_ms, bool bounded, void **rep, size_t *rlen, tn_errmsg *msg)
{
    int64_t t0 = now_ms();
    for (int redials = 0;; redials++) {
        nng_socket sock;
        tn_err te = open_req(&sock, msg);
        if (te)
            return te;
        set_bounds(sock, timeout_ms,
                   bounded && timeout_ms > BOUNDED_CONNECT_MS ? BOUNDED_CONNECT_MS :
                                                                timeout_ms);
        int rv = dial(sock, url, tls, bounded ? NNG_FLAG_NONBLOCK : 0, msg, &te);
        if (te) {
            nng_close(sock);
            return te;
        }
        if (cut_in_handshake(url, rv) && redials < HANDSHAKE_REDIALS &&
            now_ms() - t0 + 20 < timeout_ms) {
            /* on a new socket: nng 1.5.2 may take a second dial on this one for closed */
            nng_close(sock);
            nanosleep(&(struct timespec){0, 20000000L}, NULL);
            continue;
        }
        tn_err e = exchange(sock, rv, url, req, len, rep, rlen, msg);
        nng_close(sock);
        return e;
    }
}

struct tn_rpc_client {
    nng_socket sock;
    pthread_mutex_t mu; /* one call at a time */
    char *url;
    int timeout_ms; /* the bounds set on sock (-1: none yet) */
};

tn_err tn_rpc_client_open(const char *url, const tn_rpc_tls *tls, tn_rpc_client **out,
                          tn_errmsg *msg)
{
    tn_rpc_client *c = calloc(1, sizeof(*c));
    if (!c || !(c->url = strdup(url))) {
        free(c);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    }
    tn_err te = open_req(&c->sock, msg);
    if (te) {
        free(c->url);
        free(c);
        return te;
    }
    pthread_mutex_init(&c->mu, NULL);
    c->timeout_ms = -1;
    /* synchronous: nothing listening is said now; a broken connection is redialed by
     * nng in the background, and a call waits for it up to its timeout */
    int rv = dial(c->sock, url, tls, 0, msg, &te);
    if (te || rv) {
        tn_err e = te ? te : call_failed(url, rv, msg);
        tn_rpc_client_close(c);
        return e;
    }
    *out = c;
    return TN_OK;
}

tn_err tn_rpc_client_call(tn_rpc_client *c, const void *req, size_t len, int timeout_ms,
                          void **rep, size_t *rlen, tn_errmsg *msg)
{
    pthread_mutex_lock(&c->mu);
    if (timeout_ms != c->timeout_ms) { /* callers keep to one: set once */
        set_bounds(c->sock, timeout_ms, timeout_ms);
        c->timeout_ms = timeout_ms;
    }
    tn_err e = exchange(c->sock, 0, c->url, req, len, rep, rlen, msg);
    pthread_mutex_unlock(&c->mu);
    return e;
}

void tn_rpc_client_close(tn_rpc_client *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    pthread_mutex_destroy(&c->mu);
    free(c->url);
    free(c);
}

tn_err tn_rpc_call_tls(const char *url, const tn_rpc_tls *tls, const void *req, size_t len,
                       int timeout_ms, void **rep, size_t *rlen, tn_errmsg *msg)
{
    return call(url, tls, req, len, timeout_ms, false, rep, rlen, msg);
}

tn_err tn_rpc_call_bounded(const char *url, const tn_rpc_tls *tls, const void *req, size_t len,
                           int timeout_ms, void **rep, size_t *rlen, tn_errmsg *msg)
{
    return call(url, tls, req, len, timeout_ms, true, rep, rlen, msg);
}

tn_err tn_rpc_call(const char *url, const void *req, size_t len, int timeout_ms, void **rep,
                   size_t *rlen, tn_errmsg *msg)
{
    return tn_rpc_call_tls(url, NULL, req, len, timeout_ms, rep, rlen, msg);
}

/* Request/reply over nng: a server thread answering one request at a time, and a
 * one-shot client call.
 *
 * nng 1.5.2 (nanomsg/nng#1518, fixed in 1.6.0): a client that hangs up on an ipc://
 * listener before the SP header exchange ends (killed while dialing, a bare connect, or
 * another process's nng_listen checking whether the path is live) leaves that listener
 * handing nothing over ever after. So an ipc server probes its own listener when idle, as
 * a req0 dialer, and listens again when the probe's pipe does not reach the socket. */
#include "rpc.h"

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
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

#include "log.h"

#define PROBE_EVERY_MS 1000 /* at most this often, and only when idle */
#define PROBE_WAIT_MS  500  /* for the probe's pipe: it comes in well under 1 ms */

struct tn_rpc_server {
    nng_socket sock;
    pthread_t thread;
    atomic_bool stop;
    tn_rpc_handler fn;
    void *arg;
    /* ipc:// only, touched by the server's thread alone once it runs */
    char *url; /* NULL: nothing to probe */
    nng_listener lis;
    bool listening;     /* lis is open */
    dev_t dev;          /* the socket file lis made: closing lis unlinks the path, */
    ino_t ino;          /* so it is closed only while the path is still this file */
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
    struct stat st;
    return stat(s->url + 6, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->dev &&
           st.st_ino == s->ino;
}

/* Listen on s->url and note which file that made. */
static int listen_ipc(tn_rpc_server *s)
{
    int rv = nng_listen(s->sock, s->url, &s->lis, 0);
    struct stat st;
    s->listening = rv == 0;
    if (rv == 0 && stat(s->url + 6, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    return rv;
}

/* Counts the pipes the socket took in: what a stuck listener no longer hands over. */
static void on_pipe_added(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    tn_rpc_server *s = arg;
    atomic_fetch_add(&s->added, 1);
}

/* Dial our own socket file as a req0 peer would and wait up to wait_ms for a pipe to
 * reach the socket. The header exchange alone proves nothing: a stuck listener still
 * does it, then keeps the pipe. False only when the listener did not hand one over;
 * local failures (no fd, a path too long for sockaddr_un) are not its fault. */
static bool listener_answers(tn_rpc_server *s, int wait_ms)
{
    const char *path = s->url + 6;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return true;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return true;
    unsigned before = atomic_load(&s->added);
    /* 0 'S' 'P' 0, the protocol (req0: 0x30) big-endian, 2 reserved bytes */
    static const unsigned char hello[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};
    /* a full backlog (EAGAIN) also means nobody accepts */
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              send(fd, hello, sizeof(hello), MSG_NOSIGNAL) == (ssize_t)sizeof(hello);
    bool added = false;
    for (int64_t end = now_ms() + wait_ms; ok && !added && now_ms() < end;) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        added = atomic_load(&s->added) != before;
    }
    /* hanging up once the pipe is in is an ordinary disconnect */
    close(fd);
    return added;
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
    if (listener_answers(s, PROBE_WAIT_MS) || !path_is_ours(s))
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
        void *buf = NULL;
        size_t len = 0;
        int rv = nng_recv(s->sock, &buf, &len, NNG_FLAG_ALLOC);
        if (rv == NNG_ETIMEDOUT) {
            if (s->url && now_ms() >= s->next_probe) {
                check_ipc(s);
                s->next_probe = now_ms() + PROBE_EVERY_MS;
            }
            continue;
        }
        if (rv != 0)
            break;
        void *rep = NULL;
        size_t rlen = 0;
        s->fn(s->arg, buf, len, &rep, &rlen);
        nng_free(buf, len);
        rv = nng_send(s->sock, rep ? rep : "", rep ? rlen : 0, 0);
        if (rv != 0)
            tn_warn("rpc", "msg=\"reply not sent\" why=\"%s\"", nng_strerror(rv));
        free(rep);
    }
    return NULL;
}

tn_err tn_rpc_serve(const char *url, tn_rpc_handler fn, void *arg, tn_rpc_server **out,
                    tn_errmsg *msg)
{
    tn_rpc_server *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    s->fn = fn;
    s->arg = arg;
    bool ipc = strncmp(url, "ipc://", 6) == 0;
    if (ipc && !(s->url = strdup(url))) {
        free(s);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    }
    int rv = nng_rep0_open(&s->sock);
    if (rv == 0) {
        nng_setopt_ms(s->sock, NNG_OPT_RECVTIMEO, 200);
        nng_setopt_size(s->sock, NNG_OPT_RECVMAXSZ, TN_RPC_MAX_MSG);
        if (ipc)
            rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, on_pipe_added, s);
    }
    if (rv == 0) {
        rv = ipc ? listen_ipc(s) : nng_listen(s->sock, url, NULL, 0);
        if (rv == NNG_EADDRINUSE && ipc) {
            /* a socket file left by a dead process: nobody answers on it, replace it */
            void *r = NULL;
            size_t rl;
            if (tn_rpc_call(url, "", 0, 300, &r, &rl, NULL) == TN_ERR_TIMEOUT || r == NULL) {
                (void)unlink(url + 6);
                rv = listen_ipc(s);
            }
            free(r);
        }
    }
    if (rv != 0) {
        tn_err e = from_nng(rv);
        tn_errmsg_set(msg, e, "%s: cannot listen: %s%s", url, nng_strerror(rv),
                      rv == NNG_EADDRINUSE ? " (another tern is serving there)" : "");
        nng_close(s->sock);
        free(s->url);
        free(s);
        return e;
    }
    if (pthread_create(&s->thread, NULL, serve, s) != 0) {
        nng_close(s->sock);
        free(s->url);
        free(s);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the rpc thread");
    }
    *out = s;
    return TN_OK;
}

void tn_rpc_server_free(tn_rpc_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    nng_close(s->sock);
    free(s->url);
    free(s);
}

tn_err tn_rpc_call(const char *url, const void *req, size_t len, int timeout_ms, void **rep,
                   size_t *rlen, tn_errmsg *msg)
{
    nng_socket sock;
    int rv = nng_req0_open(&sock);
    if (rv != 0)
        return tn_errmsg_set(msg, from_nng(rv), "cannot open a socket: %s", nng_strerror(rv));
    nng_setopt_ms(sock, NNG_OPT_RECVTIMEO, timeout_ms);
    nng_setopt_ms(sock, NNG_OPT_SENDTIMEO, timeout_ms);
    nng_setopt_ms(sock, NNG_OPT_REQ_RESENDTIME, timeout_ms > 0 ? timeout_ms * 2 : 60000);
    nng_setopt_size(sock, NNG_OPT_RECVMAXSZ, TN_RPC_MAX_MSG);
    rv = nng_dial(sock, url, NULL, 0);
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
        tn_errmsg_set(msg, e, "%s: %s", url,
                      rv == NNG_ECONNREFUSED || rv == NNG_ENOENT ?
                          "nothing listens there (is the master running? start it with "
                          "`tern master` or `tern standalone`, or pass --master URL)" :
                          nng_strerror(rv));
    }
    nng_close(sock);
    return e;
}

/* Request/reply over nng: a server thread answering one request at a time, and a
 * one-shot client call. */
#include "transport/rpc.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

struct tn_rpc_server {
    nng_socket sock;
    pthread_t thread;
    atomic_bool stop;
    tn_rpc_handler fn;
    void *arg;
};

static tn_err from_nng(int rv)
{
    switch (rv) {
    case 0: return TN_OK;
    case NNG_ENOMEM: return TN_ERR_NOMEM;
    case NNG_ETIMEDOUT: return TN_ERR_TIMEOUT;
    case NNG_ECLOSED: return TN_ERR_CLOSED;
    case NNG_EADDRINUSE: return TN_ERR_BUSY;
    case NNG_ECONNREFUSED: case NNG_ENOENT: return TN_ERR_PEER;
    case NNG_EMSGSIZE: return TN_ERR_TOOBIG;
    case NNG_EPERM: return TN_ERR_PERM;
    default: return TN_ERR_IO;
    }
}

static void *serve(void *p)
{
    tn_rpc_server *s = p;
    while (!atomic_load(&s->stop)) {
        void *buf = NULL;
        size_t len = 0;
        int rv = nng_recv(s->sock, &buf, &len, NNG_FLAG_ALLOC);
        if (rv == NNG_ETIMEDOUT)
            continue;
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
    int rv = nng_rep0_open(&s->sock);
    if (rv == 0) {
        nng_setopt_ms(s->sock, NNG_OPT_RECVTIMEO, 200);
        nng_setopt_size(s->sock, NNG_OPT_RECVMAXSZ, TN_RPC_MAX_MSG);
        rv = nng_listen(s->sock, url, NULL, 0);
        if (rv == NNG_EADDRINUSE && strncmp(url, "ipc://", 6) == 0) {
            /* a socket file left by a dead process: nobody answers on it, replace it */
            void *r = NULL;
            size_t rl;
            if (tn_rpc_call(url, "", 0, 300, &r, &rl, NULL) == TN_ERR_TIMEOUT ||
                r == NULL) {
                (void)unlink(url + 6);
                rv = nng_listen(s->sock, url, NULL, 0);
            }
            free(r);
        }
    }
    if (rv != 0) {
        tn_err e = from_nng(rv);
        tn_errmsg_set(msg, e, "%s: cannot listen: %s%s", url, nng_strerror(rv),
                      rv == NNG_EADDRINUSE ? " (another tern is serving there)" : "");
        nng_close(s->sock);
        free(s);
        return e;
    }
    if (pthread_create(&s->thread, NULL, serve, s) != 0) {
        nng_close(s->sock);
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
                      rv == NNG_ECONNREFUSED || rv == NNG_ENOENT
                          ? "nothing listens there (is the master running? start it with "
                            "`tern master` or `tern standalone`, or pass --master URL)"
                          : nng_strerror(rv));
    }
    nng_close(sock);
    return e;
}

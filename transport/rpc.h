/* Request/reply over nng (req0/rep0): the control channel between the `tern` client
 * and the master, and between the client and a worker (task logs). Each request reaches
 * the handler with its peer (tn_rpc_peer): who it is comes from the connection. One request, one
 * reply; the payloads are the caller's bytes (msgpack maps, see core/ctl.h). */
#ifndef TN_RPC_H
#define TN_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TN_RPC_MAX_MSG (64u << 20) /* bound on a request or a reply */

typedef struct tn_rpc_server tn_rpc_server;

/* Called from the server's own thread, one request at a time. Sets *rep to a malloc'd
 * reply (the server frees it after sending) and *rlen; *rep = NULL sends an empty one. */
typedef void (*tn_rpc_handler)(void *arg, const void *req, size_t len, void **rep,
                               size_t *rlen);

/* Who sent a request, as the connection tells it (never as the request claims). */
typedef enum tn_rpc_peer_kind {
    TN_RPC_PEER_INPROC = 0, /* this process */
    TN_RPC_PEER_IPC,        /* a process on this host: uid and pid from SO_PEERCRED */
    TN_RPC_PEER_TCP,        /* plain tcp: nothing is known but the address */
    TN_RPC_PEER_TLS, /* tls+tcp: tls_verified when it showed a certificate the CA signed */
} tn_rpc_peer_kind;

typedef struct tn_rpc_peer {
    tn_rpc_peer_kind kind;
    int64_t uid, pid;  /* ipc; -1 when unknown */
    bool tls_verified; /* tls+tcp */
    char addr[64];     /* tcp, tls+tcp: "1.2.3.4:5678" */
} tn_rpc_peer;

/* TLS files (PEM) for tls+tcp:// URLs. A server requires the CA and its own certificate
 * and key, and verifies a client's certificate when one is shown (a client without one
 * may still authenticate with a token). A client verifies the server against the CA and
 * shows its own certificate when given one. */
typedef struct tn_rpc_tls {
    const char *ca_file, *cert_file, *key_file;
} tn_rpc_tls;

/* The handler of tn_rpc_serve_peer: as tn_rpc_handler, with the peer of the request. */
typedef void (*tn_rpc_peer_handler)(void *arg, const tn_rpc_peer *peer, const void *req,
                                    size_t len, void **rep, size_t *rlen);

/* Listen on url (ipc://, tcp://, inproc://) and serve until freed. An ipc:// socket
 * file left by a dead process is replaced; an ipc:// listener that stops handing over
 * connections (nng 1.5.2, see rpc.c) is replaced within about two seconds, as long as
 * the socket file is still the one it made. */
tn_err tn_rpc_serve(const char *url, tn_rpc_handler fn, void *arg, tn_rpc_server **out,
                    tn_errmsg *msg);
/* As tn_rpc_serve, with the peer of each request given to fn, and tls (NULL: none) for a
 * tls+tcp:// url. On ipc:// the socket file is made 0600 and a connection from another
 * uid than this process's (root excepted) is closed at once and logged. */
tn_err tn_rpc_serve_peer(const char *url, const tn_rpc_tls *tls, tn_rpc_peer_handler fn,
                         void *arg, tn_rpc_server **out, tn_errmsg *msg);
/* Stop serving (waits for the request in progress: the handler is not called after this
 * returns) and free. The socket's close is waited for a bounded time (5 s): nng was seen
 * to hang there, and the rest of it then ends on its own thread, with a warning logged,
 * or with the process. Accepts NULL. */
void tn_rpc_server_free(tn_rpc_server *s);

/* One call: dial url, send req, wait up to timeout_ms for the reply (malloc'd into *rep;
 * the caller frees it). TN_ERR_TIMEOUT when nobody answered: no master/worker there. */
tn_err tn_rpc_call(const char *url, const void *req, size_t len, int timeout_ms, void **rep,
                   size_t *rlen, tn_errmsg *msg);

/* As tn_rpc_call, over tls+tcp:// with tls (NULL: as tn_rpc_call). */
tn_err tn_rpc_call_tls(const char *url, const tn_rpc_tls *tls, const void *req, size_t len,
                       int timeout_ms, void **rep, size_t *rlen, tn_errmsg *msg);

/* As tn_rpc_call_tls, with the dial bounded too: the connection must be up within 100 ms
 * (or timeout_ms if smaller), the reply within timeout_ms; also against a peer that
 * accepts connections but does not answer (a stopped process: a plain call waits up to
 * nng's 10 s negotiation timeout there). Nothing listening is a TN_ERR_TIMEOUT after
 * those 100 ms rather than an immediate refusal. For callers that poll a peer that may be
 * stopped (a standby pulling the leader's log), where a slow connection is retried. */
tn_err tn_rpc_call_bounded(const char *url, const tn_rpc_tls *tls, const void *req, size_t len,
                           int timeout_ms, void **rep, size_t *rlen, tn_errmsg *msg);

/* A client that keeps its connection, for a program that makes many calls: a call on it
 * costs one message each way, where tn_rpc_call also pays a connection's set-up and
 * teardown (most of a call's tail on a busy machine). */
typedef struct tn_rpc_client tn_rpc_client;
/* Dial url (with tls for tls+tcp://; may be NULL) and wait for the connection: nothing
 * listening is an error here (TN_ERR_PEER), as for tn_rpc_call. */
tn_err tn_rpc_client_open(const char *url, const tn_rpc_tls *tls, tn_rpc_client **out,
                          tn_errmsg *msg);
/* One call, as tn_rpc_call (one at a time: concurrent callers wait their turn). If the
 * connection broke, nng dials again in the background and the call waits for it up to
 * timeout_ms; a request is never sent twice within a call. */
tn_err tn_rpc_client_call(tn_rpc_client *c, const void *req, size_t len, int timeout_ms,
                          void **rep, size_t *rlen, tn_errmsg *msg);
/* Close the connection and free. Accepts NULL. */
void tn_rpc_client_close(tn_rpc_client *c);

#endif

/* Request/reply over nng (req0/rep0): the control channel between the `tern` client
 * and the master, and between the client and a worker (task logs). One request, one
 * reply; the payloads are the caller's bytes (msgpack maps, see core/ctl.h). */
#ifndef TN_RPC_H
#define TN_RPC_H

#include <stddef.h>

#include "err.h"

#define TN_RPC_MAX_MSG (64u << 20) /* bound on a request or a reply */

typedef struct tn_rpc_server tn_rpc_server;

/* Called from the server's own thread, one request at a time. Sets *rep to a malloc'd
 * reply (the server frees it after sending) and *rlen; *rep = NULL sends an empty one. */
typedef void (*tn_rpc_handler)(void *arg, const void *req, size_t len, void **rep,
                               size_t *rlen);

/* Listen on url (ipc://, tcp://, inproc://) and serve until freed. An ipc:// socket
 * file left by a dead process is replaced; an ipc:// listener that stops handing over
 * connections (nng 1.5.2, see rpc.c) is replaced within about two seconds, as long as
 * the socket file is still the one it made. */
tn_err tn_rpc_serve(const char *url, tn_rpc_handler fn, void *arg, tn_rpc_server **out,
                    tn_errmsg *msg);
/* Stop serving (waits for the request in progress) and free. Accepts NULL. */
void tn_rpc_server_free(tn_rpc_server *s);

/* One call: dial url, send req, wait up to timeout_ms for the reply (malloc'd into *rep;
 * the caller frees it). TN_ERR_TIMEOUT when nobody answered: no master/worker there. */
tn_err tn_rpc_call(const char *url, const void *req, size_t len, int timeout_ms, void **rep,
                   size_t *rlen, tn_errmsg *msg);

#endif

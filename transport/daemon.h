/* What the master's and the worker's daemons share around their loop thread. */
#ifndef TN_DAEMON_H
#define TN_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>

#include "rpc.h"
#include "transport.h"

/* Stop a daemon's loop, in the order both need: first nothing new comes in (the control
 * server stops, waiting for the request in progress; the receiver closes, so no receive
 * callback is dispatched after it), then the loop is told to stop (*stop), woken
 * (wake(arg)) and joined, and last the receiver is freed (a callback dispatched before the
 * close may run until then). joined(arg), when given, runs once the loop is joined and
 * before the receiver is freed: what must not wait for a socket's close, which can stall
 * in nng for seconds. What the daemon flushes and frees afterwards is its own. rpc may be
 * NULL (a daemon whose control handlers do not wait on its loop frees it after, past
 * joined) and *rx a zeroed endpoint. */
void tn_daemon_stop(tn_rpc_server *rpc, tn_tx *rx, atomic_bool *stop, void (*wake)(void *arg),
                    void (*joined)(void *arg), void *arg, pthread_t thread);

#endif

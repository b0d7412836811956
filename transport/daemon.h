/* How a daemon stops its loop thread. */
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
 * close may run until then). What the daemon flushes and frees afterwards is its own.
 * rpc may be NULL and *rx a zeroed endpoint. The master's order: its control server's
 * handlers wait on its loop. (The worker's handler does not, so it joins its loop before
 * the control server, whose close may stall, and frees its spares in between.) */
void tn_daemon_stop(tn_rpc_server *rpc, tn_tx *rx, atomic_bool *stop, void (*wake)(void *arg),
                    void *arg, pthread_t thread);

#endif

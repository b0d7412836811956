/* Log shipping between the masters of a cluster (docs/HA.md).
 *
 * The leader serves its committed log on a request/reply URL (--ship URL; default
 * ipc://DATA/master.ship): a request is a control request (transport/ctl.h) with cmd
 * "log.pull", name the standby's name and offset the first seq it wants; the reply's data
 * is a batch of events (core/log/follow.h), its offset the leader's last seq. Asking from
 * seq S says the standby holds S-1 durably: that is its acknowledgement. Who may pull:
 * over ipc this user (or root), over tls+tcp a client certificate the CA signed; plain
 * tcp only with --insecure.
 *
 * The standby pulls in a loop and appends what it gets to its own log (tn_evlog_follow):
 * its store is the leader's log up to some seq, checked event by event. */
#ifndef TN_SHIP_H
#define TN_SHIP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "evlog.h"
#include "rpc.h"

typedef struct tn_ship tn_ship;

/* Serve the log of store `log` (read through committed snapshots) on url. sync_n: how
 * many standbys must hold a batch before tn_ship_gate lets its effects go. */
tn_err tn_ship_serve(const char *url, const tn_rpc_tls *tls, bool insecure, tn_evlog *log,
                     uint32_t sync_n, tn_ship **out, tn_errmsg *msg);
/* Stop: a gate waiting returns, and every later one at once; the log is served no more.
 * The object stays valid (for a gate that loaded it) until tn_ship_free. Never blocks for
 * long: the server's socket is closed within a bound (tn_rpc_server_free). NULL ok. */
void tn_ship_close(tn_ship *s);
/* Close (when not yet) and free: the caller has made sure no gate uses s any more (the
 * engine that calls it stopped). NULL ok. */
void tn_ship_free(tn_ship *s);
/* The engine's gate (tn_engine_gate): returns once sync_n standbys asked past last_seq. */
void tn_ship_gate(void *arg, uint64_t last_seq);
/* Standbys heard from in the last 10 s, and how many of them hold seq. */
uint32_t tn_ship_standbys(tn_ship *s, uint64_t seq, uint32_t *holding);
/* The last seq committed in the log served (read in a snapshot: any thread). */
uint64_t tn_ship_last_seq(tn_ship *s);

/* The standby's side: follow the leader whose ship URL `url(arg)` gives (it may change:
 * asked before each pull) into log, until stop is set. */
typedef struct tn_follower tn_follower;
typedef bool (*tn_leader_url_fn)(void *arg, char *url, size_t len);
typedef struct tn_follower_opts {
    const char *name;     /* this standby's name, for the leader's books */
    const char *data_dir; /* the store (a follower store is made when there is none) */
    tn_rpc_tls tls;
    tn_leader_url_fn leader_url;
    void *arg;
    /* after each batch appended (its last seq), from the follower's thread */
    void (*on_seq)(void *arg, uint64_t seq);
} tn_follower_opts;
tn_err tn_follower_start(const tn_follower_opts *o, tn_follower **out, tn_errmsg *msg);
/* Stop pulling, wait for the holds to end, close the log; the last seq appended. NULL ok
 * (returns 0). */
uint64_t tn_follower_stop(tn_follower *f);
/* The last seq appended so far. */
uint64_t tn_follower_seq(tn_follower *f);
/* The leader's last seq as its last reply said (0 before one): the lag is this minus
 * tn_follower_seq. */
uint64_t tn_follower_leader_seq(tn_follower *f);

/* A reader's hold on the follower's log, for the standby's reads (read transactions on
 * tn_evlog_store of it, from any thread; never the log's own caches, which the follower's
 * thread owns): NULL when there is none now (stopping, or a diverged log being replaced:
 * ask again). While a hold lasts, tn_follower_stop (a takeover) and the replacement of a
 * diverged log wait before they close it; every non-NULL hold ends with one
 * tn_follower_release, and f stays valid until then. seq (may be NULL): the last seq
 * appended when the hold began (what the reads see, or a little more). */
tn_evlog *tn_follower_hold(tn_follower *f, uint64_t *seq);
void tn_follower_release(tn_follower *f);

#endif

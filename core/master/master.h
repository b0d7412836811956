/* The master daemon: the engine in its own thread, the workers it dispatches to (over
 * the transport), and the control socket the `tern` client talks to.
 *
 * Threads: the engine thread owns the engine and the event log; transport threads turn
 * worker messages into engine inputs; the control thread answers clients (reads the
 * store directly, and hands commands to the engine thread). */
#ifndef TN_MASTER_H
#define TN_MASTER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "def.h"
#include "evlog.h"
#include "util.h"

typedef struct tn_master tn_master;

typedef enum tn_selector {
    TN_SELECT_LOWER_WEIGHT = 0, /* the worker with the lowest load weight (default) */
    TN_SELECT_RANDOM,
    TN_SELECT_ROUND_ROBIN,
} tn_selector;

typedef struct tn_master_opts {
    const char *data_dir;
    const char *id;         /* "master:ID" in the log; default "local" */
    const char *listen_url; /* where workers send reports; required unless embedded */
    const char *ctl_url;    /* the control socket; default ipc://DATA/master.ctl */
    const char *tls_cert, *tls_key, *tls_ca; /* for tls+tcp:// */
    bool ctl_insecure; /* accept a plain tcp:// control URL (warned at every start) */
    uint64_t heartbeat_timeout_ms; /* a silent worker is lost after this; default 10000 */
    tn_selector selector;
    const char *faults; /* fault injection on what the master sends (TERN_FAULTS syntax) */
    /* Membership bounds: at most max_workers workers (default 1024); a worker silent for
     * forget_after_ms (default 10 x heartbeat_timeout_ms) is forgotten, its dialer closed. */
    uint32_t max_workers;
    uint64_t forget_after_ms;
    /* Plain tcp: peers are not authenticated; their claims are taken as they come. */
    bool insecure;
    tn_evlog_opts log;
    /* Alerts for workflows without an `alerts:` block, and whether a definition's command
     * alerts may run on this host (core/master/alerts.h). */
    const tn_def_alert *alerts;
    uint32_t nalerts;
    bool allow_alert_commands;
    /* The HTTP API and /metrics (docs/API.md): HOST:PORT, off when NULL; https with
     * http_cert and http_key, and a client certificate of http_ca required when given. */
    const char *http_addr, *http_cert, *http_key, *http_ca;
    /* A cluster of masters (--zk): the leader epoch its frames carry from the start, and
     * whether it starts passive (sending nothing to workers until tn_master_set_passive). */
    uint64_t epoch;
    bool passive;
    /* Between a batch's commit and its effects (tn_engine_gate): --sync-standbys. */
    void (*gate)(void *arg, uint64_t last_seq);
    void *gate_arg;
    const char *ui_dir; /* the web UI's files, served with the API (NULL: no UI) */
    /* More of /metrics (a cluster's gauges, ha.c), appended after the master's own. */
    void (*metrics)(void *arg, tn_sb *out);
    void *metrics_arg;
} tn_master_opts;

/* Open the store, recover, start the threads. */
tn_err tn_master_start(const tn_master_opts *opts, tn_master **out, tn_errmsg *msg);
/* Stop the threads (the engine finishes its batch), close everything. Accepts NULL. */
void tn_master_stop(tn_master *m);
const char *tn_master_ctl_url(const tn_master *m);
/* The port of the HTTP API (the one the kernel chose for port 0); 0 when it is off. */
int tn_master_http_port(const tn_master *m);
/* The cluster id (the store's id, tn_evlog_cluster_id) carried in every frame. */
const char *tn_master_cluster_id(const tn_master *m);

/* The engine the master runs (its own thread runs it: use tn_engine_submit_wait). */
struct tn_engine *tn_master_engine(tn_master *m);

/* The leader epoch every frame to workers carries (opts.epoch). */
uint64_t tn_master_epoch(tn_master *m);
/* Passive: nothing is sent to workers (a leader whose ZooKeeper session is in doubt);
 * dispatches wait and go when it is active again. */
void tn_master_set_passive(tn_master *m, bool passive);
/* Whether a worker reported a leader epoch newer than ours (the master went passive). */
bool tn_master_fenced(tn_master *m);
/* The registry says worker `name` is gone (its ZooKeeper session ended): it is lost now,
 * as after a heartbeat timeout, and its attempts fail over. */
void tn_master_worker_gone(tn_master *m, const char *name);
/* Calls fn for each worker alive now (by name). */
void tn_master_workers_each(tn_master *m, void (*fn)(void *arg, const char *name), void *arg);

/* Parse "random|round_robin|lower_weight"; -1 when unknown. */
int tn_selector_parse(const char *s);

/* The default control URL of a data directory: ipc://ABS_DATA/master.ctl (buf >= 4200). */
void tn_master_default_ctl(const char *data_dir, char *buf, size_t len);

#endif

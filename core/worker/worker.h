/* The worker daemon: takes dispatches from the master, runs each attempt contained
 * (core/proc.h), kills for real, and reports ACCEPTED / RESULT / KILL_RESULT through a
 * durable outbox, resent until the master says PERSISTED.
 *
 * Threads: transport threads queue what the master sends; one worker thread does
 * everything else (spawn, reap, kill ladder, outbox, heartbeats); the log server answers
 * `tern logs` from its own thread. */
#ifndef TN_WORKER_H
#define TN_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef struct tn_worker tn_worker;

typedef struct tn_worker_opts {
    const char *data_dir;    /* outbox, exec dirs, logs */
    const char *name;        /* a label (heartbeats, `tern workers`); default: the host name.
                              * The identity is DATA/worker-id, made at the first start */
    const char *master_url;  /* where reports go */
    uint64_t master_epoch;   /* --zk: the leader epoch of master_url (0: unknown), kept to
                              * answer that leader FENCED once it is fenced */
    const char *listen_url;  /* where dispatches come */
    const char *ctl_url;     /* where `tern logs` reads logs; default ipc://DATA/worker.ctl */
    const char *groups;      /* comma-separated worker groups; default "default" */
    uint32_t slots;          /* attempts at once; default 4 */
    uint32_t max_load_milli; /* refuse new work above this 1-min load * 1000; 0 = no limit */
    uint64_t mem_reserve;    /* bytes of memory kept free; default 0 */
    uint64_t heartbeat_ms;   /* default 1000 */
    uint64_t map_max;        /* the outbox store grows up to this; 0 = the store's default */
    const char *cgroup_root; /* NULL = discover; "" = never (session + /proc walk) */
    const char *tls_cert, *tls_key, *tls_ca;
    /* Bind to this cluster at start (DATA/cluster-id rewritten; reports of the previous
     * cluster still in the outbox are dropped): the standalone, whose worker belongs to
     * the master in its process. NULL: the worker binds to the cluster
     * of the first frame it accepts and refuses frames of any other. */
    const char *cluster_id;

    /* tls+tcp: DISPATCH and KILL are taken from a peer whose certificate says OU=master;
     * with master_name, from the one whose CN is master_name instead. */
    const char *master_name;
    /* worker variables passed to every task (shell identifiers); tasks get nothing else of
     * the worker's environment but its TERN_* variables (taskenv.h) */
    const char *const *pass_env;
    uint32_t npass_env;
    uint32_t pids_max; /* processes a task may have at once when its definition says 0;
                        * 0 = 4096 */
    /* task log retention (retention.h), applied every minute: a finished attempt's log and
     * exec dir go when older than this / the oldest while all logs are over this; 0 = no */
    uint64_t log_retention_ms, log_max_bytes;
    /* Application kill hooks (killhook.h), "REGEX=COMMAND" each: when an attempt is killed
     * (a kill, a timeout, a stop, a newer attempt, the worker's own stop), once its
     * processes are gone, the tail of its log is searched and COMMAND run once per distinct
     * id found; KILL_RESULT waits for them and says what ran and how it ended. */
    const char *const *kill_hooks;
    uint32_t nkill_hooks;
    uint64_t kill_hook_timeout_ms; /* per command; 0 = 30 s */
    /* Prometheus /metrics on HOST:PORT (docs/API.md), off when NULL. Read from what the
     * worker thread publishes (atomics), never from its own memory. */
    const char *metrics_addr;
} tn_worker_opts;

/* TN_ERR_BUSY (with the holder's pid) when another worker uses the same data dir. */
tn_err tn_worker_start(const tn_worker_opts *opts, tn_worker **out, tn_errmsg *msg);
/* Send reports and heartbeats to url from now on (a new leader of a cluster of masters,
 * of leader epoch `epoch`, which fences older leaders here). Any thread. */
void tn_worker_set_master(tn_worker *w, const char *url, uint64_t epoch);
/* Stop: tasks still running are killed (SIGTERM, 2 s grace, SIGKILL) and their results
 * kept in the outbox for the master; a worker that dies instead leaves them to its next
 * start, which finds, kills and reports them. */
void tn_worker_stop(tn_worker *w);
/* The port of /metrics (the one the kernel chose for port 0); 0 when off. */
int tn_worker_metrics_port(const tn_worker *w);

#endif

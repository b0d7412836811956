/* Masters and workers of one cluster in ZooKeeper: registration, leader election, the
 * cluster epoch, leader discovery and the workers' registry.
 *
 * Layout under /tern/CLUSTER/:
 *   masters/m-NNNNNNNNNN  ephemeral sequential, one per live master: "NAME\nSEQ\nINFO"
 *                         (SEQ: the last seq of its log, refreshed by tn_zk_set_seq)
 *   epoch                 persistent, the decimal cluster epoch; bumped by each takeover
 *                         with a versioned write, so two leaders never hold one epoch
 *   leader                ephemeral, written by the leader: "EPOCH\nNAME\nINFO"
 *   workers/NAME          ephemeral, one per live worker: its INFO (URL, groups, slots)
 *
 * Election (ZooKeeper's recipe): the master whose masters/ node has the lowest sequence
 * leads; each other watches the node just before its own, so one deletion wakes one
 * master. A master first in line whose SEQ is below another candidate's defers: it goes
 * to the back of the line (a new node), so the candidate with the longest log leads.
 *
 * Threads: ZooKeeper's own, and one of this module's that does every blocking call
 * (ZooKeeper's watchers must not block). Callbacks run on that thread. */
#ifndef TN_ZK_H
#define TN_ZK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct tn_zk tn_zk;

typedef enum tn_zk_role {
    TN_ZK_NONE = 0,  /* not campaigning (a worker's or a client's handle) */
    TN_ZK_STANDBY,   /* in line behind the leader */
    TN_ZK_LEADER,    /* leads with the epoch given */
    TN_ZK_SUSPENDED, /* disconnected: the session may be gone; a leader must not act */
    TN_ZK_LOST,      /* the session expired: whatever it led is led by another now */
} tn_zk_role;

const char *tn_zk_role_name(tn_zk_role r);

typedef struct tn_zk_opts {
    const char *hosts;   /* "HOST:PORT,HOST:PORT" */
    const char *cluster; /* 1..64 bytes of [A-Za-z0-9_.-] */
    const char *name;    /* this member's name */
    const char *info;    /* its registration data (URLs...), opaque here; may be NULL */
    uint32_t session_ms; /* the session timeout asked for; default 6000 */
    /* A change of role (from this module's thread). */
    void (*on_role)(void *arg, tn_zk_role role, uint64_t epoch);
    /* The workers' registry changed (leader only; from this module's thread). */
    void (*on_workers)(void *arg);
    void *arg;
} tn_zk_opts;

/* Connect (waiting at most the session timeout), create the cluster's paths. */
tn_err tn_zk_open(const tn_zk_opts *o, tn_zk **out, tn_errmsg *msg);
/* Leave: the ephemeral nodes go at once (a successor need not wait for a timeout). NULL ok. */
void tn_zk_close(tn_zk *z);

/* Join the election as a master whose log ends at seq. After a session expiry the module
 * opens a new session and joins again (as a standby, behind the new leader). */
tn_err tn_zk_campaign(tn_zk *z, uint64_t seq, tn_errmsg *msg);
/* The role now, and the epoch it leads with (0 when not leading). */
tn_zk_role tn_zk_role_get(tn_zk *z, uint64_t *epoch);
/* Publish this master's last seq (read by candidates deciding whether to defer). */
void tn_zk_set_seq(tn_zk *z, uint64_t seq);

/* The current leader: its epoch, name and info (from the leader node). TN_ERR_NOENT when
 * there is none. */
tn_err tn_zk_leader(tn_zk *z, uint64_t *epoch, char *name, size_t nlen, char *info, size_t ilen,
                    tn_errmsg *msg);
/* The cluster epoch stored now (0 before any leader). */
tn_err tn_zk_epoch(tn_zk *z, uint64_t *epoch, tn_errmsg *msg);

/* Register this member as a worker (ephemeral workers/NAME holding info); registered
 * again after a session expiry. */
tn_err tn_zk_worker_register(tn_zk *z, tn_errmsg *msg);
/* The registered workers: calls fn for each (name, info); arms the on_workers watch. */
tn_err tn_zk_workers(tn_zk *z, void (*fn)(void *arg, const char *name, const char *info),
                     void *arg, tn_errmsg *msg);

/* The session id (for logs), and sessions opened so far (1 + expiries recovered). */
int64_t tn_zk_session(tn_zk *z);
uint32_t tn_zk_sessions(tn_zk *z);

#endif

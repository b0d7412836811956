/* A master in a cluster of masters coordinated by ZooKeeper (`tern master --zk HOSTS
 * --cluster NAME`; docs/HA.md). Each master registers and joins the election (zk.h). A
 * standby follows the leader's log into its own store (ship.h); the leader runs the
 * master (master.h) on its store and serves its log to the standbys. When the leader's
 * session ends, the next in line bumps the epoch, stops following, opens its engine (the
 * recovery of a restart: instances, timers, schedules, attempts reconciled with their
 * workers) and leads; its frames carry the new epoch, which fences the old leader at every
 * worker. A leader whose session is in doubt stops sending to workers at once; one whose
 * session expired steps down and follows the new leader, dropping the tail of its log the
 * others never got. While it follows, a master's control URL and --http answer the reads of
 * the store from its replica and send the rest to the leader (standby.h). */
#ifndef TN_HA_H
#define TN_HA_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "master.h"
#include "zk.h"

typedef struct tn_ha tn_ha;

typedef struct tn_ha_opts {
    tn_master_opts master; /* data_dir, id (the member's name: unique in the cluster)... */
    const char *zk;        /* HOST:PORT,... */
    const char *cluster;
    const char *ship_url;   /* where standbys pull our log when we lead; default
                           * ipc://DATA/master.ship */
    uint32_t sync_standbys; /* a batch's effects wait for this many standbys to hold it */
    uint32_t session_ms;    /* ZooKeeper session timeout (default 6000) */
} tn_ha_opts;

tn_err tn_ha_start(const tn_ha_opts *o, tn_ha **out, tn_errmsg *msg);
/* Leave the cluster (a standby takes over at once) and stop. NULL ok. */
void tn_ha_stop(tn_ha *h);
tn_zk_role tn_ha_role(tn_ha *h, uint64_t *epoch);

/* The value of KEY in a registration's "KEY=VALUE KEY=VALUE" text. */
bool tn_ha_info_get(const char *info, const char *key, char *out, size_t len);

#endif

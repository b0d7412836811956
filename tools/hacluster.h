/* A cluster of masters for `tern bench ha` and `tern chaos failover`: a ZooKeeper started
 * from the Debian package (java) on a free loopback port, masters and workers as
 * processes of this binary, all in one directory (tools/bench_ha.c). Only the pids
 * started here are signalled. */
#ifndef TN_HACLUSTER_H
#define TN_HACLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TN_HAC_ZK_JAR "/usr/share/java/zookeeper.jar"

typedef struct tn_hac {
    char dir[600], self[4096], hosts[64];
    pid_t zk;
    pid_t procs[8];
    char names[8][16];
    int n;
} tn_hac;

void tn_hac_sleep(long ms);
/* A TCP port on 127.0.0.1 free at this moment (0 if none could be had). */
int tn_hac_free_port(void);
/* A standalone ZooKeeper in DIR/zk; false when it did not come up. */
bool tn_hac_zk_up(tn_hac *h);
/* `tern master --id ID` in cluster `cluster` with `sync` synchronous standbys (a 2 s
 * session), or a single master when cluster is NULL; its log in DIR/ID.log. */
void tn_hac_master_up(tn_hac *h, const char *id, const char *cluster, const char *sync);
/* `tern worker --name NAME`: of cluster `cluster`, or of the single master `single`. */
void tn_hac_worker_up(tn_hac *h, const char *name, const char *cluster, const char *single);
/* Signal a process by name and reap it (SIGSTOP/SIGCONT: not reaped). */
void tn_hac_down(tn_hac *h, const char *name, int sig);
void tn_hac_all_down(tn_hac *h);
/* `tern ARGS`: its stdout (malloc'd), NULL on a non-zero exit. */
char *tn_hac_tern(tn_hac *h, const char *args);
/* The leader's id, other than `other` (may be NULL), waiting up to ~15 s. */
bool tn_hac_leader(tn_hac *h, const char *cluster, const char *other, char *name, size_t len);
/* DIR/NAME.yaml: a workflow of `tasks` independent noop tasks. */
void tn_hac_noop_def(tn_hac *h, const char *name, int tasks);
/* Until `tern status ID --json` at ctl holds `want` (polled every 10 ms up to max_ms). */
bool tn_hac_wait_status(tn_hac *h, const char *ctl, const char *id, const char *want,
                        int max_ms);

#endif

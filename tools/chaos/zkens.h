/* `tern chaos failover`: a three-member ZooKeeper ensemble started from the Debian package
 * (java, QuorumPeerMain) in the run's directory on free loopback ports; its members are
 * killed and restarted one by one. Only the pids started here are signalled. */
#ifndef TN_CHAOS_ZKENS_H
#define TN_CHAOS_ZKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ZKENS_N 3

typedef struct zkens {
    char dir[600];
    int port[ZKENS_N], peer[ZKENS_N], elect[ZKENS_N];
    pid_t pid[ZKENS_N]; /* 0: down */
    char hosts[64];     /* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" */
} zkens;

/* Write each member's configuration under DIR/zkN and start all three; true once a
 * session opens (a failsafe bound of 120 s), false otherwise (members left are stopped). */
bool zkens_start(zkens *z, const char *dir);
/* SIGKILL member i and reap it; false when it is down already. */
bool zkens_kill(zkens *z, int i);
/* Start member i again (its data directory kept); false when it is up already. */
bool zkens_restart(zkens *z, int i);
/* How many members are up. */
int zkens_up(const zkens *z);
/* Stop every member (SIGTERM, SIGKILL after budget_ms); how many needed the SIGKILL. */
int zkens_stop(zkens *z, int budget_ms);

#endif

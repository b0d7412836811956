/* What the daemon commands (master, worker, standalone) share: they block SIGTERM and
 * SIGINT before any thread starts, and stop cleanly on the first one. */
#include <pthread.h>
#include <signal.h>

#include "log.h"
#include "cli.h"

const char *const tn_daemon_cfg_keys[] = {"data",
                                          "listen",
                                          "ctl",
                                          "id",
                                          "master",
                                          "name",
                                          "group",
                                          "selector",
                                          "tls-cert",
                                          "tls-key",
                                          "tls-ca",
                                          "no-cgroup",
                                          "heartbeat-timeout",
                                          "heartbeat",
                                          "slots",
                                          "max-load",
                                          "mem-reserve",
                                          "map-max",
                                          "pass-env",
                                          "pids-max",
                                          "config",
                                          NULL};

sigset_t tn_cli_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return set;
}

void tn_cli_wait_signal(sigset_t set)
{
    int sig;
    sigwait(&set, &sig);
    tn_info("tern", "msg=\"stopping\" signal=%s", sig == SIGTERM ? "TERM" : "INT");
}

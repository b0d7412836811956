/* What the daemon commands (master, worker, standalone) share: they block SIGTERM and
 * SIGINT before any thread starts, and stop cleanly on the first one. */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "log.h"
#include "cli.h"

const char *const tn_daemon_cfg_keys[] = {"data",        "listen",
                                          "ctl",         "id",
                                          "master",      "name",
                                          "group",       "selector",
                                          "tls-cert",    "tls-key",
                                          "tls-ca",      "insecure",
                                          "no-cgroup",   "heartbeat-timeout",
                                          "heartbeat",   "slots",
                                          "max-load",    "mem-reserve",
                                          "map-max",     "pass-env",
                                          "pids-max",    "config",
                                          "insecure",    "max-workers",
                                          "master-name", "http",
                                          "http-cert",   "http-key",
                                          "http-ca",     "metrics",
                                          NULL};

int tn_daemon_check_urls(const char *cmd, bool insecure, const char *const *urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!urls[i] || strncmp(urls[i], "tcp://", 6) != 0)
            continue;
        if (!insecure)
            return tn_cli_usage(cmd,
                                "%s: plain tcp is not authenticated: anyone who reaches the "
                                "port can run commands on the workers. Use tls+tcp:// with "
                                "--tls-ca/--tls-cert/--tls-key (make them with `tern cert`), "
                                "or pass --insecure on a network you trust",
                                urls[i]);
        tn_warn("tern",
                "msg=\"INSECURE: plain tcp, peers are not authenticated\" url=%s "
                "detail=\"anyone who reaches this port can forge workers, reports and "
                "dispatches; use tls+tcp (tern cert)\"",
                urls[i]);
    }
    return 0;
}

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

/* What the daemon commands (master, worker, standalone) share: they block SIGTERM and
 * SIGINT before any thread starts, and stop cleanly on the first one. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "killhook.h"
#include "log.h"
#include "cli.h"
#include "def.h"

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
                                          "insecure",
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
                                          "insecure",
                                          "max-workers",
                                          "master-name",
                                          "log-retention",
                                          "log-max-bytes",
                                          "alert-webhook",
                                          "alert-command",
                                          "alert-on",
                                          "allow-alert-commands",
                                          "kill-hook-timeout",
                                          "kill-hook",
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

int tn_daemon_check_kill_hooks(const char *cmd, const tn_opt_list *hooks)
{
    tn_kill_hooks *h = NULL;
    tn_errmsg em = {{0}};
    if (tn_kill_hooks_new(hooks->v, hooks->n, 0, &h, &em) != TN_OK)
        return tn_cli_usage(cmd, "--kill-hook: %s", em.text);
    tn_kill_hooks_free(h);
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

int tn_cli_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
        tn_warn("tern", "msg=\"NOTIFY_SOCKET is neither a path nor an abstract name\"");
        return -1;
    }
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = 0; /* an abstract socket: the name follows a NUL, unterminated */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    char msg[128];
    int len = snprintf(msg, sizeof(msg), "%s\nMAINPID=%ld", state, (long)getpid());
    ssize_t w = sendto(fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
    if (w != len)
        tn_warn("tern", "msg=\"cannot notify the service manager\" socket=%s", path);
    return w == len ? 0 : -1;
}

void tn_cli_wait_signal(sigset_t set)
{
    int sig;
    (void)tn_cli_notify("READY=1\nSTATUS=serving"); /* the caller started the daemon */
    sigwait(&set, &sig);
    tn_info("tern", "msg=\"stopping\" signal=%s", sig == SIGTERM ? "TERM" : "INT");
    (void)tn_cli_notify("STOPPING=1");
}

int tn_daemon_alerts(const char *cmd, const char *webhook, const char *command, const char *on,
                     tn_def_alert *out, uint32_t *n)
{
    uint32_t mask = 0;
    const char *p = on && *on ? on : "failure,timeout";
    while (*p) {
        size_t len = strcspn(p, ",");
        uint32_t bit = 0;
        for (unsigned k = 0; k < TN_DEF_ALERT__COUNT; k++)
            if (strlen(tn_def_alert_on_name((tn_def_alert_on)k)) == len &&
                !strncmp(p, tn_def_alert_on_name((tn_def_alert_on)k), len))
                bit = 1u << k;
        if (!bit)
            return tn_cli_usage(cmd,
                                "--alert-on: unknown outcome \"%.*s\" (failure, timeout, "
                                "success, kill, task_failure)",
                                (int)len, p);
        mask |= bit;
        p += len + (p[len] == ',');
    }
    if (webhook && strncmp(webhook, "http://", 7) && strncmp(webhook, "https://", 8))
        return tn_cli_usage(cmd, "--alert-webhook: \"%s\" is not an http:// or https:// URL",
                            webhook);
    *n = 0;
    if (webhook && *webhook)
        out[(*n)++] = (tn_def_alert){
            .on = (char *)(on ? on : ""), .mask = mask, .webhook = (char *)webhook};
    if (command && *command)
        out[(*n)++] = (tn_def_alert){
            .on = (char *)(on ? on : ""), .mask = mask, .command = (char *)command};
    return 0;
}

/* A master and a worker in one process over inproc (see standalone.h), and the default
 * control URL of a data directory, which the standalone's clients rely on. */
#include "standalone.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "worker.h"

struct tn_standalone {
    tn_master *m;
    tn_worker *w;
};

void tn_master_default_ctl(const char *data_dir, char *buf, size_t len)
{
    char abs[PATH_MAX];
    if (!realpath(data_dir, abs))
        snprintf(abs, sizeof(abs), "%s", data_dir);
    snprintf(buf, len, "ipc://%s/master.ctl", abs);
}

tn_err tn_standalone_start(const tn_standalone_opts *opts, tn_standalone **out, tn_errmsg *msg)
{
    tn_standalone *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory starting the standalone");
    /* the pid keeps two standalones of one host apart; inproc never leaves the process */
    char murl[128], wurl[128], wdata[4200];
    snprintf(murl, sizeof(murl), "inproc://tern-master-%d", (int)getpid());
    snprintf(wurl, sizeof(wurl), "inproc://tern-worker-%d", (int)getpid());
    snprintf(wdata, sizeof(wdata), "%s/worker", opts->data_dir);
    tn_master_opts mo = {.data_dir = opts->data_dir,
                         .id = "standalone",
                         .listen_url = murl,
                         .alerts = opts->alerts,
                         .nalerts = opts->nalerts,
                         .allow_alert_commands = opts->allow_alert_commands,
                         .http_addr = opts->http_addr,
                         .http_cert = opts->http_cert,
                         .http_key = opts->http_key,
                         .http_ca = opts->http_ca,
                         .ui_dir = opts->ui_dir};
    tn_err e = tn_master_start(&mo, &s->m, msg);
    if (e) {
        free(s);
        return e;
    }
    tn_worker_opts wo = {.data_dir = wdata,
                         .name = "local", /* a label: its identity is DATA/worker/worker-id */
                         .master_url = murl,
                         .listen_url = wurl,
                         .slots = opts->slots ? opts->slots : 4,
                         .cgroup_root = opts->no_cgroup ? "" : NULL,
                         .heartbeat_ms = 500,
                         /* its worker is this master's, whatever DATA/worker said before */
                         .cluster_id = tn_master_cluster_id(s->m),
                         .pass_env = opts->pass_env,
                         .npass_env = opts->npass_env,
                         .pids_max = opts->pids_max,
                         .log_retention_ms = opts->log_retention_ms,
                         .log_max_bytes = opts->log_max_bytes,
                         .kill_hooks = opts->kill_hooks,
                         .nkill_hooks = opts->nkill_hooks,
                         .kill_hook_timeout_ms = opts->kill_hook_timeout_ms,
                         .metrics_addr = opts->metrics_addr};
    if ((e = tn_worker_start(&wo, &s->w, msg))) {
        tn_master_stop(s->m);
        free(s);
        return e;
    }
    *out = s;
    return TN_OK;
}

void tn_standalone_stop(tn_standalone *s)
{
    if (!s)
        return;
    tn_worker_stop(s->w);
    tn_master_stop(s->m);
    free(s);
}

tn_master *tn_standalone_master(tn_standalone *s)
{
    return s->m;
}

int tn_standalone_metrics_port(tn_standalone *s)
{
    return tn_worker_metrics_port(s->w);
}

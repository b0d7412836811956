/* The standalone: a master and one worker in this process over inproc, the embedded
 * default behind `tern standalone` and `tern run`. */
#ifndef TN_STANDALONE_H
#define TN_STANDALONE_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "master.h"

typedef struct tn_standalone tn_standalone;

typedef struct tn_standalone_opts {
    const char *data_dir;        /* the master's store; the worker's is DATA/worker */
    uint32_t slots;              /* the worker's slots; default 4 */
    bool no_cgroup;              /* contain tasks by session and /proc walk, not cgroups */
    const char *const *pass_env; /* worker variables passed to tasks (tn_worker_opts) */
    uint32_t npass_env;
    uint32_t pids_max; /* a task's processes when its definition says 0; 0 = 4096 */
    uint64_t log_retention_ms, log_max_bytes; /* task log retention (tn_worker_opts) */
    const tn_def_alert *alerts;               /* default alerts (tn_master_opts) */
    uint32_t nalerts;
    bool allow_alert_commands;
    const char *const *kill_hooks; /* application kill hooks (tn_worker_opts) */
    uint32_t nkill_hooks;
    uint64_t kill_hook_timeout_ms;
    /* the master's HTTP API and /metrics (tn_master_opts), off when http_addr is NULL */
    const char *http_addr, *http_cert, *http_key, *http_ca;
    const char *ui_dir;       /* the web UI's files (tn_master_opts) */
    const char *metrics_addr; /* the worker's /metrics (tn_worker_opts), off when NULL */
} tn_standalone_opts;

/* Start the master (control socket ipc://DATA/master.ctl, so `tern ls` from the same
 * directory reaches it) and then the worker. On failure nothing is left running and
 * *out is untouched. */
tn_err tn_standalone_start(const tn_standalone_opts *opts, tn_standalone **out, tn_errmsg *msg);
/* Stop the worker, then the master; frees s. Accepts NULL. */
void tn_standalone_stop(tn_standalone *s);
/* The master it runs (owned by s). */
tn_master *tn_standalone_master(tn_standalone *s);
/* The port of the worker's /metrics; 0 when off. */
int tn_standalone_metrics_port(tn_standalone *s);

#endif

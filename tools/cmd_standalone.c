/* `tern standalone`: a master and a worker in this process (core/master/standalone.h),
 * until SIGTERM or SIGINT. */
#include "standalone.h"
#include <string.h>

#include "cli.h"

typedef struct standalone_opts {
    const char *data, *config;
    const char *http, *http_cert, *http_key, *http_ca, *ui_dir, *metrics;
    uint32_t slots, pids_max;
    uint64_t log_retention, log_max_bytes;
    bool no_cgroup;
    tn_opt_list pass_env, kill_hook;
    uint64_t kill_hook_timeout;
    const char *alert_webhook, *alert_command, *alert_on;
    bool allow_alert_commands;
} standalone_opts;

static const tn_opt standalone_table[] = {
    {"data", 0, TN_OPT_STR, offsetof(standalone_opts, data), "DIR",
     .help = "the data directory (default ./tern-data; the worker's in DIR/worker)",
     TN_OPT_CFG},
    {"slots", 0, TN_OPT_U32, offsetof(standalone_opts, slots), "N",
     .help = "the worker's tasks at once (default 4)", TN_OPT_CFG, 1, 4096},
    {"no-cgroup", 0, TN_OPT_FLAG, offsetof(standalone_opts, no_cgroup), NULL,
     .help = "contain tasks by session and /proc walk, even where cgroups are delegated",
     TN_OPT_CFG},
    {"pass-env", 0, TN_OPT_LIST, offsetof(standalone_opts, pass_env), "NAME",
     .help = "pass the worker's variable NAME to every task (repeatable); tasks get\n"
             "PATH, HOME, USER, LOGNAME, SHELL, LANG, TERN_*, their params and nothing else",
     TN_OPT_CFG},
    {"pids-max", 0, TN_OPT_U32, offsetof(standalone_opts, pids_max), "N",
     .help = "processes a task may have at once when its definition sets no pids_max\n"
             "(default 4096)",
     TN_OPT_CFG, 1, 4194304},
    {"log-retention", 0, TN_OPT_DURATION, offsetof(standalone_opts, log_retention), "AGE",
     .help = "remove a finished task's log and exec dir AGE after it ended (e.g. 7d;\n"
             "checked every minute; a running task's are kept)",
     TN_OPT_CFG, 1000, 0},
    {"log-max-bytes", 0, TN_OPT_SIZE, offsetof(standalone_opts, log_max_bytes), "SIZE",
     .help = "remove the oldest finished tasks' logs while all logs are over SIZE (e.g. 10G)",
     TN_OPT_CFG, 1, 0},
    TN_DAEMON_ALERT_OPTS(standalone_opts),
    TN_KILL_HOOK_OPTS(standalone_opts),
    TN_DAEMON_HTTP_OPTS(standalone_opts),
    {"metrics", 0, TN_OPT_STR, offsetof(standalone_opts, metrics), "ADDR:PORT",
     .help = "serve the worker's /metrics here (default: off)", TN_OPT_CFG},
    {"config", 0, TN_OPT_CONFIG, offsetof(standalone_opts, config), "FILE",
     .help = "read options from FILE first"},
    {0}};

const tn_opt_cmd tn_spec_standalone = {
    "standalone",
    NULL,
    "A master and one worker in one process, over inproc, data in DIR (default\n"
    "./tern-data; the worker's in DIR/worker). `tern start|ls|status|logs|...` reach it with\n"
    "no options when run from the same directory.\n",
    standalone_table,
    .max_args = 0,
    .cfg_ignored = tn_daemon_cfg_keys};

static int run(const standalone_opts *o)
{
    tn_def_alert alerts[2];
    uint32_t nalerts = 0;
    int urc = tn_daemon_alerts("standalone", o->alert_webhook, o->alert_command, o->alert_on,
                               alerts, &nalerts);
    if (urc)
        return urc;
    urc = tn_daemon_check_kill_hooks("standalone", &o->kill_hook);
    if (urc)
        return urc;
    urc = tn_cli_http_check("standalone", "--http", o->http);
    if (urc || (urc = tn_cli_http_check("standalone", "--metrics", o->metrics)))
        return urc;
    sigset_t set = tn_cli_block_signals();
    tn_standalone *s;
    tn_errmsg em = {{0}};
    tn_standalone_opts so = {.data_dir = o->data,
                             .slots = o->slots,
                             .no_cgroup = o->no_cgroup,
                             .pass_env = o->pass_env.v,
                             .npass_env = o->pass_env.n,
                             .pids_max = o->pids_max,
                             .log_retention_ms = o->log_retention,
                             .log_max_bytes = o->log_max_bytes,
                             .alerts = alerts,
                             .nalerts = nalerts,
                             .allow_alert_commands = o->allow_alert_commands,
                             .kill_hooks = o->kill_hook.v,
                             .nkill_hooks = o->kill_hook.n,
                             .kill_hook_timeout_ms = o->kill_hook_timeout,
                             .http_addr = o->http,
                             .http_cert = o->http_cert,
                             .http_key = o->http_key,
                             .http_ca = o->http_ca,
                             .ui_dir = tn_cli_ui_dir(o->ui_dir),
                             .metrics_addr = o->metrics};
    if (tn_standalone_start(&so, &s, &em))
        return tn_cli_fail("standalone", "%s", em.text);
    tn_cli_http_note("standalone", o->http, o->http_cert != NULL,
                     tn_master_http_port(tn_standalone_master(s)));
    /* the commands exactly as they work from here: --data only when not the default */
    char flag[4200] = "";
    if (strcmp(o->data, TN_DEFAULT_DATA) != 0 && strcmp(o->data, "tern-data") != 0)
        snprintf(flag, sizeof(flag), " --data %s", o->data);
    fprintf(stderr,
            "tern standalone: running; data in %s; from this directory: `tern ls%s`, "
            "`tern start WF%s`; Ctrl-C stops\n",
            o->data, flag, flag);
    tn_cli_wait_signal(set);
    tn_standalone_stop(s);
    return 0;
}

int tn_cmd_standalone(int argc, char **argv)
{
    standalone_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_standalone, argc, argv, &o, &a);
    if (rc)
        return rc;
    rc = run(&o);
    tn_opt_args_free(&a);
    return rc;
}

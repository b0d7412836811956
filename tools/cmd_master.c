/* `tern master`: the master daemon, its options from flags and from `--config FILE`
 * (flags win). SIGTERM and SIGINT stop it cleanly. */
#include <stdlib.h>
#include <string.h>

#include "ha.h"
#include "master.h"
#include "cli.h"
#include "manpage.h"

typedef struct master_opts {
    const char *data, *listen, *ctl, *id, *selector, *config;
    const char *tls_cert, *tls_key, *tls_ca;
    const char *http, *http_cert, *http_key, *http_ca, *ui_dir;
    const char *zk, *cluster, *ship; /* a cluster of masters (docs/HA.md) */
    uint64_t zk_session;
    uint32_t sync_standbys;
    uint64_t hb_timeout, map_max;
    uint32_t max_workers;
    bool insecure, check_config;
    const char *alert_webhook, *alert_command, *alert_on;
    bool allow_alert_commands;
} master_opts;

static const tn_opt master_table[] = {
    {"listen", 0, TN_OPT_STR, offsetof(master_opts, listen), "URL",
     .help = "where workers report (tcp://, ipc://, tls+tcp://)", TN_OPT_CFG | TN_OPT_REQ},
    {"data", 0, TN_OPT_STR, offsetof(master_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)", TN_OPT_CFG},
    {"ctl", 0, TN_OPT_STR, offsetof(master_opts, ctl), "URL",
     .help = "the control socket (default ipc://DIR/master.ctl)", TN_OPT_CFG},
    {"id", 0, TN_OPT_STR, offsetof(master_opts, id), "ID",
     .help = "this master's name in the log (master:ID)", TN_OPT_CFG},
    {"heartbeat-timeout", 0, TN_OPT_DURATION, offsetof(master_opts, hb_timeout), "DURATION",
     .help = "a worker silent this long is lost, its tasks fail over (default 10s;\n"
             "at least 3 times the workers' --heartbeat)",
     TN_OPT_CFG, 1000, 3600000},
    {"selector", 0, TN_OPT_STR, offsetof(master_opts, selector),
     "random|round_robin|lower_weight", .help = "how a worker is chosen (default lower_weight)",
     TN_OPT_CFG},
    TN_DAEMON_TLS_OPTS(master_opts),
    TN_DAEMON_INSECURE_OPT(master_opts),
    TN_DAEMON_ALERT_OPTS(master_opts),
    TN_DAEMON_HTTP_OPTS(master_opts),
    {"max-workers", 0, TN_OPT_U32, offsetof(master_opts, max_workers), "N",
     .help = "workers known at once; more are refused (default 1024)", TN_OPT_CFG, 1, 1000000},
    {"map-max", 0, TN_OPT_SIZE, offsetof(master_opts, map_max), "BYTES",
     .help = "the largest the event store may grow", TN_OPT_CFG, 1u << 20, 1ull << 40},
    {"zk", 0, TN_OPT_STR, offsetof(master_opts, zk), "HOST:PORT,...",
     .help = "join a cluster of masters in ZooKeeper: one leads, the others follow its\n"
             "log and take over when it goes (needs --cluster and --id; docs/HA.md)",
     TN_OPT_CFG},
    {"cluster", 0, TN_OPT_STR, offsetof(master_opts, cluster), "NAME",
     .help = "the cluster's name in ZooKeeper (/tern/NAME)", TN_OPT_CFG},
    {"ship", 0, TN_OPT_STR, offsetof(master_opts, ship), "URL",
     .help = "where standbys pull this master's log when it leads\n"
             "(default ipc://DIR/master.ship; tls+tcp:// across hosts)",
     TN_OPT_CFG},
    {"sync-standbys", 0, TN_OPT_U32, offsetof(master_opts, sync_standbys), "N",
     .help = "a batch's effects (dispatches, answers) wait until N standbys hold it\n"
             "(default 0: a takeover may lose the last batches' events; docs/HA.md)",
     TN_OPT_CFG, 0, 16},
    {"zk-session", 0, TN_OPT_DURATION, offsetof(master_opts, zk_session), "DURATION",
     .help = "the ZooKeeper session timeout: a leader silent this long is replaced\n"
             "(default 6s)",
     TN_OPT_CFG, 1000, 60000},
    {"config", 0, TN_OPT_CONFIG, offsetof(master_opts, config), "FILE",
     .help = "read options from FILE first"},
    {"check-config", 0, TN_OPT_FLAG, offsetof(master_opts, check_config), NULL,
     .help = "print the options in effect (config file, then flags) and exit"},
    {0}};

const tn_opt_cmd tn_spec_master = {
    "master",
    NULL,
    "Run the master: the engine (the only writer of the event log in DIR), dispatch to\n"
    "workers that report to URL (tcp://, ipc://, tls+tcp://), and the control socket\n"
    "(default ipc://DIR/master.ctl) that `tern start|ls|status|...` talk to.\n"
    "A worker silent past the heartbeat timeout (default 10s) is lost: its tasks fail over.\n",
    master_table,
    .max_args = 0,
    .cfg_ignored = tn_daemon_cfg_keys};

static int run(const master_opts *o)
{
    if (!o->listen)
        return tn_cli_usage("master", "give --listen URL (where workers report), e.g. "
                                      "tcp://0.0.0.0:7650");
    int sel = tn_selector_parse(o->selector);
    if (sel < 0)
        return tn_cli_usage("master", "--selector is random, round_robin or lower_weight");
    const char *urls[] = {o->listen};
    int urc = tn_daemon_check_urls("master", o->insecure, urls, 1);
    if (urc || (urc = tn_cli_http_check("master", "--http", o->http)))
        return urc;
    tn_def_alert alerts[2];
    uint32_t nalerts = 0;
    if ((urc = tn_daemon_alerts("master", o->alert_webhook, o->alert_command, o->alert_on,
                                alerts, &nalerts)))
        return urc;
    sigset_t set = tn_cli_block_signals();
    tn_master_opts mo = {.alerts = alerts,
                         .nalerts = nalerts,
                         .allow_alert_commands = o->allow_alert_commands,
                         .data_dir = o->data,
                         .id = o->id,
                         .listen_url = o->listen,
                         .ctl_url = o->ctl,
                         .tls_cert = o->tls_cert,
                         .tls_key = o->tls_key,
                         .tls_ca = o->tls_ca,
                         .ctl_insecure = o->insecure,
                         .heartbeat_timeout_ms = o->hb_timeout,
                         .selector = (tn_selector)sel,
                         .max_workers = o->max_workers,
                         .insecure = o->insecure,
                         .log = {.map_max = o->map_max},
                         .http_addr = o->http,
                         .http_cert = o->http_cert,
                         .http_key = o->http_key,
                         .http_ca = o->http_ca,
                         .ui_dir = tn_cli_ui_dir(o->ui_dir)};
    tn_errmsg em = {{0}};
    if (o->zk) {
        if (!o->cluster || !o->id)
            return tn_cli_usage("master", "--zk needs --cluster NAME and --id ID (unique in "
                                          "the cluster)");
        const char *port = o->http ? strrchr(o->http, ':') : NULL;
        if (port && strtol(port + 1, NULL, 10) == 0)
            return tn_cli_usage("master",
                                "--http \"%s\": a master of a cluster (--zk) publishes its "
                                "API's address for the standbys to send clients to: give a "
                                "fixed port, e.g. --http %.*s:8080",
                                o->http, (int)(port - o->http), o->http);
        tn_ha_opts ho = {.master = mo,
                         .zk = o->zk,
                         .cluster = o->cluster,
                         .ship_url = o->ship,
                         .sync_standbys = o->sync_standbys,
                         .session_ms = (uint32_t)o->zk_session};
        tn_ha *h;
        if (tn_ha_start(&ho, &h, &em))
            return tn_cli_fail("master", "%s", em.text);
        tn_cli_wait_signal(set);
        tn_ha_stop(h);
        return 0;
    }
    if (o->cluster || o->ship || o->sync_standbys)
        return tn_cli_usage("master", "--cluster, --ship and --sync-standbys need --zk");
    tn_master *m;
    if (tn_master_start(&mo, &m, &em))
        return tn_cli_fail("master", "%s", em.text);
    tn_cli_http_note("master", o->http, o->http_cert != NULL, tn_master_http_port(m));
    tn_cli_wait_signal(set);
    tn_master_stop(m);
    return 0;
}

int tn_cmd_master(int argc, char **argv)
{
    master_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_master, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (o.check_config)
        tn_opt_config_dump(&tn_spec_master, &o, stdout);
    else
        rc = run(&o); /* o's strings may be a's copies of config values */
    tn_opt_args_free(&a);
    return rc;
}

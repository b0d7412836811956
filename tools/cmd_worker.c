/* `tern worker`: a worker daemon, its options from flags and from `--config FILE`
 * (flags win). SIGTERM and SIGINT stop it cleanly. */
#include <stdlib.h>

#include "worker.h"
#include "ha.h"
#include "zk.h"
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include "cli.h"
#include "manpage.h"

typedef struct worker_opts {
    const char *data, *master, *listen, *name, *group, *ctl, *config;
    const char *tls_cert, *tls_key, *tls_ca, *master_name, *metrics;
    const char *zk, *cluster; /* the leader of a cluster of masters, found in ZooKeeper */
    uint64_t heartbeat, mem_reserve, map_max, log_retention, log_max_bytes, kill_hook_timeout;
    uint32_t slots, max_load, pids_max;
    bool no_cgroup, insecure, check_config;
    tn_opt_list pass_env, kill_hook;
} worker_opts;

/* A load average into thousandths. */
static bool parse_load(const char *v, void *field)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0) || d > 1e6)
        return false;
    *(uint32_t *)field = (uint32_t)(d * 1000);
    return true;
}

static const tn_opt worker_table[] = {
    {"master", 0, TN_OPT_STR, offsetof(worker_opts, master), "URL",
     .help = "where the master listens (or --zk)", TN_OPT_CFG | TN_OPT_REQ},
    {"zk", 0, TN_OPT_STR, offsetof(worker_opts, zk), "HOST:PORT,...",
     .help = "find the leader of a cluster of masters in ZooKeeper, follow it when\n"
             "another takes over, and register there (needs --cluster and --name)",
     TN_OPT_CFG},
    {"cluster", 0, TN_OPT_STR, offsetof(worker_opts, cluster), "NAME",
     .help = "the cluster's name in ZooKeeper (with --zk)", TN_OPT_CFG},
    {"listen", 0, TN_OPT_STR, offsetof(worker_opts, listen), "URL",
     .help = "where this worker takes dispatches", TN_OPT_CFG | TN_OPT_REQ},
    {"data", 0, TN_OPT_STR, offsetof(worker_opts, data), "DIR",
     .help = "the outbox and task logs (default ./tern-worker)", TN_OPT_CFG},
    {"name", 0, TN_OPT_STR, offsetof(worker_opts, name), "NAME", .help = "this worker's name",
     TN_OPT_CFG},
    {"group", 0, TN_OPT_STR, offsetof(worker_opts, group), "G[,G]",
     .help = "the worker groups it serves", TN_OPT_CFG},
    {"slots", 0, TN_OPT_U32, offsetof(worker_opts, slots), "N",
     .help = "tasks at once (default 4)", TN_OPT_CFG, 1, 4096},
    {"max-load", 0, TN_OPT_CUSTOM, offsetof(worker_opts, max_load), "L",
     .help = "take no task while the load average is above L", TN_OPT_CFG,
     .want = "a positive load average", .parse = parse_load},
    {"mem-reserve", 0, TN_OPT_SIZE, offsetof(worker_opts, mem_reserve), "BYTES",
     .help = "take no task while less memory than this is free", TN_OPT_CFG, 0, 1ull << 50},
    {"heartbeat", 0, TN_OPT_DURATION, offsetof(worker_opts, heartbeat), "DURATION",
     .help = "how often it reports to the master (default 1s; the master's\n"
             "--heartbeat-timeout should be at least 3 times this)",
     TN_OPT_CFG, 100, 10000},
    {"pass-env", 0, TN_OPT_LIST, offsetof(worker_opts, pass_env), "NAME",
     .help = "pass the worker's variable NAME to every task (repeatable); tasks get\n"
             "PATH, HOME, USER, LOGNAME, SHELL, LANG, TERN_*, their params and nothing else",
     TN_OPT_CFG},
    {"pids-max", 0, TN_OPT_U32, offsetof(worker_opts, pids_max), "N",
     .help = "processes a task may have at once when its definition sets no pids_max\n"
             "(default 4096)",
     TN_OPT_CFG, 1, 4194304},
    TN_KILL_HOOK_OPTS(worker_opts),
    {"ctl", 0, TN_OPT_STR, offsetof(worker_opts, ctl), "URL",
     .help = "where `tern logs` reads task logs", TN_OPT_CFG},
    {"no-cgroup", 0, TN_OPT_FLAG, offsetof(worker_opts, no_cgroup), NULL,
     .help = "contain tasks by session and /proc walk, even where cgroups are delegated",
     TN_OPT_CFG},
    TN_DAEMON_TLS_OPTS(worker_opts),
    {"metrics", 0, TN_OPT_STR, offsetof(worker_opts, metrics), "ADDR:PORT",
     .help = "serve Prometheus /metrics here (default: off; port 0: any free one)", TN_OPT_CFG},
    TN_DAEMON_INSECURE_OPT(worker_opts),
    {"master-name", 0, TN_OPT_STR, offsetof(worker_opts, master_name), "CN",
     .help = "take work only from the master whose certificate has this CN (default: any "
             "certificate with OU=master)",
     TN_OPT_CFG},
    {"map-max", 0, TN_OPT_SIZE, offsetof(worker_opts, map_max), "BYTES",
     .help = "the largest the outbox store may grow (a full one holds reports back)",
     TN_OPT_CFG, 1u << 20, 1ull << 40},
    {"log-retention", 0, TN_OPT_DURATION, offsetof(worker_opts, log_retention), "AGE",
     .help = "remove a finished task's log and exec dir AGE after it ended (e.g. 7d;\n"
             "checked every minute; a running task's are kept)",
     TN_OPT_CFG, 1000, 0},
    {"log-max-bytes", 0, TN_OPT_SIZE, offsetof(worker_opts, log_max_bytes), "SIZE",
     .help = "remove the oldest finished tasks' logs while all logs are over SIZE (e.g. 10G)",
     TN_OPT_CFG, 1, 0},
    {"config", 0, TN_OPT_CONFIG, offsetof(worker_opts, config), "FILE",
     .help = "read options from FILE first"},
    {"check-config", 0, TN_OPT_FLAG, offsetof(worker_opts, check_config), NULL,
     .help = "print the options in effect (config file, then flags) and exit"},
    {0}};

const tn_opt_cmd tn_spec_worker = {
    "worker",
    NULL,
    "Run a worker: take dispatches at --listen, run shell tasks as contained processes\n"
    "(their own cgroup v2 where the host delegates one, else their own session and a /proc\n"
    "walk; --no-cgroup forces that), kill them for real, and report to the master through\n"
    "a durable outbox in DIR (default ./tern-worker) until the master confirms.\n"
    "--map-max bounds that outbox store (a full one holds reports back until space frees).\n"
    "--kill-hook kills what a killed task started elsewhere (a YARN application...) by the\n"
    "ids its log shows; in a --config file: `kill-hook = REGEX=CMD`, one per line.\n",
    worker_table,
    .max_args = 0,
    .cfg_ignored = tn_daemon_cfg_keys};

/* ---- --zk: the leader from ZooKeeper, followed -------------------------------------- */

typedef struct zk_follow {
    tn_zk *zk;
    tn_worker *w;
    pthread_t th;
    atomic_bool stop;
    uint64_t epoch;
} zk_follow;

/* The leader's listen URL and epoch; false when there is no leader now. */
static bool leader_listen(tn_zk *zk, char *url, size_t len, uint64_t *epoch)
{
    char info[3000];
    return tn_zk_leader(zk, epoch, NULL, 0, info, sizeof(info), NULL) == TN_OK &&
           tn_ha_info_get(info, "listen", url, len) && url[0];
}

static void *zk_follow_thread(void *arg)
{
    zk_follow *f = arg;
    while (!atomic_load(&f->stop)) {
        char url[600];
        uint64_t epoch;
        if (leader_listen(f->zk, url, sizeof(url), &epoch) && epoch != f->epoch) {
            tn_worker_set_master(f->w, url, epoch);
            f->epoch = epoch;
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Open the session and wait for a leader (as long as the session timeout allows twice). */
static int zk_open(const worker_opts *o, zk_follow *f, char *url, size_t len)
{
    if (!o->cluster || !o->name)
        return tn_cli_usage("worker", "--zk needs --cluster NAME and --name NAME");
    char info[2000];
    snprintf(info, sizeof(info), "listen=%s groups=%s slots=%u", o->listen,
             o->group ? o->group : "default", o->slots ? o->slots : 4);
    tn_zk_opts zo = {.hosts = o->zk, .cluster = o->cluster, .name = o->name, .info = info};
    tn_errmsg em = {{0}};
    if (tn_zk_open(&zo, &f->zk, &em))
        return tn_cli_fail("worker", "%s", em.text);
    for (int i = 0; i < 300; i++) {
        if (leader_listen(f->zk, url, len, &f->epoch))
            return 0;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    tn_zk_close(f->zk);
    return tn_cli_fail("worker",
                       "cluster %s has no leader in ZooKeeper %s after 30 s: start "
                       "a master with --zk",
                       o->cluster, o->zk);
}

static int run(const worker_opts *o)
{
    /* before any thread starts (ZooKeeper's, with --zk): a thread that does not block
     * SIGTERM would take it and end the process without a clean stop */
    sigset_t set = tn_cli_block_signals();
    zk_follow zf = {0};
    char leader[600];
    if (o->zk) {
        if (!o->listen)
            return tn_cli_usage("worker", "give --listen URL (where this worker takes "
                                          "dispatches)");
        int zrc = zk_open(o, &zf, leader, sizeof(leader));
        if (zrc)
            return zrc;
        ((worker_opts *)o)->master = leader;
    }
    if (!o->master || !o->listen)
        return tn_cli_usage("worker", "give --master URL (where the master listens) and "
                                      "--listen URL (where this worker takes dispatches)");
    const char *urls[] = {o->master, o->listen};
    int urc = tn_daemon_check_urls("worker", o->insecure, urls, 2);
    if (!urc)
        urc = tn_daemon_check_kill_hooks("worker", &o->kill_hook);
    if (urc || (urc = tn_cli_http_check("worker", "--metrics", o->metrics)))
        return urc;
    tn_worker_opts wo = {.data_dir = o->data,
                         .name = o->name,
                         .master_url = o->master,
                         .master_epoch = zf.epoch,
                         .listen_url = o->listen,
                         .ctl_url = o->ctl,
                         .groups = o->group,
                         .slots = o->slots,
                         .max_load_milli = o->max_load,
                         .mem_reserve = o->mem_reserve,
                         .heartbeat_ms = o->heartbeat,
                         .map_max = o->map_max,
                         .cgroup_root = o->no_cgroup ? "" : NULL,
                         .tls_cert = o->tls_cert,
                         .tls_key = o->tls_key,
                         .tls_ca = o->tls_ca,
                         .master_name = o->master_name,
                         .pass_env = o->pass_env.v,
                         .npass_env = o->pass_env.n,
                         .pids_max = o->pids_max,
                         .log_retention_ms = o->log_retention,
                         .log_max_bytes = o->log_max_bytes,
                         .kill_hooks = o->kill_hook.v,
                         .nkill_hooks = o->kill_hook.n,
                         .kill_hook_timeout_ms = o->kill_hook_timeout,
                         .metrics_addr = o->metrics};
    tn_worker *w;
    tn_errmsg em = {{0}};
    if (tn_worker_start(&wo, &w, &em)) {
        tn_zk_close(zf.zk);
        return tn_cli_fail("worker", "%s", em.text);
    }
    if (o->metrics)
        fprintf(stderr, "tern worker: metrics on port %d (/metrics)\n",
                tn_worker_metrics_port(w));
    if (zf.zk) {
        zf.w = w;
        tn_zk_worker_register(zf.zk, NULL);
        pthread_create(&zf.th, NULL, zk_follow_thread, &zf);
    }
    tn_cli_wait_signal(set);
    if (zf.zk) {
        atomic_store(&zf.stop, true);
        pthread_join(zf.th, NULL);
    }
    tn_worker_stop(w);
    tn_zk_close(zf.zk); /* last: the registration goes when the work is stopped */
    return 0;
}

int tn_cmd_worker(int argc, char **argv)
{
    worker_opts o = {.data = "./tern-worker"};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_worker, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (o.check_config)
        tn_opt_config_dump(&tn_spec_worker, &o, stdout);
    else
        rc = run(&o); /* o's strings may be a's copies of config values */
    tn_opt_args_free(&a);
    return rc;
}

/* `tern master`, `tern worker`, `tern standalone`: the daemons. Options come from flags
 * and from a config file (`--config FILE`, lines `key = value` named like the flags);
 * flags win. SIGTERM and SIGINT stop them cleanly. */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "def.h"
#include "log.h"
#include "master.h"
#include "util.h"
#include "worker.h"
#include "cli.h"

const char tn_usage_master[] =
    "usage: tern master --listen URL [--data DIR] [--ctl URL] [--id ID]\n"
    "                   [--heartbeat-timeout DURATION] [--selector random|round_robin|lower_weight]\n"
    "                   [--tls-cert F --tls-key F --tls-ca F] [--map-max BYTES] [--config FILE]\n"
    "\n"
    "Run the master: the engine (the only writer of the event log in DIR), dispatch to\n"
    "workers that report to URL (tcp://, ipc://, tls+tcp://), and the control socket\n"
    "(default ipc://DIR/master.ctl) that `tern start|ls|status|...` talk to.\n"
    "A worker silent past the heartbeat timeout (default 10s) is lost: its tasks fail over.\n";

const char tn_usage_worker[] =
    "usage: tern worker --master URL --listen URL [--data DIR] [--name NAME] [--group G[,G]]\n"
    "                   [--slots N] [--max-load L] [--mem-reserve BYTES] [--heartbeat DURATION]\n"
    "                   [--ctl URL] [--no-cgroup] [--tls-cert F --tls-key F --tls-ca F]\n"
    "                   [--map-max BYTES] [--config FILE]\n"
    "\n"
    "Run a worker: take dispatches at --listen, run shell tasks as contained processes\n"
    "(their own cgroup v2 where the host delegates one, else their own session and a /proc\n"
    "walk; --no-cgroup forces that), kill them for real, and report to the master through\n"
    "a durable outbox in DIR (default ./tern-worker) until the master confirms.\n"
    "--map-max bounds that outbox store (a full one holds reports back until space frees).\n";

const char tn_usage_standalone[] =
    "usage: tern standalone [--data DIR] [--slots N] [--no-cgroup]\n"
    "\n"
    "A master and one worker in one process, over inproc, data in DIR (default\n"
    "./tern-data; the worker's in DIR/worker). `tern start|ls|status|logs|...` reach it with\n"
    "no options when run from the same directory.\n";

typedef struct kv {
    char key[64];
    char val[1024];
} kv;

/* Options from a config file: `key = value`, `#` comments. */
static int load_config(const char *cmd, const char *path, kv *out, int max, int *n)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return tn_cli_fail(cmd, "%s: cannot read the config file: %m", path);
    char line[1200];
    int ln = 0;
    while (fgets(line, sizeof(line), f)) {
        ln++;
        char *h = strchr(line, '#');
        if (h)
            *h = 0;
        char *eq = strchr(line, '=');
        char *k = line;
        while (*k == ' ' || *k == '\t')
            k++;
        if (!*k || *k == '\n')
            continue;
        if (!eq || *n == max) {
            fclose(f);
            return tn_cli_fail(cmd, "%s:%d: expected `key = value`", path, ln);
        }
        *eq = 0;
        char *v = eq + 1;
        for (char *e = eq - 1; e >= k && (*e == ' ' || *e == '\t'); e--)
            *e = 0;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\r\n")] = 0;
        for (char *e = v + strlen(v) - 1; e >= v && (*e == ' ' || *e == '\t'); e--)
            *e = 0;
        snprintf(out[*n].key, sizeof(out[*n].key), "%.63s", k);
        snprintf(out[*n].val, sizeof(out[*n].val), "%s", v);
        (*n)++;
    }
    fclose(f);
    return 0;
}

static bool parse_ms(const char *s, uint64_t *out)
{
    uint64_t v;
    if (tn_parse_duration_ms(s, &v) != TN_OK)
        return false;
    *out = v;
    return true;
}

static sigset_t block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    return set;
}

static void wait_signal(sigset_t set)
{
    int sig;
    sigwait(&set, &sig);
    tn_info("tern", "msg=\"stopping\" signal=%s", sig == SIGTERM ? "TERM" : "INT");
}

/* Options: the long name, then whether it takes a value. Config keys are the same names. */
typedef struct dopts {
    const char *data, *listen, *ctl, *id, *master, *name, *group, *selector, *config;
    const char *cert, *key, *ca;
    uint64_t hb_timeout, heartbeat, mem_reserve, map_max;
    uint32_t slots, max_load;
    bool no_cgroup;
} dopts;

static int set_opt(const char *cmd, dopts *o, const char *k, const char *v)
{
    uint64_t u;
    if (!strcmp(k, "data")) o->data = v;
    else if (!strcmp(k, "listen")) o->listen = v;
    else if (!strcmp(k, "ctl")) o->ctl = v;
    else if (!strcmp(k, "id")) o->id = v;
    else if (!strcmp(k, "master")) o->master = v;
    else if (!strcmp(k, "name")) o->name = v;
    else if (!strcmp(k, "group")) o->group = v;
    else if (!strcmp(k, "selector")) o->selector = v;
    else if (!strcmp(k, "tls-cert")) o->cert = v;
    else if (!strcmp(k, "tls-key")) o->key = v;
    else if (!strcmp(k, "tls-ca")) o->ca = v;
    else if (!strcmp(k, "no-cgroup")) o->no_cgroup = !v || strcmp(v, "false") != 0;
    else if (!strcmp(k, "heartbeat-timeout")) {
        if (!parse_ms(v, &o->hb_timeout))
            return tn_cli_usage(cmd, "--heartbeat-timeout wants a duration such as 10s");
    } else if (!strcmp(k, "heartbeat")) {
        if (!parse_ms(v, &o->heartbeat))
            return tn_cli_usage(cmd, "--heartbeat wants a duration such as 1s");
    } else if (!strcmp(k, "slots")) {
        if (!tn_cli_u64(v, &u) || u == 0 || u > 100000)
            return tn_cli_usage(cmd, "--slots wants a number 1..100000");
        o->slots = (uint32_t)u;
    } else if (!strcmp(k, "max-load")) {
        double d = strtod(v, NULL);
        if (d <= 0)
            return tn_cli_usage(cmd, "--max-load wants a positive load average");
        o->max_load = (uint32_t)(d * 1000);
    } else if (!strcmp(k, "mem-reserve") || !strcmp(k, "map-max")) {
        if (tn_parse_size(v, &u) != TN_OK)
            return tn_cli_usage(cmd, "--%s wants a size such as 512M", k);
        if (!strcmp(k, "map-max"))
            o->map_max = u;
        else
            o->mem_reserve = u;
    } else if (!strcmp(k, "config")) {
        o->config = v;
    } else {
        return tn_cli_usage(cmd, "unknown option \"%s\"", k);
    }
    return 0;
}

static int parse(const char *cmd, int argc, char **argv, dopts *o, kv *cfg, int *ncfg)
{
    static const struct option lo[] = {
        {"data", 1, 0, 0}, {"listen", 1, 0, 0}, {"ctl", 1, 0, 0}, {"id", 1, 0, 0},
        {"master", 1, 0, 0}, {"name", 1, 0, 0}, {"group", 1, 0, 0}, {"selector", 1, 0, 0},
        {"tls-cert", 1, 0, 0}, {"tls-key", 1, 0, 0}, {"tls-ca", 1, 0, 0},
        {"no-cgroup", 0, 0, 0}, {"heartbeat-timeout", 1, 0, 0}, {"heartbeat", 1, 0, 0},
        {"slots", 1, 0, 0}, {"max-load", 1, 0, 0}, {"mem-reserve", 1, 0, 0},
        {"map-max", 1, 0, 0}, {"config", 1, 0, 0}, {0, 0, 0, 0}};
    /* the config file first, so flags win */
    for (int i = 1; i < argc - 1; i++)
        if (!strcmp(argv[i], "--config")) {
            int rc = load_config(cmd, argv[i + 1], cfg, 64, ncfg);
            if (rc)
                return rc;
            for (int j = 0; j < *ncfg; j++)
                if ((rc = set_opt(cmd, o, cfg[j].key, cfg[j].val)))
                    return rc;
        }
    int c, idx;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, &idx)) != -1) {
        if (c != 0)
            return tn_cli_usage(cmd, "unknown option \"%s\"", argv[optind - 1]);
        int rc = set_opt(cmd, o, lo[idx].name, optarg);
        if (rc)
            return rc;
    }
    if (optind < argc)
        return tn_cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    return 0;
}

int tn_cmd_master(int argc, char **argv)
{
    dopts o = {.data = TN_DEFAULT_DATA};
    kv cfg[64];
    int ncfg = 0, rc = parse("master", argc, argv, &o, cfg, &ncfg);
    if (rc)
        return rc;
    if (!o.listen)
        return tn_cli_usage("master", "give --listen URL (where workers report), e.g. "
                            "tcp://0.0.0.0:7650");
    int sel = tn_selector_parse(o.selector);
    if (sel < 0)
        return tn_cli_usage("master", "--selector is random, round_robin or lower_weight");
    sigset_t set = block_signals();
    tn_master_opts mo = {.data_dir = o.data, .id = o.id, .listen_url = o.listen,
                         .ctl_url = o.ctl, .tls_cert = o.cert, .tls_key = o.key,
                         .tls_ca = o.ca, .heartbeat_timeout_ms = o.hb_timeout,
                         .selector = (tn_selector)sel, .log = {.map_max = o.map_max}};
    tn_master *m;
    tn_errmsg em = {{0}};
    if (tn_master_start(&mo, &m, &em))
        return tn_cli_fail("master", "%s", em.text);
    wait_signal(set);
    tn_master_stop(m);
    return 0;
}

int tn_cmd_worker(int argc, char **argv)
{
    dopts o = {.data = "./tern-worker"};
    kv cfg[64];
    int ncfg = 0, rc = parse("worker", argc, argv, &o, cfg, &ncfg);
    if (rc)
        return rc;
    if (!o.master || !o.listen)
        return tn_cli_usage("worker", "give --master URL (where the master listens) and "
                            "--listen URL (where this worker takes dispatches)");
    sigset_t set = block_signals();
    tn_worker_opts wo = {.data_dir = o.data, .name = o.name, .master_url = o.master,
                         .listen_url = o.listen, .ctl_url = o.ctl, .groups = o.group,
                         .slots = o.slots, .max_load_milli = o.max_load,
                         .mem_reserve = o.mem_reserve, .heartbeat_ms = o.heartbeat,
                         .map_max = o.map_max,
                         .cgroup_root = o.no_cgroup ? "" : NULL, .tls_cert = o.cert,
                         .tls_key = o.key, .tls_ca = o.ca};
    tn_worker *w;
    tn_errmsg em = {{0}};
    if (tn_worker_start(&wo, &w, &em))
        return tn_cli_fail("worker", "%s", em.text);
    wait_signal(set);
    tn_worker_stop(w);
    return 0;
}

/* The embedded default: a master and a worker in this process over inproc. */
int tn_standalone_start(const char *data, uint32_t slots, bool no_cgroup, tn_master **m,
                        tn_worker **w, tn_errmsg *em)
{
    char murl[128], wurl[128], wdata[4200];
    snprintf(murl, sizeof(murl), "inproc://tern-master-%d", (int)getpid());
    snprintf(wurl, sizeof(wurl), "inproc://tern-worker-%d", (int)getpid());
    snprintf(wdata, sizeof(wdata), "%s/worker", data);
    tn_master_opts mo = {.data_dir = data, .id = "standalone", .listen_url = murl};
    if (tn_master_start(&mo, m, em))
        return 1;
    tn_worker_opts wo = {.data_dir = wdata, .name = "local", .master_url = murl,
                         .listen_url = wurl, .slots = slots ? slots : 4,
                         .cgroup_root = no_cgroup ? "" : NULL, .heartbeat_ms = 500};
    if (tn_worker_start(&wo, w, em)) {
        tn_master_stop(*m);
        return 1;
    }
    return 0;
}

int tn_cmd_standalone(int argc, char **argv)
{
    dopts o = {.data = TN_DEFAULT_DATA};
    kv cfg[64];
    int ncfg = 0, rc = parse("standalone", argc, argv, &o, cfg, &ncfg);
    if (rc)
        return rc;
    sigset_t set = block_signals();
    tn_master *m;
    tn_worker *w;
    tn_errmsg em = {{0}};
    if (tn_standalone_start(o.data, o.slots, o.no_cgroup, &m, &w, &em))
        return tn_cli_fail("standalone", "%s", em.text);
    fprintf(stderr, "tern standalone: running; data in %s; `tern ls`, `tern start WF` ... from "
                    "this directory; Ctrl-C stops\n", o.data);
    wait_signal(set);
    tn_worker_stop(w);
    tn_master_stop(m);
    return 0;
}

/* The `tern` command line: the command table and what the commands share (errors on
 * stderr, JSON output, the control client, the local engine, the daemons' signals). */
#ifndef TN_CLI_H
#define TN_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>

#include "opt.h"

#define TN_DEFAULT_DATA "./tern-data"

typedef struct tn_cli_cmd {
    const char *name;
    const char *summary;    /* one line for `tern help` */
    const char *usage;      /* `tern CMD --help` of a command without an option table */
    const tn_opt_cmd *spec; /* its option table: `--help` is generated from it */
    int (*run)(int argc, char **argv);
} tn_cli_cmd;

/* Print "tern CMD: message" on stderr; returns the exit status to use (1). */
int tn_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a usage error ("tern CMD: message; see `tern CMD --help`"); returns 2. */
int tn_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A JSON string of n bytes (jansson's escaping; bytes that are not UTF-8 as U+FFFD, see
 * core/master/jsonout.h); exits, saying so, when out of memory. */
void tn_json_str(FILE *f, const char *s, size_t n);
/* v (taken over; a jansson value, see core/master/jsonout.h) as compact JSON on f, with no
 * newline; out of memory: said on stderr, and exit 1. */
void tn_cli_json_put(FILE *f, json_t *v);
void tn_json_cstr(FILE *f, const char *s);

/* Terminal columns of UTF-8 text (a Chinese character takes two), and s printed then
 * padded with spaces to `width` columns: aligned tables whatever the script. */
size_t tn_cli_width(const char *s);
void tn_cli_pad(FILE *f, const char *s, size_t width);

/* ISO 8601 UTC to the nanosecond ("2026-11-22T01:02:03.123456789Z"), for JSON. */
void tn_cli_time_ns(int64_t ns, char *buf, size_t len);

/* Parse an unsigned decimal; false if not a number. */
bool tn_cli_u64(const char *s, uint64_t *out);
/* Parse an id: a positive decimal; false otherwise. */
bool tn_cli_id(const char *s, uint64_t *out);

struct tn_store;
/* Open the store in dir read-only; on failure print why (as `tern cmd`) and return 1. */
int tn_cli_store_ro(const char *cmd, const char *dir, struct tn_store **s);

/* The daemons: block SIGTERM and SIGINT (before any thread starts, so only
 * tn_cli_wait_signal sees them), then wait for one. */
sigset_t tn_cli_block_signals(void);
/* Called once the daemon serves: tells the service manager READY=1 (tn_cli_notify), waits
 * for SIGTERM or SIGINT, then tells it STOPPING=1 before the caller stops the daemon. */
void tn_cli_wait_signal(sigset_t set);
/* The sd_notify protocol: one datagram with `state` (and MAINPID) to the unix socket
 * $NOTIFY_SOCKET (a path, or @name for an abstract one). Nothing without the variable
 * (0); -1 when it could not be sent (logged). */
int tn_cli_notify(const char *state);

/* Every key of the daemons' config files: master, worker and standalone ignore each
 * other's keys (and `config`), so one file can serve them all. */
extern const char *const tn_daemon_cfg_keys[];

/* A daemon's listen and dial URLs: a tcp:// one is refused (a usage error naming it, with
 * what to do; returns 2) unless insecure, which logs a warning for each at every start. */
int tn_daemon_check_urls(const char *cmd, bool insecure, const char *const *urls, size_t n);

/* --insecure, for the daemons' tables (field insecure of T). */
#define TN_DAEMON_INSECURE_OPT(T)                                                        \
    {                                                                                    \
        "insecure", 0, TN_OPT_FLAG, offsetof(T, insecure), NULL,                         \
            .help = "allow plain tcp:// (peers not authenticated; logged as a warning)", \
            TN_OPT_CFG                                                                   \
    }

/* The TLS options of the daemons (fields tls_cert, tls_key, tls_ca of T). */
#define TN_DAEMON_TLS_OPTS(T)                                                                  \
    {"tls-cert", 0,                                                                            \
     TN_OPT_STR, offsetof(T, tls_cert),                                                        \
     "F",        .help = "this daemon's certificate (PEM), for tls+tcp:// URLs",               \
     TN_OPT_CFG},                                                                              \
        {"tls-key", 0, TN_OPT_STR, offsetof(T, tls_key), "F", .help = "its private key (PEM)", \
         TN_OPT_CFG},                                                                          \
    {                                                                                          \
        "tls-ca", 0, TN_OPT_STR, offsetof(T, tls_ca), "F",                                     \
            .help = "the CA that signs the other end's certificate", TN_OPT_CFG                \
    }

/* The default alerts of master and standalone (fields alert_webhook, alert_command,
 * alert_on, allow_alert_commands of T): for workflows without an `alerts:` block. */
#define TN_DAEMON_ALERT_OPTS(T)                                                              \
    {"alert-webhook",                                                                        \
     0,                                                                                      \
     TN_OPT_STR,                                                                             \
     offsetof(T, alert_webhook),                                                             \
     "URL",                                                                                  \
     .help = "POST an alert as JSON here for workflows without an alerts block",             \
     TN_OPT_CFG},                                                                            \
        {"alert-command",                                                                    \
         0,                                                                                  \
         TN_OPT_STR,                                                                         \
         offsetof(T, alert_command),                                                         \
         "COMMAND",                                                                          \
         .help = "run COMMAND (/bin/sh -c) with the alert as JSON on stdin, for workflows\n" \
                 "without an alerts block",                                                  \
         TN_OPT_CFG},                                                                        \
        {"alert-on",                                                                         \
         0,                                                                                  \
         TN_OPT_STR,                                                                         \
         offsetof(T, alert_on),                                                              \
         "LIST",                                                                             \
         .help = "outcomes the default alerts are for (failure,timeout,success,kill,\n"      \
                 "task_failure; default failure,timeout)",                                   \
         TN_OPT_CFG},                                                                        \
    {                                                                                        \
        "allow-alert-commands", 0, TN_OPT_FLAG, offsetof(T, allow_alert_commands), NULL,     \
            .help = "let workflows' alerts run commands on this host (as this user)",        \
            TN_OPT_CFG                                                                       \
    }

struct tn_def_alert;
/* The default alerts from those options into out[0..*n) (at most 2); strings are
 * borrowed. A bad URL or outcome is a usage error (returns 2, message printed). */
int tn_daemon_alerts(const char *cmd, const char *webhook, const char *command, const char *on,
                     struct tn_def_alert *out, uint32_t *n);

/* --kill-hook and --kill-hook-timeout, for the commands that run a worker (fields
 * kill_hook, a tn_opt_list, and kill_hook_timeout, ms, of T); docs/DISTRIBUTED.md. */
#define TN_KILL_HOOK_OPTS(T)                                                                   \
    {"kill-hook",                                                                              \
     0,                                                                                        \
     TN_OPT_LIST,                                                                              \
     offsetof(T, kill_hook),                                                                   \
     "REGEX=CMD",                                                                              \
     .help = "when a task is killed (tern kill, a timeout, a stop), run CMD once per\n"        \
             "distinct match of REGEX (POSIX extended) in the last 8 MiB of its log,\n"        \
             "{id} replaced by the match, single-quoted; matches other than 1-128 of\n"        \
             "A-Z a-z 0-9 . _ - : @ + are refused; `tern audit` shows what ran (attr\n"        \
             "hooks). At most 16, e.g.\n"                                                      \
             "'application_[0-9]+_[0-9]+=yarn application -kill {id}'",                        \
     TN_OPT_CFG,                                                                               \
     0,                                                                                        \
     16},                                                                                      \
    {                                                                                          \
        "kill-hook-timeout", 0, TN_OPT_DURATION, offsetof(T, kill_hook_timeout), "DURATION",   \
            .help = "a kill hook command is killed after this (default 30s)", TN_OPT_CFG, 100, \
            3600000                                                                            \
    }

/* The kill hooks of a command line, checked before anything starts: a usage error
 * (returns 2) naming the bad one and why, else 0. */
int tn_daemon_check_kill_hooks(const char *cmd, const tn_opt_list *hooks);

/* The HTTP API and /metrics of the master and the standalone (docs/API.md): T has
 * http, http_cert, http_key, http_ca. */
#define TN_DAEMON_HTTP_OPTS(T)                                                            \
    {"http",                                                                              \
     0,                                                                                   \
     TN_OPT_STR,                                                                          \
     offsetof(T, http),                                                                   \
     "ADDR:PORT",                                                                         \
     .help = "serve the HTTP API and /metrics here (default: off; port 0: any free one)", \
     TN_OPT_CFG},                                                                         \
        {"http-cert", 0,                                                                  \
         TN_OPT_STR,  offsetof(T, http_cert),                                             \
         "F",         .help = "serve https with this certificate (PEM) and --http-key",   \
         TN_OPT_CFG},                                                                     \
        {"http-key", 0,                                                                   \
         TN_OPT_STR, offsetof(T, http_key),                                               \
         "F",        .help = "the https certificate's private key (PEM)",                 \
         TN_OPT_CFG},                                                                     \
        {"http-ca",  0,                                                                   \
         TN_OPT_STR, offsetof(T, http_ca),                                                \
         "F",        .help = "https: require a client certificate this CA signed",        \
         TN_OPT_CFG},                                                                     \
    {                                                                                     \
        "ui-dir", 0, TN_OPT_STR, offsetof(T, ui_dir), "DIR",                              \
            .help = "serve the web UI from DIR (default: the installed one)", TN_OPT_CFG  \
    }

/* The web UI's folder: dir when given, else the source tree's ui/ for a tern run from its
 * build tree, else the installed share/tern/ui. */
const char *tn_cli_ui_dir(const char *dir);
/* A usage error (2) unless addr (when given) is HOST:PORT. */
int tn_cli_http_check(const char *cmd, const char *opt, const char *addr);
/* Say where the HTTP API listens (the port the kernel chose for port 0), on stderr. */
void tn_cli_http_note(const char *cmd, const char *addr, bool tls, int port);

/* ---- the control client (client.c) ------------------------------------------------- */

struct tn_ctl_req;
struct tn_ctl_rep;

/* The options every control command takes; embed as the member `c` of its options. */
typedef struct tn_ctl_common {
    const char *master, *data;
    const char *zk;         /* HOST:PORT,.../CLUSTER: the leader of a cluster of masters */
    const char *token_file; /* else TERN_TOKEN */
    bool json;
} tn_ctl_common;

#define TN_CTL_COMMON_OPTS(T)                                                                   \
    {"master",   0,                                                                             \
     TN_OPT_STR, offsetof(T, c.master),                                                         \
     "URL",      .help = "the master's control socket (default: ipc://DATA/master.ctl)"},       \
        {"data",     0,                                                                         \
         TN_OPT_STR, offsetof(T, c.data),                                                       \
         "DIR",      .help = "the data directory whose master to reach (default ./tern-data)"}, \
        {"zk",                                                                                  \
         0,                                                                                     \
         TN_OPT_STR,                                                                            \
         offsetof(T, c.zk),                                                                     \
         "HOSTS/CLUSTER",                                                                       \
         .help = "ask ZooKeeper which master leads the cluster (default: $TERN_ZK)"},           \
        {"token-file",                                                                          \
         0,                                                                                     \
         TN_OPT_STR,                                                                            \
         offsetof(T, c.token_file),                                                             \
         "F",                                                                                   \
         .help = "send the token in F (default: $TERN_TOKEN); needed over tcp and tls+tcp"},    \
    {                                                                                           \
        "json", 0, TN_OPT_FLAG, offsetof(T, c.json), NULL, .help = "print JSON for scripts"     \
    }

/* Where the master of these options listens: --master, else the leader's control URL from
 * ZooKeeper (--zk, else $TERN_ZK: "HOST:PORT,.../CLUSTER"), else ipc://DATA/master.ctl. */
void tn_client_url(const tn_ctl_common *o, char *url, size_t len);
/* The token file the next calls send from (NULL: $TERN_TOKEN). */
void tn_client_set_token_file(const char *path);
/* One request to url (with the token, and over tls+tcp:// the TLS files of $TERN_TLS_CA,
 * $TERN_TLS_CERT, $TERN_TLS_KEY); decodes the reply into rep, whose strings point into *raw (the
 * caller frees *raw). Prints why and returns 1 when no valid reply came. */
int tn_client_call(const char *cmd, const char *url, const char *data, struct tn_ctl_req *r,
                   struct tn_ctl_rep *rep, void **raw);
/* Print a reply (its JSON with --json, else its text); returns the exit status. */
int tn_client_show(const char *cmd, bool json, const struct tn_ctl_rep *rep);
/* Send r (its cmd set to cmd) to the master and print the reply; returns the exit status.
 * The token comes from o->token_file, else $TERN_TOKEN; who sends is not claimed: the
 * master takes it from the connection or the token. */
int tn_client_request(const char *cmd, const tn_ctl_common *o, struct tn_ctl_req *r);
/* As tn_client_request for the control operation op (r->cmd), named cmd in messages:
 * `tern schedule show` sends "schedule-show". A read (tn_ctlsrv_is_read) is answered
 * from the store in o->data when no master answers and none was named. */
int tn_client_op(const char *cmd, const char *op, const tn_ctl_common *o, struct tn_ctl_req *r);
/* The table of a control command that takes only the common options. */
extern const tn_opt tn_client_common_table[];
/* A control command of the shape `tern CMD ID [common options]` (what: "task" or
 * "workflow instance", for the usage error): parse, send, print. */
int tn_client_id_request(const tn_opt_cmd *spec, int argc, char **argv, const char *what);
/* Whether a master answers at url within 2s. */
bool tn_client_probe(const char *url);
/* A control request through the master serving data, if one answers; -1 when none does. */
int tn_ctl_try_remote(const char *cmd, const char *data, struct tn_ctl_req *r);

/* ---- the engine in this process, for a store no master serves (local.c) -------------- */

struct tn_engine;
struct tn_inproc;
struct tn_cmd;

typedef struct tn_local {
    struct tn_engine *e;
    struct tn_inproc *x;
} tn_local;

/* Open (creating) the store in data with the in-process executor; prints why and
 * returns 1 on failure. */
int tn_local_open(const char *cmd, const char *data, tn_local *l);
void tn_local_close(tn_local *l);
struct tn_def;
/* Every sub_workflow task of defs (read from paths) names a workflow among defs or in the
 * store in data; else prints "FILE:LINE: ..." and returns 1. */
int tn_cli_check_subs(const char *cmd, const char *data, struct tn_def *const *defs,
                      const char *const *paths, size_t n);
/* `tern taskgroup|env set`: through the running master if one answers, else on the
 * store directly; prints the outcome and returns the exit status. */
int tn_local_set(const char *cmd, const char *data, struct tn_cmd *c);

/* ---- the commands, one file each ----------------------------------------------------- */

int tn_cmd_replay(int argc, char **argv);
int tn_cmd_audit(int argc, char **argv);
int tn_cmd_sm(int argc, char **argv);
int tn_cmd_bench(int argc, char **argv);
/* `tern bench latency` (bench_latency.c) */
int tn_bench_latency(const char *dir, bool quick);
int tn_bench_schedule(int argc, char **argv); /* `tern bench schedule` */
int tn_cmd_cert(int argc, char **argv);
int tn_cmd_demo(int argc, char **argv);
int tn_cmd_run(int argc, char **argv);
int tn_cmd_def(int argc, char **argv);
int tn_cmd_taskgroup(int argc, char **argv);
int tn_cmd_env(int argc, char **argv);
int tn_cmd_start(int argc, char **argv);
int tn_cmd_instance(int argc, char **argv); /* pause resume stop rerun recover */
int tn_cmd_task(int argc, char **argv);     /* kill force-success */
int tn_cmd_ls(int argc, char **argv);
int tn_cmd_status(int argc, char **argv);
int tn_cmd_logs(int argc, char **argv);
int tn_cmd_workers(int argc, char **argv);
int tn_cmd_master(int argc, char **argv);
/* `tern bench ha` (bench_ha.c). */
int tn_bench_ha(const char *base, bool quick);
int tn_cmd_worker(int argc, char **argv);
int tn_cmd_standalone(int argc, char **argv);
int tn_cmd_chaos(int argc, char **argv);
int tn_cmd_init(int argc, char **argv);
int tn_cmd_token(int argc, char **argv);
int tn_cmd_gc(int argc, char **argv);
int tn_cmd_schedule(int argc, char **argv);
int tn_cmd_backfill(int argc, char **argv);
int tn_cmd_import(int argc, char **argv);
int tn_cmd_export(int argc, char **argv);

extern const tn_opt_cmd tn_spec_replay, tn_spec_audit, tn_spec_sm, tn_spec_demo, tn_spec_run,
    tn_spec_def, tn_spec_taskgroup, tn_spec_env, tn_spec_start, tn_spec_pause, tn_spec_resume,
    tn_spec_stop, tn_spec_rerun, tn_spec_recover, tn_spec_kill, tn_spec_force_success,
    tn_spec_ls, tn_spec_status, tn_spec_logs, tn_spec_workers, tn_spec_master, tn_spec_worker,
    tn_spec_standalone, tn_spec_chaos, tn_spec_init, tn_spec_token, tn_spec_bench, tn_spec_cert,
    tn_spec_gc, tn_spec_schedule, tn_spec_backfill, tn_spec_import, tn_spec_export;

#endif

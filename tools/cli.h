/* The `tern` command line: the command table and what the commands share (errors on
 * stderr, JSON output, the control client, the local engine, the daemons' signals). */
#ifndef TN_CLI_H
#define TN_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* JSON string (quoted, escaped) of n bytes. */
void tn_json_str(FILE *f, const char *s, size_t n);
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
void tn_cli_wait_signal(sigset_t set);

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

/* ---- the control client (client.c) ------------------------------------------------- */

struct tn_ctl_req;
struct tn_ctl_rep;

/* The options every control command takes; embed as the member `c` of its options. */
typedef struct tn_ctl_common {
    const char *master, *data;
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
        {"token-file",                                                                          \
         0,                                                                                     \
         TN_OPT_STR,                                                                            \
         offsetof(T, c.token_file),                                                             \
         "F",                                                                                   \
         .help = "send the token in F (default: $TERN_TOKEN); needed over tcp and tls+tcp"},    \
    {                                                                                           \
        "json", 0, TN_OPT_FLAG, offsetof(T, c.json), NULL, .help = "print JSON for scripts"     \
    }

/* Where the master of these options listens: --master, else ipc://DATA/master.ctl. */
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
int tn_cmd_worker(int argc, char **argv);
int tn_cmd_standalone(int argc, char **argv);
int tn_cmd_chaos(int argc, char **argv);
int tn_cmd_init(int argc, char **argv);
int tn_cmd_token(int argc, char **argv);

extern const tn_opt_cmd tn_spec_replay, tn_spec_audit, tn_spec_sm, tn_spec_demo, tn_spec_run,
    tn_spec_def, tn_spec_taskgroup, tn_spec_env, tn_spec_start, tn_spec_pause, tn_spec_resume,
    tn_spec_stop, tn_spec_rerun, tn_spec_recover, tn_spec_kill, tn_spec_force_success,
    tn_spec_ls, tn_spec_status, tn_spec_logs, tn_spec_workers, tn_spec_master, tn_spec_worker,
    tn_spec_standalone, tn_spec_chaos, tn_spec_init, tn_spec_token, tn_spec_bench, tn_spec_cert;

#endif

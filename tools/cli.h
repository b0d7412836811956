/* The `tern` command line: the command table and helpers shared by subcommands
 * (errors on stderr, JSON output, common options). */
#ifndef TN_CLI_H
#define TN_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define TN_DEFAULT_DATA "./tern-data"

typedef struct tn_cli_cmd {
    const char *name;
    const char *summary; /* one line for `tern help` */
    const char *usage;   /* the full text for `tern CMD --help` */
    int (*run)(int argc, char **argv);
} tn_cli_cmd;

/* Print "tern CMD: message" on stderr; returns the exit status to use (1). */
int tn_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print a usage error ("tern CMD: message; see `tern CMD --help`"); returns 2. */
int tn_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON string (quoted, escaped) of n bytes. */
void tn_json_str(FILE *f, const char *s, size_t n);
void tn_json_cstr(FILE *f, const char *s);

/* Parse an unsigned decimal; false if not a number. */
bool tn_cli_u64(const char *s, uint64_t *out);

/* The commands, each in its own file. */
int tn_cmd_replay(int argc, char **argv);
int tn_cmd_audit(int argc, char **argv);
int tn_cmd_sm(int argc, char **argv);
int tn_cmd_bench(int argc, char **argv);
int tn_cmd_demo(int argc, char **argv);
int tn_cmd_run(int argc, char **argv);
int tn_cmd_def(int argc, char **argv);
int tn_cmd_taskgroup(int argc, char **argv);
int tn_cmd_env(int argc, char **argv);
int tn_cmd_ctl(int argc, char **argv);
struct tn_ctl_req;
/* A control request through the master serving --data, if one answers; -1 when none does. */
int tn_ctl_try_remote(const char *cmd, const char *data, struct tn_ctl_req *r);
int tn_cmd_master(int argc, char **argv);
int tn_cmd_worker(int argc, char **argv);
int tn_cmd_standalone(int argc, char **argv);
int tn_cmd_chaos(int argc, char **argv);
struct tn_master;
struct tn_worker;
struct tn_errmsg;
/* A master and a worker in this process over inproc (the embedded default). */
int tn_standalone_start(const char *data, uint32_t slots, bool no_cgroup, struct tn_master **m,
                        struct tn_worker **w, struct tn_errmsg *em);
/* def apply through a running master; -1 when none answers */
int tn_ctl_apply_remote(const char *data, const char *master, int nfiles, char **files,
                        bool json);

extern const char tn_usage_replay[], tn_usage_audit[], tn_usage_sm[], tn_usage_bench[],
    tn_usage_demo[], tn_usage_run[], tn_usage_def[], tn_usage_taskgroup[], tn_usage_env[],
    tn_usage_ctl[], tn_usage_master[], tn_usage_worker[], tn_usage_standalone[],
    tn_usage_chaos[];

#endif

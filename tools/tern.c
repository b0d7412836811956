/* tern: one binary for the daemons, the control client, replay and audit, the state
 * machine renderings and the benchmarks. This file is the command table. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int cmd_help(int argc, char **argv);

static const char usage_help[] = "usage: tern help [COMMAND]\n\nShow the commands, or one command's help.\n";

static const tn_cli_cmd commands[] = {
    {"standalone", "a master and a worker in one process (the embedded default)",
     tn_usage_standalone, tn_cmd_standalone},
    {"master", "run the master daemon", tn_usage_master, tn_cmd_master},
    {"worker", "run a worker daemon", tn_usage_worker, tn_cmd_worker},
    {"run", "apply a workflow file, run an instance to its end here, print its tasks",
     tn_usage_run, tn_cmd_run},
    {"def", "apply, list and show workflow definitions", tn_usage_def, tn_cmd_def},
    {"taskgroup", "set a task group's slots", tn_usage_taskgroup, tn_cmd_taskgroup},
    {"env", "store a named environment for shell tasks", tn_usage_env, tn_cmd_env},
    {"start", "start an instance on the running master", tn_usage_ctl, tn_cmd_ctl},
    {"pause", "pause an instance (running tasks finish)", tn_usage_ctl, tn_cmd_ctl},
    {"resume", "resume a paused instance", tn_usage_ctl, tn_cmd_ctl},
    {"stop", "stop an instance (running tasks are killed)", tn_usage_ctl, tn_cmd_ctl},
    {"rerun", "run a finished instance again", tn_usage_ctl, tn_cmd_ctl},
    {"recover", "re-run the failed and killed tasks of an instance", tn_usage_ctl, tn_cmd_ctl},
    {"kill", "kill one task", tn_usage_ctl, tn_cmd_ctl},
    {"force-success", "mark a failed task successful", tn_usage_ctl, tn_cmd_ctl},
    {"ls", "list instances", tn_usage_ctl, tn_cmd_ctl},
    {"status", "one instance and its tasks", tn_usage_ctl, tn_cmd_ctl},
    {"logs", "a task's log, from its worker (-f follows)", tn_usage_ctl, tn_cmd_ctl},
    {"workers", "live workers and their resources", tn_usage_ctl, tn_cmd_ctl},
    {"demo", "record a demo workflow's transitions and print its replayed timeline",
     tn_usage_demo, tn_cmd_demo},
    {"replay", "rebuild every projection from the events and verify the log",
     tn_usage_replay, tn_cmd_replay},
    {"audit", "print the timeline of one workflow instance and its tasks", tn_usage_audit,
     tn_cmd_audit},
    {"sm", "print a state machine as a DOT graph or a Markdown table", tn_usage_sm,
     tn_cmd_sm},
    {"bench", "run a benchmark next to its raw baseline", tn_usage_bench, tn_cmd_bench},
    {"chaos", "real daemons, seeded faults, then invariants checked from the log and hosts",
     tn_usage_chaos, tn_cmd_chaos},
    {"help", "show this help, or a command's", usage_help, cmd_help},
};

static const tn_cli_cmd *find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int cmd_help(int argc, char **argv)
{
    if (argc > 1) {
        const tn_cli_cmd *c = find(argv[1]);
        if (!c)
            return tn_cli_usage("help", "unknown command \"%s\"", argv[1]);
        fputs(c->usage, stdout);
        return 0;
    }
    printf("tern — a workflow scheduler on an event-sourced state-machine core\n\n"
           "usage: tern COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %-13s %s\n", commands[i].name, commands[i].summary);
    printf("\nEvery command takes --help. Commands that read a store take --data DIR\n"
           "(default %s); commands that report state take --json.\n",
           TN_DEFAULT_DATA);
    return 0;
}

int tn_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tern %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int tn_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tern %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; see `tern %s --help`\n", cmd);
    return 2;
}

void tn_json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
}

void tn_json_cstr(FILE *f, const char *s) { tn_json_str(f, s, strlen(s)); }

bool tn_cli_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    /* a peer that goes away mid-write is an error to handle, not a reason to die */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(1, argv);
    const tn_cli_cmd *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "tern: unknown command \"%s\"; see `tern help`\n", argv[1]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(c->usage, stdout);
            return 0;
        }
    }
    return c->run(argc - 1, argv + 1);
}

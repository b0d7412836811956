/* tern: one binary for the daemons, the control client, replay and audit, the state
 * machine renderings and the benchmarks. This file is the command table. */
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "manpage.h"

static int cmd_help(int argc, char **argv);

static const char usage_help[] =
    "usage: tern help [COMMAND]\n\nShow the commands, or one command's help.\n";

static const tn_cli_cmd commands[] = {
    {"standalone", "a master and a worker in one process (the embedded default)", NULL,
     &tn_spec_standalone, tn_cmd_standalone},
    {"init", "create a new, empty store in a missing or empty directory", NULL, &tn_spec_init,
     tn_cmd_init},
    {"master", "run the master daemon", NULL, &tn_spec_master, tn_cmd_master},
    {"worker", "run a worker daemon", NULL, &tn_spec_worker, tn_cmd_worker},
    {"run", "apply a workflow file, run an instance to its end here, print its tasks", NULL,
     &tn_spec_run, tn_cmd_run},
    {"def", "apply, list and show workflow definitions", NULL, &tn_spec_def, tn_cmd_def},
    {"import", "import DolphinScheduler workflows (tern import ds FILE.json)", NULL,
     &tn_spec_import, tn_cmd_import},
    {"export", "write workflows in DolphinScheduler's format (tern export ds WF...)", NULL,
     &tn_spec_export, tn_cmd_export},
    {"taskgroup", "set a task group's slots", NULL, &tn_spec_taskgroup, tn_cmd_taskgroup},
    {"env", "store a named environment for shell tasks", NULL, &tn_spec_env, tn_cmd_env},
    {"start", "start an instance on the running master", NULL, &tn_spec_start, tn_cmd_start},
    {"pause", "pause an instance (running tasks finish)", NULL, &tn_spec_pause,
     tn_cmd_instance},
    {"resume", "resume a paused instance", NULL, &tn_spec_resume, tn_cmd_instance},
    {"stop", "stop an instance (running tasks are killed)", NULL, &tn_spec_stop,
     tn_cmd_instance},
    {"rerun", "run a finished instance again", NULL, &tn_spec_rerun, tn_cmd_instance},
    {"recover", "re-run the failed and killed tasks of an instance", NULL, &tn_spec_recover,
     tn_cmd_instance},
    {"kill", "kill one task", NULL, &tn_spec_kill, tn_cmd_task},
    {"force-success", "mark a failed task successful", NULL, &tn_spec_force_success,
     tn_cmd_task},
    {"schedule", "give a workflow a cron schedule; list, show, pause, resume, trigger it", NULL,
     &tn_spec_schedule, tn_cmd_schedule},
    {"backfill", "run a workflow for past dates (its schedule's fire times); list, stop them",
     NULL, &tn_spec_backfill, tn_cmd_backfill},
    {"token", "add, list and revoke the tokens of the control socket", NULL, &tn_spec_token,
     tn_cmd_token},
    {"ls", "list instances", NULL, &tn_spec_ls, tn_cmd_ls},
    {"status", "one instance and its tasks", NULL, &tn_spec_status, tn_cmd_status},
    {"logs", "a task's log, from its worker (-f follows)", NULL, &tn_spec_logs, tn_cmd_logs},
    {"workers", "live workers and their resources", NULL, &tn_spec_workers, tn_cmd_workers},
    {"demo", "record a demo workflow's transitions and print its replayed timeline", NULL,
     &tn_spec_demo, tn_cmd_demo},
    {"replay", "rebuild every projection from the events and verify the log", NULL,
     &tn_spec_replay, tn_cmd_replay},
    {"audit", "print the timeline of one workflow instance and its tasks", NULL, &tn_spec_audit,
     tn_cmd_audit},
    {"gc", "remove finished instances' projections from the store (events stay)", NULL,
     &tn_spec_gc, tn_cmd_gc},
    {"sm", "print a state machine as a DOT graph or a Markdown table", NULL, &tn_spec_sm,
     tn_cmd_sm},
    {"bench", "run a benchmark next to its raw baseline", NULL, &tn_spec_bench, tn_cmd_bench},
    {"chaos", "real daemons, seeded faults, then invariants checked from the log and hosts",
     NULL, &tn_spec_chaos, tn_cmd_chaos},
    {"cert", "make a CA and signed master, worker and client certificates for tls+tcp", NULL,
     &tn_spec_cert, tn_cmd_cert},
    {"help", "show this help, or a command's", usage_help, NULL, cmd_help},
};

static const tn_cli_cmd *find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_usage(const tn_cli_cmd *c)
{
    if (c->spec)
        tn_opt_help(c->spec, stdout);
    else
        fputs(c->usage, stdout);
}

/* The hidden forms the build runs to write the manual pages and the completion. */
static int help_generate(int argc, char **argv)
{
    enum {
        N = sizeof(commands) / sizeof(commands[0])
    };
    tn_man_entry e[N];
    for (size_t i = 0; i < N; i++)
        e[i] = (tn_man_entry){commands[i].name, commands[i].summary, commands[i].spec};
    if (strcmp(argv[1], "--completion") == 0) {
        if (argc != 3 || strcmp(argv[2], "bash") != 0)
            return tn_cli_usage("help", "--completion takes bash");
        tn_completion_bash(e, N, stdout);
        return 0;
    }
    if (argc == 2 || strcmp(argv[2], "tern") == 0) {
        tn_man_index(e, N, TN_VERSION, stdout);
        return 0;
    }
    const tn_cli_cmd *c = argc == 3 ? find(argv[2]) : NULL;
    if (!c || !c->spec)
        return tn_cli_usage("help", "--man takes one command that has options, or none");
    tn_man_command(c->spec, c->summary, TN_VERSION, stdout);
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--man") == 0 || strcmp(argv[1], "--completion") == 0))
        return help_generate(argc, argv);
    if (argc > 1) {
        const tn_cli_cmd *c = find(argv[1]);
        if (!c)
            return tn_cli_usage("help", "unknown command \"%s\"", argv[1]);
        print_usage(c);
        return 0;
    }
    printf("tern — a workflow scheduler on an event-sourced state-machine core\n\n"
           "usage: tern COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        printf("  %-13s %s\n", commands[i].name, commands[i].summary);
    printf("\nEvery command takes --help. Commands that read a store take --data DIR\n"
           "(default %s); commands that report state take --json.\n"
           "Workflow files: docs/WORKFLOW_FORMAT.md (every key, with an example).\n",
           TN_DEFAULT_DATA);
    return 0;
}

static int unknown_command(const char *name)
{
    const char *words[sizeof(commands) / sizeof(commands[0])];
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        words[i] = commands[i].name;
    const char *near = tn_opt_suggest(name, words, sizeof(words) / sizeof(words[0]));
    if (near)
        fprintf(stderr,
                "tern: unknown command \"%s\" (did you mean `tern %s`?); see `tern help`\n",
                name, near);
    else
        fprintf(stderr, "tern: unknown command \"%s\"; see `tern help`\n", name);
    return 2;
}

/* glibc's malloc gives memory back to the kernel as soon as it is freed: blocks over 128
 * KiB are mapped and unmapped one by one, and the heap's top is trimmed past 128 KiB. The
 * engine builds and drops tens of MB per batch (a 100k-task workflow's START batch, its
 * projections), so every page of it was faulted in again batch after batch: a fifth of
 * the engine thread's time in `tern bench engine --only wide`. Freed memory is kept for
 * reuse instead: blocks up to 128 MiB come from the heap, its top is trimmed only past
 * 256 MiB and it grows 64 MiB at a time (docs/OPERATIONS.md, "Memory"). A user's own
 * MALLOC_* or GLIBC_TUNABLES settings win. */
static void keep_freed_memory(void)
{
    static const char *const user[] = {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_",
                                       "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"};
    for (size_t i = 0; i < sizeof(user) / sizeof(user[0]); i++)
        if (getenv(user[i]))
            return;
    (void)mallopt(M_MMAP_THRESHOLD, 128 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 256 << 20);
    (void)mallopt(M_TOP_PAD, 64 << 20);
}

int main(int argc, char **argv)
{
    /* a peer that goes away mid-write is an error to handle, not a reason to die */
    signal(SIGPIPE, SIG_IGN);
    keep_freed_memory();
    if (argc < 2) { /* a usage error, but one that deserves the whole help */
        fflush(stdout);
        int out = dup(1);
        dup2(2, 1);
        cmd_help(1, argv);
        fflush(stdout);
        dup2(out, 1);
        close(out);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(1, argv);
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("tern %s\n", TN_VERSION);
        return 0;
    }
    const tn_cli_cmd *c = find(argv[1]);
    if (!c)
        return unknown_command(argv[1]);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(c);
            return 0;
        }
    }
    return c->run(argc - 1, argv + 1);
}

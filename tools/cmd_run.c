/* `tern run FILE`: apply a workflow file, start an instance and run it to its end in
 * this process (an embedded standalone), showing progress, then print its tasks. */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "def.h"
#include "engine.h"
#include "log.h"
#include "replay.h"
#include "sm_gen.h"
#include "standalone.h"
#include "util.h"
#include "cli.h"
#include "jsonout.h"

typedef struct run_opts {
    const char *data;
    bool json, dry_run;
    tn_opt_kv param;
    tn_opt_list from, pass_env, kill_hook;
    uint64_t kill_hook_timeout;
    int mode;
    const char *tenant;
} run_opts;

static bool parse_mode(const char *v, void *field)
{
    int m = tn_start_mode_parse(v);
    if (m < 0)
        return false;
    *(int *)field = m;
    return true;
}

static const tn_opt run_table[] = {
    {"param", 0, TN_OPT_KV, offsetof(run_opts, param), "K=V",
     .help = "a start-time param override"},
    {"from", 0, TN_OPT_LIST, offsetof(run_opts, from), "TASK",
     .help = "start from this task; --mode says what else runs"},
    {"mode", 0, TN_OPT_CUSTOM, offsetof(run_opts, mode), "MODE",
     .help = "task_only, task_pre (and upstream) or task_post (and downstream)",
     .want = "task_only, task_pre or task_post", .parse = parse_mode},
    {"tenant", 0, TN_OPT_STR, offsetof(run_opts, tenant), "USER",
     .help = "run the shell tasks as this OS user (over the definition's tenant:)"},
    {"dry-run", 0, TN_OPT_FLAG, offsetof(run_opts, dry_run), NULL,
     .help = "record an instance whose tasks are marked successful, run nothing"},
    {"pass-env", 0, TN_OPT_LIST, offsetof(run_opts, pass_env), "NAME",
     .help = "pass the worker's variable NAME to every task (repeatable); tasks get\n"
             "PATH, HOME, USER, LOGNAME, SHELL, LANG, TERN_*, their params and nothing else"},
    TN_KILL_HOOK_OPTS(run_opts),
    {"data", 0, TN_OPT_STR, offsetof(run_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)"},
    {"json", 0, TN_OPT_FLAG, offsetof(run_opts, json), NULL,
     .help = "{\"workflow\":{\"id\",\"name\",\"state\"},\"tasks\":[{\"name\",\"state\",\n"
             "\"attempts\",\"reason\"}]}"},
    {0}};

const tn_opt_cmd tn_spec_run = {
    "run", (const char *const[]){"FILE", NULL},
    "Apply the workflow definition in FILE (a new version only if it changed), start an\n"
    "instance, run it to a final state in this process, and print each task's state,\n"
    "attempts, duration and, for a task that failed or was killed, why (exit status,\n"
    "signal, timeout, spawn or param error, who killed it). Exit status 0 only when the\n"
    "workflow ends SUCCESS.\n",
    run_table, .max_args = 1};

/* The definition in a file, parsed (so a bad file is reported before anything starts)
 * and encoded for APPLY_DEF. */
typedef struct run_def {
    char *bytes;
    size_t len;
    char name[TN_DEF_MAX_NAME + 1];
    uint32_t ntasks;
} run_def;

static int load_def(const char *path, const char *data, run_def *d)
{
    tn_def *def;
    tn_errmsg m = {{0}};
    if (tn_def_parse_file(path, &def, &m))
        return tn_cli_fail("run", "%s", m.text);
    if (tn_cli_check_subs("run", data, &def, &path, 1)) {
        tn_def_free(def);
        return 1;
    }
    tn_err e = tn_def_encode(def, &d->bytes, &d->len);
    snprintf(d->name, sizeof(d->name), "%s", def->name);
    d->ntasks = def->n_tasks;
    tn_def_free(def);
    return e ? tn_cli_fail("run", "%s: cannot encode the definition", path) : 0;
}

/* Apply the definition and start an instance on the engine; its id in *wf. */
static int start(tn_engine *e, const run_opts *o, const run_def *d, uint64_t *wf)
{
    tn_cmd ac = {.kind = TN_CMD_APPLY_DEF,
                 .def_bytes = d->bytes,
                 .def_len = d->len,
                 .actor = "user:cli"};
    int mode = o->from.n && o->mode == TN_MODE_ALL ? TN_MODE_TASK_POST : o->mode;
    /* --tenant travels as the system.tenant param (see params.h) */
    const char *keys[TN_OPT_MAX_LIST + 1], *vals[TN_OPT_MAX_LIST + 1];
    uint32_t np = o->param.n;
    for (uint32_t i = 0; i < np; i++) {
        keys[i] = o->param.key[i];
        vals[i] = o->param.val[i];
    }
    if (o->tenant) {
        keys[np] = "system.tenant";
        vals[np++] = o->tenant;
    }
    tn_cmd sc = {.kind = TN_CMD_START,
                 .workflow = d->name,
                 .param_keys = keys,
                 .param_values = vals,
                 .nparams = np,
                 .from = o->from.v,
                 .nfrom = o->from.n,
                 .mode = (tn_start_mode)mode,
                 .dry_run = o->dry_run,
                 .actor = "user:cli"};
    if (tn_engine_submit_wait(e, &ac) || tn_engine_submit_wait(e, &sc))
        return tn_cli_fail("run", "%s", ac.err ? ac.msg : sc.msg);
    *wf = sc.out_id;
    return 0;
}

/* From the store's committed projections: the engine thread may still run. */
static void print_table(tn_engine *e, uint64_t wf, bool json)
{
    tn_store *s = tn_evlog_store(tn_engine_log(e));
    tn_wf_proj w;
    if (tn_engine_read_wf(e, wf, &w) != TN_OK)
        return;
    uint64_t *ids = NULL;
    size_t nids = 0;
    (void)tn_replay_run_tasks(s, wf, &ids, &nids);
    const char *ws = tn_sm_state_name(&tn_sm_workflow, w.state);
    json_t *tasks = json ? json_array() : NULL;
    if (!json)
        printf("%-24s %-18s %8s %10s  %s\n", "TASK", "STATE", "ATTEMPTS", "DURATION", "REASON");
    for (size_t i = 0; i < nids; i++) {
        tn_task_proj p;
        if (tn_engine_read_task(e, ids[i], &p) != TN_OK)
            continue;
        const char *st = tn_sm_state_name(&tn_sm_task, p.state);
        char dur[32];
        tn_fmt_duration(p.started_at && p.ended_at ? p.ended_at - p.started_at : -1, dur,
                        sizeof(dur));
        if (json)
            tn_jo_push(tasks, json_pack("{s:I,s:o,s:s,s:I,s:o}", "id", (json_int_t)p.id, "name",
                                        tn_jo_str(p.name), "state", st, "attempts",
                                        (json_int_t)p.attempt, "reason", tn_jo_str(p.reason)));
        else
            printf("%-24s %-18s %8u %10s  %s\n", p.name, st, p.attempt, dur,
                   p.reason[0] ? p.reason : "-");
    }
    tn_sb b = {0};
    if (json && !tn_jo_dump(&b, json_pack("{s:{s:I,s:o,s:s,s:I},s:o}", "workflow", "id",
                                          (json_int_t)wf, "name", tn_jo_str(w.name), "state",
                                          ws, "run", (json_int_t)w.run, "tasks", tasks))) {
        fputs("tern run: out of memory writing the JSON\n", stderr);
    } else if (json) {
        printf("%s\n", b.s);
    } else {
        char dur[32];
        tn_fmt_duration(w.started_at && w.ended_at ? w.ended_at - w.started_at : -1, dur,
                        sizeof(dur));
        printf("workflow %s instance %" PRIu64 ": %s in %s\n", w.name, wf, ws, dur);
    }
    free(b.s);
    free(ids);
}

/* "progress: done/total tasks done, N running, N failed" for the instance. */
static void progress_line(tn_engine *e, uint64_t wf, uint32_t ntasks, char *line, size_t len)
{
    uint64_t *ids = NULL;
    size_t nids = 0;
    (void)tn_replay_run_tasks(tn_evlog_store(tn_engine_log(e)), wf, &ids, &nids);
    unsigned done = 0, running = 0, failed = 0;
    for (size_t i = 0; i < nids; i++) {
        tn_task_proj p;
        if (tn_engine_read_task(e, ids[i], &p) != TN_OK)
            continue;
        if (tn_sm_task.final[p.state])
            done++;
        if (p.state == TN_TASK_S_RUNNING_EXECUTION || p.state == TN_TASK_S_DISPATCH)
            running++;
        if (p.state == TN_TASK_S_FAILURE || p.state == TN_TASK_S_KILL)
            failed++;
    }
    free(ids);
    snprintf(line, len, "progress: %u/%u tasks done, %u running, %u failed", done, ntasks,
             running, failed);
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Wait for the instance to reach a final state, showing progress (on one rewritten line
 * on a terminal); the first SIGINT or SIGTERM stops the instance. */
static void wait_final(tn_engine *e, uint64_t wf, uint32_t ntasks, bool json, tn_wf_proj *w)
{
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    /* the engine runs in the master's thread: read what it committed, not its memory */
    bool tty = isatty(1) && !json, stopped = false;
    char last[160] = "";
    for (;;) {
        if (tn_engine_read_wf(e, wf, w) == TN_OK && tn_sm_workflow.final[w->state])
            break;
        if (interrupted && !stopped) {
            tn_cmd stop = {.kind = TN_CMD_STOP, .id = wf, .actor = "user:cli"};
            tn_engine_submit_wait(e, &stop);
            stopped = true;
        }
        char line[160];
        int64_t pause_us = 100000;
        if (!json) {
            /* the line reads every task of the run: wait ten times what it took, so a
             * big workflow's progress never takes more than a tenth of the machine */
            int64_t t0 = tn_mono_ns();
            progress_line(e, wf, ntasks, line, sizeof(line));
            int64_t took_us = (tn_mono_ns() - t0) / 1000;
            if (took_us * 10 > pause_us)
                pause_us = took_us * 10;
            if (strcmp(line, last) != 0) {
                printf(tty ? "\r%s\033[K" : "%s\n", line);
                fflush(stdout);
                snprintf(last, sizeof(last), "%s", line);
            }
        }
        usleep((useconds_t)(pause_us < 5000000 ? pause_us : 5000000));
    }
    if (tty)
        printf("\n");
}

/* Run the definition in the embedded standalone; the exit status. */
static int run_here(const run_opts *o, const run_def *d)
{
    /* their logs only when something goes wrong, unless TERN_LOG_LEVEL says otherwise */
    if (!getenv("TERN_LOG_LEVEL"))
        tn_log_set_level(TN_LOG_WARN);
    tn_standalone *s;
    tn_errmsg m = {{0}};
    tn_standalone_opts so = {.data_dir = o->data,
                             .pass_env = o->pass_env.v,
                             .npass_env = o->pass_env.n,
                             .kill_hooks = o->kill_hook.v,
                             .nkill_hooks = o->kill_hook.n,
                             .kill_hook_timeout_ms = o->kill_hook_timeout};
    if (tn_standalone_start(&so, &s, &m))
        return tn_cli_fail("run", "%s", m.text);
    tn_engine *e = tn_master_engine(tn_standalone_master(s));
    uint64_t wf = 0;
    int rc = start(e, o, d, &wf);
    if (rc == 0) {
        if (!o->json)
            printf("started %s instance %" PRIu64 " (data: %s; `tern status %" PRIu64
                   "` from another shell)\n",
                   d->name, wf, o->data, wf);
        tn_wf_proj w;
        wait_final(e, wf, d->ntasks, o->json, &w);
        print_table(e, wf, o->json);
        rc = w.state == TN_WF_S_SUCCESS ? 0 : 1;
    }
    tn_standalone_stop(s);
    return rc;
}

int tn_cmd_run(int argc, char **argv)
{
    run_opts o = {.data = TN_DEFAULT_DATA, .mode = TN_MODE_ALL};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_run, argc, argv, &o, &a);
    if (rc)
        return rc;
    run_def d = {0};
    if (a.n != 1)
        rc = tn_cli_usage("run", "give one workflow file");
    else if ((rc = tn_daemon_check_kill_hooks("run", &o.kill_hook)) == 0 &&
             (rc = load_def(a.v[0], o.data, &d)) == 0)
        rc = run_here(&o, &d);
    free(d.bytes);
    tn_opt_args_free(&a);
    return rc;
}

/* `tern run`, `tern def`, `tern taskgroup`, `tern env`: definitions and runs against
 * a local data directory, with the engine and the in-process executor in this process. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "def.h"
#include "engine.h"
#include "inproc.h"
#include "log.h"
#include "master.h"
#include "worker.h"
#include "replay.h"
#include "util.h"
#include "sm_gen.h"
#include "cli.h"

const char tn_usage_run[] =
    "usage: tern run FILE [--param k=v]... [--from TASK --mode task_only|task_pre|task_post]\n"
    "                [--dry-run] [--data DIR] [--json]\n"
    "\n"
    "Apply the workflow definition in FILE (a new version only if it changed), start an\n"
    "instance, run it to a final state in this process, and print each task's state,\n"
    "attempts and duration. Exit status 0 only when the workflow ends SUCCESS.\n"
    "\n"
    "  --param k=v   a start-time param override (repeatable)\n"
    "  --from TASK   start from this task (repeatable); --mode says what else runs\n"
    "  --mode M      task_only, task_pre (and upstream) or task_post (and downstream)\n"
    "  --dry-run     record an instance whose tasks are marked successful, run nothing\n"
    "  --data DIR    the data directory (default ./tern-data)\n"
    "  --json        {\"workflow\":{\"id\",\"name\",\"state\"},\"tasks\":[{\"name\",\"state\",\n"
    "                \"attempts\"}]}\n";

const char tn_usage_def[] =
    "usage: tern def apply FILE... [--data DIR] [--json]\n"
    "       tern def ls [--data DIR] [--json]\n"
    "       tern def show NAME [--version N] [--data DIR] [--json]\n"
    "\n"
    "apply: validate each YAML file and store it as a new version of its workflow when its\n"
    "       content changed (comments, spacing and key order are not changes).\n"
    "ls:    every workflow definition with its latest version.\n"
    "show:  one version (default: the latest), as its canonical YAML-like summary.\n";

const char tn_usage_taskgroup[] =
    "usage: tern taskgroup set NAME SLOTS [--data DIR]\n"
    "\n"
    "Set a task group's slots: at most SLOTS tasks with `task_group: NAME` run at once,\n"
    "across all workflows. A group that was never set does not limit.\n";

const char tn_usage_env[] =
    "usage: tern env set NAME FILE [--data DIR]\n"
    "\n"
    "Store a named environment: FILE's text runs before the command of every shell task\n"
    "that says `environment: NAME`.\n";

/* ------------------------------------------------------------------------------ */

typedef struct local {
    tn_engine *e;
    tn_inproc *x;
} local;

static int local_open(const char *cmd, const char *data, local *l)
{
    char logs[4200];
    snprintf(logs, sizeof(logs), "%s/logs", data);
    tn_errmsg m = {{0}};
    if (tn_mkdir_p(data) != 0)
        return tn_cli_fail(cmd, "%s: cannot create the data directory: %m; check --data", data);
    if (tn_inproc_new(logs, &l->x))
        return tn_cli_fail(cmd, "%s: cannot create the task log directory", logs);
    tn_engine_opts o = {.data_dir = data, .log = {.create = true},
                        .executor = tn_inproc_executor(l->x)};
    if (tn_engine_open(&o, &l->e, &m)) {
        tn_inproc_free(l->x);
        return tn_cli_fail(cmd, "%s", m.text);
    }
    tn_inproc_bind(l->x, l->e);
    tn_engine_step(l->e, NULL);
    return 0;
}

static void local_close(local *l)
{
    tn_engine_close(l->e);
    tn_inproc_free(l->x);
}

static int apply_file(const char *cmd, local *l, const char *path, bool json, bool first,
                      char *name_out, size_t name_len)
{
    tn_def *def;
    tn_errmsg m = {{0}};
    if (tn_def_parse_file(path, &def, &m))
        return tn_cli_fail(cmd, "%s", m.text);
    char *bytes;
    size_t len;
    tn_err err = tn_def_encode(def, &bytes, &len);
    if (name_out)
        snprintf(name_out, name_len, "%s", def->name);
    if (err) {
        tn_def_free(def);
        return tn_cli_fail(cmd, "%s: cannot encode: %s", path, tn_strerror(err));
    }
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = len,
                .actor = "user:cli"};
    err = tn_engine_call(l->e, &c);
    free(bytes);
    int rc = 0;
    if (err) {
        rc = tn_cli_fail(cmd, "%s: %s", path, c.msg);
    } else if (json) {
        printf("%s{\"file\":", first ? "" : ",");
        tn_json_cstr(stdout, path);
        printf(",\"name\":");
        tn_json_cstr(stdout, def->name);
        printf(",\"version\":%" PRIu64 ",\"changed\":%s}", c.out_id, c.unchanged ? "false" : "true");
    } else if (strcmp(cmd, "def") == 0) {
        printf("%s: %s %s (version %" PRIu64 ")\n", path, def->name,
               c.unchanged ? "unchanged" : "applied", c.out_id);
    }
    tn_def_free(def);
    return rc;
}

/* From the store's committed projections: the engine thread may still run. */
static void print_table(tn_store *s, tn_engine *e, uint64_t wf, bool json)
{
    tn_wf_proj w;
    if (tn_engine_read_wf(e, wf, &w) != TN_OK)
        return;
    uint64_t *ids = NULL;
    size_t nids = 0;
    (void)tn_replay_run_tasks(s, wf, &ids, &nids);
    const char *ws = tn_sm_state_name(&tn_sm_workflow, w.state);
    if (json) {
        printf("{\"workflow\":{\"id\":%" PRIu64 ",\"name\":", wf);
        tn_json_cstr(stdout, w.name);
        printf(",\"state\":\"%s\",\"run\":%u},\"tasks\":[", ws, w.run);
    } else {
        printf("%-24s %-18s %8s %10s\n", "TASK", "STATE", "ATTEMPTS", "DURATION");
    }
    for (size_t i = 0; i < nids; i++) {
        tn_task_proj p;
        if (tn_engine_read_task(e, ids[i], &p) != TN_OK)
            continue;
        const char *st = tn_sm_state_name(&tn_sm_task, p.state);
        char dur[32];
        tn_fmt_duration(p.started_at && p.ended_at ? p.ended_at - p.started_at : -1, dur, sizeof(dur));
        if (json) {
            printf("%s{\"id\":%" PRIu64 ",\"name\":", i ? "," : "", p.id);
            tn_json_cstr(stdout, p.name);
            printf(",\"state\":\"%s\",\"attempts\":%u}", st, p.attempt);
        } else {
            printf("%-24s %-18s %8u %10s\n", p.name, st, p.attempt, dur);
        }
    }
    if (json) {
        printf("]}\n");
    } else {
        char dur[32];
        tn_fmt_duration(w.started_at && w.ended_at ? w.ended_at - w.started_at : -1, dur, sizeof(dur));
        printf("workflow %s instance %" PRIu64 ": %s in %s\n", w.name, wf, ws, dur);
    }
    free(ids);
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

int tn_cmd_run(int argc, char **argv)
{
    const char *data = TN_DEFAULT_DATA;
    bool json = false, dry = false;
    const char *pk[256], *pv[256], *from[256];
    char *pbuf[256];
    uint32_t np = 0, nfrom = 0;
    int mode = TN_MODE_ALL;
    static const struct option lo[] = {{"data", required_argument, 0, 'd'},
                                       {"json", no_argument, 0, 'j'},
                                       {"param", required_argument, 0, 'p'},
                                       {"from", required_argument, 0, 'f'},
                                       {"mode", required_argument, 0, 'm'},
                                       {"dry-run", no_argument, 0, 'n'},
                                       {0, 0, 0, 0}};
    int c, rc = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'j': json = true; break;
        case 'n': dry = true; break;
        case 'p': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || np == 256)
                return tn_cli_usage("run", "--param wants k=v, not \"%s\"", optarg);
            pbuf[np] = strndup(optarg, (size_t)(eq - optarg));
            pk[np] = pbuf[np];
            pv[np++] = eq + 1;
            break;
        }
        case 'f':
            if (nfrom == 256)
                return tn_cli_usage("run", "too many --from");
            from[nfrom++] = optarg;
            break;
        case 'm':
            if ((mode = tn_start_mode_parse(optarg)) < 0)
                return tn_cli_usage("run", "--mode is task_only, task_pre or task_post, not "
                                    "\"%s\"", optarg);
            break;
        default: return tn_cli_usage("run", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return tn_cli_usage("run", "give one workflow file");
    if (nfrom && mode == TN_MODE_ALL)
        mode = TN_MODE_TASK_POST;
    /* parse first: a bad file is reported before anything starts */
    tn_def *def;
    tn_errmsg m = {{0}};
    if (tn_def_parse_file(argv[optind], &def, &m)) {
        rc = tn_cli_fail("run", "%s", m.text);
        goto out;
    }
    char *bytes;
    size_t blen;
    if (tn_def_encode(def, &bytes, &blen)) {
        tn_def_free(def);
        rc = tn_cli_fail("run", "%s: cannot encode the definition", argv[optind]);
        goto out;
    }
    char name[TN_DEF_MAX_NAME + 1];
    snprintf(name, sizeof(name), "%s", def->name);
    uint32_t ntasks = def->n_tasks;
    tn_def_free(def);
    /* the embedded default: a master and a worker in this process; their logs only
     * when something goes wrong, unless TERN_LOG_LEVEL says otherwise */
    if (!getenv("TERN_LOG_LEVEL"))
        tn_log_set_level(TN_LOG_WARN);
    tn_master *ms;
    tn_worker *wk;
    if (tn_standalone_start(data, 0, false, &ms, &wk, &m)) {
        free(bytes);
        rc = tn_cli_fail("run", "%s", m.text);
        goto out;
    }
    tn_engine *e = tn_master_engine(ms);
    tn_cmd ac = {.kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = blen,
                 .actor = "user:cli"};
    tn_cmd sc = {.kind = TN_CMD_START, .workflow = name, .param_keys = pk, .param_values = pv,
                 .nparams = np, .from = from, .nfrom = nfrom, .mode = (tn_start_mode)mode,
                 .dry_run = dry, .actor = "user:cli"};
    if (tn_engine_submit_wait(e, &ac) || tn_engine_submit_wait(e, &sc)) {
        rc = tn_cli_fail("run", "%s", ac.err ? ac.msg : sc.msg);
        free(bytes);
        tn_worker_stop(wk);
        tn_master_stop(ms);
        goto out;
    }
    free(bytes);
    if (!json)
        printf("started %s instance %" PRIu64 " (data: %s; `tern status %" PRIu64
               "` from another shell)\n", name, sc.out_id, data, sc.out_id);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    /* the engine runs in the master's thread: read what it committed, not its memory */
    tn_store *st = tn_evlog_store(tn_engine_log(e));
    bool tty = isatty(1) && !json;
    char last[160] = "";
    tn_wf_proj w;
    bool stopped = false;
    for (;;) {
        if (tn_engine_read_wf(e, sc.out_id, &w) == TN_OK && tn_sm_workflow.final[w.state])
            break;
        if (interrupted && !stopped) {
            tn_cmd stop = {.kind = TN_CMD_STOP, .id = sc.out_id, .actor = "user:cli"};
            tn_engine_submit_wait(e, &stop);
            stopped = true;
        }
        if (!json) {
            /* progress: done of total, running, failed */
            uint64_t *ids = NULL;
            size_t nids = 0;
            (void)tn_replay_run_tasks(st, sc.out_id, &ids, &nids);
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
            char line[160];
            snprintf(line, sizeof(line), "progress: %u/%u tasks done, %u running, %u failed",
                     done, ntasks, running, failed);
            if (strcmp(line, last) != 0) {
                printf(tty ? "\r%s\033[K" : "%s\n", line);
                fflush(stdout);
                snprintf(last, sizeof(last), "%s", line);
            }
        }
        usleep(100000);
    }
    if (tty)
        printf("\n");
    print_table(st, e, sc.out_id, json);
    rc = w.state == TN_WF_S_SUCCESS ? 0 : 1;
    tn_worker_stop(wk);
    tn_master_stop(ms);
out:
    for (uint32_t i = 0; i < np; i++)
        free(pbuf[i]);
    return rc;
}

/* ------------------------------------------------------------------------------ */

static int def_ls(const char *data, bool json)
{
    tn_store *s;
    tn_store_opts o = {.read_only = true};
    tn_errmsg m = {{0}};
    if (tn_store_open(data, &o, &s, &m))
        return tn_cli_fail("def", "%s", m.text);
    tn_rtxn *t;
    tn_cursor *c;
    tn_val k, v;
    tn_store_read_begin(s, &t);
    tn_cursor_open(t, TN_DB_DEFS, &c);
    char prev[TN_DEF_MAX_NAME + 1] = "";
    uint32_t ver = 0;
    size_t n = 0;
    if (json)
        printf("[");
    else
        printf("%-32s %s\n", "WORKFLOW", "LATEST");
    for (tn_err e = tn_cursor_first(c, &k, &v);; e = tn_cursor_next(c, &k, &v)) {
        const char *kn = e == TN_OK ? (const char *)k.data : NULL;
        size_t nl = kn ? strnlen(kn, k.len) : 0;
        bool same = kn && strlen(prev) == nl && memcmp(prev, kn, nl) == 0;
        if (!same && prev[0]) {
            if (json)
                printf("%s{\"name\":\"%s\",\"version\":%u}", n ? "," : "", prev, ver);
            else
                printf("%-32s %u\n", prev, ver);
            n++;
        }
        if (e != TN_OK)
            break;
        if (nl + 5 != k.len || nl > TN_DEF_MAX_NAME)
            continue;
        memcpy(prev, kn, nl);
        prev[nl] = 0;
        const uint8_t *p = (const uint8_t *)k.data + nl + 1;
        ver = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    if (json)
        printf("]\n");
    tn_cursor_close(c);
    tn_store_read_end(t);
    tn_store_close(s);
    return 0;
}

static int def_show(const char *data, const char *name, uint64_t version, bool json)
{
    tn_store *s;
    tn_store_opts o = {.read_only = true};
    tn_errmsg m = {{0}};
    if (tn_store_open(data, &o, &s, &m))
        return tn_cli_fail("def", "%s", m.text);
    tn_rtxn *t;
    tn_cursor *c;
    tn_val k, v;
    tn_store_read_begin(s, &t);
    tn_cursor_open(t, TN_DB_DEFS, &c);
    uint8_t key[TN_NAME_MAX + 5];
    size_t kl = tn_proj_def_key(name, 0, key), nl = strlen(name);
    tn_def *def = NULL;
    uint32_t found = 0;
    for (tn_err e = tn_cursor_seek(c, key, kl, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
        if (k.len != nl + 5 || memcmp(k.data, name, nl + 1) != 0)
            break;
        const uint8_t *p = (const uint8_t *)k.data + nl + 1;
        uint32_t ver = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (version && ver != version)
            continue;
        tn_def_free(def);
        def = NULL;
        if (tn_def_decode(v.data, v.len, &def, &m) == TN_OK)
            found = ver;
    }
    tn_cursor_close(c);
    tn_store_read_end(t);
    tn_store_close(s);
    if (!def) {
        if (version)
            return tn_cli_fail("def", "workflow \"%s\" has no version %" PRIu64
                               "; see `tern def ls`", name, version);
        return tn_cli_fail("def", "no workflow named \"%s\"; see `tern def ls`", name);
    }
    if (json) {
        printf("{\"name\":");
        tn_json_cstr(stdout, def->name);
        printf(",\"version\":%u,\"execution\":\"%s\",\"failure_strategy\":\"%s\",\"tasks\":[",
               found, tn_def_exec_name(def->execution),
               tn_def_failure_strategy_name(def->failure_strategy));
        for (uint32_t i = 0; i < def->n_tasks; i++) {
            const tn_def_task *tk = &def->tasks[i];
            printf("%s{\"name\":", i ? "," : "");
            tn_json_cstr(stdout, tk->name);
            printf(",\"type\":\"%s\",\"deps\":[", tn_def_task_type_name(tk->type));
            for (uint32_t j = 0; j < tk->n_deps; j++) {
                printf("%s", j ? "," : "");
                tn_json_cstr(stdout, tk->deps[j].name);
            }
            printf("],\"retries\":%u}", tk->retries);
        }
        printf("]}\n");
    } else {
        printf("name: %s\nversion: %u\nexecution: %s\nfailure_strategy: %s\npriority: %s\n"
               "tasks:\n",
               def->name, found, tn_def_exec_name(def->execution),
               tn_def_failure_strategy_name(def->failure_strategy),
               tn_def_priority_name(def->priority));
        for (uint32_t i = 0; i < def->n_tasks; i++) {
            const tn_def_task *tk = &def->tasks[i];
            printf("  - name: %s\n    type: %s\n", tk->name, tn_def_task_type_name(tk->type));
            if (tk->n_deps) {
                printf("    deps: [");
                for (uint32_t j = 0; j < tk->n_deps; j++)
                    printf("%s%s", j ? ", " : "", tk->deps[j].name);
                printf("]\n");
            }
            if (tk->retries)
                printf("    retries: %u\n", tk->retries);
            if (tk->command)
                printf("    command: %s\n", tk->command);
        }
    }
    tn_def_free(def);
    return 0;
}

int tn_cmd_def(int argc, char **argv)
{
    const char *data = TN_DEFAULT_DATA, *master = NULL;
    bool json = false;
    uint64_t version = 0;
    static const struct option lo[] = {{"data", required_argument, 0, 'd'},
                                       {"json", no_argument, 0, 'j'},
                                       {"version", required_argument, 0, 'v'},
                                       {"master", required_argument, 0, 'M'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'M': master = optarg; break;
        case 'j': json = true; break;
        case 'v':
            if (!tn_cli_u64(optarg, &version) || version == 0)
                return tn_cli_usage("def", "--version wants a positive number");
            break;
        default: return tn_cli_usage("def", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return tn_cli_usage("def", "say apply, ls or show");
    const char *sub = argv[optind++];
    if (strcmp(sub, "ls") == 0)
        return def_ls(data, json);
    if (strcmp(sub, "show") == 0) {
        if (optind != argc - 1)
            return tn_cli_usage("def", "show wants one workflow name");
        return def_show(data, argv[optind], version, json);
    }
    if (strcmp(sub, "apply") != 0)
        return tn_cli_usage("def", "unknown subcommand \"%s\" (apply, ls, show)", sub);
    if (optind >= argc)
        return tn_cli_usage("def", "apply wants one or more files");
    /* a running master owns the store: apply through it */
    int remote = tn_ctl_apply_remote(data, master, argc - optind, argv + optind, json);
    if (remote >= 0)
        return remote;
    local l;
    int rc = local_open("def", data, &l);
    if (rc)
        return rc;
    if (json)
        printf("[");
    for (int i = optind; i < argc; i++)
        if (apply_file("def", &l, argv[i], json, i == optind, NULL, 0))
            rc = 1;
    if (json)
        printf("]\n");
    local_close(&l);
    return rc;
}

static int simple_cmd(const char *cmdname, int argc, char **argv, int nargs, tn_cmd *cmd,
                      char ***args_out)
{
    static const struct option lo[] = {{"data", required_argument, 0, 'd'}, {0, 0, 0, 0}};
    const char *data = TN_DEFAULT_DATA;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'd')
            data = optarg;
        else
            return tn_cli_usage(cmdname, "unknown option \"%s\"", argv[optind - 1]);
    }
    if (argc - optind != nargs || strcmp(argv[optind], "set") != 0)
        return tn_cli_usage(cmdname, "see the usage");
    *args_out = argv + optind + 1;
    /* a running master owns the store: go through it */
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (r) {
        r->cmd = tn_str_c(cmdname);
        r->name = tn_str_c(cmd->name);
        r->slots = cmd->slots;
        r->bytes = tn_str_c(cmd->text);
        r->actor = TN_STR("user:cli");
        int remote = tn_ctl_try_remote(cmdname, data, r);
        free(r);
        if (remote >= 0)
            return remote;
    }
    local l;
    int rc = local_open(cmdname, data, &l);
    if (rc)
        return rc;
    if (tn_engine_call(l.e, cmd))
        rc = tn_cli_fail(cmdname, "%s", cmd->msg);
    else
        printf("%s\n", cmd->msg);
    local_close(&l);
    return rc;
}

int tn_cmd_taskgroup(int argc, char **argv)
{
    /* parse the positional args first so the command is complete before it runs */
    uint64_t slots = 0;
    int i = 1;
    while (i < argc && strncmp(argv[i], "--", 2) == 0)
        i += strchr(argv[i], '=') ? 1 : 2;
    if (argc - i < 3 || !tn_cli_u64(argv[i + 2], &slots))
        return tn_cli_usage("taskgroup", "usage: tern taskgroup set NAME SLOTS");
    tn_cmd c = {.kind = TN_CMD_TASKGROUP_SET, .name = argv[i + 1], .slots = (int64_t)slots,
                .actor = "user:cli"};
    char **args;
    return simple_cmd("taskgroup", argc, argv, 3, &c, &args);
}

int tn_cmd_env(int argc, char **argv)
{
    int i = 1;
    while (i < argc && strncmp(argv[i], "--", 2) == 0)
        i += strchr(argv[i], '=') ? 1 : 2;
    if (argc - i < 3)
        return tn_cli_usage("env", "usage: tern env set NAME FILE");
    FILE *f = fopen(argv[i + 2], "re");
    if (!f)
        return tn_cli_fail("env", "%s: cannot read: %m", argv[i + 2]);
    char *text = calloc(1, 65537);
    size_t n = text ? fread(text, 1, 65536, f) : 0;
    bool more = fgetc(f) != EOF;
    fclose(f);
    if (!text || more) {
        free(text);
        return tn_cli_fail("env", "%s: an environment is at most 64 KiB", argv[i + 2]);
    }
    text[n] = 0;
    tn_cmd c = {.kind = TN_CMD_ENV_SET, .name = argv[i + 1], .text = text, .actor = "user:cli"};
    char **args;
    int rc = simple_cmd("env", argc, argv, 3, &c, &args);
    free(text);
    return rc;
}

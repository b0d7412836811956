/* The control client: `tern start|pause|resume|stop|rerun|recover|kill|force-success|
 * ls|status|logs|workers` talk to a running master over its control socket. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "def.h"
#include "master.h"
#include "cli.h"
#include "rpc.h"

const char tn_usage_ctl[] =
    "usage: tern start WF [--param k=v]... [--from TASK]... [--mode task_only|task_pre|task_post]\n"
    "                     [--dry-run]\n"
    "       tern pause|resume|stop|rerun|recover WF_ID\n"
    "       tern kill TASK_ID\n"
    "       tern force-success TASK_ID\n"
    "       tern ls [--state STATE]\n"
    "       tern status WF_ID\n"
    "       tern logs TASK_ID [-f] [--attempt N]\n"
    "       tern workers\n"
    "\n"
    "Control a running master (`tern master` or `tern standalone`). Each takes:\n"
    "  --master URL  the master's control socket (default: ipc://DATA/master.ctl)\n"
    "  --data DIR    the data directory whose master to reach (default ./tern-data)\n"
    "  --json        print JSON for scripts\n"
    "\n"
    "start         start an instance of the latest version of workflow WF\n"
    "pause         running tasks finish, nothing new starts, then PAUSE\n"
    "resume        continue a paused instance (paused tasks keep their attempt)\n"
    "stop          kill the running tasks, then STOP\n"
    "rerun         a new run of a finished instance (same id, run count + 1)\n"
    "recover       re-run the failed and killed tasks and what follows, keep successes\n"
    "kill          kill one task (TERM, grace, KILL; every process of it)\n"
    "force-success mark a failed or killed task successful\n"
    "ls            instances (newest last), optionally in one state (e.g. RUNNING_EXECUTION)\n"
    "status        one instance: its tasks, attempts, workers, and why a task waits\n"
    "logs          a task's log, read from the worker that ran it; -f follows it\n"
    "workers       live workers: groups, slots, load, memory, last heartbeat, resources\n";

typedef struct copts {
    const char *master, *data;
    bool json, follow, dry;
    char url[4200];
} copts;

void tn_master_default_ctl(const char *data_dir, char *buf, size_t len)
{
    char abs[PATH_MAX];
    if (!realpath(data_dir, abs))
        snprintf(abs, sizeof(abs), "%s", data_dir);
    snprintf(buf, len, "ipc://%s/master.ctl", abs);
}

static int call(const char *cmd, copts *o, tn_ctl_req *r, tn_ctl_rep *rep, void **raw)
{
    tn_buf b = {0};
    if (tn_ctl_req_encode(r, &b))
        return tn_cli_fail(cmd, "request too large");
    size_t rl;
    tn_errmsg m = {{0}};
    tn_err e = tn_rpc_call(o->url, b.data, b.size, 30000, raw, &rl, &m);
    tn_buf_free(&b);
    if (e) {
        if (e == TN_ERR_TIMEOUT)
            return tn_cli_fail(cmd, "%s: no answer within 30s (is the master busy, or not "
                               "running? `tern master --data %s`)", o->url, o->data);
        return tn_cli_fail(cmd, "%s", m.text);
    }
    if (tn_ctl_rep_decode(*raw, rl, rep)) {
        free(*raw);
        *raw = NULL;
        return tn_cli_fail(cmd, "%s: malformed reply (a master of another version?)", o->url);
    }
    return 0;
}

static int show(const char *cmd, copts *o, const tn_ctl_rep *rep)
{
    if (!rep->ok) {
        if (o->json)
            printf("%.*s\n", (int)rep->json.len, rep->json.p);
        fprintf(stderr, "tern %s: %.*s\n", cmd, (int)rep->text.len, rep->text.p);
        return rep->code ? rep->code : 1;
    }
    if (o->json)
        printf("%.*s\n", (int)rep->json.len, rep->json.p);
    else if (rep->text.len)
        printf("%.*s%s", (int)rep->text.len, rep->text.p,
               rep->text.p[rep->text.len - 1] == '\n' ? "" : "\n");
    return 0;
}

static int logs(copts *o, uint64_t task, uint32_t attempt)
{
    tn_ctl_req r = {.cmd = TN_STR("logs"), .id = task, .attempt = attempt};
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc = call("logs", o, &r, &rep, &raw);
    if (rc)
        return rc;
    if (!rep.ok) {
        rc = show("logs", o, &rep);
        free(raw);
        return rc;
    }
    char wurl[512];
    snprintf(wurl, sizeof(wurl), "%.*s", (int)rep.url.len, rep.url.p);
    if (!attempt)
        attempt = (uint32_t)rep.offset;
    free(raw);
    uint64_t off = 0;
    for (;;) {
        tn_ctl_req lr = {.cmd = TN_STR("log"), .id = task, .attempt = attempt, .offset = off};
        tn_buf b = {0};
        tn_ctl_req_encode(&lr, &b);
        size_t rl;
        tn_errmsg m = {{0}};
        void *lraw = NULL;
        tn_err e = tn_rpc_call(wurl, b.data, b.size, 10000, &lraw, &rl, &m);
        tn_buf_free(&b);
        if (e)
            return tn_cli_fail("logs", "%s", m.text);
        tn_ctl_rep lrep;
        if (tn_ctl_rep_decode(lraw, rl, &lrep)) {
            free(lraw);
            return tn_cli_fail("logs", "%s: malformed reply", wurl);
        }
        if (!lrep.ok) {
            rc = show("logs", o, &lrep);
            free(lraw);
            return rc;
        }
        fwrite(lrep.data.p, 1, lrep.data.len, stdout);
        fflush(stdout);
        off = lrep.offset;
        bool more = !lrep.eof || (o->follow && lrep.running);
        free(lraw);
        if (!more)
            return 0;
        if (lrep.eof) {
            struct timespec ts = {0, 200000000L};
            nanosleep(&ts, NULL);
        }
    }
}

int tn_cmd_ctl(int argc, char **argv)
{
    const char *cmd = argv[0];
    copts o = {.data = TN_DEFAULT_DATA};
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r)
        return tn_cli_fail(cmd, "out of memory");
    uint64_t attempt = 0;
    static const struct option lo[] = {{"master", required_argument, 0, 'M'},
                                       {"data", required_argument, 0, 'd'},
                                       {"json", no_argument, 0, 'j'},
                                       {"param", required_argument, 0, 'p'},
                                       {"from", required_argument, 0, 'f'},
                                       {"mode", required_argument, 0, 'm'},
                                       {"state", required_argument, 0, 's'},
                                       {"dry-run", no_argument, 0, 'n'},
                                       {"follow", no_argument, 0, 'F'},
                                       {"attempt", required_argument, 0, 'a'},
                                       {0, 0, 0, 0}};
    int c, rc = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "f", lo, NULL)) != -1) {
        switch (c) {
        case 'M': o.master = optarg; break;
        case 'd': o.data = optarg; break;
        case 'j': o.json = true; break;
        case 'n': r->dry_run = true; break;
        case 'F': o.follow = true; break;
        case 'a':
            if (!tn_cli_u64(optarg, &attempt)) {
                free(r);
                return tn_cli_usage(cmd, "--attempt wants a number");
            }
            break;
        case 'p': {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || r->nparams == TN_CTL_MAX_LIST) {
                free(r);
                return tn_cli_usage(cmd, "--param wants k=v, not \"%s\"", optarg);
            }
            r->pkeys[r->nparams] = (tn_str){optarg, (uint32_t)(eq - optarg)};
            r->pvals[r->nparams++] = tn_str_c(eq + 1);
            break;
        }
        case 'f':
            if (strcmp(cmd, "logs") == 0) {
                o.follow = true;
                break;
            }
            if (r->nfrom == TN_CTL_MAX_LIST) {
                free(r);
                return tn_cli_usage(cmd, "too many --from");
            }
            r->from[r->nfrom++] = tn_str_c(optarg);
            break;
        case 'm': r->mode = tn_str_c(optarg); break;
        case 's': r->state = tn_str_c(optarg); break;
        default:
            free(r);
            return tn_cli_usage(cmd, "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (o.master)
        snprintf(o.url, sizeof(o.url), "%s", o.master);
    else
        tn_master_default_ctl(o.data, o.url, sizeof(o.url));
    r->cmd = tn_str_c(cmd);
    r->actor = TN_STR("user:cli");
    bool needs_id = strcmp(cmd, "ls") != 0 && strcmp(cmd, "workers") != 0 &&
                    strcmp(cmd, "start") != 0;
    if (strcmp(cmd, "start") == 0) {
        if (optind != argc - 1) {
            free(r);
            return tn_cli_usage(cmd, "give one workflow name");
        }
        r->name = tn_str_c(argv[optind]);
    } else if (needs_id) {
        if (optind != argc - 1 || !tn_cli_u64(argv[optind], &r->id) || r->id == 0) {
            free(r);
            return tn_cli_usage(cmd, "give one %s id (a positive integer)",
                                strcmp(cmd, "kill") == 0 || strcmp(cmd, "force-success") == 0 ||
                                        strcmp(cmd, "logs") == 0
                                    ? "task"
                                    : "workflow instance");
        }
    } else if (optind != argc) {
        free(r);
        return tn_cli_usage(cmd, "unexpected argument \"%s\"", argv[optind]);
    }
    if (strcmp(cmd, "logs") == 0) {
        rc = logs(&o, r->id, (uint32_t)attempt);
        free(r);
        return rc;
    }
    tn_ctl_rep rep;
    void *raw = NULL;
    if ((rc = call(cmd, &o, r, &rep, &raw)) == 0)
        rc = show(cmd, &o, &rep);
    free(raw);
    free(r);
    return rc;
}

/* `tern def apply` with a master running: send the canonical encodings. Returns -1 when
 * no master answers (the caller then works on the store directly). */
int tn_ctl_apply_remote(const char *data, const char *master, int nfiles, char **files,
                        bool json)
{
    copts o = {.data = data, .master = master, .json = json};
    if (master)
        snprintf(o.url, sizeof(o.url), "%s", master);
    else
        tn_master_default_ctl(data, o.url, sizeof(o.url));
    void *probe = NULL;
    size_t pl;
    if (tn_rpc_call(o.url, "", 0, 2000, &probe, &pl, NULL) != TN_OK)
        return master ? tn_cli_fail("def", "%s: no master answers", o.url) : -1;
    free(probe);
    int rc = 0;
    if (json)
        printf("[");
    for (int i = 0; i < nfiles; i++) {
        tn_def *d;
        tn_errmsg m = {{0}};
        if (tn_def_parse_file(files[i], &d, &m)) {
            rc = tn_cli_fail("def", "%s", m.text);
            continue;
        }
        char *bytes;
        size_t len;
        if (tn_def_encode(d, &bytes, &len)) {
            tn_def_free(d);
            rc = tn_cli_fail("def", "%s: cannot encode", files[i]);
            continue;
        }
        tn_def_free(d);
        tn_ctl_req *r = calloc(1, sizeof(*r));
        r->cmd = TN_STR("apply");
        r->file = tn_str_c(files[i]);
        r->bytes = (tn_str){bytes, (uint32_t)len};
        r->actor = TN_STR("user:cli");
        tn_ctl_rep rep;
        void *raw = NULL;
        int c = call("def", &o, r, &rep, &raw);
        if (!c) {
            if (json && rep.ok)
                printf("%s%.*s", i ? "," : "", (int)rep.json.len, rep.json.p);
            else if (!json && rep.ok)
                printf("%.*s\n", (int)rep.text.len, rep.text.p);
            else
                c = tn_cli_fail("def", "%.*s", (int)rep.text.len, rep.text.p);
        }
        if (c)
            rc = 1;
        free(raw);
        free(r);
        free(bytes);
    }
    if (json)
        printf("]\n");
    return rc;
}

/* A command through a running master, if one answers; -1 when none does. */
int tn_ctl_try_remote(const char *cmd, const char *data, tn_ctl_req *r)
{
    copts o = {.data = data};
    tn_master_default_ctl(data, o.url, sizeof(o.url));
    void *probe = NULL;
    size_t pl;
    if (tn_rpc_call(o.url, "", 0, 2000, &probe, &pl, NULL) != TN_OK)
        return -1;
    free(probe);
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc = call(cmd, &o, r, &rep, &raw);
    if (!rc)
        rc = show(cmd, &o, &rep);
    free(raw);
    return rc;
}

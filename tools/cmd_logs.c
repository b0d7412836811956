/* `tern logs TASK_ID [-f] [--attempt N]`: a task's log, asked of the master (which
 * worker ran which attempt) and then read from that worker, following it with -f. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "logread.h"
#include "rpc.h"
#include "util.h"
#include "cli.h"
#include "jsonout.h"

typedef struct logs_opts {
    tn_ctl_common c;
    bool follow;
    uint32_t attempt;
} logs_opts;

static const tn_opt logs_table[] = {{"follow", 'f', TN_OPT_FLAG, offsetof(logs_opts, follow),
                                     NULL, .help = "keep reading while the task runs"},
                                    {"attempt", 0, TN_OPT_U32, offsetof(logs_opts, attempt),
                                     "N", .help = "this attempt's log (default: the latest)"},
                                    TN_CTL_COMMON_OPTS(logs_opts),
                                    {0}};

const tn_opt_cmd tn_spec_logs = {
    "logs", (const char *const[]){"TASK_ID", NULL},
    "A task's log, read from the worker that ran it; -f follows it. With no master\n"
    "running, the log of a task run here (tern run, a standalone) is read from the data\n"
    "directory. --json: {\"task\",\"attempt\",\"worker\",\"log\"}.\n",
    logs_table, .max_args = 1};

/* Ask the master which worker has the log and which attempt is the latest. */
static int locate(const logs_opts *o, uint64_t task, char *wurl, size_t len, uint32_t *attempt)
{
    char url[4200];
    tn_client_url(&o->c, url, sizeof(url));
    tn_ctl_req r = {.cmd = TN_STR("logs"), .id = task, .attempt = *attempt};
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc =
        tn_client_call("logs", url, o->c.data ? o->c.data : TN_DEFAULT_DATA, &r, &rep, &raw);
    if (rc)
        return rc;
    if (!rep.ok) {
        rc = tn_client_show("logs", o->c.json, &rep);
        free(raw);
        return rc;
    }
    snprintf(wurl, len, "%.*s", (int)rep.url.len, rep.url.p);
    if (!*attempt)
        *attempt = (uint32_t)rep.offset;
    free(raw);
    return 0;
}

/* Read the log from the worker at wurl, from offset 0, until its end (or, following,
 * until the task has ended too). */
static int stream(const logs_opts *o, const char *wurl, uint64_t task, uint32_t attempt,
                  tn_sb *out)
{
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
            int rc = tn_client_show("logs", o->c.json, &lrep);
            free(lraw);
            return rc;
        }
        if (!lrep.data.len) /* an empty log, or nothing new: no bytes, and no pointer */
            ;
        else if (out)
            tn_sb_printf(out, "%.*s", (int)lrep.data.len, lrep.data.p);
        else
            fwrite(lrep.data.p, 1, lrep.data.len, stdout);
        fflush(stdout);
        off = lrep.offset;
        bool more = !lrep.eof || (o->follow && lrep.running);
        bool wait = lrep.eof;
        free(lraw);
        if (!more)
            return 0;
        if (wait) {
            struct timespec ts = {0, 200000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* {"task","attempt","worker","log"}; the log's bytes that are not UTF-8 as U+FFFD. */
static void print_json(uint64_t task, uint32_t attempt, const char *worker, const char *log,
                       size_t len)
{
    tn_sb b = {0};
    if (!tn_jo_dump(&b, json_pack("{s:I,s:I,s:o,s:o}", "task", (json_int_t)task, "attempt",
                                  (json_int_t)attempt, "worker",
                                  worker ? tn_jo_str(worker) : json_null(), "log",
                                  tn_jo_strn(log, len)))) {
        fputs("tern logs: out of memory writing the JSON\n", stderr);
        exit(1);
    }
    printf("%s\n", b.s);
    free(b.s);
}

/* No master: the task's attempt from the committed store, its log from the folders a
 * run in this data directory writes (DATA/logs for `tern run` and a local apply,
 * DATA/worker/logs for a standalone's worker). */
static int from_store(const logs_opts *o, uint64_t task)
{
    const char *data = o->c.data ? o->c.data : TN_DEFAULT_DATA;
    tn_store *st;
    tn_errmsg m = {{0}};
    if (tn_log_open_read(data, &st, &m) != TN_OK)
        return tn_cli_fail("logs", "%s", m.text);
    tn_task_proj p;
    tn_err e = tn_log_task_get(st, task, &p);
    tn_log_close_read(st);
    fprintf(stderr, "(from the store; no master is running)\n");
    if (e != TN_OK)
        return tn_cli_fail("logs",
                           "no task instance %" PRIu64 "; see `tern status WF_ID` for "
                           "task ids",
                           task);
    uint32_t attempt = o->attempt ? o->attempt : p.attempt;
    static const char *const dirs[] = {"logs", "worker/logs"};
    for (size_t i = 0; i < TN_ARRAY_LEN(dirs); i++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s/%" PRIu64 "-%u.log", data, dirs[i], task, attempt);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        tn_sb text = {0};
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
            if (o->c.json)
                tn_sb_printf(&text, "%.*s", (int)n, buf);
            else
                fwrite(buf, 1, n, stdout);
        }
        fclose(f);
        if (o->c.json)
            print_json(task, attempt, p.worker, text.s ? text.s : "", text.len);
        free(text.s);
        return 0;
    }
    return tn_cli_fail("logs",
                       "task %" PRIu64 " (%s) attempt %u has no log in %s/logs or "
                       "%s/worker/logs: it ran on %s; start the master to reach that worker",
                       task, p.name, attempt, data, data, p.worker[0] ? p.worker : "no worker");
}

int tn_cmd_logs(int argc, char **argv)
{
    logs_opts o = {.attempt = 0};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_logs, argc, argv, &o, &a);
    if (rc)
        return rc;
    uint64_t task = 0;
    bool ok = a.n == 1 && tn_cli_id(a.v[0], &task);
    tn_opt_args_free(&a);
    if (!ok)
        return tn_cli_usage("logs", "give one task id (a positive integer)");
    char url[4200];
    tn_client_url(&o.c, url, sizeof(url));
    if (!o.c.master && !tn_client_probe(url))
        return from_store(&o, task);
    char wurl[512];
    uint32_t attempt = o.attempt;
    if ((rc = locate(&o, task, wurl, sizeof(wurl), &attempt)))
        return rc;
    tn_sb text = {0};
    rc = stream(&o, wurl, task, attempt, o.c.json ? &text : NULL);
    if (!rc && o.c.json)
        print_json(task, attempt, NULL, text.s ? text.s : "", text.len);
    free(text.s);
    return rc;
}

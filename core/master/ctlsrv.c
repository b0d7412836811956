/* The master's control handlers: each request of the `tern` client becomes an engine
 * command (run by the engine thread) or a read of the store (in the control thread),
 * and the reply carries both the text a person reads and the JSON a script reads. */
#include "ctlsrv.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def.h"
#include "log.h"
#include "logread.h"
#include "replay.h"
#include "util.h"
#include "sm_gen.h"

typedef struct out {
    tn_sb text, json;
    int code;
    bool ok;
    tn_str url;
    char urlbuf[512];
} out;

static void fail(out *o, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(out *o, int code, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    o->ok = false;
    o->code = code;
    free(o->text.s);
    o->text = (tn_sb){0};
    tn_sb_printf(&o->text, "%s", buf);
    free(o->json.s);
    o->json = (tn_sb){0};
    tn_sb_printf(&o->json, "{\"error\":");
    tn_sb_json(&o->json, buf, strlen(buf));
    tn_sb_printf(&o->json, "}");
}

static char *cstr(tn_str s)
{
    char *c = malloc(s.len + 1);
    if (c) {
        memcpy(c, s.p, s.len);
        c[s.len] = 0;
    }
    return c;
}

static const char *wsn(unsigned s)
{
    return tn_sm_state_name(&tn_sm_workflow, s);
}
static const char *tsn(unsigned s)
{
    return tn_sm_state_name(&tn_sm_task, s);
}


/* ------------------------------------------------------------------------------ */
/* commands for the engine */

static void run_cmd(tn_ctlsrv *s, tn_cmd *c, const tn_ctl_req *r, out *o, const char *what)
{
    char actor[80];
    snprintf(actor, sizeof(actor), "%.*s", r->actor.len ? (int)r->actor.len : 8,
             r->actor.len ? r->actor.p : "user:cli");
    c->actor = actor;
    if (tn_engine_submit_wait(s->engine, c) != TN_OK) {
        fail(o, 1, "%s", c->msg);
        return;
    }
    tn_sb_printf(&o->text, "%s", c->msg[0] ? c->msg : what);
    tn_sb_printf(&o->json,
                 "{\"ok\":true,\"id\":%" PRIu64 ",\"message\":", c->out_id ? c->out_id : c->id);
    tn_sb_json(&o->json, c->msg, strlen(c->msg));
    tn_sb_printf(&o->json, "}");
}

static void h_apply(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = r->bytes.p, .def_len = r->bytes.len};
    char actor[80];
    snprintf(actor, sizeof(actor), "%.*s", (int)r->actor.len, r->actor.p);
    c.actor = r->actor.len ? actor : "user:cli";
    if (tn_engine_submit_wait(s->engine, &c) != TN_OK) {
        fail(o, 1, "%.*s: %s", (int)r->file.len, r->file.p, c.msg);
        return;
    }
    tn_sb_printf(&o->text, "%.*s: %s", (int)r->file.len, r->file.p, c.msg);
    tn_sb_printf(&o->json, "{\"file\":");
    tn_sb_json(&o->json, r->file.p, r->file.len);
    tn_sb_printf(&o->json, ",\"version\":%" PRIu64 ",\"changed\":%s}", c.out_id,
                 c.unchanged ? "false" : "true");
}

static void h_start(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    char *name = cstr(r->name);
    char *keys[TN_CTL_MAX_LIST], *vals[TN_CTL_MAX_LIST], *from[TN_CTL_MAX_LIST];
    for (uint32_t i = 0; i < r->nparams; i++) {
        keys[i] = cstr(r->pkeys[i]);
        vals[i] = cstr(r->pvals[i]);
    }
    for (uint32_t i = 0; i < r->nfrom; i++)
        from[i] = cstr(r->from[i]);
    int mode = TN_MODE_ALL;
    if (r->mode.len) {
        char m[32];
        snprintf(m, sizeof(m), "%.*s", (int)r->mode.len, r->mode.p);
        mode = tn_start_mode_parse(m);
    }
    if (mode < 0) {
        fail(o, 2, "unknown mode \"%.*s\" (task_only, task_pre, task_post)", (int)r->mode.len,
             r->mode.p);
    } else {
        tn_cmd c = {
            .kind = TN_CMD_START,
            .workflow = name,
            .param_keys = (const char *const *)keys,
            .param_values = (const char *const *)vals,
            .nparams = r->nparams,
            .from = (const char *const *)from,
            .nfrom = r->nfrom,
            .mode = (tn_start_mode)(r->nfrom && mode == TN_MODE_ALL ? TN_MODE_TASK_POST : mode),
            .dry_run = r->dry_run};
        run_cmd(s, &c, r, o, "started");
    }
    for (uint32_t i = 0; i < r->nparams; i++) {
        free(keys[i]);
        free(vals[i]);
    }
    for (uint32_t i = 0; i < r->nfrom; i++)
        free(from[i]);
    free(name);
}

static void h_simple(tn_ctlsrv *s, tn_cmd_kind kind, const tn_ctl_req *r, out *o)
{
    tn_cmd c = {.kind = kind, .id = r->id};
    run_cmd(s, &c, r, o, "done");
    if (o->ok && !o->text.len)
        tn_sb_printf(&o->text, "done");
}

static void h_named(tn_ctlsrv *s, tn_cmd_kind kind, const tn_ctl_req *r, out *o)
{
    char *name = cstr(r->name), *text = cstr(r->bytes);
    tn_cmd c = {.kind = kind, .name = name, .slots = r->slots, .text = text};
    run_cmd(s, &c, r, o, kind == TN_CMD_TASKGROUP_SET ? "task group set" : "environment set");
    free(name);
    free(text);
}

/* ------------------------------------------------------------------------------ */
/* reads */

static tn_store *store(tn_ctlsrv *s)
{
    return s->engine ? tn_evlog_store(tn_engine_log(s->engine)) : s->ro;
}

/* The engine's view (committed or pending) when one runs, else the committed store. */
static tn_err wf_get(tn_ctlsrv *s, uint64_t id, tn_wf_proj *w)
{
    return s->engine ? tn_evlog_wf(tn_engine_log(s->engine), id, w) :
                       tn_log_wf_get(s->ro, id, w);
}

static tn_err task_get(tn_ctlsrv *s, uint64_t id, tn_task_proj *p)
{
    return s->engine ? tn_evlog_task(tn_engine_log(s->engine), id, p) :
                       tn_log_task_get(s->ro, id, p);
}

/* ,"key":"2026-11-22T01:02:03.123456789Z" (ISO 8601 UTC, to the nanosecond), or null. */
static void json_time(tn_sb *j, const char *key, int64_t ns)
{
    if (!ns) {
        tn_sb_printf(j, ",\"%s\":null", key);
        return;
    }
    char ts[40];
    tn_fmt_time(ns - ns % 1000000000LL, ts, sizeof(ts)); /* whole seconds, then ours */
    ts[19] = 0;
    int64_t frac = ns % 1000000000LL;
    tn_sb_printf(j, ",\"%s\":\"%s.%09" PRId64 "Z\"", key, ts, frac < 0 ? 0 : frac);
}

static void h_ls(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    int want = -1;
    if (r->state.len) {
        char st[40];
        snprintf(st, sizeof(st), "%.*s", (int)r->state.len, r->state.p);
        for (char *p = st; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        want = tn_sm_state_id(&tn_sm_workflow, st);
        if (want < 0) {
            char all[600] = "";
            for (unsigned i = 1; i < tn_sm_workflow.nstates; i++) /* 0 is NEW: never listed */
                snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s",
                         i > 1 ? ", " : "", wsn(i));
            fail(o, 2, "unknown workflow state \"%.*s\" (one of: %s)", (int)r->state.len,
                 r->state.p, all);
            return;
        }
    }
    tn_log_wf_iter *it;
    if (tn_log_wf_iter_open(store(s), &it)) {
        fail(o, 1, "cannot read the store");
        return;
    }
    /* newest last on screen; at most 1000 rows: keep a ring of the newest */
    enum {
        RING = 1000
    };
    tn_wf_proj *ring = malloc(RING * sizeof(*ring));
    size_t n = 0;
    tn_wf_proj wp;
    for (tn_err e = tn_log_wf_iter_next(it, &wp); ring && (e == TN_OK || e == TN_ERR_CORRUPT);
         e = tn_log_wf_iter_next(it, &wp)) {
        if (e == TN_ERR_CORRUPT || (want >= 0 && wp.state != want))
            continue;
        ring[n++ % RING] = wp;
    }
    tn_log_wf_iter_close(it);
    size_t first = n > RING ? n - RING : 0;
    tn_sb_printf(&o->text, "%-8s %-24s %-18s %4s %-24s %10s\n", "ID", "WORKFLOW", "STATE",
                 "RUN", "STARTED", "DURATION");
    tn_sb_printf(&o->json, "[");
    for (size_t i = first; ring && i < n; i++) {
        tn_wf_proj *p = &ring[i % RING];
        char ts[40] = "-", d[32];
        if (p->started_at)
            tn_fmt_time(p->started_at, ts, sizeof(ts));
        tn_fmt_duration(p->started_at && p->ended_at ? p->ended_at - p->started_at : -1, d,
                        sizeof(d));
        tn_sb_printf(&o->text, "%-8" PRIu64 " %-24s %-18s %4u %-24s %10s\n", p->id, p->name,
                     wsn(p->state), p->run, ts, d);
        tn_sb_printf(&o->json, "%s{\"id\":%" PRIu64 ",\"name\":", i > first ? "," : "", p->id);
        tn_sb_json(&o->json, p->name, strlen(p->name));
        tn_sb_printf(&o->json, ",\"state\":\"%s\",\"run\":%u,\"parent\":%" PRIu64,
                     wsn(p->state), p->run, p->parent_wf);
        json_time(&o->json, "created_at", p->created_at);
        json_time(&o->json, "started_at", p->started_at);
        json_time(&o->json, "ended_at", p->ended_at);
        tn_sb_printf(&o->json, "}");
    }
    tn_sb_printf(&o->json, "]");
    free(ring);
}

/* The child instance a sub_workflow task `task` of instance `wf` started, or 0: children
 * come after their parent, so the walk starts there (and stops after a bounded number). */
static uint64_t child_of(tn_ctlsrv *s, uint64_t wf, uint64_t task)
{
    tn_log_wf_iter *it;
    if (tn_log_wf_iter_open(store(s), &it) != TN_OK)
        return 0;
    uint64_t child = 0;
    tn_wf_proj c;
    tn_err e = tn_log_wf_iter_seek(it, wf + 1, &c);
    for (int n = 0; n < 100000 && (e == TN_OK || e == TN_ERR_CORRUPT) && !child; n++) {
        if (e == TN_OK && c.parent_wf == wf && c.parent_task == task)
            child = c.id;
        e = tn_log_wf_iter_next(it, &c);
    }
    tn_log_wf_iter_close(it);
    return child;
}

static void h_status(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_wf_proj w;
    if (wf_get(s, r->id, &w) != TN_OK) {
        fail(o, 1, "no workflow instance %" PRIu64 "; list them with `tern ls`", r->id);
        return;
    }
    uint64_t *ids = NULL;
    size_t nids = 0;
    (void)tn_replay_run_tasks(store(s), r->id, &ids, &nids);
    char d[32];
    tn_fmt_duration(w.started_at && w.ended_at ? w.ended_at - w.started_at : -1, d, sizeof(d));
    tn_sb_printf(&o->text, "workflow %s instance %" PRIu64 " (run %u): %s%s%s\n", w.name, w.id,
                 w.run, wsn(w.state), w.ended_at ? " in " : "", w.ended_at ? d : "");
    tn_sb_printf(&o->text, "%-10s %-24s %-20s %8s %-14s %10s  %s\n", "TASK_ID", "TASK", "STATE",
                 "ATTEMPTS", "WORKER", "DURATION", "WAITING FOR");
    tn_sb_printf(&o->json, "{\"workflow\":{\"id\":%" PRIu64 ",\"name\":", w.id);
    tn_sb_json(&o->json, w.name, strlen(w.name));
    tn_sb_printf(&o->json, ",\"state\":\"%s\",\"run\":%u},\"tasks\":[", wsn(w.state), w.run);
    for (size_t i = 0; i < nids; i++) {
        tn_task_proj p;
        if (task_get(s, ids[i], &p) != TN_OK)
            continue;
        char why[512] = "";
        if (p.state == TN_TASK_S_DISPATCH && s->engine) {
            tn_cmd c = {.kind = TN_CMD_WHY, .id = p.id};
            tn_engine_submit_wait(s->engine, &c);
            snprintf(why, sizeof(why), "%s", c.msg);
        }
        uint64_t child = p.worker[0] ? 0 : child_of(s, w.id, p.id);
        if (child && !why[0])
            snprintf(why, sizeof(why), "child instance %" PRIu64 " (`tern status %" PRIu64 "`)",
                     child, child);
        tn_fmt_duration(p.started_at && p.ended_at ? p.ended_at - p.started_at : -1, d,
                        sizeof(d));
        tn_sb_printf(&o->text, "%-10" PRIu64 " %-24s %-20s %8u %-14s %10s  %s\n", p.id, p.name,
                     tsn(p.state), p.attempt, p.worker[0] ? p.worker : "-", d, why);
        tn_sb_printf(&o->json, "%s{\"id\":%" PRIu64 ",\"name\":", i ? "," : "", p.id);
        tn_sb_json(&o->json, p.name, strlen(p.name));
        tn_sb_printf(&o->json, ",\"state\":\"%s\",\"attempts\":%u,\"worker\":", tsn(p.state),
                     p.attempt);
        tn_sb_json(&o->json, p.worker, strlen(p.worker));
        tn_sb_printf(&o->json, ",\"waiting_for\":");
        tn_sb_json(&o->json, why, strlen(why));
        tn_sb_printf(&o->json, "}");
    }
    tn_sb_printf(&o->json, "]}");
    free(ids);
}

static void h_logs(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_task_proj p;
    if (tn_evlog_task(tn_engine_log(s->engine), r->id, &p) != TN_OK) {
        fail(o, 1, "no task instance %" PRIu64 "; see `tern status WF_ID` for task ids", r->id);
        return;
    }
    if (!p.worker[0]) {
        fail(o, 1, "task %" PRIu64 " (%s) never ran on a worker: it has no log", p.id, p.name);
        return;
    }
    if (!s->worker_ctl || !s->worker_ctl(s->arg, p.worker, o->urlbuf, sizeof(o->urlbuf))) {
        fail(o, 1,
             "task %" PRIu64 " ran on %s, which is not connected now: its log is on that "
             "worker's data directory",
             p.id, p.worker);
        return;
    }
    o->url = tn_str_c(o->urlbuf);
    tn_sb_printf(&o->text, "%s", o->urlbuf);
    tn_sb_printf(&o->json, "{\"task\":%" PRIu64 ",\"attempt\":%u,\"worker\":", p.id, p.attempt);
    tn_sb_json(&o->json, p.worker, strlen(p.worker));
    tn_sb_printf(&o->json, "}");
    o->code = (int)p.attempt; /* the client asks the worker for this attempt's log */
}

void tn_ctlsrv_handle(void *arg, const void *req, size_t len, void **rep, size_t *rlen)
{
    tn_ctlsrv *s = arg;
    tn_ctl_req *r = malloc(sizeof(*r));
    out o = {.ok = true};
    if (!r) {
        fail(&o, 1, "out of memory");
    } else if (len == 0) {
        tn_sb_printf(&o.text, "pong"); /* a liveness probe */
    } else if (tn_ctl_req_decode(req, len, r) != TN_OK) {
        fail(&o, 2, "malformed control request (a tern of another version?)");
    } else if (!s->engine && !tn_str_eq(r->cmd, "ls") && !tn_str_eq(r->cmd, "status")) {
        fail(&o, 1, "\"%.*s\" needs a running master", (int)r->cmd.len, r->cmd.p);
    } else if (tn_str_eq(r->cmd, "apply")) {
        h_apply(s, r, &o);
    } else if (tn_str_eq(r->cmd, "start")) {
        h_start(s, r, &o);
    } else if (tn_str_eq(r->cmd, "pause")) {
        h_simple(s, TN_CMD_PAUSE, r, &o);
    } else if (tn_str_eq(r->cmd, "resume")) {
        h_simple(s, TN_CMD_RESUME, r, &o);
    } else if (tn_str_eq(r->cmd, "stop")) {
        h_simple(s, TN_CMD_STOP, r, &o);
    } else if (tn_str_eq(r->cmd, "rerun")) {
        h_simple(s, TN_CMD_RERUN, r, &o);
    } else if (tn_str_eq(r->cmd, "recover")) {
        h_simple(s, TN_CMD_RECOVER, r, &o);
    } else if (tn_str_eq(r->cmd, "kill")) {
        h_simple(s, TN_CMD_KILL_TASK, r, &o);
    } else if (tn_str_eq(r->cmd, "force-success")) {
        h_simple(s, TN_CMD_FORCE_SUCCESS, r, &o);
    } else if (tn_str_eq(r->cmd, "taskgroup")) {
        h_named(s, TN_CMD_TASKGROUP_SET, r, &o);
    } else if (tn_str_eq(r->cmd, "env")) {
        h_named(s, TN_CMD_ENV_SET, r, &o);
    } else if (tn_str_eq(r->cmd, "ls")) {
        h_ls(s, r, &o);
    } else if (tn_str_eq(r->cmd, "status")) {
        h_status(s, r, &o);
    } else if (tn_str_eq(r->cmd, "logs")) {
        h_logs(s, r, &o);
    } else if (tn_str_eq(r->cmd, "workers")) {
        if (s->workers)
            s->workers(s->arg, &o.text, &o.json);
        else
            tn_sb_printf(&o.json, "[]");
    } else {
        fail(&o, 2, "unknown command \"%.*s\"", (int)r->cmd.len, r->cmd.p);
    }
    tn_ctl_rep rp = {.ok = o.ok,
                     .code = o.code,
                     .text = {o.text.s ? o.text.s : "", (uint32_t)o.text.len},
                     .json = {o.json.s ? o.json.s : "", (uint32_t)o.json.len},
                     .url = o.url};
    if (!o.ok || !tn_str_eq(r ? r->cmd : (tn_str){"", 0}, "logs"))
        rp.code = o.ok ? 0 : o.code;
    else
        rp.offset = (uint64_t)o.code; /* logs: the attempt */
    tn_buf b = {0};
    if (tn_ctl_rep_encode(&rp, &b) == TN_OK) {
        *rep = b.data;
        *rlen = b.size;
    } else {
        tn_buf_free(&b);
    }
    free(o.text.s);
    free(o.json.s);
    free(r);
}

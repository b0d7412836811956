/* The master's control handlers: each request of the `tern` client becomes an engine
 * command (run by the engine thread) or a read of the store's committed projections (in
 * the control thread); what only the engine knows (why a task waits) is a request the
 * engine thread answers. The engine's and its log's memory is never read from here.
 * The reply carries both the text a person reads and the JSON a script reads. */
#include "ctlsrv.h"
#include "map.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctlsched.h"
#include "def.h"
#include "gc.h"
#include "jsonout.h"
#include "log.h"
#include "logread.h"
#include "replay.h"
#include "standby.h"
#include "util.h"
#include "sm_gen.h"

typedef tn_ctl_result out;

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
    if (!o->err) /* a caller that knows the kind sets it first */
        o->err = code == 2 ? TN_ERR_INVAL : TN_ERR_INTERNAL;
    free(o->text.s);
    o->text = (tn_sb){0};
    tn_sb_printf(&o->text, "%s", buf);
    free(o->json.s);
    o->json = (tn_sb){0};
    if (!tn_jo_dump(&o->json, json_pack("{s:o}", "error", tn_jo_str(buf))))
        tn_sb_printf(&o->json, "{\"error\":\"out of memory\"}");
}

/* o's JSON is j (taken over): a failure when j could not be built or written whole. */
static void reply(out *o, json_t *j)
{
    if (!tn_jo_dump(&o->json, j))
        fail(o, 1, "out of memory writing the reply's JSON; try again");
}

static char *cstr(tn_str s)
{
    char *c = malloc(s.len + 1);
    if (c) {
        if (s.len) /* an absent field (an HTTP request's) has no pointer */
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
    c->actor = o->actor;
    if (tn_engine_submit_wait(s->engine, c) != TN_OK) {
        o->err = c->err;
        fail(o, 1, "%s", c->msg);
        return;
    }
    tn_sb_printf(&o->text, "%s", c->msg[0] ? c->msg : what);
    reply(o,
          json_pack("{s:b,s:I,s:o}", "ok", 1, "id", (json_int_t)(c->out_id ? c->out_id : c->id),
                    "message", tn_jo_str(c->msg)));
}

static void h_apply(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF,
                .def_bytes = r->bytes.p,
                .def_len = r->bytes.len,
                .actor = o->actor};
    if (tn_engine_submit_wait(s->engine, &c) != TN_OK) {
        o->err = c.err;
        fail(o, 1, "%.*s: %s", (int)r->file.len, r->file.p, c.msg);
        return;
    }
    tn_sb_printf(&o->text, "%.*s: %s", (int)r->file.len, r->file.p, c.msg);
    reply(o, json_pack("{s:o,s:I,s:b}", "file", tn_jo_strn(r->file.p, r->file.len), "version",
                       (json_int_t)c.out_id, "changed", !c.unchanged));
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

/* Committed projections, in a read-only transaction of their own: this runs on the RPC
 * thread (or in the CLI on a store with no master), never on the engine's caches. */
static tn_err wf_get(tn_ctlsrv *s, uint64_t id, tn_wf_proj *w)
{
    return tn_log_wf_get(store(s), id, w);
}

static tn_err task_get(tn_ctlsrv *s, uint64_t id, tn_task_proj *p)
{
    return tn_log_task_get(store(s), id, p);
}

/* The state filter of ls: -1 for none, -2 (o filled) for an unknown one. */
static int ls_state(const tn_ctl_req *r, out *o)
{
    if (!r->state.len)
        return -1;
    char st[40];
    snprintf(st, sizeof(st), "%.*s", (int)r->state.len, r->state.p);
    for (char *p = st; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    int want = tn_sm_state_id(&tn_sm_workflow, st);
    if (want >= 0)
        return want;
    char all[600] = "";
    for (unsigned i = 1; i < tn_sm_workflow.nstates; i++) /* 0 is NEW: never listed */
        snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s%s", i > 1 ? ", " : "",
                 wsn(i));
    fail(o, 2, "unknown workflow state \"%.*s\" (one of: %s)", (int)r->state.len, r->state.p,
         all);
    return -2;
}

static bool ls_match(const tn_ctl_req *r, int want, const tn_wf_proj *p)
{
    return (want < 0 || p->state == want) && (!r->name.len || tn_str_eq(r->name, p->name));
}

/* A row of ls on o's text, and its JSON object pushed on arr. */
static void ls_row(out *o, json_t *arr, const tn_wf_proj *p)
{
    char ts[40] = "-", d[32];
    if (p->started_at)
        tn_fmt_time(p->started_at, ts, sizeof(ts));
    tn_fmt_duration(p->started_at && p->ended_at ? p->ended_at - p->started_at : -1, d,
                    sizeof(d));
    tn_sb_printf(&o->text, "%-8" PRIu64 " %-24s %-18s %4u %-24s %10s\n", p->id, p->name,
                 wsn(p->state), p->run, ts, d);
    tn_jo_push(arr, json_pack("{s:I,s:o,s:s,s:I,s:I,s:I,s:o,s:o,s:o}", "id", (json_int_t)p->id,
                              "name", tn_jo_str(p->name), "state", wsn(p->state), "run",
                              (json_int_t)p->run, "version", (json_int_t)p->version, "parent",
                              (json_int_t)p->parent_wf, "created_at", tn_jo_time(p->created_at),
                              "started_at", tn_jo_time(p->started_at), "ended_at",
                              tn_jo_time(p->ended_at)));
}

/* A page: {"instances":[...],"next_after":ID|null}, ids ascending after r->offset. */
static void ls_page(tn_log_wf_iter *it, const tn_ctl_req *r, int want, out *o)
{
    uint64_t limit = (uint64_t)r->slots, n = 0, last = 0;
    bool more = false;
    tn_wf_proj wp;
    json_t *arr = json_array();
    for (tn_err e = tn_log_wf_iter_seek(it, r->offset + 1, &wp);
         e == TN_OK || e == TN_ERR_CORRUPT; e = tn_log_wf_iter_next(it, &wp)) {
        if (e == TN_ERR_CORRUPT || !ls_match(r, want, &wp))
            continue;
        if (n == limit) {
            more = true;
            break;
        }
        ls_row(o, arr, &wp);
        n++;
        last = wp.id;
    }
    reply(o, json_pack("{s:o,s:o}", "instances", arr, "next_after",
                       more ? json_integer((json_int_t)last) : json_null()));
}

static void h_ls(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    int want = ls_state(r, o);
    if (want == -2)
        return;
    tn_log_wf_iter *it;
    if (tn_log_wf_iter_open(store(s), &it)) {
        fail(o, 1, "cannot read the store");
        return;
    }
    tn_sb_printf(&o->text, "%-8s %-24s %-18s %4s %-24s %10s\n", "ID", "WORKFLOW", "STATE",
                 "RUN", "STARTED", "DURATION");
    if (r->slots > 0) {
        ls_page(it, r, want, o);
        tn_log_wf_iter_close(it);
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
         e = tn_log_wf_iter_next(it, &wp))
        if (e == TN_OK && ls_match(r, want, &wp))
            ring[n++ % RING] = wp;
    tn_log_wf_iter_close(it);
    size_t first = n > RING ? n - RING : 0;
    json_t *arr = json_array();
    for (size_t i = first; ring && arr && i < n; i++)
        ls_row(o, arr, &ring[i % RING]);
    free(ring);
    reply(o, arr);
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

void tn_kv_text(tn_sb *b, const tn_kv *kv)
{
    for (uint32_t i = 0; i < tn_kv_len(kv); i++) {
        const char *v = tn_kv_value(kv, i);
        size_t n = strlen(v);
        bool plain = n > 0;
        for (size_t j = 0; j < n && plain; j++)
            plain = (unsigned char)v[j] > ' ' && v[j] != '"' && v[j] != '=' && v[j] != 0x7f;
        tn_sb_printf(b, "%s%s=", i ? " " : "", tn_kv_key(kv, i));
        if (plain)
            tn_sb_printf(b, "%s", v);
        else if (!tn_jo_dump(b, tn_jo_strn(v, n)))
            tn_sb_printf(b, "\"?\"");
    }
}

void tn_kv_json(tn_sb *b, const tn_kv *kv)
{
    if (!tn_jo_dump(b, tn_jo_kv(kv)))
        tn_sb_printf(b, "{}");
}

static int submit_cb(void *ctx, const tn_event *ev)
{
    tn_wf_params *p = ctx;
    if (ev->machine != TN_MACHINE_WORKFLOW || ev->event != TN_WF_E_SUBMIT)
        return 0;
    const tn_attr *nm = tn_event_attr(ev, "name");
    const tn_attr *ov = tn_event_attr(ev, "params"), *in = tn_event_attr(ev, "inherited");
    int64_t v = 0, sched = 0;
    tn_event_int(ev, "version", &v);
    tn_event_int(ev, "sched", &sched);
    if (nm && nm->type == TN_ATTR_STR)
        snprintf(p->name, sizeof(p->name), "%.*s", (int)nm->s.len, nm->s.p);
    p->version = (uint32_t)v;
    p->sched_ns = sched ? sched : ev->at;
    if (ov && ov->type == TN_ATTR_BIN)
        (void)tn_kv_decode(ov->s.p, ov->s.len, &p->overrides);
    if (in && in->type == TN_ATTR_BIN)
        (void)tn_kv_decode(in->s.p, in->s.len, &p->inherited);
    (void)ctx;
    return 1; /* the first event is all it needs */
}

tn_err tn_wf_params_read(tn_store *s, uint64_t wf, tn_wf_params *p)
{
    memset(p, 0, sizeof(*p));
    int fr;
    tn_err err = tn_replay_wf_events(s, wf, submit_cb, p, &fr);
    if (err == TN_ERR_NOENT || !p->name[0])
        return TN_ERR_NOENT;
    tn_buf b = {0};
    tn_def *d = NULL;
    tn_errmsg m = {{0}};
    if ((err = tn_log_def_get(s, p->name, p->version, &b)) == TN_OK)
        err = tn_def_decode(b.data, b.size, &d, &m);
    tn_buf_free(&b);
    if (err) {
        snprintf(p->why, sizeof(p->why), "definition %s v%u: %.300s", p->name, p->version,
                 m.text[0] ? m.text : tn_strerror(err));
        return TN_OK;
    }
    const char *tz = getenv("TERN_TZ");
    tn_param_ctx c = {.sched_ns = p->sched_ns, .wf_id = wf, .tz = tz && *tz ? tz : NULL};
    tn_kv *g = NULL, *all = NULL;
    err = tn_params_globals(&d->params, &c, &g, &m);
    if (!err)
        err = tn_kv_copy(p->inherited, &all);
    if (!err)
        err = tn_kv_merge(all, g);
    if (!err)
        err = tn_kv_merge(all, p->overrides);
    tn_kv_free(g);
    tn_def_free(d);
    if (err) {
        tn_kv_free(all);
        snprintf(p->why, sizeof(p->why), "%s", m.text[0] ? m.text : tn_strerror(err));
        return TN_OK;
    }
    p->effective = all;
    return TN_OK;
}

void tn_wf_params_free(tn_wf_params *p)
{
    tn_kv_free(p->overrides);
    tn_kv_free(p->inherited);
    tn_kv_free(p->effective);
    p->overrides = p->inherited = p->effective = NULL;
}

/* What status shows of each task besides its projection: the values it passed
 * downstream (its var pool) and the reason of its last failure or kill. */
typedef struct task_extra {
    tn_map idx; /* task id -> its index + 1: a status of 100k tasks reads ~600k events */
    tn_kv **vars;
    char (*why)[256];
} task_extra;

static int extra_cb(void *ctx, const tn_event *ev)
{
    task_extra *x = ctx;
    if (ev->machine != TN_MACHINE_TASK)
        return 0;
    uintptr_t k = (uintptr_t)tn_map_get(&x->idx, ev->task);
    if (!k)
        return 0;
    size_t i = k - 1;
    const tn_attr *v = tn_event_attr(ev, "vars"), *r = tn_event_attr(ev, "reason");
    if (v && v->type == TN_ATTR_BIN) {
        tn_kv *kv = NULL;
        if (tn_kv_decode(v->s.p, v->s.len, &kv) == TN_OK) {
            tn_kv_free(x->vars[i]);
            x->vars[i] = kv;
        }
    }
    if (ev->event == TN_TASK_E_FAILED || ev->event == TN_TASK_E_KILLED)
        snprintf(x->why[i], sizeof(x->why[i]), "%.*s",
                 r && r->type == TN_ATTR_STR ? (int)r->s.len : 0, r ? r->s.p : "");
    return 0;
}

/* The instance's params: a text line each and fields of the workflow's JSON object. */
static void status_params(tn_ctlsrv *s, uint64_t wf, out *o, json_t *j)
{
    tn_wf_params p;
    tn_err err = tn_wf_params_read(store(s), wf, &p);
    char ts[40] = "";
    if (!err)
        tn_fmt_time(p.sched_ns, ts, sizeof(ts));
    tn_sb_printf(&o->text, "business time: %s\n", ts);
    tn_jo_set(j, "business_time", tn_jo_str(ts));
    static const char *const label[] = {"params", "overrides", "inherited"};
    tn_kv *kv[] = {p.effective, p.overrides, p.inherited};
    for (int i = 0; i < 3; i++) {
        if (i && !tn_kv_len(kv[i]))
            continue;
        tn_sb_printf(&o->text, "%s: ", label[i]);
        tn_kv_text(&o->text, kv[i]);
        if (i == 0 && p.why[0])
            tn_sb_printf(&o->text, "(not resolved: %s)", p.why);
        tn_sb_printf(&o->text, "\n");
        tn_jo_set(j, label[i], tn_jo_kv(kv[i]));
    }
    if (p.why[0])
        tn_jo_set(j, "params_error", tn_jo_str(p.why));
    tn_wf_params_free(&p);
}

/* How long a read waits for the engine thread before it answers that the engine is busy. */
#define ENGINE_WAIT_NS (5 * 1000000000LL)

/* The reasons tasks wait for dispatch: engine state, read on the engine thread (a
 * request) for all of them at once. */
typedef struct whys {
    const tn_task_proj *tasks;
    size_t n;
    char (*why)[256];
} whys;

static void whys_cb(tn_engine *e, void *ctx)
{
    whys *w = ctx;
    for (size_t i = 0; i < w->n; i++)
        if (w->tasks[i].state == TN_TASK_S_SUBMITTED_SUCCESS)
            snprintf(w->why[i], sizeof(w->why[i]), "%s", tn_engine_why(e, w->tasks[i].id));
}

static void status_task(out *o, json_t *arr, const tn_task_proj *p, const char *why,
                        const tn_kv *vars, uint64_t child)
{
    char d[32];
    tn_fmt_duration(p->started_at && p->ended_at ? p->ended_at - p->started_at : -1, d,
                    sizeof(d));
    /* one free-text column, last: why it failed or was killed, or why it waits */
    const char *col = p->reason[0] ? p->reason : why[0] ? why : "-";
    tn_sb_printf(&o->text, "%-10" PRIu64 " %-24s %-20s %8u %-14s %10s  %s%s\n", p->id, p->name,
                 tsn(p->state), p->attempt, p->worker[0] ? p->worker : "-", d,
                 !p->reason[0] && why[0] ? "waiting for: " : "", col);
    json_t *j = json_pack("{s:I,s:o,s:s,s:I,s:o,s:o,s:o}", "id", (json_int_t)p->id, "name",
                          tn_jo_str(p->name), "state", tsn(p->state), "attempts",
                          (json_int_t)p->attempt, "worker", tn_jo_str(p->worker), "reason",
                          tn_jo_str(p->reason), "waiting_for", tn_jo_str(why));
    if (tn_kv_len(vars)) {
        tn_sb_printf(&o->text, "%-10s passed: ", "");
        tn_kv_text(&o->text, vars);
        tn_sb_printf(&o->text, "\n");
    }
    if (j && child) /* a sub_workflow task: the instance it started */
        tn_jo_set(j, "child", json_integer((json_int_t)child));
    if (j)
        tn_jo_set(j, "passed", tn_jo_kv(vars));
    tn_jo_push(arr, j);
}

/* Every task's line, with the values it passed downstream (from its events). */
static void status_tasks(tn_ctlsrv *s, uint64_t wf, out *o, json_t *arr,
                         const tn_task_proj *tasks, char (*why)[256], size_t n)
{
    task_extra x = {.vars = calloc(n + 1, sizeof(tn_kv *)),
                    .why = calloc(n + 1, sizeof(*x.why))};
    tn_map_init(&x.idx);
    bool ok = x.vars && x.why;
    for (size_t i = 0; ok && i < n; i++)
        ok = !tasks[i].id ||
             tn_map_put(&x.idx, tasks[i].id, (void *)(uintptr_t)(i + 1)) == TN_OK;
    int fr;
    if (ok)
        (void)tn_replay_wf_events(store(s), wf, extra_cb, &x, &fr);
    for (size_t i = 0; i < n; i++) {
        uint64_t child = tasks[i].worker[0] || why[i][0] ? 0 : child_of(s, wf, tasks[i].id);
        if (child)
            snprintf(why[i], sizeof(why[i]),
                     "child instance %" PRIu64 " (`tern status %" PRIu64 "`)", child, child);
        status_task(o, arr, &tasks[i], why[i], x.vars ? x.vars[i] : NULL, child);
    }
    for (size_t i = 0; x.vars && i < n; i++)
        tn_kv_free(x.vars[i]);
    free(x.vars);
    free(x.why);
    tn_map_fini(&x.idx);
}

/* No projection: an instance `tern gc` collected (its events remain), or none at all. */
static void collected_or_none(tn_ctlsrv *s, uint64_t id, out *o)
{
    tn_log_gc_mark m;
    if (tn_log_gc_mark_get(store(s), id, &m) != TN_OK) {
        fail(o, 1, "no workflow instance %" PRIu64 "; list them with `tern ls`", id);
        return;
    }
    char at[32] = "?";
    time_t sec = (time_t)(m.collected_at / 1000000000);
    struct tm tm;
    if (gmtime_r(&sec, &tm))
        strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fail(o, 1,
         "workflow %s instance %" PRIu64 " ended %s and was collected by `tern gc` at %s: "
         "its events remain (`tern audit %" PRIu64 "`; `tern replay` rebuilds it)",
         m.name, id, tn_sm_state_name(&tn_sm_workflow, m.state), at, id);
}

/* The instance and its current run's tasks as committed (the store's projections, read
 * here, never the engine's caches), and why those queued for a worker wait (asked of the engine). */
static void h_status(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_wf_proj w;
    if (wf_get(s, r->id, &w) != TN_OK) {
        o->err = TN_ERR_NOENT;
        collected_or_none(s, r->id, o);
        return;
    }
    uint64_t *ids = NULL;
    size_t nids = 0, n = 0, nqueued = 0;
    (void)tn_replay_run_tasks(store(s), r->id, &ids, &nids);
    tn_task_proj *tasks = calloc(nids + 1, sizeof(*tasks));
    char(*why)[256] = calloc(nids + 1, sizeof(*why));
    for (size_t i = 0; tasks && why && i < nids; i++)
        if (task_get(s, ids[i], &tasks[n]) == TN_OK)
            nqueued += tasks[n++].state == TN_TASK_S_SUBMITTED_SUCCESS;
    free(ids);
    if (!tasks || !why) {
        free(tasks);
        free(why);
        fail(o, 1, "out of memory");
        return;
    }
    whys wq = {tasks, n, why};
    if (nqueued && s->engine &&
        tn_engine_request(s->engine, whys_cb, &wq, ENGINE_WAIT_NS) != TN_OK)
        for (size_t i = 0; i < n; i++)
            snprintf(why[i], sizeof(why[i]), "%s",
                     tasks[i].state == TN_TASK_S_SUBMITTED_SUCCESS ?
                         "(the engine is busy: ask again)" :
                         "");
    char d[32];
    tn_fmt_duration(w.started_at && w.ended_at ? w.ended_at - w.started_at : -1, d, sizeof(d));
    tn_sb_printf(&o->text, "workflow %s instance %" PRIu64 " (run %u): %s%s%s\n", w.name, w.id,
                 w.run, wsn(w.state), w.ended_at ? " in " : "", w.ended_at ? d : "");
    json_t *wj = json_pack("{s:I,s:o,s:s,s:I}", "id", (json_int_t)w.id, "name",
                           tn_jo_str(w.name), "state", wsn(w.state), "run", (json_int_t)w.run);
    json_t *arr = json_array();
    if (wj)
        status_params(s, w.id, o, wj);
    tn_sb_printf(&o->text, "%-10s %-24s %-20s %8s %-14s %10s  %s\n", "TASK_ID", "TASK", "STATE",
                 "ATTEMPTS", "WORKER", "DURATION", "REASON");
    if (arr)
        status_tasks(s, w.id, o, arr, tasks, why, n);
    free(tasks);
    free(why);
    reply(o, json_pack("{s:o,s:o}", "workflow", wj, "tasks", arr));
}

static void h_logs(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_task_proj p;
    if (task_get(s, r->id, &p) != TN_OK) {
        o->err = TN_ERR_NOENT;
        fail(o, 1, "no task instance %" PRIu64 "; see `tern status WF_ID` for task ids", r->id);
        return;
    }
    if (!p.worker[0]) {
        o->err = TN_ERR_NOENT;
        fail(o, 1, "task %" PRIu64 " (%s) never ran on a worker: it has no log", p.id, p.name);
        return;
    }
    if (!s->worker_ctl || !s->worker_ctl(s->arg, p.worker, o->urlbuf, sizeof(o->urlbuf))) {
        o->err = TN_ERR_CLOSED;
        fail(o, 1,
             "task %" PRIu64 " ran on %s, which is not connected now: its log is on that "
             "worker's data directory",
             p.id, p.worker);
        return;
    }
    o->url = tn_str_c(o->urlbuf);
    tn_sb_printf(&o->text, "%s", o->urlbuf);
    reply(o, json_pack("{s:I,s:I,s:o}", "task", (json_int_t)p.id, "attempt",
                       (json_int_t)p.attempt, "worker", tn_jo_str(p.worker)));
    o->attempt = p.attempt; /* the client asks the worker for this attempt's log */
}

/* ------------------------------------------------------------------------------ */
/* reads for the HTTP API (what the CLI reads from the store itself) */

static json_t *task_json(const tn_task_proj *p)
{
    return json_pack(
        "{s:I,s:I,s:o,s:s,s:I,s:o,s:I,s:I,s:o,s:o,s:o,s:o}", "id", (json_int_t)p->id,
        "workflow_instance", (json_int_t)p->wf, "name", tn_jo_str(p->name), "state",
        tsn(p->state), "attempts", (json_int_t)p->attempt, "worker", tn_jo_str(p->worker),
        "pid", (json_int_t)p->pid, "exit_code", (json_int_t)p->exit_code, "reason",
        tn_jo_str(p->reason), "created_at", tn_jo_time(p->created_at), "started_at",
        tn_jo_time(p->started_at), "ended_at", tn_jo_time(p->ended_at));
}

static void h_task(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    tn_task_proj p;
    if (task_get(s, r->id, &p) != TN_OK) {
        o->err = TN_ERR_NOENT;
        fail(o, 1, "no task instance %" PRIu64 "; see `tern status WF_ID` for task ids", r->id);
        return;
    }
    tn_sb_printf(&o->text, "task %" PRIu64 " (%s): %s", p.id, p.name, tsn(p.state));
    reply(o, task_json(&p));
}

typedef struct def_rows {
    json_t *arr;
    char prev[TN_DEF_MAX_NAME + 1];
    uint32_t ver;
} def_rows;

static void def_row_flush(def_rows *x)
{
    if (!x->prev[0])
        return;
    tn_jo_push(x->arr, json_pack("{s:o,s:I}", "name", tn_jo_str(x->prev), "latest",
                                 (json_int_t)x->ver));
}

/* Definitions come by name, then version ascending: a name's last row is its latest. */
static int def_row(void *ctx, const char *name, uint32_t version, const void *b, size_t len)
{
    def_rows *x = ctx;
    if (strlen(name) > TN_DEF_MAX_NAME)
        return 0;
    if (strcmp(x->prev, name) != 0) {
        def_row_flush(x);
        snprintf(x->prev, sizeof(x->prev), "%s", name);
    }
    x->ver = version;
    return 0;
}

static void h_defs(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    def_rows x = {.arr = json_array()};
    if (x.arr) {
        (void)tn_log_def_each(store(s), def_row, &x, NULL);
        def_row_flush(&x);
    }
    reply(o, x.arr);
}

/* One version (r->id; 0: the latest) as JSON, with its YAML and every version's number. */
static void h_def(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    char name[TN_DEF_MAX_NAME + 1];
    snprintf(name, sizeof(name), "%.*s", (int)r->name.len, r->name.p);
    tn_buf b = {0};
    uint32_t ver = (uint32_t)r->id;
    tn_err e = r->id > UINT32_MAX ? TN_ERR_NOENT :
               r->id              ? tn_log_def_get(store(s), name, ver, &b) :
                                    tn_log_def_latest(store(s), name, &ver, &b);
    tn_def *d = NULL;
    tn_errmsg m = {{0}};
    if (!e)
        e = tn_def_decode(b.data, b.size, &d, &m);
    tn_buf_free(&b);
    char *yaml = NULL;
    size_t ylen = 0;
    if (e || tn_def_to_yaml(d, &yaml, &ylen) != TN_OK) {
        tn_def_free(d);
        o->err = e == TN_ERR_NOENT ? TN_ERR_NOENT : TN_ERR_CORRUPT;
        fail(o, 1, "no workflow definition \"%s\"%s; list them with `tern def ls`", name,
             r->id ? " of that version" : "");
        return;
    }
    uint32_t latest = 0;
    (void)tn_log_def_latest(store(s), name, &latest, NULL);
    json_t *versions = json_array(), *deps = json_object();
    for (uint32_t v = 1; versions && v <= latest && v <= 100000; v++)
        tn_jo_push(versions, json_integer(v));
    /* the graph, for pictures of it (the web UI): each task's upstream tasks */
    for (uint32_t i = 0; deps && i < d->n_tasks; i++) {
        const tn_def_task *t = &d->tasks[i];
        json_t *up = json_array();
        for (uint32_t k = 0; up && k < t->n_deps; k++)
            tn_jo_push(up, tn_jo_str(t->deps[k].name));
        tn_jo_set(deps, t->name, up);
    }
    tn_sb_printf(&o->text, "%s", yaml);
    reply(o, json_pack("{s:o,s:I,s:I,s:o,s:o,s:o}", "name", tn_jo_str(d->name), "version",
                       (json_int_t)ver, "tasks", (json_int_t)d->n_tasks, "yaml",
                       tn_jo_strn(yaml, ylen), "versions", versions, "deps", deps));
    free(yaml);
    tn_def_free(d);
}

static int audit_row(void *ctx, const tn_event *ev)
{
    json_t *arr = ctx;
    const tn_sm *sm = tn_sm_get(ev->machine);
    if (!sm)
        return 0;
    json_t *attrs = json_object();
    for (uint32_t i = 0; attrs && i < ev->nattrs; i++)
        tn_jo_setn(attrs, ev->attrs[i].key.p, ev->attrs[i].key.len, tn_jo_attr(&ev->attrs[i]));
    tn_jo_push(arr, json_pack("{s:I,s:o,s:o,s:s,s:I,s:s,s:s,s:s,s:o}", "seq",
                              (json_int_t)ev->seq, "at", tn_jo_time(ev->at), "actor",
                              tn_jo_strn(ev->actor.p, ev->actor.len), "machine", sm->name, "id",
                              (json_int_t)(ev->machine == TN_MACHINE_TASK ? ev->task : ev->wf),
                              "event", tn_sm_event_name(sm, ev->event), "from",
                              tn_sm_state_name(sm, ev->from), "to",
                              tn_sm_state_name(sm, ev->to), "attrs", attrs));
    return 0;
}

/* The instance's timeline, its tasks' events included (what `tern audit --json` shows). */
static void h_audit(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    json_t *arr = json_array();
    int fr;
    tn_err e = arr ? tn_replay_wf_events(store(s), r->id, audit_row, arr, &fr) : TN_ERR_NOMEM;
    if (e) {
        json_decref(arr);
        o->err = e == TN_ERR_NOENT ? TN_ERR_NOENT : e;
        fail(o, 1, "workflow instance %" PRIu64 " has no events; list them with `tern ls`",
             r->id);
        return;
    }
    reply(o, arr);
}

typedef struct meta_rows {
    json_t *arr;
    bool slots; /* task groups: the value is 8 bytes of slots; environments: text */
} meta_rows;

static int meta_row(void *ctx, const char *name, const void *val, size_t len)
{
    meta_rows *x = ctx;
    if (x->slots)
        tn_jo_push(x->arr, json_pack("{s:o,s:I}", "name", tn_jo_str(name), "slots",
                                     (json_int_t)(len == 8 ? (int64_t)tn_get_be64(val) : -1)));
    else
        tn_jo_push(x->arr, json_pack("{s:o,s:o}", "name", tn_jo_str(name), "text",
                                     tn_jo_strn(val, len)));
    return 0;
}

static void h_taskgroups(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    meta_rows x = {json_array(), true};
    if (x.arr)
        (void)tn_log_taskgroup_each(store(s), meta_row, &x);
    reply(o, x.arr);
}

static void h_envs(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    meta_rows x = {json_array(), false};
    if (x.arr)
        (void)tn_log_env_each(store(s), meta_row, &x);
    reply(o, x.arr);
}

/* ------------------------------------------------------------------------------ */
/* who may do what */

tn_role tn_ctlsrv_role_needed(tn_str cmd)
{
    const tn_ctl_op *op = tn_ctl_sched_op(cmd);
    if (op)
        return op->role;
    static const char *const operator[] = {"start", "pause",   "resume", "stop",
                                           "rerun", "recover", "kill",   "force-success"};
    static const char *const admin[] = {"apply", "taskgroup", "env"};
    for (size_t i = 0; i < sizeof(operator) / sizeof(operator[0]); i++)
        if (tn_str_eq(cmd, operator[i]))
            return TN_ROLE_OPERATOR;
    for (size_t i = 0; i < sizeof(admin) / sizeof(admin[0]); i++)
        if (tn_str_eq(cmd, admin[i]))
            return TN_ROLE_ADMIN;
    return TN_ROLE_VIEWER;
}

static const char *scheme_name(tn_rpc_peer_kind k)
{
    return k == TN_RPC_PEER_IPC ? "ipc" :
           k == TN_RPC_PEER_TLS ? "tls+tcp" :
           k == TN_RPC_PEER_TCP ? "tcp" :
                                  "inproc";
}

/* The unix peer of an ipc request: this process's uid or root. */
static bool auth_unix(const tn_rpc_peer *p, tn_ctl_ident *id, char *why, size_t wlen)
{
    if (p->uid < 0 || (p->uid != (int64_t)geteuid() && p->uid != 0)) {
        snprintf(why, wlen,
                 "permission denied: uid %" PRId64 " may not use this control socket (only "
                 "uid %u, the master's user, or root)",
                 p->uid, (unsigned)geteuid());
        return false;
    }
    char buf[1024], name[40];
    struct passwd pw, *res = NULL;
    if (getpwuid_r((uid_t)p->uid, &pw, buf, sizeof(buf), &res) == 0 && res)
        tn_ctl_escape(res->pw_name, strlen(res->pw_name), name, sizeof(name));
    else
        snprintf(name, sizeof(name), "uid%" PRId64, p->uid);
    snprintf(id->actor, sizeof(id->actor), "user:%s", name);
    snprintf(id->what, sizeof(id->what), "unix user %s", name);
    id->role = TN_ROLE_ADMIN;
    return true;
}

/* A signed request over tls+tcp whose connection showed a certificate of our CA. */
static bool auth_cert(const tn_ctlsrv *s, const tn_rpc_peer *p, const tn_ctl_req *r,
                      tn_ctl_ident *id, char *why, size_t wlen)
{
    char cn[64], ou[32];
    tn_errmsg m = {{0}};
    if (!p->tls_verified) {
        snprintf(why, wlen,
                 "permission denied: the TLS connection showed no client "
                 "certificate the master's CA signed");
        return false;
    }
    if (tn_ctl_verify(r, s->tls_ca, tn_now_ns() / 1000000, cn, sizeof(cn), ou, sizeof(ou),
                      &m) != TN_OK) {
        snprintf(why, wlen, "permission denied: %s", m.text);
        return false;
    }
    tn_role role = tn_role_parse(ou);
    id->role = role == TN_ROLE_NONE ? TN_ROLE_ADMIN : role;
    snprintf(id->actor, sizeof(id->actor), "cert:%s", cn);
    snprintf(id->what, sizeof(id->what), "%s certificate %s", tn_role_name(id->role), cn);
    return true;
}

bool tn_ctlsrv_auth(const tn_ctlsrv *s, const tn_rpc_peer *p, const tn_ctl_req *r,
                    tn_ctl_ident *id, char *why, size_t wlen)
{
    *id = (tn_ctl_ident){.role = TN_ROLE_NONE};
    if (p->kind == TN_RPC_PEER_IPC && !auth_unix(p, id, why, wlen))
        return false;
    if (r->token.len) {
        tn_token_info t;
        tn_errmsg m = {{0}};
        if (tn_token_check(s->data_dir, r->token.p, r->token.len, &t, &m) != TN_OK) {
            snprintf(why, wlen, "permission denied: %s", m.text);
            return false;
        }
        snprintf(id->actor, sizeof(id->actor), "token:%s", t.name);
        snprintf(id->what, sizeof(id->what), "%s token", tn_role_name(t.role));
        id->role = t.role;
        return true;
    }
    if (p->kind == TN_RPC_PEER_TLS && r->cert.len)
        return auth_cert(s, p, r, id, why, wlen);
    if (p->kind == TN_RPC_PEER_INPROC) {
        snprintf(id->actor, sizeof(id->actor), "user:local");
        snprintf(id->what, sizeof(id->what), "this process");
        id->role = TN_ROLE_ADMIN;
    }
    if (id->role != TN_ROLE_NONE)
        return true;
    snprintf(why, wlen,
             "permission denied: a control request over %s needs a token (--token-file F or "
             "TERN_TOKEN; made on the master's host with `tern token add NAME --role "
             "viewer|operator|admin`)%s",
             scheme_name(p->kind),
             p->kind == TN_RPC_PEER_TLS ? " or a client certificate (TERN_TLS_CERT, "
                                          "TERN_TLS_KEY)" :
                                          "");
    return false;
}

/* Refuse, and say so in the log with the peer's strings escaped. */
static void refuse(const char *scheme, const char *peer, int64_t uid, const tn_ctl_req *r,
                   const char *actor, out *o, const char *why)
{
    char cmd[80], addr[80], w[800];
    tn_ctl_escape(r->cmd.p, r->cmd.len, cmd, sizeof(cmd));
    tn_ctl_escape(peer, strlen(peer), addr, sizeof(addr));
    tn_ctl_escape(why, strlen(why), w, sizeof(w));
    tn_warn("ctl",
            "msg=\"request refused\" cmd=\"%s\" actor=\"%s\" scheme=%s peer=\"%s\" uid=%" PRId64
            " why=\"%s\"",
            cmd, actor, scheme, addr, uid, w);
    o->err = TN_ERR_PERM;
    fail(o, 1, "%s", why);
}

bool tn_ctlsrv_permit(tn_ctlsrv *s, const tn_ctl_ident *id, const tn_ctl_req *r,
                      const char *scheme, const char *peer, tn_ctl_result *o)
{
    (void)s;
    tn_role need = tn_ctlsrv_role_needed(r->cmd);
    char cmd[40];
    tn_ctl_escape(r->cmd.p, r->cmd.len, cmd, sizeof(cmd));
    if (id->role < need) {
        char why[300];
        snprintf(why, sizeof(why), "permission denied: %s cannot %s; ask an %s", id->what, cmd,
                 tn_role_name(need));
        refuse(scheme, peer, -1, r, id->actor, o, why);
        return false;
    }
    if (need > TN_ROLE_VIEWER)
        tn_info("ctl", "msg=\"request\" cmd=\"%s\" actor=\"%s\" scheme=%s id=%" PRIu64, cmd,
                id->actor, scheme, r->id);
    return true;
}

/* Authenticate r and check its role; false (o filled) when refused. */
static bool allowed(tn_ctlsrv *s, const tn_rpc_peer *p, const tn_ctl_req *r, tn_ctl_ident *id,
                    out *o)
{
    char why[600];
    if (!tn_ctlsrv_auth(s, p, r, id, why, sizeof(why))) {
        refuse(scheme_name(p->kind), p->addr, p->uid, r, "-", o, why);
        return false;
    }
    return tn_ctlsrv_permit(s, id, r, scheme_name(p->kind), p->addr, o);
}

typedef struct route {
    const char *cmd;
    void (*fn)(tn_ctlsrv *s, const tn_ctl_req *r, out *o);
    tn_cmd_kind kind; /* h_simple and h_named: the engine command */
} route;

static void h_workers(tn_ctlsrv *s, const tn_ctl_req *r, out *o)
{
    if (s->workers)
        s->workers(s->arg, &o->text, &o->json);
    else
        tn_sb_printf(&o->json, "[]");
}

static const route routes[] = {
    {"apply", h_apply, 0},
    {"start", h_start, 0},
    {"pause", NULL, TN_CMD_PAUSE},
    {"resume", NULL, TN_CMD_RESUME},
    {"stop", NULL, TN_CMD_STOP},
    {"rerun", NULL, TN_CMD_RERUN},
    {"recover", NULL, TN_CMD_RECOVER},
    {"kill", NULL, TN_CMD_KILL_TASK},
    {"force-success", NULL, TN_CMD_FORCE_SUCCESS},
    {"taskgroup", NULL, TN_CMD_TASKGROUP_SET},
    {"env", NULL, TN_CMD_ENV_SET},
    {"ls", h_ls, 0},
    {"status", h_status, 0},
    {"logs", h_logs, 0},
    {"workers", h_workers, 0},
    {"task", h_task, 0},
    {"defs", h_defs, 0},
    {"def", h_def, 0},
    {"audit", h_audit, 0},
    {"taskgroups", h_taskgroups, 0},
    {"envs", h_envs, 0},
};

/* An operation of the table in ctlsched.c (schedules, backfills): its reply moves into o,
 * with the kind of failure the HTTP API maps to a status. */
static void run_op(tn_ctlsrv *s, const tn_ctl_op *op, const tn_ctl_req *r, out *o)
{
    tn_ctl_out x = {.ok = true, .actor = o->actor};
    op->run(s, r, &x);
    free(o->text.s);
    free(o->json.s);
    o->text = x.text;
    o->json = x.json;
    o->ok = x.ok;
    o->code = x.code;
    if (!x.ok) {
        const char *t = x.text.s ? x.text.s : "";
        o->err = x.code == 2 ? TN_ERR_INVAL :
                 strstr(t, "no workflow") || strstr(t, "has no schedule") ||
                         strstr(t, "no backfill") || strstr(t, "no running or stopped") ?
                               TN_ERR_NOENT :
                               TN_ERR_ILLEGAL;
    }
}

bool tn_ctlsrv_is_read(tn_str cmd)
{
    const tn_ctl_op *op = tn_ctl_sched_op(cmd);
    return tn_str_eq(cmd, "ls") || tn_str_eq(cmd, "status") || (op && op->read);
}

void tn_ctlsrv_exec(tn_ctlsrv *s, const tn_ctl_ident *id, const tn_ctl_req *r, out *o)
{
    if (s->standby && !s->ro) { /* runs this again on the replica it holds */
        tn_standby_exec(s->standby, s, id, r, o);
        return;
    }
    o->ok = true;
    o->actor = id->actor;
    const tn_ctl_op *op = tn_ctl_sched_op(r->cmd);
    if (op) {
        run_op(s, op, r, o);
        return;
    }
    for (size_t i = 0; i < TN_ARRAY_LEN(routes); i++) {
        const route *rt = &routes[i];
        if (!tn_str_eq(r->cmd, rt->cmd))
            continue;
        bool writes = !rt->fn || rt->fn == h_apply || rt->fn == h_start;
        if (writes && !s->engine) {
            o->err = TN_ERR_UNSUPPORTED;
            fail(o, 1, "\"%s\" needs a running master", rt->cmd);
        } else if (rt->fn) {
            rt->fn(s, r, o);
        } else if (rt->kind == TN_CMD_TASKGROUP_SET || rt->kind == TN_CMD_ENV_SET) {
            h_named(s, rt->kind, r, o);
        } else {
            h_simple(s, rt->kind, r, o);
        }
        return;
    }
    fail(o, 2, "unknown command \"%.*s\"", (int)r->cmd.len, r->cmd.p);
}

void tn_ctl_result_free(tn_ctl_result *o)
{
    free(o->text.s);
    free(o->json.s);
    o->text = o->json = (tn_sb){0};
}

void tn_ctlsrv_handle(void *arg, const tn_rpc_peer *peer, const void *req, size_t len,
                      void **rep, size_t *rlen)
{
    tn_ctlsrv *s = arg;
    tn_ctl_req *r = malloc(sizeof(*r));
    out o = {.ok = true};
    tn_ctl_ident id;
    if (!r) {
        fail(&o, 1, "out of memory");
    } else if (len == 0) {
        tn_sb_printf(&o.text, "pong"); /* a liveness probe */
    } else if (tn_ctl_req_decode(req, len, r) != TN_OK) {
        fail(&o, 2, "malformed control request (a tern of another version?)");
    } else if (!s->engine && !s->standby && !tn_ctlsrv_is_read(r->cmd)) {
        fail(&o, 1, "\"%.*s\" needs a running master", (int)r->cmd.len, r->cmd.p);
    } else if (allowed(s, peer, r, &id, &o)) {
        tn_ctlsrv_exec(s, &id, r, &o);
    }
    tn_ctl_rep rp = {.ok = o.ok,
                     .code = o.ok ? 0 : o.code,
                     .text = {o.text.s ? o.text.s : "", (uint32_t)o.text.len},
                     .json = {o.json.s ? o.json.s : "", (uint32_t)o.json.len},
                     .url = o.url};
    if (o.ok && tn_str_eq(r ? r->cmd : (tn_str){"", 0}, "logs"))
        rp.offset = o.attempt; /* logs: the attempt */
    tn_buf b = {0};
    if (tn_ctl_rep_encode(&rp, &b) == TN_OK) {
        *rep = b.data;
        *rlen = b.size;
    } else {
        tn_buf_free(&b);
    }
    tn_ctl_result_free(&o);
    free(r);
}

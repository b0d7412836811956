/* The control server's schedule and backfill operations: changes go to the engine as
 * commands; reads (ls, show, next) come from the store's committed projections, so they
 * also answer from the store when no master runs. */
#include "ctlsched.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "ctlsrv.h"
#include "logread.h"
#include "mp.h"
#include "objproj.h"
#include "params.h"
#include "sm_gen.h"
#include "tz.h"
#include "jsonout.h"

void tn_ctl_out_fail(tn_ctl_out *o, int code, const char *fmt, ...)
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
    if (!tn_jo_dump(&o->json, json_pack("{s:o}", "error", tn_jo_str(buf))))
        tn_sb_printf(&o->json, "{\"error\":\"out of memory\"}");
}

#define fail tn_ctl_out_fail

/* o's JSON is j (taken over): a failure when j could not be built or written whole. */
static void reply(tn_ctl_out *o, json_t *j)
{
    if (!tn_jo_dump(&o->json, j))
        fail(o, 1, "out of memory writing the reply's JSON; try again");
}

/* ---- payload encodings ---------------------------------------------------------- */

static void pk_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

static void pk_kstr(msgpack_packer *pk, const char *k, const char *v, size_t n)
{
    pk_key(pk, k);
    msgpack_pack_str_with_body(pk, v, n);
}

static void pk_ki64(msgpack_packer *pk, const char *k, int64_t v)
{
    pk_key(pk, k);
    msgpack_pack_int64(pk, v);
}

tn_err tn_ctl_spec_encode(const tn_sched_spec *s, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 11);
    pk_kstr(&pk, "cron", s->cron, strlen(s->cron));
    pk_kstr(&pk, "tz", s->tz, strlen(s->tz));
    pk_ki64(&pk, "start", s->start_ns);
    pk_ki64(&pk, "end", s->end_ns);
    const char *ov = tn_overlap_name(s->overlap);
    pk_kstr(&pk, "overlap", ov, strlen(ov));
    pk_ki64(&pk, "catchup", s->catchup_ms);
    pk_ki64(&pk, "pause_on_failure", s->pause_on_failure);
    pk_kstr(&pk, "priority", s->priority, strlen(s->priority));
    pk_kstr(&pk, "failure_strategy", s->failure_strategy, strlen(s->failure_strategy));
    pk_kstr(&pk, "worker_group", s->worker_group, strlen(s->worker_group));
    pk_key(&pk, "params");
    msgpack_pack_map(&pk, s->nparams);
    for (uint32_t i = 0; i < s->nparams; i++) {
        msgpack_pack_str_with_body(&pk, s->param_keys[i], strlen(s->param_keys[i]));
        msgpack_pack_str_with_body(&pk, s->param_values[i], strlen(s->param_values[i]));
    }
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

/* The params map of a spec: each key and value copied into the spec. */
static bool spec_params(tn_mp *m, tn_sched_spec *s)
{
    uint32_t n;
    if (!tn_mp_map(m, TN_SCHED_MAX_PARAMS, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        if (!tn_mp_str(m, 256, &k, &kl) || !tn_mp_str(m, TN_SCHED_PARAM_MAX, &v, &vl))
            return false;
        char *kc = strndup(k, kl), *vc = strndup(v, vl);
        tn_err e = kc && vc && !memchr(k, 0, kl) && !memchr(v, 0, vl) ?
                       tn_sched_spec_param(s, kc, vc) :
                       TN_ERR_INVAL;
        free(kc);
        free(vc);
        if (e)
            return tn_mp_fail(m, e);
    }
    return true;
}

static bool spec_field(tn_mp *m, tn_str k, tn_sched_spec *s)
{
    int64_t v;
    if (tn_str_eq(k, "cron"))
        return tn_mp_str_copy(m, s->cron, sizeof(s->cron));
    if (tn_str_eq(k, "tz"))
        return tn_mp_str_copy(m, s->tz, sizeof(s->tz));
    if (tn_str_eq(k, "priority"))
        return tn_mp_str_copy(m, s->priority, sizeof(s->priority));
    if (tn_str_eq(k, "failure_strategy"))
        return tn_mp_str_copy(m, s->failure_strategy, sizeof(s->failure_strategy));
    if (tn_str_eq(k, "worker_group"))
        return tn_mp_str_copy(m, s->worker_group, sizeof(s->worker_group));
    if (tn_str_eq(k, "params"))
        return spec_params(m, s);
    if (tn_str_eq(k, "overlap")) {
        char w[32];
        tn_overlap ov;
        if (!tn_mp_str_copy(m, w, sizeof(w)))
            return false;
        if (tn_overlap_parse(w, &ov) != TN_OK)
            return tn_mp_fail(m, TN_ERR_INVAL);
        s->overlap = ov;
        return true;
    }
    if (!tn_mp_i64(m, &v))
        return false;
    if (tn_str_eq(k, "start"))
        s->start_ns = v;
    else if (tn_str_eq(k, "end"))
        s->end_ns = v;
    else if (tn_str_eq(k, "catchup"))
        s->catchup_ms = v;
    else if (tn_str_eq(k, "pause_on_failure"))
        s->pause_on_failure = v != 0;
    else
        return tn_mp_fail(m, TN_ERR_CORRUPT);
    return true;
}

tn_err tn_ctl_spec_decode(const void *buf, size_t len, tn_sched_spec *s)
{
    tn_mp m;
    tn_mp_init(&m, buf, len);
    uint32_t n;
    if (!tn_mp_map(&m, 16, &n))
        return m.err;
    for (uint32_t i = 0; i < n; i++) {
        tn_str k;
        if (!tn_mp_str(&m, 32, &k.p, &k.len) || !spec_field(&m, k, s))
            return m.err ? m.err : TN_ERR_CORRUPT;
    }
    return tn_mp_done(&m) ? TN_OK : m.err;
}

tn_err tn_ctl_bf_encode(const tn_ctl_bf_req *r, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pk_kstr(&pk, "from", r->from.p ? r->from.p : "", r->from.len);
    pk_kstr(&pk, "to", r->to.p ? r->to.p : "", r->to.len);
    pk_kstr(&pk, "tz", r->tz.p ? r->tz.p : "", r->tz.len);
    pk_ki64(&pk, "desc", r->desc);
    pk_key(&pk, "dates");
    msgpack_pack_array(&pk, r->ndates);
    for (uint32_t i = 0; i < r->ndates; i++)
        msgpack_pack_str_with_body(&pk, r->dates[i].p, r->dates[i].len);
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

static bool bf_field(tn_mp *m, tn_str k, tn_ctl_bf_req *r)
{
    if (tn_str_eq(k, "from"))
        return tn_mp_str(m, TN_CTL_DATE_MAX, &r->from.p, &r->from.len);
    if (tn_str_eq(k, "to"))
        return tn_mp_str(m, TN_CTL_DATE_MAX, &r->to.p, &r->to.len);
    if (tn_str_eq(k, "tz"))
        return tn_mp_str(m, TN_TZ_MAX_NAME, &r->tz.p, &r->tz.len);
    if (tn_str_eq(k, "desc")) {
        int64_t v;
        if (!tn_mp_i64(m, &v))
            return false;
        r->desc = v != 0;
        return true;
    }
    if (!tn_str_eq(k, "dates") || r->dates)
        return tn_mp_fail(m, TN_ERR_CORRUPT);
    if (!tn_mp_array(m, TN_BACKFILL_MAX_DATES, &r->ndates))
        return false;
    r->dates = calloc(r->ndates ? r->ndates : 1, sizeof(*r->dates));
    if (!r->dates)
        return tn_mp_fail(m, TN_ERR_NOMEM);
    for (uint32_t i = 0; i < r->ndates; i++)
        if (!tn_mp_str(m, TN_CTL_DATE_MAX, &r->dates[i].p, &r->dates[i].len))
            return false;
    return true;
}

tn_err tn_ctl_bf_decode(const void *buf, size_t len, tn_ctl_bf_req *r)
{
    memset(r, 0, sizeof(*r));
    tn_mp m;
    tn_mp_init(&m, buf, len);
    uint32_t n;
    tn_err err = TN_OK;
    if (!tn_mp_map(&m, 8, &n))
        err = m.err;
    for (uint32_t i = 0; !err && i < n; i++) {
        tn_str k;
        if (!tn_mp_str(&m, 16, &k.p, &k.len) || !bf_field(&m, k, r))
            err = m.err ? m.err : TN_ERR_CORRUPT;
    }
    if (!err && !tn_mp_done(&m))
        err = m.err;
    if (err) {
        free(r->dates);
        memset(r, 0, sizeof(*r));
    }
    return err;
}

/* ---- times ---------------------------------------------------------------------- */

/* "2026-03-29T01:30:00Z" (whole seconds: fire times are), or with nanoseconds when any. */
static void fmt_utc(int64_t ns, char *buf, size_t len)
{
    char ts[40];
    int64_t frac = ns % 1000000000LL;
    if (frac < 0)
        frac += 1000000000LL;
    tn_fmt_time(ns - frac, ts, sizeof(ts));
    ts[19] = 0;
    if (frac)
        snprintf(buf, len, "%s.%09" PRId64 "Z", ts, frac);
    else
        snprintf(buf, len, "%sZ", ts);
}

/* "2026-03-29 03:30:00 +02:00" in zone tz (or the UTC form when the zone fails). */
static void fmt_local(tn_tz *tz, int64_t ns, char *buf, size_t len)
{
    tn_civil c;
    int32_t off;
    if (!tz || tn_tz_to_civil(tz, ns, &c) != TN_OK || tn_tz_offset(tz, ns, &off) != TN_OK) {
        fmt_utc(ns, buf, len);
        return;
    }
    int32_t a = off < 0 ? -off : off;
    snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d %c%02d:%02d", c.year, c.month, c.day,
             c.hour, c.minute, c.second, off < 0 ? '-' : '+', a / 3600, a % 3600 / 60);
}

/* A time as fmt_utc writes it, or null for 0 */
static json_t *json_time(int64_t ns)
{
    char ts[48];
    if (!ns)
        return json_null();
    fmt_utc(ns, ts, sizeof(ts));
    return json_string(ts);
}

static tn_err open_zone(const char *name, tn_tz **tz, tn_errmsg *e)
{
    return tn_tz_open(name && *name ? name : "UTC", tz, e);
}

/* tn_ctl_next_fires's lines on o's text, and its array (NULL when o failed). */
static json_t *next_fires(const char *cron, const char *tzname, int64_t start_ns,
                          int64_t end_ns, int64_t after_ns, uint32_t n, tn_ctl_out *o)
{
    tn_cron c;
    tn_tz *tz = NULL;
    tn_errmsg e = {{0}};
    if (tn_cron_parse(cron, &c, &e) != TN_OK) {
        fail(o, 2, "%s", e.text);
        return NULL;
    }
    if (open_zone(tzname, &tz, &e) != TN_OK) {
        fail(o, 2, "%s", e.text);
        return NULL;
    }
    const char *zn = tzname && *tzname ? tzname : "UTC";
    int64_t t = start_ns && start_ns - 1 > after_ns ? start_ns - 1 : after_ns;
    json_t *arr = json_array();
    uint32_t k = 0;
    for (; k < n && k < TN_CTL_NEXT_MAX; k++) {
        int64_t nx;
        if (tn_cron_next(&c, tz, t, &nx, NULL) != TN_OK || (end_ns && nx > end_ns))
            break;
        char lo[64], utc[48];
        fmt_local(tz, nx, lo, sizeof(lo));
        fmt_utc(nx, utc, sizeof(utc));
        tn_sb_printf(&o->text, "%s %s   %s\n", lo, zn, utc);
        tn_jo_push(arr, json_pack("{s:o,s:s,s:I}", "local", tn_jo_str(lo), "utc", utc, "ns",
                                  (json_int_t)nx));
        t = nx;
    }
    if (k == 0)
        tn_sb_printf(&o->text, "(no fire time%s)\n",
                     end_ns ? " before the end of the window" : "");
    tn_tz_free(tz);
    return arr;
}

void tn_ctl_next_fires(const char *cron, const char *tzname, int64_t start_ns, int64_t end_ns,
                       int64_t after_ns, uint32_t n, tn_ctl_out *o)
{
    json_t *arr = next_fires(cron, tzname, start_ns, end_ns, after_ns, n, o);
    if (o->ok)
        reply(o, arr);
}

/* ---- shared by the handlers ------------------------------------------------------ */

static tn_store *store(tn_ctlsrv *s)
{
    return s->engine ? tn_evlog_store(tn_engine_log(s->engine)) : s->ro;
}

static const char *sched_state(unsigned st)
{
    return tn_sm_state_name(&tn_sm_schedule, st);
}

static const char *bf_state(unsigned st)
{
    return tn_sm_state_name(&tn_sm_backfill, st);
}

/* The request's workflow name into buf; false (o failed) when missing or too long. */
static bool req_name(const tn_ctl_req *r, char *buf, size_t cap, tn_ctl_out *o)
{
    if (!r->name.len || r->name.len >= cap || memchr(r->name.p, 0, r->name.len)) {
        fail(o, 2, "give one workflow name");
        return false;
    }
    memcpy(buf, r->name.p, r->name.len);
    buf[r->name.len] = 0;
    return true;
}

/* The workflow exists (has a definition); else o fails saying what to do. */
static bool wf_exists(tn_ctlsrv *s, const char *name, tn_ctl_out *o)
{
    uint32_t v;
    if (tn_log_def_latest(store(s), name, &v, NULL) == TN_OK)
        return true;
    fail(o, 1, "no workflow named \"%s\"; see `tern def ls`, or apply it with `tern def apply`",
         name);
    return false;
}

/* The schedule of `name` (o fails when there is none, or it was removed and gone is
 * false); the caller finis *p when this returns true. */
static bool sched_get(tn_ctlsrv *s, const char *name, bool removed_ok, tn_sched_proj *p,
                      tn_ctl_out *o)
{
    tn_err e = tn_log_sched_get(store(s), name, p);
    if (e == TN_ERR_NOENT || (!e && !removed_ok && p->state == TN_SCHED_S_REMOVED)) {
        if (!e)
            tn_sched_proj_fini(p);
        fail(o, 1,
             "workflow \"%s\" has no schedule; see `tern schedule ls`, or make one with "
             "`tern schedule set %s --cron EXPR`",
             name, name);
        return false;
    }
    if (e) {
        fail(o, 1, "cannot read the schedule of \"%s\": %s", name, tn_strerror(e));
        return false;
    }
    return true;
}

/* Run an engine command for o; the reply's text is the engine's message, else `what`. */
static bool engine_cmd(tn_ctlsrv *s, tn_cmd *c, tn_ctl_out *o, const char *what)
{
    c->actor = o->actor;
    if (tn_engine_submit_wait(s->engine, c) != TN_OK) {
        fail(o, 1, "%s", c->msg[0] ? c->msg : tn_strerror(c->err));
        return false;
    }
    tn_sb_printf(&o->text, "%s", c->msg[0] ? c->msg : what);
    return true;
}

static void json_ok(tn_ctl_out *o, const char *name, const tn_cmd *c)
{
    reply(o, json_pack("{s:b,s:o,s:o}", "ok", 1, "workflow", tn_jo_str(name), "message",
                       tn_jo_str(c->msg)));
}

/* ---- schedule changes ------------------------------------------------------------- */

static void h_sched_set(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    char name[TN_NAME_MAX + 1];
    if (!req_name(r, name, sizeof(name), o) || !wf_exists(s, name, o))
        return;
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    tn_errmsg e = {{0}};
    if (tn_ctl_spec_decode(r->bytes.p, r->bytes.len, &sp) != TN_OK) {
        fail(o, 2, "malformed schedule in the request (a tern of another version?)");
    } else if (tn_sched_spec_validate(&sp, &e) != TN_OK) {
        fail(o, 2, "%s", e.text);
    } else {
        tn_cmd c = {.kind = TN_CMD_SCHED_SET, .workflow = name, .sched = &sp};
        char what[700];
        snprintf(what, sizeof(what), "schedule of %s set: %s (%s)", name, sp.cron,
                 sp.tz[0] ? sp.tz : "UTC");
        if (engine_cmd(s, &c, o, what))
            json_ok(o, name, &c);
    }
    tn_sched_spec_fini(&sp);
}

/* pause, resume, rm: the schedule must exist (and not be removed). */
static void sched_change(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o, tn_cmd_kind kind,
                         const char *done)
{
    char name[TN_NAME_MAX + 1];
    tn_sched_proj p;
    if (!req_name(r, name, sizeof(name), o) || !sched_get(s, name, false, &p, o))
        return;
    tn_sched_proj_fini(&p);
    char *text = strndup(r->bytes.p ? r->bytes.p : "", r->bytes.len);
    if (!text) {
        fail(o, 1, "out of memory");
        return;
    }
    tn_cmd c = {.kind = kind, .workflow = name, .text = text};
    char what[400];
    snprintf(what, sizeof(what), "schedule of %s %s", name, done);
    if (engine_cmd(s, &c, o, what))
        json_ok(o, name, &c);
    free(text);
}

static void h_sched_pause(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    sched_change(s, r, o, TN_CMD_SCHED_PAUSE, "paused");
}

static void h_sched_resume(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    sched_change(s, r, o, TN_CMD_SCHED_RESUME,
                 "resumed (the fire times it missed are skipped)");
}

static void h_sched_rm(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    sched_change(s, r, o, TN_CMD_SCHED_RM, "removed");
}

static void h_sched_trigger(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    char name[TN_NAME_MAX + 1];
    tn_sched_proj p;
    if (!req_name(r, name, sizeof(name), o) || !sched_get(s, name, false, &p, o))
        return;
    tn_sched_proj_fini(&p);
    tn_cmd c = {.kind = TN_CMD_SCHED_TRIGGER, .workflow = name, .actor = o->actor};
    if (tn_engine_submit_wait(s->engine, &c) != TN_OK) {
        fail(o, 1, "%s", c.msg[0] ? c.msg : tn_strerror(c.err));
        return;
    }
    tn_sb_printf(&o->text, "instance %" PRIu64, c.out_id);
    reply(o, json_pack("{s:b,s:o,s:I,s:o}", "ok", 1, "workflow", tn_jo_str(name), "instance",
                       (json_int_t)c.out_id, "message", tn_jo_str(c.msg)));
}

/* ---- schedule reads -------------------------------------------------------------- */

/* A schedule's object: its workflow, state and spec. */
static json_t *spec_json(const tn_sched_proj *p)
{
    tn_kv *kv = NULL;
    if (p->params_len)
        (void)tn_kv_decode(p->params, p->params_len, &kv);
    json_t *j = json_pack(
        "{s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:b,s:o,s:o,s:o,s:o}", "workflow", tn_jo_str(p->name),
        "state", sched_state(p->state), "cron", tn_jo_str(p->cron), "tz",
        tn_jo_str(p->tz[0] ? p->tz : "UTC"), "start", json_time(p->start_ns), "end",
        json_time(p->end_ns), "overlap", tn_jo_str(p->overlap), "catchup_ms",
        (json_int_t)p->catchup_ms, "pause_on_failure", p->pause_on_failure, "priority",
        tn_jo_str(p->priority), "failure_strategy", tn_jo_str(p->failure_strategy),
        "worker_group", tn_jo_str(p->worker_group), "params", tn_jo_kv(kv));
    tn_kv_free(kv);
    return j;
}

typedef struct sched_ls {
    tn_ctl_out *o;
    json_t *arr;
    bool all;
} sched_ls;

static int sched_ls_row(void *ctx, const tn_sched_proj *p)
{
    sched_ls *l = ctx;
    if (p->state == TN_SCHED_S_REMOVED && !l->all)
        return 0;
    char last[48] = "-";
    if (p->last_fire)
        fmt_utc(p->last_fire, last, sizeof(last));
    tn_sb_printf(&l->o->text, "%-24s %-8s %-22s %-16s %7" PRIu64 " %6" PRIu64 "  %s\n", p->name,
                 sched_state(p->state), p->cron, p->tz[0] ? p->tz : "UTC", p->fires, p->skips,
                 last);
    json_t *j = spec_json(p);
    if (j) {
        tn_jo_set(j, "fires", json_integer((json_int_t)p->fires));
        tn_jo_set(j, "skips", json_integer((json_int_t)p->skips));
        tn_jo_set(j, "last_fire", json_time(p->last_fire));
        tn_jo_set(j, "last_instance", json_integer((json_int_t)p->last_instance));
    }
    tn_jo_push(l->arr, j);
    return 0;
}

static void h_sched_ls(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    sched_ls l = {.o = o, .arr = json_array(), .all = r->dry_run}; /* --all rides on dry_run */
    tn_sb_printf(&o->text, "%-24s %-8s %-22s %-16s %7s %6s  %s\n", "WORKFLOW", "STATE", "CRON",
                 "ZONE", "FIRES", "SKIPS", "LAST FIRE");
    tn_err e = tn_log_sched_each(store(s), sched_ls_row, &l);
    if (e) {
        json_decref(l.arr);
        fail(o, 1, "cannot read the schedules: %s", tn_strerror(e));
        return;
    }
    reply(o, l.arr);
}

#define LAST_FIRES 10

typedef struct fire_ring {
    int64_t nominal[LAST_FIRES];
    uint64_t instance[LAST_FIRES];
    bool manual[LAST_FIRES];
    size_t n;
} fire_ring;

static int fire_row(void *ctx, int64_t nominal, uint64_t instance, bool manual)
{
    fire_ring *f = ctx;
    size_t i = f->n++ % LAST_FIRES;
    f->nominal[i] = nominal;
    f->instance[i] = instance;
    f->manual[i] = manual;
    return 0;
}

/* The newest LAST_FIRES fires: the walk starts shortly before the last one and reaches
 * further back only while it finds too few, so a schedule of years costs a few walks. */
static void last_fires(tn_store *st, const tn_sched_proj *p, fire_ring *f)
{
    int64_t span = 64LL * 1000000000LL;
    for (int round = 0; round < 40; round++) {
        f->n = 0;
        int64_t from =
            p->fires <= LAST_FIRES || p->last_fire - span < 0 ? 0 : p->last_fire - span;
        if (tn_log_fire_each(st, p->name, from, fire_row, f) != TN_OK || from == 0 ||
            f->n >= LAST_FIRES)
            return;
        span = span > INT64_MAX / 8 ? INT64_MAX : span * 8;
    }
}

static void show_fires(tn_ctlsrv *s, const tn_sched_proj *p, tn_tz *tz, tn_ctl_out *o,
                       json_t *j)
{
    fire_ring f = {0};
    last_fires(store(s), p, &f);
    size_t first = f.n > LAST_FIRES ? f.n - LAST_FIRES : 0;
    tn_sb_printf(&o->text, "last fires:%s\n", f.n ? "" : " none yet");
    if (f.n)
        tn_sb_printf(&o->text, "  %-26s %-30s %-9s %s\n", "NOMINAL (ZONE)", "UTC", "INSTANCE",
                     "STATE");
    json_t *arr = json_array();
    for (size_t k = first; k < f.n; k++) {
        size_t i = k % LAST_FIRES;
        tn_wf_proj w;
        const char *st = tn_log_wf_get(store(s), f.instance[i], &w) == TN_OK ?
                             tn_sm_state_name(&tn_sm_workflow, w.state) :
                             "-";
        char lo[64], utc[48];
        fmt_local(tz, f.nominal[i], lo, sizeof(lo));
        fmt_utc(f.nominal[i], utc, sizeof(utc));
        tn_sb_printf(&o->text, "  %-26s %-30s %-9" PRIu64 " %s%s\n", lo, utc, f.instance[i], st,
                     f.manual[i] ? " (trigger)" : "");
        tn_jo_push(arr,
                   json_pack("{s:s,s:I,s:I,s:s,s:b}", "nominal", utc, "nominal_ns",
                             (json_int_t)f.nominal[i], "instance", (json_int_t)f.instance[i],
                             "state", st, "manual", f.manual[i]));
    }
    tn_jo_set(j, "last_fires", arr);
}

/* A duration in milliseconds in its largest exact unit: "1m", "90s", "250ms". */
static void fmt_ms(int64_t ms, char *buf, size_t len)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (ms && ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    snprintf(buf, len, "%" PRId64 "ms", ms);
}

/* The spec as text lines. */
static void spec_text(tn_sb *t, const tn_sched_proj *p, tn_tz *tz)
{
    char a[64] = "open", b[64] = "open";
    if (p->start_ns)
        fmt_local(tz, p->start_ns, a, sizeof(a));
    if (p->end_ns)
        fmt_local(tz, p->end_ns, b, sizeof(b));
    tn_sb_printf(t, "  cron:     %s\n  zone:     %s\n", p->cron, p->tz[0] ? p->tz : "UTC");
    if (p->start_ns || p->end_ns)
        tn_sb_printf(t, "  window:   %s .. %s\n", a, b);
    char cu[32];
    fmt_ms(p->catchup_ms, cu, sizeof(cu));
    tn_sb_printf(t, "  overlap:  %s; catchup %s; pause on failure: %s\n", p->overlap, cu,
                 p->pause_on_failure ? "yes" : "no");
    if (p->priority[0] || p->failure_strategy[0] || p->worker_group[0])
        tn_sb_printf(t, "  runs:     priority %s, failure strategy %s, worker group %s\n",
                     p->priority[0] ? p->priority : "(the workflow's)",
                     p->failure_strategy[0] ? p->failure_strategy : "(the workflow's)",
                     p->worker_group[0] ? p->worker_group : "(the workflow's)");
    tn_kv *kv = NULL;
    if (p->params_len && tn_kv_decode(p->params, p->params_len, &kv) == TN_OK &&
        tn_kv_len(kv)) {
        tn_sb_printf(t, "  params:   ");
        tn_kv_text(t, kv);
        tn_sb_printf(t, "\n");
    }
    tn_kv_free(kv);
}

/* The counters and what is buffered, as text and fields of j. */
static void show_counts(const tn_sched_proj *p, tn_tz *tz, tn_ctl_out *o, json_t *j)
{
    tn_sb_printf(&o->text,
                 "  fires:    %" PRIu64 ", skipped %" PRIu64 ", buffered %" PRIu64
                 " (now held: %u)\n",
                 p->fires, p->skips, p->buffers, p->nbuffered);
    if (p->reason[0])
        tn_sb_printf(&o->text, "  reason:   %s\n", p->reason);
    tn_jo_set(j, "fires", json_integer((json_int_t)p->fires));
    tn_jo_set(j, "skips", json_integer((json_int_t)p->skips));
    tn_jo_set(j, "buffers", json_integer((json_int_t)p->buffers));
    tn_jo_set(j, "last_instance", json_integer((json_int_t)p->last_instance));
    tn_jo_set(j, "last_fire", json_time(p->last_fire));
    tn_jo_set(j, "created_at", json_time(p->created_at));
    tn_jo_set(j, "updated_at", json_time(p->updated_at));
    tn_jo_set(j, "reason", tn_jo_str(p->reason));
    json_t *held = json_array();
    for (uint32_t i = 0; i < p->nbuffered && i < TN_SCHED_PROJ_BUFFER_MAX; i++) {
        char utc[48], lo[64];
        fmt_utc(p->buffered[i], utc, sizeof(utc));
        fmt_local(tz, p->buffered[i], lo, sizeof(lo));
        tn_jo_push(held, json_string(utc));
        tn_sb_printf(&o->text, "  held:     %s   %s\n", lo, utc);
    }
    tn_jo_set(j, "buffered", held);
}

/* The next fire times of p after after_ns, under "next" in j. */
static void show_next(const tn_sched_proj *p, int64_t after_ns, uint32_t n, tn_ctl_out *o,
                      json_t *j)
{
    tn_ctl_out nx = {.ok = true};
    int64_t after = after_ns > p->last_nominal ? after_ns : p->last_nominal;
    json_t *arr = NULL;
    if (p->state != TN_SCHED_S_REMOVED)
        arr = next_fires(p->cron, p->tz, p->start_ns, p->end_ns, after, n, &nx);
    tn_sb_printf(&o->text, "next fire times%s:\n",
                 p->state == TN_SCHED_S_PAUSED ? " (when resumed; paused now)" : "");
    for (const char *l = nx.ok && nx.text.s ? nx.text.s : "(none)\n"; *l;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
        tn_sb_printf(&o->text, "  %.*s", (int)len, l);
        l += len;
    }
    tn_jo_set(j, "next", arr ? arr : json_array());
    free(nx.text.s);
    free(nx.json.s);
}

static void h_sched_show(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    char name[TN_NAME_MAX + 1];
    tn_sched_proj p;
    if (!req_name(r, name, sizeof(name), o) || !sched_get(s, name, true, &p, o))
        return;
    tn_tz *tz = NULL;
    (void)open_zone(p.tz, &tz, NULL);
    tn_sb_printf(&o->text, "schedule of workflow %s: %s\n", p.name, sched_state(p.state));
    spec_text(&o->text, &p, tz);
    json_t *j = spec_json(&p);
    if (j) {
        show_counts(&p, tz, o, j);
        show_next(&p, tn_now_ns(), 5, o, j);
        show_fires(s, &p, tz, o, j);
    }
    reply(o, j);
    tn_tz_free(tz);
    tn_sched_proj_fini(&p);
}

/* schedule-next: n in slots (default 5), the instant to count from in offset (0: now). */
static void h_sched_next(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    char name[TN_NAME_MAX + 1];
    tn_sched_proj p;
    if (!req_name(r, name, sizeof(name), o) || !sched_get(s, name, false, &p, o))
        return;
    uint32_t n = r->slots > 0 && r->slots <= TN_CTL_NEXT_MAX ? (uint32_t)r->slots : 5;
    int64_t after = r->offset && r->offset <= INT64_MAX ? (int64_t)r->offset : tn_now_ns();
    tn_ctl_next_fires(p.cron, p.tz, p.start_ns, p.end_ns, after, n, o);
    tn_sched_proj_fini(&p);
}

/* ---- backfills ------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A date as written, read in zone tz; false (o failed, code 2) when it is not one. */
static bool parse_date(tn_str d, const char *tz, const char *what, int64_t *ns, tn_ctl_out *o)
{
    char buf[TN_CTL_DATE_MAX + 1];
    snprintf(buf, sizeof(buf), "%.*s", (int)d.len, d.p);
    tn_errmsg e = {{0}};
    if (tn_sched_parse_time(buf, tz, ns, &e) == TN_OK)
        return true;
    fail(o, 2, "%s \"%s\": %s", what, buf, e.text[0] ? e.text : "not a date (YYYY-MM-DD)");
    return false;
}

/* The fire times of cron in [from, to], in zone tz, appended to *d (at most
 * TN_BACKFILL_MAX_DATES; one more means too many). */
static bool range_dates(const char *cron, tn_tz *tz, int64_t from, int64_t to, int64_t *d,
                        uint32_t *n, const char *how, tn_ctl_out *o)
{
    tn_cron c;
    tn_errmsg e = {{0}};
    if (tn_cron_parse(cron, &c, &e) != TN_OK) {
        fail(o, 1, "the schedule's cron \"%s\": %s", cron, e.text);
        return false;
    }
    int64_t t = from - 1, nx;
    while (tn_cron_next(&c, tz, t, &nx, NULL) == TN_OK && nx <= to) {
        if (*n == TN_BACKFILL_MAX_DATES) {
            fail(o, 2,
                 "more than %u dates from --from to --to (%s): a backfill runs at most "
                 "%u; narrow the range or split it",
                 TN_BACKFILL_MAX_DATES, how, TN_BACKFILL_MAX_DATES);
            return false;
        }
        d[(*n)++] = t = nx;
    }
    return true;
}

/* *ns (a midnight in tz) moved to the last nanosecond of its day. */
static bool day_end(tn_tz *tz, int64_t *ns, tn_ctl_out *o)
{
    tn_cron daily;
    int64_t next;
    if (tn_cron_parse("0 0 0 * * ?", &daily, NULL) != TN_OK ||
        tn_cron_next(&daily, tz, *ns, &next, NULL) != TN_OK) {
        fail(o, 2, "--to is past the last date there is");
        return false;
    }
    *ns = next - 1;
    return true;
}

/* The dates of a backfill request in run order: the given ones, or the schedule's fire
 * times in [from, to] (daily at 00:00 when the workflow has no schedule). *zone says
 * where they were read. */
static bool bf_dates(tn_ctlsrv *s, const char *name, const tn_ctl_bf_req *q, int64_t *d,
                     uint32_t *n, char *how, size_t howlen, tn_ctl_out *o)
{
    tn_sched_proj p;
    bool has = tn_log_sched_get(store(s), name, &p) == TN_OK;
    if (has && p.state == TN_SCHED_S_REMOVED) {
        tn_sched_proj_fini(&p);
        has = false;
    }
    char zone[TN_TZ_MAX_NAME + 1], cron[TN_CRON_MAX_LEN + 1];
    snprintf(zone, sizeof(zone), "%.*s", (int)q->tz.len, q->tz.p ? q->tz.p : "");
    if (!zone[0])
        snprintf(zone, sizeof(zone), "%s", has && p.tz[0] ? p.tz : "UTC");
    snprintf(cron, sizeof(cron), "%s", has ? p.cron : "0 0 0 * * ?");
    if (has)
        tn_sched_proj_fini(&p);
    tn_tz *tz = NULL;
    tn_errmsg e = {{0}};
    if (tn_tz_open(zone, &tz, &e) != TN_OK) {
        fail(o, 2, "--tz: %s", e.text);
        return false;
    }
    bool ok = true;
    *n = 0;
    if (q->ndates) {
        for (uint32_t i = 0; ok && i < q->ndates; i++)
            ok = parse_date(q->dates[i], zone, "--dates", &d[(*n)++], o);
        snprintf(how, howlen, "the dates given, read in %s", zone);
    } else {
        int64_t from, to;
        ok = parse_date(q->from, zone, "--from", &from, o) &&
             parse_date(q->to, zone, "--to", &to, o);
        if (ok && from > to) {
            fail(o, 2, "--from %.*s is after --to %.*s", (int)q->from.len, q->from.p,
                 (int)q->to.len, q->to.p);
            ok = false;
        }
        if (ok && q->to.len == 10) /* a plain date: up to the end of that day */
            ok = day_end(tz, &to, o);
        snprintf(how, howlen, "%s \"%s\" in %s",
                 has ? "the schedule's fire times of" : "every day at", has ? cron : "00:00",
                 zone);
        ok = ok && range_dates(cron, tz, from, to, d, n, how, o);
    }
    tn_tz_free(tz);
    return ok;
}

/* Sort in run order and drop repeated dates. */
static uint32_t order_dates(int64_t *d, uint32_t n, bool desc)
{
    qsort(d, n, sizeof(*d), cmp_i64);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        if (k == 0 || d[k - 1] != d[i])
            d[k++] = d[i];
    for (uint32_t i = 0; desc && i < k / 2; i++) {
        int64_t t = d[i];
        d[i] = d[k - 1 - i];
        d[k - 1 - i] = t;
    }
    return k;
}

static void bf_submit(tn_ctlsrv *s, const tn_ctl_req *r, const char *name, const int64_t *d,
                      uint32_t n, tn_ctl_out *o)
{
    char *keys[TN_CTL_MAX_LIST], *vals[TN_CTL_MAX_LIST];
    uint32_t np = 0;
    for (; np < r->nparams && np < TN_CTL_MAX_LIST; np++) {
        keys[np] = strndup(r->pkeys[np].p, r->pkeys[np].len);
        vals[np] = strndup(r->pvals[np].p, r->pvals[np].len);
    }
    tn_cmd c = {.kind = TN_CMD_BACKFILL,
                .workflow = name,
                .dates = d,
                .ndates = n,
                .parallel = r->slots > 0 && r->slots <= UINT32_MAX ? (uint32_t)r->slots : 1,
                .param_keys = (const char *const *)keys,
                .param_values = (const char *const *)vals,
                .nparams = np,
                .actor = o->actor};
    if (tn_engine_submit_wait(s->engine, &c) != TN_OK) {
        fail(o, 1, "%s", c.msg[0] ? c.msg : tn_strerror(c.err));
    } else {
        char a[48], b[48];
        fmt_utc(d[0], a, sizeof(a));
        fmt_utc(d[n - 1], b, sizeof(b));
        tn_sb_printf(&o->text, "backfill %" PRIu64 " of %s: %u date%s, %s .. %s", c.out_id,
                     name, n, n == 1 ? "" : "s", a, b);
        json_t *dates = json_array();
        for (uint32_t i = 0; dates && i < n; i++) {
            fmt_utc(d[i], a, sizeof(a));
            tn_jo_push(dates, json_string(a));
        }
        reply(o, json_pack("{s:b,s:I,s:o,s:o}", "ok", 1, "id", (json_int_t)c.out_id, "workflow",
                           tn_jo_str(name), "dates", dates));
    }
    for (uint32_t i = 0; i < np; i++) {
        free(keys[i]);
        free(vals[i]);
    }
}

static void h_backfill(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    char name[TN_NAME_MAX + 1], how[400];
    tn_ctl_bf_req q;
    if (!req_name(r, name, sizeof(name), o) || !wf_exists(s, name, o))
        return;
    if (tn_ctl_bf_decode(r->bytes.p, r->bytes.len, &q) != TN_OK) {
        fail(o, 2, "malformed backfill request (a tern of another version?)");
        return;
    }
    int64_t *d = malloc(sizeof(*d) * TN_BACKFILL_MAX_DATES);
    uint32_t n = 0;
    if (!d) {
        fail(o, 1, "out of memory");
    } else if (!q.ndates && (!q.from.len || !q.to.len)) {
        fail(o, 2, "give --from DATE and --to DATE, or --dates D1,D2,...");
    } else if (bf_dates(s, name, &q, d, &n, how, sizeof(how), o)) {
        n = order_dates(d, n, q.desc);
        if (n == 0)
            fail(o, 2, "no dates to run: %s has none from %.*s to %.*s", how, (int)q.from.len,
                 q.from.p, (int)q.to.len, q.to.p);
        else
            bf_submit(s, r, name, d, n, o);
    }
    free(d);
    free(q.dates);
}

typedef struct bf_ls {
    tn_ctl_out *o;
    json_t *arr;
} bf_ls;

static int bf_ls_row(void *ctx, const tn_backfill_proj *p)
{
    bf_ls *l = ctx;
    char first[48] = "-", last[48] = "-", made[48];
    if (p->ndates) {
        fmt_utc(p->dates[0], first, sizeof(first));
        fmt_utc(p->dates[p->ndates - 1], last, sizeof(last));
    }
    fmt_utc(p->created_at, made, sizeof(made));
    tn_sb_printf(&l->o->text, "%-6" PRIu64 " %-24s %-8s %5u/%-5u %-20s %-20s %s\n", p->id,
                 p->workflow, bf_state(p->state), p->next, p->ndates, first, last, made);
    tn_jo_push(l->arr, json_pack("{s:I,s:o,s:s,s:I,s:I,s:I,s:o,s:o,s:o}", "id",
                                 (json_int_t)p->id, "workflow", tn_jo_str(p->workflow), "state",
                                 bf_state(p->state), "started", (json_int_t)p->next, "total",
                                 (json_int_t)p->ndates, "parallel", (json_int_t)p->parallel,
                                 "first", json_time(p->ndates ? p->dates[0] : 0), "last",
                                 json_time(p->ndates ? p->dates[p->ndates - 1] : 0),
                                 "created_at", json_time(p->created_at)));
    return 0;
}

static void h_bf_ls(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    (void)r;
    bf_ls l = {.o = o, .arr = json_array()};
    tn_sb_printf(&o->text, "%-6s %-24s %-8s %11s %-20s %-20s %s\n", "ID", "WORKFLOW", "STATE",
                 "STARTED", "FIRST", "LAST", "CREATED");
    tn_err e = tn_log_backfill_each(store(s), bf_ls_row, &l);
    if (e) {
        json_decref(l.arr);
        fail(o, 1, "cannot read the backfills: %s", tn_strerror(e));
        return;
    }
    reply(o, l.arr);
}

static bool bf_get(tn_ctlsrv *s, const tn_ctl_req *r, tn_backfill_proj *p, tn_ctl_out *o)
{
    tn_err e = r->id ? tn_log_backfill_get(store(s), r->id, p) : TN_ERR_NOENT;
    if (e == TN_ERR_NOENT)
        fail(o, 1, "no backfill %" PRIu64 "; see `tern backfill ls`", r->id);
    else if (e)
        fail(o, 1, "cannot read backfill %" PRIu64 ": %s", r->id, tn_strerror(e));
    return e == TN_OK;
}

/* One line and one JSON object per date: its instance (when started) and its state. */
static void bf_show_dates(tn_ctlsrv *s, const tn_backfill_proj *p, tn_ctl_out *o, json_t *j)
{
    tn_sb_printf(&o->text, "  %-5s %-22s %-9s %s\n", "#", "DATE", "INSTANCE", "STATE");
    json_t *arr = json_array();
    for (uint32_t i = 0; i < p->ndates; i++) {
        uint64_t wf = 0;
        tn_wf_proj w;
        const char *st = "waiting";
        if (i < p->next && tn_log_backfill_instance(store(s), p->id, i, &wf) == TN_OK)
            st = tn_log_wf_get(store(s), wf, &w) == TN_OK ?
                     tn_sm_state_name(&tn_sm_workflow, w.state) :
                     "-";
        char utc[48], inst[24] = "-";
        fmt_utc(p->dates[i], utc, sizeof(utc));
        if (wf)
            snprintf(inst, sizeof(inst), "%" PRIu64, wf);
        tn_sb_printf(&o->text, "  %-5u %-22s %-9s %s\n", i + 1, utc, inst, st);
        tn_jo_push(arr,
                   json_pack("{s:s,s:I,s:I,s:s}", "date", utc, "date_ns",
                             (json_int_t)p->dates[i], "instance", (json_int_t)wf, "state", st));
    }
    tn_jo_set(j, "dates", arr);
}

static void h_bf_show(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    tn_backfill_proj p;
    if (!bf_get(s, r, &p, o))
        return;
    tn_sb_printf(&o->text,
                 "backfill %" PRIu64 " of workflow %s: %s, %u of %u dates started "
                 "(%u at a time)\n",
                 p.id, p.workflow, bf_state(p.state), p.next, p.ndates, p.parallel);
    if (p.reason[0])
        tn_sb_printf(&o->text, "  reason: %s\n", p.reason);
    tn_kv *kv = NULL;
    if (p.params_len && tn_kv_decode(p.params, p.params_len, &kv) == TN_OK && tn_kv_len(kv)) {
        tn_sb_printf(&o->text, "  params: ");
        tn_kv_text(&o->text, kv);
        tn_sb_printf(&o->text, "\n");
    }
    json_t *j =
        json_pack("{s:I,s:o,s:s,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "id", (json_int_t)p.id,
                  "workflow", tn_jo_str(p.workflow), "state", bf_state(p.state), "started",
                  (json_int_t)p.next, "total", (json_int_t)p.ndates, "parallel",
                  (json_int_t)p.parallel, "params", tn_jo_kv(kv), "reason", tn_jo_str(p.reason),
                  "created_at", json_time(p.created_at), "updated_at", json_time(p.updated_at));
    tn_kv_free(kv);
    if (j)
        bf_show_dates(s, &p, o, j);
    reply(o, j);
    tn_backfill_proj_fini(&p);
}

static void bf_change(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o, tn_cmd_kind kind,
                      const char *done)
{
    tn_backfill_proj p;
    if (!bf_get(s, r, &p, o))
        return;
    unsigned st = p.state;
    tn_backfill_proj_fini(&p);
    if (tn_sm_is_final(&tn_sm_backfill, st)) { /* the engine forgot it: say what it is */
        fail(o, 1,
             "backfill %" PRIu64 " is %s: every date ran, there is nothing to %s (start "
             "another with `tern backfill WF ...`)",
             r->id, bf_state(st), kind == TN_CMD_BACKFILL_STOP ? "stop" : "resume");
        return;
    }
    tn_cmd c = {.kind = kind, .id = r->id};
    char what[200];
    snprintf(what, sizeof(what), "backfill %" PRIu64 " %s", r->id, done);
    if (!engine_cmd(s, &c, o, what))
        return;
    reply(o, json_pack("{s:b,s:I,s:o}", "ok", 1, "id", (json_int_t)r->id, "message",
                       tn_jo_str(c.msg)));
}

static void h_bf_stop(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    bf_change(s, r, o, TN_CMD_BACKFILL_STOP, "stopped");
}

static void h_bf_resume(tn_ctlsrv *s, const tn_ctl_req *r, tn_ctl_out *o)
{
    bf_change(s, r, o, TN_CMD_BACKFILL_RESUME, "resumed");
}

/* ---- the table ------------------------------------------------------------------- */

static const tn_ctl_op ops[] = {
    {"schedule-set", TN_ROLE_OPERATOR, false, h_sched_set},
    {"schedule-pause", TN_ROLE_OPERATOR, false, h_sched_pause},
    {"schedule-resume", TN_ROLE_OPERATOR, false, h_sched_resume},
    {"schedule-rm", TN_ROLE_OPERATOR, false, h_sched_rm},
    {"schedule-trigger", TN_ROLE_OPERATOR, false, h_sched_trigger},
    {"schedule-ls", TN_ROLE_VIEWER, true, h_sched_ls},
    {"schedule-show", TN_ROLE_VIEWER, true, h_sched_show},
    {"schedule-next", TN_ROLE_VIEWER, true, h_sched_next},
    {"backfill", TN_ROLE_OPERATOR, false, h_backfill},
    {"backfill-stop", TN_ROLE_OPERATOR, false, h_bf_stop},
    {"backfill-resume", TN_ROLE_OPERATOR, false, h_bf_resume},
    {"backfill-ls", TN_ROLE_VIEWER, true, h_bf_ls},
    {"backfill-show", TN_ROLE_VIEWER, true, h_bf_show},
};

const tn_ctl_op *tn_ctl_sched_op(tn_str cmd)
{
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (tn_str_eq(cmd, ops[i].cmd))
            return &ops[i];
    return NULL;
}

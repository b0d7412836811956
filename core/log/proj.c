/* Projections: folding events into instance state, and their canonical encodings. */
#include "proj.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "mp.h"
#include "util.h"
#include "sm_gen.h"
#include "store.h"

static void copy_name(char *dst, tn_str s)
{
    size_t n = s.len > TN_NAME_MAX ? TN_NAME_MAX : s.len;
    memcpy(dst, s.p, n);
    dst[n] = '\0';
}

void tn_proj_wf_apply(tn_wf_proj *p, const tn_event *ev)
{
    if (ev->from == TN_SM_NEW) {
        memset(p, 0, sizeof(*p));
        p->id = ev->wf;
        p->created_at = ev->at;
    }
    for (uint32_t i = 0; i < ev->nattrs; i++) {
        const tn_attr *a = &ev->attrs[i];
        if (a->type == TN_ATTR_STR && tn_str_eq(a->key, "name"))
            copy_name(p->name, a->s);
        else if (a->type == TN_ATTR_INT && tn_str_eq(a->key, "version"))
            p->version = (uint32_t)a->i;
        else if (a->type == TN_ATTR_INT && tn_str_eq(a->key, "run"))
            p->run = (uint32_t)a->i;
        else if (a->type == TN_ATTR_INT && tn_str_eq(a->key, "parent_wf"))
            p->parent_wf = (uint64_t)a->i;
        else if (a->type == TN_ATTR_INT && tn_str_eq(a->key, "parent_task"))
            p->parent_task = (uint64_t)a->i;
    }
    if (ev->to == TN_WF_S_RUNNING_EXECUTION && ev->from != TN_WF_S_RUNNING_EXECUTION &&
        ev->from != TN_WF_S_FAILOVER)
        p->started_at = ev->at;
    if (tn_sm_workflow.final[ev->to])
        p->ended_at = ev->at;
    else if (tn_sm_workflow.final[ev->from])
        p->ended_at = 0;
    p->state = ev->to;
    p->updated_at = ev->at;
    p->last_seq = ev->seq;
    p->nevents++;
}

/* A task's reason, from the event that explains its state: a failure's reason (or its
 * exit status, or its child's end), who killed it and why, a timeout, a failover, a
 * forced success. A new attempt handed to a worker (or a logic task that starts), a
 * success and a recover clear it; a retry keeps the failure it retries until then. Deterministic in the event alone: replay rebuilds it. */
static void fold_reason(tn_task_proj *p, const tn_event *ev)
{
    const tn_attr *r = tn_event_attr(ev, "reason");
    tn_str why = r && r->type == TN_ATTR_STR ? r->s : (tn_str){"", 0};
    const tn_attr *cs = tn_event_attr(ev, "child_state");
    int64_t v;
    char *o = p->reason;
    size_t cap = sizeof(p->reason);
    int a = (int)ev->actor.len;
    switch (ev->event) {
    case TN_TASK_E_RUNNING: /* a logic task starts; a worker's ACCEPTED keeps a kill's */
        if (ev->from != TN_TASK_S_DISPATCH)
            o[0] = 0;
        break;
    case TN_TASK_E_DISPATCHED: /* a worker took a new attempt */
    case TN_TASK_E_SUCCEEDED:
    case TN_TASK_E_RECOVER: o[0] = 0; break;
    case TN_TASK_E_FAILED:
        if (why.len)
            snprintf(o, cap, "%.*s", (int)why.len, why.p);
        else if (cs && cs->type == TN_ATTR_STR)
            snprintf(o, cap, "its sub-workflow instance %" PRId64 " ended %.*s",
                     tn_event_int(ev, "child", &v) ? v : 0, (int)cs->s.len, cs->s.p);
        else if (tn_event_int(ev, "exit", &v))
            snprintf(o, cap, "exit status %" PRId64, v);
        else
            snprintf(o, cap, "failed");
        break;
    case TN_TASK_E_KILL:
        snprintf(o, cap, "killed by %.*s%s%.*s", a, ev->actor.p, why.len ? ": " : "",
                 (int)why.len, why.p);
        break;
    case TN_TASK_E_KILLED: /* the kill's answer keeps who asked for it */
        if (o[0])
            break;
        if (cs && cs->type == TN_ATTR_STR)
            snprintf(o, cap, "its sub-workflow instance %" PRId64 " ended %.*s",
                     tn_event_int(ev, "child", &v) ? v : 0, (int)cs->s.len, cs->s.p);
        else
            snprintf(o, cap, "killed%s%.*s", why.len ? ": " : "", (int)why.len, why.p);
        break;
    case TN_TASK_E_TIMEOUT: {
        const tn_attr *st = tn_event_attr(ev, "strategy");
        char d[32];
        tn_fmt_duration(tn_event_int(ev, "timeout_ms", &v) ? v * 1000000 : 0, d, sizeof(d));
        snprintf(o, cap, "timed out after %s (timeout_strategy %.*s)", d,
                 st && st->type == TN_ATTR_STR ? (int)st->s.len : 0,
                 st && st->type == TN_ATTR_STR ? st->s.p : "");
        break;
    }
    case TN_TASK_E_FAILOVER:
        snprintf(o, cap, "failed over%s%.*s", why.len ? ": " : "", (int)why.len, why.p);
        break;
    case TN_TASK_E_FORCE_SUCCESS: snprintf(o, cap, "forced by %.*s", a, ev->actor.p); break;
    default: break;
    }
}

void tn_proj_task_apply(tn_task_proj *p, const tn_event *ev)
{
    if (ev->from == TN_SM_NEW) {
        memset(p, 0, sizeof(*p));
        p->id = ev->task;
        p->wf = ev->wf;
        p->created_at = ev->at;
        p->pid = -1;
        p->exit_code = -1;
    }
    for (uint32_t i = 0; i < ev->nattrs; i++) {
        const tn_attr *a = &ev->attrs[i];
        if (a->type == TN_ATTR_STR) {
            if (tn_str_eq(a->key, "name"))
                copy_name(p->name, a->s);
            else if (tn_str_eq(a->key, "worker"))
                copy_name(p->worker, a->s);
        } else if (a->type == TN_ATTR_INT) {
            if (tn_str_eq(a->key, "attempt"))
                p->attempt = (uint32_t)a->i;
            else if (tn_str_eq(a->key, "pid"))
                p->pid = a->i;
            else if (tn_str_eq(a->key, "exit"))
                p->exit_code = a->i;
        }
    }
    fold_reason(p, ev);
    if (ev->to == TN_TASK_S_RUNNING_EXECUTION && ev->from != TN_TASK_S_RUNNING_EXECUTION)
        p->started_at = ev->at;
    if (tn_sm_task.final[ev->to])
        p->ended_at = ev->at;
    else if (tn_sm_task.final[ev->from])
        p->ended_at = 0;
    p->state = ev->to;
    p->updated_at = ev->at;
    p->last_seq = ev->seq;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

tn_err tn_proj_wf_encode(const tn_wf_proj *p, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 14);
    msgpack_pack_uint8(&pk, TN_PROJ_VERSION);
    msgpack_pack_uint64(&pk, p->id);
    msgpack_pack_uint8(&pk, p->state);
    msgpack_pack_uint32(&pk, p->version);
    msgpack_pack_uint32(&pk, p->run);
    msgpack_pack_uint64(&pk, p->parent_wf);
    msgpack_pack_uint64(&pk, p->parent_task);
    msgpack_pack_int64(&pk, p->created_at);
    msgpack_pack_int64(&pk, p->updated_at);
    msgpack_pack_int64(&pk, p->started_at);
    msgpack_pack_int64(&pk, p->ended_at);
    msgpack_pack_uint64(&pk, p->last_seq);
    msgpack_pack_uint32(&pk, p->nevents);
    pack_cstr(&pk, p->name);
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

static tn_err check_header(tn_mp *r, uint32_t want)
{
    uint32_t n;
    uint64_t v;
    if (!tn_mp_array(r, 64, &n) || !tn_mp_u64(r, &v))
        return r->err;
    if (v != TN_PROJ_VERSION)
        return TN_ERR_VERSION;
    return n == want ? TN_OK : TN_ERR_CORRUPT;
}

tn_err tn_proj_wf_decode(const void *buf, size_t len, tn_wf_proj *p)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    tn_err e = check_header(&r, 14);
    if (e)
        return e;
    uint64_t state = 0, version = 0, run = 0, nev = 0;
    tn_mp_u64(&r, &p->id);
    tn_mp_uint_max(&r, 254, &state);
    tn_mp_uint_max(&r, UINT32_MAX, &version);
    tn_mp_uint_max(&r, UINT32_MAX, &run);
    tn_mp_u64(&r, &p->parent_wf);
    tn_mp_u64(&r, &p->parent_task);
    tn_mp_i64(&r, &p->created_at);
    tn_mp_i64(&r, &p->updated_at);
    tn_mp_i64(&r, &p->started_at);
    tn_mp_i64(&r, &p->ended_at);
    tn_mp_u64(&r, &p->last_seq);
    tn_mp_uint_max(&r, UINT32_MAX, &nev);
    tn_mp_str_copy(&r, p->name, sizeof(p->name));
    if (!tn_mp_done(&r))
        return r.err;
    p->state = (uint8_t)state;
    p->version = (uint32_t)version;
    p->run = (uint32_t)run;
    p->nevents = (uint32_t)nev;
    return TN_OK;
}

tn_err tn_proj_task_encode(const tn_task_proj *p, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 15);
    msgpack_pack_uint8(&pk, TN_PROJ_VERSION);
    msgpack_pack_uint64(&pk, p->id);
    msgpack_pack_uint64(&pk, p->wf);
    msgpack_pack_uint8(&pk, p->state);
    msgpack_pack_uint32(&pk, p->attempt);
    msgpack_pack_int64(&pk, p->pid);
    msgpack_pack_int64(&pk, p->exit_code);
    msgpack_pack_int64(&pk, p->created_at);
    msgpack_pack_int64(&pk, p->updated_at);
    msgpack_pack_int64(&pk, p->started_at);
    msgpack_pack_int64(&pk, p->ended_at);
    msgpack_pack_uint64(&pk, p->last_seq);
    pack_cstr(&pk, p->name);
    pack_cstr(&pk, p->worker);
    pack_cstr(&pk, p->reason);
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

tn_err tn_proj_task_decode(const void *buf, size_t len, tn_task_proj *p)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    /* 15 fields; a store written before the reason was kept has 14 (no reason) */
    uint32_t n;
    uint64_t v;
    if (!tn_mp_array(&r, 64, &n) || !tn_mp_u64(&r, &v))
        return r.err;
    if (v != TN_PROJ_VERSION)
        return TN_ERR_VERSION;
    if (n != 14 && n != 15)
        return TN_ERR_CORRUPT;
    uint64_t state = 0, attempt = 0;
    tn_mp_u64(&r, &p->id);
    tn_mp_u64(&r, &p->wf);
    tn_mp_uint_max(&r, 254, &state);
    tn_mp_uint_max(&r, UINT32_MAX, &attempt);
    tn_mp_i64(&r, &p->pid);
    tn_mp_i64(&r, &p->exit_code);
    tn_mp_i64(&r, &p->created_at);
    tn_mp_i64(&r, &p->updated_at);
    tn_mp_i64(&r, &p->started_at);
    tn_mp_i64(&r, &p->ended_at);
    tn_mp_u64(&r, &p->last_seq);
    tn_mp_str_copy(&r, p->name, sizeof(p->name));
    tn_mp_str_copy(&r, p->worker, sizeof(p->worker));
    p->reason[0] = '\0';
    if (n == 15)
        tn_mp_str_copy(&r, p->reason, sizeof(p->reason));
    if (!tn_mp_done(&r))
        return r.err;
    p->state = (uint8_t)state;
    p->attempt = (uint32_t)attempt;
    return TN_OK;
}

size_t tn_proj_def_key(const char *name, uint32_t version, uint8_t *key)
{
    size_t n = strnlen(name, TN_NAME_MAX);
    memcpy(key, name, n);
    key[n] = 0;
    key[n + 1] = (uint8_t)(version >> 24);
    key[n + 2] = (uint8_t)(version >> 16);
    key[n + 3] = (uint8_t)(version >> 8);
    key[n + 4] = (uint8_t)version;
    return n + 5;
}

static bool attr_str(const tn_event *ev, const char *key, tn_str *out, uint8_t type)
{
    const tn_attr *a = tn_event_attr(ev, key);
    if (!a || a->type != type)
        return false;
    *out = a->s;
    return true;
}

tn_err tn_proj_system_apply(const tn_event *ev, tn_proj_put_fn put, void *ctx)
{
    tn_str name, val;
    int64_t n;
    char key[TN_NAME_MAX + 8];
    switch (ev->event) {
    case TN_SYS_E_INIT:
        if (!attr_str(ev, "store_id", &val, TN_ATTR_STR))
            return TN_ERR_CORRUPT;
        return put(ctx, TN_DB_META, "store_id", 8, val.p, val.len);
    case TN_SYS_E_DEF_APPLIED: {
        if (!attr_str(ev, "name", &name, TN_ATTR_STR) || !tn_event_int(ev, "version", &n) ||
            !attr_str(ev, "def", &val, TN_ATTR_BIN) || name.len == 0 ||
            name.len > TN_NAME_MAX || n <= 0 || n > UINT32_MAX)
            return TN_ERR_CORRUPT;
        char nm[TN_NAME_MAX + 1];
        copy_name(nm, name);
        uint8_t k[TN_NAME_MAX + 5];
        size_t kl = tn_proj_def_key(nm, (uint32_t)n, k);
        return put(ctx, TN_DB_DEFS, k, kl, val.p, val.len);
    }
    case TN_SYS_E_TASKGROUP_SET: {
        if (!attr_str(ev, "name", &name, TN_ATTR_STR) || !tn_event_int(ev, "slots", &n) ||
            name.len == 0 || name.len > TN_NAME_MAX || n < 0)
            return TN_ERR_CORRUPT;
        uint8_t v[8];
        tn_put_be64(v, (uint64_t)n);
        int kl = snprintf(key, sizeof(key), "tg/%.*s", (int)name.len, name.p);
        return put(ctx, TN_DB_META, key, (size_t)kl, v, 8);
    }
    case TN_SYS_E_ENV_SET: {
        if (!attr_str(ev, "name", &name, TN_ATTR_STR) ||
            !attr_str(ev, "text", &val, TN_ATTR_STR) || name.len == 0 || name.len > TN_NAME_MAX)
            return TN_ERR_CORRUPT;
        int kl = snprintf(key, sizeof(key), "env/%.*s", (int)name.len, name.p);
        return put(ctx, TN_DB_META, key, (size_t)kl, val.p, val.len);
    }
    default: return TN_OK;
    }
}

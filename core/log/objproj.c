/* Schedule and backfill projections: the fold of their events, and their encodings. */
#include "objproj.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "mp.h"
#include "sm_gen.h"
#include "util.h"

#define OBJ_PROJ_VERSION 1
#define PARAMS_MAX       (8u << 20) /* bytes of a params map */

static bool get_str(const tn_event *ev, const char *key, tn_str *out, uint8_t type)
{
    const tn_attr *a = tn_event_attr(ev, key);
    if (!a || a->type != type)
        return false;
    *out = a->s;
    return true;
}

/* Copy attr `key` (a str) into dst; absent = "", too long = false. */
static bool copy_attr(const tn_event *ev, const char *key, char *dst, size_t cap)
{
    tn_str s;
    if (!get_str(ev, key, &s, TN_ATTR_STR)) {
        dst[0] = 0;
        return tn_event_attr(ev, key) == NULL;
    }
    if (s.len >= cap)
        return false;
    memcpy(dst, s.p, s.len);
    dst[s.len] = 0;
    return true;
}

static int64_t attr_int(const tn_event *ev, const char *key, int64_t dflt)
{
    int64_t v;
    return tn_event_int(ev, key, &v) ? v : dflt;
}

static bool copy_bin(const tn_event *ev, const char *key, uint8_t **dst, uint32_t *len)
{
    tn_str s;
    *dst = NULL;
    *len = 0;
    if (!get_str(ev, key, &s, TN_ATTR_BIN) || s.len == 0)
        return true;
    if (s.len > PARAMS_MAX || !(*dst = malloc(s.len)))
        return false;
    memcpy(*dst, s.p, s.len);
    *len = (uint32_t)s.len;
    return true;
}

static void set_reason(char *dst, const tn_event *ev)
{
    tn_str s;
    if (!get_str(ev, "reason", &s, TN_ATTR_STR)) {
        dst[0] = 0;
        return;
    }
    size_t n = s.len > TN_REASON_MAX ? TN_REASON_MAX : s.len;
    memcpy(dst, s.p, n);
    dst[n] = 0;
}

/* SET: the whole spec into a copy of *p, so a bad event leaves *p as it was. */
static tn_err sched_set(tn_sched_proj *p, const tn_event *ev)
{
    tn_sched_proj q = *p;
    uint8_t *params;
    uint32_t plen;
    if (!copy_attr(ev, "cron", q.cron, sizeof(q.cron)) || !q.cron[0] ||
        !copy_attr(ev, "tz", q.tz, sizeof(q.tz)) ||
        !copy_attr(ev, "overlap", q.overlap, sizeof(q.overlap)) ||
        !copy_attr(ev, "priority", q.priority, sizeof(q.priority)) ||
        !copy_attr(ev, "failure_strategy", q.failure_strategy, sizeof(q.failure_strategy)) ||
        !copy_attr(ev, "worker_group", q.worker_group, sizeof(q.worker_group)))
        return TN_ERR_CORRUPT;
    if (!copy_bin(ev, "params", &params, &plen))
        return TN_ERR_NOMEM;
    q.start_ns = attr_int(ev, "start", 0);
    q.end_ns = attr_int(ev, "end", 0);
    q.catchup_ms = attr_int(ev, "catchup", 0);
    q.pause_on_failure = attr_int(ev, "pause_on_failure", 0) != 0;
    if (ev->from == TN_SM_NEW || ev->from == TN_SCHED_S_REMOVED) {
        /* a new schedule fires after the moment it was set */
        q.created_at = ev->at;
        q.last_nominal = attr_int(ev, "after", ev->at);
        q.nbuffered = 0;
        q.reason[0] = 0;
    }
    free(p->params);
    q.params = params;
    q.params_len = plen;
    *p = q;
    return TN_OK;
}

static tn_err sched_decide(tn_sched_proj *p, const tn_event *ev)
{
    int64_t nominal = attr_int(ev, "nominal", 0);
    switch (ev->event) {
    case TN_SCHED_E_FIRE:
        if (!nominal || !tn_event_attr(ev, "instance"))
            return TN_ERR_CORRUPT;
        if (attr_int(ev, "buffered", 0)) {
            uint32_t i = 0;
            while (i < p->nbuffered && p->buffered[i] != nominal)
                i++;
            if (i == p->nbuffered)
                return TN_ERR_ILLEGAL; /* not held back, or fired already */
            memmove(&p->buffered[i], &p->buffered[i + 1],
                    (p->nbuffered - i - 1) * sizeof(p->buffered[0]));
            p->nbuffered--;
        } else if (!attr_int(ev, "manual", 0)) {
            if (nominal <= p->last_nominal)
                return TN_ERR_ILLEGAL; /* decided already */
            p->last_nominal = nominal;
        }
        p->fires++;
        if (nominal > p->last_fire)
            p->last_fire = nominal;
        p->last_instance = (uint64_t)attr_int(ev, "instance", 0);
        return TN_OK;
    case TN_SCHED_E_SKIP: {
        int64_t through = attr_int(ev, "through", 0);
        if (through <= p->last_nominal)
            return TN_ERR_ILLEGAL;
        p->last_nominal = through;
        p->skips += (uint64_t)attr_int(ev, "count", 1);
        set_reason(p->reason, ev);
        return TN_OK;
    }
    default: /* BUFFER */
        if (!nominal || nominal <= p->last_nominal)
            return TN_ERR_ILLEGAL;
        if (p->nbuffered == TN_SCHED_PROJ_BUFFER_MAX)
            return TN_ERR_FULL;
        p->buffered[p->nbuffered++] = nominal;
        p->last_nominal = nominal;
        p->buffers++;
        return TN_OK;
    }
}

tn_err tn_sched_proj_apply(tn_sched_proj *p, const tn_event *ev)
{
    tn_str name;
    if (!get_str(ev, "schedule", &name, TN_ATTR_STR) || name.len == 0 || name.len > TN_NAME_MAX)
        return TN_ERR_CORRUPT;
    tn_err e = TN_OK;
    switch (ev->event) {
    case TN_SCHED_E_SET: e = sched_set(p, ev); break;
    case TN_SCHED_E_RESUME: {
        int64_t through = attr_int(ev, "through", ev->at);
        if (through > p->last_nominal)
            p->last_nominal = through;
        p->reason[0] = 0;
        break;
    }
    case TN_SCHED_E_PAUSE:
    case TN_SCHED_E_REMOVE: set_reason(p->reason, ev); break;
    default: e = sched_decide(p, ev); break;
    }
    if (e)
        return e;
    memcpy(p->name, name.p, name.len);
    p->name[name.len] = 0;
    p->state = ev->to;
    p->updated_at = ev->at;
    p->last_seq = ev->seq;
    return TN_OK;
}

tn_err tn_backfill_proj_apply(tn_backfill_proj *p, const tn_event *ev)
{
    int64_t id = attr_int(ev, "backfill", 0);
    if (id <= 0)
        return TN_ERR_CORRUPT;
    switch (ev->event) {
    case TN_BF_E_CREATE: {
        tn_str wf, dates;
        if (!get_str(ev, "workflow", &wf, TN_ATTR_STR) || wf.len == 0 || wf.len > TN_NAME_MAX ||
            !get_str(ev, "dates", &dates, TN_ATTR_BIN) || dates.len == 0 || dates.len % 8 ||
            dates.len / 8 > TN_BACKFILL_MAX_DATES)
            return TN_ERR_CORRUPT;
        int64_t *d = malloc(dates.len);
        uint8_t *params;
        uint32_t plen;
        if (!d || !copy_bin(ev, "params", &params, &plen)) {
            free(d);
            return TN_ERR_NOMEM;
        }
        for (size_t i = 0; i < dates.len / 8; i++)
            d[i] = (int64_t)tn_get_be64((const uint8_t *)dates.p + 8 * i);
        memcpy(p->workflow, wf.p, wf.len);
        p->workflow[wf.len] = 0;
        p->dates = d;
        p->ndates = (uint32_t)(dates.len / 8);
        p->params = params;
        p->params_len = plen;
        int64_t par = attr_int(ev, "parallel", 1);
        p->parallel = par < 1 ? 1 : par > 1000 ? 1000 : (uint32_t)par;
        p->created_at = ev->at;
        p->id = (uint64_t)id;
        break;
    }
    case TN_BF_E_START_DATE:
        if (attr_int(ev, "index", -1) != (int64_t)p->next || p->next >= p->ndates)
            return TN_ERR_ILLEGAL; /* dates start once each, in order */
        p->next++;
        break;
    default: set_reason(p->reason, ev); break;
    }
    p->state = ev->to;
    p->updated_at = ev->at;
    p->last_seq = ev->seq;
    return TN_OK;
}

void tn_sched_proj_fini(tn_sched_proj *p)
{
    free(p->params);
    p->params = NULL;
    p->params_len = 0;
}

void tn_backfill_proj_fini(tn_backfill_proj *p)
{
    free(p->dates);
    free(p->params);
    p->dates = NULL;
    p->params = NULL;
    p->ndates = p->params_len = 0;
}

/* ---- encodings ---------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_bin(msgpack_packer *pk, const void *b, uint32_t n)
{
    msgpack_pack_bin(pk, n);
    if (n)
        msgpack_pack_bin_body(pk, b, n);
}

#define SCHED_FIELDS 25

tn_err tn_sched_proj_encode(const tn_sched_proj *p, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, SCHED_FIELDS);
    msgpack_pack_uint8(&pk, OBJ_PROJ_VERSION);
    pack_str(&pk, p->name);
    msgpack_pack_uint8(&pk, p->state);
    pack_str(&pk, p->cron);
    pack_str(&pk, p->tz);
    msgpack_pack_int64(&pk, p->start_ns);
    msgpack_pack_int64(&pk, p->end_ns);
    pack_str(&pk, p->overlap);
    msgpack_pack_int64(&pk, p->catchup_ms);
    msgpack_pack_uint8(&pk, p->pause_on_failure);
    pack_str(&pk, p->priority);
    pack_str(&pk, p->failure_strategy);
    pack_str(&pk, p->worker_group);
    pack_bin(&pk, p->params, p->params_len);
    msgpack_pack_int64(&pk, p->created_at);
    msgpack_pack_int64(&pk, p->updated_at);
    msgpack_pack_int64(&pk, p->last_nominal);
    msgpack_pack_int64(&pk, p->last_fire);
    msgpack_pack_uint64(&pk, p->last_instance);
    msgpack_pack_uint64(&pk, p->fires);
    msgpack_pack_uint64(&pk, p->skips);
    msgpack_pack_uint64(&pk, p->buffers);
    msgpack_pack_array(&pk, p->nbuffered);
    for (uint32_t i = 0; i < p->nbuffered; i++)
        msgpack_pack_int64(&pk, p->buffered[i]);
    pack_str(&pk, p->reason);
    msgpack_pack_uint64(&pk, p->last_seq);
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

static bool rd_bin(tn_mp *r, uint8_t **dst, uint32_t *len)
{
    const char *s;
    uint32_t n;
    if (!tn_mp_bytes(r, true, PARAMS_MAX, &s, &n))
        return false;
    *dst = NULL;
    *len = n;
    if (n && !(*dst = malloc(n)))
        return tn_mp_fail(r, TN_ERR_NOMEM);
    if (n)
        memcpy(*dst, s, n);
    return true;
}

static tn_err header(tn_mp *r, uint32_t want)
{
    uint32_t n;
    uint64_t v;
    if (!tn_mp_array(r, 64, &n) || !tn_mp_u64(r, &v))
        return r->err;
    if (v != OBJ_PROJ_VERSION)
        return TN_ERR_VERSION;
    return n == want ? TN_OK : TN_ERR_CORRUPT;
}

tn_err tn_sched_proj_decode(const void *buf, size_t len, tn_sched_proj *p)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    memset(p, 0, sizeof(*p));
    tn_err e = header(&r, SCHED_FIELDS);
    if (e)
        return e;
    uint64_t state = 0, pof = 0;
    uint32_t nb = 0;
    tn_mp_str_copy(&r, p->name, sizeof(p->name));
    tn_mp_uint_max(&r, 254, &state);
    tn_mp_str_copy(&r, p->cron, sizeof(p->cron));
    tn_mp_str_copy(&r, p->tz, sizeof(p->tz));
    tn_mp_i64(&r, &p->start_ns);
    tn_mp_i64(&r, &p->end_ns);
    tn_mp_str_copy(&r, p->overlap, sizeof(p->overlap));
    tn_mp_i64(&r, &p->catchup_ms);
    tn_mp_uint_max(&r, 1, &pof);
    tn_mp_str_copy(&r, p->priority, sizeof(p->priority));
    tn_mp_str_copy(&r, p->failure_strategy, sizeof(p->failure_strategy));
    tn_mp_str_copy(&r, p->worker_group, sizeof(p->worker_group));
    rd_bin(&r, &p->params, &p->params_len);
    tn_mp_i64(&r, &p->created_at);
    tn_mp_i64(&r, &p->updated_at);
    tn_mp_i64(&r, &p->last_nominal);
    tn_mp_i64(&r, &p->last_fire);
    tn_mp_u64(&r, &p->last_instance);
    tn_mp_u64(&r, &p->fires);
    tn_mp_u64(&r, &p->skips);
    tn_mp_u64(&r, &p->buffers);
    if (tn_mp_array(&r, TN_SCHED_PROJ_BUFFER_MAX, &nb))
        for (uint32_t i = 0; i < nb; i++)
            tn_mp_i64(&r, &p->buffered[i]);
    tn_mp_str_copy(&r, p->reason, sizeof(p->reason));
    tn_mp_u64(&r, &p->last_seq);
    if (!tn_mp_done(&r)) {
        tn_sched_proj_fini(p);
        return r.err ? r.err : TN_ERR_CORRUPT;
    }
    p->state = (uint8_t)state;
    p->pause_on_failure = pof != 0;
    p->nbuffered = nb;
    return TN_OK;
}

#define BF_FIELDS 13

tn_err tn_backfill_proj_encode(const tn_backfill_proj *p, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, BF_FIELDS);
    msgpack_pack_uint8(&pk, OBJ_PROJ_VERSION);
    msgpack_pack_uint64(&pk, p->id);
    msgpack_pack_uint8(&pk, p->state);
    pack_str(&pk, p->workflow);
    msgpack_pack_array(&pk, p->ndates);
    for (uint32_t i = 0; i < p->ndates; i++)
        msgpack_pack_int64(&pk, p->dates[i]);
    msgpack_pack_uint32(&pk, p->parallel);
    msgpack_pack_uint32(&pk, p->next);
    pack_bin(&pk, p->params, p->params_len);
    msgpack_pack_int64(&pk, p->created_at);
    msgpack_pack_int64(&pk, p->updated_at);
    pack_str(&pk, p->reason);
    msgpack_pack_uint64(&pk, p->last_seq);
    msgpack_pack_nil(&pk); /* room for the dependent-mode list */
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

tn_err tn_backfill_proj_decode(const void *buf, size_t len, tn_backfill_proj *p)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    memset(p, 0, sizeof(*p));
    tn_err e = header(&r, BF_FIELDS);
    if (e)
        return e;
    uint64_t state = 0, par = 0, next = 0;
    uint32_t nd = 0;
    tn_mp_u64(&r, &p->id);
    tn_mp_uint_max(&r, 254, &state);
    tn_mp_str_copy(&r, p->workflow, sizeof(p->workflow));
    if (tn_mp_array(&r, TN_BACKFILL_MAX_DATES, &nd) && nd) {
        if (!(p->dates = malloc(nd * sizeof(int64_t))))
            return TN_ERR_NOMEM;
        for (uint32_t i = 0; i < nd; i++)
            tn_mp_i64(&r, &p->dates[i]);
    }
    p->ndates = nd;
    tn_mp_uint_max(&r, 1000, &par);
    tn_mp_uint_max(&r, nd, &next);
    rd_bin(&r, &p->params, &p->params_len);
    tn_mp_i64(&r, &p->created_at);
    tn_mp_i64(&r, &p->updated_at);
    tn_mp_str_copy(&r, p->reason, sizeof(p->reason));
    tn_mp_u64(&r, &p->last_seq);
    if (tn_mp_need(&r, 1) && *r.p == 0xc0)
        r.p++;
    else
        tn_mp_fail(&r, TN_ERR_TYPE);
    if (!tn_mp_done(&r)) {
        tn_backfill_proj_fini(p);
        return r.err ? r.err : TN_ERR_CORRUPT;
    }
    p->state = (uint8_t)state;
    p->parallel = (uint32_t)par;
    p->next = (uint32_t)next;
    return TN_OK;
}

/* ---- alerts -------------------------------------------------------------------------- */

static void copy_trunc(char *dst, size_t cap, const tn_event *ev, const char *key)
{
    tn_str v;
    dst[0] = 0;
    if (!get_str(ev, key, &v, TN_ATTR_STR))
        return;
    size_t n = v.len < cap - 1 ? v.len : cap - 1;
    memcpy(dst, v.p, n);
    dst[n] = 0;
}

tn_err tn_alert_proj_apply(tn_alert_proj *p, const tn_event *ev)
{
    int64_t id = attr_int(ev, "alert", 0);
    if (id <= 0)
        return TN_ERR_CORRUPT;
    switch (ev->event) {
    case TN_ALERT_E_RAISE: {
        tn_str target;
        if (!get_str(ev, "target", &target, TN_ATTR_STR) || target.len == 0 ||
            target.len > 8192 || !tn_event_attr(ev, "workflow"))
            return TN_ERR_CORRUPT;
        char *t = malloc(target.len + 1);
        if (!t)
            return TN_ERR_NOMEM;
        memcpy(t, target.p, target.len);
        t[target.len] = 0;
        p->id = (uint64_t)id;
        p->target = t;
        copy_trunc(p->workflow, sizeof(p->workflow), ev, "workflow");
        copy_trunc(p->on, sizeof(p->on), ev, "on");
        copy_trunc(p->kind, sizeof(p->kind), ev, "kind");
        copy_trunc(p->what, sizeof(p->what), ev, "state");
        copy_trunc(p->reason, sizeof(p->reason), ev, "reason");
        p->wf = (uint64_t)attr_int(ev, "instance", 0);
        p->task = (uint64_t)attr_int(ev, "task", 0);
        p->raised_at = ev->at;
        break;
    }
    case TN_ALERT_E_ATTEMPT:
    case TN_ALERT_E_DELIVER:
        p->attempts = (uint32_t)attr_int(ev, "attempt", p->attempts + 1);
        p->retry_at = attr_int(ev, "retry_at", 0);
        copy_trunc(p->outcome, sizeof(p->outcome), ev, "outcome");
        break;
    default: copy_trunc(p->outcome, sizeof(p->outcome), ev, "reason"); break;
    }
    p->state = ev->to;
    p->updated_at = ev->at;
    p->last_seq = ev->seq;
    return TN_OK;
}

void tn_alert_proj_fini(tn_alert_proj *p)
{
    free(p->target);
    p->target = NULL;
}

#define ALERT_FIELDS 18

tn_err tn_alert_proj_encode(const tn_alert_proj *p, tn_buf *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, ALERT_FIELDS);
    msgpack_pack_uint8(&pk, OBJ_PROJ_VERSION);
    msgpack_pack_uint64(&pk, p->id);
    msgpack_pack_uint8(&pk, p->state);
    pack_str(&pk, p->workflow);
    msgpack_pack_uint64(&pk, p->wf);
    msgpack_pack_uint64(&pk, p->task);
    pack_str(&pk, p->on);
    pack_str(&pk, p->kind);
    pack_str(&pk, p->target ? p->target : "");
    pack_str(&pk, p->what);
    pack_str(&pk, p->reason);
    msgpack_pack_uint32(&pk, p->attempts);
    msgpack_pack_int64(&pk, p->raised_at);
    msgpack_pack_int64(&pk, p->updated_at);
    msgpack_pack_int64(&pk, p->retry_at);
    pack_str(&pk, p->outcome);
    msgpack_pack_uint64(&pk, p->last_seq);
    msgpack_pack_nil(&pk);
    return out->data ? TN_OK : TN_ERR_NOMEM;
}

tn_err tn_alert_proj_decode(const void *buf, size_t len, tn_alert_proj *p)
{
    tn_mp r;
    tn_mp_init(&r, buf, len);
    memset(p, 0, sizeof(*p));
    tn_err e = header(&r, ALERT_FIELDS);
    if (e)
        return e;
    uint64_t state = 0, attempts = 0;
    const char *t;
    uint32_t tl = 0;
    tn_mp_u64(&r, &p->id);
    tn_mp_uint_max(&r, 254, &state);
    tn_mp_str_copy(&r, p->workflow, sizeof(p->workflow));
    tn_mp_u64(&r, &p->wf);
    tn_mp_u64(&r, &p->task);
    tn_mp_str_copy(&r, p->on, sizeof(p->on));
    tn_mp_str_copy(&r, p->kind, sizeof(p->kind));
    if (tn_mp_str(&r, 8192, &t, &tl) && (p->target = malloc(tl + 1))) {
        memcpy(p->target, t, tl);
        p->target[tl] = 0;
    }
    tn_mp_str_copy(&r, p->what, sizeof(p->what));
    tn_mp_str_copy(&r, p->reason, sizeof(p->reason));
    tn_mp_uint_max(&r, UINT32_MAX, &attempts);
    tn_mp_i64(&r, &p->raised_at);
    tn_mp_i64(&r, &p->updated_at);
    tn_mp_i64(&r, &p->retry_at);
    tn_mp_str_copy(&r, p->outcome, sizeof(p->outcome));
    tn_mp_u64(&r, &p->last_seq);
    if (tn_mp_need(&r, 1) && *r.p == 0xc0)
        r.p++;
    else
        tn_mp_fail(&r, TN_ERR_TYPE);
    if (!tn_mp_done(&r) || !p->target) {
        tn_alert_proj_fini(p);
        return r.err ? r.err : TN_ERR_CORRUPT;
    }
    p->state = (uint8_t)state;
    p->attempts = (uint32_t)attempts;
    return TN_OK;
}

/* Reads of committed schedules, fires and backfills (declared in logread.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logread.h"
#include "objlog.h"
#include "sm_gen.h"
#include "util.h"

static tn_err read_obj(tn_store *s, const uint8_t *k, size_t kl, bool sched, void *out)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    tn_val v;
    if (!(e = tn_store_get(t, TN_DB_META, k, kl, &v)))
        e = sched ? tn_sched_proj_decode(v.data, v.len, out) :
                    tn_backfill_proj_decode(v.data, v.len, out);
    tn_store_read_end(t);
    return e;
}

tn_err tn_log_sched_get(tn_store *s, const char *name, tn_sched_proj *out)
{
    uint8_t k[TN_OBJ_KEY_MAX];
    if (!name || !*name || strlen(name) > TN_NAME_MAX)
        return TN_ERR_NOENT;
    return read_obj(s, k, tn_obj_sched_key(name, k), true, out);
}

tn_err tn_log_backfill_get(tn_store *s, uint64_t id, tn_backfill_proj *out)
{
    uint8_t k[TN_OBJ_KEY_MAX];
    return read_obj(s, k, tn_obj_bf_key(id, k), false, out);
}

/* Walk meta keys starting with `prefix` (plen bytes) from `from` (flen bytes); fn gets
 * each key and value; a non-zero return stops. */
typedef int (*walk_fn)(void *ctx, const tn_val *key, const tn_val *val);

static tn_err walk(tn_store *s, const void *prefix, size_t plen, const void *from, size_t flen,
                   walk_fn fn, void *ctx)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    tn_cursor *c;
    if ((e = tn_cursor_open(t, TN_DB_META, &c))) {
        tn_store_read_end(t);
        return e;
    }
    tn_val key, val;
    int rc = 0;
    for (e = tn_cursor_seek(c, from, flen, &key, &val); e == TN_OK && rc == 0;
         e = tn_cursor_next(c, &key, &val)) {
        if (key.len < plen || memcmp(key.data, prefix, plen) != 0)
            break;
        rc = fn(ctx, &key, &val);
    }
    tn_cursor_close(c);
    tn_store_read_end(t);
    return e == TN_ERR_NOENT || e == TN_OK ? TN_OK : e;
}

typedef struct each_ctx {
    tn_log_alert_fn afn;
    bool pending_only;
    tn_log_sched_fn sfn;
    tn_log_backfill_fn bfn;
    tn_log_fire_fn ffn;
    void *ctx;
    tn_err err;
} each_ctx;

static int sched_cb(void *ctx, const tn_val *key, const tn_val *val)
{
    (void)key;
    each_ctx *c = ctx;
    tn_sched_proj p;
    if ((c->err = tn_sched_proj_decode(val->data, val->len, &p)))
        return 1;
    int rc = c->sfn(c->ctx, &p);
    tn_sched_proj_fini(&p);
    return rc;
}

tn_err tn_log_sched_each(tn_store *s, tn_log_sched_fn fn, void *ctx)
{
    each_ctx c = {.sfn = fn, .ctx = ctx};
    tn_err e = walk(s, "sch/", 4, "sch/", 4, sched_cb, &c);
    return e ? e : c.err;
}

static int bf_cb(void *ctx, const tn_val *key, const tn_val *val)
{
    each_ctx *c = ctx;
    tn_backfill_proj p;
    if (key->len != 11)
        return 0;
    if ((c->err = tn_backfill_proj_decode(val->data, val->len, &p)))
        return 1;
    int rc = c->bfn(c->ctx, &p);
    tn_backfill_proj_fini(&p);
    return rc;
}

tn_err tn_log_backfill_each(tn_store *s, tn_log_backfill_fn fn, void *ctx)
{
    each_ctx c = {.bfn = fn, .ctx = ctx};
    tn_err e = walk(s, "bf/", 3, "bf/", 3, bf_cb, &c);
    return e ? e : c.err;
}

static int fire_cb(void *ctx, const tn_val *key, const tn_val *val)
{
    each_ctx *c = ctx;
    if (val->len != 9)
        return 0;
    const uint8_t *k = (const uint8_t *)key->data + key->len - 8;
    int64_t nominal = (int64_t)(tn_get_be64(k) ^ (1ull << 63));
    const uint8_t *v = val->data;
    return c->ffn(c->ctx, nominal, tn_get_be64(v), v[8] != 0);
}

tn_err tn_log_fire_each(tn_store *s, const char *name, int64_t from_ns, tn_log_fire_fn fn,
                        void *ctx)
{
    uint8_t k[TN_OBJ_KEY_MAX];
    if (!name || !*name || strlen(name) > TN_NAME_MAX)
        return TN_ERR_NOENT;
    size_t kl = tn_obj_fire_key(name, from_ns, k);
    each_ctx c = {.ffn = fn, .ctx = ctx};
    return walk(s, k, kl - 8, k, kl, fire_cb, &c);
}

static int bfd_cb(void *ctx, const tn_val *key, const tn_val *val)
{
    (void)key;
    uint64_t *out = ctx;
    if (val->len >= 8)
        *out = tn_get_be64(val->data);
    return 1;
}

tn_err tn_log_backfill_instance(tn_store *s, uint64_t id, uint32_t index, uint64_t *instance)
{
    uint8_t k[TN_OBJ_KEY_MAX];
    size_t kl = tn_obj_bfd_key(id, index, k);
    uint64_t found = 0;
    tn_err e = walk(s, k, kl, k, kl, bfd_cb, &found);
    if (e)
        return e;
    if (!found)
        return TN_ERR_NOENT;
    *instance = found;
    return TN_OK;
}

tn_err tn_log_alert_get(tn_store *s, uint64_t id, tn_alert_proj *out)
{
    uint8_t k[TN_OBJ_KEY_MAX];
    size_t kl = tn_obj_alert_key(id, k);
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    tn_val v;
    if (!(e = tn_store_get(t, TN_DB_META, k, kl, &v)))
        e = tn_alert_proj_decode(v.data, v.len, out);
    tn_store_read_end(t);
    return e;
}

static int alert_cb(void *ctx, const tn_val *key, const tn_val *val)
{
    each_ctx *c = ctx;
    tn_alert_proj p;
    if (key->len != 11)
        return 0;
    if ((c->err = tn_alert_proj_decode(val->data, val->len, &p)))
        return 1;
    int rc = c->pending_only && p.state != TN_ALERT_S_PENDING ? 0 : c->afn(c->ctx, &p);
    tn_alert_proj_fini(&p);
    return rc;
}

tn_err tn_log_alert_each(tn_store *s, uint64_t from_id, bool pending_only, tn_log_alert_fn fn,
                         void *ctx)
{
    each_ctx c = {.afn = fn, .pending_only = pending_only, .ctx = ctx};
    uint8_t k[TN_OBJ_KEY_MAX];
    size_t kl = tn_obj_alert_key(from_id, k);
    tn_err e = walk(s, "al/", 3, k, kl, alert_cb, &c);
    return e ? e : c.err;
}

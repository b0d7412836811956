/* Reads of the committed log: the keys and databases the event log's projections live
 * under, looked up in read-only transactions for the layers above. */
#include "logread.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

tn_err tn_log_open_read(const char *dir, tn_store **out, tn_errmsg *msg)
{
    tn_store_opts o = {.read_only = true};
    return tn_store_open(dir, &o, out, msg);
}

void tn_log_close_read(tn_store *s)
{
    tn_store_close(s);
}

const char *tn_log_store_path(const tn_store *s)
{
    return tn_store_path(s);
}

/* One value of `db` copied out of a read transaction by `copy`. */
typedef tn_err (*copy_fn)(const tn_val *v, void *out);

static tn_err get_one(tn_store *s, tn_db db, const void *key, size_t klen, copy_fn copy,
                      void *out)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    tn_val v;
    e = tn_store_get(t, db, key, klen, &v);
    if (!e)
        e = copy(&v, out);
    tn_store_read_end(t);
    return e;
}

/* The meta key "PREFIX/NAME" (proj.c writes it); 0 when the name does not fit. */
static size_t meta_key(char *key, size_t cap, const char *prefix, const char *name)
{
    int kl = snprintf(key, cap, "%s/%s", prefix, name);
    return kl > 0 && (size_t)kl < cap ? (size_t)kl : 0;
}

static tn_err copy_text(const tn_val *v, void *out)
{
    char *t = strndup(v->data, v->len);
    if (!t)
        return TN_ERR_NOMEM;
    *(char **)out = t;
    return TN_OK;
}

tn_err tn_log_env_get(tn_store *s, const char *name, char **text)
{
    char key[TN_NAME_MAX + 8];
    size_t kl = meta_key(key, sizeof(key), "env", name);
    if (!kl)
        return TN_ERR_NOENT; /* longer than any name an ENV_SET may carry */
    return get_one(s, TN_DB_META, key, kl, copy_text, text);
}

static tn_err copy_be64(const tn_val *v, void *out)
{
    if (v->len != 8)
        return TN_ERR_CORRUPT;
    *(int64_t *)out = (int64_t)tn_get_be64(v->data);
    return TN_OK;
}

tn_err tn_log_taskgroup_get(tn_store *s, const char *name, int64_t *slots)
{
    char key[TN_NAME_MAX + 8];
    size_t kl = meta_key(key, sizeof(key), "tg", name);
    if (!kl)
        return TN_ERR_NOENT;
    return get_one(s, TN_DB_META, key, kl, copy_be64, slots);
}

/* Walk meta["PREFIX/NAME"] in name order, calling fn with the name and its value. */
static tn_err meta_walk(tn_store *s, const char *prefix, tn_log_meta_fn fn, void *ctx)
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
    char k[16];
    size_t pl = (size_t)snprintf(k, sizeof(k), "%s/", prefix);
    tn_val key, val;
    int rc = 0;
    for (e = tn_cursor_seek(c, k, pl, &key, &val); e == TN_OK && rc == 0;
         e = tn_cursor_next(c, &key, &val)) {
        if (key.len < pl || memcmp(key.data, k, pl) != 0)
            break;
        char name[TN_NAME_MAX + 1];
        if (key.len == pl || key.len - pl > TN_NAME_MAX)
            continue;
        memcpy(name, (const char *)key.data + pl, key.len - pl);
        name[key.len - pl] = 0;
        rc = fn(ctx, name, val.data, val.len);
    }
    tn_cursor_close(c);
    tn_store_read_end(t);
    return e == TN_ERR_NOENT || e == TN_OK ? TN_OK : e;
}

tn_err tn_log_env_each(tn_store *s, tn_log_meta_fn fn, void *ctx)
{
    return meta_walk(s, "env", fn, ctx);
}

tn_err tn_log_taskgroup_each(tn_store *s, tn_log_meta_fn fn, void *ctx)
{
    return meta_walk(s, "tg", fn, ctx);
}

static tn_err copy_buf(const tn_val *v, void *out)
{
    tn_buf *b = out;
    b->size = 0;
    if (!tn_grow((void **)&b->data, &b->alloc, v->len + 1, 1))
        return TN_ERR_NOMEM;
    memcpy(b->data, v->data, v->len);
    b->size = v->len;
    return TN_OK;
}

tn_err tn_log_def_get(tn_store *s, const char *name, uint32_t version, tn_buf *out)
{
    uint8_t k[TN_NAME_MAX + 5];
    size_t kl = tn_proj_def_key(name, version, k);
    return get_one(s, TN_DB_DEFS, k, kl, copy_buf, out);
}

/* Split a defs key (name, 0, version be32) into its parts; false if it is not one. */
static bool def_key_split(const tn_val *key, char *name, uint32_t *version)
{
    size_t nl = strnlen(key->data, key->len);
    if (nl == 0 || nl > TN_NAME_MAX || key->len != nl + 5)
        return false;
    memcpy(name, key->data, nl);
    name[nl] = 0;
    const uint8_t *p = (const uint8_t *)key->data + nl + 1;
    *version = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return true;
}

/* Walk the defs database from `name`'s first version (all of it when name is NULL),
 * calling fn for each well-formed key of that name (of any name when NULL). */
static tn_err def_walk(tn_store *s, const char *name, tn_log_def_fn fn, void *ctx, int *fn_ret)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    tn_cursor *c;
    if ((e = tn_cursor_open(t, TN_DB_DEFS, &c))) {
        tn_store_read_end(t);
        return e;
    }
    uint8_t k[TN_NAME_MAX + 5];
    tn_val key, val;
    int rc = 0;
    if (name)
        e = tn_cursor_seek(c, k, tn_proj_def_key(name, 0, k), &key, &val);
    else
        e = tn_cursor_first(c, &key, &val);
    for (; e == TN_OK && rc == 0; e = tn_cursor_next(c, &key, &val)) {
        char kn[TN_NAME_MAX + 1];
        uint32_t ver;
        bool ok = def_key_split(&key, kn, &ver);
        if (name && (!ok || strcmp(kn, name) != 0))
            break;
        if (ok)
            rc = fn(ctx, kn, ver, val.data, val.len);
    }
    tn_cursor_close(c);
    tn_store_read_end(t);
    if (fn_ret)
        *fn_ret = rc;
    return e == TN_ERR_NOENT ? TN_OK : e;
}

tn_err tn_log_def_each(tn_store *s, tn_log_def_fn fn, void *ctx, int *fn_ret)
{
    return def_walk(s, NULL, fn, ctx, fn_ret);
}

typedef struct latest {
    uint32_t version;
    tn_buf *out;
    tn_err err;
} latest;

static int latest_cb(void *ctx, const char *name, uint32_t version, const void *bytes,
                     size_t len)
{
    latest *x = ctx;
    x->version = version;
    if (x->out && (x->err = copy_buf(&(tn_val){bytes, len}, x->out)))
        return 1;
    return 0;
}

tn_err tn_log_def_latest(tn_store *s, const char *name, uint32_t *version, tn_buf *out)
{
    latest x = {.out = out};
    *version = 0;
    tn_err e = def_walk(s, name, latest_cb, &x, NULL);
    if (!e)
        e = x.err;
    if (e)
        return e;
    *version = x.version;
    return x.version ? TN_OK : TN_ERR_NOENT;
}

/* --- instances ------------------------------------------------------------------ */

static tn_err copy_wf(const tn_val *v, void *out)
{
    return tn_proj_wf_decode(v->data, v->len, out) ? TN_ERR_CORRUPT : TN_OK;
}

static tn_err copy_task(const tn_val *v, void *out)
{
    return tn_proj_task_decode(v->data, v->len, out) ? TN_ERR_CORRUPT : TN_OK;
}

tn_err tn_log_wf_get(tn_store *s, uint64_t id, tn_wf_proj *out)
{
    uint8_t k[8];
    tn_put_be64(k, id);
    return get_one(s, TN_DB_WF, k, 8, copy_wf, out);
}

tn_err tn_log_task_get(tn_store *s, uint64_t id, tn_task_proj *out)
{
    uint8_t k[8];
    tn_put_be64(k, id);
    return get_one(s, TN_DB_TASKS, k, 8, copy_task, out);
}

struct tn_log_wf_iter {
    tn_rtxn *t;
    tn_cursor *c;
    bool positioned;
};

tn_err tn_log_wf_iter_open(tn_store *s, tn_log_wf_iter **out)
{
    tn_log_wf_iter *it = calloc(1, sizeof(*it));
    if (!it)
        return TN_ERR_NOMEM;
    tn_err e = tn_store_read_begin(s, &it->t);
    if (!e)
        e = tn_cursor_open(it->t, TN_DB_WF, &it->c);
    if (e) {
        tn_log_wf_iter_close(it);
        return e;
    }
    *out = it;
    return TN_OK;
}

void tn_log_wf_iter_close(tn_log_wf_iter *it)
{
    if (!it)
        return;
    tn_cursor_close(it->c);
    tn_store_read_end(it->t);
    free(it);
}

/* Decode the entry the cursor stands on, or pass on the cursor's error. */
static tn_err wf_at(tn_err e, const tn_val *k, const tn_val *v, tn_wf_proj *out)
{
    if (e)
        return e;
    if (k->len == 8 && tn_proj_wf_decode(v->data, v->len, out) == TN_OK)
        return TN_OK;
    memset(out, 0, sizeof(*out));
    out->id = k->len == 8 ? tn_get_be64(k->data) : 0;
    return TN_ERR_CORRUPT;
}

tn_err tn_log_wf_iter_seek(tn_log_wf_iter *it, uint64_t id, tn_wf_proj *out)
{
    uint8_t key[8];
    tn_put_be64(key, id);
    tn_val k, v;
    it->positioned = true;
    return wf_at(tn_cursor_seek(it->c, key, 8, &k, &v), &k, &v, out);
}

tn_err tn_log_wf_iter_next(tn_log_wf_iter *it, tn_wf_proj *out)
{
    tn_val k, v;
    tn_err e = it->positioned ? tn_cursor_next(it->c, &k, &v) : tn_cursor_first(it->c, &k, &v);
    it->positioned = true;
    return wf_at(e, &k, &v, out);
}

/* Every committed instance's state, counted (for gauges at a daemon's start). */
tn_err tn_log_state_counts(tn_store *s, uint64_t *wf, uint64_t *task, size_t nstates)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    for (int db = 0; db < 2 && !e; db++) {
        tn_cursor *c;
        if ((e = tn_cursor_open(t, db ? TN_DB_TASKS : TN_DB_WF, &c)))
            break;
        tn_val k, v;
        for (tn_err r = tn_cursor_first(c, &k, &v); r == TN_OK; r = tn_cursor_next(c, &k, &v)) {
            tn_wf_proj w;
            tn_task_proj p;
            if (!db && tn_proj_wf_decode(v.data, v.len, &w) == TN_OK && w.state < nstates)
                wf[w.state]++;
            else if (db && tn_proj_task_decode(v.data, v.len, &p) == TN_OK && p.state < nstates)
                task[p.state]++;
        }
        tn_cursor_close(c);
    }
    tn_store_read_end(t);
    return e;
}

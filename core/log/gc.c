/* tern gc: remove finished instances' projections from the store, keep their events,
 * and leave a mark that says so (see gc.h). */
#include "gc.h"

#include <stdlib.h>
#include <string.h>

#include "evlog.h"
#include "logread.h"
#include "sm_gen.h"
#include "store.h"
#include "util.h"

#define GC_PREFIX     "gc/"
#define GC_PREFIX_LEN 3
#define GC_KEY_LEN    (GC_PREFIX_LEN + 8)
#define GC_VAL_MIN    17 /* collected_at, ended_at, state; then the name */

static void mark_key(uint64_t wf, uint8_t *k)
{
    memcpy(k, GC_PREFIX, GC_PREFIX_LEN);
    tn_put_be64(k + GC_PREFIX_LEN, wf);
}

bool tn_log_gc_meta_key(const void *key, size_t len)
{
    return len == GC_KEY_LEN && memcmp(key, GC_PREFIX, GC_PREFIX_LEN) == 0;
}

bool tn_log_gc_marked(tn_rtxn *t, uint64_t wf)
{
    uint8_t k[GC_KEY_LEN];
    tn_val v;
    mark_key(wf, k);
    return tn_store_get(t, TN_DB_META, k, sizeof(k), &v) == TN_OK;
}

tn_err tn_log_gc_mark_get(tn_store *s, uint64_t wf, tn_log_gc_mark *out)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s, &t);
    if (e)
        return e;
    uint8_t k[GC_KEY_LEN];
    tn_val v;
    mark_key(wf, k);
    e = tn_store_get(t, TN_DB_META, k, sizeof(k), &v);
    if (!e && (v.len < GC_VAL_MIN || v.len > GC_VAL_MIN + TN_NAME_MAX))
        e = TN_ERR_CORRUPT;
    if (!e) {
        const uint8_t *p = v.data;
        out->collected_at = (int64_t)tn_get_be64(p);
        out->ended_at = (int64_t)tn_get_be64(p + 8);
        out->state = p[16];
        memcpy(out->name, p + GC_VAL_MIN, v.len - GC_VAL_MIN);
        out->name[v.len - GC_VAL_MIN] = 0;
    }
    tn_store_read_end(t);
    return e;
}

/* The instances to collect, in id order (the wf database's order). */
typedef struct pick {
    uint64_t *ids, *ntasks;
    size_t n, cap;
} pick;

static bool pick_add(pick *p, uint64_t id)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 256;
        uint64_t *ni = realloc(p->ids, nc * sizeof(*ni));
        if (ni)
            p->ids = ni;
        uint64_t *nt = ni ? realloc(p->ntasks, nc * sizeof(*nt)) : NULL;
        if (!nt)
            return false;
        p->ntasks = nt;
        p->cap = nc;
    }
    p->ntasks[p->n] = 0;
    p->ids[p->n++] = id;
    return true;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A finished instance old enough, whose parent (if any) is finished or gone. */
static bool collectable(tn_rtxn *t, const tn_wf_proj *w, int64_t ended_before)
{
    /* PAUSE is final for the machine but waits for a resume: not finished for gc */
    if (!tn_sm_is_final(&tn_sm_workflow, w->state) || w->state == TN_WF_S_PAUSE ||
        !w->ended_at || w->ended_at >= ended_before)
        return false;
    if (!w->parent_wf)
        return true;
    uint8_t k[8];
    tn_val v;
    tn_wf_proj parent;
    tn_put_be64(k, w->parent_wf);
    if (tn_store_get(t, TN_DB_WF, k, 8, &v) != TN_OK)
        return true; /* collected before */
    return tn_proj_wf_decode(v.data, v.len, &parent) == TN_OK &&
           tn_sm_is_final(&tn_sm_workflow, parent.state) && parent.state != TN_WF_S_PAUSE;
}

static tn_err queue_wf(tn_batch *b, const tn_wf_proj *w, int64_t now)
{
    uint8_t k[8], mk[GC_KEY_LEN], mv[GC_VAL_MIN + TN_NAME_MAX];
    tn_put_be64(k, w->id);
    mark_key(w->id, mk);
    tn_put_be64(mv, (uint64_t)now);
    tn_put_be64(mv + 8, (uint64_t)w->ended_at);
    mv[16] = w->state;
    size_t nl = strnlen(w->name, TN_NAME_MAX);
    memcpy(mv + GC_VAL_MIN, w->name, nl);
    tn_err e = tn_batch_del(b, TN_DB_WF, k, 8);
    return e ? e : tn_batch_put(b, TN_DB_META, mk, sizeof(mk), mv, GC_VAL_MIN + nl);
}

/* Pass 1: the workflows; pass 2: the tasks of those workflows. */
static tn_err select_all(tn_rtxn *t, tn_batch *b, int64_t ended_before, int64_t now, pick *p,
                         tn_log_gc_report *rep)
{
    tn_cursor *c;
    tn_val k, v;
    tn_wf_proj w;
    tn_task_proj tk;
    tn_err e = tn_cursor_open(t, TN_DB_WF, &c);
    for (tn_err r = e ? e : tn_cursor_first(c, &k, &v); !e && r == TN_OK;
         r = tn_cursor_next(c, &k, &v)) {
        if (tn_proj_wf_decode(v.data, v.len, &w) != TN_OK)
            continue; /* replay names an undecodable projection; gc leaves it */
        if (!collectable(t, &w, ended_before))
            continue;
        if (!pick_add(p, w.id))
            e = TN_ERR_NOMEM;
        else
            e = queue_wf(b, &w, now);
        rep->workflows++;
    }
    tn_cursor_close(c);
    if (e || !p->n)
        return e;
    if ((e = tn_cursor_open(t, TN_DB_TASKS, &c)))
        return e;
    for (tn_err r = tn_cursor_first(c, &k, &v); !e && r == TN_OK;
         r = tn_cursor_next(c, &k, &v)) {
        if (tn_proj_task_decode(v.data, v.len, &tk) != TN_OK)
            continue;
        uint64_t *hit = bsearch(&tk.wf, p->ids, p->n, sizeof(uint64_t), cmp_u64);
        if (!hit)
            continue;
        p->ntasks[hit - p->ids]++;
        rep->tasks++;
        e = tn_batch_del(b, TN_DB_TASKS, k.data, k.len);
    }
    tn_cursor_close(c);
    return e;
}

tn_err tn_log_gc(const char *dir, int64_t ended_before, int64_t now, bool dry_run,
                 tn_log_gc_fn fn, void *ctx, tn_log_gc_report *rep, tn_errmsg *msg)
{
    *rep = (tn_log_gc_report){0};
    tn_evlog *l; /* the writer's open: its lock, and the chain verified */
    tn_err e = tn_evlog_open(dir, &(tn_evlog_opts){0}, &l, msg);
    if (e)
        return e;
    tn_store *s = tn_evlog_store(l);
    tn_batch *b = NULL;
    tn_rtxn *t = NULL;
    pick p = {0};
    if (!(e = tn_batch_new(&b)) && !(e = tn_store_read_begin(s, &t)))
        e = select_all(t, b, ended_before, now, &p, rep);
    for (size_t i = 0; !e && fn && i < p.n; i++) {
        uint8_t k[8];
        tn_val v;
        tn_wf_proj w;
        tn_put_be64(k, p.ids[i]);
        if (tn_store_get(t, TN_DB_WF, k, 8, &v) == TN_OK &&
            tn_proj_wf_decode(v.data, v.len, &w) == TN_OK)
            fn(ctx, &w, p.ntasks[i]);
    }
    tn_store_read_end(t); /* before the commit, which may grow the map */
    if (e)
        tn_errmsg_set(msg, e, "%s: cannot read the instances to collect: %s",
                      tn_log_store_path(s), tn_strerror(e));
    else if (!dry_run && tn_batch_count(b))
        e = tn_store_commit(s, b, msg);
    tn_batch_free(b);
    free(p.ids);
    free(p.ntasks);
    tn_evlog_close(l);
    return e;
}

/* The event log's cache and store writes for schedule and backfill objects. */
#include "objlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "sm.h"
#include "sm_gen.h"
#include "util.h"

typedef struct obj {
    uint8_t machine;
    bool dirty;
    char name[TN_NAME_MAX + 1]; /* schedule */
    uint64_t id;                /* backfill */
    union {
        tn_sched_proj s;
        tn_backfill_proj b;
        tn_alert_proj a;
    } p;
    bool exists; /* false: NEW (not in the store, nothing pending) */
    struct obj *chain;
} obj;

struct tn_objlog {
    tn_map map; /* hash -> obj chain */
    obj **dirty;
    size_t ndirty, cap;
};

bool tn_objlog_handles(unsigned machine)
{
    return machine == TN_MACHINE_SCHEDULE || machine == TN_MACHINE_BACKFILL ||
           machine == TN_MACHINE_ALERT;
}

tn_err tn_objlog_new(tn_objlog **out)
{
    tn_objlog *o = calloc(1, sizeof(*o));
    if (!o)
        return TN_ERR_NOMEM;
    tn_map_init(&o->map);
    *out = o;
    return TN_OK;
}

/* The projection operations by machine. */
static void proj_fini(unsigned machine, void *p)
{
    if (machine == TN_MACHINE_SCHEDULE)
        tn_sched_proj_fini(p);
    else if (machine == TN_MACHINE_BACKFILL)
        tn_backfill_proj_fini(p);
    else
        tn_alert_proj_fini(p);
}

static tn_err proj_decode(unsigned machine, const tn_val *v, void *p)
{
    if (machine == TN_MACHINE_SCHEDULE)
        return tn_sched_proj_decode(v->data, v->len, p);
    if (machine == TN_MACHINE_BACKFILL)
        return tn_backfill_proj_decode(v->data, v->len, p);
    return tn_alert_proj_decode(v->data, v->len, p);
}

static tn_err proj_encode(unsigned machine, const void *p, tn_buf *out)
{
    if (machine == TN_MACHINE_SCHEDULE)
        return tn_sched_proj_encode(p, out);
    if (machine == TN_MACHINE_BACKFILL)
        return tn_backfill_proj_encode(p, out);
    return tn_alert_proj_encode(p, out);
}

static tn_err proj_apply(unsigned machine, void *p, const tn_event *ev)
{
    if (machine == TN_MACHINE_SCHEDULE)
        return tn_sched_proj_apply(p, ev);
    if (machine == TN_MACHINE_BACKFILL)
        return tn_backfill_proj_apply(p, ev);
    return tn_alert_proj_apply(p, ev);
}

static uint8_t proj_state(const obj *x)
{
    return x->machine == TN_MACHINE_SCHEDULE ? x->p.s.state :
           x->machine == TN_MACHINE_BACKFILL ? x->p.b.state :
                                               x->p.a.state;
}

static size_t obj_key(const obj *x, uint8_t *k)
{
    return x->machine == TN_MACHINE_SCHEDULE ? tn_obj_sched_key(x->name, k) :
           x->machine == TN_MACHINE_BACKFILL ? tn_obj_bf_key(x->id, k) :
                                               tn_obj_alert_key(x->id, k);
}

static void obj_free(obj *x)
{
    proj_fini(x->machine, &x->p);
    free(x);
}

void tn_objlog_free(tn_objlog *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->map.cap; i++)
        for (obj *x = o->map.slots[i].key ? o->map.slots[i].val : NULL, *n; x; x = n) {
            n = x->chain;
            obj_free(x);
        }
    tn_map_fini(&o->map);
    free(o->dirty);
    free(o);
}

static uint64_t obj_hash(unsigned machine, const char *name, uint64_t id)
{
    uint64_t h = 1469598103934665603ull ^ machine;
    if (name)
        for (const unsigned char *p = (const unsigned char *)name; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
    else
        for (int i = 0; i < 8; i++)
            h = (h ^ ((id >> (8 * i)) & 0xff)) * 1099511628211ull;
    return h | 1;
}

size_t tn_obj_sched_key(const char *name, uint8_t *key)
{
    size_t n = strnlen(name, TN_NAME_MAX);
    memcpy(key, "sch/", 4);
    memcpy(key + 4, name, n);
    return n + 4;
}

size_t tn_obj_fire_key(const char *name, int64_t nominal, uint8_t *key)
{
    size_t n = strnlen(name, TN_NAME_MAX);
    memcpy(key, "fire/", 5);
    memcpy(key + 5, name, n);
    key[5 + n] = 0;
    /* biased so that byte order is time order for times before 1970 too */
    tn_put_be64(key + 6 + n, (uint64_t)nominal ^ (1ull << 63));
    return n + 14;
}

size_t tn_obj_bf_key(uint64_t id, uint8_t *key)
{
    memcpy(key, "bf/", 3);
    tn_put_be64(key + 3, id);
    return 11;
}

size_t tn_obj_alert_key(uint64_t id, uint8_t *key)
{
    memcpy(key, "al/", 3);
    tn_put_be64(key + 3, id);
    return 11;
}

size_t tn_obj_bfd_key(uint64_t id, uint32_t index, uint8_t *key)
{
    memcpy(key, "bfd/", 4);
    tn_put_be64(key + 4, id);
    key[12] = (uint8_t)(index >> 24);
    key[13] = (uint8_t)(index >> 16);
    key[14] = (uint8_t)(index >> 8);
    key[15] = (uint8_t)index;
    return 16;
}

/* The object's name or id from its event's attrs. */
static bool ev_key(const tn_event *ev, char *name, uint64_t *id)
{
    if (ev->machine == TN_MACHINE_SCHEDULE) {
        const tn_attr *a = tn_event_attr(ev, "schedule");
        if (!a || a->type != TN_ATTR_STR || a->s.len == 0 || a->s.len > TN_NAME_MAX ||
            memchr(a->s.p, 0, a->s.len))
            return false;
        memcpy(name, a->s.p, a->s.len);
        name[a->s.len] = 0;
        return true;
    }
    int64_t v;
    if (!tn_event_int(ev, ev->machine == TN_MACHINE_ALERT ? "alert" : "backfill", &v) || v <= 0)
        return false;
    *id = (uint64_t)v;
    return true;
}

/* The cached object, loading it from the store on a miss (a NEW one when absent). */
static tn_err find(tn_objlog *o, tn_rtxn *t, unsigned machine, const char *name, uint64_t id,
                   obj **out)
{
    bool sched = machine == TN_MACHINE_SCHEDULE;
    uint64_t h = obj_hash(machine, sched ? name : NULL, id);
    obj *head = tn_map_get(&o->map, h);
    for (obj *x = head; x; x = x->chain)
        if (x->machine == machine && (sched ? !strcmp(x->name, name) : x->id == id)) {
            *out = x;
            return TN_OK;
        }
    obj *x = calloc(1, sizeof(*x));
    if (!x)
        return TN_ERR_NOMEM;
    x->machine = (uint8_t)machine;
    if (sched)
        snprintf(x->name, sizeof(x->name), "%s", name);
    x->id = id;
    uint8_t k[TN_OBJ_KEY_MAX];
    size_t kl = obj_key(x, k);
    tn_val v;
    tn_err e = t ? tn_store_get(t, TN_DB_META, k, kl, &v) : TN_ERR_NOENT;
    if (e == TN_OK) {
        e = proj_decode(machine, &v, &x->p);
        x->exists = e == TN_OK;
    } else if (e == TN_ERR_NOENT) {
        e = TN_OK;
    }
    if (e || (e = tn_map_put(&o->map, h, x))) {
        free(x);
        return e;
    }
    x->chain = head;
    *out = x;
    return TN_OK;
}

static tn_err find_ev(tn_objlog *o, tn_rtxn *t, const tn_event *ev, obj **out)
{
    char name[TN_NAME_MAX + 1];
    uint64_t id = 0;
    if (!ev_key(ev, name, &id))
        return TN_ERR_INVAL;
    return find(o, t, ev->machine, name, id, out);
}

tn_err tn_objlog_state(tn_objlog *o, tn_rtxn *t, const tn_event *ev, uint8_t *state)
{
    obj *x;
    tn_err e = find_ev(o, t, ev, &x);
    if (e)
        return e;
    *state = x->exists ? proj_state(x) : TN_SM_NEW;
    return TN_OK;
}

static tn_err dup_bytes(uint8_t **dst, const void *src, size_t n)
{
    *dst = NULL;
    if (!n)
        return TN_OK;
    if (!(*dst = malloc(n)))
        return TN_ERR_NOMEM;
    memcpy(*dst, src, n);
    return TN_OK;
}

static tn_err sched_copy(tn_sched_proj *dst, const tn_sched_proj *src)
{
    *dst = *src;
    return dup_bytes(&dst->params, src->params, src->params_len);
}

static tn_err bf_copy(tn_backfill_proj *dst, const tn_backfill_proj *src)
{
    *dst = *src;
    dst->params = NULL;
    tn_err e = dup_bytes((uint8_t **)&dst->dates, src->dates, src->ndates * sizeof(int64_t));
    if (!e && (e = dup_bytes(&dst->params, src->params, src->params_len)))
        free(dst->dates);
    return e;
}

/* The index entry an event adds: (schedule, nominal) or (backfill, index) -> instance. */
typedef struct putter {
    tn_proj_put_fn fn;
    void *ctx;
} putter;

static tn_err put_index(tn_rtxn *t, const putter *b, const obj *x, const tn_event *ev,
                        tn_errmsg *msg)
{
    int64_t inst = 0, nominal = 0, manual = 0, index = 0;
    uint8_t k[TN_OBJ_KEY_MAX], v[9];
    size_t kl;
    tn_event_int(ev, "instance", &inst);
    if (x->machine == TN_MACHINE_ALERT)
        return TN_OK;
    if (x->machine == TN_MACHINE_SCHEDULE) {
        if (ev->event != TN_SCHED_E_FIRE)
            return TN_OK;
        tn_event_int(ev, "nominal", &nominal);
        tn_event_int(ev, "manual", &manual);
        kl = tn_obj_fire_key(x->name, nominal, k);
    } else {
        if (ev->event != TN_BF_E_START_DATE)
            return TN_OK;
        tn_event_int(ev, "index", &index);
        kl = tn_obj_bfd_key(x->id, (uint32_t)index, k);
    }
    tn_val old;
    if (t && tn_store_get(t, TN_DB_META, k, kl, &old) == TN_OK)
        return tn_errmsg_set(msg, TN_ERR_ILLEGAL, "%s: that time already started instance %llu",
                             x->machine == TN_MACHINE_SCHEDULE ? x->name : "backfill",
                             (unsigned long long)(old.len >= 8 ? tn_get_be64(old.data) : 0));
    tn_put_be64(v, (uint64_t)inst);
    v[8] = (uint8_t)(manual != 0);
    return b->fn(b->ctx, TN_DB_META, k, kl, v, 9);
}

static tn_err alert_copy(tn_alert_proj *dst, const tn_alert_proj *src)
{
    *dst = *src;
    dst->target = NULL;
    return src->target && !(dst->target = strdup(src->target)) ? TN_ERR_NOMEM : TN_OK;
}

static tn_err proj_copy(unsigned machine, void *dst, const void *src)
{
    if (machine == TN_MACHINE_SCHEDULE)
        return sched_copy(dst, src);
    if (machine == TN_MACHINE_BACKFILL)
        return bf_copy(dst, src);
    return alert_copy(dst, src);
}

static tn_err stage_obj(obj *x, tn_rtxn *t, const putter *b, const tn_event *ev, tn_errmsg *msg)
{
    bool sched = x->machine == TN_MACHINE_SCHEDULE;
    obj q = *x;
    tn_err e = proj_copy(x->machine, &q.p, &x->p);
    if (e)
        return e;
    e = proj_apply(x->machine, &q.p, ev);
    if (e == TN_ERR_ILLEGAL)
        tn_errmsg_set(msg, e, "%s %s: that nominal time or date was decided already",
                      sched ? "schedule" : "backfill", sched ? x->name : "");
    tn_buf enc = {0};
    uint8_t k[TN_OBJ_KEY_MAX];
    if (!e)
        e = proj_encode(x->machine, &q.p, &enc);
    if (!e)
        e = put_index(t, b, x, ev, msg);
    if (!e)
        e = b->fn(b->ctx, TN_DB_META, k, obj_key(x, k), enc.data, enc.size);
    tn_buf_free(&enc);
    if (!e) { /* swap: x takes the new projection, q the old one to free */
        __typeof__(x->p) tmp;
        memcpy(&tmp, &x->p, sizeof(x->p));
        memcpy(&x->p, &q.p, sizeof(x->p));
        memcpy(&q.p, &tmp, sizeof(x->p));
        x->exists = true;
    }
    proj_fini(x->machine, &q.p);
    return e;
}

tn_err tn_objlog_stage(tn_objlog *o, tn_rtxn *t, tn_proj_put_fn put, void *put_ctx,
                       const tn_event *ev, tn_errmsg *msg)
{
    putter pb = {put, put_ctx}, *b = &pb;
    obj *x;
    tn_err e = find_ev(o, t, ev, &x);
    if (e)
        return e;
    if (!x->dirty && o->ndirty == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        obj **nd = realloc(o->dirty, nc * sizeof(*nd));
        if (!nd)
            return TN_ERR_NOMEM;
        o->dirty = nd;
        o->cap = nc;
    }
    if ((e = stage_obj(x, t, b, ev, msg)))
        return e;
    if (!x->dirty) {
        x->dirty = true;
        o->dirty[o->ndirty++] = x;
    }
    return TN_OK;
}

void tn_objlog_committed(tn_objlog *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->ndirty; i++)
        o->dirty[i]->dirty = false;
    o->ndirty = 0;
}

/* Forget what the batch changed: the objects reload from the store when next asked. */
void tn_objlog_discard(tn_objlog *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->ndirty; i++) {
        obj *x = o->dirty[i];
        uint64_t h =
            obj_hash(x->machine, x->machine == TN_MACHINE_SCHEDULE ? x->name : NULL, x->id);
        obj *head = tn_map_get(&o->map, h), **pp = &head;
        while (*pp && *pp != x)
            pp = &(*pp)->chain;
        if (*pp)
            *pp = x->chain;
        if (head)
            tn_map_put(&o->map, h, head);
        else
            tn_map_del(&o->map, h);
        obj_free(x);
    }
    o->ndirty = 0;
}

/* The pending projection of one object, copied with its members (proj_copy). */
static tn_err get_copy(tn_objlog *o, tn_rtxn *t, unsigned machine, const char *name,
                       uint64_t id, void *out)
{
    obj *x;
    tn_err e = find(o, t, machine, name, id, &x);
    if (e)
        return e;
    return x->exists ? proj_copy(machine, out, &x->p) : TN_ERR_NOENT;
}

tn_err tn_objlog_sched(tn_objlog *o, tn_rtxn *t, const char *name, tn_sched_proj *out)
{
    return get_copy(o, t, TN_MACHINE_SCHEDULE, name, 0, out);
}

tn_err tn_objlog_backfill(tn_objlog *o, tn_rtxn *t, uint64_t id, tn_backfill_proj *out)
{
    return get_copy(o, t, TN_MACHINE_BACKFILL, NULL, id, out);
}

tn_err tn_objlog_alert(tn_objlog *o, tn_rtxn *t, uint64_t id, tn_alert_proj *out)
{
    return get_copy(o, t, TN_MACHINE_ALERT, NULL, id, out);
}

/* The worker's store, behind the outbox API: reports in TN_DB_EVENTS by id (u64 BE), the
 * next id in TN_DB_META "next_report", attempt records in TN_DB_TASKS by task id. */
#include "outbox_store.h"

#include <stdbool.h>
#include <stdlib.h>

#include "store.h"
#include "util.h"

#define NEXT_KEY     "next_report"
#define NEXT_KEY_LEN 11
#define TASK_REC_LEN 28 /* attempt, pid, start ticks (u64 BE each), 4 bytes reserved */

struct tn_outbox_store {
    tn_store *st;
    tn_batch *b;
};

tn_err tn_outbox_store_open(const char *dir, uint64_t map_max, tn_outbox_store **out,
                            tn_errmsg *msg)
{
    tn_outbox_store *s = calloc(1, sizeof(*s));
    if (!s || tn_batch_new(&s->b)) {
        free(s);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory opening the outbox", dir);
    }
    tn_store_opts so = {.create = true, .map_max = (size_t)map_max};
    tn_err e = tn_store_open(dir, &so, &s->st, msg);
    if (e) {
        tn_batch_free(s->b);
        free(s);
        return e;
    }
    *out = s;
    return TN_OK;
}

void tn_outbox_store_close(tn_outbox_store *s)
{
    if (!s)
        return;
    tn_batch_free(s->b);
    tn_store_close(s->st);
    free(s);
}

tn_err tn_outbox_store_load(tn_outbox_store *s, uint64_t *next_id, tn_outbox_report_fn fn,
                            void *ud)
{
    *next_id = 0;
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(s->st, &t);
    if (e)
        return e;
    tn_val k, v;
    if (tn_store_get(t, TN_DB_META, NEXT_KEY, NEXT_KEY_LEN, &v) == TN_OK && v.len == 8)
        *next_id = tn_get_be64(v.data);
    tn_cursor *c;
    if (tn_cursor_open(t, TN_DB_EVENTS, &c) == TN_OK) {
        for (e = tn_cursor_first(c, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
            if (k.len != 8 || !fn(ud, tn_get_be64(k.data), v.data, v.len))
                break;
        }
        tn_cursor_close(c);
    }
    tn_store_read_end(t);
    return TN_OK;
}

uint32_t tn_outbox_store_take_tasks(tn_outbox_store *s, tn_outbox_task_fn fn, void *ud)
{
    tn_rtxn *t;
    tn_batch *b;
    if (tn_store_read_begin(s->st, &t))
        return 0;
    if (tn_batch_new(&b)) {
        tn_store_read_end(t);
        return 0;
    }
    uint32_t n = 0;
    tn_cursor *c;
    tn_val k, v;
    if (tn_cursor_open(t, TN_DB_TASKS, &c) == TN_OK) {
        for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
            if (k.len != 8 || v.len != TASK_REC_LEN)
                continue;
            const uint8_t *p = v.data;
            fn(ud, tn_get_be64(k.data), (uint32_t)tn_get_be64(p), (int64_t)tn_get_be64(p + 8),
               tn_get_be64(p + 16));
            tn_batch_del(b, TN_DB_TASKS, k.data, 8);
            n++;
        }
        tn_cursor_close(c);
    }
    tn_store_read_end(t);
    if (tn_batch_count(b)) {
        tn_errmsg em;
        (void)tn_store_commit(s->st, b, &em);
    }
    tn_batch_free(b);
    return n;
}

tn_err tn_outbox_store_put_report(tn_outbox_store *s, uint64_t id, const void *enc, size_t len)
{
    uint8_t k[8];
    tn_put_be64(k, id);
    return tn_batch_put(s->b, TN_DB_EVENTS, k, 8, enc, len);
}

tn_err tn_outbox_store_del_report(tn_outbox_store *s, uint64_t id)
{
    uint8_t k[8];
    tn_put_be64(k, id);
    return tn_batch_del(s->b, TN_DB_EVENTS, k, 8);
}

tn_err tn_outbox_store_put_task(tn_outbox_store *s, uint64_t task, uint32_t attempt,
                                int64_t pid, uint64_t start_ticks)
{
    uint8_t k[8], v[TASK_REC_LEN];
    tn_put_be64(k, task);
    tn_put_be64(v, attempt);
    tn_put_be64(v + 8, (uint64_t)pid);
    tn_put_be64(v + 16, start_ticks);
    v[24] = v[25] = v[26] = v[27] = 0;
    return tn_batch_put(s->b, TN_DB_TASKS, k, 8, v, sizeof(v));
}

tn_err tn_outbox_store_del_task(tn_outbox_store *s, uint64_t task)
{
    uint8_t k[8];
    tn_put_be64(k, task);
    return tn_batch_del(s->b, TN_DB_TASKS, k, 8);
}

size_t tn_outbox_store_staged(const tn_outbox_store *s)
{
    return tn_batch_count(s->b);
}

tn_err tn_outbox_store_commit(tn_outbox_store *s, uint64_t next_id, tn_errmsg *msg)
{
    uint8_t v[8];
    tn_put_be64(v, next_id);
    (void)tn_batch_put(s->b, TN_DB_META, NEXT_KEY, NEXT_KEY_LEN, v, 8);
    tn_err e = tn_store_commit(s->st, s->b, msg);
    if (e)
        return e;
    tn_batch_reset(s->b);
    return TN_OK;
}

/* The worker's outbox: numbered reports, durable before sent, resent until PERSISTED. */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mp.h"
#include "util.h"

/* A report waiting for PERSISTED, in ob->head..ob->tail by id. */
typedef struct pending {
    uint64_t id, task;
    void *enc; /* the encoded message */
    size_t len;
    int64_t next_send; /* monotonic */
    uint32_t tries;
    bool go;                     /* tn_outbox_send: goes in this send */
    struct pending *prev, *next; /* by id */
} pending;

/* Link p into the list by id: at the tail, where a new report's id always goes. */
static void link_pending(tn_outbox *ob, pending *p)
{
    pending *at = ob->tail;
    while (at && at->id > p->id)
        at = at->prev;
    p->prev = at;
    p->next = at ? at->next : ob->head;
    if (p->next)
        p->next->prev = p;
    else
        ob->tail = p;
    if (at)
        at->next = p;
    else
        ob->head = p;
}

static void unlink_pending(tn_outbox *ob, pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        ob->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        ob->tail = p->prev;
}

/* The task a stored report is about ([type, report_id, task, ...]); 0 when unreadable. */
static uint64_t report_task(const void *enc, size_t len)
{
    tn_mp r;
    uint32_t n;
    uint64_t type, id, task;
    tn_mp_init(&r, enc, len);
    if (!tn_mp_array(&r, 64, &n) || n < 3 || !tn_mp_u64(&r, &type) || !tn_mp_u64(&r, &id) ||
        !tn_mp_u64(&r, &task))
        return 0;
    return task;
}

/* A PERSISTED report's delete may wait this long for a commit that has to happen anyway:
 * losing it in a crash only means one resend the master acknowledges again, while a
 * commit of its own is one more fdatasync in front of the next dispatch. */
#define DEL_DEFER_NS (100 * 1000000LL)

tn_err tn_outbox_put(tn_outbox *ob, tn_msg *m)
{
    uint64_t id = ob->next_report++, task;
    switch (m->type) {
    case TN_MSG_ACCEPTED: m->accepted.report_id = id, task = m->accepted.task; break;
    case TN_MSG_RESULT: m->result.report_id = id, task = m->result.task; break;
    case TN_MSG_KILL_RESULT: m->kill_result.report_id = id, task = m->kill_result.task; break;
    default: return TN_ERR_INVAL;
    }
    tn_buf enc = {0};
    tn_err e = tn_msg_encode(m, &enc);
    if (!e)
        e = tn_outbox_store_put_report(ob->st, id, enc.data, enc.size);
    pending *p = e ? NULL : calloc(1, sizeof(*p));
    if (!p || tn_map_put(&ob->pend, id, p)) {
        free(p);
        tn_buf_free(&enc);
        return e ? e : TN_ERR_NOMEM;
    }
    p->id = id;
    p->task = task;
    link_pending(ob, p);
    /* the encoder's buffer starts at 8 KiB: keep what the report needs (hundreds wait at
     * once, and their peak set the worker's RSS) */
    void *fit = realloc(enc.data, enc.size ? enc.size : 1);
    p->enc = fit ? fit : enc.data;
    p->len = enc.size;
    p->next_send = 0; /* sent after the commit */
    return TN_OK;
}

void tn_outbox_commit(tn_outbox *ob, bool force, const atomic_bool *stop)
{
    size_t n = tn_outbox_store_staged(ob->st);
    if (n == 0)
        return;
    if (!force && n == ob->dels && tn_mono_ns() - ob->dels_since < DEL_DEFER_NS)
        return;
    tn_errmsg em = {{0}};
    tn_log_every every = {0};
    while (tn_outbox_store_commit(ob->st, ob->next_report, &em) != TN_OK) {
        /* nothing is sent before it is durable: a full disk holds the reports back */
        tn_log_every_f(&every, TN_LOG_ERROR, "worker",
                       "msg=\"outbox commit failed; retrying\" why=\"%s\"", em.text);
        usleep(500000);
        if (atomic_load(stop))
            return;
    }
    ob->dels = 0;
}

/* Which reports go now: the due ones, and every earlier report of a task that has one
 * due, so that a task's reports reach the master in the order they were made (an
 * ACCEPTED resent after its RESULT would be stale there, its pid and containment lost).
 * Walked from the newest: `due` holds the tasks with a later report going. */
static void mark_going(tn_outbox *ob, int64_t now)
{
    tn_map due;
    tn_map_init(&due);
    for (pending *p = ob->tail; p; p = p->prev) {
        p->go = p->next_send <= now || (p->task && tn_map_get(&due, p->task));
        /* out of memory: the report goes in its own time, in id order still */
        if (p->go && p->task)
            (void)tn_map_put(&due, p->task, p);
    }
    tn_map_fini(&due);
}

static void send_frame(tn_frame *f, tn_buf *buf, tn_tx tx)
{
    if (f->count && tn_frame_end(f) == TN_OK)
        (void)tn_tx_send(tx, buf->data, buf->size);
}

void tn_outbox_send(tn_outbox *ob, tn_tx tx, const char *sender, int64_t now)
{
    /* the reports that go, by id, in frames of at most 1000 (one nng message each) */
    mark_going(ob, now);
    tn_buf buf = {0};
    tn_frame f;
    bool open = false;
    for (pending *p = ob->head; p; p = p->next) {
        if (!p->go)
            continue;
        for (int round = 0; round < 2; round++) {
            if (!open) {
                buf.size = 0;
                if (tn_frame_begin_cluster(&f, &buf, sender, ob->cluster) != TN_OK)
                    goto out;
                open = true;
            }
            if (tn_frame_add_encoded(&f, p->enc, p->len) == TN_OK)
                break;
            /* the frame is full in bytes: it goes, and the report starts the next one */
            send_frame(&f, &buf, tx);
            open = false;
        }
        /* resend with backoff until PERSISTED: 1s, 2s, 4s ... 30s */
        int64_t back = 1000000000LL << (p->tries < 5 ? p->tries : 5);
        if (back > 30000000000LL)
            back = 30000000000LL;
        p->next_send = now + back;
        p->tries++;
        if (open && f.count >= 1000) {
            send_frame(&f, &buf, tx);
            open = false;
        }
    }
    if (open)
        send_frame(&f, &buf, tx);
out:
    tn_buf_free(&buf);
}

static bool load_one(void *ud, uint64_t id, const void *enc, size_t len)
{
    tn_outbox *ob = ud;
    pending *p = calloc(1, sizeof(*p));
    if (!p)
        return false;
    p->id = id;
    p->task = report_task(enc, len);
    p->enc = malloc(len);
    if (!p->enc) {
        free(p);
        return false;
    }
    memcpy(p->enc, enc, len);
    p->len = len;
    if (tn_map_put(&ob->pend, p->id, p) != TN_OK) {
        free(p->enc);
        free(p);
        return false;
    }
    link_pending(ob, p);
    if (p->id >= ob->next_report)
        ob->next_report = p->id + 1;
    return true;
}

void tn_outbox_init(tn_outbox *ob, tn_outbox_store *st)
{
    *ob = (tn_outbox){.st = st};
    tn_map_init(&ob->pend);
    uint64_t next = 0;
    if (tn_outbox_store_load(st, &next, load_one, ob) == TN_OK && next > ob->next_report)
        ob->next_report = next;
    if (ob->next_report == 0)
        ob->next_report = 1;
}

void tn_outbox_done(tn_outbox *ob, uint64_t id)
{
    pending *p = tn_map_del(&ob->pend, id);
    if (!p)
        return; /* a duplicate PERSISTED */
    unlink_pending(ob, p);
    (void)tn_outbox_store_del_report(ob->st, id);
    if (!ob->dels++)
        ob->dels_since = tn_mono_ns();
    free(p->enc);
    free(p);
}

int64_t tn_outbox_due(const tn_outbox *ob)
{
    return ob->dels ? ob->dels_since + DEL_DEFER_NS : 0;
}

size_t tn_outbox_len(const tn_outbox *ob)
{
    return ob->pend.len;
}

void tn_outbox_fini(tn_outbox *ob)
{
    for (pending *p = ob->head, *next; p; p = next) {
        next = p->next;
        free(p->enc);
        free(p);
    }
    tn_map_fini(&ob->pend);
    ob->head = ob->tail = NULL;
}

void tn_outbox_resend_now(tn_outbox *ob)
{
    for (pending *p = ob->head; p; p = p->next)
        p->next_send = 0;
}

/* The worker's outbox: numbered reports, durable before sent, resent until PERSISTED. */
#include "outbox.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* A report waiting for PERSISTED. */
typedef struct pending {
    uint64_t id;
    void *enc; /* the encoded message */
    size_t len;
    int64_t next_send; /* monotonic */
    uint32_t tries;
} pending;

/* A PERSISTED report's delete may wait this long for a commit that has to happen anyway:
 * losing it in a crash only means one resend the master acknowledges again, while a
 * commit of its own is one more fdatasync in front of the next dispatch. */
#define DEL_DEFER_NS (100 * 1000000LL)

tn_err tn_outbox_put(tn_outbox *ob, tn_msg *m)
{
    uint64_t id = ob->next_report++;
    switch (m->type) {
    case TN_MSG_ACCEPTED: m->accepted.report_id = id; break;
    case TN_MSG_RESULT: m->result.report_id = id; break;
    case TN_MSG_KILL_RESULT: m->kill_result.report_id = id; break;
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

void tn_outbox_send(tn_outbox *ob, tn_tx tx, const char *sender, int64_t now)
{
    /* every report that is due, in frames of at most 1000 (one nng message each) */
    tn_buf buf = {0};
    tn_frame f;
    bool open = false;
    for (size_t i = 0; i < ob->pend.cap; i++) {
        pending *p = ob->pend.slots[i].key ? ob->pend.slots[i].val : NULL;
        if (!p || p->next_send > now)
            continue;
        if (!open) {
            buf.size = 0;
            if (tn_frame_begin_cluster(&f, &buf, sender, ob->cluster) != TN_OK)
                break;
            open = true;
        }
        if (tn_frame_add_encoded(&f, p->enc, p->len) != TN_OK)
            continue;
        /* resend with backoff until PERSISTED: 1s, 2s, 4s ... 30s */
        int64_t back = 1000000000LL << (p->tries < 5 ? p->tries : 5);
        if (back > 30000000000LL)
            back = 30000000000LL;
        p->next_send = now + back;
        p->tries++;
        if (f.count >= 1000) {
            if (tn_frame_end(&f) == TN_OK)
                (void)tn_tx_send(tx, buf.data, buf.size);
            open = false;
        }
    }
    if (open && f.count && tn_frame_end(&f) == TN_OK)
        (void)tn_tx_send(tx, buf.data, buf.size);
    tn_buf_free(&buf);
}

static bool load_one(void *ud, uint64_t id, const void *enc, size_t len)
{
    tn_outbox *ob = ud;
    pending *p = calloc(1, sizeof(*p));
    if (!p)
        return false;
    p->id = id;
    p->enc = malloc(len);
    if (!p->enc) {
        free(p);
        return false;
    }
    memcpy(p->enc, enc, len);
    p->len = len;
    tn_map_put(&ob->pend, p->id, p);
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
    for (size_t i = 0; i < ob->pend.cap; i++)
        if (ob->pend.slots[i].key) {
            pending *p = ob->pend.slots[i].val;
            free(p->enc);
            free(p);
        }
    tn_map_fini(&ob->pend);
}

void tn_outbox_resend_now(tn_outbox *ob)
{
    for (size_t i = 0; i < ob->pend.cap; i++) {
        pending *p = ob->pend.slots[i].key ? ob->pend.slots[i].val : NULL;
        if (p)
            p->next_send = 0;
    }
}

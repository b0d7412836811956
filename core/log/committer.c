/* The committer thread: chain, hash and append the staged events while the batch is
 * still being built; commit it when asked, the next batch staging meanwhile. A staging
 * thread that waits for a commit chains and hashes its next batch meanwhile. */
#include "committer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evlog.h"
#include "log.h"
#include "util.h"

/* Staged events live in chunks that never move (the committer reads them while the
 * engine thread appends): records of a u32 length and the encoding. A chunk the next
 * record does not fit ends with a zero length (when 4 bytes are left). */
#define CHUNK_BYTES   ((size_t)1 << 20)
/* Chunks a set keeps for the next batches; a huge batch's others are freed after it. */
#define CHUNKS_KEPT   8
/* The engine thread hands over staged events this many at a time (and at the commit). A
 * batch smaller than this is committed by the engine thread itself. */
#define PUBLISH_EVERY 256
/* A waiting staging thread hashes this many records between looks at the commit it
 * waits for (the committer waits for it to stop before it reads the set). */
#define HELP_STEP     64

struct chunk {
    struct chunk *next;
    size_t used, cap;
    uint8_t data[];
};

/* A reader's position in a set's chunks. */
struct rpos {
    struct chunk *k;
    size_t off;
};

struct stage {
    struct chunk *first, *cur; /* engine thread; cur NULL: next record in the first */
    size_t staged, handed;     /* engine thread */
    size_t published;          /* under mu: what the committer may read */
    /* Records [0, prehashed) already chained and hashed by the engine thread while it
     * waited for the other set's commit; prehead is the last one's hash. Under mu;
     * final once the committer starts on the set. */
    size_t prehashed;
    uint8_t prehead[TN_HASH_LEN];
    struct rpos hrd; /* engine thread: where that hashing goes on */
};

/* Chaining and appending one set: the committer's, or the engine thread's own when it
 * commits a small batch itself. */
struct feeder {
    tn_store *s;
    struct chunk *first; /* the set's */
    uint64_t last_seq;   /* of the event before the set's first */
    uint8_t head[TN_HASH_LEN];
    struct rpos rd;
    size_t consumed;
    size_t pre; /* the set's first records hashed already, and the last one's hash */
    uint8_t prehead[TN_HASH_LEN];
    tn_stream *str;
    tn_err str_err;
    tn_errmsg str_msg;
};

enum {
    CMD_NONE,
    CMD_ABORT,
    CMD_STOP
};

struct tn_committer {
    tn_store *s;
    pthread_t th;
    bool started; /* the thread starts at the first hand-over */
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the committer waits for work here */
    pthread_cond_t done; /* the engine thread waits for the committer here */
    struct stage set[2];
    int es; /* engine thread: the set being staged */
    /* under mu */
    int cmd;
    bool idle;
    bool job;        /* a commit started and not yet waited for */
    bool settled;    /* ... and its outcome is known */
    bool head_ready; /* ... and its set is chained: the next set's may begin, from it */
    bool helping;    /* the engine thread is hashing records of the staging set */
    uint8_t ready_head[TN_HASH_LEN];
    uint64_t helped; /* records the engine thread hashed so, ever */
    int job_set;
    tn_batch *batch;
    bool ckpt;
    tn_err result;
    tn_errmsg msg;
    uint8_t job_head[TN_HASH_LEN];
    /* the committer's (handed over by the mutex: the engine thread sets where the chain
     * goes on while the committer has no work) */
    int cs; /* the set it reads: the oldest not yet committed */
    struct feeder f;
    /* Fault injection (TERN_FAULT_COMMIT_DELAY_MS): a handed-over commit waits this long
     * first, so that anything released before its end would be seen early. */
    int64_t delay_ns;
};

/* The next record after `p` (which must exist); advances p. */
static uint8_t *rec_next(struct rpos *p, uint32_t *len)
{
    if (p->off + 4 > p->k->cap || (memcpy(len, p->k->data + p->off, 4), *len == 0)) {
        p->k = p->k->next;
        p->off = 0;
        memcpy(len, p->k->data, 4);
    }
    uint8_t *r = p->k->data + p->off + 4;
    p->off += 4 + *len;
    return r;
}

static void append_one(struct feeder *f, tn_stream *st, size_t i, const uint8_t *enc,
                       uint32_t len)
{
    uint8_t key[8];
    tn_put_be64(key, f->last_seq + 1 + i);
    tn_store_stream_append(st, TN_DB_EVENTS, key, 8, enc, len);
}

/* The feeder reads set `s` (with mu held, or by the engine thread with no commit
 * started): from its first record when it has not begun it. */
static void take_set(struct feeder *f, const struct stage *s)
{
    f->first = s->first;
    if (f->consumed == 0) {
        f->pre = s->prehashed;
        memcpy(f->prehead, s->prehead, TN_HASH_LEN);
    }
}

/* Chain and hash one record after `head` (its last TN_HASH_LEN bytes); head becomes its
 * hash. */
static void chain_one(uint8_t *enc, uint32_t len, uint8_t head[TN_HASH_LEN])
{
    memcpy(enc + len - TN_HASH_LEN, head, TN_HASH_LEN);
    tn_event_hash(enc, len, head);
}

/* Chain, hash and append the set's records up to `upto` (the first f->pre only
 * appended: they are chained). A stream that cannot begin is an error its commit
 * returns; the records are still chained. */
static void feed(struct feeder *f, size_t upto)
{
    if (!f->rd.k)
        f->rd = (struct rpos){f->first, 0};
    while (f->consumed < upto) {
        if (!f->str && !f->str_err)
            f->str_err = tn_store_stream_begin(f->s, &f->str, &f->str_msg);
        uint32_t len;
        uint8_t *enc = rec_next(&f->rd, &len);
        if (f->consumed >= f->pre)
            chain_one(enc, len, f->head);
        else if (f->consumed + 1 == f->pre)
            memcpy(f->head, f->prehead, TN_HASH_LEN);
        if (f->str)
            append_one(f, f->str, f->consumed, enc, len);
        f->consumed++;
    }
}

/* After the map grew: every record again, already chained. */
static tn_err refeed(void *ctx, tn_stream *st)
{
    struct feeder *f = ctx;
    struct rpos p = {f->first, 0};
    for (size_t i = 0; i < f->consumed; i++) {
        uint32_t len;
        const uint8_t *enc = rec_next(&p, &len);
        append_one(f, st, i, enc, len);
    }
    return TN_OK;
}

/* The chain head, and with ckpt the checkpoint, into the batch's meta writes. */
static tn_err meta_puts(struct feeder *f, tn_batch *b, bool ckpt)
{
    tn_err e = tn_batch_put(b, TN_DB_META, TN_META_CHAIN_HEAD, strlen(TN_META_CHAIN_HEAD),
                            f->head, TN_HASH_LEN);
    if (e || !ckpt)
        return e;
    /* this writer hashed every event up to here itself: the next open starts there */
    uint8_t cp[8 + TN_HASH_LEN];
    tn_put_be64(cp, f->last_seq + f->consumed);
    memcpy(cp + 8, f->head, TN_HASH_LEN);
    return tn_batch_put(b, TN_DB_META, TN_META_CHECKPOINT, strlen(TN_META_CHECKPOINT), cp,
                        sizeof(cp));
}

/* Forget the stream and the read position (an abort, or after a commit). */
static void forget(struct feeder *f)
{
    tn_store_stream_abort(f->str);
    f->str = NULL;
    f->str_err = TN_OK;
    f->consumed = f->pre = 0;
    f->rd = (struct rpos){NULL, 0};
}

/* Commit the set (fed up to its end) with `b`; the chain goes on from it when it
 * succeeded. */
static tn_err do_commit(struct feeder *f, tn_batch *b, bool ckpt, tn_errmsg *m)
{
    tn_err e = f->str_err;
    if (e)
        *m = f->str_msg;
    else if (!f->str)
        e = tn_store_stream_begin(f->s, &f->str, m);
    if (!e && (e = meta_puts(f, b, ckpt)))
        tn_errmsg_set(m, e, "cannot prepare commit: %s", tn_strerror(e));
    if (!e) {
        e = tn_store_stream_commit(f->str, b, refeed, f, m);
        f->str = NULL;
    }
    if (!e)
        f->last_seq += f->consumed;
    forget(f);
    return e;
}

/* The committer's part of a started commit: feed the rest, commit, go on with the
 * other set. Called with mu held; returns with it held. */
static void run_job(tn_committer *c)
{
    size_t upto = c->set[c->cs].published;
    tn_batch *b = c->batch;
    bool ckpt = c->ckpt;
    take_set(&c->f, &c->set[c->cs]);
    pthread_mutex_unlock(&c->mu);
    feed(&c->f, upto);
    /* the set is chained: a waiting engine thread may chain the next one on it */
    pthread_mutex_lock(&c->mu);
    memcpy(c->ready_head, c->f.head, TN_HASH_LEN);
    c->head_ready = true;
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    if (c->delay_ns)
        nanosleep(&(struct timespec){c->delay_ns / 1000000000, c->delay_ns % 1000000000}, NULL);
    tn_errmsg m = {{0}};
    tn_err e = do_commit(&c->f, b, ckpt, &m);
    pthread_mutex_lock(&c->mu);
    c->set[c->cs].published = 0;
    c->cs = 1 - c->cs;
    c->result = e;
    c->msg = m;
    memcpy(c->job_head, c->f.head, TN_HASH_LEN);
    c->settled = true;
    pthread_cond_broadcast(&c->done);
}

static void *run(void *arg)
{
    tn_committer *c = arg;
    pthread_setname_np(pthread_self(), "tern-commit");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        struct stage *s = &c->set[c->cs];
        bool job = c->job && !c->settled && c->job_set == c->cs;
        if (c->cmd == CMD_STOP)
            break;
        if (c->helping) { /* it hashes the set we read next; it stops soon */
            c->idle = true;
            pthread_cond_wait(&c->wake, &c->mu);
            c->idle = false;
        } else if (c->cmd == CMD_ABORT) {
            pthread_mutex_unlock(&c->mu);
            forget(&c->f);
            pthread_mutex_lock(&c->mu);
            s->published = 0;
            c->cmd = CMD_NONE;
            pthread_cond_broadcast(&c->done);
        } else if (job) {
            run_job(c);
        } else if (c->f.consumed < s->published) {
            size_t upto = s->published;
            take_set(&c->f, s);
            pthread_mutex_unlock(&c->mu);
            feed(&c->f, upto);
            pthread_mutex_lock(&c->mu);
        } else {
            c->idle = true;
            pthread_cond_wait(&c->wake, &c->mu);
            c->idle = false;
        }
    }
    pthread_mutex_unlock(&c->mu);
    forget(&c->f);
    return NULL;
}

tn_err tn_committer_new(tn_store *s, tn_committer **out)
{
    tn_committer *c = calloc(1, sizeof(*c));
    if (!c)
        return TN_ERR_NOMEM;
    c->s = s;
    c->f.s = s;
    const char *d = getenv("TERN_FAULT_COMMIT_DELAY_MS");
    if (d && *d) {
        c->delay_ns = strtoll(d, NULL, 10) * 1000000LL;
        if (c->delay_ns < 0 || c->delay_ns > 10000000000LL)
            c->delay_ns = 0;
        tn_info("log", "msg=\"faults injected\" commit_delay_ms=%lld",
                (long long)(c->delay_ns / 1000000));
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->done, NULL);
    *out = c;
    return TN_OK;
}

/* The thread, started at the first batch big enough to hand over (a process that only
 * ever commits small batches never has it). false: it cannot start; batches are then
 * committed by the engine thread itself. */
static bool have_thread(tn_committer *c)
{
    if (!c->started && pthread_create(&c->th, NULL, run, c) == 0)
        c->started = true;
    return c->started;
}

static void free_chunks(struct chunk *k)
{
    while (k) {
        struct chunk *n = k->next;
        free(k);
        k = n;
    }
}

void tn_committer_free(tn_committer *c)
{
    if (!c)
        return;
    uint8_t h[TN_HASH_LEN];
    tn_committer_wait(c, h, NULL);
    tn_committer_abort(c);
    if (c->started) {
        pthread_mutex_lock(&c->mu);
        c->cmd = CMD_STOP;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->th, NULL);
    }
    free_chunks(c->set[0].first);
    free_chunks(c->set[1].first);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* The chunk for a record of `need` bytes after the set's current one: the next kept one
 * when it is big enough, else a new one (a kept one too small is freed with the rest of
 * the chain: nothing of this batch is in it). */
static struct chunk *next_chunk(struct stage *s, size_t need)
{
    struct chunk *k = s->cur, **link = k ? &k->next : &s->first;
    if (*link && (*link)->cap < need) {
        free_chunks(*link);
        *link = NULL;
    }
    if (!*link) {
        size_t cap = need > CHUNK_BYTES ? need : CHUNK_BYTES;
        struct chunk *n = malloc(sizeof(*n) + cap);
        if (!n)
            return NULL;
        tn_populate(n, sizeof(*n) + cap);
        n->next = NULL;
        n->cap = cap;
        *link = n;
    }
    if (k && k->used + 4 <= k->cap)
        memset(k->data + k->used, 0, 4);
    (*link)->used = 0;
    return *link;
}

tn_err tn_committer_stage(tn_committer *c, const void *enc, size_t len)
{
    if (len < TN_HASH_LEN || len > UINT32_MAX - 4)
        return TN_ERR_INVAL;
    struct stage *s = &c->set[c->es];
    size_t need = 4 + len;
    struct chunk *k = s->cur;
    if (!k || k->used + need > k->cap) {
        if (!(k = next_chunk(s, need)))
            return TN_ERR_NOMEM;
        s->cur = k;
    }
    uint32_t l32 = (uint32_t)len;
    memcpy(k->data + k->used, &l32, 4);
    memcpy(k->data + k->used + 4, enc, len);
    k->used += need;
    if (++s->staged - s->handed >= PUBLISH_EVERY && have_thread(c)) {
        pthread_mutex_lock(&c->mu);
        s->published = s->staged;
        if (c->idle)
            pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->mu);
        s->handed = s->staged;
    }
    return TN_OK;
}

uint64_t tn_committer_helped(tn_committer *c)
{
    pthread_mutex_lock(&c->mu);
    uint64_t n = c->helped;
    pthread_mutex_unlock(&c->mu);
    return n;
}

size_t tn_committer_staged(const tn_committer *c)
{
    return c->set[c->es].staged;
}

bool tn_committer_handed(const tn_committer *c)
{
    return c->set[c->es].handed > 0;
}

/* A set starts over: nothing staged; a few chunks kept. */
static void rewind_set(struct stage *s)
{
    s->staged = s->handed = s->prehashed = 0;
    s->hrd = (struct rpos){NULL, 0};
    s->cur = NULL;
    struct chunk *k = s->first;
    for (int i = 1; k && i < CHUNKS_KEPT; i++)
        k = k->next;
    if (k) {
        free_chunks(k->next);
        k->next = NULL;
    }
}

void tn_committer_reset(tn_committer *c, uint64_t last_seq, const uint8_t head[TN_HASH_LEN])
{
    pthread_mutex_lock(&c->mu);
    c->f.last_seq = last_seq;
    memcpy(c->f.head, head, TN_HASH_LEN);
    pthread_mutex_unlock(&c->mu);
}

void tn_committer_start(tn_committer *c, tn_batch *b, bool ckpt)
{
    struct stage *s = &c->set[c->es];
    pthread_mutex_lock(&c->mu);
    s->published = s->staged;
    c->batch = b;
    c->ckpt = ckpt;
    c->job = true;
    c->settled = false;
    c->head_ready = false;
    c->job_set = c->es;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    c->es = 1 - c->es;
    rewind_set(&c->set[c->es]); /* committed two starts ago: the committer is done with it */
}

/* The engine thread, waiting with mu held for a commit whose set is chained: chain and
 * hash the next HELP_STEP records of the set it stages, on that commit's head, so that
 * the committer only appends them. false: nothing to do. Returns with mu held. */
static bool help(tn_committer *c)
{
    struct stage *s = &c->set[c->es];
    if (!c->head_ready || s->prehashed >= s->staged)
        return false;
    uint8_t head[TN_HASH_LEN];
    memcpy(head, s->prehashed ? s->prehead : c->ready_head, TN_HASH_LEN);
    if (!s->hrd.k)
        s->hrd = (struct rpos){s->first, 0};
    size_t from = s->prehashed, upto = s->staged;
    if (upto - from > HELP_STEP)
        upto = from + HELP_STEP;
    c->helping = true;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = from; i < upto; i++) {
        uint32_t len;
        uint8_t *enc = rec_next(&s->hrd, &len);
        chain_one(enc, len, head);
    }
    pthread_mutex_lock(&c->mu);
    s->prehashed = upto;
    memcpy(s->prehead, head, TN_HASH_LEN);
    c->helped += upto - from;
    c->helping = false;
    if (c->idle)
        pthread_cond_signal(&c->wake);
    return true;
}

tn_err tn_committer_wait(tn_committer *c, uint8_t head[TN_HASH_LEN], tn_errmsg *msg)
{
    pthread_mutex_lock(&c->mu);
    if (!c->job) {
        pthread_mutex_unlock(&c->mu);
        return TN_OK;
    }
    while (!c->settled)
        if (!help(c))
            pthread_cond_wait(&c->done, &c->mu);
    c->job = false;
    tn_err e = c->result;
    if (e && msg)
        *msg = c->msg;
    else if (!e)
        memcpy(head, c->job_head, TN_HASH_LEN);
    c->batch = NULL;
    pthread_mutex_unlock(&c->mu);
    return e;
}

tn_err tn_committer_commit(tn_committer *c, tn_batch *b, bool ckpt, uint8_t head[TN_HASH_LEN],
                           tn_errmsg *msg)
{
    struct stage *s = &c->set[c->es];
    if (s->handed) {
        tn_committer_start(c, b, ckpt);
        return tn_committer_wait(c, head, msg);
    }
    /* nothing handed over and no commit started: the committer has nothing to do until
     * the next hand-over, so where the chain goes on is ours to read and to move */
    struct feeder f = {.s = c->s, .last_seq = c->f.last_seq};
    take_set(&f, s);
    memcpy(f.head, c->f.head, TN_HASH_LEN);
    tn_errmsg m = {{0}};
    feed(&f, s->staged);
    tn_err e = do_commit(&f, b, ckpt, &m);
    if (e && msg)
        *msg = m;
    if (!e) {
        memcpy(head, f.head, TN_HASH_LEN);
        memcpy(c->f.head, f.head, TN_HASH_LEN);
        c->f.last_seq = f.last_seq;
    }
    rewind_set(s);
    return e;
}

void tn_committer_abort(tn_committer *c)
{
    struct stage *s = &c->set[c->es];
    if (s->handed) {
        pthread_mutex_lock(&c->mu);
        c->cmd = CMD_ABORT;
        pthread_cond_signal(&c->wake);
        while (c->cmd == CMD_ABORT)
            pthread_cond_wait(&c->done, &c->mu);
        pthread_mutex_unlock(&c->mu);
    }
    rewind_set(s);
}

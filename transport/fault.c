/* A fault-injecting transport: wraps any tn_tx and, on send, drops, duplicates, delays and
 * reorders messages as a seeded PRNG decides from the seed and the message's index. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "transport.h"

#define COMP                 "tx"
#define DEFAULT_MAX_DELAY_MS 50u
#define MAX_DELAY_LIMIT_MS   3600000u
#define BUSY_RETRY_NS        1000000 /* a held message the inner transport refused: retry in 1 ms */

/* A message held back: delayed, reordered, or refused by a busy inner transport. */
typedef struct held {
    struct held *next;
    int64_t due;     /* CLOCK_MONOTONIC ns */
    unsigned copies; /* 2 when duplicated: both copies leave together */
    size_t len;
    unsigned char data[];
} held;

typedef struct faulttx {
    tn_tx inner;
    tn_fault_opts f;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the thread: a new held message, close, stop */
    pthread_cond_t idle; /* flushers: nothing is held */
    pthread_t thread;
    bool closed, stop;
    uint64_t index; /* sends accepted so far: the index of the next message */
    held *queue;    /* sorted by due */
    held *swap;     /* the message waiting for the next one to overtake it */
    tn_fault_counters c;
} faulttx;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- decisions ---------------------------------------------------------------------------
 * splitmix64: each message's draws come from a state mixed from the seed and the index, so
 * a decision depends on nothing else (not on timing, not on earlier draws). */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t next64(uint64_t *s)
{
    return mix64(*s += 0x9E3779B97F4A7C15ull);
}

static double unit01(uint64_t *s)
{
    return (double)(next64(s) >> 11) * 0x1.0p-53;
}

typedef struct decision {
    bool drop, dup, delay, reorder;
    uint32_t delay_ms;
} decision;

static decision decide(const tn_fault_opts *f, uint64_t index)
{
    uint64_t s = mix64(f->seed ^ mix64(index + 0x632BE59BD9B4E019ull));
    decision d;
    /* Always five draws in the same order, whatever the outcome. */
    d.drop = unit01(&s) < f->drop;
    d.dup = unit01(&s) < f->dup;
    d.delay = unit01(&s) < f->delay;
    d.reorder = unit01(&s) < f->reorder;
    uint64_t r = next64(&s);
    d.delay_ms = f->max_delay_ms ? 1 + (uint32_t)(r % f->max_delay_ms) : 0;
    return d;
}

/* ---- held messages ---------------------------------------------------------------------- */

static held *held_new(const void *buf, size_t len, unsigned copies, int64_t due)
{
    held *h = malloc(sizeof(*h) + len);
    if (!h)
        return NULL;
    h->next = NULL;
    h->due = due;
    h->copies = copies;
    h->len = len;
    memcpy(h->data, buf, len);
    return h;
}

/* Insert by due time, after those due at the same time (FIFO among equals). mu held. */
static void queue_insert(faulttx *t, held *h)
{
    held **p = &t->queue;
    while (*p && (*p)->due <= h->due)
        p = &(*p)->next;
    h->next = *p;
    *p = h;
    pthread_cond_signal(&t->wake);
}

/* Hand h's copies to the inner transport; what it refuses for now goes back to the queue
 * (due now) for the thread to retry. mu held. */
static void release(faulttx *t, held *h)
{
    while (h->copies > 0) {
        tn_err e = tn_tx_send(t->inner, h->data, h->len);
        if (e == TN_ERR_BUSY) {
            h->due = mono_ns() + BUSY_RETRY_NS;
            queue_insert(t, h);
            return;
        }
        if (e == TN_OK) {
            t->c.forwarded++;
        } else {
            t->c.discarded++;
            tn_warn(COMP, "msg=\"held message lost\" err=%s", tn_errname(e));
        }
        h->copies--;
    }
    free(h);
}

static uint64_t held_count(const faulttx *t)
{
    uint64_t n = t->swap ? t->swap->copies : 0;
    for (const held *h = t->queue; h; h = h->next)
        n += h->copies;
    return n;
}

static void *fault_main(void *arg)
{
    faulttx *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        int64_t now = mono_ns();
        if (t->swap && t->swap->due <= now) { /* no next message came: let it go */
            held *h = t->swap;
            t->swap = NULL;
            release(t, h);
            continue;
        }
        if (t->queue && t->queue->due <= now) {
            held *h = t->queue;
            t->queue = h->next;
            release(t, h);
            continue;
        }
        if (!t->queue && !t->swap)
            pthread_cond_broadcast(&t->idle);
        int64_t due = INT64_MAX;
        if (t->queue)
            due = t->queue->due;
        if (t->swap && t->swap->due < due)
            due = t->swap->due;
        if (due == INT64_MAX) {
            pthread_cond_wait(&t->wake, &t->mu);
        } else {
            /* The condition variable waits on CLOCK_MONOTONIC (set at init). */
            struct timespec ts = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
            pthread_cond_timedwait(&t->wake, &t->mu, &ts);
        }
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

/* ---- operations ------------------------------------------------------------------------- */

static tn_err f_listen(void *self, const char *url, tn_errmsg *msg)
{
    faulttx *t = self;
    return tn_tx_listen(t->inner, url, msg);
}

static tn_err f_dial(void *self, const char *url, tn_errmsg *msg)
{
    faulttx *t = self;
    return tn_tx_dial(t->inner, url, msg);
}

static tn_err f_bound_url(void *self, char *buf, size_t cap)
{
    faulttx *t = self;
    return tn_tx_bound_url(t->inner, buf, cap);
}

static tn_err f_send(void *self, const void *buf, size_t len)
{
    faulttx *t = self;
    tn_err e = TN_OK;
    pthread_mutex_lock(&t->mu);
    if (t->closed) {
        pthread_mutex_unlock(&t->mu);
        return TN_ERR_CLOSED;
    }
    decision d = decide(&t->f, t->index);
    unsigned copies = d.dup ? 2 : 1;
    if (d.drop) {
        t->c.dropped++;
    } else if (d.delay || (d.reorder && !t->swap)) {
        int64_t wait_ms = d.delay ? d.delay_ms : t->f.max_delay_ms;
        held *h = held_new(buf, len, copies, mono_ns() + wait_ms * 1000000);
        if (!h) {
            pthread_mutex_unlock(&t->mu);
            return TN_ERR_NOMEM; /* not accepted: the index is not used */
        }
        if (d.delay) {
            t->c.delayed++;
            queue_insert(t, h);
        } else {
            t->c.reordered++;
            t->swap = h;
            pthread_cond_signal(&t->wake);
        }
    } else {
        /* Straight through. A refusal (BUSY) is the caller's to retry: the index is not
         * used, so the retry meets the same decision. */
        e = tn_tx_send(t->inner, buf, len);
        if (e != TN_OK) {
            pthread_mutex_unlock(&t->mu);
            return e;
        }
        t->c.forwarded++;
        if (copies == 2) {
            held *h = held_new(buf, len, 1, 0);
            if (h)
                release(t, h);
            else
                t->c.discarded++;
        }
        if (t->swap) { /* the held one goes after this one: swapped */
            held *h = t->swap;
            t->swap = NULL;
            release(t, h);
        }
    }
    if (d.dup && !d.drop)
        t->c.duplicated++;
    t->index++;
    t->c.sent++;
    if (!t->queue && !t->swap)
        pthread_cond_broadcast(&t->idle);
    pthread_mutex_unlock(&t->mu);
    return e;
}

static void f_close(void *self)
{
    faulttx *t = self;
    pthread_mutex_lock(&t->mu);
    t->closed = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
    tn_tx_close(t->inner);
}

static void f_free(void *self)
{
    faulttx *t = self;
    f_close(t);
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->thread, NULL);
    if (t->swap) {
        t->swap->next = t->queue;
        t->queue = t->swap;
    }
    for (held *h = t->queue, *n; h; h = n) {
        n = h->next;
        free(h);
    }
    tn_tx_free(&t->inner);
    pthread_cond_destroy(&t->wake);
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static const tn_tx_ops fault_ops = {
    .name = "fault",
    .listen = f_listen,
    .dial = f_dial,
    .send = f_send,
    .bound_url = f_bound_url,
    .close = f_close,
    .free = f_free,
};

/* ---- construction and options ----------------------------------------------------------- */

tn_err tn_tx_fault_wrap(tn_tx inner, const tn_fault_opts *f, tn_tx *out)
{
    faulttx *t = calloc(1, sizeof(*t));
    if (!t) {
        tn_tx_free(&inner);
        return TN_ERR_NOMEM;
    }
    t->inner = inner;
    t->f = *f;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->wake, &ca);
    pthread_cond_init(&t->idle, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&t->thread, NULL, fault_main, t) != 0) {
        pthread_cond_destroy(&t->wake);
        pthread_cond_destroy(&t->idle);
        pthread_mutex_destroy(&t->mu);
        free(t);
        tn_tx_free(&inner);
        return TN_ERR_NOMEM;
    }
    out->ops = &fault_ops;
    out->self = t;
    return TN_OK;
}

bool tn_tx_fault_counters(tn_tx t, tn_fault_counters *out)
{
    if (t.ops != &fault_ops)
        return false;
    faulttx *x = t.self;
    pthread_mutex_lock(&x->mu);
    *out = x->c;
    out->held = held_count(x);
    pthread_mutex_unlock(&x->mu);
    return true;
}

tn_err tn_tx_fault_flush(tn_tx t, int timeout_ms)
{
    if (t.ops != &fault_ops)
        return TN_ERR_INVAL;
    faulttx *x = t.self;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t until =
        (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)timeout_ms * 1000000;
    ts.tv_sec = (time_t)(until / 1000000000);
    ts.tv_nsec = (long)(until % 1000000000);
    tn_err e = TN_OK;
    pthread_mutex_lock(&x->mu);
    if (x->swap) { /* no next message is coming: let the swapped one go now */
        x->swap->due = 0;
        pthread_cond_signal(&x->wake);
    }
    while (x->queue || x->swap) {
        if (pthread_cond_timedwait(&x->idle, &x->mu, &ts) == ETIMEDOUT &&
            (x->queue || x->swap)) {
            e = TN_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&x->mu);
    return e;
}

static tn_err parse_prob(const char *key, const char *v, double *out, tn_errmsg *msg)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(d) || d < 0 || d > 1)
        return tn_errmsg_set(msg, TN_ERR_PARSE,
                             "faults: %s=%s: expected a probability between 0 and 1", key, v);
    *out = d;
    return TN_OK;
}

static tn_err parse_uint(const char *key, const char *v, uint64_t max, uint64_t *out,
                         tn_errmsg *msg)
{
    char *end;
    errno = 0;
    unsigned long long u = strtoull(v, &end, 0);
    if (errno || end == v || *end || *v == '-' || u > max)
        return tn_errmsg_set(msg, TN_ERR_PARSE,
                             "faults: %s=%s: expected an integer from 0 to %" PRIu64, key, v,
                             max);
    *out = u;
    return TN_OK;
}

tn_err tn_fault_opts_parse(const char *s, tn_fault_opts *out, tn_errmsg *msg)
{
    tn_fault_opts f = {.max_delay_ms = DEFAULT_MAX_DELAY_MS};
    char item[128];
    tn_err e = TN_OK;
    const char *p = s ? s : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        const char *next = p[n] ? p + n + 1 : p + n;
        /* trim spaces */
        while (n && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n == 0) {
            p = next;
            continue;
        }
        if (n >= sizeof(item))
            return tn_errmsg_set(msg, TN_ERR_PARSE, "faults: item too long: %.40s...", p);
        memcpy(item, p, n);
        item[n] = '\0';
        char *eq = strchr(item, '=');
        if (!eq)
            return tn_errmsg_set(msg, TN_ERR_PARSE, "faults: %s: expected key=value", item);
        *eq = '\0';
        char *k = item, *v = eq + 1;
        for (char *end = eq; end > k && (end[-1] == ' ' || end[-1] == '\t'); end--)
            end[-1] = '\0';
        while (*v == ' ' || *v == '\t')
            v++;
        uint64_t u;
        if (strcmp(k, "seed") == 0)
            e = parse_uint(k, v, UINT64_MAX, &f.seed, msg);
        else if (strcmp(k, "drop") == 0)
            e = parse_prob(k, v, &f.drop, msg);
        else if (strcmp(k, "dup") == 0)
            e = parse_prob(k, v, &f.dup, msg);
        else if (strcmp(k, "delay") == 0)
            e = parse_prob(k, v, &f.delay, msg);
        else if (strcmp(k, "reorder") == 0)
            e = parse_prob(k, v, &f.reorder, msg);
        else if (strcmp(k, "max_delay_ms") == 0) {
            if ((e = parse_uint(k, v, MAX_DELAY_LIMIT_MS, &u, msg)) == TN_OK)
                f.max_delay_ms = (uint32_t)u;
        } else
            return tn_errmsg_set(msg, TN_ERR_PARSE,
                                 "faults: unknown key \"%s\"; known: seed, drop, dup, delay, "
                                 "max_delay_ms, reorder",
                                 k);
        if (e)
            return e;
        p = next;
    }
    *out = f;
    return TN_OK;
}

tn_err tn_tx_fault_from_env(tn_tx inner, tn_tx *out, tn_errmsg *msg)
{
    const char *s = getenv("TERN_FAULTS");
    if (!s || !*s) {
        *out = inner;
        return TN_OK;
    }
    tn_fault_opts f;
    tn_err e = tn_fault_opts_parse(s, &f, msg);
    if (e) {
        if (msg) {
            char m[sizeof(msg->text)];
            memcpy(m, msg->text, sizeof(m));
            tn_errmsg_set(msg, e, "TERN_FAULTS: %.*s", (int)sizeof(m) - 16, m);
        }
        return e;
    }
    if ((e = tn_tx_fault_wrap(inner, &f, out)) != TN_OK)
        return tn_errmsg_set(msg, e, "TERN_FAULTS: %s", tn_strerror(e));
    tn_info(COMP,
            "msg=\"faults injected\" seed=%" PRIu64
            " drop=%g dup=%g delay=%g max_delay_ms=%u reorder=%g",
            f.seed, f.drop, f.dup, f.delay, f.max_delay_ms, f.reorder);
    return TN_OK;
}

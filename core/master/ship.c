/* Log shipping: the leader's server and gate, the standby's follower (see ship.h). */
#include "ship.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "follow.h"
#include "log.h"
#include "logread.h"
#include "util.h"

#define MAX_STANDBYS  16
#define PULL_MAX      4096
#define PULL_BYTES    (8u << 20)
#define STANDBY_FRESH 10000000000LL /* a standby not heard from for 10 s does not count */
#define GATE_WARN_NS  5000000000LL

typedef struct standby {
    char name[128];
    uint64_t acked; /* it holds every event up to this seq */
    int64_t seen;   /* monotonic ns */
} standby;

struct tn_ship {
    tn_rpc_server *rpc;
    tn_evlog *log;
    bool insecure;
    uint32_t sync_n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    standby sb[MAX_STANDBYS];
    uint32_t nsb;
};

static void hex(const uint8_t *h, char *out)
{
    for (int i = 0; i < TN_HASH_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Who may pull the log: the log holds every definition, param and output. */
static bool peer_ok(const tn_ship *s, const tn_rpc_peer *p)
{
    switch (p->kind) {
    case TN_RPC_PEER_INPROC: return true;
    case TN_RPC_PEER_IPC: return p->uid == (int64_t)getuid() || p->uid == 0;
    case TN_RPC_PEER_TLS: return p->tls_verified;
    default: return s->insecure;
    }
}

static void note_ack(tn_ship *s, tn_str name, uint64_t acked)
{
    pthread_mutex_lock(&s->mu);
    standby *b = NULL;
    for (uint32_t i = 0; i < s->nsb && !b; i++)
        if (tn_str_eq(name, s->sb[i].name))
            b = &s->sb[i];
    if (!b && s->nsb < MAX_STANDBYS) {
        b = &s->sb[s->nsb++];
        snprintf(b->name, sizeof(b->name), "%.*s", (int)name.len, name.p);
        tn_info("ship", "msg=\"standby following\" standby=%s from=%" PRIu64, b->name,
                acked + 1);
    }
    if (b) {
        b->acked = acked;
        b->seen = tn_mono_ns();
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void handle(void *arg, const tn_rpc_peer *peer, const void *req, size_t len, void **rep,
                   size_t *rlen)
{
    tn_ship *s = arg;
    tn_ctl_req r;
    tn_ctl_rep rp = {.ok = false, .code = 1};
    tn_buf data = {0};
    char why[200] = "", head[2 * TN_HASH_LEN + 1] = "";
    if (len == 0) {
        rp = (tn_ctl_rep){.ok = true, .text = TN_STR("pong")};
    } else if (!peer_ok(s, peer)) {
        snprintf(why, sizeof(why),
                 "permission denied: only this host's user or a certificate "
                 "the CA signed may pull the log");
    } else if (tn_ctl_req_decode(req, len, &r) != TN_OK || !tn_str_eq(r.cmd, "log.pull") ||
               r.name.len == 0) {
        snprintf(why, sizeof(why), "malformed log.pull request");
    } else {
        uint32_t n = 0;
        uint64_t last = 0, from = r.offset ? r.offset : 1;
        uint8_t h[TN_HASH_LEN];
        uint32_t max = r.slots > 0 && r.slots < PULL_MAX ? (uint32_t)r.slots : PULL_MAX;
        if (r.slots == 0 && r.dry_run)
            max = 0; /* a probe of the hash before `from` only */
        tn_err e =
            tn_follow_read(tn_evlog_store(s->log), from, max, PULL_BYTES, &data, &n, &last, h);
        if (e == TN_ERR_NOENT) {
            rp.code = 3; /* the standby is ahead of us: it diverged */
            rp.offset = last;
            snprintf(why, sizeof(why), "ahead: seq %" PRIu64 " is past our last %" PRIu64,
                     from - 1, last);
        } else if (e) {
            snprintf(why, sizeof(why), "cannot read the log: %s", tn_strerror(e));
        } else {
            if (!r.dry_run)
                note_ack(s, r.name, from - 1);
            hex(h, head);
            rp = (tn_ctl_rep){.ok = true,
                              .data = {(const char *)data.data, (uint32_t)data.size},
                              .offset = last,
                              .text = tn_str_c(head)};
        }
    }
    if (!rp.ok)
        rp.text = tn_str_c(why);
    tn_buf b = {0};
    if (tn_ctl_rep_encode(&rp, &b) == TN_OK) {
        *rep = b.data;
        *rlen = b.size;
    } else {
        tn_buf_free(&b);
    }
    tn_buf_free(&data);
}

tn_err tn_ship_serve(const char *url, const tn_rpc_tls *tls, bool insecure, tn_evlog *log,
                     uint32_t sync_n, tn_ship **out, tn_errmsg *msg)
{
    tn_ship *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    s->log = log;
    s->insecure = insecure;
    s->sync_n = sync_n;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    tn_err e = tn_rpc_serve_peer(url, tls, handle, s, &s->rpc, msg);
    if (e) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s);
        return e;
    }
    *out = s;
    return TN_OK;
}

void tn_ship_close(tn_ship *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    tn_rpc_server *rpc = s->rpc;
    s->rpc = NULL;
    pthread_mutex_unlock(&s->mu);
    tn_rpc_server_free(rpc);
}

void tn_ship_free(tn_ship *s)
{
    if (!s)
        return;
    tn_ship_close(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static uint32_t holding_locked(tn_ship *s, uint64_t seq, int64_t now, uint32_t *fresh)
{
    uint32_t n = 0, f = 0;
    for (uint32_t i = 0; i < s->nsb; i++) {
        if (now - s->sb[i].seen > STANDBY_FRESH)
            continue;
        f++;
        n += s->sb[i].acked >= seq;
    }
    if (fresh)
        *fresh = f;
    return n;
}

uint32_t tn_ship_standbys(tn_ship *s, uint64_t seq, uint32_t *holding)
{
    pthread_mutex_lock(&s->mu);
    uint32_t fresh;
    uint32_t n = holding_locked(s, seq, tn_mono_ns(), &fresh);
    pthread_mutex_unlock(&s->mu);
    if (holding)
        *holding = n;
    return fresh;
}

uint64_t tn_ship_last_seq(tn_ship *s)
{
    tn_buf b = {0};
    uint32_t n = 0;
    uint64_t last = 0;
    (void)tn_follow_read(tn_evlog_store(s->log), 1, 0, 0, &b, &n, &last, NULL);
    tn_buf_free(&b);
    return last;
}

void tn_ship_gate(void *arg, uint64_t last_seq)
{
    tn_ship *s = arg;
    if (!s || s->sync_n == 0)
        return;
    pthread_mutex_lock(&s->mu);
    int64_t warned = tn_mono_ns();
    while (!s->stop) {
        int64_t now = tn_mono_ns();
        uint32_t fresh;
        uint32_t n = holding_locked(s, last_seq, now, &fresh);
        if (n >= s->sync_n)
            break;
        if (now - warned > GATE_WARN_NS) {
            tn_warn("ship",
                    "msg=\"effects wait for standbys (--sync-standbys)\" seq=%" PRIu64
                    " holding=%u needed=%u standbys=%u",
                    last_seq, n, s->sync_n, fresh);
            warned = now;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 50000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- the standby's side -------------------------------------------------------------- */

struct tn_follower {
    tn_follower_opts o;
    char name[128], data[4096];
    tn_evlog *log;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a hold ended */
    bool stop;
    bool swapping;       /* the log is being replaced (drop_tail): no new holds */
    uint32_t holds;      /* readers holding log (tn_follower_hold) */
    uint64_t seq;        /* the last seq appended */
    uint64_t leader_seq; /* the leader's last seq, from its last reply */
};

static bool stopping(tn_follower *f)
{
    pthread_mutex_lock(&f->mu);
    bool s = f->stop;
    pthread_mutex_unlock(&f->mu);
    return s;
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static tn_err open_log(tn_follower *f, const char *dir, tn_evlog **out, tn_errmsg *msg)
{
    tn_evlog_opts lo = {.create = true, .follower = true};
    return tn_evlog_open(dir, &lo, out, msg);
}

/* One pull from `from` (probe: only the hash before it). The reply in *rp, its buffer in
 * *raw (the caller frees it). */
static tn_err pull(tn_follower *f, const char *url, uint64_t from, bool probe, tn_ctl_rep *rp,
                   void **raw, tn_errmsg *msg)
{
    tn_ctl_req r = {.cmd = TN_STR("log.pull"),
                    .name = tn_str_c(f->name),
                    .offset = from,
                    .slots = probe ? 0 : PULL_MAX,
                    .dry_run = probe};
    tn_buf b = {0};
    tn_err e = tn_ctl_req_encode(&r, &b);
    size_t rl = 0;
    *raw = NULL;
    if (!e)
        e = tn_rpc_call_bounded(url, &f->o.tls, b.data, b.size, 500, raw, &rl, msg);
    tn_buf_free(&b);
    if (!e && tn_ctl_rep_decode(*raw, rl, rp) != TN_OK)
        e = tn_errmsg_set(msg, TN_ERR_CORRUPT, "%s: malformed log.pull reply", url);
    return e;
}

/* The hash of our own event seq, hex. */
static bool own_hash(tn_follower *f, uint64_t seq, char *out)
{
    tn_buf b = {0};
    uint32_t n;
    uint64_t last;
    uint8_t h[TN_HASH_LEN];
    tn_err e = tn_follow_read(tn_evlog_store(f->log), seq + 1, 0, 0, &b, &n, &last, h);
    tn_buf_free(&b);
    if (e)
        return false;
    hex(h, out);
    return true;
}

/* Whether our event seq is the leader's (the hash chain: equal hashes, equal prefixes). */
static int agrees(tn_follower *f, const char *url, uint64_t seq)
{
    tn_ctl_rep rp;
    void *raw;
    char mine[2 * TN_HASH_LEN + 1];
    if (pull(f, url, seq + 1, true, &rp, &raw, NULL) != TN_OK || !own_hash(f, seq, mine)) {
        free(raw);
        return -1;
    }
    int same =
        rp.ok && rp.text.len == 2 * TN_HASH_LEN && memcmp(rp.text.p, mine, rp.text.len) == 0;
    free(raw);
    return same;
}

/* Replacing the log (swapping): wait until no reader holds it, and refuse new holds until
 * it is done (swapping false again). */
static void holds_wait(tn_follower *f, bool swapping)
{
    pthread_mutex_lock(&f->mu);
    f->swapping = swapping;
    while (swapping && f->holds)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

/* The diverged store goes aside as DATA/diverged-SEQ.mdb, the rebuilt one (tmp) in its
 * place. */
static bool swap_stores(tn_follower *f, const char *tmp, uint64_t common)
{
    char p[4300], q[4300];
    snprintf(p, sizeof(p), "%s/data.mdb", f->data);
    snprintf(q, sizeof(q), "%s/diverged-%" PRIu64 ".mdb", f->data, common + 1);
    if (rename(p, q) != 0)
        return false;
    snprintf(q, sizeof(q), "%s/data.mdb", tmp);
    if (rename(q, p) != 0)
        return false;
    snprintf(q, sizeof(q), "%s/lock.mdb", tmp);
    unlink(q);
    snprintf(q, sizeof(q), "%s/writer.lock", tmp);
    unlink(q);
    rmdir(tmp);
    return true;
}

/* Our log and the leader's diverged (we led, and wrote events that were never shipped):
 * find the last seq both hold (a binary search on the chain hashes), keep our events up to
 * it in a new store, and set the old one aside as DATA/diverged-SEQ.mdb for the operator.
 * True when the log was rebuilt. */
static bool drop_tail(tn_follower *f, const char *url, tn_errmsg *msg)
{
    uint64_t lo = 0, hi = tn_evlog_last_seq(f->log);
    while (lo < hi) { /* invariant: lo agrees (0 always does) */
        uint64_t mid = lo + (hi - lo + 1) / 2;
        int a = agrees(f, url, mid);
        if (a < 0)
            return false;
        if (a)
            lo = mid;
        else
            hi = mid - 1;
    }
    uint64_t ours = tn_evlog_last_seq(f->log);
    tn_warn("ship",
            "msg=\"our log diverged from the leader's: dropping our unreplicated tail\" "
            "common=%" PRIu64 " ours=%" PRIu64 " dropped=%" PRIu64,
            lo, ours, ours - lo);
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s/.rebuild", f->data);
    mkdir(tmp, 0700);
    tn_evlog *nl = NULL;
    tn_err e = open_log(f, tmp, &nl, msg);
    for (uint64_t at = 1; !e && at <= lo;) {
        tn_buf b = {0};
        uint32_t n = 0, added;
        uint64_t last;
        uint32_t want = lo - at + 1 < PULL_MAX ? (uint32_t)(lo - at + 1) : PULL_MAX;
        e = tn_follow_read(tn_evlog_store(f->log), at, want, PULL_BYTES, &b, &n, &last, NULL);
        if (!e)
            e = tn_evlog_follow_batch(nl, b.data, b.size, &added, msg);
        tn_buf_free(&b);
        at += n;
        if (!e && n == 0)
            break;
    }
    tn_evlog_close(nl);
    if (e)
        return false;
    holds_wait(f, true); /* readers of the old store finish first */
    tn_evlog_close(f->log);
    f->log = NULL;
    bool ok = swap_stores(f, tmp, lo) && open_log(f, f->data, &f->log, msg) == TN_OK;
    pthread_mutex_lock(&f->mu);
    f->seq = ok ? lo : 0;
    pthread_mutex_unlock(&f->mu);
    holds_wait(f, false);
    return ok;
}

/* Pull once and append: the events appended (0 when caught up or on error). */
static uint32_t follow_once(tn_follower *f, const char *url)
{
    tn_ctl_rep rp;
    void *raw = NULL;
    tn_errmsg em = {{0}};
    uint64_t from = tn_evlog_last_seq(f->log) + 1;
    uint32_t n = 0;
    if (pull(f, url, from, false, &rp, &raw, &em) != TN_OK) {
        free(raw);
        return 0;
    }
    tn_err e = TN_OK;
    if (rp.ok) {
        pthread_mutex_lock(&f->mu);
        f->leader_seq = rp.offset;
        pthread_mutex_unlock(&f->mu);
        char mine[2 * TN_HASH_LEN + 1] = "";
        bool head_ok =
            from == 1 || (own_hash(f, from - 1, mine) && rp.text.len == strlen(mine) &&
                          memcmp(rp.text.p, mine, rp.text.len) == 0);
        e = head_ok ? tn_evlog_follow_batch(f->log, rp.data.p, rp.data.len, &n, &em) :
                      TN_ERR_CHAIN;
    }
    free(raw);
    if ((!rp.ok && rp.code == 3) || e == TN_ERR_CHAIN) {
        if (!drop_tail(f, url, &em))
            tn_error("ship", "msg=\"cannot drop the diverged tail\" why=\"%s\"", em.text);
        return 0;
    }
    if (e)
        tn_warn("ship", "msg=\"shipped batch refused\" from=%" PRIu64 " why=\"%s\"", from,
                em.text);
    return n;
}

static void *follower_thread(void *arg)
{
    tn_follower *f = arg;
    char url[1024];
    while (!stopping(f)) {
        if (!f->o.leader_url(f->o.arg, url, sizeof(url)) || !f->log) {
            nap(50);
            continue;
        }
        uint32_t n = follow_once(f, url);
        if (n) {
            uint64_t seq = tn_evlog_last_seq(f->log);
            pthread_mutex_lock(&f->mu);
            f->seq = seq;
            pthread_mutex_unlock(&f->mu);
            if (f->o.on_seq)
                f->o.on_seq(f->o.arg, seq);
        } else {
            nap(2); /* caught up: ask again soon (the leader's effects may wait for us) */
        }
    }
    return NULL;
}

tn_err tn_follower_start(const tn_follower_opts *o, tn_follower **out, tn_errmsg *msg)
{
    tn_follower *f = calloc(1, sizeof(*f));
    if (!f)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    f->o = *o;
    snprintf(f->name, sizeof(f->name), "%s", o->name);
    snprintf(f->data, sizeof(f->data), "%s", o->data_dir);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    tn_err e = open_log(f, f->data, &f->log, msg);
    if (!e) {
        f->seq = tn_evlog_last_seq(f->log);
        if (pthread_create(&f->th, NULL, follower_thread, f) != 0)
            e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the follower thread");
    }
    if (e) {
        tn_evlog_close(f->log);
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return e;
    }
    *out = f;
    return TN_OK;
}

uint64_t tn_follower_seq(tn_follower *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t s = f->seq;
    pthread_mutex_unlock(&f->mu);
    return s;
}

uint64_t tn_follower_stop(tn_follower *f)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->th, NULL);
    holds_wait(f, true); /* a read of the store finishes before it closes */
    uint64_t seq = f->log ? tn_evlog_last_seq(f->log) : 0;
    tn_evlog_close(f->log);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    return seq;
}

tn_evlog *tn_follower_hold(tn_follower *f, uint64_t *seq)
{
    pthread_mutex_lock(&f->mu);
    tn_evlog *l = f->stop || f->swapping ? NULL : f->log;
    if (l) {
        f->holds++;
        if (seq)
            *seq = f->seq;
    }
    pthread_mutex_unlock(&f->mu);
    return l;
}

void tn_follower_release(tn_follower *f)
{
    pthread_mutex_lock(&f->mu);
    if (f->holds && --f->holds == 0)
        pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

uint64_t tn_follower_leader_seq(tn_follower *f)
{
    pthread_mutex_lock(&f->mu);
    uint64_t s = f->leader_seq;
    pthread_mutex_unlock(&f->mu);
    return s;
}

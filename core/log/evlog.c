/* The event log: validation against the generated tables, seq and chain assignment,
 * per-workflow index and projections, all in one group commit. */
#include "evlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "committer.h"
#include "log.h"
#include "map.h"
#include "objlog.h"
#include "util.h"
#include "sm_gen.h"
#include "store.h"
#include "wfindex.h"

/* Projections cached by the log come from a pool that gives memory back only at close:
 * a freed one keeps id 0 (its key, at offset 0 of both projections) until it is reused,
 * so a caller's hint (tn_evlog_add_hint) can be checked by reading it, never a use after
 * free, and a reused one carries another id or is the instance's live entry again. */
struct projpool {
    size_t size;          /* of one projection */
    void *free;           /* freed projections, linked through their second word */
    struct projchunk *ch; /* every chunk, for close */
};

struct projchunk {
    struct projchunk *next;
    uint64_t pad; /* the projections after it stay 16-byte aligned */
};

#define POOL_CHUNK 64 /* projections per chunk */

_Static_assert(offsetof(tn_task_proj, id) == 0 && offsetof(tn_wf_proj, id) == 0,
               "a projection's id is its first word: pooled ones are matched by it");
_Static_assert(sizeof(tn_wf_proj) >= 8 + sizeof(void *), "room for the free-list link");

/* An instance touched by the pending (or in-flight) batch: its projection, to encode
 * and evict without a map lookup, and its id, to drop it safely when the batch fails
 * (both failed batches may list it). */
struct dirty {
    uint64_t id;
    void *p;
};

struct tn_evlog {
    int lock_fd; /* flock on DIR/writer.lock: one writer process per store */
    tn_store *store;
    tn_batch *batch;
    /* Chains, hashes and appends the pending events while the batch is built (NULL for
     * a follower, which needs each event's prev at once: the log hashes it here). */
    tn_committer *cm;
    /* A commit started and not yet waited for (tn_evlog_commit_start): its batch, the
     * instances it touched and the values it makes durable. The pending batch builds on
     * it; if it fails, the pending batch goes too. */
    bool inflight;
    tn_batch *ibatch;
    uint64_t i_last_seq, i_max_wf, i_max_task;
    bool i_ckpt;
    struct dirty *idirty_wf, *idirty_task;
    size_t nidirty_wf, nidirty_task, cap_idirty_wf, cap_idirty_task;
    /* The pending batch writes what later batches read from the store (schedules,
     * definitions, system records): it is not left in flight. */
    bool sync_only;
    tn_buf enc;  /* scratch for one encoded event / projection */
    tn_rtxn *rt; /* read txn for cache misses, open during a batch only */
    /* committed values */
    uint64_t c_last_seq, c_max_wf, c_max_task;
    uint8_t c_head[TN_HASH_LEN];
    /* pending values (== committed when nothing is pending) */
    uint64_t last_seq, max_wf, max_task;
    uint8_t head[TN_HASH_LEN];
    uint64_t next_wf, next_task; /* id allocators */
    size_t pending;
    uint64_t ckpt_seq, ckpt_every; /* the last stored checkpoint, and the interval */
    bool created;
    /* projection caches: live instances, plus anything touched by the pending batch */
    tn_map wfs, tasks;
    struct projpool wfpool, taskpool;
    /* instances touched by the pending batch (each once) */
    struct dirty *dirty_wf, *dirty_task;
    size_t ndirty_wf, ndirty_task, cap_dirty_wf, cap_dirty_task;
    char cluster_id[65]; /* meta store_id, read at open */
    tn_objlog *objs;     /* schedules and backfills */
    /* The by_wf entries of the pending batch: one run of seqs per workflow, written as
     * one index entry each at commit (wfindex.h). Runs are lists threaded through seqs. */
    tn_map idx;      /* wf -> run index + 1 */
    uint64_t idx_wf; /* the workflow of the last event indexed (0: none) ... */
    size_t idx_run;  /* ... and its run + 1: a workflow's events often come in a row */
    struct wfrun *runs;
    struct wfseq *seqs;
    size_t nruns, cap_runs, nseqs, cap_seqs;
    uint8_t *idxbuf; /* scratch for one encoded entry */
    size_t cap_idxbuf;
};

struct wfrun {
    uint64_t wf, first;
    uint32_t head, tail, n; /* the run's first and last elements in seqs, its length */
};

struct wfseq {
    uint64_t seq;
    uint32_t next; /* the run's next element in seqs; UINT32_MAX at the end */
};

static tn_err push_dirty(struct dirty **arr, size_t *n, size_t *cap, uint64_t id, void *p)
{
    if (!tn_grow((void **)arr, cap, *n + 1, sizeof(**arr)))
        return TN_ERR_NOMEM;
    (*arr)[(*n)++] = (struct dirty){id, p};
    return TN_OK;
}

/* A zeroed projection from the pool, or NULL. */
static void *proj_alloc(struct projpool *pp)
{
    if (!pp->free) {
        struct projchunk *c = malloc(sizeof(*c) + POOL_CHUNK * pp->size);
        if (!c)
            return NULL;
        tn_populate(c, sizeof(*c) + POOL_CHUNK * pp->size);
        c->next = pp->ch;
        pp->ch = c;
        for (size_t i = 0; i < POOL_CHUNK; i++) {
            char *q = (char *)(c + 1) + i * pp->size;
            *(uint64_t *)q = 0;
            memcpy(q + 8, &pp->free, sizeof(void *));
            pp->free = q;
        }
    }
    char *q = pp->free;
    memcpy(&pp->free, q + 8, sizeof(void *));
    memset(q, 0, pp->size);
    return q;
}

/* Back to the pool (NULL is fine); its id becomes 0, so no hint matches it. */
static void proj_free(struct projpool *pp, void *p)
{
    if (!p)
        return;
    *(uint64_t *)p = 0;
    memcpy((char *)p + 8, &pp->free, sizeof(void *));
    pp->free = p;
}

static void pool_fini(struct projpool *pp)
{
    while (pp->ch) {
        struct projchunk *c = pp->ch;
        pp->ch = c->next;
        free(c);
    }
    pp->free = NULL;
}

static tn_err meta_get_u64(tn_rtxn *t, const char *key, uint64_t *out)
{
    tn_val v;
    tn_err e = tn_store_get(t, TN_DB_META, key, strlen(key), &v);
    if (e == TN_ERR_NOENT) {
        *out = 0;
        return TN_OK;
    }
    if (e)
        return e;
    if (v.len != 8)
        return TN_ERR_CORRUPT;
    *out = tn_get_be64(v.data);
    return TN_OK;
}

static tn_err load_meta(tn_evlog *l, tn_errmsg *msg)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(l->store, &t);
    if (e)
        return tn_errmsg_set(msg, e, "%s: cannot read: %s", tn_store_path(l->store),
                             tn_strerror(e));
    tn_val v;
    if (!(e = meta_get_u64(t, TN_META_LAST_SEQ, &l->c_last_seq)) &&
        !(e = meta_get_u64(t, TN_META_MAX_WF, &l->c_max_wf)) &&
        !(e = meta_get_u64(t, TN_META_MAX_TASK, &l->c_max_task))) {
        memset(l->c_head, 0, TN_HASH_LEN);
        e = tn_store_get(t, TN_DB_META, TN_META_CHAIN_HEAD, strlen(TN_META_CHAIN_HEAD), &v);
        if (e == TN_OK && v.len == TN_HASH_LEN)
            memcpy(l->c_head, v.data, TN_HASH_LEN);
        else if (e == TN_ERR_NOENT && l->c_last_seq == 0)
            e = TN_OK;
        else if (e == TN_OK || e == TN_ERR_NOENT)
            e = TN_ERR_CORRUPT;
    }
    tn_store_read_end(t);
    if (e)
        return tn_errmsg_set(msg, e,
                             "%s: meta database is damaged (%s): run `tern replay --data "
                             "%s` to find the first bad event; restore from a backup",
                             tn_store_path(l->store), tn_strerror(e), tn_store_dir(l->store));
    /* events are dense from 1, so their count must be the last seq */
    tn_store_stat st;
    if ((e = tn_store_stat_get(l->store, &st)))
        return tn_errmsg_set(msg, e, "%s: cannot stat: %s", tn_store_path(l->store),
                             tn_strerror(e));
    if (st.entries[TN_DB_EVENTS] != l->c_last_seq)
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "%s: the log holds %llu events but meta says the last is seq "
                             "%llu: run `tern replay --data %s` to locate the damage; "
                             "restore from a backup",
                             tn_store_path(l->store),
                             (unsigned long long)st.entries[TN_DB_EVENTS],
                             (unsigned long long)l->c_last_seq, tn_store_dir(l->store));
    l->last_seq = l->c_last_seq;
    l->max_wf = l->c_max_wf;
    l->max_task = l->c_max_task;
    memcpy(l->head, l->c_head, TN_HASH_LEN);
    l->next_wf = l->max_wf;
    l->next_task = l->max_task;
    return TN_OK;
}

/* The seq to blame when event k's prev does not match the hash of k-1: if k's own
 * bytes still hash to what k+1 (or the stored head) recorded, k is intact and k-1 was
 * altered. The cursor is left past k. */
static uint64_t chain_blame(tn_cursor *c, const tn_val *vk, const uint8_t *head, uint64_t k)
{
    uint8_t h[TN_HASH_LEN];
    tn_event_hash(vk->data, vk->len, h);
    tn_val key, val;
    tn_event next;
    if (tn_cursor_next(c, &key, &val) == TN_OK)
        return tn_event_decode(val.data, val.len, &next) == TN_OK &&
                       memcmp(next.prev, h, TN_HASH_LEN) == 0 ?
                   k - 1 :
                   k;
    return memcmp(head, h, TN_HASH_LEN) == 0 ? k - 1 : k;
}

/* Re-hash the events after `from` (whose hash is `h`) up to the head; 0 when they
 * chain to the stored head, else the first damaged seq. */
static uint64_t chain_walk(tn_evlog *l, tn_rtxn *t, uint64_t from, uint8_t *h)
{
    tn_cursor *c;
    if (tn_cursor_open(t, TN_DB_EVENTS, &c))
        return from + 1;
    uint8_t key[8];
    tn_put_be64(key, from + 1);
    tn_val k, v;
    uint64_t expect = from + 1, bad = 0;
    tn_err e = from == 0 ? tn_cursor_first(c, &k, &v) : tn_cursor_seek(c, key, 8, &k, &v);
    for (; e == TN_OK && expect <= l->c_last_seq; e = tn_cursor_next(c, &k, &v), expect++) {
        tn_event ev;
        if (k.len != 8 || tn_get_be64(k.data) != expect ||
            tn_event_decode(v.data, v.len, &ev) != TN_OK || ev.seq != expect) {
            bad = expect;
            break;
        }
        if (memcmp(ev.prev, h, TN_HASH_LEN) != 0) {
            bad = expect == 1 ? 1 : chain_blame(c, &v, l->c_head, expect);
            break;
        }
        tn_event_hash(v.data, v.len, h);
    }
    if (!bad && expect <= l->c_last_seq)
        bad = expect; /* missing */
    if (!bad && memcmp(h, l->c_head, TN_HASH_LEN) != 0)
        bad = l->c_last_seq;
    tn_cursor_close(c);
    return bad;
}

/* Verify the chain from the stored checkpoint (or seq 1) to the stored head, so that a
 * writer never appends after damage. Everything before the checkpoint was hashed by a
 * writer when it was added and is checked in full by `tern replay`. */
static tn_err verify_chain(tn_evlog *l, tn_errmsg *msg)
{
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(l->store, &t);
    if (e)
        return tn_errmsg_set(msg, e, "%s: cannot read: %s", tn_store_path(l->store),
                             tn_strerror(e));
    uint8_t h[TN_HASH_LEN] = {0};
    uint64_t bad = 0;
    tn_val v;
    const char *why = "its events no longer match their hash chain";
    e = tn_store_get(t, TN_DB_META, TN_META_CHECKPOINT, strlen(TN_META_CHECKPOINT), &v);
    if (e == TN_OK) {
        if (v.len != 8 + TN_HASH_LEN || tn_get_be64(v.data) > l->c_last_seq) {
            why = "its checkpoint record is malformed";
            bad = l->c_last_seq;
        } else {
            l->ckpt_seq = tn_get_be64(v.data);
            memcpy(h, (const uint8_t *)v.data + 8, TN_HASH_LEN);
            uint8_t key[8], hk[TN_HASH_LEN];
            tn_put_be64(key, l->ckpt_seq);
            tn_val ev;
            if (l->ckpt_seq > 0 &&
                (tn_store_get(t, TN_DB_EVENTS, key, 8, &ev) != TN_OK ||
                 (tn_event_hash(ev.data, ev.len, hk), memcmp(hk, h, TN_HASH_LEN) != 0)))
                bad = l->ckpt_seq;
        }
    } else if (e != TN_ERR_NOENT) {
        bad = l->c_last_seq;
        why = "its checkpoint record cannot be read";
    }
    if (!bad)
        bad = chain_walk(l, t, l->ckpt_seq, h);
    tn_store_read_end(t);
    if (!bad)
        return TN_OK;
    return tn_errmsg_set(msg, TN_ERR_CHAIN,
                         "%s: damaged at seq %llu (%s): refusing to open it; run `tern replay "
                         "--data %s` for details, and restore the store from a backup",
                         tn_store_path(l->store), (unsigned long long)bad, why,
                         tn_store_dir(l->store));
}

/* A directory that may receive a new store: missing, or holding nothing but lock files
 * and empty directories. Otherwise *what names the first other entry. */
static bool dir_is_fresh(const char *dir, char *what, size_t len)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    bool fresh = true;
    struct dirent *de;
    while (fresh && (de = readdir(d))) {
        const char *n = de->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, "writer.lock") ||
            !strcmp(n, "lock.mdb"))
            continue;
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", dir, n);
        DIR *sub = opendir(p);
        bool empty_dir = sub != NULL;
        for (struct dirent *se; sub && empty_dir && (se = readdir(sub));)
            empty_dir = !strcmp(se->d_name, ".") || !strcmp(se->d_name, "..");
        if (sub)
            closedir(sub);
        if (!empty_dir) {
            snprintf(what, len, "%s", n);
            fresh = false;
        }
    }
    closedir(d);
    return fresh;
}

/* With create: a store is made only where there is none and nothing else either, so a
 * mistyped --data never turns into a new, empty store beside someone's files. */
static tn_err check_create_dir(const char *dir, tn_errmsg *msg)
{
    char p[4200], what[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/data.mdb", dir);
    if (stat(p, &st) == 0 || errno != ENOENT)
        return TN_OK; /* a store (or damage) is there: the open decides */
    if (dir_is_fresh(dir, what, sizeof(what)))
        return TN_OK;
    return tn_errmsg_set(msg, TN_ERR_EXISTS,
                         "%s: holds no tern store but is not empty (it has \"%s\"): check "
                         "--data; a new store is made only in an empty or missing directory",
                         dir, what);
}

static tn_err genesis(tn_evlog *l, tn_errmsg *msg)
{
    uint8_t rnd[8];
    char id[17];
    randombytes_buf(rnd, sizeof(rnd));
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_INIT, 0, 0);
    ev.actor = TN_STR("system");
    tn_event_set_str(&ev, "store_id", id);
    tn_event_set_int(&ev, "format", TN_STORE_FORMAT);
    tn_err e = tn_evlog_add(l, &ev, msg);
    if (e == TN_OK)
        e = tn_evlog_commit(l, msg);
    return e;
}

/* The store's id (made by the genesis INIT event) names the cluster of this store: a
 * master on another store is another cluster, whatever its --listen. */
static void load_cluster_id(tn_evlog *l)
{
    tn_rtxn *t;
    tn_val v;
    if (tn_store_read_begin(l->store, &t) != TN_OK)
        return;
    if (tn_store_get(t, TN_DB_META, "store_id", 8, &v) == TN_OK && v.len > 0 &&
        v.len < sizeof(l->cluster_id)) {
        memcpy(l->cluster_id, v.data, v.len);
        l->cluster_id[v.len] = '\0';
    }
    tn_store_read_end(t);
}

const char *tn_evlog_cluster_id(const tn_evlog *l)
{
    return l->cluster_id;
}

tn_err tn_evlog_open(const char *dir, const tn_evlog_opts *opts, tn_evlog **out, tn_errmsg *msg)
{
    if (sodium_init() < 0)
        return tn_errmsg_set(msg, TN_ERR_INTERNAL, "libsodium failed to initialise");
    tn_evlog *l = calloc(1, sizeof(*l));
    if (!l)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory opening %s", dir);
    tn_map_init_dense(&l->wfs);
    tn_map_init_dense(&l->tasks);
    tn_map_init_dense(&l->idx);
    l->wfpool.size = sizeof(tn_wf_proj);
    l->taskpool.size = sizeof(tn_task_proj);
    l->lock_fd = -1;
    l->ckpt_every =
        opts && opts->checkpoint_every ? opts->checkpoint_every : TN_EVLOG_CHECKPOINT_EVERY;
    tn_err e;
    if (opts && opts->create && (e = check_create_dir(dir, msg)))
        goto fail;
    if (opts && opts->create && tn_mkdir_p(dir) != 0) {
        e = tn_errmsg_set(msg, TN_ERR_IO,
                          "%s: cannot create the data directory: %s; check "
                          "--data",
                          dir, strerror(errno));
        goto fail;
    }
    {
        /* one writer process per store: the engine caches the log's head in memory */
        char lp[4200];
        snprintf(lp, sizeof(lp), "%s/writer.lock", dir);
        l->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (l->lock_fd < 0 && errno == ENOENT) {
            e = tn_errmsg_set(msg, TN_ERR_NOENT, "%s: no tern store here: check --data", dir);
            goto fail;
        }
        if (l->lock_fd < 0 || flock(l->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            e = tn_errmsg_set(msg, TN_ERR_BUSY, "%s: %s", dir,
                              l->lock_fd < 0 ? strerror(errno) :
                                               "another tern process (a master, standalone or "
                                               "run) writes this store; talk to it, or use "
                                               "another --data directory");
            goto fail;
        }
    }
    tn_store_opts so = {0};
    if (opts) {
        so.map_size = opts->map_size;
        so.map_max = opts->map_max;
        so.create = opts->create;
        so.no_sync = opts->no_sync;
    }
    e = tn_store_open(dir, &so, &l->store, msg);
    if (e)
        goto fail;
    if ((e = tn_batch_new(&l->batch)) || (e = tn_batch_new(&l->ibatch)) ||
        (e = tn_objlog_new(&l->objs))) {
        tn_errmsg_set(msg, e, "out of memory opening %s", dir);
        goto fail;
    }
    if ((e = load_meta(l, msg)))
        goto fail;
    if (l->c_last_seq > 0 && (e = verify_chain(l, msg)))
        goto fail;
    if (!(opts && opts->follower)) {
        if ((e = tn_committer_new(l->store, &l->cm))) {
            tn_errmsg_set(msg, e, "cannot start the committer thread for %s", dir);
            goto fail;
        }
        tn_committer_reset(l->cm, l->c_last_seq, l->c_head);
    }
    if (l->c_last_seq == 0 && !(opts && opts->follower) && (e = genesis(l, msg)))
        goto fail;
    load_cluster_id(l);
    l->created = tn_store_created(l->store);
    *out = l;
    return TN_OK;
fail:
    tn_evlog_close(l);
    return e;
}

static void cache_clear(tn_map *m, struct projpool *pp)
{
    tn_map_fini(m);
    pool_fini(pp);
}

void tn_evlog_close(tn_evlog *l)
{
    if (!l)
        return;
    tn_evlog_discard(l);
    tn_committer_free(l->cm);
    cache_clear(&l->wfs, &l->wfpool);
    cache_clear(&l->tasks, &l->taskpool);
    free(l->dirty_wf);
    free(l->dirty_task);
    free(l->idirty_wf);
    free(l->idirty_task);
    tn_map_fini(&l->idx);
    free(l->runs);
    free(l->seqs);
    free(l->idxbuf);
    tn_buf_free(&l->enc);
    tn_batch_free(l->batch);
    tn_batch_free(l->ibatch);
    tn_objlog_free(l->objs);
    tn_store_close(l->store);
    if (l->lock_fd >= 0)
        close(l->lock_fd);
    free(l);
}

tn_store *tn_evlog_store(tn_evlog *l)
{
    return l->store;
}
bool tn_evlog_created(const tn_evlog *l)
{
    return l->created;
}
uint64_t tn_evlog_last_seq(const tn_evlog *l)
{
    return l->c_last_seq;
}
size_t tn_evlog_pending(const tn_evlog *l)
{
    return l->pending;
}
uint64_t tn_evlog_new_wf_id(tn_evlog *l)
{
    return ++l->next_wf;
}
uint64_t tn_evlog_new_task_id(tn_evlog *l)
{
    return ++l->next_task;
}

static tn_err read_txn(tn_evlog *l)
{
    return l->rt ? TN_OK : tn_store_read_begin(l->store, &l->rt);
}

/* The cached projection of an instance, loading it from the store on a miss.
 * *p = NULL when the instance does not exist. */
static tn_err lookup(tn_evlog *l, bool task, uint64_t id, void **p)
{
    tn_map *m = task ? &l->tasks : &l->wfs;
    *p = NULL;
    /* a new instance: no event named it yet, so it is neither cached nor stored (the
     * probe would be a cache miss per created task) */
    if (id > (task ? l->max_task : l->max_wf))
        return TN_OK;
    *p = tn_map_get(m, id);
    if (*p)
        return TN_OK;
    /* ids above the committed maximum cannot be in the store */
    if (id > (task ? l->c_max_task : l->c_max_wf))
        return TN_OK;
    tn_err e = read_txn(l);
    if (e)
        return e;
    uint8_t k[8];
    tn_put_be64(k, id);
    tn_val v;
    e = tn_store_get(l->rt, task ? TN_DB_TASKS : TN_DB_WF, k, 8, &v);
    if (e == TN_ERR_NOENT)
        return TN_OK;
    if (e)
        return e;
    struct projpool *pp = task ? &l->taskpool : &l->wfpool;
    void *np = proj_alloc(pp);
    if (!np)
        return TN_ERR_NOMEM;
    e = task ? tn_proj_task_decode(v.data, v.len, np) : tn_proj_wf_decode(v.data, v.len, np);
    if (e == TN_OK && *(uint64_t *)np != id)
        e = TN_ERR_CORRUPT; /* a hint is matched by the id inside */
    if (e == TN_OK)
        e = tn_map_put(m, id, np);
    if (e) {
        proj_free(pp, np);
        return e;
    }
    *p = np;
    return TN_OK;
}

static tn_err batch_put_cb(void *ctx, int db, const void *k, size_t kl, const void *v,
                           size_t vl)
{
    return tn_batch_put(ctx, (tn_db)db, k, kl, v, vl);
}

/* Check `ev` against its machine's table in the instance's current state, and fill
 * ev->from and ev->to; *p is the instance's cached projection (NULL when the event
 * creates it, and for system events), found without a lookup when `hint` is it.
 * Adds nothing. */
static tn_err check_event(tn_evlog *l, tn_event *ev, const tn_sm *sm, void *hint, void **p,
                          tn_sm_trans *tr, tn_errmsg *msg)
{
    bool is_task = ev->machine == TN_MACHINE_TASK;
    bool is_wf = ev->machine == TN_MACHINE_WORKFLOW;
    if ((is_wf && (ev->wf == 0 || ev->task != 0)) ||
        (is_task && (ev->wf == 0 || ev->task == 0)))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s event %s without its instance id", sm->name,
                             tn_sm_event_name(sm, ev->event));
    *p = NULL;
    tn_err e;
    if (is_task || is_wf) {
        uint64_t id = is_task ? ev->task : ev->wf;
        /* pool memory: readable even when stale, and id 0 once freed */
        if (hint && *(const uint64_t *)hint == id)
            *p = hint;
        else if ((e = lookup(l, is_task, id, p)))
            return tn_errmsg_set(msg, e, "%s: cannot read instance: %s",
                                 tn_store_path(l->store), tn_strerror(e));
        ev->from = !*p ? TN_SM_NEW :
                         (is_task ? ((tn_task_proj *)*p)->state : ((tn_wf_proj *)*p)->state);
        if (is_task && *p && ((tn_task_proj *)*p)->wf != ev->wf)
            return tn_errmsg_set(msg, TN_ERR_INVAL,
                                 "task %llu belongs to workflow %llu, "
                                 "not %llu",
                                 (unsigned long long)ev->task,
                                 (unsigned long long)((tn_task_proj *)*p)->wf,
                                 (unsigned long long)ev->wf);
    } else if (tn_objlog_handles(ev->machine)) {
        if ((e = read_txn(l)) || (e = tn_objlog_state(l->objs, l->rt, ev, &ev->from)))
            return tn_errmsg_set(
                msg, e, "%s event %s: %s", sm->name, tn_sm_event_name(sm, ev->event),
                e == TN_ERR_INVAL ? "it does not name its object" : tn_strerror(e));
    } else {
        ev->from = l->last_seq == 0 ? TN_SM_NEW : TN_SYS_S_ACTIVE;
    }
    *tr = tn_sm_next(sm, ev->from, ev->event);
    if (tr->to == TN_SM_ILLEGAL)
        return tn_errmsg_set(msg, TN_ERR_ILLEGAL, "%s %llu: event %s is illegal in state %s",
                             sm->name, (unsigned long long)(is_task ? ev->task : ev->wf),
                             tn_sm_event_name(sm, ev->event), tn_sm_state_name(sm, ev->from));
    ev->to = tr->to;
    return TN_OK;
}

/* Note `seq` in workflow `wf`'s by_wf run of the pending batch. On error nothing
 * changed. */
static tn_err idx_add(tn_evlog *l, uint64_t wf, uint64_t seq)
{
    if (l->nseqs >= UINT32_MAX - 1)
        return TN_ERR_TOOBIG;
    if (!tn_grow((void **)&l->seqs, &l->cap_seqs, l->nseqs + 1, sizeof(*l->seqs)) ||
        !tn_grow((void **)&l->runs, &l->cap_runs, l->nruns + 1, sizeof(*l->runs)))
        return TN_ERR_NOMEM;
    uint32_t at = (uint32_t)l->nseqs;
    uintptr_t r = wf == l->idx_wf ? l->idx_run : (uintptr_t)tn_map_get(&l->idx, wf);
    if (r == 0) {
        tn_err e = tn_map_put(&l->idx, wf, (void *)(uintptr_t)(l->nruns + 1));
        if (e)
            return e;
        l->runs[l->nruns++] =
            (struct wfrun){.wf = wf, .first = seq, .head = at, .tail = at, .n = 1};
        r = l->nruns;
    } else {
        struct wfrun *run = &l->runs[r - 1];
        l->seqs[run->tail].next = at;
        run->tail = at;
        run->n++;
    }
    l->seqs[at] = (struct wfseq){.seq = seq, .next = UINT32_MAX};
    l->nseqs++;
    l->idx_wf = wf;
    l->idx_run = r;
    return TN_OK;
}

/* Above this many events, a batch's index lists are freed after it rather than kept
 * for the next (one huge commit, e.g. a workflow of 100k tasks starting, would
 * otherwise pin ~26 bytes per event of it for the writer's life). */
#define IDX_KEEP_MAX 65536

/* Forget the pending batch's by_wf runs. */
static void idx_reset(tn_evlog *l)
{
    for (size_t i = 0; i < l->nruns; i++)
        tn_map_del(&l->idx, l->runs[i].wf);
    l->nruns = l->nseqs = 0;
    l->idx_wf = 0;
    if (l->cap_seqs > IDX_KEEP_MAX) {
        free(l->seqs);
        free(l->runs);
        free(l->idxbuf);
        l->seqs = NULL;
        l->runs = NULL;
        l->idxbuf = NULL;
        l->cap_seqs = l->cap_runs = l->cap_idxbuf = 0;
    }
}

/* Queue one by_wf entry per workflow the pending batch touched. Seqs are added in
 * ascending order, so every run is ascending and its gaps are >= 1. */
static tn_err idx_flush(tn_evlog *l)
{
    for (size_t i = 0; i < l->nruns; i++) {
        const struct wfrun *run = &l->runs[i];
        size_t need = (size_t)run->n * TN_WFIDX_VARINT_MAX;
        if (!tn_grow((void **)&l->idxbuf, &l->cap_idxbuf, need, 1))
            return TN_ERR_NOMEM;
        size_t len = tn_wfidx_put_varint(l->idxbuf, run->n);
        uint64_t prev = run->first;
        for (uint32_t j = l->seqs[run->head].next; j != UINT32_MAX; j = l->seqs[j].next) {
            len += tn_wfidx_put_varint(l->idxbuf + len, l->seqs[j].seq - prev);
            prev = l->seqs[j].seq;
        }
        uint8_t key[TN_WFIDX_KEY_LEN];
        tn_wfidx_key(key, run->wf, run->first);
        tn_err e = tn_batch_put(l->batch, TN_DB_BY_WF, key, sizeof(key), l->idxbuf, len);
        if (e)
            return e;
    }
    return TN_OK;
}

/* Writes queued for the commit: the batch's and the committer's. */
static size_t queued(const tn_evlog *l)
{
    return tn_batch_count(l->batch) + (l->cm ? tn_committer_staged(l->cm) : 0);
}

/* Queue the encoded event (l->enc), its by-workflow index entry and, for a system
 * event, its projections into the pending batch. */
static tn_err queue_event(tn_evlog *l, const tn_event *ev)
{
    tn_err e;
    if (l->cm) {
        e = tn_committer_stage(l->cm, l->enc.data, l->enc.size);
    } else {
        uint8_t key[8];
        tn_put_be64(key, ev->seq);
        e = tn_batch_append(l->batch, TN_DB_EVENTS, key, 8, l->enc.data, l->enc.size);
    }
    if (e)
        return e;
    if (ev->wf && (e = idx_add(l, ev->wf, ev->seq)))
        return e;
    if (ev->machine == TN_MACHINE_SYSTEM &&
        (e = tn_proj_system_apply(ev, batch_put_cb, l->batch)))
        return e == TN_ERR_CORRUPT ? TN_ERR_INVAL : e;
    return TN_OK;
}

/* A schedule or backfill event: checked and staged by objlog before anything is queued,
 * so a refused one (a nominal time decided twice) leaves the batch as it was. */
static tn_err stage_object(tn_evlog *l, const tn_event *ev, const tn_sm *sm, tn_errmsg *msg)
{
    tn_errmsg m = {{0}};
    size_t mark = tn_batch_count(l->batch);
    tn_err e = read_txn(l);
    if (!e)
        e = tn_objlog_stage(l->objs, l->rt, batch_put_cb, l->batch, ev, &m);
    if (e && tn_batch_count(l->batch) != mark)
        tn_evlog_discard(l);
    if (e)
        return tn_errmsg_set(msg, e, "%s event %s refused: %s", sm->name,
                             tn_sm_event_name(sm, ev->event),
                             m.text[0] ? m.text : tn_strerror(e));
    return TN_OK;
}

/* The event is in the batch: fold it into its projection `p` and advance the pending
 * seq, chain head and id maxima. Cannot fail. */
static void fold_event(tn_evlog *l, const tn_event *ev, void *p)
{
    if (ev->machine == TN_MACHINE_TASK)
        tn_proj_task_apply(p, ev);
    else if (ev->machine == TN_MACHINE_WORKFLOW)
        tn_proj_wf_apply(p, ev);
    if (ev->machine == TN_MACHINE_SYSTEM || tn_objlog_handles(ev->machine))
        l->sync_only = true;
    if (!l->cm) /* else the committer chains it */
        tn_event_hash(l->enc.data, l->enc.size, l->head);
    l->last_seq = ev->seq;
    if (ev->wf > l->max_wf)
        l->max_wf = ev->wf;
    if (ev->task > l->max_task)
        l->max_task = ev->task;
    if (l->max_wf > l->next_wf)
        l->next_wf = l->max_wf;
    if (l->max_task > l->next_task)
        l->next_task = l->max_task;
    l->pending++;
}

tn_err tn_evlog_add(tn_evlog *l, tn_event *ev, tn_errmsg *msg)
{
    return tn_evlog_add_hint(l, ev, NULL, msg);
}

tn_err tn_evlog_add_hint(tn_evlog *l, tn_event *ev, void **hint, tn_errmsg *msg)
{
    const tn_sm *sm = tn_sm_get(ev->machine);
    if (!sm || ev->event >= sm->nevents)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "unknown machine %u or event %u", ev->machine,
                             ev->event);
    bool is_task = ev->machine == TN_MACHINE_TASK;
    bool is_wf = ev->machine == TN_MACHINE_WORKFLOW;
    void *p = NULL;
    tn_sm_trans tr = {0};
    tn_err e = check_event(l, ev, sm, hint ? *hint : NULL, &p, &tr, msg);
    if (e)
        return e;
    if (!ev->at)
        ev->at = tn_now_ns();
    ev->seq = l->last_seq + 1;
    if (l->cm) /* the committer fills it in */
        memset(ev->prev, 0, TN_HASH_LEN);
    else
        memcpy(ev->prev, l->head, TN_HASH_LEN);

    /* everything that can fail without side effects first: encoding and allocation */
    l->enc.size = 0;
    if ((e = tn_event_encode(ev, &l->enc)))
        return tn_errmsg_set(msg, e, "%s event %s: cannot encode: %s", sm->name,
                             tn_sm_event_name(sm, ev->event), tn_strerror(e));
    if (tn_objlog_handles(ev->machine) && (e = stage_object(l, ev, sm, msg)))
        return e;
    void *np = NULL;
    struct projpool *pp = is_task ? &l->taskpool : &l->wfpool;
    if ((is_task || is_wf) && !p) {
        np = proj_alloc(pp);
        if (!np || tn_map_put(is_task ? &l->tasks : &l->wfs, is_task ? ev->task : ev->wf, np)) {
            proj_free(pp, np);
            return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        }
        p = np;
    }
    size_t mark = queued(l);
    if ((e = queue_event(l, ev)))
        goto undo;
    /* committed to adding it: nothing below fails except dirty-list growth, which we
     * check before mutating the projection */
    uint64_t base = l->inflight ? l->i_last_seq : l->c_last_seq; /* before this batch */
    if (is_task && ((tn_task_proj *)p)->last_seq <= base &&
        (e = push_dirty(&l->dirty_task, &l->ndirty_task, &l->cap_dirty_task, ev->task, p)))
        goto undo;
    if (is_wf && ((tn_wf_proj *)p)->last_seq <= base &&
        (e = push_dirty(&l->dirty_wf, &l->ndirty_wf, &l->cap_dirty_wf, ev->wf, p)))
        goto undo;
    fold_event(l, ev, p);
    if (hint)
        *hint = p;
    return TN_OK;
undo:
    if (np) {
        tn_map_del(is_task ? &l->tasks : &l->wfs, is_task ? ev->task : ev->wf);
        proj_free(pp, np);
        np = NULL;
    }
    /* the batch cannot drop a suffix, so rebuild is left to discard; a failed add is
     * rare (out of memory, bad system attrs) and we discard the whole pending batch */
    if (queued(l) != mark) {
        tn_evlog_discard(l);
        return tn_errmsg_set(msg, e,
                             "%s event %s refused (%s); the pending batch was "
                             "discarded",
                             sm->name, tn_sm_event_name(sm, ev->event), tn_strerror(e));
    }
    return tn_errmsg_set(msg, e, "%s event %s refused: %s", sm->name,
                         tn_sm_event_name(sm, ev->event), tn_strerror(e));
}

void tn_evlog_reserve_tasks(tn_evlog *l, size_t n)
{
    (void)tn_map_reserve(&l->tasks, l->tasks.len + n);
}

static tn_err put_u64(tn_batch *b, const char *key, uint64_t v)
{
    uint8_t buf[8];
    tn_put_be64(buf, v);
    return tn_batch_put(b, TN_DB_META, key, strlen(key), buf, 8);
}

/* Forget these cache entries (they reload from the store). By id: an instance both
 * lists hold is dropped once. */
static void drop_ids(tn_evlog *l, const struct dirty *wf, size_t nwf, const struct dirty *task,
                     size_t ntask)
{
    for (size_t i = 0; i < nwf; i++)
        proj_free(&l->wfpool, tn_map_del(&l->wfs, wf[i].id));
    for (size_t i = 0; i < ntask; i++)
        proj_free(&l->taskpool, tn_map_del(&l->tasks, task[i].id));
}

static void end_read(tn_evlog *l)
{
    if (l->rt) {
        tn_store_read_end(l->rt);
        l->rt = NULL;
    }
}

/* Back to the last commit: the pending batch and its cache entries dropped. */
static void discard_pending(tn_evlog *l)
{
    drop_ids(l, l->dirty_wf, l->ndirty_wf, l->dirty_task, l->ndirty_task);
    l->ndirty_wf = l->ndirty_task = 0;
    tn_objlog_discard(l->objs);
    l->sync_only = false;
    idx_reset(l);
    tn_batch_reset(l->batch);
    if (l->cm) {
        tn_committer_abort(l->cm);
        tn_committer_reset(l->cm, l->c_last_seq, l->c_head);
    }
    l->pending = 0;
    l->last_seq = l->c_last_seq;
    l->max_wf = l->c_max_wf;
    l->max_task = l->c_max_task;
    memcpy(l->head, l->c_head, TN_HASH_LEN);
    end_read(l);
}

void tn_evlog_discard(tn_evlog *l)
{
    tn_evlog_commit_wait(l, NULL); /* a commit in flight ends first, either way */
    discard_pending(l);
}

/* A batch's projections were folded long enough ago to have left the cache (a batch
 * touches up to thousands of 800-byte projections): the lines the encoding reads are
 * fetched a few projections ahead, so the misses overlap instead of adding up. */
#define PREFETCH_AHEAD 4

static void prefetch_task(const tn_task_proj *p)
{
    __builtin_prefetch(p);
    __builtin_prefetch((const char *)p + 64);
    __builtin_prefetch(p->name);
    __builtin_prefetch(p->worker);
    __builtin_prefetch(p->reason);
}

/* The rest of the pending batch: its projections, index entries and meta values (the
 * chain head and checkpoint too when no committer chains). On error the pending batch
 * is discarded. */
static tn_err prepare_commit(tn_evlog *l, bool *ckpt, tn_errmsg *msg)
{
    tn_err e = TN_OK;
    uint8_t k[8];
    for (size_t i = 0; i < l->ndirty_wf && !e; i++) {
        const tn_wf_proj *p = l->dirty_wf[i].p;
        l->enc.size = 0;
        tn_put_be64(k, p->id);
        if (!(e = tn_proj_wf_encode(p, &l->enc)))
            e = tn_batch_put(l->batch, TN_DB_WF, k, 8, l->enc.data, l->enc.size);
    }
    for (size_t i = 0; i < l->ndirty_task && !e; i++) {
        const tn_task_proj *p = l->dirty_task[i].p;
        if (i + PREFETCH_AHEAD < l->ndirty_task)
            prefetch_task(l->dirty_task[i + PREFETCH_AHEAD].p);
        l->enc.size = 0;
        tn_put_be64(k, p->id);
        if (!(e = tn_proj_task_encode(p, &l->enc)))
            e = tn_batch_put(l->batch, TN_DB_TASKS, k, 8, l->enc.data, l->enc.size);
    }
    if (!e)
        e = idx_flush(l);
    if (!e)
        e = put_u64(l->batch, TN_META_LAST_SEQ, l->last_seq);
    if (!e)
        e = put_u64(l->batch, TN_META_MAX_WF, l->max_wf);
    if (!e)
        e = put_u64(l->batch, TN_META_MAX_TASK, l->max_task);
    *ckpt = l->last_seq >= l->ckpt_seq + l->ckpt_every;
    if (!e && !l->cm)
        e = tn_batch_put(l->batch, TN_DB_META, TN_META_CHAIN_HEAD, strlen(TN_META_CHAIN_HEAD),
                         l->head, TN_HASH_LEN);
    if (!e && *ckpt && !l->cm) {
        /* this writer hashed every event up to here itself: the next open starts there */
        uint8_t cp[8 + TN_HASH_LEN];
        tn_put_be64(cp, l->last_seq);
        memcpy(cp + 8, l->head, TN_HASH_LEN);
        e = tn_batch_put(l->batch, TN_DB_META, TN_META_CHECKPOINT, strlen(TN_META_CHECKPOINT),
                         cp, sizeof(cp));
    }
    if (!e)
        return TN_OK;
    discard_pending(l);
    return tn_errmsg_set(msg, e, "cannot prepare commit: %s", tn_strerror(e));
}

/* A batch is durable: its final instances leave memory (they reload on the rare later
 * touch), unless the pending batch touched them again (a last_seq above `upto`). Every
 * listed projection is still cached: only a failed batch drops entries, and it empties
 * these lists. */
static void evict_final(tn_evlog *l, const struct dirty *wf, size_t nwf,
                        const struct dirty *task, size_t ntask, uint64_t upto)
{
    for (size_t i = 0; i < nwf; i++) {
        const tn_wf_proj *p = wf[i].p;
        if (tn_sm_workflow.final[p->state] && p->last_seq <= upto)
            proj_free(&l->wfpool, tn_map_del(&l->wfs, p->id));
    }
    for (size_t i = 0; i < ntask; i++) {
        const tn_task_proj *p = task[i].p;
        if (tn_sm_task.final[p->state] && p->last_seq <= upto)
            proj_free(&l->taskpool, tn_map_del(&l->tasks, p->id));
    }
}

/* Commit the prepared pending batch and wait for it. */
static tn_err commit_now(tn_evlog *l, bool ckpt, tn_errmsg *msg)
{
    tn_err e = l->cm ? tn_committer_commit(l->cm, l->batch, ckpt, l->head, msg) :
                       tn_store_commit(l->store, l->batch, msg);
    if (e) {
        discard_pending(l);
        return e;
    }
    evict_final(l, l->dirty_wf, l->ndirty_wf, l->dirty_task, l->ndirty_task, l->last_seq);
    l->ndirty_wf = l->ndirty_task = 0;
    tn_objlog_committed(l->objs);
    l->sync_only = false;
    idx_reset(l);
    if (ckpt)
        l->ckpt_seq = l->last_seq;
    l->c_last_seq = l->last_seq;
    l->c_max_wf = l->max_wf;
    l->c_max_task = l->max_task;
    memcpy(l->c_head, l->head, TN_HASH_LEN);
    tn_batch_reset(l->batch);
    l->pending = 0;
    return TN_OK;
}

/* The prepared pending batch goes to the committer; a new pending batch starts on it. */
static void hand_over(tn_evlog *l, bool ckpt)
{
    tn_committer_start(l->cm, l->batch, ckpt);
    TN_SWAP(l->batch, l->ibatch);
    TN_SWAP(l->dirty_wf, l->idirty_wf);
    TN_SWAP(l->dirty_task, l->idirty_task);
    TN_SWAP(l->cap_dirty_wf, l->cap_idirty_wf);
    TN_SWAP(l->cap_dirty_task, l->cap_idirty_task);
    l->nidirty_wf = l->ndirty_wf;
    l->nidirty_task = l->ndirty_task;
    l->ndirty_wf = l->ndirty_task = 0;
    l->i_last_seq = l->last_seq;
    l->i_max_wf = l->max_wf;
    l->i_max_task = l->max_task;
    l->i_ckpt = ckpt;
    l->inflight = true;
    idx_reset(l);
    tn_batch_reset(l->batch);
    l->pending = 0;
}

tn_err tn_evlog_commit_start(tn_evlog *l, tn_errmsg *msg)
{
    tn_err e = tn_evlog_commit_wait(l, msg);
    if (e)
        return e;
    end_read(l);
    if (l->pending == 0)
        return TN_OK;
    bool ckpt;
    if ((e = prepare_commit(l, &ckpt, msg)))
        return e;
    /* a small batch, or one whose writes later batches read from the store (schedules,
     * definitions, system records), commits at once */
    if (!l->cm || l->sync_only || !tn_committer_handed(l->cm))
        return commit_now(l, ckpt, msg);
    hand_over(l, ckpt);
    return TN_OK;
}

tn_err tn_evlog_commit_wait(tn_evlog *l, tn_errmsg *msg)
{
    if (!l->inflight)
        return TN_OK;
    uint8_t head[TN_HASH_LEN];
    tn_errmsg m = {{0}};
    /* first: its snapshot is older than this commit, and a commit that must grow the
     * map waits for every reader of this process */
    end_read(l);
    tn_err e = tn_committer_wait(l->cm, head, &m);
    l->inflight = false;
    tn_batch_reset(l->ibatch);
    if (e) {
        /* nothing of it was written: the batch built on it goes too */
        drop_ids(l, l->idirty_wf, l->nidirty_wf, l->idirty_task, l->nidirty_task);
        l->nidirty_wf = l->nidirty_task = 0;
        discard_pending(l);
        if (msg)
            *msg = m;
        return e;
    }
    evict_final(l, l->idirty_wf, l->nidirty_wf, l->idirty_task, l->nidirty_task, l->i_last_seq);
    l->nidirty_wf = l->nidirty_task = 0;
    if (l->i_ckpt)
        l->ckpt_seq = l->i_last_seq;
    l->c_last_seq = l->i_last_seq;
    l->c_max_wf = l->i_max_wf;
    l->c_max_task = l->i_max_task;
    memcpy(l->c_head, head, TN_HASH_LEN);
    return TN_OK;
}

bool tn_evlog_inflight(const tn_evlog *l)
{
    return l->inflight;
}

uint64_t tn_evlog_hashed_waiting(const tn_evlog *l)
{
    return l->cm ? tn_committer_helped(l->cm) : 0;
}

tn_err tn_evlog_commit(tn_evlog *l, tn_errmsg *msg)
{
    tn_err e = tn_evlog_commit_start(l, msg);
    return e ? e : tn_evlog_commit_wait(l, msg);
}

/* Read a projection: from the cache when it is there, else straight from the store
 * without caching it (a status query must not grow the cache). */
static tn_err read_proj(tn_evlog *l, bool task, uint64_t id, void *out)
{
    void *p = tn_map_get(task ? &l->tasks : &l->wfs, id);
    if (p) {
        memcpy(out, p, task ? sizeof(tn_task_proj) : sizeof(tn_wf_proj));
        return TN_OK;
    }
    tn_rtxn *t;
    tn_err e = tn_store_read_begin(l->store, &t);
    if (e)
        return e;
    uint8_t k[8];
    tn_put_be64(k, id);
    tn_val v;
    e = tn_store_get(t, task ? TN_DB_TASKS : TN_DB_WF, k, 8, &v);
    if (!e)
        e = task ? tn_proj_task_decode(v.data, v.len, out) :
                   tn_proj_wf_decode(v.data, v.len, out);
    tn_store_read_end(t);
    return e;
}

tn_err tn_evlog_wf(tn_evlog *l, uint64_t id, tn_wf_proj *out)
{
    return read_proj(l, false, id, out);
}

tn_err tn_evlog_task(tn_evlog *l, uint64_t id, tn_task_proj *out)
{
    return read_proj(l, true, id, out);
}

tn_err tn_evlog_sched(tn_evlog *l, const char *name, tn_sched_proj *out)
{
    tn_err e = read_txn(l);
    return e ? e : tn_objlog_sched(l->objs, l->rt, name, out);
}

tn_err tn_evlog_backfill(tn_evlog *l, uint64_t id, tn_backfill_proj *out)
{
    tn_err e = read_txn(l);
    return e ? e : tn_objlog_backfill(l->objs, l->rt, id, out);
}

tn_err tn_evlog_alert(tn_evlog *l, uint64_t id, tn_alert_proj *out)
{
    tn_err e = read_txn(l);
    return e ? e : tn_objlog_alert(l->objs, l->rt, id, out);
}

uint64_t tn_evlog_next_seq(const tn_evlog *l)
{
    return l->last_seq + 1;
}

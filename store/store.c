/* The store: one LMDB environment holding the event log, indexes and projections.
 * LMDB codes and errno stop here; everything above sees tn_err and a message. */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define MIB              ((size_t)1 << 20)
#define DEFAULT_MAP_SIZE (64 * MIB)
#define DEFAULT_MAP_MAX  ((size_t)16 << 30)

/* LMDB's compiled-in maximum key size (mdb_env_get_maxkeysize) is 511 bytes; the batch
 * checks it when an op is queued, before any store is involved, so it is a constant. */
#define KEY_MAX 511
/* A bound on one value so that a runaway encoder cannot ask for gigabytes. */
#define VAL_MAX (64 * MIB)

/* Map-size changes and "another process grew the map" are rare, so a commit or read
 * that meets them retries; this bounds the retries against a misbehaving peer. */
#define MAX_RETRIES 64

/* The "format" key in TN_DB_META holds TN_STORE_FORMAT as a 4-byte big-endian u32.
 * It is written in the same transaction that creates the databases, so its presence
 * is what makes a directory a store: a crash during creation leaves no "format" key
 * and no events, which the next open treats as "no store yet". */
#define FORMAT_KEY     "format"
#define FORMAT_KEY_LEN (sizeof(FORMAT_KEY) - 1)

static const char *const db_names[TN_DB__COUNT] = {
    [TN_DB_EVENTS] = "events", [TN_DB_BY_WF] = "by_wf", [TN_DB_DEFS] = "defs",
    [TN_DB_WF] = "wf",         [TN_DB_TASKS] = "tasks", [TN_DB_META] = "meta",
};

/* Plain byte keys everywhere: ids and seqs are big-endian, which sorts correctly as
 * bytes, and keeps the file independent of host byte order (no MDB_INTEGERKEY). No
 * database has duplicates (format 1's by_wf had one sorted duplicate per event). */
static const unsigned db_flags[TN_DB__COUNT] = {0};

struct tn_store {
    MDB_env *env;
    MDB_dbi dbi[TN_DB__COUNT];
    char *dir;
    char *path; /* dir + "/data.mdb" */
    size_t map_size;
    size_t map_max;
    size_t page; /* OS page size: map sizes are multiples of it */
    bool read_only;
    bool created; /* this open made the store (an empty environment got its databases) */
    /* Growing the map (mdb_env_set_mapsize) unmaps and remaps it: no transaction of this
     * process may be inside it then, or its pointers dangle. Every transaction, read or
     * write, holds this lock shared; a remap holds it exclusive. Writer-preferring, so a
     * stream of overlapping readers cannot starve a remap; a thread that already holds
     * it shared does not take it again (see map_share), so it cannot queue behind a
     * waiting remap that is waiting for it. */
    pthread_rwlock_t map_lock;
};

struct tn_rtxn {
    tn_store *s;
    MDB_txn *txn;
};

struct tn_cursor {
    MDB_cursor *c;
};

/* The stores whose map lock this thread holds shared, with how many of its transactions
 * are inside each. A thread inside a transaction cannot wait for an exclusive map lock
 * (it would wait for itself), so a remap it needs is refused with TN_ERR_BUSY instead;
 * and it takes a lock it already holds only once. A few slots are plenty: one thread
 * reading several stores at the same moment is unusual. */
#define HELD_MAX 4
static __thread struct held {
    const tn_store *s;
    unsigned n;
} tls_held[HELD_MAX];
static __thread unsigned tls_held_total;

enum op_kind {
    OP_PUT,
    OP_APPEND,
    OP_DEL
};

/* One queued operation; its key and then its value are at buf + off. Offsets, not
 * pointers, so that growing the buffer needs no fix-ups. */
struct op {
    uint8_t kind;
    uint8_t db;
    uint16_t klen;
    uint32_t vlen;
    size_t off;
};

struct tn_batch {
    struct op *ops;
    size_t n, cap;
    uint8_t *buf;
    size_t used, size;
};

const char *tn_db_name(tn_db db)
{
    if ((unsigned)db >= TN_DB__COUNT)
        return "unknown";
    return db_names[db];
}

/* --- errors ------------------------------------------------------------------ */

static tn_err err_from_mdb(int rc)
{
    switch (rc) {
    case MDB_SUCCESS: return TN_OK;
    case MDB_NOTFOUND: return TN_ERR_NOENT;
    case MDB_KEYEXIST: return TN_ERR_EXISTS;
    case MDB_MAP_FULL: return TN_ERR_FULL;
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
    case MDB_INCOMPATIBLE: return TN_ERR_CORRUPT;
    case MDB_READERS_FULL:
    case MDB_MAP_RESIZED: return TN_ERR_BUSY;
    case MDB_TXN_FULL:
    case MDB_BAD_VALSIZE: return TN_ERR_TOOBIG;
    case MDB_PANIC: return TN_ERR_IO;
    default:
        if (rc > 0)
            return tn_err_from_errno(rc);
        return TN_ERR_INTERNAL;
    }
}

static bool mdb_is_corrupt(int rc)
{
    return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
           rc == MDB_VERSION_MISMATCH;
}

static tn_err corrupt_msg(const tn_store *s, int rc, tn_errmsg *msg)
{
    return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                         "%s: not an LMDB file or damaged (%s): restore it from a backup; "
                         "tern never repairs a store silently",
                         s->path, mdb_strerror(rc));
}

/* The message for any LMDB failure that has no more specific wording. */
static tn_err mdb_msg(const tn_store *s, int rc, const char *what, tn_errmsg *msg)
{
    if (mdb_is_corrupt(rc))
        return corrupt_msg(s, rc, msg);
    tn_err err = err_from_mdb(rc);
    if (err == TN_ERR_PERM)
        return tn_errmsg_set(msg, err, "%s: %s: %s: check the file's owner and mode", s->path,
                             what, mdb_strerror(rc));
    if (rc == MDB_PANIC)
        return tn_errmsg_set(msg, err,
                             "%s: %s: %s: an earlier write failed; close and "
                             "reopen the store",
                             s->path, what, mdb_strerror(rc));
    return tn_errmsg_set(msg, err, "%s: %s: %s", s->path, what, mdb_strerror(rc));
}

/* Free bytes on the store's file system for an unprivileged writer; -1 if unknown. */
static long long free_bytes(const tn_store *s)
{
    struct statvfs v;
    if (statvfs(s->dir, &v) != 0)
        return -1;
    return (long long)v.f_bavail * (long long)v.f_frsize;
}

/* Below this much free space an I/O error while writing is taken for a full disk: LMDB
 * reports a short write (the usual way a nearly full disk fails a pwrite) as EIO. */
#define LOW_FREE_BYTES (16 * (long long)MIB)

static tn_err disk_full_msg(const tn_store *s, long long avail, tn_errmsg *msg)
{
    return tn_errmsg_set(msg, TN_ERR_FULL,
                         "disk full: %s: %lld MiB free on its file system: new work is "
                         "refused until space is freed; nothing accepted was lost",
                         s->path, avail < 0 ? 0 : avail / (long long)MIB);
}

/* --- map size ------------------------------------------------------------------ */

static size_t round_up(size_t v, size_t page)
{
    if (v > SIZE_MAX - (page - 1))
        return SIZE_MAX - (SIZE_MAX % page);
    return (v + page - 1) / page * page;
}

/* map_size and map_max change only under the exclusive map lock, but the writer reads
 * them without it to decide whether to grow: atomic loads keep that read clean. */
static size_t load_size(const size_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Record the map size LMDB actually uses (never less than the data in the file). */
static void refresh_map_size(tn_store *s)
{
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) != MDB_SUCCESS)
        return;
    __atomic_store_n(&s->map_size, info.me_mapsize, __ATOMIC_RELAXED);
    if (load_size(&s->map_max) < info.me_mapsize)
        __atomic_store_n(&s->map_max, info.me_mapsize, __ATOMIC_RELAXED);
}

/* Enter the map for one transaction; false when this thread is in too many stores. */
static bool map_share(tn_store *s)
{
    struct held *slot = NULL;
    for (int i = 0; i < HELD_MAX; i++) {
        if (tls_held[i].n > 0 && tls_held[i].s == s) {
            tls_held[i].n++;
            tls_held_total++;
            return true;
        }
        if (tls_held[i].n == 0 && !slot)
            slot = &tls_held[i];
    }
    if (!slot)
        return false;
    pthread_rwlock_rdlock(&s->map_lock);
    slot->s = s;
    slot->n = 1;
    tls_held_total++;
    return true;
}

/* Leave the map after one transaction; from the thread that entered it. */
static void map_unshare(tn_store *s)
{
    for (int i = 0; i < HELD_MAX; i++) {
        if (tls_held[i].n > 0 && tls_held[i].s == s) {
            tls_held_total--;
            if (--tls_held[i].n == 0)
                pthread_rwlock_unlock(&s->map_lock);
            return;
        }
    }
}

/* Remap the environment: at `size`, or with size 0 at the size recorded in the file by
 * whoever grew it last (another process). Skipped when the map no longer has the size
 * `seen` that made the caller ask: someone else resized it meanwhile. Waits for every
 * transaction of this process to leave the map, and refuses if this thread holds one,
 * since it would be waiting for itself. */
static tn_err remap(tn_store *s, size_t seen, size_t size, tn_errmsg *msg)
{
    if (tls_held_total > 0)
        return tn_errmsg_set(msg, TN_ERR_BUSY,
                             "%s: the map must be resized but this thread holds a read "
                             "transaction: end it and retry",
                             s->path);
    pthread_rwlock_wrlock(&s->map_lock);
    int rc = MDB_SUCCESS;
    if (s->map_size == seen) {
        rc = mdb_env_set_mapsize(s->env, size);
        if (rc == MDB_SUCCESS)
            refresh_map_size(s);
    }
    pthread_rwlock_unlock(&s->map_lock);
    if (rc != MDB_SUCCESS)
        return mdb_msg(s, rc, "resizing the map", msg);
    return TN_OK;
}

/* Double the map, capped at map_max; TN_ERR_FULL when it is already there. */
static tn_err grow(tn_store *s, tn_errmsg *msg)
{
    size_t old = load_size(&s->map_size), max = load_size(&s->map_max);
    if (old >= max) {
        long long avail = free_bytes(s);
        if (avail >= 0 && avail < LOW_FREE_BYTES)
            return disk_full_msg(s, avail, msg);
        return tn_errmsg_set(msg, TN_ERR_FULL,
                             "store full: %s: reached its map limit of %zu MiB (%lld MiB free "
                             "on its file system): new work is refused; raise --map-max; "
                             "nothing accepted was lost",
                             s->path, max / MIB, avail < 0 ? 0 : avail / (long long)MIB);
    }
    size_t want = round_up(old > max / 2 ? max : old * 2, s->page);
    tn_err err = remap(s, old, want > max ? max : want, msg);
    if (err != TN_OK)
        return err;
    tn_info("store", "msg=\"map grew\" path=%s from_mib=%zu to_mib=%zu max_mib=%zu", s->path,
            old / MIB, load_size(&s->map_size) / MIB, max / MIB);
    return TN_OK;
}

/* Begin a transaction with the map lock held shared. Another process may have grown
 * the map beyond ours (MDB_MAP_RESIZED): adopt its size and retry. On success the
 * caller must map_unshare after the transaction ends. */
static tn_err txn_begin(tn_store *s, unsigned flags, MDB_txn **out, tn_errmsg *msg)
{
    for (int i = 0; i < MAX_RETRIES; i++) {
        if (!map_share(s))
            return tn_errmsg_set(msg, TN_ERR_BUSY,
                                 "%s: this thread has transactions open "
                                 "in %d stores already: end one first",
                                 s->path, HELD_MAX);
        int rc = mdb_txn_begin(s->env, NULL, flags, out);
        if (rc == MDB_SUCCESS)
            return TN_OK;
        map_unshare(s);
        if (rc != MDB_MAP_RESIZED)
            return mdb_msg(s, rc, "beginning a transaction", msg);
        tn_err err = remap(s, load_size(&s->map_size), 0, msg);
        if (err != TN_OK)
            return err;
    }
    return tn_errmsg_set(msg, TN_ERR_BUSY,
                         "%s: the map keeps being resized by another "
                         "process: retry later",
                         s->path);
}

/* --- opening ------------------------------------------------------------------- */

static tn_err check_format(tn_store *s, MDB_txn *txn, bool *found, tn_errmsg *msg)
{
    MDB_val k = {FORMAT_KEY_LEN, (void *)FORMAT_KEY}, v;
    int rc = mdb_get(txn, s->dbi[TN_DB_META], &k, &v);
    *found = rc == MDB_SUCCESS;
    if (rc == MDB_NOTFOUND)
        return TN_OK;
    if (rc != MDB_SUCCESS)
        return mdb_msg(s, rc, "reading the format", msg);
    if (v.mv_size != 4)
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "%s: the format record is %zu bytes, not 4: restore the store "
                             "from a backup; tern never repairs a store silently",
                             s->path, v.mv_size);
    const uint8_t *p = v.mv_data;
    uint32_t f = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (f < TN_STORE_FORMAT)
        return tn_errmsg_set(msg, TN_ERR_VERSION,
                             "%s: store format %u was written by an older tern; this tern "
                             "reads format %d only (its per-workflow index changed): open it "
                             "with the tern that wrote it, or create a new store with `tern "
                             "init --data NEWDIR`",
                             s->path, f, TN_STORE_FORMAT);
    if (f != TN_STORE_FORMAT)
        return tn_errmsg_set(msg, TN_ERR_VERSION,
                             "%s: store format %u, this tern reads format %d: use the tern "
                             "that wrote it, or a new --data directory",
                             s->path, f, TN_STORE_FORMAT);
    return TN_OK;
}

/* LMDB keeps the flags a database was created with; a by_wf with duplicates was not
 * written by this format. */
static tn_err check_layout(tn_store *s, MDB_txn *txn, tn_errmsg *msg)
{
    unsigned fl = 0;
    int rc = mdb_dbi_flags(txn, s->dbi[TN_DB_BY_WF], &fl);
    if (rc != MDB_SUCCESS)
        return mdb_msg(s, rc, "reading the database flags", msg);
    if (fl & MDB_DUPSORT)
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "%s: the \"by_wf\" database has the wrong layout: restore the "
                             "store from a backup",
                             s->path);
    return TN_OK;
}

static tn_err no_store_msg(const tn_store *s, const char *why, tn_errmsg *msg)
{
    return tn_errmsg_set(msg, TN_ERR_NOENT,
                         "%s: no tern store here (%s): check --data, or create one with "
                         "`tern init --data %s`",
                         s->dir, why, s->dir);
}

static tn_err open_dbs_existing(tn_store *s, tn_errmsg *msg);

/* Creation: every database and the format key in one transaction, so a crash leaves
 * either an empty environment or a complete store. Only an environment with no named
 * database at all is new: an existing one is opened as it is, and a database missing
 * from it is damage, never silently recreated. */
static tn_err open_dbs_create(tn_store *s, tn_errmsg *msg)
{
    MDB_txn *txn;
    tn_err err = txn_begin(s, 0, &txn, msg);
    if (err != TN_OK)
        return err;
    MDB_dbi main_dbi;
    MDB_stat st;
    int rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc == MDB_SUCCESS)
        rc = mdb_stat(txn, main_dbi, &st);
    if (rc != MDB_SUCCESS) {
        err = mdb_msg(s, rc, "reading the environment", msg);
        goto fail;
    }
    if (st.ms_entries > 0) {
        mdb_txn_abort(txn);
        map_unshare(s);
        return open_dbs_existing(s, msg);
    }
    for (int i = 0; i < TN_DB__COUNT && rc == MDB_SUCCESS; i++)
        rc = mdb_dbi_open(txn, db_names[i], db_flags[i] | MDB_CREATE, &s->dbi[i]);
    if (rc != MDB_SUCCESS) {
        err = mdb_msg(s, rc, "creating the databases", msg);
        goto fail;
    }
    uint8_t f[4] = {0, 0, 0, TN_STORE_FORMAT};
    MDB_val k = {FORMAT_KEY_LEN, (void *)FORMAT_KEY}, v = {sizeof(f), f};
    rc = mdb_put(txn, s->dbi[TN_DB_META], &k, &v, 0);
    if (rc != MDB_SUCCESS) {
        err = mdb_msg(s, rc, "writing the format", msg);
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    map_unshare(s);
    if (rc != MDB_SUCCESS)
        return mdb_msg(s, rc, "creating the store", msg);
    s->created = true;
    return TN_OK;
fail:
    mdb_txn_abort(txn);
    map_unshare(s);
    return err;
}

/* Opening without create: nothing is written, so this works read-only too. The handles
 * opened in a read transaction stay valid for the environment once it commits. */
static tn_err open_dbs_existing(tn_store *s, tn_errmsg *msg)
{
    MDB_txn *txn;
    tn_err err = txn_begin(s, MDB_RDONLY, &txn, msg);
    if (err != TN_OK)
        return err;
    bool found = false;
    int rc = mdb_dbi_open(txn, db_names[TN_DB_META], db_flags[TN_DB_META], &s->dbi[TN_DB_META]);
    if (rc == MDB_SUCCESS)
        err = check_format(s, txn, &found, msg);
    else if (rc != MDB_NOTFOUND)
        err = mdb_msg(s, rc, "opening the meta database", msg);
    if (err != TN_OK)
        goto fail;
    if (!found) {
        /* An interrupted creation (or another program's LMDB file) has no events; a log
         * without a format record is damage, never silently treated as "no store". */
        MDB_stat st = {0};
        rc = mdb_dbi_open(txn, db_names[TN_DB_EVENTS], 0, &s->dbi[TN_DB_EVENTS]);
        if (rc == MDB_SUCCESS)
            rc = mdb_stat(txn, s->dbi[TN_DB_EVENTS], &st);
        if (rc == MDB_SUCCESS && st.ms_entries > 0)
            err = tn_errmsg_set(msg, TN_ERR_CORRUPT,
                                "%s: holds %zu events but no format record: restore it "
                                "from a backup; tern never repairs a store silently",
                                s->path, st.ms_entries);
        else
            err = no_store_msg(s, "data.mdb was never initialised as one", msg);
        goto fail;
    }
    for (int i = 0; i < TN_DB__COUNT; i++) {
        rc = mdb_dbi_open(txn, db_names[i], db_flags[i], &s->dbi[i]);
        if (rc == MDB_NOTFOUND) {
            err = tn_errmsg_set(msg, TN_ERR_CORRUPT,
                                "%s: the \"%s\" database is missing: restore the store from "
                                "a backup; tern never repairs a store silently",
                                s->path, db_names[i]);
            goto fail;
        }
        if (rc != MDB_SUCCESS) {
            err = mdb_msg(s, rc, "opening the databases", msg);
            goto fail;
        }
    }
    err = check_layout(s, txn, msg);
    if (err != TN_OK)
        goto fail;
    rc = mdb_txn_commit(txn);
    map_unshare(s);
    if (rc != MDB_SUCCESS)
        return mdb_msg(s, rc, "opening the databases", msg);
    return TN_OK;
fail:
    mdb_txn_abort(txn);
    map_unshare(s);
    return err;
}

/* Check the directory and data file before LMDB sees them, so that "nothing here" gets
 * a clear NOENT rather than LMDB creating files where it should not. */
static tn_err check_paths(tn_store *s, const tn_store_opts *o, tn_errmsg *msg)
{
    struct stat st;
    if (stat(s->dir, &st) != 0) {
        int e = errno;
        if (e == ENOENT && o->create) {
            if (tn_mkdir_p(s->dir) != 0) {
                e = errno;
                return tn_errmsg_set(msg, tn_err_from_errno(e),
                                     "%s: cannot create the directory: %s", s->dir,
                                     strerror(e));
            }
            return TN_OK;
        }
        if (e == ENOENT)
            return no_store_msg(s, "no such directory", msg);
        return tn_errmsg_set(msg, tn_err_from_errno(e), "%s: %s", s->dir, strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return no_store_msg(s, "not a directory", msg);
    if (stat(s->path, &st) != 0) {
        int e = errno;
        if (e == ENOENT && o->create)
            return TN_OK;
        if (e == ENOENT)
            return no_store_msg(s, "no data.mdb", msg);
        return tn_errmsg_set(msg, tn_err_from_errno(e), "%s: %s", s->path, strerror(e));
    }
    if (!S_ISREG(st.st_mode))
        return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                             "%s: not a regular file: point --data at "
                             "a tern store directory",
                             s->path);
    /* LMDB treats an empty data.mdb as a new environment and writes into it; without
     * create that would change a directory we were only asked to read. */
    if (st.st_size == 0 && !o->create)
        return no_store_msg(s, "data.mdb is empty", msg);
    return TN_OK;
}

/* LMDB's on-disk header, as liblmdb 0.9 writes it on 64-bit hosts (no MDB_VL32): pages
 * 0 and 1 are meta pages; the one with the larger txnid is current. Each is a 16-byte
 * page header (pgno, pad, flags, lower/upper) followed by MDB_meta: magic, version,
 * address, mapsize, two MDB_db records of 48 bytes (the first one's md_pad holds the
 * page size), the last page in use and the txnid. Read here, before mdb_env_open maps
 * the file, because LMDB trusts it: a file shorter than its header says is a SIGBUS
 * inside LMDB on the first page past the end, with no message. */
#define LMDB_MAGIC      0xBEEFC0DEu
#define LMDB_DATA_VER   1u
#define LMDB_P_META     0x08u
#define META_OFF_FLAGS  10
#define META_OFF_MAGIC  16
#define META_OFF_VER    20
#define META_OFF_PSIZE  40
#define META_OFF_LASTPG 136
#define META_OFF_TXNID  144
#define META_LEN        152

struct lmdb_meta {
    uint32_t psize;
    uint64_t last_pg, txnid;
};

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* One meta page read into m; NULL when sound, else what is wrong with it. */
static const char *meta_parse(const uint8_t *b, uint64_t pgno, struct lmdb_meta *m)
{
    uint16_t flags;
    memcpy(&flags, b + META_OFF_FLAGS, 2);
    if (rd64(b) != pgno || !(flags & LMDB_P_META))
        return "its header page is not an LMDB meta page";
    if (rd32(b + META_OFF_MAGIC) != LMDB_MAGIC)
        return "its header has no LMDB magic number";
    if (rd32(b + META_OFF_VER) != LMDB_DATA_VER)
        return "its header has an unknown LMDB format version";
    m->psize = rd32(b + META_OFF_PSIZE);
    m->last_pg = rd64(b + META_OFF_LASTPG);
    m->txnid = rd64(b + META_OFF_TXNID);
    if (m->psize < 512 || m->psize > 65536 || (m->psize & (m->psize - 1)))
        return "its header records an impossible page size";
    if (m->last_pg < 1 || m->last_pg > (uint64_t)1 << 48)
        return "its header records an impossible last page";
    return NULL;
}

static tn_err header_msg(const tn_store *s, const char *what, tn_errmsg *msg)
{
    return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                         "%s: damaged: %s: restore it from a backup; tern never repairs a "
                         "store silently",
                         s->path, what);
}

/* Check data.mdb against its own header (magic, version, page size, and the file size
 * against the last page in use) before LMDB maps it. The metas are read before the
 * size, so a writer growing the file meanwhile can only make the check pass. */
static tn_err check_header(tn_store *s, tn_errmsg *msg)
{
    if (sizeof(size_t) != 8)
        return TN_OK; /* the layout above is the 64-bit one */
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return TN_OK;
        return tn_errmsg_set(msg, tn_err_from_errno(e), "%s: %s", s->path, strerror(e));
    }
    uint8_t b[META_LEN];
    struct lmdb_meta m[2];
    const char *bad = NULL;
    struct stat st;
    char what[192];
    ssize_t n = pread(fd, b, META_LEN, 0);
    if (n == 0) {
        close(fd);
        return TN_OK; /* empty: check_paths decided what an empty file means */
    }
    if (n != META_LEN)
        bad = "too short to hold an LMDB header";
    if (!bad)
        bad = meta_parse(b, 0, &m[0]);
    if (!bad && pread(fd, b, META_LEN, m[0].psize) != META_LEN)
        bad = "too short to hold its second LMDB header page";
    if (!bad)
        bad = meta_parse(b, 1, &m[1]);
    if (!bad && m[1].psize != m[0].psize)
        bad = "its two header pages disagree on the page size";
    if (!bad && fstat(fd, &st) != 0)
        bad = "cannot stat it";
    close(fd);
    if (bad)
        return header_msg(s, bad, msg);
    const struct lmdb_meta *cur = m[1].txnid > m[0].txnid ? &m[1] : &m[0];
    uint64_t need = (cur->last_pg + 1) * cur->psize;
    if ((uint64_t)st.st_size < need) {
        snprintf(what, sizeof(what),
                 "truncated: the file is %llu bytes but its header says pages 0..%llu of "
                 "%u bytes (%llu bytes) are in use",
                 (unsigned long long)st.st_size, (unsigned long long)cur->last_pg, cur->psize,
                 (unsigned long long)need);
        return header_msg(s, what, msg);
    }
    return TN_OK;
}

static void store_free(tn_store *s)
{
    if (s->env)
        mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->map_lock);
    free(s->dir);
    free(s->path);
    free(s);
}

/* Create the LMDB environment of `s` and open it on s->dir. */
static tn_err env_open(tn_store *s, const tn_store_opts *o, tn_errmsg *msg)
{
    int rc = mdb_env_create(&s->env);
    if (rc != MDB_SUCCESS) {
        s->env = NULL;
        return mdb_msg(s, rc, "creating the environment", msg);
    }
    rc = mdb_env_set_maxdbs(s->env, TN_DB__COUNT);
    if (rc != MDB_SUCCESS)
        return mdb_msg(s, rc, "setting up the environment", msg);
    /* MDB_NOTLS: a read transaction belongs to its tn_rtxn, not to the thread's slot,
     * so independent readers in one thread do not collide. MDB_NORDAHEAD: the log is
     * read by key, and readahead on a large map only evicts useful pages.
     * Not MDB_WRITEMAP: it sizes the file to the whole map as a sparse file, and a
     * full disk then shows up as SIGBUS while writing a page instead of ENOSPC from
     * the commit, which breaks the promise of a clean TN_ERR_FULL; it also lets a
     * stray pointer write corrupt the store. Nor is it faster here: durable commits of
     * 150-byte appends measured within noise at 1 and 100 per commit and ~30% slower
     * at 1000 per commit than without it (ext4, fdatasync). */
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
    if (o->read_only)
        flags |= MDB_RDONLY;
    if (o->no_sync)
        flags |= MDB_NOSYNC;
    rc = mdb_env_open(s->env, s->dir, flags, 0640);
    if (rc == MDB_SUCCESS)
        return TN_OK;
    if (mdb_is_corrupt(rc))
        return corrupt_msg(s, rc, msg);
    if (rc == ENOENT)
        return no_store_msg(s, "no data.mdb", msg);
    if (rc == EAGAIN || rc == EBUSY)
        return tn_errmsg_set(msg, TN_ERR_BUSY, "%s: the store is locked by another process: %s",
                             s->path, mdb_strerror(rc));
    return mdb_msg(s, rc, "opening", msg);
}

/* Record the map limit and, when writing, grow the map to the size asked for. */
static tn_err map_size_init(tn_store *s, const tn_store_opts *o, tn_errmsg *msg)
{
    /* The map is the larger of what was asked and what the file already records
     * (LMDB adopts the recorded size when none is set before opening). */
    s->map_max = round_up(o->map_max ? o->map_max : DEFAULT_MAP_MAX, s->page);
    refresh_map_size(s);
    if (!o->read_only) {
        size_t want = o->map_size ? o->map_size : DEFAULT_MAP_SIZE;
        if (want > s->map_max)
            want = s->map_max;
        want = round_up(want, s->page);
        if (s->map_size < want) {
            int rc = mdb_env_set_mapsize(s->env, want);
            if (rc != MDB_SUCCESS)
                return mdb_msg(s, rc, "sizing the map", msg);
            refresh_map_size(s);
        }
    }
    return TN_OK;
}

tn_err tn_store_open(const char *dir, const tn_store_opts *opts, tn_store **out, tn_errmsg *msg)
{
    static const tn_store_opts defaults;
    const tn_store_opts *o = opts ? opts : &defaults;
    if (!dir || !*dir || !out)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "tn_store_open: no directory given");
    if (o->create && o->read_only)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%s: a store cannot be created read-only", dir);
    if (o->map_size && o->map_max && o->map_size > o->map_max)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "%s: the map size (%zu MiB) exceeds the map maximum (%zu MiB)",
                             dir, o->map_size / MIB, o->map_max / MIB);

    tn_store *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", dir);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->map_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    s->read_only = o->read_only;
    long pg = sysconf(_SC_PAGESIZE);
    s->page = pg > 0 ? (size_t)pg : 4096;
    s->dir = strdup(dir);
    if (!s->dir || asprintf(&s->path, "%s/data.mdb", dir) < 0) {
        s->path = NULL;
        store_free(s);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", dir);
    }

    tn_err err = check_paths(s, o, msg);
    if (err == TN_OK)
        err = check_header(s, msg);
    if (err != TN_OK)
        goto fail;

    err = env_open(s, o, msg);
    if (err == TN_OK)
        err = map_size_init(s, o, msg);
    if (err != TN_OK)
        goto fail;

    err = o->create ? open_dbs_create(s, msg) : open_dbs_existing(s, msg);
    if (err != TN_OK)
        goto fail;
    tn_debug("store", "msg=opened path=%s map_mib=%zu max_mib=%zu read_only=%d", s->path,
             s->map_size / MIB, s->map_max / MIB, (int)s->read_only);
    *out = s;
    return TN_OK;
fail:
    store_free(s);
    return err;
}

void tn_store_close(tn_store *s)
{
    if (!s)
        return;
    store_free(s);
}

const char *tn_store_dir(const tn_store *s)
{
    return s->dir;
}

const char *tn_store_path(const tn_store *s)
{
    return s->path;
}

bool tn_store_created(const tn_store *s)
{
    return s->created;
}

/* --- batches ------------------------------------------------------------------- */

tn_err tn_batch_new(tn_batch **out)
{
    if (!out)
        return TN_ERR_INVAL;
    tn_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return TN_ERR_NOMEM;
    *out = b;
    return TN_OK;
}

void tn_batch_free(tn_batch *b)
{
    if (!b)
        return;
    free(b->ops);
    free(b->buf);
    free(b);
}

void tn_batch_reset(tn_batch *b)
{
    if (!b)
        return;
    b->n = 0;
    b->used = 0;
}

size_t tn_batch_count(const tn_batch *b)
{
    return b ? b->n : 0;
}

/* Queue one op. On any error the batch is unchanged. */
static tn_err batch_add(tn_batch *b, enum op_kind kind, tn_db db, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    if (!b || (unsigned)db >= TN_DB__COUNT || !key || klen == 0 || (!val && vlen > 0))
        return TN_ERR_INVAL;
    if (klen > KEY_MAX || vlen > VAL_MAX)
        return TN_ERR_TOOBIG;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        struct op *ops = reallocarray(b->ops, cap, sizeof(*ops));
        if (!ops)
            return TN_ERR_NOMEM;
        b->ops = ops;
        b->cap = cap;
    }
    size_t need = klen + vlen;
    if (need > SIZE_MAX - b->used)
        return TN_ERR_TOOBIG;
    if (b->used + need > b->size) {
        size_t size = b->size ? b->size : 16384;
        while (size < b->used + need) {
            if (size > SIZE_MAX / 2)
                return TN_ERR_TOOBIG;
            size *= 2;
        }
        uint8_t *buf = realloc(b->buf, size);
        if (!buf)
            return TN_ERR_NOMEM;
        b->buf = buf;
        b->size = size;
    }
    struct op *op = &b->ops[b->n++];
    op->kind = (uint8_t)kind;
    op->db = (uint8_t)db;
    op->klen = (uint16_t)klen;
    op->vlen = (uint32_t)vlen;
    op->off = b->used;
    memcpy(b->buf + b->used, key, klen);
    if (vlen > 0)
        memcpy(b->buf + b->used + klen, val, vlen);
    b->used += need;
    return TN_OK;
}

tn_err tn_batch_put(tn_batch *b, tn_db db, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    return batch_add(b, OP_PUT, db, key, klen, val, vlen);
}

tn_err tn_batch_append(tn_batch *b, tn_db db, const void *key, size_t klen, const void *val,
                       size_t vlen)
{
    return batch_add(b, OP_APPEND, db, key, klen, val, vlen);
}

tn_err tn_batch_del(tn_batch *b, tn_db db, const void *key, size_t klen)
{
    return batch_add(b, OP_DEL, db, key, klen, NULL, 0);
}

/* --- commit -------------------------------------------------------------------- */

/* Writes through a cursor kept per database for the transaction (cur[db], opened at
 * the first write to db; the transaction's end closes it). mdb_put opens a new cursor
 * for every call and so descends from the root every time; a kept cursor does not:
 * with MDB_APPEND it stays on the last key (~20% of an append of a 100-byte value),
 * and for a plain put LMDB first looks on the page the cursor is on, where a batch's
 * projections, put in ascending ids, mostly land. */
static int cursor_write(MDB_txn *txn, MDB_dbi dbi, MDB_cursor **cur, MDB_val *k, MDB_val *v,
                        unsigned flags)
{
    if (!*cur) {
        int rc = mdb_cursor_open(txn, dbi, cur);
        if (rc != MDB_SUCCESS) {
            *cur = NULL;
            return rc;
        }
    }
    return mdb_cursor_put(*cur, k, v, flags);
}

/* Run the batch's ops in `txn`; on failure *bad is the index of the failing op. */
static int run_ops(tn_store *s, MDB_txn *txn, const tn_batch *b, size_t *bad)
{
    MDB_cursor *cur[TN_DB__COUNT] = {0};
    int rc = MDB_SUCCESS;
    for (size_t i = 0; i < b->n && rc == MDB_SUCCESS; i++) {
        const struct op *op = &b->ops[i];
        MDB_val k = {op->klen, b->buf + op->off};
        MDB_val v = {op->vlen, b->buf + op->off + op->klen};
        MDB_dbi dbi = s->dbi[op->db];
        switch (op->kind) {
        case OP_APPEND: rc = cursor_write(txn, dbi, &cur[op->db], &k, &v, MDB_APPEND); break;
        case OP_DEL:
            /* A missing key is already deleted. */
            rc = mdb_del(txn, dbi, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = MDB_SUCCESS;
            break;
        default: rc = cursor_write(txn, dbi, &cur[op->db], &k, &v, 0); break;
        }
        if (rc != MDB_SUCCESS)
            *bad = i;
    }
    /* the transaction tracks them (a put between two appends moves them along); they
     * are this call's own, closed here rather than left to its end */
    for (int d = 0; d < TN_DB__COUNT; d++)
        if (cur[d])
            mdb_cursor_close(cur[d]);
    return rc;
}

static tn_err commit_msg(tn_store *s, const tn_batch *b, int rc, size_t bad, bool in_op,
                         tn_errmsg *msg)
{
    if (rc == ENOSPC || rc == EDQUOT)
        return disk_full_msg(s, free_bytes(s), msg);
    if (rc == EIO || rc == MDB_PANIC) {
        long long avail = free_bytes(s);
        if (avail >= 0 && avail < LOW_FREE_BYTES)
            return disk_full_msg(s, avail, msg);
    }
    if (rc == MDB_TXN_FULL)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG,
                             "%s: a batch of %zu operations is too large for one "
                             "transaction: commit it in smaller batches",
                             s->path, b->n);
    if (in_op && rc == MDB_KEYEXIST)
        return tn_errmsg_set(msg, TN_ERR_EXISTS,
                             "%s: operation %zu appends to \"%s\" a key that is not greater "
                             "than its last key: nothing was written",
                             s->path, bad, db_names[b->ops[bad].db]);
    if (in_op) {
        char what[64];
        snprintf(what, sizeof(what), "operation %zu on \"%s\"", bad, db_names[b->ops[bad].db]);
        return mdb_msg(s, rc, what, msg);
    }
    return mdb_msg(s, rc, "committing", msg);
}

tn_err tn_store_commit(tn_store *s, const tn_batch *b, tn_errmsg *msg)
{
    if (!s || !b)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "tn_store_commit: no store or batch");
    if (s->read_only)
        return tn_errmsg_set(msg, TN_ERR_PERM,
                             "%s: the store is open read-only: nothing "
                             "was written",
                             s->path);
    if (b->n == 0)
        return TN_OK;
    for (int attempt = 0; attempt < MAX_RETRIES; attempt++) {
        MDB_txn *txn;
        tn_err err = txn_begin(s, 0, &txn, msg);
        if (err != TN_OK)
            return err;
        size_t bad = 0;
        int rc = run_ops(s, txn, b, &bad);
        bool in_op = rc != MDB_SUCCESS;
        if (rc == MDB_SUCCESS)
            rc = mdb_txn_commit(txn); /* frees txn even when it fails */
        else
            mdb_txn_abort(txn);
        map_unshare(s);
        if (rc == MDB_SUCCESS)
            return TN_OK;
        if (rc != MDB_MAP_FULL)
            return commit_msg(s, b, rc, bad, in_op, msg);
        /* Nothing was written; grow and run the whole batch again. */
        err = grow(s, msg);
        if (err != TN_OK)
            return err;
    }
    return tn_errmsg_set(msg, TN_ERR_BUSY, "%s: commit kept failing to fit the map: retry",
                         s->path);
}

/* --- streamed commit ------------------------------------------------------------ */

struct tn_stream {
    tn_store *s;
    MDB_txn *txn;                  /* NULL when it could not be begun again */
    MDB_cursor *cur[TN_DB__COUNT]; /* the appends' (cursor_write), of txn */
    int rc;                        /* the first failed append, MDB_SUCCESS if none */
    size_t n;                      /* appends fed */
    size_t bad;                    /* index of that append */
    tn_db bad_db;
};

tn_err tn_store_stream_begin(tn_store *s, tn_stream **out, tn_errmsg *msg)
{
    if (!s || !out)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "tn_store_stream_begin: no store");
    if (s->read_only)
        return tn_errmsg_set(msg, TN_ERR_PERM,
                             "%s: the store is open read-only: nothing was written", s->path);
    tn_stream *t = calloc(1, sizeof(*t));
    if (!t)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", s->path);
    t->s = s;
    tn_err err = txn_begin(s, 0, &t->txn, msg);
    if (err != TN_OK) {
        free(t);
        return err;
    }
    *out = t;
    return TN_OK;
}

tn_err tn_store_stream_append(tn_stream *t, tn_db db, const void *key, size_t klen,
                              const void *val, size_t vlen)
{
    size_t i = t->n++;
    if (t->rc != MDB_SUCCESS)
        return t->rc == MDB_MAP_FULL ? TN_OK : TN_ERR_IO;
    int rc = EINVAL;
    if ((unsigned)db < TN_DB__COUNT && key && klen > 0 && klen <= KEY_MAX && vlen <= VAL_MAX) {
        MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
        rc = cursor_write(t->txn, t->s->dbi[db], &t->cur[db], &k, &v, MDB_APPEND);
    }
    if (rc == MDB_SUCCESS)
        return TN_OK;
    t->rc = rc;
    t->bad = i;
    t->bad_db = db < TN_DB__COUNT ? db : TN_DB_EVENTS;
    return rc == MDB_MAP_FULL ? TN_OK : TN_ERR_IO;
}

/* The error of a failed streamed commit: an append's own, or as tn_store_commit's. */
static tn_err stream_msg(tn_stream *t, const tn_batch *b, int rc, size_t bad, bool in_op,
                         tn_errmsg *msg)
{
    static const tn_batch none;
    bool disk =
        rc == ENOSPC || rc == EDQUOT || rc == EIO || rc == MDB_PANIC || rc == MDB_TXN_FULL;
    if (t->rc != MDB_SUCCESS && !disk) {
        char what[64];
        snprintf(what, sizeof(what), "streamed append %zu to \"%s\"", t->bad,
                 db_names[t->bad_db]);
        return mdb_msg(t->s, rc, what, msg);
    }
    return commit_msg(t->s, b ? b : &none, rc, bad, in_op && t->rc == MDB_SUCCESS, msg);
}

void tn_store_stream_abort(tn_stream *t)
{
    if (!t)
        return;
    if (t->txn) {
        mdb_txn_abort(t->txn);
        map_unshare(t->s);
    }
    free(t);
}

/* One try: the batch after the appends, then the commit. Ends the transaction. */
static int stream_try(tn_stream *t, const tn_batch *b, size_t *bad, bool *in_op)
{
    int rc = t->rc;
    *in_op = rc != MDB_SUCCESS;
    if (rc == MDB_SUCCESS && b) {
        rc = run_ops(t->s, t->txn, b, bad);
        *in_op = rc != MDB_SUCCESS;
    }
    if (rc == MDB_SUCCESS)
        rc = mdb_txn_commit(t->txn); /* frees txn even when it fails */
    else
        mdb_txn_abort(t->txn);
    t->txn = NULL;
    memset(t->cur, 0, sizeof(t->cur)); /* its end closed them */
    map_unshare(t->s);
    return rc;
}

tn_err tn_store_stream_commit(tn_stream *t, const tn_batch *b, tn_stream_refeed_fn refeed,
                              void *ctx, tn_errmsg *msg)
{
    tn_store *s = t->s;
    tn_err err = TN_ERR_BUSY;
    int attempt = 0;
    for (; attempt < MAX_RETRIES; attempt++) {
        size_t bad = 0;
        bool in_op = false;
        int rc = stream_try(t, b, &bad, &in_op);
        if (rc == MDB_SUCCESS) {
            err = TN_OK;
            break;
        }
        if (rc != MDB_MAP_FULL) {
            err = stream_msg(t, b, rc, bad, in_op, msg);
            break;
        }
        /* Nothing was written; grow, and feed the whole stream again. */
        if ((err = grow(s, msg)) != TN_OK || (err = txn_begin(s, 0, &t->txn, msg)) != TN_OK)
            break;
        t->rc = MDB_SUCCESS;
        t->n = 0;
        if ((err = refeed(ctx, t)) != TN_OK) {
            tn_errmsg_set(msg, err, "%s: refeeding the commit after the map grew: %s", s->path,
                          tn_strerror(err));
            break;
        }
    }
    if (attempt == MAX_RETRIES)
        err = tn_errmsg_set(msg, TN_ERR_BUSY, "%s: commit kept failing to fit the map: retry",
                            s->path);
    tn_store_stream_abort(t); /* the transaction is over unless a refeed failed */
    return err;
}

/* --- reading ------------------------------------------------------------------- */

tn_err tn_store_read_begin(tn_store *s, tn_rtxn **out)
{
    if (!s || !out)
        return TN_ERR_INVAL;
    tn_rtxn *t = malloc(sizeof(*t));
    if (!t)
        return TN_ERR_NOMEM;
    tn_err err = txn_begin(s, MDB_RDONLY, &t->txn, NULL);
    if (err != TN_OK) {
        free(t);
        return err;
    }
    t->s = s;
    *out = t;
    return TN_OK;
}

/* Must run in the thread that began `t`: it releases that thread's share of the map. */
void tn_store_read_end(tn_rtxn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->txn);
    map_unshare(t->s);
    free(t);
}

static bool db_ok(tn_db db)
{
    return (unsigned)db < TN_DB__COUNT;
}

tn_err tn_store_get(tn_rtxn *t, tn_db db, const void *key, size_t klen, tn_val *val)
{
    if (!t || !db_ok(db) || !key || klen == 0 || !val)
        return TN_ERR_INVAL;
    if (klen > KEY_MAX)
        return TN_ERR_NOENT; /* no such key can have been stored */
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(t->txn, t->s->dbi[db], &k, &v);
    if (rc != MDB_SUCCESS)
        return err_from_mdb(rc);
    val->data = v.mv_data;
    val->len = v.mv_size;
    return TN_OK;
}

tn_err tn_cursor_open(tn_rtxn *t, tn_db db, tn_cursor **out)
{
    if (!t || !db_ok(db) || !out)
        return TN_ERR_INVAL;
    tn_cursor *c = malloc(sizeof(*c));
    if (!c)
        return TN_ERR_NOMEM;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[db], &c->c);
    if (rc != MDB_SUCCESS) {
        free(c);
        return err_from_mdb(rc);
    }
    *out = c;
    return TN_OK;
}

void tn_cursor_close(tn_cursor *c)
{
    if (!c)
        return;
    mdb_cursor_close(c->c);
    free(c);
}

static tn_err cursor_get(tn_cursor *c, MDB_val *k, MDB_cursor_op op, tn_val *key, tn_val *val)
{
    MDB_val v;
    int rc = mdb_cursor_get(c->c, k, &v, op);
    if (rc != MDB_SUCCESS)
        return err_from_mdb(rc);
    if (key) {
        key->data = k->mv_data;
        key->len = k->mv_size;
    }
    if (val) {
        val->data = v.mv_data;
        val->len = v.mv_size;
    }
    return TN_OK;
}

tn_err tn_cursor_first(tn_cursor *c, tn_val *key, tn_val *val)
{
    if (!c)
        return TN_ERR_INVAL;
    MDB_val k;
    return cursor_get(c, &k, MDB_FIRST, key, val);
}

tn_err tn_cursor_seek(tn_cursor *c, const void *k, size_t klen, tn_val *key, tn_val *val)
{
    if (!c || !k || klen == 0 || klen > KEY_MAX)
        return TN_ERR_INVAL;
    MDB_val mk = {klen, (void *)k};
    return cursor_get(c, &mk, MDB_SET_RANGE, key, val);
}

tn_err tn_cursor_next(tn_cursor *c, tn_val *key, tn_val *val)
{
    if (!c)
        return TN_ERR_INVAL;
    MDB_val k;
    return cursor_get(c, &k, MDB_NEXT, key, val);
}

/* --- prefaulting the map for a walk ------------------------------------------------- */

/* A megabyte per madvise: small enough that a stop is seen soon, large enough that the
 * calls cost nothing next to the pages they map. At most WINDOW past the furthest
 * point the walk reported (tn_store_prefault_at): on a store larger than memory,
 * mapping all of it would evict from the page cache what it mapped first, before the
 * walk got there. */
#define PREFAULT_CHUNK  MIB
#define PREFAULT_WINDOW (32 * MIB)

struct tn_prefault {
    pthread_t th;
    const uint8_t *base;
    size_t len;
    _Atomic size_t seen; /* the furthest offset the walk reported */
    _Atomic size_t done; /* mapped so far, from the start */
    _Atomic bool stop;
    _Atomic bool ended; /* the helper has nothing more to do */
};

static void *prefault_run(void *arg)
{
    struct tn_prefault *p = arg;
    pthread_setname_np(pthread_self(), "tern-prefault");
    for (size_t off = 0; off < p->len && !p->stop;) {
        if (off >= p->seen + PREFAULT_WINDOW) { /* far enough ahead: let the walk come */
            nanosleep(&(struct timespec){0, 1000000}, NULL);
            continue;
        }
        size_t n = p->len - off < PREFAULT_CHUNK ? p->len - off : PREFAULT_CHUNK;
        /* EINVAL: a kernel before 5.14; EFAULT/ENOMEM: a page it could not map (the
         * walk's own access then decides). Either way there is nothing more to do. */
        if (madvise((void *)(p->base + off), n, MADV_POPULATE_READ) != 0)
            break;
        off += n;
        p->done = off;
    }
    p->ended = true;
    return NULL;
}

/* Where this process maps the file `fs` (LMDB does not say where its map is: its
 * me_mapaddr is only set with MDB_FIXEDMAP): the mapping of the same device and inode
 * in /proc/self/maps, at file offset 0. false when there is none. */
static bool find_map(const struct stat *fs, const uint8_t **base, size_t *len)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return false;
    char line[4352];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, off, ino;
        unsigned maj, mnr;
        if (sscanf(line, "%lx-%lx %*s %lx %x:%x %lu", &lo, &hi, &off, &maj, &mnr, &ino) == 6 &&
            off == 0 && ino == (unsigned long)fs->st_ino && maj == major(fs->st_dev) &&
            mnr == minor(fs->st_dev) && hi > lo) {
            *base = (const uint8_t *)lo;
            *len = hi - lo;
            found = true;
        }
    }
    fclose(f);
    return found;
}

tn_prefault *tn_store_prefault_begin(tn_rtxn *t)
{
#ifdef MADV_POPULATE_READ
    MDB_envinfo info;
    MDB_stat st;
    mdb_filehandle_t fd;
    struct stat fs;
    const uint8_t *base;
    size_t maplen;
    if (!t || sysconf(_SC_NPROCESSORS_ONLN) < 2 || mdb_env_info(t->s->env, &info) ||
        mdb_env_stat(t->s->env, &st) || mdb_env_get_fd(t->s->env, &fd) || fstat(fd, &fs) ||
        !find_map(&fs, &base, &maplen))
        return NULL;
    /* the pages in use, within the file (a page past its end would fail the madvise)
     * and the map */
    size_t len = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
    if (fs.st_size >= 0 && (size_t)fs.st_size < len)
        len = (size_t)fs.st_size;
    if (maplen < len)
        len = maplen;
    struct tn_prefault *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->base = base;
    p->len = len;
    if (len == 0 || pthread_create(&p->th, NULL, prefault_run, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
#else
    (void)t;
    return NULL;
#endif
}

void tn_store_prefault_at(tn_prefault *p, const void *at)
{
    if (!p)
        return;
    size_t off = (size_t)((const uint8_t *)at - p->base);
    if ((const uint8_t *)at >= p->base && off < p->len && off > p->seen)
        p->seen = off;
}

bool tn_store_prefault_idle(tn_prefault *p, size_t *mapped)
{
    if (!p)
        return true;
    size_t done = p->done;
    if (mapped)
        *mapped = done;
    return p->ended || done >= p->len || done >= p->seen + PREFAULT_WINDOW;
}

void tn_store_prefault_end(tn_prefault *p)
{
    if (!p)
        return;
    p->stop = true;
    pthread_join(p->th, NULL);
    free(p);
}

/* --- information ----------------------------------------------------------------- */

tn_err tn_store_stat_get(tn_store *s, tn_store_stat *out)
{
    if (!s || !out)
        return TN_ERR_INVAL;
    MDB_txn *txn;
    tn_err err = txn_begin(s, MDB_RDONLY, &txn, NULL);
    if (err != TN_OK)
        return err;
    tn_store_stat st = {0};
    int rc = MDB_SUCCESS;
    for (int i = 0; i < TN_DB__COUNT && rc == MDB_SUCCESS; i++) {
        MDB_stat ms;
        rc = mdb_stat(txn, s->dbi[i], &ms);
        st.entries[i] = ms.ms_entries;
    }
    MDB_envinfo info;
    MDB_stat es;
    if (rc == MDB_SUCCESS)
        rc = mdb_env_info(s->env, &info);
    if (rc == MDB_SUCCESS)
        rc = mdb_env_stat(s->env, &es);
    mdb_txn_abort(txn);
    map_unshare(s);
    if (rc != MDB_SUCCESS)
        return err_from_mdb(rc);
    st.map_size = info.me_mapsize;
    st.map_max = s->map_max > info.me_mapsize ? s->map_max : info.me_mapsize;
    st.used_bytes = (info.me_last_pgno + 1) * (size_t)es.ms_psize;
    *out = st;
    return TN_OK;
}

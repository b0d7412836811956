/* Tests of the LMDB store: opening and its errors, batches, reads, map growth and a
 * full map, read-only use next to a writer. Each test works in its own temp dir. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "store.h"
#include "testutil.h"

#define MIB ((size_t)1 << 20)

static char tmp[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    tn_log_set_level(TN_LOG_WARN); /* map growth logs at info */
    strcpy(tmp, "/tmp/tern-store-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void teardown(void)
{
    rm_rf(tmp);
}

TestSuite(store, .init = setup, .fini = teardown);

/* cr_skip_test does not run the suite's .fini: the temp dir goes first. */
static void skip_clean(const char *why)
{
    rm_rf(tmp);
    cr_skip_test("%s", why);
}

/* A path under this test's temp dir. */
static const char *sub(const char *name)
{
    static char buf[4][128];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 128, "%s/%s", tmp, name);
    return p;
}

static tn_store *open_ok(const char *dir, tn_store_opts o)
{
    tn_store *s = NULL;
    tn_errmsg m = {{0}};
    tn_err err = tn_store_open(dir, &o, &s, &m);
    cr_assert_eq(err, TN_OK, "open %s: %s: %s", dir, tn_errname(err), m.text);
    cr_assert_not_null(s);
    return s;
}

static tn_store *create_ok(const char *dir)
{
    return open_ok(dir, (tn_store_opts){.create = true});
}

static void key64(uint8_t k[8], uint64_t v)
{
    tn_put_be64(k, v);
}

/* A value that names its own key, so a reader can check it belongs where it is. */
static size_t make_val(uint8_t *buf, size_t len, uint64_t n)
{
    cr_assert_geq(len, 8);
    tn_put_be64(buf, n);
    for (size_t i = 8; i < len; i++)
        buf[i] = (uint8_t)(n * 31 + i);
    return len;
}

static bool val_matches(tn_val v, size_t len, uint64_t n)
{
    uint8_t want[4096];
    if (v.len != len || len > sizeof(want))
        return false;
    make_val(want, len, n);
    return memcmp(v.data, want, len) == 0;
}

static void commit_ok(tn_store *s, tn_batch *b)
{
    tn_errmsg m = {{0}};
    tn_err err = tn_store_commit(s, b, &m);
    cr_assert_eq(err, TN_OK, "commit: %s: %s", tn_errname(err), m.text);
}

/* Append events [from, to) of `len` bytes each to TN_DB_EVENTS and commit. */
static void append_events(tn_store *s, uint64_t from, uint64_t to, size_t len)
{
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t v[4096];
    for (uint64_t i = from; i < to; i++) {
        uint8_t k[8];
        key64(k, i);
        make_val(v, len, i);
        cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, len), TN_OK);
    }
    commit_ok(s, b);
    tn_batch_free(b);
}

/* Get a key as a string (NUL-terminated copy) or NULL when absent. */
static char *get_str(tn_store *s, tn_db db, const char *key)
{
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    tn_val v;
    char *out = NULL;
    tn_err err = tn_store_get(t, db, key, strlen(key), &v);
    if (err == TN_OK)
        out = strndup(v.data, v.len);
    else
        cr_assert_eq(err, TN_ERR_NOENT, "get %s: %s", key, tn_errname(err));
    tn_store_read_end(t);
    return out;
}

static void expect_str(tn_store *s, tn_db db, const char *key, const char *want)
{
    char *got = get_str(s, db, key);
    if (!want) {
        cr_assert_null(got, "%s: expected absent, got \"%s\"", key, got);
        return;
    }
    cr_assert_not_null(got, "%s: expected \"%s\", absent", key, want);
    cr_assert_str_eq(got, want);
    free(got);
}

static void put_str(tn_batch *b, tn_db db, const char *k, const char *v)
{
    cr_assert_eq(tn_batch_put(b, db, k, strlen(k), v, strlen(v)), TN_OK);
}

static bool event_present(tn_store *s, uint64_t n, size_t len)
{
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    uint8_t k[8];
    key64(k, n);
    tn_val v;
    tn_err err = tn_store_get(t, TN_DB_EVENTS, k, 8, &v);
    cr_assert(err == TN_OK || err == TN_ERR_NOENT);
    bool ok = err == TN_OK;
    if (ok)
        cr_assert(val_matches(v, len, n), "event %llu has the wrong bytes",
                  (unsigned long long)n);
    tn_store_read_end(t);
    return ok;
}

static uint64_t entries(tn_store *s, tn_db db)
{
    tn_store_stat st;
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    return st.entries[db];
}

/* --- opening --------------------------------------------------------------------- */

Test(store, db_names)
{
    const char *want[] = {"events", "by_wf", "defs", "wf", "tasks", "meta"};
    for (int i = 0; i < TN_DB__COUNT; i++)
        cr_assert_str_eq(tn_db_name((tn_db)i), want[i]);
    cr_assert_not_null(tn_db_name(TN_DB__COUNT));
}

Test(store, create_close_reopen_keeps_data)
{
    const char *dir = sub("a/b/data"); /* parents are created too */
    tn_store *s = create_ok(dir);
    cr_assert_str_eq(tn_store_dir(s), dir);
    char want_path[160];
    snprintf(want_path, sizeof(want_path), "%s/data.mdb", dir);
    cr_assert_str_eq(tn_store_path(s), want_path);
    cr_assert_eq(access(want_path, F_OK), 0);

    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    put_str(b, TN_DB_DEFS, "etl/1", "definition bytes");
    commit_ok(s, b);
    tn_batch_free(b);
    append_events(s, 1, 11, 150);
    tn_store_close(s);

    s = open_ok(dir, (tn_store_opts){0});
    expect_str(s, TN_DB_DEFS, "etl/1", "definition bytes");
    for (uint64_t i = 1; i < 11; i++)
        cr_assert(event_present(s, i, 150));
    cr_assert_eq(entries(s, TN_DB_EVENTS), 10);
    tn_store_close(s);

    /* create on an existing store opens it and keeps everything */
    s = create_ok(dir);
    expect_str(s, TN_DB_DEFS, "etl/1", "definition bytes");
    cr_assert_eq(entries(s, TN_DB_EVENTS), 10);
    tn_store_close(s);
}

Test(store, open_missing_dir_is_noent_naming_it)
{
    const char *dir = sub("nowhere");
    tn_store *s = (tn_store *)0x1;
    tn_errmsg m = {{0}};
    tn_err err = tn_store_open(dir, &(tn_store_opts){0}, &s, &m);
    cr_assert_eq(err, TN_ERR_NOENT);
    cr_assert_eq(s, (tn_store *)0x1, "*out must be untouched on error");
    cr_assert_not_null(strstr(m.text, dir), "message: %s", m.text);
    cr_assert_neq(access(dir, F_OK), 0, "open without create must not create");
}

Test(store, open_dir_without_data_is_noent_and_creates_nothing)
{
    tn_store *s = NULL;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_NOENT);
    cr_assert_not_null(strstr(m.text, tmp), "message: %s", m.text);
    cr_assert_not_null(strstr(m.text, "data.mdb"), "message: %s", m.text);
    cr_assert_neq(access(sub("data.mdb"), F_OK), 0);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.read_only = true}, &s, &m), TN_ERR_NOENT);
}

Test(store, open_garbage_is_corrupt_naming_the_file)
{
    const char *path = sub("data.mdb");
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 65536; i++)
        fputc((i * 7919 + 13) & 0xff, f);
    fclose(f);
    tn_errmsg m = {{0}};
    tn_store *s = NULL;
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_CORRUPT);
    cr_assert_not_null(strstr(m.text, path), "message: %s", m.text);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.create = true}, &s, &m), TN_ERR_CORRUPT,
                 "create must never overwrite a damaged file");
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.read_only = true}, &s, &m),
                 TN_ERR_CORRUPT);
    cr_assert_null(s);
}

/* A store of format 1 (by_wf with one sorted duplicate per event), laid out as that
 * tern made it: refused, by every kind of open, with what to do. */
Test(store, open_format1_store_is_refused_with_what_to_do)
{
    MDB_env *env;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, tmp, 0, 0600), 0);
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    static const char *const names[] = {"events", "by_wf", "defs", "wf", "tasks", "meta"};
    for (int i = 0; i < 6; i++) {
        unsigned fl = MDB_CREATE | (i == 1 ? MDB_DUPSORT | MDB_DUPFIXED : 0);
        cr_assert_eq(mdb_dbi_open(txn, names[i], fl, &dbi), 0);
    }
    MDB_val k = {6, "format"}, v = {4, "\0\0\0\x01"};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    tn_errmsg m = {{0}};
    tn_store *s = NULL;
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_VERSION);
    cr_assert_not_null(strstr(m.text, "format 1"), "message: %s", m.text);
    cr_assert_not_null(strstr(m.text, "older tern"), "message: %s", m.text);
    cr_assert_not_null(strstr(m.text, "tern init --data"), "message: %s", m.text);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.create = true}, &s, &m), TN_ERR_VERSION);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.read_only = true}, &s, &m),
                 TN_ERR_VERSION);
    cr_assert_null(s);
}

Test(store, open_other_format_is_version)
{
    tn_store *s = create_ok(tmp);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    /* The format record is a 4-byte big-endian u32 under "format" in meta. */
    const uint8_t three[4] = {0, 0, 0, 3};
    cr_assert_eq(tn_batch_put(b, TN_DB_META, "format", 6, three, 4), TN_OK);
    commit_ok(s, b);
    tn_store_close(s);

    tn_errmsg m = {{0}};
    s = NULL;
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_VERSION);
    cr_assert_not_null(strstr(m.text, "data.mdb"), "message: %s", m.text);
    cr_assert_not_null(strstr(m.text, "format 3"), "message: %s", m.text);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.create = true}, &s, &m), TN_ERR_VERSION);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.read_only = true}, &s, &m),
                 TN_ERR_VERSION);

    /* A format record of the wrong size is damage, not a version. */
    s = NULL;
    MDB_env *env;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, tmp, 0, 0600), 0);
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val k = {6, "format"}, v = {1, "1"};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_CORRUPT);
    tn_batch_free(b);
}

/* A crash after LMDB made its files but before the creating transaction committed. */
Test(store, interrupted_creation_is_no_store_yet)
{
    MDB_env *env;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_open(env, tmp, 0, 0600), 0);
    mdb_env_close(env);

    tn_errmsg m = {{0}};
    tn_store *s = NULL;
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_NOENT);
    cr_assert_not_null(strstr(m.text, tmp), "message: %s", m.text);
    s = create_ok(tmp);
    append_events(s, 1, 2, 16);
    tn_store_close(s);
    s = open_ok(tmp, (tn_store_opts){0});
    cr_assert(event_present(s, 1, 16));
    tn_store_close(s);
}

Test(store, empty_data_file_is_no_store_yet)
{
    int fd = open(sub("data.mdb"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    close(fd);
    tn_store *s = NULL;
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, NULL), TN_ERR_NOENT);
    struct stat st;
    cr_assert_eq(stat(sub("data.mdb"), &st), 0);
    cr_assert_eq(st.st_size, 0, "open without create must not write");
    s = create_ok(tmp);
    tn_store_close(s);
}

Test(store, events_without_format_is_corrupt)
{
    MDB_env *env;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, tmp, 0, 0600), 0);
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "events", MDB_CREATE, &dbi), 0);
    uint8_t kb[8];
    key64(kb, 1);
    MDB_val k = {8, kb}, v = {3, "evt"};
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    tn_store *s = NULL;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_CORRUPT);
    cr_assert_not_null(strstr(m.text, "data.mdb"), "message: %s", m.text);
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.create = true}, &s, &m), TN_ERR_CORRUPT,
                 "create must not adopt a log without a format");
}

Test(store, open_rejects_contradictory_options)
{
    tn_store *s = NULL;
    cr_assert_eq(
        tn_store_open(tmp, &(tn_store_opts){.create = true, .read_only = true}, &s, NULL),
        TN_ERR_INVAL);
    cr_assert_eq(
        tn_store_open(tmp,
                      &(tn_store_opts){.create = true, .map_size = 8 * MIB, .map_max = 4 * MIB},
                      &s, NULL),
        TN_ERR_INVAL);
    cr_assert_eq(tn_store_open(NULL, &(tn_store_opts){.create = true}, &s, NULL), TN_ERR_INVAL);
    cr_assert_null(s);
}

Test(store, null_is_accepted_by_destructors)
{
    tn_store_close(NULL);
    tn_batch_free(NULL);
    tn_store_read_end(NULL);
    tn_cursor_close(NULL);
}

/* --- batches ----------------------------------------------------------------------- */

Test(store, batch_put_append_del_then_get)
{
    tn_store *s = create_ok(tmp);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    put_str(b, TN_DB_WF, "w1", "first");
    put_str(b, TN_DB_WF, "w2", "two");
    put_str(b, TN_DB_WF, "w1", "second"); /* later op wins: ops run in order */
    put_str(b, TN_DB_TASKS, "t1", "task");
    cr_assert_eq(tn_batch_append(b, TN_DB_DEFS, "d1", 2, "def", 3), TN_OK);
    cr_assert_eq(tn_batch_del(b, TN_DB_WF, "w2", 2), TN_OK);
    cr_assert_eq(tn_batch_del(b, TN_DB_WF, "never", 5), TN_OK); /* absent: no error */
    cr_assert_eq(tn_batch_count(b), 7);
    commit_ok(s, b);
    cr_assert_eq(tn_batch_count(b), 7, "commit leaves the batch as it was");

    expect_str(s, TN_DB_WF, "w1", "second");
    expect_str(s, TN_DB_WF, "w2", NULL);
    expect_str(s, TN_DB_TASKS, "t1", "task");
    expect_str(s, TN_DB_DEFS, "d1", "def");
    expect_str(s, TN_DB_TASKS, "w1", NULL); /* databases are separate */

    tn_batch_reset(b);
    cr_assert_eq(tn_batch_count(b), 0);
    put_str(b, TN_DB_WF, "w1", "third");
    cr_assert_eq(tn_batch_put(b, TN_DB_WF, "empty", 5, NULL, 0), TN_OK);
    commit_ok(s, b);
    expect_str(s, TN_DB_WF, "w1", "third");
    expect_str(s, TN_DB_WF, "empty", "");
    expect_str(s, TN_DB_TASKS, "t1", "task");

    tn_batch_reset(b);
    commit_ok(s, b); /* an empty batch is fine */
    tn_batch_free(b);
    tn_store_close(s);
}

Test(store, batch_bounds)
{
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t key[512];
    memset(key, 'k', sizeof(key));
    cr_assert_eq(tn_batch_put(b, TN_DB_WF, key, 512, "v", 1), TN_ERR_TOOBIG);
    cr_assert_eq(tn_batch_put(b, TN_DB_WF, key, 0, "v", 1), TN_ERR_INVAL);
    cr_assert_eq(tn_batch_put(b, TN_DB__COUNT, key, 1, "v", 1), TN_ERR_INVAL);
    cr_assert_eq(tn_batch_put(b, TN_DB_WF, key, 1, NULL, 64 * MIB + 1), TN_ERR_INVAL);
    char *huge = malloc(64 * MIB + 1);
    cr_assert_not_null(huge);
    cr_assert_eq(tn_batch_put(b, TN_DB_WF, key, 1, huge, 64 * MIB + 1), TN_ERR_TOOBIG);
    free(huge);
    cr_assert_eq(tn_batch_count(b), 0, "failed adds leave the batch unchanged");

    cr_assert_eq(tn_batch_put(b, TN_DB_WF, key, 511, "max", 3), TN_OK);
    tn_store *s = create_ok(tmp);
    commit_ok(s, b);
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    tn_val v;
    cr_assert_eq(tn_store_get(t, TN_DB_WF, key, 511, &v), TN_OK);
    cr_assert_eq(v.len, 3);
    cr_assert_eq(memcmp(v.data, "max", 3), 0);
    cr_assert_eq(tn_store_get(t, TN_DB_WF, key, 512, &v), TN_ERR_NOENT);
    tn_store_read_end(t);
    tn_batch_free(b);
    tn_store_close(s);
}

Test(store, batch_grows_and_keeps_every_copy)
{
    /* Many ops and a large value force the arena and op array to grow; every queued
     * key and value must survive the moves, and the caller's buffers are not kept. */
    tn_store *s = create_ok(tmp);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t v[4096];
    for (uint64_t i = 1; i <= 5000; i++) {
        uint8_t k[8];
        key64(k, i);
        make_val(v, i == 2500 ? 4096 : 150, i);
        cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, i == 2500 ? 4096 : 150), TN_OK);
        memset(v, 0, sizeof(v));
        memset(k, 0, sizeof(k));
    }
    commit_ok(s, b);
    for (uint64_t i = 1; i <= 5000; i++)
        cr_assert(event_present(s, i, i == 2500 ? 4096 : 150));
    cr_assert_eq(entries(s, TN_DB_EVENTS), 5000);
    tn_batch_free(b);
    tn_store_close(s);
}

Test(store, uncommitted_batch_leaves_nothing)
{
    tn_store *s = create_ok(tmp);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    put_str(b, TN_DB_WF, "ghost", "boo");
    uint8_t k[8], v[150];
    key64(k, 1);
    make_val(v, 150, 1);
    cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 150), TN_OK);
    tn_batch_free(b);
    expect_str(s, TN_DB_WF, "ghost", NULL);
    cr_assert_eq(entries(s, TN_DB_EVENTS), 0);
    tn_store_close(s);
    s = open_ok(tmp, (tn_store_opts){0});
    expect_str(s, TN_DB_WF, "ghost", NULL);
    cr_assert_eq(entries(s, TN_DB_EVENTS), 0);
    tn_store_close(s);
}

Test(store, failed_commit_leaves_nothing)
{
    tn_store *s = create_ok(tmp);
    append_events(s, 1, 11, 150);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    put_str(b, TN_DB_WF, "w", "written first");
    uint8_t k[8], v[150];
    key64(k, 11);
    make_val(v, 150, 11);
    cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 150), TN_OK);
    key64(k, 5); /* not after the last key: the append must fail */
    cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 150), TN_OK);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_commit(s, b, &m), TN_ERR_EXISTS);
    cr_assert_not_null(strstr(m.text, "events"), "message: %s", m.text);
    expect_str(s, TN_DB_WF, "w", NULL);
    cr_assert_not(event_present(s, 11, 150));
    cr_assert(event_present(s, 5, 150), "the existing event is untouched");
    cr_assert_eq(entries(s, TN_DB_EVENTS), 10);
    tn_batch_free(b);
    tn_store_close(s);
}

/* --- reading --------------------------------------------------------------------- */

static void add_dup(tn_batch *b, uint64_t wf, uint64_t seq)
{
    uint8_t k[16];
    key64(k, wf);
    key64(k + 8, seq);
    cr_assert_eq(tn_batch_put(b, TN_DB_BY_WF, k, 16, "\x01", 1), TN_OK);
}

/* by_wf is a plain keyed database (format 2): one entry per (workflow, first seq),
 * variable-length values, a second put of a key replaces it, and a workflow's entries
 * are adjacent and in seq order under a seek to (wf, 0). */
Test(store, by_wf_entries_sorted_by_wf_then_seq)
{
    tn_store *s = create_ok(tmp);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    const uint64_t seqs[] = {40, 3, 700, 12, 256, 1};
    for (size_t i = 0; i < TN_ARRAY_LEN(seqs); i++) {
        add_dup(b, 7, seqs[i]);
        add_dup(b, 6, seqs[i] + 1000); /* neighbours on both sides */
        add_dup(b, 8, seqs[i] + 2000);
    }
    uint8_t k[16];
    key64(k, 7);
    key64(k + 8, 12);
    uint8_t big[3000];
    memset(big, 0x11, sizeof(big));
    cr_assert_eq(tn_batch_put(b, TN_DB_BY_WF, k, 16, big, sizeof(big)), TN_OK);
    commit_ok(s, b);
    cr_assert_eq(entries(s, TN_DB_BY_WF), 18, "the second put of (7, 12) replaced it");

    tn_rtxn *t;
    tn_cursor *c;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    cr_assert_eq(tn_cursor_open(t, TN_DB_BY_WF, &c), TN_OK);
    key64(k + 8, 0);
    tn_val key, val;
    const uint64_t want[] = {1, 3, 12, 40, 256, 700};
    size_t n = 0;
    for (tn_err e = tn_cursor_seek(c, k, 16, &key, &val);
         e == TN_OK && tn_get_be64(key.data) == 7; e = tn_cursor_next(c, &key, &val), n++) {
        cr_assert_lt(n, TN_ARRAY_LEN(want));
        cr_assert_eq(key.len, 16);
        cr_assert_eq(tn_get_be64((const uint8_t *)key.data + 8), want[n]);
        cr_assert_eq(val.len, want[n] == 12 ? sizeof(big) : 1);
    }
    cr_assert_eq(n, TN_ARRAY_LEN(want));
    cr_assert_eq(tn_get_be64(key.data), 8, "the walk stops at the next workflow");
    tn_cursor_close(c);
    tn_store_read_end(t);
    tn_batch_free(b);
    tn_store_close(s);
}

Test(store, cursor_walks_events_in_key_order)
{
    tn_store *s = create_ok(tmp);
    /* keys 2, 4, ..., 600: crosses byte boundaries, where BE byte order matters */
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t v[64];
    for (uint64_t i = 2; i <= 600; i += 2) {
        uint8_t k[8];
        key64(k, i);
        make_val(v, 64, i);
        cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 64), TN_OK);
    }
    commit_ok(s, b);

    tn_rtxn *t;
    tn_cursor *c;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    cr_assert_eq(tn_cursor_open(t, TN_DB_EVENTS, &c), TN_OK);
    /* first, then next to the end */
    tn_val key, val;
    uint64_t want = 2;
    tn_err err;
    for (err = tn_cursor_first(c, &key, &val); err == TN_OK;
         err = tn_cursor_next(c, &key, &val)) {
        cr_assert_eq(tn_get_be64(key.data), want);
        cr_assert(val_matches(val, 64, want));
        want += 2;
    }
    cr_assert_eq(err, TN_ERR_NOENT);
    cr_assert_eq(want, 602);
    cr_assert_eq(tn_cursor_next(c, &key, &val), TN_ERR_NOENT, "still at the end");

    /* seek lands on the first key >= the one asked for */
    uint8_t k[8];
    key64(k, 255);
    cr_assert_eq(tn_cursor_seek(c, k, 8, &key, &val), TN_OK);
    cr_assert_eq(tn_get_be64(key.data), 256);
    cr_assert(val_matches(val, 64, 256));
    cr_assert_eq(tn_cursor_next(c, &key, NULL), TN_OK);
    cr_assert_eq(tn_get_be64(key.data), 258);
    key64(k, 300);
    cr_assert_eq(tn_cursor_seek(c, k, 8, &key, NULL), TN_OK);
    cr_assert_eq(tn_get_be64(key.data), 300);
    key64(k, 601);
    cr_assert_eq(tn_cursor_seek(c, k, 8, &key, NULL), TN_ERR_NOENT);
    tn_cursor_close(c);

    /* an empty database */
    cr_assert_eq(tn_cursor_open(t, TN_DB_TASKS, &c), TN_OK);
    cr_assert_eq(tn_cursor_first(c, &key, &val), TN_ERR_NOENT);
    tn_cursor_close(c);
    tn_store_read_end(t);
    tn_batch_free(b);
    tn_store_close(s);
}

Test(store, read_txn_is_a_snapshot)
{
    tn_store *s = create_ok(tmp);
    append_events(s, 1, 4, 32);
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    append_events(s, 4, 8, 32); /* fits the map: no resize needed */
    tn_val v;
    uint8_t k[8];
    key64(k, 5);
    cr_assert_eq(tn_store_get(t, TN_DB_EVENTS, k, 8, &v), TN_ERR_NOENT);
    key64(k, 3);
    cr_assert_eq(tn_store_get(t, TN_DB_EVENTS, k, 8, &v), TN_OK);
    tn_store_read_end(t);
    cr_assert(event_present(s, 5, 32));
    tn_store_close(s);
}

/* --- map size -------------------------------------------------------------------- */

Test(store, map_grows_up_to_max)
{
    tn_store *s =
        open_ok(tmp, (tn_store_opts){.create = true, .map_size = MIB, .map_max = 64 * MIB});
    tn_store_stat st;
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_eq(st.map_size, MIB);
    cr_assert_eq(st.map_max, 64 * MIB);
    /* 10 MiB in batches of 100 x 1 KiB */
    uint64_t n = 1;
    for (int c = 0; c < 100; c++, n += 100)
        append_events(s, n, n + 100, 1024);
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_gt(st.map_size, 10 * MIB);
    cr_assert_leq(st.map_size, 64 * MIB);
    cr_assert_geq(st.used_bytes, 10 * MIB);
    cr_assert_leq(st.used_bytes, st.map_size);
    cr_assert_eq(st.entries[TN_DB_EVENTS], 10000);
    for (uint64_t i = 1; i < n; i += 97)
        cr_assert(event_present(s, i, 1024));
    size_t grown = st.map_size;
    tn_store_close(s);

    /* Reopening asks for 1 MiB again: the larger, recorded size wins. */
    s = open_ok(tmp, (tn_store_opts){.map_size = MIB, .map_max = 64 * MIB});
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_eq(st.map_size, grown);
    cr_assert(event_present(s, n - 1, 1024));
    append_events(s, n, n + 100, 1024);
    tn_store_close(s);

    /* Asking for more than recorded gets it. */
    s = open_ok(tmp, (tn_store_opts){.map_size = 48 * MIB, .map_max = 64 * MIB});
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_eq(st.map_size, 48 * MIB);
    tn_store_close(s);
}

Test(store, full_map_refuses_and_loses_nothing)
{
    tn_store_opts o = {.create = true, .map_size = MIB, .map_max = MIB};
    tn_store *s = open_ok(tmp, o);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint64_t next = 1; /* first event of the next batch */
    tn_errmsg m = {{0}};
    tn_err err = TN_OK;
    int commits = 0;
    while (err == TN_OK) {
        tn_batch_reset(b);
        /* each batch also rewrites a projection, so pages are freed and reused */
        uint8_t k[8], v[1024];
        for (uint64_t i = next; i < next + 20; i++) {
            key64(k, i);
            make_val(v, 1024, i);
            cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 1024), TN_OK);
        }
        char last[32];
        snprintf(last, sizeof(last), "%llu", (unsigned long long)(next + 19));
        put_str(b, TN_DB_META, "last_seq", last);
        err = tn_store_commit(s, b, &m);
        if (err == TN_OK) {
            next += 20;
            commits++;
        }
        cr_assert_lt(commits, 1000, "a 1 MiB map cannot hold 20 MiB");
    }
    cr_assert_eq(err, TN_ERR_FULL, "%s: %s", tn_errname(err), m.text);
    cr_assert_gt(commits, 0);
    cr_assert_not_null(strstr(m.text, tn_store_path(s)), "message: %s", m.text);

    /* the failed batch left nothing, neither its first op nor its last */
    cr_assert_not(event_present(s, next, 1024));
    cr_assert_not(event_present(s, next + 19, 1024));
    char want[32];
    snprintf(want, sizeof(want), "%llu", (unsigned long long)(next - 1));
    expect_str(s, TN_DB_META, "last_seq", want);
    /* everything accepted is intact */
    for (uint64_t i = 1; i < next; i++)
        cr_assert(event_present(s, i, 1024), "event %llu lost", (unsigned long long)i);
    cr_assert_eq(entries(s, TN_DB_EVENTS), next - 1);
    tn_store_stat st;
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_eq(st.map_size, MIB);

    /* refusing again is stable, and the store reopens with its data */
    cr_assert_eq(tn_store_commit(s, b, &m), TN_ERR_FULL);
    tn_store_close(s);
    s = open_ok(tmp, (tn_store_opts){.map_size = MIB, .map_max = MIB});
    for (uint64_t i = 1; i < next; i++)
        cr_assert(event_present(s, i, 1024));
    expect_str(s, TN_DB_META, "last_seq", want);
    tn_store_close(s);
    /* with a higher limit the refused batch goes in */
    s = open_ok(tmp, (tn_store_opts){.map_size = MIB, .map_max = 8 * MIB});
    commit_ok(s, b);
    cr_assert(event_present(s, next + 19, 1024));
    tn_batch_free(b);
    tn_store_close(s);
}

Test(store, grow_while_this_thread_reads_is_busy_not_deadlock)
{
    tn_store *s =
        open_ok(tmp, (tn_store_opts){.create = true, .map_size = MIB, .map_max = 16 * MIB});
    append_events(s, 1, 2, 64);
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t k[8], v[2048];
    for (uint64_t i = 2; i < 1500; i++) { /* ~3 MiB: needs a bigger map */
        key64(k, i);
        make_val(v, 2048, i);
        cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 2048), TN_OK);
    }
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_commit(s, b, &m), TN_ERR_BUSY);
    cr_assert_not_null(strstr(m.text, "read transaction"), "message: %s", m.text);
    tn_store_read_end(t);
    cr_assert_not(event_present(s, 2, 2048));
    commit_ok(s, b);
    cr_assert(event_present(s, 1499, 2048));
    tn_batch_free(b);
    tn_store_close(s);
}

/* Reader threads walk the log while the writer grows the map under them: every
 * snapshot must be whole (meta "count" agrees with the events found), a growth must
 * not wait forever behind overlapping readers, and a reader that opens a second read
 * transaction while a growth waits must not deadlock. All fields are atomic. */
struct reader_arg {
    tn_store *s;
    int done;   /* set by the writer */
    int errors; /* bad snapshots seen */
    int rounds;
};

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    while (!__atomic_load_n(&a->done, __ATOMIC_ACQUIRE)) {
        tn_rtxn *t;
        if (tn_store_read_begin(a->s, &t) != TN_OK) {
            __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
            continue;
        }
        tn_val v;
        uint64_t count = 0;
        if (tn_store_get(t, TN_DB_META, "count", 5, &v) == TN_OK && v.len == 8)
            count = tn_get_be64(v.data);
        tn_cursor *c;
        uint64_t seen = 0;
        if (tn_cursor_open(t, TN_DB_EVENTS, &c) == TN_OK) {
            tn_val key;
            for (tn_err e = tn_cursor_first(c, &key, &v); e == TN_OK;
                 e = tn_cursor_next(c, &key, &v)) {
                seen++;
                if (tn_get_be64(key.data) != seen || !val_matches(v, 512, seen))
                    __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
            }
            tn_cursor_close(c);
        } else {
            __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
        }
        if (seen != count)
            __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
        /* a second snapshot while the first is open: never older than it */
        tn_rtxn *t2;
        if (tn_store_read_begin(a->s, &t2) == TN_OK) {
            if (tn_store_get(t2, TN_DB_META, "count", 5, &v) == TN_OK &&
                (v.len != 8 || tn_get_be64(v.data) < count))
                __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
            tn_store_read_end(t2);
        } else {
            __atomic_add_fetch(&a->errors, 1, __ATOMIC_RELAXED);
        }
        tn_store_read_end(t);
        __atomic_add_fetch(&a->rounds, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

Test(store, readers_in_other_threads_survive_growth, .timeout = 120)
{
    tn_store *s =
        open_ok(tmp, (tn_store_opts){.create = true, .map_size = MIB, .map_max = 64 * MIB});
    struct reader_arg a = {.s = s};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, reader_main, &a), 0);
    while (__atomic_load_n(&a.rounds, __ATOMIC_RELAXED) < 3)
        sched_yield(); /* the readers are running before the map starts to grow */
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint64_t n = 1;
    for (int c = 0; c < 40; c++) {
        tn_batch_reset(b);
        uint8_t k[8], v[512];
        for (int i = 0; i < 200; i++, n++) {
            key64(k, n);
            make_val(v, 512, n);
            cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 512), TN_OK);
        }
        key64(k, n - 1);
        cr_assert_eq(tn_batch_put(b, TN_DB_META, "count", 5, k, 8), TN_OK);
        commit_ok(s, b);
    }
    __atomic_store_n(&a.done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(a.errors, 0);
    tn_store_stat st;
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_gt(st.map_size, MIB, "the map grew during the test");
    tn_batch_free(b);
    tn_store_close(s);
}

/* --- read-only ------------------------------------------------------------------- */

Test(store, read_only_refuses_commit)
{
    tn_store *s = create_ok(tmp);
    append_events(s, 1, 3, 40);
    tn_store_close(s);
    s = open_ok(tmp, (tn_store_opts){.read_only = true});
    cr_assert(event_present(s, 2, 40));
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    put_str(b, TN_DB_WF, "w", "x");
    tn_errmsg m = {{0}};
    tn_err err = tn_store_commit(s, b, &m);
    cr_assert_neq(err, TN_OK);
    cr_assert_eq(err, TN_ERR_PERM);
    cr_assert_not_null(strstr(m.text, "read-only"), "message: %s", m.text);
    expect_str(s, TN_DB_WF, "w", NULL);
    tn_batch_free(b);
    tn_store_close(s);
}

static void pipe_write(int fd)
{
    char c = 'x';
    cr_assert_eq(write(fd, &c, 1), 1);
}

static int pipe_wait(int fd)
{
    char c;
    return read(fd, &c, 1) == 1 ? 0 : -1;
}

/* Child: opens read-only while the parent holds the store open for writing, reads,
 * waits while the parent grows the map far past its own, reads the new data. LMDB
 * forbids opening one environment twice in a process, hence the fork. */
static int child_reader(const char *dir, int to_parent, int from_parent)
{
    tn_store *s;
    if (tn_store_open(dir, &(tn_store_opts){.read_only = true}, &s, NULL) != TN_OK)
        return 10;
    tn_store_stat st;
    if (tn_store_stat_get(s, &st) != TN_OK || st.entries[TN_DB_EVENTS] != 10)
        return 11;
    size_t first_map = st.map_size;
    char c = 'x';
    if (write(to_parent, &c, 1) != 1 || read(from_parent, &c, 1) != 1)
        return 12;
    tn_rtxn *t;
    if (tn_store_read_begin(s, &t) != TN_OK)
        return 13;
    uint8_t k[8];
    tn_put_be64(k, 4000);
    tn_val v;
    int rc = 0;
    if (tn_store_get(t, TN_DB_EVENTS, k, 8, &v) != TN_OK || !val_matches(v, 2048, 4000))
        rc = 14;
    tn_store_read_end(t);
    if (rc == 0 && (tn_store_stat_get(s, &st) != TN_OK || st.map_size <= first_map))
        rc = 15;
    tn_store_close(s);
    return rc;
}

Test(store, read_only_follows_a_writer_in_another_process)
{
    tn_store *s =
        open_ok(tmp, (tn_store_opts){.create = true, .map_size = MIB, .map_max = 64 * MIB});
    append_events(s, 1, 11, 2048);
    int up[2], down[2];
    cr_assert_eq(pipe2(up, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(down, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* only our own ends: if the parent dies, the read below sees EOF and we exit */
        close(up[0]);
        close(down[1]);
        _exit(child_reader(tmp, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    cr_assert_eq(pipe_wait(up[0]), 0, "the reader did not open");
    /* ~8 MiB: several doublings past the reader's 1 MiB map */
    for (uint64_t n = 11; n <= 4000; n += 500)
        append_events(s, n, n + 500 > 4001 ? 4001 : n + 500, 2048);
    pipe_write(down[1]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "reader child failed at step %d", WEXITSTATUS(status));
    close(up[0]);
    close(down[1]);
    tn_store_close(s);
}

/* --- stat ------------------------------------------------------------------------ */

Test(store, stat_counts_entries)
{
    tn_store *s = create_ok(tmp);
    tn_store_stat st;
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    for (int i = 0; i < TN_DB__COUNT; i++)
        cr_assert_eq(st.entries[i], i == TN_DB_META ? 1 : 0, "db %s", tn_db_name(i));
    cr_assert_eq(st.map_size, 64 * MIB, "default initial map");
    cr_assert_eq(st.map_max, (size_t)16 << 30, "default limit");
    cr_assert_gt(st.used_bytes, 0);

    append_events(s, 1, 51, 150);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    for (uint64_t i = 1; i <= 50; i++)
        add_dup(b, i % 3, i);
    put_str(b, TN_DB_DEFS, "d", "1");
    put_str(b, TN_DB_WF, "w1", "1");
    put_str(b, TN_DB_WF, "w2", "1");
    put_str(b, TN_DB_TASKS, "t1", "1");
    put_str(b, TN_DB_TASKS, "t2", "1");
    put_str(b, TN_DB_TASKS, "t3", "1");
    put_str(b, TN_DB_META, "last_seq", "50");
    commit_ok(s, b);
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_eq(st.entries[TN_DB_EVENTS], 50);
    cr_assert_eq(st.entries[TN_DB_BY_WF], 50);
    cr_assert_eq(st.entries[TN_DB_DEFS], 1);
    cr_assert_eq(st.entries[TN_DB_WF], 2);
    cr_assert_eq(st.entries[TN_DB_TASKS], 3);
    cr_assert_eq(st.entries[TN_DB_META], 2);
    cr_assert_leq(st.used_bytes, st.map_size);
    tn_batch_free(b);
    tn_store_close(s);
}

/* --- damage refused before use (issue: a truncated file was a SIGBUS) -------------- */

static void truncate_half(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
}

/* A data.mdb cut to half its size: LMDB would map it and fault on the first page past
 * the end (SIGBUS, no message). The header check refuses it first, naming the file. */
Test(store, truncated_file_is_refused_before_the_map)
{
    tn_store *s = create_ok(tmp);
    append_events(s, 1, 400, 512);
    tn_store_close(s);
    truncate_half(sub("data.mdb"));
    tn_store_opts modes[] = {{0}, {.read_only = true}, {.create = true}};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        tn_errmsg m = {{0}};
        s = NULL;
        cr_assert_eq(tn_store_open(tmp, &modes[i], &s, &m), TN_ERR_CORRUPT, "mode %zu: %s", i,
                     m.text);
        cr_assert_null(s);
        cr_assert_not_null(strstr(m.text, sub("data.mdb")), "names the file: %s", m.text);
        cr_assert_not_null(strstr(m.text, "truncated"), "says what is wrong: %s", m.text);
        cr_assert_null(strchr(m.text, '\n'), "one line: %s", m.text);
    }
}

/* A header page without LMDB's magic number is refused by the same check. */
Test(store, header_without_magic_is_refused)
{
    tn_store *s = create_ok(tmp);
    tn_store_close(s);
    int fd = open(sub("data.mdb"), O_WRONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    uint8_t zero[4] = {0};
    cr_assert_eq(pwrite(fd, zero, 4, 16), 4); /* page 0's magic */
    close(fd);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){0}, &s, &m), TN_ERR_CORRUPT, "%s", m.text);
    cr_assert_not_null(strstr(m.text, "magic"), "%s", m.text);
}

/* A named database dropped from an existing store is damage: opening with create must
 * neither succeed nor recreate it empty. */
Test(store, missing_database_is_refused_not_recreated)
{
    tn_store *s = create_ok(tmp);
    append_events(s, 1, 4, 16);
    tn_store_close(s);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, tmp, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "tasks", 0, &dbi), 0);
    cr_assert_eq(mdb_drop(txn, dbi, 1), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    for (int round = 0; round < 2; round++) {
        tn_errmsg m = {{0}};
        s = NULL;
        cr_assert_eq(tn_store_open(tmp, &(tn_store_opts){.create = true}, &s, &m),
                     TN_ERR_CORRUPT, "round %d: %s", round, m.text);
        cr_assert_not_null(strstr(m.text, "\"tasks\" database is missing"), "%s", m.text);
    }
}

/* A full file system: the commit's error says "disk full", the file and the free space,
 * not "Input/output error". A 1 MiB tmpfs is mounted for it (root only). */
/* --- streamed commits and appends through a kept cursor -------------------------- */

static tn_err refeed_range(void *ctx, tn_stream *t)
{
    const uint64_t *range = ctx; /* from, to, len */
    uint8_t v[4096];
    for (uint64_t i = range[0]; i < range[1]; i++) {
        uint8_t k[8];
        key64(k, i);
        make_val(v, range[2], i);
        tn_store_stream_append(t, TN_DB_EVENTS, k, 8, v, range[2]);
    }
    return TN_OK;
}

/* Appends go through one cursor per database kept for the transaction; puts to the same
 * database in between (a batch after the stream, or mixed into it) move pages under it.
 * Every value must still land under its key, and a key that is not greater than the
 * last is still refused with nothing written. */
Test(store, appends_through_a_kept_cursor_mix_with_puts)
{
    tn_store *s = create_ok(tmp);
    tn_stream *t;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_stream_begin(s, &t, &m), TN_OK, "%s", m.text);
    uint64_t range[3] = {1, 5001, 100};
    cr_assert_eq(refeed_range(range, t), TN_OK);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t v[4096], k[8];
    put_str(b, TN_DB_META, "k", "v");
    for (uint64_t i = 5001; i < 8000; i++) {
        key64(k, i);
        make_val(v, 300, i);
        if (i % 7 == 0) /* a plain put of the next key, between appends */
            cr_assert_eq(tn_batch_put(b, TN_DB_EVENTS, k, 8, v, 300), TN_OK);
        else
            cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 300), TN_OK);
        if (i % 500 == 0) { /* and a rewrite of an old key, deep in the tree */
            uint8_t ok[8], ov[100];
            key64(ok, i / 500);
            make_val(ov, 100, i / 500);
            cr_assert_eq(tn_batch_put(b, TN_DB_EVENTS, ok, 8, ov, 100), TN_OK);
        }
    }
    cr_assert_eq(tn_store_stream_commit(t, b, refeed_range, range, &m), TN_OK, "%s", m.text);
    cr_assert_eq(entries(s, TN_DB_EVENTS), 7999);
    for (uint64_t i = 1; i < 8000; i++)
        cr_assert(event_present(s, i, i < 5001 ? 100 : 300), "event %llu",
                  (unsigned long long)i);
    expect_str(s, TN_DB_META, "k", "v");

    /* a batch appending a key below the last: refused, nothing of it written */
    tn_batch_reset(b);
    key64(k, 8000);
    make_val(v, 100, 8000);
    cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 100), TN_OK);
    key64(k, 10);
    make_val(v, 100, 10);
    cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, 100), TN_OK);
    cr_assert_eq(tn_store_commit(s, b, &m), TN_ERR_EXISTS, "%s", m.text);
    cr_assert_not(event_present(s, 8000, 100));
    /* and a stream doing the same */
    cr_assert_eq(tn_store_stream_begin(s, &t, &m), TN_OK, "%s", m.text);
    uint64_t again[3] = {8000, 8010, 100};
    refeed_range(again, t);
    key64(k, 3);
    cr_assert_neq(tn_store_stream_append(t, TN_DB_EVENTS, k, 8, v, 100), TN_OK);
    cr_assert_neq(tn_store_stream_commit(t, NULL, refeed_range, again, &m), TN_OK);
    cr_assert_eq(entries(s, TN_DB_EVENTS), 7999);
    cr_assert_not(event_present(s, 8000, 100));
    tn_batch_free(b);
    tn_store_close(s);
}

/* Puts (ascending runs, as a batch's projections, and random keys), deletes and
 * appends in one batch, through the kept cursors: afterwards the database holds exactly
 * what a plain model says, commit after commit. */
Test(store, puts_and_deletes_through_kept_cursors_match_a_model)
{
    enum {
        N = 3000
    };
    static uint16_t model[N + 1]; /* 0: absent, else the value's length */
    memset(model, 0, sizeof(model));
    tn_store *s = create_ok(tmp);
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint64_t rnd = 42, top = 0;
    uint8_t k[8], v[4096];
    for (int c = 0; c < 40; c++) {
        tn_batch_reset(b);
        for (int i = 0; i < 300; i++) {
            rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
            unsigned what = (unsigned)(rnd >> 60), len = 8 + (unsigned)(rnd >> 33) % 600;
            uint64_t id = what < 6 ? (uint64_t)(c * 70 + i / 4) % N + 1 : /* ascending */
                                     (rnd >> 20) % N + 1;                        /* anywhere */
            if (what >= 14 && top < N) { /* an append past the largest key */
                id = ++top;
                if (model[id]) /* the largest may have been put before: skip */
                    continue;
            }
            key64(k, id);
            if (what == 12 || what == 13) {
                cr_assert_eq(tn_batch_del(b, TN_DB_TASKS, k, 8), TN_OK);
                model[id] = 0;
                continue;
            }
            bool append = what >= 14;
            for (uint64_t j = id + 1; append && j <= N; j++)
                append = !model[j];
            make_val(v, len, id);
            cr_assert_eq(append ? tn_batch_append(b, TN_DB_TASKS, k, 8, v, len) :
                                  tn_batch_put(b, TN_DB_TASKS, k, 8, v, len),
                         TN_OK);
            model[id] = (uint16_t)len;
            if (id > top)
                top = id;
        }
        commit_ok(s, b);
        tn_rtxn *t;
        cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
        for (uint64_t id = 1; id <= N; id++) {
            tn_val got;
            key64(k, id);
            tn_err e = tn_store_get(t, TN_DB_TASKS, k, 8, &got);
            if (!model[id])
                cr_assert_eq(e, TN_ERR_NOENT, "commit %d: key %llu should be gone", c,
                             (unsigned long long)id);
            else
                cr_assert(e == TN_OK && val_matches(got, model[id], id),
                          "commit %d: key %llu has the wrong value", c, (unsigned long long)id);
        }
        tn_store_read_end(t);
    }
    tn_batch_free(b);
    tn_store_close(s);
}

/* A stream that fills the map is fed again after the map grows: with the appends' cursors
 * of the first transaction gone, the second one's are new. */
Test(store, stream_refeeds_through_new_cursors_after_growth)
{
    tn_store *s =
        open_ok(tmp, (tn_store_opts){.create = true, .map_size = MIB, .map_max = 64 * MIB});
    tn_stream *t;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_stream_begin(s, &t, &m), TN_OK, "%s", m.text);
    uint64_t range[3] = {1, 4001, 1024}; /* 4 MiB into a 1 MiB map */
    refeed_range(range, t);
    cr_assert_eq(tn_store_stream_commit(t, NULL, refeed_range, range, &m), TN_OK, "%s", m.text);
    cr_assert_eq(entries(s, TN_DB_EVENTS), 4000);
    for (uint64_t i = 1; i <= 4000; i += 37)
        cr_assert(event_present(s, i, 1024));
    tn_store_close(s);
}

/* --- mapping the pages ahead of a walk ---------------------------------------------- */

static long minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt;
}

/* Walk every event; the minor page faults this thread took doing it, and (*early)
 * those it took in the first quarter of the events. */
static long walk_faults_split(tn_rtxn *t, uint64_t n, size_t len, long *early)
{
    tn_cursor *c;
    tn_val k, v;
    uint64_t seen = 0;
    cr_assert_eq(tn_cursor_open(t, TN_DB_EVENTS, &c), TN_OK);
    long f0 = minor_faults();
    for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
        cr_assert(val_matches(v, len, ++seen), "event %llu", (unsigned long long)seen);
        if (seen == n / 4)
            *early = minor_faults() - f0;
    }
    long f = minor_faults() - f0;
    tn_cursor_close(c);
    cr_assert_eq(seen, n);
    return f;
}

static long walk_faults(tn_rtxn *t, uint64_t n, size_t len)
{
    long early;
    return walk_faults_split(t, n, len, &early);
}

/* Until the helper has mapped what it may (no sleep that a slow machine could outrun:
 * the test's timeout bounds it). Returns the bytes mapped. */
static size_t prefault_wait(tn_prefault *p)
{
    size_t mapped = 0;
    while (!tn_store_prefault_idle(p, &mapped))
        usleep(2000);
    return mapped;
}

/* With the pages mapped ahead, a walk reads the same values and takes (nearly) none of
 * the page faults a walk of a fresh map takes; ending it early is prompt and safe. */
Test(store, prefault_maps_the_pages_a_walk_would_fault_in)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        skip_clean("one CPU: no helper thread is started");
#ifdef __SANITIZE_THREAD__
    skip_clean("ThreadSanitizer: the walk's own shadow-memory faults swamp the counts");
#endif
    tn_store *s = create_ok(tmp);
    for (uint64_t n = 1; n < 20001; n += 1000)
        append_events(s, n, n + 1000, 400); /* ~9 MiB */
    tn_store_close(s);

    s = open_ok(tmp, (tn_store_opts){.read_only = true});
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    long cold = walk_faults(t, 20000, 400);
    tn_store_read_end(t);
    tn_store_close(s);

    s = open_ok(tmp, (tn_store_opts){.read_only = true});
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    tn_prefault *p = tn_store_prefault_begin(t);
    cr_assert_not_null(p);
    tn_store_prefault_end(p); /* waits for it: all mapped, unless stopped between chunks */
    p = tn_store_prefault_begin(t);
    cr_assert_not_null(p);
    (void)prefault_wait(p); /* ~9 MiB: all of it */
    long warm = walk_faults(t, 20000, 400);
    tn_store_prefault_end(p);
    tn_store_prefault_end(NULL);
    tn_store_read_end(t);
    tn_store_close(s);
    cr_assert_gt(cold, 20, "a fresh map takes faults: %ld", cold);
    cr_assert_lt(warm, cold / 4, "prefaulted walk took %ld faults, a cold one %ld", warm, cold);
}

/* Unreported, the helper stops 32 MiB into a 64 MiB store (a store larger than memory
 * is not read ahead into evicting itself): the walk's first quarter takes no faults,
 * its rest does. Told where the walk is, it keeps mapping ahead of it. */
Test(store, prefault_keeps_within_a_window_ahead_of_the_walk, .timeout = 120)
{
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        skip_clean("one CPU: no helper thread is started");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* the instrumented walk faults in the sanitizer's shadow of every page it reads,
     * which no prefault of the store's map can do: the counts below say nothing there
     * (the replay tests still run the helper under both) */
    skip_clean("sanitizer build: the walk's own shadow-memory faults swamp the counts");
#endif
    tn_store *s = open_ok(tmp, (tn_store_opts){.create = true, .no_sync = true});
    for (uint64_t n = 1; n < 64001; n += 2000)
        append_events(s, n, n + 2000, 1000);
    tn_store_close(s);
    s = open_ok(tmp, (tn_store_opts){.read_only = true});
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    tn_prefault *p = tn_store_prefault_begin(t);
    cr_assert_not_null(p);
    size_t mapped = prefault_wait(p);
    cr_assert_geq(mapped, 16u << 20, "the helper maps the window ahead: %zu bytes", mapped);
    long early, unreported = walk_faults_split(t, 64000, 1000, &early);
    tn_store_prefault_end(p);
    tn_store_read_end(t);
    tn_store_close(s);
    cr_assert_lt(early, 5, "the first 16 MiB were mapped ahead: %ld faults", early);
    cr_assert_gt(unreported, 100, "past the window the walk faults its pages in: %ld",
                 unreported);

    s = open_ok(tmp, (tn_store_opts){.read_only = true});
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    p = tn_store_prefault_begin(t);
    tn_cursor *c;
    tn_val k, v;
    cr_assert_eq(tn_cursor_open(t, TN_DB_EVENTS, &c), TN_OK);
    cr_assert_eq(tn_cursor_first(c, &k, &v), TN_OK);
    tn_val last = v;
    while (tn_cursor_next(c, &k, &v) == TN_OK)
        last = v; /* (this walk faults the pages in itself) */
    tn_cursor_close(c);
    tn_store_prefault_end(p);
    tn_store_read_end(t);
    tn_store_close(s);

    s = open_ok(tmp, (tn_store_opts){.read_only = true});
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    p = tn_store_prefault_begin(t);
    /* the walk says it is at the event half way: the helper maps up to 32 MiB past it */
    cr_assert_eq(tn_cursor_open(t, TN_DB_EVENTS, &c), TN_OK);
    uint8_t key[8];
    key64(key, 32000);
    cr_assert_eq(tn_cursor_seek(c, key, 8, &k, &v), TN_OK);
    tn_store_prefault_at(p, v.data);
    tn_store_prefault_at(p, (const char *)last.data + (1ull << 40)); /* outside: ignored */
    tn_cursor_close(c);
    (void)prefault_wait(p);
    long reported = walk_faults(t, 64000, 1000);
    tn_store_prefault_end(p);
    tn_store_read_end(t);
    tn_store_close(s);
    /* (the last MiB or two lie past 32 MiB beyond the middle event) */
    cr_assert_lt(reported, unreported / 4,
                 "mapped ahead of the reported point too: %ld "
                 "faults, %ld unreported",
                 reported, unreported);
}

static char fs_dir[96];

static void fs_teardown(void)
{
    if (fs_dir[0])
        umount2(fs_dir, MNT_DETACH);
    teardown();
}

Test(store, full_disk_says_disk_full_with_free_space, .fini = fs_teardown)
{
    snprintf(fs_dir, sizeof(fs_dir), "%s/fs", tmp);
    cr_assert_eq(mkdir(fs_dir, 0700), 0);
    if (mount("tmpfs", fs_dir, "tmpfs", 0, "size=1m") != 0) {
        fs_dir[0] = 0;
        cr_skip_test("cannot mount a tmpfs here (needs root)");
    }
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/store", fs_dir);
    tn_store *s = open_ok(dir, (tn_store_opts){.create = true, .map_max = 64 * MIB});
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    tn_errmsg m = {{0}};
    tn_err err = TN_OK;
    uint8_t k[8], v[1024];
    for (uint64_t next = 1; err == TN_OK && next < 100000; next += 16) {
        tn_batch_reset(b);
        for (uint64_t i = next; i < next + 16; i++) {
            key64(k, i);
            make_val(v, sizeof(v), i);
            cr_assert_eq(tn_batch_append(b, TN_DB_EVENTS, k, 8, v, sizeof(v)), TN_OK);
        }
        err = tn_store_commit(s, b, &m);
    }
    tn_batch_free(b);
    tn_store_close(s);
    cr_assert_eq(err, TN_ERR_FULL, "got %s: %s", tn_errname(err), m.text);
    char want[200];
    snprintf(want, sizeof(want), "disk full: %s/data.mdb: ", dir);
    cr_assert_eq(strncmp(m.text, want, strlen(want)), 0, "message: %s", m.text);
    cr_assert_not_null(strstr(m.text, " MiB free on its file system"), "%s", m.text);
    cr_assert_null(strstr(m.text, "nput/output error"), "%s", m.text);
}

/* --- the tern binary on damaged, missing and foreign data directories ------------- */

static char cli_dir[64];

static void cli_setup(void)
{
    strcpy(cli_dir, "/tmp/tern-storecli-XXXXXX");
    cr_assert_not_null(mkdtemp(cli_dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/wf.yaml", cli_dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("name: marked\ntasks:\n  - name: a\n    type: shell\n"
          "    command: \"echo flip-this-marker\"\n",
          f);
    fclose(f);
}

static void cli_teardown(void)
{
    rm_rf(cli_dir);
}

TestSuite(storecli, .init = cli_setup, .fini = cli_teardown);

/* Run `tern ARGS` (DIR is this test's dir); returns its exit status, stderr in *err. */
static int tern(char **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tern(char **err, const char *fmt, ...)
{
    char args[1024], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    /* bounded, so that a daemon that wrongly starts cannot hang the suite */
    snprintf(line, sizeof(line), "timeout 30 %s %s", tu_tern(), args);
    return tu_run(line, NULL, err);
}

static void store_with_a_run(const char *data)
{
    char *err = NULL;
    int rc = tern(&err, "run --dry-run --data %s %s/wf.yaml", data, cli_dir);
    cr_assert_eq(rc, 0, "tern run: %s", err);
    free(err);
}

/* Replay, master, standalone and run on a data.mdb cut in half: exit 1 with one line
 * naming the file (before: SIGBUS inside LMDB's open, exit 135, nothing printed). */
Test(storecli, truncated_store_refused_by_every_command)
{
    char data[128];
    snprintf(data, sizeof(data), "%s/data", cli_dir);
    store_with_a_run(data);
    char path[160];
    snprintf(path, sizeof(path), "%s/data.mdb", data);
    truncate_half(path);
    const char *cmds[] = {"replay --data %s", "master --data %s --listen ipc://%s.sock",
                          "run --dry-run --data %s %s/wf.yaml", "standalone --data %s"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char args[512], *err = NULL;
        snprintf(args, sizeof(args), cmds[i], data, cli_dir);
        int rc = tern(&err, "%s", args);
        cr_assert_eq(rc, 1, "tern %s: exit %d (not a signal): %s", args, rc, err);
        char want[200];
        snprintf(want, sizeof(want), "%s: damaged: truncated", path);
        cr_assert_not_null(strstr(err, want), "tern %s: %s", args, err);
        free(err);
    }
}

/* A flipped byte in an event: master and run refuse with the seq and the replay hint
 * (before: they started and appended after the broken chain). */
Test(storecli, flipped_byte_refused_by_master_and_run)
{
    char data[128];
    snprintf(data, sizeof(data), "%s/data", cli_dir);
    store_with_a_run(data);
    char path[160];
    snprintf(path, sizeof(path), "%s/data.mdb", data);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    static char b[1 << 20];
    size_t n = fread(b, 1, sizeof(b), f);
    int hits = 0;
    for (size_t i = 0; i + 16 <= n; i++)
        if (memcmp(b + i, "flip-this-marker", 16) == 0) {
            b[i] ^= 0x20;
            hits++;
        }
    cr_assert_gt(hits, 0);
    rewind(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
    const char *cmds[] = {"master --data %s --listen ipc://%s.sock",
                          "run --dry-run --data %s %s/wf.yaml"};
    for (size_t i = 0; i < 2; i++) {
        char args[512], *err = NULL;
        snprintf(args, sizeof(args), cmds[i], data, cli_dir);
        int rc = tern(&err, "%s", args);
        cr_assert_eq(rc, 1, "tern %s: exit %d: %s", args, rc, err);
        cr_assert_not_null(strstr(err, "damaged at seq "), "%s", err);
        cr_assert_not_null(strstr(err, path), "%s", err);
        char hint[200];
        snprintf(hint, sizeof(hint), "`tern replay --data %s`", data);
        cr_assert_not_null(strstr(err, hint), "%s", err);
        free(err);
    }
}

/* `tern init` makes a store in a missing dir, refuses to make a second one there, and
 * refuses a non-empty dir without a store. */
Test(storecli, init_makes_a_store_once_and_only_in_an_empty_dir)
{
    char data[128], *err = NULL;
    snprintf(data, sizeof(data), "%s/new", cli_dir);
    cr_assert_eq(tern(&err, "init --data %s", data), 0, "%s", err);
    free(err);
    cr_assert_eq(tern(&err, "replay --data %s", data), 0, "the new store replays: %s", err);
    free(err);
    cr_assert_eq(tern(&err, "init --data %s", data), 1);
    cr_assert_not_null(strstr(err, "already holds a tern store"), "%s", err);
    free(err);
    /* cli_dir holds wf.yaml: not empty, no store */
    cr_assert_eq(tern(&err, "init --data %s", cli_dir), 1);
    cr_assert_not_null(strstr(err, "is not empty"), "%s", err);
    free(err);
    struct stat st;
    char p[128];
    snprintf(p, sizeof(p), "%s/data.mdb", cli_dir);
    cr_assert_neq(stat(p, &st), 0);
}

/* The first start on a missing or empty dir says it made a store; the second does not. */
Test(storecli, first_start_on_an_empty_dir_says_so)
{
    char data[128], *err = NULL, want[PATH_MAX + 64];
    snprintf(data, sizeof(data), "%s/empty", cli_dir);
    cr_assert_eq(mkdir(data, 0700), 0);
    cr_assert_eq(tern(&err, "run --dry-run --data %s %s/wf.yaml", data, cli_dir), 0, "%s", err);
    char abs[PATH_MAX];
    cr_assert_not_null(realpath(data, abs));
    snprintf(want, sizeof(want), "created a new store in %s\n", abs);
    cr_assert_not_null(strstr(err, want), "%s", err);
    free(err);
    cr_assert_eq(tern(&err, "run --dry-run --data %s %s/wf.yaml", data, cli_dir), 0, "%s", err);
    cr_assert_null(strstr(err, "created a new store"), "%s", err);
    free(err);
}

/* A mistyped --data that points at someone's files is refused, not turned into a store. */
Test(storecli, non_empty_dir_without_a_store_is_refused)
{
    char *err = NULL;
    int rc = tern(&err, "master --data %s --listen ipc://%s/m.sock", cli_dir, cli_dir);
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert_not_null(strstr(err, "holds no tern store but is not empty"), "%s", err);
    free(err);
    rc = tern(&err, "run --dry-run --data %s %s/wf.yaml", cli_dir, cli_dir);
    cr_assert_eq(rc, 1, "%s", err);
    free(err);
}

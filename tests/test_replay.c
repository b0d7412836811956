/* Tests of replay and audit: verification of a clean log, detection of tampering with
 * the seq that was changed, crash consistency under SIGKILL, and the CLI around them. */
#include <criterion/criterion.h>
#include <lmdb.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "evlog.h"
#include "replay.h"
#include "util.h"
#include "sm_gen.h"
#include "store.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    dir = tu_tmpdir();
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

TestSuite(replay, .init = setup, .fini = teardown);

/* Record `nwf` workflows of 3 tasks each, one commit per workflow, ending in a mix of
 * states. Returns the last seq. */
static uint64_t record(const char *d, int nwf)
{
    tn_evlog *l;
    tn_errmsg m;
    tn_evlog_opts o = {.create = true};
    cr_assert_eq(tn_evlog_open(d, &o, &l, &m), TN_OK, "%s", m.text);
    for (int w = 0; w < nwf; w++) {
        uint64_t wf = tn_evlog_new_wf_id(l);
        tn_event ev;
#define ADD(M, E, T)                                                 \
    do {                                                             \
        tn_event_init(&ev, M, E, wf, T);                             \
        ev.actor = TN_STR("master:t");                               \
        tn_event_set_int(&ev, "attempt", 1);                         \
        cr_assert_eq(tn_evlog_add(l, &ev, &m), TN_OK, "%s", m.text); \
    } while (0)
        ADD(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 0);
        ADD(TN_MACHINE_WORKFLOW, TN_WF_E_START, 0);
        for (int i = 0; i < 3; i++) {
            uint64_t t = tn_evlog_new_task_id(l);
            ADD(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, t);
            ADD(TN_MACHINE_TASK, TN_TASK_E_DISPATCH, t);
            ADD(TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, t);
            ADD(TN_MACHINE_TASK, TN_TASK_E_RUNNING, t);
            ADD(TN_MACHINE_TASK,
                (w % 3 == 2 && i == 2) ? TN_TASK_E_FAILED : TN_TASK_E_SUCCEEDED, t);
            ADD(TN_MACHINE_WORKFLOW, TN_WF_E_TASK_FINISHED, 0);
        }
        ADD(TN_MACHINE_WORKFLOW, w % 3 == 2 ? TN_WF_E_FAILED : TN_WF_E_SUCCEED, 0);
#undef ADD
        cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    }
    uint64_t last = tn_evlog_last_seq(l);
    tn_evlog_close(l);
    return last;
}

static tn_replay_report run_replay(const char *d, uint64_t until)
{
    tn_store *s;
    tn_store_opts so = {.read_only = true};
    tn_errmsg m;
    cr_assert_eq(tn_store_open(d, &so, &s, &m), TN_OK, "%s", m.text);
    tn_replay_report rep;
    tn_replay_opts o = {.verify_chain = true, .compare = true, .until_seq = until};
    cr_assert_eq(tn_replay_run(s, &o, &rep), TN_OK);
    tn_store_close(s);
    return rep;
}

Test(replay, clean_log_verifies_with_counts)
{
    uint64_t last = record(dir, 6);
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_OK, "seq %llu: %s", (unsigned long long)r.bad_seq, r.why);
    cr_assert_eq(r.events, last);
    cr_assert_eq(r.workflows, 6);
    cr_assert_eq(r.tasks, 18);
    cr_assert_eq(r.system_events, 1);
    cr_assert_eq(r.wf_states[TN_WF_S_SUCCESS], 4);
    cr_assert_eq(r.wf_states[TN_WF_S_FAILURE], 2);
    cr_assert_eq(r.task_states[TN_TASK_S_SUCCESS], 16);
    cr_assert_eq(r.task_states[TN_TASK_S_FAILURE], 2);
    cr_assert(r.compared && r.chain_checked);
}

Test(replay, until_seq_stops_early)
{
    record(dir, 3);
    /* seq 1 is INIT, 2..3 SUBMIT/START of workflow 1, 4 its first task's SUBMIT */
    tn_replay_report r = run_replay(dir, 4);
    cr_assert_eq(r.err, TN_OK, "%s", r.why);
    cr_assert_eq(r.events, 4);
    cr_assert_eq(r.workflows, 1);
    cr_assert_eq(r.tasks, 1);
    cr_assert_eq(r.wf_states[TN_WF_S_RUNNING_EXECUTION], 1);
    cr_assert_not(r.compared);
}

/* Open the raw LMDB store and apply `fn` to the value of seq in `events`. */
static void poke(const char *d, const char *dbname, const void *key, size_t klen,
                 void (*fn)(uint8_t *v, size_t len, void *ctx), void *ctx, bool del)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, 64 << 20);
    cr_assert_eq(mdb_env_open(env, d, 0, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, dbname, 0, &dbi), 0);
    MDB_val k = {klen, (void *)key}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    if (del) {
        cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    } else {
        uint8_t *copy = malloc(v.mv_size);
        memcpy(copy, v.mv_data, v.mv_size);
        fn(copy, v.mv_size, ctx);
        MDB_val nv = {v.mv_size, copy};
        cr_assert_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
        free(copy);
    }
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void flip_at(uint8_t *v, size_t len, void *ctx)
{
    long off = *(long *)ctx;
    size_t i = off >= 0 ? (size_t)off : len + (size_t)off;
    v[i] ^= 0x01;
}

static void tamper_event(const char *d, uint64_t seq, long off)
{
    uint8_t k[8];
    tn_put_be64(k, seq);
    poke(d, "events", k, 8, flip_at, &off, false);
}

/* Position of `needle` in the stored bytes of event seq. */
static long find_in_event(const char *d, uint64_t seq, const char *needle)
{
    tn_store *s;
    tn_store_opts so = {.read_only = true};
    tn_errmsg m;
    cr_assert_eq(tn_store_open(d, &so, &s, &m), TN_OK);
    tn_rtxn *t;
    tn_store_read_begin(s, &t);
    uint8_t k[8];
    tn_put_be64(k, seq);
    tn_val v;
    cr_assert_eq(tn_store_get(t, TN_DB_EVENTS, k, 8, &v), TN_OK);
    long pos = -1;
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= v.len && pos < 0; i++)
        if (memcmp((const char *)v.data + i, needle, n) == 0)
            pos = (long)i;
    tn_store_read_end(t);
    tn_store_close(s);
    cr_assert_geq(pos, 0, "\"%s\" not in seq %llu", needle, (unsigned long long)seq);
    return pos;
}

Test(replay, tampered_attr_byte_is_named)
{
    record(dir, 4);
    /* seq 10: a task event; change one byte of its actor string */
    long pos = find_in_event(dir, 10, "master:t");
    tamper_event(dir, 10, pos + 3);
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CHAIN, "got %s: %s", tn_errname(r.err), r.why);
    cr_assert_eq(r.bad_seq, 10, "named seq %llu", (unsigned long long)r.bad_seq);
}

Test(replay, tampered_prev_hash_is_named)
{
    record(dir, 4);
    tamper_event(dir, 17, -5); /* inside the 32-byte prev hash at the end */
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CHAIN, "got %s: %s", tn_errname(r.err), r.why);
    cr_assert_eq(r.bad_seq, 17);
}

Test(replay, tampered_last_event_is_named)
{
    uint64_t last = record(dir, 2);
    long pos = find_in_event(dir, last, "master:t");
    tamper_event(dir, last, pos);
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CHAIN, "got %s: %s", tn_errname(r.err), r.why);
    cr_assert_eq(r.bad_seq, last);
}

Test(replay, every_single_byte_change_is_caught)
{
    /* whatever byte of an event changes, replay refuses and names that seq (or, for
     * a change that breaks decoding or the tables, the same seq) */
    uint64_t last = record(dir, 1);
    (void)last;
    const uint64_t seq = 5;
    long len;
    {
        tn_store *s;
        tn_store_opts so = {.read_only = true};
        tn_errmsg m;
        tn_store_open(dir, &so, &s, &m);
        tn_rtxn *t;
        tn_store_read_begin(s, &t);
        uint8_t k[8];
        tn_put_be64(k, seq);
        tn_val v;
        tn_store_get(t, TN_DB_EVENTS, k, 8, &v);
        len = (long)v.len;
        tn_store_read_end(t);
        tn_store_close(s);
    }
    for (long off = 0; off < len; off++) {
        tamper_event(dir, seq, off);
        tn_replay_report r = run_replay(dir, 0);
        cr_assert_neq(r.err, TN_OK, "byte %ld of seq %llu changed and replay passed", off,
                      (unsigned long long)seq);
        cr_assert_eq(r.bad_seq, seq, "byte %ld: named seq %llu (%s: %s)", off,
                     (unsigned long long)r.bad_seq, tn_errname(r.err), r.why);
        tamper_event(dir, seq, off); /* flip it back */
    }
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_OK, "%s", r.why);
}

static void cut_last_byte(uint8_t *v, size_t *len, void *ctx)
{
    (void)v;
    (void)ctx;
    (*len)--;
}

static void bad_type_at(uint8_t *v, size_t *len, void *ctx)
{
    (void)len;
    v[*(long *)ctx] = 0xc1; /* a type byte msgpack never uses */
}

/* Replace the stored bytes of event seq by what fn makes of them (it may shorten them). */
static void rewrite_event(const char *d, uint64_t seq, void (*fn)(uint8_t *, size_t *, void *),
                          void *ctx)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t key[8];
    tn_put_be64(key, seq);
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    mdb_env_set_mapsize(env, 64 << 20);
    cr_assert_eq(mdb_env_open(env, d, 0, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "events", 0, &dbi), 0);
    MDB_val k = {8, key}, v;
    cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
    size_t len = v.mv_size;
    uint8_t *copy = malloc(len);
    memcpy(copy, v.mv_data, len);
    fn(copy, &len, ctx);
    MDB_val nv = {len, copy};
    cr_assert_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
    free(copy);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* An event that cannot be decoded gets the same verdict, naming its seq and the strict
 * reader's reason, whether replay compares (whole projections) or not (only the states
 * the table check needs), with or without the chain. */
static void assert_undecodable(const char *d, uint64_t seq, tn_err why)
{
    char want[128];
    snprintf(want, sizeof(want), "event cannot be decoded: %s", tn_strerror(why));
    for (int mode = 0; mode < 4; mode++) {
        tn_store *s;
        tn_errmsg m;
        cr_assert_eq(tn_store_open(d, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
        tn_replay_opts o = {.verify_chain = mode & 1, .compare = mode & 2};
        tn_replay_report r;
        cr_assert_eq(tn_replay_run(s, &o, &r), TN_OK);
        tn_store_close(s);
        cr_assert_eq(r.err, TN_ERR_CORRUPT, "mode %d: got %s: %s", mode, tn_errname(r.err),
                     r.why);
        cr_assert_eq(r.bad_seq, seq, "mode %d: named seq %llu", mode,
                     (unsigned long long)r.bad_seq);
        cr_assert_str_eq(r.why, want, "mode %d", mode);
        cr_assert_eq(r.events, seq - 1, "mode %d", mode);
    }
}

Test(replay, undecodable_event_is_named_with_and_without_comparison)
{
    record(dir, 2);
    /* seq 12's "attempt" value replaced by a type byte that is no msgpack type */
    long pos = find_in_event(dir, 12, "attempt") + (long)strlen("attempt");
    rewrite_event(dir, 12, bad_type_at, &pos);
    assert_undecodable(dir, 12, TN_ERR_TYPE);
    /* then seq 10 cut by one byte (its prev hash is short): the first one is named */
    rewrite_event(dir, 10, cut_last_byte, NULL);
    assert_undecodable(dir, 10, TN_ERR_TRUNCATED);
}

Test(replay, missing_event_is_named)
{
    record(dir, 2);
    uint8_t k[8];
    tn_put_be64(k, 7);
    poke(dir, "events", k, 8, NULL, NULL, true);
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CORRUPT);
    cr_assert_eq(r.bad_seq, 7);
}

static void bump_last_byte_of_name(uint8_t *v, size_t len, void *ctx)
{
    (void)ctx;
    v[len - 1] ^= 0x01;
}

Test(replay, tampered_projection_is_detected)
{
    record(dir, 2);
    uint8_t k[8];
    tn_put_be64(k, 2); /* task 2's stored projection */
    poke(dir, "tasks", k, 8, bump_last_byte_of_name, NULL, false);
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CORRUPT, "got %s", tn_errname(r.err));
    cr_assert(strstr(r.why, "task projection 2"), "%s", r.why);
}

static int count_events(void *ctx, const tn_event *ev)
{
    uint64_t *st = ctx;
    cr_assert_gt(ev->seq, st[1], "events come in seq order");
    st[1] = ev->seq;
    st[0]++;
    return 0;
}

Test(replay, audit_walks_one_workflow_in_order)
{
    record(dir, 3);
    tn_store *s;
    tn_store_opts so = {.read_only = true};
    tn_errmsg m;
    cr_assert_eq(tn_store_open(dir, &so, &s, &m), TN_OK);
    uint64_t st[2] = {0, 0};
    int fr;
    cr_assert_eq(tn_replay_wf_events(s, 2, count_events, st, &fr), TN_OK);
    cr_assert_eq(st[0], 2 + 3 * 6 + 1); /* its own events and its 3 tasks' */
    cr_assert_eq(tn_replay_wf_events(s, 99, count_events, st, &fr), TN_ERR_NOENT);
    tn_store_close(s);
}

/* A child appends batches of random size in a loop with durable commits; the parent
 * SIGKILLs it at a random moment. After every kill the store must reopen, and replay
 * must find a consistent prefix: legal transitions, an intact chain and projections
 * equal to the stored ones. */
Test(replay, crash_consistency_under_sigkill, .timeout = 300)
{
    unsigned seed = (unsigned)time(NULL);
    if (getenv("TERN_TEST_SEED"))
        seed = (unsigned)strtoul(getenv("TERN_TEST_SEED"), NULL, 10);
    cr_log_info("crash test seed %u (set TERN_TEST_SEED to repeat)", seed);
    srand(seed);
    uint64_t prev_last = record(dir, 0); /* the store exists before the first kill */
    for (int round = 0; round < 60; round++) {
        unsigned child_seed = (unsigned)rand();
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            srand(child_seed);
            tn_evlog *l;
            tn_errmsg m;
            tn_evlog_opts o = {.create = true};
            if (tn_evlog_open(dir, &o, &l, &m))
                _exit(3);
            for (;;) {
                int n = 1 + rand() % 40;
                for (int i = 0; i < n; i++) {
                    uint64_t wf = tn_evlog_new_wf_id(l), t = tn_evlog_new_task_id(l);
                    tn_event ev;
                    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0);
                    tn_evlog_add(l, &ev, &m);
                    tn_event_init(&ev, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, t);
                    tn_event_set_str(&ev, "name", "crash");
                    tn_evlog_add(l, &ev, &m);
                }
                if (tn_evlog_commit(l, &m))
                    _exit(4);
            }
        }
        struct timespec ts = {0, (long)(1 + rand() % 40) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        cr_assert(WIFSIGNALED(st), "round %d: child exited by itself (status %d)", round,
                  WEXITSTATUS(st));
        tn_replay_report r = run_replay(dir, 0);
        cr_assert_eq(r.err, TN_OK, "seed %u round %d: seq %llu: %s", seed, round,
                     (unsigned long long)r.bad_seq, r.why);
        cr_assert_geq(r.last_seq, prev_last, "round %d: committed events were lost", round);
        prev_last = r.last_seq;
        /* the writer's own open accepts it too */
        tn_evlog *l;
        tn_errmsg m;
        tn_evlog_opts o = {0};
        cr_assert_eq(tn_evlog_open(dir, &o, &l, &m), TN_OK, "round %d: %s", round, m.text);
        cr_assert_eq(tn_evlog_last_seq(l), r.last_seq);
        tn_evlog_close(l);
    }
    cr_assert_gt(prev_last, 1, "the children committed something");
}

/* --- the CLI ------------------------------------------------------------------- */

Test(replay, cli_replay_and_audit)
{
    record(dir, 2);
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof(cmd), "%s replay --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "2 workflows, 6 tasks"), "%s", out);
    cr_assert(strstr(out, "OK"));
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s replay --json --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 0);
    cr_assert(strstr(out, "\"ok\":true"), "%s", out);
    cr_assert(strstr(out, "\"error\":null"));
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s audit 1 --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "SUBMIT") && strstr(out, "NEW -> SUBMITTED_SUCCESS"), "%s", out);
    cr_assert(strstr(out, "RUNNING_EXECUTION -> SUCCESS"));
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s audit 1 --json --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_assert(out[0] == '[' && strstr(out, "\"event\":\"START\""), "%s", out);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s audit 42 --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 1);
    cr_assert(strstr(err, "42"), "%s", err);
    free(out);
    free(err);
}

Test(replay, cli_names_tampered_seq)
{
    record(dir, 2);
    long pos = find_in_event(dir, 9, "master:t");
    tamper_event(dir, 9, pos + 1);
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof(cmd), "%s replay --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 1);
    cr_assert(strstr(err, "seq 9:"), "%s", err);
    cr_assert(strstr(err, "data.mdb"), "the error names the file: %s", err);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s replay --json --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 1);
    cr_assert(strstr(out, "\"seq\":9") && strstr(out, "\"code\":\"CHAIN\""), "%s", out);
    free(out);
    free(err);
}

Test(replay, cli_bad_data_dirs)
{
    char cmd[1024], path[600], *out, *err;
    /* missing */
    snprintf(cmd, sizeof(cmd), "%s replay --data %s/nope", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 1);
    cr_assert(strstr(err, "/nope"), "%s", err);
    free(out);
    free(err);
    /* garbage where the data file should be */
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 20000; i++)
        fputc(i * 31 % 251, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s replay --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 1);
    cr_assert(strstr(err, "data.mdb"), "%s", err);
    cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
    free(out);
    free(err);
    /* bad options */
    snprintf(cmd, sizeof(cmd), "%s replay --until nope --data %s", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 2);
    cr_assert(strstr(err, "--until"), "%s", err);
    free(out);
    free(err);
}

Test(replay, cli_help_and_sm)
{
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof(cmd), "%s help", tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 0);
    cr_assert(strstr(out, "replay") && strstr(out, "audit") && strstr(out, "bench"));
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s replay --help", tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 0);
    cr_assert(strstr(out, "--until-time"));
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s sm dot task", tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 0);
    cr_assert(strncmp(out, "digraph task", 12) == 0, "%s", out);
    cr_assert(strstr(out, "FORCE_SUCCESS"));
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s sm md workflow", tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 0);
    cr_assert(strstr(out, "| READY_PAUSE | PAUSED | PAUSE |") || strstr(out, "READY_PAUSE"),
              "%s", out);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s sm dot nosuch", tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 2);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s frobnicate", tu_tern());
    cr_assert_eq(tu_run(cmd, &out, &err), 2);
    cr_assert(strstr(err, "frobnicate"));
    free(out);
    free(err);
}

Test(replay, cli_demo_prints_a_replayed_timeline)
{
    char cmd[1024], *out, *err;
    snprintf(cmd, sizeof(cmd), "%s demo --data %s/d", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "RETRY") && strstr(out, "FAILURE -> DELAY_EXECUTION"), "%s", out);
    cr_assert(strstr(out, "hash chain intact"), "%s", out);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s replay --data %s/d", tu_tern(), dir);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    free(out);
    free(err);
}

/* Replay counts each transition by (machine, from, event), and --coverage-out appends
 * them as "MACHINE FROM EVENT TO COUNT" lines. */
Test(replay, counts_transitions_for_coverage)
{
    record(dir, 6); /* 6 workflows; every third fails */
    tn_replay_report rep = run_replay(dir, 0);
    cr_assert_eq(rep.err, TN_OK, "%s", rep.why);
    cr_expect_eq(rep.cov[TN_MACHINE_WORKFLOW][TN_SM_NEW][TN_WF_E_SUBMIT], 6);
    cr_expect_eq(rep.cov[TN_MACHINE_WORKFLOW][TN_WF_S_RUNNING_EXECUTION][TN_WF_E_FAILED], 2);
    cr_expect_eq(rep.cov[TN_MACHINE_TASK][TN_TASK_S_DISPATCH][TN_TASK_E_RUNNING], 18);
    cr_expect_eq(rep.cov[TN_MACHINE_SYSTEM][TN_SM_NEW][TN_SYS_E_INIT], 1);
    char cov[4096], cmd[8192], *out = NULL;
    snprintf(cov, sizeof(cov), "%s/c.cov", dir);
    snprintf(cmd, sizeof(cmd), "%s replay --data %s --coverage-out %s", tu_tern(), dir, cov);
    cr_assert_eq(tu_run(cmd, NULL, NULL), 0);
    cr_assert_eq(tu_run(cmd, NULL, NULL), 0); /* appends */
    snprintf(cmd, sizeof(cmd), "cat %s", cov);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0);
    cr_expect_not_null(strstr(out, "workflow NEW SUBMIT SUBMITTED_SUCCESS 6\n"), "%s", out);
    cr_expect_not_null(strstr(out, "task DISPATCH RUNNING RUNNING_EXECUTION 18\n"), "%s", out);
    char *second = strstr(out, "workflow NEW SUBMIT SUBMITTED_SUCCESS 6\n");
    cr_expect_not_null(second && strstr(second + 1, "workflow NEW SUBMIT"), "appended twice");
    free(out);
}

/* --- the per-workflow index (one by_wf entry per workflow and commit) ------------ */

/* Record `ncommits` commits over `nwf` workflows whose events interleave: commit c adds
 * a task (5 events) to workflows c % nwf and (c * 7) % nwf, and every tenth commit a
 * burst of 40 tasks to workflow 1 alone. Workflows are submitted and started first. */
static void record_interleaved(const char *d, int nwf, int ncommits)
{
    tn_evlog *l;
    tn_errmsg m;
    cr_assert_eq(tn_evlog_open(d, &(tn_evlog_opts){.create = true, .no_sync = true}, &l, &m),
                 TN_OK, "%s", m.text);
    uint64_t wfs[16];
    cr_assert_leq(nwf, 16);
    tn_event ev;
#define ADD(M, E, W, T)                                              \
    do {                                                             \
        tn_event_init(&ev, M, E, W, T);                              \
        ev.actor = TN_STR("master:t");                               \
        cr_assert_eq(tn_evlog_add(l, &ev, &m), TN_OK, "%s", m.text); \
    } while (0)
    for (int i = 0; i < nwf; i++) {
        wfs[i] = tn_evlog_new_wf_id(l);
        ADD(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wfs[i], 0);
        ADD(TN_MACHINE_WORKFLOW, TN_WF_E_START, wfs[i], 0);
    }
    cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    for (int c = 0; c < ncommits; c++) {
        int pick[2] = {c % nwf, (c * 7) % nwf};
        int ntask = c % 10 == 9 ? 40 : 1;
        for (int j = 0; j < (c % 10 == 9 ? 1 : 2); j++) {
            uint64_t wf = wfs[c % 10 == 9 ? 1 : pick[j]];
            for (int k = 0; k < ntask; k++) {
                uint64_t t = tn_evlog_new_task_id(l);
                ADD(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, t);
                ADD(TN_MACHINE_TASK, TN_TASK_E_DISPATCH, wf, t);
                ADD(TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, wf, t);
                ADD(TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, t);
                ADD(TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, wf, t);
            }
        }
        cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    }
#undef ADD
    tn_evlog_close(l);
}

typedef struct seqlist {
    uint64_t *seq;
    size_t n, cap;
    uint64_t wf;
} seqlist;

static int collect(void *ctx, const tn_event *ev)
{
    seqlist *x = ctx;
    cr_assert_eq(ev->wf, x->wf, "seq %llu belongs to workflow %llu",
                 (unsigned long long)ev->seq, (unsigned long long)ev->wf);
    cr_assert(tn_grow((void **)&x->seq, &x->cap, x->n + 1, sizeof(uint64_t)));
    x->seq[x->n++] = ev->seq;
    return 0;
}

Test(replay, wf_events_across_many_commits_are_exactly_its_events_in_order)
{
    const int nwf = 5, ncommits = 60;
    record_interleaved(dir, nwf, ncommits);
    tn_store *s;
    tn_errmsg m;
    cr_assert_eq(tn_store_open(dir, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
    /* the truth: a scan of the whole log, by workflow */
    seqlist want[6] = {{0}};
    tn_rtxn *t;
    tn_cursor *c;
    tn_val k, v;
    cr_assert_eq(tn_store_read_begin(s, &t), TN_OK);
    cr_assert_eq(tn_cursor_open(t, TN_DB_EVENTS, &c), TN_OK);
    tn_event ev;
    for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
        cr_assert_eq(tn_event_decode(v.data, v.len, &ev), TN_OK);
        if (ev.wf == 0)
            continue;
        cr_assert_leq(ev.wf, (uint64_t)nwf);
        want[ev.wf].wf = ev.wf;
        collect(&want[ev.wf], &ev);
    }
    tn_cursor_close(c);
    tn_store_read_end(t);
    for (uint64_t wf = 1; wf <= (uint64_t)nwf; wf++) {
        seqlist got = {.wf = wf};
        int fr;
        cr_assert_eq(tn_replay_wf_events(s, wf, collect, &got, &fr), TN_OK);
        cr_assert_eq(got.n, want[wf].n, "workflow %llu: %zu events, the log has %zu",
                     (unsigned long long)wf, got.n, want[wf].n);
        for (size_t i = 0; i < got.n; i++)
            cr_assert_eq(got.seq[i], want[wf].seq[i], "workflow %llu event %zu",
                         (unsigned long long)wf, i);
        free(got.seq);
        free(want[wf].seq);
    }
    cr_assert_gt(want[2].n, 1000, "workflow 2 (wfs[1]) spans many commits and bursts");
    /* one entry per workflow and commit: the first commit touches every workflow; a
     * burst commit one; the others two (or one when both picks are the same) */
    size_t entries = (size_t)nwf;
    for (int cc = 0; cc < ncommits; cc++)
        entries += cc % 10 == 9 ? 1 : (cc % nwf == (cc * 7) % nwf ? 1 : 2);
    tn_store_stat st;
    cr_assert_eq(tn_store_stat_get(s, &st), TN_OK);
    cr_assert_eq(st.entries[TN_DB_BY_WF], entries);
    /* a walk stopped by its callback stops there and reports it */
    seqlist none = {.wf = 3};
    int fr = 0;
    cr_assert_eq(tn_replay_wf_events(s, 6, collect, &none, &fr), TN_ERR_NOENT);
    tn_store_close(s);
}

static int stop_after_one(void *ctx, const tn_event *ev)
{
    (void)ev;
    return ++*(int *)ctx == 1 ? 7 : 0;
}

/* Replace the value of workflow `wf`'s first by_wf entry. */
static void set_wf_entry(const char *d, uint64_t wf, const void *val, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    cr_assert_eq(mdb_env_open(env, d, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "by_wf", 0, &dbi), 0);
    cr_assert_eq(mdb_cursor_open(txn, dbi, &cur), 0);
    uint8_t kb[16] = {0};
    tn_put_be64(kb, wf);
    MDB_val k = {16, kb}, v;
    cr_assert_eq(mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE), 0);
    cr_assert_eq(tn_get_be64(k.mv_data), wf);
    uint8_t key[16];
    memcpy(key, k.mv_data, 16);
    mdb_cursor_close(cur);
    MDB_val k2 = {16, key}, v2 = {len, (void *)val};
    cr_assert_eq(mdb_put(txn, dbi, &k2, &v2, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

Test(replay, wf_events_stop_early_and_refuse_a_damaged_index)
{
    record(dir, 3);
    tn_store *s;
    tn_errmsg m;
    int n = 0, fr = 0;
    cr_assert_eq(tn_store_open(dir, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
    cr_assert_eq(tn_replay_wf_events(s, 2, stop_after_one, &n, &fr), TN_OK);
    cr_assert_eq(fr, 7);
    cr_assert_eq(n, 1);
    tn_store_close(s);
    /* each malformed value is refused, never read past its end */
    static const struct {
        const char *v;
        size_t len;
    } bad[] = {
        {"", 0},                                              /* no count */
        {"\x00", 1},                                          /* a count of 0 */
        {"\x05\x01\x01", 3},                                  /* 5 seqs, 2 gaps */
        {"\x02\x00", 2},                                      /* a gap of 0: not ascending */
        {"\x02\x80", 2},                                      /* a truncated gap */
        {"\x01\x01", 2},                                      /* a byte left over */
        {"\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11}, /* over 64 bits */
        {"\x02\x40", 2}, /* a seq past the end of the log */
    };
    for (size_t i = 0; i < TN_ARRAY_LEN(bad); i++) {
        set_wf_entry(dir, 2, bad[i].v, bad[i].len);
        cr_assert_eq(tn_store_open(dir, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
        seqlist got = {.wf = 2};
        cr_assert_eq(tn_replay_wf_events(s, 2, collect, &got, &fr), TN_ERR_CORRUPT, "value %zu",
                     i);
        free(got.seq);
        tn_store_close(s);
    }
}

/* --- replay's counts ---------------------------------------------------------------- */

typedef struct fold_truth {
    uint8_t wf_state[64], task_state[256];
    bool wf_seen[64], task_seen[256];
} fold_truth;

/* Counts of instances per state after the first `until` events, folded here from the
 * events alone (state = the event's to), independently of replay. */
static void truth_counts(const char *d, uint64_t until, tn_replay_report *out)
{
    fold_truth *f = calloc(1, sizeof(*f));
    tn_store *s;
    tn_errmsg m;
    cr_assert_eq(tn_store_open(d, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
    tn_rtxn *t;
    tn_cursor *c;
    tn_val k, v;
    tn_store_read_begin(s, &t);
    tn_cursor_open(t, TN_DB_EVENTS, &c);
    tn_event ev;
    for (tn_err e = tn_cursor_first(c, &k, &v); e == TN_OK; e = tn_cursor_next(c, &k, &v)) {
        cr_assert_eq(tn_event_decode(v.data, v.len, &ev), TN_OK);
        if (ev.seq > until)
            break;
        if (ev.machine == TN_MACHINE_WORKFLOW) {
            cr_assert_lt(ev.wf, 64);
            f->wf_seen[ev.wf] = true;
            f->wf_state[ev.wf] = ev.to;
        } else if (ev.machine == TN_MACHINE_TASK) {
            cr_assert_lt(ev.task, 256);
            f->task_seen[ev.task] = true;
            f->task_state[ev.task] = ev.to;
        }
    }
    tn_cursor_close(c);
    tn_store_read_end(t);
    tn_store_close(s);
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < 64; i++)
        if (f->wf_seen[i]) {
            out->workflows++;
            out->wf_states[f->wf_state[i]]++;
        }
    for (int i = 0; i < 256; i++)
        if (f->task_seen[i]) {
            out->tasks++;
            out->task_states[f->task_state[i]]++;
        }
    free(f);
}

static void expect_counts(const tn_replay_report *got, const tn_replay_report *want,
                          const char *what, uint64_t until)
{
    cr_assert_eq(got->err, TN_OK, "%s until %llu: %s", what, (unsigned long long)until,
                 got->why);
    cr_assert_eq(got->workflows, want->workflows, "%s until %llu", what,
                 (unsigned long long)until);
    cr_assert_eq(got->tasks, want->tasks, "%s until %llu", what, (unsigned long long)until);
    for (int i = 0; i < TN_REPLAY_MAX_STATES; i++) {
        cr_assert_eq(got->wf_states[i], want->wf_states[i], "%s until %llu: wf state %d", what,
                     (unsigned long long)until, i);
        cr_assert_eq(got->task_states[i], want->task_states[i], "%s until %llu: task state %d",
                     what, (unsigned long long)until, i);
    }
}

/* The counts replay keeps as states change equal the fold of the events at every
 * prefix of the log, with and without the comparison and the chain check. */
Test(replay, state_counts_match_the_events_at_every_prefix)
{
    uint64_t last = record(dir, 6);
    tn_store *s;
    tn_errmsg m;
    tn_replay_report *rep = malloc(sizeof(*rep)), *want = malloc(sizeof(*want));
    for (uint64_t until = 1; until <= last; until++) {
        truth_counts(dir, until, want);
        cr_assert_eq(tn_store_open(dir, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
        for (int mode = 0; mode < 4; mode++) {
            tn_replay_opts o = {.until_seq = until == last ? 0 : until,
                                .verify_chain = mode & 1,
                                .compare = mode & 2};
            cr_assert_eq(tn_replay_run(s, &o, rep), TN_OK);
            expect_counts(rep, want, mode & 2 ? "compared" : "lite", until);
            cr_assert_eq(rep->compared, (mode & 2) && until == last);
        }
        tn_store_close(s);
    }
    cr_assert_gt(want->wf_states[TN_WF_S_FAILURE], 0, "the log ends in a mix of states");
    cr_assert_gt(want->wf_states[TN_WF_S_SUCCESS], 0);
    free(rep);
    free(want);
}

/* A log long enough for the chain to be hashed by helper threads: clean, it verifies;
 * altered in one event's content or its prev hash, the verdict names the same seq and
 * says the same as the sequential check does on a short log. */
Test(replay, chain_checked_in_parallel_names_the_altered_seq, .timeout = 300)
{
    record_interleaved(dir, 4, 900); /* > 9000 events */
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_OK, "seq %llu: %s", (unsigned long long)r.bad_seq, r.why);
    cr_assert_gt(r.events, 9000);

    long pos = find_in_event(dir, 6000, "master:t");
    tamper_event(dir, 6000, pos + 3);
    r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CHAIN, "got %s: %s", tn_errname(r.err), r.why);
    cr_assert_eq(r.bad_seq, 6000, "named seq %llu", (unsigned long long)r.bad_seq);
    cr_assert(strstr(r.why, "altered"), "%s", r.why);
    tamper_event(dir, 6000, pos + 3);

    tamper_event(dir, 7001, -5); /* inside the prev hash */
    r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_ERR_CHAIN, "got %s: %s", tn_errname(r.err), r.why);
    cr_assert_eq(r.bad_seq, 7001);
    /* without the chain check the same log replays (its tables and seqs are intact) */
    tn_store *s;
    tn_errmsg m;
    cr_assert_eq(tn_store_open(dir, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
    cr_assert_eq(tn_replay_run(s, &(tn_replay_opts){0}, &r), TN_OK);
    cr_assert_eq(r.err, TN_OK, "%s", r.why);
    tn_store_close(s);
}

static int count_in_order(void *ctx, const tn_event *ev)
{
    uint64_t *st = ctx; /* [0] count, [1] last seq */
    cr_assert_gt(ev->seq, st[1]);
    st[1] = ev->seq;
    st[0]++;
    return 0;
}

/* A commit larger than the writer keeps its index lists for (they are freed after it),
 * then small commits to the same workflow: every event reads back, in order, and the
 * log replays clean. */
Test(replay, huge_commit_then_small_ones_index_every_event, .timeout = 300)
{
    tn_evlog *l;
    tn_errmsg m;
    cr_assert_eq(tn_evlog_open(dir, &(tn_evlog_opts){.create = true, .no_sync = true}, &l, &m),
                 TN_OK, "%s", m.text);
    uint64_t wf = tn_evlog_new_wf_id(l);
    tn_event ev;
    size_t n = 0;
#define ADD(M, E, T)                                                 \
    do {                                                             \
        tn_event_init(&ev, M, E, wf, T);                             \
        ev.actor = TN_STR("master:t");                               \
        cr_assert_eq(tn_evlog_add(l, &ev, &m), TN_OK, "%s", m.text); \
        n++;                                                         \
    } while (0)
    ADD(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 0);
    ADD(TN_MACHINE_WORKFLOW, TN_WF_E_START, 0);
    for (int i = 0; i < 70000; i++)
        ADD(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, tn_evlog_new_task_id(l));
    cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    for (int c = 0; c < 3; c++) {
        ADD(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, tn_evlog_new_task_id(l));
        cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    }
#undef ADD
    uint64_t st[2] = {0, 0};
    int fr;
    cr_assert_eq(tn_replay_wf_events(tn_evlog_store(l), wf, count_in_order, st, &fr), TN_OK);
    cr_assert_eq(st[0], n);
    tn_store_stat ss;
    cr_assert_eq(tn_store_stat_get(tn_evlog_store(l), &ss), TN_OK);
    cr_assert_eq(ss.entries[TN_DB_BY_WF], 4, "one entry per commit");
    tn_evlog_close(l);
    tn_replay_report r = run_replay(dir, 0);
    cr_assert_eq(r.err, TN_OK, "seq %llu: %s", (unsigned long long)r.bad_seq, r.why);
    cr_assert_eq(r.tasks, 70003);
}

/* Every mode of replay with its helper threads (the chain pool, the pages mapped ahead)
 * and in one thread; the reports must be the same, byte for byte. */
static void assert_same_reports(const char *d, const char *what)
{
    tn_replay_report *par = malloc(sizeof(*par)), *seq = malloc(sizeof(*seq));
    for (int mode = 0; mode < 8; mode++) {
        tn_store *s;
        tn_errmsg m;
        cr_assert_eq(tn_store_open(d, &(tn_store_opts){.read_only = true}, &s, &m), TN_OK);
        tn_replay_opts o = {
            .verify_chain = mode & 1, .compare = mode & 2, .until_seq = mode & 4 ? 5000 : 0};
        cr_assert_eq(tn_replay_run(s, &o, par), TN_OK);
        o.sequential = true;
        cr_assert_eq(tn_replay_run(s, &o, seq), TN_OK);
        tn_store_close(s);
        cr_assert_eq(par->err, seq->err, "%s, mode %d: %s / %s", what, mode, par->why,
                     seq->why);
        cr_assert_str_eq(par->why, seq->why, "%s, mode %d", what, mode);
        cr_assert_eq(par->events, seq->events, "%s, mode %d", what, mode);
        cr_assert(memcmp(par, seq, sizeof(*par)) == 0, "%s, mode %d: reports differ", what,
                  mode);
    }
    free(par);
    free(seq);
}

/* A log long enough for every helper: clean, then with an event altered, cut short (it
 * no longer decodes) and missing; each verdict is the one-thread walk's. */
Test(replay, helpers_change_no_verdict, .timeout = 300)
{
    record_interleaved(dir, 4, 900); /* > 9000 events */
    assert_same_reports(dir, "clean");
    long pos = find_in_event(dir, 6000, "master:t");
    tamper_event(dir, 6000, pos + 3);
    assert_same_reports(dir, "altered actor");
    tamper_event(dir, 6000, pos + 3);
    rewrite_event(dir, 7000, cut_last_byte, NULL);
    assert_same_reports(dir, "undecodable");
    uint8_t k[8];
    tn_put_be64(k, 3000);
    poke(dir, "events", k, 8, NULL, NULL, true);
    assert_same_reports(dir, "missing");
}

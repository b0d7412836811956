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

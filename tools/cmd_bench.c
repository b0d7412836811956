/* `tern bench store`: durable append and replay throughput of the event log, each next
 * to the matching raw LMDB loop measured in the same run. Prints one line per result:
 *   BENCH name=<id> value=<n> unit=<u> baseline=<n> ratio=<n> */
#include <dirent.h>
#include <ftw.h>
#include <stddef.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evlog.h"
#include "replay.h"
#include "util.h"
#include "sm_gen.h"
#include "store.h"
#include "cli.h"
#include "opt.h"

typedef struct bench_opts {
    const char *dir;
    uint64_t events;
    bool quick;
    bool scale;
    const char *only;
} bench_opts;

static const tn_opt bench_table[] = {
    {"dir", 0, TN_OPT_STR, offsetof(bench_opts, dir), "DIR",
     .help = "where the temporary stores go (default: $TMPDIR or /tmp)"},
    {"events", 0, TN_OPT_U64, offsetof(bench_opts, events), "N",
     .help = "events for the batched store append runs (default 1000000)", .min = 1000},
    {"quick", 0, TN_OPT_FLAG, offsetof(bench_opts, quick), NULL,
     .help = "a short run (for smoke tests)"},
    {"scale", 0, TN_OPT_FLAG, offsetof(bench_opts, scale), NULL,
     .help = "engine only: per-task scheduling time from 1k to 100k tasks (see above)"},
    {"only", 0, TN_OPT_STR, offsetof(bench_opts, only), "PART",
     .help = "engine only: run one part, wide, chains or rss (to compare builds quickly)"},
    {0}};

const tn_opt_cmd tn_spec_bench = {
    "bench", (const char *const[]){"store|engine|dispatch|latency|ha", NULL},
    "store: durable append events/s at 1, 100 and 1000 events per commit, each next to a\n"
    "raw LMDB append of the same value size and batch, and at 100 and 1000 without fsync\n"
    "on either side (the CPU cost alone); replay events/s (decode, table\n"
    "check, projection rebuild) with and without chain verification, next to a raw\n"
    "cursor scan of the same events. Stores are created in temporary directories under\n"
    "DIR (default: $TMPDIR or /tmp) and removed afterwards.\n"
    "\n"
    "engine: noop tasks (duration 0) through the engine with durable group commit:\n"
    "(a) one workflow of 100k independent tasks, (b) 10k workflows of 10 chained tasks,\n"
    "tasks/s and events/s next to a raw LMDB append of the same events in the same\n"
    "number of commits, and (limit) next to that append with each event hashed into the\n"
    "chain, by wall time and by CPU time (limit_cpu: what other programs do not move);\n"
    "(c) start-to-first-dispatch latency p50/p99 next to one durable\n"
    "commit; (d) RSS after 100k and after 1M completed tasks. With --scale instead:\n"
    "per-task scheduling time of one workflow of 1k, 10k and 100k tasks, wide (no deps),\n"
    "layered (rows of 100, two deps each), a chain, and wide on 64 placement slots (tasks\n"
    "wait in the dispatch queue as on a master), virtual clock, store not durable; CPU\n"
    "time per task, median of 3 runs, ratio = t(N)/t(1k) per task (flat is 1.0).\n"
    "\n"
    "dispatch: a master here and a worker process over ipc: (a) noop tasks/s next to a\n"
    "raw nng push/pull message rate, and the worker's RSS after 10k and 100k tasks;\n"
    "(b) shell `true` tasks/s next to a raw posix_spawn+wait loop of /bin/true, and\n"
    "(vs_contained) next to the same loop contained: a new session and v2 cgroup per run;\n"
    "(c) submit-to-process-started latency p50/p99; (d) kill of a 20-process tree: from\n"
    "the kill to verified empty, minus the grace.\n"
    "\n"
    "latency: a `tern standalone` with 4 slots as a child, driven over its control socket:\n"
    "submit-to-process-started p50/p99 from a running client (a connection per request,\n"
    "then one kept connection: kept_*; each with its two halves, client to SUBMIT and\n"
    "SUBMIT to started) and through a `tern start` process, next to posix_spawn of the\n"
    "same command; 10,000 noop tasks/s in one workflow\n"
    "next to raw nng request/reply at 4 in flight. tools/bench/peers/run.sh runs it beside\n"
    "Celery and Dask.\n"
    "ha: a cluster of masters on a ZooKeeper started here (the zookeeper package):\n"
    "failover time (SIGKILL of the leader to the first task dispatched by the new one,\n"
    "p50/p99 over 20 runs) next to the session timeout; noop tasks/s with 0, 1 and 2\n"
    "synchronous standbys next to a single master (docs/HA.md).\n"
    "\n"
    "Output: one line per result, BENCH name=<id> value=<n> unit=<u> baseline=<n> ratio=<n>\n",
    bench_table, .max_args = 1};

/* CPU time of the process: the engine and the in-process executor run on this thread,
 * and other programs on the machine do not count. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void bench_line(const char *name, double value, const char *unit, double baseline)
{
    printf("BENCH name=%s value=%.0f unit=%s baseline=%.0f ratio=%.2f\n", name, value, unit,
           baseline, baseline > 0 ? value / baseline : 0.0);
    fflush(stdout);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A synthetic but realistic stream: workflows of 10 tasks, each task submitted,
 * dispatched, sent, running and succeeded, the workflow told, then finished. */
typedef struct gen {
    uint64_t wf, tasks[10];
    int step; /* position in the current workflow's event script */
} gen;

static tn_err gen_next(gen *g, tn_evlog *l, tn_errmsg *msg)
{
    tn_event ev;
    if (g->step == 0) {
        g->wf = tn_evlog_new_wf_id(l);
        for (int i = 0; i < 10; i++)
            g->tasks[i] = tn_evlog_new_task_id(l);
        tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, g->wf, 0);
        tn_event_set_str(&ev, "name", "bench_flow");
        tn_event_set_int(&ev, "version", 1);
        tn_event_set_int(&ev, "run", 1);
    } else if (g->step == 1) {
        tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_START, g->wf, 0);
    } else if (g->step < 2 + 10 * 6) {
        int t = (g->step - 2) / 6, k = (g->step - 2) % 6;
        static const unsigned evs[] = {TN_TASK_E_SUBMIT, TN_TASK_E_DISPATCH,
                                       TN_TASK_E_DISPATCHED, TN_TASK_E_RUNNING,
                                       TN_TASK_E_SUCCEEDED};
        if (k < 5) {
            tn_event_init(&ev, TN_MACHINE_TASK, evs[k], g->wf, g->tasks[t]);
            tn_event_set_int(&ev, "attempt", 1);
            if (k == 0)
                tn_event_set_str(&ev, "name", "task_name");
            if (k == 2)
                tn_event_set_str(&ev, "worker", "worker-01");
            if (k == 3)
                tn_event_set_int(&ev, "pid", 31337 + t);
            if (k == 4)
                tn_event_set_int(&ev, "exit", 0);
        } else {
            tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_TASK_FINISHED, g->wf, 0);
            tn_event_set_int(&ev, "task", (int64_t)g->tasks[t]);
        }
    } else {
        tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUCCEED, g->wf, 0);
    }
    ev.actor = TN_STR("master:bench");
    g->step = g->step == 2 + 10 * 6 ? 0 : g->step + 1;
    return tn_evlog_add(l, &ev, msg);
}

typedef struct append_result {
    double events_per_s;
    double avg_value; /* bytes per encoded event */
} append_result;

static int tern_append(const char *dir, size_t batch, size_t total, bool no_sync,
                       append_result *res)
{
    tn_evlog *l;
    tn_errmsg m = {{0}};
    tn_evlog_opts o = {
        .create = true, .no_sync = no_sync, .map_size = 1u << 30, .map_max = 64ull << 30};
    if (tn_evlog_open(dir, &o, &l, &m)) {
        fprintf(stderr, "tern bench: %s\n", m.text);
        return -1;
    }
    gen g = {0};
    uint64_t seq0 = tn_evlog_last_seq(l);
    int64_t t0 = tn_mono_ns();
    for (size_t done = 0; done < total;) {
        for (size_t i = 0; i < batch && done < total; i++, done++)
            if (gen_next(&g, l, &m)) {
                fprintf(stderr, "tern bench: %s\n", m.text);
                tn_evlog_close(l);
                return -1;
            }
        /* as the engine does: batch k is written and synced while k+1 is built (a small
         * batch commits at once); the clock stops when the last one is durable */
        if (tn_evlog_commit_start(l, &m)) {
            fprintf(stderr, "tern bench: %s\n", m.text);
            tn_evlog_close(l);
            return -1;
        }
    }
    if (tn_evlog_commit_wait(l, &m)) {
        fprintf(stderr, "tern bench: %s\n", m.text);
        tn_evlog_close(l);
        return -1;
    }
    int64_t t1 = tn_mono_ns();
    res->events_per_s = (double)total * 1e9 / (double)(t1 - t0);
    /* average stored event size, for the raw baseline */
    tn_rtxn *t;
    tn_cursor *c;
    tn_val k, v;
    size_t bytes = 0, n = 0;
    tn_store_read_begin(tn_evlog_store(l), &t);
    tn_cursor_open(t, TN_DB_EVENTS, &c);
    uint8_t key[8];
    tn_put_be64(key, seq0 + 1);
    for (tn_err e = tn_cursor_seek(c, key, 8, &k, &v); e == TN_OK && n < 100000;
         e = tn_cursor_next(c, &k, &v), n++)
        bytes += v.len;
    tn_cursor_close(c);
    tn_store_read_end(t);
    res->avg_value = n ? (double)bytes / (double)n : 0;
    tn_evlog_close(l);
    return 0;
}

static int raw_append_opt(const char *dir, size_t batch, size_t total, size_t vsize,
                          unsigned flags, bool hash, double *out, double *cpu_out);

static int raw_append(const char *dir, size_t batch, size_t total, size_t vsize, double *out)
{
    return raw_append_opt(dir, batch, total, vsize, 0, false, out, NULL);
}

/* flags: extra LMDB environment flags (MDB_NOSYNC for the CPU-only lines). With hash: each
 * value also chained to the one before by the log's hash (BLAKE2b of the previous hash
 * and the value), as the event log does: "the limit" of an engine that only had to make
 * its events durable. */
static int raw_append_opt(const char *dir, size_t batch, size_t total, size_t vsize,
                          unsigned flags, bool hash, double *out, double *cpu_out)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    if (tn_mkdir_p(dir) || mdb_env_create(&env))
        return -1;
    mdb_env_set_maxdbs(env, 8);
    mdb_env_set_mapsize(env, 8ull << 30);
    if (mdb_env_open(env, dir, MDB_NOTLS | MDB_NORDAHEAD | flags, 0644)) {
        mdb_env_close(env);
        return -1;
    }
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "events", MDB_CREATE, &dbi);
    mdb_txn_commit(txn);
    char *buf = malloc(TN_HASH_LEN + vsize), *val = buf + TN_HASH_LEN;
    memset(buf, 0xab, TN_HASH_LEN + vsize);
    uint64_t seq = 0;
    int64_t t0 = tn_mono_ns(), c0 = cpu_ns();
    for (size_t done = 0; done < total;) {
        if (mdb_txn_begin(env, NULL, 0, &txn))
            break;
        for (size_t i = 0; i < batch && done < total; i++, done++) {
            uint8_t kb[8];
            tn_put_be64(kb, ++seq);
            if (hash) { /* buf = previous hash, value; its hash is the next previous */
                val[0] = (char)seq;
                tn_event_hash(buf, TN_HASH_LEN + vsize, (uint8_t *)buf);
            }
            MDB_val k = {8, kb}, v = {vsize, val};
            mdb_put(txn, dbi, &k, &v, MDB_APPEND);
        }
        mdb_txn_commit(txn);
    }
    int64_t t1 = tn_mono_ns();
    *out = (double)total * 1e9 / (double)(t1 - t0);
    if (cpu_out)
        *cpu_out = (double)total * 1e9 / (double)(cpu_ns() - c0 + 1);
    free(buf);
    mdb_env_close(env);
    return 0;
}

static int raw_scan(const char *dir, uint64_t *n_out, double *out)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn;
    MDB_cursor *c;
    if (mdb_env_create(&env))
        return -1;
    mdb_env_set_maxdbs(env, 8);
    if (mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0644)) {
        mdb_env_close(env);
        return -1;
    }
    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    mdb_dbi_open(txn, "events", 0, &dbi);
    mdb_cursor_open(txn, dbi, &c);
    MDB_val k, v;
    uint64_t n = 0, sum = 0;
    int64_t t0 = tn_mono_ns();
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        sum += ((const uint8_t *)v.mv_data)[v.mv_size - 1]; /* touch the value */
        n++;
    }
    int64_t t1 = tn_mono_ns();
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    *n_out = n + (sum & 0); /* keep the loop's reads */
    *out = (double)n * 1e9 / (double)(t1 - t0);
    return 0;
}

static int bench_store(const char *base, size_t events, bool quick)
{
    char tdir[4200], rdir[4200], tmpl[4000];
    snprintf(tmpl, sizeof(tmpl), "%s/tern-bench-XXXXXX", base);
    if (!mkdtemp(tmpl))
        return tn_cli_fail("bench", "%s: cannot create a temporary directory: %m; pass --dir",
                           base);
    static const size_t batches[] = {1, 100, 1000};
    int rc = 0;
    for (size_t i = 0; i < 3 && rc == 0; i++) {
        size_t b = batches[i];
        size_t total = b == 1 ? (quick ? 200 : 3000) : (quick ? events / 20 : events);
        snprintf(tdir, sizeof(tdir), "%s/tern-b%zu", tmpl, b);
        snprintf(rdir, sizeof(rdir), "%s/raw-b%zu", tmpl, b);
        append_result tr;
        double raw;
        if (tern_append(tdir, b, total, false, &tr) ||
            raw_append(rdir, b, total, (size_t)tr.avg_value, &raw)) {
            rc = tn_cli_fail("bench", "append run failed (batch %zu)", b);
            break;
        }
        char name[64];
        snprintf(name, sizeof(name), "store.append.batch%zu", b);
        bench_line(name, tr.events_per_s, "events/s", raw);
        if (b != 1000) {
            rm_rf(tdir);
            rm_rf(rdir);
        }
    }
    /* the same without fsync on either side: the CPU cost per event, which a busy or
     * slow disk hides in the durable runs */
    for (size_t i = 1; i < 3 && rc == 0; i++) {
        size_t b = batches[i], total = quick ? events / 20 : events;
        snprintf(tdir, sizeof(tdir), "%s/tern-nosync-b%zu", tmpl, b);
        snprintf(rdir, sizeof(rdir), "%s/raw-nosync-b%zu", tmpl, b);
        append_result tr;
        double raw;
        if (tern_append(tdir, b, total, true, &tr) ||
            raw_append_opt(rdir, b, total, (size_t)tr.avg_value, MDB_NOSYNC, false, &raw,
                           NULL)) {
            rc = tn_cli_fail("bench", "append run failed (no sync, batch %zu)", b);
            break;
        }
        char name[64];
        snprintf(name, sizeof(name), "store.append_nosync.batch%zu", b);
        bench_line(name, tr.events_per_s, "events/s", raw);
        rm_rf(tdir);
        rm_rf(rdir);
    }
    if (rc == 0) {
        /* replay the batch-1000 store: every event decoded, checked and folded */
        snprintf(tdir, sizeof(tdir), "%s/tern-b1000", tmpl);
        tn_store *s;
        tn_store_opts so = {.read_only = true};
        tn_errmsg m = {{0}};
        uint64_t n;
        double scan;
        if (tn_store_open(tdir, &so, &s, &m) || raw_scan(tdir, &n, &scan)) {
            rc = tn_cli_fail("bench", "replay run failed: %s", m.text);
        } else {
            tn_replay_report *rep = malloc(sizeof(*rep));
            for (int chain = 0; chain < 2 && rep; chain++) {
                tn_replay_opts ro = {.verify_chain = chain == 1, .compare = false};
                int64_t t0 = tn_mono_ns();
                tn_replay_run(s, &ro, rep);
                int64_t t1 = tn_mono_ns();
                if (rep->err) {
                    rc = tn_cli_fail("bench", "replay failed at seq %" PRIu64 ": %s",
                                     rep->bad_seq, rep->why);
                    break;
                }
                raw_scan(tdir, &n, &scan);
                bench_line(chain ? "store.replay.chain" : "store.replay.nochain",
                           (double)rep->events * 1e9 / (double)(t1 - t0), "events/s", scan);
            }
            free(rep);
            tn_store_close(s);
        }
    }
    rm_rf(tmpl);
    return rc;
}


/* ------------------------------------------------------------------------------ */
/* bench engine */

#include "engine.h"
#include "inproc.h"
#include "log.h"

/* Resident memory in KiB: "VmRSS" (all), "RssAnon" (the heap: what finished instances
 * would leak into) or "RssFile" (mapped file pages: the LMDB map read so far). */
static long rss_kb_of(const char *what)
{
    return (long)tn_proc_kb("/proc/self/status", what);
}

static long rss_kb(void)
{
    return rss_kb_of("RssAnon");
}

typedef struct eng {
    tn_engine *e;
    tn_inproc *x;
    char dir[4200];
} eng;

static int eng_open(eng *g, const char *base, const char *name)
{
    snprintf(g->dir, sizeof(g->dir), "%s/%s", base, name);
    char logs[4300];
    snprintf(logs, sizeof(logs), "%s/logs", g->dir);
    tn_errmsg m = {{0}};
    if (tn_inproc_new(logs, &g->x))
        return -1;
    tn_engine_opts o = {.data_dir = g->dir,
                        .log = {.create = true, .map_size = 1u << 30, .map_max = 64ull << 30},
                        .executor = tn_inproc_executor(g->x),
                        .max_batch = 8192};
    if (tn_engine_open(&o, &g->e, &m)) {
        fprintf(stderr, "tern bench: %s\n", m.text);
        tn_inproc_free(g->x);
        return -1;
    }
    tn_inproc_bind(g->x, g->e);
    return 0;
}

static void eng_close(eng *g)
{
    tn_engine_close(g->e);
    tn_inproc_free(g->x);
}

static int eng_apply(eng *g, const char *yaml)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    if (tn_def_parse("bench.yaml", yaml, strlen(yaml), &d, &m)) {
        fprintf(stderr, "tern bench: %s\n", m.text);
        return -1;
    }
    char *b;
    size_t n;
    tn_def_encode(d, &b, &n);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = n};
    tn_err err = tn_engine_call(g->e, &c);
    free(b);
    tn_def_free(d);
    return err ? -1 : 0;
}

/* Run until every instance is final. */
static void eng_drain(eng *g)
{
    tn_errmsg m = {{0}};
    for (;;) {
        tn_engine_stats st;
        tn_engine_run_until(g->e, 0, &m);
        tn_engine_stats_get(g->e, &st);
        if (st.live_workflows == 0 && tn_inproc_running(g->x) == 0)
            return;
        tn_engine_wait(g->e, 1000000);
    }
}

static char *yaml_independent(unsigned n)
{
    size_t cap = 64 + (size_t)n * 48;
    char *y = malloc(cap);
    size_t l = (size_t)snprintf(y, cap, "name: wide\ntasks:\n");
    for (unsigned i = 0; i < n; i++)
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop}\n", i);
    return y;
}

static char *yaml_chain(unsigned n)
{
    size_t cap = 64 + (size_t)n * 64;
    char *y = malloc(cap);
    size_t l = (size_t)snprintf(y, cap, "name: chain\ntasks:\n  - {name: t0, type: noop}\n");
    for (unsigned i = 1; i < n; i++)
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop, deps: [t%u]}\n", i,
                              i - 1);
    return y;
}

static double pct(int64_t *v, size_t n, double p)
{
    /* insertion sort is fine for the sample sizes here */
    for (size_t i = 1; i < n; i++) {
        int64_t x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[k < n ? k : n - 1];
}

/* The engine's events/s next to "the limit": a durable raw append of as many events in
 * as many commits, each hashed into the chain. The target is ratio >= 0.6. */
static void limit_line(const char *tmpl, const char *name, uint64_t evs, uint64_t commits,
                       double secs, double cpu_secs)
{
    double lim, lim_cpu;
    char rdir[4200], cname[128];
    snprintf(rdir, sizeof(rdir), "%s/raw-%s", tmpl, name);
    if (raw_append_opt(rdir, commits ? (size_t)(evs / commits) + 1 : 1000, (size_t)evs, 120, 0,
                       true, &lim, &lim_cpu))
        return;
    bench_line(name, (double)evs / secs, "events/s", lim);
    /* the same per CPU second: what other programs on the machine do not move */
    snprintf(cname, sizeof(cname), "%s_cpu", name);
    bench_line(cname, (double)evs / cpu_secs, "events/cpu_s", lim_cpu);
}

/* (a) one workflow of `wide` independent noop tasks */
static int engine_wide(const char *tmpl, unsigned wide)
{
    eng g;
    char *y = yaml_independent(wide);
    if (eng_open(&g, tmpl, "wide") || eng_apply(&g, y)) {
        free(y);
        return -1;
    }
    free(y);
    tn_engine_stats s0, s1;
    tn_engine_stats_get(g.e, &s0);
    int64_t t0 = tn_mono_ns(), c0 = cpu_ns();
    tn_cmd c = {.kind = TN_CMD_START, .workflow = "wide"};
    tn_engine_call(g.e, &c);
    eng_drain(&g);
    int64_t t1 = tn_mono_ns(), c1 = cpu_ns();
    tn_engine_stats_get(g.e, &s1);
    uint64_t evs = s1.events - s0.events, commits = s1.commits - s0.commits;
    eng_close(&g);
    double raw;
    char rdir[4200];
    snprintf(rdir, sizeof(rdir), "%s/raw-wide", tmpl);
    raw_append(rdir, commits ? (size_t)(evs / commits) + 1 : 1000, (size_t)evs, 120, &raw);
    double secs = (double)(t1 - t0) / 1e9;
    bench_line("engine.wide.tasks", wide / secs, "tasks/s", raw * wide / (double)evs);
    bench_line("engine.wide.events", (double)evs / secs, "events/s", raw);
    limit_line(tmpl, "engine.wide.limit", evs, commits, secs, (double)(c1 - c0) / 1e9);
    return 0;
}

/* (c) start -> first dispatch at low load: one workflow at a time */
static void engine_latency(eng *g, const char *tmpl, unsigned nlat)
{
    int64_t *lat = calloc(nlat, sizeof(int64_t));
    for (unsigned i = 0; i < nlat && lat; i++) {
        int64_t s = tn_mono_ns();
        tn_cmd sc = {.kind = TN_CMD_START, .workflow = "chain"};
        tn_engine_call(g->e, &sc); /* the start commits with the first dispatch decided */
        lat[i] = tn_mono_ns() - s;
        eng_drain(g);
    }
    if (!lat)
        return;
    /* baseline: one durable LMDB commit, what the decision cannot go below */
    double one_commit;
    char rdir[4200];
    snprintf(rdir, sizeof(rdir), "%s/raw-lat", tmpl);
    raw_append(rdir, 1, 500, 120, &one_commit);
    double base_us = 1e6 / one_commit;
    bench_line("engine.start_to_dispatch.p50_us", pct(lat, nlat, 0.5) / 1000.0, "us", base_us);
    bench_line("engine.start_to_dispatch.p99_us", pct(lat, nlat, 0.99) / 1000.0, "us", base_us);
    free(lat);
}

/* Start n workflows named `name`, stepping every 256 so the queue stays bounded. */
static void engine_start_many(eng *g, tn_cmd *cmds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        cmds[i] = (tn_cmd){.kind = TN_CMD_START, .workflow = "chain"};
        tn_engine_submit(g->e, &cmds[i]);
        if (i % 256 == 255 || i == n - 1)
            while (!cmds[i].done)
                tn_engine_step(g->e, NULL);
    }
}

/* (b) nwf workflows of 10 chained tasks, all started at once; then (c) */
static int engine_chains(const char *tmpl, unsigned nwf, unsigned nlat)
{
    eng g;
    char *y = yaml_chain(10);
    if (eng_open(&g, tmpl, "chains") || eng_apply(&g, y)) {
        free(y);
        return -1;
    }
    free(y);
    tn_engine_stats s0, s1;
    tn_engine_stats_get(g.e, &s0);
    int64_t t0 = tn_mono_ns(), c0 = cpu_ns();
    tn_cmd *cmds = calloc(nwf, sizeof(tn_cmd));
    if (cmds)
        engine_start_many(&g, cmds, nwf);
    free(cmds);
    eng_drain(&g);
    int64_t t1 = tn_mono_ns(), c1 = cpu_ns();
    tn_engine_stats_get(g.e, &s1);
    uint64_t evs = s1.events - s0.events, commits = s1.commits - s0.commits;
    double secs = (double)(t1 - t0) / 1e9, raw;
    char rdir[4200];
    snprintf(rdir, sizeof(rdir), "%s/raw-chains", tmpl);
    raw_append(rdir, commits ? (size_t)(evs / commits) + 1 : 1000, (size_t)evs, 120, &raw);
    bench_line("engine.chains.tasks", nwf * 10.0 / secs, "tasks/s",
               raw * nwf * 10.0 / (double)evs);
    bench_line("engine.chains.events", (double)evs / secs, "events/s", raw);
    limit_line(tmpl, "engine.chains.limit", evs, commits, secs, (double)(c1 - c0) / 1e9);
    engine_latency(&g, tmpl, nlat);
    eng_close(&g);
    return 0;
}

/* (d) master RSS after 100k and after 1M completed tasks (10-task chains) */
static int engine_rss(const char *tmpl, unsigned total)
{
    unsigned mark = total / 10;
    eng g;
    char *y = yaml_chain(10);
    if (eng_open(&g, tmpl, "rss") || eng_apply(&g, y)) {
        free(y);
        return -1;
    }
    free(y);
    long rss_mark = 0;
    for (unsigned done = 0; done < total; done += 10 * 1000) {
        static tn_cmd batch[1000];
        engine_start_many(&g, batch, 1000);
        eng_drain(&g);
        if (!rss_mark && done + 10000 >= mark)
            rss_mark = rss_kb();
    }
    long rss_end = rss_kb(), file_end = rss_kb_of("RssFile");
    eng_close(&g);
    char n1[64], n2[64], n3[64];
    snprintf(n1, sizeof(n1), "engine.rss_anon_kb.after_%uk", mark / 1000);
    snprintf(n2, sizeof(n2), "engine.rss_anon_kb.after_%uk", total / 1000);
    snprintf(n3, sizeof(n3), "engine.rss_file_kb.after_%uk", total / 1000);
    bench_line(n1, (double)rss_mark, "KiB", (double)rss_mark);
    bench_line(n2, (double)rss_end, "KiB", (double)rss_mark);
    bench_line(n3, (double)file_end, "KiB", (double)file_end);
    return 0;
}

/* (e) scale: one workflow of n noop tasks, per-task scheduling time against the 1k
 * figure. Shapes: wide (no deps), layered (rows of 100, each task on two of the row
 * above) and chain (each task on the one before). The store is not durable here
 * (no_sync), so what is measured is the engine's own work, not the disk's. */
static char *yaml_layered(unsigned n)
{
    const unsigned w = 100;
    size_t cap = 64 + (size_t)n * 72;
    char *y = malloc(cap);
    if (!y)
        return NULL;
    size_t l = (size_t)snprintf(y, cap, "name: layered\ntasks:\n");
    for (unsigned i = 0; i < n; i++) {
        if (i < w) {
            l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop}\n", i);
            continue;
        }
        unsigned row = i / w * w, a = i - w, b = row - w + (i - row + 1) % w;
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: noop, deps: [t%u, t%u]}\n",
                              i, a, b);
    }
    return y;
}

/* Placement as a master does it, on 64 slots: tasks beyond them wait in the queue (the
 * executor's ack of a result frees a slot). */
static unsigned scale_placed;
static tn_executor_ops scale_ops;

static bool scale_place(void *self, const tn_place_req *r, char *worker, size_t wlen, char *why,
                        size_t whylen)
{
    (void)self;
    (void)r;
    if (scale_placed >= 64) {
        snprintf(why, whylen, "all 64 slots are taken");
        return false;
    }
    scale_placed++;
    snprintf(worker, wlen, "bench");
    return true;
}

static void scale_ack(void *self, const tn_report *r)
{
    (void)self;
    if ((r->kind == TN_REPORT_RESULT || r->kind == TN_REPORT_KILL_RESULT) && scale_placed)
        scale_placed--;
}

/* CPU seconds to run one instance of `name` (applied from yaml) to its end; < 0 on
 * error. */
static double scale_run(const char *tmpl, const char *name, char *yaml, unsigned n, bool slots)
{
    eng g;
    char sub[64];
    snprintf(sub, sizeof(sub), "scale-%s-%u-%d", name, n, slots);
    if (!yaml)
        return -1;
    snprintf(g.dir, sizeof(g.dir), "%s/%s", tmpl, sub);
    char logs[4300];
    snprintf(logs, sizeof(logs), "%s/logs", g.dir);
    tn_errmsg m = {{0}};
    if (tn_inproc_new(logs, &g.x)) {
        free(yaml);
        return -1;
    }
    tn_executor ex = tn_inproc_executor(g.x);
    if (slots) {
        scale_ops = *ex.ops;
        scale_ops.place = scale_place;
        scale_ops.ack = scale_ack;
        ex.ops = &scale_ops;
        scale_placed = 0;
    }
    tn_engine_opts o = {
        .data_dir = g.dir,
        .log = {.create = true, .no_sync = true, .map_size = 1u << 30, .map_max = 64ull << 30},
        .executor = ex,
        .virtual_clock = true,
        .max_batch = 8192};
    if (tn_engine_open(&o, &g.e, &m)) {
        fprintf(stderr, "tern bench: %s\n", m.text);
        tn_inproc_free(g.x);
        free(yaml);
        return -1;
    }
    tn_inproc_bind(g.x, g.e);
    int rc = eng_apply(&g, yaml);
    free(yaml);
    int64_t t0 = cpu_ns();
    tn_cmd c = {.kind = TN_CMD_START, .workflow = name};
    if (!rc && tn_engine_call(g.e, &c) == TN_OK &&
        tn_engine_run_until(g.e, c.out_id, &m) != TN_WF_S_SUCCESS)
        rc = -1;
    double secs = (double)(cpu_ns() - t0) / 1e9;
    eng_close(&g);
    rm_rf(g.dir);
    return rc || c.err ? -1 : secs;
}

static int engine_scale(const char *tmpl, bool quick)
{
    static const char *const shapes[] = {"wide", "layered", "chain", "wide_64slots"};
    const unsigned sizes[] = {1000, 10000, quick ? 20000 : 100000};
    for (unsigned s = 0; s < 4; s++) {
        double base = 0;
        for (unsigned k = 0; k < 3; k++) {
            unsigned n = sizes[k];
            double runs[3];
            for (int r = 0; r < 3; r++) { /* the median of three */
                char *y = s == 1 ? yaml_layered(n) :
                          s == 2 ? yaml_chain(n) :
                                   yaml_independent(n);
                runs[r] = scale_run(tmpl, s == 3 ? "wide" : shapes[s], y, n, s == 3);
                if (runs[r] < 0)
                    return -1;
            }
            double lo = runs[0] < runs[1] ? runs[0] : runs[1];
            double hi = runs[0] < runs[1] ? runs[1] : runs[0];
            double secs = runs[2] < lo ? lo : runs[2] > hi ? hi : runs[2];
            double us = secs * 1e6 / n;
            if (k == 0)
                base = us;
            char name[64];
            snprintf(name, sizeof(name), "engine.scale.%s.%uk.us_per_task", shapes[s],
                     n / 1000);
            printf("BENCH name=%s value=%.2f unit=us baseline=%.2f ratio=%.2f\n", name, us,
                   base, base > 0 ? us / base : 0.0);
            fflush(stdout);
        }
    }
    return 0;
}

/* `only` (wide, chains, rss or NULL for all) keeps paired before/after runs short. */
static int bench_engine(const char *base, bool quick, bool scale, const char *only)
{
    char tmpl[4000];
    snprintf(tmpl, sizeof(tmpl), "%s/tern-bench-XXXXXX", base);
    if (!mkdtemp(tmpl))
        return tn_cli_fail("bench", "%s: cannot create a temporary directory: %m; pass --dir",
                           base);
    if (scale) {
        int rc = engine_scale(tmpl, quick);
        rm_rf(tmpl);
        return rc ? tn_cli_fail("bench", "engine scale run failed") : 0;
    }
    int rc = 0;
    if (!only || strcmp(only, "wide") == 0)
        rc = engine_wide(tmpl, quick ? 5000 : 100000);
    if (!rc && (!only || strcmp(only, "chains") == 0))
        rc = engine_chains(tmpl, quick ? 500 : 10000, quick ? 200 : 1000);
    if (!rc && (!only || strcmp(only, "rss") == 0))
        rc = engine_rss(tmpl, quick ? 100000 : 1000000);
    rm_rf(tmpl);
    return rc ? tn_cli_fail("bench", "engine setup failed") : 0;
}

/* ------------------------------------------------------------------------------ */
/* bench dispatch: a master in this process, a worker as a child process, over ipc */

#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include "ctl.h"
#include "master.h"
#include "proc.h"
#include "rpc.h"

extern char **environ;

typedef struct pull_arg {
    nng_socket s;
    unsigned n;
} pull_arg;

static void *pull_thread(void *p)
{
    pull_arg *a = p;
    for (unsigned i = 0; i < a->n; i++) {
        void *buf;
        size_t len;
        if (nng_recv(a->s, &buf, &len, NNG_FLAG_ALLOC) != 0)
            break;
        nng_free(buf, len);
    }
    return NULL;
}

/* Raw nng push/pull over ipc: one 128-byte message per nng message. */
static double raw_nng(const char *dir, unsigned n)
{
    char url[4300];
    snprintf(url, sizeof(url), "ipc://%s/raw.sock", dir);
    nng_socket push, pull;
    if (nng_pull0_open(&pull) || nng_listen(pull, url, NULL, 0) || nng_push0_open(&push) ||
        nng_dial(push, url, NULL, 0))
        return 0;
    pull_arg a = {pull, n};
    pthread_t th;
    pthread_create(&th, NULL, pull_thread, &a);
    char msg[128];
    memset(msg, 'x', sizeof(msg));
    int64_t t0 = tn_mono_ns();
    for (unsigned i = 0; i < n; i++)
        nng_send(push, msg, sizeof(msg), 0);
    pthread_join(th, NULL);
    int64_t t1 = tn_mono_ns();
    nng_close(push);
    nng_close(pull);
    return (double)n * 1e9 / (double)(t1 - t0);
}

/* Raw posix_spawn + wait of /bin/true, n times. */
static double raw_spawn(unsigned n)
{
    char *argv[] = {"/bin/true", NULL};
    int64_t t0 = tn_mono_ns();
    for (unsigned i = 0; i < n; i++) {
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) == 0)
            waitpid(pid, NULL, 0);
    }
    return (double)n * 1e9 / (double)(tn_mono_ns() - t0);
}

/* Raw contained spawn + wait of /bin/true, n times: each in a new session and, unless the
 * bench's worker runs without cgroups, a new v2 cgroup made before and removed after, as
 * the worker contains an attempt (tn_procs_run_bare). -1: no manager could be made. */
static double raw_spawn_contained(unsigned n)
{
    char name[64];
    snprintf(name, sizeof(name), "bench-raw-%d", (int)getpid());
    tn_proc_opts o = {.name = name, .cgroup_root = getenv("TERN_BENCH_NO_CGROUP") ? "" : NULL};
    tn_procs *p = NULL;
    tn_errmsg m = {{0}};
    if (tn_procs_new(&o, &p, &m) != TN_OK) {
        fprintf(stderr, "tern bench: no contained baseline: %s\n", m.text);
        return -1;
    }
    char *argv[] = {"/bin/true", NULL};
    int64_t t0 = tn_mono_ns();
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        int st;
        ok += tn_procs_run_bare(p, argv, environ, &st) == 0 && WIFEXITED(st) &&
              WEXITSTATUS(st) == 0;
    }
    double rate = (double)n * 1e9 / (double)(tn_mono_ns() - t0);
    tn_procs_free(p);
    if (ok != n) {
        fprintf(stderr, "tern bench: the contained baseline ran %u of %u\n", ok, n);
        return -1;
    }
    return rate;
}

static long proc_rss_kb(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    return (long)tn_proc_kb(p, "RssAnon");
}

static int ctl_call(const char *url, const char *cmd, tn_ctl_rep *rep, void **raw)
{
    tn_ctl_req r = {.cmd = tn_str_c(cmd)};
    tn_buf b = {0};
    tn_ctl_req_encode(&r, &b);
    size_t rl;
    tn_err e = tn_rpc_call(url, b.data, b.size, 5000, raw, &rl, NULL);
    tn_buf_free(&b);
    return e ? -1 : (tn_ctl_rep_decode(*raw, rl, rep) ? -1 : 0);
}

/* Progress, told by the engine's commit observer on the engine thread: the bench waits on
 * a condition variable instead of polling the engine's state from its own thread. One
 * workflow runs at a time, so counters say enough. */
typedef struct watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t finals;       /* workflow events into a final state, committed */
    uint64_t runnings;     /* task RUNNING events, committed */
    uint64_t running_task; /* the task of the last of them */
} watch;

static void watch_commit(void *arg, const tn_engine_event *evs, size_t n)
{
    watch *w = arg;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        if (evs[i].machine == TN_MACHINE_WORKFLOW && tn_sm_workflow.final[evs[i].to])
            w->finals++;
        if (evs[i].machine == TN_MACHINE_TASK && evs[i].event == TN_TASK_E_RUNNING) {
            w->runnings++;
            w->running_task = evs[i].task;
        }
    }
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void watch_set(tn_engine *e, void *ctx) /* a request: on the engine thread */
{
    tn_engine_observe(e, ctx ? watch_commit : NULL, ctx);
}

/* Wait until *counter passes `after`, at most timeout_ns (0: no bound). */
static bool watch_wait(watch *w, const uint64_t *counter, uint64_t after, int64_t timeout_ns)
{
    int64_t until = tn_now_ns() + timeout_ns;
    struct timespec ts = {until / 1000000000LL, until % 1000000000LL};
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (*counter <= after && rc != ETIMEDOUT)
        rc = timeout_ns ? pthread_cond_timedwait(&w->cv, &w->mu, &ts) :
                          pthread_cond_wait(&w->cv, &w->mu);
    bool ok = *counter > after;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static uint64_t watch_get(watch *w, const uint64_t *v)
{
    pthread_mutex_lock(&w->mu);
    uint64_t r = *v;
    pthread_mutex_unlock(&w->mu);
    return r;
}

/* Start a workflow and wait until its final state is committed. */
static uint64_t run_wf(tn_engine *e, watch *w, const char *name, int64_t *submit_ns)
{
    tn_cmd c = {.kind = TN_CMD_START, .workflow = name};
    uint64_t before = watch_get(w, &w->finals);
    if (submit_ns)
        *submit_ns = tn_now_ns();
    if (tn_engine_submit_wait(e, &c))
        return 0;
    watch_wait(w, &w->finals, before, 0);
    return c.out_id;
}

static int apply_yaml(tn_engine *e, const char *y)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    if (tn_def_parse("bench.yaml", y, strlen(y), &d, &m)) {
        fprintf(stderr, "tern bench: %s\n", m.text);
        return -1;
    }
    char *b;
    size_t n;
    tn_def_encode(d, &b, &n);
    tn_def_free(d);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = n};
    tn_err err = tn_engine_submit_wait(e, &c);
    free(b);
    return err ? -1 : 0;
}

typedef struct ev_times {
    unsigned machine, event;
    int64_t first, last;
    int n;
    const char *attr; /* optional int attr to read from the first match */
    int64_t attr_val;
} ev_times;

static int ev_cb(void *ctx, const tn_event *ev)
{
    ev_times *t = ctx;
    if (ev->machine != t->machine || ev->event != t->event)
        return 0;
    if (!t->n++)
        t->first = ev->at;
    t->last = ev->at;
    return 0;
}

static ev_times find_ev(tn_engine *e, uint64_t wf, unsigned machine, unsigned event)
{
    ev_times t = {machine, event, 0, 0, 0, NULL, 0};
    int fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(e)), wf, ev_cb, &t, &fr);
    return t;
}

typedef struct dsp {
    char tmpl[4000], murl[4300], mctl[4300], mdata[4300], wurl[4300], wdata[4300], wctl[4300];
    tn_master *m;
    tn_engine *e;
    pid_t wpid;
    watch w;
} dsp;

/* The master in this process, the worker a real process; wait until it joined. */
static int dispatch_up(dsp *d)
{
    tn_master_opts mo = {.data_dir = d->mdata,
                         .listen_url = d->murl,
                         .ctl_url = d->mctl,
                         .log = {.map_size = 1u << 30, .map_max = 64ull << 30}};
    tn_errmsg em = {{0}};
    if (tn_master_start(&mo, &d->m, &em))
        return tn_cli_fail("bench", "%s", em.text);
    d->e = tn_master_engine(d->m);
    pthread_mutex_init(&d->w.mu, NULL);
    pthread_cond_init(&d->w.cv, NULL);
    if (tn_engine_request(d->e, watch_set, &d->w, 10 * 1000000000LL) != TN_OK)
        return tn_cli_fail("bench", "the engine thread does not answer");
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[sl > 0 ? sl : 0] = 0;
    char *wargv[] = {self,
                     "worker",
                     "--master",
                     d->murl,
                     "--listen",
                     d->wurl,
                     "--data",
                     d->wdata,
                     "--ctl",
                     d->wctl,
                     "--name",
                     "bench",
                     "--slots",
                     "256",
                     "--heartbeat",
                     "200ms",
                     getenv("TERN_BENCH_NO_CGROUP") ? "--no-cgroup" : NULL,
                     NULL};
    setenv("TERN_LOG_LEVEL", "warn", 1);
    if (posix_spawn(&d->wpid, self, NULL, NULL, wargv, environ) != 0)
        return tn_cli_fail("bench", "cannot start a worker");
    for (int i = 0; i < 200; i++) {
        tn_ctl_rep rep;
        void *raw = NULL;
        bool up = ctl_call(d->mctl, "workers", &rep, &raw) == 0 && rep.json.len &&
                  memmem(rep.json.p, rep.json.len, "\"alive\":true", 12);
        free(raw);
        if (up)
            break;
        usleep(50000);
    }
    return 0;
}

static void dispatch_down(dsp *d)
{
    if (d->wpid > 0) {
        kill(d->wpid, SIGTERM);
        waitpid(d->wpid, NULL, 0);
    }
    if (d->m) {
        tn_engine_request(d->e, watch_set, NULL, 10 * 1000000000LL);
        tn_master_stop(d->m);
        pthread_mutex_destroy(&d->w.mu);
        pthread_cond_destroy(&d->w.cv);
    }
    rm_rf(d->tmpl);
}

/* (a) noop tasks master -> worker over ipc; (b) shell `true` tasks end to end */
static void dispatch_rates(dsp *d, bool quick)
{
    unsigned na = quick ? 2000 : 10000;
    char *y = yaml_independent(na);
    apply_yaml(d->e, y);
    free(y);
    int64_t t0 = tn_mono_ns();
    run_wf(d->e, &d->w, "wide", NULL);
    double noop_rate = na * 1e9 / (double)(tn_mono_ns() - t0);
    long rss10 = proc_rss_kb(d->wpid);
    unsigned rounds = quick ? 1 : 9; /* to 100k completed tasks */
    for (unsigned i = 0; i < rounds; i++)
        run_wf(d->e, &d->w, "wide", NULL);
    long rss100 = proc_rss_kb(d->wpid);
    double nng_rate = raw_nng(d->tmpl, quick ? 20000 : 100000);
    bench_line("dispatch.noop.tasks", noop_rate, "tasks/s", nng_rate);
    char n1[64], n2[64];
    snprintf(n1, sizeof(n1), "dispatch.worker_rss_anon_kb.after_%uk", na / 1000);
    snprintf(n2, sizeof(n2), "dispatch.worker_rss_anon_kb.after_%uk", na * (rounds + 1) / 1000);
    bench_line(n1, (double)rss10, "KiB", (double)rss10);
    bench_line(n2, (double)rss100, "KiB", (double)rss10);

    unsigned nb = quick ? 200 : 2000;
    size_t cap = 64 + (size_t)nb * 64;
    y = malloc(cap);
    size_t l = (size_t)snprintf(y, cap, "name: trues\ntasks:\n");
    for (unsigned i = 0; i < nb; i++)
        l += (size_t)snprintf(y + l, cap - l, "  - {name: t%u, type: shell, command: 'true'}\n",
                              i);
    apply_yaml(d->e, y);
    free(y);
    t0 = tn_mono_ns();
    run_wf(d->e, &d->w, "trues", NULL);
    double shell_rate = nb * 1e9 / (double)(tn_mono_ns() - t0);
    bench_line("dispatch.shell_true.tasks", shell_rate, "tasks/s", raw_spawn(nb));
    double contained = raw_spawn_contained(nb);
    if (contained > 0)
        bench_line("dispatch.shell_true.vs_contained.tasks", shell_rate, "tasks/s", contained);
}

/* (c) submit -> process started, one task at a time */
static void dispatch_latency(dsp *d, bool quick)
{
    apply_yaml(d->e, "name: one\ntasks:\n  - {name: t, type: shell, command: 'true'}\n");
    unsigned nc = quick ? 50 : 300;
    int64_t *lat = calloc(nc, sizeof(int64_t));
    for (unsigned i = 0; lat && i < nc; i++) {
        int64_t sub;
        uint64_t wf = run_wf(d->e, &d->w, "one", &sub);
        ev_times r = find_ev(d->e, wf, TN_MACHINE_TASK, TN_TASK_E_RUNNING);
        lat[i] = r.n ? r.first - sub : 0;
    }
    if (lat) {
        bench_line("dispatch.submit_to_started.p50_us", pct(lat, nc, 0.5) / 1000.0, "us", 2000);
        bench_line("dispatch.submit_to_started.p99_us", pct(lat, nc, 0.99) / 1000.0, "us",
                   10000);
        free(lat);
    }
}

/* One kill of the tree: from the kill to verified empty, minus the grace, in *out;
 * false when the task was not killed. */
static bool dispatch_kill_one(dsp *d, unsigned i, int64_t *out)
{
    uint64_t finals = watch_get(&d->w, &d->w.finals);
    uint64_t runnings = watch_get(&d->w, &d->w.runnings);
    tn_cmd sc = {.kind = TN_CMD_START, .workflow = "tree"};
    tn_engine_submit_wait(d->e, &sc);
    uint64_t tid = 0;
    if (watch_wait(&d->w, &d->w.runnings, runnings, 4 * 1000000000LL))
        tid = watch_get(&d->w, &d->w.running_task); /* the instance's one task */
    usleep(300000);                                 /* let the tree grow */
    tn_cmd kc = {.kind = TN_CMD_KILL_TASK, .id = tid};
    tn_engine_submit_wait(d->e, &kc);
    watch_wait(&d->w, &d->w.finals, finals, 0);
    /* the final state is committed: so are the kill's events before it */
    ev_times k1 = find_ev(d->e, sc.out_id, TN_MACHINE_TASK, TN_TASK_E_KILL);
    ev_times k2 = find_ev(d->e, sc.out_id, TN_MACHINE_TASK, TN_TASK_E_KILLED);
    if (!k1.n || !k2.n) {
        fprintf(stderr,
                "tern bench: kill run %u: the task was not killed (kill %d, "
                "killed %d, task %" PRIu64 ", %s)\n",
                i, k1.n, k2.n, tid, kc.msg);
        return false;
    }
    *out = k2.first - k1.first - 100000000LL;
    return true;
}

/* (d) kill of a 20-process tree */
static void dispatch_kill(dsp *d, bool quick)
{
    apply_yaml(d->e, "name: tree\ntasks:\n  - name: t\n    type: shell\n    kill_grace: 100ms\n"
                     "    command: |\n"
                     "      for i in 1 2 3 4 5; do (sleep 300 & sleep 300 & wait) & done\n"
                     "      for i in 1 2 3 4 5; do sleep 300 & done\n"
                     "      setsid sleep 300 &\n      ( (sleep 300 &) & )\n"
                     "      sh -c 'trap \"\" TERM; sleep 300' &\n      wait\n");
    unsigned nd = quick ? 3 : 10;
    int64_t *kl = calloc(nd, sizeof(int64_t));
    for (unsigned i = 0; kl && i < nd; i++) {
        if (!dispatch_kill_one(d, i, &kl[i])) {
            nd = i;
            break;
        }
    }
    if (kl && nd)
        bench_line("dispatch.kill_tree.p50_ms", pct(kl, nd, 0.5) / 1e6, "ms", 50);
    free(kl);
}

/* bench dispatch: a master in this process, a worker as a child process, over ipc */
static int bench_dispatch(const char *base, bool quick)
{
    dsp *d = calloc(1, sizeof(*d));
    if (!d)
        return tn_cli_fail("bench", "out of memory");
    snprintf(d->tmpl, sizeof(d->tmpl), "%s/tern-bench-XXXXXX", base);
    if (!mkdtemp(d->tmpl)) {
        free(d);
        return tn_cli_fail("bench", "%s: cannot create a temporary directory: %m", base);
    }
    tn_log_set_level(TN_LOG_WARN);
    snprintf(d->murl, sizeof(d->murl), "ipc://%s/m.sock", d->tmpl);
    snprintf(d->mctl, sizeof(d->mctl), "ipc://%s/m.ctl", d->tmpl);
    snprintf(d->mdata, sizeof(d->mdata), "%s/m", d->tmpl);
    snprintf(d->wurl, sizeof(d->wurl), "ipc://%s/w.sock", d->tmpl);
    snprintf(d->wctl, sizeof(d->wctl), "ipc://%s/w.ctl", d->tmpl);
    snprintf(d->wdata, sizeof(d->wdata), "%s/w", d->tmpl);
    int rc = dispatch_up(d);
    if (rc == 0) {
        dispatch_rates(d, quick);
        dispatch_latency(d, quick);
        dispatch_kill(d, quick);
    }
    dispatch_down(d);
    free(d);
    return rc;
}

int tn_cmd_bench(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "schedule") == 0)
        return tn_bench_schedule(argc - 1, argv + 1); /* tools/bench_schedule.c */
    const char *tmp = getenv("TMPDIR");
    bench_opts o = {.dir = tmp ? tmp : "/tmp", .events = 1000000};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_bench, argc, argv, &o, &a);
    if (rc)
        return rc;
    const char *name = a.n == 1 ? a.v[0] : NULL; /* points into argv */
    tn_opt_args_free(&a);
    if (!name)
        return tn_cli_usage("bench", "name one benchmark: store, engine or dispatch");
    if (o.scale && strcmp(name, "engine") != 0)
        return tn_cli_usage("bench", "--scale is an option of `tern bench engine` only");
    if (o.only &&
        (strcmp(name, "engine") != 0 ||
         (strcmp(o.only, "wide") && strcmp(o.only, "chains") && strcmp(o.only, "rss"))))
        return tn_cli_usage("bench", "--only is an option of `tern bench engine`: wide, "
                                     "chains or rss");
    if (strcmp(name, "store") == 0)
        return bench_store(o.dir, (size_t)o.events, o.quick);
    if (strcmp(name, "engine") == 0)
        return bench_engine(o.dir, o.quick, o.scale, o.only);
    if (strcmp(name, "dispatch") == 0)
        return bench_dispatch(o.dir, o.quick);
    if (strcmp(name, "latency") == 0)
        return tn_bench_latency(o.dir, o.quick);
    if (strcmp(name, "ha") == 0)
        return tn_bench_ha(o.dir, o.quick);
    return tn_cli_usage(
        "bench", "unknown benchmark \"%s\" (known: store, engine, dispatch, latency, ha)",
        name);
}

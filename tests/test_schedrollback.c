/* Schedules across a dropped batch: when the store is full, the commit holding a FIRE
 * fails and the batch is dropped; once the store has room again, the nominal times of
 * that batch are decided (fired) then, not lost. Found by `tern chaos schedule`. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "inproc.h"
#include "logread.h"
#include "store.h"
#include "testutil.h"

#define S     1000000000LL
#define T0    (1795000000LL * S)
#define MAPSZ (1u << 20)

static char *dir;
static tn_engine *E;
static tn_inproc *X;

static void open_at(int64_t now, uint64_t map)
{
    char logs[4200];
    snprintf(logs, sizeof(logs), "%s/logs", dir);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_inproc_new(logs, &X), TN_OK);
    tn_engine_opts o = {
        .data_dir = dir,
        .log = {.create = true, .no_sync = true, .map_size = map, .map_max = map},
        .executor = tn_inproc_executor(X),
        .virtual_clock = true,
        .start_ns = now};
    cr_assert_eq(tn_engine_open(&o, &E, &m), TN_OK, "%s", m.text);
    tn_inproc_bind(X, E);
    tn_engine_step(E, NULL);
}

static void close_engine(void)
{
    tn_engine_close(E);
    tn_inproc_free(X);
    E = NULL;
    X = NULL;
}

/* Fill the (closed) store to its last page with ballast in the meta db. Returns keys. */
static unsigned fill(void)
{
    tn_store_opts o = {.map_size = MAPSZ, .map_max = MAPSZ};
    tn_store *s;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_store_open(dir, &o, &s, &m), TN_OK, "%s", m.text);
    tn_batch *bt;
    cr_assert_eq(tn_batch_new(&bt), TN_OK);
    static char zeros[64 * 1024];
    unsigned keys = 0;
    for (size_t sz = sizeof(zeros); sz >= 64; sz /= 4)
        for (;;) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "ballast/%06u", keys);
            tn_batch_reset(bt);
            tn_batch_put(bt, TN_DB_META, key, (size_t)kl, zeros, sz);
            if (tn_store_commit(s, bt, &m) != TN_OK)
                break;
            keys++;
        }
    tn_batch_free(bt);
    tn_store_close(s);
    return keys;
}

/* In a child process (the engine has the store open here): delete the ballast in a
 * store grown by 1 MiB, then two more commits so the freed pages can be reused. */
static void free_in_child(unsigned keys)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        tn_store_opts o = {.map_size = 2 * MAPSZ, .map_max = 2 * MAPSZ};
        tn_store *s;
        tn_batch *bt;
        if (tn_store_open(dir, &o, &s, NULL) != TN_OK || tn_batch_new(&bt) != TN_OK)
            _exit(1);
        for (unsigned i = 0; i < keys; i++) {
            char key[32];
            int kl = snprintf(key, sizeof(key), "ballast/%06u", i);
            tn_batch_del(bt, TN_DB_META, key, (size_t)kl);
        }
        int bad = tn_store_commit(s, bt, NULL) != TN_OK;
        for (int i = 0; i < 2 && !bad; i++) {
            tn_batch_reset(bt);
            if (i == 0)
                tn_batch_put(bt, TN_DB_META, "ballast/flush", 13, "x", 1);
            else
                tn_batch_del(bt, TN_DB_META, "ballast/flush", 13);
            bad = tn_store_commit(s, bt, NULL) != TN_OK;
        }
        tn_batch_free(bt);
        tn_store_close(s);
        _exit(bad);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child could not free the store");
}

/* Step through simulated time until the clock reaches `until`. */
static void run_to(int64_t until)
{
    while (tn_engine_now(E) < until) {
        while (tn_engine_step(E, NULL) > 0)
            ;
        if (!tn_engine_advance(E))
            break;
    }
    while (tn_engine_step(E, NULL) > 0)
        ;
}

typedef struct nominals {
    int64_t v[64];
    int n;
} nominals;

static int on_fire(void *ctx, int64_t nominal, uint64_t instance, bool manual)
{
    nominals *f = ctx;
    (void)instance;
    if (!manual && f->n < 64)
        f->v[f->n++] = nominal;
    return 0;
}

static void setup(void)
{
    dir = tu_tmpdir();
    setenv("TERN_TZ", "UTC", 1);
}

static void teardown(void)
{
    if (E)
        close_engine();
    tu_rm_rf(dir);
    free(dir);
}

Test(schedrollback, fires_of_a_dropped_batch_are_decided_again, .init = setup, .fini = teardown)
{
    open_at(T0, MAPSZ);
    const char *y = "name: every\ntasks:\n  - {name: a, type: noop}\n";
    tn_def *d;
    char *b;
    size_t bl;
    cr_assert_eq(tn_def_parse("every.yaml", y, strlen(y), &d, NULL), TN_OK);
    cr_assert_eq(tn_def_encode(d, &b, &bl), TN_OK);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = bl};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
    free(b);
    tn_def_free(d);
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    snprintf(sp.cron, sizeof(sp.cron), "* * * * * ?");
    sp.catchup_ms = 3600 * 1000; /* late fires still run: nothing is skipped */
    c = (tn_cmd){.kind = TN_CMD_SCHED_SET, .workflow = "every", .sched = &sp};
    cr_assert_eq(tn_engine_call(E, &c), TN_OK, "%s", c.msg);
    cr_assert_eq(c.err, TN_OK, "%s", c.msg);
    tn_sched_spec_fini(&sp);
    close_engine();

    unsigned keys = fill();
    open_at(T0, MAPSZ);
    run_to(T0 + 3 * S); /* the fires of T0+1s.. fail to commit: the store is full */
    tn_sched_proj p;
    cr_assert_eq(tn_log_sched_get(tn_evlog_store(tn_engine_log(E)), "every", &p), TN_OK);
    cr_assert_eq(p.fires, 0, "the store was full: no fire could commit");
    tn_sched_proj_fini(&p);

    free_in_child(keys);
    run_to(T0 + 8 * S);
    nominals f = {.n = 0};
    cr_assert_eq(tn_log_fire_each(tn_evlog_store(tn_engine_log(E)), "every", 0, on_fire, &f),
                 TN_OK);
    cr_assert_geq(f.n, 6, "fired %d times", f.n);
    for (int i = 0; i < f.n; i++)
        cr_assert_eq(f.v[i], T0 + (i + 1) * S,
                     "fire %d is of T0+%" PRId64 "ns, not T0+%ds: a nominal time was lost", i,
                     f.v[i] - T0, i + 1);
}

/* `tern bench schedule`: how late a schedule's fires commit. N schedules (one per noop
 * workflow) on the cron "0 * * * * ?" all fire at each minute's start, in an engine with
 * a real clock and durable commits; the lateness of a fire is the wall time from its
 * nominal time to the commit of its FIRE and its instance's SUBMIT (one commit). The
 * baseline, in the same engine after the fires: the engine's start-to-dispatch time of an
 * instance started by TN_CMD_START (the command to its commit, first dispatch decided). */
#include <ftw.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "engine.h"
#include "inproc.h"
#include "opt.h"
#include "sm_gen.h"
#include "store.h"
#include "util.h"


typedef struct bs_opts {
    const char *dir;
    uint64_t schedules, minutes;
    bool quick;
} bs_opts;

static const tn_opt bs_table[] = {
    {"dir", 0, TN_OPT_STR, offsetof(bs_opts, dir), "DIR",
     .help = "where the temporary store goes (default: $TMPDIR or /tmp)"},
    {"schedules", 0, TN_OPT_U64, offsetof(bs_opts, schedules), "N",
     .help = "schedules, each on its own noop workflow (default 10000)", .min = 1,
     .max = 1000000},
    {"minutes", 0, TN_OPT_U64, offsetof(bs_opts, minutes), "M",
     .help = "minute boundaries to measure (default 2)", .min = 1, .max = 600},
    {"quick", 0, TN_OPT_FLAG, offsetof(bs_opts, quick), NULL,
     .help = "a short run: fires every second (\"* * * * * ?\"), 200 schedules and 3\n"
             "fires each unless --schedules and --minutes say otherwise"},
    {0}};

static const tn_opt_cmd bs_spec = {
    "bench schedule", NULL,
    "N schedules firing every minute on noop workflows, real clock: lateness of the\n"
    "committed FIRE+SUBMIT after the nominal time (p50, p99, max) next to the engine's\n"
    "start-to-dispatch p50 in the same run.\n",
    bs_table, .max_args = 0};

/* the commit time (wall clock) of each FIRE the engine committed, in seq order */
typedef struct fires {
    uint64_t *seq;
    int64_t *at;
    size_t n, cap, cap2;
} fires;

static void on_commit(void *arg, const tn_engine_event *evs, size_t n)
{
    fires *f = arg;
    int64_t now = tn_now_ns();
    for (size_t i = 0; i < n; i++) {
        if (evs[i].machine != TN_MACHINE_SCHEDULE || evs[i].event != TN_SCHED_E_FIRE)
            continue;
        if (!tn_grow((void **)&f->seq, &f->cap, f->n + 1, sizeof(*f->seq)) ||
            !tn_grow((void **)&f->at, &f->cap2, f->n + 1, sizeof(*f->at)))
            continue;
        f->seq[f->n] = evs[i].seq;
        f->at[f->n++] = now;
    }
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Submit n commands and step until every one is done. */
static tn_err call_all(tn_engine *e, tn_cmd *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tn_engine_submit(e, &c[i]);
    for (size_t i = 0; i < n; i++)
        while (!c[i].done)
            tn_engine_step(e, NULL);
    for (size_t i = 0; i < n; i++)
        if (c[i].err)
            return c[i].err;
    return TN_OK;
}

/* The definitions wf00000.. (noop) and their schedules. */
static int bs_setup(tn_engine *e, unsigned n, const char *cron)
{
    tn_cmd *c = calloc(n, sizeof(*c));
    char **bytes = calloc(n, sizeof(char *));
    char(*names)[16] = calloc(n, sizeof(*names));
    tn_sched_spec *sp = calloc(n, sizeof(*sp));
    tn_err err = c && bytes && names && sp ? TN_OK : TN_ERR_NOMEM;
    for (unsigned i = 0; !err && i < n; i++) {
        char y[200];
        snprintf(names[i], sizeof(names[i]), "bs%06u", i);
        snprintf(y, sizeof(y), "name: %s\ntasks:\n  - {name: a, type: noop}\n", names[i]);
        tn_def *d;
        size_t len = 0;
        if (!(err = tn_def_parse("bench.yaml", y, strlen(y), &d, NULL))) {
            err = tn_def_encode(d, &bytes[i], &len);
            tn_def_free(d);
        }
        c[i] = (tn_cmd){.kind = TN_CMD_APPLY_DEF, .def_bytes = bytes[i], .def_len = len};
    }
    if (!err)
        err = call_all(e, c, n);
    for (unsigned i = 0; !err && i < n; i++) {
        tn_sched_spec_init(&sp[i]);
        snprintf(sp[i].cron, sizeof(sp[i].cron), "%s", cron);
        c[i] = (tn_cmd){.kind = TN_CMD_SCHED_SET, .workflow = names[i], .sched = &sp[i]};
    }
    if (!err)
        err = call_all(e, c, n);
    for (unsigned i = 0; bytes && i < n; i++)
        free(bytes[i]);
    free(bytes);
    free(c);
    free(names);
    free(sp);
    if (err)
        fprintf(stderr, "tern bench schedule: setup failed: %s\n", tn_strerror(err));
    return err ? -1 : 0;
}

/* Pause every schedule: the baseline's starts must not share their steps with fires. */
static void bs_pause_all(tn_engine *e, unsigned n)
{
    tn_cmd *c = calloc(n, sizeof(*c));
    char(*names)[16] = calloc(n, sizeof(*names));
    for (unsigned i = 0; c && names && i < n; i++) {
        snprintf(names[i], sizeof(names[i]), "bs%06u", i);
        c[i] = (tn_cmd){.kind = TN_CMD_SCHED_PAUSE, .workflow = names[i]};
    }
    if (c && names)
        call_all(e, c, n);
    free(c);
    free(names);
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Run the engine on the real clock until `want` fires have committed or `until`. Each
 * step that commits fires is described on stderr: when it began after the nominal time,
 * its wall time and the CPU time of this thread in it (the rest is the disk, or waiting
 * for a CPU). */
static void bs_run(tn_engine *e, const fires *f, size_t want, int64_t until, int64_t period)
{
    while (f->n < want && tn_now_ns() < until) {
        size_t had = f->n;
        tn_engine_stats s0, s1;
        tn_engine_stats_get(e, &s0);
        int64_t w0 = tn_now_ns(), c0 = thread_cpu_ns();
        tn_engine_step(e, NULL);
        tn_engine_stats_get(e, &s1);
        if (f->n > had)
            fprintf(stderr,
                    "tern bench schedule: %zu fires (%" PRIu64 " events) in a step that "
                    "began %.1f ms after their time: %.1f ms wall, %.1f ms CPU\n",
                    f->n - had, s1.events - s0.events, (double)(w0 % period) / 1e6,
                    (double)(tn_now_ns() - w0) / 1e6, (double)(thread_cpu_ns() - c0) / 1e6);
        tn_engine_wait(e, 20 * 1000000LL);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_sorted(const int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[k < n ? k : n - 1];
}

/* The lateness of each fire: its commit time minus its nominal time, from the log. */
static size_t bs_lateness(tn_engine *e, const fires *f, int64_t *out)
{
    tn_store *s = tn_evlog_store(tn_engine_log(e));
    tn_rtxn *t;
    size_t n = 0, j = 0;
    if (tn_store_read_begin(s, &t) != TN_OK)
        return 0;
    tn_cursor *c;
    tn_event *ev = malloc(sizeof(*ev));
    if (ev && tn_cursor_open(t, TN_DB_EVENTS, &c) == TN_OK) {
        tn_val k, v;
        for (tn_err r = tn_cursor_first(c, &k, &v); r == TN_OK && j < f->n;
             r = tn_cursor_next(c, &k, &v)) {
            if (tn_event_decode(v.data, v.len, ev) != TN_OK ||
                ev->machine != TN_MACHINE_SCHEDULE || ev->event != TN_SCHED_E_FIRE)
                continue;
            int64_t nominal;
            while (j < f->n && f->seq[j] < ev->seq)
                j++;
            if (j < f->n && f->seq[j] == ev->seq && tn_event_int(ev, "nominal", &nominal))
                out[n++] = f->at[j] - nominal;
        }
        tn_cursor_close(c);
    }
    free(ev);
    tn_store_read_end(t);
    return n;
}

/* The baseline: nb starts of one noop workflow, each to its commit, one at a time. */
static double bs_baseline(tn_engine *e, unsigned nb)
{
    int64_t *lat = calloc(nb, sizeof(*lat));
    for (unsigned i = 0; lat && i < nb; i++) {
        int64_t t0 = tn_mono_ns();
        tn_cmd sc = {.kind = TN_CMD_START, .workflow = "bs000000"};
        tn_engine_call(e, &sc);
        lat[i] = tn_mono_ns() - t0;
        if (sc.out_id)
            tn_engine_run_until(e, sc.out_id, NULL);
    }
    if (!lat)
        return 0;
    qsort(lat, nb, sizeof(*lat), cmp_i64);
    double p50 = pct_sorted(lat, nb, 0.5);
    free(lat);
    return p50;
}

static void line(const char *name, double ms, double base_ms)
{
    printf("BENCH name=%s value=%.2f unit=ms baseline=%.2f ratio=%.1f\n", name, ms, base_ms,
           base_ms > 0 ? ms / base_ms : 0.0);
}

static int bs_measure(tn_engine *e, unsigned n, unsigned rounds, const char *cron,
                      int64_t period)
{
    fires f = {0};
    tn_engine_observe(e, on_commit, &f);
    int64_t first = (tn_now_ns() / period + 1) * period;
    fprintf(stderr, "tern bench schedule: %u schedules on \"%s\", %u fires each from %.1fs\n",
            n, cron, rounds, (double)(first - tn_now_ns()) / 1e9);
    bs_run(e, &f, (size_t)n * rounds, first + (int64_t)rounds * period + 30 * 1000000000LL,
           period);
    tn_engine_observe(e, NULL, NULL);
    int64_t *lat = calloc(f.n + 1, sizeof(*lat));
    size_t nl = lat ? bs_lateness(e, &f, lat) : 0;
    bs_pause_all(e, n);
    double base = bs_baseline(e, 200) / 1e6;
    free(f.seq);
    free(f.at);
    if (nl < (size_t)n * rounds) {
        free(lat);
        fprintf(stderr, "tern bench schedule: %zu of %zu fires committed\n", nl,
                (size_t)n * rounds);
        return -1;
    }
    qsort(lat, nl, sizeof(*lat), cmp_i64);
    line("schedule.lateness.p50", pct_sorted(lat, nl, 0.5) / 1e6, base);
    line("schedule.lateness.p99", pct_sorted(lat, nl, 0.99) / 1e6, base);
    line("schedule.lateness.max", (double)lat[nl - 1] / 1e6, base);
    fflush(stdout);
    free(lat);
    return 0;
}

int tn_bench_schedule(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    bs_opts o = {.dir = tmp ? tmp : "/tmp"};
    tn_opt_args a;
    int rc = tn_opt_cli(&bs_spec, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a);
    const char *cron = o.quick ? "* * * * * ?" : "0 * * * * ?";
    int64_t period = (o.quick ? 1LL : 60LL) * 1000000000LL;
    unsigned n = o.schedules ? (unsigned)o.schedules : o.quick ? 200 : 10000;
    unsigned rounds = o.minutes ? (unsigned)o.minutes : o.quick ? 3 : 2;
    char dir[4000], logs[4100];
    snprintf(dir, sizeof(dir), "%s/tern-bench-XXXXXX", o.dir);
    if (!mkdtemp(dir))
        return tn_cli_fail("bench", "%s: cannot create a temporary directory: %m; pass --dir",
                           o.dir);
    snprintf(logs, sizeof(logs), "%s/logs", dir);
    tn_inproc *x = NULL;
    tn_engine *e = NULL;
    tn_errmsg m = {{0}};
    tn_engine_opts eo = {.data_dir = dir,
                         .log = {.create = true, .map_size = 1u << 30, .map_max = 64ull << 30},
                         .max_batch = 8192};
    rc = tn_inproc_new(logs, &x) ? -1 : 0;
    if (!rc) {
        eo.executor = tn_inproc_executor(x);
        rc = tn_engine_open(&eo, &e, &m) ? -1 : 0;
        if (rc)
            fprintf(stderr, "tern bench schedule: %s\n", m.text);
    }
    if (!rc) {
        tn_inproc_bind(x, e);
        rc = bs_setup(e, n, cron);
    }
    if (!rc)
        rc = bs_measure(e, n, rounds, cron, period);
    tn_engine_close(e);
    tn_inproc_free(x);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return rc ? 1 : 0;
}

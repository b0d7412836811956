/* `tern chaos`: the schedules of the schedule scenario, and invariant 7 (every scenario):
 * each schedule decided each of its nominal times exactly once (schedcheck.h).
 *
 * The schedules are set through the engine on the master's store before the master first
 * starts (the SET's "after" is then), so the whole run of the master, crashes included,
 * is what fires them. They end (their window's end) a second before the fault window
 * closes, so the cluster can settle: every time they had is then due and decided. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "cli.h"
#include "engine.h"
#include "inproc.h"
#include "schedcheck.h"
#include "store.h"

typedef struct sdef {
    const char *name, *cron, *overlap;
    int64_t catchup_ms;
    const char *yaml;
} sdef;

/* Every second or two, with each overlap policy; runs longer than the period where an
 * overlap policy has something to decide. */
static const sdef sdefs[] = {
    {"chs_every", "* * * * * ?", "allow_all", 60000,
     "name: chs_every\n"
     "description: fired every second, nothing overlaps\n"
     "tasks:\n"
     "  - {name: a, type: noop, duration: 200ms}\n"},
    {"chs_skip", "* * * * * ?", "skip", 5000,
     "name: chs_skip\n"
     "description: fired every second, runs 1.5s; every other fire is skipped\n"
     "tasks:\n"
     "  - name: a\n"
     "    type: shell\n"
     "    command: sleep 1.5\n"},
    {"chs_buffer", "*/2 * * * * ?", "buffer_one", 10000,
     "name: chs_buffer\n"
     "description: fired every 2s, runs 3s; one fire waits, the next is skipped\n"
     "tasks:\n"
     "  - {name: a, type: noop, duration: 3s}\n"},
    {"chs_cancel", "*/2 * * * * ?", "cancel_other", 5000,
     "name: chs_cancel\n"
     "description: fired every 2s, runs 3s; each fire stops the one before\n"
     "tasks:\n"
     "  - name: a\n"
     "    type: shell\n"
     "    command: sleep 3\n"},
    {"chs_tight", "*/2 * * * * ?", "allow_all", 5000,
     "name: chs_tight\n"
     "description: fired every 2s with the smallest catchup window (5s); later fires are "
     "skipped\n"
     "tasks:\n"
     "  - {name: a, type: noop, duration: 100ms}\n"
     "  - name: b\n"
     "    type: shell\n"
     "    deps: [a]\n"
     "    command: 'true'\n"},
};
#define NSDEFS (sizeof(sdefs) / sizeof(sdefs[0]))

static int seed_def(run *r, tn_engine *e, const char *yaml)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    if (tn_def_parse("chaos.yaml", yaml, strlen(yaml), &d, &m)) {
        chaos_say(r, "schedule scenario: a definition does not parse: %s", m.text);
        return 1;
    }
    char *b = NULL;
    size_t n = 0;
    tn_err err = tn_def_encode(d, &b, &n);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = n};
    if (!err)
        err = tn_engine_call(e, &c);
    free(b);
    tn_def_free(d);
    if (err || c.err)
        chaos_say(r, "schedule scenario: cannot apply a definition: %s", c.msg);
    return err || c.err ? 1 : 0;
}

static int seed_sched(run *r, tn_engine *e, const sdef *sd, int64_t end_ns)
{
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    snprintf(sp.cron, sizeof(sp.cron), "%s", sd->cron);
    snprintf(sp.tz, sizeof(sp.tz), "UTC");
    sp.end_ns = end_ns;
    sp.catchup_ms = sd->catchup_ms;
    tn_err err = tn_overlap_parse(sd->overlap, &sp.overlap);
    tn_cmd c = {.kind = TN_CMD_SCHED_SET, .workflow = sd->name, .sched = &sp};
    if (!err)
        err = tn_engine_call(e, &c);
    tn_sched_spec_fini(&sp);
    if (err || c.err) {
        chaos_say(r, "schedule scenario: cannot set the schedule of %s: %s", sd->name, c.msg);
        return 1;
    }
    return 0;
}

int schedrun_seed(run *r)
{
    if (r->s.scenario != SC_SCHEDULE)
        return 0;
    char dir[PATH_MAX + 16], logs[PATH_MAX + 32];
    daemon_store_dir(r, 0, dir, sizeof(dir));
    snprintf(logs, sizeof(logs), "%s/seed-logs", r->dir);
    tn_inproc *x = NULL;
    tn_engine *e = NULL;
    tn_errmsg m = {{0}};
    if (tn_mkdir_p(dir) != 0 || tn_inproc_new(logs, &x))
        return tn_cli_fail("chaos", "%s: cannot prepare the master's store: %m", dir);
    tn_engine_opts o = {.data_dir = dir,
                        .log = {.create = true, .map_max = r->disk[0].map_max},
                        .executor = tn_inproc_executor(x),
                        .master_id = "chaos-seed"};
    if (tn_engine_open(&o, &e, &m)) {
        tn_inproc_free(x);
        return tn_cli_fail("chaos", "%s: cannot open the master's store: %s", dir, m.text);
    }
    tn_inproc_bind(x, e);
    /* whole seconds: the window's end is itself a nominal time of every cron here */
    int64_t end = (tn_now_ns() + r->s.duration_ms * 1000000LL) / 1000000000LL * 1000000000LL -
                  1000000000LL;
    int rc = 0;
    for (size_t i = 0; i < NSDEFS && !rc; i++)
        rc = seed_def(r, e, sdefs[i].yaml) || seed_sched(r, e, &sdefs[i], end);
    tn_engine_close(e);
    tn_inproc_free(x);
    r->sched_end_ns = end;
    return rc;
}

/* ---- invariant 7 ---------------------------------------------------------------------- */

static void on_viol(void *ctx, uint64_t seq, const char *schedule, const char *what)
{
    chaos_violation(ctx, 7, seq, 0, 0, "schedule of %s: %s", schedule, what);
}

void schedrun_check(run *r, tn_store *s)
{
    chaos_schedchk *c = chaos_schedchk_new(on_viol, r);
    tn_rtxn *t;
    if (c && tn_store_read_begin(s, &t) == TN_OK) {
        tn_cursor *cur;
        if (tn_cursor_open(t, TN_DB_EVENTS, &cur) == TN_OK) {
            tn_val k, v;
            tn_event *ev = malloc(sizeof(*ev));
            for (tn_err e = tn_cursor_first(cur, &k, &v); ev && e == TN_OK;
                 e = tn_cursor_next(cur, &k, &v))
                if (tn_event_decode(v.data, v.len, ev) == TN_OK)
                    chaos_schedchk_event(c, ev);
            free(ev);
            tn_cursor_close(cur);
        }
        tn_store_read_end(t);
    }
    /* every daemon is stopped: what the master had due it decided */
    chaos_schedchk_stats st;
    chaos_schedchk_finish(c, tn_now_ns(), &st);
    snprintf(r->inv_note[7], sizeof(r->inv_note[7]),
             "%" PRIu64 " schedules, %" PRIu64 " nominal times: %" PRIu64 " fired, %" PRIu64
             " skipped, %" PRIu64 " buffered (%" PRIu64 " fired later, %" PRIu64
             " pending), %" PRIu64 " not due (paused); %" PRIu64 " manual",
             st.schedules, st.nominal, st.fired, st.skipped, st.buffered, st.buffered_fired,
             st.pending, st.not_due, st.manual);
    r->inv_count[7] = st.nominal;
}

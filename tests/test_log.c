/* Tests of the event log: table checks at append, seq and chain assignment, group
 * commit, discard, reopen, projections and a full store; and the readers of the
 * committed log (logread.h). */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evlog.h"
#include "log.h"
#include "logread.h"
#include "map.h"
#include "replay.h"
#include "sm_gen.h"
#include "store.h"
#include "util.h"
#include "testutil.h"

static char *dir;
static tn_evlog *lg;
static tn_errmsg msg;

static void setup(void)
{
    dir = tu_tmpdir();
    tn_evlog_opts o = {.create = true};
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_OK, "%s", msg.text);
}

static void teardown(void)
{
    tn_evlog_close(lg);
    tu_rm_rf(dir);
    free(dir);
}

static tn_err add(unsigned machine, unsigned event, uint64_t wf, uint64_t task)
{
    tn_event ev;
    tn_event_init(&ev, machine, event, wf, task);
    ev.actor = TN_STR("user:test");
    if (machine == TN_MACHINE_TASK && event == TN_TASK_E_SUBMIT)
        tn_event_set_str(&ev, "name", "t");
    return tn_evlog_add(lg, &ev, &msg);
}

static void verify_log(void)
{
    tn_replay_report rep;
    tn_replay_opts o = {.verify_chain = true, .compare = true};
    cr_assert_eq(tn_replay_run(tn_evlog_store(lg), &o, &rep), TN_OK);
    cr_assert_eq(rep.err, TN_OK, "replay: seq %llu: %s", (unsigned long long)rep.bad_seq,
                 rep.why);
}

TestSuite(evlog, .init = setup, .fini = teardown);

Test(evlog, genesis_event)
{
    /* a new store starts with the system INIT event */
    cr_assert_eq(tn_evlog_last_seq(lg), 1);
    verify_log();
}

Test(evlog, legal_events_fill_from_to_and_seq)
{
    uint64_t wf = tn_evlog_new_wf_id(lg);
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(ev.from, TN_SM_NEW);
    cr_assert_eq(ev.to, TN_WF_S_SUBMITTED_SUCCESS);
    cr_assert_eq(ev.seq, 2);
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK);
    cr_assert_eq(ev.from, TN_WF_S_SUBMITTED_SUCCESS);
    cr_assert_eq(ev.to, TN_WF_S_RUNNING_EXECUTION);
    cr_assert_eq(ev.seq, 3);
    /* pending state is visible to the writer before the commit */
    tn_wf_proj w;
    cr_assert_eq(tn_evlog_wf(lg, wf, &w), TN_OK);
    cr_assert_eq(w.state, TN_WF_S_RUNNING_EXECUTION);
    cr_assert_eq(tn_evlog_pending(lg), 2);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), 3);
    verify_log();
}

Test(evlog, illegal_event_refused_and_nothing_added)
{
    uint64_t wf = tn_evlog_new_wf_id(lg), t = tn_evlog_new_task_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0), TN_OK);
    /* START before SUBMIT of a task, SUCCEEDED of a task that does not exist */
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, wf, t), TN_ERR_ILLEGAL);
    cr_assert(strstr(msg.text, "illegal in state NEW"), "%s", msg.text);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, t), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_DISPATCH, wf, t), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, t), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, wf, t), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    uint64_t last = tn_evlog_last_seq(lg);
    /* a late ACCEPTED and a duplicate result never move SUCCESS backwards */
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, t), TN_ERR_ILLEGAL);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, wf, t), TN_ERR_ILLEGAL);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_FAILED, wf, t), TN_ERR_ILLEGAL);
    cr_assert_eq(tn_evlog_pending(lg), 0);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    cr_assert_eq(tn_evlog_last_seq(lg), last);
    tn_task_proj p;
    cr_assert_eq(tn_evlog_task(lg, t, &p), TN_OK);
    cr_assert_eq(p.state, TN_TASK_S_SUCCESS);
    verify_log();
}

Test(evlog, malformed_events_refused)
{
    tn_event ev;
    tn_event_init(&ev, 7, 0, 1, 0);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_ERR_INVAL);
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, 200, 1, 0);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_ERR_INVAL);
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 0, 0); /* no wf id */
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_ERR_INVAL);
    tn_event_init(&ev, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, 1, 0); /* no task id */
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_ERR_INVAL);
    /* a system event without the attrs its projection needs */
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_TASKGROUP_SET, 0, 0);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_ERR_INVAL);
    cr_assert_eq(tn_evlog_pending(lg), 0);
    /* a task may not change workflow */
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 1, 0), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, 1, 5), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_DISPATCH, 2, 5), TN_ERR_INVAL);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    verify_log();
}

Test(evlog, discard_restores_state)
{
    uint64_t wf = tn_evlog_new_wf_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0), TN_OK);
    tn_evlog_discard(lg);
    tn_wf_proj w;
    cr_assert_eq(tn_evlog_wf(lg, wf, &w), TN_OK);
    cr_assert_eq(w.state, TN_WF_S_SUBMITTED_SUCCESS);
    /* and the same event is legal again, with the same seq */
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK);
    cr_assert_eq(ev.seq, 3);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    verify_log();
}

Test(evlog, reopen_keeps_everything)
{
    uint64_t wf = tn_evlog_new_wf_id(lg), t = tn_evlog_new_task_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0), TN_OK);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, t), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_DISPATCH, wf, t), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, wf, t), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    uint64_t last = tn_evlog_last_seq(lg);
    /* uncommitted work is lost at close, by design */
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, t), TN_OK);
    tn_evlog_close(lg);
    tn_evlog_opts o = {0};
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), last);
    tn_task_proj p;
    cr_assert_eq(tn_evlog_task(lg, t, &p), TN_OK);
    cr_assert_eq(p.state, TN_TASK_S_DISPATCH);
    cr_assert_eq(p.wf, wf);
    cr_assert_str_eq(p.name, "t");
    /* the chain continues across the reopen; new ids never reuse committed ones */
    cr_assert_gt(tn_evlog_new_task_id(lg), t);
    cr_assert_gt(tn_evlog_new_wf_id(lg), wf);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_RUNNING, wf, t), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    verify_log();
}

Test(evlog, finished_instances_stay_queryable)
{
    uint64_t wf = tn_evlog_new_wf_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0), TN_OK);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_STOP, wf, 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    /* final: out of the cache, still in the store, and RERUN is checked against it */
    tn_wf_proj w;
    cr_assert_eq(tn_evlog_wf(lg, wf, &w), TN_OK);
    cr_assert_eq(w.state, TN_WF_S_STOP);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0), TN_ERR_ILLEGAL);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_RERUN, wf, 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    cr_assert_eq(tn_evlog_wf(lg, wf, &w), TN_OK);
    cr_assert_eq(w.state, TN_WF_S_SUBMITTED_SUCCESS);
    cr_assert_eq(w.ended_at, 0);
    cr_assert_eq(tn_evlog_wf(lg, wf + 100, &w), TN_ERR_NOENT);
    verify_log();
}

static tn_err add_hint(unsigned event, uint64_t wf, uint64_t task, void **hint, tn_event *ev)
{
    tn_event_init(ev, TN_MACHINE_TASK, event, wf, task);
    ev->actor = TN_STR("user:test");
    if (event == TN_TASK_E_SUBMIT)
        tn_event_set_str(ev, "name", "t");
    return tn_evlog_add_hint(lg, ev, hint, &msg);
}

/* A caller's handle outlives the log's projection (evicted when final, its memory then
 * given to a new task): the log must see that it is stale and find the right state. */
Test(evlog, a_stale_hint_finds_the_instance_not_the_one_now_in_its_place)
{
    uint64_t wf = tn_evlog_new_wf_id(lg), t1 = tn_evlog_new_task_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0), TN_OK);
    void *h1 = NULL, *h2 = NULL;
    tn_event ev;
    cr_assert_eq(add_hint(TN_TASK_E_SUBMIT, wf, t1, &h1, &ev), TN_OK);
    cr_assert_not_null(h1);
    cr_assert_eq(add_hint(TN_TASK_E_FAILED, wf, t1, &h1, &ev), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    /* t1 is final and left the cache; t2 takes its place in memory */
    uint64_t t2 = tn_evlog_new_task_id(lg);
    cr_assert_eq(add_hint(TN_TASK_E_SUBMIT, wf, t2, &h2, &ev), TN_OK);
    cr_assert_eq(h2, h1, "the freed projection is reused: the case under test");
    /* t1's old handle now points at t2's projection */
    cr_assert_eq(add_hint(TN_TASK_E_FORCE_SUCCESS, wf, t1, &h1, &ev), TN_OK, "%s", msg.text);
    cr_assert_eq(ev.from, TN_TASK_S_FAILURE);
    cr_assert_neq(h1, h2);
    /* and t1's handle, now current, is used for it while t2 is untouched */
    cr_assert_eq(add_hint(TN_TASK_E_DISPATCH, wf, t2, &h2, &ev), TN_OK, "%s", msg.text);
    cr_assert_eq(ev.from, TN_TASK_S_SUBMITTED_SUCCESS);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    tn_task_proj p;
    cr_assert_eq(tn_evlog_task(lg, t1, &p), TN_OK);
    cr_assert_eq(p.state, TN_TASK_S_FORCED_SUCCESS);
    cr_assert_eq(tn_evlog_task(lg, t2, &p), TN_OK);
    cr_assert_eq(p.state, TN_TASK_S_SUBMITTED_SUCCESS);
    verify_log();
}

Test(evlog, system_projections)
{
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_TASKGROUP_SET, 0, 0);
    tn_event_set_str(&ev, "name", "db_writers");
    tn_event_set_int(&ev, "slots", 3);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_DEF_APPLIED, 0, 0);
    tn_event_set_str(&ev, "name", "etl");
    tn_event_set_int(&ev, "version", 1);
    tn_event_set_bin(&ev, "def", "\x91\x01", 2);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK);
    tn_rtxn *t;
    tn_val v;
    cr_assert_eq(tn_store_read_begin(tn_evlog_store(lg), &t), TN_OK);
    cr_assert_eq(tn_store_get(t, TN_DB_META, "tg/db_writers", 13, &v), TN_OK);
    cr_assert_eq(v.len, 8);
    uint8_t k[80];
    size_t kl = tn_proj_def_key("etl", 1, k);
    cr_assert_eq(tn_store_get(t, TN_DB_DEFS, k, kl, &v), TN_OK);
    cr_assert_eq(v.len, 2);
    tn_store_read_end(t);
    verify_log();
}

/* The store refuses new work when its map is full; nothing accepted is lost. */
Test(evlog, full_store_refuses_and_loses_nothing)
{
    tn_evlog_close(lg);
    tu_rm_rf(dir);
    tn_evlog_opts o = {.create = true, .map_size = 1 << 20, .map_max = 1 << 20};
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_OK, "%s", msg.text);
    uint64_t committed = 0;
    tn_err e = TN_OK;
    char pad[900];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = 0;
    for (int round = 0; round < 100000 && e == TN_OK; round++) {
        uint64_t wf = tn_evlog_new_wf_id(lg);
        tn_event ev;
        tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0);
        tn_event_set_str(&ev, "pad", pad);
        cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK);
        e = tn_evlog_commit(lg, &msg);
        if (e == TN_OK)
            committed = tn_evlog_last_seq(lg);
    }
    cr_assert_eq(e, TN_ERR_FULL, "got %s: %s", tn_errname(e), msg.text);
    cr_assert(strstr(msg.text, "data.mdb"), "the message names the file: %s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), committed);
    cr_assert_eq(tn_evlog_pending(lg), 0);
    verify_log();
    /* and after reopening, with room to grow, work goes on */
    tn_evlog_close(lg);
    tn_evlog_opts o2 = {.map_max = 64 << 20};
    cr_assert_eq(tn_evlog_open(dir, &o2, &lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), committed);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, tn_evlog_new_wf_id(lg), 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    verify_log();
}

/* --- pipelined commits: a batch built while the one before is written ------------- */

/* Add `n` workflow SUBMITs (new instances; ids into ids[] when given), each padded. */
static void add_wfs(size_t n, uint64_t *ids, const char *pad)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t wf = tn_evlog_new_wf_id(lg);
        if (ids)
            ids[i] = wf;
        tn_event ev;
        tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0);
        if (pad)
            tn_event_set_str(&ev, "pad", pad);
        cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
    }
}

/* Workflow `wf` was started, the log verifies (every event chained to the one before,
 * projections as replayed), and reopened with `o` it verifies its chain and ends at
 * `last`. */
static void started_and_reopened(uint64_t wf, const tn_evlog_opts *o, uint64_t last)
{
    tn_wf_proj w;
    cr_assert_eq(tn_evlog_wf(lg, wf, &w), TN_OK);
    cr_assert_eq(w.state, TN_WF_S_RUNNING_EXECUTION);
    verify_log();
    tn_evlog_close(lg);
    cr_assert_eq(tn_evlog_open(dir, o, &lg, &msg), TN_OK, "the chain verifies at open: %s",
                 msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), last);
}

Test(evlog, a_started_commit_is_durable_only_after_wait_and_the_next_batch_chains_to_it)
{
    tn_evlog_close(lg);
    tu_rm_rf(dir);
    tn_evlog_opts o = {.create = true, .checkpoint_every = 100};
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_OK, "%s", msg.text);
    uint64_t s0 = tn_evlog_last_seq(lg), ids[600];
    add_wfs(600, ids, NULL); /* big enough to go to the committer thread */
    cr_assert_eq(tn_evlog_commit_start(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert(tn_evlog_inflight(lg), "a big batch without system events stays in flight");
    cr_assert_eq(tn_evlog_last_seq(lg), s0, "not durable before the wait");
    /* the next batch builds on it: new instances, and the first batch's advanced */
    add_wfs(400, NULL, NULL);
    for (size_t i = 0; i < 100; i++)
        cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, ids[i], 0), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_pending(lg), 500);
    cr_assert_eq(tn_evlog_commit_wait(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_not(tn_evlog_inflight(lg));
    cr_assert_eq(tn_evlog_last_seq(lg), s0 + 600);
    /* a second start while nothing is in flight, then the plain commit waits for it */
    cr_assert_eq(tn_evlog_commit_start(lg, &msg), TN_OK, "%s", msg.text);
    add_wfs(10, NULL, NULL);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), s0 + 1110);
    started_and_reopened(ids[0], &o, s0 + 1110);
}

/* Open a new log at `dir` whose handed-over commits each wait `ms` after chaining their
 * events (the fault TERN_FAULT_COMMIT_DELAY_MS): a thread waiting for one finds the
 * batch it built since to chain and hash. */
static void open_delayed(const tn_evlog_opts *o, const char *ms)
{
    tn_evlog_close(lg);
    tu_rm_rf(dir);
    setenv("TERN_FAULT_COMMIT_DELAY_MS", ms, 1);
    tn_err e = tn_evlog_open(dir, o, &lg, &msg);
    unsetenv("TERN_FAULT_COMMIT_DELAY_MS");
    cr_assert_eq(e, TN_OK, "%s", msg.text);
}

Test(evlog, a_waiting_thread_hashes_its_next_batch_and_the_chain_is_unchanged)
{
    tn_evlog_opts o = {.create = true, .checkpoint_every = 100};
    open_delayed(&o, "300");
    uint64_t s0 = tn_evlog_last_seq(lg), ids[600];
    add_wfs(600, ids, NULL);
    cr_assert_eq(tn_evlog_commit_start(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert(tn_evlog_inflight(lg));
    /* fewer than a hand-over: this thread commits them itself, after the wait */
    add_wfs(100, NULL, NULL);
    cr_assert_eq(tn_evlog_hashed_waiting(lg), 0, "nothing is hashed before a wait");
    cr_assert_eq(tn_evlog_commit_wait(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_hashed_waiting(lg), 100, "the wait hashed the pending batch");
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), s0 + 700);
    verify_log();
    /* a batch big enough to be handed over, partly published to the committer already */
    add_wfs(600, NULL, NULL);
    cr_assert_eq(tn_evlog_commit_start(lg, &msg), TN_OK, "%s", msg.text);
    add_wfs(400, NULL, NULL);
    for (size_t i = 0; i < 100; i++)
        cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, ids[i], 0), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_commit_wait(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_hashed_waiting(lg), 600);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), s0 + 1800);
    started_and_reopened(ids[99], &o, s0 + 1800);
}

Test(evlog, a_failed_commit_in_flight_drops_the_batch_built_on_it)
{
    tn_evlog_opts o = {
        .create = true, .no_sync = true, .map_size = 1 << 20, .map_max = 1 << 20};
    /* the batch built on the one in flight is hashed by the waiting thread first */
    open_delayed(&o, "50");
    static char pad[1000];
    memset(pad, 'x', sizeof(pad) - 1);
    uint64_t first = tn_evlog_new_wf_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, first, 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    uint64_t committed = tn_evlog_last_seq(lg);
    tn_err e = TN_OK;
    uint64_t ids[300];
    for (int round = 0; round < 100 && e == TN_OK; round++) {
        add_wfs(300, ids, pad);              /* ~300 KB a batch: the 1 MiB map fills in a few */
        e = tn_evlog_commit_start(lg, &msg); /* waits for the batch before */
        if (e == TN_OK)
            committed = tn_evlog_last_seq(lg);
        else
            break;
        cr_assert(tn_evlog_inflight(lg));
        /* built on the batch in flight: new instances, and one of its own advanced */
        add_wfs(300, NULL, pad);
        cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, ids[0], 0), TN_OK);
        cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, first, 0), TN_OK);
        e = tn_evlog_commit_wait(lg, &msg);
        if (e == TN_OK) {
            committed = tn_evlog_last_seq(lg);
            /* undo the START of `first` for the next round: drop what is pending */
            tn_evlog_discard(lg);
        }
    }
    cr_assert_eq(e, TN_ERR_FULL, "got %s: %s", tn_errname(e), msg.text);
    cr_assert_gt(tn_evlog_hashed_waiting(lg), 0);
    /* nothing of the failed batch nor of the one built on it is left */
    cr_assert_not(tn_evlog_inflight(lg));
    cr_assert_eq(tn_evlog_pending(lg), 0);
    cr_assert_eq(tn_evlog_last_seq(lg), committed);
    cr_assert_eq(tn_evlog_next_seq(lg), committed + 1);
    tn_wf_proj w;
    cr_assert_eq(tn_evlog_wf(lg, first, &w), TN_OK);
    cr_assert_eq(w.state, TN_WF_S_SUBMITTED_SUCCESS, "its START was in the dropped batch");
    cr_assert_eq(tn_evlog_wf(lg, ids[0], &w) == TN_OK && w.last_seq > committed, false,
                 "an instance of the failed batch is not there as it was pending");
    verify_log();
    /* reopened with room, work goes on from the last durable batch */
    tn_evlog_close(lg);
    tn_evlog_opts o2 = {.no_sync = true, .map_max = 64 << 20};
    cr_assert_eq(tn_evlog_open(dir, &o2, &lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(lg), committed);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_START, first, 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    verify_log();
}

/* --- logread: the committed log, read through core/log --------------------------- */

static void sys_env(const char *name, const char *text)
{
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_ENV_SET, 0, 0);
    ev.actor = TN_STR("user:test");
    tn_event_set_str(&ev, "name", name);
    tn_event_set_str(&ev, "text", text);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
}

static void sys_def(const char *name, int64_t version, const char *bytes)
{
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_DEF_APPLIED, 0, 0);
    ev.actor = TN_STR("user:test");
    tn_event_set_str(&ev, "name", name);
    tn_event_set_int(&ev, "version", version);
    tn_event_set_bin(&ev, "def", bytes, strlen(bytes));
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
}

Test(evlog, env_get_reads_the_last_committed_env_set)
{
    tn_store *s = tn_evlog_store(lg);
    char *text = (char *)"untouched";
    cr_assert_eq(tn_log_env_get(s, "py", &text), TN_ERR_NOENT);
    cr_assert_str_eq(text, "untouched", "written only on success");
    sys_env("py", "export A=1");
    cr_assert_eq(tn_log_env_get(s, "py", &text), TN_ERR_NOENT, "pending is not committed");
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_log_env_get(s, "py", &text), TN_OK);
    cr_assert_str_eq(text, "export A=1");
    free(text);
    sys_env("py", "export A=2");
    sys_env("pyx", "other");
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_log_env_get(s, "py", &text), TN_OK);
    cr_assert_str_eq(text, "export A=2");
    free(text);
    cr_assert_eq(tn_log_env_get(s, "p", &text), TN_ERR_NOENT, "a prefix is another name");
    char longname[200];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    cr_assert_eq(tn_log_env_get(s, longname, &text), TN_ERR_NOENT);
    verify_log();
}

Test(evlog, taskgroup_get_reads_slots)
{
    tn_store *s = tn_evlog_store(lg);
    int64_t slots = -7;
    cr_assert_eq(tn_log_taskgroup_get(s, "db_writers", &slots), TN_ERR_NOENT);
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_SYSTEM, TN_SYS_E_TASKGROUP_SET, 0, 0);
    ev.actor = TN_STR("user:test");
    tn_event_set_str(&ev, "name", "db_writers");
    tn_event_set_int(&ev, "slots", 3);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_log_taskgroup_get(s, "db_writers", &slots), TN_OK);
    cr_assert_eq(slots, 3);
}

typedef struct def_seen {
    int n;
    char names[8][16];
    uint32_t versions[8];
} def_seen;

static int def_seen_cb(void *ctx, const char *name, uint32_t version, const void *bytes,
                       size_t len)
{
    def_seen *x = ctx;
    snprintf(x->names[x->n], sizeof(x->names[x->n]), "%s", name);
    x->versions[x->n++] = version;
    return x->n == 8;
}

Test(evlog, def_get_latest_and_each)
{
    tn_store *s = tn_evlog_store(lg);
    sys_def("etl", 1, "one");
    sys_def("etl", 2, "two");
    sys_def("etl2", 1, "other");
    sys_def("a", 5, "first by name");
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    tn_buf b = {0};
    cr_assert_eq(tn_log_def_get(s, "etl", 1, &b), TN_OK);
    cr_assert_eq(b.size, 3);
    cr_assert_eq(memcmp(b.data, "one", 3), 0);
    cr_assert_eq(tn_log_def_get(s, "etl", 3, &b), TN_ERR_NOENT);
    cr_assert_eq(tn_log_def_get(s, "et", 1, &b), TN_ERR_NOENT);
    uint32_t v = 99;
    cr_assert_eq(tn_log_def_latest(s, "etl", &v, &b), TN_OK);
    cr_assert_eq(v, 2, "etl2 is another name, not a later etl");
    cr_assert_eq(b.size, 3);
    cr_assert_eq(memcmp(b.data, "two", 3), 0);
    cr_assert_eq(tn_log_def_latest(s, "etl2", &v, NULL), TN_OK);
    cr_assert_eq(v, 1);
    cr_assert_eq(tn_log_def_latest(s, "et", &v, &b), TN_ERR_NOENT);
    cr_assert_eq(v, 0);
    cr_assert_eq(tn_log_def_latest(s, "zzz", &v, NULL), TN_ERR_NOENT);
    tn_buf_free(&b);
    def_seen x = {0};
    int fr = -1;
    cr_assert_eq(tn_log_def_each(s, def_seen_cb, &x, &fr), TN_OK);
    cr_assert_eq(fr, 0);
    cr_assert_eq(x.n, 4);
    const char *names[] = {"a", "etl", "etl", "etl2"};
    uint32_t versions[] = {5, 1, 2, 1};
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(x.names[i], names[i], "entry %d", i);
        cr_assert_eq(x.versions[i], versions[i], "entry %d", i);
    }
    verify_log();
}

static void put_raw_wf(uint64_t id, const void *val, size_t len)
{
    tn_batch *b;
    cr_assert_eq(tn_batch_new(&b), TN_OK);
    uint8_t k[8];
    tn_put_be64(k, id);
    cr_assert_eq(tn_batch_put(b, TN_DB_WF, k, 8, val, len), TN_OK);
    cr_assert_eq(tn_store_commit(tn_evlog_store(lg), b, &msg), TN_OK, "%s", msg.text);
    tn_batch_free(b);
}

Test(evlog, wf_iter_walks_committed_projections)
{
    uint64_t ids[3];
    for (int i = 0; i < 3; i++) {
        ids[i] = tn_evlog_new_wf_id(lg);
        cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, ids[i], 0), TN_OK);
    }
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_STOP, ids[1], 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    /* pending: invisible to the iterator */
    uint64_t pend = tn_evlog_new_wf_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, pend, 0), TN_OK);
    tn_log_wf_iter *it;
    cr_assert_eq(tn_log_wf_iter_open(tn_evlog_store(lg), &it), TN_OK);
    tn_wf_proj p;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tn_log_wf_iter_next(it, &p), TN_OK, "entry %d", i);
        cr_assert_eq(p.id, ids[i]);
        cr_assert_eq(p.state, i == 1 ? TN_WF_S_STOP : TN_WF_S_SUBMITTED_SUCCESS);
    }
    cr_assert_eq(tn_log_wf_iter_next(it, &p), TN_ERR_NOENT, "the pending one is not there");
    cr_assert_eq(tn_log_wf_iter_seek(it, ids[1], &p), TN_OK);
    cr_assert_eq(p.id, ids[1]);
    cr_assert_eq(tn_log_wf_iter_next(it, &p), TN_OK);
    cr_assert_eq(p.id, ids[2]);
    cr_assert_eq(tn_log_wf_iter_seek(it, ids[2] + 1, &p), TN_ERR_NOENT);
    cr_assert_eq(tn_log_wf_iter_seek(it, 0, &p), TN_OK);
    cr_assert_eq(p.id, ids[0]);
    tn_log_wf_iter_close(it);
    tn_log_wf_iter_close(NULL);
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(lg), ids[1], &p), TN_OK);
    cr_assert_eq(p.state, TN_WF_S_STOP);
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(lg), pend, &p), TN_ERR_NOENT);
    tn_evlog_discard(lg);
}

Test(evlog, wf_iter_reports_and_steps_over_a_damaged_projection)
{
    uint64_t a = tn_evlog_new_wf_id(lg), b = tn_evlog_new_wf_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, a, 0), TN_OK);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, b, 0), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    put_raw_wf(a, "\xc1", 1); /* not msgpack */
    tn_log_wf_iter *it;
    cr_assert_eq(tn_log_wf_iter_open(tn_evlog_store(lg), &it), TN_OK);
    tn_wf_proj p;
    cr_assert_eq(tn_log_wf_iter_next(it, &p), TN_ERR_CORRUPT);
    cr_assert_eq(p.id, a, "the damaged entry is named");
    cr_assert_eq(tn_log_wf_iter_next(it, &p), TN_OK);
    cr_assert_eq(p.id, b);
    cr_assert_eq(tn_log_wf_iter_seek(it, a, &p), TN_ERR_CORRUPT);
    cr_assert_eq(p.id, a);
    tn_log_wf_iter_close(it);
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(lg), a, &p), TN_ERR_CORRUPT);
}

Test(evlog, task_get_and_open_read)
{
    uint64_t wf = tn_evlog_new_wf_id(lg), t = tn_evlog_new_task_id(lg);
    cr_assert_eq(add(TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0), TN_OK);
    cr_assert_eq(add(TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, t), TN_OK);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    sys_env("sh", "set -e");
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    /* a reader in a process that does not write: the writer is gone */
    tn_evlog_close(lg);
    lg = NULL;
    tn_store *s;
    cr_assert_eq(tn_log_open_read(dir, &s, &msg), TN_OK, "%s", msg.text);
    cr_assert_not_null(strstr(tn_log_store_path(s), "data.mdb"));
    tn_task_proj p;
    cr_assert_eq(tn_log_task_get(s, t, &p), TN_OK);
    cr_assert_eq(p.wf, wf);
    cr_assert_str_eq(p.name, "t");
    cr_assert_eq(tn_log_task_get(s, t + 1, &p), TN_ERR_NOENT);
    char *text;
    cr_assert_eq(tn_log_env_get(s, "sh", &text), TN_OK);
    cr_assert_str_eq(text, "set -e");
    free(text);
    tn_log_close_read(s);
    tn_log_close_read(NULL);
    char *none = tu_tmpdir();
    s = NULL;
    cr_assert_eq(tn_log_open_read(none, &s, &msg), TN_ERR_NOENT);
    cr_assert_null(s);
    cr_assert_not_null(strstr(msg.text, none), "the message names the directory: %s", msg.text);
    tu_rm_rf(none);
    free(none);
}

/* --- damage refused at open; new stores only in empty dirs ----------------------- */

/* A committed workflow event carrying `marker` in an attribute; returns its seq. */
static uint64_t add_marked(const char *marker)
{
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, tn_evlog_new_wf_id(lg), 0);
    ev.actor = TN_STR("user:test");
    tn_event_set_str(&ev, "note", marker);
    cr_assert_eq(tn_evlog_add(lg, &ev, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_commit(lg, &msg), TN_OK, "%s", msg.text);
    return ev.seq;
}

/* Flip one bit of every copy of `marker` in DIR/data.mdb; returns how many. */
static int flip_marker(const char *marker)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/data.mdb", dir);
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    char *b = malloc((size_t)n);
    rewind(f);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    int hits = 0;
    size_t ml = strlen(marker);
    for (long i = 0; i + (long)ml <= n; i++)
        if (memcmp(b + i, marker, ml) == 0) {
            b[i] ^= 0x20;
            hits++;
        }
    rewind(f);
    cr_assert_eq(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(b);
    return hits;
}

/* A flipped byte in an event: every writer's open refuses the store with one line
 * naming the file, the seq and `tern replay` (before, the log opened without a word
 * and appended after the broken chain). */
Test(evlog, flipped_byte_refused_at_open_with_the_seq)
{
    add_marked("plain-one");
    uint64_t bad = add_marked("flip-this-marker");
    add_marked("plain-two");
    tn_evlog_close(lg);
    lg = NULL;
    cr_assert_gt(flip_marker("flip-this-marker"), 0);
    tn_evlog_opts o = {.create = true};
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &m), TN_ERR_CHAIN, "%s", m.text);
    cr_assert_null(lg);
    char want[64];
    snprintf(want, sizeof(want), "damaged at seq %llu ", (unsigned long long)bad);
    cr_assert_not_null(strstr(m.text, want), "names seq %llu: %s", (unsigned long long)bad,
                       m.text);
    cr_assert_not_null(strstr(m.text, "data.mdb"), "%s", m.text);
    cr_assert_not_null(strstr(m.text, "tern replay --data"), "%s", m.text);
    cr_assert_null(strchr(m.text, '\n'), "%s", m.text);
}

/* The last event altered: nothing follows it, the stored chain head catches it. */
Test(evlog, altered_last_event_refused_at_open)
{
    uint64_t bad = add_marked("last-event-marker");
    tn_evlog_close(lg);
    lg = NULL;
    cr_assert_gt(flip_marker("last-event-marker"), 0);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_evlog_open(dir, &(tn_evlog_opts){0}, &lg, &m), TN_ERR_CHAIN, "%s", m.text);
    char want[64];
    snprintf(want, sizeof(want), "damaged at seq %llu ", (unsigned long long)bad);
    cr_assert_not_null(strstr(m.text, want), "%s", m.text);
}

/* Open verifies from the last checkpoint, so its cost is bounded by the interval: an
 * event before the checkpoint is left to `tern replay`; one after it is refused. */
Test(evlog, open_verifies_from_the_checkpoint)
{
    tn_evlog_close(lg);
    tn_evlog_opts o = {.checkpoint_every = 4};
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_OK, "%s", msg.text);
    add_marked("before-checkpoint");
    for (int i = 0; i < 6; i++)
        add_marked("filler");
    uint64_t late = add_marked("after-checkpoint");
    tn_rtxn *t;
    cr_assert_eq(tn_store_read_begin(tn_evlog_store(lg), &t), TN_OK);
    tn_val v;
    cr_assert_eq(
        tn_store_get(t, TN_DB_META, TN_META_CHECKPOINT, strlen(TN_META_CHECKPOINT), &v), TN_OK);
    cr_assert_eq(v.len, 8 + TN_HASH_LEN);
    uint64_t ck = tn_get_be64(v.data);
    tn_store_read_end(t);
    cr_assert(ck >= 4 && ck < late, "checkpoint at %llu", (unsigned long long)ck);
    tn_evlog_close(lg);
    lg = NULL;
    cr_assert_gt(flip_marker("before-checkpoint"), 0);
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_OK, "%s", msg.text);
    tn_evlog_close(lg);
    lg = NULL;
    cr_assert_gt(flip_marker("after-checkpoint"), 0);
    cr_assert_eq(tn_evlog_open(dir, &o, &lg, &msg), TN_ERR_CHAIN, "%s", msg.text);
    char want[64];
    snprintf(want, sizeof(want), "damaged at seq %llu ", (unsigned long long)late);
    cr_assert_not_null(strstr(msg.text, want), "%s", msg.text);
    /* replay, which reads every event, still finds the older damage first */
    tn_store *s;
    cr_assert_eq(tn_log_open_read(dir, &s, &msg), TN_OK, "%s", msg.text);
    tn_replay_report *rep = calloc(1, sizeof(*rep));
    cr_assert_eq(tn_replay_run(s, &(tn_replay_opts){.verify_chain = true}, rep), TN_OK);
    cr_assert_neq(rep->err, TN_OK);
    cr_assert_lt(rep->bad_seq, late);
    free(rep);
    tn_store_close(s);
}

/* With create, a directory that holds other files but no store is refused and left as
 * it was (a mistyped --data must not become a new store beside someone's files). */
Test(evlog, create_refuses_a_non_empty_dir_without_a_store)
{
    char *d = tu_tmpdir();
    char p[256];
    snprintf(p, sizeof(p), "%s/notes.txt", d);
    FILE *f = fopen(p, "w");
    fputs("not a store\n", f);
    fclose(f);
    tn_evlog *l = NULL;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_evlog_open(d, &(tn_evlog_opts){.create = true}, &l, &m), TN_ERR_EXISTS,
                 "%s", m.text);
    cr_assert_not_null(strstr(m.text, "notes.txt"), "%s", m.text);
    cr_assert_not_null(strstr(m.text, d), "%s", m.text);
    struct stat st;
    snprintf(p, sizeof(p), "%s/data.mdb", d);
    cr_assert_neq(stat(p, &st), 0, "no store was made");
    snprintf(p, sizeof(p), "%s/writer.lock", d);
    cr_assert_neq(stat(p, &st), 0, "nothing was added");
    tu_rm_rf(d);
    free(d);
}

/* A new store is reported as created (the daemons say so); a reopened one is not. */
Test(evlog, created_only_on_the_first_open)
{
    cr_assert(tn_evlog_created(lg));
    tn_evlog_close(lg);
    cr_assert_eq(tn_evlog_open(dir, &(tn_evlog_opts){.create = true}, &lg, &msg), TN_OK, "%s",
                 msg.text);
    cr_assert_not(tn_evlog_created(lg));
}

/* --- tn_log_every: a repeating message once per interval, with its count ---------- */

Test(logevery, once_per_interval_with_the_count_of_repeats)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tn_log_set_stream(f);
    tn_log_every r = {.interval_ns = 300 * 1000000LL};
    int printed = 0;
    for (int i = 0; i < 50; i++)
        printed += tn_log_every_f(&r, TN_LOG_ERROR, "test", "msg=\"commit failed\" n=%d", i);
    cr_assert_eq(printed, 1, "only the first of 50 within the interval");
    usleep(350 * 1000);
    cr_assert(tn_log_every_f(&r, TN_LOG_ERROR, "test", "msg=\"commit failed\" n=%d", 50));
    tn_log_set_stream(NULL);
    fclose(f);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    cr_assert_eq(lines, 2, "log:\n%s", buf);
    cr_assert_not_null(strstr(buf, "n=0\n"), "%s", buf);
    cr_assert_not_null(strstr(buf, "n=50 repeated=\"49 times in 0.3"), "%s", buf);
    free(buf);
}

/* The log's task cache is a dense map (map.h): every key stays found through puts,
 * replacements and backward-shift deletions, sequential and strided keys alike, as in a
 * plain one. */
Test(map, dense_and_plain_maps_find_what_was_put_and_only_that)
{
    enum {
        N = 20000
    };
    static void *ref[4 * N + 1];
    for (int dense = 0; dense < 2; dense++) {
        tn_map m;
        if (dense)
            tn_map_init_dense(&m);
        else
            tn_map_init(&m);
        memset(ref, 0, sizeof(ref));
        uint64_t x = 88172645463325252ull; /* xorshift: a fixed sequence */
        for (int i = 0; i < 6 * N; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* keys in sequence, with a stride of 64, or anywhere */
            uint64_t k = i < 2 * N ? (uint64_t)i / 2 + 1 :
                         i < 4 * N ? (x % (N / 16)) * 64 + 1 :
                                     x % (4 * N) + 1;
            if (x % 3 == 0) {
                cr_assert_eq(tn_map_del(&m, k), ref[k], "del %llu", (unsigned long long)k);
                ref[k] = NULL;
            } else {
                cr_assert_eq(tn_map_put(&m, k, (void *)(uintptr_t)(i + 1)), TN_OK);
                ref[k] = (void *)(uintptr_t)(i + 1);
            }
        }
        size_t live = 0;
        for (uint64_t k = 1; k <= 4 * N; k++) {
            cr_assert_eq(tn_map_get(&m, k), ref[k], "get %llu (dense %d)",
                         (unsigned long long)k, dense);
            live += ref[k] != NULL;
        }
        cr_assert_eq(m.len, live);
        tn_map_fini(&m);
    }
}

/* Big-endian keys: byte order, any alignment, and the order of the bytes is the order of
 * the numbers (LMDB compares keys as bytes). */
Test(util, be64_is_big_endian_at_any_alignment_and_sorts_as_the_numbers)
{
    uint8_t buf[9 + 8];
    tn_put_be64(buf + 1, 0x0102030405060708ULL);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(buf[1 + i], i + 1);
    cr_assert_eq(tn_get_be64(buf + 1), 0x0102030405060708ULL);
    uint64_t prev = 0;
    uint8_t pk[8] = {0};
    for (uint64_t v = 1; v; v = v * 3 + 1) {
        uint8_t k[8];
        tn_put_be64(k, v);
        cr_assert_eq(tn_get_be64(k), v);
        cr_assert_eq(memcmp(pk, k, 8) < 0, prev < v, "%llu", (unsigned long long)v);
        memcpy(pk, k, 8);
        prev = v;
        if (v > UINT64_MAX / 4)
            break;
    }
}

/* Tests of the event log: table checks at append, seq and chain assignment, group
 * commit, discard, reopen, projections and a full store. */
#include <criterion/criterion.h>
#include <string.h>

#include "evlog.h"
#include "replay.h"
#include "sm_gen.h"
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

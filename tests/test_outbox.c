/* The worker's outbox (core/worker/outbox.c): reports reach the master by report id, a
 * task's earlier report going with a later one that is due, resends and restarts included. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "outbox.h"
#include "outbox_store.h"
#include "proto.h"
#include "testutil.h"

#define SEC 1000000000LL

/* What a fake transport saw: every report of every frame, in order. */
typedef struct seen {
    unsigned type;
    uint64_t id, task;
} seen;

static seen got[4096];
static size_t ngot, nframes;
static char *dir;
static tn_outbox_store *st;
static tn_outbox ob;
static const atomic_bool never = false;

static tn_err on_msg(void *arg, tn_str sender, const tn_msg *m)
{
    (void)arg;
    (void)sender;
    cr_assert_lt(ngot, sizeof(got) / sizeof(got[0]));
    seen s = {m->type, 0, 0};
    switch (m->type) {
    case TN_MSG_ACCEPTED: s.id = m->accepted.report_id, s.task = m->accepted.task; break;
    case TN_MSG_RESULT: s.id = m->result.report_id, s.task = m->result.task; break;
    case TN_MSG_KILL_RESULT:
        s.id = m->kill_result.report_id, s.task = m->kill_result.task;
        break;
    default: cr_assert_fail("a %s in the outbox", tn_msg_name(m->type));
    }
    got[ngot++] = s;
    return TN_OK;
}

static tn_err fake_send(void *self, const void *buf, size_t len)
{
    (void)self;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_frame_decode(buf, len, on_msg, NULL, &em), TN_OK, "%s", em.text);
    nframes++;
    return TN_OK;
}

static const tn_tx_ops fake_ops = {.name = "fake", .send = fake_send};
static const tn_tx fake = {&fake_ops, NULL};

static void open_outbox(void)
{
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_outbox_store_open(dir, 0, &st, &em), TN_OK, "%s", em.text);
    tn_outbox_init(&ob, st);
}

static void close_outbox(void)
{
    tn_outbox_fini(&ob);
    tn_outbox_store_close(st);
    st = NULL;
}

static void setup(void)
{
    dir = tu_tmpdir();
    ngot = nframes = 0;
    open_outbox();
}

static void teardown(void)
{
    if (st)
        close_outbox();
    tu_rm_rf(dir);
    free(dir);
}

TestSuite(outbox, .init = setup, .fini = teardown);

/* Stage a report of kind type for task; its report id. */
static uint64_t put(tn_msg_type type, uint64_t task)
{
    tn_msg m = {.type = type};
    switch (type) {
    case TN_MSG_ACCEPTED:
        m.accepted = (tn_msg_accepted){
            .task = task, .attempt = 1, .pid = 4242, .containment = TN_STR("cgroup")};
        break;
    case TN_MSG_RESULT:
        m.result = (tn_msg_result){.task = task, .attempt = 1, .success = true};
        break;
    default: m.kill_result = (tn_msg_kill_result){.task = task, .attempt = 1}; break;
    }
    cr_assert_eq(tn_outbox_put(&ob, &m), TN_OK);
    switch (type) {
    case TN_MSG_ACCEPTED: return m.accepted.report_id;
    case TN_MSG_RESULT: return m.result.report_id;
    default: return m.kill_result.report_id;
    }
}

static void send_at(int64_t now)
{
    ngot = 0;
    tn_outbox_commit(&ob, true, &never);
    tn_outbox_send(&ob, fake, "worker:w1", now);
}

static void expect_ascending(void)
{
    for (size_t i = 1; i < ngot; i++)
        cr_expect_lt(got[i - 1].id, got[i].id,
                     "report %zu (id %" PRIu64 ") went after id %" PRIu64, i, got[i].id,
                     got[i - 1].id);
}

Test(outbox, reports_go_by_report_id_across_frames)
{
    /* more than a frame's 1000 reports, for tasks interleaved */
    for (uint64_t i = 0; i < 1500; i++)
        put(i % 3 == 2 ? TN_MSG_RESULT : TN_MSG_ACCEPTED, 100 + i % 7);
    send_at(SEC);
    cr_assert_eq(ngot, 1500);
    cr_expect_eq(nframes, 2, "1000 reports a frame");
    expect_ascending();
}

Test(outbox, an_accepted_due_later_goes_before_its_result)
{
    uint64_t acc = put(TN_MSG_ACCEPTED, 7);
    send_at(10 * SEC);
    cr_assert_eq(ngot, 1);
    /* lost on the way; its resend is due 1 s later, but the RESULT is due now */
    uint64_t res = put(TN_MSG_RESULT, 7);
    send_at(10 * SEC + SEC / 2);
    cr_assert_eq(ngot, 2, "the ACCEPTED goes with its RESULT, not after it");
    cr_expect_eq(got[0].type, TN_MSG_ACCEPTED);
    cr_expect_eq(got[0].id, acc);
    cr_expect_eq(got[1].type, TN_MSG_RESULT);
    cr_expect_eq(got[1].id, res);
}

Test(outbox, another_tasks_report_keeps_its_own_backoff)
{
    uint64_t other = put(TN_MSG_ACCEPTED, 8);
    uint64_t acc = put(TN_MSG_ACCEPTED, 7);
    send_at(10 * SEC);
    cr_assert_eq(ngot, 2);
    uint64_t res = put(TN_MSG_RESULT, 7);
    send_at(10 * SEC + SEC / 2);
    cr_assert_eq(ngot, 2, "task 8's ACCEPTED is not due");
    cr_expect_eq(got[0].id, acc);
    cr_expect_eq(got[1].id, res);
    /* its own resend comes in its time, alone: task 7's went 0.5 s later */
    send_at(11 * SEC);
    cr_assert_eq(ngot, 1);
    cr_expect_eq(got[0].id, other);
}

Test(outbox, resends_keep_the_order_as_backoffs_differ)
{
    /* task 1's ACCEPTED tried 3 times (next in 8 s), its KILL_RESULT and RESULT newer */
    uint64_t acc = put(TN_MSG_ACCEPTED, 1);
    send_at(0);
    send_at(1 * SEC);
    send_at(3 * SEC);
    cr_assert_eq(ngot, 1);
    uint64_t kr = put(TN_MSG_KILL_RESULT, 1);
    send_at(4 * SEC);
    cr_assert_eq(ngot, 2);
    uint64_t res = put(TN_MSG_RESULT, 1);
    send_at(5 * SEC);
    cr_assert_eq(ngot, 3);
    cr_expect_eq(got[0].id, acc);
    cr_expect_eq(got[1].id, kr);
    cr_expect_eq(got[2].id, res);
    /* the master persisted the ACCEPTED: the rest go without it, still in order */
    tn_outbox_done(&ob, acc);
    tn_outbox_resend_now(&ob);
    send_at(6 * SEC);
    cr_assert_eq(ngot, 2);
    cr_expect_eq(got[0].id, kr);
    cr_expect_eq(got[1].id, res);
    cr_expect_eq(tn_outbox_len(&ob), 2);
}

Test(outbox, a_restarted_worker_resends_by_report_id)
{
    uint64_t ids[300];
    for (int i = 0; i < 300; i++)
        ids[i] = put(i % 2 ? TN_MSG_RESULT : TN_MSG_ACCEPTED, 1000 + (uint64_t)i / 2);
    send_at(SEC);
    /* some were persisted */
    for (int i = 0; i < 300; i += 5)
        tn_outbox_done(&ob, ids[i]);
    tn_outbox_commit(&ob, true, &never);
    close_outbox();
    open_outbox();
    cr_assert_eq(tn_outbox_len(&ob), 240);
    send_at(0);
    cr_assert_eq(ngot, 240, "every report left is due at start");
    expect_ascending();
    for (size_t i = 0; i < ngot; i++)
        cr_expect_eq(got[i].task, 1000 + (got[i].id - ids[0]) / 2, "report %" PRIu64 "'s task",
                     got[i].id);
    /* a new report comes after them, with the next id */
    uint64_t next = put(TN_MSG_ACCEPTED, 5);
    cr_expect_gt(next, ids[299]);
    /* and a report of one of their tasks drags the older ones of that task along only */
    send_at(SEC / 2);
    cr_assert_eq(ngot, 1);
    put(TN_MSG_KILL_RESULT, 1000 + 149);
    send_at(SEC / 2);
    cr_assert_eq(ngot, 3, "ids[298], ids[299] and the new one");
    cr_expect_eq(got[0].id, ids[298]);
    cr_expect_eq(got[1].id, ids[299]);
    cr_expect_eq(got[2].task, 1149);
}

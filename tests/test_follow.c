/* Log shipping (core/log/follow.c): a follower's log made from the leader's events is the
 * same log (same seqs, bytes, chain, projections); what does not follow (a gap, a
 * diverged event, a damaged encoding) is refused and nothing of its batch is kept. */
#include <criterion/criterion.h>
#include <string.h>

#include "evlog.h"
#include "follow.h"
#include "logread.h"
#include "replay.h"
#include "sm_gen.h"
#include "testutil.h"

static char *ldir, *fdir;
static tn_evlog *leader, *follower;
static tn_errmsg msg;

static void setup(void)
{
    ldir = tu_tmpdir();
    fdir = tu_tmpdir();
    tn_evlog_opts lo = {.create = true}, fo = {.create = true, .follower = true};
    cr_assert_eq(tn_evlog_open(ldir, &lo, &leader, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_open(fdir, &fo, &follower, &msg), TN_OK, "%s", msg.text);
}

static void teardown(void)
{
    tn_evlog_close(leader);
    tn_evlog_close(follower);
    tu_rm_rf(ldir);
    tu_rm_rf(fdir);
    free(ldir);
    free(fdir);
}

TestSuite(follow, .init = setup, .fini = teardown);

/* A workflow submitted and started, with a task, on log l; committed. */
static uint64_t add_run(tn_evlog *l)
{
    uint64_t wf = tn_evlog_new_wf_id(l), task = tn_evlog_new_task_id(l);
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, wf, 0);
    ev.actor = TN_STR("user:test");
    tn_event_set_str(&ev, "def", "etl");
    cr_assert_eq(tn_evlog_add(l, &ev, &msg), TN_OK, "%s", msg.text);
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_START, wf, 0);
    ev.actor = TN_STR("master:m1");
    cr_assert_eq(tn_evlog_add(l, &ev, &msg), TN_OK, "%s", msg.text);
    tn_event_init(&ev, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, wf, task);
    ev.actor = TN_STR("master:m1");
    tn_event_set_str(&ev, "name", "t");
    tn_event_set_int(&ev, "attempt", 1);
    cr_assert_eq(tn_evlog_add(l, &ev, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_commit(l, &msg), TN_OK, "%s", msg.text);
    return wf;
}

/* Ship everything the leader has past the follower's head, in batches of `per`. */
static tn_err ship(uint32_t per, uint32_t *total)
{
    *total = 0;
    for (;;) {
        tn_buf b = {0};
        uint32_t n;
        uint64_t last;
        uint8_t head[TN_HASH_LEN], mine[TN_HASH_LEN];
        uint64_t from = tn_evlog_last_seq(follower) + 1;
        tn_err e =
            tn_follow_read(tn_evlog_store(leader), from, per, 1 << 20, &b, &n, &last, head);
        if (e) {
            tn_buf_free(&b);
            return e;
        }
        cr_assert_eq(tn_evlog_head_hash(follower, mine), TN_OK);
        cr_assert(memcmp(head, mine, TN_HASH_LEN) == 0, "the heads agree before seq %llu",
                  (unsigned long long)from);
        uint32_t added;
        e = tn_evlog_follow_batch(follower, b.data, b.size, &added, &msg);
        tn_buf_free(&b);
        if (e)
            return e;
        cr_assert_eq(added, n);
        *total += n;
        if (n == 0)
            return TN_OK;
    }
}

Test(follow, the_followers_log_is_the_leaders)
{
    uint64_t wf = add_run(leader);
    add_run(leader);
    uint32_t total;
    cr_assert_eq(ship(2, &total), TN_OK, "%s", msg.text);
    cr_assert_eq(total, tn_evlog_last_seq(leader));
    cr_assert_eq(tn_evlog_last_seq(follower), tn_evlog_last_seq(leader));
    /* the same store id (the leader's genesis), the same chain head, the same projection */
    uint8_t a[TN_HASH_LEN], b[TN_HASH_LEN];
    cr_assert_eq(tn_evlog_head_hash(leader, a), TN_OK);
    cr_assert_eq(tn_evlog_head_hash(follower, b), TN_OK);
    cr_assert(memcmp(a, b, TN_HASH_LEN) == 0);
    tn_wf_proj pl, pf;
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(follower), wf, &pf), TN_OK);
    cr_assert_eq(tn_log_wf_get(tn_evlog_store(leader), wf, &pl), TN_OK);
    cr_assert_eq(pf.state, pl.state);
    cr_assert_eq(pf.last_seq, pl.last_seq);
    /* more later: only the new events travel */
    add_run(leader);
    cr_assert_eq(ship(100, &total), TN_OK, "%s", msg.text);
    cr_assert_eq(total, 3);
    /* the follower's store replays clean, and reopens as a store of the leader's id */
    tn_replay_report rep;
    tn_replay_opts ro = {.verify_chain = true, .compare = true};
    cr_assert_eq(tn_replay_run(tn_evlog_store(follower), &ro, &rep), TN_OK);
    cr_assert_eq(rep.err, TN_OK, "replay: seq %llu: %s", (unsigned long long)rep.bad_seq,
                 rep.why);
    char id[80];
    snprintf(id, sizeof(id), "%s", tn_evlog_cluster_id(leader));
    tn_evlog_close(follower);
    tn_evlog_opts fo = {.follower = true};
    cr_assert_eq(tn_evlog_open(fdir, &fo, &follower, &msg), TN_OK, "%s", msg.text);
    cr_assert_str_eq(tn_evlog_cluster_id(follower), id);
}

Test(follow, a_diverged_log_is_refused_and_nothing_of_the_batch_kept)
{
    add_run(leader);
    uint32_t total;
    cr_assert_eq(ship(100, &total), TN_OK, "%s", msg.text);
    uint64_t agreed = tn_evlog_last_seq(follower);
    /* both write their own events at the same seqs: an old leader's unreplicated tail */
    add_run(leader);
    add_run(follower);
    tn_buf b = {0};
    uint32_t n;
    uint64_t last;
    cr_assert_eq(
        tn_follow_read(tn_evlog_store(leader), agreed + 1, 100, 1 << 20, &b, &n, &last, NULL),
        TN_OK);
    cr_assert_eq(n, 3);
    tn_evlog_close(follower); /* our own tail is dropped by starting over; here a new one */
    tu_rm_rf(fdir);
    cr_assert_eq(mkdir(fdir, 0700), 0);
    tn_evlog_opts fo = {.create = true, .follower = true};
    cr_assert_eq(tn_evlog_open(fdir, &fo, &follower, &msg), TN_OK, "%s", msg.text);
    /* a batch that does not start at our next seq: refused */
    uint32_t added = 9;
    cr_assert_eq(tn_evlog_follow_batch(follower, b.data, b.size, &added, &msg), TN_ERR_CORRUPT);
    cr_assert_eq(added, 0);
    cr_assert_eq(tn_evlog_last_seq(follower), 0);
    tn_buf_free(&b);
    cr_assert_eq(ship(100, &total), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_evlog_last_seq(follower), tn_evlog_last_seq(leader));
}

Test(follow, a_chain_mismatch_is_found_where_it_is)
{
    add_run(leader);
    uint32_t total;
    cr_assert_eq(ship(100, &total), TN_OK, "%s", msg.text);
    uint64_t agreed = tn_evlog_last_seq(follower);
    add_run(follower); /* our own tail (an old leader's) */
    add_run(leader);
    add_run(leader); /* the new leader went further */
    tn_buf b = {0};
    uint32_t n;
    uint64_t last;
    /* the leader's event agreed+1 against our log past agreed: not our next seq */
    cr_assert_eq(
        tn_follow_read(tn_evlog_store(leader), agreed + 1, 100, 1 << 20, &b, &n, &last, NULL),
        TN_OK);
    cr_assert_eq(tn_evlog_follow_batch(follower, b.data, b.size, &n, &msg), TN_ERR_CORRUPT);
    tn_buf_free(&b);
    /* the leader's events past our head: their prev is not our head (the chain says so) */
    uint64_t ours = tn_evlog_last_seq(follower);
    b = (tn_buf){0};
    cr_assert_eq(
        tn_follow_read(tn_evlog_store(leader), ours + 1, 100, 1 << 20, &b, &n, &last, NULL),
        TN_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(tn_evlog_follow_batch(follower, b.data, b.size, &n, &msg), TN_ERR_CHAIN);
    cr_assert(strstr(msg.text, "diverged"), "%s", msg.text);
    tn_buf_free(&b);
    cr_assert_eq(tn_evlog_last_seq(follower), ours, "nothing kept");
    /* a follower ahead of the leader: the read says so */
    b = (tn_buf){0};
    cr_assert_eq(
        tn_follow_read(tn_evlog_store(leader), last + 2, 100, 1 << 20, &b, &n, &last, NULL),
        TN_ERR_NOENT);
    tn_buf_free(&b);
}

Test(follow, damaged_bytes_are_refused)
{
    add_run(leader);
    tn_buf b = {0};
    uint32_t n, added;
    uint64_t last;
    cr_assert_eq(tn_follow_read(tn_evlog_store(leader), 1, 100, 1 << 20, &b, &n, &last, NULL),
                 TN_OK);
    /* flip one byte of the last event's encoding (its tail: the prev hash or attrs) */
    b.data[b.size - 3] ^= 0x01;
    tn_err e = tn_evlog_follow_batch(follower, b.data, b.size, &added, &msg);
    cr_assert(e == TN_ERR_CHAIN || e == TN_ERR_CORRUPT, "%s", tn_strerror(e));
    cr_assert_eq(tn_evlog_last_seq(follower), 0, "nothing of the batch kept");
    /* a truncated batch */
    b.data[b.size - 3] ^= 0x01;
    e = tn_evlog_follow_batch(follower, b.data, b.size - 1, &added, &msg);
    cr_assert_neq(e, TN_OK);
    cr_assert_eq(tn_evlog_last_seq(follower), 0);
    tn_buf_free(&b);
}

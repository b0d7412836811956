/* Fencing at the worker (core/worker/fence.c): the newest leader epoch, kept across runs,
 * and the answers to a fenced master, bounded per sender and in number of senders. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fence.h"
#include "testutil.h"

#define MS 1000000LL

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

TestSuite(fence, .init = setup, .fini = teardown);

static bool due(tn_fence *f, const char *sender, int64_t now, uint64_t *refused)
{
    return tn_fence_answer_due(f, sender, strlen(sender), now, refused);
}

Test(fence, older_epochs_are_refused_and_the_newest_is_kept)
{
    tn_fence f;
    tn_fence_init(&f, dir);
    cr_assert(tn_fence_accept(&f, 0, "m", 1), "a worker that never saw a leader takes 0");
    cr_assert(tn_fence_accept(&f, 5, "m", 1));
    cr_assert(!tn_fence_accept(&f, 4, "m", 1));
    cr_assert(!tn_fence_accept(&f, 0, "m", 1));
    cr_assert(tn_fence_accept(&f, 5, "m", 1));
    cr_assert_eq(f.refused, 2);
    tn_fence g;
    tn_fence_init(&g, dir);
    cr_assert_eq(g.highest, 5, "a restarted worker remembers the epoch");
    cr_assert(!tn_fence_accept(&g, 4, "m", 1));
}

Test(fence, one_answer_per_sender_per_100ms)
{
    tn_fence f;
    tn_fence_init(&f, dir);
    uint64_t n = 0;
    cr_assert(due(&f, "master:old", 0, &n), "the first refusal is answered");
    cr_assert_eq(n, 1);
    for (int i = 1; i <= 50; i++)
        cr_assert(!due(&f, "master:old", i * MS, &n), "a flood is not answered frame by frame");
    cr_assert_eq(n, 51, "every refused frame is counted");
    cr_assert(!due(&f, "master:old", 99 * MS, &n));
    cr_assert(due(&f, "master:old", 100 * MS, &n), "answered again 100 ms later");
    cr_assert_eq(n, 53);
    /* another sender has its own count and its own pace */
    cr_assert(due(&f, "master:older", 101 * MS, &n));
    cr_assert_eq(n, 1);
    cr_assert(!due(&f, "master:old", 150 * MS, &n));
    cr_assert_eq(n, 54);
}

Test(fence, the_senders_kept_are_bounded)
{
    tn_fence f;
    tn_fence_init(&f, dir);
    uint64_t n = 0;
    char name[32];
    /* one more sender than the table holds, 100 ms apart: the least recently refused
     * makes room */
    for (int i = 0; i <= TN_FENCE_SENDERS; i++) {
        snprintf(name, sizeof(name), "master:m%d", i);
        cr_assert(due(&f, name, (i + 1) * 100 * MS, &n));
        cr_assert(!due(&f, name, (i + 1) * 100 * MS, &n));
        cr_assert_eq(n, 2);
    }
    /* m1..m8 are kept, their counts go on; m0 was dropped, and its count starts again */
    cr_assert(due(&f, "master:m1", 950 * MS, &n));
    cr_assert_eq(n, 3);
    cr_assert(due(&f, "master:m0", 960 * MS, &n));
    cr_assert_eq(n, 1);
}

Test(fence, invented_sender_names_get_no_more_answers)
{
    tn_fence f;
    tn_fence_init(&f, dir);
    uint64_t n = 0;
    char name[32];
    int answered = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "master:x%d", i);
        answered += due(&f, name, 50 * MS, &n);
    }
    cr_assert_eq(answered, TN_FENCE_SENDERS, "as many as the senders kept, in 100 ms");
    cr_assert(!due(&f, "master:y", 149 * MS, &n));
    cr_assert(due(&f, "master:y", 150 * MS, &n), "and as many again 100 ms later");
}

Test(fence, a_long_sender_is_cut_and_an_empty_one_not_answered)
{
    tn_fence f;
    tn_fence_init(&f, dir);
    char big[TN_FENCE_SENDER_MAX + 100];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    uint64_t n = 0;
    cr_assert(due(&f, big, 0, &n));
    cr_assert(!due(&f, big, 1, &n), "the same sender, cut to the same name");
    cr_assert_eq(n, 2);
    cr_assert(!tn_fence_answer_due(&f, "", 0, 0, &n));
}

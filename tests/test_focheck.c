/* The end checks of `tern chaos failover` (tools/chaos/focheck.c), fed crafted logs: clean
 * ones pass; a master's log that diverges from the longest, an accepted submission missing
 * or SUBMITted twice, a worker that takes an older leader's frames after a newer one's,
 * and a task attempt started twice are each caught. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "focheck.h"
#include "sm_gen.h"

typedef struct found {
    int n;
    char text[4096];
} found;

static void on_viol(void *ctx, const char *what)
{
    found *f = ctx;
    f->n++;
    size_t l = strlen(f->text);
    snprintf(f->text + l, sizeof(f->text) - l, "%s\n", what);
}

/* ---- logs ---- */

static const uint64_t longest[] = {11, 12, 13, 14, 15, 16};

Test(focheck, prefixes_of_the_longest_log_pass)
{
    uint64_t shorter[] = {11, 12, 13, 14}, tail[] = {13, 14, 15};
    chaos_fo_log logs[] = {{"m1", shorter, 1, 4}, {"m2", longest, 1, 6}, {"m3", tail, 3, 3}};
    found f = {0};
    cr_assert_eq(chaos_fo_check_logs(logs, 3, on_viol, &f), 0, "%s", f.text);
    cr_assert_eq(f.n, 0);
}

Test(focheck, a_log_that_diverges_from_the_longest_is_caught)
{
    /* m1 kept a tail of its own from seq 4: it differs where both have events */
    uint64_t diverged[] = {11, 12, 13, 99, 98};
    chaos_fo_log logs[] = {{"m1", diverged, 1, 5}, {"m2", longest, 1, 6}};
    found f = {0};
    cr_assert_eq(chaos_fo_check_logs(logs, 2, on_viol, &f), 1);
    cr_assert(strstr(f.text, "m1's event 4 differs from m2's"), "%s", f.text);
}

Test(focheck, the_digest_tells_bytes_apart)
{
    cr_assert_eq(chaos_fo_digest("abc", 3), chaos_fo_digest("abc", 3));
    cr_assert_neq(chaos_fo_digest("abc", 3), chaos_fo_digest("abd", 3));
}

/* ---- submissions ---- */

static void feed(chaos_fo_submits *c, uint64_t seq, unsigned machine, unsigned event,
                 uint64_t wf)
{
    tn_event ev;
    tn_event_init(&ev, machine, event, wf, 0);
    ev.seq = seq;
    chaos_fo_submits_event(c, &ev);
}

Test(focheck, each_accepted_submission_once_passes)
{
    chaos_fo_submits *c = chaos_fo_submits_new();
    feed(c, 1, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 5);
    feed(c, 2, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 6); /* a schedule's: not accepted here */
    feed(c, 3, TN_MACHINE_TASK, 0, 5);
    uint64_t acc[] = {5}, n = 0;
    found f = {0};
    cr_assert_eq(chaos_fo_submits_finish(c, acc, 1, on_viol, &f, &n), 0, "%s", f.text);
    cr_assert_eq(n, 2);
}

Test(focheck, a_lost_or_doubled_submission_is_caught)
{
    chaos_fo_submits *c = chaos_fo_submits_new();
    feed(c, 1, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 5);
    feed(c, 2, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 5);
    uint64_t acc[] = {5, 7};
    found f = {0};
    cr_assert_eq(chaos_fo_submits_finish(c, acc, 2, on_viol, &f, NULL), 3, "%s", f.text);
    cr_assert(strstr(f.text, "accepted instance 5 is SUBMITted 2 times"), "%s", f.text);
    cr_assert(strstr(f.text, "accepted instance 7 is SUBMITted 0 times"), "%s", f.text);
    cr_assert(strstr(f.text, "instance 5 is SUBMITted more than once"), "%s", f.text);
}

/* ---- epochs ---- */

Test(focheck, epochs_that_only_rise_pass_across_restarts)
{
    const char *log =
        "ts=1 level=info comp=worker msg=\"new leader epoch\" epoch=1 before=0\n"
        "ts=2 level=warn comp=worker msg=\"frame from a fenced master refused: a newer "
        "leader took over\" sender=\"m1\" epoch=1 current=2 refused=3\n"
        "ts=2 level=info comp=worker msg=\"new leader epoch\" epoch=2 before=1\n"
        "ts=3 level=info comp=worker msg=\"worker started\"\n"
        "ts=4 level=warn comp=worker msg=\"frame from a fenced master refused: a newer "
        "leader took over\" sender=\"m1\" epoch=2 current=3 refused=1\n"
        "ts=4 level=info comp=worker msg=\"new leader epoch\" epoch=3 before=2\n";
    found f = {0};
    uint64_t sw = 0, ref = 0;
    cr_assert_eq(chaos_fo_check_epochs("w1", log, on_viol, &f, &sw, &ref), 0, "%s", f.text);
    cr_assert_eq(sw, 3);
    cr_assert_eq(ref, 4);
}

Test(focheck, an_older_epoch_after_a_newer_one_is_caught)
{
    /* a restart that forgot its fence took the old leader's frames again */
    const char *log = "ts=1 level=info comp=worker msg=\"new leader epoch\" epoch=4 before=3\n"
                      "ts=3 level=info comp=worker msg=\"worker started\"\n"
                      "ts=4 level=info comp=worker msg=\"new leader epoch\" epoch=3 before=0\n"
                      "ts=5 level=info comp=worker msg=\"new leader epoch\" epoch=5 before=3\n";
    found f = {0};
    cr_assert_eq(chaos_fo_check_epochs("w2", log, on_viol, &f, NULL, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "worker w2: line 3 takes frames of epoch 3 after epoch 4"), "%s",
              f.text);
}

/* ---- runs ---- */

Test(focheck, distinct_attempts_pass)
{
    found f = {0};
    uint64_t n = 0;
    cr_assert_eq(chaos_fo_check_runs("5 a 1\n5 b 1\n5 a 2\n6 a 1\n", on_viol, &f, &n), 0, "%s",
                 f.text);
    cr_assert_eq(n, 4);
}

Test(focheck, an_attempt_started_twice_is_caught)
{
    found f = {0};
    cr_assert_eq(chaos_fo_check_runs("5 a 1\n6 a 1\n5 a 1\n5 a 1\n5 b 1\n", on_viol, &f, NULL),
                 1, "%s", f.text);
    cr_assert(strstr(f.text, "instance 5 task a attempt 1 ran more than once"), "%s", f.text);
}

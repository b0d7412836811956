/* The chaos harness's exactly-once check of schedules (tools/chaos/schedcheck.c), fed
 * crafted logs: a clean one passes; a nominal time fired twice, one never decided, a
 * FIRE without its SUBMIT, a SUBMIT naming another time, a skip without a reason and a
 * fire of a time the cron does not give are each caught. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "schedcheck.h"
#include "sm_gen.h"

#define S  1000000000LL
#define T0 (1700000000LL * S) /* a whole second */

typedef struct log {
    tn_event ev[64];
    size_t n;
    uint64_t seq, next_wf;
} log_t;

typedef struct found {
    int n;
    char text[4096];
} found;

static void on_viol(void *ctx, uint64_t seq, const char *schedule, const char *what)
{
    found *f = ctx;
    f->n++;
    size_t l = strlen(f->text);
    snprintf(f->text + l, sizeof(f->text) - l, "[%llu %s] %s\n", (unsigned long long)seq,
             schedule, what);
}

static tn_event *add(log_t *l, unsigned machine, unsigned event, uint64_t wf)
{
    cr_assert_lt(l->n, 64);
    tn_event *ev = &l->ev[l->n++];
    tn_event_init(ev, machine, event, wf, 0);
    ev->seq = ++l->seq;
    ev->at = T0;
    return ev;
}

static void set(log_t *l, const char *cron, int64_t after)
{
    tn_event *ev = add(l, TN_MACHINE_SCHEDULE, TN_SCHED_E_SET, 0);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_str(ev, "cron", cron);
    tn_event_set_str(ev, "tz", "UTC");
    tn_event_set_int(ev, "after", after);
}

/* FIRE of nominal, then (submit) the SUBMIT of its instance naming sched_attr. */
static void fire_x(log_t *l, int64_t nominal, bool buffered, bool submit, int64_t sched_attr)
{
    uint64_t id = ++l->next_wf + 100;
    tn_event *ev = add(l, TN_MACHINE_SCHEDULE, TN_SCHED_E_FIRE, 0);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "nominal", nominal);
    tn_event_set_int(ev, "instance", (int64_t)id);
    if (buffered)
        tn_event_set_int(ev, "buffered", 1);
    if (!submit)
        return;
    ev = add(l, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, id);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "sched", sched_attr);
}

static void fire(log_t *l, int64_t nominal)
{
    fire_x(l, nominal, false, true, nominal);
}

static void skip(log_t *l, int64_t after, int64_t through, const char *reason)
{
    tn_event *ev = add(l, TN_MACHINE_SCHEDULE, TN_SCHED_E_SKIP, 0);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "after", after);
    tn_event_set_int(ev, "through", through);
    if (reason)
        tn_event_set_str(ev, "reason", reason);
}

static void buffer(log_t *l, int64_t nominal)
{
    tn_event *ev = add(l, TN_MACHINE_SCHEDULE, TN_SCHED_E_BUFFER, 0);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "nominal", nominal);
    tn_event_set_str(ev, "reason", "overlap policy buffer_one");
}

static void state(log_t *l, unsigned event, int64_t through)
{
    tn_event *ev = add(l, TN_MACHINE_SCHEDULE, event, 0);
    tn_event_set_str(ev, "schedule", "wf");
    if (through)
        tn_event_set_int(ev, "through", through);
    tn_event_set_str(ev, "reason", "by request");
}

static uint64_t check(log_t *l, int64_t window_end, found *f, chaos_schedchk_stats *st)
{
    memset(f, 0, sizeof(*f));
    return chaos_schedchk_run(l->ev, l->n, window_end, on_viol, f, st);
}

/* Every second from T0 (after) through T0+6s: fires, a skip, a buffered time fired. */
static void clean_log(log_t *l)
{
    memset(l, 0, sizeof(*l));
    set(l, "* * * * * ?", T0);
    fire(l, T0 + 1 * S);
    fire(l, T0 + 2 * S);
    skip(l, T0 + 2 * S, T0 + 4 * S + S / 2, "missed: more than the catchup window");
    buffer(l, T0 + 5 * S);
    fire(l, T0 + 6 * S);
    fire_x(l, T0 + 5 * S, true, true, T0 + 5 * S);
}

Test(schedcheck, clean_log_passes)
{
    log_t l;
    found f;
    chaos_schedchk_stats st;
    clean_log(&l);
    cr_assert_eq(check(&l, T0 + 6 * S, &f, &st), 0, "%s", f.text);
    cr_assert_eq(st.nominal, 6);
    cr_assert_eq(st.fired, 3);
    cr_assert_eq(st.skipped, 2);
    cr_assert_eq(st.buffered, 1);
    cr_assert_eq(st.buffered_fired, 1);
    cr_assert_eq(st.pending, 0);
    /* the window bounds what is due: T0+7s is not decided and not checked */
    cr_assert_eq(check(&l, T0 + 6 * S + S / 2, &f, &st), 0, "%s", f.text);
    cr_assert_eq(st.nominal, 6);
}

Test(schedcheck, duplicated_fire_caught)
{
    log_t l;
    found f;
    clean_log(&l);
    fire(&l, T0 + 2 * S);
    cr_assert_eq(check(&l, T0 + 6 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "decided 2 times (2 FIRE"), "%s", f.text);
}

Test(schedcheck, fire_inside_a_skip_caught)
{
    log_t l;
    found f;
    clean_log(&l);
    fire(&l, T0 + 3 * S);
    cr_assert_eq(check(&l, T0 + 6 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "decided 2 times (1 FIRE, 1 SKIP"), "%s", f.text);
}

Test(schedcheck, missing_nominal_time_caught)
{
    log_t l;
    found f;
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire(&l, T0 + 1 * S);
    fire(&l, T0 + 3 * S); /* T0+2s never decided */
    cr_assert_eq(check(&l, T0 + 3 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "never decided"), "%s", f.text);
    /* and one due before the window's end but never reached */
    cr_assert_eq(check(&l, T0 + 4 * S, &f, NULL), 2, "%s", f.text);
}

Test(schedcheck, fire_without_submit_caught)
{
    log_t l;
    found f;
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire_x(&l, T0 + 1 * S, false, false, 0); /* no SUBMIT: the next event is a FIRE */
    fire(&l, T0 + 2 * S);
    cr_assert_eq(check(&l, T0 + 2 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "not followed by that instance's SUBMIT"), "%s", f.text);
    /* the last event of the log */
    fire_x(&l, T0 + 3 * S, false, false, 0);
    cr_assert_eq(check(&l, T0 + 3 * S, &f, NULL), 2, "%s", f.text);
    cr_assert(strstr(f.text, "no SUBMIT follows it"), "%s", f.text);
}

Test(schedcheck, submit_of_another_time_caught)
{
    log_t l;
    found f;
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire_x(&l, T0 + 1 * S, false, true, T0 + 2 * S);
    cr_assert_eq(check(&l, T0 + 1 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "not those of its FIRE"), "%s", f.text);
}

Test(schedcheck, submit_without_fire_caught)
{
    log_t l;
    found f;
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire(&l, T0 + 1 * S);
    tn_event *ev = add(&l, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 999);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "sched", T0 + 1 * S);
    cr_assert_eq(check(&l, T0 + 1 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "without a FIRE"), "%s", f.text);
}

Test(schedcheck, skip_without_reason_and_stray_fire_caught)
{
    log_t l;
    found f;
    memset(&l, 0, sizeof(l));
    set(&l, "*/2 * * * * ?", T0);
    fire(&l, T0 + 2 * S);
    skip(&l, T0 + 2 * S, T0 + 4 * S, NULL);
    cr_assert_eq(check(&l, T0 + 4 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "SKIP without a reason"), "%s", f.text);
    memset(&l, 0, sizeof(l));
    set(&l, "*/2 * * * * ?", T0);
    fire(&l, T0 + 1 * S); /* an odd second: not a time of the cron */
    fire(&l, T0 + 2 * S);
    cr_assert_eq(check(&l, T0 + 2 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "not a nominal time of its cron"), "%s", f.text);
    /* nor one at or before the SET's after */
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire(&l, T0);
    cr_assert_eq(check(&l, T0, &f, NULL), 1, "%s", f.text);
}

Test(schedcheck, paused_times_not_due)
{
    log_t l;
    found f;
    chaos_schedchk_stats st;
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire(&l, T0 + 1 * S);
    state(&l, TN_SCHED_E_PAUSE, 0);
    state(&l, TN_SCHED_E_RESUME, T0 + 4 * S + S / 3);
    fire(&l, T0 + 5 * S);
    cr_assert_eq(check(&l, T0 + 5 * S, &f, &st), 0, "%s", f.text);
    cr_assert_eq(st.not_due, 3);
    /* without the RESUME the same times are missing */
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire(&l, T0 + 1 * S);
    fire(&l, T0 + 5 * S);
    cr_assert_eq(check(&l, T0 + 5 * S, &f, NULL), 3, "%s", f.text);
}

Test(schedcheck, buffered_fire_twice_or_unbuffered_caught)
{
    log_t l;
    found f;
    chaos_schedchk_stats st;
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    buffer(&l, T0 + 1 * S);
    cr_assert_eq(check(&l, T0 + 1 * S, &f, &st), 0, "%s", f.text);
    cr_assert_eq(st.pending, 1);
    fire_x(&l, T0 + 1 * S, true, true, T0 + 1 * S);
    fire_x(&l, T0 + 1 * S, true, true, T0 + 1 * S);
    cr_assert_eq(check(&l, T0 + 1 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "2 buffered FIRE(s) for 1 BUFFER"), "%s", f.text);
    memset(&l, 0, sizeof(l));
    set(&l, "* * * * * ?", T0);
    fire(&l, T0 + 1 * S);
    fire_x(&l, T0 + 1 * S, true, true, T0 + 1 * S);
    cr_assert_eq(check(&l, T0 + 1 * S, &f, NULL), 1, "%s", f.text);
    cr_assert(strstr(f.text, "1 buffered FIRE(s) for 0 BUFFER"), "%s", f.text);
}

Test(schedcheck, manual_fires_aside_but_need_their_submit)
{
    log_t l;
    found f;
    memset(&l, 0, sizeof(l));
    set(&l, "0 0 * * * ?", T0); /* hourly: nothing due in the window */
    tn_event *ev = add(&l, TN_MACHINE_SCHEDULE, TN_SCHED_E_FIRE, 0);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "nominal", T0 + S / 7);
    tn_event_set_int(ev, "instance", 77);
    tn_event_set_int(ev, "manual", 1);
    ev = add(&l, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 77);
    tn_event_set_str(ev, "schedule", "wf");
    tn_event_set_int(ev, "sched", T0 + S / 7);
    cr_assert_eq(check(&l, T0 + 10 * S, &f, NULL), 0, "%s", f.text);
    l.n--; /* without its SUBMIT */
    cr_assert_eq(check(&l, T0 + 10 * S, &f, NULL), 1, "%s", f.text);
}

/* `tern chaos`: what a run says. Progress lines on stderr, the violations it records, and
 * the report at the end, as text or as JSON. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "chaos.h"
#include "cli.h"

#define MAX_VIOLATIONS_SHOWN 200

void chaos_say(run *r, const char *fmt, ...)
{
    char buf[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    int64_t t = r->t0 ? now_ms() - r->t0 : 0;
    fprintf(stderr, "chaos: t=%" PRId64 ".%01" PRId64 "s %s\n", t / 1000, (t % 1000) / 100,
            buf);
}

void chaos_violation(run *r, int inv, uint64_t seq, uint64_t task, uint32_t attempt,
                     const char *fmt, ...)
{
    if (!tn_grow((void **)&r->viols, &r->capviols, r->nviols + 1, sizeof(*r->viols)))
        return;
    viol *v = &r->viols[r->nviols++];
    *v = (viol){.inv = inv, .seq = seq, .task = task, .attempt = attempt};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->what, sizeof(v->what), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------ */
/* the report */

static const char *const inv_names[8] = {
    "daemons, settle", "final states",         "replay", "attempts",
    "processes",       "accepted submissions", "memory", "schedules once"};

static bool inv_ok(const run *r, int inv)
{
    for (size_t i = 0; i < r->nviols; i++)
        if (r->viols[i].inv == inv)
            return false;
    return true;
}

/* The faults the report counts: the injected ones and the starts that crash the master. */
static bool counted_fault(int k)
{
    return k == K_START_CRASH || IS_FAULT(k);
}

/* The one-line detail of each check, for both reports. */
static void fill_notes(run *r)
{
    uint64_t mrss = r->d[0].rss_max, wrss = 0;
    for (int i = 1; i <= r->s.workers; i++)
        if (r->d[i].rss_max > wrss)
            wrss = r->d[i].rss_max;
    snprintf(r->inv_note[0], sizeof(r->inv_note[0]), "%s",
             inv_ok(r, 0) ? "none exited unless the harness killed it; the cluster settled" :
                            "see below");
    snprintf(r->inv_note[1], sizeof(r->inv_note[1]),
             "%" PRIu64 " instances (children included)", r->inv_count[1]);
    snprintf(r->inv_note[3], sizeof(r->inv_note[3]),
             "%" PRIu64 " attempts journaled (%" PRIu64
             " run again on the same worker after a restart, %" PRIu64 " on two workers one "
             "after the other), %" PRIu64 " worker results applied and checked",
             r->journal_attempts, r->journal_reruns, r->journal_cross, r->results_checked);
    snprintf(r->inv_note[4], sizeof(r->inv_note[4]),
             "%" PRIu64 " task processes alive at the "
             "end, 0 allowed",
             r->inv_count[4]);
    snprintf(r->inv_note[5], sizeof(r->inv_note[5]), "%" PRIu64 " accepted starts looked up",
             r->inv_count[5]);
    snprintf(r->inv_note[6], sizeof(r->inv_note[6]),
             "RssAnon max: master %.1f MiB, workers "
             "%.1f MiB; bound %.0f MiB",
             (double)mrss / MIB, (double)wrss / MIB, (double)r->rss_bound / MIB);
}

static void report_text(run *r)
{
    printf("faults injected:");
    bool any = false;
    for (int k = K_START_CRASH; k < K__COUNT; k++) {
        if (!counted_fault(k))
            continue;
        if (r->faults[k] || r->skipped[k]) {
            printf("%s %s %" PRIu64, any ? "," : "", chaos_kind_names[k], r->faults[k]);
            if (r->skipped[k])
                printf(" (%" PRIu64 " skipped: target down or busy)", r->skipped[k]);
            any = true;
        }
    }
    if (r->ballast_bytes)
        printf("%s ballast %" PRIu64 " KiB", any ? "," : "", r->ballast_bytes / 1024),
            any = true;
    if (r->s.net[0])
        printf("%s network on every daemon: %s", any ? "," : "", r->s.net), any = true;
    printf("%s\n", any ? "" : " none");
    if (r->skipped[K_SLOW_DISK] && r->slow_why[0])
        printf("slow disk not injected: %s\n", r->slow_why);
    printf("workload: %d starts: %" PRIu64 " accepted, %" PRIu64
           " refused (store full), %" PRIu64 " refused (other), %" PRIu64
           " unknown (no answer)\n",
           r->s.workflows, r->starts_accepted, r->starts_refused_full, r->starts_refused_other,
           r->starts_unknown);
    printf("commands:");
    for (int k = K_PAUSE; k <= K_KILL; k++)
        printf("%s %s %" PRIu64 " ok/%" PRIu64 " refused/%" PRIu64 " unknown",
               k > K_PAUSE ? "," : "", chaos_kind_names[k], r->cmds_ok[k], r->cmds_refused[k],
               r->cmds_unknown[k]);
    printf("\n");
    if (r->not_issued)
        printf("not issued: %" PRIu64 " workload actions were still due when the window "
               "closed (calls had waited on a master that was down)\n",
               r->not_issued);
    if (r->starts_refused_other)
        printf("last start refused: %s\n", r->last_refusal);
    if (r->last_cmd_refusal[0])
        printf("last command refused: %s\n", r->last_cmd_refusal);
    printf("workflows by final state:");
    any = false;
    for (int i = 1; i < TN_WF_S__COUNT; i++)
        if (r->wf_states[i]) {
            printf("%s %s %" PRIu64, any ? "," : "",
                   tn_sm_state_name(&tn_sm_workflow, (unsigned)i), r->wf_states[i]);
            any = true;
        }
    printf("%s\n", any ? "" : " none");
    printf("settle: %s in %.1fs%s%s\n", r->settled ? "settled" : "NOT settled",
           (double)r->settle_took_ms / 1000, r->settled ? "" : "; still waiting on ",
           r->settled ? "" : r->waiting_on);
    printf("invariants:\n");
    for (int i = 1; i <= 7; i++)
        printf("  %d %-22s %s  %s\n", i, inv_names[i], inv_ok(r, i) ? "ok  " : "FAIL",
               r->inv_note[i]);
    printf("  - %-22s %s  %s\n", inv_names[0], inv_ok(r, 0) ? "ok  " : "FAIL", r->inv_note[0]);
    size_t shown = 0;
    for (size_t i = 0; i < r->nviols && shown < MAX_VIOLATIONS_SHOWN; i++, shown++) {
        viol *v = &r->viols[i];
        printf("violation [%d %s]", v->inv, inv_names[v->inv]);
        if (v->seq)
            printf(" seq %" PRIu64, v->seq);
        if (v->task)
            printf(" task %" PRIu64, v->task);
        if (v->attempt)
            printf(" attempt %u", v->attempt);
        printf(": %s\n", v->what);
    }
    if (r->nviols > shown)
        printf("... and %zu more violations\n", r->nviols - shown);
}

static void report_json(run *r)
{
    printf("{\"seed\":%" PRIu64 ",\"scenario\":\"%s\",\"duration_ms\":%" PRId64
           ",\"workers\":%d,"
           "\"workflows\":%d,\"dir\":",
           r->s.seed, chaos_scenario_names[r->s.scenario], r->s.duration_ms, r->s.workers,
           r->s.workflows);
    tn_json_cstr(stdout, r->dir);
    printf(",\"kept\":%s,\"faults\":{", r->keep || r->nviols ? "true" : "false");
    bool first = true;
    for (int k = K_START_CRASH; k < K__COUNT; k++) {
        if (!counted_fault(k))
            continue;
        printf("%s\"%s\":%" PRIu64, first ? "" : ",", chaos_kind_names[k], r->faults[k]);
        first = false;
    }
    printf(",\"ballast_bytes\":%" PRIu64 ",\"net\":", r->ballast_bytes);
    tn_json_cstr(stdout, r->s.net);
    printf("},\"workload\":{\"starts\":%d,\"accepted\":%" PRIu64 ",\"refused_full\":%" PRIu64
           ",\"refused_other\":%" PRIu64 ",\"unknown\":%" PRIu64,
           r->s.workflows, r->starts_accepted, r->starts_refused_full, r->starts_refused_other,
           r->starts_unknown);
    printf(",\"not_issued\":%" PRIu64, r->not_issued);
    for (int k = K_PAUSE; k <= K_KILL; k++)
        printf(",\"%s\":{\"ok\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"unknown\":%" PRIu64 "}",
               chaos_kind_names[k], r->cmds_ok[k], r->cmds_refused[k], r->cmds_unknown[k]);
    printf("},\"final_states\":{");
    first = true;
    for (int i = 1; i < TN_WF_S__COUNT; i++)
        if (r->wf_states[i]) {
            printf("%s\"%s\":%" PRIu64, first ? "" : ",",
                   tn_sm_state_name(&tn_sm_workflow, (unsigned)i), r->wf_states[i]);
            first = false;
        }
    printf("},\"settled\":%s,\"settle_ms\":%" PRId64 ",\"waiting_on\":",
           r->settled ? "true" : "false", r->settle_took_ms);
    tn_json_cstr(stdout, r->waiting_on);
    printf(",\"rss_max\":{\"master\":%" PRIu64 ",\"workers\":[", r->d[0].rss_max);
    for (int i = 1; i <= r->s.workers; i++)
        printf("%s%" PRIu64, i > 1 ? "," : "", r->d[i].rss_max);
    printf("],\"bound\":%" PRIu64 "},\"invariants\":[", r->rss_bound);
    for (int i = 0; i <= 7; i++) {
        printf("%s{\"n\":%d,\"name\":\"%s\",\"ok\":%s,\"detail\":", i ? "," : "", i,
               inv_names[i], inv_ok(r, i) ? "true" : "false");
        tn_json_cstr(stdout, r->inv_note[i]);
        printf("}");
    }
    printf("],\"violations\":[");
    for (size_t i = 0; i < r->nviols; i++) {
        viol *v = &r->viols[i];
        printf("%s{\"invariant\":%d,\"seq\":%" PRIu64 ",\"task\":%" PRIu64 ",\"attempt\":%u,"
               "\"what\":",
               i ? "," : "", v->inv, v->seq, v->task, v->attempt);
        tn_json_cstr(stdout, v->what);
        printf("}");
    }
    printf("],\"ok\":%s}\n", r->nviols ? "false" : "true");
}

void report_print(run *r)
{
    fill_notes(r);
    if (r->json)
        report_json(r);
    else
        report_text(r);
}

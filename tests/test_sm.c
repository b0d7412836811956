/* Tests for the state machine tables: checked against the .sm specs read independently,
 * against DolphinScheduler semantics written out by hand, and smgen's handling of bad specs. */
#include "sm.h"
#include "sm_gen.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- an independent reader of the .sm specs ---- */

#define SPEC_MAX 256
#define NAME_LEN 64

typedef struct spec_trans {
    char from[NAME_LEN], event[NAME_LEN], to[NAME_LEN];
    int line;
} spec_trans;

typedef struct spec {
    char path[PATH_MAX];
    char states[SPEC_MAX][NAME_LEN]; /* declared states, NEW not included */
    int nstates;
    char events[SPEC_MAX][NAME_LEN];
    int nevents;
    char finals[SPEC_MAX][NAME_LEN];
    int nfinals;
    char initial[NAME_LEN];
    spec_trans trans[SPEC_MAX];
    int ntrans;
} spec;

static void copy_name(char *dst, const char *src)
{
    cr_assert_lt(strlen(src), NAME_LEN, "name too long: %s", src);
    strcpy(dst, src);
}

/* Reads statemachines/NAME.sm from the source tree. The caller frees the result. */
static spec *read_spec(const char *name)
{
    const char *src = getenv("TERN_SRC");
    spec *s = calloc(1, sizeof *s);
    char line[1024];
    FILE *f;
    int lineno = 0;

    cr_assert_not_null(src, "TERN_SRC must point at the source tree");
    cr_assert_not_null(s);
    snprintf(s->path, sizeof s->path, "%s/statemachines/%s.sm", src, name);
    f = fopen(s->path, "r");
    cr_assert_not_null(f, "cannot open %s", s->path);
    while (fgets(line, sizeof line, f)) {
        char *tok[SPEC_MAX], *save = NULL, *hash = strchr(line, '#');
        int n = 0;

        lineno++;
        if (hash)
            *hash = '\0';
        for (char *t = strtok_r(line, " \t\r\n", &save); t && n < SPEC_MAX;
             t = strtok_r(NULL, " \t\r\n", &save))
            tok[n++] = t;
        if (n == 0 || strcmp(tok[0], "machine") == 0)
            continue;
        if (strcmp(tok[0], "states") == 0) {
            for (int i = 1; i < n; i++)
                copy_name(s->states[s->nstates++], tok[i]);
        } else if (strcmp(tok[0], "events") == 0) {
            for (int i = 1; i < n; i++)
                copy_name(s->events[s->nevents++], tok[i]);
        } else if (strcmp(tok[0], "final") == 0) {
            for (int i = 1; i < n; i++)
                copy_name(s->finals[s->nfinals++], tok[i]);
        } else if (strcmp(tok[0], "initial") == 0) {
            cr_assert_eq(n, 2, "%s:%d: initial takes one state", s->path, lineno);
            copy_name(s->initial, tok[1]);
        } else {
            spec_trans *t = &s->trans[s->ntrans++];

            cr_assert_eq(n, 3, "%s:%d: not a transition", s->path, lineno);
            copy_name(t->from, tok[0]);
            copy_name(t->event, tok[1]);
            copy_name(t->to, tok[2]);
            t->line = lineno;
        }
        cr_assert_lt(s->ntrans, SPEC_MAX);
        cr_assert_lt(s->nstates, SPEC_MAX);
        cr_assert_lt(s->nevents, SPEC_MAX);
        cr_assert_lt(s->nfinals, SPEC_MAX);
    }
    fclose(f);
    cr_assert_gt(s->ntrans, 0, "%s: no transitions read", s->path);
    return s;
}

static bool spec_is_final(const spec *s, const char *state)
{
    for (int i = 0; i < s->nfinals; i++)
        if (strcmp(s->finals[i], state) == 0)
            return true;
    return false;
}

static unsigned count_legal(const tn_sm *m)
{
    unsigned n = 0;

    for (unsigned st = 0; st < m->nstates; st++)
        for (unsigned ev = 0; ev < m->nevents; ev++)
            if (tn_sm_next(m, st, ev).to != TN_SM_ILLEGAL)
                n++;
    return n;
}

/* Every transition line of the spec is in the table, and nothing else is legal. */
static void check_table_against_spec(const tn_sm *m, const char *name)
{
    spec *s = read_spec(name);

    for (int i = 0; i < s->ntrans; i++) {
        const spec_trans *t = &s->trans[i];
        int from = tn_sm_state_id(m, t->from);
        int event = tn_sm_event_id(m, t->event);
        tn_sm_trans next;

        cr_assert_geq(from, 0, "%s:%d: state %s unknown to the table", s->path, t->line,
                      t->from);
        cr_assert_geq(event, 0, "%s:%d: event %s unknown to the table", s->path, t->line,
                      t->event);
        next = tn_sm_next(m, (unsigned)from, (unsigned)event);
        cr_expect_neq(next.to, TN_SM_ILLEGAL, "%s:%d: %s + %s is illegal in the table", s->path,
                      t->line, t->from, t->event);
        cr_expect_str_eq(tn_sm_state_name(m, next.to), t->to, "%s:%d: %s + %s", s->path,
                         t->line, t->from, t->event);
    }
    cr_expect_eq(count_legal(m), (unsigned)s->ntrans, "%s: table has %u legal entries, spec %d",
                 s->path, count_legal(m), s->ntrans);
    cr_expect_eq(m->ntrans, (unsigned)s->ntrans);
    free(s);
}

/* States, events, initial and final states are the spec's, in the spec's order (the ids
 * are stored in the log, so the order is part of the format). */
static void check_names_against_spec(const tn_sm *m, const char *name)
{
    spec *s = read_spec(name);

    cr_assert_eq(m->nstates, (unsigned)s->nstates + 1, "%s", s->path);
    cr_expect_str_eq(m->state_names[TN_SM_NEW], "NEW");
    cr_expect_not(m->final[TN_SM_NEW], "NEW is never final");
    for (int i = 0; i < s->nstates; i++) {
        cr_expect_str_eq(m->state_names[i + 1], s->states[i], "%s: state %d", s->path, i + 1);
        cr_expect_eq(tn_sm_is_final(m, (unsigned)i + 1), spec_is_final(s, s->states[i]),
                     "%s: %s final", s->path, s->states[i]);
    }
    cr_assert_eq(m->nevents, (unsigned)s->nevents, "%s", s->path);
    for (int i = 0; i < s->nevents; i++)
        cr_expect_str_eq(m->event_names[i], s->events[i], "%s: event %d", s->path, i);
    cr_expect_str_eq(tn_sm_state_name(m, m->initial), s->initial, "%s: initial", s->path);
    free(s);
}

Test(sm_table, workflow_matches_spec)
{
    check_names_against_spec(&tn_sm_workflow, "workflow");
    check_table_against_spec(&tn_sm_workflow, "workflow");
}

Test(sm_table, task_matches_spec)
{
    check_names_against_spec(&tn_sm_task, "task");
    check_table_against_spec(&tn_sm_task, "task");
}

Test(sm_table, system_matches_spec)
{
    check_names_against_spec(&tn_sm_system, "system");
    check_table_against_spec(&tn_sm_system, "system");
}

/* ---- DolphinScheduler semantics, written out by hand ---- */

static unsigned state_id(const tn_sm *m, const char *name)
{
    int id = tn_sm_state_id(m, name);

    cr_assert_geq(id, 0, "%s has no state %s", m->name, name);
    return (unsigned)id;
}

static unsigned event_id(const tn_sm *m, const char *name)
{
    int id = tn_sm_event_id(m, name);

    cr_assert_geq(id, 0, "%s has no event %s", m->name, name);
    return (unsigned)id;
}

/* from + event -> to, or illegal when to is NULL. */
static void expect_next(const tn_sm *m, const char *from, const char *event, const char *to)
{
    tn_sm_trans t = tn_sm_next(m, state_id(m, from), event_id(m, event));

    if (!to) {
        cr_expect_eq(t.to, TN_SM_ILLEGAL, "%s: %s + %s should be illegal, goes to %s", m->name,
                     from, event, tn_sm_state_name(m, t.to));
        return;
    }
    cr_expect_neq(t.to, TN_SM_ILLEGAL, "%s: %s + %s should be legal", m->name, from, event);
    cr_expect_str_eq(tn_sm_state_name(m, t.to), to, "%s: %s + %s", m->name, from, event);
}

static bool in_list(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return true;
    return false;
}

/* The machine's final states are exactly these. */
static void expect_finals(const tn_sm *m, const char *const *finals)
{
    for (unsigned s = 0; s < m->nstates; s++)
        cr_expect_eq(tn_sm_is_final(m, s), in_list(tn_sm_state_name(m, s), finals),
                     "%s: state %s final", m->name, tn_sm_state_name(m, s));
}

Test(sm_semantics, task_late_or_duplicate_report_never_moves_final_state)
{
    /* seed 001: an ACCEPTED (RUNNING) after SUCCESS is refused, as is a second result */
    expect_next(&tn_sm_task, "SUCCESS", "RUNNING", NULL);
    expect_next(&tn_sm_task, "SUCCESS", "SUCCEEDED", NULL);
    expect_next(&tn_sm_task, "SUCCESS", "FAILED", NULL);
    expect_next(&tn_sm_task, "FAILURE", "RUNNING", NULL);
    expect_next(&tn_sm_task, "FAILURE", "SUCCEEDED", NULL);
    expect_next(&tn_sm_task, "KILL", "RUNNING", NULL);
    expect_next(&tn_sm_task, "KILL", "KILLED", NULL);
    expect_next(&tn_sm_task, "PAUSE", "RUNNING", NULL);
}

Test(sm_semantics, task_retry_and_failover)
{
    expect_next(&tn_sm_task, "FAILURE", "RETRY", "DELAY_EXECUTION");
    expect_next(&tn_sm_task, "RUNNING_EXECUTION", "FAILOVER", "NEED_FAULT_TOLERANCE");
    expect_next(&tn_sm_task, "DISPATCH", "FAILOVER", "NEED_FAULT_TOLERANCE");
    expect_next(&tn_sm_task, "NEED_FAULT_TOLERANCE", "DISPATCH", "SUBMITTED_SUCCESS");
    cr_expect_not(tn_sm_is_final(&tn_sm_task, state_id(&tn_sm_task, "NEED_FAULT_TOLERANCE")));
}

/* a task waiting for a worker stays SUBMITTED_SUCCESS (as DolphinScheduler shows it)
 * and is DISPATCH once a worker is chosen */
Test(sm_semantics, task_waits_for_a_worker_in_submitted_success)
{
    expect_next(&tn_sm_task, "SUBMITTED_SUCCESS", "DISPATCH", "SUBMITTED_SUCCESS");
    expect_next(&tn_sm_task, "DELAY_EXECUTION", "DISPATCH", "SUBMITTED_SUCCESS");
    expect_next(&tn_sm_task, "SUBMITTED_SUCCESS", "DISPATCHED", "DISPATCH");
    expect_next(&tn_sm_task, "SUBMITTED_SUCCESS", "PAUSE", "PAUSE");
    expect_next(&tn_sm_task, "SUBMITTED_SUCCESS", "KILL", "KILL");
    expect_next(&tn_sm_task, "SUBMITTED_SUCCESS", "FAILED", "FAILURE");
}

Test(sm_semantics, task_result_may_overtake_accepted)
{
    expect_next(&tn_sm_task, "DISPATCH", "RUNNING", "RUNNING_EXECUTION");
    expect_next(&tn_sm_task, "DISPATCH", "SUCCEEDED", "SUCCESS");
    expect_next(&tn_sm_task, "DISPATCH", "FAILED", "FAILURE");
    expect_next(&tn_sm_task, "RUNNING_EXECUTION", "SUCCEEDED", "SUCCESS");
}

Test(sm_semantics, task_final_states_left_only_by_explicit_events)
{
    static const char *const finals[] = {"PAUSE", "FAILURE",        "SUCCESS",
                                         "KILL",  "FORCED_SUCCESS", NULL};
    static const char *const leave[] = {"RETRY", "FORCE_SUCCESS", "RECOVER", "RERUN", NULL};
    const tn_sm *m = &tn_sm_task;

    expect_finals(m, finals);
    for (unsigned s = 0; s < m->nstates; s++) {
        if (!tn_sm_is_final(m, s))
            continue;
        for (unsigned e = 0; e < m->nevents; e++) {
            tn_sm_trans t = tn_sm_next(m, s, e);

            if (t.to == TN_SM_ILLEGAL)
                continue;
            cr_expect(in_list(tn_sm_event_name(m, e), leave), "task: final %s accepts %s",
                      tn_sm_state_name(m, s), tn_sm_event_name(m, e));
            cr_expect_neq(t.to, s, "task: %s + %s stays in a final state",
                          tn_sm_state_name(m, s), tn_sm_event_name(m, e));
        }
    }
}

Test(sm_semantics, workflow_pause_and_stop)
{
    expect_next(&tn_sm_workflow, "RUNNING_EXECUTION", "PAUSE", "READY_PAUSE");
    expect_next(&tn_sm_workflow, "READY_PAUSE", "PAUSED", "PAUSE");
    expect_next(&tn_sm_workflow, "RUNNING_EXECUTION", "STOP", "READY_STOP");
    expect_next(&tn_sm_workflow, "READY_STOP", "STOPPED", "STOP");
    expect_next(&tn_sm_workflow, "READY_PAUSE", "STOP", "READY_STOP");
    expect_next(&tn_sm_workflow, "SUCCESS", "TASK_FINISHED", NULL);
}

Test(sm_semantics, workflow_final_states_only_recover_rerun)
{
    static const char *const finals[] = {"SUCCESS", "FAILURE", "STOP", "PAUSE", NULL};
    static const char *const allowed[] = {"RECOVER", "RERUN", NULL};
    const tn_sm *m = &tn_sm_workflow;

    expect_finals(m, finals);
    for (unsigned s = 0; s < m->nstates; s++) {
        if (!tn_sm_is_final(m, s))
            continue;
        for (unsigned e = 0; e < m->nevents; e++)
            if (tn_sm_next(m, s, e).to != TN_SM_ILLEGAL)
                cr_expect(in_list(tn_sm_event_name(m, e), allowed),
                          "workflow: final %s accepts %s", tn_sm_state_name(m, s),
                          tn_sm_event_name(m, e));
    }
}

Test(sm_semantics, out_of_range_ids_are_illegal)
{
    for (unsigned i = 1; i <= TN_MACHINE_MAX; i++) {
        const tn_sm *m = tn_sm_get(i);

        cr_assert_not_null(m);
        cr_expect_eq(tn_sm_next(m, m->nstates, 0).to, TN_SM_ILLEGAL);
        cr_expect_eq(tn_sm_next(m, 0, m->nevents).to, TN_SM_ILLEGAL);
        cr_expect_eq(tn_sm_next(m, TN_SM_ILLEGAL, TN_SM_ILLEGAL).to, TN_SM_ILLEGAL);
        cr_expect_eq(tn_sm_next(m, UINT_MAX, UINT_MAX).to, TN_SM_ILLEGAL);
        cr_expect_eq(tn_sm_next(m, m->initial, UINT_MAX).to, TN_SM_ILLEGAL);
        cr_expect_not(tn_sm_is_final(m, m->nstates));
        cr_expect_not(tn_sm_is_final(m, UINT_MAX));
    }
}

Test(sm_semantics, hand_picked_illegal_pairs)
{
    static const struct {
        const tn_sm *m;
        const char *from, *event;
    } illegal[] = {
        {&tn_sm_workflow, "NEW", "START"},
        {&tn_sm_workflow, "NEW", "TASK_FINISHED"},
        {&tn_sm_workflow, "SUBMITTED_SUCCESS", "SUCCEED"},
        {&tn_sm_workflow, "SUBMITTED_SUCCESS", "TASK_FINISHED"},
        {&tn_sm_workflow, "RUNNING_EXECUTION", "SUBMIT"},
        {&tn_sm_workflow, "RUNNING_EXECUTION", "PAUSED"},
        {&tn_sm_workflow, "RUNNING_EXECUTION", "STOPPED"},
        {&tn_sm_workflow, "READY_PAUSE", "PAUSE"},
        {&tn_sm_workflow, "READY_STOP", "PAUSE"},
        {&tn_sm_workflow, "READY_STOP", "SUCCEED"},
        {&tn_sm_workflow, "SUCCESS", "RECOVER"},
        {&tn_sm_workflow, "SUCCESS", "SUCCEED"},
        {&tn_sm_workflow, "STOP", "STOPPED"},
        {&tn_sm_workflow, "PAUSE", "PAUSED"},
        {&tn_sm_workflow, "FAILURE", "FAILED"},
        {&tn_sm_workflow, "SERIAL_WAIT", "TASK_FINISHED"},
        {&tn_sm_workflow, "FAILOVER", "SUCCEED"},
        {&tn_sm_task, "NEW", "RUNNING"},
        {&tn_sm_task, "NEW", "SUCCEEDED"},
        {&tn_sm_task, "DISPATCH", "DISPATCHED"},
        {&tn_sm_task, "DISPATCH", "PAUSE"},
        {&tn_sm_task, "RUNNING_EXECUTION", "DISPATCH"},
        {&tn_sm_task, "FAILURE", "FAILED"},
        {&tn_sm_task, "KILL", "SUCCEEDED"},
        {&tn_sm_task, "KILL", "RETRY"},
        {&tn_sm_task, "SUCCESS", "RETRY"},
        {&tn_sm_task, "SUCCESS", "FORCE_SUCCESS"},
        {&tn_sm_task, "FORCED_SUCCESS", "RETRY"},
        {&tn_sm_task, "FORCED_SUCCESS", "FAILED"},
        {&tn_sm_task, "NEED_FAULT_TOLERANCE", "SUCCEEDED"},
        {&tn_sm_system, "NEW", "DEF_APPLIED"},
        {&tn_sm_system, "ACTIVE", "INIT"},
    };

    for (size_t i = 0; i < sizeof illegal / sizeof illegal[0]; i++)
        expect_next(illegal[i].m, illegal[i].from, illegal[i].event, NULL);
}

/* ---- names ---- */

Test(sm_names, machines_by_id_and_name)
{
    static const struct {
        unsigned id;
        const char *name;
        const tn_sm *m;
    } all[] = {
        {TN_MACHINE_WORKFLOW, "workflow", &tn_sm_workflow},
        {TN_MACHINE_TASK, "task", &tn_sm_task},
        {TN_MACHINE_SYSTEM, "system", &tn_sm_system},
    };

    for (size_t i = 0; i < 3; i++) {
        cr_expect_eq(tn_sm_get(all[i].id), all[i].m, "tn_sm_get(%u)", all[i].id);
        cr_expect_eq(tn_sm_by_name(all[i].name), all[i].m, "tn_sm_by_name(%s)", all[i].name);
        cr_expect_str_eq(all[i].m->name, all[i].name);
        cr_expect_eq((unsigned)all[i].m->machine, all[i].id);
    }
    cr_expect_null(tn_sm_get(0));
    cr_expect_null(tn_sm_get(TN_MACHINE_MAX + 1));
    cr_expect_null(tn_sm_get(UINT_MAX));
    cr_expect_null(tn_sm_by_name("Workflow"));
    cr_expect_null(tn_sm_by_name(""));
    cr_expect_null(tn_sm_by_name("tasks"));
    cr_expect_null(tn_sm_by_name(NULL));
}

Test(sm_names, ids_and_names_round_trip)
{
    for (unsigned i = 1; i <= TN_MACHINE_MAX; i++) {
        const tn_sm *m = tn_sm_get(i);

        cr_assert_not_null(m);
        for (unsigned s = 0; s < m->nstates; s++)
            cr_expect_eq(tn_sm_state_id(m, tn_sm_state_name(m, s)), (int)s, "%s state %u",
                         m->name, s);
        for (unsigned e = 0; e < m->nevents; e++)
            cr_expect_eq(tn_sm_event_id(m, tn_sm_event_name(m, e)), (int)e, "%s event %u",
                         m->name, e);
        cr_expect_str_eq(tn_sm_state_name(m, 0), "NEW");
    }
}

Test(sm_names, unknown_names_and_ids)
{
    const tn_sm *m = &tn_sm_task;

    cr_expect_str_eq(tn_sm_state_name(m, m->nstates), "?");
    cr_expect_str_eq(tn_sm_state_name(m, UINT_MAX), "?");
    cr_expect_str_eq(tn_sm_event_name(m, m->nevents), "?");
    cr_expect_str_eq(tn_sm_state_name(NULL, 0), "?");
    cr_expect_eq(tn_sm_state_id(m, "RUNNING"), -1); /* an event, not a state */
    cr_expect_eq(tn_sm_state_id(m, "success"), -1); /* names are case-sensitive */
    cr_expect_eq(tn_sm_state_id(m, ""), -1);
    cr_expect_eq(tn_sm_state_id(m, NULL), -1);
    cr_expect_eq(tn_sm_event_id(m, "SUCCESS"), -1); /* a state, not an event */
    cr_expect_eq(tn_sm_event_id(m, NULL), -1);
    cr_expect_eq(tn_sm_event_id(NULL, "START"), -1);
}

Test(sm_names, generated_enums_agree_with_names)
{
    cr_expect_eq(TN_WF_S__COUNT, tn_sm_workflow.nstates);
    cr_expect_eq(TN_WF_E__COUNT, tn_sm_workflow.nevents);
    cr_expect_eq(TN_TASK_S__COUNT, tn_sm_task.nstates);
    cr_expect_eq(TN_TASK_E__COUNT, tn_sm_task.nevents);
    cr_expect_eq(TN_SYS_S__COUNT, tn_sm_system.nstates);
    cr_expect_eq(TN_WF_S_NEW, 0);
    cr_expect_str_eq(tn_sm_state_name(&tn_sm_workflow, TN_WF_S_RUNNING_EXECUTION),
                     "RUNNING_EXECUTION");
    cr_expect_str_eq(tn_sm_event_name(&tn_sm_workflow, TN_WF_E_TASK_FINISHED), "TASK_FINISHED");
    cr_expect_str_eq(tn_sm_state_name(&tn_sm_task, TN_TASK_S_NEED_FAULT_TOLERANCE),
                     "NEED_FAULT_TOLERANCE");
    cr_expect_str_eq(tn_sm_event_name(&tn_sm_task, TN_TASK_E_FORCE_SUCCESS), "FORCE_SUCCESS");
    cr_expect_eq(tn_sm_workflow.initial, TN_WF_S_SUBMITTED_SUCCESS);
    cr_expect_eq(tn_sm_task.initial, TN_TASK_S_SUBMITTED_SUCCESS);
}

/* ---- renderings ---- */

static void trim(char *s)
{
    size_t n = strlen(s);
    char *p = s;

    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
    while (*p == ' ')
        p++;
    memmove(s, p, strlen(p) + 1);
}

/* The Markdown table rows are the spec's transitions, in order; the DOT graph has an edge
 * per transition and a double circle per final state. */
static void check_renderings(const tn_sm *m, const char *name)
{
    spec *s = read_spec(name);
    char header[64], edge[512];
    const char *p;
    int rows = 0, edges = 0, doubles = 0;

    snprintf(header, sizeof header, "digraph %s {\n", name);
    cr_expect_eq(strncmp(m->dot, header, strlen(header)), 0, "%s.dot starts: %.40s", name,
                 m->dot);
    snprintf(header, sizeof header, "## %s state machine\n", name);
    cr_expect_eq(strncmp(m->md, header, strlen(header)), 0, "%s.md starts: %.40s", name, m->md);

    for (int i = 0; i < s->ntrans; i++) {
        const spec_trans *t = &s->trans[i];

        snprintf(edge, sizeof edge, "\"%s\" -> \"%s\" [label=\"%s\"];\n", t->from, t->to,
                 t->event);
        cr_expect_not_null(strstr(m->dot, edge), "%s.dot lacks %s", name, edge);
        cr_expect_not_null(strstr(m->md, t->event), "%s.md lacks %s", name, t->event);
    }
    for (p = m->dot; (p = strstr(p, " -> ")); p++)
        edges++;
    for (p = m->dot; (p = strstr(p, "doublecircle")); p++)
        doubles++;
    cr_expect_eq(edges, s->ntrans, "%s.dot edges", name);
    cr_expect_eq(doubles, s->nfinals, "%s.dot double circles", name);

    /* Table rows: "| From | Event | To |", a rule, then one row per transition. */
    p = strstr(m->md, "| From");
    cr_assert_not_null(p, "%s.md has no table", name);
    for (int line = 0; *p == '|'; line++) {
        char row[512], cell[3][NAME_LEN + 16];
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int n;

        cr_assert_lt(len, sizeof row);
        memcpy(row, p, len);
        row[len] = '\0';
        p += len + (end ? 1 : 0);
        if (line < 2)
            continue;
        n = sscanf(row, "|%79[^|]|%79[^|]|%79[^|]|", cell[0], cell[1], cell[2]);
        cr_assert_eq(n, 3, "%s.md: bad row %s", name, row);
        for (int i = 0; i < 3; i++)
            trim(cell[i]);
        cr_assert_lt(rows, s->ntrans, "%s.md: more rows than transitions", name);
        cr_expect_str_eq(cell[0], s->trans[rows].from, "%s.md row %d", name, rows);
        cr_expect_str_eq(cell[1], s->trans[rows].event, "%s.md row %d", name, rows);
        cr_expect_str_eq(cell[2], s->trans[rows].to, "%s.md row %d", name, rows);
        rows++;
    }
    cr_expect_eq(rows, s->ntrans, "%s.md rows", name);
    free(s);
}

Test(sm_render, workflow_dot_and_md)
{
    check_renderings(&tn_sm_workflow, "workflow");
}

Test(sm_render, task_dot_and_md)
{
    check_renderings(&tn_sm_task, "task");
}

/* ---- smgen ---- */

typedef struct run {
    char dir[64];   /* temp dir, removed by run_done */
    char out[128];  /* --out-dir, created empty */
    char spec[128]; /* the spec written by run_spec */
    int status;     /* exit status, or -1 when smgen did not exit */
    char err[4096]; /* its stderr */
} run;

static void run_init(run *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/test_sm.XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir), "mkdtemp: %s", strerror(errno));
    snprintf(r->out, sizeof r->out, "%s/out", r->dir);
    cr_assert_eq(mkdir(r->out, 0700), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void run_done(run *r)
{
    cr_expect_eq(nftw(r->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0, "cannot remove %s",
                 r->dir);
}

/* Runs smgen --out-dir r->out on the given specs; fills r->status and r->err. */
static void run_smgen(run *r, const char *const *specs, int nspecs)
{
    const char *bin = getenv("SMGEN_BIN");
    char errpath[PATH_MAX];
    const char *argv[8];
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st, argc = 0;
    FILE *f;
    size_t n;

    cr_assert_not_null(bin, "SMGEN_BIN must point at the smgen binary");
    cr_assert_leq(nspecs, 4);
    argv[argc++] = bin;
    argv[argc++] = "--out-dir";
    argv[argc++] = r->out;
    for (int i = 0; i < nspecs; i++)
        argv[argc++] = specs[i];
    argv[argc] = NULL;

    snprintf(errpath, sizeof errpath, "%s/stderr", r->dir);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_eq(posix_spawn(&pid, bin, &fa, NULL, (char *const *)argv, environ), 0,
                 "cannot run %s", bin);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;

    f = fopen(errpath, "r");
    cr_assert_not_null(f);
    n = fread(r->err, 1, sizeof r->err - 1, f);
    r->err[n] = '\0';
    fclose(f);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    cr_assert_not_null(d);
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void run_spec(run *r, const char *text)
{
    const char *specs[1] = {r->spec};
    FILE *f;

    snprintf(r->spec, sizeof r->spec, "%s/bad.sm", r->dir);
    f = fopen(r->spec, "w");
    cr_assert_not_null(f);
    cr_assert_geq(fputs(text, f), 0);
    cr_assert_eq(fclose(f), 0);
    run_smgen(r, specs, 1);
}

/* smgen refuses text with "FILE:LINE:" and a reason containing `why`, and writes nothing. */
static void expect_rejected(const char *text, int line, const char *why)
{
    run r;
    char where[PATH_MAX + 16];

    run_init(&r);
    run_spec(&r, text);
    snprintf(where, sizeof where, "%s:%d: ", r.spec, line);
    cr_expect(r.status > 0, "smgen exited %d, expected failure", r.status);
    cr_expect_not_null(strstr(r.err, where), "stderr lacks \"%s\": %s", where, r.err);
    cr_expect_not_null(strstr(r.err, why), "stderr lacks \"%s\": %s", why, r.err);
    cr_expect_eq(count_files(r.out), 0, "smgen wrote output for a bad spec");
    run_done(&r);
}

#define GOOD_HEAD               \
    "# a small valid machine\n" \
    "machine task T\n"          \
    "states A B\n"              \
    "initial A\n"               \
    "final B\n"                 \
    "events GO DONE\n"

Test(smgen, accepts_a_valid_spec)
{
    run r;

    run_init(&r);
    run_spec(&r, GOOD_HEAD "NEW GO A\n"
                           "A DONE B\n");
    cr_expect_eq(r.status, 0, "smgen failed: %s", r.err);
    cr_expect_str_eq(r.err, "");
    cr_expect_eq(count_files(r.out), 4, "sm_gen.h, sm_gen.c, task.dot, task.md");
    run_done(&r);
}

Test(smgen, rejects_duplicate_from_event)
{
    expect_rejected(GOOD_HEAD "NEW GO A\n"
                              "A DONE B\n"
                              "\n"
                              "A DONE A\n",
                    10, "duplicate transition A + DONE");
}

Test(smgen, rejects_undeclared_state)
{
    expect_rejected(GOOD_HEAD "NEW GO A\n"
                              "A DONE C\n",
                    8, "undeclared state");
}

Test(smgen, rejects_undeclared_event)
{
    expect_rejected(GOOD_HEAD "NEW GO A\n"
                              "A STOP B\n",
                    8, "undeclared event");
}

Test(smgen, rejects_unreachable_state)
{
    expect_rejected("machine task T\n"
                    "states A B\n"
                    "states C # line 3: nothing leads here\n"
                    "initial A\n"
                    "final B\n"
                    "events GO DONE\n"
                    "NEW GO A\n"
                    "A DONE B\n"
                    "C DONE B\n",
                    3, "state C is not reachable");
}

Test(smgen, rejects_state_with_no_path_to_final)
{
    expect_rejected("machine task T\n"
                    "states A B C\n"
                    "initial A\n"
                    "final B\n"
                    "events GO DONE\n"
                    "NEW GO A\n"
                    "A DONE B\n"
                    "A GO C\n",
                    2, "state C has no path to a final state");
}

Test(smgen, rejects_bad_token_count)
{
    expect_rejected(GOOD_HEAD "NEW GO A\n"
                              "A DONE\n",
                    8, "3 tokens");
    expect_rejected(GOOD_HEAD "NEW GO A create\n", 7, "3 tokens");
}

Test(smgen, rejects_unknown_directive)
{
    expect_rejected("machine task T\n"
                    "state A\n",
                    2, "unknown directive \"state\"");
}

Test(smgen, rejects_duplicate_state_and_event)
{
    expect_rejected("machine task T\n"
                    "states A B\n"
                    "states B\n",
                    3, "duplicate state B");
    expect_rejected("machine task T\n"
                    "states A\n"
                    "events GO\n"
                    "events STOP GO\n",
                    4, "duplicate event GO");
}

Test(smgen, rejects_missing_machine_or_initial)
{
    expect_rejected("# nothing\n"
                    "states A\n",
                    2, "machine");
    expect_rejected("\n"
                    "machine task T\n"
                    "states A\n"
                    "events GO\n"
                    "NEW GO A\n",
                    2, "no 'initial'");
}

Test(smgen, rejects_bad_names)
{
    expect_rejected("machine job T\n", 1, "unknown machine \"job\"");
    expect_rejected("machine task T\n"
                    "states A Bad\n",
                    2, "bad state name");
    expect_rejected(GOOD_HEAD "A GO NEW\n", 7, "NEW is not allowed");
}

Test(smgen, rejects_overlong_input)
{
    char text[4096];
    int n;

    n = snprintf(text, sizeof text, "machine task T\nstates A");
    for (int i = 0; i < 300; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, " S%d", i);
    snprintf(text + n, sizeof text - (size_t)n, "\n");
    expect_rejected(text, 2, "longer than");

    n = snprintf(text, sizeof text, "machine task T\nstates ");
    memset(text + n, 'A', 100);
    snprintf(text + n + 100, sizeof text - (size_t)n - 100, "\n");
    expect_rejected(text, 2, "longer than");
}

/* The files smgen writes hold the same text as the strings compiled into the tables. */
static void expect_file_equals(const char *path, const char *text)
{
    static char buf[1 << 16];
    FILE *f = fopen(path, "r");
    size_t n;

    cr_assert_not_null(f, "cannot open %s", path);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    cr_expect_str_eq(buf, text, "%s differs from the compiled string", path);
}

Test(smgen, files_match_compiled_strings)
{
    const char *src = getenv("TERN_SRC");
    static const char *const names[] = {"workflow", "task", "system"};
    char specs[3][PATH_MAX], path[PATH_MAX];
    const char *argv[3];
    run r;

    cr_assert_not_null(src);
    for (int i = 0; i < 3; i++) {
        snprintf(specs[i], sizeof specs[i], "%s/statemachines/%s.sm", src, names[i]);
        argv[i] = specs[i];
    }
    run_init(&r);
    run_smgen(&r, argv, 3);
    cr_assert_eq(r.status, 0, "smgen failed: %s", r.err);
    for (int i = 0; i < 3; i++) {
        const tn_sm *m = tn_sm_by_name(names[i]);

        snprintf(path, sizeof path, "%s/%s.dot", r.out, names[i]);
        expect_file_equals(path, m->dot);
        snprintf(path, sizeof path, "%s/%s.md", r.out, names[i]);
        expect_file_equals(path, m->md);
    }
    run_done(&r);
}

/* docs/STATEMACHINES.md shows the tables; it must not drift from the specs. */
Test(sm_render, docs_show_current_tables)
{
    const char *src = getenv("TERN_SRC");
    static char doc[1 << 16];
    char path[PATH_MAX];
    FILE *f;
    size_t n;

    cr_assert_not_null(src);
    snprintf(path, sizeof path, "%s/docs/STATEMACHINES.md", src);
    f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    n = fread(doc, 1, sizeof doc - 1, f);
    doc[n] = '\0';
    fclose(f);
    cr_expect_not_null(strstr(doc, tn_sm_workflow.md),
                       "%s is out of date: paste build/statemachines/workflow.md into it",
                       path);
    cr_expect_not_null(strstr(doc, tn_sm_task.md),
                       "%s is out of date: paste build/statemachines/task.md into it", path);
}

/* `tern sm coverage`: 0 only when every spec transition has a count and nothing recorded
 * is outside the spec. */
static int coverage_run(const char *lines, bool all, char *out, size_t outsz)
{
    char dir[] = "/tmp/tern-smcov-XXXXXX", file[64], cmd[PATH_MAX + 256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/c.cov", dir);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    for (unsigned i = 1; all && i <= TN_MACHINE_MAX; i++) {
        const tn_sm *m = tn_sm_get(i);
        for (unsigned s = 0; s < m->nstates; s++)
            for (unsigned e = 0; e < m->nevents; e++)
                if (tn_sm_next(m, s, e).to != TN_SM_ILLEGAL)
                    fprintf(f, "%s %s %s %s 1\n", m->name, tn_sm_state_name(m, s),
                            tn_sm_event_name(m, e),
                            tn_sm_state_name(m, tn_sm_next(m, s, e).to));
    }
    fputs(lines, f);
    fclose(f);
    const char *tern = getenv("TERN_BIN");
    cr_assert_not_null(tern);
    snprintf(cmd, sizeof cmd, "%s sm coverage %s 2>&1", tern, file);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    unlink(file);
    rmdir(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(sm_coverage, passes_only_when_every_line_is_reached_and_nothing_else)
{
    static char out[1 << 16];
    cr_expect_eq(coverage_run("", true, out, sizeof out), 0, "%s", out);
    cr_expect_null(strstr(out, "NEVER REACHED"), "%s", out);
    cr_expect_eq(
        coverage_run("workflow NEW SUBMIT SUBMITTED_SUCCESS 3\n", false, out, sizeof out), 1,
        "%s", out);
    cr_expect_not_null(strstr(out, "NEVER REACHED"), "%s", out);
    cr_expect_eq(coverage_run("workflow SUCCESS PAUSE READY_PAUSE 1\n", true, out, sizeof out),
                 1, "%s", out);
    cr_expect_not_null(strstr(out, "NOT IN SPEC  workflow SUCCESS PAUSE -> READY_PAUSE"), "%s",
                       out);
}

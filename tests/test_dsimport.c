/* DolphinScheduler import and export: every mapped field of each generation (fixtures in
 * tests/ds), each refusal with its JSON path, the real exports of ../shared/ds-exports when
 * present, export then import giving the same canonical bytes, and the CLI end to end. */
#include <stdarg.h>

#include "ds.h"
#include "testutil.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *b = malloc(1 << 20);
    *len = fread(b, 1, (1 << 20) - 1, f);
    b[*len] = 0;
    fclose(f);
    return b;
}

static void fixture_path(char *out, size_t n, const char *name)
{
    const char *src = getenv("TERN_SRC");
    cr_assert_not_null(src, "TERN_SRC is not set (run the tests through meson test)");
    snprintf(out, n, "%s/tests/ds/%s", src, name);
}

/* The folder of real exports beside the checkout, or NULL (those cases then skip). */
static const char *samples_dir(void)
{
    static char dir[4200];
    const char *src = getenv("TERN_SRC");
    if (!src)
        return NULL;
    /* beside the checkout, or beside the folder of worktrees that holds it */
    for (int up = 1; up <= 2; up++) {
        snprintf(dir, sizeof(dir), "%s/%s../shared/ds-exports", src, up == 2 ? "../" : "");
        if (access(dir, R_OK) == 0)
            return dir;
    }
    return NULL;
}

static void import_path(const char *path, const tn_ds_opts *o, tn_ds_result *r)
{
    size_t len;
    char *buf = slurp(path, &len);
    cr_assert_not_null(buf, "cannot read %s", path);
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_ds_import(buf, len, o, r, &m), TN_OK, "%s: %s", path, m.text);
    free(buf);
}

static void import_fixture(const char *name, const tn_ds_opts *o, tn_ds_result *r)
{
    char p[4200];
    fixture_path(p, sizeof(p), name);
    import_path(p, o, r);
}

static const tn_ds_wf *wf(const tn_ds_result *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->wfs[i].name && strcmp(r->wfs[i].name, name) == 0)
            return &r->wfs[i];
    cr_assert_fail("no workflow \"%s\" in the result", name);
    return NULL;
}

static const tn_def_task *task(const tn_def *d, const char *name)
{
    int32_t i = tn_def_task_find(d, name);
    cr_assert_geq(i, 0, "no task \"%s\" in %s", name, d->name);
    return &d->tasks[i];
}

static const char *param(const tn_def_kvs *kv, const char *key)
{
    for (uint32_t i = 0; i < kv->n; i++)
        if (strcmp(kv->items[i].key, key) == 0)
            return kv->items[i].value;
    return NULL;
}

static bool has(char **list, size_t n, const char *text)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(list[i], text))
            return true;
    return false;
}

static const tn_def *imported(const tn_ds_result *r, const char *name)
{
    const tn_ds_wf *w = wf(r, name);
    cr_assert_not_null(w->def, "%s refused: %s", name, w->n_problems ? w->problems[0] : "?");
    return w->def;
}

/* ---- the 2.0-3.2 generation: every field that maps ----------------------------------- */

Test(mapping, v32_shell_fields_params_and_placement)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("v32_mapped.json", &o, &r);
    cr_assert_str_eq(r.generation, "2.0-3.2");
    const tn_def *d = imported(&r, "每日同步");
    cr_assert_str_eq(d->description, "nightly sync");
    cr_assert_eq(d->execution, TN_DEF_EXEC_SERIAL_WAIT);
    cr_assert_eq(d->timeout_ms, 3600000u);
    cr_assert_str_eq(param(&d->params, "dt"), "${system.biz.date}");
    cr_assert_null(param(&d->params, "ret"), "an OUT global is no param");
    cr_assert(has(r.wfs[0].notes, r.wfs[0].n_notes, "processDefinition.globalParams[1]"));
    const tn_def_task *t = task(d, "抽取");
    cr_assert_eq(t->type, TN_DEF_TASK_SHELL);
    cr_assert_str_eq(t->command, "echo extract ${region}\necho '${setValue(rows=42)}'");
    cr_assert_str_eq(param(&t->params, "region"), "eu");
    cr_assert_null(param(&t->params, "rows"));
    cr_assert_eq(t->retries, 2);
    cr_assert_eq(t->retry_interval_ms, 180000u);
    cr_assert_eq(t->delay_ms, 60000u);
    cr_assert_eq(t->timeout_ms, 600000u);
    cr_assert_eq(t->timeout_strategy, TN_DEF_TIMEOUT_FAIL);
    cr_assert_eq(t->priority, TN_DEF_PRIO_HIGH);
    cr_assert_str_eq(t->worker_group, "etl");
    cr_assert_str_eq(t->task_group, "ds-task-group-5");
    cr_assert_str_eq(t->environment, "ds-env-7");
    cr_assert_eq(t->cpu_max_milli, 1500u);
    cr_assert_eq(t->memory_max, 512u << 20);
    const tn_def_task *la = task(d, "load_a");
    cr_assert_str_eq(param(&la->params, "rows"), "",
                     "an IN param without value takes upstream's");
    cr_assert_eq(la->timeout_strategy, TN_DEF_TIMEOUT_WARNFAIL);
    cr_assert_eq(la->timeout_ms, 90u * 60000u);
    cr_assert_eq(la->priority, TN_DEF_PRIO_LOWEST);
    cr_assert_str_eq(la->worker_group, "default");
    cr_assert_eq(la->n_deps, 1);
    cr_assert_str_eq(la->deps[0].name, "抽取");
    cr_assert_not(task(d, "old_step")->enabled, "flag NO is a disabled task");
    cr_assert(task(d, "small")->enabled);
    tn_ds_import_free(&r);
}

Test(mapping, v32_logic_tasks_and_schedule)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("v32_mapped.json", &o, &r);
    const tn_def *d = imported(&r, "每日同步");
    const tn_def_task *c = task(d, "check");
    cr_assert_eq(c->type, TN_DEF_TASK_CONDITIONS);
    cr_assert_eq(c->cond.mode, TN_DEF_COND_ANY);
    cr_assert_eq(c->cond.n_when, 2);
    cr_assert_str_eq(c->cond.when[1].task.name, "old_step");
    cr_assert_eq(c->cond.when[1].state, TN_DEF_STATE_FAILURE);
    cr_assert_str_eq(c->cond.on_success[0].name, "measure");
    cr_assert_str_eq(c->cond.on_failure[0].name, "alert");
    const tn_def_task *s = task(d, "route");
    cr_assert_eq(s->sw.n_cases, 1);
    cr_assert_str_eq(s->sw.cases[0].when, "${size} > 3");
    cr_assert_str_eq(s->sw.cases[0].then.name, "big");
    cr_assert_str_eq(s->sw.dflt.name, "small");
    const tn_def_task *b = task(d, "big");
    cr_assert_eq(b->type, TN_DEF_TASK_SUB_WORKFLOW);
    cr_assert_str_eq(b->sub.workflow, "child",
                     "a SUB_PROCESS code names a workflow of the file");
    cr_assert_eq(b->retries, 1);
    const tn_def_task *w = task(d, "wait_upstream");
    cr_assert_eq(w->dep.relation, TN_DEF_REL_OR);
    cr_assert_eq(w->dep.n_depends, 3);
    cr_assert_str_eq(w->dep.depends[0].date, "last1");
    cr_assert_str_eq(w->dep.depends[0].task, "ALL");
    cr_assert_str_eq(w->dep.depends[1].task, "work", "depTaskCode names a task of the target");
    cr_assert_eq(w->dep.depends[1].cycle, TN_DEF_CYCLE_HOUR);
    cr_assert_str_eq(w->dep.depends[1].date, "last24");
    cr_assert_str_eq(w->dep.depends[2].task, "ALL", "depTaskCode -1 is the whole workflow");
    cr_assert_str_eq(w->dep.depends[2].date, "last_month_end");
    cr_assert_eq(w->dep.check_interval_ms, 30000u);
    cr_assert_eq(w->dep.failure_policy, TN_DEF_FPOLICY_WAIT);
    cr_assert_eq(w->dep.failure_wait_ms, 300000u);
    cr_assert_eq(w->timeout_ms, 6u * 3600000u);
    cr_assert_str_eq(task(d, "weekly")->dep.depends[0].date, "last_sunday");
    cr_assert_str_eq(task(d, "weekly")->dep.depends[1].date, "this_week");
    cr_assert_not_null(d->schedule);
    cr_assert_str_eq(d->schedule->cron, "0 30 2 * * ? *");
    cr_assert_str_eq(d->schedule->tz, "Asia/Shanghai");
    /* 2026-01-01 00:00 in Shanghai is 2025-12-31 16:00 UTC */
    cr_assert_eq(d->schedule->start_ns, 1767196800ll * 1000000000ll);
    cr_assert_str_eq(d->schedule->failure_strategy, "continue");
    cr_assert_str_eq(d->schedule->priority, "high");
    cr_assert_str_eq(d->schedule->worker_group, "etl");
    cr_assert_str_eq(d->tenant, "etl_user");
    tn_ds_import_free(&r);
}

Test(mapping, offline_schedule_skipped_with_a_note_or_imported_with_all)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("v32_mapped.json", &o, &r);
    const tn_ds_wf *c = wf(&r, "child");
    cr_assert_null(c->def->schedule);
    cr_assert(has(c->notes, c->n_notes, "skipped: it is OFFLINE"));
    tn_ds_import_free(&r);
    o.all_schedules = true;
    import_fixture("v32_mapped.json", &o, &r);
    cr_assert_not_null(wf(&r, "child")->def->schedule);
    cr_assert_str_eq(wf(&r, "child")->def->schedule->cron, "0 0 * * * ? *");
    tn_ds_import_free(&r);
}

Test(mapping, v13_string_json_names_and_schedule_fields)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("v13_mapped.json", &o, &r);
    cr_assert_str_eq(r.generation, "1.3");
    const tn_def *d = imported(&r, "父流程");
    cr_assert_eq(d->timeout_ms, 30u * 60000u);
    cr_assert_str_eq(d->description, "父 workflow");
    cr_assert_str_eq(param(&d->params, "region"), "cn");
    const tn_def_task *p = task(d, "准备");
    cr_assert_str_eq(param(&p->params, "dt"), "20260101");
    cr_assert_eq(p->retries, 2);
    cr_assert_eq(p->retry_interval_ms, 300000u);
    cr_assert_eq(p->priority, TN_DEF_PRIO_HIGHEST);
    cr_assert_str_eq(p->worker_group, "etl");
    cr_assert_eq(p->timeout_ms, 15u * 60000u);
    cr_assert_eq(p->timeout_strategy, TN_DEF_TIMEOUT_WARNFAIL);
    cr_assert_not(task(d, "skip_me")->enabled, "runFlag FORBIDDEN");
    const tn_def_task *c = task(d, "cond");
    cr_assert_eq(c->cond.n_when, 1);
    cr_assert_eq(c->cond.n_on_success, 1);
    cr_assert_eq(c->cond.n_on_failure, 0, "1.3's [\"\"] is an empty list");
    cr_assert_str_eq(task(d, "run_child")->sub.workflow, "子流程", "by processDefinitionId");
    const tn_def_task *w = task(d, "wait_child");
    cr_assert_str_eq(w->dep.depends[0].workflow, "子流程", "by definitionId");
    cr_assert_str_eq(w->dep.depends[1].task, "work");
    cr_assert_str_eq(w->dep.depends[1].date, "last_month_begin");
    cr_assert_str_eq(d->schedule->cron, "0 0 3 * * ? *");
    cr_assert_str_eq(d->schedule->tz, "UTC");
    cr_assert_str_eq(d->schedule->priority, "low");
    cr_assert(has(r.wfs[0].notes, r.wfs[0].n_notes, "no time zone"));
    tn_ds_import_free(&r);
}

Test(mapping, v33_key_names_sub_workflow_and_limits)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("v33_mapped.json", &o, &r);
    cr_assert_str_eq(r.generation, "3.3");
    const tn_def *d = imported(&r, "ods_load");
    cr_assert_eq(d->execution, TN_DEF_EXEC_SERIAL_PRIORITY);
    cr_assert_str_eq(task(d, "nested")->sub.workflow, "ods_child");
    cr_assert_eq(task(d, "nested")->timeout_ms, 300000u);
    cr_assert_eq(task(d, "fetch")->cpu_max_milli, 500u);
    cr_assert_eq(task(d, "fetch")->memory_max, 256u << 20);
    cr_assert_str_eq(d->schedule->tz, "America/New_York");
    cr_assert_null(d->tenant, "tenant \"default\" is the worker's own user");
    cr_assert_str_eq(imported(&r, "ods_child")->description, "the child");
    tn_ds_import_free(&r);
}

/* ---- refusals ------------------------------------------------------------------------ */

static void assert_refused(const tn_ds_result *r, const char *name, const char *problem)
{
    const tn_ds_wf *w = wf(r, name);
    cr_assert_null(w->def, "%s should be refused", name);
    cr_assert(has(w->problems, w->n_problems, problem), "%s: no problem \"%s\" (first: %s)",
              name, problem, w->n_problems ? w->problems[0] : "none");
}

Test(refusal, malformed_exports_name_the_json_path)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("malformed.json", &o, &r);
    assert_refused(
        &r, "unknown_pre",
        "$[0].processTaskRelationList[1].preTaskCode: 99 is no task of this workflow");
    assert_refused(&r, "a_cycle", "$[1].processTaskRelationList[3]: closes a cycle");
    assert_refused(&r, "no_relations", "$[2].processTaskRelationList: missing or empty");
    assert_refused(&r, "bad_sub",
                   "$[3].taskDefinitionList[0].taskParams.processDefinitionCode");
    assert_refused(&r, "bad_branch",
                   "$[4].taskDefinitionList[1].taskParams.conditionResult.failedNode[0]: 4 is "
                   "not a direct successor");
    assert_refused(&r, "bad_dependent",
                   "$[5].taskDefinitionList[0].taskParams.dependence.dependTaskList[0]."
                   "dependItemList[0].definitionCode: 777 is no workflow of this file");
    /* minutes * 60000 would wrap to a small timeout: refused with tern's limit instead */
    assert_refused(&r, "over_limits",
                   "$[6]: bad duration \"307445734561825861m\" for \"timeout\" in task \"t\"");
    tn_ds_import_free(&r);
}

Test(refusal, unsupported_tasks_listed_each_with_type_and_reason)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_fixture("unsupported.json", &o, &r);
    const tn_ds_wf *w = wf(&r, "uses_plugins");
    cr_assert_null(w->def);
    cr_assert_eq(w->n_problems, 5);
    cr_assert(has(w->problems, 5, "$[0].processDefinition.warningGroupId: alert group 3"));
    cr_assert(has(w->problems, 5, "task \"q\" (SQL) at $[0].taskDefinitionList[1]"));
    cr_assert(has(w->problems, 5, "task \"res\" (SHELL)"));
    cr_assert(has(w->problems, 5, "resourceList"));
    cr_assert(has(w->problems, 5, "task \"mixed\" (CONDITIONS)"));
    cr_assert(has(w->problems, 5, "task \"stream\" (SHELL)"));
    tn_ds_import_free(&r);
}

Test(refusal, placeholder_keeps_the_dag_with_failing_shell_tasks)
{
    tn_ds_opts o = {.placeholder = true};
    tn_ds_result r = {0};
    import_fixture("unsupported.json", &o, &r);
    const tn_def *d = imported(&r, "uses_plugins");
    const tn_def_task *q = task(d, "q");
    cr_assert_eq(q->type, TN_DEF_TASK_SHELL);
    cr_assert(strstr(param(&q->params, "ds_placeholder"), "DolphinScheduler SQL task \"q\""));
    cr_assert_eq(task(d, "mixed")->type, TN_DEF_TASK_SHELL);
    cr_assert_eq(task(d, "after")->n_deps, 1);
    cr_assert_str_eq(task(d, "after")->deps[0].name, "mixed");
    cr_assert(has(r.wfs[0].notes, r.wfs[0].n_notes, "alert group 3 dropped"));
    tn_ds_import_free(&r);
}

Test(refusal, a_file_that_is_not_an_export)
{
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    tn_errmsg m = {{0}};
    const char *bad = "[{\"processDefinition\": }]";
    cr_assert_eq(tn_ds_import(bad, strlen(bad), &o, &r, &m), TN_ERR_PARSE);
    cr_assert(strstr(m.text, "line 1, column"), "%s", m.text);
    cr_assert_eq(tn_ds_import("42", 2, &o, &r, &m), TN_ERR_PARSE);
    const char *odd = "[{\"something\": 1}]";
    cr_assert_eq(tn_ds_import(odd, strlen(odd), &o, &r, &m), TN_OK);
    cr_assert_null(r.wfs[0].def);
    cr_assert(has(r.wfs[0].problems, r.wfs[0].n_problems, "$[0]: neither"));
    tn_ds_import_free(&r);
}

/* ---- the real exports ---------------------------------------------------------------- */

typedef struct sample {
    const char *file;
    const char *wf;
    const char *problem; /* NULL: imports */
    size_t n_problems;   /* exactly this many reasons */
} sample;

static const sample samples[] = {
    {"v1.3_subprocess-dependent-shell-python.json", "sub", NULL, 0},
    {"v1.3_subprocess-dependent-shell-python.json", "test1", "task \"python\" (PYTHON)", 1},
    {"v2.0_3flows-http-dependent-subprocess-localparams.json", "test1",
     "task \"http\" (HTTP) at $[0].taskDefinitionList[2]", 2},
    {"v2.0_3flows-http-dependent-subprocess-localparams.json", "test2", NULL, 0},
    {"v2.0_3flows-http-dependent-subprocess-localparams.json", "test3",
     "task \"pthon\" (PYTHON)", 1},
    {"v3.1_4flows-subprocess-shell-python-sql.json", "shell1", NULL, 0},
    {"v3.1_4flows-subprocess-shell-python-sql.json", "python1",
     "task \"python_task1\" (PYTHON)", 1},
    {"v3.1_4flows-subprocess-shell-python-sql.json", "sql_p1", "task \"sql_task1\" (SQL)", 1},
    {"v3.1_4flows-subprocess-shell-python-sql.json", "subprocess1", NULL, 0},
    {"v3.1_switch-shell-compact.json", "switch_proc1", "condition \"if $test==1\"", 2},
    {"v3.2_conditions-shell-cn.json", "条件节点测试工作流", NULL, 0},
    {"v3.2_shell-python-retry.json", "shell1", "task \"python1\" (PYTHON)", 1},
    {"v3.3_ds-import-NEGATIVE-missing-relations.json", "shell_task",
     "$[0].workflowTaskRelationList: missing or empty", 1},
    {"v3.3_ds-import-shell-schedule.json", "shell_task", NULL, 0},
};

Test(samples, each_real_export_imports_or_is_refused_for_its_reasons)
{
    const char *dir = samples_dir();
    if (!dir)
        cr_skip_test("no ../shared/ds-exports beside the source tree");
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        char p[8400];
        snprintf(p, sizeof(p), "%s/%s", dir, samples[i].file);
        tn_ds_opts o = {0};
        tn_ds_result r = {0};
        import_path(p, &o, &r);
        cr_assert_eq(wf(&r, samples[i].wf)->n_problems, samples[i].n_problems, "%s: %s",
                     samples[i].file, samples[i].wf);
        if (samples[i].problem)
            assert_refused(&r, samples[i].wf, samples[i].problem);
        else
            imported(&r, samples[i].wf);
        tn_ds_import_free(&r);
        /* with --placeholder, only the malformed one stays refused */
        o.placeholder = true;
        import_path(p, &o, &r);
        if (strstr(samples[i].file, "NEGATIVE"))
            cr_assert_null(wf(&r, samples[i].wf)->def);
        else
            imported(&r, samples[i].wf);
        tn_ds_import_free(&r);
    }
}

Test(samples, schedule_with_time_zone_and_window)
{
    const char *dir = samples_dir();
    if (!dir)
        cr_skip_test("no ../shared/ds-exports beside the source tree");
    char p[8400];
    snprintf(p, sizeof(p), "%s/v3.3_ds-import-shell-schedule.json", dir);
    tn_ds_opts o = {0};
    tn_ds_result r = {0};
    import_path(p, &o, &r);
    const tn_def *d = imported(&r, "shell_task");
    cr_assert_str_eq(d->schedule->cron, "0 2/2 * * * ? *");
    cr_assert_str_eq(d->schedule->tz, "Asia/Shanghai");
    cr_assert_eq(d->schedule->start_ns, 1744473600ll * 1000000000ll); /* 2025-04-13 +08:00 */
    cr_assert_str_eq(d->schedule->failure_strategy, "continue");
    cr_assert_str_eq(d->tenant, "tenant1");
    cr_assert_str_eq(task(d, "sudo")->command, "echo 2");
    tn_ds_import_free(&r);
}

/* ---- export, and back ---------------------------------------------------------------- */

/* Export the imported definitions of r in `version`, import that, and compare each
 * definition's canonical encoding with the original's. */
static void assert_round_trip(const tn_ds_result *r, const char *version)
{
    tn_def *defs[64];
    size_t n = 0;
    for (size_t i = 0; i < r->n && n < 64; i++)
        if (r->wfs[i].def)
            defs[n++] = r->wfs[i].def;
    cr_assert_gt(n, 0);
    char *text = NULL;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_ds_export(defs, n, version, &text, &m), TN_OK, "%s", m.text);
    tn_ds_opts o = {0};
    tn_ds_result back = {0};
    cr_assert_eq(tn_ds_import(text, strlen(text), &o, &back, &m), TN_OK, "%s", m.text);
    cr_assert_str_eq(back.generation, strcmp(version, "3.3") == 0 ? "3.3" : "2.0-3.2");
    cr_assert_eq(back.n, n);
    for (size_t i = 0; i < n; i++) {
        const tn_def *b = imported(&back, defs[i]->name);
        char *e1, *e2;
        size_t l1, l2;
        cr_assert_eq(tn_def_encode(defs[i], &e1, &l1), TN_OK);
        cr_assert_eq(tn_def_encode(b, &e2, &l2), TN_OK);
        cr_assert(
            l1 == l2 && memcmp(e1, e2, l1) == 0,
            "%s (%s): the definition changed on its way through DolphinScheduler's format",
            defs[i]->name, version);
        free(e1);
        free(e2);
    }
    tn_ds_import_free(&back);
    free(text);
}

Test(roundtrip, fixtures_come_back_as_the_same_definitions)
{
    const char *files[] = {"v32_mapped.json", "v33_mapped.json", "v13_mapped.json"};
    for (size_t i = 0; i < 3; i++) {
        tn_ds_opts o = {.all_schedules = true};
        tn_ds_result r = {0};
        import_fixture(files[i], &o, &r);
        assert_round_trip(&r, "3.2");
        assert_round_trip(&r, "3.3");
        tn_ds_import_free(&r);
    }
}

Test(roundtrip, real_exports_come_back_as_the_same_definitions)
{
    const char *dir = samples_dir();
    if (!dir)
        cr_skip_test("no ../shared/ds-exports beside the source tree");
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        if (strstr(samples[i].file, "NEGATIVE") ||
            (i && samples[i].file == samples[i - 1].file))
            continue;
        char p[8400];
        snprintf(p, sizeof(p), "%s/%s", dir, samples[i].file);
        tn_ds_opts o = {.placeholder = true};
        tn_ds_result r = {0};
        import_path(p, &o, &r);
        assert_round_trip(&r, "3.3");
        tn_ds_import_free(&r);
    }
}

static const char native_wf[] = "name: native\n"
                                "params: {a: \"1\"}\n"
                                "execution: serial_discard\n"
                                "timeout: 2h\n"
                                "schedule: {cron: \"0 0 1 * * ?\", timezone: Europe/Berlin,"
                                " start: 2026-05-01, priority: low, failure_strategy: end}\n"
                                "tasks:\n"
                                "  - {name: x, type: shell, command: echo x, retries: 3,"
                                " retry_interval: 10m, cpu_max: 0.25, memory_max: 1G,"
                                " worker_group: g1, delay: 5m}\n"
                                "  - name: d\n"
                                "    type: dependent\n"
                                "    deps: [x]\n"
                                "    depends: [{workflow: native2, task: t, cycle: hour,"
                                " date: this_hour}, {workflow: native2, cycle: week,"
                                " date: last_friday}]\n";
static const char native_wf2[] =
    "name: native2\n"
    "tasks:\n"
    "  - {name: t, type: shell, command: echo t, enabled: false}\n";

Test(roundtrip, a_definition_written_in_tern_comes_back)
{
    tn_def *d[2];
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_def_parse("native.yaml", native_wf, strlen(native_wf), &d[0], &m), TN_OK,
                 "%s", m.text);
    cr_assert_eq(tn_def_parse("native2.yaml", native_wf2, strlen(native_wf2), &d[1], &m), TN_OK,
                 "%s", m.text);
    tn_ds_result r = {.n = 2,
                      .wfs = (tn_ds_wf[2]){{.def = d[0], .name = "native"},
                                           {.def = d[1], .name = "native2"}}};
    assert_round_trip(&r, "3.2");
    assert_round_trip(&r, "3.3");
    tn_def_free(d[0]);
    tn_def_free(d[1]);
}

Test(roundtrip, export_refuses_what_dolphinscheduler_cannot_say)
{
    const char *cases[][2] = {
        {"name: n\ntasks:\n  - {name: a, type: noop}\n", "noop tasks"},
        {"name: n\ntasks:\n  - {name: a, type: shell, command: x, retries: 1, retry_interval: "
         "30s}\n",
         "\"retry_interval\" is not a whole number of minutes"},
        {"name: n\nfailure_strategy: continue\ntasks:\n  - {name: a, type: shell, command: "
         "x}\n",
         "set per run"},
        {"name: n\nschedule: {cron: \"0 0 1 * * ?\", overlap: skip}\ntasks:\n"
         "  - {name: a, type: shell, command: x}\n",
         "overlap"},
        {"name: n\ntasks:\n  - {name: a, type: shell, command: x, kill_grace: 1s}\n",
         "kill_grace"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tn_def *d;
        tn_errmsg m = {{0}};
        cr_assert_eq(tn_def_parse("x.yaml", cases[i][0], strlen(cases[i][0]), &d, &m), TN_OK,
                     "%s", m.text);
        char *text = NULL;
        cr_assert_eq(tn_ds_export(&d, 1, "3.3", &text, &m), TN_ERR_UNSUPPORTED, "case %zu", i);
        cr_assert(strstr(m.text, cases[i][1]), "case %zu: %s", i, m.text);
        cr_assert_null(text);
        tn_def_free(d);
    }
}

/* ---- the command line ---------------------------------------------------------------- */

static char cli_dir[256]; /* removed by the suite's fini even when an assertion ends a test */

static void cli_fini(void)
{
    if (cli_dir[0])
        tu_rm_rf(cli_dir);
    cli_dir[0] = 0;
}

TestSuite(cli, .fini = cli_fini);

/* `tern ARGS` in the test's temp dir; its status, and stdout and stderr in *out, *err. */
__attribute__((format(printf, 3, 4))) static int tern(char **out, char **err, const char *fmt,
                                                      ...)
{
    char args[8192], line[12288];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "cd '%s' && '%s' %s", cli_dir, tu_tern(), args);
    free(*out);
    free(*err);
    return tu_run(line, out, err);
}

static void cli_start(void)
{
    char *d = tu_tmpdir();
    snprintf(cli_dir, sizeof(cli_dir), "%s", d);
    free(d);
}

/* Import into a fresh store with YAML copies, run one imported workflow (with a
 * sub-workflow) to its end, export it and import it back: unchanged. */
Test(cli, import_run_export_and_back_unchanged)
{
    cli_start();
    char *out = NULL, *err = NULL, fx[4200];
    fixture_path(fx, sizeof(fx), "v33_mapped.json");
    cr_assert_eq(tern(&out, &err, "import ds '%s' --dry-run --data d", fx), 0, "%s", err);
    cr_assert(strstr(out, "ods_load: can be imported"), "%s", out);
    cr_assert_neq(tern(&out, &err, "def ls --data d"), 0, "a dry run stores nothing");
    cr_assert_eq(tern(&out, &err, "import ds '%s' --data d --out yaml", fx), 0, "%s", err);
    cr_assert(strstr(out, "ods_load: imported (version 1)"), "%s", out);
    cr_assert_eq(tern(&out, &err, "def apply yaml/ods_load.yaml yaml/ods_child.yaml --data d"),
                 0, "%s", err);
    cr_assert(strstr(out, "yaml/ods_load.yaml: ods_load unchanged (version 1)"), "%s", out);
    cr_assert_eq(tern(&out, &err, "run yaml/ods_load.yaml --data d"), 0, "%s%s", out, err);
    cr_assert(strstr(out, "nested                   SUCCESS"), "%s", out);
    cr_assert(strstr(out, "workflow ods_load instance 1: SUCCESS"), "%s", out);
    cr_assert_eq(tern(&out, &err,
                      "export ds ods_load ods_child --version 3.3 --out back.json "
                      "--data d"),
                 0, "%s", err);
    cr_assert_eq(tern(&out, &err, "import ds back.json --data d --json"), 0, "%s", err);
    cr_assert(strstr(out, "\"name\":\"ods_load\",\"code\":"), "%s", out);
    cr_assert(strstr(out, "\"status\":\"unchanged\",\"version\":1"), "%s", out);
    cr_assert_eq(tern(&out, &err, "export ds ods_load --version 3.2 --data d"), 0, "%s", err);
    cr_assert(strstr(out, "\"processTaskRelationList\""), "3.2 names: %s", out);
    free(out);
    free(err);
}

/* A refused file stores nothing and lists why; --placeholder imports it, and its run goes
 * around the placeholders, which fail saying what they were. */
Test(cli, refused_then_placeholders_run)
{
    cli_start();
    char *out = NULL, *err = NULL, fx[4200];
    fixture_path(fx, sizeof(fx), "unsupported.json");
    cr_assert_eq(tern(&out, &err, "import ds '%s' --data d", fx), 1);
    cr_assert(strstr(out, "task \"q\" (SQL) at $[0].taskDefinitionList[1]"), "%s", out);
    cr_assert(strstr(err, "1 of 1 workflows refused"), "%s", err);
    cr_assert_neq(tern(&out, &err, "def ls --data d"), 0, "nothing stored");
    cr_assert_eq(tern(&out, &err, "import ds '%s' --placeholder --data d --out y", fx), 0, "%s",
                 err);
    cr_assert(strstr(out, "became a placeholder"), "%s", out);
    /* the placeholder alone (the first task instance), so its log is task 1's */
    cr_assert_eq(tern(&out, &err, "run y/uses_plugins.yaml --from q --mode task_only --data d"),
                 1, "%s", out);
    cr_assert(strstr(out, "q                        FAILURE"), "%s", out);
    cr_assert(strstr(out, "instance 1: FAILURE"), "%s", out);
    cr_assert_eq(tern(&out, &err, "logs 1 --data d"), 0, "%s", err);
    cr_assert(strstr(out, "placeholder for the DolphinScheduler SQL task \"q\""), "%s", out);
    free(out);
    free(err);
}

/* A real export (Chinese names, CONDITIONS) runs on the standalone's engine to its end. */
Test(cli, real_export_runs_to_its_end)
{
    const char *dir = samples_dir();
    if (!dir)
        cr_skip_test("no ../shared/ds-exports beside the source tree");
    cli_start();
    char *out = NULL, *err = NULL;
    cr_assert_eq(tern(&out, &err,
                      "import ds '%s/v3.2_conditions-shell-cn.json' --data d "
                      "--out y",
                      dir),
                 0, "%s", err);
    tern(&out, &err, "run y/条件节点测试工作流.yaml --data d");
    /* its scripts are "aaa", "bbb": both fail, the conditions task sends it to shell4 */
    cr_assert(strstr(out, "condi                    SUCCESS"), "%s", out);
    cr_assert(strstr(out, "shell4                   FAILURE"), "%s", out);
    cr_assert_null(strstr(out, "shell3 "), "the branch not taken is never created: %s", out);
    cr_assert(strstr(out, "workflow 条件节点测试工作流 instance 1: FAILURE"), "%s", out);
    free(out);
    free(err);
}

Test(cli, usage_errors_exit_2)
{
    cli_start();
    char *out = NULL, *err = NULL;
    cr_assert_eq(tern(&out, &err, "import airflow x.json"), 2);
    cr_assert_eq(tern(&out, &err, "import ds x.json --schedules some"), 2);
    cr_assert_eq(tern(&out, &err, "export ds wf"), 2, "--version is required");
    cr_assert_eq(tern(&out, &err, "export ds wf --version 3.0"), 2);
    cr_assert_eq(tern(&out, &err, "import ds missing.json --data d"), 1);
    cr_assert(strstr(err, "missing.json: cannot open"), "%s", err);
    cr_assert_eq(tern(&out, &err, "import --help"), 0);
    cr_assert(strstr(out, "--placeholder"), "%s", out);
    free(out);
    free(err);
}

/* With a standalone serving the data directory, the import goes through its control
 * channel (the standalone owns the store), and the imported workflow runs there. */
Test(cli, import_through_a_running_standalone)
{
    cli_start();
    char fx[4200], line[16384];
    fixture_path(fx, sizeof(fx), "v33_mapped.json");
    const char *t = tu_tern();
    /* the shell starts it, waits for its banner, imports, starts an instance, waits for
     * its end, then ends exactly that pid */
    snprintf(line, sizeof(line),
             "cd '%s'; '%s' standalone --data sd --no-cgroup 2>banner & pid=$!; "
             "for i in $(seq 100); do grep -q running banner && break; sleep 0.1; done; "
             "'%s' import ds '%s' --data sd --json >import.out 2>&1; echo rc=$? >>import.out; "
             "'%s' start ods_load --data sd >start.out 2>&1; "
             "for i in $(seq 100); do '%s' status 1 --data sd >status.out 2>&1; "
             "grep -q 'instance 1 (run 1): SUCCESS' status.out && break; sleep 0.1; done; "
             "kill $pid; wait $pid; cat import.out status.out",
             cli_dir, t, t, fx, t, t);
    char *out = NULL, *err = NULL;
    tu_run(line, &out, &err);
    cr_assert(strstr(out, "\"stored\":true"), "%s", out);
    cr_assert(strstr(out, "{\"name\":\"ods_load\",\"code\":31,\"status\":\"imported\","
                          "\"version\":1"),
              "%s", out);
    cr_assert(strstr(out, "rc=0"), "%s", out);
    cr_assert(strstr(out, "workflow ods_load instance 1 (run 1): SUCCESS"), "%s", out);
    cr_assert(strstr(out, "nested"), "%s", out);
    free(out);
    free(err);
}

/* A later file's SUB_WORKFLOW and DEPENDENT codes find the workflows imported before. */
Test(cli, codes_of_workflows_imported_before_resolve)
{
    cli_start();
    char *out = NULL, *err = NULL, first[4200], later[4200];
    fixture_path(first, sizeof(first), "v33_mapped.json");
    fixture_path(later, sizeof(later), "v33_refers_to_stored.json");
    cr_assert_eq(tern(&out, &err, "import ds '%s' --data d", later), 1, "unknown at first");
    cr_assert(strstr(out, "$[0].taskDefinitionList[1].taskParams.workflowDefinitionCode: names "
                          "no workflow"),
              "%s", out);
    cr_assert_eq(tern(&out, &err, "import ds '%s' --data d", first), 0, "%s", err);
    cr_assert_eq(tern(&out, &err, "import ds '%s' --data d --out y", later), 0, "%s%s", out,
                 err);
    cr_assert_eq(tern(&out, &err, "def show later_parent --data d"), 0, "%s", err);
    cr_assert(strstr(out, "workflow: ods_child"), "%s", out);
    cr_assert(strstr(out, "{workflow: ods_load, task: ALL, cycle: day, date: today}"), "%s",
              out);
    free(out);
    free(err);
}

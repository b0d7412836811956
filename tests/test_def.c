/* Tests of workflow definitions: parsing and defaults, the corpus of bad files and their
 * messages, bounds, and the canonical encoding under truncation and corruption. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def.h"

/* ---- helpers -------------------------------------------------------------------------- */

static char *src_path(const char *rel)
{
    const char *root = getenv("TERN_SRC");
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", root && *root ? root : ".", rel) > 0);
    return p;
}

static tn_def *parse_ok(const char *rel)
{
    char *path = src_path(rel);
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    tn_err err = tn_def_parse_file(path, &d, &msg);
    cr_assert_eq(err, TN_OK, "%s: %s: %s", rel, tn_errname(err), msg.text);
    cr_assert_not_null(d);
    free(path);
    return d;
}

/* With TN_FUZZ_SEEDS=DIR set, the YAML (mode byte 1) and encodings (mode byte 0) the
 * tests use are also written to DIR, to seed the fuzzer's corpus (tests/fuzz/corpus/yaml). */
static void seed_dump(char mode, const void *p, size_t n)
{
    static unsigned seq;
    const char *dir = getenv("TN_FUZZ_SEEDS");
    char path[512];
    if (!dir || snprintf(path, sizeof(path), "%s/test-%c-%03u", dir, mode ? 'y' : 'e', seq++) >=
                    (int)sizeof(path))
        return;
    FILE *f = fopen(path, "we");
    if (f) {
        fputc(mode, f);
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

static tn_err parse_str(const char *yaml, tn_def **out, tn_errmsg *msg)
{
    seed_dump(1, yaml, strlen(yaml));
    return tn_def_parse("t.yaml", yaml, strlen(yaml), out, msg);
}

static const tn_def_task *task(const tn_def *d, const char *name)
{
    int32_t i = tn_def_task_find(d, name);
    cr_assert(i >= 0, "no task %s", name);
    return &d->tasks[i];
}

static int32_t idx(const tn_def *d, const char *name)
{
    int32_t i = tn_def_task_find(d, name);
    cr_assert(i >= 0, "no task %s", name);
    return i;
}

static void encode(const tn_def *d, char **buf, size_t *len)
{
    cr_assert_eq(tn_def_encode(d, buf, len), TN_OK);
    cr_assert(*len > 0);
    seed_dump(0, *buf, *len);
}

/* Sorted names of the .yaml files in a directory under the source root. */
static size_t list_yaml(const char *rel, char ***out)
{
    char *dir = src_path(rel);
    DIR *dh = opendir(dir);
    cr_assert_not_null(dh, "cannot open %s", dir);
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".yaml") != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        cr_assert_not_null(names);
        names[n++] = strdup(de->d_name);
    }
    closedir(dh);
    free(dir);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    *out = names;
    return n;
}

static void free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Every task after all of its deps, every task once; successors mirror deps. */
static void assert_graph(const tn_def *d)
{
    uint32_t *pos = calloc(d->n_tasks, sizeof(*pos));
    bool *seen = calloc(d->n_tasks, sizeof(*seen));
    cr_assert(pos && seen);
    for (uint32_t k = 0; k < d->n_tasks; k++) {
        cr_assert(d->topo[k] < d->n_tasks);
        cr_assert(!seen[d->topo[k]], "task %u twice in topo", d->topo[k]);
        seen[d->topo[k]] = true;
        pos[d->topo[k]] = k;
    }
    for (uint32_t i = 0; i < d->n_tasks; i++) {
        const tn_def_task *t = &d->tasks[i];
        for (uint32_t k = 0; k < t->n_deps; k++) {
            uint32_t up = t->deps[k].index;
            cr_assert_str_eq(d->tasks[up].name, t->deps[k].name);
            cr_assert(pos[up] < pos[i], "%s runs before its dep %s", t->name,
                      d->tasks[up].name);
            bool found = false;
            for (uint32_t s = 0; s < d->tasks[up].n_succ; s++)
                found |= d->tasks[up].succ[s] == i;
            cr_assert(found, "%s missing from successors of %s", t->name, d->tasks[up].name);
        }
        for (uint32_t s = 1; s < t->n_succ; s++)
            cr_assert(t->succ[s - 1] < t->succ[s]);
    }
    free(pos);
    free(seen);
}

/* The parts of two definitions that the encoding does not show: resolved indices and
 * computed fields. */
static void assert_same_graph(const tn_def *a, const tn_def *b)
{
    cr_assert_eq(a->n_tasks, b->n_tasks);
    for (uint32_t i = 0; i < a->n_tasks; i++) {
        const tn_def_task *x = &a->tasks[i], *y = &b->tasks[i];
        cr_assert_eq(a->topo[i], b->topo[i]);
        cr_assert_eq(x->n_deps, y->n_deps);
        for (uint32_t k = 0; k < x->n_deps; k++)
            cr_assert_eq(x->deps[k].index, y->deps[k].index);
        cr_assert_eq(x->n_succ, y->n_succ);
        for (uint32_t k = 0; k < x->n_succ; k++)
            cr_assert_eq(x->succ[k], y->succ[k]);
        cr_assert_eq(x->cond.n_when, y->cond.n_when);
        for (uint32_t k = 0; k < x->cond.n_when; k++)
            cr_assert_eq(x->cond.when[k].task.index, y->cond.when[k].task.index);
        for (uint32_t k = 0; k < x->cond.n_on_success; k++)
            cr_assert_eq(x->cond.on_success[k].index, y->cond.on_success[k].index);
        for (uint32_t k = 0; k < x->cond.n_on_failure; k++)
            cr_assert_eq(x->cond.on_failure[k].index, y->cond.on_failure[k].index);
        cr_assert_eq(x->sw.n_cases, y->sw.n_cases);
        for (uint32_t k = 0; k < x->sw.n_cases; k++)
            cr_assert_eq(x->sw.cases[k].then.index, y->sw.cases[k].then.index);
        cr_assert_eq(x->sw.has_default, y->sw.has_default);
        if (x->sw.has_default)
            cr_assert_eq(x->sw.dflt.index, y->sw.dflt.index);
    }
}

/* ---- scalar syntax ---------------------------------------------------------------------- */

Test(def, durations)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {{"0", 0},
                {"250ms", 250},
                {"10s", 10000},
                {"5m", 300000},
                {"2h", 7200000},
                {"1d", 86400000},
                {"0s", 0},
                {"0ms", 0},
                {"3650d", 3650ull * 86400000},
                {"1h30m", 5400000},
                {"2d4h", 187200000},
                {"1m30s500ms", 90500},
                {"1d1h1m1s1ms", 90061001}};
    static const char *const bad[] = {
        "",       "10",       "1",     "s",     "10 s",  "10S",
        "1.5h",   "-1s",      "+1s",   "30m1h", "1h1h",  "1m30",
        "1h 30m", "3650d1ms", "1ms1s", "10sec", "3651d", "99999999999999999999ms",
        "5 m",    " 5m",      "5m "};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 1;
        cr_assert_eq(tn_parse_duration_ms(good[i].s, &v), TN_OK, "%s", good[i].s);
        cr_assert_eq(v, good[i].ms, "%s", good[i].s);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 7;
        cr_assert_eq(tn_parse_duration_ms(bad[i], &v), TN_ERR_INVAL, "\"%s\"", bad[i]);
        cr_assert_eq(v, 7, "output written on failure for \"%s\"", bad[i]);
    }
    /* the shortest compound form, read back to the same value */
    char buf[32];
    tn_format_duration(5400000, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1h30m");
    tn_format_duration(90500, buf, sizeof(buf));
    cr_assert_str_eq(buf, "1m30s500ms");
    tn_format_duration(0, buf, sizeof(buf));
    cr_assert_str_eq(buf, "0");
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 1;
        tn_format_duration(good[i].ms, buf, sizeof(buf));
        cr_assert_eq(tn_parse_duration_ms(buf, &v), TN_OK, "%s", buf);
        cr_assert_eq(v, good[i].ms, "%s", buf);
    }
}

Test(def, sizes_and_cpu)
{
    uint64_t v = 0;
    cr_assert_eq(tn_parse_size("0", &v), TN_OK);
    cr_assert_eq(v, 0);
    cr_assert_eq(tn_parse_size("4096", &v), TN_OK);
    cr_assert_eq(v, 4096);
    cr_assert_eq(tn_parse_size("1024K", &v), TN_OK);
    cr_assert_eq(v, 1024ull << 10);
    cr_assert_eq(tn_parse_size("512M", &v), TN_OK);
    cr_assert_eq(v, 512ull << 20);
    cr_assert_eq(tn_parse_size("2G", &v), TN_OK);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(tn_parse_size("2g", &v), TN_OK);
    cr_assert_eq(v, 2ull << 30);
    cr_assert_eq(tn_parse_size("1T", &v), TN_OK);
    cr_assert_eq(v, 1ull << 40);
    static const char *const bad_size[] = {
        "", "M", "1.5G", "12Q", "1MB", "-1", "1 G", "99999999999T", "18446744073709551616"};
    for (size_t i = 0; i < sizeof(bad_size) / sizeof(bad_size[0]); i++)
        cr_assert_eq(tn_parse_size(bad_size[i], &v), TN_ERR_INVAL, "%s", bad_size[i]);

    static const struct {
        const char *s;
        uint64_t milli;
    } cpu[] = {{"0", 0},        {"1", 1000},    {"1.5", 1500},      {"0.25", 250},
               {"2.125", 2125}, {"0.500", 500}, {"10000", 10000000}};
    for (size_t i = 0; i < sizeof(cpu) / sizeof(cpu[0]); i++) {
        cr_assert_eq(tn_parse_cpu_milli(cpu[i].s, &v), TN_OK, "%s", cpu[i].s);
        cr_assert_eq(v, cpu[i].milli, "%s", cpu[i].s);
    }
    static const char *const bad_cpu[] = {"",   ".5",  "1.",    "1.2345", "abc",
                                          "-1", "1,5", "10001", "1e3"};
    for (size_t i = 0; i < sizeof(bad_cpu) / sizeof(bad_cpu[0]); i++)
        cr_assert_eq(tn_parse_cpu_milli(bad_cpu[i], &v), TN_ERR_INVAL, "%s", bad_cpu[i]);
}

/* Names are UTF-8 text up to 255 bytes: a 255-byte Chinese workflow name (85 characters
 * of 3 bytes) is accepted end to end through the parser, a 256-byte one, a '/', a control
 * character and malformed UTF-8 are refused with the rule. */
Test(def, names_are_utf8_up_to_255_bytes)
{
    char name[300] = "";
    for (int i = 0; i < 85; i++)
        strcat(name, "\xe6\x95\xb0"); /* 数 */
    cr_assert_eq(strlen(name), 255);
    cr_assert(tn_def_name_valid(name));
    char yaml[700];
    snprintf(yaml, sizeof(yaml), "name: %s\ntasks:\n  - {name: %s, type: noop}\n", name, name);
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(parse_str(yaml, &d, &msg), TN_OK, "%s", msg.text);
    cr_assert_str_eq(d->name, name);
    tn_def_free(d);

    strcat(name, "a");
    cr_assert(!tn_def_name_valid(name));
    snprintf(yaml, sizeof(yaml), "name: %s\ntasks:\n  - {name: a, type: noop}\n", name);
    d = NULL;
    cr_assert_eq(parse_str(yaml, &d, &msg), TN_ERR_PARSE);
    cr_assert(strstr(msg.text, "1..255 bytes of UTF-8"), "%s", msg.text);

    static const char *const bad[] = {"a/b",
                                      "tab\there",
                                      "nl\nx",
                                      "del\x7f",
                                      "c1\xc2\x85",
                                      "\xff",
                                      "\xc3",
                                      "\xc0\xaf" /* overlong '/' */,
                                      "\xed\xa0\x80" /* surrogate */,
                                      "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect(!tn_def_name_valid(bad[i]), "case %zu", i);
    cr_expect(tn_def_name_valid("\xe6\xaf\x8f\xe6\x97\xa5 etl \xf0\x9f\x9a\x80"));
}

Test(def, names_enums_dates)
{
    cr_assert(tn_def_name_valid("daily_etl-v1.2"));
    cr_assert(tn_def_name_valid("a"));
    cr_assert(!tn_def_name_valid(""));
    cr_assert(tn_def_name_valid("a b"));
    cr_assert(!tn_def_name_valid("a/b"));
    cr_assert(tn_def_name_valid("caf\xc3\xa9"));
    char n256[257];
    memset(n256, 'x', 256);
    n256[256] = '\0';
    cr_assert(!tn_def_name_valid(n256));
    n256[255] = '\0';
    cr_assert(tn_def_name_valid(n256));

    tn_def_priority p = TN_DEF_PRIO_LOWEST;
    cr_assert_eq(tn_def_priority_parse("high", &p), TN_OK);
    cr_assert_eq(p, TN_DEF_PRIO_HIGH);
    cr_assert_eq(tn_def_priority_parse("urgent", &p), TN_ERR_INVAL);
    cr_assert_eq(p, TN_DEF_PRIO_HIGH);
    /* highest sorts first */
    cr_assert(TN_DEF_PRIO_HIGHEST < TN_DEF_PRIO_HIGH && TN_DEF_PRIO_HIGH < TN_DEF_PRIO_MEDIUM &&
              TN_DEF_PRIO_MEDIUM < TN_DEF_PRIO_LOW && TN_DEF_PRIO_LOW < TN_DEF_PRIO_LOWEST);
    cr_assert_str_eq(tn_def_priority_allowed(), "highest, high, medium, low, lowest");
    cr_assert_str_eq(tn_def_task_type_name(TN_DEF_TASK_SUB_WORKFLOW), "sub_workflow");
    cr_assert_str_eq(tn_def_task_type_name((tn_def_task_type)99), "?");
    tn_def_exec ex;
    cr_assert_eq(tn_def_exec_parse("serial_priority", &ex), TN_OK);
    cr_assert_eq(ex, TN_DEF_EXEC_SERIAL_PRIORITY);
    tn_def_failure_strategy fs;
    cr_assert_eq(tn_def_failure_strategy_parse("continue", &fs), TN_OK);
    cr_assert_eq(fs, TN_DEF_FAILURE_CONTINUE);
    tn_def_cond_state st;
    cr_assert_eq(tn_def_cond_state_parse("kill", &st), TN_ERR_INVAL);
    cr_assert_eq(tn_def_cond_state_parse(NULL, &st), TN_ERR_INVAL);

    cr_assert(tn_def_date_valid(TN_DEF_CYCLE_DAY, "today"));
    cr_assert(tn_def_date_valid(TN_DEF_CYCLE_DAY, "last7"));
    cr_assert(tn_def_date_valid(TN_DEF_CYCLE_HOUR, "last24"));
    cr_assert(tn_def_date_valid(TN_DEF_CYCLE_HOUR, "this_hour"));
    cr_assert(tn_def_date_valid(TN_DEF_CYCLE_WEEK, "last_friday"));
    cr_assert(tn_def_date_valid(TN_DEF_CYCLE_MONTH, "last_month_begin"));
    cr_assert(!tn_def_date_valid(TN_DEF_CYCLE_DAY, "last0"));
    cr_assert(!tn_def_date_valid(TN_DEF_CYCLE_DAY, "last07"));
    cr_assert(!tn_def_date_valid(TN_DEF_CYCLE_DAY, "last367"));
    cr_assert(!tn_def_date_valid(TN_DEF_CYCLE_WEEK, "today"));
    cr_assert(!tn_def_date_valid(TN_DEF_CYCLE_MONTH, "last1"));

    cr_assert(tn_def_task_key_applies(TN_DEF_TK_COMMAND, TN_DEF_TASK_SHELL));
    cr_assert(!tn_def_task_key_applies(TN_DEF_TK_COMMAND, TN_DEF_TASK_NOOP));
    cr_assert(tn_def_task_key_applies(TN_DEF_TK_WORKER_GROUP, TN_DEF_TASK_NOOP));
    cr_assert(!tn_def_task_key_applies(TN_DEF_TK_WORKER_GROUP, TN_DEF_TASK_SWITCH));
    cr_assert(tn_def_task_key_applies(TN_DEF_TK_RETRIES, TN_DEF_TASK_DEPENDENT));
}

/* ---- good files ------------------------------------------------------------------------- */

Test(def, full_file_fields)
{
    tn_def *d = parse_ok("tests/defs/good/full.yaml");
    cr_assert_str_eq(d->name, "daily_etl");
    cr_assert_str_eq(d->description, "Load yesterday's orders");
    cr_assert_eq(d->params.n, 2);
    cr_assert_str_eq(d->params.items[0].key, "base"); /* sorted by key */
    cr_assert_str_eq(d->params.items[0].value, "/data");
    cr_assert_str_eq(d->params.items[1].key, "dt");
    cr_assert_str_eq(d->params.items[1].value, "${system.biz.date}");
    cr_assert_eq(d->execution, TN_DEF_EXEC_SERIAL_WAIT);
    cr_assert_eq(d->priority, TN_DEF_PRIO_HIGH);
    cr_assert_eq(d->timeout_ms, 2 * 3600 * 1000);
    cr_assert_eq(d->timeout_strategy, TN_DEF_TIMEOUT_WARNFAIL);
    cr_assert_eq(d->failure_strategy, TN_DEF_FAILURE_CONTINUE);
    cr_assert_eq(d->n_tasks, 10);
    cr_assert_eq(d->key_line[TN_DEF_WK_NAME], 2);
    cr_assert_eq(d->key_line[TN_DEF_WK_TASKS], 12);

    const tn_def_task *t = task(d, "extract");
    cr_assert_eq(t->type, TN_DEF_TASK_SHELL);
    cr_assert_eq(t->line, 13);
    cr_assert_eq(t->key_line[TN_DEF_TK_COMMAND], 18);
    cr_assert_eq(t->key_line[TN_DEF_TK_RESULT], 0);
    cr_assert_eq(t->n_deps, 0);
    cr_assert(t->enabled);
    cr_assert_str_eq(t->environment, "hadoop");
    cr_assert_str_eq(t->command, "./extract.sh --date ${dt}\necho '${setValue(rows=1234)}'\n");
    cr_assert_eq(t->params.n, 2);
    cr_assert_str_eq(t->params.items[0].key, "empty");
    cr_assert_str_eq(t->params.items[0].value, "");
    cr_assert_str_eq(t->params.items[1].key, "region");
    cr_assert_str_eq(t->params.items[1].value, "eu");
    cr_assert_eq(t->retries, 2);
    cr_assert_eq(t->retry_interval_ms, 30000);
    cr_assert_eq(t->timeout_ms, 600000);
    cr_assert_eq(t->timeout_strategy, TN_DEF_TIMEOUT_FAIL);
    cr_assert_eq(t->delay_ms, 0);
    cr_assert_eq(t->priority, TN_DEF_PRIO_HIGHEST);
    cr_assert_str_eq(t->worker_group, "etl");
    cr_assert_str_eq(t->task_group, "db_writers");
    cr_assert_eq(t->kill_grace_ms, 7000);
    cr_assert_eq(t->dispatch_timeout_ms, 60000);
    cr_assert_eq(t->memory_max, 512ull << 20);
    cr_assert_eq(t->cpu_max_milli, 1500);
    cr_assert_eq(t->n_succ, 1);
    cr_assert_eq(t->succ[0], (uint32_t)idx(d, "check"));

    t = task(d, "fake");
    cr_assert_eq(t->type, TN_DEF_TASK_NOOP);
    cr_assert(!t->enabled);
    cr_assert_eq(t->noop.result, TN_DEF_NOOP_FAILURE);
    cr_assert_eq(t->noop.duration_ms, 250);
    cr_assert_eq(t->noop.outputs.n, 2);
    cr_assert_str_eq(t->noop.outputs.items[0].key, "a");
    cr_assert_str_eq(t->noop.outputs.items[1].key, "rows");
    cr_assert_str_eq(t->noop.outputs.items[1].value, "42");
    cr_assert_str_eq(t->worker_group, "bench");
    cr_assert_null(t->command);
    cr_assert_eq(t->kill_grace_ms, 5000);

    t = task(d, "check");
    cr_assert_eq(t->type, TN_DEF_TASK_CONDITIONS);
    cr_assert_eq(t->cond.mode, TN_DEF_COND_ANY);
    cr_assert_eq(t->cond.n_when, 2);
    cr_assert_str_eq(t->cond.when[0].task.name, "extract");
    cr_assert_eq(t->cond.when[0].task.index, (uint32_t)idx(d, "extract"));
    cr_assert_eq(t->cond.when[0].state, TN_DEF_STATE_SUCCESS);
    cr_assert_eq(t->cond.when[1].task.index, (uint32_t)idx(d, "fake"));
    cr_assert_eq(t->cond.when[1].state, TN_DEF_STATE_FAILURE);
    cr_assert_eq(t->cond.n_on_success, 1);
    cr_assert_eq(t->cond.on_success[0].index, (uint32_t)idx(d, "load"));
    cr_assert_eq(t->cond.n_on_failure, 1);
    cr_assert_eq(t->cond.on_failure[0].index, (uint32_t)idx(d, "alert"));
    cr_assert_eq(t->n_succ, 2);
    cr_assert_eq(t->succ[0], (uint32_t)idx(d, "load"));
    cr_assert_eq(t->succ[1], (uint32_t)idx(d, "alert"));
    cr_assert_str_eq(t->worker_group, "default");

    t = task(d, "route");
    cr_assert_eq(t->type, TN_DEF_TASK_SWITCH);
    cr_assert_eq(t->sw.n_cases, 2);
    cr_assert_str_eq(t->sw.cases[0].when, "${rows} > 0");
    cr_assert_eq(t->sw.cases[0].then.index, (uint32_t)idx(d, "publish"));
    cr_assert_str_eq(t->sw.cases[1].when, "${rows} == 0");
    cr_assert_eq(t->sw.cases[1].then.index, (uint32_t)idx(d, "skip_load"));
    cr_assert(t->sw.has_default);
    cr_assert_eq(t->sw.dflt.index, (uint32_t)idx(d, "skip_load"));

    t = task(d, "wait_upstream");
    cr_assert_eq(t->type, TN_DEF_TASK_DEPENDENT);
    cr_assert_eq(t->dep.relation, TN_DEF_REL_OR);
    cr_assert_eq(t->dep.n_depends, 3);
    cr_assert_str_eq(t->dep.depends[0].workflow, "crm_sync");
    cr_assert_str_eq(t->dep.depends[0].task, "ALL");
    cr_assert_eq(t->dep.depends[0].cycle, TN_DEF_CYCLE_DAY);
    cr_assert_str_eq(t->dep.depends[0].date, "today");
    cr_assert_str_eq(t->dep.depends[1].task, "close");
    cr_assert_eq(t->dep.depends[1].cycle, TN_DEF_CYCLE_MONTH);
    cr_assert_str_eq(t->dep.depends[1].date, "last_month_end");
    /* an item with only a workflow gets the defaults */
    cr_assert_str_eq(t->dep.depends[2].workflow, "hourly");
    cr_assert_str_eq(t->dep.depends[2].task, TN_DEF_DEPEND_ALL);
    cr_assert_eq(t->dep.depends[2].cycle, TN_DEF_CYCLE_DAY);
    cr_assert_str_eq(t->dep.depends[2].date, "today");
    cr_assert_eq(t->dep.check_interval_ms, 30000);
    cr_assert_eq(t->dep.failure_policy, TN_DEF_FPOLICY_WAIT);
    cr_assert_eq(t->dep.failure_wait_ms, 3600000);

    t = task(d, "child");
    cr_assert_eq(t->type, TN_DEF_TASK_SUB_WORKFLOW);
    cr_assert_str_eq(t->sub.workflow, "load_partitions");
    cr_assert_eq(t->timeout_ms, 86400000);
    cr_assert_eq(t->retries, 1);
    cr_assert_eq(t->n_deps, 2);
    cr_assert_eq(t->deps[0].index, (uint32_t)idx(d, "wait_upstream"));
    cr_assert_eq(t->deps[1].index, (uint32_t)idx(d, "publish"));
    cr_assert_eq(t->n_succ, 0);

    assert_graph(d);
    tn_def_free(d);
}

Test(def, minimal_file_defaults)
{
    tn_def *d = parse_ok("tests/defs/good/minimal.yaml");
    cr_assert_str_eq(d->name, "tiny");
    cr_assert_str_eq(d->description, "");
    cr_assert_eq(d->params.n, 0);
    cr_assert_eq(d->execution, TN_DEF_EXEC_PARALLEL);
    cr_assert_eq(d->priority, TN_DEF_PRIO_MEDIUM);
    cr_assert_eq(d->timeout_ms, 0);
    cr_assert_eq(d->timeout_strategy, TN_DEF_TIMEOUT_WARN);
    cr_assert_eq(d->failure_strategy, TN_DEF_FAILURE_END);
    cr_assert_eq(d->n_tasks, 1);
    const tn_def_task *t = &d->tasks[0];
    cr_assert_str_eq(t->name, "only");
    cr_assert_eq(t->type, TN_DEF_TASK_NOOP);
    cr_assert(t->enabled);
    cr_assert_eq(t->n_deps, 0);
    cr_assert_eq(t->retries, 0);
    cr_assert_eq(t->retry_interval_ms, 0);
    cr_assert_eq(t->timeout_ms, 0);
    cr_assert_eq(t->timeout_strategy, TN_DEF_TIMEOUT_WARN);
    cr_assert_eq(t->delay_ms, 0);
    cr_assert_eq(t->priority, TN_DEF_PRIO_MEDIUM);
    cr_assert_str_eq(t->worker_group, "default");
    cr_assert_null(t->task_group);
    cr_assert_null(t->environment);
    cr_assert_null(t->command);
    cr_assert_eq(t->kill_grace_ms, 5000);
    cr_assert_eq(t->dispatch_timeout_ms, 0);
    cr_assert_eq(t->memory_max, 0);
    cr_assert_eq(t->cpu_max_milli, 0);
    cr_assert_eq(t->noop.result, TN_DEF_NOOP_SUCCESS);
    cr_assert_eq(t->noop.duration_ms, 0);
    cr_assert_eq(t->dep.check_interval_ms, 10000);
    cr_assert_eq(t->line, 3);
    cr_assert_eq(t->key_line[TN_DEF_TK_NAME], 3);
    cr_assert_eq(t->key_line[TN_DEF_TK_TYPE], 4);
    cr_assert_eq(t->key_line[TN_DEF_TK_RETRIES], 0);
    cr_assert_eq(d->topo[0], 0);
    tn_def_free(d);
}

Test(def, topo_order_and_successors)
{
    tn_def *d = parse_ok("tests/defs/good/unordered.yaml");
    /* a(3) first; then the smallest ready index: c(1), b(2), d(0) once both are done,
     * and e(4), which was ready all along but has a larger index. */
    static const char *const want[] = {"a", "c", "b", "d", "e"};
    for (uint32_t k = 0; k < 5; k++)
        cr_assert_str_eq(d->tasks[d->topo[k]].name, want[k], "topo[%u]", k);
    const tn_def_task *a = task(d, "a");
    cr_assert_eq(a->n_succ, 2);
    cr_assert_eq(a->succ[0], (uint32_t)idx(d, "c"));
    cr_assert_eq(a->succ[1], (uint32_t)idx(d, "b"));
    cr_assert_eq(task(d, "d")->n_succ, 0);
    cr_assert_eq(tn_def_task_find(d, "zz"), -1);
    cr_assert_eq(tn_def_task_find(d, ""), -1);
    assert_graph(d);
    tn_def_free(d);
}

Test(def, examples_parse)
{
    char **names;
    size_t n = list_yaml("examples", &names);
    cr_assert(n >= 3, "only %zu examples", n);
    for (size_t i = 0; i < n; i++) {
        char rel[300];
        snprintf(rel, sizeof(rel), "examples/%s", names[i]);
        tn_def *d = parse_ok(rel);
        assert_graph(d);
        /* an example uses only noop, shell and the branching logic tasks */
        for (uint32_t k = 0; k < d->n_tasks; k++)
            cr_assert(d->tasks[k].type != TN_DEF_TASK_DEPENDENT &&
                          d->tasks[k].type != TN_DEF_TASK_SUB_WORKFLOW,
                      "%s", rel);
        tn_def_free(d);
    }
    free_list(names, n);
}

Test(def, parse_from_memory_and_null_values)
{
    /* Null values mean "not written": defaults stay. A param's null value is "". */
    const char *yaml = "name: m\n"
                       "description:\n"
                       "timeout: ~\n"
                       "params: {a: , b: null, c: \"null\"}\n"
                       "tasks:\n"
                       "  - {name: x, type: shell, command: 'true', retries: , deps: }\n";
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(parse_str(yaml, &d, &msg), TN_OK, "%s", msg.text);
    cr_assert_str_eq(d->description, "");
    cr_assert_eq(d->timeout_ms, 0);
    cr_assert_eq(d->params.n, 3);
    cr_assert_str_eq(d->params.items[0].value, "");
    cr_assert_str_eq(d->params.items[1].value, "");
    cr_assert_str_eq(d->params.items[2].value, "null"); /* quoted: a string */
    cr_assert_eq(d->tasks[0].retries, 0);
    cr_assert_eq(d->tasks[0].n_deps, 0);
    tn_def_free(d);
}

/* ---- bad files ---------------------------------------------------------------------------- */

static const struct bad_case {
    const char *file;
    unsigned line;
    const char *text; /* a distinctive part of the message */
} bad_cases[] = {
    {"alias.yaml", 6, "aliases (*common) are not supported"},
    {"bad_bool.yaml", 5,
     "bad value \"yes\" for \"enabled\" in task \"a\" (allowed: true, false)"},
    {"bad_cpu.yaml", 6, "bad cpu count \"1.2345\" for \"cpu_max\""},
    {"bad_date.yaml", 7, "bad date \"today\" for cycle week"},
    {"bad_duration_unit.yaml", 7, "bad duration \"5x\" for \"retry_interval\" in task \"a\""},
    {"bad_priority.yaml", 2, "(allowed: highest, high, medium, low, lowest)"},
    {"bad_size.yaml", 6, "bad size \"12Q\" for \"memory_max\""},
    {"bad_utf8.yaml", 4, "YAML syntax error: invalid trailing UTF-8 octet"},
    {"bad_wf_name.yaml", 1, "bad workflow name \"daily/etl\""},
    {"bare_duration.yaml", 6,
     "bad duration \"10\" for \"timeout\" in task \"a\": a number "
     "needs a unit"},
    {"case_no_then.yaml", 6, "\"cases\" item #1 of task \"route\" has no \"then\""},
    {"cases_on_shell.yaml", 6,
     "key \"cases\" in task \"a\" is for switch tasks; this one is "
     "shell"},
    {"cond_bad_state.yaml", 8, "bad value \"kill\" for \"state\""},
    {"cond_target_not_downstream.yaml", 10,
     "names \"alert\", which does not list \"check\" in "
     "its deps"},
    {"cond_target_unknown.yaml", 10,
     "\"on_failure\" of task \"check\" names unknown task "
     "\"nope\""},
    {"cond_when_not_upstream.yaml", 13, "tests \"other\", which is not in its deps"},
    {"cycle.yaml", 5, "cycle: a -> b -> c -> a"},
    {"dependent_no_depends.yaml", 3, "dependent task \"wait\" needs \"depends\""},
    {"deps_not_list.yaml", 7, "\"deps\" in task \"b\" must be a list, not a string"},
    {"dup_dep.yaml", 4, "task \"b\" lists \"a\" twice in \"deps\""},
    {"dup_key.yaml", 8, "duplicate key \"retries\" in task \"a\" (first at line 6)"},
    {"dup_param.yaml", 8, "duplicate key \"k\" in \"params\" of task \"a\" (first at line 6)"},
    {"dup_task.yaml", 7, "duplicate task name \"a\" (first defined at line 3)"},
    {"empty.yaml", 1, "empty document"},
    {"empty_cases.yaml", 5, "switch task \"route\" needs \"cases\""},
    {"huge_duration.yaml", 2, "the limit is 3650d"},
    {"long_name.yaml", 5, "bad task name \"aaaa"},
    {"misplaced_key.yaml", 6, "\"retries\" is a task key; is it indented right?"},
    {"negative_retries.yaml", 6, "bad value \"-1\" for \"retries\""},
    {"no_name.yaml", 1, "workflow has no \"name\""},
    {"no_tasks.yaml", 1, "workflow \"wf\" has no tasks"},
    {"no_type.yaml", 3, "task \"a\" has no \"type\" (one of shell, noop"},
    {"noop_command.yaml", 5,
     "key \"command\" in task \"a\" is for shell tasks; this one is noop"},
    {"not_mapping.yaml", 1, "must be a mapping with \"name\" and \"tasks\", not a list"},
    {"param_not_string.yaml", 4,
     "\"regions\" in \"params\" of workflow \"wf\" must be a string"},
    {"schedule_bad_cron.yaml", 5,
     "bad \"cron\" in \"schedule\" of workflow \"wf\": cron: \"0 0 25 * * ?\": position 5: "
     "hour 25 is out of range 0-23"},
    {"schedule_bad_zone.yaml", 4,
     "bad \"timezone\" in \"schedule\" of workflow \"wf\": time "
     "zone \"Asia/Shanghia\" is unknown"},
    {"schedule_dst_gap.yaml", 5,
     "time \"2026-03-08 02:30\" does not exist in time zone America/New_York"},
    {"schedule_no_cron.yaml", 2, "\"schedule\" of workflow \"wf\" has no \"cron\""},
    {"schedule_start_after_end.yaml", 5,
     "\"end\" in \"schedule\" of workflow \"wf\" is not "
     "after \"start\""},
    {"schedule_unknown_key.yaml", 4,
     "unknown key \"timezon\" in \"schedule\" of workflow \"wf\" (did you mean "
     "\"timezone\"?)"},
    {"self_dep.yaml", 5, "task \"a\" depends on itself"},
    {"shell_no_command.yaml", 5, "shell task \"b\" needs a non-empty \"command\""},
    {"sub_no_workflow.yaml", 3, "sub_workflow task \"child\" needs \"workflow\""},
    {"sub_self.yaml", 5, "runs its own workflow \"wf\""},
    {"switch_default_not_downstream.yaml", 7,
     "\"default\" of task \"route\" names \"skip\", "
     "which does not list \"route\""},
    {"switch_target_unknown.yaml", 7, "\"cases\" of task \"route\" names unknown task \"lod\""},
    {"syntax.yaml", 6, "YAML syntax error: did not find expected ',' or ']'"},
    {"tab_indent.yaml", 3, "YAML syntax error"},
    {"task_not_map.yaml", 4, "task #2 must be a mapping"},
    {"too_deep.yaml", 5, "nested deeper than 32 levels"},
    {"two_docs.yaml", 4, "a second YAML document"},
    {"unknown_dep.yaml", 8, "task \"load\" depends on unknown task \"extact\""},
    {"unknown_task_key.yaml", 9,
     "unknown key \"comand\" in task \"load\" (did you mean "
     "\"command\"?)"},
    {"unknown_top_key.yaml", 2, "unknown key \"descripton\" in workflow \"wf\""},
    {"unknown_type.yaml", 4, "unknown task type \"shel\" in task \"a\" (allowed: shell, noop"},
    {"wait_no_failure_wait.yaml", 6, "failure_policy wait but no \"failure_wait\""},
    {"when_not_map.yaml", 8, "\"when\" in task \"check\" must be a mapping"},
    {"workflow_key_in_task.yaml", 5, "\"failure_strategy\" is a workflow key"},
    {"worker_key_on_logic.yaml", 9,
     "key \"worker_group\" in task \"b\" is for shell and noop "
     "tasks; this one is sub_workflow"},
};

Test(def, bad_corpus)
{
    char **names;
    size_t n = list_yaml("tests/defs/bad", &names);
    size_t ncase = sizeof(bad_cases) / sizeof(bad_cases[0]);
    cr_assert(ncase >= 25);
    /* every file has an expectation, so the corpus cannot grow unchecked */
    cr_assert_eq(n, ncase, "%zu files in tests/defs/bad, %zu expectations", n, ncase);
    for (size_t i = 0; i < ncase; i++) {
        const struct bad_case *bc = &bad_cases[i];
        char rel[300], prefix[400];
        snprintf(rel, sizeof(rel), "tests/defs/bad/%s", bc->file);
        char *path = src_path(rel);
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        tn_err err = tn_def_parse_file(path, &d, &msg);
        cr_expect(err == TN_ERR_PARSE || err == TN_ERR_TOOBIG, "%s: got %s", bc->file,
                  tn_errname(err));
        cr_expect_null(d, "%s", bc->file);
        snprintf(prefix, sizeof(prefix), "%s:%u: ", path, bc->line);
        cr_expect(strncmp(msg.text, prefix, strlen(prefix)) == 0,
                  "%s: want line %u, got \"%s\"", bc->file, bc->line, msg.text);
        cr_expect(strstr(msg.text, bc->text) != NULL, "%s: want \"%s\" in \"%s\"", bc->file,
                  bc->text, msg.text);
        tn_def_free(d);
        free(path);
    }
    free_list(names, n);
}

Test(def, message_names_the_file_given)
{
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    const char *yaml = "name: x\ntasks:\n  - {name: a, type: noop, deps: [b]}\n";
    cr_assert_eq(tn_def_parse("defs/etl.yaml", yaml, strlen(yaml), &d, &msg), TN_ERR_PARSE);
    cr_assert_str_eq(msg.text, "defs/etl.yaml:3: task \"a\" depends on unknown task \"b\"");
    cr_assert_eq(tn_def_parse(NULL, "", 0, &d, &msg), TN_ERR_PARSE);
    cr_assert(strncmp(msg.text, "<input>:1: empty document", 25) == 0, "%s", msg.text);
    cr_assert_null(d);
    /* not NUL-terminated: only len bytes are read */
    char buf[] = {'n', 'a', 'm', 'e', ':', ' ', 'x', 'X'};
    cr_assert_eq(tn_def_parse("b", buf, sizeof(buf) - 1, &d, &msg), TN_ERR_PARSE);
    cr_assert(strstr(msg.text, "workflow \"x\" has no tasks"), "%s", msg.text);
    /* a NULL message is allowed */
    cr_assert_eq(tn_def_parse("b", "name: [", 7, &d, NULL), TN_ERR_PARSE);
}

Test(def, missing_file)
{
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(tn_def_parse_file("/nonexistent/wf.yaml", &d, &msg), TN_ERR_NOENT);
    cr_assert(strstr(msg.text, "/nonexistent/wf.yaml: cannot open"), "%s", msg.text);
    cr_assert_null(d);
    tn_def_free(NULL);
}

Test(def, long_cycle_message_is_cut)
{
    /* 200 tasks in one loop with long names: the path does not fit and ends in "...". */
    size_t cap = 200 * 200, used = 0;
    char *y = malloc(cap);
    used += (size_t)snprintf(y + used, cap - used, "name: loop\ntasks:\n");
    for (int i = 0; i < 200; i++)
        used += (size_t)snprintf(y + used, cap - used,
                                 "  - {name: a_rather_long_task_name_%03d, type: noop, "
                                 "deps: [a_rather_long_task_name_%03d]}\n",
                                 i, (i + 199) % 200);
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(tn_def_parse("loop.yaml", y, used, &d, &msg), TN_ERR_PARSE);
    cr_assert(strncmp(msg.text,
                      "loop.yaml:3: cycle: a_rather_long_task_name_000 -> "
                      "a_rather_long_task_name_001 -> ",
                      81) == 0,
              "%s", msg.text);
    cr_assert(strstr(msg.text, " -> ...") != NULL, "%s", msg.text);
    free(y);
}

/* ---- bounds ------------------------------------------------------------------------------ */

static char *chain_yaml(unsigned n, size_t *len)
{
    size_t cap = 64 + (size_t)n * 64, used = 0;
    char *y = malloc(cap);
    cr_assert_not_null(y);
    used += (size_t)snprintf(y, cap, "name: chain\ntasks:\n");
    for (unsigned i = 0; i < n; i++) {
        if (i == 0)
            used += (size_t)snprintf(y + used, cap - used, "- {name: t0, type: noop}\n");
        else
            used += (size_t)snprintf(y + used, cap - used,
                                     "- {name: t%u, type: noop, deps: [t%u]}\n", i, i - 1);
    }
    *len = used;
    return y;
}

Test(def, ten_thousand_tasks)
{
    size_t len;
    char *y = chain_yaml(TN_DEF_MAX_TASKS, &len);
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(tn_def_parse("chain.yaml", y, len, &d, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(d->n_tasks, TN_DEF_MAX_TASKS);
    for (uint32_t k = 0; k < d->n_tasks; k++)
        cr_assert_eq(d->topo[k], k);
    assert_graph(d);
    char *enc;
    size_t n;
    encode(d, &enc, &n);
    tn_def *back = NULL;
    cr_assert_eq(tn_def_decode(enc, n, &back, &msg), TN_OK, "%s", msg.text);
    assert_same_graph(d, back);
    tn_def_free(back);
    free(enc);
    tn_def_free(d);
    free(y);

    y = chain_yaml(TN_DEF_MAX_TASKS + 1, &len);
    cr_assert_eq(tn_def_parse("chain.yaml", y, len, &d, &msg), TN_ERR_TOOBIG);
    char want[128];
    snprintf(want, sizeof(want),
             "chain.yaml:3: workflow \"chain\" has %u tasks; the limit is %u",
             TN_DEF_MAX_TASKS + 1, TN_DEF_MAX_TASKS);
    cr_assert(strstr(msg.text, want), "%s", msg.text);
    free(y);
}

Test(def, size_limits)
{
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};

    /* the file itself */
    size_t big = TN_DEF_MAX_FILE + 1;
    char *y = malloc(big);
    memset(y, '#', big);
    cr_assert_eq(tn_def_parse("big.yaml", y, big, &d, &msg), TN_ERR_TOOBIG);
    char want[64];
    snprintf(want, sizeof(want), "big.yaml: file is %zu bytes", big);
    cr_assert(strstr(msg.text, want), "%s", msg.text);
    free(y);

    /* a description over 64 KiB */
    size_t dl = TN_DEF_MAX_STRING + 1;
    y = malloc(dl + 200);
    size_t used = (size_t)sprintf(y, "name: w\ndescription: ");
    memset(y + used, 'x', dl);
    used += dl;
    used += (size_t)sprintf(y + used, "\ntasks: [{name: a, type: noop}]\n");
    cr_assert_eq(tn_def_parse("d.yaml", y, used, &d, &msg), TN_ERR_TOOBIG);
    cr_assert(strstr(msg.text, "d.yaml:2: \"description\" in workflow \"w\" is 65537 bytes"),
              "%s", msg.text);
    free(y);

    /* 1,001 params */
    size_t cap = 64 + 1001 * 32;
    y = malloc(cap);
    used = (size_t)sprintf(y, "name: w\nparams:\n");
    for (int i = 0; i < 1001; i++)
        used += (size_t)sprintf(y + used, "  p%d: v\n", i);
    used += (size_t)sprintf(y + used, "tasks: [{name: a, type: noop}]\n");
    cr_assert_eq(tn_def_parse("p.yaml", y, used, &d, &msg), TN_ERR_TOOBIG);
    cr_assert(strstr(msg.text, "p.yaml:3: \"params\" in workflow \"w\" has 1001 entries"), "%s",
              msg.text);
    free(y);

    /* 10,001 deps */
    cap = 128 + 10001 * 4;
    y = malloc(cap);
    used = (size_t)sprintf(y, "name: w\ntasks:\n- {name: a, type: noop}\n"
                              "- {name: b, type: noop, deps: [");
    for (int i = 0; i < 10001; i++)
        used += (size_t)sprintf(y + used, "%sa", i ? "," : "");
    used += (size_t)sprintf(y + used, "]}\n");
    cr_assert_eq(tn_def_parse("deps.yaml", y, used, &d, &msg), TN_ERR_TOOBIG);
    cr_assert(strstr(msg.text, "deps.yaml:4: \"deps\" in task \"b\" has 10001 items"), "%s",
              msg.text);
    free(y);

    /* a long command is fine up to 1 MiB */
    size_t cl = 512 * 1024;
    y = malloc(cl + 200);
    used = (size_t)sprintf(y, "name: w\ntasks:\n- name: a\n  type: shell\n  command: echo ");
    memset(y + used, 'z', cl);
    used += cl;
    y[used++] = '\n';
    cr_assert_eq(tn_def_parse("c.yaml", y, used, &d, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(strlen(d->tasks[0].command), cl + 5);
    tn_def_free(d);
    free(y);
}

/* ---- encoding ------------------------------------------------------------------------------ */

static const char *const good_files[] = {
    "tests/defs/good/full.yaml",
    "tests/defs/good/minimal.yaml",
    "tests/defs/good/unordered.yaml",
    "tests/defs/good/canon_a.yaml",
    "examples/etl.yaml",
    "examples/branching.yaml",
    "examples/fanout.yaml",
    "examples/hello.yaml",
    "tests/defs/good/schedule.yaml",
};

Test(def, encode_decode_encode_is_identical)
{
    for (size_t f = 0; f < sizeof(good_files) / sizeof(good_files[0]); f++) {
        tn_def *d = parse_ok(good_files[f]);
        char *a, *b;
        size_t la, lb;
        encode(d, &a, &la);
        tn_def *back = NULL;
        tn_errmsg msg = {{0}};
        cr_assert_eq(tn_def_decode(a, la, &back, &msg), TN_OK, "%s: %s", good_files[f],
                     msg.text);
        encode(back, &b, &lb);
        cr_assert_eq(la, lb, "%s", good_files[f]);
        cr_assert(memcmp(a, b, la) == 0, "%s", good_files[f]);
        cr_assert_str_eq(back->name, d->name);
        cr_assert_eq(back->tasks[0].line, 0); /* lines are not stored */
        cr_assert_eq(back->tasks[0].key_line[TN_DEF_TK_NAME], 0);
        assert_same_graph(d, back);
        assert_graph(back);
        /* encoding twice gives the same bytes */
        free(b);
        encode(d, &b, &lb);
        cr_assert(lb == la && memcmp(a, b, la) == 0);
        free(a);
        free(b);
        tn_def_free(back);
        tn_def_free(d);
    }
}

Test(def, decoded_full_file_keeps_every_field)
{
    tn_def *d = parse_ok("tests/defs/good/full.yaml");
    char *a;
    size_t la;
    encode(d, &a, &la);
    tn_def *b = NULL;
    cr_assert_eq(tn_def_decode(a, la, &b, NULL), TN_OK);
    const tn_def_task *x = task(b, "extract");
    cr_assert_str_eq(x->command, task(d, "extract")->command);
    cr_assert_str_eq(x->environment, "hadoop");
    cr_assert_str_eq(x->task_group, "db_writers");
    cr_assert_eq(x->memory_max, 512ull << 20);
    cr_assert_eq(x->cpu_max_milli, 1500);
    cr_assert_eq(x->kill_grace_ms, 7000);
    cr_assert_eq(x->priority, TN_DEF_PRIO_HIGHEST);
    cr_assert_str_eq(x->params.items[1].value, "eu");
    x = task(b, "fake");
    cr_assert(!x->enabled);
    cr_assert_eq(x->noop.result, TN_DEF_NOOP_FAILURE);
    cr_assert_str_eq(x->worker_group, "bench");
    x = task(b, "check");
    cr_assert_str_eq(x->worker_group, "default");
    cr_assert_eq(x->cond.mode, TN_DEF_COND_ANY);
    x = task(b, "wait_upstream");
    cr_assert_eq(x->dep.failure_wait_ms, 3600000);
    cr_assert_str_eq(x->dep.depends[1].date, "last_month_end");
    cr_assert_str_eq(task(b, "child")->sub.workflow, "load_partitions");
    cr_assert_eq(b->execution, TN_DEF_EXEC_SERIAL_WAIT);
    cr_assert_eq(b->failure_strategy, TN_DEF_FAILURE_CONTINUE);
    free(a);
    tn_def_free(b);
    tn_def_free(d);
}

Test(def, canonical_bytes)
{
    tn_def *a = parse_ok("tests/defs/good/canon_a.yaml");
    tn_def *b = parse_ok("tests/defs/good/canon_b.yaml");
    tn_def *c = parse_ok("tests/defs/good/canon_c.yaml");
    char *ea, *eb, *ec;
    size_t la, lb, lc;
    encode(a, &ea, &la);
    encode(b, &eb, &lb);
    encode(c, &ec, &lc);
    /* same workflow, other key order, comments, spacing and spellings */
    cr_assert_eq(la, lb);
    cr_assert(memcmp(ea, eb, la) == 0);
    /* one retry more is a change */
    cr_assert(la != lc || memcmp(ea, ec, la) != 0);
    cr_assert_eq(c->tasks[0].retries, 4);
    free(ea);
    free(eb);
    free(ec);
    tn_def_free(a);
    tn_def_free(b);
    tn_def_free(c);
}

Test(def, encode_refuses_unvalidated)
{
    tn_def d = {0};
    char *out = (char *)"untouched";
    size_t len = 7;
    cr_assert_eq(tn_def_encode(NULL, &out, &len), TN_ERR_INVAL);
    cr_assert_eq(tn_def_encode(&d, &out, &len), TN_ERR_INVAL);
    cr_assert_str_eq(out, "untouched");
    cr_assert_eq(len, 7);
}

/* Decode must return an error or a definition that encodes back to exactly the input. */
static void decode_any(const void *buf, size_t len)
{
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    tn_err err = tn_def_decode(buf, len, &d, &msg);
    if (err != TN_OK) {
        cr_assert_null(d);
        cr_assert(msg.text[0] != '\0', "error %s without a message", tn_errname(err));
        return;
    }
    char *again;
    size_t n;
    encode(d, &again, &n);
    cr_assert(n == len && memcmp(again, buf, len) == 0, "accepted bytes re-encode differently");
    assert_graph(d);
    free(again);
    tn_def_free(d);
}

Test(def, decode_every_truncation_fails)
{
    for (size_t f = 0; f < 2; f++) {
        tn_def *d = parse_ok(good_files[f]);
        char *enc;
        size_t len;
        encode(d, &enc, &len);
        for (size_t cut = 0; cut < len; cut++) {
            /* a copy of exactly `cut` bytes, so reading past it is caught by ASan */
            char *part = malloc(cut ? cut : 1);
            memcpy(part, enc, cut);
            tn_def *out = NULL;
            tn_errmsg msg = {{0}};
            tn_err err = tn_def_decode(part, cut, &out, &msg);
            cr_assert_neq(err, TN_OK, "%s: a %zu-byte prefix decoded", good_files[f], cut);
            cr_assert_null(out);
            free(part);
        }
        free(enc);
        tn_def_free(d);
    }
}

Test(def, decode_every_byte_flip)
{
    static const uint8_t flips[] = {0x01, 0x10, 0x80, 0xff};
    unsigned accepted = 0, total = 0;
    for (size_t f = 0; f < 3; f++) {
        tn_def *d = parse_ok(good_files[f]);
        char *enc;
        size_t len;
        encode(d, &enc, &len);
        uint8_t *copy = malloc(len);
        for (size_t i = 0; i < len; i++) {
            for (size_t k = 0; k < sizeof(flips); k++) {
                memcpy(copy, enc, len);
                copy[i] ^= flips[k];
                decode_any(copy, len);
                tn_def *out = NULL;
                if (tn_def_decode(copy, len, &out, NULL) == TN_OK)
                    accepted++;
                tn_def_free(out);
                total++;
            }
        }
        free(copy);
        free(enc);
        tn_def_free(d);
    }
    /* most flips must be caught; some (a letter in a description) are legitimate */
    cr_assert(accepted < total / 2, "%u of %u corrupted encodings accepted", accepted, total);
}

Test(def, decode_random_bytes)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    uint8_t buf[300];
    for (int round = 0; round < 20000; round++) {
        size_t len = 0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = (s >> 33) % sizeof(buf);
        /* start like a real encoding half of the time, to get past the header */
        if (round % 2 && n >= 2) {
            buf[len++] = 0x9a;
            buf[len++] = 0x01;
        }
        while (len < n) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            buf[len++] = (uint8_t)(s >> 56);
        }
        decode_any(buf, len);
    }
}

Test(def, decode_rejects_version_trailing_and_non_canonical)
{
    tn_def *d = parse_ok("tests/defs/good/minimal.yaml");
    char *enc;
    size_t len;
    encode(d, &enc, &len);
    cr_assert_eq((uint8_t)enc[0], 0x9a); /* array of 10 */
    cr_assert_eq((uint8_t)enc[1], TN_DEF_FORMAT_VERSION);
    tn_def *out = NULL;
    tn_errmsg msg = {{0}};

    char *v = malloc(len);
    memcpy(v, enc, len);
    v[1] = 2;
    cr_assert_eq(tn_def_decode(v, len, &out, &msg), TN_ERR_VERSION);
    cr_assert(strstr(msg.text, "format version 2; this tern reads version 1"), "%s", msg.text);
    v[1] = 0;
    cr_assert_eq(tn_def_decode(v, len, &out, &msg), TN_ERR_VERSION);
    free(v);

    char *t = malloc(len + 1);
    memcpy(t, enc, len);
    t[len] = 0;
    cr_assert_eq(tn_def_decode(t, len + 1, &out, &msg), TN_ERR_CORRUPT);
    cr_assert(strstr(msg.text, "1 bytes after the end"), "%s", msg.text);
    free(t);

    /* the version as a uint8 (0xcc 0x01) reads as 1 but is not the shortest form */
    char *nc = malloc(len + 1);
    nc[0] = enc[0];
    nc[1] = (char)0xcc;
    memcpy(nc + 2, enc + 1, len - 1);
    cr_assert_eq(tn_def_decode(nc, len + 1, &out, &msg), TN_ERR_CORRUPT);
    cr_assert(strstr(msg.text, "not in canonical form"), "%s", msg.text);
    free(nc);

    cr_assert_eq(tn_def_decode(enc, 0, &out, &msg), TN_ERR_TRUNCATED);
    cr_assert_eq(tn_def_decode(NULL, 0, &out, &msg), TN_ERR_TRUNCATED);
    cr_assert_eq(tn_def_decode("\xc0", 1, &out, &msg), TN_ERR_TYPE);
    /* an array claiming 4 billion items in 5 bytes */
    cr_assert_eq(tn_def_decode("\xdd\xff\xff\xff\xff", 5, &out, &msg), TN_ERR_TOOBIG);
    cr_assert_null(out);
    free(enc);
    tn_def_free(d);
}

Test(def, decode_validates_the_definition)
{
    /* Rename a dep in the bytes (same length): decoding must resolve deps again. */
    tn_def *d = parse_ok("tests/defs/good/canon_a.yaml");
    char *enc;
    size_t len;
    encode(d, &enc, &len);
    char *p = NULL;
    for (size_t i = 0; i + 6 <= len; i++)
        if (memcmp(enc + i,
                   "\xa5"
                   "first",
                   6) == 0 &&
            i > 0 && (uint8_t)enc[i - 1] == 0x91)
            p = enc + i; /* the deps list [first] of task second */
    cr_assert_not_null(p);
    memcpy(p + 1, "fir5t", 5);
    tn_def *out = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(tn_def_decode(enc, len, &out, &msg), TN_ERR_CORRUPT);
    cr_assert_str_eq(msg.text,
                     "stored definition: task \"second\" depends on unknown task \"fir5t\"");
    cr_assert_null(out);
    free(enc);
    tn_def_free(d);
}

/* ---- keys by task type, required keys, pinned encoding -------------------------------- */

/* The applicability table of def.h, written out: which task types take each key. */
static const struct {
    tn_def_task_key key;
    const char *types; /* the types that take it, as the message names them */
} key_types[] = {
    {TN_DEF_TK_WORKER_GROUP, "shell and noop"},
    {TN_DEF_TK_TASK_GROUP, "shell and noop"},
    {TN_DEF_TK_DISPATCH_TIMEOUT, "shell and noop"},
    {TN_DEF_TK_ENVIRONMENT, "shell"},
    {TN_DEF_TK_COMMAND, "shell"},
    {TN_DEF_TK_KILL_GRACE, "shell"},
    {TN_DEF_TK_MEMORY_MAX, "shell"},
    {TN_DEF_TK_CPU_MAX, "shell"},
    {TN_DEF_TK_PIDS_MAX, "shell"},
    {TN_DEF_TK_RESULT, "noop"},
    {TN_DEF_TK_DURATION, "noop"},
    {TN_DEF_TK_OUTPUTS, "noop"},
    {TN_DEF_TK_WHEN, "conditions"},
    {TN_DEF_TK_ON_SUCCESS, "conditions"},
    {TN_DEF_TK_ON_FAILURE, "conditions"},
    {TN_DEF_TK_CASES, "switch"},
    {TN_DEF_TK_DEFAULT, "switch"},
    {TN_DEF_TK_RELATION, "dependent"},
    {TN_DEF_TK_DEPENDS, "dependent"},
    {TN_DEF_TK_CHECK_INTERVAL, "dependent"},
    {TN_DEF_TK_FAILURE_POLICY, "dependent"},
    {TN_DEF_TK_FAILURE_WAIT, "dependent"},
    {TN_DEF_TK_WORKFLOW, "sub_workflow"},
};

static const char *const task_key_word[] = {
#define W_(c, w) #w,
    TN_DEF_TASK_KEY_LIST(W_)
#undef W_
};

static const char *const type_word[] = {"shell",  "noop",      "conditions",
                                        "switch", "dependent", "sub_workflow"};

/* "shell and noop" names shell and noop, not sub_workflow's "workflow" inside it. */
static bool names_type(const char *list, const char *type)
{
    size_t n = strlen(type);
    for (const char *p = list; (p = strstr(p, type)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
            return true;
    return false;
}

Test(def, task_key_applies_matches_the_header)
{
    size_t nk = sizeof(key_types) / sizeof(key_types[0]);
    for (unsigned k = 0; k < TN_DEF_TK__COUNT; k++) {
        const char *types = NULL;
        for (size_t i = 0; i < nk; i++)
            if (key_types[i].key == (tn_def_task_key)k)
                types = key_types[i].types;
        for (unsigned ty = 0; ty < 6; ty++) {
            bool want = !types || names_type(types, type_word[ty]);
            cr_expect_eq(tn_def_task_key_applies((tn_def_task_key)k, (tn_def_task_type)ty),
                         want, "%s on %s", task_key_word[k], type_word[ty]);
        }
    }
    cr_assert(!tn_def_task_key_applies(TN_DEF_TK__COUNT, TN_DEF_TASK_SHELL));
    cr_assert(!tn_def_task_key_applies(TN_DEF_TK_NAME, (tn_def_task_type)6));
}

/* Every key written on a task type it does not apply to is refused, naming its line and
 * the types it is for, before its value is read (so any value will do). */
Test(def, every_key_refused_on_a_type_it_does_not_apply_to)
{
    size_t nk = sizeof(key_types) / sizeof(key_types[0]);
    unsigned checked = 0;
    for (size_t i = 0; i < nk; i++) {
        const char *kw = task_key_word[key_types[i].key];
        for (unsigned ty = 0; ty < 6; ty++) {
            if (names_type(key_types[i].types, type_word[ty]))
                continue;
            char yaml[300], want[300];
            snprintf(yaml, sizeof(yaml),
                     "name: wf\ntasks:\n  - name: a\n    retries: 1\n    %s: [whatever]\n"
                     "    type: %s\n",
                     kw, type_word[ty]);
            snprintf(want, sizeof(want),
                     "t.yaml:5: key \"%s\" in task \"a\" is for %s tasks; this one is %s", kw,
                     key_types[i].types, type_word[ty]);
            tn_def *d = NULL;
            tn_errmsg msg = {{0}};
            cr_expect_eq(parse_str(yaml, &d, &msg), TN_ERR_PARSE, "%s on %s", kw,
                         type_word[ty]);
            cr_expect_str_eq(msg.text, want);
            cr_expect_null(d);
            tn_def_free(d);
            checked++;
        }
    }
    cr_assert_eq(checked, 3 * 4 + 6 * 5 + 3 * 5 + 3 * 5 + 2 * 5 + 5 * 5 + 1 * 5);
}

/* name and type are read first, whatever order they are written in, and their absence is
 * reported on the task's line; an unknown key is reported before either. */
Test(def, required_task_and_workflow_keys)
{
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"name: wf\ntasks:\n  - {name: a, type: noop}\n  - {type: noop}\n",
         "t.yaml:4: task #2 has no \"name\""},
        {"name: wf\ntasks:\n  - type: noop\n    name: ~\n",
         "t.yaml:3: task #1 has no \"name\""},
        {"name: wf\ntasks:\n  - retries: x\n    name: a\n",
         "t.yaml:3: task \"a\" has no \"type\" (one of shell, noop, conditions, switch, "
         "dependent, sub_workflow)"},
        {"name: wf\ntasks:\n  - retries: x\n    type: noop\n    name: 'a/b'\n",
         "t.yaml:5: bad task name \"a/b\": a name is 1..255 bytes of UTF-8 text without "
         "control characters or '/'"},
        {"name: wf\ntasks:\n  - retries: x\n    type: [noop]\n    name: a\n",
         "t.yaml:4: \"type\" in task \"a\" must be a string, not a list"},
        {"name: wf\ntasks:\n  - {retries: x, type: noop, name: a}\n",
         "t.yaml:3: bad value \"x\" for \"retries\" in task \"a\": write a whole number from 0 "
         "to 1000"},
        {"name: wf\ntasks:\n  - {retries: x, typo: noop}\n",
         "t.yaml:3: unknown key \"typo\" in task #1 (did you mean \"type\"?)"},
        {"tasks: []\nname:\n", "t.yaml:1: workflow has no \"name\""},
        {"timeout: x\nname: [wf]\n", "t.yaml:2: \"name\" in workflow must be a string, not a "
                                     "list"},
        {"timeout: x\nname: wf\n", "t.yaml:1: bad duration \"x\" for \"timeout\" in workflow "
                                   "\"wf\": write a whole number and a unit (250ms, 10s, 5m, "
                                   "2h, 1d), units from largest to smallest (1h30m, 2d4h, "
                                   "1m30s500ms), or 0; the limit is 3650d"},
        {"name: wf\ntasks:\n", "t.yaml:2: workflow \"wf\" has no tasks: add a \"tasks\" list"},
        {"name: wf\ntasks: []\n", "t.yaml:2: workflow \"wf\" has no tasks: add a \"tasks\" "
                                  "list"},
        {"name: wf\ntasks:\n  - {name: s, type: sub_workflow, workflow: ~}\n",
         "t.yaml:3: sub_workflow task \"s\" needs \"workflow\": the workflow to run"},
        {"name: wf\ntasks:\n  - name: s\n    type: shell\n    command: ''\n",
         "t.yaml:5: shell task \"s\" needs a non-empty \"command\""},
        {"name: wf\ntasks:\n  - name: d\n    type: dependent\n    depends: [{task: x}]\n",
         "t.yaml:5: \"depends\" item #1 of task \"d\" has no \"workflow\""},
        {"name: wf\ntasks:\n  - name: c\n    type: conditions\n    when: {all: [{task: x}]}\n",
         "t.yaml:5: \"when\" item #1 of task \"c\" has no \"state\""},
        {"name: wf\ntasks:\n  - name: c\n    type: conditions\n    when: {all: [], any: []}\n",
         "t.yaml:5: \"when\" in task \"c\" needs exactly one of \"all\" and \"any\""},
        {"name: wf\ntasks:\n  - name: c\n    type: conditions\n    when: {all: x}\n",
         "t.yaml:5: \"all\" in \"when\" of task \"c\" must be a list, not a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        cr_expect_eq(parse_str(cases[i].yaml, &d, &msg), TN_ERR_PARSE, "case %zu", i);
        cr_expect_str_eq(msg.text, cases[i].want, "case %zu", i);
        cr_expect_null(d);
        tn_def_free(d);
    }
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const uint8_t *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* The bytes of the encoding and every message the decoder gives on a truncated or
 * corrupted copy, pinned by hash: a change to the encoding or to the decoder's messages
 * shows here. */
Test(def, encoding_and_decoder_messages_are_pinned)
{
    static const struct {
        const char *file;
        uint64_t bytes, messages;
    } pins[] = {
        {"tests/defs/good/full.yaml", 0xe9c16c5c427b60c1ull, 0xe9955128fe1c4c76ull},
        {"tests/defs/good/minimal.yaml", 0x159439c813abee41ull, 0x49049e7a9fab6b99ull},
        {"tests/defs/good/canon_a.yaml", 0x46e89eff95955b42ull, 0x5ed41ea7129a22a8ull},
    };
    for (size_t f = 0; f < sizeof(pins) / sizeof(pins[0]); f++) {
        tn_def *d = parse_ok(pins[f].file);
        char *enc;
        size_t len;
        encode(d, &enc, &len);
        uint64_t hb = fnv(0xcbf29ce484222325ull, enc, len), hm = 0xcbf29ce484222325ull;
        uint8_t *copy = malloc(len);
        for (size_t i = 0; i <= len; i++) {
            for (unsigned flip = 0; flip < 3; flip++) {
                memcpy(copy, enc, len);
                size_t n = len;
                if (flip == 0)
                    n = i; /* truncated */
                else if (i < len)
                    copy[i] ^= flip == 1 ? 0x01 : 0x80;
                tn_def *out = NULL;
                tn_errmsg msg = {{0}};
                tn_err err = tn_def_decode(copy, n, &out, &msg);
                hm = fnv(hm, &err, sizeof(err));
                if (err)
                    hm = fnv(hm, msg.text, strlen(msg.text));
                tn_def_free(out);
            }
        }
        cr_expect_eq(hb, pins[f].bytes, "%s: bytes 0x%016llx", pins[f].file,
                     (unsigned long long)hb);
        cr_expect_eq(hm, pins[f].messages, "%s: messages 0x%016llx", pins[f].file,
                     (unsigned long long)hm);
        free(copy);
        free(enc);
        tn_def_free(d);
    }
}

/* The whole message for each kind of value a key may hold, on the line of the value. */
Test(def, value_messages)
{
    static const struct {
        const char *line, *want;
    } cases[] = {
        {"memory_max: 1Q", "t.yaml:4: bad size \"1Q\" for \"memory_max\" in task \"a\": write "
                           "bytes, or a whole number with K, M, G or T (512M, 2G)"},
        {"cpu_max: 0.0001", "t.yaml:4: bad cpu count \"0.0001\" for \"cpu_max\" in task \"a\": "
                            "write cores as a decimal with at most 3 decimals (1, 1.5, 0.25), "
                            "at most 10000"},
        {"kill_grace: 5y", "t.yaml:4: bad duration \"5y\" for \"kill_grace\" in task \"a\": "
                           "write a whole number and a unit (250ms, 10s, 5m, 2h, 1d), units "
                           "from largest to smallest (1h30m, 2d4h, 1m30s500ms), or 0; the "
                           "limit is 3650d"},
        {"timeout: 3650d1h", "t.yaml:4: bad duration \"3650d1h\" for \"timeout\" in task "
                             "\"a\": the limit is 3650d"},
        {"kill_grace: 9999d", "t.yaml:4: bad duration \"9999d\" for \"kill_grace\" in task "
                              "\"a\": the limit is 3650d"},
        {"enabled: [x]", "t.yaml:4: \"enabled\" in task \"a\" must be a string, not a list"},
        {"priority: top",
         "t.yaml:4: bad value \"top\" for \"priority\" in task \"a\" (allowed: "
         "highest, high, medium, low, lowest)"},
        {"task_group: 'a/b'",
         "t.yaml:4: bad task group name \"a/b\": a name is 1..255 bytes of "
         "UTF-8 text without control characters or '/'"},
        {"environment: {x: 1}", "t.yaml:4: \"environment\" in task \"a\" must be a string, not "
                                "a mapping"},
        {"deps: [~]",
         "t.yaml:4: items of \"deps\" in task \"a\" must be task names, not empty"},
        {"params: {'a b': 1}", "t.yaml:4: bad param name \"a b\": use 1..64 characters of A-Z "
                               "a-z 0-9 _ . -"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[300];
        snprintf(yaml, sizeof(yaml),
                 "name: wf\ntasks:\n  - name: a\n    %s\n    type: shell\n"
                 "    command: x\n",
                 cases[i].line);
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        cr_expect_neq(parse_str(yaml, &d, &msg), TN_OK, "case %zu", i);
        cr_expect_str_eq(msg.text, cases[i].want, "case %zu", i);
        tn_def_free(d);
    }
}

/* Each unit at its bound, lower-case sizes, and no output on failure. */
Test(def, unit_edges)
{
    static const struct {
        const char *s;
        uint64_t v;
    } size_ok[] = {{"1k", 1ull << 10},
                   {"3m", 3ull << 20},
                   {"1t", 1ull << 40},
                   {"16777215T", 16777215ull << 40},
                   {"18446744073709551615", UINT64_MAX}};
    static const struct {
        const char *s;
        uint64_t v;
    } dur_ok[] = {{"5256000m", 3650ull * 86400000},
                  {"87600h", 3650ull * 86400000},
                  {"315360000000ms", 3650ull * 86400000},
                  {"0d", 0},
                  {"0h", 0}};
    static const char *const size_bad[] = {"16777216T", "1KK", "K1", "1P", "1Ki"};
    static const char *const dur_bad[] = {"5256001m", "87601h", "315360000001ms", "00", "1ms0"};
    uint64_t v;
    for (size_t i = 0; i < sizeof(size_ok) / sizeof(size_ok[0]); i++) {
        cr_expect_eq(tn_parse_size(size_ok[i].s, &v), TN_OK, "%s", size_ok[i].s);
        cr_expect_eq(v, size_ok[i].v, "%s", size_ok[i].s);
    }
    for (size_t i = 0; i < sizeof(dur_ok) / sizeof(dur_ok[0]); i++) {
        cr_expect_eq(tn_parse_duration_ms(dur_ok[i].s, &v), TN_OK, "%s", dur_ok[i].s);
        cr_expect_eq(v, dur_ok[i].v, "%s", dur_ok[i].s);
    }
    for (size_t i = 0; i < sizeof(size_bad) / sizeof(size_bad[0]); i++) {
        v = 9;
        cr_expect_eq(tn_parse_size(size_bad[i], &v), TN_ERR_INVAL, "%s", size_bad[i]);
        cr_expect_eq(v, 9, "%s", size_bad[i]);
    }
    for (size_t i = 0; i < sizeof(dur_bad) / sizeof(dur_bad[0]); i++) {
        v = 9;
        cr_expect_eq(tn_parse_duration_ms(dur_bad[i], &v), TN_ERR_INVAL, "%s", dur_bad[i]);
        cr_expect_eq(v, 9, "%s", dur_bad[i]);
    }
    cr_expect_eq(tn_parse_size(NULL, &v), TN_ERR_INVAL);
    cr_expect_eq(tn_parse_duration_ms(NULL, &v), TN_ERR_INVAL);
}

/* tenant: an OS user name, kept through the encoding; a definition without one keeps the
 * encoding it had before the key existed (stored definitions still decode). */
Test(def, tenant_key)
{
    tn_def *d = NULL, *back = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(parse_str("name: wf\ntenant: etl-user.1\ntasks:\n  - {name: a, type: noop}\n",
                           &d, &msg),
                 TN_OK, "%s", msg.text);
    cr_assert_str_eq(d->tenant, "etl-user.1");
    char *enc, *enc2;
    size_t len, len2;
    encode(d, &enc, &len);
    cr_assert_eq(tn_def_decode(enc, len, &back, &msg), TN_OK, "%s", msg.text);
    cr_assert_str_eq(back->tenant, "etl-user.1");
    tn_def_free(back);
    tn_def_free(d);
    free(enc);
    /* without a tenant: 10 fields, as before */
    cr_assert_eq(parse_str("name: wf\ntasks:\n  - {name: a, type: noop}\n", &d, &msg), TN_OK);
    cr_assert_null(d->tenant);
    encode(d, &enc2, &len2);
    cr_assert_eq((uint8_t)enc2[0], 0x9a, "a fixarray of 10");
    cr_assert_eq(tn_def_decode(enc2, len2, &back, &msg), TN_OK, "%s", msg.text);
    cr_assert_null(back->tenant);
    tn_def_free(back);
    tn_def_free(d);
    free(enc2);
    const char *bad[] = {"-rf", "a b", "toolongtoolongtoolongtoolongtoolong", "ro/ot"};
    for (size_t i = 0; i < 4; i++) {
        char y[256];
        snprintf(y, sizeof(y), "name: wf\ntenant: '%s'\ntasks:\n  - {name: a, type: noop}\n",
                 bad[i]);
        d = NULL;
        cr_assert_eq(parse_str(y, &d, &msg), TN_ERR_PARSE, "%s accepted", bad[i]);
        cr_assert(strstr(msg.text, "tenant"), "%s", msg.text);
    }
}

/* ---- YAML output ------------------------------------------------------------------------ */

/* `def show`'s YAML parses back to the same canonical encoding, for every example and
 * every good fixture; a second round gives the same text. */
static void assert_yaml_round_trip(const char *dir)
{
    char **names;
    size_t n = list_yaml(dir, &names);
    cr_assert(n > 0, "no files in %s", dir);
    for (size_t i = 0; i < n; i++) {
        char rel[512];
        snprintf(rel, sizeof(rel), "%s/%s", dir, names[i]);
        tn_def *d = parse_ok(rel), *back = NULL;
        char *enc, *enc2, *yaml, *yaml2;
        size_t len, len2, ylen, ylen2;
        encode(d, &enc, &len);
        cr_assert_eq(tn_def_to_yaml(d, &yaml, &ylen), TN_OK, "%s", rel);
        cr_assert_eq(strlen(yaml), ylen);
        tn_errmsg msg = {{0}};
        cr_assert_eq(tn_def_parse(rel, yaml, ylen, &back, &msg), TN_OK, "%s: %s\n%s", rel,
                     msg.text, yaml);
        encode(back, &enc2, &len2);
        cr_expect(len == len2 && memcmp(enc, enc2, len) == 0, "%s: encoding differs\n%s", rel,
                  yaml);
        cr_assert_eq(tn_def_to_yaml(back, &yaml2, &ylen2), TN_OK);
        cr_expect_str_eq(yaml2, yaml, "%s", rel);
        free(enc);
        free(enc2);
        free(yaml);
        free(yaml2);
        tn_def_free(d);
        tn_def_free(back);
    }
    free_list(names, n);
}

Test(def, yaml_round_trip_examples)
{
    assert_yaml_round_trip("examples");
}

Test(def, yaml_round_trip_good_fixtures)
{
    assert_yaml_round_trip("tests/defs/good");
}

/* What the emitter writes: multi-line commands as literal blocks, durations in compound
 * form, defaults left out, null-looking strings quoted, Chinese text as itself. */
Test(def, yaml_output_shape)
{
    const char *src = "name: 数据\n"
                      "description: '~'\n"
                      "timeout: 5400s\n"
                      "tasks:\n"
                      "  - name: a\n"
                      "    type: shell\n"
                      "    command: |\n"
                      "      echo one\n"
                      "      echo two\n"
                      "    memory_max: 2048M\n"
                      "    cpu_max: 1.50\n"
                      "  - {name: s, type: sub_workflow, workflow: child, deps: [a]}\n";
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(parse_str(src, &d, &msg), TN_OK, "%s", msg.text);
    char *yaml;
    size_t len;
    cr_assert_eq(tn_def_to_yaml(d, &yaml, &len), TN_OK);
    cr_expect(strstr(yaml, "name: 数据\n"), "%s", yaml);
    cr_expect(strstr(yaml, "description: \"~\"\n"), "%s", yaml);
    cr_expect(strstr(yaml, "timeout: 1h30m\n"), "%s", yaml);
    cr_expect(strstr(yaml, "command: |\n    echo one\n    echo two\n"), "%s", yaml);
    cr_expect(strstr(yaml, "memory_max: 2G\n"), "%s", yaml);
    cr_expect(strstr(yaml, "cpu_max: 1.5\n"), "%s", yaml);
    cr_expect(strstr(yaml, "workflow: child\n"), "%s", yaml);
    cr_expect(!strstr(yaml, "worker_group"), "defaults are left out: %s", yaml);
    cr_expect(!strstr(yaml, "kill_grace"), "defaults are left out: %s", yaml);
    free(yaml);
    tn_def_free(d);
}

/* A switch condition that cannot parse is refused at apply, on the case's line; one
 * whose placeholders only the run decides ('${x}' < 3) is accepted. */
Test(def, switch_condition_syntax_checked_at_apply)
{
    const char *fmt = "name: wf\ntasks:\n  - {name: a, type: noop}\n  - name: r\n"
                      "    type: switch\n    deps: [a]\n    cases:\n"
                      "      - {when: \"%s\", then: b}\n  - {name: b, type: noop, deps: [r]}\n";
    static const char *const bad[] = {"${x} >", "(${x} == 1", "${x} = 1", "$[yyyyMMdd] &&"};
    static const char *const good[] = {"${x} > 0", "'${x}' == 'a' || ${y}",
                                       "$[yyyyMMdd] == 20240101", "${x} < 'b'"};
    char yaml[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(yaml, sizeof(yaml), fmt, bad[i]);
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        cr_expect_eq(parse_str(yaml, &d, &msg), TN_ERR_PARSE, "%s", bad[i]);
        cr_expect(strncmp(msg.text, "t.yaml:8: bad \"when\"", 20) == 0, "%s: %s", bad[i],
                  msg.text);
        tn_def_free(d);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(yaml, sizeof(yaml), fmt, good[i]);
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        cr_expect_eq(parse_str(yaml, &d, &msg), TN_OK, "%s: %s", good[i], msg.text);
        tn_def_free(d);
    }
}

/* Compound durations in a file, and the message naming the forms and the limit. */
Test(def, compound_durations_in_a_file)
{
    tn_def *d = NULL;
    tn_errmsg msg = {{0}};
    cr_assert_eq(parse_str("name: wf\ntimeout: 1h30m\ntasks:\n  - {name: a, type: noop, "
                           "timeout: 2d4h, duration: 1m30s500ms}\n",
                           &d, &msg),
                 TN_OK, "%s", msg.text);
    cr_expect_eq(d->timeout_ms, 5400000);
    cr_expect_eq(d->tasks[0].timeout_ms, 187200000);
    cr_expect_eq(d->tasks[0].noop.duration_ms, 90500);
    tn_def_free(d);
}

/* pids_max: a count on shell tasks, 0 (the worker's default) when absent, encoded and
 * decoded; refused on other types and past the kernel's pid limit. */
Test(def, pids_max_is_a_shell_key_with_a_bound)
{
    tn_def *d = NULL, *back = NULL;
    tn_errmsg msg = {{0}};
    const char *y = "name: p\ntasks:\n  - name: a\n    type: shell\n    command: 'true'\n"
                    "    pids_max: 64\n  - {name: b, type: shell, command: 'true'}\n";
    cr_assert_eq(parse_str(y, &d, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(d->tasks[idx(d, "a")].pids_max, 64);
    cr_assert_eq(d->tasks[idx(d, "b")].pids_max, 0);
    char *enc;
    size_t len;
    encode(d, &enc, &len);
    cr_assert_eq(tn_def_decode(enc, len, &back, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(back->tasks[idx(back, "a")].pids_max, 64);
    free(enc);
    tn_def_free(back);
    tn_def_free(d);
    const char *bad[] = {
        "name: p\ntasks:\n  - {name: a, type: shell, command: 'true', pids_max: 4194305}\n",
        "name: p\ntasks:\n  - {name: a, type: shell, command: 'true', pids_max: -1}\n",
        "name: p\ntasks:\n  - {name: a, type: noop, pids_max: 10}\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = NULL;
        cr_expect_neq(parse_str(bad[i], &d, &msg), TN_OK, "%s", bad[i]);
        cr_expect(strstr(msg.text, "pids_max"), "%s", msg.text);
        tn_def_free(d);
    }
}

/* ---- the schedule block ---------------------------------------------------------------- */

#define SEC 1000000000LL

/* parse -> encode -> decode -> YAML -> parse gives the same bytes; *enc gets them. */
static tn_def *schedule_round_trip(const char *yaml, char **enc, size_t *len)
{
    tn_def *d = NULL, *back = NULL, *again = NULL;
    tn_errmsg msg = {{0}};
    char *y, *y2, *enc2;
    size_t ylen, ylen2, len2;
    cr_assert_eq(parse_str(yaml, &d, &msg), TN_OK, "%s", msg.text);
    encode(d, enc, len);
    cr_assert_eq(tn_def_decode(*enc, *len, &back, &msg), TN_OK, "%s", msg.text);
    cr_assert_eq(tn_def_to_yaml(back, &y, &ylen), TN_OK);
    cr_assert_eq(tn_def_parse("show.yaml", y, ylen, &again, &msg), TN_OK, "%s\n%s", msg.text,
                 y);
    encode(again, &enc2, &len2);
    cr_assert(len2 == *len && memcmp(enc2, *enc, *len) == 0, "YAML round trip changed:\n%s", y);
    cr_assert_eq(tn_def_to_yaml(again, &y2, &ylen2), TN_OK);
    cr_assert_str_eq(y2, y, "a second round gives the same text");
    free(y);
    free(y2);
    free(enc2);
    tn_def_free(back);
    tn_def_free(again);
    return d;
}

static void assert_same_schedule(const tn_sched_spec *a, const tn_sched_spec *b)
{
    cr_assert_str_eq(a->cron, b->cron);
    cr_assert_str_eq(a->tz, b->tz);
    cr_assert_eq(a->start_ns, b->start_ns);
    cr_assert_eq(a->end_ns, b->end_ns);
    cr_assert_eq(a->overlap, b->overlap);
    cr_assert_eq(a->catchup_ms, b->catchup_ms);
    cr_assert_eq(a->pause_on_failure, b->pause_on_failure);
    cr_assert_str_eq(a->priority, b->priority);
    cr_assert_str_eq(a->failure_strategy, b->failure_strategy);
    cr_assert_str_eq(a->worker_group, b->worker_group);
    cr_assert_eq(a->nparams, b->nparams);
    for (uint32_t i = 0; i < a->nparams; i++) {
        cr_assert_str_eq(a->param_keys[i], b->param_keys[i]);
        cr_assert_str_eq(a->param_values[i], b->param_values[i]);
    }
}

Test(def, schedule_block_every_key)
{
    tn_def *d = parse_ok("tests/defs/good/schedule.yaml"), *back = NULL;
    const tn_sched_spec *s = d->schedule;
    cr_assert_not_null(s);
    cr_assert_eq(d->key_line[TN_DEF_WK_SCHEDULE], 3);
    cr_assert_str_eq(s->cron, "0 0 2 * * ? *");
    cr_assert_str_eq(s->tz, "Asia/Shanghai");
    /* 2026-01-01 and 2027-01-01 at 00:00 in Shanghai (+08:00) */
    cr_assert_eq(s->start_ns, 1767196800 * SEC);
    cr_assert_eq(s->end_ns, 1798732800 * SEC);
    cr_assert_eq(s->overlap, TN_OVERLAP_BUFFER_ONE);
    cr_assert_eq(s->catchup_ms, 5400000);
    cr_assert(s->pause_on_failure);
    cr_assert_str_eq(s->priority, "high");
    cr_assert_str_eq(s->failure_strategy, "continue");
    cr_assert_str_eq(s->worker_group, "夜间");
    cr_assert_eq(s->nparams, 3);
    /* sorted by key, as written order must not reach the encoding */
    cr_assert_str_eq(s->param_keys[0], "dt");
    cr_assert_str_eq(s->param_values[0], "");
    cr_assert_str_eq(s->param_keys[1], "note");
    cr_assert_str_eq(s->param_values[1], "two words");
    cr_assert_str_eq(s->param_keys[2], "region");
    char *enc;
    size_t len;
    encode(d, &enc, &len);
    cr_assert_eq((uint8_t)enc[0], 0x9c, "a fixarray of 12: tenant (nil) and schedule");
    tn_errmsg msg = {{0}};
    cr_assert_eq(tn_def_decode(enc, len, &back, &msg), TN_OK, "%s", msg.text);
    cr_assert_null(back->tenant);
    cr_assert_not_null(back->schedule);
    assert_same_schedule(s, back->schedule);
    cr_assert_eq(back->key_line[TN_DEF_WK_SCHEDULE], 0);
    tn_def_free(back);
    tn_def_free(d);
    free(enc);
}

Test(def, schedule_round_trips)
{
    static const char *const files[] = {
        "name: wf\nschedule:\n  cron: '0 2 * * *'\ntasks:\n  - {name: a, type: noop}\n",
        "name: wf\ntenant: etl\nschedule: {cron: '*/5 * * * *', overlap: skip, catchup: 0}\n"
        "tasks:\n  - {name: a, type: noop}\n",
        "name: wf\nschedule:\n  cron: '0 30 1 ? * MON-FRI'\n  timezone: '+05:30'\n"
        "  start: 2026-01-01T00:00:00Z\n  params: {k: 'null', e: '~', m: \"a\\nb\"}\n"
        "tasks:\n  - {name: a, type: noop}\n",
        /* the second 02:30 of Berlin's repeated hour: printed in UTC, read back the same */
        "name: wf\nschedule:\n  cron: '0 0 * * *'\n  timezone: Europe/Berlin\n"
        "  start: 2026-10-25T02:30:00+01:00\n  end: 2026-10-26 02:30\n"
        "tasks:\n  - {name: a, type: noop}\n",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *enc;
        size_t len;
        tn_def *d = schedule_round_trip(files[i], &enc, &len);
        cr_assert_not_null(d->schedule, "%s", files[i]);
        free(enc);
        tn_def_free(d);
    }
}

/* A block with only a cron: every other key has its default. */
Test(def, schedule_defaults)
{
    char *enc, *enc2;
    size_t len, len2;
    tn_def *d = schedule_round_trip(
        "name: wf\nschedule:\n  cron: '0 2 * * *'\ntasks:\n  - {name: a, type: noop}\n", &enc,
        &len);
    const tn_sched_spec *s = d->schedule;
    cr_assert_str_eq(s->tz, "UTC");
    cr_assert_eq(s->overlap, TN_OVERLAP_ALLOW_ALL);
    cr_assert_eq(s->catchup_ms, 60000);
    cr_assert_not(s->pause_on_failure);
    cr_assert_eq(s->start_ns, 0);
    cr_assert_eq(s->end_ns, 0);
    cr_assert_str_eq(s->priority, "");
    cr_assert_str_eq(s->failure_strategy, "");
    cr_assert_str_eq(s->worker_group, "");
    cr_assert_eq(s->nparams, 0);
    char *y;
    size_t ylen;
    cr_assert_eq(tn_def_to_yaml(d, &y, &ylen), TN_OK);
    cr_assert(strstr(y, "schedule:\n  cron: 0 2 * * *\n"), "%s", y);
    cr_assert_null(strstr(y, "timezone"), "defaults are not printed: %s", y);
    free(y);
    tn_def_free(d);
    /* the defaults written out are the same definition */
    d = schedule_round_trip("name: wf\nschedule:\n  catchup: 1m\n  overlap: allow_all\n"
                            "  timezone: UTC\n  pause_on_failure: false\n  cron: '0 2 * * *'\n"
                            "  params: {}\n  priority: ~\ntasks:\n  - {name: a, type: noop}\n",
                            &enc2, &len2);
    cr_assert(len == len2 && memcmp(enc, enc2, len) == 0);
    tn_def_free(d);
    free(enc2);
    /* a changed block is a changed definition */
    d = schedule_round_trip(
        "name: wf\nschedule:\n  cron: '0 3 * * *'\ntasks:\n  - {name: a, type: noop}\n", &enc2,
        &len2);
    cr_assert(len != len2 || memcmp(enc, enc2, len) != 0);
    tn_def_free(d);
    free(enc2);
    free(enc);
    /* `schedule:` with no value is no schedule */
    tn_errmsg msg = {{0}};
    cr_assert_eq(
        parse_str("name: wf\nschedule:\ntasks:\n  - {name: a, type: noop}\n", &d, &msg), TN_OK,
        "%s", msg.text);
    cr_assert_null(d->schedule);
    encode(d, &enc, &len);
    cr_assert_eq((uint8_t)enc[0], 0x9a);
    free(enc);
    tn_def_free(d);
}

/* start and end are civil times in the block's zone, wherever the zone is written. */
Test(def, schedule_bounds_in_the_zone)
{
    static const struct {
        const char *block;
        int64_t start, end;
    } cases[] = {
        {"  start: 2026-01-01\n  timezone: Asia/Shanghai\n", 1767196800, 0},
        {"  timezone: Asia/Shanghai\n  start: 2026-01-01 08:30:15\n", 1767227415, 0},
        {"  start: 2026-01-01\n", 1767225600, 0},
        {"  start: 2026-01-01T08:00:00+08:00\n  timezone: America/New_York\n", 1767225600, 0},
        {"  timezone: Europe/Berlin\n  end: 2026-10-25 02:30\n", 0, 1792888200},
        {"  timezone: America/New_York\n  end: 2026-03-08T03:30\n", 0, 1772955000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char yaml[512];
        snprintf(yaml, sizeof(yaml),
                 "name: wf\nschedule:\n  cron: '0 2 * * *'\n%stasks:\n  - {name: a, type: "
                 "noop}\n",
                 cases[i].block);
        char *enc;
        size_t len;
        tn_def *d = schedule_round_trip(yaml, &enc, &len);
        cr_expect_eq(d->schedule->start_ns, cases[i].start * SEC, "%s", cases[i].block);
        cr_expect_eq(d->schedule->end_ns, cases[i].end * SEC, "%s", cases[i].block);
        free(enc);
        tn_def_free(d);
    }
}

/* Each mistake in the block, on its line. The block starts on line 4. */
Test(def, schedule_errors)
{
    static const struct {
        const char *block;
        unsigned line;
        const char *want;
    } bad[] = {
        {"schedule: daily\n", 4,
         "\"schedule\" in workflow \"wf\" must be a mapping, not a string"},
        {"schedule: [a]\n", 4, "must be a mapping, not a list"},
        {"schedule:\n  overlap: skip\n", 4, "has no \"cron\""},
        {"schedule:\n  cron: [0, 2]\n", 5,
         "\"cron\" in \"schedule\" of workflow \"wf\" must be "
         "a string, not a list"},
        {"schedule:\n  cron: '0 2 * *'\n", 5, "expected 5 fields"},
        {"schedule:\n  cron: '0 61 * * * ?'\n", 5, "position 3"},
        {"schedule:\n  cron: '0 2 * * *'\n  cron: '0 3 * * *'\n", 6,
         "duplicate key \"cron\" in \"schedule\" of workflow \"wf\" (first at line 5)"},
        {"schedule:\n  cron: '0 2 * * *'\n  tasks: []\n", 6,
         "\"tasks\" is a workflow key; is it indented right?"},
        {"schedule:\n  cron: '0 2 * * *'\n  time_zone: UTC\n", 6,
         "unknown key \"time_zone\" in \"schedule\" of workflow \"wf\" (did you mean "
         "\"timezone\"?)"},
        {"schedule:\n  cron: '0 2 * * *'\n  timezone: Mars/Olympus\n", 6,
         "time zone \"Mars/Olympus\" is unknown"},
        {"schedule:\n  cron: '0 2 * * *'\n  start: tomorrow\n", 6,
         "bad \"start\" in \"schedule\" of workflow \"wf\": time \"tomorrow\" is not "
         "understood: "
         "write \"YYYY-MM-DD\""},
        {"schedule:\n  cron: '0 2 * * *'\n  end: 2026-02-30\n", 6, "not a valid date"},
        {"schedule:\n  cron: '0 2 * * *'\n  start: 1969-12-31\n", 6, "is before 1970"},
        {"schedule:\n  cron: '0 2 * * *'\n  start: 2026-02-01\n  end: 2026-02-01\n", 7,
         "\"end\" in \"schedule\" of workflow \"wf\" is not after \"start\""},
        {"schedule:\n  cron: '0 2 * * *'\n  end: 2026-01-01\n  timezone: Asia/Shanghai\n"
         "  start: 2026-01-01T00:00:00Z\n",
         6, "is not after \"start\""},
        {"schedule:\n  cron: '0 2 * * *'\n  timezone: Europe/Berlin\n"
         "  start: 2026-03-29 02:15\n",
         7, "does not exist in time zone Europe/Berlin"},
        {"schedule:\n  cron: '0 2 * * *'\n  overlap: queue\n", 6,
         "bad value \"queue\" for \"overlap\" in \"schedule\" of workflow \"wf\" (allowed: "
         "allow_all, skip, buffer_one, buffer_all, cancel_other)"},
        {"schedule:\n  cron: '0 2 * * *'\n  catchup: 5\n", 6, "a number needs a unit"},
        {"schedule:\n  cron: '0 2 * * *'\n  catchup: 3651d\n", 6, "the limit is 3650d"},
        {"schedule:\n  cron: '0 2 * * *'\n  pause_on_failure: yes\n", 6,
         "(allowed: true, false)"},
        {"schedule:\n  cron: '0 2 * * *'\n  priority: urgent\n", 6,
         "(allowed: highest, high, medium, low, lowest)"},
        {"schedule:\n  cron: '0 2 * * *'\n  failure_strategy: stop\n", 6,
         "(allowed: end, continue)"},
        {"schedule:\n  cron: '0 2 * * *'\n  worker_group: a/b\n", 6, "bad worker group name"},
        {"schedule:\n  cron: '0 2 * * *'\n  params: {bad key: x}\n", 6, "bad param name"},
        {"schedule:\n  cron: '0 2 * * *'\n  params:\n    k: a\n    k: b\n", 8,
         "duplicate key \"k\""},
        {"schedule:\n  cron: '0 2 * * *'\n  params: {k: [1]}\n", 6, "must be a string"},
        {"schedule:\n  cron: '0 2 * * *'\n  params: [k]\n", 6, "must be a mapping"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char yaml[512], prefix[32];
        snprintf(yaml, sizeof(yaml), "name: wf\ntasks:\n  - {name: a, type: noop}\n%s",
                 bad[i].block);
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        cr_expect_eq(parse_str(yaml, &d, &msg), TN_ERR_PARSE, "accepted:\n%s", yaml);
        cr_expect_null(d);
        snprintf(prefix, sizeof(prefix), "t.yaml:%u: ", bad[i].line);
        cr_expect(strncmp(msg.text, prefix, strlen(prefix)) == 0, "want line %u: %s",
                  bad[i].line, msg.text);
        cr_expect(strstr(msg.text, bad[i].want) != NULL, "want \"%s\" in \"%s\"", bad[i].want,
                  msg.text);
        tn_def_free(d);
    }
}

/* The encodings of two definitions as tern wrote them before the schedule key existed
 * (computed from these files on the earlier code): stored definitions keep their bytes,
 * so applying an unchanged file makes no new version. */
Test(def, encoding_without_schedule_is_unchanged)
{
    static const struct {
        const char *yaml, *hex;
    } pins[] = {
        {"name: wf\ndescription: d\nparams: {dt: '20260101', region: eu}\npriority: high\n"
         "tasks:\n  - {name: a, type: shell, command: echo hi, retries: 2}\n"
         "  - {name: b, type: noop, deps: [a]}\n",
         "9a01a27766a16482a26474a83230323630313031a6726567696f6ea26575a8706172616c6c656ca4686"
         "9676800a47761726ea3656e64929ca161a57368656c6c90c380020000a47761726e00a66d656469756d9"
         "9a764656661756c74c000c0a76563686f206869cd13880000009ca162a46e6f6f7091a161c380000000a"
         "47761726e00a66d656469756d96a764656661756c74c000a7737563636573730080"},
        {"name: wf\ntenant: etl\ntasks:\n  - {name: a, type: noop}\n",
         "9b01a27766a080a8706172616c6c656ca66d656469756d00a47761726ea3656e64919ca161a46e6f6f7"
         "090c380000000a47761726e00a66d656469756d96a764656661756c74c000a7737563636573730080a36"
         "5746c"},
    };
    for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++) {
        tn_def *d = NULL;
        tn_errmsg msg = {{0}};
        cr_assert_eq(parse_str(pins[i].yaml, &d, &msg), TN_OK, "%s", msg.text);
        char *enc, hex[1024] = "";
        size_t len;
        encode(d, &enc, &len);
        cr_assert(len * 2 < sizeof(hex));
        for (size_t k = 0; k < len; k++)
            snprintf(hex + 2 * k, 3, "%02x", (uint8_t)enc[k]);
        cr_expect_str_eq(hex, pins[i].hex);
        free(enc);
        tn_def_free(d);
    }
}

/* bytes with `from` (its first occurrence) replaced by `to` */
static uint8_t *patched(const char *enc, size_t len, const void *from, size_t nfrom,
                        const void *to, size_t nto, size_t *out_len)
{
    const char *at = memmem(enc, len, from, nfrom);
    cr_assert_not_null(at, "pattern not in the encoding");
    cr_assert_null(memmem(at + 1, len - (size_t)(at + 1 - enc), from, nfrom), "not unique");
    size_t off = (size_t)(at - enc);
    uint8_t *b = malloc(len - nfrom + nto);
    memcpy(b, enc, off);
    memcpy(b + off, to, nto);
    memcpy(b + off + nto, enc + off + nfrom, len - off - nfrom);
    *out_len = len - nfrom + nto;
    return b;
}

/* The decoder reads the schedule strictly: every truncation fails, every corrupted copy
 * it accepts re-encodes to itself, and values the parser would refuse are refused. */
Test(def, schedule_decode_is_strict)
{
    tn_def *d = parse_ok("tests/defs/good/schedule.yaml");
    char *enc;
    size_t len;
    encode(d, &enc, &len);
    tn_def_free(d);
    for (size_t cut = 0; cut < len; cut++) {
        char *part = malloc(cut ? cut : 1);
        memcpy(part, enc, cut);
        tn_def *out = NULL;
        cr_assert_neq(tn_def_decode(part, cut, &out, NULL), TN_OK, "%zu-byte prefix", cut);
        free(part);
    }
    uint8_t *copy = malloc(len);
    for (size_t i = 0; i < len; i++)
        for (unsigned flip = 1; flip < 256; flip <<= 1) {
            memcpy(copy, enc, len);
            copy[i] ^= (uint8_t)flip;
            decode_any(copy, len);
        }
    free(copy);
    free(enc);

    cr_assert_eq(parse_str("name: wf\nschedule:\n  cron: '0 2 * * *'\n  overlap: skip\n"
                           "  start: 2026-01-01\n  params: {a: '1', b: '2'}\n"
                           "tasks:\n  - {name: a, type: noop}\n",
                           &d, NULL),
                 TN_OK);
    encode(d, &enc, &len);
    tn_def_free(d);
    uint8_t be[9] = {0xcf};
    for (int k = 0; k < 8; k++)
        be[1 + k] = (uint8_t)((uint64_t)(1767225600 * SEC) >> (56 - 8 * k));
    uint8_t be1[9];
    memcpy(be1, be, 9);
    be1[8] += 1;
    const struct {
        const char *from, *to;
        size_t nfrom, nto;
        const char *why;
    } bad[] = {
        {"\xa1"
         "a\xa1"
         "1\xa1"
         "b\xa1"
         "2",
         "\xa1"
         "b\xa1"
         "2\xa1"
         "a\xa1"
         "1",
         8, 8, "params out of order"},
        {"\xa1"
         "a\xa1"
         "1\xa1"
         "b",
         "\xa1"
         "a\xa1"
         "1\xa1"
         "a",
         6, 6, "a param twice"},
        {"\xa1"
         "a\xa1"
         "1",
         "\xa1"
         " \xa1"
         "1",
         4, 4, "a bad param key"},
        {"0 2 * * *", "0 2 * * 9", 9, 9, "a bad cron"},
        {"\xa4skip", "\xa4skiq", 5, 5, "an unknown overlap word"},
        {"\xa3UTC", "\xa3UTX", 4, 4, "an unknown zone"},
        {"\xa3UTC", "\xa0", 4, 1, "an empty zone"},
        {(const char *)be, (const char *)be1, 9, 9, "a bound not in whole seconds"},
        {"\xa0\xa0\xa0\x82", "\xa3lox\xa0\xa0\x82", 4, 7, "an unknown priority"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n;
        uint8_t *b = patched(enc, len, bad[i].from, bad[i].nfrom, bad[i].to, bad[i].nto, &n);
        tn_def *out = NULL;
        tn_errmsg msg = {{0}};
        cr_expect_eq(tn_def_decode(b, n, &out, &msg), TN_ERR_CORRUPT, "%s: %s", bad[i].why,
                     msg.text);
        cr_expect_null(out);
        free(b);
    }
    free(enc);

    /* a nil where the schedule goes: not the canonical form of "no schedule" */
    cr_assert_eq(
        parse_str("name: wf\ntenant: etl\ntasks:\n  - {name: a, type: noop}\n", &d, NULL),
        TN_OK);
    encode(d, &enc, &len);
    tn_def_free(d);
    char *nil = malloc(len + 1);
    memcpy(nil, enc, len);
    nil[0] = (char)0x9c;
    nil[len] = (char)0xc0;
    cr_assert_neq(tn_def_decode(nil, len + 1, &d, NULL), TN_OK);
    free(nil);
    free(enc);
}

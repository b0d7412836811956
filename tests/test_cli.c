/* The command line as a user meets it, driving the tern binary (TERN_BIN) in a temp dir:
 * names in any language, def show's YAML, the read commands with no master running,
 * and the habits a user expects (help, version, "did you mean"). */
#include <jansson.h>
#include <stdarg.h>

#include "testutil.h"

typedef struct cli {
    char *dir;
    char *out, *err;
    int rc;
} cli;

/* the test's temp dir, removed by the suite's fini even when an assertion ends a test */
static char current_dir[256];

static void cli_init(cli *c)
{
    *c = (cli){.dir = tu_tmpdir()};
    snprintf(current_dir, sizeof(current_dir), "%s", c->dir);
}

static void cli_fini(cli *c)
{
    free(c->out);
    free(c->err);
    tu_rm_rf(c->dir);
    free(c->dir);
    current_dir[0] = 0;
}

static void suite_fini(void)
{
    if (current_dir[0])
        tu_rm_rf(current_dir);
}

TestSuite(cli, .fini = suite_fini);

/* `tern ARGS` in the temp dir; its status, stdout and stderr in c. */
__attribute__((format(printf, 2, 3))) static int tern(cli *c, const char *fmt, ...)
{
    char args[4096], line[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(line, sizeof(line), "cd '%s' && '%s' %s", c->dir, tu_tern(), args);
    free(c->out);
    free(c->err);
    c->rc = tu_run(line, &c->out, &c->err);
    return c->rc;
}

static void write_file(cli *c, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", c->dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static const char chinese_wf[] = "name: 每日数据仓库同步\n"
                                 "tasks:\n"
                                 "  - name: 抽取\n"
                                 "    type: shell\n"
                                 "    command: echo 抽取完成\n"
                                 "  - name: 装载\n"
                                 "    type: shell\n"
                                 "    deps: [抽取]\n"
                                 "    command: |\n"
                                 "      echo one\n"
                                 "      echo two\n";

/* A workflow named in Chinese runs through `tern run`; afterwards, with no master,
 * ls, status and logs answer from the store and say so on stderr. */
Test(cli, chinese_names_run_and_read_commands_work_without_a_master)
{
    cli c;
    cli_init(&c);
    write_file(&c, "wf.yaml", chinese_wf);
    cr_assert_eq(tern(&c, "run wf.yaml --data d"), 0, "%s%s", c.out, c.err);
    cr_expect(strstr(c.out, "每日数据仓库同步"), "%s", c.out);

    cr_assert_eq(tern(&c, "ls --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "每日数据仓库同步") && strstr(c.out, "SUCCESS"), "%s", c.out);
    cr_expect(strstr(c.err, "(from the store; no master is running)"), "%s", c.err);

    cr_assert_eq(tern(&c, "status 1 --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "抽取") && strstr(c.out, "装载"), "%s", c.out);
    cr_expect(strstr(c.err, "(from the store; no master is running)"), "%s", c.err);

    cr_assert_eq(tern(&c, "status 1 --data d --json"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "\"name\":\"每日数据仓库同步\""), "%s", c.out);

    cr_assert_eq(tern(&c, "logs 2 --data d"), 0, "%s", c.err);
    cr_expect_str_eq(c.out, "one\ntwo\n");
    cr_expect(strstr(c.err, "(from the store; no master is running)"), "%s", c.err);
    cr_assert_eq(tern(&c, "logs 1 --data d --json"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "\"log\":\"抽取完成\\n\""), "%s", c.out);

    cr_expect_eq(tern(&c, "status 99 --data d"), 1);
    cr_expect(strstr(c.err, "no workflow instance 99"), "%s", c.err);
    cr_expect_eq(tern(&c, "ls --data nowhere"), 1);
    cr_expect(strstr(c.err, "no tern store here"), "%s", c.err);
    cli_fini(&c);
}

/* A 256-byte name, a '/', a control character (C0 or C1) are refused at apply
 * with the file and line. */
Test(cli, bad_names_are_refused_with_the_rule)
{
    cli c;
    cli_init(&c);
    char long_name[300] = "";
    for (int i = 0; i < 85; i++)
        strcat(long_name, "数");
    strcat(long_name, "x");
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), "name: %s\ntasks:\n  - {name: a, type: noop}\n", long_name);
    write_file(&c, "long.yaml", yaml);
    write_file(&c, "slash.yaml", "name: a/b\ntasks:\n  - {name: a, type: noop}\n");
    write_file(&c, "ctl.yaml", "name: \"a\\tb\"\ntasks:\n  - {name: a, type: noop}\n");
    write_file(&c, "c1.yaml", "name: \"a\\x85b\"\ntasks:\n  - {name: a, type: noop}\n");
    static const char *const files[] = {"long.yaml", "slash.yaml", "ctl.yaml", "c1.yaml"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        cr_expect_eq(tern(&c, "def apply %s --data d", files[i]), 1, "%s", files[i]);
        cr_expect(strstr(c.err, ":1: bad workflow name"), "%s: %s", files[i], c.err);
        cr_expect(strstr(c.err, "1..255 bytes of UTF-8"), "%s: %s", files[i], c.err);
    }
    cli_fini(&c);
}

/* `def show` prints YAML that `def apply` takes back as unchanged. */
Test(cli, def_show_applies_back_unchanged)
{
    cli c;
    cli_init(&c);
    write_file(&c, "wf.yaml", chinese_wf);
    cr_assert_eq(tern(&c, "def apply wf.yaml --data d"), 0, "%s", c.err);
    cr_assert_eq(tern(&c, "def show 每日数据仓库同步 --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "  command: |\n    echo one\n    echo two\n"), "%s", c.out);
    write_file(&c, "shown.yaml", c.out);
    cr_assert_eq(tern(&c, "def apply shown.yaml --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "unchanged (version 1)"), "%s", c.out);
    cli_fini(&c);
}

/* A sub_workflow naming a workflow that is neither stored nor applied with it is refused
 * at apply (def apply and run) with file:line; applied together they pass, and the
 * parent's status names the child instance. */
Test(cli, sub_workflow_target_checked_at_apply_and_child_shown)
{
    cli c;
    cli_init(&c);
    write_file(&c, "parent.yaml",
               "name: parent\ntasks:\n  - name: s\n    type: sub_workflow\n"
               "    workflow: 子流程\n");
    write_file(&c, "child.yaml", "name: 子流程\ntasks:\n  - {name: a, type: noop}\n");
    cr_expect_eq(tern(&c, "def apply parent.yaml --data d"), 1);
    cr_expect(strstr(c.err, "parent.yaml:5: sub_workflow task \"s\" runs workflow \"子流程\""),
              "%s", c.err);
    cr_expect_eq(tern(&c, "run parent.yaml --data d"), 1);
    cr_expect(strstr(c.err, "parent.yaml:5:"), "%s", c.err);
    cr_assert_eq(tern(&c, "def apply parent.yaml child.yaml --data d"), 0, "%s", c.err);
    cr_assert_eq(tern(&c, "run parent.yaml --data d"), 0, "%s%s", c.out, c.err);
    cr_assert_eq(tern(&c, "status 1 --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "child instance 2"), "%s", c.out);
    cr_assert_eq(tern(&c, "status 1 --json --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "\"child\":2"), "%s", c.out);
    cli_fini(&c);
}

/* --version; a bare `tern` prints the help on stderr and exits 2; the help points to the
 * format reference; mistyped commands and options get "did you mean". */
Test(cli, version_help_and_did_you_mean)
{
    cli c;
    cli_init(&c);
    cr_expect_eq(tern(&c, "--version"), 0);
    cr_expect(strncmp(c.out, "tern ", 5) == 0 && strchr(c.out, '.'), "%s", c.out);
    cr_expect_eq(tern(&c, "%s", ""), 2);
    cr_expect(strstr(c.err, "usage: tern COMMAND") && !c.out[0], "%s|%s", c.out, c.err);
    cr_expect_eq(tern(&c, "help"), 0);
    cr_expect(strstr(c.out, "docs/WORKFLOW_FORMAT.md"), "%s", c.out);
    cr_expect_eq(tern(&c, "sttus 1"), 2);
    cr_expect(strstr(c.err, "did you mean `tern status`?"), "%s", c.err);
    cr_expect_eq(tern(&c, "ls --jsn"), 2);
    cr_expect(strstr(c.err, "did you mean --json?"), "%s", c.err);
    cr_expect_eq(tern(&c, "frobnicate"), 2);
    cr_expect(!strstr(c.err, "did you mean"), "%s", c.err);
    cli_fini(&c);
}

/* taskgroup and env: ls (table and --json), and a bad SLOTS says what is wrong;
 * ls --state names the valid states. */
Test(cli, taskgroup_env_ls_and_messages)
{
    cli c;
    cli_init(&c);
    cr_expect_eq(tern(&c, "taskgroup set db two --data d"), 2);
    cr_expect(strstr(c.err, "SLOTS must be a whole number from 0 to 2147483647, not \"two\""),
              "%s", c.err);
    cr_assert_eq(tern(&c, "taskgroup set 数据库 3 --data d"), 0, "%s", c.err);
    cr_assert_eq(tern(&c, "taskgroup set db 2 --data d"), 0, "%s", c.err);
    cr_assert_eq(tern(&c, "taskgroup ls --data d"), 0, "%s", c.err);
    /* the Chinese name takes 6 columns: the slots still line up */
    cr_expect_str_eq(c.out, "GROUP   SLOTS\ndb          2\n数据库      3\n");
    cr_assert_eq(tern(&c, "taskgroup ls --data d --json"), 0, "%s", c.err);
    cr_expect_str_eq(c.out,
                     "[{\"name\":\"db\",\"slots\":2},{\"name\":\"数据库\",\"slots\":3}]\n");
    write_file(&c, "e.sh", "export A=1\nexport B=2\n");
    cr_assert_eq(tern(&c, "env set hadoop e.sh --data d"), 0, "%s", c.err);
    cr_assert_eq(tern(&c, "env ls --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "hadoop") && strstr(c.out, "22 bytes"), "%s", c.out);
    cr_assert_eq(tern(&c, "env ls --data d --json"), 0, "%s", c.err);
    cr_expect_str_eq(c.out,
                     "[{\"name\":\"hadoop\",\"text\":\"export A=1\\nexport B=2\\n\"}]\n");
    cr_expect_eq(tern(&c, "ls --state bogus --data d"), 2);
    cr_expect(strstr(c.err, "(one of: SUBMITTED_SUCCESS, RUNNING_EXECUTION"), "%s", c.err);
    cli_fini(&c);
}

/* The column of `s` on each line of text that contains `mark` (bytes; -1 when a line
 * lacks s), all equal, or -2 when they differ. */
static int same_column(const char *text, const char *mark, const char *s)
{
    int col = -1;
    for (const char *l = text; l && *l;) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char line[2048];
        snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1),
                 l);
        if (strstr(line, mark)) {
            const char *p = strstr(line, s);
            int c = p ? (int)(p - line) : -1;
            if (col >= 0 && c != col)
                return -2;
            col = c;
        }
        l = end ? end + 1 : NULL;
    }
    return col;
}

/* audit: columns aligned past the longest actor (master:standalone), a missing instance
 * prints only the error, and JSON times are ISO 8601 to the nanosecond, as in ls. */
Test(cli, audit_columns_missing_instance_and_json_times)
{
    cli c;
    cli_init(&c);
    write_file(&c, "wf.yaml", chinese_wf);
    cr_assert_eq(tern(&c, "run wf.yaml --data d"), 0, "%s", c.err);
    cr_assert_eq(tern(&c, "audit 1 --data d"), 0, "%s", c.err);
    cr_expect(strstr(c.out, "master:standalone"), "%s", c.out);
    int task_col = same_column(c.out, " task ", " task ");
    int wf_col = same_column(c.out, " workflow ", " workflow ");
    cr_expect(task_col > 0 && task_col == wf_col, "%d %d\n%s", task_col, wf_col, c.out);

    cr_expect_eq(tern(&c, "audit 99 --data d"), 1);
    cr_expect_str_eq(c.out, "");
    cr_expect(strstr(c.err, "workflow instance 99 has no events"), "%s", c.err);
    cr_expect_eq(tern(&c, "audit 99 --data d --json"), 1);
    cr_expect_str_eq(c.out, "");

    cr_assert_eq(tern(&c, "audit 1 --data d --json"), 0, "%s", c.err);
    const char *at = strstr(c.out, "\"at\":\"");
    cr_assert_not_null(at, "%s", c.out);
    /* "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" */
    cr_expect_eq(at[6 + 19], '.');
    cr_expect_eq(at[6 + 29], 'Z', "%.40s", at);
    cr_assert_eq(tern(&c, "ls --data d --json"), 0, "%s", c.err);
    const char *cr = strstr(c.out, "\"created_at\":\"");
    cr_assert_not_null(cr, "%s", c.out);
    cr_expect_eq(cr[14 + 29], 'Z', "%s", c.out);
    cli_fini(&c);
}

/* `standalone --data X` prints the commands as they work from here. */
Test(cli, standalone_prints_the_commands_that_work_from_here)
{
    cli c;
    cli_init(&c);
    /* the shell starts it, reads its banner, then ends exactly that pid */
    char line[8192];
    snprintf(line, sizeof(line),
             "cd '%s'; '%s' standalone --data sd --no-cgroup 2>banner & pid=$!; "
             "for i in $(seq 100); do grep -q running banner && break; sleep 0.1; done; "
             "kill $pid; wait $pid; cat banner",
             c.dir, tu_tern());
    free(c.out);
    free(c.err);
    c.rc = tu_run(line, &c.out, &c.err);
    cr_expect(strstr(c.out, "`tern ls --data sd`"), "%s", c.out);
    cr_expect(strstr(c.out, "`tern start WF --data sd`"), "%s", c.out);
    cli_fini(&c);
}

/* A command loads only what it needs: libcurl (and the ~30 libraries behind it) is
 * loaded by a master at its first webhook, not by every `tern` at start. */
Test(cli, libcurl_not_loaded_at_start)
{
    cli c;
    cli_init(&c);
    cr_assert_eq(tern(&c, "--version"), 0);
    char line[4400];
    snprintf(line, sizeof(line), "LD_DEBUG=files '%s' --version", tu_tern());
    free(c.out);
    free(c.err);
    cr_assert_eq(tu_run(line, &c.out, &c.err), 0);
    cr_expect(strstr(c.err, "libnng"), "the loader's trace names what it loads: %s", c.err);
    cr_expect(!strstr(c.err, "libcurl"), "libcurl loaded at start: %s", c.err);
    cli_fini(&c);
}

/* `tern bench latency --quick`: every result line is there and well formed, and the
 * standalone it started and its temp dir are gone afterwards. */
Test(cli, bench_latency_prints_its_results_and_leaves_nothing)
{
    cli c;
    cli_init(&c);
    cr_assert_eq(tern(&c, "bench latency --quick --dir '%s'", c.dir), 0, "%s", c.err);
    static const char *const names[] = {"latency.noop4.tasks",
                                        "latency.submit_to_started.p50_us",
                                        "latency.submit_to_started.p99_us",
                                        "latency.client_to_submit_event.p50_us",
                                        "latency.submit_event_to_started.p50_us",
                                        "latency.cli_submit_to_started.p50_us",
                                        "latency.cli_submit_to_started.p99_us",
                                        "latency.cli_start_help.p50_us"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char want[128];
        snprintf(want, sizeof(want), "BENCH name=%s value=", names[i]);
        const char *p = strstr(c.out, want);
        cr_expect(p, "no %s in: %s", names[i], c.out);
        if (p)
            cr_expect_gt(strtod(p + strlen(want), NULL), 0, "%s: not a positive value",
                         names[i]);
    }
    char ls[4400];
    snprintf(ls, sizeof(ls), "ls -A '%s'", c.dir);
    char *out = NULL, *err = NULL;
    tu_run(ls, &out, &err);
    cr_expect(!strstr(out, "tern-bench-"), "left behind: %s", out);
    free(out);
    free(err);
    cli_fini(&c);
}

/* A strict parse of a command's stdout (jansson refuses bytes that are not UTF-8). */
static json_t *parsed(const cli *c)
{
    json_error_t je;
    json_t *j = json_loads(c->out, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, c->out);
    return j;
}

/* Names with a quote and a backslash, and a task output with a byte that is not UTF-8: the
 * offline --json outputs (run, def ls, def show, audit, logs) are strict JSON and give the
 * names back as they are, the bad byte as U+FFFD. */
Test(cli, json_outputs_are_strict_json_with_odd_names)
{
    cli c;
    cli_init(&c);
    write_file(&c, "q.yaml",
               "name: \"q\\\"uo\\\\te\"\ntasks:\n  - name: \"t\\\"1\"\n    type: shell\n"
               "    command: printf 'z\\377\\n'\n");
    const char *wf = "q\"uo\\te";
    cr_assert_eq(tern(&c, "run q.yaml --data d --json"), 0, "%s", c.err);
    json_t *j = parsed(&c);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "workflow"), "name")),
                     wf);
    json_t *t = json_array_get(json_object_get(j, "tasks"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "name")), "t\"1");
    json_int_t task = json_integer_value(json_object_get(t, "id"));
    json_decref(j);
    cr_assert_eq(tern(&c, "def ls --data d --json"), 0, "%s", c.err);
    j = parsed(&c);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(j, 0), "name")), wf);
    json_decref(j);
    cr_assert_eq(tern(&c, "def show 'q\"uo\\te' --data d --json"), 0, "%s", c.err);
    j = parsed(&c);
    cr_assert_str_eq(json_string_value(json_object_get(j, "name")), wf);
    json_decref(j);
    cr_assert_eq(tern(&c, "audit 1 --data d --json"), 0, "%s", c.err);
    j = parsed(&c);
    cr_assert_gt(json_array_size(j), 1);
    json_decref(j);
    cr_assert_eq(tern(&c, "logs %lld --data d --json", (long long)task), 0, "%s", c.err);
    j = parsed(&c);
    cr_assert_str_eq(json_string_value(json_object_get(j, "log")), "z\xef\xbf\xbd\n");
    json_decref(j);
    cli_fini(&c);
}

/* The option parser of `tern` (tools/opt.c): flags, values, repeated key=value, usage
 * errors, config files and the generated help; and every command's help through the
 * binary, which must list the flags each command has always taken. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opt.h"
#include "testutil.h"
#include "util.h"

typedef struct t_opts {
    const char *data, *name, *config;
    bool json, json_lines, follow, dry_run, no_cgroup;
    uint32_t slots;
    uint64_t timeout, size, count;
    int64_t at;
    tn_opt_kv param;
    tn_opt_list from;
} t_opts;

static const tn_opt t_table[] = {
    {"data", 0, TN_OPT_STR, offsetof(t_opts, data), "DIR", .help = "the data directory",
     TN_OPT_CFG},
    {"name", 'n', TN_OPT_STR, offsetof(t_opts, name), "NAME", .help = "a name", TN_OPT_CFG},
    {"json", 0, TN_OPT_FLAG, offsetof(t_opts, json), NULL, .help = "print JSON"},
    {"json-lines", 0, TN_OPT_FLAG, offsetof(t_opts, json_lines), NULL,
     .help = "an exact name (--json) wins over the longer names it prefixes"},
    {"follow", 'f', TN_OPT_FLAG, offsetof(t_opts, follow), NULL, .help = "follow"},
    {"dry-run", 0, TN_OPT_FLAG, offsetof(t_opts, dry_run), NULL, .help = "run nothing"},
    {"no-cgroup", 0, TN_OPT_FLAG, offsetof(t_opts, no_cgroup), NULL, .help = "no cgroups",
     TN_OPT_CFG},
    {"slots", 0, TN_OPT_U32, offsetof(t_opts, slots), "N", .help = "slots", TN_OPT_CFG, 1, 100},
    {"timeout", 0, TN_OPT_DURATION, offsetof(t_opts, timeout), "DURATION", .help = "a timeout",
     TN_OPT_CFG},
    {"size", 0, TN_OPT_SIZE, offsetof(t_opts, size), "BYTES", .help = "a size", TN_OPT_CFG},
    {"count", 0, TN_OPT_U64, offsetof(t_opts, count), "N", .help = "a count", .min = 1,
     .want = "a positive count"},
    {"at", 0, TN_OPT_TIME, offsetof(t_opts, at), "ISO8601", .help = "a time"},
    {"param", 0, TN_OPT_KV, offsetof(t_opts, param), "K=V", .help = "a param", .max = 3},
    {"from", 0, TN_OPT_LIST, offsetof(t_opts, from), "TASK", .help = "a task"},
    {"config", 0, TN_OPT_CONFIG, offsetof(t_opts, config), "FILE", .help = "a config file"},
    {0}};

static const tn_opt_cmd t_cmd = {"t",
                                 (const char *const[]){"ARG...", NULL},
                                 "A command to test the parser with.\n",
                                 t_table,
                                 .max_args = 2,
                                 .cfg_ignored =
                                     (const char *const[]){"sibling", "config", NULL}};

/* Parse a NULL-ended list of arguments after the command name. */
static int parse(t_opts *o, tn_opt_args *a, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return tn_opt_parse(&t_cmd, argc, argv, o, a);
}

#define ARGV(...) ((char *[]){"t", __VA_ARGS__, NULL})

Test(opt, flags_values_and_positionals)
{
    t_opts o = {.data = "./d"};
    tn_opt_args a;
    cr_assert_eq(parse(&o, &a,
                       ARGV("one", "--json", "--data", "/x", "-f", "--slots=7", "--timeout",
                            "1500ms", "--size", "2K", "-n", "w1", "--count", "9", "--at",
                            "2026-11-22T10:00:00Z", "--", "--two")),
                 0, "%s", a.err);
    cr_assert(o.json && !o.json_lines && o.follow && !o.dry_run);
    cr_assert_str_eq(o.data, "/x");
    cr_assert_str_eq(o.name, "w1");
    cr_assert_eq(o.slots, 7);
    cr_assert_eq(o.timeout, 1500);
    cr_assert_eq(o.size, 2048);
    cr_assert_eq(o.count, 9);
    cr_assert_gt(o.at, 0);
    cr_assert_eq(a.n, 2);
    cr_assert_str_eq(a.v[0], "one");
    cr_assert_str_eq(a.v[1], "--two", "after --, options are arguments");
    tn_opt_args_free(&a);
    /* -Xvalue, an unambiguous prefix, and the last of a repeated string wins */
    t_opts p = {0};
    cr_assert_eq(parse(&p, &a, ARGV("-nfirst", "--dry", "--name", "second")), 0, "%s", a.err);
    cr_assert_str_eq(p.name, "second");
    cr_assert(p.dry_run);
    tn_opt_args_free(&a);
}

Test(opt, repeated_params)
{
    t_opts o = {0};
    tn_opt_args a;
    cr_assert_eq(parse(&o, &a,
                       ARGV("--param", "dt=2026", "--from", "a", "--param=k=v=w", "--from", "b",
                            "--param", "e=")),
                 0, "%s", a.err);
    cr_assert_eq(o.param.n, 3);
    cr_assert_str_eq(o.param.key[0], "dt");
    cr_assert_str_eq(o.param.val[0], "2026");
    cr_assert_str_eq(o.param.key[1], "k");
    cr_assert_str_eq(o.param.val[1], "v=w");
    cr_assert_str_eq(o.param.key[2], "e");
    cr_assert_str_eq(o.param.val[2], "");
    cr_assert_eq(o.from.n, 2);
    cr_assert_str_eq(o.from.v[1], "b");
    tn_opt_args_free(&a);
    t_opts p = {0};
    cr_assert_eq(parse(&p, &a, ARGV("--param", "novalue")), 2);
    cr_assert(strstr(a.err, "--param") && strstr(a.err, "novalue"), "%s", a.err);
    tn_opt_args_free(&a);
    t_opts q = {0};
    cr_assert_eq(parse(&q, &a, ARGV("--param", "=v")), 2, "an empty key");
    tn_opt_args_free(&a);
    t_opts r = {0};
    cr_assert_eq(
        parse(&r, &a,
              ARGV("--param", "a=1", "--param", "b=2", "--param", "c=3", "--param", "d=4")),
        2);
    cr_assert(strstr(a.err, "too many --param"), "%s", a.err);
    tn_opt_args_free(&a);
}

Test(opt, usage_errors)
{
    const struct {
        char **argv;
        const char *says;
    } cases[] = {
        {ARGV("--nope"), "unknown option \"--nope\""},
        {ARGV("-x"), "unknown option \"-x\""},
        {ARGV("--d", "x"), "ambiguous option \"--d\""},
        {ARGV("--slots", "0"), "--slots wants a number 1..100"},
        {ARGV("--slots", "101"), "--slots"},
        {ARGV("--slots", "-3"), "--slots"},
        {ARGV("--count", "x"), "--count wants a positive count, not \"x\""},
        {ARGV("--timeout", "soon"), "--timeout wants a duration"},
        {ARGV("--size", "big"), "--size wants a size"},
        {ARGV("--at", "yesterday"), "--at wants an ISO 8601 time"},
        {ARGV("--json=yes"), "--json takes no value"},
        {ARGV("--data"), "--data wants DIR"},
        {ARGV("a", "b", "c"), "unexpected argument \"c\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        t_opts o = {0};
        tn_opt_args a;
        cr_assert_eq(parse(&o, &a, cases[i].argv), 2, "case %zu: %s", i, a.err);
        cr_assert(strstr(a.err, cases[i].says), "case %zu: \"%s\" lacks \"%s\"", i, a.err,
                  cases[i].says);
        tn_opt_args_free(&a);
    }
}

Test(opt, cli_prints_the_error_and_the_help_pointer)
{
    char path[] = "/tmp/tn-opt-err-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    t_opts o = {0};
    tn_opt_args a;
    int rc = tn_opt_cli(&t_cmd, 2, ARGV("--frob"), &o, &a);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[512] = "";
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    cr_assert_eq(rc, 2);
    cr_assert_gt(n, 0);
    /* a near miss names the option meant */
    cr_assert_str_eq(buf, "tern t: unknown option \"--frob\" (did you mean --from?); see "
                          "`tern t --help`\n");
}

/* "did you mean": near misses only, by edit distance. */
Test(opt, suggest_near_misses_only)
{
    static const char *const words[] = {"status", "start", "stop", "logs", "ls"};
    cr_assert_eq(tn_edit_distance("sttus", "status"), 1);
    cr_assert_eq(tn_edit_distance("stauts", "status"), 1, "a swap of neighbours is one step");
    cr_assert_eq(tn_edit_distance("stauts", "start"), 2);
    cr_assert_str_eq(tn_opt_suggest("sttus", words, 5), "status");
    cr_assert_str_eq(tn_opt_suggest("lgos", words, 5), "logs");
    cr_assert_null(tn_opt_suggest("frobnicate", words, 5));
    cr_assert_null(tn_opt_suggest("x", words, 5));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(opt, config_file)
{
    char dir[] = "/tmp/tn-opt-XXXXXX", cfg[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cfg, sizeof(cfg), "%s/t.conf", dir);
    write_file(cfg, "# a comment\n\n  data = /from/file  \nname=w9 # trailing comment\n"
                    "slots = 5\ntimeout = 2s\nsize = 1M\nno-cgroup = true\n");
    t_opts o = {0};
    tn_opt_args a;
    cr_assert_eq(parse(&o, &a, ARGV("--config", cfg, "--name", "flag")), 0, "%s", a.err);
    cr_assert_str_eq(o.data, "/from/file");
    cr_assert_str_eq(o.name, "flag", "a flag wins over the file");
    cr_assert_eq(o.slots, 5);
    cr_assert_eq(o.timeout, 2000);
    cr_assert_eq(o.size, 1 << 20);
    cr_assert(o.no_cgroup);
    tn_opt_args_free(&a);

    static const struct {
        const char *text;
        int code;
        const char *says;
    } bad[] = {
        {"data = x\nfrobs = 1\n", 2, ":2: unknown key \"frobs\""},
        {"json = true\n", 2, ":1: json cannot come from a config file"},
        {"slots = 1000\n", 2, ":1: slots wants a number 1..100"},
        {"no-cgroup = maybe\n", 2, ":1: no-cgroup wants true or false"},
        {"just words\n", 1, ":1: expected `key = value`"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_file(cfg, bad[i].text);
        t_opts p = {0};
        cr_assert_eq(parse(&p, &a, ARGV("--config=x", "--config", cfg)), 1,
                     "an unreadable file: %s", a.err);
        tn_opt_args_free(&a);
        cr_assert_eq(parse(&p, &a, ARGV("--config", cfg)), bad[i].code, "case %zu: %s", i,
                     a.err);
        cr_assert(strstr(a.err, cfg) && strstr(a.err, bad[i].says), "case %zu: %s", i, a.err);
        tn_opt_args_free(&a);
    }
    /* a sibling command's keys, and `config`, are ignored: one file serves them all */
    write_file(cfg, "sibling = 3\nconfig = other.conf\nno-cgroup = false\n");
    t_opts q = {.no_cgroup = true};
    cr_assert_eq(parse(&q, &a, ARGV("--config", cfg)), 0, "%s", a.err);
    cr_assert(!q.no_cgroup);
    tn_opt_args_free(&a);
    unlink(cfg);
    rmdir(dir);
}

Test(opt, help_lists_every_option)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    tn_opt_help(&t_cmd, f);
    fclose(f);
    cr_assert(strncmp(text, "usage: tern t ARG... [--data DIR]", 33) == 0, "%s", text);
    cr_assert(strstr(text, "A command to test the parser with."));
    const char *opts = strstr(text, "\noptions:\n");
    cr_assert_not_null(opts, "%s", text);
    for (const tn_opt *o = t_table; o->name; o++) {
        char label[64];
        snprintf(label, sizeof(label), "--%s%s%s", o->name, o->arg ? " " : "",
                 o->arg ? o->arg : "");
        const char *in_usage = strstr(text, label);
        cr_assert(in_usage && in_usage < opts, "%s is not in the usage line:\n%s", label, text);
        const char *line = strstr(opts, label);
        cr_assert_not_null(line, "%s is not in the options:\n%s", label, text);
        cr_assert(strstr(line, o->help), "the help of %s:\n%s", label, text);
    }
    cr_assert(strstr(opts, "-f, --follow"), "%s", text);
    cr_assert(strstr(text, "[--param K=V]..."), "%s", text);
    cr_assert(strstr(text, "--config FILE holds `key = value` lines"), "%s", text);
    free(text);
}

/* Whether the options section lists flag as an option (not as a prefix of another). */
static bool lists(const char *opts, const char *flag)
{
    size_t n = strlen(flag);
    for (const char *p = opts; p && (p = strstr(p, flag)); p += n)
        if (p[-1] == ' ' && (p[n] == ' ' || p[n] == '\n' || p[n] == ','))
            return true;
    return false;
}

/* Every command's --help, generated from its table, lists the flags it has always taken. */
Test(opt, every_command_help_lists_its_flags)
{
    static const struct {
        const char *cmd, *flags;
    } cmds[] = {
        {"master", "--listen --data --ctl --id --heartbeat-timeout --selector --tls-cert "
                   "--tls-key --tls-ca --map-max --config"},
        {"worker", "--master --listen --data --name --group --slots --max-load --mem-reserve "
                   "--heartbeat --ctl --no-cgroup --tls-cert --tls-key --tls-ca --map-max "
                   "--config"},
        {"standalone", "--data --slots --no-cgroup"},
        {"run", "--param --from --mode --dry-run --data --json"},
        {"def", "--data --json --version --master"},
        {"taskgroup", "--data"},
        {"env", "--data"},
        {"start", "--param --from --mode --dry-run --master --data --json"},
        {"pause", "--master --data --json"},
        {"resume", "--master --data --json"},
        {"stop", "--master --data --json"},
        {"rerun", "--master --data --json"},
        {"recover", "--master --data --json"},
        {"kill", "--master --data --json"},
        {"force-success", "--master --data --json"},
        {"ls", "--state --master --data --json"},
        {"status", "--master --data --json"},
        {"logs", "-f --follow --attempt --master --data --json"},
        {"workers", "--master --data --json"},
        {"demo", "--data"},
        {"replay", "--data --until --until-time --no-chain --json"},
        {"audit", "--data --json"},
        {"sm", ""},
        {"schedule", "--cron --tz --start --end --param --overlap --catchup --pause-on-failure "
                     "--priority --worker-group --failure-strategy --reason --count --all "
                     "--master --data --json"},
        {"backfill",
         "--from --to --dates --parallel --order --param --tz --master --data --json"},
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        char cmd[512], *out, *err, usage[64];
        snprintf(cmd, sizeof(cmd), "%s %s --help", tu_tern(), cmds[i].cmd);
        cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s: %s", cmd, err);
        snprintf(usage, sizeof(usage), "usage: tern %s", cmds[i].cmd);
        cr_assert(strncmp(out, usage, strlen(usage)) == 0, "%s:\n%s", cmd, out);
        char flags[512];
        snprintf(flags, sizeof(flags), "%s", cmds[i].flags);
        const char *opts = strstr(out, "\noptions:\n");
        for (char *save, *fl = strtok_r(flags, " ", &save); fl; fl = strtok_r(NULL, " ", &save))
            cr_assert(lists(opts, fl), "%s does not list %s:\n%s", cmd, fl, out);
        free(out);
        free(err);
    }
}

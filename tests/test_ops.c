/* Operations: what `meson install` ships and what a service needs. The manual pages and
 * the bash completion built from the option tables (TERN_DIST), the example configs
 * accepted by the daemons' parser, sd_notify READY/STOPPING, `tern gc` (only finished old
 * instances; status, audit and replay after it) and the worker's task log retention. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include "evlog.h"
#include "gc.h"
#include "logread.h"
#include "replay.h"
#include "retention.h"
#include "sm_gen.h"
#include "store.h"
#include "util.h"
#include "testutil.h"

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

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0, r;
    char *b = malloc(cap);
    while ((r = fread(b + len, 1, cap - len - 1, f)) > 0)
        if ((len += r) + 1 >= cap)
            b = realloc(b, cap *= 2);
    b[len] = 0;
    fclose(f);
    return b;
}

static const char *dist_dir(void)
{
    const char *d = getenv("TERN_DIST");
    cr_assert_not_null(d, "TERN_DIST is not set (run the tests through meson test)");
    return d;
}

/* The commands `tern help` lists, NULL-ended (strings owned by *buf). */
static char **commands(char **buf)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "%s help", tu_tern());
    cr_assert_eq(tu_run(cmd, buf, NULL), 0);
    char **v = calloc(128, sizeof(*v));
    size_t n = 0;
    char *p = strstr(*buf, "commands:\n");
    cr_assert_not_null(p);
    for (p = strchr(p, '\n') + 1; p[0] == ' ' && p[1] == ' ' && n < 127;) {
        char *name = p + 2, *end = strchr(name, ' ');
        char *nl = strchr(p, '\n');
        *end = 0;
        v[n++] = name;
        p = nl + 1;
    }
    cr_assert_gt(n, 20, "tern help lists %zu commands", n);
    return v;
}

/* The long options in the "options:" section of `tern CMD --help`. */
static size_t help_options(const char *cmdname, char opts[][64], size_t max)
{
    char cmd[4200], *out;
    snprintf(cmd, sizeof(cmd), "%s %s --help", tu_tern(), cmdname);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0, "%s", cmd);
    size_t n = 0;
    char *p = strstr(out, "\noptions:\n");
    for (p = p ? p + 10 : NULL; p && *p == ' ' && n < max; p = strchr(p, '\n') + 1) {
        char *dd = strstr(p, "--");
        char *nl = strchr(p, '\n');
        if (dd && dd < nl && dd - p < 12)
            sscanf(dd + 2, "%63[a-z0-9-]", opts[n++]);
        if (!nl)
            break;
    }
    free(out);
    return n;
}

/* The roff form of --NAME as the page writes it: \-\-NAME with each dash escaped. */
static void roff_opt(const char *name, char *buf, size_t len)
{
    size_t at = (size_t)snprintf(buf, len, "\\-\\-");
    for (const char *s = name; *s && at + 3 < len; s++) {
        if (*s == '-')
            buf[at++] = '\\';
        buf[at++] = *s;
    }
    buf[at] = 0;
}

Test(ops, man_page_per_command_with_every_option)
{
    char *buf, **cmds = commands(&buf);
    char path[4200];
    snprintf(path, sizeof(path), "%s/tern.1", dist_dir());
    char *index = slurp(path);
    size_t checked = 0;
    for (size_t i = 0; cmds[i]; i++) {
        if (strcmp(cmds[i], "help") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/tern-%s.1", dist_dir(), cmds[i]);
        cr_assert_eq(access(path, R_OK), 0, "no manual page %s for `tern %s`", path, cmds[i]);
        char *page = slurp(path);
        cr_expect(strstr(page, ".TH TERN-") == page + strcspn(page, "\n") + 1,
                  "%s: the title follows the generated-by comment", path);
        char opts[128][64];
        size_t n = help_options(cmds[i], opts, 128);
        for (size_t j = 0; j < n; j++) {
            char want[160];
            roff_opt(opts[j], want, sizeof(want));
            cr_expect_not_null(strstr(page, want), "%s lacks --%s of `tern %s --help`", path,
                               opts[j], cmds[i]);
            checked++;
        }
        free(page);
    }
    cr_assert_gt(checked, 100, "only %zu options checked", checked);
    for (size_t i = 0; cmds[i]; i++) { /* tern(1) lists every command (dashes escaped) */
        char esc[128], want[160];
        roff_opt(cmds[i], esc, sizeof(esc));
        snprintf(want, sizeof(want), ".TP\n\\fB%s\\fR\n", esc + 4);
        cr_expect_not_null(strstr(index, want), "tern(1) does not list %s", cmds[i]);
    }
    free(index);
    free(cmds);
    free(buf);
}

/* What bash completes after `tern WORDS...` (the last word is the one being typed). */
static char *complete(const char *words)
{
    char cmd[8400], *out;
    snprintf(cmd, sizeof(cmd),
             "bash -c 'source %s/tern; COMP_WORDS=(tern %s); "
             "COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _tern; echo \"${COMPREPLY[*]}\"'",
             dist_dir(), words);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0, "%s", cmd);
    out[strcspn(out, "\n")] = 0;
    return out;
}

Test(ops, bash_completion_lists_commands_and_options)
{
    char *buf, **cmds = commands(&buf);
    char path[4200];
    snprintf(path, sizeof(path), "%s/tern", dist_dir());
    char *script = slurp(path);
    /* the first word list is the commands' */
    char *words = strstr(script, "compgen -W \"");
    cr_assert_not_null(words);
    words += strlen("compgen -W ");
    *words = ' ';
    *strchr(words, '"') = 0;
    for (size_t i = 0; cmds[i]; i++) {
        char w[80];
        snprintf(w, sizeof(w), " %s ", cmds[i]);
        cr_expect_not_null(strstr(words, w), "the completion lacks command %s", cmds[i]);
    }
    free(script);
    char *c = complete("wor");
    cr_expect_str_eq(c, "worker workers");
    free(c);
    c = complete("gc --ol");
    cr_expect_str_eq(c, "--older-than");
    free(c);
    c = complete("worker --log-");
    cr_expect_str_eq(c, "--log-retention --log-max-bytes");
    free(c);
    c = complete("def s");
    cr_expect_str_eq(c, "show");
    free(c);
    free(cmds);
    free(buf);
}

/* Every `key = value` line of an example config, commented or not, made active: each
 * key must be one the daemon accepts and shows in effect. */
static void check_example(const char *cmdname)
{
    char src[4200], tmp[4200], cmd[8600];
    snprintf(src, sizeof(src), "%s/dist/%s.conf", getenv("TERN_SRC"), cmdname);
    snprintf(tmp, sizeof(tmp), "%s/%s.conf", dir, cmdname);
    char *text = slurp(src);
    FILE *f = fopen(tmp, "w");
    char keys[64][64];
    size_t nkeys = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char key[64];
        const char *l = line[0] == '#' && line[1] == ' ' ? line + 2 : line;
        if (sscanf(l, "%63[a-z-] = %*s", key) == 1 && strstr(l, " = ") == l + strlen(key)) {
            fprintf(f, "%s\n", l);
            if (nkeys < 64)
                snprintf(keys[nkeys++], 64, "%s", key);
        } else {
            fprintf(f, "# %s\n", line);
        }
    }
    fclose(f);
    free(text);
    char *out, *err;
    snprintf(cmd, sizeof(cmd), "%s %s --config %s --check-config", tu_tern(), cmdname, tmp);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s: %s", src, err);
    for (size_t i = 0; i < nkeys; i++) {
        char want[80];
        snprintf(want, sizeof(want), "\n%s = ", keys[i]);
        cr_expect_not_null(strstr(out, want), "%s: key %s did not take effect:\n%s", src,
                           keys[i], out);
    }
    /* and every option a config may set is in the example */
    char opts[128][64];
    snprintf(cmd, sizeof(cmd), "%s %s --check-config", tu_tern(), cmdname);
    free(out);
    free(err);
    cr_assert_eq(tu_run(cmd, &out, NULL), 0);
    size_t n = 0;
    for (char *p = strchr(out, '\n'); p && p[1] && n < 128; p = strchr(p + 1, '\n'))
        if (sscanf(p + 1, "# %63[a-z-]: default", opts[n]) == 1 ||
            sscanf(p + 1, "%63[a-z-] = ", opts[n]) == 1)
            n++;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < nkeys && !found; j++)
            found = strcmp(opts[i], keys[j]) == 0;
        cr_expect(found, "%s: the example lacks key %s", src, opts[i]);
    }
    cr_assert_gt(n, 10);
    free(out);
    /* the parser is strict: the same file with an unknown key fails */
    f = fopen(tmp, "a");
    fprintf(f, "log-retentoin = 1d\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd), "%s %s --config %s --check-config", tu_tern(), cmdname, tmp);
    cr_assert_eq(tu_run(cmd, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "unknown key \"log-retentoin\""), "%s", err);
    free(err);
}

Test(ops, example_configs_accepted, .init = setup, .fini = teardown)
{
    check_example("master");
    check_example("worker");
}

/* A datagram socket as the service manager's, one message at a time (a generous guard
 * against a hang, not a speed bound). */
static void recv_state(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, 0);
    cr_assert_gt(n, 0, "no notification: %s", strerror(errno));
    buf[n] = 0;
}

Test(ops, sd_notify_ready_and_stopping, .init = setup, .fini = teardown)
{
    char sock[4200], data[4200];
    snprintf(sock, sizeof(sock), "%s/notify", dir);
    snprintf(data, sizeof(data), "%s/data", dir);
    int fd = tu_unix_bound(SOCK_DGRAM, sock);
    struct timeval tv = {.tv_sec = 120};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        setenv("NOTIFY_SOCKET", sock, 1);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execl(tu_tern(), "tern", "standalone", "--data", data, "--no-cgroup", (char *)NULL);
        _exit(127);
    }
    char msg[256];
    recv_state(fd, msg, sizeof(msg));
    char want[64];
    snprintf(want, sizeof(want), "MAINPID=%d", (int)pid);
    cr_expect_not_null(strstr(msg, "READY=1"), "first message: %s", msg);
    cr_expect_not_null(strstr(msg, want), "first message: %s", msg);
    /* ready means serving: the control socket answers */
    char cmd[8600];
    snprintf(cmd, sizeof(cmd), "%s ls --data %s", tu_tern(), data);
    cr_expect_eq(tu_run(cmd, NULL, NULL), 0);
    kill(pid, SIGTERM);
    recv_state(fd, msg, sizeof(msg));
    cr_expect_not_null(strstr(msg, "STOPPING=1"), "after SIGTERM: %s", msg);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "standalone ended with %d", st);
    close(fd);
}

/* ---- gc ----------------------------------------------------------------------- */

#define DAY_NS (86400LL * 1000000000LL)

/* One workflow with one task, its events at `at`: finished (SUCCESS) or left running;
 * a child of `parent` when that is not 0. Returns its id. */
static uint64_t record_wf(tn_evlog *l, int64_t at, bool finish, uint64_t parent)
{
    tn_errmsg m;
    tn_event ev;
    uint64_t wf = tn_evlog_new_wf_id(l), t = tn_evlog_new_task_id(l);
    static const struct {
        unsigned machine, event;
        bool task, end;
    } evs[] = {{TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, false, false},
               {TN_MACHINE_WORKFLOW, TN_WF_E_START, false, false},
               {TN_MACHINE_TASK, TN_TASK_E_SUBMIT, true, false},
               {TN_MACHINE_TASK, TN_TASK_E_DISPATCH, true, false},
               {TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, true, false},
               {TN_MACHINE_TASK, TN_TASK_E_RUNNING, true, false},
               {TN_MACHINE_TASK, TN_TASK_E_SUCCEEDED, true, true},
               {TN_MACHINE_WORKFLOW, TN_WF_E_TASK_FINISHED, false, true},
               {TN_MACHINE_WORKFLOW, TN_WF_E_SUCCEED, false, true}};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i].end && !finish)
            break;
        tn_event_init(&ev, evs[i].machine, evs[i].event, wf, evs[i].task ? t : 0);
        ev.actor = TN_STR("master:t");
        ev.at = at;
        tn_event_set_int(&ev, "attempt", 1);
        if (i == 0) {
            tn_event_set_str(&ev, "name", "etl");
            if (parent)
                tn_event_set_int(&ev, "parent_wf", (int64_t)parent);
        }
        cr_assert_eq(tn_evlog_add(l, &ev, &m), TN_OK, "%s", m.text);
    }
    cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    return wf;
}

/* A workflow paused (a final state that waits for a resume) at `at`. */
static uint64_t record_paused(tn_evlog *l, int64_t at)
{
    tn_errmsg m;
    tn_event ev;
    uint64_t wf = tn_evlog_new_wf_id(l);
    static const unsigned evs[] = {TN_WF_E_SUBMIT, TN_WF_E_START, TN_WF_E_PAUSE,
                                   TN_WF_E_PAUSED};
    for (size_t i = 0; i < 4; i++) {
        tn_event_init(&ev, TN_MACHINE_WORKFLOW, evs[i], wf, 0);
        ev.actor = TN_STR("master:t");
        ev.at = at;
        cr_assert_eq(tn_evlog_add(l, &ev, &m), TN_OK, "%s", m.text);
    }
    cr_assert_eq(tn_evlog_commit(l, &m), TN_OK, "%s", m.text);
    return wf;
}

static void run_replay(bool want_ok)
{
    tn_store *s;
    tn_errmsg m;
    cr_assert_eq(tn_log_open_read(dir, &s, &m), TN_OK, "%s", m.text);
    tn_replay_opts o = {.verify_chain = true, .compare = true};
    tn_replay_report *rep = calloc(1, sizeof(*rep));
    cr_assert_eq(tn_replay_run(s, &o, rep), TN_OK);
    if (want_ok)
        cr_expect_eq(rep->err, TN_OK, "replay: %s", rep->why);
    else
        cr_expect_neq(rep->err, TN_OK, "replay found nothing wrong");
    free(rep);
    tn_log_close_read(s);
}

static int count_ev(void *ctx, const tn_event *ev)
{
    (void)ev;
    ++*(int *)ctx;
    return 0;
}

Test(ops, gc_collects_only_finished_old_instances, .init = setup, .fini = teardown)
{
    tn_evlog *l;
    tn_errmsg m;
    cr_assert_eq(tn_evlog_open(dir, &(tn_evlog_opts){.create = true}, &l, &m), TN_OK);
    int64_t now = tn_now_ns();
    uint64_t old_done = record_wf(l, now - 10 * DAY_NS, true, 0);
    uint64_t new_done = record_wf(l, now - 3600LL * 1000000000, true, 0);
    uint64_t old_running = record_wf(l, now - 10 * DAY_NS, false, 0);
    uint64_t child_of_running = record_wf(l, now - 10 * DAY_NS, true, old_running);
    uint64_t old_paused = record_paused(l, now - 10 * DAY_NS);
    tn_evlog_close(l);

    /* a dry run lists and writes nothing */
    tn_log_gc_report rep;
    cr_assert_eq(tn_log_gc(dir, now - DAY_NS, now, true, NULL, NULL, &rep, &m), TN_OK, "%s",
                 m.text);
    cr_expect_eq(rep.workflows, 1);
    cr_expect_eq(rep.tasks, 1);
    tn_store *s;
    tn_wf_proj w;
    tn_task_proj t;
    cr_assert_eq(tn_log_open_read(dir, &s, &m), TN_OK);
    cr_expect_eq(tn_log_wf_get(s, old_done, &w), TN_OK);
    tn_log_close_read(s);

    cr_assert_eq(tn_log_gc(dir, now - DAY_NS, now, false, NULL, NULL, &rep, &m), TN_OK);
    cr_expect_eq(rep.workflows, 1);
    cr_expect_eq(rep.tasks, 1);
    cr_assert_eq(tn_log_open_read(dir, &s, &m), TN_OK);
    cr_expect_eq(tn_log_wf_get(s, old_done, &w), TN_ERR_NOENT);
    cr_expect_eq(tn_log_task_get(s, 1, &t), TN_ERR_NOENT, "the collected wf's task");
    cr_expect_eq(tn_log_wf_get(s, new_done, &w), TN_OK, "too recent");
    cr_expect_eq(tn_log_task_get(s, 2, &t), TN_OK);
    cr_expect_eq(tn_log_wf_get(s, old_running, &w), TN_OK, "unfinished");
    cr_expect_eq(w.state, TN_WF_S_RUNNING_EXECUTION);
    cr_expect_eq(tn_log_wf_get(s, child_of_running, &w), TN_OK, "its parent runs");
    cr_expect_eq(tn_log_wf_get(s, old_paused, &w), TN_OK, "paused: a resume may come");
    cr_expect_eq(w.state, TN_WF_S_PAUSE);
    tn_log_gc_mark mk;
    cr_assert_eq(tn_log_gc_mark_get(s, old_done, &mk), TN_OK);
    cr_expect_eq(mk.state, TN_WF_S_SUCCESS);
    cr_expect_str_eq(mk.name, "etl");
    cr_expect_eq(mk.collected_at, now);
    cr_expect_eq(tn_log_gc_mark_get(s, new_done, &mk), TN_ERR_NOENT);
    int n = 0, fr;
    cr_expect_eq(tn_replay_wf_events(s, old_done, count_ev, &n, &fr), TN_OK);
    cr_expect_eq(n, 9, "the events of a collected instance stay (%d)", n);
    tn_log_close_read(s);
    run_replay(true); /* replay rebuilds it and knows it was collected */

    /* the CLI: status says it was collected, audit shows its events, replay passes */
    char cmd[8600], *out, *err;
    snprintf(cmd, sizeof(cmd), "%s status %llu --data %s", tu_tern(),
             (unsigned long long)old_done, dir);
    cr_expect_eq(tu_run(cmd, &out, &err), 1);
    cr_expect_not_null(strstr(err, "was collected by `tern gc`"), "%s", err);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd), "%s audit %llu --data %s", tu_tern(),
             (unsigned long long)old_done, dir);
    cr_expect_eq(tu_run(cmd, &out, NULL), 0);
    cr_expect_not_null(strstr(out, "SUCCEED"), "%s", out);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s replay --data %s", tu_tern(), dir);
    cr_expect_eq(tu_run(cmd, NULL, NULL), 0);
    /* gc through the CLI: the too recent one goes with --older-than 0s, the running
     * one and its child never */
    snprintf(cmd, sizeof(cmd), "%s gc --older-than 0s --json --data %s", tu_tern(), dir);
    cr_expect_eq(tu_run(cmd, &out, NULL), 0);
    cr_expect_not_null(strstr(out, "\"workflows\":1,\"tasks\":1}"), "%s", out);
    free(out);
    run_replay(true);
}

Test(ops, replay_still_catches_a_projection_removed_without_gc, .init = setup, .fini = teardown)
{
    tn_evlog *l;
    tn_errmsg m;
    cr_assert_eq(tn_evlog_open(dir, &(tn_evlog_opts){.create = true}, &l, &m), TN_OK);
    uint64_t wf = record_wf(l, tn_now_ns() - 10 * DAY_NS, true, 0);
    tn_evlog_close(l);
    run_replay(true);
    tn_store *s;
    cr_assert_eq(tn_store_open(dir, &(tn_store_opts){0}, &s, &m), TN_OK);
    tn_batch *b;
    tn_batch_new(&b);
    uint8_t k[8];
    tn_put_be64(k, wf);
    tn_batch_del(b, TN_DB_WF, k, 8);
    cr_assert_eq(tn_store_commit(s, b, &m), TN_OK);
    tn_batch_free(b);
    tn_store_close(s);
    run_replay(false);
}

Test(ops, gc_refuses_a_store_in_use, .init = setup, .fini = teardown)
{
    tn_evlog *l;
    tn_errmsg m;
    cr_assert_eq(tn_evlog_open(dir, &(tn_evlog_opts){.create = true}, &l, &m), TN_OK);
    record_wf(l, tn_now_ns() - 10 * DAY_NS, true, 0);
    tn_log_gc_report rep;
    tn_errmsg m2;
    cr_expect_eq(tn_log_gc(dir, tn_now_ns(), tn_now_ns(), false, NULL, NULL, &rep, &m2),
                 TN_ERR_BUSY);
    tn_evlog_close(l);
}

/* ---- task log retention ------------------------------------------------------- */

static void make_log(const char *name, size_t bytes, int64_t age_s)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/logs/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    for (size_t i = 0; i < bytes; i++)
        fputc('x', f);
    fclose(f);
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= age_s;
    ts[1] = ts[0];
    cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static bool exists(const char *rel)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

/* Task 2 attempt 1 runs. */
static bool running2(void *ctx, uint64_t task, uint32_t attempt)
{
    (void)ctx;
    return task == 2 && attempt == 1;
}

static void mkdirs(void)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/logs", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/exec", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/exec/1-1", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/exec/1-1/out.tmp", dir);
    fclose(fopen(p, "w"));
}

Test(ops, retention_by_age_keeps_running_and_recent, .init = setup, .fini = teardown)
{
    mkdirs();
    make_log("1-1.log", 10, 10 * 86400);
    make_log("2-1.log", 10, 10 * 86400); /* running: kept whatever its age */
    make_log("3-1.log", 10, 3600);
    make_log("notes.txt", 10, 10 * 86400); /* not an attempt's: never touched */
    tn_retention r = {.max_age_ms = 86400000};
    tn_retention_stats st;
    cr_assert_eq(tn_retention_apply(dir, &r, tn_now_ns(), running2, NULL, &st), 0);
    cr_expect(!exists("logs/1-1.log"));
    cr_expect(!exists("exec/1-1"), "the exec dir of a removed log goes too");
    cr_expect(exists("logs/2-1.log"));
    cr_expect(exists("logs/3-1.log"));
    cr_expect(exists("logs/notes.txt"));
    cr_expect_eq(st.removed, 1);
    cr_expect_eq(st.kept, 2);
}

Test(ops, retention_by_size_removes_oldest_first, .init = setup, .fini = teardown)
{
    mkdirs();
    make_log("2-1.log", 1000, 4000); /* the oldest, but running */
    make_log("1-1.log", 1000, 3000);
    make_log("5-2.log", 1000, 2000);
    make_log("4-1.log", 1000, 1000);
    tn_retention r = {.max_bytes = 2500};
    tn_retention_stats st;
    cr_assert_eq(tn_retention_apply(dir, &r, tn_now_ns(), running2, NULL, &st), 0);
    cr_expect(exists("logs/2-1.log"));
    cr_expect(!exists("logs/1-1.log"));
    cr_expect(!exists("logs/5-2.log"));
    cr_expect(exists("logs/4-1.log"), "the newest fits under the size with the running one");
    cr_expect_eq(st.removed, 2);
    cr_expect_eq(st.kept_bytes, 2000);
    /* nothing over either bound: nothing goes */
    r = (tn_retention){.max_age_ms = 86400000, .max_bytes = 1u << 20};
    cr_assert_eq(tn_retention_apply(dir, &r, tn_now_ns(), running2, NULL, &st), 0);
    cr_expect_eq(st.removed, 0);
    cr_expect_eq(st.kept, 2);
}

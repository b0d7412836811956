/* Alerts end to end: a standalone raises them when workflows end, sends them to a webhook
 * (a small HTTP server in this test that fails the first request) or a command, records
 * every attempt and its outcome as an event, and retries until delivered. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "alerts.h"
#include "engine.h"
#include "logread.h"
#include "replay.h"
#include "sm_gen.h"
#include "standalone.h"
#include "testutil.h"

/* ---- a webhook receiver: answers 500 to the first `fail` requests, then 200 ---------- */

typedef struct hook {
    int fd, port, fail, requests;
    char bodies[4][2048];
    pthread_t thread;
    pthread_mutex_t mu;
} hook;

static void *hook_thread(void *arg)
{
    hook *h = arg;
    for (;;) {
        int c = accept(h->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[8192];
        size_t len = 0;
        ssize_t r;
        char *body = NULL;
        long clen = -1;
        while ((r = read(c, buf + len, sizeof(buf) - 1 - len)) > 0) {
            len += (size_t)r;
            buf[len] = 0;
            char *he = strstr(buf, "\r\n\r\n");
            char *cl = strcasestr(buf, "Content-Length:");
            if (he && cl)
                clen = strtol(cl + 15, NULL, 10), body = he + 4;
            if (body && clen >= 0 && (long)(buf + len - body) >= clen)
                break;
        }
        pthread_mutex_lock(&h->mu);
        int n = h->requests++;
        if (body && n < 4)
            snprintf(h->bodies[n], sizeof(h->bodies[n]), "%s", body);
        const char *ans = n < h->fail ? "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n" :
                                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        pthread_mutex_unlock(&h->mu);
        if (write(c, ans, strlen(ans)) < 0)
            (void)0;
        close(c);
    }
}

static void hook_start(hook *h, int fail)
{
    memset(h, 0, sizeof(*h));
    h->fail = fail;
    pthread_mutex_init(&h->mu, NULL);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    cr_assert_eq(bind(h->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(h->fd, 16), 0);
    getsockname(h->fd, (struct sockaddr *)&a, &al);
    h->port = ntohs(a.sin_port);
    pthread_create(&h->thread, NULL, hook_thread, h);
}

static void hook_stop(hook *h)
{
    shutdown(h->fd, SHUT_RDWR);
    close(h->fd);
    pthread_join(h->thread, NULL);
}

/* ---- a standalone ------------------------------------------------------------------ */

static char *dir;
static tn_standalone *S;

static void start(const tn_def_alert *alerts, uint32_t n, bool allow_cmd)
{
    dir = tu_tmpdir();
    tn_standalone_opts o = {.data_dir = dir,
                            .no_cgroup = true,
                            .alerts = alerts,
                            .nalerts = n,
                            .allow_alert_commands = allow_cmd};
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_standalone_start(&o, &S, &m), TN_OK, "%s", m.text);
}

/* The transitions the scenario's log replays go to $TERN_COVERAGE_DIR/alerts.cov for the
 * sm-coverage check (emptied once per run). */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
    (void)set;
    const char *d = getenv("TERN_COVERAGE_DIR");
    char path[4096];
    if (!d)
        return;
    mkdir(d, 0755);
    snprintf(path, sizeof(path), "%s/alerts.cov", d);
    FILE *f = fopen(path, "we");
    if (f)
        fclose(f);
}

static void stop(void)
{
    static tn_replay_report rep;
    tn_replay_opts ro = {.verify_chain = true, .compare = true};
    tn_store *st;
    tn_standalone_stop(S);
    cr_assert_eq(tn_log_open_read(dir, &st, NULL), TN_OK);
    cr_assert_eq(tn_replay_run(st, &ro, &rep), TN_OK);
    cr_assert_eq(rep.err, TN_OK, "replay: seq %" PRIu64 ": %s", rep.bad_seq, rep.why);
    tn_log_close_read(st);
    const char *d = getenv("TERN_COVERAGE_DIR");
    char path[4096];
    if (d) {
        snprintf(path, sizeof(path), "%s/alerts.cov", d);
        cr_assert_eq(tn_replay_coverage_write(&rep, path), TN_OK);
    }
    S = NULL;
    tu_rm_rf(dir);
    free(dir);
}

static tn_engine *eng(void)
{
    return tn_master_engine(tn_standalone_master(S));
}

static void apply(const char *yaml)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_def_parse("t.yaml", yaml, strlen(yaml), &d, &m), TN_OK, "%s", m.text);
    char *b;
    size_t n;
    cr_assert_eq(tn_def_encode(d, &b, &n), TN_OK);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = b, .def_len = n};
    cr_assert_eq(tn_engine_submit_wait(eng(), &c), TN_OK, "%s", c.msg);
    free(b);
    tn_def_free(d);
}

static uint64_t run_wf(const char *name)
{
    tn_cmd c = {.kind = TN_CMD_START, .workflow = name};
    cr_assert_eq(tn_engine_submit_wait(eng(), &c), TN_OK, "%s", c.msg);
    return c.out_id;
}

typedef struct seen {
    int n;
    tn_alert_proj a[8];
} seen;

static int seen_cb(void *ctx, const tn_alert_proj *p)
{
    seen *s = ctx;
    if (s->n < 8) {
        s->a[s->n] = *p;
        s->a[s->n].target = NULL; /* freed by the walk */
        s->n++;
    }
    return 0;
}

/* Wait (polling the store) until `want` alerts exist and none is pending. */
static seen wait_alerts(int want)
{
    seen s;
    for (int i = 0; i < 3000; i++) {
        memset(&s, 0, sizeof(s));
        tn_log_alert_each(tn_evlog_store(tn_engine_log(eng())), 1, false, seen_cb, &s);
        int pending = 0;
        for (int k = 0; k < s.n; k++)
            pending += s.a[k].state == TN_ALERT_S_PENDING;
        if (s.n >= want && pending == 0)
            return s;
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("alerts: %d of %d, some still pending", s.n, want);
    return s;
}

static int count_alert_events(void *ctx, const tn_event *ev)
{
    if (ev->machine == TN_MACHINE_ALERT && ev->event < TN_ALERT_E__COUNT)
        ((int *)ctx)[ev->event]++;
    return 0;
}

Test(alerts, webhook_retried_until_delivered_and_every_attempt_recorded)
{
    hook h;
    hook_start(&h, 1);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", h.port);
    tn_def_alert dflt = {.on = "failure", .mask = 1u << TN_DEF_ALERT_FAILURE, .webhook = url};
    start(&dflt, 1, false);
    apply("name: breaks\ntasks:\n  - {name: a, type: noop, result: failure}\n");
    apply("name: fine\ntasks:\n  - {name: a, type: noop}\n");
    run_wf("fine"); /* success: the default alert is for failures only */
    uint64_t wf = run_wf("breaks");
    seen s = wait_alerts(1);
    cr_assert_eq(s.n, 1, "one alert: the failure, not the success");
    cr_assert_eq(s.a[0].state, TN_ALERT_S_DELIVERED);
    cr_assert_eq(s.a[0].attempts, 2, "the first POST got a 500, the second a 200");
    cr_assert_str_eq(s.a[0].outcome, "HTTP 200");
    cr_assert_eq(s.a[0].wf, wf);
    int counts[TN_ALERT_E__COUNT] = {0}, fr;
    tn_replay_wf_events(tn_evlog_store(tn_engine_log(eng())), wf, count_alert_events, counts,
                        &fr);
    cr_assert(counts[TN_ALERT_E_RAISE] == 1 && counts[TN_ALERT_E_ATTEMPT] == 1 &&
                  counts[TN_ALERT_E_DELIVER] == 1,
              "the instance's audit shows the alert, the failed attempt and the delivery");
    stop();
    hook_stop(&h);
    cr_assert_eq(h.requests, 2);
    json_error_t je;
    json_t *j = json_loads(h.bodies[1], 0, &je);
    cr_assert_not_null(j, "the body is JSON: %s", h.bodies[1]);
    cr_assert_str_eq(json_string_value(json_object_get(j, "workflow")), "breaks");
    cr_assert_str_eq(json_string_value(json_object_get(j, "on")), "failure");
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "FAILURE");
    cr_assert_eq(json_integer_value(json_object_get(j, "instance")), (json_int_t)wf);
    cr_assert_eq(json_integer_value(json_object_get(j, "attempt")), 2);
    json_decref(j);
}

Test(alerts, command_alert_gets_the_json_on_stdin_when_allowed)
{
    char out[512];
    char *tmp = tu_tmpdir();
    snprintf(out, sizeof(out), "%s/alert.json", tmp);
    start(NULL, 0, true);
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "name: ok\nalerts:\n  - on: [success, task_failure]\n    command: cat > %s\n"
             "tasks:\n  - {name: a, type: noop}\n",
             out);
    apply(yaml);
    uint64_t wf = run_wf("ok");
    seen s = wait_alerts(1);
    cr_assert_eq(s.a[0].state, TN_ALERT_S_DELIVERED);
    cr_assert_str_eq(s.a[0].outcome, "exit 0");
    stop();
    json_error_t je;
    json_t *j = json_load_file(out, 0, &je);
    cr_assert_not_null(j, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(j, "on")), "success");
    cr_assert_eq(json_integer_value(json_object_get(j, "instance")), (json_int_t)wf);
    json_decref(j);
    tu_rm_rf(tmp);
    free(tmp);
}

Test(alerts, a_workflow_command_alert_is_dropped_unless_allowed)
{
    start(NULL, 0, false);
    apply("name: ok\nalerts:\n  - on: [success]\n    command: touch /tmp/never\n"
          "tasks:\n  - {name: a, type: noop}\n");
    run_wf("ok");
    seen s = wait_alerts(1);
    cr_assert_eq(s.a[0].state, TN_ALERT_S_DROPPED);
    cr_assert(strstr(s.a[0].outcome, "--allow-alert-commands"), "%s", s.a[0].outcome);
    stop();
}

/* A reason from a peer that is not UTF-8, and a name with quotes and a backslash: the body
 * is still whole JSON (no field dropped, no NULL body), the bad bytes as U+FFFD, its keys
 * in the sorted order receivers have had. */
Test(alerts, a_reason_not_utf8_is_sent_with_replacement_characters)
{
    tn_alert_proj p = {.id = 3, .wf = 9, .task = 4, .raised_at = 1764000000LL * 1000000000LL};
    snprintf(p.workflow, sizeof(p.workflow), "we\"ird\\");
    snprintf(p.on, sizeof(p.on), "task_failure");
    snprintf(p.what, sizeof(p.what), "FAILURE");
    snprintf(p.reason, sizeof(p.reason), "exit 1: \xff\xfe bad \xe2\x82");
    char *body = tn_alert_json(&p, 2);
    cr_assert_not_null(body, "no body for a reason that is not UTF-8");
    cr_assert_eq(strncmp(body, "{\"alert\":3,\"attempt\":2,\"instance\":9,\"on\":", 41), 0,
                 "%s", body);
    json_error_t je;
    json_t *j = json_loads(body, JSON_REJECT_DUPLICATES, &je);
    cr_assert_not_null(j, "%s: %s", je.text, body);
    cr_assert_eq(json_object_size(j), 9, "%s", body);
    cr_assert_str_eq(json_string_value(json_object_get(j, "reason")),
                     "exit 1: \xef\xbf\xbd\xef\xbf\xbd bad \xef\xbf\xbd");
    cr_assert_str_eq(json_string_value(json_object_get(j, "workflow")), "we\"ird\\");
    cr_assert_str_eq(json_string_value(json_object_get(j, "raised_at")),
                     "2025-11-24T16:00:00.000Z");
    cr_assert_str_eq(json_string_value(json_object_get(j, "on")), "task_failure");
    cr_assert_str_eq(json_string_value(json_object_get(j, "state")), "FAILURE");
    cr_assert_eq(json_integer_value(json_object_get(j, "task")), 4);
    json_decref(j);
    free(body);
}

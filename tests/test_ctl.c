/* The control channel's trust: who a request is from comes from its connection (the ipc
 * peer's uid) or a token, never from the request; roles limit what a token may do; a
 * plain tcp control socket needs --insecure and a token; tokens are kept only hashed;
 * peers' strings are escaped in the audit output. Real `tern master` processes in a temp
 * dir, driven through the CLI and through raw requests. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "testutil.h"
#include "ctl.h"
#include "def.h"
#include "engine.h"
#include "inproc.h"
#include "rpc.h"

static char *dir;
static pid_t master_pid;
static char mdata[600], mctl[600], tcp_url[100];

static void setup(void)
{
    dir = tu_tmpdir();
    master_pid = 0;
    /* the clients below get what each test gives them, nothing from outside */
    unsetenv("TERN_TOKEN");
    unsetenv("TERN_TLS_CA");
    unsetenv("TERN_TLS_CERT");
    unsetenv("TERN_TLS_KEY");
    snprintf(mdata, sizeof(mdata), "%s/data", dir);
}

static void teardown(void)
{
    if (master_pid > 0) {
        kill(master_pid, SIGTERM);
        int st;
        for (int t = 0; t < 500 && waitpid(master_pid, &st, WNOHANG) != master_pid; t++)
            usleep(10000);
        kill(master_pid, SIGKILL);
        waitpid(master_pid, &st, 0);
    }
    tu_rm_rf(dir);
    free(dir);
}

/* `tern master` with extra args; its output in DIR/master.log. Waits for its socket. */
static void start_master(const char *ctl_url, bool insecure)
{
    char listen[600], log[600];
    snprintf(listen, sizeof(listen), "ipc://%s/m.sock", dir);
    snprintf(log, sizeof(log), "%s/master.log", dir);
    snprintf(mctl, sizeof(mctl), "%s", ctl_url);
    master_pid = fork();
    cr_assert_geq(master_pid, 0);
    if (master_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(tu_tern(), tu_tern(), "master", "--listen", listen, "--data", mdata, "--ctl",
              ctl_url, insecure ? "--insecure" : NULL, NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        void *r = NULL;
        size_t rl;
        if (tn_rpc_call(ctl_url, "", 0, 200, &r, &rl, NULL) == TN_OK) {
            free(r);
            return;
        }
        usleep(10000);
    }
    cr_assert_fail("the master did not answer on %s", ctl_url);
}

static void start_tcp_master(void)
{
    /* a port from the pid: tests of one run do not collide */
    snprintf(tcp_url, sizeof(tcp_url), "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    start_master(tcp_url, true);
}

/* Run `tern ARGS`; exit status, stdout and stderr (freed by the caller). */
static int run(char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run(char **out, char **err, const char *fmt, ...)
{
    char args[3000], cmd[3600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s %s", tu_tern(), args);
    return tu_run(cmd, out, err);
}

/* `tern token add NAME --role ROLE` on the data dir; the secret written to DIR/NAME.tok. */
static char *add_token(const char *name, const char *role)
{
    char *out = NULL, *err = NULL;
    cr_assert_eq(run(&out, &err, "token add %s --role %s --data %s", name, role, mdata), 0,
                 "%s", err);
    char *p = malloc(700);
    snprintf(p, 700, "%s/%s.tok", dir, name);
    FILE *f = fopen(p, "w");
    fputs(out, f);
    fclose(f);
    free(out);
    free(err);
    return p;
}

static void write_def(void)
{
    char p[700];
    snprintf(p, sizeof(p), "%s/w.yaml", dir);
    FILE *f = fopen(p, "w");
    fputs("name: w\ntasks:\n  - name: a\n    type: noop\n", f);
    fclose(f);
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t cap = 64 << 20;
    char *b = malloc(cap);
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    bool found = memmem(b, n, needle, strlen(needle)) != NULL;
    free(b);
    return found;
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 120);

Test(ctl, plain_tcp_control_needs_insecure)
{
    char listen[600], *out = NULL, *err = NULL;
    snprintf(listen, sizeof(listen), "ipc://%s/m.sock", dir);
    int rc =
        run(&out, &err, "master --listen %s --data %s --ctl tcp://127.0.0.1:1", listen, mdata);
    cr_assert_eq(rc, 1, "a plain tcp control socket was accepted: %s", err);
    cr_assert(strstr(err, "--insecure"), "%s", err);
    free(out);
    free(err);
}

Test(ctl, tcp_without_token_refused)
{
    start_tcp_master();
    char *out = NULL, *err = NULL;
    cr_assert_eq(run(&out, &err, "ls --master %s", tcp_url), 1, "%s", out);
    cr_assert(strstr(err, "permission denied"), "%s", err);
    free(out);
    free(err);
    /* a token that is not one of ours: refused too */
    cr_assert_eq(
        run(&out, &err,
            "ls --master %s --token-file /dev/null; TERN_TOKEN=tern_AAAAAAAAAAAAAAAAAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAA %s ls --master %s",
            tcp_url, tu_tern(), tcp_url),
        1);
    cr_assert(strstr(err, "unknown or revoked token"), "%s", err);
    char log[700];
    snprintf(log, sizeof(log), "%s/master.log", dir);
    cr_assert(file_has(log, "control socket on plain tcp (--insecure)"), "no warning at start");
    cr_assert(file_has(log, "request refused"));
    free(out);
    free(err);
}

Test(ctl, viewer_token_reads_but_cannot_start)
{
    start_tcp_master();
    char *viewer = add_token("alice", "viewer"), *out = NULL, *err = NULL;
    cr_assert_eq(run(&out, &err, "ls --master %s --token-file %s", tcp_url, viewer), 0, "%s",
                 err);
    cr_assert(strstr(out, "WORKFLOW"), "%s", out);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "start w --master %s --token-file %s", tcp_url, viewer), 1);
    cr_assert(strstr(err, "permission denied: viewer token cannot start; ask an operator"),
              "%s", err);
    free(out);
    free(err);
    /* revoked: refused at once, no restart */
    cr_assert_eq(run(&out, &err, "token rm alice --data %s", mdata), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "ls --master %s --token-file %s", tcp_url, viewer), 1);
    cr_assert(strstr(err, "unknown or revoked token"), "%s", err);
    free(out);
    free(err);
    free(viewer);
}

/* A raw start request over tcp with an operator token and a forged actor: it runs, and the
 * log names the token, not the claim. */
Test(ctl, operator_starts_and_actor_is_the_token_not_the_claim)
{
    start_tcp_master();
    char *admin = add_token("boss", "admin"), *op = add_token("ops", "operator");
    char *out = NULL, *err = NULL;
    write_def();
    cr_assert_eq(run(&out, &err, "def apply %s/w.yaml --master %s", dir, tcp_url), 1,
                 "def apply without a token was accepted");
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "start w --master %s --token-file %s", tcp_url, op), 1);
    cr_assert(strstr(err, "no workflow") || strstr(err, "w"), "%s", err);
    free(out);
    free(err);
    char cmd[2000];
    snprintf(cmd, sizeof(cmd), "TERN_TOKEN=$(cat %s) %s def apply %s/w.yaml --master %s", admin,
             tu_tern(), dir, tcp_url);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(
        run(&out, &err, "def apply %s/w.yaml --master %s --token-file %s", dir, tcp_url, op), 1,
        "an operator applied a definition");
    free(out);
    free(err);
    FILE *f = fopen(op, "r");
    char secret[100] = "";
    cr_assert(fgets(secret, sizeof(secret), f));
    fclose(f);
    secret[strcspn(secret, "\n")] = 0;
    tn_ctl_req r = {.cmd = TN_STR("start"),
                    .name = TN_STR("w"),
                    .actor = TN_STR("user:root"),
                    .token = tn_str_c(secret)};
    tn_buf b = {0};
    cr_assert_eq(tn_ctl_req_encode(&r, &b), TN_OK);
    void *rep = NULL;
    size_t rl = 0;
    cr_assert_eq(tn_rpc_call(tcp_url, b.data, b.size, 10000, &rep, &rl, NULL), TN_OK);
    tn_buf_free(&b);
    tn_ctl_rep rp;
    cr_assert_eq(tn_ctl_rep_decode(rep, rl, &rp), TN_OK);
    cr_assert(rp.ok, "%.*s", (int)rp.text.len, rp.text.p);
    free(rep);
    cr_assert_eq(run(&out, &err, "audit 1 --data %s --json", mdata), 0, "%s", err);
    cr_assert(strstr(out, "\"actor\":\"token:ops\""), "%s", out);
    cr_assert_null(strstr(out, "user:root"), "the claimed actor reached the log: %s", out);
    free(out);
    free(err);
    free(admin);
    free(op);
}

Test(ctl, token_stored_only_hashed)
{
    start_tcp_master();
    char *tok = add_token("carol", "operator");
    FILE *f = fopen(tok, "r");
    char secret[100] = "";
    cr_assert(fgets(secret, sizeof(secret), f));
    fclose(f);
    secret[strcspn(secret, "\n")] = 0;
    cr_assert_eq(strlen(secret), 48, "%s", secret);
    cr_assert_eq(strncmp(secret, "tern_", 5), 0);
    /* it works ... */
    char *out = NULL, *err = NULL;
    cr_assert_eq(run(&out, &err, "ls --master %s --token-file %s", tcp_url, tok), 0, "%s", err);
    free(out);
    free(err);
    /* ... and is nowhere in the data dir: not in the tokens file, not in the store */
    char p[700];
    snprintf(p, sizeof(p), "%s/tokens", mdata);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
    cr_assert(file_has(p, "carol operator"));
    cr_assert_not(file_has(p, secret), "the secret is in %s", p);
    cr_assert_not(file_has(p, secret + 5));
    snprintf(p, sizeof(p), "%s/data.mdb", mdata);
    cr_assert_not(file_has(p, secret + 5), "the secret is in the store");
    /* `tern token ls` shows names and roles, never secrets */
    cr_assert_eq(run(&out, &err, "token ls --data %s", mdata), 0);
    cr_assert(strstr(out, "carol") && strstr(out, "operator"), "%s", out);
    cr_assert_null(strstr(out, secret + 5));
    free(out);
    free(err);
    free(tok);
}

/* The default ipc socket: the data dir 0700, the actor is the unix user. */
Test(ctl, ipc_actor_is_the_unix_user)
{
    char url[700];
    snprintf(url, sizeof(url), "ipc://%s/master.ctl", mdata);
    /* the master makes the dir: its default control URL is ipc://DATA/master.ctl */
    char listen[800], log[600];
    snprintf(listen, sizeof(listen), "ipc://%s/m.sock", dir);
    snprintf(log, sizeof(log), "%s/master.log", dir);
    master_pid = fork();
    if (master_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(tu_tern(), tu_tern(), "master", "--listen", listen, "--data", mdata, NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        void *r = NULL;
        size_t rl;
        if (tn_rpc_call(url, "", 0, 200, &r, &rl, NULL) == TN_OK) {
            free(r);
            break;
        }
        usleep(10000);
    }
    struct stat st;
    cr_assert_eq(stat(mdata, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700, "data dir mode %o", st.st_mode & 0777);
    snprintf(listen, sizeof(listen), "%s/master.ctl", mdata);
    cr_assert_eq(stat(listen, &st), 0);
    cr_assert_eq(st.st_mode & 077, 0, "socket mode %o", st.st_mode & 0777);
    write_def();
    char *out = NULL, *err = NULL;
    cr_assert_eq(run(&out, &err, "def apply %s/w.yaml --data %s", dir, mdata), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "start w --data %s", mdata), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "audit 1 --data %s --json", mdata), 0, "%s", err);
    cr_assert(strstr(out, "\"actor\":\"user:root\""), "%s", out);
    cr_assert_null(strstr(out, "user:cli"), "%s", out);
    free(out);
    free(err);
}

/* One req0 request over a unix socket, by hand: true when a reply came within 2s. */
static bool raw_request(const char *path, const void *body, size_t len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return false;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return false;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static const unsigned char hello[8] = {0, 'S', 'P', 0, 0x00, 0x30, 0, 0};
    unsigned char hdr[9], theirs[8];
    uint64_t n = len + 4;
    hdr[0] = 1;
    for (int i = 0; i < 8; i++)
        hdr[1 + i] = (unsigned char)(n >> (56 - 8 * i));
    static const unsigned char reqid[4] = {0x80, 0, 0, 1};
    bool ok = send(fd, hello, 8, MSG_NOSIGNAL) == 8 && recv(fd, theirs, 8, MSG_WAITALL) == 8 &&
              send(fd, hdr, 9, MSG_NOSIGNAL) == 9 && send(fd, reqid, 4, MSG_NOSIGNAL) == 4 &&
              send(fd, body, len, MSG_NOSIGNAL) == (ssize_t)len;
    unsigned char rep[16];
    ok = ok && recv(fd, rep, sizeof(rep), 0) > 0;
    close(fd);
    return ok;
}

/* A process of another uid reaches the socket file (a lax mode: someone chmod'ed it) and
 * is still refused: its uid is not the master's. */
Test(ctl, ipc_peer_of_another_uid_refused)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to become nobody");
    char sub[700], url[800];
    snprintf(sub, sizeof(sub), "%s/pub", dir);
    mkdir(sub, 0755);
    chmod(dir, 0755);
    snprintf(url, sizeof(url), "ipc://%s/m.ctl", sub);
    start_master(url, false);
    chmod(url + 6, 0777);
    tn_ctl_req r = {.cmd = TN_STR("ls")};
    tn_buf b = {0};
    cr_assert_eq(tn_ctl_req_encode(&r, &b), TN_OK);
    /* the same uid is answered */
    void *rep = NULL;
    size_t rl;
    cr_assert_eq(tn_rpc_call(url, b.data, b.size, 5000, &rep, &rl, NULL), TN_OK);
    free(rep);
    /* the child speaks SP over the socket by hand: nng's threads do not survive fork */
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        _exit(raw_request(url + 6, b.data, b.size) ? 1 : 0);
    }
    int st;
    waitpid(pid, &st, 0);
    tn_buf_free(&b);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 3, "could not become nobody");
    cr_assert_eq(WEXITSTATUS(st), 0, "a request from uid 65534 was answered");
    char log[700];
    snprintf(log, sizeof(log), "%s/master.log", dir);
    cr_assert(file_has(log, "connection refused: another user"));
    cr_assert(file_has(log, "peer_uid=65534"));
}

/* An actor with a newline and quotes (an old log, a certificate's name): `tern audit`
 * keeps each event on one line, columns aligned, and the JSON valid. */
Test(ctl, audit_escapes_actor)
{
    tn_inproc *x;
    char logs[700];
    snprintf(logs, sizeof(logs), "%s/logs", dir);
    cr_assert_eq(tn_inproc_new(logs, &x), TN_OK);
    tn_engine *e;
    tn_errmsg m = {{0}};
    tn_engine_opts o = {
        .data_dir = mdata, .log = {.create = true}, .executor = tn_inproc_executor(x)};
    cr_assert_eq(tn_engine_open(&o, &e, &m), TN_OK, "%s", m.text);
    tn_inproc_bind(x, e);
    const char *yaml = "name: w\ntasks:\n  - name: a\n    type: noop\n";
    tn_def *d;
    cr_assert_eq(tn_def_parse("w.yaml", yaml, strlen(yaml), &d, &m), TN_OK, "%s", m.text);
    char *bytes;
    size_t n;
    cr_assert_eq(tn_def_encode(d, &bytes, &n), TN_OK);
    tn_def_free(d);
    tn_cmd c = {.kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = n, .actor = "x"};
    cr_assert_eq(tn_engine_call(e, &c), TN_OK, "%s", c.msg);
    free(bytes);
    tn_cmd s = {.kind = TN_CMD_START, .workflow = "w", .actor = "evil\nuser \"q\"\x1b[2J"};
    cr_assert_eq(tn_engine_call(e, &s), TN_OK, "%s", s.msg);
    tn_engine_close(e);
    tn_inproc_free(x);
    char *out = NULL, *err = NULL;
    cr_assert_eq(run(&out, &err, "audit 1 --data %s", mdata), 0, "%s", err);
    cr_assert_null(strchr(out, '\x1b'), "a raw escape character: %s", out);
    cr_assert(strstr(out, "evil\\nuser \\\"q\\\"\\x1b[2J"), "%s", out);
    /* every line is an event (or the header): nothing broke a row in two; where the actor
     * fits its column, the machine column starts where the header's does */
    size_t col = 0;
    int events = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        bool header = strncmp(l, "TIME", 4) == 0;
        cr_assert(header || strncmp(l, "20", 2) == 0, "a line that is not an event: [%s]", l);
        char *mach = header ? strstr(l, " MACHINE ") : strstr(l, " workflow ");
        if (!mach)
            mach = strstr(l, " task ");
        cr_assert_not_null(mach, "[%s]", l);
        if (header)
            col = (size_t)(mach - l);
        else if (!strstr(l, "evil"))
            cr_assert_eq((size_t)(mach - l), col, "[%s]", l);
        events += !header;
    }
    cr_assert_geq(events, 3);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "audit 1 --data %s --json", mdata), 0, "%s", err);
    cr_assert(strstr(out, "\"actor\":\"evil\\nuser \\\"q\\\"\\u001B[2J\""), "%s", out);
    free(out);
    free(err);
}

/* tls+tcp: a client certificate of the master's CA names the actor (cert:CN), with no
 * token; no certificate, or one of another CA, is refused. */
Test(ctl, tls_client_certificate_names_the_actor)
{
    const char *src = getenv("TERN_SRC");
    cr_assert_not_null(src);
    char listen[600], log[600], url[100], c[600];
    snprintf(listen, sizeof(listen), "ipc://%s/m.sock", dir);
    snprintf(log, sizeof(log), "%s/master.log", dir);
    snprintf(url, sizeof(url), "tls+tcp://127.0.0.1:%d", 20000 + (int)((getpid() + 7) % 20000));
    snprintf(c, sizeof(c), "%s/tests/certs", src);
    master_pid = fork();
    if (master_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char ca[700], cert[700], key[700];
        snprintf(ca, sizeof(ca), "%s/ca.pem", c);
        snprintf(cert, sizeof(cert), "%s/server.pem", c);
        snprintf(key, sizeof(key), "%s/server.key", c);
        execl(tu_tern(), tu_tern(), "master", "--listen", listen, "--data", mdata, "--ctl", url,
              "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key, NULL);
        _exit(127);
    }
    write_def();
    char env[2200], cafile[700], *out = NULL, *err = NULL;
    snprintf(cafile, sizeof(cafile), "%s/ca.pem", c);
    setenv("TERN_TLS_CA", cafile, 1); /* inherited by every client below */
    snprintf(env, sizeof(env),
             "TERN_TLS_CA=%s/ca.pem TERN_TLS_CERT=%s/client.pem TERN_TLS_KEY=%s/client.key", c,
             c, c);
    int rc = 1;
    for (int i = 0; i < 100 && rc; i++) {
        free(out);
        free(err);
        /* no certificate: refused */
        rc = run(&out, &err, "ls --master %s", url);
        if (rc && strstr(err, "permission denied"))
            break;
        usleep(50000);
    }
    cr_assert_eq(rc, 1, "answered without a certificate or token: %s", out);
    cr_assert(strstr(err, "permission denied"), "%s", err);
    free(out);
    free(err);
    char cmd[8000];
    snprintf(cmd, sizeof(cmd),
             "TERN_TLS_CA=%s/ca.pem TERN_TLS_CERT=%s/rogue-client.pem "
             "TERN_TLS_KEY=%s/rogue-client.key %s ls --master %s",
             c, c, c, tu_tern(), url);
    cr_assert_eq(tu_run(cmd, &out, &err), 1, "a rogue CA's client was answered: %s", out);
    free(out);
    free(err);
    snprintf(cmd, sizeof(cmd),
             "%s %s def apply %s/w.yaml --master %s && %s %s start w --master %s", env,
             tu_tern(), dir, url, env, tu_tern(), url);
    cr_assert_eq(tu_run(cmd, &out, &err), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(run(&out, &err, "audit 1 --data %s --json", mdata), 0, "%s", err);
    cr_assert(strstr(out, "\"actor\":\"cert:tern-client\""), "%s", out);
    free(out);
    free(err);
}

/* A signed request is bound to its content and to the certificate's key. */
Test(ctl, signed_request_checks)
{
    const char *src = getenv("TERN_SRC");
    char c[600], cert[700], key[700], ca[700], rogue[700];
    snprintf(c, sizeof(c), "%s/tests/certs", src);
    snprintf(cert, sizeof(cert), "%s/client.pem", c);
    snprintf(key, sizeof(key), "%s/client.key", c);
    snprintf(ca, sizeof(ca), "%s/ca.pem", c);
    snprintf(rogue, sizeof(rogue), "%s/rogue-client.key", c);
    tn_ctl_req r = {.cmd = TN_STR("ls")};
    char *keep = NULL, cn[64], ou[32];
    tn_errmsg m = {{0}};
    cr_assert_eq(tn_ctl_sign(&r, cert, key, &keep, &m), TN_OK, "%s", m.text);
    int64_t now = r.ts;
    cr_assert_eq(tn_ctl_verify(&r, ca, now, cn, sizeof(cn), ou, sizeof(ou), &m), TN_OK, "%s",
                 m.text);
    cr_assert_str_eq(cn, "tern-client");
    /* another command under the same signature */
    r.cmd = TN_STR("start");
    cr_assert_eq(tn_ctl_verify(&r, ca, now, cn, sizeof(cn), ou, sizeof(ou), &m), TN_ERR_PERM);
    r.cmd = TN_STR("ls");
    /* too old */
    cr_assert_eq(tn_ctl_verify(&r, ca, now + 6 * 60 * 1000, cn, sizeof(cn), ou, sizeof(ou), &m),
                 TN_ERR_PERM);
    free(keep);
    /* signed with another key than the certificate's */
    tn_ctl_req r2 = {.cmd = TN_STR("ls")};
    cr_assert_eq(tn_ctl_sign(&r2, cert, rogue, &keep, &m), TN_OK, "%s", m.text);
    cr_assert_eq(tn_ctl_verify(&r2, ca, r2.ts, cn, sizeof(cn), ou, sizeof(ou), &m),
                 TN_ERR_PERM);
    cr_assert(strstr(m.text, "signature"), "%s", m.text);
    free(keep);
}

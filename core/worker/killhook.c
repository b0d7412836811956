/* Application kill hooks (killhook.h): parse, scan a killed attempt's log, run a command per
 * id found, time it out, report what ran. */
#include "killhook.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

extern char **environ;

typedef struct hook {
    regex_t re;
    char *cmd; /* the COMMAND, {id} not yet replaced */
} hook;

struct tn_kill_hooks {
    hook v[TN_KILL_HOOKS_MAX];
    uint32_t n;
    uint64_t timeout_ms;
};

/* One match of one attempt: a command that runs or ran, or a refused id. */
#define RAW_MAX (TN_KILL_HOOK_ID_MAX + 1) /* bytes of a match kept to tell it from others */

typedef struct hook_proc {
    uint32_t hook;
    char *raw; /* the match's first RAW_MAX bytes, for de-duplication */
    size_t rawlen;
    char id[TN_PROTO_HOOK_ID_MAX + 1]; /* as shown: printable ASCII, shortened */
    char *command;                     /* NULL: not run */
    char outcome[TN_PROTO_OUTCOME_MAX + 1];
    pid_t pid;
    bool running, killed;
    int64_t deadline, give_up; /* monotonic */
} hook_proc;

#define SET_MAX (TN_KILL_HOOK_RUNS_MAX + TN_KILL_HOOK_REFUSED_MAX + 2)

struct tn_hook_set {
    hook_proc v[SET_MAX];
    uint32_t n, nrun, nrefused;
    uint64_t over_run, over_refused; /* matches past the limits: counted, not run */
    size_t scan_cut, scan_len; /* the scan stopped with the last scan_cut bytes of scan_len
                                * searched (0: it did not stop) */
    tn_hook_run runs[SET_MAX];
    char more[TN_PROTO_OUTCOME_MAX + 1]; /* the line for what the limits left out */
    char cut[TN_PROTO_OUTCOME_MAX + 1];  /* the line for a scan cut short */
    int logfd, nullfd;
    char **envp;  /* the worker's environment and the TERN_KILL_HOOK_* variables */
    char *own[4]; /* those variables; own[3] is the id's, set per command */
    size_t id_at; /* where own[3] is in envp */
    uint64_t task;
    uint32_t attempt;
    uint64_t timeout_ms;
};

/* ---------------------------------------------------------------------------------- */
/* parsing */

static char *trimmed(const char *s, size_t len)
{
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\n' ||
                   s[len - 1] == '\r'))
        len--;
    return strndup(s, len);
}

/* The '=' between REGEX and COMMAND: the first one outside a bracket expression ("[=]",
 * "[[:alpha:]=]") and not after a backslash; NULL when none. */
static const char *split_at(const char *spec)
{
    for (const char *p = spec; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
        } else if (*p == '[') {
            const char *q = p + 1;
            q += *q == '^';
            q += *q == ']'; /* a ']' first is a member */
            while (*q && *q != ']') {
                if (*q == '[' && (q[1] == ':' || q[1] == '=' || q[1] == '.')) {
                    const char *end = strstr(q + 2, (char[]){q[1], ']', 0});
                    q = end ? end + 1 : q + 1;
                } else {
                    q++;
                }
            }
            if (!*q)
                return NULL; /* unterminated: no COMMAND can follow */
            p = q;
        } else if (*p == '=') {
            return p;
        }
    }
    return NULL;
}

static tn_err parse_one(hook *h, const char *spec, uint32_t i, tn_errmsg *msg)
{
    const char *eq = split_at(spec);
    if (!eq)
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "kill hook %u \"%s\": no '=' after the regex: write "
                             "REGEX=COMMAND, e.g. "
                             "'application_[0-9]+_[0-9]+=yarn application -kill {id}'",
                             i + 1, spec);
    char *re = trimmed(spec, (size_t)(eq - spec));
    h->cmd = trimmed(eq + 1, strlen(eq + 1));
    tn_err e = TN_OK;
    int rc = 0;
    if (!re || !h->cmd)
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    else if (!re[0] || strlen(re) > TN_KILL_HOOK_REGEX_MAX)
        e = tn_errmsg_set(msg, TN_ERR_INVAL,
                          "kill hook %u \"%s\": the regex before '=' must be 1-%u bytes", i + 1,
                          spec, TN_KILL_HOOK_REGEX_MAX);
    else if ((rc = regcomp(&h->re, re, REG_EXTENDED | REG_NEWLINE)) != 0) {
        char why[256];
        regerror(rc, &h->re, why, sizeof(why));
        e = tn_errmsg_set(msg, TN_ERR_INVAL,
                          "kill hook %u \"%s\": regex \"%s\": %s (POSIX extended regex; "
                          "a '=' of the regex is written [=] or \\=)",
                          i + 1, spec, re, why);
    } else if (!strstr(h->cmd, "{id}") || strlen(h->cmd) > TN_KILL_HOOK_CMD_MAX) {
        regfree(&h->re);
        e = tn_errmsg_set(msg, TN_ERR_INVAL,
                          "kill hook %u \"%s\": the command after '=' must be at most %u "
                          "bytes and name the matched id as {id}",
                          i + 1, spec, TN_KILL_HOOK_CMD_MAX);
    }
    free(re);
    if (e) {
        free(h->cmd);
        h->cmd = NULL;
    }
    return e;
}

tn_err tn_kill_hooks_new(const char *const *specs, uint32_t n, uint64_t timeout_ms,
                         tn_kill_hooks **out, tn_errmsg *msg)
{
    *out = NULL;
    if (n == 0)
        return TN_OK;
    if (n > TN_KILL_HOOKS_MAX)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "%u kill hooks: at most %u", n,
                             TN_KILL_HOOKS_MAX);
    tn_kill_hooks *h = calloc(1, sizeof(*h));
    if (!h)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    h->timeout_ms = timeout_ms ? timeout_ms : TN_KILL_HOOK_TIMEOUT_MS;
    for (uint32_t i = 0; i < n; i++) {
        tn_err e = parse_one(&h->v[i], specs[i], i, msg);
        if (e) {
            tn_kill_hooks_free(h);
            return e;
        }
        h->n++;
    }
    *out = h;
    return TN_OK;
}

void tn_kill_hooks_free(tn_kill_hooks *h)
{
    if (!h)
        return;
    for (uint32_t i = 0; i < h->n; i++) {
        regfree(&h->v[i].re);
        free(h->v[i].cmd);
    }
    free(h);
}

/* ---------------------------------------------------------------------------------- */
/* the ids */

/* Why id may not be run, or NULL when it may. */
static const char *id_refusal(const char *id, size_t len)
{
    if (len > TN_KILL_HOOK_ID_MAX)
        return "refused: the id is over 128 bytes";
    if (id[0] == '-')
        return "refused: the id starts with '-'";
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:@+",
                    id[i]) ||
            !id[i])
            return "refused: the id has characters other than A-Z a-z 0-9 . _ - : @ +";
    return NULL;
}

/* The id as shown in reports: printable ASCII ('?' for the rest), at most 64 bytes. */
static void shown(const char *id, size_t len, char *out)
{
    size_t n = len > 64 ? 64 : len;
    for (size_t i = 0; i < n; i++)
        out[i] = id[i] > ' ' && id[i] < 0x7f ? id[i] : '?';
    snprintf(out + n, 8, "%s", len > 64 ? "..." : "");
}

/* The command with every {id} replaced by the id, single-quoted; NULL when over the
 * protocol's bound. */
static char *expand(const char *cmd, const char *id, size_t len)
{
    size_t cap = TN_PROTO_REASON_MAX + 1, o = 0;
    char *out = malloc(cap);
    for (const char *p = cmd; out && *p;) {
        if (strncmp(p, "{id}", 4) == 0) {
            if (o + len * 4 + 2 >= cap)
                goto big;
            out[o++] = '\'';
            for (size_t i = 0; i < len; i++) {
                if (id[i] == '\'') { /* never passes id_refusal; quoted right anyway */
                    memcpy(out + o, "'\\''", 4);
                    o += 4;
                } else {
                    out[o++] = id[i];
                }
            }
            out[o++] = '\'';
            p += 4;
        } else {
            if (o + 1 >= cap)
                goto big;
            out[o++] = *p++;
        }
    }
    if (out)
        out[o] = '\0';
    return out;
big:
    free(out);
    return NULL;
}

/* One match: a command to run, a refusal, or a duplicate of an earlier match. */
static void add_match(tn_hook_set *s, const tn_kill_hooks *h, uint32_t hk, const char *id,
                      size_t len)
{
    size_t keep = len < RAW_MAX ? len : RAW_MAX; /* longer ones are refused anyway */
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i].hook == hk && s->v[i].rawlen == len && memcmp(s->v[i].raw, id, keep) == 0)
            return;
    const char *why = id_refusal(id, len);
    if (why ? s->nrefused >= TN_KILL_HOOK_REFUSED_MAX : s->nrun >= TN_KILL_HOOK_RUNS_MAX) {
        if (why)
            s->over_refused++;
        else
            s->over_run++;
        return;
    }
    hook_proc *x = &s->v[s->n];
    *x = (hook_proc){.hook = hk, .raw = malloc(keep ? keep : 1), .rawlen = len};
    if (!x->raw)
        return;
    memcpy(x->raw, id, keep);
    shown(id, len, x->id);
    if (why)
        s->nrefused++;
    else
        s->nrun++; /* a command too long takes its run's place */
    if (!why && !(x->command = expand(h->v[hk].cmd, id, len)))
        why = "refused: the command would be over 4096 bytes";
    if (why)
        snprintf(x->outcome, sizeof(x->outcome), "%s", why);
    s->n++;
}

/* The last TN_KILL_HOOK_SCAN_MAX bytes of path, from a line start, NULs as newlines. */
static char *read_tail(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    off_t off =
        st.st_size > (off_t)TN_KILL_HOOK_SCAN_MAX ? st.st_size - TN_KILL_HOOK_SCAN_MAX : 0;
    char *buf = malloc(TN_KILL_HOOK_SCAN_MAX + 1);
    size_t n = 0;
    while (buf && n < TN_KILL_HOOK_SCAN_MAX) {
        ssize_t r = pread(fd, buf + n, TN_KILL_HOOK_SCAN_MAX - n, off + (off_t)n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf)
        return NULL;
    size_t skip = 0;
    if (off > 0) { /* the first line is cut: an id in it may be cut too */
        char *nl = memchr(buf, '\n', n);
        skip = nl ? (size_t)(nl - buf) + 1 : n;
    }
    memmove(buf, buf + skip, n - skip);
    n -= skip;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = '\n';
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* The matches of every hook in text[from, to): whole lines, or a piece of one long line.
 * A match that touches a cut end of a piece (cut_start, cut_end) may be part of a longer
 * id: left to the neighbouring piece, which holds it whole. False once past stop. */
static bool scan_piece(tn_hook_set *s, const tn_kill_hooks *h, char *text, size_t from,
                       size_t to, bool cut_start, bool cut_end, int64_t stop)
{
    /* the piece as its own string: what reads it to its NUL (a sanitizer's regexec) reads
     * only the piece; at its start is a line start unless it is cut there */
    char *p = text + from, saved = text[to];
    size_t n = to - from;
    text[to] = '\0';
    bool ok = true;
    for (uint32_t k = 0; k < h->n && ok; k++) {
        size_t at = 0;
        while (at < n) {
            regmatch_t m = {.rm_so = (regoff_t)at, .rm_eo = (regoff_t)n};
            if (regexec(&h->v[k].re, p, 1, &m, REG_STARTEND | (cut_start ? REG_NOTBOL : 0)) !=
                0)
                break;
            size_t a = (size_t)m.rm_so, b = (size_t)m.rm_eo;
            if (b > a && !(cut_start && a == 0) && !(cut_end && b == n))
                add_match(s, h, k, p + a, b - a);
            at = b > a ? b : a + 1;
        }
        ok = tn_mono_ns() <= stop;
    }
    text[to] = saved;
    return ok;
}

/* glibc's regexec may take time quadratic in a line's length (a regex that starts with
 * [a-z]+ on a long run of letters; REG_NEWLINE keeps a match within a line), and the log
 * is the task's: short lines are searched in blocks whose sum of squared line lengths is
 * bounded (few calls, bounded cost each), a line over SCAN_PIECE bytes in overlapping
 * pieces; the whole search stops after SCAN_BUDGET_NS (s->scan_cut). */
#define SCAN_PIECE     4096
#define SCAN_STEP      3072 /* pieces overlap by 1 KiB: any id (128 bytes at most) is whole in one */
#define SCAN_BLOCK     (64u << 10)
#define SCAN_WORK      ((uint64_t)SCAN_PIECE * SCAN_PIECE) /* sum of squared line lengths */
#define SCAN_BUDGET_NS 1000000000LL

/* The start of the line that ends at end (text[end - 1] is its last byte or its '\n'). A
 * loop rather than memrchr: a sanitizer's memrchr checks all it is given, every line. */
static size_t line_start(const char *text, size_t end)
{
    size_t i = end - (text[end - 1] == '\n');
    while (i > 0 && text[i - 1] != '\n')
        i--;
    return i;
}

/* A line over SCAN_PIECE bytes, [ls, le), in pieces. False once past stop. */
static bool scan_long_line(tn_hook_set *s, const tn_kill_hooks *h, char *text, size_t ls,
                           size_t le, int64_t stop)
{
    for (size_t ps = ls;; ps += SCAN_STEP) {
        size_t pe = le - ps > SCAN_PIECE ? ps + SCAN_PIECE : le;
        if (!scan_piece(s, h, text, ps, pe, ps > ls, pe < le, stop))
            return false;
        if (pe == le)
            return true;
    }
}

static void scan(tn_hook_set *s, const tn_kill_hooks *h, char *text, size_t len)
{
    int64_t stop = tn_mono_ns() + SCAN_BUDGET_NS;
    /* the newest lines first: what a cut search or the limits leave out is the oldest */
    for (size_t end = len; end > 0;) {
        size_t ls = line_start(text, end), le = end - (text[end - 1] == '\n');
        bool ok;
        if (le - ls > SCAN_PIECE) {
            ok = scan_long_line(s, h, text, ls, le, stop);
        } else {
            uint64_t work = (uint64_t)(le - ls) * (le - ls);
            while (ls > 0 && end - ls < SCAN_BLOCK) { /* earlier short lines join the block */
                size_t ps = line_start(text, ls), n = ls - ps;
                if (n > SCAN_PIECE || work + (uint64_t)n * n > SCAN_WORK)
                    break;
                work += (uint64_t)n * n;
                ls = ps;
            }
            ok = scan_piece(s, h, text, ls, le, false, false, stop);
        }
        if (!ok) {
            s->scan_cut = len - ls;
            return;
        }
        end = ls;
    }
}

/* ---------------------------------------------------------------------------------- */
/* running */

typedef struct child_ctx {
    const char *cwd;
    int nullfd, logfd;
    char *argv[4];
    char **envp;
} child_ctx;

/* Closes every fd from 3 up: closed, not only close-on-exec, in a process that does not
 * exec, so the worker's fds (its lock on the data dir, its sockets) do not outlive the
 * worker in it. */
static void close_from_3(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return;
#endif
    for (int fd = 3; fd < 65536; fd++)
        (void)close(fd);
}

/* The end of the command's process: the system call, not what a sanitizer wraps exit in. */
__attribute__((noreturn)) static void sys_exit(int code)
{
    for (;;)
        (void)syscall(SYS_exit_group, code);
}

/* fd `from` as fd `to` (dup3, which refuses from == to). */
static bool onto(int from, int to)
{
    return from == to || syscall(SYS_dup3, from, to, 0) >= 0;
}

/* The command's process: a copy of the worker (a fork) whose exit signals nothing
 * (exit_signal 0), which runs /bin/sh -c COMMAND as its own child and ends as that did. It
 * does not exec itself because exec makes a process a normal child again, whose exit the
 * worker's reaper would take. It runs in a copy of a threaded process: system calls only
 * (another thread may have held a lock at the copy), raw ones where a sanitizer would wrap
 * the libc call in its own locks. */
__attribute__((noreturn)) static void hook_process(const child_ctx *c)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);
    (void)setsid(); /* a process group of its own: the timeout kills all of it */
    int out = c->logfd >= 0 ? c->logfd : c->nullfd;
    if (!onto(c->nullfd, 0) || !onto(out, 1) || !onto(out, 2))
        sys_exit(126);
    if (chdir(c->cwd) != 0)
        (void)!chdir("/");
    close_from_3();
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    long k = syscall(SYS_clone, (unsigned long)SIGCHLD, 0UL, 0UL, 0UL, 0UL);
    if (k == 0) {
        (void)syscall(SYS_execve, "/bin/sh", c->argv, c->envp);
        sys_exit(127);
    }
    int st = 0;
    while (k > 0 && syscall(SYS_wait4, (pid_t)k, &st, 0, NULL) < 0 && errno == EINTR)
        ;
    if (k < 0)
        sys_exit(126);
    if (WIFEXITED(st))
        sys_exit(WEXITSTATUS(st));
    struct rlimit nocore = {0, 0};
    (void)setrlimit(RLIMIT_CORE, &nocore);
    (void)syscall(SYS_kill, syscall(SYS_getpid), WTERMSIG(st)); /* ends as the shell did */
    sys_exit(128 + WTERMSIG(st));
}

/* Starts x's command (hook_process), as a clone child: only waitpid(pid, __WCLONE) takes
 * its status. */
static void run_one(tn_hook_set *s, hook_proc *x, const char *cwd, int64_t now,
                    uint64_t timeout_ms)
{
    child_ctx c = {
        cwd, s->nullfd, s->logfd, {(char *)"sh", (char *)"-c", x->command, NULL}, s->envp};
    free(s->own[3]);
    if (asprintf(&s->own[3], "TERN_KILL_HOOK_ID=%.*s", (int)x->rawlen, x->raw) < 0)
        s->own[3] = NULL; /* a run's id is at most 128 bytes, all kept in raw */
    s->envp[s->id_at] = s->own[3] ? s->own[3] : (char *)"TERN_KILL_HOOK_ID=";
    if (s->logfd >= 0)
        (void)!dprintf(s->logfd, "[tern] kill hook: %s\n", x->command);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler runs in the copy */
    long pid = syscall(SYS_clone, 0UL, 0UL, 0UL, 0UL, 0UL);
    if (pid == 0)
        hook_process(&c);
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(x->outcome, sizeof(x->outcome), "not run: clone: %s", strerror(e));
        return;
    }
    x->pid = (pid_t)pid;
    x->running = true;
    x->deadline = now + (int64_t)timeout_ms * 1000000;
}

static void log_end(tn_hook_set *s, hook_proc *x)
{
    char id[600], cmd[4 * TN_PROTO_REASON_MAX + 8], out[4 * TN_PROTO_OUTCOME_MAX + 8];
    if (s->logfd >= 0)
        (void)!dprintf(s->logfd, "[tern] kill hook: %s -> %s\n",
                       x->command ? x->command : x->id, x->outcome);
    tn_logf(
        x->command && strcmp(x->outcome, "exit 0") == 0 ? TN_LOG_INFO : TN_LOG_WARN, "worker",
        "msg=\"kill hook\" task=%" PRIu64 " attempt=%" PRIu32 " id=%s command=%s outcome=%s",
        s->task, s->attempt, tn_log_escape(x->id, id, sizeof(id)),
        tn_log_escape(x->command ? x->command : "", cmd, sizeof(cmd)),
        tn_log_escape(x->outcome, out, sizeof(out)));
}

/* The commands' environment: the worker's, and what names the killed attempt. */
static bool hook_env(tn_hook_set *s, const char *user)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    s->envp = calloc(n + 5, sizeof(char *));
    if (asprintf(&s->own[0], "TERN_KILL_HOOK_TASK_INSTANCE_ID=%" PRIu64, s->task) < 0)
        s->own[0] = NULL;
    if (asprintf(&s->own[1], "TERN_KILL_HOOK_TASK_ATTEMPT=%" PRIu32, s->attempt) < 0)
        s->own[1] = NULL;
    if (asprintf(&s->own[2], "TERN_KILL_HOOK_TASK_USER=%s", user ? user : "") < 0)
        s->own[2] = NULL;
    if (!s->envp || !s->own[0] || !s->own[1] || !s->own[2])
        return false;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "TERN_KILL_HOOK_", 15) != 0)
            s->envp[k++] = environ[i];
    for (int i = 0; i < 3; i++)
        s->envp[k++] = s->own[i];
    s->id_at = k;
    s->envp[k] = (char *)"TERN_KILL_HOOK_ID=";
    return true;
}

tn_hook_set *tn_kill_hooks_start(const tn_kill_hooks *h, const char *log_path, const char *cwd,
                                 uint64_t task, uint32_t attempt, const char *user)
{
    if (!h || !log_path)
        return NULL;
    size_t len = 0;
    char *text = read_tail(log_path, &len);
    tn_hook_set *s = text ? calloc(1, sizeof(*s)) : NULL;
    if (s) {
        s->task = task;
        s->attempt = attempt;
        s->timeout_ms = h->timeout_ms;
        scan(s, h, text, len);
        s->scan_len = len;
    }
    free(text);
    if (s && s->scan_cut)
        tn_warn("worker",
                "msg=\"kill hooks: the log scan stopped at its time limit\" task=%" PRIu64
                " attempt=%" PRIu32 " scanned=%zu bytes=%zu",
                task, attempt, s->scan_cut, s->scan_len);
    if (!s || (s->n == 0 && !s->over_run && !s->over_refused && !s->scan_cut)) {
        free(s);
        return NULL;
    }
    s->logfd = open(log_path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    s->nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    bool env_ok = hook_env(s, user);
    int64_t now = tn_mono_ns();
    for (uint32_t i = 0; i < s->n; i++) {
        hook_proc *x = &s->v[i];
        if (!x->command)
            log_end(s, x); /* refused */
        else if (s->nullfd < 0 || !env_ok)
            snprintf(x->outcome, sizeof(x->outcome), "not run: out of resources");
        else
            run_one(s, x, cwd ? cwd : "/", now, h->timeout_ms);
        if (x->command && !x->running)
            log_end(s, x);
    }
    return s;
}

static void ended(tn_hook_set *s, hook_proc *x, int st)
{
    char d[32];
    tn_fmt_duration((int64_t)s->timeout_ms * 1000000, d, sizeof(d));
    x->running = false;
    if (x->killed)
        snprintf(x->outcome, sizeof(x->outcome), "timed out after %s; killed", d);
    else if (WIFEXITED(st))
        snprintf(x->outcome, sizeof(x->outcome), "exit %d", WEXITSTATUS(st));
    else
        snprintf(x->outcome, sizeof(x->outcome), "killed by signal %d", WTERMSIG(st));
    log_end(s, x);
}

bool tn_hook_set_poll(tn_hook_set *s, int64_t now)
{
    bool all = true;
    for (uint32_t i = 0; s && i < s->n; i++) {
        hook_proc *x = &s->v[i];
        if (!x->running)
            continue;
        int st = 0;
        pid_t r = waitpid(x->pid, &st, WNOHANG | __WCLONE);
        if (r == x->pid) {
            ended(s, x, st);
            continue;
        }
        if (r < 0 && errno != EINTR) {
            x->running = false;
            snprintf(x->outcome, sizeof(x->outcome), "exit status lost: %s", strerror(errno));
            log_end(s, x);
            continue;
        }
        if (!x->killed && now >= x->deadline) {
            (void)kill(-x->pid, SIGKILL);
            (void)kill(x->pid, SIGKILL);
            x->killed = true;
            x->give_up = now + (int64_t)TN_KILL_HOOK_REAP_MS * 1000000;
        } else if (x->killed && now >= x->give_up) {
            char d[32];
            tn_fmt_duration((int64_t)s->timeout_ms * 1000000, d, sizeof(d));
            x->running = false;
            snprintf(x->outcome, sizeof(x->outcome),
                     "timed out after %s; still there 5s after SIGKILL", d);
            log_end(s, x);
            continue;
        }
        all = false;
    }
    return all;
}

tn_hook_runs tn_hook_set_runs(tn_hook_set *s)
{
    if (!s)
        return (tn_hook_runs){NULL, 0};
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->n; i++)
        s->runs[n++] = (tn_hook_run){tn_str_c(s->v[i].id), tn_str_c(s->v[i].command),
                                     tn_str_c(s->v[i].outcome)};
    if (s->over_run || s->over_refused) {
        snprintf(s->more, sizeof(s->more),
                 "not run: %" PRIu64 " more ids and %" PRIu64
                 " more refused matches past the limits (%u commands, %u refusals listed "
                 "per kill)",
                 s->over_run, s->over_refused, TN_KILL_HOOK_RUNS_MAX, TN_KILL_HOOK_REFUSED_MAX);
        s->runs[n++] = (tn_hook_run){TN_STR("(more)"), TN_STR(""), tn_str_c(s->more)};
    }
    if (s->scan_cut) {
        snprintf(s->cut, sizeof(s->cut),
                 "not searched: the log scan stopped after 1s with %zu of the last %zu bytes "
                 "searched, newest first (a regex that is slow on this log)",
                 s->scan_cut, s->scan_len);
        s->runs[n++] = (tn_hook_run){TN_STR("(scan)"), TN_STR(""), tn_str_c(s->cut)};
    }
    return (tn_hook_runs){s->runs, n};
}

void tn_hook_set_free(tn_hook_set *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->n; i++) {
        hook_proc *x = &s->v[i];
        if (x->running) {
            (void)kill(-x->pid, SIGKILL);
            (void)kill(x->pid, SIGKILL);
            for (int k = 0; k < 50 && waitpid(x->pid, NULL, WNOHANG | __WCLONE) == 0; k++)
                usleep(2000);
        }
        free(x->raw);
        free(x->command);
    }
    if (s->logfd >= 0)
        close(s->logfd);
    if (s->nullfd >= 0)
        close(s->nullfd);
    for (int i = 0; i < 4; i++)
        free(s->own[i]);
    free(s->envp);
    free(s);
}

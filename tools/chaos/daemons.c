/* `tern chaos`: the processes of a run. The master and the workers (this binary) are
 * started, killed, restarted and stopped here; the task processes they leave are found in
 * /proc by the marker in their environment. */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chaos.h"
#include "cli.h"

/* Whether 127.0.0.1:port can be bound now; port 0: any, *got says which. */
static bool port_free(int port, int *got)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (ok && got)
        *got = ntohs(a.sin_port);
    close(fd);
    return ok;
}

/* A port for a daemon to listen at, for the whole run (a restarted daemon listens there
 * again). It is below the kernel's ephemeral range: one picked from that range was taken
 * by some process's outgoing connection between the pick and the listen (a worker failed
 * to start: "Address in use"), and could be while a daemon is down between a kill and its
 * restart. Not drawn from the schedule's seed: ports are not part of the schedule. */
/* Whether port was handed out already: a port is free until its daemon listens, so a
 * later draw of this run could give it again (a worker once got the master's port). */
static bool port_taken(int port)
{
    static int given[MAXW + 1];
    static int ngiven;
    for (int i = 0; i < ngiven; i++)
        if (given[i] == port)
            return true;
    if (ngiven < MAXW + 1)
        given[ngiven++] = port;
    return false;
}

int daemon_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    int lo = 32768, a, b;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "re");
    if (f) {
        if (fscanf(f, "%d %d", &a, &b) == 2 && a > 2048 && a <= 65535)
            lo = a;
        fclose(f);
    }
    for (int i = 0; i < 200; i++) {
        int port = 1024 + (int)((unsigned)rand_r(&seed) % (unsigned)(lo - 1024));
        if (port_free(port, NULL) && !port_taken(port))
            return port;
    }
    int port = -1;
    return port_free(0, &port) ? port : -1;
}

void daemon_worker_name(const run *r, int i, char *buf, size_t len)
{
    snprintf(buf, len, "chaos-%s-w%d", r->runid, i);
}

void daemon_store_dir(const run *r, int idx, char *buf, size_t len)
{
    if (idx == 0)
        snprintf(buf, len, "%s/master", r->dir);
    else
        snprintf(buf, len, "%s/w%d", r->dir, idx - 1);
}

/* ------------------------------------------------------------------------------ */
/* starting one */

#define NARGS 24
typedef char arg_buf[NARGS][PATH_MAX + 32];

/* The command line of daemon idx: the strings in a, argv (NULL-terminated) into them. */
static void daemon_argv(run *r, int idx, arg_buf a, char *argv[NARGS + 1])
{
    int n = 0;
#define ARG(...) (snprintf(a[n], sizeof(a[n]), __VA_ARGS__), argv[n] = a[n], n++)
    ARG("%s", r->exe);
    if (idx == 0) {
        ARG("master");
        ARG("--listen");
        ARG("%s", r->master_url);
        ARG("--data");
        ARG("%s/master", r->dir);
        ARG("--ctl");
        ARG("%s", r->ctl_url);
        ARG("--heartbeat-timeout");
        ARG("%dms", HB_TIMEOUT_MS);
        ARG("--id");
        ARG("chaos");
        ARG("--insecure"); /* plain tcp on 127.0.0.1: see docs/SECURITY.md */
        if (r->s.master_map_max) {
            ARG("--map-max");
            ARG("%" PRIu64, r->disk[0].map_max);
        }
    } else {
        int w = idx - 1;
        char name[64];
        daemon_worker_name(r, w, name, sizeof(name));
        ARG("worker");
        ARG("--master");
        ARG("%s", r->master_url);
        ARG("--listen");
        ARG("tcp://127.0.0.1:%d", r->worker_port[w]);
        ARG("--data");
        ARG("%s/w%d", r->dir, w);
        ARG("--ctl");
        ARG("ipc://%s/w%d.ctl", r->dir, w);
        ARG("--name");
        ARG("%s", name);
        ARG("--heartbeat");
        ARG("200ms");
        ARG("--insecure");
        ARG("--slots");
        ARG("4");
        if (r->s.worker_map_max) {
            ARG("--map-max");
            ARG("%" PRIu64, r->disk[idx].map_max);
        }
    }
#undef ARG
    argv[n] = NULL;
}

/* The strings a daemon's environment adds. */
typedef struct env_buf {
    char mark[96], faults[300], level[24];
} env_buf;

/* The environment of daemon idx: ours, without what would confuse the run, plus the run's
 * marker (every task process inherits it) and the network faults. Returns it calloc'd (the
 * strings are environ's and b's), or NULL. */
static char **daemon_env(run *r, int idx, env_buf *b)
{
    extern char **environ;
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 4, sizeof(char *));
    if (!envp)
        return NULL;
    size_t k = 0;
    bool has_level = false;
    for (size_t i = 0; i < ne; i++) {
        if (!strncmp(environ[i], "TERN_FAULTS=", 12) ||
            !strncmp(environ[i], "TERN_CHAOS_RUN=", 15) ||
            !strncmp(environ[i], "TERN_ATTEMPT_TAG=", 17))
            continue;
        has_level |= !strncmp(environ[i], "TERN_LOG_LEVEL=", 15);
        envp[k++] = environ[i];
    }
    snprintf(b->mark, sizeof(b->mark), "TERN_CHAOS_RUN=%s", r->runid);
    envp[k++] = b->mark;
    snprintf(b->level, sizeof(b->level), "TERN_LOG_LEVEL=info");
    if (!has_level)
        envp[k++] = b->level;
    if (r->s.net[0]) {
        /* a seed per process and incarnation, drawn from the run's seed */
        snprintf(
            b->faults, sizeof(b->faults), "TERN_FAULTS=seed=%" PRIu64 ",%s",
            (uint64_t)(r->s.seed * 1000003ull + (uint64_t)idx * 7919ull + r->d[idx].starts),
            r->s.net);
        envp[k++] = b->faults;
    }
    envp[k] = NULL;
    return envp;
}

/* fork and exec exe in a process group of its own, its stdin /dev/null and its stdout and
 * stderr appended to logp. Returns the pid, or -1. */
static pid_t fork_exec(const char *exe, char **argv, char **envp, const char *logp)
{
    int lfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int nfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    long maxfd = sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536)
        maxfd = 65536;
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* our terminal's Ctrl-C is for the harness, which stops them */
        /* a daemon that crashes by itself leaves a core where the host's core_pattern says */
        struct rlimit core;
        if (getrlimit(RLIMIT_CORE, &core) == 0) {
            core.rlim_cur = core.rlim_max;
            (void)setrlimit(RLIMIT_CORE, &core);
        }
        if (nfd >= 0)
            dup2(nfd, 0);
        if (lfd >= 0) {
            dup2(lfd, 1);
            dup2(lfd, 2);
        }
        for (long fd = 3; fd < maxfd; fd++)
            close((int)fd);
        execve(exe, argv, envp);
        _exit(127);
    }
    if (lfd >= 0)
        close(lfd);
    if (nfd >= 0)
        close(nfd);
    return pid;
}

int daemon_spawn(run *r, int idx)
{
    dproc *d = &r->d[idx];
    arg_buf a;
    char *argv[NARGS + 1];
    env_buf eb;
    daemon_argv(r, idx, a, argv);
    char **envp = daemon_env(r, idx, &eb);
    if (!envp)
        return -1;
    char logp[PATH_MAX + 32];
    snprintf(logp, sizeof(logp), "%s/%s.log", r->dir, d->role);
    pid_t pid = fork_exec(r->exe, argv, envp, logp);
    free(envp);
    if (pid < 0)
        return -1;
    d->pid = pid;
    d->killed = false;
    d->stopped = false;
    d->restart_at = 0;
    d->cont_at = 0;
    d->starts++;
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* exits, kills and stops */

/* Reap every child: our daemons (an exit we did not cause is noted) and the task
 * processes orphaned to us (the harness is a child subreaper). */
void daemon_reap(run *r)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        pthread_mutex_lock(&r->mu);
        for (int i = 0; i <= r->s.workers; i++) {
            dproc *d = &r->d[i];
            if (d->pid != pid)
                continue;
            bool bad_stop = d->terming && !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            if (!d->killed || bad_stop) {
                char note[sizeof(d->exit_note)];
                snprintf(note, sizeof(note), "%s (pid %d) %s: %s %d%s; see %.100s/%s.log",
                         d->role, (int)pid,
                         bad_stop ? "failed its stop (SIGTERM)" : "exited by itself",
                         WIFEXITED(st) ? "status" : "signal",
                         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                         WIFSIGNALED(st) && WCOREDUMP(st) ?
                             " (core dumped: /proc/sys/kernel/core_pattern says where)" :
                             "",
                         r->dir, d->role);
                memcpy(d->exit_note, note, sizeof(note));
                chaos_violation(r, 0, 0, 0, 0, "%s", d->exit_note);
                chaos_say(r, "%s", d->exit_note);
                if (!d->killed)
                    d->restart_at = now_ms() + 500; /* recorded; the run goes on */
            }
            d->pid = 0;
            d->stopped = false;
            d->terming = false;
        }
        pthread_mutex_unlock(&r->mu);
    }
}

bool daemon_kill(run *r, int idx, int64_t restart_ms)
{
    dproc *d = &r->d[idx];
    if (!d->pid || d->killed)
        return false;
    d->killed = true;
    kill(d->pid, SIGKILL);
    d->restart_at = now_ms() + restart_ms;
    if (d->restart_at == 0)
        d->restart_at = 1;
    d->cont_at = 0;
    return true;
}

uint64_t daemon_rss_anon(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    return tn_proc_kb(p, "RssAnon") * 1024;
}

/* Reap until daemon d is gone or ms have passed, looking every step_ms; whether it went. */
static bool wait_gone(run *r, const dproc *d, int64_t ms, int64_t step_ms)
{
    int64_t until = now_ms() + ms;
    for (;;) {
        daemon_reap(r);
        pthread_mutex_lock(&r->mu);
        bool gone = d->pid == 0;
        pthread_mutex_unlock(&r->mu);
        if (gone)
            return true;
        if (now_ms() >= until)
            return false;
        sleep_ms(step_ms);
    }
}

void daemon_stop(run *r, int idx)
{
    pthread_mutex_lock(&r->mu);
    dproc *d = &r->d[idx];
    pid_t pid = d->pid;
    if (pid) {
        d->killed = true;
        d->terming = true;
        d->restart_at = 0;
        if (d->stopped)
            kill(pid, SIGCONT);
        kill(pid, SIGTERM);
    }
    pthread_mutex_unlock(&r->mu);
    if (!pid || wait_gone(r, d, 30000, 20))
        return;
    chaos_violation(r, 0, 0, 0, 0, "%s (pid %d) did not stop within 30s of SIGTERM; killed",
                    d->role, (int)pid);
    pthread_mutex_lock(&r->mu);
    d->terming = false; /* reported above */
    pthread_mutex_unlock(&r->mu);
    kill(pid, SIGKILL);
    (void)wait_gone(r, d, 2000, 10);
}

int daemon_wait_up(run *r)
{
    int64_t until = now_ms() + 20000;
    reply *rp = calloc(1, sizeof(*rp));
    int rc = 1;
    while (rp && now_ms() < until && !atomic_load(&chaos_interrupted)) {
        daemon_reap(r);
        if (r->d[0].pid == 0)
            break;
        int alive = chaos_ctl_workers(r, 2000, rp);
        if (rp->rc == 0 && alive >= r->s.workers) {
            rc = 0;
            break;
        }
        sleep_ms(100);
    }
    free(rp);
    if (rc)
        tn_cli_fail("chaos", "the cluster did not come up within 20s; see the logs in %s",
                    r->dir);
    return rc;
}

void daemon_kill_all(run *r)
{
    for (int i = r->s.workers; i >= 0; i--)
        daemon_stop(r, i);
    daemon_kill_tasks(r, false);
    daemon_reap(r);
}

void daemon_dump_stacks(run *r)
{
    if (access("/usr/bin/gdb", X_OK) != 0)
        return;
    for (int i = 0; i <= r->s.workers; i++) {
        pthread_mutex_lock(&r->mu);
        pid_t pid = r->d[i].pid;
        pthread_mutex_unlock(&r->mu);
        if (!pid)
            continue;
        char cmd[PATH_MAX + 200];
        snprintf(cmd, sizeof(cmd),
                 "timeout 60 /usr/bin/gdb -p %d -batch -ex 'thread apply all "
                 "bt' > %s/%s.stacks 2>&1",
                 (int)pid, r->dir, r->d[i].role);
        if (system(cmd) == 0)
            chaos_say(r, "%s: its threads are in %s/%s.stacks", r->d[i].role, r->dir,
                      r->d[i].role);
    }
}

/* ------------------------------------------------------------------------------ */
/* the task processes */

static bool is_daemon_pid(run *r, pid_t pid)
{
    bool yes = false;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i <= r->s.workers; i++)
        if (r->d[i].pid == pid)
            yes = true;
    pthread_mutex_unlock(&r->mu);
    return yes;
}

/* Whether pid is alive and not a zombie. */
static bool proc_live(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    FILE *sf = fopen(p, "re");
    char st[512] = "";
    if (sf) {
        if (!fgets(st, sizeof(st), sf))
            st[0] = 0;
        fclose(sf);
    }
    const char *rp = strrchr(st, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

/* pid's environment into buf (NUL-separated, NUL-terminated); its length, or <= 0. */
static ssize_t proc_environ(pid_t pid, char *buf, size_t size)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/environ", (int)pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t len = 0, got;
    while (len < (ssize_t)size - 1 && (got = read(fd, buf + len, size - 1 - (size_t)len)) > 0)
        len += got;
    close(fd);
    if (len > 0)
        buf[len] = 0;
    return len;
}

/* Whether pid's environment carries the run's marker or an attempt tag (into *t). */
static bool proc_marked(run *r, pid_t pid, tproc *t)
{
    static char buf[1 << 20];
    char mark[96], tagp[96];
    snprintf(mark, sizeof(mark), "TERN_CHAOS_RUN=%s", r->runid);
    snprintf(tagp, sizeof(tagp), "TERN_ATTEMPT_TAG=chaos-%s-w", r->runid);
    size_t ml = strlen(mark), tl = strlen(tagp);
    ssize_t len = proc_environ(pid, buf, sizeof(buf));
    if (len <= 0)
        return false;
    bool marked = false;
    *t = (tproc){.pid = pid, .worker = -1};
    for (char *e = buf; e < buf + len; e += strlen(e) + 1) {
        if (strncmp(e, mark, ml) == 0 && e[ml] == 0)
            marked = true;
        else if (strncmp(e, tagp, tl) == 0) {
            unsigned w, att;
            uint64_t task;
            if (sscanf(e + tl, "%u/%" SCNu64 "/%u", &w, &task, &att) == 3) {
                t->worker = (int)w;
                t->task = task;
                t->attempt = att;
                marked = true;
            }
        }
    }
    return marked;
}

/* Whether pid runs this binary: a worker's child between fork and exec still has the
 * worker's environment and is not a task process yet. */
static bool runs_exe(run *r, pid_t pid)
{
    char p[64], exe[PATH_MAX];
    snprintf(p, sizeof(p), "/proc/%d/exe", (int)pid);
    ssize_t el = readlink(p, exe, sizeof(exe) - 1);
    if (el <= 0)
        return false;
    exe[el] = 0;
    return strcmp(exe, r->exe) == 0;
}

size_t daemon_scan_tasks(run *r, tproc **out)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    size_t n = 0, cap = 0;
    tproc *v = NULL;
    while (d && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        tproc t;
        if (pid == getpid() || !proc_live(pid) || !proc_marked(r, pid, &t) ||
            is_daemon_pid(r, pid))
            continue;
        if (t.worker < 0 && runs_exe(r, pid))
            continue;
        if (!tn_grow((void **)&v, &cap, n + 1, sizeof(*v)))
            break;
        v[n++] = t;
    }
    if (d)
        closedir(d);
    *out = v;
    return n;
}

void daemon_kill_tasks(run *r, bool report)
{
    tproc *ps = NULL;
    size_t np = daemon_scan_tasks(r, &ps);
    for (size_t i = 0; i < np; i++) {
        if (report)
            chaos_violation(r, 4, 0, ps[i].task, ps[i].attempt,
                            "pid %d (w%d) survived the stop "
                            "of every worker",
                            (int)ps[i].pid, ps[i].worker);
        kill(ps[i].pid, SIGKILL);
    }
    free(ps);
}

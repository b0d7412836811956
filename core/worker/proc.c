/* Task attempts as contained processes: spawn into a cgroup v2 or a new session, reap as
 * a child subreaper, and kill every process of an attempt (TERM, grace, KILL, verify). */
#include "proc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

extern char **environ;

#define COMP "proc"
#define TAG_VAR "TERN_ATTEMPT_TAG"
#define NAME_MAX_LEN 64
#define CG_DEPTH_MAX 16          /* sub-cgroups a task may nest, walked when listing */
#define CG_PROCS_MAX (1u << 20)  /* pids read from one cgroup tree */
#define ENVIRON_MAX (1u << 20)   /* bytes of /proc/<pid>/environ read when looking for tags */
#define STOP_ROUNDS_MAX 64       /* session kill: SIGSTOP rounds until a scan finds nobody new */
#define FREEZE_WAIT_NS (50 * 1000000LL) /* how long a freeze may take before we go on */
#define POLL_NS (10 * 1000000LL) /* tick period wanted while a kill is being verified */
#define EXIT_POLL_NS (2 * 1000000LL) /* tick period to notice exits when there is no pidfd */
#define NS_PER_MS 1000000LL
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* ---------------------------------------------------------------------------------- */
/* Small sets of pids */

typedef struct pidarr {
    pid_t *v;
    size_t n, cap;
} pidarr;

static bool pidarr_push(pidarr *a, pid_t pid)
{
    if (a->n == a->cap) {
        if (a->cap >= CG_PROCS_MAX)
            return false;
        size_t cap = a->cap ? a->cap * 2 : 64;
        pid_t *v = realloc(a->v, cap * sizeof(*v));
        if (!v)
            return false;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = pid;
    return true;
}

static void pidarr_fini(pidarr *a)
{
    free(a->v);
    *a = (pidarr){0};
}

/* Processes by identity, sorted by pid. A start time of 0 matches any. */
typedef struct pidset {
    tn_pid_ident *v;
    uint32_t n, cap;
} pidset;

static uint32_t pidset_lower(const pidset *s, pid_t pid)
{
    uint32_t lo = 0, hi = s->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool ident_match(const tn_pid_ident *a, pid_t pid, uint64_t start)
{
    return a->pid == pid && (a->start_ticks == 0 || start == 0 || a->start_ticks == start);
}

static bool pidset_has(const pidset *s, pid_t pid, uint64_t start)
{
    uint32_t i = pidset_lower(s, pid);
    return i < s->n && ident_match(&s->v[i], pid, start);
}

/* Adds or refreshes (a reused pid replaces the old identity). false: out of memory. */
static bool pidset_put(pidset *s, pid_t pid, uint64_t start)
{
    uint32_t i = pidset_lower(s, pid);
    if (i < s->n && s->v[i].pid == pid) {
        s->v[i].start_ticks = start;
        return true;
    }
    if (s->n == s->cap) {
        if (s->cap >= CG_PROCS_MAX)
            return false;
        uint32_t cap = s->cap ? s->cap * 2 : 32;
        tn_pid_ident *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return false;
        s->v = v;
        s->cap = cap;
    }
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
    s->v[i] = (tn_pid_ident){.pid = pid, .start_ticks = start};
    s->n++;
    return true;
}

static void pidset_fini(pidset *s)
{
    free(s->v);
    *s = (pidset){0};
}

/* ---------------------------------------------------------------------------------- */
/* Files */

/* Reads up to cap-1 bytes and NUL-terminates. Returns the length, or -1 with errno. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            (void)close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    (void)close(fd);
    return (ssize_t)len;
}

/* Reads a whole file into *buf (grown, up to max bytes). Returns length or -1. */
static ssize_t read_grow(const char *path, char **buf, size_t *cap, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (len + 1 >= *cap) {
            if (*cap >= max)
                break;
            size_t ncap = *cap ? *cap * 2 : 4096;
            char *nb = realloc(*buf, ncap);
            if (!nb) {
                (void)close(fd);
                errno = ENOMEM;
                return -1;
            }
            *buf = nb;
            *cap = ncap;
        }
        ssize_t r = read(fd, *buf + len, *cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            (void)close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    (*buf)[len] = '\0';
    (void)close(fd);
    return (ssize_t)len;
}

/* Writes a short string in one write(2). Returns 0 or an errno value. */
static int write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno;
    size_t n = strlen(s);
    ssize_t w;
    do {
        w = write(fd, s, n);
    } while (w < 0 && errno == EINTR);
    int e = w < 0 ? errno : (size_t)w != n ? EIO : 0;
    (void)close(fd);
    return e;
}

/* snprintf for messages and paths where truncation is acceptable (bounded text). */
static void __attribute__((format(printf, 3, 4))) sfmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    (void)vsnprintf(buf, len, f, ap);
    va_end(ap);
}

static char *path_join(const char *a, const char *b)
{
    char *s;
    if (asprintf(&s, "%s/%s", a, b) < 0)
        return NULL;
    return s;
}

static int write_at(const char *dir, const char *file, const char *s)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return ENAMETOOLONG;
    return write_str(path, s);
}

static bool exists_at(const char *dir, const char *file)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return false;
    return access(path, F_OK) == 0;
}

/* Moves an fd above stdio so dup2 onto 0-2 in the child never meets itself. */
static int fd_high(int fd)
{
    if (fd < 0 || fd > 2)
        return fd;
    int h = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = errno;
    (void)close(fd);
    errno = e;
    return h;
}

/* ---------------------------------------------------------------------------------- */
/* /proc */

typedef struct pinfo {
    pid_t pid, ppid, pgid, sid;
    uint64_t start;
    char state;
} pinfo;

static bool parse_stat(const char *buf, pinfo *pi)
{
    const char *rp = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
    if (!rp || rp[1] != ' ')
        return false;
    const char *s = rp + 2;
    pi->state = *s;
    char *end;
    long f[20];
    s++;
    /* fields 4 (ppid) .. 22 (starttime) */
    for (int i = 4; i <= 22; i++) {
        while (*s == ' ')
            s++;
        errno = 0;
        if (i == 22) {
            unsigned long long v = strtoull(s, &end, 10);
            if (end == s || errno)
                return false;
            pi->start = v;
            break;
        }
        long v = strtol(s, &end, 10);
        if (end == s)
            return false;
        f[i - 4] = v;
        s = end;
    }
    pi->ppid = (pid_t)f[0];
    pi->pgid = (pid_t)f[1];
    pi->sid = (pid_t)f[2];
    return true;
}

static bool read_stat(pid_t pid, pinfo *pi)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof(buf)) <= 0)
        return false;
    pi->pid = pid;
    return parse_stat(buf, pi);
}

/* Alive means: this very process (pid and start) exists and is not a zombie. */
static bool ident_alive(pid_t pid, uint64_t start, char *state)
{
    pinfo pi;
    if (!read_stat(pid, &pi) || (start && pi.start != start) || pi.state == 'Z' ||
        pi.state == 'X')
        return false;
    if (state)
        *state = pi.state;
    return true;
}

/* Every process on the host, sorted by pid (the /proc order). */
typedef struct pscan {
    pinfo *v;
    size_t n, cap;
    uint8_t *mark;
    size_t mark_cap;
} pscan;

static int pid_cmp(const void *a, const void *b)
{
    pid_t x = ((const pinfo *)a)->pid, y = ((const pinfo *)b)->pid;
    return (x > y) - (x < y);
}

static bool scan_all(pscan *sc)
{
    DIR *d = opendir("/proc");
    if (!d)
        return false;
    sc->n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        long pid = strtol(de->d_name, NULL, 10);
        pinfo pi;
        if (pid <= 0 || !read_stat((pid_t)pid, &pi))
            continue;
        if (pi.pid == 2 || pi.ppid == 2) /* kernel threads */
            continue;
        if (sc->n == sc->cap) {
            size_t cap = sc->cap ? sc->cap * 2 : 1024;
            pinfo *v = realloc(sc->v, cap * sizeof(*v));
            if (!v) {
                (void)closedir(d);
                return false;
            }
            sc->v = v;
            sc->cap = cap;
        }
        sc->v[sc->n++] = pi;
    }
    (void)closedir(d);
    qsort(sc->v, sc->n, sizeof(*sc->v), pid_cmp);
    if (sc->mark_cap < sc->n) {
        uint8_t *m = realloc(sc->mark, sc->n);
        if (!m)
            return false;
        sc->mark = m;
        sc->mark_cap = sc->n;
    }
    return true;
}

static const pinfo *scan_find(const pscan *sc, pid_t pid, size_t *idx)
{
    size_t lo = 0, hi = sc->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sc->v[mid].pid < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < sc->n && sc->v[lo].pid == pid) {
        if (idx)
            *idx = lo;
        return &sc->v[lo];
    }
    return NULL;
}

/* Marks every live, unmarked process whose parent is marked, until nothing changes. */
static void scan_mark_descendants(pscan *sc, pid_t self)
{
    bool changed = true;
    for (int round = 0; changed && round < 4096; round++) {
        changed = false;
        for (size_t i = 0; i < sc->n; i++) {
            const pinfo *pi = &sc->v[i];
            if (sc->mark[i] || pi->state == 'Z' || pi->pid == self)
                continue;
            size_t j;
            if (scan_find(sc, pi->ppid, &j) && sc->mark[j]) {
                sc->mark[i] = 1;
                changed = true;
            }
        }
    }
}

/* Looks for TERN_ATTEMPT_TAG=<name>/<task>/<attempt> in a process's environment. */
static bool env_tag(pid_t pid, const char *name, char **buf, size_t *cap, uint64_t *task,
                    uint32_t *attempt)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    ssize_t len = read_grow(path, buf, cap, ENVIRON_MAX);
    if (len <= 0)
        return false;
    const char *s = *buf, *end = *buf + len;
    size_t vl = strlen(TAG_VAR), nl = strlen(name);
    while (s < end) {
        size_t el = strnlen(s, (size_t)(end - s));
        if (el > vl + 1 + nl + 1 && memcmp(s, TAG_VAR "=", vl + 1) == 0 &&
            memcmp(s + vl + 1, name, nl) == 0 && s[vl + 1 + nl] == '/') {
            unsigned long long t;
            unsigned a;
            char extra;
            char val[96];
            size_t rl = el - (vl + 1 + nl + 1);
            if (rl >= sizeof(val))
                return false;
            memcpy(val, s + vl + 1 + nl + 1, rl);
            val[rl] = '\0';
            if (sscanf(val, "%llu/%u%c", &t, &a, &extra) != 2)
                return false;
            *task = t;
            *attempt = a;
            return true;
        }
        s += el + 1;
    }
    return false;
}

/* Signals one process by identity: a pidfd pins it, so a pid reused between the scan
 * and the signal is never hit. Returns true when the signal was delivered. */
static bool sig_one(pid_t pid, uint64_t start, int sig)
{
    if (pid <= 1 || pid == getpid())
        return false;
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        pinfo pi;
        bool ok = read_stat(pid, &pi) && (!start || pi.start == start);
        if (ok)
            ok = syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0;
        (void)close(fd);
        return ok;
    }
    if (errno != ENOSYS)
        return false;
#endif
    pinfo pi;
    if (!read_stat(pid, &pi) || (start && pi.start != start))
        return false;
    return kill(pid, sig) == 0;
}

/* ---------------------------------------------------------------------------------- */
/* cgroups */

/* Appends the pids of a cgroup and its sub-cgroups. */
static void cg_list(const char *dir, pidarr *out, int depth)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
        return;
    char *buf = NULL;
    size_t cap = 0;
    if (read_grow(path, &buf, &cap, 16u << 20) > 0) {
        for (char *s = buf, *end; *s; s = end) {
            long v = strtol(s, &end, 10);
            if (end == s)
                break;
            if (v > 0 && !pidarr_push(out, (pid_t)v))
                break;
        }
    }
    free(buf);
    if (depth >= CG_DEPTH_MAX)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
            cg_list(path, out, depth + 1);
    }
    (void)closedir(d);
}

/* 1 populated, 0 empty (or gone), -1 unknown. */
static int cg_populated(const char *dir)
{
    char path[4096], buf[256];
    if (snprintf(path, sizeof(path), "%s/cgroup.events", dir) >= (int)sizeof(path))
        return -1;
    if (read_small(path, buf, sizeof(buf)) < 0)
        return errno == ENOENT ? 0 : -1;
    const char *s = strstr(buf, "populated ");
    return s ? s[10] == '1' : -1;
}

/* v1 hierarchies have no cgroup.events: empty when cgroup.procs lists nobody. */
static bool cg1_empty(const char *dir)
{
    pidarr a = {0};
    cg_list(dir, &a, 0);
    bool empty = a.n == 0;
    pidarr_fini(&a);
    return empty;
}

static bool cg_frozen(const char *dir)
{
    char path[4096], buf[256];
    if (snprintf(path, sizeof(path), "%s/cgroup.events", dir) >= (int)sizeof(path))
        return false;
    if (read_small(path, buf, sizeof(buf)) < 0)
        return false;
    const char *s = strstr(buf, "frozen ");
    return s && s[7] == '1';
}

/* Freezes and waits a bounded time for it to take: a task in uninterruptible sleep
 * freezes only when it leaves it, and we do not wait for that. */
static bool cg_freeze(const char *dir)
{
    if (write_at(dir, "cgroup.freeze", "1") != 0)
        return false;
    int64_t until = tn_mono_ns() + FREEZE_WAIT_NS;
    while (!cg_frozen(dir)) {
        if (tn_mono_ns() >= until)
            return false;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Removes a cgroup and its sub-cgroups, deepest first. Returns 0 or an errno value. */
static int cg_rmdir_tree(const char *dir, int depth)
{
    if (rmdir(dir) == 0 || errno == ENOENT) /* the usual case: no sub-cgroups */
        return 0;
    if (depth < CG_DEPTH_MAX) {
        DIR *d = opendir(dir);
        if (!d)
            return errno == ENOENT ? 0 : errno;
        struct dirent *de;
        char path[4096];
        while ((de = readdir(d))) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue;
            if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
                (void)cg_rmdir_tree(path, depth + 1);
        }
        (void)closedir(d);
    }
    if (rmdir(dir) != 0 && errno != ENOENT)
        return errno;
    return 0;
}

static bool parse_task_dir(const char *name, uint64_t *task, uint32_t *attempt)
{
    unsigned long long t;
    unsigned a;
    int n = 0;
    if (sscanf(name, "task-%llu-%u%n", &t, &a, &n) != 2 || name[n] != '\0')
        return false;
    *task = t;
    *attempt = a;
    return true;
}

/* Mount point of the first mount of `fstype` (and, for v1, carrying controller `ctrl`),
 * with the mount's root in the hierarchy. From /proc/self/mountinfo. */
static bool find_mount(const char *fstype, const char *ctrl, char *mnt, size_t mlen,
                       char *root, size_t rlen)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = '\0';
        char fs[64], opts[1024];
        if (sscanf(sep + 3, "%63s %*s %1023s", fs, opts) != 2 || strcmp(fs, fstype) != 0)
            continue;
        if (ctrl) {
            bool has = false;
            for (char *sv, *tok = strtok_r(opts, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv))
                has = has || strcmp(tok, ctrl) == 0;
            if (!has)
                continue;
        }
        char r[4096], m[4096];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", r, m) != 2)
            continue;
        /* mountinfo escapes space, tab, newline and backslash as \ooo */
        char *mp[2] = {r, m};
        for (int k = 0; k < 2; k++) {
            char *w = mp[k];
            for (const char *s = mp[k]; *s; s++) {
                if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
                    *w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
                    s += 3;
                } else {
                    *w++ = *s;
                }
            }
            *w = '\0';
        }
        if (strlen(m) >= mlen || strlen(r) >= rlen)
            continue;
        strcpy(mnt, m);
        strcpy(root, r);
        found = true;
    }
    free(line);
    (void)fclose(f);
    return found;
}

/* This process's path in the v1 hierarchy that carries `ctrl` (/proc/self/cgroup). */
static bool own_v1_path(const char *ctrl, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        for (char *sv, *tok = strtok_r(c1 + 1, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
            if (strcmp(tok, ctrl) == 0 && strlen(c2 + 1) < len) {
                strcpy(out, c2 + 1);
                found = true;
                break;
            }
        }
    }
    free(line);
    (void)fclose(f);
    return found;
}

/* ---------------------------------------------------------------------------------- */
/* The manager and its attempts */

typedef enum { LIM_NONE, LIM_V2, LIM_V1 } lim_kind;
typedef enum { K_NONE, K_TERM, K_KILL, K_DONE } kill_stage;

struct tn_proc {
    tn_proc *next, *prev;
    tn_procs *mgr;
    uint64_t task;
    uint32_t attempt;
    pid_t pid;
    uint64_t start;
    tn_contain_mode mode;
    char *cg;     /* v2 task cgroup, or NULL */
    char *cg_mem; /* v1 memory cgroup, or NULL */
    char *cg_cpu; /* v1 cpu cgroup, or NULL (or the same path as cg_mem) */
    char note[256];
    int status;
    bool leader_exited;
    bool killed;      /* a kill was asked before the leader exited */
    kill_stage stage;
    int64_t deadline; /* K_TERM: when to send SIGKILL */
    uint32_t leftovers;
    pidset seen;    /* session: members found by the last scan */
    pidset sig;     /* every process signalled */
    pidset stopped; /* session: SIGSTOPped before the SIGKILL */
    int pidfd;      /* the leader until it is reaped, watched in mgr->epfd; or -1 */
    bool has_report;
    tn_kill_report rep;
    uint32_t pcap, scap; /* capacities of rep.pids, rep.survivor_pids */
    bool finished, reported, detached;
};

struct tn_procs {
    pthread_mutex_t mu;
    char name[NAME_MAX_LEN + 1];
    tn_contain_mode mode;
    char *root;   /* cgroup mode: the worker's sub-tree */
    bool has_kill, has_freeze;
    lim_kind lim_mem, lim_cpu;
    char *v1_mem, *v1_cpu; /* the worker's v1 sub-trees, when LIM_V1 */
    char *parents[3];      /* shared "tern" dirs we found or made: removed when empty */
    char lim_why[160];     /* why a limit kind is unsupported */
    int64_t leftover_grace_ns, verify_ns;
    tn_proc *head;
    uint32_t live;
    uint64_t swept_total, adopted_total;
    int64_t last_scan;
    pid_t self;
    pscan scan;
    char *envbuf;
    size_t envcap;
    int epfd;    /* the leaders' pidfds (tn_procs_wait_fd), or -1 */
    void *stack; /* spawn_clone's child stack, made on first use */
    bool no_clone3; /* the kernel refused clone3 with CLONE_INTO_CGROUP */
};

const char *tn_contain_mode_name(tn_contain_mode m)
{
    return m == TN_CONTAIN_CGROUP ? "cgroup" : "session";
}

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NAME_MAX_LEN || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool is_cgroup2(const char *dir)
{
    struct statfs sf;
    return statfs(dir, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

/* mkdir -p <parent>/<name>. A worker stopping at the same moment may remove the shared
 * parent between the two steps (it removes it when empty): so try twice. */
static int make_subtree(const char *parent, const char *sub)
{
    int e = 0;
    for (int tries = 0; tries < 2; tries++) {
        if (tn_mkdir_p(parent) != 0)
            return errno;
        char *w = path_join(parent, sub);
        if (!w)
            return ENOMEM;
        e = mkdir(w, 0755) == 0 || errno == EEXIST ? 0 : errno;
        free(w);
        if (e != ENOENT)
            break;
    }
    return e;
}

/* Makes <root>/<name> and checks it can hold task cgroups. */
static bool setup_v2(tn_procs *p, const char *root, char *why, size_t wlen)
{
    /* check before creating anything: root, or the directory it would be made in */
    char at[4096];
    sfmt(at, sizeof(at), "%s", root);
    if (access(at, F_OK) != 0 && strrchr(at, '/') && strrchr(at, '/') != at)
        *strrchr(at, '/') = '\0';
    if (!is_cgroup2(at)) {
        sfmt(why, wlen, "%s is not on a cgroup2 file system", at);
        return false;
    }
    int e = make_subtree(root, p->name);
    if (e) {
        sfmt(why, wlen, "cannot create %s/%s: %s", root, p->name, strerror(e));
        return false;
    }
    char *w = path_join(root, p->name);
    if (!w) {
        sfmt(why, wlen, "out of memory");
        return false;
    }
    char procs[4096];
    sfmt(procs, sizeof(procs), "%s/cgroup.procs", w);
    if (access(procs, W_OK) != 0 || !exists_at(w, "cgroup.events")) {
        sfmt(why, wlen, "%s: cgroup.procs not writable or no cgroup.events", w);
        free(w);
        return false;
    }
    p->root = w;
    p->has_kill = exists_at(w, "cgroup.kill");
    p->has_freeze = exists_at(w, "cgroup.freeze");
    /* v2 limits: enable the controller on the two levels we own, if the parent offers it */
    const char *ctrls[2] = {"memory", "cpu"};
    lim_kind *kinds[2] = {&p->lim_mem, &p->lim_cpu};
    char buf[512];
    sfmt(procs, sizeof(procs), "%s/cgroup.controllers", root);
    if (read_small(procs, buf, sizeof(buf)) > 0) {
        for (int i = 0; i < 2; i++) {
            char on[16], tok[16];
            snprintf(on, sizeof(on), "+%s", ctrls[i]);
            snprintf(tok, sizeof(tok), " %s ", ctrls[i]);
            char padded[520];
            sfmt(padded, sizeof(padded), " %s ", buf);
            padded[strcspn(padded, "\n")] = ' ';
            if (!strstr(padded, tok))
                continue;
            if (write_at(root, "cgroup.subtree_control", on) == 0 &&
                write_at(w, "cgroup.subtree_control", on) == 0)
                *kinds[i] = LIM_V2;
        }
    }
    return true;
}

/* v1 memory or cpu hierarchy: <mount>/<own path>/tern/<name>, when writable. The "tern"
 * parent goes to *parent. */
static char *setup_v1(const tn_procs *p, const char *ctrl, const char *probe, char **parent)
{
    char mnt[4096], mroot[4096], own[4096];
    if (!find_mount("cgroup", ctrl, mnt, sizeof(mnt), mroot, sizeof(mroot)) ||
        !own_v1_path(ctrl, own, sizeof(own)))
        return NULL;
    const char *rel = own;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") != 0 && strncmp(own, mroot, rl) == 0)
        rel = own + rl;
    size_t len = strlen(rel);
    char *top, *dir;
    if (asprintf(&top, "%s%s%stern", mnt, rel, len && rel[len - 1] == '/' ? "" : "/") < 0)
        return NULL;
    if (make_subtree(top, p->name) != 0 || !(dir = path_join(top, p->name))) {
        free(top);
        return NULL;
    }
    *parent = top;
    if (!exists_at(dir, probe)) {
        free(dir);
        return NULL;
    }
    char path[4096];
    sfmt(path, sizeof(path), "%s/%s", dir, probe);
    if (access(path, W_OK) != 0) {
        free(dir);
        return NULL;
    }
    return dir;
}

tn_err tn_procs_new(const tn_proc_opts *o, tn_procs **out, tn_errmsg *msg)
{
    if (!o || !out || !valid_name(o->name))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "worker name \"%s\" is invalid: use 1-64 of A-Z a-z 0-9 . _ -",
                             o && o->name ? o->name : "(null)");
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        return tn_errmsg_set(msg, TN_ERR_UNSUPPORTED,
                             "prctl(PR_SET_CHILD_SUBREAPER): %s: tern needs Linux 3.4 or later",
                             strerror(errno));
    struct sigaction sa;
    if (sigaction(SIGCHLD, NULL, &sa) == 0 &&
        (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT))) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigemptyset(&dfl.sa_mask);
        (void)sigaction(SIGCHLD, &dfl, NULL);
        tn_warn(COMP, "msg=\"SIGCHLD was ignored; reset to default so exits can be reaped\"");
    }

    tn_procs *p = calloc(1, sizeof(*p));
    if (!p)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    p->epfd = epoll_create1(EPOLL_CLOEXEC); /* -1: exits are noticed by ticking */
    strcpy(p->name, o->name);
    p->self = getpid();
    p->leftover_grace_ns = (int64_t)(o->leftover_grace_ms ? o->leftover_grace_ms : 1000) *
                           NS_PER_MS;
    p->verify_ns = (int64_t)(o->verify_ms ? o->verify_ms : 5000) * NS_PER_MS;
    p->mode = TN_CONTAIN_SESSION;

    bool no_cgroups = o->cgroup_root && o->cgroup_root[0] == '\0';
    char why[512] = "";
    if (no_cgroups) {
        snprintf(p->lim_why, sizeof(p->lim_why), "cgroups disabled by configuration");
    } else {
        char root[4096];
        bool have = true;
        if (o->cgroup_root) {
            sfmt(root, sizeof(root), "%s", o->cgroup_root);
        } else {
            char mnt[4096], mroot[4096];
            have = find_mount("cgroup2", NULL, mnt, sizeof(mnt), mroot, sizeof(mroot));
            if (have) {
                sfmt(root, sizeof(root), "%s/tern", mnt);
                p->parents[0] = strdup(root);
            } else
                sfmt(why, sizeof(why), "no cgroup2 mount in /proc/self/mountinfo");
        }
        if (have && setup_v2(p, root, why, sizeof(why)))
            p->mode = TN_CONTAIN_CGROUP;
        if (p->mode != TN_CONTAIN_CGROUP && o->cgroup_root) {
            tn_err err = tn_errmsg_set(msg, TN_ERR_UNSUPPORTED,
                                       "cgroup_root %s unusable: %s: fix the path, or set it "
                                       "to \"\" for session containment",
                                       o->cgroup_root, why);
            tn_procs_free(p);
            return err;
        }
        if (p->lim_mem == LIM_NONE &&
            (p->v1_mem = setup_v1(p, "memory", "memory.limit_in_bytes", &p->parents[1])))
            p->lim_mem = LIM_V1;
        if (p->lim_cpu == LIM_NONE &&
            (p->v1_cpu = setup_v1(p, "cpu", "cpu.cfs_quota_us", &p->parents[2])))
            p->lim_cpu = LIM_V1;
        snprintf(p->lim_why, sizeof(p->lim_why),
                 "no writable memory/cpu controller in cgroup2 or cgroup v1");
    }
    if (p->mode == TN_CONTAIN_SESSION && !no_cgroups)
        tn_info(COMP, "msg=\"cgroup v2 unusable, session containment\" why=\"%s\"", why);
    static const char *const lim_names[] = {"none", "v2", "v1"};
    tn_info(COMP,
            "msg=\"procs ready\" worker=%s mode=%s dir=%s kill=%s freeze=%s memory=%s cpu=%s",
            p->name, tn_contain_mode_name(p->mode), p->root ? p->root : "-",
            p->has_kill ? "cgroup.kill" : "signals", p->has_freeze ? "yes" : "no",
            lim_names[p->lim_mem], lim_names[p->lim_cpu]);
    *out = p;
    return TN_OK;
}

tn_contain_mode tn_procs_mode(const tn_procs *p) { return p->mode; }
int tn_procs_wait_fd(const tn_procs *p) { return p->epfd; }
const char *tn_procs_cgroup_dir(const tn_procs *p) { return p->root; }
pid_t tn_proc_pid(const tn_proc *t) { return t->pid; }
uint64_t tn_proc_task(const tn_proc *t) { return t->task; }
uint32_t tn_proc_attempt(const tn_proc *t) { return t->attempt; }
tn_contain_mode tn_proc_mode(const tn_proc *t) { return t->mode; }
const char *tn_proc_limits_note(const tn_proc *t) { return t->note; }

tn_pid_ident tn_proc_ident(const tn_proc *t)
{
    return (tn_pid_ident){.pid = t->pid, .start_ticks = t->start};
}

const tn_kill_report *tn_proc_kill_report(const tn_proc *t)
{
    return t && t->has_report ? &t->rep : NULL;
}

/* Watches the leader through a pidfd in p->epfd, so a loop can sleep until an exit. */
static void watch_leader(tn_procs *p, tn_proc *t)
{
#ifdef SYS_pidfd_open
    if (p->epfd < 0)
        return;
    int fd = (int)syscall(SYS_pidfd_open, t->pid, 0);
    if (fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        (void)close(fd);
        return;
    }
    t->pidfd = fd;
#else
    (void)p;
    (void)t;
#endif
}

/* Explicitly out of the epoll set: a forked copy of the fd would keep it there. */
static void unwatch_leader(tn_proc *t)
{
    if (t->pidfd < 0)
        return;
    (void)epoll_ctl(t->mgr->epfd, EPOLL_CTL_DEL, t->pidfd, NULL);
    (void)close(t->pidfd);
    t->pidfd = -1;
}

static void proc_destroy(tn_proc *t)
{
    if (!t)
        return;
    unwatch_leader(t);
    free(t->cg);
    if (t->cg_cpu != t->cg_mem)
        free(t->cg_cpu);
    free(t->cg_mem);
    pidset_fini(&t->seen);
    pidset_fini(&t->sig);
    pidset_fini(&t->stopped);
    free(t->rep.pids);
    free(t->rep.survivor_pids);
    free(t->rep.survivor_states);
    free(t);
}

static void unlink_proc(tn_procs *p, tn_proc *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        p->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
}

static tn_proc *find_attempt(tn_procs *p, uint64_t task, uint32_t attempt)
{
    for (tn_proc *t = p->head; t; t = t->next)
        if (t->task == task && t->attempt == attempt && !t->finished)
            return t;
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Members of an attempt */

/* Session membership from the last scan; refreshes t->seen. Marks the members in
 * p->scan.mark and returns how many. */
static uint32_t session_members(tn_procs *p, tn_proc *t)
{
    pscan *sc = &p->scan;
    memset(sc->mark, 0, sc->n);
    /* The leader's pid is not reused while its session or group has members; if another
     * process holds it now, both are gone and the number means someone else. */
    const pinfo *holder = scan_find(sc, t->pid, NULL);
    bool sid_ok = !holder || holder->start == t->start;
    for (size_t i = 0; i < sc->n; i++) {
        const pinfo *pi = &sc->v[i];
        if (pi->state == 'Z' || pi->state == 'X' || pi->pid == p->self)
            continue;
        bool m = (sid_ok && (pi->sid == t->pid || pi->pgid == t->pid)) ||
                 (pi->pid == t->pid && pi->start == t->start) ||
                 pidset_has(&t->seen, pi->pid, pi->start);
        if (!m && pi->ppid == p->self) {
            /* an orphan re-parented to us: a leader of another attempt, or tagged */
            bool leader = false;
            for (tn_proc *o = p->head; o && !leader; o = o->next)
                leader = o->pid == pi->pid;
            uint64_t tt;
            uint32_t ta;
            m = !leader && env_tag(pi->pid, p->name, &p->envbuf, &p->envcap, &tt, &ta) &&
                tt == t->task && ta == t->attempt;
        }
        sc->mark[i] = m;
    }
    scan_mark_descendants(sc, p->self);
    uint32_t n = 0;
    t->seen.n = 0;
    for (size_t i = 0; i < sc->n; i++) {
        if (!sc->mark[i])
            continue;
        n++;
        if (!pidset_put(&t->seen, sc->v[i].pid, sc->v[i].start))
            break;
    }
    return n;
}

/* Live members by identity into ids. Session mode reads the last scan. */
static void members(tn_procs *p, tn_proc *t, pidset *ids)
{
    if (t->mode == TN_CONTAIN_CGROUP) {
        pidarr raw = {0};
        cg_list(t->cg, &raw, 0);
        for (size_t i = 0; i < raw.n; i++) {
            pinfo pi;
            if (read_stat(raw.v[i], &pi) && pi.state != 'Z')
                (void)pidset_put(ids, pi.pid, pi.start);
        }
        pidarr_fini(&raw);
        return;
    }
    (void)session_members(p, t);
    for (size_t i = 0; i < p->scan.n; i++)
        if (p->scan.mark[i])
            (void)pidset_put(ids, p->scan.v[i].pid, p->scan.v[i].start);
}

/* Empty: no live process of the attempt. cgroup mode trusts cgroup.events. */
static bool attempt_empty(tn_procs *p, tn_proc *t)
{
    if (t->mode == TN_CONTAIN_CGROUP)
        return cg_populated(t->cg) == 0;
    return session_members(p, t) == 0;
}

static void report_signalled(tn_proc *t, pid_t pid, uint64_t start)
{
    if (pidset_has(&t->sig, pid, start))
        return;
    (void)pidset_put(&t->sig, pid, start);
    t->rep.signalled++;
    if (t->rep.npids >= TN_PROC_REPORT_MAX)
        return;
    if (t->rep.npids == t->pcap) {
        uint32_t cap = t->pcap ? t->pcap * 2 : 32;
        pid_t *v = realloc(t->rep.pids, cap * sizeof(*v));
        if (!v)
            return;
        t->rep.pids = v;
        t->pcap = cap;
    }
    t->rep.pids[t->rep.npids++] = pid;
}

/* Sends sig to each identity in ids; records them in the report. Returns how many. */
static uint32_t signal_ids(tn_proc *t, const pidset *ids, int sig)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < ids->n; i++) {
        if (sig_one(ids->v[i].pid, ids->v[i].start_ticks, sig)) {
            report_signalled(t, ids->v[i].pid, ids->v[i].start_ticks);
            n++;
        }
    }
    return n;
}

static void fresh_scan(tn_procs *p, int64_t now)
{
    if (scan_all(&p->scan))
        p->last_scan = now;
}

/* ---------------------------------------------------------------------------------- */
/* The kill ladder */

static void kill_done(tn_proc *t, int64_t now, const pidset *left)
{
    t->stage = K_DONE;
    t->rep.done = true;
    t->rep.done_ns = now;
    t->rep.survivors = 0;
    uint32_t n = left ? left->n : 0;
    if (n) {
        uint32_t k = n < TN_PROC_REPORT_MAX ? n : TN_PROC_REPORT_MAX;
        t->rep.survivor_pids = calloc(k, sizeof(pid_t));
        t->rep.survivor_states = calloc(k + 1, 1);
        for (uint32_t i = 0; i < n; i++) {
            char st = '?';
            if (!ident_alive(left->v[i].pid, left->v[i].start_ticks, &st))
                continue;
            if (t->rep.survivor_pids && t->rep.survivors < k) {
                t->rep.survivor_pids[t->rep.survivors] = left->v[i].pid;
                t->rep.survivor_states[t->rep.survivors] = st;
            }
            t->rep.survivors++;
        }
    }
    char states[64] = "";
    if (t->rep.survivors && t->rep.survivor_states)
        snprintf(states, sizeof(states), "%.*s", (int)(sizeof(states) - 1),
                 t->rep.survivor_states);
    tn_logf(t->rep.survivors ? TN_LOG_WARN : TN_LOG_INFO, COMP,
            "msg=%s task=%" PRIu64 " attempt=%" PRIu32 " signalled=%" PRIu32
            " survivors=%" PRIu32 " states=\"%s\" escalated=%s ms=%" PRId64,
            t->rep.survivors ? "\"kill left survivors\"" : "killed", t->task, t->attempt,
            t->rep.signalled, t->rep.survivors, states, t->rep.escalated ? "yes" : "no",
            (int64_t)((now - t->rep.term_ns) / NS_PER_MS));
}

/* SIGKILL to every process of the attempt. cgroup: freeze (so the listing is complete),
 * list for the report, cgroup.kill, thaw. session: SIGSTOP members until a scan finds
 * nobody new (a stopped process cannot fork), then SIGKILL them all. */
static void do_kill(tn_procs *p, tn_proc *t, int64_t now)
{
    t->stage = K_KILL;
    t->rep.kill_ns = now;
    pidset ids = {0};
    if (t->mode == TN_CONTAIN_CGROUP) {
        if (p->has_freeze)
            (void)cg_freeze(t->cg);
        members(p, t, &ids);
        t->rep.escalated = ids.n > 0;
        if (p->has_kill && write_at(t->cg, "cgroup.kill", "1") == 0) {
            t->rep.cgroup_kill = true;
            for (uint32_t i = 0; i < ids.n; i++)
                report_signalled(t, ids.v[i].pid, ids.v[i].start_ticks);
        } else {
            (void)signal_ids(t, &ids, SIGKILL);
        }
        if (p->has_freeze)
            (void)write_at(t->cg, "cgroup.freeze", "0");
    } else {
        for (int round = 0; round < STOP_ROUNDS_MAX; round++) {
            fresh_scan(p, now);
            pidset cur = {0};
            members(p, t, &cur);
            uint32_t fresh = 0;
            for (uint32_t i = 0; i < cur.n; i++) {
                if (pidset_has(&t->stopped, cur.v[i].pid, cur.v[i].start_ticks))
                    continue;
                fresh++;
                if (sig_one(cur.v[i].pid, cur.v[i].start_ticks, SIGSTOP))
                    (void)pidset_put(&t->stopped, cur.v[i].pid, cur.v[i].start_ticks);
            }
            pidset_fini(&ids);
            ids = cur;
            if (!fresh)
                break;
        }
        t->rep.escalated = ids.n > 0;
        (void)signal_ids(t, &ids, SIGKILL);
    }
    tn_info(COMP, "msg=\"kill: SIGKILL\" task=%" PRIu64 " attempt=%" PRIu32 " processes=%" PRIu32
            " via=%s", t->task, t->attempt, ids.n, t->rep.cgroup_kill ? "cgroup.kill" : "signals");
    pidset_fini(&ids);
}

/* SIGTERM to a snapshot of the attempt (frozen in cgroup mode, so the snapshot is
 * complete). Processes a TERM handler starts during the grace are not TERMed: they are
 * the graceful shutdown; SIGKILL reaches them at the deadline. */
static void do_term(tn_procs *p, tn_proc *t, int64_t now)
{
    pidset ids = {0};
    if (t->mode == TN_CONTAIN_CGROUP) {
        if (p->has_freeze)
            (void)cg_freeze(t->cg);
        members(p, t, &ids);
        (void)signal_ids(t, &ids, SIGTERM);
        if (p->has_freeze)
            (void)write_at(t->cg, "cgroup.freeze", "0");
    } else {
        fresh_scan(p, now);
        members(p, t, &ids);
        (void)signal_ids(t, &ids, SIGTERM);
    }
    pidset_fini(&ids);
}

static void start_kill(tn_procs *p, tn_proc *t, int64_t grace_ns, int64_t now)
{
    if (t->stage == K_TERM) {
        if (now + grace_ns < t->deadline)
            t->deadline = now + grace_ns;
        if (grace_ns == 0)
            do_kill(p, t, now);
        return;
    }
    if (t->stage != K_NONE)
        return;
    t->has_report = true;
    t->stage = K_TERM;
    t->rep.term_ns = now;
    t->deadline = now + grace_ns;
    if (grace_ns == 0) {
        do_kill(p, t, now);
        return;
    }
    do_term(p, t, now);
    tn_info(COMP, "msg=\"kill: SIGTERM\" task=%" PRIu64 " attempt=%" PRIu32 " signalled=%" PRIu32
            " grace_ms=%" PRId64, t->task, t->attempt, t->rep.signalled,
            (int64_t)(grace_ns / NS_PER_MS));
}

/* ---------------------------------------------------------------------------------- */
/* Reaping and the per-attempt state machine */

static void reap_children(tn_procs *p)
{
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, WNOHANG);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        tn_proc *t = p->head;
        while (t && !(t->pid == w && !t->leader_exited))
            t = t->next;
        if (!t) {
            tn_debug(COMP, "msg=\"reaped orphan\" pid=%d", (int)w);
            continue;
        }
        t->leader_exited = true;
        t->status = st;
        unwatch_leader(t);
    }
}

static void finalize(tn_procs *p, tn_proc *t)
{
    int e = 0;
    if (t->cg && (e = cg_rmdir_tree(t->cg, 0)) != 0)
        tn_warn(COMP, "msg=\"cannot remove task cgroup; left to the sweeper\" path=%s err=\"%s\"",
                t->cg, strerror(e));
    if (t->cg_mem)
        (void)cg_rmdir_tree(t->cg_mem, 0);
    if (t->cg_cpu && t->cg_cpu != t->cg_mem)
        (void)cg_rmdir_tree(t->cg_cpu, 0);
    t->finished = true;
    p->live--;
    int st = t->status;
    tn_info(COMP, "msg=finished task=%" PRIu64 " attempt=%" PRIu32 " pid=%d exit=%d signal=%d"
            " killed=%s leftovers=%" PRIu32, t->task, t->attempt, (int)t->pid,
            WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0,
            t->killed ? "yes" : "no", t->leftovers);
}

static bool needs_scan(const tn_procs *p, int64_t now)
{
    if (p->mode != TN_CONTAIN_SESSION)
        return false;
    bool live = false;
    for (const tn_proc *t = p->head; t; t = t->next) {
        if (t->finished)
            continue;
        live = true;
        if (t->leader_exited || t->stage == K_TERM || t->stage == K_KILL)
            return true;
    }
    return live && now - p->last_scan >= TN_PROC_SCAN_MS * NS_PER_MS;
}

static void step(tn_procs *p, int64_t now)
{
    reap_children(p);
    bool scanned = false;
    if (needs_scan(p, now)) {
        fresh_scan(p, now);
        scanned = true;
    }
    for (tn_proc *t = p->head, *next; t; t = next) {
        next = t->next;
        if (t->finished)
            goto maybe_free;
        if (t->mode == TN_CONTAIN_SESSION && !scanned)
            continue;
        switch (t->stage) {
        case K_NONE: {
            /* cgroup: nothing to look at before the leader exits (this read of every
             * running attempt's cgroup.events on every tick was most of a busy worker's
             * loop); session: this look also refreshes t->seen for later attribution */
            if (t->mode == TN_CONTAIN_CGROUP && !t->leader_exited)
                break;
            bool empty = attempt_empty(p, t);
            if (t->leader_exited && !empty) {
                pidset ids = {0};
                members(p, t, &ids);
                t->leftovers = ids.n;
                pidset_fini(&ids);
                tn_info(COMP, "msg=\"leader exited, killing leftovers\" task=%" PRIu64
                        " attempt=%" PRIu32 " leftovers=%" PRIu32, t->task, t->attempt,
                        t->leftovers);
                start_kill(p, t, p->leftover_grace_ns, now);
            } else if (t->leader_exited) {
                finalize(p, t);
            }
            break;
        }
        case K_TERM:
            if (attempt_empty(p, t))
                kill_done(t, now, NULL);
            else if (now >= t->deadline)
                do_kill(p, t, now);
            break;
        case K_KILL: {
            if (attempt_empty(p, t)) {
                kill_done(t, now, NULL);
                break;
            }
            /* stragglers: a member that appeared since (none should), or a D state */
            pidset ids = {0};
            members(p, t, &ids);
            if (now - t->rep.kill_ns >= p->verify_ns) {
                kill_done(t, now, &ids);
            } else if (t->mode == TN_CONTAIN_CGROUP && p->has_kill) {
                (void)write_at(t->cg, "cgroup.kill", "1");
            } else {
                (void)signal_ids(t, &ids, SIGKILL);
            }
            pidset_fini(&ids);
            break;
        }
        case K_DONE:
            break;
        }
        if (t->leader_exited && t->stage == K_DONE && !t->finished)
            finalize(p, t);
    maybe_free:
        if (t->finished && t->detached) {
            unlink_proc(p, t);
            proc_destroy(t);
        }
    }
}

void tn_procs_tick(tn_procs *p, int64_t now_mono_ns)
{
    pthread_mutex_lock(&p->mu);
    step(p, now_mono_ns);
    pthread_mutex_unlock(&p->mu);
}

int64_t tn_procs_next_tick(tn_procs *p)
{
    pthread_mutex_lock(&p->mu);
    int64_t next = 0, now = tn_mono_ns();
    for (const tn_proc *t = p->head; t; t = t->next) {
        if (t->finished)
            continue;
        int64_t at;
        if (t->stage == K_TERM)
            at = t->deadline < now + POLL_NS ? t->deadline : now + POLL_NS;
        else if (t->stage == K_KILL || t->leader_exited)
            at = now + POLL_NS;
        else if (t->pidfd < 0)
            at = now + EXIT_POLL_NS; /* its exit shows only by polling */
        else if (t->mode == TN_CONTAIN_SESSION)
            at = p->last_scan + TN_PROC_SCAN_MS * NS_PER_MS;
        else
            continue; /* cgroup mode, running: nothing until its pidfd is readable */
        if (!next || at < next)
            next = at;
    }
    pthread_mutex_unlock(&p->mu);
    return next;
}

size_t tn_procs_reap(tn_procs *p, tn_proc_exit *out, size_t max)
{
    pthread_mutex_lock(&p->mu);
    step(p, tn_mono_ns());
    size_t n = 0;
    for (tn_proc *t = p->head; t && n < max; t = t->next) {
        if (!t->finished || t->reported || t->detached)
            continue;
        t->reported = true;
        out[n++] = (tn_proc_exit){.task = t->task,
                                  .attempt = t->attempt,
                                  .status = t->status,
                                  .killed = t->killed,
                                  .leftovers = t->leftovers,
                                  .survivors = t->rep.survivors,
                                  .proc = t};
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

tn_err tn_proc_kill(tn_procs *p, tn_proc *t, uint64_t grace_ms)
{
    if (!p || !t || t->mgr != p)
        return TN_ERR_INVAL;
    pthread_mutex_lock(&p->mu);
    if (!t->finished) {
        if (!t->leader_exited)
            t->killed = true;
        int64_t grace = grace_ms > INT64_MAX / NS_PER_MS ? INT64_MAX / 2
                                                         : (int64_t)grace_ms * NS_PER_MS;
        start_kill(p, t, grace, tn_mono_ns());
    }
    pthread_mutex_unlock(&p->mu);
    return TN_OK;
}

void tn_proc_free(tn_proc *t)
{
    if (!t)
        return;
    tn_procs *p = t->mgr;
    pthread_mutex_lock(&p->mu);
    if (t->finished) {
        unlink_proc(p, t);
        proc_destroy(t);
    } else {
        t->detached = true;
        int64_t now = tn_mono_ns();
        if (t->stage == K_NONE || t->stage == K_TERM) {
            t->has_report = true;
            if (t->stage == K_NONE)
                t->rep.term_ns = now;
            do_kill(p, t, now);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------------------------------- */
/* Spawning */

enum { ST_CGROUP = 1, ST_SETSID, ST_DUP, ST_CHDIR, ST_GROUPS, ST_GID, ST_UID, ST_EXEC };
static const char *const stage_names[] = {"", "join cgroup", "setsid", "dup2", "chdir",
                                          "setgroups", "setgid", "setuid", "exec /bin/sh"};

typedef struct child_ctx {
    int nullfd, logfd;
    int cgdir;    /* the v2 task cgroup, joined at clone (CLONE_INTO_CGROUP); or -1 */
    int cgprocs;  /* its cgroup.procs, when the child joins by writing instead; or -1 */
    int cgfds[2]; /* v1 limit cgroups' cgroup.procs, joined by writing */
    int ncg;
    const char *exec_dir;
    bool set_user;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
    char *const *argv;
    char *const *envp;
    /* written by a child that fails, read by the parent once the child is gone */
    volatile int fail_stage, fail_errno;
} child_ctx;

/* The set*id calls as raw system calls: glibc's wrappers would signal every thread of
 * the parent, whose memory the child shares. */
#ifdef SYS_setgroups32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETGID SYS_setgid32
#define SYS_SETUID SYS_setuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETGID SYS_setgid
#define SYS_SETUID SYS_setuid
#endif

/* Runs in the child of spawn_clone, on its own stack in the parent's memory while the
 * parent waits: system calls only (no locks, no malloc), and not instrumented by ASan,
 * whose stack bookkeeping does not know this stack. Returns only on failure. */
__attribute__((no_sanitize_address)) static int child_run(void *arg)
{
    child_ctx *c = arg;
    int stage = ST_CGROUP;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        (void)sigaction(s, &dfl, NULL);
    if (c->cgprocs >= 0 && write(c->cgprocs, "0", 1) != 1)
        goto fail;
    for (int i = 0; i < c->ncg; i++)
        if (write(c->cgfds[i], "0", 1) != 1)
            goto fail;
    stage = ST_SETSID;
    if (setsid() < 0)
        goto fail;
    stage = ST_DUP;
    if (dup2(c->nullfd, 0) < 0 || dup2(c->logfd, 1) < 0 || dup2(c->logfd, 2) < 0)
        goto fail;
    stage = ST_CHDIR;
    if (chdir(c->exec_dir) != 0)
        goto fail;
    if (c->set_user) {
        stage = ST_GROUPS;
        if (syscall(SYS_SETGROUPS, (size_t)c->ngroups, c->groups) != 0)
            goto fail;
        stage = ST_GID;
        if (syscall(SYS_SETGID, c->gid) != 0)
            goto fail;
        stage = ST_UID;
        if (syscall(SYS_SETUID, c->uid) != 0)
            goto fail;
    }
#ifdef SYS_close_range
    (void)syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    stage = ST_EXEC;
    execve("/bin/sh", c->argv, c->envp);
fail:
    c->fail_errno = errno ? errno : EIO;
    c->fail_stage = stage;
    _exit(127);
}

#define CHILD_STACK (128 * 1024)

#if defined(__x86_64__) && defined(SYS_clone3)
#define HAVE_CLONE3_VFORK 1
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
/* struct clone_args of Linux 5.7 (glibc has no clone3 wrapper) */
typedef struct clone3_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
} clone3_args;

/* clone3 with the child running fn(arg) on ca->stack, as glibc's clone() does for clone:
 * a child with CLONE_VM must not return through the caller's frames. Returns the pid or
 * -errno (the raw system call). */
static long clone3_vfork(clone3_args *ca, int (*fn)(void *), void *arg)
{
    long ret;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov %[arg], %%rdi\n\t" /* the child; r11 is free after syscall */
                     "mov %[fn], %%r11\n\t"
                     "xor %%ebp, %%ebp\n\t" /* outermost frame (fn or arg may be in rbp) */
                     "call *%%r11\n\t"
                     "mov %%eax, %%edi\n\t"
                     "mov %[nr_exit], %%eax\n\t"
                     "syscall\n\t"
                     "hlt\n"
                     "1:"
                     : "=a"(ret)
                     : "a"((long)SYS_clone3), "D"(ca), "S"(sizeof(*ca)), [fn] "r"(fn),
                       [arg] "r"(arg), [nr_exit] "i"(SYS_exit)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

/* clone(CLONE_VM | CLONE_VFORK), as posix_spawn does it, with the steps posix_spawn cannot
 * do (join a cgroup, switch user): the parent's page tables are not copied and torn down
 * again at exec, which cost a worker with many threads and a large map twice the time of
 * the whole spawn. Where it can, clone3 puts the child in its v2 cgroup at birth
 * (CLONE_INTO_CGROUP): a write to cgroup.procs migrates under a global lock and cost
 * ~150 us more per spawn. The child reports a failing stage and errno in *c. */
static int spawn_clone(tn_procs *p, child_ctx *c, pid_t *pid, int *stage)
{
    if (!p->stack) { /* one stack serves every spawn: they run one at a time, under p->mu */
        size_t guard = (size_t)sysconf(_SC_PAGESIZE);
        char *st = mmap(NULL, guard + CHILD_STACK, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (st == MAP_FAILED)
            return errno;
        (void)mprotect(st, guard, PROT_NONE); /* an overflow faults, not corrupts */
        p->stack = st + guard;
    }
    c->fail_stage = c->fail_errno = 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long k = -1;
    int clone_err = 0;
#ifdef HAVE_CLONE3_VFORK
    if (c->cgdir >= 0 && !p->no_clone3) {
        clone3_args ca = {.flags = CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP,
                          .exit_signal = SIGCHLD,
                          .stack = (uint64_t)(uintptr_t)p->stack,
                          .stack_size = CHILD_STACK,
                          .cgroup = (uint64_t)c->cgdir};
        k = clone3_vfork(&ca, child_run, c);
        /* older kernel: not again; any other error: the write path says which stage */
        if (k == -ENOSYS || k == -EINVAL || k == -E2BIG)
            p->no_clone3 = true;
    }
#endif
    if (k < 0 && c->cgdir >= 0 &&
        (c->cgprocs = fd_high(openat(c->cgdir, "cgroup.procs", O_WRONLY | O_CLOEXEC))) < 0)
        clone_err = errno;
    else if (k < 0) {
        k = clone(child_run, (char *)p->stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, c);
        clone_err = errno;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (k < 0)
        return clone_err;
    /* CLONE_VFORK: the child has exec'd or exited by now */
    if (c->fail_stage) {
        int st;
        while (waitpid((pid_t)k, &st, 0) < 0 && errno == EINTR)
            ;
        *stage = c->fail_stage;
        return c->fail_errno;
    }
    *pid = (pid_t)k;
    return 0;
}

/* posix_spawn (vfork-like and cheaper), for what it can do: a new session, no user
 * change, no cgroup to join before exec. */
static int spawn_posix(const child_ctx *c, pid_t *pid)
{
#if defined(__GLIBC__)
#if __GLIBC_PREREQ(2, 34)
#define HAVE_SPAWN_NP 1
#endif
#endif
#ifdef HAVE_SPAWN_NP
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    int e = posix_spawnattr_init(&attr);
    if (e)
        return e;
    e = posix_spawn_file_actions_init(&fa);
    if (e) {
        posix_spawnattr_destroy(&attr);
        return e;
    }
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    if (!e)
        e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
                                                POSIX_SPAWN_SETSIGDEF);
    if (!e)
        e = posix_spawnattr_setsigdefault(&attr, &all);
    if (!e)
        e = posix_spawnattr_setsigmask(&attr, &none);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, c->nullfd, 0);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, c->logfd, 1);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, c->logfd, 2);
    if (!e)
        e = posix_spawn_file_actions_addchdir_np(&fa, c->exec_dir);
    if (!e)
        e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!e)
        e = posix_spawn(pid, "/bin/sh", &fa, &attr, c->argv, c->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return e;
#else
    (void)c;
    (void)pid;
    return ENOSYS;
#endif
}

/* The environment with the attempt's tag first (replacing an inherited one). */
static char **build_env(char *const *envp, const char *tag)
{
    char *const *src = envp ? envp : environ;
    size_t n = 0;
    while (src && src[n])
        n++;
    char **env = calloc(n + 2, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    env[k++] = (char *)tag;
    for (size_t i = 0; i < n; i++)
        if (strncmp(src[i], TAG_VAR "=", sizeof(TAG_VAR)) != 0)
            env[k++] = src[i];
    env[k] = NULL;
    return env;
}

/* Resolves a user in the parent (getpwnam and initgroups are not async-signal-safe). */
static tn_err resolve_user(const tn_spawn *s, child_ctx *c, tn_errmsg *msg)
{
    long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t len = sz > 0 ? (size_t)sz : 16384;
    struct passwd pw, *res = NULL;
    char *buf = NULL;
    int e;
    for (;;) {
        char *nb = realloc(buf, len);
        if (!nb) {
            free(buf);
            return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        }
        buf = nb;
        e = getpwnam_r(s->user, &pw, buf, len, &res);
        if (e != ERANGE || len >= (1u << 20))
            break;
        len *= 2;
    }
    if (!res) {
        free(buf);
        return tn_errmsg_set(msg, TN_ERR_NOENT,
                             "task %" PRIu64 " attempt %" PRIu32 ": user \"%s\" %s on this "
                             "worker: create the OS user or change the task's tenant",
                             s->task, s->attempt, s->user, e ? strerror(e) : "does not exist");
    }
    if (geteuid() != 0 && pw.pw_uid != geteuid()) {
        free(buf);
        return tn_errmsg_set(msg, TN_ERR_PERM,
                             "task %" PRIu64 ": the worker runs as uid %d and cannot switch to "
                             "user \"%s\": run the worker as root or clear the tenant",
                             s->task, (int)geteuid(), s->user);
    }
    c->set_user = true;
    c->uid = pw.pw_uid;
    c->gid = pw.pw_gid;
    int ng = 32;
    for (int tries = 0; tries < 8; tries++) {
        gid_t *g = realloc(c->groups, (size_t)ng * sizeof(*g));
        if (!g) {
            free(buf);
            return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        }
        c->groups = g;
        int want = ng;
        if (getgrouplist(pw.pw_name, pw.pw_gid, c->groups, &want) >= 0) {
            c->ngroups = want;
            break;
        }
        ng = want > ng ? want : ng * 2;
        if (ng > 65536)
            break;
    }
    if (c->ngroups == 0) { /* could not list them: the primary group alone */
        c->groups[0] = pw.pw_gid;
        c->ngroups = 1;
    }
    free(buf);
    return TN_OK;
}

/* Limits: v2 files in the task cgroup, else a per-task v1 cgroup the child joins. A
 * limit that cannot be set is noted, never fatal. */
static void apply_limits(tn_procs *p, tn_proc *t, const tn_spawn *s, child_ctx *c,
                         const char *base)
{
    char *n = t->note;
    size_t cap = sizeof(t->note), len = 0;
    n[0] = '\0';
    if (!s->memory_max && !s->cpu_max_milli) {
        snprintf(n, cap, "no limits requested");
        return;
    }
    for (int which = 0; which < 2; which++) {
        uint64_t want = which == 0 ? s->memory_max : s->cpu_max_milli;
        if (!want)
            continue;
        const char *what = which == 0 ? "memory" : "cpu";
        lim_kind kind = which == 0 ? p->lim_mem : p->lim_cpu;
        if (kind == LIM_V2 && t->mode != TN_CONTAIN_CGROUP)
            kind = LIM_NONE;
        char v[64];
        int e = 0;
        if (kind == LIM_V2) {
            if (which == 0) {
                snprintf(v, sizeof(v), "%" PRIu64, want);
                e = write_at(t->cg, "memory.max", v);
            } else {
                uint64_t q = want * 100 < 1000 ? 1000 : want * 100;
                snprintf(v, sizeof(v), "%" PRIu64 " 100000", q);
                e = write_at(t->cg, "cpu.max", v);
            }
        } else if (kind == LIM_V1) {
            const char *wdir = which == 0 ? p->v1_mem : p->v1_cpu;
            char **slot = which == 0 ? &t->cg_mem : &t->cg_cpu;
            bool shared = which == 1 && t->cg_mem && strcmp(p->v1_mem, p->v1_cpu) == 0;
            if (shared) {
                *slot = t->cg_mem;
            } else if (!(*slot = path_join(wdir, base))) {
                e = ENOMEM;
            } else if (mkdir(*slot, 0755) != 0 && errno != EEXIST) {
                e = errno;
            }
            if (!e && which == 0) {
                snprintf(v, sizeof(v), "%" PRIu64, want);
                e = write_at(*slot, "memory.limit_in_bytes", v);
            } else if (!e) {
                uint64_t q = want * 100 < 1000 ? 1000 : want * 100;
                snprintf(v, sizeof(v), "%" PRIu64, q);
                e = write_at(*slot, "cpu.cfs_period_us", "100000");
                if (!e)
                    e = write_at(*slot, "cpu.cfs_quota_us", v);
            }
            if (!e && !shared) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/cgroup.procs", *slot);
                int fd = fd_high(open(path, O_WRONLY | O_CLOEXEC));
                if (fd < 0)
                    e = errno;
                else
                    c->cgfds[c->ncg++] = fd;
            }
            if (e && *slot && !shared) {
                (void)rmdir(*slot);
                free(*slot);
                *slot = NULL;
            }
        }
        int w;
        if (kind == LIM_NONE)
            w = snprintf(n + len, cap - len, "%s%s limit unsupported here (%s)", len ? "; " : "",
                         what, p->lim_why);
        else if (e)
            w = snprintf(n + len, cap - len, "%s%s limit failed (%s)", len ? "; " : "", what,
                         strerror(e));
        else
            w = snprintf(n + len, cap - len, "%s%s=%s", len ? " " : "", what,
                         kind == LIM_V2 ? "v2" : "v1");
        if (w > 0)
            len = (size_t)w + len < cap ? len + (size_t)w : cap - 1;
    }
}

static tn_err prepare_exec_dir(const tn_spawn *s, const child_ctx *c, tn_errmsg *msg)
{
    if (mkdir(s->exec_dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        if (e == ENOENT)
            return tn_errmsg_set(msg, TN_ERR_NOENT,
                                 "task %" PRIu64 " attempt %" PRIu32 ": exec dir %s: its parent "
                                 "directory does not exist: create it or fix the worker's exec "
                                 "dir setting", s->task, s->attempt, s->exec_dir);
        return tn_errmsg_set(msg, tn_err_from_errno(e),
                             "task %" PRIu64 " attempt %" PRIu32 ": cannot create exec dir %s: %s",
                             s->task, s->attempt, s->exec_dir, strerror(e));
    }
    struct stat st;
    if (stat(s->exec_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "task %" PRIu64 ": exec dir %s exists and is not a directory",
                             s->task, s->exec_dir);
    if (c->set_user && chown(s->exec_dir, c->uid, c->gid) != 0)
        return tn_errmsg_set(msg, tn_err_from_errno(errno),
                             "task %" PRIu64 ": chown exec dir %s to user \"%s\": %s", s->task,
                             s->exec_dir, s->user, strerror(errno));
    return TN_OK;
}

tn_err tn_proc_start(tn_procs *p, const tn_spawn *s, tn_proc **out, tn_errmsg *msg)
{
    if (!p || !s || !out || !s->script || !s->exec_dir || !s->exec_dir[0] || !s->log_path ||
        !s->log_path[0])
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "tn_proc_start: script, exec_dir and log_path are required");
    tn_err err = TN_OK;
    char *tag = NULL, **env = NULL, base[64];
    char *const argv[] = {"sh", "-e", "-c", (char *)s->script, NULL};
    child_ctx c = {.nullfd = -1, .logfd = -1, .cgdir = -1, .cgprocs = -1, .exec_dir = s->exec_dir,
                   .argv = argv};
    tn_proc *t = NULL;
    snprintf(base, sizeof(base), "task-%" PRIu64 "-%" PRIu32, s->task, s->attempt);

    pthread_mutex_lock(&p->mu);
    if (find_attempt(p, s->task, s->attempt)) {
        err = tn_errmsg_set(msg, TN_ERR_EXISTS, "task %" PRIu64 " attempt %" PRIu32
                            " is already running on this worker", s->task, s->attempt);
        goto fail;
    }
    if (s->user && (err = resolve_user(s, &c, msg)) != TN_OK)
        goto fail;
    if ((err = prepare_exec_dir(s, &c, msg)) != TN_OK)
        goto fail;
    c.logfd = fd_high(open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY,
                           0640));
    if (c.logfd < 0) {
        err = tn_errmsg_set(msg, tn_err_from_errno(errno),
                            "task %" PRIu64 " attempt %" PRIu32 ": cannot open log %s: %s",
                            s->task, s->attempt, s->log_path, strerror(errno));
        goto fail;
    }
    c.nullfd = fd_high(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (c.nullfd < 0) {
        err = tn_errmsg_set(msg, TN_ERR_IO, "open /dev/null: %s", strerror(errno));
        goto fail;
    }
    if (asprintf(&tag, TAG_VAR "=%s/%" PRIu64 "/%" PRIu32, p->name, s->task, s->attempt) < 0) {
        tag = NULL;
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(env = build_env(s->envp, tag)) || !(t = calloc(1, sizeof(*t)))) {
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c.envp = env;
    t->mgr = p;
    t->pidfd = -1;
    t->task = s->task;
    t->attempt = s->attempt;
    t->mode = p->mode;

    if (p->mode == TN_CONTAIN_CGROUP) {
        if (!(t->cg = path_join(p->root, base))) {
            err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
            goto fail;
        }
        int e = mkdir(t->cg, 0755) == 0 ? 0 : errno;
        if (e == EEXIST) /* an empty leftover is reused; a populated one is not ours */
            e = cg_rmdir_tree(t->cg, 0) == 0 && mkdir(t->cg, 0755) == 0 ? 0 : EBUSY;
        if (e) {
            err = tn_errmsg_set(msg, e == EBUSY ? TN_ERR_EXISTS : tn_err_from_errno(e),
                                "task %" PRIu64 " attempt %" PRIu32 ": cgroup %s: %s%s", s->task,
                                s->attempt, t->cg, strerror(e),
                                e == EBUSY ? ": a previous run left it populated; the worker "
                                             "must call tn_procs_adopt_leftovers at start" : "");
            free(t->cg); /* not created by us: not ours to remove */
            t->cg = NULL;
            goto fail;
        }
        c.cgdir = fd_high(open(t->cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (c.cgdir < 0) {
            err = tn_errmsg_set(msg, tn_err_from_errno(errno), "open %s: %s", t->cg,
                                strerror(errno));
            goto fail;
        }
    }
    apply_limits(p, t, s, &c, base);

    int stage = 0, e = ENOSYS;
    bool posix = p->mode == TN_CONTAIN_SESSION && !c.set_user && c.ncg == 0 && c.cgdir < 0;
    if (posix)
        e = spawn_posix(&c, &t->pid);
    if (!posix || e == ENOSYS)
        e = spawn_clone(p, &c, &t->pid, &stage);
    if (e) {
        err = tn_errmsg_set(msg, tn_err_from_errno(e),
                            "task %" PRIu64 " attempt %" PRIu32 ": %s failed%s%s: %s", s->task,
                            s->attempt, stage ? stage_names[stage] : "spawn /bin/sh",
                            stage == ST_CHDIR ? " in " : "", stage == ST_CHDIR ? s->exec_dir : "",
                            strerror(e));
        goto fail;
    }
    pinfo pi;
    if (read_stat(t->pid, &pi))
        t->start = pi.start;
    t->next = p->head;
    if (p->head)
        p->head->prev = t;
    p->head = t;
    p->live++;
    if (p->mode == TN_CONTAIN_SESSION)
        (void)pidset_put(&t->seen, t->pid, t->start);
    watch_leader(p, t);
    tn_info(COMP, "msg=started task=%" PRIu64 " attempt=%" PRIu32 " pid=%d mode=%s spawn=%s "
            "limits=\"%s\"", t->task, t->attempt, (int)t->pid, tn_contain_mode_name(t->mode),
            posix ? "posix_spawn" : "clone", t->note);
    *out = t;
    t = NULL;
fail:
    if (t) {
        if (t->cg && t->pid == 0)
            (void)rmdir(t->cg);
        if (t->cg_mem)
            (void)rmdir(t->cg_mem);
        if (t->cg_cpu && t->cg_cpu != t->cg_mem)
            (void)rmdir(t->cg_cpu);
        proc_destroy(t);
    }
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < c.ncg; i++)
        (void)close(c.cgfds[i]);
    if (c.cgdir >= 0)
        (void)close(c.cgdir);
    if (c.cgprocs >= 0)
        (void)close(c.cgprocs);
    if (c.logfd >= 0)
        (void)close(c.logfd);
    if (c.nullfd >= 0)
        (void)close(c.nullfd);
    free(c.groups);
    free(env);
    free(tag);
    return err;
}

/* ---------------------------------------------------------------------------------- */
/* Leftovers of a previous run, sweeping, gauges, teardown */

typedef struct lgroup {
    uint64_t task;
    uint32_t attempt;
    pidset ids;
    char *cg; /* v2 cgroup to kill and remove, or NULL */
} lgroup;

typedef struct lgroups {
    lgroup *v;
    size_t n, cap;
} lgroups;

static lgroup *lgroup_get(lgroups *g, uint64_t task, uint32_t attempt)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].task == task && g->v[i].attempt == attempt)
            return &g->v[i];
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        lgroup *v = realloc(g->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        g->v = v;
        g->cap = cap;
    }
    g->v[g->n] = (lgroup){.task = task, .attempt = attempt};
    return &g->v[g->n++];
}

static void lgroups_fini(lgroups *g)
{
    for (size_t i = 0; i < g->n; i++) {
        pidset_fini(&g->v[i].ids);
        free(g->v[i].cg);
    }
    free(g->v);
    *g = (lgroups){0};
}

/* Adds to each group the live descendants of its members and the members of sessions
 * its members lead (sids). Returns how many were added. */
static uint32_t lgroups_grow(tn_procs *p, lgroups *g, const pidset *sids_of)
{
    pscan *sc = &p->scan;
    uint32_t added = 0;
    for (size_t k = 0; k < g->n; k++) {
        memset(sc->mark, 0, sc->n);
        for (size_t i = 0; i < sc->n; i++) {
            const pinfo *pi = &sc->v[i];
            if (pi->state == 'Z' || pi->pid == p->self)
                continue;
            sc->mark[i] = pidset_has(&g->v[k].ids, pi->pid, pi->start) ||
                          (sids_of && pidset_has(&sids_of[k], pi->sid, 0));
        }
        scan_mark_descendants(sc, p->self);
        for (size_t i = 0; i < sc->n; i++) {
            if (sc->mark[i] && !pidset_has(&g->v[k].ids, sc->v[i].pid, sc->v[i].start)) {
                (void)pidset_put(&g->v[k].ids, sc->v[i].pid, sc->v[i].start);
                added++;
            }
        }
    }
    return added;
}

/* Stops, kills and waits for every group; calls cb per group. */
static void lgroups_kill(tn_procs *p, lgroups *g, const pidset *sids_of, tn_leftover_fn cb,
                         void *ud)
{
    pidset stopped = {0};
    for (int round = 0; round < STOP_ROUNDS_MAX; round++) {
        for (size_t k = 0; k < g->n; k++)
            if (g->v[k].cg && p->has_freeze)
                (void)write_at(g->v[k].cg, "cgroup.freeze", "1");
        if (scan_all(&p->scan))
            (void)lgroups_grow(p, g, sids_of);
        uint32_t fresh = 0;
        for (size_t k = 0; k < g->n; k++) {
            for (uint32_t i = 0; i < g->v[k].ids.n; i++) {
                tn_pid_ident *id = &g->v[k].ids.v[i];
                if (pidset_has(&stopped, id->pid, id->start_ticks))
                    continue;
                fresh++;
                (void)sig_one(id->pid, id->start_ticks, SIGSTOP);
                (void)pidset_put(&stopped, id->pid, id->start_ticks);
            }
        }
        if (!fresh)
            break;
    }
    pidset_fini(&stopped);
    for (size_t k = 0; k < g->n; k++) {
        if (g->v[k].cg && p->has_kill)
            (void)write_at(g->v[k].cg, "cgroup.kill", "1");
        for (uint32_t i = 0; i < g->v[k].ids.n; i++)
            (void)sig_one(g->v[k].ids.v[i].pid, g->v[k].ids.v[i].start_ticks, SIGKILL);
    }
    int64_t until = tn_mono_ns() + p->verify_ns;
    for (;;) {
        reap_children(p);
        bool alive = false;
        for (size_t k = 0; k < g->n && !alive; k++) {
            if (g->v[k].cg && cg_populated(g->v[k].cg) == 1)
                alive = true;
            for (uint32_t i = 0; i < g->v[k].ids.n && !alive; i++)
                alive = ident_alive(g->v[k].ids.v[i].pid, g->v[k].ids.v[i].start_ticks, NULL);
        }
        if (!alive || tn_mono_ns() >= until)
            break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    for (size_t k = 0; k < g->n; k++) {
        lgroup *l = &g->v[k];
        pid_t *pids = calloc(l->ids.n ? l->ids.n : 1, sizeof(*pids));
        uint32_t surv = 0;
        for (uint32_t i = 0; i < l->ids.n; i++) {
            if (pids)
                pids[i] = l->ids.v[i].pid;
            surv += ident_alive(l->ids.v[i].pid, l->ids.v[i].start_ticks, NULL);
        }
        if (l->cg && p->has_freeze)
            (void)write_at(l->cg, "cgroup.freeze", "0");
        if (l->cg && cg_rmdir_tree(l->cg, 0) != 0)
            tn_warn(COMP, "msg=\"leftover cgroup not removed; left to the sweeper\" path=%s",
                    l->cg);
        tn_logf(surv ? TN_LOG_WARN : TN_LOG_INFO, COMP,
                "msg=\"killed leftovers of a previous run\" task=%" PRIu64 " attempt=%" PRIu32
                " killed=%" PRIu32 " survivors=%" PRIu32, l->task, l->attempt, l->ids.n, surv);
        if (cb) {
            tn_leftover lo = {.task = l->task, .attempt = l->attempt, .pids = pids,
                              .npids = pids ? l->ids.n : 0, .survivors = surv};
            cb(ud, &lo);
        }
        free(pids);
    }
}

/* Task cgroups of a v1 worker sub-tree that no live attempt owns: kill their processes
 * into the groups (the directories are removed afterwards). */
static void collect_v1(tn_procs *p, const char *dir, lgroups *g)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t task;
        uint32_t attempt;
        if (de->d_type != DT_DIR || !parse_task_dir(de->d_name, &task, &attempt) ||
            find_attempt(p, task, attempt))
            continue;
        char *sub = path_join(dir, de->d_name);
        pidarr a = {0};
        if (sub)
            cg_list(sub, &a, 0);
        lgroup *l = a.n ? lgroup_get(g, task, attempt) : NULL;
        for (size_t i = 0; l && i < a.n; i++) {
            pinfo pi;
            if (read_stat(a.v[i], &pi))
                (void)pidset_put(&l->ids, pi.pid, pi.start);
        }
        pidarr_fini(&a);
        free(sub);
    }
    (void)closedir(d);
}

static void remove_v1_orphans(tn_procs *p, const char *dir)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t task;
        uint32_t attempt;
        if (de->d_type != DT_DIR || !parse_task_dir(de->d_name, &task, &attempt) ||
            find_attempt(p, task, attempt))
            continue;
        char *sub = path_join(dir, de->d_name);
        if (sub && cg1_empty(sub))
            (void)cg_rmdir_tree(sub, 0);
        free(sub);
    }
    (void)closedir(d);
}

tn_err tn_procs_adopt_leftovers(tn_procs *p, tn_leftover_fn cb, void *ud, uint32_t *nattempts)
{
    if (!p)
        return TN_ERR_INVAL;
    pthread_mutex_lock(&p->mu);
    lgroups g = {0};
    /* v2 task cgroups: everything in them */
    DIR *d = p->root ? opendir(p->root) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        uint64_t task;
        uint32_t attempt;
        if (de->d_type != DT_DIR || !parse_task_dir(de->d_name, &task, &attempt) ||
            find_attempt(p, task, attempt))
            continue;
        char *sub = path_join(p->root, de->d_name);
        if (!sub)
            continue;
        if (p->has_freeze)
            (void)cg_freeze(sub);
        pidarr a = {0};
        cg_list(sub, &a, 0);
        if (!a.n) {
            (void)cg_rmdir_tree(sub, 0); /* empty: a leak for the books, not a leftover */
            free(sub);
            continue;
        }
        lgroup *l = lgroup_get(&g, task, attempt);
        if (!l) {
            pidarr_fini(&a);
            free(sub);
            continue;
        }
        for (size_t i = 0; i < a.n; i++) {
            pinfo pi;
            if (read_stat(a.v[i], &pi))
                (void)pidset_put(&l->ids, pi.pid, pi.start);
        }
        pidarr_fini(&a);
        if (l->cg)
            free(sub);
        else
            l->cg = sub;
    }
    if (d)
        (void)closedir(d);
    collect_v1(p, p->v1_mem, &g);
    collect_v1(p, p->v1_cpu, &g);
    /* tagged processes: session-mode leftovers, and anything that left its cgroup */
    if (scan_all(&p->scan)) {
        for (size_t i = 0; i < p->scan.n; i++) {
            const pinfo pi = p->scan.v[i];
            uint64_t task;
            uint32_t attempt;
            if (pi.pid == p->self || pi.state == 'Z' ||
                !env_tag(pi.pid, p->name, &p->envbuf, &p->envcap, &task, &attempt) ||
                find_attempt(p, task, attempt))
                continue;
            lgroup *l = lgroup_get(&g, task, attempt);
            if (l)
                (void)pidset_put(&l->ids, pi.pid, pi.start);
        }
    }
    /* a tagged session leader takes its whole session (members that dropped the tag) */
    pidset *sids = calloc(g.n ? g.n : 1, sizeof(*sids));
    for (size_t k = 0; sids && k < g.n; k++) {
        for (uint32_t i = 0; i < g.v[k].ids.n; i++) {
            pinfo pi;
            if (read_stat(g.v[k].ids.v[i].pid, &pi) && pi.sid == pi.pid)
                (void)pidset_put(&sids[k], pi.pid, 0);
        }
    }
    lgroups_kill(p, &g, sids, cb, ud);
    for (size_t k = 0; sids && k < g.n; k++)
        pidset_fini(&sids[k]);
    free(sids);
    remove_v1_orphans(p, p->v1_mem);
    remove_v1_orphans(p, p->v1_cpu);
    p->adopted_total += g.n;
    if (nattempts)
        *nattempts = (uint32_t)g.n;
    lgroups_fini(&g);
    pthread_mutex_unlock(&p->mu);
    return TN_OK;
}

tn_err tn_procs_kill_pids(tn_procs *p, uint64_t task, uint32_t attempt,
                          const tn_pid_ident *ids, size_t n, tn_leftover_fn cb, void *ud)
{
    if (!p || (n && !ids))
        return TN_ERR_INVAL;
    pthread_mutex_lock(&p->mu);
    lgroups g = {0};
    pidset sids = {0};
    lgroup *l = lgroup_get(&g, task, attempt);
    tn_err err = l ? TN_OK : TN_ERR_NOMEM;
    if (l && scan_all(&p->scan)) {
        for (size_t i = 0; i < n; i++) {
            const pinfo *pi = scan_find(&p->scan, ids[i].pid, NULL);
            if (pi && (ids[i].start_ticks == 0 || pi->start == ids[i].start_ticks)) {
                if (pi->state != 'Z')
                    (void)pidset_put(&l->ids, pi->pid, pi->start);
                (void)pidset_put(&sids, pi->pid, 0);
            } else if (!pi) {
                /* the leader is gone; while its session lives, its pid is not reused */
                (void)pidset_put(&sids, ids[i].pid, 0);
            } /* else the pid names another process now: stale, skipped */
        }
        for (size_t i = 0; i < p->scan.n; i++) {
            const pinfo pi = p->scan.v[i];
            uint64_t tt;
            uint32_t ta;
            if (pi.pid != p->self && pi.state != 'Z' &&
                env_tag(pi.pid, p->name, &p->envbuf, &p->envcap, &tt, &ta) && tt == task &&
                ta == attempt)
                (void)pidset_put(&l->ids, pi.pid, pi.start);
        }
        lgroups_kill(p, &g, &sids, cb, ud);
    }
    pidset_fini(&sids);
    lgroups_fini(&g);
    pthread_mutex_unlock(&p->mu);
    return err;
}

static bool owned(tn_procs *p, const char *name)
{
    uint64_t task;
    uint32_t attempt;
    return !parse_task_dir(name, &task, &attempt) || find_attempt(p, task, attempt);
}

/* Counts (and with `sweep`, removes empty unowned) task cgroups of one sub-tree. */
static uint32_t walk_tree(tn_procs *p, const char *dir, bool v2, bool sweep, uint32_t *count)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return 0;
    uint32_t removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t task;
        uint32_t attempt;
        if (de->d_type != DT_DIR || !parse_task_dir(de->d_name, &task, &attempt))
            continue;
        if (count)
            (*count)++;
        if (!sweep || owned(p, de->d_name))
            continue;
        char *sub = path_join(dir, de->d_name);
        if (sub && (v2 ? cg_populated(sub) == 0 : cg1_empty(sub)) &&
            cg_rmdir_tree(sub, 0) == 0) {
            removed++;
            tn_warn(COMP, "msg=\"swept leaked cgroup\" path=%s", sub);
        }
        free(sub);
    }
    (void)closedir(d);
    return removed;
}

uint32_t tn_procs_sweep(tn_procs *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    uint32_t n = walk_tree(p, p->root, true, true, NULL);
    if (p->v1_mem)
        n += walk_tree(p, p->v1_mem, false, true, NULL);
    if (p->v1_cpu && (!p->v1_mem || strcmp(p->v1_cpu, p->v1_mem) != 0))
        n += walk_tree(p, p->v1_cpu, false, true, NULL);
    p->swept_total += n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void tn_procs_stats_get(tn_procs *p, tn_procs_stats *st)
{
    pthread_mutex_lock(&p->mu);
    uint32_t cg = 0;
    (void)walk_tree(p, p->root, true, false, &cg);
    (void)walk_tree(p, p->v1_mem, false, false, &cg);
    if (p->v1_cpu && (!p->v1_mem || strcmp(p->v1_cpu, p->v1_mem) != 0))
        (void)walk_tree(p, p->v1_cpu, false, false, &cg);
    *st = (tn_procs_stats){.live = p->live,
                           .cgroups = cg,
                           .swept_total = p->swept_total,
                           .adopted_total = p->adopted_total};
    pthread_mutex_unlock(&p->mu);
}

void tn_procs_free(tn_procs *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    int64_t now = tn_mono_ns(), until = now + p->verify_ns;
    bool any = false;
    for (tn_proc *t = p->head; t; t = t->next) {
        if (t->finished)
            continue;
        any = true;
        if (t->stage == K_NONE || t->stage == K_TERM) {
            t->has_report = true;
            if (t->stage == K_NONE)
                t->rep.term_ns = now;
            do_kill(p, t, now);
        }
    }
    while (any) {
        step(p, now);
        any = false;
        for (tn_proc *t = p->head; t; t = t->next)
            any = any || !t->finished;
        if (!any || (now = tn_mono_ns()) >= until)
            break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    for (tn_proc *t = p->head, *next; t; t = next) {
        next = t->next;
        if (!t->finished)
            tn_warn(COMP, "msg=\"attempt still running at shutdown\" task=%" PRIu64
                    " attempt=%" PRIu32 " pid=%d", t->task, t->attempt, (int)t->pid);
        proc_destroy(t);
    }
    p->head = NULL;
    /* only if empty: leftovers stay for the next start; a shared parent stays while
     * another worker uses it */
    const char *dirs[6] = {p->root, p->v1_mem, p->v1_cpu, p->parents[0], p->parents[1],
                           p->parents[2]};
    for (int i = 0; i < 6; i++)
        if (dirs[i])
            (void)rmdir(dirs[i]);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    free(p->root);
    free(p->v1_mem);
    free(p->v1_cpu);
    for (int i = 0; i < 3; i++)
        free(p->parents[i]);
    free(p->scan.v);
    free(p->scan.mark);
    free(p->envbuf);
    if (p->epfd >= 0)
        (void)close(p->epfd);
    if (p->stack) {
        size_t guard = (size_t)sysconf(_SC_PAGESIZE);
        (void)munmap((char *)p->stack - guard, guard + CHILD_STACK);
    }
    free(p);
}

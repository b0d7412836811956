/* Pid sets, small file helpers, the /proc walk and the members of an attempt. */
#include "proc_int.h"

/* ---------------------------------------------------------------------------------- */
/* Small sets of pids */


bool pr_pidarr_push(pidarr *a, pid_t pid)
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

void pr_pidarr_fini(pidarr *a)
{
    free(a->v);
    *a = (pidarr){0};
}


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

bool pr_pidset_has(const pidset *s, pid_t pid, uint64_t start)
{
    uint32_t i = pidset_lower(s, pid);
    return i < s->n && ident_match(&s->v[i], pid, start);
}

/* Adds or refreshes (a reused pid replaces the old identity). false: out of memory. */
bool pr_pidset_put(pidset *s, pid_t pid, uint64_t start)
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

void pr_pidset_fini(pidset *s)
{
    free(s->v);
    *s = (pidset){0};
}

/* ---------------------------------------------------------------------------------- */
/* Files */

/* Reads up to cap-1 bytes and NUL-terminates. Returns the length, or -1 with errno. */
ssize_t pr_read_small(const char *path, char *buf, size_t cap)
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
ssize_t pr_read_grow(const char *path, char **buf, size_t *cap, size_t max)
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
void __attribute__((format(printf, 3, 4))) pr_sfmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    (void)vsnprintf(buf, len, f, ap);
    va_end(ap);
}

char *pr_path_join(const char *a, const char *b)
{
    char *s;
    if (asprintf(&s, "%s/%s", a, b) < 0)
        return NULL;
    return s;
}

int pr_write_at(const char *dir, const char *file, const char *s)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return ENAMETOOLONG;
    return write_str(path, s);
}

bool pr_exists_at(const char *dir, const char *file)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return false;
    return access(path, F_OK) == 0;
}

/* Moves an fd above stdio so dup2 onto 0-2 in the child never meets itself. */
int pr_fd_high(int fd)
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

bool pr_read_stat(pid_t pid, pinfo *pi)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (pr_read_small(path, buf, sizeof(buf)) <= 0)
        return false;
    pi->pid = pid;
    return parse_stat(buf, pi);
}

/* Alive means: this very process (pid and start) exists and is not a zombie. */
bool pr_ident_alive(pid_t pid, uint64_t start, char *state)
{
    pinfo pi;
    if (!pr_read_stat(pid, &pi) || (start && pi.start != start) || pi.state == 'Z' ||
        pi.state == 'X')
        return false;
    if (state)
        *state = pi.state;
    return true;
}


static int pid_cmp(const void *a, const void *b)
{
    pid_t x = ((const pinfo *)a)->pid, y = ((const pinfo *)b)->pid;
    return (x > y) - (x < y);
}

bool pr_scan_all(pscan *sc)
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
        if (pid <= 0 || !pr_read_stat((pid_t)pid, &pi))
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

const pinfo *pr_scan_find(const pscan *sc, pid_t pid, size_t *idx)
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
void pr_scan_mark_descendants(pscan *sc, pid_t self)
{
    bool changed = true;
    for (int round = 0; changed && round < 4096; round++) {
        changed = false;
        for (size_t i = 0; i < sc->n; i++) {
            const pinfo *pi = &sc->v[i];
            if (sc->mark[i] || pi->state == 'Z' || pi->pid == self)
                continue;
            size_t j;
            if (pr_scan_find(sc, pi->ppid, &j) && sc->mark[j]) {
                sc->mark[i] = 1;
                changed = true;
            }
        }
    }
}

/* Looks for TERN_ATTEMPT_TAG=<name>/<task>/<attempt> in a process's environment. */
bool pr_env_tag(pid_t pid, const char *name, char **buf, size_t *cap, uint64_t *task,
                uint32_t *attempt)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    ssize_t len = pr_read_grow(path, buf, cap, ENVIRON_MAX);
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
bool pr_sig_one(pid_t pid, uint64_t start, int sig)
{
    if (pid <= 1 || pid == getpid())
        return false;
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        pinfo pi;
        bool ok = pr_read_stat(pid, &pi) && (!start || pi.start == start);
        if (ok)
            ok = syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0;
        (void)close(fd);
        return ok;
    }
    if (errno != ENOSYS)
        return false;
#endif
    pinfo pi;
    if (!pr_read_stat(pid, &pi) || (start && pi.start != start))
        return false;
    return kill(pid, sig) == 0;
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
    const pinfo *holder = pr_scan_find(sc, t->pid, NULL);
    bool sid_ok = !holder || holder->start == t->start;
    for (size_t i = 0; i < sc->n; i++) {
        const pinfo *pi = &sc->v[i];
        if (pi->state == 'Z' || pi->state == 'X' || pi->pid == p->self)
            continue;
        bool m = (sid_ok && (pi->sid == t->pid || pi->pgid == t->pid)) ||
                 (pi->pid == t->pid && pi->start == t->start) ||
                 pr_pidset_has(&t->seen, pi->pid, pi->start);
        if (!m && pi->ppid == p->self) {
            /* an orphan re-parented to us: a leader of another attempt, or tagged */
            bool leader = false;
            for (tn_proc *o = p->head; o && !leader; o = o->next)
                leader = o->pid == pi->pid;
            uint64_t tt;
            uint32_t ta;
            m = !leader && pr_env_tag(pi->pid, p->name, &p->envbuf, &p->envcap, &tt, &ta) &&
                tt == t->task && ta == t->attempt;
        }
        sc->mark[i] = m;
    }
    pr_scan_mark_descendants(sc, p->self);
    uint32_t n = 0;
    t->seen.n = 0;
    for (size_t i = 0; i < sc->n; i++) {
        if (!sc->mark[i])
            continue;
        n++;
        if (!pr_pidset_put(&t->seen, sc->v[i].pid, sc->v[i].start))
            break;
    }
    return n;
}

/* Live members by identity into ids. Session mode reads the last scan. */
void pr_members(tn_procs *p, tn_proc *t, pidset *ids)
{
    if (t->mode == TN_CONTAIN_CGROUP) {
        pidarr raw = {0};
        pr_cg_list(t->cg, &raw, 0);
        for (size_t i = 0; i < raw.n; i++) {
            pinfo pi;
            if (pr_read_stat(raw.v[i], &pi) && pi.state != 'Z')
                (void)pr_pidset_put(ids, pi.pid, pi.start);
        }
        pr_pidarr_fini(&raw);
        return;
    }
    (void)session_members(p, t);
    for (size_t i = 0; i < p->scan.n; i++)
        if (p->scan.mark[i])
            (void)pr_pidset_put(ids, p->scan.v[i].pid, p->scan.v[i].start);
}

/* Empty: no live process of the attempt. cgroup mode trusts cgroup.events. */
bool pr_attempt_empty(tn_procs *p, tn_proc *t)
{
    if (t->mode == TN_CONTAIN_CGROUP)
        return pr_cg_populated(t->cg) == 0;
    return session_members(p, t) == 0;
}

void pr_report_signalled(tn_proc *t, pid_t pid, uint64_t start)
{
    if (pr_pidset_has(&t->sig, pid, start))
        return;
    (void)pr_pidset_put(&t->sig, pid, start);
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
uint32_t pr_signal_ids(tn_proc *t, const pidset *ids, int sig)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < ids->n; i++) {
        if (pr_sig_one(ids->v[i].pid, ids->v[i].start_ticks, sig)) {
            pr_report_signalled(t, ids->v[i].pid, ids->v[i].start_ticks);
            n++;
        }
    }
    return n;
}

void pr_fresh_scan(tn_procs *p, int64_t now)
{
    if (pr_scan_all(&p->scan))
        p->last_scan = now;
}

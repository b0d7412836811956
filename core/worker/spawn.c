/* Spawning an attempt: clone3 into its cgroup (or posix_spawn), user, limits, exec dir. */
#include "proc_int.h"

#include <limits.h>
#include <sys/resource.h>

#include "taskenv.h"

/* ---------------------------------------------------------------------------------- */
/* Spawning */

enum {
    ST_CGROUP = 1,
    ST_SETSID,
    ST_DUP,
    ST_CHDIR,
    ST_GROUPS,
    ST_GID,
    ST_UID,
    ST_EXEC
};
static const char *const stage_names[] = {"",       "join cgroup", "setsid",
                                          "dup2",   "chdir",       "setgroups",
                                          "setgid", "setuid",      "exec /bin/sh"};

typedef struct child_ctx {
    int nullfd, logfd;
    int cgdir;    /* the v2 task cgroup, joined at clone (CLONE_INTO_CGROUP); or -1 */
    int cgprocs;  /* its cgroup.procs, when the child joins by writing instead; or -1 */
    int cgfds[3]; /* v1 limit cgroups' tasks files, joined by writing "0" */
    rlim_t nproc; /* RLIMIT_NPROC for the child, when no pids cgroup limits it; 0: none */
    int ncg;
    const char *exec_dir;
    bool set_user;
    uid_t uid;
    gid_t gid;
    gid_t *groups;
    int ngroups;
    char *uenv[3]; /* the tenant's HOME=, USER=, LOGNAME= (malloc'd), over inherited ones */
    char **argv;   /* direct: argv[-1] is free, for `sh FILE` (direct.c) */
    char *const *envp;
    bool direct;          /* argv is the command itself, not sh's (direct.c) */
    const char *path_var; /* direct: the PATH searched */
    char *pwd;            /* direct: "PWD=" and room for the cwd, filled in the child */
    /* written by a child that fails, read by the parent once the child is gone */
    volatile int fail_stage, fail_errno;
} child_ctx;

/* The set*id calls as raw system calls: glibc's wrappers would signal every thread of
 * the parent, whose memory the child shares. */
#ifdef SYS_setgroups32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETGID    SYS_setgid32
#define SYS_SETUID    SYS_setuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETGID    SYS_setgid
#define SYS_SETUID    SYS_setuid
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
    if (c->nproc) { /* after setuid: the limit counts the processes of the task's user */
        struct rlimit rl = {c->nproc, c->nproc};
        (void)setrlimit(RLIMIT_NPROC, &rl);
    }
#ifdef SYS_close_range
    (void)syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
#endif
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    stage = ST_EXEC;
    if (c->direct) { /* as dash exports it: the physical cwd */
        (void)syscall(SYS_getcwd, c->pwd + 4, (size_t)PATH_MAX);
        errno = pr_exec_direct(c->argv, c->envp, c->path_var);
        goto fail;
    }
    execve("/bin/sh", c->argv, c->envp);
fail:
    c->fail_errno = errno ? errno : EIO;
    c->fail_stage = stage;
    _exit(127);
}

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
                     : "a"((long)SYS_clone3), "D"(ca),
                       "S"(sizeof(*ca)), [fn] "r"(fn), [arg] "r"(arg), [nr_exit] "i"(SYS_exit)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

/* The one stack every spawn's child runs on: they run one at a time, under p->mu. 0 or an
 * errno. */
static int child_stack(tn_procs *p)
{
    if (!p->stack) {
        size_t guard = (size_t)sysconf(_SC_PAGESIZE);
        char *st = mmap(NULL, guard + CHILD_STACK, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (st == MAP_FAILED)
            return errno;
        (void)mprotect(st, guard, PROT_NONE); /* an overflow faults, not corrupts */
        p->stack = st + guard;
    }
    return 0;
}

/* clone(CLONE_VM | CLONE_VFORK), as posix_spawn does it, with the steps posix_spawn cannot
 * do (join a cgroup, switch user): the parent's page tables are not copied and torn down
 * again at exec, which cost a worker with many threads and a large map twice the time of
 * the whole spawn. Where it can, clone3 puts the child in its v2 cgroup at birth
 * (CLONE_INTO_CGROUP): a write to cgroup.procs migrates under a global lock and cost
 * ~150 us more per spawn. The child runs fn(arg) on p's stack, with every signal blocked;
 * when it must join the cgroup open at cgdir (-1: none) by writing, *cgprocs gets that
 * cgroup.procs. Returns the pid, or -errno. */
static long clone_child(tn_procs *p, int (*fn)(void *), void *arg, int cgdir, int *cgprocs)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long k = -ENOSYS;
#ifdef HAVE_CLONE3_VFORK
    /* also without a cgroup (session mode): the raw system call, where glibc's clone()
     * may be intercepted (ThreadSanitizer takes a clone for a fork, marks the shared
     * memory as after a multi-threaded fork, and ends the worker at its next
     * pthread_create) */
    if (!p->no_clone3) {
        clone3_args ca = {.flags =
                              CLONE_VM | CLONE_VFORK | (cgdir >= 0 ? CLONE_INTO_CGROUP : 0),
                          .exit_signal = SIGCHLD,
                          .stack = (uint64_t)(uintptr_t)p->stack,
                          .stack_size = CHILD_STACK,
                          .cgroup = cgdir >= 0 ? (uint64_t)cgdir : 0};
        k = clone3_vfork(&ca, fn, arg);
        /* older kernel: not again; any other error: the write path says which stage */
        if (k == -ENOSYS || k == -EINVAL || k == -E2BIG)
            p->no_clone3 = true;
    }
#endif
    if (k < 0 && cgdir >= 0 &&
        (*cgprocs = pr_fd_high(openat(cgdir, "cgroup.procs", O_WRONLY | O_CLOEXEC))) < 0)
        k = -errno;
    else if (k < 0) {
        k = clone(fn, (char *)p->stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, arg);
        k = k < 0 ? -errno : k;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return k;
}

/* An attempt's child (child_run); it reports a failing stage and errno in *c. */
static int spawn_clone(tn_procs *p, child_ctx *c, pid_t *pid, int *stage)
{
    int se = child_stack(p);
    if (se)
        return se;
    c->fail_stage = c->fail_errno = 0;
    long k = clone_child(p, child_run, c, c->cgdir, &c->cgprocs);
    if (k < 0)
        return (int)-k;
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

/* Whether env entry e sets a variable that one of `over` sets too. */
static bool overridden(const char *e, char *const *over, size_t nover)
{
    size_t n = strcspn(e, "=");
    for (size_t i = 0; i < nover; i++)
        if (over[i] && strncmp(over[i], e, n + 1) == 0)
            return true;
    return false;
}

/* The environment with the attempt's tag first (replacing an inherited one), then the
 * tenant's HOME, USER and LOGNAME when it runs as one (replacing the worker's). */
static char **build_env(char *const *envp, const char *tag, char *const *over, size_t nover)
{
    char *const *src = envp ? envp : environ;
    size_t n = 0;
    while (src && src[n])
        n++;
    char **env = calloc(n + 2 + nover, sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    env[k++] = (char *)tag;
    for (size_t i = 0; i < nover; i++)
        if (over[i])
            env[k++] = over[i];
    for (size_t i = 0; i < n; i++)
        if (strncmp(src[i], TAG_VAR "=", sizeof(TAG_VAR)) != 0 &&
            !overridden(src[i], over, nover))
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
    if (asprintf(&c->uenv[0], "HOME=%s", pw.pw_dir ? pw.pw_dir : "/") < 0)
        c->uenv[0] = NULL;
    if (asprintf(&c->uenv[1], "USER=%s", pw.pw_name) < 0)
        c->uenv[1] = NULL;
    if (asprintf(&c->uenv[2], "LOGNAME=%s", pw.pw_name) < 0)
        c->uenv[2] = NULL;
    if (!c->uenv[0] || !c->uenv[1] || !c->uenv[2]) {
        free(buf);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    }
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

/* Opens a v1 limit cgroup's tasks file, which the child joins by writing "0" to it: 0 or an
 * errno. The child has one thread, so moving that thread moves the process; and a write of
 * "0" to tasks (the writer's own thread) is the one migration the kernel makes without its
 * global threadgroup lock, whose writer waits out an RCU grace period when no migration
 * came just before: 15-19 ms a spawn here, against ~40 us, through cgroup.procs. */
static int open_v1_join(child_ctx *c, const char *dir)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/tasks", dir) >= (int)sizeof(path))
        return ENAMETOOLONG;
    int fd = pr_fd_high(open(path, O_WRONLY | O_CLOEXEC));
    if (fd < 0)
        return errno;
    c->cgfds[c->ncg++] = fd;
    return 0;
}

/* The pids limit: pids.max of the v2 task cgroup, else of a per-task v1 pids cgroup the
 * child joins, else RLIMIT_NPROC (which root ignores). Noted after what t->note holds
 * (len bytes): "pids=v2:64", "pids=v1:64", "pids=rlimit:64", "pids=none (...)". */
static void pids_limit(tn_procs *p, tn_proc *t, const tn_spawn *s, child_ctx *c,
                       const char *base, size_t len)
{
    char v[11]; /* a uint32_t in decimal */
    snprintf(v, sizeof(v), "%" PRIu32, s->pids_max);
    lim_kind kind = p->lim_pids;
    if (kind == LIM_V2 && t->mode != TN_CONTAIN_CGROUP)
        kind = LIM_NONE;
    int e = 0;
    if (kind == LIM_V2) {
        e = pr_write_at(t->cg, "pids.max", v);
    } else if (kind == LIM_V1) {
        if (!(t->cg_pids = pr_path_join(p->v1_pids, base)))
            e = ENOMEM;
        else if (!pr_spare_take(&p->spare_pids, t->cg_pids) && /* pids.max written next */
                 mkdir(t->cg_pids, 0755) != 0 && errno != EEXIST)
            e = errno;
        if (!e)
            e = pr_write_at(t->cg_pids, "pids.max", v);
        if (!e) {
            e = open_v1_join(c, t->cg_pids);
        }
        if (e && t->cg_pids) {
            (void)rmdir(t->cg_pids);
            free(t->cg_pids);
            t->cg_pids = NULL;
        }
    }
    bool root = (c->set_user ? c->uid : geteuid()) == 0;
    const char *sep = len ? " " : "";
    char *n = t->note + len;
    size_t cap = sizeof(t->note) - len;
    if (kind != LIM_NONE && !e) {
        snprintf(t->pids_note, sizeof(t->pids_note), "%s:%s", kind == LIM_V2 ? "v2" : "v1", v);
        snprintf(n, cap, "%spids=%s", sep, t->pids_note);
    } else if (!root) {
        c->nproc = s->pids_max; /* per user, not per task: the closest there is */
        snprintf(t->pids_note, sizeof(t->pids_note), "rlimit:%s", v);
        snprintf(n, cap, "%spids=%s%s%s%s", sep, t->pids_note, e ? " (cgroup failed: " : "",
                 e ? strerror(e) : "", e ? ")" : "");
    } else {
        snprintf(t->pids_note, sizeof(t->pids_note), "none");
        snprintf(n, cap, "%spids=none (no pids controller%s%s; root ignores RLIMIT_NPROC)", sep,
                 e ? ": " : "", e ? strerror(e) : "");
    }
}

/* Limits: v2 files in the task cgroup, else a per-task v1 cgroup the child joins. A
 * limit that cannot be set is noted, never fatal. */
static void apply_limits(tn_procs *p, tn_proc *t, const tn_spawn *s, child_ctx *c,
                         const char *base)
{
    char *n = t->note;
    size_t cap = sizeof(t->note), len = 0;
    n[0] = '\0';
    if (!s->memory_max && !s->cpu_max_milli && !s->pids_max) {
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
                e = pr_write_at(t->cg, "memory.max", v);
            } else {
                uint64_t q = want * 100 < 1000 ? 1000 : want * 100;
                snprintf(v, sizeof(v), "%" PRIu64 " 100000", q);
                e = pr_write_at(t->cg, "cpu.max", v);
            }
        } else if (kind == LIM_V1) {
            const char *wdir = which == 0 ? p->v1_mem : p->v1_cpu;
            char **slot = which == 0 ? &t->cg_mem : &t->cg_cpu;
            bool shared = which == 1 && t->cg_mem && strcmp(p->v1_mem, p->v1_cpu) == 0;
            if (shared) {
                *slot = t->cg_mem;
            } else if (!(*slot = pr_path_join(wdir, base))) {
                e = ENOMEM;
            } else if (mkdir(*slot, 0755) != 0 && errno != EEXIST) {
                e = errno;
            }
            if (!e && which == 0) {
                snprintf(v, sizeof(v), "%" PRIu64, want);
                e = pr_write_at(*slot, "memory.limit_in_bytes", v);
            } else if (!e) {
                uint64_t q = want * 100 < 1000 ? 1000 : want * 100;
                snprintf(v, sizeof(v), "%" PRIu64, q);
                e = pr_write_at(*slot, "cpu.cfs_period_us", "100000");
                if (!e)
                    e = pr_write_at(*slot, "cpu.cfs_quota_us", v);
            }
            if (!e && !shared) {
                e = open_v1_join(c, *slot);
            }
            if (e && *slot && !shared) {
                (void)rmdir(*slot);
                free(*slot);
                *slot = NULL;
            }
        }
        int w;
        if (kind == LIM_NONE)
            w = snprintf(n + len, cap - len, "%s%s limit unsupported here (%s)",
                         len ? "; " : "", what, p->lim_why);
        else if (e)
            w = snprintf(n + len, cap - len, "%s%s limit failed (%s)", len ? "; " : "", what,
                         strerror(e));
        else
            w = snprintf(n + len, cap - len, "%s%s=%s", len ? " " : "", what,
                         kind == LIM_V2 ? "v2" : "v1");
        if (w > 0)
            len = (size_t)w + len < cap ? len + (size_t)w : cap - 1;
    }
    if (s->pids_max)
        pids_limit(p, t, s, c, base, len);
}

static tn_err prepare_exec_dir(const tn_spawn *s, const child_ctx *c, tn_errmsg *msg)
{
    struct stat st;
    /* a stat first: one already there (a spare renamed into place) costs no mkdir, whose
     * lookup locks the parent dir (shared with whoever makes spares in it) */
    bool there = stat(s->exec_dir, &st) == 0;
    if (!there && mkdir(s->exec_dir, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        if (e == ENOENT)
            return tn_errmsg_set(msg, TN_ERR_NOENT,
                                 "task %" PRIu64 " attempt %" PRIu32
                                 ": exec dir %s: its parent "
                                 "directory does not exist: create it or fix the worker's exec "
                                 "dir setting",
                                 s->task, s->attempt, s->exec_dir);
        return tn_errmsg_set(msg, tn_err_from_errno(e),
                             "task %" PRIu64 " attempt %" PRIu32
                             ": cannot create exec dir %s: %s",
                             s->task, s->attempt, s->exec_dir, strerror(e));
    }
    if ((!there && stat(s->exec_dir, &st) != 0) || !S_ISDIR(st.st_mode))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "task %" PRIu64 ": exec dir %s exists and is not a directory",
                             s->task, s->exec_dir);
    if (c->set_user && chown(s->exec_dir, c->uid, c->gid) != 0)
        return tn_errmsg_set(msg, tn_err_from_errno(errno),
                             "task %" PRIu64 ": chown exec dir %s to user \"%s\": %s", s->task,
                             s->exec_dir, s->user, strerror(errno));
    return TN_OK;
}

/* A script longer than this goes to sh through a file: an argument may hold at most
 * MAX_ARG_STRLEN (128 KiB on Linux) bytes, and a definition's command may hold 1 MiB. */
#define SCRIPT_ARG_MAX (64u << 10)

/* Write a long script to EXEC_DIR/.tern-script (0600, the task's user's) and point argv at
 * it: `sh -e FILE` runs it as `sh -e -c SCRIPT` would. */
static tn_err script_file(const tn_spawn *s, const child_ctx *c, char *path, size_t plen,
                          char **argv, tn_errmsg *msg)
{
    snprintf(path, plen, "%s/.tern-script", s->exec_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    int e = fd < 0 ? errno : 0;
    size_t len = strlen(s->script), off = 0;
    while (!e && off < len) {
        ssize_t k = write(fd, s->script + off, len - off);
        if (k < 0 && errno != EINTR)
            e = errno;
        else if (k > 0)
            off += (size_t)k;
    }
    if (!e && c->set_user && fchown(fd, c->uid, c->gid) != 0)
        e = errno;
    if (fd >= 0 && close(fd) != 0 && !e)
        e = errno;
    if (e)
        return tn_errmsg_set(msg, tn_err_from_errno(e),
                             "task %" PRIu64 " attempt %" PRIu32 ": cannot write its %zu-byte "
                             "script to %s: %s",
                             s->task, s->attempt, len, path, strerror(e));
    argv[2] = path;
    argv[3] = NULL;
    return TN_OK;
}

/* Opens a log to append to. A file with more than one name is never appended to: it may
 * be the empty file the names of empty logs share (spares.h), which the same attempt
 * started again would find at its path; a new file takes the name instead. */
static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 1) {
        (void)close(fd);
        if (unlink(path) != 0 && errno != ENOENT)
            return -1;
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    }
    return fd;
}

/* The attempt's log (stdout and stderr, appended) and /dev/null (stdin), above the low fds. */
static tn_err open_stdio(const tn_spawn *s, child_ctx *c, tn_errmsg *msg)
{
    c->logfd = pr_fd_high(open_log(s->log_path));
    if (c->logfd < 0)
        return tn_errmsg_set(msg, tn_err_from_errno(errno),
                             "task %" PRIu64 " attempt %" PRIu32 ": cannot open log %s: %s",
                             s->task, s->attempt, s->log_path, strerror(errno));
    c->nullfd = pr_fd_high(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (c->nullfd < 0)
        return tn_errmsg_set(msg, TN_ERR_IO, "open /dev/null: %s", strerror(errno));
    return TN_OK;
}

/* The attempt's cgroup <root>/<base>, made empty, and a directory fd for CLONE_INTO_CGROUP. */
static tn_err task_cgroup(tn_procs *p, tn_proc *t, child_ctx *c, const char *base,
                          const tn_spawn *s, tn_errmsg *msg)
{
    if (!(t->cg = pr_path_join(p->root, base)))
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    int e = mkdir(t->cg, 0755) == 0 ? 0 : errno;
    if (e == ENOENT && (e = pr_restore_v2(p)) == 0) /* our sub-tree is gone: make it again */
        e = mkdir(t->cg, 0755) == 0 ? 0 : errno;
    if (e == EEXIST) /* an empty leftover is reused; a populated one is not ours */
        e = pr_cg_rmdir_tree(t->cg, 0) == 0 && mkdir(t->cg, 0755) == 0 ? 0 : EBUSY;
    if (e) {
        tn_err err =
            tn_errmsg_set(msg, e == EBUSY ? TN_ERR_EXISTS : tn_err_from_errno(e),
                          "task %" PRIu64 " attempt %" PRIu32 ": cgroup %s: %s%s", s->task,
                          s->attempt, t->cg, strerror(e),
                          e == EBUSY ? ": a previous run left it populated; the worker "
                                       "must call tn_procs_adopt_leftovers at start" :
                                       "");
        free(t->cg); /* not created by us: not ours to remove */
        t->cg = NULL;
        return err;
    }
    c->cgdir = pr_fd_high(open(t->cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (c->cgdir < 0)
        return tn_errmsg_set(msg, tn_err_from_errno(errno), "open %s: %s", t->cg,
                             strerror(errno));
    return TN_OK;
}

/* A started leader joins the manager's list and is watched. */
static void link_started(tn_procs *p, tn_proc *t)
{
    pinfo pi;
    if (pr_read_stat(t->pid, &pi))
        t->start = pi.start;
    t->next = p->head;
    if (p->head)
        p->head->prev = t;
    p->head = t;
    p->live++;
    if (p->mode == TN_CONTAIN_SESSION)
        (void)pr_pidset_put(&t->seen, t->pid, t->start);
    pr_watch_leader(p, t);
}

/* What a failed start made, undone (p->mu held). */
static void discard_attempt(tn_proc *t)
{
    if (t->cg && t->pid == 0)
        (void)rmdir(t->cg);
    if (t->cg_mem)
        (void)rmdir(t->cg_mem);
    if (t->cg_cpu && t->cg_cpu != t->cg_mem)
        (void)rmdir(t->cg_cpu);
    if (t->cg_pids)
        (void)rmdir(t->cg_pids);
    pr_proc_destroy(t);
}

static void close_child_fds(child_ctx *c)
{
    for (int i = 0; i < c->ncg; i++)
        (void)close(c->cgfds[i]);
    if (c->cgdir >= 0)
        (void)close(c->cgdir);
    if (c->cgprocs >= 0)
        (void)close(c->cgprocs);
    if (c->logfd >= 0)
        (void)close(c->logfd);
    if (c->nullfd >= 0)
        (void)close(c->nullfd);
    free(c->groups);
    for (int i = 0; i < 3; i++)
        free(c->uenv[i]);
    free(c->pwd);
}

/* A command with nothing for the shell in it runs without the shell (direct.c). */
typedef struct direct_words {
    char *argv[DIRECT_WORDS + 2]; /* argv[0] free for `sh FILE`, then the words, NULL */
    char buf[DIRECT_LEN];
} direct_words;

static tn_err direct_command(const tn_spawn *s, child_ctx *c, direct_words *d, tn_errmsg *msg)
{
    if (!tn_proc_simple_words(s->script, d->buf, sizeof(d->buf), d->argv + 1, DIRECT_WORDS + 1))
        return TN_OK; /* through the shell */
    if (!(c->pwd = malloc(4 + PATH_MAX + 1)))
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    snprintf(c->pwd, 4 + PATH_MAX + 1, "PWD=%s", s->exec_dir); /* the child puts its cwd */
    c->argv = d->argv + 1;
    c->direct = true;
    return TN_OK;
}

tn_err tn_proc_start(tn_procs *p, const tn_spawn *s, tn_proc **out, tn_errmsg *msg)
{
    if (!p || !s || !out || !s->script || !s->exec_dir || !s->exec_dir[0] || !s->log_path ||
        !s->log_path[0])
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "tn_proc_start: script, exec_dir and log_path are required");
    tn_err err = TN_OK;
    char *tag = NULL, **env = NULL, base[64], script_path[4200];
    char *argv[] = {"sh", "-e", "-c", (char *)s->script, NULL};
    direct_words d;
    child_ctx c = {.nullfd = -1,
                   .logfd = -1,
                   .cgdir = -1,
                   .cgprocs = -1,
                   .exec_dir = s->exec_dir,
                   .argv = argv};
    tn_proc *t = NULL;
    snprintf(base, sizeof(base), "task-%" PRIu64 "-%" PRIu32, s->task, s->attempt);

    pthread_mutex_lock(&p->mu);
    if (pr_find_attempt(p, s->task, s->attempt)) {
        err = tn_errmsg_set(msg, TN_ERR_EXISTS,
                            "task %" PRIu64 " attempt %" PRIu32
                            " is already running on this worker",
                            s->task, s->attempt);
        goto fail;
    }
    if (s->user && (err = resolve_user(s, &c, msg)) != TN_OK)
        goto fail;
    if ((err = prepare_exec_dir(s, &c, msg)) != TN_OK)
        goto fail;
    if (strlen(s->script) > SCRIPT_ARG_MAX &&
        (err = script_file(s, &c, script_path, sizeof(script_path), argv, msg)) != TN_OK)
        goto fail;
    if ((err = open_stdio(s, &c, msg)) != TN_OK)
        goto fail;
    if ((err = direct_command(s, &c, &d, msg)) != TN_OK)
        goto fail;
    if (asprintf(&tag, TAG_VAR "=%s/%" PRIu64 "/%" PRIu32, p->name, s->task, s->attempt) < 0) {
        tag = NULL;
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    char *over[4] = {c.uenv[0], c.uenv[1], c.uenv[2], c.pwd};
    if (!(env = build_env(s->envp, tag, over, 4)) || !(t = calloc(1, sizeof(*t)))) {
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c.envp = env;
    c.path_var = TN_TASK_PATH; /* dash's own default, where the task has no PATH; the
                                  last one where it has several, as dash takes it */
    for (size_t i = 0; c.direct && env[i]; i++)
        if (strncmp(env[i], "PATH=", 5) == 0)
            c.path_var = env[i] + 5;
    t->mgr = p;
    t->pidfd = -1;
    t->task = s->task;
    t->attempt = s->attempt;
    t->mode = p->mode;

    if (p->mode == TN_CONTAIN_CGROUP && (err = task_cgroup(p, t, &c, base, s, msg)) != TN_OK)
        goto fail;
    apply_limits(p, t, s, &c, base);

    int stage = 0, e = ENOSYS;
    bool posix = p->mode == TN_CONTAIN_SESSION && !c.set_user && c.ncg == 0 && c.cgdir < 0 &&
                 !c.nproc && !c.direct;
    if (posix)
        e = spawn_posix(&c, &t->pid);
    if (!posix || e == ENOSYS)
        e = spawn_clone(p, &c, &t->pid, &stage);
    if (e) {
        err = tn_errmsg_set(
            msg, tn_err_from_errno(e),
            "task %" PRIu64 " attempt %" PRIu32 ": %s failed%s%s: %s", s->task, s->attempt,
            stage == ST_EXEC && c.direct ? "exec of the command" :
            stage                        ? stage_names[stage] :
                                           "spawn /bin/sh",
            stage == ST_CHDIR ? " in " : "", stage == ST_CHDIR ? s->exec_dir : "", strerror(e));
        goto fail;
    }
    link_started(p, t);
    tn_info(COMP,
            "msg=started task=%" PRIu64 " attempt=%" PRIu32 " pid=%d mode=%s spawn=%s "
            "limits=\"%s\"",
            t->task, t->attempt, (int)t->pid, tn_contain_mode_name(t->mode),
            posix ? "posix_spawn" : "clone", t->note);
    *out = t;
    t = NULL;
fail:
    if (t)
        discard_attempt(t);
    pthread_mutex_unlock(&p->mu);
    close_child_fds(&c);
    free(env);
    free(tag);
    return err;
}

/* ---------------------------------------------------------------------------------- */
/* The bare contained run (a benchmark's baseline) */

typedef struct bare_ctx {
    char *const *argv, *const *envp;
    int cgprocs; /* the cgroup's cgroup.procs when clone3 cannot join it at birth; or -1 */
} bare_ctx;

__attribute__((no_sanitize_address)) static int bare_child(void *arg)
{
    bare_ctx *b = arg;
    if (b->cgprocs >= 0 && write(b->cgprocs, "0", 1) != 1)
        _exit(126);
    (void)setsid();
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
    execve(b->argv[0], b->argv, b->envp);
    _exit(127);
}

int tn_procs_run_bare(tn_procs *p, char *const argv[], char *const envp[], int *status)
{
    pthread_mutex_lock(&p->mu);
    int e = child_stack(p);
    char cg[4200] = "";
    int cgdir = -1;
    if (!e && p->mode == TN_CONTAIN_CGROUP) {
        pr_sfmt(cg, sizeof(cg), "%s/bare-%" PRIu64, p->root, p->bare_next++);
        if (mkdir(cg, 0755) != 0)
            e = errno;
        else if ((cgdir = open(cg, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
            e = errno;
    }
    bare_ctx b = {.argv = argv, .envp = envp, .cgprocs = -1};
    long k = e ? -e : clone_child(p, bare_child, &b, cgdir, &b.cgprocs);
    pthread_mutex_unlock(&p->mu);
    if (k < 0)
        e = (int)-k;
    while (k > 0 && waitpid((pid_t)k, status, 0) < 0 && errno == EINTR)
        ;
    if (b.cgprocs >= 0)
        (void)close(b.cgprocs);
    if (cgdir >= 0)
        (void)close(cgdir);
    /* the reaped child has left it; a moment's EBUSY while the kernel notes that */
    for (int i = 0; cg[0] && rmdir(cg) != 0 && errno == EBUSY && i < 100; i++)
        usleep(1000);
    return e;
}

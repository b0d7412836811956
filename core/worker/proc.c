/* Task attempts as contained processes: spawn into a cgroup v2 or a new session, reap as
 * a child subreaper, and kill every process of an attempt (TERM, grace, KILL, verify).
 * This file: the manager, its attempts, reaping and the per-attempt state machine, gauges
 * and teardown; the rest is in cgroup.c, procfs.c, kill.c, spawn.c and leftovers.c. */
#include "proc_int.h"

/* ---------------------------------------------------------------------------------- */
/* The manager and its attempts */

tn_err tn_procs_new(const tn_proc_opts *o, tn_procs **out, tn_errmsg *msg)
{
    if (!o || !out || !pr_valid_name(o->name))
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
    p->leftover_grace_ns =
        (int64_t)(o->leftover_grace_ms ? o->leftover_grace_ms : 1000) * NS_PER_MS;
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
            pr_sfmt(root, sizeof(root), "%s", o->cgroup_root);
        } else {
            char mnt[4096], mroot[4096];
            have = pr_find_mount("cgroup2", NULL, mnt, sizeof(mnt), mroot, sizeof(mroot));
            if (have) {
                pr_sfmt(root, sizeof(root), "%s/tern", mnt);
                p->parents[0] = strdup(root);
            } else
                pr_sfmt(why, sizeof(why), "no cgroup2 mount in /proc/self/mountinfo");
        }
        if (have && pr_setup_v2(p, root, why, sizeof(why)))
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
            (p->v1_mem = pr_setup_v1(p, "memory", "memory.limit_in_bytes", &p->parents[1])))
            p->lim_mem = LIM_V1;
        if (p->lim_cpu == LIM_NONE &&
            (p->v1_cpu = pr_setup_v1(p, "cpu", "cpu.cfs_quota_us", &p->parents[2])))
            p->lim_cpu = LIM_V1;
        if (p->lim_pids == LIM_NONE &&
            (p->v1_pids = pr_setup_v1(p, "pids", "pids.max", &p->parents[3])))
            p->lim_pids = LIM_V1;
        snprintf(p->lim_why, sizeof(p->lim_why),
                 "no writable memory/cpu controller in cgroup2 or cgroup v1");
    }
    if (p->lim_pids == LIM_V1)
        p->spare_pids.dir = p->v1_pids;
    if (p->mode == TN_CONTAIN_SESSION && !no_cgroups)
        tn_info(COMP, "msg=\"cgroup v2 unusable, session containment\" why=\"%s\"", why);
    static const char *const lim_names[] = {"none", "v2", "v1"};
    tn_info(COMP,
            "msg=\"procs ready\" worker=%s mode=%s dir=%s kill=%s freeze=%s memory=%s cpu=%s "
            "pids=%s",
            p->name, tn_contain_mode_name(p->mode), p->root ? p->root : "-",
            p->has_kill ? "cgroup.kill" : "signals", p->has_freeze ? "yes" : "no",
            lim_names[p->lim_mem], lim_names[p->lim_cpu],
            p->lim_pids != LIM_NONE ? lim_names[p->lim_pids] :
            geteuid() == 0          ? "none (root: not enforced)" :
                                      "rlimit");
    *out = p;
    return TN_OK;
}

tn_contain_mode tn_procs_mode(const tn_procs *p)
{
    return p->mode;
}
int tn_procs_wait_fd(const tn_procs *p)
{
    return p->epfd;
}
const char *tn_procs_cgroup_dir(const tn_procs *p)
{
    return p->root;
}
pid_t tn_proc_pid(const tn_proc *t)
{
    return t->pid;
}
uint64_t tn_proc_task(const tn_proc *t)
{
    return t->task;
}
uint32_t tn_proc_attempt(const tn_proc *t)
{
    return t->attempt;
}
tn_contain_mode tn_proc_mode(const tn_proc *t)
{
    return t->mode;
}
const char *tn_proc_limits_note(const tn_proc *t)
{
    return t->note;
}
const char *tn_proc_pids_note(const tn_proc *t)
{
    return t->pids_note;
}

tn_pid_ident tn_proc_ident(const tn_proc *t)
{
    return (tn_pid_ident){.pid = t->pid, .start_ticks = t->start};
}

const tn_kill_report *tn_proc_kill_report(const tn_proc *t)
{
    return t && t->has_report ? &t->rep : NULL;
}

/* Watches the leader through a pidfd in p->epfd, so a loop can sleep until an exit. */
void pr_watch_leader(tn_procs *p, tn_proc *t)
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

void pr_proc_destroy(tn_proc *t)
{
    if (!t)
        return;
    unwatch_leader(t);
    free(t->cg);
    if (t->cg_cpu != t->cg_mem)
        free(t->cg_cpu);
    free(t->cg_mem);
    free(t->cg_pids);
    pr_pidset_fini(&t->seen);
    pr_pidset_fini(&t->sig);
    pr_pidset_fini(&t->stopped);
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

tn_proc *pr_find_attempt(tn_procs *p, uint64_t task, uint32_t attempt)
{
    for (tn_proc *t = p->head; t; t = t->next)
        if (t->task == task && t->attempt == attempt && !t->finished)
            return t;
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Reaping and the per-attempt state machine */

void pr_reap_children(tn_procs *p)
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
    /* ended clean: its v1 pids cgroup is kept as a spare (when nobody is left in it) */
    if (t->stage == K_NONE && !t->killed && !t->leftovers && t->cg_pids &&
        pr_cg1_empty(t->cg_pids) && pr_spare_give(p, &p->spare_pids, t->cg_pids)) {
        free(t->cg_pids);
        t->cg_pids = NULL;
    }
    if (t->cg && (e = pr_cg_rmdir_tree(t->cg, 0)) != 0)
        tn_warn(COMP,
                "msg=\"cannot remove task cgroup; left to the sweeper\" path=%s err=\"%s\"",
                t->cg, strerror(e));
    if (t->cg_mem)
        (void)pr_cg_rmdir_tree(t->cg_mem, 0);
    if (t->cg_cpu && t->cg_cpu != t->cg_mem)
        (void)pr_cg_rmdir_tree(t->cg_cpu, 0);
    if (t->cg_pids)
        (void)pr_cg_rmdir_tree(t->cg_pids, 0);
    t->finished = true;
    p->live--;
    int st = t->status;
    tn_info(COMP,
            "msg=finished task=%" PRIu64 " attempt=%" PRIu32 " pid=%d exit=%d signal=%d"
            " killed=%s leftovers=%" PRIu32,
            t->task, t->attempt, (int)t->pid, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
            WIFSIGNALED(st) ? WTERMSIG(st) : 0, t->killed ? "yes" : "no", t->leftovers);
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
    pr_reap_children(p);
    bool scanned = false;
    if (needs_scan(p, now)) {
        pr_fresh_scan(p, now);
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
            bool empty = pr_attempt_empty(p, t);
            if (t->leader_exited && !empty) {
                pidset ids = {0};
                pr_members(p, t, &ids);
                t->leftovers = ids.n;
                pr_pidset_fini(&ids);
                tn_info(COMP,
                        "msg=\"leader exited, killing leftovers\" task=%" PRIu64
                        " attempt=%" PRIu32 " leftovers=%" PRIu32,
                        t->task, t->attempt, t->leftovers);
                pr_start_kill(p, t, p->leftover_grace_ns, now);
            } else if (t->leader_exited) {
                finalize(p, t);
            }
            break;
        }
        case K_TERM:
            if (pr_attempt_empty(p, t))
                pr_kill_done(t, now, NULL);
            else if (now >= t->deadline)
                pr_do_kill(p, t, now);
            break;
        case K_KILL: {
            if (pr_attempt_empty(p, t)) {
                pr_kill_done(t, now, NULL);
                break;
            }
            /* stragglers: a member that appeared since (none should), or a D state */
            pidset ids = {0};
            pr_members(p, t, &ids);
            if (now - t->rep.kill_ns >= p->verify_ns) {
                pr_kill_done(t, now, &ids);
            } else if (t->mode == TN_CONTAIN_CGROUP && p->has_kill) {
                (void)pr_write_at(t->cg, "cgroup.kill", "1");
            } else {
                (void)pr_signal_ids(t, &ids, SIGKILL);
            }
            pr_pidset_fini(&ids);
            break;
        }
        case K_DONE: break;
        }
        if (t->leader_exited && t->stage == K_DONE && !t->finished)
            finalize(p, t);
    maybe_free:
        if (t->finished && t->detached) {
            unlink_proc(p, t);
            pr_proc_destroy(t);
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

void tn_proc_free(tn_proc *t)
{
    if (!t)
        return;
    tn_procs *p = t->mgr;
    pthread_mutex_lock(&p->mu);
    if (t->finished) {
        unlink_proc(p, t);
        pr_proc_destroy(t);
    } else {
        t->detached = true;
        int64_t now = tn_mono_ns();
        if (t->stage == K_NONE || t->stage == K_TERM) {
            t->has_report = true;
            if (t->stage == K_NONE)
                t->rep.term_ns = now;
            pr_do_kill(p, t, now);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void tn_procs_spares(tn_procs *p, uint32_t ahead)
{
    pthread_mutex_lock(&p->mu);
    p->spare_ahead = ahead < 4096 ? ahead : 4096;
    pthread_mutex_unlock(&p->mu);
}

uint32_t tn_procs_fill_spares(tn_procs *p, uint32_t max)
{
    uint32_t made = 0;
    pthread_mutex_lock(&p->mu);
    cgpool *pool = &p->spare_pids;
    while (pool->dir && pool->n < p->spare_ahead && made < max) {
        uint32_t id = p->spare_next++;
        char path[4096];
        pr_sfmt(path, sizeof(path), "%s/spare-%" PRIu32, pool->dir, id);
        if (mkdir(path, 0755) != 0)
            break; /* the sub-tree is gone, or full: the spawn path says why */
        made++;
        if (!pr_spare_push(pool, id))
            (void)rmdir(path);
    }
    pthread_mutex_unlock(&p->mu);
    return made;
}

void tn_procs_stats_get(tn_procs *p, tn_procs_stats *st)
{
    pthread_mutex_lock(&p->mu);
    uint32_t cg = 0;
    (void)pr_walk_tree(p, p->root, true, false, &cg);
    (void)pr_walk_tree(p, p->v1_mem, false, false, &cg);
    if (p->v1_cpu && (!p->v1_mem || strcmp(p->v1_cpu, p->v1_mem) != 0))
        (void)pr_walk_tree(p, p->v1_cpu, false, false, &cg);
    (void)pr_walk_tree(p, p->v1_pids, false, false, &cg);
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
            pr_do_kill(p, t, now);
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
            tn_warn(COMP,
                    "msg=\"attempt still running at shutdown\" task=%" PRIu64
                    " attempt=%" PRIu32 " pid=%d",
                    t->task, t->attempt, (int)t->pid);
        pr_proc_destroy(t);
    }
    p->head = NULL;
    pr_spares_drop(&p->spare_pids);
    /* only if empty: leftovers stay for the next start; a shared parent stays while
     * another worker uses it */
    const char *dirs[8] = {p->root,       p->v1_mem,     p->v1_cpu,     p->v1_pids,
                           p->parents[0], p->parents[1], p->parents[2], p->parents[3]};
    for (int i = 0; i < 8; i++)
        if (dirs[i])
            (void)rmdir(dirs[i]);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    free(p->root);
    free(p->v1_mem);
    free(p->v1_cpu);
    free(p->v1_pids);
    for (int i = 0; i < 4; i++)
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

/* Leftovers of a previous run (found by cgroup or by environment tag) and killed;
 * sweeping of empty task cgroups nobody owns. */
#include "proc_int.h"

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
        pr_pidset_fini(&g->v[i].ids);
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
            sc->mark[i] = pr_pidset_has(&g->v[k].ids, pi->pid, pi->start) ||
                          (sids_of && pr_pidset_has(&sids_of[k], pi->sid, 0));
        }
        pr_scan_mark_descendants(sc, p->self);
        for (size_t i = 0; i < sc->n; i++) {
            if (sc->mark[i] && !pr_pidset_has(&g->v[k].ids, sc->v[i].pid, sc->v[i].start)) {
                (void)pr_pidset_put(&g->v[k].ids, sc->v[i].pid, sc->v[i].start);
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
                (void)pr_write_at(g->v[k].cg, "cgroup.freeze", "1");
        if (pr_scan_all(&p->scan))
            (void)lgroups_grow(p, g, sids_of);
        uint32_t fresh = 0;
        for (size_t k = 0; k < g->n; k++) {
            for (uint32_t i = 0; i < g->v[k].ids.n; i++) {
                tn_pid_ident *id = &g->v[k].ids.v[i];
                if (pr_pidset_has(&stopped, id->pid, id->start_ticks))
                    continue;
                fresh++;
                (void)pr_sig_one(id->pid, id->start_ticks, SIGSTOP);
                (void)pr_pidset_put(&stopped, id->pid, id->start_ticks);
            }
        }
        if (!fresh)
            break;
    }
    pr_pidset_fini(&stopped);
    for (size_t k = 0; k < g->n; k++) {
        if (g->v[k].cg && p->has_kill)
            (void)pr_write_at(g->v[k].cg, "cgroup.kill", "1");
        for (uint32_t i = 0; i < g->v[k].ids.n; i++)
            (void)pr_sig_one(g->v[k].ids.v[i].pid, g->v[k].ids.v[i].start_ticks, SIGKILL);
    }
    int64_t until = tn_mono_ns() + p->verify_ns;
    for (;;) {
        pr_reap_children(p);
        bool alive = false;
        for (size_t k = 0; k < g->n && !alive; k++) {
            if (g->v[k].cg && pr_cg_populated(g->v[k].cg) == 1)
                alive = true;
            for (uint32_t i = 0; i < g->v[k].ids.n && !alive; i++)
                alive =
                    pr_ident_alive(g->v[k].ids.v[i].pid, g->v[k].ids.v[i].start_ticks, NULL);
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
            surv += pr_ident_alive(l->ids.v[i].pid, l->ids.v[i].start_ticks, NULL);
        }
        if (l->cg && p->has_freeze)
            (void)pr_write_at(l->cg, "cgroup.freeze", "0");
        if (l->cg && pr_cg_rmdir_tree(l->cg, 0) != 0)
            tn_warn(COMP, "msg=\"leftover cgroup not removed; left to the sweeper\" path=%s",
                    l->cg);
        tn_logf(surv ? TN_LOG_WARN : TN_LOG_INFO, COMP,
                "msg=\"killed leftovers of a previous run\" task=%" PRIu64 " attempt=%" PRIu32
                " killed=%" PRIu32 " survivors=%" PRIu32,
                l->task, l->attempt, l->ids.n, surv);
        if (cb) {
            tn_leftover lo = {.task = l->task,
                              .attempt = l->attempt,
                              .pids = pids,
                              .npids = pids ? l->ids.n : 0,
                              .survivors = surv};
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
        if (de->d_type != DT_DIR || !pr_parse_task_dir(de->d_name, &task, &attempt) ||
            pr_find_attempt(p, task, attempt))
            continue;
        char *sub = pr_path_join(dir, de->d_name);
        pidarr a = {0};
        if (sub)
            pr_cg_list(sub, &a, 0);
        lgroup *l = a.n ? lgroup_get(g, task, attempt) : NULL;
        for (size_t i = 0; l && i < a.n; i++) {
            pinfo pi;
            if (pr_read_stat(a.v[i], &pi))
                (void)pr_pidset_put(&l->ids, pi.pid, pi.start);
        }
        pr_pidarr_fini(&a);
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
        if (de->d_type != DT_DIR || !pr_parse_task_dir(de->d_name, &task, &attempt) ||
            pr_find_attempt(p, task, attempt))
            continue;
        char *sub = pr_path_join(dir, de->d_name);
        if (sub && pr_cg1_empty(sub))
            (void)pr_cg_rmdir_tree(sub, 0);
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
        if (de->d_type != DT_DIR || !pr_parse_task_dir(de->d_name, &task, &attempt) ||
            pr_find_attempt(p, task, attempt))
            continue;
        char *sub = pr_path_join(p->root, de->d_name);
        if (!sub)
            continue;
        if (p->has_freeze)
            (void)pr_cg_freeze(sub);
        pidarr a = {0};
        pr_cg_list(sub, &a, 0);
        if (!a.n) {
            (void)pr_cg_rmdir_tree(sub, 0); /* empty: a leak for the books, not a leftover */
            free(sub);
            continue;
        }
        lgroup *l = lgroup_get(&g, task, attempt);
        if (!l) {
            pr_pidarr_fini(&a);
            free(sub);
            continue;
        }
        for (size_t i = 0; i < a.n; i++) {
            pinfo pi;
            if (pr_read_stat(a.v[i], &pi))
                (void)pr_pidset_put(&l->ids, pi.pid, pi.start);
        }
        pr_pidarr_fini(&a);
        if (l->cg)
            free(sub);
        else
            l->cg = sub;
    }
    if (d)
        (void)closedir(d);
    collect_v1(p, p->v1_mem, &g);
    collect_v1(p, p->v1_cpu, &g);
    collect_v1(p, p->v1_pids, &g);
    /* tagged processes: session-mode leftovers, and anything that left its cgroup */
    if (pr_scan_all(&p->scan)) {
        for (size_t i = 0; i < p->scan.n; i++) {
            const pinfo pi = p->scan.v[i];
            uint64_t task;
            uint32_t attempt;
            if (pi.pid == p->self || pi.state == 'Z' ||
                !pr_env_tag(pi.pid, p->name, &p->envbuf, &p->envcap, &task, &attempt) ||
                pr_find_attempt(p, task, attempt))
                continue;
            lgroup *l = lgroup_get(&g, task, attempt);
            if (l)
                (void)pr_pidset_put(&l->ids, pi.pid, pi.start);
        }
    }
    /* a tagged session leader takes its whole session (members that dropped the tag) */
    pidset *sids = calloc(g.n ? g.n : 1, sizeof(*sids));
    for (size_t k = 0; sids && k < g.n; k++) {
        for (uint32_t i = 0; i < g.v[k].ids.n; i++) {
            pinfo pi;
            if (pr_read_stat(g.v[k].ids.v[i].pid, &pi) && pi.sid == pi.pid)
                (void)pr_pidset_put(&sids[k], pi.pid, 0);
        }
    }
    lgroups_kill(p, &g, sids, cb, ud);
    for (size_t k = 0; sids && k < g.n; k++)
        pr_pidset_fini(&sids[k]);
    free(sids);
    remove_v1_orphans(p, p->v1_mem);
    remove_v1_orphans(p, p->v1_cpu);
    remove_v1_orphans(p, p->v1_pids);
    /* spare cgroups of a previous run (never populated), with any of ours */
    p->spare_pids.n = 0;
    uint32_t spares = pr_spares_sweep(p->spare_pids.dir);
    if (spares)
        tn_info(COMP, "msg=\"spare cgroups of a previous run removed\" count=%" PRIu32, spares);
    p->adopted_total += g.n;
    if (nattempts)
        *nattempts = (uint32_t)g.n;
    lgroups_fini(&g);
    pthread_mutex_unlock(&p->mu);
    return TN_OK;
}

tn_err tn_procs_kill_pids(tn_procs *p, uint64_t task, uint32_t attempt, const tn_pid_ident *ids,
                          size_t n, tn_leftover_fn cb, void *ud)
{
    if (!p || (n && !ids))
        return TN_ERR_INVAL;
    pthread_mutex_lock(&p->mu);
    lgroups g = {0};
    pidset sids = {0};
    lgroup *l = lgroup_get(&g, task, attempt);
    tn_err err = l ? TN_OK : TN_ERR_NOMEM;
    if (l && pr_scan_all(&p->scan)) {
        for (size_t i = 0; i < n; i++) {
            const pinfo *pi = pr_scan_find(&p->scan, ids[i].pid, NULL);
            if (pi && (ids[i].start_ticks == 0 || pi->start == ids[i].start_ticks)) {
                if (pi->state != 'Z')
                    (void)pr_pidset_put(&l->ids, pi->pid, pi->start);
                (void)pr_pidset_put(&sids, pi->pid, 0);
            } else if (!pi) {
                /* the leader is gone; while its session lives, its pid is not reused */
                (void)pr_pidset_put(&sids, ids[i].pid, 0);
            } /* else the pid names another process now: stale, skipped */
        }
        for (size_t i = 0; i < p->scan.n; i++) {
            const pinfo pi = p->scan.v[i];
            uint64_t tt;
            uint32_t ta;
            if (pi.pid != p->self && pi.state != 'Z' &&
                pr_env_tag(pi.pid, p->name, &p->envbuf, &p->envcap, &tt, &ta) && tt == task &&
                ta == attempt)
                (void)pr_pidset_put(&l->ids, pi.pid, pi.start);
        }
        lgroups_kill(p, &g, &sids, cb, ud);
    }
    pr_pidset_fini(&sids);
    lgroups_fini(&g);
    pthread_mutex_unlock(&p->mu);
    return err;
}

static bool owned(tn_procs *p, const char *name)
{
    uint64_t task;
    uint32_t attempt;
    return !pr_parse_task_dir(name, &task, &attempt) || pr_find_attempt(p, task, attempt);
}

/* Counts (and with `sweep`, removes empty unowned) task cgroups of one sub-tree. */
uint32_t pr_walk_tree(tn_procs *p, const char *dir, bool v2, bool sweep, uint32_t *count)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return 0;
    uint32_t removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t task;
        uint32_t attempt;
        if (de->d_type != DT_DIR || !pr_parse_task_dir(de->d_name, &task, &attempt))
            continue;
        if (count)
            (*count)++;
        if (!sweep || owned(p, de->d_name))
            continue;
        char *sub = pr_path_join(dir, de->d_name);
        if (sub && (v2 ? pr_cg_populated(sub) == 0 : pr_cg1_empty(sub)) &&
            pr_cg_rmdir_tree(sub, 0) == 0) {
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
    uint32_t n = pr_walk_tree(p, p->root, true, true, NULL);
    if (p->v1_mem)
        n += pr_walk_tree(p, p->v1_mem, false, true, NULL);
    if (p->v1_cpu && (!p->v1_mem || strcmp(p->v1_cpu, p->v1_mem) != 0))
        n += pr_walk_tree(p, p->v1_cpu, false, true, NULL);
    if (p->v1_pids)
        n += pr_walk_tree(p, p->v1_pids, false, true, NULL);
    p->swept_total += n;
    pthread_mutex_unlock(&p->mu);
    return n;
}

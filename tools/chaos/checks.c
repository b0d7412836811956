/* `tern chaos`: the invariants, checked from the master's store (its log and projections),
 * the workers' journals and the hosts' /proc and cgroups once the cluster has settled. */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "event.h"
#include "proj.h"
#include "logread.h"
#include "replay.h"
#include "store.h"

/* ------------------------------------------------------------------------------ */
/* reading the master's store and the workers' journals */

static bool wf_final(uint8_t s)
{
    return s < tn_sm_workflow.nstates && tn_sm_workflow.final[s];
}

typedef struct wfrow {
    uint64_t id, parent;
    uint8_t state;
    char name[TN_NAME_MAX + 1];
} wfrow;

/* The master's store, read-only. */
static tn_err open_master(const run *r, tn_store **s, tn_errmsg *m)
{
    char mdir[PATH_MAX + 16];
    daemon_store_dir(r, 0, mdir, sizeof(mdir));
    return tn_log_open_read(mdir, s, m);
}

/* Every workflow projection in the master's store. Returns how many (*out malloc'd), or
 * -1. */
static long read_wfs(const run *r, wfrow **out)
{
    tn_store *s;
    if (open_master(r, &s, NULL) != TN_OK)
        return -1;
    tn_log_wf_iter *it;
    long n = 0, cap = 0;
    wfrow *v = NULL;
    if (tn_log_wf_iter_open(s, &it) == TN_OK) {
        tn_wf_proj p;
        for (tn_err e = tn_log_wf_iter_next(it, &p); e == TN_OK || e == TN_ERR_CORRUPT;
             e = tn_log_wf_iter_next(it, &p)) {
            if (e == TN_ERR_CORRUPT)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                wfrow *nv = realloc(v, (size_t)cap * sizeof(*nv));
                if (!nv)
                    break;
                v = nv;
            }
            v[n] = (wfrow){.id = p.id, .parent = p.parent_wf, .state = p.state};
            snprintf(v[n].name, sizeof(v[n].name), "%s", p.name);
            n++;
        }
        tn_log_wf_iter_close(it);
    }
    tn_log_close_read(s);
    *out = v;
    return n;
}

/* A task projection (state, attempt), or false. */
typedef struct task_lookup {
    tn_store *s;
} task_lookup;

static bool task_get(task_lookup *tl, uint64_t id, tn_task_proj *p)
{
    return tl->s && tn_log_task_get(tl->s, id, p) == TN_OK;
}

/* Free every value of m, then m. */
static void map_free(tn_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            free(m->slots[i].val);
    tn_map_fini(m);
}

/* The workers' journals: per (task, attempt), its starts and ends on each worker. */
typedef struct jent {
    int worker;
    bool start;
    int64_t ns;
    char how[24];
} jent;

typedef struct jatt {
    uint64_t task;
    uint32_t attempt;
    jent *v;
    size_t n, cap;
} jatt;

static uint64_t jkey(uint64_t task, uint32_t attempt)
{
    return task << 20 | (attempt & 0xfffff);
}

static void journals_free(tn_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            free(((jatt *)m->slots[i].val)->v);
    map_free(m);
}

static void journals_read(run *r, tn_map *m)
{
    tn_map_init(m);
    for (int w = 0; w < r->s.workers; w++) {
        char p[PATH_MAX + 32], line[512];
        snprintf(p, sizeof(p), "%s/w%d/journal", r->dir, w);
        FILE *f = fopen(p, "re");
        while (f && fgets(line, sizeof(line), f)) {
            char kw[8], how[24] = "";
            uint64_t task;
            unsigned att;
            long long a3 = 0, a4 = 0;
            jent e = {.worker = w};
            if (sscanf(line, "%7s %" SCNu64 " %u %lld %lld", kw, &task, &att, &a3, &a4) < 4)
                continue;
            if (strcmp(kw, "start") == 0) {
                e.start = true;
                e.ns = a4;
            } else if (strcmp(kw, "end") == 0 &&
                       sscanf(line, "%*s %*s %*s %lld %23s", &a3, how) == 2) {
                e.ns = a3;
                snprintf(e.how, sizeof(e.how), "%s", how);
            } else {
                continue;
            }
            uint64_t key = jkey(task, att);
            jatt *ja = tn_map_get(m, key);
            if (!ja) {
                ja = calloc(1, sizeof(*ja));
                if (!ja || tn_map_put(m, key, ja) != TN_OK) {
                    free(ja);
                    continue;
                }
                ja->task = task;
                ja->attempt = att;
            }
            if (!tn_grow((void **)&ja->v, &ja->cap, ja->n + 1, sizeof(*ja->v)))
                continue;
            ja->v[ja->n++] = e;
        }
        if (f)
            fclose(f);
    }
}

/* The last journal entry of (task, attempt) on worker w: 1 start, 2 end, 0 none. */
static int journal_last(const tn_map *m, uint64_t task, uint32_t attempt, int w)
{
    jatt *ja = tn_map_get(m, jkey(task, attempt));
    int last = 0;
    for (size_t i = 0; ja && i < ja->n; i++)
        if (ja->v[i].worker == w)
            last = ja->v[i].start ? 1 : 2;
    return last;
}

/* ------------------------------------------------------------------------------ */
/* settle: every fault healed, wait (bounded) for final states and no task process left */

/* The workflows not final yet into why. */
static void settled_wfs(run *r, char *why, size_t wlen)
{
    wfrow *wfs = NULL;
    long n = read_wfs(r, &wfs);
    long open = 0;
    char ids[300] = "";
    for (long i = 0; i < n; i++)
        if (!wf_final(wfs[i].state)) {
            if (open++ < 8)
                snprintf(ids + strlen(ids), sizeof(ids) - strlen(ids), "%s%" PRIu64 " %s (%s)",
                         open > 1 ? ", " : "", wfs[i].id, wfs[i].name,
                         tn_sm_state_name(&tn_sm_workflow, wfs[i].state));
        }
    free(wfs);
    if (n < 0)
        snprintf(why, wlen, "the master's store cannot be read");
    else if (open)
        snprintf(why, wlen, "%ld workflow(s) not final: %s%s", open, ids,
                 open > 8 ? ", ..." : "");
}

/* The task processes alive, appended to why. */
static void settled_procs(run *r, char *why, size_t wlen)
{
    tproc *ps = NULL;
    size_t np = daemon_scan_tasks(r, &ps);
    if (np) {
        size_t l = strlen(why);
        snprintf(why + l, wlen - l, "%s%zu task process(es) alive:", l ? "; " : "", np);
        for (size_t i = 0; i < np && i < 6; i++) {
            l = strlen(why);
            snprintf(why + l, wlen - l, " pid %d (w%d task %" PRIu64 " attempt %u)",
                     (int)ps[i].pid, ps[i].worker, ps[i].task, ps[i].attempt);
        }
    }
    free(ps);
}

/* Every worker alive and every report the workers hold persisted; else why. */
static void settled_workers(run *r, char *why, size_t wlen)
{
    reply *rp = calloc(1, sizeof(*rp));
    if (!rp)
        return;
    int alive = chaos_ctl_workers(r, 3000, rp);
    uint64_t outbox = 0;
    for (const char *p = rp->json; (p = strstr(p, "\"outbox_entries\":")); p++)
        outbox += strtoull(p + 17, NULL, 10);
    if (rp->rc != 0)
        snprintf(why, wlen, "the master does not answer: %s", rp->text);
    else if (alive < r->s.workers)
        snprintf(why, wlen, "%d of %d workers alive", alive, r->s.workers);
    else if (outbox)
        snprintf(why, wlen,
                 "%" PRIu64 " report(s) in the workers' outboxes not "
                 "persisted yet",
                 outbox);
    free(rp);
}

bool check_settled(run *r, char *why, size_t wlen)
{
    why[0] = 0;
    settled_wfs(r, why, wlen);
    settled_procs(r, why, wlen);
    if (!why[0])
        settled_workers(r, why, wlen);
    return why[0] == 0;
}

/* ------------------------------------------------------------------------------ */
/* the checks */

/* 4, before the workers stop: no process of an attempt that ended or was superseded, or of
 * a task that is final. */
static void check_procs_live(run *r, const tn_map *jr)
{
    tproc *ps = NULL;
    size_t np = daemon_scan_tasks(r, &ps);
    task_lookup tl = {0};
    if (np && open_master(r, &tl.s, NULL) != TN_OK)
        tl.s = NULL;
    for (size_t i = 0; i < np; i++) {
        tproc *t = &ps[i];
        tn_task_proj p;
        if (t->worker < 0) {
            chaos_violation(r, 4, 0, 0, 0,
                            "pid %d carries this run's marker but no attempt tag: a "
                            "task process that escaped its tag",
                            (int)t->pid);
            continue;
        }
        int last = journal_last(jr, t->task, t->attempt, t->worker);
        bool have = task_get(&tl, t->task, &p);
        if (last == 2)
            chaos_violation(r, 4, 0, t->task, t->attempt,
                            "pid %d on w%d outlived its attempt: "
                            "the worker's journal says it ended",
                            (int)t->pid, t->worker);
        else if (last == 0)
            chaos_violation(r, 4, 0, t->task, t->attempt,
                            "pid %d on w%d runs an attempt the "
                            "worker never journaled",
                            (int)t->pid, t->worker);
        else if (have && p.attempt > t->attempt)
            chaos_violation(r, 4, 0, t->task, t->attempt,
                            "pid %d on w%d still runs a superseded "
                            "attempt (the task is at attempt %u, %s)",
                            (int)t->pid, t->worker, p.attempt,
                            tn_sm_state_name(&tn_sm_task, p.state));
        else if (have && tn_sm_task.final[p.state])
            chaos_violation(r, 4, 0, t->task, t->attempt,
                            "pid %d on w%d still runs but its task "
                            "is %s",
                            (int)t->pid, t->worker, tn_sm_state_name(&tn_sm_task, p.state));
    }
    r->inv_count[4] += np;
    tn_log_close_read(tl.s);
    free(ps);
}

typedef struct tstate {
    uint32_t latest;
    bool worker_task;
    uint32_t handed;              /* the attempt of the last DISPATCHED */
    char worker[TN_NAME_MAX + 1]; /* and the worker it named */
} tstate;

typedef struct logscan {
    run *r;
    tn_map tasks; /* task -> tstate */
    const tn_map *jr;
} logscan;

/* 3, from the log: each result a worker reported and the master applied is of the task's
 * latest attempt, and that attempt ended (journal) before the event was written. */
static void scan_event(logscan *x, const tn_event *ev)
{
    if (ev->machine != TN_MACHINE_TASK)
        return;
    tstate *ts = tn_map_get(&x->tasks, ev->task);
    if (!ts) {
        ts = calloc(1, sizeof(*ts));
        if (!ts || tn_map_put(&x->tasks, ev->task, ts) != TN_OK) {
            free(ts);
            return;
        }
    }
    int64_t att = 0;
    bool has_att = tn_event_int(ev, "attempt", &att);
    if (ev->event == TN_TASK_E_SUBMIT || ev->event == TN_TASK_E_PAUSED) {
        const tn_attr *ty = tn_event_attr(ev, "type");
        if (ty && (tn_str_eq(ty->s, "shell") || tn_str_eq(ty->s, "noop")))
            ts->worker_task = true;
    }
    /* one attempt is handed to one worker: fencing compares attempts, so an attempt that
     * two workers were given cannot tell their results apart */
    const tn_attr *wk = tn_event_attr(ev, "worker");
    if (ev->event == TN_TASK_E_DISPATCHED && has_att && wk && wk->type == TN_ATTR_STR) {
        char name[TN_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.*s", (int)wk->s.len, wk->s.p);
        if (ts->handed == (uint32_t)att && ts->worker[0] && strcmp(ts->worker, name) != 0)
            chaos_violation(x->r, 3, ev->seq, ev->task, (uint32_t)att,
                            "attempt %u handed to %s "
                            "after %s had it: one attempt, two workers",
                            (uint32_t)att, name, ts->worker);
        ts->handed = (uint32_t)att;
        snprintf(ts->worker, sizeof(ts->worker), "%s", name);
    }
    bool result = (ev->event == TN_TASK_E_SUCCEEDED || ev->event == TN_TASK_E_FAILED) &&
                  tn_event_attr(ev, "exit") != NULL;
    if (result && ts->worker_task) {
        x->r->results_checked++;
        uint32_t a = (uint32_t)att;
        const char *what = tn_sm_event_name(&tn_sm_task, ev->event);
        if (!has_att)
            chaos_violation(x->r, 3, ev->seq, ev->task, 0, "%s applied without an attempt",
                            what);
        else if (a != ts->latest)
            chaos_violation(x->r, 3, ev->seq, ev->task, a,
                            "%s applied for attempt %u while the "
                            "task's latest attempt is %u",
                            what, a, ts->latest);
        jatt *ja = tn_map_get(x->jr, jkey(ev->task, a));
        bool started = false, ended = false;
        for (size_t i = 0; ja && i < ja->n; i++) {
            if (ja->v[i].start || strcmp(ja->v[i].how, "spawn-failed") == 0)
                started = true;
            if (!ja->v[i].start && ja->v[i].ns <= ev->at)
                ended = true;
        }
        if (has_att && !started)
            chaos_violation(x->r, 3, ev->seq, ev->task, a,
                            "%s applied for attempt %u, which no "
                            "worker's journal shows starting",
                            what, a);
        else if (has_att && !ended)
            chaos_violation(x->r, 3, ev->seq, ev->task, a,
                            "%s applied for attempt %u before "
                            "that attempt ended on any worker (a superseded or foreign result)",
                            what, a);
    }
    if (has_att && (uint32_t)att > ts->latest)
        ts->latest = (uint32_t)att;
}

/* 3, from the journals: one attempt never ran on two workers at overlapping times. */
static void check_journals(run *r, const tn_map *jr)
{
    for (size_t i = 0; i < jr->cap; i++) {
        if (!jr->slots[i].key)
            continue;
        jatt *ja = jr->slots[i].val;
        r->journal_attempts++;
        /* intervals per worker: a start opens one, the next end on that worker closes it;
         * one never closed runs to the end of time */
        typedef struct ival {
            int w;
            int64_t a, b;
        } ival;
        ival iv[64];
        int n = 0;
        for (size_t k = 0; k < ja->n && n < 64; k++) {
            jent *e = &ja->v[k];
            if (e->start) {
                iv[n++] = (ival){e->worker, e->ns, INT64_MAX};
                continue;
            }
            for (int j = n - 1; j >= 0; j--)
                if (iv[j].w == e->worker && iv[j].b == INT64_MAX) {
                    iv[j].b = e->ns;
                    break;
                }
        }
        bool rerun = false;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b < n; b++)
                rerun |= iv[a].w == iv[b].w;
        if (rerun)
            r->journal_reruns++;
        bool cross = false;
        for (int a = 0; a < n; a++)
            for (int b = a + 1; b < n; b++) {
                if (iv[a].w == iv[b].w)
                    continue;
                cross = true;
                if (iv[a].a < iv[b].b && iv[b].a < iv[a].b)
                    chaos_violation(r, 3, 0, ja->task, ja->attempt,
                                    "attempt ran on w%d and w%d "
                                    "at the same time (journals: started %.3fs apart; %s)",
                                    iv[a].w, iv[b].w, (double)(iv[b].a - iv[a].a) / 1e9,
                                    iv[a].b == INT64_MAX || iv[b].b == INT64_MAX ?
                                        "one never journaled an end" :
                                        "overlapping");
            }
        if (cross)
            r->journal_cross++;
    }
}


/* Task cgroups left populated under the workers' sub-trees (cgroup mode). */
static void check_cgroups(run *r)
{
    char mnt[PATH_MAX];
    if (!chaos_mount_point("cgroup2", NULL, mnt, sizeof(mnt)))
        return;
    for (int w = 0; w < r->s.workers; w++) {
        char name[64], dir[PATH_MAX + 128];
        daemon_worker_name(r, w, name, sizeof(name));
        snprintf(dir, sizeof(dir), "%s/tern/%s", mnt, name);
        DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (strncmp(de->d_name, "task-", 5) != 0)
                continue;
            char procs[PATH_MAX + 400];
            snprintf(procs, sizeof(procs), "%s/%s/cgroup.procs", dir, de->d_name);
            FILE *pf = fopen(procs, "re");
            int pid = 0;
            bool populated = pf && fscanf(pf, "%d", &pid) == 1;
            if (pf)
                fclose(pf);
            if (populated)
                chaos_violation(r, 4, 0, 0, 0,
                                "cgroup %s/%s still holds pid %d after its worker "
                                "stopped",
                                dir, de->d_name, pid);
        }
        if (d)
            closedir(d);
    }
}


/* 2: replay of the master's log. */
static void check_replay(run *r, tn_store *s)
{
    tn_replay_report *rep = calloc(1, sizeof(*rep));
    tn_replay_opts ro = {.verify_chain = true, .compare = true};
    if (!rep || tn_replay_run(s, &ro, rep) != TN_OK)
        chaos_violation(r, 2, 0, 0, 0, "replay could not read the log");
    else if (rep->err)
        chaos_violation(r, 2, rep->bad_seq, 0, 0, "replay: %s: %s", tn_strerror(rep->err),
                        rep->why);
    if (rep) {
        r->replay_events = rep->events;
        snprintf(r->inv_note[2], sizeof(r->inv_note[2]),
                 "%" PRIu64 " events, %" PRIu64 " workflows, %" PRIu64
                 " tasks; chain %s; projections %s",
                 rep->events, rep->workflows, rep->tasks,
                 rep->err == TN_ERR_CHAIN ? "BROKEN" : "intact",
                 rep->err ? "see the violation" : "equal to the stored ones");
    }
    free(rep);
}

/* 3: every event of the master's log in seq order. */
static void check_log(run *r, tn_store *s, const tn_map *jr)
{
    logscan x = {.r = r, .jr = jr};
    tn_map_init(&x.tasks);
    tn_rtxn *t;
    if (tn_store_read_begin(s, &t) == TN_OK) {
        tn_cursor *c;
        if (tn_cursor_open(t, TN_DB_EVENTS, &c) == TN_OK) {
            tn_val k, v;
            tn_event *ev = malloc(sizeof(*ev));
            for (tn_err e = tn_cursor_first(c, &k, &v); ev && e == TN_OK;
                 e = tn_cursor_next(c, &k, &v))
                if (tn_event_decode(v.data, v.len, ev) == TN_OK)
                    scan_event(&x, ev);
            free(ev);
            tn_cursor_close(c);
        }
        tn_store_read_end(t);
    }
    map_free(&x.tasks);
}

/* 5: every start the client was told was accepted is in the log, as its definition. byid:
 * the workflows by id; the instances a user command touched go into touched. */
static void check_starts(run *r, const tn_map *byid, tn_map *touched)
{
    for (int i = 0; i < r->s.workflows; i++) {
        inst *in = &r->inst[i];
        if (!in->id)
            continue;
        r->inv_count[5]++;
        wfrow *w = tn_map_get(byid, in->id);
        const act *st = NULL;
        for (size_t j = 0; j < r->s.n; j++)
            if ((r->s.v[j].k == K_START || r->s.v[j].k == K_START_CRASH) &&
                r->s.v[j].target == i)
                st = &r->s.v[j];
        if (!w)
            chaos_violation(r, 5, 0, 0, 0,
                            "start #%d was accepted as workflow %" PRIu64 " but "
                            "the log has no such instance",
                            i, in->id);
        else if (st && strcmp(w->name, st->wf) != 0)
            chaos_violation(r, 5, 0, 0, 0,
                            "start #%d of %s was accepted as workflow %" PRIu64
                            ", which the log has as %s",
                            i, st->wf, in->id, w->name);
        if (in->touched)
            (void)tn_map_put(touched, in->id, (void *)1);
    }
}

/* 1: workflow w is final, and in the state its definition gives unless a user command
 * touched it or an ancestor. */
static void check_final(run *r, const wfrow *w, const tn_map *byid, const tn_map *touched)
{
    r->inv_count[1]++;
    if (w->state < TN_WF_S__COUNT)
        r->wf_states[w->state]++;
    if (!wf_final(w->state)) {
        chaos_violation(r, 1, 0, 0, 0, "workflow %" PRIu64 " (%s) is %s, not final%s%s", w->id,
                        w->name, tn_sm_state_name(&tn_sm_workflow, w->state),
                        r->s.net[0] ? "; network faults are still injected: " : "",
                        r->s.net[0] ? r->s.net : "");
        return;
    }
    bool tch = false;
    for (const wfrow *a = w; a && !tch; a = a->parent ? tn_map_get(byid, a->parent) : NULL)
        tch = tn_map_get(touched, a->id) != NULL;
    const wdef *d = schedule_def(w->name);
    const char *got = tn_sm_state_name(&tn_sm_workflow, w->state);
    if (!tch && d && strcmp(d->expect, got) != 0)
        chaos_violation(r, 1, 0, 0, 0,
                        "workflow %" PRIu64 " (%s) ended %s; untouched by any "
                        "user command it ends %s whatever the faults",
                        w->id, w->name, got, d->expect);
}

/* 1 and 5: the workflows. */
static void check_workflows(run *r)
{
    wfrow *wfs = NULL;
    long n = read_wfs(r, &wfs);
    if (n < 0) {
        chaos_violation(r, 1, 0, 0, 0, "the workflow projections cannot be read");
        return;
    }
    tn_map byid, touched;
    tn_map_init(&byid);
    for (long i = 0; i < n; i++)
        (void)tn_map_put(&byid, wfs[i].id, &wfs[i]);
    tn_map_init(&touched);
    check_starts(r, &byid, &touched);
    for (long i = 0; i < n; i++)
        check_final(r, &wfs[i], &byid, &touched);
    tn_map_fini(&touched);
    tn_map_fini(&byid);
    free(wfs);
}

/* 2, 3, 5 and 1 (final states), from the master's store once the master is stopped. */
static void check_store(run *r, const tn_map *jr)
{
    tn_store *s;
    tn_errmsg m = {{0}};
    if (open_master(r, &s, &m) != TN_OK) {
        chaos_violation(r, 2, 0, 0, 0, "the master's store cannot be opened: %s", m.text);
        return;
    }
    check_replay(r, s);
    check_log(r, s, jr);
    schedrun_check(r, s);
    tn_log_close_read(s);
    check_workflows(r);
}

void check_all(run *r)
{
    /* on the live hosts, then stop everything */
    tn_map jr;
    journals_read(r, &jr);
    check_procs_live(r, &jr);
    for (int i = r->s.workers; i >= 1; i--)
        daemon_stop(r, i);
    daemon_kill_tasks(r, true);
    check_cgroups(r);
    daemon_stop(r, 0);
    fault_cleanup(r);
    daemon_reap(r);
    journals_free(&jr);
    journals_read(r, &jr); /* with the ends the stops wrote */
    check_journals(r, &jr);
    check_store(r, &jr);
    journals_free(&jr);
    for (int i = 0; i <= r->s.workers; i++)
        if (r->d[i].rss_max > r->rss_bound)
            chaos_violation(r, 6, 0, 0, 0, "%s reached %.1f MiB of RssAnon (bound %.1f MiB)",
                            r->d[i].role, (double)r->d[i].rss_max / MIB,
                            (double)r->rss_bound / MIB);
}

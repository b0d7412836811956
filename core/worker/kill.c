/* The kill ladder: SIGTERM, the grace, SIGKILL (after SIGSTOP rounds or a freeze), then
 * verification that nothing of the attempt is left. */
#include "proc_int.h"

/* ---------------------------------------------------------------------------------- */
/* The kill ladder */

void pr_kill_done(tn_proc *t, int64_t now, const pidset *left)
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
            if (!pr_ident_alive(left->v[i].pid, left->v[i].start_ticks, &st))
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
void pr_do_kill(tn_procs *p, tn_proc *t, int64_t now)
{
    t->stage = K_KILL;
    t->rep.kill_ns = now;
    pidset ids = {0};
    if (t->mode == TN_CONTAIN_CGROUP) {
        if (p->has_freeze)
            (void)pr_cg_freeze(t->cg);
        pr_members(p, t, &ids);
        t->rep.escalated = ids.n > 0;
        if (p->has_kill && pr_write_at(t->cg, "cgroup.kill", "1") == 0) {
            t->rep.cgroup_kill = true;
            for (uint32_t i = 0; i < ids.n; i++)
                pr_report_signalled(t, ids.v[i].pid, ids.v[i].start_ticks);
        } else {
            (void)pr_signal_ids(t, &ids, SIGKILL);
        }
        if (p->has_freeze)
            (void)pr_write_at(t->cg, "cgroup.freeze", "0");
    } else {
        for (int round = 0; round < STOP_ROUNDS_MAX; round++) {
            pr_fresh_scan(p, now);
            pidset cur = {0};
            pr_members(p, t, &cur);
            uint32_t fresh = 0;
            for (uint32_t i = 0; i < cur.n; i++) {
                if (pr_pidset_has(&t->stopped, cur.v[i].pid, cur.v[i].start_ticks))
                    continue;
                fresh++;
                if (pr_sig_one(cur.v[i].pid, cur.v[i].start_ticks, SIGSTOP))
                    (void)pr_pidset_put(&t->stopped, cur.v[i].pid, cur.v[i].start_ticks);
            }
            pr_pidset_fini(&ids);
            ids = cur;
            if (!fresh)
                break;
        }
        t->rep.escalated = ids.n > 0;
        (void)pr_signal_ids(t, &ids, SIGKILL);
    }
    tn_info(COMP,
            "msg=\"kill: SIGKILL\" task=%" PRIu64 " attempt=%" PRIu32 " processes=%" PRIu32
            " via=%s",
            t->task, t->attempt, ids.n, t->rep.cgroup_kill ? "cgroup.kill" : "signals");
    pr_pidset_fini(&ids);
}

/* SIGTERM to a snapshot of the attempt (frozen in cgroup mode, so the snapshot is
 * complete). Processes a TERM handler starts during the grace are not TERMed: they are
 * the graceful shutdown; SIGKILL reaches them at the deadline. */
static void do_term(tn_procs *p, tn_proc *t, int64_t now)
{
    pidset ids = {0};
    if (t->mode == TN_CONTAIN_CGROUP) {
        if (p->has_freeze)
            (void)pr_cg_freeze(t->cg);
        pr_members(p, t, &ids);
        (void)pr_signal_ids(t, &ids, SIGTERM);
        if (p->has_freeze)
            (void)pr_write_at(t->cg, "cgroup.freeze", "0");
    } else {
        pr_fresh_scan(p, now);
        pr_members(p, t, &ids);
        (void)pr_signal_ids(t, &ids, SIGTERM);
    }
    pr_pidset_fini(&ids);
}

void pr_start_kill(tn_procs *p, tn_proc *t, int64_t grace_ns, int64_t now)
{
    if (t->stage == K_TERM) {
        if (now + grace_ns < t->deadline)
            t->deadline = now + grace_ns;
        if (grace_ns == 0)
            pr_do_kill(p, t, now);
        return;
    }
    if (t->stage != K_NONE)
        return;
    t->has_report = true;
    t->stage = K_TERM;
    t->rep.term_ns = now;
    t->deadline = now + grace_ns;
    if (grace_ns == 0) {
        pr_do_kill(p, t, now);
        return;
    }
    do_term(p, t, now);
    tn_info(COMP,
            "msg=\"kill: SIGTERM\" task=%" PRIu64 " attempt=%" PRIu32 " signalled=%" PRIu32
            " grace_ms=%" PRId64,
            t->task, t->attempt, t->rep.signalled, (int64_t)(grace_ns / NS_PER_MS));
}

tn_err tn_proc_kill(tn_procs *p, tn_proc *t, uint64_t grace_ms)
{
    if (!p || !t || t->mgr != p)
        return TN_ERR_INVAL;
    pthread_mutex_lock(&p->mu);
    if (!t->finished) {
        if (!t->leader_exited)
            t->killed = true;
        int64_t grace =
            grace_ms > INT64_MAX / NS_PER_MS ? INT64_MAX / 2 : (int64_t)grace_ms * NS_PER_MS;
        pr_start_kill(p, t, grace, tn_mono_ns());
    }
    pthread_mutex_unlock(&p->mu);
    return TN_OK;
}

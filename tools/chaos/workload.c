/* `tern chaos`: the control socket, and the workload it carries: the definitions applied
 * before the window, then the schedule's starts and user commands from a thread of their
 * own while the main thread injects the faults. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos.h"
#include "cli.h"
#include "def.h"
#include "rpc.h"

void chaos_ctl_call(run *r, tn_ctl_req *q, int timeout_ms, reply *out)
{
    tn_buf b = {0};
    out->rc = -1;
    out->text[0] = out->json[0] = 0;
    if (tn_ctl_req_encode(q, &b)) {
        snprintf(out->text, sizeof(out->text), "request too large");
        return;
    }
    void *raw = NULL;
    size_t rl = 0;
    tn_errmsg m = {{0}};
    tn_err e = tn_rpc_call(r->ctl_url, b.data, b.size, timeout_ms, &raw, &rl, &m);
    tn_buf_free(&b);
    if (e) {
        out->rc = e == TN_ERR_TIMEOUT ? -2 : -1;
        snprintf(out->text, sizeof(out->text), "%s", m.text);
        return;
    }
    tn_ctl_rep rep;
    if (tn_ctl_rep_decode(raw, rl, &rep) == TN_OK) {
        out->rc = rep.ok ? 0 : 1;
        snprintf(out->text, sizeof(out->text), "%.*s", (int)rep.text.len, rep.text.p);
        snprintf(out->json, sizeof(out->json), "%.*s", (int)rep.json.len, rep.json.p);
    } else {
        snprintf(out->text, sizeof(out->text), "malformed reply");
    }
    free(raw);
}

/* A command as a user would send it: while nothing listens (the master is down), try again
 * for a while; a timeout leaves the outcome unknown and is not retried. */
static void ctl_retry(run *r, tn_ctl_req *q, reply *out)
{
    int64_t until = now_ms() + 8000;
    for (;;) {
        chaos_ctl_call(r, q, CTL_TIMEOUT_MS, out);
        if (out->rc != -1 || now_ms() > until || atomic_load(&chaos_interrupted))
            return;
        sleep_ms(200);
    }
}

static uint64_t json_u64(const char *json, const char *key)
{
    const char *p = strstr(json, key);
    return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

int chaos_ctl_workers(run *r, int timeout_ms, reply *rp)
{
    tn_ctl_req *q = calloc(1, sizeof(*q));
    int alive = 0;
    *rp = (reply){.rc = -1};
    if (!q)
        return 0;
    q->cmd = TN_STR("workers");
    chaos_ctl_call(r, q, timeout_ms, rp);
    free(q);
    for (const char *p = rp->json; (p = strstr(p, "\"alive\":true")); p++)
        alive++;
    return alive;
}

int workload_apply_defs(run *r)
{
    char dd[PATH_MAX + 8];
    snprintf(dd, sizeof(dd), "%s/defs", r->dir);
    tn_mkdir_p(dd);
    /* chaos_child before chaos_parent, which names it */
    static const int order[NDEFS] = {5, 0, 1, 2, 3, 4};
    for (int oi = 0; oi < NDEFS; oi++) {
        const wdef *w = &chaos_defs[order[oi]];
        char path[PATH_MAX + 80];
        snprintf(path, sizeof(path), "%s/%s.yaml", dd, w->name);
        FILE *f = fopen(path, "we");
        if (!f || fputs(w->yaml, f) < 0 || fclose(f) != 0)
            return tn_cli_fail("chaos", "%s: cannot write: %m", path);
        tn_def *d;
        tn_errmsg m = {{0}};
        if (tn_def_parse_file(path, &d, &m))
            return tn_cli_fail("chaos", "%s", m.text);
        char *bytes;
        size_t len;
        if (tn_def_encode(d, &bytes, &len)) {
            tn_def_free(d);
            return tn_cli_fail("chaos", "%s: cannot encode", path);
        }
        tn_def_free(d);
        tn_ctl_req *q = calloc(1, sizeof(*q));
        reply rp;
        if (!q) {
            free(bytes);
            return tn_cli_fail("chaos", "out of memory");
        }
        q->cmd = TN_STR("apply");
        q->file = tn_str_c(path);
        q->bytes = (tn_str){bytes, (uint32_t)len};
        q->actor = TN_STR("user:chaos");
        ctl_retry(r, q, &rp);
        free(q);
        free(bytes);
        if (rp.rc != 0)
            return tn_cli_fail("chaos", "%s: the master did not take the definition: %s", path,
                               rp.text);
    }
    return 0;
}

/* ------------------------------------------------------------------------------ */
/* the workload thread */

/* A task of the instance to kill: a running one, else one being dispatched. */
static uint64_t pick_task(const char *json)
{
    const char *want[] = {"\"state\":\"RUNNING_EXECUTION\"", "\"state\":\"DISPATCH\""};
    const char *tasks = strstr(json, "\"tasks\":[");
    if (!tasks)
        return 0;
    for (int w = 0; w < 2; w++) {
        for (const char *p = tasks; (p = strstr(p, "{\"id\":")); p++) {
            const char *end = strchr(p, '}');
            const char *s = strstr(p, want[w]);
            if (s && end && s < end)
                return strtoull(p + 6, NULL, 10);
        }
    }
    return 0;
}

static void do_start(run *r, const act *a)
{
    tn_ctl_req *q = calloc(1, sizeof(*q));
    reply rp;
    if (!q)
        return;
    q->cmd = TN_STR("start");
    q->name = tn_str_c(a->wf);
    q->actor = TN_STR("user:chaos");
    ctl_retry(r, q, &rp);
    free(q);
    pthread_mutex_lock(&r->mu);
    inst *in = &r->inst[a->target];
    if (rp.rc == 0 && (in->id = json_u64(rp.json, "\"id\":")) > 0) {
        in->outcome = 1;
        r->starts_accepted++;
        if (a->k == K_START_CRASH && daemon_kill(r, 0, a->ms)) {
            r->faults[K_START_CRASH]++;
            chaos_say(r,
                      "start-crash: %s instance %" PRIu64
                      " accepted; master SIGKILLed at once, "
                      "restart in %" PRId64 "ms",
                      a->wf, in->id, a->ms);
        } else if (a->k == K_START_CRASH) {
            r->skipped[K_START_CRASH]++;
        }
    } else if (rp.rc == 1) {
        in->outcome = 2;
        if (strstr(rp.text, "full"))
            r->starts_refused_full++;
        else
            r->starts_refused_other++;
        snprintf(r->last_refusal, sizeof(r->last_refusal), "%.290s", rp.text);
    } else {
        in->outcome = 3;
        r->starts_unknown++;
    }
    pthread_mutex_unlock(&r->mu);
}

static void do_command(run *r, const act *a)
{
    pthread_mutex_lock(&r->mu);
    inst *in = &r->inst[a->target];
    uint64_t id = in->id;
    if (id)
        in->touched = true;
    pthread_mutex_unlock(&r->mu);
    if (!id)
        return; /* its start was not accepted */
    tn_ctl_req *q = calloc(1, sizeof(*q));
    reply rp = {.rc = 0};
    if (!q)
        return;
    q->actor = TN_STR("user:chaos");
    q->id = id;
    if (a->k == K_KILL) {
        q->cmd = TN_STR("status");
        ctl_retry(r, q, &rp);
        q->id = rp.rc == 0 ? pick_task(rp.json) : 0;
    }
    if (q->id) {
        q->cmd = tn_str_c(chaos_kind_names[a->k]);
        ctl_retry(r, q, &rp);
    }
    free(q);
    pthread_mutex_lock(&r->mu);
    if (rp.rc == 0)
        r->cmds_ok[a->k]++;
    else if (rp.rc == 1) {
        r->cmds_refused[a->k]++;
        snprintf(r->last_cmd_refusal, sizeof(r->last_cmd_refusal), "%s #%d: %.250s",
                 chaos_kind_names[a->k], a->target, rp.text);
    } else
        r->cmds_unknown[a->k]++;
    pthread_mutex_unlock(&r->mu);
}

void *workload_thread(void *arg)
{
    run *r = arg;
    for (size_t i = 0; i < r->s.n && !atomic_load(&chaos_interrupted); i++) {
        const act *a = &r->s.v[i];
        if (IS_FAULT(a->k))
            continue;
        if (now_ms() - r->t0 >= r->s.duration_ms) {
            /* behind schedule (calls waited on a master that was down): the window is
             * over, and with it the workload */
            pthread_mutex_lock(&r->mu);
            r->not_issued++;
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        while (now_ms() - r->t0 < a->at_ms && !atomic_load(&chaos_interrupted))
            sleep_ms(a->at_ms - (now_ms() - r->t0) > 50 ? 50 : a->at_ms - (now_ms() - r->t0));
        if (a->k == K_START || a->k == K_START_CRASH)
            do_start(r, a);
        else
            do_command(r, a);
    }
    atomic_store(&r->workload_done, true);
    return NULL;
}

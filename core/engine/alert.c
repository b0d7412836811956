/* Alerts in the engine: which outcomes raise which alerts (a RAISE event each, with what
 * the sender needs), and the sender's outcomes recorded as events. Delivery itself is the
 * master's (core/master/alerts.c), off the engine thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"

tn_err eng_alert_defaults(tn_engine *e, const tn_def_alert *a, uint32_t n)
{
    if (!n)
        return TN_OK;
    if (!(e->alerts = calloc(n, sizeof(*e->alerts))))
        return TN_ERR_NOMEM;
    e->nalerts = n;
    for (uint32_t i = 0; i < n; i++) {
        tn_def_alert *d = &e->alerts[i];
        d->mask = a[i].mask;
        d->on = a[i].on ? strdup(a[i].on) : NULL;
        d->webhook = a[i].webhook ? strdup(a[i].webhook) : NULL;
        d->command = a[i].command ? strdup(a[i].command) : NULL;
        if ((a[i].on && !d->on) || (a[i].webhook && !d->webhook) ||
            (a[i].command && !d->command))
            return TN_ERR_NOMEM;
    }
    return TN_OK;
}

void eng_alert_close(tn_engine *e)
{
    for (uint32_t i = 0; i < e->nalerts; i++) {
        free(e->alerts[i].on);
        free(e->alerts[i].webhook);
        free(e->alerts[i].command);
    }
    free(e->alerts);
    e->alerts = NULL;
    e->nalerts = 0;
}

static tn_err raise_one(tn_engine *e, wf_run *w, tn_def_alert_on on, task_run *t,
                        const char *reason, const tn_def_alert *a)
{
    tn_event ev;
    uint64_t id = tn_evlog_next_seq(tn_engine_log(e));
    /* under its instance's id too, so the instance's audit shows its alerts */
    eng_event(&ev, TN_MACHINE_ALERT, TN_ALERT_E_RAISE, w->id, 0);
    tn_event_set_int(&ev, "alert", (int64_t)id);
    tn_event_set_str(&ev, "workflow", w->def->name);
    tn_event_set_int(&ev, "instance", (int64_t)w->id);
    if (t) {
        tn_event_set_int(&ev, "task", (int64_t)t->id);
        tn_event_set_str(&ev, "task_name", w->def->tasks[t->node].name);
    }
    tn_event_set_str(&ev, "on", tn_def_alert_on_name(on));
    tn_event_set_str(&ev, "kind", a->webhook ? "webhook" : "command");
    tn_event_set_str(&ev, "target", a->webhook ? a->webhook : a->command);
    tn_event_set_str(&ev, "state",
                     t ? tn_sm_state_name(&tn_sm_task, t->state) :
                         tn_sm_state_name(&tn_sm_workflow, w->state));
    if (reason && *reason)
        tn_event_set_str(&ev, "reason", reason);
    else if (t && t->why && *t->why)
        tn_event_set_str(&ev, "reason", t->why);
    return eng_emit(e, &ev);
}

tn_err eng_alert(tn_engine *e, wf_run *w, tn_def_alert_on on, task_run *t, const char *reason)
{
    const tn_def_alert *list = w->def->n_alerts ? w->def->alerts : e->alerts;
    uint32_t n = w->def->n_alerts ? w->def->n_alerts : e->nalerts;
    tn_err err = TN_OK;
    if (w->dry_run)
        return TN_OK;
    for (uint32_t i = 0; i < n && !err; i++)
        if (list[i].mask & (1u << on))
            err = raise_one(e, w, on, t, reason, &list[i]);
    return err;
}

tn_err eng_alert_cmd(tn_engine *e, tn_cmd *c)
{
    tn_alert_proj p;
    tn_err err = tn_evlog_alert(tn_engine_log(e), c->id, &p);
    if (err == TN_ERR_NOENT) {
        c->err = TN_ERR_NOENT;
        snprintf(c->msg, sizeof(c->msg), "no alert %" PRIu64, c->id);
        return TN_OK;
    }
    if (err)
        return err;
    uint8_t state = p.state;
    uint64_t wf = p.wf;
    tn_alert_proj_fini(&p);
    if (state != TN_ALERT_S_PENDING) { /* a late second outcome: the first one stands */
        c->err = TN_ERR_ILLEGAL;
        snprintf(c->msg, sizeof(c->msg), "alert %" PRIu64 " is %s already", c->id,
                 tn_sm_state_name(&tn_sm_alert, state));
        return TN_OK;
    }
    bool drop = c->name && !strcmp(c->name, "drop");
    tn_event ev;
    eng_event(&ev, TN_MACHINE_ALERT,
              drop             ? TN_ALERT_E_DROP :
              c->sched_ns == 0 ? TN_ALERT_E_DELIVER :
                                 TN_ALERT_E_ATTEMPT,
              wf, 0);
    tn_event_set_int(&ev, "alert", (int64_t)c->id);
    if (drop) {
        tn_event_set_str(&ev, "reason", c->text ? c->text : "dropped");
    } else {
        tn_event_set_int(&ev, "attempt", c->slots);
        tn_event_set_str(&ev, "outcome", c->text ? c->text : "");
        if (c->sched_ns)
            tn_event_set_int(&ev, "retry_at", c->sched_ns);
    }
    return eng_emit(e, &ev);
}

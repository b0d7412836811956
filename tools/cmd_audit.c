/* `tern audit WF_ID`: the timeline of one workflow instance and its tasks, read from the
 * event log (the store is only read). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "util.h"
#include "sm.h"
#include "logread.h"
#include "cli.h"

typedef struct audit_opts {
    const char *data;
    bool json;
} audit_opts;

static const tn_opt audit_table[] = {{"data", 0, TN_OPT_STR, offsetof(audit_opts, data), "DIR",
                                      .help = "the data directory (default ./tern-data)"},
                                     {"json", 0, TN_OPT_FLAG, offsetof(audit_opts, json), NULL,
                                      .help = "one JSON array of events"},
                                     {0}};

const tn_opt_cmd tn_spec_audit = {
    "audit", (const char *const[]){"WF_ID", NULL},
    "Print the timeline of one workflow instance and its tasks, from the log: time,\n"
    "actor, machine, id, event, from -> to, and the attributes the transition used.\n",
    audit_table, .max_args = 1};

typedef struct audit_ctx {
    bool json;
    size_t n;
    int actor_w; /* the widest actor: the columns after it stay aligned */
} audit_ctx;

static int measure(void *vctx, const tn_event *ev)
{
    audit_ctx *x = vctx;
    if ((int)ev->actor.len > x->actor_w)
        x->actor_w = (int)ev->actor.len;
    return 0;
}

/* Attributes that hold a time (unix ns): shown as ISO 8601, never as a raw count. */
static bool is_time_attr(const tn_attr *a)
{
    return a->type == TN_ATTR_INT && a->i > 0 &&
           (tn_str_eq(a->key, "due") || tn_str_eq(a->key, "sched"));
}

static void print_attr_value(const tn_attr *a, bool json)
{
    if (is_time_attr(a)) {
        char ts[48];
        tn_cli_time_ns(a->i, ts, sizeof(ts));
        printf(json ? "\"%s\"" : "%s", ts);
    } else if (a->type == TN_ATTR_INT) {
        printf("%" PRId64, a->i);
    } else if (a->type == TN_ATTR_BIN) {
        if (json)
            printf("{\"bytes\":%u}", a->s.len);
        else
            printf("<%u bytes>", a->s.len);
    } else if (json) {
        tn_json_str(stdout, a->s.p, a->s.len);
    } else {
        bool plain = a->s.len > 0;
        for (uint32_t i = 0; i < a->s.len; i++)
            if (a->s.p[i] <= ' ' || a->s.p[i] == '"' || a->s.p[i] == '=')
                plain = false;
        if (plain)
            printf("%.*s", (int)a->s.len, a->s.p);
        else
            tn_json_str(stdout, a->s.p, a->s.len > 200 ? 200 : a->s.len);
    }
}

static int audit_one(void *vctx, const tn_event *ev)
{
    audit_ctx *x = vctx;
    const tn_sm *sm = tn_sm_get(ev->machine);
    char ts[40];
    tn_fmt_time(ev->at, ts, sizeof(ts));
    uint64_t id = ev->machine == TN_MACHINE_TASK ? ev->task : ev->wf;
    if (x->json) {
        tn_cli_time_ns(ev->at, ts, sizeof(ts));
        printf("%s{\"seq\":%" PRIu64 ",\"at\":\"%s\",\"actor\":", x->n ? ",\n " : "", ev->seq,
               ts);
        tn_json_str(stdout, ev->actor.p, ev->actor.len);
        printf(",\"machine\":\"%s\",\"id\":%" PRIu64 ",\"event\":\"%s\",\"from\":\"%s\","
               "\"to\":\"%s\",\"attrs\":{",
               sm->name, id, tn_sm_event_name(sm, ev->event), tn_sm_state_name(sm, ev->from),
               tn_sm_state_name(sm, ev->to));
        for (uint32_t i = 0; i < ev->nattrs; i++) {
            printf("%s", i ? "," : "");
            tn_json_str(stdout, ev->attrs[i].key.p, ev->attrs[i].key.len);
            putchar(':');
            print_attr_value(&ev->attrs[i], true);
        }
        printf("}}");
    } else {
        printf("%s %6" PRIu64 " %-*.*s %-8s %-5" PRIu64 " %-13s %s -> %s", ts, ev->seq,
               x->actor_w, (int)ev->actor.len, ev->actor.p, sm->name, id,
               tn_sm_event_name(sm, ev->event), tn_sm_state_name(sm, ev->from),
               tn_sm_state_name(sm, ev->to));
        for (uint32_t i = 0; i < ev->nattrs; i++) {
            printf(" %.*s=", (int)ev->attrs[i].key.len, ev->attrs[i].key.p);
            print_attr_value(&ev->attrs[i], false);
        }
        putchar('\n');
    }
    x->n++;
    return 0;
}

int tn_cmd_audit(int argc, char **argv)
{
    audit_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_audit, argc, argv, &o, &a);
    if (rc)
        return rc;
    uint64_t wf = 0;
    bool ok = a.n == 1 && tn_cli_id(a.v[0], &wf);
    tn_opt_args_free(&a);
    if (!ok)
        return tn_cli_usage("audit", "give one workflow instance id (a positive integer)");
    audit_ctx x = {.json = o.json, .actor_w = 5};
    tn_store *s;
    if (tn_cli_store_ro("audit", o.data, &s))
        return 1;
    int fr;
    /* a first pass sizes the columns, and finds a missing instance before any output */
    tn_err e = tn_replay_wf_events(s, wf, measure, &x, &fr);
    if (!e && x.json)
        printf("[");
    else if (!e)
        printf("%-24s %6s %-*s %-8s %-5s %-13s %s\n", "TIME", "SEQ", x.actor_w, "ACTOR",
               "MACHINE", "ID", "EVENT", "FROM -> TO  ATTRS");
    if (!e)
        e = tn_replay_wf_events(s, wf, audit_one, &x, &fr);
    if (x.json && x.n)
        printf("]\n");
    rc = 0;
    if (e == TN_ERR_NOENT)
        rc = tn_cli_fail("audit",
                         "%s: workflow instance %" PRIu64 " has no events; list "
                         "instances with `tern ls` or check --data",
                         tn_log_store_path(s), wf);
    else if (e)
        rc = tn_cli_fail("audit", "%s: cannot read the events of workflow %" PRIu64 ": %s",
                         tn_log_store_path(s), wf, tn_strerror(e));
    tn_log_close_read(s);
    return rc;
}

/* `tern audit WF_ID`: the timeline of one workflow instance and its tasks, read from the
 * event log (the store is only read). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "replay.h"
#include "util.h"
#include "sm.h"
#include "logread.h"
#include "cli.h"
#include "ctlsrv.h"
#include "jsonout.h"
#include "params.h"
#include "sm_gen.h"

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
    json_t *events; /* --json: the array printed at the end */
    size_t n;
    tn_wf_params params; /* the instance's effective params, shown with its SUBMIT */
    int actor_w;         /* the widest actor, escaped: the columns after it stay aligned */
} audit_ctx;

/* A map of params (var pool, overrides, inherited, effective): key=value pairs, values
 * escaped as JSON strings where a space, quote, '=' or control character would make the
 * line ambiguous. */
static void print_kv(const tn_kv *kv)
{
    tn_sb b = {0};
    tn_sb_printf(&b, "{");
    tn_kv_text(&b, kv);
    tn_sb_printf(&b, "}");
    fputs(b.s ? b.s : "", stdout);
    free(b.s);
}

static int measure(void *vctx, const tn_event *ev)
{
    audit_ctx *x = vctx;
    char actor[TN_ACTOR_MAX * 4 + 1];
    tn_ctl_escape(ev->actor.p, ev->actor.len, actor, sizeof(actor));
    if ((int)strlen(actor) > x->actor_w)
        x->actor_w = (int)strlen(actor);
    return 0;
}

/* Attributes that hold a time (unix ns): shown as ISO 8601, never as a raw count. */
static bool is_time_attr(const tn_attr *a)
{
    return a->type == TN_ATTR_INT && a->i > 0 &&
           (tn_str_eq(a->key, "due") || tn_str_eq(a->key, "sched"));
}

/* An attribute's value in the JSON: a time as ISO 8601, a map as an object. */
static json_t *attr_json(const tn_attr *a)
{
    char ts[48];
    if (is_time_attr(a)) {
        tn_cli_time_ns(a->i, ts, sizeof(ts));
        return json_string(ts);
    }
    return tn_jo_attr(a);
}

static void print_attr_value(const tn_attr *a)
{
    if (is_time_attr(a)) {
        char ts[48];
        tn_cli_time_ns(a->i, ts, sizeof(ts));
        printf("%s", ts);
    } else if (a->type == TN_ATTR_INT) {
        printf("%" PRId64, a->i);
    } else if (a->type == TN_ATTR_BIN) {
        tn_kv *kv = NULL;
        if (tn_kv_decode(a->s.p, a->s.len, &kv) == TN_OK) {
            print_kv(kv);
            tn_kv_free(kv);
        } else {
            printf("<%u bytes>", a->s.len);
        }
    } else {
        bool plain = a->s.len > 0;
        for (uint32_t i = 0; i < a->s.len; i++)
            if (a->s.p[i] <= ' ' || a->s.p[i] == '"' || a->s.p[i] == '=' || a->s.p[i] == 0x7f)
                plain = false;
        if (plain)
            printf("%.*s", (int)a->s.len, a->s.p);
        else
            /* at most 200 bytes, not cutting a character in two */
            tn_json_str(stdout, a->s.p,
                        a->s.len > 200 ? tn_utf8_complete(a->s.p, 200) : a->s.len);
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
        json_t *attrs = json_object();
        for (uint32_t i = 0; attrs && i < ev->nattrs; i++)
            tn_jo_setn(attrs, ev->attrs[i].key.p, ev->attrs[i].key.len,
                       attr_json(&ev->attrs[i]));
        json_t *j = json_pack(
            "{s:I,s:s,s:o,s:s,s:I,s:s,s:s,s:s,s:o}", "seq", (json_int_t)ev->seq, "at", ts,
            "actor", tn_jo_strn(ev->actor.p, ev->actor.len), "machine", sm->name, "id",
            (json_int_t)id, "event", tn_sm_event_name(sm, ev->event), "from",
            tn_sm_state_name(sm, ev->from), "to", tn_sm_state_name(sm, ev->to), "attrs", attrs);
        if (j && ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_SUBMIT) {
            tn_jo_set(j, "effective", tn_jo_kv(x->params.effective));
            if (x->params.why[0])
                tn_jo_set(j, "params_error", tn_jo_str(x->params.why));
        }
        tn_jo_push(x->events, j);
    } else {
        /* an actor is a peer's name (a unix user, a token, a certificate; any string in
         * an old log): escaped, so a row stays one line and its columns stay aligned */
        char actor[TN_ACTOR_MAX * 4 + 1];
        tn_ctl_escape(ev->actor.p, ev->actor.len, actor, sizeof(actor));
        printf("%s %6" PRIu64 " %-*s %-8s %-5" PRIu64 " %-13s %s -> %s", ts, ev->seq,
               x->actor_w, actor, sm->name, id, tn_sm_event_name(sm, ev->event),
               tn_sm_state_name(sm, ev->from), tn_sm_state_name(sm, ev->to));
        for (uint32_t i = 0; i < ev->nattrs; i++) {
            printf(" %.*s=", (int)ev->attrs[i].key.len, ev->attrs[i].key.p);
            print_attr_value(&ev->attrs[i]);
        }
        if (ev->machine == TN_MACHINE_WORKFLOW && ev->event == TN_WF_E_SUBMIT) {
            printf(" effective=");
            print_kv(x->params.effective);
            if (x->params.why[0]) {
                printf(" params_error=");
                tn_json_str(stdout, x->params.why, strlen(x->params.why));
            }
        }
        putchar('\n');
    }
    x->n++;
    return 0;
}

/* The array, an event a line as it always was: `[{...},\n {...}]`. */
static tn_err print_events(json_t *events)
{
    tn_sb b = {0};
    tn_sb_printf(&b, "[");
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        if (i)
            tn_sb_printf(&b, ",\n ");
        if (!tn_jo_dump(&b, json_incref(ev))) {
            free(b.s);
            return TN_ERR_NOMEM;
        }
    }
    if (json_array_size(events))
        printf("%s]\n", b.s);
    free(b.s);
    return TN_OK;
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
    (void)tn_wf_params_read(s, wf, &x.params);
    /* a first pass sizes the columns, and finds a missing instance before any output */
    tn_err e = tn_replay_wf_events(s, wf, measure, &x, &fr);
    if (!e && x.json && !(x.events = json_array()))
        e = TN_ERR_NOMEM;
    else if (!e && !x.json)
        printf("%-24s %6s %-*s %-8s %-5s %-13s %s\n", "TIME", "SEQ", x.actor_w, "ACTOR",
               "MACHINE", "ID", "EVENT", "FROM -> TO  ATTRS");
    if (!e)
        e = tn_replay_wf_events(s, wf, audit_one, &x, &fr);
    tn_wf_params_free(&x.params);
    if (!e && x.json)
        e = print_events(x.events);
    json_decref(x.events);
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

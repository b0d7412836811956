/* `tern schedule set|ls|show|pause|resume|rm|next|trigger`: a workflow's schedule, changed
 * through the running master, read from it or (no master) from the store; `next --cron`
 * tries an expression with no store at all. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctlsched.h"
#include "schedule.h"
#include "util.h"
#include "cli.h"

typedef struct sched_opts {
    tn_ctl_common c;
    const char *cron, *tz, *start, *end, *overlap, *priority, *worker_group;
    const char *failure_strategy, *reason, *after;
    tn_opt_kv param;
    uint64_t catchup; /* ms; UINT64_MAX: not given */
    uint64_t n;
    bool pause_on_failure, all;
} sched_opts;

static const tn_opt sched_table[] = {
    {"cron", 0, TN_OPT_STR, offsetof(sched_opts, cron), "EXPR",
     .help = "set, next: when it fires: Quartz (sec min hour dom month dow [year])\n"
             "or Unix (min hour dom month dow); see docs/SCHEDULES.md"},
    {"tz", 0, TN_OPT_STR, offsetof(sched_opts, tz), "ZONE",
     .help = "set, next: the zone the cron reads in (IANA, UTC, +08:00; default UTC)"},
    {"start", 0, TN_OPT_STR, offsetof(sched_opts, start), "T",
     .help = "set: no fire before T (YYYY-MM-DD[ HH:MM[:SS]] in --tz, or ISO 8601)"},
    {"end", 0, TN_OPT_STR, offsetof(sched_opts, end), "T", .help = "set: no fire after T"},
    {"param", 0, TN_OPT_KV, offsetof(sched_opts, param), "K=V",
     .help = "set: a start-time param of every instance it starts", .max = TN_CTL_MAX_LIST},
    {"overlap", 0, TN_OPT_STR, offsetof(sched_opts, overlap), "POLICY",
     .help = "set: a fire while an instance of it still runs: skip, buffer_one,\n"
             "buffer_all, cancel_other or allow_all (the default)"},
    {"catchup", 0, TN_OPT_DURATION, offsetof(sched_opts, catchup), "DURATION",
     .help = "set: missed fires newer than this still run (default 1m)"},
    {"pause-on-failure", 0, TN_OPT_FLAG, offsetof(sched_opts, pause_on_failure), NULL,
     .help = "set: pause the schedule when an instance it started fails"},
    {"priority", 0, TN_OPT_STR, offsetof(sched_opts, priority), "P",
     .help = "set: its instances' priority (default: the workflow's)"},
    {"worker-group", 0, TN_OPT_STR, offsetof(sched_opts, worker_group), "G",
     .help = "set: where its instances run (default: the workflow's worker group)"},
    {"failure-strategy", 0, TN_OPT_STR, offsetof(sched_opts, failure_strategy), "end|continue",
     .help = "set: its instances' failure strategy (default: the workflow's)"},
    {"reason", 0, TN_OPT_STR, offsetof(sched_opts, reason), "TEXT",
     .help = "pause: why (kept in the log and shown by `schedule show`)"},
    {"count", 'n', TN_OPT_U64, offsetof(sched_opts, n), "N",
     .help = "next: how many fire times (default 5)", .min = 1, .max = TN_CTL_NEXT_MAX},
    {"all", 0, TN_OPT_FLAG, offsetof(sched_opts, all), NULL,
     .help = "ls: also the removed schedules"},
    {"after", 0, TN_OPT_STR, offsetof(sched_opts, after), "T", .flags = TN_OPT_HIDDEN},
    TN_CTL_COMMON_OPTS(sched_opts),
    {0}};

const tn_opt_cmd tn_spec_schedule = {
    "schedule",
    (const char *const[]){"set WF --cron EXPR [--tz ZONE] [...]", "ls", "show WF",
                          "pause WF [--reason TEXT]", "resume WF", "rm WF",
                          "next WF|--cron EXPR [--tz ZONE] [-n N]", "trigger WF", NULL},
    "set:     give workflow WF a schedule (replacing the whole of any it had); it fires\n"
    "         from now on, each fire time starting one instance.\n"
    "ls:      every schedule: state, cron, zone, fires and skips.\n"
    "show:    one schedule: its spec, state, next 5 fire times, its last fires with their\n"
    "         instances, the skipped and the held-back (buffered) fire times.\n"
    "pause:   stop firing; resume: fire again (the fire times missed while paused are\n"
    "         skipped); rm: remove the schedule (the workflow stays).\n"
    "next:    the next fire times in the schedule's zone and in UTC; with --cron, of an\n"
    "         expression (no store needed).\n"
    "trigger: start an instance now, as a fire of the schedule (also when paused); prints\n"
    "         its id.\n"
    "Changes go through the running master (`tern master` or `tern standalone`) and need\n"
    "the operator role; ls, show and next read the store when no master runs.\n",
    sched_table, .max_args = 2};

static const char *const subs[] = {"set",    "ls", "show", "pause",
                                   "resume", "rm", "next", "trigger"};

/* A usage error for an unknown subcommand, with the nearest one. */
static int unknown_sub(const char *cmd, const char *word, const char *const *words, size_t n,
                       const char *all)
{
    const char *near = tn_opt_suggest(word, words, n);
    if (near)
        return tn_cli_usage(cmd, "unknown subcommand \"%s\" (did you mean `tern %s %s`?)", word,
                            cmd, near);
    return tn_cli_usage(cmd, "unknown subcommand \"%s\" (%s)", word, all);
}

/* Copy an option's word into a spec field; false (after a usage error) when too long. */
static bool copy_word(const char *opt, const char *v, char *dst, size_t cap, int *rc)
{
    if (!v)
        return true;
    if (strlen(v) >= cap) {
        *rc = tn_cli_usage("schedule", "--%s is at most %zu bytes", opt, cap - 1);
        return false;
    }
    snprintf(dst, cap, "%s", v);
    return true;
}

static bool parse_bound(const char *opt, const char *v, const char *tz, int64_t *ns, int *rc)
{
    tn_errmsg e = {{0}};
    if (!v || tn_sched_parse_time(v, tz, ns, &e) == TN_OK)
        return true;
    *rc = tn_cli_usage("schedule", "--%s \"%s\": %s", opt, v, e.text);
    return false;
}

/* The spec of `set` from the options; returns 0, or the exit status of a usage error. */
static int build_spec(const sched_opts *o, tn_sched_spec *sp)
{
    int rc = 0;
    if (!o->cron)
        return tn_cli_usage("schedule", "set wants --cron EXPR (e.g. --cron '0 0 2 * * ?', "
                                        "daily at 02:00)");
    if (!copy_word("cron", o->cron, sp->cron, sizeof(sp->cron), &rc) ||
        !copy_word("tz", o->tz, sp->tz, sizeof(sp->tz), &rc) ||
        !copy_word("priority", o->priority, sp->priority, sizeof(sp->priority), &rc) ||
        !copy_word("failure-strategy", o->failure_strategy, sp->failure_strategy,
                   sizeof(sp->failure_strategy), &rc) ||
        !copy_word("worker-group", o->worker_group, sp->worker_group, sizeof(sp->worker_group),
                   &rc))
        return rc;
    if (o->overlap && tn_overlap_parse(o->overlap, &sp->overlap) != TN_OK)
        return tn_cli_usage("schedule", "unknown --overlap \"%s\" (one of: %s)", o->overlap,
                            tn_overlap_allowed());
    if (o->catchup != UINT64_MAX)
        sp->catchup_ms = (int64_t)o->catchup;
    sp->pause_on_failure = o->pause_on_failure;
    tn_errmsg e = {{0}};
    /* the zone first: the window's bounds are read in it */
    if (sp->tz[0]) {
        tn_tz *tz;
        if (tn_tz_open(sp->tz, &tz, &e) != TN_OK)
            return tn_cli_usage("schedule", "--tz: %s", e.text);
        tn_tz_free(tz);
    }
    if (!parse_bound("start", o->start, sp->tz, &sp->start_ns, &rc) ||
        !parse_bound("end", o->end, sp->tz, &sp->end_ns, &rc))
        return rc;
    for (uint32_t i = 0; i < o->param.n; i++)
        if (tn_sched_spec_param(sp, o->param.key[i], o->param.val[i]) != TN_OK)
            return tn_cli_usage("schedule", "--param %s: not a param name, or too long",
                                o->param.key[i]);
    if (tn_sched_spec_validate(sp, &e) != TN_OK)
        return tn_cli_usage("schedule", "%s", e.text);
    return 0;
}

static int sched_set(const sched_opts *o, const char *wf, tn_ctl_req *r)
{
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    int rc = build_spec(o, &sp);
    tn_buf b = {0};
    if (!rc && tn_ctl_spec_encode(&sp, &b) != TN_OK)
        rc = tn_cli_fail("schedule", "out of memory");
    tn_sched_spec_fini(&sp);
    if (!rc) {
        r->name = tn_str_c(wf);
        r->bytes = (tn_str){b.data, (uint32_t)b.size};
        rc = tn_client_op("schedule", "schedule-set", &o->c, r);
    }
    tn_buf_free(&b);
    return rc;
}

/* The instant --after names (read in --tz), else now. */
static int after_ns(const sched_opts *o, int64_t *ns)
{
    *ns = tn_now_ns();
    int rc = 0;
    if (o->after && (!parse_bound("after", o->after, o->tz, ns, &rc) || *ns <= 0))
        return rc ? rc : tn_cli_usage("schedule", "--after must be after 1970");
    return 0;
}

/* `next --cron EXPR`: no store, no master. */
static int next_offline(const sched_opts *o)
{
    int64_t after;
    int rc = after_ns(o, &after);
    if (rc)
        return rc;
    tn_ctl_out x = {.ok = true};
    tn_ctl_next_fires(o->cron, o->tz, 0, 0, after, o->n ? (uint32_t)o->n : 5, &x);
    if (!x.ok && o->c.json)
        printf("%s\n", x.json.s);
    if (!x.ok)
        rc = tn_cli_usage("schedule", "%s", x.text.s);
    else if (o->c.json)
        printf("%s\n", x.json.s);
    else
        printf("%s", x.text.s ? x.text.s : "");
    free(x.text.s);
    free(x.json.s);
    return rc;
}

static int sched_next(const sched_opts *o, int n, char **v, tn_ctl_req *r)
{
    if (o->cron && n == 1)
        return next_offline(o);
    if (n != 2)
        return tn_cli_usage("schedule", "next wants a workflow name, or --cron EXPR");
    int64_t after;
    int rc = after_ns(o, &after);
    if (rc)
        return rc;
    r->name = tn_str_c(v[1]);
    r->slots = o->n ? (int64_t)o->n : 5;
    r->offset = o->after ? (uint64_t)after : 0;
    return tn_client_op("schedule", "schedule-next", &o->c, r);
}

static int sched_sub(const sched_opts *o, int n, char **v, tn_ctl_req *r)
{
    if (n == 0)
        return tn_cli_usage("schedule",
                            "say set, ls, show, pause, resume, rm, next or trigger");
    const char *sub = v[0];
    size_t k = 0;
    while (k < TN_ARRAY_LEN(subs) && strcmp(sub, subs[k]) != 0)
        k++;
    if (k == TN_ARRAY_LEN(subs))
        return unknown_sub("schedule", sub, subs, TN_ARRAY_LEN(subs),
                           "set, ls, show, pause, resume, rm, next, trigger");
    if (strcmp(sub, "next") == 0)
        return sched_next(o, n, v, r);
    if (strcmp(sub, "ls") == 0) {
        if (n != 1)
            return tn_cli_usage("schedule", "ls takes no argument");
        r->dry_run = o->all;
        return tn_client_op("schedule", "schedule-ls", &o->c, r);
    }
    if (n != 2)
        return tn_cli_usage("schedule", "%s wants one workflow name", sub);
    if (strcmp(sub, "set") == 0)
        return sched_set(o, v[1], r);
    char op[32];
    snprintf(op, sizeof(op), "schedule-%s", sub);
    r->name = tn_str_c(v[1]);
    if (strcmp(sub, "pause") == 0 && o->reason)
        r->bytes = tn_str_c(o->reason);
    return tn_client_op("schedule", op, &o->c, r);
}

int tn_cmd_schedule(int argc, char **argv)
{
    sched_opts o = {.catchup = UINT64_MAX};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_schedule, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_ctl_req *r = calloc(1, sizeof(*r));
    rc = r ? sched_sub(&o, a.n, a.v, r) : tn_cli_fail("schedule", "out of memory");
    free(r);
    tn_opt_args_free(&a);
    return rc;
}

/* `tern backfill WF --from D --to D | --dates D1,D2`: run a workflow for past business
 * dates (DolphinScheduler's complement data) through the running master; `backfill
 * ls|show` read them, `stop|resume` change them. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctlsched.h"
#include "objproj.h"
#include "schedule.h"
#include "cli.h"

typedef struct bf_opts {
    tn_ctl_common c;
    const char *from, *to, *dates, *order, *tz;
    uint32_t parallel;
    tn_opt_kv param;
} bf_opts;

static const tn_opt bf_table[] = {
    {"from", 0, TN_OPT_STR, offsetof(bf_opts, from), "DATE",
     .help = "the first date (YYYY-MM-DD, or a time: YYYY-MM-DD HH:MM[:SS], ISO 8601)"},
    {"to", 0, TN_OPT_STR, offsetof(bf_opts, to), "DATE", .help = "the last date (inclusive)"},
    {"dates", 0, TN_OPT_STR, offsetof(bf_opts, dates), "D1,D2,...",
     .help = "these dates instead of a range"},
    {"parallel", 0, TN_OPT_U32, offsetof(bf_opts, parallel), "N",
     .help = "how many dates run at once (default 1: one after the other)", .min = 1,
     .max = 1000},
    {"order", 0, TN_OPT_STR, offsetof(bf_opts, order), "asc|desc",
     .help = "the earliest date first (asc, the default) or the latest"},
    {"param", 0, TN_OPT_KV, offsetof(bf_opts, param), "K=V",
     .help = "a start-time param of every instance", .max = TN_CTL_MAX_LIST},
    {"tz", 0, TN_OPT_STR, offsetof(bf_opts, tz), "ZONE",
     .help = "the zone the dates read in (default: the schedule's, else UTC)"},
    TN_CTL_COMMON_OPTS(bf_opts),
    {0}};

const tn_opt_cmd tn_spec_backfill = {
    "backfill",
    (const char *const[]){"WF --from DATE --to DATE [--parallel N] [--order asc|desc]",
                          "WF --dates D1,D2,... [--parallel N]", "ls", "show ID", "stop ID",
                          "resume ID", NULL},
    "WF:     start one instance of workflow WF per date, as if the schedule had fired then\n"
    "        (its schedule time is the date: ${system.biz.date} is the day before).\n"
    "        With --from/--to the dates are the schedule's fire times in [from, to], or,\n"
    "        when WF has no schedule, every day at 00:00 (in --tz, default UTC). At most\n"
    "        10000 dates. Prints the backfill's id.\n"
    "ls:     every backfill: workflow, state, dates started of all.\n"
    "show:   one backfill: each date with its instance and that instance's state.\n"
    "stop:   stop its running instances and start no more; resume: start the rest.\n"
    "Creating, stopping and resuming go through the running master and need the operator\n"
    "role; ls and show read the store when no master runs.\n",
    bf_table, .max_args = 2};

static const char *const subs[] = {"ls", "show", "stop", "resume"};

/* Split --dates at commas (spaces around a date are dropped) into q; each checked for
 * form here (the zone it reads in is the master's to choose). Returns 0 or the status. */
static int split_dates(char *list, tn_ctl_bf_req *q)
{
    uint32_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    if (cap > TN_BACKFILL_MAX_DATES)
        return tn_cli_usage("backfill", "--dates has %u dates; a backfill runs at most %u", cap,
                            TN_BACKFILL_MAX_DATES);
    q->dates = calloc(cap, sizeof(*q->dates));
    if (!q->dates)
        return tn_cli_fail("backfill", "out of memory");
    for (char *save = NULL, *d = strtok_r(list, ",", &save); d;
         d = strtok_r(NULL, ",", &save)) {
        while (*d == ' ')
            d++;
        for (size_t n = strlen(d); n && d[n - 1] == ' '; n--)
            d[n - 1] = 0;
        int64_t ns;
        tn_errmsg e = {{0}};
        if (!*d)
            continue;
        if (strlen(d) > TN_CTL_DATE_MAX || tn_sched_parse_time(d, "UTC", &ns, &e) != TN_OK)
            return tn_cli_usage("backfill",
                                "--dates: \"%s\" is not a date (YYYY-MM-DD or "
                                "YYYY-MM-DD HH:MM[:SS]): %s",
                                d, e.text);
        q->dates[q->ndates++] = tn_str_c(d);
    }
    if (!q->ndates)
        return tn_cli_usage("backfill",
                            "--dates names no date (--dates 2026-01-01,2026-01-02)");
    return 0;
}

static int check_date(const char *opt, const char *d)
{
    int64_t ns;
    tn_errmsg e = {{0}};
    if (strlen(d) <= TN_CTL_DATE_MAX && tn_sched_parse_time(d, "UTC", &ns, &e) == TN_OK)
        return 0;
    return tn_cli_usage("backfill",
                        "--%s \"%s\" is not a date (YYYY-MM-DD or YYYY-MM-DD "
                        "HH:MM[:SS]): %s",
                        opt, d, e.text);
}

/* The request of `tern backfill WF ...`: 0, or the exit status of a usage error. */
static int build(const bf_opts *o, char *dates, tn_ctl_bf_req *q)
{
    if (dates && (o->from || o->to))
        return tn_cli_usage("backfill", "give --dates, or --from and --to, not both");
    if (!dates && (!o->from || !o->to))
        return tn_cli_usage("backfill", "give --from DATE and --to DATE, or --dates D1,D2,...");
    if (o->order && strcmp(o->order, "asc") != 0 && strcmp(o->order, "desc") != 0)
        return tn_cli_usage("backfill", "--order is asc or desc, not \"%s\"", o->order);
    q->desc = o->order && strcmp(o->order, "desc") == 0;
    q->tz = tn_str_c(o->tz);
    if (o->tz && strlen(o->tz) > TN_TZ_MAX_NAME)
        return tn_cli_usage("backfill", "--tz is at most %u bytes", TN_TZ_MAX_NAME);
    if (dates)
        return split_dates(dates, q);
    int rc = check_date("from", o->from);
    if (!rc)
        rc = check_date("to", o->to);
    q->from = tn_str_c(o->from);
    q->to = tn_str_c(o->to);
    return rc;
}

static int bf_create(const bf_opts *o, const char *wf, tn_ctl_req *r)
{
    char *dates = o->dates ? strdup(o->dates) : NULL;
    tn_ctl_bf_req q = {0};
    int rc =
        o->dates && !dates ? tn_cli_fail("backfill", "out of memory") : build(o, dates, &q);
    tn_buf b = {0};
    if (!rc && tn_ctl_bf_encode(&q, &b) != TN_OK)
        rc = tn_cli_fail("backfill", "out of memory");
    if (!rc) {
        r->name = tn_str_c(wf);
        r->bytes = (tn_str){b.data, (uint32_t)b.size};
        r->slots = o->parallel ? o->parallel : 1;
        for (uint32_t i = 0; i < o->param.n; i++) {
            r->pkeys[i] = tn_str_c(o->param.key[i]);
            r->pvals[i] = tn_str_c(o->param.val[i]);
        }
        r->nparams = o->param.n;
        rc = tn_client_op("backfill", "backfill", &o->c, r);
    }
    tn_buf_free(&b);
    free(q.dates);
    free(dates);
    return rc;
}

static int bf_sub(const bf_opts *o, int n, char **v, tn_ctl_req *r)
{
    if (n == 0)
        return tn_cli_usage("backfill", "give a workflow name (or ls, show ID, stop ID, "
                                        "resume ID)");
    if (n == 1 && strcmp(v[0], "ls") == 0)
        return tn_client_op("backfill", "backfill-ls", &o->c, r);
    const char *near = tn_opt_suggest(v[0], subs, TN_ARRAY_LEN(subs));
    if (n == 1 && near && !o->from && !o->to && !o->dates)
        return tn_cli_usage(
            "backfill", "\"%s\" and no dates (did you mean `tern backfill %s`?)", v[0], near);
    if (n == 1)
        return bf_create(o, v[0], r);
    size_t k = 0;
    while (k < TN_ARRAY_LEN(subs) && strcmp(v[0], subs[k]) != 0)
        k++;
    if (k == TN_ARRAY_LEN(subs) || k == 0) {
        if (near)
            return tn_cli_usage("backfill",
                                "unknown subcommand \"%s\" (did you mean `tern backfill %s`?)",
                                v[0], near);
        return tn_cli_usage("backfill",
                            "one workflow name, or ls, show ID, stop ID, resume ID");
    }
    if (!tn_cli_id(v[1], &r->id))
        return tn_cli_usage("backfill",
                            "%s wants a backfill id (a positive integer, see "
                            "`tern backfill ls`), not \"%s\"",
                            v[0], v[1]);
    char op[32];
    snprintf(op, sizeof(op), "backfill-%s", v[0]);
    return tn_client_op("backfill", op, &o->c, r);
}

int tn_cmd_backfill(int argc, char **argv)
{
    bf_opts o = {0};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_backfill, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_ctl_req *r = calloc(1, sizeof(*r));
    rc = r ? bf_sub(&o, a.n, a.v, r) : tn_cli_fail("backfill", "out of memory");
    free(r);
    tn_opt_args_free(&a);
    return rc;
}

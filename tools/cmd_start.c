/* `tern start WF`: start an instance of the latest version of a workflow on the running
 * master, with start-time params and a partial start. */
#include <stdlib.h>

#include "ctl.h"
#include "cli.h"

typedef struct start_opts {
    tn_ctl_common c;
    tn_opt_kv param;
    tn_opt_list from;
    const char *mode;
    const char *tenant;
    bool dry_run;
} start_opts;

static const tn_opt start_table[] = {
    {"param", 0, TN_OPT_KV, offsetof(start_opts, param), "K=V",
     .help = "a start-time param override", .max = TN_CTL_MAX_LIST},
    {"from", 0, TN_OPT_LIST, offsetof(start_opts, from), "TASK",
     .help = "start from this task; --mode says what else runs", .max = TN_CTL_MAX_LIST},
    {"mode", 0, TN_OPT_STR, offsetof(start_opts, mode), "MODE",
     .help = "task_only, task_pre (and upstream) or task_post (and downstream, the default)"},
    {"tenant", 0, TN_OPT_STR, offsetof(start_opts, tenant), "USER",
     .help = "run the shell tasks as this OS user (over the definition's tenant:)"},
    {"dry-run", 0, TN_OPT_FLAG, offsetof(start_opts, dry_run), NULL,
     .help = "record an instance whose tasks are marked successful, run nothing"},
    TN_CTL_COMMON_OPTS(start_opts),
    {0}};

const tn_opt_cmd tn_spec_start = {
    "start", (const char *const[]){"WF", NULL},
    "Start an instance of the latest version of workflow WF on the running master\n"
    "(`tern master` or `tern standalone`).\n",
    start_table, .max_args = 1};

int tn_cmd_start(int argc, char **argv)
{
    start_opts o = {0};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_start, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (a.n != 1) {
        tn_opt_args_free(&a);
        return tn_cli_usage("start", "give one workflow name");
    }
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r) {
        tn_opt_args_free(&a);
        return tn_cli_fail("start", "out of memory");
    }
    r->name = tn_str_c(a.v[0]);
    for (uint32_t i = 0; i < o.param.n; i++) {
        r->pkeys[i] = tn_str_c(o.param.key[i]);
        r->pvals[i] = tn_str_c(o.param.val[i]);
    }
    r->nparams = o.param.n;
    if (o.tenant) { /* travels as the system.tenant param (see params.h) */
        if (r->nparams >= TN_CTL_MAX_LIST) {
            free(r);
            tn_opt_args_free(&a);
            return tn_cli_usage("start", "too many --param for --tenant to fit");
        }
        r->pkeys[r->nparams] = tn_str_c("system.tenant");
        r->pvals[r->nparams++] = tn_str_c(o.tenant);
    }
    for (uint32_t i = 0; i < o.from.n; i++)
        r->from[i] = tn_str_c(o.from.v[i]);
    r->nfrom = o.from.n;
    if (o.mode)
        r->mode = tn_str_c(o.mode);
    r->dry_run = o.dry_run;
    rc = tn_client_request("start", &o.c, r);
    free(r);
    tn_opt_args_free(&a);
    return rc;
}

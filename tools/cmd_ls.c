/* `tern ls [--state STATE]`: the running master's workflow instances. */
#include <stdlib.h>

#include "ctl.h"
#include "cli.h"

typedef struct ls_opts {
    tn_ctl_common c;
    const char *state;
} ls_opts;

static const tn_opt ls_table[] = {
    {"state", 0, TN_OPT_STR, offsetof(ls_opts, state), "STATE",
     .help = "only the instances in this state, e.g. RUNNING_EXECUTION"},
    TN_CTL_COMMON_OPTS(ls_opts),
    {0}};

const tn_opt_cmd tn_spec_ls = {"ls", NULL, "The workflow instances, newest last.\n", ls_table,
                               .max_args = 0};

int tn_cmd_ls(int argc, char **argv)
{
    ls_opts o = {.state = NULL};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_ls, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a);
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r)
        return tn_cli_fail("ls", "out of memory");
    if (o.state)
        r->state = tn_str_c(o.state);
    rc = tn_client_request("ls", &o.c, r);
    free(r);
    return rc;
}

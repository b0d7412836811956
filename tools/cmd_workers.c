/* `tern workers`: the running master's live workers and their resources. */
#include <stdlib.h>

#include "ctl.h"
#include "cli.h"

typedef struct workers_opts {
    tn_ctl_common c;
} workers_opts;

const tn_opt_cmd tn_spec_workers = {
    "workers", NULL,
    "Live workers: groups, slots, load, memory, last heartbeat, resource gauges.\n",
    tn_client_common_table, .max_args = 0};

int tn_cmd_workers(int argc, char **argv)
{
    workers_opts o = {{0}};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_workers, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a);
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r)
        return tn_cli_fail("workers", "out of memory");
    rc = tn_client_request("workers", &o.c, r);
    free(r);
    return rc;
}

/* `tern status WF_ID`: one instance of the running master, its tasks, attempts and
 * workers, why a task waits, its params and what each task passed. */
#include "cli.h"

const tn_opt_cmd tn_spec_status = {
    "status", (const char *const[]){"WF_ID", NULL},
    "One instance: its tasks, attempts, workers, and why a task waits for dispatch; its\n"
    "business time and params (effective, overrides, inherited), and under each task why\n"
    "it failed and the values it passed downstream.\n",
    tn_client_common_table, .max_args = 1};

int tn_cmd_status(int argc, char **argv)
{
    return tn_client_id_request(&tn_spec_status, argc, argv, "workflow instance");
}

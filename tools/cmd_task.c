/* `tern kill|force-success TASK_ID`: the verbs that act on one task of the running
 * master. */
#include <string.h>

#include "cli.h"

static const char *const syn[] = {"TASK_ID", NULL};

const tn_opt_cmd tn_spec_kill = {
    "kill", syn, "Kill one task: TERM, a grace period, then KILL, to every process of it.\n",
    tn_client_common_table, .max_args = 1};
const tn_opt_cmd tn_spec_force_success = {"force-success", syn,
                                          "Mark a failed or killed task successful.\n",
                                          tn_client_common_table, .max_args = 1};

int tn_cmd_task(int argc, char **argv)
{
    const tn_opt_cmd *spec =
        strcmp(argv[0], "kill") == 0 ? &tn_spec_kill : &tn_spec_force_success;
    return tn_client_id_request(spec, argc, argv, "task");
}

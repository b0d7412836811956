/* `tern pause|resume|stop|rerun|recover WF_ID`: the verbs that act on one workflow
 * instance of the running master; they share one shape and one option table. */
#include <string.h>

#include "cli.h"

static const char *const syn[] = {"WF_ID", NULL};

const tn_opt_cmd tn_spec_pause = {
    "pause", syn, "Pause an instance: running tasks finish, nothing new starts, then PAUSE.\n",
    tn_client_common_table, .max_args = 1};
const tn_opt_cmd tn_spec_resume = {
    "resume", syn, "Continue a paused instance (paused tasks keep their attempt).\n",
    tn_client_common_table, .max_args = 1};
const tn_opt_cmd tn_spec_stop = {"stop", syn,
                                 "Stop an instance: kill its running tasks, then STOP.\n",
                                 tn_client_common_table, .max_args = 1};
const tn_opt_cmd tn_spec_rerun = {
    "rerun", syn, "A new run of a finished instance (same id, run count + 1).\n",
    tn_client_common_table, .max_args = 1};
const tn_opt_cmd tn_spec_recover = {
    "recover", syn,
    "Re-run the failed and killed tasks of an instance and what follows them; keep the\n"
    "successes.\n",
    tn_client_common_table, .max_args = 1};

int tn_cmd_instance(int argc, char **argv)
{
    static const tn_opt_cmd *const specs[] = {&tn_spec_pause, &tn_spec_resume, &tn_spec_stop,
                                              &tn_spec_rerun, &tn_spec_recover};
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++)
        if (strcmp(argv[0], specs[i]->name) == 0)
            return tn_client_id_request(specs[i], argc, argv, "workflow instance");
    return tn_cli_usage(argv[0], "not an instance command");
}

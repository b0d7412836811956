/* `tern taskgroup set NAME SLOTS`: a slot pool shared by the tasks of every workflow
 * that name the group. */
#include <string.h>

#include "engine.h"
#include "cli.h"

typedef struct taskgroup_opts {
    const char *data;
} taskgroup_opts;

static const tn_opt taskgroup_table[] = {{"data", 0, TN_OPT_STR, offsetof(taskgroup_opts, data),
                                          "DIR",
                                          .help = "the data directory (default ./tern-data)"},
                                         {0}};

const tn_opt_cmd tn_spec_taskgroup = {
    "taskgroup", (const char *const[]){"set NAME SLOTS", NULL},
    "Set a task group's slots: at most SLOTS tasks with `task_group: NAME` run at once,\n"
    "across all workflows. A group that was never set does not limit.\n",
    taskgroup_table, .max_args = 3};

int tn_cmd_taskgroup(int argc, char **argv)
{
    taskgroup_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_taskgroup, argc, argv, &o, &a);
    if (rc)
        return rc;
    uint64_t slots = 0;
    if (a.n != 3 || strcmp(a.v[0], "set") != 0 || !tn_cli_u64(a.v[2], &slots)) {
        tn_opt_args_free(&a);
        return tn_cli_usage("taskgroup", "usage: tern taskgroup set NAME SLOTS");
    }
    tn_cmd c = {.kind = TN_CMD_TASKGROUP_SET,
                .name = a.v[1],
                .slots = (int64_t)slots,
                .actor = "user:cli"};
    rc = tn_local_set("taskgroup", o.data, &c);
    tn_opt_args_free(&a);
    return rc;
}

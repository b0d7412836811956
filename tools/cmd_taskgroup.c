/* `tern taskgroup set NAME SLOTS`: a slot pool shared by the tasks of every workflow
 * that name the group. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "logread.h"
#include "util.h"
#include "cli.h"
#include "jsonout.h"

typedef struct taskgroup_opts {
    const char *data;
    bool json;
} taskgroup_opts;

static const tn_opt taskgroup_table[] = {
    {"data", 0, TN_OPT_STR, offsetof(taskgroup_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)"},
    {"json", 0, TN_OPT_FLAG, offsetof(taskgroup_opts, json), NULL,
     .help = "ls: [{\"name\",\"slots\"}]"},
    {0}};

const tn_opt_cmd tn_spec_taskgroup = {
    "taskgroup", (const char *const[]){"set NAME SLOTS", "ls", NULL},
    "set: at most SLOTS tasks with `task_group: NAME` run at once, across all workflows.\n"
    "     A group that was never set does not limit.\n"
    "ls:  every task group and its slots.\n",
    taskgroup_table, .max_args = 3};

typedef struct tg_list {
    bool json;
    size_t n, width;
    char **names;
    int64_t *slots;
} tg_list;

static int tg_row(void *ctx, const char *name, const void *val, size_t len)
{
    tg_list *l = ctx;
    char **nn = realloc(l->names, (l->n + 1) * sizeof(*nn));
    if (nn)
        l->names = nn;
    int64_t *ns = nn ? realloc(l->slots, (l->n + 1) * sizeof(*ns)) : NULL;
    if (!ns || !(nn[l->n] = strdup(name)))
        return 1;
    l->slots = ns;
    l->slots[l->n++] = len == 8 ? (int64_t)tn_get_be64(val) : -1;
    size_t w = tn_cli_width(name);
    if (w > l->width)
        l->width = w;
    return 0;
}

static int tg_ls(const taskgroup_opts *o)
{
    tn_store *s;
    if (tn_cli_store_ro("taskgroup", o->data, &s))
        return 1;
    tg_list l = {.json = o->json, .width = 5};
    tn_err e = tn_log_taskgroup_each(s, tg_row, &l);
    tn_log_close_read(s);
    int rc = e ? tn_cli_fail("taskgroup", "cannot read the store: %s", tn_strerror(e)) : 0;
    if (!rc && o->json) {
        printf("[");
        for (size_t i = 0; i < l.n; i++) {
            printf("%s", i ? "," : "");
            tn_cli_json_put(stdout, json_pack("{s:o,s:I}", "name", tn_jo_str(l.names[i]),
                                              "slots", (json_int_t)l.slots[i]));
        }
        printf("]\n");
    } else if (!rc) {
        tn_cli_pad(stdout, "GROUP", l.width);
        printf("  SLOTS\n");
        for (size_t i = 0; i < l.n; i++) {
            tn_cli_pad(stdout, l.names[i], l.width);
            printf("  %5" PRId64 "\n", l.slots[i]);
        }
    }
    for (size_t i = 0; i < l.n; i++)
        free(l.names[i]);
    free(l.names);
    free(l.slots);
    return rc;
}

int tn_cmd_taskgroup(int argc, char **argv)
{
    taskgroup_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_taskgroup, argc, argv, &o, &a);
    if (rc)
        return rc;
    uint64_t slots = 0;
    if (a.n == 1 && strcmp(a.v[0], "ls") == 0) {
        tn_opt_args_free(&a);
        return tg_ls(&o);
    }
    if (a.n == 3 && strcmp(a.v[0], "set") == 0 &&
        (!tn_cli_u64(a.v[2], &slots) || slots > INT32_MAX)) {
        rc = tn_cli_usage("taskgroup",
                          "SLOTS must be a whole number from 0 to %d, not \"%s\" (tern "
                          "taskgroup set %s 2)",
                          INT32_MAX, a.v[2], a.v[1]);
        tn_opt_args_free(&a);
        return rc;
    }
    if (a.n < 1 || (strcmp(a.v[0], "set") != 0 && strcmp(a.v[0], "ls") != 0)) {
        rc = a.n ? tn_cli_usage("taskgroup", "unknown subcommand \"%s\" (set, ls)", a.v[0]) :
                   tn_cli_usage("taskgroup", "say set or ls");
        tn_opt_args_free(&a);
        return rc;
    }
    if (a.n != 3 || strcmp(a.v[0], "set") != 0) {
        tn_opt_args_free(&a);
        return tn_cli_usage("taskgroup", "usage: tern taskgroup set NAME SLOTS, or tern "
                                         "taskgroup ls");
    }
    tn_cmd c = {.kind = TN_CMD_TASKGROUP_SET,
                .name = a.v[1],
                .slots = (int64_t)slots,
                .actor = "user:cli"};
    rc = tn_local_set("taskgroup", o.data, &c);
    tn_opt_args_free(&a);
    return rc;
}

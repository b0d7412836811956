/* `tern init --data DIR`: make a new, empty store (its genesis event) in a missing or
 * empty directory. The daemons make one on their first start in an empty directory
 * too; this is the way to make one ahead of time, e.g. to apply definitions first. */
#include <stdio.h>

#include "evlog.h"
#include "cli.h"

typedef struct init_opts {
    const char *data;
} init_opts;

static const tn_opt init_table[] = {
    {"data", 0, TN_OPT_STR, offsetof(init_opts, data), "DIR",
     .help = "the directory of the new store (default ./tern-data); it must be\n"
             "missing or empty"},
    {0}};

const tn_opt_cmd tn_spec_init = {
    "init", NULL,
    "Create a new, empty store in DIR. DIR must be missing or empty: a directory that\n"
    "already holds a store, or other files, is refused and left as it is.\n",
    init_table, .max_args = 0};

int tn_cmd_init(int argc, char **argv)
{
    init_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_init, argc, argv, &o, &a);
    if (rc)
        return rc;
    tn_opt_args_free(&a);
    tn_evlog *l;
    tn_errmsg m = {{0}};
    tn_evlog_opts eo = {.create = true};
    if (tn_evlog_open(o.data, &eo, &l, &m))
        return tn_cli_fail("init", "%s", m.text);
    bool created = tn_evlog_created(l);
    tn_evlog_close(l);
    if (!created)
        return tn_cli_fail("init", "%s already holds a tern store: nothing was changed",
                           o.data);
    printf("created a new store in %s\n", o.data);
    return 0;
}

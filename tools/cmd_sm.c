/* `tern sm dot|md workflow|task|system`: the state machines as generated from the specs. */
#include <stdio.h>
#include <string.h>

#include "sm.h"
#include "cli.h"

static const tn_opt sm_table[] = {{0}};

const tn_opt_cmd tn_spec_sm = {
    "sm", (const char *const[]){"dot|md workflow|task|system", NULL},
    "Print a state machine, generated at build time from statemachines/*.sm, as a\n"
    "Graphviz DOT graph (render with `dot -Tsvg`) or a Markdown table.\n",
    sm_table, .max_args = TN_OPT_ANY_ARGS};

static int print(const char *format, const char *machine)
{
    const tn_sm *m = tn_sm_by_name(machine);
    if (!m)
        return tn_cli_usage("sm", "unknown machine \"%s\" (known: workflow, task, system)",
                            machine);
    if (strcmp(format, "dot") == 0)
        fputs(m->dot, stdout);
    else if (strcmp(format, "md") == 0)
        fputs(m->md, stdout);
    else
        return tn_cli_usage("sm", "unknown format \"%s\" (known: dot, md)", format);
    return 0;
}

int tn_cmd_sm(int argc, char **argv)
{
    char *none = NULL;
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_sm, argc, argv, &none, &a);
    if (rc)
        return rc;
    if (a.n != 2)
        rc = tn_cli_usage("sm", "give a format (dot or md) and a machine (workflow, task, "
                          "system)");
    else
        rc = print(a.v[0], a.v[1]);
    tn_opt_args_free(&a);
    return rc;
}

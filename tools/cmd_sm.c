/* `tern sm dot|md workflow|task|system`: the state machines as generated from the specs. */
#include <stdio.h>
#include <string.h>

#include "sm.h"
#include "cli.h"

const char tn_usage_sm[] =
    "usage: tern sm dot|md workflow|task|system\n"
    "\n"
    "Print a state machine, generated at build time from statemachines/*.sm, as a\n"
    "Graphviz DOT graph (render with `dot -Tsvg`) or a Markdown table.\n";

int tn_cmd_sm(int argc, char **argv)
{
    if (argc != 3)
        return tn_cli_usage("sm", "give a format (dot or md) and a machine (workflow, task, "
                            "system)");
    const tn_sm *m = tn_sm_by_name(argv[2]);
    if (!m)
        return tn_cli_usage("sm", "unknown machine \"%s\" (known: workflow, task, system)",
                            argv[2]);
    if (strcmp(argv[1], "dot") == 0)
        fputs(m->dot, stdout);
    else if (strcmp(argv[1], "md") == 0)
        fputs(m->md, stdout);
    else
        return tn_cli_usage("sm", "unknown format \"%s\" (known: dot, md)", argv[1]);
    return 0;
}

/* `tern sm dot|md workflow|task|system`: the state machines as generated from the specs;
 * `tern sm coverage FILE...`: which spec transitions recorded runs reached. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sm.h"
#include "cli.h"

static const tn_opt sm_table[] = {{0}};

const tn_opt_cmd tn_spec_sm = {
    "sm", (const char *const[]){"dot|md workflow|task|system", "coverage FILE...", NULL},
    "Print a state machine, generated at build time from statemachines/*.sm, as a\n"
    "Graphviz DOT graph (render with `dot -Tsvg`) or a Markdown table.\n"
    "\n"
    "coverage merges the transition counts of `tern replay --coverage-out` files and\n"
    "prints one line per spec transition with how often it was replayed. Exits 1 when a\n"
    "spec transition was never reached or a recorded one is not in the spec. Files that\n"
    "do not exist are skipped (with a note); at least one must exist.\n",
    sm_table, .max_args = TN_OPT_ANY_ARGS};

#define COV_STATES 64
#define COV_EVENTS 32

static uint64_t cov[TN_MACHINE_MAX + 1][COV_STATES][COV_EVENTS];

/* Add one file's lines to cov; false when a line is not a transition of the spec. */
static bool cov_read(FILE *f, const char *path, bool *bad)
{
    char line[512], mn[64], from[64], ev[64], to[64];
    unsigned long long n;
    for (int no = 1; fgets(line, sizeof(line), f); no++) {
        if (sscanf(line, "%63s %63s %63s %63s %llu", mn, from, ev, to, &n) != 5) {
            fprintf(stderr, "tern sm coverage: %s:%d: not \"MACHINE FROM EVENT TO COUNT\"\n",
                    path, no);
            return false;
        }
        const tn_sm *m = tn_sm_by_name(mn);
        int s = m ? tn_sm_state_id(m, from) : -1, e = m ? tn_sm_event_id(m, ev) : -1;
        tn_sm_trans t = {TN_SM_ILLEGAL};
        if (s >= 0 && e >= 0)
            t = tn_sm_next(m, (unsigned)s, (unsigned)e);
        if (t.to == TN_SM_ILLEGAL || strcmp(tn_sm_state_name(m, t.to), to) != 0 ||
            s >= COV_STATES || e >= COV_EVENTS) {
            printf("NOT IN SPEC  %s %s %s -> %s (%llu times; %s:%d)\n", mn, from, ev, to, n,
                   path, no);
            *bad = true;
            continue;
        }
        cov[m->machine][s][e] += n;
    }
    return true;
}

/* The table: every spec transition with its count; the number never reached. */
static unsigned cov_print(void)
{
    unsigned zero = 0, total = 0;
    printf("%-8s %-22s %-14s %-22s %8s\n", "machine", "from", "event", "to", "count");
    for (unsigned mi = 1; mi <= TN_MACHINE_MAX; mi++) {
        const tn_sm *m = tn_sm_get(mi);
        for (unsigned s = 0; s < m->nstates && s < COV_STATES; s++)
            for (unsigned e = 0; e < m->nevents && e < COV_EVENTS; e++) {
                tn_sm_trans t = tn_sm_next(m, s, e);
                if (t.to == TN_SM_ILLEGAL)
                    continue;
                total++;
                zero += cov[mi][s][e] == 0;
                printf("%-8s %-22s %-14s %-22s %8" PRIu64 "%s\n", m->name,
                       tn_sm_state_name(m, s), tn_sm_event_name(m, e),
                       tn_sm_state_name(m, t.to), cov[mi][s][e],
                       cov[mi][s][e] ? "" : "  NEVER REACHED");
            }
    }
    printf("%u of %u spec transitions reached\n", total - zero, total);
    return zero;
}

static int cmd_coverage(int n, char **files)
{
    if (n < 1)
        return tn_cli_usage("sm", "coverage wants the files `tern replay --coverage-out` "
                                  "wrote");
    bool bad = false;
    int read = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "re");
        if (!f) {
            fprintf(stderr, "tern sm coverage: %s: not found, skipped\n", files[i]);
            continue;
        }
        bool ok = cov_read(f, files[i], &bad);
        fclose(f);
        if (!ok)
            return 1;
        read++;
    }
    if (!read)
        return tn_cli_fail("sm", "coverage: none of the files exists: run the tests that "
                                 "write them first (TERN_COVERAGE_DIR)");
    unsigned zero = cov_print();
    fflush(stdout); /* the table before the verdict, when both go to one terminal */
    if (zero)
        tn_cli_fail("sm",
                    "coverage: %u spec transition%s never reached: add a scenario that "
                    "reaches %s, or remove %s from the spec",
                    zero, zero == 1 ? " was" : "s were", zero == 1 ? "it" : "them",
                    zero == 1 ? "it" : "them");
    if (bad)
        tn_cli_fail("sm", "coverage: runs recorded transitions the spec does not have");
    return zero || bad ? 1 : 0;
}

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
    if (a.n >= 1 && strcmp(a.v[0], "coverage") == 0)
        rc = cmd_coverage(a.n - 1, a.v + 1);
    else if (a.n != 2)
        rc = tn_cli_usage("sm", "give a format (dot or md) and a machine (workflow, task, "
                                "system), or coverage FILE...");
    else
        rc = print(a.v[0], a.v[1]);
    tn_opt_args_free(&a);
    return rc;
}

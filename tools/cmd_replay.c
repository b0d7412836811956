/* `tern replay` and `tern audit`: verify the log by replaying it through the generated
 * tables, and print one workflow's timeline. Both only read the store. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "util.h"
#include "sm.h"
#include "store.h"
#include "cli.h"

const char tn_usage_replay[] =
    "usage: tern replay [--data DIR] [--until SEQ | --until-time ISO8601] [--no-chain] [--json]\n"
    "                   [--coverage-out FILE]\n"
    "\n"
    "Rebuild every projection (workflows, tasks, definitions, meta) from the events alone,\n"
    "check every event against the generated state machine tables (from-state, event,\n"
    "to-state) and the hash chain, and compare the rebuilt projections with the stored\n"
    "ones. Prints a summary; exits 1 naming the first offending seq and why.\n"
    "Replay only reads: it never repairs a store.\n"
    "\n"
    "  --data DIR            the data directory (default ./tern-data)\n"
    "  --until SEQ           replay events 1..SEQ only (no comparison with the store)\n"
    "  --until-time ISO8601  replay events up to this time, e.g. 2026-11-22T10:00:00Z\n"
    "  --no-chain            skip the hash chain check\n"
    "  --json                print the summary as JSON\n"
    "  --coverage-out FILE   append the transitions replayed, one \"MACHINE FROM EVENT TO\n"
    "                        COUNT\" line each, to FILE (read by `tern sm coverage`)\n";

const char tn_usage_audit[] =
    "usage: tern audit WF_ID [--data DIR] [--json]\n"
    "\n"
    "Print the timeline of one workflow instance and its tasks, from the log: time,\n"
    "actor, machine, id, event, from -> to, and the attributes the transition used.\n"
    "\n"
    "  --data DIR  the data directory (default ./tern-data)\n"
    "  --json      one JSON array of events\n";

static tn_err open_ro(const char *cmd, const char *dir, tn_store **s)
{
    tn_store_opts o = {.read_only = true};
    tn_errmsg m = {{0}};
    tn_err e = tn_store_open(dir, &o, s, &m);
    if (e)
        tn_cli_fail(cmd, "%s", m.text);
    return e;
}

static void print_states(FILE *f, const tn_sm *sm, const uint64_t *counts, bool json)
{
    bool first = true;
    for (unsigned i = 1; i < sm->nstates && i < TN_REPLAY_MAX_STATES; i++) {
        if (!counts[i])
            continue;
        if (json)
            fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", sm->state_names[i], counts[i]);
        else
            fprintf(f, "%s%s %" PRIu64, first ? "" : ", ", sm->state_names[i], counts[i]);
        first = false;
    }
    if (first && !json)
        fputs("none", f);
}

static void print_json(const tn_replay_report *r)
{
    printf("{\"ok\":%s,\"events\":%" PRIu64 ",\"last_seq\":%" PRIu64
           ",\"workflows\":%" PRIu64 ",\"tasks\":%" PRIu64 ",\"system_events\":%" PRIu64
           ",\"workflow_states\":{",
           r->err ? "false" : "true", r->events, r->last_seq, r->workflows, r->tasks,
           r->system_events);
    print_states(stdout, &tn_sm_workflow, r->wf_states, true);
    printf("},\"task_states\":{");
    print_states(stdout, &tn_sm_task, r->task_states, true);
    printf("},\"chain_checked\":%s,\"compared\":%s,\"error\":",
           r->chain_checked ? "true" : "false", r->compared ? "true" : "false");
    if (r->err) {
        printf("{\"seq\":%" PRIu64 ",\"code\":\"%s\",\"why\":", r->bad_seq,
               tn_errname(r->err));
        tn_json_cstr(stdout, r->why);
        printf("}");
    } else {
        printf("null");
    }
    printf("}\n");
}

int tn_cmd_replay(int argc, char **argv)
{
    const char *data = TN_DEFAULT_DATA;
    bool json = false;
    const char *cov = NULL;
    tn_replay_opts o = {.verify_chain = true, .compare = true};
    static const struct option lo[] = {{"data", required_argument, 0, 'd'},
                                       {"until", required_argument, 0, 'u'},
                                       {"until-time", required_argument, 0, 't'},
                                       {"no-chain", no_argument, 0, 'n'},
                                       {"json", no_argument, 0, 'j'},
                                       {"coverage-out", required_argument, 0, 'c'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'c': cov = optarg; break;
        case 'u':
            if (!tn_cli_u64(optarg, &o.until_seq) || o.until_seq == 0)
                return tn_cli_usage("replay", "--until wants a seq (a positive integer), not "
                                    "\"%s\"", optarg);
            break;
        case 't':
            if (tn_parse_time(optarg, &o.until_ns) != 0)
                return tn_cli_usage("replay", "--until-time wants an ISO 8601 time such as "
                                    "2026-11-22T10:00:00Z, not \"%s\"", optarg);
            break;
        case 'n': o.verify_chain = false; break;
        case 'j': json = true; break;
        default: return tn_cli_usage("replay", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return tn_cli_usage("replay", "unexpected argument \"%s\"", argv[optind]);
    tn_store *s;
    if (open_ro("replay", data, &s))
        return 1;
    tn_replay_report *r = malloc(sizeof(*r));
    if (!r) {
        tn_store_close(s);
        return tn_cli_fail("replay", "out of memory");
    }
    tn_err e = tn_replay_run(s, &o, r);
    if (e) {
        int rc = tn_cli_fail("replay", "%s: cannot read the log: %s", tn_store_path(s),
                             tn_strerror(e));
        free(r);
        tn_store_close(s);
        return rc;
    }
    if (json) {
        print_json(r);
    } else {
        printf("replay: %" PRIu64 " events (seq 1..%" PRIu64 "), %" PRIu64 " workflows, %" PRIu64
               " tasks, %" PRIu64 " system events\n",
               r->events, r->last_seq, r->workflows, r->tasks, r->system_events);
        printf("workflows: ");
        print_states(stdout, &tn_sm_workflow, r->wf_states, false);
        printf("\ntasks: ");
        print_states(stdout, &tn_sm_task, r->task_states, false);
        printf("\nchain: %s; projections: %s\n",
               !r->chain_checked ? "not checked" : r->err == TN_ERR_CHAIN ? "BROKEN" : "intact",
               !r->compared ? "not compared (partial replay)"
                            : r->err ? "see below" : "equal to the stored ones");
        if (!r->err)
            printf("OK\n");
    }
    int rc = 0;
    if (cov && (e = tn_replay_coverage_write(r, cov)))
        rc = tn_cli_fail("replay", "%s: cannot append the coverage: %s", cov, tn_strerror(e));
    if (r->err) {
        if (r->bad_seq)
            tn_cli_fail("replay", "%s: seq %" PRIu64 ": %s: %s", tn_store_path(s), r->bad_seq,
                        tn_strerror(r->err), r->why);
        else
            tn_cli_fail("replay", "%s: %s: %s", tn_store_path(s), tn_strerror(r->err), r->why);
        fprintf(stderr, "tern replay: the store is not consistent; it was not changed. Restore "
                        "it from a backup, or keep it for inspection with `tern audit`.\n");
        rc = 1;
    }
    free(r);
    tn_store_close(s);
    return rc;
}

typedef struct audit_ctx {
    bool json;
    size_t n;
} audit_ctx;

static void print_attr_value(const tn_attr *a, bool json)
{
    if (a->type == TN_ATTR_INT) {
        printf("%" PRId64, a->i);
    } else if (a->type == TN_ATTR_BIN) {
        if (json)
            printf("{\"bytes\":%u}", a->s.len);
        else
            printf("<%u bytes>", a->s.len);
    } else if (json) {
        tn_json_str(stdout, a->s.p, a->s.len);
    } else {
        bool plain = a->s.len > 0;
        for (uint32_t i = 0; i < a->s.len; i++)
            if (a->s.p[i] <= ' ' || a->s.p[i] == '"' || a->s.p[i] == '=')
                plain = false;
        if (plain)
            printf("%.*s", (int)a->s.len, a->s.p);
        else
            tn_json_str(stdout, a->s.p, a->s.len > 200 ? 200 : a->s.len);
    }
}

static int audit_one(void *vctx, const tn_event *ev)
{
    audit_ctx *x = vctx;
    const tn_sm *sm = tn_sm_get(ev->machine);
    char ts[40];
    tn_fmt_time(ev->at, ts, sizeof(ts));
    uint64_t id = ev->machine == TN_MACHINE_TASK ? ev->task : ev->wf;
    if (x->json) {
        printf("%s{\"seq\":%" PRIu64 ",\"at\":\"%s\",\"actor\":", x->n ? ",\n " : "", ev->seq, ts);
        tn_json_str(stdout, ev->actor.p, ev->actor.len);
        printf(",\"machine\":\"%s\",\"id\":%" PRIu64 ",\"event\":\"%s\",\"from\":\"%s\","
               "\"to\":\"%s\",\"attrs\":{",
               sm->name, id, tn_sm_event_name(sm, ev->event), tn_sm_state_name(sm, ev->from),
               tn_sm_state_name(sm, ev->to));
        for (uint32_t i = 0; i < ev->nattrs; i++) {
            printf("%s", i ? "," : "");
            tn_json_str(stdout, ev->attrs[i].key.p, ev->attrs[i].key.len);
            putchar(':');
            print_attr_value(&ev->attrs[i], true);
        }
        printf("}}");
    } else {
        printf("%s %6" PRIu64 " %-14.*s %-8s %-5" PRIu64 " %-13s %s -> %s", ts, ev->seq,
               (int)ev->actor.len, ev->actor.p, sm->name, id, tn_sm_event_name(sm, ev->event),
               tn_sm_state_name(sm, ev->from), tn_sm_state_name(sm, ev->to));
        for (uint32_t i = 0; i < ev->nattrs; i++) {
            printf(" %.*s=", (int)ev->attrs[i].key.len, ev->attrs[i].key.p);
            print_attr_value(&ev->attrs[i], false);
        }
        putchar('\n');
    }
    x->n++;
    return 0;
}

int tn_cmd_audit(int argc, char **argv)
{
    const char *data = TN_DEFAULT_DATA;
    audit_ctx x = {0};
    static const struct option lo[] = {{"data", required_argument, 0, 'd'},
                                       {"json", no_argument, 0, 'j'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'j': x.json = true; break;
        default: return tn_cli_usage("audit", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    uint64_t wf;
    if (optind != argc - 1 || !tn_cli_u64(argv[optind], &wf) || wf == 0)
        return tn_cli_usage("audit", "give one workflow instance id (a positive integer)");
    tn_store *s;
    if (open_ro("audit", data, &s))
        return 1;
    if (x.json)
        printf("[");
    else
        printf("%-24s %6s %-14s %-8s %-5s %-13s %s\n", "TIME", "SEQ", "ACTOR", "MACHINE", "ID",
               "EVENT", "FROM -> TO  ATTRS");
    int fr;
    tn_err e = tn_replay_wf_events(s, wf, audit_one, &x, &fr);
    if (x.json)
        printf("]\n");
    int rc = 0;
    if (e == TN_ERR_NOENT)
        rc = tn_cli_fail("audit", "%s: workflow instance %" PRIu64 " has no events; list "
                         "instances with `tern replay` or check --data", tn_store_path(s), wf);
    else if (e)
        rc = tn_cli_fail("audit", "%s: cannot read the events of workflow %" PRIu64 ": %s",
                         tn_store_path(s), wf, tn_strerror(e));
    tn_store_close(s);
    return rc;
}

/* `tern import ds FILE` and `tern export ds WF...`: DolphinScheduler exports in and out.
 * Imported definitions are applied as `tern def apply` does (through the running master,
 * else on the store); DATA/ds-codes.json remembers which DolphinScheduler code each was. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "jsonout.h"
#include "ctl.h"
#include "ds.h"
#include "engine.h"
#include "logread.h"

typedef struct imp_opts {
    const char *data, *master, *token_file, *out, *schedules, *version;
    bool json, dry_run, placeholder;
} imp_opts;

static const tn_opt import_table[] = {
    {"dry-run", 0, TN_OPT_FLAG, offsetof(imp_opts, dry_run), NULL,
     .help = "convert and report; store and write nothing"},
    {"placeholder", 0, TN_OPT_FLAG, offsetof(imp_opts, placeholder), NULL,
     .help = "turn tasks tern cannot run into shell tasks that fail naming their type\n"
             "(and drop alert groups with a note) instead of refusing the workflow"},
    {"schedules", 0, TN_OPT_STR, offsetof(imp_opts, schedules), "WHICH",
     .help = "online (default): import the enabled schedules; all: the offline ones too"},
    {"out", 0, TN_OPT_STR, offsetof(imp_opts, out), "DIR",
     .help = "also write each definition as DIR/NAME.yaml (a file `def apply` takes)"},
    {"data", 0, TN_OPT_STR, offsetof(imp_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)"},
    {"master", 0, TN_OPT_STR, offsetof(imp_opts, master), "URL",
     .help = "apply through the master at URL (default: the one serving DIR, if it runs)"},
    {"token-file", 0, TN_OPT_STR, offsetof(imp_opts, token_file), "F",
     .help = "send the token in F (default: $TERN_TOKEN); needed over tcp and tls+tcp"},
    {"json", 0, TN_OPT_FLAG, offsetof(imp_opts, json), NULL, .help = "print JSON for scripts"},
    {0}};

const tn_opt_cmd tn_spec_import = {
    "import", (const char *const[]){"ds FILE.json", NULL},
    "Read a DolphinScheduler export (the JSON its Export button writes: 1.3, 2.0-3.2 or 3.3)\n"
    "and store one tern definition per workflow, with its enabled schedule as the\n"
    "definition's schedule block. A workflow with tasks tern cannot run (SQL, PYTHON, HTTP,\n"
    "...), resources or alert groups, or a malformed one, is refused with each reason and\n"
    "where in the JSON; if any is refused nothing is stored. docs/IMPORT.md has the mapping.\n",
    import_table, .max_args = 2};

static const tn_opt export_table[] = {{"version", 0, TN_OPT_STR, offsetof(imp_opts, version),
                                       "V", .help = "DolphinScheduler's format: 3.2 or 3.3",
                                       TN_OPT_REQ},
                                      {"out", 0, TN_OPT_STR, offsetof(imp_opts, out), "FILE",
                                       .help = "write to FILE (default: stdout)"},
                                      {"data", 0, TN_OPT_STR, offsetof(imp_opts, data), "DIR",
                                       .help = "the data directory (default ./tern-data)"},
                                      {0}};

const tn_opt_cmd tn_spec_export = {
    "export", (const char *const[]){"ds WF...", NULL},
    "Write the latest version of each named workflow in DolphinScheduler's export format,\n"
    "which its Import reads and `tern import ds` reads back to the same definitions. A\n"
    "definition using what DolphinScheduler cannot express is refused, naming it.\n",
    export_table, .max_args = TN_OPT_ANY_ARGS};

/* ---- which workflow a DolphinScheduler code means ------------------------------------ */

typedef struct codes {
    json_t *map;  /* DATA/ds-codes.json: {"code": "name"} */
    char **names; /* every stored workflow */
    size_t n;
} codes;

static int codes_name_cb(void *ctx, const char *name, uint32_t version, const void *b, size_t l)
{
    codes *c = ctx;
    if (c->n && strcmp(c->names[c->n - 1], name) == 0)
        return 0;
    char **nn = realloc(c->names, (c->n + 1) * sizeof(*nn));
    if (!nn)
        return 1;
    c->names = nn;
    nn[c->n++] = strdup(name);
    return 0;
}

static void codes_load(codes *c, const char *data)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/ds-codes.json", data);
    c->map = json_load_file(path, 0, NULL);
    if (!json_is_object(c->map)) {
        json_decref(c->map);
        c->map = json_object();
    }
    tn_store *s;
    if (tn_log_open_read(data, &s, NULL) == TN_OK) {
        (void)tn_log_def_each(s, codes_name_cb, c, NULL);
        tn_log_close_read(s);
    }
}

static const char *codes_resolve(void *ctx, int64_t code)
{
    codes *c = ctx;
    char k[32];
    snprintf(k, sizeof(k), "%" PRId64, code);
    const char *v = json_string_value(json_object_get(c->map, k));
    for (size_t i = 0; !v && i < c->n; i++)
        if (c->names[i] && tn_ds_code(c->names[i], NULL) == code)
            v = c->names[i];
    return v;
}

static void codes_free(codes *c)
{
    json_decref(c->map);
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
}

static int codes_save(codes *c, const char *data, const tn_ds_result *r)
{
    for (size_t i = 0; i < r->n; i++) {
        char k[32];
        snprintf(k, sizeof(k), "%" PRId64, r->wfs[i].code);
        if (r->wfs[i].code && r->wfs[i].def)
            json_object_set_new(c->map, k, json_string(r->wfs[i].def->name));
    }
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/ds-codes.json", data);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    /* the definitions are stored by now: a map that cannot be written only costs later
     * imports the lookup, so it is a warning */
    if (json_dump_file(c->map, tmp, JSON_INDENT(1) | JSON_SORT_KEYS) || rename(tmp, path))
        fprintf(stderr,
                "tern import: warning: %s: cannot write (%s): a later import will not find "
                "these workflows by their DolphinScheduler codes\n",
                path, strerror(errno));
    return 0;
}

/* ---- applying ------------------------------------------------------------------------ */

typedef struct applied {
    uint64_t version;
    bool unchanged;
} applied;

static int apply_local(tn_local *l, const tn_def *d, applied *a)
{
    char *bytes;
    size_t len;
    if (tn_def_encode(d, &bytes, &len))
        return tn_cli_fail("import", "%s: cannot encode", d->name);
    tn_cmd c = {
        .kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = len, .actor = "user:cli"};
    tn_err err = tn_engine_call(l->e, &c);
    free(bytes);
    if (err)
        return tn_cli_fail("import", "%s: %s", d->name, c.msg);
    *a = (applied){c.out_id, c.unchanged};
    return 0;
}

static int apply_remote(const char *url, const char *data, const tn_def *d, applied *a)
{
    char *bytes;
    size_t len;
    if (tn_def_encode(d, &bytes, &len))
        return tn_cli_fail("import", "%s: cannot encode", d->name);
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r) {
        free(bytes);
        return tn_cli_fail("import", "out of memory");
    }
    r->cmd = TN_STR("apply");
    r->file = tn_str_c(d->name);
    r->bytes = (tn_str){bytes, (uint32_t)len};
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc = tn_client_call("import", url, data, r, &rep, &raw);
    if (!rc && rep.ok) {
        json_t *j = json_loadb(rep.json.p, rep.json.len, 0, NULL);
        *a = (applied){(uint64_t)json_integer_value(json_object_get(j, "version")),
                       json_is_false(json_object_get(j, "changed"))};
        json_decref(j);
    } else if (!rc) {
        rc = tn_cli_fail("import", "%s: %.*s", d->name, (int)rep.text.len, rep.text.p);
    }
    free(raw);
    free(r);
    free(bytes);
    return rc ? 1 : 0;
}

/* Children before the workflows that run them, so each sub_workflow finds its target. */
static size_t *apply_order(const tn_ds_result *r)
{
    size_t *ord = calloc(r->n + 1, sizeof(*ord)), k = 0;
    bool *done = calloc(r->n + 1, sizeof(*done));
    for (bool progress = true; ord && done && progress;) {
        progress = false;
        for (size_t i = 0; i < r->n; i++) {
            const tn_def *d = r->wfs[i].def;
            bool ready = !done[i];
            for (uint32_t t = 0; ready && t < d->n_tasks; t++)
                for (size_t j = 0; ready && j < r->n; j++)
                    ready = !(d->tasks[t].type == TN_DEF_TASK_SUB_WORKFLOW && !done[j] &&
                              strcmp(r->wfs[j].def->name, d->tasks[t].sub.workflow) == 0);
            if (ready) {
                done[i] = progress = true;
                ord[k++] = i;
            }
        }
    }
    for (size_t i = 0; ord && done && i < r->n; i++) /* sub_workflows in a ring: any order */
        if (!done[i])
            ord[k++] = i;
    free(done);
    return ord;
}

static int apply_all(const imp_opts *o, const tn_ds_result *r, applied *out)
{
    char url[4200];
    tn_ctl_common c = {.master = o->master, .data = o->data};
    tn_client_url(&c, url, sizeof(url));
    tn_client_set_token_file(o->token_file);
    bool remote = tn_client_probe(url);
    if (!remote && o->master)
        return tn_cli_fail("import", "%s: no master answers", url);
    tn_local l;
    if (!remote && tn_local_open("import", o->data, &l))
        return 1;
    size_t *ord = apply_order(r);
    int rc = ord ? 0 : tn_cli_fail("import", "out of memory");
    for (size_t i = 0; !rc && i < r->n; i++) {
        const tn_def *d = r->wfs[ord[i]].def;
        rc = remote ? apply_remote(url, o->data, d, &out[ord[i]]) :
                      apply_local(&l, d, &out[ord[i]]);
    }
    free(ord);
    if (!remote)
        tn_local_close(&l);
    return rc;
}

static int write_yaml(const char *dir, const tn_def *d)
{
    char *y;
    size_t len;
    if (tn_def_to_yaml(d, &y, &len))
        return tn_cli_fail("import", "out of memory");
    char path[4600];
    snprintf(path, sizeof(path), "%s/%s.yaml", dir, d->name);
    FILE *f = fopen(path, "we");
    bool ok = f && fwrite(y, 1, len, f) == len;
    ok = f && fclose(f) == 0 && ok;
    free(y);
    return ok ? 0 : tn_cli_fail("import", "%s: cannot write: %s", path, strerror(errno));
}

/* ---- reporting ----------------------------------------------------------------------- */

static json_t *json_list(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        tn_jo_push(a, tn_jo_str(v[i]));
    return a;
}

/* What happened to each workflow: imported (with its version), would import (dry run),
 * or refused with every reason; and the notes either way. */
static void report(const imp_opts *o, const tn_ds_result *r, const applied *a, bool stored)
{
    if (o->json)
        printf("{\"generation\":\"%s\",\"stored\":%s,\"workflows\":[", r->generation,
               stored ? "true" : "false");
    for (size_t i = 0; i < r->n; i++) {
        const tn_ds_wf *w = &r->wfs[i];
        const char *name = w->name ? w->name : "(no name)";
        const char *st = !w->def        ? "refused" :
                         !stored        ? "ok" :
                         a[i].unchanged ? "unchanged" :
                                          "imported";
        if (o->json) {
            json_t *j = json_pack("{s:o,s:I,s:s}", "name", tn_jo_str(name), "code",
                                  (json_int_t)w->code, "status", st);
            if (j && stored && w->def)
                tn_jo_set(j, "version", json_integer((json_int_t)a[i].version));
            if (j) {
                tn_jo_set(j, "problems", json_list(w->problems, w->n_problems));
                tn_jo_set(j, "notes", json_list(w->notes, w->n_notes));
            }
            printf("%s", i ? "," : "");
            tn_cli_json_put(stdout, j);
            continue;
        }
        if (stored)
            printf("%s: %s (version %" PRIu64 ")\n", name, st, a[i].version);
        else
            printf("%s: %s\n", name, w->def ? "can be imported" : "refused:");
        for (size_t j = 0; j < w->n_problems; j++)
            printf("  - %s\n", w->problems[j]);
        for (size_t j = 0; j < w->n_notes; j++)
            printf("  note: %s\n", w->notes[j]);
    }
    if (o->json)
        printf("]}\n");
}

static int read_all(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return tn_cli_fail("import", "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (size_t got = 1; b && got;) {
        if (n == cap) {
            char *nb = n > TN_DS_MAX_FILE ? NULL : realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                fclose(f);
                return tn_cli_fail("import", "%s: over the %u-byte limit of an export", path,
                                   TN_DS_MAX_FILE);
            }
            b = nb;
        }
        got = fread(b + n, 1, cap - n, f);
        n += got;
    }
    fclose(f);
    if (!b)
        return tn_cli_fail("import", "out of memory");
    *buf = b;
    *len = n;
    return 0;
}

static int do_import(const imp_opts *o, const char *file)
{
    char *buf = NULL;
    size_t len = 0;
    if (read_all(file, &buf, &len))
        return 1;
    codes c = {0};
    codes_load(&c, o->data);
    tn_ds_opts opts = {.placeholder = o->placeholder,
                       .all_schedules = o->schedules && strcmp(o->schedules, "all") == 0,
                       .resolve = codes_resolve,
                       .resolve_ctx = &c};
    tn_ds_result r = {0};
    tn_errmsg m = {{0}};
    int rc = 0;
    if (tn_ds_import(buf, len, &opts, &r, &m)) {
        rc = tn_cli_fail("import", "%s: %s", file, m.text);
        goto out;
    }
    size_t refused = 0;
    for (size_t i = 0; i < r.n; i++)
        refused += !r.wfs[i].def;
    applied *a = calloc(r.n, sizeof(*a));
    bool store = !refused && !o->dry_run && a;
    if (store && o->out && mkdir(o->out, 0755) && errno != EEXIST)
        rc = tn_cli_fail("import", "%s: cannot create: %s", o->out, strerror(errno));
    for (size_t i = 0; store && !rc && o->out && i < r.n; i++)
        rc = write_yaml(o->out, r.wfs[i].def);
    if (store && !rc)
        rc = apply_all(o, &r, a);
    if (store && !rc)
        rc = codes_save(&c, o->data, &r);
    report(o, &r, a, store && !rc);
    free(a);
    if (refused && !rc)
        rc = tn_cli_fail("import",
                         "%s: %zu of %zu workflows refused (reasons above); nothing "
                         "was stored",
                         file, refused, r.n);
out:
    tn_ds_import_free(&r);
    codes_free(&c);
    free(buf);
    return rc;
}

int tn_cmd_import(int argc, char **argv)
{
    imp_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_import, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (a.n != 2 || strcmp(a.v[0], "ds") != 0)
        rc = tn_cli_usage("import", "say `tern import ds FILE.json`");
    else if (o.schedules && strcmp(o.schedules, "all") != 0 &&
             strcmp(o.schedules, "online") != 0)
        rc = tn_cli_usage("import", "--schedules takes online or all");
    else
        rc = do_import(&o, a.v[1]);
    tn_opt_args_free(&a);
    return rc;
}

/* ---- export -------------------------------------------------------------------------- */

static int load_defs(const char *data, int n, char **names, tn_def **defs)
{
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_log_open_read(data, &s, &m))
        return tn_cli_fail("export", "%s", m.text);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        tn_buf bytes = {0};
        uint32_t v;
        if (tn_log_def_latest(s, names[i], &v, &bytes) ||
            tn_def_decode(bytes.data, bytes.size, &defs[i], &m))
            rc = tn_cli_fail("export", "no workflow named \"%s\"; see `tern def ls`", names[i]);
        tn_buf_free(&bytes);
    }
    tn_log_close_read(s);
    return rc;
}

static int do_export(const imp_opts *o, int n, char **names)
{
    tn_def **defs = calloc((size_t)n, sizeof(*defs));
    if (!defs)
        return tn_cli_fail("export", "out of memory");
    int rc = load_defs(o->data, n, names, defs);
    char *text = NULL;
    tn_errmsg m = {{0}};
    if (!rc && tn_ds_export(defs, (size_t)n, o->version, &text, &m))
        rc = tn_cli_fail("export", "%s", m.text);
    if (!rc) {
        FILE *f = o->out ? fopen(o->out, "we") : stdout;
        bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
        if (f && f != stdout)
            ok = fclose(f) == 0 && ok;
        if (!ok)
            rc = tn_cli_fail("export", "%s: cannot write: %s", o->out ? o->out : "stdout",
                             strerror(errno));
    }
    free(text);
    for (int i = 0; i < n; i++)
        tn_def_free(defs[i]);
    free(defs);
    return rc;
}

int tn_cmd_export(int argc, char **argv)
{
    imp_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_export, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (a.n < 2 || strcmp(a.v[0], "ds") != 0)
        rc = tn_cli_usage("export", "say `tern export ds WF... --version 3.2|3.3`");
    else if (!o.version || (strcmp(o.version, "3.2") != 0 && strcmp(o.version, "3.3") != 0))
        rc = tn_cli_usage("export", "--version takes 3.2 or 3.3");
    else
        rc = do_export(&o, a.n - 1, a.v + 1);
    tn_opt_args_free(&a);
    return rc;
}

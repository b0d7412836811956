/* `tern def apply|ls|show`: workflow definitions, applied through the running master
 * when one answers, else on the store directly; listed and shown from the store. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "def.h"
#include "engine.h"
#include "proj.h"
#include "logread.h"
#include "cli.h"
#include "jsonout.h"

typedef struct def_opts {
    const char *data, *master, *token_file, *zk;
    bool json;
    uint64_t version;
} def_opts;

static const tn_opt def_table[] = {
    {"version", 0, TN_OPT_U64, offsetof(def_opts, version), "N",
     .help = "show: this version (default: the latest)", .min = 1, .want = "a positive number"},
    {"data", 0, TN_OPT_STR, offsetof(def_opts, data), "DIR",
     .help = "the data directory (default ./tern-data)"},
    {"master", 0, TN_OPT_STR, offsetof(def_opts, master), "URL",
     .help = "apply: through the master at URL (default: the one serving DIR, if it runs)"},
    {"zk", 0, TN_OPT_STR, offsetof(def_opts, zk), "HOSTS/CLUSTER",
     .help = "apply: through the leader of a cluster of masters (default: $TERN_ZK)"},
    {"token-file", 0, TN_OPT_STR, offsetof(def_opts, token_file), "F",
     .help = "apply: send the token in F (default: $TERN_TOKEN); needed over tcp and tls+tcp"},
    {"json", 0, TN_OPT_FLAG, offsetof(def_opts, json), NULL, .help = "print JSON for scripts"},
    {0}};

const tn_opt_cmd tn_spec_def = {
    "def", (const char *const[]){"apply FILE...", "ls", "show NAME", NULL},
    "apply: validate each YAML file and store it as a new version of its workflow when its\n"
    "       content changed (comments, spacing and key order are not changes).\n"
    "ls:    every workflow definition with its latest version.\n"
    "show:  one version (default: the latest) as a workflow file: every key that differs\n"
    "       from its default; `def apply` takes it back unchanged.\n",
    def_table, .max_args = TN_OPT_ANY_ARGS};

/* Apply one file on the local engine, printing its outcome. */
static int apply_file(tn_local *l, const char *path, bool json, bool first)
{
    tn_def *def;
    tn_errmsg m = {{0}};
    if (tn_def_parse_file(path, &def, &m))
        return tn_cli_fail("def", "%s", m.text);
    char *bytes;
    size_t len;
    tn_err err = tn_def_encode(def, &bytes, &len);
    if (err) {
        tn_def_free(def);
        return tn_cli_fail("def", "%s: cannot encode: %s", path, tn_strerror(err));
    }
    tn_cmd c = {
        .kind = TN_CMD_APPLY_DEF, .def_bytes = bytes, .def_len = len, .actor = "user:cli"};
    err = tn_engine_call(l->e, &c);
    free(bytes);
    int rc = 0;
    if (err) {
        rc = tn_cli_fail("def", "%s: %s", path, c.msg);
    } else if (json) {
        printf("%s", first ? "" : ",");
        tn_cli_json_put(stdout, json_pack("{s:o,s:o,s:I,s:b}", "file", tn_jo_str(path), "name",
                                          tn_jo_str(def->name), "version", (json_int_t)c.out_id,
                                          "changed", !c.unchanged));
    } else {
        printf("%s: %s %s (version %" PRIu64 ")\n", path, def->name,
               c.unchanged ? "unchanged" : "applied", c.out_id);
    }
    tn_def_free(def);
    return rc;
}

/* `tern def ls`: each definition's latest version; the defs come by name, then
 * version ascending, so a name's last call carries its latest. */
typedef struct def_row {
    bool json;
    size_t n;
    char prev[TN_DEF_MAX_NAME + 1];
    uint32_t ver;
} def_row;

static void def_row_print(def_row *x)
{
    if (!x->prev[0])
        return;
    if (x->json) {
        printf("%s", x->n ? "," : "");
        tn_cli_json_put(stdout, json_pack("{s:o,s:I}", "name", tn_jo_str(x->prev), "version",
                                          (json_int_t)x->ver));
    } else {
        printf("%-32s %u\n", x->prev, x->ver);
    }
    x->n++;
}

static int def_row_cb(void *ctx, const char *name, uint32_t version, const void *bytes,
                      size_t len)
{
    def_row *x = ctx;
    if (strlen(name) > TN_DEF_MAX_NAME)
        return 0;
    if (strcmp(x->prev, name) != 0) {
        def_row_print(x);
        snprintf(x->prev, sizeof(x->prev), "%s", name);
    }
    x->ver = version;
    return 0;
}

static int def_ls(const char *data, bool json)
{
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_log_open_read(data, &s, &m))
        return tn_cli_fail("def", "%s", m.text);
    def_row x = {.json = json};
    if (json)
        printf("[");
    else
        printf("%-32s %s\n", "WORKFLOW", "LATEST");
    (void)tn_log_def_each(s, def_row_cb, &x, NULL);
    def_row_print(&x);
    if (json)
        printf("]\n");
    tn_log_close_read(s);
    return 0;
}

static int def_show(const char *data, const char *name, uint64_t version, bool json)
{
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_log_open_read(data, &s, &m))
        return tn_cli_fail("def", "%s", m.text);
    tn_buf bytes = {0};
    tn_def *def = NULL;
    uint32_t found = 0;
    tn_err e = TN_ERR_NOENT;
    if (version && version <= UINT32_MAX) {
        found = (uint32_t)version;
        e = tn_log_def_get(s, name, found, &bytes);
    } else if (!version) {
        e = tn_log_def_latest(s, name, &found, &bytes);
    }
    if (e || tn_def_decode(bytes.data, bytes.size, &def, &m) != TN_OK)
        def = NULL;
    tn_buf_free(&bytes);
    tn_log_close_read(s);
    if (!def) {
        if (version)
            return tn_cli_fail("def",
                               "workflow \"%s\" has no version %" PRIu64 "; see `tern def ls`",
                               name, version);
        return tn_cli_fail("def", "no workflow named \"%s\"; see `tern def ls`", name);
    }
    if (json) {
        json_t *tasks = json_array();
        for (uint32_t i = 0; tasks && i < def->n_tasks; i++) {
            const tn_def_task *tk = &def->tasks[i];
            json_t *deps = json_array();
            for (uint32_t j = 0; deps && j < tk->n_deps; j++)
                tn_jo_push(deps, tn_jo_str(tk->deps[j].name));
            tn_jo_push(tasks, json_pack("{s:o,s:s,s:o,s:I}", "name", tn_jo_str(tk->name),
                                        "type", tn_def_task_type_name(tk->type), "deps", deps,
                                        "retries", (json_int_t)tk->retries));
        }
        tn_cli_json_put(stdout, json_pack("{s:o,s:I,s:s,s:s,s:o}", "name", tn_jo_str(def->name),
                                          "version", (json_int_t)found, "execution",
                                          tn_def_exec_name(def->execution), "failure_strategy",
                                          tn_def_failure_strategy_name(def->failure_strategy),
                                          "tasks", tasks));
        printf("\n");
    } else {
        char *yaml;
        size_t len;
        if (tn_def_to_yaml(def, &yaml, &len) != TN_OK) {
            tn_def_free(def);
            return tn_cli_fail("def", "out of memory");
        }
        /* a comment, so the output stays a file `tern def apply` takes back */
        printf("# version %u of this workflow\n%s", found, yaml);
        free(yaml);
    }
    tn_def_free(def);
    return 0;
}

/* One file through the master at url: its canonical encoding in an apply request. */
static int apply_remote_file(const char *url, const char *data, const char *path, bool json,
                             bool first)
{
    tn_def *d;
    tn_errmsg m = {{0}};
    if (tn_def_parse_file(path, &d, &m))
        return tn_cli_fail("def", "%s", m.text);
    char *bytes;
    size_t len;
    tn_err e = tn_def_encode(d, &bytes, &len);
    tn_def_free(d);
    if (e)
        return tn_cli_fail("def", "%s: cannot encode", path);
    tn_ctl_req *r = calloc(1, sizeof(*r));
    if (!r) {
        free(bytes);
        return tn_cli_fail("def", "out of memory");
    }
    r->cmd = TN_STR("apply");
    r->file = tn_str_c(path);
    r->bytes = (tn_str){bytes, (uint32_t)len};
    tn_ctl_rep rep;
    void *raw = NULL;
    int rc = tn_client_call("def", url, data, r, &rep, &raw);
    if (!rc) {
        if (json && rep.ok)
            printf("%s%.*s", first ? "" : ",", (int)rep.json.len, rep.json.p);
        else if (!json && rep.ok)
            printf("%.*s\n", (int)rep.text.len, rep.text.p);
        else
            rc = tn_cli_fail("def", "%.*s", (int)rep.text.len, rep.text.p);
    }
    free(raw);
    free(r);
    free(bytes);
    return rc ? 1 : 0;
}

/* `tern def apply` with a master running: it owns the store. Returns -1 when no master
 * answers (and none was named), so the caller works on the store directly. */
static int apply_remote(const def_opts *o, int nfiles, char **files)
{
    char url[4200];
    tn_ctl_common c = {.master = o->master, .data = o->data, .zk = o->zk};
    tn_client_url(&c, url, sizeof(url));
    tn_client_set_token_file(o->token_file);
    bool named = o->master || o->zk || (!o->master && getenv("TERN_ZK"));
    if (!tn_client_probe(url))
        return named ? tn_cli_fail("def", "%s: no master answers", url) : -1;
    int rc = 0;
    if (o->json)
        printf("[");
    for (int i = 0; i < nfiles; i++)
        if (apply_remote_file(url, o->data, files[i], o->json, i == 0))
            rc = 1;
    if (o->json)
        printf("]\n");
    return rc;
}

/* What can be checked against the store before anything is applied: the workflows that
 * sub_workflow tasks name. A file that does not parse is left to apply_file's message. */
static int check_files(const def_opts *o, int nfiles, char **files)
{
    tn_def **defs = calloc((size_t)nfiles, sizeof(*defs));
    const char **paths = calloc((size_t)nfiles, sizeof(*paths));
    size_t n = 0;
    int rc = defs && paths ? 0 : tn_cli_fail("def", "out of memory");
    for (int i = 0; !rc && i < nfiles; i++) {
        tn_errmsg m = {{0}};
        if (tn_def_parse_file(files[i], &defs[n], &m) == TN_OK)
            paths[n++] = files[i];
    }
    if (!rc)
        rc = tn_cli_check_subs("def", o->data, defs, paths, n);
    for (size_t i = 0; i < n; i++)
        tn_def_free(defs[i]);
    free(defs);
    free(paths);
    return rc;
}

static int def_apply(const def_opts *o, int nfiles, char **files)
{
    if (nfiles == 0)
        return tn_cli_usage("def", "apply wants one or more files");
    if (check_files(o, nfiles, files))
        return 1;
    int remote = apply_remote(o, nfiles, files);
    if (remote >= 0)
        return remote;
    tn_local l;
    int rc = tn_local_open("def", o->data, &l);
    if (rc)
        return rc;
    if (o->json)
        printf("[");
    for (int i = 0; i < nfiles; i++)
        if (apply_file(&l, files[i], o->json, i == 0))
            rc = 1;
    if (o->json)
        printf("]\n");
    tn_local_close(&l);
    return rc;
}

static int def_sub(const def_opts *o, int n, char **v)
{
    if (n == 0)
        return tn_cli_usage("def", "say apply, ls or show");
    if (strcmp(v[0], "ls") == 0)
        return def_ls(o->data, o->json);
    if (strcmp(v[0], "show") == 0)
        return n == 2 ? def_show(o->data, v[1], o->version, o->json) :
                        tn_cli_usage("def", "show wants one workflow name");
    if (strcmp(v[0], "apply") == 0)
        return def_apply(o, n - 1, v + 1);
    return tn_cli_usage("def", "unknown subcommand \"%s\" (apply, ls, show)", v[0]);
}

int tn_cmd_def(int argc, char **argv)
{
    def_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_def, argc, argv, &o, &a);
    if (rc)
        return rc;
    rc = def_sub(&o, a.n, a.v);
    tn_opt_args_free(&a);
    return rc;
}

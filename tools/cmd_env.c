/* `tern env set NAME FILE`: a named shell prelude for the tasks that say
 * `environment: NAME`. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "logread.h"
#include "cli.h"
#include "jsonout.h"

typedef struct env_opts {
    const char *data;
    bool json;
} env_opts;

static const tn_opt env_table[] = {{"data", 0, TN_OPT_STR, offsetof(env_opts, data), "DIR",
                                    .help = "the data directory (default ./tern-data)"},
                                   {"json", 0, TN_OPT_FLAG, offsetof(env_opts, json), NULL,
                                    .help = "ls: [{\"name\",\"text\"}]"},
                                   {0}};

const tn_opt_cmd tn_spec_env = {
    "env", (const char *const[]){"set NAME FILE", "ls", NULL},
    "set: store a named environment: FILE's text runs before the command of every shell\n"
    "     task that says `environment: NAME`.\n"
    "ls:  every environment, its size and first line (--json: the whole text).\n",
    env_table, .max_args = 3};

/* The text of path, at most 64 KiB; NULL (after saying why) otherwise. */
static char *read_env(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        tn_cli_fail("env", "%s: cannot read: %m", path);
        return NULL;
    }
    char *text = calloc(1, 65537);
    size_t n = text ? fread(text, 1, 65536, f) : 0;
    bool more = fgetc(f) != EOF;
    fclose(f);
    if (!text || more) {
        free(text);
        tn_cli_fail("env", "%s: an environment is at most 64 KiB", path);
        return NULL;
    }
    text[n] = 0;
    return text;
}

typedef struct env_list {
    bool json;
    size_t n;
} env_list;

static int env_row(void *ctx, const char *name, const void *val, size_t len)
{
    env_list *l = ctx;
    if (l->json) {
        printf("%s", l->n ? "," : "");
        tn_cli_json_put(stdout, json_pack("{s:o,s:o}", "name", tn_jo_str(name), "text",
                                          tn_jo_strn(val, len)));
    } else {
        const char *nl = memchr(val, '\n', len);
        size_t first = nl ? (size_t)(nl - (const char *)val) : len;
        printf("%s\t%zu bytes\t%.*s%s\n", name, len, (int)(first > 60 ? 60 : first),
               (const char *)val, first > 60 || (nl && first + 1 < len) ? " ..." : "");
    }
    l->n++;
    return 0;
}

static int env_ls(const env_opts *o)
{
    tn_store *s;
    if (tn_cli_store_ro("env", o->data, &s))
        return 1;
    env_list l = {.json = o->json};
    if (o->json)
        printf("[");
    tn_err e = tn_log_env_each(s, env_row, &l);
    if (o->json)
        printf("]\n");
    tn_log_close_read(s);
    return e ? tn_cli_fail("env", "cannot read the store: %s", tn_strerror(e)) : 0;
}

int tn_cmd_env(int argc, char **argv)
{
    env_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_env, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (a.n == 1 && strcmp(a.v[0], "ls") == 0) {
        tn_opt_args_free(&a);
        return env_ls(&o);
    }
    if (a.n != 3 || strcmp(a.v[0], "set") != 0) {
        tn_opt_args_free(&a);
        return tn_cli_usage("env", "usage: tern env set NAME FILE, or tern env ls");
    }
    char *text = read_env(a.v[2]);
    if (text) {
        tn_cmd c = {.kind = TN_CMD_ENV_SET, .name = a.v[1], .text = text, .actor = "user:cli"};
        rc = tn_local_set("env", o.data, &c);
        free(text);
    } else {
        rc = 1;
    }
    tn_opt_args_free(&a);
    return rc;
}

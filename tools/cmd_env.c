/* `tern env set NAME FILE`: a named shell prelude for the tasks that say
 * `environment: NAME`. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "cli.h"

typedef struct env_opts {
    const char *data;
} env_opts;

static const tn_opt env_table[] = {{"data", 0, TN_OPT_STR, offsetof(env_opts, data), "DIR",
                                    .help = "the data directory (default ./tern-data)"},
                                   {0}};

const tn_opt_cmd tn_spec_env = {
    "env", (const char *const[]){"set NAME FILE", NULL},
    "Store a named environment: FILE's text runs before the command of every shell task\n"
    "that says `environment: NAME`.\n",
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

int tn_cmd_env(int argc, char **argv)
{
    env_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_env, argc, argv, &o, &a);
    if (rc)
        return rc;
    if (a.n != 3 || strcmp(a.v[0], "set") != 0) {
        tn_opt_args_free(&a);
        return tn_cli_usage("env", "usage: tern env set NAME FILE");
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

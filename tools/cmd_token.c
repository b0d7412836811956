/* `tern token add|ls|rm`: the tokens that let a client use the master's control socket
 * over tcp or tls+tcp (core/master/token.h). They live in DATA/tokens, so managing them
 * takes the master's user on its host, as the data directory does. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "util.h"
#include "cli.h"
#include "jsonout.h"

typedef struct token_opts {
    const char *data, *role;
    bool json;
} token_opts;

static const tn_opt token_table[] = {
    {"role", 0, TN_OPT_STR, offsetof(token_opts, role), "viewer|operator|admin",
     .help = "add: what the token may do (viewer reads; operator also starts, stops, kills; "
             "admin also applies definitions, sets task groups and environments)"},
    {"data", 0, TN_OPT_STR, offsetof(token_opts, data), "DIR",
     .help = "the master's data directory (default ./tern-data)"},
    {"json", 0, TN_OPT_FLAG, offsetof(token_opts, json), NULL,
     .help = "print JSON for scripts"},
    {0}};

const tn_opt_cmd tn_spec_token = {
    "token",
    (const char *const[]){"add NAME --role viewer|operator|admin", "ls", "rm NAME", NULL},
    "add: make a token, print it once (only its hash is kept, in DIR/tokens, mode 0600).\n"
    "     A client sends it with --token-file F or TERN_TOKEN; the log records its actions\n"
    "     as token:NAME.\n"
    "ls:  the tokens: name, role, when made (never the secrets).\n"
    "rm:  revoke a token at once (the running master reads the file at each request).\n",
    token_table, .max_args = 2};

static int token_add(const token_opts *o, const char *name)
{
    tn_role role = tn_role_parse(o->role);
    if (role == TN_ROLE_NONE)
        return tn_cli_usage("token", "add wants --role viewer, operator or admin");
    char secret[TN_TOKEN_LEN + 1];
    tn_errmsg m = {{0}};
    if (tn_token_add(o->data, name, role, secret, &m))
        return tn_cli_fail("token", "%s", m.text);
    if (o->json) {
        /* the secret is printed from this buffer, which is wiped below: a jansson string
         * of it would stay in freed memory */
        printf("{\"name\":");
        tn_json_cstr(stdout, name);
        printf(",\"role\":\"%s\",\"token\":\"%s\"}\n", tn_role_name(role), secret);
    } else {
        printf("%s\n", secret);
        fprintf(stderr,
                "tern token: %s (%s) added; the line above is shown only now: keep it in a "
                "file only its user reads and pass --token-file, or set TERN_TOKEN\n",
                name, tn_role_name(role));
    }
    explicit_bzero(secret, sizeof(secret));
    return 0;
}

static int token_ls(const token_opts *o)
{
    tn_token_info *t;
    size_t n;
    tn_errmsg m = {{0}};
    if (tn_token_list(o->data, &t, &n, &m))
        return tn_cli_fail("token", "%s", m.text);
    if (o->json)
        printf("[");
    else
        printf("%-40s %-9s %s\n", "NAME", "ROLE", "CREATED");
    for (size_t i = 0; i < n; i++) {
        char ts[40];
        tn_fmt_time(t[i].created * 1000000000LL, ts, sizeof(ts));
        if (o->json) {
            printf("%s", i ? "," : "");
            tn_cli_json_put(stdout, json_pack("{s:o,s:s,s:I}", "name", tn_jo_str(t[i].name),
                                              "role", tn_role_name(t[i].role), "created",
                                              (json_int_t)t[i].created));
        } else {
            printf("%-40s %-9s %s\n", t[i].name, tn_role_name(t[i].role), ts);
        }
    }
    if (o->json)
        printf("]\n");
    free(t);
    return 0;
}

int tn_cmd_token(int argc, char **argv)
{
    token_opts o = {.data = TN_DEFAULT_DATA};
    tn_opt_args a;
    int rc = tn_opt_cli(&tn_spec_token, argc, argv, &o, &a);
    if (rc)
        return rc;
    const char *sub = a.n ? a.v[0] : "";
    tn_errmsg m = {{0}};
    if (strcmp(sub, "add") == 0 && a.n == 2)
        rc = token_add(&o, a.v[1]);
    else if (strcmp(sub, "ls") == 0 && a.n == 1)
        rc = token_ls(&o);
    else if (strcmp(sub, "rm") == 0 && a.n == 2)
        rc = tn_token_rm(o.data, a.v[1], &m) ? tn_cli_fail("token", "%s", m.text) : 0;
    else
        rc = tn_cli_usage("token", "add NAME --role viewer|operator|admin, ls, or rm NAME");
    if (rc == 0 && strcmp(sub, "rm") == 0)
        fprintf(stderr, "tern token: %s revoked\n", a.v[1]);
    tn_opt_args_free(&a);
    return rc;
}

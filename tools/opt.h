/* The command-line option parser of `tern`: one table per command says each option's
 * names, kind, where its value goes, its help line and whether a config file may set it.
 * The same table parses argv, reads `--config FILE` and writes `tern CMD --help`.
 *
 * Adopting it in a command:
 *   typedef struct my_opts { const char *data; bool json; uint64_t n; } my_opts;
 *   static const tn_opt my_table[] = {
 *       {"data", 0, TN_OPT_STR, offsetof(my_opts, data), "DIR", .help = "the data directory"},
 *       {"json", 0, TN_OPT_FLAG, offsetof(my_opts, json), NULL, .help = "print JSON"},
 *       {"n", 'n', TN_OPT_U64, offsetof(my_opts, n), "N", .help = "how many",
 *        .min = 1, .max = 9},
 *       {0}};
 *   const tn_opt_cmd tn_spec_my = {"my", (const char *[]){"FILE", NULL}, "What it does.\n",
 *                                  my_table, .max_args = 1};
 *   int tn_cmd_my(int argc, char **argv) {
 *       my_opts o = {.data = TN_DEFAULT_DATA};
 *       tn_opt_args a;
 *       int rc = tn_opt_cli(&tn_spec_my, argc, argv, &o, &a);
 *       if (rc) return rc;
 *       ... a.v[0] ... ; tn_opt_args_free(&a);
 *   }
 * and list {"my", "summary", NULL, &tn_spec_my, tn_cmd_my} in tern.c.
 * `.help =` is designated so that -Wextra does not ask for the fields that follow; the
 * strings in o may be copies held by a (config values, keys): use them before freeing a. */
#ifndef TN_OPT_H
#define TN_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How many values a repeatable option (TN_OPT_KV, TN_OPT_LIST) holds at most. */
#define TN_OPT_MAX_LIST 256
/* tn_opt_cmd.max_args: any number of positional arguments. */
#define TN_OPT_ANY_ARGS (-1)

typedef enum tn_opt_kind {
    TN_OPT_FLAG,     /* bool, set by the bare flag; in a file: true/false/yes/no/on/off/1/0 */
    TN_OPT_STR,      /* const char *; the last one given wins */
    TN_OPT_U64,      /* uint64_t, decimal, within [min, max] (max 0: no upper bound) */
    TN_OPT_U32,      /* uint32_t, as TN_OPT_U64 (max 0: UINT32_MAX) */
    TN_OPT_DURATION, /* uint64_t milliseconds, from "500ms", "10s", "2m", ... */
    TN_OPT_SIZE,     /* uint64_t bytes, from "512M", "1G", ... */
    TN_OPT_TIME,     /* int64_t ns since the epoch, from ISO 8601 */
    TN_OPT_KV,       /* tn_opt_kv: repeated key=value (a non-empty key) */
    TN_OPT_LIST,     /* tn_opt_list: repeated value */
    TN_OPT_CUSTOM,   /* the table's parse function converts the value */
    TN_OPT_CONFIG,   /* const char *: a config file of `key = value` lines, read first */
} tn_opt_kind;

/* tn_opt.flags */
#define TN_OPT_CFG    1u /* may come from a config file (its key is the long name) */
#define TN_OPT_REQ    2u /* shown as required in the usage line (the command checks it) */
#define TN_OPT_HIDDEN 4u /* parsed, but not shown in the help (for tests and scripts) */

typedef struct tn_opt_kv {
    uint32_t n;
    const char *key[TN_OPT_MAX_LIST], *val[TN_OPT_MAX_LIST];
} tn_opt_kv;

typedef struct tn_opt_list {
    uint32_t n;
    const char *v[TN_OPT_MAX_LIST];
} tn_opt_list;

typedef struct tn_opt {
    const char *name; /* the long name without "--"; also its config-file key */
    char short_name;  /* -X, or 0 */
    tn_opt_kind kind;
    size_t off;        /* offsetof the field in the command's options struct */
    const char *arg;   /* the value's name in the help ("DIR"); NULL for flags */
    const char *help;  /* one line, or several separated by \n */
    unsigned flags;    /* TN_OPT_CFG, TN_OPT_REQ */
    uint64_t min, max; /* integer bounds; for KV and LIST, max is the count limit */
    const char *want;  /* what a bad value should have been: "--NAME wants WANT" */
    bool (*parse)(const char *val, void *field); /* TN_OPT_CUSTOM: false = bad value */
} tn_opt;

typedef struct tn_opt_cmd {
    const char *name;            /* "replay": `tern replay` */
    const char *const *synopsis; /* positional forms, one usage line each; NULL: none */
    const char *about;           /* the paragraph(s) after the usage lines */
    const tn_opt *opts;          /* ended by an entry with a NULL name */
    int max_args;                /* positional arguments allowed (TN_OPT_ANY_ARGS: no limit) */
    /* Keys a config file may hold that this command ignores: the options of its sibling
     * commands, so that one file can serve them all (the master and the worker). */
    const char *const *cfg_ignored;
} tn_opt_cmd;

/* What a parse leaves besides the options struct: the positional arguments in order,
 * and the strings it copied (config values, keys of key=value). */
typedef struct tn_opt_args {
    int n;
    char **v;   /* the positional arguments (pointers into argv) */
    char **own; /* private: copies freed by tn_opt_args_free */
    size_t nown;
    int code;      /* 0, 1 (a file could not be read) or 2 (a usage error) */
    char err[640]; /* what went wrong, naming the option or FILE:LINE */
} tn_opt_args;

/* Parse argv[1..argc) (argv[0] is the command) into obj by the table: first every
 * `--config FILE`, then the flags, which win. Options and positional arguments mix;
 * `--` ends the options; `--name=value`, `--name value`, `-X value`, `-Xvalue` and an
 * unambiguous prefix of a long name all work. Returns a->code; a is always set, and
 * must be freed with tn_opt_args_free, which also frees the values obj points to. */
int tn_opt_parse(const tn_opt_cmd *c, int argc, char **argv, void *obj, tn_opt_args *a);

/* tn_opt_parse, and on an error print "tern CMD: ERR" (a usage error adds
 * "; see `tern CMD --help`") on stderr and free a. Returns the exit status (0, 1, 2). */
int tn_opt_cli(const tn_opt_cmd *c, int argc, char **argv, void *obj, tn_opt_args *a);

void tn_opt_args_free(tn_opt_args *a);

/* `tern CMD --help`: the usage lines, the about text, then every option with its help. */
void tn_opt_help(const tn_opt_cmd *c, FILE *f);

/* The word of `words` nearest to s when it is a near miss ("did you mean"; by
 * tn_edit_distance), or NULL. */
const char *tn_opt_suggest(const char *s, const char *const *words, size_t n);

#endif

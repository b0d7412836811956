/* The table-driven option parser of `tern` (see opt.h): argv, config files and the
 * generated help all read the same per-command table. */
#include "opt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "def.h"
#include "util.h"

static int fail(tn_opt_args *a, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(tn_opt_args *a, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, sizeof(a->err), fmt, ap);
    va_end(ap);
    return a->code = code;
}

/* A copy of n bytes of s that lives until tn_opt_args_free. */
static char *own(tn_opt_args *a, const char *s, size_t n)
{
    char **grown = realloc(a->own, (a->nown + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    a->own = grown;
    char *p = strndup(s, n);
    if (p)
        a->own[a->nown++] = p;
    return p;
}

static const tn_opt *find_long(const tn_opt_cmd *c, const char *name, size_t len,
                               bool *ambiguous)
{
    const tn_opt *hit = NULL;
    *ambiguous = false;
    for (const tn_opt *o = c->opts; o && o->name; o++) {
        if (strncmp(o->name, name, len) != 0)
            continue;
        if (o->name[len] == 0)
            return o; /* an exact name wins over the longer ones it prefixes */
        if (hit)
            *ambiguous = true;
        hit = o;
    }
    return *ambiguous ? NULL : hit;
}


const char *tn_opt_suggest(const char *s, const char *const *words, size_t n)
{
    const char *best = NULL;
    size_t best_d = strlen(s) <= 3 ? 2 : 3; /* near misses only */
    for (size_t i = 0; i < n; i++) {
        size_t d = words[i] ? tn_edit_distance(s, words[i]) : SIZE_MAX;
        if (d < best_d && d < strlen(words[i])) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}

/* The long option nearest to the misspelt `name` (len bytes), or NULL. */
static const char *near_long(const tn_opt_cmd *c, const char *name, size_t len)
{
    const char *words[128];
    size_t n = 0;
    char buf[65];
    snprintf(buf, sizeof(buf), "%.*s", (int)(len < 64 ? len : 64), name);
    for (const tn_opt *o = c->opts; o && o->name && n < 127; o++)
        if (!(o->flags & TN_OPT_HIDDEN))
            words[n++] = o->name;
    words[n++] = "help";
    return tn_opt_suggest(buf, words, n);
}

static const tn_opt *find_short(const tn_opt_cmd *c, char ch)
{
    for (const tn_opt *o = c->opts; o && o->name; o++)
        if (o->short_name && o->short_name == ch)
            return o;
    return NULL;
}

/* A bound in milliseconds as the shortest exact unit ("100ms", "1s", "24h"). */
static void fmt_ms(uint64_t ms, char *buf, size_t len)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (ms && ms % units[i].ms == 0) {
            snprintf(buf, len, "%" PRIu64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    snprintf(buf, len, "%" PRIu64 "ms", ms);
}

static const char *default_want(const tn_opt *o, char *buf, size_t len)
{
    if (o->want)
        return o->want;
    switch (o->kind) {
    case TN_OPT_U64:
    case TN_OPT_U32:
        if (o->max)
            snprintf(buf, len, "a number %" PRIu64 "..%" PRIu64, o->min, o->max);
        else if (o->min)
            snprintf(buf, len, "a number >= %" PRIu64, o->min);
        else
            snprintf(buf, len, "a number");
        return buf;
    case TN_OPT_DURATION:
        if (o->min || o->max) {
            char lo[24], hi[24];
            fmt_ms(o->min, lo, sizeof(lo));
            fmt_ms(o->max, hi, sizeof(hi));
            if (o->max)
                snprintf(buf, len, "a duration %s..%s", lo, hi);
            else
                snprintf(buf, len, "a duration >= %s", lo);
            return buf;
        }
        return "a duration such as 10s";
    case TN_OPT_SIZE:
        if (o->max)
            snprintf(buf, len, "a size %" PRIu64 "..%" PRIu64 " bytes", o->min, o->max);
        else if (o->min)
            snprintf(buf, len, "a size >= %" PRIu64 " bytes", o->min);
        else
            return "a size such as 512M";
        return buf;
    case TN_OPT_TIME: return "an ISO 8601 time such as 2026-11-22T10:00:00Z";
    case TN_OPT_KV: return "key=value";
    case TN_OPT_FLAG: return "true or false";
    default: return o->arg ? o->arg : "a value";
    }
}

/* A flag's value in a config file; an empty value sets it, as the bare flag does. */
static bool parse_flag(const char *v, bool *out)
{
    static const char *const words[] = {"",      "true", "yes", "on", "1",
                                        "false", "no",   "off", "0"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strcmp(v, words[i]) == 0) {
            *out = i < 5;
            return true;
        }
    }
    return false;
}

static bool parse_uint(const tn_opt *o, const char *v, uint64_t *out)
{
    if (!*v || *v == '-')
        return false;
    char *end;
    errno = 0;
    unsigned long long u = strtoull(v, &end, 10);
    uint64_t max = o->max ? o->max : o->kind == TN_OPT_U32 ? UINT32_MAX : UINT64_MAX;
    if (*end || errno || u < o->min || u > max)
        return false;
    *out = u;
    return true;
}

/* Append to a repeated option; false when its count limit is reached. */
static int add_item(const tn_opt *o, const char *who, const char *v, void *field,
                    tn_opt_args *a)
{
    uint32_t max = o->max && o->max < TN_OPT_MAX_LIST ? (uint32_t)o->max : TN_OPT_MAX_LIST;
    if (o->kind == TN_OPT_LIST) {
        tn_opt_list *l = field;
        if (l->n == max)
            return fail(a, 2, "too many %s (at most %u)", who, max);
        l->v[l->n++] = v;
        return 0;
    }
    tn_opt_kv *kv = field;
    const char *eq = strchr(v, '=');
    if (!eq || eq == v)
        return fail(a, 2, "%s wants key=value, not \"%s\"", who, v);
    if (kv->n == max)
        return fail(a, 2, "too many %s (at most %u)", who, max);
    const char *key = own(a, v, (size_t)(eq - v));
    if (!key)
        return fail(a, 1, "out of memory");
    kv->key[kv->n] = key;
    kv->val[kv->n++] = eq + 1;
    return 0;
}

/* Store v into the field of o; who names the option in errors ("--slots" or
 * "FILE:LINE: slots"). v must live as long as obj (argv, or a copy in a). */
static int set_value(const tn_opt *o, const char *who, const char *v, void *obj, tn_opt_args *a)
{
    void *field = (char *)obj + o->off;
    uint64_t u = 0;
    bool ok = true;
    switch (o->kind) {
    case TN_OPT_FLAG: ok = parse_flag(v, field); break;
    case TN_OPT_STR:
    case TN_OPT_CONFIG: *(const char **)field = v; break;
    case TN_OPT_U64: ok = parse_uint(o, v, field); break;
    case TN_OPT_U32:
        if ((ok = parse_uint(o, v, &u)))
            *(uint32_t *)field = (uint32_t)u;
        break;
    case TN_OPT_DURATION:
        /* within [min, max] as for numbers (max 0: no upper bound); a bad one is untouched */
        ok = tn_parse_duration_ms(v, &u) == TN_OK && u >= o->min && (!o->max || u <= o->max);
        if (ok)
            *(uint64_t *)field = u;
        break;
    case TN_OPT_SIZE:
        ok = tn_parse_size(v, &u) == TN_OK && u >= o->min && (!o->max || u <= o->max);
        if (ok)
            *(uint64_t *)field = u;
        break;
    case TN_OPT_TIME: ok = tn_parse_time(v, field) == 0; break;
    case TN_OPT_KV:
    case TN_OPT_LIST: return add_item(o, who, v, field, a);
    case TN_OPT_CUSTOM: ok = o->parse(v, field); break;
    }
    if (ok)
        return 0;
    char buf[96];
    return fail(a, 2, "%s wants %s, not \"%s\"", who, default_want(o, buf, sizeof(buf)), v);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

/* One `key = value` line of a config file (comments already cut). */
static int config_line(const tn_opt_cmd *c, const char *path, int ln, char *line, void *obj,
                       tn_opt_args *a)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return fail(a, 1, "%s:%d: expected `key = value`", path, ln);
    *eq = 0;
    const char *k = trim(line), *v = trim(eq + 1);
    const tn_opt *o = NULL;
    for (const tn_opt *p = c->opts; p && p->name && !o; p++)
        if (strcmp(p->name, k) == 0)
            o = p;
    bool settable = o && (o->flags & TN_OPT_CFG);
    for (const char *const *k2 = c->cfg_ignored; !settable && k2 && *k2; k2++)
        if (strcmp(*k2, k) == 0)
            return 0;
    if (!o)
        return fail(a, 2,
                    "%s:%d: unknown key \"%s\" (keys are the long option names of "
                    "`tern %s`)",
                    path, ln, k, c->name);
    if (!(o->flags & TN_OPT_CFG))
        return fail(a, 2, "%s:%d: %s cannot come from a config file", path, ln, k);
    char who[300];
    snprintf(who, sizeof(who), "%s:%d: %s", path, ln, k);
    const char *val = own(a, v, strlen(v));
    return val ? set_value(o, who, val, obj, a) : fail(a, 1, "out of memory");
}

/* A config file: `key = value` lines, keys named like the long options, `#` comments. */
static int load_config(const tn_opt_cmd *c, const char *path, void *obj, tn_opt_args *a)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return fail(a, 1, "%s: cannot read the config file: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int ln = 0, rc = 0;
    while (!rc && getline(&line, &cap, f) >= 0) {
        ln++;
        line[strcspn(line, "#")] = 0;
        if (*trim(line))
            rc = config_line(c, path, ln, line, obj, a);
    }
    free(line);
    fclose(f);
    return rc;
}

/* Every `--config FILE` (or --config=FILE) before `--`, in order, before the flags. */
static int load_configs(const tn_opt_cmd *c, int argc, char **argv, void *obj, tn_opt_args *a)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--", 2) != 0)
            continue;
        const char *name = argv[i] + 2, *eq = strchr(name, '=');
        bool amb;
        const tn_opt *o = find_long(c, name, eq ? (size_t)(eq - name) : strlen(name), &amb);
        if (!o || o->kind != TN_OPT_CONFIG)
            continue;
        const char *path = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        int rc = path ? load_config(c, path, obj, a) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* `--name`, `--name=value` or `--name value` at argv[*i]. */
static int long_opt(const tn_opt_cmd *c, int argc, char **argv, int *i, void *obj,
                    tn_opt_args *a)
{
    const char *arg = argv[*i], *name = arg + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    bool amb;
    const tn_opt *o = find_long(c, name, len, &amb);
    const char *near = o || amb ? NULL : near_long(c, name, len);
    if (near)
        return fail(a, 2, "unknown option \"%.*s\" (did you mean --%s?)", (int)(len + 2), arg,
                    near);
    if (!o)
        return fail(a, 2, "%s option \"%.*s\"", amb ? "ambiguous" : "unknown", (int)(len + 2),
                    arg);
    char who[80];
    snprintf(who, sizeof(who), "--%s", o->name);
    if (o->kind == TN_OPT_FLAG) {
        if (eq)
            return fail(a, 2, "%s takes no value", who);
        *(bool *)((char *)obj + o->off) = true;
        return 0;
    }
    const char *v = eq ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
    if (!v)
        return fail(a, 2, "%s wants %s", who, o->arg ? o->arg : "a value");
    return set_value(o, who, v, obj, a); /* a config file was read before the flags */
}

/* `-X`, `-XY` (flags), `-X value` or `-Xvalue` at argv[*i]. */
static int short_opts(const tn_opt_cmd *c, int argc, char **argv, int *i, void *obj,
                      tn_opt_args *a)
{
    for (const char *p = argv[*i] + 1; *p; p++) {
        const tn_opt *o = find_short(c, *p);
        if (!o)
            return fail(a, 2, "unknown option \"-%c\"", *p);
        char who[8];
        snprintf(who, sizeof(who), "-%c", *p);
        if (o->kind == TN_OPT_FLAG) {
            *(bool *)((char *)obj + o->off) = true;
            continue;
        }
        const char *v = p[1] ? p + 1 : *i + 1 < argc ? argv[++*i] : NULL;
        if (!v)
            return fail(a, 2, "%s wants %s", who, o->arg ? o->arg : "a value");
        return set_value(o, who, v, obj, a);
    }
    return 0;
}

int tn_opt_parse(const tn_opt_cmd *c, int argc, char **argv, void *obj, tn_opt_args *a)
{
    *a = (tn_opt_args){0};
    a->v = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*a->v));
    if (!a->v)
        return fail(a, 1, "out of memory");
    int rc = load_configs(c, argc, argv, obj, a);
    bool opts_end = false;
    for (int i = 1; i < argc && !rc; i++) {
        char *s = argv[i];
        if (opts_end || s[0] != '-' || s[1] == 0)
            a->v[a->n++] = s; /* "-" alone is an argument (stdin, by convention) */
        else if (strcmp(s, "--") == 0)
            opts_end = true;
        else if (s[1] == '-')
            rc = long_opt(c, argc, argv, &i, obj, a);
        else
            rc = short_opts(c, argc, argv, &i, obj, a);
    }
    if (!rc && c->max_args != TN_OPT_ANY_ARGS && a->n > c->max_args)
        rc = fail(a, 2, "unexpected argument \"%s\"", a->v[c->max_args]);
    return rc;
}

int tn_opt_cli(const tn_opt_cmd *c, int argc, char **argv, void *obj, tn_opt_args *a)
{
    int rc = tn_opt_parse(c, argc, argv, obj, a);
    if (rc) {
        fprintf(stderr, "tern %s: %s", c->name, a->err);
        if (rc == 2)
            fprintf(stderr, "; see `tern %s --help`", c->name);
        fputc('\n', stderr);
        tn_opt_args_free(a);
    }
    return rc;
}

void tn_opt_args_free(tn_opt_args *a)
{
    for (size_t i = 0; i < a->nown; i++)
        free(a->own[i]);
    free(a->own);
    free(a->v);
    a->own = NULL;
    a->v = NULL;
    a->nown = 0;
    a->n = 0;
}

/* ---- help ---------------------------------------------------------------------- */

/* The column where an option's help starts. */
#define HELP_COL 24

static bool repeated(const tn_opt *o)
{
    return o->kind == TN_OPT_KV || o->kind == TN_OPT_LIST;
}

/* "--name ARG" (or "-X, --name ARG") into buf. */
static void opt_label(const tn_opt *o, bool with_short, char *buf, size_t len)
{
    char sh[8] = "";
    if (with_short)
        snprintf(sh, sizeof(sh), o->short_name ? "-%c, " : "    ", o->short_name);
    snprintf(buf, len, "%s--%s%s%s", sh, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
}

/* The usage line with every option, wrapped under its first option. */
static void usage_inline(const tn_opt_cmd *c, const char *syn, FILE *f)
{
    int col = fprintf(f, "usage: tern %s%s%s", c->name, syn ? " " : "", syn ? syn : "");
    int indent = (int)strlen("usage: tern ") + (int)strlen(c->name) + 1;
    for (const tn_opt *o = c->opts; o && o->name; o++) {
        if (o->flags & TN_OPT_HIDDEN)
            continue;
        char label[120], item[140];
        opt_label(o, false, label, sizeof(label));
        bool req = o->flags & TN_OPT_REQ;
        snprintf(item, sizeof(item), "%s%s%s%s", req ? "" : "[", label, req ? "" : "]",
                 repeated(o) ? "..." : "");
        if (col + 1 + (int)strlen(item) > 88) {
            fprintf(f, "\n%*s", indent - 1, "");
            col = indent - 1;
        }
        col += fprintf(f, " %s", item);
    }
    fputc('\n', f);
}

void tn_opt_help(const tn_opt_cmd *c, FILE *f)
{
    const char *const *syn = c->synopsis;
    if (!syn || !syn[0] || !syn[1]) {
        usage_inline(c, syn ? syn[0] : NULL, f);
    } else {
        for (int i = 0; syn[i]; i++)
            fprintf(f, "%s tern %s %s [OPTIONS]\n", i ? "      " : "usage:", c->name, syn[i]);
    }
    if (c->about)
        fprintf(f, "\n%s", c->about);
    if (!c->opts || !c->opts->name)
        return;
    fprintf(f, "\noptions:\n");
    bool shorts = false, cfg = false;
    for (const tn_opt *o = c->opts; o->name; o++)
        shorts |= o->short_name != 0;
    for (const tn_opt *o = c->opts; o->name; o++) {
        if (o->flags & TN_OPT_HIDDEN)
            continue;
        char label[120];
        opt_label(o, shorts, label, sizeof(label));
        int w = fprintf(f, "  %s", label);
        if (w > HELP_COL - 2) { /* a long label gets its help on the next line */
            fputc('\n', f);
            w = 0;
        }
        const char *h = o->help ? o->help : "";
        for (const char *nl; (nl = strchr(h, '\n')); h = nl + 1, w = 0)
            fprintf(f, "%*s%.*s\n", HELP_COL - w, "", (int)(nl - h), h);
        fprintf(f, "%*s%s%s\n", HELP_COL - w, "", h, repeated(o) ? " (repeatable)" : "");
        cfg |= (o->flags & TN_OPT_CFG) != 0;
    }
    if (cfg)
        fprintf(f,
                "\nA --config FILE holds `key = value` lines, keys named like the options "
                "(without --);\nflags given on the command line win.%s\n",
                c->cfg_ignored ? " Keys of the sibling commands are ignored, so one\nfile "
                                 "can serve them all." :
                                 "");
}

/* Workflow definitions: YAML events into a small bounded tree, the tree into a tn_def,
 * validation of the whole definition, and its canonical msgpack encoding. */
#include "def.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "params.h"
#include "util.h"

/* ---- enumerations ------------------------------------------------------------------ */

#define WORD(c, w)    #w,
#define ALLOWED(c, w) ", " #w

static const char *word_of(const char *const *words, size_t n, unsigned v)
{
    return v < n ? words[v] : "?";
}

static int word_find(const char *const *words, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(words[i], s) == 0)
            return (int)i;
    return -1;
}

/* An enum's word table, count and allowed list, for the generic readers below. Enum
 * values are read and written through unsigned (see field below). */
typedef struct enum_desc {
    const char *const *words;
    size_t n;
    const char *(*allowed)(void);
} enum_desc;

#define DEF_ENUM(e, LIST)                                                        \
    static const char *const e##_words[] = {LIST(WORD)};                         \
    const char *tn_def_##e##_name(tn_def_##e v)                                  \
    {                                                                            \
        return word_of(e##_words, TN_ARRAY_LEN(e##_words), (unsigned)v);         \
    }                                                                            \
    tn_err tn_def_##e##_parse(const char *word, tn_def_##e *out)                 \
    {                                                                            \
        int i = word ? word_find(e##_words, TN_ARRAY_LEN(e##_words), word) : -1; \
        if (i < 0)                                                               \
            return TN_ERR_INVAL;                                                 \
        *out = (tn_def_##e)i;                                                    \
        return TN_OK;                                                            \
    }                                                                            \
    const char *tn_def_##e##_allowed(void)                                       \
    {                                                                            \
        return &(LIST(ALLOWED))[2];                                              \
    }                                                                            \
    static const enum_desc e##_desc = {e##_words, TN_ARRAY_LEN(e##_words),       \
                                       tn_def_##e##_allowed};                    \
    _Static_assert(sizeof(tn_def_##e) == sizeof(unsigned), "an enum is an unsigned");

DEF_ENUM(task_type, TN_DEF_TASK_TYPE_LIST)
DEF_ENUM(exec, TN_DEF_EXEC_LIST)
DEF_ENUM(priority, TN_DEF_PRIORITY_LIST)
DEF_ENUM(timeout_strategy, TN_DEF_TIMEOUT_STRATEGY_LIST)
DEF_ENUM(failure_strategy, TN_DEF_FAILURE_STRATEGY_LIST)
DEF_ENUM(noop_result, TN_DEF_NOOP_RESULT_LIST)
DEF_ENUM(cond_mode, TN_DEF_COND_MODE_LIST)
DEF_ENUM(cond_state, TN_DEF_COND_STATE_LIST)
DEF_ENUM(relation, TN_DEF_RELATION_LIST)
DEF_ENUM(cycle, TN_DEF_CYCLE_LIST)
DEF_ENUM(failure_policy, TN_DEF_FAILURE_POLICY_LIST)

static const char *const wf_key_words[] = {TN_DEF_WF_KEY_LIST(WORD)};
static const char *const task_key_words[] = {TN_DEF_TASK_KEY_LIST(WORD)};

/* ---- scalar syntax ------------------------------------------------------------------ */

/* The length of the UTF-8 sequence at p (1..4) when it is well formed (shortest form,
 * no surrogates, at most U+10FFFF) and not a control character (C0, DEL, C1); 0 otherwise. */
static size_t utf8_char_ok(const unsigned char *p)
{
    unsigned c = p[0];
    if (c < 0x20 || c == 0x7f)
        return 0;
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4)
        return 0;
    uint32_t cp = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
        (cp >= 0x80 && cp <= 0x9f))
        return 0;
    return n;
}

/* Names travel in store keys, log lines and terminals: any text a user would type (Chinese
 * included), but no control character that could rewrite a terminal line and no '/' (a
 * path and key separator). */
bool tn_def_name_valid(const char *s)
{
    if (!s || !*s)
        return false;
    size_t n = 0;
    while (s[n]) {
        size_t k = s[n] == '/' ? 0 : utf8_char_ok((const unsigned char *)s + n);
        if (k == 0 || n + k > TN_DEF_MAX_NAME)
            return false;
        n += k;
    }
    return true;
}

/* Param keys stay identifiers: they appear inside ${...} and $[...] expressions. */
static bool param_key_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
        if (!ok || n >= TN_DEF_PARAM_KEY_MAX)
            return false;
    }
    return n > 0;
}

/* Leading decimal digits of s into *v; the count of digits, or -1 on overflow. */
static int digits(const char *s, uint64_t *v)
{
    int n = 0;
    *v = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        unsigned d = (unsigned)(s[n] - '0');
        if (*v > (UINT64_MAX - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return n;
}

typedef struct unit {
    const char *name;
    uint64_t mul;
} unit;

/* Digits and one of `units` (or, when `bare` is set, no unit: a multiplier of 1) into
 * *out, at most `max`. */
static tn_err with_unit(const char *s, const unit *units, size_t n_units, bool bare,
                        uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (!s)
        return TN_ERR_INVAL;
    int n = digits(s, &v);
    if (n <= 0)
        return TN_ERR_INVAL;
    uint64_t mul = bare && !s[n] ? 1 : 0;
    for (size_t i = 0; i < n_units && !mul; i++)
        if (strcmp(s + n, units[i].name) == 0)
            mul = units[i].mul;
    if (!mul || v > max / mul)
        return TN_ERR_INVAL;
    *out = v * mul;
    return TN_OK;
}

static const unit duration_units[] = {
    {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

/* One or more "digits unit" parts, units in decreasing order and each at most once
 * (1h30m, 2d4h, 1m30s500ms), or "0". TN_ERR_TOOBIG when well formed but over the limit. */
static tn_err duration_ms(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return TN_ERR_INVAL;
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return TN_OK;
    }
    uint64_t total = 0;
    size_t next = 0; /* the first unit still allowed */
    bool over = false;
    while (*s) {
        uint64_t v;
        int n = digits(s, &v);
        if (n <= 0)
            return TN_ERR_INVAL;
        s += n;
        size_t u = next;
        for (; u < TN_ARRAY_LEN(duration_units); u++) {
            size_t l = strlen(duration_units[u].name);
            /* "m" must not take the "m" of "ms" */
            if (strncmp(s, duration_units[u].name, l) == 0 &&
                !(l == 1 && s[0] == 'm' && s[1] == 's'))
                break;
        }
        if (u == TN_ARRAY_LEN(duration_units))
            return TN_ERR_INVAL;
        s += strlen(duration_units[u].name);
        next = u + 1;
        if (n < 0 || v > TN_DEF_MAX_DURATION_MS / duration_units[u].mul)
            over = true;
        else
            total += v * duration_units[u].mul;
        if (total > TN_DEF_MAX_DURATION_MS)
            over = true;
    }
    if (over)
        return TN_ERR_TOOBIG;
    *out = total;
    return TN_OK;
}

tn_err tn_parse_duration_ms(const char *s, uint64_t *out)
{
    uint64_t v;
    if (duration_ms(s, &v) != TN_OK)
        return TN_ERR_INVAL;
    *out = v;
    return TN_OK;
}

size_t tn_format_duration(uint64_t ms, char *buf, size_t len)
{
    size_t o = 0;
    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (ms == 0)
        return (size_t)snprintf(buf, len, "0");
    for (size_t u = 0; u < TN_ARRAY_LEN(duration_units) && ms; u++) {
        uint64_t q = ms / duration_units[u].mul;
        if (q == 0)
            continue;
        ms -= q * duration_units[u].mul;
        int n = snprintf(buf + o, o < len ? len - o : 0, "%" PRIu64 "%s", q,
                         duration_units[u].name);
        o += n > 0 ? (size_t)n : 0;
    }
    return o;
}

tn_err tn_parse_size(const char *s, uint64_t *out)
{
    static const unit units[] = {{"K", 1ull << 10}, {"k", 1ull << 10}, {"M", 1ull << 20},
                                 {"m", 1ull << 20}, {"G", 1ull << 30}, {"g", 1ull << 30},
                                 {"T", 1ull << 40}, {"t", 1ull << 40}};
    return with_unit(s, units, TN_ARRAY_LEN(units), true, UINT64_MAX, out);
}

tn_err tn_parse_cpu_milli(const char *s, uint64_t *out)
{
    uint64_t whole, frac = 0;
    if (!s)
        return TN_ERR_INVAL;
    int n = digits(s, &whole);
    if (n <= 0 || whole > TN_DEF_MAX_CPU_MILLI / 1000)
        return TN_ERR_INVAL;
    const char *p = s + n;
    if (*p == '.') {
        int f = 0;
        for (p++; *p >= '0' && *p <= '9' && f < 3; p++, f++)
            frac = frac * 10 + (uint64_t)(*p - '0');
        if (f == 0)
            return TN_ERR_INVAL;
        for (; f < 3; f++)
            frac *= 10;
    }
    if (*p)
        return TN_ERR_INVAL;
    uint64_t v = whole * 1000 + frac;
    if (v > TN_DEF_MAX_CPU_MILLI)
        return TN_ERR_INVAL;
    *out = v;
    return TN_OK;
}

/* "lastN" with N in 1..366 and no leading zero. */
static bool date_last_n(const char *s)
{
    uint64_t v;
    if (strncmp(s, "last", 4) != 0 || s[4] == '0')
        return false;
    int n = digits(s + 4, &v);
    return n > 0 && n <= 3 && s[4 + n] == '\0' && v >= 1 && v <= 366;
}

static bool word_in(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

bool tn_def_date_valid(tn_def_cycle cycle, const char *date)
{
    static const char *const week[] = {
        "this_week",     "last_week",   "last_monday",   "last_tuesday", "last_wednesday",
        "last_thursday", "last_friday", "last_saturday", "last_sunday",  NULL};
    static const char *const month[] = {"this_month", "last_month", "last_month_begin",
                                        "last_month_end", NULL};
    if (!date)
        return false;
    switch (cycle) {
    case TN_DEF_CYCLE_HOUR: return strcmp(date, "this_hour") == 0 || date_last_n(date);
    case TN_DEF_CYCLE_DAY: return strcmp(date, "today") == 0 || date_last_n(date);
    case TN_DEF_CYCLE_WEEK: return word_in(date, week);
    case TN_DEF_CYCLE_MONTH: return word_in(date, month);
    }
    return false;
}

static const char *date_allowed(tn_def_cycle cycle)
{
    switch (cycle) {
    case TN_DEF_CYCLE_HOUR: return "this_hour, lastN (N hours, 1..366)";
    case TN_DEF_CYCLE_DAY: return "today, lastN (N days, 1..366)";
    case TN_DEF_CYCLE_WEEK: return "this_week, last_week, last_monday .. last_sunday";
    case TN_DEF_CYCLE_MONTH: return "this_month, last_month, last_month_begin, last_month_end";
    }
    return "?";
}

/* ---- messages ----------------------------------------------------------------------- */

/* Where a message points: a file (messages read "FILE:LINE: ...") or, with no file, a
 * stored definition being decoded (no lines to cite). */
typedef struct ectx {
    const char *file;
    tn_errmsg *msg;
} ectx;

__attribute__((format(printf, 4, 5))) static tn_err fail_at(const ectx *c, tn_err err,
                                                            uint32_t line, const char *fmt, ...)
{
    char text[sizeof(((tn_errmsg *)0)->text)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (c->file)
        return tn_errmsg_set(c->msg, err, "%s:%u: %s", c->file, line, text);
    return tn_errmsg_set(c->msg, err, "stored definition: %s", text);
}


static const char *closest_word(const char *s, const char *const *words, size_t n)
{
    const char *best = NULL;
    size_t best_d = 3; /* suggest only near misses */
    for (size_t i = 0; i < n; i++) {
        size_t d = tn_edit_distance(s, words[i]);
        if (d < best_d && d < strlen(words[i])) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}

/* ---- the YAML tree ------------------------------------------------------------------ */

/* libyaml's document loader would follow aliases (a few lines can expand to gigabytes
 * when walked) and has no depth limit, so the tree is built here from events: bounded
 * depth, no aliases, and all nodes and strings in two flat arrays. */

#define NONE UINT32_MAX

enum {
    N_SCALAR,
    N_SEQ,
    N_MAP
};

typedef struct node {
    uint8_t kind;
    bool null;      /* a plain "", "~" or "null": the same as a key not written */
    uint32_t line;  /* 1-based */
    uint32_t len;   /* scalar: bytes; sequence or mapping: children (a mapping's are
                     * key, value, key, value, ...) */
    uint32_t str;   /* scalar: offset into tree.chars, NUL-terminated */
    uint32_t first; /* first child */
    uint32_t next;  /* next sibling */
} node;

typedef struct tree {
    node *nodes;
    uint32_t n, cap;
    char *chars;
    size_t nchars, ccap;
} tree;

typedef struct pctx {
    ectx e;
    tree t;
} pctx;

static void tree_fini(tree *t)
{
    free(t->nodes);
    free(t->chars);
}

static const node *NODE(const pctx *c, uint32_t i)
{
    return &c->t.nodes[i];
}

static const char *SVAL(const pctx *c, uint32_t i)
{
    return c->t.chars + c->t.nodes[i].str;
}

static uint32_t line_of_offset(const char *buf, size_t len, size_t off)
{
    uint32_t line = 1;
    for (size_t i = 0; i < off && i < len; i++)
        line += buf[i] == '\n';
    return line;
}

static tn_err yaml_fail(pctx *c, const yaml_parser_t *p, const char *buf, size_t len)
{
    if (p->error == YAML_MEMORY_ERROR)
        return fail_at(&c->e, TN_ERR_NOMEM, 1, "out of memory while reading YAML");
    uint32_t line = p->error == YAML_READER_ERROR ?
                        line_of_offset(buf, len, p->problem_offset) :
                        (uint32_t)p->problem_mark.line + 1;
    const char *problem = p->problem ? p->problem : "unreadable input";
    if (p->context)
        return fail_at(&c->e, TN_ERR_PARSE, line, "YAML syntax error: %s (%s at line %zu)",
                       problem, p->context, p->context_mark.line + 1);
    return fail_at(&c->e, TN_ERR_PARSE, line, "YAML syntax error: %s", problem);
}

static tn_err tree_add(pctx *c, uint8_t kind, uint32_t line, uint32_t *idx)
{
    tree *t = &c->t;
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 256;
        node *nodes = realloc(t->nodes, (size_t)cap * sizeof(*nodes));
        if (!nodes)
            return TN_ERR_NOMEM;
        t->nodes = nodes;
        t->cap = cap;
    }
    *idx = t->n++;
    t->nodes[*idx] = (node){.kind = kind, .line = line, .first = NONE, .next = NONE};
    return TN_OK;
}

static tn_err tree_scalar(pctx *c, const yaml_event_t *ev, uint32_t idx)
{
    tree *t = &c->t;
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    node *nd = &t->nodes[idx];
    if (n > TN_DEF_MAX_COMMAND)
        return fail_at(&c->e, TN_ERR_TOOBIG, nd->line,
                       "a string of %zu bytes is longer than any key allows (1 MiB)", n);
    if (memchr(v, '\0', n))
        return fail_at(&c->e, TN_ERR_PARSE, nd->line, "a string contains a NUL character");
    if (t->nchars + n + 1 > t->ccap) {
        size_t cap = t->ccap ? t->ccap : 4096;
        while (cap < t->nchars + n + 1)
            cap *= 2;
        char *chars = realloc(t->chars, cap);
        if (!chars)
            return TN_ERR_NOMEM;
        t->chars = chars;
        t->ccap = cap;
    }
    memcpy(t->chars + t->nchars, v, n);
    t->chars[t->nchars + n] = '\0';
    nd->str = (uint32_t)t->nchars;
    nd->len = (uint32_t)n;
    t->nchars += n + 1;
    nd->null = ev->data.scalar.plain_implicit &&
               ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
               (n == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
                strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
    return TN_OK;
}

/* Build the tree of the one document in buf; *root is NONE for an empty stream. */
static tn_err tree_build(pctx *c, const char *buf, size_t len, uint32_t *root)
{
    yaml_parser_t p;
    yaml_event_t ev;
    uint32_t open[TN_DEF_MAX_DEPTH], last[TN_DEF_MAX_DEPTH];
    unsigned depth = 0, docs = 0;
    bool done = false, have_ev = false;
    tn_err err = TN_OK;

    *root = NONE;
    if (!yaml_parser_initialize(&p))
        return tn_errmsg_set(c->e.msg, TN_ERR_NOMEM, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            err = yaml_fail(c, &p, buf, len);
            goto fail;
        }
        have_ev = true;
        uint32_t line = (uint32_t)ev.start_mark.line + 1, idx = NONE;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            if (docs++ > 0) {
                err = fail_at(&c->e, TN_ERR_PARSE, line,
                              "a second YAML document: a file holds one workflow");
                goto fail;
            }
            break;
        case YAML_ALIAS_EVENT:
            err = fail_at(&c->e, TN_ERR_PARSE, line,
                          "YAML aliases (*%.64s) are not supported: write the value out",
                          (const char *)ev.data.alias.anchor);
            goto fail;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            uint8_t kind = ev.type == YAML_SCALAR_EVENT         ? N_SCALAR :
                           ev.type == YAML_SEQUENCE_START_EVENT ? N_SEQ :
                                                                  N_MAP;
            if (kind != N_SCALAR && depth == TN_DEF_MAX_DEPTH) {
                err = fail_at(&c->e, TN_ERR_TOOBIG, line, "YAML nested deeper than %u levels",
                              TN_DEF_MAX_DEPTH);
                goto fail;
            }
            if ((err = tree_add(c, kind, line, &idx)) != TN_OK)
                goto fail;
            if (kind == N_SCALAR && (err = tree_scalar(c, &ev, idx)) != TN_OK)
                goto fail;
            if (depth == 0) {
                *root = idx;
            } else {
                node *parent = &c->t.nodes[open[depth - 1]];
                if (last[depth - 1] == NONE)
                    parent->first = idx;
                else
                    c->t.nodes[last[depth - 1]].next = idx;
                last[depth - 1] = idx;
                parent->len++;
            }
            if (kind != N_SCALAR) {
                open[depth] = idx;
                last[depth] = NONE;
                depth++;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: depth--; break;
        default: break;
        }
        yaml_event_delete(&ev);
        have_ev = false;
    }
    yaml_parser_delete(&p);
    return TN_OK;
fail:
    if (have_ev)
        yaml_event_delete(&ev);
    yaml_parser_delete(&p);
    if (err == TN_ERR_NOMEM)
        tn_errmsg_set(c->e.msg, err, "%s: out of memory", c->e.file);
    return err;
}

/* ---- tree to struct: values ----------------------------------------------------------- */

static const char *kind_word(const node *n)
{
    switch (n->kind) {
    case N_SCALAR: return "a string";
    case N_SEQ: return "a list";
    default: return "a mapping";
    }
}

static bool is_null(const pctx *c, uint32_t v)
{
    return NODE(c, v)->kind == N_SCALAR && NODE(c, v)->null;
}

static tn_err want(const pctx *c, uint32_t v, uint8_t kind, const char *key, const char *where)
{
    static const char *const what[] = {"a string", "a list", "a mapping"};
    if (NODE(c, v)->kind == kind)
        return TN_OK;
    return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line, "\"%s\" in %s must be %s, not %s",
                   key, where, what[kind], kind_word(NODE(c, v)));
}

/* Whether v holds a string to read: false with TN_OK for a null value (the default
 * stays), false with the error for anything but a string. */
static bool has_scalar(const pctx *c, uint32_t v, const char *key, const char *where,
                       tn_err *err)
{
    *err = TN_OK;
    if (is_null(c, v))
        return false;
    *err = want(c, v, N_SCALAR, key, where);
    return *err == TN_OK;
}

/* A string value of at most `max` bytes into *out (replacing what was there). A null
 * value leaves *out alone: it is the default. */
static tn_err get_str(const pctx *c, uint32_t v, const char *key, const char *where, size_t max,
                      char **out)
{
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    if (NODE(c, v)->len > max)
        return fail_at(&c->e, TN_ERR_TOOBIG, NODE(c, v)->line,
                       "\"%s\" in %s is %u bytes; the limit is %zu", key, where,
                       NODE(c, v)->len, max);
    char *s = strdup(SVAL(c, v));
    if (!s)
        return TN_ERR_NOMEM;
    free(*out);
    *out = s;
    return TN_OK;
}

static tn_err check_name(const pctx *c, uint32_t line, const char *s, const char *label)
{
    if (strcmp(label, "param name") == 0) {
        if (param_key_valid(s))
            return TN_OK;
        return fail_at(&c->e, TN_ERR_PARSE, line,
                       "bad %s \"%.80s\": use 1..64 characters of A-Z a-z 0-9 _ . -", label, s);
    }
    if (tn_def_name_valid(s))
        return TN_OK;
    return fail_at(&c->e, TN_ERR_PARSE, line,
                   "bad %s \"%.80s\": a name is 1..255 bytes of UTF-8 text without "
                   "control characters or '/'",
                   label, s);
}

static tn_err get_name(const pctx *c, uint32_t v, const char *key, const char *where,
                       const char *label, char **out)
{
    char *s = NULL;
    tn_err err = get_str(c, v, key, where, TN_DEF_MAX_STRING, &s);
    if (err || !s)
        return err;
    if ((err = check_name(c, NODE(c, v)->line, s, label)) != TN_OK) {
        free(s);
        return err;
    }
    free(*out);
    *out = s;
    return TN_OK;
}

static tn_err get_enum(const pctx *c, uint32_t v, const char *key, const char *where,
                       const enum_desc *ed, unsigned *out)
{
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    int i = word_find(ed->words, ed->n, SVAL(c, v));
    if (i < 0)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "bad value \"%.64s\" for \"%s\" in %s (allowed: %s)", SVAL(c, v), key,
                       where, ed->allowed());
    *out = (unsigned)i;
    return TN_OK;
}

static tn_err get_bool(const pctx *c, uint32_t v, const char *key, const char *where, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", NULL};
    static const char *const no[] = {"false", "False", "FALSE", NULL};
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    if (word_in(SVAL(c, v), yes))
        *out = true;
    else if (word_in(SVAL(c, v), no))
        *out = false;
    else
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "bad value \"%.64s\" for \"%s\" in %s (allowed: true, false)",
                       SVAL(c, v), key, where);
    return TN_OK;
}

static tn_err get_count(const pctx *c, uint32_t v, const char *key, const char *where,
                        uint32_t max, uint32_t *out)
{
    uint64_t n;
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    const char *s = SVAL(c, v);
    int nd = digits(s, &n);
    if (nd <= 0 || s[nd] || n > max)
        return fail_at(
            &c->e, TN_ERR_PARSE, NODE(c, v)->line,
            "bad value \"%.64s\" for \"%s\" in %s: write a whole number from 0 to %u", s, key,
            where, max);
    *out = (uint32_t)n;
    return TN_OK;
}

static tn_err get_duration(const pctx *c, uint32_t v, const char *key, const char *where,
                           uint64_t *out)
{
    uint64_t n;
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    const char *s = SVAL(c, v);
    tn_err e = duration_ms(s, out);
    if (e == TN_OK)
        return TN_OK;
    int nd = digits(s, &n);
    if (nd > 0 && !s[nd])
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "bad duration \"%.64s\" for \"%s\" in %s: a number needs a unit "
                       "(250ms, 10s, 5m, 2h, 1d); only 0 stands alone",
                       s, key, where);
    if (e == TN_ERR_TOOBIG)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "bad duration \"%.64s\" for \"%s\" in %s: the limit is 3650d", s, key,
                       where);
    return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                   "bad duration \"%.64s\" for \"%s\" in %s: write a whole number and a unit "
                   "(250ms, 10s, 5m, 2h, 1d), units from largest to smallest (1h30m, 2d4h, "
                   "1m30s500ms), or 0; the limit is 3650d",
                   s, key, where);
}

/* A value `conv` turns into a number (tn_parse_size, tn_parse_cpu_milli); `noun` and
 * `hint` make its message. */
static tn_err get_converted(const pctx *c, uint32_t v, const char *key, const char *where,
                            tn_err (*conv)(const char *, uint64_t *), const char *noun,
                            const char *hint, uint64_t *out)
{
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    if (conv(SVAL(c, v), out) == TN_OK)
        return TN_OK;
    return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                   "bad %s \"%.64s\" for \"%s\" in %s: %s", noun, SVAL(c, v), key, where, hint);
}

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const tn_def_kv *)a)->key, ((const tn_def_kv *)b)->key);
}

/* A mapping of names to strings (params, outputs). Sorted by key afterwards: see
 * tn_def_kv. */
static tn_err get_kvs(const pctx *c, uint32_t v, const char *key, const char *where,
                      tn_def_kvs *out)
{
    char here[160];
    uint32_t i = 0;
    if (is_null(c, v))
        return TN_OK;
    tn_err err = want(c, v, N_MAP, key, where);
    if (err)
        return err;
    uint32_t n = NODE(c, v)->len / 2;
    if (n > TN_DEF_MAX_PARAMS)
        return fail_at(&c->e, TN_ERR_TOOBIG, NODE(c, v)->line,
                       "\"%s\" in %s has %u entries; the limit is %u", key, where, n,
                       TN_DEF_MAX_PARAMS);
    if (n == 0)
        return TN_OK;
    snprintf(here, sizeof(here), "\"%s\" of %s", key, where);
    out->items = calloc(n, sizeof(*out->items));
    if (!out->items)
        return TN_ERR_NOMEM;
    out->n = n;
    for (uint32_t k = NODE(c, v)->first; k != NONE; k = NODE(c, NODE(c, k)->next)->next, i++) {
        uint32_t val = NODE(c, k)->next;
        if (NODE(c, k)->kind != N_SCALAR)
            return fail_at(&c->e, TN_ERR_PARSE, NODE(c, k)->line,
                           "keys in %s must be strings, not %s", here, kind_word(NODE(c, k)));
        const char *name = SVAL(c, k);
        if ((err = check_name(c, NODE(c, k)->line, name, "param name")) != TN_OK)
            return err;
        /* At most TN_DEF_MAX_PARAMS entries, so the quadratic scan stays small. */
        uint32_t j = NODE(c, v)->first;
        for (uint32_t m = 0; m < i; m++, j = NODE(c, NODE(c, j)->next)->next)
            if (strcmp(out->items[m].key, name) == 0)
                return fail_at(&c->e, TN_ERR_PARSE, NODE(c, k)->line,
                               "duplicate key \"%s\" in %s (first at line %u)", name, here,
                               NODE(c, j)->line);
        if ((out->items[i].key = strdup(name)) == NULL)
            return TN_ERR_NOMEM;
        if (NODE(c, val)->kind != N_SCALAR)
            return fail_at(&c->e, TN_ERR_PARSE, NODE(c, val)->line,
                           "\"%s\" in %s must be a string, not %s", name, here,
                           kind_word(NODE(c, val)));
        if ((err = get_str(c, val, name, here, TN_DEF_MAX_STRING, &out->items[i].value)))
            return err;
        if (!out->items[i].value && (out->items[i].value = strdup("")) == NULL)
            return TN_ERR_NOMEM;
    }
    qsort(out->items, n, sizeof(*out->items), kv_cmp);
    return TN_OK;
}

static tn_err get_ref(const pctx *c, uint32_t v, const char *key, const char *where,
                      tn_def_ref *out)
{
    tn_err err = get_name(c, v, key, where, "task name", &out->name);
    out->line = NODE(c, v)->line;
    return err;
}

static tn_err get_items(const pctx *c, uint32_t v, const char *key, const char *where,
                        size_t size, void **items, uint32_t *n_out);

/* A list of task names (deps, on_success, on_failure). */
static tn_err get_refs(const pctx *c, uint32_t v, const char *key, const char *where,
                       tn_def_ref **out, uint32_t *n_out)
{
    uint32_t i = 0;
    if (is_null(c, v))
        return TN_OK;
    tn_err err = get_items(c, v, key, where, sizeof(**out), (void **)out, n_out);
    if (err || *n_out == 0)
        return err;
    for (uint32_t k = NODE(c, v)->first; k != NONE; k = NODE(c, k)->next, i++) {
        if (NODE(c, k)->kind != N_SCALAR || NODE(c, k)->null)
            return fail_at(&c->e, TN_ERR_PARSE, NODE(c, k)->line,
                           "items of \"%s\" in %s must be task names, not %s", key, where,
                           NODE(c, k)->null ? "empty" : kind_word(NODE(c, k)));
        if ((err = get_ref(c, k, key, where, &(*out)[i])) != TN_OK)
            return err;
    }
    return TN_OK;
}

/* Keys that belong one level up or down, for a hint when one is misplaced (most often
 * by its indentation). */
typedef struct other_keys {
    const char *const *words;
    size_t n;
    const char *what; /* "a task key" */
} other_keys;

/* The keys of a mapping, checked against `words`: unknown and duplicate keys are errors.
 * vals[k] is the value node of key k or NONE; lines[k] its line or 0. */
static tn_err collect_keys(const pctx *c, uint32_t map, const char *const *words, size_t n,
                           const other_keys *other, const char *where, uint32_t *vals,
                           uint32_t *lines)
{
    for (size_t k = 0; k < n; k++) {
        vals[k] = NONE;
        lines[k] = 0;
    }
    for (uint32_t k = NODE(c, map)->first; k != NONE; k = NODE(c, NODE(c, k)->next)->next) {
        const node *kn = NODE(c, k);
        if (kn->kind != N_SCALAR)
            return fail_at(&c->e, TN_ERR_PARSE, kn->line, "keys in %s must be strings, not %s",
                           where, kind_word(kn));
        int i = word_find(words, n, SVAL(c, k));
        if (i < 0 && other && word_find(other->words, other->n, SVAL(c, k)) >= 0)
            return fail_at(&c->e, TN_ERR_PARSE, kn->line,
                           "unknown key \"%s\" in %s: \"%s\" is %s; is it indented right?",
                           SVAL(c, k), where, SVAL(c, k), other->what);
        if (i < 0) {
            const char *near = closest_word(SVAL(c, k), words, n);
            return fail_at(&c->e, TN_ERR_PARSE, kn->line, "unknown key \"%.64s\" in %s%s%s%s",
                           SVAL(c, k), where, near ? " (did you mean \"" : "", near ? near : "",
                           near ? "\"?)" : "");
        }
        if (vals[i] != NONE)
            return fail_at(&c->e, TN_ERR_PARSE, kn->line,
                           "duplicate key \"%s\" in %s (first at line %u)", words[i], where,
                           lines[i]);
        vals[i] = kn->next;
        lines[i] = kn->line;
    }
    return TN_OK;
}

/* The string value of key `name` in a mapping if it is a scalar, for naming the thing
 * in messages before its keys are checked; NULL otherwise. */
static const char *peek_key(const pctx *c, uint32_t map, const char *name)
{
    for (uint32_t k = NODE(c, map)->first; k != NONE; k = NODE(c, NODE(c, k)->next)->next) {
        uint32_t v = NODE(c, k)->next;
        if (NODE(c, k)->kind == N_SCALAR && strcmp(SVAL(c, k), name) == 0 &&
            NODE(c, v)->kind == N_SCALAR && !NODE(c, v)->null)
            return SVAL(c, v);
    }
    return NULL;
}

/* ---- tree to struct: tasks ------------------------------------------------------------ */

static tn_err task_defaults(tn_def_task *t)
{
    t->enabled = true;
    t->priority = TN_DEF_PRIO_MEDIUM;
    t->timeout_strategy = TN_DEF_TIMEOUT_WARN;
    t->kill_grace_ms = TN_DEF_DEFAULT_KILL_GRACE_MS;
    t->noop.result = TN_DEF_NOOP_SUCCESS;
    t->cond.mode = TN_DEF_COND_ALL;
    t->dep.relation = TN_DEF_REL_AND;
    t->dep.check_interval_ms = TN_DEF_DEFAULT_CHECK_INTERVAL_MS;
    t->dep.failure_policy = TN_DEF_FPOLICY_FAIL;
    t->worker_group = strdup(TN_DEF_DEFAULT_WORKER_GROUP);
    return t->worker_group ? TN_OK : TN_ERR_NOMEM;
}

/* Items of a list of mappings (when, cases, depends): checks the list and its size and
 * allocates `size`-byte items. */
static tn_err get_items(const pctx *c, uint32_t v, const char *key, const char *where,
                        size_t size, void **items, uint32_t *n_out)
{
    tn_err err = want(c, v, N_SEQ, key, where);
    if (err)
        return err;
    uint32_t n = NODE(c, v)->len;
    if (n > TN_DEF_MAX_LIST)
        return fail_at(&c->e, TN_ERR_TOOBIG, NODE(c, v)->line,
                       "\"%s\" in %s has %u items; the limit is %u", key, where, n,
                       TN_DEF_MAX_LIST);
    if (n == 0)
        return TN_OK;
    if ((*items = calloc(n, size)) == NULL)
        return TN_ERR_NOMEM;
    *n_out = n;
    return TN_OK;
}

/* One item of such a list: a mapping with keys from `words`, the `required` ones set. */
static tn_err get_item(const pctx *c, uint32_t v, const char *key, uint32_t no,
                       const char *where, const char *const *words, size_t n, uint32_t required,
                       uint32_t *vals, char *here, size_t here_len)
{
    uint32_t lines[8];
    snprintf(here, here_len, "\"%s\" item #%u of %s", key, no, where);
    if (NODE(c, v)->kind != N_MAP)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line, "%s must be a mapping, not %s",
                       here, kind_word(NODE(c, v)));
    tn_err err = collect_keys(c, v, words, n, NULL, here, vals, lines);
    if (err)
        return err;
    for (size_t k = 0; k < n; k++)
        if ((required >> k & 1) && (vals[k] == NONE || is_null(c, vals[k])))
            return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line, "%s has no \"%s\"", here,
                           words[k]);
    return TN_OK;
}

/* ---- tree to struct: keys ------------------------------------------------------------ */

/* How a key's value is kept, which decides how the YAML reader, the encoder, the decoder
 * and validation treat it. One table lists a workflow's keys, one a task's, and one the
 * keys of an item of each list of mappings, so these cannot drift apart. */
typedef enum vkind {
    V_STR,      /* char *, at most `max` bytes */
    V_NAME,     /* char *, the name rule; `label` names it in messages */
    V_REF,      /* tn_def_ref, a task of the same workflow */
    V_ENUM,     /* an enum of `ed` */
    V_BOOL,     /* bool */
    V_COUNT,    /* uint32_t, 0..max */
    V_DURATION, /* uint64_t ms */
    V_SIZE,     /* uint64_t bytes */
    V_CPU,      /* uint64_t thousandths of a core */
    V_KVS,      /* tn_def_kvs */
    V_REFS,     /* tn_def_ref *, its count at n_off */
    V_ITEMS,    /* a list of mappings, see item_spec */
    V_TASKS,    /* the workflow's tasks */
    V_SCHED,    /* tn_sched_spec *, the workflow's schedule block; NULL when not written */
} vkind;

typedef struct item_spec item_spec;

/* The YAML reader of a key whose kind's reader does not fit. */
typedef tn_err (*parse_fn)(const pctx *c, uint32_t v, const char *key, const char *where,
                           void *base);

typedef struct field {
    uint8_t kind;        /* vkind */
    uint8_t types;       /* task keys: a bit per task type that takes the key */
    bool required;       /* must be written; read before the other keys */
    bool nil_ok;         /* encoded as nil when NULL */
    size_t off, n_off;   /* of the value (and of a V_REFS count) in its struct */
    uint32_t max;        /* V_STR: bytes; V_COUNT: the largest value */
    const char *label;   /* V_NAME: what the name is, for messages */
    const char *what;    /* decoding messages, where not the key itself */
    const enum_desc *ed; /* V_ENUM */
    const item_spec *items;
    parse_fn parse; /* the YAML reader, where not the kind's */
} field;

/* A list of mappings (when, cases, depends): its items' keys and where it is kept. */
struct item_spec {
    const char *const *words; /* the keys of one item */
    const field *fields;      /* [n], a field per key, offsets within an item */
    uint32_t n;
    uint32_t required;      /* bit k: words[k] must be written */
    size_t size;            /* of one item */
    size_t list_off, n_off; /* of the array and its count in tn_def_task */
    const char *tuple;      /* decoding messages: one item */
    const field *head;      /* encoded before the list (the mode of "when"), or NULL */
    tn_err (*init)(void *item, uint32_t line); /* defaults before an item is read */
};

static tn_err parse_items(const pctx *c, uint32_t v, const char *list_key,
                          const char *list_where, const char *key, const char *where,
                          const item_spec *s, void *base);
static tn_err parse_tasks(const pctx *c, uint32_t v, const char *key, const char *where,
                          void *base);
static tn_err parse_schedule(const pctx *c, uint32_t v, const char *key, const char *where,
                             void *base);

/* One value into `base` + f->off (replacing what was there; a null value leaves the
 * default). `key` and `where` name it in messages. */
static tn_err parse_value(const pctx *c, const field *f, uint32_t v, const char *key,
                          const char *where, void *base)
{
    void *p = (char *)base + f->off;
    if (f->parse)
        return f->parse(c, v, key, where, base);
    switch ((vkind)f->kind) {
    case V_STR: return get_str(c, v, key, where, f->max, p);
    case V_NAME: return get_name(c, v, key, where, f->label, p);
    case V_REF: return get_ref(c, v, key, where, p);
    case V_ENUM: return get_enum(c, v, key, where, f->ed, p);
    case V_BOOL: return get_bool(c, v, key, where, p);
    case V_COUNT: return get_count(c, v, key, where, f->max, p);
    case V_DURATION: return get_duration(c, v, key, where, p);
    case V_SIZE:
        return get_converted(c, v, key, where, tn_parse_size, "size",
                             "write bytes, or a whole number with K, M, G or T (512M, 2G)", p);
    case V_CPU:
        return get_converted(c, v, key, where, tn_parse_cpu_milli, "cpu count",
                             "write cores as a decimal with at most 3 decimals (1, 1.5, 0.25), "
                             "at most 10000",
                             p);
    case V_KVS: return get_kvs(c, v, key, where, p);
    case V_REFS: return get_refs(c, v, key, where, p, (uint32_t *)((char *)base + f->n_off));
    case V_ITEMS: return parse_items(c, v, key, where, key, where, f->items, base);
    case V_TASKS: return parse_tasks(c, v, key, where, base);
    case V_SCHED: return parse_schedule(c, v, key, where, base);
    }
    return TN_ERR_INVAL; /* not reached: every kind is read above */
}

/* A list of mappings: `list_key` and `list_where` name the list, `key` and `where` its
 * items ("when" item #2 of a task whose list is under "all"). */
static tn_err parse_items(const pctx *c, uint32_t v, const char *list_key,
                          const char *list_where, const char *key, const char *where,
                          const item_spec *s, void *base)
{
    uint32_t iv[8], i = 0, *n_items = (uint32_t *)((char *)base + s->n_off);
    char here[200];
    void *list = NULL;
    if (is_null(c, v))
        return TN_OK;
    tn_err err = get_items(c, v, list_key, list_where, s->size, &list, n_items);
    memcpy((char *)base + s->list_off, &list, sizeof(list));
    for (uint32_t k = NODE(c, v)->first; !err && k != NONE; k = NODE(c, k)->next, i++) {
        void *item = (char *)list + (size_t)i * s->size;
        if (s->init && (err = s->init(item, NODE(c, k)->line)) != TN_OK)
            return err;
        err = get_item(c, k, key, i + 1, where, s->words, s->n, s->required, iv, here,
                       sizeof(here));
        for (uint32_t j = 0; !err && j < s->n; j++)
            if (iv[j] != NONE)
                err = parse_value(c, &s->fields[j], iv[j], s->words[j], here, item);
    }
    return err;
}

static const char *const when_words[] = {"task", "state"};
static const field when_fields[] = {
    {V_REF, .off = offsetof(tn_def_cond_item, task), .what = "when task"},
    {V_ENUM, .off = offsetof(tn_def_cond_item, state), .ed = &cond_state_desc,
     .what = "when state"},
};
static const field when_mode = {V_ENUM, .off = offsetof(tn_def_task, cond.mode),
                                .ed = &cond_mode_desc};
static const item_spec when_items = {when_words,
                                     when_fields,
                                     2,
                                     3,
                                     sizeof(tn_def_cond_item),
                                     offsetof(tn_def_task, cond.when),
                                     offsetof(tn_def_task, cond.n_when),
                                     "when item",
                                     &when_mode,
                                     NULL};

static tn_err case_init(void *item, uint32_t line)
{
    ((tn_def_case *)item)->line = line;
    return TN_OK;
}

static const char *const case_words[] = {"when", "then"};
static const field case_fields[] = {
    {V_STR, .off = offsetof(tn_def_case, when), .max = TN_DEF_MAX_STRING, .what = "case when"},
    {V_REF, .off = offsetof(tn_def_case, then), .what = "case then"},
};
static const item_spec case_items = {case_words,
                                     case_fields,
                                     2,
                                     3,
                                     sizeof(tn_def_case),
                                     offsetof(tn_def_task, sw.cases),
                                     offsetof(tn_def_task, sw.n_cases),
                                     "case",
                                     NULL,
                                     case_init};

/* A dependent item waits for the whole workflow today unless it says otherwise. Only
 * `workflow` is required, so the defaults are set before the item is read. */
static tn_err depend_init(void *item, uint32_t line)
{
    tn_def_depend *dp = item;
    dp->line = line;
    dp->cycle = TN_DEF_CYCLE_DAY;
    if (!(dp->task = strdup(TN_DEF_DEPEND_ALL)) || !(dp->date = strdup("today")))
        return TN_ERR_NOMEM;
    return TN_OK;
}

static const char *const depend_words[] = {"workflow", "task", "cycle", "date"};
static const field depend_fields[] = {
    {V_NAME, .off = offsetof(tn_def_depend, workflow), .label = "workflow name",
     .what = "depends workflow"},
    {V_NAME, .off = offsetof(tn_def_depend, task), .label = "task name",
     .what = "depends task"},
    {V_ENUM, .off = offsetof(tn_def_depend, cycle), .ed = &cycle_desc, .what = "depends cycle"},
    {V_STR, .off = offsetof(tn_def_depend, date), .max = TN_DEF_MAX_NAME,
     .what = "depends date"},
};
static const item_spec depend_items = {depend_words,
                                       depend_fields,
                                       4,
                                       1,
                                       sizeof(tn_def_depend),
                                       offsetof(tn_def_task, dep.depends),
                                       offsetof(tn_def_task, dep.n_depends),
                                       "depends item",
                                       NULL,
                                       depend_init};

/* alerts: `on` is a list of outcome words (or one word, or "w1,w2" as `def show` prints
 * it), kept as the canonical comma-joined string; the mask is computed by validation. */
static const char *const alert_on_words[] = {
#define TN_DEF__AOW(c, w) #w,
    TN_DEF_ALERT_ON_LIST(TN_DEF__AOW)
#undef TN_DEF__AOW
};

const char *tn_def_alert_on_name(tn_def_alert_on o)
{
    return (unsigned)o < TN_ARRAY_LEN(alert_on_words) ? alert_on_words[o] : "?";
}

/* The mask of a canonical or comma-separated list of outcome words; 0 when one is unknown
 * or the list is empty. */
static uint32_t alert_mask(const char *on)
{
    uint32_t mask = 0;
    const char *p = on;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        uint32_t bit = 0;
        for (unsigned k = 0; k < TN_ARRAY_LEN(alert_on_words); k++)
            if (strlen(alert_on_words[k]) == n && !strncmp(p, alert_on_words[k], n))
                bit = 1u << k;
        if (!bit)
            return 0;
        mask |= bit;
        p += n + (p[n] == ',');
    }
    return mask;
}

static tn_err alert_on_add(const pctx *c, uint32_t v, const char *where, char *buf, size_t cap)
{
    const char *w = SVAL(c, v);
    if (!alert_mask(w))
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "unknown alert outcome \"%.64s\" in %s (allowed: failure, timeout, "
                       "success, kill, task_failure)",
                       w, where);
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n ? "," : "", w);
    return TN_OK;
}

static tn_err parse_alert_on(const pctx *c, uint32_t v, const char *key, const char *where,
                             void *base)
{
    tn_def_alert *a = base;
    char buf[256] = "";
    tn_err err = TN_OK;
    if (NODE(c, v)->kind == N_SCALAR) {
        err = alert_on_add(c, v, where, buf, sizeof(buf));
    } else if (NODE(c, v)->kind == N_SEQ) {
        for (uint32_t k = NODE(c, v)->first; !err && k != NONE; k = NODE(c, k)->next) {
            if ((err = want(c, k, N_SCALAR, key, where)))
                break;
            err = alert_on_add(c, k, where, buf, sizeof(buf));
        }
    } else {
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "\"on\" in %s must be a list of outcomes, e.g. [failure, timeout]",
                       where);
    }
    if (err)
        return err;
    free(a->on);
    return (a->on = strdup(buf)) ? TN_OK : TN_ERR_NOMEM;
}

static tn_err alert_init(void *item, uint32_t line)
{
    ((tn_def_alert *)item)->line = line;
    return TN_OK;
}

static const char *const alert_words[] = {"on", "webhook", "command"};
static const field alert_fields[] = {
    {V_STR, .off = offsetof(tn_def_alert, on), .max = 256, .what = "alert on",
     .parse = parse_alert_on},
    {V_STR, .nil_ok = true, .off = offsetof(tn_def_alert, webhook), .max = TN_DEF_MAX_URL,
     .what = "alert webhook"},
    {V_STR, .nil_ok = true, .off = offsetof(tn_def_alert, command), .max = TN_DEF_MAX_ALERT_CMD,
     .what = "alert command"},
};
static const item_spec alert_items = {alert_words,
                                      alert_fields,
                                      3,
                                      1,
                                      sizeof(tn_def_alert),
                                      offsetof(tn_def, alerts),
                                      offsetof(tn_def, n_alerts),
                                      "alert",
                                      NULL,
                                      alert_init};

/* when: {all|any: [items]}: the one key of the mapping is the mode. */
static tn_err parse_when(const pctx *c, uint32_t v, const char *key, const char *where,
                         void *base)
{
    static const char *const modes[] = {"all", "any"};
    tn_def_task *t = base;
    uint32_t vals[2], lines[2];
    char here[200];
    if (is_null(c, v))
        return TN_OK;
    if (NODE(c, v)->kind != N_MAP)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "\"when\" in %s must be a mapping with one key, all or any, not %s",
                       where, kind_word(NODE(c, v)));
    snprintf(here, sizeof(here), "\"when\" of %s", where);
    tn_err err = collect_keys(c, v, modes, 2, NULL, here, vals, lines);
    if (err)
        return err;
    if ((vals[0] == NONE) == (vals[1] == NONE))
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "\"when\" in %s needs exactly one of \"all\" and \"any\"", where);
    t->cond.mode = vals[0] != NONE ? TN_DEF_COND_ALL : TN_DEF_COND_ANY;
    return parse_items(c, vals[t->cond.mode], modes[t->cond.mode], here, key, where,
                       &when_items, base);
}

static tn_err parse_default(const pctx *c, uint32_t v, const char *key, const char *where,
                            void *base)
{
    tn_def_task *t = base;
    if (is_null(c, v))
        return TN_OK;
    t->sw.has_default = true;
    return get_ref(c, v, key, where, &t->sw.dflt);
}

/* The type, with a message of its own: it decides which other keys may be written. */
static tn_err parse_type(const pctx *c, uint32_t v, const char *key, const char *where,
                         void *base)
{
    tn_def_task *t = base;
    tn_err err = want(c, v, N_SCALAR, key, where);
    if (err)
        return err;
    if (tn_def_task_type_parse(SVAL(c, v), &t->type) != TN_OK)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "unknown task type \"%.64s\" in %s (allowed: %s)", SVAL(c, v), where,
                       tn_def_task_type_allowed());
    return TN_OK;
}

#define T_(x) (1u << TN_DEF_TASK_##x)
#define T_ALL \
    (T_(SHELL) | T_(NOOP) | T_(CONDITIONS) | T_(SWITCH) | T_(DEPENDENT) | T_(SUB_WORKFLOW))
#define T_DISPATCHED (T_(SHELL) | T_(NOOP))
#define TF(f)        offsetof(tn_def_task, f)
#define DF(f)        offsetof(tn_def, f)

/* A task's keys: which types take each (see tn_def_task_key_applies in the header), how
 * it is read and where it is kept. The encoding follows this order (see below). */
static const field task_fields[TN_DEF_TK__COUNT] = {
    [TN_DEF_TK_NAME] = {V_NAME, T_ALL, .required = true, .off = TF(name), .label = "task name",
                        .what = "task name"},
    [TN_DEF_TK_TYPE] = {V_ENUM, T_ALL, .required = true, .off = TF(type), .ed = &task_type_desc,
                        .what = "task type", .parse = parse_type},
    [TN_DEF_TK_DEPS] = {V_REFS, T_ALL, .off = TF(deps), .n_off = TF(n_deps)},
    [TN_DEF_TK_ENABLED] = {V_BOOL, T_ALL, .off = TF(enabled)},
    [TN_DEF_TK_PARAMS] = {V_KVS, T_ALL, .off = TF(params)},
    [TN_DEF_TK_RETRIES] = {V_COUNT, T_ALL, .off = TF(retries), .max = TN_DEF_MAX_RETRIES},
    [TN_DEF_TK_RETRY_INTERVAL] = {V_DURATION, T_ALL, .off = TF(retry_interval_ms)},
    [TN_DEF_TK_TIMEOUT] = {V_DURATION, T_ALL, .off = TF(timeout_ms)},
    [TN_DEF_TK_TIMEOUT_STRATEGY] = {V_ENUM, T_ALL, .off = TF(timeout_strategy),
                                    .ed = &timeout_strategy_desc},
    [TN_DEF_TK_DELAY] = {V_DURATION, T_ALL, .off = TF(delay_ms)},
    [TN_DEF_TK_PRIORITY] = {V_ENUM, T_ALL, .off = TF(priority), .ed = &priority_desc},
    [TN_DEF_TK_WORKER_GROUP] = {V_NAME, T_DISPATCHED, .off = TF(worker_group),
                                .label = "worker group name"},
    [TN_DEF_TK_TASK_GROUP] = {V_NAME, T_DISPATCHED, .nil_ok = true, .off = TF(task_group),
                              .label = "task group name"},
    [TN_DEF_TK_DISPATCH_TIMEOUT] = {V_DURATION, T_DISPATCHED, .off = TF(dispatch_timeout_ms)},
    [TN_DEF_TK_ENVIRONMENT] = {V_NAME, T_(SHELL), .nil_ok = true, .off = TF(environment),
                               .label = "environment name"},
    [TN_DEF_TK_COMMAND] = {V_STR, T_(SHELL), .off = TF(command), .max = TN_DEF_MAX_COMMAND},
    [TN_DEF_TK_KILL_GRACE] = {V_DURATION, T_(SHELL), .off = TF(kill_grace_ms)},
    [TN_DEF_TK_MEMORY_MAX] = {V_SIZE, T_(SHELL), .off = TF(memory_max)},
    [TN_DEF_TK_CPU_MAX] = {V_CPU, T_(SHELL), .off = TF(cpu_max_milli)},
    [TN_DEF_TK_PIDS_MAX] = {V_COUNT, T_(SHELL), .off = TF(pids_max), .max = TN_DEF_MAX_PIDS},
    [TN_DEF_TK_RESULT] = {V_ENUM, T_(NOOP), .off = TF(noop.result), .ed = &noop_result_desc},
    [TN_DEF_TK_DURATION] = {V_DURATION, T_(NOOP), .off = TF(noop.duration_ms)},
    [TN_DEF_TK_OUTPUTS] = {V_KVS, T_(NOOP), .off = TF(noop.outputs)},
    [TN_DEF_TK_WHEN] = {V_ITEMS, T_(CONDITIONS), .items = &when_items, .parse = parse_when},
    [TN_DEF_TK_ON_SUCCESS] = {V_REFS, T_(CONDITIONS), .off = TF(cond.on_success),
                              .n_off = TF(cond.n_on_success)},
    [TN_DEF_TK_ON_FAILURE] = {V_REFS, T_(CONDITIONS), .off = TF(cond.on_failure),
                              .n_off = TF(cond.n_on_failure)},
    [TN_DEF_TK_CASES] = {V_ITEMS, T_(SWITCH), .items = &case_items},
    [TN_DEF_TK_DEFAULT] = {V_REF, T_(SWITCH), .nil_ok = true, .off = TF(sw.dflt),
                           .parse = parse_default},
    [TN_DEF_TK_RELATION] = {V_ENUM, T_(DEPENDENT), .off = TF(dep.relation),
                            .ed = &relation_desc},
    [TN_DEF_TK_DEPENDS] = {V_ITEMS, T_(DEPENDENT), .items = &depend_items},
    [TN_DEF_TK_CHECK_INTERVAL] = {V_DURATION, T_(DEPENDENT), .off = TF(dep.check_interval_ms)},
    [TN_DEF_TK_FAILURE_POLICY] = {V_ENUM, T_(DEPENDENT), .off = TF(dep.failure_policy),
                                  .ed = &failure_policy_desc},
    [TN_DEF_TK_FAILURE_WAIT] = {V_DURATION, T_(DEPENDENT), .off = TF(dep.failure_wait_ms)},
    [TN_DEF_TK_WORKFLOW] = {V_NAME, T_(SUB_WORKFLOW), .off = TF(sub.workflow),
                            .label = "workflow name"},
};

static const field wf_fields[TN_DEF_WK__COUNT] = {
    [TN_DEF_WK_NAME] = {V_NAME, .required = true, .off = DF(name), .label = "workflow name"},
    [TN_DEF_WK_DESCRIPTION] = {V_STR, .off = DF(description), .max = TN_DEF_MAX_STRING},
    [TN_DEF_WK_PARAMS] = {V_KVS, .off = DF(params)},
    [TN_DEF_WK_EXECUTION] = {V_ENUM, .off = DF(execution), .ed = &exec_desc},
    [TN_DEF_WK_PRIORITY] = {V_ENUM, .off = DF(priority), .ed = &priority_desc},
    [TN_DEF_WK_TIMEOUT] = {V_DURATION, .off = DF(timeout_ms)},
    [TN_DEF_WK_TIMEOUT_STRATEGY] = {V_ENUM, .off = DF(timeout_strategy),
                                    .ed = &timeout_strategy_desc},
    [TN_DEF_WK_FAILURE_STRATEGY] = {V_ENUM, .off = DF(failure_strategy),
                                    .ed = &failure_strategy_desc},
    [TN_DEF_WK_TASKS] = {V_TASKS},
    [TN_DEF_WK_TENANT] = {V_NAME, .nil_ok = true, .off = DF(tenant), .label = "tenant"},
    [TN_DEF_WK_SCHEDULE] = {V_SCHED, .nil_ok = true, .off = DF(schedule)},
    [TN_DEF_WK_ALERTS] = {V_ITEMS, .items = &alert_items},
};

/* A mapping's keys: the table and the words, and the keys of the level above or below
 * for the misplaced-key hint. */
typedef struct map_spec {
    const field *fields;
    const char *const *words;
    size_t n;
    other_keys other;
} map_spec;

static const map_spec task_map = {task_fields,
                                  task_key_words,
                                  TN_DEF_TK__COUNT,
                                  {wf_key_words, TN_DEF_WK__COUNT, "a workflow key"}};
static const map_spec wf_map = {wf_fields,
                                wf_key_words,
                                TN_DEF_WK__COUNT,
                                {task_key_words, TN_DEF_TK__COUNT, "a task key"}};

bool tn_def_task_key_applies(tn_def_task_key key, tn_def_task_type type)
{
    if ((unsigned)key >= TN_DEF_TK__COUNT || (unsigned)type >= TN_ARRAY_LEN(task_type_words))
        return false;
    return (task_fields[key].types >> type) & 1u;
}

/* "where" for messages: the thing named by its `name` key when that is a plain string,
 * else by `fallback`. */
static void name_where(const pctx *c, uint32_t map, const char *what, const char *fallback,
                       char *where, size_t len)
{
    const char *peek = peek_key(c, map, "name");
    if (peek)
        snprintf(where, len, "%s \"%.64s\"", what, peek);
    else
        snprintf(where, len, "%s", fallback);
}

/* Check the keys of a mapping, then read its required keys in table order, so the
 * thing is named and typed before anything else about it is reported. */
static tn_err parse_required(const pctx *c, uint32_t map, const map_spec *m, const char *where,
                             uint32_t *lines, void *base)
{
    uint32_t vals[TN_DEF_TK__COUNT];
    tn_err err = collect_keys(c, map, m->words, m->n, &m->other, where, vals, lines);
    for (size_t k = 0; !err && k < m->n; k++) {
        const field *f = &m->fields[k];
        if (!f->required)
            continue;
        if (vals[k] == NONE || is_null(c, vals[k]))
            return fail_at(&c->e, TN_ERR_PARSE, NODE(c, map)->line, "%s has no \"%s\"%s%s%s",
                           where, m->words[k], f->ed ? " (one of " : "",
                           f->ed ? f->ed->allowed() : "", f->ed ? ")" : "");
        err = parse_value(c, f, vals[k], m->words[k], where, base);
    }
    return err;
}

/* The other keys of a mapping, in the order written. Keys were checked already. */
static tn_err parse_rest(const pctx *c, uint32_t map, const map_spec *m, const char *where,
                         void *base)
{
    for (uint32_t k = NODE(c, map)->first; k != NONE; k = NODE(c, NODE(c, k)->next)->next) {
        int key = word_find(m->words, m->n, SVAL(c, k));
        if (key < 0 || m->fields[key].required)
            continue;
        tn_err err =
            parse_value(c, &m->fields[key], NODE(c, k)->next, m->words[key], where, base);
        if (err)
            return err;
    }
    return TN_OK;
}

static const char *types_of_key(tn_def_task_key k, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned ty = 0; ty < TN_ARRAY_LEN(task_type_words); ty++) {
        if (!(task_fields[k].types >> ty & 1))
            continue;
        int w =
            snprintf(buf + used, len - used, "%s%s", used ? " and " : "", task_type_words[ty]);
        if (w < 0 || (size_t)w >= len - used)
            break;
        used += (size_t)w;
    }
    return buf;
}

/* Logic tasks run in the master, so a worker key on one would be silently ignored: every
 * key a task's type does not take is refused, before any value is read. */
static tn_err check_applies(const pctx *c, uint32_t map, const tn_def_task *t,
                            const char *where)
{
    char types[64];
    for (uint32_t k = NODE(c, map)->first; k != NONE; k = NODE(c, NODE(c, k)->next)->next) {
        int key = word_find(task_key_words, TN_DEF_TK__COUNT, SVAL(c, k));
        if (!tn_def_task_key_applies((tn_def_task_key)key, t->type))
            return fail_at(&c->e, TN_ERR_PARSE, NODE(c, k)->line,
                           "key \"%s\" in %s is for %s tasks; this one is %s",
                           task_key_words[key], where,
                           types_of_key((tn_def_task_key)key, types, sizeof(types)),
                           task_type_words[t->type]);
    }
    return TN_OK;
}

static tn_err parse_task(const pctx *c, uint32_t v, uint32_t no, tn_def_task *t)
{
    char where[100], fallback[32];
    const node *tn = NODE(c, v);
    tn_err err;

    t->line = tn->line;
    if (tn->kind != N_MAP)
        return fail_at(&c->e, TN_ERR_PARSE, tn->line,
                       "task #%u must be a mapping of keys (name, type, ...), not %s", no,
                       kind_word(tn));
    snprintf(fallback, sizeof(fallback), "task #%u", no);
    name_where(c, v, "task", fallback, where, sizeof(where));
    if ((err = parse_required(c, v, &task_map, where, t->key_line, t)) ||
        (err = check_applies(c, v, t, where)))
        return err;
    return parse_rest(c, v, &task_map, where, t);
}

static tn_err def_defaults(tn_def *d)
{
    d->execution = TN_DEF_EXEC_PARALLEL;
    d->priority = TN_DEF_PRIO_MEDIUM;
    d->timeout_strategy = TN_DEF_TIMEOUT_WARN;
    d->failure_strategy = TN_DEF_FAILURE_END;
    d->description = strdup("");
    return d->description ? TN_OK : TN_ERR_NOMEM;
}

static tn_err parse_tasks(const pctx *c, uint32_t v, const char *key, const char *where,
                          void *base)
{
    tn_def *d = base;
    uint32_t i = 0;
    tn_err err;
    if (is_null(c, v))
        return TN_OK;
    if ((err = want(c, v, N_SEQ, key, where)))
        return err;
    uint32_t n = NODE(c, v)->len;
    if (n > TN_DEF_MAX_TASKS)
        return fail_at(&c->e, TN_ERR_TOOBIG, NODE(c, v)->line,
                       "%s has %u tasks; the limit is %u", where, n, TN_DEF_MAX_TASKS);
    if (n == 0)
        return TN_OK;
    if ((d->tasks = calloc(n, sizeof(*d->tasks))) == NULL)
        return TN_ERR_NOMEM;
    d->n_tasks = n;
    for (uint32_t k = NODE(c, v)->first; k != NONE; k = NODE(c, k)->next, i++) {
        if ((err = task_defaults(&d->tasks[i])) != TN_OK)
            return err;
        if ((err = parse_task(c, k, i + 1, &d->tasks[i])) != TN_OK)
            return err;
    }
    return TN_OK;
}

static tn_err parse_root(const pctx *c, uint32_t root, tn_def *d)
{
    char where[100];
    tn_err err;

    if (root == NONE || is_null(c, root))
        return fail_at(&c->e, TN_ERR_PARSE, root == NONE ? 1 : NODE(c, root)->line,
                       "empty document: a workflow needs at least \"name\" and \"tasks\"");
    if (NODE(c, root)->kind != N_MAP)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, root)->line,
                       "a workflow file must be a mapping with \"name\" and \"tasks\", not %s",
                       kind_word(NODE(c, root)));
    name_where(c, root, "workflow", "workflow", where, sizeof(where));
    if ((err = parse_required(c, root, &wf_map, where, d->key_line, d)) ||
        (err = parse_rest(c, root, &wf_map, where, d)))
        return err;
    if (d->n_tasks == 0)
        return fail_at(&c->e, TN_ERR_PARSE,
                       d->key_line[TN_DEF_WK_TASKS] ? d->key_line[TN_DEF_WK_TASKS] :
                                                      NODE(c, root)->line,
                       "%s has no tasks: add a \"tasks\" list", where);
    return TN_OK;
}

/* ---- tree to struct: the schedule block ---------------------------------------------------- */

/* Its keys, in the order of the encoding and of the YAML output. */
enum {
    SK_CRON,
    SK_TIMEZONE,
    SK_START,
    SK_END,
    SK_OVERLAP,
    SK_CATCHUP,
    SK_PAUSE_ON_FAILURE,
    SK_PRIORITY,
    SK_FAILURE_STRATEGY,
    SK_WORKER_GROUP,
    SK_PARAMS,
    SK__COUNT
};
static const char *const sched_words[SK__COUNT] = {"cron",
                                                   "timezone",
                                                   "start",
                                                   "end",
                                                   "overlap",
                                                   "catchup",
                                                   "pause_on_failure",
                                                   "priority",
                                                   "failure_strategy",
                                                   "worker_group",
                                                   "params"};

static const char *const overlap_words[] = {TN_OVERLAP_LIST(WORD)};
static const enum_desc overlap_desc = {overlap_words, TN_ARRAY_LEN(overlap_words),
                                       tn_overlap_allowed};

static void kvs_free(tn_def_kvs *kv);

/* A string into a fixed buffer of `cap` bytes (NUL included); null leaves it alone. */
static tn_err get_fixed(const pctx *c, uint32_t v, const char *key, const char *where,
                        size_t cap, char *out)
{
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    if (NODE(c, v)->len >= cap)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "\"%s\" in %s is %u bytes; the limit is %zu", key, where,
                       NODE(c, v)->len, cap - 1);
    memcpy(out, SVAL(c, v), NODE(c, v)->len + 1);
    return TN_OK;
}

/* An enum word kept as its word ("" = not written). */
static tn_err get_word(const pctx *c, uint32_t v, const char *key, const char *where,
                       const enum_desc *ed, char *out, size_t cap)
{
    unsigned i = 0;
    tn_err err;
    if (!has_scalar(c, v, key, where, &err))
        return err;
    if ((err = get_enum(c, v, key, where, ed, &i)) != TN_OK)
        return err;
    snprintf(out, cap, "%s", ed->words[i]);
    return TN_OK;
}

/* The zone first: start and end are read in it. */
static tn_err sched_zone_cron(const pctx *c, const uint32_t *vals, const char *where,
                              tn_sched_spec *s)
{
    tn_errmsg m = {{0}};
    tn_tz *tz = NULL;
    tn_cron cron;
    tn_err err;
    if (vals[SK_TIMEZONE] != NONE) {
        uint32_t v = vals[SK_TIMEZONE];
        if ((err = get_fixed(c, v, "timezone", where, sizeof(s->tz), s->tz)))
            return err;
        if ((err = tn_tz_open(s->tz, &tz, &m)) != TN_OK)
            return fail_at(&c->e, err == TN_ERR_NOMEM ? err : TN_ERR_PARSE, NODE(c, v)->line,
                           "bad \"timezone\" in %s: %s", where, m.text);
        tn_tz_free(tz);
    }
    if ((err = get_fixed(c, vals[SK_CRON], "cron", where, sizeof(s->cron), s->cron)))
        return err;
    if ((err = tn_cron_parse(s->cron, &cron, &m)) != TN_OK)
        return fail_at(&c->e, err == TN_ERR_NOMEM ? err : TN_ERR_PARSE,
                       NODE(c, vals[SK_CRON])->line, "bad \"cron\" in %s: %s", where, m.text);
    return TN_OK;
}

static tn_err sched_bound(const pctx *c, uint32_t v, const char *key, const char *where,
                          const char *tz, int64_t *out)
{
    char text[65] = "";
    tn_errmsg m = {{0}};
    tn_err err;
    if (v == NONE)
        return TN_OK;
    if ((err = get_fixed(c, v, key, where, sizeof(text), text)) || !text[0])
        return err;
    if ((err = tn_sched_parse_time(text, tz, out, &m)) != TN_OK)
        return fail_at(&c->e, err == TN_ERR_NOMEM ? err : TN_ERR_PARSE, NODE(c, v)->line,
                       "bad \"%s\" in %s: %s", key, where, m.text);
    if (*out < 0)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, v)->line,
                       "bad \"%s\" in %s: \"%s\" is before 1970", key, where, text);
    return TN_OK;
}

static tn_err sched_window(const pctx *c, const uint32_t *vals, const char *where,
                           tn_sched_spec *s)
{
    tn_err err;
    if ((err = sched_bound(c, vals[SK_START], "start", where, s->tz, &s->start_ns)) ||
        (err = sched_bound(c, vals[SK_END], "end", where, s->tz, &s->end_ns)))
        return err;
    if (s->start_ns && s->end_ns && s->start_ns >= s->end_ns)
        return fail_at(&c->e, TN_ERR_PARSE, NODE(c, vals[SK_END])->line,
                       "\"end\" in %s is not after \"start\": the schedule would never fire; "
                       "give an end later than the start (times without an offset are in %s)",
                       where, s->tz);
    return TN_OK;
}

/* The params, sorted by key as the workflow's are (see tn_def_kv). */
static tn_err sched_params(const pctx *c, uint32_t v, const char *where, tn_sched_spec *s)
{
    tn_def_kvs kv = {0};
    tn_err err = get_kvs(c, v, "params", where, &kv);
    for (uint32_t i = 0; !err && i < kv.n; i++)
        err = tn_sched_spec_param(s, kv.items[i].key, kv.items[i].value);
    kvs_free(&kv);
    return err;
}

static tn_err sched_rest(const pctx *c, const uint32_t *vals, const char *where,
                         tn_sched_spec *s)
{
    uint64_t catchup = (uint64_t)s->catchup_ms;
    unsigned ov = (unsigned)s->overlap;
    tn_err err = TN_OK;
    char *group = NULL;
#define HAS(k) (vals[k] != NONE)
    if (HAS(SK_OVERLAP))
        err = get_enum(c, vals[SK_OVERLAP], "overlap", where, &overlap_desc, &ov);
    if (!err && HAS(SK_CATCHUP))
        err = get_duration(c, vals[SK_CATCHUP], "catchup", where, &catchup);
    if (!err && HAS(SK_PAUSE_ON_FAILURE))
        err = get_bool(c, vals[SK_PAUSE_ON_FAILURE], "pause_on_failure", where,
                       &s->pause_on_failure);
    if (!err && HAS(SK_PRIORITY))
        err = get_word(c, vals[SK_PRIORITY], "priority", where, &priority_desc, s->priority,
                       sizeof(s->priority));
    if (!err && HAS(SK_FAILURE_STRATEGY))
        err =
            get_word(c, vals[SK_FAILURE_STRATEGY], "failure_strategy", where,
                     &failure_strategy_desc, s->failure_strategy, sizeof(s->failure_strategy));
    if (!err && HAS(SK_WORKER_GROUP))
        err = get_name(c, vals[SK_WORKER_GROUP], "worker_group", where, "worker group name",
                       &group);
    if (!err && group)
        snprintf(s->worker_group, sizeof(s->worker_group), "%s", group);
    free(group);
    if (!err && HAS(SK_PARAMS))
        err = sched_params(c, vals[SK_PARAMS], where, s);
#undef HAS
    s->overlap = (tn_overlap)ov;
    s->catchup_ms = (int64_t)catchup;
    return err;
}

/* `schedule:` a mapping with at least a cron; a null value is no schedule. */
static tn_err parse_schedule(const pctx *c, uint32_t v, const char *key, const char *where,
                             void *base)
{
    static const other_keys up = {wf_key_words, TN_DEF_WK__COUNT, "a workflow key"};
    tn_def *d = base;
    uint32_t vals[SK__COUNT], lines[SK__COUNT];
    char here[160];
    tn_errmsg m = {{0}};
    tn_err err;
    if (is_null(c, v))
        return TN_OK;
    if ((err = want(c, v, N_MAP, key, where)))
        return err;
    snprintf(here, sizeof(here), "\"schedule\" of %s", where);
    if ((err = collect_keys(c, v, sched_words, SK__COUNT, &up, here, vals, lines)))
        return err;
    if (vals[SK_CRON] == NONE || is_null(c, vals[SK_CRON]))
        return fail_at(&c->e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_SCHEDULE],
                       "%s has no \"cron\": give one such as \"0 0 2 * * ?\" (Quartz: every "
                       "day at 02:00) or \"0 2 * * *\" (Unix)",
                       here);
    if ((d->schedule = malloc(sizeof(*d->schedule))) == NULL)
        return TN_ERR_NOMEM;
    tn_sched_spec_init(d->schedule);
    if ((err = sched_zone_cron(c, vals, here, d->schedule)) ||
        (err = sched_window(c, vals, here, d->schedule)) ||
        (err = sched_rest(c, vals, here, d->schedule)))
        return err;
    /* the same checks `tern schedule set` gets; everything above should catch it first */
    if ((err = tn_sched_spec_validate(d->schedule, &m)) != TN_OK)
        return fail_at(&c->e, err == TN_ERR_NOMEM ? err : TN_ERR_PARSE,
                       d->key_line[TN_DEF_WK_SCHEDULE], "bad \"schedule\": %s", m.text);
    return TN_OK;
}

/* ---- validation --------------------------------------------------------------------------- */

/* Everything here reads only the struct, so a decoded definition gets the same checks as a
 * parsed one. Lines are 0 after decoding, and fail_at then leaves them out. */

typedef struct vctx {
    ectx e;
    tn_def *d;
    uint32_t *mark; /* [n_tasks] scratch: mark[j] == i + 1 when task j is a dep of task i */
} vctx;

static uint32_t key_line(const tn_def_task *t, tn_def_task_key k)
{
    return t->key_line[k] ? t->key_line[k] : t->line;
}

static tn_err check_kvs(const vctx *v, const tn_def_kvs *kv, uint32_t line, const char *what)
{
    if (kv->n > TN_DEF_MAX_PARAMS)
        return fail_at(&v->e, TN_ERR_TOOBIG, line, "%s has more than %u entries", what,
                       TN_DEF_MAX_PARAMS);
    for (uint32_t i = 0; i < kv->n; i++) {
        if (!param_key_valid(kv->items[i].key) || !kv->items[i].value)
            return fail_at(&v->e, TN_ERR_PARSE, line, "%s: bad param name \"%.80s\"", what,
                           kv->items[i].key ? kv->items[i].key : "");
        if (i > 0 && strcmp(kv->items[i - 1].key, kv->items[i].key) >= 0)
            return fail_at(&v->e, TN_ERR_PARSE, line, "%s: keys out of order or repeated",
                           what);
    }
    return TN_OK;
}

static tn_err check_duration(const vctx *v, const tn_def_task *t, tn_def_task_key k,
                             uint64_t ms)
{
    if (ms <= TN_DEF_MAX_DURATION_MS)
        return TN_OK;
    return fail_at(&v->e, TN_ERR_PARSE, key_line(t, k),
                   "\"%s\" in task \"%s\" is longer than 3650d", task_key_words[k], t->name);
}

static tn_err check_opt_name(const vctx *v, const tn_def_task *t, tn_def_task_key k,
                             const char *s)
{
    if (!s || tn_def_name_valid(s))
        return TN_OK;
    return fail_at(&v->e, TN_ERR_PARSE, key_line(t, k),
                   "bad name \"%.80s\" for \"%s\" in task \"%s\"", s, task_key_words[k],
                   t->name);
}

/* The fields of one task on their own: names, ranges and list contents, whatever its
 * type (a decoded task may hold anything). */
static tn_err check_task_fields(const vctx *v, const tn_def_task *t)
{
    static const tn_def_task_key names[] = {TN_DEF_TK_WORKER_GROUP, TN_DEF_TK_TASK_GROUP,
                                            TN_DEF_TK_ENVIRONMENT};
    tn_err err;

    if (!tn_def_name_valid(t->name))
        return fail_at(&v->e, TN_ERR_PARSE, t->line, "bad task name \"%.80s\"",
                       t->name ? t->name : "");
    if (!t->worker_group)
        return fail_at(&v->e, TN_ERR_PARSE, t->line, "task \"%s\" has no worker group",
                       t->name);
    for (size_t i = 0; i < TN_ARRAY_LEN(names); i++)
        if ((err =
                 check_opt_name(v, t, names[i],
                                *(char *const *)((const char *)t + task_fields[names[i]].off))))
            return err;
    if (t->retries > TN_DEF_MAX_RETRIES)
        return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_RETRIES),
                       "task \"%s\" has more than %u retries", t->name, TN_DEF_MAX_RETRIES);
    for (unsigned k = 0; k < TN_DEF_TK__COUNT; k++)
        if (task_fields[k].kind == V_DURATION &&
            (err = check_duration(v, t, (tn_def_task_key)k,
                                  *(const uint64_t *)((const char *)t + task_fields[k].off))))
            return err;
    if (t->cpu_max_milli > TN_DEF_MAX_CPU_MILLI)
        return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_CPU_MAX),
                       "\"cpu_max\" of task \"%s\" is over 10000 cores", t->name);
    for (unsigned k = 0; k < TN_DEF_TK__COUNT; k++)
        if (task_fields[k].kind == V_KVS &&
            (err = check_kvs(v, (const tn_def_kvs *)((const char *)t + task_fields[k].off),
                             key_line(t, (tn_def_task_key)k), task_key_words[k])))
            return err;
    return TN_OK;
}

static tn_err check_depends(const vctx *v, const tn_def_task *t)
{
    for (uint32_t i = 0; i < t->dep.n_depends; i++) {
        const tn_def_depend *dp = &t->dep.depends[i];
        if (!tn_def_name_valid(dp->workflow) || !tn_def_name_valid(dp->task))
            return fail_at(&v->e, TN_ERR_PARSE, dp->line,
                           "bad workflow or task name in \"depends\" of task \"%s\"", t->name);
        if (!tn_def_date_valid(dp->cycle, dp->date))
            return fail_at(&v->e, TN_ERR_PARSE, dp->line,
                           "bad date \"%.64s\" for cycle %s in \"depends\" of task \"%s\" "
                           "(allowed with %s: %s)",
                           dp->date ? dp->date : "", tn_def_cycle_name(dp->cycle), t->name,
                           tn_def_cycle_name(dp->cycle), date_allowed(dp->cycle));
    }
    return TN_OK;
}

/* What a task's type requires of it. */
/* The syntax of a switch condition, at apply rather than when the task runs: every
 * ${...} and $[...] is read as the value 0 padded to its length (so columns stay those
 * of the text written) and the condition evaluated; only syntax errors and bounds are
 * refused, since the real values decide types. Files only: a stored definition was
 * checked when it was applied, and must keep loading. */
static tn_err check_case_syntax(const vctx *v, const tn_def_task *t, uint32_t i)
{
    const char *w = t->sw.cases[i].when;
    char *x = strdup(w);
    if (!x)
        return TN_ERR_NOMEM;
    for (char *p = x; *p; p++) {
        char close = p[0] == '$' && p[1] == '{' ? '}' : p[0] == '$' && p[1] == '[' ? ']' : 0;
        char *end = close ? strchr(p + 2, close) : NULL;
        if (!end)
            continue;
        memset(p, ' ', (size_t)(end - p) + 1);
        *p = '0';
        p = end;
    }
    bool val;
    tn_errmsg m = {{0}};
    tn_err err = tn_expr_eval(x, &val, &m);
    free(x);
    if (err != TN_ERR_PARSE && err != TN_ERR_TOOBIG)
        return TN_OK;
    return fail_at(&v->e, TN_ERR_PARSE, t->sw.cases[i].line,
                   "bad \"when\" \"%.200s\" in case #%u of switch task \"%s\": %s (write "
                   "comparisons with == != < <= > >=, && || ! and parentheses, e.g. "
                   "\"${rows} > 0\")",
                   w, i + 1, t->name, m.text);
}

static tn_err check_task_type(const vctx *v, const tn_def_task *t)
{
    switch (t->type) {
    case TN_DEF_TASK_SHELL:
        if (!t->command || !t->command[0])
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_COMMAND),
                           "shell task \"%s\" needs a non-empty \"command\"", t->name);
        return TN_OK;
    case TN_DEF_TASK_NOOP: return TN_OK;
    case TN_DEF_TASK_CONDITIONS:
        if (t->cond.n_when == 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_WHEN),
                           "conditions task \"%s\" needs \"when\" with at least one item "
                           "(when: {all: [{task: T, state: success}]})",
                           t->name);
        return TN_OK;
    case TN_DEF_TASK_SWITCH:
        if (t->sw.n_cases == 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_CASES),
                           "switch task \"%s\" needs \"cases\" with at least one case",
                           t->name);
        for (uint32_t i = 0; i < t->sw.n_cases; i++) {
            tn_err err;
            if (!t->sw.cases[i].when || !t->sw.cases[i].when[0])
                return fail_at(&v->e, TN_ERR_PARSE, t->sw.cases[i].line,
                               "case #%u of switch task \"%s\" has an empty \"when\"", i + 1,
                               t->name);
            if (v->e.file && (err = check_case_syntax(v, t, i)) != TN_OK)
                return err;
        }
        return TN_OK;
    case TN_DEF_TASK_DEPENDENT:
        if (t->dep.n_depends == 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_DEPENDS),
                           "dependent task \"%s\" needs \"depends\" with at least one item",
                           t->name);
        if (t->dep.check_interval_ms == 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_CHECK_INTERVAL),
                           "\"check_interval\" of task \"%s\" must be longer than 0", t->name);
        if (t->dep.failure_policy == TN_DEF_FPOLICY_WAIT && t->dep.failure_wait_ms == 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_FAILURE_POLICY),
                           "task \"%s\" has failure_policy wait but no \"failure_wait\": "
                           "say how long to wait (e.g. failure_wait: 1h)",
                           t->name);
        if (t->dep.failure_policy == TN_DEF_FPOLICY_FAIL && t->dep.failure_wait_ms != 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_FAILURE_WAIT),
                           "\"failure_wait\" in task \"%s\" applies only with "
                           "failure_policy: wait",
                           t->name);
        return check_depends(v, t);
    case TN_DEF_TASK_SUB_WORKFLOW:
        /* The task's own line when the key is missing or written empty. */
        if (!t->sub.workflow)
            return fail_at(&v->e, TN_ERR_PARSE, t->line,
                           "sub_workflow task \"%s\" needs \"workflow\": the workflow to run",
                           t->name);
        if (!tn_def_name_valid(t->sub.workflow))
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_WORKFLOW),
                           "bad workflow name in task \"%s\"", t->name);
        if (strcmp(t->sub.workflow, v->d->name) == 0)
            return fail_at(&v->e, TN_ERR_PARSE, key_line(t, TN_DEF_TK_WORKFLOW),
                           "sub_workflow task \"%s\" runs its own workflow \"%s\", which would "
                           "recurse forever",
                           t->name, t->sub.workflow);
        return TN_OK;
    }
    return fail_at(&v->e, TN_ERR_PARSE, t->line, "task \"%s\" has type %s", t->name,
                   tn_def_task_type_name(t->type));
}

static tn_err check_task(const vctx *v, const tn_def_task *t)
{
    tn_err err = check_task_fields(v, t);
    return err ? err : check_task_type(v, t);
}

static int by_name_cmp(const void *a, const void *b, void *arg)
{
    const tn_def *d = arg;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    int r = strcmp(d->tasks[x].name, d->tasks[y].name);
    return r ? r : (x > y) - (x < y);
}

int32_t tn_def_task_find(const tn_def *d, const char *name)
{
    if (!d || !d->by_name || !name)
        return -1;
    uint32_t lo = 0, hi = d->n_tasks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int r = strcmp(d->tasks[d->by_name[mid]].name, name);
        if (r == 0)
            return (int32_t)d->by_name[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Sort tasks by name and refuse a name written twice, citing both places. */
static tn_err index_names(vctx *v)
{
    tn_def *d = v->d;
    uint32_t best = NONE, first = NONE;
    if ((d->by_name = malloc(d->n_tasks * sizeof(*d->by_name))) == NULL)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; i < d->n_tasks; i++)
        d->by_name[i] = i;
    qsort_r(d->by_name, d->n_tasks, sizeof(*d->by_name), by_name_cmp, d);
    /* Several duplicates: report the one whose second copy comes first in the file. */
    for (uint32_t i = 1; i < d->n_tasks; i++) {
        uint32_t a = d->by_name[i - 1], b = d->by_name[i];
        if (strcmp(d->tasks[a].name, d->tasks[b].name) == 0 && (best == NONE || b < best) &&
            (i < 2 || strcmp(d->tasks[d->by_name[i - 2]].name, d->tasks[a].name) != 0)) {
            best = b;
            first = a;
        }
    }
    if (best != NONE)
        return fail_at(&v->e, TN_ERR_PARSE, d->tasks[best].line,
                       "duplicate task name \"%s\" (first defined at line %u)",
                       d->tasks[best].name, d->tasks[first].line);
    return TN_OK;
}

static tn_err resolve(const vctx *v, tn_def_ref *r)
{
    int32_t i = tn_def_task_find(v->d, r->name);
    if (i < 0)
        return TN_ERR_NOENT;
    r->index = (uint32_t)i;
    return TN_OK;
}

/* Deps: each names another task of this workflow, once. */
static tn_err resolve_deps(const vctx *v, uint32_t i)
{
    tn_def_task *t = &v->d->tasks[i];
    for (uint32_t k = 0; k < t->n_deps; k++) {
        tn_def_ref *r = &t->deps[k];
        if (resolve(v, r) != TN_OK)
            return fail_at(&v->e, TN_ERR_PARSE, r->line,
                           "task \"%s\" depends on unknown task \"%s\"", t->name, r->name);
        if (r->index == i)
            return fail_at(&v->e, TN_ERR_PARSE, r->line, "task \"%s\" depends on itself",
                           t->name);
        if (v->mark[r->index] == i + 1)
            return fail_at(&v->e, TN_ERR_PARSE, r->line,
                           "task \"%s\" lists \"%s\" twice in \"deps\"", t->name, r->name);
        v->mark[r->index] = i + 1;
    }
    return TN_OK;
}

static bool has_succ(const tn_def_task *t, uint32_t j)
{
    uint32_t lo = 0, hi = t->n_succ;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->succ[mid] == j)
            return true;
        if (t->succ[mid] < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* A branch target of task i: must exist and be a direct successor of it. */
static tn_err check_target(const vctx *v, uint32_t i, tn_def_ref *r, const char *key)
{
    tn_def_task *t = &v->d->tasks[i];
    if (resolve(v, r) != TN_OK)
        return fail_at(&v->e, TN_ERR_PARSE, r->line,
                       "\"%s\" of task \"%s\" names unknown task \"%s\"", key, t->name,
                       r->name);
    if (r->index == i)
        return fail_at(&v->e, TN_ERR_PARSE, r->line, "task \"%s\" cannot branch to itself",
                       t->name);
    if (!has_succ(t, r->index))
        return fail_at(&v->e, TN_ERR_PARSE, r->line,
                       "\"%s\" of task \"%s\" names \"%s\", which does not list \"%s\" in its "
                       "deps (a branch target must be a direct successor)",
                       key, t->name, r->name, t->name);
    return TN_OK;
}

static tn_err check_refs_unique(const vctx *v, const tn_def_task *t, const tn_def_ref *r,
                                uint32_t n, const char *key)
{
    /* Lists are short in practice; a quadratic check keeps this allocation-free but is
     * bounded by TN_DEF_MAX_LIST. Indices are resolved, so compare those. */
    for (uint32_t a = 1; a < n; a++)
        for (uint32_t b = 0; b < a; b++)
            if (r[a].index == r[b].index)
                return fail_at(&v->e, TN_ERR_PARSE, r[a].line,
                               "task \"%s\" lists \"%s\" twice in \"%s\"", t->name, r[a].name,
                               key);
    return TN_OK;
}

static tn_err check_branches(const vctx *v, uint32_t i)
{
    tn_def_task *t = &v->d->tasks[i];
    tn_err err;

    for (uint32_t k = 0; k < t->n_deps; k++)
        v->mark[t->deps[k].index] = i + 1;
    for (uint32_t k = 0; k < t->cond.n_when; k++) {
        tn_def_ref *r = &t->cond.when[k].task;
        if (resolve(v, r) != TN_OK)
            return fail_at(&v->e, TN_ERR_PARSE, r->line,
                           "\"when\" of task \"%s\" tests unknown task \"%s\"", t->name,
                           r->name);
        if (v->mark[r->index] != i + 1)
            return fail_at(&v->e, TN_ERR_PARSE, r->line,
                           "\"when\" of task \"%s\" tests \"%s\", which is not in its deps "
                           "(a tested task must be upstream: add it to deps)",
                           t->name, r->name);
    }
    for (uint32_t k = 0; k < t->cond.n_on_success; k++)
        if ((err = check_target(v, i, &t->cond.on_success[k], "on_success")))
            return err;
    for (uint32_t k = 0; k < t->cond.n_on_failure; k++)
        if ((err = check_target(v, i, &t->cond.on_failure[k], "on_failure")))
            return err;
    if ((err =
             check_refs_unique(v, t, t->cond.on_success, t->cond.n_on_success, "on_success")) ||
        (err = check_refs_unique(v, t, t->cond.on_failure, t->cond.n_on_failure, "on_failure")))
        return err;
    for (uint32_t k = 0; k < t->sw.n_cases; k++)
        if ((err = check_target(v, i, &t->sw.cases[k].then, "cases")))
            return err;
    if (t->sw.has_default && (err = check_target(v, i, &t->sw.dflt, "default")))
        return err;
    return TN_OK;
}

static tn_err build_succ(const vctx *v)
{
    tn_def *d = v->d;
    uint32_t *count = calloc(d->n_tasks, sizeof(*count));
    if (!count)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; i < d->n_tasks; i++)
        for (uint32_t k = 0; k < d->tasks[i].n_deps; k++)
            count[d->tasks[i].deps[k].index]++;
    for (uint32_t i = 0; i < d->n_tasks; i++) {
        if (count[i] && !(d->tasks[i].succ = malloc(count[i] * sizeof(uint32_t)))) {
            free(count);
            return TN_ERR_NOMEM;
        }
    }
    /* Filling in index order leaves each successor list ascending. */
    for (uint32_t i = 0; i < d->n_tasks; i++)
        for (uint32_t k = 0; k < d->tasks[i].n_deps; k++) {
            tn_def_task *up = &d->tasks[d->tasks[i].deps[k].index];
            up->succ[up->n_succ++] = i;
        }
    free(count);
    return TN_OK;
}

static void heap_push(uint32_t *h, uint32_t *n, uint32_t x)
{
    uint32_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > x) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static uint32_t heap_pop(uint32_t *h, uint32_t *n)
{
    uint32_t top = h[0], x = h[--(*n)], i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= x)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = x;
    return top;
}

/* Tasks left out of the topological order all sit on or below a cycle. Walk up from the
 * first of them through deps that are also left out until a task repeats: that loop is
 * a cycle. Report it in run order (upstream first), starting from its first task in the
 * file. */
static tn_err report_cycle(const vctx *v, const uint32_t *indeg)
{
    const tn_def *d = v->d;
    uint32_t n = d->n_tasks, start = 0, step = 0, at;
    tn_err err = TN_ERR_NOMEM;
    uint32_t *pos = malloc(n * sizeof(*pos)), *path = malloc(n * sizeof(*path));
    if (!pos || !path)
        goto fail;
    for (uint32_t i = 0; i < n; i++)
        pos[i] = NONE;
    while (indeg[start] == 0)
        start++;
    for (at = start; pos[at] == NONE;) {
        pos[at] = step;
        path[step++] = at;
        const tn_def_task *t = &d->tasks[at];
        uint32_t k = 0;
        while (indeg[t->deps[k].index] == 0)
            k++;
        at = t->deps[k].index;
    }
    /* path[pos[at] .. step-1] is the loop, each task a successor of the next one. */
    uint32_t lo = pos[at], len = step - lo, min_k = 0;
    for (uint32_t k = 1; k < len; k++)
        if (path[lo + k] < path[lo + min_k])
            min_k = k;
    char text[400];
    size_t used = 0;
    bool cut = false;
    for (uint32_t k = 0; k <= len && !cut; k++) {
        /* Run order walks the loop backwards from the smallest index. */
        uint32_t t = path[lo + (min_k + len - k % len) % len];
        int w = snprintf(text + used, sizeof(text) - used, "%s%s", k ? " -> " : "",
                         d->tasks[t].name);
        if (w < 0 || (size_t)w >= sizeof(text) - used - 8) {
            snprintf(text + used, sizeof(text) - used, " -> ...");
            cut = true;
        } else {
            used += (size_t)w;
        }
    }
    err = fail_at(&v->e, TN_ERR_PARSE, d->tasks[path[lo + min_k]].line, "cycle: %s", text);
fail:
    free(pos);
    free(path);
    return err;
}

static tn_err build_topo(const vctx *v)
{
    tn_def *d = v->d;
    uint32_t n = d->n_tasks, nh = 0, nt = 0;
    tn_err err = TN_ERR_NOMEM;
    uint32_t *indeg = malloc(n * sizeof(*indeg)), *heap = malloc(n * sizeof(*heap));
    if (!indeg || !heap || !(d->topo = malloc(n * sizeof(*d->topo))))
        goto fail;
    for (uint32_t i = 0; i < n; i++)
        if ((indeg[i] = d->tasks[i].n_deps) == 0)
            heap_push(heap, &nh, i);
    while (nh) {
        uint32_t i = heap_pop(heap, &nh);
        d->topo[nt++] = i;
        for (uint32_t k = 0; k < d->tasks[i].n_succ; k++)
            if (--indeg[d->tasks[i].succ[k]] == 0)
                heap_push(heap, &nh, d->tasks[i].succ[k]);
    }
    err = nt == n ? TN_OK : report_cycle(v, indeg);
    if (err) {
        free(d->topo);
        d->topo = NULL;
    }
fail:
    free(indeg);
    free(heap);
    return err;
}

bool tn_def_tenant_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TN_DEF_MAX_TENANT || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static bool tenant_valid(const char *s)
{
    return tn_def_tenant_valid(s);
}

/* Each alert: known outcomes, and exactly one of a webhook URL and a command. */
static tn_err check_alerts(const ectx *e, tn_def *d)
{
    if (d->n_alerts > TN_DEF_MAX_ALERTS)
        return fail_at(e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_ALERTS],
                       "\"alerts\" has %u items; at most %d", d->n_alerts, TN_DEF_MAX_ALERTS);
    for (uint32_t i = 0; i < d->n_alerts; i++) {
        tn_def_alert *a = &d->alerts[i];
        bool hook = a->webhook && *a->webhook, cmd = a->command && *a->command;
        if (!a->on || !(a->mask = alert_mask(a->on)))
            return fail_at(e, TN_ERR_PARSE, a->line,
                           "alert #%u needs \"on\": a list of failure, timeout, success, "
                           "kill, task_failure",
                           i + 1);
        if (hook == cmd)
            return fail_at(e, TN_ERR_PARSE, a->line,
                           "alert #%u needs exactly one of \"webhook\" (a URL) and "
                           "\"command\"",
                           i + 1);
        if (hook && strncmp(a->webhook, "http://", 7) && strncmp(a->webhook, "https://", 8))
            return fail_at(e, TN_ERR_PARSE, a->line,
                           "alert #%u: webhook \"%.64s\" is not an http:// or https:// URL",
                           i + 1, a->webhook);
        for (const char *p = hook ? a->webhook : a->command; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return fail_at(e, TN_ERR_PARSE, a->line,
                               "alert #%u: a control character in its %s", i + 1,
                               hook ? "webhook" : "command");
    }
    return TN_OK;
}

/* The schedule block, for a parsed and a decoded definition alike: what `tern schedule
 * set` checks, and the forms the encoding is canonical in (a zone always named, whole
 * seconds, params ascending). */
static tn_err check_schedule(const ectx *e, const tn_def *d)
{
    const tn_sched_spec *s = d->schedule;
    uint32_t line = d->key_line[TN_DEF_WK_SCHEDULE];
    tn_errmsg m = {{0}};
    tn_err err;
    if (!s)
        return TN_OK;
    if ((err = tn_sched_spec_validate(s, &m)) != TN_OK)
        return fail_at(e, err == TN_ERR_NOMEM ? err : TN_ERR_PARSE, line,
                       "bad \"schedule\": %s", m.text);
    if (!s->tz[0])
        return fail_at(e, TN_ERR_PARSE, line, "\"schedule\" has no time zone");
    if (s->start_ns % 1000000000 || s->end_ns % 1000000000)
        return fail_at(e, TN_ERR_PARSE, line,
                       "\"schedule\" window bounds must be whole seconds");
    for (uint32_t i = 1; i < s->nparams; i++)
        if (strcmp(s->param_keys[i - 1], s->param_keys[i]) >= 0)
            return fail_at(e, TN_ERR_PARSE, line, "\"schedule\" params are not sorted by key");
    return TN_OK;
}

static tn_err validate(const ectx *e, tn_def *d)
{
    vctx v = {.e = *e, .d = d};
    tn_err err;

    if (!tn_def_name_valid(d->name))
        return fail_at(e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_NAME], "bad workflow name");
    if (!d->description || strlen(d->description) > TN_DEF_MAX_STRING)
        return fail_at(e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_DESCRIPTION], "bad description");
    if (d->timeout_ms > TN_DEF_MAX_DURATION_MS)
        return fail_at(e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_TIMEOUT],
                       "workflow \"timeout\" is longer than 3650d");
    if (d->tenant && !tenant_valid(d->tenant))
        return fail_at(e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_TENANT],
                       "bad tenant \"%.64s\": an OS user name of 1..32 characters "
                       "[A-Za-z0-9._-], not starting with '-'",
                       d->tenant);
    if ((err = check_kvs(&v, &d->params, d->key_line[TN_DEF_WK_PARAMS], "params")) ||
        (err = check_schedule(e, d)) || (err = check_alerts(e, d)))
        return err;
    if (d->n_tasks == 0 || d->n_tasks > TN_DEF_MAX_TASKS)
        return fail_at(e, TN_ERR_PARSE, d->key_line[TN_DEF_WK_TASKS],
                       "workflow \"%s\" must have 1..%u tasks", d->name, TN_DEF_MAX_TASKS);
    for (uint32_t i = 0; i < d->n_tasks; i++)
        if (!tn_def_name_valid(d->tasks[i].name))
            return fail_at(e, TN_ERR_PARSE, d->tasks[i].line, "bad task name \"%.80s\"",
                           d->tasks[i].name ? d->tasks[i].name : "");
    if ((err = index_names(&v)))
        return err;
    if ((v.mark = calloc(d->n_tasks, sizeof(*v.mark))) == NULL)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; i < d->n_tasks; i++) {
        if ((err = check_task(&v, &d->tasks[i])) || (err = resolve_deps(&v, i)))
            goto fail;
    }
    if ((err = build_succ(&v)))
        goto fail;
    for (uint32_t i = 0; i < d->n_tasks; i++)
        if ((err = check_branches(&v, i)))
            goto fail;
    err = build_topo(&v);
fail:
    free(v.mark);
    return err;
}

/* ---- parse entry points ---------------------------------------------------------------- */

tn_err tn_def_parse(const char *filename, const char *buf, size_t len, tn_def **out,
                    tn_errmsg *msg)
{
    pctx c = {.e = {filename ? filename : "<input>", msg}};
    tn_def *d = NULL;
    uint32_t root;
    tn_err err;

    if (!out || (!buf && len))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "tn_def_parse: no input or output");
    if (len > TN_DEF_MAX_FILE)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG,
                             "%s: file is %zu bytes; a definition may be at most %u bytes "
                             "(16 MiB)",
                             c.e.file, len, TN_DEF_MAX_FILE);
    if ((err = tree_build(&c, buf ? buf : "", len, &root)) != TN_OK)
        goto fail;
    err = TN_ERR_NOMEM;
    if ((d = calloc(1, sizeof(*d))) == NULL || def_defaults(d) != TN_OK)
        goto fail;
    if ((err = parse_root(&c, root, d)) != TN_OK)
        goto fail;
    if ((err = validate(&c.e, d)) != TN_OK)
        goto fail;
    tree_fini(&c.t);
    *out = d;
    return TN_OK;
fail:
    if (err == TN_ERR_NOMEM)
        tn_errmsg_set(msg, err, "%s: out of memory", c.e.file);
    tree_fini(&c.t);
    tn_def_free(d);
    return err;
}

tn_err tn_def_parse_file(const char *path, tn_def **out, tn_errmsg *msg)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0, cap;
    tn_err err;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        int e = errno;
        return tn_errmsg_set(msg, tn_err_from_errno(e), "%s: cannot open: %s", path,
                             strerror(e));
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        err =
            tn_errmsg_set(msg, tn_err_from_errno(e), "%s: cannot stat: %s", path, strerror(e));
        goto fail;
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > TN_DEF_MAX_FILE) {
        err = tn_errmsg_set(msg, TN_ERR_TOOBIG,
                            "%s: file is %lld bytes; a definition may be at most %u bytes "
                            "(16 MiB)",
                            path, (long long)st.st_size, TN_DEF_MAX_FILE);
        goto fail;
    }
    /* Room for one byte past the expected end: a file that grows, or a pipe, is read
     * until EOF or until it is known to be over the limit. */
    cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536;
    if ((buf = malloc(cap)) == NULL) {
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (;;) {
        if (len == cap) {
            if (cap > TN_DEF_MAX_FILE) {
                err = tn_errmsg_set(msg, TN_ERR_TOOBIG,
                                    "%s: file is over %u bytes, the limit for a definition",
                                    path, TN_DEF_MAX_FILE);
                goto fail;
            }
            cap = cap * 2 > TN_DEF_MAX_FILE + 1 ? TN_DEF_MAX_FILE + 1 : cap * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                err = tn_errmsg_set(msg, TN_ERR_NOMEM, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            err = tn_errmsg_set(msg, tn_err_from_errno(e), "%s: cannot read: %s", path,
                                strerror(e));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    (void)close(fd);
    fd = -1;
    err = tn_def_parse(path, buf, len, out, msg);
fail:
    if (fd >= 0)
        (void)close(fd);
    free(buf);
    return err;
}

/* ---- free ---------------------------------------------------------------------------------- */

static void kvs_free(tn_def_kvs *kv)
{
    for (uint32_t i = 0; i < kv->n; i++) {
        free(kv->items[i].key);
        free(kv->items[i].value);
    }
    free(kv->items);
}

static void refs_free(tn_def_ref *r, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        free(r[i].name);
    free(r);
}

static void task_fini(tn_def_task *t)
{
    free(t->name);
    refs_free(t->deps, t->n_deps);
    kvs_free(&t->params);
    free(t->worker_group);
    free(t->task_group);
    free(t->environment);
    free(t->command);
    kvs_free(&t->noop.outputs);
    for (uint32_t i = 0; i < t->cond.n_when; i++)
        free(t->cond.when[i].task.name);
    free(t->cond.when);
    refs_free(t->cond.on_success, t->cond.n_on_success);
    refs_free(t->cond.on_failure, t->cond.n_on_failure);
    for (uint32_t i = 0; i < t->sw.n_cases; i++) {
        free(t->sw.cases[i].when);
        free(t->sw.cases[i].then.name);
    }
    free(t->sw.cases);
    free(t->sw.dflt.name);
    for (uint32_t i = 0; i < t->dep.n_depends; i++) {
        free(t->dep.depends[i].workflow);
        free(t->dep.depends[i].task);
        free(t->dep.depends[i].date);
    }
    free(t->dep.depends);
    free(t->sub.workflow);
    free(t->succ);
}

void tn_def_free(tn_def *d)
{
    if (!d)
        return;
    free(d->name);
    free(d->description);
    free(d->tenant);
    tn_sched_spec_fini(d->schedule);
    free(d->schedule);
    for (uint32_t i = 0; i < d->n_alerts; i++) {
        free(d->alerts[i].on);
        free(d->alerts[i].webhook);
        free(d->alerts[i].command);
    }
    free(d->alerts);
    kvs_free(&d->params);
    for (uint32_t i = 0; i < d->n_tasks; i++)
        task_fini(&d->tasks[i]);
    free(d->tasks);
    free(d->topo);
    free(d->by_name);
    free(d);
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* Version 1, all msgpack arrays with fixed positions; enums as their words; durations
 * in ms; absent optional strings as nil; lines are not encoded.
 *
 *   def   = [1, name, description, params, execution, priority, timeout_ms,
 *            timeout_strategy, failure_strategy, [task...], tenant|nil, schedule]
 *            (optional fields trail: without a schedule the array stops after the
 *            tenant, and without a tenant too it has 10 items, as before either existed)
 *   schedule = [cron, tz, start_ns, end_ns, overlap, catchup_ms, pause_on_failure,
 *               priority, failure_strategy, worker_group, params]   ("" = the workflow's)
 *   params, outputs = {key: value, ...}             keys ascending, unique
 *   task  = [name, type, [dep...], enabled, params, retries, retry_interval_ms, timeout_ms,
 *            timeout_strategy, delay_ms, priority, body]
 *   body of shell        = [worker_group, task_group|nil, dispatch_timeout_ms,
 *                           environment|nil, command, kill_grace_ms, memory_max,
 *                           cpu_max_milli, pids_max]
 *           noop         = [worker_group, task_group|nil, dispatch_timeout_ms, result,
 *                           duration_ms, outputs]
 *           conditions   = [mode, [[task, state]...], [on_success...], [on_failure...]]
 *           switch       = [[[when, then]...], default|nil]
 *           dependent    = [relation, [[workflow, task, cycle, date]...],
 *                           check_interval_ms, failure_policy, failure_wait_ms]
 *           sub_workflow = [workflow]
 *
 * Only a type's own body is stored, so fields that do not apply to it cannot carry
 * values. msgpack-c always packs the shortest form, which makes the bytes canonical;
 * the decoder checks that by re-encoding.
 *
 * The layout is the key tables': a definition's keys in the order of
 * TN_DEF_WF_KEY_LIST; a task's keys that every type takes, then its body, the keys only
 * its type takes, each in the order of TN_DEF_TASK_KEY_LIST (the mode of "when" before
 * its list); list items as their item_spec's fields. e_field writes a value and rd_field
 * reads it back by the same field. */

#define DEF_FIELDS   13 /* with tenant, schedule and alerts */
#define SCHED_FIELDS 11
_Static_assert(DEF_FIELDS == TN_DEF_WK__COUNT + 1 && TN_DEF_WK_TENANT == TN_DEF_WK__COUNT - 3 &&
                   TN_DEF_WK_SCHEDULE == TN_DEF_WK__COUNT - 2 &&
                   TN_DEF_WK_ALERTS == TN_DEF_WK__COUNT - 1,
               "the optional fields trail the definition: tenant, schedule, alerts");
#define TASK_FIELDS 12

typedef struct enc {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bool bad;
} enc;

static void e_arr(enc *e, size_t n)
{
    e->bad |= msgpack_pack_array(&e->pk, n) != 0;
}

static void e_map(enc *e, size_t n)
{
    e->bad |= msgpack_pack_map(&e->pk, n) != 0;
}

static void e_uint(enc *e, uint64_t v)
{
    e->bad |= msgpack_pack_uint64(&e->pk, v) != 0;
}

static void e_bool(enc *e, bool v)
{
    e->bad |= (v ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk)) != 0;
}

static void e_str(enc *e, const char *s)
{
    if (!s) {
        e->bad |= msgpack_pack_nil(&e->pk) != 0;
        return;
    }
    size_t n = strlen(s);
    e->bad |= msgpack_pack_str(&e->pk, n) != 0;
    e->bad |= msgpack_pack_str_body(&e->pk, s, n) != 0;
}

static void e_kvs(enc *e, const tn_def_kvs *kv)
{
    e_map(e, kv->n);
    for (uint32_t i = 0; i < kv->n; i++) {
        e_str(e, kv->items[i].key);
        e_str(e, kv->items[i].value);
    }
}

static void e_refs(enc *e, const tn_def_ref *r, uint32_t n)
{
    e_arr(e, n);
    for (uint32_t i = 0; i < n; i++)
        e_str(e, r[i].name);
}

/* Task keys every type takes are the task's own fields; the keys of its type only are
 * its body. */
static bool in_body(const field *f, tn_def_task_type type)
{
    return f->types != T_ALL && (f->types >> type & 1u);
}

/* Values in a type's body: one per key, and the mode of "when" before its list. */
static uint32_t body_len(tn_def_task_type type)
{
    uint32_t n = 0;
    for (size_t k = 0; k < TN_DEF_TK__COUNT; k++)
        if (in_body(&task_fields[k], type))
            n += 1 + (task_fields[k].items && task_fields[k].items->head);
    return n;
}

static void e_task(enc *e, const tn_def_task *t);
static void e_items(enc *e, const item_spec *s, const void *base);

static void e_sched(enc *e, const tn_sched_spec *s)
{
    if (!s) {
        e_str(e, NULL);
        return;
    }
    e_arr(e, SCHED_FIELDS);
    e_str(e, s->cron);
    e_str(e, s->tz);
    e_uint(e, (uint64_t)s->start_ns);
    e_uint(e, (uint64_t)s->end_ns);
    e_str(e, tn_overlap_name(s->overlap));
    e_uint(e, (uint64_t)s->catchup_ms);
    e_bool(e, s->pause_on_failure);
    e_str(e, s->priority);
    e_str(e, s->failure_strategy);
    e_str(e, s->worker_group);
    e_map(e, s->nparams);
    for (uint32_t i = 0; i < s->nparams; i++) {
        e_str(e, s->param_keys[i]);
        e_str(e, s->param_values[i]);
    }
}

static void e_field(enc *e, const field *f, const void *base)
{
    const char *p = (const char *)base + f->off;
    switch ((vkind)f->kind) {
    case V_STR:
    case V_NAME: e_str(e, *(char *const *)p); break;
    case V_REF: e_str(e, ((const tn_def_ref *)p)->name); break;
    case V_ENUM: e_str(e, word_of(f->ed->words, f->ed->n, *(const unsigned *)p)); break;
    case V_BOOL: e_bool(e, *(const bool *)p); break;
    case V_COUNT: e_uint(e, *(const uint32_t *)p); break;
    case V_DURATION:
    case V_SIZE:
    case V_CPU: e_uint(e, *(const uint64_t *)p); break;
    case V_KVS: e_kvs(e, (const tn_def_kvs *)p); break;
    case V_REFS:
        e_refs(e, *(tn_def_ref *const *)p, *(const uint32_t *)((const char *)base + f->n_off));
        break;
    case V_ITEMS: e_items(e, f->items, base); break;
    case V_SCHED: e_sched(e, *(tn_sched_spec *const *)p); break;
    case V_TASKS: {
        const tn_def *d = base;
        e_arr(e, d->n_tasks);
        for (uint32_t i = 0; i < d->n_tasks; i++)
            e_task(e, &d->tasks[i]);
        break;
    }
    }
}

static void e_items(enc *e, const item_spec *s, const void *base)
{
    const char *list;
    uint32_t n = *(const uint32_t *)((const char *)base + s->n_off);
    memcpy(&list, (const char *)base + s->list_off, sizeof(list));
    if (s->head)
        e_field(e, s->head, base);
    e_arr(e, n);
    for (uint32_t i = 0; i < n; i++) {
        e_arr(e, s->n);
        for (uint32_t j = 0; j < s->n; j++)
            e_field(e, &s->fields[j], list + (size_t)i * s->size);
    }
}

static void e_task(enc *e, const tn_def_task *t)
{
    if ((unsigned)t->type >= TN_ARRAY_LEN(task_type_words)) {
        e->bad = true;
        return;
    }
    e_arr(e, TASK_FIELDS);
    for (size_t k = 0; k < TN_DEF_TK__COUNT; k++)
        if (task_fields[k].types == T_ALL)
            e_field(e, &task_fields[k], t);
    e_arr(e, body_len(t->type));
    for (size_t k = 0; k < TN_DEF_TK__COUNT; k++)
        if (in_body(&task_fields[k], t->type))
            e_field(e, &task_fields[k], t);
}

tn_err tn_def_encode(const tn_def *d, char **out, size_t *len)
{
    enc e = {.bad = false};

    if (!d || !out || !len || !d->topo || !d->name)
        return TN_ERR_INVAL;
    msgpack_sbuffer_init(&e.sb);
    msgpack_packer_init(&e.pk, &e.sb, msgpack_sbuffer_write);
    /* the tenant and the schedule, last, only when set: definitions without them keep
     * the encoding they had before the keys existed */
    size_t n = d->n_alerts ? DEF_FIELDS :
               d->schedule ? DEF_FIELDS - 1 :
               d->tenant   ? DEF_FIELDS - 2 :
                             DEF_FIELDS - 3;
    e_arr(&e, n);
    e_uint(&e, TN_DEF_FORMAT_VERSION);
    for (size_t k = 0; k + 1 < n; k++)
        e_field(&e, &wf_fields[k], d);
    if (e.bad) {
        msgpack_sbuffer_destroy(&e.sb);
        return TN_ERR_NOMEM;
    }
    *out = e.sb.data;
    *len = e.sb.size;
    return TN_OK;
}

/* ---- decoding ------------------------------------------------------------------------------ */

/* A reader over the bytes themselves rather than msgpack_unpack: the unpacker allocates
 * what a length prefix claims before it sees the data, so four flipped bytes could ask
 * for gigabytes. Here every count is checked against its limit and against the bytes
 * left (an element takes at least one byte) before anything is allocated. The first
 * failure sticks; later reads then fail at once. */
typedef struct rd {
    const uint8_t *p, *start, *end;
    tn_err err;
    tn_errmsg *msg;
} rd;

static bool rd_fail(rd *r, tn_err err, const char *what)
{
    static const char *const how[TN_ERR__COUNT] = {
        [TN_ERR_TRUNCATED] = "input ends",       [TN_ERR_TYPE] = "wrong type",
        [TN_ERR_TOOBIG] = "over its size limit", [TN_ERR_CORRUPT] = "bad value",
        [TN_ERR_NOMEM] = "out of memory",
    };
    if (r->err == TN_OK) {
        r->err = err;
        tn_errmsg_set(r->msg, err, "stored definition: %s at byte %zu, reading %s",
                      how[err] ? how[err] : "error", (size_t)(r->p - r->start), what);
    }
    return false;
}

static bool rd_need(rd *r, size_t n, const char *what)
{
    if (r->err)
        return false;
    if ((size_t)(r->end - r->p) < n)
        return rd_fail(r, TN_ERR_TRUNCATED, what);
    return true;
}

static uint64_t rd_be(rd *r, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | *r->p++;
    return v;
}

static bool rd_uint(rd *r, const char *what, uint64_t *v)
{
    static const size_t width[] = {1, 2, 4, 8};
    *v = 0;
    if (!rd_need(r, 1, what))
        return false;
    uint8_t b = *r->p;
    if (b <= 0x7f) {
        r->p++;
        *v = b;
        return true;
    }
    if (b < 0xcc || b > 0xcf)
        return rd_fail(r, TN_ERR_TYPE, what);
    if (!rd_need(r, 1 + width[b - 0xcc], what))
        return false;
    r->p++;
    *v = rd_be(r, width[b - 0xcc]);
    return true;
}

/* An array or map header (the count of items, or of pairs), at most `max`. */
static bool rd_count(rd *r, bool map, const char *what, uint32_t max, uint32_t *n)
{
    uint8_t fix = map ? 0x80 : 0x90, b16 = map ? 0xde : 0xdc;
    uint64_t v;
    *n = 0;
    if (!rd_need(r, 1, what))
        return false;
    uint8_t b = *r->p;
    if ((b & 0xf0) == fix) {
        r->p++;
        v = b & 0x0f;
    } else if (b == b16 || b == b16 + 1) {
        size_t w = b == b16 ? 2 : 4;
        if (!rd_need(r, 1 + w, what))
            return false;
        r->p++;
        v = rd_be(r, w);
    } else {
        return rd_fail(r, TN_ERR_TYPE, what);
    }
    if (v > max)
        return rd_fail(r, TN_ERR_TOOBIG, what);
    if (v * (map ? 2 : 1) > (uint64_t)(r->end - r->p))
        return rd_fail(r, TN_ERR_TRUNCATED, what);
    *n = (uint32_t)v;
    return true;
}

static bool rd_arr(rd *r, const char *what, uint32_t max, uint32_t *n)
{
    return rd_count(r, false, what, max, n);
}

/* An array of exactly n items. */
static bool rd_tuple(rd *r, const char *what, uint32_t n)
{
    uint32_t got;
    if (!rd_count(r, false, what, 255, &got))
        return false;
    return got == n || rd_fail(r, TN_ERR_TYPE, what);
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t len;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2, cp = b & 0x1f, min = 0x80;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3, cp = b & 0x0f, min = 0x800;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* A string of at most `max` bytes, or nil when `nil_ok` (then *out stays NULL). Replaces
 * *out. Strings hold no NUL and are valid UTF-8, as parsed YAML always is. */
static bool rd_str(rd *r, const char *what, size_t max, bool nil_ok, char **out)
{
    size_t n;
    if (!rd_need(r, 1, what))
        return false;
    uint8_t b = *r->p;
    if (b == 0xc0 && nil_ok) {
        r->p++;
        free(*out);
        *out = NULL;
        return true;
    }
    if ((b & 0xe0) == 0xa0) {
        r->p++;
        n = b & 0x1f;
    } else if (b >= 0xd9 && b <= 0xdb) {
        size_t w = (size_t)1 << (b - 0xd9);
        if (!rd_need(r, 1 + w, what))
            return false;
        r->p++;
        n = (size_t)rd_be(r, w);
    } else {
        return rd_fail(r, TN_ERR_TYPE, what);
    }
    if (n > max)
        return rd_fail(r, TN_ERR_TOOBIG, what);
    if (!rd_need(r, n, what))
        return false;
    if (memchr(r->p, '\0', n) || !utf8_valid(r->p, n))
        return rd_fail(r, TN_ERR_CORRUPT, what);
    char *s = malloc(n + 1);
    if (!s)
        return rd_fail(r, TN_ERR_NOMEM, what);
    memcpy(s, r->p, n);
    s[n] = '\0';
    r->p += n;
    free(*out);
    *out = s;
    return true;
}

static bool rd_bool(rd *r, const char *what, bool *v)
{
    if (!rd_need(r, 1, what))
        return false;
    if (*r->p != 0xc2 && *r->p != 0xc3)
        return rd_fail(r, TN_ERR_TYPE, what);
    *v = *r->p++ == 0xc3;
    return true;
}

static bool rd_enum_word(rd *r, const char *what, const enum_desc *ed, unsigned *v)
{
    char *s = NULL;
    if (!rd_str(r, what, TN_DEF_MAX_NAME, false, &s))
        return false;
    int i = word_find(ed->words, ed->n, s);
    free(s);
    if (i < 0)
        return rd_fail(r, TN_ERR_CORRUPT, what);
    *v = (unsigned)i;
    return true;
}

static bool rd_kvs(rd *r, const char *what, tn_def_kvs *kv)
{
    uint32_t n;
    if (!rd_count(r, true, what, TN_DEF_MAX_PARAMS, &n) || n == 0)
        return r->err == TN_OK;
    if (!(kv->items = calloc(n, sizeof(*kv->items))))
        return rd_fail(r, TN_ERR_NOMEM, what);
    kv->n = n;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_str(r, what, TN_DEF_MAX_NAME, false, &kv->items[i].key) ||
            !rd_str(r, what, TN_DEF_MAX_STRING, false, &kv->items[i].value))
            return false;
    return true;
}

static bool rd_refs(rd *r, const char *what, tn_def_ref **refs, uint32_t *n_out)
{
    uint32_t n;
    if (!rd_arr(r, what, TN_DEF_MAX_LIST, &n) || n == 0)
        return r->err == TN_OK;
    if (!(*refs = calloc(n, sizeof(**refs))))
        return rd_fail(r, TN_ERR_NOMEM, what);
    *n_out = n;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_str(r, what, TN_DEF_MAX_NAME, false, &(*refs)[i].name))
            return false;
    return true;
}

static bool rd_u32(rd *r, const char *what, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!rd_uint(r, what, &v))
        return false;
    if (v > max)
        return rd_fail(r, TN_ERR_CORRUPT, what);
    *out = (uint32_t)v;
    return true;
}

static bool rd_items(rd *r, const item_spec *s, const char *what, void *base);
static bool rd_tasks(rd *r, const char *what, tn_def *d);
static bool rd_sched(rd *r, tn_def *d);

/* One value as e_field wrote it; `word` names it in messages unless the field has its
 * own name for that. */
static bool rd_field(rd *r, const field *f, const char *word, void *base)
{
    const char *what = f->what ? f->what : word;
    char *p = (char *)base + f->off;
    switch ((vkind)f->kind) {
    case V_STR: return rd_str(r, what, f->max, f->nil_ok, (char **)p);
    case V_NAME: return rd_str(r, what, TN_DEF_MAX_NAME, f->nil_ok, (char **)p);
    case V_REF: return rd_str(r, what, TN_DEF_MAX_NAME, f->nil_ok, &((tn_def_ref *)p)->name);
    case V_ENUM: return rd_enum_word(r, what, f->ed, (unsigned *)p);
    case V_BOOL: return rd_bool(r, what, (bool *)p);
    case V_COUNT: return rd_u32(r, what, f->max, (uint32_t *)p);
    case V_DURATION:
    case V_SIZE:
    case V_CPU: return rd_uint(r, what, (uint64_t *)p);
    case V_KVS: return rd_kvs(r, what, (tn_def_kvs *)p);
    case V_REFS:
        return rd_refs(r, what, (tn_def_ref **)p, (uint32_t *)((char *)base + f->n_off));
    case V_ITEMS: return rd_items(r, f->items, what, base);
    case V_TASKS: return rd_tasks(r, what, base);
    case V_SCHED: return rd_sched(r, base);
    }
    return rd_fail(r, TN_ERR_CORRUPT, what);
}

static bool rd_items(rd *r, const item_spec *s, const char *what, void *base)
{
    uint32_t n;
    char *list = NULL;
    if ((s->head && !rd_field(r, s->head, what, base)) || !rd_arr(r, what, TN_DEF_MAX_LIST, &n))
        return false;
    if (n && !(list = calloc(n, s->size)))
        return rd_fail(r, TN_ERR_NOMEM, what);
    memcpy((char *)base + s->list_off, &list, sizeof(list));
    *(uint32_t *)((char *)base + s->n_off) = n;
    for (uint32_t i = 0; i < n; i++) {
        if (!rd_tuple(r, s->tuple, s->n))
            return false;
        for (uint32_t j = 0; j < s->n; j++)
            if (!rd_field(r, &s->fields[j], s->words[j], list + (size_t)i * s->size))
                return false;
    }
    return true;
}

static bool rd_task(rd *r, tn_def_task *t)
{
    char what[32];
    if (task_defaults(t) != TN_OK)
        return rd_fail(r, TN_ERR_NOMEM, "task");
    if (!rd_tuple(r, "task", TASK_FIELDS))
        return false;
    for (size_t k = 0; k < TN_DEF_TK__COUNT; k++)
        if (task_fields[k].types == T_ALL &&
            !rd_field(r, &task_fields[k], task_key_words[k], t))
            return false;
    snprintf(what, sizeof(what), "%s task", task_type_words[t->type]);
    if (!rd_tuple(r, what, body_len(t->type)))
        return false;
    for (size_t k = 0; k < TN_DEF_TK__COUNT; k++)
        if (in_body(&task_fields[k], t->type) &&
            !rd_field(r, &task_fields[k], task_key_words[k], t))
            return false;
    t->sw.has_default = t->sw.dflt.name != NULL;
    return true;
}

static bool rd_tasks(rd *r, const char *what, tn_def *d)
{
    uint32_t n;
    if (!rd_arr(r, what, TN_DEF_MAX_TASKS, &n))
        return false;
    if (n && !(d->tasks = calloc(n, sizeof(*d->tasks))))
        return rd_fail(r, TN_ERR_NOMEM, what);
    d->n_tasks = n;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_task(r, &d->tasks[i]))
            return false;
    return true;
}

/* A string into a fixed buffer of `cap` bytes (NUL included). */
static bool rd_fixed(rd *r, const char *what, char *buf, size_t cap)
{
    char *s = NULL;
    if (!rd_str(r, what, cap - 1, false, &s))
        return false;
    memcpy(buf, s, strlen(s) + 1);
    free(s);
    return true;
}

static bool rd_i64(rd *r, const char *what, int64_t *v)
{
    uint64_t u;
    if (!rd_uint(r, what, &u))
        return false;
    if (u > (uint64_t)INT64_MAX)
        return rd_fail(r, TN_ERR_CORRUPT, what);
    *v = (int64_t)u;
    return true;
}

static bool rd_sched_params(rd *r, tn_sched_spec *s)
{
    uint32_t n;
    const char *what = "schedule params";
    if (!rd_count(r, true, what, TN_SCHED_MAX_PARAMS, &n) || n == 0)
        return r->err == TN_OK;
    s->param_keys = calloc(n, sizeof(*s->param_keys));
    s->param_values = calloc(n, sizeof(*s->param_values));
    if (!s->param_keys || !s->param_values)
        return rd_fail(r, TN_ERR_NOMEM, what);
    s->nparams = n;
    for (uint32_t i = 0; i < n; i++)
        if (!rd_str(r, what, TN_DEF_PARAM_KEY_MAX, false, &s->param_keys[i]) ||
            !rd_str(r, what, TN_SCHED_PARAM_MAX, false, &s->param_values[i]))
            return false;
    return true;
}

/* The schedule as e_sched wrote it; validation checks the values. */
static bool rd_sched(rd *r, tn_def *d)
{
    char overlap[32];
    if (r->p < r->end && *r->p == 0xc0) { /* nil: no schedule, before alerts */
        r->p++;
        return true;
    }
    tn_sched_spec *s = malloc(sizeof(*s));
    if (!s)
        return rd_fail(r, TN_ERR_NOMEM, "schedule");
    tn_sched_spec_init(s);
    d->schedule = s;
    if (!rd_tuple(r, "schedule", SCHED_FIELDS) ||
        !rd_fixed(r, "schedule cron", s->cron, sizeof(s->cron)) ||
        !rd_fixed(r, "schedule timezone", s->tz, sizeof(s->tz)) ||
        !rd_i64(r, "schedule start", &s->start_ns) || !rd_i64(r, "schedule end", &s->end_ns) ||
        !rd_fixed(r, "schedule overlap", overlap, sizeof(overlap)))
        return false;
    if (tn_overlap_parse(overlap, &s->overlap) != TN_OK)
        return rd_fail(r, TN_ERR_CORRUPT, "schedule overlap");
    return rd_i64(r, "schedule catchup", &s->catchup_ms) &&
           rd_bool(r, "schedule pause_on_failure", &s->pause_on_failure) &&
           rd_fixed(r, "schedule priority", s->priority, sizeof(s->priority)) &&
           rd_fixed(r, "schedule failure_strategy", s->failure_strategy,
                    sizeof(s->failure_strategy)) &&
           rd_fixed(r, "schedule worker_group", s->worker_group, sizeof(s->worker_group)) &&
           rd_sched_params(r, s);
}

static bool rd_def(rd *r, tn_def *d)
{
    uint32_t n;
    uint64_t version;
    if (!rd_arr(r, "definition", 255, &n))
        return false;
    if (n < 1)
        return rd_fail(r, TN_ERR_TYPE, "definition");
    if (!rd_uint(r, "format version", &version))
        return false;
    if (version != TN_DEF_FORMAT_VERSION) {
        r->err = TN_ERR_VERSION;
        tn_errmsg_set(r->msg, TN_ERR_VERSION,
                      "stored definition has format version %llu; this tern reads version %d: "
                      "use a matching tern or apply the YAML again",
                      (unsigned long long)version, TN_DEF_FORMAT_VERSION);
        return false;
    }
    /* without a schedule one less, without a tenant either two less (see the encoder) */
    if (n > DEF_FIELDS || n < DEF_FIELDS - 3)
        return rd_fail(r, TN_ERR_TYPE, "definition");
    for (size_t k = 0; k + 1 < n; k++)
        if (!rd_field(r, &wf_fields[k], wf_key_words[k], d))
            return false;
    return true;
}

tn_err tn_def_decode(const void *buf, size_t len, tn_def **out, tn_errmsg *msg)
{
    ectx e = {NULL, msg};
    rd r = {.p = buf, .start = buf, .end = (const uint8_t *)buf + len, .msg = msg};
    tn_def *d = NULL;
    char *again = NULL;
    size_t again_len;
    tn_err err;

    if (!out || (!buf && len))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "tn_def_decode: no input or output");
    if (len > TN_DEF_MAX_ENCODED)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG,
                             "stored definition: %zu bytes is over the "
                             "%u-byte limit",
                             len, TN_DEF_MAX_ENCODED);
    if (!buf)
        r.p = r.start = r.end = (const uint8_t *)"";
    if (!(d = calloc(1, sizeof(*d)))) {
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "stored definition: out of memory");
        goto fail;
    }
    if (!rd_def(&r, d)) {
        err = r.err;
        goto fail;
    }
    if (r.p != r.end) {
        err = tn_errmsg_set(msg, TN_ERR_CORRUPT, "stored definition: %zu bytes after the end",
                            (size_t)(r.end - r.p));
        goto fail;
    }
    if ((err = validate(&e, d)) != TN_OK) {
        if (err == TN_ERR_NOMEM)
            tn_errmsg_set(msg, err, "stored definition: out of memory");
        else
            err = TN_ERR_CORRUPT;
        goto fail;
    }
    if ((err = tn_def_encode(d, &again, &again_len)) != TN_OK) {
        tn_errmsg_set(msg, err, "stored definition: cannot re-encode: %s", tn_strerror(err));
        goto fail;
    }
    if (again_len != len || memcmp(again, buf, len) != 0) {
        err = tn_errmsg_set(msg, TN_ERR_CORRUPT,
                            "stored definition: not in canonical form (was it written by "
                            "another encoder?)");
        goto fail;
    }
    free(again);
    *out = d;
    return TN_OK;
fail:
    free(again);
    tn_def_free(d);
    return err;
}

/* ---- YAML output --------------------------------------------------------------------------- */

/* The definition as the YAML a user would write, through libyaml's emitter: every key
 * whose value differs from its default, from the same tables the reader uses, so the
 * output parses back to the same canonical encoding. Multi-line strings are literal
 * blocks; strings the reader would take for null are quoted. */

typedef struct yout {
    yaml_emitter_t em;
    char *buf;
    size_t len, cap;
    bool bad;
} yout;

static int y_write(void *arg, unsigned char *p, size_t n)
{
    yout *y = arg;
    if (y->len + n + 1 > y->cap) {
        size_t cap = (y->len + n + 1) * 2;
        char *b = realloc(y->buf, cap);
        if (!b)
            return 0;
        y->buf = b;
        y->cap = cap;
    }
    memcpy(y->buf + y->len, p, n);
    y->len += n;
    y->buf[y->len] = '\0';
    return 1;
}

static void y_emit(yout *y, yaml_event_t *ev, int ok)
{
    if (!ok || y->bad || !yaml_emitter_emit(&y->em, ev))
        y->bad = true;
}

static void y_str(yout *y, const char *s)
{
    yaml_event_t ev;
    size_t n = strlen(s);
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    if (n == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL"))
        style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    else if (strchr(s, '\n'))
        style = YAML_LITERAL_SCALAR_STYLE;
    y_emit(
        y, &ev,
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style));
}

static void y_fmt(yout *y, const char *fmt, uint64_t v)
{
    char b[32];
    snprintf(b, sizeof(b), fmt, v);
    y_str(y, b);
}

static void y_coll(yout *y, bool map, bool flow)
{
    yaml_event_t ev;
    if (map)
        y_emit(y, &ev,
               yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                                   flow ? YAML_FLOW_MAPPING_STYLE :
                                                          YAML_BLOCK_MAPPING_STYLE));
    else
        y_emit(y, &ev,
               yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                                    flow ? YAML_FLOW_SEQUENCE_STYLE :
                                                           YAML_BLOCK_SEQUENCE_STYLE));
}

static void y_end(yout *y, bool map)
{
    yaml_event_t ev;
    if (map)
        y_emit(y, &ev, yaml_mapping_end_event_initialize(&ev));
    else
        y_emit(y, &ev, yaml_sequence_end_event_initialize(&ev));
}

static void y_size(yout *y, uint64_t v)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (u < 3 && v && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    char b[32];
    snprintf(b, sizeof(b), u < 0 ? "%" PRIu64 : "%" PRIu64 "%c", v, u < 0 ? 0 : units[u]);
    y_str(y, b);
}

static void y_cpu(yout *y, uint64_t milli)
{
    char b[40];
    int n = snprintf(b, sizeof(b), "%" PRIu64 ".%03u", milli / 1000, (unsigned)(milli % 1000));
    while (n > 0 && b[n - 1] == '0')
        b[--n] = '\0';
    if (n > 0 && b[n - 1] == '.')
        b[--n] = '\0';
    y_str(y, b);
}

static bool str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Whether the value of f in base equals that in dflt (a struct holding the defaults). */
static bool is_default(const field *f, const void *base, const void *dflt)
{
    const char *p = (const char *)base + f->off, *q = (const char *)dflt + f->off;
    switch ((vkind)f->kind) {
    case V_STR:
    case V_NAME: return str_same(*(char *const *)p, *(char *const *)q);
    case V_REF: return ((const tn_def_ref *)p)->name == NULL;
    case V_ENUM: return *(const unsigned *)p == *(const unsigned *)q;
    case V_BOOL: return *(const bool *)p == *(const bool *)q;
    case V_COUNT: return *(const uint32_t *)p == *(const uint32_t *)q;
    case V_DURATION:
    case V_SIZE:
    case V_CPU: return *(const uint64_t *)p == *(const uint64_t *)q;
    case V_KVS: return ((const tn_def_kvs *)p)->n == 0;
    case V_REFS: return *(const uint32_t *)((const char *)base + f->n_off) == 0;
    case V_ITEMS: return *(const uint32_t *)((const char *)base + f->items->n_off) == 0;
    case V_SCHED: return *(tn_sched_spec *const *)p == NULL;
    case V_TASKS: return false;
    }
    return false;
}

/* A window bound as the civil time in the schedule's zone when that reads back to the
 * same instant (always, but for the second pass of a repeated hour), else in UTC. */
static void y_time(yout *y, int64_t ns, const char *zone)
{
    char b[48];
    tn_civil c;
    tn_tz *tz = NULL;
    int64_t back = 0;
    if (tn_tz_open(zone, &tz, NULL) == TN_OK && tn_tz_to_civil(tz, ns, &c) == TN_OK) {
        snprintf(b, sizeof(b), "%04d-%02d-%02d %02d:%02d:%02d", c.year, c.month, c.day, c.hour,
                 c.minute, c.second);
        if (tn_sched_parse_time(b, zone, &back, NULL) == TN_OK && back == ns) {
            tn_tz_free(tz);
            y_str(y, b);
            return;
        }
    }
    tn_tz_free(tz);
    tn_civil_from_seconds(ns / 1000000000, &c);
    snprintf(b, sizeof(b), "%04d-%02d-%02dT%02d:%02d:%02dZ", c.year, c.month, c.day, c.hour,
             c.minute, c.second);
    y_str(y, b);
}

static void y_key_str(yout *y, const char *key, const char *value)
{
    y_str(y, key);
    y_str(y, value);
}

/* The schedule block: cron always, every other key that differs from its default. */
static void y_sched(yout *y, const tn_sched_spec *s)
{
    char b[32];
    y_coll(y, true, false);
    y_key_str(y, "cron", s->cron);
    if (strcmp(s->tz, "UTC") != 0)
        y_key_str(y, "timezone", s->tz);
    if (s->start_ns) {
        y_str(y, "start");
        y_time(y, s->start_ns, s->tz);
    }
    if (s->end_ns) {
        y_str(y, "end");
        y_time(y, s->end_ns, s->tz);
    }
    if (s->overlap != TN_OVERLAP_ALLOW_ALL)
        y_key_str(y, "overlap", tn_overlap_name(s->overlap));
    if (s->catchup_ms != TN_SCHED_DEFAULT_CATCHUP_MS) {
        tn_format_duration((uint64_t)s->catchup_ms, b, sizeof(b));
        y_key_str(y, "catchup", b);
    }
    if (s->pause_on_failure)
        y_key_str(y, "pause_on_failure", "true");
    if (s->priority[0])
        y_key_str(y, "priority", s->priority);
    if (s->failure_strategy[0])
        y_key_str(y, "failure_strategy", s->failure_strategy);
    if (s->worker_group[0])
        y_key_str(y, "worker_group", s->worker_group);
    if (s->nparams) {
        y_str(y, "params");
        y_coll(y, true, false);
        for (uint32_t i = 0; i < s->nparams; i++)
            y_key_str(y, s->param_keys[i], s->param_values[i]);
        y_end(y, true);
    }
    y_end(y, true);
}

static void y_task(yout *y, const tn_def_task *t, const tn_def_task *dflt);
static void y_items(yout *y, const item_spec *s, const void *base);

static void y_value(yout *y, const field *f, const void *base, const tn_def_task *dflt_task)
{
    const char *p = (const char *)base + f->off;
    char b[32];
    switch ((vkind)f->kind) {
    case V_STR:
    case V_NAME: y_str(y, *(char *const *)p ? *(char *const *)p : ""); break;
    case V_REF: y_str(y, ((const tn_def_ref *)p)->name); break;
    case V_ENUM: y_str(y, word_of(f->ed->words, f->ed->n, *(const unsigned *)p)); break;
    case V_BOOL: y_str(y, *(const bool *)p ? "true" : "false"); break;
    case V_COUNT: y_fmt(y, "%" PRIu64, *(const uint32_t *)p); break;
    case V_DURATION:
        tn_format_duration(*(const uint64_t *)p, b, sizeof(b));
        y_str(y, b);
        break;
    case V_SIZE: y_size(y, *(const uint64_t *)p); break;
    case V_CPU: y_cpu(y, *(const uint64_t *)p); break;
    case V_KVS: {
        const tn_def_kvs *kv = (const tn_def_kvs *)p;
        y_coll(y, true, false);
        for (uint32_t i = 0; i < kv->n; i++) {
            y_str(y, kv->items[i].key);
            y_str(y, kv->items[i].value);
        }
        y_end(y, true);
        break;
    }
    case V_REFS: {
        const tn_def_ref *r = *(tn_def_ref *const *)p;
        uint32_t n = *(const uint32_t *)((const char *)base + f->n_off);
        y_coll(y, false, true);
        for (uint32_t i = 0; i < n; i++)
            y_str(y, r[i].name);
        y_end(y, false);
        break;
    }
    case V_ITEMS: y_items(y, f->items, base); break;
    case V_SCHED: y_sched(y, *(tn_sched_spec *const *)p); break;
    case V_TASKS: {
        const tn_def *d = base;
        y_coll(y, false, false);
        for (uint32_t i = 0; i < d->n_tasks; i++)
            y_task(y, &d->tasks[i], dflt_task);
        y_end(y, false);
        break;
    }
    }
}

/* A list of mappings; "when" is {all|any: [items]}, its mode the key. */
static void y_items(yout *y, const item_spec *s, const void *base)
{
    const char *list;
    uint32_t n = *(const uint32_t *)((const char *)base + s->n_off);
    memcpy(&list, (const char *)base + s->list_off, sizeof(list));
    if (s->head) {
        y_coll(y, true, false);
        y_value(y, s->head, base, NULL);
    }
    y_coll(y, false, false);
    for (uint32_t i = 0; i < n; i++) {
        y_coll(y, true, true);
        for (uint32_t j = 0; j < s->n; j++) {
            const field *f = &s->fields[j];
            const char *item = list + (size_t)i * s->size;
            if (f->nil_ok && f->kind == V_STR && !*(char *const *)(item + f->off))
                continue; /* an absent optional string (an alert's other target) */
            y_str(y, s->words[j]);
            y_value(y, f, item, NULL);
        }
        y_end(y, true);
    }
    y_end(y, false);
    if (s->head)
        y_end(y, true);
}

static void y_task(yout *y, const tn_def_task *t, const tn_def_task *dflt)
{
    y_coll(y, true, false);
    for (size_t k = 0; k < TN_DEF_TK__COUNT; k++) {
        const field *f = &task_fields[k];
        bool always = k == TN_DEF_TK_NAME || k == TN_DEF_TK_TYPE;
        if (!tn_def_task_key_applies((tn_def_task_key)k, t->type) ||
            (!always && is_default(f, t, dflt)))
            continue;
        if (k == TN_DEF_TK_DEFAULT && !t->sw.has_default)
            continue;
        y_str(y, task_key_words[k]);
        y_value(y, f, t, dflt);
    }
    y_end(y, true);
}

static void y_def(yout *y, const tn_def *d, const tn_def *dflt, const tn_def_task *dflt_task)
{
    yaml_event_t ev;
    y_emit(y, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING));
    y_emit(y, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1));
    y_coll(y, true, false);
    for (size_t k = 0; k < TN_DEF_WK__COUNT; k++) {
        if (k != TN_DEF_WK_NAME && k != TN_DEF_WK_TASKS && is_default(&wf_fields[k], d, dflt))
            continue;
        y_str(y, wf_key_words[k]);
        y_value(y, &wf_fields[k], d, dflt_task);
    }
    y_end(y, true);
    y_emit(y, &ev, yaml_document_end_event_initialize(&ev, 1));
    y_emit(y, &ev, yaml_stream_end_event_initialize(&ev));
}

tn_err tn_def_to_yaml(const tn_def *d, char **out, size_t *len)
{
    if (!d || !out || !len || !d->name)
        return TN_ERR_INVAL;
    tn_def dflt = {0};
    tn_def_task dflt_task = {0};
    tn_err err = def_defaults(&dflt);
    if (err == TN_OK)
        err = task_defaults(&dflt_task);
    yout y = {.bad = false};
    if (err == TN_OK && !yaml_emitter_initialize(&y.em))
        err = TN_ERR_NOMEM;
    if (err == TN_OK) {
        yaml_emitter_set_output(&y.em, y_write, &y);
        yaml_emitter_set_unicode(&y.em, 1);
        yaml_emitter_set_width(&y.em, -1);
        yaml_emitter_set_indent(&y.em, 2);
        y_def(&y, d, &dflt, &dflt_task);
        yaml_emitter_delete(&y.em);
        err = y.bad || !y.buf ? TN_ERR_NOMEM : TN_OK;
    }
    if (err == TN_OK) {
        *out = y.buf;
        *len = y.len;
    } else {
        free(y.buf);
    }
    free(dflt.description);
    free(dflt_task.worker_group);
    return err;
}

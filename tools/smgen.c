/* smgen: turns the .sm state machine specs into C tables (sm_gen.h, sm_gen.c) and a
 * Graphviz and Markdown rendering of each machine (NAME.dot, NAME.md). libc only.
 *
 * Usage: smgen --out-dir DIR SPEC.sm...
 *
 * Every spec is read and checked before anything is written: on the first error smgen
 * prints "FILE:LINE: reason" on stderr and exits 1 without touching DIR. The outputs are
 * written to temporary files first and renamed into place once all are complete. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bounds on everything a spec controls. Ids are uint8_t and 0xFF means "illegal", so a
 * machine has at most 255 states (NEW included) and 255 events. */
#define MAX_LINE     1024 /* bytes per line, newline excluded */
#define MAX_LINES    100000
#define MAX_TOKENS   64 /* per line */
#define MAX_NAME     63 /* bytes per name */
#define MAX_STATES   255
#define MAX_EVENTS   255
#define MAX_MACHINES 6
#define MAX_PATH     4096

typedef struct name {
    char s[MAX_NAME + 1];
    int line; /* where it was declared */
} name;

typedef struct trans {
    uint8_t from, event, to;
    int line;
} trans;

typedef struct machine {
    const char *file; /* path as given on the command line */
    const char *base; /* its last component, for comments in the output */
    int line;         /* of the machine directive; 0 until seen */
    int id;           /* tn_machine value */
    char name[MAX_NAME + 1];
    char prefix[MAX_NAME + 1];
    unsigned nstates; /* NEW included */
    name states[MAX_STATES];
    unsigned nevents;
    name events[MAX_EVENTS];
    int initial; /* state id; 0 until seen */
    bool final[MAX_STATES];
    unsigned nfinal;
    unsigned ntrans;
    trans trans[MAX_STATES * MAX_EVENTS];
    uint16_t at[MAX_STATES][MAX_EVENTS]; /* 1 + index into trans, 0 = illegal */
} machine;

/* The machines sm.h knows, by name. */
static const struct {
    const char *name;
    int id;
    const char *enum_name;
} known[MAX_MACHINES] = {
    {"workflow", 1, "TN_MACHINE_WORKFLOW"}, {"task", 2, "TN_MACHINE_TASK"},
    {"system", 3, "TN_MACHINE_SYSTEM"},     {"schedule", 4, "TN_MACHINE_SCHEDULE"},
    {"backfill", 5, "TN_MACHINE_BACKFILL"}, {"alert", 6, "TN_MACHINE_ALERT"},
};

/* Large (about 2 MB): static rather than on the stack. */
static machine machines[MAX_MACHINES];
static unsigned nmachines;
/* The parsed machines by id, so that the output does not depend on the argument order. */
static const machine *order[MAX_MACHINES];

/* Prints "FILE:LINE: message" on stderr; returns false for the caller to pass on. */
static bool error_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool error_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return false;
}

/* ---- reading ---- */

/* Reads one line of at most cap - 1 bytes into buf, without its newline.
 * Returns 1 for a line, 0 at end of file, -1 after reporting an error. */
static int read_line(FILE *f, char *buf, size_t cap, const char *file, int lineno)
{
    size_t n = 0;
    int c;

    while ((c = getc(f)) != EOF && c != '\n') {
        if (c == '\0') {
            error_at(file, lineno, "NUL byte in line");
            return -1;
        }
        if (n + 1 >= cap) {
            error_at(file, lineno, "line longer than %zu bytes", cap - 1);
            return -1;
        }
        buf[n++] = (char)c;
    }
    if (ferror(f)) {
        error_at(file, lineno, "read error: %s", strerror(errno));
        return -1;
    }
    if (c == EOF && n == 0)
        return 0;
    buf[n] = '\0';
    return 1;
}

/* Splits line in place at spaces and tabs, dropping a '#' comment. Returns the number of
 * tokens, or -1 after reporting an error. */
static int tokenize(char *line, char **tok, const char *file, int lineno)
{
    char *hash = strchr(line, '#');
    int n = 0;
    char *save = NULL;

    if (hash)
        *hash = '\0';
    for (char *t = strtok_r(line, " \t\r\v\f", &save); t;
         t = strtok_r(NULL, " \t\r\v\f", &save)) {
        if (n == MAX_TOKENS) {
            error_at(file, lineno, "more than %d tokens on a line", MAX_TOKENS);
            return -1;
        }
        if (strlen(t) > MAX_NAME) {
            error_at(file, lineno, "token \"%.20s...\" longer than %d bytes", t, MAX_NAME);
            return -1;
        }
        tok[n++] = t;
    }
    return n;
}

static bool is_upper_name(const char *s)
{
    if (!(*s >= 'A' && *s <= 'Z'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static int find(const name *names, unsigned n, const char *s)
{
    for (unsigned i = 0; i < n; i++)
        if (strcmp(names[i].s, s) == 0)
            return (int)i;
    return -1;
}

static void set_name(name *n, const char *s, int line)
{
    snprintf(n->s, sizeof n->s, "%s", s);
    n->line = line;
}

static bool parse_machine(machine *m, char **tok, int ntok, int lineno)
{
    if (m->line)
        return error_at(m->file, lineno, "second 'machine' directive (first at line %d)",
                        m->line);
    if (ntok != 3)
        return error_at(m->file, lineno, "'machine' takes 2 arguments, NAME PREFIX; got %d",
                        ntok - 1);
    m->id = 0;
    for (unsigned i = 0; i < MAX_MACHINES; i++)
        if (strcmp(tok[1], known[i].name) == 0)
            m->id = known[i].id;
    if (!m->id)
        return error_at(m->file, lineno,
                        "unknown machine \"%s\" (expected workflow, task, system, schedule, "
                        "backfill or alert)",
                        tok[1]);
    if (!is_upper_name(tok[2]))
        return error_at(m->file, lineno, "bad prefix \"%s\" (expected [A-Z][A-Z0-9_]*)",
                        tok[2]);
    snprintf(m->name, sizeof m->name, "%s", tok[1]);
    snprintf(m->prefix, sizeof m->prefix, "%s", tok[2]);
    m->line = lineno;
    return true;
}

static bool parse_states(machine *m, char **tok, int ntok, int lineno)
{
    if (ntok < 2)
        return error_at(m->file, lineno, "'states' needs at least one state");
    for (int i = 1; i < ntok; i++) {
        int prev;

        if (!is_upper_name(tok[i]))
            return error_at(m->file, lineno, "bad state name \"%s\" (expected [A-Z][A-Z0-9_]*)",
                            tok[i]);
        if (strcmp(tok[i], "NEW") == 0)
            return error_at(m->file, lineno, "NEW is implicit (state 0); do not declare it");
        if ((prev = find(m->states, m->nstates, tok[i])) >= 0)
            return error_at(m->file, lineno, "duplicate state %s (declared at line %d)", tok[i],
                            m->states[prev].line);
        if (m->nstates == MAX_STATES)
            return error_at(m->file, lineno, "more than %d states", MAX_STATES - 1);
        set_name(&m->states[m->nstates++], tok[i], lineno);
    }
    return true;
}

static bool parse_events(machine *m, char **tok, int ntok, int lineno)
{
    if (ntok < 2)
        return error_at(m->file, lineno, "'events' needs at least one event");
    for (int i = 1; i < ntok; i++) {
        int prev;

        if (!is_upper_name(tok[i]))
            return error_at(m->file, lineno, "bad event name \"%s\" (expected [A-Z][A-Z0-9_]*)",
                            tok[i]);
        if ((prev = find(m->events, m->nevents, tok[i])) >= 0)
            return error_at(m->file, lineno, "duplicate event %s (declared at line %d)", tok[i],
                            m->events[prev].line);
        if (m->nevents == MAX_EVENTS)
            return error_at(m->file, lineno, "more than %d events", MAX_EVENTS);
        set_name(&m->events[m->nevents++], tok[i], lineno);
    }
    return true;
}

/* The id of a declared state other than NEW, or 0 after reporting an error. */
static int declared_state(machine *m, const char *s, int lineno)
{
    int id;

    if (strcmp(s, "NEW") == 0) {
        error_at(m->file, lineno, "NEW is not allowed here");
        return 0;
    }
    if ((id = find(m->states, m->nstates, s)) < 0) {
        error_at(m->file, lineno, "undeclared state \"%s\"", s);
        return 0;
    }
    return id;
}

static bool parse_initial(machine *m, char **tok, int ntok, int lineno)
{
    if (m->initial)
        return error_at(m->file, lineno, "second 'initial' directive");
    if (ntok != 2)
        return error_at(m->file, lineno, "'initial' takes exactly one state; got %d", ntok - 1);
    m->initial = declared_state(m, tok[1], lineno);
    return m->initial != 0;
}

static bool parse_final(machine *m, char **tok, int ntok, int lineno)
{
    for (int i = 1; i < ntok; i++) {
        int id = declared_state(m, tok[i], lineno);

        if (!id)
            return false;
        if (m->final[id])
            return error_at(m->file, lineno, "state %s is already final", tok[i]);
        m->final[id] = true;
        m->nfinal++;
    }
    return true;
}

static bool parse_transition(machine *m, char **tok, int ntok, int lineno)
{
    int from, event, to;
    trans *t;

    if (ntok != 3)
        return error_at(m->file, lineno,
                        "a transition is FROM EVENT TO (3 tokens); got %d token%s", ntok,
                        ntok == 1 ? "" : "s");
    if ((from = find(m->states, m->nstates, tok[0])) < 0)
        return error_at(m->file, lineno, "undeclared state \"%s\"", tok[0]);
    if ((event = find(m->events, m->nevents, tok[1])) < 0)
        return error_at(m->file, lineno, "undeclared event \"%s\"", tok[1]);
    if (!(to = declared_state(m, tok[2], lineno)))
        return false;
    if (m->at[from][event])
        return error_at(m->file, lineno, "duplicate transition %s + %s (first at line %d)",
                        tok[0], tok[1], m->trans[m->at[from][event] - 1].line);
    t = &m->trans[m->ntrans++];
    t->from = (uint8_t)from;
    t->event = (uint8_t)event;
    t->to = (uint8_t)to;
    t->line = lineno;
    m->at[from][event] = (uint16_t)m->ntrans;
    return true;
}

static bool parse_line(machine *m, char **tok, int ntok, int lineno)
{
    static const char *const directives[] = {"machine", "states", "initial", "final", "events"};
    int d = -1;

    for (int i = 0; i < (int)(sizeof directives / sizeof directives[0]); i++)
        if (strcmp(tok[0], directives[i]) == 0)
            d = i;
    if (d < 0 && !is_upper_name(tok[0]))
        return error_at(m->file, lineno,
                        "unknown directive \"%s\" (expected machine, states, initial, final, "
                        "events or a transition FROM EVENT TO)",
                        tok[0]);
    if (d != 0 && !m->line)
        return error_at(m->file, lineno, "the first directive must be 'machine NAME PREFIX'");
    switch (d) {
    case 0: return parse_machine(m, tok, ntok, lineno);
    case 1: return parse_states(m, tok, ntok, lineno);
    case 2: return parse_initial(m, tok, ntok, lineno);
    case 3: return parse_final(m, tok, ntok, lineno);
    case 4: return parse_events(m, tok, ntok, lineno);
    default: return parse_transition(m, tok, ntok, lineno);
    }
}

/* Extends seen[] to every state reachable from a state already marked, following the
 * transitions forwards, or backwards when reverse is set. */
static void walk(const machine *m, bool *seen, bool reverse)
{
    bool changed = true;

    /* Each pass marks at least one more state, so at most 255 passes over the transitions. */
    while (changed) {
        changed = false;
        for (unsigned i = 0; i < m->ntrans; i++) {
            unsigned a = reverse ? m->trans[i].to : m->trans[i].from;
            unsigned b = reverse ? m->trans[i].from : m->trans[i].to;

            if (seen[a] && !seen[b]) {
                seen[b] = true;
                changed = true;
            }
        }
    }
}

static bool check(machine *m)
{
    bool seen[MAX_STATES] = {false};

    if (!m->line)
        return error_at(m->file, 1, "no 'machine NAME PREFIX' directive");
    if (!m->initial)
        return error_at(m->file, m->line, "no 'initial' directive");
    if (m->nevents == 0)
        return error_at(m->file, m->line, "no events declared");

    seen[0] = true;
    walk(m, seen, false);
    for (unsigned s = 1; s < m->nstates; s++)
        if (!seen[s])
            return error_at(m->file, m->states[s].line, "state %s is not reachable from NEW",
                            m->states[s].s);

    /* A machine without final states (system) lives for ever: nothing to reach. */
    if (m->nfinal == 0)
        return true;
    memcpy(seen, m->final, sizeof seen);
    walk(m, seen, true);
    for (unsigned s = 1; s < m->nstates; s++)
        if (!seen[s])
            return error_at(m->file, m->states[s].line, "state %s has no path to a final state",
                            m->states[s].s);
    return true;
}

static bool parse_file(machine *m, const char *file)
{
    char line[MAX_LINE + 1];
    char *tok[MAX_TOKENS];
    FILE *f;
    bool ok = false;
    int lineno = 0;
    int r;

    m->file = file;
    m->base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    set_name(&m->states[0], "NEW", 0);
    m->nstates = 1;

    if (!(f = fopen(file, "r"))) {
        fprintf(stderr, "%s: cannot open: %s\n", file, strerror(errno));
        return false;
    }
    while ((r = read_line(f, line, sizeof line, file, lineno + 1)) > 0) {
        int ntok;

        if (++lineno > MAX_LINES) {
            error_at(file, lineno, "more than %d lines", MAX_LINES);
            goto fail;
        }
        if ((ntok = tokenize(line, tok, file, lineno)) < 0)
            goto fail;
        if (ntok > 0 && !parse_line(m, tok, ntok, lineno))
            goto fail;
    }
    if (r < 0)
        goto fail;
    ok = check(m);
fail:
    fclose(f);
    return ok;
}

/* ---- output buffers ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

/* Appends to b; exits on allocation failure (smgen is a short-lived build tool). */
static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        fprintf(stderr, "smgen: formatting failed\n");
        exit(1);
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (b->len + (size_t)n + 1 > cap)
            cap *= 2;
        if (!(p = realloc(b->p, cap))) {
            fprintf(stderr, "smgen: out of memory\n");
            exit(1);
        }
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends text as a C string literal, one literal per line of text, so that the
 * generated source reads like the text. Anything outside printable ASCII is escaped, and
 * so is the second '?' of a pair (no trigraphs). */
static void c_literal(buf *b, const char *text, const char *indent)
{
    bool closed = false;
    char prev = 0;

    bprintf(b, "%s\"", indent);
    for (const char *p = text; *p; prev = *p++) {
        unsigned char c = (unsigned char)*p;

        if (c == '\\' || c == '"') {
            bprintf(b, "\\%c", c);
        } else if (c == '\n') {
            bprintf(b, "\\n\"");
            if (p[1])
                bprintf(b, "\n%s\"", indent);
            else
                closed = true;
        } else if (c == '\t') {
            bprintf(b, "\\t");
        } else if (c == '?' && prev == '?') {
            bprintf(b, "\\?");
        } else if (c < 0x20 || c >= 0x7F) {
            bprintf(b, "\\%03o", c);
        } else {
            bprintf(b, "%c", c);
        }
    }
    if (!closed)
        bprintf(b, "\"");
}

static void upper(char *dst, const char *src)
{
    for (; *src; src++)
        *dst++ = (*src >= 'a' && *src <= 'z') ? (char)(*src - 'a' + 'A') : *src;
    *dst = '\0';
}

/* ---- renderings ---- */

static void render_dot(const machine *m, buf *b)
{
    bprintf(b, "digraph %s {\n", m->name);
    bprintf(b, "    rankdir=LR;\n");
    bprintf(b, "    node [shape=circle];\n");
    bprintf(b, "    \"NEW\" [shape=point];\n");
    for (unsigned s = 1; s < m->nstates; s++) {
        const char *n = m->states[s].s;

        if ((int)s == m->initial)
            bprintf(b, "    \"%s\" [style=bold, label=\"%s\\n(initial)\"%s];\n", n, n,
                    m->final[s] ? ", shape=doublecircle" : "");
        else if (m->final[s])
            bprintf(b, "    \"%s\" [shape=doublecircle];\n", n);
        else
            bprintf(b, "    \"%s\";\n", n);
    }
    for (unsigned i = 0; i < m->ntrans; i++) {
        const trans *t = &m->trans[i];

        bprintf(b, "    \"%s\" -> \"%s\" [label=\"%s\"];\n", m->states[t->from].s,
                m->states[t->to].s, m->events[t->event].s);
    }
    bprintf(b, "}\n");
}

static size_t widest(size_t w, const char *s)
{
    size_t n = strlen(s);
    return n > w ? n : w;
}

static void md_row(buf *b, const size_t *w, const char *const *cell)
{
    for (int i = 0; i < 3; i++)
        bprintf(b, "| %-*s ", (int)w[i], cell[i]);
    bprintf(b, "|\n");
}

static void render_md(const machine *m, buf *b)
{
    static const char *const head[3] = {"From", "Event", "To"};
    size_t w[3];
    char rule[3][MAX_NAME + 1];
    const char *cells[3];

    bprintf(b, "## %s state machine\n\n", m->name);
    bprintf(b,
            "Generated from `%s`; its C enums are `TN_%s_S_*` (states) and\n"
            "`TN_%s_E_*` (events).\n\n",
            m->base, m->prefix, m->prefix);
    bprintf(b, "States (id, name):\n\n");
    bprintf(b, "- 0 `NEW`: the pseudo-state before the instance exists\n");
    for (unsigned s = 1; s < m->nstates; s++) {
        bool ini = (int)s == m->initial, fin = m->final[s];
        const char *mark = ini && fin ? " (initial, final)" :
                           ini        ? " (initial)" :
                           fin        ? " (final)" :
                                        "";

        bprintf(b, "- %u `%s`%s\n", s, m->states[s].s, mark);
    }
    bprintf(b, "\nTransitions, in spec order; any other (state, event) pair is illegal:\n\n");

    for (int i = 0; i < 3; i++)
        w[i] = widest(3, head[i]);
    for (unsigned i = 0; i < m->ntrans; i++) {
        const trans *t = &m->trans[i];

        w[0] = widest(w[0], m->states[t->from].s);
        w[1] = widest(w[1], m->events[t->event].s);
        w[2] = widest(w[2], m->states[t->to].s);
    }
    md_row(b, w, head);
    for (int i = 0; i < 3; i++) {
        memset(rule[i], '-', w[i]);
        rule[i][w[i]] = '\0';
        cells[i] = rule[i];
    }
    md_row(b, w, cells);
    for (unsigned i = 0; i < m->ntrans; i++) {
        const trans *t = &m->trans[i];

        cells[0] = m->states[t->from].s;
        cells[1] = m->events[t->event].s;
        cells[2] = m->states[t->to].s;
        md_row(b, w, cells);
    }
}

/* ---- C output ---- */

static void gen_enum(buf *b, const char *prefix, char kind, const name *names, unsigned n)
{
    char up[MAX_NAME + 1];

    bprintf(b, "enum {\n");
    for (unsigned i = 0; i < n; i++) {
        upper(up, names[i].s);
        bprintf(b, "    TN_%s_%c_%s%s,\n", prefix, kind, up, i == 0 ? " = 0" : "");
    }
    bprintf(b, "    TN_%s_%c__COUNT\n", prefix, kind);
    bprintf(b, "};\n");
}

static void gen_header(buf *b, const char *inputs)
{
    bprintf(b, "/* State machine enums, generated by tools/smgen from %s.\n", inputs);
    bprintf(b, " * Do not edit: change the spec and rebuild. */\n");
    bprintf(b, "#ifndef TN_SM_GEN_H\n#define TN_SM_GEN_H\n\n");
    bprintf(b, "#include \"sm.h\"\n");
    for (unsigned i = 0; i < nmachines; i++) {
        const machine *m = order[i];

        bprintf(b, "\n/* %s (%s): states and events */\n", m->name, m->base);
        gen_enum(b, m->prefix, 'S', m->states, m->nstates);
        gen_enum(b, m->prefix, 'E', m->events, m->nevents);
    }
    bprintf(b, "\n#endif\n");
}

static void gen_names(buf *b, const machine *m, const char *what, char kind, const name *names,
                      unsigned n)
{
    bprintf(b, "static const char *const %s_%s_names[TN_%s_%c__COUNT] = {\n", m->name, what,
            m->prefix, kind);
    for (unsigned i = 0; i < n; i++)
        bprintf(b, "    \"%s\",\n", names[i].s);
    bprintf(b, "};\n");
}

/* dot and md are the machine's renderings, embedded as strings. */
static void gen_machine(buf *b, const machine *m, const char *dot, const char *md)
{
    const char *enum_name = "";
    char entry[4 * MAX_NAME + 32];
    int width = 0;

    for (unsigned i = 0; i < MAX_MACHINES; i++)
        if (known[i].id == m->id)
            enum_name = known[i].enum_name;

    bprintf(b, "\n/* ---- %s (%s) ---- */\n\n", m->name, m->base);
    gen_names(b, m, "state", 'S', m->states, m->nstates);
    gen_names(b, m, "event", 'E', m->events, m->nevents);

    bprintf(b, "static const bool %s_final[TN_%s_S__COUNT] = {\n", m->name, m->prefix);
    for (unsigned s = 0; s < m->nstates; s++)
        bprintf(b, "    %s, /* %s */\n", m->final[s] ? "true" : "false", m->states[s].s);
    bprintf(b, "};\n");

    /* Every entry written out, illegal ones included, so that the table reads as a grid. */
    for (unsigned i = 0; i < m->ntrans; i++) {
        int n = snprintf(entry, sizeof entry, "{TN_%s_S_%s},", m->prefix,
                         m->states[m->trans[i].to].s);
        width = n > width ? n : width;
    }
    bprintf(b, "\n/* [state * TN_%s_E__COUNT + event] */\n", m->prefix);
    bprintf(b, "static const tn_sm_trans %s_table[TN_%s_S__COUNT * TN_%s_E__COUNT] = {\n",
            m->name, m->prefix, m->prefix);
    for (unsigned s = 0; s < m->nstates; s++) {
        bprintf(b, "    /* %s */\n", m->states[s].s);
        for (unsigned e = 0; e < m->nevents; e++) {
            const trans *t = m->at[s][e] ? &m->trans[m->at[s][e] - 1] : NULL;

            if (t)
                snprintf(entry, sizeof entry, "{TN_%s_S_%s},", m->prefix, m->states[t->to].s);
            else
                snprintf(entry, sizeof entry, "{TN_SM_ILLEGAL},");
            bprintf(b, "    %-*s /* %s */\n", width, entry, m->events[e].s);
        }
    }
    bprintf(b, "};\n");

    bprintf(b, "\nstatic const char %s_dot[] =\n", m->name);
    c_literal(b, dot, "    ");
    bprintf(b, ";\n");
    bprintf(b, "\nstatic const char %s_md[] =\n", m->name);
    c_literal(b, md, "    ");
    bprintf(b, ";\n");

    bprintf(b, "\nconst tn_sm tn_sm_%s = {\n", m->name);
    bprintf(b, "    .name = \"%s\",\n", m->name);
    bprintf(b, "    .machine = %s,\n", enum_name);
    bprintf(b, "    .nstates = TN_%s_S__COUNT,\n", m->prefix);
    bprintf(b, "    .nevents = TN_%s_E__COUNT,\n", m->prefix);
    bprintf(b, "    .ntrans = %u,\n", m->ntrans);
    bprintf(b, "    .initial = TN_%s_S_%s,\n", m->prefix, m->states[m->initial].s);
    bprintf(b, "    .state_names = %s_state_names,\n", m->name);
    bprintf(b, "    .event_names = %s_event_names,\n", m->name);
    bprintf(b, "    .final = %s_final,\n", m->name);
    bprintf(b, "    .table = %s_table,\n", m->name);
    bprintf(b, "    .dot = %s_dot,\n", m->name);
    bprintf(b, "    .md = %s_md,\n", m->name);
    bprintf(b, "};\n");
}

/* One output file: its text, and where it goes. */
typedef struct output {
    char path[MAX_PATH];
    char tmp[MAX_PATH];
    buf text;
} output;

/* renders[2 * i] and renders[2 * i + 1] are the DOT and Markdown of order[i]. */
static void gen_source(buf *b, const char *inputs, const output *renders)
{
    bprintf(b, "/* State machine tables, generated by tools/smgen from %s.\n", inputs);
    bprintf(b, " * Do not edit: change the spec and rebuild. */\n");
    bprintf(b, "#include \"sm_gen.h\"\n");
    for (unsigned i = 0; i < nmachines; i++)
        gen_machine(b, order[i], renders[2 * i].text.p, renders[2 * i + 1].text.p);
}

/* ---- writing ---- */

static bool write_file(const char *path, const buf *b)
{
    FILE *f = fopen(path, "w");
    bool ok;

    if (!f) {
        fprintf(stderr, "smgen: cannot create %s: %s\n", path, strerror(errno));
        return false;
    }
    ok = fwrite(b->p, 1, b->len, f) == b->len;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        fprintf(stderr, "smgen: cannot write %s: %s\n", path, strerror(errno));
    return ok;
}

/* Writes every output to a temporary file, then renames them all into place, so that a
 * failure leaves no half-written output behind. */
static bool write_all(output *out, unsigned n)
{
    unsigned written = 0;

    for (; written < n; written++)
        if (!write_file(out[written].tmp, &out[written].text)) {
            (void)unlink(out[written].tmp);
            goto fail;
        }
    for (unsigned i = 0; i < n; i++)
        if (rename(out[i].tmp, out[i].path) != 0) {
            fprintf(stderr, "smgen: cannot rename %s to %s: %s\n", out[i].tmp, out[i].path,
                    strerror(errno));
            goto fail;
        }
    return true;
fail:
    for (unsigned i = 0; i < written; i++)
        (void)unlink(out[i].tmp);
    return false;
}

static bool set_paths(output *o, const char *dir, const char *file, const char *ext)
{
    int n = snprintf(o->path, sizeof o->path, "%s/%s%s", dir, file, ext);
    int t = snprintf(o->tmp, sizeof o->tmp, "%s/%s%s.tmp", dir, file, ext);

    if (n < 0 || t < 0 || (size_t)t >= sizeof o->tmp) {
        fprintf(stderr, "smgen: output path too long: %s\n", dir);
        return false;
    }
    return true;
}

static void usage(void)
{
    fprintf(stderr, "usage: smgen --out-dir DIR SPEC.sm...\n"
                    "Writes sm_gen.h, sm_gen.c, NAME.dot and NAME.md into DIR.\n");
}

int main(int argc, char **argv)
{
    output out[2 + 2 * MAX_MACHINES];
    char inputs[MAX_PATH] = "";
    const char *dir = NULL;
    unsigned nout = 0;
    int status = 1;
    int argi = 1;

    memset(out, 0, sizeof out);
    if (argc >= 3 && strcmp(argv[1], "--out-dir") == 0) {
        dir = argv[2];
        argi = 3;
    }
    if (!dir || argi >= argc) {
        usage();
        return 2;
    }
    if (argc - argi > MAX_MACHINES) {
        fprintf(stderr, "smgen: at most %d specs (one per machine)\n", MAX_MACHINES);
        return 2;
    }

    for (; argi < argc; argi++) {
        machine *m = &machines[nmachines];

        if (!parse_file(m, argv[argi]))
            return 1;
        for (unsigned i = 0; i < nmachines; i++) {
            if (machines[i].id == m->id) {
                error_at(m->file, m->line, "machine %s already defined at %s:%d", m->name,
                         machines[i].file, machines[i].line);
                return 1;
            }
            if (strcmp(machines[i].prefix, m->prefix) == 0) {
                error_at(m->file, m->line, "prefix %s already used at %s:%d", m->prefix,
                         machines[i].file, machines[i].line);
                return 1;
            }
        }
        nmachines++;
    }
    for (unsigned i = 0, n = 0; i < MAX_MACHINES; i++)
        for (unsigned j = 0; j < nmachines; j++)
            if (machines[j].id == known[i].id) {
                order[n] = &machines[j];
                snprintf(inputs + strlen(inputs), sizeof inputs - strlen(inputs), "%s%s",
                         n++ ? ", " : "", machines[j].base);
            }

    /* out[0], out[1]: sm_gen.h, sm_gen.c; then NAME.dot and NAME.md per machine. */
    nout = 2 + 2 * nmachines;
    if (!set_paths(&out[0], dir, "sm_gen", ".h") || !set_paths(&out[1], dir, "sm_gen", ".c"))
        goto done;
    for (unsigned i = 0; i < nmachines; i++) {
        if (!set_paths(&out[2 + 2 * i], dir, order[i]->name, ".dot") ||
            !set_paths(&out[3 + 2 * i], dir, order[i]->name, ".md"))
            goto done;
        render_dot(order[i], &out[2 + 2 * i].text);
        render_md(order[i], &out[3 + 2 * i].text);
    }
    gen_header(&out[0].text, inputs);
    gen_source(&out[1].text, inputs, &out[2]);
    if (write_all(out, nout))
        status = 0;
done:
    for (unsigned i = 0; i < nout; i++)
        free(out[i].text.p);
    return status;
}

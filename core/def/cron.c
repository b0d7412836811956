/* Cron expressions: a table-driven parser (one descriptor per field) into bitsets, and a
 * search for the next matching civil time that skips whole units that cannot match. */
#include "cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define NS_PER_S 1000000000LL

/* ---- field descriptors --------------------------------------------------------------- */

enum role {
    F_SEC,
    F_MIN,
    F_HOUR,
    F_DOM,
    F_MONTH,
    F_DOW,
    F_YEAR
};

typedef struct fdesc {
    const char *name;
    enum role role;
    int min, max;
    const char *const *names; /* names[i] is the value name_base + i; NULL: numbers only */
    int name_base;
    int nnames;
} fdesc;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const fdesc quartz_fields[7] = {
    {"second", F_SEC, 0, 59, NULL, 0, 0},
    {"minute", F_MIN, 0, 59, NULL, 0, 0},
    {"hour", F_HOUR, 0, 23, NULL, 0, 0},
    {"day-of-month", F_DOM, 1, 31, NULL, 0, 0},
    {"month", F_MONTH, 1, 12, month_names, 1, 12},
    {"day-of-week", F_DOW, 1, 7, dow_names, 1, 7}, /* Quartz: 1 = Sunday */
    {"year", F_YEAR, TN_CRON_YEAR_MIN, TN_CRON_YEAR_MAX, NULL, 0, 0},
};

static const fdesc unix_fields[5] = {
    {"minute", F_MIN, 0, 59, NULL, 0, 0},
    {"hour", F_HOUR, 0, 23, NULL, 0, 0},
    {"day-of-month", F_DOM, 1, 31, NULL, 0, 0},
    {"month", F_MONTH, 1, 12, month_names, 1, 12},
    {"day-of-week", F_DOW, 0, 7, dow_names, 0, 7}, /* 0 and 7 = Sunday */
};

#define SET_WORDS ((TN_CRON_YEAR_MAX - TN_CRON_YEAR_MIN) / 64 + 1)

/* A field's values as bits indexed by value - min. */
typedef struct vset {
    uint64_t w[SET_WORDS];
} vset;

static void vset_add(vset *s, int i)
{
    s->w[i / 64] |= 1ull << (i % 64);
}

static bool vset_has(const vset *s, int i)
{
    return s->w[i / 64] >> (i % 64) & 1;
}

/* ---- errors -------------------------------------------------------------------------- */

typedef struct parser {
    const char *expr;
    tn_errmsg *e;
    bool is_unix;
} parser;

/* TN_ERR_PARSE with "cron: "EXPR": position N: " and the rest; `at` points into expr. */
__attribute__((format(printf, 3, 4))) static tn_err perr(parser *p, const char *at,
                                                         const char *fmt, ...)
{
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return tn_errmsg_set(p->e, TN_ERR_PARSE, "cron: \"%s\": position %d: %s", p->expr,
                         (int)(at - p->expr) + 1, what);
}

/* How to name what was found at s, for "expected X, found Y". */
static const char *found(const char *s, const char *end, char buf[16])
{
    if (s >= end)
        return "the end of the field";
    if (*s < 0x21 || *s > 0x7e)
        snprintf(buf, 16, "byte 0x%02x", (unsigned char)*s);
    else
        snprintf(buf, 16, "'%c'", *s);
    return buf;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static char upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

/* ---- values, items, fields ----------------------------------------------------------- */

/* A run of digits at *s (capped, so huge numbers stay huge without overflow). */
static long digits(const char **s, const char *end)
{
    long n = 0;
    for (; *s < end && is_digit(**s); (*s)++)
        n = n < 1000000 ? n * 10 + (**s - '0') : n;
    return n;
}

/* A number or a name of field f at *s, checked against its range. */
static tn_err parse_value(parser *p, const fdesc *f, const char **s, const char *end, int *v)
{
    const char *at = *s;
    char buf[16];
    if (at < end && is_digit(*at)) {
        long n = digits(s, end);
        if (n < f->min || n > f->max)
            return perr(p, at, "%s %ld is out of range %d-%d", f->name, n, f->min, f->max);
        *v = (int)n;
        return TN_OK;
    }
    if (at < end && is_alpha(*at) && f->names) {
        while (*s < end && is_alpha(**s))
            (*s)++;
        for (int i = 0; i < f->nnames && *s - at == 3; i++)
            if (upper(at[0]) == f->names[i][0] && upper(at[1]) == f->names[i][1] &&
                upper(at[2]) == f->names[i][2]) {
                *v = f->name_base + i;
                return TN_OK;
            }
        return perr(p, at, "expected a %s name (%s-%s) or number, found \"%.*s\"", f->name,
                    f->names[0], f->names[f->nnames - 1], (int)(*s - at), at);
    }
    return perr(p, at, "expected a number%s in the %s field, found %s",
                f->names ? " or name" : "", f->name, found(at, end, buf));
}

/* The step after '/' at *s: 1 up to the field's span. */
static tn_err parse_step(parser *p, const fdesc *f, const char **s, const char *end, int *step)
{
    const char *at = *s;
    char buf[16];
    if (at >= end || !is_digit(*at))
        return perr(p, at, "expected a step number after '/' in the %s field, found %s",
                    f->name, found(at, end, buf));
    long n = digits(s, end);
    if (n < 1 || n > f->max - f->min + 1)
        return perr(p, at, "%s step %ld is out of range 1-%d", f->name, n, f->max - f->min + 1);
    *step = (int)n;
    return TN_OK;
}

/* One list item: '*', a value or a range, each with an optional step. A range that runs
 * backwards wraps around the field (Quartz) or is refused (Unix). */
static tn_err parse_item(parser *p, const fdesc *f, const char **s, const char *end, vset *set)
{
    int a = f->min, b = f->max, step = 1;
    const char *at = *s;
    tn_err err = TN_OK;
    bool single = false;
    if (*s < end && **s == '*') {
        (*s)++;
    } else {
        err = parse_value(p, f, s, end, &a);
        b = a;
        single = true;
        if (!err && *s < end && **s == '-') {
            (*s)++;
            err = parse_value(p, f, s, end, &b);
            single = false;
            if (!err && p->is_unix && b < a)
                return perr(p, at, "%s range %d-%d runs backwards", f->name, a, b);
        }
    }
    if (!err && *s < end && **s == '/') {
        (*s)++;
        err = parse_step(p, f, s, end, &step);
        if (single)
            b = f->max; /* "a/n": from a to the end of the range */
    }
    if (err)
        return err;
    int span = f->max - f->min + 1, count = (b - a + span) % span + 1;
    for (int i = 0; i < count; i += step)
        vset_add(set, (a - f->min + i) % span);
    return TN_OK;
}

/* A comma-separated list of items filling set. */
static tn_err parse_list(parser *p, const fdesc *f, const char *s, const char *end, vset *set)
{
    char buf[16];
    for (;;) {
        tn_err err = parse_item(p, f, &s, end, set);
        if (err)
            return err;
        if (s >= end)
            return TN_OK;
        if (*s != ',')
            return perr(p, s, "expected ',', '-', '/' or a space after a %s value, found %s",
                        f->name, found(s, end, buf));
        s++;
    }
}

/* ---- Quartz's day specials: L, L-n, LW, nW (day-of-month); L, nL, n#k (day-of-week) ---- */

static bool has_char(const char *s, const char *end, char a, char b)
{
    for (; s < end; s++)
        if (*s == a || *s == b)
            return true;
    return false;
}

/* Whether [s,end) is a day-of-month special; *handled says so, and c is filled. */
static tn_err dom_special(parser *p, const char *s, const char *end, tn_cron *c, bool *handled)
{
    *handled = has_char(s, end, 'L', 'l') || has_char(s, end, 'W', 'w');
    if (!*handled)
        return TN_OK;
    const char *q = s;
    if (upper(*q) == 'L') {
        q++;
        if (q == end) {
            c->dom_last = 0;
            return TN_OK;
        }
        if (end - q == 1 && upper(*q) == 'W') {
            c->flags |= TN_CRON_F_LW;
            return TN_OK;
        }
        if (*q == '-' && q + 1 < end && is_digit(q[1])) {
            q++;
            long n = digits(&q, end);
            if (q == end && n <= 30) {
                c->dom_last = (int8_t)n;
                return TN_OK;
            }
            if (q == end)
                return perr(p, s + 2, "day-of-month L-%ld: the offset must be 0-30", n);
        }
    } else if (is_digit(*q)) {
        long n = digits(&q, end);
        if (end - q == 1 && upper(*q) == 'W') {
            if (n < 1 || n > 31)
                return perr(p, s, "day-of-month %ldW: the day must be 1-31", n);
            c->dom_near = (int8_t)n;
            return TN_OK;
        }
    }
    return perr(p, s,
                "expected L, L-n, LW or nW alone in the day-of-month field, found \"%.*s\"",
                (int)(end - s), s);
}

/* Whether [s,end) is a day-of-week special (Quartz numbering, 1 = Sunday). */
static tn_err dow_special(parser *p, const fdesc *f, const char *s, const char *end, tn_cron *c,
                          bool *handled)
{
    bool nth = has_char(s, end, '#', '#'), last = upper(end[-1]) == 'L';
    *handled = nth || last;
    if (!*handled)
        return TN_OK;
    if (last && end - s == 1) {
        c->dow |= 1u << 6; /* "L" alone: the last day of the week, Saturday */
        return TN_OK;
    }
    const char *q = s;
    int v;
    tn_err err = parse_value(p, f, &q, end, &v);
    if (err)
        return err;
    if (last && q == end - 1) {
        c->dow_last = (int8_t)(v - 1);
        return TN_OK;
    }
    if (nth && q < end && *q == '#') {
        const char *k = ++q;
        long n = digits(&q, end);
        if (q == end && k < end && n >= 1 && n <= 5) {
            c->dow_nth_day = (int8_t)(v - 1);
            c->dow_nth = (int8_t)n;
            return TN_OK;
        }
        if (q == end && k < end)
            return perr(p, k, "day-of-week %.*s: the week number after '#' must be 1-5",
                        (int)(end - s), s);
    }
    return perr(p, s, "expected nL or n#k alone in the day-of-week field, found \"%.*s\"",
                (int)(end - s), s);
}

/* ---- a whole field into the table ------------------------------------------------------ */

static void store_set(const fdesc *f, const vset *set, bool is_unix, tn_cron *c)
{
    int span = f->max - f->min + 1;
    for (int i = 0; i < span; i++) {
        if (!vset_has(set, i))
            continue;
        int v = i + f->min;
        switch (f->role) {
        case F_SEC: c->sec |= 1ull << v; break;
        case F_MIN: c->min |= 1ull << v; break;
        case F_HOUR: c->hour |= 1u << v; break;
        case F_DOM: c->dom |= 1u << v; break;
        case F_MONTH: c->month |= (uint16_t)(1u << v); break;
        case F_DOW: c->dow |= (uint8_t)(1u << (is_unix ? v % 7 : v - 1)); break;
        case F_YEAR: c->year[i / 64] |= 1ull << (i % 64); break;
        }
    }
}

static tn_err parse_field(parser *p, const fdesc *f, const char *s, const char *end, tn_cron *c)
{
    if (end - s == 1 && *s == '?') {
        if (p->is_unix || (f->role != F_DOM && f->role != F_DOW))
            return perr(p, s,
                        "'?' is allowed only in the day-of-month or day-of-week field of "
                        "the 6/7-field (Quartz) form; use '*' in the %s field",
                        f->name);
        c->flags |= f->role == F_DOM ? TN_CRON_F_DOM_Q | TN_CRON_F_DOM_ANY :
                                       TN_CRON_F_DOW_Q | TN_CRON_F_DOW_ANY;
        return TN_OK;
    }
    if (*s == '*' && (f->role == F_DOM || f->role == F_DOW))
        c->flags |= f->role == F_DOM ? TN_CRON_F_DOM_ANY : TN_CRON_F_DOW_ANY;
    bool handled = false;
    tn_err err = TN_OK;
    if (!p->is_unix && f->role == F_DOM)
        err = dom_special(p, s, end, c, &handled);
    else if (!p->is_unix && f->role == F_DOW)
        err = dow_special(p, f, s, end, c, &handled);
    if (err || handled)
        return err;
    vset set;
    memset(&set, 0, sizeof(set));
    err = parse_list(p, f, s, end, &set);
    if (!err)
        store_set(f, &set, p->is_unix, c);
    return err;
}

/* Split expr into fields at spaces and tabs; false when there are more than 7. */
static int split(const char *expr, const char *starts[8], const char *ends[8])
{
    int n = 0;
    for (const char *s = expr; *s;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        if (n == 8)
            return n + 1;
        starts[n] = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        ends[n++] = s;
    }
    return n;
}

tn_err tn_cron_parse(const char *expr, tn_cron *out, tn_errmsg *e)
{
    if (!expr)
        return tn_errmsg_set(e, TN_ERR_INVAL, "cron: no expression given");
    if (strlen(expr) > TN_CRON_MAX_LEN)
        return tn_errmsg_set(e, TN_ERR_TOOBIG, "cron: \"%.40s...\": longer than %u bytes", expr,
                             TN_CRON_MAX_LEN);
    const char *starts[8], *ends[8];
    int n = split(expr, starts, ends);
    parser p = {expr, e, n == 5};
    if (n > 7)
        return perr(&p, starts[7],
                    "expected at most 7 fields (Quartz: second minute hour "
                    "day-of-month month day-of-week [year]), found more");
    if (n < 5)
        return tn_errmsg_set(
            e, TN_ERR_PARSE,
            "cron: \"%s\": expected 5 fields (minute hour day-of-month month "
            "day-of-week) or 6-7 fields (second minute hour day-of-month month "
            "day-of-week [year]), found %d",
            expr, n);
    tn_cron c;
    memset(&c, 0, sizeof(c));
    c.dom_last = c.dow_last = c.dow_nth_day = -1;
    if (p.is_unix)
        c.flags |= TN_CRON_F_UNIX, c.sec = 1;
    const fdesc *fields = p.is_unix ? unix_fields : quartz_fields;
    for (int i = 0; i < n; i++) {
        tn_err err = parse_field(&p, &fields[i], starts[i], ends[i], &c);
        if (err)
            return err;
    }
    for (int y = 0; n < 7 && y <= TN_CRON_YEAR_MAX - TN_CRON_YEAR_MIN; y++)
        c.year[y / 64] |= 1ull << (y % 64); /* no year field: every year, as '*' */
    if (!p.is_unix) {
        bool dq = c.flags & TN_CRON_F_DOM_Q, wq = c.flags & TN_CRON_F_DOW_Q;
        if (dq && wq)
            return perr(&p, starts[5],
                        "day-of-month and day-of-week are both '?': give one "
                        "of them (e.g. '*' for every day)");
        if (!dq && !wq)
            return perr(&p, starts[5],
                        "day-of-month and day-of-week are both given: set "
                        "exactly one of them to '?' (e.g. \"0 0 12 * * ?\" or "
                        "\"0 0 12 ? * MON\")");
    }
    *out = c;
    return TN_OK;
}

/* ---- matching days --------------------------------------------------------------------- */

/* The weekday nearest day n (Saturday -> Friday, Sunday -> Monday) without leaving the
 * month; 0 when the month is shorter than n. */
static int nearest_weekday(int y, int mo, int n, int dim)
{
    if (n > dim)
        return 0;
    int wd = tn_civil_weekday(y, mo, n);
    if (wd == 6)
        return n == 1 ? 3 : n - 1;
    if (wd == 0)
        return n == dim ? n - 2 : n + 1;
    return n;
}

static bool dom_match(const tn_cron *c, int y, int mo, int d, int dim)
{
    if (c->dom_last >= 0)
        return d == dim - c->dom_last;
    if (c->flags & TN_CRON_F_LW) {
        int wd = tn_civil_weekday(y, mo, dim);
        return d == (wd == 6 ? dim - 1 : wd == 0 ? dim - 2 : dim);
    }
    if (c->dom_near > 0)
        return d == nearest_weekday(y, mo, c->dom_near, dim);
    return c->dom >> d & 1;
}

static bool dow_match(const tn_cron *c, int y, int mo, int d, int dim)
{
    int wd = tn_civil_weekday(y, mo, d);
    if (c->dow_last >= 0)
        return wd == c->dow_last && d + 7 > dim;
    if (c->dow_nth_day >= 0)
        return wd == c->dow_nth_day && (d - 1) / 7 + 1 == c->dow_nth;
    return c->dow >> wd & 1;
}

static bool day_match(const tn_cron *c, int y, int mo, int d, int dim)
{
    if (c->flags & TN_CRON_F_DOM_Q)
        return dow_match(c, y, mo, d, dim);
    if (c->flags & TN_CRON_F_DOW_Q)
        return dom_match(c, y, mo, d, dim);
    /* Unix: Vixie cron ORs the day fields when both are restricted. */
    if (!(c->flags & (TN_CRON_F_DOM_ANY | TN_CRON_F_DOW_ANY)))
        return dom_match(c, y, mo, d, dim) || dow_match(c, y, mo, d, dim);
    return dom_match(c, y, mo, d, dim) && dow_match(c, y, mo, d, dim);
}

/* ---- the search over civil time -------------------------------------------------------- */

/* The lowest set bit at or above from, or -1. */
static int next_bit(uint64_t bits, int from)
{
    if (from > 63)
        return -1;
    uint64_t m = bits >> from;
    return m ? from + __builtin_ctzll(m) : -1;
}

static int next_year(const tn_cron *c, int from)
{
    for (int y = from < TN_CRON_YEAR_MIN ? TN_CRON_YEAR_MIN : from; y <= TN_CRON_YEAR_MAX;
         y++) {
        int i = y - TN_CRON_YEAR_MIN, b = next_bit(c->year[i / 64], i % 64);
        if (b >= 0)
            return TN_CRON_YEAR_MIN + i - i % 64 + b;
        y += 63 - i % 64; /* the rest of this word is empty */
    }
    return -1;
}

enum unit {
    U_YEAR,
    U_MONTH,
    U_DAY,
    U_HOUR,
    U_MINUTE
};

/* Move t to the start of the next unit u (the following ones zeroed), carrying upward. */
static void bump(tn_civil *t, enum unit u)
{
    switch (u) {
    case U_MINUTE:
        t->second = 0;
        if (++t->minute < 60)
            return; /* fall through */
    case U_HOUR:
        t->second = t->minute = 0;
        if (++t->hour < 24)
            return; /* fall through */
    case U_DAY:
        t->second = t->minute = t->hour = 0;
        if (++t->day <= tn_civil_days_in_month(t->year, t->month))
            return; /* fall through */
    case U_MONTH:
        t->second = t->minute = t->hour = 0, t->day = 1;
        if (++t->month <= 12)
            return;
        /* fall through */
    case U_YEAR: t->second = t->minute = t->hour = 0, t->day = t->month = 1, t->year++;
    }
}

/* Set field *f to v; when v moves it forward, the finer fields restart from zero. */
static void settle(int *f, int v, tn_civil *t, enum unit u)
{
    if (*f == v)
        return;
    *f = v;
    if (u <= U_MONTH)
        t->day = 1;
    if (u <= U_DAY)
        t->hour = 0;
    if (u <= U_HOUR)
        t->minute = 0;
    t->second = 0;
}

/* The first civil time at or after *t that matches; false past TN_CRON_YEAR_MAX. Each
 * round either returns or moves t forward by at least one unit, whole units at a time. */
static bool search(const tn_cron *c, tn_civil *t)
{
    for (;;) {
        int y = next_year(c, t->year);
        if (y < 0)
            return false;
        if (y != t->year)
            *t = (tn_civil){.year = y, .month = 1, .day = 1};
        int v = next_bit(c->month, t->month);
        if (v < 0) {
            bump(t, U_YEAR);
            continue;
        }
        settle(&t->month, v, t, U_MONTH);
        int dim = tn_civil_days_in_month(t->year, t->month), d = t->day;
        while (d <= dim && !day_match(c, t->year, t->month, d, dim))
            d++;
        if (d > dim) {
            bump(t, U_MONTH);
            continue;
        }
        settle(&t->day, d, t, U_DAY);
        if ((v = next_bit(c->hour, t->hour)) < 0) {
            bump(t, U_DAY);
            continue;
        }
        settle(&t->hour, v, t, U_HOUR);
        if ((v = next_bit(c->min, t->minute)) < 0) {
            bump(t, U_HOUR);
            continue;
        }
        settle(&t->minute, v, t, U_MINUTE);
        if ((v = next_bit(c->sec, t->second)) < 0) {
            bump(t, U_MINUTE);
            continue;
        }
        t->second = v;
        return true;
    }
}

static tn_err never(tn_errmsg *e, int64_t after_ns)
{
    tn_civil a;
    tn_civil_from_seconds(after_ns / NS_PER_S, &a);
    return tn_errmsg_set(e, TN_ERR_NOENT,
                         "cron: never fires after %04d-%02d-%02dT%02d:%02d:%02dZ (searched up "
                         "to the end of %d): check the day-of-month against the months and "
                         "the year field (a time in a daylight-saving gap does not fire)",
                         a.year, a.month, a.day, a.hour, a.minute, a.second, TN_CRON_YEAR_MAX);
}

/* Civil time t, read as its first occurrence (first_ns), lies at or before the instant
 * asked about: that instant is in the repeated hour of an overlap, and every civil time
 * left in that hour already fired at its first occurrence. Go on from the overlap's end:
 * the civil time at the transition read with the offset before it (03:00 in Berlin). */
static tn_err past_overlap(tn_tz *tz, tn_civil *t, int64_t first_ns)
{
    int64_t later_ns, at_ns;
    int32_t off;
    tn_err err =
        tn_tz_from_civil(tz, t, TN_TZ_GAP_REFUSE, TN_TZ_OVERLAP_LATER, &later_ns, NULL);
    if (!err)
        err = tn_tz_transition(tz, first_ns, later_ns, &at_ns);
    if (!err)
        err = tn_tz_offset(tz, first_ns, &off);
    if (err)
        return err == TN_ERR_NOENT ? TN_ERR_INTERNAL : err;
    tn_civil_from_seconds(at_ns / NS_PER_S + off, t);
    return TN_OK;
}

/* Civil time t falls in a gap: it never happens, so it does not fire (Quartz skips it
 * rather than moving it). Go on from the gap's end, the civil time at the transition
 * (03:00 in Berlin), which comes after every civil time in the gap. */
static tn_err past_gap(tn_tz *tz, tn_civil *t)
{
    int64_t at_ns;
    tn_err err =
        tn_tz_from_civil(tz, t, TN_TZ_GAP_NEXT_VALID, TN_TZ_OVERLAP_EARLIER, &at_ns, NULL);
    return err ? err : tn_tz_to_civil(tz, at_ns, t);
}

static int64_t local_seconds(const tn_civil *t)
{
    return tn_civil_days_from(t->year, t->month, t->day) * 86400 + t->hour * 3600 +
           t->minute * 60 + t->second;
}

static tn_err tz_err(tn_errmsg *e, tn_tz *tz, tn_err err)
{
    return tn_errmsg_set(e, err, "cron: time zone \"%s\": %s", tn_tz_name(tz),
                         tn_strerror(err));
}

/* The fire times are the first occurrences of the matching civil times that exist, and
 * they come in civil order; so search civil time from the civil time of the first second
 * after after_ns, stepping over gaps (nothing there fires) and over the rest of a repeated
 * hour when after_ns is in its second run (all of it fired in the first run). Each round
 * moves the civil time forward, and the search ends past TN_CRON_YEAR_MAX. */
tn_err tn_cron_next(const tn_cron *c, tn_tz *tz, int64_t after_ns, int64_t *next_ns,
                    tn_errmsg *e)
{
    int64_t s0 = after_ns / NS_PER_S - (after_ns % NS_PER_S < 0) + 1; /* floor + 1 */
    if (s0 > INT64_MAX / NS_PER_S)
        return never(e, after_ns);
    tn_civil t;
    tn_err err = tn_tz_to_civil(tz, s0 * NS_PER_S, &t);
    if (err)
        return tz_err(e, tz, err);
    if (t.year < TN_CRON_YEAR_MIN)
        t = (tn_civil){.year = TN_CRON_YEAR_MIN, .month = 1, .day = 1};
    for (;;) {
        if (!search(c, &t))
            return never(e, after_ns);
        int64_t ns, was = local_seconds(&t);
        tn_tz_kind kind = TN_TZ_UNIQUE;
        err = tn_tz_from_civil(tz, &t, TN_TZ_GAP_REFUSE, TN_TZ_OVERLAP_EARLIER, &ns, &kind);
        if (err == TN_ERR_TOOBIG)
            return never(e, after_ns);
        if (err == TN_ERR_NOENT && kind == TN_TZ_GAP)
            err = past_gap(tz, &t);
        else if (!err && ns > after_ns)
            return *next_ns = ns, TN_OK;
        else if (!err && kind == TN_TZ_OVERLAP)
            err = past_overlap(tz, &t, ns);
        else if (!err)
            err = TN_ERR_INTERNAL; /* a unique civil time at or after s0's lies before it */
        if (!err && local_seconds(&t) <= was)
            err = TN_ERR_INTERNAL;
        if (err)
            return tz_err(e, tz, err);
    }
}

/* A schedule's specification: defaults, params, validation, and the window bounds a user
 * writes ("2026-01-01", "2026-01-01 08:00", ISO with an offset) read in the schedule's zone. */
#include "schedule.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def.h"
#include "util.h"

/* ---- overlap policy words --------------------------------------------------------------- */

#define OV_WORD(c, w)    #w,
#define OV_ALLOWED(c, w) ", " #w

static const char *const overlap_words[] = {TN_OVERLAP_LIST(OV_WORD)};

const char *tn_overlap_name(tn_overlap o)
{
    return (unsigned)o < TN_ARRAY_LEN(overlap_words) ? overlap_words[o] : "?";
}

tn_err tn_overlap_parse(const char *word, tn_overlap *out)
{
    for (size_t i = 0; word && i < TN_ARRAY_LEN(overlap_words); i++)
        if (strcmp(word, overlap_words[i]) == 0) {
            *out = (tn_overlap)i;
            return TN_OK;
        }
    return TN_ERR_INVAL;
}

const char *tn_overlap_allowed(void)
{
    return &(TN_OVERLAP_LIST(OV_ALLOWED))[2];
}

/* ---- the spec ----------------------------------------------------------------------------- */

void tn_sched_spec_init(tn_sched_spec *s)
{
    memset(s, 0, sizeof(*s));
    strcpy(s->tz, "UTC");
    s->overlap = TN_OVERLAP_ALLOW_ALL;
    s->catchup_ms = TN_SCHED_DEFAULT_CATCHUP_MS;
}

void tn_sched_spec_fini(tn_sched_spec *s)
{
    if (!s)
        return;
    for (uint32_t i = 0; i < s->nparams; i++) {
        free(s->param_keys[i]);
        free(s->param_values[i]);
    }
    free(s->param_keys);
    free(s->param_values);
    s->param_keys = s->param_values = NULL;
    s->nparams = 0;
}

/* Param keys follow the definition's rule: they appear inside ${...}. */
static bool sched_key_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > TN_DEF_PARAM_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* A second value for a key replaces the first, as a later `--param k=v` does. */
tn_err tn_sched_spec_param(tn_sched_spec *s, const char *key, const char *value)
{
    if (!sched_key_valid(key) || !value)
        return TN_ERR_INVAL;
    if (strlen(value) > TN_SCHED_PARAM_MAX)
        return TN_ERR_TOOBIG;
    char *v = strdup(value);
    if (!v)
        return TN_ERR_NOMEM;
    for (uint32_t i = 0; i < s->nparams; i++)
        if (strcmp(s->param_keys[i], key) == 0) {
            free(s->param_values[i]);
            s->param_values[i] = v;
            return TN_OK;
        }
    if (s->nparams >= TN_SCHED_MAX_PARAMS) {
        free(v);
        return TN_ERR_TOOBIG;
    }
    char *k = strdup(key);
    char **ks = realloc(s->param_keys, (s->nparams + 1) * sizeof(*ks));
    if (ks)
        s->param_keys = ks;
    char **vs = ks ? realloc(s->param_values, (s->nparams + 1) * sizeof(*vs)) : NULL;
    if (vs)
        s->param_values = vs;
    if (!k || !ks || !vs) {
        free(k);
        free(v);
        return TN_ERR_NOMEM;
    }
    s->param_keys[s->nparams] = k;
    s->param_values[s->nparams++] = v;
    return TN_OK;
}

tn_err tn_sched_spec_copy(tn_sched_spec *dst, const tn_sched_spec *src)
{
    tn_sched_spec t = *src;
    t.param_keys = t.param_values = NULL;
    t.nparams = 0;
    for (uint32_t i = 0; i < src->nparams; i++) {
        tn_err err = tn_sched_spec_param(&t, src->param_keys[i], src->param_values[i]);
        if (err) {
            tn_sched_spec_fini(&t);
            return err;
        }
    }
    *dst = t;
    return TN_OK;
}

/* ---- validation --------------------------------------------------------------------------- */

static bool fixed_str_ok(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static tn_err check_words(const tn_sched_spec *s, tn_errmsg *e)
{
    tn_def_priority p;
    tn_def_failure_strategy f;
    if (!fixed_str_ok(s->priority, sizeof(s->priority)) ||
        (s->priority[0] && tn_def_priority_parse(s->priority, &p) != TN_OK))
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule priority \"%.15s\" is unknown: use one of %s, or none "
                             "for the workflow's own",
                             s->priority, tn_def_priority_allowed());
    if (!fixed_str_ok(s->failure_strategy, sizeof(s->failure_strategy)) ||
        (s->failure_strategy[0] &&
         tn_def_failure_strategy_parse(s->failure_strategy, &f) != TN_OK))
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule failure strategy \"%.15s\" is unknown: use one of %s, "
                             "or none for the workflow's own",
                             s->failure_strategy, tn_def_failure_strategy_allowed());
    if (!fixed_str_ok(s->worker_group, sizeof(s->worker_group)) ||
        (s->worker_group[0] && !tn_def_name_valid(s->worker_group)))
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule worker group \"%.64s\" is not a valid name: 1..255 "
                             "bytes of UTF-8 text without control characters or '/'",
                             s->worker_group);
    if ((unsigned)s->overlap >= TN_OVERLAP__COUNT)
        return tn_errmsg_set(e, TN_ERR_INVAL, "schedule overlap policy %u is unknown: use %s",
                             (unsigned)s->overlap, tn_overlap_allowed());
    return TN_OK;
}

static tn_err check_params(const tn_sched_spec *s, tn_errmsg *e)
{
    if (s->nparams > TN_SCHED_MAX_PARAMS)
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule has %" PRIu32 " params; the limit is %d", s->nparams,
                             TN_SCHED_MAX_PARAMS);
    if (s->nparams && (!s->param_keys || !s->param_values))
        return tn_errmsg_set(e, TN_ERR_INVAL, "schedule params are missing");
    for (uint32_t i = 0; i < s->nparams; i++) {
        if (!sched_key_valid(s->param_keys[i]))
            return tn_errmsg_set(e, TN_ERR_INVAL,
                                 "schedule param name \"%.80s\" is not valid: use 1..%u "
                                 "characters of A-Z a-z 0-9 _ . -",
                                 s->param_keys[i] ? s->param_keys[i] : "",
                                 TN_DEF_PARAM_KEY_MAX);
        if (!s->param_values[i] || strlen(s->param_values[i]) > TN_SCHED_PARAM_MAX)
            return tn_errmsg_set(e, TN_ERR_INVAL,
                                 "schedule param \"%s\": the value is missing or longer than "
                                 "%u bytes",
                                 s->param_keys[i], TN_SCHED_PARAM_MAX);
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(s->param_keys[j], s->param_keys[i]) == 0)
                return tn_errmsg_set(e, TN_ERR_INVAL, "schedule param \"%s\" is given twice",
                                     s->param_keys[i]);
    }
    return TN_OK;
}

static tn_err check_window(const tn_sched_spec *s, tn_errmsg *e)
{
    if (s->start_ns < 0 || s->end_ns < 0)
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule %s is before 1970: a bound is a time from 1970 on, or "
                             "none for an open window",
                             s->start_ns < 0 ? "start" : "end");
    if (s->start_ns && s->end_ns && s->start_ns >= s->end_ns)
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule start is not before its end: the window would never "
                             "open; give an end later than the start");
    if (s->catchup_ms < 0 || (uint64_t)s->catchup_ms > TN_DEF_MAX_DURATION_MS)
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule catchup %" PRId64 "ms is out of range: give 0 (never "
                             "run a late fire) up to 3650d",
                             s->catchup_ms);
    return TN_OK;
}

tn_err tn_sched_spec_validate(const tn_sched_spec *s, tn_errmsg *e)
{
    tn_cron cron;
    tn_tz *tz = NULL;
    tn_errmsg sub = {{0}};
    tn_err err;

    if (!s)
        return tn_errmsg_set(e, TN_ERR_INVAL, "schedule: no spec given");
    if (!fixed_str_ok(s->cron, sizeof(s->cron)) || !s->cron[0])
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "schedule has no cron expression: give one such as "
                             "\"0 0 2 * * ?\" (Quartz) or \"0 2 * * *\" (Unix)");
    if ((err = tn_cron_parse(s->cron, &cron, &sub)) != TN_OK)
        return tn_errmsg_set(e, err == TN_ERR_NOMEM ? err : TN_ERR_INVAL, "%s", sub.text);
    if (!fixed_str_ok(s->tz, sizeof(s->tz)))
        return tn_errmsg_set(e, TN_ERR_INVAL, "schedule time zone name is too long");
    if ((err = tn_tz_open(s->tz[0] ? s->tz : "UTC", &tz, &sub)) != TN_OK)
        return tn_errmsg_set(e,
                             err == TN_ERR_NOMEM || err == TN_ERR_INTERNAL ? err : TN_ERR_INVAL,
                             "schedule %s", sub.text);
    tn_tz_free(tz);
    if ((err = check_window(s, e)) || (err = check_words(s, e)) || (err = check_params(s, e)))
        return err;
    return TN_OK;
}

/* ---- window bounds ------------------------------------------------------------------------ */

#define TIME_FORMS                                                                          \
    "write \"YYYY-MM-DD\", \"YYYY-MM-DD HH:MM[:SS]\" or \"YYYY-MM-DDTHH:MM[:SS]\" (in the " \
    "schedule's time zone), or an ISO time with an offset such as "                         \
    "\"2026-01-01T08:00:00+08:00\" or \"2026-01-01T00:00:00Z\""

/* n digits at *p into *v; advances *p. */
static bool num(const char **p, int n, int32_t *v)
{
    int32_t x = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return true;
}

static bool lit(const char **p, char ch)
{
    if (**p != ch)
        return false;
    (*p)++;
    return true;
}

/* The offset at *p: "Z", "+HH:MM", "+HHMM" (or '-'); false when there is none or it
 * is malformed. */
static bool offset(const char *p, int32_t *off_s)
{
    int32_t h, m;
    if ((p[0] == 'Z' || p[0] == 'z') && !p[1]) {
        *off_s = 0;
        return true;
    }
    if (p[0] != '+' && p[0] != '-')
        return false;
    int sign = p[0] == '-' ? -1 : 1;
    p++;
    if (!num(&p, 2, &h))
        return false;
    (void)lit(&p, ':');
    if (!num(&p, 2, &m) || *p || h > 18 || m > 59)
        return false;
    *off_s = sign * (h * 3600 + m * 60);
    return true;
}

/* The date and time fields; *rest points after them (at an offset or the end). */
static bool civil_fields(const char *s, tn_civil *c, const char **rest)
{
    const char *p = s;
    memset(c, 0, sizeof(*c));
    if (!num(&p, 4, &c->year) || !lit(&p, '-') || !num(&p, 2, &c->month) || !lit(&p, '-') ||
        !num(&p, 2, &c->day))
        return false;
    if (*p == ' ' || *p == 'T' || *p == 't') {
        p++;
        if (!num(&p, 2, &c->hour) || !lit(&p, ':') || !num(&p, 2, &c->minute))
            return false;
        if (lit(&p, ':') && !num(&p, 2, &c->second))
            return false;
    }
    *rest = p;
    return true;
}

static bool civil_in_range(const tn_civil *c)
{
    return c->month >= 1 && c->month <= 12 && c->day >= 1 &&
           c->day <= tn_civil_days_in_month(c->year, c->month) && c->hour <= 23 &&
           c->minute <= 59 && c->second <= 59;
}

/* An instant with an explicit offset: no zone involved. */
static tn_err at_offset(const char *s, const tn_civil *c, int32_t off_s, int64_t *out_ns,
                        tn_errmsg *e)
{
    int64_t secs = tn_civil_days_from(c->year, c->month, c->day) * 86400 + c->hour * 3600 +
                   c->minute * 60 + c->second - off_s;
    if (secs > INT64_MAX / 1000000000 || secs < INT64_MIN / 1000000000)
        return tn_errmsg_set(e, TN_ERR_INVAL, "time \"%.64s\" is out of range (1678..2262)", s);
    *out_ns = secs * 1000000000;
    return TN_OK;
}

static tn_err in_zone(const char *s, const tn_civil *c, const char *tzname, int64_t *out_ns,
                      tn_errmsg *e)
{
    tn_tz *tz = NULL;
    tn_tz_kind kind = TN_TZ_UNIQUE;
    tn_errmsg sub = {{0}};
    tn_err err = tn_tz_open(tzname, &tz, &sub);
    if (err)
        return tn_errmsg_set(e,
                             err == TN_ERR_NOMEM || err == TN_ERR_INTERNAL ? err : TN_ERR_INVAL,
                             "time \"%.64s\": %s", s, sub.text);
    err = tn_tz_from_civil(tz, c, TN_TZ_GAP_REFUSE, TN_TZ_OVERLAP_EARLIER, out_ns, &kind);
    tn_tz_free(tz);
    if (err == TN_OK)
        return TN_OK;
    if (kind == TN_TZ_GAP)
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "time \"%.64s\" does not exist in time zone %s (the clocks skip "
                             "it when daylight saving time starts): give a time outside the "
                             "gap, or an ISO time with an offset",
                             s, tzname);
    if (err == TN_ERR_TOOBIG)
        return tn_errmsg_set(e, TN_ERR_INVAL, "time \"%.64s\" is out of range (1678..2262)", s);
    return tn_errmsg_set(e, err == TN_ERR_NOMEM || err == TN_ERR_INTERNAL ? err : TN_ERR_INVAL,
                         "time \"%.64s\" in time zone %s: %s", s, tzname, tn_strerror(err));
}

tn_err tn_sched_parse_time(const char *s, const char *tz, int64_t *out_ns, tn_errmsg *e)
{
    tn_civil c;
    const char *rest = NULL;
    int32_t off_s = 0;

    if (!s || !out_ns)
        return tn_errmsg_set(e, TN_ERR_INVAL, "time: none given: " TIME_FORMS);
    if (!civil_fields(s, &c, &rest) || (*rest && !offset(rest, &off_s)))
        return tn_errmsg_set(e, TN_ERR_INVAL, "time \"%.64s\" is not understood: " TIME_FORMS,
                             s);
    if (!civil_in_range(&c))
        return tn_errmsg_set(e, TN_ERR_INVAL,
                             "time \"%.64s\" is not a valid date and time (month 01-12, a day "
                             "of that month, hour 00-23, minute and second 00-59)",
                             s);
    if (*rest)
        return at_offset(s, &c, off_s, out_ns, e);
    return in_zone(s, &c, tz && *tz ? tz : "UTC", out_ns, e);
}

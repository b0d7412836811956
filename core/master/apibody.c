/* The HTTP API's request bodies (schedule set, backfill) read with jansson into control
 * requests, every field bounded and checked; and the state-machine routes (JSON, SVG). */
#include "apibody.h"

#include <dlfcn.h>
#include <gvc.h>
#include <gvplugin.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlsched.h"
#include "jsonout.h"
#include "log.h"
#include "objproj.h"
#include "schedule.h"
#include "sm.h"
#include "tz.h"

/* ------------------------------------------------------------------------------ */
/* answers */

static const char *code_name(int status)
{
    switch (status) {
    case 307: return "redirect";
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "too_big";
    case 503: return "unavailable";
    default: return "internal";
    }
}

void tn_api_error(tn_http_rep *rep, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    free(rep->body.s);
    rep->body = (tn_sb){0};
    rep->status = status;
    rep->ctype = "application/json";
    /* a message with a peer's bytes that are not UTF-8 has them as U+FFFD */
    if (!tn_jo_dump(&rep->body,
                    json_pack("{s:{s:s,s:i,s:o}}", "error", "code", code_name(status), "status",
                              status, "message", tn_jo_str(msg))))
        tn_sb_printf(&rep->body,
                     "{\"error\":{\"code\":\"%s\",\"status\":%d,\"message\":\"out of "
                     "memory\"}}",
                     code_name(status), status);
}

/* Answer j (its reference taken) with status 200. */
static void answer_json(tn_api_call *c, json_t *j)
{
    if (!tn_jo_dump(&c->rep->body, j))
        tn_api_error(c->rep, 503, "out of memory writing the reply; try again");
}

/* ------------------------------------------------------------------------------ */
/* bodies */

bool tn_apibody_object(tn_api_call *c, const char *const *known, size_t nknown)
{
    json_error_t err;
    c->body = json_loadb(c->hr->body, c->hr->len, JSON_REJECT_DUPLICATES, &err);
    if (!c->body) {
        tn_api_error(c->rep, 400, "the body is not a JSON object: %s (line %d, column %d)",
                     err.text, err.line, err.column);
        return false;
    }
    if (!json_is_object(c->body)) {
        tn_api_error(c->rep, 400, "the body is another JSON value, not a JSON object {...}");
        return false;
    }
    if (!known)
        return true;
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v)
    {
        size_t i = 0;
        while (i < nknown && strcmp(k, known[i]) != 0)
            i++;
        if (i == nknown) {
            char list[256] = "";
            for (i = 0; i < nknown; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         i ? ", " : "", known[i]);
            tn_api_error(c->rep, 400, "unknown field \"%.64s\" in the body (known: %s)", k,
                         list);
            return false;
        }
    }
    return true;
}

/* Member key, when there and not null; NULL otherwise. */
static json_t *member(tn_api_call *c, const char *key)
{
    json_t *v = json_object_get(c->body, key);
    return json_is_null(v) ? NULL : v;
}

/* A string member of at most max bytes with no NUL into *out (pointing into the body);
 * false (answered 400) when it is another type, too long, or missing and required. */
static bool str_field(tn_api_call *c, const char *key, size_t max, bool required, tn_str *out)
{
    json_t *v = member(c, key);
    if (!v && !required)
        return true;
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n > max || memchr(json_string_value(v), 0, n)) {
        tn_api_error(c->rep, 400, "\"%s\" must be a string of at most %zu bytes%s", key, max,
                     v ? "" : " and is missing");
        return false;
    }
    *out = (tn_str){json_string_value(v), (uint32_t)n};
    return true;
}

/* The same into a fixed buffer of cap bytes (NUL included). */
static bool str_copy(tn_api_call *c, const char *key, char *dst, size_t cap, bool required)
{
    tn_str s = {0};
    if (!str_field(c, key, cap - 1, required, &s))
        return false;
    if (s.p)
        snprintf(dst, cap, "%.*s", (int)s.len, s.p);
    return true;
}

/* An integer member in [min, max] into *out (left alone when absent). */
static bool int_field(tn_api_call *c, const char *key, json_int_t min, json_int_t max,
                      json_int_t *out)
{
    json_t *v = member(c, key);
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        tn_api_error(c->rep, 400, "\"%s\" must be an integer from %lld to %lld", key,
                     (long long)min, (long long)max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* The "params" member: an object of at most max strings (keys up to TN_DEF_MAX_NAME
 * bytes, values up to TN_SCHED_PARAM_MAX); fn(arg, key, value) for each. */
static bool params_field(tn_api_call *c, size_t max,
                         bool (*fn)(tn_api_call *c, void *arg, const char *k, json_t *v),
                         void *arg)
{
    json_t *p = member(c, "params");
    if (!p)
        return true;
    if (!json_is_object(p)) {
        tn_api_error(c->rep, 400, "\"params\" must be an object of strings");
        return false;
    }
    if (json_object_size(p) > max) {
        tn_api_error(c->rep, 413, "\"params\" has %zu entries: at most %zu",
                     json_object_size(p), max);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        if (!json_is_string(v) || json_string_length(v) > TN_SCHED_PARAM_MAX ||
            strlen(k) > TN_DEF_MAX_NAME ||
            memchr(json_string_value(v), 0, json_string_length(v))) {
            tn_api_error(c->rep, 400,
                         "\"params\".\"%.64s\" must be a string of at most %u bytes (names "
                         "at most %u bytes)",
                         k, TN_SCHED_PARAM_MAX, TN_DEF_MAX_NAME);
            return false;
        }
        if (!fn(c, arg, k, v))
            return false;
    }
    return true;
}

/* A zone name that ICU knows; false (answered 400 naming the field) otherwise. */
static bool zone_ok(tn_api_call *c, const char *field, const char *zone)
{
    tn_tz *tz;
    tn_errmsg e = {{0}};
    if (!zone[0] || tn_tz_open(zone, &tz, &e) == TN_OK) {
        if (zone[0])
            tn_tz_free(tz);
        return true;
    }
    tn_api_error(c->rep, 400, "\"%s\": %s", field, e.text);
    return false;
}

/* ------------------------------------------------------------------------------ */
/* PUT /api/v1/schedules/{name} */

static const char *const SPEC_FIELDS[] = {"cron",
                                          "tz",
                                          "start",
                                          "end",
                                          "overlap",
                                          "catchup_ms",
                                          "pause_on_failure",
                                          "priority",
                                          "failure_strategy",
                                          "worker_group",
                                          "params"};

/* A window bound ("start", "end") read in the spec's zone. */
static bool bound_field(tn_api_call *c, const char *key, const char *tz, int64_t *ns)
{
    char buf[TN_CTL_DATE_MAX + 1] = "";
    if (!str_copy(c, key, buf, sizeof(buf), false))
        return false;
    tn_errmsg e = {{0}};
    if (!buf[0] || tn_sched_parse_time(buf, tz, ns, &e) == TN_OK)
        return true;
    tn_api_error(c->rep, 400, "\"%s\" \"%s\": %s", key, buf, e.text);
    return false;
}

static bool spec_param(tn_api_call *c, void *arg, const char *k, json_t *v)
{
    tn_err e = tn_sched_spec_param(arg, k, json_string_value(v));
    if (e)
        tn_api_error(c->rep, e == TN_ERR_TOOBIG ? 413 : 400, "\"params\".\"%.64s\": %s", k,
                     e == TN_ERR_TOOBIG ? "too many params, or a value too long" :
                                          "not a param name (letters, digits, _ and .)");
    return e == TN_OK;
}

/* The spec's fields from the body into *sp; false when answered. */
static bool spec_fields(tn_api_call *c, tn_sched_spec *sp)
{
    char overlap[32] = "";
    json_int_t catchup = sp->catchup_ms;
    json_t *pof = member(c, "pause_on_failure");
    if (!str_copy(c, "cron", sp->cron, sizeof(sp->cron), true) ||
        !str_copy(c, "tz", sp->tz, sizeof(sp->tz), false) || !zone_ok(c, "tz", sp->tz) ||
        !bound_field(c, "start", sp->tz, &sp->start_ns) ||
        !bound_field(c, "end", sp->tz, &sp->end_ns) ||
        !str_copy(c, "overlap", overlap, sizeof(overlap), false) ||
        !int_field(c, "catchup_ms", 0, INT64_MAX, &catchup) ||
        !str_copy(c, "priority", sp->priority, sizeof(sp->priority), false) ||
        !str_copy(c, "failure_strategy", sp->failure_strategy, sizeof(sp->failure_strategy),
                  false) ||
        !str_copy(c, "worker_group", sp->worker_group, sizeof(sp->worker_group), false))
        return false;
    if (overlap[0] && tn_overlap_parse(overlap, &sp->overlap) != TN_OK) {
        tn_api_error(c->rep, 400, "\"overlap\": unknown policy \"%s\" (one of: %s)", overlap,
                     tn_overlap_allowed());
        return false;
    }
    if (pof && !json_is_boolean(pof)) {
        tn_api_error(c->rep, 400, "\"pause_on_failure\" must be true or false");
        return false;
    }
    sp->catchup_ms = catchup;
    sp->pause_on_failure = json_is_true(pof);
    return params_field(c, TN_SCHED_MAX_PARAMS, spec_param, sp);
}

bool tn_apibody_sched_set(tn_api_call *c)
{
    if (!tn_apibody_object(c, SPEC_FIELDS, TN_ARRAY_LEN(SPEC_FIELDS)))
        return false;
    tn_sched_spec sp;
    tn_sched_spec_init(&sp);
    bool ok = spec_fields(c, &sp);
    tn_errmsg e = {{0}};
    if (ok && tn_sched_spec_validate(&sp, &e) != TN_OK) {
        tn_api_error(c->rep, 400, "%s", e.text);
        ok = false;
    }
    tn_buf b = {0};
    if (ok && tn_ctl_spec_encode(&sp, &b) != TN_OK) {
        tn_api_error(c->rep, 503, "out of memory");
        ok = false;
    }
    tn_sched_spec_fini(&sp);
    if (!ok) {
        tn_buf_free(&b);
        return false;
    }
    c->keep = b.data;
    c->r->bytes = (tn_str){b.data, (uint32_t)b.size};
    c->r->name = tn_str_c(c->name);
    return true;
}

/* ------------------------------------------------------------------------------ */
/* GET /api/v1/schedules/{name}/next?count=N&after_ns=T */

static bool query_num(tn_api_call *c, const char *key, uint64_t min, uint64_t max, uint64_t *v)
{
    char buf[32];
    if (!tn_http_query(c->hr->query, key, buf, sizeof(buf)))
        return true;
    char *end;
    unsigned long long x = strtoull(buf, &end, 10);
    if (!buf[0] || *end || buf[0] == '-' || buf[0] == '+' || buf[0] == ' ' || x < min ||
        x > max) {
        tn_api_error(c->rep, 400,
                     "query parameter %s=\"%s\": give an integer from %" PRIu64 " to %" PRIu64,
                     key, buf, min, max);
        return false;
    }
    *v = x;
    return true;
}

bool tn_apibody_sched_next(tn_api_call *c)
{
    uint64_t count = 5, after = 0;
    if (!query_num(c, "count", 1, TN_CTL_NEXT_MAX, &count) ||
        !query_num(c, "after_ns", 1, INT64_MAX, &after))
        return false;
    c->r->name = tn_str_c(c->name);
    c->r->slots = (int64_t)count;
    c->r->offset = after; /* 0: from now */
    return true;
}

/* ------------------------------------------------------------------------------ */
/* POST /api/v1/backfills */

static const char *const BF_FIELDS[] = {"workflow", "from",  "to",       "dates",
                                        "tz",       "order", "parallel", "params"};

/* A date as written: its form is checked here (the zone it reads in is the master's). */
static bool date_ok(tn_api_call *c, const char *field, tn_str d)
{
    char buf[TN_CTL_DATE_MAX + 1];
    snprintf(buf, sizeof(buf), "%.*s", (int)d.len, d.p);
    int64_t ns;
    tn_errmsg e = {{0}};
    if (d.len && tn_sched_parse_time(buf, "UTC", &ns, &e) == TN_OK)
        return true;
    tn_api_error(c->rep, 400,
                 "%s \"%s\" is not a date (YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or ISO 8601)%s%s",
                 field, buf, e.text[0] ? ": " : "", e.text);
    return false;
}

/* "dates": an array of dates into q->dates (malloc'd; the caller frees it). */
static bool dates_field(tn_api_call *c, tn_ctl_bf_req *q)
{
    json_t *a = member(c, "dates");
    if (!a)
        return true;
    if (!json_is_array(a) || json_array_size(a) == 0) {
        tn_api_error(c->rep, 400, "\"dates\" must be a non-empty array of dates");
        return false;
    }
    if (json_array_size(a) > TN_BACKFILL_MAX_DATES) {
        tn_api_error(c->rep, 413, "\"dates\" has %zu dates: a backfill runs at most %u",
                     json_array_size(a), TN_BACKFILL_MAX_DATES);
        return false;
    }
    if (!(q->dates = calloc(json_array_size(a), sizeof(*q->dates)))) {
        tn_api_error(c->rep, 503, "out of memory");
        return false;
    }
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        char field[32];
        snprintf(field, sizeof(field), "\"dates\"[%zu]", i);
        tn_str d = {json_string_value(v), (uint32_t)json_string_length(v)};
        if (!json_is_string(v) || d.len > TN_CTL_DATE_MAX) {
            tn_api_error(c->rep, 400, "%s must be a date string of at most %d bytes", field,
                         TN_CTL_DATE_MAX);
            return false;
        }
        if (!date_ok(c, field, d))
            return false;
        q->dates[q->ndates++] = d;
    }
    return true;
}

static bool bf_param(tn_api_call *c, void *arg, const char *k, json_t *v)
{
    tn_ctl_req *r = arg;
    r->pkeys[r->nparams] = tn_str_c(k);
    r->pvals[r->nparams++] = (tn_str){json_string_value(v), (uint32_t)json_string_length(v)};
    return true;
}

/* The request's fields into q and c->r; false when answered. */
static bool bf_fields(tn_api_call *c, tn_ctl_bf_req *q)
{
    tn_str order = {0};
    json_int_t parallel = 1;
    if (!str_field(c, "workflow", TN_DEF_MAX_NAME, true, &c->r->name) ||
        !str_field(c, "from", TN_CTL_DATE_MAX, false, &q->from) ||
        !str_field(c, "to", TN_CTL_DATE_MAX, false, &q->to) ||
        !str_field(c, "tz", TN_TZ_MAX_NAME, false, &q->tz) ||
        !str_field(c, "order", 8, false, &order) ||
        !int_field(c, "parallel", 1, 1000, &parallel) || !dates_field(c, q))
        return false;
    bool range = q->from.p || q->to.p;
    if ((range && q->ndates) || (!q->ndates && (!q->from.p || !q->to.p))) {
        tn_api_error(c->rep, 400,
                     "give \"from\" and \"to\" (the dates of the range), or \"dates\" (a "
                     "list), not both");
        return false;
    }
    if (range && (!date_ok(c, "\"from\"", q->from) || !date_ok(c, "\"to\"", q->to)))
        return false;
    char zone[TN_TZ_MAX_NAME + 1];
    snprintf(zone, sizeof(zone), "%.*s", (int)q->tz.len, q->tz.p ? q->tz.p : "");
    if (!zone_ok(c, "tz", zone))
        return false;
    if (order.p && !tn_str_eq(order, "asc") && !tn_str_eq(order, "desc")) {
        tn_api_error(c->rep, 400, "\"order\" is \"asc\" or \"desc\", not \"%.*s\"",
                     (int)order.len, order.p);
        return false;
    }
    q->desc = order.p && tn_str_eq(order, "desc");
    c->r->slots = parallel;
    return params_field(c, TN_CTL_MAX_LIST, bf_param, c->r);
}

bool tn_apibody_backfill(tn_api_call *c)
{
    if (!tn_apibody_object(c, BF_FIELDS, TN_ARRAY_LEN(BF_FIELDS)))
        return false;
    tn_ctl_bf_req q = {0};
    bool ok = bf_fields(c, &q);
    tn_buf b = {0};
    if (ok && tn_ctl_bf_encode(&q, &b) != TN_OK) {
        tn_api_error(c->rep, 503, "out of memory");
        ok = false;
    }
    free(q.dates);
    if (!ok) {
        tn_buf_free(&b);
        return false;
    }
    c->keep = b.data;
    c->r->bytes = (tn_str){b.data, (uint32_t)b.size};
    return true;
}

/* ------------------------------------------------------------------------------ */
/* the state machines */

static const tn_sm *sm_named(tn_api_call *c)
{
    const tn_sm *m = tn_sm_by_name(c->name);
    if (m)
        return m;
    char known[256] = "";
    for (unsigned i = 1; i <= TN_MACHINE_MAX; i++)
        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                 i > 1 ? ", " : "", tn_sm_get(i)->name);
    tn_api_error(c->rep, 404, "no state machine \"%s\" (known: %s; see /api/v1/statemachines)",
                 c->name, known);
    return NULL;
}

static json_t *names_json(const char *const *names, unsigned n)
{
    json_t *a = json_array();
    for (unsigned i = 0; a && i < n; i++)
        tn_jo_push(a, json_string(names[i]));
    return a;
}

bool tn_apibody_sm_list(tn_api_call *c)
{
    json_t *a = json_array();
    for (unsigned i = 1; a && i <= TN_MACHINE_MAX; i++) {
        const tn_sm *m = tn_sm_get(i);
        char svg[128];
        snprintf(svg, sizeof(svg), "/api/v1/statemachines/%s/svg", m->name);
        tn_jo_push(a, json_pack("{s:s,s:s,s:o,s:o,s:i,s:s}", "name", m->name, "initial",
                                tn_sm_state_name(m, m->initial), "states",
                                names_json(m->state_names, m->nstates), "events",
                                names_json(m->event_names, m->nevents), "transitions",
                                (int)m->ntrans, "svg", svg));
    }
    answer_json(c, a);
    return false;
}

bool tn_apibody_sm_show(tn_api_call *c)
{
    const tn_sm *m = sm_named(c);
    if (!m)
        return false;
    json_t *states = json_array(), *trans = json_array();
    for (unsigned s = 0; states && s < m->nstates; s++)
        tn_jo_push(states, json_pack("{s:s,s:b,s:b}", "name", m->state_names[s], "initial",
                                     s == m->initial, "final", m->final[s]));
    for (unsigned s = 0; trans && s < m->nstates; s++)
        for (unsigned e = 0; e < m->nevents; e++) {
            tn_sm_trans t = tn_sm_next(m, s, e);
            if (t.to != TN_SM_ILLEGAL)
                tn_jo_push(trans,
                           json_pack("{s:s,s:s,s:s}", "from", tn_sm_state_name(m, s), "event",
                                     tn_sm_event_name(m, e), "to", tn_sm_state_name(m, t.to)));
        }
    answer_json(c, json_pack("{s:s,s:s,s:o,s:o,s:o}", "name", m->name, "initial",
                             tn_sm_state_name(m, m->initial), "states", states, "events",
                             names_json(m->event_names, m->nevents), "transitions", trans));
    return false;
}

static pthread_mutex_t svg_mu = PTHREAD_MUTEX_INITIALIZER;
static char *svg_cache[TN_MACHINE_MAX + 1]; /* kept to the end of the process */

/* A Graphviz context with only the two plugins a diagram needs, dot's layout and the core
 * renderers (svg): gvContext() would load every installed plugin, among them pango's
 * text layout, which brings fontconfig and its caches for no gain here (text widths are
 * estimated from Graphviz's own font metrics instead). The plugins stay loaded for the
 * process. When they cannot be loaded, gvContext() with what is installed. Under svg_mu. */
static GVC_t *context(void)
{
    static lt_symlist_t builtins[3];
    static bool tried;
    if (!tried) {
        tried = true;
        static const char *const libs[2][2] = {
            {TN_GV_PLUGIN_DIR "/libgvplugin_dot_layout.so." TN_GV_PLUGIN_VERSION,
             "gvplugin_dot_layout_LTX_library"},
            {TN_GV_PLUGIN_DIR "/libgvplugin_core.so." TN_GV_PLUGIN_VERSION,
             "gvplugin_core_LTX_library"}};
        for (int i = 0; i < 2; i++) {
            void *h = dlopen(libs[i][0], RTLD_NOW | RTLD_LOCAL);
            void *sym = h ? dlsym(h, libs[i][1]) : NULL;
            if (!sym) {
                const char *why = dlerror();
                tn_warn("http",
                        "msg=\"Graphviz plugin not loaded; the diagrams use every installed "
                        "plugin instead\" path=%s why=\"%s\"",
                        libs[i][0], why ? why : "no library symbol");
                builtins[0].name = NULL;
                break;
            }
            builtins[i] = (lt_symlist_t){libs[i][1], sym};
        }
    }
    return builtins[0].name ? gvContextPlugins(builtins, 0) : gvContext();
}

/* Lay out and render dot as SVG with Graphviz; malloc'd, or NULL. Under svg_mu. */
static char *render(const char *dot)
{
    GVC_t *gvc = context();
    Agraph_t *g = gvc ? agmemread(dot) : NULL;
    char *data = NULL, *out = NULL;
    unsigned int len = 0;
    if (g && gvLayout(gvc, g, "dot") == 0) {
        if (gvRenderData(gvc, g, "svg", &data, &len) == 0 && data)
            out = strndup(data, len);
        gvFreeRenderData(data);
        gvFreeLayout(gvc, g);
    }
    if (g)
        agclose(g);
    if (gvc)
        gvFreeContext(gvc);
    return out;
}

const char *tn_apibody_sm_render(const char *machine, tn_errmsg *msg)
{
    const tn_sm *m = tn_sm_by_name(machine);
    if (!m) {
        tn_errmsg_set(msg, TN_ERR_NOENT, "no state machine \"%s\"", machine);
        return NULL;
    }
    pthread_mutex_lock(&svg_mu);
    if (!svg_cache[m->machine])
        svg_cache[m->machine] = render(m->dot);
    const char *svg = svg_cache[m->machine];
    pthread_mutex_unlock(&svg_mu);
    if (!svg)
        tn_errmsg_set(msg, TN_ERR_INTERNAL,
                      "Graphviz could not lay out the %s machine (is its dot layout plugin "
                      "installed? `dot -c` registers the plugins); see the daemon's stderr",
                      m->name);
    return svg;
}

bool tn_apibody_sm_svg(tn_api_call *c)
{
    const tn_sm *m = sm_named(c);
    if (!m)
        return false;
    tn_errmsg e = {{0}};
    const char *svg = tn_apibody_sm_render(m->name, &e);
    if (!svg) {
        tn_api_error(c->rep, 500, "%s", e.text);
        return false;
    }
    c->rep->ctype = "image/svg+xml";
    tn_sb_printf(&c->rep->body, "%s", svg);
    return false;
}

/* The master's HTTP API: a table of routes, each a control request run by the control
 * server's handlers as the bearer token's identity; errors as JSON with an HTTP status
 * from the kind of failure. Request bodies are parsed with jansson. */
#include "httpapi.h"

#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apibody.h"
#include "apimetrics.h"
#include "ctl.h"
#include "def.h"
#include "jsonout.h"
#include "log.h"
#include "token.h"

struct tn_httpapi {
    tn_httpapi_opts o;
    tn_http_server *srv;
    tn_apimetrics *metrics;
};

typedef tn_api_call call; /* one API call (apibody.h) */

typedef struct api_route {
    const char *method;
    const char *path; /* segments; {id} a positive integer, {name} a name */
    const char *cmd;  /* the control command */
    /* fill c->r from the path, query and body; false when answered already (a bad
     * request, or a route with no control command that answers here) */
    bool (*prepare)(call *c);
    int ok_status; /* 200 when 0 */
} api_route;

/* ------------------------------------------------------------------------------ */
/* answers */


/* The HTTP status of a failed control request. */
static int status_of(tn_err e)
{
    switch (e) {
    case TN_ERR_NOENT: return 404;
    case TN_ERR_ILLEGAL:
    case TN_ERR_EXISTS:
    case TN_ERR_STALE: return 409;
    case TN_ERR_FULL:
    case TN_ERR_BUSY:
    case TN_ERR_TIMEOUT:
    case TN_ERR_CLOSED: return 503;
    case TN_ERR_PERM: return 403;
    case TN_ERR_TOOBIG: return 413;
    case TN_ERR_INVAL:
    case TN_ERR_PARSE:
    case TN_ERR_TYPE:
    case TN_ERR_UNSUPPORTED: return 400;
    default: return 500;
    }
}

/* ------------------------------------------------------------------------------ */
/* request parts */

static bool query_u64(call *c, const char *key, uint64_t *v, uint64_t max)
{
    char buf[32];
    if (!tn_http_query(c->hr->query, key, buf, sizeof(buf)))
        return true;
    char *end;
    unsigned long long x = strtoull(buf, &end, 10);
    if (!buf[0] || *end || buf[0] == '-' || x > max) {
        tn_api_error(c->rep, 400,
                     "query parameter %s=\"%s\": give an integer from 0 to %" PRIu64, key, buf,
                     max);
        return false;
    }
    *v = x;
    return true;
}

/* The body as a JSON object; false (answered 400) when it is not one. */
static bool json_body(call *c)
{
    return tn_apibody_object(c, NULL, 0);
}

static tn_str jstr(const json_t *v)
{
    return (tn_str){json_string_value(v), (uint32_t)json_string_length(v)};
}

/* An optional string member; false (answered 400) when it is there and not a string. */
static bool member_str(call *c, const char *key, tn_str *out, bool required)
{
    json_t *v = json_object_get(c->body, key);
    if ((!v && !required) || json_is_string(v)) {
        if (v)
            *out = jstr(v);
        return true;
    }
    tn_api_error(c->rep, 400, "\"%s\" must be a string%s", key,
                 required && !v ? " and is missing" : "");
    return false;
}

/* ------------------------------------------------------------------------------ */
/* routes */

static bool p_none(call *c)
{
    return true;
}

static bool p_id(call *c)
{
    c->r->id = c->num;
    return true;
}

static bool p_def(call *c)
{
    uint64_t v = 0;
    c->r->name = tn_str_c(c->name);
    if (!query_u64(c, "version", &v, UINT32_MAX))
        return false;
    c->r->id = v;
    return true;
}

static bool p_list(call *c)
{
    uint64_t limit = 100, after = 0;
    if (!query_u64(c, "limit", &limit, 1000) || !query_u64(c, "after", &after, UINT64_MAX))
        return false;
    char buf[128];
    size_t n = 0;
    c->keep = calloc(1, 256);
    if (!c->keep)
        return false;
    if (tn_http_query(c->hr->query, "state", buf, sizeof(buf))) {
        n = strlen(buf);
        memcpy(c->keep, buf, n + 1);
        c->r->state = (tn_str){c->keep, (uint32_t)n};
    }
    if (tn_http_query(c->hr->query, "workflow", buf, sizeof(buf))) {
        memcpy(c->keep + 128, buf, strlen(buf) + 1);
        c->r->name = tn_str_c(c->keep + 128);
    }
    c->r->slots = limit ? (int64_t)limit : 100;
    c->r->offset = after;
    return true;
}

static bool p_start(call *c)
{
    tn_ctl_req *r = c->r;
    if (!json_body(c) || !member_str(c, "workflow", &r->name, true) ||
        !member_str(c, "mode", &r->mode, false))
        return false;
    json_t *p = json_object_get(c->body, "params"), *f = json_object_get(c->body, "from");
    json_t *dry = json_object_get(c->body, "dry_run");
    if ((p && !json_is_object(p)) || (f && !json_is_array(f)) ||
        (dry && !json_is_boolean(dry))) {
        tn_api_error(c->rep, 400,
                     "\"params\" must be an object of strings, \"from\" an array of task "
                     "names, \"dry_run\" a boolean");
        return false;
    }
    if (json_object_size(p) > TN_CTL_MAX_LIST || json_array_size(f) > TN_CTL_MAX_LIST) {
        tn_api_error(c->rep, 413, "at most %d params and %d start tasks", TN_CTL_MAX_LIST,
                     TN_CTL_MAX_LIST);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v)
    {
        if (!json_is_string(v)) {
            tn_api_error(c->rep, 400, "param \"%s\" must be a string", k);
            return false;
        }
        r->pkeys[r->nparams] = tn_str_c(k);
        r->pvals[r->nparams++] = jstr(v);
    }
    size_t i;
    json_array_foreach(f, i, v)
    {
        if (!json_is_string(v)) {
            tn_api_error(c->rep, 400, "\"from\"[%zu] must be a task name", i);
            return false;
        }
        r->from[r->nfrom++] = jstr(v);
    }
    r->dry_run = json_is_true(dry);
    return true;
}

/* A definition: the YAML text as the body (or {"yaml": "..."}), validated and encoded
 * here as `tern def apply` does before it reaches the engine. */
static bool p_apply(call *c)
{
    const char *text = c->hr->body;
    size_t len = c->hr->len;
    const char *ct = c->hr->content_type;
    if (ct && strncmp(ct, "application/json", 16) == 0) {
        tn_str y = {0};
        if (!json_body(c) || !member_str(c, "yaml", &y, true))
            return false;
        text = y.p;
        len = y.len;
    }
    tn_def *d;
    tn_errmsg m = {{0}};
    tn_err e = tn_def_parse("request body", text ? text : "", len, &d, &m);
    if (e) {
        tn_api_error(c->rep, e == TN_ERR_TOOBIG ? 413 : 400, "%s", m.text);
        return false;
    }
    size_t n;
    e = tn_def_encode(d, &c->keep, &n);
    snprintf(c->name, sizeof(c->name), "%s", d->name);
    tn_def_free(d);
    if (e) {
        tn_api_error(c->rep, 500, "cannot encode the definition: %s", tn_strerror(e));
        return false;
    }
    c->r->bytes = (tn_str){c->keep, (uint32_t)n};
    c->r->file = tn_str_c(c->name);
    return true;
}

static bool p_taskgroup(call *c)
{
    if (!json_body(c))
        return false;
    json_t *v = json_object_get(c->body, "slots");
    if (!json_is_integer(v) || json_integer_value(v) < -1 ||
        json_integer_value(v) > INT32_MAX) {
        tn_api_error(c->rep, 400, "\"slots\" must be an integer (-1 for no bound)");
        return false;
    }
    c->r->name = tn_str_c(c->name);
    c->r->slots = json_integer_value(v);
    return true;
}

static bool p_env(call *c)
{
    c->r->name = tn_str_c(c->name);
    return json_body(c) && member_str(c, "text", &c->r->bytes, true);
}

static bool p_name(call *c)
{
    c->r->name = tn_str_c(c->name);
    return true;
}

static const api_route routes[] = {
    {"GET", "/api/v1/definitions", "defs", p_none, 0},
    {"POST", "/api/v1/definitions", "apply", p_apply, 0},
    {"GET", "/api/v1/definitions/{name}", "def", p_def, 0},
    {"GET", "/api/v1/instances", "ls", p_list, 0},
    {"POST", "/api/v1/instances", "start", p_start, 201},
    {"GET", "/api/v1/instances/{id}", "status", p_id, 0},
    {"GET", "/api/v1/instances/{id}/audit", "audit", p_id, 0},
    {"POST", "/api/v1/instances/{id}/pause", "pause", p_id, 0},
    {"POST", "/api/v1/instances/{id}/resume", "resume", p_id, 0},
    {"POST", "/api/v1/instances/{id}/stop", "stop", p_id, 0},
    {"POST", "/api/v1/instances/{id}/rerun", "rerun", p_id, 0},
    {"POST", "/api/v1/instances/{id}/recover", "recover", p_id, 0},
    {"GET", "/api/v1/tasks/{id}", "task", p_id, 0},
    {"POST", "/api/v1/tasks/{id}/kill", "kill", p_id, 0},
    {"POST", "/api/v1/tasks/{id}/force-success", "force-success", p_id, 0},
    {"GET", "/api/v1/tasks/{id}/logs", "logs", p_id, 0},
    {"GET", "/api/v1/workers", "workers", p_none, 0},
    {"GET", "/api/v1/taskgroups", "taskgroups", p_none, 0},
    {"PUT", "/api/v1/taskgroups/{name}", "taskgroup", p_taskgroup, 0},
    {"GET", "/api/v1/environments", "envs", p_none, 0},
    {"PUT", "/api/v1/environments/{name}", "env", p_env, 0},
    {"GET", "/api/v1/whoami", "whoami", p_none, 0},
    {"GET", "/api/v1/schedules", "schedule-ls", p_none, 0},
    {"GET", "/api/v1/schedules/{name}", "schedule-show", p_name, 0},
    {"PUT", "/api/v1/schedules/{name}", "schedule-set", tn_apibody_sched_set, 0},
    {"DELETE", "/api/v1/schedules/{name}", "schedule-rm", p_name, 0},
    {"GET", "/api/v1/schedules/{name}/next", "schedule-next", tn_apibody_sched_next, 0},
    {"POST", "/api/v1/schedules/{name}/pause", "schedule-pause", p_name, 0},
    {"POST", "/api/v1/schedules/{name}/resume", "schedule-resume", p_name, 0},
    {"POST", "/api/v1/schedules/{name}/trigger", "schedule-trigger", p_name, 0},
    {"GET", "/api/v1/backfills", "backfill-ls", p_none, 0},
    {"POST", "/api/v1/backfills", "backfill", tn_apibody_backfill, 201},
    {"GET", "/api/v1/backfills/{id}", "backfill-show", p_id, 0},
    {"POST", "/api/v1/backfills/{id}/stop", "backfill-stop", p_id, 0},
    {"POST", "/api/v1/backfills/{id}/resume", "backfill-resume", p_id, 0},
    {"GET", "/api/v1/statemachines", "statemachines", tn_apibody_sm_list, 0},
    {"GET", "/api/v1/statemachines/{name}", "statemachine", tn_apibody_sm_show, 0},
    {"GET", "/api/v1/statemachines/{name}/svg", "statemachine-svg", tn_apibody_sm_svg, 0},
};

bool tn_httpapi_route(size_t i, const char **method, const char **path)
{
    if (i >= TN_ARRAY_LEN(routes))
        return false;
    *method = routes[i].method;
    *path = routes[i].path;
    return true;
}

/* Whether path matches the route's pattern; its {id} and {name} into c. */
static bool match(const char *pattern, const char *path, call *c)
{
    while (*pattern && *path) {
        if (*pattern == '{') {
            const char *pe = strchr(pattern, '}'), *se = strchr(path, '/');
            size_t n = se ? (size_t)(se - path) : strlen(path);
            if (!pe || n == 0)
                return false;
            if (strncmp(pattern, "{id}", 4) == 0) {
                uint64_t v = 0;
                for (size_t i = 0; i < n; i++) {
                    if (path[i] < '0' || path[i] > '9' || v > (UINT64_MAX - 9) / 10)
                        return false;
                    v = v * 10 + (uint64_t)(path[i] - '0');
                }
                c->num = v;
            } else {
                if (n > TN_DEF_MAX_NAME)
                    return false;
                memcpy(c->name, path, n);
                c->name[n] = 0;
            }
            pattern = pe + 1;
            path += n;
        } else if (*pattern++ != *path++) {
            return false;
        }
    }
    return !*pattern && !*path;
}

/* ------------------------------------------------------------------------------ */
/* authentication: a bearer token of `tern token` */

static bool authenticate(call *c)
{
    const char *h = c->hr->authorization;
    if (!h || !*h) {
        tn_api_error(
            c->rep, 401,
            "no credentials: send `Authorization: Bearer TOKEN` with a token made on the "
            "master's host by `tern token add NAME --role viewer|operator|admin`");
        return false;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        tn_api_error(c->rep, 401, "the Authorization header must be `Bearer TOKEN`");
        return false;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    tn_token_info t;
    tn_errmsg m = {{0}};
    if (tn_token_check(c->a->o.cs->data_dir, tok, strlen(tok), &t, &m) != TN_OK) {
        char esc[600];
        tn_ctl_escape(m.text, strlen(m.text), esc, sizeof(esc));
        tn_warn("http", "msg=\"request refused\" path=\"%s\" why=\"%s\"", c->hr->path, esc);
        tn_api_error(c->rep, 401, "%s", m.text);
        return false;
    }
    snprintf(c->id.actor, sizeof(c->id.actor), "token:%s", t.name);
    snprintf(c->id.what, sizeof(c->id.what), "%s token", tn_role_name(t.role));
    c->id.role = t.role;
    return true;
}

/* ------------------------------------------------------------------------------ */
/* task logs: located by the master, read from the worker that ran the attempt */

enum {
    FOLLOW_WAIT_MS = 10000, /* a long poll answers at the latest after this */
    FOLLOW_STEP_MS = 200,
};

typedef struct log_chunk {
    char *data;  /* the bytes read (malloc'd) */
    size_t len;  /* how many */
    size_t keep; /* of them, those answered: whole UTF-8 characters (see chunk_keep) */
    uint64_t next;
    bool eof, running;
} log_chunk;

/* While the log may still grow or be read further, a multi-byte character cut at the end
 * of a read is held back (next_offset points at its first byte), so that two reads never
 * split one character: each would show a U+FFFD for its half. A log that ended keeps
 * its incomplete tail, shown as U+FFFD; so does a read that would answer nothing. */
static void chunk_keep(log_chunk *ch, uint64_t reply_next)
{
    ch->keep = ch->len;
    if (!ch->eof || ch->running) {
        size_t whole = tn_utf8_complete(ch->data, ch->len);
        if (whole || ch->eof)
            ch->keep = whole;
    }
    ch->next = reply_next - (ch->len - ch->keep);
}

static tn_err read_chunk(tn_httpapi *a, const char *url, uint64_t task, uint32_t attempt,
                         uint64_t off, log_chunk *out, tn_errmsg *m)
{
    tn_ctl_req lr = {.cmd = TN_STR("log"), .id = task, .attempt = attempt, .offset = off};
    tn_buf b = {0};
    tn_err e = tn_ctl_req_encode(&lr, &b);
    void *raw = NULL;
    size_t rl = 0;
    if (!e)
        e = tn_rpc_call_tls(url, &a->o.log_tls, b.data, b.size, 10000, &raw, &rl, m);
    tn_buf_free(&b);
    tn_ctl_rep rep;
    if (!e && (e = tn_ctl_rep_decode(raw, rl, &rep)) != TN_OK)
        tn_errmsg_set(m, e, "%s: a malformed reply", url);
    if (!e && !rep.ok)
        e = tn_errmsg_set(m, TN_ERR_NOENT, "%.*s", (int)rep.text.len, rep.text.p);
    char *copy = !e ? malloc(rep.data.len + 1) : NULL;
    if (!e && !copy)
        e = tn_errmsg_set(m, TN_ERR_NOMEM, "out of memory reading the log");
    if (!e) {
        if (rep.data.len)
            memcpy(copy, rep.data.p, rep.data.len);
        free(out->data);
        out->data = copy;
        out->len = rep.data.len;
        out->eof = rep.eof;
        out->running = rep.running;
        chunk_keep(out, rep.offset);
    }
    free(raw);
    return e;
}

static void answer_logs(call *c, tn_ctl_result *res)
{
    uint64_t off = 0, follow = 0, attempt = 0;
    if (!query_u64(c, "offset", &off, INT64_MAX) || !query_u64(c, "follow", &follow, 1) ||
        !query_u64(c, "attempt", &attempt, UINT32_MAX))
        return;
    char url[512];
    snprintf(url, sizeof(url), "%.*s", (int)res->url.len, res->url.p);
    uint32_t att = attempt ? (uint32_t)attempt : res->attempt;
    log_chunk ch = {.next = off};
    tn_errmsg m = {{0}};
    tn_err e;
    for (int waited = 0;; waited += FOLLOW_STEP_MS) {
        e = read_chunk(c->a, url, c->num, att, off, &ch, &m);
        if (e || !follow || ch.keep || !ch.eof || !ch.running || waited >= FOLLOW_WAIT_MS)
            break;
        struct timespec ts = {0, FOLLOW_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (e) {
        tn_api_error(c->rep, status_of(e), "task %" PRIu64 " attempt %u: %s", c->num, att,
                     m.text);
    } else if (!tn_jo_dump(&c->rep->body,
                           json_pack("{s:I,s:I,s:I,s:I,s:b,s:b,s:o}", "task",
                                     (json_int_t)c->num, "attempt", (json_int_t)att, "offset",
                                     (json_int_t)off, "next_offset", (json_int_t)ch.next, "eof",
                                     ch.eof, "running", ch.running, "data",
                                     tn_jo_strn(ch.data, ch.keep)))) {
        tn_api_error(c->rep, 503, "task %" PRIu64 ": out of memory writing its log; try again",
                     c->num);
    }
    free(ch.data);
}

/* ------------------------------------------------------------------------------ */

static void run_route(call *c, const api_route *rt)
{
    if (!authenticate(c))
        return;
    if (strcmp(rt->cmd, "whoami") == 0) { /* the token itself: no control command */
        if (!tn_jo_dump(&c->rep->body,
                        json_pack("{s:o,s:s}", "name", tn_jo_str(c->id.actor + 6), "role",
                                  tn_role_name(c->id.role))))
            tn_api_error(c->rep, 503, "out of memory writing the reply; try again");
        return;
    }
    c->r->cmd = tn_str_c(rt->cmd);
    tn_ctl_result res = {0};
    /* the role first: a viewer learns nothing of a body it may not send */
    bool ok = tn_ctlsrv_permit(c->a->o.cs, &c->id, c->r, "http", "-", &res);
    if (ok && !rt->prepare(c)) {
        tn_ctl_result_free(&res);
        return;
    }
    if (ok)
        tn_ctlsrv_exec(c->a->o.cs, &c->id, c->r, &res);
    if (!res.ok) {
        tn_api_error(c->rep, status_of(res.err), "%.*s", (int)res.text.len,
                     res.text.s ? res.text.s : "");
    } else if (strcmp(rt->cmd, "logs") == 0) {
        answer_logs(c, &res);
    } else {
        c->rep->status = rt->ok_status ? rt->ok_status : 200;
        tn_sb_printf(&c->rep->body, "%.*s", (int)res.json.len, res.json.s ? res.json.s : "");
    }
    tn_ctl_result_free(&res);
}

/* ------------------------------------------------------------------------------ */
/* the web UI: static files of o.ui_dir at / and /ui/...; they hold no data (the page asks
 * the API with the token the person gives), so they need no token */

enum {
    UI_MAX_FILE = 4 << 20
};

static const char *ui_ctype(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".svg", "image/svg+xml"},
        {".json", "application/json"},         {".png", "image/png"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < TN_ARRAY_LEN(types); i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Whether the request is the UI's (answered then). */
static bool serve_ui(tn_httpapi *a, const tn_http_req *hr, tn_http_rep *rep)
{
    const char *rel;
    if (strcmp(hr->path, "/") == 0 || strcmp(hr->path, "/ui") == 0 ||
        strcmp(hr->path, "/ui/") == 0)
        rel = "index.html";
    else if (strncmp(hr->path, "/ui/", 4) == 0)
        rel = hr->path + 4;
    else
        return false;
    if (!a->o.ui_dir) {
        tn_api_error(rep, 404, "no web UI here: the daemon was started without a UI folder");
        return true;
    }
    if (strcmp(hr->method, "GET") != 0) {
        tn_api_error(rep, 405, "%s is not allowed on %s", hr->method, hr->path);
        return true;
    }
    /* names of the folder only: no "..", no hidden files, nothing odd */
    if (strspn(rel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./") !=
            strlen(rel) ||
        strstr(rel, "..") || rel[0] == '.' || rel[0] == '/' || strstr(rel, "/.")) {
        tn_api_error(rep, 404, "no UI file %s", hr->path);
        return true;
    }
    char full[4096];
    snprintf(full, sizeof(full), "%s/%s", a->o.ui_dir, rel);
    FILE *f = fopen(full, "rb");
    if (!f) {
        tn_api_error(rep, 404, "no UI file %s (looked for %s; start with --ui-dir DIR)",
                     hr->path, full);
        return true;
    }
    char *buf = malloc(UI_MAX_FILE);
    size_t n = buf ? fread(buf, 1, UI_MAX_FILE, f) : 0;
    bool whole = buf && feof(f) && !ferror(f);
    fclose(f);
    if (!whole) {
        free(buf);
        tn_api_error(rep, 500, "cannot read %s (over %d bytes, or a folder)", full,
                     UI_MAX_FILE);
        return true;
    }
    rep->body = (tn_sb){buf, n, UI_MAX_FILE};
    rep->ctype = ui_ctype(rel);
    return true;
}

static void serve(void *arg, const tn_http_req *hr, tn_http_rep *rep)
{
    tn_httpapi *a = arg;
    if (serve_ui(a, hr, rep))
        return;
    if (strcmp(hr->path, "/metrics") == 0 && strcmp(hr->method, "GET") == 0) {
        rep->ctype = "text/plain; version=0.0.4; charset=utf-8";
        tn_apimetrics_write(a->metrics, &rep->body);
        if (a->o.metrics)
            a->o.metrics(a->o.arg, &rep->body);
        return;
    }
    if (strcmp(hr->path, "/api/v1/openapi.json") == 0 && strcmp(hr->method, "GET") == 0) {
        tn_sb_printf(&rep->body, "%s", tn_openapi_json);
        return;
    }
    call c = {.a = a, .hr = hr, .rep = rep};
    bool path_known = false;
    for (size_t i = 0; i < TN_ARRAY_LEN(routes); i++) {
        if (!match(routes[i].path, hr->path, &c))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, hr->method) != 0)
            continue;
        if (a->o.elsewhere && a->o.elsewhere(a->o.arg, hr, routes[i].cmd, rep))
            return;
        if (!(c.r = calloc(1, sizeof(*c.r)))) {
            tn_api_error(rep, 503, "out of memory");
            return;
        }
        run_route(&c, &routes[i]);
        json_decref(c.body);
        free(c.keep);
        free(c.r);
        return;
    }
    if (path_known)
        tn_api_error(rep, 405, "%s is not allowed on %s (see /api/v1/openapi.json)", hr->method,
                     hr->path);
    else
        tn_api_error(rep, 404, "no route %s %s (see /api/v1/openapi.json)", hr->method,
                     hr->path);
}

/* Whether HOST:PORT listens on the loopback only. */
static bool loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "localhost:", 10) == 0 ||
           strncmp(addr, "[::1]:", 6) == 0;
}

tn_err tn_httpapi_start(const tn_httpapi_opts *o, tn_httpapi **out, tn_errmsg *msg)
{
    tn_httpapi *a = calloc(1, sizeof(*a));
    if (!a)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    a->o = *o;
    tn_err e = tn_apimetrics_new(o->cs->engine, &a->metrics, msg);
    if (!e) {
        tn_http_opts ho = o->http;
        if (!ho.threads)
            ho.threads = 8; /* long polls of logs hold one each */
        e = tn_http_start(&ho, serve, a, &a->srv, msg);
    }
    if (e) {
        tn_apimetrics_free(a->metrics);
        free(a);
        return e;
    }
    if (!o->http.cert && !loopback(o->http.addr))
        tn_warn("http",
                "msg=\"plain http beyond the loopback: bearer tokens and commands travel in "
                "clear; give --http-cert and --http-key\" addr=%s",
                o->http.addr);
    *out = a;
    return TN_OK;
}

int tn_httpapi_port(const tn_httpapi *a)
{
    return tn_http_port(a->srv);
}

void tn_httpapi_stop(tn_httpapi *a)
{
    if (!a)
        return;
    tn_http_stop(a->srv);
    tn_apimetrics_free(a->metrics);
    free(a);
}

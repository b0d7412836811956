/* The master's HTTP API (/api/v1/..., see docs/API.md) and its Prometheus /metrics, on
 * transport/http.h. Each API call becomes a control request run by the control server's
 * own handlers (tn_ctlsrv_exec), as the authenticated identity: a bearer token of
 * `tern token`, with its role. */
#ifndef TN_HTTPAPI_H
#define TN_HTTPAPI_H

#include "ctlsrv.h"
#include "err.h"
#include "http.h"
#include "rpc.h"

typedef struct tn_httpapi tn_httpapi;

typedef struct tn_httpapi_opts {
    tn_http_opts http;
    tn_ctlsrv *cs;      /* the control server whose handlers answer (not owned) */
    tn_rpc_tls log_tls; /* to read a task's log from its worker over tls+tcp */
    /* the master's own metrics (workers, slots): appended to /metrics */
    void (*metrics)(void *arg, tn_sb *out);
    void *arg;
    /* the web UI's files (index.html, app.js, ...), served at / and /ui/...; none when NULL */
    const char *ui_dir;
    /* A standby's (standby.h): called for each API route before it runs (cmd: its control
     * command); true when it answered (a redirect to the leader, or 503), false to run the
     * route here. NULL: every route runs here. */
    bool (*elsewhere)(void *arg, const tn_http_req *r, const char *cmd, tn_http_rep *rep);
} tn_httpapi_opts;

/* Start serving; the engine of o->cs must not run yet (its state counts are read from
 * the store now, and its changes counted from here on). */
tn_err tn_httpapi_start(const tn_httpapi_opts *o, tn_httpapi **out, tn_errmsg *msg);
int tn_httpapi_port(const tn_httpapi *a);
void tn_httpapi_stop(tn_httpapi *a); /* accepts NULL */

/* The i-th route of the table (method and path pattern, "/api/v1/instances/{id}"); false
 * past the last. For the test that holds the OpenAPI document true to the table. */
bool tn_httpapi_route(size_t i, const char **method, const char **path);

/* The OpenAPI document served at /api/v1/openapi.json (compiled in). */
extern const char tn_openapi_json[];

#endif

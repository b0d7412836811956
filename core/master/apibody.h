/* The HTTP API's routes beyond the CLI's plain ids and names (see docs/API.md): the request
 * bodies of schedule set and backfill, read with jansson into control requests, and the
 * state-machine routes, answered here from the generated tables (SVG laid out by Graphviz). */
#ifndef TN_APIBODY_H
#define TN_APIBODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "ctlsrv.h"
#include "def.h"
#include "http.h"

struct tn_httpapi;

/* One API call, as httpapi.c's route table hands it to a route's `prepare`. The request
 * parts are valid during the call only; body and keep are freed by httpapi.c after it. */
typedef struct tn_api_call {
    struct tn_httpapi *a;
    const tn_http_req *hr;
    tn_http_rep *rep;
    tn_ctl_ident id;
    tn_ctl_req *r; /* heap: it is large */
    uint64_t num;  /* {id} of the path */
    char name[TN_DEF_MAX_NAME + 1];
    json_t *body; /* a JSON body, when the route takes one */
    char *keep;   /* memory r points into */
} tn_api_call;

/* Answer rep with the API's JSON error ({"error":{"code","status","message"}}). */
void tn_api_error(tn_http_rep *rep, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The body as a JSON object (into c->body) whose members are all among known[] (any
 * members when known is NULL); false, answered 400 naming what is wrong, otherwise. */
bool tn_apibody_object(tn_api_call *c, const char *const *known, size_t nknown);

/* Route preparations (api_route.prepare): each fills c->r for its control command, or
 * answers (a 400 naming the field, a 413 past a bound) and returns false.
 *   sched_set    PUT /schedules/{name}: the spec of `tern schedule set` (schedule-set)
 *   sched_next   GET /schedules/{name}/next?count=N&after_ns=T (schedule-next)
 *   backfill     POST /backfills: the request of `tern backfill WF ...` (backfill) */
bool tn_apibody_sched_set(tn_api_call *c);
bool tn_apibody_sched_next(tn_api_call *c);
bool tn_apibody_backfill(tn_api_call *c);

/* The state-machine routes need no control command: after the role check these answer
 * the request themselves and return false (nothing left to run).
 *   sm_list  GET /statemachines: every machine, its states, events and transitions count
 *   sm_show  GET /statemachines/{name}: its states, events and transitions
 *   sm_svg   GET /statemachines/{name}/svg: its diagram (image/svg+xml), laid out by
 *            Graphviz's dot from the generated DOT once per machine and kept (a mutex
 *            guards the cache and Graphviz, which is not thread-safe) */
bool tn_apibody_sm_list(tn_api_call *c);
bool tn_apibody_sm_show(tn_api_call *c);
bool tn_apibody_sm_svg(tn_api_call *c);

/* The SVG of machine m (rendered once, then cached): a NUL-terminated string that lives
 * to the end of the process, or NULL with why in msg (Graphviz failed). */
const char *tn_apibody_sm_render(const char *machine, tn_errmsg *msg);

#endif

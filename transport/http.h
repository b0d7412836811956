/* An HTTP/1.1 server on nng's (supplemental/http), for the master's API and the daemons'
 * /metrics: one handler for every path and method; requests are answered on a small pool
 * of threads of ours, so a handler may block (an engine command, a long poll) without
 * holding nng's own threads. No other web stack. */
#ifndef TN_HTTP_H
#define TN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "util.h"

typedef struct tn_http_server tn_http_server;

#define TN_HTTP_BODY_MAX (4u << 20) /* default bound on a request body */

typedef struct tn_http_opts {
    const char *addr;       /* HOST:PORT (port 0: any free one, see tn_http_port) */
    const char *cert, *key; /* PEM files: https; both or neither */
    const char *ca;         /* https: require a client certificate of this CA */
    size_t max_body;        /* 0 = TN_HTTP_BODY_MAX; a larger body gets 413 */
    unsigned threads;       /* 0 = 4 */
} tn_http_opts;

/* One request, valid during the handler's call only. */
typedef struct tn_http_req {
    const char *method;        /* "GET", "POST", ... */
    const char *path;          /* the URI's path, percent-decoding not applied */
    const char *query;         /* after '?', "" when none */
    const char *authorization; /* the header, or NULL */
    const char *content_type;  /* or NULL */
    const void *body;
    size_t len;
    bool tls; /* over https (with opts.ca: the client showed a certificate of the CA) */
} tn_http_req;

/* What the handler answers: status (200 when left 0), content type (JSON when NULL),
 * the body it appends to, and a Location header (a redirect's; none when empty). */
typedef struct tn_http_rep {
    int status;
    const char *ctype;
    tn_sb body;
    char location[2048];
} tn_http_rep;

/* Runs on one of the server's threads; may block. */
typedef void (*tn_http_fn)(void *arg, const tn_http_req *r, tn_http_rep *rep);

/* Listen on opts->addr and serve fn(arg, ...). msg says what failed (the address taken,
 * a bad certificate). */
tn_err tn_http_start(const tn_http_opts *opts, tn_http_fn fn, void *arg, tn_http_server **out,
                     tn_errmsg *msg);
/* The port it listens on (the one the kernel chose for port 0). */
int tn_http_port(const tn_http_server *s);
/* Stop listening, wait for the handlers that run, free. Accepts NULL. */
void tn_http_stop(tn_http_server *s);

/* One query parameter's value ("a=1&b=x"), percent-decoded into buf; false when absent. */
bool tn_http_query(const char *query, const char *key, char *buf, size_t len);

#endif

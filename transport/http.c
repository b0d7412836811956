/* The HTTP server on nng's supplemental HTTP (see http.h): nng reads a request and its
 * body (bounded), our threads run the handler and hand nng the response. */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "log.h"
#include "transport.h"

enum {
    QUEUE_MAX = 256, /* requests waiting for a thread; more get 503 */
    THREADS_MAX = 32,
};

typedef struct job {
    nng_aio *aio;
    nng_http_req *req;
    struct job *next;
} job;

struct tn_http_server {
    nng_http_server *srv;
    nng_http_handler *h;
    nng_tls_config *tls;
    tn_http_fn fn;
    void *arg;
    bool https;
    size_t max_body;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    size_t nq;
    bool stopping;
    unsigned nthreads;
    pthread_t threads[THREADS_MAX];
};

static void finish(nng_aio *aio, int status, const char *ctype, const void *body, size_t len,
                   const char *location)
{
    nng_http_res *res = NULL;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    (void)nng_http_res_set_status(res, (uint16_t)status);
    (void)nng_http_res_set_header(res, "Content-Type", ctype);
    (void)nng_http_res_set_header(res, "Cache-Control", "no-store");
    if (location && *location)
        (void)nng_http_res_set_header(res, "Location", location);
    if (status == 413 || status == 411)
        (void)nng_http_res_set_header(res, "Connection", "close"); /* its body unread */
    if (len && nng_http_res_copy_data(res, body, len) != 0) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void finish_error(nng_aio *aio, int status, const char *code, const char *message)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":{\"code\":\"%s\",\"status\":%d,\"message\":\"%s\"}}", code,
                     status, message);
    finish(aio, status, "application/json", body, (size_t)n, NULL);
}

/* The body, read here rather than by nng: a body over the bound is answered 413 (nng
 * would answer 400) without reading it, and the connection closed. false: answered. */
static bool read_body(tn_http_server *s, job *j, char **body, size_t *len)
{
    const char *cl = nng_http_req_get_header(j->req, "Content-Length");
    const char *te = nng_http_req_get_header(j->req, "Transfer-Encoding");
    *body = NULL;
    *len = 0;
    if (te && strcasecmp(te, "identity") != 0) {
        finish_error(j->aio, 411, "length_required",
                     "send the body with a Content-Length (no chunked transfer)");
        return false;
    }
    if (!cl)
        return true;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    if (!*cl || *end || cl[0] == '-') {
        finish_error(j->aio, 400, "bad_request", "a malformed Content-Length");
        return false;
    }
    if (n > s->max_body) {
        char m[160];
        snprintf(m, sizeof(m), "the request body (%llu bytes) is over the bound of %zu bytes",
                 n, s->max_body);
        finish_error(j->aio, 413, "too_big", m);
        return false;
    }
    if (n == 0)
        return true;
    nng_aio *aio;
    if (!(*body = malloc(n)) || nng_aio_alloc(&aio, NULL, NULL) != 0) {
        free(*body);
        *body = NULL;
        finish_error(j->aio, 503, "unavailable", "out of memory");
        return false;
    }
    nng_iov iov = {*body, n};
    (void)nng_aio_set_iov(aio, 1, &iov);
    nng_aio_set_timeout(aio, 30000); /* a client that stalls mid-body is let go */
    nng_http_conn_read_all(nng_aio_get_input(j->aio, 2), aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    nng_aio_free(aio);
    if (rv) {
        free(*body);
        *body = NULL;
        nng_aio_finish(j->aio, rv); /* nng closes the connection */
        return false;
    }
    *len = n;
    return true;
}

static void serve(tn_http_server *s, job *j)
{
    const char *uri = nng_http_req_get_uri(j->req);
    char path[2048];
    const char *q = strchr(uri, '?');
    size_t plen = q ? (size_t)(q - uri) : strlen(uri);
    if (plen >= sizeof(path)) {
        finish_error(j->aio, 414, "uri_too_long", "the request path is over 2047 bytes");
        return;
    }
    memcpy(path, uri, plen);
    path[plen] = 0;
    char *body;
    size_t len;
    if (!read_body(s, j, &body, &len))
        return;
    tn_http_req r = {.method = nng_http_req_get_method(j->req),
                     .path = path,
                     .query = q ? q + 1 : "",
                     .authorization = nng_http_req_get_header(j->req, "Authorization"),
                     .content_type = nng_http_req_get_header(j->req, "Content-Type"),
                     .body = body,
                     .len = len,
                     .tls = s->https};
    tn_http_rep rep = {0};
    s->fn(s->arg, &r, &rep);
    finish(j->aio, rep.status ? rep.status : 200, rep.ctype ? rep.ctype : "application/json",
           rep.body.s, rep.body.len, rep.location);
    free(rep.body.s);
    free(body);
}

static void *worker_main(void *arg)
{
    tn_http_server *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        job *j = s->head;
        if (!j)
            break;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->nq--;
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            finish_error(j->aio, 503, "unavailable", "the server is stopping");
        else
            serve(s, j);
        free(j);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* nng's callback (on an nng thread): queue the request for ours, never block here. */
static void http_cb(nng_aio *aio)
{
    nng_http_handler *h = nng_aio_get_input(aio, 1);
    tn_http_server *s = nng_http_handler_get_data(h);
    job *j = calloc(1, sizeof(*j));
    if (!j) {
        finish_error(aio, 503, "unavailable", "out of memory");
        return;
    }
    j->aio = aio;
    j->req = nng_aio_get_input(aio, 0);
    pthread_mutex_lock(&s->mu);
    bool take = !s->stopping && s->nq < QUEUE_MAX;
    if (take) {
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->nq++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (!take) {
        free(j);
        finish_error(aio, 503, "unavailable", "too many requests at once; try again");
    }
}

static tn_err tls_setup(tn_http_server *s, const tn_http_opts *o, tn_errmsg *msg)
{
    char *cert = NULL, *key = NULL;
    tn_err e;
    if ((e = tn_tls_read_pem("--http-cert", o->cert, &cert, msg)) ||
        (e = tn_tls_read_pem("--http-key", o->key, &key, msg)))
        goto out;
    int rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER);
    if (!rv)
        rv = nng_tls_config_own_cert(s->tls, cert, key, NULL);
    if (!rv && o->ca)
        rv = nng_tls_config_ca_file(s->tls, o->ca);
    if (!rv)
        rv = nng_tls_config_auth_mode(s->tls, o->ca ? NNG_TLS_AUTH_MODE_REQUIRED :
                                                      NNG_TLS_AUTH_MODE_NONE);
    if (!rv)
        rv = nng_http_server_set_tls(s->srv, s->tls);
    if (rv)
        e = tn_errmsg_set(msg, TN_ERR_INVAL, "https (certificate %s, key %s%s%s): %s", o->cert,
                          o->key, o->ca ? ", CA " : "", o->ca ? o->ca : "", nng_strerror(rv));
out:
    free(cert);
    free(key);
    return e;
}

static tn_err listen_on(tn_http_server *s, const tn_http_opts *o, tn_errmsg *msg)
{
    char url[300];
    const char *a = o->addr;
    if (!a || !*a || strlen(a) > 256 || !strchr(a, ':'))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "--http \"%s\": give HOST:PORT (127.0.0.1:8080; port 0 for any)",
                             a ? a : "");
    snprintf(url, sizeof(url), "%s://%s", s->https ? "https" : "http", a);
    nng_url *u;
    int rv = nng_url_parse(&u, url);
    if (rv)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "--http \"%s\": %s", a, nng_strerror(rv));
    rv = nng_http_server_hold(&s->srv, u);
    nng_url_free(u);
    if (rv)
        return tn_errmsg_set(msg, TN_ERR_IO, "--http %s: %s", a, nng_strerror(rv));
    tn_err e;
    if (s->https && (e = tls_setup(s, o, msg)))
        return e;
    if ((rv = nng_http_handler_alloc(&s->h, "/", http_cb)) ||
        (rv = nng_http_handler_set_method(s->h, NULL)) ||
        (rv = nng_http_handler_set_tree(s->h)) ||
        (rv = nng_http_handler_collect_body(s->h, false, 0)) ||
        (rv = nng_http_handler_set_data(s->h, s, NULL)) ||
        (rv = nng_http_server_add_handler(s->srv, s->h))) {
        if (s->h)
            nng_http_handler_free(s->h);
        s->h = NULL;
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "--http %s: %s", a, nng_strerror(rv));
    }
    if ((rv = nng_http_server_start(s->srv)))
        return tn_errmsg_set(msg, TN_ERR_IO, "--http %s: cannot listen: %s", a,
                             nng_strerror(rv));
    nng_sockaddr sa;
    if (nng_http_server_get_addr(s->srv, &sa) == 0)
        s->port =
            sa.s_family == NNG_AF_INET6 ? ntohs(sa.s_in6.sa_port) : ntohs(sa.s_in.sa_port);
    return TN_OK;
}

tn_err tn_http_start(const tn_http_opts *o, tn_http_fn fn, void *arg, tn_http_server **out,
                     tn_errmsg *msg)
{
    if ((o->cert == NULL) != (o->key == NULL) || (o->ca && !o->cert))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "https needs both --http-cert and --http-key (and --http-ca "
                             "only with them)");
    tn_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    s->fn = fn;
    s->arg = arg;
    s->https = o->cert != NULL;
    s->max_body = o->max_body ? o->max_body : TN_HTTP_BODY_MAX;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    unsigned want = o->threads ? o->threads : 4;
    for (; s->nthreads < want && s->nthreads < THREADS_MAX; s->nthreads++)
        if (pthread_create(&s->threads[s->nthreads], NULL, worker_main, s) != 0)
            break;
    tn_err e = s->nthreads ? listen_on(s, o, msg) :
                             tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start a thread");
    if (e) {
        tn_http_stop(s);
        return e;
    }
    tn_info("http", "msg=\"listening\" addr=%s port=%d tls=%s client_ca=%s", o->addr, s->port,
            s->https ? "yes" : "no", o->ca ? "yes" : "no");
    *out = s;
    return TN_OK;
}

int tn_http_port(const tn_http_server *s)
{
    return s->port;
}

void tn_http_stop(tn_http_server *s)
{
    if (!s)
        return;
    /* our threads first: each queued request is answered 503, each running one ends; then
     * nng's server can close its connections (it waits for their pending answers) */
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (unsigned i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    if (s->srv) {
        nng_http_server_stop(s->srv);
        nng_http_server_release(s->srv);
    }
    if (s->tls)
        nng_tls_config_free(s->tls);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

bool tn_http_query(const char *q, const char *key, char *buf, size_t len)
{
    size_t kl = strlen(key);
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t n = end ? (size_t)(end - q) : strlen(q);
        if (n >= kl && strncmp(q, key, kl) == 0 && (n == kl || q[kl] == '=')) {
            size_t o = 0;
            for (size_t i = kl + 1; i < n && o + 1 < len; i++) {
                int h1, h2;
                if (q[i] == '%' && i + 2 < n && (h1 = hexval(q[i + 1])) >= 0 &&
                    (h2 = hexval(q[i + 2])) >= 0) {
                    buf[o++] = (char)(h1 * 16 + h2);
                    i += 2;
                } else {
                    buf[o++] = q[i] == '+' ? ' ' : q[i];
                }
            }
            buf[o] = 0;
            return true;
        }
        q = end ? end + 1 : NULL;
    }
    return false;
}

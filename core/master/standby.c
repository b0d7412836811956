/* A standby master's read servers (see standby.h): reads from the replica, each under a
 * hold of it, tagged with where they came from; the rest sent to the leader. */
#include "standby.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ctlsched.h"
#include "ha.h"
#include "apibody.h"
#include "httpapi.h"
#include "jsonout.h"
#include "log.h"
#include "rpc.h"

struct tn_standby {
    tn_standby_opts o;
    char name[128];
    tn_ctlsrv cs; /* no engine: reads only, each on the replica it holds */
    tn_rpc_server *rpc;
    tn_httpapi *http;
};

/* Pure reads of the store; `workers` and `logs` need the leader's live state. */
bool tn_standby_serves(tn_str cmd)
{
    static const char *const reads[] = {"ls",  "status", "task",       "defs",
                                        "def", "audit",  "taskgroups", "envs"};
    for (size_t i = 0; i < TN_ARRAY_LEN(reads); i++)
        if (tn_str_eq(cmd, reads[i]))
            return true;
    const tn_ctl_op *op = tn_ctl_sched_op(cmd);
    return op && op->read;
}

void tn_standby_tag(tn_ctl_result *o, const char *name, uint64_t seq)
{
    if (o->json.s && o->json.len && o->json.s[0] == '{') {
        tn_sb j = {0};
        tn_sb_printf(&j, "{\"served_by\":\"standby\",\"standby\":");
        if (!tn_jo_dump(&j, tn_jo_str(name))) {
            free(j.s);
            return; /* out of memory: the reply goes untagged rather than broken */
        }
        const char *rest = o->json.s + 1 + strspn(o->json.s + 1, " \t\r\n");
        tn_sb_printf(&j, ",\"log_seq\":%" PRIu64 "%s%s", seq, *rest == '}' ? "" : ",", rest);
        free(o->json.s);
        o->json = j;
    }
    if (o->text.len && o->text.s[o->text.len - 1] != '\n')
        tn_sb_printf(&o->text, "\n");
    tn_sb_printf(&o->text,
                 "(served by standby %s from its replica at log seq %" PRIu64
                 ": the leader may be ahead)\n",
                 name, seq);
}

void tn_standby_exec(tn_standby *sb, tn_ctlsrv *cs, const tn_ctl_ident *id, const tn_ctl_req *r,
                     tn_ctl_result *o)
{
    tn_ctlsrv c = *cs;
    uint64_t seq = 0;
    void *tok = sb->o.hold(sb->o.arg, &c.ro, &seq);
    if (!tok) {
        o->ok = false;
        o->code = 1;
        o->err = TN_ERR_CLOSED;
        tn_sb_printf(&o->text,
                     "standby %s: its replica is closed or being rebuilt now (a takeover or "
                     "a rejoin): ask again, or ask the leader",
                     sb->name);
        return;
    }
    tn_ctlsrv_exec(&c, id, r, o);
    sb->o.release(sb->o.arg, tok);
    tn_standby_tag(o, sb->name, seq);
}

/* ---- the control socket ------------------------------------------------------------- */

/* The reply to what only the leader answers: its control URL (TN_CTL_REDIRECT), which the
 * client asks instead (tools/client.c). */
static void redirect_reply(tn_standby *s, void **rep, size_t *rlen)
{
    char name[256], info[3000], url[PATH_MAX + 32], text[PATH_MAX + 700];
    tn_ctl_rep rp = {.ok = false, .code = 1};
    if (s->o.leader(s->o.arg, name, sizeof(name), info, sizeof(info)) &&
        strcmp(name, s->name) != 0 && tn_ha_info_get(info, "ctl", url, sizeof(url))) {
        snprintf(text, sizeof(text), "%s is a standby; the leader is %s at %s", s->name, name,
                 url);
        rp = (tn_ctl_rep){
            .ok = false, .code = TN_CTL_REDIRECT, .text = tn_str_c(text), .url = tn_str_c(url)};
    } else {
        snprintf(text, sizeof(text),
                 "%s is a standby and no leader is known now: wait for the election", s->name);
        rp.text = tn_str_c(text);
    }
    tn_buf b = {0};
    if (tn_ctl_rep_encode(&rp, &b) == TN_OK) {
        *rep = b.data;
        *rlen = b.size;
    } else {
        tn_buf_free(&b);
    }
}

static void ctl_handle(void *arg, const tn_rpc_peer *peer, const void *req, size_t len,
                       void **rep, size_t *rlen)
{
    tn_standby *s = arg;
    tn_ctl_req *r = len ? malloc(sizeof(*r)) : NULL;
    bool here =
        len == 0 || (r && tn_ctl_req_decode(req, len, r) == TN_OK && tn_standby_serves(r->cmd));
    free(r);
    if (here)
        tn_ctlsrv_handle(&s->cs, peer, req, len, rep, rlen);
    else
        redirect_reply(s, rep, rlen);
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* Every method but GET, and the GETs that need the leader's live state, go to the leader:
 * 307 (the method and body kept) to the same path on its API, or 503 when none is known. */
static bool http_elsewhere(void *arg, const tn_http_req *r, const char *cmd, tn_http_rep *rep)
{
    tn_standby *s = arg;
    /* the token itself and the state machines (compiled in) need no store either */
    if (strcmp(r->method, "GET") == 0 &&
        (strcmp(cmd, "whoami") == 0 || strncmp(cmd, "statemachine", 12) == 0 ||
         tn_standby_serves(tn_str_c(cmd))))
        return false;
    char name[256], info[3000], url[1024], msg[1500];
    if (!s->o.leader(s->o.arg, name, sizeof(name), info, sizeof(info)) ||
        strcmp(name, s->name) == 0 || !tn_ha_info_get(info, "http", url, sizeof(url))) {
        snprintf(msg, sizeof(msg),
                 "%s is a standby and answers only reads; %s %s goes to the leader, and no "
                 "leader's HTTP API is known now (an election runs, or the leader runs "
                 "without --http): ask again, or ask the leader's API",
                 s->name, r->method, r->path);
        tn_api_error(rep, 503, "%s", msg);
        return true;
    }
    snprintf(msg, sizeof(msg), "%s is a standby; the leader is %s at %s", s->name, name, url);
    tn_api_error(rep, 307, "%s", msg);
    int n = snprintf(rep->location, sizeof(rep->location), "%s%s%s%s", url, r->path,
                     r->query[0] ? "?" : "", r->query);
    if (n < 0 || (size_t)n >= sizeof(rep->location))
        tn_api_error(rep, 503, "the leader's URL for this request is too long");
    return true;
}

static void http_metrics(void *arg, tn_sb *out)
{
    tn_standby *s = arg;
    if (s->o.metrics)
        s->o.metrics(s->o.arg, out);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

tn_err tn_standby_start(const tn_standby_opts *o, tn_standby **out, tn_errmsg *msg)
{
    tn_standby *s = calloc(1, sizeof(*s));
    if (!s)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    s->o = *o;
    snprintf(s->name, sizeof(s->name), "%s", o->name);
    s->cs = (tn_ctlsrv){.data_dir = o->data_dir, .tls_ca = o->tls_ca, .standby = s};
    tn_rpc_tls tls = {o->tls_ca, o->tls_cert, o->tls_key};
    tn_err e = tn_rpc_serve_peer(o->ctl_url, &tls, ctl_handle, s, &s->rpc, msg);
    if (!e && o->http_addr) {
        tn_httpapi_opts ho = {.http = {.addr = o->http_addr,
                                       .cert = o->http_cert,
                                       .key = o->http_key,
                                       .ca = o->http_ca},
                              .cs = &s->cs,
                              .metrics = http_metrics,
                              .arg = s,
                              .ui_dir = o->ui_dir,
                              .elsewhere = http_elsewhere};
        e = tn_httpapi_start(&ho, &s->http, msg);
    }
    if (e) {
        tn_standby_stop(s);
        return e;
    }
    *out = s;
    return TN_OK;
}

void tn_standby_stop(tn_standby *s)
{
    if (!s)
        return;
    tn_httpapi_stop(s->http);
    tn_rpc_server_free(s->rpc);
    free(s);
}

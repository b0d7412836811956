/* The master's control handlers (see core/ctl.h for the protocol). */
#ifndef TN_CTLSRV_H
#define TN_CTLSRV_H

#include <stdbool.h>

#include "ctl.h"
#include "engine.h"
#include "logread.h"
#include "params.h"
#include "rpc.h"
#include "token.h"
#include "util.h"

typedef struct tn_ctlsrv {
    tn_engine *engine; /* commands go to its thread with tn_engine_submit_wait */
    void *arg;
    /* the control URL of a connected worker, for `tern logs`; false when not connected */
    bool (*worker_ctl)(void *arg, const char *worker, char *url, size_t len);
    /* `tern workers`: a table and a JSON array */
    void (*workers)(void *arg, tn_sb *text, tn_sb *json);
    const char *data_dir; /* its tokens file (token.h) */
    const char *tls_ca;   /* tls+tcp: the CA a client certificate must chain to */
    /* NULL engine: a store opened with tn_log_open_read, and only the reads (ls,
     * status) are answered, from what is committed (the CLI when no master runs) */
    tn_store *ro;
    /* A standby master's (standby.h): every read holds its replica while it runs (ro is
     * the held store then), and the reply says it came from the standby. */
    struct tn_standby *standby;
} tn_ctlsrv;

/* The params of one workflow instance, from its SUBMIT event and its definition, for
 * `tern status` and `tern audit`. */
typedef struct tn_wf_params {
    char name[TN_DEF_MAX_NAME + 1];
    uint32_t version;
    int64_t sched_ns; /* the business (schedule) time the run's dates derive from */
    tn_kv *overrides; /* start-time params (--param) */
    tn_kv *inherited; /* sub_workflow: the parent's effective params */
    tn_kv *effective; /* inherited < the definition's globals resolved < overrides */
    char why[640];    /* why `effective` is NULL (a param error), else empty */
} tn_wf_params;

/* Read them; TN_ERR_NOENT for an instance with no events. Resolving the globals uses
 * TERN_TZ of this process (the master's, when the master answers). Free with
 * tn_wf_params_free (also after an error). */
tn_err tn_wf_params_read(tn_store *s, uint64_t wf, tn_wf_params *out);
void tn_wf_params_free(tn_wf_params *p);
/* A map as text: `k=v k2="a b"` (values with spaces, quotes, '=' or controls as JSON
 * strings), and as a JSON object. */
void tn_kv_text(tn_sb *b, const tn_kv *kv);
void tn_kv_json(tn_sb *b, const tn_kv *kv);

/* Who may do what (see docs/SECURITY.md). Every request but the empty liveness probe
 * needs an identity, from the connection or a token, never from the request's fields:
 *   ipc     the peer's uid (SO_PEERCRED): this process's uid or root, as admin, actor
 *           "user:NAME"; a token, when one is sent, narrows it to the token's role;
 *   tcp     a token (actor "token:NAME", its role);
 *   tls+tcp a token, or a client certificate the CA signed, shown in the handshake and
 *           sent signed in the request (tn_ctl_verify): actor "cert:CN", its role the
 *           certificate's OU when that names one, else admin;
 *   inproc  this process: admin, actor "user:local".
 * A refusal answers "permission denied: ..." (exit status 1) and is logged. */
typedef struct tn_ctl_ident {
    char actor[80];
    tn_role role;
    char what[96]; /* for refusals: "viewer token", "unix user bob" */
} tn_ctl_ident;

/* The identity of a request, or false with why (a complete sentence) filled in. */
bool tn_ctlsrv_auth(const tn_ctlsrv *s, const tn_rpc_peer *peer, const tn_ctl_req *r,
                    tn_ctl_ident *id, char *why, size_t wlen);
/* The role a control command needs (viewer for an unknown one: it is refused later). */
tn_role tn_ctlsrv_role_needed(tn_str cmd);

/* One request's outcome, the same for every front end (the control socket's reply, the
 * HTTP API's response): the text a person reads and the JSON a script reads. */
typedef struct tn_ctl_result {
    bool ok;
    int code;   /* on failure: the CLI's exit status (1; 2 for a usage error) */
    tn_err err; /* on failure, what kind: NOENT (unknown), ILLEGAL (not in this state),
                   INVAL, PERM, FULL (the store), TOOBIG, UNSUPPORTED, ... */
    tn_sb text, json;
    tn_str url; /* logs: the worker that serves the log (points into urlbuf) */
    char urlbuf[512];
    uint32_t attempt;  /* logs: the attempt whose log it has */
    const char *actor; /* who asked: what the event log records */
} tn_ctl_result;

void tn_ctl_result_free(tn_ctl_result *res);

/* Whether id may run r->cmd (tn_ctlsrv_role_needed); when not, res is the refusal (err
 * PERM) and it is logged with where it came from (scheme: "ipc", "http", ...). Accepted
 * commands that change something are logged with their actor. */
bool tn_ctlsrv_permit(tn_ctlsrv *s, const tn_ctl_ident *id, const tn_ctl_req *r,
                      const char *scheme, const char *peer, tn_ctl_result *res);

/* Run r as id (permitted already): a command through the engine, or a read. res starts
 * zeroed; the caller frees it. Besides the CLI's commands it answers reads the HTTP API
 * needs: "defs", "def" (name, id = version or 0 for the latest), "audit" (id), "task"
 * (id), "taskgroups", "envs"; "ls" with slots > 0 pages through instances by ascending
 * id after offset (at most slots of them), filtered by state and name. */
void tn_ctlsrv_exec(tn_ctlsrv *s, const tn_ctl_ident *id, const tn_ctl_req *r,
                    tn_ctl_result *res);

/* Whether cmd only reads the store (ls, status, schedule-ls, ...): the CLI answers
 * those from the store when no master runs. */
bool tn_ctlsrv_is_read(tn_str cmd);

/* A tn_rpc_peer_handler: arg is a tn_ctlsrv. */
void tn_ctlsrv_handle(void *arg, const tn_rpc_peer *peer, const void *req, size_t len,
                      void **rep, size_t *rlen);

#endif

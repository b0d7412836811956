/* The master's control handlers (see core/ctl.h for the protocol). */
#ifndef TN_CTLSRV_H
#define TN_CTLSRV_H

#include <stdbool.h>

#include "ctl.h"
#include "engine.h"
#include "logread.h"
#include "params.h"
#include "util.h"

typedef struct tn_ctlsrv {
    tn_engine *engine; /* commands go to its thread with tn_engine_submit_wait */
    void *arg;
    /* the control URL of a connected worker, for `tern logs`; false when not connected */
    bool (*worker_ctl)(void *arg, const char *worker, char *url, size_t len);
    /* `tern workers`: a table and a JSON array */
    void (*workers)(void *arg, tn_sb *text, tn_sb *json);
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
    char why[512];    /* why `effective` is NULL (a param error), else empty */
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

/* A tn_rpc_handler: arg is a tn_ctlsrv. */
void tn_ctlsrv_handle(void *arg, const void *req, size_t len, void **rep, size_t *rlen);

#endif

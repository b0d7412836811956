/* The master's control handlers (see core/ctl.h for the protocol). */
#ifndef TN_CTLSRV_H
#define TN_CTLSRV_H

#include <stdbool.h>

#include "ctl.h"
#include "engine.h"
#include "logread.h"
#include "util.h"

typedef struct tn_ctlsrv {
    tn_engine *engine; /* commands go to its thread with tn_engine_submit_wait */
    void *arg;
    /* the control URL of a connected worker, for `tern logs`; false when not connected */
    bool (*worker_ctl)(void *arg, const char *worker, char *url, size_t len);
    /* `tern workers`: a table and a JSON array */
    void (*workers)(void *arg, tn_sb *text, tn_sb *json);
    /* NULL engine: a store opened with tn_log_open_read, and only the reads (ls,
     * status) are answered, from what is committed (the CLI when no master runs) */
    tn_store *ro;
} tn_ctlsrv;

/* A tn_rpc_handler: arg is a tn_ctlsrv. */
void tn_ctlsrv_handle(void *arg, const void *req, size_t len, void **rep, size_t *rlen);

#endif

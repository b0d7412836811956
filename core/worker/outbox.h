/* The worker's outbox: reports (ACCEPTED, RESULT, KILL_RESULT) numbered, made durable in
 * the worker's store before they are sent, and resent with backoff until the master
 * answers PERSISTED. Used by the worker thread only. */
#ifndef TN_OUTBOX_H
#define TN_OUTBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "map.h"
#include "outbox_store.h"
#include "proto.h"
#include "transport.h"

typedef struct tn_outbox {
    tn_outbox_store *st;         /* not owned */
    tn_map pend;                 /* report id -> its encoded message and resend state */
    struct pending *head, *tail; /* the same reports, by id */
    uint32_t dels;               /* deletes in the staged batch, not committed yet */
    int64_t dels_since;          /* monotonic: the first of them */
    uint64_t next_report;
    char cluster[TN_PROTO_CLUSTER_MAX + 1]; /* the cluster its frames carry ("": unbound) */
} tn_outbox;

/* An outbox over st, with the reports a previous run left there (they are sent again). */
void tn_outbox_init(tn_outbox *ob, tn_outbox_store *st);
/* Free what is in memory (what is stored stays). */
void tn_outbox_fini(tn_outbox *ob);

/* Number m (ACCEPTED, RESULT or KILL_RESULT) and stage it; sent after the next commit.
 * TN_ERR_INVAL for another type. */
tn_err tn_outbox_put(tn_outbox *ob, tn_msg *m);
/* Durable before sent: commit what is staged (reports and task records), retrying while
 * the store refuses, until *stop. Staged deletes alone wait a little unless `force`. */
void tn_outbox_commit(tn_outbox *ob, bool force, const atomic_bool *stop);
/* Send every report that is due to tx, in frames from `sender` of ob->cluster, by report
 * id; an earlier report of a task with one due goes with it (before it), so the master
 * gets a task's reports in the order they were made, resends included. */
void tn_outbox_send(tn_outbox *ob, tn_tx tx, const char *sender, int64_t now);
/* Make every report due now (a new leader: what the old one did not persist goes first,
 * before anything else the worker sends it). */
void tn_outbox_resend_now(tn_outbox *ob);
/* The master persisted report id: it leaves (a duplicate PERSISTED is ignored). */
void tn_outbox_done(tn_outbox *ob, uint64_t id);
/* When staged deletes must be committed (monotonic ns), or 0 when there are none. */
int64_t tn_outbox_due(const tn_outbox *ob);
/* Reports waiting for PERSISTED. */
size_t tn_outbox_len(const tn_outbox *ob);

#endif

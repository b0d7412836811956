/* The worker's store: its outbox of reports waiting for the master's PERSISTED, the next
 * report id, and a record per running attempt so that a restart finds what the previous
 * run left behind. Writes are staged in one batch and made durable together by
 * tn_outbox_store_commit (reports are durable before they are sent). Which databases and
 * keys hold them is this file's business: core/log is the only code that knows the
 * store's layout.
 *
 * Single-threaded: one thread at a time uses a tn_outbox_store. */
#ifndef TN_OUTBOX_STORE_H
#define TN_OUTBOX_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct tn_outbox_store tn_outbox_store;

/* Open (creating it if missing) the store in directory dir, growing up to map_max bytes
 * (0: the store's default). On error msg says what and where; *out is untouched. */
tn_err tn_outbox_store_open(const char *dir, uint64_t map_max, tn_outbox_store **out,
                            tn_errmsg *msg);
/* Close; what is staged and not committed is lost. Accepts NULL. */
void tn_outbox_store_close(tn_outbox_store *s);

/* ---- reading what a previous run left ---------------------------------------------------- */

/* false: stop (out of memory). */
typedef bool (*tn_outbox_report_fn)(void *ud, uint64_t id, const void *enc, size_t len);
/* Every stored report, by id, to fn (enc lives only during the call), and the stored next
 * report id in *next_id (0 when none was stored). Stops at the first malformed key. */
tn_err tn_outbox_store_load(tn_outbox_store *s, uint64_t *next_id, tn_outbox_report_fn fn,
                            void *ud);

typedef void (*tn_outbox_task_fn)(void *ud, uint64_t task, uint32_t attempt, int64_t pid,
                                  uint64_t start_ticks);
/* Every attempt record to fn, then all of them deleted in a commit of their own (the
 * staged batch is not touched). Returns how many were passed to fn. */
uint32_t tn_outbox_store_take_tasks(tn_outbox_store *s, tn_outbox_task_fn fn, void *ud);

/* ---- staged writes ----------------------------------------------------------------------- */

/* A report (its encoded message) under id. */
tn_err tn_outbox_store_put_report(tn_outbox_store *s, uint64_t id, const void *enc, size_t len);
/* The report id was persisted by the master: delete it. */
tn_err tn_outbox_store_del_report(tn_outbox_store *s, uint64_t id);
/* The record of a running attempt of task: its leader's pid and start time (/proc ticks). */
tn_err tn_outbox_store_put_task(tn_outbox_store *s, uint64_t task, uint32_t attempt,
                                int64_t pid, uint64_t start_ticks);
/* The attempt of task ended: its record goes. */
tn_err tn_outbox_store_del_task(tn_outbox_store *s, uint64_t task);
/* Writes staged and not committed yet. */
size_t tn_outbox_store_staged(const tn_outbox_store *s);
/* Stage next_id as the next report id and commit everything staged in one transaction.
 * On success the stage is empty; on failure (msg says why) it is kept for a retry. */
tn_err tn_outbox_store_commit(tn_outbox_store *s, uint64_t next_id, tn_errmsg *msg);

#endif

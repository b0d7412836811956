/* Projections: the current state of each workflow and task instance, folded from
 * events. The event log stores them (the snapshot that makes restart and status fast);
 * replay rebuilds them from the events alone and must get the same bytes.
 *
 * The fold is deliberately small and total: state = the event's `to`; a few attrs
 * with fixed names update fields (name, version, run, parent_wf, parent_task on
 * workflows; name, attempt, worker, pid, exit on tasks, and a task's reason: see
 * tn_proj_task_apply). Anything else an event carries stays in the log. */
#ifndef TN_PROJ_H
#define TN_PROJ_H

#include <stdint.h>

#include "event.h"

#define TN_PROJ_VERSION 1
#define TN_NAME_MAX     255 /* workflow, task, worker names: bytes (TN_DEF_MAX_NAME) */
#define TN_REASON_MAX   200 /* bytes of a task's reason */

typedef struct tn_wf_proj {
    uint64_t id;
    uint8_t state;
    uint32_t version; /* definition version the instance pins */
    uint32_t run;     /* grows with every rerun / recover */
    uint64_t parent_wf, parent_task;
    int64_t created_at, updated_at, started_at, ended_at;
    uint64_t last_seq;
    uint32_t nevents;
    char name[TN_NAME_MAX + 1]; /* definition name */
} tn_wf_proj;

typedef struct tn_task_proj {
    uint64_t id;
    uint64_t wf;
    uint8_t state;
    uint32_t attempt;
    int64_t pid;
    int64_t exit_code;
    int64_t created_at, updated_at, started_at, ended_at;
    uint64_t last_seq;
    char name[TN_NAME_MAX + 1];
    char worker[TN_NAME_MAX + 1];
    /* why it failed, was killed, timed out, failed over or was forced: folded from its
     * events (tn_proj_task_apply), "" when nothing needs explaining */
    char reason[TN_REASON_MAX + 1];
} tn_task_proj;

/* Fold one event into a projection. The event must be of the right machine and
 * already checked legal; `p` is zeroed on creation (from == NEW). */
void tn_proj_wf_apply(tn_wf_proj *p, const tn_event *ev);
void tn_proj_task_apply(tn_task_proj *p, const tn_event *ev);

/* Canonical msgpack encodings (appended to out) and strict bounded decoders. */
tn_err tn_proj_wf_encode(const tn_wf_proj *p, tn_buf *out);
tn_err tn_proj_wf_decode(const void *buf, size_t len, tn_wf_proj *p);
tn_err tn_proj_task_encode(const tn_task_proj *p, tn_buf *out);
tn_err tn_proj_task_decode(const void *buf, size_t len, tn_task_proj *p);

/* System events write small projections into the defs and meta databases:
 * DEF_APPLIED -> defs[name \0 version(be32)] = def bytes;
 * TASKGROUP_SET -> meta["tg/NAME"] = slots (be64); ENV_SET -> meta["env/NAME"] = text;
 * INIT -> meta["store_id"]. For each write, `put` is called with the database id
 * (tn_db from store/store.h, as an int), key and value. Returns TN_ERR_CORRUPT when
 * the event lacks the attrs it needs. */
typedef tn_err (*tn_proj_put_fn)(void *ctx, int db, const void *key, size_t klen,
                                 const void *val, size_t vlen);
tn_err tn_proj_system_apply(const tn_event *ev, tn_proj_put_fn put, void *ctx);

/* Key of a definition version in the defs database: name, a 0 byte, version (be32).
 * Returns the key length (<= TN_NAME_MAX + 5). */
size_t tn_proj_def_key(const char *name, uint32_t version, uint8_t *key);

#endif

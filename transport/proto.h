/* The master <-> worker protocol: message structs, their msgpack frames (several messages
 * in one transport message), a strict bounded decoder, and a batching outgoing queue.
 *
 * Wire format (msgpack). A frame is one transport message:
 *   [version=5, sender, cluster, epoch, [msg, msg, ...]]
 * sender: who wrote the frame ("master:m1", "worker:w1"), 1..64 bytes. cluster: the id of
 * the cluster the sender belongs to (the master's store id), 0..CLUSTER_MAX bytes; empty
 * only from a worker not bound to a cluster yet. A receiver bound to another cluster
 * refuses the whole frame (core/worker/worker.c, core/master/master.c). epoch: u64, the
 * leader epoch of the master that wrote it (a cluster of masters in ZooKeeper bumps it at
 * each takeover; 0 for a master without one, and from workers): every DISPATCH, KILL,
 * PERSISTED and RECONCILE travels in a frame carrying it, and a worker refuses a frame
 * older than the highest epoch it has seen (core/worker/fence.c). Each msg is an array
 * [type, fields...] whose length and field types are fixed by its type:
 *
 *   master -> worker
 *   1 DISPATCH    [1, task, wf, attempt, name, type, command, env_prelude, params,
 *                  worker_group, timeout_ms, kill_grace_ms, memory_max, cpu_max_milli, user,
 *                  noop_success, noop_duration_ms, noop_outputs, deadline_ns, worker_epoch,
 *                  pids_max]
 *   2 KILL        [2, task, attempt, grace_ms, reason]
 *   3 PERSISTED   [3, report_id, task, attempt]
 *   4 RECONCILE   [4, epoch]
 *   worker -> master
 *   5 ACCEPTED    [5, report_id, task, attempt, pid, containment]
 *   6 RESULT      [6, report_id, task, attempt, success, exit_code, reason, outputs]
 *   7 KILL_RESULT [7, report_id, task, attempt, [pid...], [[pid, state]...],
 *                  [[id, command, outcome]...]]
 *   8 HEARTBEAT   [8, worker, listen_url, ctl_url, [group...], slots, running, load_milli,
 *                  mem_free, mem_reserve, {gauge: u64}, epoch, degraded, degraded_at]
 *   9 RECONCILED  [9, epoch, [[task, attempt]...]]
 *  10 FENCED      [10, worker, epoch, refused, master]
 *
 * Integers are msgpack ints of the width the struct gives (u32 fields must fit 32 bits),
 * strings are msgpack str, bools are bool, maps (params, outputs, gauges) are msgpack maps
 * with unique non-empty string keys, in the order given. A new field or message type is a
 * new version: a decoder refuses any version but its own (2 added DISPATCH's worker_epoch;
 * 3 the frame's cluster, HEARTBEAT's degraded and degraded_at, DISPATCH's pids_max; 4 the
 * frame's epoch and KILL_RESULT's kill hooks; 5 FENCED). One exception keeps a worker's outbox across
 * an upgrade: a KILL_RESULT without its last field (as version 3 wrote it, stored before
 * the upgrade) is taken, with no hooks.
 *
 * Decoding is strict and bounded: every length is checked against the limits below and the
 * bytes left before anything is read or allocated; a wrong version is TN_ERR_VERSION,
 * truncation TN_ERR_TRUNCATED, a size over a limit TN_ERR_TOOBIG, a wrong type or unknown
 * message type TN_ERR_TYPE, a wrong field count, duplicate key or trailing byte
 * TN_ERR_CORRUPT. A frame is checked whole before the first message is handed over: a
 * frame is taken entirely or not at all.
 *
 * Zero copy: decoded strings point into the frame buffer, and lists (params, pids...) into
 * the decoder's scratch memory; both are valid only during the callback. Strings are not
 * NUL-terminated (tn_str: pointer and length) and may contain any byte. */
#ifndef TN_PROTO_H
#define TN_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "str.h"
#include "transport.h"

#define TN_PROTO_VERSION 5

/* Bounds. Every one is enforced by the encoder (TN_ERR_TOOBIG, nothing written) and by the
 * decoder. */
#define TN_PROTO_FRAME_MAX       TN_TX_RECV_MAX_DEFAULT /* bytes of a frame: the receive bound */
#define TN_PROTO_MSG_MAX         (8u << 20)             /* bytes of one encoded message */
#define TN_PROTO_FRAME_MSGS_MAX  65536u                 /* messages in a frame */
#define TN_PROTO_ID_MAX          255u /* sender, task name, worker id, worker group, user */
#define TN_PROTO_TYPE_MAX        16u  /* task type */
#define TN_PROTO_COMMAND_MAX     (1u << 20)
#define TN_PROTO_ENV_MAX         (64u << 10) /* env_prelude */
#define TN_PROTO_PAIRS_MAX       1000u       /* entries of params, outputs */
#define TN_PROTO_KEY_MAX         256u        /* a params/outputs/gauges key */
#define TN_PROTO_VALUE_MAX       (64u << 10)
#define TN_PROTO_REASON_MAX      4096u
#define TN_PROTO_CONTAINMENT_MAX 32u     /* "cgroup", "session" */
#define TN_PROTO_PIDS_MAX        100000u /* signalled pids, survivors */
#define TN_PROTO_STATE_MAX       16u     /* a survivor's state ("D", "Z") */
#define TN_PROTO_URL_MAX         512u
#define TN_PROTO_GROUPS_MAX      64u
#define TN_PROTO_GAUGES_MAX      256u
#define TN_PROTO_RUNNING_MAX     100000u /* task attempts in RECONCILED */
#define TN_PROTO_CLUSTER_MAX     64u     /* a frame's cluster id */
#define TN_PROTO_HOOKS_MAX       64u     /* kill hooks run for one KILL_RESULT */
#define TN_PROTO_HOOK_ID_MAX     256u    /* a hook's matched id (as shown) */
#define TN_PROTO_OUTCOME_MAX     256u    /* a hook's outcome ("exit 0", "refused: ...") */
/* What a peer's send queue holds at most (tn_outq_new max_queued for the master's queue to
 * each worker and a worker's to the master): the largest message twice, so that one always
 * fits behind a backlog of smaller ones. */
#define TN_PROTO_QUEUE_MAX       (2u * TN_PROTO_MSG_MAX)

/* ---- messages ---------------------------------------------------------------------------- */

#define TN_MSG_LIST(X)   \
    X(DISPATCH, 1, 21)   \
    X(KILL, 2, 5)        \
    X(PERSISTED, 3, 4)   \
    X(RECONCILE, 4, 2)   \
    X(ACCEPTED, 5, 6)    \
    X(RESULT, 6, 8)      \
    X(KILL_RESULT, 7, 7) \
    X(HEARTBEAT, 8, 14)  \
    X(RECONCILED, 9, 3)  \
    X(FENCED, 10, 5)
/* (name, wire type, array length including the type) */

typedef enum tn_msg_type {
#define TN_MSG_ENUM(name, id, len) TN_MSG_##name = id,
    TN_MSG_LIST(TN_MSG_ENUM)
#undef TN_MSG_ENUM
    TN_MSG__MAX = 10
} tn_msg_type;

/* "DISPATCH"...; "?" for an unknown type. */
const char *tn_msg_name(unsigned type);
/* Whether type travels master -> worker (DISPATCH, KILL, PERSISTED, RECONCILE). */
bool tn_msg_to_worker(unsigned type);

typedef struct tn_pair {
    tn_str key, val;
} tn_pair;
typedef struct tn_pairs { /* params, outputs: str -> str */
    const tn_pair *v;
    uint32_t n;
} tn_pairs;

typedef struct tn_gauge {
    tn_str key;
    uint64_t val;
} tn_gauge;
typedef struct tn_gauges {
    const tn_gauge *v;
    uint32_t n;
} tn_gauges;

typedef struct tn_strs {
    const tn_str *v;
    uint32_t n;
} tn_strs;

typedef struct tn_pids {
    const int64_t *v;
    uint32_t n;
} tn_pids;

typedef struct tn_survivor {
    int64_t pid;
    tn_str state; /* its state letter(s) from /proc ("D": uninterruptible sleep) */
} tn_survivor;
typedef struct tn_survivors {
    const tn_survivor *v;
    uint32_t n;
} tn_survivors;

/* A kill hook the worker ran (or refused to run) for a killed attempt: the id it found in
 * the task's log, the command it ran (empty when none ran) and how that ended. */
typedef struct tn_hook_run {
    tn_str id;      /* 1..HOOK_ID_MAX */
    tn_str command; /* ..REASON_MAX */
    tn_str
        outcome; /* 1..OUTCOME_MAX: "exit 0", "timed out after 30s; killed", "refused: ..." */
} tn_hook_run;
typedef struct tn_hook_runs {
    const tn_hook_run *v;
    uint32_t n;
} tn_hook_runs;

typedef struct tn_task_attempt {
    uint64_t task;
    uint32_t attempt;
} tn_task_attempt;
typedef struct tn_task_attempts {
    const tn_task_attempt *v;
    uint32_t n;
} tn_task_attempts;

/* Run `attempt` of task instance `task` (workflow instance `wf`). */
typedef struct tn_msg_dispatch {
    uint64_t task, wf;
    uint32_t attempt;
    tn_str name;         /* 1..ID_MAX: the task's name in its workflow */
    tn_str type;         /* 1..TYPE_MAX: "shell" or "noop"; a worker answers a type it does
                           * not run with a failed RESULT (the frame is not the place) */
    tn_str command;      /* ..COMMAND_MAX: shell text, params already substituted */
    tn_str env_prelude;  /* ..ENV_MAX: shell text run before the command */
    tn_pairs params;     /* ..PAIRS_MAX: exported to the task's environment */
    tn_str worker_group; /* 1..ID_MAX */
    uint64_t timeout_ms; /* 0: none */
    uint64_t kill_grace_ms;
    uint64_t memory_max;    /* bytes; 0: no limit */
    uint64_t cpu_max_milli; /* 1000 = one core; 0: no limit */
    tn_str user;            /* ..ID_MAX: tenant OS user; empty: the worker's own */
    bool noop_success;      /* noop tasks: the outcome, after noop_duration_ms */
    uint64_t noop_duration_ms;
    tn_pairs noop_outputs;
    int64_t deadline_ns;   /* unix ns after which the attempt is late; 0: none */
    uint64_t worker_epoch; /* the boot id (HEARTBEAT epoch) of the worker run it is for: a
                             * worker drops a DISPATCH for another run of itself, one the
                             * transport kept while it was down */
    uint32_t pids_max;     /* processes the attempt may have at once; 0: the worker's
                            * default */
} tn_msg_dispatch;

/* Kill the processes of (task, attempt): SIGTERM, grace_ms, SIGKILL. */
typedef struct tn_msg_kill {
    uint64_t task;
    uint32_t attempt;
    uint64_t grace_ms;
    tn_str reason; /* ..REASON_MAX */
} tn_msg_kill;

/* The report report_id is in the master's log: drop it from the outbox. */
typedef struct tn_msg_persisted {
    uint64_t report_id, task;
    uint32_t attempt;
} tn_msg_persisted;

/* After a master restart: say what you run (answer: RECONCILED with the same epoch). */
typedef struct tn_msg_reconcile {
    uint64_t epoch;
} tn_msg_reconcile;

/* The attempt started. */
typedef struct tn_msg_accepted {
    uint64_t report_id, task;
    uint32_t attempt;
    int64_t pid;        /* >= 0; 0 when no process (noop) */
    tn_str containment; /* ..CONTAINMENT_MAX: "cgroup", "session", "none" */
} tn_msg_accepted;

/* The attempt ended. */
typedef struct tn_msg_result {
    uint64_t report_id, task;
    uint32_t attempt;
    bool success;
    int64_t exit_code; /* exit status, or -signal */
    tn_str reason;     /* ..REASON_MAX: why it failed, for a person */
    tn_pairs outputs;  /* ..PAIRS_MAX: ${setValue(k=v)} values */
} tn_msg_result;

/* What a KILL did. */
typedef struct tn_msg_kill_result {
    uint64_t report_id, task;
    uint32_t attempt;
    tn_pids signalled;      /* ..PIDS_MAX pids, each > 0 */
    tn_survivors survivors; /* ..PIDS_MAX processes still there after SIGKILL */
    tn_hook_runs hooks;     /* ..HOOKS_MAX kill hooks run after the kill (worker.h) */
} tn_msg_kill_result;

/* The worker is alive, with its capacity and load. */
typedef struct tn_msg_heartbeat {
    tn_str worker;     /* 1..ID_MAX: worker id */
    tn_str listen_url; /* ..URL_MAX: where it takes dispatches */
    tn_str ctl_url;    /* ..URL_MAX */
    tn_strs groups;    /* ..GROUPS_MAX names of 1..ID_MAX bytes */
    uint32_t slots, running;
    uint32_t load_milli;            /* 1-minute load average * 1000 */
    uint64_t mem_free, mem_reserve; /* bytes */
    tn_gauges gauges;    /* ..GAUGES_MAX named values (tern_leaked_resources_total...) */
    uint64_t epoch;      /* boot id of the worker process */
    tn_str degraded;     /* ..REASON_MAX: the worker's last spawn failure; empty: healthy */
    int64_t degraded_at; /* unix ns of that failure; 0 when healthy */
} tn_msg_heartbeat;

/* The answer to RECONCILE: every attempt the worker runs. */
typedef struct tn_msg_reconciled {
    uint64_t epoch;           /* the RECONCILE's */
    tn_task_attempts running; /* ..RUNNING_MAX */
} tn_msg_reconciled;

/* A worker's answer to frames it refused because their leader epoch is older than the
 * newest it has seen (core/worker/fence.h): the master that wrote them is fenced. Sent at
 * most once per 100 ms per master (core/worker/fence.c). */
typedef struct tn_msg_fenced {
    tn_str worker;    /* 1..ID_MAX: the worker that refused */
    uint64_t epoch;   /* the newest leader epoch the worker has seen */
    uint64_t refused; /* frames it refused from that master since it started */
    tn_str master;    /* 1..ID_MAX: the sender of the refused frames ("master:m1") */
} tn_msg_fenced;

typedef struct tn_msg {
    tn_msg_type type;
    union {
        tn_msg_dispatch dispatch;
        tn_msg_kill kill;
        tn_msg_persisted persisted;
        tn_msg_reconcile reconcile;
        tn_msg_accepted accepted;
        tn_msg_result result;
        tn_msg_kill_result kill_result;
        tn_msg_heartbeat heartbeat;
        tn_msg_reconciled reconciled;
        tn_msg_fenced fenced;
    };
} tn_msg;

/* ---- encoding ---------------------------------------------------------------------------- */

/* Append the encoding of one message to out (for tn_frame_add_encoded and tn_outq).
 * TN_ERR_TOOBIG or TN_ERR_INVAL (a field over its bound, an empty required string, an
 * unknown type) leave out as it was; TN_ERR_NOMEM too. */
tn_err tn_msg_encode(const tn_msg *m, tn_buf *out);

/* A frame being written into a tn_buf (caller-owned; the frame is appended after what is
 * there). */
typedef struct tn_frame {
    tn_buf *buf;
    size_t start;    /* offset of the frame in buf */
    size_t count_at; /* offset of the 32-bit message count, patched by tn_frame_end */
    uint32_t count;
} tn_frame;

/* Start a frame from sender (1..ID_MAX bytes, NUL-terminated) of no cluster (empty). */
tn_err tn_frame_begin(tn_frame *f, tn_buf *buf, const char *sender);
/* The same, for the cluster `cluster` (0..CLUSTER_MAX bytes, NUL-terminated; NULL = ""). */
tn_err tn_frame_begin_cluster(tn_frame *f, tn_buf *buf, const char *sender,
                              const char *cluster);
/* The same, from a leader of the epoch given (0: no cluster of masters). */
tn_err tn_frame_begin_epoch(tn_frame *f, tn_buf *buf, const char *sender, const char *cluster,
                            uint64_t epoch);
/* Add a message. On error (TN_ERR_TOOBIG also when the frame would exceed FRAME_MAX bytes
 * or FRAME_MSGS_MAX messages) the frame is as before and still valid. */
tn_err tn_frame_add(tn_frame *f, const tn_msg *m);
/* Add one message already encoded by tn_msg_encode (copied; not re-checked). */
tn_err tn_frame_add_encoded(tn_frame *f, const void *enc, size_t len);
/* Finish: the frame is buf->data[f->start .. buf->size). */
tn_err tn_frame_end(tn_frame *f);

/* ---- decoding ---------------------------------------------------------------------------- */

/* Called once per message, in frame order; m and everything it points to are valid only
 * during the call. A non-TN_OK return stops decoding and is returned by tn_frame_decode. */
typedef tn_err (*tn_frame_cb)(void *arg, tn_str sender, const tn_msg *m);

/* Check the whole frame, then hand each message to cb. On a malformed frame cb is never
 * called, and msg (may be NULL) says what and where ("frame from worker:w1: message 3
 * (RESULT) at byte 181: input has the wrong type"). Never reads outside buf[0..len). */
tn_err tn_frame_decode(const void *buf, size_t len, tn_frame_cb cb, void *arg, tn_errmsg *msg);
/* The sender and cluster of a frame, from its header only (bounded like the decoder), for
 * a receiver to refuse a frame of another cluster before decoding it. Both point into buf.
 * TN_ERR_VERSION, TN_ERR_TRUNCATED, TN_ERR_TOOBIG, TN_ERR_TYPE or TN_ERR_CORRUPT as the
 * decoder on a bad header. */
tn_err tn_frame_header(const void *buf, size_t len, tn_str *sender, tn_str *cluster);
/* The same, and the frame's leader epoch. */
tn_err tn_frame_header_epoch(const void *buf, size_t len, tn_str *sender, tn_str *cluster,
                             uint64_t *epoch);

/* ---- outgoing queue ---------------------------------------------------------------------- */

/* Messages waiting to be sent to one peer, batched into frames: nng costs tens of
 * microseconds per transport message, so many small messages travel as one. Thread-safe:
 * push from any thread; flush from any thread (flushes are serialised). */
typedef struct tn_outq tn_outq;

/* A queue whose frames carry `sender` and hold at most max_msgs messages and, past the
 * first message, max_bytes bytes; at most max_queued bytes wait (0: 64 MiB). The caller
 * frees it with tn_outq_free. */
tn_err tn_outq_new(const char *sender, uint32_t max_msgs, size_t max_bytes, size_t max_queued,
                   tn_outq **out);
/* Free the queue and what it still holds; NULL is allowed. */
void tn_outq_free(tn_outq *q);
/* Encode m and queue it. TN_ERR_FULL when max_queued would be exceeded; encoding errors as
 * tn_msg_encode. */
tn_err tn_outq_push(tn_outq *q, const tn_msg *m);
/* Send queued messages through tx, as frames, until the queue is empty or tx refuses.
 * *nsent (may be NULL) counts the messages sent. A refused frame (TN_ERR_BUSY...) stays
 * queued, in order, and the error is returned. */
tn_err tn_outq_flush(tn_outq *q, tn_tx tx, uint32_t *nsent);
/* Messages queued now. */
uint32_t tn_outq_len(tn_outq *q);
/* The cluster the queue's next frames carry (0..CLUSTER_MAX bytes; NULL = ""). */
void tn_outq_set_cluster(tn_outq *q, const char *cluster);
/* The leader epoch the queue's next frames carry (0 until set). */
void tn_outq_set_epoch(tn_outq *q, uint64_t epoch);

#endif

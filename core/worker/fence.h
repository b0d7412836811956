/* Fencing of masters by leader epoch: a worker takes frames only from the newest leader it
 * has seen. A cluster of masters in ZooKeeper bumps the epoch at each takeover, and every
 * frame a master sends carries its epoch (transport/proto.h): once the new leader's first
 * frame (its RECONCILE at takeover) reached a worker, nothing an older leader sends is
 * taken there, not even from a leader paused past its session and woken up. The highest
 * epoch is kept in DATA/master-epoch, so a restarted worker remembers it. Epoch 0 (a
 * master without ZooKeeper) is taken only by a worker that never saw another. */
#ifndef TN_FENCE_H
#define TN_FENCE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Answers to fenced masters: at most one FENCED per sender per TN_FENCE_ANSWER_NS, and
 * TN_FENCE_SENDERS in all in that time (a peer inventing sender names gets no more), so a
 * stale or hostile master cannot make the worker flood; the senders kept are bounded (the
 * least recently refused one makes room, and its count starts again). */
#define TN_FENCE_SENDERS    8
#define TN_FENCE_SENDER_MAX 255 /* TN_PROTO_ID_MAX */
#define TN_FENCE_ANSWER_NS  (100 * 1000000LL)

typedef struct tn_fence_sender {
    char name[TN_FENCE_SENDER_MAX + 1]; /* "" : a free slot */
    uint64_t refused;                   /* frames refused from it */
    int64_t refused_at, answered_at;    /* monotonic ns */
    bool answered;                      /* answered_at is set */
} tn_fence_sender;

typedef struct tn_fence {
    char path[PATH_MAX + 32];
    uint64_t highest;       /* used by one thread (the worker loop) */
    uint64_t refused;       /* frames refused since start */
    int64_t refused_log_at; /* monotonic ns of the last refusal logged */
    tn_fence_sender senders[TN_FENCE_SENDERS];
    int64_t window_at; /* answers in all: at most SENDERS per ANSWER_NS from window_at */
    uint32_t window_n;
} tn_fence;

/* Read DATA/master-epoch (0 when absent). */
void tn_fence_init(tn_fence *f, const char *data_dir);
/* Whether a frame from a leader of `epoch` is taken. A higher epoch becomes the highest
 * (recorded); a lower one is refused, counted and logged (once per 10 s). */
bool tn_fence_accept(tn_fence *f, uint64_t epoch, const char *sender, size_t sender_len);
/* Raise the highest epoch without a frame (learnt from ZooKeeper's leader record). */
void tn_fence_raise(tn_fence *f, uint64_t epoch);
/* After tn_fence_accept refused a frame of `sender` (not NUL-terminated; cut to
 * SENDER_MAX) at monotonic `now`: count it, and whether a FENCED answer is due now (none
 * was sent to that sender for ANSWER_NS, and fewer than SENDERS to anyone), with the frames
 * refused from it in *refused. */
bool tn_fence_answer_due(tn_fence *f, const char *sender, size_t sender_len, int64_t now,
                         uint64_t *refused);

#endif

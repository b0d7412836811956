/* The event: tern's unit of truth. Every workflow and task transition, and every
 * system fact, is one event in the log; all state is the replay of the log.
 *
 * Wire/log encoding (msgpack), a 12-element array, in this order:
 *   [version=1, seq, at, machine, event, wf, task, from, to, actor, attrs, prev]
 * seq: u64, dense from 1; at: unix ns; machine: tn_machine; event/from/to: generated
 * ids of that machine; wf/task: instance ids (0 = none); actor: "user:NAME",
 * "master:ID", "worker:ID"; attrs: map of str -> int | str | bin (the values the
 * transition used: attempt, worker, due time, exit code, reason...); prev: the 32-byte
 * BLAKE2b hash of the previous event's encoding (the audit chain).
 *
 * Decoding is strict and bounded: truncated, oversized, wrong-typed, trailing-byte or
 * unknown-version input returns an error. Decoded strings point into the input buffer
 * (zero copy): they are valid only as long as it is. */
#ifndef TN_EVENT_H
#define TN_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "str.h"

#define TN_EVENT_VERSION   1
#define TN_EVENT_MAX_BYTES (40u << 20) /* one encoded event */
#define TN_ACTOR_MAX       64          /* bytes of actor */
#define TN_ATTRS_MAX       32          /* attrs per event */
#define TN_ATTR_KEY_MAX    32          /* bytes of an attr key */
#define TN_ATTR_VAL_MAX    (32u << 20) /* bytes of an attr str/bin value (a definition) */
#define TN_HASH_LEN        32

typedef enum tn_attr_type {
    TN_ATTR_INT = 1,
    TN_ATTR_STR = 2,
    TN_ATTR_BIN = 3
} tn_attr_type;

typedef struct tn_attr {
    tn_str key;
    uint8_t type;
    int64_t i; /* TN_ATTR_INT */
    tn_str s;  /* TN_ATTR_STR, TN_ATTR_BIN */
} tn_attr;

typedef struct tn_event {
    uint64_t seq;
    int64_t at;
    uint8_t machine;
    uint8_t event;
    uint64_t wf;
    uint64_t task;
    uint8_t from;
    uint8_t to;
    tn_str actor;
    uint32_t nattrs;
    tn_attr attrs[TN_ATTRS_MAX];
    uint8_t prev[TN_HASH_LEN];
} tn_event;

/* Reset to an empty event of `machine`/`event` for instance (wf, task). */
void tn_event_init(tn_event *ev, unsigned machine, unsigned event, uint64_t wf, uint64_t task);
/* Add attrs; the key and string/bin bytes are borrowed, not copied: keep them alive
 * until the event is encoded. TN_ERR_TOOBIG when the event already has TN_ATTRS_MAX. */
tn_err tn_event_set_int(tn_event *ev, const char *key, int64_t v);
tn_err tn_event_set_str(tn_event *ev, const char *key, const char *v);
tn_err tn_event_set_strn(tn_event *ev, const char *key, const char *v, size_t len);
tn_err tn_event_set_bin(tn_event *ev, const char *key, const void *v, size_t len);
/* The attr called `key`, or NULL. */
const tn_attr *tn_event_attr(const tn_event *ev, const char *key);
bool tn_event_int(const tn_event *ev, const char *key, int64_t *out);

/* Append the encoding of `ev` to `out`. TN_ERR_TOOBIG if over the bounds above. */
tn_err tn_event_encode(const tn_event *ev, tn_buf *out);
/* Decode exactly `len` bytes into *ev. On error *ev is unspecified. The shape
 * tn_event_encode writes is read by a fast path; anything else goes to the strict
 * reader below, so the result (and the error for malformed bytes) is always the strict
 * reader's. */
tn_err tn_event_decode(const void *buf, size_t len, tn_event *ev);
/* The strict reader alone: every msgpack width and type the format allows, each read
 * checked. tn_event_decode gives the same result faster; tests compare the two. */
tn_err tn_event_decode_strict(const void *buf, size_t len, tn_event *ev);

/* The chain hash of an encoded event: BLAKE2b-256 over its bytes. */
void tn_event_hash(const void *enc, size_t len, uint8_t out[TN_HASH_LEN]);
/* The chain hashes of four encoded events: out[k] is tn_event_hash(enc[k], len[k]).
 * With AVX2 the four are computed side by side, about 2.5 times the throughput of
 * four calls; enc[k] may repeat. Thread-safe (core/log/hash4.c). */
void tn_event_hash4(const void *const enc[4], const size_t len[4], uint8_t out[4][TN_HASH_LEN]);

/* Machine name ("workflow", "task", "system"), or "?" */
const char *tn_machine_name(unsigned machine);

#endif

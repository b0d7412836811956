/* The JSON the master writes (control replies, the HTTP API's bodies, alert bodies):
 * jansson values built with these helpers, then dumped into the reply's buffer. */
#ifndef TN_JSONOUT_H
#define TN_JSONOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "params.h"
#include "util.h"

/* Each constructor returns a new reference (the caller owns it, or hands it to
 * tn_jo_set, tn_jo_push or json_pack's "o", which take it over), or NULL only when
 * out of memory.
 *
 * A string of n bytes (NUL bytes included) as a JSON string. jansson refuses bytes that
 * are not UTF-8; task names, log output and reasons from peers may hold such bytes, so
 * each maximal invalid subsequence (as Unicode's "substitution of maximal subparts") is
 * replaced by U+FFFD instead of losing the whole string. s may be NULL when n is 0. */
json_t *tn_jo_strn(const char *s, size_t n);
/* The same for a NUL-terminated string; NULL s is "". */
json_t *tn_jo_str(const char *s);
/* A time as ISO 8601 UTC to the nanosecond ("2026-11-22T01:02:03.123456789Z", always
 * nine digits), or null for 0 (not happened). */
json_t *tn_jo_time(int64_t ns);
/* A map of params as an object of strings, in the map's key order ({} for NULL). */
json_t *tn_jo_kv(const tn_kv *kv);
/* An event's attribute value: an integer, a string, or a params map as an object (other
 * bytes as {"bytes": N}). */
json_t *tn_jo_attr(const tn_attr *a);
/* A number with three decimals (a load, seconds to the millisecond): rounded here so
 * that it prints as 0.25, not 0.25000000000000001. */
json_t *tn_jo_milli(double v);

/* Set obj[key] (key: n bytes, repaired as tn_jo_strn does) or append to an array,
 * taking over v. A NULL v or a failure is remembered and fails this thread's next
 * tn_jo_dump: a field lost to lack of memory fails the reply instead of vanishing. */
bool tn_jo_set(json_t *obj, const char *key, json_t *v);
bool tn_jo_setn(json_t *obj, const char *key, size_t n, json_t *v);
bool tn_jo_push(json_t *arr, json_t *v);

/* Append root to b, compact, keys in the order they were set; takes over root (NULL
 * is a failure). False, with b as it was, when root is NULL, memory ran out, or root is
 * an object or array and a tn_jo_set or tn_jo_push on this thread failed since the last
 * such dump (a lone string, dumped for a line of text, neither looks at that nor resets
 * it). */
bool tn_jo_dump(tn_sb *b, json_t *root);

/* Of n bytes of a stream, how many to pass on now so that a multi-byte UTF-8 character
 * is not split between two reads: n less the bytes of an incomplete sequence at the end
 * (at most 3; what could still be completed by the bytes that follow). */
size_t tn_utf8_complete(const char *s, size_t n);

#endif

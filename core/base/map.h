/* An open-addressing hash map from non-zero u64 ids to pointers: the projection
 * caches of the event log and of replay. Not thread-safe; owned by one thread. */
#ifndef TN_MAP_H
#define TN_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct tn_map_slot {
    uint64_t key; /* 0 = empty */
    void *val;
} tn_map_slot;

typedef struct tn_map {
    tn_map_slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t len;
    bool dense; /* tn_map_init_dense */
} tn_map;

void tn_map_init(tn_map *m);
/* For keys handed out in sequence and used mostly in that order (instance ids): runs of
 * consecutive keys sit in adjacent slots, so walking them costs a cache miss per four
 * rather than one each. The slot order, which iteration follows, differs. */
void tn_map_init_dense(tn_map *m);
/* Frees the table, not the values. */
void tn_map_fini(tn_map *m);
/* The value for key, or NULL. */
void *tn_map_get(const tn_map *m, uint64_t key);
/* Insert or replace. key must not be 0. */
tn_err tn_map_put(tn_map *m, uint64_t key, void *val);
/* Remove key; returns its value or NULL. */
void *tn_map_del(tn_map *m, uint64_t key);

/* Start fetching the slot where key's probe begins, for a tn_map_get a little later: in
 * a map larger than the cache each get is a miss, and a loop that knows its next keys
 * can overlap them. Reads nothing; any key is fine. */
void tn_map_prefetch(const tn_map *m, uint64_t key);
/* Make room for n keys in all, so that the puts up to n do not rehash the table again
 * and again (a workflow of 100k tasks created at once). */
tn_err tn_map_reserve(tn_map *m, size_t n);

/* Iterate: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

#endif

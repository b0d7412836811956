/* Open-addressing (linear probing, backward-shift deletion) u64 -> pointer map. */
#include "map.h"

#include <stdbool.h>
#include <stdlib.h>

static inline size_t hash64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    return (size_t)k;
}

/* A dense map's keys come in sequence: four consecutive ones share a cache line (a
 * block's home slots are adjacent), the blocks are spread as any key is. */
static inline size_t home(const tn_map *m, uint64_t k)
{
    return m->dense ? hash64(k >> 2) << 2 | (size_t)(k & 3) : hash64(k);
}

void tn_map_init(tn_map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
    m->dense = false;
}

void tn_map_init_dense(tn_map *m)
{
    tn_map_init(m);
    m->dense = true;
}

void tn_map_fini(tn_map *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void *tn_map_get(const tn_map *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = home(m, key) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == key)
            return m->slots[i].val;
        if (m->slots[i].key == 0)
            return NULL;
    }
}

/* Not inline: GCC 12 drops this prefetch from an inlined copy. */
void tn_map_prefetch(const tn_map *m, uint64_t key)
{
    if (m->cap)
        __builtin_prefetch(&m->slots[home(m, key) & (m->cap - 1)]);
}

static tn_err grow_to(tn_map *m, size_t ncap)
{
    tn_map_slot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return TN_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = home(m, m->slots[i].key) & (ncap - 1);
        while (ns[j].key)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return TN_OK;
}

static tn_err grow(tn_map *m)
{
    return grow_to(m, m->cap ? m->cap * 2 : 64);
}

tn_err tn_map_reserve(tn_map *m, size_t n)
{
    size_t ncap = m->cap ? m->cap : 64;
    while (n * 4 > ncap * 3)
        ncap *= 2;
    return ncap == m->cap ? TN_OK : grow_to(m, ncap);
}

tn_err tn_map_put(tn_map *m, uint64_t key, void *val)
{
    if (key == 0)
        return TN_ERR_INVAL;
    if ((m->len + 1) * 4 > m->cap * 3) {
        tn_err e = grow(m);
        if (e)
            return e;
    }
    size_t mask = m->cap - 1;
    size_t i = home(m, key) & mask;
    while (m->slots[i].key && m->slots[i].key != key)
        i = (i + 1) & mask;
    if (!m->slots[i].key)
        m->len++;
    m->slots[i].key = key;
    m->slots[i].val = val;
    return TN_OK;
}

void *tn_map_del(tn_map *m, uint64_t key)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1;
    size_t i = home(m, key) & mask;
    while (m->slots[i].key != key) {
        if (!m->slots[i].key)
            return NULL;
        i = (i + 1) & mask;
    }
    void *val = m->slots[i].val;
    /* backward-shift: move later entries of the probe run into the hole */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].key)
            break;
        size_t h = home(m, m->slots[j].key) & mask;
        /* can slot j's entry move to i? only if i lies cyclically in [h, j) */
        if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = 0;
    m->slots[i].val = NULL;
    m->len--;
    return val;
}

/* libFuzzer target over the event decoder (core/log/event.c): any bytes decode or are
 * refused, and what decodes re-encodes to bytes that decode to the same event and encode
 * to the same bytes again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "sm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* event.c names machines through the generated state machine tables, which this build
 * does not generate: no machine has a name here. */
const tn_sm *tn_sm_get(unsigned machine)
{
    (void)machine;
    return NULL;
}

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_event: %s\n", what);
    abort();
}

static int str_eq(tn_str a, tn_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void same(const tn_event *a, const tn_event *b)
{
    if (a->seq != b->seq || a->at != b->at || a->machine != b->machine ||
        a->event != b->event || a->wf != b->wf || a->task != b->task || a->from != b->from ||
        a->to != b->to || !str_eq(a->actor, b->actor) || a->nattrs != b->nattrs ||
        memcmp(a->prev, b->prev, TN_HASH_LEN) != 0)
        fail("re-decoded event differs");
    for (uint32_t i = 0; i < a->nattrs; i++) {
        const tn_attr *x = &a->attrs[i], *y = &b->attrs[i];
        if (!str_eq(x->key, y->key) || x->type != y->type)
            fail("re-decoded attr differs");
        if (x->type == TN_ATTR_INT ? x->i != y->i : !str_eq(x->s, y->s))
            fail("re-decoded attr value differs");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the decoder reads only data[0..size): a copy of exactly that size lets ASan see it */
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    tn_event ev, ev2;
    if (tn_event_decode(in, size, &ev) != TN_OK) {
        free(in);
        return 0;
    }
    if (ev.nattrs > TN_ATTRS_MAX || ev.actor.len > TN_ACTOR_MAX)
        fail("decoded event over its bounds");
    tn_buf a = {0}, b = {0};
    if (tn_event_encode(&ev, &a) != TN_OK)
        fail("a decoded event does not encode");
    if (tn_event_decode(a.data, a.size, &ev2) != TN_OK)
        fail("an encoded event does not decode");
    same(&ev, &ev2);
    if (tn_event_encode(&ev2, &b) != TN_OK || a.size != b.size ||
        memcmp(a.data, b.data, a.size) != 0)
        fail("encoding is not stable");
    tn_buf_free(&a);
    tn_buf_free(&b);
    free(in);
    return 0;
}

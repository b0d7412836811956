/* libFuzzer target over the control protocol decoders (transport/ctl.c): the first byte
 * picks request or reply, the rest is decoded; what decodes re-encodes to bytes that
 * decode and encode to the same bytes again. Decoded strings also go through
 * tn_ctl_escape, which must leave no control character and respect its cap. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_ctl: %s\n", what);
    abort();
}

static void escaped(tn_str s)
{
    char out[96];
    size_t n = tn_ctl_escape(s.p, s.len, out, sizeof(out));
    if (n >= sizeof(out) || out[n] != 0 || strlen(out) != n)
        fail("escape over its cap or not terminated");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            fail("escape left a control character");
}

static void same_bytes(const tn_buf *a, const tn_buf *b)
{
    if (a->size != b->size || memcmp(a->data, b->data, a->size) != 0)
        fail("encoding is not stable");
}

static void req(const uint8_t *in, size_t size)
{
    tn_ctl_req r, r2;
    if (tn_ctl_req_decode(in, size, &r) != TN_OK)
        return;
    if (r.nparams > TN_CTL_MAX_LIST || r.nfrom > TN_CTL_MAX_LIST)
        fail("request lists over their bounds");
    escaped(r.cmd), escaped(r.name), escaped(r.actor), escaped(r.file);
    for (uint32_t i = 0; i < r.nparams; i++)
        escaped(r.pkeys[i]), escaped(r.pvals[i]);
    for (uint32_t i = 0; i < r.nfrom; i++)
        escaped(r.from[i]);
    tn_buf a = {0}, b = {0};
    if (tn_ctl_req_encode(&r, &a) != TN_OK)
        fail("a decoded request does not encode");
    if (tn_ctl_req_decode(a.data, a.size, &r2) != TN_OK)
        fail("an encoded request does not decode");
    if (tn_ctl_req_encode(&r2, &b) != TN_OK)
        fail("a re-decoded request does not encode");
    same_bytes(&a, &b);
    tn_buf_free(&a);
    tn_buf_free(&b);
}

static void rep(const uint8_t *in, size_t size)
{
    tn_ctl_rep r, r2;
    if (tn_ctl_rep_decode(in, size, &r) != TN_OK)
        return;
    escaped(r.text), escaped(r.json), escaped(r.url);
    tn_buf a = {0}, b = {0};
    if (tn_ctl_rep_encode(&r, &a) != TN_OK)
        fail("a decoded reply does not encode");
    if (tn_ctl_rep_decode(a.data, a.size, &r2) != TN_OK)
        fail("an encoded reply does not decode");
    if (tn_ctl_rep_encode(&r2, &b) != TN_OK)
        fail("a re-decoded reply does not encode");
    same_bytes(&a, &b);
    tn_buf_free(&a);
    tn_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t *in = malloc(size > 1 ? size - 1 : 1); /* exactly the input: ASan sees overreads */
    if (!in)
        return 0;
    memcpy(in, data + 1, size - 1);
    if (data[0] & 1)
        rep(in, size - 1);
    else
        req(in, size - 1);
    free(in);
    return 0;
}

/* libFuzzer target over the definition loader (core/def/def.c). The first byte picks the
 * input: odd, the rest is YAML for tn_def_parse; even, the rest is a canonical encoding for
 * tn_def_decode. Either is accepted or refused with a message; a parsed definition encodes,
 * its encoding decodes and encodes to the same bytes; a decoded one re-encodes to exactly
 * its input (the decoder refuses non-canonical bytes); a refused YAML file is named in
 * the message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_yaml: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void round_trip(const tn_def *d, const uint8_t *want, size_t want_len)
{
    char *enc = NULL, *again = NULL;
    size_t len = 0, again_len = 0;
    tn_errmsg e = {{0}};
    if (tn_def_encode(d, &enc, &len) != TN_OK)
        fail("a valid definition does not encode", NULL);
    if (want && (len != want_len || memcmp(enc, want, len) != 0))
        fail("a decoded definition re-encodes to other bytes", NULL);
    tn_def *d2 = NULL;
    if (tn_def_decode(enc, len, &d2, &e) != TN_OK)
        fail("an encoded definition does not decode", e.text);
    if (tn_def_encode(d2, &again, &again_len) != TN_OK)
        fail("a decoded definition does not encode", NULL);
    if (again_len != len || memcmp(enc, again, len) != 0)
        fail("encoding is not stable", NULL);
    tn_def_free(d2);
    free(enc);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *in = malloc(size > 1 ? size - 1 : 1); /* exactly the input: ASan sees overreads */
    if (!in)
        return 0;
    memcpy(in, data + 1, size - 1);
    tn_def *d = NULL;
    tn_errmsg e = {{0}};
    tn_err err = data[0] & 1 ? tn_def_parse("fuzz.yaml", in, size - 1, &d, &e) :
                               tn_def_decode(in, size - 1, &d, &e);
    if (err != TN_OK) {
        if (!e.text[0])
            fail("refused without a message", NULL);
        /* a refused file is named in its message, with the line: "fuzz.yaml:LINE: ..." */
        if ((data[0] & 1) && err != TN_ERR_NOMEM && strncmp(e.text, "fuzz.yaml:", 10) != 0)
            fail("a refusal that does not name the file", e.text);
        if (d)
            fail("a refused input set its output", NULL);
    } else {
        round_trip(d, data[0] & 1 ? NULL : (const uint8_t *)in, size - 1);
        tn_def_free(d);
    }
    free(in);
    return 0;
}

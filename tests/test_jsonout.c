/* The master's JSON output helpers (core/master/jsonout.c): bytes that are not UTF-8
 * become U+FFFD, times, params maps, the dump into a buffer, and where a stream may be
 * cut without splitting a character. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "jsonout.h"

#define FFFD "\xEF\xBF\xBD"

/* The JSON string v holds, checked to be a string; v is released. The bytes are copied
 * into out (len: their count). */
static void str_of(json_t *v, char *out, size_t cap, size_t *len)
{
    cr_assert(json_is_string(v), "not a string");
    size_t n = json_string_length(v);
    cr_assert_lt(n, cap);
    memcpy(out, json_string_value(v), n);
    out[n] = 0;
    *len = n;
    json_decref(v);
}

static void expect_fixed(const char *in, size_t n, const char *want, size_t wn)
{
    char got[256];
    size_t len;
    str_of(tn_jo_strn(in, n), got, sizeof(got), &len);
    cr_assert_eq(len, wn, "%zu bytes, want %zu: [%s]", len, wn, got);
    cr_assert(memcmp(got, want, wn) == 0, "[%s], want [%s]", got, want);
}

#define FIX(in, want) expect_fixed(in, sizeof(in) - 1, want, sizeof(want) - 1)

Test(jsonout, valid_utf8_passes_unchanged)
{
    FIX("plain", "plain");
    FIX("caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80",
        "caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80");
    FIX("quote\" back\\ tab\t nl\n esc\x1b del\x7f",
        "quote\" back\\ tab\t nl\n esc\x1b del\x7f");
    FIX("nul\0inside", "nul\0inside");
    FIX("", "");
}

/* Each maximal invalid subpart is one U+FFFD (Unicode's recommended practice, which the
 * WHATWG decoder follows): a stray continuation byte, a lead byte cut by another lead,
 * overlong forms, surrogates, and anything above U+10FFFF. */
Test(jsonout, invalid_bytes_become_one_replacement_each)
{
    FIX("a\xFF"
        "b",
        "a" FFFD "b");
    FIX("\x80\x80", FFFD FFFD);
    FIX("\xC3(", FFFD "(");
    FIX("\xE2\x82(", FFFD "(");                   /* a cut 3-byte sequence: one U+FFFD */
    FIX("\xF0\x9F\x98", FFFD);                    /* cut at the end */
    FIX("\xC0\xAF", FFFD FFFD);                   /* overlong '/' */
    FIX("\xE0\x80\xAF", FFFD FFFD FFFD);          /* overlong: E0 needs A0..BF next */
    FIX("\xED\xA0\x80", FFFD FFFD FFFD);          /* a surrogate */
    FIX("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* above U+10FFFF */
    FIX("ok\xC3\xA9\xFE", "ok\xC3\xA9" FFFD);
}

/* What the dump writes parses back with a strict parser, to the same (repaired) text. */
Test(jsonout, dump_is_strict_json_and_round_trips)
{
    const char raw[] = "q\"\\\x01\x1f\t\n\xFF\xC3\xA9";
    json_t *o = json_object();
    cr_assert(tn_jo_set(o, "name", tn_jo_strn(raw, sizeof(raw) - 1)));
    cr_assert(tn_jo_setn(o, "k\xFF", 2, json_integer(7))); /* a key is repaired too */
    cr_assert(tn_jo_set(o, "t", tn_jo_time(0)));
    tn_sb b = {0};
    tn_sb_printf(&b, "x=");
    cr_assert(tn_jo_dump(&b, o));
    cr_assert_eq(strncmp(b.s, "x={\"name\":", 10), 0, "%s", b.s);
    cr_assert_eq(b.len, strlen(b.s));
    json_error_t err;
    json_t *back = json_loads(b.s + 2, JSON_REJECT_DUPLICATES, &err);
    cr_assert_not_null(back, "%s: %s", err.text, b.s);
    cr_assert_str_eq(json_string_value(json_object_get(back, "name")),
                     "q\"\\\x01\x1f\t\n" FFFD "\xC3\xA9");
    cr_assert_eq(json_integer_value(json_object_get(back, "k" FFFD)), 7);
    cr_assert(json_is_null(json_object_get(back, "t")));
    json_decref(back);
    free(b.s);
}

Test(jsonout, keys_keep_their_order)
{
    json_t *o = json_object();
    tn_jo_set(o, "zeta", json_integer(1));
    tn_jo_set(o, "alpha", json_integer(2));
    tn_jo_set(o, "mid", json_integer(3));
    tn_sb b = {0};
    cr_assert(tn_jo_dump(&b, o));
    cr_assert_str_eq(b.s, "{\"zeta\":1,\"alpha\":2,\"mid\":3}");
    free(b.s);
}

/* A value lost to a failed set (here: a NULL, what a constructor returns without memory)
 * fails the next dump instead of leaving the field out; the dump after that is whole. */
Test(jsonout, a_lost_field_fails_the_dump)
{
    json_t *o = json_object();
    tn_jo_set(o, "a", json_integer(1));
    cr_assert_not(tn_jo_set(o, "b", NULL));
    tn_sb b = {0};
    cr_assert_not(tn_jo_dump(&b, o));
    cr_assert_eq(b.len, 0);
    /* a string dumped meanwhile (a text line's value) does not clear the loss */
    json_t *o2 = json_object();
    cr_assert_not(tn_jo_set(o2, "b", NULL));
    cr_assert(tn_jo_dump(&b, json_string("x")));
    cr_assert_str_eq(b.s, "\"x\"");
    b.len = 0;
    cr_assert_not(tn_jo_dump(&b, o2));
    cr_assert_eq(b.len, 0);
    json_t *a = json_array();
    cr_assert_not(tn_jo_push(a, NULL));
    cr_assert_not(tn_jo_dump(&b, a));
    cr_assert_not(tn_jo_dump(&b, NULL));
    cr_assert(tn_jo_dump(&b, json_pack("{s:b}", "ok", 1)));
    cr_assert_str_eq(b.s, "{\"ok\":true}");
    free(b.s);
}

Test(jsonout, times_to_the_nanosecond)
{
    char s[64];
    size_t n;
    str_of(tn_jo_time(1764000000LL * 1000000000LL + 5), s, sizeof(s), &n);
    cr_assert_str_eq(s, "2025-11-24T16:00:00.000000005Z");
    str_of(tn_jo_time(1764000000LL * 1000000000LL + 123456789), s, sizeof(s), &n);
    cr_assert_str_eq(s, "2025-11-24T16:00:00.123456789Z");
    json_t *z = tn_jo_time(0);
    cr_assert(json_is_null(z), "0 is a time that has not come");
    json_decref(z);
}

Test(jsonout, params_map_and_numbers)
{
    tn_kv *kv = tn_kv_new();
    cr_assert_eq(tn_kv_set(kv, "day", "2026-11-30"), TN_OK);
    cr_assert_eq(tn_kv_set(kv, "odd", "a\"b\xFF"), TN_OK);
    json_t *o = json_object();
    tn_jo_set(o, "params", tn_jo_kv(kv));
    tn_jo_set(o, "none", tn_jo_kv(NULL));
    tn_jo_set(o, "load", tn_jo_milli(0.25));
    tn_jo_set(o, "ago", tn_jo_milli(3600.1234));
    tn_sb b = {0};
    cr_assert(tn_jo_dump(&b, o));
    cr_assert_str_eq(b.s, "{\"params\":{\"day\":\"2026-11-30\",\"odd\":\"a\\\"b" FFFD
                          "\"},\"none\":{},\"load\":0.25,\"ago\":3600.123}");
    free(b.s);
    tn_kv_free(kv);
}

/* Where a stream may be cut: before an incomplete sequence at its end, never inside a
 * character; an invalid byte is not held back (more bytes cannot make it valid). */
Test(jsonout, utf8_complete_holds_back_a_cut_character)
{
    cr_assert_eq(tn_utf8_complete("abc", 3), 3);
    cr_assert_eq(tn_utf8_complete("a\xC3", 2), 1);
    cr_assert_eq(tn_utf8_complete("a\xC3\xA9", 3), 3);
    cr_assert_eq(tn_utf8_complete("a\xE4\xB8", 3), 1);
    cr_assert_eq(tn_utf8_complete("\xF0\x9F\x98", 3), 0);
    cr_assert_eq(tn_utf8_complete("\xF0\x9F\x98\x80", 4), 4);
    cr_assert_eq(tn_utf8_complete("a\xFF", 2), 2);
    cr_assert_eq(tn_utf8_complete("a\xE0\x80", 3), 3, "E0 80 can never be completed");
    cr_assert_eq(tn_utf8_complete("\x80", 1), 1);
    cr_assert_eq(tn_utf8_complete("", 0), 0);
}

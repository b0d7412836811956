/* The master's JSON output over jansson (see jsonout.h): strings repaired to UTF-8, times,
 * params maps, and the dump into a reply's buffer. */
#include "jsonout.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* a tn_jo_set or tn_jo_push lost a value since this thread's last dump */
static _Thread_local bool lost;

/* The UTF-8 sequence at s (n > 0 bytes): its length, and in *ok whether it is one
 * character; an invalid one is its maximal subpart (at least one byte). *cut: the
 * buffer ended inside a sequence that was valid so far. */
static size_t utf8_seq(const unsigned char *s, size_t n, bool *ok, bool *cut)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    *ok = false;
    *cut = false;
    if (c < 0x80) {
        *ok = true;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 1; /* a continuation byte, C0, C1, F5..FF */
    }
    for (size_t i = 1; i <= need; i++) {
        if (i == n) {
            *cut = true;
            return i;
        }
        if (s[i] < lo || s[i] > hi)
            return i;
        lo = 0x80;
        hi = 0xBF;
    }
    *ok = true;
    return need + 1;
}

size_t tn_utf8_complete(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        bool ok, cut;
        size_t k = utf8_seq(u + i, n - i, &ok, &cut);
        if (cut)
            return i;
        i += k;
    }
    return n;
}

json_t *tn_jo_strn(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        bool ok, cut;
        size_t k = utf8_seq(u + i, n - i, &ok, &cut);
        bad += !ok;
        i += k;
    }
    if (!bad)
        return json_stringn_nocheck(n ? s : "", n);
    /* each invalid subpart (at least one byte) becomes the three bytes of U+FFFD */
    char *fixed = malloc(n + 2 * bad + 1);
    if (!fixed)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        bool ok, cut;
        size_t k = utf8_seq(u + i, n - i, &ok, &cut);
        if (ok) {
            memcpy(fixed + w, s + i, k);
            w += k;
        } else {
            memcpy(fixed + w, "\xEF\xBF\xBD", 3);
            w += 3;
        }
        i += k;
    }
    json_t *j = json_stringn_nocheck(fixed, w);
    free(fixed);
    return j;
}

json_t *tn_jo_str(const char *s)
{
    return s ? tn_jo_strn(s, strlen(s)) : json_string("");
}

json_t *tn_jo_time(int64_t ns)
{
    if (!ns)
        return json_null();
    char ts[40], out[64];
    tn_fmt_time(ns - ns % 1000000000LL, ts, sizeof(ts)); /* whole seconds, then ours */
    ts[19] = 0;
    int64_t frac = ns % 1000000000LL;
    snprintf(out, sizeof(out), "%s.%09" PRId64 "Z", ts, frac < 0 ? 0 : frac);
    return json_string(out);
}

json_t *tn_jo_kv(const tn_kv *kv)
{
    json_t *o = json_object();
    for (uint32_t i = 0; o && i < tn_kv_len(kv); i++)
        if (!tn_jo_set(o, tn_kv_key(kv, i), tn_jo_str(tn_kv_value(kv, i)))) {
            json_decref(o);
            return NULL;
        }
    return o;
}

json_t *tn_jo_milli(double v)
{
    return json_real(round(v * 1000.0) / 1000.0);
}

bool tn_jo_setn(json_t *obj, const char *key, size_t n, json_t *v)
{
    json_t *k = v ? tn_jo_strn(key, n) : NULL; /* the key repaired as a value would be */
    bool ok = k && json_object_setn_new_nocheck(obj, json_string_value(k),
                                                json_string_length(k), v) == 0;
    if (!k)
        json_decref(v);
    json_decref(k);
    lost |= !ok;
    return ok;
}

bool tn_jo_set(json_t *obj, const char *key, json_t *v)
{
    return tn_jo_setn(obj, key, strlen(key), v);
}

bool tn_jo_push(json_t *arr, json_t *v)
{
    bool ok = v && json_array_append_new(arr, v) == 0;
    lost |= !ok;
    return ok;
}

bool tn_jo_dump(tn_sb *b, json_t *root)
{
    /* a string (a text line's quoted value, written while a reply is being built) holds
     * no field: the flag stays for the container it may belong to */
    bool was_lost = false;
    if (!root || json_is_object(root) || json_is_array(root)) {
        was_lost = lost;
        lost = false;
    }
    /* 15 digits: a rounded tn_jo_milli prints as written; nothing here needs more */
    char *s = root && !was_lost ?
                  json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY |
                                       JSON_REAL_PRECISION(15)) :
                  NULL;
    json_decref(root);
    if (!s)
        return false;
    size_t n = strlen(s);
    if (b->cap - b->len <= n) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc - b->len <= n)
            nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            free(s);
            return false;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
    free(s);
    return true;
}

json_t *tn_jo_attr(const tn_attr *a)
{
    if (a->type == TN_ATTR_INT)
        return json_integer(a->i);
    if (a->type != TN_ATTR_BIN)
        return tn_jo_strn(a->s.p, a->s.len);
    tn_kv *kv = NULL;
    json_t *j = tn_kv_decode(a->s.p, a->s.len, &kv) == TN_OK ?
                    tn_jo_kv(kv) :
                    json_pack("{s:I}", "bytes", (json_int_t)a->s.len);
    tn_kv_free(kv);
    return j;
}

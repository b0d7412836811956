/* Tests of the event envelope codec, the msgpack reader and the projection codecs:
 * round trips, cross-checks with msgpack-c, and a corpus of malformed inputs. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "mp.h"
#include "proj.h"
#include "sm_gen.h"

/* With TN_FUZZ_SEEDS=DIR set, the inputs below are also written to DIR/NAME, to seed the
 * fuzzer's corpus (tests/fuzz/corpus). */
static void seed_dump(const char *name, const void *p, size_t n)
{
    const char *dir = getenv("TN_FUZZ_SEEDS");
    char path[512];
    if (!dir || snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return;
    FILE *f = fopen(path, "we");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

static void sample(tn_event *ev)
{
    tn_event_init(ev, TN_MACHINE_TASK, TN_TASK_E_RUNNING, 7, 4242);
    ev->seq = 123456789012ull;
    ev->at = 1795000000123456789ll;
    ev->from = TN_TASK_S_DISPATCH;
    ev->to = TN_TASK_S_RUNNING_EXECUTION;
    ev->actor = TN_STR("worker:w1");
    tn_event_set_int(ev, "attempt", 3);
    tn_event_set_int(ev, "neg", -123456789);
    tn_event_set_int(ev, "min", INT64_MIN);
    tn_event_set_int(ev, "max", INT64_MAX);
    tn_event_set_str(ev, "worker", "w1");
    tn_event_set_str(ev, "empty", "");
    tn_event_set_bin(ev, "blob", "\x00\x01\x02", 3);
    for (int i = 0; i < TN_HASH_LEN; i++)
        ev->prev[i] = (uint8_t)(i * 7 + 1);
}

static void assert_same(const tn_event *a, const tn_event *b)
{
    cr_assert_eq(a->seq, b->seq);
    cr_assert_eq(a->at, b->at);
    cr_assert_eq(a->machine, b->machine);
    cr_assert_eq(a->event, b->event);
    cr_assert_eq(a->wf, b->wf);
    cr_assert_eq(a->task, b->task);
    cr_assert_eq(a->from, b->from);
    cr_assert_eq(a->to, b->to);
    cr_assert_eq(a->actor.len, b->actor.len);
    cr_assert(memcmp(a->actor.p, b->actor.p, a->actor.len) == 0);
    cr_assert_eq(a->nattrs, b->nattrs);
    for (uint32_t i = 0; i < a->nattrs; i++) {
        cr_assert_eq(a->attrs[i].type, b->attrs[i].type, "attr %u type", i);
        cr_assert_eq(a->attrs[i].key.len, b->attrs[i].key.len);
        cr_assert(memcmp(a->attrs[i].key.p, b->attrs[i].key.p, a->attrs[i].key.len) == 0);
        if (a->attrs[i].type == TN_ATTR_INT) {
            cr_assert_eq(a->attrs[i].i, b->attrs[i].i, "attr %u value", i);
        } else {
            cr_assert_eq(a->attrs[i].s.len, b->attrs[i].s.len);
            cr_assert(memcmp(a->attrs[i].s.p, b->attrs[i].s.p, a->attrs[i].s.len) == 0);
        }
    }
    cr_assert(memcmp(a->prev, b->prev, TN_HASH_LEN) == 0);
}

Test(event, round_trip)
{
    tn_event ev, back;
    sample(&ev);
    tn_buf b = {0};
    cr_assert_eq(tn_event_encode(&ev, &b), TN_OK);
    seed_dump("test-sample", b.data, b.size);
    cr_assert_eq(tn_event_decode(b.data, b.size, &back), TN_OK);
    assert_same(&ev, &back);
    /* re-encoding the decoded event gives the same bytes: the chain hash is stable */
    tn_buf b2 = {0};
    cr_assert_eq(tn_event_encode(&back, &b2), TN_OK);
    cr_assert_eq(b.size, b2.size);
    cr_assert(memcmp(b.data, b2.data, b.size) == 0);
    tn_buf_free(&b);
    tn_buf_free(&b2);
}

Test(event, round_trip_every_machine_and_event)
{
    for (unsigned m = 1; m <= TN_MACHINE_MAX; m++) {
        const tn_sm *sm = tn_sm_get(m);
        for (unsigned e = 0; e < sm->nevents; e++) {
            tn_event ev, back;
            tn_event_init(&ev, m, e, m == TN_MACHINE_SYSTEM ? 0 : 1,
                          m == TN_MACHINE_TASK ? 2 : 0);
            ev.seq = e + 1;
            tn_buf b = {0};
            cr_assert_eq(tn_event_encode(&ev, &b), TN_OK);
            cr_assert_eq(tn_event_decode(b.data, b.size, &back), TN_OK);
            assert_same(&ev, &back);
            tn_buf_free(&b);
        }
    }
}

/* Our reader must accept what msgpack-c's own unpacker sees as the same document. */
Test(event, msgpack_c_agrees)
{
    tn_event ev;
    sample(&ev);
    tn_buf b = {0};
    tn_event_encode(&ev, &b);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&u, b.data, b.size, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, b.size);
    msgpack_object o = u.data;
    cr_assert_eq(o.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(o.via.array.size, 12);
    cr_assert_eq(o.via.array.ptr[0].via.u64, TN_EVENT_VERSION);
    cr_assert_eq(o.via.array.ptr[1].via.u64, ev.seq);
    cr_assert_eq(o.via.array.ptr[2].via.i64, ev.at);
    cr_assert_eq(o.via.array.ptr[5].via.u64, 7);
    cr_assert_eq(o.via.array.ptr[6].via.u64, 4242);
    cr_assert_eq(o.via.array.ptr[10].type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(o.via.array.ptr[10].via.map.size, ev.nattrs);
    cr_assert_eq(o.via.array.ptr[11].type, MSGPACK_OBJECT_BIN);
    msgpack_unpacked_destroy(&u);

    /* and an event written by hand with msgpack-c, using other int widths, decodes */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 12);
    msgpack_pack_int32(&pk, 1);
    msgpack_pack_int64(&pk, 99);
    msgpack_pack_uint64(&pk, 5);
    msgpack_pack_int8(&pk, TN_MACHINE_WORKFLOW);
    msgpack_pack_uint16(&pk, TN_WF_E_START);
    msgpack_pack_uint32(&pk, 3);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_uint8(&pk, TN_WF_S_SUBMITTED_SUCCESS);
    msgpack_pack_uint8(&pk, TN_WF_S_RUNNING_EXECUTION);
    msgpack_pack_str_with_body(&pk, "user:x", 6);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_int16(&pk, -300);
    uint8_t h[32] = {0};
    msgpack_pack_bin_with_body(&pk, h, 32);
    tn_event d;
    cr_assert_eq(tn_event_decode(sb.data, sb.size, &d), TN_OK);
    cr_assert_eq(d.seq, 99);
    cr_assert_eq(d.at, 5);
    cr_assert_eq(d.wf, 3);
    cr_assert_eq(d.attrs[0].i, -300);
    cr_assert(tn_str_eq(d.actor, "user:x"));
    msgpack_sbuffer_destroy(&sb);
    tn_buf_free(&b);
}

Test(event, every_truncation_is_refused)
{
    tn_event ev, back;
    sample(&ev);
    tn_buf b = {0};
    tn_event_encode(&ev, &b);
    for (size_t n = 0; n < b.size; n++) {
        /* copy into an exact-size heap buffer so a read past it is caught by ASan */
        char *p = malloc(n ? n : 1);
        memcpy(p, b.data, n);
        tn_err e = tn_event_decode(p, n, &back);
        cr_assert_neq(e, TN_OK, "a %zu-byte prefix of %zu decoded", n, b.size);
        free(p);
    }
    tn_buf_free(&b);
}

Test(event, every_byte_flip_is_safe)
{
    tn_event ev, back;
    sample(&ev);
    tn_buf b = {0};
    tn_event_encode(&ev, &b);
    char *p = malloc(b.size);
    size_t refused = 0;
    for (size_t i = 0; i < b.size; i++) {
        static const uint8_t flips[] = {0x01, 0x80, 0xff, 0x20};
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(p, b.data, b.size);
            p[i] ^= flips[f];
            if (tn_event_decode(p, b.size, &back) != TN_OK) {
                refused++;
                continue;
            }
            /* accepted: everything it points at lies inside the input */
            const char *lo = p, *hi = p + b.size;
            cr_assert(back.actor.p >= lo && back.actor.p + back.actor.len <= hi);
            for (uint32_t a = 0; a < back.nattrs; a++) {
                cr_assert(back.attrs[a].key.p >= lo &&
                          back.attrs[a].key.p + back.attrs[a].key.len <= hi);
                if (back.attrs[a].type != TN_ATTR_INT)
                    cr_assert(back.attrs[a].s.p >= lo &&
                              back.attrs[a].s.p + back.attrs[a].s.len <= hi);
            }
        }
    }
    /* flips in headers and type bytes are refused; flips in values are left to the chain */
    cr_assert_gt(refused, 0);
    free(p);
    tn_buf_free(&b);
}

static int g_seed;
static tn_err decode_packed(void (*fill)(msgpack_packer *))
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fill(&pk);
    char name[32];
    snprintf(name, sizeof(name), "test-malformed-%02d", g_seed++);
    seed_dump(name, sb.data, sb.size);
    tn_event ev;
    tn_err e = tn_event_decode(sb.data, sb.size, &ev);
    msgpack_sbuffer_destroy(&sb);
    return e;
}

/* A valid event's first N fields, then `tail` for the rest. */
static void head(msgpack_packer *pk, unsigned n_array, unsigned version)
{
    msgpack_pack_array(pk, n_array);
    msgpack_pack_uint8(pk, version);
}

static void f_version2(msgpack_packer *pk)
{
    head(pk, 12, 2);
}
static void f_not_array(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 0);
}
static void f_short_array(msgpack_packer *pk)
{
    head(pk, 11, 1);
    for (int i = 0; i < 10; i++)
        msgpack_pack_uint8(pk, 1);
}
static void rest(msgpack_packer *pk, int bad)
{
    /* seq at wf... with one deliberate defect chosen by `bad` */
    if (bad == 1)
        msgpack_pack_str_with_body(pk, "x", 1); /* seq as a string */
    else if (bad == 2)
        msgpack_pack_int8(pk, -1); /* negative seq */
    else
        msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint8(pk, 0);                              /* at */
    msgpack_pack_uint8(pk, bad == 3 ? 9 : TN_MACHINE_TASK); /* machine */
    msgpack_pack_uint16(pk, bad == 4 ? 300 : 0);            /* event */
    msgpack_pack_uint8(pk, 1);                              /* wf */
    msgpack_pack_uint8(pk, 2);                              /* task */
    msgpack_pack_uint8(pk, 0);                              /* from */
    msgpack_pack_uint8(pk, 1);                              /* to */
    if (bad == 5) {
        char big[100];
        memset(big, 'a', sizeof(big));
        msgpack_pack_str_with_body(pk, big, sizeof(big)); /* actor too long */
    } else {
        msgpack_pack_str_with_body(pk, "a", 1);
    }
    if (bad == 6) {
        msgpack_pack_map(pk, 33); /* too many attrs */
        for (int i = 0; i < 33; i++) {
            char k[8];
            int n = snprintf(k, sizeof(k), "k%d", i);
            msgpack_pack_str_with_body(pk, k, (size_t)n);
            msgpack_pack_uint8(pk, 1);
        }
    } else if (bad == 7) {
        msgpack_pack_map(pk, 1);
        msgpack_pack_uint8(pk, 1); /* a non-string key */
        msgpack_pack_uint8(pk, 1);
    } else if (bad == 8) {
        msgpack_pack_map(pk, 1);
        msgpack_pack_str_with_body(pk, "k", 1);
        msgpack_pack_array(pk, 0); /* a value of an unsupported type */
    } else if (bad == 9) {
        msgpack_pack_map(pk, 1);
        msgpack_pack_str_with_body(pk, "", 0); /* an empty key */
        msgpack_pack_uint8(pk, 1);
    } else {
        msgpack_pack_map(pk, 0);
    }
    uint8_t h[40] = {0};
    if (bad == 10)
        msgpack_pack_bin_with_body(pk, h, 31); /* short hash */
    else if (bad == 11)
        msgpack_pack_str_with_body(pk, (const char *)h, 32); /* hash as str */
    else
        msgpack_pack_bin_with_body(pk, h, 32);
    if (bad == 12)
        msgpack_pack_nil(pk); /* trailing bytes */
}
static int g_bad;
static void f_bad(msgpack_packer *pk)
{
    head(pk, 12, 1);
    rest(pk, g_bad);
}

Test(event, malformed_corpus)
{
    cr_assert_eq(decode_packed(f_version2), TN_ERR_VERSION);
    cr_assert_eq(decode_packed(f_not_array), TN_ERR_TYPE);
    cr_assert_neq(decode_packed(f_short_array), TN_OK);
    g_bad = 0;
    cr_assert_eq(decode_packed(f_bad), TN_OK, "the corpus' base case must be valid");
    static const tn_err want[] = {0,
                                  TN_ERR_TYPE,
                                  TN_ERR_TYPE,
                                  TN_ERR_TOOBIG,
                                  TN_ERR_TOOBIG,
                                  TN_ERR_TOOBIG,
                                  TN_ERR_TOOBIG,
                                  TN_ERR_TYPE,
                                  TN_ERR_TYPE,
                                  TN_ERR_CORRUPT,
                                  TN_ERR_CORRUPT,
                                  TN_ERR_TYPE,
                                  TN_ERR_CORRUPT};
    for (g_bad = 1; g_bad <= 12; g_bad++)
        cr_assert_eq(decode_packed(f_bad), want[g_bad], "defect %d: got %s", g_bad,
                     tn_errname(decode_packed(f_bad)));
}

Test(event, length_claims_beyond_the_input)
{
    /* an array of 12 whose actor claims 2^32-1 bytes: refused before reading them */
    uint8_t buf[] = {0x9c, 0x01, 0x01, 0x00, 0x02, 0x00, 0x01, 0x02,
                     0x00, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    tn_event ev;
    tn_err e = tn_event_decode(buf, sizeof(buf), &ev);
    cr_assert(e == TN_ERR_TOOBIG || e == TN_ERR_TRUNCATED, "got %s", tn_errname(e));
    /* an array header claiming 2^32-1 elements */
    uint8_t arr[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(tn_event_decode(arr, sizeof(arr), &ev), TN_ERR_TOOBIG);
    /* more bytes than any event may have */
    cr_assert_eq(tn_event_decode(arr, TN_EVENT_MAX_BYTES + 1, &ev), TN_ERR_TOOBIG);
    cr_assert_neq(tn_event_decode(NULL, 0, &ev), TN_OK);
}

Test(event, encode_bounds)
{
    tn_event ev;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, 0, 1, 0);
    for (int i = 0; i < TN_ATTRS_MAX; i++)
        cr_assert_eq(tn_event_set_int(&ev, "k", i), TN_OK);
    cr_assert_eq(tn_event_set_int(&ev, "k", 0), TN_ERR_TOOBIG);
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, 0, 1, 0);
    char actor[TN_ACTOR_MAX + 2];
    memset(actor, 'a', sizeof(actor) - 1);
    actor[sizeof(actor) - 1] = 0;
    ev.actor = tn_str_c(actor);
    tn_buf b = {0};
    cr_assert_eq(tn_event_encode(&ev, &b), TN_ERR_TOOBIG);
    ev.actor = TN_STR("ok");
    tn_event_set_int(&ev, "a_key_that_is_longer_than_32_bytes_x", 1);
    cr_assert_eq(tn_event_encode(&ev, &b), TN_ERR_TOOBIG);
    tn_buf_free(&b);
}

Test(event, hash_is_blake2b_of_the_bytes)
{
    /* BLAKE2b-256 of the empty input, a published test vector */
    static const uint8_t want[32] = {0x0e, 0x57, 0x51, 0xc0, 0x26, 0xe5, 0x43, 0xb2,
                                     0xe8, 0xab, 0x2e, 0xb0, 0x60, 0x99, 0xda, 0xa1,
                                     0xd1, 0xe5, 0xdf, 0x47, 0x77, 0x8f, 0x77, 0x87,
                                     0xfa, 0xab, 0x45, 0xcd, 0xf1, 0x2f, 0xe3, 0xa8};
    uint8_t h[32];
    tn_event_hash("", 0, h);
    cr_assert(memcmp(h, want, 32) == 0);
    uint8_t h1[32], h2[32];
    tn_event_hash("abc", 3, h1);
    tn_event_hash("abd", 3, h2);
    cr_assert(memcmp(h1, h2, 32) != 0);
}

/* Events of several shapes: what the engine writes (read by tn_event_decode's fast
 * path) and shapes the fast path leaves to the strict reader (negative ints, a long
 * actor, a map16 of attrs, long strings, an event shorter than the fast path reads). */
static void shape(tn_event *ev, int which)
{
    static char longstr[300];
    memset(longstr, 's', sizeof(longstr));
    switch (which) {
    case 0: /* a task event as the engine writes it */
        tn_event_init(ev, TN_MACHINE_TASK, TN_TASK_E_DISPATCHED, 70000, 700001);
        ev->seq = 1234567;
        ev->at = 1795000000123456789ll;
        ev->from = TN_TASK_S_DISPATCH;
        ev->to = TN_TASK_S_RUNNING_EXECUTION;
        ev->actor = TN_STR("master:bench");
        tn_event_set_int(ev, "attempt", 1);
        tn_event_set_str(ev, "worker", "worker-01");
        break;
    case 1: /* a workflow submit, small ids, ints of every unsigned width */
        tn_event_init(ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 3, 0);
        ev->seq = 200;
        ev->at = 70000;
        ev->to = TN_WF_S_SUBMITTED_SUCCESS;
        ev->actor = TN_STR("user:x");
        tn_event_set_str(ev, "name", "bench_flow");
        tn_event_set_int(ev, "u8", 200);
        tn_event_set_int(ev, "u16", 60000);
        tn_event_set_int(ev, "u32", 4000000000ll);
        tn_event_set_int(ev, "u64", INT64_MAX);
        tn_event_set_bin(ev, "blob", "\x00\x01\x02", 3);
        break;
    case 2:
        sample(ev); /* negative ints */
        break;
    case 3: /* a 40-byte actor (str8) and 20 attrs (map16) */
        tn_event_init(ev, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, 1, 2);
        ev->seq = 5;
        ev->actor = tn_str_c("0123456789012345678901234567890123456789");
        for (int i = 0; i < 20; i++)
            tn_event_set_int(ev, "k", i);
        break;
    case 4: /* long str and bin values (str16, bin16) */
        tn_event_init(ev, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, 1, 2);
        ev->seq = 6;
        tn_event_set_strn(ev, "cmd", longstr, sizeof(longstr));
        tn_event_set_bin(ev, "env", longstr, 40);
        break;
    case 5: /* the largest time, and from and to as uint8 (the fast path reads the time
             * and the two fixints after it at once, and from and to as fixints, when
             * they have those types) */
        tn_event_init(ev, TN_MACHINE_TASK, TN_TASK_E_RUNNING, 300, 90000);
        ev->seq = 77;
        ev->at = INT64_MAX;
        ev->from = 200;
        ev->to = 254;
        ev->actor = TN_STR("worker:w");
        tn_event_set_int(ev, "pid", 4242);
        break;
    default: /* shorter than the fast path reads */
        tn_event_init(ev, TN_MACHINE_WORKFLOW, TN_WF_E_START, 1, 0);
        ev->seq = 1;
        break;
    }
    for (int i = 0; i < TN_HASH_LEN; i++)
        ev->prev[i] = (uint8_t)(i * 5 + which);
}

/* tn_event_decode (fast path first) and the strict reader alone give the same verdict
 * and, when they accept, the same event. */
static void assert_agree(const uint8_t *p, size_t n, const char *what, size_t at)
{
    tn_event a, b;
    tn_err ea = tn_event_decode(p, n, &a), eb = tn_event_decode_strict(p, n, &b);
    cr_assert_eq(ea, eb, "%s at %zu of %zu: decode says %s, strict reader %s", what, at, n,
                 tn_errname(ea), tn_errname(eb));
    if (ea == TN_OK)
        assert_same(&a, &b);
}

Test(event, fast_path_agrees_with_the_strict_reader)
{
    /* every byte replaced by a flip of it or by a type byte of each msgpack kind, and
     * every truncation, of events of each shape */
    static const uint8_t flips[] = {0x01, 0x02, 0x10, 0x20, 0x40, 0x80, 0xff};
    static const uint8_t types[] = {0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9c, 0xa0, 0xa1, 0xbf,
                                    0xc0, 0xc1, 0xc2, 0xc4, 0xc5, 0xc6, 0xca, 0xcb, 0xcc,
                                    0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd9, 0xda,
                                    0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    size_t accepted = 0;
    for (int which = 0; which < 7; which++) {
        tn_event ev, back;
        shape(&ev, which);
        tn_buf b = {0};
        cr_assert_eq(tn_event_encode(&ev, &b), TN_OK);
        cr_assert_eq(tn_event_decode(b.data, b.size, &back), TN_OK, "shape %d", which);
        assert_same(&ev, &back);
        uint8_t *p = malloc(b.size); /* exact size: ASan sees a read past it */
        for (size_t n = 0; n <= b.size; n++) {
            memcpy(p, b.data, n);
            assert_agree(p, n, "truncated", n);
        }
        for (size_t i = 0; i < b.size; i++) {
            for (size_t f = 0; f < sizeof(flips) + sizeof(types); f++) {
                memcpy(p, b.data, b.size);
                p[i] = f < sizeof(flips) ? p[i] ^ flips[f] : types[f - sizeof(flips)];
                assert_agree(p, b.size, "byte changed", i);
                accepted += tn_event_decode(p, b.size, &back) == TN_OK;
            }
        }
        free(p);
        tn_buf_free(&b);
    }
    cr_assert_gt(accepted, 0); /* changed values that still decode were compared too */
}

Test(event, hash4_is_four_single_hashes)
{
    /* the published BLAKE2b-256 of the empty input, in every lane */
    static const uint8_t empty[32] = {0x0e, 0x57, 0x51, 0xc0, 0x26, 0xe5, 0x43, 0xb2,
                                      0xe8, 0xab, 0x2e, 0xb0, 0x60, 0x99, 0xda, 0xa1,
                                      0xd1, 0xe5, 0xdf, 0x47, 0x77, 0x8f, 0x77, 0x87,
                                      0xfa, 0xab, 0x45, 0xcd, 0xf1, 0x2f, 0xe3, 0xa8};
    const void *enc[4] = {"", "", "", ""};
    size_t len[4] = {0, 0, 0, 0};
    uint8_t out[4][TN_HASH_LEN];
    tn_event_hash4(enc, len, out);
    for (int k = 0; k < 4; k++)
        cr_assert(memcmp(out[k], empty, 32) == 0, "lane %d", k);
    /* lanes of different lengths around the 128-byte block and 32-byte chunk edges,
     * up to several blocks, and past the length hashed one by one */
    static uint8_t buf[4][1300];
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < sizeof(buf[k]); i++)
            buf[k][i] = (uint8_t)(i * 31 + k * 7 + (i >> 8));
    for (size_t a = 0; a < 1300; a++) {
        size_t l4[4] = {a, (a * 7) % 700, (a * 13) % 260, 127 + a % 3};
        const void *e4[4] = {buf[0], buf[1], buf[2] + a % 5, buf[3]};
        tn_event_hash4(e4, l4, out);
        for (int k = 0; k < 4; k++) {
            uint8_t want[TN_HASH_LEN];
            tn_event_hash(e4[k], l4[k], want);
            cr_assert(memcmp(out[k], want, TN_HASH_LEN) == 0, "lane %d, %zu bytes", k, l4[k]);
        }
    }
}

Test(mp, integers)
{
    /* negative fixint, int8..int64 and unsigned widths */
    uint8_t buf[] = {0xff, 0xd0, 0x80, 0xd1, 0xff, 0x00, 0xd3, 0x80, 0,    0,    0,    0,
                     0,    0,    0,    0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    tn_mp r;
    tn_mp_init(&r, buf, sizeof(buf));
    int64_t v;
    uint64_t u;
    cr_assert(tn_mp_i64(&r, &v) && v == -1);
    cr_assert(tn_mp_i64(&r, &v) && v == -128);
    cr_assert(tn_mp_i64(&r, &v) && v == -256);
    cr_assert(tn_mp_i64(&r, &v) && v == INT64_MIN);
    cr_assert(tn_mp_u64(&r, &u) && u == UINT64_MAX);
    cr_assert(tn_mp_done(&r));
    /* uint64 max does not fit an int64 */
    tn_mp_init(&r, buf + 15, 9);
    cr_assert_not(tn_mp_i64(&r, &v));
    cr_assert_eq(r.err, TN_ERR_TYPE);
    /* a negative number is not an unsigned one */
    tn_mp_init(&r, buf, 1);
    cr_assert_not(tn_mp_u64(&r, &u));
    /* after an error every read fails */
    cr_assert_not(tn_mp_nil(&r));
}

Test(proj, round_trip_and_fold)
{
    tn_event ev;
    tn_task_proj p = {0}, back;
    tn_event_init(&ev, TN_MACHINE_TASK, TN_TASK_E_SUBMIT, 3, 9);
    ev.from = TN_SM_NEW;
    ev.to = TN_TASK_S_SUBMITTED_SUCCESS;
    ev.seq = 10;
    ev.at = 1000;
    tn_event_set_str(&ev, "name", "extract");
    tn_event_set_int(&ev, "attempt", 1);
    tn_proj_task_apply(&p, &ev);
    tn_event_init(&ev, TN_MACHINE_TASK, TN_TASK_E_RUNNING, 3, 9);
    ev.from = TN_TASK_S_SUBMITTED_SUCCESS;
    ev.to = TN_TASK_S_RUNNING_EXECUTION;
    ev.seq = 11;
    ev.at = 2000;
    tn_event_set_str(&ev, "worker", "w1");
    tn_event_set_int(&ev, "pid", 77);
    tn_proj_task_apply(&p, &ev);
    tn_event_init(&ev, TN_MACHINE_TASK, TN_TASK_E_FAILED, 3, 9);
    ev.from = TN_TASK_S_RUNNING_EXECUTION;
    ev.to = TN_TASK_S_FAILURE;
    ev.seq = 12;
    ev.at = 3000;
    tn_event_set_int(&ev, "exit", 2);
    tn_proj_task_apply(&p, &ev);
    cr_assert_eq(p.id, 9);
    cr_assert_eq(p.wf, 3);
    cr_assert_eq(p.state, TN_TASK_S_FAILURE);
    cr_assert_eq(p.attempt, 1);
    cr_assert_eq(p.pid, 77);
    cr_assert_eq(p.exit_code, 2);
    cr_assert_eq(p.created_at, 1000);
    cr_assert_eq(p.started_at, 2000);
    cr_assert_eq(p.ended_at, 3000);
    cr_assert_eq(p.last_seq, 12);
    cr_assert_str_eq(p.name, "extract");
    cr_assert_str_eq(p.worker, "w1");
    tn_buf b = {0};
    cr_assert_eq(tn_proj_task_encode(&p, &b), TN_OK);
    cr_assert_eq(tn_proj_task_decode(b.data, b.size, &back), TN_OK);
    cr_assert(p.id == back.id && p.wf == back.wf && p.state == back.state &&
              p.attempt == back.attempt && p.pid == back.pid && p.exit_code == back.exit_code &&
              p.created_at == back.created_at && p.updated_at == back.updated_at &&
              p.started_at == back.started_at && p.ended_at == back.ended_at &&
              p.last_seq == back.last_seq);
    cr_assert_str_eq(back.name, "extract");
    for (size_t n = 0; n < b.size; n++)
        cr_assert_neq(tn_proj_task_decode(b.data, n, &back), TN_OK);
    tn_buf_free(&b);

    tn_wf_proj w = {0}, wb;
    tn_event_init(&ev, TN_MACHINE_WORKFLOW, TN_WF_E_SUBMIT, 3, 0);
    ev.from = TN_SM_NEW;
    ev.to = TN_WF_S_SUBMITTED_SUCCESS;
    ev.seq = 1;
    tn_event_set_str(&ev, "name", "etl");
    tn_event_set_int(&ev, "version", 4);
    tn_event_set_int(&ev, "run", 2);
    tn_proj_wf_apply(&w, &ev);
    cr_assert_eq(tn_proj_wf_encode(&w, &b), TN_OK);
    cr_assert_eq(tn_proj_wf_decode(b.data, b.size, &wb), TN_OK);
    cr_assert_eq(wb.version, 4);
    cr_assert_eq(wb.run, 2);
    cr_assert_str_eq(wb.name, "etl");
    cr_assert_eq(wb.nevents, 1);
    tn_buf_free(&b);
}

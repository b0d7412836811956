/* The chain hash of four events at once: BLAKE2b-256 with one message per 64-bit lane
 * of a 256-bit vector, for replay, which hashes every event of the log. */
#include <string.h>

#include "event.h"

/* One message at a time, BLAKE2b is a chain of dependent 64-bit operations and
 * libsodium's AVX2 code keeps a vector unit a quarter busy (~150 ns for a ~110-byte
 * event here). Four independent messages side by side do the same operations with the
 * lanes full: ~60 ns a message here, loading and transposing the blocks included
 * (tn_event_hash4 against tn_event_hash on 100-byte inputs). Messages of different
 * lengths share the vectors: a lane whose message has no block left is computed and
 * its result dropped. The output is the RFC 7693 digest, byte for byte the one
 * crypto_generichash gives (tests/test_event.c compares them). */

typedef uint64_t v4 __attribute__((vector_size(32)));

static const uint64_t iv[8] = {
    0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
    0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull};

static const uint8_t sigma[12][16] = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                      {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
                                      {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
                                      {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
                                      {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
                                      {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
                                      {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
                                      {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
                                      {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
                                      {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
                                      {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
                                      {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define BLOCK 128

/* Four lanes' state between blocks. */
typedef struct lanes {
    v4 h[8];
    const uint8_t *msg[4];
    size_t len[4];
    size_t blocks[4]; /* of each message; an empty message has one (of zeros) */
} lanes;

#define ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define G(a, b, c, d, x, y)  \
    do {                     \
        a = a + b + (x);     \
        d = ROTR(d ^ a, 32); \
        c = c + d;           \
        b = ROTR(b ^ c, 24); \
        a = a + b + (y);     \
        d = ROTR(d ^ a, 16); \
        c = c + d;           \
        b = ROTR(b ^ c, 63); \
    } while (0)

/* 32 bytes of a message from byte `at` on, zero-padded past its end. Whole chunks load
 * straight from the message; only the one chunk that straddles the end goes through a
 * buffer (never reading past the message). */
static inline __attribute__((always_inline)) void chunk(v4 *r, const uint8_t *msg, size_t len,
                                                        size_t at)
{
    *r = (v4){0, 0, 0, 0};
    if (at + 32 <= len) {
        memcpy(r, msg + at, 32);
    } else if (at < len) {
        /* word by word in registers: a buffer written in pieces and read back whole
         * would stall the load */
        size_t n = len - at;
        uint64_t w[4] = {0, 0, 0, 0};
        for (size_t i = 0; i < 4; i++) {
            size_t o = 8 * i;
            if (o + 8 <= n) {
                memcpy(&w[i], msg + at + o, 8);
            } else {
                for (size_t j = n; j > o; j--)
                    w[i] = w[i] << 8 | msg[at + j - 1];
                break;
            }
        }
        *r = (v4){w[0], w[1], w[2], w[3]};
    }
}

/* Block b of every lane (zeros for a lane with no block b) as one 64-bit word of each
 * lane per vector (BLAKE2b words are little-endian, as x86): four rows of four words
 * transposed per 32 bytes. Also each lane's byte counter and final flag, and which
 * lanes have a block b at all. */
static inline __attribute__((always_inline)) void load_block(const lanes *l, size_t b, v4 m[16],
                                                             v4 *t, v4 *f, v4 *live)
{
    typedef int64_t idx __attribute__((vector_size(32)));
    for (int c = 0; c < 4; c++) {
        v4 r[4];
        for (int k = 0; k < 4; k++)
            chunk(&r[k], l->msg[k], b < l->blocks[k] ? l->len[k] : 0, b * BLOCK + 32 * c);
        v4 lo01 = __builtin_shuffle(r[0], r[1], (idx){0, 4, 2, 6});
        v4 hi01 = __builtin_shuffle(r[0], r[1], (idx){1, 5, 3, 7});
        v4 lo23 = __builtin_shuffle(r[2], r[3], (idx){0, 4, 2, 6});
        v4 hi23 = __builtin_shuffle(r[2], r[3], (idx){1, 5, 3, 7});
        m[4 * c + 0] = __builtin_shuffle(lo01, lo23, (idx){0, 1, 4, 5});
        m[4 * c + 1] = __builtin_shuffle(hi01, hi23, (idx){0, 1, 4, 5});
        m[4 * c + 2] = __builtin_shuffle(lo01, lo23, (idx){2, 3, 6, 7});
        m[4 * c + 3] = __builtin_shuffle(hi01, hi23, (idx){2, 3, 6, 7});
    }
    for (int k = 0; k < 4; k++) {
        size_t end = (b + 1) * BLOCK;
        (*t)[k] = b < l->blocks[k] ? (l->len[k] < end ? l->len[k] : end) : 0;
        (*f)[k] = b + 1 == l->blocks[k] ? ~0ull : 0;
        (*live)[k] = b < l->blocks[k] ? ~0ull : 0;
    }
}

/* Compress block b into the lanes that have one. */
static inline __attribute__((always_inline)) void compress(lanes *l, size_t b)
{
    v4 m[16], t, f, live, v[16];
    load_block(l, b, m, &t, &f, &live);
    for (int i = 0; i < 8; i++) {
        v[i] = l->h[i];
        v[i + 8] = (v4){iv[i], iv[i], iv[i], iv[i]};
    }
    v[12] ^= t;
    v[14] ^= f;
    /* unrolled: the message schedule becomes constant register choices */
#pragma GCC unroll 12
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = sigma[r];
        G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++)
        l->h[i] = (live & (l->h[i] ^ v[i] ^ v[i + 8])) | (~live & l->h[i]);
}

static inline __attribute__((always_inline)) void hash4(const void *const enc[4],
                                                        const size_t len[4],
                                                        uint8_t out[4][TN_HASH_LEN])
{
    lanes l;
    size_t most = 0;
    for (int k = 0; k < 4; k++) {
        l.msg[k] = enc[k];
        l.len[k] = len[k];
        l.blocks[k] = len[k] ? (len[k] + BLOCK - 1) / BLOCK : 1;
        most = l.blocks[k] > most ? l.blocks[k] : most;
    }
    /* parameter block: digest length 32, no key, fanout 1, depth 1 */
    for (int i = 0; i < 8; i++)
        l.h[i] = (v4){iv[i], iv[i], iv[i], iv[i]};
    l.h[0] ^= (v4){0x01010000ull | TN_HASH_LEN, 0x01010000ull | TN_HASH_LEN,
                   0x01010000ull | TN_HASH_LEN, 0x01010000ull | TN_HASH_LEN};
    for (size_t b = 0; b < most; b++)
        compress(&l, b);
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < TN_HASH_LEN / 8; i++) {
            uint64_t x = l.h[i][k];
            memcpy(out[k] + 8 * i, &x, 8);
        }
}

/* The same code compiled for CPUs with AVX-512VL (a rotate instruction and 32 vector
 * registers) and for CPUs with AVX2; others hash one message at a time with libsodium
 * (split into SSE2 halves, the lanes would not beat it). Chosen once, at the first
 * call. */
__attribute__((target("avx512vl,avx512f,avx2"))) static void hash4_avx512(
    const void *const enc[4], const size_t len[4], uint8_t out[4][TN_HASH_LEN])
{
    hash4(enc, len, out);
}

__attribute__((target("avx2"))) static void hash4_avx2(const void *const enc[4],
                                                       const size_t len[4],
                                                       uint8_t out[4][TN_HASH_LEN])
{
    hash4(enc, len, out);
}

static void hash4_one_by_one(const void *const enc[4], const size_t len[4],
                             uint8_t out[4][TN_HASH_LEN])
{
    for (int k = 0; k < 4; k++)
        tn_event_hash(enc[k], len[k], out[k]);
}

void tn_event_hash4(const void *const enc[4], const size_t len[4], uint8_t out[4][TN_HASH_LEN])
{
    static void (*fn)(const void *const[4], const size_t[4], uint8_t[4][TN_HASH_LEN]);
    void (*f)(const void *const[4], const size_t[4], uint8_t[4][TN_HASH_LEN]) =
        __atomic_load_n(&fn, __ATOMIC_RELAXED);
    if (!f) {
        __builtin_cpu_init();
        f = __builtin_cpu_supports("avx512vl") ? hash4_avx512 :
            __builtin_cpu_supports("avx2")     ? hash4_avx2 :
                                                 hash4_one_by_one;
        __atomic_store_n(&fn, f, __ATOMIC_RELAXED);
    }
    /* a long message would keep the other three lanes idle for its every block */
    for (int k = 0; k < 4; k++)
        if (len[k] > 8 * BLOCK)
            f = hash4_one_by_one;
    f(enc, len, out);
}

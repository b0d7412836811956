/* Small helpers shared by every layer: clocks, big-endian keys, time formatting. */
#ifndef TN_UTIL_H
#define TN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Exchange two lvalues of the same type. */
#define TN_SWAP(a, b)              \
    do {                           \
        __typeof__(a) swap_ = (a); \
        (a) = (b);                 \
        (b) = swap_;               \
    } while (0)

/* Wall clock (CLOCK_REALTIME) and monotonic clock, in nanoseconds. */
int64_t tn_now_ns(void);
int64_t tn_mono_ns(void);

/* Big-endian u64 at p (any alignment): one load or store and a byte swap (GCC 12 does not
 * turn the byte loop into one). */
static inline void tn_put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    __builtin_memcpy(p, &v, sizeof(v));
}

static inline uint64_t tn_get_be64(const uint8_t *p)
{
    uint64_t v;
    __builtin_memcpy(&v, p, sizeof(v));
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Format unix ns as "2026-11-22T01:02:03.456Z" into buf (at least 32 bytes). */
void tn_fmt_time(int64_t ns, char *buf, size_t len);
/* Format a duration for people: "250ms", "3.4s", "2m05s"; "-" when ns < 0. */
void tn_fmt_duration(int64_t ns, char *buf, size_t len);
/* Parse an ISO 8601 UTC time ("2026-11-22T01:02:03Z", fractional seconds and a
 * "+hh:mm" offset allowed, or a plain date) into unix ns. Returns 0 on success. */
int tn_parse_time(const char *s, int64_t *out_ns);

/* Create a directory and its parents (mode 0755); 0 on success or if it exists. */
int tn_mkdir_p(const char *path);

/* Edit distance of two short strings, a swap of neighbours counting one (for "did you
 * mean"); SIZE_MAX when either is longer than 255 bytes. */
size_t tn_edit_distance(const char *a, const char *b);

/* Make room for `need` elements of `elem` bytes in *arr (capacity *cap, doubled as
 * needed, 64 at least). False, with *arr and *cap untouched, when out of memory. */
bool tn_grow(void **arr, size_t *cap, size_t need, size_t elem);
/* Fault in the whole pages of [p, p + n) for writing in one call instead of one trap per
 * page at first touch (dear on a virtual machine): for large blocks about to be filled.
 * Best effort: nothing happens where the kernel cannot. */
void tn_populate(void *p, size_t n);

/* The number of a "KEY:   N kB" line of a /proc file (/proc/meminfo, /proc/PID/status),
 * in KiB; 0 when the file or the key is missing. */
uint64_t tn_proc_kb(const char *path, const char *key);

/* A finished process's exit code from its wait status (waitpid), as shells report it: the
 * status it exited with, or 128+N when signal N ended it (SIGTERM: 143). Both executors
 * report this, so a task's exit code does not depend on where it ran. */
int tn_exit_code(int wait_status);


/* A growable string: sb_printf appends; the caller frees sb.s (NULL-safe). */
typedef struct tn_sb {
    char *s;
    size_t len, cap;
} tn_sb;
void tn_sb_printf(tn_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif

/* Logging: one line per event in logfmt, to stderr or a file.
 * tn_logf(TN_LOG_INFO, "store", "msg=%s path=%s", "opened", dir) prints
 *   ts=2026-11-22T01:02:03.123Z level=info comp=store msg=opened path=... */
#ifndef TN_LOG_H
#define TN_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>
#include <stdio.h>

typedef enum {
    TN_LOG_DEBUG,
    TN_LOG_INFO,
    TN_LOG_WARN,
    TN_LOG_ERROR,
    TN_LOG_OFF
} tn_log_level;

/* Messages below `level` are dropped. Default: TN_LOG_INFO, or $TERN_LOG_LEVEL. */
void tn_log_set_level(tn_log_level level);
tn_log_level tn_log_get_level(void);
/* Where lines go; NULL means stderr. The stream stays owned by the caller. */
void tn_log_set_stream(FILE *f);
/* Parse "debug|info|warn|error|off"; returns -1 when unknown. */
int tn_log_level_parse(const char *s);

void tn_logf(tn_log_level level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A message that may repeat (a commit failing on a full disk, retried every step) is
 * printed at most once per interval: the first time at once, then the next call after
 * the interval prints with the count of the calls suppressed in between, e.g.
 *   ... msg="commit failed" repeated="49 times in 10s"
 * One tn_log_every per message site, used by one thread (the state is not locked). */
typedef struct tn_log_every {
    int64_t interval_ns; /* 0 = TN_LOG_EVERY_DEFAULT_NS */
    int64_t last_ns;     /* monotonic time of the last printed line; 0 = never */
    uint64_t repeats;    /* calls suppressed since then */
} tn_log_every;

#define TN_LOG_EVERY_DEFAULT_NS (10 * (int64_t)1000000000)

/* Log like tn_logf, subject to r's interval; true when a line was printed. */
bool tn_log_every_f(tn_log_every *r, tn_log_level level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The condition is over: the next occurrence is printed at once. */
void tn_log_every_reset(tn_log_every *r);

/* s as one logfmt value, for any string a peer or a file provides: bare when it is made of
 * printable ASCII without space, quote, backslash or '='; otherwise in double quotes with
 * \" \\ \n \r \t and \xNN for other control and non-ASCII bytes; "" when empty. Always
 * NUL-terminated; cut short (with "..." inside the quotes) when cap is too small: cap of
 * 4 * len + 8 always fits. Returns buf. tn_log_escape_n takes a length (NULs escaped). */
char *tn_log_escape(const char *s, char *buf, size_t cap);
char *tn_log_escape_n(const char *s, size_t len, char *buf, size_t cap);

#define tn_debug(comp, ...) tn_logf(TN_LOG_DEBUG, comp, __VA_ARGS__)
#define tn_info(comp, ...)  tn_logf(TN_LOG_INFO, comp, __VA_ARGS__)
#define tn_warn(comp, ...)  tn_logf(TN_LOG_WARN, comp, __VA_ARGS__)
#define tn_error(comp, ...) tn_logf(TN_LOG_ERROR, comp, __VA_ARGS__)

#endif

/* Logging: one line per event in logfmt, to stderr or a file.
 * tn_logf(TN_LOG_INFO, "store", "msg=%s path=%s", "opened", dir) prints
 *   ts=2026-11-22T01:02:03.123Z level=info comp=store msg=opened path=... */
#ifndef TN_LOG_H
#define TN_LOG_H

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

#define tn_debug(comp, ...) tn_logf(TN_LOG_DEBUG, comp, __VA_ARGS__)
#define tn_info(comp, ...)  tn_logf(TN_LOG_INFO, comp, __VA_ARGS__)
#define tn_warn(comp, ...)  tn_logf(TN_LOG_WARN, comp, __VA_ARGS__)
#define tn_error(comp, ...) tn_logf(TN_LOG_ERROR, comp, __VA_ARGS__)

#endif

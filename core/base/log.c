/* Logging in logfmt: a line per event, written with one write so lines from
 * threads never interleave. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Read by every thread that logs; set (or first read from the environment) by any:
 * relaxed atomics, since a level read late only means one line more or less. */
static tn_log_level log_level = (tn_log_level)-1;
static FILE *log_stream;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int tn_log_level_parse(const char *s)
{
    for (int i = 0; i <= TN_LOG_OFF; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void tn_log_set_level(tn_log_level level)
{
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

tn_log_level tn_log_get_level(void)
{
    tn_log_level level = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
    if ((int)level < 0) {
        int l = tn_log_level_parse(getenv("TERN_LOG_LEVEL"));
        level = l < 0 ? TN_LOG_INFO : (tn_log_level)l;
        tn_log_level unset = (tn_log_level)-1; /* a level set meanwhile wins */
        if (!__atomic_compare_exchange_n(&log_level, &unset, level, 0, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
            level = unset;
    }
    return level;
}

void tn_log_set_stream(FILE *f)
{
    log_stream = f;
}

void tn_logf(tn_log_level level, const char *comp, const char *fmt, ...)
{
    if (level < tn_log_get_level() || level >= TN_LOG_OFF)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s comp=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], comp);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    FILE *f = log_stream ? log_stream : stderr;
    fwrite(line, 1, len, f);
    fflush(f);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

bool tn_log_every_f(tn_log_every *r, tn_log_level level, const char *comp, const char *fmt, ...)
{
    int64_t now = mono_ns();
    int64_t every = r->interval_ns > 0 ? r->interval_ns : TN_LOG_EVERY_DEFAULT_NS;
    if (r->last_ns != 0 && now - r->last_ns < every) {
        r->repeats++;
        return false;
    }
    char text[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (r->last_ns != 0 && r->repeats > 0) {
        int64_t ms = (now - r->last_ns) / 1000000;
        if (ms >= 10000 || ms % 1000 == 0)
            tn_logf(level, comp, "%s repeated=\"%llu times in %llds\"", text,
                    (unsigned long long)r->repeats, (long long)(ms / 1000));
        else
            tn_logf(level, comp, "%s repeated=\"%llu times in %lld.%03llds\"", text,
                    (unsigned long long)r->repeats, (long long)(ms / 1000),
                    (long long)(ms % 1000));
    } else {
        tn_logf(level, comp, "%s", text);
    }
    r->last_ns = now;
    r->repeats = 0;
    return true;
}

void tn_log_every_reset(tn_log_every *r)
{
    r->last_ns = 0;
    r->repeats = 0;
}

static bool bare_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '=';
}

char *tn_log_escape_n(const char *s, size_t len, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    bool bare = len > 0;
    for (size_t i = 0; bare && i < len; i++)
        bare = bare_byte((unsigned char)s[i]);
    size_t o = 0;
    if (bare && len < cap) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        return buf;
    }
    if (cap < 6) { /* room for nothing but an empty value */
        snprintf(buf, cap, "%s", cap >= 3 ? "\"\"" : "");
        return buf;
    }
    buf[o++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5];
        size_t n;
        if (c == '"' || c == '\\')
            n = (size_t)snprintf(esc, sizeof(esc), "\\%c", c);
        else if (c == '\n')
            n = (size_t)snprintf(esc, sizeof(esc), "\\n");
        else if (c == '\r')
            n = (size_t)snprintf(esc, sizeof(esc), "\\r");
        else if (c == '\t')
            n = (size_t)snprintf(esc, sizeof(esc), "\\t");
        else if (c < 0x20 || c >= 0x7f)
            n = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", c);
        else
            esc[0] = (char)c, esc[1] = '\0', n = 1;
        if (o + n + 2 > cap) { /* keep room for '...' and the closing quote */
            o = o + 3 + 2 > cap ? cap - 5 : o;
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, n);
        o += n;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

char *tn_log_escape(const char *s, char *buf, size_t cap)
{
    return tn_log_escape_n(s ? s : "", s ? strlen(s) : 0, buf, cap);
}

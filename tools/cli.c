/* Helpers every `tern` command shares: errors on stderr, JSON strings, numbers, the
 * store opened read-only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonout.h"
#include "logread.h"
#include "util.h"
#include "cli.h"

int tn_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tern %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int tn_cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tern %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; see `tern %s --help`\n", cmd);
    return 2;
}

void tn_cli_json_put(FILE *f, json_t *v)
{
    tn_sb b = {0};
    if (!tn_jo_dump(&b, v)) {
        fputs("tern: out of memory writing JSON\n", stderr);
        exit(1); /* a field is never left out of the output */
    }
    fputs(b.s, f);
    free(b.s);
}

void tn_json_str(FILE *f, const char *s, size_t n)
{
    tn_cli_json_put(f, tn_jo_strn(s, n));
}

void tn_json_cstr(FILE *f, const char *s)
{
    tn_json_str(f, s, strlen(s));
}

bool tn_cli_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

bool tn_cli_id(const char *s, uint64_t *out)
{
    uint64_t v;
    if (!tn_cli_u64(s, &v) || v == 0)
        return false;
    *out = v;
    return true;
}

int tn_cli_store_ro(const char *cmd, const char *dir, tn_store **s)
{
    tn_errmsg m = {{0}};
    if (tn_log_open_read(dir, s, &m))
        return tn_cli_fail(cmd, "%s", m.text);
    return 0;
}

/* Columns a code point takes on a terminal: East Asian wide and fullwidth forms take
 * two, combining marks none (the common ranges; enough to align tables). */
static size_t cp_width(uint32_t c)
{
    if ((c >= 0x300 && c <= 0x36f) || (c >= 0x200b && c <= 0x200f))
        return 0;
    if ((c >= 0x1100 && c <= 0x115f) || (c >= 0x2e80 && c <= 0xa4cf && c != 0x303f) ||
        (c >= 0xac00 && c <= 0xd7a3) || (c >= 0xf900 && c <= 0xfaff) ||
        (c >= 0xfe30 && c <= 0xfe4f) || (c >= 0xff00 && c <= 0xff60) ||
        (c >= 0xffe0 && c <= 0xffe6) || (c >= 0x1f300 && c <= 0x1f64f) ||
        (c >= 0x1f900 && c <= 0x1f9ff) || (c >= 0x20000 && c <= 0x3fffd))
        return 2;
    return 1;
}

size_t tn_cli_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        uint32_t c = *p;
        size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        c &= n == 1 ? 0xff : 0x7fu >> n;
        size_t i = 1;
        for (; i < n && (p[i] & 0xc0) == 0x80; i++)
            c = (c << 6) | (p[i] & 0x3fu);
        p += i;
        w += cp_width(c);
    }
    return w;
}

void tn_cli_pad(FILE *f, const char *s, size_t width)
{
    fputs(s, f);
    for (size_t w = tn_cli_width(s); w < width; w++)
        fputc(' ', f);
}

void tn_cli_time_ns(int64_t ns, char *buf, size_t len)
{
    char ts[40];
    int64_t frac = ns % 1000000000LL;
    if (frac < 0)
        frac += 1000000000LL;
    tn_fmt_time(ns - frac, ts, sizeof(ts));
    ts[19] = 0; /* YYYY-MM-DDTHH:MM:SS */
    snprintf(buf, len, "%s.%09" PRId64 "Z", ts, frac);
}

void tn_cli_http_note(const char *cmd, const char *addr, bool tls, int port)
{
    if (!addr || !port)
        return;
    const char *colon = strrchr(addr, ':');
    int hl = colon ? (int)(colon - addr) : 0;
    fprintf(stderr, "tern %s: http API on %s://%.*s:%d/api/v1/ (metrics at /metrics)\n", cmd,
            tls ? "https" : "http", hl, addr, port);
}

int tn_cli_http_check(const char *cmd, const char *opt, const char *addr)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!addr || (colon && colon > addr && colon[1] &&
                  strspn(colon + 1, "0123456789") == strlen(colon + 1)))
        return 0;
    return tn_cli_usage(cmd,
                        "%s \"%s\": give HOST:PORT, e.g. 127.0.0.1:8080 (port 0: any free one)",
                        opt, addr);
}

const char *tn_cli_ui_dir(const char *dir)
{
    if (dir)
        return dir;
    /* a binary of the build tree serves the source's files, edits seen at once */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    size_t bl = strlen(TN_BUILD_ROOT);
    if (n > 0 && (size_t)n > bl && strncmp(exe, TN_BUILD_ROOT, bl) == 0 && exe[bl] == '/')
        return TN_UI_SOURCE;
    return TN_UI_INSTALLED;
}

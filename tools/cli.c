/* Helpers every `tern` command shares: errors on stderr, JSON strings, numbers, the
 * store opened read-only. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "logread.h"
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

void tn_json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(f, "\\u%04x", c);
            else
                fputc(c, f);
        }
    }
    fputc('"', f);
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

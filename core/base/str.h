/* Strings and buffers every layer passes around: tn_str, a borrowed byte range, and
 * tn_buf, a growable output buffer laid out as msgpack-c's sbuffer. */
#ifndef TN_STR_H
#define TN_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tn_str {
    const char *p;
    uint32_t len;
} tn_str;

#define TN_STR(lit) ((tn_str){(lit), (uint32_t)(sizeof(lit) - 1)})
tn_str tn_str_c(const char *s); /* from a NUL-terminated string (NULL -> empty) */
bool tn_str_eq(tn_str a, const char *b);

/* A growable output buffer (msgpack-c's sbuffer underneath). */
typedef struct tn_buf {
    size_t size;
    char *data;
    size_t alloc;
} tn_buf;
void tn_buf_free(tn_buf *b);

#endif

/* tn_str and tn_buf: see str.h. */
#include "str.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

tn_str tn_str_c(const char *s)
{
    tn_str r = {s ? s : "", s ? (uint32_t)strlen(s) : 0};
    return r;
}

bool tn_str_eq(tn_str a, const char *b)
{
    size_t n = strlen(b);
    return a.len == n && memcmp(a.p, b, n) == 0;
}

void tn_buf_free(tn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->size = b->alloc = 0;
}

/* tn_buf has msgpack_sbuffer's layout so msgpack-c's packer writes straight into it. */
_Static_assert(sizeof(tn_buf) == sizeof(msgpack_sbuffer), "tn_buf mirrors msgpack_sbuffer");
_Static_assert(offsetof(tn_buf, size) == offsetof(msgpack_sbuffer, size), "layout");
_Static_assert(offsetof(tn_buf, data) == offsetof(msgpack_sbuffer, data), "layout");
_Static_assert(offsetof(tn_buf, alloc) == offsetof(msgpack_sbuffer, alloc), "layout");

/* tern error codes: strings and errno translation. */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const char *const err_str[] = {
#define TN_ERR_STR(name, str) str,
    TN_ERR_LIST(TN_ERR_STR)
#undef TN_ERR_STR
};

static const char *const err_name[] = {
#define TN_ERR_NAME(name, str) #name,
    TN_ERR_LIST(TN_ERR_NAME)
#undef TN_ERR_NAME
};

const char *tn_strerror(tn_err err)
{
    if ((unsigned)err >= TN_ERR__COUNT)
        return "unknown error";
    return err_str[err];
}

const char *tn_errname(tn_err err)
{
    if ((unsigned)err >= TN_ERR__COUNT)
        return "UNKNOWN";
    return err_name[err];
}

tn_err tn_err_from_errno(int e)
{
    switch (e) {
    case 0: return TN_OK;
    case ENOMEM: return TN_ERR_NOMEM;
    case EINVAL: return TN_ERR_INVAL;
    case ENOENT: return TN_ERR_NOENT;
    case EEXIST: return TN_ERR_EXISTS;
    case ENOSPC:
    case EDQUOT: return TN_ERR_FULL;
    case EBUSY:
    case EAGAIN: return TN_ERR_BUSY;
    case EACCES:
    case EPERM:
    case EROFS: return TN_ERR_PERM;
    case ETIMEDOUT: return TN_ERR_TIMEOUT;
    case ENOTSUP: return TN_ERR_UNSUPPORTED;
    default: return TN_ERR_IO;
    }
}

tn_err tn_errmsg_set(tn_errmsg *e, tn_err err, const char *fmt, ...)
{
    if (!e)
        return err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
    va_end(ap);
    return err;
}

/* tern error codes: one enum for every layer, generated with its strings from one
 * X-macro list. LMDB, nng and errno codes are translated at the edge and never leak. */
#ifndef TN_ERR_H
#define TN_ERR_H

#define TN_ERR_LIST(X)                      \
    X(OK, "success")                        \
    X(NOMEM, "out of memory")               \
    X(INVAL, "invalid argument")            \
    X(IO, "input/output error")             \
    X(NOENT, "not found")                   \
    X(EXISTS, "already exists")             \
    X(TRUNCATED, "input is truncated")      \
    X(TOOBIG, "input exceeds a size limit") \
    X(TYPE, "input has the wrong type")     \
    X(VERSION, "unknown format version")    \
    X(CORRUPT, "data is corrupted")         \
    X(CHAIN, "hash chain mismatch")         \
    X(ILLEGAL, "illegal state transition")  \
    X(FULL, "storage is full")              \
    X(BUSY, "resource is busy or locked")   \
    X(PERM, "permission denied")            \
    X(TIMEOUT, "timed out")                 \
    X(CLOSED, "closed")                     \
    X(PEER, "peer error")                   \
    X(PARSE, "parse error")                 \
    X(UNSUPPORTED, "not supported here")    \
    X(STALE, "stale attempt")               \
    X(INTERNAL, "internal error")

typedef enum tn_err {
#define TN_ERR_ENUM(name, str) TN_ERR_##name,
    TN_ERR_LIST(TN_ERR_ENUM)
#undef TN_ERR_ENUM
    TN_ERR__COUNT
} tn_err;

#define TN_OK TN_ERR_OK

/* A static string for an error code; never NULL. */
const char *tn_strerror(tn_err err);
/* The symbolic name ("CHAIN") of an error code; never NULL. */
const char *tn_errname(tn_err err);
/* Translate an errno value at a system-call edge. */
tn_err tn_err_from_errno(int e);

/* A message for a person, filled where an error is found: what, where, what to do.
 * ("tern-data/data.mdb: unknown store format 7: this tern reads format 1; use a
 * matching tern or a new --data directory"). */
typedef struct tn_errmsg {
    char text[512];
} tn_errmsg;

/* Set the message (printf-style); a NULL `e` is allowed and ignored. Returns `err`,
 * so `return tn_errmsg_set(e, TN_ERR_IO, "...")` reads naturally. */
tn_err tn_errmsg_set(tn_errmsg *e, tn_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

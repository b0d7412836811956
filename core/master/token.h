/* Control tokens: a name, a role and the hash of a random secret, kept in DATA/tokens
 * (mode 0600, one line each). The secret is printed once by `tern token add` and never
 * stored: what the file holds cannot be sent back to the master as a token.
 *
 * Why a file and not events in the log: a token is a credential, not part of any
 * workflow's history; the log is copied into every audit, replay and backup, and a
 * revoked token would stay readable there for ever. The file is written by the master's
 * own user (the data directory is 0700) and read by the master at each request that
 * carries a token, so `tern token add|rm` take effect without a restart. */
#ifndef TN_TOKEN_H
#define TN_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum tn_role {
    TN_ROLE_NONE = 0,
    TN_ROLE_VIEWER,   /* ls, status, logs, workers */
    TN_ROLE_OPERATOR, /* + start, pause, resume, stop, rerun, recover, kill, force-success */
    TN_ROLE_ADMIN,    /* + def apply, taskgroup set, env set */
} tn_role;

#define TN_TOKEN_NAME_MAX 40   /* [A-Za-z0-9._-] */
#define TN_TOKEN_LEN      48   /* "tern_" + 43 base64url characters (32 random bytes) */
#define TN_TOKEN_MAX      1000 /* tokens in one file */

typedef struct tn_token_info {
    char name[TN_TOKEN_NAME_MAX + 1];
    tn_role role;
    int64_t created; /* unix seconds */
} tn_token_info;

const char *tn_role_name(tn_role r);
/* "viewer", "operator", "admin"; TN_ROLE_NONE otherwise. */
tn_role tn_role_parse(const char *s);
/* Whether s is a valid token name. */
bool tn_token_name_ok(const char *s);
/* DATA/tokens */
void tn_token_path(const char *data, char *buf, size_t len);

/* A new token NAME with role: its secret into secret (>= TN_TOKEN_LEN + 1 bytes), only
 * its hash into the file. TN_ERR_EXISTS when NAME is taken. */
tn_err tn_token_add(const char *data, const char *name, tn_role role, char *secret,
                    tn_errmsg *msg);
/* Revoke NAME. TN_ERR_NOENT when there is no such token. */
tn_err tn_token_rm(const char *data, const char *name, tn_errmsg *msg);
/* Every token (malloc'd array into *out, the caller frees it). No file: none. */
tn_err tn_token_list(const char *data, tn_token_info **out, size_t *n, tn_errmsg *msg);
/* Who holds this secret: TN_ERR_PERM when no token matches, or when the file cannot be
 * trusted (readable by others, damaged): msg says why. */
tn_err tn_token_check(const char *data, const char *secret, size_t len, tn_token_info *who,
                      tn_errmsg *msg);

#endif

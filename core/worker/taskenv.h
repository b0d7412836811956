/* The environment a task process starts from: clean, never the worker's own.
 *
 *   PATH     TN_TASK_PATH (a fixed default, not the worker's PATH)
 *   HOME, USER, LOGNAME   from the password entry of the user the task runs as
 *   SHELL    /bin/sh
 *   LANG     the worker's own LANG if set, else C.UTF-8
 *   TERN_*   the worker's own TERN_ variables (tern's settings and test markers; a site's
 *            secrets do not belong there), then the attempt's TERN_TASK_* ids
 *   NAME     each variable named by --pass-env that is set in the worker's environment
 *   params   each effective param whose name is a shell identifier ([A-Za-z_][A-Za-z0-9_]*)
 *            and does not start with TERN_, as NAME=value; it replaces a variable above of
 *            the same name (PATH too). Other params are not exported (still substituted
 *            into the command as ${name}).
 * Everything else the worker has (its WORKER_SECRET, AWS_SECRET_ACCESS_KEY...) stays out. */
#ifndef TN_TASKENV_H
#define TN_TASKENV_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "proto.h"

#define TN_TASK_PATH    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* --pass-env names at most */
#define TN_PASS_ENV_MAX 256

typedef struct tn_taskenv {
    char **v; /* "NAME=value", owned */
    uint32_t n;
} tn_taskenv;

/* Whether s is a shell identifier: [A-Za-z_][A-Za-z0-9_]*, 1..len bytes. */
bool tn_env_name_ok(const char *s, uint32_t len);

/* The base every task of this worker shares, from the worker's environment now. pass
 * names (npass of them, each a shell identifier, else TN_ERR_INVAL naming it). */
tn_err tn_taskenv_base(tn_taskenv *b, const char *const *pass, uint32_t npass, tn_errmsg *msg);
void tn_taskenv_free(tn_taskenv *b);

/* base + params + the attempt's ids, NULL-terminated; *strs holds what it allocated
 * (free both with free() after the spawn). NULL when out of memory. */
char **tn_taskenv_build(const tn_taskenv *base, const tn_pairs *params, char *const *ids,
                        uint32_t nids, char **strs);

#endif

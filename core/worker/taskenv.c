/* The clean environment of a task process (taskenv.h). */
#include "taskenv.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool tn_env_name_ok(const char *s, uint32_t len)
{
    if (!len || !(s[0] == '_' || (s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')))
        return false;
    for (uint32_t i = 1; i < len; i++) {
        char c = s[i];
        if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9')))
            return false;
    }
    return true;
}

/* Set NAME=value in b, replacing an entry of the same name. */
static bool put(tn_taskenv *b, const char *name, size_t nlen, const char *val)
{
    char *s;
    if (asprintf(&s, "%.*s=%s", (int)nlen, name, val) < 0)
        return false;
    for (uint32_t i = 0; i < b->n; i++)
        if (strncmp(b->v[i], s, nlen + 1) == 0) {
            free(b->v[i]);
            b->v[i] = s;
            return true;
        }
    char **nv = realloc(b->v, (b->n + 1) * sizeof(*nv));
    if (!nv) {
        free(s);
        return false;
    }
    b->v = nv;
    b->v[b->n++] = s;
    return true;
}

void tn_taskenv_free(tn_taskenv *b)
{
    for (uint32_t i = 0; b && i < b->n; i++)
        free(b->v[i]);
    if (b)
        free(b->v);
}

/* TERN_ATTEMPT_TAG and the TERN_TASK_* ids are the attempt's own: never inherited. */
static bool attempt_var(const char *e)
{
    return strncmp(e, "TERN_ATTEMPT_TAG=", 17) == 0 || strncmp(e, "TERN_TASK_", 10) == 0 ||
           strncmp(e, "TERN_WORKFLOW_INSTANCE_ID=", 26) == 0;
}

tn_err tn_taskenv_base(tn_taskenv *b, const char *const *pass, uint32_t npass, tn_errmsg *msg)
{
    extern char **environ;
    *b = (tn_taskenv){0};
    for (uint32_t i = 0; i < npass; i++)
        if (!pass[i] || !tn_env_name_ok(pass[i], (uint32_t)strlen(pass[i])) ||
            strncmp(pass[i], "TERN_", 5) == 0)
            return tn_errmsg_set(
                msg, TN_ERR_INVAL,
                "--pass-env \"%s\": want a variable name ([A-Za-z_][A-Za-z0-9_]*"
                ", not TERN_*, which pass anyway)",
                pass[i] ? pass[i] : "");
    char pwbuf[4096];
    struct passwd pw, *res = NULL;
    (void)getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &res);
    const char *home = res ? res->pw_dir : getenv("HOME");
    const char *user = res ? res->pw_name : getenv("USER");
    const char *lang = getenv("LANG");
    bool ok = put(b, "PATH", 4, TN_TASK_PATH) && put(b, "HOME", 4, home ? home : "/") &&
              put(b, "USER", 4, user ? user : "") && put(b, "LOGNAME", 7, user ? user : "") &&
              put(b, "SHELL", 5, "/bin/sh") &&
              put(b, "LANG", 4, lang && *lang ? lang : "C.UTF-8");
    for (char **e = environ; ok && e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && strncmp(*e, "TERN_", 5) == 0 && !attempt_var(*e))
            ok = put(b, *e, (size_t)(eq - *e), eq + 1);
    }
    for (uint32_t i = 0; ok && i < npass; i++) {
        const char *v = getenv(pass[i]);
        if (v)
            ok = put(b, pass[i], strlen(pass[i]), v);
    }
    if (!ok) {
        tn_taskenv_free(b);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory building the task environment");
    }
    return TN_OK;
}

char **tn_taskenv_build(const tn_taskenv *base, const tn_pairs *params, char *const *ids,
                        uint32_t nids, char **strs)
{
    uint32_t np = params ? params->n : 0;
    size_t bytes = 0;
    for (uint32_t i = 0; i < np; i++)
        bytes += (size_t)params->v[i].key.len + params->v[i].val.len + 2;
    char **env = calloc((size_t)base->n + np + nids + 1, sizeof(*env));
    char *buf = malloc(bytes ? bytes : 1);
    if (!env || !buf) {
        free(env);
        free(buf);
        return NULL;
    }
    memcpy(env, base->v, base->n * sizeof(*env));
    uint32_t n = base->n;
    char *at = buf;
    for (uint32_t i = 0; i < np; i++) {
        tn_str k = params->v[i].key, v = params->v[i].val;
        if (!tn_env_name_ok(k.p, k.len) || (k.len >= 5 && memcmp(k.p, "TERN_", 5) == 0))
            continue; /* not a shell name, or tern's own: not exported */
        int len = snprintf(at, (size_t)k.len + v.len + 2, "%.*s=%.*s", (int)k.len, k.p,
                           (int)v.len, v.p);
        uint32_t j = 0;
        while (j < base->n && !(strncmp(env[j], at, k.len + 1) == 0))
            j++;
        env[j < base->n ? j : n++] = at; /* a param replaces a base variable of its name */
        at += len + 1;
    }
    for (uint32_t i = 0; i < nids; i++)
        env[n++] = ids[i];
    env[n] = NULL;
    *strs = buf;
    return env;
}

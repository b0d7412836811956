/* Control tokens in DATA/tokens (see token.h). Lines: NAME ROLE CREATED HASH, where HASH
 * is the hex BLAKE2b-256 (crypto_generichash) of the secret: a secret is 32 random
 * bytes, so a plain hash is as hard to invert as the secret is to guess. */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAX (256u << 10)
#define HASH_HEX (crypto_generichash_BYTES * 2)

typedef struct row {
    tn_token_info i;
    char hash[HASH_HEX + 1];
} row;

static const char *const role_names[] = {"none", "viewer", "operator", "admin"};

const char *tn_role_name(tn_role r)
{
    return r <= TN_ROLE_ADMIN ? role_names[r] : "none";
}

tn_role tn_role_parse(const char *s)
{
    for (int r = TN_ROLE_VIEWER; s && r <= TN_ROLE_ADMIN; r++)
        if (strcmp(s, role_names[r]) == 0)
            return (tn_role)r;
    return TN_ROLE_NONE;
}

bool tn_token_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > TN_TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

void tn_token_path(const char *data, char *buf, size_t len)
{
    snprintf(buf, len, "%s/tokens", data);
}

static void hash_hex(const char *secret, size_t len, char out[HASH_HEX + 1])
{
    unsigned char h[crypto_generichash_BYTES];
    crypto_generichash(h, sizeof(h), (const unsigned char *)secret, len, NULL, 0);
    sodium_bin2hex(out, HASH_HEX + 1, h, sizeof(h));
}

/* Parse the file's text into rows. */
static tn_err parse(const char *path, char *text, row **out, size_t *n, tn_errmsg *msg)
{
    row *rows = calloc(TN_TOKEN_MAX, sizeof(*rows));
    if (!rows)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    size_t k = 0;
    unsigned lineno = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        if (l[0] == '#' || l[0] == '\0')
            continue;
        char role[16];
        long long created;
        row *r = &rows[k];
        if (k == TN_TOKEN_MAX ||
            sscanf(l, "%40s %15s %lld %64s", r->i.name, role, &created, r->hash) != 4 ||
            strlen(r->hash) != HASH_HEX || !(r->i.role = tn_role_parse(role))) {
            free(rows);
            return tn_errmsg_set(msg, TN_ERR_CORRUPT,
                                 "%s:%u: not NAME ROLE CREATED HASH (or more than %u tokens); "
                                 "fix or remove the line",
                                 path, lineno, TN_TOKEN_MAX);
        }
        r->i.created = created;
        k++;
    }
    *out = rows;
    *n = k;
    return TN_OK;
}

/* Read the file (none: no rows). A file others may read is refused: it would show them
 * which tokens exist, and a mode that lax means someone loosened it. */
static tn_err load(const char *path, row **out, size_t *n, tn_errmsg *msg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT) {
        *n = 0;
        *out = calloc(TN_TOKEN_MAX, sizeof(row));
        return *out ? TN_OK : tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        tn_err e = tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return e;
    }
    if ((st.st_mode & 077) || st.st_size > FILE_MAX) {
        close(fd);
        if (st.st_mode & 077)
            return tn_errmsg_set(msg, TN_ERR_PERM,
                                 "%s: mode %03o lets other users read it; `chmod 600 %s`", path,
                                 (unsigned)(st.st_mode & 0777), path);
        return tn_errmsg_set(msg, TN_ERR_TOOBIG, "%s: larger than %u bytes", path, FILE_MAX);
    }
    char *text = malloc((size_t)st.st_size + 1);
    ssize_t got = text ? read(fd, text, (size_t)st.st_size) : -1;
    close(fd);
    if (got < 0) {
        free(text);
        return tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot read", path);
    }
    text[got] = '\0';
    tn_err e = parse(path, text, out, n, msg);
    free(text);
    return e;
}

/* Write the rows to a new file and put it in place (0600, fsync'd). */
static tn_err save(const char *path, const row *rows, size_t n, tn_errmsg *msg)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    FILE *f = fd >= 0 && fchmod(fd, 0600) == 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        tn_err e = tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        return e;
    }
    fprintf(f, "# tern control tokens: NAME ROLE CREATED HASH (BLAKE2b-256 of the secret; "
               "the secrets are not kept)\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s %s %" PRId64 " %s\n", rows[i].i.name, tn_role_name(rows[i].i.role),
                rows[i].i.created, rows[i].hash);
    bool ok = fflush(f) == 0 && fsync(fd) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    return TN_OK;
}

/* Serialise `tern token add|rm` on one data dir: an exclusive lock on DATA/tokens.lock. */
static int lock_dir(const char *data, tn_errmsg *msg)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/tokens.lock", data);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot lock: %s (is --data a data directory?)", p,
                      strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

tn_err tn_token_add(const char *data, const char *name, tn_role role, char *secret,
                    tn_errmsg *msg)
{
    if (!tn_token_name_ok(name))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "token name \"%.60s\": 1 to %d of A-Z a-z 0-9 . _ -", name,
                             TN_TOKEN_NAME_MAX);
    if (role == TN_ROLE_NONE || sodium_init() < 0)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "a role is viewer, operator or admin");
    int lk = lock_dir(data, msg);
    if (lk < 0)
        return TN_ERR_IO;
    char path[4200];
    tn_token_path(data, path, sizeof(path));
    row *rows = NULL;
    size_t n = 0;
    tn_err e = load(path, &rows, &n, msg);
    for (size_t i = 0; !e && i < n; i++)
        if (strcmp(rows[i].i.name, name) == 0)
            e = tn_errmsg_set(msg, TN_ERR_EXISTS,
                              "a token named %s exists; `tern token rm %s` first", name, name);
    if (!e && n == TN_TOKEN_MAX)
        e = tn_errmsg_set(msg, TN_ERR_FULL, "%s: %u tokens already", path, TN_TOKEN_MAX);
    if (!e) {
        unsigned char raw[32];
        randombytes_buf(raw, sizeof(raw));
        memcpy(secret, "tern_", 5);
        sodium_bin2base64(secret + 5, TN_TOKEN_LEN + 1 - 5, raw, sizeof(raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(raw, sizeof(raw));
        row *r = &rows[n];
        *r = (row){.i = {.role = role, .created = (int64_t)time(NULL)}};
        snprintf(r->i.name, sizeof(r->i.name), "%s", name);
        hash_hex(secret, strlen(secret), r->hash);
        e = save(path, rows, n + 1, msg);
    }
    free(rows);
    close(lk);
    return e;
}

tn_err tn_token_rm(const char *data, const char *name, tn_errmsg *msg)
{
    int lk = lock_dir(data, msg);
    if (lk < 0)
        return TN_ERR_IO;
    char path[4200];
    tn_token_path(data, path, sizeof(path));
    row *rows = NULL;
    size_t n = 0, k = 0;
    tn_err e = load(path, &rows, &n, msg);
    for (size_t i = 0; !e && i < n; i++)
        if (strcmp(rows[i].i.name, name) != 0)
            rows[k++] = rows[i];
    if (!e && k == n)
        e = tn_errmsg_set(msg, TN_ERR_NOENT, "no token named \"%.60s\"; see `tern token ls`",
                          name);
    if (!e)
        e = save(path, rows, k, msg);
    free(rows);
    close(lk);
    return e;
}

tn_err tn_token_list(const char *data, tn_token_info **out, size_t *n, tn_errmsg *msg)
{
    char path[4200];
    tn_token_path(data, path, sizeof(path));
    row *rows = NULL;
    tn_err e = load(path, &rows, n, msg);
    if (e)
        return e;
    tn_token_info *info = calloc(*n ? *n : 1, sizeof(*info));
    for (size_t i = 0; info && i < *n; i++)
        info[i] = rows[i].i;
    free(rows);
    *out = info;
    return info ? TN_OK : tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
}

tn_err tn_token_check(const char *data, const char *secret, size_t len, tn_token_info *who,
                      tn_errmsg *msg)
{
    if (len != TN_TOKEN_LEN || memcmp(secret, "tern_", 5) != 0)
        return tn_errmsg_set(msg, TN_ERR_PERM, "not a tern token (tern_ and 43 characters)");
    char path[4200], h[HASH_HEX + 1];
    tn_token_path(data, path, sizeof(path));
    row *rows = NULL;
    size_t n = 0;
    tn_err e = load(path, &rows, &n, msg);
    if (e)
        return TN_ERR_PERM; /* msg says why */
    hash_hex(secret, len, h);
    e = tn_errmsg_set(msg, TN_ERR_PERM, "unknown or revoked token");
    for (size_t i = 0; i < n; i++)
        if (sodium_memcmp(h, rows[i].hash, HASH_HEX) == 0) {
            *who = rows[i].i;
            e = TN_OK;
        }
    free(rows);
    return e;
}

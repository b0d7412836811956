/* Helpers shared by the test suites: temporary directories that are always removed,
 * and running the tern binary. Header-only so each suite stays one file. */
#ifndef TN_TESTUTIL_H
#define TN_TESTUTIL_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int tu_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void tu_rm_rf(const char *dir)
{
    nftw(dir, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temp dir (under /tmp); the caller removes it with tu_rm_rf. */
static inline char *tu_tmpdir(void)
{
    char *d = strdup("/tmp/tern-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d), "mkdtemp");
    return d;
}

/* Run a shell command line; returns its exit status, stdout and stderr in out/err
 * (malloc'ed, NUL-terminated; may be NULL when not wanted). */
static inline int tu_run(const char *cmdline, char **out, char **err)
{
    char ofile[] = "/tmp/tern-test-out-XXXXXX", efile[] = "/tmp/tern-test-err-XXXXXX";
    int of = mkstemp(ofile), ef = mkstemp(efile);
    cr_assert(of >= 0 && ef >= 0);
    close(of);
    close(ef);
    size_t n = strlen(cmdline) + 128;
    char *full = malloc(n);
    snprintf(full, n, "%s >%s 2>%s", cmdline, ofile, efile);
    int st = system(full);
    free(full);
    char *files[2] = {ofile, efile};
    char **dst[2] = {out, err};
    for (int i = 0; i < 2; i++) {
        if (dst[i]) {
            FILE *f = fopen(files[i], "r");
            size_t cap = 1 << 16, len = 0;
            char *b = malloc(cap);
            size_t r;
            while (f && (r = fread(b + len, 1, cap - len - 1, f)) > 0) {
                len += r;
                if (len + 1 >= cap)
                    b = realloc(b, cap *= 2);
            }
            b[len] = '\0';
            if (f)
                fclose(f);
            *dst[i] = b;
        }
        unlink(files[i]);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Path of the tern binary under test. */
static inline const char *tu_tern(void)
{
    const char *b = getenv("TERN_BIN");
    cr_assert_not_null(b, "TERN_BIN is not set (run the tests through meson test)");
    return b;
}


/* Whether the comma-separated list has the token tok. */
static inline bool tu_has_token(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, tok, n) && (p[n] == ',' || p[n] == '\0' || p[n] == ' ' || p[n] == '\n'))
            return true;
    return false;
}

/* This process's cgroup in the v1 hierarchy of controller ctrl ("": the v2 one), found
 * independently of core/worker: the hierarchy's mount and this process's path in it (""
 * for its root), as one path. false when this host has no such hierarchy. */
static inline bool tu_cgroup_dir(const char *ctrl, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[4096], mnt[1024] = "", own[2048] = "";
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0'; /* c1 + 1: the controllers, c2 + 1: the path */
        found = ctrl[0] ? tu_has_token(c1 + 1, ctrl) : !c1[1];
        if (found)
            snprintf(own, sizeof(own), "%s", strcmp(c2 + 1, "/") ? c2 + 1 : "");
    }
    if (f)
        fclose(f);
    f = fopen("/proc/self/mountinfo", "re");
    while (found && f && !mnt[0] && fgets(line, sizeof(line), f)) {
        char *sep = strstr(line, " - "), fstype[32] = "", opts[1024] = "";
        if (!sep || sscanf(sep + 3, "%31s %*s %1023s", fstype, opts) != 2)
            continue;
        if (ctrl[0] ? !strcmp(fstype, "cgroup") && tu_has_token(opts, ctrl) :
                      !strcmp(fstype, "cgroup2"))
            (void)sscanf(line, "%*s %*s %*s %*s %1023s", mnt);
    }
    if (f)
        fclose(f);
    if (!mnt[0])
        return false;
    int n = snprintf(out, len, "%s%s", mnt, own);
    return n > 0 && (size_t)n < len;
}

/* This process's cgroup in the v1 pids hierarchy (tu_cgroup_dir). */
static inline bool tu_v1_pids_cgroup(char *out, size_t len)
{
    return tu_cgroup_dir("pids", out, len);
}

/* A worker's identity, from DATA/worker-id without its newline; false when it has none. */
static inline bool tu_worker_id(const char *data_dir, char *id, size_t len)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/worker-id", data_dir);
    FILE *f = fopen(p, "r");
    id[0] = '\0';
    if (f) {
        if (fgets(id, (int)len, f))
            id[strcspn(id, "\n")] = '\0';
        fclose(f);
    }
    return id[0] != '\0';
}

static int tu_rmdir_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    if (flag == FTW_DP)
        (void)rmdir(p); /* a cgroup's files go with it */
    return 0;
}

/* Remove the cgroup sub-trees a worker with data dir data_dir may have left (one killed
 * before it stopped, by a test or by a failed test's teardown): CGROUP/tern/ID in each
 * hierarchy the worker uses (v2; v1 memory, cpu, pids), and the shared tern parent when
 * that leaves it empty, as the worker's own stop does. A cgroup a process is still in
 * stays. Nothing when the worker never made its id. */
static inline void tu_rm_worker_cgroups(const char *data_dir)
{
    static const char *const ctrls[] = {"", "memory", "cpu", "pids"};
    char id[80], cg[3000], p[3200];
    if (!tu_worker_id(data_dir, id, sizeof(id)) || strchr(id, '/') || strchr(id, '.'))
        return;
    for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
        if (!tu_cgroup_dir(ctrls[i], cg, sizeof(cg)))
            continue;
        snprintf(p, sizeof(p), "%s/tern/%s", cg, id);
        if (access(p, F_OK) == 0)
            nftw(p, tu_rmdir_cb, 16, FTW_DEPTH | FTW_PHYS);
        snprintf(p, sizeof(p), "%s/tern", cg);
        (void)rmdir(p); /* only when empty: another worker's stays */
    }
}

/* tu_rm_worker_cgroups for dir and each directory in it, and a standalone's worker data
 * in each (DIR/NAME/worker): a test's data dirs. */
static inline void tu_rm_workers_cgroups(const char *dir)
{
    char p[4096];
    tu_rm_worker_cgroups(dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_type == DT_DIR && de->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
            tu_rm_worker_cgroups(p);
            snprintf(p, sizeof(p), "%s/%s/worker", dir, de->d_name);
            tu_rm_worker_cgroups(p);
        }
    if (d)
        closedir(d);
}

/* For a failure's message: the last lines of the log file at path above debug level
 * that fit in buf (len > 1); "(no log)" when it cannot be read. */
static inline const char *tu_log_tail(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return "(no log)";
    char line[4096];
    size_t n = 0;
    buf[0] = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t k = strcspn(line, "\n");
        line[k] = 0;
        if (strstr(line, "level=debug") || k + 2 > len)
            continue;
        while (n + k + 2 > len) { /* the oldest line kept goes */
            size_t first = (size_t)(strchr(buf, '\n') + 1 - buf);
            memmove(buf, buf + first, n - first + 1);
            n -= first;
        }
        memcpy(buf + n, line, k);
        buf[n + k] = '\n';
        buf[n + k + 1] = 0;
        n += k + 1;
    }
    fclose(f);
    return buf;
}

/* A unix socket of `type` bound to path (the test fails when it cannot be). */
static inline int tu_unix_bound(int type, const char *path)
{
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    cr_assert_lt(strlen(path), sizeof(sa.sun_path), "%s: too long for a unix socket", path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "bind %s: %s", path,
                 strerror(errno));
    return fd;
}

/* Entries of `path` whose names begin with `prefix` (0 when it cannot be read). */
static inline int tu_count_prefix(const char *path, const char *prefix)
{
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

#endif

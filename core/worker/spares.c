/* Spare exec dirs and log files made ahead by a filler thread and renamed into place
 * (spares.h says why). */
#include "spares.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define SPARE_PREFIX  ".spare-"
#define EMPTY_NAME    SPARE_PREFIX "empty"
/* A new shared empty file at least this often, so a log pointed at it is at most this
 * much older, by its mtime, than its attempt (log retention goes by mtime). */
#define EMPTY_EVERY_S 60
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

struct tn_spares {
    char root[PATH_MAX];
    tn_spare_kind kind;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool has_thread, stop;
    uint32_t *ids;   /* the spares' N, a stack */
    int *fds;        /* files: the O_TMPFILE fd of each, or -1 for a named ROOT/.spare-N */
    bool no_tmpfile; /* the file system refused O_TMPFILE: named spares */
    uint32_t n, cap, ahead, next;
    mode_t mode;      /* what mkdir or open made: 0755 or 0640, less the umask */
    int64_t empty_at; /* files: when ROOT/.spare-empty was made (CLOCK_MONOTONIC s); 0: not */
    uid_t uid;
    gid_t gid;
};

static void spare_path(const tn_spares *s, uint32_t id, char *out, size_t len)
{
    snprintf(out, len, "%s/" SPARE_PREFIX "%u", s->root, id);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_path(const char *path)
{
    if (unlink(path) != 0 && rmdir(path) != 0)
        (void)nftw(path, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
}

/* The umask, without setting it (umask(2) sets it, which other threads would see). */
static mode_t current_umask(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[128];
    unsigned um = 022;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "Umask: %o", &um) == 1)
            break;
    if (f)
        (void)fclose(f);
    return (mode_t)um & 0777;
}

static int rename_noreplace(const char *from, const char *to)
{
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

/* One new spare: a dir, an unnamed file (O_TMPFILE: making it does not lock ROOT, which
 * a create holds through the whole inode allocation, so the worker's renames and links
 * there do not wait for it; and a crash leaves nothing), else a named file. *fd gets the
 * unnamed file's fd, else -1. 0 or an errno value. */
static int make_one(tn_spares *s, uint32_t id, int *fd)
{
    char p[PATH_MAX + 32];
    *fd = -1;
    if (s->kind == TN_SPARE_FILE && !s->no_tmpfile) {
        *fd = open(s->root, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);
        if (*fd >= 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
            return errno;
        s->no_tmpfile = true;
    }
    spare_path(s, id, p, sizeof(p));
    if (s->kind == TN_SPARE_DIR)
        return mkdir(p, 0755) == 0 ? 0 : errno;
    int f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (f < 0)
        return errno;
    (void)close(f);
    return 0;
}

/* Drops one spare: closed (unnamed), or removed. */
static void drop_one(const tn_spares *s, uint32_t id, int fd)
{
    char p[PATH_MAX + 32];
    if (fd >= 0) {
        (void)close(fd);
        return;
    }
    spare_path(s, id, p, sizeof(p));
    remove_path(p);
}

static void *filler(void *arg)
{
    tn_spares *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (s->n >= s->ahead) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        uint32_t id = s->next++;
        pthread_mutex_unlock(&s->mu);
        int fd;
        int e = make_one(s, id, &fd);
        pthread_mutex_lock(&s->mu);
        if (!e && s->n < s->cap) {
            s->fds[s->n] = fd;
            s->ids[s->n++] = id;
        } else if (!e) { /* gifts filled it meanwhile */
            drop_one(s, id, fd);
        } else { /* the file system says no (full, gone): not again for a second */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            (void)pthread_cond_timedwait(&s->cv, &s->mu, &until);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Removes what a previous run left: every ROOT/.spare-*. */
static uint32_t remove_leftovers(const char *root)
{
    DIR *d = opendir(root);
    if (!d)
        return 0;
    uint32_t removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, SPARE_PREFIX, sizeof(SPARE_PREFIX) - 1) != 0)
            continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof(p), "%s/%s", root, de->d_name);
        remove_path(p);
        removed++;
    }
    (void)closedir(d);
    return removed;
}

tn_err tn_spares_new(const char *root, tn_spare_kind kind, uint32_t cap, uint32_t ahead,
                     tn_spares **out, uint32_t *removed)
{
    if (!root || strlen(root) >= PATH_MAX || !out)
        return TN_ERR_INVAL;
    tn_spares *s = calloc(1, sizeof(*s));
    cap = cap < TN_SPARES_MAX ? cap : TN_SPARES_MAX;
    if (!s || !(s->ids = calloc(cap ? cap : 1, sizeof(*s->ids))) ||
        !(s->fds = calloc(cap ? cap : 1, sizeof(*s->fds)))) {
        if (s)
            free(s->ids);
        free(s);
        return TN_ERR_NOMEM;
    }
    strcpy(s->root, root);
    s->kind = kind;
    s->cap = cap;
    s->ahead = ahead < cap ? ahead : cap;
    s->mode = (kind == TN_SPARE_DIR ? 0755 : 0640) & ~current_umask();
    s->uid = geteuid();
    s->gid = getegid();
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    uint32_t n = remove_leftovers(root);
    if (removed)
        *removed = n;
    if (s->ahead && pthread_create(&s->thread, NULL, filler, s) == 0)
        s->has_thread = true;
    *out = s;
    return TN_OK;
}

bool tn_spares_take(tn_spares *s, const char *path)
{
    pthread_mutex_lock(&s->mu);
    if (!s->n) {
        pthread_mutex_unlock(&s->mu);
        return false;
    }
    uint32_t id = s->ids[--s->n];
    int fd = s->fds[s->n];
    if (s->has_thread && s->n < s->ahead)
        pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (fd >= 0) { /* an unnamed file: linked at path (never over an existing one) */
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        bool ok = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0;
        if (ok) /* its times are its attempt's (log retention reads mtime) */
            (void)futimens(fd, NULL);
        (void)close(fd);
        return ok;
    }
    char sp[PATH_MAX + 32];
    spare_path(s, id, sp, sizeof(sp));
    if (rename_noreplace(sp, path) != 0) {
        remove_path(sp); /* a path that exists is the caller's to deal with, as before */
        return false;
    }
    if (s->kind == TN_SPARE_FILE)
        (void)utimensat(AT_FDCWD, path, NULL, 0);
    return true;
}

/* No entry but . and .. */
static bool dir_empty(int fd)
{
    char buf[1024];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
        if (n <= 0)
            return n == 0;
        for (long off = 0; off < n;) {
            const char *name = buf + off + 19; /* d_ino 8, d_off 8, d_reclen 2, d_type 1 */
            unsigned short reclen;
            memcpy(&reclen, buf + off + 16, sizeof(reclen));
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
                return false;
            off += reclen;
        }
    }
}

/* No extended attribute but security labels: an ACL or a user.* attribute would carry
 * over to the next attempt. */
static bool no_xattrs(int fd)
{
    char list[512];
    ssize_t n = flistxattr(fd, list, sizeof(list));
    if (n < 0)
        return errno == ENOTSUP;
    for (ssize_t off = 0; off < n; off += (ssize_t)strlen(list + off) + 1)
        if (strncmp(list + off, "security.", 9) != 0)
            return false;
    return true;
}

/* As mkdir or open made it, and empty: nothing of the attempt carries over to whoever
 * gets it next. A file also has one name, no block and no immutable or append-only flag. */
static bool as_new(const tn_spares *s, const char *path)
{
    bool dir = s->kind == TN_SPARE_DIR;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
                            (dir ? O_DIRECTORY : O_NONBLOCK | O_NOCTTY));
    if (fd < 0)
        return false;
    struct stat st;
    int flags = 0;
    bool ok = fstat(fd, &st) == 0 && st.st_uid == s->uid && st.st_gid == s->gid &&
              (st.st_mode & 07777) == s->mode && no_xattrs(fd) &&
              (dir ? S_ISDIR(st.st_mode) && dir_empty(fd) :
                     S_ISREG(st.st_mode) && st.st_size == 0 && st.st_blocks == 0 &&
                         st.st_nlink == 1 &&
                         (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0 ||
                          !(flags & (FS_IMMUTABLE_FL | FS_APPEND_FL))));
    (void)close(fd);
    return ok;
}

/* ROOT/.spare-empty made anew when `force` or older than EMPTY_EVERY_S: the file an empty
 * log's name points to once its inode is a spare. */
static bool empty_fresh(tn_spares *s, bool force)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!force && s->empty_at && now.tv_sec - s->empty_at < EMPTY_EVERY_S)
        return true;
    char tmp[PATH_MAX + 32], to[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s/" EMPTY_NAME ".new", s->root);
    snprintf(to, sizeof(to), "%s/" EMPTY_NAME, s->root);
    (void)unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (fd < 0)
        return false;
    (void)close(fd);
    if (rename(tmp, to) != 0) {
        (void)unlink(tmp);
        return false;
    }
    s->empty_at = now.tv_sec;
    return true;
}

/* A file: its inode gets the spare's name too, then its own name is pointed at the shared
 * empty file in one rename, so a reader of path finds an empty log throughout. */
static bool give_file(tn_spares *s, const char *path, const char *sp)
{
    if (!empty_fresh(s, false) || link(path, sp) != 0)
        return false;
    char tmp[PATH_MAX + 40], empty[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.e", sp);
    snprintf(empty, sizeof(empty), "%s/" EMPTY_NAME, s->root);
    int e = link(empty, tmp) == 0 ? 0 : errno;
    if (e == EMLINK && empty_fresh(s, true)) /* as many names as the file system allows */
        e = link(empty, tmp) == 0 ? 0 : errno;
    if (e || rename(tmp, path) != 0) {
        (void)unlink(tmp);
        (void)unlink(sp);
        return false;
    }
    return true;
}

bool tn_spares_give(tn_spares *s, const char *path)
{
    pthread_mutex_lock(&s->mu);
    bool room = s->n < s->cap;
    uint32_t id = s->next;
    if (room)
        s->next++;
    pthread_mutex_unlock(&s->mu);
    if (!room || !as_new(s, path))
        return false;
    char sp[PATH_MAX + 32];
    spare_path(s, id, sp, sizeof(sp));
    /* a dir is renamed to the spare's name */
    if (!(s->kind == TN_SPARE_DIR ? rename_noreplace(path, sp) == 0 : give_file(s, path, sp)))
        return false;
    pthread_mutex_lock(&s->mu);
    room = s->n < s->cap;
    if (room) {
        s->fds[s->n] = -1;
        s->ids[s->n++] = id;
    }
    pthread_mutex_unlock(&s->mu);
    if (!room)
        remove_path(sp);
    return true;
}

uint32_t tn_spares_len(tn_spares *s)
{
    pthread_mutex_lock(&s->mu);
    uint32_t n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void tn_spares_free(tn_spares *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->has_thread)
        pthread_join(s->thread, NULL);
    for (uint32_t i = 0; i < s->n; i++)
        drop_one(s, s->ids[i], s->fds[i]);
    if (s->empty_at) { /* the logs pointed at it keep it */
        char p[PATH_MAX + 32];
        snprintf(p, sizeof(p), "%s/" EMPTY_NAME, s->root);
        (void)unlink(p);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->ids);
    free(s->fds);
    free(s);
}

/* Task log retention (retention.h): list the attempts' logs, keep the running ones, remove
 * the old ones, then the oldest while the total is over the size. */
#include "retention.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct entry {
    uint64_t task;
    uint32_t attempt;
    int64_t mtime; /* ns */
    uint64_t bytes;
    bool running;
} entry;

/* "TASK-ATTEMPT" followed by exactly `suffix`. */
static bool parse_name(const char *n, const char *suffix, uint64_t *task, uint32_t *attempt)
{
    char *end;
    if (*n < '0' || *n > '9')
        return false;
    errno = 0;
    unsigned long long t = strtoull(n, &end, 10);
    if (errno || *end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    unsigned long a = strtoul(end + 1, &end, 10);
    if (errno || a > UINT32_MAX || strcmp(end, suffix) != 0)
        return false;
    *task = t;
    *attempt = (uint32_t)a;
    return true;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void remove_attempt(const char *data, const entry *e, tn_retention_stats *st)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/logs/%" PRIu64 "-%u.log", data, e->task, e->attempt);
    bool gone = unlink(p) == 0;
    snprintf(p, sizeof(p), "%s/exec/%" PRIu64 "-%u", data, e->task, e->attempt);
    if (access(p, F_OK) == 0)
        gone |= nftw(p, rm_cb, 8, FTW_DEPTH | FTW_PHYS) == 0;
    if (gone) {
        st->removed++;
        st->removed_bytes += e->bytes;
    }
}

static int by_age(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return x->task < y->task ? -1 : x->task > y->task;
}

/* The attempts with a log, oldest first. */
static int list_logs(const char *data, entry **out, size_t *n)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/logs", data);
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        entry e = {0};
        struct stat sb;
        if (!parse_name(de->d_name, ".log", &e.task, &e.attempt) ||
            fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode))
            continue;
        e.mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        e.bytes = (uint64_t)sb.st_size;
        if (*n == cap) {
            cap = cap ? cap * 2 : 256;
            entry *g = realloc(*out, cap * sizeof(*g));
            if (!g)
                break; /* the ones listed so far are enough for this round */
            *out = g;
        }
        (*out)[(*n)++] = e;
    }
    closedir(d);
    qsort(*out, *n, sizeof(**out), by_age);
    return 0;
}

int tn_retention_apply(const char *data_dir, const tn_retention *r, int64_t now_ns,
                       tn_retention_running_fn running, void *ctx, tn_retention_stats *st)
{
    *st = (tn_retention_stats){0};
    entry *es = NULL;
    size_t n = 0;
    if (list_logs(data_dir, &es, &n) != 0)
        return -1;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        es[i].running = running && running(ctx, es[i].task, es[i].attempt);
        total += es[i].bytes;
    }
    int64_t max_age_ns = r->max_age_ms > (uint64_t)INT64_MAX / 1000000 ?
                             INT64_MAX :
                             (int64_t)r->max_age_ms * 1000000;
    for (size_t i = 0; i < n; i++) {
        entry *e = &es[i];
        bool old = r->max_age_ms && now_ns - e->mtime > max_age_ns;
        bool over = r->max_bytes && total > r->max_bytes;
        if (!e->running && (old || over)) {
            remove_attempt(data_dir, e, st);
            total -= e->bytes;
            continue;
        }
        st->kept++;
        st->kept_bytes += e->bytes;
    }
    free(es);
    return 0;
}

/* `tern chaos`: injecting the faults the schedule draws (kills, SIGSTOPs, full and slow
 * disks) from the main thread, and healing them when they are due. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "chaos.h"
#include "store.h"

/* ------------------------------------------------------------------------------ */
/* the full disk: ballast written into a daemon's store until a commit fails, freed later */

/* Fill: puts of shrinking size until even a small one does not fit. Returns bytes put. */
static uint64_t ballast_fill(run *r, int idx)
{
    char dir[PATH_MAX + 16];
    daemon_store_dir(r, idx, dir, sizeof(dir));
    ballast *b = &r->disk[idx];
    tn_store_opts o = {.map_max = b->map_max};
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_store_open(dir, &o, &s, &m) != TN_OK) {
        chaos_say(r, "disk-full: cannot open %s: %s", dir, m.text);
        return 0;
    }
    tn_batch *bt;
    uint64_t put = 0;
    static char zeros[256 * 1024];
    if (tn_batch_new(&bt) == TN_OK) {
        for (size_t sz = sizeof(zeros); sz >= 256; sz /= 4) {
            for (int tries = 0; tries < 4096; tries++) {
                char key[48];
                int kl = snprintf(key, sizeof(key), "chaos/ballast/%06u", b->keys);
                tn_batch_reset(bt);
                tn_batch_put(bt, TN_DB_META, key, (size_t)kl, zeros, sz);
                tn_err e = tn_store_commit(s, bt, &m);
                if (e != TN_OK)
                    break;
                b->keys++;
                put += sz;
            }
        }
        tn_batch_free(bt);
    }
    tn_store_close(s);
    return put;
}

/* Free the disk: delete the ballast (in a store grown by 1 MiB, since even a delete needs
 * fresh pages), then commit twice more: LMDB reuses the pages a transaction frees only
 * from the second transaction after it, and a daemon whose every commit fails never gets
 * there by itself (a failed transaction does not advance the transaction id). */
static void ballast_free(run *r, int idx)
{
    char dir[PATH_MAX + 16];
    daemon_store_dir(r, idx, dir, sizeof(dir));
    ballast *b = &r->disk[idx];
    uint64_t grown = b->map_max + MIB;
    tn_store_opts o = {.map_size = grown, .map_max = grown};
    tn_store *s;
    tn_errmsg m = {{0}};
    if (tn_store_open(dir, &o, &s, &m) != TN_OK) {
        chaos_say(r, "disk-full: cannot open %s to free it: %s", dir, m.text);
        return;
    }
    tn_batch *bt;
    tn_err e = tn_batch_new(&bt);
    for (uint32_t i = 0; !e && i < b->keys; i++) {
        char key[48];
        int kl = snprintf(key, sizeof(key), "chaos/ballast/%06u", i);
        tn_batch_del(bt, TN_DB_META, key, (size_t)kl);
    }
    /* a commit even with nothing to delete, so the new size reaches the file */
    if (!e && !b->keys)
        tn_batch_del(bt, TN_DB_META, "chaos/ballast/none", 18);
    if (!e)
        e = tn_store_commit(s, bt, &m);
    /* two more transactions, so that the daemon's next one may reuse what was freed */
    for (int i = 0; !e && i < 2; i++) {
        tn_batch_reset(bt);
        if (i == 0)
            tn_batch_put(bt, TN_DB_META, "chaos/ballast/flush", 19, "x", 1);
        else
            tn_batch_del(bt, TN_DB_META, "chaos/ballast/flush", 19);
        e = tn_store_commit(s, bt, &m);
    }
    tn_batch_free(bt);
    tn_store_close(s);
    if (e != TN_OK) {
        chaos_say(r, "disk-full: cannot free %s: %s", dir, m.text);
        return;
    }
    b->keys = 0;
    b->map_max = grown;
}

/* The blkio hierarchy and the whole-disk device under DIR; false (and why) when this host
 * cannot throttle. */
static bool slow_probe(run *r)
{
    if (r->blkio[0])
        return true;
    if (r->slow_why[0])
        return false;
    struct stat st;
    if (!chaos_mount_point("cgroup", "blkio", r->blkio, sizeof(r->blkio))) {
        snprintf(r->slow_why, sizeof(r->slow_why), "no cgroup v1 blkio hierarchy is mounted");
        return false;
    }
    if (stat(r->dir, &st) != 0 || major(st.st_dev) == 0) {
        snprintf(r->slow_why, sizeof(r->slow_why), "%.150s is not on a block device", r->dir);
        r->blkio[0] = 0;
        return false;
    }
    /* a partition is throttled through its disk */
    char p[128], dev[32] = "";
    snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/partition", major(st.st_dev),
             minor(st.st_dev));
    if (access(p, F_OK) == 0)
        snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../dev", major(st.st_dev),
                 minor(st.st_dev));
    else
        snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/dev", major(st.st_dev), minor(st.st_dev));
    FILE *f = fopen(p, "re");
    if (f && fgets(dev, sizeof(dev), f))
        dev[strcspn(dev, "\n")] = 0;
    if (f)
        fclose(f);
    if (!dev[0]) {
        snprintf(r->slow_why, sizeof(r->slow_why), "%s: cannot find the device", p);
        r->blkio[0] = 0;
        return false;
    }
    snprintf(r->blkdev, sizeof(r->blkdev), "%s", dev);
    return true;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static void slow_group(const run *r, int idx, char *buf, size_t len)
{
    snprintf(buf, len, "%s/tern-chaos-%s-%s", r->blkio, r->runid, r->d[idx].role);
}

/* Throttle daemon idx's writes to iops a second. With r->mu held. */
static bool slow_start(run *r, int idx, int64_t iops, char *why, size_t wlen)
{
    pid_t pid = r->d[idx].pid;
    if (!pid || !slow_probe(r)) {
        snprintf(why, wlen, "%s", pid ? r->slow_why : "not running");
        return false;
    }
    char g[PATH_MAX + 64], f[PATH_MAX + 128], v[64], line[512];
    slow_group(r, idx, g, sizeof(g));
    if (mkdir(g, 0755) != 0 && errno != EEXIST) {
        snprintf(why, wlen, "%.200s: %s", g, strerror(errno));
        return false;
    }
    snprintf(f, sizeof(f), "%s/blkio.throttle.write_iops_device", g);
    snprintf(v, sizeof(v), "%s %" PRId64, r->blkdev, iops);
    if (write_file(f, v) != 0) {
        snprintf(why, wlen, "%.200s: %s", f, strerror(errno));
        return false;
    }
    /* where it was, to put it back */
    slowdisk *sd = &r->slow[idx];
    snprintf(f, sizeof(f), "/proc/%d/cgroup", (int)pid);
    FILE *cf = fopen(f, "re");
    snprintf(sd->orig, sizeof(sd->orig), "/");
    while (cf && fgets(line, sizeof(line), cf)) {
        char *c = strstr(line, ":blkio:");
        if (c) {
            c[7 + strcspn(c + 7, "\n")] = 0;
            snprintf(sd->orig, sizeof(sd->orig), "%s", c + 7);
        }
    }
    if (cf)
        fclose(cf);
    snprintf(f, sizeof(f), "%s/cgroup.procs", g);
    snprintf(v, sizeof(v), "%d", (int)pid);
    if (write_file(f, v) != 0) {
        snprintf(why, wlen, "%.200s: %s", f, strerror(errno));
        return false;
    }
    sd->pid = pid;
    return true;
}

static void slow_end(run *r, int idx)
{
    slowdisk *sd = &r->slow[idx];
    char f[PATH_MAX + 300], v[32];
    snprintf(f, sizeof(f), "%s%s/cgroup.procs", r->blkio, sd->orig);
    snprintf(v, sizeof(v), "%d", (int)sd->pid);
    if (sd->pid && sd->pid == r->d[idx].pid)
        (void)write_file(f, v);
    sd->until = 0;
    sd->pid = 0;
}

/* At the end: the groups go (empty by then: their daemons stopped or moved back). */
void fault_cleanup(run *r)
{
    for (int i = 0; r->blkio[0] && i <= r->s.workers; i++) {
        char g[PATH_MAX + 64];
        slow_group(r, i, g, sizeof(g));
        (void)rmdir(g);
    }
}

/* ------------------------------------------------------------------------------ */
/* faults (main thread) */

void fault_inject(run *r, const act *a)
{
    int idx = a->target + 1;
    char t[64];
    schedule_target_name(a, t, sizeof(t));
    if (!t[0])
        snprintf(t, sizeof(t), "master");
    pthread_mutex_lock(&r->mu);
    dproc *d = &r->d[idx];
    bool done = false;
    switch (a->k) {
    case K_MASTER_KILL:
    case K_WORKER_KILL:
        done = daemon_kill(r, idx, a->ms);
        if (done)
            chaos_say(r, "%s %s: SIGKILL, restart in %" PRId64 "ms", chaos_kind_names[a->k], t,
                      a->ms);
        break;
    case K_MASTER_STOP:
    case K_WORKER_STOP:
        if (d->pid && !d->killed && !d->stopped) {
            kill(d->pid, SIGSTOP);
            d->stopped = true;
            d->cont_at = now_ms() + a->ms;
            done = true;
            chaos_say(r, "%s %s: SIGSTOP for %" PRId64 "ms (heartbeat timeout %dms)",
                      chaos_kind_names[a->k], t, a->ms, HB_TIMEOUT_MS);
        }
        break;
    case K_DISK_FULL:
        if (r->disk[idx].map_max && !r->disk[idx].free_at) {
            pthread_mutex_unlock(&r->mu);
            uint64_t n = ballast_fill(r, idx);
            pthread_mutex_lock(&r->mu);
            r->ballast_bytes += n;
            r->disk[idx].free_at = now_ms() + a->ms;
            r->disk[idx].next_topup = now_ms() + 250;
            done = true;
            chaos_say(r,
                      "disk-full %s: %" PRIu64 " KiB of ballast, the store is full for %" PRId64
                      "ms",
                      t, n / 1024, a->ms);
        }
        break;
    case K_SLOW_DISK: {
        char why[300];
        if (!r->slow[idx].until && slow_start(r, idx, a->iops, why, sizeof(why))) {
            r->slow[idx].until = now_ms() + a->ms;
            done = true;
            chaos_say(r, "slow-disk %s: writes throttled to %" PRId64 "/s for %" PRId64 "ms", t,
                      a->iops, a->ms);
        } else if (!r->slow[idx].until) {
            chaos_say(r, "slow-disk %s: not injected: %s", t, why);
        }
        break;
    }
    default: break;
    }
    if (done)
        r->faults[a->k]++;
    else
        r->skipped[a->k]++;
    pthread_mutex_unlock(&r->mu);
}

/* Restarts, SIGCONTs and disk frees that are due; heal_all: all of them now. */
void fault_tick(run *r, bool heal_all)
{
    daemon_reap(r);
    int64_t now = now_ms();
    for (int i = 0; i <= r->s.workers; i++) {
        pthread_mutex_lock(&r->mu);
        dproc *d = &r->d[i];
        if (d->stopped && d->pid && (heal_all || now >= d->cont_at)) {
            kill(d->pid, SIGCONT);
            d->stopped = false;
            chaos_say(r, "%s: SIGCONT", d->role);
        }
        if (!d->pid && d->restart_at && (heal_all || now >= d->restart_at)) {
            if (daemon_spawn(r, i) != 0)
                chaos_say(r, "%s: cannot restart: %m", d->role);
            else
                chaos_say(r, "%s: restarted (pid %d)", d->role, (int)d->pid);
        }
        if (r->slow[i].until && (heal_all || now >= r->slow[i].until || !d->pid)) {
            slow_end(r, i);
            chaos_say(r, "slow-disk %s: back to full speed", d->role);
        }
        if (d->pid) {
            uint64_t rss = daemon_rss_anon(d->pid);
            if (rss > d->rss_max)
                d->rss_max = rss;
        }
        ballast *b = &r->disk[i];
        bool free_now = b->free_at && (heal_all || now >= b->free_at);
        bool topup = b->free_at && !free_now && now >= b->next_topup;
        pthread_mutex_unlock(&r->mu);
        if (free_now) {
            ballast_free(r, i);
            b->free_at = 0;
            chaos_say(r,
                      "disk-full %s: ballast deleted and the store grown to %" PRIu64 " KiB: "
                      "it has room again",
                      d->role, b->map_max / 1024);
        } else if (topup) {
            /* the daemon's own commits free pages too: keep the disk full */
            r->ballast_bytes += ballast_fill(r, i);
            b->next_topup = now_ms() + 250;
        }
    }
}

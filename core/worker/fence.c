/* Leader epochs a worker takes frames from (see fence.h). */
#include "fence.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void tn_fence_init(tn_fence *f, const char *data_dir)
{
    *f = (tn_fence){0};
    snprintf(f->path, sizeof(f->path), "%s/master-epoch", data_dir);
    FILE *fp = fopen(f->path, "re");
    if (!fp)
        return;
    char buf[32] = "";
    if (fgets(buf, sizeof(buf), fp))
        f->highest = strtoull(buf, NULL, 10);
    fclose(fp);
}

/* Written to a temp file then renamed: a crash leaves the old value or the new one. */
static void record(tn_fence *f)
{
    char tmp[PATH_MAX + 40], text[32];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->path);
    int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", f->highest);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, f->path) != 0)
        tn_error("worker", "msg=\"cannot record the master epoch\" path=%s why=\"%s\"", f->path,
                 strerror(errno));
}

void tn_fence_raise(tn_fence *f, uint64_t epoch)
{
    if (epoch <= f->highest)
        return;
    tn_info("worker", "msg=\"new leader epoch\" epoch=%" PRIu64 " before=%" PRIu64, epoch,
            f->highest);
    f->highest = epoch;
    record(f);
}

bool tn_fence_accept(tn_fence *f, uint64_t epoch, const char *sender, size_t sender_len)
{
    if (epoch >= f->highest) {
        tn_fence_raise(f, epoch);
        return true;
    }
    f->refused++;
    int64_t now = tn_mono_ns();
    if (!f->refused_log_at || now - f->refused_log_at >= 10000000000LL) {
        tn_warn("worker",
                "msg=\"frame from a fenced master refused: a newer leader took over\" "
                "sender=\"%.*s\" epoch=%" PRIu64 " current=%" PRIu64 " refused=%" PRIu64,
                (int)sender_len, sender, epoch, f->highest, f->refused);
        f->refused_log_at = now;
    }
    return false;
}

/* The slot of sender: its own, else a free one, else the least recently refused. */
static tn_fence_sender *sender_slot(tn_fence *f, const char *name, size_t len)
{
    tn_fence_sender *oldest = &f->senders[0];
    for (int i = 0; i < TN_FENCE_SENDERS; i++) {
        tn_fence_sender *s = &f->senders[i];
        if (s->name[0] && strlen(s->name) == len && memcmp(s->name, name, len) == 0)
            return s;
        if (!s->name[0] || (oldest->name[0] && s->refused_at < oldest->refused_at))
            oldest = s;
    }
    *oldest = (tn_fence_sender){0};
    memcpy(oldest->name, name, len);
    return oldest;
}

bool tn_fence_answer_due(tn_fence *f, const char *sender, size_t sender_len, int64_t now,
                         uint64_t *refused)
{
    if (sender_len > TN_FENCE_SENDER_MAX)
        sender_len = TN_FENCE_SENDER_MAX;
    if (sender_len == 0)
        return false; /* the decoder refuses such a frame: nobody to answer */
    tn_fence_sender *s = sender_slot(f, sender, sender_len);
    s->refused++;
    s->refused_at = now;
    *refused = s->refused;
    if (s->answered && now - s->answered_at < TN_FENCE_ANSWER_NS)
        return false;
    if (!f->window_n || now - f->window_at >= TN_FENCE_ANSWER_NS) {
        f->window_at = now;
        f->window_n = 0;
    }
    if (f->window_n >= TN_FENCE_SENDERS)
        return false;
    f->window_n++;
    s->answered = true;
    s->answered_at = now;
    return true;
}

/* The ipc listener check (see ipcprobe.h). */
#include "ipcprobe.h"

#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

bool tn_ipc_file_note(const char *path, tn_ipc_file *f)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    return true;
}

bool tn_ipc_file_is(const char *path, const tn_ipc_file *f)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == f->dev &&
           st.st_ino == f->ino;
}

bool tn_ipc_probe(const char *path, uint16_t proto, tn_ipc_count_fn count, tn_ipc_stop_fn stop,
                  void *arg, int wait_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return true;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return true;
    uint64_t before = count(arg);
    /* 0 'S' 'P' 0, the protocol big-endian, 2 reserved bytes */
    const unsigned char hello[8] = {
        0, 'S', 'P', 0, (unsigned char)(proto >> 8), (unsigned char)proto, 0, 0};
    /* a full backlog (EAGAIN) also means nobody accepts */
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              send(fd, hello, sizeof(hello), MSG_NOSIGNAL) == (ssize_t)sizeof(hello);
    bool added = false, stopping = false;
    for (int64_t end = tn_mono_ns() + wait_ms * 1000000LL;
         ok && !added && !stopping && tn_mono_ns() < end;) {
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        added = count(arg) != before;
        stopping = stop && stop(arg);
    }
    close(fd);
    return added || stopping;
}

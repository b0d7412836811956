/* tern-bench-stamp FILE: write the wall clock (ns since the epoch) to FILE, atomically
 * (FILE.tmp then rename), and exit. `tern bench latency` and the peer scripts run it as
 * the task whose start they time: a program this small starts in well under a
 * millisecond, where `date` or a second tern would add their own start-up. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (argc != 2) {
        fprintf(stderr, "usage: tern-bench-stamp FILE\n");
        return 2;
    }
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]) >= (int)sizeof(tmp)) {
        fprintf(stderr, "tern-bench-stamp: %s: path too long\n", argv[1]);
        return 2;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(tmp);
        return 1;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%lld\n",
                     (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec);
    int ok = write(fd, buf, (size_t)n) == n;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, argv[1]) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}

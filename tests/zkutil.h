/* A real ZooKeeper for the tests: Debian's `zookeeper` package (its jar in /usr/share/java,
 * run by java as QuorumPeerMain), in a temp dir, on free 127.0.0.1 ports. A standalone
 * server (tu_zk_start) or a three-node ensemble (tu_zk_ensemble_start). Only the pids
 * started here are signalled; the temp dir is removed by tu_zk_stop. And a TCP relay
 * (tu_relay) to put between one client and the server and cut: that client's session
 * alone expires, at the server, with no clock of the test's involved. Header-only. */
#ifndef TN_ZKUTIL_H
#define TN_ZKUTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define TU_ZK_JAR "/usr/share/java/zookeeper.jar"

typedef struct tu_zk {
    char *dir;
    int port;             /* client port on 127.0.0.1 */
    int peer_port, elect; /* ensemble members only */
    pid_t pid;
} tu_zk;

/* Whether the ZooKeeper server package is installed (tools/setup.sh installs it). */
static inline bool tu_zk_available(void)
{
    return access(TU_ZK_JAR, R_OK) == 0 && access("/usr/bin/java", X_OK) == 0;
}

/* A free loopback TCP port (bound then released: the server binds it just after). */
static inline int tu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &l) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Send a four-letter word ("srvr") and read the answer into buf; false when not serving. */
static inline bool tu_zk_4lw(int port, const char *word, char *buf, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    buf[0] = 0;
    if (fd < 0)
        return false;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        write(fd, word, strlen(word)) == (ssize_t)strlen(word)) {
        ssize_t r;
        while (n + 1 < len && (r = read(fd, buf + n, len - n - 1)) > 0)
            n += (size_t)r;
    }
    buf[n] = 0;
    close(fd);
    return strstr(buf, "Mode: ") && !strstr(buf, "not currently serving");
}

/* Start java on CONF (the server's output goes to DIR/server.log). */
static inline pid_t tu_zk_spawn(const char *dir, const char *conf)
{
    char logf[600];
    snprintf(logf, sizeof(logf), "%s/server.log", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(logf, "w", stdout);
        (void)f;
        dup2(STDOUT_FILENO, STDERR_FILENO);
        char logdir[620];
        snprintf(logdir, sizeof(logdir), "-Dzookeeper.log.dir=%s", dir);
        execl("/usr/bin/java", "java", "-Xmx96m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
              "-XX:-UsePerfData", /* no /tmp/hsperfdata_USER left behind */
              "-Dzookeeper.admin.enableServer=false", logdir, "-cp", TU_ZK_JAR,
              "org.apache.zookeeper.server.quorum.QuorumPeerMain", conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Wait until the server answers "srvr" as serving (a failsafe bound of 90 s). */
static inline bool tu_zk_wait(const tu_zk *z)
{
    char buf[2048];
    for (int i = 0; i < 900; i++) {
        if (tu_zk_4lw(z->port, "srvr", buf, sizeof(buf)))
            return true;
        int st;
        if (waitpid(z->pid, &st, WNOHANG) == z->pid)
            return false;
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

static inline void tu_zk_write_conf(const tu_zk *z, const char *servers)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/zoo.cfg", z->dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    /* a short tick, sessions of 1..30 s: the tests expire sessions on purpose */
    fprintf(f,
            "tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir=%s/data\nclientPort=%d\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\nminSessionTimeout=1000\n"
            "maxSessionTimeout=30000\n4lw.commands.whitelist=srvr,ruok,stat\n%s",
            z->dir, z->port, servers ? servers : "");
    fclose(f);
}

/* A standalone server on a free port. */
static inline void tu_zk_start(tu_zk *z)
{
    memset(z, 0, sizeof(*z));
    z->dir = tu_tmpdir();
    z->port = tu_free_port();
    char d[600];
    snprintf(d, sizeof(d), "%s/data", z->dir);
    cr_assert(mkdir(d, 0700) == 0);
    tu_zk_write_conf(z, NULL);
    snprintf(d, sizeof(d), "%s/zoo.cfg", z->dir);
    z->pid = tu_zk_spawn(z->dir, d);
    cr_assert(tu_zk_wait(z), "ZooKeeper did not start (see %s/server.log)", z->dir);
}

/* "127.0.0.1:PORT" of a server, or of every member for an ensemble (n members). */
static inline void tu_zk_hosts(const tu_zk *z, int n, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s127.0.0.1:%d", i ? "," : "", z[i].port);
}

/* Kill one server (SIGKILL) and reap it; its dir stays for tu_zk_stop. */
static inline void tu_zk_kill(tu_zk *z)
{
    if (z->pid > 0) {
        kill(z->pid, SIGKILL);
        waitpid(z->pid, NULL, 0);
        z->pid = 0;
    }
}

/* Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its dir. */
static inline void tu_zk_stop(tu_zk *z)
{
    if (z->pid > 0) {
        kill(z->pid, SIGTERM);
        int st;
        for (int i = 0; i < 100 && waitpid(z->pid, &st, WNOHANG) == 0; i++) {
            struct timespec ts = {0, 100000000L};
            nanosleep(&ts, NULL);
        }
        tu_zk_kill(z);
    }
    if (z->dir) {
        tu_rm_rf(z->dir);
        free(z->dir);
        z->dir = NULL;
    }
}

/* Three members on loopback, each with its dir, myid and the same server list. */
static inline void tu_zk_ensemble_start(tu_zk z[3])
{
    char servers[512] = "";
    for (int i = 0; i < 3; i++) {
        memset(&z[i], 0, sizeof(z[i]));
        z[i].dir = tu_tmpdir();
        z[i].port = tu_free_port();
        z[i].peer_port = tu_free_port();
        z[i].elect = tu_free_port();
        size_t o = strlen(servers);
        snprintf(servers + o, sizeof(servers) - o, "server.%d=127.0.0.1:%d:%d\n", i + 1,
                 z[i].peer_port, z[i].elect);
    }
    for (int i = 0; i < 3; i++) {
        char d[600];
        snprintf(d, sizeof(d), "%s/data", z[i].dir);
        cr_assert(mkdir(d, 0700) == 0);
        snprintf(d, sizeof(d), "%s/data/myid", z[i].dir);
        FILE *f = fopen(d, "w");
        cr_assert_not_null(f);
        fprintf(f, "%d\n", i + 1);
        fclose(f);
        tu_zk_write_conf(&z[i], servers);
        snprintf(d, sizeof(d), "%s/zoo.cfg", z[i].dir);
        z[i].pid = tu_zk_spawn(z[i].dir, d);
    }
    for (int i = 0; i < 3; i++)
        cr_assert(tu_zk_wait(&z[i]), "ensemble member %d did not start (see %s/server.log)",
                  i + 1, z[i].dir);
}

/* ---- a TCP relay that can be cut ------------------------------------------------------ */

#define TU_RELAY_MAX 8

typedef struct tu_relay {
    int port;     /* clients connect here (127.0.0.1) */
    int upstream; /* and are relayed to this port */
    int lfd, wake[2];
    int fds[2 * TU_RELAY_MAX]; /* pairs: client, upstream; -1 when free */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, cut, acked; /* under mu */
} tu_relay;

static inline void tu_relay_drop(tu_relay *r, int pair)
{
    close(r->fds[2 * pair]);
    close(r->fds[2 * pair + 1]);
    r->fds[2 * pair] = r->fds[2 * pair + 1] = -1;
}

static inline void tu_relay_accept(tu_relay *r, bool cut)
{
    int c = accept(r->lfd, NULL, NULL);
    if (c < 0)
        return;
    int pair = -1;
    for (int i = 0; i < TU_RELAY_MAX && pair < 0; i++)
        if (r->fds[2 * i] < 0)
            pair = i;
    int u = cut || pair < 0 ? -1 : socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->upstream),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (u < 0 || connect(u, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(c); /* cut: the client sees the connection refused at once */
        if (u >= 0)
            close(u);
        return;
    }
    r->fds[2 * pair] = c;
    r->fds[2 * pair + 1] = u;
}

/* Copies what one side of a pair sent to the other; false when the pair ended. */
static inline bool tu_relay_pump(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof(buf));
    for (ssize_t o = 0; n > 0 && o < n;) {
        ssize_t w = send(to, buf + o, (size_t)(n - o), MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        o += w;
    }
    return n > 0;
}

static inline void *tu_relay_thread(void *arg)
{
    tu_relay *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        bool stop = r->stop, cut = r->cut;
        if (cut && !r->acked) {
            for (int i = 0; i < TU_RELAY_MAX; i++)
                if (r->fds[2 * i] >= 0)
                    tu_relay_drop(r, i);
            r->acked = true;
            pthread_cond_broadcast(&r->cv);
        }
        pthread_mutex_unlock(&r->mu);
        if (stop)
            break;
        struct pollfd p[2 + 2 * TU_RELAY_MAX];
        p[0] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
        p[1] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        for (int i = 0; i < 2 * TU_RELAY_MAX; i++)
            p[2 + i] = (struct pollfd){.fd = r->fds[i], .events = POLLIN};
        if (poll(p, 2 + 2 * TU_RELAY_MAX, -1) < 0)
            continue;
        if (p[1].revents) {
            char c[64];
            (void)!read(r->wake[0], c, sizeof(c));
            continue; /* a cut or the stop first */
        }
        for (int i = 0; i < 2 * TU_RELAY_MAX; i++)
            if (r->fds[i] >= 0 && p[2 + i].revents && !tu_relay_pump(r->fds[i], r->fds[i ^ 1]))
                tu_relay_drop(r, i / 2);
        if (p[0].revents)
            tu_relay_accept(r, cut);
    }
    return NULL;
}

/* A relay on a free port to 127.0.0.1:upstream. */
static inline void tu_relay_start(tu_relay *r, int upstream)
{
    memset(r, 0, sizeof(*r));
    r->upstream = upstream;
    for (int i = 0; i < 2 * TU_RELAY_MAX; i++)
        r->fds[i] = -1;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    int one = 1;
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert(r->lfd >= 0 && bind(r->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
              getsockname(r->lfd, (struct sockaddr *)&a, &l) == 0 && listen(r->lfd, 16) == 0);
    r->port = ntohs(a.sin_port);
    cr_assert(pipe(r->wake) == 0);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    cr_assert(pthread_create(&r->th, NULL, tu_relay_thread, r) == 0);
}

static inline void tu_relay_set(tu_relay *r, bool cut)
{
    pthread_mutex_lock(&r->mu);
    r->cut = cut;
    r->acked = false;
    (void)!write(r->wake[1], "x", 1);
    /* once cut returns, no connection is relayed any more */
    while (cut && !r->acked)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

/* Drop every relayed connection and refuse new ones until healed. */
static inline void tu_relay_cut(tu_relay *r)
{
    tu_relay_set(r, true);
}

static inline void tu_relay_heal(tu_relay *r)
{
    tu_relay_set(r, false);
}

static inline void tu_relay_stop(tu_relay *r)
{
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    (void)!write(r->wake[1], "x", 1);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    for (int i = 0; i < TU_RELAY_MAX; i++)
        if (r->fds[2 * i] >= 0)
            tu_relay_drop(r, i);
    close(r->lfd);
    close(r->wake[0]);
    close(r->wake[1]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

#endif

/* `tern chaos failover`: a three-member ZooKeeper ensemble on loopback (zkens.h). */
#include "zkens.h"
#include "hacluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "zk.h"

#define ZK_JAR "/usr/share/java/zookeeper.jar"

extern char **environ;

/* DIR/zkN/zoo.cfg and DIR/zkN/data/myid: a short tick, sessions of 1..30 s. */
static bool write_conf(const zkens *z, int i)
{
    char p[700], servers[300] = "";
    for (int k = 0; k < ZKENS_N; k++) {
        size_t o = strlen(servers);
        snprintf(servers + o, sizeof(servers) - o, "server.%d=127.0.0.1:%d:%d\n", k + 1,
                 z->peer[k], z->elect[k]);
    }
    snprintf(p, sizeof(p), "%s/zk%d/data", z->dir, i + 1);
    if (tn_mkdir_p(p) != 0)
        return false;
    snprintf(p, sizeof(p), "%s/zk%d/data/myid", z->dir, i + 1);
    FILE *f = fopen(p, "we");
    if (!f)
        return false;
    fprintf(f, "%d\n", i + 1);
    fclose(f);
    snprintf(p, sizeof(p), "%s/zk%d/zoo.cfg", z->dir, i + 1);
    if (!(f = fopen(p, "we")))
        return false;
    fprintf(f,
            "tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir=%s/zk%d/data\nclientPort=%d\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\nminSessionTimeout=1000\n"
            "maxSessionTimeout=30000\n4lw.commands.whitelist=srvr\n%s",
            z->dir, i + 1, z->port[i], servers);
    fclose(f);
    return true;
}

static pid_t spawn_member(const zkens *z, int i)
{
    char conf[700], log[700], logdir[720];
    snprintf(conf, sizeof(conf), "%s/zk%d/zoo.cfg", z->dir, i + 1);
    snprintf(log, sizeof(log), "%s/zk%d/server.log", z->dir, i + 1);
    snprintf(logdir, sizeof(logdir), "-Dzookeeper.log.dir=%s/zk%d", z->dir, i + 1);
    char *argv[] = {"/usr/bin/java",
                    "-Xmx96m",
                    "-XX:+UseSerialGC",
                    "-XX:TieredStopAtLevel=1",
                    "-XX:-UsePerfData", /* no /tmp/hsperfdata_USER left behind */
                    "-Dzookeeper.admin.enableServer=false",
                    logdir,
                    "-cp",
                    ZK_JAR,
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    conf,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = 0;
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = 0;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* Whether member i answers "srvr" as a leader or a follower. */
static bool serving(const zkens *z, int i)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)z->port[i]),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[2048];
    size_t n = 0;
    if (fd < 0)
        return false;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, "srvr", 4) == 4) {
        ssize_t r;
        while (n + 1 < sizeof(buf) && (r = read(fd, buf + n, sizeof(buf) - n - 1)) > 0)
            n += (size_t)r;
    }
    buf[n] = 0;
    close(fd);
    return strstr(buf, "Mode: leader") || strstr(buf, "Mode: follower");
}

bool zkens_start(zkens *z, const char *dir)
{
    memset(z, 0, sizeof(*z));
    snprintf(z->dir, sizeof(z->dir), "%s", dir);
    size_t o = 0;
    for (int i = 0; i < ZKENS_N; i++) {
        z->port[i] = tn_hac_free_port();
        z->peer[i] = tn_hac_free_port();
        z->elect[i] = tn_hac_free_port();
        o += (size_t)snprintf(z->hosts + o, sizeof(z->hosts) - o, "%s127.0.0.1:%d",
                              i ? "," : "", z->port[i]);
    }
    for (int i = 0; i < ZKENS_N; i++)
        if (!write_conf(z, i) || !(z->pid[i] = spawn_member(z, i))) {
            zkens_stop(z, 1000);
            return false;
        }
    for (int t = 0; t < 1200; t++) { /* a quorum serves (no client noise before) */
        int up = 0;
        for (int i = 0; i < ZKENS_N; i++)
            up += serving(z, i);
        if (up < 2) {
            tn_hac_sleep(100);
            continue;
        }
        tn_zk_opts zo = {
            .hosts = z->hosts, .cluster = "probe", .name = "chaos", .session_ms = 2000};
        tn_zk *c = NULL;
        if (tn_zk_open(&zo, &c, NULL) == TN_OK) {
            tn_zk_close(c);
            return true;
        }
        tn_hac_sleep(100);
    }
    zkens_stop(z, 1000);
    return false;
}

bool zkens_kill(zkens *z, int i)
{
    if (i < 0 || i >= ZKENS_N || z->pid[i] <= 0)
        return false;
    kill(z->pid[i], SIGKILL);
    waitpid(z->pid[i], NULL, 0);
    z->pid[i] = 0;
    return true;
}

bool zkens_restart(zkens *z, int i)
{
    if (i < 0 || i >= ZKENS_N || z->pid[i] > 0)
        return false;
    z->pid[i] = spawn_member(z, i);
    return z->pid[i] > 0;
}

int zkens_up(const zkens *z)
{
    int n = 0;
    for (int i = 0; i < ZKENS_N; i++)
        n += z->pid[i] > 0;
    return n;
}

int zkens_stop(zkens *z, int budget_ms)
{
    int forced = 0;
    for (int i = 0; i < ZKENS_N; i++)
        if (z->pid[i] > 0)
            kill(z->pid[i], SIGTERM);
    for (int i = 0; i < ZKENS_N; i++) {
        if (z->pid[i] <= 0)
            continue;
        int waited = 0;
        pid_t r;
        while ((r = waitpid(z->pid[i], NULL, WNOHANG)) == 0 && waited < budget_ms) {
            tn_hac_sleep(50);
            waited += 50;
        }
        if (r == 0) {
            forced++;
            zkens_kill(z, i);
        }
        z->pid[i] = 0;
    }
    return forced;
}

/* core/master/zk.c against a real ZooKeeper (tests/zkutil.h starts it): election, the
 * epoch, deferral to a longer log, leader discovery, the workers' registry, session
 * expiry (one member's connection cut by a relay), a node left by a previous session of
 * the same master, callers beside a session renewal, and an ensemble that loses one
 * member. Waits are on conditions, with generous bounds (sanitizer builds are slow). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* the synchronous calls of the multithreaded client, for a session of the test's own */
#define THREADED
#include <zookeeper/zookeeper.h>

#include "zk.h"
#include "zkutil.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait (a failsafe bound of two minutes) until h's role is r. */
static bool wait_role(tn_zk *h, tn_zk_role r)
{
    for (int i = 0; i < 2400; i++) {
        if (tn_zk_role_get(h, NULL) == r)
            return true;
        sleep_ms(50);
    }
    return false;
}

typedef struct roles {
    pthread_mutex_t mu;
    tn_zk_role seen[32];
    uint64_t epochs[32];
    int n;
    atomic_int workers_changed;
} roles;

static void on_role(void *arg, tn_zk_role role, uint64_t epoch)
{
    roles *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->n < 32) {
        r->seen[r->n] = role;
        r->epochs[r->n++] = epoch;
    }
    pthread_mutex_unlock(&r->mu);
}

static void on_workers(void *arg)
{
    roles *r = arg;
    atomic_fetch_add(&r->workers_changed, 1);
}

static tn_zk *open_member(const char *hosts, const char *name, roles *r, uint32_t session_ms)
{
    tn_zk_opts o = {.hosts = hosts,
                    .cluster = "c1",
                    .name = name,
                    .info = "tcp://127.0.0.1:1",
                    .session_ms = session_ms,
                    .on_role = on_role,
                    .on_workers = on_workers,
                    .arg = r};
    tn_zk *z = NULL;
    tn_errmsg em = {{0}};
    tn_err e = tn_zk_open(&o, &z, &em);
    cr_assert_eq(e, TN_OK, "open %s: %s", name, em.text);
    return z;
}

static tu_zk srv;
static char hosts[256];

static void zk_setup(void)
{
    cr_assert(tu_zk_available(), "the zookeeper package is missing: run tools/setup.sh");
    tu_zk_start(&srv);
    tu_zk_hosts(&srv, 1, hosts, sizeof(hosts));
}

static void zk_teardown(void)
{
    tu_zk_stop(&srv);
}

TestSuite(zk, .init = zk_setup, .fini = zk_teardown, .timeout = 240);

Test(zk, bad_options_are_refused)
{
    tn_zk *z = NULL;
    tn_errmsg em = {{0}};
    tn_zk_opts o = {.hosts = hosts, .cluster = "a/b", .name = "m1"};
    cr_assert_eq(tn_zk_open(&o, &z, &em), TN_ERR_INVAL);
    cr_assert(strstr(em.text, "--cluster"), "%s", em.text);
    o.cluster = "ok";
    o.name = "";
    cr_assert_eq(tn_zk_open(&o, &z, &em), TN_ERR_INVAL);
    /* nothing listens there: refused within the session timeout, with what to check */
    char nobody[64];
    snprintf(nobody, sizeof(nobody), "127.0.0.1:%d", tu_free_port());
    o = (tn_zk_opts){.hosts = nobody, .cluster = "ok", .name = "m1", .session_ms = 1500};
    cr_assert_eq(tn_zk_open(&o, &z, &em), TN_ERR_TIMEOUT);
    cr_assert(strstr(em.text, nobody), "%s", em.text);
}

Test(zk, one_leader_and_epochs_increase)
{
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r2 = r1, r3 = r1;
    tn_zk *a = open_member(hosts, "m1", &r1, 4000);
    cr_assert_eq(tn_zk_campaign(a, 10, NULL), TN_OK);
    cr_assert(wait_role(a, TN_ZK_LEADER));
    uint64_t ea;
    tn_zk_role_get(a, &ea);
    cr_assert_eq(ea, 1);
    tn_zk *b = open_member(hosts, "m2", &r2, 4000);
    tn_zk *c = open_member(hosts, "m3", &r3, 4000);
    tn_zk_campaign(b, 10, NULL);
    cr_assert(wait_role(b, TN_ZK_STANDBY)); /* in line before c */
    tn_zk_campaign(c, 10, NULL);
    cr_assert(wait_role(c, TN_ZK_STANDBY));
    cr_assert_eq(tn_zk_role_get(a, NULL), TN_ZK_LEADER);
    /* discovery names the leader and its epoch */
    uint64_t le;
    char name[64], info[128];
    cr_assert_eq(tn_zk_leader(c, &le, name, sizeof(name), info, sizeof(info), NULL), TN_OK);
    cr_assert_eq(le, 1);
    cr_assert_str_eq(name, "m1");
    cr_assert_str_eq(info, "tcp://127.0.0.1:1");
    /* the leader leaves: the next in line (b) leads with the next epoch, c stays standby */
    tn_zk_close(a);
    cr_assert(wait_role(b, TN_ZK_LEADER));
    uint64_t eb;
    tn_zk_role_get(b, &eb);
    cr_assert_eq(eb, 2);
    cr_assert_eq(tn_zk_role_get(c, NULL), TN_ZK_STANDBY);
    cr_assert_eq(tn_zk_leader(c, &le, name, sizeof(name), NULL, 0, NULL), TN_OK);
    cr_assert_eq(le, 2);
    cr_assert_str_eq(name, "m2");
    tn_zk_close(b);
    cr_assert(wait_role(c, TN_ZK_LEADER));
    uint64_t ec, stored;
    tn_zk_role_get(c, &ec);
    cr_assert_eq(ec, 3);
    cr_assert_eq(tn_zk_epoch(c, &stored, NULL), TN_OK);
    cr_assert_eq(stored, 3);
    tn_zk_close(c);
}

Test(zk, a_candidate_behind_defers_to_a_longer_log)
{
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r2 = r1, r3 = r1;
    tn_zk *lead = open_member(hosts, "m1", &r1, 4000);
    tn_zk_campaign(lead, 100, NULL);
    cr_assert(wait_role(lead, TN_ZK_LEADER));
    /* "behind" is next in line but its log ends at 40; "ahead" has 90 */
    tn_zk *behind = open_member(hosts, "behind", &r2, 4000);
    tn_zk_campaign(behind, 40, NULL);
    cr_assert(wait_role(behind, TN_ZK_STANDBY));
    tn_zk *ahead = open_member(hosts, "ahead", &r3, 4000);
    tn_zk_campaign(ahead, 90, NULL);
    cr_assert(wait_role(ahead, TN_ZK_STANDBY));
    tn_zk_close(lead);
    cr_assert(wait_role(ahead, TN_ZK_LEADER));
    cr_assert_eq(tn_zk_role_get(behind, NULL), TN_ZK_STANDBY);
    char name[64];
    cr_assert_eq(tn_zk_leader(behind, NULL, name, sizeof(name), NULL, 0, NULL), TN_OK);
    cr_assert_str_eq(name, "ahead");
    tn_zk_close(ahead);
    tn_zk_close(behind);
}

static void count_worker(void *arg, const char *name, const char *info)
{
    char *names = arg;
    strcat(names, name);
    strcat(names, "=");
    strcat(names, info);
    strcat(names, ";");
}

Test(zk, workers_register_and_the_leader_sees_them_go)
{
    roles rm = {.mu = PTHREAD_MUTEX_INITIALIZER};
    tn_zk *m = open_member(hosts, "m1", &rm, 4000);
    tn_zk_campaign(m, 0, NULL);
    cr_assert(wait_role(m, TN_ZK_LEADER));
    char names[512] = "";
    cr_assert_eq(tn_zk_workers(m, count_worker, names, NULL), TN_OK);
    cr_assert_str_eq(names, "");
    tn_zk_opts o = {.hosts = hosts, .cluster = "c1", .name = "w1", .info = "ipc:///x g=a s=4"};
    tn_zk *w = NULL;
    cr_assert_eq(tn_zk_open(&o, &w, NULL), TN_OK);
    int before = atomic_load(&rm.workers_changed);
    cr_assert_eq(tn_zk_worker_register(w, NULL), TN_OK);
    for (int i = 0; i < 200 && atomic_load(&rm.workers_changed) == before; i++)
        sleep_ms(50);
    cr_assert_gt(atomic_load(&rm.workers_changed), before, "the watch fired");
    names[0] = 0;
    cr_assert_eq(tn_zk_workers(m, count_worker, names, NULL), TN_OK);
    cr_assert_str_eq(names, "w1=ipc:///x g=a s=4;");
    before = atomic_load(&rm.workers_changed);
    tn_zk_close(w);
    for (int i = 0; i < 200 && atomic_load(&rm.workers_changed) == before; i++)
        sleep_ms(50);
    names[0] = 0;
    cr_assert_eq(tn_zk_workers(m, count_worker, names, NULL), TN_OK);
    cr_assert_str_eq(names, "");
    tn_zk_close(m);
}

static bool saw_role(roles *r, tn_zk_role role)
{
    pthread_mutex_lock(&r->mu);
    bool seen = false;
    for (int i = 0; i < r->n; i++)
        seen |= r->seen[i] == role;
    pthread_mutex_unlock(&r->mu);
    return seen;
}

/* A leader whose connection to ZooKeeper is cut is suspended at once (it must not act),
 * and once the server expired its session it is lost: a standby leads with a higher
 * epoch, and the old leader, connected again, joins as a standby behind it. Only the
 * leader's connection goes through the relay that is cut, so only its session expires
 * (the server's clock decides; nothing in this test is timed). */
Test(zk, a_leader_that_loses_its_session_steps_down_and_rejoins_as_standby)
{
    tu_relay relay;
    tu_relay_start(&relay, srv.port);
    char via[64];
    snprintf(via, sizeof(via), "127.0.0.1:%d", relay.port);
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r2 = r1;
    tn_zk *a = open_member(via, "m1", &r1, 2000);
    tn_zk_campaign(a, 5, NULL);
    cr_assert(wait_role(a, TN_ZK_LEADER));
    tn_zk *b = open_member(hosts, "m2", &r2, 2000);
    tn_zk_campaign(b, 5, NULL);
    cr_assert(wait_role(b, TN_ZK_STANDBY));
    int64_t first = tn_zk_session(a);
    /* a's connection is cut: it stops leading at once */
    tu_relay_cut(&relay);
    cr_assert(wait_role(a, TN_ZK_SUSPENDED), "the leader suspends itself");
    /* the server expires a's session (b's lives): b leads with epoch 2 */
    cr_assert(wait_role(b, TN_ZK_LEADER));
    uint64_t eb;
    tn_zk_role_get(b, &eb);
    cr_assert_eq(eb, 2);
    cr_assert_eq(tn_zk_role_get(a, NULL), TN_ZK_SUSPENDED, "cut off, a never leads again");
    cr_assert_eq(tn_zk_sessions(b), 1, "b's session lived");
    /* a reaches the server again, learns its session ended, and rejoins behind b */
    tu_relay_heal(&relay);
    cr_assert(wait_role(a, TN_ZK_STANDBY), "the old leader is a standby now");
    cr_assert_geq(tn_zk_sessions(a), 2, "a new session");
    cr_assert_neq(tn_zk_session(a), first);
    cr_assert(saw_role(&r1, TN_ZK_LOST), "the old leader was told it lost its lead");
    uint64_t le;
    char name[64];
    cr_assert_eq(tn_zk_leader(a, &le, name, sizeof(name), NULL, 0, NULL), TN_OK);
    cr_assert_str_eq(name, "m2");
    cr_assert_eq(le, 2);
    tn_zk_close(a);
    tn_zk_close(b);
    tu_relay_stop(&relay);
}

/* A leader disconnected and connected again within its session keeps its lead: it is
 * suspended while cut off, then leads again with the same epoch and session. */
Test(zk, a_leader_reconnected_within_its_session_leads_on)
{
    tu_relay relay;
    tu_relay_start(&relay, srv.port);
    char via[64];
    snprintf(via, sizeof(via), "127.0.0.1:%d", relay.port);
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER};
    /* 30 s (the server's maximum): the heal comes as soon as a saw the cut */
    tn_zk *a = open_member(via, "m1", &r1, 30000);
    tn_zk_campaign(a, 5, NULL);
    cr_assert(wait_role(a, TN_ZK_LEADER));
    uint64_t e1;
    tn_zk_role_get(a, &e1);
    tu_relay_cut(&relay);
    cr_assert(wait_role(a, TN_ZK_SUSPENDED));
    tu_relay_heal(&relay);
    cr_assert(wait_role(a, TN_ZK_LEADER));
    uint64_t e2;
    tn_zk_role_get(a, &e2);
    cr_assert_eq(e2, e1, "the same lead");
    cr_assert_eq(tn_zk_sessions(a), 1, "the same session");
    cr_assert_not(saw_role(&r1, TN_ZK_LOST));
    tn_zk_close(a);
    tu_relay_stop(&relay);
}

static void raw_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    (void)zh, (void)type, (void)state, (void)path, (void)ctx;
}

/* A session of the test's own, connected (a failsafe bound). */
static zhandle_t *raw_session(const char *where, int session_ms)
{
    zhandle_t *zh = zookeeper_init(where, raw_watcher, session_ms, NULL, NULL, 0);
    cr_assert_not_null(zh);
    for (int i = 0; i < 1200 && zoo_state(zh) != ZOO_CONNECTED_STATE; i++)
        sleep_ms(50);
    cr_assert_eq(zoo_state(zh), ZOO_CONNECTED_STATE);
    return zh;
}

static void raw_node(zhandle_t *zh, const char *data, char *path, int len)
{
    int rc = zoo_create(zh, "/tern/c1/masters/m-", data, (int)strlen(data),
                        &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL | ZOO_SEQUENCE, path, len);
    cr_assert_eq(rc, ZOK, "%s", zerror(rc));
}

/* A master restarted before its previous session expired finds that session's node in
 * line under its own name: it removes it (else a master that is gone stands in line,
 * maybe first). Another master's node, of a name that merely begins with ours, stays. The
 * old session is kept alive by the test: the node went because it was swept. */
Test(zk, a_node_left_by_a_previous_session_of_ours_is_swept)
{
    roles r0 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r1 = r0;
    tn_zk *paths = open_member(hosts, "observer", &r0, 4000); /* makes /tern/c1/masters */
    zhandle_t *old = raw_session(hosts, 30000);
    char other[256], stale[256];
    raw_node(old, "m10\n100\nother", other, sizeof(other)); /* first in line */
    raw_node(old, "m1\n100\nold", stale, sizeof(stale));
    tn_zk *m = open_member(hosts, "m1", &r1, 4000);
    tn_zk_campaign(m, 5, NULL);
    cr_assert(wait_role(m, TN_ZK_STANDBY), "in line behind m10");
    struct Stat st;
    cr_assert_eq(zoo_exists(old, stale, 0, &st), ZNONODE, "the stale node was swept");
    cr_assert_eq(zoo_exists(old, other, 0, &st), ZOK, "another master's node stays");
    cr_assert_eq(zoo_state(old), ZOO_CONNECTED_STATE, "the old session lives");
    /* m10 leaves: m1 is next in line, and leads */
    cr_assert_eq(zoo_delete(old, other, -1), ZOK);
    cr_assert(wait_role(m, TN_ZK_LEADER));
    zookeeper_close(old);
    tn_zk_close(m);
    tn_zk_close(paths);
}

typedef struct reader {
    tn_zk *z;
    atomic_bool stop;
    atomic_int ok, calls;
} reader;

static void *read_leader(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->stop)) {
        char name[64], info[128];
        uint64_t e, ep;
        if (tn_zk_leader(r->z, &e, name, sizeof(name), info, sizeof(info), NULL) == TN_OK)
            atomic_fetch_add(&r->ok, 1);
        (void)tn_zk_epoch(r->z, &ep, NULL);
        (void)tn_zk_session(r->z);
        atomic_fetch_add(&r->calls, 1);
    }
    return NULL;
}

/* Callers of tn_zk_leader, tn_zk_epoch and tn_zk_session on other threads go on through
 * a session's expiry and renewal: the handle is replaced under them, never freed under a
 * call (the sanitizer builds check), and they read the leader again once renewed. */
Test(zk, readers_beside_a_session_renewal)
{
    tu_relay relay;
    tu_relay_start(&relay, srv.port);
    char via[64];
    snprintf(via, sizeof(via), "127.0.0.1:%d", relay.port);
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r2 = r1;
    tn_zk *b = open_member(hosts, "m2", &r2, 4000);
    tn_zk_campaign(b, 5, NULL);
    cr_assert(wait_role(b, TN_ZK_LEADER));
    tn_zk *a = open_member(via, "m1", &r1, 2000);
    tn_zk_campaign(a, 5, NULL);
    cr_assert(wait_role(a, TN_ZK_STANDBY));
    reader rd[2] = {{.z = a}, {.z = a}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, read_leader, &rd[i]), 0);
    /* a's session ends (cut until its node, standing for its session, is gone) */
    tu_relay_cut(&relay);
    cr_assert(wait_role(a, TN_ZK_SUSPENDED));
    zhandle_t *watch = raw_session(hosts, 4000);
    for (int i = 0; i < 2400; i++) {
        struct String_vector v = {0};
        cr_assert_eq(zoo_get_children(watch, "/tern/c1/masters", 0, &v), ZOK);
        int n = v.count;
        deallocate_String_vector(&v);
        if (n == 1)
            break;
        sleep_ms(50);
    }
    cr_assert_eq(tn_zk_role_get(b, NULL), TN_ZK_LEADER);
    tu_relay_heal(&relay);
    cr_assert(wait_role(a, TN_ZK_STANDBY));
    cr_assert_geq(tn_zk_sessions(a), 2);
    /* the readers read the leader through the new session */
    int ok0 = atomic_load(&rd[0].ok) + atomic_load(&rd[1].ok);
    for (int i = 0; i < 2400 && atomic_load(&rd[0].ok) + atomic_load(&rd[1].ok) == ok0; i++)
        sleep_ms(50);
    cr_assert_gt(atomic_load(&rd[0].ok) + atomic_load(&rd[1].ok), ok0);
    for (int i = 0; i < 2; i++) {
        atomic_store(&rd[i].stop, true);
        pthread_join(th[i], NULL);
    }
    zookeeper_close(watch);
    tn_zk_close(a);
    tn_zk_close(b);
    tu_relay_stop(&relay);
}

TestSuite(zk_ensemble, .timeout = 300);

Test(zk_ensemble, one_member_of_three_killed_changes_nothing)
{
    cr_assert(tu_zk_available(), "the zookeeper package is missing: run tools/setup.sh");
    tu_zk z[3];
    tu_zk_ensemble_start(z);
    char all[256];
    tu_zk_hosts(z, 3, all, sizeof(all));
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r2 = r1;
    tn_zk *a = open_member(all, "m1", &r1, 6000);
    tn_zk_campaign(a, 1, NULL);
    cr_assert(wait_role(a, TN_ZK_LEADER));
    tn_zk *b = open_member(all, "m2", &r2, 6000);
    tn_zk_campaign(b, 1, NULL);
    cr_assert(wait_role(b, TN_ZK_STANDBY));
    /* the ensemble's own leader is the member killed: the others elect another */
    int k = 0;
    for (int i = 0; i < 3; i++) {
        char buf[2048];
        if (tu_zk_4lw(z[i].port, "srvr", buf, sizeof(buf)) && strstr(buf, "Mode: leader"))
            k = i;
    }
    tu_zk_kill(&z[k]);
    /* the two left elect a leader among them (a failsafe bound) */
    bool led = false;
    for (int i = 0; i < 1200 && !led; i++) {
        for (int j = 0; j < 3; j++) {
            char buf[2048];
            led |= j != k && tu_zk_4lw(z[j].port, "srvr", buf, sizeof(buf)) &&
                   strstr(buf, "Mode: leader");
        }
        if (!led)
            sleep_ms(100);
    }
    cr_assert(led, "the ensemble elected no new leader");
    /* a client of the killed member moves to another; both serve again */
    cr_assert(wait_role(a, TN_ZK_LEADER));
    cr_assert(wait_role(b, TN_ZK_STANDBY));
    /* then past the session timeout: a session lost would show (an expiry is the
     * server's doing, so a slow client does not cause one) */
    sleep_ms(8000);
    uint64_t e;
    cr_assert_eq(tn_zk_role_get(a, &e), TN_ZK_LEADER);
    cr_assert_eq(e, 1);
    cr_assert_eq(tn_zk_role_get(b, NULL), TN_ZK_STANDBY);
    char name[64];
    cr_assert_eq(tn_zk_leader(b, NULL, name, sizeof(name), NULL, 0, NULL), TN_OK);
    cr_assert_str_eq(name, "m1");
    cr_assert_eq(tn_zk_sessions(a), 1, "the same session");
    cr_assert_eq(tn_zk_sessions(b), 1);
    tn_zk_close(a);
    tn_zk_close(b);
    for (int i = 0; i < 3; i++)
        tu_zk_stop(&z[i]);
}

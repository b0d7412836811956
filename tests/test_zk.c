/* core/master/zk.c against a real ZooKeeper (tests/zkutil.h starts it): election, the
 * epoch, deferral to a longer log, leader discovery, the workers' registry, session
 * expiry, and an ensemble that loses one member. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "zk.h"
#include "zkutil.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait (a failsafe bound) until h's role is r. */
static bool wait_role(tn_zk *h, tn_zk_role r)
{
    for (int i = 0; i < 600; i++) {
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

/* A leader whose server stops answering is suspended at once (it must not act), and
 * once its session expired it is lost: a standby leads with a higher epoch, and the old
 * leader, back, joins as a standby behind it. The server is frozen (SIGSTOP) rather than
 * the client, since the client is this test; the leader's session (2 s) expires at the
 * server's resume, the standby's (8 s) does not. */
Test(zk, a_leader_that_loses_its_session_steps_down_and_rejoins_as_standby)
{
    roles r1 = {.mu = PTHREAD_MUTEX_INITIALIZER}, r2 = r1;
    tn_zk *a = open_member(hosts, "m1", &r1, 2000);
    tn_zk_campaign(a, 5, NULL);
    cr_assert(wait_role(a, TN_ZK_LEADER));
    tn_zk *b = open_member(hosts, "m2", &r2, 8000);
    tn_zk_campaign(b, 5, NULL);
    cr_assert(wait_role(b, TN_ZK_STANDBY));
    /* the server freezes: a notices within its session timeout and stops leading */
    kill(srv.pid, SIGSTOP);
    cr_assert(wait_role(a, TN_ZK_SUSPENDED), "the leader suspends itself");
    sleep_ms(3000); /* past a's 2 s session, inside b's 8 s */
    kill(srv.pid, SIGCONT);
    /* the server expires a's session (b's lives): b leads with epoch 2, a rejoins */
    cr_assert(wait_role(b, TN_ZK_LEADER));
    uint64_t eb;
    tn_zk_role_get(b, &eb);
    cr_assert_eq(eb, 2);
    cr_assert(wait_role(a, TN_ZK_STANDBY), "the old leader is a standby now");
    cr_assert_geq(tn_zk_sessions(a), 2, "a new session");
    pthread_mutex_lock(&r1.mu);
    bool lost = false;
    for (int i = 0; i < r1.n; i++)
        lost |= r1.seen[i] == TN_ZK_LOST;
    pthread_mutex_unlock(&r1.mu);
    cr_assert(lost, "the old leader was told it lost its lead");
    tn_zk_close(a);
    tn_zk_close(b);
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
    sleep_ms(8000); /* past the session timeout: a session lost would show */
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

/* Registry, election and epoch in ZooKeeper (see zk.h). ZooKeeper's watcher only records
 * what happened and wakes this module's thread, which does every blocking call: the
 * multithreaded client delivers watches on the thread that completes synchronous calls,
 * so a blocking call from a watcher would wait for itself.
 *
 * Threads and what guards what:
 *  - z->zh, the session's handle, is replaced (an expired session closed, a new one made)
 *    only by this module's thread, under the write side of z->hlock. Every other thread
 *    (tn_zk_leader, tn_zk_epoch, tn_zk_workers, tn_zk_worker_register, tn_zk_session)
 *    takes the read side for as long as it uses the handle, so a handle is never closed
 *    under a call. This module's thread reads z->zh without the lock: it is its only
 *    writer. The old handle is closed after it was swapped out, outside the lock.
 *  - Each handle's watcher gets its own context (zctx) naming the handle's generation;
 *    an event of a handle that is no longer the current one (being closed, or replaced)
 *    is dropped, so it cannot mark the new session expired or connected.
 *  - What the watcher records, the role, the epoch, the seq and the flags set by API
 *    calls are under z->mu. The election's own state (mynode, seq_published,
 *    before_suspend) is this module's thread's alone.
 *  - Callbacks (on_role, on_workers) run on this module's thread with no lock held. */
#include "zk.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* the synchronous calls of the multithreaded client */
#define THREADED
#include <zookeeper/zookeeper.h>

#include "log.h"

#define PATH_MAX_ZK 512
#define DATA_MAX    2048

struct tn_zk {
    tn_zk_opts o;
    char hosts[1024], cluster[80], name[256], info[DATA_MAX - 320];
    char base[128];
    zhandle_t *zh;          /* see the top: written under hlock's write side */
    pthread_rwlock_t hlock; /* held (read) by other threads while they use zh */
    struct zctx *ctx;       /* the current handle's watcher context */
    uint32_t gen;           /* the current handle's generation (under mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    bool started, stop;
    /* what the watcher saw, for the thread */
    int state;
    bool expired, state_changed, ev_elect, ev_workers;
    /* election */
    bool campaigning;
    uint64_t seq, seq_published;
    char mynode[PATH_MAX_ZK];
    tn_zk_role role, before_suspend;
    uint64_t epoch;
    /* workers */
    bool worker_reg;
    uint32_t sessions;
};

/* A handle's watcher context: events of a generation other than z->gen are dropped. */
typedef struct zctx {
    tn_zk *z;
    uint32_t gen;
} zctx;

const char *tn_zk_role_name(tn_zk_role r)
{
    switch (r) {
    case TN_ZK_STANDBY: return "standby";
    case TN_ZK_LEADER: return "leader";
    case TN_ZK_SUSPENDED: return "suspended";
    case TN_ZK_LOST: return "lost";
    default: return "none";
    }
}

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    const zctx *c = ctx;
    tn_zk *z = c->z;
    (void)zh;
    pthread_mutex_lock(&z->mu);
    if (c->gen != z->gen) {
        /* a handle swapped out: what it says is about a session we left */
    } else if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_EXPIRED_SESSION_STATE)
            z->expired = true;
        z->state = state;
        z->state_changed = true;
    } else if (path && strncmp(path, z->base, strlen(z->base)) == 0 &&
               strncmp(path + strlen(z->base), "/workers", 8) == 0) {
        z->ev_workers = true;
    } else {
        z->ev_elect = true;
    }
    pthread_cond_broadcast(&z->cv);
    pthread_mutex_unlock(&z->mu);
}

static tn_err zerr(int rc)
{
    switch (rc) {
    case ZOK: return TN_OK;
    case ZNONODE: return TN_ERR_NOENT;
    case ZNODEEXISTS: return TN_ERR_EXISTS;
    case ZBADVERSION: return TN_ERR_BUSY;
    case ZOPERATIONTIMEOUT: return TN_ERR_TIMEOUT;
    case ZCONNECTIONLOSS:
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE:
    case ZCLOSING: return TN_ERR_CLOSED;
    case ZNOAUTH: return TN_ERR_PERM;
    default: return TN_ERR_PEER;
    }
}

static void deadline_in(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* A new session (z->zh is NULL); waits for it to connect (at most the session timeout).
 * The handle is z->zh from here on, connected or not (closed by the next renewal or by
 * tn_zk_close). */
static tn_err connect_session(tn_zk *z, tn_errmsg *msg)
{
    zctx *c = calloc(1, sizeof(*c));
    if (!c)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&z->mu);
    c->z = z;
    c->gen = ++z->gen;
    z->state = 0;
    z->expired = false;
    pthread_mutex_unlock(&z->mu);
    zhandle_t *zh = zookeeper_init(z->hosts, watcher, (int)z->o.session_ms, NULL, c, 0);
    if (!zh) {
        int err = errno;
        free(c);
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "--zk %s: cannot start a ZooKeeper session (%s); give "
                             "HOST:PORT[,HOST:PORT...]",
                             z->hosts, strerror(err));
    }
    pthread_rwlock_wrlock(&z->hlock);
    z->zh = zh;
    z->ctx = c;
    pthread_rwlock_unlock(&z->hlock);
    struct timespec ts;
    deadline_in(&ts, z->o.session_ms);
    pthread_mutex_lock(&z->mu);
    while (z->state != ZOO_CONNECTED_STATE && !z->expired && !z->stop)
        if (pthread_cond_timedwait(&z->cv, &z->mu, &ts) == ETIMEDOUT)
            break;
    bool ok = z->state == ZOO_CONNECTED_STATE;
    if (ok)
        z->sessions++;
    pthread_mutex_unlock(&z->mu);
    if (!ok)
        return tn_errmsg_set(msg, TN_ERR_TIMEOUT,
                             "--zk %s: no ZooKeeper server answered within %u ms; check that "
                             "the ensemble runs and the addresses",
                             z->hosts, z->o.session_ms);
    return TN_OK;
}

/* Swap the handle out (waiting for the calls of other threads on it to end) and close
 * it; its watcher's events are dropped from here on. This module's thread, or the last
 * user (open's failure, close). */
static void drop_handle(tn_zk *z)
{
    pthread_mutex_lock(&z->mu);
    z->gen++;
    pthread_mutex_unlock(&z->mu);
    pthread_rwlock_wrlock(&z->hlock);
    zhandle_t *old = z->zh;
    zctx *c = z->ctx;
    z->zh = NULL;
    z->ctx = NULL;
    pthread_rwlock_unlock(&z->hlock);
    if (old)
        zookeeper_close(old); /* its threads are joined: the watcher is not called again */
    free(c);
}

static tn_err ensure(tn_zk *z, const char *path, tn_errmsg *msg)
{
    int rc = zoo_create(z->zh, path, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    if (rc == ZOK || rc == ZNODEEXISTS)
        return TN_OK;
    return tn_errmsg_set(msg, zerr(rc), "ZooKeeper %s: cannot create %s: %s", z->hosts, path,
                         zerror(rc));
}

static tn_err ensure_paths(tn_zk *z, tn_errmsg *msg)
{
    char p[PATH_MAX_ZK];
    tn_err e = ensure(z, "/tern", msg);
    if (!e)
        e = ensure(z, z->base, msg);
    snprintf(p, sizeof(p), "%s/masters", z->base);
    if (!e)
        e = ensure(z, p, msg);
    snprintf(p, sizeof(p), "%s/workers", z->base);
    if (!e)
        e = ensure(z, p, msg);
    return e;
}

static bool cluster_ok(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') ||
              (c[i] >= '0' && c[i] <= '9') || c[i] == '_' || c[i] == '-' || c[i] == '.'))
            return false;
    return !(c[0] == '.');
}

static void *zk_thread(void *arg);

/* The client logs to stderr: only its errors, not every connection step. */
static void quiet_client(void)
{
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
}

tn_err tn_zk_open(const tn_zk_opts *o, tn_zk **out, tn_errmsg *msg)
{
    if (!o->hosts || !o->hosts[0] || strlen(o->hosts) >= 1024)
        return tn_errmsg_set(msg, TN_ERR_INVAL, "--zk: give HOST:PORT[,HOST:PORT...]");
    if (!o->cluster || !cluster_ok(o->cluster))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "--cluster \"%s\": give 1..64 letters, digits, '_', '-' or '.'",
                             o->cluster ? o->cluster : "");
    if (!o->name || !o->name[0] || strlen(o->name) >= 256 || strchr(o->name, '/') ||
        strchr(o->name, '\n'))
        return tn_errmsg_set(msg, TN_ERR_INVAL,
                             "ZooKeeper member name \"%s\": give 1..255 bytes without '/' "
                             "or a newline",
                             o->name ? o->name : "");
    if (o->info && strlen(o->info) >= DATA_MAX - 320)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG, "ZooKeeper registration data too long");
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, quiet_client);
    tn_zk *z = calloc(1, sizeof(*z));
    if (!z)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    z->o = *o;
    if (!z->o.session_ms)
        z->o.session_ms = 6000;
    snprintf(z->hosts, sizeof(z->hosts), "%s", o->hosts);
    snprintf(z->cluster, sizeof(z->cluster), "%s", o->cluster);
    snprintf(z->name, sizeof(z->name), "%s", o->name);
    snprintf(z->info, sizeof(z->info), "%s", o->info ? o->info : "");
    snprintf(z->base, sizeof(z->base), "/tern/%s", z->cluster);
    pthread_mutex_init(&z->mu, NULL);
    pthread_rwlock_init(&z->hlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&z->cv, &ca);
    pthread_condattr_destroy(&ca);
    tn_err e = connect_session(z, msg);
    if (!e)
        e = ensure_paths(z, msg);
    if (!e && pthread_create(&z->th, NULL, zk_thread, z) != 0)
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the ZooKeeper thread");
    if (e) {
        drop_handle(z);
        pthread_rwlock_destroy(&z->hlock);
        pthread_mutex_destroy(&z->mu);
        pthread_cond_destroy(&z->cv);
        free(z);
        return e;
    }
    z->started = true;
    *out = z;
    return TN_OK;
}

void tn_zk_close(tn_zk *z)
{
    if (!z)
        return;
    pthread_mutex_lock(&z->mu);
    z->stop = true;
    pthread_cond_broadcast(&z->cv);
    pthread_mutex_unlock(&z->mu);
    if (z->started)
        pthread_join(z->th, NULL);
    drop_handle(z); /* ends the session: its ephemeral nodes go now */
    pthread_rwlock_destroy(&z->hlock);
    pthread_mutex_destroy(&z->mu);
    pthread_cond_destroy(&z->cv);
    free(z);
}

/* ---- election ------------------------------------------------------------------------ */

static void set_role(tn_zk *z, tn_zk_role role, uint64_t epoch)
{
    pthread_mutex_lock(&z->mu);
    bool changed = z->role != role || z->epoch != epoch;
    z->role = role;
    z->epoch = epoch;
    pthread_mutex_unlock(&z->mu);
    if (changed) {
        tn_info("zk", "msg=\"role\" cluster=%s name=%s role=%s epoch=%" PRIu64, z->cluster,
                z->name, tn_zk_role_name(role), epoch);
        if (z->o.on_role)
            z->o.on_role(z->o.arg, role, epoch);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void node_data(tn_zk *z, char *buf, size_t len)
{
    pthread_mutex_lock(&z->mu);
    uint64_t seq = z->seq;
    pthread_mutex_unlock(&z->mu);
    snprintf(buf, len, "%s\n%" PRIu64 "\n%s", z->name, seq, z->info);
}

/* The SEQ line of another candidate's node (0 when unreadable). */
static uint64_t node_seq(tn_zk *z, const char *child)
{
    char p[PATH_MAX_ZK], buf[DATA_MAX];
    int len = sizeof(buf) - 1;
    snprintf(p, sizeof(p), "%s/masters/%s", z->base, child);
    if (zoo_get(z->zh, p, 0, buf, &len, NULL) != ZOK || len < 0)
        return 0;
    buf[len] = 0;
    char *nl = strchr(buf, '\n');
    return nl ? strtoull(nl + 1, NULL, 10) : 0;
}

/* Increment the epoch with a versioned write: of two writers of the same version one
 * fails, reads again and writes the next number. */
static tn_err bump_epoch(tn_zk *z, uint64_t *out)
{
    char p[PATH_MAX_ZK];
    snprintf(p, sizeof(p), "%s/epoch", z->base);
    for (int tries = 0; tries < 100; tries++) {
        char buf[32];
        int len = sizeof(buf) - 1;
        struct Stat st;
        int rc = zoo_get(z->zh, p, 0, buf, &len, &st);
        if (rc == ZNONODE) {
            rc = zoo_create(z->zh, p, "1", 1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
            if (rc == ZOK) {
                *out = 1;
                return TN_OK;
            }
            if (rc == ZNODEEXISTS)
                continue;
            return zerr(rc);
        }
        if (rc != ZOK)
            return zerr(rc);
        buf[len < 0 ? 0 : len] = 0;
        uint64_t next = strtoull(buf, NULL, 10) + 1;
        snprintf(buf, sizeof(buf), "%" PRIu64, next);
        rc = zoo_set(z->zh, p, buf, (int)strlen(buf), st.version);
        if (rc == ZOK) {
            *out = next;
            return TN_OK;
        }
        if (rc != ZBADVERSION)
            return zerr(rc);
    }
    return TN_ERR_BUSY;
}

static tn_err take_lead(tn_zk *z)
{
    uint64_t epoch = 0;
    tn_err e = bump_epoch(z, &epoch);
    if (e)
        return e;
    char p[PATH_MAX_ZK], buf[DATA_MAX];
    snprintf(p, sizeof(p), "%s/leader", z->base);
    snprintf(buf, sizeof(buf), "%" PRIu64 "\n%s\n%s", epoch, z->name, z->info);
    /* the previous leader's node went with its session, or it is ours from before */
    (void)zoo_delete(z->zh, p, -1);
    int rc = zoo_create(z->zh, p, buf, (int)strlen(buf), &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL,
                        NULL, 0);
    if (rc != ZOK)
        return zerr(rc);
    set_role(z, TN_ZK_LEADER, epoch);
    return TN_OK;
}

/* Whether a candidate with a longer log is in line: then this one goes to the back. */
static bool should_defer(tn_zk *z, const struct String_vector *v)
{
    pthread_mutex_lock(&z->mu);
    uint64_t mine = z->seq;
    pthread_mutex_unlock(&z->mu);
    const char *me = strrchr(z->mynode, '/') + 1;
    for (int32_t i = 0; i < v->count; i++) {
        if (strcmp(v->data[i], me) == 0)
            continue;
        uint64_t s = node_seq(z, v->data[i]);
        if (s > mine) {
            tn_info("zk",
                    "msg=\"deferring to a candidate with a longer log\" mine=%" PRIu64
                    " theirs=%" PRIu64 " node=%s",
                    mine, s, v->data[i]);
            return true;
        }
    }
    return false;
}

/* The thread tries the election again (a node that went, a lead not taken yet). */
static void again(tn_zk *z)
{
    pthread_mutex_lock(&z->mu);
    z->ev_elect = true;
    pthread_mutex_unlock(&z->mu);
}

/* Delete the masters/ nodes of our name that another session owns: ours from a previous
 * run (a restart within the session timeout) that the server keeps until that session
 * expires. Left there, such a node stands in line, maybe first, for a master that is
 * gone, and nobody leads until it expires. Names are unique in a cluster (ha.h). */
static void sweep_stale(tn_zk *z)
{
    char p[PATH_MAX_ZK];
    snprintf(p, sizeof(p), "%s/masters", z->base);
    struct String_vector v = {0};
    if (zoo_get_children(z->zh, p, 0, &v) != ZOK)
        return;
    const clientid_t *me = zoo_client_id(z->zh);
    size_t nl = strlen(z->name);
    for (int32_t i = 0; i < v.count; i++) {
        char c[2 * PATH_MAX_ZK], buf[DATA_MAX];
        int len = sizeof(buf) - 1;
        struct Stat st;
        snprintf(c, sizeof(c), "%s/%s", p, v.data[i]);
        if (zoo_get(z->zh, c, 0, buf, &len, &st) != ZOK || len < 0)
            continue;
        buf[len] = 0;
        if ((size_t)len <= nl || strncmp(buf, z->name, nl) != 0 || buf[nl] != '\n' ||
            (me && st.ephemeralOwner == me->client_id))
            continue;
        int rc = zoo_delete(z->zh, c, st.version);
        tn_warn("zk",
                "msg=\"removed a node left by a previous session of ours\" node=%s "
                "session=0x%" PRIx64 " deleted=%s",
                v.data[i], (uint64_t)st.ephemeralOwner, rc == ZOK ? "yes" : zerror(rc));
    }
    deallocate_String_vector(&v);
}

static void elect(tn_zk *z)
{
    char p[PATH_MAX_ZK], buf[DATA_MAX];
    if (!z->mynode[0]) {
        sweep_stale(z);
        snprintf(p, sizeof(p), "%s/masters/m-", z->base);
        node_data(z, buf, sizeof(buf));
        int rc = zoo_create(z->zh, p, buf, (int)strlen(buf), &ZOO_OPEN_ACL_UNSAFE,
                            ZOO_EPHEMERAL | ZOO_SEQUENCE, z->mynode, sizeof(z->mynode));
        if (rc != ZOK) {
            z->mynode[0] = 0;
            return;
        }
    }
    struct String_vector v = {0};
    snprintf(p, sizeof(p), "%s/masters", z->base);
    if (zoo_get_children(z->zh, p, 0, &v) != ZOK)
        return;
    qsort(v.data, (size_t)v.count, sizeof(char *), cmp_str);
    const char *me = strrchr(z->mynode, '/') + 1;
    int32_t idx = -1;
    for (int32_t i = 0; i < v.count; i++)
        if (strcmp(v.data[i], me) == 0)
            idx = i;
    if (idx < 0) { /* our node is gone (a session that ended): a new one */
        z->mynode[0] = 0;
        again(z);
    } else if (idx == 0) {
        if (z->role != TN_ZK_LEADER && v.count > 1 && should_defer(z, &v)) {
            (void)zoo_delete(z->zh, z->mynode, -1);
            z->mynode[0] = 0;
            again(z);
        } else if (z->role != TN_ZK_LEADER && take_lead(z) != TN_OK) {
            again(z); /* tried again by the thread */
        }
    } else {
        if (z->role != TN_ZK_STANDBY)
            set_role(z, TN_ZK_STANDBY, 0);
        snprintf(p, sizeof(p), "%s/masters/%s", z->base, v.data[idx - 1]);
        struct Stat st;
        if (zoo_exists(z->zh, p, 1, &st) == ZNONODE)
            again(z);
    }
    deallocate_String_vector(&v);
}

/* ---- the thread ---------------------------------------------------------------------- */

static void register_worker(tn_zk *z)
{
    char p[PATH_MAX_ZK];
    snprintf(p, sizeof(p), "%s/workers/%s", z->base, z->name);
    int rc = zoo_create(z->zh, p, z->info, (int)strlen(z->info), &ZOO_OPEN_ACL_UNSAFE,
                        ZOO_EPHEMERAL, NULL, 0);
    if (rc == ZNODEEXISTS) { /* left by a previous session of ours that has not expired */
        (void)zoo_delete(z->zh, p, -1);
        rc = zoo_create(z->zh, p, z->info, (int)strlen(z->info), &ZOO_OPEN_ACL_UNSAFE,
                        ZOO_EPHEMERAL, NULL, 0);
    }
    if (rc != ZOK)
        tn_warn("zk", "msg=\"cannot register the worker\" path=%s why=\"%s\"", p, zerror(rc));
}

/* The session expired: whatever we led is another's now. A new session, and back in
 * line (as a standby: the leader is elected without us). */
static void renew_session(tn_zk *z)
{
    set_role(z, TN_ZK_LOST, 0);
    tn_warn("zk", "msg=\"ZooKeeper session expired\" cluster=%s name=%s", z->cluster, z->name);
    drop_handle(z);
    z->mynode[0] = 0;
    tn_errmsg em = {{0}};
    if (connect_session(z, &em) != TN_OK) {
        tn_warn("zk", "msg=\"reconnect failed\" why=\"%s\"", em.text);
        pthread_mutex_lock(&z->mu);
        z->expired = true; /* tried again */
        pthread_mutex_unlock(&z->mu);
        return;
    }
    pthread_mutex_lock(&z->mu);
    bool reg = z->worker_reg;
    pthread_mutex_unlock(&z->mu);
    if (reg)
        register_worker(z);
    pthread_mutex_lock(&z->mu);
    z->ev_elect = z->campaigning;
    z->ev_workers = true;
    pthread_mutex_unlock(&z->mu);
}

/* Disconnected: the session may be expiring; a leader stops acting until connected
 * again (same session: its lead holds) or expired (it is lost). */
static void on_state(tn_zk *z, int state)
{
    if (state == ZOO_CONNECTED_STATE) {
        if (z->role == TN_ZK_SUSPENDED)
            set_role(z, z->before_suspend, z->before_suspend == TN_ZK_LEADER ? z->epoch : 0);
        pthread_mutex_lock(&z->mu);
        z->ev_elect = z->campaigning;
        pthread_mutex_unlock(&z->mu);
    } else if (state == ZOO_CONNECTING_STATE || state == ZOO_ASSOCIATING_STATE) {
        if (z->role == TN_ZK_LEADER || z->role == TN_ZK_STANDBY) {
            z->before_suspend = z->role;
            set_role(z, TN_ZK_SUSPENDED, z->role == TN_ZK_LEADER ? z->epoch : 0);
        }
    }
}

static void publish_seq(tn_zk *z)
{
    pthread_mutex_lock(&z->mu);
    uint64_t seq = z->seq;
    bool due = z->mynode[0] && seq != z->seq_published;
    pthread_mutex_unlock(&z->mu);
    if (!due)
        return;
    char buf[DATA_MAX];
    node_data(z, buf, sizeof(buf));
    if (zoo_set(z->zh, z->mynode, buf, (int)strlen(buf), -1) == ZOK)
        z->seq_published = seq;
}

static void *zk_thread(void *arg)
{
    tn_zk *z = arg;
    pthread_mutex_lock(&z->mu);
    while (!z->stop) {
        if (z->expired) {
            pthread_mutex_unlock(&z->mu);
            renew_session(z);
            pthread_mutex_lock(&z->mu);
            continue;
        }
        if (z->state_changed) {
            z->state_changed = false;
            int st = z->state;
            pthread_mutex_unlock(&z->mu);
            on_state(z, st);
            pthread_mutex_lock(&z->mu);
            continue;
        }
        bool connected = z->state == ZOO_CONNECTED_STATE;
        if (connected && z->ev_elect && z->campaigning) {
            z->ev_elect = false;
            pthread_mutex_unlock(&z->mu);
            elect(z);
            pthread_mutex_lock(&z->mu);
            continue;
        }
        if (connected && z->ev_workers) {
            z->ev_workers = false;
            pthread_mutex_unlock(&z->mu);
            if (z->o.on_workers)
                z->o.on_workers(z->o.arg);
            pthread_mutex_lock(&z->mu);
            continue;
        }
        if (connected && z->campaigning && z->seq != z->seq_published) {
            pthread_mutex_unlock(&z->mu);
            publish_seq(z);
            pthread_mutex_lock(&z->mu);
        }
        struct timespec ts;
        deadline_in(&ts, 200);
        pthread_cond_timedwait(&z->cv, &z->mu, &ts);
    }
    pthread_mutex_unlock(&z->mu);
    return NULL;
}

/* ---- the API ------------------------------------------------------------------------- */

tn_err tn_zk_campaign(tn_zk *z, uint64_t seq, tn_errmsg *msg)
{
    (void)msg;
    pthread_mutex_lock(&z->mu);
    z->seq = seq;
    z->campaigning = true;
    z->ev_elect = true;
    pthread_cond_broadcast(&z->cv);
    pthread_mutex_unlock(&z->mu);
    return TN_OK;
}

tn_zk_role tn_zk_role_get(tn_zk *z, uint64_t *epoch)
{
    pthread_mutex_lock(&z->mu);
    tn_zk_role r = z->role;
    if (epoch)
        *epoch = r == TN_ZK_LEADER ? z->epoch : 0;
    pthread_mutex_unlock(&z->mu);
    return r;
}

void tn_zk_set_seq(tn_zk *z, uint64_t seq)
{
    pthread_mutex_lock(&z->mu);
    z->seq = seq;
    pthread_mutex_unlock(&z->mu);
}

/* The handle for a call from another thread than this module's: held (the read side of
 * hlock) until release(), so a renewal does not close it under the call. NULL between
 * two sessions. */
static zhandle_t *acquire(tn_zk *z)
{
    pthread_rwlock_rdlock(&z->hlock);
    return z->zh;
}

static void release(tn_zk *z)
{
    pthread_rwlock_unlock(&z->hlock);
}

tn_err tn_zk_leader(tn_zk *z, uint64_t *epoch, char *name, size_t nlen, char *info, size_t ilen,
                    tn_errmsg *msg)
{
    char p[PATH_MAX_ZK], buf[DATA_MAX];
    int len = sizeof(buf) - 1;
    snprintf(p, sizeof(p), "%s/leader", z->base);
    zhandle_t *zh = acquire(z);
    int rc = zh ? zoo_get(zh, p, 0, buf, &len, NULL) : ZINVALIDSTATE;
    release(z);
    if (rc == ZNONODE)
        return tn_errmsg_set(msg, TN_ERR_NOENT,
                             "cluster %s has no leader now (ZooKeeper %s); wait for the "
                             "election, or start a master",
                             z->cluster, z->hosts);
    if (rc != ZOK)
        return tn_errmsg_set(msg, zerr(rc), "ZooKeeper %s: cannot read %s: %s", z->hosts, p,
                             zerror(rc));
    buf[len < 0 ? 0 : len] = 0;
    char *n1 = strchr(buf, '\n');
    char *n2 = n1 ? strchr(n1 + 1, '\n') : NULL;
    if (!n1 || !n2)
        return tn_errmsg_set(msg, TN_ERR_CORRUPT, "ZooKeeper %s: %s is not a leader record",
                             z->hosts, p);
    if (epoch)
        *epoch = strtoull(buf, NULL, 10);
    if (name)
        snprintf(name, nlen, "%.*s", (int)(n2 - n1 - 1), n1 + 1);
    if (info)
        snprintf(info, ilen, "%s", n2 + 1);
    return TN_OK;
}

tn_err tn_zk_epoch(tn_zk *z, uint64_t *epoch, tn_errmsg *msg)
{
    char p[PATH_MAX_ZK], buf[32];
    int len = sizeof(buf) - 1;
    snprintf(p, sizeof(p), "%s/epoch", z->base);
    zhandle_t *zh = acquire(z);
    int rc = zh ? zoo_get(zh, p, 0, buf, &len, NULL) : ZINVALIDSTATE;
    release(z);
    if (rc == ZNONODE) {
        *epoch = 0;
        return TN_OK;
    }
    if (rc != ZOK)
        return tn_errmsg_set(msg, zerr(rc), "ZooKeeper %s: cannot read %s: %s", z->hosts, p,
                             zerror(rc));
    buf[len < 0 ? 0 : len] = 0;
    *epoch = strtoull(buf, NULL, 10);
    return TN_OK;
}

tn_err tn_zk_worker_register(tn_zk *z, tn_errmsg *msg)
{
    (void)msg;
    pthread_mutex_lock(&z->mu);
    z->worker_reg = true; /* first: a renewal from here on registers again */
    pthread_mutex_unlock(&z->mu);
    if (acquire(z))
        register_worker(z);
    release(z);
    return TN_OK;
}

tn_err tn_zk_workers(tn_zk *z, void (*fn)(void *arg, const char *name, const char *info),
                     void *arg, tn_errmsg *msg)
{
    char p[PATH_MAX_ZK];
    snprintf(p, sizeof(p), "%s/workers", z->base);
    struct String_vector v = {0};
    zhandle_t *zh = acquire(z);
    int rc = zh ? zoo_get_children(zh, p, 1, &v) : ZINVALIDSTATE;
    if (rc != ZOK) {
        release(z);
        return tn_errmsg_set(msg, zerr(rc), "ZooKeeper %s: cannot list %s: %s", z->hosts, p,
                             zerror(rc));
    }
    for (int32_t i = 0; i < v.count; i++) {
        char c[2 * PATH_MAX_ZK], buf[DATA_MAX];
        int len = sizeof(buf) - 1;
        snprintf(c, sizeof(c), "%s/%s", p, v.data[i]);
        if (zoo_get(zh, c, 0, buf, &len, NULL) != ZOK)
            continue; /* gone between the list and now */
        buf[len < 0 ? 0 : len] = 0;
        fn(arg, v.data[i], buf);
    }
    release(z);
    deallocate_String_vector(&v);
    return TN_OK;
}

int64_t tn_zk_session(tn_zk *z)
{
    zhandle_t *zh = acquire(z);
    const clientid_t *c = zh ? zoo_client_id(zh) : NULL;
    int64_t id = c ? c->client_id : 0;
    release(z);
    return id;
}

uint32_t tn_zk_sessions(tn_zk *z)
{
    pthread_mutex_lock(&z->mu);
    uint32_t n = z->sessions;
    pthread_mutex_unlock(&z->mu);
    return n;
}

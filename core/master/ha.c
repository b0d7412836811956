/* A master of a cluster in ZooKeeper (see ha.h): a standby follows the leader's log; the
 * elected one opens the engine on its copy (the recovery of a restart) and leads with the
 * epoch ZooKeeper gave it. Role changes come from zk.c's thread and are acted on here, on
 * this module's own thread, one at a time. */
#include "ha.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "engine.h"
#include "log.h"
#include "prom.h"
#include "ship.h"
#include "standby.h"
#include "util.h"
#include "zk.h"

struct tn_ha {
    tn_ha_opts o;
    char data[PATH_MAX], name[128], ship_url[PATH_MAX + 32], info[3 * PATH_MAX + 200];
    tn_zk *zk;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    bool stop, changed, workers_changed;
    tn_zk_role role;
    uint64_t epoch;
    /* this thread's */
    tn_master *m;
    _Atomic(tn_ship *) ship;
    atomic_bool leading;
    tn_follower *fol;
    int64_t lead_at;  /* monotonic ns of the last takeover */
    char *registered; /* "\nNAME\n..." of every worker seen registered while we lead */
    char ctl[PATH_MAX + 32];
    /* while we follow: the reads on the control URL and --http (standby.h) */
    tn_standby *reads;
    /* h->fol and h->ship as the read servers and /metrics see them: this thread changes
     * them under rmu, and frees them after */
    pthread_mutex_t rmu;
};

static void on_role(void *arg, tn_zk_role role, uint64_t epoch)
{
    tn_ha *h = arg;
    pthread_mutex_lock(&h->mu);
    h->role = role;
    h->epoch = epoch;
    h->changed = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static void on_workers(void *arg)
{
    tn_ha *h = arg;
    pthread_mutex_lock(&h->mu);
    h->workers_changed = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* The value of KEY= in a registration ("listen=URL ctl=URL ship=URL"). */
bool tn_ha_info_get(const char *info, const char *key, char *out, size_t len)
{
    size_t k = strlen(key);
    for (const char *p = info; p && *p;) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (strncmp(p, key, k) == 0 && p[k] == '=') {
            const char *v = p + k + 1;
            size_t n = strcspn(v, " \n");
            if (n + 1 > len)
                return false;
            memcpy(out, v, n);
            out[n] = 0;
            return true;
        }
        p = strpbrk(p, " \n");
    }
    return false;
}

/* The leader's ship URL for the follower; false when we lead or none is known. */
static bool leader_ship(void *arg, char *url, size_t len)
{
    tn_ha *h = arg;
    char name[256], info[3000];
    if (tn_zk_leader(h->zk, NULL, name, sizeof(name), info, sizeof(info), NULL) != TN_OK ||
        strcmp(name, h->name) == 0)
        return false;
    return tn_ha_info_get(info, "ship", url, len);
}

static void on_seq(void *arg, uint64_t seq)
{
    tn_ha *h = arg;
    tn_zk_set_seq(h->zk, seq);
}

/* The engine's gate: with --sync-standbys, the effects of a batch wait for the standbys
 * (and, in the moment between the engine's start and the ship server's, for the server). */
static void gate(void *arg, uint64_t seq)
{
    tn_ha *h = arg;
    if (!h->o.sync_standbys)
        return;
    tn_ship *s;
    while (!(s = atomic_load(&h->ship)) && atomic_load(&h->leading)) {
        struct timespec ts = {0, 5000000L};
        nanosleep(&ts, NULL);
    }
    if (s)
        tn_ship_gate(s, seq);
}

static void reconcile_registry(tn_ha *h);

static void reads_start(tn_ha *h);
static void reads_stop(tn_ha *h);
static void ha_metrics(void *arg, tn_sb *b);

/* Close the ZooKeeper handle: /metrics (the master's, which still serves) reads it under
 * rmu. */
static void leave_zk(tn_ha *h)
{
    pthread_mutex_lock(&h->rmu);
    tn_zk *z = h->zk;
    h->zk = NULL;
    pthread_mutex_unlock(&h->rmu);
    tn_zk_close(z);
}

static void follow(tn_ha *h)
{
    reads_start(h);
    if (h->fol)
        return;
    tn_follower_opts fo = {
        .name = h->name,
        .data_dir = h->data,
        .tls = {h->o.master.tls_ca, h->o.master.tls_cert, h->o.master.tls_key},
        .leader_url = leader_ship,
        .arg = h,
        .on_seq = on_seq};
    tn_errmsg em = {{0}};
    tn_follower *f = NULL;
    if (tn_follower_start(&fo, &f, &em) != TN_OK)
        tn_error("ha", "msg=\"cannot follow the leader\" why=\"%s\"", em.text);
    pthread_mutex_lock(&h->rmu);
    h->fol = f;
    pthread_mutex_unlock(&h->rmu);
}

/* Stop following: the reads of the replica end first (tn_follower_stop waits for them). */
static uint64_t unfollow(tn_ha *h)
{
    pthread_mutex_lock(&h->rmu);
    tn_follower *f = h->fol;
    h->fol = NULL;
    pthread_mutex_unlock(&h->rmu);
    return tn_follower_stop(f);
}

static void step_down(tn_ha *h, const char *why)
{
    if (!h->m)
        return;
    tn_warn("ha", "msg=\"stepping down\" why=\"%s\"", why);
    tn_master_set_passive(h->m, true);
    atomic_store(&h->leading, false);
    /* the engine's gate may hold the ship server: it is closed first (a gate returns at
     * once), freed once the engine stopped (and with it the API whose /metrics reads it) */
    tn_ship *s = atomic_load(&h->ship);
    tn_ship_close(s);
    tn_master_stop(h->m);
    h->m = NULL;
    pthread_mutex_lock(&h->rmu); /* /metrics reads it under rmu */
    atomic_store(&h->ship, NULL);
    pthread_mutex_unlock(&h->rmu);
    tn_ship_free(s);
}

/* Take over: our log is what we followed; the engine's open is the recovery (instances,
 * timers, schedules, attempts to reconcile with their workers); then the log is served. */
static void take_over(tn_ha *h, uint64_t epoch)
{
    int64_t t0 = tn_mono_ns();
    reads_stop(h); /* the master serves the control URL and --http now: no double bind */
    uint64_t seq = unfollow(h);
    tn_master_opts mo = h->o.master;
    mo.data_dir = h->data;
    mo.epoch = epoch;
    mo.gate = gate;
    mo.gate_arg = h;
    mo.metrics = ha_metrics;
    mo.metrics_arg = h;
    atomic_store(&h->leading, true);
    tn_errmsg em = {{0}};
    if (tn_master_start(&mo, &h->m, &em) != TN_OK) {
        tn_error("ha", "msg=\"cannot lead: the engine did not open\" why=\"%s\"", em.text);
        atomic_store(&h->leading, false);
        h->m = NULL;
        return;
    }
    tn_ship *s = NULL;
    tn_rpc_tls tls = {mo.tls_ca, mo.tls_cert, mo.tls_key};
    if (tn_ship_serve(h->ship_url, &tls, mo.insecure, tn_engine_log(tn_master_engine(h->m)),
                      h->o.sync_standbys, &s, &em) != TN_OK)
        tn_error("ha", "msg=\"cannot serve the log to standbys\" why=\"%s\"", em.text);
    atomic_store(&h->ship, s);
    h->lead_at = tn_mono_ns();
    reconcile_registry(h); /* and the registry's watch is armed */
    tn_info("ha", "msg=\"leading\" epoch=%" PRIu64 " seq=%" PRIu64 " takeover_ms=%.1f ship=%s",
            epoch, seq, (double)(h->lead_at - t0) / 1e6, h->ship_url);
}

static void act(tn_ha *h, tn_zk_role role, uint64_t epoch)
{
    switch (role) {
    case TN_ZK_LEADER:
        if (h->m && tn_master_epoch(h->m) == epoch) {
            tn_master_set_passive(h->m, false); /* the session held: the lead too */
        } else {
            step_down(h, "a new epoch");
            take_over(h, epoch);
        }
        break;
    case TN_ZK_SUSPENDED:
        if (h->m) { /* not a single dispatch while the session is in doubt */
            tn_master_set_passive(h->m, true);
            tn_warn("ha", "msg=\"ZooKeeper unreachable: dispatching paused\"");
        }
        break;
    case TN_ZK_LOST:
        step_down(h, "the ZooKeeper session expired: another master leads");
        follow(h);
        break;
    default: step_down(h, "not the leader"); follow(h);
    }
}

static void registered(void *arg, const char *name, const char *info)
{
    (void)info;
    char **names = arg;
    size_t n = strlen(*names);
    char *p = realloc(*names, n + strlen(name) + 3);
    if (!p)
        return;
    snprintf(p + n, strlen(name) + 3, "\n%s\n", name);
    *names = p;
}

typedef struct gone_ctx {
    tn_ha *h;
    const char *names;
} gone_ctx;

static void check_gone(void *arg, const char *name)
{
    gone_ctx *g = arg;
    char key[300];
    snprintf(key, sizeof(key), "\n%s\n", name);
    if (!strstr(g->names, key) && g->h->registered && strstr(g->h->registered, key))
        tn_master_worker_gone(g->h->m, name);
}

/* The leader: a live worker that was registered and is not any more (its session ended)
 * is lost. Workers without --zk never register: the heartbeat alone decides for them. */
static void reconcile_registry(tn_ha *h)
{
    char *names = calloc(1, 2);
    if (!names || tn_zk_workers(h->zk, registered, &names, NULL) != TN_OK) {
        free(names);
        return;
    }
    /* remember who registered (a name once is enough: names are "\nNAME\n" lines) */
    for (char *p = names; (p = strchr(p, '\n')) && p[1];) {
        char *end = strchr(p + 1, '\n');
        if (!end)
            break;
        size_t n = (size_t)(end - p) + 1;
        char key[300];
        snprintf(key, sizeof(key), "%.*s", (int)n, p);
        if (!h->registered || !strstr(h->registered, key)) {
            size_t have = h->registered ? strlen(h->registered) : 0;
            char *r = realloc(h->registered, have + n + 1);
            if (r) {
                memcpy(r + have, key, n + 1);
                h->registered = r;
            }
        }
        p = end + 1;
    }
    gone_ctx g = {h, names};
    tn_master_workers_each(h->m, check_gone, &g);
    free(names);
}

static void *ha_thread(void *arg)
{
    tn_ha *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        if (h->changed) {
            h->changed = false;
            tn_zk_role r = h->role;
            uint64_t e = h->epoch;
            pthread_mutex_unlock(&h->mu);
            act(h, r, e);
            pthread_mutex_lock(&h->mu);
            continue;
        }
        if (h->workers_changed) {
            h->workers_changed = false;
            pthread_mutex_unlock(&h->mu);
            if (h->m)
                reconcile_registry(h);
            pthread_mutex_lock(&h->mu);
            continue;
        }
        if (h->m && tn_master_fenced(h->m)) {
            pthread_mutex_unlock(&h->mu);
            step_down(h, "fenced by a newer leader");
            follow(h);
            pthread_mutex_lock(&h->mu);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

tn_err tn_ha_start(const tn_ha_opts *o, tn_ha **out, tn_errmsg *msg)
{
    tn_ha *h = calloc(1, sizeof(*h));
    if (!h)
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    h->o = *o;
    tn_err e = TN_OK;
    if (tn_mkdir_p(o->master.data_dir) != 0 || !realpath(o->master.data_dir, h->data)) {
        free(h);
        return tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot create the data directory",
                             o->master.data_dir);
    }
    snprintf(h->name, sizeof(h->name), "%s", o->master.id ? o->master.id : "local");
    if (o->ship_url)
        snprintf(h->ship_url, sizeof(h->ship_url), "%s", o->ship_url);
    else
        snprintf(h->ship_url, sizeof(h->ship_url), "ipc://%s/master.ship", h->data);
    if (o->master.ctl_url)
        snprintf(h->ctl, sizeof(h->ctl), "%s", o->master.ctl_url);
    else
        tn_master_default_ctl(h->data, h->ctl, sizeof(h->ctl));
    int n = snprintf(h->info, sizeof(h->info), "listen=%s ctl=%s ship=%s",
                     o->master.listen_url ? o->master.listen_url : "", h->ctl, h->ship_url);
    if (o->master.http_addr && n > 0 && (size_t)n < sizeof(h->info))
        snprintf(h->info + n, sizeof(h->info) - (size_t)n, " http=%s://%s",
                 o->master.http_cert ? "https" : "http", o->master.http_addr);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->rmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cv, &ca);
    pthread_condattr_destroy(&ca);
    tn_zk_opts zo = {.hosts = o->zk,
                     .cluster = o->cluster,
                     .name = h->name,
                     .info = h->info,
                     .session_ms = o->session_ms,
                     .on_role = on_role,
                     .on_workers = on_workers,
                     .arg = h};
    if ((e = tn_zk_open(&zo, &h->zk, msg)))
        goto fail;
    /* follow before campaigning: our log's length decides whether we may lead (a shorter
     * one defers) */
    follow(h);
    if (!h->fol) {
        e = tn_errmsg_set(msg, TN_ERR_IO, "%s: cannot open the store to follow the leader",
                          h->data);
        goto fail;
    }
    uint64_t seq = tn_follower_seq(h->fol); /* before the thread may replace it */
    if (pthread_create(&h->th, NULL, ha_thread, h) != 0) {
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the cluster thread");
        goto fail;
    }
    tn_zk_campaign(h->zk, seq, msg);
    tn_info("ha", "msg=\"joined the cluster\" cluster=%s name=%s zk=%s seq=%" PRIu64,
            o->cluster, h->name, o->zk, seq);
    *out = h;
    return TN_OK;
fail:
    /* the follower and the standby's servers ask ZooKeeper who leads: they stop before
     * the session closes */
    reads_stop(h);
    unfollow(h);
    tn_zk_close(h->zk);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->rmu);
    pthread_cond_destroy(&h->cv);
    free(h);
    return e;
}

void tn_ha_stop(tn_ha *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = true;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    /* the follower and the reads ask ZooKeeper who leads: they stop before the session
     * closes */
    reads_stop(h);
    unfollow(h);
    /* then leave ZooKeeper: a standby takes over without waiting for a session timeout */
    if (h->m)
        tn_master_set_passive(h->m, true);
    leave_zk(h);
    step_down(h, "stopping");
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->rmu);
    pthread_cond_destroy(&h->cv);
    free(h->registered);
    free(h);
}

tn_zk_role tn_ha_role(tn_ha *h, uint64_t *epoch)
{
    return tn_zk_role_get(h->zk, epoch);
}

/* ---- a standby's reads and the cluster's gauges (standby.h, docs/HA.md) ---------------- */

static void *replica_hold(void *arg, tn_store **store, uint64_t *seq)
{
    tn_ha *h = arg;
    pthread_mutex_lock(&h->rmu);
    tn_follower *f = h->fol;
    tn_evlog *l = f ? tn_follower_hold(f, seq) : NULL;
    pthread_mutex_unlock(&h->rmu);
    if (!l)
        return NULL;
    *store = tn_evlog_store(l);
    return f; /* valid until released: tn_follower_stop waits for the hold */
}

static void replica_release(void *arg, void *token)
{
    (void)arg;
    tn_follower_release(token);
}

static bool leader_info(void *arg, char *name, size_t nlen, char *info, size_t ilen)
{
    tn_ha *h = arg;
    return tn_zk_leader(h->zk, NULL, name, nlen, info, ilen, NULL) == TN_OK;
}

static void reads_start(tn_ha *h)
{
    if (h->reads)
        return;
    const tn_master_opts *m = &h->o.master;
    tn_standby_opts so = {.name = h->name,
                          .data_dir = h->data,
                          .ctl_url = h->ctl,
                          .tls_ca = m->tls_ca,
                          .tls_cert = m->tls_cert,
                          .tls_key = m->tls_key,
                          .http_addr = m->http_addr,
                          .http_cert = m->http_cert,
                          .http_key = m->http_key,
                          .http_ca = m->http_ca,
                          .ui_dir = m->ui_dir,
                          .hold = replica_hold,
                          .release = replica_release,
                          .leader = leader_info,
                          .metrics = ha_metrics,
                          .arg = h};
    tn_errmsg em = {{0}};
    if (tn_standby_start(&so, &h->reads, &em) != TN_OK)
        tn_warn("ha",
                "msg=\"the standby's control socket and HTTP API are not served\" why=\"%s\"",
                em.text);
}

static void reads_stop(tn_ha *h)
{
    tn_standby_stop(h->reads);
    h->reads = NULL;
}

/* /metrics: the role, the log's last seq; a standby's lag behind the leader; a leader's
 * standbys (those heard from in 10 s, and those holding its last seq). */
static void ha_metrics(void *arg, tn_sb *b)
{
    tn_ha *h = arg;
    pthread_mutex_lock(&h->rmu);
    tn_zk_role role = h->zk ? tn_zk_role_get(h->zk, NULL) : TN_ZK_NONE;
    pthread_mutex_unlock(&h->rmu);
    static const tn_zk_role roles[] = {TN_ZK_LEADER, TN_ZK_STANDBY, TN_ZK_SUSPENDED,
                                       TN_ZK_LOST};
    tn_prom_head(b, "tern_ha_role", "gauge",
                 "This master's role in its cluster: 1 for the role it has now.");
    for (size_t i = 0; i < TN_ARRAY_LEN(roles); i++) {
        char l[64];
        snprintf(l, sizeof(l), "role=\"%s\"", tn_zk_role_name(roles[i]));
        tn_prom_sample(b, "tern_ha_role", l, roles[i] == role ? 1 : 0);
    }
    pthread_mutex_lock(&h->rmu);
    tn_ship *s = atomic_load(&h->ship);
    bool fol = h->fol != NULL;
    uint64_t last = s ? tn_ship_last_seq(s) : fol ? tn_follower_seq(h->fol) : 0;
    uint64_t lseq = fol ? tn_follower_leader_seq(h->fol) : 0;
    uint32_t holding = 0, fresh = s ? tn_ship_standbys(s, last, &holding) : 0;
    pthread_mutex_unlock(&h->rmu);
    tn_prom_head(b, "tern_ha_last_seq", "gauge", "The last seq of this master's log.");
    tn_prom_sample(b, "tern_ha_last_seq", NULL, (double)last);
    if (fol) {
        tn_prom_head(b, "tern_ha_leader_seq", "gauge",
                     "The leader's last seq, as its last reply to this standby said.");
        tn_prom_sample(b, "tern_ha_leader_seq", NULL, (double)lseq);
        tn_prom_head(b, "tern_ha_replication_lag_events", "gauge",
                     "Events the leader has that this standby does not hold yet.");
        tn_prom_sample(b, "tern_ha_replication_lag_events", NULL,
                       (double)(lseq > last ? lseq - last : 0));
    }
    if (s) {
        tn_prom_head(b, "tern_ha_standbys", "gauge",
                     "Standbys that pulled the log in the last 10 s (connected), and those "
                     "of them that hold the leader's last seq (synced).");
        tn_prom_sample(b, "tern_ha_standbys", "state=\"connected\"", (double)fresh);
        tn_prom_sample(b, "tern_ha_standbys", "state=\"synced\"", (double)holding);
    }
}

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
#include "ship.h"
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
    tn_rpc_server *redirect; /* the control URL while we follow: names the leader */
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

/* A standby's control socket: every request is answered with the leader's control URL
 * (code TN_CTL_REDIRECT), which the client asks instead (tools/client.c). */
static void redirect_handle(void *arg, const tn_rpc_peer *peer, const void *req, size_t len,
                            void **rep, size_t *rlen)
{
    tn_ha *h = arg;
    (void)peer;
    (void)req;
    char name[256], info[3000], url[PATH_MAX + 32], text[PATH_MAX + 700];
    tn_ctl_rep rp = {.ok = false, .code = 1};
    if (len == 0) {
        rp = (tn_ctl_rep){.ok = true, .text = TN_STR("pong")};
    } else if (tn_zk_leader(h->zk, NULL, name, sizeof(name), info, sizeof(info), NULL) ==
                   TN_OK &&
               strcmp(name, h->name) != 0 && tn_ha_info_get(info, "ctl", url, sizeof(url))) {
        snprintf(text, sizeof(text), "%s is a standby; the leader is %s at %s", h->name, name,
                 url);
        rp = (tn_ctl_rep){
            .ok = false, .code = TN_CTL_REDIRECT, .text = tn_str_c(text), .url = tn_str_c(url)};
    } else {
        snprintf(text, sizeof(text),
                 "%s is a standby and no leader is known now: wait for the election", h->name);
        rp.text = tn_str_c(text);
    }
    tn_buf b = {0};
    if (tn_ctl_rep_encode(&rp, &b) == TN_OK) {
        *rep = b.data;
        *rlen = b.size;
    } else {
        tn_buf_free(&b);
    }
}

static void redirect_start(tn_ha *h)
{
    if (h->redirect)
        return;
    tn_rpc_tls tls = {h->o.master.tls_ca, h->o.master.tls_cert, h->o.master.tls_key};
    tn_errmsg em = {{0}};
    if (tn_rpc_serve_peer(h->ctl, &tls, redirect_handle, h, &h->redirect, &em) != TN_OK)
        tn_warn("ha", "msg=\"the standby's control socket is not served\" why=\"%s\"", em.text);
}

static void redirect_stop(tn_ha *h)
{
    tn_rpc_server_free(h->redirect);
    h->redirect = NULL;
}

static void follow(tn_ha *h)
{
    redirect_start(h);
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
    if (tn_follower_start(&fo, &h->fol, &em) != TN_OK)
        tn_error("ha", "msg=\"cannot follow the leader\" why=\"%s\"", em.text);
}

static void step_down(tn_ha *h, const char *why)
{
    if (!h->m)
        return;
    tn_warn("ha", "msg=\"stepping down\" why=\"%s\"", why);
    tn_master_set_passive(h->m, true);
    atomic_store(&h->leading, false);
    /* the engine's gate may hold the ship server: it is closed first (a gate returns at
     * once), freed once the engine stopped */
    tn_ship *s = atomic_load(&h->ship);
    tn_ship_close(s);
    tn_master_stop(h->m);
    h->m = NULL;
    atomic_store(&h->ship, NULL);
    tn_ship_free(s);
}

/* Take over: our log is what we followed; the engine's open is the recovery (instances,
 * timers, schedules, attempts to reconcile with their workers); then the log is served. */
static void take_over(tn_ha *h, uint64_t epoch)
{
    int64_t t0 = tn_mono_ns();
    uint64_t seq = tn_follower_stop(h->fol);
    h->fol = NULL;
    redirect_stop(h); /* the master serves the control URL now */
    tn_master_opts mo = h->o.master;
    mo.data_dir = h->data;
    mo.epoch = epoch;
    mo.gate = gate;
    mo.gate_arg = h;
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
    snprintf(h->info, sizeof(h->info), "listen=%s ctl=%s ship=%s",
             o->master.listen_url ? o->master.listen_url : "", h->ctl, h->ship_url);
    pthread_mutex_init(&h->mu, NULL);
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
    if (pthread_create(&h->th, NULL, ha_thread, h) != 0) {
        e = tn_errmsg_set(msg, TN_ERR_NOMEM, "cannot start the cluster thread");
        goto fail;
    }
    tn_zk_campaign(h->zk, tn_follower_seq(h->fol), msg);
    tn_info("ha", "msg=\"joined the cluster\" cluster=%s name=%s zk=%s seq=%" PRIu64,
            o->cluster, h->name, o->zk, tn_follower_seq(h->fol));
    *out = h;
    return TN_OK;
fail:
    /* the follower and the standby's control socket ask ZooKeeper who leads: they stop
     * before the session closes */
    tn_follower_stop(h->fol);
    redirect_stop(h);
    tn_zk_close(h->zk);
    pthread_mutex_destroy(&h->mu);
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
    /* the follower asks ZooKeeper who leads: it stops before the session closes */
    tn_follower_stop(h->fol);
    h->fol = NULL;
    redirect_stop(h);
    /* then leave ZooKeeper: a standby takes over without waiting for a session timeout */
    if (h->m)
        tn_master_set_passive(h->m, true);
    tn_zk_close(h->zk);
    step_down(h, "stopping");
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h->registered);
    free(h);
}

tn_zk_role tn_ha_role(tn_ha *h, uint64_t *epoch)
{
    return tn_zk_role_get(h->zk, epoch);
}

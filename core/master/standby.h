/* A standby master's read servers (docs/HA.md): on the master's control URL and --http
 * address, while it follows the leader, the reads of the store (ls, status, def, audit,
 * schedules, backfills, ...) are answered from its replica, and everything else is sent
 * to the leader (the control socket's redirect reply; HTTP 307 to the leader's API, or
 * 503 when no leader API is known).
 *
 * Threads: the control server's and the HTTP server's; each read holds the replica
 * (opts.hold) for as long as it reads. tn_standby_stop waits for the reads that run. */
#ifndef TN_STANDBY_H
#define TN_STANDBY_H

#include <stdbool.h>
#include <stdint.h>

#include "ctlsrv.h"
#include "err.h"
#include "util.h"

typedef struct tn_standby tn_standby;

typedef struct tn_standby_opts {
    const char *name;     /* this master's id: the replies name it */
    const char *data_dir; /* its tokens (token.h) */
    const char *ctl_url;  /* the control URL (the master's, once it leads) */
    const char *tls_ca, *tls_cert, *tls_key;
    /* the HTTP API (NULL: none), as tn_master_opts' */
    const char *http_addr, *http_cert, *http_key, *http_ca, *ui_dir;
    /* The replica: hold gives its store and the seq it holds, and a token for release;
     * NULL when there is none now. Every non-NULL hold is released once. */
    void *(*hold)(void *arg, tn_store **store, uint64_t *seq);
    void (*release)(void *arg, void *token);
    /* The leader now: its name and registration ("ctl=URL http=URL ..."); false when none
     * is known (an election runs). */
    bool (*leader)(void *arg, char *name, size_t nlen, char *info, size_t ilen);
    /* more of /metrics (the cluster's gauges) */
    void (*metrics)(void *arg, tn_sb *out);
    void *arg;
} tn_standby_opts;

/* Serve the control URL (and the HTTP address when given). msg says what failed (an
 * address taken). */
tn_err tn_standby_start(const tn_standby_opts *o, tn_standby **out, tn_errmsg *msg);
/* Stop serving: the requests that run finish first (and release their holds). NULL ok. */
void tn_standby_stop(tn_standby *s);

/* Whether the standby answers control command cmd from its replica (a pure read of the
 * store); every other command goes to the leader. */
bool tn_standby_serves(tn_str cmd);

/* tn_ctlsrv_exec's for a standby's control server cs: r runs on the held replica, and the
 * reply is tagged (tn_standby_tag). */
void tn_standby_exec(tn_standby *sb, tn_ctlsrv *cs, const tn_ctl_ident *id, const tn_ctl_req *r,
                     tn_ctl_result *o);

/* Say where a reply came from: a JSON object gets the leading members
 * "served_by":"standby","standby":NAME,"log_seq":SEQ; the text a last line. */
void tn_standby_tag(tn_ctl_result *o, const char *name, uint64_t seq);

#endif

/* The transport: one-directional message endpoints (a sender or a receiver) behind a table
 * of operations. nng provides tcp, ipc, inproc and tls+tcp by URL; a wrapper injects faults.
 *
 * An endpoint is like an nng push/pull socket: a SENDER only sends and dials one URL, a
 * RECEIVER only receives and may listen or dial. The master listens for reports and dials
 * each worker's listen URL to send it dispatches; a worker listens for dispatches and dials
 * the master to send reports. A message is a byte string; the transport neither looks into it
 * nor splits it: what the peer receives is one call of the receive callback per send.
 *
 * Delivery is best effort, in order over one connection: a message in flight or still
 * queued when a connection breaks is lost, and the protocol above (reports resent until
 * PERSISTED) recovers. A dialer reconnects by itself; messages sent while no peer is
 * connected wait in a bounded send buffer. (A sender's connection lives on a socket of
 * its own, replaced at the first send after the connection is gone: a guard against an
 * nng 1.5.2 use-after-free, see nng.c.)
 *
 * Teardown is in three steps, as in nng: close (never blocks; no receive callback is
 * dispatched after it returns, though one dispatched just before may still be running;
 * send fails with TN_ERR_CLOSED), then free (waits for a running callback and for nng's
 * threads, releases everything). free implies close.
 *
 * nng 1.5.2 (Debian 12) can deadlock tearing down a connection that has a message in
 * flight: seen with tls+tcp across processes (about one close in three under load) and
 * with tcp when both ends are in one process. free then gives up after 10 s, logs an
 * error and leaves the socket behind, but nng's reaper thread stays stuck, so later
 * teardowns in that process stall too. Until nng is upgraded: before freeing a tls+tcp
 * sender, stop sending and wait until the peer has what was sent (the protocol's replies
 * say so), or use tcp on a trusted network. See nng.c.
 *
 * Threads: send may be called from any thread, concurrently. The receive callback runs on
 * a transport thread, one call at a time per endpoint, in arrival order; it must not call
 * free on its own endpoint (free waits for the callback: a deadlock), but may call close. */
#ifndef TN_TRANSPORT_H
#define TN_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Who sent a message, as the transport established it (never as the message claims).
 *   tls+tcp: the peer's certificate chained to the CA (mutual TLS): name is its subject CN,
 *            role its subject OU ("master", "worker", "client"; `tern cert` writes both).
 *   ipc:     the peer process's uid (SO_PEERCRED), checked at connect: same uid or root,
 *            others are refused before any message.
 *   inproc:  the same process: authenticated, no name.
 *   tcp:     nothing is known: authenticated is false (plain tcp needs --insecure). */
typedef struct tn_peer {
    const char *name;   /* certificate CN; "" when there is none */
    const char *role;   /* certificate OU; "" when there is none */
    int64_t uid;        /* ipc peer's uid; -1 otherwise */
    uint32_t pipe;      /* the connection, as in the transport's log lines */
    bool authenticated; /* see above */
} tn_peer;

/* Called from a transport thread for each message received; buf and peer are valid only
 * during the call (copy what you keep). */
typedef void (*tn_tx_recv_fn)(void *arg, const void *buf, size_t len, const tn_peer *peer);

typedef struct tn_tx_ops {
    const char *name; /* "nng", "fault": for logs */
    /* Accept connections at url (a receiver). Returns at once; errors (a bad URL, an
     * address in use, a TLS file that does not load, a sender: TN_ERR_UNSUPPORTED) are
     * reported with a message for a person. */
    tn_err (*listen)(void *self, const char *url, tn_errmsg *msg);
    /* Connect to url in the background: the first attempt does not block, and a refused
     * or broken connection is retried (reconnect intervals in the options). A sender
     * dials once (a second dial: TN_ERR_UNSUPPORTED). */
    tn_err (*dial)(void *self, const char *url, tn_errmsg *msg);
    /* Send a copy of buf (the caller keeps buf). Never blocks for long: TN_ERR_BUSY when
     * the send buffer is full (try again later), TN_ERR_CLOSED after close, TN_ERR_TOOBIG
     * over the size bound, TN_ERR_INVAL on a receiver. */
    tn_err (*send)(void *self, const void *buf, size_t len);
    /* The URL of the last listen with the port the system chose for ":0" resolved
     * ("tcp://127.0.0.1:0" -> "tcp://127.0.0.1:40117"), NUL-terminated into buf.
     * TN_ERR_NOENT before any listen, TN_ERR_TOOBIG if cap is too small. */
    tn_err (*bound_url)(void *self, char *buf, size_t cap);
    void (*close)(void *self); /* never blocks; no receive callback dispatched after it */
    void (*free)(void *self);  /* closes, waits for a running callback, frees */
} tn_tx_ops;

/* An endpoint: an operations table and its state. The one who created it frees it. */
typedef struct tn_tx {
    const tn_tx_ops *ops;
    void *self;
} tn_tx;

static inline tn_err tn_tx_listen(tn_tx t, const char *url, tn_errmsg *msg)
{
    return t.ops->listen(t.self, url, msg);
}

static inline tn_err tn_tx_dial(tn_tx t, const char *url, tn_errmsg *msg)
{
    return t.ops->dial(t.self, url, msg);
}

static inline tn_err tn_tx_send(tn_tx t, const void *buf, size_t len)
{
    return t.ops->send(t.self, buf, len);
}

static inline tn_err tn_tx_bound_url(tn_tx t, char *buf, size_t cap)
{
    return t.ops->bound_url(t.self, buf, cap);
}

static inline void tn_tx_close(tn_tx t)
{
    if (t.ops)
        t.ops->close(t.self);
}

/* Free and zero *t; a zeroed tn_tx is allowed (nothing to do). */
static inline void tn_tx_free(tn_tx *t)
{
    if (t->ops)
        t->ops->free(t->self);
    t->ops = NULL;
    t->self = NULL;
}

/* ---- URL schemes ------------------------------------------------------------------------ */

struct tn_tx_tls;

/* The schemes tern speaks, one row each (nng's style: a transport is found by scheme). */
typedef struct tn_tx_scheme {
    const char *scheme; /* "tcp", "ipc", "inproc", "tls+tcp" */
    bool tls;           /* needs a tn_tx_tls */
    bool network;       /* reaches other hosts (tcp, tls+tcp) */
    /* The constructor of this scheme's endpoints, with default options (see tn_tx_new). */
    tn_err (*make)(bool sender, const struct tn_tx_tls *tls, tn_tx_recv_fn fn, void *arg,
                   tn_tx *out, tn_errmsg *msg);
} tn_tx_scheme;

/* The row for url's scheme ("tcp://..." -> tcp), or NULL when tern does not speak it. */
const tn_tx_scheme *tn_tx_scheme_find(const char *url);

/* A new endpoint in *out for url, made by the row of its scheme: a sender that will dial
 * url, or a receiver that will listen at it (neither is done here). tls as for nng: NULL
 * refuses tls+tcp:// later. TN_ERR_INVAL, with a message naming the URL, when tern does
 * not speak url's scheme; otherwise as the row's constructor. The daemons make their
 * endpoints here, not by calling a transport's constructor. */
tn_err tn_tx_new(const char *url, bool sender, const struct tn_tx_tls *tls, tn_tx_recv_fn fn,
                 void *arg, tn_tx *out, tn_errmsg *msg);

/* ---- nng -------------------------------------------------------------------------------- */

/* TLS for tls+tcp:// URLs, with mutual authentication: the listening side requires the
 * dialer's certificate and verifies it against ca_file; the dialer verifies the listener's.
 * The strings are copied by the constructor. */
typedef struct tn_tx_tls {
    const char *ca_file;   /* PEM: the CA(s) a peer's certificate must chain to */
    const char *cert_file; /* PEM: the certificate this end presents */
    const char *key_file;  /* PEM: its private key, unencrypted */
    /* Dialer: the name the listener's certificate must carry (subjectAltName DNS or CN).
     * NULL: the URL's host when it is a DNS name. For an IP literal host and no
     * server_name only the chain is verified: mbedTLS 2.28, under nng here, does not
     * match IP subjectAltNames. */
    const char *server_name;
} tn_tx_tls;

/* The subject CN and OU of the (first) certificate in cert_file, NUL-terminated ("" when
 * absent; cut to the capacities). TN_ERR_INVAL naming the file when it does not parse. */
tn_err tn_tx_tls_cert_subject(const char *cert_file, char *cn, size_t cncap, char *ou,
                              size_t oucap, tn_errmsg *msg);

#define TN_TX_RECV_MAX_DEFAULT (16u << 20)

typedef struct tn_tx_nng_opts {
    bool sender;          /* a SENDER (push) or a RECEIVER (pull) */
    const tn_tx_tls *tls; /* NULL: no TLS; tls+tcp:// URLs are then refused */
    /* Largest message, in bytes. A receiver refuses a larger one (nng drops the
     * connection, which the peer redials); a sender refuses to send one (TN_ERR_TOOBIG).
     * Default TN_TX_RECV_MAX_DEFAULT. */
    size_t max_msg;
    int send_buf;     /* messages queued while the peer is slow or away; 1..8192, 1024 */
    int recv_buf;     /* messages nng queues before the callback takes them; 0..8192, 0 */
    int send_wait_ms; /* how long send may wait for room; 0 (default): TN_ERR_BUSY at once */
    int reconnect_min_ms; /* first redial after a failure; default 100 */
    int reconnect_max_ms; /* backoff cap; default 2000 */
    const char *name;     /* shown in logs ("master->w1"); copied; NULL: "tx" */
    /* Receiver: a token bucket per connection; messages beyond it are dropped, counted
     * (rate_dropped) and logged once a second. Bursts of up to 2 seconds' worth pass.
     * Defaults TN_TX_RATE_MSGS_DEFAULT and TN_TX_RATE_BYTES_DEFAULT; 0: no bound. */
    uint32_t rate_msgs;  /* messages per second */
    uint64_t rate_bytes; /* bytes per second */
    uint32_t max_conns;  /* receiver: connections at once; more are refused; 4096 */
} tn_tx_nng_opts;

/* Far above what a real peer sends (a worker at full speed sends a few thousand frames a
 * second; the raw nng message rate here is ~30k/s), far below what a flood costs. */
#define TN_TX_RATE_MSGS_DEFAULT  100000u
#define TN_TX_RATE_BYTES_DEFAULT (1ull << 30)

/* Whether the peer names the transport reports for tls+tcp are available: they are read
 * from nng's mbedTLS engine, whose layout is checked against nng 1.5.2 at first use.
 * When false, a TLS peer is authenticated (its chain is verified) but has no name. */
bool tn_tx_tls_names_available(void);

/* Defaults as documented above. */
void tn_tx_nng_opts_init(tn_tx_nng_opts *o, bool sender);

/* A new nng endpoint in *out (written only on success; the caller frees it with
 * tn_tx_free). fn/arg: the receive callback, required for a receiver, ignored for a
 * sender. Errors: TN_ERR_INVAL (bad options), TN_ERR_NOMEM, TN_ERR_IO (nng). */
tn_err tn_tx_nng_new_opts(const tn_tx_nng_opts *o, tn_tx_recv_fn fn, void *arg, tn_tx *out,
                          tn_errmsg *msg);
/* The same with default options. */
tn_err tn_tx_nng_new(bool sender, const tn_tx_tls *tls, tn_tx_recv_fn fn, void *arg, tn_tx *out,
                     tn_errmsg *msg);

/* What an nng endpoint saw. Connections are logged as they come and go (logfmt, comp=tx);
 * a TLS handshake that fails never becomes a connection, and nng 1.5 says nothing about it
 * but a counter on the listener or dialer: those counters are polled (4 times a second)
 * and each increase is logged with the URL, without the peer's address or the reason,
 * which nng 1.5 does not expose. */
typedef struct tn_tx_nng_stats {
    uint64_t connects;         /* connections established (pipes added) */
    uint64_t disconnects;      /* connections gone */
    uint64_t refused;          /* connections we closed: TLS peer not verified */
    uint64_t handshake_errors; /* TLS authentication failures nng counted on our endpoints */
    uint64_t oversized;        /* messages over max_msg dropped by us (inproc) */
    uint64_t sent;             /* messages accepted by send */
    uint64_t received;         /* messages passed to the callback */
    uint64_t renewals;         /* sender: sockets replaced after their connection was gone */
    uint64_t rate_dropped;     /* receiver: messages over a connection's rate bound */
    uint64_t peer_refused;     /* connections refused: ipc uid, too many connections */
    uint64_t redials;          /* sender: stopped dialers replaced (see watch_dialer) */
} tn_tx_nng_stats;

/* Fill *out; TN_ERR_INVAL when t is not an nng endpoint. Reads nng's counters now. */
tn_err tn_tx_nng_stats_get(tn_tx t, tn_tx_nng_stats *out);

/* ---- fault injection -------------------------------------------------------------------- */

/* Faults applied on send, decided by a PRNG seeded with `seed` and the index of the message
 * (the n-th accepted send): the same seed gives the same decisions for the same sequence. */
typedef struct tn_fault_opts {
    uint64_t seed;
    double drop;           /* probability a message is dropped (send still says TN_OK) */
    double dup;            /* ... that it is sent twice */
    double delay;          /* ... that it is held 1..max_delay_ms ms and sent from a thread */
    double reorder;        /* ... that it is held and sent right after the next message */
    uint32_t max_delay_ms; /* also how long a reorder hold waits for a next message; 50 */
} tn_fault_opts;

/* Parse "seed=42,drop=0.05,dup=0.05,delay=0.1,max_delay_ms=50,reorder=0.05" (any subset,
 * any order; unnamed fields are 0, max_delay_ms 50) into *out. The empty string is no
 * fault. TN_ERR_PARSE with a message naming the bad item. */
tn_err tn_fault_opts_parse(const char *s, tn_fault_opts *out, tn_errmsg *msg);

/* What the wrapper did. Once held messages are flushed, a loss-free inner transport
 * delivers sent - dropped + duplicated messages. */
typedef struct tn_fault_counters {
    uint64_t sent; /* sends accepted */
    uint64_t dropped;
    uint64_t duplicated;
    uint64_t delayed;
    uint64_t reordered;
    uint64_t forwarded; /* messages the inner transport accepted */
    uint64_t discarded; /* held messages lost: inner closed or wrapper freed first */
    uint64_t held;      /* messages held now (delayed or reordered, not sent yet) */
} tn_fault_counters;

/* Wrap inner in a fault-injecting endpoint in *out (written only on success). The wrapper
 * owns inner from then on: freeing it frees inner (also on failure: TN_ERR_NOMEM frees
 * inner). listen, dial, bound_url and receiving pass through; only send is faulted. */
tn_err tn_tx_fault_wrap(tn_tx inner, const tn_fault_opts *f, tn_tx *out);

/* For the daemons: wrap inner with the faults in $TERN_FAULTS, or hand inner back in *out
 * when the variable is unset or empty. On a parse error inner is untouched and still the
 * caller's. */
tn_err tn_tx_fault_from_env(tn_tx inner, tn_tx *out, tn_errmsg *msg);

/* The counters of a fault wrapper; false when t is not one. */
bool tn_tx_fault_counters(tn_tx t, tn_fault_counters *out);

/* Wait until the wrapper holds no message (all delayed and reordered ones were handed to
 * the inner transport), at most timeout_ms. A message held for a swap goes at once; delayed
 * ones leave when due. TN_ERR_TIMEOUT, TN_ERR_INVAL if not a wrapper. */
tn_err tn_tx_fault_flush(tn_tx t, int timeout_ms);

/* A PEM file (at most 1 MiB) into a NUL-terminated heap string; `what` names it in errors
 * ("CA", "certificate", "key"). Free a key's with tn_tls_free_secret, which wipes it. */
tn_err tn_tls_read_pem(const char *what, const char *path, char **out, tn_errmsg *msg);
void tn_tls_free_secret(char *s); /* accepts NULL */

#endif

/* The control protocol between the `tern` client and the daemons (over transport/rpc):
 * a request is a msgpack map of named fields, a reply another. Decoding is strict and
 * bounded; decoded strings point into the buffer they came from. */
#ifndef TN_CTL_H
#define TN_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "str.h"

#define TN_CTL_VERSION  1
#define TN_CTL_MAX_LIST 256

typedef struct tn_ctl_req {
    tn_str cmd;  /* "start", "ls", "status", "logs", ... */
    uint64_t id; /* workflow or task instance */
    uint32_t attempt;
    tn_str name;  /* workflow, task group or environment name */
    tn_str state; /* ls filter */
    tn_str mode;  /* start mode */
    tn_str file;  /* where a definition came from, for messages */
    tn_str bytes; /* a definition's canonical encoding, or an environment's text */
    tn_str actor; /* ignored: who sent a request is what its connection or token proves */
    tn_str token; /* a `tern token add` secret, when the connection alone does not say who */
    /* tls+tcp: the client's certificate (PEM), the time (unix ms) and its key's signature
     * over the request's encoding without sig (see tn_ctl_sign) */
    tn_str cert, sig;
    int64_t ts;
    bool dry_run;
    int64_t slots;
    uint64_t offset; /* logs */
    uint32_t nparams, nfrom;
    tn_str pkeys[TN_CTL_MAX_LIST], pvals[TN_CTL_MAX_LIST];
    tn_str from[TN_CTL_MAX_LIST];
} tn_ctl_req;

/* A reply's code saying "ask url instead" (a standby master names its leader). */
#define TN_CTL_REDIRECT 65

typedef struct tn_ctl_rep {
    bool ok;
    int code;        /* the client's exit status */
    tn_str text;     /* what a person reads */
    tn_str json;     /* what a script reads (--json) */
    tn_str data;     /* logs: a chunk */
    uint64_t offset; /* logs: where the next chunk starts */
    bool eof;        /* logs: nothing more for now */
    bool running;    /* logs: the task still runs (follow) */
    tn_str url;      /* logs: where to read them (a worker) */
} tn_ctl_rep;

/* Encode into out (appended). */
tn_err tn_ctl_req_encode(const tn_ctl_req *r, tn_buf *out);
tn_err tn_ctl_rep_encode(const tn_ctl_rep *r, tn_buf *out);
/* Decode; the struct is zeroed first; unknown keys are refused. */
tn_err tn_ctl_req_decode(const void *buf, size_t len, tn_ctl_req *r);
tn_err tn_ctl_rep_decode(const void *buf, size_t len, tn_ctl_rep *r);

/* Sign r as the holder of cert_file/key_file (PEM): sets r->cert, r->ts, r->sig, which
 * point into *keep (the caller frees it after encoding r). */
tn_err tn_ctl_sign(tn_ctl_req *r, const char *cert_file, const char *key_file, char **keep,
                   tn_errmsg *msg);
/* Check a signed request: its certificate chains to ca_file (and may be used for client
 * authentication), the signature over the request is its key's, and ts is within 5
 * minutes of now_ms. The certificate's CN and OU ("" when none) into cn and ou. */
tn_err tn_ctl_verify(const tn_ctl_req *r, const char *ca_file, int64_t now_ms, char *cn,
                     size_t cnlen, char *ou, size_t oulen, tn_errmsg *msg);

/* Escape n bytes of a peer's string for a log line or a table cell: quote, backslash and
 * control characters become \" \\ \n \r \t \xNN; the rest is copied. Writes at most
 * cap-1 bytes and a NUL (cut at a whole escape); returns the length written. */
size_t tn_ctl_escape(const char *s, size_t n, char *out, size_t cap);

#endif

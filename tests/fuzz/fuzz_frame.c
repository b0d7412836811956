/* libFuzzer target over the wire frame decoder (transport/proto.c): any bytes decode or
 * are refused with a message, a refused frame reaches no callback, every field of a
 * decoded message is readable, and each message re-encodes into a frame that decodes to
 * the same messages (same re-encoding). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_frame: %s\n", what);
    abort();
}

typedef struct seen {
    int pass; /* 1: collect, 2: compare */
    tn_buf enc[64];
    uint32_t n, at;
    char sender[TN_PROTO_ID_MAX + 1];
    unsigned sum; /* every byte read, so the reads are not optimised away */
} seen;

static void touch(seen *s, tn_str t)
{
    for (uint32_t i = 0; i < t.len; i++)
        s->sum += (unsigned char)t.p[i];
}

static void touch_pairs(seen *s, tn_pairs p)
{
    for (uint32_t i = 0; i < p.n; i++) {
        touch(s, p.v[i].key);
        touch(s, p.v[i].val);
    }
}

static void touch_msg(seen *s, const tn_msg *m)
{
    switch (m->type) {
    case TN_MSG_DISPATCH: {
        const tn_msg_dispatch *d = &m->dispatch;
        touch(s, d->name), touch(s, d->type), touch(s, d->command), touch(s, d->env_prelude);
        touch(s, d->worker_group), touch(s, d->user);
        touch_pairs(s, d->params), touch_pairs(s, d->noop_outputs);
        s->sum += (unsigned)(d->task + d->wf + d->attempt + d->timeout_ms + d->deadline_ns);
        break;
    }
    case TN_MSG_KILL: touch(s, m->kill.reason); break;
    case TN_MSG_ACCEPTED: touch(s, m->accepted.containment); break;
    case TN_MSG_RESULT: touch(s, m->result.reason), touch_pairs(s, m->result.outputs); break;
    case TN_MSG_KILL_RESULT:
        for (uint32_t i = 0; i < m->kill_result.signalled.n; i++)
            s->sum += (unsigned)m->kill_result.signalled.v[i];
        for (uint32_t i = 0; i < m->kill_result.survivors.n; i++)
            touch(s, m->kill_result.survivors.v[i].state);
        for (uint32_t i = 0; i < m->kill_result.hooks.n; i++) {
            touch(s, m->kill_result.hooks.v[i].id);
            touch(s, m->kill_result.hooks.v[i].command);
            touch(s, m->kill_result.hooks.v[i].outcome);
        }
        break;
    case TN_MSG_HEARTBEAT: {
        const tn_msg_heartbeat *h = &m->heartbeat;
        touch(s, h->worker), touch(s, h->listen_url), touch(s, h->ctl_url);
        touch(s, h->degraded);
        for (uint32_t i = 0; i < h->groups.n; i++)
            touch(s, h->groups.v[i]);
        for (uint32_t i = 0; i < h->gauges.n; i++)
            touch(s, h->gauges.v[i].key), s->sum += (unsigned)h->gauges.v[i].val;
        break;
    }
    case TN_MSG_RECONCILED:
        for (uint32_t i = 0; i < m->reconciled.running.n; i++)
            s->sum += m->reconciled.running.v[i].attempt;
        break;
    case TN_MSG_FENCED:
        touch(s, m->fenced.worker), touch(s, m->fenced.master);
        s->sum += (unsigned)(m->fenced.epoch + m->fenced.refused);
        break;
    default: break;
    }
}

static tn_err on_msg(void *arg, tn_str sender, const tn_msg *m)
{
    seen *s = arg;
    if (s->pass == 0)
        fail("a callback for a frame that does not decode");
    touch(s, sender);
    touch_msg(s, m);
    if (!tn_msg_name(m->type) || strcmp(tn_msg_name(m->type), "?") == 0)
        fail("a message of an unknown type was decoded");
    if (s->pass == 1) {
        if (s->n == 64)
            return TN_OK;
        if (tn_msg_encode(m, &s->enc[s->n]) != TN_OK)
            fail("a decoded message does not encode");
        s->n++;
        return TN_OK;
    }
    if (s->at >= s->n)
        fail("more messages after re-encoding");
    tn_buf b = {0};
    if (tn_msg_encode(m, &b) != TN_OK || b.size != s->enc[s->at].size ||
        memcmp(b.data, s->enc[s->at].data, b.size) != 0)
        fail("a re-decoded message encodes differently");
    tn_buf_free(&b);
    s->at++;
    return TN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    seen s = {0};
    tn_errmsg e = {{0}};
    s.pass = 1;
    tn_err err = tn_frame_decode(in, size, on_msg, &s, &e);
    if (err != TN_OK) {
        if (s.n != 0)
            fail("a refused frame reached the callback");
        if (!e.text[0])
            fail("a refused frame without a message");
        free(in);
        return 0;
    }
    tn_str snd, cl;
    if (tn_frame_header(in, size, &snd, &cl) != TN_OK)
        fail("the header of a decoded frame is refused");
    char cluster[TN_PROTO_CLUSTER_MAX + 1];
    if (cl.len > TN_PROTO_CLUSTER_MAX || snd.len == 0 || snd.len > TN_PROTO_ID_MAX)
        fail("header over its bounds");
    memcpy(s.sender, snd.p, snd.len);
    s.sender[snd.len] = 0;
    memcpy(cluster, cl.p, cl.len);
    cluster[cl.len] = 0;
    if (memchr(s.sender, 0, snd.len) == NULL && memchr(cluster, 0, cl.len) == NULL) {
        /* NUL-free ids: build the frame again from the re-encoded messages */
        tn_buf fb = {0};
        tn_frame f;
        if (tn_frame_begin_cluster(&f, &fb, s.sender, cluster) != TN_OK)
            fail("frame_begin refuses a decoded header");
        for (uint32_t i = 0; i < s.n; i++)
            if (tn_frame_add_encoded(&f, s.enc[i].data, s.enc[i].size) != TN_OK)
                fail("frame_add_encoded");
        if (tn_frame_end(&f) != TN_OK)
            fail("frame_end");
        s.pass = 2;
        if (tn_frame_decode(fb.data + f.start, fb.size - f.start, on_msg, &s, &e) != TN_OK)
            fail("a re-encoded frame does not decode");
        if (s.at != s.n)
            fail("a re-encoded frame has fewer messages");
        tn_buf_free(&fb);
    }
    for (uint32_t i = 0; i < s.n; i++)
        tn_buf_free(&s.enc[i]);
    free(in);
    return 0;
}

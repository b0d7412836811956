/* Tests of the master <-> worker codec: round trips of every message type at its edges,
 * big frames, a malformed corpus, agreement with msgpack-c, and the batching queue. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "proto.h"

/* ---- building messages ------------------------------------------------------------------ */

/* Memory for one test's strings and lists, freed together. */
typedef struct arena {
    void *p[256];
    int n;
} arena;

static void *amalloc(arena *a, size_t n)
{
    cr_assert(a->n < 256);
    void *p = calloc(1, n ? n : 1);
    cr_assert_not_null(p);
    a->p[a->n++] = p;
    return p;
}

static void afree(arena *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->p[i]);
    a->n = 0;
}

/* A string of n bytes of c (any byte value; not NUL-terminated on the wire). */
static tn_str rep(arena *a, size_t n, char c)
{
    char *s = amalloc(a, n);
    memset(s, c, n);
    return (tn_str){s, (uint32_t)n};
}

static tn_str S(const char *s)
{
    return (tn_str){s, (uint32_t)strlen(s)};
}

/* n pairs "k0000".."kNNNN" -> values of vlen bytes */
static tn_pairs pairs(arena *a, uint32_t n, uint32_t vlen)
{
    tn_pair *v = amalloc(a, n * sizeof(*v));
    char *keys = amalloc(a, (size_t)n * 8);
    for (uint32_t i = 0; i < n; i++) {
        int l = snprintf(keys + i * 8, 8, "k%04u", i);
        v[i].key = (tn_str){keys + i * 8, (uint32_t)l};
        v[i].val = rep(a, vlen, (char)('a' + i % 26));
    }
    return (tn_pairs){v, n};
}

/* n unique keys in one block: "key-00000" ... */
static tn_pairs many_pairs(arena *a, uint32_t n, uint32_t vlen)
{
    tn_pair *v = amalloc(a, n * sizeof(*v));
    char *keys = amalloc(a, (size_t)n * 12);
    tn_str val = rep(a, vlen, 'v');
    for (uint32_t i = 0; i < n; i++) {
        int l = snprintf(keys + i * 12, 12, "key-%05u", i);
        v[i].key = (tn_str){keys + i * 12, (uint32_t)l};
        v[i].val = val;
    }
    return (tn_pairs){v, n};
}

enum {
    V_MIN,
    V_MAX,
    V_TYPICAL
};

/* A message of `type` at the edges: V_MIN (zeros, empty strings and lists), V_MAX (largest
 * integers, strings and lists at their bounds) or V_TYPICAL. */
/* fill's KILL_RESULT: pids, survivors and kill hooks at the edges */
static void fill_kill_result(arena *a, tn_msg_kill_result *k, bool mx, bool mn, uint64_t u64,
                             uint32_t u32)
{
    k->report_id = u64;
    k->task = u64;
    k->attempt = u32;
    uint32_t n = mx ? TN_PROTO_PIDS_MAX : mn ? 0 : 3;
    int64_t *pids = amalloc(a, n * sizeof(*pids));
    tn_survivor *sv = amalloc(a, n * sizeof(*sv));
    for (uint32_t i = 0; i < n; i++) {
        pids[i] = mx ? INT64_MAX - i : 100 + i;
        sv[i].pid = pids[i];
        sv[i].state = !mx ? S("Z") : i % 2 ? S("D") : S("R (running)");
    }
    k->signalled = (tn_pids){pids, n};
    k->survivors = (tn_survivors){sv, n};
    uint32_t nh = mx ? TN_PROTO_HOOKS_MAX : mn ? 0 : 1;
    tn_hook_run *h = amalloc(a, nh * sizeof(*h));
    for (uint32_t i = 0; i < nh; i++)
        h[i] = mx ? (tn_hook_run){rep(a, TN_PROTO_HOOK_ID_MAX, 'i'),
                                  rep(a, TN_PROTO_REASON_MAX, 'c'),
                                  rep(a, TN_PROTO_OUTCOME_MAX, 'o')} :
                    (tn_hook_run){S("application_1_2"),
                                  S("yarn application -kill 'application_1_2'"), S("exit 0")};
    k->hooks = (tn_hook_runs){h, nh};
}

/* fill's HEARTBEAT: unique groups and gauges */
static void fill_heartbeat(arena *a, tn_msg_heartbeat *h, bool mx, bool mn, uint64_t u64,
                           uint32_t u32)
{
    h->worker = mx ? rep(a, TN_PROTO_ID_MAX, 'w') : S(mn ? "w" : "worker-1");
    h->listen_url = mx ? rep(a, TN_PROTO_URL_MAX, 'l') : S(mn ? "" : "tcp://10.0.0.2:7001");
    h->ctl_url = mx ? rep(a, TN_PROTO_URL_MAX, 'c') : S(mn ? "" : "ipc:///run/tern.ctl");
    uint32_t ng = mx ? TN_PROTO_GROUPS_MAX : mn ? 0 : 2;
    tn_str *g = amalloc(a, ng * sizeof(*g));
    char *gb = amalloc(a, (size_t)ng * TN_PROTO_ID_MAX);
    for (uint32_t i = 0; i < ng; i++) {
        uint32_t l = mx ? TN_PROTO_ID_MAX : 6;
        memset(gb + i * TN_PROTO_ID_MAX, 'g', l);
        /* a unique three-digit prefix */
        gb[i * TN_PROTO_ID_MAX] = (char)('0' + i / 100 % 10);
        gb[i * TN_PROTO_ID_MAX + 1] = (char)('0' + i / 10 % 10);
        gb[i * TN_PROTO_ID_MAX + 2] = (char)('0' + i % 10);
        g[i] = (tn_str){gb + i * TN_PROTO_ID_MAX, l};
    }
    h->groups = (tn_strs){g, ng};
    h->slots = u32;
    h->running = mx ? UINT32_MAX : mn ? 0 : 1;
    h->load_milli = u32;
    h->mem_free = u64;
    h->mem_reserve = u64;
    uint32_t nga = mx ? TN_PROTO_GAUGES_MAX : mn ? 0 : 1;
    tn_gauge *gv = amalloc(a, nga * sizeof(*gv));
    char *kb = amalloc(a, (size_t)nga * TN_PROTO_KEY_MAX);
    for (uint32_t i = 0; i < nga; i++) {
        uint32_t l = mx ? TN_PROTO_KEY_MAX : 8;
        memset(kb + i * TN_PROTO_KEY_MAX, 'q', l);
        for (int d = 3; d >= 0; d--) /* a unique four-digit prefix */
            kb[i * TN_PROTO_KEY_MAX + (uint32_t)(3 - d)] = (char)('0' + (i / (d == 3 ? 1000 :
                                                                              d == 2 ? 100 :
                                                                              d == 1 ? 10 :
                                                                                       1)) %
                                                                            10);
        gv[i] = (tn_gauge){{kb + i * TN_PROTO_KEY_MAX, l}, mx ? UINT64_MAX - i : i};
    }
    h->gauges = (tn_gauges){gv, nga};
    h->epoch = u64;
    h->degraded = mx ? rep(a, TN_PROTO_REASON_MAX, 'd') : S(mn ? "" : "spawn failed: x");
    h->degraded_at = mx ? INT64_MAX : mn ? 0 : 1795000000123456789ll;
}

static void fill(arena *a, tn_msg *m, unsigned type, int v)
{
    memset(m, 0, sizeof(*m));
    m->type = (tn_msg_type)type;
    bool mx = v == V_MAX, mn = v == V_MIN;
    uint64_t u64 = mx ? UINT64_MAX : mn ? 0 : 4242;
    uint32_t u32 = mx ? UINT32_MAX : mn ? 0 : 3;
    switch (type) {
    case TN_MSG_DISPATCH: {
        tn_msg_dispatch *d = &m->dispatch;
        d->task = u64;
        d->wf = mx ? UINT64_MAX - 1 : u64 / 2;
        d->attempt = u32;
        d->name = mx ? rep(a, TN_PROTO_ID_MAX, 'n') : S(mn ? "x" : "extract");
        d->type = mx ? rep(a, TN_PROTO_TYPE_MAX, 't') : S(mn ? "noop" : "shell");
        d->command = mx ? rep(a, TN_PROTO_COMMAND_MAX, 'c') : S(mn ? "" : "echo hi; exit 0");
        d->env_prelude = mx ? rep(a, TN_PROTO_ENV_MAX, 'e') : S(mn ? "" : "export A=1");
        d->params = mx ? many_pairs(a, TN_PROTO_PAIRS_MAX, 100) :
                    mn ? (tn_pairs){NULL, 0} :
                         pairs(a, 3, 5);
        d->worker_group = mx ? rep(a, TN_PROTO_ID_MAX, 'g') : S("default");
        d->timeout_ms = u64;
        d->kill_grace_ms = mx ? UINT64_MAX : mn ? 0 : 5000;
        d->memory_max = u64;
        d->cpu_max_milli = u64;
        d->user = mx ? rep(a, TN_PROTO_ID_MAX, 'u') : S(mn ? "" : "etl");
        d->noop_success = !mn;
        d->noop_duration_ms = u64;
        d->noop_outputs = mx ? many_pairs(a, 10, TN_PROTO_VALUE_MAX) :
                          mn ? (tn_pairs){NULL, 0} :
                               pairs(a, 2, 3);
        d->deadline_ns = mx ? INT64_MAX : mn ? INT64_MIN : 1795000000123456789ll;
        d->worker_epoch = u64;
        d->pids_max = mx ? UINT32_MAX : mn ? 0 : 4096;
        break;
    }
    case TN_MSG_KILL:
        m->kill.task = u64;
        m->kill.attempt = u32;
        m->kill.grace_ms = u64;
        m->kill.reason = mx ? rep(a, TN_PROTO_REASON_MAX, 'r') : S(mn ? "" : "stopped by user");
        break;
    case TN_MSG_PERSISTED:
        m->persisted.report_id = u64;
        m->persisted.task = u64;
        m->persisted.attempt = u32;
        break;
    case TN_MSG_RECONCILE: m->reconcile.epoch = u64; break;
    case TN_MSG_ACCEPTED:
        m->accepted.report_id = u64;
        m->accepted.task = u64;
        m->accepted.attempt = u32;
        m->accepted.pid = mx ? INT64_MAX : mn ? 0 : 31337;
        m->accepted.containment =
            mx ? rep(a, TN_PROTO_CONTAINMENT_MAX, 'k') : S(mn ? "" : "cgroup");
        break;
    case TN_MSG_RESULT:
        m->result.report_id = u64;
        m->result.task = u64;
        m->result.attempt = u32;
        m->result.success = mx;
        m->result.exit_code = mx ? INT64_MAX : mn ? INT64_MIN : -9;
        m->result.reason = mx ? rep(a, TN_PROTO_REASON_MAX, 'r') : S(mn ? "" : "killed");
        m->result.outputs = mx ? many_pairs(a, TN_PROTO_PAIRS_MAX, 0) :
                            mn ? (tn_pairs){NULL, 0} :
                                 pairs(a, 1, 8);
        break;
    case TN_MSG_KILL_RESULT: fill_kill_result(a, &m->kill_result, mx, mn, u64, u32); break;
    case TN_MSG_HEARTBEAT: fill_heartbeat(a, &m->heartbeat, mx, mn, u64, u32); break;
    case TN_MSG_RECONCILED: {
        uint32_t n = mx ? TN_PROTO_RUNNING_MAX : mn ? 0 : 2;
        tn_task_attempt *ta = amalloc(a, n * sizeof(*ta));
        for (uint32_t i = 0; i < n; i++)
            ta[i] = (tn_task_attempt){mx ? UINT64_MAX - i : i + 1, mx ? UINT32_MAX : i};
        m->reconciled.epoch = u64;
        m->reconciled.running = (tn_task_attempts){ta, n};
        break;
    }
    case TN_MSG_FENCED:
        m->fenced.worker = mx ? rep(a, TN_PROTO_ID_MAX, 'w') : S(mn ? "w" : "w1");
        m->fenced.epoch = u64;
        m->fenced.refused = mx ? UINT64_MAX : mn ? 0 : 3;
        m->fenced.master = mx ? rep(a, TN_PROTO_ID_MAX, 'm') : S(mn ? "m" : "master:m1");
        break;
    }
}

static void buf_free(tn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->size = b->alloc = 0;
}

/* The encoding of one message, for comparisons. */
static void encode1(const tn_msg *m, tn_buf *out)
{
    out->size = 0;
    cr_assert_eq(tn_msg_encode(m, out), TN_OK, "encode %s", tn_msg_name(m->type));
}

/* ---- decode callbacks ------------------------------------------------------------------- */

/* Each decoded message must re-encode to the bytes of the expected one: every field
 * survived the trip. */
typedef struct expect {
    const tn_msg *msgs;
    uint32_t n, seen;
    const char *sender;
} expect;

static tn_err cb_expect(void *arg, tn_str sender, const tn_msg *m)
{
    expect *x = arg;
    cr_assert(x->seen < x->n, "more messages than sent");
    cr_assert(tn_str_eq(sender, x->sender));
    tn_buf a = {0}, b = {0};
    encode1(&x->msgs[x->seen], &a);
    encode1(m, &b);
    cr_assert_eq(a.size, b.size, "message %u (%s): %zu bytes re-encoded, %zu sent", x->seen,
                 tn_msg_name(m->type), b.size, a.size);
    cr_assert(memcmp(a.data, b.data, a.size) == 0, "message %u (%s) differs", x->seen,
              tn_msg_name(m->type));
    buf_free(&a);
    buf_free(&b);
    x->seen++;
    return TN_OK;
}

static void frame_of(const tn_msg *msgs, uint32_t n, const char *sender, tn_buf *out)
{
    tn_frame f;
    cr_assert_eq(tn_frame_begin(&f, out, sender), TN_OK);
    for (uint32_t i = 0; i < n; i++)
        cr_assert_eq(tn_frame_add(&f, &msgs[i]), TN_OK, "add %s", tn_msg_name(msgs[i].type));
    cr_assert_eq(tn_frame_end(&f), TN_OK);
}

/* With TN_FUZZ_SEEDS=DIR set, the inputs below are also written to DIR/NAME, to seed the
 * fuzzer's corpus (tests/fuzz/corpus). */
static void seed_dump(const char *name, const void *p, size_t n)
{
    const char *dir = getenv("TN_FUZZ_SEEDS");
    char path[512];
    if (!dir || snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return;
    FILE *f = fopen(path, "we");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

static void round_trip(const tn_msg *msgs, uint32_t n)
{
    tn_buf b = {0};
    frame_of(msgs, n, "master:m1", &b);
    char name[32];
    snprintf(name, sizeof(name), "test-%s-%u", tn_msg_name(msgs[0].type),
             msgs[0].type == 0 ? 0 : (unsigned)b.size);
    seed_dump(name, b.data, b.size);
    expect x = {msgs, n, 0, "master:m1"};
    tn_errmsg em = {{0}};
    tn_err e = tn_frame_decode(b.data, b.size, cb_expect, &x, &em);
    cr_assert_eq(e, TN_OK, "decode: %s", em.text);
    cr_assert_eq(x.seen, n);
    buf_free(&b);
}

/* ---- round trips ------------------------------------------------------------------------ */

Test(proto, round_trip_every_type_at_its_edges)
{
    for (unsigned t = 1; t <= TN_MSG__MAX; t++) {
        for (int v = V_MIN; v <= V_TYPICAL; v++) {
            arena a = {{0}, 0};
            tn_msg m;
            fill(&a, &m, t, v);
            round_trip(&m, 1);
            afree(&a);
        }
    }
}

/* Explicit checks of a few fields, besides the re-encoding comparison. */
static tn_err cb_fields(void *arg, tn_str sender, const tn_msg *m)
{
    int *n = arg;
    switch (m->type) {
    case TN_MSG_DISPATCH:
        cr_assert_eq(m->dispatch.task, UINT64_MAX);
        cr_assert_eq(m->dispatch.attempt, UINT32_MAX);
        cr_assert_eq(m->dispatch.command.len, TN_PROTO_COMMAND_MAX);
        cr_assert_eq(m->dispatch.command.p[TN_PROTO_COMMAND_MAX - 1], 'c');
        cr_assert_eq(m->dispatch.params.n, TN_PROTO_PAIRS_MAX);
        cr_assert(tn_str_eq(m->dispatch.params.v[999].key, "key-00999"));
        cr_assert_eq(m->dispatch.deadline_ns, INT64_MAX);
        cr_assert_eq(m->dispatch.worker_epoch, UINT64_MAX);
        cr_assert_eq(m->dispatch.pids_max, UINT32_MAX);
        cr_assert(m->dispatch.noop_success);
        break;
    case TN_MSG_RESULT:
        cr_assert_eq(m->result.exit_code, INT64_MIN);
        cr_assert_eq(m->result.reason.len, 0);
        cr_assert_eq(m->result.outputs.n, 0);
        cr_assert(!m->result.success);
        break;
    case TN_MSG_KILL_RESULT:
        cr_assert_eq(m->kill_result.signalled.n, TN_PROTO_PIDS_MAX);
        cr_assert_eq(m->kill_result.signalled.v[0], INT64_MAX);
        cr_assert_eq(m->kill_result.survivors.n, TN_PROTO_PIDS_MAX);
        cr_assert(tn_str_eq(m->kill_result.survivors.v[1].state, "D"));
        cr_assert_eq(m->kill_result.hooks.n, TN_PROTO_HOOKS_MAX);
        cr_assert_eq(m->kill_result.hooks.v[63].command.len, TN_PROTO_REASON_MAX);
        cr_assert_eq(m->kill_result.hooks.v[63].outcome.p[TN_PROTO_OUTCOME_MAX - 1], 'o');
        break;
    default: cr_assert_fail("unexpected %s", tn_msg_name(m->type));
    }
    (*n)++;
    return TN_OK;
}

Test(proto, fields_decoded)
{
    arena a = {{0}, 0};
    tn_msg m[3];
    fill(&a, &m[0], TN_MSG_DISPATCH, V_MAX);
    fill(&a, &m[1], TN_MSG_RESULT, V_MIN);
    fill(&a, &m[2], TN_MSG_KILL_RESULT, V_MAX);
    tn_buf b = {0};
    frame_of(m, 3, "worker:w1", &b);
    int n = 0;
    cr_assert_eq(tn_frame_decode(b.data, b.size, cb_fields, &n, NULL), TN_OK);
    cr_assert_eq(n, 3);
    buf_free(&b);
    afree(&a);
}

static tn_err cb_fenced(void *arg, tn_str sender, const tn_msg *m)
{
    int *n = arg;
    cr_assert(tn_str_eq(sender, "worker:w9"));
    cr_assert_eq(m->type, TN_MSG_FENCED);
    cr_assert(tn_str_eq(m->fenced.worker, "w9"));
    cr_assert_eq(m->fenced.epoch, 6);
    cr_assert_eq(m->fenced.refused, 41);
    cr_assert(tn_str_eq(m->fenced.master, "master:m1"));
    cr_assert(!tn_msg_to_worker(m->type), "FENCED goes to a master");
    (*n)++;
    return TN_OK;
}

Test(proto, fenced_fields_decoded)
{
    tn_msg m = {.type = TN_MSG_FENCED};
    m.fenced = (tn_msg_fenced){TN_STR("w9"), 6, 41, TN_STR("master:m1")};
    cr_assert_str_eq(tn_msg_name(TN_MSG_FENCED), "FENCED");
    tn_buf b = {0};
    frame_of(&m, 1, "worker:w9", &b);
    int n = 0;
    cr_assert_eq(tn_frame_decode(b.data, b.size, cb_fenced, &n, NULL), TN_OK);
    cr_assert_eq(n, 1);
    /* every shorter read of it is refused, and nothing is handed over */
    for (size_t len = 0; len < b.size; len++) {
        char *cut = malloc(len ? len : 1);
        memcpy(cut, b.data, len);
        cr_expect_neq(tn_frame_decode(cut, len, cb_fenced, &n, NULL), TN_OK, "%zu bytes", len);
        free(cut);
    }
    cr_assert_eq(n, 1);
    buf_free(&b);
}

Test(proto, frame_with_many_messages)
{
    enum {
        N = 20000
    };
    arena a = {{0}, 0};
    tn_msg *m = amalloc(&a, N * sizeof(*m));
    tn_msg proto[TN_MSG__MAX];
    for (unsigned t = 1; t <= TN_MSG__MAX; t++)
        fill(&a, &proto[t - 1], t, V_TYPICAL);
    for (uint32_t i = 0; i < N; i++) {
        m[i] = proto[i % TN_MSG__MAX];
        if (m[i].type == TN_MSG_PERSISTED)
            m[i].persisted.report_id = i;
    }
    round_trip(m, N);
    afree(&a);
}

Test(proto, empty_frame)
{
    tn_buf b = {0};
    frame_of(NULL, 0, "m", &b);
    expect x = {NULL, 0, 0, "m"};
    cr_assert_eq(tn_frame_decode(b.data, b.size, cb_expect, &x, NULL), TN_OK);
    buf_free(&b);
}

Test(proto, encoder_refuses_what_the_decoder_would)
{
    arena a = {{0}, 0};
    tn_buf b = {0};
    tn_msg m;
#define REFUSE(t, stmt, err)                                   \
    do {                                                       \
        fill(&a, &m, t, V_TYPICAL);                            \
        stmt;                                                  \
        b.size = 0;                                            \
        cr_assert_eq(tn_msg_encode(&m, &b), err, "%s", #stmt); \
        cr_assert_eq(b.size, 0, "nothing written: %s", #stmt); \
    } while (0)
    REFUSE(TN_MSG_DISPATCH, m.dispatch.name = rep(&a, TN_PROTO_ID_MAX + 1, 'n'), TN_ERR_TOOBIG);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.name = S(""), TN_ERR_INVAL);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.type = rep(&a, TN_PROTO_TYPE_MAX + 1, 't'),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.command = rep(&a, TN_PROTO_COMMAND_MAX + 1, 'c'),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.env_prelude = rep(&a, TN_PROTO_ENV_MAX + 1, 'e'),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.params = many_pairs(&a, TN_PROTO_PAIRS_MAX + 1, 1),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.user = rep(&a, TN_PROTO_ID_MAX + 1, 'u'), TN_ERR_TOOBIG);
    REFUSE(TN_MSG_DISPATCH, m.dispatch.worker_group = S(""), TN_ERR_INVAL);
    REFUSE(TN_MSG_DISPATCH, ((tn_pair *)m.dispatch.params.v)[1].key = S("k0000"), TN_ERR_INVAL);
    REFUSE(TN_MSG_DISPATCH, ((tn_pair *)m.dispatch.params.v)[1].key = S(""), TN_ERR_INVAL);
    REFUSE(TN_MSG_DISPATCH,
           ((tn_pair *)m.dispatch.params.v)[1].val = rep(&a, TN_PROTO_VALUE_MAX + 1, 'v'),
           TN_ERR_TOOBIG);
    /* Within every bound but over the message bound: 1000 values of 64 KiB. */
    REFUSE(TN_MSG_DISPATCH, m.dispatch.params = many_pairs(&a, 1000, TN_PROTO_VALUE_MAX),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_KILL, m.kill.reason = rep(&a, TN_PROTO_REASON_MAX + 1, 'r'), TN_ERR_TOOBIG);
    REFUSE(TN_MSG_ACCEPTED, m.accepted.pid = -1, TN_ERR_INVAL);
    REFUSE(TN_MSG_ACCEPTED, m.accepted.containment = rep(&a, 33, 'k'), TN_ERR_TOOBIG);
    REFUSE(TN_MSG_KILL_RESULT, ((int64_t *)m.kill_result.signalled.v)[0] = 0, TN_ERR_INVAL);
    REFUSE(TN_MSG_KILL_RESULT, ((tn_survivor *)m.kill_result.survivors.v)[0].state = S(""),
           TN_ERR_INVAL);
    REFUSE(TN_MSG_KILL_RESULT, ((tn_hook_run *)m.kill_result.hooks.v)[0].id = S(""),
           TN_ERR_INVAL);
    REFUSE(TN_MSG_KILL_RESULT, ((tn_hook_run *)m.kill_result.hooks.v)[0].outcome = S(""),
           TN_ERR_INVAL);
    REFUSE(TN_MSG_KILL_RESULT,
           ((tn_hook_run *)m.kill_result.hooks.v)[0].id =
               rep(&a, TN_PROTO_HOOK_ID_MAX + 1, 'i'),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_KILL_RESULT,
           ((tn_hook_run *)m.kill_result.hooks.v)[0].command =
               rep(&a, TN_PROTO_REASON_MAX + 1, 'c'),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_KILL_RESULT, m.kill_result.hooks.n = TN_PROTO_HOOKS_MAX + 1, TN_ERR_TOOBIG);
    REFUSE(TN_MSG_HEARTBEAT, m.heartbeat.worker = S(""), TN_ERR_INVAL);
    REFUSE(TN_MSG_HEARTBEAT, m.heartbeat.listen_url = rep(&a, TN_PROTO_URL_MAX + 1, 'l'),
           TN_ERR_TOOBIG);
    REFUSE(TN_MSG_HEARTBEAT, ((tn_str *)m.heartbeat.groups.v)[1] = m.heartbeat.groups.v[0],
           TN_ERR_INVAL);
    REFUSE(TN_MSG_HEARTBEAT, m.heartbeat.groups.n = TN_PROTO_GROUPS_MAX + 1, TN_ERR_TOOBIG);
    REFUSE(TN_MSG_RECONCILED, m.reconciled.running.n = TN_PROTO_RUNNING_MAX + 1, TN_ERR_TOOBIG);
    REFUSE(TN_MSG_FENCED, m.fenced.worker = S(""), TN_ERR_INVAL);
    REFUSE(TN_MSG_FENCED, m.fenced.master = S(""), TN_ERR_INVAL);
    REFUSE(TN_MSG_FENCED, m.fenced.master = rep(&a, TN_PROTO_ID_MAX + 1, 'm'), TN_ERR_TOOBIG);
    REFUSE(TN_MSG_FENCED, m.fenced.worker = rep(&a, TN_PROTO_ID_MAX + 1, 'w'), TN_ERR_TOOBIG);
    REFUSE(TN_MSG_PERSISTED, m.type = (tn_msg_type)11, TN_ERR_INVAL);
    REFUSE(TN_MSG_PERSISTED, m.type = (tn_msg_type)0, TN_ERR_INVAL);
#undef REFUSE
    tn_frame f;
    b.size = 0;
    cr_assert_eq(tn_frame_begin(&f, &b, ""), TN_ERR_INVAL);
    char long_sender[TN_PROTO_ID_MAX + 2];
    memset(long_sender, 's', sizeof(long_sender) - 1);
    long_sender[TN_PROTO_ID_MAX + 1] = '\0';
    cr_assert_eq(tn_frame_begin(&f, &b, long_sender), TN_ERR_TOOBIG);
    long_sender[TN_PROTO_ID_MAX] = '\0';
    cr_assert_eq(tn_frame_begin(&f, &b, long_sender), TN_OK);
    buf_free(&b);
    afree(&a);
}

Test(proto, frame_bound_keeps_the_frame_valid)
{
    /* 17 messages of ~1 MiB exceed the 16 MiB frame: the one that does not fit is refused
     * and the frame still decodes with the 16 before it. */
    arena a = {{0}, 0};
    tn_msg m;
    fill(&a, &m, TN_MSG_DISPATCH, V_TYPICAL);
    m.dispatch.command = rep(&a, TN_PROTO_COMMAND_MAX, 'c');
    tn_buf b = {0};
    tn_frame f;
    cr_assert_eq(tn_frame_begin(&f, &b, "m"), TN_OK);
    uint32_t added = 0;
    tn_err e;
    while ((e = tn_frame_add(&f, &m)) == TN_OK)
        added++;
    cr_assert_eq(e, TN_ERR_TOOBIG);
    cr_assert_eq(added, 15);
    cr_assert_leq(b.size, TN_PROTO_FRAME_MAX);
    tn_frame_end(&f);
    tn_msg *all = amalloc(&a, added * sizeof(*all));
    for (uint32_t i = 0; i < added; i++)
        all[i] = m;
    expect x = {all, added, 0, "m"};
    cr_assert_eq(tn_frame_decode(b.data, b.size, cb_expect, &x, NULL), TN_OK);
    cr_assert_eq(x.seen, added);
    buf_free(&b);
    afree(&a);
}

/* ---- agreement with msgpack-c ----------------------------------------------------------- */

Test(proto, msgpack_c_reads_our_frames)
{
    arena a = {{0}, 0};
    tn_msg m[TN_MSG__MAX];
    for (unsigned t = 1; t <= TN_MSG__MAX; t++)
        fill(&a, &m[t - 1], t,
             t == TN_MSG_KILL_RESULT || t == TN_MSG_HEARTBEAT ? V_MAX : V_TYPICAL);
    tn_buf b = {0};
    frame_of(m, TN_MSG__MAX, "worker:w7", &b);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&u, b.data, b.size, &off), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, b.size, "one object, no trailing bytes");
    msgpack_object root = u.data;
    cr_assert_eq(root.type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(root.via.array.size, 5);
    msgpack_object *r = root.via.array.ptr;
    cr_assert_eq(r[2].type, MSGPACK_OBJECT_STR, "the cluster");
    cr_assert_eq(r[3].type, MSGPACK_OBJECT_POSITIVE_INTEGER, "the epoch");
    cr_assert_eq(r[3].via.u64, 0);
    r[2] = r[4]; /* the messages, where the rest of this test reads them */
    cr_assert_eq(r[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(r[0].via.u64, TN_PROTO_VERSION);
    cr_assert_eq(r[1].type, MSGPACK_OBJECT_STR);
    cr_assert_eq(r[1].via.str.size, 9);
    cr_assert(memcmp(r[1].via.str.ptr, "worker:w7", 9) == 0);
    cr_assert_eq(r[2].type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(r[2].via.array.size, TN_MSG__MAX);
    static const uint32_t lens[] = {0, 21, 5, 4, 2, 6, 8, 7, 14, 3, 5};
    for (unsigned i = 0; i < TN_MSG__MAX; i++) {
        msgpack_object *o = &r[2].via.array.ptr[i];
        cr_assert_eq(o->type, MSGPACK_OBJECT_ARRAY);
        cr_assert_eq(o->via.array.ptr[0].via.u64, i + 1);
        cr_assert_eq(o->via.array.size, lens[i + 1], "%s", tn_msg_name(i + 1));
    }
    /* DISPATCH (typical): fields where msgpack-c sees them */
    msgpack_object *d = r[2].via.array.ptr[0].via.array.ptr;
    cr_assert_eq(d[1].via.u64, 4242);
    cr_assert_eq(d[4].type, MSGPACK_OBJECT_STR);
    cr_assert(d[4].via.str.size == 7 && memcmp(d[4].via.str.ptr, "extract", 7) == 0);
    cr_assert_eq(d[8].type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(d[8].via.map.size, 3);
    cr_assert_eq(d[15].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_eq(d[18].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq((int64_t)d[18].via.u64, 1795000000123456789ll);
    cr_assert_eq(d[19].via.u64, 4242, "worker_epoch");
    cr_assert_eq(d[20].via.u64, 4096, "pids_max, last");
    /* KILL_RESULT (max): 100k pids, survivors as [pid, state] */
    msgpack_object *k = r[2].via.array.ptr[6].via.array.ptr;
    cr_assert_eq(k[4].via.array.size, TN_PROTO_PIDS_MAX);
    cr_assert_eq(k[5].via.array.ptr[1].via.array.size, 2);
    cr_assert_eq(k[5].via.array.ptr[1].via.array.ptr[1].type, MSGPACK_OBJECT_STR);
    cr_assert_eq(k[6].via.array.size, TN_PROTO_HOOKS_MAX, "hooks, last");
    cr_assert_eq(k[6].via.array.ptr[0].via.array.size, 3, "[id, command, outcome]");
    /* RESULT (typical): negative exit code */
    msgpack_object *res = r[2].via.array.ptr[5].via.array.ptr;
    cr_assert_eq(res[5].type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    cr_assert_eq(res[5].via.i64, -9);
    msgpack_unpacked_destroy(&u);
    buf_free(&b);
    afree(&a);
}

/* A frame written by msgpack-c's packer, with encodings our encoder never uses (fixed-width
 * uint64 for small numbers, str8 for short strings, array16): still the same message. */
static tn_err cb_kill(void *arg, tn_str sender, const tn_msg *m)
{
    int *n = arg;
    cr_assert_eq(m->type, TN_MSG_KILL);
    cr_assert_eq(m->kill.task, 7);
    cr_assert_eq(m->kill.attempt, 2);
    cr_assert_eq(m->kill.grace_ms, 5000);
    cr_assert(tn_str_eq(m->kill.reason, "timeout"));
    cr_assert(tn_str_eq(sender, "master"));
    (*n)++;
    return TN_OK;
}

Test(proto, we_read_msgpack_c_frames)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_fix_uint64(&pk, TN_PROTO_VERSION);
    msgpack_pack_str(&pk, 6);
    msgpack_pack_str_body(&pk, "master", 6);
    msgpack_sbuffer_write(&sb,
                          "\xd9\x02"
                          "c1",
                          4);        /* the cluster, as str8 */
    msgpack_pack_fix_uint32(&pk, 3); /* the epoch */
    /* array16 header by hand: 2 messages */
    msgpack_sbuffer_write(&sb, "\xdc\x00\x02", 3);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_array(&pk, 5);
        msgpack_pack_fix_uint8(&pk, TN_MSG_KILL);
        msgpack_pack_fix_uint64(&pk, 7);
        msgpack_pack_fix_int32(&pk, 2);
        msgpack_pack_uint16(&pk, 5000);
        msgpack_sbuffer_write(&sb, "\xd9\x07timeout", 9); /* str8 */
    }
    int n = 0;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_frame_decode(sb.data, sb.size, cb_kill, &n, &em), TN_OK, "%s", em.text);
    cr_assert_eq(n, 2);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- malformed input -------------------------------------------------------------------- */

static tn_err cb_never(void *arg, tn_str sender, const tn_msg *m)
{
    cr_assert_fail("callback on a bad frame (%s)", tn_msg_name(m->type));
    return TN_OK;
}

/* Every pointer a decoded message holds lies inside the frame, or in the decoder's lists. */
typedef struct bounds {
    const char *lo, *hi;
    int msgs;
} bounds;

static void in_frame(const bounds *b, tn_str s)
{
    if (s.len == 0)
        return;
    cr_assert(s.p >= b->lo && s.p + s.len <= b->hi, "string outside the frame");
}

static void pairs_in(const bounds *b, tn_pairs p)
{
    for (uint32_t i = 0; i < p.n; i++) {
        in_frame(b, p.v[i].key);
        in_frame(b, p.v[i].val);
    }
}

static tn_err cb_bounds(void *arg, tn_str sender, const tn_msg *m)
{
    bounds *b = arg;
    in_frame(b, sender);
    switch (m->type) {
    case TN_MSG_DISPATCH:
        in_frame(b, m->dispatch.name);
        in_frame(b, m->dispatch.type);
        in_frame(b, m->dispatch.command);
        in_frame(b, m->dispatch.env_prelude);
        in_frame(b, m->dispatch.worker_group);
        in_frame(b, m->dispatch.user);
        pairs_in(b, m->dispatch.params);
        pairs_in(b, m->dispatch.noop_outputs);
        break;
    case TN_MSG_KILL: in_frame(b, m->kill.reason); break;
    case TN_MSG_ACCEPTED: in_frame(b, m->accepted.containment); break;
    case TN_MSG_RESULT:
        in_frame(b, m->result.reason);
        pairs_in(b, m->result.outputs);
        break;
    case TN_MSG_KILL_RESULT:
        for (uint32_t i = 0; i < m->kill_result.survivors.n; i++)
            in_frame(b, m->kill_result.survivors.v[i].state);
        break;
    case TN_MSG_HEARTBEAT:
        in_frame(b, m->heartbeat.worker);
        in_frame(b, m->heartbeat.listen_url);
        in_frame(b, m->heartbeat.ctl_url);
        for (uint32_t i = 0; i < m->heartbeat.groups.n; i++)
            in_frame(b, m->heartbeat.groups.v[i]);
        for (uint32_t i = 0; i < m->heartbeat.gauges.n; i++)
            in_frame(b, m->heartbeat.gauges.v[i].key);
        in_frame(b, m->heartbeat.degraded);
        break;
    default: break;
    }
    b->msgs++;
    return TN_OK;
}

/* A frame holding one typical message of every type. */
static void every_type_frame(arena *a, tn_buf *b)
{
    tn_msg m[TN_MSG__MAX];
    for (unsigned t = 1; t <= TN_MSG__MAX; t++)
        fill(a, &m[t - 1], t, V_TYPICAL);
    frame_of(m, TN_MSG__MAX, "worker:w1", b);
}

Test(proto, every_truncation_is_refused)
{
    arena a = {{0}, 0};
    tn_buf b = {0};
    every_type_frame(&a, &b);
    seed_dump("test-every-type", b.data, b.size);
    for (size_t len = 0; len < b.size; len++) {
        /* a copy of exactly len bytes, so the sanitizer sees any read past the end */
        char *cut = malloc(len ? len : 1);
        if (len)
            memcpy(cut, b.data, len);
        tn_err e = tn_frame_decode(cut, len, cb_never, NULL, NULL);
        cr_assert_eq(e, TN_ERR_TRUNCATED, "length %zu of %zu: %s", len, b.size, tn_errname(e));
        free(cut);
    }
    buf_free(&b);
    afree(&a);
}

Test(proto, bit_flips_never_break_bounds)
{
    arena a = {{0}, 0};
    tn_buf b = {0};
    every_type_frame(&a, &b);
    char *copy = malloc(b.size);
    int ok = 0, refused = 0;
    for (size_t i = 0; i < b.size; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, b.data, b.size);
            copy[i] ^= (char)(1 << bit);
            bounds bd = {copy, copy + b.size, 0};
            tn_err e = tn_frame_decode(copy, b.size, cb_bounds, &bd, NULL);
            if (e == TN_OK) {
                ok++;
            } else {
                refused++;
                cr_assert_eq(bd.msgs, 0, "a refused frame reached the callback");
                cr_assert(e > TN_OK && e < TN_ERR__COUNT);
            }
        }
    }
    cr_assert_gt(refused, 0);
    cr_assert_gt(ok, 0); /* flips inside string bodies decode to other valid strings */
    free(copy);
    buf_free(&b);
    afree(&a);
}

/* Hand-written bad frames. */
typedef struct raw {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} raw;

static void w(raw *r, const void *p, size_t n)
{
    msgpack_sbuffer_write(&r->sb, p, n);
}
static void ws(raw *r, const char *s)
{
    msgpack_pack_str(&r->pk, strlen(s));
    msgpack_pack_str_body(&r->pk, s, strlen(s));
}
static void wu(raw *r, uint64_t v)
{
    msgpack_pack_uint64(&r->pk, v);
}
static void wa(raw *r, uint32_t n)
{
    msgpack_pack_array(&r->pk, n);
}
/* [version, "m", "", [ ...n messages follow */
static void head(raw *r, uint32_t n)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    wa(r, n);
}
/* a valid KILL */
static void kill_msg(raw *r)
{
    wa(r, 5);
    wu(r, TN_MSG_KILL);
    wu(r, 1);
    wu(r, 1);
    wu(r, 10);
    ws(r, "x");
}

/* a frame of one RESULT, up to its outputs: [6, 1, 1, 1, true, 0, ""] */
static void result_head(raw *r)
{
    head(r, 1);
    wa(r, 8);
    wu(r, TN_MSG_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    msgpack_pack_true(&r->pk);
    wu(r, 0);
    ws(r, "");
}

#define CASE(name) static void name(raw *r)
CASE(c_empty)
{
    (void)r;
}

CASE(c_not_array)
{
    msgpack_pack_map(&r->pk, 0);
}

CASE(c_empty_array)
{
    wa(r, 0);
}

CASE(c_version_0)
{
    wa(r, 3);
    wu(r, 0);
    ws(r, "m");
    wa(r, 0);
}

CASE(c_version_1)
{
    wa(r, 3);
    wu(r, 1);
    ws(r, "m");
    wa(r, 0);
}

CASE(c_version_2)
{
    wa(r, 3);
    wu(r, 2);
    ws(r, "m");
    wa(r, 0);
}

CASE(c_version_3)
{
    wa(r, 4);
    wu(r, 3);
    ws(r, "m");
    ws(r, "");
    wa(r, 0);
}

CASE(c_version_4)
{
    wa(r, 5);
    wu(r, 4);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    wa(r, 0);
}

CASE(c_version_6)
{
    wa(r, 6);
    wu(r, 6);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    wa(r, 0);
    wu(r, 9);
}

CASE(c_epoch_negative)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    msgpack_pack_int64(&r->pk, -1);
    wa(r, 0);
}

CASE(c_epoch_str)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    ws(r, "7");
    wa(r, 0);
}

CASE(c_header_3)
{
    wa(r, 3);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    wa(r, 0);
}

CASE(c_cluster_65)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    char s[66];
    memset(s, 'c', 65);
    s[65] = 0;
    ws(r, s);
    wa(r, 0);
}

CASE(c_cluster_bin)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    msgpack_pack_bin(&r->pk, 1);
    w(r, "c", 1);
    wa(r, 0);
}

CASE(c_cluster_huge_claim)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    w(r, "\xdb\xff\xff\xff\xff", 5);
}

CASE(c_version_str)
{
    wa(r, 3);
    ws(r, "1");
    ws(r, "m");
    wa(r, 0);
}

CASE(c_version_negative)
{
    wa(r, 3);
    msgpack_pack_int64(&r->pk, -1);
    ws(r, "m");
    wa(r, 0);
}

CASE(c_header_6)
{
    wa(r, 6);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    wa(r, 0);
    wu(r, 0);
}

CASE(c_sender_empty)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "");
    ws(r, "");
    wa(r, 0);
}

CASE(c_sender_65)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    char s[TN_PROTO_ID_MAX + 2];
    memset(s, 's', TN_PROTO_ID_MAX + 1);
    s[TN_PROTO_ID_MAX + 1] = 0;
    ws(r, s);
    ws(r, "");
    wa(r, 0);
}

CASE(c_sender_bin)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    msgpack_pack_bin(&r->pk, 1);
    w(r, "m", 1);
    ws(r, "");
    wa(r, 0);
}

CASE(c_sender_huge_claim)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    w(r, "\xdb\xff\xff\xff\xff", 5);
}

CASE(c_msgs_huge_claim)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    w(r, "\xdd\xff\xff\xff\xff", 5);
}

CASE(c_msgs_claim_past_end)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    w(r, "\xdd\x00\x01\x00\x00", 5);
    kill_msg(r);
}

CASE(c_msgs_not_array)
{
    wa(r, 5);
    wu(r, TN_PROTO_VERSION);
    ws(r, "m");
    ws(r, "");
    wu(r, 0);
    msgpack_pack_nil(&r->pk);
}

CASE(c_trailing_byte)
{
    head(r, 1);
    kill_msg(r);
    w(r, "\xc0", 1);
}

CASE(c_trailing_message)
{
    head(r, 1);
    kill_msg(r);
    kill_msg(r);
}

CASE(c_type_0)
{
    head(r, 1);
    wa(r, 2);
    wu(r, 0);
    wu(r, 1);
}

CASE(c_type_11)
{
    head(r, 1);
    wa(r, 2);
    wu(r, 11);
    wu(r, 1);
}

CASE(c_type_huge)
{
    head(r, 1);
    wa(r, 2);
    wu(r, UINT64_MAX);
    wu(r, 1);
}

CASE(c_type_str)
{
    head(r, 1);
    wa(r, 2);
    ws(r, "KILL");
    wu(r, 1);
}

/* (a trailing nil keeps "1 message in 1 byte" from being found truncated first) */
CASE(c_msg_empty)
{
    head(r, 1);
    wa(r, 0);
    msgpack_pack_nil(&r->pk);
}

CASE(c_msg_not_array)
{
    head(r, 1);
    wu(r, 4);
    msgpack_pack_nil(&r->pk);
}

CASE(c_kill_short)
{
    head(r, 1);
    wa(r, 4);
    wu(r, TN_MSG_KILL);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
}

CASE(c_kill_long)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_KILL);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    ws(r, "");
    ws(r, "");
}

CASE(c_task_negative)
{
    head(r, 1);
    wa(r, 2);
    wu(r, TN_MSG_RECONCILE);
    msgpack_pack_int64(&r->pk, -5);
}

CASE(c_task_float)
{
    head(r, 1);
    wa(r, 2);
    wu(r, TN_MSG_RECONCILE);
    msgpack_pack_double(&r->pk, 1.0);
}

CASE(c_task_nil)
{
    head(r, 1);
    wa(r, 2);
    wu(r, TN_MSG_RECONCILE);
    msgpack_pack_nil(&r->pk);
}

CASE(c_attempt_over_u32)
{
    head(r, 1);
    wa(r, 4);
    wu(r, TN_MSG_PERSISTED);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1ull << 32);
}

CASE(c_reason_bin)
{
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_KILL);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    msgpack_pack_bin(&r->pk, 1);
    w(r, "x", 1);
}

CASE(c_reason_too_long)
{
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_KILL);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    msgpack_pack_str(&r->pk, TN_PROTO_REASON_MAX + 1);
    char *s = calloc(1, TN_PROTO_REASON_MAX + 1);
    w(r, s, TN_PROTO_REASON_MAX + 1);
    free(s);
}

CASE(c_bool_as_int)
{
    head(r, 1);
    wa(r, 8);
    wu(r, TN_MSG_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wu(r, 0);
    ws(r, "");
    msgpack_pack_map(&r->pk, 0);
}

CASE(c_outputs_dup_key)
{
    result_head(r);
    msgpack_pack_map(&r->pk, 2);
    ws(r, "k");
    ws(r, "1");
    ws(r, "k");
    ws(r, "2");
}

CASE(c_outputs_empty_key)
{
    result_head(r);
    msgpack_pack_map(&r->pk, 1);
    ws(r, "");
    ws(r, "1");
}

CASE(c_outputs_int_value)
{
    result_head(r);
    msgpack_pack_map(&r->pk, 1);
    ws(r, "k");
    wu(r, 1);
}

CASE(c_outputs_huge_claim)
{
    result_head(r);
    w(r, "\xdf\xff\xff\xff\xff", 5);
}

CASE(c_outputs_1001)
{
    result_head(r);
    msgpack_pack_map(&r->pk, 1001);
    for (int i = 0; i < 1001; i++) {
        char k[16];
        snprintf(k, 16, "k%d", i);
        ws(r, k);
        ws(r, "");
    }
}

/* 100,000 pids claimed with a few bytes: refused before any allocation */
CASE(c_pids_claim_past_end)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    w(r, "\xdd\x00\x01\x86\xa0", 5);
    wu(r, 5);
    wa(r, 0);
}

CASE(c_pids_over_max)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    w(r, "\xdd\x00\x01\x86\xa1", 5);
}

CASE(c_pid_zero)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wa(r, 1);
    wu(r, 0);
    wa(r, 0);
}

CASE(c_survivor_triple)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wa(r, 0);
    wa(r, 1);
    wa(r, 3);
    wu(r, 5);
    ws(r, "D");
    ws(r, "x");
}

/* [7, 1, 1, 1, [], [], hooks...: the KILL_RESULT up to its hooks */
static void kill_result_to_hooks(raw *r, uint32_t len)
{
    head(r, 1);
    wa(r, len);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wa(r, 0);
    wa(r, 0);
}

CASE(c_hook_pair)
{
    kill_result_to_hooks(r, 7);
    wa(r, 1);
    wa(r, 2);
    ws(r, "application_1_2");
    ws(r, "exit 0");
}

CASE(c_hook_no_id)
{
    kill_result_to_hooks(r, 7);
    wa(r, 1);
    wa(r, 3);
    ws(r, "");
    ws(r, "yarn application -kill ''");
    ws(r, "exit 0");
}

CASE(c_hooks_over_max)
{
    kill_result_to_hooks(r, 7);
    wa(r, TN_PROTO_HOOKS_MAX + 1);
    for (uint32_t i = 0; i <= TN_PROTO_HOOKS_MAX; i++) {
        wa(r, 3);
        ws(r, "a");
        ws(r, "");
        ws(r, "exit 0");
    }
}

CASE(c_kill_result_8)
{
    kill_result_to_hooks(r, 8);
    wa(r, 0);
    wu(r, 0);
}

CASE(c_kill_result_5)
{
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wa(r, 0);
}

CASE(c_survivor_no_state)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_KILL_RESULT);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    wa(r, 0);
    wa(r, 1);
    wa(r, 2);
    wu(r, 5);
    ws(r, "");
}

/* [10, worker, epoch, refused, master] */
CASE(c_fenced_short)
{
    head(r, 1);
    wa(r, 4);
    wu(r, TN_MSG_FENCED);
    ws(r, "w1");
    wu(r, 5);
    wu(r, 1);
}

CASE(c_fenced_no_worker)
{
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_FENCED);
    ws(r, "");
    wu(r, 5);
    wu(r, 1);
    ws(r, "master:m1");
}

CASE(c_fenced_master_long)
{
    char m[TN_PROTO_ID_MAX + 2];
    memset(m, 'm', sizeof(m) - 1);
    m[sizeof(m) - 1] = 0;
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_FENCED);
    ws(r, "w1");
    wu(r, 5);
    wu(r, 1);
    ws(r, m);
}

CASE(c_fenced_epoch_negative)
{
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_FENCED);
    ws(r, "w1");
    msgpack_pack_int64(&r->pk, -5);
    wu(r, 1);
    ws(r, "master:m1");
}

CASE(c_fenced_refused_str)
{
    head(r, 1);
    wa(r, 5);
    wu(r, TN_MSG_FENCED);
    ws(r, "w1");
    wu(r, 5);
    ws(r, "1");
    ws(r, "master:m1");
}

CASE(c_accepted_negative_pid)
{
    head(r, 1);
    wa(r, 6);
    wu(r, TN_MSG_ACCEPTED);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    msgpack_pack_int64(&r->pk, -1);
    ws(r, "session");
}

CASE(c_heartbeat_dup_group)
{
    head(r, 1);
    wa(r, 14);
    wu(r, TN_MSG_HEARTBEAT);
    ws(r, "w");
    ws(r, "");
    ws(r, "");
    wa(r, 2);
    ws(r, "g");
    ws(r, "g");
    wu(r, 1);
    wu(r, 0);
    wu(r, 0);
    wu(r, 0);
    wu(r, 0);
    msgpack_pack_map(&r->pk, 0);
    wu(r, 1);
    ws(r, "");
    wu(r, 0);
}

CASE(c_heartbeat_gauge_negative)
{
    head(r, 1);
    wa(r, 14);
    wu(r, TN_MSG_HEARTBEAT);
    ws(r, "w");
    ws(r, "");
    ws(r, "");
    wa(r, 0);
    wu(r, 1);
    wu(r, 0);
    wu(r, 0);
    wu(r, 0);
    wu(r, 0);
    msgpack_pack_map(&r->pk, 1);
    ws(r, "g");
    msgpack_pack_int64(&r->pk, -1);
    wu(r, 1);
    ws(r, "");
    wu(r, 0);
}

CASE(c_reconciled_pair_short)
{
    head(r, 1);
    wa(r, 3);
    wu(r, TN_MSG_RECONCILED);
    wu(r, 1);
    wa(r, 1);
    wa(r, 1);
    wu(r, 1);
    msgpack_pack_nil(&r->pk);
}

CASE(c_dispatch_empty_name)
{
    head(r, 1);
    wa(r, 21);
    wu(r, TN_MSG_DISPATCH);
    wu(r, 1);
    wu(r, 1);
    wu(r, 1);
    ws(r, "");
}

/* 100,000 nested arrays where a message is expected: refused at once, no recursion */
CASE(c_nested_deep)
{
    head(r, 1);
    for (int i = 0; i < 100000; i++)
        w(r, "\x91", 1);
    wu(r, 1);
}

CASE(c_nested_field)
{
    head(r, 1);
    wa(r, 2);
    wu(r, TN_MSG_RECONCILE);
    for (int i = 0; i < 1000; i++)
        w(r, "\x91", 1);
    wu(r, 1);
}

/* good messages, then a bad one: the good ones never reach the callback */
CASE(c_bad_after_good)
{
    head(r, 3);
    kill_msg(r);
    kill_msg(r);
    wa(r, 2);
    wu(r, 42);
    wu(r, 1);
}

#undef CASE

Test(proto, malformed_corpus)
{
    static const struct {
        const char *name;
        void (*build)(raw *);
        tn_err want;
    } cases[] = {
        {"empty", c_empty, TN_ERR_TRUNCATED},
        {"not an array", c_not_array, TN_ERR_TYPE},
        {"empty array", c_empty_array, TN_ERR_CORRUPT},
        {"version 0", c_version_0, TN_ERR_VERSION},
        {"version 1 (before worker_epoch)", c_version_1, TN_ERR_VERSION},
        {"version 2 (before the cluster)", c_version_2, TN_ERR_VERSION},
        {"version 3 (before the epoch)", c_version_3, TN_ERR_VERSION},
        {"version 4 (before FENCED)", c_version_4, TN_ERR_VERSION},
        {"version 6, 6 elements", c_version_6, TN_ERR_VERSION},
        {"FENCED of 4", c_fenced_short, TN_ERR_CORRUPT},
        {"FENCED with no worker", c_fenced_no_worker, TN_ERR_CORRUPT},
        {"FENCED master of 256 bytes", c_fenced_master_long, TN_ERR_TOOBIG},
        {"FENCED epoch negative", c_fenced_epoch_negative, TN_ERR_TYPE},
        {"FENCED refused a string", c_fenced_refused_str, TN_ERR_TYPE},
        {"epoch negative", c_epoch_negative, TN_ERR_TYPE},
        {"epoch a string", c_epoch_str, TN_ERR_TYPE},
        {"kill hook of 2 fields", c_hook_pair, TN_ERR_CORRUPT},
        {"kill hook with no id", c_hook_no_id, TN_ERR_CORRUPT},
        {"65 kill hooks", c_hooks_over_max, TN_ERR_TOOBIG},
        {"KILL_RESULT of 8", c_kill_result_8, TN_ERR_CORRUPT},
        {"KILL_RESULT of 5", c_kill_result_5, TN_ERR_CORRUPT},
        {"header of 3 (no cluster)", c_header_3, TN_ERR_CORRUPT},
        {"cluster of 65 bytes", c_cluster_65, TN_ERR_TOOBIG},
        {"cluster as bin", c_cluster_bin, TN_ERR_TYPE},
        {"cluster claims 4 GiB", c_cluster_huge_claim, TN_ERR_TOOBIG},
        {"version as str", c_version_str, TN_ERR_TYPE},
        {"version -1", c_version_negative, TN_ERR_TYPE},
        {"header of 6", c_header_6, TN_ERR_CORRUPT},
        {"empty sender", c_sender_empty, TN_ERR_CORRUPT},
        {"sender longer than TN_PROTO_ID_MAX", c_sender_65, TN_ERR_TOOBIG},
        {"sender as bin", c_sender_bin, TN_ERR_TYPE},
        {"sender claims 4 GiB", c_sender_huge_claim, TN_ERR_TOOBIG},
        {"4 G messages claimed", c_msgs_huge_claim, TN_ERR_TOOBIG},
        {"65536 messages, 1 present", c_msgs_claim_past_end, TN_ERR_TRUNCATED},
        {"messages not an array", c_msgs_not_array, TN_ERR_TYPE},
        {"trailing byte", c_trailing_byte, TN_ERR_CORRUPT},
        {"uncounted message", c_trailing_message, TN_ERR_CORRUPT},
        {"type 0", c_type_0, TN_ERR_TYPE},
        {"type 11", c_type_11, TN_ERR_TYPE},
        {"type 2^64-1", c_type_huge, TN_ERR_TYPE},
        {"type as str", c_type_str, TN_ERR_TYPE},
        {"empty message", c_msg_empty, TN_ERR_CORRUPT},
        {"message not an array", c_msg_not_array, TN_ERR_TYPE},
        {"KILL of 4", c_kill_short, TN_ERR_CORRUPT},
        {"KILL of 6", c_kill_long, TN_ERR_CORRUPT},
        {"negative u64", c_task_negative, TN_ERR_TYPE},
        {"float for u64", c_task_float, TN_ERR_TYPE},
        {"nil for u64", c_task_nil, TN_ERR_TYPE},
        {"attempt 2^32", c_attempt_over_u32, TN_ERR_TOOBIG},
        {"reason as bin", c_reason_bin, TN_ERR_TYPE},
        {"reason too long", c_reason_too_long, TN_ERR_TOOBIG},
        {"bool as int", c_bool_as_int, TN_ERR_TYPE},
        {"duplicate output key", c_outputs_dup_key, TN_ERR_CORRUPT},
        {"empty output key", c_outputs_empty_key, TN_ERR_CORRUPT},
        {"int output value", c_outputs_int_value, TN_ERR_TYPE},
        {"outputs claim 4 G", c_outputs_huge_claim, TN_ERR_TOOBIG},
        {"1001 outputs", c_outputs_1001, TN_ERR_TOOBIG},
        {"100k pids claimed, 1 present", c_pids_claim_past_end, TN_ERR_TRUNCATED},
        {"100001 pids", c_pids_over_max, TN_ERR_TOOBIG},
        {"pid 0", c_pid_zero, TN_ERR_CORRUPT},
        {"survivor of 3", c_survivor_triple, TN_ERR_TOOBIG},
        {"survivor without state", c_survivor_no_state, TN_ERR_CORRUPT},
        {"ACCEPTED pid -1", c_accepted_negative_pid, TN_ERR_CORRUPT},
        {"duplicate group", c_heartbeat_dup_group, TN_ERR_CORRUPT},
        {"negative gauge", c_heartbeat_gauge_negative, TN_ERR_TYPE},
        {"running pair of 1", c_reconciled_pair_short, TN_ERR_CORRUPT},
        {"DISPATCH empty name", c_dispatch_empty_name, TN_ERR_CORRUPT},
        {"100k nested arrays", c_nested_deep, TN_ERR_TYPE},
        {"nested arrays in a field", c_nested_field, TN_ERR_TYPE},
        {"bad after good", c_bad_after_good, TN_ERR_TYPE},
    };
    cr_assert_geq(TN_ARRAY_LEN(cases), 30);
    for (size_t i = 0; i < TN_ARRAY_LEN(cases); i++) {
        raw r;
        msgpack_sbuffer_init(&r.sb);
        msgpack_packer_init(&r.pk, &r.sb, msgpack_sbuffer_write);
        cases[i].build(&r);
        char name[32];
        snprintf(name, sizeof(name), "test-malformed-%02zu", i);
        seed_dump(name, r.sb.data, r.sb.size);
        /* exactly sized copy: a read past the end is a sanitizer error */
        char *buf = malloc(r.sb.size ? r.sb.size : 1);
        if (r.sb.size)
            memcpy(buf, r.sb.data, r.sb.size);
        tn_errmsg em = {{0}};
        tn_err e = tn_frame_decode(buf, r.sb.size, cb_never, NULL, &em);
        cr_expect_eq(e, cases[i].want, "%s: got %s (%s), want %s", cases[i].name, tn_errname(e),
                     em.text, tn_errname(cases[i].want));
        cr_expect_neq(em.text[0], '\0', "%s: no message", cases[i].name);
        free(buf);
        msgpack_sbuffer_destroy(&r.sb);
    }
}

static tn_err cb_legacy_kill_result(void *arg, tn_str sender, const tn_msg *m)
{
    int *n = arg;
    cr_assert_eq(m->type, TN_MSG_KILL_RESULT);
    cr_assert_eq(m->kill_result.report_id, 9);
    cr_assert_eq(m->kill_result.signalled.n, 1);
    cr_assert_eq(m->kill_result.hooks.n, 0);
    (*n)++;
    return TN_OK;
}

/* A worker's outbox keeps encoded reports across an upgrade: a KILL_RESULT written before
 * kill hooks (6 elements) is still taken, with no hooks; anything else is a wrong length. */
Test(proto, a_kill_result_without_hooks_from_an_old_outbox_is_taken)
{
    raw r;
    msgpack_sbuffer_init(&r.sb);
    msgpack_packer_init(&r.pk, &r.sb, msgpack_sbuffer_write);
    head(&r, 1);
    wa(&r, 6);
    wu(&r, TN_MSG_KILL_RESULT);
    wu(&r, 9);
    wu(&r, 1);
    wu(&r, 1);
    wa(&r, 1);
    wu(&r, 4242);
    wa(&r, 0);
    int n = 0;
    tn_errmsg em = {{0}};
    cr_assert_eq(tn_frame_decode(r.sb.data, r.sb.size, cb_legacy_kill_result, &n, &em), TN_OK,
                 "%s", em.text);
    cr_assert_eq(n, 1);
    msgpack_sbuffer_destroy(&r.sb);
}

Test(proto, oversized_frame_refused_before_reading)
{
    size_t len = TN_PROTO_FRAME_MAX + 1;
    char *buf = calloc(1, len);
    tn_errmsg em;
    cr_assert_eq(tn_frame_decode(buf, len, cb_never, NULL, &em), TN_ERR_TOOBIG);
    free(buf);
}

Test(proto, error_message_names_the_message)
{
    raw r;
    msgpack_sbuffer_init(&r.sb);
    msgpack_packer_init(&r.pk, &r.sb, msgpack_sbuffer_write);
    c_bool_as_int(&r);
    tn_errmsg em;
    cr_assert_eq(tn_frame_decode(r.sb.data, r.sb.size, cb_never, NULL, &em), TN_ERR_TYPE);
    cr_assert(strstr(em.text, "frame from m: message 1 (RESULT) at byte") != NULL, "%s",
              em.text);
    msgpack_sbuffer_destroy(&r.sb);
}

static tn_err cb_stop_at_second(void *arg, tn_str sender, const tn_msg *m)
{
    int *n = arg;
    return ++*n == 2 ? TN_ERR_STALE : TN_OK;
}

Test(proto, callback_error_stops_decoding)
{
    raw r;
    msgpack_sbuffer_init(&r.sb);
    msgpack_packer_init(&r.pk, &r.sb, msgpack_sbuffer_write);
    head(&r, 3);
    kill_msg(&r);
    kill_msg(&r);
    kill_msg(&r);
    int n = 0;
    cr_assert_eq(tn_frame_decode(r.sb.data, r.sb.size, cb_stop_at_second, &n, NULL),
                 TN_ERR_STALE);
    cr_assert_eq(n, 2);
    msgpack_sbuffer_destroy(&r.sb);
}

/* ---- outgoing queue --------------------------------------------------------------------- */

/* A transport that keeps what it is sent, and refuses (BUSY) after `room` frames. */
typedef struct capture {
    tn_buf frames[4096];
    int n;
    int room;
} capture;

static tn_err cap_send(void *self, const void *buf, size_t len)
{
    capture *c = self;
    if (c->n >= c->room)
        return TN_ERR_BUSY;
    tn_buf *b = &c->frames[c->n++];
    *b = (tn_buf){0};
    msgpack_sbuffer_write((msgpack_sbuffer *)b, buf, len);
    return TN_OK;
}

static const tn_tx_ops cap_ops = {.name = "capture", .send = cap_send};

typedef struct seqcheck {
    uint64_t next;
    uint32_t frame_msgs;
} seqcheck;

static tn_err cb_seq(void *arg, tn_str sender, const tn_msg *m)
{
    seqcheck *s = arg;
    cr_assert_eq(m->type, TN_MSG_PERSISTED);
    cr_assert_eq(m->persisted.report_id, s->next, "in order, once");
    cr_assert(tn_str_eq(sender, "worker:w1"));
    s->next++;
    s->frame_msgs++;
    return TN_OK;
}

static void push_n(tn_outq *q, uint64_t from, uint64_t n)
{
    for (uint64_t i = from; i < from + n; i++) {
        tn_msg m = {.type = TN_MSG_PERSISTED};
        m.persisted = (tn_msg_persisted){.report_id = i, .task = i * 2, .attempt = 1};
        cr_assert_eq(tn_outq_push(q, &m), TN_OK);
    }
}

static void free_capture(capture *c)
{
    for (int i = 0; i < c->n; i++)
        buf_free(&c->frames[i]);
}

Test(proto, outq_batches_in_order)
{
    capture *c = calloc(1, sizeof(*c));
    c->room = 1 << 30;
    tn_tx tx = {&cap_ops, c};
    tn_outq *q;
    cr_assert_eq(tn_outq_new("worker:w1", 100, 0, 0, &q), TN_OK);
    push_n(q, 0, 1000);
    cr_assert_eq(tn_outq_len(q), 1000);
    uint32_t sent;
    cr_assert_eq(tn_outq_flush(q, tx, &sent), TN_OK);
    cr_assert_eq(sent, 1000);
    cr_assert_eq(tn_outq_len(q), 0);
    cr_assert_eq(c->n, 10, "1000 messages, 100 a frame");
    seqcheck s = {0, 0};
    for (int i = 0; i < c->n; i++) {
        s.frame_msgs = 0;
        cr_assert_eq(tn_frame_decode(c->frames[i].data, c->frames[i].size, cb_seq, &s, NULL),
                     TN_OK);
        cr_assert_eq(s.frame_msgs, 100);
    }
    cr_assert_eq(s.next, 1000);
    tn_outq_free(q);
    free_capture(c);
    free(c);
}

Test(proto, outq_byte_bound)
{
    capture *c = calloc(1, sizeof(*c));
    c->room = 1 << 30;
    tn_tx tx = {&cap_ops, c};
    tn_outq *q;
    cr_assert_eq(tn_outq_new("worker:w1", 10000, 200, 0, &q), TN_OK);
    push_n(q, 0, 500);
    cr_assert_eq(tn_outq_flush(q, tx, NULL), TN_OK);
    seqcheck s = {0, 0};
    for (int i = 0; i < c->n; i++) {
        cr_assert_leq(c->frames[i].size, 200);
        cr_assert_eq(tn_frame_decode(c->frames[i].data, c->frames[i].size, cb_seq, &s, NULL),
                     TN_OK);
    }
    cr_assert_eq(s.next, 500);
    cr_assert_gt(c->n, 10);
    tn_outq_free(q);
    free_capture(c);
    free(c);
}

Test(proto, outq_keeps_what_a_busy_transport_refused)
{
    capture *c = calloc(1, sizeof(*c));
    c->room = 3;
    tn_tx tx = {&cap_ops, c};
    tn_outq *q;
    cr_assert_eq(tn_outq_new("worker:w1", 10, 0, 0, &q), TN_OK);
    push_n(q, 0, 100);
    uint32_t sent;
    cr_assert_eq(tn_outq_flush(q, tx, &sent), TN_ERR_BUSY);
    cr_assert_eq(sent, 30);
    cr_assert_eq(tn_outq_len(q), 70);
    push_n(q, 100, 50); /* more arrive meanwhile */
    c->room = 1 << 30;
    cr_assert_eq(tn_outq_flush(q, tx, &sent), TN_OK);
    cr_assert_eq(sent, 120);
    seqcheck s = {0, 0};
    for (int i = 0; i < c->n; i++)
        cr_assert_eq(tn_frame_decode(c->frames[i].data, c->frames[i].size, cb_seq, &s, NULL),
                     TN_OK);
    cr_assert_eq(s.next, 150);
    tn_outq_free(q);
    free_capture(c);
    free(c);
}

Test(proto, outq_bounded)
{
    tn_outq *q;
    cr_assert_eq(tn_outq_new("worker:w1", 10, 0, 1000, &q), TN_OK);
    tn_msg m = {.type = TN_MSG_PERSISTED};
    int ok = 0;
    tn_err e;
    while ((e = tn_outq_push(q, &m)) == TN_OK)
        ok++;
    cr_assert_eq(e, TN_ERR_FULL);
    cr_assert_gt(ok, 100);
    cr_assert_eq(tn_outq_len(q), (uint32_t)ok);
    cr_assert_eq(tn_outq_new("", 10, 0, 0, &q), TN_ERR_INVAL);
    tn_outq_free(NULL);
    tn_outq *q2;
    cr_assert_eq(tn_outq_new("w", 10, 0, 1000, &q2), TN_OK);
    tn_outq_free(q2);
    tn_outq_free(q);
}

/* ---- the cluster in the frame header ---------------------------------------------------- */

Test(proto, frame_carries_its_cluster_and_the_header_reads_it_alone)
{
    arena a = {{0}, 0};
    tn_msg m;
    fill(&a, &m, TN_MSG_KILL, V_TYPICAL);
    tn_buf b = {0};
    tn_frame f;
    cr_assert_eq(tn_frame_begin_cluster(&f, &b, "master:m1", "0123456789abcdef"), TN_OK);
    cr_assert_eq(tn_frame_add(&f, &m), TN_OK);
    cr_assert_eq(tn_frame_end(&f), TN_OK);
    tn_str sender, cluster;
    cr_assert_eq(tn_frame_header(b.data, b.size, &sender, &cluster), TN_OK);
    cr_assert(tn_str_eq(sender, "master:m1"));
    cr_assert(tn_str_eq(cluster, "0123456789abcdef"));
    expect x = {&m, 1, 0, "master:m1"};
    cr_assert_eq(tn_frame_decode(b.data, b.size, cb_expect, &x, NULL), TN_OK);
    cr_assert_eq(x.seen, 1);
    /* no cluster: "" (a worker not bound yet) */
    b.size = 0;
    cr_assert_eq(tn_frame_begin(&f, &b, "worker:w1"), TN_OK);
    cr_assert_eq(tn_frame_end(&f), TN_OK);
    cr_assert_eq(tn_frame_header(b.data, b.size, &sender, &cluster), TN_OK);
    cr_assert_eq(cluster.len, 0);
    /* over the bound: refused, nothing written */
    char big[TN_PROTO_CLUSTER_MAX + 2];
    memset(big, 'c', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    b.size = 0;
    cr_assert_eq(tn_frame_begin_cluster(&f, &b, "m", big), TN_ERR_TOOBIG);
    cr_assert_eq(b.size, 0);
    /* a truncated header is an error, not a read past the end */
    cr_assert_neq(tn_frame_header(b.data, 0, &sender, &cluster), TN_OK);
    buf_free(&b);
    afree(&a);
}

Test(proto, outq_frames_carry_the_cluster_set_on_the_queue)
{
    tn_outq *q;
    cr_assert_eq(tn_outq_new("worker:w1", 10, 0, 0, &q), TN_OK);
    tn_outq_set_cluster(q, "c0ffee");
    arena a = {{0}, 0};
    tn_msg m;
    fill(&a, &m, TN_MSG_HEARTBEAT, V_TYPICAL);
    cr_assert_eq(tn_outq_push(q, &m), TN_OK);
    capture *c = calloc(1, sizeof(*c));
    c->room = 100;
    tn_tx tx = {&cap_ops, c};
    cr_assert_eq(tn_outq_flush(q, tx, NULL), TN_OK);
    cr_assert_eq(c->n, 1);
    tn_str sender, cluster;
    cr_assert_eq(tn_frame_header(c->frames[0].data, c->frames[0].size, &sender, &cluster),
                 TN_OK);
    cr_assert(tn_str_eq(cluster, "c0ffee"));
    free_capture(c);
    free(c);
    tn_outq_free(q);
    afree(&a);
}

/* The frame's leader epoch: written by tn_frame_begin_epoch and tn_outq (after
 * tn_outq_set_epoch), read by tn_frame_header_epoch; 0 when not set. */
Test(proto, frame_epoch_round_trips)
{
    arena a = {{0}, 0};
    tn_msg m;
    fill(&a, &m, TN_MSG_DISPATCH, V_TYPICAL);
    tn_buf b = {0};
    tn_frame f;
    cr_assert_eq(tn_frame_begin_epoch(&f, &b, "master:m1", "c1", UINT64_MAX), TN_OK);
    cr_assert_eq(tn_frame_add(&f, &m), TN_OK);
    cr_assert_eq(tn_frame_end(&f), TN_OK);
    tn_str sender, cluster;
    uint64_t epoch = 0;
    cr_assert_eq(tn_frame_header_epoch(b.data, b.size, &sender, &cluster, &epoch), TN_OK);
    cr_assert_eq(epoch, UINT64_MAX);
    expect x = {&m, 1, 0, "master:m1"};
    cr_assert_eq(tn_frame_decode(b.data, b.size, cb_expect, &x, NULL), TN_OK);
    b.size = 0;
    cr_assert_eq(tn_frame_begin_cluster(&f, &b, "master:m1", "c1"), TN_OK);
    cr_assert_eq(tn_frame_end(&f), TN_OK);
    cr_assert_eq(tn_frame_header_epoch(b.data, b.size, &sender, &cluster, &epoch), TN_OK);
    cr_assert_eq(epoch, 0);
    buf_free(&b);
    afree(&a);
}

static tn_err capture_send(void *self, const void *buf, size_t len)
{
    tn_buf *b = self;
    b->size = 0;
    msgpack_sbuffer_write(b, buf, len);
    return TN_OK;
}

Test(proto, outq_frames_carry_the_epoch_set)
{
    tn_outq *q = NULL;
    cr_assert_eq(tn_outq_new("master:m1", 16, 0, 0, &q), TN_OK);
    tn_msg m = {.type = TN_MSG_PERSISTED};
    m.persisted = (tn_msg_persisted){1, 2, 3};
    tn_buf got = {0};
    static const tn_tx_ops ops = {.send = capture_send};
    tn_tx tx = {&ops, &got};
    uint64_t want[] = {0, 7, 9};
    for (int i = 0; i < 3; i++) {
        if (want[i])
            tn_outq_set_epoch(q, want[i]);
        cr_assert_eq(tn_outq_push(q, &m), TN_OK);
        cr_assert_eq(tn_outq_flush(q, tx, NULL), TN_OK);
        tn_str s, c;
        uint64_t e = 1;
        cr_assert_eq(tn_frame_header_epoch(got.data, got.size, &s, &c, &e), TN_OK);
        cr_assert_eq(e, want[i]);
    }
    tn_outq_free(q);
    buf_free(&got);
}

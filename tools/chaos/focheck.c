/* `tern chaos failover`: the end checks over the masters' logs, the workers' logs and the
 * tasks' run lines (focheck.h). Pure functions of what they are fed. */
#include "focheck.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sm_gen.h"

uint64_t chaos_fo_digest(const void *b, size_t len)
{
    const unsigned char *p = b;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void say(chaos_fo_fn fn, void *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(chaos_fo_fn fn, void *ctx, const char *fmt, ...)
{
    char buf[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (fn)
        fn(ctx, buf);
}

uint64_t chaos_fo_check_logs(const chaos_fo_log *logs, size_t n, chaos_fo_fn fn, void *ctx)
{
    size_t L = 0;
    for (size_t i = 1; i < n; i++)
        if (logs[i].first + logs[i].n > logs[L].first + logs[L].n)
            L = i;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == L)
            continue;
        const chaos_fo_log *a = &logs[i], *b = &logs[L];
        uint64_t lo = a->first > b->first ? a->first : b->first;
        uint64_t hi = a->first + a->n < b->first + b->n ? a->first + a->n : b->first + b->n;
        for (uint64_t s = lo; s < hi; s++)
            if (a->digest[s - a->first] != b->digest[s - b->first]) {
                say(fn, ctx,
                    "%s's event %" PRIu64 " differs from %s's (the longest log, %" PRIu64
                    " events): the logs diverge",
                    a->name, s, b->name, b->first + b->n - 1);
                v++;
                break;
            }
    }
    return v;
}

/* ---- submissions ---------------------------------------------------------------------- */

struct chaos_fo_submits {
    uint64_t *wf, *seq;
    size_t n, cap;
};

chaos_fo_submits *chaos_fo_submits_new(void)
{
    return calloc(1, sizeof(chaos_fo_submits));
}

void chaos_fo_submits_event(chaos_fo_submits *c, const tn_event *ev)
{
    if (!c || ev->machine != TN_MACHINE_WORKFLOW || ev->event != TN_WF_E_SUBMIT)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        uint64_t *w = realloc(c->wf, cap * sizeof(*w));
        if (w)
            c->wf = w;
        uint64_t *s = w ? realloc(c->seq, cap * sizeof(*s)) : NULL;
        if (!s)
            return;
        c->seq = s;
        c->cap = cap;
    }
    c->wf[c->n] = ev->wf;
    c->seq[c->n++] = ev->seq;
}

/* How many SUBMITs name wf; *first the seq of the first. */
static size_t count_of(const chaos_fo_submits *c, uint64_t wf, uint64_t *first)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->wf[i] == wf && k++ == 0)
            *first = c->seq[i];
    return k;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

uint64_t chaos_fo_submits_finish(chaos_fo_submits *c, const uint64_t *accepted, size_t n,
                                 chaos_fo_fn fn, void *ctx, uint64_t *submits)
{
    if (!c) {
        say(fn, ctx, "out of memory counting the submissions");
        return 1;
    }
    uint64_t v = 0, first = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = count_of(c, accepted[i], &first);
        if (k != 1) {
            say(fn, ctx, "accepted instance %" PRIu64 " is SUBMITted %zu times in the log",
                accepted[i], k);
            v++;
        }
    }
    uint64_t *ids = malloc((c->n + 1) * sizeof(*ids));
    if (ids) {
        memcpy(ids, c->wf, c->n * sizeof(*ids));
        qsort(ids, c->n, sizeof(*ids), cmp_u64);
        for (size_t i = 1; i < c->n; i++)
            if (ids[i] == ids[i - 1] && (i + 1 == c->n || ids[i + 1] != ids[i])) {
                say(fn, ctx, "instance %" PRIu64 " is SUBMITted more than once", ids[i]);
                v++;
            }
        free(ids);
    }
    if (submits)
        *submits = c->n;
    free(c->wf);
    free(c->seq);
    free(c);
    return v;
}

/* ---- the workers' epochs and the tasks' runs -------------------------------------------- */

/* The unsigned number after `key` in [line, end), or false. */
static bool field(const char *line, const char *end, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = line; p + kl <= end; p++)
        if ((p == line || p[-1] == ' ') && strncmp(p, key, kl) == 0 && p[kl] >= '0' &&
            p[kl] <= '9') {
            *out = strtoull(p + kl, NULL, 10);
            return true;
        }
    return false;
}

static bool has(const char *line, const char *end, const char *what)
{
    size_t wl = strlen(what);
    for (const char *p = line; p + wl <= end; p++)
        if (strncmp(p, what, wl) == 0)
            return true;
    return false;
}

uint64_t chaos_fo_check_epochs(const char *worker, const char *text, chaos_fo_fn fn, void *ctx,
                               uint64_t *switches, uint64_t *refused)
{
    uint64_t v = 0, seen = 0, high = 0, lineno = 0, ref_total = 0, ref_last = 0;
    for (const char *l = text; l && *l;) {
        const char *end = strchr(l, '\n');
        end = end ? end : l + strlen(l);
        lineno++;
        uint64_t e, r;
        if (has(l, end, "msg=\"new leader epoch\"") && field(l, end, "epoch=", &e)) {
            seen++;
            if (e < high) {
                say(fn, ctx,
                    "worker %s: line %" PRIu64 " takes frames of epoch %" PRIu64
                    " after epoch %" PRIu64 ": two leaders' messages interleaved",
                    worker, lineno, e, high);
                v++;
            }
            high = e > high ? e : high;
        } else if (has(l, end, "fenced master refused") && field(l, end, "refused=", &r)) {
            if (r < ref_last) /* a new incarnation counts from 0 */
                ref_total += ref_last;
            ref_last = r;
        }
        l = *end ? end + 1 : end;
    }
    if (switches)
        *switches = seen;
    if (refused)
        *refused = ref_total + ref_last;
    return v;
}

typedef struct runline {
    uint64_t wf, attempt;
    char task[64];
} runline;

static int cmp_run(const void *a, const void *b)
{
    const runline *x = a, *y = b;
    if (x->wf != y->wf)
        return x->wf < y->wf ? -1 : 1;
    if (x->attempt != y->attempt)
        return x->attempt < y->attempt ? -1 : 1;
    return strcmp(x->task, y->task);
}

uint64_t chaos_fo_check_runs(const char *text, chaos_fo_fn fn, void *ctx, uint64_t *lines)
{
    runline *v = NULL;
    size_t n = 0, cap = 0;
    for (const char *l = text; l && *l;) {
        const char *end = strchr(l, '\n');
        end = end ? end : l + strlen(l);
        runline r = {0};
        if (sscanf(l, "%" SCNu64 " %63s %" SCNu64, &r.wf, r.task, &r.attempt) == 3) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                runline *nv = realloc(v, cap * sizeof(*nv));
                if (!nv)
                    break;
                v = nv;
            }
            v[n++] = r;
        }
        l = *end ? end + 1 : end;
    }
    uint64_t bad = 0;
    if (v)
        qsort(v, n, sizeof(*v), cmp_run);
    for (size_t i = 1; i < n; i++)
        if (cmp_run(&v[i], &v[i - 1]) == 0 && (i + 1 == n || cmp_run(&v[i + 1], &v[i]) != 0)) {
            say(fn, ctx, "instance %" PRIu64 " task %s attempt %" PRIu64 " ran more than once",
                v[i].wf, v[i].task, v[i].attempt);
            bad++;
        }
    free(v);
    if (lines)
        *lines = n;
    return bad;
}

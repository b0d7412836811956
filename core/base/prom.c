/* Prometheus text exposition helpers (see prom.h). */
#include "prom.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void tn_prom_hist_init(tn_prom_hist *h, const double *bounds, size_t n)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n = n > TN_PROM_BUCKETS_MAX ? TN_PROM_BUCKETS_MAX : n;
}

void tn_prom_hist_observe(tn_prom_hist *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void tn_prom_head(tn_sb *b, const char *name, const char *type, const char *help)
{
    tn_sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(tn_sb *b, double v)
{
    if (isnan(v))
        tn_sb_printf(b, "NaN\n");
    else if (v == (double)(int64_t)v && fabs(v) < 9e15)
        tn_sb_printf(b, "%" PRId64 "\n", (int64_t)v);
    else
        tn_sb_printf(b, "%.9g\n", v);
}

void tn_prom_sample(tn_sb *b, const char *name, const char *labels, double v)
{
    if (labels && *labels)
        tn_sb_printf(b, "%s{%s} ", name, labels);
    else
        tn_sb_printf(b, "%s ", name);
    value(b, v);
}

void tn_prom_hist_write(tn_sb *b, const char *name, const char *labels, const tn_prom_hist *h)
{
    const char *sep = labels && *labels ? "," : "";
    const char *lb = labels ? labels : "";
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n; i++) {
        cum += h->counts[i];
        if (i < h->n)
            tn_sb_printf(b, "%s_bucket{%s%sle=\"%.9g\"} %" PRIu64 "\n", name, lb, sep,
                         h->bounds[i], cum);
        else
            tn_sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, lb, sep, cum);
    }
    char n2[160];
    snprintf(n2, sizeof(n2), "%s_sum", name);
    tn_prom_sample(b, n2, labels, h->sum);
    snprintf(n2, sizeof(n2), "%s_count", name);
    tn_prom_sample(b, n2, labels, (double)h->count);
}

void tn_prom_label(const char *v, char *buf, size_t len)
{
    size_t o = 0;
    for (; *v && o + 3 < len; v++) {
        if (*v == '\\' || *v == '"') {
            buf[o++] = '\\';
            buf[o++] = *v;
        } else if (*v == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *v;
        }
    }
    buf[o] = 0;
}

/* Prometheus text exposition (format 0.0.4): HELP and TYPE lines, samples with labels,
 * and fixed-bucket histograms, written into a tn_sb. The owner of a number decides how
 * it is read across threads (atomics, or a copy made by the thread that owns it). */
#ifndef TN_PROM_H
#define TN_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define TN_PROM_BUCKETS_MAX 16

/* Cumulative on output; counts[i] is the number of observations in (bound[i-1], bound[i]],
 * counts[n] those above the last bound. Not thread-safe: one writer, copied to read. */
typedef struct tn_prom_hist {
    const double *bounds; /* ascending, n of them */
    size_t n;
    uint64_t counts[TN_PROM_BUCKETS_MAX + 1];
    double sum;
    uint64_t count;
} tn_prom_hist;

void tn_prom_hist_init(tn_prom_hist *h, const double *bounds, size_t n);
void tn_prom_hist_observe(tn_prom_hist *h, double v);

/* # HELP name help / # TYPE name type ("counter", "gauge", "histogram"). */
void tn_prom_head(tn_sb *b, const char *name, const char *type, const char *help);
/* name{labels} value; labels is "k=\"v\",k2=\"v2\"" or NULL (values already escaped, see
 * tn_prom_label). */
void tn_prom_sample(tn_sb *b, const char *name, const char *labels, double v);
/* The _bucket, _sum and _count lines of a histogram (after its head). */
void tn_prom_hist_write(tn_sb *b, const char *name, const char *labels, const tn_prom_hist *h);
/* A label value escaped as the format wants (\\, \", \n) into buf. */
void tn_prom_label(const char *v, char *buf, size_t len);

#endif

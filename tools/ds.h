/* DolphinScheduler exports (the JSON array its UI's Export writes) to tern definitions and
 * back: ds_import.c reads all three generations (1.3, 2.0-3.2, 3.3), ds_export.c writes 3.2/3.3. */
#ifndef TN_DS_H
#define TN_DS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "def.h"

#define TN_DS_MAX_FILE (64u << 20) /* bytes of export JSON */
#define TN_DS_MAX_WFS  10000u      /* workflows in one export */

/* Finds the tern name of a workflow DolphinScheduler knew by `code` that is not in the
 * file (one imported earlier, or one `tern export ds` wrote); NULL when unknown. The
 * string must live until tn_ds_import_free. */
typedef const char *(*tn_ds_resolve_fn)(void *ctx, int64_t code);

typedef struct tn_ds_opts {
    bool placeholder;   /* unsupported tasks become failing shell tasks, not refusals */
    bool all_schedules; /* import offline (disabled) schedules too */
    tn_ds_resolve_fn resolve;
    void *resolve_ctx;
} tn_ds_opts;

/* One workflow of the export. Either def is set (it imports), or problems lists why it is
 * refused, each "PATH: reason" or "task "N" (TYPE): reason". notes say what was turned
 * into something else or left out on purpose (placeholders, skipped schedules). */
typedef struct tn_ds_wf {
    char *name;   /* as DolphinScheduler named it; NULL when the entry had none */
    int64_t code; /* its DolphinScheduler code (1.3: its id, or 0) */
    tn_def *def;  /* NULL when refused */
    char **problems;
    size_t n_problems;
    char **notes;
    size_t n_notes;
} tn_ds_wf;

typedef struct tn_ds_import {
    const char *generation; /* "1.3", "2.0-3.2", "3.3" (of the first entry) */
    tn_ds_wf *wfs;
    size_t n;
} tn_ds_result;

/* Convert the export in buf (len bytes). TN_OK: *out holds every workflow (some may be
 * refused; see tn_ds_wf). TN_ERR_PARSE with msg when the file as a whole is not an export
 * (bad JSON with its line and column, not an array, an entry of no known generation),
 * TN_ERR_TOOBIG past the bounds above, TN_ERR_NOMEM. Free *out with tn_ds_import_free. */
tn_err tn_ds_import(const char *buf, size_t len, const tn_ds_opts *o, tn_ds_result *out,
                    tn_errmsg *msg);
void tn_ds_import_free(tn_ds_result *im);

/* The code `tern export ds` gives a workflow (or, with task != NULL, a task of it): a
 * positive 53-bit hash of the names, so a later import can find a stored workflow by it. */
int64_t tn_ds_code(const char *workflow, const char *task);

/* A dependent date between DolphinScheduler's dateValue ("last7Days") and tern's word
 * ("last7") for a cycle ("hour", "day", "week", "month"): to_tern picks the direction.
 * NULL when the other side has none (tern lacks thisMonthBegin; DolphinScheduler has
 * last1..3, 24 hours and last1..3, 7 days only). */
const char *tn_ds_date(const char *cycle, const char *word, bool to_tern);

/* Write defs as a DolphinScheduler export of version "3.2" or "3.3" (pretty JSON, a
 * malloc'd NUL-terminated *out). A definition using what DolphinScheduler cannot express
 * (a noop task, a duration that is not whole minutes, ...) is refused: TN_ERR_UNSUPPORTED
 * with msg naming the workflow, the task and the key. */
tn_err tn_ds_export(tn_def *const *defs, size_t n, const char *version, char **out,
                    tn_errmsg *msg);

#endif

/* libFuzzer target over the DolphinScheduler importer (tools/ds_import.c): an input is an
 * export, accepted or refused with a message; every workflow either has a definition or
 * at least one reason, and every definition that `export ds` writes imports back to the
 * same canonical bytes (or export refuses it with a message). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_ds: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

static void same(const tn_def *a, const tn_def *b)
{
    char *e1, *e2;
    size_t l1, l2;
    if (tn_def_encode(a, &e1, &l1) || tn_def_encode(b, &e2, &l2))
        fail("an imported definition does not encode", NULL);
    if (l1 != l2 || memcmp(e1, e2, l1) != 0)
        fail("export then import changed a definition", a->name);
    free(e1);
    free(e2);
}

/* The workflows the definitions name (dependent items may name workflows outside the
 * file, as a store would hold them): found by their export code, as `tern import` does. */
static const char *by_code(void *ctx, int64_t code)
{
    const tn_ds_result *r = ctx;
    for (size_t i = 0; i < r->n; i++)
        for (uint32_t t = 0; t < r->wfs[i].def->n_tasks; t++) {
            const tn_def_task *k = &r->wfs[i].def->tasks[t];
            for (uint32_t j = 0; j < k->dep.n_depends; j++)
                if (tn_ds_code(k->dep.depends[j].workflow, NULL) == code)
                    return k->dep.depends[j].workflow;
        }
    return NULL;
}

/* When every workflow imported, export them all (they may refer to each other) and
 * import that: each comes back the same, or the export refused them with a reason. */
static void round_trip(tn_ds_result *r, const char *version)
{
    tn_def **defs = calloc(r->n, sizeof(*defs));
    for (size_t i = 0; defs && i < r->n; i++) {
        if (!r->wfs[i].def && !r->wfs[i].n_problems)
            fail("a refused workflow without a reason", r->wfs[i].name);
        if (!r->wfs[i].def) {
            free(defs);
            return;
        }
        defs[i] = r->wfs[i].def;
    }
    char *text = NULL;
    tn_errmsg m = {{0}};
    tn_err e = defs ? tn_ds_export(defs, r->n, version, &text, &m) : TN_ERR_NOMEM;
    free(defs);
    if (e == TN_ERR_UNSUPPORTED && m.text[0])
        return;
    if (e)
        fail("export failed", m.text);
    tn_ds_opts o = {.all_schedules = true, .resolve = by_code, .resolve_ctx = r};
    tn_ds_result back = {0};
    if (tn_ds_import(text, strlen(text), &o, &back, &m) || back.n != r->n)
        fail("an export does not import", m.text);
    for (size_t i = 0; i < r->n; i++) {
        if (!back.wfs[i].def)
            fail("an export is refused", back.wfs[i].problems[0]);
        same(r->wfs[i].def, back.wfs[i].def);
    }
    tn_ds_import_free(&back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1); /* exactly the input: ASan sees overreads */
    if (!in)
        return 0;
    memcpy(in, data, size);
    tn_ds_opts o = {.placeholder = size & 1, .all_schedules = true};
    tn_ds_result r = {0};
    tn_errmsg m = {{0}};
    tn_err err = tn_ds_import(in, size, &o, &r, &m);
    if (err && !m.text[0])
        fail("refused without a message", NULL);
    if (!err) {
        round_trip(&r, size & 2 ? "3.2" : "3.3");
        tn_ds_import_free(&r);
    }
    free(in);
    return 0;
}

/* libFuzzer target over the param substituter (core/def/params.c): the first byte picks
 * the flags and the time zone, the rest is the text, substituted against a few params, the
 * built-ins and a fixed schedule time. Any text is substituted or refused with a message;
 * a result is NUL-terminated and within TN_PARAMS_MAX_OUT; a text without '$' comes back
 * unchanged. With TN_PARAMS_QUOTE the result also goes to the condition evaluator, and the
 * text to the setValue output scanner. Without a context, no $[ survives. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *in)
{
    fprintf(stderr, "fuzz_params: %s: \"%s\"\n", what, in);
    abort();
}

static tn_kv *vars;

static void unknown(void *arg, const char *name)
{
    if (!name || !tn_def_name_valid(name))
        fail("on_unknown with a bad name", name ? name : "(null)");
    ++*(unsigned *)arg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const zones[] = {"UTC", "+08:00", "-0530", "Z"};
    if (size < 1 || size > 1 + 1024)
        return 0;
    if (!vars) {
        vars = tn_kv_new();
        if (!vars || tn_kv_set(vars, "dt", "20240229") || tn_kv_set(vars, "n", "3") ||
            tn_kv_set(vars, "q", "it's \\ a ${dt} $[yyyy]") || tn_kv_set(vars, "empty", "") ||
            tn_kv_set(vars, "system.biz.date", "shadowed"))
            abort();
    }
    char in[1025];
    memcpy(in, data + 1, size - 1);
    in[size - 1] = 0;
    unsigned nunknown = 0;
    tn_param_ctx ctx = {0};
    ctx.sched_ns = 1709251199123456789LL; /* 2024-02-29 23:59:59 UTC */
    ctx.wf_id = 42;
    ctx.task_id = 7;
    ctx.tz = zones[(data[0] >> 1) % 4];
    ctx.on_unknown = unknown;
    ctx.on_unknown_arg = &nunknown;
    unsigned flags = data[0] & TN_PARAMS_QUOTE;
    char *out = NULL;
    tn_errmsg e = {{0}};
    bool no_ctx = data[0] & 16;
    tn_err err = tn_params_subst(in, vars, no_ctx ? NULL : &ctx, flags, &out, &e);
    if (err != TN_OK) {
        if (out)
            fail("a refused text set its output", in);
        if (!e.text[0])
            fail("refused without a message", in);
        return 0;
    }
    /* (with TN_PARAMS_QUOTE, \$ inside a quoted string is an escaped $, copied as is) */
    if (no_ctx && !(flags & TN_PARAMS_QUOTE) && strstr(in, "$["))
        fail("date arithmetic without a context", in);
    size_t n = strlen(out);
    if (n > TN_PARAMS_MAX_OUT)
        fail("result over TN_PARAMS_MAX_OUT", in);
    if (!strchr(in, '$') && strcmp(in, out) != 0)
        fail("a text without $ changed", in);
    if (flags & TN_PARAMS_QUOTE) {
        bool r;
        tn_expr_eval(out, &r, &e);
    } else {
        tn_kv *outs = tn_kv_new();
        if (outs && tn_params_scan_outputs(out, n, outs) == TN_OK)
            for (uint32_t i = 0; i < tn_kv_len(outs); i++)
                if (!tn_def_name_valid(tn_kv_key(outs, i)))
                    fail("scan_outputs kept a bad name", in);
        tn_kv_free(outs);
    }
    free(out);
    return 0;
}

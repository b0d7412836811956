/* Task parameters: the key/value maps they travel in, built-ins and $[...] date arithmetic,
 * ${...} substitution, precedence of the param layers, setValue outputs, switch conditions. */
#ifndef TN_PARAMS_H
#define TN_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "def.h"
#include "err.h"
#include "tz.h"

/* Everything here is a pure function of its arguments: no I/O, safe to call from several
 * threads at once. The one shared state is a cache of the IANA zones opened (through
 * base/tz.h, ICU), kept for the life of the process; local time is read with
 * localtime_r/mktime. */

/* Bounds. A param value is at most TN_PARAMS_MAX_VALUE bytes everywhere: as written in a
 * definition, after substitution, and as passed by ${setValue(...)}. */
#define TN_PARAMS_MAX_VALUE   TN_DEF_MAX_STRING /* 64 KiB */
#define TN_PARAMS_MAX_OUT     (4u << 20)        /* text produced by one substitution */
#define TN_PARAMS_MAX_OUTPUTS TN_DEF_MAX_PARAMS /* distinct setValue keys of one task */
#define TN_PARAMS_MAX_CHAIN   32u               /* global param -> global param references */
#define TN_KV_MAX_ITEMS       100000u           /* entries in one tn_kv */
#define TN_EXPR_MAX_LEN       (64u << 10)       /* a switch condition after substitution */
#define TN_EXPR_MAX_DEPTH     64u               /* nesting of ( and ! in one condition */

/* ---- tn_kv: an owning map from param names to values ---------------------------------- */

/* Keys follow the name rule (tn_def_name_valid); values are NUL-terminated strings of at
 * most TN_PARAMS_MAX_VALUE bytes. Entries are kept sorted by key (byte order), so index
 * order is deterministic; lookups are O(log n), inserts O(n). Not locked: one thread
 * writes, or several only read. */
typedef struct tn_kv tn_kv;

/* A new empty map, or NULL when out of memory. Free it with tn_kv_free. */
tn_kv *tn_kv_new(void);
/* Free the map and every string in it; NULL is allowed. */
void tn_kv_free(tn_kv *kv);

/* Insert or replace key -> value; both are copied. TN_ERR_INVAL for a key that breaks the
 * name rule, TN_ERR_TOOBIG for a value over TN_PARAMS_MAX_VALUE or a map already holding
 * TN_KV_MAX_ITEMS keys, TN_ERR_NOMEM; on any error the map is unchanged. */
tn_err tn_kv_set(tn_kv *kv, const char *key, const char *value);
/* As tn_kv_set with lengths; neither needs a NUL, and an embedded NUL is TN_ERR_INVAL. */
tn_err tn_kv_setn(tn_kv *kv, const char *key, size_t klen, const char *value, size_t vlen);
/* Remove key; whether it was there. */
bool tn_kv_del(tn_kv *kv, const char *key);

/* The value of key, or NULL. kv may be NULL (an empty map). The pointer stays valid until
 * the key is set, deleted or merged over, or the map is freed. */
const char *tn_kv_get(const tn_kv *kv, const char *key);
/* As tn_kv_get for a name that is not NUL-terminated. */
const char *tn_kv_getn(const tn_kv *kv, const char *name, size_t len);

/* Entries by index, in key order: i < tn_kv_len(kv). kv may be NULL for tn_kv_len. The
 * pointers are valid as for tn_kv_get. */
uint32_t tn_kv_len(const tn_kv *kv);
const char *tn_kv_key(const tn_kv *kv, uint32_t i);
const char *tn_kv_value(const tn_kv *kv, uint32_t i);

/* A deep copy of src (NULL copies as empty) into *out, which the caller frees; *out is
 * written only on success. TN_ERR_NOMEM. */
tn_err tn_kv_copy(const tn_kv *src, tn_kv **out);
/* Copy every entry of src into dst; where both have a key, src's value wins. O(n + m).
 * src may be NULL. All or nothing: on error (TN_ERR_NOMEM, TN_ERR_TOOBIG) dst is unchanged. */
tn_err tn_kv_merge(tn_kv *dst, const tn_kv *src);
/* A map holding the entries of a definition's params or outputs (NULL gives an empty
 * map); *out as for tn_kv_copy. TN_ERR_INVAL, TN_ERR_TOOBIG, TN_ERR_NOMEM. */
tn_err tn_kv_from_def(const tn_def_kvs *src, tn_kv **out);

/* A map as the engine records it in an event attribute (a msgpack map of strings), for
 * readers of the log. *out as for tn_kv_copy. TN_ERR_CORRUPT (or the reader's error) for
 * anything else, TN_ERR_INVAL for a bad key, TN_ERR_NOMEM. */
tn_err tn_kv_decode(const void *buf, size_t len, tn_kv **out);

/* ---- context ------------------------------------------------------------------------ */

/* What built-ins and date arithmetic are evaluated against. Zero-initialise it and set
 * what you know; it is only read. */
typedef struct tn_param_ctx {
    int64_t sched_ns; /* the instance's schedule (business) time, unix ns; 0 = none */
    int64_t now_ns;   /* used in place of sched_ns when that is 0 (a manual run) */
    uint64_t wf_id;   /* ${system.workflow.instance.id} */
    uint64_t task_id; /* ${system.task.instance.id} */
    /* Time zone of every date: NULL = the process's local time (localtime_r, DST aware);
     * "UTC" (also "GMT", "Z"); a fixed offset "+08:00", "-0530", "+09"; or an IANA name
     * ("Asia/Shanghai", "America/New_York"), read through ICU with its DST rules (a
     * time in a DST gap reads with the offset before the gap). An unknown name makes
     * every function given this context fail with TN_ERR_INVAL naming the zone. */
    const char *tz;
    /* Called once for every ${name} left as written because nothing defines it, with the
     * name NUL-terminated (valid during the call), so callers can warn. May be NULL. It
     * is called from the calling thread, during the call. */
    void (*on_unknown)(void *arg, const char *name);
    void *on_unknown_arg;
} tn_param_ctx;

/* ---- substitution ------------------------------------------------------------------- */

/* Switch conditions: quote substituted values so they read as expression literals. */
#define TN_PARAMS_QUOTE 1u

/* Replace the placeholders of `in` and return the result in *out (malloc'd, NUL-terminated;
 * the caller frees it); *out is written only on success.
 *
 *   ${name}  name follows the name rule. A name starting with "system." is looked up
 *            among the built-ins first:
 *              system.biz.date     yyyyMMdd of the schedule day - 1
 *              system.biz.curdate  yyyyMMdd of the schedule day
 *              system.datetime     yyyyMMddHHmmss of the schedule time
 *              system.workflow.instance.id, system.task.instance.id   decimal ids
 *            then, like every other name, in `vars` (may be NULL). A name found nowhere is
 *            left as written and reported through ctx->on_unknown (DolphinScheduler
 *            leaves it too, and shell commands use ${HOME}). Text between ${ and the first
 *            } that is not a name (${VAR:-x}, ${#a}) is shell syntax: it is copied, and any
 *            placeholders inside it are still replaced. An unclosed ${ is copied.
 *   ${setValue(  is an output marker for the task's log, not a placeholder: it is copied,
 *            and placeholders inside it are replaced (echo '${setValue(day=${dt})}').
 *   #{...}   is never substituted.
 *   $[expr]  date arithmetic on the schedule time (below). ${name} inside it is replaced
 *            first ($[yyyyMMdd-${n}]). A bad expression or an unclosed $[ is an error.
 *   $        followed by anything else is copied.
 *
 * Substituted values are copied as they are: a value holding ${x} or $[...] is not
 * expanded again, so substitution always ends. With TN_PARAMS_QUOTE, every substituted
 * value (${name} and $[...]) becomes a literal of tn_expr_eval: a number (-?D+(.D+)?) or
 * true/false is inserted bare; anything else inside '...' with ' and \ escaped by \. A
 * placeholder already inside a quoted string of `in` ('${v}' or "${v}") is only escaped,
 * for that string's quote, so both `${v} == 'x'` and `'${v}' == 'x'` compare strings.
 *
 * Date arithmetic, as in DolphinScheduler. The base is the schedule time (ctx->sched_ns,
 * or ctx->now_ns when that is 0) in ctx->tz; FMT is a format in which yyyy, MM, dd, HH,
 * mm and ss are replaced and every other character is copied; N, M are integer
 * expressions with + - * / and parentheses.
 *   $[FMT]                 the base time           $[yyyyMMdd] $[HHmmss] $[yyyy-MM-dd]
 *   $[FMT+E] $[FMT-E]      plus/minus E days, E exact (rational) arithmetic, to the second:
 *                          $[yyyyMMdd-1], $[yyyyMMdd+7*2], $[HHmmss-1/24] (one hour),
 *                          $[yyyyMMddHHmmss-90/24/60] (90 minutes). The offset starts at the
 *                          first + or - followed by a digit or "(".
 *   add_months(FMT,N)      N months later; the day is clamped (Jan 31 + 1 = Feb 28/29)
 *   month_begin(FMT,N)     first day of the month, plus N days
 *   month_end(FMT,N)       last day of the month, plus N days
 *   week_begin(FMT,N)      Monday of the week, plus N days
 *   week_end(FMT,N)        Sunday of the week (weeks run Monday..Sunday), plus N days
 *   month_first_day(FMT[,N])  first day of the month N months later (N defaults to 0)
 *   month_last_day(FMT[,N])   last day of the month N months later
 *   week_first_day(FMT[,N])   Monday N weeks later
 *   week_last_day(FMT[,N])    Sunday N weeks later
 *   this_day(FMT)          the base day
 *   last_day(FMT)          the day before (DolphinScheduler's meaning: "yesterday"; the
 *                          last day of a month is month_last_day or month_end(FMT,0))
 *   year_week(FMT[,D])     "yyyy-ww" when FMT holds a '-', else "yyyyww": the week of the
 *                          year, weeks starting on day D (1 = Monday .. 7 = Sunday, default
 *                          1) and week 1 being the first with 4 days in the year. The year
 *                          is the year the week belongs to (2024-12-30 is 2025-01), where
 *                          DolphinScheduler prints the calendar year.
 *   timestamp(X) unixtime(X) milli_unixtime(X) micro_unixtime(X) nano_unixtime(X)
 *                          X is any expression above whose result reads as yyyyMMddHHmmss
 *                          ($[unixtime(yyyyMMdd000000)] is midnight); that time in ctx->tz
 *                          as seconds (timestamp, unixtime), ms, us or ns since 1970.
 * Time of day is kept by the calendar functions. Results must fall in years 1..9999.
 *
 * ctx may be NULL: then no built-ins (system.* names are looked up in vars) and any $[ is
 * an error. Errors, with `msg` (may be NULL) naming the expression and where it is:
 * TN_ERR_PARSE (a bad or unclosed $[...]), TN_ERR_INVAL (bad flags, a bad ctx->tz, a date
 * out of range), TN_ERR_TOOBIG (output over TN_PARAMS_MAX_OUT, a date expression over its
 * own small bounds), TN_ERR_NOMEM. */
tn_err tn_params_subst(const char *in, const tn_kv *vars, const tn_param_ctx *ctx,
                       unsigned flags, char **out, tn_errmsg *msg);

/* The start-time param `tern start --tenant USER` sets: the OS user the run's shell
 * tasks run as, over the definition's `tenant:` (sub-workflows inherit it). */
#define TN_PARAM_TENANT "system.tenant"

/* ---- civil time in a context's zone --------------------------------------------------- */

/* The civil time (weekday included) of unix second `sec` in zone `tz`, read as
 * tn_param_ctx.tz reads it (NULL = local time), so other date logic (dependent tasks'
 * windows) agrees with the params. TN_ERR_INVAL for a bad zone or a year out of 1..9999. */
tn_err tn_params_civil(const char *tz, int64_t sec, tn_civil *out, tn_errmsg *msg);
/* The unix second of a civil time (fields in range, weekday ignored) in zone `tz`; a
 * time in a DST gap reads with the offset before the gap. TN_ERR_INVAL as above. */
tn_err tn_params_instant(const char *tz, const tn_civil *c, int64_t *sec, tn_errmsg *msg);

/* ---- the business date of a run -------------------------------------------------------- */

/* Start-time params that set the run's schedule (business) time, as DolphinScheduler's
 * schedule time does: every built-in date and $[...] of the run derives from it.
 *   system.datetime=yyyyMMddHHmmss   that instant
 *   system.biz.curdate=yyyyMMdd      midnight of that day
 *   system.biz.date=yyyyMMdd         midnight of the day after (biz.date is "yesterday")
 * in zone `tz` (as tn_param_ctx.tz). The first of these present, in that order, sets the
 * time; the others given must agree with it. *found says whether any was given;
 * *sched_ns is written only then. TN_ERR_INVAL with the accepted form for a bad value or
 * a disagreement, or for a bad zone. */
tn_err tn_params_biz_time(const char *const *keys, const char *const *values, uint32_t n,
                          const char *tz, int64_t *sched_ns, bool *found, tn_errmsg *msg);

/* ---- precedence --------------------------------------------------------------------- */

/* The effective params of a task, as one map in *out (the caller frees it; written only on
 * success). Highest first: start-time `overrides` > the task's `local` params > values
 * passed from `upstream` tasks > `global` params. Every key of every layer is in the
 * result. Any argument but ctx and out may be NULL (an empty layer).
 *
 * Each value is resolved once, by tn_params_subst without flags, against the layers below
 * it, and never again:
 *   - a global value sees the built-ins and the other global params, resolved first in
 *     dependency order whatever the order they were written in (`b: ${a}x` and
 *     `a: $[yyyyMMdd]` work); a cycle (`a: ${b}`, `b: ${a}`) or a chain deeper than
 *     TN_PARAMS_MAX_CHAIN is TN_ERR_INVAL;
 *   - a local value sees the built-ins and the resolved globals overlaid with the upstream
 *     values (so `dt: ${dt}_x` extends the global or passed dt), not other local params;
 *   - a local declared with an empty value takes the value passed from upstream under the
 *     same name, verbatim, or stays empty when none was passed;
 *   - upstream values and overrides are literal: never substituted.
 * A resolved value over TN_PARAMS_MAX_VALUE is TN_ERR_TOOBIG. Errors name the param
 * (`global param "dt": bad date expression "$[yyyyMMdd-x]": ...`); other codes as for
 * tn_params_subst. Equal to tn_params_globals followed by tn_params_task. */
tn_err tn_params_effective(const tn_def_kvs *global, const tn_kv *upstream,
                           const tn_def_kvs *local, const tn_kv *overrides,
                           const tn_param_ctx *ctx, tn_kv **out, tn_errmsg *msg);

/* The first step alone: the global params resolved as above, for an engine that builds
 * them once per run. (A sub_workflow child that inherits its parent's globals merges its
 * own resolved globals over them with tn_kv_merge.) *out as for tn_params_effective. */
tn_err tn_params_globals(const tn_def_kvs *global, const tn_param_ctx *ctx, tn_kv **out,
                         tn_errmsg *msg);

/* The second step: the effective params given globals already resolved (NULL = none); the
 * globals are taken as they are. *out as for tn_params_effective. */
tn_err tn_params_task(const tn_kv *globals, const tn_kv *upstream, const tn_def_kvs *local,
                      const tn_kv *overrides, const tn_param_ctx *ctx, tn_kv **out,
                      tn_errmsg *msg);

/* ---- setValue outputs --------------------------------------------------------------- */

/* A task passes values downstream by printing ${setValue(key=value)} (or DolphinScheduler's
 * #{setValue(key=value)}) anywhere in its output. The key runs to the first '=' and must
 * follow the name rule; the value is every byte after it up to the first ")}" (it may
 * hold '=', ')', '}' and newlines). Later markers for a key win. Rules for bad markers:
 *   - a key that breaks the name rule (empty, over 64 bytes, another character): the
 *     marker is ignored and scanning goes on right after the offending byte;
 *   - a value that grows past TN_PARAMS_MAX_VALUE bytes, or holds a NUL, before its ")}":
 *     the marker is ignored and scanning goes on from the offending byte;
 *   - a new key when dst already holds TN_PARAMS_MAX_OUTPUTS keys: ignored, and the scan
 *     returns TN_ERR_TOOBIG once the text is consumed (dst still holds everything else,
 *     including later values of keys it has);
 *   - a marker still open at the end of the text is ignored.
 * Every ignored marker is counted in `dropped`. */

/* Scan a whole text (the log, or its tail) into dst. TN_OK, TN_ERR_TOOBIG (see above),
 * TN_ERR_NOMEM (dst then holds what was found before). */
tn_err tn_params_scan_outputs(const char *text, size_t len, tn_kv *dst);

/* The same over a stream: feed the output in chunks of any size, split anywhere (even in
 * the middle of a marker); the result equals one scan of the concatenation. The state is
 * bounded by TN_PARAMS_MAX_VALUE. Fields are private but for `dropped`. */
typedef struct tn_params_scanner {
    int state;
    uint32_t matched;
    uint32_t key_len;
    bool paren;
    char key[TN_DEF_PARAM_KEY_MAX + 1];
    char *val;
    size_t val_len, val_cap;
    uint64_t dropped;  /* markers ignored so far, by the rules above */
    uint64_t too_long; /* of those, for a value over TN_PARAMS_MAX_VALUE */
    uint64_t too_many; /* of those, for a key past TN_PARAMS_MAX_OUTPUTS */
} tn_params_scanner;

void tn_params_scanner_init(tn_params_scanner *s);
/* Consume one chunk; returns as tn_params_scan_outputs. The same dst every time. */
tn_err tn_params_scanner_feed(tn_params_scanner *s, const char *chunk, size_t len, tn_kv *dst);
/* Release the state; a marker still open is dropped. The scanner may be initialised again. */
void tn_params_scanner_fini(tn_params_scanner *s);
/* A task's log file scanned into dst, in chunks, as both executors do when a task ends.
 * TN_ERR_IO when the file cannot be opened; otherwise as tn_params_scan_outputs. */
tn_err tn_params_scan_file(const char *path, tn_kv *dst);
/* As tn_params_scan_file, and TN_ERR_TOOBIG when any marker was ignored for a limit (a
 * value over TN_PARAMS_MAX_VALUE, a key past TN_PARAMS_MAX_OUTPUTS), with `why` (may be
 * NULL) saying how many and which limit. Both executors fail a task whose outputs were
 * cut so, where DolphinScheduler 3.3 logs a warning and keeps the task successful: a
 * value that never arrives leaves ${key} in a downstream command for the shell to expand
 * to nothing. */
tn_err tn_params_scan_file_why(const char *path, tn_kv *dst, char *why, size_t wl);

/* ---- switch conditions -------------------------------------------------------------- */

/* Evaluate a switch condition, after tn_params_subst with TN_PARAMS_QUOTE. The language:
 *   literals     numbers -?D+(.D+)? (compared exactly as decimals: 1.50 == 1.5, 007 == 7),
 *                strings in '...' or "..." where \ makes the next character literal,
 *                true, false
 *   comparison   == != < <= > >=. Two numbers compare as numbers, two strings byte-wise,
 *                two booleans with == and != only. Values of different types are never
 *                equal (== is false, != true) and cannot be ordered (< is TN_ERR_TYPE).
 *                Comparisons do not chain: a < b < c is an error.
 *   logic        ! (binds tightest), then comparisons, then &&, then ||; parentheses.
 *                && and || evaluate both sides, so an error is never hidden by the
 *                value of the other side.
 *   truth        where a truth value is needed (&&, ||, !, the whole condition): false is
 *                false, a number is true when not zero, a string when not empty; so a
 *                bare ${rows} is true when rows != 0 and a bare ${name} when it is set.
 * *result is written only on success. Errors, with `msg` giving the 1-based column in
 * `expr` ("expected an operand at column 9"): TN_ERR_PARSE (syntax; a ${name} left by
 * substitution is reported as an unresolved parameter), TN_ERR_TYPE (ordering values of
 * different types or booleans), TN_ERR_TOOBIG (over TN_EXPR_MAX_LEN bytes or
 * TN_EXPR_MAX_DEPTH levels), TN_ERR_NOMEM, TN_ERR_INVAL (NULL arguments). */
tn_err tn_expr_eval(const char *expr, bool *result, tn_errmsg *msg);

#endif

/* Workflow definitions: one YAML file parsed into a validated tn_def, and the canonical
 * msgpack encoding of it that the store keeps (equal bytes mean an unchanged definition). */
#ifndef TN_DEF_H
#define TN_DEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "schedule.h"

/* Bounds on everything a definition file controls. A file over any of them is refused
 * with a message; nothing is truncated. */
#define TN_DEF_MAX_FILE        (16u << 20) /* bytes of YAML */
#define TN_DEF_MAX_TASKS       100000u
#define TN_DEF_MAX_NAME        255u        /* workflow, task, group, environment names: bytes */
#define TN_DEF_PARAM_KEY_MAX   64u         /* param keys: [A-Za-z0-9_.-] */
#define TN_DEF_MAX_TENANT      32u         /* an OS user name (tenant) */
#define TN_DEF_MAX_STRING      (64u << 10) /* any other string (description, param value) */
#define TN_DEF_MAX_COMMAND     (1u << 20)  /* a shell command */
#define TN_DEF_MAX_PARAMS      1000u       /* entries in one params or outputs map */
#define TN_DEF_MAX_DEPTH       32u         /* YAML nesting */
#define TN_DEF_MAX_LIST        10000u      /* deps, branch targets, cases, depends items */
#define TN_DEF_MAX_RETRIES     1000u
#define TN_DEF_MAX_DURATION_MS (3650ull * 24 * 3600 * 1000) /* 10 years */
#define TN_DEF_MAX_CPU_MILLI   (10000ull * 1000)            /* 10,000 cores */
#define TN_DEF_MAX_PIDS        4194304u /* pids_max: the kernel's PID_MAX_LIMIT */

/* The version of the encoding tn_def_encode writes and tn_def_decode reads, and the
 * largest encoding tn_def_decode accepts (an encoding is at most about 3x its YAML). */
#define TN_DEF_FORMAT_VERSION 1
#define TN_DEF_MAX_ENCODED    (2 * TN_DEF_MAX_FILE)

#define TN_DEF_DEFAULT_WORKER_GROUP      "default"
#define TN_DEF_DEFAULT_KILL_GRACE_MS     5000u
#define TN_DEF_DEFAULT_CHECK_INTERVAL_MS 10000u
/* A dependent item without `task` waits for the whole workflow. */
#define TN_DEF_DEPEND_ALL                "ALL"

/* Enumerations. Each list gives the C constant and the word used in YAML and in the
 * encoding; the encoding stores the word, so reordering a list never changes stored
 * bytes. For each enum E there is
 *     const char *tn_def_E_name(value)      the word, or "?" when out of range
 *     tn_err tn_def_E_parse(word, &value)   TN_OK, or TN_ERR_INVAL (out untouched)
 * and tn_def_E_allowed() gives "w1, w2, ..." for messages. */

#define TN_DEF_TASK_TYPE_LIST(X) \
    X(SHELL, shell)              \
    X(NOOP, noop)                \
    X(CONDITIONS, conditions)    \
    X(SWITCH, switch)            \
    X(DEPENDENT, dependent)      \
    X(SUB_WORKFLOW, sub_workflow)

#define TN_DEF_EXEC_LIST(X)           \
    X(PARALLEL, parallel)             \
    X(SERIAL_WAIT, serial_wait)       \
    X(SERIAL_DISCARD, serial_discard) \
    X(SERIAL_PRIORITY, serial_priority)

/* Ordered: a smaller value is more urgent, so an ascending sort puts highest first. */
#define TN_DEF_PRIORITY_LIST(X) \
    X(HIGHEST, highest)         \
    X(HIGH, high)               \
    X(MEDIUM, medium)           \
    X(LOW, low)                 \
    X(LOWEST, lowest)

#define TN_DEF_TIMEOUT_STRATEGY_LIST(X) \
    X(WARN, warn)                       \
    X(FAIL, fail)                       \
    X(WARNFAIL, warnfail)

/* end: a failed task stops the run; continue: independent branches go on. */
#define TN_DEF_FAILURE_STRATEGY_LIST(X) \
    X(END, end)                         \
    X(CONTINUE, continue)

#define TN_DEF_NOOP_RESULT_LIST(X) \
    X(SUCCESS, success)            \
    X(FAILURE, failure)

#define TN_DEF_COND_MODE_LIST(X) \
    X(ALL, all)                  \
    X(ANY, any)

/* The upstream outcome a conditions `when` item tests. */
#define TN_DEF_COND_STATE_LIST(X) \
    X(SUCCESS, success)           \
    X(FAILURE, failure)

#define TN_DEF_RELATION_LIST(X) \
    X(AND, and)                 \
    X(OR, or)

#define TN_DEF_CYCLE_LIST(X) \
    X(HOUR, hour)            \
    X(DAY, day)              \
    X(WEEK, week)            \
    X(MONTH, month)

/* fail: a failed dependency fails the task; wait: keep checking for failure_wait. */
#define TN_DEF_FAILURE_POLICY_LIST(X) \
    X(FAIL, fail)                     \
    X(WAIT, wait)

#define TN_DEF__TT(c, w) TN_DEF_TASK_##c,
#define TN_DEF__EX(c, w) TN_DEF_EXEC_##c,
#define TN_DEF__PR(c, w) TN_DEF_PRIO_##c,
#define TN_DEF__TS(c, w) TN_DEF_TIMEOUT_##c,
#define TN_DEF__FS(c, w) TN_DEF_FAILURE_##c,
#define TN_DEF__NR(c, w) TN_DEF_NOOP_##c,
#define TN_DEF__CM(c, w) TN_DEF_COND_##c,
#define TN_DEF__CS(c, w) TN_DEF_STATE_##c,
#define TN_DEF__RL(c, w) TN_DEF_REL_##c,
#define TN_DEF__CY(c, w) TN_DEF_CYCLE_##c,
#define TN_DEF__FP(c, w) TN_DEF_FPOLICY_##c,

typedef enum tn_def_task_type {
    TN_DEF_TASK_TYPE_LIST(TN_DEF__TT)
} tn_def_task_type;
typedef enum tn_def_exec {
    TN_DEF_EXEC_LIST(TN_DEF__EX)
} tn_def_exec;
typedef enum tn_def_priority {
    TN_DEF_PRIORITY_LIST(TN_DEF__PR)
} tn_def_priority;
typedef enum tn_def_timeout_strategy {
    TN_DEF_TIMEOUT_STRATEGY_LIST(TN_DEF__TS)
} tn_def_timeout_strategy;
typedef enum tn_def_failure_strategy {
    TN_DEF_FAILURE_STRATEGY_LIST(TN_DEF__FS)
} tn_def_failure_strategy;
typedef enum tn_def_noop_result {
    TN_DEF_NOOP_RESULT_LIST(TN_DEF__NR)
} tn_def_noop_result;
typedef enum tn_def_cond_mode {
    TN_DEF_COND_MODE_LIST(TN_DEF__CM)
} tn_def_cond_mode;
typedef enum tn_def_cond_state {
    TN_DEF_COND_STATE_LIST(TN_DEF__CS)
} tn_def_cond_state;
typedef enum tn_def_relation {
    TN_DEF_RELATION_LIST(TN_DEF__RL)
} tn_def_relation;
typedef enum tn_def_cycle {
    TN_DEF_CYCLE_LIST(TN_DEF__CY)
} tn_def_cycle;
typedef enum tn_def_failure_policy {
    TN_DEF_FAILURE_POLICY_LIST(TN_DEF__FP)
} tn_def_failure_policy;

#define TN_DEF__ENUM_API(e)                                       \
    const char *tn_def_##e##_name(tn_def_##e v);                  \
    tn_err tn_def_##e##_parse(const char *word, tn_def_##e *out); \
    const char *tn_def_##e##_allowed(void);

TN_DEF__ENUM_API(task_type)
TN_DEF__ENUM_API(exec)
TN_DEF__ENUM_API(priority)
TN_DEF__ENUM_API(timeout_strategy)
TN_DEF__ENUM_API(failure_strategy)
TN_DEF__ENUM_API(noop_result)
TN_DEF__ENUM_API(cond_mode)
TN_DEF__ENUM_API(cond_state)
TN_DEF__ENUM_API(relation)
TN_DEF__ENUM_API(cycle)
TN_DEF__ENUM_API(failure_policy)

/* Keys of a workflow and of a task, as written in YAML. key_line[] below is indexed by
 * these: the 1-based line where the key was written, 0 when it was not (always 0 in a
 * decoded definition). So the engine can both cite a line and tell an explicit value
 * from a default. The canonical encoding stores values in the order of these lists:
 * reordering one changes the stored bytes (and needs a new TN_DEF_FORMAT_VERSION). */
#define TN_DEF_WF_KEY_LIST(X)             \
    X(NAME, name)                         \
    X(DESCRIPTION, description)           \
    X(PARAMS, params)                     \
    X(EXECUTION, execution)               \
    X(PRIORITY, priority)                 \
    X(TIMEOUT, timeout)                   \
    X(TIMEOUT_STRATEGY, timeout_strategy) \
    X(FAILURE_STRATEGY, failure_strategy) \
    X(TASKS, tasks)                       \
    X(TENANT, tenant)                     \
    X(SCHEDULE, schedule)                 \
    X(ALERTS, alerts)

#define TN_DEF_TASK_KEY_LIST(X)           \
    X(NAME, name)                         \
    X(TYPE, type)                         \
    X(DEPS, deps)                         \
    X(ENABLED, enabled)                   \
    X(PARAMS, params)                     \
    X(RETRIES, retries)                   \
    X(RETRY_INTERVAL, retry_interval)     \
    X(TIMEOUT, timeout)                   \
    X(TIMEOUT_STRATEGY, timeout_strategy) \
    X(DELAY, delay)                       \
    X(PRIORITY, priority)                 \
    X(WORKER_GROUP, worker_group)         \
    X(TASK_GROUP, task_group)             \
    X(DISPATCH_TIMEOUT, dispatch_timeout) \
    X(ENVIRONMENT, environment)           \
    X(COMMAND, command)                   \
    X(KILL_GRACE, kill_grace)             \
    X(MEMORY_MAX, memory_max)             \
    X(CPU_MAX, cpu_max)                   \
    X(PIDS_MAX, pids_max)                 \
    X(RESULT, result)                     \
    X(DURATION, duration)                 \
    X(OUTPUTS, outputs)                   \
    X(WHEN, when)                         \
    X(ON_SUCCESS, on_success)             \
    X(ON_FAILURE, on_failure)             \
    X(CASES, cases)                       \
    X(DEFAULT, default)                   \
    X(RELATION, relation)                 \
    X(DEPENDS, depends)                   \
    X(CHECK_INTERVAL, check_interval)     \
    X(FAILURE_POLICY, failure_policy)     \
    X(FAILURE_WAIT, failure_wait)         \
    X(WORKFLOW, workflow)

#define TN_DEF__WK(c, w) TN_DEF_WK_##c,
#define TN_DEF__TK(c, w) TN_DEF_TK_##c,
typedef enum tn_def_wf_key {
    TN_DEF_WF_KEY_LIST(TN_DEF__WK) TN_DEF_WK__COUNT
} tn_def_wf_key;
typedef enum tn_def_task_key {
    TN_DEF_TASK_KEY_LIST(TN_DEF__TK) TN_DEF_TK__COUNT
} tn_def_task_key;

/* Which task types accept a key. Keys every type accepts: name, type, deps, enabled,
 * params, retries, retry_interval, timeout, timeout_strategy, delay, priority. Keys
 * that place a task on a worker (worker_group, task_group, dispatch_timeout) apply to
 * shell and noop, the types that are dispatched; keys of the process itself
 * (environment, command, kill_grace, memory_max, cpu_max) to shell only. Logic tasks
 * run in the master, so worker keys on them would be silently ignored: they are errors. */
bool tn_def_task_key_applies(tn_def_task_key key, tn_def_task_type type);

/* A param or output. Lists of them are sorted by key (byte order) and keys are unique:
 * a YAML mapping has no order, so the order it was written in must not reach the
 * encoding. Keys follow the name rule; values are at most TN_DEF_MAX_STRING bytes, ""
 * for an empty or null YAML value (a local param with an empty value takes the value
 * passed from upstream). */
typedef struct tn_def_kv {
    char *key;
    char *value;
} tn_def_kv;

typedef struct tn_def_kvs {
    tn_def_kv *items;
    uint32_t n;
} tn_def_kvs;

/* A reference to another task of the same workflow: its name as written and its index
 * in tn_def.tasks, resolved by validation. */
typedef struct tn_def_ref {
    char *name;
    uint32_t index;
    uint32_t line;
} tn_def_ref;

/* conditions: `when: {all|any: [{task: T, state: success|failure}, ...]}` */
typedef struct tn_def_cond_item {
    tn_def_ref task; /* always one of the conditions task's deps */
    tn_def_cond_state state;
} tn_def_cond_item;

/* switch: `cases: [{when: EXPR, then: TARGET}, ...]`, first true case wins. */
typedef struct tn_def_case {
    char *when;      /* expression, not parsed here; never empty */
    tn_def_ref then; /* a direct successor of the switch task */
    uint32_t line;
} tn_def_case;

/* dependent: one item of `depends`. `date` is one of: today, this_hour, lastN (N in
 * 1..366, in units of the cycle; hour and day cycles), this_week, last_week,
 * last_monday .. last_sunday (week), this_month, last_month, last_month_begin,
 * last_month_end (month). Which ones a cycle accepts: tn_def_date_valid(). */
typedef struct tn_def_depend {
    char *workflow;
    char *task; /* a task name, or TN_DEF_DEPEND_ALL */
    tn_def_cycle cycle;
    char *date;
    uint32_t line;
} tn_def_depend;

/* One task. Fields that do not apply to its type hold their defaults (NULL, 0, the
 * default group) so readers never see stray values. Durations are in ms everywhere. */
typedef struct tn_def_task {
    char *name;
    tn_def_task_type type;
    tn_def_ref *deps; /* upstream tasks, in the order written; unique */
    uint32_t n_deps;
    bool enabled; /* false: skipped, successors go on as if it succeeded */
    tn_def_kvs params;
    uint32_t retries; /* extra attempts after a failure */
    uint64_t retry_interval_ms;
    uint64_t timeout_ms; /* 0 = none */
    tn_def_timeout_strategy timeout_strategy;
    uint64_t delay_ms;
    tn_def_priority priority;

    /* shell and noop */
    char *worker_group;           /* never NULL; "default" */
    char *task_group;             /* NULL = none */
    uint64_t dispatch_timeout_ms; /* 0 = wait forever */

    /* shell */
    char *environment; /* NULL = none */
    char *command;     /* non-empty for shell; NULL for every other type */
    uint64_t kill_grace_ms;
    uint64_t memory_max;    /* bytes; 0 = no limit */
    uint64_t cpu_max_milli; /* 1.5 cores = 1500; 0 = no limit */
    uint32_t pids_max;      /* processes at once; 0 = the worker's default (--pids-max) */

    struct {
        tn_def_noop_result result;
        uint64_t duration_ms;
        tn_def_kvs outputs;
    } noop;

    struct {
        tn_def_cond_mode mode;
        tn_def_cond_item *when; /* at least one */
        uint32_t n_when;
        tn_def_ref *on_success; /* each a direct successor; may be empty */
        uint32_t n_on_success;
        tn_def_ref *on_failure;
        uint32_t n_on_failure;
    } cond;

    struct {
        tn_def_case *cases; /* at least one */
        uint32_t n_cases;
        bool has_default;
        tn_def_ref dflt; /* valid when has_default */
    } sw;

    struct {
        tn_def_relation relation;
        tn_def_depend *depends; /* at least one */
        uint32_t n_depends;
        uint64_t check_interval_ms; /* > 0 */
        tn_def_failure_policy failure_policy;
        uint64_t failure_wait_ms; /* > 0 with policy wait, else 0 */
    } dep;

    struct {
        char *workflow; /* never the workflow's own name */
    } sub;

    /* Computed by validation. */
    uint32_t *succ; /* indices of the tasks that list this one in deps, ascending */
    uint32_t n_succ;

    /* Source lines (0 when decoded): of the task's list item and of each key. */
    uint32_t line;
    uint32_t key_line[TN_DEF_TK__COUNT];
} tn_def_task;

/* alerts: one item of the workflow's `alerts` list: on which outcomes, and where to. */
#define TN_DEF_ALERT_ON_LIST(X) \
    X(FAILURE, failure)         \
    X(TIMEOUT, timeout)         \
    X(SUCCESS, success)         \
    X(KILL, kill)               \
    X(TASK_FAILURE, task_failure)
#define TN_DEF__AO(c, w) TN_DEF_ALERT_##c,
typedef enum tn_def_alert_on {
    TN_DEF_ALERT_ON_LIST(TN_DEF__AO) TN_DEF_ALERT__COUNT
} tn_def_alert_on;
#define TN_DEF_MAX_ALERTS    32
#define TN_DEF_MAX_URL       2048
#define TN_DEF_MAX_ALERT_CMD 4096
/* The word of an outcome ("failure"), or "?" */
const char *tn_def_alert_on_name(tn_def_alert_on o);

typedef struct tn_def_alert {
    char *on;      /* the outcomes, canonical: their words in list order, comma-separated */
    uint32_t mask; /* bit (1 << tn_def_alert_on) per outcome; computed by validation */
    char *webhook; /* http:// or https:// URL, or NULL */
    char *command; /* run by /bin/sh -c on the master, the alert as JSON on stdin, or NULL */
    uint32_t line;
} tn_def_alert;

/* A validated workflow. Every string and array in it belongs to it and is freed by
 * tn_def_free; nothing points into the YAML or encoded buffer it came from. Nothing
 * changes it after tn_def_parse or tn_def_decode returns, so several threads may read
 * one definition at once. */
typedef struct tn_def {
    char *name;
    char *description; /* never NULL; "" when not set */
    tn_def_kvs params;
    tn_def_exec execution;
    tn_def_priority priority;
    uint64_t timeout_ms; /* whole run; 0 = none */
    tn_def_timeout_strategy timeout_strategy;
    tn_def_failure_strategy failure_strategy;
    tn_def_task *tasks; /* in the order written; at least one */
    uint32_t n_tasks;
    /* The OS user the workflow's shell tasks run as (DolphinScheduler's tenant), with its
     * home and groups; NULL = the worker's own user. A portable user name: 1..32 bytes
     * of [A-Za-z0-9._-], not starting with '-'. */
    char *tenant;
    /* The `schedule:` block: when instances start (applying the definition sets the
     * workflow's schedule, as `tern schedule set` does); NULL when not written. Its tz is
     * never "" (an unwritten timezone is "UTC"), its bounds are whole seconds and its
     * params are sorted by key. */
    tn_sched_spec *schedule;
    /* Who hears about its instances (`alerts:`); exactly one of webhook and command each. */
    tn_def_alert *alerts;
    uint32_t n_alerts;

    /* Computed by validation. topo: every task index once, each after all its deps;
     * among ready tasks the smallest index comes first, so a file already written in
     * dependency order gives 0, 1, 2, ... */
    uint32_t *topo;
    uint32_t *by_name; /* task indices sorted by name, for tn_def_task_find */

    uint32_t key_line[TN_DEF_WK__COUNT]; /* 0 when not written or decoded */
} tn_def;

/* Parse and validate one workflow from `buf` (`len` bytes, need not be NUL-terminated).
 * `filename` only labels messages ("defs/etl.yaml:14: ..."); NULL reads "<input>".
 * On success *out is a new definition the caller frees with tn_def_free. On failure
 * *out is untouched, `msg` (may be NULL) holds "FILE:LINE: reason", and the result is
 * TN_ERR_PARSE (bad YAML or a bad definition), TN_ERR_TOOBIG (a bound above) or
 * TN_ERR_NOMEM. The first problem found is reported.
 * Reading rules: a key with an empty or null value (`timeout:`, `~`) counts as not
 * written, except in params and outputs where it is ""; every scalar is a string until a
 * key gives it a type, so `no` stays "no"; booleans are true/false. Duplicate keys,
 * YAML aliases and a second document are refused. */
tn_err tn_def_parse(const char *filename, const char *buf, size_t len, tn_def **out,
                    tn_errmsg *msg);

/* tn_def_parse on the contents of the file at `path`; also TN_ERR_NOENT, TN_ERR_PERM,
 * TN_ERR_IO when it cannot be read. */
tn_err tn_def_parse_file(const char *path, tn_def **out, tn_errmsg *msg);

/* Free a definition, including a half-built one; NULL is allowed. */
void tn_def_free(tn_def *d);
/* Whether s is a tenant as a definition or `tern start --tenant` may give it. */
bool tn_def_tenant_valid(const char *s);

/* The index of the task named `name`, or -1. O(log n). */
int32_t tn_def_task_find(const tn_def *d, const char *name);

/* Canonical msgpack encoding of a validated definition: the same definition always
 * gives the same bytes, whatever the comments, spacing, key order or spelling
 * ("60s" or "1m") of its YAML. Source lines are not encoded. On success *out is a
 * malloc'd buffer of *len bytes the caller frees with free(); on failure (TN_ERR_NOMEM,
 * or TN_ERR_INVAL for a NULL or unvalidated definition) the out-params are untouched. */
tn_err tn_def_encode(const tn_def *d, char **out, size_t *len);

/* The definition as YAML (libyaml's emitter) that tn_def_parse reads back to the same
 * canonical encoding: every key whose value differs from its default, durations in their
 * shortest compound form, multi-line strings as literal blocks. *out is a malloc'd,
 * NUL-terminated buffer of *len bytes; TN_ERR_NOMEM or TN_ERR_INVAL leave them untouched. */
tn_err tn_def_to_yaml(const tn_def *d, char **out, size_t *len);

/* Decode bytes from tn_def_encode. Strict and bounded: wrong format version
 * (TN_ERR_VERSION), truncated input (TN_ERR_TRUNCATED), wrong types (TN_ERR_TYPE),
 * oversized lists or strings (TN_ERR_TOOBIG), trailing bytes, a non-canonical encoding
 * or an invalid definition (TN_ERR_CORRUPT) are refused; it never reads outside `buf`.
 * The result is validated like a parsed file, and re-encodes to exactly `buf`.
 * *out as for tn_def_parse; `buf` is not referenced after return. */
tn_err tn_def_decode(const void *buf, size_t len, tn_def **out, tn_errmsg *msg);

/* Names of workflows, tasks, groups and environments: 1..TN_DEF_MAX_NAME bytes of valid
 * UTF-8 without control characters (C0, DEL, C1) or '/'. */
bool tn_def_name_valid(const char *s);

/* Whether `date` is a dependent date accepted with `cycle` (see tn_def_depend). */
bool tn_def_date_valid(tn_def_cycle cycle, const char *date);

/* "250ms", "10s", "5m", "2h", "1d", compound forms with units from largest to smallest,
 * each at most once ("1h30m", "2d4h", "1m30s500ms"), or "0" → ms; at most
 * TN_DEF_MAX_DURATION_MS. TN_ERR_INVAL otherwise, *out untouched. */
tn_err tn_parse_duration_ms(const char *s, uint64_t *out);

/* ms as the shortest compound form tn_parse_duration_ms reads back ("1h30m", "0") into
 * buf (32 bytes suffice); returns the length. */
size_t tn_format_duration(uint64_t ms, char *buf, size_t len);

/* "512M", "2G", "1024K", "1T" (powers of 1024; lower case too) or plain bytes → bytes.
 * TN_ERR_INVAL on anything else or on overflow, *out untouched. */
tn_err tn_parse_size(const char *s, uint64_t *out);

/* Cores as a decimal ("1.5", "2", "0.25") → thousandths of a core, at most three
 * decimals and TN_DEF_MAX_CPU_MILLI. TN_ERR_INVAL otherwise, *out untouched. */
tn_err tn_parse_cpu_milli(const char *s, uint64_t *out);

#endif

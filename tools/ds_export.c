/* tern definitions as a DolphinScheduler 3.2 or 3.3 export, so a user can go back: what
 * tn_ds_import reads into the same definition. What DolphinScheduler cannot say is refused. */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds.h"
#include "tz.h"

typedef struct ectx {
    const tn_def *d;
    bool v33;
    tn_errmsg *msg;
    tn_err err;
} ectx;

static void refuse(ectx *x, const char *task, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(ectx *x, const char *task, const char *fmt, ...)
{
    if (x->err)
        return;
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    x->err = TN_ERR_UNSUPPORTED;
    if (task)
        tn_errmsg_set(x->msg, x->err, "workflow \"%s\", task \"%s\": %s", x->d->name, task,
                      why);
    else
        tn_errmsg_set(x->msg, x->err, "workflow \"%s\": %s", x->d->name, why);
}

static void upper(char *dst, const char *src, size_t n)
{
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++)
        dst[i] = (char)(src[i] >= 'a' && src[i] <= 'z' ? src[i] - 32 : src[i]);
    dst[i] = 0;
}

static json_t *up_str(const char *s)
{
    char b[64];
    upper(b, s, sizeof(b));
    return json_string(b);
}

/* ms as whole minutes, as DolphinScheduler counts them; refused otherwise. */
static json_int_t minutes(ectx *x, const char *task, const char *key, uint64_t ms)
{
    if (ms % 60000u)
        refuse(x, task,
               "\"%s\" is not a whole number of minutes, the unit DolphinScheduler "
               "uses",
               key);
    return (json_int_t)(ms / 60000u);
}

static json_t *props(const tn_def_kvs *kv)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < kv->n; i++)
        json_array_append_new(a,
                              json_pack("{s:s,s:s,s:s,s:s}", "prop", kv->items[i].key, "direct",
                                        "IN", "type", "VARCHAR", "value", kv->items[i].value));
    return a;
}

static int64_t wf_code(const char *wf)
{
    return tn_ds_code(wf, NULL);
}

static json_t *dependence(ectx *x, const tn_def_task *t)
{
    json_t *items = json_array();
    for (uint32_t i = 0; i < t->dep.n_depends; i++) {
        const tn_def_depend *dp = &t->dep.depends[i];
        const char *dv = tn_ds_date(tn_def_cycle_name(dp->cycle), dp->date, false);
        if (!dv)
            refuse(x, t->name, "date \"%s\" has no DolphinScheduler dateValue", dp->date);
        bool all = strcmp(dp->task, TN_DEF_DEPEND_ALL) == 0;
        json_array_append_new(
            items, json_pack("{s:I,s:I,s:I,s:s,s:s}", "projectCode", (json_int_t)0,
                             "definitionCode", (json_int_t)wf_code(dp->workflow), "depTaskCode",
                             (json_int_t)(all ? 0 : tn_ds_code(dp->workflow, dp->task)),
                             "cycle", tn_def_cycle_name(dp->cycle), "dateValue", dv ? dv : ""));
    }
    const char *rel = t->dep.relation == TN_DEF_REL_OR ? "OR" : "AND";
    json_t *d = json_pack("{s:s,s:[{s:s,s:o}]}", "relation", rel, "dependTaskList", "relation",
                          rel, "dependItemList", items);
    if (t->dep.check_interval_ms != TN_DEF_DEFAULT_CHECK_INTERVAL_MS) {
        if (t->dep.check_interval_ms % 1000u)
            refuse(x, t->name, "\"check_interval\" is not a whole number of seconds");
        json_object_set_new(d, "checkInterval",
                            json_integer((json_int_t)(t->dep.check_interval_ms / 1000u)));
    }
    if (t->dep.failure_policy == TN_DEF_FPOLICY_WAIT) {
        json_object_set_new(d, "failurePolicy", json_string("DEPENDENT_FAILURE_WAITING"));
        json_object_set_new(
            d, "failureWaitingTime",
            json_integer(minutes(x, t->name, "failure_wait", t->dep.failure_wait_ms)));
    }
    return d;
}

static json_t *task_params(ectx *x, const tn_def_task *t)
{
    json_t *p = json_pack("{s:o,s:[]}", "localParams", props(&t->params), "resourceList");
    const char *wf = x->d->name;
    switch (t->type) {
    case TN_DEF_TASK_SHELL: json_object_set_new(p, "rawScript", json_string(t->command)); break;
    case TN_DEF_TASK_CONDITIONS: {
        json_t *items = json_array(), *ok = json_array(), *ko = json_array();
        for (uint32_t i = 0; i < t->cond.n_when; i++)
            json_array_append_new(
                items,
                json_pack("{s:I,s:s}", "depTaskCode",
                          (json_int_t)tn_ds_code(wf, t->cond.when[i].task.name), "status",
                          t->cond.when[i].state == TN_DEF_STATE_SUCCESS ? "SUCCESS" :
                                                                          "FAILURE"));
        for (uint32_t i = 0; i < t->cond.n_on_success; i++)
            json_array_append_new(ok, json_integer(tn_ds_code(wf, t->cond.on_success[i].name)));
        for (uint32_t i = 0; i < t->cond.n_on_failure; i++)
            json_array_append_new(ko, json_integer(tn_ds_code(wf, t->cond.on_failure[i].name)));
        const char *rel = t->cond.mode == TN_DEF_COND_ANY ? "OR" : "AND";
        json_object_set_new(p, "dependence",
                            json_pack("{s:s,s:[{s:s,s:o}]}", "relation", rel, "dependTaskList",
                                      "relation", rel, "dependItemList", items));
        json_object_set_new(p, "conditionResult",
                            json_pack("{s:o,s:o}", "successNode", ok, "failedNode", ko));
        break;
    }
    case TN_DEF_TASK_SWITCH: {
        json_t *cases = json_array();
        for (uint32_t i = 0; i < t->sw.n_cases; i++)
            json_array_append_new(
                cases, json_pack("{s:s,s:I}", "condition", t->sw.cases[i].when, "nextNode",
                                 (json_int_t)tn_ds_code(wf, t->sw.cases[i].then.name)));
        json_t *sr = json_pack("{s:o}", "dependTaskList", cases);
        if (t->sw.has_default)
            json_object_set_new(sr, "nextNode", json_integer(tn_ds_code(wf, t->sw.dflt.name)));
        json_object_set_new(p, "switchResult", sr);
        break;
    }
    case TN_DEF_TASK_DEPENDENT: json_object_set_new(p, "dependence", dependence(x, t)); break;
    case TN_DEF_TASK_SUB_WORKFLOW:
        json_object_set_new(p, x->v33 ? "workflowDefinitionCode" : "processDefinitionCode",
                            json_integer(wf_code(t->sub.workflow)));
        break;
    case TN_DEF_TASK_NOOP:
        refuse(x, t->name, "noop tasks have no DolphinScheduler equivalent");
        break;
    }
    return p;
}

static const char *const ds_types[] = {"SHELL",  "NOOP",      "CONDITIONS",
                                       "SWITCH", "DEPENDENT", "SUB_PROCESS"};

/* Keys of a task that DolphinScheduler has no field for, when they differ from tern's
 * default: refused, since the import could not give them back. */
static void task_unexpressible(ectx *x, const tn_def_task *t, int64_t *env, int64_t *tg)
{
    char rest[64];
    if (t->dispatch_timeout_ms)
        refuse(x, t->name, "\"dispatch_timeout\" has no DolphinScheduler field");
    if (t->type == TN_DEF_TASK_SHELL && t->kill_grace_ms != TN_DEF_DEFAULT_KILL_GRACE_MS)
        refuse(x, t->name, "\"kill_grace\" has no DolphinScheduler field");
    if (t->pids_max)
        refuse(x, t->name, "\"pids_max\" has no DolphinScheduler field");
    if (t->environment &&
        (sscanf(t->environment, "ds-env-%" SCNd64 "%63s", env, rest) != 1 || *env <= 0))
        refuse(x, t->name,
               "environment \"%s\": DolphinScheduler names environments by "
               "number (ds-env-N)",
               t->environment);
    if (t->task_group &&
        (sscanf(t->task_group, "ds-task-group-%" SCNd64 "%63s", tg, rest) != 1 || *tg <= 0))
        refuse(x, t->name,
               "task group \"%s\": DolphinScheduler names task groups by number "
               "(ds-task-group-N)",
               t->task_group);
    if (t->memory_max % (1u << 20))
        refuse(x, t->name, "\"memory_max\" is not a whole number of MiB");
    if (t->cpu_max_milli % 10u)
        refuse(x, t->name, "\"cpu_max\" has more than two decimals");
    if (!t->timeout_ms && t->timeout_strategy != TN_DEF_TIMEOUT_WARN)
        refuse(x, t->name, "\"timeout_strategy\" without a timeout");
    if (!t->retries && t->retry_interval_ms)
        refuse(x, t->name, "\"retry_interval\" without retries");
}

static json_t *task_def(ectx *x, const tn_def_task *t)
{
    int64_t env = -1, tg = 0;
    task_unexpressible(x, t, &env, &tg);
    static const char *const strat[] = {"WARN", "FAILED", "WARNFAILED"};
    json_t *o = json_pack(
        "{s:I,s:s,s:i,s:s,s:s,s:o,s:s,s:o,s:s,s:I,s:I,s:I,s:s,s:s,s:I,s:I,s:I,s:i,s:I,s:I,s:s,"
        "s:s}",
        "code", (json_int_t)tn_ds_code(x->d->name, t->name), "name", t->name, "version", 1,
        "description", "", "taskType",
        t->type == TN_DEF_TASK_SUB_WORKFLOW && x->v33 ? "SUB_WORKFLOW" : ds_types[t->type],
        "taskParams", task_params(x, t), "flag", t->enabled ? "YES" : "NO", "taskPriority",
        up_str(tn_def_priority_name(t->priority)), "workerGroup", t->worker_group,
        "environmentCode", (json_int_t)env, "failRetryTimes", (json_int_t)t->retries,
        "failRetryInterval", minutes(x, t->name, "retry_interval", t->retry_interval_ms),
        "timeoutFlag", t->timeout_ms ? "OPEN" : "CLOSE", "timeoutNotifyStrategy",
        strat[t->timeout_strategy], "timeout", minutes(x, t->name, "timeout", t->timeout_ms),
        "delayTime", minutes(x, t->name, "delay", t->delay_ms), "taskGroupId", (json_int_t)tg,
        "taskGroupPriority", 0, "cpuQuota",
        (json_int_t)(t->cpu_max_milli ? (int64_t)(t->cpu_max_milli / 10u) : -1), "memoryMax",
        (json_int_t)(t->memory_max ? (int64_t)(t->memory_max >> 20) : -1), "taskExecuteType",
        "BATCH", "isCache", "NO");
    return o;
}

static json_t *relations(const ectx *x, int64_t code)
{
    json_t *a = json_array();
    for (uint32_t i = 0; i < x->d->n_tasks; i++) {
        const tn_def_task *t = &x->d->tasks[i];
        for (uint32_t j = 0; j <= t->n_deps; j++) {
            if (j == t->n_deps && t->n_deps)
                break;
            int64_t pre = t->n_deps ? tn_ds_code(x->d->name, t->deps[j].name) : 0;
            json_t *r =
                json_pack("{s:s,s:I,s:i,s:I,s:i,s:s,s:{}}", "name", "", "preTaskCode",
                          (json_int_t)pre, "preTaskVersion", pre ? 1 : 0, "postTaskCode",
                          (json_int_t)tn_ds_code(x->d->name, t->name), "postTaskVersion", 1,
                          "conditionType", "NONE", "conditionParams");
            json_object_set_new(r, x->v33 ? "workflowDefinitionCode" : "processDefinitionCode",
                                json_integer(code));
            json_array_append_new(a, r);
        }
    }
    return a;
}

/* A window bound as DolphinScheduler writes it: civil time in the schedule's zone. */
static json_t *civil(ectx *x, tn_tz *tz, int64_t ns)
{
    tn_civil c;
    if (!ns)
        return json_null();
    if (!tz || tn_tz_to_civil(tz, ns, &c) != TN_OK) {
        refuse(x, NULL, "the schedule's time zone cannot be read");
        return json_null();
    }
    char b[40];
    snprintf(b, sizeof(b), "%04d-%02d-%02d %02d:%02d:%02d", c.year, c.month, c.day, c.hour,
             c.minute, c.second);
    return json_string(b);
}

static json_t *schedule(ectx *x, int64_t code)
{
    const tn_sched_spec *s = x->d->schedule;
    if (!s)
        return json_null();
    if (s->overlap != TN_OVERLAP_ALLOW_ALL || s->catchup_ms != TN_SCHED_DEFAULT_CATCHUP_MS ||
        s->pause_on_failure || s->nparams)
        refuse(x, NULL,
               "the schedule's overlap, catchup, pause_on_failure and params have no "
               "DolphinScheduler field: leave them at their defaults to export");
    const char *zone = s->tz[0] ? s->tz : "UTC";
    tn_tz *tz = NULL;
    (void)tn_tz_open(zone, &tz, NULL);
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:s,s:s,s:I}", "crontab", s->cron, "timezoneId",
                          zone, "startTime", civil(x, tz, s->start_ns), "endTime",
                          civil(x, tz, s->end_ns), "releaseState", "ONLINE", "warningType",
                          "NONE", "warningGroupId", (json_int_t)0);
    tn_tz_free(tz);
    json_object_set_new(o, x->v33 ? "workflowDefinitionCode" : "processDefinitionCode",
                        json_integer(code));
    if (s->failure_strategy[0])
        json_object_set_new(o, "failureStrategy", up_str(s->failure_strategy));
    if (s->priority[0])
        json_object_set_new(o, x->v33 ? "workflowInstancePriority" : "processInstancePriority",
                            up_str(s->priority));
    if (s->worker_group[0])
        json_object_set_new(o, "workerGroup", json_string(s->worker_group));
    if (x->d->tenant)
        json_object_set_new(o, "tenantCode", json_string(x->d->tenant));
    return o;
}

static json_t *export_one(ectx *x)
{
    const tn_def *d = x->d;
    if (d->timeout_strategy != TN_DEF_TIMEOUT_WARN ||
        d->failure_strategy != TN_DEF_FAILURE_END || d->priority != TN_DEF_PRIO_MEDIUM)
        refuse(x, NULL,
               "a workflow's timeout_strategy, failure_strategy and priority are set "
               "per run in DolphinScheduler (schedule or start), not in its definition");
    int64_t code = wf_code(d->name);
    json_t *gp = props(&d->params);
    char *gps = json_dumps(gp, JSON_COMPACT);
    json_decref(gp);
    json_t *def = json_pack(
        "{s:I,s:s,s:i,s:s,s:s,s:s,s:s,s:I,s:o,s:s}", "code", (json_int_t)code, "name", d->name,
        "version", 1, "releaseState", "ONLINE", "description", d->description, "globalParams",
        gps ? gps : "[]", "flag", "YES", "timeout", minutes(x, NULL, "timeout", d->timeout_ms),
        "tenantCode", d->tenant ? json_string(d->tenant) : json_null(), "executionType",
        "PARALLEL");
    free(gps);
    json_object_set_new(def, "executionType", up_str(tn_def_exec_name(d->execution)));
    json_t *tasks = json_array();
    for (uint32_t i = 0; i < d->n_tasks; i++)
        json_array_append_new(tasks, task_def(x, &d->tasks[i]));
    return json_pack("{s:o,s:o,s:o,s:o}", x->v33 ? "workflowDefinition" : "processDefinition",
                     def, x->v33 ? "workflowTaskRelationList" : "processTaskRelationList",
                     relations(x, code), "taskDefinitionList", tasks, "schedule",
                     schedule(x, code));
}

tn_err tn_ds_export(tn_def *const *defs, size_t n, const char *version, char **out,
                    tn_errmsg *msg)
{
    if (!version || (strcmp(version, "3.2") != 0 && strcmp(version, "3.3") != 0))
        return tn_errmsg_set(msg, TN_ERR_INVAL, "version \"%s\": write 3.2 or 3.3",
                             version ? version : "");
    json_t *all = json_array();
    tn_err err = TN_OK;
    for (size_t i = 0; i < n && !err; i++) {
        ectx x = {.d = defs[i], .v33 = strcmp(version, "3.3") == 0, .msg = msg};
        json_t *o = export_one(&x);
        err = x.err ? x.err : o ? TN_OK : tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
        json_array_append_new(all, o);
    }
    char *text = err ? NULL : json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(all);
    if (!err && !text)
        err = tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    if (!err)
        *out = text;
    return err;
}

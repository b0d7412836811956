/* DolphinScheduler exports to tern definitions: each workflow of the JSON array becomes the
 * tern workflow file it means (built as JSON, which is YAML), then parsed and validated. */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds.h"
#include "params.h"

enum {
    GEN13 = 13,
    GEN20 = 20,
    GEN33 = 33
};

/* A task of the export, whatever its generation. */
typedef struct stask {
    json_t *t;      /* the task object */
    json_t *params; /* taskParams (2.0+) or params (1.3); may be NULL */
    int64_t code;   /* 1.3: its index + 1 (1.3 refers to tasks by name) */
    const char *name, *type;
    char path[96];
    uint32_t *deps;  /* indices of upstream tasks, unique */
    char **dep_path; /* where each came from in the export */
    uint32_t n_deps;
    bool listed; /* named by some relation (2.0+) */
} stask;

typedef struct swf {
    int gen;
    json_t *entry, *def, *owned, *sched;
    const char *name;
    int64_t code;
    stask *tasks;
    size_t nt;
    char path[64];
    tn_ds_wf *out;
} swf;

typedef struct ictx {
    const tn_ds_opts *o;
    swf *w;
    size_t n;
} ictx;

/* ---- small helpers ------------------------------------------------------------------ */

static void push(char ***list, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void push(char ***list, size_t *n, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    char **nl = r < 0 ? NULL : realloc(*list, (*n + 1) * sizeof(**list));
    if (!nl) {
        free(s);
        return;
    }
    *list = nl;
    nl[(*n)++] = s;
}

#define PROBLEM(w, ...) push(&(w)->out->problems, &(w)->out->n_problems, __VA_ARGS__)
#define NOTE(w, ...)    push(&(w)->out->notes, &(w)->out->n_notes, __VA_ARGS__)

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* An integer written as a number or, as 1.3 writes some, a decimal string. */
static bool jint(const json_t *o, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (!*s)
            return false;
        long long x = strtoll(s, &end, 10);
        if (*end)
            return false;
        *out = x;
        return true;
    }
    return false;
}

static int64_t jint_or(const json_t *o, const char *key, int64_t dflt)
{
    int64_t v;
    return jint(o, key, &v) ? v : dflt;
}

/* The first of two keys that is present (2.0+ name, 1.3 name). */
static json_t *jget2(const json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return v || !b ? v : json_object_get(o, b);
}

static void set_str(json_t *o, const char *k, const char *v)
{
    json_object_set_new(o, k, json_string(v));
}

/* A count of `unit_ms` as a tern duration. Past tern's limit it is written as is, so the
 * parser refuses it naming the key (no product that wraps to a small value). */
static void set_units(json_t *o, const char *k, int64_t n, uint64_t unit_ms)
{
    char b[48];
    if ((uint64_t)n > TN_DEF_MAX_DURATION_MS / unit_ms)
        snprintf(b, sizeof(b), "%" PRId64 "%s", n, unit_ms == 1000u ? "s" : "m");
    else
        tn_format_duration((uint64_t)n * unit_ms, b, sizeof(b));
    set_str(o, k, b);
}

static void set_minutes(json_t *o, const char *k, int64_t minutes)
{
    set_units(o, k, minutes, 60000u);
}

static bool param_key_ok(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > TN_DEF_PARAM_KEY_MAX)
        return false;
    for (const char *p = k; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            return false;
    return true;
}

static void lower(char *dst, const char *src, size_t n)
{
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[i] = 0;
}

/* ---- references --------------------------------------------------------------------- */

/* The task a reference names: a code (2.0+) or a name (1.3); -1 when none. */
static int32_t find_task(const swf *w, const json_t *ref)
{
    for (size_t i = 0; i < w->nt; i++) {
        if (json_is_string(ref) && w->gen == GEN13) {
            if (w->tasks[i].name && strcmp(w->tasks[i].name, json_string_value(ref)) == 0)
                return (int32_t)i;
        } else if (json_is_integer(ref) && w->tasks[i].code == json_integer_value(ref)) {
            return (int32_t)i;
        }
    }
    return -1;
}

static bool ref_empty(const json_t *ref)
{
    return !ref || json_is_null(ref) || (json_is_string(ref) && !*json_string_value(ref));
}

static void ref_text(const json_t *ref, char *b, size_t n)
{
    if (json_is_integer(ref))
        snprintf(b, n, "%" PRId64, (int64_t)json_integer_value(ref));
    else if (json_is_string(ref))
        snprintf(b, n, "\"%.200s\"", json_string_value(ref));
    else
        snprintf(b, n, "(a JSON %s)", ref ? "value of the wrong type" : "null");
}

static const swf *find_wf_code(const ictx *c, int64_t code)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->w[i].code == code && code != 0)
            return &c->w[i];
    return NULL;
}

/* The tern name of the workflow DolphinScheduler calls `code`: in this file, else one
 * known from before (an earlier import, a tern export). */
static const char *wf_name_of(const ictx *c, int64_t code)
{
    const swf *t = find_wf_code(c, code);
    if (t)
        return t->name;
    return c->o->resolve ? c->o->resolve(c->o->resolve_ctx, code) : NULL;
}

static bool is_dep(const stask *t, uint32_t up)
{
    for (uint32_t i = 0; i < t->n_deps; i++)
        if (t->deps[i] == up)
            return true;
    return false;
}

static bool is_succ(const swf *w, uint32_t of, uint32_t t)
{
    return is_dep(&w->tasks[t], of);
}

static void add_dep(stask *t, uint32_t up, const char *path)
{
    if (is_dep(t, up))
        return;
    uint32_t *d = realloc(t->deps, (t->n_deps + 1) * sizeof(*d));
    if (d)
        t->deps = d;
    char **p = d ? realloc(t->dep_path, (t->n_deps + 1) * sizeof(*p)) : NULL;
    if (!p)
        return;
    t->dep_path = p;
    t->deps[t->n_deps] = up;
    t->dep_path[t->n_deps++] = strdup(path);
}

/* ---- reading an entry ---------------------------------------------------------------- */

static bool load_tasks(swf *w, json_t *list, const char *key)
{
    if (!json_is_array(list) || json_array_size(list) == 0) {
        PROBLEM(w, "%s.%s: missing or empty: a workflow needs at least one task", w->path, key);
        return false;
    }
    w->nt = json_array_size(list);
    w->tasks = calloc(w->nt, sizeof(*w->tasks));
    if (!w->tasks)
        return false;
    bool ok = true;
    for (size_t i = 0; i < w->nt; i++) {
        stask *t = &w->tasks[i];
        t->t = json_array_get(list, i);
        snprintf(t->path, sizeof(t->path), "%s.%s[%zu]", w->path, key, i);
        t->params = jget2(t->t, w->gen == GEN13 ? "params" : "taskParams", NULL);
        t->name = jstr(t->t, "name");
        t->type = jstr(t->t, w->gen == GEN13 ? "type" : "taskType");
        t->code = (int64_t)i + 1;
        if (w->gen != GEN13 && !jint(t->t, "code", &t->code)) {
            PROBLEM(w, "%s.code: missing or not a number", t->path);
            ok = false;
        }
        if (!t->name || !tn_def_name_valid(t->name)) {
            PROBLEM(w, "%s.name: %s", t->path,
                    t->name ? "a tern name is 1..255 bytes of UTF-8 text without control "
                              "characters or '/': rename the task" :
                              "missing");
            ok = false;
        }
        if (!t->type) {
            PROBLEM(w, "%s.%s: missing", t->path, w->gen == GEN13 ? "type" : "taskType");
            ok = false;
        }
        for (size_t j = 0; j < i && t->name; j++)
            if (w->tasks[j].name && strcmp(w->tasks[j].name, t->name) == 0) {
                PROBLEM(w, "%s.name: \"%s\" is also the name of %s", t->path, t->name,
                        w->tasks[j].path);
                ok = false;
            }
    }
    return ok;
}

static void load_13(swf *w, json_t *e, size_t i)
{
    w->gen = GEN13;
    w->name = jstr(e, "processDefinitionName");
    w->code = jint_or(e, "processDefinitionId", 0);
    json_error_t je;
    const char *inner = jstr(e, "processDefinitionJson");
    w->owned = json_loads(inner, JSON_DECODE_ANY, &je);
    if (!json_is_object(w->owned)) {
        PROBLEM(w, "%s.processDefinitionJson: not a JSON object (%s at column %d)", w->path,
                je.text, je.column);
        return;
    }
    w->def = w->owned;
    snprintf(w->path, sizeof(w->path), "$[%zu].processDefinitionJson", i);
    w->sched = json_object_get(e, "scheduleCrontab") ? e : NULL;
    load_tasks(w, json_object_get(w->def, "tasks"), "tasks");
}

static void load_entry(ictx *c, swf *w, json_t *e, size_t i)
{
    w->entry = e;
    snprintf(w->path, sizeof(w->path), "$[%zu]", i);
    if (json_is_string(json_object_get(e, "processDefinitionJson"))) {
        load_13(w, e, i);
        return;
    }
    const char *dk = "processDefinition";
    w->gen = GEN20;
    if (json_object_get(e, "workflowDefinition")) {
        dk = "workflowDefinition";
        w->gen = GEN33;
    }
    w->def = json_object_get(e, dk);
    if (!json_is_object(w->def)) {
        PROBLEM(w,
                "%s: neither processDefinitionJson (1.3), processDefinition (2.0-3.2) nor "
                "workflowDefinition (3.3): not a DolphinScheduler export entry",
                w->path);
        return;
    }
    w->name = jstr(w->def, "name");
    w->code = jint_or(w->def, "code", 0);
    json_t *s = json_object_get(e, "schedule");
    w->sched = json_is_object(s) ? s : NULL;
    load_tasks(w, json_object_get(e, "taskDefinitionList"), "taskDefinitionList");
}

/* ---- relations into deps ------------------------------------------------------------- */

static void rel_13(swf *w)
{
    for (size_t i = 0; i < w->nt; i++) {
        stask *t = &w->tasks[i];
        json_t *pre = json_object_get(t->t, "preTasks");
        size_t j;
        json_t *v;
        json_array_foreach(pre, j, v)
        {
            char p[160];
            snprintf(p, sizeof(p), "%s.preTasks[%zu]", t->path, j);
            int32_t k = json_is_string(v) ? find_task(w, v) : -1;
            if (k < 0) {
                char b[256];
                ref_text(v, b, sizeof(b));
                PROBLEM(w, "%s: %s is no task of this workflow", p, b);
            } else {
                add_dep(t, (uint32_t)k, p);
            }
        }
    }
}

static void rel_one(swf *w, json_t *r, const char *p)
{
    int64_t pre, post;
    if (!jint(r, "preTaskCode", &pre) || !jint(r, "postTaskCode", &post)) {
        PROBLEM(w, "%s: preTaskCode and postTaskCode must be numbers", p);
        return;
    }
    json_t *jpost = json_integer(post), *jpre = json_integer(pre);
    int32_t to = find_task(w, jpost), from = pre ? find_task(w, jpre) : -1;
    json_decref(jpost);
    json_decref(jpre);
    if (to < 0 && pre == 0) {
        /* DolphinScheduler's own import keeps such a root marker; it adds no edge */
        NOTE(w,
             "%s: postTaskCode %" PRId64 " is no task of this workflow; the relation only "
             "marks a root, and was left out",
             p, post);
        return;
    }
    if (to < 0) {
        PROBLEM(w, "%s.postTaskCode: %" PRId64 " is no task of this workflow", p, post);
        return;
    }
    w->tasks[to].listed = true;
    if (pre == 0)
        return;
    if (from < 0) {
        PROBLEM(w, "%s.preTaskCode: %" PRId64 " is no task of this workflow", p, pre);
        return;
    }
    if (from == to) {
        PROBLEM(w, "%s: task \"%s\" depends on itself", p, w->tasks[to].name);
        return;
    }
    w->tasks[from].listed = true;
    add_dep(&w->tasks[to], (uint32_t)from, p);
}

static void relations(swf *w)
{
    if (w->gen == GEN13) {
        rel_13(w);
        return;
    }
    const char *key = w->gen == GEN33 ? "workflowTaskRelationList" : "processTaskRelationList";
    json_t *list = json_object_get(w->entry, key);
    if (!json_is_array(list) || json_array_size(list) == 0) {
        PROBLEM(w,
                "%s.%s: missing or empty: every task needs a relation (a root has one with "
                "preTaskCode 0), and DolphinScheduler's import refuses such a file too; "
                "export the workflow again",
                w->path, key);
        return;
    }
    size_t i;
    json_t *r;
    json_array_foreach(list, i, r)
    {
        char p[160];
        snprintf(p, sizeof(p), "%s.%s[%zu]", w->path, key, i);
        rel_one(w, r, p);
    }
    for (size_t k = 0; k < w->nt; k++)
        if (!w->tasks[k].listed)
            NOTE(w, "%s: task \"%s\" is in no relation; imported as a root task",
                 w->tasks[k].path, w->tasks[k].name);
}

/* A cycle in the deps, reported with the relations that close it. */
static bool find_cycle(swf *w)
{
    size_t n = w->nt;
    uint32_t *left = calloc(n, sizeof(*left)), *on = calloc(n, sizeof(*on));
    bool *done = calloc(n, sizeof(*done));
    bool cyc = false;
    size_t ndone = 0;
    for (bool progress = true; left && on && done && progress;) {
        progress = false;
        for (size_t i = 0; i < n; i++) {
            bool ready = !done[i];
            for (uint32_t j = 0; ready && j < w->tasks[i].n_deps; j++)
                ready = done[w->tasks[i].deps[j]];
            if (ready) {
                done[i] = progress = true;
                ndone++;
            }
        }
    }
    if (left && on && done && ndone < n) {
        /* every task left has a dep left: walk them until one repeats */
        size_t x = 0;
        while (done[x])
            x++;
        uint32_t step = 1;
        while (!on[x]) {
            on[x] = step++;
            for (uint32_t j = 0; j < w->tasks[x].n_deps; j++)
                if (!done[w->tasks[x].deps[j]]) {
                    left[x] = j;
                    x = w->tasks[x].deps[j];
                    break;
                }
        }
        const stask *t = &w->tasks[x];
        PROBLEM(w,
                "%s: closes a cycle through task \"%s\" (its upstream \"%s\" depends on it, "
                "directly or not)",
                t->dep_path[left[x]], t->name, w->tasks[t->deps[left[x]]].name);
        cyc = true;
    }
    free(left);
    free(on);
    free(done);
    return cyc;
}

/* ---- tasks --------------------------------------------------------------------------- */

typedef struct tconv {
    ictx *c;
    swf *w;
    stask *t;
    json_t *out;
    char **why; /* why the task does not map */
    size_t n_why;
} tconv;

#define UNSUP(x, ...) push(&(x)->why, &(x)->n_why, __VA_ARGS__)

/* localParams (and the workflow's globalParams): IN entries become params; OUT entries
 * need no declaration, since every ${setValue(k=v)} of a shell task is passed on. */
static json_t *props(swf *w, const json_t *list, const char *path)
{
    json_t *o = json_object();
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p)
    {
        const char *k = jstr(p, "prop"), *dir = jstr(p, "direct"), *v = jstr(p, "value");
        if (!k || !param_key_ok(k)) {
            PROBLEM(w, "%s[%zu].prop: %s", path, i,
                    k ? "a tern param name is 1..64 characters of A-Z a-z 0-9 _ . -" :
                        "missing");
            continue;
        }
        if (dir && strcmp(dir, "OUT") == 0) {
            NOTE(w,
                 "%s[%zu]: OUT param \"%s\" needs no declaration in tern (every "
                 "${setValue(...)} is passed downstream)",
                 path, i, k);
            continue;
        }
        set_str(o, k, v ? v : "");
    }
    return o;
}

static void task_params(tconv *x)
{
    json_t *lp = json_object_get(x->t->params, "localParams");
    if (json_array_size(lp) == 0)
        return;
    char p[160];
    snprintf(p, sizeof(p), "%s.%s.localParams", x->t->path,
             x->w->gen == GEN13 ? "params" : "taskParams");
    json_t *o = props(x->w, lp, p);
    if (json_object_size(o))
        json_object_set(x->out, "params", o);
    json_decref(o);
}

static void map_shell(tconv *x)
{
    const char *s = jstr(x->t->params, "rawScript");
    if (!s || !*s) {
        PROBLEM(x->w, "%s: a SHELL task needs a non-empty rawScript", x->t->path);
        return;
    }
    set_str(x->out, "command", s);
    if (json_array_size(json_object_get(x->t->params, "resourceList")))
        UNSUP(x, "it uses files of DolphinScheduler's resource center (resourceList), which "
                 "tern does not have: copy them to the workers and drop them from the task");
}

/* What the timeout, retry and placement fields of every task become. */
static void task_timeout(tconv *x)
{
    const json_t *t = x->t->t;
    int64_t minutes = 0;
    const char *strat = NULL;
    if (x->w->gen == GEN13) {
        json_t *to = json_object_get(t, "timeout");
        if (json_is_true(json_object_get(to, "enable"))) {
            minutes = jint_or(to, "interval", 0);
            strat = jstr(to, "strategy");
        }
    } else if (jstr(t, "timeoutFlag") && strcmp(jstr(t, "timeoutFlag"), "OPEN") == 0) {
        minutes = jint_or(t, "timeout", 0);
        strat = jstr(t, "timeoutNotifyStrategy");
    }
    if (minutes <= 0)
        return;
    set_minutes(x->out, "timeout", minutes);
    if (strat && strcmp(strat, "FAILED") == 0)
        set_str(x->out, "timeout_strategy", "fail");
    else if (strat && strcmp(strat, "WARNFAILED") == 0)
        set_str(x->out, "timeout_strategy", "warnfail");
}

static void task_common(tconv *x, bool dispatched, bool shell)
{
    const json_t *t = x->t->t;
    const char *flag = jstr(t, x->w->gen == GEN13 ? "runFlag" : "flag");
    if (flag && (strcmp(flag, "NO") == 0 || strcmp(flag, "FORBIDDEN") == 0))
        json_object_set_new(x->out, "enabled", json_false());
    const char *pr = jstr(t, x->w->gen == GEN13 ? "taskInstancePriority" : "taskPriority");
    char b[64];
    tn_def_priority prio;
    if (pr && (lower(b, pr, sizeof(b)), tn_def_priority_parse(b, &prio) == TN_OK) &&
        prio != TN_DEF_PRIO_MEDIUM)
        set_str(x->out, "priority", b);
    int64_t retries = jint_or(t, x->w->gen == GEN13 ? "maxRetryTimes" : "failRetryTimes", 0);
    int64_t interval =
        jint_or(t, x->w->gen == GEN13 ? "retryInterval" : "failRetryInterval", 0);
    if (retries > 0 && retries <= TN_DEF_MAX_RETRIES) {
        json_object_set_new(x->out, "retries", json_integer(retries));
        if (interval > 0)
            set_minutes(x->out, "retry_interval", interval);
    } else if (retries > 0) {
        PROBLEM(x->w, "%s: %" PRId64 " retries, over tern's limit of %u", x->t->path, retries,
                TN_DEF_MAX_RETRIES);
    }
    if (jint_or(t, "delayTime", 0) > 0)
        set_minutes(x->out, "delay", jint_or(t, "delayTime", 0));
    task_timeout(x);
    const char *wg = jstr(t, "workerGroup");
    if (dispatched && wg && *wg && strcmp(wg, TN_DEF_DEFAULT_WORKER_GROUP) != 0)
        set_str(x->out, "worker_group", wg);
    int64_t tg = jint_or(t, "taskGroupId", 0);
    if (tg > 0 && dispatched) {
        snprintf(b, sizeof(b), "ds-task-group-%" PRId64, tg);
        set_str(x->out, "task_group", b);
        NOTE(x->w,
             "%s: task group %" PRId64 " became task_group \"%s\": give it its slots "
             "with `tern taskgroup set %s N`",
             x->t->path, tg, b, b);
        if (jint_or(t, "taskGroupPriority", 0) > 0)
            NOTE(x->w,
                 "%s: taskGroupPriority dropped: a tern task group serves in dispatch order",
                 x->t->path);
    } else if (tg > 0) {
        NOTE(x->w, "%s: task group %" PRId64 " dropped: this task runs in the master",
             x->t->path, tg);
    }
    int64_t env = jint_or(t, "environmentCode", -1);
    if (env > 0 && !shell)
        NOTE(x->w, "%s: environment %" PRId64 " dropped: only shell tasks run one", x->t->path,
             env);
    if (env > 0 && shell) {
        snprintf(b, sizeof(b), "ds-env-%" PRId64, env);
        set_str(x->out, "environment", b);
        NOTE(x->w,
             "%s: environment %" PRId64 " became environment \"%s\": store its text "
             "with `tern env set %s FILE`",
             x->t->path, env, b, b);
    }
    int64_t cpu = jint_or(t, "cpuQuota", -1), mem = jint_or(t, "memoryMax", -1);
    if (cpu > 0 && shell) {
        snprintf(b, sizeof(b), "%" PRId64 ".%02" PRId64, cpu / 100, cpu % 100);
        set_str(x->out, "cpu_max", b);
    }
    if (mem > 0 && shell) {
        snprintf(b, sizeof(b), "%" PRId64 "M", mem);
        set_str(x->out, "memory_max", b);
    }
}

/* DolphinScheduler nests two levels of AND/OR (the whole, and each group of items); tern
 * has one. The levels fold into one when every relation that matters is the same. */
static const char *fold_relation(tconv *x, const json_t *dep, const char *what)
{
    json_t *groups = json_object_get(dep, "dependTaskList");
    const char *outer = jstr(dep, "relation"), *r = NULL;
    bool mixed = false;
    size_t i, nonempty = 0, items = 0;
    json_t *g;
    json_array_foreach(groups, i, g)
    {
        size_t n = json_array_size(json_object_get(g, "dependItemList"));
        const char *gr = jstr(g, "relation");
        gr = gr ? gr : "AND";
        nonempty += n > 0;
        items += n;
        if (n < 2) /* the relation of a group of one item does not matter */
            continue;
        mixed |= r && strcmp(r, gr) != 0;
        r = gr;
    }
    if (nonempty > 1) {
        outer = outer ? outer : "AND";
        mixed |= r && strcmp(r, outer) != 0;
        r = outer;
    }
    if (mixed || (r && strcmp(r, "AND") != 0 && strcmp(r, "OR") != 0)) {
        UNSUP(x,
              mixed ? "its %s mixes AND and OR across groups of items, which tern's single "
                      "relation cannot express" :
                      "its %s has a relation that is neither AND nor OR",
              what);
        return NULL;
    }
    return r && items > 1 ? r : "AND";
}

static void map_conditions(tconv *x)
{
    const json_t *p = x->w->gen == GEN13 ? x->t->t : x->t->params;
    json_t *dep = json_object_get(p, "dependence");
    const char *rel = fold_relation(x, dep, "dependence");
    json_t *items = json_array();
    size_t i, j;
    json_t *g, *it;
    json_array_foreach(json_object_get(dep, "dependTaskList"), i, g)
    {
        json_array_foreach(json_object_get(g, "dependItemList"), j, it)
        {
            json_t *ref = jget2(it, "depTaskCode", "depTasks");
            int32_t k = find_task(x->w, ref);
            const char *st = jstr(it, "status");
            char b[256];
            ref_text(ref, b, sizeof(b));
            if (k < 0 || !is_dep(x->t, (uint32_t)k)) {
                PROBLEM(x->w,
                        "%s%s.dependence.dependTaskList[%zu].dependItemList[%zu]: %s is %s",
                        x->t->path, x->w->gen == GEN13 ? "" : ".taskParams", i, j, b,
                        k < 0 ? "no task of this workflow" :
                                "not upstream of this CONDITIONS task");
                continue;
            }
            if (!st || (strcmp(st, "SUCCESS") != 0 && strcmp(st, "FAILURE") != 0)) {
                UNSUP(x, "it tests the status %s, and tern tests SUCCESS and FAILURE only",
                      st ? st : "(none)");
                continue;
            }
            json_t *o = json_object();
            set_str(o, "task", x->w->tasks[k].name);
            set_str(o, "state", strcmp(st, "SUCCESS") == 0 ? "success" : "failure");
            json_array_append_new(items, o);
        }
    }
    if (json_array_size(items) == 0)
        PROBLEM(x->w,
                "%s: a CONDITIONS task needs at least one item in "
                "dependence.dependTaskList",
                x->t->path);
    json_t *when = json_object();
    json_object_set_new(when, rel && strcmp(rel, "OR") == 0 ? "any" : "all", items);
    json_object_set_new(x->out, "when", when);
    json_t *res = json_object_get(p, "conditionResult");
    const char *keys[2][2] = {{"successNode", "on_success"}, {"failedNode", "on_failure"}};
    for (int b = 0; b < 2; b++) {
        json_t *list = json_array();
        json_array_foreach(json_object_get(res, keys[b][0]), i, it)
        {
            if (ref_empty(it))
                continue;
            int32_t k = find_task(x->w, it);
            if (k < 0 || !is_succ(x->w, (uint32_t)(x->t - x->w->tasks), (uint32_t)k)) {
                char t[256];
                ref_text(it, t, sizeof(t));
                PROBLEM(x->w, "%s%s.conditionResult.%s[%zu]: %s is %s", x->t->path,
                        x->w->gen == GEN13 ? "" : ".taskParams", keys[b][0], i, t,
                        k < 0 ? "no task of this workflow" : "not a direct successor");
                continue;
            }
            json_array_append_new(list, json_string(x->w->tasks[k].name));
        }
        json_object_set_new(x->out, keys[b][1], list);
    }
}

/* Whether tern reads a switch condition: ${...} stand for values (as tern's own check). */
static bool cond_parses(const char *w, char *why, size_t n)
{
    char *s = strdup(w);
    if (!s)
        return false;
    for (char *p = s; *p; p++) {
        char *end = p[0] == '$' && p[1] == '{' ? strchr(p + 2, '}') : NULL;
        if (end) {
            memset(p, ' ', (size_t)(end - p) + 1);
            *p = '0';
            p = end;
        }
    }
    bool val;
    tn_errmsg m = {{0}};
    tn_err e = tn_expr_eval(s, &val, &m);
    free(s);
    snprintf(why, n, "%s", m.text);
    return *w && e != TN_ERR_PARSE && e != TN_ERR_TOOBIG;
}

static void map_switch(tconv *x)
{
    json_t *sr = json_object_get(x->t->params, "switchResult");
    json_t *cases = json_array();
    uint32_t me = (uint32_t)(x->t - x->w->tasks);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(sr, "dependTaskList"), i, c)
    {
        const char *cond = jstr(c, "condition");
        json_t *next = json_object_get(c, "nextNode");
        int32_t k = find_task(x->w, next);
        char why[512];
        if (k < 0 || !is_succ(x->w, me, (uint32_t)k)) {
            char b[256];
            ref_text(next, b, sizeof(b));
            PROBLEM(x->w, "%s.taskParams.switchResult.dependTaskList[%zu].nextNode: %s is %s",
                    x->t->path, i, b,
                    k < 0 ? "no task of this workflow" : "not a direct successor");
            continue;
        }
        if (!cond || !cond_parses(cond, why, sizeof(why))) {
            UNSUP(x,
                  "its condition \"%s\" is not an expression tern evaluates (%s): write it "
                  "as e.g. ${x} == 1",
                  cond ? cond : "", cond && *cond ? why : "empty");
            continue;
        }
        json_t *o = json_object();
        set_str(o, "when", cond);
        set_str(o, "then", x->w->tasks[k].name);
        json_array_append_new(cases, o);
    }
    json_t *dflt = json_object_get(sr, "nextNode");
    if (!ref_empty(dflt)) {
        int32_t k = find_task(x->w, dflt);
        if (k < 0 || !is_succ(x->w, me, (uint32_t)k))
            PROBLEM(x->w, "%s.taskParams.switchResult.nextNode: %s", x->t->path,
                    k < 0 ? "no task of this workflow" : "not a direct successor");
        else
            set_str(x->out, "default", x->w->tasks[k].name);
    }
    if (json_array_size(cases) == 0 && x->n_why == 0)
        PROBLEM(x->w,
                "%s: a SWITCH task needs at least one case in "
                "taskParams.switchResult.dependTaskList",
                x->t->path);
    json_object_set_new(x->out, "cases", cases);
}

/* A DolphinScheduler dateValue as tern's date word, "" when tern has none. */
/* DolphinScheduler's dateValues (DependentUtils) and tern's words for them. */
static const char *const ds_dates[][2] = {{"currentHour", "this_hour"},
                                          {"last1Hour", "last1"},
                                          {"last2Hours", "last2"},
                                          {"last3Hours", "last3"},
                                          {"last24Hours", "last24"},
                                          {"today", "today"},
                                          {"last1Days", "last1"},
                                          {"last2Days", "last2"},
                                          {"last3Days", "last3"},
                                          {"last7Days", "last7"},
                                          {"thisWeek", "this_week"},
                                          {"lastWeek", "last_week"},
                                          {"lastMonday", "last_monday"},
                                          {"lastTuesday", "last_tuesday"},
                                          {"lastWednesday", "last_wednesday"},
                                          {"lastThursday", "last_thursday"},
                                          {"lastFriday", "last_friday"},
                                          {"lastSaturday", "last_saturday"},
                                          {"lastSunday", "last_sunday"},
                                          {"thisMonth", "this_month"},
                                          {"lastMonth", "last_month"},
                                          {"lastMonthBegin", "last_month_begin"},
                                          {"lastMonthEnd", "last_month_end"}};

const char *tn_ds_date(const char *cycle, const char *word, bool to_tern)
{
    tn_def_cycle cy;
    if (!cycle || !word || tn_def_cycle_parse(cycle, &cy))
        return NULL;
    for (size_t i = 0; i < sizeof(ds_dates) / sizeof(ds_dates[0]); i++) {
        const char *t = ds_dates[i][1];
        bool hourly = strstr(ds_dates[i][0], "Hour") != NULL;
        /* lastN means hours with an hour cycle and days with a day cycle */
        if (strncmp(t, "last", 4) == 0 && t[4] >= '0' && t[4] <= '9' &&
            hourly != (cy == TN_DEF_CYCLE_HOUR))
            continue;
        if (strcmp(ds_dates[i][to_tern ? 0 : 1], word) == 0 && tn_def_date_valid(cy, t))
            return ds_dates[i][to_tern ? 1 : 0];
    }
    return NULL;
}

static json_t *dep_item(tconv *x, const json_t *it, const char *path)
{
    const char *wf = NULL, *task = TN_DEF_DEPEND_ALL;
    const swf *target = NULL;
    if (x->w->gen == GEN13) {
        int64_t id = 0;
        /* 1.3 keeps definitionId; the UI adds definitionName: the id decides, and a name
         * that says otherwise is refused rather than trusted */
        const char *named = jstr(it, "definitionName");
        wf = named;
        if (jint(it, "definitionId", &id)) {
            if (!(wf = wf_name_of(x->c, id))) {
                PROBLEM(x->w,
                        "%s.definitionId: %" PRId64 " is no workflow of this file nor one "
                        "imported before: export both workflows in one file",
                        path, id);
                return NULL;
            }
            if (named && strcmp(named, wf) != 0) {
                PROBLEM(x->w,
                        "%s.definitionName: \"%s\" is not the name of workflow %" PRId64
                        " (\"%s\")",
                        path, named, id, wf);
                return NULL;
            }
        }
        const char *dt = jstr(it, "depTasks");
        task = dt && *dt ? dt : TN_DEF_DEPEND_ALL;
        /* a task must be one of a workflow of this file, as a code would have to name one */
        bool in_file = false;
        for (size_t k = 0; wf && k < x->c->n && strcmp(task, TN_DEF_DEPEND_ALL) != 0; k++) {
            const swf *t = &x->c->w[k];
            json_t *r = json_string(task);
            if (t->name && strcmp(t->name, wf) == 0) {
                in_file = true;
                if (find_task(t, r) < 0)
                    PROBLEM(x->w, "%s.depTasks: \"%s\" is no task of workflow \"%s\"", path,
                            task, wf);
            }
            json_decref(r);
        }
        if (wf && strcmp(task, TN_DEF_DEPEND_ALL) != 0 && !in_file) {
            PROBLEM(x->w,
                    "%s.depTasks: \"%s\" is a task of workflow \"%s\", which is not in this "
                    "file: export both workflows in one file",
                    path, task, wf);
            return NULL;
        }
    } else {
        int64_t code = 0, tc = 0;
        if (!jint(it, "definitionCode", &code) || !(wf = wf_name_of(x->c, code))) {
            PROBLEM(x->w,
                    "%s.definitionCode: %" PRId64 " is no workflow of this file nor one "
                    "imported before: export both workflows in one file",
                    path, code);
            return NULL;
        }
        target = find_wf_code(x->c, code);
        if (jint(it, "depTaskCode", &tc) && tc > 0) {
            json_t *r = json_integer(tc);
            int32_t k = target ? find_task(target, r) : -1;
            json_decref(r);
            if (k < 0) {
                PROBLEM(x->w, "%s.depTaskCode: %" PRId64 " is no task of workflow \"%s\"%s",
                        path, tc, wf, target ? "" : " in this file");
                return NULL;
            }
            task = target->tasks[k].name;
        }
    }
    const char *cycle = jstr(it, "cycle"), *dv = jstr(it, "dateValue");
    const char *date = tn_ds_date(cycle, dv, true);
    if (!wf || !date) {
        if (!wf)
            PROBLEM(x->w, "%s: no workflow named", path);
        else
            UNSUP(x,
                  "its item %s waits for cycle \"%s\" date \"%s\", which tern has no "
                  "equivalent for",
                  path, cycle ? cycle : "", dv ? dv : "");
        return NULL;
    }
    json_t *o = json_object();
    set_str(o, "workflow", wf);
    set_str(o, "task", task);
    set_str(o, "cycle", cycle);
    set_str(o, "date", date);
    return o;
}

static void map_dependent(tconv *x)
{
    const json_t *p = x->w->gen == GEN13 ? x->t->t : x->t->params;
    json_t *dep = json_object_get(p, "dependence"), *items = json_array();
    const char *rel = fold_relation(x, dep, "dependence");
    size_t i, j;
    json_t *g, *it;
    json_array_foreach(json_object_get(dep, "dependTaskList"), i, g)
    {
        json_array_foreach(json_object_get(g, "dependItemList"), j, it)
        {
            char path[200];
            snprintf(path, sizeof(path),
                     "%s%s.dependence.dependTaskList[%zu].dependItemList[%zu]", x->t->path,
                     x->w->gen == GEN13 ? "" : ".taskParams", i, j);
            json_t *o = dep_item(x, it, path);
            if (o)
                json_array_append_new(items, o);
        }
    }
    if (json_array_size(items) == 0 && x->n_why == 0 && x->w->out->n_problems == 0)
        PROBLEM(x->w,
                "%s: a DEPENDENT task needs at least one item in "
                "dependence.dependTaskList",
                x->t->path);
    json_object_set_new(x->out, "depends", items);
    if (rel && strcmp(rel, "OR") == 0)
        set_str(x->out, "relation", "or");
    int64_t ci = jint_or(dep, "checkInterval", 0), fw = jint_or(dep, "failureWaitingTime", 0);
    if (ci > 0) {
        set_units(x->out, "check_interval", ci, 1000u);
    }
    const char *fp = jstr(dep, "failurePolicy");
    if (fp && strcmp(fp, "DEPENDENT_FAILURE_WAITING") == 0) {
        if (fw <= 0)
            PROBLEM(x->w,
                    "%s: failurePolicy DEPENDENT_FAILURE_WAITING needs a "
                    "failureWaitingTime above 0",
                    x->t->path);
        set_str(x->out, "failure_policy", "wait");
        set_minutes(x->out, "failure_wait", fw > 0 ? fw : 1);
    }
}

static void map_sub(tconv *x)
{
    const json_t *p = x->t->params;
    const char *key = x->w->gen == GEN13 ? "processDefinitionId" :
                      x->w->gen == GEN33 ? "workflowDefinitionCode" :
                                           "processDefinitionCode";
    int64_t code = 0;
    if (!jint(p, key, &code) && x->w->gen == GEN33)
        jint(p, key = "processDefinitionCode", &code);
    const char *name = code ? wf_name_of(x->c, code) : NULL;
    if (!name) {
        PROBLEM(x->w, "%s.%s.%s: %s", x->t->path, x->w->gen == GEN13 ? "params" : "taskParams",
                key,
                code ? "names no workflow of this file nor one imported before: export the "
                       "child in the same file, or import it first" :
                       "missing: a sub-workflow task must name the workflow it runs");
        return;
    }
    if (x->w->name && strcmp(name, x->w->name) == 0) {
        PROBLEM(x->w, "%s: a sub-workflow task runs its own workflow", x->t->path);
        return;
    }
    set_str(x->out, "workflow", name);
}

/* A task tern cannot run, kept so the DAG can be looked at and run around: a shell task
 * that fails saying what it was. */
static void placeholder(tconv *x)
{
    json_t *o = x->out;
    const char *drop[] = {"command",        "when",           "on_success",   "on_failure",
                          "cases",          "default",        "depends",      "relation",
                          "check_interval", "failure_policy", "failure_wait", "workflow"};
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        json_object_del(o, drop[i]);
    set_str(o, "type", "shell");
    /* the message travels in a param the shell reads as a variable, so no name can
     * reach the shell as code */
    json_t *params = json_object_get(o, "params");
    if (!params) {
        params = json_object();
        json_object_set_new(o, "params", params);
    }
    char msg[1200];
    snprintf(msg, sizeof(msg),
             "placeholder for the DolphinScheduler %.64s task \"%.300s\", which tern does not "
             "run: %.600s",
             x->t->type, x->t->name, x->why[0]);
    set_str(params, "ds_placeholder", msg);
    set_str(o, "command", "printf '%s\\n' \"$ds_placeholder\" >&2\nexit 1\n");
    NOTE(x->w, "task \"%s\" (%s) became a placeholder that fails: %s", x->t->name, x->t->type,
         x->why[0]);
}

static json_t *convert_task(ictx *c, swf *w, stask *t)
{
    tconv x = {.c = c, .w = w, .t = t, .out = json_object()};
    set_str(x.out, "name", t->name);
    json_t *deps = json_array();
    for (uint32_t i = 0; i < t->n_deps; i++)
        json_array_append_new(deps, json_string(w->tasks[t->deps[i]].name));
    json_object_set_new(x.out, "deps", deps);
    task_params(&x);
    const char *ty = t->type;
    const char *tt = "shell";
    if (strcmp(ty, "SHELL") == 0)
        map_shell(&x);
    else if (strcmp(ty, "CONDITIONS") == 0)
        map_conditions(&x), tt = "conditions";
    else if (strcmp(ty, "SWITCH") == 0)
        map_switch(&x), tt = "switch";
    else if (strcmp(ty, "DEPENDENT") == 0)
        map_dependent(&x), tt = "dependent";
    else if (strcmp(ty, "SUB_PROCESS") == 0 || strcmp(ty, "SUB_WORKFLOW") == 0)
        map_sub(&x), tt = "sub_workflow";
    else
        UNSUP(&x,
              "tern has no %s tasks (it runs SHELL, CONDITIONS, SWITCH, DEPENDENT and "
              "SUB_PROCESS)",
              ty);
    const char *et = jstr(t->t, "taskExecuteType");
    if (et && strcmp(et, "STREAM") == 0)
        UNSUP(&x, "it is a STREAM task, and tern runs batch tasks only");
    json_t *vp = json_object_get(t->t, "varPool");
    if ((json_is_string(vp) && strcmp(json_string_value(vp), "[]") != 0 &&
         json_string_length(vp)) ||
        json_array_size(vp))
        NOTE(w,
             "%s: varPool dropped: it holds values of a past run; tern passes each "
             "${setValue(...)} on when the task runs",
             t->path);
    if (jstr(t->t, "isCache") && strcmp(jstr(t->t, "isCache"), "YES") == 0)
        NOTE(w, "%s: isCache dropped: tern does not reuse the results of earlier runs",
             t->path);
    if (x.n_why && c->o->placeholder) {
        placeholder(&x);
        tt = "shell";
    } else {
        set_str(x.out, "type", tt);
    }
    for (size_t i = 0; i < x.n_why; i++) {
        if (!c->o->placeholder)
            PROBLEM(w, "task \"%s\" (%s) at %s: %s", t->name, ty, t->path, x.why[i]);
        free(x.why[i]);
    }
    free(x.why);
    bool shell = strcmp(tt, "shell") == 0;
    task_common(&x, shell, shell);
    return x.out;
}

/* ---- the workflow -------------------------------------------------------------------- */

static const char *sk(const swf *w, const char *k2, const char *k13)
{
    return jstr(w->sched, w->gen == GEN13 ? k13 : k2);
}

static void alerts(ictx *c, swf *w, int64_t group, const char *key)
{
    if (group <= 0)
        return;
    char what[160];
    snprintf(what, sizeof(what), "%s%s", w->path, key);
    if (c->o->placeholder)
        NOTE(w, "%s: alert group %" PRId64 " dropped: tern has no alerts yet", what, group);
    else
        PROBLEM(w,
                "%s: alert group %" PRId64 ": tern has no alerts yet (--placeholder imports "
                "the workflow without it)",
                what, group);
}

static json_t *convert_schedule(ictx *c, swf *w, const char **tenant)
{
    const char *rs = sk(w, "releaseState", "scheduleReleaseState");
    const char *cron = sk(w, "crontab", "scheduleCrontab");
    if (!cron || !*cron)
        return NULL;
    if (rs && strcmp(rs, "ONLINE") != 0 && !c->o->all_schedules) {
        NOTE(w,
             "schedule \"%s\" skipped: it is %s in DolphinScheduler (--schedules all "
             "imports it, running)",
             cron, rs);
        return NULL;
    }
    json_t *s = json_object();
    set_str(s, "cron", cron);
    const char *tz = sk(w, "timezoneId", NULL), *v;
    if (tz && *tz)
        set_str(s, "timezone", tz);
    else
        NOTE(w, "schedule \"%s\": no time zone in the export; read in UTC", cron);
    if ((v = sk(w, "startTime", "scheduleStartTime")) && *v)
        set_str(s, "start", v);
    if ((v = sk(w, "endTime", "scheduleEndTime")) && *v)
        set_str(s, "end", v);
    char b[32];
    if ((v = sk(w, "failureStrategy", "scheduleFailureStrategy")) && *v)
        set_str(s, "failure_strategy", (lower(b, v, sizeof(b)), b));
    v = sk(w, w->gen == GEN33 ? "workflowInstancePriority" : "processInstancePriority",
           "scheduleProcessInstancePriority");
    if (v && *v)
        set_str(s, "priority", (lower(b, v, sizeof(b)), b));
    if ((v = sk(w, "workerGroup", "scheduleWorkerGroupName")) && *v &&
        strcmp(v, TN_DEF_DEFAULT_WORKER_GROUP) != 0)
        set_str(s, "worker_group", v);
    const char *wt = sk(w, "warningType", "scheduleWarningType");
    if (wt && strcmp(wt, "NONE") != 0)
        alerts(
            c, w,
            jint_or(w->sched, w->gen == GEN13 ? "scheduleWarningGroupId" : "warningGroupId", 0),
            w->gen == GEN13 ? ".scheduleWarningGroupId" : ".schedule.warningGroupId");
    if ((v = sk(w, "tenantCode", NULL)) && *v && strcmp(v, "default") != 0)
        *tenant = v;
    return s;
}

static json_t *convert_wf(ictx *c, swf *w)
{
    json_t *o = json_object();
    set_str(o, "name", w->name);
    const char *d = jstr(w->gen == GEN13 ? w->entry : w->def,
                         w->gen == GEN13 ? "processDefinitionDescription" : "description");
    if (d && *d)
        set_str(o, "description", d);
    json_t *gp = json_object_get(w->def, "globalParams");
    json_t *parsed = json_is_string(gp) ? json_loads(json_string_value(gp), 0, NULL) : NULL;
    char path[96];
    snprintf(path, sizeof(path), "%s%s.globalParams", w->path,
             w->gen == GEN13 ? "" :
             w->gen == GEN33 ? ".workflowDefinition" :
                               ".processDefinition");
    json_t *params = props(w, parsed ? parsed : gp, path);
    if (json_object_size(params))
        json_object_set(o, "params", params);
    json_decref(params);
    json_decref(parsed);
    const char *ex = jstr(w->def, "executionType");
    char b[32];
    if (ex && strcmp(ex, "PARALLEL") != 0)
        set_str(o, "execution", (lower(b, ex, sizeof(b)), b));
    if (jint_or(w->def, "timeout", 0) > 0)
        set_minutes(o, "timeout", jint_or(w->def, "timeout", 0));
    const char *tenant = jstr(w->def, "tenantCode");
    if (tenant && strcmp(tenant, "default") == 0)
        tenant = NULL;
    int64_t tid = jint_or(w->def, "tenantId", -1);
    if (!tenant && tid > 0)
        NOTE(w,
             "tenant id %" PRId64 ": the export does not carry its name; the tasks run as "
             "the worker's user (write tenant: NAME to change it)",
             tid);
    alerts(c, w, jint_or(w->def, "warningGroupId", 0),
           w->gen == GEN13 ? ".warningGroupId" :
           w->gen == GEN33 ? ".workflowDefinition.warningGroupId" :
                             ".processDefinition.warningGroupId");
    json_t *s = w->sched ? convert_schedule(c, w, &tenant) : NULL;
    if (s)
        json_object_set_new(o, "schedule", s);
    if (tenant && !tn_def_tenant_valid(tenant))
        PROBLEM(w,
                "tenant \"%s\" is not an OS user name tern accepts (1..32 of A-Z a-z 0-9 . _ "
                "-)",
                tenant);
    else if (tenant)
        set_str(o, "tenant", tenant);
    json_t *tasks = json_array();
    for (size_t i = 0; i < w->nt; i++)
        json_array_append_new(tasks, convert_task(c, w, &w->tasks[i]));
    json_object_set_new(o, "tasks", tasks);
    return o;
}

/* The definition as tern reads it: JSON is YAML, so tern's own parser validates it. */
static void finish_wf(swf *w, json_t *o)
{
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        PROBLEM(w, "out of memory");
        return;
    }
    tn_errmsg m = {{0}};
    if (tn_def_parse("ds", text, strlen(text), &w->out->def, &m) != TN_OK) {
        /* the line is one of the generated text: keep only the reason */
        const char *why = m.text;
        if (strncmp(why, "ds:", 3) == 0) {
            why += 3 + strspn(why + 3, "0123456789");
            why += strspn(why, ": ");
        }
        PROBLEM(w, "%s: %s", w->path, why);
    }
    free(text);
}

static void import_wf(ictx *c, swf *w)
{
    if (!w->name || !tn_def_name_valid(w->name)) {
        PROBLEM(w, "%s.name: %s", w->path,
                w->name ? "a tern name is 1..255 bytes of UTF-8 text without control "
                          "characters or '/': rename the workflow" :
                          "missing");
        return;
    }
    relations(w);
    if (w->out->n_problems || find_cycle(w))
        return;
    json_t *o = convert_wf(c, w);
    if (!w->out->n_problems)
        finish_wf(w, o);
    json_decref(o);
}

/* ---- the file ------------------------------------------------------------------------ */

static void free_swf(swf *w)
{
    for (size_t i = 0; i < w->nt; i++) {
        for (uint32_t j = 0; j < w->tasks[i].n_deps; j++)
            free(w->tasks[i].dep_path[j]);
        free(w->tasks[i].deps);
        free(w->tasks[i].dep_path);
    }
    free(w->tasks);
    json_decref(w->owned);
}

static tn_err open_file(const char *buf, size_t len, json_t **root, tn_errmsg *msg)
{
    if (len > TN_DS_MAX_FILE)
        return tn_errmsg_set(msg, TN_ERR_TOOBIG, "the export is %zu bytes; the limit is %u",
                             len, TN_DS_MAX_FILE);
    json_error_t je;
    json_t *r = json_loadb(buf, len, JSON_DECODE_ANY, &je);
    if (!r)
        return tn_errmsg_set(msg, TN_ERR_PARSE, "line %d, column %d: not JSON: %s", je.line,
                             je.column, je.text);
    if (json_is_object(r)) { /* one entry, as some tools write it */
        json_t *a = json_array();
        json_array_append_new(a, r);
        r = a;
    }
    if (!json_is_array(r) || json_array_size(r) == 0) {
        json_decref(r);
        return tn_errmsg_set(msg, TN_ERR_PARSE,
                             "$: a DolphinScheduler export is a JSON array of "
                             "workflows, and this is not one (or is empty)");
    }
    if (json_array_size(r) > TN_DS_MAX_WFS) {
        json_decref(r);
        return tn_errmsg_set(msg, TN_ERR_TOOBIG, "$: more than %u workflows", TN_DS_MAX_WFS);
    }
    *root = r;
    return TN_OK;
}

tn_err tn_ds_import(const char *buf, size_t len, const tn_ds_opts *o, tn_ds_result *out,
                    tn_errmsg *msg)
{
    json_t *root;
    tn_err e = open_file(buf, len, &root, msg);
    if (e)
        return e;
    size_t n = json_array_size(root);
    ictx c = {.o = o, .n = n, .w = calloc(n, sizeof(swf))};
    tn_ds_wf *wfs = calloc(n, sizeof(*wfs));
    if (!c.w || !wfs) {
        free(c.w);
        free(wfs);
        json_decref(root);
        return tn_errmsg_set(msg, TN_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        c.w[i].out = &wfs[i];
        load_entry(&c, &c.w[i], json_array_get(root, i), i);
        wfs[i].name = c.w[i].name ? strdup(c.w[i].name) : NULL;
        wfs[i].code = c.w[i].code;
        for (size_t j = 0; j < i && c.w[i].name; j++)
            if (c.w[j].name && strcmp(c.w[j].name, c.w[i].name) == 0)
                PROBLEM(&c.w[i], "%s: the workflow name \"%s\" is also that of $[%zu]",
                        c.w[i].path, c.w[i].name, j);
    }
    for (size_t i = 0; i < n; i++)
        if (!wfs[i].n_problems)
            import_wf(&c, &c.w[i]);
    int g = c.w[0].gen;
    out->generation = g == GEN13 ? "1.3" : g == GEN33 ? "3.3" : "2.0-3.2";
    out->wfs = wfs;
    out->n = n;
    for (size_t i = 0; i < n; i++)
        free_swf(&c.w[i]);
    free(c.w);
    json_decref(root);
    return TN_OK;
}

void tn_ds_import_free(tn_ds_result *im)
{
    for (size_t i = 0; im && i < im->n; i++) {
        tn_ds_wf *w = &im->wfs[i];
        free(w->name);
        tn_def_free(w->def);
        for (size_t j = 0; j < w->n_problems; j++)
            free(w->problems[j]);
        for (size_t j = 0; j < w->n_notes; j++)
            free(w->notes[j]);
        free(w->problems);
        free(w->notes);
    }
    if (im)
        free(im->wfs);
}

int64_t tn_ds_code(const char *workflow, const char *task)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, 64 bits */
    for (const char *p = workflow; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    if (task) {
        h = (h ^ 0xff) * 1099511628211ull; /* 0xff never occurs in UTF-8 */
        for (const char *p = task; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
    /* within JavaScript's exact integers, as DolphinScheduler's UI handles codes */
    int64_t c = (int64_t)(h & ((1ull << 53) - 1));
    return c ? c : 1;
}

/* cgroups: listing, freezing and removing them, finding the mounts, and the worker's
 * sub-trees (v2, or v1 memory and cpu for limits). */
#include "proc_int.h"

/* ---------------------------------------------------------------------------------- */
/* cgroups */

/* Appends the pids of a cgroup and its sub-cgroups. */
void pr_cg_list(const char *dir, pidarr *out, int depth)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
        return;
    char *buf = NULL;
    size_t cap = 0;
    if (pr_read_grow(path, &buf, &cap, 16u << 20) > 0) {
        for (char *s = buf, *end; *s; s = end) {
            long v = strtol(s, &end, 10);
            if (end == s)
                break;
            if (v > 0 && !pr_pidarr_push(out, (pid_t)v))
                break;
        }
    }
    free(buf);
    if (depth >= CG_DEPTH_MAX)
        return;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
            pr_cg_list(path, out, depth + 1);
    }
    (void)closedir(d);
}

/* 1 populated, 0 empty (or gone), -1 unknown. */
int pr_cg_populated(const char *dir)
{
    char path[4096], buf[256];
    if (snprintf(path, sizeof(path), "%s/cgroup.events", dir) >= (int)sizeof(path))
        return -1;
    if (pr_read_small(path, buf, sizeof(buf)) < 0)
        return errno == ENOENT ? 0 : -1;
    const char *s = strstr(buf, "populated ");
    return s ? s[10] == '1' : -1;
}

/* v1 hierarchies have no cgroup.events: empty when cgroup.procs lists nobody. */
bool pr_cg1_empty(const char *dir)
{
    pidarr a = {0};
    pr_cg_list(dir, &a, 0);
    bool empty = a.n == 0;
    pr_pidarr_fini(&a);
    return empty;
}

static bool cg_frozen(const char *dir)
{
    char path[4096], buf[256];
    if (snprintf(path, sizeof(path), "%s/cgroup.events", dir) >= (int)sizeof(path))
        return false;
    if (pr_read_small(path, buf, sizeof(buf)) < 0)
        return false;
    const char *s = strstr(buf, "frozen ");
    return s && s[7] == '1';
}

/* Freezes and waits a bounded time for it to take: a task in uninterruptible sleep
 * freezes only when it leaves it, and we do not wait for that. */
bool pr_cg_freeze(const char *dir)
{
    if (pr_write_at(dir, "cgroup.freeze", "1") != 0)
        return false;
    int64_t until = tn_mono_ns() + FREEZE_WAIT_NS;
    while (!cg_frozen(dir)) {
        if (tn_mono_ns() >= until)
            return false;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* Removes a cgroup and its sub-cgroups, deepest first. Returns 0 or an errno value. */
int pr_cg_rmdir_tree(const char *dir, int depth)
{
    if (rmdir(dir) == 0 || errno == ENOENT) /* the usual case: no sub-cgroups */
        return 0;
    if (depth < CG_DEPTH_MAX) {
        DIR *d = opendir(dir);
        if (!d)
            return errno == ENOENT ? 0 : errno;
        struct dirent *de;
        char path[4096];
        while ((de = readdir(d))) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue;
            if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
                (void)pr_cg_rmdir_tree(path, depth + 1);
        }
        (void)closedir(d);
    }
    if (rmdir(dir) != 0 && errno != ENOENT)
        return errno;
    return 0;
}

bool pr_parse_task_dir(const char *name, uint64_t *task, uint32_t *attempt)
{
    unsigned long long t;
    unsigned a;
    int n = 0;
    if (sscanf(name, "task-%llu-%u%n", &t, &a, &n) != 2 || name[n] != '\0')
        return false;
    *task = t;
    *attempt = a;
    return true;
}

/* Mount point of the first mount of `fstype` (and, for v1, carrying controller `ctrl`),
 * with the mount's root in the hierarchy. From /proc/self/mountinfo. */
bool pr_find_mount(const char *fstype, const char *ctrl, char *mnt, size_t mlen, char *root,
                   size_t rlen)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        *sep = '\0';
        char fs[64], opts[1024];
        if (sscanf(sep + 3, "%63s %*s %1023s", fs, opts) != 2 || strcmp(fs, fstype) != 0)
            continue;
        if (ctrl) {
            bool has = false;
            for (char *sv, *tok = strtok_r(opts, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv))
                has = has || strcmp(tok, ctrl) == 0;
            if (!has)
                continue;
        }
        char r[4096], m[4096];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", r, m) != 2)
            continue;
        /* mountinfo escapes space, tab, newline and backslash as \ooo */
        char *mp[2] = {r, m};
        for (int k = 0; k < 2; k++) {
            char *w = mp[k];
            for (const char *s = mp[k]; *s; s++) {
                if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
                    *w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
                    s += 3;
                } else {
                    *w++ = *s;
                }
            }
            *w = '\0';
        }
        if (strlen(m) >= mlen || strlen(r) >= rlen)
            continue;
        strcpy(mnt, m);
        strcpy(root, r);
        found = true;
    }
    free(line);
    (void)fclose(f);
    return found;
}

/* This process's path in the v1 hierarchy that carries `ctrl` (/proc/self/cgroup). */
static bool own_v1_path(const char *ctrl, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        for (char *sv, *tok = strtok_r(c1 + 1, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
            if (strcmp(tok, ctrl) == 0 && strlen(c2 + 1) < len) {
                strcpy(out, c2 + 1);
                found = true;
                break;
            }
        }
    }
    free(line);
    (void)fclose(f);
    return found;
}


const char *tn_contain_mode_name(tn_contain_mode m)
{
    return m == TN_CONTAIN_CGROUP ? "cgroup" : "session";
}

bool pr_valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NAME_MAX_LEN || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static bool is_cgroup2(const char *dir)
{
    struct statfs sf;
    return statfs(dir, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC;
}

/* mkdir -p <parent>/<name>. A worker stopping at the same moment may remove the shared
 * parent between the two steps (it removes it when empty): so try twice. */
static int make_subtree(const char *parent, const char *sub)
{
    int e = 0;
    for (int tries = 0; tries < 2; tries++) {
        if (tn_mkdir_p(parent) != 0)
            return errno;
        char *w = pr_path_join(parent, sub);
        if (!w)
            return ENOMEM;
        e = mkdir(w, 0755) == 0 || errno == EEXIST ? 0 : errno;
        free(w);
        if (e != ENOENT)
            break;
    }
    return e;
}

/* Makes <root>/<name> and checks it can hold task cgroups. */
bool pr_setup_v2(tn_procs *p, const char *root, char *why, size_t wlen)
{
    /* check before creating anything: root, or the directory it would be made in */
    char at[4096];
    pr_sfmt(at, sizeof(at), "%s", root);
    if (access(at, F_OK) != 0 && strrchr(at, '/') && strrchr(at, '/') != at)
        *strrchr(at, '/') = '\0';
    if (!is_cgroup2(at)) {
        pr_sfmt(why, wlen, "%s is not on a cgroup2 file system", at);
        return false;
    }
    int e = make_subtree(root, p->name);
    if (e) {
        pr_sfmt(why, wlen, "cannot create %s/%s: %s", root, p->name, strerror(e));
        return false;
    }
    char *w = pr_path_join(root, p->name);
    if (!w) {
        pr_sfmt(why, wlen, "out of memory");
        return false;
    }
    char procs[4096];
    pr_sfmt(procs, sizeof(procs), "%s/cgroup.procs", w);
    if (access(procs, W_OK) != 0 || !pr_exists_at(w, "cgroup.events")) {
        pr_sfmt(why, wlen, "%s: cgroup.procs not writable or no cgroup.events", w);
        free(w);
        return false;
    }
    p->root = w;
    p->has_kill = pr_exists_at(w, "cgroup.kill");
    p->has_freeze = pr_exists_at(w, "cgroup.freeze");
    /* v2 limits: enable the controller on the two levels we own, if the parent offers it */
    const char *ctrls[3] = {"memory", "cpu", "pids"};
    lim_kind *kinds[3] = {&p->lim_mem, &p->lim_cpu, &p->lim_pids};
    char buf[512];
    pr_sfmt(procs, sizeof(procs), "%s/cgroup.controllers", root);
    if (pr_read_small(procs, buf, sizeof(buf)) > 0) {
        for (int i = 0; i < 3; i++) {
            char on[16], tok[16];
            snprintf(on, sizeof(on), "+%s", ctrls[i]);
            snprintf(tok, sizeof(tok), " %s ", ctrls[i]);
            char padded[520];
            pr_sfmt(padded, sizeof(padded), " %s ", buf);
            padded[strcspn(padded, "\n")] = ' ';
            if (!strstr(padded, tok))
                continue;
            if (pr_write_at(root, "cgroup.subtree_control", on) == 0 &&
                pr_write_at(w, "cgroup.subtree_control", on) == 0)
                *kinds[i] = LIM_V2;
        }
    }
    return true;
}

/* The worker's v2 sub-tree (p->root) was removed under it (by hand, by a cleanup script, by
 * another program's rmdir of the shared parent): made again, with the v2 controllers it
 * had, so the next task runs contained instead of failing. 0 or an errno value. */
int pr_restore_v2(tn_procs *p)
{
    if (!p->root)
        return EINVAL;
    if (tn_mkdir_p(p->root) != 0)
        return errno;
    char parent[4096];
    pr_sfmt(parent, sizeof(parent), "%s", p->root);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    const char *ctrls[2] = {"+memory", "+cpu"};
    lim_kind kinds[2] = {p->lim_mem, p->lim_cpu};
    for (int i = 0; i < 2; i++)
        if (kinds[i] == LIM_V2 &&
            (pr_write_at(parent, "cgroup.subtree_control", ctrls[i]) != 0 ||
             pr_write_at(p->root, "cgroup.subtree_control", ctrls[i]) != 0))
            tn_warn(COMP, "msg=\"cannot enable a controller again\" cgroup=%s controller=%s",
                    p->root, ctrls[i] + 1);
    tn_warn(COMP, "msg=\"the worker's cgroup sub-tree had disappeared; recreated\" cgroup=%s",
            p->root);
    return 0;
}

/* v1 memory or cpu hierarchy: <mount>/<own path>/tern/<name>, when writable. The "tern"
 * parent goes to *parent. */
char *pr_setup_v1(const tn_procs *p, const char *ctrl, const char *probe, char **parent)
{
    char mnt[4096], mroot[4096], own[4096];
    if (!pr_find_mount("cgroup", ctrl, mnt, sizeof(mnt), mroot, sizeof(mroot)) ||
        !own_v1_path(ctrl, own, sizeof(own)))
        return NULL;
    const char *rel = own;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") != 0 && strncmp(own, mroot, rl) == 0)
        rel = own + rl;
    size_t len = strlen(rel);
    char *top, *dir;
    if (asprintf(&top, "%s%s%stern", mnt, rel, len && rel[len - 1] == '/' ? "" : "/") < 0)
        return NULL;
    if (make_subtree(top, p->name) != 0 || !(dir = pr_path_join(top, p->name))) {
        free(top);
        return NULL;
    }
    *parent = top;
    if (!pr_exists_at(dir, probe)) {
        free(dir);
        return NULL;
    }
    char path[4096];
    pr_sfmt(path, sizeof(path), "%s/%s", dir, probe);
    if (access(path, W_OK) != 0) {
        free(dir);
        return NULL;
    }
    return dir;
}

/* ---------------------------------------------------------------------------------- */
/* Spare v1 pids cgroups */

static void spare_path(const cgpool *pool, uint32_t id, char *out, size_t len)
{
    pr_sfmt(out, len, "%s/spare-%" PRIu32, pool->dir, id);
}

bool pr_spare_push(cgpool *pool, uint32_t id)
{
    if (!tn_grow((void **)&pool->ids, &pool->cap, pool->n + 1, sizeof(*pool->ids)))
        return false;
    pool->ids[pool->n++] = id;
    return true;
}

/* Renames a spare to path. False: none, or the rename failed (the spare is removed): the
 * caller makes path as before. */
bool pr_spare_take(cgpool *pool, const char *path)
{
    if (!pool->dir || !pool->n)
        return false;
    char from[4096];
    spare_path(pool, pool->ids[--pool->n], from, sizeof(from));
    if (rename(from, path) == 0)
        return true;
    (void)rmdir(from);
    return false;
}

/* An ended attempt's cgroup kept as a spare when the pool has room for it and it holds no
 * sub-cgroup (st_nlink counts them). True: path is gone; false: the caller removes it. */
bool pr_spare_give(tn_procs *p, cgpool *pool, const char *path)
{
    struct stat st;
    if (!pool->dir || pool->n >= p->spare_ahead * 2 || stat(path, &st) != 0 || st.st_nlink != 2)
        return false;
    uint32_t id = p->spare_next++;
    char to[4096];
    spare_path(pool, id, to, sizeof(to));
    if (rename(path, to) != 0)
        return false;
    if (!pr_spare_push(pool, id))
        (void)rmdir(to);
    return true;
}

/* Removes the pool's spares. */
void pr_spares_drop(cgpool *pool)
{
    while (pool->dir && pool->n) {
        char path[4096];
        spare_path(pool, pool->ids[--pool->n], path, sizeof(path));
        (void)pr_cg_rmdir_tree(path, 0);
    }
    free(pool->ids);
    pool->ids = NULL;
    pool->n = pool->cap = 0;
}

/* Removes the spares a previous run left in dir (no process is ever put in a spare).
 * Returns how many. */
uint32_t pr_spares_sweep(const char *dir)
{
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return 0;
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || strncmp(de->d_name, "spare-", 6) != 0)
            continue;
        char path[4096];
        pr_sfmt(path, sizeof(path), "%s/%s", dir, de->d_name);
        n += pr_cg_rmdir_tree(path, 0) == 0;
    }
    (void)closedir(d);
    return n;
}

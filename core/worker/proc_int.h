/* Internals of the process manager shared by its files (proc.c, cgroup.c, procfs.c, kill.c,
 * spawn.c, leftovers.c). Not a public header: proc.h is the API. */
#ifndef TN_PROC_INT_H
#define TN_PROC_INT_H

#include "proc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

extern char **environ;

#define COMP            "proc"
#define TAG_VAR         "TERN_ATTEMPT_TAG"
#define NAME_MAX_LEN    64
#define CG_DEPTH_MAX    16         /* sub-cgroups a task may nest, walked when listing */
#define CG_PROCS_MAX    (1u << 20) /* pids read from one cgroup tree */
#define ENVIRON_MAX     (1u << 20) /* bytes of /proc/<pid>/environ read when looking for tags */
#define STOP_ROUNDS_MAX 64 /* session kill: SIGSTOP rounds until a scan finds nobody new */
#define FREEZE_WAIT_NS  (50 * 1000000LL) /* how long a freeze may take before we go on */
#define POLL_NS         (10 * 1000000LL) /* tick period wanted while a kill is being verified */
#define EXIT_POLL_NS    (2 * 1000000LL) /* tick period to notice exits when there is no pidfd */
#define NS_PER_MS       1000000LL
#define CHILD_STACK \
    (128 * 1024) /* spawn_clone's child stack (spawn.c), unmapped by tn_procs_free */
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* ---------------------------------------------------------------------------------- */

typedef struct pidarr {
    pid_t *v;
    size_t n, cap;
} pidarr;

/* Processes by identity, sorted by pid. A start time of 0 matches any. */
typedef struct pidset {
    tn_pid_ident *v;
    uint32_t n, cap;
} pidset;

typedef struct pinfo {
    pid_t pid, ppid, pgid, sid;
    uint64_t start;
    char state;
} pinfo;

/* Every process on the host, sorted by pid (the /proc order). */
typedef struct pscan {
    pinfo *v;
    size_t n, cap;
    uint8_t *mark;
    size_t mark_cap;
} pscan;

typedef enum {
    LIM_NONE,
    LIM_V2,
    LIM_V1
} lim_kind;
typedef enum {
    K_NONE,
    K_TERM,
    K_KILL,
    K_DONE
} kill_stage;

struct tn_proc {
    tn_proc *next, *prev;
    tn_procs *mgr;
    uint64_t task;
    uint32_t attempt;
    pid_t pid;
    uint64_t start;
    tn_contain_mode mode;
    char *cg;      /* v2 task cgroup, or NULL */
    char *cg_mem;  /* v1 memory cgroup, or NULL */
    char *cg_cpu;  /* v1 cpu cgroup, or NULL (or the same path as cg_mem) */
    char *cg_pids; /* v1 pids cgroup, or NULL */
    char note[256];
    char pids_note[24]; /* the pids limit that applied: "v2:64", "rlimit:64", "none"; "" */
    int status;
    bool leader_exited;
    bool killed; /* a kill was asked before the leader exited */
    kill_stage stage;
    int64_t deadline; /* K_TERM: when to send SIGKILL */
    uint32_t leftovers;
    pidset seen;    /* session: members found by the last scan */
    pidset sig;     /* every process signalled */
    pidset stopped; /* session: SIGSTOPped before the SIGKILL */
    int pidfd;      /* the leader until it is reaped, watched in mgr->epfd; or -1 */
    bool has_report;
    tn_kill_report rep;
    uint32_t pcap, scap; /* capacities of rep.pids, rep.survivor_pids */
    bool finished, reported, detached;
};

/* Spare v1 pids cgroups: DIR/spare-N, made ahead or kept from an attempt that ended clean,
 * renamed to task-T-A at a spawn (no mkdir, no rmdir there). v2 cgroups cannot be renamed
 * (cgroup2 has no rename: EPERM), so the v2 task cgroup is still made per attempt. */
typedef struct cgpool {
    const char *dir; /* the sub-tree: p->v1_pids (not owned); NULL: no pool */
    uint32_t *ids;
    size_t n, cap;
} cgpool;

struct tn_procs {
    pthread_mutex_t mu;
    char name[NAME_MAX_LEN + 1];
    tn_contain_mode mode;
    char *root; /* cgroup mode: the worker's sub-tree */
    bool has_kill, has_freeze;
    lim_kind lim_mem, lim_cpu, lim_pids;
    char *v1_mem, *v1_cpu, *v1_pids; /* the worker's v1 sub-trees, when LIM_V1 */
    char *parents[4];  /* shared "tern" dirs we found or made: removed when empty */
    char lim_why[160]; /* why a limit kind is unsupported */
    int64_t leftover_grace_ns, verify_ns;
    tn_proc *head;
    uint32_t live;
    uint64_t swept_total, adopted_total;
    int64_t last_scan;
    pid_t self;
    pscan scan;
    char *envbuf;
    size_t envcap;
    int epfd;           /* the leaders' pidfds (tn_procs_wait_fd), or -1 */
    void *stack;        /* spawn_clone's child stack, made on first use */
    bool no_clone3;     /* the kernel refused clone3 with CLONE_INTO_CGROUP */
    uint64_t bare_next; /* tn_procs_run_bare's cgroups: bare-N */
    cgpool spare_pids;  /* spare v1 pids cgroups (tn_procs_spares) */
    uint32_t spare_ahead, spare_next;
};

/* ---------------------------------------------------------------------------------- */

/* procfs.c: pid sets, files, /proc, members of an attempt */
bool pr_pidarr_push(pidarr *a, pid_t pid);
void pr_pidarr_fini(pidarr *a);
bool pr_pidset_has(const pidset *s, pid_t pid, uint64_t start);
bool pr_pidset_put(pidset *s, pid_t pid, uint64_t start);
void pr_pidset_fini(pidset *s);
ssize_t pr_read_small(const char *path, char *buf, size_t cap);
ssize_t pr_read_grow(const char *path, char **buf, size_t *cap, size_t max);
void __attribute__((format(printf, 3, 4))) pr_sfmt(char *buf, size_t len, const char *f, ...);
char *pr_path_join(const char *a, const char *b);
int pr_write_at(const char *dir, const char *file, const char *s);
bool pr_exists_at(const char *dir, const char *file);
int pr_fd_high(int fd);

/* direct.c: a command of at most DIRECT_WORDS words and DIRECT_LEN - 1 bytes may run
 * without the shell */
#define DIRECT_WORDS 256
#define DIRECT_LEN   4096
/* In the vfork-style child, after every other stage: execs argv[0] (argv[-1] a free slot)
 * as the shell would, searching path_var. When no file runs, exits 126 or 127 with the
 * shell's message in the task log; returns the errno of an exec failure that is not about
 * the file (E2BIG, ENOMEM, EAGAIN, EFAULT), which fails the start. */
int pr_exec_direct(char **argv, char *const *envp, const char *path_var);
bool pr_read_stat(pid_t pid, pinfo *pi);
bool pr_ident_alive(pid_t pid, uint64_t start, char *state);
bool pr_scan_all(pscan *sc);
const pinfo *pr_scan_find(const pscan *sc, pid_t pid, size_t *idx);
void pr_scan_mark_descendants(pscan *sc, pid_t self);
bool pr_env_tag(pid_t pid, const char *name, char **buf, size_t *cap, uint64_t *task,
                uint32_t *attempt);
bool pr_sig_one(pid_t pid, uint64_t start, int sig);
void pr_members(tn_procs *p, tn_proc *t, pidset *ids);
bool pr_attempt_empty(tn_procs *p, tn_proc *t);
void pr_report_signalled(tn_proc *t, pid_t pid, uint64_t start);
uint32_t pr_signal_ids(tn_proc *t, const pidset *ids, int sig);
void pr_fresh_scan(tn_procs *p, int64_t now);

/* cgroup.c */
void pr_cg_list(const char *dir, pidarr *out, int depth);
int pr_cg_populated(const char *dir);
bool pr_cg1_empty(const char *dir);
bool pr_cg_freeze(const char *dir);
int pr_cg_rmdir_tree(const char *dir, int depth);
bool pr_parse_task_dir(const char *name, uint64_t *task, uint32_t *attempt);
bool pr_find_mount(const char *fstype, const char *ctrl, char *mnt, size_t mlen, char *root,
                   size_t rlen);
bool pr_valid_name(const char *s);
bool pr_setup_v2(tn_procs *p, const char *root, char *why, size_t wlen);
int pr_restore_v2(tn_procs *p);
char *pr_setup_v1(const tn_procs *p, const char *ctrl, const char *probe, char **parent);
bool pr_spare_take(cgpool *pool, const char *path);
bool pr_spare_give(tn_procs *p, cgpool *pool, const char *path);
bool pr_spare_push(cgpool *pool, uint32_t id);
void pr_spares_drop(cgpool *pool);
uint32_t pr_spares_sweep(const char *dir);

/* proc.c: the manager and its attempts */
void pr_watch_leader(tn_procs *p, tn_proc *t);
void pr_proc_destroy(tn_proc *t);
tn_proc *pr_find_attempt(tn_procs *p, uint64_t task, uint32_t attempt);
void pr_reap_children(tn_procs *p);

/* kill.c: the kill ladder */
void pr_kill_done(tn_proc *t, int64_t now, const pidset *left);
void pr_do_kill(tn_procs *p, tn_proc *t, int64_t now);
void pr_start_kill(tn_procs *p, tn_proc *t, int64_t grace_ns, int64_t now);

/* leftovers.c */
uint32_t pr_walk_tree(tn_procs *p, const char *dir, bool v2, bool sweep, uint32_t *count);

#endif

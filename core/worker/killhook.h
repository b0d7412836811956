/* Application kill hooks: when the worker kills an attempt, it looks for the ids of what
 * the task started elsewhere (a YARN application, a Spark or Flink job) in the tail of the
 * task's log and runs a command per id to kill that too, as DolphinScheduler's workers do
 * with `yarn application -kill`.
 *
 * A hook is "REGEX=COMMAND", split at the first '=' outside a bracket expression and not
 * after a backslash (so a '=' of the regex is written [=] or \=), spaces around both trimmed:
 * REGEX is a POSIX extended regex, COMMAND a /bin/sh command line with {id} where the
 * matched text goes, e.g. `application_[0-9]+_[0-9]+=yarn application -kill {id}`.
 *
 * The log is the task's output, so nothing of it reaches a shell: an id is run only when it
 * is 1..TN_KILL_HOOK_ID_MAX of A-Z a-z 0-9 . _ - : @ + and does not start with '-', and it
 * goes into the command single-quoted. Other matches are refused and reported as such.
 *
 * Commands run as the worker's user with its environment, in its data dir, outside any
 * task's cgroup or session (a session of their own), stdin /dev/null, stdout and stderr
 * appended to the task's log; each is killed (SIGKILL to its process group) at its
 * timeout. They are clone children that signal nothing at exit, so the worker's reaper
 * (waitpid(-1) without __WCLONE, proc.h) never takes their status. */
#ifndef TN_KILLHOOK_H
#define TN_KILLHOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "proto.h"

#define TN_KILL_HOOKS_MAX        16         /* hooks a worker may have */
#define TN_KILL_HOOK_CMD_MAX     1024       /* bytes of a hook's COMMAND */
#define TN_KILL_HOOK_REGEX_MAX   1024       /* bytes of a hook's REGEX */
#define TN_KILL_HOOK_SCAN_MAX    (8u << 20) /* bytes at the end of the log scanned */
#define TN_KILL_HOOK_ID_MAX      128        /* bytes of an id that is run */
#define TN_KILL_HOOK_RUNS_MAX    16         /* commands run per killed attempt */
#define TN_KILL_HOOK_REFUSED_MAX 8          /* refused matches listed per attempt */
#define TN_KILL_HOOK_TIMEOUT_MS  30000      /* default time a command may take */
#define TN_KILL_HOOK_REAP_MS     5000       /* after its SIGKILL, before giving up */

typedef struct tn_kill_hooks tn_kill_hooks;

/* The hooks of specs[0..n) ("REGEX=COMMAND"), each command killed after timeout_ms (0:
 * TN_KILL_HOOK_TIMEOUT_MS). INVAL with what is wrong and which hook (its number and text)
 * for a missing '=', an empty or invalid regex (regerror's words), a command without {id},
 * over the limits above. n == 0: *out = NULL, TN_OK. */
tn_err tn_kill_hooks_new(const char *const *specs, uint32_t n, uint64_t timeout_ms,
                         tn_kill_hooks **out, tn_errmsg *msg);
void tn_kill_hooks_free(tn_kill_hooks *h); /* accepts NULL */

/* The hooks of one killed attempt, running. */
typedef struct tn_hook_set tn_hook_set;

/* Scans the last TN_KILL_HOOK_SCAN_MAX bytes of log_path (a partial first line dropped),
 * and starts one command per distinct (hook, id), at most TN_KILL_HOOK_RUNS_MAX, with cwd
 * as their working directory and, besides the worker's environment,
 * TERN_KILL_HOOK_TASK_INSTANCE_ID, TERN_KILL_HOOK_TASK_ATTEMPT, TERN_KILL_HOOK_TASK_USER
 * (user: the attempt's tenant; "" for none) and TERN_KILL_HOOK_ID (the id, unquoted).
 * NULL when h is NULL or nothing matched (nothing to report). */
tn_hook_set *tn_kill_hooks_start(const tn_kill_hooks *h, const char *log_path, const char *cwd,
                                 uint64_t task, uint32_t attempt, const char *user);
/* Takes the exits of ended commands and kills those past their timeout. True once every
 * command ended (or was given up TN_KILL_HOOK_REAP_MS after its SIGKILL). now: tn_mono_ns. */
bool tn_hook_set_poll(tn_hook_set *s, int64_t now);
/* What ran and how it ended (for KILL_RESULT); valid until tn_hook_set_free. */
tn_hook_runs tn_hook_set_runs(tn_hook_set *s);
/* Kills what still runs (SIGKILL, reaped when it goes at once) and frees s. Accepts NULL. */
void tn_hook_set_free(tn_hook_set *s);

#endif

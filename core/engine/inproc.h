/* The in-process executor: runs noop tasks on the engine's timers and shell tasks as
 * local processes (each in its own process group, output in a log file). It is what
 * `tern run` uses before workers exist, and what the engine tests use. */
#ifndef TN_INPROC_H
#define TN_INPROC_H

#include "executor.h"

typedef struct tn_inproc tn_inproc;

/* log_dir: where task logs go (created if missing). The executor must be bound to the
 * engine with tn_inproc_bind before the engine dispatches anything. */
tn_err tn_inproc_new(const char *log_dir, tn_inproc **out);
void tn_inproc_free(tn_inproc *x); /* kills what still runs; accepts NULL */
tn_executor tn_inproc_executor(tn_inproc *x);
void tn_inproc_bind(tn_inproc *x, tn_engine *e);
/* Tasks currently running or waiting on a timer. */
unsigned tn_inproc_running(tn_inproc *x);

#endif

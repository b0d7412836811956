/* State machines: the generic view of the tables tools/smgen generates from
 * statemachines/NAME.sm. The engine and the replay verifier use the same tables, so an
 * event replay finds illegal is a bug, never a judgement call.
 *
 * The machine-specific enums (TN_WF_S_RUNNING_EXECUTION, TN_TASK_E_KILL, ...) are in
 * the generated "statemachines/sm_gen.h". State 0 of every machine is NEW, the
 * pseudo-state before an instance exists. What the engine does after a transition is
 * the engine's code, not the spec's: the spec says only which transitions exist. */
#ifndef TN_SM_H
#define TN_SM_H

#include <stdbool.h>
#include <stdint.h>

/* Machine ids as stored in an event's `machine` field. */
typedef enum tn_machine {
    TN_MACHINE_WORKFLOW = 1,
    TN_MACHINE_TASK = 2,
    TN_MACHINE_SYSTEM = 3,
    TN_MACHINE_SCHEDULE = 4,
    TN_MACHINE_BACKFILL = 5,
    TN_MACHINE_ALERT = 6,
} tn_machine;
#define TN_MACHINE_MAX 6

#define TN_SM_ILLEGAL 0xFF /* tn_sm_trans.to of an illegal (state, event) pair */
#define TN_SM_NEW     0    /* the pseudo-state before creation */

typedef struct tn_sm_trans {
    uint8_t to; /* next state, or TN_SM_ILLEGAL */
} tn_sm_trans;

typedef struct tn_sm {
    const char *name; /* "workflow" */
    tn_machine machine;
    unsigned nstates; /* including NEW */
    unsigned nevents;
    unsigned ntrans; /* legal transitions in the spec */
    uint8_t initial;
    const char *const *state_names; /* [nstates]; [0] = "NEW" */
    const char *const *event_names; /* [nevents] */
    const bool *final;              /* [nstates] */
    const tn_sm_trans *table;       /* [nstates * nevents], row-major by state */
    const char *dot;                /* Graphviz rendering of the spec */
    const char *md;                 /* Markdown table of the spec */
} tn_sm;

extern const tn_sm tn_sm_workflow;
extern const tn_sm tn_sm_task;
extern const tn_sm tn_sm_system;
extern const tn_sm tn_sm_schedule;
extern const tn_sm tn_sm_backfill;
extern const tn_sm tn_sm_alert;

/* The machine with this id, or NULL. */
const tn_sm *tn_sm_get(unsigned machine);
/* The machine with this name ("workflow", "task", "system"), or NULL. */
const tn_sm *tn_sm_by_name(const char *name);

/* The transition for (state, event); .to == TN_SM_ILLEGAL when illegal or out of range. */
static inline tn_sm_trans tn_sm_next(const tn_sm *m, unsigned state, unsigned event)
{
    if (state >= m->nstates || event >= m->nevents) {
        tn_sm_trans t = {TN_SM_ILLEGAL};
        return t;
    }
    return m->table[state * m->nevents + event];
}

static inline bool tn_sm_is_final(const tn_sm *m, unsigned state)
{
    return state < m->nstates && m->final[state];
}

/* Names, with "?" for out-of-range ids (never NULL). */
const char *tn_sm_state_name(const tn_sm *m, unsigned state);
const char *tn_sm_event_name(const tn_sm *m, unsigned event);
/* Id by name, or -1. */
int tn_sm_state_id(const tn_sm *m, const char *name);
int tn_sm_event_id(const tn_sm *m, const char *name);

#endif

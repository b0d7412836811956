/* State machines: lookup by machine id and name, and id <-> name for states and events,
 * over the tables tools/smgen generates into sm_gen.c. */
#include "sm.h"

#include <stddef.h>
#include <string.h>

/* Indexed by tn_machine; [0] is no machine. */
static const tn_sm *const machines[TN_MACHINE_MAX + 1] = {
    [TN_MACHINE_WORKFLOW] = &tn_sm_workflow, [TN_MACHINE_TASK] = &tn_sm_task,
    [TN_MACHINE_SYSTEM] = &tn_sm_system,     [TN_MACHINE_SCHEDULE] = &tn_sm_schedule,
    [TN_MACHINE_BACKFILL] = &tn_sm_backfill, [TN_MACHINE_ALERT] = &tn_sm_alert,
};

const tn_sm *tn_sm_get(unsigned machine)
{
    return machine <= TN_MACHINE_MAX ? machines[machine] : NULL;
}

const tn_sm *tn_sm_by_name(const char *name)
{
    if (!name)
        return NULL;
    for (unsigned i = 1; i <= TN_MACHINE_MAX; i++)
        if (strcmp(machines[i]->name, name) == 0)
            return machines[i];
    return NULL;
}

static const char *name_of(const char *const *names, unsigned n, unsigned id)
{
    return id < n ? names[id] : "?";
}

static int id_of(const char *const *names, unsigned n, const char *name)
{
    if (!name)
        return -1;
    for (unsigned i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

const char *tn_sm_state_name(const tn_sm *m, unsigned state)
{
    return m ? name_of(m->state_names, m->nstates, state) : "?";
}

const char *tn_sm_event_name(const tn_sm *m, unsigned event)
{
    return m ? name_of(m->event_names, m->nevents, event) : "?";
}

int tn_sm_state_id(const tn_sm *m, const char *name)
{
    return m ? id_of(m->state_names, m->nstates, name) : -1;
}

int tn_sm_event_id(const tn_sm *m, const char *name)
{
    return m ? id_of(m->event_names, m->nevents, name) : -1;
}

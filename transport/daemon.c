/* The daemons' stop sequence (see daemon.h). */
#include "daemon.h"

void tn_daemon_stop(tn_rpc_server *rpc, tn_tx *rx, atomic_bool *stop, void (*wake)(void *arg),
                    void (*joined)(void *arg), void *arg, pthread_t thread)
{
    tn_rpc_server_free(rpc);
    tn_tx_close(*rx);
    atomic_store(stop, true);
    wake(arg);
    pthread_join(thread, NULL);
    if (joined)
        joined(arg);
    tn_tx_free(rx);
}

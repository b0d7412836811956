/* nng 1.5.2 (nanomsg/nng#1518, fixed in 1.6.0): a client that hangs up on an ipc://
 * listener before the SP header exchange ends (killed while dialing, a bare connect and
 * close, or another process's nng_listen checking whether the path is live) makes the
 * listener's header write fail with EPIPE, which nng takes for its own close: the listener
 * hands no connection over ever after, while the kernel still queues and nng still
 * answers the header exchange. Its owner can only notice by dialing itself and listen
 * again. This is that check, shared by the rpc server and the nng receivers. */
#ifndef TN_IPCPROBE_H
#define TN_IPCPROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* The socket file a listener made: closing the listener unlinks its path, so it is closed
 * only while the path is still that file (never one another process now holds). */
typedef struct tn_ipc_file {
    dev_t dev;
    ino_t ino;
} tn_ipc_file;

/* Note which file is at path now; false if none (nothing is noted). */
bool tn_ipc_file_note(const char *path, tn_ipc_file *f);
/* Whether path is still the socket file f noted. */
bool tn_ipc_file_is(const char *path, const tn_ipc_file *f);

/* How many connections the listener's socket took in so far (counted by the owner's
 * pipe-added callback), and whether the owner is stopping. */
typedef uint64_t (*tn_ipc_count_fn)(void *arg);
typedef bool (*tn_ipc_stop_fn)(void *arg);

/* Dial our own socket file at path as an SP peer of protocol proto would (a req0 client:
 * 0x30; push0: 0x50) and wait up to wait_ms for count to move. The header exchange alone
 * proves nothing: a stuck listener still does it, then keeps the connection. False only
 * when the listener did not hand the connection over; local failures (no fd, a path too
 * long for sockaddr_un) are not its fault, and a stopping owner (stop may be NULL) needs
 * no answer. The probe hangs up only after its connection was handed over: an ordinary
 * disconnect. */
bool tn_ipc_probe(const char *path, uint16_t proto, tn_ipc_count_fn count, tn_ipc_stop_fn stop,
                  void *arg, int wait_ms);

#endif

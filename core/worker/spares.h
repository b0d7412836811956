/* Spare exec dirs and log files, made ahead of the attempts that take them: an attempt's
 * exec dir or log is a spare renamed into place instead of a mkdir or a create on the
 * spawn path, and an exec dir that ends empty becomes a spare again instead of an rmdir.
 *
 * Why: on ext4 without a journal, allocating an inode skips, one by one, every inode of
 * its group freed in the last 60 s (360 s while the inode table block is dirty:
 * recently_deleted in fs/ext4/ialloc.c), so a worker that made and removed a directory per
 * attempt paid at every mkdir, and at every log's create, for the attempts before it. A
 * rename allocates and frees no inode; the inodes spares need are allocated by a filler
 * thread, off the worker's loop.
 *
 * A spare dir is ROOT/.spare-N (no attempt has such a name: TASK-ATTEMPT, and the periodic
 * sweep passes over it). A spare file is an unnamed one (O_TMPFILE in ROOT) linked at its
 * path when taken: making it does not hold ROOT's lock through the inode allocation, as a
 * create does, so the worker's renames and links there do not wait on the filler; where
 * the file system has no O_TMPFILE, ROOT/.spare-N as for dirs. A returned exec dir is kept only when
 * it is empty, owned by the worker's uid and gid, with the mode a fresh mkdir gives it and
 * no ACL or user xattr: a tenant's dir (chowned), a chmodded one or one with files is
 * removed as before. A returned log file is kept only when it is empty (no byte, no
 * block), has one name, the worker's uid, gid and mode, no ACL, user xattr, immutable or
 * append-only flag: its inode becomes a named spare (ROOT/.spare-N) and its name is
 * pointed at a shared empty file, ROOT/.spare-empty, in one rename, so `tern logs` still
 * finds an empty log. That file is made anew every minute (and when it has as many names
 * as the file system allows), so an empty log's mtime, which retention reads, is at most
 * a minute before its attempt's end. The spawn never appends to a file with more than one
 * name (spawn.c). Spares left by a worker killed with SIGKILL are removed at the next
 * start (tn_spares_new), with ROOT/.spare-empty's name (the logs keep their own);
 * tn_spares_free removes the rest.
 *
 * Threads: take and give from one thread; the filler is the pool's own. */
#ifndef TN_SPARES_H
#define TN_SPARES_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Spares kept at most, whatever the caller asks. */
#define TN_SPARES_MAX 4096

typedef enum {
    TN_SPARE_DIR,  /* mkdir 0755 (less the umask) */
    TN_SPARE_FILE, /* an empty file, 0640 (less the umask), unnamed until taken */
} tn_spare_kind;

typedef struct tn_spares tn_spares;

/* A pool on root (an existing directory) that keeps up to cap spares (at most
 * TN_SPARES_MAX) and whose filler thread makes spares while fewer than `ahead` wait
 * (0: no thread; spares come only from tn_spares_give). The spares a previous run left in
 * root are removed first, with what they hold; *removed (may be NULL) gets how many.
 * *out is written only on success; free it with tn_spares_free. */
tn_err tn_spares_new(const char *root, tn_spare_kind kind, uint32_t cap, uint32_t ahead,
                     tn_spares **out, uint32_t *removed);
/* Renames a spare to path. True: path is now an empty dir or file of the kind (a file's
 * times set to now); false: none was ready, or the rename failed (that spare is dropped):
 * the caller makes it as before. Never blocks on the filler. */
bool tn_spares_take(tn_spares *s, const char *path);
/* Keeps what an attempt leaves at path as a spare, when there is room and it is as fresh
 * as a new one (see above). Dirs: true: path is gone (now a spare); false: the caller
 * removes it. Files: true: path now names the shared empty file, its own inode is a
 * spare; false: path is as it was. Only for a path no process can still write to. */
bool tn_spares_give(tn_spares *s, const char *path);
/* Spares waiting now. */
uint32_t tn_spares_len(tn_spares *s);
/* Stops the filler, removes every spare, frees. Accepts NULL. */
void tn_spares_free(tn_spares *s);

#endif

/* joinreq.h: a join request, the process and target of a join packed into one buffer so
 * that it can cross the join helper's execve (see spawn.c). Plain C; the caller packs
 * (malloc allowed), the helper unpacks in place (no allocation). */
#ifndef PC_JOINREQ_H
#define PC_JOINREQ_H

#include <stddef.h>
#include "spawn.h"

/* The descriptors a join helper starts with. The caller's descriptors that the request
 * names are moved to PC_JOIN_FIRST_FD + i, in the order pc_join_fds() lists them. */
#define PC_JOIN_REQUEST_FD 3     /* the packed request (a memfd) */
#define PC_JOIN_ERR_FD 4         /* the error socket */
#define PC_JOIN_FIRST_FD 5
#define PC_JOIN_MAX_PROCS_FDS 16
#define PC_JOIN_MAX_FDS (2 + PC_JOIN_MAX_PROCS_FDS + 3 + 1 + PC_MAX_EXTRA_FDS)

struct pc_join_request {
    unsigned int magic;
    unsigned int size;           /* of the whole buffer */
    struct pc_target target;     /* pointers are offsets into the buffer (0: NULL) */
    struct pc_process process;
    struct pc_security security;
    int has_security;
    char data[];
};

/* The caller's descriptors the helper needs, in slot order (from PC_JOIN_FIRST_FD).
 * Fills src[] (at most PC_JOIN_MAX_FDS) and returns their count; -EINVAL when there are
 * too many. */
int pc_join_fds(const struct pc_target *t, const struct pc_process *p, int *src);

/* Pack t and p with every descriptor renumbered to its slot. Returns a malloc'd buffer
 * (free it) and its size in *size, or NULL with errno set. */
struct pc_join_request *pc_join_pack(const struct pc_target *t, const struct pc_process *p,
                                     size_t *size);

/* Turn the offsets of a packed buffer back into pointers, in place. Returns the request,
 * or NULL when the buffer is not one. */
struct pc_join_request *pc_join_unpack(void *buf, size_t size);

/* In the join helper: enter the namespaces, start the process as the caller's child,
 * send its pid and pidfd over errfd. Returns the helper's exit status. */
int pc_join_in_helper(const struct pc_target *t, const struct pc_process *p, int errfd);

#endif

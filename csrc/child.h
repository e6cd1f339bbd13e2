/* child.h: what the child-side files share. Everything declared here runs between clone
 * and exec in a CLONE_VM child: only raw syscalls and async-signal-safe libc, no malloc,
 * no locks, no stdio. errno writes land in the parent thread's TLS, which is safe only
 * because that thread is suspended (CLONE_VFORK) until the child execs or exits. */
#ifndef PC_CHILD_H
#define PC_CHILD_H

#include <errno.h>
#include "spawn.h"

/* Record where we failed and return -errno. */
static inline int pc_fail(struct pc_child_error *e, int stage, int index)
{
    e->stage = stage;
    e->err = errno ? errno : EIO;
    e->index = index;
    return -e->err;
}

int pc_setup_rootfs(const struct pc_container *c, struct pc_child_error *e);
int pc_mkdir_p(const char *path, mode_t mode);
int pc_write_file(const char *path, const char *value);

int pc_security_before_user(const struct pc_security *s, struct pc_child_error *e);
int pc_security_early_seccomp(const struct pc_security *s, struct pc_child_error *e);
int pc_security_after_user(const struct pc_security *s, struct pc_child_error *e);
/* A parked init's wait for its process: 0 with *p set (pointing into a static buffer; its
 * descriptors are the ones received), 1 when the socket closed, or -errno (e filled). */
int pc_zygote_receive(int sock, struct pc_process **p, struct pc_child_error *e);
int pc_zygote_preload(const struct pc_security *s, struct pc_child_error *e);

int pc_security_final(const struct pc_security *s, struct pc_child_error *e);

#endif

/* zygote.c: the request that hands a process to a parked init (a pooled sandbox).
 *
 * A parked init has done all of the Config's setup (namespaces, cgroup placement, mounts,
 * pivot_root, masked paths, hostname, lo) and waits on a SOCK_SEQPACKET socket for what
 * depends on the process: argv, env, cwd, ids, groups, the security settings (the
 * Config's, with the process's rlimits) and its descriptors. The request is the join
 * request's packed form (joinreq.c: same build at both ends), sent as one message with
 * the process's descriptors attached (SCM_RIGHTS) in the order of its slots. The init
 * receives it into a fixed buffer of its own (it is a fork: this file's static buffer is
 * its private copy), so nothing is allocated between clone and exec. From then on the
 * socket is its error pipe: a report of the stage and errno that failed, or EOF once it
 * has exec'd (its end is close-on-exec). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "child.h"
#include "joinreq.h"

/* The first slot a process descriptor gets in a packed request (the join pidfd's slot
 * comes before it and stays unused: the target is empty). */
#define ZYGOTE_FIRST_SLOT (PC_JOIN_FIRST_FD + 1)
/* SCM_MAX_FD: the kernel passes at most 253 descriptors in one message. */
#define ZYGOTE_MAX_FDS 253

static char request_buf[PC_ZYGOTE_MAX_REQUEST];

/* The process's descriptors in slot order (as pack() numbers them). */
static int process_fds(const struct pc_process *p, int *fds)
{
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] >= 0)
            fds[n++] = p->stdio[i];
    if (p->console_fd >= 0)
        fds[n++] = p->console_fd;
    for (int i = 0; i < p->nextra_fds; i++)
        fds[n++] = p->extra_fds[i];
    return n;
}

int pc_zygote_start(int sock, const struct pc_process *p, struct pc_child_error *cerr)
{
    int fds[3 + 1 + PC_MAX_EXTRA_FDS];
    struct pc_target none;
    size_t size = 0;
    memset(cerr, 0, sizeof(*cerr));
    cerr->index = -1;
    if (p->nextra_fds > PC_MAX_EXTRA_FDS)
        return -E2BIG;
    int nfds = process_fds(p, fds);
    if (nfds > ZYGOTE_MAX_FDS)
        return -E2BIG;
    memset(&none, 0, sizeof(none));
    none.join_pidfd = -1;
    none.cgroup_fd = -1;
    struct pc_join_request *req = pc_join_pack(&none, p, &size);
    if (!req)
        return -errno;
    if (size > PC_ZYGOTE_MAX_REQUEST) {
        free(req);
        return -E2BIG;
    }
    struct iovec iov = { .iov_base = req, .iov_len = size };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * ZYGOTE_MAX_FDS)];
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (nfds > 0) {
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    int err = n < 0 ? errno : n != (ssize_t)size ? EPROTO : 0;
    free(req);
    if (err)
        return -err;
    /* Its report, or EOF: it exec'd (or died, which its exit status tells). */
    struct pc_child_error rep;
    do {
        n = recv(sock, &rep, sizeof(rep), 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        return 0;
    if (n == (ssize_t)sizeof(rep) && rep.err > 0) {
        *cerr = rep;
        return -rep.err;
    }
    cerr->stage = PC_STAGE_NONE;
    cerr->err = n < 0 ? errno : EPROTO;
    return -cerr->err;
}

/* In the init about to park (zygote_park), when the pool asks for it: the Config's
 * seccomp filter, loaded now rather than at the handover, where the kernel's check and
 * compilation of it (about 100 us for the default profile) would be on the start path.
 * The pool asks only for a profile that allows every syscall the init makes from here
 * to the exec (pycontainer.pool), and then sends the process without it. Loaded with
 * CAP_SYS_ADMIN, which the init still has (no_new_privs, when the Config sets it, comes
 * at the handover). */
int pc_zygote_preload(const struct pc_security *s, struct pc_child_error *e)
{
    if (!s || !s->seccomp)
        return 0;
    struct sock_fprog prog = {
        .len = s->seccomp_len,
        .filter = (struct sock_filter *)(uintptr_t)s->seccomp,
    };
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return pc_fail(e, PC_STAGE_SECCOMP, -1);
    return 0;
}

/* In the parked init. Only raw syscalls and the static buffer. */
int pc_zygote_receive(int sock, struct pc_process **out, struct pc_child_error *e)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * ZYGOTE_MAX_FDS)];
    } u;
    struct iovec iov = { .iov_base = request_buf, .iov_len = sizeof(request_buf) };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        return 1;                 /* the pool (or its process) is gone: so are we */
    if (n < 0)
        return pc_fail(e, PC_STAGE_POOL_REQUEST, -1);
    int fds[ZYGOTE_MAX_FDS], nfds = 0;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)nfds);
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
        errno = E2BIG;            /* the caller checks the size: this is not that caller */
        return pc_fail(e, PC_STAGE_POOL_REQUEST, -1);
    }
    struct pc_join_request *r = pc_join_unpack(request_buf, (size_t)n);
    if (!r) {
        errno = EPROTO;
        return pc_fail(e, PC_STAGE_POOL_REQUEST, -1);
    }
    /* Slot numbers to the descriptors that arrived. */
    struct pc_process *p = &r->process;
    int *slots[3 + 1 + PC_MAX_EXTRA_FDS], ns = 0;
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] >= 0)
            slots[ns++] = &p->stdio[i];
    if (p->console_fd >= 0)
        slots[ns++] = &p->console_fd;
    if (p->nextra_fds < 0 || p->nextra_fds > PC_MAX_EXTRA_FDS) {
        errno = EPROTO;
        return pc_fail(e, PC_STAGE_POOL_REQUEST, -1);
    }
    for (int i = 0; i < p->nextra_fds; i++)
        slots[ns++] = (int *)&p->extra_fds[i];
    for (int i = 0; i < ns; i++) {
        int at = *slots[i] - ZYGOTE_FIRST_SLOT;
        if (at < 0 || at >= nfds) {
            errno = EPROTO;
            return pc_fail(e, PC_STAGE_POOL_REQUEST, -1);
        }
        *slots[i] = fds[at];
    }
    *out = p;
    return 0;
}

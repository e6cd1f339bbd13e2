/* joinreq.c: pack a join's target and process into one buffer, and unpack it in the join
 * helper. Both ends are the same build of this file, so the structs' layout is shared;
 * only pointers and descriptor numbers change on the way. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "joinreq.h"

#define PC_JOIN_MAGIC 0x70636a31u   /* "pcj1" */

int pc_join_fds(const struct pc_target *t, const struct pc_process *p, int *src)
{
    int n = 0;
    if (t->nprocs_fds > PC_JOIN_MAX_PROCS_FDS || p->nextra_fds > PC_MAX_EXTRA_FDS)
        return -EINVAL;
    src[n++] = t->join_pidfd;
    if (t->cgroup_fd >= 0)
        src[n++] = t->cgroup_fd;
    for (int i = 0; i < t->nprocs_fds; i++)
        src[n++] = t->procs_fds[i];
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] >= 0)
            src[n++] = p->stdio[i];
    if (p->console_fd >= 0)
        src[n++] = p->console_fd;
    for (int i = 0; i < p->nextra_fds; i++)
        src[n++] = p->extra_fds[i];
    return n;
}

/* A growing buffer: sizes first (buf == NULL), then copies. */
struct packer {
    char *buf;
    size_t off;
};

static uintptr_t put(struct packer *k, const void *src, size_t len)
{
    size_t at = (k->off + 7) & ~(size_t)7;
    if (k->buf && len && src)
        memcpy(k->buf + at, src, len);
    k->off = at + len;
    return at;
}

static uintptr_t put_str(struct packer *k, const char *s)
{
    return s ? put(k, s, strlen(s) + 1) : 0;
}

static uintptr_t put_strv(struct packer *k, char *const *v)
{
    size_t n = 0;
    while (v[n])
        n++;
    uintptr_t at = put(k, NULL, (n + 1) * sizeof(uintptr_t));
    for (size_t i = 0; i < n; i++) {
        uintptr_t s = put_str(k, v[i]);
        if (k->buf)
            memcpy(k->buf + at + i * sizeof(uintptr_t), &s, sizeof(s));
    }
    if (k->buf)
        memset(k->buf + at + n * sizeof(uintptr_t), 0, sizeof(uintptr_t));
    return at;
}

static void pack(struct packer *k, const struct pc_target *t, const struct pc_process *p)
{
    struct pc_join_request *r = (struct pc_join_request *)k->buf;
    int slot = PC_JOIN_FIRST_FD;
    k->off = offsetof(struct pc_join_request, data);

    struct pc_target tt;
    memset(&tt, 0, sizeof(tt));
    tt.join_pidfd = slot++;
    tt.join_ns = t->join_ns;
    tt.cgroup_fd = t->cgroup_fd >= 0 ? slot++ : -1;
    int procs[PC_JOIN_MAX_PROCS_FDS];
    for (int i = 0; i < t->nprocs_fds; i++)
        procs[i] = slot++;
    tt.procs_fds = (const int *)put(k, procs, (size_t)t->nprocs_fds * sizeof(int));
    tt.nprocs_fds = t->nprocs_fds;
    tt.exec_fifo_fd = -1;
    tt.join_helper_fd = -1;
    tt.zygote_fd = -1;

    struct pc_process pp = *p;
    for (int i = 0; i < 3; i++)
        pp.stdio[i] = p->stdio[i] >= 0 ? slot++ : -1;
    pp.console_fd = p->console_fd >= 0 ? slot++ : -1;
    int extra[PC_MAX_EXTRA_FDS];
    for (int i = 0; i < p->nextra_fds; i++)
        extra[i] = slot++;
    pp.extra_fds = (const int *)put(k, extra, (size_t)p->nextra_fds * sizeof(int));
    pp.argv = (char *const *)put_strv(k, p->argv);
    pp.envp = (char *const *)put_strv(k, p->envp);
    pp.cwd = (const char *)put_str(k, p->cwd);
    pp.groups = (const gid_t *)put(k, p->groups, (size_t)p->ngroups * sizeof(gid_t));
    pp.security = NULL;

    struct pc_security ss;
    memset(&ss, 0, sizeof(ss));
    if (p->security) {
        ss = *p->security;
        ss.seccomp = ss.seccomp ? (const void *)put(k, ss.seccomp, (size_t)ss.seccomp_len * 8) : NULL;
        ss.rlimits = (const struct pc_rlimit *)put(k, ss.rlimits,
                                                   (size_t)ss.nrlimits * sizeof(struct pc_rlimit));
    }
    put(k, "", 1);   /* the buffer ends in a NUL: unpack checks it */
    if (r) {
        r->magic = PC_JOIN_MAGIC;
        r->size = (unsigned int)k->off;
        r->target = tt;
        r->process = pp;
        r->security = ss;
        r->has_security = p->security != NULL;
    }
}

struct pc_join_request *pc_join_pack(const struct pc_target *t, const struct pc_process *p,
                                     size_t *size)
{
    struct packer k = { NULL, 0 };
    pack(&k, t, p);
    if (k.off > UINT32_MAX) {
        errno = E2BIG;
        return NULL;
    }
    k.buf = calloc(1, k.off);
    if (!k.buf)
        return NULL;
    pack(&k, t, p);
    *size = k.off;
    return (struct pc_join_request *)k.buf;
}

/* An offset back to a pointer; 0 stays NULL. Fails (sets *bad) past the end. */
static void *fix(char *base, size_t size, const void *off, int *bad)
{
    uintptr_t o = (uintptr_t)off;
    if (o == 0)
        return NULL;
    if (o >= size) {
        *bad = 1;
        return NULL;
    }
    return base + o;
}

static char *const *fix_strv(char *base, size_t size, char *const *off, int *bad)
{
    uintptr_t *v = fix(base, size, off, bad);
    if (!v)
        return NULL;
    for (size_t i = 0; ; i++) {
        if ((char *)&v[i + 1] > base + size) {
            *bad = 1;     /* no terminating NULL inside the buffer */
            return NULL;
        }
        if (!v[i])
            return (char *const *)v;
        v[i] = (uintptr_t)fix(base, size, (const void *)v[i], bad);
    }
}

struct pc_join_request *pc_join_unpack(void *buf, size_t size)
{
    struct pc_join_request *r = buf;
    char *base = buf;
    int bad = 0;
    if (size < sizeof(*r) || r->magic != PC_JOIN_MAGIC || r->size != size || base[size - 1] != 0)
        return NULL;
    r->target.procs_fds = fix(base, size, r->target.procs_fds, &bad);
    r->target.container = NULL;
    r->target.uid_map = r->target.gid_map = NULL;
    r->target.ns_fds = r->target.ns_types = NULL;
    r->target.nns_fds = 0;
    struct pc_process *p = &r->process;
    p->extra_fds = fix(base, size, p->extra_fds, &bad);
    p->argv = fix_strv(base, size, p->argv, &bad);
    p->envp = fix_strv(base, size, p->envp, &bad);
    p->cwd = fix(base, size, p->cwd, &bad);
    p->groups = fix(base, size, p->groups, &bad);
    if (r->has_security) {
        r->security.seccomp = fix(base, size, r->security.seccomp, &bad);
        r->security.rlimits = fix(base, size, r->security.rlimits, &bad);
        p->security = &r->security;
    } else {
        p->security = NULL;
    }
    if (bad || !p->argv || !p->argv[0] || !p->envp || !p->cwd)
        return NULL;
    return r;
}

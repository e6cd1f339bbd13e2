/* security.c: per-process hardening in the child, between the user switch and exec.
 * Capabilities, rlimits, oom_score_adj, no_new_privs, seccomp. Raw syscalls: glibc's
 * wrappers for some of these act on every thread of the (shared-memory) caller. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include "child.h"
#include "syscalls.h"

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

/* Before the user switch: what needs privileges we are about to give up. */
int pc_security_before_user(const struct pc_security *s, struct pc_child_error *e)
{
    if (!s)
        return 0;
    for (int i = 0; i < s->nrlimits; i++) {
        struct rlimit64 rl = { s->rlimits[i].soft, s->rlimits[i].hard };
        if (syscall(SYS_prlimit64, 0, s->rlimits[i].resource, &rl, NULL) < 0)
            return pc_fail(e, PC_STAGE_RLIMITS, i);
    }
    if (s->set_oom_score_adj) {
        char buf[16];
        int len = snprintf(buf, sizeof(buf), "%d", s->oom_score_adj);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, buf, (size_t)len) != len)
            return pc_fail(e, PC_STAGE_OOM_SCORE_ADJ, -1);
        close(fd);
    }
    if (s->set_caps) {
        /* Dropping from the bounding set needs CAP_SETPCAP, which we still hold. */
        for (int cap = 0; cap <= s->last_cap && cap < 64; cap++)
            if (!(s->cap_bounding & (1ULL << cap)) &&
                prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                return pc_fail(e, PC_STAGE_CAPS, cap);
        /* setresuid to a non-root uid would clear the permitted set. */
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            return pc_fail(e, PC_STAGE_CAPS, -1);
    }
    return 0;
}

static int load_seccomp(const struct pc_security *s)
{
    struct sock_fprog prog = {
        .len = s->seccomp_len,
        .filter = (struct sock_filter *)(uintptr_t)s->seccomp,
    };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

/* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we have it
 * (as runc does). The setup syscalls still to come must then pass the filter. */
int pc_security_early_seccomp(const struct pc_security *s, struct pc_child_error *e)
{
    if (s && s->seccomp && !s->no_new_privs && load_seccomp(s) < 0)
        return pc_fail(e, PC_STAGE_SECCOMP, -1);
    return 0;
}

/* After the user switch: the capability sets we keep, ambient ones raised. */
int pc_security_after_user(const struct pc_security *s, struct pc_child_error *e)
{
    if (!s || !s->set_caps)
        return 0;
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(s->cap_effective >> (32 * i));
        data[i].permitted = (uint32_t)(s->cap_permitted >> (32 * i));
        data[i].inheritable = (uint32_t)(s->cap_inheritable >> (32 * i));
    }
    if (syscall(SYS_capset, &hdr, data) < 0)
        return pc_fail(e, PC_STAGE_CAPS, -1);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        return pc_fail(e, PC_STAGE_CAPS, -1);
    for (int cap = 0; cap <= s->last_cap && cap < 64; cap++)
        if ((s->cap_ambient & (1ULL << cap)) &&
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
            return pc_fail(e, PC_STAGE_CAPS, cap);
    return 0;
}

/* The last steps before execve. */
int pc_security_final(const struct pc_security *s, struct pc_child_error *e)
{
    if (!s)
        return 0;
    umask((mode_t)s->umask);
    if (s->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return pc_fail(e, PC_STAGE_NO_NEW_PRIVS, -1);
    if (s->seccomp && s->no_new_privs && load_seccomp(s) < 0)
        return pc_fail(e, PC_STAGE_SECCOMP, -1);
    return 0;
}

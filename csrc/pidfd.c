/* pidfd.c: the exit watcher's blocking call. One thread per Python process sits here with
 * no GIL; each readable pidfd is a child that has exited, reaped by pidfd, so a reused pid
 * is never confused with it.
 *
 * Our children start with exit_signal 0, but execve makes it SIGCHLD again, so a
 * waitpid(-1) elsewhere in the program can reap them first. The status is not lost then:
 * since Linux 6.15 the pidfd keeps it (PIDFD_GET_INFO, PIDFD_INFO_EXIT) once the process
 * has been reaped, by whoever reaped it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include "spawn.h"
#include "syscalls.h"

#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#define PC_REAP_BATCH 256

/* struct pidfd_info as of Linux 6.15 (linux/pidfd.h; not in older headers). */
struct pc_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
    uint32_t coredump_mask;
    uint32_t spare;
};
#define PC_PIDFD_GET_INFO _IOWR(0xFF, 11, struct pc_pidfd_info)
#define PC_PIDFD_INFO_EXIT (1ULL << 3)

static int status_from_wait(int ws)
{
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws))
        return -WTERMSIG(ws);
    return PC_STATUS_UNKNOWN;
}

/* Someone else reaped it (ECHILD), or is reaping it right now: the pidfd has the status
 * once release is complete, a matter of microseconds. */
static int status_from_pidfd(int fd)
{
    for (int tries = 0; tries < 2000; tries++) {
        struct pc_pidfd_info info;
        memset(&info, 0, sizeof(info));
        info.mask = PC_PIDFD_INFO_EXIT;
        if (ioctl(fd, PC_PIDFD_GET_INFO, &info) == 0) {
            if (info.mask & PC_PIDFD_INFO_EXIT)
                return status_from_wait(info.exit_code);
        } else if (errno != ESRCH) {
            return PC_STATUS_UNKNOWN;          /* before 6.15: it is gone */
        }
        /* ESRCH, or no exit information yet: the other waiter is still releasing it. */
        struct timespec pause = { 0, 50 * 1000 };
        nanosleep(&pause, NULL);
    }
    return PC_STATUS_UNKNOWN;
}

static int exit_status(const siginfo_t *si)
{
    if (si->si_code == CLD_EXITED)
        return si->si_status;
    return -si->si_status;   /* CLD_KILLED, CLD_DUMPED: the subprocess convention */
}

int pc_reap_ready(int epfd, int timeout_ms, int *fds, int *statuses, int max)
{
    struct epoll_event ev[PC_REAP_BATCH];
    if (max > PC_REAP_BATCH)
        max = PC_REAP_BATCH;
    int n = epoll_wait(epfd, ev, max, timeout_ms);
    if (n < 0)
        return -errno;
    for (int i = 0; i < n; i++) {
        int fd = ev[i].data.fd;
        siginfo_t si;
        si.si_pid = 0;
        fds[i] = fd;
        if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | __WALL | WNOHANG) == 0 && si.si_pid)
            statuses[i] = exit_status(&si);
        else
            statuses[i] = status_from_pidfd(fd);
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    }
    return n;
}

/* One pidfd, for callers with no epoll set: asyncio (reap, from the event loop when the
 * pidfd polls readable) and the event streams (look only: the exit watcher or another
 * process owns the status). */
int pc_pidfd_exit_status(int fd, int reap, int *status)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    int flags = WEXITED | __WALL | WNOHANG | (reap ? 0 : WNOWAIT);
    if (waitid((idtype_t)P_PIDFD, (id_t)fd, &si, flags) == 0) {
        if (!si.si_pid)
            return 0;                  /* our child, and not (yet) waitable */
        *status = exit_status(&si);
        return 1;
    }
    if (errno != ECHILD)
        return -errno;
    /* Not our child, or someone reaped it first. A pidfd polls readable once its process
     * has exited (zombie or reaped); until then there is no status to give. */
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int n;
    do {
        n = poll(&p, 1, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return 0;
    *status = status_from_pidfd(fd);
    return 1;
}

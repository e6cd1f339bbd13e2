/* pidfd.c: the exit watcher's blocking call. One thread per Python process sits here with
 * no GIL; each readable pidfd is a child that has exited, reaped by pidfd, so a waitpid(-1)
 * elsewhere in the program cannot take a status meant for us (our children have
 * exit_signal 0: only __WALL waiters see them) and a reused pid is never confused. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include "spawn.h"
#include "syscalls.h"

#define PC_REAP_BATCH 256

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
            statuses[i] = PC_STATUS_UNKNOWN;   /* reaped by someone else (ECHILD) */
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    }
    return n;
}

int pc_clone3_supported(void)
{
    return 1;
}

/* attacker.c: root inside a container, hunting for processes of the runtime.
 *
 * Built statically by tests/security/conftest.py and run as a container process. It
 * scans /proc of the container's pid namespace without pause for processes other than
 * itself and its own children, and for each one whose program is not the container's
 * busybox (that is, a process of the runtime that has not exec'd yet) it tries what a
 * hostile root would: readlink and open of /proc/<pid>/exe (O_PATH, kept), open of
 * /proc/<pid>/mem read-write (never written), and open of every /proc/<pid>/fd/N. One
 * line a finding on stdout:
 *
 *   seen PID EXE          a runtime process before exec (EXE: readlink, or "?")
 *   denied PID WHAT ERRNO the kernel refused WHAT (exe, mem, fds)
 *   got PID WHAT TARGET   the kernel let us have WHAT (exe, mem, fd/N)
 *   exewrite RESULT       on SIGTERM: each kept exe reopened O_WRONLY and its first byte
 *                         written back ("ok" or errno)
 *
 * then "done" and exit 0 on SIGTERM. Arguments: none. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static int kept[4096], nkept;
static char done_pids[1 << 16];

static void on_term(int sig) { (void)sig; stop = 1; }

static void try_pid(int pid)
{
    char path[64], target[512];
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n >= 0) {
        target[n] = 0;
        if (strcmp(target, "/bin/busybox") == 0 || strcmp(target, "/attacker") == 0)
            return;   /* the container's own programs: fair game, not ours */
    } else if (errno == ENOENT) {
        return;       /* gone, or a zombie */
    } else {
        strcpy(target, "?");
    }
    if (pid < (int)sizeof(done_pids) && done_pids[pid])
        return;
    if (pid < (int)sizeof(done_pids))
        done_pids[pid] = 1;
    printf("seen %d %s\n", pid, target);
    if (n < 0)
        printf("denied %d exe %d\n", pid, errno);
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd >= 0) {
        printf("got %d exe %s\n", pid, target);
        if (nkept < 4096)
            kept[nkept++] = fd;
    }
    snprintf(path, sizeof(path), "/proc/%d/mem", pid);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        printf("got %d mem rw\n", pid);
        close(fd);
    } else {
        printf("denied %d mem %d\n", pid, errno);
    }
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) {
        printf("denied %d fds %d\n", pid, errno);
    } else {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char fdpath[96];
            snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%s", pid, de->d_name);
            ssize_t m = readlink(fdpath, target, sizeof(target) - 1);
            target[m >= 0 ? m : 0] = 0;
            int f = open(fdpath, O_PATH | O_CLOEXEC);
            if (f >= 0) {
                printf("got %d fd/%s %s\n", pid, de->d_name, target);
                close(f);
            }
        }
        closedir(d);
    }
    fflush(stdout);
}

int main(void)
{
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int self = getpid();
    printf("ready %d\n", self);
    while (!stop) {
        DIR *d = opendir("/proc");
        if (!d)
            return 1;
        struct dirent *de;
        while (!stop && (de = readdir(d))) {
            int pid = atoi(de->d_name);
            if (pid > 0 && pid != self)
                try_pid(pid);
        }
        closedir(d);
    }
    for (int i = 0; i < nkept; i++) {
        char p[64];
        snprintf(p, sizeof(p), "/proc/self/fd/%d", kept[i]);
        /* A real write, of the byte that is there already: opening for writing is not
         * enough (a sealed memfd opens, then refuses every write). */
        char byte;
        int r = open(p, O_RDONLY | O_CLOEXEC);
        if (r < 0 || pread(r, &byte, 1, 0) != 1) {
            printf("exewrite %d\n", errno);
            continue;
        }
        close(r);
        int w = open(p, O_WRONLY | O_CLOEXEC);
        if (w >= 0 && pwrite(w, &byte, 1, 0) == 1)
            printf("exewrite ok\n");
        else
            printf("exewrite %d\n", errno);
        if (w >= 0)
            close(w);
    }
    printf("done\n");
    return 0;
}

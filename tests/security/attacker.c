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
 *   denied PID exe ERRNO  the kernel refused its exe link (the first time)
 *   got PID WHAT TARGET   the kernel let us have WHAT (exe, mem, fd/N)
 *
 * A process is tried again on every scan until it execs: a refusal before its
 * capabilities are dropped may be a grant after.
 *   exewrite RESULT       on SIGTERM: each kept exe reopened O_WRONLY and its first byte
 *                         written back ("ok" or errno)
 *
 * then "done" and exit 0 on SIGTERM. Arguments: more programs of the container's own
 * (their exe paths) besides /bin/busybox and /attacker. */
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
static char **own_programs;    /* argv: the container's own programs, never ours */

static int is_own(const char *exe)
{
    if (strcmp(exe, "/bin/busybox") == 0 || strcmp(exe, "/attacker") == 0)
        return 1;
    for (char **p = own_programs; p && *p; p++)
        if (strcmp(exe, *p) == 0)
            return 1;
    return 0;
}
static int kept[4096], nkept;
static unsigned char state[1 << 16];   /* by pid: what we have had of it */

static void on_term(int sig) { (void)sig; stop = 1; }

enum { SEEN = 1, GOT_EXE = 2, GOT_MEM = 4, GOT_FDS = 8, DENIED = 16 };

/* After an open of /proc/<pid>/...: was it of the runtime's process, not of the program
 * it has exec'd since? Its exe must still not be one of the container's. (A refusal
 * means it is still ours and non-dumpable: then the open we made went through while it
 * was not, which counts.) */
static int still_ours(int pid)
{
    char path[64], target[512];
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return errno != ENOENT;
    target[n] = 0;
    return !is_own(target);
}

/* Called on every scan while the process has not exec'd: a refusal now may be a grant a
 * moment later (capabilities are dropped just before exec). */
static void try_pid(int pid)
{
    char path[64], target[512];
    unsigned char *st = &state[pid & 0xffff];
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    int err = errno;
    if (n >= 0) {
        target[n] = 0;
        if (is_own(target))
            return;   /* the container's own programs: fair game, not ours */
    } else if (err == ENOENT) {
        return;       /* gone, or a zombie */
    } else {
        strcpy(target, "?");
    }
    if (!(*st & SEEN)) {
        *st |= SEEN;
        printf("seen %d %s\n", pid, target);
    }
    if (n < 0 && !(*st & DENIED)) {
        *st |= DENIED;
        printf("denied %d exe %d\n", pid, err);
    }
    int fd;
    if (!(*st & GOT_EXE) && (fd = open(path, O_PATH | O_CLOEXEC)) >= 0) {
        /* The process may have exec'd since the readlink: what did we get? */
        char self[64], got[512];
        snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
        ssize_t g = readlink(self, got, sizeof(got) - 1);
        got[g >= 0 ? g : 0] = 0;
        if (is_own(got)) {
            close(fd);
        } else {
            *st |= GOT_EXE;
            printf("got %d exe %s\n", pid, got);
            if (nkept < 4096)
                kept[nkept++] = fd;
            else
                close(fd);
        }
    }
    snprintf(path, sizeof(path), "/proc/%d/mem", pid);
    if (!(*st & GOT_MEM) && (fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
        if (still_ours(pid)) {
            *st |= GOT_MEM;
            printf("got %d mem rw\n", pid);
        }
        close(fd);
    }
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d;
    if (!(*st & GOT_FDS) && (d = opendir(path))) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char fdpath[300];
            snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%s", pid, de->d_name);
            ssize_t m = readlink(fdpath, target, sizeof(target) - 1);
            target[m >= 0 ? m : 0] = 0;
            int f = open(fdpath, O_PATH | O_CLOEXEC);
            if (f >= 0 && still_ours(pid)) {
                *st |= GOT_FDS;
                printf("got %d fd/%s %s\n", pid, de->d_name, target);
            }
            if (f >= 0)
                close(f);
        }
        closedir(d);
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    (void)argc;
    own_programs = argv + 1;
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

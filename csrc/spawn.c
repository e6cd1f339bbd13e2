/* spawn.c: clone3 into new or joined namespaces, the child's setup, exec.
 *
 * The child is a CLONE_VM | CLONE_VFORK child on a stack of its own, as glibc's
 * posix_spawn makes: no page tables are copied, so the cost of a start does not grow with
 * the caller's heap, and the calling thread stays suspended until the child execs or
 * exits, so the child may use the thread's TLS (errno) without racing it.
 *
 * New container:  caller --clone3(CLONE_NEW*, CLONE_INTO_CGROUP, CLONE_PIDFD)--> init
 * Join:           caller --clone3(CLONE_VM, CLONE_VFORK)--> intermediate --execve--> join helper
 *                        helper: setns(init pidfd)
 *                        helper --clone3(CLONE_PARENT, CLONE_INTO_CGROUP, CLONE_PIDFD)--> process
 *                        (a fork of the small helper)
 * CLONE_PARENT makes the joined process the caller's child, inside the container's pid
 * namespace. The helper is an exec of a program of ours so that the process the
 * container can see before it execs never shares the caller's memory (see the comment
 * above pc_join_in_helper). Children start with exit_signal 0, but execve resets it to
 * SIGCHLD (see pidfd.c for how statuses survive a waitpid(-1) elsewhere).
 *
 * Every child closes what it inherited of the caller's descriptors but what it was told
 * to keep before it uses any path, and checks that its cwd lies inside its root.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "child.h"
#include "joinreq.h"
#include "syscalls.h"

#define PC_STACK_SIZE (256 * 1024)
#define PC_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *const stage_names[PC_STAGE_COUNT] = {
    [PC_STAGE_NONE] = "spawn",
    [PC_STAGE_CGROUP] = "cgroup",
    [PC_STAGE_CGROUP_NS] = "cgroupns",
    [PC_STAGE_SIGNALS] = "signals",
    [PC_STAGE_MOUNT_PRIVATE] = "mount_private",
    [PC_STAGE_BIND_SOURCE] = "bind_source",
    [PC_STAGE_BIND_ROOTFS] = "bind_rootfs",
    [PC_STAGE_PIVOT_ROOT] = "pivot_root",
    [PC_STAGE_READONLY_ROOTFS] = "readonly_rootfs",
    [PC_STAGE_MOUNT_PROC] = "mount_proc",
    [PC_STAGE_MOUNT_SYS] = "mount_sys",
    [PC_STAGE_MOUNT_DEV] = "mount_dev",
    [PC_STAGE_MOUNT_TMP] = "mount_tmp",
    [PC_STAGE_MOUNT] = "mount",
    [PC_STAGE_HOSTNAME] = "hostname",
    [PC_STAGE_DOMAINNAME] = "domainname",
    [PC_STAGE_LOOPBACK] = "loopback",
    [PC_STAGE_ID_MAPPINGS] = "id_mappings",
    [PC_STAGE_SETNS] = "setns",
    [PC_STAGE_CLONE] = "clone",
    [PC_STAGE_DEVICES] = "devices",
    [PC_STAGE_SYSCTL] = "sysctl",
    [PC_STAGE_READONLY_PATHS] = "readonly_paths",
    [PC_STAGE_MASKED_PATHS] = "masked_paths",
    [PC_STAGE_RLIMITS] = "rlimits",
    [PC_STAGE_OOM_SCORE_ADJ] = "oom_score_adj",
    [PC_STAGE_CAPS] = "capabilities",
    [PC_STAGE_NO_NEW_PRIVS] = "no_new_privileges",
    [PC_STAGE_SECCOMP] = "seccomp",
    [PC_STAGE_PDEATHSIG] = "pdeathsig",
    [PC_STAGE_SETGROUPS] = "setgroups",
    [PC_STAGE_SETGID] = "setgid",
    [PC_STAGE_SETUID] = "setuid",
    [PC_STAGE_CWD] = "cwd",
    [PC_STAGE_STDIO] = "stdio",
    [PC_STAGE_CLOSE_FDS] = "close_fds",
    [PC_STAGE_EXEC] = "exec",
    [PC_STAGE_TERMINAL] = "terminal",
    [PC_STAGE_JOIN_HELPER] = "join_helper",
    [PC_STAGE_DUMPABLE] = "dumpable",
    [PC_STAGE_ROOTFS_PROPAGATION] = "rootfs_propagation",
    [PC_STAGE_POOL_REQUEST] = "pool_request",
    [PC_STAGE_EXEC_FIFO] = "exec_fifo",
    [PC_STAGE_DIED] = "died",
};

const char *pc_stage_name(int stage)
{
    if (stage < 0 || stage >= PC_STAGE_COUNT || !stage_names[stage])
        return "unknown";
    return stage_names[stage];
}

/* Shared between the caller and its CLONE_VM children (they write, it reads after). */
struct spawn_ctx {
    const struct pc_target *t;
    const struct pc_process *p;
    int errfd;            /* write end of the close-on-exec error pipe */
    int legacy;           /* cloned with glibc's clone(): no CLONE_INTO_CGROUP, no CLEAR_SIGHAND */
    char *stack2;         /* the joined process's stack */
    int join_pidfd_out;   /* filled by the kernel in the helper's clone */
    pid_t join_pid_out;
    int sync_r, sync_w;   /* user ns: the init waits on sync_r until its maps are written */
    int done_r, done_w;   /* user ns: EOF on done_r once the init has exec'd or exited */
    int staged;           /* the init is a fork that waits at t->exec_fifo_fd */
    /* The init is a fork (memory of its own), not a CLONE_VM child: staged, or not alone
     * in its pid namespace (a joined one, or ours) while it sets up. */
    int forked;
    const int *join_src;  /* a join's intermediate: the descriptors to move to slots 3... */
    int join_nsrc;
    int fifo;             /* staged: its exec fifo, until the go; else -1 */
    int privileged;       /* the caller holds CAP_SYS_PTRACE: it can read a non-dumpable init */
    int own_mm;           /* our memory is ours alone and non-dumpable: keep it so */
};

/* clone3 on our trampoline; glibc's clone() where clone3 or the trampoline is missing. */
static long clone_vm(struct clone_args *a, int (*fn)(void *), struct spawn_ctx *ctx)
{
    long ret = pc_clone3_fn(a, sizeof(*a), fn, ctx);
    if (ret != -ENOSYS)
        return ret;
    ctx->legacy = 1;
    int flags = (int)(a->flags & 0xffffffffULL & ~(unsigned long long)CSIGNAL);
    ret = clone(fn, (char *)(uintptr_t)(a->stack + a->stack_size), flags, ctx,
                (int *)(uintptr_t)a->pidfd);
    return ret < 0 ? -errno : ret;
}

static void report(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    ssize_t n;
    do {
        n = write(ctx->errfd, e, sizeof(*e));
    } while (n < 0 && errno == EINTR);
}

/* Every disposition to SIG_DFL. Early, in a child cloned without CLONE_CLEAR_SIGHAND
 * (the caller's handlers are Python's, in shared memory); and before exec, for the
 * ignored ones, which CLONE_CLEAR_SIGHAND and exec both keep. Only the zeroed handler
 * field is read, so glibc's struct layout serves for the kernel's. */
static void reset_signal_handlers(void)
{
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, _NSIG / 8);
}

static int join_cgroups(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    const struct pc_target *t = ctx->t;
    for (int i = 0; i < t->nprocs_fds; i++)
        if (write(t->procs_fds[i], "0", 1) != 1)
            return pc_fail(e, PC_STAGE_CGROUP, i);
    if (ctx->legacy && t->cgroup_fd >= 0) {
        int fd = openat(t->cgroup_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            return pc_fail(e, PC_STAGE_CGROUP, t->nprocs_fds);
        close(fd);
    }
    return 0;
}

/* Enter the existing namespaces a new container names by path (or the network namespace
 * the caller prepared): the cgroup one (cgroup != 0) or all the others but pid, which the
 * caller entered for its children before the clone (enter_pid_namespace). setns() checks
 * each descriptor's type, so a file that is not such a namespace fails with EINVAL. */
static int join_namespaces(const struct pc_target *t, int cgroup, struct pc_child_error *e)
{
    for (int i = 0; i < t->nns_fds; i++) {
        if ((t->ns_types[i] == CLONE_NEWCGROUP) != (cgroup != 0) || t->ns_types[i] == CLONE_NEWPID)
            continue;
        if (setns(t->ns_fds[i], t->ns_types[i]) < 0)
            return pc_fail(e, PC_STAGE_SETNS, i);
    }
    return 0;
}

static int bring_up_loopback(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(s);
    errno = saved;
    return rc;
}

/* Send `len` bytes and one descriptor (SCM_RIGHTS) over a unix socket in one message. */
static int send_with_fd(int sock, const void *buf, size_t len, int fd)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof(u));
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ssize_t n;
    do {
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)len ? 0 : -1;
}

static int send_fd(int sock, int fd)
{
    char byte = 0;
    return send_with_fd(sock, &byte, 1, fd);
}

/* A pty of the devpts we are in (the container's, after pivot_root or setns), as runc
 * makes it: the master goes to the caller over the console socket; the peer becomes our
 * controlling terminal in a new session, owned by the process's user. TIOCGPTPEER opens
 * the peer without a path that could be swapped. Returns the peer, or -1. */
static int open_terminal(const struct pc_process *p)
{
    int unlock = 0, master, peer = -1;
    master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -1;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 ||
        (peer = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 ||
        fchown(peer, p->uid, (gid_t)-1) < 0 ||
        send_fd(p->console_fd, master) < 0 ||
        setsid() < 0 || ioctl(peer, TIOCSCTTY, 0) < 0) {
        int saved = errno;
        close(master);
        if (peer >= 0)
            close(peer);
        errno = saved;
        return -1;
    }
    close(master);
    return peer;
}

/* The descriptors the process gets: 0, 1, 2 and its extra ones. */
static int kept_fds(const struct pc_process *p)
{
    return 3 + p->nextra_fds;
}

/* stdio and the extra descriptors into 0, 1, 2, 3, ...: dup every source above that
 * range first, so that no source is clobbered, then dup2 into place (dup2 clears
 * close-on-exec). The error pipe moves above the range too. With a terminal, its peer
 * is all three of stdio. */
static int setup_stdio(struct spawn_ctx *ctx)
{
    const struct pc_process *p = ctx->p;
    int n = kept_fds(p), tmp[3 + PC_MAX_EXTRA_FDS], null_fd = -1, tty = -1;
    if (p->console_fd >= 0 && (tty = open_terminal(p)) < 0)
        return -2;
    if (ctx->errfd >= 0 && ctx->errfd < n && (ctx->errfd = fcntl(ctx->errfd, F_DUPFD_CLOEXEC, n)) < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        int src = i >= 3 ? p->extra_fds[i - 3] : tty >= 0 ? tty : p->stdio[i];
        if (src < 0) {
            if (null_fd < 0 && (null_fd = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
                return -1;
            src = null_fd;
        }
        if ((tmp[i] = fcntl(src, F_DUPFD_CLOEXEC, n)) < 0)
            return -1;
    }
    for (int i = 0; i < n; i++)
        if (dup2(tmp[i], i) < 0)
            return -1;
    return 0;
}

/* Close descriptors first..last: close_range, or one by one where it fails, whatever
 * the errno: missing (before Linux 5.9), or refused by a seccomp filter. A descriptor
 * that close() refuses (other than one not open) is a failure: it would stay open. */
static int close_span(unsigned first, unsigned last)
{
    if (pc_close_range(first, last, 0) == 0)
        return 0;
    struct rlimit rl;
    if (syscall(SYS_getrlimit, RLIMIT_NOFILE, &rl) < 0)
        return -1;
    rlim_t max = rl.rlim_cur > (1 << 20) ? (1 << 20) : rl.rlim_cur;
    for (rlim_t fd = first; fd < max && fd <= last; fd++)
        if (close((int)fd) < 0 && errno != EBADF && errno != EINTR)
            return -1;   /* EINTR: Linux has closed it all the same */
    return 0;
}

/* Close every descriptor from `first` up but those in keep[0..n) (sorted here; entries
 * below `first` or -1 are ignored). What a child inherited of the caller's table ends
 * here: nothing of the host outlives this call but what the child was told to keep. */
static int close_all_but(unsigned first, int *keep, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int x = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = x;
        }
    unsigned next = first;
    for (int i = 0; i < n; i++) {
        if (keep[i] < 0 || (unsigned)keep[i] < next)
            continue;
        if ((unsigned)keep[i] > next && close_span(next, (unsigned)keep[i] - 1) < 0)
            return -1;
        next = (unsigned)keep[i] + 1;
    }
    return close_span(next, ~0U);
}

/* The cwd must lie inside the root we are in: a path through a descriptor of the host
 * (/proc/self/fd/N, CVE-2024-21626) reaches a directory the root does not contain, and
 * the kernel's getcwd then starts with "(unreachable)" instead of "/". */
static int cwd_in_root(void)
{
    char buf[PATH_MAX];
    if (syscall(SYS_getcwd, buf, sizeof(buf)) < 0)
        return -1;
    if (buf[0] != '/') {
        errno = EPERM;
        return -1;
    }
    return 0;
}

static const char *env_path(char *const *envp)
{
    for (; *envp; envp++)
        if (strncmp(*envp, "PATH=", 5) == 0)
            return *envp + 5;
    return PC_DEFAULT_PATH;
}

static char *format_uint(char *end, unsigned long v)
{
    *--end = '\0';
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* One candidate of exec_search: execve it, or with probe only check that it could be. */
static int try_exec(const char *path, char *const *argv, char *const *envp, int probe)
{
    if (!probe)
        return execve(path, argv, envp);
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode) || access(path, X_OK) < 0) {
        errno = EACCES;
        return -1;
    }
    return 0;
}

/* execvpe without its malloc and without the caller's environ: PATH comes from envp.
 * With probe, returns 0 once a candidate would do (staging checks before it waits). */
static int exec_search(char *const *argv, char *const *envp, int probe)
{
    const char *file = argv[0];
    if (strchr(file, '/'))
        return try_exec(file, argv, envp, probe);
    char buf[PATH_MAX];
    size_t flen = strlen(file);
    int seen_eacces = 0, last = ENOENT;
    for (const char *dir = env_path(envp); ; ) {
        const char *end = strchrnul(dir, ':');
        size_t dlen = (size_t)(end - dir);
        if (dlen == 0)
            dir = ".", dlen = 1;
        if (dlen + 1 + flen < sizeof(buf)) {
            memcpy(buf, dir, dlen);
            buf[dlen] = '/';
            memcpy(buf + dlen + 1, file, flen + 1);
            if (try_exec(buf, argv, envp, probe) == 0)
                return 0;
            if (errno == EACCES)
                seen_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENAMETOOLONG)
                return -1;   /* the file exists but cannot be run: report that, as execvp does */
            last = errno;
        }
        if (*end == '\0')
            break;
        dir = end + 1;
    }
    errno = seen_eacces ? EACCES : last;
    return -1;
}

/* A staged init's fifo: a copy above the descriptors the process keeps (which
 * setup_stdio puts in place), checked reachable through /proc (the go reopens it there:
 * a root without /proc fails here, reported, not after the ready, when nobody listens). */
static int stage_prepare(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    const struct pc_process *p = ctx->p;
    if (exec_search(p->argv, p->envp, 1) < 0)
        return pc_fail(e, PC_STAGE_EXEC, -1);
    if ((ctx->fifo = fcntl(ctx->t->exec_fifo_fd, F_DUPFD_CLOEXEC, kept_fds(p))) < 0)
        return pc_fail(e, PC_STAGE_STDIO, -1);
    return 0;
}

/* A staged init, set up as its process (ids, capabilities, cwd), waits here for the go
 * (runc's exec.fifo): it reports ready, closes the error pipe, and blocks until the fifo
 * has a reader. The fifo it opened for writing is its error pipe from then on: whoever
 * let it go reads its report there, or EOF once it has exec'd (close-on-exec). */
static int stage_wait(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    char path[40] = "/proc/self/fd/", num[16];
    const char *n = format_uint(num + sizeof(num), (unsigned long)ctx->fifo);
    memcpy(path + 14, n, strlen(n) + 1);
    int probe = open(path, O_PATH | O_CLOEXEC);
    if (probe < 0)
        return pc_fail(e, PC_STAGE_EXEC_FIFO, -1);
    close(probe);
    struct pc_child_error ready = { PC_STAGE_NONE, 0, -1 };
    report(ctx, &ready);
    close(ctx->errfd);
    if (ctx->done_w >= 0)
        close(ctx->done_w);
    ctx->errfd = ctx->done_w = -1;   /* nobody listens any more */
    int w;
    do {
        w = open(path, O_WRONLY | O_CLOEXEC);
    } while (w < 0 && errno == EINTR);
    if (w < 0 || write(w, "0", 1) != 1)
        return pc_fail(e, PC_STAGE_EXEC_FIFO, -1);
    close(ctx->fifo);
    ctx->fifo = -1;
    ctx->errfd = w;
    return 0;
}


/* The common tail: stdio, descriptors, signals, credentials, cwd, exec. Our own work
 * comes before the seccomp filter where it can: loaded early (no no_new_privs), the
 * filter is the user's profile, which may deny any syscall it does not list. What must
 * follow it (the user switch and the capability sets: the load needs CAP_SYS_ADMIN,
 * which they drop; the cwd, entered as the process's user) fails with its stage. A
 * staged init waits for its go as late as runc's does: after all of that, so that only
 * no_new_privs, the late filter and the exec follow the go, and a death (a filter's
 * KILL) is seen by the caller that is still waiting for its ready. */
static int exec_process(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    const struct pc_process *p = ctx->p;
    const struct pc_security *sec = p->security;
    int rc = setup_stdio(ctx);
    if (rc < 0)
        return pc_fail(e, rc == -2 ? PC_STAGE_TERMINAL : PC_STAGE_STDIO, -1);
    /* Closed, not only close-on-exec, before the cwd is used: a path through
     * /proc/self/fd must find nothing of ours. The error pipe (and the user namespace
     * helper's done pipe, and a staged init's fifo) close at exec or at the go. Before
     * the rlimits too: a lower RLIMIT_NOFILE would hide descriptors above it from
     * close_span's fallback. */
    int keep[3] = { ctx->errfd, ctx->done_w, ctx->fifo };
    if (close_all_but((unsigned)kept_fds(p), keep, 3) < 0)
        return pc_fail(e, PC_STAGE_CLOSE_FDS, -1);
    /* An ignored disposition survives exec: Python ignores SIGPIPE and SIGXFSZ, and any
     * thread of the caller may be ignoring more (system() ignores SIGINT and SIGQUIT
     * while it waits). Every signal starts at its default, as POSIX_SPAWN_SETSIGDEF
     * (a staged init's wait too: a signal ends it as it would the program). */
    sigset_t none;
    sigemptyset(&none);
    reset_signal_handlers();
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8) < 0)
        return pc_fail(e, PC_STAGE_SIGNALS, -1);
    if (pc_security_before_user(sec, e) < 0 || pc_security_early_seccomp(sec, e) < 0)
        return -1;
    /* Raw syscalls: glibc's setuid() would broadcast to the caller's threads (SIGSETXID). */
    /* An unprivileged user namespace has setgroups denied: with no groups asked for,
     * that is not an error (there is nothing we could set). */
    if (syscall(SYS_setgroups, p->ngroups, p->groups) < 0 && !(errno == EPERM && p->ngroups == 0))
        return pc_fail(e, PC_STAGE_SETGROUPS, -1);
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
        return pc_fail(e, PC_STAGE_SETGID, -1);
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
        return pc_fail(e, PC_STAGE_SETUID, -1);
    /* A change of ids resets dumpable to fs.suid_dumpable, which may be 1. */
    if (ctx->own_mm && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return pc_fail(e, PC_STAGE_DUMPABLE, -1);
    if (pc_security_after_user(sec, e) < 0)
        return -1;
    if (chdir(p->cwd) < 0)
        return pc_fail(e, PC_STAGE_CWD, -1);
    if (cwd_in_root() < 0)
        return pc_fail(e, PC_STAGE_CWD, 1);
    umask(022);
    if (ctx->fifo >= 0 && stage_wait(ctx, e) < 0)
        return -1;
    /* After the user switch, which clears it. If the caller died before this, the
     * signal would never come: exit as it would have made us. (getppid() cannot tell
     * inside a new pid namespace; the caller holds the error pipe's read end, and a
     * pipe whose readers are gone polls POLLERR.) */
    if (sec && sec->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, sec->pdeathsig, 0, 0, 0) < 0)
            return pc_fail(e, PC_STAGE_PDEATHSIG, -1);
        struct pollfd pfd = { .fd = ctx->errfd, .events = POLLOUT };
        if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP)))
            syscall(SYS_exit_group, 128 + sec->pdeathsig);
    }
    if (pc_security_final(sec, e) < 0)
        return -1;
    exec_search(p->argv, p->envp, 0);
    return pc_fail(e, PC_STAGE_EXEC, -1);
}

static int child_finish(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    report(ctx, e);
    return 127;
}

/* Record the failing stage (errno is still the syscall's) and report it. */
static int die(struct spawn_ctx *ctx, struct pc_child_error *e, int stage)
{
    pc_fail(e, stage, -1);
    return child_finish(ctx, e);
}

/* --- pooled sandboxes (zygote.c): the parked init's side ---------------------------
 * An init that waits for its process. It is cloned as an unstaged init is (CLONE_VM |
 * CLONE_VFORK, no copy of the caller's memory) and, set up, execs the join helper (a
 * small static program, from its sealed memfd) as "pycontainer-zygote" with its socket as
 * PC_ZYGOTE_SOCK_FD and its error pipe as PC_ZYGOTE_READY_FD: that exec ends the sharing
 * (the caller wakes), and parked it holds a few pages of its own, so the later exec of
 * the process has nothing large to tear down. The helper reports ready and waits in
 * pc_zygote_main; a failure before is reported as any init's. */
static int zygote_park(struct spawn_ctx *ctx, struct pc_child_error *e)
{
    const struct pc_target *t = ctx->t;
    int sock, ready, helper;
    if ((sock = fcntl(t->zygote_fd, F_DUPFD_CLOEXEC, 10)) < 0 ||
        (ready = fcntl(ctx->errfd, F_DUPFD_CLOEXEC, 10)) < 0 ||
        (helper = fcntl(t->join_helper_fd, F_DUPFD_CLOEXEC, 10)) < 0 ||
        dup2(sock, PC_ZYGOTE_SOCK_FD) < 0 || dup2(ready, PC_ZYGOTE_READY_FD) < 0)
        return pc_fail(e, PC_STAGE_JOIN_HELPER, -1);
    ctx->errfd = PC_ZYGOTE_READY_FD;
    /* done_w (close-on-exec) tells a user namespace helper that we have exec'd. */
    int keep[4] = { PC_ZYGOTE_SOCK_FD, PC_ZYGOTE_READY_FD, helper, ctx->done_w };
    if (close_all_but(0, keep, 4) < 0)
        return pc_fail(e, PC_STAGE_CLOSE_FDS, -1);
    /* Last, with every descriptor but these closed: the filter then sees only the
     * exec of the helper and what it does (pc_zygote_main, exec_process). */
    if (pc_zygote_preload(ctx->p->security, e) < 0)
        return -1;
    char *const argv[] = { "pycontainer-zygote", NULL };
    char *const envp[] = { NULL };
    syscall(SYS_execveat, helper, "", argv, envp, AT_EMPTY_PATH);
    return pc_fail(e, PC_STAGE_JOIN_HELPER, -1);
}

int pc_zygote_main(void)
{
    struct spawn_ctx ctx = { .errfd = PC_ZYGOTE_READY_FD, .join_pidfd_out = -1,
                             .join_pid_out = -1, .sync_r = -1, .sync_w = -1, .done_r = -1,
                             .done_w = -1, .fifo = -1, .own_mm = 1 };
    struct pc_child_error e = { 0, 0, -1 };
    /* First: no one in the container may open our /proc files (exec made us dumpable). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return die(&ctx, &e, PC_STAGE_DUMPABLE);
    /* EOF on the socket must tell the caller the process exec'd. */
    if (fcntl(PC_ZYGOTE_SOCK_FD, F_SETFD, FD_CLOEXEC) < 0)
        return die(&ctx, &e, PC_STAGE_JOIN_HELPER);
    struct pc_child_error ready = { PC_STAGE_NONE, 0, -1 };
    report(&ctx, &ready);
    close(PC_ZYGOTE_READY_FD);
    ctx.errfd = PC_ZYGOTE_SOCK_FD;
    /* The signals the init blocked (and ignored) survive exec: a signal ends us as it
     * would the program. */
    sigset_t none;
    sigemptyset(&none);
    reset_signal_handlers();
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, _NSIG / 8);
    struct pc_process *p;
    int rc = pc_zygote_receive(PC_ZYGOTE_SOCK_FD, &p, &e);
    if (rc == 1)
        return 0;             /* the pool (or its process) is gone: so are we */
    if (rc < 0)
        return child_finish(&ctx, &e);
    ctx.p = p;
    exec_process(&ctx, &e);
    return child_finish(&ctx, &e);
}
/* --- end of pooled sandboxes --- */

/* The init's first act: of the caller's descriptor table (a copy) keep only what the
 * target and the process name, so no host descriptor is there while the container is set
 * up, nor reachable through any path the Config or the process names. */
static int init_close_inherited(struct spawn_ctx *ctx)
{
    const struct pc_target *t = ctx->t;
    const struct pc_process *p = ctx->p;
    int keep[16 + 2 * PC_JOIN_MAX_PROCS_FDS + PC_MAX_EXTRA_FDS], n = 0;
    if (t->nprocs_fds > PC_JOIN_MAX_PROCS_FDS || t->nns_fds > PC_JOIN_MAX_PROCS_FDS ||
        p->nextra_fds > PC_MAX_EXTRA_FDS) {
        errno = E2BIG;
        return -1;
    }
    keep[n++] = ctx->errfd;
    keep[n++] = ctx->sync_r;
    keep[n++] = ctx->done_w;
    keep[n++] = t->exec_fifo_fd;
    keep[n++] = t->zygote_fd;
    keep[n++] = t->zygote_fd >= 0 ? t->join_helper_fd : -1;
    keep[n++] = ctx->legacy ? t->cgroup_fd : -1;
    keep[n++] = p->console_fd;
    for (int i = 0; i < 3; i++)
        keep[n++] = p->stdio[i];
    for (int i = 0; i < t->nprocs_fds; i++)
        keep[n++] = t->procs_fds[i];
    for (int i = 0; i < t->nns_fds; i++)
        keep[n++] = t->ns_fds[i];
    for (int i = 0; i < p->nextra_fds; i++)
        keep[n++] = p->extra_fds[i];
    return close_all_but(0, keep, n);
}

/* A new container's init. */
static int init_main(void *arg)
{
    struct spawn_ctx *ctx = arg;
    const struct pc_container *c = ctx->t->container;
    struct pc_child_error e = { 0, 0, -1 };

    if (init_close_inherited(ctx) < 0)
        return die(ctx, &e, PC_STAGE_CLOSE_FDS);
    if (ctx->sync_r >= 0) {
        /* A new user namespace: nothing may happen in it before its maps exist. */
        char go;
        if (read(ctx->sync_r, &go, 1) != 1)
            return 127;   /* the helper failed and has reported why */
        /* Become the namespace's root: our host ids are not mapped in it, and files we
         * create (the mount points in /dev) need an owner that is. */
        if (syscall(SYS_setresgid, 0, 0, 0) < 0)
            return die(ctx, &e, PC_STAGE_SETGID);
        if (syscall(SYS_setresuid, 0, 0, 0) < 0)
            return die(ctx, &e, PC_STAGE_SETUID);
    }
    /* A forked init (staged, or in a pid namespace not its own) has a memory of its own,
     * a copy of the caller's: processes that join the container while it waits, or that
     * share its pid namespace (another container's, the host's) and may trace it once
     * its capabilities are the container's, must not read it, nor reach our interpreter
     * through /proc/<pid>/exe. (After the id maps: the helper writes them through /proc,
     * which a non-dumpable process's /proc denies to an unprivileged caller; it also
     * could not read our pid namespace any more, so an unprivileged caller's forked init
     * in a new user namespace stays dumpable: see docs/SECURITY.md.) Any other init
     * shares the caller's memory, whose dumpable flag is the caller's to keep; it is
     * alone in its new pid namespace until it execs. */
    if (ctx->forked && ctx->privileged && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return die(ctx, &e, PC_STAGE_DUMPABLE);
    ctx->own_mm = ctx->forked && ctx->privileged;
    if (ctx->legacy)
        reset_signal_handlers();
    /* Before anything else is set up in them. With a user namespace the helper has
     * joined them already: in the new user namespace we have no rights over them. */
    if (ctx->sync_r < 0 && join_namespaces(ctx->t, 0, &e) < 0)
        return child_finish(ctx, &e);
    if (join_cgroups(ctx, &e) < 0)
        return child_finish(ctx, &e);
    /* After placement, so the namespace's root is the container's cgroup (and a joined
     * one does not hide the cgroup we are placed in). */
    if ((c->ns_flags & CLONE_NEWCGROUP) && unshare(CLONE_NEWCGROUP) < 0)
        return die(ctx, &e, PC_STAGE_CGROUP_NS);
    if (join_namespaces(ctx->t, 1, &e) < 0)
        return child_finish(ctx, &e);
    /* A joined mount namespace is used as it is (setns made its root ours). */
    if ((c->ns_flags & CLONE_NEWNS) && pc_setup_rootfs(c, &e) < 0)
        return child_finish(ctx, &e);
    if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) < 0)
        return die(ctx, &e, PC_STAGE_HOSTNAME);
    if (c->domainname && setdomainname(c->domainname, strlen(c->domainname)) < 0)
        return die(ctx, &e, PC_STAGE_DOMAINNAME);
    if ((c->ns_flags & CLONE_NEWNET) && bring_up_loopback() < 0)
        return die(ctx, &e, PC_STAGE_LOOPBACK);
    if (ctx->t->zygote_fd >= 0 ? zygote_park(ctx, &e) < 0 : ctx->staged && stage_prepare(ctx, &e) < 0)
        return child_finish(ctx, &e);
    exec_process(ctx, &e);
    return child_finish(ctx, &e);
}

/* A process joining a running container: already in its namespaces but the cgroup one. */
static int joined_main(void *arg)
{
    struct spawn_ctx *ctx = arg;
    struct pc_child_error e = { 0, 0, -1 };
    if (join_cgroups(ctx, &e) < 0)
        return child_finish(ctx, &e);
    if ((ctx->t->join_ns & CLONE_NEWCGROUP) && setns(ctx->t->join_pidfd, CLONE_NEWCGROUP) < 0)
        return die(ctx, &e, PC_STAGE_CGROUP_NS);
    /* Done with the cgroup descriptors and the init's pidfd: gone at once, not at the
     * general close before the cwd, to keep them out of reach of a container that may
     * trace us (CAP_SYS_PTRACE granted). */
    const struct pc_target *t = ctx->t;
    for (int i = 0; i < t->nprocs_fds; i++)
        close(t->procs_fds[i]);
    if (t->cgroup_fd >= 0)
        close(t->cgroup_fd);
    close(t->join_pidfd);
    exec_process(ctx, &e);
    return child_finish(ctx, &e);
}

/* From a helper: clone the real process as the caller's child (CLONE_PARENT), on the
 * second stack, into the container's cgroup; its pid and pidfd land in ctx (the pidfd in
 * the helper's table: the user namespace helper shares the caller's, CLONE_FILES; the
 * join helper sends it). -1 with errno on failure. */
static int clone_for_caller(struct spawn_ctx *ctx, uint64_t flags, int (*fn)(void *))
{
    const struct pc_target *t = ctx->t;
    struct clone_args a;
    memset(&a, 0, sizeof(a));
    a.flags = CLONE_PARENT | CLONE_PIDFD | flags;
    a.pidfd = (uint64_t)(uintptr_t)&ctx->join_pidfd_out;
    a.stack = (uint64_t)(uintptr_t)ctx->stack2;
    a.stack_size = PC_STACK_SIZE;
    if (t->cgroup_fd >= 0 && !ctx->legacy) {
        a.flags |= CLONE_INTO_CGROUP;
        a.cgroup = (uint64_t)t->cgroup_fd;
    }
    long pid = clone_vm(&a, fn, ctx);
    if (pid < 0) {
        errno = (int)-pid;
        return -1;
    }
    ctx->join_pid_out = (pid_t)pid;
    return 0;
}

/* A join, in three processes (see the file comment):
 *
 *   caller --clone3(CLONE_VM | CLONE_VFORK)--> intermediate: in the caller's namespaces,
 *       with a copy of its descriptor table. It moves the descriptors the join needs to
 *       slots 3, 4, 5, ... (joinreq.h), closes every other one and execs the join helper,
 *       a static program of ours held in a sealed memfd.
 *   join helper (the same process, a fresh memory): non-dumpable from its first
 *       instruction, reads the packed request, setns() into the container, and
 *   helper --clone3(CLONE_PARENT | CLONE_INTO_CGROUP)--> process: the caller's child, in
 *       the container's pid namespace, a fork of the helper.
 *
 * So nothing the container can see before exec shares the caller's memory, holds a host
 * descriptor but those asked for, or has the caller's interpreter as /proc/<pid>/exe;
 * and it is non-dumpable, so the container's root cannot open its /proc files at all.
 * The helper sends the process's pid and pidfd to the caller over the error socket. */


/* Report a failure of the intermediate on `fd` and give its exit status. */
static int join_exec_fail(int fd, struct pc_child_error *e)
{
    pc_fail(e, PC_STAGE_JOIN_HELPER, -1);
    ssize_t n;
    do {
        n = write(fd, e, sizeof(*e));
    } while (n < 0 && errno == EINTR);
    return 127;
}

static int join_exec_main(void *arg)
{
    struct spawn_ctx *ctx = arg;
    const int *src = ctx->join_src;
    int n = ctx->join_nsrc, helper = n - 1;   /* the helper's memfd comes last */
    int tmp[2 + PC_JOIN_MAX_FDS + 1];
    struct pc_child_error e = { 0, 0, -1 };
    char *const argv[] = { "pycontainer-join", NULL };
    char *const envp[] = { NULL };

    /* Copies above the slots first: the dup2s below then read only copies, and no slot
     * they fill can hold one. */
    int base = 3 + n;
    for (int i = 0; i < n; i++)
        if ((tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, base)) < 0) {
            if (errno == EINVAL)
                errno = EMFILE;     /* base is past RLIMIT_NOFILE: out of descriptors */
            return join_exec_fail(ctx->errfd, &e);
        }
    /* From here the error socket is tmp[1] (its slot may not be filled yet). */
    for (int i = 0; i < helper; i++)
        if (dup2(tmp[i], 3 + i) < 0)          /* dup2 clears close-on-exec: these stay */
            return join_exec_fail(tmp[1], &e);
    if (dup3(tmp[helper], 3 + helper, O_CLOEXEC) < 0 ||
        close_span(3 + (unsigned)n, ~0U) < 0 || close_span(0, 2) < 0)
        return join_exec_fail(PC_JOIN_ERR_FD, &e);
    syscall(SYS_execveat, 3 + helper, "", argv, envp, AT_EMPTY_PATH);
    return join_exec_fail(PC_JOIN_ERR_FD, &e);
}

/* The helper's report: the process's pid (in index) and its pidfd, as SCM_RIGHTS. */
static int send_pid(int sock, pid_t pid, int pidfd)
{
    struct pc_child_error msg = { PC_STAGE_NONE, 0, (int32_t)pid };
    return send_with_fd(sock, &msg, sizeof(msg), pidfd);
}

int pc_join_in_helper(const struct pc_target *t, const struct pc_process *p, int errfd)
{
    struct spawn_ctx ctx = {
        .t = t, .p = p, .errfd = errfd, .join_pidfd_out = -1, .join_pid_out = -1,
        .sync_r = -1, .sync_w = -1, .done_r = -1, .done_w = -1, .fifo = -1, .own_mm = 1,
    };
    struct pc_child_error e = { 0, 0, -1 };
    ctx.stack2 = mmap(NULL, PC_STACK_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (ctx.stack2 == MAP_FAILED)
        return die(&ctx, &e, PC_STAGE_CLONE);
    /* setns of a pid namespace applies to our children. The cgroup namespace is entered
     * by the process itself, after CLONE_INTO_CGROUP placed it: the kernel refuses a
     * placement from outside the namespace's root. */
    uint64_t ns = t->join_ns & ~(uint64_t)CLONE_NEWCGROUP;
    if (ns && setns(t->join_pidfd, (int)ns) < 0)
        return die(&ctx, &e, PC_STAGE_SETNS);
    /* A fork, not a CLONE_VM child: the process the container can see must not share
     * our memory either, or a container that may trace it (CAP_SYS_PTRACE granted)
     * could write code we, still outside the container, would run. The fork of this
     * small program is cheap. No CLONE_VFORK: its reports and its exec reach the caller
     * over the error socket; we tell the caller who it is and are done. */
    if (clone_for_caller(&ctx, 0, joined_main) < 0)
        return die(&ctx, &e, PC_STAGE_CLONE);
    if (send_pid(errfd, ctx.join_pid_out, ctx.join_pidfd_out) < 0) {
        syscall(SYS_pidfd_send_signal, ctx.join_pidfd_out, SIGKILL, NULL, 0);
        return die(&ctx, &e, PC_STAGE_CLONE);
    }
    return 0;
}

static int write_proc_file(pid_t pid, const char *name, const char *value)
{
    char num[24], path[64];
    const char *p = format_uint(num + sizeof(num), (unsigned long)pid);
    size_t plen = strlen(p), nlen = strlen(name);
    memcpy(path, "/proc/", 6);
    memcpy(path + 6, p, plen);
    path[6 + plen] = '/';
    memcpy(path + 7 + plen, name, nlen + 1);
    return pc_write_file(path, value);
}

/* The user namespace helper: clone the init (the caller's child, CLONE_PARENT) into its
 * new namespaces, write its id maps from outside (the init cannot map ids it does not
 * have), let it go on, and stay until it has exec'd: the caller sleeps on us (CLONE_VFORK)
 * and so wakes only when the init is running or has failed. */
static int userns_helper_main(void *arg)
{
    struct spawn_ctx *ctx = arg;
    const struct pc_target *t = ctx->t;
    struct pc_child_error e = { 0, 0, -1 };

    /* Namespaces joined by path: here, while we still have the host's rights over them;
     * the init inherits them. */
    if (join_namespaces(t, 0, &e) < 0)
        return child_finish(ctx, &e);
    uint64_t vm = ctx->forked ? 0 : CLONE_VM;   /* see ctx->forked */
    if (clone_for_caller(ctx, vm | (t->container->ns_flags & ~(uint64_t)CLONE_NEWCGROUP),
                         init_main) < 0)
        return die(ctx, &e, PC_STAGE_CLONE);
    pid_t pid = ctx->join_pid_out;
    close(ctx->done_w);   /* the init holds the only other write end */
    ctx->done_w = -1;     /* shared memory: the caller must not close the number again */
    /* From here the init runs beside us on the same memory (unless staged): until it is
     * released it only waits in read(), so our errno writes cannot race its own. */
    int which = -1;
    if (t->deny_setgroups && write_proc_file((pid_t)pid, "setgroups", "deny") < 0)
        which = 2;
    else if (write_proc_file((pid_t)pid, "uid_map", t->uid_map) < 0)
        which = 0;
    else if (write_proc_file((pid_t)pid, "gid_map", t->gid_map) < 0)
        which = 1;
    if (which >= 0) {
        pc_fail(&e, PC_STAGE_ID_MAPPINGS, which);
        return child_finish(ctx, &e);   /* the caller kills and reaps the init */
    }
    if (write(ctx->sync_w, "1", 1) != 1)
        return die(ctx, &e, PC_STAGE_CLONE);
    char buf;
    while (read(ctx->done_r, &buf, 1) > 0)
        ;
    return 0;
}

static int reap_info(int pidfd, pid_t pid, siginfo_t *si)
{
    int rc;
    do {
        rc = pidfd >= 0 ? waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED | __WALL)
                        : waitid(P_PID, (id_t)pid, si, WEXITED | __WALL);
    } while (rc < 0 && errno == EINTR);
    return rc;
}

static int reap(int pidfd, pid_t pid)
{
    siginfo_t si;
    return reap_info(pidfd, pid, &si);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A failed start's process, if there is one: gone, reaped, its pidfd closed. */
static void kill_and_reap(int *pidfd, pid_t pid)
{
    if (*pidfd < 0)
        return;
    syscall(SYS_pidfd_send_signal, *pidfd, SIGKILL, NULL, 0);
    reap(*pidfd, pid);
    close_fd(pidfd);
}

/* Whether we hold CAP_SYS_PTRACE (effective): only then can we still read the /proc
 * files (our own pid namespace link among them) of a process made non-dumpable. */
static int can_trace(void)
{
    struct __user_cap_header_struct { uint32_t version; int pid; } hdr = { 0x20080522, 0 };
    struct { uint32_t effective, permitted, inheritable; } data[2];
    if (syscall(SYS_capget, &hdr, data) < 0)
        return 0;
    return (data[0].effective >> 19) & 1;   /* CAP_SYS_PTRACE */
}

/* Read the join's reports until every writer has gone (the helper exited, the process
 * exec'd or exited): the first error, and the pid and pidfd the helper sends. */
static int read_join_reports(int sock, struct pc_child_error *cerr, pid_t *pid, int *pidfd)
{
    for (;;) {
        struct pc_child_error msg;
        struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(sizeof(int))];
        } u;
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : 0;
        int fd = -1;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
            cm->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        if (n == (ssize_t)sizeof(msg) && msg.err == 0 && msg.index > 0 && *pidfd < 0) {
            /* The process is our child, unreaped: if its pidfd did not come through (no
             * room for it here), its pid still names it, and only it. */
            *pid = (pid_t)msg.index;
            *pidfd = fd >= 0 ? fd : (int)syscall(SYS_pidfd_open, *pid, 0);
            if (*pidfd < 0) {
                int err = errno;
                kill(*pid, SIGKILL);
                reap(-1, *pid);
                if (cerr->err == 0) {
                    cerr->stage = PC_STAGE_NONE;
                    cerr->err = err;
                }
            }
            continue;
        }
        if (fd >= 0)
            close(fd);
        if (cerr->err == 0) {
            if (n == (ssize_t)sizeof(msg) && msg.err != 0) {
                *cerr = msg;
            } else {
                cerr->stage = PC_STAGE_NONE;
                cerr->err = EPROTO;
                cerr->index = -1;
            }
        }
    }
}

static int spawn_join(const struct pc_target *t, const struct pc_process *p,
                      pid_t *pid_out, int *pidfd_out, struct pc_child_error *cerr)
{
    int sv[2] = { -1, -1 }, reqfd = -1, pidfd = -1, rc = 0;
    int src[2 + PC_JOIN_MAX_FDS + 1];
    pid_t pid = -1;
    struct pc_join_request *req = NULL;
    size_t size = 0;
    char *stack = MAP_FAILED;
    sigset_t all, old;

    if (t->join_helper_fd < 0)
        return -ENOEXEC;
    /* The process's own descriptors, checked here so that a bad one is reported as the
     * stdio failure it is, not as the intermediate's. */
    for (int i = 0; i < 3 + p->nextra_fds; i++) {
        int fd = i < 3 ? p->stdio[i] : p->extra_fds[i - 3];
        if (fd >= 0 && fcntl(fd, F_GETFD) < 0) {
            cerr->stage = PC_STAGE_STDIO;
            cerr->err = errno;
            return -errno;
        }
    }
    int n = pc_join_fds(t, p, src + 2);
    if (n < 0)
        return n;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        goto fail_errno;
    if (!(req = pc_join_pack(t, p, &size)))
        goto fail_errno;
    /* Never executable (MFD_NOEXEC_SEAL, Linux 6.3+; older kernels refuse the flag). */
    reqfd = (int)syscall(SYS_memfd_create, "pycontainer-join-request", MFD_CLOEXEC | 0x8U);
    if (reqfd < 0 && errno == EINVAL)
        reqfd = (int)syscall(SYS_memfd_create, "pycontainer-join-request", MFD_CLOEXEC);
    if (reqfd < 0)
        goto fail_errno;
    for (size_t done = 0; done < size; ) {
        ssize_t w = write(reqfd, (char *)req + done, size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail_errno;
        done += (size_t)w;
    }
    src[0] = reqfd;                  /* PC_JOIN_REQUEST_FD */
    src[1] = sv[1];                  /* PC_JOIN_ERR_FD */
    src[2 + n] = t->join_helper_fd;  /* last: the exec target */
    stack = mmap(NULL, PC_STACK_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED)
        goto fail_errno;

    struct spawn_ctx ctx = { .t = t, .p = p, .errfd = sv[1], .join_src = src, .join_nsrc = n + 3,
                             .sync_r = -1, .sync_w = -1, .done_r = -1, .done_w = -1, .fifo = -1 };
    struct clone_args a;
    memset(&a, 0, sizeof(a));
    a.flags = CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND;
    a.stack = (uint64_t)(uintptr_t)stack;
    a.stack_size = PC_STACK_SIZE;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long ret = clone_vm(&a, join_exec_main, &ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_fd(&sv[1]);
    close_fd(&reqfd);
    if (ret < 0) {
        rc = (int)ret;
        goto out;
    }
    /* The intermediate has exec'd the helper (or failed): our stack is free again. */
    int rr = read_join_reports(sv[0], cerr, &pid, &pidfd);
    reap(-1, (pid_t)ret);
    if (rr < 0 && cerr->err == 0) {
        cerr->stage = PC_STAGE_NONE;
        cerr->err = -rr;
    }
    if (cerr->err == 0 && pidfd < 0)
        cerr->err = EPROTO;      /* the helper died without a word */
    if (cerr->err != 0) {
        rc = -cerr->err;
        kill_and_reap(&pidfd, pid);
        goto out;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    goto out;

fail_errno:
    rc = -errno;
out:
    close_fd(&sv[0]);
    close_fd(&sv[1]);
    close_fd(&reqfd);
    free(req);
    if (stack != MAP_FAILED)
        munmap(stack, PC_STACK_SIZE);
    return rc;
}

/* A pid namespace named by path is entered before the clone: setns(CLONE_NEWPID) moves
 * only the children of the calling thread, so the init is born in it. *saved gets the
 * thread's own namespace for its children back (leave_pid_namespace); -1 when there is
 * none to enter. Returns 0, or -1 with errno and cerr (stage setns, its index). */
static int enter_pid_namespace(const struct pc_target *t, int *saved, struct pc_child_error *cerr)
{
    *saved = -1;
    for (int i = 0; i < t->nns_fds; i++) {
        if (t->ns_types[i] != CLONE_NEWPID)
            continue;
        *saved = open("/proc/thread-self/ns/pid_for_children", O_RDONLY | O_CLOEXEC);
        if (*saved < 0 || setns(t->ns_fds[i], CLONE_NEWPID) < 0) {
            int err = errno;
            close_fd(saved);
            cerr->stage = PC_STAGE_SETNS;
            cerr->err = err;
            cerr->index = i;
            errno = err;
            return -1;
        }
    }
    return 0;
}

static void leave_pid_namespace(int *saved)
{
    if (*saved < 0)
        return;
    /* Our own namespace is always one we may enter again: the thread is still in it. */
    setns(*saved, CLONE_NEWPID);
    close_fd(saved);
}

int pc_spawn(const struct pc_target *t, const struct pc_process *p,
             pid_t *pid_out, int *pidfd_out, struct pc_child_error *cerr)
{
    int errpipe[2] = { -1, -1 }, pidfd = -1, rc = 0;
    int joining = t->join_pidfd >= 0;
    int userns = !joining && (t->container->ns_flags & CLONE_NEWUSER);
    pid_t pid = -1;
    sigset_t all, old;
    struct spawn_ctx ctx = {
        .t = t, .p = p, .join_pidfd_out = -1, .join_pid_out = -1,
        .sync_r = -1, .sync_w = -1, .done_r = -1, .done_w = -1, .fifo = -1,
        .staged = !joining && t->exec_fifo_fd >= 0,
        .forked = !joining && (t->exec_fifo_fd >= 0 || !(t->container->ns_flags & CLONE_NEWPID)),
    };
    char *stacks = MAP_FAILED;

    memset(cerr, 0, sizeof(*cerr));
    cerr->index = -1;
    if (joining)
        return spawn_join(t, p, pid_out, pidfd_out, cerr);
    ctx.privileged = can_trace();
    if (pipe2(errpipe, O_CLOEXEC) < 0)
        return -errno;
    ctx.errfd = errpipe[1];
    if (userns) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
            goto fail_errno;
        ctx.sync_r = fds[0], ctx.sync_w = fds[1];
        if (pipe2(fds, O_CLOEXEC) < 0)
            goto fail_errno;
        ctx.done_r = fds[0], ctx.done_w = fds[1];
    }
    stacks = mmap(NULL, 2 * PC_STACK_SIZE, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
    if (stacks == MAP_FAILED)
        goto fail_errno;
    ctx.stack2 = stacks + PC_STACK_SIZE;

    struct clone_args a;
    memset(&a, 0, sizeof(a));
    a.stack = (uint64_t)(uintptr_t)stacks;
    a.stack_size = PC_STACK_SIZE;
    int (*fn)(void *);
    if (userns) {
        /* A helper in our namespaces clones the init (see the file comment). */
        a.flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_CLEAR_SIGHAND;
        fn = userns_helper_main;
    } else {
        /* Staged, the init is a fork: it must outlive this call (and our stacks); it is
         * one too where it is not alone in its pid namespace (ctx.forked). */
        a.flags = (ctx.forked ? 0 : CLONE_VM | CLONE_VFORK) | CLONE_PIDFD | CLONE_CLEAR_SIGHAND |
                  (t->container->ns_flags & ~(uint64_t)CLONE_NEWCGROUP);
        a.pidfd = (uint64_t)(uintptr_t)&pidfd;
        if (t->cgroup_fd >= 0) {
            a.flags |= CLONE_INTO_CGROUP;
            a.cgroup = (uint64_t)t->cgroup_fd;
        }
        fn = init_main;
    }

    /* Children start with every signal blocked: until they exec, a handler would be
     * Python's, running on memory shared with this process. */
    int own_pidns;
    if (enter_pid_namespace(t, &own_pidns, cerr) < 0) {
        rc = -cerr->err;
        goto out;
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long ret = clone_vm(&a, fn, &ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    leave_pid_namespace(&own_pidns);
    close_fd(&errpipe[1]);
    if (ret < 0) {
        rc = (int)ret;
        goto out;
    }
    if (userns) {
        reap(-1, (pid_t)ret);          /* the helper has exited: CLONE_VFORK */
        pid = ctx.join_pid_out;
        pidfd = ctx.join_pidfd_out;
    } else {
        pid = (pid_t)ret;
    }

    /* The process has exec'd or exited by now; its error, if any, is in the pipe. A staged
     * init reports ready there (err 0) instead: EOF means it died first. */
    ssize_t n;
    do {
        n = read(errpipe[0], cerr, sizeof(*cerr));
    } while (n < 0 && errno == EINTR);
    /* A parked init reports ready too, from the helper it execs (zygote_park). */
    int reports_ready = ctx.staged || (!joining && t->zygote_fd >= 0);
    if (reports_ready && n == 0 && pidfd >= 0) {
        /* EOF, no ready: it died without a report (a seccomp profile's KILL, a signal
         * from outside). Say how: its status, taken now (it is gone: every end of the
         * pipe it held has closed; the SIGKILL only makes sure). */
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        int got = reap_info(pidfd, pid, &si);
        close_fd(&pidfd);
        cerr->stage = PC_STAGE_DIED;
        cerr->err = ECANCELED;
        cerr->index = got < 0 ? -1 : si.si_code == CLD_EXITED ? 256 + si.si_status : si.si_status;
        rc = -ECANCELED;
        goto out;
    }
    if (reports_ready && n == 0) {
        n = -1;
        errno = EPROTO;
    }
    if (n != 0 && !(reports_ready && n == (ssize_t)sizeof(*cerr) && cerr->err == 0)) {
        if (n != (ssize_t)sizeof(*cerr)) {
            cerr->stage = PC_STAGE_NONE;
            cerr->err = n < 0 ? errno : EPROTO;
            cerr->index = -1;
        }
        rc = -cerr->err;
        /* It has exited, or (a helper's failure) waits for a go that never comes. */
        kill_and_reap(&pidfd, pid);
        goto out;
    }
    if (pidfd < 0) {   /* cannot happen: a successful clone gives a pidfd */
        rc = -EBADF;
        goto out;
    }
    *pid_out = pid;
    *pidfd_out = pidfd;
    goto out;

fail_errno:
    rc = -errno;
out:
    close_fd(&errpipe[0]);
    close_fd(&errpipe[1]);
    close_fd(&ctx.sync_r);
    close_fd(&ctx.sync_w);
    close_fd(&ctx.done_r);
    close_fd(&ctx.done_w);
    if (stacks != MAP_FAILED)
        munmap(stacks, 2 * PC_STACK_SIZE);
    return rc;
}

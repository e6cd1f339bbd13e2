/* syscalls.h: raw wrappers for the syscalls glibc 2.36 does not wrap, and the clone3
 * trampoline. Each returns what the kernel returns (glibc's syscall(): -1 and errno). */
#ifndef PC_SYSCALLS_H
#define PC_SYSCALLS_H

#include <stdint.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/sched.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#ifndef SYS_fsopen
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#endif

#define PC_OPEN_TREE_CLONE 1
#define PC_FSOPEN_CLOEXEC 1
#define PC_FSCONFIG_SET_STRING 1
#define PC_FSCONFIG_CMD_CREATE 6
#define PC_FSMOUNT_CLOEXEC 1
#define PC_AT_RECURSIVE 0x8000
#define PC_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define PC_MOUNT_ATTR_RDONLY 0x1
#define PC_CLOSE_RANGE_CLOEXEC (1U << 2)

struct pc_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

/* clone3 whose child runs fn(arg) on the stack given in args (CLONE_VM callers) and exits
 * with its return value; the parent gets the child's pid or -errno. -ENOSYS where the
 * trampoline is not written for this architecture. */
long pc_clone3_fn(struct clone_args *args, size_t size, int (*fn)(void *), void *arg);

static inline int pc_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

static inline int pc_open_tree(int dirfd, const char *path, unsigned int flags)
{
    return (int)syscall(SYS_open_tree, dirfd, path, flags);
}

static inline int pc_move_mount(int from_dirfd, const char *from, int to_dirfd, const char *to,
                                unsigned int flags)
{
    return (int)syscall(SYS_move_mount, from_dirfd, from, to_dirfd, to, flags);
}

static inline int pc_mount_setattr(int dirfd, const char *path, unsigned int flags,
                                   struct pc_mount_attr *attr)
{
    return (int)syscall(SYS_mount_setattr, dirfd, path, flags, attr, sizeof(*attr));
}

/* A new filesystem instance as a detached mount: fsopen, its source (the device name
 * mountinfo shows, as mount(2)'s first argument; without one it says "none"), create,
 * fsmount. */
static inline int pc_fsmount(const char *fstype, const char *source, unsigned int attr)
{
    int fs = (int)syscall(SYS_fsopen, fstype, PC_FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int mnt = -1;
    if (syscall(SYS_fsconfig, fs, PC_FSCONFIG_SET_STRING, "source", source, 0) == 0 &&
        syscall(SYS_fsconfig, fs, PC_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        mnt = (int)syscall(SYS_fsmount, fs, PC_FSMOUNT_CLOEXEC, attr);
    int saved = errno;
    close(fs);
    errno = saved;
    return mnt;
}

static inline int pc_close_range(unsigned int first, unsigned int last, unsigned int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

#endif

/* rootfs.c: the container's mount namespace, built in the child before exec.
 *
 * Order: clone the trees of the bind mounts that ask for shared or slave propagation
 * (open_tree: detached copies still in the host's peer groups); make / rprivate
 * (nothing else we mount or unmount propagates to the host; rslave when the rootfs asks
 * for slave: a slave receives, never sends); make the built-in proc and sysfs while the
 * host's are visible (a user namespace may not make them later); bind the rootfs onto
 * itself; then every mount goes onto a destination resolved inside the rootfs with
 * openat2(RESOLVE_IN_ROOT) and mounted through the /proc/self/fd link of what was
 * resolved, so no symlink (/etc/evil -> /) or ".." and no race swapping a component can
 * put a mount on the host (the CVE-2019-19921 / CVE-2021-30465 class).
 * Host sources of bind mounts are still reachable at that point. The Config's mounts go
 * in the order listed, a cloned bind moved to its place: an "rshared" volume is the
 * container's only way out to the host, and only under a shared rootfsPropagation (as
 * runc's); an "rslave" one only receives. Without the built-in mounts (default_mounts
 * 0, a config.json that lists its /proc, /sys and /dev itself) the Config's are all
 * there is, and only the default device nodes and /dev links are ours. Then pivot_root
 * and detach the old root; the built-in /proc, /sys and /dev/pts... are placed inside
 * the new root, where no host path exists any more; devices, sysctls, read-only and
 * masked paths, then a read-only rootfs (its mount points all made by then) and the
 * rootfs propagation asked for, last.
 * Every step reports its stage; indexed steps report which item failed. Descriptors
 * left open on a failure are close-on-exec in a child about to _exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "child.h"
#include "syscalls.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define PC_RESOLVE_NO_XDEV 0x01
#define PC_RESOLVE_NO_MAGICLINKS 0x02
#define PC_RESOLVE_NO_SYMLINKS 0x04
#define PC_RESOLVE_BENEATH 0x08
#define PC_RESOLVE_IN_ROOT 0x10
#define PC_MOVE_MOUNT_T_EMPTY_PATH 0x40

struct pc_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

/* mkdir -p; existing components are fine. Used after pivot_root only. */
int pc_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -1;
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

static int open_in_root_once(int rootfd, const char *path, uint64_t flags)
{
    struct pc_open_how how = {
        .flags = flags | O_CLOEXEC,
        .resolve = PC_RESOLVE_IN_ROOT | PC_RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* An O_PATH descriptor of `path` inside the tree at rootfd, resolved as if rootfd were
 * "/". Missing components are made as directories; the last one, when !is_dir, as an
 * empty file (the mount point of a file bind). */
static int open_in_root(int rootfd, const char *path, int is_dir)
{
    int fd = open_in_root_once(rootfd, path, O_PATH);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    char *end = buf + len;
    for (char *p = buf + 1; p <= end; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        char *slash = strrchr(buf, '/');
        int last = saved == '\0';
        if (slash[1] != '\0') {
            fd = open_in_root_once(rootfd, buf, O_PATH);
            if (fd < 0 && errno == ENOENT) {
                *slash = '\0';
                int parent = open_in_root_once(rootfd, slash == buf ? "/" : buf,
                                               O_PATH | O_DIRECTORY);
                *slash = '/';
                if (parent < 0)
                    return -1;
                int rc;
                if (last && !is_dir) {
                    rc = openat(parent, slash + 1, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                    if (rc >= 0)
                        close(rc);
                } else {
                    rc = mkdirat(parent, slash + 1, 0755);
                }
                int saved_errno = errno;
                close(parent);
                if (rc < 0 && saved_errno != EEXIST) {
                    errno = saved_errno;
                    return -1;
                }
            } else if (fd < 0) {
                return -1;
            } else {
                close(fd);
            }
        }
        *p = saved;
    }
    return open_in_root_once(rootfd, path, O_PATH);
}

static char *format_fd_path(char buf[32], int fd)
{
    char digits[12];
    char *d = digits + sizeof(digits);
    *--d = '\0';
    unsigned int v = (unsigned int)fd;
    do {
        *--d = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(buf, "/proc/self/fd/", 14);
    memcpy(buf + 14, d, (size_t)(digits + sizeof(digits) - d));
    return buf;
}

/* mount(2) onto `dest` resolved inside the root: through the fd's magic link. */
static int mount_in_root(int rootfd, const char *source, const char *dest, int is_dir,
                         const char *fstype, unsigned long flags, const char *data)
{
    int fd = open_in_root(rootfd, dest, is_dir);
    if (fd < 0)
        return -1;
    /* A destination that resolves to the root itself ("/", "/.", a symlink to "/") would
     * hide the whole image, /dev and /proc included: refused, as runc does. */
    struct stat st, root_st;
    if (fstat(fd, &st) < 0 || fstat(rootfd, &root_st) < 0 ||
        (st.st_dev == root_st.st_dev && st.st_ino == root_st.st_ino)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    char target[32];
    int rc = mount(source, format_fd_path(target, fd), fstype, flags, data);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static unsigned long long mount_attr_bits(unsigned long flags)
{
    unsigned long long attr = 0;
    if (flags & MS_RDONLY) attr |= PC_MOUNT_ATTR_RDONLY;
    if (flags & MS_NOSUID) attr |= 0x2;
    if (flags & MS_NODEV) attr |= 0x4;
    if (flags & MS_NOEXEC) attr |= 0x8;
    if (flags & MS_NOATIME) attr |= 0x10;
    if (flags & MS_STRICTATIME) attr |= 0x20;
    if (flags & MS_NODIRATIME) attr |= 0x80;
    return attr;
}

/* A bind of a host path, or the move of its clone (`clone` >= 0: a tree open_tree took
 * before the namespace was made private, still in the host's peer groups); then its
 * flags (a bind ignores them) and propagation, on the new mount (resolved again: the
 * first descriptor is of what lies beneath it). */
static int bind_in_root(int rootfd, const struct pc_mount *m, int is_dir, int clone,
                        unsigned long rootfs_propagation)
{
    if (clone < 0) {
        /* Data options go through, as runc and crun pass them: a bind ignores them. */
        if (mount_in_root(rootfd, m->source, m->destination, is_dir, NULL,
                          MS_BIND | (m->flags & MS_REC),
                          m->data && *m->data ? m->data : NULL) < 0)
            return -1;
    } else {
        int fd = open_in_root(rootfd, m->destination, is_dir);
        if (fd < 0)
            return -1;
        struct stat st, root_st;   /* the root itself: refused, as in mount_in_root */
        int rc = -1;
        if (fstat(fd, &st) < 0 || fstat(rootfd, &root_st) < 0)
            ;
        else if (st.st_dev == root_st.st_dev && st.st_ino == root_st.st_ino)
            errno = EINVAL;
        else
            rc = pc_move_mount(clone, "", fd, "",
                               PC_MOVE_MOUNT_F_EMPTY_PATH | PC_MOVE_MOUNT_T_EMPTY_PATH);
        int saved = errno;
        close(fd);
        errno = saved;
        if (rc < 0)
            return -1;
    }
    struct pc_mount_attr attr = { .attr_set = mount_attr_bits(m->flags) };
    if (!attr.attr_set && !m->propagation)
        return 0;
    if (attr.attr_set & 0x70)
        attr.attr_clr = 0x70;   /* MOUNT_ATTR__ATIME: the atime mode is one field */
    int fd = open_in_root_once(rootfd, m->destination, O_PATH);
    if (fd < 0)
        return -1;
    char target[32];
    int rc = 0;
    if (attr.attr_set)
        rc = pc_mount_setattr(fd, "", AT_EMPTY_PATH | ((m->flags & MS_REC) ? PC_AT_RECURSIVE : 0),
                              &attr);
    /* Shared both ways only under a shared rootfs, as runc has it (its root is rslave
     * unless rootfsPropagation says shared): otherwise the volume is first made a slave
     * of the host's group, and "shared" then makes it a peer group of the container's
     * own on top, so what the container mounts there never reaches the host. */
    if (rc == 0 && (m->propagation & MS_SHARED) && !(rootfs_propagation & MS_SHARED))
        rc = mount(NULL, format_fd_path(target, fd), NULL, MS_SLAVE | (m->propagation & MS_REC),
                   NULL);
    if (rc == 0 && m->propagation)
        rc = mount(NULL, format_fd_path(target, fd), NULL, m->propagation, NULL);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Whether a Config mount is a bind that asks to stay in the host's peer groups (shared:
 * both ways, slave: from the host). Those are cloned before the namespace turns private,
 * which would cut every link to the host. */
static int keeps_host_peers(const struct pc_mount *m)
{
    return !m->fstype && (m->propagation & (MS_SHARED | MS_SLAVE));
}

/* The clones of the binds that keep the host's peer groups, in the order of their mounts
 * (index: the mount's). Kept on the child's stack, so bounded: a pod has one bind per
 * volume that asks, far fewer. */
#define PC_MAX_PEER_CLONES 64
struct pc_clones {
    int n, next;
    int index[PC_MAX_PEER_CLONES];
    int fd[PC_MAX_PEER_CLONES];
};

/* Taken while the new mount namespace is still the host's copy. A clone is a detached
 * tree: making "/" private later does not touch it. */
static int clone_host_peers(const struct pc_container *c, struct pc_clones *clones,
                            struct pc_child_error *e)
{
    clones->n = clones->next = 0;
    for (int i = 0; i < c->nmounts; i++) {
        const struct pc_mount *m = &c->mounts[i];
        if (!keeps_host_peers(m))
            continue;
        if (clones->n == PC_MAX_PEER_CLONES) {
            errno = E2BIG;
            return pc_fail(e, PC_STAGE_MOUNT, i);
        }
        struct stat st;
        if (stat(m->source, &st) < 0)
            return pc_fail(e, PC_STAGE_BIND_SOURCE, i);
        int fd = pc_open_tree(AT_FDCWD, m->source, PC_OPEN_TREE_CLONE | O_CLOEXEC |
                              ((m->flags & MS_REC) ? PC_AT_RECURSIVE : 0));
        if (fd < 0)
            return pc_fail(e, PC_STAGE_MOUNT, i);
        clones->index[clones->n] = i;
        clones->fd[clones->n++] = fd;
    }
    return 0;
}

/* The clone of mount i, or -1; mounts are asked for in their order. */
static int clone_of(struct pc_clones *clones, int i)
{
    if (clones->next < clones->n && clones->index[clones->next] == i)
        return clones->fd[clones->next++];
    return -1;
}

struct pc_node { const char *path; unsigned int major, minor; };

static const struct pc_node default_nodes[] = {
    { "/dev/null", 1, 3 }, { "/dev/zero", 1, 5 }, { "/dev/full", 1, 7 },
    { "/dev/random", 1, 8 }, { "/dev/urandom", 1, 9 }, { "/dev/tty", 5, 0 },
};
#define PC_NODES (sizeof(default_nodes) / sizeof(default_nodes[0]))

/* The default nodes in the root's /dev (made when missing), made (root) or bound from the
 * host (a user namespace may not mknod). Before pivot_root, inside the root. Nodes that
 * exist already (a /dev the config bound from the host) are left as they are. */
static int make_nodes(int rootfd, int bind)
{
    int dev = open_in_root(rootfd, "/dev", 1);
    if (dev >= 0) {
        int dir = open_in_root_once(rootfd, "/dev", O_DIRECTORY);
        close(dev);
        dev = dir;
    }
    if (dev < 0)
        return -1;
    for (size_t i = 0; i < PC_NODES; i++) {
        const char *name = default_nodes[i].path + 5;
        int rc;
        if (!bind) {
            rc = mknodat(dev, name, S_IFCHR | 0666,
                         makedev(default_nodes[i].major, default_nodes[i].minor));
            if (rc < 0 && errno == EEXIST)
                rc = 0;
        } else {
            rc = openat(dev, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
            if (rc >= 0) {
                char target[32];
                int node = rc;
                rc = mount(default_nodes[i].path, format_fd_path(target, node), NULL,
                           MS_BIND, NULL);
                close(node);
            }
        }
        if (rc < 0) {
            int saved = errno;
            close(dev);
            errno = saved;
            return -1;
        }
    }
    close(dev);
    return 0;
}

/* The built-in /dev: a tmpfs with the default nodes. */
static int make_dev(int rootfd, int bind)
{
    if (mount_in_root(rootfd, "tmpfs", "/dev", 1, "tmpfs", MS_NOSUID | MS_STRICTATIME,
                      "mode=755,size=65536k") < 0)
        return -1;
    return make_nodes(rootfd, bind);
}

static const char *const dev_links[][2] = {
    { "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
    { "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
    { "pts/ptmx", "/dev/ptmx" },
};

static int mount_fs(const char *source, const char *target, const char *fstype,
                    unsigned long flags, const char *data)
{
    if (pc_mkdir_p(target, 0755) < 0)
        return -1;
    return mount(source, target, fstype, flags, data);
}

/* /dev's links (those there already are left: a /dev the config bound from the host). */
static int dev_symlinks(void)
{
    for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
        if (symlink(dev_links[i][0], dev_links[i][1]) < 0 && errno != EEXIST)
            return -1;
    return 0;
}

/* The rest of the built-in /dev, after pivot_root. In a user namespace gid 5 (tty) may be
 * unmapped, which devpts refuses. */
static int finish_dev(int userns)
{
    const unsigned long nse = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                 userns ? "newinstance,ptmxmode=0666,mode=0620"
                        : "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return -1;
    if (mount_fs("shm", "/dev/shm", "tmpfs", nse, "mode=1777,size=65536k") < 0)
        return -1;
    if (mount_fs("mqueue", "/dev/mqueue", "mqueue", nse, NULL) < 0)
        return -1;
    return dev_symlinks();
}

/* The host image is the host's / bound recursively: its own kernel views are detached
 * (where the kernel lets us: a user namespace may not unmount them, and gets fresh
 * ones mounted over them instead). The tree is the host's own, so plain paths do. */
static const char *const host_views[] = { "/proc", "/sys", "/dev", "/tmp", "/run" };

static int detach_host_views(const char *root)
{
    char path[PATH_MAX];
    size_t rlen = strlen(root);
    for (size_t i = 0; i < sizeof(host_views) / sizeof(host_views[0]); i++) {
        size_t vlen = strlen(host_views[i]);
        if (rlen + vlen >= sizeof(path)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(path, root, rlen);
        memcpy(path + rlen, host_views[i], vlen + 1);
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT &&
            errno != EPERM)
            return -1;
    }
    return 0;
}

/* Move a detached mount (proc, sysfs) to its place in the new root. */
static int place(int tree, const char *dest)
{
    if (pc_mkdir_p(dest, 0755) < 0)
        return -1;
    return pc_move_mount(tree, "", AT_FDCWD, dest, PC_MOVE_MOUNT_F_EMPTY_PATH);
}

static int make_device(const struct pc_device *d)
{
    char parent[PATH_MAX];
    size_t len = strlen(d->path);
    if (len >= sizeof(parent)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(parent, d->path, len + 1);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (pc_mkdir_p(parent, 0755) < 0)
            return -1;
    }
    if (unlink(d->path) < 0 && errno != ENOENT)
        return -1;
    if (mknod(d->path, d->mode, makedev(d->major, d->minor)) < 0)
        return -1;
    return chown(d->path, d->uid, d->gid);
}

/* The whole of `value` in one write(2) to fd, which is closed; -1 with errno. */
static int write_all_close(int fd, const char *value)
{
    if (fd < 0)
        return -1;
    ssize_t len = (ssize_t)strlen(value);
    ssize_t n = write(fd, value, (size_t)len);
    int saved = errno;
    close(fd);
    if (n != len) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

/* The whole of `value` in one write(2), as /proc and cgroup files want it. */
int pc_write_file(const char *path, const char *value)
{
    return write_all_close(open(path, O_WRONLY | O_CLOEXEC), value);
}

/* Whether `rel` is plain names joined by '/': no empty, "." or ".." component. */
static int plain_names(const char *rel)
{
    for (const char *p = rel; ; ) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        int dots = p[0] == '.' && (len == 1 || (len == 2 && p[1] == '.'));
        if (len == 0 || len > NAME_MAX || dots)
            return 0;
        if (!slash)
            return 1;
        p = slash + 1;
    }
}

/* openat(dir, rel) for writing where openat2 is missing (before Linux 5.6): one plain
 * name at a time, none a symlink (O_NOFOLLOW), none on another filesystem than dir. */
static int open_beneath_by_hand(int dir, const char *rel)
{
    struct stat top, st;
    if (fstat(dir, &top) < 0)
        return -1;
    int cur = dir;
    for (const char *p = rel; ; ) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char name[NAME_MAX + 1];
        memcpy(name, p, len);
        name[len] = '\0';
        int fd = openat(cur, name, (slash ? O_PATH | O_DIRECTORY : O_WRONLY) | O_NOFOLLOW |
                        O_CLOEXEC);
        if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev != top.st_dev) {
            close(fd);
            fd = -1;
            errno = EXDEV;
        }
        int saved = errno;
        if (cur != dir)
            close(cur);
        errno = saved;
        if (fd < 0 || !slash)
            return fd;
        cur = fd;
        p = slash + 1;
    }
}

/* A sysctl file ("/proc/sys/<rel>") opened for writing so that it cannot be another file
 * than the key named: <rel> must be plain names (a ".." would climb from the namespace
 * the Config checked, net/.., to a host-wide one, kernel/core_pattern, without ever
 * leaving /proc/sys), resolved beneath /proc/sys with no symlink, magic link or other
 * mount. The Config checks each key already; this holds for a key that got past it. */
static int open_sysctl(const char *path)
{
    static const char prefix[] = "/proc/sys/";
    const char *rel = path + sizeof(prefix) - 1;
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0 || !plain_names(rel)) {
        errno = EINVAL;
        return -1;
    }
    int dir = open("/proc/sys", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0)
        return -1;
    struct pc_open_how how = {
        .flags = O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
        .resolve = PC_RESOLVE_BENEATH | PC_RESOLVE_NO_SYMLINKS | PC_RESOLVE_NO_MAGICLINKS |
                   PC_RESOLVE_NO_XDEV,
    };
    int fd = (int)syscall(SYS_openat2, dir, rel, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = open_beneath_by_hand(dir, rel);
    int saved = errno;
    close(dir);
    errno = saved;
    return fd;
}

static int write_sysctl(const char *path, const char *value)
{
    return write_all_close(open_sysctl(path), value);
}

/* A path that does not exist in this image is nothing to protect. */
static int readonly_path(const char *path)
{
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
        return errno == ENOENT ? 0 : -1;
    struct pc_mount_attr ro = { .attr_set = PC_MOUNT_ATTR_RDONLY };
    return pc_mount_setattr(AT_FDCWD, path, PC_AT_RECURSIVE, &ro);
}

/* Directories get an empty read-only tmpfs over them, files /dev/null, as runc does. */
static int mask_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode))
        return mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0");
    return mount("/dev/null", path, NULL, MS_BIND, NULL);
}

/* Where the host image is bound: a fresh tmpfs over /tmp, in our private mount
 * namespace only. Any directory of ours would do for root, but the root of a user
 * namespace may not be able to search the way to it (a 0700 state root); /tmp it can.
 * The host's /tmp seen inside is then hidden by the image's own fresh /tmp. */
#define PC_HOST_STAGING "/tmp"
#define PC_HOST_TARGET "/tmp/root"

static const char *stage_host_image(void)
{
    if (mount("tmpfs", PC_HOST_STAGING, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700") < 0 ||
        mkdir(PC_HOST_TARGET, 0700) < 0)
        return NULL;
    return PC_HOST_TARGET;
}

/* A read-only image: every mount of it read-only now, recursively, but its top mount
 * only once every mount point is made and everything is mounted (runc's order: an image
 * without /etc/resolv.conf still gets one bound onto it). Returns 1 when the top is to be
 * made read-only last, 0 when it is already, -1 with errno. The host's own tree stays
 * read-only from the start: nothing may make mount points in the host's filesystems.
 * A top mount that was read-only before (a read-only bind or filesystem) stays so. */
static int readonly_image(int root, int host_image)
{
    struct statfs sfs;
    if (fstatfs(root, &sfs) < 0)
        return -1;
    struct pc_mount_attr ro = { .attr_set = PC_MOUNT_ATTR_RDONLY };
    if (pc_mount_setattr(root, "", AT_EMPTY_PATH | PC_AT_RECURSIVE, &ro) < 0)
        return -1;
    if (host_image || (sfs.f_flags & ST_RDONLY))
        return 0;
    struct pc_mount_attr rw = { .attr_clr = PC_MOUNT_ATTR_RDONLY };
    if (pc_mount_setattr(root, "", AT_EMPTY_PATH, &rw) < 0)
        return -1;
    return 1;
}

/* The host's sysfs, read-only, as runc does rootless: a user namespace without a network
 * namespace of its own may not mount sysfs. */
static int bind_host_sys(int root, const char *dest)
{
    struct pc_mount_attr ro = { .attr_set = PC_MOUNT_ATTR_RDONLY };
    int sys;
    if (mount_in_root(root, "/sys", dest, 1, NULL, MS_BIND | MS_REC, NULL) < 0 ||
        (sys = open_in_root_once(root, dest, O_PATH)) < 0)
        return -1;
    int rc = pc_mount_setattr(sys, "", AT_EMPTY_PATH | PC_AT_RECURSIVE, &ro);
    int saved = errno;
    close(sys);
    errno = saved;
    return rc;
}

/* Config mount i, at its place in the list; `clone` its tree from clone_host_peers. */
static int config_mount(int root, const struct pc_mount *m, int clone,
                        const struct pc_container *c, struct pc_child_error *e, int i)
{
    struct stat st;
    if (!m->fstype && (clone >= 0 ? fstat(clone, &st) : stat(m->source, &st)) < 0)
        return pc_fail(e, PC_STAGE_BIND_SOURCE, i);
    /* No source: the filesystem type, as runc and crun name it (mountinfo shows it). */
    const char *source = m->fstype && !(m->source && *m->source) ? m->fstype : m->source;
    int rc = m->fstype ? mount_in_root(root, source, m->destination, 1, m->fstype,
                                       m->flags, m->data)
                       : bind_in_root(root, m, S_ISDIR(st.st_mode), clone,
                                      c->rootfs_propagation);
    if (rc < 0 && c->bind_devices && errno == EPERM && m->fstype && !strcmp(m->fstype, "sysfs"))
        rc = bind_host_sys(root, m->destination);
    if (rc < 0)
        return pc_fail(e, PC_STAGE_MOUNT, i);
    if (clone >= 0)
        close(clone);   /* the tree stays where it was moved */
    if (m->fstype && m->propagation) {
        int fd = open_in_root_once(root, m->destination, O_PATH);
        char target[32];
        if (fd < 0 || mount(NULL, format_fd_path(target, fd), NULL, m->propagation, NULL) < 0)
            return pc_fail(e, PC_STAGE_MOUNT, i);
        close(fd);
    }
    return 0;
}

int pc_setup_rootfs(const struct pc_container *c, struct pc_child_error *e)
{
    /* Binds that ask for shared or slave propagation keep the host's peer groups: their
     * clones are taken now, before the namespace is cut from the host below. */
    struct pc_clones clones;
    if (clone_host_peers(c, &clones, e) < 0)
        return -1;

    /* Nothing else we mount may reach the host: the namespace is made private (a shared
     * rootfsPropagation too: its "/" is made shared last, a peer group of the
     * container's own). A slave rootfs starts as one, so that what the host mounts later
     * below it still arrives (the rootfs bind inherits it); a slave never sends. So
     * detaching the old root after pivot_root unmounts nothing of the host's: no mount in
     * it is a peer of one (runc, which starts from a shared "/", makes it rslave first). */
    unsigned long start = (c->rootfs_propagation & MS_SLAVE) ? MS_SLAVE : MS_PRIVATE;
    if (mount(NULL, "/", NULL, MS_REC | start, NULL) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_PRIVATE, -1);

    /* proc and sysfs now, while the host's are visible: in a user namespace the kernel
     * refuses them once no fully visible instance is left. */
    const unsigned int nse = 0x2 | 0x4 | 0x8;   /* MOUNT_ATTR_NOSUID | NODEV | NOEXEC */
    int proc = -1, sys = -1;
    if (c->default_mounts) {
        proc = pc_fsmount("proc", "proc", nse);
        if (proc < 0)
            return pc_fail(e, PC_STAGE_MOUNT_PROC, -1);
        sys = pc_fsmount("sysfs", "sysfs", nse | PC_MOUNT_ATTR_RDONLY);
        if (sys < 0 && !(c->bind_devices && errno == EPERM))
            return pc_fail(e, PC_STAGE_MOUNT_SYS, -1);
    }

    const char *target = c->host_image ? stage_host_image() : c->rootfs_target;
    if (!target || mount(c->rootfs_source, target, NULL, MS_BIND | MS_REC, NULL) < 0)
        return pc_fail(e, PC_STAGE_BIND_ROOTFS, -1);
    int root = open(target, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return pc_fail(e, PC_STAGE_BIND_ROOTFS, -1);
    if (c->host_image && detach_host_views(target) < 0)
        return pc_fail(e, PC_STAGE_BIND_ROOTFS, -1);
    int readonly_last = 0;
    if (c->readonly_rootfs) {
        int rc = readonly_image(root, c->host_image);
        if (rc < 0)
            return pc_fail(e, PC_STAGE_READONLY_ROOTFS, -1);
        readonly_last = rc;
    }

    umask(0);   /* device nodes and mount points get exactly the modes asked for */
    if (c->default_mounts) {
        if (sys < 0 && bind_host_sys(root, "/sys") < 0)
            return pc_fail(e, PC_STAGE_MOUNT_SYS, -1);
        if (make_dev(root, c->bind_devices) < 0)
            return pc_fail(e, PC_STAGE_MOUNT_DEV, -1);
    }
    if (c->host_image &&
        (mount_in_root(root, "tmpfs", "/tmp", 1, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0 ||
         mount_in_root(root, "tmpfs", "/run", 1, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755") < 0))
        return pc_fail(e, PC_STAGE_MOUNT_TMP, -1);
    for (int i = 0; i < c->nmounts; i++)
        if (config_mount(root, &c->mounts[i], clone_of(&clones, i), c, e, i) < 0)
            return -1;
    if (!c->default_mounts && make_nodes(root, c->bind_devices) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_DEV, -1);
    if (fchdir(root) < 0 || pc_pivot_root(".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return pc_fail(e, PC_STAGE_PIVOT_ROOT, -1);
    close(root);
    if (proc >= 0) {
        if (place(proc, "/proc") < 0)
            return pc_fail(e, PC_STAGE_MOUNT_PROC, -1);
        close(proc);
    }
    if (sys >= 0) {
        if (place(sys, "/sys") < 0)
            return pc_fail(e, PC_STAGE_MOUNT_SYS, -1);
        close(sys);
    }
    if ((c->default_mounts ? finish_dev(c->bind_devices) : dev_symlinks()) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_DEV, -1);
    for (int i = 0; i < c->ndevices; i++)
        if (make_device(&c->devices[i]) < 0)
            return pc_fail(e, PC_STAGE_DEVICES, i);
    /* sysctls go through /proc/sys, so before it turns read-only. */
    for (int i = 0; i < c->nsysctl; i++)
        if (write_sysctl(c->sysctl_paths[i], c->sysctl_values[i]) < 0)
            return pc_fail(e, PC_STAGE_SYSCTL, i);
    for (int i = 0; i < c->nreadonly; i++)
        if (readonly_path(c->readonly_paths[i]) < 0)
            return pc_fail(e, PC_STAGE_READONLY_PATHS, i);
    for (int i = 0; i < c->nmasked; i++)
        if (mask_path(c->masked_paths[i]) < 0)
            return pc_fail(e, PC_STAGE_MASKED_PATHS, i);
    if (readonly_last) {
        struct pc_mount_attr ro = { .attr_set = PC_MOUNT_ATTR_RDONLY };
        if (pc_mount_setattr(AT_FDCWD, "/", 0, &ro) < 0)
            return pc_fail(e, PC_STAGE_READONLY_ROOTFS, -1);
    }
    /* On the new root itself, once everything is mounted, as runc does: "shared" makes
     * it a peer group of its own (mounts inside reach the container's later mount
     * namespaces, never the host, whose groups it left at the start); "rshared" leaves
     * the shared volumes in the host's groups, the only way out. */
    if (c->rootfs_propagation && mount(NULL, "/", NULL, c->rootfs_propagation, NULL) < 0)
        return pc_fail(e, PC_STAGE_ROOTFS_PROPAGATION, -1);
    return 0;
}

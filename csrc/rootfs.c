/* rootfs.c: the container's mount namespace, built in the child before exec.
 *
 * Order: make / rprivate (nothing we do propagates to the host); open every bind
 * source on the host as a detached mount tree; bind the rootfs and pivot_root into it,
 * detaching the old root. From then on no host path is reachable, so every destination
 * (including a symlink such as /etc/evil -> /) resolves inside the container's root:
 * the class of CVE-2019-19921 cannot reach the host. Then /proc, /sys, /dev, the Config's
 * mounts, devices, sysctls, read-only and masked paths. Every step reports its stage;
 * indexed steps report which item failed. Descriptors left open on a failure are
 * close-on-exec in a child about to _exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "child.h"
#include "syscalls.h"

#define PC_OPEN_TREE_CLOEXEC O_CLOEXEC

/* mkdir -p; existing components are fine. Paths are inside the container's root. */
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

/* Make sure `path` exists as a directory, or as a file when the bind source is one. */
static int make_mountpoint(const char *path, int is_dir)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return 0;
    if (is_dir)
        return pc_mkdir_p(path, 0755);
    /* A file bind: make the parent directories, then an empty file. */
    char parent[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof(parent)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(parent, path, len + 1);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (pc_mkdir_p(parent, 0755) < 0)
            return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
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

/* Attach a detached bind tree (opened before pivot_root) at its destination. */
static int attach_bind(const struct pc_mount *m, int tree)
{
    struct stat st;
    if (fstat(tree, &st) < 0)
        return -1;
    if (make_mountpoint(m->destination, S_ISDIR(st.st_mode)) < 0)
        return -1;
    struct pc_mount_attr attr = { .attr_set = mount_attr_bits(m->flags) };
    if (attr.attr_set & 0x70)
        attr.attr_clr = 0x70;   /* MOUNT_ATTR__ATIME: the atime mode is one field */
    if (attr.attr_set && pc_mount_setattr(tree, "", AT_EMPTY_PATH |
                                          ((m->flags & MS_REC) ? PC_AT_RECURSIVE : 0), &attr) < 0)
        return -1;
    if (pc_move_mount(tree, "", AT_FDCWD, m->destination, PC_MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return -1;
    return 0;
}

static int mount_fs(const char *source, const char *target, const char *fstype,
                    unsigned long flags, const char *data)
{
    if (pc_mkdir_p(target, 0755) < 0)
        return -1;
    return mount(source, target, fstype, flags, data);
}

struct pc_node { const char *path; unsigned int major, minor; };

static const struct pc_node default_nodes[] = {
    { "/dev/null", 1, 3 }, { "/dev/zero", 1, 5 }, { "/dev/full", 1, 7 },
    { "/dev/random", 1, 8 }, { "/dev/urandom", 1, 9 }, { "/dev/tty", 5, 0 },
};

static const char *const dev_links[][2] = {
    { "/proc/self/fd", "/dev/fd" }, { "/proc/self/fd/0", "/dev/stdin" },
    { "/proc/self/fd/1", "/dev/stdout" }, { "/proc/self/fd/2", "/dev/stderr" },
    { "pts/ptmx", "/dev/ptmx" },
};

#define PC_NODES (sizeof(default_nodes) / sizeof(default_nodes[0]))

/* node_trees: the host's nodes opened before pivot_root (a user namespace may not
 * mknod), or NULL to create them. */
static int setup_dev(const int *node_trees)
{
    const unsigned long nse = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount_fs("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") < 0)
        return -1;
    for (size_t i = 0; i < PC_NODES; i++) {
        if (!node_trees) {
            if (mknod(default_nodes[i].path, S_IFCHR | 0666,
                      makedev(default_nodes[i].major, default_nodes[i].minor)) < 0)
                return -1;
            continue;
        }
        int fd = open(default_nodes[i].path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return -1;
        close(fd);
        if (pc_move_mount(node_trees[i], "", AT_FDCWD, default_nodes[i].path,
                          PC_MOVE_MOUNT_F_EMPTY_PATH) < 0)
            return -1;
    }
    if (mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return -1;
    if (mount_fs("shm", "/dev/shm", "tmpfs", nse, "mode=1777,size=65536k") < 0)
        return -1;
    if (mount_fs("mqueue", "/dev/mqueue", "mqueue", nse, NULL) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
        if (symlink(dev_links[i][0], dev_links[i][1]) < 0)
            return -1;
    return 0;
}

/* The host image is the host's / bound recursively; its own /proc /sys /dev /tmp /run
 * submounts are detached so nothing of the host's kernel views shows through. */
static const char *const host_views[] = { "/proc", "/sys", "/dev", "/tmp", "/run" };

static int detach_host_views(void)
{
    for (size_t i = 0; i < sizeof(host_views) / sizeof(host_views[0]); i++)
        if (umount2(host_views[i], MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
            return -1;
    return 0;
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

static int write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
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

int pc_setup_rootfs(const struct pc_container *c, struct pc_child_error *e)
{
    int trees[c->nmounts > 0 ? c->nmounts : 1];

    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_PRIVATE, -1);

    /* Host sources first: after pivot_root they are out of reach. */
    for (int i = 0; i < c->nmounts; i++) {
        const struct pc_mount *m = &c->mounts[i];
        trees[i] = -1;
        if (m->fstype)
            continue;
        trees[i] = pc_open_tree(AT_FDCWD, m->source, PC_OPEN_TREE_CLONE | PC_OPEN_TREE_CLOEXEC |
                                ((m->flags & MS_REC) ? PC_AT_RECURSIVE : 0));
        if (trees[i] < 0)
            return pc_fail(e, PC_STAGE_BIND_SOURCE, i);
    }

    /* proc and sysfs are made now, while the host's are still visible: in a user
     * namespace the kernel refuses them once no fully visible instance is left. */
    const unsigned int nse = 0x2 | 0x4 | 0x8;   /* MOUNT_ATTR_NOSUID | NODEV | NOEXEC */
    int proc = pc_fsmount("proc", nse);
    if (proc < 0)
        return pc_fail(e, PC_STAGE_MOUNT_PROC, -1);
    int sys = pc_fsmount("sysfs", nse | PC_MOUNT_ATTR_RDONLY);
    if (sys < 0 && c->bind_devices && errno == EPERM) {
        /* No network namespace of the user namespace's own: the host's /sys, read-only. */
        struct pc_mount_attr ro = { .attr_set = PC_MOUNT_ATTR_RDONLY };
        sys = pc_open_tree(AT_FDCWD, "/sys", PC_OPEN_TREE_CLONE | PC_OPEN_TREE_CLOEXEC |
                           PC_AT_RECURSIVE);
        if (sys >= 0 && pc_mount_setattr(sys, "", AT_EMPTY_PATH | PC_AT_RECURSIVE, &ro) < 0)
            sys = -1;
    }
    if (sys < 0)
        return pc_fail(e, PC_STAGE_MOUNT_SYS, -1);
    int node_trees[PC_NODES];
    for (size_t i = 0; c->bind_devices && i < PC_NODES; i++)
        if ((node_trees[i] = pc_open_tree(AT_FDCWD, default_nodes[i].path,
                                          PC_OPEN_TREE_CLONE | PC_OPEN_TREE_CLOEXEC)) < 0)
            return pc_fail(e, PC_STAGE_MOUNT_DEV, -1);

    if (mount(c->rootfs_source, c->rootfs_target, NULL, MS_BIND | MS_REC, NULL) < 0)
        return pc_fail(e, PC_STAGE_BIND_ROOTFS, -1);
    if (chdir(c->rootfs_target) < 0 || pc_pivot_root(".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        return pc_fail(e, PC_STAGE_PIVOT_ROOT, -1);
    if (c->host_image && detach_host_views() < 0)
        return pc_fail(e, PC_STAGE_PIVOT_ROOT, -1);

    if (c->readonly_rootfs) {
        struct pc_mount_attr ro = { .attr_set = PC_MOUNT_ATTR_RDONLY };
        if (pc_mount_setattr(AT_FDCWD, "/", PC_AT_RECURSIVE, &ro) < 0)
            return pc_fail(e, PC_STAGE_READONLY_ROOTFS, -1);
    }

    umask(0);   /* device nodes and mount points get exactly the modes asked for */
    if (pc_mkdir_p("/proc", 0755) < 0 ||
        pc_move_mount(proc, "", AT_FDCWD, "/proc", PC_MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_PROC, -1);
    if (pc_mkdir_p("/sys", 0755) < 0 ||
        pc_move_mount(sys, "", AT_FDCWD, "/sys", PC_MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_SYS, -1);
    if (setup_dev(c->bind_devices ? node_trees : NULL) < 0)
        return pc_fail(e, PC_STAGE_MOUNT_DEV, -1);
    if (c->host_image &&
        (mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") < 0 ||
         mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755") < 0))
        return pc_fail(e, PC_STAGE_MOUNT_TMP, -1);

    for (int i = 0; i < c->nmounts; i++) {
        const struct pc_mount *m = &c->mounts[i];
        int rc = m->fstype ? mount_fs(m->source, m->destination, m->fstype, m->flags, m->data)
                           : attach_bind(m, trees[i]);
        if (rc < 0 || (m->propagation &&
                       mount(NULL, m->destination, NULL, m->propagation, NULL) < 0))
            return pc_fail(e, PC_STAGE_MOUNT, i);
        if (trees[i] >= 0) {
            close(trees[i]);
            trees[i] = -1;
        }
    }
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
    return 0;
}

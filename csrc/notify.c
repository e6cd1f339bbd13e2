/* notify.c: inotify and the cgroup v1 OOM eventfd, for pycontainer/events.py.
 *
 * Python has no inotify binding, and cgroup.event_control wants "<eventfd> <file fd>" in
 * one write: both are a few lines of C. kernfs (cgroupfs) raises IN_MODIFY on cgroup.events
 * and memory.events when a field changes; it raises nothing when a cgroup is removed (no
 * IN_DELETE_SELF / IN_IGNORED on the directory or its files, observed on 6.18), which is why
 * destruction is watched on the state directory instead. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>
#include "notify.h"

int pc_inotify_open(void)
{
    int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int pc_inotify_watch(int fd, const char *path, uint32_t mask)
{
    int wd = inotify_add_watch(fd, path, mask);
    return wd < 0 ? -errno : wd;
}

int pc_inotify_read(int fd, struct pc_inotify_event *out)
{
    /* Every event is at least sizeof(struct inotify_event) (16) bytes, so a buffer of
     * BATCH * 16 bytes never holds more than BATCH events; it also holds the longest
     * single event (16 + NAME_MAX + 1), so read(2) never fails with EINVAL. */
    char buf[PC_INOTIFY_BATCH * sizeof(struct inotify_event)]
        __attribute__((aligned(__alignof__(struct inotify_event))));
    _Static_assert(sizeof(buf) >= sizeof(struct inotify_event) + 256, "inotify buffer");
    ssize_t n;
    do {
        n = read(fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? 0 : -errno;
    int count = 0;
    for (char *p = buf; p < buf + n && count < PC_INOTIFY_BATCH; count++) {
        const struct inotify_event *ev = (const struct inotify_event *)p;
        out[count].wd = ev->wd;
        out[count].mask = ev->mask;
        size_t len = ev->len ? strnlen(ev->name, ev->len) : 0;
        if (len >= sizeof(out[count].name))
            len = sizeof(out[count].name) - 1;
        memcpy(out[count].name, ev->name, len);
        out[count].name[len] = '\0';
        p += sizeof(struct inotify_event) + ev->len;
    }
    return count;
}

int pc_memcg_oom_eventfd(const char *dir)
{
    int err = 0, efd = -1, ofd = -1, cfd = -1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    ofd = openat(dfd, "memory.oom_control", O_RDONLY | O_CLOEXEC);
    if (ofd < 0)
        goto fail;
    cfd = openat(dfd, "cgroup.event_control", O_WRONLY | O_CLOEXEC);
    if (cfd < 0)
        goto fail;
    efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0)
        goto fail;
    char line[32];
    int len = snprintf(line, sizeof(line), "%d %d", efd, ofd);
    if (write(cfd, line, (size_t)len) != len)
        goto fail;
    close(cfd);
    close(ofd);
    close(dfd);
    return efd;
fail:
    err = errno ? errno : EIO;
    if (efd >= 0)
        close(efd);
    if (cfd >= 0)
        close(cfd);
    if (ofd >= 0)
        close(ofd);
    close(dfd);
    return -err;
}

int pc_eventfd_take(int fd, uint64_t *value)
{
    ssize_t n;
    do {
        n = read(fd, value, sizeof(*value));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(*value))
        return 0;
    *value = 0;
    if (n < 0 && errno != EAGAIN)
        return -errno;
    return 0;
}

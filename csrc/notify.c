/* notify.c: inotify, for pycontainer/events.py.
 *
 * Python has no inotify binding: it is a few lines of C. kernfs (cgroupfs) raises
 * IN_MODIFY on cgroup.events and memory.events when a field changes; it raises nothing
 * when a cgroup is removed (no IN_DELETE_SELF / IN_IGNORED on the directory or its files),
 * which is why destruction is watched on the state directory instead. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>
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

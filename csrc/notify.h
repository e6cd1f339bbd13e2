/* notify.h: kernel notifications the event streams wait on (pycontainer/events.py).
 * Plain C, no Python.h; every function returns a result >= 0 or a negative errno. */
#ifndef PC_NOTIFY_H
#define PC_NOTIFY_H

#include <stdint.h>

/* An inotify instance, close-on-exec and non-blocking. */
int pc_inotify_open(void);

/* inotify_add_watch: the watch descriptor. */
int pc_inotify_watch(int fd, const char *path, uint32_t mask);

/* One event as pc_inotify_read returns it; name is "" for a watch on the file itself. */
struct pc_inotify_event {
    int32_t wd;
    uint32_t mask;
    char name[256];
};

/* At most this many events come back from one pc_inotify_read. */
#define PC_INOTIFY_BATCH 32

/* Read the events queued on fd (one read(2), never more than PC_INOTIFY_BATCH) into
 * out[PC_INOTIFY_BATCH]. Returns the count; 0 when none is queued. */
int pc_inotify_read(int fd, struct pc_inotify_event *out);


#endif

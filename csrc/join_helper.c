/* join_helper.c: main() of pycontainer-join, the program a join execs between the caller
 * and the container (see spawn.c). Not part of the extension module: setup.py links it
 * statically with the rest of csrc/ into pycontainer/_join_helper, and _core runs it from
 * a sealed memfd copy. It starts with the descriptors joinreq.h lists. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>
#include "joinreq.h"

static int fail(int stage, int err)
{
    struct pc_child_error e = { stage, err, -1 };
    ssize_t n;
    do {
        n = write(PC_JOIN_ERR_FD, &e, sizeof(e));
    } while (n < 0 && errno == EINTR);
    return 127;
}

int main(int argc, char **argv)
{
    /* A pooled sandbox's parked init (spawn.c, zygote_park). */
    if (argc > 0 && strcmp(argv[0], "pycontainer-zygote") == 0)
        return pc_zygote_main();
    /* First: from here on no one without CAP_SYS_PTRACE over our user namespace can open
     * our /proc files (mem, fd/, exe, root), and we are still outside the container. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return fail(PC_STAGE_DUMPABLE, errno);
    /* The slots came without close-on-exec (they had to survive our exec); the error
     * socket must not survive the process's: EOF on it tells the caller it exec'd. */
    if (fcntl(PC_JOIN_ERR_FD, F_SETFD, FD_CLOEXEC) < 0)
        return fail(PC_STAGE_JOIN_HELPER, errno);
    struct stat st;
    if (fstat(PC_JOIN_REQUEST_FD, &st) < 0 || st.st_size <= 0)
        return fail(PC_STAGE_JOIN_HELPER, EPROTO);
    void *buf = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE,
                     PC_JOIN_REQUEST_FD, 0);
    close(PC_JOIN_REQUEST_FD);
    if (buf == MAP_FAILED)
        return fail(PC_STAGE_JOIN_HELPER, errno);
    struct pc_join_request *r = pc_join_unpack(buf, (size_t)st.st_size);
    if (!r)
        return fail(PC_STAGE_JOIN_HELPER, EPROTO);
    return pc_join_in_helper(&r->target, &r->process, PC_JOIN_ERR_FD);
}

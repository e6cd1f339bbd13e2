/* spawn.h: the C core's interface. Plain C; only pycontainer/_core.pyx includes it.
 *
 * Every function returns 0 or a negative errno. Child-side failures are reported as a
 * struct pc_child_error over a close-on-exec pipe: EOF on that pipe means exec happened.
 */
#ifndef PC_SPAWN_H
#define PC_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

/* Where inside the child a failure happened. Names in pc_stage_name(). */
enum pc_stage {
    PC_STAGE_NONE = 0,
    PC_STAGE_CGROUP,       /* writing 0 to a v1 cgroup.procs */
    PC_STAGE_CGROUP_NS,
    PC_STAGE_SIGNALS,
    PC_STAGE_MOUNT_PRIVATE,
    PC_STAGE_BIND_SOURCE,  /* a bind mount's host source; index = mount */
    PC_STAGE_BIND_ROOTFS,
    PC_STAGE_PIVOT_ROOT,
    PC_STAGE_READONLY_ROOTFS,
    PC_STAGE_MOUNT_PROC,
    PC_STAGE_MOUNT_SYS,
    PC_STAGE_MOUNT_DEV,
    PC_STAGE_MOUNT_TMP,    /* the host image's /tmp and /run */
    PC_STAGE_MOUNT,        /* a Config mount; index = mount */
    PC_STAGE_HOSTNAME,
    PC_STAGE_DOMAINNAME,
    PC_STAGE_LOOPBACK,
    PC_STAGE_ID_MAPPINGS,  /* index 0: uid_map, 1: gid_map, 2: setgroups */
    PC_STAGE_SETNS,        /* joining: index -1; a new container's ns_fds: index i */
    PC_STAGE_CLONE,        /* the joining helper's clone3 */
    PC_STAGE_DEVICES,      /* a Config device node; index = device */
    PC_STAGE_SYSCTL,       /* index = sysctl */
    PC_STAGE_READONLY_PATHS,   /* index = path */
    PC_STAGE_MASKED_PATHS,     /* index = path */
    PC_STAGE_RLIMITS,      /* index = rlimit */
    PC_STAGE_OOM_SCORE_ADJ,
    PC_STAGE_CAPS,
    PC_STAGE_NO_NEW_PRIVS,
    PC_STAGE_SECCOMP,
    PC_STAGE_PDEATHSIG,
    PC_STAGE_SETGROUPS,
    PC_STAGE_SETGID,
    PC_STAGE_SETUID,
    PC_STAGE_CWD,
    PC_STAGE_STDIO,
    PC_STAGE_CLOSE_FDS,
    PC_STAGE_EXEC,
    PC_STAGE_TERMINAL,     /* the pty: open, unlock, send the master, make it the ctty */
    PC_STAGE_JOIN_HELPER,  /* moving descriptors for, or exec of, the join helper */
    PC_STAGE_DUMPABLE,     /* PR_SET_DUMPABLE 0 */
    PC_STAGE_ROOTFS_PROPAGATION,
    PC_STAGE_POOL_REQUEST, /* a parked init receiving its process (zygote.c) */
    PC_STAGE_EXEC_FIFO,    /* a staged init reopening exec.fifo (through /proc/self/fd) */
    PC_STAGE_DIED,         /* an init that reports ready died first: index = its signal,
                            * or 256 + its exit code; err ECANCELED */
    PC_STAGE_COUNT
};

const char *pc_stage_name(int stage);

struct pc_child_error {
    int32_t stage;
    int32_t err;       /* positive errno */
    int32_t index;     /* mount index for mount stages, else -1 */
};

/* One Config mount. Bind sources are host paths, opened before the container's root is
 * entered; every destination is a path inside the container's root, resolved after
 * pivot_root, when no host path is reachable any more. */
struct pc_mount {
    const char *source;
    const char *destination;
    const char *fstype;          /* NULL for a bind mount */
    unsigned long flags;         /* MS_* */
    unsigned long propagation;   /* MS_PRIVATE, MS_SLAVE ... (| MS_REC), or 0 */
    const char *data;            /* filesystem options, or NULL */
};

/* A device node the container gets besides the default ones. */
struct pc_device {
    const char *path;
    mode_t mode;                 /* S_IFCHR, S_IFBLK or S_IFIFO | permission bits */
    unsigned int major, minor;
    uid_t uid;
    gid_t gid;
};

struct pc_rlimit {
    int resource;                /* RLIMIT_* */
    uint64_t soft, hard;
};

/* Per-process hardening: what every process of a container gets (Config), with the
 * ProcessConfig's rlimits layered on top. Applied in the child, in this order: bounding
 * set, rlimits, oom_score_adj, groups/gid, uid (keeping capabilities across it), the
 * other capability sets, ambient, umask, no_new_privs, seccomp last before exec. */
struct pc_security {
    int set_caps;                /* 0: leave the capability sets alone */
    int last_cap;                /* /proc/sys/kernel/cap_last_cap */
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privs;
    const void *seccomp;         /* struct sock_filter[], or NULL */
    unsigned short seccomp_len;  /* number of instructions */
    const struct pc_rlimit *rlimits;
    int nrlimits;
    int set_oom_score_adj;
    int oom_score_adj;
    int umask;
    int pdeathsig;               /* 0: none; else sent when the creating thread exits */
};

/* What a new container looks like: prepared once per Config, read-only afterwards. */
struct pc_container {
    uint64_t ns_flags;           /* CLONE_NEW* */
    const char *rootfs_source;   /* bound onto rootfs_target, which becomes / */
    const char *rootfs_target;
    int host_image;              /* rootfs is the host's /: detach its /proc /sys /dev /tmp /run */
    int bind_devices;            /* bind the host's device nodes instead of mknod (user ns) */
    int readonly_rootfs;
    /* 1: the built-in /proc, /sys, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue before
     * the mounts; 0: the mounts are all (an OCI config.json's, in its order). */
    int default_mounts;
    /* MS_SHARED, MS_SLAVE, MS_PRIVATE or MS_UNBINDABLE (| MS_REC) for the rootfs mount,
     * set after pivot_root; 0: rprivate, as every mount starts. */
    unsigned long rootfs_propagation;
    const char *hostname;        /* NULL: leave */
    const char *domainname;
    struct pc_mount *mounts;
    int nmounts;
    const struct pc_device *devices;
    int ndevices;
    const char *const *sysctl_paths;    /* /proc/sys/... */
    const char *const *sysctl_values;
    int nsysctl;
    const char *const *readonly_paths;
    int nreadonly;
    const char *const *masked_paths;
    int nmasked;
};

#define PC_MAX_EXTRA_FDS 256

/* One process to start. */
struct pc_process {
    char *const *argv;
    char *const *envp;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    int stdio[3];                /* -1: /dev/null inside the container */
    const int *extra_fds;        /* become 3, 4, ... in the process (runc's --preserve-fds) */
    int nextra_fds;              /* at most PC_MAX_EXTRA_FDS */
    /* >= 0: a unix socket. The process gets a new pty of the container's devpts as its
     * controlling terminal and stdio, and sends the master over it (SCM_RIGHTS). */
    int console_fd;
    const struct pc_security *security;   /* NULL: none (a privileged process) */
};

/* Where the process goes: a new container (join_pidfd == -1) or the namespaces of a
 * running init (join_pidfd, join_ns = CLONE_NEW* mask to enter). */
struct pc_target {
    const struct pc_container *container;
    int join_pidfd;
    uint64_t join_ns;
    int cgroup_fd;               /* v2 dir for CLONE_INTO_CGROUP, or -1 */
    const int *procs_fds;        /* v1 cgroup.procs files the child writes "0" to */
    int nprocs_fds;
    /* >= 0 (a new container only): stage the init. It is a fork, not a CLONE_VM child,
     * so it can outlive this call; it sets up everything, checks that argv[0] can be
     * found, reports ready and then blocks opening this fifo (an O_PATH descriptor) for
     * writing; exec follows once someone opens the fifo for reading and reads a byte. */
    int exec_fifo_fd;
    /* A join (join_pidfd >= 0): the join helper executable, a sealed memfd. The process
     * that enters the container's namespaces is started from a fresh exec of it, so it
     * never shares the caller's memory and is non-dumpable before it enters any namespace. */
    int join_helper_fd;
    /* A new user namespace (CLONE_NEWUSER in ns_flags): what the helper writes to the
     * init's /proc/<pid>/uid_map and gid_map before letting it go on. */
    const char *uid_map;
    const char *gid_map;
    int deny_setgroups;          /* write "deny" to setgroups first (needed unprivileged) */
    /* A new container: existing namespaces it joins instead of making them (their
     * CLONE_NEW* flags are not in container->ns_flags). Descriptors the caller opened
     * close-on-exec and closes after pc_spawn; ns_types[i] is the CLONE_NEW* type that
     * setns() checks ns_fds[i] against. A failure is stage PC_STAGE_SETNS, index i. */
    const int *ns_fds;
    const int *ns_types;
    int nns_fds;
    /* >= 0 (a new container only): park the init (a pooled sandbox, zygote.c). It is
     * cloned as an unstaged init, but before anything of the process: after the Config's
     * setup it execs join_helper_fd as pc_zygote_main, which reports ready and waits on
     * this socket for the process (pc_zygote_start). */
    int zygote_fd;
};

/* Start `proc` in `target`. On success *pid (in the caller's pid namespace) and *pidfd
 * (close-on-exec, the caller's child: reap with waitid(P_PIDFD, __WALL)) are set and the
 * program has been exec'd (staged: waits at the fifo, see exec_fifo_fd). A failure inside the child fills *cerr and returns -cerr->err;
 * a failure in the caller returns -errno with cerr->stage == PC_STAGE_NONE. No child is
 * left behind on failure. Blocks (no GIL needed) until exec or failure. */
int pc_spawn(const struct pc_target *target, const struct pc_process *proc,
             pid_t *pid, int *pidfd, struct pc_child_error *cerr);

/* The exit watcher's one blocking call: wait up to timeout_ms for pidfds in epfd to become
 * readable, reap each with waitid(P_PIDFD, WEXITED|__WALL), remove it from epfd. Fills
 * fds[i] and statuses[i] (exit code, -signal; when someone else reaped it, the status the
 * pidfd kept, or PC_STATUS_UNKNOWN before Linux 6.15). Returns the count or -errno. The
 * fds stay open. */
#define PC_STATUS_UNKNOWN INT32_MIN
int pc_reap_ready(int epfd, int timeout_ms, int *fds, int *statuses, int max);

/* The exit status of the process behind one pidfd, without blocking. reap != 0: reap it
 * (waitid WEXITED|__WALL); reap == 0: only look (WNOWAIT), leaving the zombie to whoever
 * reaps it. Returns 1 with *status (exit code, -signal, or PC_STATUS_UNKNOWN when another
 * reaper took it and the pidfd does not have it), 0 when it has not exited yet, or -errno.
 * When someone else reaps it concurrently, waits (at most ~100 ms) for the pidfd to get
 * the status, as pc_reap_ready does. */
int pc_pidfd_exit_status(int fd, int reap, int *status);

/* Hand `p` to the init parked on `sock` (pc_target.zygote_fd's other end) and wait until
 * it has exec'd (0) or reports a failure (cerr filled, -errno). -E2BIG when the request
 * is larger than PC_ZYGOTE_MAX_REQUEST or has too many descriptors for one message. */
#define PC_ZYGOTE_MAX_REQUEST (128 * 1024)
/* The parked init runs the join helper as "pycontainer-zygote" with these descriptors. */
#define PC_ZYGOTE_SOCK_FD 3
#define PC_ZYGOTE_READY_FD 4
int pc_zygote_main(void);
int pc_zygote_start(int sock, const struct pc_process *p, struct pc_child_error *cerr);

#endif

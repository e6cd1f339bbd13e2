# The C core's API, as csrc/spawn.h declares it. Everything here runs without the GIL.
from libc.stdint cimport uint64_t, uint32_t, int32_t

cdef extern from "sys/types.h":
    ctypedef int pid_t
    ctypedef unsigned int uid_t
    ctypedef unsigned int gid_t

cdef extern from "spawn.h" nogil:
    enum:
        PC_STAGE_NONE
        PC_STAGE_BIND_SOURCE
        PC_STAGE_MOUNT
        PC_STAGE_CWD
        PC_STAGE_EXEC
        PC_STAGE_CGROUP
        PC_MAX_EXTRA_FDS
        PC_ZYGOTE_MAX_REQUEST
        PC_STATUS_UNKNOWN

    struct pc_child_error:
        int32_t stage
        int32_t err
        int32_t index

    struct pc_mount:
        const char *source
        const char *destination
        const char *fstype
        unsigned long flags
        unsigned long propagation
        const char *data

    struct pc_device:
        const char *path
        unsigned int mode
        unsigned int major
        unsigned int minor
        uid_t uid
        gid_t gid

    struct pc_rlimit:
        int resource
        uint64_t soft
        uint64_t hard

    struct pc_security:
        int set_caps
        int last_cap
        uint64_t cap_bounding
        uint64_t cap_effective
        uint64_t cap_permitted
        uint64_t cap_inheritable
        uint64_t cap_ambient
        int no_new_privs
        const void *seccomp
        unsigned short seccomp_len
        const pc_rlimit *rlimits
        int nrlimits
        int set_oom_score_adj
        int oom_score_adj
        int umask
        int pdeathsig

    struct pc_container:
        uint64_t ns_flags
        const char *rootfs_source
        const char *rootfs_target
        int host_image
        int bind_devices
        int readonly_rootfs
        int default_mounts
        unsigned long rootfs_propagation
        const char *hostname
        const char *domainname
        pc_mount *mounts
        int nmounts
        const pc_device *devices
        int ndevices
        const char *const *sysctl_paths
        const char *const *sysctl_values
        int nsysctl
        const char *const *readonly_paths
        int nreadonly
        const char *const *masked_paths
        int nmasked

    struct pc_process:
        char *const *argv
        char *const *envp
        const char *cwd
        uid_t uid
        gid_t gid
        const gid_t *groups
        int ngroups
        int stdio[3]
        const int *extra_fds
        int nextra_fds
        int console_fd
        const pc_security *security

    struct pc_target:
        const pc_container *container
        int join_pidfd
        uint64_t join_ns
        int cgroup_fd
        const int *procs_fds
        int nprocs_fds
        int exec_fifo_fd
        int join_helper_fd
        const char *uid_map
        const char *gid_map
        int deny_setgroups
        const int *ns_fds
        const int *ns_types
        int nns_fds
        int zygote_fd

    const char *pc_stage_name(int stage)
    int pc_spawn(const pc_target *target, const pc_process *proc, pid_t *pid, int *pidfd,
                 pc_child_error *cerr)
    int pc_zygote_start(int sock, const pc_process *p, pc_child_error *cerr)
    int pc_reap_ready(int epfd, int timeout_ms, int *fds, int *statuses, int max)
    int pc_pidfd_exit_status(int fd, int reap, int *status)

cdef extern from "notify.h" nogil:
    enum:
        PC_INOTIFY_BATCH

    struct pc_inotify_event:
        int32_t wd
        uint32_t mask
        char name[256]

    int pc_inotify_open()
    int pc_inotify_watch(int fd, const char *path, uint32_t mask)
    int pc_inotify_read(int fd, pc_inotify_event *out)

cdef extern from "sys/inotify.h":
    enum:
        IN_MODIFY
        IN_MOVED_TO
        IN_DELETE_SELF
        IN_IGNORED
        IN_Q_OVERFLOW
        IN_ONLYDIR
        IN_DONT_FOLLOW

cdef extern from "sched.h" nogil:
    int unshare(int flags)

# cython: language_level=3, boundscheck=False, wraparound=False
"""The only bridge between Python and csrc/.

Converts Python objects to the C structs of spawn.h once (ContainerPlan, at create) or per
process (argv, env), releases the GIL around every blocking call, and turns C failures into
ContainerSystemError in one place (_raise_spawn_error)."""
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from cpython.bytes cimport PyBytes_AS_STRING

from pycontainer.errors import ContainerSystemError

# clone(2) namespace flags, by the names Config uses.
NAMESPACE_FLAGS = {
    "mount": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "cgroup": 0x02000000,
}
STATUS_UNKNOWN = PC_STATUS_UNKNOWN


def namespace_flags(names):
    cdef uint64_t flags = 0
    for name in names:
        flags |= NAMESPACE_FLAGS[name]
    return flags


cdef inline const char *_cstr(list keep, object s) except? NULL:
    """A char* valid while `keep` lives; NULL for None."""
    if s is None:
        return NULL
    b = s.encode() if isinstance(s, str) else bytes(s)
    keep.append(b)
    return PyBytes_AS_STRING(b)


cdef char **_cstr_array(list keep, object items) except NULL:
    cdef Py_ssize_t n = len(items), i
    cdef char **arr = <char **>malloc((n + 1) * sizeof(char *))
    if arr == NULL:
        raise MemoryError()
    for i in range(n):
        arr[i] = <char *>_cstr(keep, items[i])
    arr[n] = NULL
    return arr


cdef class ContainerPlan:
    """A Config in the C form the child reads: built once, immutable, shared by every start."""

    cdef pc_container c
    cdef list _keep
    cdef readonly tuple destinations

    def __cinit__(self):
        memset(&self.c, 0, sizeof(self.c))
        self._keep = []

    def __init__(self, *, namespaces, rootfs_source, rootfs_target, host_image, readonly_rootfs,
                 hostname, domainname, mounts):
        """mounts: (source, destination, fstype or None for a bind, flags, propagation, data)."""
        self.c.ns_flags = namespace_flags(namespaces)
        self.c.rootfs_source = _cstr(self._keep, rootfs_source)
        self.c.rootfs_target = _cstr(self._keep, rootfs_target)
        self.c.host_image = 1 if host_image else 0
        self.c.readonly_rootfs = 1 if readonly_rootfs else 0
        self.c.hostname = _cstr(self._keep, hostname)
        self.c.domainname = _cstr(self._keep, domainname)
        self.c.nmounts = len(mounts)
        self.c.mounts = <pc_mount *>malloc((len(mounts) or 1) * sizeof(pc_mount))
        if self.c.mounts == NULL:
            raise MemoryError()
        cdef int i
        for i, (source, destination, fstype, flags, propagation, data) in enumerate(mounts):
            self.c.mounts[i].source = _cstr(self._keep, source)
            self.c.mounts[i].destination = _cstr(self._keep, destination)
            self.c.mounts[i].fstype = _cstr(self._keep, fstype)
            self.c.mounts[i].flags = flags
            self.c.mounts[i].propagation = propagation
            self.c.mounts[i].data = _cstr(self._keep, data or None)
        self.destinations = tuple(m[1] for m in mounts)

    def __dealloc__(self):
        free(self.c.mounts)


def spawn(ContainerPlan plan, argv, envp, cwd, int uid, int gid, groups, stdio,
          int cgroup_fd=-1, procs_fds=(), int join_pidfd=-1, uint64_t join_ns=0):
    """Start a process: a new container's init (join_pidfd == -1) or one joining the
    namespaces of the init behind join_pidfd. Returns (pid, pidfd) once it has exec'd."""
    cdef list keep = []
    cdef pc_process proc
    cdef pc_target target
    cdef pc_child_error cerr
    cdef pid_t pid = -1
    cdef int pidfd = -1, rc, i
    cdef int ngroups = len(groups), nprocs = len(procs_fds)
    cdef gid_t *cgroups_ = <gid_t *>malloc((ngroups or 1) * sizeof(gid_t))
    cdef int *cprocs = <int *>malloc((nprocs or 1) * sizeof(int))
    cdef char **cargv = NULL
    cdef char **cenvp = NULL
    try:
        if cgroups_ == NULL or cprocs == NULL:
            raise MemoryError()
        for i in range(ngroups):
            cgroups_[i] = groups[i]
        for i in range(nprocs):
            cprocs[i] = procs_fds[i]
        cargv = _cstr_array(keep, argv)
        cenvp = _cstr_array(keep, envp)
        memset(&proc, 0, sizeof(proc))
        proc.argv = cargv
        proc.envp = cenvp
        proc.cwd = _cstr(keep, cwd)
        proc.uid = uid
        proc.gid = gid
        proc.groups = cgroups_
        proc.ngroups = ngroups
        for i in range(3):
            proc.stdio[i] = stdio[i]
        target.container = &plan.c
        target.join_pidfd = join_pidfd
        target.join_ns = join_ns
        target.cgroup_fd = cgroup_fd
        target.procs_fds = cprocs
        target.nprocs_fds = nprocs
        with nogil:
            rc = pc_spawn(&target, &proc, &pid, &pidfd, &cerr)
        if rc < 0:
            _raise_spawn_error(plan, -rc, cerr, argv, cwd)
        return pid, pidfd
    finally:
        free(cgroups_)
        free(cprocs)
        free(cargv)
        free(cenvp)


cdef _raise_spawn_error(ContainerPlan plan, int err, pc_child_error cerr, argv, cwd):
    cdef int stage = cerr.stage
    if stage == PC_STAGE_NONE:
        raise ContainerSystemError(err, "clone3")
    name = pc_stage_name(stage).decode()
    what = ""
    if (stage == PC_STAGE_MOUNT or stage == PC_STAGE_BIND_SOURCE) and 0 <= cerr.index < len(plan.destinations):
        what = f"mounts[{cerr.index}] {plan.destinations[cerr.index]}"
    elif stage == PC_STAGE_EXEC:
        what = argv[0]
    elif stage == PC_STAGE_CWD:
        what = cwd
    raise ContainerSystemError(err, what, stage=name)


def reap_ready(int epfd, int timeout_ms):
    """Block (without the GIL) until some pidfds in epfd are readable; reap them.
    Returns [(pidfd, status)], status None when someone else took it. The fds stay open."""
    cdef int fds[256]
    cdef int statuses[256]
    cdef int n, i
    with nogil:
        n = pc_reap_ready(epfd, timeout_ms, fds, statuses, 256)
    if n < 0:
        if -n == 4:   # EINTR: a signal for the Python program, not for us
            return []
        raise ContainerSystemError(-n, "epoll_wait")
    return [(fds[i], None if statuses[i] == PC_STATUS_UNKNOWN else statuses[i]) for i in range(n)]

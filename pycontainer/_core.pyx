# cython: language_level=3, boundscheck=False, wraparound=False
"""The only bridge between Python and csrc/.

Converts Python objects to the C structs of spawn.h once (ContainerPlan, at create) or per
process (argv, env), releases the GIL around every blocking call, and turns C failures into
ContainerSystemError in one place (_raise_spawn_error)."""
cimport cython
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.errno cimport errno
from cpython.bytes cimport PyBytes_AS_STRING

import errno as errno_codes
import fcntl
import os
import struct
import threading

from pycontainer.errors import ContainerSystemError
from pycontainer.namespaces import BY_NAME as _NAMESPACES, clone_flags

STATUS_UNKNOWN = PC_STATUS_UNKNOWN


cdef inline const char *_cstr(list keep, object s) except? NULL:
    """A char* valid while `keep` lives; NULL for None."""
    if s is None:
        return NULL
    # As os.fsencode: undecodable bytes that came in as surrogates go out as they were.
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)
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


cdef class SecurityPlan:
    """Per-process hardening in C form: capabilities as masks, compiled seccomp BPF,
    rlimits. Built once per Config (and per ProcessConfig that adds rlimits)."""

    cdef pc_security s
    cdef bytes _seccomp
    cdef pc_rlimit *_rlimits
    cdef readonly tuple rlimit_names

    def __cinit__(self):
        memset(&self.s, 0, sizeof(self.s))

    def __init__(self, *, cap_masks, last_cap, no_new_privs, seccomp, rlimits, rlimit_names,
                 oom_score_adj, umask, pdeathsig=0):
        """cap_masks: (bounding, effective, permitted, inheritable, ambient) or None to keep
        all; seccomp: BPF bytes or None; rlimits: [(resource, soft, hard)]."""
        if cap_masks is not None:
            self.s.set_caps = 1
            (self.s.cap_bounding, self.s.cap_effective, self.s.cap_permitted,
             self.s.cap_inheritable, self.s.cap_ambient) = cap_masks
        self.s.last_cap = last_cap
        self.s.no_new_privs = 1 if no_new_privs else 0
        if seccomp is not None:
            if len(seccomp) % 8 or not 0 < len(seccomp) // 8 <= 4096:
                raise ValueError("seccomp: BPF program of a bad size")
            self._seccomp = bytes(seccomp)
            self.s.seccomp = PyBytes_AS_STRING(self._seccomp)
            self.s.seccomp_len = len(self._seccomp) // 8
        self._rlimits = <pc_rlimit *>malloc((len(rlimits) or 1) * sizeof(pc_rlimit))
        if self._rlimits == NULL:
            raise MemoryError()
        cdef int i
        for i, (resource, soft, hard) in enumerate(rlimits):
            self._rlimits[i].resource = resource
            self._rlimits[i].soft = soft
            self._rlimits[i].hard = hard
        self.s.rlimits = self._rlimits
        self.s.nrlimits = len(rlimits)
        self.rlimit_names = tuple(rlimit_names)
        if oom_score_adj is not None:
            self.s.set_oom_score_adj = 1
            self.s.oom_score_adj = oom_score_adj
        self.s.umask = umask
        self.s.pdeathsig = pdeathsig or 0

    def __dealloc__(self):
        free(self._rlimits)


cdef const char **_cstr_list(list keep, list arrays, object items) except NULL:
    cdef char **arr = _cstr_array(keep, items)
    arrays.append(<object><Py_ssize_t>arr)   # freed in __dealloc__
    return <const char **>arr


# Cython's tp_clear would set _arrays to None when the plan is garbage in a reference
# cycle (an exception's traceback holding the Container), before __dealloc__ frees the
# arrays it lists. Its attributes hold only bytes and ints: it cannot be in a cycle itself.
@cython.no_gc_clear
cdef class ContainerPlan:
    """A Config in the C form the child reads: built once, immutable, shared by every start."""

    cdef pc_container c
    cdef list _keep
    cdef list _arrays
    cdef pc_device *_devices
    cdef readonly dict labels

    def __cinit__(self):
        memset(&self.c, 0, sizeof(self.c))
        self._keep = []
        self._arrays = []

    def __init__(self, *, namespaces, rootfs_source, rootfs_target, host_image, readonly_rootfs,
                 hostname, domainname, mounts, devices=(), sysctl=(), readonly_paths=(),
                 masked_paths=(), bind_devices=False, rootfs_propagation=0,
                 default_mounts=True):
        """mounts: (source, destination, fstype or None for a bind, flags, propagation, data,
        label: what errors call it, "" for mounts[i]);
        devices: (path, mode, major, minor, uid, gid); sysctl: (/proc/sys path, value)."""
        self.c.ns_flags = clone_flags(namespaces)
        self.c.rootfs_source = _cstr(self._keep, rootfs_source)
        self.c.rootfs_target = _cstr(self._keep, rootfs_target)
        self.c.host_image = 1 if host_image else 0
        self.c.readonly_rootfs = 1 if readonly_rootfs else 0
        self.c.default_mounts = 1 if default_mounts else 0
        self.c.rootfs_propagation = rootfs_propagation
        self.c.bind_devices = 1 if bind_devices else 0
        self.c.hostname = _cstr(self._keep, hostname)
        self.c.domainname = _cstr(self._keep, domainname)
        self.c.nmounts = len(mounts)
        self.c.mounts = <pc_mount *>malloc((len(mounts) or 1) * sizeof(pc_mount))
        if self.c.mounts == NULL:
            raise MemoryError()
        cdef int i
        for i, (source, destination, fstype, flags, propagation, data, _) in enumerate(mounts):
            self.c.mounts[i].source = _cstr(self._keep, source)
            self.c.mounts[i].destination = _cstr(self._keep, destination)
            self.c.mounts[i].fstype = _cstr(self._keep, fstype)
            self.c.mounts[i].flags = flags
            self.c.mounts[i].propagation = propagation
            self.c.mounts[i].data = _cstr(self._keep, data or None)
        self._devices = <pc_device *>malloc((len(devices) or 1) * sizeof(pc_device))
        if self._devices == NULL:
            raise MemoryError()
        for i, (path, mode, major, minor, uid, gid) in enumerate(devices):
            self._devices[i].path = _cstr(self._keep, path)
            self._devices[i].mode = mode
            self._devices[i].major = major
            self._devices[i].minor = minor
            self._devices[i].uid = uid
            self._devices[i].gid = gid
        self.c.devices = self._devices
        self.c.ndevices = len(devices)
        self.c.sysctl_paths = _cstr_list(self._keep, self._arrays, [p for p, _ in sysctl])
        self.c.sysctl_values = _cstr_list(self._keep, self._arrays, [v for _, v in sysctl])
        self.c.nsysctl = len(sysctl)
        self.c.readonly_paths = _cstr_list(self._keep, self._arrays, list(readonly_paths))
        self.c.nreadonly = len(readonly_paths)
        self.c.masked_paths = _cstr_list(self._keep, self._arrays, list(masked_paths))
        self.c.nmasked = len(masked_paths)
        # What an index in a child error refers to, by stage name.
        destinations = tuple(f"{m[6] or f'mounts[{i}]'} {m[1]}" for i, m in enumerate(mounts))
        self.labels = {
            "mount": destinations, "bind_source": destinations,
            "devices": tuple(f"devices[{i}] {d[0]}" for i, d in enumerate(devices)),
            "sysctl": tuple(f"sysctl {p}" for p, _ in sysctl),
            "readonly_paths": tuple(readonly_paths), "masked_paths": tuple(masked_paths),
        }

    def __dealloc__(self):
        free(self.c.mounts)
        free(self._devices)
        for addr in self._arrays:
            free(<void *><Py_ssize_t>addr)


# The join helper (csrc/join_helper.c), built next to this module. Joins exec it from a
# sealed memfd copy made once per process: /proc/<pid>/exe of a joining process is then
# that copy, which no one can write, and the file on disk is read only here.
JOIN_HELPER = os.path.join(os.path.dirname(__file__), "_join_helper")
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
_join_helper_lock = threading.Lock()
_join_helper = None         # (fd, (st_dev, st_ino)): tells a closed and reused fd number


def _memfd_noexec():
    """vm.memfd_noexec 2 (Linux 6.3+): no memfd may be executed on this host."""
    try:
        with open("/proc/sys/vm/memfd_noexec") as f:
            return f.read().strip() == "2"
    except OSError:
        return False


def join_helper_fd():
    """The sealed memfd of the join helper, made on first use (and again when something
    closed ours, e.g. a forked child's closerange)."""
    global _join_helper
    with _join_helper_lock:
        if _join_helper is not None:
            fd, ino = _join_helper
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == ino:
                    return fd
            except OSError:
                pass
            _join_helper = None
        try:
            with open(JOIN_HELPER, "rb") as f:
                image = f.read()
            if _memfd_noexec():
                # The host forbids executing memfds: run the installed file itself, which
                # the container cannot reach (the joining process is non-dumpable).
                fd = os.open(JOIN_HELPER, os.O_RDONLY | os.O_CLOEXEC)
                st = os.fstat(fd)
                _join_helper = (fd, (st.st_dev, st.st_ino))
                return fd
        except OSError as exc:
            raise ContainerSystemError(exc.errno, f"join helper {JOIN_HELPER} (reinstall "
                                       "pycontainer: the build makes it)") from None
        # MFD_EXEC (Linux 6.3+): executable even where vm.memfd_noexec is 1.
        flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        try:
            fd = os.memfd_create("pycontainer-join", flags | 0x10)
        except OSError as exc:
            if exc.errno != errno_codes.EINVAL:
                raise
            fd = os.memfd_create("pycontainer-join", flags)
        try:
            view = memoryview(image)
            while view:
                view = view[os.write(fd, view):]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        except BaseException:
            os.close(fd)
            raise
        st = os.fstat(fd)
        _join_helper = (fd, (st.st_dev, st.st_ino))
        return fd


def spawn(ContainerPlan plan, SecurityPlan security, argv, envp, cwd, unsigned int uid, unsigned int gid, groups,
          stdio, int cgroup_fd=-1, procs_fds=(), int join_pidfd=-1, uint64_t join_ns=0,
          uid_map=None, gid_map=None, deny_setgroups=False, ns_fds=(), int exec_fifo_fd=-1,
          int console_fd=-1, extra_fds=(), int zygote_fd=-1, int zygote_sock=-1):
    """Start a process: a new container's init (join_pidfd == -1) or one joining the
    namespaces of the init behind join_pidfd. Returns (pid, pidfd) once it has exec'd.
    uid_map/gid_map: the new user namespace's maps (when the plan has one).
    ns_fds: (fd, namespace name, label) of existing namespaces a new init joins instead
    of making them (the plan's namespaces leave them out); the caller closes the fds.
    exec_fifo_fd (an O_PATH fd of a fifo): stage the init instead; it returns once the
    init is set up, which then waits until the fifo is opened for reading and read.
    console_fd (a unix socket): the process gets a pty as its terminal and sends the
    master over it. extra_fds: descriptors that become 3, 4, ... in the process.
    Pooled sandboxes (pycontainer.pool, csrc/zygote.c): zygote_fd (a SOCK_SEQPACKET
    socket) parks the new init after the Config's setup, before anything of the process
    (argv, stdio, security are placeholders then); zygote_sock (its other end) hands this
    process to that parked init instead of cloning one, and returns (-1, -1) once it has
    exec'd."""
    cdef list keep = []
    cdef pc_process proc
    cdef pc_target target
    cdef pc_child_error cerr
    cdef pid_t pid = -1
    cdef int pidfd = -1, rc, i
    cdef int ngroups = len(groups), nprocs = len(procs_fds), nns = len(ns_fds)
    cdef int nextra = len(extra_fds)
    cdef gid_t *cgroups_ = <gid_t *>malloc((ngroups or 1) * sizeof(gid_t))
    cdef int *cprocs = <int *>malloc((nprocs or 1) * sizeof(int))
    cdef int *cns_fds = <int *>malloc((nns or 1) * sizeof(int))
    cdef int *cns_types = <int *>malloc((nns or 1) * sizeof(int))
    cdef int *cextra = <int *>malloc((nextra or 1) * sizeof(int))
    cdef char **cargv = NULL
    cdef char **cenvp = NULL
    try:
        if cgroups_ == NULL or cprocs == NULL or cns_fds == NULL or cns_types == NULL or \
                cextra == NULL:
            raise MemoryError()
        if nextra > PC_MAX_EXTRA_FDS:
            raise ValueError(f"at most {PC_MAX_EXTRA_FDS} extra descriptors")
        for i in range(nextra):
            cextra[i] = extra_fds[i]
        for i in range(ngroups):
            cgroups_[i] = groups[i]
        for i in range(nprocs):
            cprocs[i] = procs_fds[i]
        for i in range(nns):
            cns_fds[i] = ns_fds[i][0]
            cns_types[i] = _NAMESPACES[ns_fds[i][1]].clone_flag
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
        proc.console_fd = console_fd
        proc.extra_fds = cextra
        proc.nextra_fds = nextra
        proc.security = &security.s if security is not None else NULL
        target.container = &plan.c
        target.join_pidfd = join_pidfd
        target.join_ns = join_ns
        target.cgroup_fd = cgroup_fd
        target.procs_fds = cprocs
        target.nprocs_fds = nprocs
        target.exec_fifo_fd = exec_fifo_fd
        target.join_helper_fd = join_helper_fd() if join_pidfd >= 0 or zygote_fd >= 0 else -1
        target.uid_map = _cstr(keep, uid_map)
        target.gid_map = _cstr(keep, gid_map)
        target.deny_setgroups = 1 if deny_setgroups else 0
        target.ns_fds = cns_fds
        target.ns_types = cns_types
        target.nns_fds = nns
        target.zygote_fd = zygote_fd
        if zygote_sock >= 0:
            with nogil:
                rc = pc_zygote_start(zygote_sock, &proc, &cerr)
            if rc < 0 and cerr.stage == PC_STAGE_NONE:
                what = "send the process to its parked init"
                if rc == -errno_codes.E2BIG:
                    what = (f"the process's request to its parked init is larger than "
                            f"{PC_ZYGOTE_MAX_REQUEST} bytes or has more than 253 descriptors")
                raise ContainerSystemError(-rc, what, stage="pool_request")
        else:
            with nogil:
                rc = pc_spawn(&target, &proc, &pid, &pidfd, &cerr)
        if rc < 0:
            _raise_spawn_error(plan, security.rlimit_names if security is not None else (),
                               -rc, cerr, argv, cwd,
                               tuple(label for _, _, label in ns_fds))
        return pid, pidfd
    finally:
        free(cgroups_)
        free(cextra)
        free(cprocs)
        free(cns_fds)
        free(cns_types)
        free(cargv)
        free(cenvp)


def raise_child_report(ContainerPlan plan, bytes report, argv0, cwd, rlimit_names):
    """Raise what a staged init reported over its exec fifo after the go (csrc/spawn.c,
    stage_wait): a struct pc_child_error, as spawn() raises it; anything else is EPROTO."""
    cdef pc_child_error cerr
    memset(&cerr, 0, sizeof(cerr))
    cerr.index = -1
    if len(report) == sizeof(pc_child_error):
        cerr.stage, cerr.err, cerr.index = struct.unpack("=iii", report)
    if cerr.err <= 0:
        raise ContainerSystemError(errno_codes.EPROTO, "the staged init sent "
                                   f"{len(report)} bytes instead of its report")
    _raise_spawn_error(plan, tuple(rlimit_names), cerr.err, cerr, [argv0], cwd, ())


cdef _raise_spawn_error(ContainerPlan plan, tuple rlimit_names, int err,
                        pc_child_error cerr, argv, cwd, tuple ns_labels):
    cdef int stage = cerr.stage
    if stage == PC_STAGE_NONE:
        raise ContainerSystemError(err, "clone3")
    name = pc_stage_name(stage).decode()
    if name == "died":
        raise ContainerSystemError(err, _death(cerr.index), stage=name)
    labels = plan.labels.get(name, ())
    if name == "rlimits":
        labels = rlimit_names
    elif name == "setns":
        labels = ns_labels
    what = ""
    if 0 <= cerr.index < len(labels):
        what = labels[cerr.index]
    elif name == "capabilities" and cerr.index >= 0:
        what = f"capability {cerr.index}"
    elif stage == PC_STAGE_EXEC:
        what = argv[0]
    elif stage == PC_STAGE_CWD:
        what = cwd
        if cerr.index == 1 and err == 1:   # EPERM from the getcwd check
            what = (f"{cwd}: the working directory would be outside the container's root "
                    "(a path through a host descriptor?); refused")
    raise ContainerSystemError(err, what, stage=name)


def _death(int how):
    """What PC_STAGE_DIED's index says: how an init died before its program ran."""
    if how >= 256:
        return f"the init exited with status {how - 256} before its program ran"
    if how > 0:
        import signal                       # lazily: the CLI's read path does without
        try:
            name = f"{signal.Signals(how).name} ({signal.strsignal(how)})"
        except ValueError:                  # a real-time signal, or out of range
            name = f"signal {how}"
        return f"the init was killed by {name} before its program ran"
    return "the init died before its program ran"


def unshare_thread(int flags):
    """unshare(2) for the calling thread (os.unshare is Python 3.12+). CLONE_NEWNET is
    allowed in a threaded process and moves only this thread into the new namespace."""
    if unshare(flags) < 0:
        err = errno
        raise OSError(err, os.strerror(err))


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


# --- one pidfd, and the kernel notifications of pycontainer/events.py --------------------

def pidfd_exit_status(int pidfd, bint reap):
    """(exited, status) of the process behind pidfd, without blocking. reap: take the
    status (our child: waitid WEXITED|__WALL); else only look (WNOWAIT), leaving it to its
    reaper. status is the exit code, -signal, or None when it is not known (reaped by
    someone else before Linux 6.15). (False, None) while it runs."""
    cdef int status = PC_STATUS_UNKNOWN, rc
    with nogil:
        rc = pc_pidfd_exit_status(pidfd, 1 if reap else 0, &status)
    if rc < 0:
        raise ContainerSystemError(-rc, "waitid(P_PIDFD)")
    if rc == 0:
        return False, None
    return True, None if status == PC_STATUS_UNKNOWN else status


INOTIFY_MODIFY = IN_MODIFY
INOTIFY_MOVED_TO = IN_MOVED_TO
INOTIFY_DELETE_SELF = IN_DELETE_SELF
INOTIFY_IGNORED = IN_IGNORED
INOTIFY_Q_OVERFLOW = IN_Q_OVERFLOW
INOTIFY_ONLYDIR = IN_ONLYDIR
INOTIFY_DONT_FOLLOW = IN_DONT_FOLLOW


def inotify_open():
    """A close-on-exec, non-blocking inotify descriptor."""
    cdef int rc = pc_inotify_open()
    if rc < 0:
        raise ContainerSystemError(-rc, "inotify_init1")
    return rc


def inotify_watch(int fd, path, uint32_t mask):
    """inotify_add_watch(fd, path, mask): the watch descriptor."""
    cdef list keep = []
    cdef const char *cpath = _cstr(keep, path)
    cdef int rc
    with nogil:
        rc = pc_inotify_watch(fd, cpath, mask)
    if rc < 0:
        raise ContainerSystemError(-rc, f"inotify_add_watch {path}")
    return rc


def inotify_read(int fd):
    """The events queued on fd as [(wd, mask, name)], name '' for a watched file itself;
    [] when none is queued. Call again until [] to drain."""
    cdef pc_inotify_event events[PC_INOTIFY_BATCH]
    cdef int n, i
    with nogil:
        n = pc_inotify_read(fd, events)
    if n < 0:
        raise ContainerSystemError(-n, "read inotify")
    return [(events[i].wd, events[i].mask,
             (<bytes>events[i].name).decode("utf-8", "surrogateescape")) for i in range(n)]

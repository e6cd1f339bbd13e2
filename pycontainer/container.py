"""Container: the libcontainer interface (ID, RunState, Config, Start, Destroy, Processes,
Stats, Pause, Resume).

Every method re-reads state.json (a few microseconds) so that a container destroyed or
started by another process is seen as such; the nonce in it tells this container from a
later one with the same id. Whether init lives and whether the cgroup is frozen is asked
of the kernel. Mutations hold the container's flock; reads take no lock.

Internal protocol: other modules of the package (events.py, the tests) reach a Container's
insides only through `container.internal`, a ContainerInternal: `state_dir`, `cgroups`
(its cgroup manager, cgroups.manager's interface), `record(operation)` (the state record,
re-read; ContainerNotExistError once destroyed) and `is_current(record)` (whether a record
read elsewhere is this container's, not a later one's with the same id). Not public API.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import logging
import os
import select
import signal
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from typing import Any, Optional

from . import _core, events, namespaces, network, overlay
from .config import MOUNT_FLAGS, Config, ProcessConfig, Resources
from .devices import DEFAULT_RULES, DevicePolicy, DeviceRule
from .errors import (ConfigInvalidError, ContainerNotExistError, ContainerNotRunningError,
                     ContainerNotStoppedError, ContainerPausedError, ContainerSystemError,
                     in_context)
from .exits import WATCHER, process_key
from .process import StartedProcess, Stdio
from .security import kernel_last_cap, sysctl_path
from .state import (EXEC_FIFO, RunState, open_init_pidfd, pidns_of,
                    process_start_time, read_state, release_staged, remove_state_dir,
                    write_state)
from .state import remove_entry as _remove
from .stats import ContainerStats, read_host_interfaces, read_interfaces

log = logging.getLogger("pycontainer")

_FREEZER_TO_STATE = {"THAWED": RunState.RUNNING, "FREEZING": RunState.PAUSING,
                     "FROZEN": RunState.PAUSED}


class lock_container:
    """The container's exclusive flock, taken on its state directory itself (a lock file
    would be one more inode to make and remove per container, which costs on a disk-backed
    state root); ContainerNotExistError once the container is destroyed. A class rather
    than a @contextmanager generator: every operation takes it, and the generator machinery
    cost as much as the open, flock and close together. `with` gives the directory's
    descriptor, to work inside it without a path. A symlink planted in its place is not
    followed (the state root is ours and nobody else's to plant in: Factory checks it)."""

    __slots__ = ("_fd",)

    def __init__(self, state_dir, container_id, operation):
        try:
            self._fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW |
                               os.O_CLOEXEC)
        except FileNotFoundError:
            raise ContainerNotExistError("no such container", container_id=container_id,
                                         operation=operation) from None

    def __enter__(self):
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._fd)
            raise
        return self._fd

    def __exit__(self, *exc):
        os.close(self._fd)


def _may_trace(config):
    """Whether the container's processes may hold CAP_SYS_PTRACE (its bounding set:
    file capabilities and set-user-ID programs give no more)."""
    caps = config.capabilities
    return caps is None or "CAP_SYS_PTRACE" in caps.bounding


def _refuse_tracers(pid_ns_fd, path):
    """A new init in a pid namespace not its own is a fork of this process until it
    execs, guarded by the non-dumpable check alone; a process there whose CAP_SYS_PTRACE
    reaches our user namespace (another container's, granted it without a user namespace
    of its own) passes that check and could read our memory, write the init's and keep
    our interpreter as its exe (docs/SECURITY.md). Refused while one is there, unless it
    may do all we may (a privileged container: no boundary to keep)."""
    tracers = namespaces.tracers_in(pid_ns_fd)
    if tracers:
        raise ConfigInvalidError(
            "namespaces.pid", path,
            f"its pid namespace holds a process that may use CAP_SYS_PTRACE on this one "
            f"(pid {tracers[0]}{' and more' if len(tracers) > 1 else ''}): the new init, a "
            "copy of this process until it execs, would be within its reach; give that "
            "container a user namespace of its own or no CAP_SYS_PTRACE")


class _Operation:
    """The frame of one Container operation: `with _Operation(c, "pause") as dir_fd:`
    holds the container's flock (lock_container; lock=False: no lock, dir_fd is None) and
    gives any Exception raised inside back naming the container and the operation
    (errors.in_context). A class with slots, as lock_container, for the start path."""

    __slots__ = ("_id", "_operation", "_lock")

    def __init__(self, container, operation, lock=True):
        self._id = container._id
        self._operation = operation
        # Opening it may raise ContainerNotExistError, which names both already.
        self._lock = lock_container(container._dir, self._id, operation) if lock else None

    def __enter__(self):
        if self._lock is None:
            return None
        try:
            return self._lock.__enter__()
        except Exception as exc:
            raise in_context(exc, self._id, self._operation) from None

    def __exit__(self, exc_type, exc, tb):
        if self._lock is not None:
            self._lock.__exit__()
        if isinstance(exc, Exception):
            raise in_context(exc, self._id, self._operation) from None
        return False


_DERIVED = {}       # id(Config) -> {name: value}; an entry goes with its Config
# What a parked init (a pooled sandbox) is cloned with before its process is known: only
# the Config's setup reads it; its process comes over the pool's socket (_unpark).
_PARKED = ProcessConfig(args=["(parked)"])


def _readable(fd, timeout=0):
    """Whether fd polls readable within timeout seconds (None: wait). poll, not select: a
    process with a pool of sandboxes holds descriptors above select's limit of 1024."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(None if timeout is None else timeout * 1000))


def derived(config, name, make):
    """make(config), made once per Config object (Configs are frozen): containers that
    share a Config share its C forms and device policy, and a create with a Config used
    before builds none of them again."""
    key = id(config)
    cache = _DERIVED.get(key)
    if cache is None:
        cache = _DERIVED[key] = {}
        weakref.finalize(config, _DERIVED.pop, key, None)
    value = cache.get(name)
    if value is None:
        value = cache[name] = make(config)
    return value


def build_plan(config, rootfs=None):
    """The Config in the C form the child reads (shared through derived(), unless the
    container's root is its own: `rootfs`, its writable layer's mount point)."""
    host = config.image_is_host
    rootfs = rootfs or config.rootfs
    # The namespaces the init's clone makes: not those it joins by path, nor the network
    # namespace that network.setup() makes and configures for veths (joined the same way).
    owned = tuple(n for n in config.new_namespaces
                  if not (n == "net" and config.veth_networks))
    mounts = []
    for m in config.mounts:
        flags, propagation, data = m.flags()
        mounts.append((m.source, m.destination, None if m.type == "bind" else m.type,
                       flags, propagation, data, m.label))
    return _core.ContainerPlan(
        namespaces=owned,
        # The host image: / bound recursively (where: csrc/rootfs.c, stage_host_image).
        rootfs_source="/" if host else rootfs,
        rootfs_target=None if host else rootfs,
        host_image=host, readonly_rootfs=host or config.readonly_rootfs,
        default_mounts=config.default_mounts,
        rootfs_propagation=MOUNT_FLAGS[config.rootfs_propagation][1]
        if config.rootfs_propagation else 0,
        hostname=config.hostname, domainname=config.domainname, mounts=mounts,
        devices=[(d.path, d.mode(), d.major, d.minor, d.uid, d.gid) for d in config.devices],
        sysctl=[(sysctl_path(k), v) for k, v in sorted(config.sysctl.items())],
        readonly_paths=config.readonly_paths, masked_paths=config.masked_paths,
        bind_devices="user" in config.namespaces)


def _id_map(mappings):
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def _host_id(mappings, container_id):
    """The host id that `container_id` maps to (-1: unmapped, which chown leaves alone)."""
    for m in mappings:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return -1


def device_policy(config):
    """The device cgroup policy (a devices.DevicePolicy): the Config's rules, or runc's
    default (deny all but the default nodes), plus an allow rule for every device node
    the Config adds."""
    return derived(config, "device_policy", _device_policy)


def _device_policy(config):
    rules = list(DEFAULT_RULES if config.device_rules is None else config.device_rules)
    rules += [DeviceRule(True, "b" if d.type == "b" else "c", d.major, d.minor, "rwm")
              for d in config.devices if d.type != "p"]   # a FIFO is no device
    return DevicePolicy(rules)


def build_security(config, process_rlimits=(), seccomp=True):
    """The per-process hardening in C form; the seccomp profile is compiled (and cached)
    here, never on the start path. seccomp=False: without the filter (a pooled init that
    loaded it when it was parked: pycontainer.pool)."""
    last_cap = kernel_last_cap()
    caps = config.capabilities
    if caps is not None and caps.unsupported(last_cap):
        message = (f"capabilities {caps.unsupported(last_cap)} are unknown to this kernel "
                   f"(last is {last_cap}); skipped")
        log.warning("%s", message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    seccomp, wanted = None, seccomp
    if config.seccomp is not None and wanted:
        from .seccomp import DEFAULT_PROFILE, compile_profile   # lazily: start and exec's
        try:
            seccomp = compile_profile(DEFAULT_PROFILE if config.seccomp == "default"
                                      else config.seccomp)
        except RuntimeError as exc:     # pyseccomp could not load libseccomp (EMFILE...)
            raise ContainerSystemError(errno.ELIBACC, f"libseccomp: {exc}") from None
    rlimits = {r.type: r for r in config.rlimits}
    rlimits.update((r.type, r) for r in process_rlimits)
    return _core.SecurityPlan(
        cap_masks=caps.masks(last_cap) if caps is not None else None, last_cap=last_cap,
        no_new_privs=config.no_new_privileges, seccomp=seccomp,
        rlimits=[r.c_form() for r in rlimits.values()],
        rlimit_names=[f"rlimits {name}" for name in rlimits],
        oom_score_adj=config.oom_score_adj, umask=config.umask, pdeathsig=config.pdeathsig)


def _joining(init_fd, spawn):
    """spawn() a process into the namespaces of the init behind init_fd. The init may exit
    at any moment: then the container has stopped, and the join fails in the kernel
    (setns of an exiting process is ESRCH, a clone into a pid namespace whose init is gone
    ENOMEM); that is ContainerNotRunningError, not a system error."""
    try:
        return spawn()
    except ContainerSystemError as exc:
        # The kernel fails the join while the init exits, before its pidfd reports the
        # exit: for the errors an exit causes, wait for that report (it follows at once;
        # the limit only guards against a live init that caused them).
        wait = 1.0 if exc.errno in (errno.ESRCH, errno.ENOMEM) else 0
        if select.select([init_fd], [], [], wait)[0]:
            raise ContainerNotRunningError(
                f"its init exited as the process joined ({exc.detail})") from None
        raise


def _spawn(process, *args, **kwargs):
    """_core.spawn, with the pty master of a terminal process received over a socketpair
    (the child sends it before it execs or is staged). Returns (pid, pidfd, master)."""
    kwargs["extra_fds"] = process.extra_fds()
    if not process.terminal:
        return (*_core.spawn(*args, **kwargs), None)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        pid, pidfd = _core.spawn(*args, console_fd=theirs.fileno(), **kwargs)
        try:
            ours.setblocking(False)
            _, fds, _, _ = socket.recv_fds(ours, 1, 1)
            if len(fds) != 1:
                raise ContainerSystemError(errno.EPROTO, "terminal: no pty master received")
        except BaseException:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            WATCHER.watch(pidfd)          # reaped there
            raise
        return pid, pidfd, fds[0]


def _feed_and_wait(pidfd, exits, stdin_w, err_r, data, timeout):
    """run_hook's tail: write `data` to the process's stdin, collect its stderr, wait for
    its status; SIGKILL it (status -9) when `timeout` passes first. Closes both pipes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    out, view = bytearray(), memoryview(bytes(data))
    os.set_blocking(stdin_w, False)
    readers, writers = [err_r], [stdin_w] if view else []
    if not view:
        os.close(stdin_w)
    try:
        while readers or writers:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                break
            r, w, _ = select.select(readers, writers, [], left)
            if w:
                try:
                    view = view[os.write(stdin_w, view):]
                except BrokenPipeError:        # it did not read it all: its business
                    view = view[:0]
                if not view:
                    writers.clear()
                    os.close(stdin_w)
            if r:
                chunk = os.read(err_r, 65536)
                if chunk:
                    out += chunk
                else:
                    readers.clear()
    finally:
        if writers:
            os.close(stdin_w)
        os.close(err_r)
    return exits.get(), bytes(out)


class ContainerInternal:
    """The internal protocol of a Container (see the module docstring)."""

    __slots__ = ("_c",)

    def __init__(self, container):
        self._c = container

    @property
    def state_dir(self):
        return self._c._dir

    @property
    def cgroups(self):
        return self._c._cgroups

    def record(self, operation):
        return self._c._record(operation)

    def is_current(self, record):
        return record.nonce == self._c._nonce

    # Pooled sandboxes (pycontainer.pool): an init parked before its process.
    def park(self, sock_fd, security=None):
        """Start the init parked on the socket sock_fd (csrc/zygote.c): (pid, pidfd).
        `security`: what the init loads before it parks (csrc/spawn.c, zygote_park: the
        seccomp filter of a SecurityPlan, or nothing when None)."""
        with _Operation(self._c, "pool"):
            pid, pidfd, _ = self._c._start_locked(_PARKED, False, (None,) * 3,
                                                   zygote_fd=sock_fd, security=security)
            return pid, pidfd

    def hold_parked(self, sock, pidfd, mnt_fd=None, preloaded=False, retire=None):
        """This handle's start() hands its process to the parked init over `sock` (the
        other end of park's socket); `pidfd` (the init's, owned from here) is what start
        returns to be reaped. mnt_fd (owned from here, or None): a descriptor of the
        init's mount namespace, which keeps the namespace (and the teardown of its mounts)
        alive past the init's exit until the exit watcher has delivered the status, or
        destroy. preloaded: the init loaded the Config's seccomp filter when it parked,
        so the handover leaves it out. retire(cgroup manager, record, state dir): what
        is left of destroy once the processes are gone, done by the pool (True;
        pycontainer.pool, _Shared.retire), or False: destroy does it here."""
        c = self._c
        c._parked = (sock, pidfd, preloaded)
        c._mnt_hold = mnt_fd
        c._retire = retire
        # The init is the pool's child, this pidfd its: state checks need not find it
        # through /proc (open_init_pidfd).
        record = c._state_cache[1]
        if record is not None and record.init_pid is not None:
            with c._pidfds_lock:
                if (record.init_pid, record.init_start_time) not in c._pidfds:
                    c._pidfds[(record.init_pid, record.init_start_time)] = os.dup(pidfd)

    def disown(self):
        """This handle no longer answers for the init it started (pycontainer.pool: a
        sandbox's handle, once Factory.adopt has named the container): dropping it is no
        reason for a warning."""
        self._c._started_here = False


class Container:
    def __init__(self, state_dir, record, config, written=None, manager=None):
        """`written`: the bytes of state.json that `record` was read from or written as;
        `manager`: the container's cgroup manager, made or checked by the Factory (the
        record's cgroup paths are not trusted as written: cgroups.load_manager)."""
        self._dir = state_dir
        self._id = record.id
        self._nonce = record.nonce
        self._config = config
        self._plan = derived(config, "plan", build_plan) if config.overlay_lower is None \
            else build_plan(config, overlay.merged_dir(state_dir))
        if written is not None:
            # A new container (Factory.create): its seccomp profile is compiled now, so
            # a profile libseccomp refuses fails the create. A loaded one compiles it at
            # its first start or exec (_security), not for `state` or `kill`.
            self._security
        # Joins enter all of the init's namespaces, those it joined by path included.
        self._ns_flags = derived(config, "ns_flags",
                                 lambda c: namespaces.clone_flags(c.namespaces))
        self._userns = {}
        if "user" in config.namespaces:
            self._userns = dict(uid_map=_id_map(config.uid_mappings),
                                gid_map=_id_map(config.gid_mappings),
                                # Unprivileged, gid_map may only be written after this.
                                deny_setgroups=os.geteuid() != 0)
        if manager is None:
            raise TypeError("Container: the Factory makes containers (manager is missing)")
        self._cgroups = manager
        self._pidfds = {}                 # (pid, start time) -> pidfd of an init we looked at
        self._state_cache = [written, record]   # state.json's bytes and their record
        self._pidfds_lock = threading.Lock()
        self._started_here = False       # an init started through this handle (__del__)
        self._parked = None               # (socket, pidfd, preloaded) of a parked init
        self._mnt_hold = None             # its mount namespace's fd (hold_parked)
        self._retire = None               # the pool's end of destroy (hold_parked)

    def __repr__(self) -> str:
        try:
            state = self.run_state()
            pid = f" init={self.init_pid()}" if state != RunState.CREATED else ""
        except Exception as exc:        # destroyed, or the state cannot be read
            state, pid = type(exc).__name__, ""
        return f"<Container {self._id!r} {state}{pid} at {self._dir}>"

    # `with factory.create(...) as c:` destroys the container at the end of the block.
    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    @property
    def id(self) -> str:
        return self._id

    @property
    def config(self) -> Config:
        return self._config

    @property
    def internal(self):
        """The internal protocol for pycontainer.events and the tests (not public API)."""
        return ContainerInternal(self)

    # -- reading state ---------------------------------------------------------------

    def _record(self, operation, mutable=False):
        """The state record, re-read (a few µs) so changes by other processes are seen.
        Unchanged bytes give the record parsed last time: callers that change the record
        ask for a mutable one, a copy, so the shared one never drifts from the file."""
        try:
            record = read_state(self._dir, self._id, self._state_cache)
        except ContainerNotExistError:
            self._close_pidfds()        # destroyed by another handle: its init is gone
            raise ContainerNotExistError("no such container", container_id=self._id,
                                         operation=operation) from None
        if record.nonce != self._nonce:
            self._close_pidfds()
            raise ContainerNotExistError("destroyed (a new container has its id)",
                                         container_id=self._id, operation=operation)
        if mutable:
            # What the mutating operations change: fields they assign, and `extra`'s keys.
            record = record.replace(extra=dict(record.extra))
        return record

    def _write(self, record):
        """write_state, and `record` becomes what _record returns while the file holds
        these bytes: the next operation does not parse what this one wrote."""
        self._state_cache[:] = [write_state(self._dir, record), record]

    def _checked_read(self, value):
        """`value`, read from the cgroups without the lock, unless a destroy removed them
        meanwhile: then the read saw empty or missing files, not the container."""
        if self._cgroups.removed():
            raise ContainerSystemError(errno.ENOENT, "the cgroups were removed during the read")
        return value

    def _read_failed(self, exc, operation):
        """The error a lock-free read should raise. A read racing destroy finds cgroup files
        gone (ENOENT) or their cgroup already removed (ENODEV). Waiting for the lock lets
        such a destroy finish; then it is ContainerNotExistError, as if destroy came first."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ENODEV):
            try:
                with lock_container(self._dir, self._id, operation):
                    self._record(operation)
            except ContainerNotExistError as gone:
                self._close_pidfds()
                return gone
            except OSError:
                pass
        return in_context(exc, self._id, operation)

    def _init_pidfd(self, record):
        """A pidfd of the live init, or None when there is none (never started, exited,
        or its pid now belongs to another process)."""
        if record.init_pid is None:
            return None
        key = (record.init_pid, record.init_start_time)
        with self._pidfds_lock:
            fd = self._pidfds.get(key)
            if fd is None:
                fd = open_init_pidfd(record)
                if fd is None:
                    return None
                self._pidfds[key] = fd
        # A pidfd polls readable once its process has exited (zombies included).
        if _readable(fd):
            return None
        return fd

    def _kept_state(self):
        """The run state from the cached record without re-reading state.json, when that
        record cannot be stale; else None (the caller re-reads). It cannot be while the
        freezer files this handle keeps open since its first pause still read (their
        cgroup is removed only by a destroy; a container made again under the id has
        new ones) and the record's init, not staged, is alive: a start that records a new
        init needs it dead, and only exec() changes a staged record."""
        record = self._state_cache[1]
        if record is None or record.init_pid is None or record.extra.get("staged") or \
                record.extra.get("parked"):
            return None
        fd = self._pidfds.get((record.init_pid, record.init_start_time))
        if fd is None:
            return None
        frozen = self._cgroups.kept_freezer_state()
        try:
            if frozen is None or _readable(fd):
                return None
        except (OSError, ValueError):       # closed meanwhile by another thread's destroy
            return None
        return _FREEZER_TO_STATE[frozen]

    def _state(self, record):
        if record.init_pid is None:
            return RunState.CREATED
        if self._init_pidfd(record) is None:
            return RunState.STOPPED
        if record.extra.get("staged") or record.extra.get("parked"):
            return RunState.CREATED         # set up, waiting for exec() or its process
        return _FREEZER_TO_STATE[self._cgroups.freezer_state()]

    def init_pid(self) -> Optional[int]:
        """The pid of the container's live init (in the caller's pid namespace), or None
        when it has none (never started, or exited)."""
        record = self._record("init_pid")
        return record.init_pid if self._init_pidfd(record) is not None else None

    def extra(self) -> dict[str, Any]:
        """A copy of the dict the container was created with (Factory.create(extra=))."""
        # Kept under "user": the rest of the record's extra is the library's own.
        return dict(self._record("extra").extra.get("user") or {})

    def run_state(self) -> RunState:
        """CREATED, RUNNING, PAUSING, PAUSED or STOPPED, as the kernel reports it now."""
        state = self._kept_state()
        return self._state(self._record("run_state")) if state is None else state

    # -- starting processes ----------------------------------------------------------

    @property
    def _security(self):
        """The Config's SecurityPlan (build_security), compiled once per Config."""
        return derived(self._config, "security", build_security)

    def start(self, process: ProcessConfig, reap: bool = True) -> StartedProcess:
        """Start a process: the container's init (pid 1 of new namespaces) when none runs,
        else one that joins the init's namespaces and cgroup. Returns (pid, exits): pid in
        the caller's pid namespace, exits a queue.Queue that yields the exit code, or
        -signum when a signal killed the process.

        reap=False (what a runtime CLI that exits at once needs, as `runc exec -d`): exits
        is None and the status is left to whoever reaps the process: the caller, or once
        the caller has exited, the subreaper it is re-parented to (conmon, a shim)."""
        begun = time.monotonic()
        spawned = self._start(process, "start")
        # A pooled init just handed its process: its mount namespace goes once the exit
        # watcher has delivered the status (see hold_parked), not on the way to it.
        release = None
        if self._mnt_hold is not None and self._parked is None:
            release, self._mnt_hold = self._mnt_hold, None
        started = self._started(process, *spawned, reap, release)
        log.debug("start %s: pid %d %s in %.2f ms", self._id, started.pid,
                  list(process.args[:3]), (time.monotonic() - begun) * 1e3)
        return started

    @staticmethod
    def _started(process, pid, pidfd, console, stdio, reap, release=None):
        if not reap:
            os.close(pidfd)
            if release is not None:
                os.close(release)
            return StartedProcess(pid, None, console, stdio=stdio, process=process)
        exits = WATCHER.watch(pidfd, release)
        return StartedProcess(pid, exits, console, stdio=stdio, process=process,
                              signal=functools.partial(WATCHER.signal, pidfd, exits))

    async def start_async(self, process: ProcessConfig) -> StartedProcess:
        """start() for asyncio (any loop with add_reader: the default one, uvloop):
        returns (pid, exit_future); awaiting exit_future gives the exit code, or -signum.
        The status is reaped from the event loop when the process's pidfd polls readable:
        no thread. A cancelled wait cancels the future but the process is still reaped;
        processes of a loop closed before they exit go to the exit watcher. The spawn
        itself runs in the loop's thread (about a millisecond, as asyncio's own
        subprocesses). See pycontainer.aio."""
        from . import aio      # lazily: asyncio takes longer to import than all of pycontainer
        return await aio.start_async(self, process)

    async def stats_async(self) -> ContainerStats:
        """stats() without blocking the running loop (pycontainer.aio.off_loop)."""
        from . import aio
        import asyncio
        return await aio.off_loop(asyncio.get_running_loop(), self.stats)

    async def destroy_async(self) -> None:
        """destroy() without blocking the running loop: it runs to the end even if the
        awaiting task is cancelled."""
        from . import aio
        import asyncio
        await aio.off_loop(asyncio.get_running_loop(), self.destroy)

    def stage(self, process: ProcessConfig, reap: bool = True) -> StartedProcess:
        """Set up the container's init and leave it blocked just before exec (runc's
        `create`): run_state() is CREATED with its pid, and exec() lets it run. Failures
        it can see before waiting (a missing program, a mount, a capability) raise here.
        Returns (pid, exits) as start() does. The staged init is a fork of the caller, not
        a CLONE_VM child, so it may outlive the calling process. reap: as for start()."""
        return self._started(process, *self._start(process, "stage"), reap)

    def start_with_pidfd(self, process: ProcessConfig, pipes: bool = False) -> tuple[Any, ...]:
        """start() for a caller that reaps the process itself (pycontainer.aio's event
        loop, or another one): returns (pid, pidfd, pty master or None). The caller owns
        the pidfd and the master: it must reap the process through the pidfd (waitid
        P_PIDFD, or hand it to exits.WATCHER.watch) and close both. pipes=True: a fourth
        item, the process.Stdio of the pipes made for subprocess.PIPE (None when none)."""
        pid, pidfd, console, stdio = self._start(process, "start")
        if pipes:
            return pid, pidfd, console, stdio
        if stdio is not None:
            stdio.close()
            raise ConfigInvalidError("process", process, "subprocess.PIPE needs pipes=True",
                                     container_id=self._id, operation="start")
        return pid, pidfd, console

    def _start(self, process, operation):
        """(pid, pidfd, pty master, process.Stdio or None) of a start as `operation`
        ("start" or "stage")."""
        if not isinstance(process, ProcessConfig):
            raise ConfigInvalidError("process", process, "expected a pycontainer.ProcessConfig",
                                     container_id=self._id, operation=operation)
        stdio = None
        try:
            with _Operation(self, operation):
                if any(process.pipes()):
                    stdio = Stdio(process)
                return (*self._start_locked(process, operation == "stage",
                                            stdio.child if stdio else (None,) * 3), stdio)
        except BaseException:
            if stdio is not None:
                stdio.close()
            raise
        finally:
            if stdio is not None:
                stdio.close_child()

    def run_hook(self, args: Sequence[str], env: Sequence[str] = (), input: bytes = b"",
                 timeout: Optional[float] = None, mount: bool = True
                 ) -> tuple[Optional[int], bytes]:
        """Run a program in the namespaces of the container's init (running, or staged:
        set up, before exec) and in its cgroup, as the OCI container hooks run:
        mount=True (startContainer) in the container's mount namespace too, so `args[0]`
        resolves in the container; mount=False (createContainer) in the caller's, so it
        resolves on the host. A program from the container (mount=True) is the container's
        code: it gets the Config's capabilities, no_new_privs, seccomp filter and rlimits,
        as runc runs startContainer hooks from the init. A host program (mount=False,
        named by whoever made the container) runs privileged, as runc's createContainer
        hooks do. `input` goes to its stdin, stdout is discarded. Waits for it;
        after `timeout` seconds it is killed. Returns (status, stderr): status as the
        exits queues give it (-9 after a timeout), stderr as bytes."""
        with _Operation(self, "hook", lock=False):
            with lock_container(self._dir, self._id, "hook"):
                record = self._record("hook")
                if mount and record.extra.get("parked") and _may_trace(self._config):
                    # A parked init holds every capability of its user namespace (the
                    # host's, without one) and no filter yet, and its memory is that
                    # namespace's: a program of the container with CAP_SYS_PTRACE could
                    # write its code and run as it. Nothing of the container runs beside it.
                    raise ContainerNotRunningError(
                        "its init is parked in a pool and the Config grants CAP_SYS_PTRACE, "
                        "with which a hook could take it over: start() it first")
                init_fd = self._init_pidfd(record)
                if init_fd is None:
                    raise ContainerNotRunningError("the container has no init")
                mask = self._ns_flags & ~(0 if mount else namespaces.BY_NAME["mount"].clone_flag)
                theirs, ours = [], []       # closed after the spawn / on its failure
                try:
                    stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(stdin_r)
                    ours.append(stdin_w)
                    err_r, err_w = os.pipe2(os.O_CLOEXEC)
                    theirs.append(err_w)
                    ours.append(err_r)
                    cgroup_fd, procs_fds = self._cgroups.placement()
                    theirs += [cgroup_fd, *procs_fds]
                    security = self._security if mount else None
                    _, pidfd = _joining(init_fd, lambda: _core.spawn(
                        self._plan, security, list(args), list(env), "/", 0, 0, [],
                        (stdin_r, -1, err_w), cgroup_fd=cgroup_fd, procs_fds=procs_fds,
                        join_pidfd=init_fd, join_ns=mask))
                except BaseException:
                    theirs += ours
                    raise
                finally:
                    for fd in theirs:
                        if fd >= 0:
                            os.close(fd)
            # Our own reference for the timeout's SIGKILL: the watcher closes its pidfd once it
            # has reaped the process, and that number may then name another process.
            try:
                kill_fd = os.dup(pidfd)
            except OSError:
                WATCHER.watch(pidfd)
                os.close(stdin_w)
                os.close(err_r)
                raise
            exits = WATCHER.watch(pidfd)
            try:
                return _feed_and_wait(kill_fd, exits, stdin_w, err_r, input, timeout)
            finally:
                os.close(kill_fd)

    def exec(self) -> None:
        """Let the staged init run (runc's `start`): it opens the exec fifo, we read its
        byte, and it execs. run_state() is RUNNING from here. If it fails before its
        program runs, this raises what start() would have (its stage and errno), and the
        container has stopped."""
        with _Operation(self, "exec"):
            record = self._record("exec", mutable=True)
            state = self._state(record)
            if not record.extra.get("staged") or state != RunState.CREATED:
                if state == RunState.STOPPED:
                    raise ContainerNotRunningError("the container has stopped")
                if state == RunState.CREATED:
                    raise ContainerNotRunningError("no init is staged: stage() one first")
                raise ContainerNotStoppedError(f"the container is {state} already")
            init_fd = self._init_pidfd(record)
            if init_fd is None:                 # it died since _state looked
                raise ContainerNotRunningError("the container has stopped")
            report = release_staged(self._dir, init_fd)
            os.unlink(os.path.join(self._dir, EXEC_FIFO))
            staged = record.extra.pop("staged")
            self._write(record)
            if report:
                select.select([init_fd], [], [])   # it exits right after its report
                labels = staged if isinstance(staged, dict) else {}
                _core.raise_child_report(self._plan, report, labels.get("argv0", "?"),
                                         labels.get("cwd"), labels.get("rlimits", ()))

    def _start_locked(self, process, staged, made, zygote_fd=-1, security=None):
        record = self._record("start", mutable=True)
        state = self._state(record)
        if state in (RunState.PAUSED, RunState.PAUSING):
            raise ContainerPausedError(f"the container is {state}", container_id=self._id,
                                       operation="start")
        if record.extra.get("staged") and state == RunState.CREATED:
            raise ContainerNotRunningError("its init is staged: exec() it first")
        if staged and state == RunState.RUNNING:
            raise ContainerNotStoppedError("an init runs already")
        # Names are looked up in the tree the container sees: an image's, under its layer.
        uid, gid = process.uid_gid(self._config.overlay_lower or self._config.rootfs)
        stdio = process.stdio_fds(made)
        parked = record.extra.get("parked") and state == RunState.CREATED
        if zygote_fd >= 0:
            pass                    # the pool's: what the parked init loads (park)
        elif parked and self._parked is not None and self._parked[2]:
            # Its filter is loaded: the handover leaves it out (ContainerInternal.park).
            security = (build_security(self._config, process.rlimits, seccomp=False)
                        if process.rlimits else
                        derived(self._config, "security_preloaded",
                                lambda c: build_security(c, seccomp=False)))
        else:
            security = (build_security(self._config, process.rlimits) if process.rlimits
                        else self._security)
        args = (security, list(process.args), list(process.env if process.env is not None
                                         else self._config.env),
                process.cwd or self._config.cwd, uid, gid, list(process.additional_gids), stdio)
        if state != RunState.RUNNING and self._cgroups.freezer_state() != "THAWED":
            # The init died while the container was paused: a new one cloned into the
            # frozen cgroup would never run (and we would wait for its exec forever).
            self._cgroups.thaw()
        if parked:
            return self._unpark(process, record, args)
        if state == RunState.RUNNING and self._cgroups.pids_full():
            raise ContainerSystemError(errno.EAGAIN, "the pids limit is reached")
        cgroup_fd, procs_fds = self._cgroups.placement()
        ns_fds = []                       # (fd, namespace, label) a new init joins
        veths = []
        fifo_fd = -1
        try:
            if state == RunState.RUNNING:
                return self._join(process, record, args, cgroup_fd, procs_fds)
            self._open_namespaces(ns_fds)
            if self._config.veth_networks:
                # A stopped init's veths die with its namespace, but asynchronously: a
                # fixed host name would still be taken.
                network.teardown(record.extra.get("veths"))
                ns_fd, veths = network.setup(self._config.networks)
                ns_fds.append((ns_fd, "net", "networks"))
            if staged:
                fifo_fd = self._make_exec_fifo()
            pid, pidfd, console = _spawn(process, self._plan, *args, cgroup_fd=cgroup_fd,
                                         procs_fds=procs_fds, ns_fds=ns_fds,
                                         exec_fifo_fd=fifo_fd, zygote_fd=zygote_fd,
                                         **self._userns)
        except BaseException:
            with contextlib.suppress(Exception):   # else the veths go with the namespace
                network.teardown(veths)
            if fifo_fd >= 0:
                _remove(os.path.join(self._dir, EXEC_FIFO))
            raise
        finally:
            for fd in (cgroup_fd, *procs_fds):
                if fd >= 0:
                    os.close(fd)
            for fd, _, _ in ns_fds:       # the init holds its namespaces itself now
                os.close(fd)
            if fifo_fd >= 0:
                os.close(fifo_fd)
        # Before anyone may reap it (and /proc/<pid> goes): who exactly it is.
        record.init_pid = pid
        record.init_start_time = process_start_time(pid)
        record.extra["init_pidns"] = pidns_of(pid)
        if "pid" not in self._config.new_namespaces:
            record.extra["init_pidns_shared"] = True      # not pid 1 of a namespace of its own
        # Lets an event stream that sees this init only after it was reaped find its status.
        record.extra["init_key"] = process_key(pidfd)
        if staged:   # what exec() names when the init reports a failure after the go
            staged = {"argv0": process.args[0], "cwd": args[3],
                      "rlimits": list(security.rlimit_names if security is not None else ())}
        for key, value in (("staged", staged), ("veths", veths), ("parked", zygote_fd >= 0)):
            if value:
                record.extra[key] = value
            else:
                record.extra.pop(key, None)
        try:
            self._write(record)
            self._started_here = True
        except BaseException:
            # Unrecorded, the init would be unreachable: take it down again, and let the
            # exit watcher reap it.
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            WATCHER.watch(pidfd)
            with contextlib.suppress(Exception):
                network.teardown(veths)
            if console is not None:
                os.close(console)
            raise
        return pid, pidfd, console

    def _unpark(self, process, record, args):
        """start() of a pooled container: its parked init takes the process over the socket
        Pool.create gave this handle, and execs it (csrc/zygote.c)."""
        if self._parked is None:
            raise ContainerNotRunningError("its init is parked in a pool: only the handle "
                                           "Pool.create returned can start it")
        if self._init_pidfd(record) is None:
            raise ContainerNotRunningError("its parked init has exited")
        (sock, pidfd, _), self._parked = self._parked, None
        try:
            with sock:
                _, _, console = _spawn(process, self._plan, *args, zygote_sock=sock.fileno())
        except BaseException:
            # As after an unpooled start that failed: no process, CREATED, startable.
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)   # exiting after its report
            _readable(pidfd, None)
            _core.pidfd_exit_status(pidfd, True)
            os.close(pidfd)
            self._release_mnt_hold()
            record.init_pid = record.init_start_time = None
            for key in ("parked", "init_pidns", "init_key"):
                record.extra.pop(key, None)
            self._write(record)
            raise
        del record.extra["parked"]
        self._write(record)
        return record.init_pid, pidfd, console

    def _join(self, process, record, args, cgroup_fd, procs_fds):
        """_spawn a process into the running init's namespaces (see _joining)."""
        init_fd = self._init_pidfd(record)
        if init_fd is None:
            raise ContainerNotRunningError("its init exited as the process was started")
        return _joining(init_fd, lambda: _spawn(process, self._plan, *args, cgroup_fd=cgroup_fd,
                                                procs_fds=procs_fds, join_pidfd=init_fd,
                                                join_ns=self._ns_flags))

    def _make_exec_fifo(self):
        """A fresh fifo in the state dir and an O_PATH descriptor of it for the init, which
        reopens it through /proc/self/fd after pivot_root: no path of the host is needed in
        the container, and the 0700 state dir is not traversed. Owned by whoever the
        container's root is on the host (a user namespace maps it), who must open it."""
        path = os.path.join(self._dir, EXEC_FIFO)
        _remove(path)
        os.mkfifo(path, 0o622)
        try:
            if self._config.uid_mappings:
                os.chown(path, _host_id(self._config.uid_mappings, 0),
                         _host_id(self._config.gid_mappings, 0))
            return os.open(path, os.O_PATH | os.O_CLOEXEC)
        except BaseException:
            _remove(path)
            raise

    def _open_namespaces(self, ns_fds):
        """Open the namespace files the Config names into ns_fds (the caller closes them,
        also when one fails to open). Checked at create, but they may be gone since."""
        for name, path in self._config.namespace_paths.items():
            what = f"namespaces.{name} {path}"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise ContainerSystemError(exc.errno, what) from None
            ns_fds.append((fd, name, what))
            if name == "pid":
                _refuse_tracers(fd, path)

    # -- the rest of the interface ---------------------------------------------------

    def processes(self) -> list[int]:
        """Pids (in the caller's pid namespace) of every process in the container."""
        record = self._record("processes")
        try:
            return self._checked_read(self._cgroups.pids(lambda: self._live_init(record)))
        except Exception as exc:
            raise self._read_failed(exc, "processes") from None

    def _live_init(self, record):
        """(pid, pidfd) of the live init, or None: what a manager without cgroups finds
        the container's processes through."""
        fd = self._init_pidfd(record)
        return None if fd is None else (record.init_pid, fd)

    def stats(self) -> ContainerStats:
        record = self._record("stats")
        try:
            interfaces = []
            if "net" in self._config.namespaces and self._init_pidfd(record) is not None:
                try:
                    interfaces = read_interfaces(record.init_pid)
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ESRCH):
                        raise
                    # The init exited since we looked: its network namespace went with it.
            # The host ends of its veths, counted from the container's side (libcontainer's
            # numbers); a veth that is gone (its init exited) is left out.
            host_interfaces = read_host_interfaces(record.extra.get("veths"))
            cgroup_stats = self._checked_read(self._cgroups.stats())
            return ContainerStats(cgroup_stats=cgroup_stats, interfaces=interfaces,
                                  host_interfaces=host_interfaces)
        except Exception as exc:
            raise self._read_failed(exc, "stats") from None

    def signal(self, sig: int, pid: Optional[int] = None, all: bool = False) -> None:
        """Send `sig` to the init (default), to `pid` (a pid in the caller's namespace that
        must belong to this container), or to every process of the container (all=True).
        Sent through pidfds, so a pid that exits and is reused meanwhile is never hit."""
        record = self._record("signal")
        with _Operation(self, "signal", lock=False):
            if all:
                targets = self.processes()
            elif pid is not None:
                if pid not in self.processes():
                    raise ContainerSystemError(errno.ESRCH, f"pid {pid} is not in the container")
                targets = [pid]
            else:
                fd = self._init_pidfd(record)
                if fd is None:
                    raise ContainerNotRunningError("the container has no running init")
                signal.pidfd_send_signal(fd, sig)
                return
            for target in targets:
                try:
                    fd = os.pidfd_open(target)
                except ProcessLookupError:
                    continue                  # exited meanwhile
                try:
                    # Opened after the membership check: make sure it is still the same one.
                    if target in self.processes():
                        signal.pidfd_send_signal(fd, sig)
                except ProcessLookupError:
                    pass
                finally:
                    os.close(fd)

    def set_resources(self, resources: Resources) -> None:
        """Change the cgroup limits of the container, running or not (libcontainer's Set).
        The stored config follows. Invalid values are refused before anything is written."""
        if not isinstance(resources, Resources):
            raise ConfigInvalidError("resources", resources, "expected a pycontainer.Resources",
                                     container_id=self._id, operation="set_resources")
        with _Operation(self, "set_resources"):
            record = self._record("set_resources", mutable=True)
            self._cgroups.set_resources(resources)
            config = dataclasses.replace(self._config, resources=resources)
            record.config = config.to_dict()         # the one place the limits are stored
            self._write(record)
            self._config = config

    def pause(self) -> None:
        """Ask the kernel to freeze every process and return: run_state() says PAUSING
        until the kernel reports the cgroup frozen, then PAUSED. No-op when paused."""
        with _Operation(self, "pause"):
            state = self._kept_state()
            if state is None:
                state = self._state(self._record("pause"))
            if state in (RunState.PAUSED, RunState.PAUSING):
                return
            if state != RunState.RUNNING:
                raise ContainerNotRunningError(f"the container is {state}")
            self._cgroups.freeze()

    def resume(self) -> None:
        """Thaw a paused (or pausing) container. No-op when running."""
        with _Operation(self, "resume"):
            # Kept freezer files that still read are this container's (_kept_state).
            if self._cgroups.kept_freezer_state(thawed_only=True) not in (None, "THAWED"):
                self._cgroups.thaw()
                return
            record = self._record("resume")
            if self._cgroups.freezer_state() != "THAWED":
                self._cgroups.thaw()
                return
            state = self._state(record)
            if state != RunState.RUNNING:
                raise ContainerNotRunningError(f"the container is {state}")

    # -- events (pycontainer/events.py, pycontainer/aio.py) ----------------------------

    def notify_oom(self) -> Any:
        """A queue.Queue (pycontainer.events.OomQueue) that gets an item each time the
        kernel reports an OOM kill in the container: the number of OOM kills seen so far
        (1, 2, ...). None ends it, once the container's cgroup is removed (destroy); its
        close() ends it earlier. One thread waits on the kernel's notification (cgroup v1:
        an eventfd on memory.oom_control; v2: memory.events); every descriptor is closed
        when it ends or the queue is garbage-collected. ENOTSUP without a memory cgroup."""
        return events.notify_oom(self)

    def events(self, interval: float = 5.0, stats: bool = True) -> Any:
        """An iterator of pycontainer.events.Event, as `runc events`: "stats" (a
        ContainerStats every `interval` seconds; stats=False leaves them out), "oom",
        "paused", "resumed", "exit" (the init exited; data is its status when known) and
        "destroyed" (the last one; every descriptor is closed with it). One thread waits on
        the kernel's notifications and queues the events as they happen; next() blocks
        until one is queued. close() it (or use it as a context manager) to end it early;
        an abandoned stream ends when it is garbage-collected."""
        return events.EventStream(self, interval, stats)

    def events_async(self, interval: float = 5.0, stats: bool = True) -> Any:
        """events() as an async iterator (`async for ev in c.events_async(1.0)`), driven by
        the running loop's add_reader and call_later: no thread. aclose() or `async with`
        ends it early; dropping it does too."""
        from . import aio      # lazily, as in start_async
        return aio.AsyncEventStream(self, interval, stats)

    def destroy(self) -> None:
        """Kill every process, wait for them, remove the cgroups and the state. Idempotent."""
        begun = time.monotonic()
        self._started_here = False
        try:
            with _Operation(self, "destroy") as dir_fd:
                try:
                    record = self._record("destroy")
                except ContainerNotExistError:
                    return
                if self._retire is not None and self._retired(record):
                    return
                self._cgroups.destroy(lambda: self._live_init(record))
                self._release_mnt_hold()
                self._remove_veths(record)
                if self._config.overlay_lower is not None:
                    overlay.teardown(dir_fd)
                remove_state_dir(dir_fd, self._dir)
                log.debug("destroy %s in %.2f ms", self._id, (time.monotonic() - begun) * 1e3)
        except ContainerNotExistError:
            pass
        finally:
            self._close_pidfds()

    def _retired(self, record):
        """destroy() of a container its pool made (hold_parked), which takes its last
        steps off the caller's path: once every process is gone here, the pool moves the
        state directory into its root (one rename) and its thread removes the empty
        cgroups and the directory (pycontainer.pool). An overlay's mount goes here first,
        as always: not handed to the pool. False: destroy goes on as for any container."""
        retire, self._retire = self._retire, None
        if self._config.overlay_lower is not None:
            return False
        # With a pid namespace of its own whose init has exited, every process of the
        # container is gone: the kernel kills the others and waits for them before it
        # reports the init's exit. Else they are killed here; either way the pool's
        # destroy of the cgroups kills whatever they might still hold.
        if "pid" not in self._config.new_namespaces or self._init_pidfd(record) is not None:
            try:
                self._cgroups.kill_all()
            except ContainerSystemError:
                return False      # (its cgroups missing?) the full destroy says what
        self._release_mnt_hold()
        self._remove_veths(record)
        if not retire(self._cgroups, record, self._dir):
            return False
        log.debug("destroy %s: its pool removes its cgroups and state", self._id)
        return True

    @staticmethod
    def _remove_veths(record):
        """Delete the veths now, not when the kernel gets to the dead namespace."""
        try:
            network.teardown(record.extra.get("veths"))
        except ContainerSystemError as exc:
            # A process without pyroute2 can still destroy: with every process gone the
            # kernel deletes the veths with their namespace, only later.
            if exc.errno != errno.ENOPKG:
                raise

    def _close_pidfds(self):
        """Close what this handle keeps open: init pidfds and the freezer files. (Never the
        state directory, whose lock is taken per call: an open descriptor would keep its
        inode, and so the inotify IN_DELETE_SELF that tells event streams of a destroy,
        alive.)"""
        with self._pidfds_lock:
            for fd in self._pidfds.values():
                os.close(fd)
            self._pidfds.clear()
            if self._parked is not None:
                # The parked init exits once its socket closes; the watcher reaps it.
                (sock, pidfd, _), self._parked = self._parked, None
                sock.close()
                WATCHER.watch(pidfd)
        self._release_mnt_hold()
        self._cgroups.close()

    def _release_mnt_hold(self):
        fd, self._mnt_hold = self._mnt_hold, None
        if fd is not None:
            os.close(fd)

    def __del__(self):
        with contextlib.suppress(Exception):
            if self._started_here and self._runs_still():
                warnings.warn(f"container {self._id!r} still runs and its handle was dropped: "
                              "destroy() it, or use `with factory.create(...) as c:` (load() "
                              "it again to reach it)", ResourceWarning, source=self)
        with contextlib.suppress(Exception):
            self._close_pidfds()

    def _runs_still(self):
        """Whether the init this handle started lives (from the cached record: no lock,
        no state file read, as fits a finalizer)."""
        record = self._state_cache[1]
        return record is not None and record.init_pid is not None and \
            process_start_time(record.init_pid) == record.init_start_time

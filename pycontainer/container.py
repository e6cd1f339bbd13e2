"""Container: the libcontainer interface (ID, RunState, Config, Start, Destroy, Processes,
Stats, Pause, Resume).

Every method re-reads state.json (a few microseconds) so that a container destroyed or
started by another process is seen as such; the nonce in it tells this container from a
later one with the same id. Whether init lives and whether the cgroup is frozen is asked
of the kernel. Mutations hold the container's flock; reads take no lock.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import select
import shutil
import signal
import threading
import warnings

from . import _core, cgroups
from .config import ProcessConfig
from .errors import (ConfigInvalidError, ContainerNotExistError, ContainerNotRunningError,
                     ContainerPausedError, ContainerSystemError, in_context)
from .exits import WATCHER
# At import: finding libseccomp needs descriptors, which may have run out at create.
from .seccomp import DEFAULT_PROFILE, compile_profile
from .security import kernel_last_cap, sysctl_path
from .state import (LOCK_FILE, STATE_FILE, RunState, process_start_time, read_state,
                    write_state)
from .stats import ContainerStats, read_interfaces

_FREEZER_TO_STATE = {"THAWED": RunState.RUNNING, "FREEZING": RunState.PAUSING,
                     "FROZEN": RunState.PAUSED}


@contextlib.contextmanager
def lock_container(state_dir, container_id, operation):
    """The container's exclusive flock; ContainerNotExistError once it is destroyed."""
    try:
        fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerNotExistError("no such container", container_id=container_id,
                                     operation=operation) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_state_dir(state_dir):
    """Remove a state directory and whatever a killed writer left in it (temp files),
    without opening a directory when the known names suffice: this runs on error paths,
    where descriptors may be what ran out."""
    for name in (STATE_FILE, LOCK_FILE):
        _remove(os.path.join(state_dir, name))
    try:
        os.rmdir(state_dir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        for name in os.listdir(state_dir):          # .state.json.<pid>.tmp of a killed writer
            _remove(os.path.join(state_dir, name))
        os.rmdir(state_dir)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:                       # a state.json someone made a directory
        shutil.rmtree(path)


def build_plan(config, state_dir):
    """The Config in the C form the child reads, made once per Container object."""
    host = config.rootfs is None
    mounts = []
    for m in config.mounts:
        flags, propagation, data = m.flags()
        mounts.append((m.source, m.destination, None if m.type == "bind" else m.type,
                       flags, propagation, data))
    return _core.ContainerPlan(
        namespaces=config.namespaces,
        # The host image: / bound recursively (where: csrc/rootfs.c, stage_host_image).
        rootfs_source="/" if host else config.rootfs,
        rootfs_target=None if host else config.rootfs,
        host_image=host, readonly_rootfs=host or config.readonly_rootfs,
        hostname=config.hostname, domainname=config.domainname, mounts=mounts,
        devices=[(d.path, d.mode(), d.major, d.minor, d.uid, d.gid) for d in config.devices],
        sysctl=[(sysctl_path(k), v) for k, v in sorted(config.sysctl.items())],
        readonly_paths=config.readonly_paths, masked_paths=config.masked_paths,
        bind_devices="user" in config.namespaces)


def _id_map(mappings):
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def device_policy(config):
    """The device cgroup rules: the Config's, or runc's default (deny all but the default
    nodes), plus an allow rule for every device node the Config adds."""
    from .devices import DEFAULT_RULES, DeviceRule
    rules = list(DEFAULT_RULES if config.device_rules is None else config.device_rules)
    rules += [DeviceRule(True, "b" if d.type == "b" else "c", d.major, d.minor, "rwm")
              for d in config.devices]
    return rules


def build_security(config, process_rlimits=()):
    """The per-process hardening in C form; the seccomp profile is compiled (and cached)
    here, never on the start path."""
    last_cap = kernel_last_cap()
    caps = config.capabilities
    if caps is not None and caps.unsupported(last_cap):
        warnings.warn(f"capabilities {caps.unsupported(last_cap)} are unknown to this kernel "
                      f"(last is {last_cap}); skipped", RuntimeWarning, stacklevel=3)
    seccomp = None
    if config.seccomp is not None:
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


def _pidns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class Container:
    def __init__(self, state_dir, record, config):
        self._dir = state_dir
        self._id = record.id
        self._nonce = record.nonce
        self._config = config
        self._plan = build_plan(config, state_dir)
        self._security = build_security(config)
        self._ns_flags = _core.namespace_flags(config.namespaces)
        self._userns = {}
        if "user" in config.namespaces:
            self._userns = dict(uid_map=_id_map(config.uid_mappings),
                                gid_map=_id_map(config.gid_mappings),
                                # Unprivileged, gid_map may only be written after this.
                                deny_setgroups=os.geteuid() != 0)
        self._cgroups = cgroups.load_manager(record.cgroups)
        self._pidfds = {}                 # (pid, start time) -> pidfd of an init we looked at
        self._pidfds_lock = threading.Lock()

    def __repr__(self):
        return f"<Container {self._id!r} at {self._dir}>"

    @property
    def id(self):
        return self._id

    @property
    def config(self):
        return self._config

    # -- reading state ---------------------------------------------------------------

    def _record(self, operation):
        try:
            record = read_state(self._dir, self._id)
        except ContainerNotExistError:
            self._close_pidfds()        # destroyed by another handle: its init is gone
            raise ContainerNotExistError("no such container", container_id=self._id,
                                         operation=operation) from None
        if record.nonce != self._nonce:
            self._close_pidfds()
            raise ContainerNotExistError("destroyed (a new container has its id)",
                                         container_id=self._id, operation=operation)
        return record

    def _checked_read(self, value, operation):
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
                try:
                    fd = os.pidfd_open(record.init_pid)
                except ProcessLookupError:
                    return None
                # Checked after opening: the pidfd now pins whichever process has the pid.
                # Start times are in clock ticks: a pid reused within one tick needs the
                # pid namespace to tell it apart.
                if process_start_time(record.init_pid) != record.init_start_time or \
                        record.extra.get("init_pidns", _pidns(record.init_pid)) != \
                        _pidns(record.init_pid):
                    os.close(fd)
                    return None
                self._pidfds[key] = fd
        # A pidfd polls readable once its process has exited (zombies included).
        if select.select([fd], [], [], 0)[0]:
            return None
        return fd

    def _state(self, record):
        if record.init_pid is None:
            return RunState.CREATED
        if self._init_pidfd(record) is None:
            return RunState.STOPPED
        return _FREEZER_TO_STATE[self._cgroups.freezer_state()]

    def init_pid(self):
        """The pid of the container's live init (in the caller's pid namespace), or None
        when it has none (never started, or exited)."""
        record = self._record("init_pid")
        return record.init_pid if self._init_pidfd(record) is not None else None

    def extra(self):
        """A copy of the dict the container was created with (Factory.create(extra=))."""
        # Kept under "user": the rest of the record's extra is the library's own.
        return dict(self._record("extra").extra.get("user") or {})

    def run_state(self):
        """CREATED, RUNNING, PAUSING, PAUSED or STOPPED, as the kernel reports it now."""
        return self._state(self._record("run_state"))

    # -- starting processes ----------------------------------------------------------

    def start(self, process):
        """Start a process: the container's init (pid 1 of new namespaces) when none runs,
        else one that joins the init's namespaces and cgroup. Returns (pid, exits): pid in
        the caller's pid namespace, exits a queue.Queue that yields the exit code, or
        -signum when a signal killed the process."""
        if not isinstance(process, ProcessConfig):
            raise ConfigInvalidError("process", process, "expected a pycontainer.ProcessConfig",
                                     container_id=self._id, operation="start")
        try:
            with lock_container(self._dir, self._id, "start"):
                return self._start_locked(process)
        except Exception as exc:
            raise in_context(exc, self._id, "start") from None

    def _start_locked(self, process):
        record = self._record("start")
        state = self._state(record)
        if state in (RunState.PAUSED, RunState.PAUSING):
            raise ContainerPausedError(f"the container is {state}", container_id=self._id,
                                       operation="start")
        uid, gid = process.uid_gid()
        stdio = process.stdio_fds()
        security = (build_security(self._config, process.rlimits) if process.rlimits
                    else self._security)
        args = (security, list(process.args), list(process.env if process.env is not None
                                         else self._config.env),
                process.cwd or self._config.cwd, uid, gid, list(process.additional_gids), stdio)
        if state != RunState.RUNNING and self._cgroups.freezer_state() != "THAWED":
            # The init died while the container was paused: a new one cloned into the
            # frozen cgroup would never run (and we would wait for its exec forever).
            self._cgroups.thaw()
        if state == RunState.RUNNING and self._cgroups.pids_full():
            raise ContainerSystemError(errno.EAGAIN, "the pids limit is reached")
        cgroup_fd, procs_fds = self._cgroups.placement()
        try:
            if state == RunState.RUNNING:
                init_fd = self._init_pidfd(record)
                pid, pidfd = _core.spawn(self._plan, *args, cgroup_fd=cgroup_fd,
                                         procs_fds=procs_fds, join_pidfd=init_fd,
                                         join_ns=self._ns_flags)
                return pid, WATCHER.watch(pidfd)
            pid, pidfd = _core.spawn(self._plan, *args, cgroup_fd=cgroup_fd,
                                     procs_fds=procs_fds, **self._userns)
        finally:
            for fd in (cgroup_fd, *procs_fds):
                if fd >= 0:
                    os.close(fd)
        # Before the watcher may reap it (and /proc/<pid> goes): who exactly it is.
        record.init_pid = pid
        record.init_start_time = process_start_time(pid)
        record.extra["init_pidns"] = _pidns(pid)
        exits = WATCHER.watch(pidfd)
        try:
            write_state(self._dir, record)
        except BaseException:
            # Unrecorded, the init would be unreachable: take it down again.
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            raise
        return pid, exits

    # -- the rest of the interface ---------------------------------------------------

    def processes(self):
        """Pids (in the caller's pid namespace) of every process in the container."""
        record = self._record("processes")
        try:
            if not self._cgroups.available:
                return self._pid_namespace_members(record)
            return self._checked_read(self._cgroups.pids(), "processes")
        except Exception as exc:
            raise self._read_failed(exc, "processes") from None

    def _pid_namespace_members(self, record):
        """Without cgroups: the processes in the init's pid namespace."""
        if self._init_pidfd(record) is None:
            return []
        try:
            ns = os.readlink(f"/proc/{record.init_pid}/ns/pid")
        except OSError:
            return []
        members = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.readlink(f"/proc/{name}/ns/pid") == ns:
                        members.append(int(name))
                except OSError:
                    pass
        return sorted(members)

    def stats(self):
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
            cgroup_stats = self._checked_read(self._cgroups.stats(), "stats")
            return ContainerStats(cgroup_stats=cgroup_stats, interfaces=interfaces)
        except Exception as exc:
            raise self._read_failed(exc, "stats") from None

    def signal(self, sig, pid=None, all=False):
        """Send `sig` to the init (default), to `pid` (a pid in the caller's namespace that
        must belong to this container), or to every process of the container (all=True).
        Sent through pidfds, so a pid that exits and is reused meanwhile is never hit."""
        record = self._record("signal")
        try:
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
        except Exception as exc:
            raise in_context(exc, self._id, "signal") from None

    def set_resources(self, resources):
        """Change the cgroup limits of the container, running or not (libcontainer's Set).
        The stored config follows. Invalid values are refused before anything is written."""
        from .config import Resources
        if not isinstance(resources, Resources):
            raise ConfigInvalidError("resources", resources, "expected a pycontainer.Resources",
                                     container_id=self._id, operation="set_resources")
        try:
            with lock_container(self._dir, self._id, "set_resources"):
                record = self._record("set_resources")
                self._cgroups.set_resources(resources)
                config = dataclasses.replace(self._config, resources=resources)
                record.config = config.to_dict()
                record.cgroups = self._cgroups.to_record()
                write_state(self._dir, record)
                self._config = config
        except Exception as exc:
            raise in_context(exc, self._id, "set_resources") from None

    def pause(self):
        """Ask the kernel to freeze every process and return: run_state() says PAUSING
        until the kernel reports the cgroup frozen, then PAUSED. No-op when paused."""
        try:
            with lock_container(self._dir, self._id, "pause"):
                state = self._state(self._record("pause"))
                if state in (RunState.PAUSED, RunState.PAUSING):
                    return
                if state != RunState.RUNNING:
                    raise ContainerNotRunningError(f"the container is {state}")
                self._cgroups.freeze()
        except Exception as exc:
            raise in_context(exc, self._id, "pause") from None

    def resume(self):
        """Thaw a paused (or pausing) container. No-op when running."""
        try:
            with lock_container(self._dir, self._id, "resume"):
                record = self._record("resume")
                if self._cgroups.freezer_state() != "THAWED":
                    self._cgroups.thaw()
                    return
                state = self._state(record)
                if state != RunState.RUNNING:
                    raise ContainerNotRunningError(f"the container is {state}")
        except Exception as exc:
            raise in_context(exc, self._id, "resume") from None

    def destroy(self):
        """Kill every process, wait for them, remove the cgroups and the state. Idempotent."""
        try:
            with lock_container(self._dir, self._id, "destroy"):
                try:
                    record = self._record("destroy")
                except ContainerNotExistError:
                    return
                if not self._cgroups.available:
                    self._kill_init(record)
                self._cgroups.destroy()
                remove_state_dir(self._dir)
        except ContainerNotExistError:
            pass
        except Exception as exc:
            raise in_context(exc, self._id, "destroy") from None
        finally:
            self._close_pidfds()

    def _kill_init(self, record, timeout=10.0):
        """Without cgroups: SIGKILL the init (the kernel then kills its pid namespace) and
        wait until it has exited."""
        fd = self._init_pidfd(record)
        if fd is None:
            return
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        if not select.select([fd], [], [], timeout)[0]:
            raise ContainerSystemError(errno.ETIMEDOUT, f"init {record.init_pid} did not exit")

    def _close_pidfds(self):
        with self._pidfds_lock:
            for fd in self._pidfds.values():
                os.close(fd)
            self._pidfds.clear()

    def __del__(self):
        with contextlib.suppress(Exception):
            self._close_pidfds()

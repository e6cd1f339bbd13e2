"""One container's cgroups behind one interface: CgroupManager, and NullManager for a
container without cgroups. Callers (Container, events, the Factory) never name a cgroup
version: the manager picks the dir and the per-version module (v1.py, v2.py) for each job.

A CgroupManager holds an optional cgroup v2 directory and a dict of cgroup v1 directories
(controller -> dir); which exist depends on the host's layout (host.py):

- pure v2: only the v2 dir; it carries placement, limits, stats, freeze and kill.
- pure v1: only v1 dirs; the freezer dir carries placement, freeze and kill (freeze +
  SIGKILL + thaw).
- hybrid: v1 dirs carry limits and stats; the controller-less v2 dir carries placement
  (clone3's CLONE_INTO_CGROUP), freeze (cgroup.freeze) and kill (cgroup.kill).

A limit or statistic goes to the v1 dir of its controller when the host binds that
controller to v1, else to the v2 dir.

The interface, answered by both managers (NullManager doing the null thing: no limits, no
freezer, no statistics; processes found and killed through the init's pid namespace):

    create(device_rules)  set_resources(resources)  placement()  pids_full()
    pids(init)  kill_all(init)  destroy(init)  removed()  dirs()  to_record()  close()
    freeze()  thaw()  freezer_state()  kept_freezer_state()  frozen()  freezer_watch()
    stats()  oom_kill_count()  oom_watch()

`init` is a function giving the container's live init as (pid, pidfd), or None; only a
manager without cgroups calls it.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import threading
from typing import NamedTuple

from ..errors import ContainerSystemError, system_error_from
from ..stats import CgroupStats, CpuStats
from . import v1, v2
from .fs import FREEZING, FROZEN, THAWED, list_procs, parse_int, read_text, remove_cgroup, \
    write_lines
from .host import KNOBS, check_dirs, container_dirs, scoped_name, split_path


class FreezerWatch(NamedTuple):
    """How a change of frozen() is told: `path` is a file the kernel modifies at each
    change (inotify IN_MODIFY); None when nothing notifies (read frozen() at intervals)."""
    path: str | None


def new_manager(container_id, parent=None, resources=None, scope=None, path=None):
    """The manager of a new container's cgroups (where: host.container_dirs; `path`: the
    Config's exact cgroup_path). Touches no file: create() makes them and applies
    `resources`."""
    name, unified, v1_dirs = container_dirs(container_id, parent, scope, path)
    return CgroupManager(container_id, name, unified, v1_dirs, resources,
                         default_parent=parent is None and path is None,
                         exact=path is not None)


def load_manager(record, container_id=None, parent=None, scope=None, resources=None,
                 path=None):
    """The manager described by CgroupManager.to_record(). Touches no file.

    With `container_id` (every load of a stored container), the record is not trusted: it
    must name the cgroups new_manager(container_id, parent, scope=scope, path=path) would
    have made, each hierarchy's dir being <that container's parent there>/<our name for
    the id> (with `path`: <the path's parent there>/<its last component>), and nothing
    else (see host.check_dir). `parent`, `scope` and `path` are the caller's (the Config's
    cgroup_parent and cgroup_path, the Factory's scope), never the record's. Without it
    the caller vouches for the paths (tests of fake trees). `resources`: the container's
    limits, as its Config holds them (the record does not repeat them; a "resources" key
    that records of earlier versions carry is ignored)."""
    try:
        if not isinstance(record, dict):
            raise ValueError("not an object")
        if record.get("none"):
            if container_id is not None and (os.geteuid() == 0 or
                                             record.get("id") != container_id):
                # Only an unprivileged create makes a container without cgroups.
                raise ValueError("a container without cgroups")
            return NullManager(record.get("id"))
        if record.get("version") != 1:
            raise ValueError("unknown version")
        unified, v1_dirs = record.get("unified"), dict(record.get("v1") or {})
        default_parent = bool(record.get("default_parent"))
        exact = bool(record.get("exact"))
        if container_id is not None:
            if record.get("id") != container_id:
                raise ValueError("the id is not the container's")
            if exact != (path is not None):
                raise ValueError("made at an exact cgroup path" if exact else
                                 "not made at the config's exact cgroup path")
            if path is not None:
                parent, name = split_path(path)
            else:
                name = scoped_name(container_id, scope)
            if record.get("name") != name:
                raise ValueError(f"the name is not {name!r}")
            check_dirs(unified, v1_dirs, name, parent)
            default_parent = parent is None
        return CgroupManager(record["id"], record["name"], unified, v1_dirs, resources,
                             default_parent=default_parent, exact=exact)
    except RecursionError:
        raise ContainerSystemError(errno.EINVAL, "bad cgroup record: nested too deeply") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ContainerSystemError(errno.EINVAL, f"bad cgroup record: {str(exc)[:300]}") from None


_prepared = set()     # `pycontainer` parents this process has prepared (_prepare_parents)


class CgroupManager:
    """One container's cgroups: an optional v2 dir (`unified`) and v1 dirs by controller.
    Co-mounted v1 controllers (cpu,cpuacct) map to the same dir."""

    def __init__(self, container_id, name, unified, v1_dirs, resources=None,
                 default_parent=False, exact=False):
        self.container_id = container_id
        self.name = name
        self.unified = unified
        self.v1 = dict(v1_dirs)
        self.resources = resources
        # True when the parents are the `pycontainer` dirs this package owns, which
        # create() may prepare (cpuset values, subtree_control) even if they pre-exist.
        self.default_parent = default_parent
        # True at an exact path (Config.cgroup_path), which another container or program
        # may hold: create() refuses dirs that exist, and after a failed create() destroy()
        # leaves alone what this manager did not make.
        self.exact = exact
        self._failed_create = False
        self._freezer_fds = None
        # Guards the kept freezer descriptors: a thread closing them (the container was
        # found gone) must not free a number another is reading or writing through.
        self._fds_guard = threading.Lock()

    def __repr__(self):
        return f"CgroupManager({self.container_id!r}, unified={self.unified!r}, v1={self.v1!r})"

    def to_record(self):
        record = {"version": 1, "id": self.container_id, "name": self.name,
                  "default_parent": self.default_parent, "unified": self.unified,
                  "v1": dict(self.v1)}
        if self.exact:
            record["exact"] = True
        return record

    # -- which dir does what --

    def dirs(self):
        """Every container dir, v2 first; co-mounted v1 controllers counted once."""
        dirs = [self.unified] if self.unified else []
        for d in self.v1.values():
            if d not in dirs:
                dirs.append(d)
        return dirs

    def _placement_dir(self):
        """Where the container's processes are counted: the v2 dir, else the v1 freezer dir
        (the one kill and freeze use), else any v1 dir."""
        if self.unified:
            return self.unified
        return self.v1.get("freezer") or self.dirs()[0]

    def removed(self):
        """Whether destroy has begun removing the dirs. It removes them in dirs() order,
        so while the first is there, every read made before this call saw all of them."""
        return not os.path.isdir(self.dirs()[0])

    def _err(self, exc, operation):
        return system_error_from(exc, container_id=self.container_id, operation=operation)

    # -- lifecycle --

    def create(self, device_rules=None):
        """mkdir every dir (and missing parents), prepare parents, apply resources and the
        device policy (a devices.DevicePolicy or DeviceRules; None: leave devices alone).
        On any failure every dir this call made is removed again. At an exact path, a dir
        that exists already is refused (EBUSY) before any is made: it is another
        container's or program's."""
        made = []
        try:
            if self.exact:
                self._refuse_existing()
            for path in self.dirs():
                try:
                    os.mkdir(path, 0o755)
                except FileNotFoundError:           # the first container below a parent
                    _make_parents(os.path.dirname(path), made)
                    try:
                        os.mkdir(path, 0o755)
                    except OSError as exc:
                        raise ContainerSystemError(exc.errno, f"mkdir {path}") from None
                except FileExistsError:
                    if self.exact:              # made by someone else since the check
                        raise self._busy(path) from None
                    raise ContainerSystemError(errno.EEXIST, f"mkdir {path}") from None
                except OSError as exc:
                    raise ContainerSystemError(exc.errno, f"mkdir {path}") from None
                made.append(path)
            self._prepare_parents(made)
            self._apply(self.resources)
            if device_rules is not None:
                self._apply_devices(device_rules)
        except OSError as exc:              # ContainerSystemError is one too
            for path in reversed(made):
                try:
                    os.rmdir(path)
                except OSError:
                    pass      # a parent another container started using meanwhile stays
            self._failed_create = self.exact
            raise self._err(exc, "create cgroups") from None

    def existing(self):
        """The container's dirs that exist now."""
        return [d for d in self.dirs() if os.path.isdir(d)]

    def _busy(self, path):
        return ContainerSystemError(errno.EBUSY, f"cgroup {path} exists already (a container's "
                                    "cgroup path must be a new cgroup: pycontainer does not "
                                    "take over cgroups it did not make)")

    def _refuse_existing(self):
        taken = self.existing()
        if taken:
            raise self._busy(taken[0])

    def _prepare_parents(self, made):
        """New v2 parents must delegate controllers to their children (cgroup.subtree_control),
        and new v1 cpuset dirs start with empty cpus/mems, which refuse every task (ENOSPC):
        copy the parent's values. Only dirs this call made and our own `pycontainer` parent
        are touched, top-down so each copies from a prepared parent."""
        if (self.default_parent and len(made) == len(self.dirs()) and
                all(os.path.dirname(d) in _prepared for d in made)):
            return          # only the container's dirs are new, below parents done before
        def ours(path):
            parent = os.path.dirname(path)
            chain = [d for d in made if d != path and _is_ancestor(d, path)]
            # Our `pycontainer` parent is prepared once per process; a parent that was
            # removed and made again is in `made`.
            if self.default_parent and parent not in chain and parent not in _prepared:
                chain.append(parent)
            return sorted(chain, key=len)

        if self.unified:
            # On a hybrid host the cgroup2 has no controllers, so nothing is enabled.
            for d in ours(self.unified):
                v2.enable_controllers(d)
        cpuset = self.v1.get("cpuset")
        if cpuset:
            v1.forget_cloning(made)   # made again: its clone_children is off once more
            for d in ours(cpuset):
                v1.fill_cpuset(d)
            parent = os.path.dirname(cpuset)
            if not (self.default_parent and v1.cpuset_inherited(parent)):
                v1.fill_cpuset(cpuset)
        if self.default_parent:
            _prepared.update(os.path.dirname(d) for d in self.dirs())

    def set_resources(self, resources):
        """Change the limits of a live container (same writers as create)."""
        try:
            self._apply(resources)
        except ContainerSystemError as exc:
            raise self._err(exc, "set resources") from None
        self.resources = resources

    def _apply(self, resources):
        if resources is None:
            return
        for ctl, knobs in KNOBS.items():
            if all(getattr(resources, k) in (None, ()) for k in knobs):
                continue
            if ctl in self.v1:
                v1.WRITERS[ctl](self.v1[ctl], resources)
            elif self.unified:
                v2.WRITERS[ctl](self.unified, resources)
            else:
                knob = next(k for k in knobs if getattr(resources, k) not in (None, ()))
                raise ContainerSystemError(errno.ENOTSUP,
                                           f"{knob}: no '{ctl}' cgroup controller is mounted")

    def _apply_devices(self, policy):
        """The device policy (a devices.DevicePolicy, or DeviceRules), in every place the
        kernel checks it: the v1 devices controller, and an eBPF device program on the v2
        dir (pure v2 has only that; on a hybrid host both apply and both must allow)."""
        from .. import devices
        if not isinstance(policy, devices.DevicePolicy):
            policy = devices.DevicePolicy(policy)
        if "devices" in self.v1:
            write_lines(self.v1["devices"], policy.v1_writes)
        if self.unified:
            # The program is loaded (and verified) once per process and only attached
            # here, so having it on a hybrid host too costs one bpf() call.
            try:
                fd = os.open(self.unified, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                raise ContainerSystemError(exc.errno, f"open {self.unified}") from None
            try:
                policy.attach(fd)
            finally:
                os.close(fd)

    def placement(self):
        """(v2 dir fd for CLONE_INTO_CGROUP or -1, [cgroup.procs fds of every v1 dir]).
        The caller closes them all; on failure this closes what it opened."""
        v2_fd, fds, path = -1, [], None
        try:
            if self.unified:
                path = self.unified
                v2_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            for d in self.dirs():
                if d != self.unified:
                    path = os.path.join(d, "cgroup.procs")
                    fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
        except OSError as exc:
            for fd in fds + ([v2_fd] if v2_fd >= 0 else []):
                os.close(fd)
            raise ContainerSystemError(exc.errno, f"open {path}",
                                       container_id=self.container_id,
                                       operation="cgroup placement") from None
        return v2_fd, fds

    def pids_full(self):
        """Whether a v1 pids limit is reached. A process joins v1 cgroups by writing to
        cgroup.procs, which the pids controller never refuses (only forks are counted
        against pids.max); with v2, CLONE_INTO_CGROUP is a fork in the cgroup and fails
        by itself (EAGAIN)."""
        if "pids" not in self.v1 or self.resources is None or self.resources.pids_limit in (None, -1):
            return False
        d = self.v1["pids"]
        limit = parse_int(read_text(os.path.join(d, "pids.max")))
        return parse_int(read_text(os.path.join(d, "pids.current"))) >= limit

    def pids(self, init=None):
        """Sorted pids of the container's cgroup and any cgroups below it."""
        try:
            return sorted(list_procs(self._placement_dir()))
        except ContainerSystemError as exc:
            raise self._err(exc, "list processes") from None

    # -- freezer --

    def _freezer(self):
        """(module, dir) that freezes this container."""
        if self.unified:
            return v2, self.unified
        if "freezer" in self.v1:
            return v1, self.v1["freezer"]
        raise ContainerSystemError(errno.ENOTSUP, "no cgroup freezer: neither cgroup2 nor a v1 "
                                                  "freezer hierarchy is mounted",
                                   container_id=self.container_id, operation="freeze")

    def freeze(self):
        """Ask the kernel to freeze and return at once; freezer_state() says FREEZING
        until every task stopped (both v1 and v2 writes return before that).
        The freezer files stay open from here (see _kept_freezer)."""
        self._freezer_write(b"1", b"FROZEN", "freeze")

    def thaw(self):
        self._freezer_write(b"0", b"THAWED", "thaw")

    def _kept_freezer(self):
        """(control fd, v2 cgroup.events fd or -1), opened at the first freeze and kept
        until close() or destroy(): opening a cgroup file costs more than the freeze, and
        a pause + resume cycle touches them four times. Containers never paused hold none."""
        if self._freezer_fds is None:
            mod, d = self._freezer()
            path = os.path.join(d, "cgroup.freeze" if mod is v2 else "freezer.state")
            try:
                ctl = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                raise ContainerSystemError(exc.errno, f"open {path}") from None
            events = -1
            if mod is v2:
                try:
                    events = os.open(os.path.join(d, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    os.close(ctl)
                    raise ContainerSystemError(exc.errno, f"open {d}/cgroup.events") from None
            self._freezer_fds = (ctl, events)
        return self._freezer_fds

    def _freezer_write(self, v2_value, v1_value, operation):
        try:
            with self._fds_guard:
                ctl, events = self._kept_freezer()
                value = v2_value if events >= 0 else v1_value
                try:
                    os.pwrite(ctl, value, 0)
                except OSError as exc:
                    raise ContainerSystemError(exc.errno, f"write {value.decode()!r} to the "
                                               "freezer") from None
        except ContainerSystemError as exc:
            raise self._err(exc, operation) from None

    def close(self):
        """Close the kept freezer files (a later pause opens them again)."""
        with self._fds_guard:
            fds, self._freezer_fds = self._freezer_fds, None
            for fd in fds or ():
                if fd >= 0:
                    os.close(fd)

    def freezer_watch(self):
        """How to follow frozen() (a FreezerWatch); None without a freezer. v2's
        cgroup.events is modified when 'frozen' changes; v1's freezer.state tells nobody."""
        try:
            mod, d = self._freezer()
        except ContainerSystemError:
            return None
        return FreezerWatch(os.path.join(d, "cgroup.events") if mod is v2 else None)

    def frozen(self):
        """Whether the kernel reports the container frozen (v2: cgroup.events' 'frozen',
        which a parent's freeze sets too; v1: freezer.state FROZEN); None while a v1 freeze
        is under way (FREEZING): not settled either way."""
        try:
            mod, d = self._freezer()
            if mod is v2:
                return v2.frozen(d)
            state = v1.freezer_state(d)
        except ContainerSystemError as exc:
            raise self._err(exc, "freezer state") from None
        return None if state == FREEZING else state == FROZEN

    def kept_freezer_state(self, thawed_only=False):
        """freezer_state() through the descriptors kept since a pause, without opening
        anything: None when there are none, or when their cgroup was removed (ENODEV: a
        destroy, maybe a new container under the same path since), so that the caller
        asks again the slow way. thawed_only: THAWED or not is all the caller needs, and
        "not" comes back as FREEZING after one read."""
        with self._fds_guard:
            fds = self._freezer_fds
            if fds is None:
                return None
            ctl, events = fds
            try:
                value = os.pread(ctl, 64, 0)
                if events < 0:
                    return value.decode().strip()
                if value.strip() == b"0":
                    return THAWED
                if thawed_only:
                    return FREEZING
                return v2.freezer_state_of(value, os.pread(events, 256, 0))
            except OSError:
                return None

    def freezer_state(self):
        try:
            with self._fds_guard:
                if self._freezer_fds is not None:
                    ctl, events = self._freezer_fds
                    try:
                        if events < 0:
                            return os.pread(ctl, 64, 0).decode().strip()
                        return v2.freezer_state_of(os.pread(ctl, 64, 0),
                                                   os.pread(events, 256, 0))
                    except OSError as exc:
                        raise ContainerSystemError(exc.errno, "read the freezer state") from None
            mod, d = self._freezer()
            return mod.freezer_state(d)
        except ContainerSystemError as exc:
            raise self._err(exc, "freezer state") from None

    # -- kill and destroy --

    def kill_all(self, init=None, timeout=10.0):
        """SIGKILL every process and wait until the cgroup is empty."""
        try:
            if self.unified:
                v2.kill_all(self.unified, timeout)
            else:
                v1.kill_all(self._placement_dir(), self.v1.get("freezer"), timeout)
        except ContainerSystemError as exc:
            raise self._err(exc, "kill") from None

    def destroy(self, init=None):
        """Kill everything, then rmdir every container dir. Idempotent; works on a
        half-created manager. The shared parents stay. After a failed create() at an exact
        path, nothing: create() removed what it made, and the rest is not the container's."""
        self.close()
        if self._failed_create:
            return
        if os.path.isdir(self._placement_dir()):
            self.kill_all()
        try:
            for d in self.dirs():
                remove_cgroup(d)
        except ContainerSystemError as exc:
            raise self._err(exc, "destroy cgroups") from None

    # -- statistics --

    def _source(self, v1_controller):
        """(module, dir) that reports statistics of a controller, or (None, None)."""
        if v1_controller in self.v1:
            return v1, self.v1[v1_controller]
        if self.unified:
            return v2, self.unified
        return None, None

    def stats(self):
        out = CgroupStats(cpu_stats=CpuStats())
        try:
            mod, d = self._source("cpuacct")
            if mod:
                out.cpu_stats.cpu_usage = mod.cpu_usage(d)
            mod, d = self._source("cpu")
            if mod:
                out.cpu_stats.throttling_data = mod.throttling(d)
            mod, d = self._source("memory")
            if mod:
                out.memory_stats = mod.memory(d)
            mod, d = self._source("pids")
            if mod:
                out.pids_stats = mod.pids_stats(d)
            mod, d = self._source("blkio")
            if mod:
                out.blkio_stats = mod.blkio(d)
        except ContainerSystemError as exc:
            raise self._err(exc, "stats") from None
        return out

    def oom_watch(self):
        """A watch of the container's OOM kills (v1.OomWatch or v2.OomWatch: `fd`, a
        descriptor to wait on, or `path`, a file to watch for IN_MODIFY; update() gives the
        kills since the last call and whether the cgroup is gone; recheck_at(); close()),
        or None without a memory controller (a hybrid host's cgroup2 has no
        memory.events). The caller closes it."""
        mod, d = self._source("memory")
        try:
            if mod is v1:
                return v1.OomWatch(d)
            if mod is v2 and os.path.exists(os.path.join(d, "memory.events")):
                return v2.OomWatch(d)
        except ContainerSystemError as exc:
            raise self._err(exc, "watch OOM kills") from None
        return None

    def oom_kill_count(self):
        mod, d = self._source("memory")
        if not mod:
            return 0
        try:
            return mod.oom_kills(d)
        except ContainerSystemError as exc:
            raise self._err(exc, "oom kill count") from None


def _is_ancestor(a, b):
    return b.startswith(a.rstrip("/") + "/")


def _make_parents(path, made):
    """mkdir -p `path`, appending what it made to `made` (top-down). EEXIST of a parent is
    fine: another container may have made it a moment ago."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ContainerSystemError(exc.errno, f"mkdir {d}") from None
        made.append(d)


class NullManager:
    """A container without cgroups (rootless, nothing delegated), behind the same interface:
    no limits, no freezer, no statistics; its processes are those in the init's pid
    namespace, and killing the init kills them (the kernel kills a pid namespace with its
    init)."""

    def __init__(self, container_id):
        self.container_id = container_id
        self.resources = None

    def __repr__(self):
        return f"NullManager({self.container_id!r})"

    def to_record(self):
        return {"version": 1, "id": self.container_id, "none": True}

    def dirs(self):
        return []

    def create(self, device_rules=None):
        pass

    def placement(self):
        return -1, []

    def pids_full(self):
        return False

    def removed(self):
        return False

    def _unsupported(self, what):
        return ContainerSystemError(errno.ENOTSUP, "the container has no cgroups "
                                    "(none are delegated to this user)",
                                    container_id=self.container_id, operation=what)

    def set_resources(self, resources):
        raise self._unsupported("set resources")

    def freeze(self):
        raise self._unsupported("pause")

    def thaw(self):
        raise self._unsupported("resume")

    def freezer_state(self):
        return THAWED

    def kept_freezer_state(self, thawed_only=False):
        return None

    def frozen(self):
        return False

    def freezer_watch(self):
        return None

    def stats(self):
        return CgroupStats(cpu_stats=CpuStats())

    def oom_kill_count(self):
        return 0

    def oom_watch(self):
        return None

    def pids(self, init=None):
        """The processes in the init's pid namespace (none without a live init)."""
        live = init() if init is not None else None
        if live is None:
            return []
        try:
            ns = os.readlink(f"/proc/{live[0]}/ns/pid")
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

    def kill_all(self, init=None, timeout=10.0):
        """SIGKILL the init (the kernel then kills its pid namespace) and wait until it
        has exited."""
        live = init() if init is not None else None
        if live is None:
            return
        pid, fd = live
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        if not select.select([fd], [], [], timeout)[0]:
            raise ContainerSystemError(errno.ETIMEDOUT, f"init {pid} did not exit",
                                       container_id=self.container_id, operation="kill")

    def destroy(self, init=None):
        self.kill_all(init)

    def close(self):
        pass

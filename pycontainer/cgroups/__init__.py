"""cgroups: find the host's cgroup hierarchies and manage one container's cgroups.

Three host layouts exist and all are handled by one `CgroupManager`, which holds an
optional cgroup v2 directory and a dict of cgroup v1 directories (controller -> dir):

- pure v2 (most users): /sys/fs/cgroup is cgroup2 with controllers. Only the v2 dir
  exists; it carries placement, limits, stats, freeze and kill.
- pure v1: one mount per controller (or co-mounted, e.g. "cpu,cpuacct"). Only v1 dirs;
  the freezer dir carries placement, freeze and kill (freeze + SIGKILL + thaw).
- hybrid: v1 controllers plus a controller-less cgroup2 (often /sys/fs/cgroup/unified).
  v1 dirs carry limits and stats; the v2 dir carries placement (clone3's
  CLONE_INTO_CGROUP), freeze (cgroup.freeze) and kill (cgroup.kill).

A limit or statistic goes to the v1 dir of its controller when the host binds that
controller to v1, else to the v2 dir. PYCONTAINER_CGROUP_MODE=v1 makes detect() ignore
the cgroup2 mount, so a hybrid host can exercise the pure-v1 paths for real.

Container cgroups are created only below the caller's own cgroup (default parent: a
`pycontainer` child of it in each hierarchy) or below an explicit parent; cgroups this
module did not create are never moved, written or removed.

Small cgroup files are read and written with os.open/os.read/os.write: they are kernfs
files read in one call, and the text wrappers of open() cost more than the syscalls.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass

from ..config import Resources
from ..errors import ContainerSystemError, system_error_from
from ..stats import CgroupStats, CpuStats

__all__ = ["detect", "cgroup_name", "new_manager", "load_manager", "CgroupManager",
           "Host", "Hierarchy", "MAX", "supports"]

MAX = (1 << 63) - 1          # what "max" (no limit) reads as, libcontainer's convention
THAWED, FREEZING, FROZEN = "THAWED", "FREEZING", "FROZEN"


# --- file helpers, shared by v1.py and v2.py (imported by them, so defined first) ---------

def read_text(path):
    """The whole file as text; ContainerSystemError naming the path on failure."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"read {path}") from None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)   # one call for nearly every cgroup file
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"read {path}") from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def read_optional(path):
    """read_text, or None when the file does not exist (a controller or feature the
    kernel lacks: stats of a missing file are zeros)."""
    try:
        return read_text(path)
    except ContainerSystemError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def write_text(path, value, missing_hint=""):
    """Write `value` in one write(2), as the kernel expects. The error names the file and
    the value: "write 'abc' to /sys/fs/cgroup/.../memory.limit_in_bytes: Invalid argument".
    `missing_hint` is appended when the file does not exist, to say why it may be missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        hint = missing_hint if exc.errno == errno.ENOENT else ""
        raise ContainerSystemError(exc.errno, f"write {value!r} to {path}{hint}") from None


def write_lines(d, writes):
    """write_text of each (file name in `d`, value), in order, each value in a write(2) of
    its own (as devices.allow takes one rule per write), through one descriptor per file."""
    fds = {}
    try:
        for name, value in writes:
            path = os.path.join(d, name)
            try:
                fd = fds.get(name)
                if fd is None:
                    fd = fds[name] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                os.write(fd, value.encode())
            except OSError as exc:
                raise ContainerSystemError(exc.errno, f"write {value!r} to {path}") from None
    finally:
        for fd in fds.values():
            os.close(fd)


def parse_int(text):
    """An integer cgroup value; "max" means unlimited."""
    text = text.strip()
    return MAX if text == "max" else int(text)


def read_int(path):
    """Integer value of a file, 0 when the file is missing."""
    text = read_optional(path)
    if text is None or not text.strip():
        return 0
    try:
        return parse_int(text)
    except ValueError:
        raise ContainerSystemError(errno.EIO,
                                   f"read {path}: not an integer: {text.strip()!r}") from None


def parse_keyed(text):
    """ "name value" lines (cpu.stat, memory.stat, memory.events ...) -> {name: int}.
    Lines whose value is not an integer are skipped: newer kernels add fields."""
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = parse_int(value)
        except ValueError:
            continue
    return out


def list_procs(path):
    """Pids in cgroup `path` and every cgroup below it (a container may make sub-cgroups),
    from cgroup.procs. Exited processes, zombies included, are not listed."""
    pids = [int(p) for p in read_text(os.path.join(path, "cgroup.procs")).split()]
    try:
        with os.scandir(path) as entries:
            subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"list {path}") from None
    for sub in subdirs:
        pids.extend(list_procs(sub))
    return pids


def remove_cgroup(path):
    """rmdir `path` and any cgroups a container made below it, deepest first.
    A missing directory is fine (idempotent destroy). The rmdir is tried first: a
    container rarely makes cgroups of its own, and listing a cgroup dir costs about as
    much as removing it."""
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # A cgroup with child cgroups is EBUSY (cgroupfs) or ENOTEMPTY.
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY) and _remove_children(path):
                continue
            # EBUSY right after the last task left is not expected on current kernels,
            # but riding it out for half a second costs nothing.
            if exc.errno != errno.EBUSY or delay > 0.3:
                raise ContainerSystemError(exc.errno, f"rmdir {path}") from None
        time.sleep(delay)
        delay *= 2


def _remove_children(path):
    """remove_cgroup every child cgroup of `path`; whether there was any."""
    try:
        with os.scandir(path) as entries:
            subdirs = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return True         # gone meanwhile: the rmdir retried says so
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"list {path}") from None
    for sub in subdirs:
        remove_cgroup(sub)
    return bool(subdirs)


from . import v1, v2  # noqa: E402  (they use the helpers above)


# --- detection ------------------------------------------------------------------------

@dataclass(frozen=True)
class Hierarchy:
    """One mounted hierarchy: where it is mounted, which cgroup the mount shows at its
    mountpoint (mountinfo's root field: "/" normally, "/docker/abc" when a container
    without a cgroup namespace gets its own cgroup bind-mounted), and this process's
    cgroup in it as /proc/self/cgroup prints it."""

    mountpoint: str
    root: str
    own: str
    controllers: tuple = ()          # v1 controllers of the mount; () for cgroup2

    def dir_of(self, cgroup_path):
        """The directory of a cgroup given as a path from the hierarchy's root."""
        parts = [p for p in cgroup_path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ContainerSystemError(errno.EINVAL,
                                       f"cgroup path {cgroup_path!r} contains '.' or '..'")
        root = [p for p in self.root.split("/") if p]
        if parts[:len(root)] != root:
            raise ContainerSystemError(
                errno.ENOENT, f"cgroup {cgroup_path} is not visible under {self.mountpoint} "
                              f"(that mount shows cgroup {self.root})")
        return os.path.join(self.mountpoint, *parts[len(root):])

    @property
    def own_dir(self):
        return self.dir_of(self.own)


@dataclass(frozen=True)
class Host:
    mode: str                        # "auto" or "v1"
    v1: dict                         # controller -> Hierarchy (co-mounted ones share one)
    unified: Hierarchy | None        # the cgroup2 hierarchy, None if absent or mode "v1"


def _unescape(field):
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text):
    """cgroup and cgroup2 mounts of /proc/self/mountinfo as
    (mountpoint, root, fstype, super options) tuples, in mount order."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(" "), right.split(" ")
        if len(fields) < 6 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((_unescape(fields[4]), _unescape(fields[3]), tail[0],
                       tuple(tail[2].split(","))))
    return mounts


def parse_proc_cgroup(text):
    """/proc/self/cgroup as (hierarchy id, controllers, path) tuples. Named v1
    hierarchies (name=systemd) keep their name= entry; cgroup2 is id 0 with no controllers."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            hid, ctls, path = parts
            out.append((int(hid), tuple(c for c in ctls.split(",") if c), path))
    return out


def _under(path, root):
    p = [x for x in path.split("/") if x]
    r = [x for x in root.split("/") if x]
    return p[:len(r)] == r


def build_host(mountinfo_text, proc_cgroup_text, mode="auto"):
    """Host from the texts of /proc/self/mountinfo and /proc/self/cgroup.

    A hierarchy is usable when a mount of it shows our own cgroup (its root is a prefix
    of our path); the first such mount wins. Named hierarchies are ignored."""
    mounts = parse_mountinfo(mountinfo_text)
    v1_map, unified = {}, None
    for hid, ctls, path in parse_proc_cgroup(proc_cgroup_text):
        if hid == 0 and not ctls:
            if mode == "v1":
                continue
            for mountpoint, root, fstype, _ in mounts:
                if fstype == "cgroup2" and _under(path, root):
                    unified = Hierarchy(mountpoint, root, path)
                    break
            continue
        ctls = tuple(c for c in ctls if not c.startswith("name="))
        if not ctls:
            continue
        for mountpoint, root, fstype, opts in mounts:
            if fstype == "cgroup" and set(ctls) <= set(opts) and _under(path, root):
                h = Hierarchy(mountpoint, root, path, ctls)
                for c in ctls:
                    v1_map[c] = h
                break
    return Host(mode, v1_map, unified)


@functools.lru_cache(maxsize=None)
def _detect(mode):
    return build_host(read_text("/proc/self/mountinfo"), read_text("/proc/self/cgroup"), mode)


def detect():
    """The host's hierarchies and this process's cgroup in each, cached.
    `detect.cache_clear()` forgets them (tests; a process that moved itself)."""
    mode = os.environ.get("PYCONTAINER_CGROUP_MODE") or "auto"
    if mode not in ("auto", "v1"):
        raise ContainerSystemError(errno.EINVAL,
                                   f"PYCONTAINER_CGROUP_MODE={mode!r}: expected 'auto' or 'v1'")
    return _detect(mode)


detect.cache_clear = _detect.cache_clear


# --- naming and construction ----------------------------------------------------------

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_+-]{1,200}")
DEFAULT_PARENT = "pycontainer"

# v1 controllers a container joins. devices is left alone: Resources has no device rules.
# The v1 freezer is only used when there is no cgroup2 to freeze with.
V1_CONTROLLERS = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "hugetlb", "memory", "pids")

# Resources knobs per controller, in the order they are written.
_KNOBS = {
    "memory": ("memory_limit", "memory_swap", "memory_reservation"),
    "cpu": ("cpu_shares", "cpu_quota", "cpu_period"),
    "cpuset": ("cpuset_cpus",),
    "pids": ("pids_limit",),
    "blkio": ("blkio_weight",),
    "hugetlb": ("hugepage_limits",),
}
# The v2 controller of each v1 one whose name differs.
_V2_NAME = {"blkio": "io"}


def supports(knob):
    """Whether this host can apply the Resources knob `knob` ("hugepage_limits",
    "blkio_weight", ...) to a container below our own cgroup: its controller is mounted
    (v1) or delegated by our cgroup to its children (v2), and for blkio_weight on v1 a
    weight file exists (blkio.weight needs the CFQ, blkio.bfq.weight the BFQ I/O
    scheduler)."""
    ctl = next((c for c, knobs in _KNOBS.items() if knob in knobs), None)
    if ctl is None:
        return False
    try:
        host = detect()
        if ctl in host.v1:
            if knob != "blkio_weight":
                return True
            own = host.v1[ctl].own_dir
            return any(os.path.exists(os.path.join(own, f))
                       for f in ("blkio.weight", "blkio.bfq.weight"))
        if host.unified is None:
            return False
        # Our own cgroup is not ours to change: it must already delegate the controller.
        text = read_optional(os.path.join(host.unified.own_dir, "cgroup.subtree_control"))
    except ContainerSystemError:
        return False
    return _V2_NAME.get(ctl, ctl) in (text or "").split()


def cgroup_name(container_id):
    """Directory name of a container's cgroups. Ids may contain '.', which could collide
    with control files (memory.max), and be 1024 characters long: those are hashed."""
    if _PLAIN_NAME.fullmatch(container_id):
        return container_id
    return "pc-" + hashlib.sha256(container_id.encode()).hexdigest()[:40]


def new_manager(container_id, parent=None, resources=None, scope=None):
    """The manager of a new container's cgroups. Touches no file: create() makes them.

    parent None: <own cgroup>/pycontainer/<name> in each hierarchy. Otherwise an absolute
    `parent` is a path from each hierarchy's root ("/a/b" -> <mountpoint>/a/b/<name>), a
    relative one a path below the caller's own cgroup in each hierarchy, as runc takes a
    relative cgroupsPath ("a/b" -> <mountpoint>/<own>/a/b/<name>)."""
    host = detect()
    name = cgroup_name(container_id)
    if scope:
        # Two state roots may hold the same id: the scope keeps their cgroups apart.
        name = f"{scope}-{name}"
    parents = _parent_dirs(host, parent)
    v1_dirs = {c: os.path.join(d, name) for c, d in parents.items() if c is not None}
    unified = os.path.join(parents[None], name) if None in parents else None
    if unified is None and not v1_dirs:
        raise ContainerSystemError(errno.ENOENT,
                                   f"no usable cgroup hierarchy in /proc/self/mountinfo "
                                   f"(mode {host.mode})", container_id=container_id)
    return CgroupManager(container_id, name, unified, v1_dirs, resources,
                         default_parent=parent is None)


_parents = {}     # (id(host), parent) -> (host, _parent_dirs' result)


def _parent_dirs(host, parent):
    """{v1 controller: the dir its containers go in, None: the v2 one} for Config's
    cgroup_parent `parent` (None: the default), worked out once per detected host."""
    key = (id(host), parent)
    hit = _parents.get(key)
    if hit is not None and hit[0] is host:
        return hit[1]

    def parent_dir(h):
        if parent is None:
            base = f"{h.own}/{DEFAULT_PARENT}"
        else:
            base = parent if parent.startswith("/") else f"{h.own.rstrip('/')}/{parent}"
        return h.dir_of(base)

    wanted = V1_CONTROLLERS if host.unified else V1_CONTROLLERS + ("freezer",)
    dirs = {c: parent_dir(host.v1[c]) for c in wanted if c in host.v1}
    if host.unified:
        dirs[None] = parent_dir(host.unified)
    if len(_parents) >= 64:      # a parent per container (podman's) must not pile up
        _parents.clear()
    _parents[key] = (host, dirs)
    return dirs


def delegated(container_id, parent=None, scope=None):
    """Whether this (unprivileged) process may make the container's cgroups: it must be
    able to write the directory they would go in, or the nearest one that exists."""
    try:
        manager = new_manager(container_id, parent, scope=scope)
    except ContainerSystemError:
        return False
    for path in manager._dirs():
        path = os.path.dirname(path)
        while not os.path.isdir(path):
            path = os.path.dirname(path)
        if not os.access(path, os.W_OK):
            return False
    return True


class NullManager:
    """A container without cgroups (rootless, nothing delegated): no limits, no freezer,
    no statistics; processes are found and killed through the init's pid namespace."""

    available = False

    def __init__(self, container_id):
        self.container_id = container_id

    def to_record(self):
        return {"version": 1, "id": self.container_id, "none": True}

    def create(self, device_rules=None):
        pass

    def placement(self):
        return -1, []

    def _unsupported(self, what):
        return ContainerSystemError(errno.ENOTSUP, "the container has no cgroups "
                                    "(none are delegated to this user)",
                                    container_id=self.container_id, operation=what)

    def freeze(self):
        raise self._unsupported("pause")

    thaw = freeze

    def set_resources(self, resources):
        raise self._unsupported("set resources")

    def freezer_state(self):
        return "THAWED"

    def kept_freezer_state(self, thawed_only=False):
        return None

    def stats(self):
        return CgroupStats(cpu_stats=CpuStats())

    def oom_kill_count(self):
        return 0

    def oom_source(self):
        return None

    def freezer_source(self):
        return None

    def pids_full(self):
        return False

    def removed(self):
        return False

    def close(self):
        pass

    def destroy(self):
        pass


def load_manager(record, container_id=None, parent=None, scope=None):
    """The manager described by CgroupManager.to_record(). Touches no file.

    With `container_id` (every load of a stored container), the record is not trusted: it
    must name the cgroups new_manager(container_id, parent, scope=scope) would have made,
    each hierarchy's dir being <that container's parent there>/<our name for the id>, and
    nothing else (see _check_dir). `parent` and `scope` are the caller's (the Config's
    cgroup_parent, the Factory's scope), never the record's. Without it the caller
    vouches for the paths (tests of fake trees)."""
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
        res = record.get("resources")
        unified, v1_dirs = record.get("unified"), dict(record.get("v1") or {})
        default_parent = bool(record.get("default_parent"))
        if container_id is not None:
            if record.get("id") != container_id:
                raise ValueError("the id is not the container's")
            name = cgroup_name(container_id)
            if scope:
                name = f"{scope}-{name}"
            if record.get("name") != name:
                raise ValueError(f"the name is not {name!r}")
            _check_dirs(unified, v1_dirs, name, parent)
            default_parent = parent is None
        return CgroupManager(record["id"], record["name"], unified, v1_dirs,
                             Resources(**res) if res else None,
                             default_parent=default_parent)
    except RecursionError:
        raise ContainerSystemError(errno.EINVAL, "bad cgroup record: nested too deeply") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:   # ConfigInvalidError too
        raise ContainerSystemError(errno.EINVAL, f"bad cgroup record: {str(exc)[:300]}") from None


_checked = set()      # (name, parent, unified, v1 items) that passed _check_dirs


def _check_dirs(unified, v1_dirs, name, parent):
    """The record's dirs (ValueError if not): at least one, each in the hierarchy it is
    for, as _check_dir says. Every mounted hierarchy counts, whatever
    PYCONTAINER_CGROUP_MODE says now: the container may have been made under another.
    What passed once is remembered: every load of a container checks the same dirs."""
    try:
        key = (name, parent, unified, tuple(v1_dirs.items()))
        if key in _checked:
            return
    except TypeError:                   # unhashable: a list where a path should be
        key = None
    host = _detect("auto")
    if unified is None and not v1_dirs:
        raise ValueError("it names no cgroup")
    if unified is not None:
        if host.unified is None:
            raise ValueError("a cgroup2 dir, but no cgroup2 hierarchy is mounted")
        _check_dir(unified, host.unified, name, parent, "unified")
    for ctl, path in v1_dirs.items():
        if ctl not in V1_CONTROLLERS + ("freezer",) or ctl not in host.v1:
            raise ValueError(f"v1 controller {str(ctl)[:40]!r} is not one of ours or not mounted")
        _check_dir(path, host.v1[ctl], name, parent, f"v1 {ctl}")
    if key is not None:
        if len(_checked) >= 1024:       # a container per id: they must not pile up
            _checked.clear()
        _checked.add(key)


def _check_dir(path, h, name, parent, what):
    """`path` must be a container dir new_manager could have made in hierarchy `h`:
    <parent dir>/<name>, strictly below the mount, so never a hierarchy root nor the
    parent itself. An absolute `parent` gives that parent dir exactly; the default and
    a relative parent are below the creator's own cgroup, which need not be the caller's
    (a CLI run from another session), so for them the parent dir must end in
    "pycontainer" (or the relative parent) somewhere below the mount."""
    slashed = path + "/" if isinstance(path, str) else ""
    if slashed[:1] != "/" or slashed[-2:] == "//" or "\0" in slashed or "//" in slashed \
            or "/./" in slashed or "/../" in slashed:
        raise ValueError(f"{what} dir {str(path)[:300]!r} is not a normalised absolute path")
    base, _, last = path.rpartition("/")
    if last != name:
        raise ValueError(f"{what} dir {path!r} is not named {name!r}")
    mount = h.mountpoint.rstrip("/")
    if parent is not None and parent.startswith("/"):
        try:
            ok = base == os.path.normpath(h.dir_of(parent))
        except ContainerSystemError:
            ok = False
    else:
        tail = "/" + (DEFAULT_PARENT if parent is None else parent.strip("/"))
        ok = base.startswith(mount + "/") and (base == mount + tail or base.endswith(tail))
    if not ok:
        raise ValueError(f"{what} dir {path!r} is not below the container's cgroup parent "
                         f"({parent or DEFAULT_PARENT!r}) in {h.mountpoint}")


# --- the manager ----------------------------------------------------------------------

_prepared = set()     # `pycontainer` parents this process has prepared (_prepare_parents)


class CgroupManager:
    """One container's cgroups: an optional v2 dir (`unified`) and v1 dirs by controller.
    Co-mounted v1 controllers (cpu,cpuacct) map to the same dir."""

    available = True

    def __init__(self, container_id, name, unified, v1_dirs, resources=None,
                 default_parent=False):
        self.container_id = container_id
        self.name = name
        self.unified = unified
        self.v1 = dict(v1_dirs)
        self.resources = resources
        # True when the parents are the `pycontainer` dirs this package owns, which
        # create() may prepare (cpuset values, subtree_control) even if they pre-exist.
        self.default_parent = default_parent
        self._freezer_fds = None
        # Guards the kept freezer descriptors: a thread closing them (the container was
        # found gone) must not free a number another is reading or writing through.
        self._fds_guard = threading.Lock()

    def __repr__(self):
        return f"CgroupManager({self.container_id!r}, unified={self.unified!r}, v1={self.v1!r})"

    def to_record(self):
        return {"version": 1, "id": self.container_id, "name": self.name,
                "default_parent": self.default_parent, "unified": self.unified,
                "v1": dict(self.v1),
                "resources": self.resources.to_dict() if self.resources else None}

    # -- which dir does what --

    def _dirs(self):
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
        return self.v1.get("freezer") or self._dirs()[0]

    def removed(self):
        """Whether destroy has begun removing the dirs. It removes them in _dirs() order,
        so while the first is there, every read made before this call saw all of them."""
        return not os.path.isdir(self._dirs()[0])

    def _err(self, exc, operation):
        return system_error_from(exc, container_id=self.container_id, operation=operation)

    # -- lifecycle --

    def create(self, device_rules=None):
        """mkdir every dir (and missing parents), prepare parents, apply resources and the
        device policy (a devices.DevicePolicy or DeviceRules; None: leave devices alone).
        On any failure every dir this call made is removed again."""
        made = []
        try:
            for path in self._dirs():
                try:
                    os.mkdir(path, 0o755)
                except FileNotFoundError:           # the first container below a parent
                    _make_parents(os.path.dirname(path), made)
                    try:
                        os.mkdir(path, 0o755)
                    except OSError as exc:
                        raise ContainerSystemError(exc.errno, f"mkdir {path}") from None
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
            raise self._err(exc, "create cgroups") from None

    def _prepare_parents(self, made):
        """New v2 parents must delegate controllers to their children (cgroup.subtree_control),
        and new v1 cpuset dirs start with empty cpus/mems, which refuse every task (ENOSPC):
        copy the parent's values. Only dirs this call made and our own `pycontainer` parent
        are touched, top-down so each copies from a prepared parent."""
        if (self.default_parent and len(made) == len(self._dirs()) and
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
            for d in ours(cpuset):
                v1.fill_cpuset(d)
            parent = os.path.dirname(cpuset)
            if not (self.default_parent and v1.cpuset_inherited(parent)):
                v1.fill_cpuset(cpuset)
        if self.default_parent:
            _prepared.update(os.path.dirname(d) for d in self._dirs())

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
        for ctl, knobs in _KNOBS.items():
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
            for d in self._dirs():
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

    def pids(self):
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
        until every task stopped (both v1 and v2 writes return before that on 6.18).
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

    def freezer_source(self):
        """("v2", dir) when cgroup.events reports the frozen state (inotify IN_MODIFY says
        when it changes), ("v1", dir) for a v1 freezer.state (no notification exists), None
        without a freezer."""
        try:
            mod, d = self._freezer()
        except ContainerSystemError:
            return None
        return ("v2" if mod is v2 else "v1"), d

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

    def kill_all(self, timeout=10.0):
        """SIGKILL every process and wait until the cgroup is empty."""
        try:
            if self.unified:
                v2.kill_all(self.unified, timeout)
            else:
                v1.kill_all(self._placement_dir(), self.v1.get("freezer"), timeout)
        except ContainerSystemError as exc:
            raise self._err(exc, "kill") from None

    def destroy(self):
        """Kill everything, then rmdir every container dir. Idempotent; works on a
        half-created manager. The shared parents stay."""
        self.close()
        if os.path.isdir(self._placement_dir()):
            self.kill_all()
        try:
            for d in self._dirs():
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

    def oom_source(self):
        """Where the kernel reports OOM kills: ("v1", memory dir) (an eventfd registered on
        memory.oom_control), ("v2", dir) (memory.events), or None without a memory
        controller (a hybrid host's cgroup2 has no memory.events)."""
        mod, d = self._source("memory")
        if mod is v1:
            return "v1", d
        if mod is v2 and os.path.exists(os.path.join(d, "memory.events")):
            return "v2", d
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

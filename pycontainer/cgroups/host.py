"""The host's cgroup hierarchies and the policy for where containers' cgroups go.

Three host layouts exist (see manager.py for what each dir does in each):

- pure v2 (most users): /sys/fs/cgroup is cgroup2 with controllers.
- pure v1: one mount per controller (or co-mounted, e.g. "cpu,cpuacct").
- hybrid: v1 controllers plus a controller-less cgroup2 (often /sys/fs/cgroup/unified).

detect() reads /proc/self/mountinfo and /proc/self/cgroup once; PYCONTAINER_CGROUP_MODE=v1
makes it ignore the cgroup2 mount, so a hybrid host can exercise the pure-v1 paths for real.

Container cgroups are created only below the caller's own cgroup (default parent: a
`pycontainer` child of it in each hierarchy), below an explicit parent (parent_dirs), or
at an exact path (Config.cgroup_path: a parent and the path's last component as the
name); a stored record is only believed when it names such dirs (check_dirs). cgroups
this package did not create are never moved, written or removed.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
from dataclasses import dataclass

from ..errors import ContainerSystemError
from .fs import read_optional, read_text

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
KNOBS = {
    "memory": ("memory_limit", "memory_swap", "memory_reservation"),
    "cpu": ("cpu_shares", "cpu_quota", "cpu_period"),
    "cpuset": ("cpuset_cpus", "cpuset_mems"),
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
    ctl = next((c for c, knobs in KNOBS.items() if knob in knobs), None)
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


def scoped_name(container_id, scope=None):
    """cgroup_name, prefixed by the Factory's scope: two state roots may hold the same id,
    and the scope keeps their cgroups apart."""
    name = cgroup_name(container_id)
    return f"{scope}-{name}" if scope else name


def split_path(path):
    """(parent, name) of an exact cgroup path, parent as container_dirs takes it:
    "/a/b/c" -> ("/a/b", "c"), "/c" -> ("/", "c"), "a/c" -> ("a", "c"), "c" -> ("", "c")
    ("": the caller's own cgroup)."""
    parts = [p for p in path.split("/") if p]
    parent = "/".join(parts[:-1])
    return ("/" + parent if path.startswith("/") else parent), parts[-1]


def container_dirs(container_id, parent=None, scope=None, path=None):
    """(name, v2 dir or None, {v1 controller: dir}) of a new container's cgroups. Touches
    no file.

    parent None: <own cgroup>/pycontainer/<name> in each hierarchy. Otherwise an absolute
    `parent` is a path from each hierarchy's root ("/a/b" -> <mountpoint>/a/b/<name>), a
    relative one a path below the caller's own cgroup in each hierarchy, as runc takes a
    relative cgroupsPath ("a/b" -> <mountpoint>/<own>/a/b/<name>). `path` (exact, read
    the same way) replaces both: its last component is the name ("/a/b/c" ->
    <mountpoint>/a/b/c), neither the id nor the scope."""
    host = detect()
    if path is not None:
        parent, name = split_path(path)
    else:
        name = scoped_name(container_id, scope)
    parents = parent_dirs(host, parent)
    v1_dirs = {c: os.path.join(d, name) for c, d in parents.items() if c is not None}
    unified = os.path.join(parents[None], name) if None in parents else None
    if unified is None and not v1_dirs:
        raise ContainerSystemError(errno.ENOENT,
                                   f"no usable cgroup hierarchy in /proc/self/mountinfo "
                                   f"(mode {host.mode})", container_id=container_id)
    return name, unified, v1_dirs


_parents = {}     # (id(host), parent) -> (host, parent_dirs' result)


def parent_dirs(host, parent):
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


def delegated(container_id, parent=None, scope=None, path=None):
    """Whether this (unprivileged) process may make the container's cgroups: it must be
    able to write the directory they would go in, or the nearest one that exists."""
    try:
        _, unified, v1_dirs = container_dirs(container_id, parent, scope, path)
    except ContainerSystemError:
        return False
    for path in {unified, *v1_dirs.values()} - {None}:
        path = os.path.dirname(path)
        while not os.path.isdir(path):
            path = os.path.dirname(path)
        if not os.access(path, os.W_OK):
            return False
    return True


def nested_parent(parent):
    """`parent` (a cgroup path) below our own cgroup, as the CLI's --nest-cgroups takes
    absolute cgroupsPaths. Clients (podman's stats, the containerd shim's metrics) expect
    one path in every hierarchy, so it goes below the deepest of our own cgroups when the
    others are its ancestors (a hybrid host where only the memory cgroup is ours), else
    below our own cgroup in each hierarchy (a relative parent; None for an empty one)."""
    host = detect()
    owns = [h.own for h in (*host.v1.values(), host.unified) if h is not None]
    deepest = max(owns, key=len, default="/")
    if all(o == "/" or deepest == o or deepest.startswith(o.rstrip("/") + "/") for o in owns):
        return deepest.rstrip("/") + "/" + parent.strip("/")
    return parent.strip("/") or None


_checked = set()      # (name, parent, unified, v1 items) that passed check_dirs


def check_dirs(unified, v1_dirs, name, parent):
    """The record's dirs (ValueError if not): at least one, each in the hierarchy it is
    for, as check_dir says. Every mounted hierarchy counts, whatever
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
        check_dir(unified, host.unified, name, parent, "unified")
    for ctl, path in v1_dirs.items():
        if ctl not in V1_CONTROLLERS + ("freezer",) or ctl not in host.v1:
            raise ValueError(f"v1 controller {str(ctl)[:40]!r} is not one of ours or not mounted")
        check_dir(path, host.v1[ctl], name, parent, f"v1 {ctl}")
    if key is not None:
        if len(_checked) >= 1024:       # a container per id: they must not pile up
            _checked.clear()
        _checked.add(key)


def check_dir(path, h, name, parent, what):
    """`path` must be a container dir new_manager could have made in hierarchy `h`:
    <parent dir>/<name>, strictly below the mount, so never a hierarchy root nor the
    parent itself. An absolute `parent` gives that parent dir exactly; the default and
    a relative parent are below the creator's own cgroup, which need not be the caller's
    (a CLI run from another session), so for them the parent dir must end in
    "pycontainer" (or the relative parent) somewhere below the mount ("": the creator's
    own cgroup, anywhere in the hierarchy)."""
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
        rel = DEFAULT_PARENT if parent is None else parent.strip("/")
        tail = "/" + rel if rel else ""
        below = base.startswith(mount + "/") or (not rel and base == mount)
        ok = below and (base == mount + tail or base.endswith(tail))
    if not ok:
        raise ValueError(f"{what} dir {path!r} is not below the container's cgroup parent "
                         f"({DEFAULT_PARENT if parent is None else parent!r}) in {h.mountpoint}")

"""Config, ProcessConfig, Mount and Resources: immutable, validated at construction.

A bad value raises ConfigInvalidError naming the field and the value, before anything
is created. Containers keep a validated Config; `start` never parses it again. These are
pure values: making one never looks at the host (whether the rootfs and the namespace
files exist is Factory.create's question), so a stored Config always loads back.
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, asdict
from typing import IO, Any, Optional, Union

from . import namespaces as _ns
from .devices import DeviceRule
from .errors import ConfigInvalidError
from .image import Image, as_image
from .security import (DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, HOST_IMAGE_CAPS,
                       HOST_SECRET_PATHS, Capabilities, Device, IdMap, Rlimit, check_sysctl)

__all__ = ["Config", "ProcessConfig", "Mount", "Resources", "Network", "NAMESPACES",
           "DEFAULT_NAMESPACES", "DEFAULT_ENV"]

# Names from pycontainer.namespaces, the table of namespace kinds.
NAMESPACES = _ns.NAMES
DEFAULT_NAMESPACES = _ns.DEFAULT
JOINABLE_NAMESPACES = _ns.JOINABLE       # may be joined by path instead of made
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root")

# Dot-separated labels of letters, digits, '-' and '_' ('-' not at a label's ends). The
# underscore is no DNS name's but runc and crun set it (the kernel takes any bytes).
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$")
_CPUSET = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")
_PAGE_SIZE = re.compile(r"[1-9]\d*[KMG]B")
_MAX_INT64 = (1 << 63) - 1
# mount(2) flags we accept by name, as mount(8) and the OCI spec spell them.
MOUNT_FLAGS = {
    "ro": ("set", 0x1), "rw": ("clear", 0x1),
    "nosuid": ("set", 0x2), "suid": ("clear", 0x2),
    "nodev": ("set", 0x4), "dev": ("clear", 0x4),
    "noexec": ("set", 0x8), "exec": ("clear", 0x8),
    "sync": ("set", 0x10), "async": ("clear", 0x10),
    "dirsync": ("set", 0x80),
    "noatime": ("set", 0x400), "atime": ("clear", 0x400),
    "nodiratime": ("set", 0x800), "diratime": ("clear", 0x800),
    "relatime": ("set", 0x200000), "norelatime": ("clear", 0x200000),
    "strictatime": ("set", 0x1000000),
    "bind": ("set", 0x1000), "rbind": ("set", 0x1000 | 0x4000),
    "private": ("prop", 1 << 18), "rprivate": ("prop", (1 << 18) | 0x4000),
    "slave": ("prop", 1 << 19), "rslave": ("prop", (1 << 19) | 0x4000),
    "shared": ("prop", 1 << 20), "rshared": ("prop", (1 << 20) | 0x4000),
    "unbindable": ("prop", 1 << 17), "runbindable": ("prop", (1 << 17) | 0x4000),
}


def _bad(field_name, value, reason):
    raise ConfigInvalidError(field_name, value, reason)


def _check_int(name, value, lo, hi, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(name, value, "expected an integer")
    if not lo <= value <= hi:
        _bad(name, value, f"expected {lo}..{hi}")


def _check_path(name, value, absolute=True):
    if not isinstance(value, str) or not value:
        _bad(name, value, "expected a non-empty string path")
    if "\0" in value:
        _bad(name, value, "contains a NUL byte")
    if absolute and not value.startswith("/"):
        _bad(name, value, "must be an absolute path")
    if len(value.encode("utf-8", "surrogateescape")) >= 4096:
        _bad(name, value, "longer than PATH_MAX")


def _check_strings(name, value, what):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        _bad(name, value, f"expected a list of {what}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            _bad(f"{name}[{i}]", item, "expected a string")
        if "\0" in item:
            _bad(f"{name}[{i}]", item, "contains a NUL byte")


def _check_env(name, env):
    _check_strings(name, env, "NAME=value strings")
    for i, item in enumerate(env):
        if "=" not in item or item.startswith("="):
            _bad(f"{name}[{i}]", item, "expected NAME=value")


@dataclass(frozen=True)
class Mount:
    """A mount inside the container. ``type="bind"`` binds ``source`` (a host path, resolved
    before the container's root is entered); any other type is a new filesystem instance
    (tmpfs, proc, mqueue ...) with ``source`` as its device name and ``data`` as its options.
    ``destination`` is resolved inside the container's root, never on the host."""

    destination: str
    source: str = ""
    type: str = "bind"
    options: Sequence[str] = ()
    # What an error names this mount: "" is "mounts[i]" by its place in Config.mounts; the
    # OCI layer gives config.json's own ("mounts[7]"), which counts entries it takes apart.
    label: str = field(default="", compare=False)

    def __post_init__(self):
        _check_path("mounts.destination", self.destination)
        if not isinstance(self.type, str) or not re.fullmatch(r"[a-z0-9_.]{1,32}", self.type):
            _bad("mounts.type", self.type, "expected a filesystem type name such as 'bind' or 'tmpfs'")
        if self.type == "bind":
            _check_path("mounts.source", self.source)
        elif not isinstance(self.source, str) or "\0" in self.source:
            _bad("mounts.source", self.source, "expected a string")
        _check_strings("mounts.options", self.options, "mount options")
        object.__setattr__(self, "options", tuple(self.options))
        for opt in self.options:
            if opt not in MOUNT_FLAGS and ("," in opt or not opt):
                _bad("mounts.options", opt, "not a mount option")
        if not isinstance(self.label, str):
            _bad("mounts.label", self.label, "expected a string")

    def flags(self):
        """(mount flags, propagation flags, filesystem data string) for mount(2)."""
        flags = 0x1000 | 0x4000 if self.type == "bind" else 0
        prop = 0
        data = []
        for opt in self.options:
            kind, bit = MOUNT_FLAGS.get(opt, ("data", 0))
            if kind == "set":
                flags |= bit
            elif kind == "clear":
                flags &= ~bit
            elif kind == "prop":
                prop |= bit
            elif opt != "bind":
                data.append(opt)
        if any(o == "bind" for o in self.options):
            flags &= ~0x4000
        return flags, prop, ",".join(data)


@dataclass(frozen=True)
class Resources:
    """cgroup limits, applied at create. None leaves a knob at the kernel's default."""

    memory_limit: Optional[int] = None      # bytes
    memory_swap: Optional[int] = None       # bytes of memory+swap (runc's convention); -1 unlimited
    cpu_shares: Optional[int] = None        # v1 cpu.shares 2..262144; v2 weight converted as crun does
    cpu_quota: Optional[int] = None         # microseconds per period; -1 unlimited
    cpu_period: Optional[int] = None        # microseconds, 1000..1000000
    cpuset_cpus: Optional[str] = None       # "0-1,3"
    cpuset_mems: Optional[str] = None       # memory (NUMA) nodes, same syntax: "0-1,3"
    pids_limit: Optional[int] = None        # max processes; -1 unlimited
    memory_reservation: Optional[int] = None   # bytes: v1 memory.soft_limit_in_bytes, v2 memory.low
    blkio_weight: Optional[int] = None      # 10..1000: v1 blkio(.bfq).weight, v2 io(.bfq).weight
    # (("2MB", bytes), ("1GB", bytes)): hugetlb limit per page size (kernel's names); None: unset
    hugepage_limits: Optional[Sequence[tuple[str, int]]] = None

    def __post_init__(self):
        _check_int("resources.memory_limit", self.memory_limit, 4096, _MAX_INT64)
        if self.memory_swap is not None and self.memory_swap != -1:
            _check_int("resources.memory_swap", self.memory_swap, 4096, _MAX_INT64)
            if self.memory_limit is None or self.memory_swap < self.memory_limit:
                _bad("resources.memory_swap", self.memory_swap,
                     "must be -1 or at least memory_limit (it counts memory plus swap)")
        else:
            _check_int("resources.memory_swap", self.memory_swap, -1, -1)
        _check_int("resources.cpu_shares", self.cpu_shares, 2, 262144)
        if self.cpu_quota != -1:
            _check_int("resources.cpu_quota", self.cpu_quota, 1000, _MAX_INT64)
        _check_int("resources.cpu_period", self.cpu_period, 1000, 1000000)
        for name, what in (("cpuset_cpus", "cpu"), ("cpuset_mems", "memory node")):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _CPUSET.match(value)):
                _bad(f"resources.{name}", value, f"expected a {what} list such as '0-1,3'")
        if self.pids_limit != -1:
            _check_int("resources.pids_limit", self.pids_limit, 1, _MAX_INT64)
        _check_int("resources.memory_reservation", self.memory_reservation, 0, _MAX_INT64)
        _check_int("resources.blkio_weight", self.blkio_weight, 10, 1000)
        limits = self.hugepage_limits
        if limits is None:
            return
        if isinstance(limits, (str, bytes, dict)) or not isinstance(limits, (list, tuple)):
            _bad("resources.hugepage_limits", limits, "expected a list of (page size, bytes)")
        out = []
        for item in limits:
            if not isinstance(item, (list, tuple)) or len(item) != 2 or \
                    not isinstance(item[0], str) or not _PAGE_SIZE.fullmatch(item[0]):
                _bad("resources.hugepage_limits", item,
                     "expected (page size such as '2MB' or '1GB', limit in bytes)")
            _check_int("resources.hugepage_limits", item[1], 0, _MAX_INT64, allow_none=False)
            out.append((item[0], item[1]))
        if len({size for size, _ in out}) != len(out):
            _bad("resources.hugepage_limits", limits, "a page size is listed twice")
        object.__setattr__(self, "hugepage_limits", tuple(out) or None)

    def to_dict(self):
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __repr__(self) -> str:
        return "Resources(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


_IFNAME_MAX = 15                   # IFNAMSIZ - 1
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def _check_ifname(name, value, allow_none=False):
    """An interface name the kernel accepts as is (dev_valid_name): 1-15 bytes, not '.'
    or '..', no '/', ':' or whitespace; and no '%' (the kernel would fill in a number)."""
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not 0 < len(value.encode()) <= _IFNAME_MAX \
            or value in (".", "..") or re.search(r"[/:%\s\0]", value):
        _bad(name, value, "expected an interface name of 1-15 characters without '/', ':', "
             "'%' or whitespace")


def _as_tuple(name, value, what):
    """A string or a list of strings, as a tuple."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        _bad(name, value, f"expected {what} or a list of them")
    return tuple(value)


@dataclass(frozen=True)
class Network:
    """A network interface of the container, in the container's own network namespace.

    ``type="loopback"``: ``lo``, which is always up in a new network namespace; the entry
    is accepted for libcontainer compatibility. ``type="veth"``: a veth pair, ``name``
    (default ``eth0``) inside the container and ``host_name`` on the host, where it is
    enslaved to ``bridge`` when given. A ``host_name`` ending in ``*`` is a prefix: each
    start completes it with random hex digits to 15 characters (default ``veth*``).
    ``address``: CIDRs (``"10.0.0.2/24"``, ``"fd00::2/64"``), one or a list; ``gateway``:
    the default route's next hop, one address per family. Needs root on the host."""

    type: str
    name: Optional[str] = None
    host_name: Optional[str] = None
    bridge: Optional[str] = None
    address: Union[str, Sequence[str]] = ()
    gateway: Union[str, Sequence[str]] = ()
    mtu: Optional[int] = None
    mac: Optional[str] = None

    def __post_init__(self):
        f = "networks"
        if self.type not in ("loopback", "veth"):
            _bad(f"{f}.type", self.type, "expected 'loopback' or 'veth'")
        if self.type == "loopback":
            for name in ("host_name", "bridge", "mtu", "mac", "address", "gateway"):
                if getattr(self, name) not in (None, (), []):
                    _bad(f"{f}.{name}", getattr(self, name), "not for a loopback interface")
            object.__setattr__(self, "address", ())
            object.__setattr__(self, "gateway", ())
            if self.name not in (None, "lo"):
                _bad(f"{f}.name", self.name, "the loopback interface is 'lo'")
            object.__setattr__(self, "name", "lo")
            return
        object.__setattr__(self, "name", "eth0" if self.name is None else self.name)
        _check_ifname(f"{f}.name", self.name)
        if self.name == "lo":
            _bad(f"{f}.name", self.name, "'lo' is the loopback interface")
        host = "veth*" if self.host_name is None else self.host_name
        object.__setattr__(self, "host_name", host)
        if isinstance(host, str) and host.endswith("*"):
            _check_ifname(f"{f}.host_name", host[:-1])
            if len(host[:-1].encode()) > _IFNAME_MAX - 4:
                _bad(f"{f}.host_name", host, "a prefix leaves room for at least 4 random "
                     "characters: at most 11 before the '*'")
        else:
            _check_ifname(f"{f}.host_name", host)
        _check_ifname(f"{f}.bridge", self.bridge, allow_none=True)
        object.__setattr__(self, "address", self._addresses(f"{f}.address"))
        object.__setattr__(self, "gateway", self._gateways(f"{f}.gateway"))
        _check_int(f"{f}.mtu", self.mtu, 68, 65535)
        if self.mtu is not None and self.mtu < 1280 and \
                any(ipaddress.ip_interface(a).version == 6 for a in self.address):
            _bad(f"{f}.mtu", self.mtu, "IPv6 needs an MTU of at least 1280")
        if self.mac is not None:
            if not isinstance(self.mac, str) or not _MAC.match(self.mac):
                _bad(f"{f}.mac", self.mac, "expected six hex bytes such as '02:42:ac:11:00:02'")
            first = int(self.mac[:2], 16)
            if first & 1 or self.mac.strip("0:") == "":
                _bad(f"{f}.mac", self.mac, "expected a unicast, non-zero address")
            object.__setattr__(self, "mac", self.mac.lower())

    def _addresses(self, name):
        out = []
        for value in _as_tuple(name, self.address, "a CIDR such as '10.0.0.2/24'"):
            try:
                if "/" not in value:
                    raise ValueError("no prefix length")
                iface = ipaddress.ip_interface(value)
            except ValueError:
                _bad(name, value, "expected a CIDR such as '10.0.0.2/24' or 'fd00::2/64'")
            ip, net = iface.ip, iface.network
            if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
                _bad(name, value, "not a unicast host address")
            if ip.version == 4 and net.prefixlen < 31 and ip in (net.network_address,
                                                                 net.broadcast_address):
                _bad(name, value, "the network's own or broadcast address")
            if str(iface) in out:
                _bad(name, value, "given twice")
            out.append(str(iface))
        return tuple(out)

    def _gateways(self, name):
        out = []
        ifaces = [ipaddress.ip_interface(a) for a in self.address]
        for value in _as_tuple(name, self.gateway, "an IP address"):
            try:
                gw = ipaddress.ip_address(value)
            except ValueError:
                _bad(name, value, "expected an IP address")
            if any(ipaddress.ip_address(g).version == gw.version for g in out):
                _bad(name, value, f"a second IPv{gw.version} gateway")
            same = [i for i in ifaces if i.version == gw.version]
            if not same:
                _bad(name, value, f"no IPv{gw.version} address on this interface to reach it")
            if any(gw == i.ip for i in same):
                _bad(name, value, "is the interface's own address")
            if not any(gw in i.network for i in same) and not gw.is_link_local:
                _bad(name, value, "not in the subnet of the interface's addresses")
            out.append(str(gw))
        return tuple(out)


# The defaults of capabilities and masked_paths depend on the image (security.py says
# why): these objects stand for "not given", each becoming the other when rootfs changes
# (dataclasses.replace passes them on); anything else is the caller's choice, kept.
_IMAGE_CAPABILITIES = Capabilities()
_HOST_CAPABILITIES = Capabilities(HOST_IMAGE_CAPS, HOST_IMAGE_CAPS, HOST_IMAGE_CAPS)
_HOST_MASKED_PATHS = DEFAULT_MASKED_PATHS + HOST_SECRET_PATHS


@dataclass(frozen=True)
class Config:
    """What a container is: its root filesystem, namespaces, mounts and limits.

    ``rootfs=None`` is the built-in image: the host's root bind-mounted read-only, with fresh
    /proc, /dev, /sys and writable tmpfs /tmp and /run. Its default capabilities leave out
    those that read other users' files (security.HOST_IMAGE_DROPPED_CAPS) and its default
    masked paths add root's well-known secrets (security.HOST_SECRET_PATHS) when root in
    the container is the host's.

    A Config is a value: do not change its dicts (``namespace_paths``, ``sysctl``, a seccomp
    profile) after making it. What is derived from it (its C form, the device policy, its
    JSON) is made once and shared by every container created with it; make a new Config
    (``dataclasses.replace``) for a different one."""

    rootfs: Union[None, str, os.PathLike[str]] = None
    hostname: Optional[str] = None
    domainname: Optional[str] = None
    # Names, or a mapping name -> None (a new namespace) or the path of an existing one to
    # join (any but user): {"mount": None, "pid": "/proc/42/ns/pid", "net": "/run/netns/x"}.
    # Normalised to the names plus namespace_paths (name -> path). "mount" is required;
    # without "pid" the container shares the caller's pid namespace (Kubernetes' hostPID).
    # Where the init is not pid 1 of a namespace of its own, destroy() and
    # signal(all=True) find the container's processes through its cgroups. A joined
    # mount namespace is used as it is (rootfs, mounts, masked paths are not applied).
    namespaces: Union[Sequence[str], Mapping[str, Optional[str]]] = DEFAULT_NAMESPACES
    namespace_paths: dict[str, str] = field(default_factory=dict)
    networks: Sequence[Network] = ()
    mounts: Sequence[Mount] = ()
    # True: pycontainer mounts /proc, /sys, /dev (a tmpfs with the default nodes),
    # /dev/pts, /dev/shm and /dev/mqueue itself, before ``mounts``. False: ``mounts`` are
    # every mount, in their order (an OCI config.json lists its own); the default device
    # nodes and /dev's links (fd, stdin..., ptmx) are made either way.
    default_mounts: bool = True
    readonly_rootfs: bool = False
    # The rootfs mount's propagation, set after pivot_root: a propagation option of
    # MOUNT_FLAGS ("rslave": mounts made on the host below the rootfs reach the
    # container). None: rprivate.
    rootfs_propagation: Optional[str] = None
    env: Sequence[str] = DEFAULT_ENV
    cwd: str = "/"
    resources: Optional[Resources] = None
    # Where the container's cgroups go, in every hierarchy (absolute: from the root,
    # relative: below the caller's own cgroup): cgroup_parent is the dir below which a
    # cgroup named after the id is made; cgroup_path, the cgroup itself (as OCI's
    # linux.cgroupsPath), which must not exist yet. Neither: <own>/pycontainer/<id>.
    cgroup_parent: Optional[str] = None
    cgroup_path: Optional[str] = None
    # Isolation (see README "Security defaults"): safe unless asked otherwise.
    capabilities: Optional[Capabilities] = _IMAGE_CAPABILITIES   # None: keep every one
    no_new_privileges: bool = True
    seccomp: Union[str, None, dict[str, Any]] = "default"        # "default", None, or an OCI linux.seccomp dict
    masked_paths: Sequence[str] = DEFAULT_MASKED_PATHS
    readonly_paths: Sequence[str] = DEFAULT_READONLY_PATHS
    devices: Sequence[Device] = ()                # extra Device nodes (allowed in the device cgroup)
    device_rules: Optional[Sequence[DeviceRule]] = None   # None: runc's default policy + the devices above
    rlimits: Sequence[Rlimit] = ()
    oom_score_adj: Optional[int] = None
    sysctl: dict[str, str] = field(default_factory=dict)
    umask: int = 0o022
    uid_mappings: Sequence[IdMap] = ()     # need the "user" namespace
    gid_mappings: Sequence[IdMap] = ()
    # A signal every process gets when the thread that started it exits (prctl
    # PR_SET_PDEATHSIG): None lets containers outlive the program that made them.
    # Per thread, not per process: a container started from a worker of a thread pool
    # is killed when that worker thread ends (an idle ThreadPoolExecutor worker may),
    # not when the program does. Start from a thread that lives as long as the
    # containers should (the main thread), or use `with factory.create(...)` / pc.run,
    # which destroy the container when the block or call ends.
    pdeathsig: Optional[int] = None
    # An Image (pycontainer.image): the container's root is a writable layer of its own
    # over the image's read-only tree (pycontainer.overlay), removed at destroy; env and
    # cwd left at their defaults take the image config's Env and WorkingDir.
    image: Optional[Image] = None
    # With rootfs: the same writable layer over that directory, which stays unchanged.
    rootfs_overlay: bool = False

    def __post_init__(self):
        if isinstance(self.rootfs, os.PathLike):
            object.__setattr__(self, "rootfs", os.fspath(self.rootfs))
        if self.rootfs is not None:
            _check_path("rootfs", self.rootfs)
            if not os.path.isabs(self.rootfs):
                _bad("rootfs", self.rootfs, "must be an absolute path")
        self._check_image()
        for name in ("hostname", "domainname"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or len(value) > 64 or not _HOSTNAME.match(value):
                _bad(name, value, "expected a host name of at most 64 characters [A-Za-z0-9_.-]")
        self._check_namespaces()
        # A joined uts namespace gets the name too (runc does so); from a new user
        # namespace the init has no rights over a uts namespace it did not make.
        if self.hostname or self.domainname:
            what = "hostname" if self.hostname else "domainname"
            if "uts" not in self.namespaces:
                _bad(what, getattr(self, what), "setting a hostname needs the 'uts' namespace")
            if "uts" in self.namespace_paths and "user" in self.namespaces:
                _bad(what, getattr(self, what), "cannot be set in a joined uts namespace from "
                     "a new user namespace (it has no rights there): leave it unset and set "
                     "it in that namespace, or join without a new user namespace")
        self._check_networks()
        object.__setattr__(self, "mounts", _tuple_of(Mount, self.mounts, "mounts"))
        for name in ("readonly_rootfs", "default_mounts"):
            if not isinstance(getattr(self, name), bool):
                _bad(name, getattr(self, name), "expected True or False")
        object.__setattr__(self, "env", tuple(self.env) if isinstance(self.env, list) else self.env)
        _check_env("env", self.env)
        _check_path("cwd", self.cwd)
        if self.resources is not None and not isinstance(self.resources, Resources):
            if isinstance(self.resources, dict):
                object.__setattr__(self, "resources", _build(Resources, self.resources, "resources"))
            else:
                _bad("resources", self.resources, "expected a Resources")
        for name in ("cgroup_parent", "cgroup_path"):
            value = getattr(self, name)
            if value is not None:
                _check_path(name, value, absolute=False)
                if any(p in ("..", ".") for p in value.split("/")):
                    _bad(name, value, "must not contain '.' or '..' components")
        if self.cgroup_path is not None:
            if not self.cgroup_path.strip("/"):
                _bad("cgroup_path", self.cgroup_path, "expected a cgroup below the hierarchy's "
                     "root, such as '/a/b/c'")
            if self.cgroup_parent is not None:
                _bad("cgroup_path", self.cgroup_path, "give cgroup_parent or cgroup_path, not both")
        self._check_security()
        if "mount" in self.namespace_paths:
            self._check_joined_mount_namespace()

    def _check_joined_mount_namespace(self):
        """A joined mount namespace is used as it is: its root and mounts are the
        container's, and nothing of the Config's is mounted or made in it."""
        for name, unset in (("mounts", ()), ("readonly_rootfs", False), ("devices", ()),
                            ("sysctl", {}), ("rootfs_propagation", None)):
            if getattr(self, name) != unset:
                _bad(name, getattr(self, name), "cannot be applied in a joined mount "
                     "namespace (it is used as it is): leave it unset")

    def _check_image(self):
        if not isinstance(self.rootfs_overlay, bool):
            _bad("rootfs_overlay", self.rootfs_overlay, "expected True or False")
        if self.image is None:
            if self.rootfs_overlay and self.rootfs is None:
                _bad("rootfs_overlay", True, "needs rootfs (the directory to lay it over)")
            return
        image = as_image(self.image)
        object.__setattr__(self, "image", image)
        if self.rootfs is not None:
            _bad("image", image.name or image.chain_id, f"give image or rootfs "
                 f"({self.rootfs}), not both")
        if self.env is DEFAULT_ENV and image.config.env:
            object.__setattr__(self, "env", image.config.env)
        if self.cwd == "/" and image.config.working_dir:
            object.__setattr__(self, "cwd", image.config.working_dir)

    @property
    def overlay_lower(self):
        """The read-only tree under the container's writable layer, or None."""
        if self.image is not None:
            return self.image.rootfs
        return self.rootfs if self.rootfs_overlay else None

    def _check_namespaces(self):
        ns = self.namespaces
        paths = self.namespace_paths
        if not isinstance(paths, dict):
            _bad("namespace_paths", paths, "expected a dict of namespace name -> path")
        paths = dict(paths)
        if isinstance(ns, dict):
            paths.update((k, v) for k, v in ns.items() if v is not None)
            ns = list(ns)
        if isinstance(ns, str) or not isinstance(ns, (list, tuple, set, frozenset)):
            _bad("namespaces", ns, f"expected a list of names from {NAMESPACES}, or a dict "
                 "of name -> None or path")
        for name in ns:
            if name not in NAMESPACES:
                _bad("namespaces", name, f"unknown namespace; expected one of {NAMESPACES}")
        object.__setattr__(self, "namespaces", tuple(n for n in NAMESPACES if n in ns))
        if "mount" not in self.namespaces:
            _bad("namespaces", list(ns), "a container needs a mount namespace (its own, or "
                 "one it joins by path)")
        for name, path in paths.items():
            if name not in self.namespaces:
                _bad(f"namespaces.{name}", path, "a path for a namespace not in namespaces")
            if name not in JOINABLE_NAMESPACES:
                _bad(f"namespaces.{name}", path, "cannot be joined by path: a container "
                     f"makes its own; paths are for {JOINABLE_NAMESPACES}")
            _check_path(f"namespaces.{name}", path)
            if name in ("cgroup", "mount") and "user" in self.namespaces:
                _bad(f"namespaces.{name}", path, "cannot be joined by path from a new user "
                     f"namespace (it has no rights over the host's {name} namespaces)")
        object.__setattr__(self, "namespace_paths",
                           {n: paths[n] for n in NAMESPACES if n in paths})

    @property
    def new_namespaces(self):
        """The namespaces a new init gets fresh (the others it joins by path)."""
        return tuple(n for n in self.namespaces if n not in self.namespace_paths)

    @property
    def veth_networks(self):
        return tuple(n for n in self.networks if n.type == "veth")

    def _check_networks(self):
        nets = self.networks
        if isinstance(nets, (str, bytes, dict)) or not isinstance(nets, (list, tuple)):
            _bad("networks", nets, "expected a list of Network")
        built, names, hosts = [], set(), set()
        for i, item in enumerate(nets):
            where = f"networks[{i}]"
            try:
                if isinstance(item, dict):
                    item = _build(Network, item, where)
                elif not isinstance(item, Network):
                    _bad(where, item, "expected a Network")
            except ConfigInvalidError as exc:
                if not exc.field.startswith("networks."):
                    raise
                # Network names its fields without knowing its place in the list.
                _bad(where + exc.field[len("networks"):], exc.value, exc.reason)
            if "net" not in self.namespaces:
                _bad(f"{where}.type", item.type, "needs the 'net' namespace")
            if "net" in self.namespace_paths:
                _bad(f"{where}.type", item.type, "needs a new net namespace, not one joined "
                     "by path (namespaces.net)")
            if item.type == "veth" and "user" in self.namespaces:
                _bad(f"{where}.type", item.type, "a veth needs root on the host: not with a "
                     "user namespace")
            if item.name in names:
                _bad(f"{where}.name", item.name, "a second interface with this name")
            names.add(item.name)
            if item.host_name is not None and not item.host_name.endswith("*"):
                if item.host_name in hosts:
                    _bad(f"{where}.host_name", item.host_name, "a second veth with this name")
                hosts.add(item.host_name)
            built.append(item)
        object.__setattr__(self, "networks", tuple(built))

    def _check_security(self):
        host = self.image_is_host
        if self.capabilities is _IMAGE_CAPABILITIES or self.capabilities is _HOST_CAPABILITIES:
            object.__setattr__(self, "capabilities",
                               _HOST_CAPABILITIES if host else _IMAGE_CAPABILITIES)
        caps = self.capabilities
        if isinstance(caps, dict):
            object.__setattr__(self, "capabilities", _build(Capabilities, caps, "capabilities"))
        elif caps is not None and not isinstance(caps, Capabilities):
            _bad("capabilities", caps, "expected a Capabilities or None")
        if self.rootfs_propagation is not None and (
                not isinstance(self.rootfs_propagation, str)
                or MOUNT_FLAGS.get(self.rootfs_propagation, ("",))[0] != "prop"):
            _bad("rootfs_propagation", self.rootfs_propagation, "expected one of " + ", ".join(
                k for k, (kind, _) in MOUNT_FLAGS.items() if kind == "prop"))
        if not isinstance(self.no_new_privileges, bool):
            _bad("no_new_privileges", self.no_new_privileges, "expected True or False")
        if self.seccomp not in ("default", None):
            from .seccomp import validate_profile      # lazily: only a profile of its own
            object.__setattr__(self, "seccomp", validate_profile(self.seccomp))
        for name in ("masked_paths", "readonly_paths"):
            value = getattr(self, name)
            _check_strings(name, value, "absolute paths")
            object.__setattr__(self, name, tuple(value))
            for i, path in enumerate(value):
                _check_path(f"{name}[{i}]", path)
        object.__setattr__(self, "devices", _tuple_of(Device, self.devices, "devices"))
        if self.device_rules is not None:
            object.__setattr__(self, "device_rules",
                               _tuple_of(DeviceRule, self.device_rules, "device_rules"))
        object.__setattr__(self, "rlimits", _tuple_of(Rlimit, self.rlimits, "rlimits"))
        _check_int("oom_score_adj", self.oom_score_adj, -1000, 1000)
        check_sysctl(self.sysctl, self.new_namespaces)
        _check_int("umask", self.umask, 0, 0o777, allow_none=False)
        _check_int("pdeathsig", self.pdeathsig, 1, 64)
        for name in ("uid_mappings", "gid_mappings"):
            maps = _tuple_of(IdMap, getattr(self, name), name)
            object.__setattr__(self, name, maps)
            if maps and "user" not in self.namespaces:
                _bad(name, maps, "id mappings need the 'user' namespace")
        if "user" in self.namespaces and not (self.uid_mappings and self.gid_mappings):
            _bad("namespaces", "user", "a user namespace needs uid_mappings and gid_mappings")
        if self.masked_paths is DEFAULT_MASKED_PATHS or self.masked_paths is _HOST_MASKED_PATHS:
            # Root's secrets are readable (and so to be masked) when root in the container
            # is the host's uid 0; another root cannot even look at them (/root is 0700).
            host_root = "user" not in self.namespaces or any(
                m.container_id == 0 and m.host_id == 0 for m in self.uid_mappings)
            object.__setattr__(self, "masked_paths", _HOST_MASKED_PATHS if host and host_root
                               else DEFAULT_MASKED_PATHS)

    def __repr__(self) -> str:
        """The fields that differ from a default Config's (of the same image kind)."""
        base = _default_config(self.image_is_host)
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if f.repr and getattr(self, f.name) != getattr(base, f.name)]
        return f"Config({', '.join(changed)})"

    @property
    def image_is_host(self):
        return self.rootfs is None and self.image is None

    def to_dict(self):
        """A JSON-able dict; from_dict(to_dict()) == self. Made once (the Config is frozen);
        treat it as read-only."""
        d = self.__dict__.get("_as_dict")
        if d is None:
            d = asdict(self)
            object.__setattr__(self, "_as_dict", d)
        return d

    @classmethod
    def from_dict(cls, d):
        """The Config of to_dict()."""
        if not isinstance(d, dict):
            _bad("config", d, "expected a dict")
        d = dict(d)
        if d.get("resources") is not None:
            d["resources"] = _build(Resources, d["resources"], "resources")
        if d.get("image") is not None:
            d["image"] = as_image(d["image"])
        if isinstance(d.get("capabilities"), dict):
            d["capabilities"] = {k: tuple(v) for k, v in d["capabilities"].items()}
        for k in ("namespaces", "env", "masked_paths", "readonly_paths"):
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return _build(cls, d, "config")


_DEFAULTS: dict = {}


def _default_config(host):
    """Config() (host) or Config(rootfs="/") (an image), made once, for Config.__repr__."""
    if host not in _DEFAULTS:
        _DEFAULTS[host] = Config() if host else Config(rootfs="/")
    return _DEFAULTS[host]


def _tuple_of(cls, items, where):
    """items as a tuple of cls; dicts (from JSON) are built, anything else rejected."""
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, (list, tuple)):
        _bad(where, items, f"expected a list of {cls.__name__}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            item = _build(cls, item, f"{where}[{i}]")
        elif not isinstance(item, cls):
            _bad(f"{where}[{i}]", item, f"expected a {cls.__name__}")
        out.append(item)
    return tuple(out)


def _build(cls, d, where):
    names = {f.name for f in fields(cls)}
    for k in d:
        if k not in names:
            _bad(f"{where}.{k}", d[k], "unknown field")
    missing = [f.name for f in fields(cls) if f.name not in d and f.init
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        _bad(f"{where}.{missing[0]}", None, "required field missing")
    return cls(**d)


# What ProcessConfig's stdin, stdout and stderr take.
StdioTarget = Union[None, int, IO[bytes], IO[str]]
# subprocess.PIPE, STDOUT and DEVNULL (their values, without importing subprocess here).
PIPE, STDOUT, DEVNULL = -1, -2, -3
_STDIO_SPECIAL = {PIPE: "PIPE", DEVNULL: "DEVNULL", STDOUT: "STDOUT"}
_NAME_OR_ID = r"(\d+|[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?)"     # useradd's user names
_USER = re.compile(f"{_NAME_OR_ID}(?::{_NAME_OR_ID})?")


@dataclass(frozen=True)
class ProcessConfig:
    """One process to run in a container. The first one becomes the container's init.

    ``stdin``/``stdout``/``stderr``: None or ``subprocess.DEVNULL`` means /dev/null; an int
    fd or an object with ``fileno()``; ``subprocess.PIPE``: start() makes a pipe and the
    StartedProcess holds our end as ``.stdin``/``.stdout``/``.stderr`` (text files when
    ``text`` or ``encoding``); ``stderr=subprocess.STDOUT``: where stdout goes.
    ``env``: ``NAME=value`` strings or a mapping. ``user``: ``"uid"``, ``"uid:gid"``, or
    names (``"nobody"``, ``"nobody:nogroup"``) looked up in the container's /etc/passwd
    and /etc/group at start."""

    args: Sequence[str]
    env: Union[None, Sequence[str], Mapping[str, str]] = None
    cwd: Union[None, str, os.PathLike[str]] = None
    user: Optional[str] = None
    additional_gids: Sequence[int] = ()
    stdin: StdioTarget = None
    stdout: StdioTarget = None
    stderr: StdioTarget = None
    rlimits: Sequence[Rlimit] = ()          # on top of the Config's, by type
    # A new pty of the container's /dev/pts as controlling terminal and stdio; start()
    # hands its master to the caller (StartedProcess.console).
    terminal: bool = False
    # Descriptors (ints or objects with fileno()) the process gets as 3, 4, ...
    # (libcontainer's ExtraFiles, runc's --preserve-fds); every other one is closed.
    extra_files: Sequence[object] = ()
    # The PIPE ends' files: text (str) rather than bytes, decoded with `encoding`
    # (default: the locale's, as subprocess) and `errors`.
    text: bool = False
    encoding: Optional[str] = None
    errors: Optional[str] = None

    def __post_init__(self):
        if isinstance(self.args, (str, bytes)) or not isinstance(self.args, (list, tuple)):
            _bad("args", self.args, "expected a non-empty list of strings")
        object.__setattr__(self, "args", tuple(self.args))
        if not self.args:
            _bad("args", self.args, "expected a non-empty list of strings")
        _check_strings("args", self.args, "strings")
        if not self.args[0]:
            _bad("args[0]", self.args[0], "the program name is empty")
        if isinstance(self.env, Mapping):
            for k, v in self.env.items():
                if not isinstance(k, str) or not isinstance(v, str):
                    _bad(f"env[{k!r}]", v, "expected str names and values")
            object.__setattr__(self, "env", tuple(f"{k}={v}" for k, v in self.env.items()))
        if self.env is not None:
            object.__setattr__(self, "env", tuple(self.env) if isinstance(self.env, list) else self.env)
            _check_env("env", self.env)
        if isinstance(self.cwd, os.PathLike):
            object.__setattr__(self, "cwd", os.fspath(self.cwd))
        if self.cwd is not None:
            _check_path("cwd", self.cwd)
        if self.user is not None:
            match = _USER.fullmatch(self.user) if isinstance(self.user, str) else None
            if match is None:
                _bad("user", self.user, "expected 'uid', 'uid:gid', or user and group names")
            for part in match.groups():
                if part is not None and part.isdigit() and int(part) > 0xFFFFFFFE:
                    _bad("user", self.user, "uid/gid out of range")
        if isinstance(self.additional_gids, (str, bytes)) or not isinstance(self.additional_gids, (list, tuple)):
            _bad("additional_gids", self.additional_gids, "expected a list of integers")
        object.__setattr__(self, "additional_gids", tuple(self.additional_gids))
        for gid in self.additional_gids:
            _check_int("additional_gids", gid, 0, 0xFFFFFFFE, allow_none=False)
        if len(self.additional_gids) > 65536:
            _bad("additional_gids", len(self.additional_gids), "more than NGROUPS_MAX")
        for name in ("stdin", "stdout", "stderr"):
            value = getattr(self, name)
            special = _STDIO_SPECIAL.get(value) if type(value) is int else None
            if special == "STDOUT" and name != "stderr":
                _bad(name, value, "subprocess.STDOUT is for stderr only")
            if special is None:
                _stdio_fd(name, value)
        if not isinstance(self.text, bool):
            _bad("text", self.text, "expected True or False")
        for name in ("encoding", "errors"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                _bad(name, getattr(self, name), "expected a codec name (str) or None")
        object.__setattr__(self, "rlimits", _tuple_of(Rlimit, self.rlimits, "rlimits"))
        if isinstance(self.extra_files, (str, bytes)) or \
                not isinstance(self.extra_files, (list, tuple)):
            _bad("extra_files", self.extra_files, "expected a list of descriptors")
        object.__setattr__(self, "extra_files", tuple(self.extra_files))
        if len(self.extra_files) > 256:
            _bad("extra_files", len(self.extra_files), "at most 256 extra descriptors")
        for i, f in enumerate(self.extra_files):
            if f is None:
                _bad(f"extra_files[{i}]", f, "expected a descriptor")
            _stdio_fd(f"extra_files[{i}]", f)
        if not isinstance(self.terminal, bool):
            _bad("terminal", self.terminal, "expected True or False")
        if self.terminal and any(getattr(self, n) is not None
                                 for n in ("stdin", "stdout", "stderr")):
            _bad("terminal", True, "a terminal is the process's stdin, stdout and stderr: "
                                   "leave those None")

    @property
    def text_mode(self) -> bool:
        """Whether the PIPE ends are text files (as subprocess: text, encoding or errors)."""
        return self.text or self.encoding is not None or self.errors is not None

    def uid_gid(self, rootfs: Optional[str] = None) -> tuple[int, int]:
        """(uid, gid) of `user`; names are looked up in <rootfs>/etc/passwd and
        /etc/group (None: the host's /). A user name without a group takes the user's
        primary group, as su does; a number without one, gid 0."""
        if self.user is None:
            return 0, 0
        user, _, group = self.user.partition(":")
        if user.isdigit():
            uid, gid = int(user), 0
        else:
            entry = _lookup(rootfs, "passwd", user, "user")
            uid, gid = int(entry[2]), int(entry[3])
        if group:
            gid = int(group) if group.isdigit() else int(_lookup(rootfs, "group", group,
                                                                 "user")[2])
        return uid, gid

    def stdio_fds(self, made: Sequence[Optional[int]] = (None, None, None)
                  ) -> tuple[int, int, int]:
        """The process's stdin, stdout and stderr descriptors (-1: /dev/null). `made`: the
        process's ends of the pipes start() made where PIPE was asked (process.Stdio)."""
        out: list[int] = []
        for i, name in enumerate(("stdin", "stdout", "stderr")):
            value = getattr(self, name)
            if made[i] is not None:
                out.append(made[i])
            elif type(value) is int and value == STDOUT:
                out.append(out[1])
            elif type(value) is int and value == PIPE:
                _bad(name, value, "subprocess.PIPE: the pipe is made by start()")
            else:
                out.append(_stdio_fd(name, value))
        return out[0], out[1], out[2]

    def pipes(self) -> tuple[bool, bool, bool]:
        """Which of stdin, stdout and stderr are subprocess.PIPE."""
        return tuple(type(v) is int and v == PIPE  # type: ignore[return-value]
                     for v in (self.stdin, self.stdout, self.stderr))

    def extra_fds(self):
        return tuple(_stdio_fd("extra_files", f) for f in self.extra_files)


def _lookup(rootfs, table, name, field_name):
    """The fields of `name`'s line in <rootfs>/etc/<table> (passwd or group). The file is
    opened without following a symlink at any step, so that a container's /etc cannot
    point the lookup at a file of the host."""
    where = os.path.join(rootfs or "/", "etc", table)
    fd = None
    try:
        fd = os.open(rootfs or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        for part, flags in (("etc", os.O_DIRECTORY), (table, 0)):
            new = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags, dir_fd=fd)
            os.close(fd)
            fd = new
        with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
            fd = None
            lines = f.read(1 << 22).splitlines()
    except OSError as exc:
        _bad(field_name, name, f"cannot read {where}: {exc.strerror}")
    finally:
        if fd is not None:
            os.close(fd)
    for line in lines:
        entry = line.split(":")
        if entry[0] == name and len(entry) >= (4 if table == "passwd" else 3):
            ids = entry[2:4] if table == "passwd" else entry[2:3]
            if all(i.isdigit() for i in ids):
                return entry
    _bad(field_name, name, f"no such {'user' if table == 'passwd' else 'group'} in {where}")


def _stdio_fd(name, value):
    """-1 for /dev/null, else a descriptor number."""
    if value is None or (type(value) is int and value == DEVNULL):
        return -1
    if isinstance(value, bool):
        _bad(name, value, "expected None, a file descriptor or an object with fileno()")
    if isinstance(value, int):
        fd = value
    elif hasattr(value, "fileno"):
        try:
            fd = value.fileno()
        except Exception as exc:  # io.UnsupportedOperation, ValueError on closed files
            _bad(name, value, f"fileno() failed: {exc}")
    else:
        _bad(name, value, "expected None, a file descriptor or an object with fileno()")
    if not isinstance(fd, int) or fd < 0:
        _bad(name, value, "not an open file descriptor")
    return fd

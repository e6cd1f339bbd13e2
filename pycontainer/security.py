"""Isolation settings: capabilities, rlimits, device nodes, sysctls, id mappings, and the
safe defaults (Docker's capability set, runc's masked and read-only paths)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

from .errors import ConfigInvalidError

CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
CAP_NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}

# What Docker grants by default; everything else leaves the bounding set too.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)

# The host image (Config.rootfs None) shows the host's own files. Its default leaves out
# what lets root in the container read files that are not its own: DAC_OVERRIDE and
# DAC_READ_SEARCH skip the permission check, SETUID and SETGID become a file's owner or
# group, CHOWN and FOWNER take a file over or open its mode where a host directory is
# bound writable. (Files of root itself it reads as their owner: HOST_SECRET_PATHS.)
HOST_IMAGE_DROPPED_CAPS = ("CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_SETUID",
                           "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER")
HOST_IMAGE_CAPS = tuple(c for c in DEFAULT_CAPS if c not in HOST_IMAGE_DROPPED_CAPS)

# Root-owned secrets found on most hosts, masked in the host image by default: uid 0 in
# the container owns them, which no capability set changes. Missing ones are skipped.
HOST_SECRET_PATHS = (
    "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
    "/etc/security/opasswd", "/etc/ssh/ssh_host_rsa_key", "/etc/ssh/ssh_host_dsa_key",
    "/etc/ssh/ssh_host_ecdsa_key", "/etc/ssh/ssh_host_ed25519_key", "/etc/ssl/private",
    "/etc/krb5.keytab", "/root/.ssh",
)

# As `runc spec` generates them.
DEFAULT_MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
RLIM_INFINITY = (1 << 64) - 1

# Sysctls that belong to a namespace the container has of its own, by namespace (the key's
# components are names already: see _is_sysctl_name).
_NAMESPACED_SYSCTLS = (
    (re.compile(r"net\..+"), "net"),
    (re.compile(r"kernel\.(shm[a-z_]+|msg[a-z_]+|sem)"), "ipc"),
    (re.compile(r"fs\.mqueue\.[a-z_]+"), "ipc"),
    (re.compile(r"kernel\.(hostname|domainname)"), "uts"),
)


# One component of a sysctl name, a directory or file below /proc/sys: what the kernel's
# tables and interface names (eth0.100, br-1a2b) use. '.', '..' and names starting with
# '.' are refused below: with sysctl(8)'s '/' for a '.' inside a component, "net.//.x"
# would otherwise climb from /proc/sys/net to /proc/sys/x on the host.
_SYSCTL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def _bad(field, value, reason):
    raise ConfigInvalidError(field, value, reason)


def _names(field, value):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)):
        _bad(field, value, "expected a list of capability names such as 'CAP_KILL'")
    out = []
    for name in value:
        if not isinstance(name, str) or name.upper() not in CAP_NUMBER:
            _bad(field, name, "unknown capability")
        out.append(name.upper())
    return tuple(sorted(set(out), key=CAP_NUMBER.get))


@dataclass(frozen=True)
class Capabilities:
    """The five capability sets, by name. Defaults: Docker's 14 for bounding, effective and
    permitted; nothing inheritable or ambient."""

    bounding: tuple = DEFAULT_CAPS
    effective: tuple = DEFAULT_CAPS
    permitted: tuple = DEFAULT_CAPS
    inheritable: tuple = ()
    ambient: tuple = ()

    def __post_init__(self):
        for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
            object.__setattr__(self, name, _names(f"capabilities.{name}",
                                                  getattr(self, name)))
        missing = set(self.ambient) - (set(self.permitted) & set(self.inheritable))
        if missing:
            _bad("capabilities.ambient", sorted(missing),
                 "an ambient capability must also be permitted and inheritable")

    def masks(self, last_cap):
        """Bit masks for the C core; capabilities beyond the kernel's last are dropped
        (the caller warns about them)."""
        def mask(names):
            return sum(1 << CAP_NUMBER[n] for n in names if CAP_NUMBER[n] <= last_cap)
        return tuple(mask(getattr(self, s)) for s in
                     ("bounding", "effective", "permitted", "inheritable", "ambient"))

    def unsupported(self, last_cap):
        names = set(self.bounding + self.effective + self.permitted + self.inheritable +
                    self.ambient)
        return sorted(n for n in names if CAP_NUMBER[n] > last_cap)


@functools.lru_cache(maxsize=1)
def kernel_last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPABILITIES) - 1


@dataclass(frozen=True)
class Rlimit:
    """One resource limit: type by name (RLIMIT_NOFILE ...), soft and hard (None: infinity)."""

    type: str
    soft: Optional[int] = None
    hard: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.type, str) or self.type.upper() not in RLIMITS:
            _bad("rlimits.type", self.type, f"unknown resource; expected one of {sorted(RLIMITS)}")
        object.__setattr__(self, "type", self.type.upper())
        for name in ("soft", "hard"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                                  or not 0 <= v <= RLIM_INFINITY):
                _bad(f"rlimits.{name}", v, "expected a non-negative integer or None (unlimited)")
        soft = RLIM_INFINITY if self.soft is None else self.soft
        hard = RLIM_INFINITY if self.hard is None else self.hard
        if soft > hard:
            _bad("rlimits.soft", self.soft, f"greater than the hard limit {self.hard}")

    def c_form(self):
        return (RLIMITS[self.type],
                RLIM_INFINITY if self.soft is None else self.soft,
                RLIM_INFINITY if self.hard is None else self.hard)


@dataclass(frozen=True)
class Device:
    """A device node to create in the container's /dev (and to allow in its device cgroup)."""

    path: str
    type: str = "c"
    major: int = 0
    minor: int = 0
    file_mode: int = 0o666
    uid: int = 0
    gid: int = 0

    def __post_init__(self):
        if not isinstance(self.path, str) or not self.path.startswith("/dev/") \
                or "\0" in self.path or "/../" in self.path + "/":
            _bad("devices.path", self.path, "expected an absolute path below /dev/")
        if self.type not in ("c", "b", "u", "p"):
            _bad("devices.type", self.type, "expected 'c', 'u', 'b' or 'p' (a FIFO)")
        for name, hi in (("major", 0xFFFFFFFF), ("minor", 0xFFFFFFFF), ("file_mode", 0o7777),
                         ("uid", 0xFFFFFFFE), ("gid", 0xFFFFFFFE)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                _bad(f"devices.{name}", v, f"expected an integer 0..{hi}")

    def mode(self):
        kind = {"b": 0o060000, "p": 0o010000}.get(self.type, 0o020000)   # S_IFBLK, S_IFIFO, S_IFCHR
        return kind | self.file_mode


@dataclass(frozen=True)
class IdMap:
    """One line of a uid_map or gid_map: container_id host_id size."""

    container_id: int
    host_id: int
    size: int

    def __post_init__(self):
        for name in ("container_id", "host_id", "size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
                _bad(f"id_mappings.{name}", v, "expected an integer 0..2^32-1")
        if self.size == 0:
            _bad("id_mappings.size", self.size, "must be at least 1")


def check_sysctl(sysctl, namespaces):
    """Only sysctls of namespaces the container owns: others would change the host."""
    if not isinstance(sysctl, dict):
        _bad("sysctl", sysctl, "expected a dict of name -> value")
    for key, value in sysctl.items():
        if not isinstance(key, str) or not _is_sysctl_name(key):
            _bad("sysctl", key, "expected a sysctl name such as 'net.ipv4.ip_forward' (each "
                 "'.'-separated component a name: letters, digits, '_', '-', and '/' for a "
                 "'.' inside one; no empty, '.' or '..' component)")
        if not isinstance(value, str) or "\0" in value:
            _bad(f"sysctl[{key!r}]", value, "expected a string value")
        for pattern, ns in _NAMESPACED_SYSCTLS:
            if pattern.fullmatch(key):
                if ns not in namespaces:
                    _bad(f"sysctl[{key!r}]", value,
                         f"needs the container's own {ns!r} namespace")
                break
        else:
            _bad(f"sysctl[{key!r}]", value, "not a namespaced sysctl: it would change the host")


def _is_sysctl_name(key):
    """Whether every component of `key` is a file name below /proc/sys. sysctl(8) spells
    a '.' inside a component (an interface name) as '/'."""
    names = [part.replace("/", ".") for part in key.split(".")]
    return len(names) >= 2 and all(_SYSCTL_NAME.fullmatch(n) for n in names)


def sysctl_path(key):
    """The /proc/sys file of a key (check_sysctl has accepted it; the init opens it with a
    resolver that cannot leave /proc/sys all the same: csrc/rootfs.c, open_sysctl)."""
    return "/proc/sys/" + key.replace(".", "\0").replace("/", ".").replace("\0", "/")

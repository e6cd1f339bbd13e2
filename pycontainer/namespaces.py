"""The kinds of namespace a container can have: one table, read by config (names, which
may be joined), _core (clone flags for the spawn), network and seccomp (clone flags), the
OCI layer (its names) and Factory.create (the namespace-file check).

csrc/ takes the flags from <sched.h>; tests/unit/test_namespaces.py asks the kernel that
this table's flags and /proc file names agree (ioctl NS_GET_NSTYPE on /proc/self/ns/*).
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

from .errors import ConfigInvalidError

__all__ = ["Namespace", "TABLE", "BY_NAME", "NAMES", "JOINABLE", "DEFAULT", "clone_flags",
           "check_file", "tracers_in"]


@dataclass(frozen=True)
class Namespace:
    name: str           # as Config.namespaces names it
    clone_flag: int     # CLONE_NEW*, which is also what ioctl(NS_GET_NSTYPE) answers
    joinable: bool      # a Config may join an existing one by path
    oci: str            # its linux.namespaces[].type in an OCI config.json
    proc: str           # its file in /proc/<pid>/ns/


# In the order Config.namespaces lists them (the order a new init makes them in).
# Joinable: a user namespace is the caller's to make; every other one may be joined by
# path (a Kubernetes pod's containers join its pid namespace; a joined mount namespace is
# used as it is, with no root of the Config's).
TABLE = (
    Namespace("user", 0x10000000, False, "user", "user"),
    Namespace("mount", 0x00020000, True, "mount", "mnt"),
    Namespace("pid", 0x20000000, True, "pid", "pid"),
    Namespace("uts", 0x04000000, True, "uts", "uts"),
    Namespace("ipc", 0x08000000, True, "ipc", "ipc"),
    Namespace("net", 0x40000000, True, "network", "net"),
    Namespace("cgroup", 0x02000000, True, "cgroup", "cgroup"),
)
BY_NAME = {ns.name: ns for ns in TABLE}
NAMES = tuple(ns.name for ns in TABLE)
JOINABLE = tuple(ns.name for ns in TABLE if ns.joinable)
DEFAULT = ("mount", "pid", "uts", "ipc", "net")      # what a Config gets unless it says

_NS_GET_NSTYPE = 0xb703            # _IO(0xb7, 0x3)


def clone_flags(names):
    """The CLONE_NEW* flags of these namespace names, ORed."""
    flags = 0
    for name in names:
        flags |= BY_NAME[name].clone_flag
    return flags


def check_file(name, path):
    """That `path` is a namespace file of kind `name`, asked of the kernel; else
    ConfigInvalidError naming the field namespaces.<name>."""
    field = f"namespaces.{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigInvalidError(field, path, f"cannot open: {exc.strerror}") from None
    try:
        nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        raise ConfigInvalidError(field, path, "not a namespace file") from None
    finally:
        os.close(fd)
    if nstype != BY_NAME[name].clone_flag:
        raise ConfigInvalidError(field, path, f"not a {name} namespace")


_NS_GET_PARENT = 0xb702            # _IO(0xb7, 0x2)
_CAP_SYS_PTRACE = 19


def tracers_in(pid_ns_fd):
    """Pids of the processes of the pid namespace `pid_ns_fd` whose bounding set holds
    CAP_SYS_PTRACE in our user namespace or an ancestor of it (theirs is not below ours)
    but not every capability of ours (a privileged one may do all we may), sorted. Such a process passes the non-dumpable check of any process of ours it can
    see: an init made in that namespace is a fork of ours until it execs (docs/
    SECURITY.md). Processes we may not inspect (another user's, without privileges) and
    those that exit meanwhile are not listed."""
    target = os.fstat(pid_ns_fd)
    own_user = os.stat("/proc/self/ns/user")
    own_bounding = _bounding("self")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{name}/ns/pid")
            if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
                continue
            bounding = _bounding(name)
            # One that may hold all we hold (a privileged container) is no boundary.
            if bounding >> _CAP_SYS_PTRACE & 1 and bounding & own_bounding != own_bounding \
                    and not _user_ns_below(f"/proc/{name}/ns/user", own_user):
                found.append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return sorted(found)


def _bounding(pid):
    with open(f"/proc/{pid}/status", "rb") as f:
        status = f.read()
    return int(status.split(b"\nCapBnd:", 1)[1].split(None, 1)[0], 16)


def _user_ns_below(path, own):
    """Whether the user namespace at `path` is a descendant of `own` (an os.stat_result):
    its parents, walked up with NS_GET_PARENT, reach it (EPERM: past what we may see)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(33):                 # the kernel nests at most 32 user namespaces
            try:
                parent = fcntl.ioctl(fd, _NS_GET_PARENT)
            except OSError:
                return False
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                return True
        return False
    finally:
        os.close(fd)

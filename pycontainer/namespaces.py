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
           "check_file"]


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

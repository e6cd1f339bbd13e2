"""cgroupfs file I/O: read, write and parse the small files of a cgroup, list its
processes, remove a cgroup tree. Shared by every other module of the package.

Small cgroup files are read and written with os.open/os.read/os.write: they are kernfs
files read in one call, and the text wrappers of open() cost more than the syscalls.
"""
from __future__ import annotations

import errno
import os
import time

from ..errors import ContainerSystemError

MAX = (1 << 63) - 1          # what "max" (no limit) reads as, libcontainer's convention
THAWED, FREEZING, FROZEN = "THAWED", "FREEZING", "FROZEN"     # freezer states, as v1 spells them


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


def freezer_state_of(freeze, events):
    """THAWED, FREEZING or FROZEN from the bytes of a cgroup2 dir's cgroup.freeze (what was
    asked) and cgroup.events (whose 'frozen' line says whether the kernel got there)."""
    if freeze.strip() == b"0":
        return THAWED
    return FROZEN if b"frozen 1" in events else FREEZING


def freezer_state(d, v2):
    """THAWED, FREEZING or FROZEN of the freezer of `d`: a cgroup2 dir (v2) or a v1
    freezer dir (whose freezer.state reads FROZEN too when a parent froze it)."""
    if v2:
        freeze = read_text(os.path.join(d, "cgroup.freeze")).encode()
        if freeze.strip() == b"0":
            return THAWED
        return freezer_state_of(freeze, read_text(os.path.join(d, "cgroup.events")).encode())
    return read_text(os.path.join(d, "freezer.state")).strip()


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

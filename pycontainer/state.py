"""RunState and the on-disk state record.

`<root>/<id>/state.json` holds what the kernel cannot tell us: the config, the cgroup
paths, the init's pid and start time. It is replaced atomically (write a temp file, rename)
so a reader sees the old record or the new one, never half of one. Whether the init is
alive or the cgroup frozen is always asked of the kernel, never stored.
"""
from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import dataclass, field, fields
from typing import Optional

from .errors import ContainerError, ContainerNotExistError, InvalidIdError

STATE_VERSION = 1
STATE_FILE = "state.json"
_READ_SIZE = 1 << 16
EXEC_FIFO = "exec.fifo"      # a staged init waits to open it for writing (runc's name)
_ID = re.compile(r"[A-Za-z0-9_.+-]{1,1024}")
_IFNAME = re.compile(r"[^/:%\s]{1,15}")


class RunState(enum.Enum):
    CREATED = "created"     # no process yet
    RUNNING = "running"
    PAUSING = "pausing"     # freeze requested, not yet reported done by the kernel
    PAUSED = "paused"
    STOPPED = "stopped"     # its init has exited

    def __str__(self):
        return self.value


class StateInvalidError(ContainerError):
    """state.json exists but cannot be read: truncated, not JSON, or from a newer version."""

    code = "StateInvalid"


def check_id(container_id):
    """Ids: 1-1024 characters of [A-Za-z0-9_.+-], not starting with a dot."""
    if not isinstance(container_id, str) or not _ID.fullmatch(container_id) \
            or container_id.startswith("."):
        raise InvalidIdError(
            f"invalid container id {container_id!r}: expected 1-1024 characters of "
            "[A-Za-z0-9_.+-], not starting with '.'", operation="check id")
    return container_id


@dataclass
class StateRecord:
    id: str
    nonce: str                       # distinguishes this container from a later one with the same id
    created: float                   # time.time() at create
    config: dict
    cgroups: dict
    init_pid: Optional[int] = None
    init_start_time: Optional[int] = None   # field 22 of /proc/<pid>/stat: guards pid reuse
    version: int = STATE_VERSION
    extra: dict = field(default_factory=dict)

    def to_json(self):
        # Not asdict(): it deep-copies the (already plain) config on every write.
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)},
                          separators=(",", ":"))


def write_state(state_dir, record):
    """Replace state.json with `record`; returns the bytes written (read_state's cache)."""
    tmp = os.path.join(state_dir, f".{STATE_FILE}.{os.getpid()}.tmp")
    data = record.to_json().encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        if os.write(fd, data) != len(data):
            raise OSError(28, "short write", tmp)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, os.path.join(state_dir, STATE_FILE))
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return data


def read_state(state_dir, container_id, cache=None):
    """The validated StateRecord. `cache`, a [raw bytes, record] list the caller keeps:
    when the file's bytes are the same as last time, the same (not to be mutated) record
    comes back without parsing and checking it again."""
    path = f"{state_dir}/{STATE_FILE}"     # os.path.join costs more than the read here
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ContainerNotExistError("no such container", container_id=container_id) from None
    except OSError as exc:
        raise StateInvalidError(f"{path}: {os.strerror(exc.errno)}", container_id=container_id,
                                operation="read state") from None
    try:
        # One read returns the whole of a file this small; a short one is its end.
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:
            chunks = [data]
            while chunk := os.read(fd, _READ_SIZE):
                chunks.append(chunk)
            data = b"".join(chunks)
    except OSError as exc:        # EISDIR ...
        raise StateInvalidError(f"{path}: {os.strerror(exc.errno)}", container_id=container_id,
                                operation="read state") from None
    finally:
        os.close(fd)
    if cache is not None:
        cached = cache[:]        # one copy: another thread may store a new pair meanwhile
        if cached[0] == data:
            return cached[1]
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        version = raw.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > STATE_VERSION:
            raise ValueError(f"state version {version!r} is newer than this pycontainer's "
                             f"({STATE_VERSION})")
        record = StateRecord(**raw)
        _check_record(record, container_id)
        if cache is not None:
            cache[:] = [data, record]
        return record
    except (ValueError, TypeError) as exc:
        raise StateInvalidError(f"{path}: {exc}", container_id=container_id,
                                operation="read state") from None


def _is_int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_record(r, container_id):
    """Every field of the right type and range: a record that passes cannot make a later
    operation fail with anything but a ContainerError."""
    if r.id != container_id and container_id is not None and not container_id.startswith("."):
        raise ValueError(f"id {r.id!r} is not the container's ({container_id!r})")
    if not isinstance(r.id, str) or not _ID.fullmatch(r.id) or r.id.startswith("."):
        raise ValueError(f"bad id {r.id!r}")
    if not isinstance(r.nonce, str) or not r.nonce:
        raise ValueError(f"bad nonce {r.nonce!r}")
    if not isinstance(r.created, (int, float)) or isinstance(r.created, bool):
        raise ValueError(f"bad created {r.created!r}")
    for name in ("config", "cgroups", "extra"):
        if not isinstance(getattr(r, name), dict):
            raise ValueError(f"{name} is not an object")
    if r.init_pid is not None and not _is_int(r.init_pid, 1, (1 << 22)):
        raise ValueError(f"bad init_pid {r.init_pid!r}")
    if r.init_start_time is not None and not _is_int(r.init_start_time, 0, (1 << 63) - 1):
        raise ValueError(f"bad init_start_time {r.init_start_time!r}")
    ns = r.extra.get("init_pidns")
    if ns is not None and not isinstance(ns, str):
        raise ValueError(f"bad extra.init_pidns {ns!r}")
    # The host ends of the init's veths (pycontainer.network), which destroy deletes.
    veths = r.extra.get("veths", [])
    if not isinstance(veths, list) or not all(
            isinstance(v, dict) and set(v) == {"name", "ifindex"}
            and isinstance(v["name"], str) and _IFNAME.fullmatch(v["name"])
            and _is_int(v["ifindex"], 1, (1 << 31) - 1) for v in veths):
        raise ValueError(f"bad extra.veths {veths!r}")


def process_start_time(pid):
    """Start time of pid in clock ticks since boot, or None when there is no such process.
    (pid, start time) names a process for good: a reused pid has a later start time."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    # comm (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    rest = data[data.rindex(b")") + 2:].split()
    return int(rest[19])


def pidns_of(pid):
    """The pid namespace of pid as readlink shows it ("pid:[4026531836]"), or None."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def open_init_pidfd(record):
    """A new pidfd of the init the record names, or None when that process is gone (never
    started, exited and reaped, or its pid now belongs to another process). A pidfd of an
    exited but unreaped init is returned: it polls readable."""
    if record.init_pid is None:
        return None
    try:
        fd = os.pidfd_open(record.init_pid)
    except ProcessLookupError:
        return None
    # Checked after opening: the pidfd now pins whichever process has the pid. Start times
    # are in clock ticks: a pid reused within one tick needs the pid namespace to tell it
    # apart.
    if process_start_time(record.init_pid) != record.init_start_time or \
            record.extra.get("init_pidns", pidns_of(record.init_pid)) != \
            pidns_of(record.init_pid):
        os.close(fd)
        return None
    return fd


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass

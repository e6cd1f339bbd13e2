"""RunState and the on-disk state record.

`<root>/<id>/state.json` holds what the kernel cannot tell us: the config, the cgroup
paths, the init's pid and start time. It is replaced atomically (write a temp file, rename)
so a reader sees the old record or the new one, never half of one. Whether the init is
alive or the cgroup frozen is always asked of the kernel, never stored.
"""
from __future__ import annotations

import errno
import os
import stat

from . import cjson

from .errors import (ContainerError, ContainerNotExistError, ContainerNotRunningError,
                     ContainerSystemError, InvalidIdError)

STATE_VERSION = 1
STATE_FILE = "state.json"
_READ_SIZE = 1 << 16
# The largest state.json read or written. A record is a Config (env, mounts, a seccomp
# profile), the OCI extra data (annotations, hooks) and a few numbers: real ones are a few
# KiB, and the kernel caps what most of it can be (an execve's arguments and environment
# together at 6 MiB). Anything bigger is not ours, and is not read into memory.
STATE_MAX = 16 << 20
# A state file is opened without following a symlink (one to /dev/zero would be read
# forever) and without blocking (a FIFO would wait for a writer forever).
_STATE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
          (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
EXEC_FIFO = "exec.fifo"      # a staged init waits to open it for writing (runc's name)
# Checked without re (whose import, with enum's, costs a short command more than its
# work): an id is 1-1024 of these, an interface name 1-15 characters, none of "/:%" nor
# whitespace.
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-")


def _is_id(text):
    return isinstance(text, str) and 1 <= len(text) <= 1024 and _ID_CHARS.issuperset(text)


def _is_ifname(text):
    return 1 <= len(text) <= 15 and not any(c in "/:%" or c.isspace() for c in text)


def _short(value):
    """repr(value), cut short (reprlib), for messages about a damaged record."""
    import reprlib                       # lazily: only a damaged record needs it
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 2, 60, 60
    return short.repr(value)


class StateInvalidError(ContainerError):
    """state.json exists but cannot be read: truncated, not JSON, or from a newer version."""

    code = "StateInvalid"


# Opening the state root and the entries in it: never through a symlink.
DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_NAME = 255            # NAME_MAX: a longer id's directory is named by its hash


def not_ours(st):
    """Why a state root or directory (its os.stat_result) cannot be trusted, or None:
    another user's, or writable by group or others (who could plant state in it)."""
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by uid {os.geteuid()} (this process)"
    if st.st_mode & 0o022:
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def default_root():
    """The state root of a Factory given none (Factory's, and the CLI's without --root)."""
    if os.geteuid() == 0:
        return "/run/pycontainer"
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.geteuid()}"
    if os.path.isdir(runtime):
        return os.path.join(runtime, "pycontainer")
    # No login session (a service, a CI job, su): a root of our own in the temporary
    # directory. A squatter's directory there is refused as any root not ours is.
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", f"pycontainer-{os.geteuid()}")


def check_id(container_id):
    """Ids: 1-1024 characters of [A-Za-z0-9_.+-], not starting with a dot."""
    if not isinstance(container_id, str) or not _is_id(container_id) \
            or container_id.startswith("."):
        raise InvalidIdError(
            f"invalid container id {container_id!r}: expected 1-1024 characters of "
            "[A-Za-z0-9_.+-], not starting with '.'", operation="check id")
    return container_id


class StateRecord:
    """One state.json. A plain class, not a dataclass: `state` and `list` read records
    without importing dataclasses (and inspect with it). Built from a parsed file as
    StateRecord(**raw): a missing or unknown key is a TypeError, as a dataclass's is."""

    FIELDS = ("id", "nonce", "created", "config", "cgroups", "init_pid", "init_start_time",
              "version", "extra")
    __slots__ = FIELDS

    def __init__(self, id, nonce, created, config, cgroups, init_pid=None,
                 init_start_time=None, version=STATE_VERSION, extra=None):
        self.id = id
        self.nonce = nonce               # tells this container from a later one with its id
        self.created = created           # time.time() at create
        self.config = config
        self.cgroups = cgroups
        self.init_pid = init_pid
        self.init_start_time = init_start_time   # field 22 of /proc/<pid>/stat: pid reuse
        self.version = version
        self.extra = {} if extra is None else extra

    def _values(self):
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other):
        return type(other) is StateRecord and self._values() == other._values()

    def __repr__(self):
        return "StateRecord(" + ", ".join(f"{n}={v!r}" for n, v in
                                          zip(self.FIELDS, self._values())) + ")"

    def replace(self, **changes):
        """A copy with `changes` (dataclasses.replace's meaning)."""
        return StateRecord(**{**dict(zip(self.FIELDS, self._values())), **changes})

    def to_json(self):
        return cjson.dumps(dict(zip(self.FIELDS, self._values())), separators=(",", ":"))


def write_state(state_dir, record):
    """Replace state.json with `record`; returns the bytes written (read_state's cache)."""
    data = record.to_json().encode()
    if len(data) > STATE_MAX:
        # What could not be read back must not be written: the container could not be
        # loaded (nor destroyed by what it recorded).
        raise ContainerSystemError(errno.EFBIG, f"the state record is {len(data)} bytes, over "
                                   f"the limit of {STATE_MAX}")
    tmp = os.path.join(state_dir, f".{STATE_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
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


def read_state(state_dir, container_id, cache=None, dir_fd=None):
    """The validated StateRecord. `cache`, a [raw bytes, record] list the caller keeps:
    when the file's bytes are the same as last time, the same (not to be mutated) record
    comes back without parsing and checking it again. `dir_fd`: the state directory, opened
    by the caller (state_dir then only names it in messages)."""
    path = f"{state_dir}/{STATE_FILE}"     # os.path.join costs more than the read here
    try:
        if dir_fd is None:
            fd = os.open(path, _STATE_OPEN)
        else:
            fd = os.open(STATE_FILE, _STATE_OPEN, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ContainerNotExistError("no such container", container_id=container_id) from None
    except OSError as exc:
        why = "a symlink" if exc.errno == errno.ELOOP else os.strerror(exc.errno)
        raise StateInvalidError(f"{path}: {why}", container_id=container_id,
                                operation="read state") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((what for test, what in _KINDS if test(st.st_mode)), "special")
            raise StateInvalidError(f"{path}: a {kind} file, not a regular one",
                                    container_id=container_id, operation="read state")
        # One read returns the whole of a file this small; a short one is its end.
        data = os.read(fd, _READ_SIZE)
        if len(data) == _READ_SIZE:
            chunks, size = [data], len(data)
            while size <= STATE_MAX and (chunk := os.read(fd, _READ_SIZE)):
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except OSError as exc:
        raise StateInvalidError(f"{path}: {os.strerror(exc.errno)}", container_id=container_id,
                                operation="read state") from None
    finally:
        os.close(fd)
    if len(data) > STATE_MAX:
        raise StateInvalidError(f"{path}: larger than the limit of {STATE_MAX} bytes",
                                container_id=container_id, operation="read state")
    if cache is not None:
        cached = cache[:]        # one copy: another thread may store a new pair meanwhile
        if cached[0] == data:
            return cached[1]
    try:
        raw = cjson.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        version = raw.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > STATE_VERSION:
            raise ValueError(f"state version {_short(version)} is newer than this "
                             f"pycontainer's ({STATE_VERSION})")
        record = StateRecord(**raw)
        _check_record(record, container_id)
        if cache is not None:
            cache[:] = [data, record]
        return record
    except RecursionError:
        raise StateInvalidError(f"{path}: nested too deeply", container_id=container_id,
                                operation="read state") from None
    except (ValueError, TypeError) as exc:
        raise StateInvalidError(f"{path}: {str(exc)[:200]}", container_id=container_id,
                                operation="read state") from None


def _is_int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_record(r, container_id):
    """Every field of the right type and range: a record that passes cannot make a later
    operation fail with anything but a ContainerError."""
    if r.id != container_id and container_id is not None and not container_id.startswith("."):
        raise ValueError(f"id {_short(r.id)} is not the container's ({container_id!r})")
    if not isinstance(r.id, str) or not _is_id(r.id) or r.id.startswith("."):
        raise ValueError(f"bad id {_short(r.id)}")
    if not isinstance(r.nonce, str) or not r.nonce:
        raise ValueError(f"bad nonce {_short(r.nonce)}")
    if not isinstance(r.created, (int, float)) or isinstance(r.created, bool):
        raise ValueError(f"bad created {_short(r.created)}")
    for name in ("config", "cgroups", "extra"):
        if not isinstance(getattr(r, name), dict):
            raise ValueError(f"{name} is not an object")
    if r.init_pid is not None and not _is_int(r.init_pid, 1, (1 << 22)):
        raise ValueError(f"bad init_pid {_short(r.init_pid)}")
    if r.init_start_time is not None and not _is_int(r.init_start_time, 0, (1 << 63) - 1):
        raise ValueError(f"bad init_start_time {_short(r.init_start_time)}")
    ns = r.extra.get("init_pidns")
    if ns is not None and not isinstance(ns, str):
        raise ValueError(f"bad extra.init_pidns {_short(ns)}")
    if not isinstance(r.extra.get("init_pidns_shared", False), bool):
        raise ValueError("bad extra.init_pidns_shared")
    # The host ends of the init's veths (pycontainer.network), which destroy deletes.
    veths = r.extra.get("veths", [])
    if not isinstance(veths, list) or not all(
            isinstance(v, dict) and set(v) == {"name", "ifindex"}
            and isinstance(v["name"], str) and _is_ifname(v["name"])
            and _is_int(v["ifindex"], 1, (1 << 31) - 1) for v in veths):
        raise ValueError(f"bad extra.veths {_short(veths)}")
    # The caller's own data (Factory.create(extra=)); the OCI layer keeps its under "oci".
    user = r.extra.get("user", {})
    if not isinstance(user, dict) or not isinstance(user.get("oci", {}), dict):
        raise ValueError(f"bad extra.user {_short(user)}")


def process_start_time(pid):
    """Start time of pid in clock ticks since boot, or None when there is no such process.
    (pid, start time) names a process for good: a reused pid has a later start time."""
    stat = process_stat(pid)
    return None if stat is None else stat[1]


def process_stat(pid):
    """(state letter, start time) of pid from /proc/<pid>/stat, or None when there is no
    such process. A zombie's state is Z (X: being reaped)."""
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
    return rest[0].decode(), int(rest[19])


def pidns_of(pid):
    """The pid namespace of pid as readlink shows it ("pid:[4026531836]"), or None."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


_own_pidns = []       # [this process's pid namespace], read once: it never changes


def own_pidns():
    if not _own_pidns:
        _own_pidns.append(os.readlink("/proc/self/ns/pid"))
    return _own_pidns[0]


def open_init_pidfd(record):
    """A new pidfd of the init the record names, or None when that process is gone (never
    started, exited and reaped, or its pid now belongs to another process). A pidfd of an
    exited but unreaped init is returned: it polls readable.

    The record is not trusted to name our init: the process must have the recorded start
    time and pid namespace, and that namespace must not be ours (an init is pid 1 of a
    namespace of its own; a host process is in ours) unless the record says the container
    shares it (extra.init_pidns_shared: no pid namespace of its own, Kubernetes' hostPID).
    A record without either is not believed: the process is taken for gone, so nothing is
    signalled or killed."""
    pid, start, ns = record.init_pid, record.init_start_time, record.extra.get("init_pidns")
    if pid is None or start is None or not isinstance(ns, str) or \
            (ns == own_pidns() and record.extra.get("init_pidns_shared") is not True):
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    # Checked after opening: the pidfd now pins whichever process has the pid. Start times
    # are in clock ticks: a pid reused within one tick needs the pid namespace to tell it
    # apart.
    if process_start_time(pid) != start or pidns_of(pid) != ns:
        os.close(fd)
        return None
    return fd


def remove_state_dir(dir_fd, state_dir, root_fd=None):
    """Remove a state directory (`dir_fd`, open; `state_dir`, its path; `root_fd`, when
    given, the state root it is in) and whatever else is in it (an exec fifo, a killed
    writer's temp file, an earlier version's lock file). Its entries are removed through
    dir_fd, never followed, and nothing new is opened when state.json was all there was:
    this runs on error paths, where descriptors may be what ran out. (rmdir does not
    follow a symlink either.)"""
    remove_entry(STATE_FILE, dir_fd)
    name = os.path.basename(state_dir) if root_fd is not None else state_dir
    try:
        os.rmdir(name, dir_fd=root_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
        for entry in os.listdir(dir_fd):
            remove_entry(entry, dir_fd)
        os.rmdir(name, dir_fd=root_fd)


def remove_entry(path, dir_fd=None):
    """Unlink `path` (relative to dir_fd); a directory in its place is removed as a tree,
    whose symlinks are not followed; a missing one is fine."""
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:                       # a state.json someone made a directory
        import shutil                               # lazily: rarely needed
        shutil.rmtree(path, dir_fd=dir_fd)


def release_staged(state_dir, init_pidfd, timeout=10.0):
    """Let a staged init run (Container.exec, runc's `start`): open its exec fifo in
    `state_dir` for reading (which completes the init's open for writing) and read its
    byte; fail if the init dies instead. Then read on until EOF, which comes when the init
    execs (its end is close-on-exec) or exits: anything read before it is the init's
    report of a failure, returned (b"": it exec'd)."""
    import select
    import time
    fd = os.open(os.path.join(state_dir, EXEC_FIFO), os.O_RDONLY | os.O_NONBLOCK |
                 os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(init_pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            for ready, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                if ready == fd and os.read(fd, 1):
                    return _read_report(fd)
                if ready == init_pidfd:
                    raise ContainerNotRunningError("the staged init exited before exec")
            if time.monotonic() >= deadline:
                raise ContainerSystemError(errno.ETIMEDOUT, "the staged init did not "
                                           f"open {EXEC_FIFO} within {timeout} s")
    finally:
        os.close(fd)


def _read_report(fd):
    """The released init's report on the fifo, until EOF. No time limit: as start()
    waits for an unstaged init, this waits for the exec (or the exit) that ends it."""
    import select
    report = b""
    while True:
        select.select([fd], [], [])
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            continue
        if not data:
            return report
        report += data


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def __getattr__(name):
    # RunState is an enum: enum's import costs `state` and `kill` more than their work,
    # so it is defined in runstate.py and imported on first use (PEP 562).
    if name == "RunState":
        from .runstate import RunState
        return RunState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The commands a container engine runs most, without loading the container: the `state`
and `list` documents, `kill` of the init, `start` of a created container, `pause`,
`resume`, and `delete` of a stopped one. No Config, cgroup manager or Container is built
and the modules that build them are not imported: a containerd shim or podman runs the
command line for each of these, and most of the cost of a load is the imports.

What is read and done is what a loaded Container reads and does (pycontainer/container.py):
state.json (pycontainer.state.read_state, the same checks), the init's liveness (a pidfd
of the recorded pid with the recorded start time and pid namespace), the freezer of the
cgroup the record names (cgroups.fs.freezer_state), the staged init's release
(state.release_staged), cgroup and state directory removal (cgroups.fs.remove_cgroup,
state.remove_state_dir); mutations hold the container's lock, as Container's do. The
documents are made by oci.state.state_document from a _RecordView, so they are the same
as the full path's.

Only the ordinary case is handled here: the state root and the state directory ours (the
same checks as Factory's), an id short enough to be its own directory name, for what
reads or changes the cgroups a record of them as create() makes them by default, no
hooks to run, no veths, no process to kill on delete. For anything else, and for every
error before something has changed, the functions return None (or leave the id to the
caller, for list), and the caller does it the full way, which reports whatever is wrong
exactly as before.
"""
from __future__ import annotations

import os
import select

from ..errors import ContainerError, ContainerNotExistError
from ..state import (DIR_OPEN, EXEC_FIFO, MAX_NAME, check_id, not_ours, open_init_pidfd,
                     read_state, release_staged, remove_entry, remove_state_dir, write_state)

__all__ = ["state_document", "state_documents", "kill", "delete", "pause", "resume", "start"]

_FREEZER_TO_STATUS = {"THAWED": "running", "FREEZING": "pausing", "FROZEN": "paused"}


class _Fallback(Exception):
    """Not the ordinary case: the caller loads the container the full way."""


def _ours(fd):
    return not_ours(os.fstat(fd)) is None


def _open_root(root):
    """The state root's descriptor, or None when there is none (no container exists)."""
    try:
        fd = os.open(root, DIR_OPEN)
    except FileNotFoundError:
        return None
    except OSError:
        raise _Fallback() from None
    if not _ours(fd):
        os.close(fd)
        raise _Fallback()
    return fd


def _freezer_status(cgroups, container_id):
    """running, pausing or paused from the freezer of the cgroup record `cgroups`."""
    if not isinstance(cgroups, dict) or cgroups.get("version") != 1 \
            or cgroups.get("id") != container_id or cgroups.get("none"):
        raise _Fallback()
    name, unified = cgroups.get("name"), cgroups.get("unified")
    v1 = cgroups.get("v1") or {}
    if not isinstance(v1, dict) or not isinstance(name, str):
        raise _Fallback()
    # Every dir the record names must look like one create() makes (the full load checks
    # more, and reports what is wrong): else the record is not taken at its word here.
    for path in ([unified] if unified is not None else []) + list(v1.values()):
        if not isinstance(path, str) or not path.startswith("/") \
                or os.path.normpath(path) != path or os.path.basename(path) != name:
            raise _Fallback()
    d = unified or v1.get("freezer")
    if d is None:
        raise _Fallback()
    from ..cgroups.fs import freezer_state  # lazily: only a started init's state reads it
    try:
        return _FREEZER_TO_STATUS[freezer_state(d, v2=bool(unified))]
    except (ContainerError, KeyError, UnicodeDecodeError):
        raise _Fallback() from None


class _RecordView:
    """What oci.state.state_document asks of a Container, answered from its record."""

    def __init__(self, record):
        self.id = record.id
        self._record = record
        self._status = self._pid = None
        if record.init_pid is None:
            self._status = "created"
            return
        if not _init_alive(record):
            self._status = "stopped"
            return
        self._pid = record.init_pid
        self._status = "created" if record.extra.get("staged") else \
            _freezer_status(record.cgroups, record.id)

    def extra(self):
        return dict(self._record.extra.get("user") or {})

    def run_state(self):
        return self._status

    def init_pid(self):
        return self._pid


def _record(root, root_fd, container_id):
    """The container's StateRecord, read as Factory.load reads it."""
    try:
        fd = os.open(container_id, DIR_OPEN, dir_fd=root_fd)
    except FileNotFoundError:
        raise ContainerNotExistError("no such container", container_id=container_id,
                                     operation="load") from None
    except OSError:
        raise _Fallback() from None
    try:
        if not _ours(fd):
            raise _Fallback()
        return read_state(os.path.join(root, container_id), container_id, dir_fd=fd)
    finally:
        os.close(fd)


def _document(root, root_fd, container_id):
    from .state import state_document
    return state_document(_RecordView(_record(root, root_fd, container_id)))


def _one(root, container_id, work):
    """work(record) of the container `container_id` under the state root `root`, or None
    when this module leaves it to the full path (_Fallback)."""
    if len(check_id(container_id)) > MAX_NAME:
        return None
    try:
        root_fd = _open_root(root)
        if root_fd is None:
            raise ContainerNotExistError("no such container", container_id=container_id)
        try:
            return work(_record(root, root_fd, container_id))
        finally:
            os.close(root_fd)
    except _Fallback:
        return None


def state_document(root, container_id):
    """The state document of the container `container_id` under the state root `root`
    (an absolute path), or None: load it the full way. Raises the ContainerErrors the full
    path raises for a missing container, a bad id or an unreadable state.json."""
    from .state import state_document as document
    return _one(root, container_id, lambda record: document(_RecordView(record)))


def kill(root, container_id, signum):
    """Send `signum` to the container's live init (`kill` without --all), as
    Container.signal does: through a pidfd of the process with the recorded pid, start
    time and pid namespace. True when sent; None: use the full path, which also gives the
    errors (no live init: "container not running"; a failed send)."""
    def send(record):
        fd = _live_init_fd(record)
        if fd is None:
            raise _Fallback()               # no live init: the full path's error
        try:
            from _signal import pidfd_send_signal   # not signal, which imports enum
            pidfd_send_signal(fd, signum)
        except OSError:
            raise _Fallback() from None
        finally:
            os.close(fd)
        return True
    return _one(root, container_id, send)


def state_documents(root, full, warn):
    """The state documents of every container under `root`, sorted by id, as Runtime.list
    makes them, or None: list the full way. `full(id)` gives the document of one container
    this module leaves to the full path; warn(id, error): one whose state cannot be read."""
    try:
        root_fd = _open_root(root)
    except _Fallback:
        return None
    if root_fd is None:
        return []
    docs = []
    try:
        with os.scandir(root_fd) as it:
            names = sorted(e.name for e in it)
        for name in names:
            if name.startswith("."):
                if name.startswith(".long-"):
                    return None          # an id stored under its hash: Factory's business
                continue
            try:
                container_id = check_id(name)
            except ContainerError:
                continue             # not a name this runtime makes
            try:
                try:
                    docs.append(_document(root, root_fd, container_id))
                except _Fallback:
                    docs.append(full(container_id))
            except ContainerNotExistError:
                continue            # destroyed meanwhile, or being created
            except ContainerError as exc:
                warn(container_id, exc)
    finally:
        os.close(root_fd)
    return docs


_CGROUP_MOUNT = "/sys/fs/cgroup/"


def _cgroup_dirs(cgroups, container_id):
    """The dirs of a cgroup record as create() makes them by default or at an exact
    path (Config.cgroup_path: an OCI cgroupsPath), placement dir first: each a normalised
    path below /sys/fs/cgroup, a v1 dir in a hierarchy named for its controller, named
    by the record's name (in a `pycontainer` parent dir by default; one path below every
    hierarchy when exact). Anything else (Config.cgroup_parent, no cgroups, another
    layout) is the full path's, which checks it against the host's hierarchies."""
    exact = cgroups.get("exact") if isinstance(cgroups, dict) else None
    if not isinstance(cgroups, dict) or cgroups.get("version") != 1 \
            or cgroups.get("id") != container_id or cgroups.get("none") \
            or (cgroups.get("default_parent") is not True and exact is not True):
        raise _Fallback()
    name, unified, v1 = cgroups.get("name"), cgroups.get("unified"), cgroups.get("v1")
    if not isinstance(name, str) or not name or "/" in name or not isinstance(v1, dict) \
            or not (unified or v1):
        raise _Fallback()
    dirs = [(None, unified)] if unified is not None else []
    dirs += sorted(v1.items(), key=lambda item: item[0] != "freezer")
    # The default layout ends in pycontainer/<name>; an exact one (a config.json's
    # cgroupsPath, containerd's) is one path below every hierarchy, ending in <name>.
    tails = set()
    for ctl, path in dirs:
        if not isinstance(path, str) or not path.startswith(_CGROUP_MOUNT) \
                or os.path.normpath(path) != path \
                or not path.endswith(f"/{name}" if exact else f"/pycontainer/{name}") \
                or (ctl is not None and
                    ctl not in path[len(_CGROUP_MOUNT):].split("/", 1)[0].split(",")):
            raise _Fallback()
        if ctl is not None:                 # <mount>/<hierarchy>/<tail>
            tails.add(path[len(_CGROUP_MOUNT):].partition("/")[2])
    if exact and (len(tails) > 1 or
                  (unified is not None and tails and not unified.endswith("/" + min(tails)))):
        raise _Fallback()
    unique = []
    for _, path in dirs:
        if path not in unique:
            unique.append(path)
    return unique


def _empty(d, v2):
    """Whether no process is left in the cgroup `d` (and it has no child cgroups)."""
    from ..cgroups.fs import read_text
    if v2:
        return "populated 0" in read_text(os.path.join(d, "cgroup.events")).splitlines()
    with os.scandir(d) as it:
        if any(e.is_dir(follow_symlinks=False) for e in it):
            return False
    return not read_text(os.path.join(d, "cgroup.procs")).strip()


def delete(root, container_id):
    """`delete` of a container with no live init and nothing left in its cgroups (what a
    shim deletes after the init it killed has exited, and a container never started), as
    Container.destroy does it under the container's lock: the cgroups removed, then the
    state directory. True when deleted; None: use the full path (a live init or process to
    kill, poststop hooks to run, veths, an overlay root, cgroups not where create() puts
    them by default, and every error)."""
    return _locked(root, container_id, _delete_locked)


def _locked(root, container_id, work):
    """work(root_fd, dir_fd, state_dir, record) under the container's lock (as a Container
    operation takes it), or None when this module leaves it to the full path."""
    import fcntl
    from ..errors import ContainerError
    if len(check_id(container_id)) > MAX_NAME:
        return None
    try:
        root_fd = _open_root(root)
        if root_fd is None:
            return None
        try:
            try:
                dir_fd = os.open(container_id, DIR_OPEN, dir_fd=root_fd)
            except OSError:
                raise _Fallback() from None
            try:
                if not _ours(dir_fd):
                    raise _Fallback()
                fcntl.flock(dir_fd, fcntl.LOCK_EX)
                state_dir = os.path.join(root, container_id)
                record = read_state(state_dir, container_id, dir_fd=dir_fd)
                return work(root_fd, dir_fd, state_dir, record)
            finally:
                os.close(dir_fd)
        finally:
            os.close(root_fd)
    except (_Fallback, ContainerError):
        return None


def _live_init_fd(record):
    """A new pidfd of the live init the record names (the recorded process, not polling
    readable), or None when it has none (never started, exited, its pid reused)."""
    fd = open_init_pidfd(record) if record.init_pid is not None else None
    # A pidfd polls readable once its process has exited (zombies included).
    if fd is not None and select.select([fd], [], [], 0)[0]:
        os.close(fd)
        return None
    return fd


def _init_alive(record):
    fd = _live_init_fd(record)
    if fd is None:
        return False
    os.close(fd)
    return True


def _delete_locked(root_fd, dir_fd, state_dir, record):
    from ..cgroups.fs import remove_cgroup
    if _init_alive(record):
        raise _Fallback()               # a live init: killed the full way
    hooks = ((record.extra.get("user") or {}).get("oci") or {}).get("hooks") or {}
    if hooks.get("poststop") or record.extra.get("veths") or \
            record.config.get("overlay_lower") is not None:
        raise _Fallback()               # hooks to run, veths or an overlay root to remove
    dirs = _cgroup_dirs(record.cgroups, record.id)
    # An exact path is the config's: every dir must be a leaf and empty, so that only
    # what the container was in is removed (the full path sorts out the rest).
    checked = dirs if record.cgroups.get("exact") else dirs[:1]
    try:
        if any(os.path.isdir(d) and not _empty(d, v2=d == record.cgroups.get("unified"))
               for d in checked):
            raise _Fallback()
        for d in dirs:
            remove_cgroup(d)
        remove_state_dir(dir_fd, state_dir, root_fd)
    except OSError:             # ContainerSystemError too: destroy() tries again, and says
        raise _Fallback() from None
    return True


def _freezer(record):
    """(freezer dir, whether cgroup2) of a record _cgroup_dirs takes."""
    _cgroup_dirs(record.cgroups, record.id)
    unified = record.cgroups.get("unified")
    d = unified or record.cgroups["v1"].get("freezer")
    if d is None:
        raise _Fallback()
    return d, bool(unified)


def _write_freezer(d, v2, frozen):
    from ..cgroups.fs import FROZEN, THAWED, write_text
    if v2:
        write_text(os.path.join(d, "cgroup.freeze"), "1" if frozen else "0")
    else:
        write_text(os.path.join(d, "freezer.state"), FROZEN if frozen else THAWED)


def pause(root, container_id):
    """Freeze a running container (Container.pause): returns a function giving its status
    as the kernel reports it now (running, pausing, paused or stopped), for the caller to
    wait on; None: use the full path (and for every error)."""
    from ..cgroups.fs import freezer_state

    def status(d, v2, record):
        if not _init_alive(record):
            return "stopped"
        return _FREEZER_TO_STATUS[freezer_state(d, v2)]

    def freeze(root_fd, dir_fd, state_dir, record):
        if record.extra.get("staged") or not _init_alive(record):
            raise _Fallback()
        d, v2 = _freezer(record)
        if freezer_state(d, v2) == "THAWED":
            _write_freezer(d, v2, True)
        return lambda: status(d, v2, record)
    return _locked(root, container_id, freeze)


def resume(root, container_id):
    """Thaw a paused or pausing container (Container.resume); a running one is left as it
    is. True when done; None: use the full path (and for every error)."""
    from ..cgroups.fs import freezer_state

    def thaw(root_fd, dir_fd, state_dir, record):
        d, v2 = _freezer(record)
        if freezer_state(d, v2) != "THAWED":
            _write_freezer(d, v2, False)
            return True
        if record.extra.get("staged") or not _init_alive(record):
            raise _Fallback()       # not running: the full path's error
        return True
    return _locked(root, container_id, thaw)


def start(root, container_id):
    """`start` of a created container without hooks (Container.exec: its staged init let
    run, the record no longer staged). True when its program runs; None: use the full
    path (hooks, a container that is not created with a staged init, and every error
    before the init is released). An error after it (the init's report of a failure of
    its exec, or its death) is raised as the full path raises it."""
    result = _locked(root, container_id, _start_locked)
    if isinstance(result, BaseException):
        raise result
    return result


def _start_locked(root_fd, dir_fd, state_dir, record):
    from ..errors import ContainerError, in_context
    hooks = ((record.extra.get("user") or {}).get("oci") or {}).get("hooks") or {}
    if hooks.get("startContainer") or hooks.get("poststart") or \
            not record.extra.get("staged"):
        raise _Fallback()
    init_fd = _live_init_fd(record)
    if init_fd is None:
        raise _Fallback()                       # it has exited: stopped
    try:
        try:
            report = release_staged(state_dir, init_fd)
        except ContainerError as exc:
            return in_context(exc, record.id, "exec")
        remove_entry(EXEC_FIFO, dir_fd)
        extra = dict(record.extra)
        staged = extra.pop("staged")
        write_state(state_dir, record.replace(extra=extra))
        if report:
            select.select([init_fd], [], [])     # it exits right after its report
            return _exec_failure(record, report, staged)
        return True
    finally:
        os.close(init_fd)


def _exec_failure(record, report, staged):
    """The error the full path raises for the init's report of a failure after the go
    (Container.exec): the report needs the C plan of the container's Config to name what
    failed, so that is built here, on this error path only."""
    from .. import _core                     # lazily: the error path only
    from ..config import Config
    from ..container import build_plan
    from ..errors import in_context
    labels = staged if isinstance(staged, dict) else {}
    try:
        _core.raise_child_report(build_plan(Config.from_dict(record.config)), report,
                                 labels.get("argv0", "?"), labels.get("cwd"),
                                 labels.get("rlimits", ()))
    except Exception as exc:
        return in_context(exc, record.id, "exec")
    return None

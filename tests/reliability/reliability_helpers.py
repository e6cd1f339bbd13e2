"""Helpers of the reliability suite: what a container left behind (cgroups, processes,
descriptors, zombies), a targeted child subreaper, and process measurements.

Imported by the test modules of this directory (pytest puts the directory on sys.path:
the tests tree has no __init__.py files)."""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
PR_SET_CHILD_SUBREAPER = 36


def python_env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def scope_of(root):
    """The cgroup-name prefix of a Factory root other than the default one: the container
    with id X has cgroup directories named '<scope>-X' (for ids of [A-Za-z0-9_+-])."""
    return hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:8]


# Re-exported: the reliability tests import them from here.
from helpers import (cgroup_dirs, library_fds, processes_in_cgroups, settle,  # noqa: E402,F401
                     wait_for)


# --- what is left behind ------------------------------------------------------------------

def stat_fields(pid):
    """(state, ppid, start time) from /proc/<pid>/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[1]), int(rest[19])


def children_of(ppid):
    """{pid: state letter} of the processes whose parent is ppid."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = stat_fields(name)
            if f is not None and f[1] == ppid:
                out[int(name)] = f[0]
    return out


def alive(pid):
    """True if pid exists and is not a zombie."""
    f = stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def fd_table():
    """{fd: target} of this process."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return fds


def stable_fds():
    """This process's descriptors, minus those kept for the process lifetime by design
    (the exit watcher's epoll set; library_fds())."""
    kept = library_fds()
    return {(fd, t) for fd, t in fd_table().items() if "[eventpoll]" not in t and fd not in kept}


def pidfd_pids():
    """Pids that some pidfd in this process's table refers to (the exit watcher's and the
    Container objects' init pidfds: processes this process owns)."""
    pids = set()
    for fd, target in fd_table().items():
        if "pidfd" not in target:
            continue
        try:
            with open(f"/proc/self/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("Pid:"):
                        pids.add(int(line.split()[1]))
        except OSError:
            pass
    return pids


def proc_status(field, pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
    raise KeyError(field)


def rss_kib():
    return int(proc_status("VmRSS"))


def thread_count():
    return int(proc_status("Threads"))


# --- a targeted child subreaper -------------------------------------------------------------

class Subreaper:
    """Make this process the child subreaper of its descendants for a while, and reap the
    orphans it inherits: zombie children of this process that are neither in `exclude`
    nor referred to by one of this process's pidfds (the processes it started itself, whose
    statuses belong to the library's exit watcher). Never waitpid(-1): each reap names its
    pid. A background thread reaps every few milliseconds while active, because a
    container init waits in the kernel (zap_pid_ns_processes) until every zombie of its pid
    namespace, including orphans re-parented to us, is reaped.
    Each round reads /proc/<pid>/stat of every process, a descriptor at a time: a test
    that compares this process's descriptors does so in paused(), so as not to see them."""

    def __init__(self, interval=0.005):
        self.interval = interval
        self.exclude = set()
        self.reaped = {}            # pid -> raw wait status
        self._stop = threading.Event()
        self._round = threading.Lock()      # held by the thread for a round
        self._thread = None
        self._libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self):
        if self._libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self._thread = threading.Thread(target=self._loop, name="test-subreaper", daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.is_set():
            with self._round:
                self.reap_once()
            self._stop.wait(self.interval)

    @contextlib.contextmanager
    def paused(self):
        """No round of the thread runs (nor holds a descriptor) inside this block."""
        with self._round:
            yield

    def orphans(self):
        """Zombie children of ours that are inherited orphans (not ours to leave alone)."""
        me = os.getpid()
        zombies = [p for p, s in children_of(me).items() if s == "Z" and p not in self.exclude]
        if not zombies:
            return []
        owned = pidfd_pids()
        return [p for p in zombies if p not in owned]

    def reap_once(self):
        for pid in self.orphans():
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            if got:
                self.reaped[got] = status

    def inherited_alive(self):
        """Live children of ours that are not excluded and have no pidfd here."""
        me = os.getpid()
        kids = [p for p, s in children_of(me).items() if s != "Z" and p not in self.exclude]
        owned = pidfd_pids() if kids else set()
        return [p for p in kids if p not in owned]

    def __exit__(self, *exc):
        try:
            # Whatever is still dying comes to us: give it a moment and reap it.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                self.reap_once()
                if not self.orphans():
                    break
                time.sleep(0.01)
        finally:
            self._stop.set()
            self._thread.join(10)
            self._libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        return False


@contextlib.contextmanager
def nofile_soft_limit(n):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def stderr(*args):
    print(*args, file=sys.stderr, flush=True)


def force_remove(root, container_id):
    """Last-resort cleanup after a library failure, so that one bug does not leave a
    running process or a cgroup on the machine: kill what runs in the container's cgroups
    (where create() puts them for this root), remove them and the state directory."""
    import shutil
    from pycontainer import cgroups
    from pycontainer.factory import Factory
    try:
        cgroups.new_manager(container_id, scope=scope_of(root)).destroy()
    except Exception as exc:          # noqa: BLE001 - best effort; the test fails anyway
        stderr(f"force_remove({container_id!r}): cgroups: {exc!r}")
    shutil.rmtree(Factory(root)._dir(container_id), ignore_errors=True)

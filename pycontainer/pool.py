"""Pool: prepared sandboxes for one Config, so that create() and start() do only the work
that depends on the process.

A prepared sandbox is a container of its own state root, <root>/.pool, under an id of the
form pool-<16 hex digits>: its cgroups made and configured, and its init cloned into its
new namespaces, set up up to the last step that does not depend on the process (cgroup
placement, mounts, pivot_root, /proc /sys /dev, masked and read-only paths, sysctls,
hostname, lo up) and parked there (csrc/zygote.c), blocked on a socket. A background
thread keeps `size` of them ready.

create(id) takes one and names it (Factory.adopt): its state directory moves to the
Factory's root under the id, so load(), list(), pause, stats, joins and destroy see a
container like any other (its cgroups keep the sandbox's name, which its record names).
Until start() it is CREATED with its init's pid, as a staged (OCI `create`d) container.
start(ProcessConfig) on the handle create() returned sends the process to the parked init
(argv, env, cwd, ids, groups, the Config's security with the process's rlimits, and its
descriptors over SCM_RIGHTS); the init does the rest as an unpooled start does (stdio,
descriptors, signals, capabilities, user, no_new_privs, seccomp) and execs. A failure
there is reported with its stage and errno, as start() reports it. Everything before is
checked when the sandbox is prepared; a sandbox that fails is never handed out.

Off the start path, as far as the result stays that of an unpooled start:
- a Config with the default seccomp profile has its filter loaded by the init before it
  parks (the profile allows every syscall the handover makes), so the handover does not
  wait for the kernel to check and compile it;
- the pool keeps a descriptor of each sandbox's mount namespace, handed to the exit
  watcher at start(): the namespace, and the teardown of its mounts, goes right after the
  exit status is delivered instead of before;
- destroy() of a container this pool made kills its processes and moves its state
  directory back into the pool root, in one rename; the refill thread then removes its
  empty cgroups and the directory. Until then remove_leftovers and Factory.list_broken
  find it there if this process dies.

An empty pool (or one whose refill failed) makes the container the normal way; stats()
counts hits and misses. Cgroups are never reused: every sandbox has fresh ones, so its
statistics start where an unpooled container's do (the init's own setup is counted in
both). Namespaces are never reused.

Lifetime: close() (or the Pool's garbage collection, or the interpreter's exit) destroys
the ready sandboxes and finishes the destroys under way. A parked init exits when its
socket closes, so the death of the pool's process leaves no process; what it leaves
(empty cgroups, state in <root>/.pool) remove_leftovers() removes, and every new Pool on
the root calls it; Factory.list_broken() reports it as ".pool/<sandbox id>", which
Factory.destroy() takes. A parked init killed from outside is dropped, never handed out.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import logging
import os
import re
import secrets
import select
import socket
import threading
import time
import weakref

from .config import Config
from .container import build_security, derived, lock_container
from .errors import (ConfigInvalidError, ContainerError, ContainerNotExistError,
                     ContainerSystemError)
from .exits import WATCHER
from .state import DIR_OPEN, process_start_time, process_stat, read_state, remove_state_dir

__all__ = ["Pool", "PoolStats", "leftovers", "remove_leftovers", "sandbox_owner",
           "POOL_ROOT", "SANDBOX_ID"]

log = logging.getLogger("pycontainer")

POOL_ROOT = ".pool"                          # <root>/.pool: a name no id has
SANDBOX_ID = re.compile(r"pool-[0-9a-f]{16}")
RETIRE_DELAY = 0.2       # s of quiet after which the refill thread finishes destroys
FRESH = 10.0             # s: a sandbox directory this young without state.json is being made

_renameat2 = None


def rename_noreplace(src, dst):
    """rename(src, dst) that fails with FileExistsError when dst exists (renameat2
    RENAME_NOREPLACE; a plain rename would replace an empty directory there)."""
    global _renameat2
    if _renameat2 is None:
        import ctypes            # lazily: only pools need it
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
        fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                       ctypes.c_uint)
        _renameat2 = (fn, ctypes)
    fn, ctypes = _renameat2
    at_fdcwd, noreplace = -100, 1
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), src, None, dst)


def sandbox_owner():
    """Who prepares a sandbox: (pid, start time) of this process, kept in its record so
    that remove_leftovers tells a preparation under way from one whose process died."""
    return [os.getpid(), process_start_time(os.getpid())]


class PoolStats:
    """What a Pool did so far. hits: create() calls served by a prepared sandbox; misses:
    those that made the container the normal way (the pool was empty); dropped: prepared
    sandboxes whose parked init was found dead; refills: sandboxes prepared, in
    refill_seconds in all (the refill thread's own time); refill_errors and last_error:
    preparations that failed (the pool then waits for the next miss to try again)."""

    __slots__ = ("size", "ready", "hits", "misses", "dropped", "refills", "refill_seconds",
                 "refill_errors", "last_error")

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values[name])

    @property
    def refill_mean_seconds(self):
        return self.refill_seconds / self.refills if self.refills else None

    def __repr__(self):
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"PoolStats({fields})"


def _preloads(config):
    """Whether a sandbox's init loads the Config's seccomp filter before it parks: for
    the default profile, which denies none of the syscalls the init makes from then to
    the exec of the process (a deny list of other syscalls: pycontainer.seccomp). Another
    profile might deny one, or answer one with an errno the handover tolerates, so its
    filter is loaded at the handover, where an unpooled start loads it."""
    return config.seccomp == "default"


class _Sandbox:
    __slots__ = ("container", "sock", "pidfd", "mnt", "preloaded")

    def __init__(self, container, sock, pidfd, mnt, preloaded):
        self.container, self.sock, self.pidfd = container, sock, pidfd
        self.mnt, self.preloaded = mnt, preloaded

    def alive(self):
        # poll, not select: a large pool holds descriptors above select's limit of 1024.
        p = select.poll()
        p.register(self.pidfd, select.POLLIN)
        return not p.poll(0)

    def discard(self):
        """Close its socket (the parked init exits), let the watcher reap the init, and
        destroy the sandbox."""
        self.sock.close()
        if self.mnt is not None:
            os.close(self.mnt)
        WATCHER.watch(self.pidfd)
        try:
            self.container.destroy()
        except ContainerError:
            pass        # what is left, remove_leftovers finds


class _Shared:
    """What the refill thread works on: no reference to the Pool, so that dropping the
    Pool collects it (and closes it)."""

    def __init__(self, factory, sandboxes, config, size, refill_below):
        self.factory, self.sandboxes, self.config, self.size = factory, sandboxes, config, size
        self.refill_below = refill_below
        self.filling = True          # refilling until `size` are ready
        self.cond = threading.Condition()
        self.ready = collections.deque()
        self.dead = []
        self.retired = []            # (cgroup manager, sandbox id) of destroyed containers
        self.closed = False
        self.paused = False          # a preparation failed: wait for the next miss
        self.counts = dict(hits=0, misses=0, dropped=0, refills=0, refill_seconds=0.0,
                           refill_errors=0, last_error=None)

    def take(self):
        """A prepared sandbox with a live init, or None."""
        with self.cond:
            while self.ready:
                sandbox = self.ready.popleft()
                if sandbox.alive():
                    self.counts["hits"] += 1
                    if len(self.ready) < self.refill_below:
                        self.filling = True
                    if self.filling or self.dead:
                        self.cond.notify()
                    return sandbox
                self.counts["dropped"] += 1
                self.dead.append(sandbox)
            self.counts["misses"] += 1
            self.paused = False
            self.filling = True
            self.cond.notify()
            return None

    def put_back(self, sandbox):
        with self.cond:
            self.counts["hits"] -= 1
            if self.closed:
                self.dead.append(sandbox)
            else:
                self.ready.appendleft(sandbox)
            self.cond.notify()

    def prepare(self):
        sandbox_id = f"pool-{secrets.token_hex(8)}"
        container = self.sandboxes.create(sandbox_id, self.config, extra={"owner": sandbox_owner()})
        config = container.config            # the Factory's (rootless: with a user namespace)
        preload = _preloads(config)
        ours = None
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            with theirs:
                pid, pidfd = container.internal.park(
                    theirs.fileno(),
                    derived(config, "security", build_security) if preload else None)
        except BaseException:
            if ours is not None:
                ours.close()
            container.destroy()
            raise
        mnt = None
        # Not with a writable layer: destroy unmounts it, and no namespace may still hold it.
        if "mount" in config.new_namespaces and config.overlay_lower is None:
            try:    # our child, not reaped: the pid is its
                mnt = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass      # (unprivileged, maybe): its exit then tears the mounts down
        return _Sandbox(container, ours, pidfd, mnt, preload)

    def retire(self, manager, record, state_dir):
        """Container.destroy of a container this pool made, its processes gone: move its
        state directory back into the pool root under its sandbox's id (where
        remove_leftovers finds it should this process die) and leave the removal of its
        empty cgroups and of the directory to the refill thread. False (nothing done)
        when the pool is closed: destroy does it all itself then."""
        pooled = record.extra.get("pool")
        sandbox_id = pooled.get("sandbox") if isinstance(pooled, dict) else None
        if self.closed or not isinstance(sandbox_id, str) or not SANDBOX_ID.fullmatch(sandbox_id):
            return False
        try:
            rename_noreplace(state_dir, os.path.join(self.sandboxes.root, sandbox_id))
        except OSError as exc:
            log.debug("pool: destroy %s in place: %s", record.id, exc)
            return False
        with self.cond:
            if not self.closed:
                self.retired.append((manager, sandbox_id))
                # With the refill, or once `size` wait: a burst of create/destroy does not
                # have the thread's work (and its turns at the GIL) beside it.
                # (The first one wakes it to wait for RETIRE_DELAY of quiet.)
                if self.filling or len(self.retired) in (1, self.size):
                    self.cond.notify()
                return True
        self.finish(manager, sandbox_id)       # closed meanwhile: its drain has run
        return True

    def finish(self, manager, sandbox_id):
        """The end of a retired container's destroy: its empty cgroups, its state."""
        path = os.path.join(self.sandboxes.root, sandbox_id)
        try:
            with lock_container(path, sandbox_id, "destroy") as dir_fd:
                manager.destroy()
                remove_state_dir(dir_fd, path)
        except ContainerNotExistError:
            pass                 # removed by remove_leftovers in another process
        except (ContainerError, OSError) as exc:
            log.warning("pool: removing destroyed container's leftovers %s: %s", sandbox_id, exc)
            try:
                self.sandboxes.destroy(sandbox_id)
            except ContainerError:
                pass             # what is left, remove_leftovers finds once we are gone

    def refill(self):
        """The refill thread: keep `size` sandboxes ready until closed."""
        while True:
            with self.cond:
                if len(self.ready) >= self.size:
                    self.filling = False
                while not self.closed and not self.dead and \
                        len(self.retired) < self.size and (not self.filling or self.paused):
                    # Destroys to finish wait for the refill, `size` of them, or a quiet
                    # moment: their empty cgroups do not stay long on an idle pool.
                    if not self.cond.wait(RETIRE_DELAY if self.retired else None) and \
                            self.retired:
                        break
                if self.closed:
                    break
                dead, self.dead = self.dead, []
                retired, self.retired = self.retired, []
                want = self.filling and not self.paused
            for item in retired:
                self.finish(*item)
            for sandbox in dead:
                sandbox.discard()
            if not want:
                continue
            began = time.perf_counter()
            try:
                sandbox = self.prepare()
            except Exception as exc:
                with self.cond:
                    self.counts["refill_errors"] += 1
                    self.counts["last_error"] = exc
                    self.paused = True
                    self.cond.notify_all()
                continue
            with self.cond:
                self.counts["refills"] += 1
                if len(self.ready) + 1 >= self.size:
                    self.filling = False
                self.counts["refill_seconds"] += time.perf_counter() - began
                self.ready.append(sandbox)
                self.cond.notify_all()
        self.drain()

    def drain(self):
        with self.cond:
            self.closed = True
            left = list(self.ready) + self.dead
            retired, self.retired = self.retired, []
            self.ready.clear()
            self.dead = []
        for item in retired:
            self.finish(*item)
        for sandbox in left:
            sandbox.discard()


def _close(shared, thread):
    with shared.cond:
        shared.closed = True
        shared.cond.notify_all()
    if thread is not threading.current_thread():
        thread.join()
    shared.drain()


class Pool:
    """`size` prepared sandboxes of `config` in `factory`'s root (see the module
    docstring). A context manager; close() when done.

    refill_below: the refill thread starts once fewer than this many are ready (then fills
    up to `size`); default `size`, at once. A lower mark lets bursts of create() run
    without the refill beside them (it competes for the CPU and the GIL), when the caller
    has quiet moments for it."""


    def __init__(self, factory, config, size=8, refill_below=None):
        if not isinstance(config, Config):
            raise ConfigInvalidError("config", config, "expected a pycontainer.Config",
                                     operation="pool")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigInvalidError("size", size, "expected an int >= 1", operation="pool")
        refill_below = size if refill_below is None else refill_below
        if isinstance(refill_below, bool) or not isinstance(refill_below, int) or \
                not 1 <= refill_below <= size:
            raise ConfigInvalidError("refill_below", refill_below,
                                     f"expected an int from 1 to size ({size})", operation="pool")
        if config.cgroup_path is not None:
            raise ConfigInvalidError("cgroup_path", config.cgroup_path,
                                     "an exact cgroup path names one container: it cannot "
                                     "be pooled", operation="pool")
        if config.pdeathsig is not None:
            raise ConfigInvalidError("pdeathsig", config.pdeathsig,
                                     "a pooled init is forked by the pool's refill thread, "
                                     "whose end would send the signal: it cannot be pooled",
                                     operation="pool")
        self._factory = factory
        self._config = config
        # The same Factory class on the pool root: sandboxes are containers there.
        sandboxes = type(factory)(os.path.join(factory.root, POOL_ROOT))
        remove_leftovers(factory)
        self._shared = _Shared(factory, sandboxes, config, size, refill_below)
        thread = threading.Thread(target=self._shared.refill, name="pycontainer-pool",
                                  daemon=True)
        self._close = weakref.finalize(self, _close, self._shared, thread)
        thread.start()

    @property
    def config(self):
        return self._config

    def create(self, container_id):
        """A container of the pool's Config named `container_id`: a prepared sandbox when
        one is ready, else made as Factory.create makes it. Either way a Container like
        any other; start() on this handle hands the process to the parked init."""
        if self._shared.closed:
            raise ContainerError("the pool is closed", container_id=container_id,
                                 operation="create")
        sandbox = self._shared.take()
        if sandbox is None:
            return self._factory.create(container_id, self._config)
        try:
            container = self._factory.adopt(sandbox.container, container_id)
        except BaseException:
            self._shared.put_back(sandbox)
            raise
        sandbox.container.internal.disown()
        container.internal.hold_parked(sandbox.sock, sandbox.pidfd, sandbox.mnt,
                                       sandbox.preloaded, self._shared.retire)
        return container

    async def create_async(self, container_id):
        """create() for asyncio: it does not block (no clone, no wait on the refill)."""
        return self.create(container_id)

    def stats(self):
        with self._shared.cond:
            return PoolStats(size=self._shared.size, ready=len(self._shared.ready),
                             **self._shared.counts)

    def parked_pids(self):
        """The pids of the parked inits ready to be handed out, oldest first."""
        with self._shared.cond:
            return [s.container.init_pid() for s in self._shared.ready]

    def wait_ready(self, count=None):
        """Block until `count` (default: size) sandboxes are ready, or a preparation failed
        (then raise its error). For benchmarks and tests; create() never waits."""
        shared = self._shared
        count = shared.size if count is None else count
        with shared.cond:
            errors = shared.counts["refill_errors"]
            if len(shared.ready) < count:
                shared.filling = True
                shared.paused = False
                shared.cond.notify_all()
            while len(shared.ready) < count:
                if shared.counts["refill_errors"] != errors:
                    raise shared.counts["last_error"]
                if shared.closed:
                    raise ContainerError("the pool is closed", operation="pool")
                shared.cond.wait()

    def close(self):
        """Stop refilling and destroy the sandboxes not handed out. Idempotent."""
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _running(pid, start_time):
    """Whether (pid, start time) names a process that has not exited (a zombie has)."""
    stat = process_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == start_time


def _owner_alive(owner):
    return isinstance(owner, list) and len(owner) == 2 and isinstance(owner[0], int) and \
        owner[0] > 0 and process_start_time(owner[0]) == owner[1]


def _examine(pool_root, root_fd, name):
    """Why the entry `name` of a pool root is left over, or None when a live pool (or a
    preparation under way) holds it."""
    try:
        path_fd = os.open(name, DIR_OPEN, dir_fd=root_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None                         # removed meanwhile
        return f"not a sandbox's state directory ({os.strerror(exc.errno)})"
    try:
        try:
            record = read_state(os.path.join(pool_root, name), None, dir_fd=path_fd)
        except ContainerNotExistError:
            try:
                fcntl.flock(path_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return None                     # its Factory.create is under way
            # Or about to be: Factory.create locks the directory right after its mkdir.
            if time.time() - os.fstat(path_fd).st_mtime < FRESH:
                return None
            return "no state.json: its preparation was interrupted"
        except ContainerError as exc:
            return f"damaged: {exc.detail}"
    finally:
        os.close(path_fd)
    pooled = record.extra.get("pool") if isinstance(record.extra.get("pool"), dict) else {}
    user = record.extra.get("user") if isinstance(record.extra.get("user"), dict) else {}
    owner = pooled.get("owner", user.get("owner"))
    alive = _owner_alive(owner)
    if record.id != name:
        # A pooled container destroyed by its pool's process, waiting for the refill
        # thread to remove its empty cgroups and state (_Shared.retire).
        return None if alive else "a destroyed pooled container's empty cgroups and state, " \
            "whose pool's process died before it removed them"
    if record.init_pid is None:
        return None if alive else "its preparation was cut short (its pool's process died)"
    if not _running(record.init_pid, record.init_start_time):
        return "its parked init has exited (its pool's process died, or it was killed)"
    if not alive:
        return "its pool's process died (its parked init exits with the pool's socket)"
    return None


def leftovers(factory):
    """{sandbox id: why} of what no live pool holds in factory's pool root: sandboxes
    whose parked init has exited (it does when its pool's process dies), whose init is
    alive but whose pool's process died, that cannot be read, or without an init whose
    preparing process died (a refill cut short); and destroyed pooled containers whose
    pool's process died before removing their empty cgroups and state."""
    pool_root = os.path.join(factory.root, POOL_ROOT)
    try:
        root_fd = os.open(pool_root, DIR_OPEN)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"pool root {pool_root}",
                                   operation="list") from None
    try:
        out = {}
        # Nothing but sandboxes is made here (a Factory of this root makes no other name).
        for name in sorted(n for n in os.listdir(root_fd) if SANDBOX_ID.fullmatch(n)):
            why = _examine(pool_root, root_fd, name)
            if why is not None:
                out[name] = why
        return out
    finally:
        os.close(root_fd)


def remove_leftovers(factory):
    """Destroy what leftovers(factory) lists. Returns their ids."""
    sandboxes = type(factory)(os.path.join(factory.root, POOL_ROOT))
    removed = []
    for sandbox_id in leftovers(factory):
        sandboxes.destroy(sandbox_id)
        removed.append(sandbox_id)
    return removed

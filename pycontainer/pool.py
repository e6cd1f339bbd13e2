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

An empty pool (or one whose refill failed) makes the container the normal way; stats()
counts hits and misses. Cgroups are never reused: every sandbox has fresh ones, so its
statistics start where an unpooled container's do (the init's own setup is counted in
both). Namespaces are never reused.

Lifetime: close() (or the Pool's garbage collection, or the interpreter's exit) destroys
the ready sandboxes. A parked init exits when its socket closes, so the death of the
pool's process leaves no process; what it leaves (empty cgroups, state in <root>/.pool)
remove_leftovers() removes, and every new Pool on the root calls it. A parked init killed
from outside is dropped, never handed out.
"""
from __future__ import annotations

import collections
import os
import re
import secrets
import select
import socket
import threading
import time
import weakref

from .config import Config
from .errors import ConfigInvalidError, ContainerError, ContainerNotExistError
from .exits import WATCHER
from .state import RunState, process_start_time

__all__ = ["Pool", "PoolStats", "remove_leftovers", "sandbox_owner", "POOL_ROOT", "SANDBOX_ID"]

POOL_ROOT = ".pool"                          # <root>/.pool: a name no id has
SANDBOX_ID = re.compile(r"pool-[0-9a-f]{16}")


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


class _Sandbox:
    __slots__ = ("container", "sock", "pidfd")

    def __init__(self, container, sock, pidfd):
        self.container, self.sock, self.pidfd = container, sock, pidfd

    def alive(self):
        return not select.select([self.pidfd], [], [], 0)[0]

    def discard(self):
        """Close its socket (the parked init exits), let the watcher reap the init, and
        destroy the sandbox."""
        self.sock.close()
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
        ours = None
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            with theirs:
                _, pidfd = container.internal.park(theirs.fileno())
        except BaseException:
            if ours is not None:
                ours.close()
            container.destroy()
            raise
        return _Sandbox(container, ours, pidfd)

    def refill(self):
        """The refill thread: keep `size` sandboxes ready until closed."""
        while True:
            with self.cond:
                if len(self.ready) >= self.size:
                    self.filling = False
                while not self.closed and not self.dead and (not self.filling or self.paused):
                    self.cond.wait()
                if self.closed:
                    break
                dead, self.dead = self.dead, []
                want = self.filling and not self.paused
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
            self.ready.clear()
            self.dead = []
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
        container.internal.hold_parked(sandbox.sock, sandbox.pidfd)
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


def remove_leftovers(factory):
    """Destroy the sandboxes in factory's pool root that no live pool holds: those whose
    parked init has exited (it does when its pool's process dies), those that cannot be
    loaded, and those without an init whose preparing process has died (a refill cut
    short). Returns their ids."""
    sandboxes = type(factory)(os.path.join(factory.root, POOL_ROOT))
    removed = []
    for sandbox_id in sandboxes.list():
        try:
            container = sandboxes.load(sandbox_id)
            record = container.internal.record("load")
            state = container.run_state()
            owner = container.extra().get("owner")
            gone = state == RunState.STOPPED or (
                record.init_pid is None and
                (not isinstance(owner, list) or len(owner) != 2 or
                 process_start_time(owner[0]) != owner[1]))
        except ContainerNotExistError:
            continue
        except ContainerError:
            gone = True
        if gone:
            sandboxes.destroy(sandbox_id)
            removed.append(sandbox_id)
    return removed

"""Container events: OOM notifications (Container.notify_oom) and a stream like
`runc events` (Container.events; Container.events_async in aio.py drives the same sources).

Each source is a descriptor the kernel makes readable; nothing is polled on a timer except
where the kernel has no notification:

    what                  descriptor                                  readable when
    init exit             the init's pidfd                            it has exited
    OOM, cgroup v1        eventfd in cgroup.event_control             an OOM; once more at rmdir
                          (memory.oom_control)
    OOM, cgroup v2        inotify IN_MODIFY on memory.events          a counter changed
    pause/resume, v2      inotify IN_MODIFY on cgroup.events          'frozen' (or populated) changed
    new init, destroy     inotify on the state directory              state.json replaced (start),
                                                                      the directory removed (destroy)
    pause/resume, v1      none: freezer.state is read every `interval`
    stats                 every `interval`

kernfs (cgroupfs) raises no inotify event when a cgroup is removed (observed on 6.18), so
destruction is seen on the state directory, which destroy removes after the cgroups.

The init's exit status is only looked at (waitid WNOWAIT, or the status a reaped pidfd
keeps): the exit watcher, or whichever process started the init, reaps it.

A subscription owns its descriptors: they are closed when it ends ("destroyed", or the
cgroup's removal for notify_oom), when it is closed, and when it is garbage-collected.
Container.events and Container.notify_oom have one thread each, which waits on all of
them at once; Container.events_async has none (the loop watches the same descriptors).
"""
from __future__ import annotations

import errno
import math
import os
import queue
import select
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Optional

from . import _core
from .cgroups import FREEZING, FROZEN, v1, v2
from .errors import ContainerError, ContainerNotExistError, ContainerSystemError, in_context
from .exits import EXIT_LOG
from .state import STATE_FILE, open_init_pidfd, read_state

__all__ = ["Event", "EVENT_TYPES", "EventStream", "OomQueue", "notify_oom"]

EVENT_TYPES = ("stats", "oom", "paused", "resumed", "exit", "destroyed")

_STATE_MASK = (_core.INOTIFY_MOVED_TO | _core.INOTIFY_DELETE_SELF | _core.INOTIFY_ONLYDIR
               | _core.INOTIFY_DONT_FOLLOW)
_GONE = _core.INOTIFY_DELETE_SELF | _core.INOTIFY_IGNORED


@dataclass(frozen=True)
class Event:
    """One container event.

    type: "stats", "oom", "paused", "resumed", "exit" or "destroyed" (always the last).
    id: the container's id. timestamp: time.time() when the event was seen.
    data: the ContainerStats of a "stats" event; the exit status of an "exit" event (the
    code, -signum, or None when it cannot be known: the init was reaped by another process
    before Linux 6.15, or had already gone when a new init was noticed); the number of OOM
    kills this stream has reported so far for "oom"; None otherwise.
    pid: the init's pid (in the caller's pid namespace) for "exit"."""

    type: str
    id: str
    timestamp: float
    data: Any = None
    pid: Optional[int] = None


def _readable(fd, timeout=0.0):
    return bool(select.select([fd], [], [], timeout)[0])


def _check_interval(interval):
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not 0 < interval < float("inf"):
        raise ValueError(f"interval={interval!r}: expected a positive number of seconds")


class _Sources:
    """The descriptors one subscription waits on and what their readiness means. Drivers
    (EventStream, the notify_oom thread, aio.AsyncEventStream) wait until one of fds() is
    readable or timeout() passes, call handle(ready) and deliver what it returns; then
    close_retired() (after they stopped watching the retired fds)."""

    def __init__(self, container, *, lifecycle, period=None, stats=False,
                 operation="events", exit_wait=1.0):
        self.id = container.id
        self._c = container
        self._lifecycle = lifecycle     # exit, paused/resumed, destroyed (events()); else OOM only
        self._stats = stats
        self._period = period
        self._exit_wait = exit_wait     # for the status of an init reaped before we looked
        self._ino = None                # the inotify fd
        self._wds = {}                  # watch descriptor -> "state" | "freezer" | "memory"
        self._efd = None                # cgroup v1 OOM eventfd
        self._pidfd = None              # the followed init's, until it has exited
        self._init = (None, None)       # (pid, start time) of the init followed
        self._retired = []              # fds no longer watched, closed by close_retired()
        self._freezer = None            # ("v1" | "v2", dir)
        self._frozen = False
        self._oom = None                # ("v1" | "v2", dir)
        self._memcg_ino = None          # v1: inode of the memory cgroup registered with
        self._oom_kills = 0             # v2: last oom_kill count read
        self.ooms = 0                   # OOM kills this subscription has reported
        self.oom_ended = False          # no OOM can be reported any more
        self.destroyed = False
        self.closed = False
        self._deadline = None
        try:
            self._open(operation)
        except BaseException as exc:
            self.close()
            if isinstance(exc, Exception):
                raise in_context(exc, self.id, operation) from None
            raise

    # -- setup -------------------------------------------------------------------------

    def _open(self, operation):
        c = self._c
        c._record(operation)                        # ContainerNotExistError when destroyed
        self._oom = c._cgroups.oom_source()
        if self._oom is None and not self._lifecycle:
            raise ContainerSystemError(errno.ENOTSUP, "the container has no memory cgroup to "
                                       "report OOM kills", container_id=self.id,
                                       operation=operation)
        # cgroup v1 ends an OOM subscription through the eventfd (the kernel signals it
        # when the cgroup goes); everything else needs to see the state directory go.
        if self._lifecycle or self._oom[0] == "v2":
            self._ino = _core.inotify_open()
            try:
                self._watch(c._dir, _STATE_MASK, "state")
            except ContainerSystemError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise ContainerNotExistError("no such container", container_id=self.id,
                                                 operation=operation) from None
                raise
        # Read after the watches: whatever changes from here on is reported.
        record = c._record(operation)
        if self._oom is not None:
            kind, d = self._oom
            if kind == "v1":
                self._efd = _core.memcg_oom_eventfd(d)
                self._memcg_ino = os.stat(d).st_ino
            else:
                self._watch(os.path.join(d, "memory.events"), _core.INOTIFY_MODIFY, "memory")
                self._oom_kills = v2.oom_kills(d)
        if self._lifecycle:
            self._freezer = c._cgroups.freezer_source()
            if self._freezer is not None:
                kind, d = self._freezer
                if kind == "v2":
                    self._watch(os.path.join(d, "cgroup.events"), _core.INOTIFY_MODIFY,
                                "freezer")
                    self._frozen = v2.frozen(d)
                else:
                    self._frozen = v1.freezer_state(d) == FROZEN
            self._init = (record.init_pid, record.init_start_time)
            fd = open_init_pidfd(record)
            if fd is not None and _readable(fd):
                os.close(fd)        # exited before we looked: not an event of this stream
                fd = None
            self._pidfd = fd
        # The v1 freezer has no change notification: there, and only there, its state is
        # read at every tick.
        if self._period is not None and (self._stats or self._v1_freezer()):
            self._deadline = time.monotonic() + self._period

    def _watch(self, path, mask, kind):
        self._wds[_core.inotify_watch(self._ino, path, mask)] = kind

    def _v1_freezer(self):
        return self._lifecycle and self._freezer is not None and self._freezer[0] == "v1"

    # -- what drivers use --------------------------------------------------------------

    def fds(self):
        """The descriptors to wait on (for readability) now."""
        return [fd for fd in (self._efd, self._pidfd, self._ino) if fd is not None]

    def timeout(self):
        """Seconds until handle() has work without any fd being ready; None: no timer."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def handle(self, ready):
        """The events that the readiness of `ready` (a set of fds; empty on a timeout)
        and the passing of time mean, in the order the kernel produced them."""
        if self.closed or self.destroyed:
            return []
        kinds = set()
        if self._ino is not None and self._ino in ready:
            kinds = self._drain_inotify()
        if "overflow" in kinds:               # events were lost: look at everything
            kinds |= {"memory", "freezer", "record"}
            if not os.path.isdir(self._c._dir):
                kinds.add("gone")
        out = []
        # An OOM is reported before its victim dies, so before an exit it caused.
        if self._efd is not None and self._efd in ready:
            out += self._v1_oom()
        if "memory" in kinds:
            out += self._v2_oom()
        if self._pidfd is not None and self._pidfd in ready:
            out += self._init_exit()
        if "freezer" in kinds and self._freezer is not None:
            out += self._freezer_changed()
        if "record" in kinds:
            out += self._record_changed()
        if self._deadline is not None and time.monotonic() >= self._deadline:
            out += self._tick()
        if "gone" in kinds:
            out += self._gone()
        return out

    def close_retired(self):
        while self._retired:
            os.close(self._retired.pop())

    def close(self):
        """Close every descriptor. Idempotent."""
        self.closed = True
        for name in ("_efd", "_pidfd", "_ino"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)
        self.close_retired()

    # -- the sources -------------------------------------------------------------------

    def _event(self, kind, data=None, pid=None):
        return Event(kind, self.id, time.time(), data, pid)

    def _retire(self, name):
        fd = getattr(self, name)
        if fd is not None:
            setattr(self, name, None)
            self._retired.append(fd)

    def _drain_inotify(self):
        kinds = set()
        while True:
            batch = _core.inotify_read(self._ino)
            if not batch:
                return kinds
            for wd, mask, name in batch:
                if mask & _core.INOTIFY_Q_OVERFLOW:
                    kinds.add("overflow")
                    continue
                kind = self._wds.get(wd)
                if kind == "state":
                    if mask & _GONE:
                        kinds.add("gone")
                    elif name == STATE_FILE:
                        kinds.add("record")
                elif kind is not None:
                    kinds.add(kind)

    def _ooms(self, n):
        out = []
        for _ in range(n):
            self.ooms += 1
            out.append(self._event("oom", self.ooms))
        return out

    def _same_memcg(self):
        try:
            return os.stat(self._oom[1]).st_ino == self._memcg_ino
        except OSError:
            return False

    def _v1_oom(self):
        """The kernel adds 1 to the eventfd at each OOM of the memory cgroup, and 1 when the
        cgroup is removed, after which it never signals again. Both look alike: a count
        read while the cgroup is still there (checked after the read; the removal's 1 comes
        after rmdir) is all OOMs. A count read once it is gone is taken to include the
        removal: an OOM still unread when the cgroup was removed (during destroy) may then
        go unreported. (runc drops every count read once the cgroup is gone.)"""
        n = _core.eventfd_take(self._efd)
        if n == 0:
            return []
        if self._same_memcg():
            return self._ooms(n)
        self._retire("_efd")
        self.oom_ended = True
        return self._ooms(n - 1)

    def _v2_oom(self):
        """memory.events changed: report each increase of its oom_kill counter."""
        try:
            kills = v2.oom_kills(self._oom[1])
        except ContainerSystemError:
            return []                     # the cgroup is going: the state dir follows
        n, self._oom_kills = kills - self._oom_kills, max(kills, self._oom_kills)
        return self._ooms(n) if n > 0 else []

    def _init_exit(self):
        """The followed init's pidfd is readable: it exited. Look at its status (never
        reap: the exit watcher or its parent process does)."""
        exited, status = _core.pidfd_exit_status(self._pidfd, False)
        if not exited:
            return []
        self._retire("_pidfd")
        return [self._event("exit", status, self._init[0])]

    def _freezer_changed(self):
        kind, d = self._freezer
        try:
            if kind == "v2":
                frozen = v2.frozen(d)
            else:
                state = v1.freezer_state(d)
                if state == FREEZING:
                    return []
                frozen = state == FROZEN
        except ContainerSystemError:
            return []                     # removed by a destroy: "destroyed" follows
        if frozen == self._frozen:
            return []
        self._frozen = frozen
        return [self._event("paused" if frozen else "resumed")]

    def _record_changed(self):
        """state.json was replaced: a start made a new init, or set_resources wrote it."""
        if not self._lifecycle:
            return []
        try:
            record = read_state(self._c._dir, self.id)
        except ContainerError:
            return []                     # being destroyed: the directory goes next
        key = (record.init_pid, record.init_start_time)
        if record.nonce != self._c._nonce or key == self._init:
            return []
        out = []
        if self._pidfd is not None:
            # A new init is only made once the old one has exited: its exit comes first.
            if _readable(self._pidfd):
                out += self._init_exit()
            self._retire("_pidfd")
        self._init = key
        fd = open_init_pidfd(record)
        if fd is None and record.init_pid is not None:
            # Started, exited and reaped before we looked. If this process reaped it, its
            # status is in the exit log (the reaper may be recording it right now).
            key = record.extra.get("init_key")
            _, status = EXIT_LOG.wait(key if isinstance(key, int) else None, self._exit_wait)
            out.append(self._event("exit", status, record.init_pid))
        self._pidfd = fd                  # already readable if it exited: the next wait says
        return out

    def _tick(self):
        out = []
        if self._v1_freezer():
            out += self._freezer_changed()
        if self._stats:
            try:
                out.append(self._event("stats", self._c.stats()))
            except ContainerNotExistError:
                pass                      # destroyed meanwhile: "destroyed" follows
        now = time.monotonic()
        self._deadline += self._period * max(1, math.ceil((now - self._deadline) / self._period))
        return out

    def _gone(self):
        """The state directory was removed: destroy has killed everything and removed the
        cgroups. Report what is left, then "destroyed"."""
        out = []
        if self._efd is not None:
            out += self._v1_oom()
            self._retire("_efd")
        if self._oom is not None and self._oom[0] == "v2":
            out += self._v2_oom()
        if self._pidfd is not None:
            # destroy waited for the cgroup to empty; the exit notification follows the
            # cgroup exit by microseconds.
            if _readable(self._pidfd, 0.1):
                out += self._init_exit()
            self._retire("_pidfd")
        self.oom_ended = True
        self.destroyed = True
        if self._lifecycle:
            out.append(self._event("destroyed"))
        return out


class _Owned:
    """A subscription's sources and its wake-up eventfd; close() (also run by the owner's
    weakref finalizer) closes both, and wake() never writes to a closed descriptor."""

    def __init__(self, sources):
        self.sources = sources
        self.lock = threading.Lock()
        try:
            self.wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except BaseException:
            sources.close()
            raise
        self.open = True

    def wake(self):
        with self.lock:
            if self.open:
                os.eventfd_write(self.wake_fd, 1)

    def close(self):
        with self.lock:
            if self.open:
                self.open = False
                os.close(self.wake_fd)
                self.sources.close()


def _wait(owned):
    """Block until one of the sources' fds, or the wake fd, is readable or the timer is
    due; the set of ready fds."""
    src = owned.sources
    timeout = src.timeout()
    poller = select.poll()
    for fd in src.fds() + [owned.wake_fd]:
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else math.ceil(timeout * 1000)
    return {fd for fd, _ in poller.poll(ms)}


# Stats events are left out while this many events wait to be read: a stream nobody reads
# must not grow without bound. Other events are never dropped.
_BACKLOG = 1024


class _End:
    """The last item of an EventStream's queue; error: what stopped the pump, if anything."""

    def __init__(self, error=None):
        self.error = error


def _pump(owned, qref, oom_only):
    """The subscription's thread: wait on the kernel, put what it reports in the queue
    (weakly held: a queue nobody holds any more stops the thread), end with a sentinel.
    Every descriptor is closed before the sentinel is put."""
    src = owned.sources
    error = None
    try:
        while True:
            ready = _wait(owned)
            if owned.wake_fd in ready:
                break                     # close(), or the owner was garbage-collected
            events = src.handle(ready)
            src.close_retired()
            q = qref()
            if q is None:
                break
            for ev in events:
                if oom_only:
                    q.put(ev.data)
                elif ev.type != "stats" or q.qsize() < _BACKLOG:
                    q.put(ev)
            del q
            if src.oom_ended if oom_only else src.destroyed:
                break
    except BaseException as exc:          # noqa: B036 - handed to the reader
        error = exc
    finally:
        owned.close()
        q = qref()
        if q is not None:
            q.put(None if oom_only else _End(error))
    if error is not None and oom_only:
        raise error                       # no reader to hand it to: threading's excepthook


def _start_pump(owned, q, oom_only, name):
    thread = threading.Thread(target=_pump, args=(owned, weakref.ref(q), oom_only),
                              name=name[:60], daemon=True)
    try:
        thread.start()
    except BaseException:
        owned.close()
        raise
    return thread


class EventStream:
    """The iterator Container.events() returns: Event objects, "destroyed" last.

    One daemon thread waits on the kernel's notifications and queues what they mean as they
    happen (so a process that starts and exits between two next() calls is still seen);
    next() blocks until an event is queued. close() - from any thread, or leaving a `with`
    block - ends it and returns once its descriptors are closed; dropping the last
    reference does the same in the background. The stream also ends by itself, every
    descriptor closed, with "destroyed"."""

    def __init__(self, container, interval=5.0, stats=True):
        _check_interval(interval)
        self.id = container.id
        self._owned = _Owned(_Sources(container, lifecycle=True, period=float(interval),
                                      stats=bool(stats)))
        self._queue = queue.Queue()
        self._ended = False
        self._thread = _start_pump(self._owned, self._queue, False,
                                   f"pycontainer-events-{container.id}")
        self._finalizer = weakref.finalize(self, self._owned.wake)

    def __repr__(self):
        return f"<EventStream of {self.id!r}{' ended' if self._ended else ''}>"

    def __iter__(self):
        return self

    def __next__(self):
        if self._ended:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._ended = True
            self._queue.put(item)         # for a next() blocked in another thread
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self):
        """End the stream and close its descriptors; returns once they are closed."""
        self._owned.wake()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._ended = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OomQueue(queue.Queue):
    """The queue.Queue Container.notify_oom() returns. Each item is an int, the number of
    OOM kills reported so far (1, 2, ...); None is the last item, put when the container's
    cgroup is removed (destroy) or after close(). One daemon thread per queue waits on the
    kernel; it ends, closing every descriptor, with the stream, or when the queue is
    garbage-collected."""

    def __init__(self, owned):
        super().__init__()
        self._owned = owned
        self._thread = None

    def close(self):
        """End the stream now (a None follows); returns once its descriptors are closed."""
        self._owned.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


def notify_oom(container):
    """See Container.notify_oom."""
    owned = _Owned(_Sources(container, lifecycle=False, operation="notify_oom"))
    q = OomQueue(owned)
    weakref.finalize(q, owned.wake)
    q._thread = _start_pump(owned, q, True, f"pycontainer-oom-{container.id}")
    return q

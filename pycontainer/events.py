"""Container events: OOM notifications (Container.notify_oom) and a stream like
`runc events` (Container.events; Container.events_async in aio.py drives the same sources).

Each source is a descriptor the kernel makes readable; nothing is polled on a timer except
where the kernel has no notification:

    what                  descriptor                                  readable when
    init exit             the init's pidfd                            it has exited
    OOM kills             the cgroup manager's oom_watch(): an        the OOM path ran (v1), a
                          eventfd (cgroup v1) or a file to watch      counter changed (v2);
                          with inotify IN_MODIFY (v2 memory.events)   v1: once more at rmdir
    pause/resume          the manager's freezer_watch(): a file to    'frozen' changed
                          watch with IN_MODIFY (v2 cgroup.events)
    new init, destroy     inotify on the state directory              state.json replaced (start),
                                                                      the directory removed (destroy)
    pause/resume, v1      none: the manager's frozen() is read every `interval`
    stats                 every `interval`

What an OOM event counts is kills: the increase of the kernel's oom_kill counter, which
the watch reads when woken (cgroups/v1.py says why the v1 eventfd is only a wake-up).

kernfs (cgroupfs) raises no inotify event when a cgroup is removed, so destruction is
seen on the state directory, which destroy removes after the cgroups.

This module uses a Container only through its internal protocol (container.internal,
see pycontainer/container.py) and its public methods.

The init's exit status is only looked at (waitid WNOWAIT, or the status a reaped pidfd
keeps): the exit watcher, or whichever process started the init, reaps it.

A subscription owns its descriptors: they are closed when it ends ("destroyed", or the
cgroup's removal for notify_oom), when it is closed, and when it is garbage-collected.
Container.events and Container.notify_oom have one thread each, which waits on all of
them at once; Container.events_async has none (the loop watches the same descriptors).

For drivers in the package (aio.py): Sources (what one subscription waits on) and
check_interval; not in __all__, not public API.
"""
from __future__ import annotations

import errno
import functools
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


def check_interval(interval):
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
            or not 0 < interval < float("inf"):
        raise ValueError(f"interval={interval!r}: expected a positive number of seconds")


class Sources:
    """The descriptors one subscription waits on and what their readiness means. Drivers
    (EventStream, the notify_oom thread, aio.AsyncEventStream) wait until one of fds() is
    readable or timeout() passes, call handle(ready) and deliver what it returns; then
    close_retired() (after they stopped watching the retired fds)."""

    def __init__(self, container, *, lifecycle, period=None, stats=False,
                 operation="events", exit_wait=1.0):
        self.id = container.id
        self._c = container
        self._inside = container.internal   # state_dir, cgroups, record(), is_current()
        self._lifecycle = lifecycle     # exit, paused/resumed, destroyed (events()); else OOM only
        self._stats = stats
        self._period = period
        self._exit_wait = exit_wait     # for the status of an init reaped before we looked
        self._ino = None                # the inotify fd
        self._wds = {}                  # watch descriptor -> "state" | "freezer" | "memory"
        self._pidfd = None              # the followed init's, until it has exited
        self._init = (None, None)       # (pid, start time) of the init followed
        self._retired = []              # closers of fds no longer watched: close_retired()
        self._freezer = None            # the manager's FreezerWatch
        self._frozen = False
        self._oom = None                # the manager's OOM watch
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
        inside = self._inside
        cgroups = inside.cgroups
        inside.record(operation)                    # ContainerNotExistError when destroyed
        self._oom = cgroups.oom_watch()
        if self._oom is None and not self._lifecycle:
            raise ContainerSystemError(errno.ENOTSUP, "the container has no memory cgroup to "
                                       "report OOM kills", container_id=self.id,
                                       operation=operation)
        # An OOM watch whose descriptor the kernel signals at the cgroup's removal ends an
        # OOM subscription by itself; everything else needs to see the state directory go.
        if self._lifecycle or not self._oom.ends_with_cgroup:
            self._ino = _core.inotify_open()
            try:
                self._watch(inside.state_dir, _STATE_MASK, "state")
            except ContainerSystemError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise ContainerNotExistError("no such container", container_id=self.id,
                                                 operation=operation) from None
                raise
        # Read after the watches: whatever changes from here on is reported.
        record = inside.record(operation)
        if self._oom is not None and self._oom.path is not None:
            self._watch(self._oom.path, _core.INOTIFY_MODIFY, "memory")
        if self._lifecycle:
            self._freezer = cgroups.freezer_watch()
            if self._freezer is not None:
                if self._freezer.path is not None:
                    self._watch(self._freezer.path, _core.INOTIFY_MODIFY, "freezer")
                self._frozen = bool(cgroups.frozen())
            self._init = (record.init_pid, record.init_start_time)
            fd = open_init_pidfd(record)
            if fd is not None and _readable(fd):
                os.close(fd)        # exited before we looked: not an event of this stream
                fd = None
            self._pidfd = fd
        # The freezer without a change notification (v1) is read at every tick.
        if self._period is not None and (self._stats or self._polled_freezer()):
            self._deadline = time.monotonic() + self._period

    def _watch(self, path, mask, kind):
        self._wds[_core.inotify_watch(self._ino, path, mask)] = kind

    def _polled_freezer(self):
        return self._lifecycle and self._freezer is not None and self._freezer.path is None

    def _oom_fd(self):
        return None if self._oom is None else self._oom.fd

    # -- what drivers use --------------------------------------------------------------

    def fds(self):
        """The descriptors to wait on (for readability) now."""
        return [fd for fd in (self._oom_fd(), self._pidfd, self._ino) if fd is not None]

    def timeout(self):
        """Seconds until handle() has work without any fd being ready; None: no timer."""
        due = [t for t in (self._deadline, self._oom_recheck()) if t is not None]
        if not due:
            return None
        return max(0.0, min(due) - time.monotonic())

    def _oom_recheck(self):
        return None if self._oom is None else self._oom.recheck_at()

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
            if not os.path.isdir(self._inside.state_dir):
                kinds.add("gone")
        out = []
        # An OOM is reported before its victim dies, so before an exit it caused: the kill
        # is counted before the victim is signalled, so reading the counter first when an
        # init exited puts them in order.
        recheck = self._oom_recheck()
        exited = self._pidfd is not None and self._pidfd in ready
        if self._oom is not None and (self._oom.fd in ready or "memory" in kinds or exited or
                                      (recheck is not None and time.monotonic() >= recheck)):
            out += self._oom_update()
        if exited:
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
            self._retired.pop()()

    def close(self):
        """Close every descriptor. Idempotent."""
        self.closed = True
        for name in ("_pidfd", "_ino"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)
        self._end_oom()
        self.close_retired()

    # -- the sources -------------------------------------------------------------------

    def _event(self, kind, data=None, pid=None):
        return Event(kind, self.id, time.time(), data, pid)

    def _retire(self, name):
        fd = getattr(self, name)
        if fd is not None:
            setattr(self, name, None)
            self._retired.append(functools.partial(os.close, fd))

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

    def _oom_update(self):
        """Report the kills the OOM watch counted since the last look; once it says the
        cgroup is gone, no OOM can follow: the subscription's OOM part ends."""
        if self._oom is None:
            return []
        n, gone = self._oom.update()
        out = self._ooms(n)
        if gone:
            self._end_oom()
        return out

    def _end_oom(self):
        """Stop watching OOMs; the watch is closed by close_retired(), once drivers
        stopped waiting on its descriptor."""
        watch, self._oom = self._oom, None
        if watch is not None:
            self.oom_ended = True
            self._retired.append(watch.close)

    def _init_exit(self):
        """The followed init's pidfd is readable: it exited. Look at its status (never
        reap: the exit watcher or its parent process does)."""
        exited, status = _core.pidfd_exit_status(self._pidfd, False)
        if not exited:
            return []
        self._retire("_pidfd")
        return [self._event("exit", status, self._init[0])]

    def _freezer_changed(self):
        try:
            frozen = self._inside.cgroups.frozen()
        except ContainerSystemError:
            return []                     # removed by a destroy: "destroyed" follows
        if frozen is None or frozen == self._frozen:
            return []                     # None: a v1 freeze under way
        self._frozen = frozen
        return [self._event("paused" if frozen else "resumed")]

    def _record_changed(self):
        """state.json was replaced: a start made a new init, or set_resources wrote it."""
        if not self._lifecycle:
            return []
        try:
            record = read_state(self._inside.state_dir, self.id)
        except ContainerError:
            return []                     # being destroyed: the directory goes next
        key = (record.init_pid, record.init_start_time)
        if not self._inside.is_current(record) or key == self._init:
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
        if self._polled_freezer():
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
        out = self._oom_update()
        self._end_oom()
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
        check_interval(interval)
        self.id = container.id
        self._owned = _Owned(Sources(container, lifecycle=True, period=float(interval),
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
    owned = _Owned(Sources(container, lifecycle=False, operation="notify_oom"))
    q = OomQueue(owned)
    weakref.finalize(q, owned.wake)
    q._thread = _start_pump(owned, q, True, f"pycontainer-oom-{container.id}")
    return q

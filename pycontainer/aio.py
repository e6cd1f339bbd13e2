"""asyncio: Container.start_async and Container.events_async.

Both run on the event loop's own descriptor watching (loop.add_reader), so they work on any
loop that has it: asyncio's default selector loop and uvloop. No thread waits for a process
or an event; the process-wide exit watcher (exits.py) is only a fallback, for processes
whose loop is closed before they exit.

start_async: the process is started as by Container.start (same lock, same state handling:
Container.start_with_pidfd), and its pidfd goes to loop.add_reader instead of the exit watcher. A
pidfd polls readable once its process has exited; the callback then reaps it with
waitid(P_PIDFD, WEXITED | __WALL | WNOHANG) (__WALL: our children start with exit_signal 0)
through _core.pidfd_exit_status, removes the reader and closes the pidfd, whether or not
anyone still waits for the future (cancelling a wait cancels the future, as asyncio does;
asyncio.shield keeps it).

The start itself (lock, state file, clone, wait for exec: about a millisecond) runs in
pycontainer's one worker thread (off_loop), so that the loop goes on meanwhile; so do
Container.stats_async and destroy_async and Factory.create_async.

events_async: the descriptors of events.Sources (the same ones Container.events waits on)
each get a reader; a timer (loop.call_later) runs the stats ticks. Events are noticed when
the loop runs: an init started and destroyed with no await in between is not seen.
"""
from __future__ import annotations

import asyncio
import os
import signal
import weakref
from collections import deque

from . import _core
from .events import check_interval, Sources
from .exits import EXIT_LOG, WATCHER, process_key
from .process import StartedProcess


async def start_async(container, process):
    """See Container.start_async. Returns (pid, exit_future), a StartedProcess whose
    .console is the pty master of a terminal process."""
    loop = asyncio.get_running_loop()
    pid, pidfd, console, stdio = await off_loop(
        loop, container.start_with_pidfd, process, True, undo=_abandon)

    child = _Child(pidfd, loop.create_future())
    try:
        loop.add_reader(pidfd, child.on_readable, loop)
    except BaseException:
        child.future.cancel()
        child.hand_over()     # this loop cannot watch it (closing): the exit watcher reaps
        if stdio is not None:
            stdio.close()
        if console is not None:
            os.close(console)
        raise
    return StartedProcess(pid, child.future, console, stdio=stdio, process=process,
                          signal=child.send_signal)


_WORKER = None      # the one thread the blocking parts run in (made at first use)


async def off_loop(loop, fn, *args, undo=None):
    """fn(*args) in pycontainer's worker thread, awaited without blocking the loop. One
    thread for the process, not one per call: container operations are short (a start
    is about a millisecond) and hold locks of their own. If the awaiting task is
    cancelled, fn still finishes, and undo(its result) undoes what it made."""
    global _WORKER
    if _WORKER is None:
        from concurrent.futures import ThreadPoolExecutor
        _WORKER = ThreadPoolExecutor(1, thread_name_prefix="pycontainer-aio")
    future = loop.run_in_executor(_WORKER, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if undo is not None:
            future.add_done_callback(
                lambda f: f.cancelled() or f.exception() or undo(f.result()))
        raise


def _abandon(spawned):
    """A process start_async started for a task that was cancelled meanwhile: killed,
    reaped by the exit watcher, its descriptors closed."""
    _, pidfd, console, stdio = spawned
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    WATCHER.watch(pidfd)
    if stdio is not None:
        stdio.close()
    if console is not None:
        os.close(console)


class _Child:
    """A started process whose pidfd the loop watches. Only the loop's reader holds it: if
    the loop is closed (or dropped) before the process exits, the reader goes and with it
    this object, which then hands the pidfd to the exit watcher, so that the process is
    still reaped and the pidfd closed."""

    __slots__ = ("pidfd", "key", "future")

    def __init__(self, pidfd, future):
        self.pidfd = pidfd
        self.key = process_key(pidfd)
        self.future = future
        EXIT_LOG.expect(self.key)

    def on_readable(self, loop):
        try:
            exited, status = _core.pidfd_exit_status(self.pidfd, True)
        except OSError as exc:
            exited, status, error = True, None, exc
        else:
            error = None
        if not exited:
            return          # not waitable yet (a moment after the exit notification)
        loop.remove_reader(self.pidfd)
        os.close(self.pidfd)
        self.pidfd = None
        EXIT_LOG.record(self.key, status)
        # A cancelled wait cancels the future too: the process is reaped all the same.
        if not self.future.done():
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(status)

    def send_signal(self, sig):
        """Through the pidfd while the loop holds it (not yet reaped); else nothing."""
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, sig)
            except ProcessLookupError:
                pass

    def hand_over(self):
        if self.pidfd is not None:
            pidfd, self.pidfd = self.pidfd, None
            WATCHER.watch(pidfd)

    def __del__(self):
        try:
            self.hand_over()
        except Exception:     # interpreter shutdown: the kernel will close it
            pass


class _Driver:
    """The loop side of an AsyncEventStream: readers on the sources' fds, the tick timer,
    the events not yet taken. Holds no reference to the stream, so that dropping the stream
    runs its finalizer (which closes this)."""

    def __init__(self, sources):
        self.sources = sources
        self.loop = None
        self.pending = deque()
        self.waiter = None
        self.error = None
        self.readers = set()
        self.timer = None
        self.closed = False

    def start(self, loop):
        self.loop = loop
        self._rearm()

    def _rearm(self):
        """Readers on exactly the fds the sources want now (an exited init's pidfd is
        dropped before it is closed), and the timer at the next tick."""
        want = set() if self.sources.destroyed else set(self.sources.fds())
        for fd in self.readers - want:
            self.loop.remove_reader(fd)
        for fd in want - self.readers:
            self.loop.add_reader(fd, self._on_ready, fd)
        self.readers = want
        self.sources.close_retired()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        timeout = self.sources.timeout()
        if timeout is not None and not self.sources.destroyed:
            self.timer = self.loop.call_later(timeout, self._on_timer)

    def _on_ready(self, fd):
        self._run({fd})

    def _on_timer(self):
        self.timer = None
        self._run(set())

    def _run(self, ready):
        if self.closed:
            return
        try:
            self.pending.extend(self.sources.handle(ready))
            self._rearm()
            if self.sources.destroyed:
                self.close()              # every fd closed with the last event
        except Exception as exc:          # delivered to the reader by __anext__
            self.error = exc
            self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.loop is not None and not self.loop.is_closed():
            for fd in self.readers:
                self.loop.remove_reader(fd)
            if self.timer is not None:
                self.timer.cancel()
        self.readers = set()
        self.timer = None
        self.sources.close()


class AsyncEventStream:
    """The async iterator Container.events_async() returns: the Events of
    Container.events, until "destroyed". Its descriptors are opened at once (events from
    the call on are reported) and watched by the running loop from the first __anext__.
    aclose() (or `async with`) releases them early; so does dropping the last reference."""

    def __init__(self, container, interval=5.0, stats=True):
        check_interval(interval)
        self.id = container.id
        # exit_wait: the loop's thread must not block long for an exit log entry (the
        # reaper may be a callback of this very loop).
        self._driver = _Driver(Sources(container, lifecycle=True, period=float(interval),
                                        stats=bool(stats), exit_wait=0.05))
        self._finalizer = weakref.finalize(self, self._driver.close)

    def __repr__(self):
        return f"<AsyncEventStream of {self.id!r}>"

    def __aiter__(self):
        return self

    async def __anext__(self):
        d = self._driver
        if d.loop is None and not d.closed:
            d.start(asyncio.get_running_loop())
        while not d.pending:
            if d.error is not None:
                error, d.error = d.error, None
                raise error
            if d.closed:
                raise StopAsyncIteration
            d.waiter = d.loop.create_future()
            try:
                await d.waiter
            finally:
                d.waiter = None
        return d.pending.popleft()

    async def aclose(self):
        """Stop the stream and close its descriptors."""
        self._finalizer()

    def close(self):
        """aclose() for callers outside a coroutine (in the loop's thread)."""
        self._finalizer()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self._finalizer()

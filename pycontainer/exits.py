"""The process-wide exit watcher.

One daemon thread per Python process waits (without the GIL, in _core.reap_ready) on an
epoll set of pidfds. A readable pidfd is a child that has exited: the thread reaps it with
waitid(P_PIDFD) and puts its status in that process's queue. Starting threads add pidfds
with epoll_ctl directly (epoll allows that while another thread waits), so no wake-up
eventfd is needed. No thread per process, no polling, no pid-reuse race.
"""
from __future__ import annotations

import collections
import functools
import os
import queue
import select
import signal
import threading

from . import _core


@functools.lru_cache(maxsize=None)
def _pidfs():
    """Whether pidfds have an inode of their own per process (pidfs, Linux 6.9+) rather
    than the one inode every anonymous-inode fd shares (an eventfd's)."""
    pidfd = os.pidfd_open(os.getpid())
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        return os.fstat(pidfd).st_ino != os.fstat(efd).st_ino
    finally:
        os.close(pidfd)
        os.close(efd)


def process_key(pidfd):
    """An identity of the process behind pidfd that is never reused while the system runs:
    its pidfs inode number. None on kernels before pidfs, or when it cannot be told (this
    runs on the start path after the spawn: it must not fail)."""
    try:
        return os.fstat(pidfd).st_ino if _pidfs() else None
    except OSError:
        return None


class ExitLog:
    """The exit statuses this Python process reaped (exit watcher or asyncio), by
    process_key, the last `keep` of them. An event stream that notices a container init
    only after it was reaped (pidfd_open fails then) reads its status here."""

    def __init__(self, keep=1024):
        self._cond = threading.Condition(threading.Lock())
        self._pending = set()
        self._done = collections.OrderedDict()
        self._keep = keep

    def expect(self, key):
        """`key` is a child of ours that will be recorded when reaped."""
        if key is not None:
            with self._cond:
                self._pending.add(key)

    def record(self, key, status):
        if key is None:
            return
        with self._cond:
            self._pending.discard(key)
            self._done[key] = status
            if len(self._done) > self._keep:
                self._done.popitem(last=False)
            self._cond.notify_all()

    def wait(self, key, timeout):
        """(True, status) once `key` is recorded (waiting up to timeout while it is expected
        but not yet reaped); (False, None) when this process does not know it."""
        if key is None:
            return False, None
        with self._cond:
            self._cond.wait_for(lambda: key not in self._pending, timeout)
            if key in self._done:
                return True, self._done[key]
        return False, None

    def _after_fork_in_child(self):
        self.__init__(self._keep)


EXIT_LOG = ExitLog()


class ExitQueue(queue.Queue):
    """The queue a started process's status is put in (once). The status is also kept:
    `exited` is set and `status` holds it, so that a StartedProcess can wait() or poll()
    however many times, whether or not someone took it from the queue."""

    def __init__(self):
        super().__init__(maxsize=1)
        self.exited = threading.Event()
        self.status = None

    def _put(self, item):
        super()._put(item)
        self.status = item
        self.exited.set()


class ExitWatcher:
    def __init__(self):
        self._lock = threading.Lock()
        self._epoll = None
        self._queues = {}          # pidfd -> queue.Queue(maxsize=1)
        self._keys = {}            # pidfd -> process_key, for EXIT_LOG
        self._release = {}         # pidfd -> a descriptor closed once its status is out
        self._thread = None

    def watch(self, pidfd, release=None):
        """Take ownership of pidfd; its exit status (code, or -signal) goes to the queue.
        release: a descriptor (owned from here) closed right after the status is put
        there, by this thread: a pooled init's mount namespace, whose teardown would
        otherwise delay the exit it follows (pycontainer.pool)."""
        q = ExitQueue()
        key = process_key(pidfd)
        EXIT_LOG.expect(key)
        with self._lock:
            if self._epoll is None:
                self._epoll = select.epoll()
            if self._thread is None or not self._thread.is_alive():
                # (Re)started: a watcher that died of an unexpected error (reported by
                # threading's excepthook) must not leave later exits undelivered.
                self._thread = threading.Thread(target=self._run, args=(self._epoll,),
                                                name="pycontainer-exits", daemon=True)
                self._thread.start()
            self._queues[pidfd] = q
            self._keys[pidfd] = key
            if release is not None:
                self._release[pidfd] = release
            self._epoll.register(pidfd, select.EPOLLIN)
        return q

    def signal(self, pidfd, q, sig):
        """Send `sig` to the process watched through pidfd with queue q, unless it has been
        reaped (its pidfd closed, and the number maybe another's since)."""
        with self._lock:
            if self._queues.get(pidfd) is q:
                try:
                    signal.pidfd_send_signal(pidfd, sig)
                except ProcessLookupError:
                    pass                  # exited, not yet reaped

    def thread_count(self):
        return 1 if self._thread is not None and self._thread.is_alive() else 0

    def _run(self, ep):
        epfd = ep.fileno()
        while True:
            try:
                ready = _core.reap_ready(epfd, -1)
            except OSError:
                if ep.closed:       # reset after fork in a child: this thread is not there
                    return
                raise
            for fd, status in ready:
                with self._lock:
                    q = self._queues.pop(fd, None)
                    key = self._keys.pop(fd, None)
                    release = self._release.pop(fd, None)
                    os.close(fd)
                EXIT_LOG.record(key, status)
                if q is not None:
                    q.put(status)
                if release is not None:
                    os.close(release)

    def _after_fork_in_child(self):
        # The children are the parent's; the epoll set is shared with it. Start afresh.
        self._lock = threading.Lock()
        for fd in self._queues:
            try:
                os.close(fd)
            except OSError:
                pass
        for fd in self._release.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._queues = {}
        self._keys = {}
        self._release = {}
        if self._epoll is not None:
            self._epoll.close()
        self._epoll = None
        self._thread = None


WATCHER = ExitWatcher()
os.register_at_fork(after_in_child=WATCHER._after_fork_in_child)
os.register_at_fork(after_in_child=EXIT_LOG._after_fork_in_child)

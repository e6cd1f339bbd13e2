"""The process-wide exit watcher.

One daemon thread per Python process waits (without the GIL, in _core.reap_ready) on an
epoll set of pidfds. A readable pidfd is a child that has exited: the thread reaps it with
waitid(P_PIDFD) and puts its status in that process's queue. Starting threads add pidfds
with epoll_ctl directly (epoll allows that while another thread waits), so no wake-up
eventfd is needed. No thread per process, no polling, no pid-reuse race.
"""
from __future__ import annotations

import os
import queue
import select
import threading

from . import _core


class ExitWatcher:
    def __init__(self):
        self._lock = threading.Lock()
        self._epoll = None
        self._queues = {}          # pidfd -> queue.Queue(maxsize=1)
        self._thread = None

    def watch(self, pidfd):
        """Take ownership of pidfd; its exit status (code, or -signal) goes to the queue."""
        q = queue.Queue(maxsize=1)
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
            self._epoll.register(pidfd, select.EPOLLIN)
        return q

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
                    os.close(fd)
                if q is not None:
                    q.put(status)

    def _after_fork_in_child(self):
        # The children are the parent's; the epoll set is shared with it. Start afresh.
        self._lock = threading.Lock()
        for fd in self._queues:
            try:
                os.close(fd)
            except OSError:
                pass
        self._queues = {}
        if self._epoll is not None:
            self._epoll.close()
        self._epoll = None
        self._thread = None


WATCHER = ExitWatcher()
os.register_at_fork(after_in_child=WATCHER._after_fork_in_child)

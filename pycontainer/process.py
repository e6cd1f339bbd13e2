"""StartedProcess: what Container.start, stage and start_async return.

Its own module so that pycontainer.aio (which makes one with an asyncio future for exits)
and pycontainer.container (which makes one with an exit watcher queue) both depend on it
rather than on each other.
"""
from __future__ import annotations

__all__ = ["StartedProcess"]


class StartedProcess(tuple):
    """The pair (pid, exits) start() always returned, and as `.console` the master of the
    process's pty (a descriptor the caller owns and closes) when its ProcessConfig asked
    for a terminal, else None. `exits`: a queue.Queue (start, stage), an asyncio future
    (start_async), or None (reap=False)."""

    def __new__(cls, pid, exits, console=None):
        started = super().__new__(cls, (pid, exits))
        started.console = console
        return started

    pid = property(lambda self: self[0])
    exits = property(lambda self: self[1])

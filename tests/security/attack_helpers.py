"""The attacker's side of the attack tests: start /attacker (attacker.c) in a container and
collect what it reports."""
import os
import signal
import threading

import pycontainer as pc


class Attacker:
    """/attacker running in container `c` (as its init, or joined), reporting on a pipe."""

    def __init__(self, c, program="/attacker", own=()):
        """own: exe paths of the container's programs besides busybox's (attacker.c)."""
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid, self.exits = c.start(pc.ProcessConfig(args=[program, *own], stdout=w))
        finally:
            os.close(w)
        self.lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(r,), daemon=True)
        self._reader.start()
        self.wait_for(lambda: any(l[:1] == ["ready"] for l in self.lines), "ready")

    def _read(self, fd):
        with os.fdopen(fd, "r") as f:
            for line in f:
                with self._cond:
                    self.lines.append(line.split())
                    self._cond.notify_all()
        with self._cond:
            self.lines.append(["eof"])
            self._cond.notify_all()

    def wait_for(self, predicate, what, timeout=60):
        with self._cond:
            if not self._cond.wait_for(lambda: predicate() or ["eof"] in self.lines, timeout):
                raise AssertionError(f"attacker: no {what} in {timeout}s: {self.lines}")
            if not predicate():
                raise AssertionError(f"attacker ended before {what}: {self.lines}")

    def seen(self):
        """Runtime processes it caught before their exec."""
        with self._cond:
            return [l for l in self.lines if l[0] == "seen"]

    def finish(self):
        """SIGTERM: it tries to write every exe it kept, reports and exits."""
        os.kill(self.pid, signal.SIGTERM)
        self.wait_for(lambda: ["done"] in self.lines, "done")
        assert self.exits.get(timeout=30) == 0
        self._reader.join(30)
        return self.lines

    def breaches(self):
        """Everything the kernel let it have of ours: must be nothing."""
        with self._cond:
            return [l for l in self.lines if l[0] == "got" or l[:2] == ["exewrite", "ok"]]


def join_until_seen(attacker, join_once, want=3, limit=3000):
    """Join (join_once()) until the attacker has caught `want` runtime processes before
    their exec, or `limit` joins: the attack ran against the window, not beside it."""
    for _ in range(limit):
        join_once()
        if len(attacker.seen()) >= want:
            return
    raise AssertionError(f"the attacker caught {len(attacker.seen())} of {want} joining "
                         f"processes in {limit} joins: it never raced the window")

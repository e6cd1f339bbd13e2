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


class Prober:
    """/attacker --probe (attacker.c) running in container `c`, driven over a pipe: told
    which pid to attack when the test has made the window (a staged or parked init), so
    that nothing depends on winning a race. kw: more of its ProcessConfig."""

    def __init__(self, c, **kw):
        in_r, self._in = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid, self.exits = c.start(pc.ProcessConfig(
                args=["/attacker", "--probe"], stdin=in_r, stdout=out_w, **kw))
        finally:
            os.close(in_r)
            os.close(out_w)
        self._out = os.fdopen(out_r, "r")
        self.lines = []
        self._expect("ready")

    def _send(self, line):
        os.write(self._in, (line + "\n").encode())

    def _expect(self, last):
        """Its lines up to and including `last` (its first word + argument)."""
        got = []
        for line in self._out:
            words = line.split()
            got.append(words)
            self.lines.append(words)
            if words[:len(last.split())] == last.split():
                return got
        raise AssertionError(f"attacker ended before {last!r}: {self.lines}")

    def secret(self, token):
        """From now on every memory it reaches is searched for `token`."""
        self._send(f"secret {token}")

    def probe(self, pid):
        """Attack `pid` (in the attacker's pid namespace) once: its lines."""
        self._send(str(pid))
        return self._expect(f"probed {pid}")

    def look_at_self(self):
        """Its own descriptors {fd: target} and the pids of its /proc."""
        self._send("self")
        lines = self._expect("selfdone")
        fds = {int(l[1]): " ".join(l[2:]) for l in lines if l[0] == "selffd"}
        return fds, sorted(int(l[1]) for l in lines if l[0] == "proc")

    def finish(self):
        """EOF: it writes back a byte of every exe it kept ("exewrite ..."), and exits."""
        os.close(self._in)
        self._expect("done")
        assert self.exits.get(timeout=30) == 0
        self._out.close()
        return self.lines


def granted(lines):
    """What the kernel let the attacker have: its "got" lines and successful exe writes."""
    return [l for l in lines if l[0] == "got" or l[:2] == ["exewrite", "ok"]]


def ns_pid(host_pid):
    """`host_pid`'s pid in its innermost pid namespace (NSpid's last field)."""
    with open(f"/proc/{host_pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {host_pid}")

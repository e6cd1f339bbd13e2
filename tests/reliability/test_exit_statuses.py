"""Exit statuses are never lost or stolen (issue 6.8), while the rest of the program
makes and waits for children of its own.

test_statuses_with_subprocess_asyncio_and_waitpid: container starts (joins into a
    running container, and fresh inits of a second one) in three threads, alongside
    subprocess.run in a thread, asyncio.create_subprocess_exec in an event-loop thread
    (asyncio's child watcher) and a thread that posix_spawns children and waits for each
    with waitpid(pid). Every status reaches its owner exactly: each container process's
    its queue, each subprocess/asyncio/posix_spawn process's its waiter.
test_statuses_with_a_blind_waitpid_loop: the same container starts alongside a thread
    that reaps with a blind waitpid(-1) (and posix_spawns children of its own). Every
    container process's status still reaches its queue. (No subprocess or asyncio users
    run in this one: a blind waitpid(-1) steals their statuses, which is that loop's doing,
    not the library's; the first test checks them with targeted waits instead.)
"""
import asyncio
import collections
import os
import random
import signal
import subprocess
import threading
import time

import pycontainer as pc

SCRIPTS = [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("exit 255", 255),
           ("exit 137", 137), ("kill -TERM $$", -signal.SIGTERM),
           ("kill -KILL $$", -signal.SIGKILL), ("kill -USR1 $$", -signal.SIGUSR1)]


class Containers:
    """Container starts from several threads: joins into `joined` (its init sleeps), and
    inits of `fresh` (one at a time: each exits, the next makes new namespaces)."""

    def __init__(self, factory, rootfs):
        self.joined = factory.create("joined", pc.Config(rootfs=rootfs))
        self.init_pid, self.init_exits = self.joined.start(
            pc.ProcessConfig(args=["sleep", "1000"]))
        self.fresh = factory.create("fresh", pc.Config(rootfs=rootfs))
        self.results = []          # (expected, got, pid, kind)
        self.errors = []
        self.lock = threading.Lock()

    def joiner(self, seed, stop):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                batch = []
                for _ in range(rng.randint(1, 8)):
                    script, expected = rng.choice(SCRIPTS)
                    pid, exits = self.joined.start(
                        pc.ProcessConfig(args=["/bin/sh", "-c", script]))
                    batch.append((expected, exits, pid))
                for expected, exits, pid in batch:
                    got = exits.get(timeout=30)
                    with self.lock:
                        self.results.append((expected, got, pid, "join"))
        except Exception as exc:          # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))

    def initer(self, seed, stop):
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                # The init of a pid namespace gets no signal it has no handler for, but
                # SIGKILL from an ancestor namespace: inits exit with a code, or are
                # SIGKILLed from here.
                script, expected = rng.choice(SCRIPTS)
                if expected >= 0:
                    pid, exits = self.fresh.start(
                        pc.ProcessConfig(args=["/bin/sh", "-c", script]))
                else:
                    expected = -signal.SIGKILL
                    pid, exits = self.fresh.start(pc.ProcessConfig(args=["sleep", "1000"]))
                    os.kill(pid, signal.SIGKILL)
                got = exits.get(timeout=30)
                with self.lock:
                    self.results.append((expected, got, pid, "init"))
                deadline = time.monotonic() + 10
                while self.fresh.run_state() != pc.RunState.STOPPED:
                    assert time.monotonic() < deadline, "init exited but not STOPPED"
                    time.sleep(0.001)
        except Exception as exc:          # noqa: BLE001
            self.errors.append(repr(exc))

    def threads(self, stop):
        return ([threading.Thread(target=self.joiner, args=(i, stop)) for i in range(2)]
                + [threading.Thread(target=self.initer, args=(9, stop))])

    def finish(self):
        self.joined.destroy()
        self.fresh.destroy()
        assert self.init_exits.get(timeout=10) == -signal.SIGKILL

    def check(self):
        assert not self.errors, self.errors
        wrong = [r for r in self.results if r[0] != r[1]]
        assert not wrong, f"{len(wrong)} of {len(self.results)} container statuses wrong: {wrong[:10]}"
        kinds = collections.Counter(r[3] for r in self.results)
        assert kinds["join"] > 50 and kinds["init"] > 10, kinds
        return kinds


def spawn_and_wait(seed, stop, out, errors, blind=False):
    """posix_spawn `sh -c SCRIPT` children; wait for each with waitpid(pid) (targeted)."""
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            script, expected = rng.choice(SCRIPTS)
            pid = os.posix_spawn("/bin/sh", ["sh", "-c", script], os.environ)
            _, status = os.waitpid(pid, 0)
            out.append((expected, os.waitstatus_to_exitcode(status), pid))
    except Exception as exc:              # noqa: BLE001
        errors.append(repr(exc))


def subprocess_user(seed, stop, out, errors):
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            script, expected = rng.choice(SCRIPTS)
            p = subprocess.run(["/bin/sh", "-c", script])
            out.append((expected, p.returncode, p.args))
    except Exception as exc:              # noqa: BLE001
        errors.append(repr(exc))


def asyncio_user(seed, stop, out, errors):
    rng = random.Random(seed)

    async def main():
        while not stop.is_set():
            procs = []
            for _ in range(rng.randint(1, 4)):
                script, expected = rng.choice(SCRIPTS)
                proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", script)
                procs.append((expected, proc))
            for expected, proc in procs:
                out.append((expected, await proc.wait(), proc.pid))

    try:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    except Exception as exc:              # noqa: BLE001
        errors.append(repr(exc))


def run_for(threads, seconds, stop):
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    assert not [t for t in threads if t.is_alive()], "a thread hung"


def test_statuses_with_subprocess_asyncio_and_waitpid(factory, busybox_rootfs):
    cs = Containers(factory, busybox_rootfs)
    stop = threading.Event()
    own = {"subprocess": [], "asyncio": [], "waitpid(pid)": []}
    errors = []
    try:
        run_for(cs.threads(stop) + [
            threading.Thread(target=subprocess_user, args=(1, stop, own["subprocess"], errors)),
            threading.Thread(target=asyncio_user, args=(2, stop, own["asyncio"], errors)),
            threading.Thread(target=spawn_and_wait, args=(3, stop, own["waitpid(pid)"], errors)),
        ], 4, stop)
    finally:
        cs.finish()
    kinds = cs.check()
    assert not errors, errors
    for name, results in own.items():
        wrong = [r for r in results if r[0] != r[1]]
        assert not wrong, f"{name}: {len(wrong)} of {len(results)} statuses wrong: {wrong[:10]}"
        assert len(results) > 10, (name, len(results))
    print(f"\nstatuses: containers {dict(kinds)}, "
          + ", ".join(f"{k} {len(v)}" for k, v in own.items()) + " - all exact")


def test_statuses_with_a_blind_waitpid_loop(factory, busybox_rootfs):
    cs = Containers(factory, busybox_rootfs)
    stop = threading.Event()
    reaped = {}          # statuses of processes that are not the loop's own
    pending = {}         # the loop's own children, not yet reaped: pid -> expected
    own = []             # (pid, expected, status) of the loop's own, as reaped

    def blind():
        rng = random.Random(4)
        while True:
            stopping = stop.is_set()
            if not stopping and rng.random() < 0.3:
                script, expected = rng.choice(SCRIPTS)
                pending[os.posix_spawn("/bin/sh", ["sh", "-c", script], os.environ)] = expected
            try:
                # Blocking, as a careless program's reaper would be; once told to stop
                # (and woken by one more child), it waits for its own children still
                # running, then drains what is left and returns.
                pid, status = os.waitpid(-1, os.WNOHANG if stopping and not pending else 0)
            except ChildProcessError:
                if stopping:
                    return
                time.sleep(0.001)
                continue
            if pid == 0:
                return
            # A pid is not reused while its zombie waits, so a pid in `pending` is the
            # loop's own child; matching by pid after the fact would not be (a container
            # process may get the pid of an own child reaped earlier in a long run).
            code = os.waitstatus_to_exitcode(status)
            if pid in pending:
                own.append((pid, pending.pop(pid), code))
            else:
                reaped[pid] = code

    t = threading.Thread(target=blind)
    t.start()
    try:
        run_for(cs.threads(stop), 4, stop)
    finally:
        stop.set()
        os.posix_spawn("/bin/true", ["true"], os.environ)     # wakes the loop
        t.join(30)
        assert not t.is_alive()
        cs.finish()
    kinds = cs.check()
    container_pids = {r[2] for r in cs.results}
    stolen = len(container_pids & set(reaped))
    assert not pending, f"own children never reaped: {pending}"
    wrong_own = [r for r in own if r[1] != r[2]]
    assert not wrong_own, wrong_own
    print(f"\nblind waitpid(-1): containers {dict(kinds)} all exact; the loop reaped "
          f"{stolen} of their {len(container_pids)} processes before the library did, "
          f"and its own {len(own)} children")

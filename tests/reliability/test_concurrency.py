"""Concurrency (issue 6.3): eight threads, and separately four processes, hammer one
container with start (/bin/true joins), processes, stats, pause, resume and run_state while
the test destroys it near the end. Every call succeeds or raises the documented error for
the state it raced with (see hammer.one_call); nothing deadlocks (threads and processes
are joined with a timeout); nothing is left behind. And one container's lock never blocks
another container."""
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import pycontainer as pc
from pycontainer.container import lock_container
from hammer import Tally, hammer
from reliability_helpers import (HERE, cgroup_dirs, processes_in_cgroups, python_env,
                                 scope_of, settle)

HAMMER = os.path.join(HERE, "hammer.py")


def check_nothing_left(factory):
    scope = scope_of(factory.root)
    assert factory.list() == [] and factory.list_broken() == {}
    assert not settle(lambda: cgroup_dirs([f"{scope}-"]))
    assert not settle(lambda: processes_in_cgroups([f"{scope}-"]))


def check_hammer(kind, tally, seconds, factory):
    """Print the tally; no unexpected outcome, every kind of call really ran and the
    races really happened; nothing left behind."""
    calls = sum(tally.counts.values())
    print(f"\n{kind}: {calls} calls in {seconds:.1f} s: "
          + ", ".join(f"{k}={v}" for k, v in sorted(tally.counts.items())))
    assert not tally.unexpected, "\n".join(tally.unexpected)
    for op in ("start: exit 0", "processes: ok", "stats: ok", "pause: ok", "resume: ok",
               "start: ContainerPausedError"):
        assert tally.counts[op] > 0, (op, tally.counts)
    check_nothing_left(factory)


def threads_hammer(factory, rootfs, seconds, nthreads=8):
    c = factory.create("hammered", pc.Config(rootfs=rootfs))
    init_pid, init_exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    destroying = threading.Event()
    tallies = [Tally() for _ in range(nthreads)]
    threads = [threading.Thread(target=hammer, args=(c, 1000 + i, seconds + 0.5,
                                                     destroying.is_set, tallies[i]),
                                name=f"hammer-{i}")
               for i in range(nthreads)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    destroying.set()
    c.destroy()
    for t in threads:
        t.join(60)
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"deadlock: {stuck} still running 60 s after their deadline"
    assert init_exits.get(timeout=10) == -signal.SIGKILL
    tally = Tally()
    for t in tallies:
        tally.merge(t)
    check_hammer(f"{nthreads} threads", tally, seconds, factory)


def processes_hammer(factory, rootfs, tmp_path, seconds, nprocs=4):
    c = factory.create("hammered", pc.Config(rootfs=rootfs))
    init_pid, init_exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    marker = tmp_path / "destroying"
    procs = [subprocess.Popen([sys.executable, HAMMER, factory.root, "hammered", str(2000 + i),
                               str(seconds + 0.5), str(marker)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=python_env())
             for i in range(nprocs)]
    try:
        for p in procs:
            assert p.stdout.readline() == "ready\n", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        time.sleep(seconds)
        marker.touch()
        c.destroy()
        tally = Tally()
        for p in procs:
            try:
                out, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"deadlock: hammer process {p.pid} still running 60 s after "
                            "its deadline")
            assert p.returncode == 0, err
            tally.merge(Tally.from_json(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert init_exits.get(timeout=10) == -signal.SIGKILL
    check_hammer(f"{nprocs} processes", tally, seconds, factory)


def test_eight_threads_hammer_one_container(factory, busybox_rootfs):
    threads_hammer(factory, busybox_rootfs, seconds=5)


def test_four_processes_hammer_one_container(factory, busybox_rootfs, tmp_path):
    processes_hammer(factory, busybox_rootfs, tmp_path, seconds=5)


@pytest.mark.slow
def test_eight_threads_hammer_one_container_long(factory, busybox_rootfs):
    threads_hammer(factory, busybox_rootfs, seconds=30)


@pytest.mark.slow
def test_four_processes_hammer_one_container_long(factory, busybox_rootfs, tmp_path):
    processes_hammer(factory, busybox_rootfs, tmp_path, seconds=30)


def test_one_containers_lock_never_blocks_another(factory, busybox_rootfs):
    """While a thread holds A's lock, every operation on B completes (and A's own start
    waits for the lock, then completes)."""
    a = factory.create("A", pc.Config(rootfs=busybox_rootfs))
    b = factory.create("B", pc.Config(rootfs=busybox_rootfs))
    a_dir = os.path.join(factory.root, "A")
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock_container(a_dir, "A", "test"):
            held.set()
            release.wait(60)

    def a_is_locked():
        fd = os.open(a_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    a_result = []
    a_starter = threading.Thread(
        target=lambda: a_result.append(a.start(pc.ProcessConfig(args=["/bin/true"]))))
    a_starter.start()
    timings = {}
    b_done = threading.Event()

    def on_b():
        t0 = time.monotonic()
        init, init_exits = b.start(pc.ProcessConfig(args=["sleep", "1000"]))
        timings["start (init)"] = time.monotonic() - t0
        t0 = time.monotonic()
        _, exits = b.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 3"]))
        assert exits.get(timeout=10) == 3
        timings["start (join) and exit"] = time.monotonic() - t0
        t0 = time.monotonic()
        b.pause()
        b.resume()
        b.run_state()
        b.processes()
        b.stats()
        timings["pause, resume, run_state, processes, stats"] = time.monotonic() - t0
        t0 = time.monotonic()
        b.destroy()
        timings["destroy"] = time.monotonic() - t0
        assert init_exits.get(timeout=10) == -signal.SIGKILL
        b_done.set()

    try:
        worker = threading.Thread(target=on_b)
        worker.start()
        worker.join(20)
        assert not worker.is_alive(), "B's operations were blocked while A's lock was held"
        assert b_done.is_set()
        assert a_is_locked(), "the lock of A was released before B's operations finished"
        assert held.is_set() and holder.is_alive()
        assert a_starter.is_alive() and not a_result, "A's start did not wait for A's lock"
        assert sum(timings.values()) < 5, timings
    finally:
        release.set()
        holder.join(10)
    a_starter.join(20)
    assert not a_starter.is_alive()
    (pid, exits), = a_result
    assert exits.get(timeout=10) == 0
    a.destroy()
    print("\nB while A was locked: " + ", ".join(f"{k} {v * 1000:.1f} ms"
                                                 for k, v in timings.items()))


@pytest.mark.parametrize("operation", ["stats", "processes"])
def test_read_racing_destroy_says_not_exist(factory, busybox_rootfs, operation):
    """The window the hammer found by chance, made certain: another handle destroys the
    container after this read looked up its state and before it read the cgroup files,
    which are then gone (ENOENT) or belong to a removed cgroup (ENODEV)."""
    c = factory.create("raced", pc.Config(rootfs=busybox_rootfs))
    _, exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    manager = c.internal.cgroups
    real = getattr(manager, operation if operation == "stats" else "pids")

    def destroy_then_read(*args):          # pids(init) takes the init's finder
        factory.load("raced").destroy()
        return real(*args)

    setattr(manager, operation if operation == "stats" else "pids", destroy_then_read)
    with pytest.raises(pc.ContainerNotExistError) as info:
        getattr(c, operation)()
    assert "'raced'" in str(info.value) and operation in str(info.value)
    assert exits.get(timeout=10) == -signal.SIGKILL
    check_nothing_left(factory)

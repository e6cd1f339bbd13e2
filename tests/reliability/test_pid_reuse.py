"""Pid reuse (issue 6.7): a container whose init died and whose pid now belongs to an
unrelated process is STOPPED, and destroy never signals that process.

Reuse is forced deterministically: after the init is killed (and reaped), the test writes
the init's pid minus one to /proc/sys/kernel/ns_last_pid and starts a `sleep`, which gets
that pid (retried when another task on the machine takes it first). state.json is not
touched: it still records the old init's pid, with the old start time."""
import os
import signal
import subprocess
import time

import pytest

import pycontainer as pc
from pycontainer.state import STATE_FILE, read_state
from reliability_helpers import alive, stat_fields


def take_pid(pid, tries=200):
    """A `sleep 1000` process with exactly this pid (which must be free)."""
    for _ in range(tries):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = subprocess.Popen(["sleep", "1000"])
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    pytest.fail(f"could not get pid {pid} in {tries} tries (a busy machine?)")


def test_reused_init_pid_is_stopped_and_never_signalled(factory, busybox_rootfs):
    c = factory.create("reuse", pc.Config(rootfs=busybox_rootfs))
    pid, exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    assert c.run_state() == pc.RunState.RUNNING        # this object now holds a pidfd of it
    state_path = os.path.join(factory.root, "reuse", STATE_FILE)
    with open(state_path, "rb") as f:
        recorded = f.read()
    os.kill(pid, signal.SIGKILL)
    assert exits.get(timeout=10) == -signal.SIGKILL     # reaped: the pid is free
    time.sleep(0.03)               # a later tick: see test_reused_pid_started_in_the_same_clock_tick
    impostor = take_pid(pid)
    try:
        assert alive(pid) and stat_fields(pid)[1] == os.getpid()
        started = stat_fields(pid)[2]
        with open(state_path, "rb") as f:
            assert f.read() == recorded                 # not edited: the old start time
        fresh = pc.Factory(factory.root).load("reuse")
        assert fresh.run_state() == pc.RunState.STOPPED
        assert c.run_state() == pc.RunState.STOPPED
        assert pid not in fresh.processes() and fresh.processes() == []
        with pytest.raises(pc.ContainerNotRunningError):
            fresh.pause()
        # A start makes a new init; it does not join the impostor.
        new_pid, new_exits = fresh.start(pc.ProcessConfig(args=["sleep", "1000"]))
        assert new_pid != pid
        assert os.readlink(f"/proc/{new_pid}/ns/pid") != os.readlink(f"/proc/{pid}/ns/pid")
        assert fresh.processes() == [new_pid]
        fresh.destroy()
        assert new_exits.get(timeout=10) == -signal.SIGKILL
        c.destroy()                                     # idempotent, via the old object
        assert impostor.poll() is None, impostor.returncode
        assert alive(pid) and stat_fields(pid)[2] == started
    finally:
        impostor.kill()
        impostor.wait()
    assert impostor.returncode == -signal.SIGKILL       # our kill, nobody else's


def test_reused_pid_started_in_the_same_clock_tick(factory, busybox_rootfs):
    """The start time guarding pid reuse (field 22 of /proc/<pid>/stat) counts clock
    ticks (10 ms). An init that exits at once and whose pid is taken again within the same
    tick has an impostor with the very start time recorded. It must still be told apart:
    STOPPED, a start makes a new init (never joins the impostor's namespaces), destroy
    leaves it alone. The test repeats until the two start times are equal."""
    for attempt in range(40):
        cid = f"tick{attempt}"
        c = factory.create(cid, pc.Config(rootfs=busybox_rootfs))
        pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 4"]))
        assert exits.get(timeout=10) == 4
        impostor = take_pid(pid)
        recorded = read_state(os.path.join(factory.root, cid), cid).init_start_time
        if stat_fields(pid)[2] == recorded:
            break
        impostor.kill()
        impostor.wait()
        c.destroy()
    else:
        pytest.fail("no pid was reused within the clock tick of its first process")
    same = None
    try:
        f = pc.Factory(factory.root)
        same = f.load(cid)
        assert same.run_state() == pc.RunState.STOPPED, "the impostor is taken for the init"
        assert same.processes() == []
        new_pid, new_exits = same.start(pc.ProcessConfig(args=["sleep", "1000"]))
        assert os.readlink(f"/proc/{new_pid}/ns/pid") != os.readlink(f"/proc/{pid}/ns/pid"), \
            "start joined the impostor's (the host's) namespaces"
        f.destroy(cid)
        assert new_exits.get(timeout=10) == -signal.SIGKILL
        assert impostor.poll() is None and alive(pid)
    finally:
        impostor.kill()
        impostor.wait()
        if same is not None:
            same.destroy()         # idempotent; closes the pidfd it may hold (of the impostor)
    assert impostor.returncode == -signal.SIGKILL


def test_reused_pid_of_a_stopped_container_destroyed_from_another_factory(factory,
                                                                         busybox_rootfs):
    """An init that exited by itself, its pid reused (in a later clock tick), and only a
    fresh Factory looking."""
    c = factory.create("reuse2", pc.Config(rootfs=busybox_rootfs))
    pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 4"]))
    assert exits.get(timeout=10) == 4
    time.sleep(0.03)               # a later tick: see test_reused_pid_started_in_the_same_clock_tick
    impostor = take_pid(pid)
    try:
        f = pc.Factory(factory.root)
        assert f.load("reuse2").run_state() == pc.RunState.STOPPED
        f.destroy("reuse2")
        assert f.list() == []
        assert impostor.poll() is None and alive(pid)
    finally:
        impostor.kill()
        impostor.wait()
    assert impostor.returncode == -signal.SIGKILL

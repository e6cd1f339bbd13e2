"""Container.signal and Container.set_resources on real containers."""
import os
import signal

import pytest

import pycontainer as pc


def _start(c, args):
    return c.start(pc.ProcessConfig(args=args))


def test_signal_init_member_and_all(factory, busybox_rootfs):
    c = factory.create("sig", pc.Config(rootfs=busybox_rootfs))
    try:
        init_pid, init_exits = _start(c, ["sleep", "100"])
        a_pid, a_exits = _start(c, ["sleep", "100"])
        b_pid, b_exits = _start(c, ["sleep", "100"])
        c.signal(signal.SIGTERM, pid=a_pid)
        assert a_exits.get(timeout=10) == -signal.SIGTERM
        assert b_exits.empty() and init_exits.empty()
        c.signal(signal.SIGUSR1, all=True)        # sleep dies of SIGUSR1 ...
        assert b_exits.get(timeout=10) == -signal.SIGUSR1
        # ... but a pid namespace's init only gets signals it handles (the kernel's rule)
        assert init_exits.empty() and c.run_state() == pc.RunState.RUNNING
        c.signal(signal.SIGKILL)                  # the init by default
        assert init_exits.get(timeout=10) == -signal.SIGKILL
    finally:
        c.destroy()


def test_signal_refuses_a_pid_outside_the_container(factory, busybox_rootfs):
    c = factory.create("sig2", pc.Config(rootfs=busybox_rootfs))
    outsider = os.fork()
    if outsider == 0:
        signal.pause()
        os._exit(0)
    try:
        _start(c, ["sleep", "100"])
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.signal(signal.SIGKILL, pid=outsider)
        assert ei.value.errno == 3 and "sig2" in str(ei.value) and str(outsider) in str(ei.value)
        assert os.waitpid(outsider, os.WNOHANG) == (0, 0)        # still alive
    finally:
        os.kill(outsider, signal.SIGKILL)
        os.waitpid(outsider, 0)
        c.destroy()


def test_signal_without_init(factory, busybox_rootfs):
    c = factory.create("sig3", pc.Config(rootfs=busybox_rootfs))
    try:
        with pytest.raises(pc.ContainerNotRunningError):
            c.signal(signal.SIGTERM)
    finally:
        c.destroy()


def _limit(c):
    return c.stats().cgroup_stats.memory_stats.usage.limit


def test_set_resources_changes_a_running_container(factory, busybox_rootfs):
    c = factory.create("res", pc.Config(rootfs=busybox_rootfs,
                                        resources=pc.Resources(memory_limit=64 << 20,
                                                               pids_limit=10)))
    try:
        _start(c, ["sleep", "100"])
        assert _limit(c) == 64 << 20
        c.set_resources(pc.Resources(memory_limit=128 << 20, pids_limit=20))
        assert _limit(c) == 128 << 20
        assert c.stats().cgroup_stats.pids_stats.limit == 20
        assert c.config.resources.memory_limit == 128 << 20
        # the stored config follows, for every process
        again = factory.load("res")
        assert again.config.resources == pc.Resources(memory_limit=128 << 20, pids_limit=20)
    finally:
        c.destroy()


def test_set_resources_refuses_bad_values_before_writing(factory, busybox_rootfs):
    c = factory.create("res2", pc.Config(rootfs=busybox_rootfs,
                                         resources=pc.Resources(memory_limit=64 << 20)))
    try:
        with pytest.raises(pc.ConfigInvalidError) as ei:
            c.set_resources(pc.Resources(memory_limit=-5))
        assert "memory_limit" in str(ei.value)
        with pytest.raises(pc.ConfigInvalidError):
            c.set_resources({"memory_limit": 1})
        # a value the kernel refuses: named, and nothing changed
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.set_resources(pc.Resources(cpuset_cpus="999"))
        assert "cpuset" in str(ei.value) and "res2" in str(ei.value)
        assert _limit(c) == 64 << 20
        assert factory.load("res2").config.resources == pc.Resources(memory_limit=64 << 20)
    finally:
        c.destroy()

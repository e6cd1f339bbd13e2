"""Pools of prepared sandboxes (pycontainer.pool): a pooled container is a container like
any other, and a pool leaves nothing behind. Real containers on the busybox rootfs."""
import asyncio
import os
import signal
import subprocess
import sys

import pytest

import pycontainer as pc
from pycontainer.pool import POOL_ROOT, remove_leftovers
from helpers import run, sh_ok, start_bg, wait_for


@pytest.fixture
def pool(factory, busybox_rootfs):
    with factory.pool(pc.Config(rootfs=busybox_rootfs), size=2) as p:
        p.wait_ready()
        yield p


def sandboxes(factory):
    try:
        return sorted(os.listdir(os.path.join(factory.root, POOL_ROOT)))
    except FileNotFoundError:
        return []


def test_pooled_lifecycle(factory, pool):
    c = pool.create("job-1")
    try:
        assert pool.stats().hits == 1
        assert factory.list() == ["job-1"]
        # Its init is parked, set up: CREATED with a pid, as a staged container.
        assert c.run_state() == pc.RunState.CREATED
        init = c.init_pid()
        assert c.processes() == [init]
        status, out, err, pid = run(c, ["/bin/sh", "-c", "echo hello $$; id -u"])
        assert (status, out, err) == (0, "hello 1\n0\n", "")
        assert pid == init                  # the parked init became the process
        assert c.run_state() == pc.RunState.STOPPED
    finally:
        c.destroy()
    assert factory.list() == []
    with pytest.raises(pc.ContainerNotExistError):
        factory.load("job-1")


def test_parked_init_holds_nothing_of_ours(factory, pool):
    """Parked, the init is the small helper program (not a copy of this process), in the
    container's namespaces, holding its socket only."""
    c = pool.create("parked")
    try:
        pid = c.init_pid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read() == b"pycontainer-zygote\0"
        assert os.listdir(f"/proc/{pid}/fd") == ["3"]
        for ns in ("mnt", "pid", "net", "uts", "ipc"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}")
        with open(f"/proc/{pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        assert rss < 4096                       # KiB: a few pages, not our heap
    finally:
        c.destroy()


def test_pooled_container_from_another_process(factory, pool):
    c = pool.create("job-2")
    try:
        pid, exits = start_bg(c, ["sleep", "100"])
        code = ("import sys, pycontainer as pc\n"
                "c = pc.Factory(sys.argv[1]).load('job-2')\n"
                "print(c.run_state().value, c.processes())\n"
                "c.pause()\n"
                "while c.run_state() == pc.RunState.PAUSING:\n    pass\n"
                "print(c.run_state().value)\n"
                "c.resume()\n"
                "print(c.run_state().value)\n")
        out = subprocess.run([sys.executable, "-c", code, factory.root], check=True,
                             capture_output=True, text=True).stdout.split("\n")
        assert out[:3] == [f"running [{pid}]", "paused", "running"]
        # A join enters the pooled container's namespaces.
        assert sh_ok(c, "echo $$; hostname").split("\n")[0] != "1"
        c.signal(signal.SIGKILL)
        assert exits.get(timeout=10) == -signal.SIGKILL
    finally:
        c.destroy()


def test_stats_start_fresh(factory, pool, busybox_rootfs):
    """Every sandbox has cgroups of its own: nothing of an earlier container is counted."""
    first = pool.create("first")
    try:
        sh_ok(first, "dd if=/dev/zero of=/dev/null bs=1M count=64 2>/dev/null; sleep 0 & sleep 0 &")
    finally:
        first.destroy()
    second = pool.create("second")
    try:
        unpooled = factory.create("plain", pc.Config(rootfs=busybox_rootfs))
        try:
            assert set(second.internal.cgroups.dirs()).isdisjoint(
                first.internal.cgroups.dirs())
            stats = second.stats().cgroup_stats
            assert stats.pids_stats.current == 1          # its parked init, nothing else
            # What a pooled container counted before its process is its init's setup
            # (an unpooled one counts it after its start): not the first's 64 MiB of dd.
            assert stats.memory_stats.usage.max_usage < 64 << 20
            assert unpooled.stats().cgroup_stats.pids_stats.current == 0
        finally:
            unpooled.destroy()
    finally:
        second.destroy()


def test_empty_pool_falls_back(factory, busybox_rootfs):
    with factory.pool(pc.Config(rootfs=busybox_rootfs), size=1) as p:
        p.wait_ready()
        a, b = p.create("a"), p.create("b")        # the second finds the pool empty
        try:
            assert (p.stats().hits, p.stats().misses) >= (1, 1)
            for c in (a, b):
                assert run(c, ["true"])[0] == 0
        finally:
            a.destroy()
            b.destroy()


def test_id_in_use_keeps_sandbox(factory, pool, busybox_rootfs):
    other = factory.create("taken", pc.Config(rootfs=busybox_rootfs))
    try:
        with pytest.raises(pc.IdInUseError):
            pool.create("taken")
        with pytest.raises(pc.InvalidIdError):
            pool.create("../bad")
        assert pool.stats().ready + pool.stats().refills >= 2
    finally:
        other.destroy()


def test_start_failure_reports_stage(factory, pool):
    c = pool.create("fails")
    try:
        with pytest.raises(pc.ContainerSystemError) as info:
            c.start(pc.ProcessConfig(args=["/no/such/program"]))
        assert info.value.stage == "exec"
        assert info.value.errno == 2
        assert "/no/such/program" in str(info.value) and "'fails'" in str(info.value)
        # As after an unpooled start that failed: nothing runs, and it can start again.
        assert c.run_state() == pc.RunState.CREATED and c.processes() == []
        assert run(c, ["true"])[0] == 0
    finally:
        c.destroy()


def test_killed_parked_init_is_dropped(factory, pool):
    victims = pool.parked_pids()
    assert len(victims) == 2
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: all(open(f"/proc/{pid}/stat").read().split()[2] == "Z" for pid in victims),
             what="the parked inits died")
    c = pool.create("after-kill")
    try:
        stats = pool.stats()
        assert stats.dropped == 2 and stats.misses == 1
        assert run(c, ["true"])[0] == 0
    finally:
        c.destroy()


@pytest.mark.parametrize("field, value", [("cgroup_path", "/pool-exact"), ("pdeathsig", 9)])
def test_unpoolable_config_is_refused(factory, busybox_rootfs, field, value):
    with pytest.raises(pc.ConfigInvalidError, match=field):
        factory.pool(pc.Config(rootfs=busybox_rootfs, **{field: value}))
    with pytest.raises(pc.ConfigInvalidError, match="size"):
        factory.pool(pc.Config(rootfs=busybox_rootfs), size=0)
    assert sandboxes(factory) == []


def test_close_leaves_nothing(factory, busybox_rootfs):
    p = factory.pool(pc.Config(rootfs=busybox_rootfs), size=3)
    p.wait_ready()
    p.close()
    p.close()
    assert sandboxes(factory) == []
    with pytest.raises(pc.ContainerError):
        p.create("x")


def test_creator_killed_leaves_nothing(factory, busybox_rootfs, tmp_path):
    """SIGKILL the process that holds a full pool: its parked inits exit with their
    sockets, and remove_leftovers (which every new Pool runs) removes the rest."""
    code = ("import sys, os, pycontainer as pc; f = pc.Factory(sys.argv[1]);"
            "p = f.pool(pc.Config(rootfs=sys.argv[2]), size=3); p.wait_ready();"
            "print(' '.join(map(str, p.parked_pids())), flush=True);"
            "sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, factory.root, busybox_rootfs],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    inits = [int(p) for p in proc.stdout.readline().split()]
    assert len(inits) == 3
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in inits),
             what="the parked inits exited")
    assert len(sandboxes(factory)) == 3
    assert len(remove_leftovers(factory)) == 3
    assert sandboxes(factory) == []


def test_refill_killed_midway_leaves_nothing(factory, busybox_rootfs):
    """The pool's process dies between making a sandbox's cgroups and state and parking
    its init: remove_leftovers finds it by its dead owner."""
    code = ("import sys, pycontainer as pc\n"
            "f = pc.Factory(sys.argv[1])\n"
            "p = f.pool(pc.Config(rootfs=sys.argv[2]), size=1)\n"
            "p.close()\n"
            "from pycontainer import pool\n"
            "sandboxes = type(f)(f.root + '/' + pool.POOL_ROOT)\n"
            "made = sandboxes.create('pool-0123456789abcdef', p.config,\n"
            "                        extra={'owner': pool.sandbox_owner()})\n"
            "print('made', flush=True)\n"
            "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, factory.root, busybox_rootfs],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "made\n"
    # Someone else's preparation under way is not a leftover.
    assert remove_leftovers(factory) == []
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert remove_leftovers(factory) == ["pool-0123456789abcdef"]
    assert sandboxes(factory) == []


def test_async(factory, pool):
    async def main():
        c = await pool.create_async("aio")
        try:
            pid, exited = await c.start_async(pc.ProcessConfig(args=["true"]))
            assert await asyncio.wait_for(exited, 10) == 0
        finally:
            c.destroy()
    asyncio.run(main())


SECURITY_FIELDS = ("NoNewPrivs", "Seccomp", "Seccomp_filters", "CapInh", "CapPrm", "CapEff",
                   "CapBnd", "CapAmb", "Groups", "Uid", "Gid")


def security_status(c, **kw):
    status, out, err, _ = run(c, ["cat", "/proc/self/status"], **kw)
    assert status == 0, err
    return {line.split(":")[0]: line.split(":", 1)[1].split()
            for line in out.splitlines() if line.split(":")[0] in SECURITY_FIELDS}


@pytest.mark.parametrize("seccomp", ["default", "custom"])
def test_security_of_process_as_unpooled(factory, busybox_rootfs, seccomp):
    """The default profile's filter is loaded by the init before it parks (the custom
    one's at the handover, as unpooled): either way the process ends with what an
    unpooled start gives it, one filter, no_new_privs, the capability sets, no groups."""
    from pycontainer.seccomp import DEFAULT_PROFILE
    profile = "default" if seccomp == "default" else \
        dict(DEFAULT_PROFILE, syscalls=DEFAULT_PROFILE["syscalls"][:1])
    config = pc.Config(rootfs=busybox_rootfs, seccomp=profile)
    with factory.pool(config, size=1) as p:
        p.wait_ready()
        with open(f"/proc/{p.parked_pids()[0]}/status") as f:
            parked = dict(line.split(":", 1) for line in f)
        # Parked, it holds the default filter already, a custom one not yet.
        assert parked["Seccomp"].split() == ["2" if seccomp == "default" else "0"]
        pooled = p.create("pooled")
    unpooled = factory.create("unpooled", config)
    try:
        want = security_status(unpooled)
        assert want["Seccomp"] == ["2"] and want["Seccomp_filters"] == ["1"]
        assert security_status(pooled) == want
        # A process with groups and another user gets them exactly, as unpooled.
        kw = dict(user="65534:65534", additional_gids=[5])
        assert security_status(pooled, **kw) == security_status(unpooled, **kw)
    finally:
        pooled.destroy()
        unpooled.destroy()


def mnt_fds():
    """Targets of this process's descriptors of mount namespaces."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("mnt:"):
            out.append(target)
    return out


def test_mount_namespace_goes_with_the_exit(factory, busybox_rootfs):
    """The pool holds each parked sandbox's mount namespace, and gives it up once the exit
    status of its process is out (or at destroy, or close): no descriptor of one stays."""
    with factory.pool(pc.Config(rootfs=busybox_rootfs), size=2) as p:
        p.wait_ready()
        pid = p.parked_pids()[0]
        ns = os.readlink(f"/proc/{pid}/ns/mnt")
        assert mnt_fds().count(ns) == 1
        c = p.create("exits")
        assert run(c, ["true"])[0] == 0
        wait_for(lambda: ns not in mnt_fds(), what="the exit watcher closed it")
        c.destroy()
        parked = p.create("never-started")
        ns = os.readlink(f"/proc/{parked.init_pid()}/ns/mnt")
        parked.destroy()
        assert ns not in mnt_fds()
    assert mnt_fds() == []


def test_destroy_leaves_rest_to_pool(factory, busybox_rootfs, monkeypatch):
    """destroy() returns once the processes are gone; the pool's thread removes the empty
    cgroups and state, all of it by close(); meanwhile nothing is listed, nothing broken."""
    import pycontainer.pool
    monkeypatch.setattr(pycontainer.pool, "RETIRE_DELAY", 3600)   # not in this test
    with factory.pool(pc.Config(rootfs=busybox_rootfs), size=4, refill_below=1) as p:
        p.wait_ready()
        made = []
        for i in range(3):
            c = p.create(f"job-{i}")
            _, exits = start_bg(c, ["sleep", "1000"])
            made.append((c, exits, c.internal.cgroups.dirs()))
        for c, exits, _ in made:
            c.destroy()
            assert exits.get(timeout=10) == -signal.SIGKILL
        assert factory.list() == [] and factory.list_broken() == {}
        for c, _, _ in made:
            with pytest.raises(pc.ContainerNotExistError):
                factory.load(c.id)
            c.destroy()                              # idempotent
        # One parked sandbox and the three destroyed containers' state, back in the pool
        # root with their empty cgroups until the thread (here: close) removes them.
        assert len(sandboxes(factory)) == 4
        assert all(os.path.isdir(d) for _, _, dirs in made for d in dirs)
    for _, _, dirs in made:
        assert not any(os.path.exists(d) for d in dirs)
    assert sandboxes(factory) == []


def test_destroys_finished_when_the_pool_is_idle(factory, busybox_rootfs):
    """A pool that is not refilling finishes the destroys of its containers after a quiet
    moment (RETIRE_DELAY), not only at close()."""
    with factory.pool(pc.Config(rootfs=busybox_rootfs), size=3, refill_below=1) as p:
        p.wait_ready()
        c = p.create("idle")
        dirs = c.internal.cgroups.dirs()
        c.destroy()
        # Its cgroups, then its state directory: the two parked sandboxes are left.
        wait_for(lambda: not any(os.path.exists(d) for d in dirs) and
                 len(sandboxes(factory)) == 2, what="the pool's thread finished the destroy")
        assert p.stats().ready == 2

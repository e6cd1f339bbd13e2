"""Resource exhaustion (issue 6.5): too few descriptors, the pids limit, the memory limit and
a full filesystem under the state root. Each fails with a clear error (or the limit is
enforced) and leaves nothing half-made."""
import errno
import json
import os
import signal
import subprocess
import sys

import pytest

import pycontainer as pc
from reliability_helpers import cgroup_dirs, python_env, scope_of, settle, wait_for

# --- RLIMIT_NOFILE ------------------------------------------------------------------------

NOFILE_SWEEP = r"""
import errno, json, os, resource, sys, traceback, hashlib, time
import pycontainer as pc
from pycontainer import _core, devices

root, rootfs, lo, hi, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "warm"
f = pc.Factory(root)
config = pc.Config(rootfs=rootfs)
scope = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:8]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

def fds():
    out = {}
    for n in os.listdir("/proc/self/fd"):
        try:
            t = os.readlink(f"/proc/self/fd/{n}")
        except OSError:
            continue
        # The library's own, kept for the life of the process: the exit watcher's epoll,
        # device-policy programs, the join helper's memfd.
        helper = _core._join_helper[0] if _core._join_helper else -1
        if "[eventpoll]" not in t and int(n) not in devices.loaded_program_fds() \
                and int(n) != helper:
            out[int(n)] = t
    return out

def cgroups_of(cid):
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(dirpath) == f"{scope}-{cid}":
            found.append(dirpath)
            dirnames[:] = []
        elif dirpath.count("/") > 12:
            dirnames[:] = []
    return found

def cycle(cid, record):
    # Each step runs under the low limit; the first failure ends the cycle.
    steps = []
    c = [None]
    def step(name, fn):
        steps.append(name)
        record["step"] = name
        return fn()
    step("create", lambda: c.__setitem__(0, f.create(cid, config)))
    step("run_state (created)", lambda: c[0].run_state())
    init = step("start (init)", lambda: c[0].start(pc.ProcessConfig(args=["sleep", "100"])))
    record["init"] = init[0]
    step("run_state (running)", lambda: c[0].run_state())
    _, exits = step("start (join)", lambda: c[0].start(pc.ProcessConfig(args=["/bin/true"])))
    st = exits.get(timeout=10)
    assert st == 0, st
    step("processes", lambda: c[0].processes())
    step("stats", lambda: c[0].stats())
    step("pause", lambda: c[0].pause())
    step("resume", lambda: c[0].resume())
    step("destroy", lambda: c[0].destroy())
    record["step"] = None
    # The exit watcher closes the init's pidfd before it hands out the status: once it
    # is out, the descriptor count is the one the next limit starts from.
    init[1].get(timeout=30)

if warm:
    cycle("warmup", {})
results = []
for limit in range(lo, hi):
    cid = f"nofile-{limit}"
    before = fds()
    record = {"limit": limit, "open_before": len(before), "problems": []}
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        cycle(cid, record)
    except pc.ContainerSystemError as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["errno"] = errno.errorcode.get(exc.errno, exc.errno)
        if exc.errno != errno.EMFILE:
            record["problems"].append(f"errno {record['errno']}, expected EMFILE")
        if cid not in str(exc):
            record["problems"].append("the message does not name the container")
    except Exception as exc:
        record["error"] = traceback.format_exc(limit=8)
        record["problems"].append(f"{type(exc).__name__} is not a ContainerSystemError")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # Nothing half-made: what failed left the container as it was before that step.
    step = record["step"]
    try:
        if step == "create":
            if os.path.exists(os.path.join(root, cid)):
                record["problems"].append(f"state directory left: {os.listdir(os.path.join(root, cid))}")
            if cgroups_of(cid):
                record["problems"].append(f"cgroups left: {cgroups_of(cid)}")
            if cid in f.list() or f.list_broken():
                record["problems"].append(f"listed: {f.list()} {f.list_broken()}")
            if os.path.exists(os.path.join(root, cid)):
                f.destroy(cid)           # (a failure above already) so the sweep goes on
        elif step is not None:
            c = f.load(cid)
            state = c.run_state()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                procs = c.processes()
                if step == "start (init)" and not procs or step != "start (init)" and len(procs) == 1:
                    break
                time.sleep(0.01)
            if step == "start (init)":
                if state != pc.RunState.CREATED or procs:
                    record["problems"].append(f"after a failed init start: {state}, processes {procs}")
            elif step != "destroy" and step != "resume" and step != "pause" and procs != [record["init"]]:
                record["problems"].append(f"after a failed {step}: processes {procs}")
            c.destroy()
    except Exception:
        record["problems"].append("cleanup: " + traceback.format_exc(limit=6))
    if os.path.exists(os.path.join(root, cid)) or cgroups_of(cid):
        record["problems"].append("not removed by destroy")
    time.sleep(0.01)
    after = fds()
    if warm and after != before:
        record["problems"].append(f"descriptors {sorted(set(after.items()) ^ set(before.items()))}")
    if not warm:
        kinds = sorted(t for n, t in after.items() if n > 2)
        if kinds:
            record["problems"].append(f"descriptors left: {kinds}")
    results.append(record)
print(json.dumps(results))
"""


def nofile_sweep(root, rootfs, lo, hi, warm):
    p = subprocess.run([sys.executable, "-c", NOFILE_SWEEP, root, rootfs, str(lo), str(hi),
                        "warm" if warm else "cold"],
                       capture_output=True, text=True, timeout=120, env=python_env())
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def check_sweep(results):
    problems = [(r["limit"], r.get("step"), r.get("error"), r["problems"])
                for r in results if r["problems"]]
    print(f"\nRLIMIT_NOFILE {results[0]['limit']}..{results[-1]['limit']}: failed at "
          + ", ".join(f"{r['limit']}: {r['step']} ({r.get('errno')})" for r in results))
    assert not problems, json.dumps(problems, indent=1)
    failed_at = {r["step"] for r in results}
    assert None in failed_at, "no limit high enough for a whole cycle"
    assert "create" in failed_at, "no limit low enough to fail create"
    return failed_at


def test_too_few_descriptors_warm(factory, busybox_rootfs):
    """One process, caches loaded by a first cycle: every soft limit from 3 to 40."""
    failed_at = check_sweep(nofile_sweep(factory.root, busybox_rootfs, 3, 40, warm=True))
    assert len(failed_at) >= 4, failed_at      # failures really landed in several steps


def test_too_few_descriptors_cold(factory, busybox_rootfs):
    """A fresh process per limit: the first create and start of a process (which load the
    device eBPF program, compile seccomp, make the exit watcher's epoll set) under it."""
    results = []
    for limit in range(4, 40, 3):
        results += nofile_sweep(factory.root, busybox_rootfs, limit, limit + 1, warm=False)
    check_sweep(results)


# --- pids limit -----------------------------------------------------------------------------

def test_pids_limit_stops_joins_and_forks(factory, busybox_rootfs):
    c = factory.create("pids", pc.Config(rootfs=busybox_rootfs,
                                        resources=pc.Resources(pids_limit=3)))
    try:
        # A shell (the init) forks until the limit: the kernel refuses its third child
        # (sh + two sleeps = 3), and the shell says so.
        r, w = os.pipe()
        _, exits = c.start(pc.ProcessConfig(
            args=["/bin/sh", "-c", "sleep 100 & sleep 100 & sleep 100 & echo all-forked"],
            stdout=w, stderr=w))
        os.close(w)
        out = b""
        while chunk := os.read(r, 4096):
            out += chunk
        os.close(r)
        assert exits.get(timeout=10) != 0
        assert b"can't fork" in out and b"all-forked" not in out, out
        assert c.stats().cgroup_stats.pids_stats.limit == 3
        wait_for(lambda: c.run_state() == pc.RunState.STOPPED, what="STOPPED")

        # Joins: an init and two joins fit; the next start fails with a clear error.
        init, init_exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        for _ in range(2):
            c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        assert len(c.processes()) == 3
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        assert ei.value.errno == errno.EAGAIN, str(ei.value)
        assert "pids" in str(ei.value) and "start" in str(ei.value)
        assert len(c.processes()) == 3
        assert c.stats().cgroup_stats.pids_stats.current <= 3
        assert c.run_state() == pc.RunState.RUNNING
    finally:
        c.destroy()
    assert init_exits.get(timeout=10) == -signal.SIGKILL


# --- memory limit ---------------------------------------------------------------------------

def test_memory_limit_oom_kills_the_allocator(factory, busybox_rootfs):
    """busybox dd allocates its block (bs=64M) and fills it from /dev/zero: 64 MiB touched
    in a 32 MiB cgroup (no swap on the limit: memory_swap unset and the host has none)."""
    c = factory.create("mem", pc.Config(rootfs=busybox_rootfs,
                                       resources=pc.Resources(memory_limit=32 << 20)))
    init, init_exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    try:
        assert c.stats().cgroup_stats.memory_stats.oom_kills == 0
        _, exits = c.start(pc.ProcessConfig(
            args=["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]))
        assert exits.get(timeout=30) == -signal.SIGKILL
        mem = c.stats().cgroup_stats.memory_stats
        assert mem.oom_kills >= 1, mem
        assert mem.usage.limit == 32 << 20
        assert mem.usage.max_usage <= 32 << 20
        # The init (small) was not the victim.
        assert c.run_state() == pc.RunState.RUNNING and init in c.processes()
        # And a tail that buffers 100 MB without a newline: the same.
        _, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c",
                                                  "head -c 100000000 /dev/zero | tail"]))
        status = exits.get(timeout=30)
        assert c.stats().cgroup_stats.memory_stats.oom_kills >= 2
        assert status != 0
    finally:
        c.destroy()
    assert init_exits.get(timeout=10) == -signal.SIGKILL


# --- a full filesystem under the state root -------------------------------------------------

@pytest.fixture
def full_tmpfs(tmp_path):
    """A 64 KiB tmpfs, filled up (directories and empty files still fit: they take inodes,
    not blocks). Yields (mountpoint, free) where free() deletes the filler."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mnt)],
                   check=True)
    filler = mnt / "filler"

    def fill():
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def free():
        filler.unlink()

    try:
        yield mnt, fill, free
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_filesystem_create_fails_and_leaves_nothing(full_tmpfs, busybox_rootfs,
                                                         leak_check):
    mnt, fill, free = full_tmpfs
    root = str(mnt / "run")
    f = pc.Factory(root)
    fill()
    with pytest.raises(pc.ContainerSystemError) as ei:
        f.create("full", pc.Config(rootfs=busybox_rootfs))
    assert ei.value.errno == errno.ENOSPC, str(ei.value)
    assert "full" in str(ei.value) and "create" in str(ei.value)
    assert f.list() == [] and f.list_broken() == {}
    assert os.listdir(root) == []
    assert not cgroup_dirs([f"{scope_of(root)}-"])
    free()
    f.create("full", pc.Config(rootfs=busybox_rootfs)).destroy()
    assert os.listdir(root) == []


def test_full_filesystem_start_fails_and_leaves_nothing(full_tmpfs, busybox_rootfs,
                                                        leak_check):
    """The init's pid is recorded in the state: on a full filesystem start fails (ENOSPC),
    and the init it had made is gone again. Joins (which write nothing) and destroy work."""
    mnt, fill, free = full_tmpfs
    root = str(mnt / "run")
    f = pc.Factory(root)
    c = f.create("full", pc.Config(rootfs=busybox_rootfs))
    d = f.create("other", pc.Config(rootfs=busybox_rootfs))
    _, d_exits = d.start(pc.ProcessConfig(args=["sleep", "1000"]))
    fill()
    with pytest.raises(pc.ContainerSystemError) as ei:
        c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    assert ei.value.errno == errno.ENOSPC, str(ei.value)
    assert "full" in str(ei.value) and "start" in str(ei.value)
    assert c.run_state() == pc.RunState.CREATED
    assert not settle(c.processes), c.processes()
    assert os.listdir(os.path.join(root, "full")) == ["state.json"]
    # A join writes no state: it works on the full filesystem.
    _, exits = d.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 4"]))
    assert exits.get(timeout=10) == 4
    d.destroy()
    assert d_exits.get(timeout=10) == -signal.SIGKILL
    free()
    _, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 2"]))
    assert exits.get(timeout=10) == 2
    c.destroy()
    assert f.list() == [] and os.listdir(root) == []

"""Crash at any point (issue 6.1): a process that creates, starts, joins, pauses, resumes
and destroys containers is SIGKILLed at random moments; afterwards a fresh Factory can
destroy everything it left, nothing remains (process, cgroup, state directory, descriptor),
and a container the test runs throughout is unaffected.

Most kills hit workers forked from a pre-imported Python process (crash_child.py zygote),
so hundreds fit in CI time; a few per batch hit fresh interpreters (crash_child.py single).
Delays are seeded (SEED below): a failure names its batch, and re-running replays it.

The deterministic tests at the end rebuild, one by one, the on-disk states a killed
process can leave (an empty state directory, a lock without state, a state without
cgroups, a temp file of an interrupted state write ...) and check the same recovery."""
import collections
import os
import random
import re
import select
import signal
import subprocess
import sys
import time

import pytest

import pycontainer as pc
from pycontainer.state import STATE_FILE, write_state, read_state
from reliability_helpers import (HERE, Subreaper, cgroup_dirs, children_of, force_remove,
                                 processes_in_cgroups, python_env, scope_of, settle,
                                 stable_fds, wait_for)

CHILD = os.path.join(HERE, "crash_child.py")
SEED = 20261129
OPS = ["forked", "create", "start-init", "join", "join-wait", "pause", "resume", "destroy",
       "load", "run_state", "processes", "stats"]


class Zygote:
    def __init__(self, root, rootfs, opsfile, errfile):
        self.err = open(errfile, "wb")
        self.p = subprocess.Popen([sys.executable, CHILD, "zygote", root, rootfs, opsfile],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.err, env=python_env())

    def ask(self, line):
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        answer = self.p.stdout.readline()
        assert answer, f"the zygote died (see its stderr): {self.p.poll()}"
        return int(answer)

    def close(self):
        try:
            self.p.stdin.write(b"quit\n")
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        rc = self.p.wait(30)
        self.p.stdout.close()
        self.err.close()
        return rc


def kill_after(pid, delay):
    """SIGKILL pid after `delay` seconds (through a pidfd) and wait until it has exited."""
    fd = os.pidfd_open(pid)
    try:
        time.sleep(delay)
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        assert select.select([fd], [], [], 10)[0], f"worker {pid} did not die"
    finally:
        os.close(fd)


def clean_up(root):
    """What any later user would do: a fresh Factory destroys every id it lists, by load()
    then destroy(), or Factory.destroy(id) when load raises; and every broken one by
    Factory.destroy(id). Returns (counts, failures)."""
    f = pc.Factory(root)
    counts = collections.Counter()
    failures = []
    broken = f.list_broken()
    counts["broken"] += len(broken)
    for cid in f.list():
        if cid == "survivor":
            continue
        try:
            c = f.load(cid)
        except pc.ContainerError:
            counts["load raised"] += 1
            try:
                f.destroy(cid)
            except Exception as exc:
                failures.append(f"Factory.destroy({cid!r}) after load raised: {exc!r}")
                force_remove(root, cid)
            continue
        try:
            c.destroy()
            counts["loaded and destroyed"] += 1
        except Exception as exc:
            failures.append(f"load({cid!r}).destroy(): {exc!r}")
            try:
                f.destroy(cid)            # so that the leftovers do not spoil later checks
            except Exception as exc2:
                failures.append(f"Factory.destroy({cid!r}) after that: {exc2!r}")
                force_remove(root, cid)
    for name in broken:
        try:
            f.destroy(name)
        except Exception as exc:
            failures.append(f"Factory.destroy({name!r}) of a broken one: {exc!r}")
            force_remove(root, name)
    return counts, failures


def check_survivor(root, survivor, init_pid, reaper):
    same = pc.Factory(root).load("survivor")
    assert same.run_state() == pc.RunState.RUNNING
    assert survivor.run_state() == pc.RunState.RUNNING
    assert init_pid in same.processes()
    pid, exits = same.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 7"]))
    reaper.exclude.add(pid)
    assert exits.get(timeout=10) == 7


def run_crashes(factory, busybox_rootfs, tmp_path, batches, kills_per_batch, fresh_per_batch):
    root = factory.root
    scope = scope_of(root)
    rng = random.Random(SEED)
    opsfile = tmp_path / "ops"
    opsfile.write_bytes(bytes(4096))
    errfile = tmp_path / "zygote.err"
    where = collections.Counter()
    totals = collections.Counter()
    kills = 0
    all_failures = []
    with Subreaper() as reaper:
        survivor = factory.create("survivor", pc.Config(rootfs=busybox_rootfs))
        init_pid, init_exits = survivor.start(pc.ProcessConfig(args=["sleep", "1000"]))
        reaper.exclude.add(init_pid)
        survivor_cgroups = cgroup_dirs([f"{scope}-survivor"])
        assert survivor_cgroups
        zygote = Zygote(root, busybox_rootfs, str(opsfile), str(errfile))
        reaper.exclude.add(zygote.p.pid)
        try:
            assert survivor.run_state() == pc.RunState.RUNNING     # caches its init pidfd
            with reaper.paused():
                fds_before = stable_fds()
            for batch in range(batches):
                for n in range(kills_per_batch):
                    pid = zygote.ask(f"go {rng.randrange(1 << 30)} b{batch}w{n}")
                    kill_after(pid, rng.uniform(0, 0.030))
                    where[OPS[opsfile.read_bytes()[0]]] += 1
                    status = zygote.ask(f"done {pid}")
                    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
                        (f"worker {pid} (batch {batch}) died by itself, status {status:#x}:\n"
                         + errfile.read_text()[-3000:])
                    kills += 1
                for n in range(fresh_per_batch):
                    p = subprocess.Popen([sys.executable, CHILD, "single", root, busybox_rootfs,
                                          str(opsfile), str(rng.randrange(1 << 30)),
                                          f"b{batch}f{n}"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=python_env())
                    reaper.exclude.add(p.pid)
                    assert p.stdout.readline() == b"ready\n", p.stderr.read()
                    time.sleep(rng.uniform(0, 0.030))
                    p.kill()
                    rc = p.wait(30)
                    err = p.stderr.read().decode()
                    p.stdout.close()
                    p.stderr.close()
                    assert rc == -signal.SIGKILL, (rc, err)
                    where[OPS[opsfile.read_bytes()[0]]] += 1
                    kills += 1

                counts, failures = clean_up(root)
                totals.update(counts)
                # Reported at the end (the fallback has removed what they concern), so that
                # one run shows every kind of failure.
                all_failures.extend(f"batch {batch}: {x}" for x in failures)
                f = pc.Factory(root)
                assert settle(lambda: f.list() != ["survivor"]) is False, f.list()
                assert f.list_broken() == {}
                assert sorted(os.listdir(root)) == ["survivor"]
                assert os.listdir(os.path.join(root, "survivor")) == [STATE_FILE]
                left = settle(lambda: sorted(set(cgroup_dirs([f"{scope}-"]))
                                             - set(survivor_cgroups)))
                assert not left, f"batch {batch}: cgroups left: {left}"
                procs = settle(lambda: sorted(set(processes_in_cgroups([f"{scope}-"]))
                                              - {init_pid}))
                assert not procs, f"batch {batch}: processes left: {procs}"
                kids = settle(lambda: children_of(zygote.p.pid))
                assert not kids, f"batch {batch}: orphans left with the zygote: {kids}"
                assert not settle(reaper.inherited_alive), reaper.inherited_alive()
                assert not settle(reaper.orphans), reaper.orphans()
                with reaper.paused():       # its own /proc/<pid>/stat reads are not ours
                    assert settle(lambda: stable_fds() != fds_before, 2) is False, \
                        sorted(stable_fds() ^ fds_before)
                check_survivor(root, survivor, init_pid, reaper)
        finally:
            rc = zygote.close()
            clean_up(root)
        assert rc == 0, errfile.read_text()[-3000:]
        survivor.destroy()
        assert init_exits.get(timeout=10) == -signal.SIGKILL
    print(f"\ncrash: {kills} kills survived; kill points {dict(where)}; recovery {dict(totals)}")
    kinds = collections.Counter(
        (m.group(1) if (m := re.search(r"\((E[A-Z]+)\)", x)) else x.split(":")[1].strip()[:40])
        for x in all_failures)
    assert not all_failures, (f"{len(all_failures)} recovery failures, by kind {dict(kinds)}: "
                              f"{all_failures[:5]}")
    return kills, where


def test_crash_at_any_point(factory, busybox_rootfs, tmp_path):
    """8 batches of 30 forked workers and 2 fresh interpreters, each SIGKILLed 0-30 ms in:
    256 kills, spread over create, start, join, pause, resume and destroy."""
    kills, where = run_crashes(factory, busybox_rootfs, tmp_path, batches=8,
                               kills_per_batch=30, fresh_per_batch=2)
    assert kills >= 200
    assert len(where) >= 5, where          # the kills really are spread over the operations


@pytest.mark.slow
def test_crash_at_any_point_long(factory, busybox_rootfs, tmp_path):
    kills, where = run_crashes(factory, busybox_rootfs, tmp_path, batches=25,
                               kills_per_batch=60, fresh_per_batch=4)
    assert kills >= 1500
    assert len(where) >= 8, where


# --- deterministic crash points -----------------------------------------------------------

def _leftover_empty_dir(factory, cid, rootfs):
    os.makedirs(factory.root, exist_ok=True)
    os.mkdir(os.path.join(factory.root, cid), 0o700)


def _leftover_old_lock_file(factory, cid, rootfs):
    """What an interrupted create of an earlier version left: its lock file (this version
    locks the directory itself) and no state."""
    _leftover_empty_dir(factory, cid, rootfs)
    open(os.path.join(factory.root, cid, "lock"), "w").close()


def _leftover_state_without_cgroups(factory, cid, rootfs):
    """Killed after the record was written, before any cgroup was made."""
    c = factory.create(cid, pc.Config(rootfs=rootfs))
    for d in c.internal.cgroups.dirs():
        os.rmdir(d)


def _leftover_some_cgroups(factory, cid, rootfs):
    """Killed half-way through making the cgroups."""
    c = factory.create(cid, pc.Config(rootfs=rootfs))
    for d in c.internal.cgroups.dirs()[::2]:
        os.rmdir(d)


def _leftover_state_write_tmp(factory, cid, rootfs):
    """Killed between writing the temp file of a state update and renaming it."""
    c = factory.create(cid, pc.Config(rootfs=rootfs))
    c.start(pc.ProcessConfig(args=["sleep", "100"]))
    with open(os.path.join(factory.root, cid, f".{STATE_FILE}.999999.tmp"), "w") as f:
        f.write('{"half": ')


def _leftover_tmp_in_a_dir_without_state(factory, cid, rootfs):
    """Killed during create's first state write."""
    _leftover_empty_dir(factory, cid, rootfs)
    with open(os.path.join(factory.root, cid, f".{STATE_FILE}.999999.tmp"), "w") as f:
        f.write('{"id": ')


def _leftover_unrecorded_init(factory, cid, rootfs):
    """Killed after the init was cloned, before its pid was recorded: a running process
    in the cgroups, no init_pid in the state."""
    c = factory.create(cid, pc.Config(rootfs=rootfs))
    record = read_state(os.path.join(factory.root, cid), cid)
    c.start(pc.ProcessConfig(args=["sleep", "100"]))
    write_state(os.path.join(factory.root, cid), record)       # the record before start


def _leftover_frozen(factory, cid, rootfs):
    """Killed while paused, with processes."""
    c = factory.create(cid, pc.Config(rootfs=rootfs))
    c.start(pc.ProcessConfig(args=["sleep", "100"]))
    c.start(pc.ProcessConfig(args=["sleep", "100"]))
    c.pause()
    wait_for(lambda: c.run_state() == pc.RunState.PAUSED)


def _leftover_destroy_after_state_unlink(factory, cid, rootfs):
    """Killed inside destroy, after state.json was removed, before the lock and the dir."""
    c = factory.create(cid, pc.Config(rootfs=rootfs))
    c.start(pc.ProcessConfig(args=["sleep", "100"]))
    c.internal.cgroups.destroy()
    os.unlink(os.path.join(factory.root, cid, STATE_FILE))


LEFTOVERS = [_leftover_empty_dir, _leftover_old_lock_file, _leftover_state_without_cgroups,
             _leftover_some_cgroups, _leftover_state_write_tmp,
             _leftover_tmp_in_a_dir_without_state, _leftover_unrecorded_init, _leftover_frozen,
             _leftover_destroy_after_state_unlink]


@pytest.mark.parametrize("make", LEFTOVERS, ids=[m.__name__[10:] for m in LEFTOVERS])
def test_recovery_from_each_crash_point(factory, busybox_rootfs, make):
    """The recovery protocol of test_crash_at_any_point, on each state a killed process can
    leave, made deterministically: the id is listed (or listed as broken), the protocol
    removes it without an error, and nothing is left."""
    scope = scope_of(factory.root)
    with Subreaper():
        make(factory, "cp", busybox_rootfs)
        f = pc.Factory(factory.root)
        assert "cp" in f.list() or "cp" in f.list_broken()
        counts, failures = clean_up(factory.root)
        assert not failures
        assert f.list() == [] and f.list_broken() == {}
        assert os.listdir(factory.root) == []
        assert not settle(lambda: cgroup_dirs([f"{scope}-cp"]))
        assert not settle(lambda: processes_in_cgroups([f"{scope}-cp"]))

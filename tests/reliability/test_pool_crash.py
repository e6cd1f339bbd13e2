"""A pool's process SIGKILLed (issue 13): with a full pool, and with a pooled container
destroyed whose empty cgroups and state the pool's thread had not yet removed. Its parked
inits exit with their sockets; Factory.list_broken() in another process (the test) lists
what is left as ".pool/<sandbox id>" (and nothing while the pool's process lives);
Factory.destroy() of each leaves nothing: no process, cgroup, state directory or mount.

The parked inits are the pool process's children; when it dies they are re-parented to
the test (a child subreaper for the duration), which reaps them by pid."""
import json
import os
import subprocess
import sys

import pycontainer as pc
from pycontainer.pool import POOL_ROOT
from reliability_helpers import (Subreaper, alive, cgroup_dirs, processes_in_cgroups,
                                 python_env, scope_of, settle, wait_for)

# size 3, refill_below 1: one create does not wake the refill thread, so the destroy of
# "job" stays queued for it (it finishes destroys with the refill, once `size` wait, or
# after RETIRE_DELAY of quiet, here made longer than the test).
CREATOR = r"""
import json, sys
import pycontainer as pc
from pycontainer import pool as pool_module
from pycontainer.pool import POOL_ROOT
pool_module.RETIRE_DELAY = 3600
root, rootfs, mode = sys.argv[1:4]
f = pc.Factory(root)
pool = f.pool(pc.Config(rootfs=rootfs), size=3, refill_below=1)
pool.wait_ready()
out = {"parked": pool.parked_pids()}
if mode == "destroyed":
    c = pool.create("job")
    _, exits = c.start(pc.ProcessConfig(args=["true"]))
    assert exits.get(timeout=30) == 0
    c.destroy()
    out["parked"] = pool.parked_pids()
out["entries"] = sorted(__import__("os").listdir(root + "/" + POOL_ROOT))
print(json.dumps(out), flush=True)
sys.stdin.read()
"""


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def run_and_kill(factory, rootfs, mode):
    """The creator's report, taken while it lives (list_broken() is {} then), after it
    was SIGKILLed and its parked inits have exited."""
    proc = subprocess.Popen([sys.executable, "-c", CREATOR, factory.root, rootfs, mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=python_env())
    try:
        line = proc.stdout.readline()
        assert line, f"the pool's process died: {proc.poll()}"
        report = json.loads(line)
        # A live pool's sandboxes, and a destroy its thread will finish, are not broken.
        assert factory.list_broken() == {}
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    wait_for(lambda: not any(alive(pid) for pid in report["parked"]),
             what="the parked inits exited with their sockets")
    return report


def assert_nothing_left(factory):
    scope = scope_of(os.path.join(factory.root, POOL_ROOT))
    assert factory.list() == [] and factory.list_broken() == {}
    assert os.listdir(os.path.join(factory.root, POOL_ROOT)) == []
    assert settle(lambda: cgroup_dirs([scope])) == []
    assert processes_in_cgroups([scope]) == []
    assert mounts_under(factory.root) == []


def test_full_pool_creator_killed(factory, busybox_rootfs):
    with Subreaper():
        report = run_and_kill(factory, busybox_rootfs, "full")
        assert len(report["entries"]) == 3
        broken = factory.list_broken()
        assert sorted(broken) == [f"{POOL_ROOT}/{e}" for e in report["entries"]]
        for why in broken.values():
            assert why.startswith("pool sandbox: its parked init has exited"), why
        assert factory.list() == []
        for name in broken:
            factory.destroy(name)
        factory.destroy(next(iter(broken)))          # idempotent
    assert_nothing_left(factory)


def test_destroyed_pooled_container_creator_killed(factory, busybox_rootfs):
    with Subreaper():
        report = run_and_kill(factory, busybox_rootfs, "destroyed")
        # Two parked sandboxes and the destroyed container's state, back in the pool root.
        assert len(report["entries"]) == 3 and len(report["parked"]) == 2
        try:
            factory.load("job")
            raise AssertionError("a destroyed container loads")
        except pc.ContainerNotExistError:
            pass
        broken = factory.list_broken()
        assert sorted(broken) == [f"{POOL_ROOT}/{e}" for e in report["entries"]]
        retired = [n for n, why in broken.items() if "destroyed pooled container" in why]
        assert len(retired) == 1, broken
        # Its cgroups are still there (empty), found by its record.
        scope = scope_of(os.path.join(factory.root, POOL_ROOT))
        sandbox_id = retired[0].split("/", 1)[1]
        assert cgroup_dirs([f"{scope}-{sandbox_id}"])
        assert processes_in_cgroups([f"{scope}-{sandbox_id}"]) == []
        for name in broken:
            factory.destroy(name)
    assert_nothing_left(factory)


def test_unknown_pool_entry_name_is_refused(factory):
    """Only the names list_broken gives reach into the pool root."""
    for name in (f"{POOL_ROOT}/../x", f"{POOL_ROOT}/pool-xyz", f"{POOL_ROOT}/"):
        try:
            factory.destroy(name)
            raise AssertionError(f"destroy({name!r}) was accepted")
        except pc.InvalidIdError:
            pass

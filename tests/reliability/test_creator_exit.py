"""The creating process exits normally while its containers run (issue 6.2): they keep
running and another process (the test) can load, join, pause, resume and destroy them;
with Config(pdeathsig=9) they die with their creator.

The container processes are the creator's children; when it exits they are re-parented to
the test (a child subreaper for the duration), which reaps the orphans by pid: an init
waits in the kernel for every zombie of its pid namespace, re-parented ones included."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import pycontainer as pc
from reliability_helpers import (Subreaper, alive, cgroup_dirs, python_env, scope_of, settle,
                                 wait_for)

CREATOR = r"""
import json, sys
import pycontainer as pc
root, rootfs = sys.argv[1:3]
f = pc.Factory(root)
out = {}
for cid, pdeathsig in (("keep", None), ("die", 9)):
    c = f.create(cid, pc.Config(rootfs=rootfs, pdeathsig=pdeathsig))
    init, _ = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    joined, _ = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    out[cid] = [init, joined]
print(json.dumps(out), flush=True)
if sys.argv[3:] == ["linger"]:
    import time
    time.sleep(1000)
"""


def test_containers_outlive_their_creator_unless_pdeathsig(factory, busybox_rootfs):
    scope = scope_of(factory.root)
    with Subreaper() as reaper:
        p = subprocess.Popen([sys.executable, "-c", CREATOR, factory.root, busybox_rootfs],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=python_env())
        reaper.exclude.add(p.pid)         # its status is Popen's
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        pids = json.loads(out)
        other = pc.Factory(factory.root)

        # Without pdeathsig: still running, and everything works from here.
        time.sleep(0.2)
        keep = other.load("keep")
        assert all(alive(pid) for pid in pids["keep"]), pids
        assert keep.run_state() == pc.RunState.RUNNING
        assert set(pids["keep"]) <= set(keep.processes())
        pid, exits = keep.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 5"]))
        reaper.exclude.add(pid)
        assert exits.get(timeout=10) == 5
        keep.pause()
        wait_for(lambda: keep.run_state() == pc.RunState.PAUSED, what="PAUSED")
        with pytest.raises(pc.ContainerPausedError):
            keep.start(pc.ProcessConfig(args=["/bin/true"]))
        keep.resume()
        assert keep.run_state() == pc.RunState.RUNNING
        pid, exits = keep.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 6"]))
        reaper.exclude.add(pid)
        assert exits.get(timeout=10) == 6
        keep.destroy()
        assert "keep" not in other.list()
        assert not settle(lambda: [pid for pid in pids["keep"] if alive(pid)])

        # With pdeathsig=9: killed when the creator exited.
        die = other.load("die")
        assert not settle(lambda: [pid for pid in pids["die"] if alive(pid)]), \
            "pdeathsig=9 did not kill the container's processes"
        wait_for(lambda: die.run_state() == pc.RunState.STOPPED, what="STOPPED")
        wait_for(lambda: die.processes() == [], what="no processes")
        die.destroy()
        assert other.list() == []
        assert not settle(lambda: cgroup_dirs([f"{scope}-"]))
        assert not settle(lambda: set(pids["keep"] + pids["die"]) - set(reaper.reaped))
    # Every orphan the creator left was reaped here (by pid).
    assert set(pids["keep"]) | set(pids["die"]) <= set(reaper.reaped), reaper.reaped
    assert all(os.WIFSIGNALED(reaper.reaped[p]) and os.WTERMSIG(reaper.reaped[p]) == 9
               for p in pids["keep"] + pids["die"])


def test_pdeathsig_container_of_a_killed_creator(factory, busybox_rootfs):
    """The same when the creator is SIGKILLed rather than exiting."""
    with Subreaper() as reaper:
        p = subprocess.Popen([sys.executable, "-c", CREATOR, factory.root, busybox_rootfs,
                              "linger"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=python_env())
        reaper.exclude.add(p.pid)
        pids = json.loads(p.stdout.readline())
        p.kill()
        assert p.wait(30) == -signal.SIGKILL
        p.stdout.close()
        p.stderr.close()
        other = pc.Factory(factory.root)
        assert not settle(lambda: [pid for pid in pids["die"] if alive(pid)])
        assert other.load("die").run_state() == pc.RunState.STOPPED
        assert all(alive(pid) for pid in pids["keep"])
        assert other.load("keep").run_state() == pc.RunState.RUNNING
        for cid in ("keep", "die"):
            other.load(cid).destroy()
        assert other.list() == []
        # Killed inits are zombies re-parented to us until the reaper thread's next round.
        assert not settle(lambda: set(pids["keep"] + pids["die"]) - set(reaper.reaped))

"""Issue 18, item 2: a process joining a running container is open to the container's root
before it execs. Root in the container (/attacker, attacker.c, polling /proc) must get
nothing of ours: not /proc/<pid>/mem (once the caller's memory), not /proc/<pid>/fd/*
(host descriptors), not /proc/<pid>/exe (the host interpreter) to write later."""
import os
import shutil
import subprocess
import signal
import sys

import pytest

import pycontainer as pc
from pycontainer.security import DEFAULT_CAPS, Capabilities
from attack_helpers import Attacker, join_until_seen
from helpers import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _true(c, **kw):
    _, exits = c.start(pc.ProcessConfig(args=["/bin/true"], **kw))
    assert exits.get(timeout=30) == 0


@pytest.mark.parametrize("caps", ["default", "ptrace"])
def test_joined_processes_are_closed_to_the_container(factory, attacker_rootfs, caps):
    """The default capabilities: the joining process is non-dumpable, so root inside gets
    no mem, fd or exe of it. With CAP_SYS_PTRACE granted as well, root inside may open
    them, but they are the join helper's, not the caller's. (Before: a CLONE_VM child of
    the caller, whose mem was the caller's and whose exe was the host interpreter.)"""
    kw = {}
    if caps == "ptrace":
        names = DEFAULT_CAPS + ("CAP_SYS_PTRACE",)
        kw["capabilities"] = Capabilities(bounding=names, effective=names, permitted=names)
    c = factory.create("join-window", pc.Config(rootfs=attacker_rootfs, **kw))
    try:
        attacker = Attacker(c)
        join_until_seen(attacker, lambda: _true(c))
        attacker.finish()
        if caps == "default":
            assert attacker.breaches() == []
        else:
            # CAP_SYS_PTRACE over the host's user namespace passes the dumpable check:
            # what it reaches is the join helper (its sealed exe, its own memory), never
            # the caller's interpreter or memory, and the exe cannot be written.
            exes = {" ".join(l[3:]) for l in attacker.lines if l[:1] == ["got"] and l[2] == "exe"}
            assert exes <= {"/memfd:pycontainer-join (deleted)"}
            assert ["exewrite", "ok"] not in attacker.lines
    finally:
        c.destroy()


def test_hooks_are_closed_to_the_container(factory, attacker_rootfs):
    """run_hook joins the container privileged: the same window, the same answer."""
    c = factory.create("hook-window", pc.Config(rootfs=attacker_rootfs))
    try:
        attacker = Attacker(c)

        def hook():
            status, _ = c.run_hook(["/bin/true"])
            assert status == 0
        join_until_seen(attacker, hook)
        attacker.finish()
        assert attacker.breaches() == []
    finally:
        c.destroy()


def test_cli_exec_is_closed_to_the_container(factory, attacker_rootfs, tmp_path):
    """`pycontainer exec`, run by a copy of the interpreter: nothing of it reachable while
    it joins, and once it has exited nothing the attacker kept opens it for writing."""
    python = tmp_path / "python3"
    shutil.copy2(os.path.realpath(sys.executable), python)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + [p for p in sys.path if p]))
    c = factory.create("cli-window", pc.Config(rootfs=attacker_rootfs))
    try:
        attacker = Attacker(c)

        def cli_exec():
            subprocess.run([str(python), "-m", "pycontainer", "--root", factory.root, "exec",
                            "cli-window", "/bin/true"], env=env, check=True, timeout=60,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        join_until_seen(attacker, cli_exec, want=5, limit=300)
        attacker.finish()
        assert attacker.breaches() == []
        assert not [l for l in attacker.lines if l[0] == "exewrite"], \
            "the attacker kept an exe of ours"
    finally:
        c.destroy()


def test_staged_init_is_closed_to_the_container(factory, attacker_rootfs):
    """A staged init (a fork of the caller: a copy of its memory) is alone in its pid
    namespace, but a startContainer hook runs beside it, and may leave a process behind.
    That process watches the init wait as pid 1 and then drop to the container's
    capabilities after exec() released it, before its exec: it gets nothing either
    time."""
    c = factory.create("stage-window", pc.Config(rootfs=attacker_rootfs))
    report = os.path.join(attacker_rootfs, "stage-window.report")
    try:
        init, _ = c.stage(pc.ProcessConfig(args=["/bin/sleep", "1000"]))
        status, err = c.run_hook(["/bin/sh", "-c",
                                  "/attacker >/stage-window.report 2>&1 </dev/null &"])
        assert status == 0, err
        wait_for(lambda: "seen 1 " in _read(report), what="the attacker at the staged init")
        c.exec()
        attacker = [p for p in c.processes() if p != init]
        assert len(attacker) == 1, attacker
        c.signal(signal.SIGTERM, pid=attacker[0])
        wait_for(lambda: "done" in _read(report).split(), what="the attacker's report")
        lines = [l.split() for l in _read(report).splitlines()]
        assert [l for l in lines if l[:1] == ["got"] or l[:2] == ["exewrite", "ok"]] == []
    finally:
        c.destroy()
        if os.path.exists(report):
            os.unlink(report)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


STAGE_WITHOUT_PTRACE = r"""
import sys
import pycontainer as pc
c = pc.Factory(sys.argv[1]).create("noptrace", pc.Config(rootfs=sys.argv[2]))
try:
    _, exits = c.stage(pc.ProcessConfig(args=["/bin/true"]))
    c.exec()
    print(exits.get(timeout=30))
finally:
    c.destroy()
"""


def test_staged_init_of_a_root_without_cap_sys_ptrace(busybox_rootfs, tmp_path, leak_check):
    """A caller without CAP_SYS_PTRACE could not read a non-dumpable init's pid namespace,
    and would take its own init for a stranger: its staged init stays dumpable (and is
    alone in its pid namespace, see docs/SECURITY.md), and stage + exec work."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + [p for p in sys.path if p]))
    p = subprocess.run(["setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace",
                        sys.executable, "-c", STAGE_WITHOUT_PTRACE, str(tmp_path / "state"),
                        busybox_rootfs], env=env, capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout.strip()) == (0, "0"), p.stderr

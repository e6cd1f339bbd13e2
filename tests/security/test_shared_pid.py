"""Containers without a pid namespace of their own: one that joins another container's by
path (a pod's), and one in the caller's (hostPID). Such an init is not alone in its pid
namespace while it sets up, so it is a fork of the caller (csrc/spawn.c, ctx.forked): a
copy of the caller's memory, the caller's interpreter as /proc/<pid>/exe, until it execs;
made non-dumpable (init_main) when the caller holds CAP_SYS_PTRACE.

Root in the other container attacks it: /attacker --probe (attacker.c) told the init's
pid while it waits staged (stage() makes the window deterministic: the init waits at its
exec fifo with the container's credentials, as late as runc's), and /attacker polling
/proc while inits set up and exec. It tries the exe link (kept, and written back at the
end), mem read-write and a write to its code, environ, maps, fd/, pidfd_getfd,
process_vm_readv and ptrace, and searches the memory it gets for a secret the caller
holds."""
import os
import secrets
import shutil
import subprocess
import sys

import pytest

import pycontainer as pc
from pycontainer.config import DEFAULT_NAMESPACES
from pycontainer.security import DEFAULT_CAPS, Capabilities
from attack_helpers import Attacker, Prober, granted, ns_pid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Held by the caller all along: a secret of its memory.
SECRET = "caller-secret-" + secrets.token_hex(16)

PTRACE = DEFAULT_CAPS + ("CAP_SYS_PTRACE",)

HOLE = ("HOLE (sec-findings.md #1): an init in a pid namespace not its own is a fork of "
        "the caller; non-dumpable does not stop a tracer with CAP_SYS_PTRACE over the "
        "host's user namespace, which a container without a user namespace holds when "
        "granted it: it reads the caller's memory, may write it, and keeps the host "
        "interpreter's exe")


def _ptrace_caps():
    return Capabilities(bounding=PTRACE, effective=PTRACE, permitted=PTRACE)


def _member(rootfs, pod_pid, **kw):
    """A Config in the pod's pid namespace (and new ones of everything else)."""
    return pc.Config(rootfs=rootfs, namespaces={
        "mount": None, "pid": f"/proc/{pod_pid}/ns/pid", "uts": None, "ipc": None,
        "net": None}, **kw)


def _host_pid(rootfs, **kw):
    return pc.Config(rootfs=rootfs, namespaces=tuple(n for n in DEFAULT_NAMESPACES
                                                     if n != "pid"), **kw)


def _seen_by(attacker, host_pid):
    """host_pid as the attacker sees it: the host's own in the caller's pid namespace
    (hostPID), else its innermost (the pod's)."""
    if os.readlink(f"/proc/{attacker.pid}/ns/pid") == os.readlink("/proc/self/ns/pid"):
        return host_pid
    return ns_pid(host_pid)


def _probe_staged(factory, attacker, config, name):
    """Stage `name`, let the attacker probe its waiting init, then let it run: the
    attacker's lines about it."""
    victim = factory.create(name, config)
    try:
        init, exits = victim.stage(pc.ProcessConfig(args=["/bin/true"]))
        pid = _seen_by(attacker, init)
        lines = attacker.probe(pid)
        victim.exec()
        assert exits.get(timeout=30) == 0
        return pid, lines
    finally:
        victim.destroy()


def test_pod_member_staged_init_is_closed_to_the_pod(factory, attacker_rootfs):
    """Root in the pod (default capabilities) attacks the staged init of a container that
    joined the pod's pid namespace: nothing. The init waits with the container's
    credentials (uid 0 on both sides, the attacker's capabilities a superset of the
    init's), so it is the non-dumpable flag alone that refuses: no exe (the host's
    interpreter), mem, environ, maps or descriptor, no ptrace, process_vm_readv or
    pidfd_getfd. The init then runs as it would have."""
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs))
    try:
        attacker = Prober(pod)
        attacker.secret(SECRET)
        pid, lines = _probe_staged(factory, attacker, _member(attacker_rootfs, attacker.pid),
                                   "member")
        assert ["denied", str(pid), "mem", "13"] in lines, lines      # it reached it
        attacker.finish()
        assert granted(attacker.lines) == []
    finally:
        pod.destroy()


def test_pod_member_staged_init_is_closed_to_its_own_hook(factory, attacker_rootfs):
    """The member's own startContainer hook (the image's code, in the member's namespaces
    and so in the pod's pid namespace) attacks the member's staged init: nothing."""
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs))
    try:
        pod_pid, _ = pod.start(pc.ProcessConfig(args=["/bin/sleep", "1000"]))
        member = factory.create("member", _member(attacker_rootfs, pod_pid))
        init, exits = member.stage(pc.ProcessConfig(args=["/bin/true"]))
        pid = ns_pid(init)
        status, err = member.run_hook(["/bin/sh", "-c", "exec /attacker --probe >&2"],
                                      input=f"secret {SECRET}\n{pid}\n".encode())
        lines = [l.split() for l in err.decode().splitlines()]
        assert status == 0 and ["probed", str(pid)] in lines, lines
        assert ["denied", str(pid), "mem", "13"] in lines, lines
        assert granted(lines) == []
        member.exec()
        assert exits.get(timeout=30) == 0
    finally:
        for cid in factory.list():
            factory.destroy(cid)


def test_host_pid_staged_init_is_closed_to_a_host_pid_container(factory, attacker_rootfs):
    """hostPID: root in a container in the caller's pid namespace (default capabilities)
    attacks another hostPID container's staged init, and the caller itself (it sees
    both): nothing of either (the init non-dumpable, the caller holding capabilities the
    attacker lacks)."""
    seer = factory.create("seer", _host_pid(attacker_rootfs))
    try:
        attacker = Prober(seer)
        attacker.secret(SECRET)
        pid, lines = _probe_staged(factory, attacker, _host_pid(attacker_rootfs), "staged")
        assert ["denied", str(pid), "mem", "13"] in lines, lines
        lines = attacker.probe(os.getpid())
        assert ["denied", str(os.getpid()), "mem", "13"] in lines, lines
        attacker.finish()
        assert granted(attacker.lines) == []
    finally:
        seer.destroy()


def test_pod_member_inits_setting_up_are_closed_to_the_pod(factory, attacker_rootfs):
    """Unstaged: root in the pod polls /proc while members start (their inits forked
    into the pod's namespace, set up, and exec), until it has caught three of them
    before their exec: it gets nothing of any, at any point of their setup (dumpable
    only while they still hold every capability, which the attacker lacks)."""
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs))
    try:
        attacker = Attacker(pod)
        config = _member(attacker_rootfs, attacker.pid)
        for i in range(300):
            member = factory.create(f"member-{i}", config)
            try:
                _, exits = member.start(pc.ProcessConfig(args=["/bin/true"]))
                assert exits.get(timeout=30) == 0
            finally:
                member.destroy()
            if len(attacker.seen()) >= 3:
                break
        else:
            raise AssertionError(f"the attacker caught {len(attacker.seen())} of 3 inits "
                                 "before their exec in 300 starts: it never raced them")
        attacker.finish()
        assert attacker.breaches() == []
    finally:
        pod.destroy()


@pytest.mark.xfail(strict=True, reason=HOLE)
def test_pod_member_staged_init_is_closed_to_cap_sys_ptrace(factory, attacker_rootfs):
    """The pod granted CAP_SYS_PTRACE (default seccomp, no user namespace: the capability
    is the host's, and passes the non-dumpable check). What it reaches must hold nothing
    of the caller, as a join's process holds nothing (docs/SECURITY.md): no copy of the
    caller's memory (its secret), no memory it may write, not the host's interpreter as
    exe. Today it gets all three (the member's init is a fork of the caller)."""
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs, capabilities=_ptrace_caps()))
    try:
        attacker = Prober(pod)
        attacker.secret(SECRET)
        pid, lines = _probe_staged(factory, attacker, _member(attacker_rootfs, attacker.pid),
                                   "member")
        attacker.finish()
        got = granted(lines)
        assert [l for l in got if l[2] in ("secret", "mem", "codewrite")] == [], lines
        exes = {" ".join(l[3:]) for l in got if l[2] == "exe"}
        assert exes <= {"/memfd:pycontainer-join (deleted)"}, exes
    finally:
        pod.destroy()


STAGE_MEMBER = r"""
import sys
import pycontainer as pc
factory = pc.Factory(sys.argv[1])
c = factory.create("member", pc.Config(rootfs=sys.argv[2], namespaces={
    "mount": None, "pid": sys.argv[3], "uts": None, "ipc": None, "net": None}))
try:
    pid, exits = c.stage(pc.ProcessConfig(args=["/bin/true"]))
    print(pid, flush=True)
    sys.stdin.readline()
    c.exec()
    assert exits.get(timeout=30) == 0
finally:
    c.destroy()
"""


@pytest.mark.xfail(strict=True, reason=HOLE)
def test_pod_member_init_exe_cannot_be_overwritten(factory, attacker_rootfs, tmp_path):
    """CVE-2019-5736 against a pod member: the caller is a copy of the interpreter (so
    that the test may see it written). Root in the pod, granted CAP_SYS_PTRACE, keeps the
    exe link of the member's staged init; once the caller has exited, nothing it kept
    may open the caller's interpreter for writing."""
    python = tmp_path / "python3"
    shutil.copy2(os.path.realpath(sys.executable), python)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + [p for p in sys.path if p]))
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs, capabilities=_ptrace_caps()))
    try:
        attacker = Prober(pod)
        caller = subprocess.Popen(
            [str(python), "-c", STAGE_MEMBER, factory.root, attacker_rootfs,
             f"/proc/{attacker.pid}/ns/pid"], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        try:
            init = int(caller.stdout.readline())
            attacker.probe(ns_pid(init))
            caller.stdin.write("\n")
            caller.stdin.close()
            assert caller.wait(timeout=60) == 0
        finally:
            if caller.poll() is None:
                caller.kill()
                caller.wait()
            caller.stdout.close()
        lines = attacker.finish()
        assert ["exewrite", "ok"] not in lines, lines
    finally:
        pod.destroy()

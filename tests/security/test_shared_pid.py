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

import pytest

import pycontainer as pc
from pycontainer.config import DEFAULT_NAMESPACES
from pycontainer.security import DEFAULT_CAPS, Capabilities, IdMap
from attack_helpers import Attacker, Prober, granted, ns_pid

# Held by the caller all along: a secret of its memory.
SECRET = "caller-secret-" + secrets.token_hex(16)

PTRACE = DEFAULT_CAPS + ("CAP_SYS_PTRACE",)

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


def test_no_init_is_made_beside_a_pod_holding_host_cap_sys_ptrace(factory, attacker_rootfs):
    """The pod granted CAP_SYS_PTRACE without a user namespace: the capability is the
    host's and passes the non-dumpable check of a fork of the caller. An attack test
    found what it then reaches of a member's init (the caller's memory and a secret in
    it, the init's memory to write, the caller's interpreter as exe, written back once
    the caller exited: CVE-2019-5736). So no init is made in such a pid namespace:
    stage() and start() refuse, naming the field and the process, before anything runs,
    and the member is left as it was (CREATED, no process)."""
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs, capabilities=_ptrace_caps()))
    try:
        attacker = Prober(pod)
        member = factory.create("member", _member(attacker_rootfs, attacker.pid))
        try:
            for start in (member.stage, member.start):
                with pytest.raises(pc.ConfigInvalidError) as info:
                    start(pc.ProcessConfig(args=["/bin/true"]))
                assert info.value.field == "namespaces.pid"
                assert str(info.value).startswith(
                    f"container 'member': {start.__name__}: namespaces.pid="
                    f"'/proc/{attacker.pid}/ns/pid': its pid namespace holds a process that "
                    "may use CAP_SYS_PTRACE on this one (pid "), str(info.value)
                assert member.run_state() == pc.RunState.CREATED
                assert member.processes() == []
        finally:
            member.destroy()
        attacker.finish()
    finally:
        pod.destroy()


def test_a_pod_with_its_own_user_namespace_may_hold_cap_sys_ptrace(factory, attacker_rootfs):
    """CAP_SYS_PTRACE in the pod's own user namespace reaches only what that namespace
    owns: a member's init (a fork of the caller, its memory the host's user namespace's)
    is made, and root in the pod gets nothing of it while it waits staged."""
    identity = [IdMap(0, 0, 65536)]
    pod = factory.create("pod", pc.Config(
        rootfs=attacker_rootfs, capabilities=_ptrace_caps(),
        namespaces=tuple(DEFAULT_NAMESPACES) + ("user",), uid_mappings=identity,
        gid_mappings=identity))
    try:
        attacker = Prober(pod)
        attacker.secret(SECRET)
        _, lines = _probe_staged(factory, attacker, _member(attacker_rootfs, attacker.pid),
                                 "member")
        attacker.finish()
        got = granted(lines)
        assert [l for l in got if l[2] in ("secret", "mem", "codewrite", "exe")] == [], lines
    finally:
        pod.destroy()


def test_a_privileged_pod_refuses_no_member(factory, attacker_rootfs):
    """A pod that may hold every capability the caller holds (Kubernetes' privileged pod,
    capabilities=None) is no boundary to keep: its members are made, as runc makes them."""
    pod = factory.create("pod", pc.Config(rootfs=attacker_rootfs, capabilities=None))
    r, w = os.pipe()
    try:
        _, pod_exits = pod.start(pc.ProcessConfig(args=["/bin/sleep", "1000"]))
        member = factory.create("member", _member(attacker_rootfs, pod.init_pid()))
        try:
            _, exits = member.start(pc.ProcessConfig(args=["/bin/echo", "member"], stdout=w))
            os.close(w)
            w = -1
            with os.fdopen(r) as f:
                r = -1
                assert f.read() == "member\n"
            assert exits.get(timeout=30) == 0
        finally:
            member.destroy()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
        pod.destroy()

"""A pooled container's parked init and its handover (docs/pool.md): the init, set up,
has exec'd the join helper from its sealed memfd as "pycontainer-zygote" and waits on a
SOCK_SEQPACKET socket to the pool's process for its ProcessConfig and descriptors
(SCM_RIGHTS). Root in the container attacks it: from a startContainer hook that runs
(or stays) beside it while the container is CREATED, the only way in before start()
(another handle can neither start nor join it), and as the started program itself.

The attacker is /attacker (attacker.c): --probe tries everything on a pid it is told
(exe, mem read-write and a write to its code, environ, maps, fd/, pidfd_getfd,
process_vm_readv, ptrace, a signal) and searches what memory it gets for a secret of
the caller's; without --probe it polls /proc and races the handover."""
import os
import signal
import secrets
import threading

import pytest

import pycontainer as pc
from pycontainer.config import DEFAULT_NAMESPACES
from pycontainer.security import CAPABILITIES, DEFAULT_CAPS, Capabilities, IdMap
from attack_helpers import Prober, granted
from helpers import wait_for

# Held by the caller (the pool's process) all along: a secret its memory must keep.
SECRET = "caller-secret-" + secrets.token_hex(16)
MEMFD = "/memfd:pycontainer-join (deleted)"


def _caps(names):
    return Capabilities(bounding=names, effective=names, permitted=names)


def _all_caps():
    """Every capability this process may grant (its bounding set)."""
    with open("/proc/self/status") as f:
        bnd = int(next(l for l in f if l.startswith("CapBnd:")).split()[1], 16)
    return tuple(n for i, n in enumerate(CAPABILITIES) if bnd >> i & 1)


def _hook_probe(c, pid=1):
    """A startContainer hook (the image's code: the Config's capabilities, no_new_privs
    and seccomp filter) that attacks `pid` of the parked container: its lines."""
    status, err = c.run_hook(["/bin/sh", "-c", "exec /attacker --probe >&2"],
                             input=f"secret {SECRET}\n{pid}\n".encode())
    lines = [l.split() for l in err.decode().splitlines()]
    assert status == 0 and ["probed", str(pid)] in lines and ["done"] in lines, lines
    return lines


def _start_true(c):
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        _, exits = c.start(pc.ProcessConfig(args=["/bin/echo", "started"], stdout=w))
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        assert f.read() == "started\n"
    assert exits.get(timeout=30) == 0


def test_parked_init_is_closed_to_a_hook(factory, attacker_rootfs):
    """Default capabilities: the parked init is non-dumpable from its first instruction
    (pc_zygote_main) and its memory is the host's user namespace's, so root inside gets
    nothing of it: no exe, mem, environ, maps, no descriptor (the pool's socket), no
    pidfd_getfd, process_vm_readv or ptrace. The handover then works as ever."""
    with factory.pool(pc.Config(rootfs=attacker_rootfs), size=1) as pool:
        pool.wait_ready()
        c = pool.create("parked")
        try:
            lines = _hook_probe(c)
            assert ["denied", "1", "mem", "13"] in lines, lines      # it reached it
            assert granted(lines) == []
            _start_true(c)
        finally:
            c.destroy()


def test_parked_init_with_every_capability_but_ptrace_is_closed_to_a_hook(factory,
                                                                        attacker_rootfs):
    """Every capability but CAP_SYS_PTRACE (no user namespace: the host's) and no seccomp
    filter: the parked init's memory, exe and descriptors stay out of reach (the
    kernel's check on them passes only with CAP_SYS_PTRACE). Its maps and environ read
    (on this kernel, with every other capability): the sealed helper's layout and an
    empty environment, nothing of the caller's."""
    names = tuple(n for n in _all_caps() if n != "CAP_SYS_PTRACE")
    with factory.pool(pc.Config(rootfs=attacker_rootfs, capabilities=_caps(names),
                                seccomp=None), size=1) as pool:
        pool.wait_ready()
        c = pool.create("parked-all")
        try:
            lines = _hook_probe(c)
            assert ["denied", "1", "mem", "13"] in lines, lines      # it reached it
            got = granted(lines)
            assert {l[2] for l in got} <= {"environ", "maps"}, lines
            assert [l[2:] for l in got if l[2] == "environ"] in ([], [["environ", "0"]])
            _start_true(c)
        finally:
            c.destroy()


@pytest.mark.parametrize("userns", [False, True], ids=["host-userns", "own-userns"])
def test_no_hook_runs_beside_a_parked_init_when_ptrace_may_be_held(factory, attacker_rootfs,
                                                                   userns):
    """A parked init holds every capability of its user namespace and no seccomp filter
    yet, and its memory is that namespace's (the helper was exec'd inside it). Were
    CAP_SYS_PTRACE in the container's bounding set (even with a user namespace, the
    configuration docs/SECURITY.md recommends for it), a hook could write its code and
    run as it (found by an attacker that did: its payload ran at start() and
    sethostname worked). So while the init is parked, run_hook of the container's code
    is refused for such a Config, before anything runs; start() works, and hooks do
    once the process runs. (Without CAP_SYS_PTRACE: the tests above.)"""
    names = DEFAULT_CAPS + ("CAP_SYS_PTRACE",)
    extra = {}
    if userns:
        identity = [IdMap(0, 0, 65536)]
        extra = dict(namespaces=tuple(DEFAULT_NAMESPACES) + ("user",),
                     uid_mappings=identity, gid_mappings=identity)
    config = pc.Config(rootfs=attacker_rootfs, capabilities=_caps(names), **extra)
    with factory.pool(config, size=1) as pool:
        pool.wait_ready()
        c = pool.create("parked-ptrace")
        try:
            marker = os.path.join(attacker_rootfs, "tmp", "hook-ran")
            with pytest.raises(pc.ContainerNotRunningError,
                               match="'parked-ptrace': hook: its init is parked in a pool and "
                                     "the Config grants CAP_SYS_PTRACE"):
                c.run_hook(["/bin/sh", "-c", "exec /attacker --probe >&2; touch /tmp/hook-ran"],
                           input=b"inject 1\n")
            assert not os.path.exists(marker)
            assert c.processes() == [c.init_pid()]          # nothing joined it
            r, w = os.pipe2(os.O_CLOEXEC)
            try:
                _, exits = c.start(pc.ProcessConfig(
                    args=["/bin/sh", "-c", "echo started; exec sleep 1000"], stdout=w))
            finally:
                os.close(w)
            with os.fdopen(r) as f:
                assert f.readline() == "started\n"
                status, err = c.run_hook(["/bin/true"])      # a running container: as ever
                assert status == 0, err
            c.signal(signal.SIGKILL)
            assert exits.get(timeout=30) == -signal.SIGKILL
        finally:
            c.destroy()


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def test_handover_is_closed_to_a_process_left_by_a_hook(factory, attacker_rootfs):
    """A hook leaves /attacker behind, polling /proc: it watches the parked init wait,
    receive its process and drop to the container's capabilities before its exec, and
    gets nothing at any point (the exec'd program is the container's own)."""
    report = os.path.join(attacker_rootfs, "pool-handover.report")
    with factory.pool(pc.Config(rootfs=attacker_rootfs), size=1) as pool:
        pool.wait_ready()
        c = pool.create("handover")
        try:
            init = c.init_pid()
            status, err = c.run_hook(["/bin/sh", "-c",
                                      "/attacker >/pool-handover.report 2>&1 </dev/null &"])
            assert status == 0, err
            wait_for(lambda: "seen 1 " in _read(report), what="the attacker at the parked init")
            pid, _ = c.start(pc.ProcessConfig(args=["/bin/sleep", "1000"]))
            assert pid == init
            attacker = [p for p in c.processes() if p != init]
            assert len(attacker) == 1, attacker
            c.signal(signal.SIGTERM, pid=attacker[0])
            wait_for(lambda: "done" in _read(report).split(), what="the attacker's report")
            lines = [l.split() for l in _read(report).splitlines()]
            assert granted(lines) == [], lines
        finally:
            c.destroy()
            if os.path.exists(report):
                os.unlink(report)


def test_parked_container_admits_no_other_handle(factory, attacker_rootfs):
    """Before start() nothing but hooks gets in: another handle's start() is refused (it
    would be a join of the parked init otherwise), and the parked init is still there
    for the handle the pool gave."""
    with factory.pool(pc.Config(rootfs=attacker_rootfs), size=1) as pool:
        pool.wait_ready()
        c = pool.create("one-handle")
        try:
            init = c.init_pid()
            other = factory.load("one-handle")
            assert other.run_state() == pc.RunState.CREATED
            with pytest.raises(pc.ContainerNotRunningError, match="parked"):
                other.start(pc.ProcessConfig(args=["/bin/true"]))
            assert c.processes() == [init]
            _start_true(c)
        finally:
            c.destroy()


def _refill_thread_tid():
    return next(t.native_id for t in threading.enumerate() if t.name == "pycontainer-pool")


@pytest.mark.parametrize("caps", ["default", "all"])
def test_started_program_holds_only_its_own(factory, attacker_rootfs, tmp_path, caps):
    """After start() the program (/attacker, pid 1) holds its stdio and the extra file it
    was given, nothing of the handover (the socket is close-on-exec, the descriptors came
    with MSG_CMSG_CLOEXEC and only the process's slots were kept), and it sees only
    itself: the other sandboxes' parked inits, the pool's process and its refill thread
    are in other pid namespaces, absent to it (no /proc entry, kill ESRCH, nothing to
    ptrace) even with every capability."""
    extra = tmp_path / "extra"
    extra.write_text("given\n")
    kw = {}
    if caps == "all":
        kw = dict(capabilities=_caps(_all_caps()), seccomp=None)
    with factory.pool(pc.Config(rootfs=attacker_rootfs, **kw), size=3) as pool:
        pool.wait_ready()
        c = pool.create("started")
        try:
            with open(extra) as given:
                attacker = Prober(c, extra_files=[given])
            fds, procs = attacker.look_at_self()
            assert set(fds) == {0, 1, 2, 3}, fds
            assert fds[0].startswith("pipe:") and fds[1].startswith("pipe:"), fds
            assert fds[2] == "/dev/null" and fds[3].endswith("/extra"), fds
            assert procs == [1]
            pool.wait_ready()
            others = pool.parked_pids()
            assert len(others) == 3
            for pid in others + [os.getpid(), _refill_thread_tid()]:
                lines = attacker.probe(pid)
                assert lines[0] == ["absent", str(pid)] and granted(lines) == [], lines
            attacker.finish()
            assert granted(attacker.lines) == []
            assert [p for p in pool.parked_pids() if os.path.exists(f"/proc/{p}")] == others
        finally:
            c.destroy()


def test_host_pid_pool_parked_inits_are_closed(factory, attacker_rootfs):
    """A Config without a pid namespace (hostPID): the parked inits are in the caller's
    pid namespace, visible to every hostPID container. Root in a started one (default
    capabilities) attacks the other sandboxes' parked inits and the pool's own process:
    it sees them, and gets nothing (the parked inits are non-dumpable helpers with the
    full capability set, the caller has the full set too)."""
    config = pc.Config(rootfs=attacker_rootfs,
                       namespaces=tuple(n for n in DEFAULT_NAMESPACES if n != "pid"))
    with factory.pool(config, size=2) as pool:
        pool.wait_ready()
        c = pool.create("host-pid")
        try:
            attacker = Prober(c)
            attacker.secret(SECRET)
            pool.wait_ready()
            for pid in pool.parked_pids() + [os.getpid()]:
                lines = attacker.probe(pid)
                assert ["denied", str(pid), "mem", "13"] in lines  # it sees them
                assert granted(lines) == [], lines
            attacker.finish()
        finally:
            c.destroy()

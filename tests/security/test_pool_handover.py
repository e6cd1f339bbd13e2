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


def test_parked_init_with_every_capability_holds_nothing_of_the_caller(factory,
                                                                     attacker_rootfs):
    """Every capability (CAP_SYS_PTRACE without a user namespace: the host's) and no
    seccomp filter: the kernel lets root inside have the parked init (its mem, code,
    ptrace, the pool's socket through pidfd_getfd; see "What is not defended" in
    docs/SECURITY.md), but what it has is the helper's: exe the sealed memfd, whose
    write is refused, a few pages without the caller's secret, no environment, and one
    descriptor, this sandbox's socket. Nothing of the host's interpreter or memory."""
    names = _all_caps()
    with factory.pool(pc.Config(rootfs=attacker_rootfs, capabilities=_caps(names),
                                seccomp=None), size=1) as pool:
        pool.wait_ready()
        c = pool.create("parked-all")
        try:
            lines = _hook_probe(c)
            got = granted(lines)
            assert ["got", "1", "mem", "rw"] in got, lines     # it did reach it
            assert {" ".join(l[3:]) for l in got if l[2] == "exe"} == {MEMFD}
            assert not [l for l in got if l[2] == "secret"]
            assert [l for l in lines if l[0] == "scanned"], lines
            assert [l[2:] for l in got if l[2] == "environ"] == [["environ", "0"]]
            fds = {" ".join(l[3:]).split("[")[0] for l in got
                   if l[2].startswith(("fd/", "getfd/"))}
            assert fds == {"socket:"}, got
            assert not [l for l in lines if l[:2] == ["exewrite", "ok"]]
            _start_true(c)
        finally:
            c.destroy()


@pytest.mark.xfail(strict=True, reason="HOLE (sec-findings.md #2): the parked init execs "
                   "the helper inside the container's user namespace, so its memory is that "
                   "namespace's and a container root with CAP_SYS_PTRACE there may write it "
                   "(its code), then run as it: every capability, no seccomp filter")
def test_parked_init_of_a_user_namespace_is_closed_to_cap_sys_ptrace(factory,
                                                                    attacker_rootfs):
    """The configuration docs/SECURITY.md recommends for CAP_SYS_PTRACE: a user
    namespace, where the capability reaches only the container's own processes. The
    parked init is one of them, but it is more than the container may be: it holds the
    user namespace's full capability set and has no seccomp filter or no_new_privs yet.
    Root inside must not get its mem (read-write, and a write to its code), nor its
    socket. (A join's process and a staged init are forks of a host memory: refused.)"""
    names = DEFAULT_CAPS + ("CAP_SYS_PTRACE",)
    identity = [IdMap(0, 0, 65536)]          # any mapping: the namespace is what counts
    config = pc.Config(rootfs=attacker_rootfs, capabilities=_caps(names),
                       namespaces=tuple(DEFAULT_NAMESPACES) + ("user",),
                       uid_mappings=identity, gid_mappings=identity)
    with factory.pool(config, size=1) as pool:
        pool.wait_ready()
        c = pool.create("parked-userns")
        try:
            lines = _hook_probe(c)
            got = granted(lines)
            assert not [l for l in got if l[2] == "secret"]    # this part holds
            assert [l for l in got if l[2] in ("mem", "codewrite")] == [], lines
            _start_true(c)
        finally:
            c.destroy()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the payload is x86-64 code")
@pytest.mark.xfail(strict=True, reason="HOLE (sec-findings.md #2): code written into the "
                   "parked init of a user namespace runs at start() with every capability "
                   "and no seccomp filter")
def test_parked_init_code_cannot_be_rewritten_from_a_user_namespace(factory, attacker_rootfs):
    """The attack of the test above carried out: the hook writes, over the code the
    parked init returns to from its recvmsg, a payload that calls sethostname (denied by
    the default seccomp profile, and needing CAP_SYS_ADMIN, which the container lacks)
    and exits 42 + its result. start() then hands the init its process; the program must
    run ("started" on its stdout), never the payload (exit 42: sethostname worked, 41:
    refused)."""
    names = DEFAULT_CAPS + ("CAP_SYS_PTRACE",)
    identity = [IdMap(0, 0, 65536)]
    config = pc.Config(rootfs=attacker_rootfs, capabilities=_caps(names),
                       namespaces=tuple(DEFAULT_NAMESPACES) + ("user",),
                       uid_mappings=identity, gid_mappings=identity)
    with factory.pool(config, size=1) as pool:
        pool.wait_ready()
        c = pool.create("parked-inject")
        try:
            # The container's root itself may not: the payload is what it cannot do.
            status, err = c.run_hook(["/bin/sh", "-c", "hostname pwned"])
            assert status != 0 and b"not permitted" in err, (status, err)
            status, err = c.run_hook(["/bin/sh", "-c", "exec /attacker --probe >&2"],
                                     input=b"inject 1\n")
            assert status == 0, err
            r, w = os.pipe2(os.O_CLOEXEC)
            try:
                _, exits = c.start(pc.ProcessConfig(args=["/bin/echo", "started"], stdout=w))
            finally:
                os.close(w)
            with os.fdopen(r) as f:
                out = f.read()
            status = exits.get(timeout=30)
            assert (out, status) == ("started\n", 0), \
                f"the payload ran in the parked init: exit {status} (42: sethostname worked)"
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

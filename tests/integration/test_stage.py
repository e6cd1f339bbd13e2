"""Staging the init (runc's create/start split): Container.stage() sets everything up and
leaves the init blocked before exec on the exec fifo; Container.exec() lets it run, from
this process or any other. Real containers on the busybox rootfs."""
import errno
import os
import signal
import subprocess
import sys

import pytest

import pycontainer as pc
from pycontainer.config import IdMap
from pycontainer.security import Rlimit
from helpers import read_pipes, settle

ECHO = ["/bin/sh", "-c", "echo ran as $$ $(id -u)"]


def staged(factory, rootfs, cid="staged", args=ECHO, **config):
    c = factory.create(cid, pc.Config(rootfs=rootfs, **config))
    r, w = os.pipe()
    try:
        pid, exits = c.stage(pc.ProcessConfig(args=args, stdout=w, stderr=w))
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    return c, pid, exits, r


def fds_of(pid):
    return sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))


def test_stage_then_exec(factory, busybox_rootfs):
    c, pid, exits, r = staged(factory, busybox_rootfs)
    try:
        assert c.run_state() == pc.RunState.CREATED
        assert c.processes() == [pid]
        assert os.path.exists(os.path.join(factory.root, "staged", "exec.fifo"))
        # Set up but not run: it is still our fork, not sh, and has printed nothing.
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"/bin/sh" not in f.read()
        # It keeps its stdio and the fifo, none of the caller's descriptors.
        assert len(fds_of(pid)) == 4 and fds_of(pid)[:3] == [0, 1, 2]
        assert exits.empty()
        c.exec()
        assert read_pipes([r])[0] == "ran as 1 0\n"
        assert exits.get(timeout=10) == 0
        assert c.run_state() == pc.RunState.STOPPED
        assert not os.path.exists(os.path.join(factory.root, "staged", "exec.fifo"))
    finally:
        c.destroy()


def test_exec_from_another_process(factory, busybox_rootfs):
    c, pid, exits, r = staged(factory, busybox_rootfs, args=["sleep", "100"])
    try:
        code = ("import sys, pycontainer as pc; c = pc.Factory(sys.argv[1]).load('staged');"
                "c.exec(); print(c.run_state())")
        out = subprocess.run([sys.executable, "-c", code, factory.root], capture_output=True,
                             text=True, timeout=60, cwd=os.path.dirname(pc.__path__[0]))
        assert out.returncode == 0, out.stderr
        assert out.stdout == "running\n"
        assert c.run_state() == pc.RunState.RUNNING
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read() == b"sleep\x00100\x00"
    finally:
        os.close(r)
        c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_staging_failure_raises_and_leaves_nothing(factory, busybox_rootfs):
    c = factory.create("nope", pc.Config(rootfs=busybox_rootfs))
    with pytest.raises(pc.ContainerSystemError) as info:
        c.stage(pc.ProcessConfig(args=["/bin/nope"]))
    e = info.value
    assert (e.stage, e.errno) == ("exec", 2)
    assert str(e) == ("container 'nope': stage: exec: /bin/nope: No such file or directory "
                      "(ENOENT)")
    assert c.run_state() == pc.RunState.CREATED and c.processes() == []
    assert os.listdir(os.path.join(factory.root, "nope")) == ["state.json"]
    # A directory is found but is not a program: EACCES, as execve would say.
    with pytest.raises(pc.ContainerSystemError) as info:
        c.stage(pc.ProcessConfig(args=["/tmp"]))
    assert (info.value.stage, info.value.errno) == ("exec", 13)
    c.destroy()


def test_wrong_states(factory, busybox_rootfs):
    c, pid, exits, r = staged(factory, busybox_rootfs, args=["sleep", "100"])
    os.close(r)
    try:
        with pytest.raises(pc.ContainerNotRunningError, match="staged: exec"):
            c.start(pc.ProcessConfig(args=["true"]))
        with pytest.raises(pc.ContainerNotRunningError):
            c.pause()
        c.exec()
        with pytest.raises(pc.ContainerNotStoppedError, match="'staged': exec: .*running"):
            c.exec()
        with pytest.raises(pc.ContainerNotStoppedError, match="stage: an init runs"):
            c.stage(pc.ProcessConfig(args=["true"]))
    finally:
        c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    fresh = factory.create("fresh", pc.Config(rootfs=busybox_rootfs))
    with pytest.raises(pc.ContainerNotRunningError, match="no init is staged"):
        fresh.exec()
    fresh.destroy()
    with pytest.raises(pc.ContainerNotExistError):
        fresh.exec()


def test_staged_init_killed_before_exec(factory, busybox_rootfs):
    c, pid, exits, r = staged(factory, busybox_rootfs)
    try:
        c.signal(signal.SIGKILL)
        assert exits.get(timeout=10) == -signal.SIGKILL
        assert c.run_state() == pc.RunState.STOPPED
        with pytest.raises(pc.ContainerNotRunningError, match="has stopped"):
            c.exec()
        assert read_pipes([r])[0] == ""
        # A stopped container starts afresh.
        rr, w = os.pipe()
        _, exits2 = c.start(pc.ProcessConfig(args=ECHO, stdout=w))
        os.close(w)
        assert read_pipes([rr])[0] == "ran as 1 0\n" and exits2.get(timeout=10) == 0
    finally:
        c.destroy()


def test_destroy_a_staged_container(factory, busybox_rootfs):
    c, pid, exits, r = staged(factory, busybox_rootfs)
    os.close(r)
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert not os.path.exists(os.path.join(factory.root, "staged"))
    assert not settle(lambda: os.path.exists(f"/proc/{pid}"))


def test_stage_in_a_user_namespace(factory, busybox_rootfs):
    """The fifo is owned by the container's root on the host, who opens it. (The host
    image: the busybox rootfs lies in a 0700 directory of pytest's.)"""
    c, pid, exits, r = staged(factory, None,
                              namespaces=pc.Config().namespaces + ("user",),
                              uid_mappings=[IdMap(0, 100000, 65536)],
                              gid_mappings=[IdMap(0, 100000, 65536)])
    try:
        assert c.run_state() == pc.RunState.CREATED
        st = os.stat(os.path.join(factory.root, "staged", "exec.fifo"))
        assert (st.st_uid, st.st_gid) == (100000, 100000)
        c.exec()
        assert read_pipes([r])[0] == "ran as 1 0\n"
        assert exits.get(timeout=10) == 0
    finally:
        c.destroy()


def test_run_hook(factory, busybox_rootfs):
    """Container.run_hook: in the init's namespaces, stdin fed, stderr returned, killed
    after its timeout; mount=False resolves the program on the host."""
    c = factory.create("hooks", pc.Config(rootfs=busybox_rootfs, hostname="hooked"))
    with pytest.raises(pc.ContainerNotRunningError, match="'hooks': hook: the container has no"):
        c.run_hook(["/bin/true"])
    c, pid, exits, r = staged(factory, busybox_rootfs, cid="hooks2", hostname="hooked")
    os.close(r)
    try:
        status, err = c.run_hook(["/bin/sh", "-c", "cat >&2; hostname >&2; exit 4"],
                                 input=b"state\n")
        assert (status, err) == (4, b"state\nhooked\n")
        assert c.run_hook(["sleep", "10"], timeout=0.2) == (-signal.SIGKILL, b"")
        # A hook that reads none of a large input (its stdin closes: EPIPE) still counts.
        assert c.run_hook(["true"], input=b"x" * (1 << 20)) == (0, b"")
        host_only = "/usr/bin/test"            # not in the busybox image
        with pytest.raises(pc.ContainerSystemError) as info:
            c.run_hook([host_only, "-d", "/"])
        assert (info.value.stage, info.value.errno) == ("exec", 2)
        assert c.run_hook([host_only, "-d", "/"], mount=False) == (0, b"")
        assert c.run_state() == pc.RunState.CREATED and c.processes() == [pid]
    finally:
        c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    factory.load("hooks").destroy()


def test_staged_init_failing_in_its_setup_fails_stage(factory, busybox_rootfs):
    """A staged init waits for the go only once it is its process (user, capabilities,
    cwd), as runc's does: what fails there fails stage() (runc's create), and nothing is
    left but the container's record. (A missing cwd is found only then.)"""
    c = factory.create("late", pc.Config(rootfs=busybox_rootfs))
    try:
        with pytest.raises(pc.ContainerSystemError) as info:
            c.stage(pc.ProcessConfig(args=ECHO, cwd="/nowhere"))
        e = info.value
        assert (e.stage, e.errno) == ("cwd", 2)
        assert str(e) == ("container 'late': stage: cwd: /nowhere: No such file or directory "
                          "(ENOENT)")
        assert c.run_state() == pc.RunState.CREATED and c.processes() == []
        assert os.listdir(os.path.join(factory.root, "late")) == ["state.json"]
        with pytest.raises(pc.ContainerNotRunningError, match="no init is staged"):
            c.exec()
    finally:
        c.destroy()
    assert not os.path.exists(os.path.join(factory.root, "late"))


def test_staged_init_killed_in_its_setup_fails_stage(factory, busybox_rootfs):
    """An init that dies without a word before its ready (here a seccomp profile whose
    default action kills, loaded before the user switch, that does not list chdir) fails
    stage() with how it died."""
    from test_oci_kernel import BUSYBOX_SYSCALLS
    profile = {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": [n for n in BUSYBOX_SYSCALLS if n != "chdir"],
                             "action": "SCMP_ACT_ALLOW"}]}
    c = factory.create("killed", pc.Config(rootfs=busybox_rootfs, seccomp=profile,
                                           no_new_privileges=False))
    try:
        with pytest.raises(pc.ContainerSystemError) as info:
            c.stage(pc.ProcessConfig(args=ECHO))
        assert (info.value.stage, info.value.errno) == ("died", errno.ECANCELED)
        assert str(info.value) == (
            "container 'killed': stage: died: the init was killed by SIGSYS (Bad system "
            "call) before its program ran: Operation canceled (ECANCELED)")
        assert c.run_state() == pc.RunState.CREATED and c.processes() == []
        assert os.listdir(os.path.join(factory.root, "killed")) == ["state.json"]
    finally:
        c.destroy()


def test_staged_init_failing_after_the_go_fails_exec(factory, busybox_rootfs, tmp_path):
    """After the go only no_new_privs, the late filter and the exec remain: an exec that
    fails (the program removed between stage and exec) fails exec() as start() would,
    with its stage and errno, and the container has stopped."""
    bind = tmp_path / "bin"
    bind.mkdir()
    prog = bind / "prog"
    prog.write_text("#!/bin/sh\necho ran\n")
    prog.chmod(0o755)
    c, pid, exits, r = staged(factory, busybox_rootfs, cid="late", args=["/opt/prog"],
                              mounts=[pc.Mount(source=str(bind), destination="/opt",
                                               type="bind", options=("ro",))])
    try:
        assert c.run_state() == pc.RunState.CREATED
        prog.unlink()
        with pytest.raises(pc.ContainerSystemError) as info:
            c.exec()
        e = info.value
        assert (e.stage, e.errno) == ("exec", 2)
        assert str(e) == ("container 'late': exec: exec: /opt/prog: No such file or directory "
                          "(ENOENT)")
        assert exits.get(timeout=10) == 127
        assert c.run_state() == pc.RunState.STOPPED and c.processes() == []
        assert read_pipes([r])[0] == ""
        assert os.listdir(os.path.join(factory.root, "late")) == ["state.json"]
        with pytest.raises(pc.ContainerNotRunningError, match="has stopped"):
            c.exec()
    finally:
        c.destroy()
    assert not os.path.exists(os.path.join(factory.root, "late"))


def test_staged_init_names_its_rlimit(factory, busybox_rootfs):
    """The labels of a failure in the staged init's setup: here a process rlimit it cannot
    set (nofile above fs.nr_open: EPERM, even for root)."""
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1
    c = factory.create("rl", pc.Config(rootfs=busybox_rootfs))
    try:
        with pytest.raises(pc.ContainerSystemError) as info:
            c.stage(pc.ProcessConfig(args=["true"], rlimits=[Rlimit("RLIMIT_NOFILE", too_many,
                                                                    too_many)]))
        assert (info.value.stage, info.value.errno) == ("rlimits", 1)
        assert str(info.value) == ("container 'rl': stage: rlimits: rlimits RLIMIT_NOFILE: "
                                   "Operation not permitted (EPERM)")
        assert c.run_state() == pc.RunState.CREATED and c.processes() == []
    finally:
        c.destroy()

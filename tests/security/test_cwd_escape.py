"""Issue 18, items 1 and 7: a working directory through a host descriptor
(/proc/self/fd/N, the CVE-2024-21626 class). Before, the child chdir'd before it closed
what it inherited of the caller's descriptors (the state directory's lock, the cgroup2
directory of placement()), and `..` from there walked the host's filesystem or left the
container's cgroup. Now no such path resolves: every process closes all it inherited but
its own descriptors before it uses the cwd, and a cwd outside its root is refused."""
import errno
import os
import subprocess
import sys
import tempfile

import pytest

import pycontainer as pc
from helpers import write_bundle  # noqa: E402  (tests/helpers.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
FDS = range(0, 48)     # well past what the caller holds during a start
ESCAPE = "touch ../pc-escape ../../pc-escape; echo $$ > ../cgroup.procs"


def _escape_attempt(c, fd, **kw):
    return c.start(pc.ProcessConfig(args=["/bin/sh", "-c", ESCAPE],
                                    cwd=f"/proc/self/fd/{fd}", **kw))


def _no_marker(*dirs):
    for d in dirs:
        for up in (d, os.path.dirname(d), os.path.dirname(os.path.dirname(d))):
            assert not os.path.exists(os.path.join(up, "pc-escape")), up


@pytest.mark.parametrize("kind", ["init", "join"])
def test_cwd_through_a_host_descriptor_is_refused(factory, busybox_rootfs, kind):
    c = factory.create(f"cwd-{kind}", pc.Config(rootfs=busybox_rootfs))
    try:
        if kind == "join":
            init, _ = c.start(pc.ProcessConfig(args=["/bin/sleep", "1000"]))
        for fd in FDS:
            with pytest.raises(pc.ContainerSystemError) as info:
                _escape_attempt(c, fd)
            assert info.value.stage == "cwd", (fd, info.value)
        if kind == "join":
            assert c.processes() == [init]
        assert c.run_state() == (pc.RunState.RUNNING if kind == "join" else pc.RunState.CREATED)
    finally:
        c.destroy()
    _no_marker(factory.root, "/sys/fs/cgroup/unified")


def test_cwd_through_a_passed_host_directory_is_refused(factory, busybox_rootfs, tmp_path):
    """A host directory the caller passes on purpose (extra_files) is the process's to
    use as a descriptor, but not as a cwd that leaves the root: EPERM, said as such."""
    host_dir = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    c = factory.create("cwd-passed", pc.Config(rootfs=busybox_rootfs))
    try:
        with pytest.raises(pc.ContainerSystemError) as info:
            _escape_attempt(c, 3, extra_files=[host_dir])
        assert (info.value.stage, info.value.errno) == ("cwd", 1)
        assert "outside the container's root" in str(info.value)
        assert "container 'cwd-passed'" in str(info.value)
        assert c.run_state() == pc.RunState.CREATED
    finally:
        c.destroy()
        os.close(host_dir)
    _no_marker(str(tmp_path / "x"))


def test_staged_init_with_a_host_descriptor_cwd_never_runs(factory, busybox_rootfs):
    """A staged init enters its cwd before it waits for the go, as its process: by then
    it holds only its stdio, its error pipe and the fifo it will report on (none a
    directory), so the path resolves to nothing or to no directory and stage() fails with
    the cwd stage; no process is left to release."""
    for fd in (3, 4, 5, 6, 7, 8):
        c = factory.create(f"cwd-staged-{fd}", pc.Config(rootfs=busybox_rootfs))
        try:
            with pytest.raises(pc.ContainerSystemError) as info:
                c.stage(pc.ProcessConfig(args=["/bin/sh", "-c", ESCAPE],
                                         cwd=f"/proc/self/fd/{fd}"))
            assert info.value.stage == "cwd"
            assert info.value.errno in (errno.ENOENT, errno.ENOTDIR)
            assert c.processes() == []
        finally:
            c.destroy()
    _no_marker(factory.root, "/sys/fs/cgroup/unified")


def _cli(root, *args):
    """The CLI's exit status and stderr. Output goes to files: a detached container would
    hold a pipe open."""
    with tempfile.TemporaryFile("w+") as err:
        r = subprocess.run([sys.executable, "-m", "pycontainer", "--root", root, *args],
                           env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                           timeout=120, stdin=subprocess.DEVNULL)
        err.seek(0)
        r.stderr = err.read()
    return r


def test_cli_exec_and_run_cwd_through_a_host_descriptor(busybox_rootfs, tmp_path, leak_check):
    """`pycontainer exec --cwd /proc/self/fd/N` and a config.json whose process.cwd is one
    (as an image's WorkingDir could be): the program never runs."""
    root = str(tmp_path / "state")
    bundle = write_bundle(tmp_path / "bundle", busybox_rootfs)
    r = _cli(root, "run", "-d", "--bundle", bundle, "cwd-cli")
    assert r.returncode == 0, r.stderr
    try:
        for fd in range(3, 16):
            r = _cli(root, "exec", "--cwd", f"/proc/self/fd/{fd}", "cwd-cli",
                     "/bin/sh", "-c", ESCAPE)
            assert r.returncode != 0 and "cwd" in r.stderr, (fd, r.stderr)
        for fd in (3, 4, 5, 6, 7):
            escape = write_bundle(tmp_path / f"bundle-{fd}", busybox_rootfs,
                                  ["/bin/sh", "-c", ESCAPE],
                                  lambda spec: spec["process"].update(cwd=f"/proc/self/fd/{fd}"))
            r = _cli(root, "run", "--bundle", escape, f"cwd-run-{fd}")
            assert r.returncode != 0, (fd, r.stderr)
            _cli(root, "delete", "--force", f"cwd-run-{fd}")
    finally:
        _cli(root, "delete", "--force", "cwd-cli")
    _no_marker(root, os.path.join(root, "cwd-cli"), "/sys/fs/cgroup/unified")

"""Every error path names its cause and leaves nothing behind: no process, zombie,
descriptor, cgroup or state directory, and the container stays usable."""
import errno
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time

import pytest

import pycontainer as pc
from helpers import open_fds  # noqa: E402  (tests/helpers.py)


# --- helpers ----------------------------------------------------------------------------

def _children_by_state():
    """{pid: state letter} of this process's children."""
    me = os.getpid()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if int(fields[1]) == me:
            found[int(name)] = fields[0]
    return found


def our_zombies():
    """Pids of zombie children of this process."""
    return {pid for pid, state in _children_by_state().items() if state == b"Z"}


def our_children():
    return set(_children_by_state())


def closed_fd():
    """A descriptor number that is not open (high, so no library pipe takes it meanwhile)."""
    for fd in range(900, 1000):
        try:
            os.fstat(fd)
        except OSError:
            return fd
    raise AssertionError("no free descriptor number")


def sh_out(c, script, **kw):
    """(status, stdout) of /bin/sh -c script."""
    r, w = os.pipe()
    try:
        pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", script], stdout=w, **kw))
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    chunks = []
    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ)
    deadline = time.monotonic() + 10
    try:
        while True:
            assert time.monotonic() < deadline, "output never closed (hang guard)"
            if sel.select(deadline - time.monotonic()):
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        sel.close()
        os.close(r)
    return exits.get(timeout=10), b"".join(chunks).decode()


# Kept for the life of the process by design: the exit watcher's epoll set and the join
# helper's sealed memfd (made by the first join in the process, which may be a test's).
KEPT_FDS = ("[eventpoll]", "memfd:pycontainer-join")


class Snapshot:
    """What a failed start must not change."""

    def __init__(self, c):
        self.c = c
        # first: asking for the state may open (and cache) a pidfd of the init
        self.state = c.run_state()
        self.processes = c.processes()
        self.fds = open_fds(KEPT_FDS)
        self.zombies = our_zombies()
        self.children = our_children()

    def check(self):
        assert self.c.run_state() == self.state
        assert our_zombies() - self.zombies == set()
        assert our_children() - self.children == set()
        assert open_fds(KEPT_FDS) == self.fds
        assert self.c.processes() == self.processes


def start_fails(c, process, *, err, stage, contains=()):
    """start(process) raises ContainerSystemError(err, stage) naming the container, 'start'
    and `contains`; nothing changed."""
    snap = Snapshot(c)
    with pytest.raises(pc.ContainerSystemError) as ei:
        c.start(process)
    exc = ei.value
    assert isinstance(exc, OSError)
    assert exc.errno == err, (errno.errorcode.get(exc.errno), str(exc))
    assert exc.stage == stage, str(exc)
    msg = str(exc)
    assert c.id in msg and "start" in msg and stage in msg
    assert os.strerror(err) in msg
    for part in contains:
        assert part in msg, (part, msg)
    snap.check()
    return exc


@pytest.fixture
def box(factory, busybox_rootfs):
    c = factory.create("errbox", pc.Config(rootfs=busybox_rootfs, hostname="errbox"))
    yield c
    c.destroy()


@pytest.fixture
def running(box):
    pid, exits = box.start(pc.ProcessConfig(args=["sleep", "100"]))
    yield box, pid
    box.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


@pytest.fixture
def rootfs_copy(busybox_rootfs, tmp_path):
    dst = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dst, symlinks=True)
    return str(dst)


def bad_processes():
    """(name, ProcessConfig, errno, stage, words the message must hold)"""
    return [
        ("missing-program", pc.ProcessConfig(args=["/bin/nope"]), errno.ENOENT, "exec",
         ["/bin/nope"]),
        ("missing-program-on-path", pc.ProcessConfig(args=["nope-not-here"]), errno.ENOENT,
         "exec", ["nope-not-here"]),
        ("not-executable", pc.ProcessConfig(args=["/etc/passwd"]), errno.EACCES, "exec",
         ["/etc/passwd"]),
        ("directory", pc.ProcessConfig(args=["/etc"]), errno.EACCES, "exec", ["/etc"]),
        ("missing-cwd", pc.ProcessConfig(args=["/bin/true"], cwd="/does/not/exist"),
         errno.ENOENT, "cwd", ["/does/not/exist"]),
        ("cwd-is-a-file", pc.ProcessConfig(args=["/bin/true"], cwd="/etc/passwd"),
         errno.ENOTDIR, "cwd", ["/etc/passwd"]),
    ]


BAD = bad_processes()


# --- a failing first start (the init) ---------------------------------------------------

@pytest.mark.parametrize("name,process,err,stage,words", BAD, ids=[b[0] for b in BAD])
def test_failed_init_start(box, name, process, err, stage, words):
    start_fails(box, process, err=err, stage=stage, contains=words)
    assert box.run_state() == pc.RunState.CREATED
    # the same failure again: nothing stale from the first attempt
    start_fails(box, process, err=err, stage=stage, contains=words)
    # and a good start works, as the init
    assert sh_out(box, "echo $$ $(hostname)") == (0, "1 errbox\n")


@pytest.mark.parametrize("name,process,err,stage,words", BAD, ids=[b[0] for b in BAD])
def test_failed_join(running, name, process, err, stage, words):
    c, init_pid = running
    start_fails(c, process, err=err, stage=stage, contains=words)
    assert c.run_state() == pc.RunState.RUNNING
    assert c.processes() == [init_pid]
    status, out = sh_out(c, "echo $$ $(hostname)")
    assert status == 0 and out.split()[1] == "errbox" and out.split()[0] != "1"


def test_bad_stdio_fd_init(box):
    fd = closed_fd()
    snap = Snapshot(box)
    with pytest.raises((pc.ConfigInvalidError, pc.ContainerSystemError)) as ei:
        box.start(pc.ProcessConfig(args=["/bin/true"], stdout=fd))
    if isinstance(ei.value, pc.ContainerSystemError):
        assert ei.value.stage == "stdio" and ei.value.errno == errno.EBADF
    else:
        assert ei.value.field == "stdout"
    assert "errbox" in str(ei.value) and "start" in str(ei.value)
    snap.check()
    assert sh_out(box, "echo $$") == (0, "1\n")


def test_bad_stdio_fd_join(running):
    c, init_pid = running
    fd = closed_fd()
    snap = Snapshot(c)
    with pytest.raises((pc.ConfigInvalidError, pc.ContainerSystemError)) as ei:
        c.start(pc.ProcessConfig(args=["/bin/true"], stdin=fd))
    if isinstance(ei.value, pc.ContainerSystemError):
        assert ei.value.stage == "stdio" and ei.value.errno == errno.EBADF
    assert "errbox" in str(ei.value)
    snap.check()
    assert sh_out(c, "exit 0") == (0, "")


def test_start_with_a_non_process_config(box):
    snap = Snapshot(box)
    for bad in (None, ["/bin/true"], "/bin/true", pc.Config()):
        with pytest.raises(pc.ConfigInvalidError) as ei:
            box.start(bad)
        assert ei.value.field == "process"
        assert "errbox" in str(ei.value)
    snap.check()


def test_many_failures_leak_nothing(running):
    """A hundred failed joins: the descriptor table and the child list stay the same."""
    c, _ = running
    snap = Snapshot(c)
    for i in range(100):
        with pytest.raises(pc.ContainerSystemError):
            c.start(pc.ProcessConfig(args=["/bin/nope"]))
    snap.check()


# --- failures that come from the Config -------------------------------------------------

def test_bind_source_missing(factory, busybox_rootfs, tmp_path):
    c = factory.create("nobind", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/tmp", type="tmpfs"),
        pc.Mount("/data", str(tmp_path / "does-not-exist"))]))
    try:
        for _ in range(2):
            start_fails(c, pc.ProcessConfig(args=["/bin/true"]), err=errno.ENOENT,
                        stage="bind_source", contains=["/data"])
        assert c.run_state() == pc.RunState.CREATED
    finally:
        c.destroy()
    # the runtime did not create the missing source on the host
    assert not (tmp_path / "does-not-exist").exists()


def test_unknown_filesystem_type(factory, busybox_rootfs):
    c = factory.create("nofs", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/tmp", type="nosuchfs")]))
    try:
        start_fails(c, pc.ProcessConfig(args=["/bin/true"]), err=errno.ENODEV,
                    stage="mount", contains=["/tmp"])
        assert c.run_state() == pc.RunState.CREATED
    finally:
        c.destroy()


def test_bad_filesystem_options(factory, busybox_rootfs):
    c = factory.create("badopts", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/tmp", type="tmpfs", options=("size=lots",))]))
    try:
        start_fails(c, pc.ProcessConfig(args=["/bin/true"]), err=errno.EINVAL,
                    stage="mount", contains=["/tmp"])
    finally:
        c.destroy()


def test_readonly_rootfs_missing_mount_destination(factory, rootfs_copy):
    """The mount point is made before the root turns read-only (as runc does); a mount
    that fails there leaves nothing behind."""
    c = factory.create("romissing", pc.Config(rootfs=rootfs_copy, readonly_rootfs=True,
                                              mounts=[pc.Mount("/newdir", type="tmpfs")]))
    try:
        _, exits = c.start(pc.ProcessConfig(args=["sh", "-c", "touch /newdir/x && ! touch /x"]))
        assert exits.get(timeout=10) == 0
    finally:
        c.destroy()
    assert os.path.isdir(os.path.join(rootfs_copy, "newdir"))
    c = factory.create("romissing", pc.Config(rootfs=rootfs_copy, readonly_rootfs=True, mounts=[
        pc.Mount("/newdir2", type="tmpfs", options=("size=lots",))]))
    try:
        snap = Snapshot(c)
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.start(pc.ProcessConfig(args=["/bin/true"]))
        assert ei.value.stage == "mount"
        assert "/newdir2" in str(ei.value) and "romissing" in str(ei.value)
        snap.check()
        assert c.run_state() == pc.RunState.CREATED
    finally:
        c.destroy()


def test_rootfs_removed_after_create(factory, rootfs_copy):
    c = factory.create("vanished", pc.Config(rootfs=rootfs_copy))
    try:
        shutil.rmtree(rootfs_copy)
        snap = Snapshot(c)
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.start(pc.ProcessConfig(args=["/bin/true"]))
        assert ei.value.errno == errno.ENOENT
        assert ei.value.stage is not None
        assert "vanished" in str(ei.value) and "start" in str(ei.value)
        snap.check()
        assert c.run_state() == pc.RunState.CREATED
    finally:
        c.destroy()


def test_rootfs_gone_still_loads_lists_and_destroys(factory, rootfs_copy):
    """A container whose rootfs directory was removed is still the user's to look at and
    clean up: load, list and destroy work (a stored Config is not checked against the
    host again)."""
    c = factory.create("vanished", pc.Config(rootfs=rootfs_copy))
    shutil.rmtree(rootfs_copy)
    loaded = pc.Factory(root=factory.root).load("vanished")
    assert loaded.config == c.config
    assert loaded.run_state() == pc.RunState.CREATED
    assert factory.list() == ["vanished"] and factory.list_broken() == {}
    loaded.destroy()
    assert factory.list() == [] and not os.listdir(factory.root)


def test_cli_deletes_a_stopped_container_whose_rootfs_is_gone(factory, rootfs_copy):
    """The same through the runtime CLI: state and list report it, and `delete` removes
    it without --force."""
    c = factory.create("vanished", pc.Config(rootfs=rootfs_copy))
    _, exits = c.start(pc.ProcessConfig(args=["/bin/true"]))
    assert exits.get(timeout=10) == 0
    shutil.rmtree(rootfs_copy)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pycontainer", "--root", factory.root,
                               *args], capture_output=True, text=True, timeout=60)

    state = cli("state", "vanished")
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["status"] == "stopped"
    listed = cli("list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [e["id"] for e in json.loads(listed.stdout)] == ["vanished"]
    deleted = cli("delete", "vanished")
    assert deleted.returncode == 0, deleted.stderr
    assert factory.list() == [] and not os.listdir(factory.root)


def test_config_mount_failure_keeps_host_mounts(factory, busybox_rootfs):
    with open("/proc/self/mountinfo") as f:
        before = f.read()
    c = factory.create("mntfail", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/tmp", type="tmpfs"), pc.Mount("/data", type="nosuchfs")]))
    try:
        with pytest.raises(pc.ContainerSystemError) as ei:
            c.start(pc.ProcessConfig(args=["/bin/true"]))
        assert ei.value.stage == "mount" and "mounts[1]" in str(ei.value)
    finally:
        c.destroy()
    with open("/proc/self/mountinfo") as f:
        assert f.read() == before


# --- failures at create -----------------------------------------------------------------

def _cgroup_dirs_named(name):
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(dirpath) == name:
            found.append(dirpath)
        if dirpath.count("/") > 10:
            dirnames[:] = []
    return found


@pytest.mark.parametrize("resources,knob", [
    (pc.Resources(cpuset_cpus="999"), "cpuset.cpus"),
    (pc.Resources(cpuset_cpus="0-4095"), "cpuset.cpus"),
])
def test_create_with_resources_the_kernel_rejects(factory, busybox_rootfs, resources, knob):
    root = factory.root
    with pytest.raises(pc.ContainerSystemError) as ei:
        factory.create("rejected", pc.Config(rootfs=busybox_rootfs, resources=resources))
    exc = ei.value
    assert isinstance(exc, OSError) and exc.errno in (errno.EINVAL, errno.ERANGE)
    msg = str(exc)
    assert "rejected" in msg and "create" in msg and knob in msg
    assert not os.path.exists(os.path.join(root, "rejected"))
    assert factory.list() == []
    assert _cgroup_dirs_named("rejected") == []
    with pytest.raises(pc.ContainerNotExistError):
        factory.load("rejected")
    # the id is free again
    c = factory.create("rejected", pc.Config(rootfs=busybox_rootfs))
    c.destroy()


def test_create_with_a_non_config(factory):
    root = factory.root
    for bad in (None, {"rootfs": None}, "config", pc.ProcessConfig(args=["x"])):
        with pytest.raises(pc.ConfigInvalidError) as ei:
            factory.create("notconfig", bad)
        assert ei.value.field == "config"
        assert "notconfig" in str(ei.value)
    assert not os.path.exists(root)
    assert _cgroup_dirs_named("notconfig") == []


def test_create_with_an_invalid_id(factory, busybox_rootfs):
    for bad in ("../escape", "a/b", ".hidden", ""):
        with pytest.raises(pc.InvalidIdError):
            factory.create(bad, pc.Config(rootfs=busybox_rootfs))
    assert not os.path.exists(factory.root) or os.listdir(factory.root) == []
    assert not os.path.exists(os.path.join(os.path.dirname(factory.root), "escape"))


def test_id_in_use_keeps_the_existing_container(factory, busybox_rootfs):
    c = factory.create("taken", pc.Config(rootfs=busybox_rootfs, hostname="first"))
    try:
        pid, exits = c.start(pc.ProcessConfig(args=["sleep", "100"]))
        with pytest.raises(pc.IdInUseError) as ei:
            factory.create("taken", pc.Config(rootfs=busybox_rootfs, hostname="second"))
        assert "taken" in str(ei.value) and "create" in str(ei.value)
        assert c.run_state() == pc.RunState.RUNNING
        assert c.processes() == [pid]
        assert factory.load("taken").config.hostname == "first"
    finally:
        c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL

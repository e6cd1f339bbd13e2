"""Shared fixtures: a busybox rootfs, a Factory on a private root, and a guard that fails
any test leaving a process, cgroup, state directory or descriptor behind."""
import os
import shutil
import subprocess

import pytest

from helpers import (cgroup_dirs, isolate_cgroups, library_fds, open_fds,  # tests/helpers.py
                     processes_in_cgroups, restore_cgroups, settle)

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def pytest_configure(config):
    # This run's containers go below a cgroup of its own (see helpers.isolate_cgroups),
    # so the leak checks see them and not another test run's on the same machine.
    isolate_cgroups()


def pytest_unconfigure(config):
    restore_cgroups()


def needs_root():
    if os.geteuid() != 0:
        if os.environ.get("PYCONTAINER_REQUIRE_ROOT"):
            pytest.fail("integration tests need root (PYCONTAINER_REQUIRE_ROOT is set)")
        pytest.skip("needs root")


@pytest.fixture
def root():
    """For tests that run as root but need no Factory of their own (the CLI's)."""
    needs_root()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """A rootfs of Debian's busybox-static: /bin/<applet> -> busybox, as `--install -s`."""
    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox-static is not installed (apt-get install -y busybox-static)")
    root = tmp_path_factory.mktemp("busybox-rootfs")
    os.chmod(root, 0o755)     # pytest's temp dirs are 0700: other users in it need x
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc", "root", "run", "data"):
        (root / d).mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return str(root)


def _new_fds(before):
    # Kept for the life of the process by design, not leaks: the exit watcher's epoll set
    # and library_fds().
    kept = library_fds()
    return sorted({(fd, t) for fd, t in open_fds()
                   if "[eventpoll]" not in t and fd not in kept} - before)


@pytest.fixture
def leak_check():
    """Fails the test if it leaves a container process, cgroup or descriptor behind. Only
    this run's containers are looked at (helpers.isolate_cgroups), and only what appeared
    during the test counts."""
    before_fds = open_fds()
    before_procs = set(processes_in_cgroups([""]))
    before_cgs = set(cgroup_dirs([""]))
    yield
    procs = settle(lambda: sorted(set(processes_in_cgroups([""])) - before_procs))
    cgs = settle(lambda: sorted(set(cgroup_dirs([""])) - before_cgs))
    new_fds = settle(lambda: _new_fds(before_fds), 2.0)
    problems = []
    if procs:
        problems.append(f"processes in pycontainer cgroups: {procs}")
    if cgs:
        problems.append(f"cgroup directories: {cgs}")
    if new_fds:
        problems.append(f"descriptors: {new_fds}")
    if problems:
        pytest.fail("left behind: " + "; ".join(problems))


@pytest.fixture
def factory(tmp_path, leak_check):
    """A Factory on a private root; every container it holds is destroyed at teardown,
    and the test fails if a state directory was left behind by the test itself."""
    needs_root()
    import pycontainer as pc
    f = pc.Factory(root=str(tmp_path / "run"))
    yield f
    leftovers = f.list()
    for cid in leftovers:
        # Factory.destroy, not load().destroy(): a test that failed half-way may leave an
        # entry it damaged on purpose, which only the Factory can still remove (with its
        # cgroups, which create named so that a damaged record cannot hide them).
        try:
            f.destroy(cid)
        except Exception as exc:
            pytest.fail(f"test left container {cid!r} behind, and destroying it failed: {exc}")
    if leftovers:
        pytest.fail(f"test left containers behind: {leftovers}")

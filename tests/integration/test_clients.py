"""pycontainer as the OCI runtime of real clients: podman (through conmon) and containerd
(through ctr and containerd-shim-runc-v2), both from Debian, driving the command line as
they drive runc. Each test keeps everything in its own temporary directories: podman's
storage, containerd's root, state and socket, and our runtime's state; the runtime is a
wrapper script that runs `python -m pycontainer --nest-cgroups`, so the clients' absolute
cgroupsPaths (/libpod_parent/..., /default/...) land below this process's own cgroup.

Notes for this host: root's bounding set lacks CAP_SYS_RESOURCE, so podman needs its
rlimits at most the current hard limits (--ulimit); conmon is kept out of a cgroup of its
own (--cgroups=no-conmon), which podman would otherwise make at the hierarchy root."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from pycontainer.cgroups import host

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def needs_tool(name):
    path = shutil.which(name)
    if path is None:
        if os.environ.get("PYCONTAINER_REQUIRE_ROOT"):
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def run(argv, rc=0, timeout=120, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if rc is not None:
        assert p.returncode == rc, (argv, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def runtime(tmp_path, root):
    """The runtime binary the clients are given: our CLI with its own state root."""
    state = tmp_path / "pycontainer-state"
    path = tmp_path / "pycontainer-runtime"
    path.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m pycontainer "
                    f"--root {state} --nest-cgroups \"$@\"\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def cgroup_parents():
    """Every cgroup dir a client's container made beyond the container's own (the parents
    of its cgroupsPath; --nest-cgroups mirrors our deepest own cgroup into hierarchies
    where we sit at the root) is removed afterwards: the test fails on any it cannot."""
    before = set(_cgroup_dirs())
    yield
    made = sorted(set(_cgroup_dirs()) - before, key=len, reverse=True)
    left = []
    for d in made:
        try:
            os.rmdir(d)
        except OSError:
            left.append(d)
    assert not left, f"cgroups left behind: {left}"


def _cgroup_dirs():
    # Only below our own (deepest) cgroup, where --nest-cgroups puts what a client asks
    # for: other processes' cgroups elsewhere on the machine are neither ours to count
    # nor ours to remove.
    mine = f"pytest-{os.getpid()}"
    own = host.nested_parent("") or ""
    for base in os.listdir("/sys/fs/cgroup"):
        top = os.path.join("/sys/fs/cgroup", base, own.strip("/"))
        for dirpath, dirnames, _ in os.walk(top):
            # Other test runs' cgroups are not ours (helpers.isolate_cgroups)
            dirnames[:] = [d for d in dirnames if not d.startswith("pytest-") or d == mine]
            if "/pycontainer" not in dirpath:       # the library's own, checked elsewhere
                yield dirpath


def busybox_tar(rootfs, path):
    with tarfile.open(path, "w") as tar:
        tar.add(rootfs, arcname=".")
    return str(path)


# --- podman -----------------------------------------------------------------------------

# What podman makes outside the directories it is given (its auth file's directory, the
# image library's blob-info cache): removed afterwards when they are new.
PODMAN_DEFAULT_DIRS = ("/run/containers", "/var/lib/containers")


@pytest.fixture
def short_dir():
    """podman refuses a runroot longer than 50 characters: pytest's are longer."""
    import tempfile
    existed = {d for d in PODMAN_DEFAULT_DIRS if os.path.exists(d)}
    d = tempfile.mkdtemp(prefix="pcp-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)
    for default in PODMAN_DEFAULT_DIRS:
        if default not in existed:
            shutil.rmtree(default, ignore_errors=True)


def test_podman_lifecycle(runtime, busybox_rootfs, tmp_path, short_dir, cgroup_parents):
    podman = needs_tool("podman")
    P = [podman, "--root", str(tmp_path / "storage"), "--runroot", short_dir,
         "--tmpdir", str(tmp_path / "libpod-tmp"),
         "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
         "--runtime", runtime]
    U = ["--cgroups=no-conmon", "--network", "none", "--ulimit", "nofile=20000:20000",
         "--ulimit", "nproc=32768:32768"]
    image = "localhost/pycontainer-busybox:test"
    try:
        run(P + ["import", busybox_tar(busybox_rootfs, tmp_path / "bb.tar"), image])
        assert run(P + ["run", "--rm", *U, image, "echo", "hi"]).stdout == "hi\n"
        run(P + ["run", "--rm", *U, image, "sh", "-c", "exit 7"], rc=7)

        run(P + ["run", "-d", "--name", "t1", *U, image, "sleep", "1000"])
        p = run(P + ["exec", "t1", "sh", "-c", "echo in-exec; exit 5"], rc=5)
        assert p.stdout == "in-exec\n"
        assert run(P + ["exec", "-t", "t1", "tty"]).stdout.strip() == "/dev/pts/0"
        run(P + ["pause", "t1"])
        assert run(P + ["inspect", "-f", "{{.State.Status}}", "t1"]).stdout.strip() == "paused"
        run(P + ["unpause", "t1"])
        assert run(P + ["inspect", "-f", "{{.State.Status}}", "t1"]).stdout.strip() == "running"
        stats = json.loads(run(P + ["stats", "--no-stream", "--format", "json", "t1"]).stdout)
        assert stats[0]["name"] == "t1" and stats[0]["pids"] == "1", stats
        pid = int(run(P + ["inspect", "-f", "{{.State.Pid}}", "t1"]).stdout)
        run(P + ["kill", "t1"])                              # SIGKILL, as podman's default
        assert run(P + ["wait", "t1"]).stdout.strip() == "137"
        assert not os.path.exists(f"/proc/{pid}")
        run(P + ["rm", "-f", "t1"])

        run(P + ["run", "-d", "--name", "t2", *U, image, "sleep", "1000"])
        run(P + ["stop", "-t", "1", "t2"])      # sleep as pid 1 ignores SIGTERM: then KILL
        assert run(P + ["inspect", "-f", "{{.State.Status}}", "t2"]).stdout.strip() == "exited"
        run(P + ["rm", "-f", "t2"])
        assert os.listdir(tmp_path / "pycontainer-state") == []
    finally:
        run(P + ["rm", "-a", "-f", "-t", "0"], rc=None)
        run(P + ["rmi", "-a", "-f"], rc=None)


# --- containerd -------------------------------------------------------------------------

# What ctr and the shim make under /run/containerd whatever the daemon's state dir (the
# shim's runc root, stdio fifos, shim sockets): removed afterwards when empty and new.
RUN_DIRS = ("/run/containerd/runc/default", "/run/containerd/runc", "/run/containerd/fifo",
            "/run/containerd/s", "/run/containerd")


@pytest.fixture
def containerd(tmp_path, root):
    daemon = needs_tool("containerd")
    ctr = needs_tool("ctr")
    existed = {d for d in RUN_DIRS if os.path.isdir(d)}
    sock = tmp_path / "containerd.sock"
    config = tmp_path / "containerd.toml"
    config.write_text(f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
                      'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                      f'[grpc]\n  address = "{sock}"\n'
                      f'[ttrpc]\n  address = "{sock}.ttrpc"\n')
    log = open(tmp_path / "containerd.log", "w")
    proc = subprocess.Popen([daemon, "--config", str(config)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while run([ctr, "--address", str(sock), "version"], rc=None).returncode != 0:
        assert proc.poll() is None, (tmp_path / "containerd.log").read_text()
        assert time.monotonic() < deadline, "containerd did not come up"
        time.sleep(0.1)
    try:
        yield [ctr, "--address", str(sock)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
        # Shims outlive the daemon while they hold tasks: none should be left.
        shims = [p for p in os.listdir("/proc") if p.isdigit() and
                 str(sock).encode() in _cmdline(p)]
        for p in shims:
            os.kill(int(p), signal.SIGKILL)
        for d in RUN_DIRS:
            if d not in existed:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        assert not shims, f"containerd shims left running: {shims}"


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_containerd_lifecycle(containerd, runtime, busybox_rootfs, tmp_path, cgroup_parents):
    C = containerd
    R = ["--runc-binary", runtime, "--rootfs", busybox_rootfs]
    try:
        assert run(C + ["run", "--rm", *R, "r1", "echo", "hi"]).stdout == "hi\n"
        run(C + ["run", "--rm", *R, "r2", "sh", "-c", "exit 9"], rc=9)

        run(C + ["run", "-d", *R, "r3", "sleep", "1000"])
        p = run(C + ["task", "exec", "--exec-id", "e1", "r3", "sh", "-c", "echo in-exec; exit 5"],
                rc=5)
        assert p.stdout == "in-exec\n"
        run(C + ["task", "pause", "r3"])
        assert "PAUSED" in run(C + ["task", "ls"]).stdout
        run(C + ["task", "resume", "r3"])
        assert "RUNNING" in run(C + ["task", "ls"]).stdout
        metrics = run(C + ["task", "metrics", "r3"]).stdout
        assert "pids.current" in metrics and "memory.usage_in_bytes" in metrics, metrics
        pid = int(run(C + ["task", "ps", "r3"]).stdout.split()[2])
        run(C + ["task", "kill", "-s", "SIGKILL", "r3"])
        deadline = time.monotonic() + 10
        while "STOPPED" not in run(C + ["task", "ls"]).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}")
        run(C + ["task", "rm", "r3"])
        run(C + ["container", "rm", "r3"])
        assert run(C + ["container", "ls", "-q"]).stdout == ""
    finally:
        for cid in ("r1", "r2", "r3"):
            run(C + ["task", "rm", "-f", cid], rc=None)
            run(C + ["container", "rm", cid], rc=None)

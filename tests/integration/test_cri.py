"""pycontainer under Kubernetes' container runtime interface: a private containerd with
its CRI plugin (tests/cri/testbed.py) runs pods through two runtime handlers, `runc`
(the reference) and `pycontainer`, driven by our own CRI client (tests/cri/client.py),
as the kubelet drives a node. One pod per handler keeps it short; critest, the full CRI
validation suite, is run by hand (docs/kubernetes.md)."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "cri"))
import images  # noqa: E402  (tests/cri)
from testbed import CNI_BIN, TestBed  # noqa: E402

if os.environ.get("PYCONTAINER_REQUIRE_ROOT"):
    import grpc  # noqa: F401  (CI installs it with the test extras: never a silent skip)
else:
    grpc = pytest.importorskip("grpc")

HANDLERS = ("runc", "pycontainer")


def _needs(tool, path=None):
    if not (os.path.exists(path) if path else shutil.which(tool)):
        if os.environ.get("PYCONTAINER_REQUIRE_ROOT"):
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def bed():
    if os.geteuid() != 0:
        if os.environ.get("PYCONTAINER_REQUIRE_ROOT"):
            pytest.fail("the CRI tests need root")
        pytest.skip("needs root")
    for tool in ("containerd", "ctr", "runc", "gcc"):
        _needs(tool)
    _needs("containernetworking-plugins", os.path.join(CNI_BIN, "bridge"))
    testbed = TestBed().start()
    yield testbed
    forced = testbed.stop()
    assert not forced, f"the test bed had to remove these by force: {forced}"


def _container(name, image, command, **extra):
    config = {"metadata": {"name": name}, "image": {"image": image}, "command": command,
              "log_path": f"{name}.log"}
    config.update(extra)
    return config


def _state(client, cid):
    from client import CONTAINER_STATE
    status = client.ContainerStatus(container_id=cid)["status"]
    return CONTAINER_STATE[status.get("state", 0)], status


def test_version(bed):
    v = bed.client.Version(version="v1")
    assert v["runtime_name"] == "containerd" and v["runtime_api_version"] == "v1", v


@pytest.mark.parametrize("handler", HANDLERS)
def test_pod_lifecycle(bed, handler):
    """A pod whose sandbox image (pause) has no /etc (containerd makes the sandbox's root
    read-only and binds /etc/hosts, /etc/hostname, /etc/resolv.conf into it), a
    read-only-root container from an image without /etc, ExecSync, the container's log,
    stop (SIGKILL after the grace period: sleep as pid 1 ignores SIGTERM), remove."""
    from client import SANDBOX_STATE
    c = bed.client
    pod_config = bed.pod_config(f"life-{handler}")
    pod = c.RunPodSandbox(config=pod_config, runtime_handler=handler)["pod_sandbox_id"]
    try:
        status = c.PodSandboxStatus(pod_sandbox_id=pod)["status"]
        assert SANDBOX_STATE[status.get("state", 0)] == "READY"
        assert status["runtime_handler"] == handler

        ro = c.CreateContainer(pod_sandbox_id=pod, sandbox_config=pod_config, config=_container(
            "ro", images.NOETC_IMAGE, ["sleep", "1000"],
            linux={"security_context": {"readonly_rootfs": True}}))["container_id"]
        c.StartContainer(container_id=ro)
        assert _state(c, ro)[0] == "RUNNING"

        r = c.ExecSync(container_id=ro, cmd=["cat", "/etc/hostname"], timeout=30)
        assert r.get("exit_code", 0) == 0 and r["stdout"] == f"life-{handler}\n".encode(), r
        r = c.ExecSync(container_id=ro, cmd=["sh", "-c", "touch /x; echo oops >&2; exit 3"],
                       timeout=30)
        assert r["exit_code"] == 3, r
        assert b"Read-only file system" in r["stderr"] and not r.get("stdout"), r

        out = c.CreateContainer(pod_sandbox_id=pod, sandbox_config=pod_config, config=_container(
            "out", images.BUSYBOX_IMAGE, ["sh", "-c", "echo to-the-log; exit 4"]))["container_id"]
        c.StartContainer(container_id=out)
        state, status = _wait_exited(c, out)
        assert status.get("exit_code") == 4, status
        with open(status["log_path"]) as f:
            assert f.read().split(" ", 3)[1:] == ["stdout", "F", "to-the-log\n"]

        c.StopContainer(container_id=ro, timeout=1)
        state, status = _state(c, ro)
        assert state == "EXITED" and status.get("exit_code") == 137, status
        for cid in (ro, out):
            c.RemoveContainer(container_id=cid)
    finally:
        c.StopPodSandbox(pod_sandbox_id=pod)
        c.RemovePodSandbox(pod_sandbox_id=pod)
    assert bed.ctr("containers", "ls", "-q") == ""


def _wait_exited(c, cid):
    """ContainerStatus until the container has exited (its exit is an event containerd
    reports; this polls the status as the kubelet does)."""
    import time
    from helpers import load_factor
    deadline = time.monotonic() + 30 * load_factor()
    while True:
        state, status = _state(c, cid)
        if state == "EXITED" or time.monotonic() > deadline:
            assert state == "EXITED", status
            return state, status
        time.sleep(0.02)


@pytest.mark.parametrize("handler", HANDLERS)
def test_runtime_error_reaches_containerd(bed, handler):
    """A container whose program does not exist: the runtime's own error text (not
    "unable to retrieve OCI runtime error") is what CRI's caller gets."""
    c = bed.client
    pod_config = bed.pod_config(f"err-{handler}")
    pod = c.RunPodSandbox(config=pod_config, runtime_handler=handler)["pod_sandbox_id"]
    try:
        with pytest.raises(grpc.RpcError) as failed:
            cid = c.CreateContainer(pod_sandbox_id=pod, sandbox_config=pod_config,
                                    config=_container("bad", images.BUSYBOX_IMAGE,
                                                      ["/no-such-program"]))["container_id"]
            c.StartContainer(container_id=cid)
        message = failed.value.details()
        assert "unable to retrieve OCI runtime error" not in message, message
        if handler == "pycontainer":
            assert "ENOENT" in message and "exec" in message, message
        else:
            assert "/no-such-program" in message, message
    finally:
        c.StopPodSandbox(pod_sandbox_id=pod)
        c.RemovePodSandbox(pod_sandbox_id=pod)
    assert bed.ctr("containers", "ls", "-q") == ""


@pytest.fixture
def shared_volume(tmp_path):
    """A tmpfs made shared in a scratch directory (this host's own mounts are left as they
    are), with a mount below it made before the pod: the host side of a volume with
    propagation. Everything below it is unmounted afterwards, whatever happened."""
    import subprocess
    vol = tmp_path / "vol"
    vol.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "pcri-vol", str(vol)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(vol)], check=True)
        (vol / "pre").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "pcri-pre", str(vol / "pre")], check=True)
        (vol / "pre" / "f").write_text("before the pod\n")
        yield vol
    finally:
        subprocess.run(["umount", "-R", str(vol)], check=True)


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[line.split().index("-") + 2] for line in f
                if line.split()[4] == str(path)]


@pytest.mark.parametrize("handler", HANDLERS)
@pytest.mark.parametrize("propagation", ["BIDIRECTIONAL", "HOST_TO_CONTAINER"])
def test_volume_mount_propagation(bed, handler, propagation, shared_volume):
    """critest's "mount with 'rshared' propagation" and "'rslave'" specs: containerd asks
    for rootfsPropagation rshared (rslave) and an rshared (rslave) bind of the volume. The
    host's mounts below it reach the container, before and after its start; what the
    container mounts there reaches the host only for Bidirectional."""
    import subprocess
    c = bed.client
    vol = shared_volume
    privileged = {"security_context": {"privileged": True}}
    pod_config = bed.pod_config(f"prop-{handler}-{propagation[:4].lower()}", linux=privileged)
    pod = c.RunPodSandbox(config=pod_config, runtime_handler=handler)["pod_sandbox_id"]
    try:
        cid = c.CreateContainer(pod_sandbox_id=pod, sandbox_config=pod_config, config=_container(
            "vol", images.BUSYBOX_IMAGE, ["sleep", "1000"], linux=privileged,
            mounts=[{"container_path": "/vol", "host_path": str(vol),
                     "propagation": {"HOST_TO_CONTAINER": 1, "BIDIRECTIONAL": 2}[propagation]}]
        ))["container_id"]
        c.StartContainer(container_id=cid)

        def sh(script):
            r = c.ExecSync(container_id=cid, cmd=["sh", "-c", script], timeout=30)
            assert r.get("exit_code", 0) == 0, r
            return r.get("stdout", b"").decode()
        assert sh("cat /vol/pre/f") == "before the pod\n"
        sh("mkdir /vol/out && mount -t tmpfs pcri-out /vol/out && echo made > /vol/out/f")
        if propagation == "BIDIRECTIONAL":
            assert _mounted(vol / "out") == ["pcri-out"]
            assert (vol / "out" / "f").read_text() == "made\n"
        else:
            assert _mounted(vol / "out") == []
        (vol / "later").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "pcri-later", str(vol / "later")], check=True)
        (vol / "later" / "f").write_text("after the start\n")
        assert sh("cat /vol/later/f") == "after the start\n"
        c.StopContainer(container_id=cid, timeout=1)
        c.RemoveContainer(container_id=cid)
    finally:
        c.StopPodSandbox(pod_sandbox_id=pod)
        c.RemovePodSandbox(pod_sandbox_id=pod)
    # The pod's end unmounted nothing of the host's.
    assert _mounted(vol / "pre") == ["pcri-pre"] and _mounted(vol / "later") == ["pcri-later"]
    assert bed.ctr("containers", "ls", "-q") == ""


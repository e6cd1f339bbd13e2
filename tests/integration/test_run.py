"""pc.run against subprocess.run on the same inputs: the busybox rootfs, and the same
busybox on the host for subprocess."""
import asyncio
import shutil
import subprocess

import pytest

import pycontainer as pc

# Not `from conftest import ...`: with tests/integration and tests/reliability collected
# together, which conftest that name finds depends on the order.
BUSYBOX = shutil.which("busybox") or "/bin/busybox"

CASES = [
    (["sh", "-c", "echo out; echo err >&2; exit 3"], dict(capture_output=True)),
    (["sh", "-c", "echo out; echo err >&2"], dict(capture_output=True, text=True)),
    (["sh", "-c", "cat; exit 1"], dict(input=b"data", stdout=subprocess.PIPE)),
    (["sh", "-c", "echo a >&2"], dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)),
    # (a child: the init, pid 1 of its namespace, ignores its own SIGKILL)
    (["sh", "-c", "sh -c 'kill -9 $$'; echo $?"], dict(capture_output=True)),
    (["sh", "-c", "head -c 1500000 /dev/zero; head -c 900000 /dev/zero >&2"],
     dict(capture_output=True)),
]


@pytest.fixture
def cfg(factory, busybox_rootfs):
    return dict(config=pc.Config(rootfs=busybox_rootfs), factory=factory)


def host(args, **kw):
    return subprocess.run([BUSYBOX, *args], **kw)


@pytest.mark.parametrize("args,kw", CASES)
def test_run_matches_subprocess(cfg, args, kw):
    ours, theirs = pc.run(args, **kw, **cfg), host(args, **kw)
    assert isinstance(ours, subprocess.CompletedProcess)
    assert (ours.returncode, ours.stdout, ours.stderr) == \
        (theirs.returncode, theirs.stdout, theirs.stderr)
    assert not ours.oom_killed and not ours.timed_out and ours.stats.cpu_time >= 0


def test_timeout_like_subprocess_and_container_gone(cfg, factory):
    args = ["sh", "-c", "echo early; sleep 100 & sleep 100"]
    with pytest.raises(subprocess.TimeoutExpired) as theirs:
        host(args, capture_output=True, timeout=0.5)
    with pytest.raises(subprocess.TimeoutExpired) as ours:
        pc.run(args, capture_output=True, timeout=0.5, **cfg)
    assert (ours.value.output, ours.value.timeout) == (theirs.value.output, 0.5)
    assert ours.value.result.timed_out and ours.value.result.returncode == -9
    assert factory.list() == []


def test_check_like_subprocess(cfg):
    with pytest.raises(subprocess.CalledProcessError) as theirs:
        host(["sh", "-c", "echo o; exit 5"], capture_output=True, check=True)
    with pytest.raises(subprocess.CalledProcessError) as ours:
        pc.run(["sh", "-c", "echo o; exit 5"], capture_output=True, check=True, **cfg)
    assert (ours.value.returncode, ours.value.output) == (5, theirs.value.output)


def test_oom_kill_told_from_timeout(cfg):
    r = pc.run(["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
               capture_output=True, timeout=60,
               config=pc.Config(rootfs=cfg["config"].rootfs, resources=pc.Resources(
                   memory_limit=16 << 20, memory_swap=16 << 20)), factory=cfg["factory"])
    assert r.oom_killed and not r.timed_out and r.stats.oom_kills >= 1
    assert r.stats.memory_peak >= 8 << 20


def test_nothing_left_after_keyboard_interrupt(cfg, factory):
    proc = {}

    def interrupt(*a):
        raise KeyboardInterrupt
    import signal
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            pc.run(["sleep", "100"], **cfg)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert factory.list() == [] and not proc


def test_run_async(cfg):
    async def main():
        rs = await asyncio.gather(*(pc.run_async(["sh", "-c", f"cat; exit {i}"], input="x",
                                                 capture_output=True, text=True, **cfg)
                                    for i in range(5)))
        assert [(r.returncode, r.stdout) for r in rs] == [(i, "x") for i in range(5)]
        with pytest.raises(subprocess.TimeoutExpired) as ei:
            await pc.run_async(["sh", "-c", "echo e; sleep 100"], capture_output=True,
                               timeout=0.5, **cfg)
        assert ei.value.output == b"e\n" and ei.value.result.timed_out
    asyncio.run(main())


def test_default_is_the_host_read_only(factory):
    r = pc.run(["sh", "-c", "touch /etc/x 2>&1; touch /tmp/y && echo tmp ok"],
               capture_output=True, text=True, factory=factory)
    assert "Read-only file system" in r.stdout and "tmp ok" in r.stdout


def test_memory_limit_too_small_to_start_says_so(cfg):
    with pytest.raises(pc.ContainerSystemError) as ei:
        pc.run(["sh", "-c", "echo $((1+2))"], capture_output=True, factory=cfg["factory"],
               config=pc.Config(rootfs=cfg["config"].rootfs,
                                resources=pc.Resources(memory_limit=16384)))
    assert "could not start under the memory limit of 16384 bytes" in str(ei.value)
    assert cfg["factory"].list() == []


def test_run_on_an_image_writes_into_its_own_layer(factory, tmp_path):
    from image_helpers import busybox_layer, layer_tar, oci_blobs, write_tar
    config = {"Env": ["PATH=/bin", "GREETING=hi"], "WorkingDir": "/"}
    archive = write_tar(tmp_path / "busybox.tar", oci_blobs([layer_tar(busybox_layer())],
                                                            config))
    image = pc.Image.from_archive(archive, root=factory.root)
    script = "cat /note 2>/dev/null; echo $GREETING > /note; cat /note"
    for _ in range(2):              # the second run does not see the first one's write
        r = pc.run(["sh", "-c", script], image=image, capture_output=True, text=True,
                   factory=factory)
        assert (r.returncode, r.stdout) == (0, "hi\n")
    assert factory.list() == []

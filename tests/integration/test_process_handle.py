"""ProcessConfig as subprocess takes it (PIPE, DEVNULL, STDOUT, env mappings, path-like
cwd, user names from the container's /etc/passwd) and StartedProcess as a Popen."""
import asyncio
import pathlib
import signal
import subprocess

import pytest

import pycontainer as pc


def P(*args, **kw):
    return pc.ProcessConfig(args=list(args), **kw)


@pytest.fixture
def box(factory, busybox_rootfs):
    c = factory.create("ph", pc.Config(rootfs=pathlib.Path(busybox_rootfs)))
    yield c
    c.destroy()


def test_pipes_communicate_and_status_kept(box):
    p = box.start(P("sh", "-c", "cat; echo err >&2; exit 3", stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert p.communicate(b"hello") == (b"hello", b"err\n")
    assert p.returncode == 3 and p.poll() == 3 and p.wait() == 3
    assert p.exits.get(timeout=10) == 3          # the queue still gets it
    assert p.wait() == 3                          # ... and the handle keeps it


def test_stderr_to_stdout_text_env_mapping_cwd_pathlike(box):
    p = box.start(P("sh", "-c", "echo $A; echo e >&2; pwd", stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, env={"A": "x y"}, cwd=pathlib.Path("/tmp"),
                    text=True))
    assert p.communicate() == ("x y\ne\n/tmp\n", None)


def test_devnull_and_large_output_both_pipes(box):
    script = "head -c 3000000 /dev/zero; head -c 2000000 /dev/zero >&2"
    p = box.start(P("sh", "-c", script, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE))
    out, err = p.communicate(timeout=30)
    assert (len(out), len(err), p.returncode) == (3000000, 2000000, 0)


def test_wait_timeout_then_kill(box):
    p = box.start(P("sleep", "100"))
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.05)
    assert p.poll() is None                       # still running
    p.kill()
    assert p.wait(timeout=10) == -signal.SIGKILL
    p.kill()                                      # after the exit: nothing, as Popen
    assert p.returncode == -signal.SIGKILL


def test_communicate_timeout_keeps_output_and_resumes(box):
    p = box.start(P("sh", "-c", "echo early; sleep 100", stdout=subprocess.PIPE))
    with pytest.raises(subprocess.TimeoutExpired) as ei:
        p.communicate(timeout=0.5)
    assert ei.value.output == b"early\n"
    p.kill()          # (an init ignores SIGTERM without a handler: pid 1 of its namespace)
    assert p.communicate(timeout=10) == (b"early\n", None)
    assert p.returncode == -signal.SIGKILL


def test_user_names_from_the_containers_passwd(box):
    p = box.start(P("id", user="nobody:nogroup", stdout=subprocess.PIPE))
    out, _ = p.communicate(timeout=10)
    assert out.startswith(b"uid=65534(nobody) gid=65534(nogroup)")
    p = box.start(P("id", "-g", user="nobody", stdout=subprocess.PIPE))
    assert p.communicate(timeout=10)[0] == b"65534\n"     # the user's primary group


def test_unknown_user_name_is_refused_before_anything_runs(box):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        box.start(P("id", user="nosuchuser", stdout=subprocess.PIPE))
    assert "no such user" in str(ei.value) and "etc/passwd" in str(ei.value)
    assert box.run_state() == pc.RunState.CREATED


def test_start_async_pipes(box):
    async def main():
        p = await box.start_async(P("sh", "-c", "echo hi; exit 4", stdout=subprocess.PIPE))
        assert await p.wait_async(10) == 4
        assert p.stdout.read() == b"hi\n"
        p.stdout.close()
    asyncio.run(main())


def test_create_stats_destroy_async(factory, busybox_rootfs):
    async def main():
        c = await factory.create_async("asyncbox", pc.Config(rootfs=busybox_rootfs))
        p = await c.start_async(P("sh", "-c", "echo hi", stdout=subprocess.PIPE))
        assert await p.communicate_async() == (b"hi\n", None)
        stats = await c.stats_async()
        assert stats.cgroup_stats.cpu_stats.cpu_usage.total_usage > 0
        await c.destroy_async()
        assert factory.list() == []
        # A create whose task is cancelled while it runs is undone.
        task = asyncio.ensure_future(factory.create_async("cancelled",
                                                          pc.Config(rootfs=busybox_rootfs)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await factory.create_async("after", pc.Config(rootfs=busybox_rootfs))  # same worker:
        assert factory.list() == ["after"]                   # the undo ran before it
        await factory.load("after").destroy_async()
    asyncio.run(main())

"""A user's program using every public name of pycontainer, as the README shows them:
`mypy --strict` must pass on it (tests/unit/test_typing.py). Type-checked, never run."""
from __future__ import annotations

import asyncio
import signal
import subprocess

import pycontainer as pc


def main() -> None:
    factory: pc.Factory = pc.Factory()
    config = pc.Config(
        rootfs="/srv/busybox", hostname="box1",
        resources=pc.Resources(memory_limit=64 << 20, pids_limit=64),
        mounts=[pc.Mount("/data", source="/srv/data", options=["ro"]),
                pc.Mount("/tmp", type="tmpfs", options=["size=16m"])],
        networks=[pc.Network(type="loopback")])
    with factory.create("box1", config) as c:
        assert isinstance(c, pc.Container)
        p: pc.StartedProcess = c.start(pc.ProcessConfig(
            args=["/bin/sh", "-c", "echo hi"], stdout=subprocess.PIPE, env={"A": "b"},
            user="nobody", text=True))
        out, err = p.communicate(timeout=5)
        code: int = p.wait(timeout=1)
        maybe: int | None = p.poll()
        p.send_signal(signal.SIGTERM)
        p.kill()
        pid, exits = c.start(pc.ProcessConfig(args=["sleep", "1"]))
        state: pc.RunState = c.run_state()
        pids: list[int] = c.processes()
        stats: pc.ContainerStats = c.stats()
        events: list[pc.Event] = []
        c.pause()
        c.resume()
        c.signal(signal.SIGKILL, all=True)
        print(out, err, code, maybe, pid, exits, state, pids, stats, events)
    ids: list[str] = factory.list()
    broken: dict[str, str] = factory.list_broken()
    factory.destroy("box1")
    r: pc.CompletedContainer = pc.run(["echo", "hi"], capture_output=True, text=True,
                                      timeout=5, check=True)
    s: pc.RunStats = r.stats
    print(ids, broken, r.stdout, r.oom_killed, r.timed_out, s.memory_peak, s.cpu_time)
    errors: tuple[type[pc.ContainerError], ...] = (
        pc.ConfigInvalidError, pc.ContainerNotExistError, pc.ContainerNotRunningError,
        pc.ContainerNotStoppedError, pc.ContainerPausedError, pc.ContainerSystemError,
        pc.IdInUseError, pc.InvalidIdError, pc.StateInvalidError)
    print(errors)


def images_and_pools(pool: pc.Pool, pool_stats: pc.PoolStats) -> None:
    try:
        image = pc.Image.from_archive("busybox.tar")
    except pc.ImageError as exc:
        print(exc)
        return
    r = pc.run(["cat", "/etc/os-release"], image=image, capture_output=True)
    print(r.stdout, pool, pool_stats)


async def amain() -> None:
    r = await pc.run_async(["echo"], capture_output=True)
    c = pc.Factory().load("box1")
    p = await c.start_async(pc.ProcessConfig(args=["true"]))
    status: int = await p.wait_async(5)
    print(r.returncode, status)


if __name__ == "__main__":
    main()
    asyncio.run(amain())

"""Container.start_async and Container.events_async on asyncio's default loop and on
uvloop (skipped only when uvloop is not importable; it is in the `test` extra)."""
import asyncio
import gc
import os
import signal
import threading
import time

import pytest

import pycontainer as pc
from pycontainer.exits import WATCHER
from pycontainer.stats import ContainerStats
from helpers import open_fds  # noqa: E402  (tests/helpers.py)


@pytest.fixture(scope="module", autouse=True)
def _libuv_globals():
    """libuv makes a process-wide pipe (its signal lock) with the first loop and keeps it:
    made here, before any test's descriptor baseline."""
    try:
        import uvloop
    except ImportError:
        return
    loop = uvloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def _fds():
    """Our descriptors but those kept for the life of the process (the eBPF device programs)."""
    return open_fds(("bpf-prog",))


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """run(coro): its result, on a fresh loop of the parametrized kind."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop_factory, loop_type = uvloop.new_event_loop, uvloop.Loop
    else:
        loop_factory, loop_type = asyncio.new_event_loop, asyncio.SelectorEventLoop

    def run(coro):
        async def checked():
            assert isinstance(asyncio.get_running_loop(), loop_type)
            return await coro
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(checked())
    return run


def _reaped(pid):
    return not os.path.exists(f"/proc/{pid}")       # a zombie still has its /proc entry


async def _until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def P(*args):
    return pc.ProcessConfig(args=list(args))


def test_start_async_gives_the_exit_code(factory, busybox_rootfs, run):
    c = factory.create("a1", pc.Config(rootfs=busybox_rootfs))

    async def main():
        watched = len(WATCHER._queues)
        pid, exit_future = await c.start_async(P("sh", "-c", "exit 7"))
        assert pid > 0 and isinstance(exit_future, asyncio.Future)
        assert len(WATCHER._queues) == watched            # not the exit watcher's
        assert await asyncio.wait_for(exit_future, 10) == 7
        assert _reaped(pid)
        # As the init's exit: the container is stopped, and starts again.
        assert c.run_state() == pc.RunState.STOPPED
        pid, exit_future = await c.start_async(P("true"))
        assert await asyncio.wait_for(exit_future, 10) == 0
    try:
        run(main())
    finally:
        c.destroy()


def test_start_async_of_a_killed_process_gives_minus_nine(factory, busybox_rootfs, run):
    c = factory.create("a2", pc.Config(rootfs=busybox_rootfs))

    async def main():
        init_pid, init_exit = await c.start_async(P("sleep", "1000"))
        pid, exit_future = await c.start_async(P("sleep", "1000"))     # joins the init
        await asyncio.sleep(0.05)
        assert not exit_future.done()
        c.signal(signal.SIGKILL, pid=pid)
        assert await asyncio.wait_for(exit_future, 10) == -signal.SIGKILL
        assert not init_exit.done()
        c.signal(signal.SIGTERM)          # the init has no handler: ignored (pid 1)
        c.signal(signal.SIGKILL)
        assert await asyncio.wait_for(init_exit, 10) == -signal.SIGKILL
    try:
        run(main())
    finally:
        c.destroy()


def test_many_concurrent_start_async_all_resolve(factory, busybox_rootfs, run):
    c = factory.create("a3", pc.Config(rootfs=busybox_rootfs))

    async def main():
        init_pid, init_exit = await c.start_async(P("sleep", "1000"))
        c.run_state()             # the handle caches a pidfd of the init (closed by destroy)
        fds_before, threads_before = _fds(), threading.active_count()
        started = await asyncio.gather(*(
            c.start_async(P("sh", "-c", f"sleep 0.{i % 3}; exit {i}")) for i in range(100)))
        assert len({pid for pid, _ in started}) == 100
        statuses = await asyncio.wait_for(asyncio.gather(*(f for _, f in started)), 30)
        assert statuses == list(range(100))
        assert threading.active_count() == threads_before      # no thread per process
        assert _fds() == fds_before   # every pidfd closed
        assert all(_reaped(pid) for pid, _ in started)
        c.signal(signal.SIGKILL)
        assert await asyncio.wait_for(init_exit, 10) == -signal.SIGKILL
    try:
        run(main())
    finally:
        c.destroy()


def test_cancelled_wait_still_reaps_and_closes(factory, busybox_rootfs, run):
    c = factory.create("a4", pc.Config(rootfs=busybox_rootfs))

    async def main():
        await c.start_async(P("sleep", "1000"))
        c.run_state()             # the handle caches a pidfd of the init (closed by destroy)
        c.pause()                 # and keeps the freezer files open once it has paused
        c.resume()
        fds_before = _fds()
        pid, exit_future = await c.start_async(P("sleep", "1000"))
        assert len(_fds()) == len(fds_before) + 1              # its pidfd, on the loop
        async def wait():
            return await exit_future
        waiter = asyncio.create_task(wait())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert exit_future.cancelled()
        c.signal(signal.SIGKILL, pid=pid)
        # The loop still reaps it and closes the pidfd: no zombie, no descriptor.
        await _until(lambda: _reaped(pid) and _fds() == fds_before)
        # A wait_for that times out cancels the same way.
        pid, exit_future = await c.start_async(P("sleep", "1000"))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(exit_future, 0.05)
        c.signal(signal.SIGKILL, pid=pid)
        await _until(lambda: _reaped(pid) and _fds() == fds_before)
        # shield() keeps the status for a later wait.
        pid, exit_future = await c.start_async(P("sh", "-c", "sleep 0.2; exit 5"))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(exit_future), 0.01)
        assert await asyncio.wait_for(exit_future, 10) == 5
    try:
        run(main())
    finally:
        c.destroy()


def test_a_closed_loop_hands_its_processes_to_the_exit_watcher(factory, busybox_rootfs, run):
    """A loop closed while processes it started still run: they are reaped anyway."""
    c = factory.create("a9", pc.Config(rootfs=busybox_rootfs))

    async def main():
        pid, _ = await c.start_async(P("sleep", "1000"))
        pid2, _ = await c.start_async(P("sleep", "1000"))
        return pid, pid2
    try:
        pids = run(main())
        gc.collect()
        c.signal(signal.SIGKILL, all=True)
        deadline = time.monotonic() + 10
        while not all(_reaped(pid) for pid in pids):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        c.destroy()


def test_start_async_failures_leave_nothing(factory, busybox_rootfs, run):
    c = factory.create("a5", pc.Config(rootfs=busybox_rootfs))

    async def main():
        fds_before = _fds()
        with pytest.raises(pc.ContainerSystemError) as e:
            await c.start_async(P("/bin/nope"))             # as an init
        assert e.value.stage == "exec"
        assert _fds() == fds_before
        pid, exit_future = await c.start_async(P("sleep", "1000"))
        c.run_state()             # the handle caches a pidfd of the init (closed by destroy)
        c.pause()                 # and keeps the freezer files open once it has paused
        c.resume()
        fds_before = _fds()
        with pytest.raises(pc.ContainerSystemError) as e:
            await c.start_async(P("/bin/nope"))             # joining
        assert e.value.stage == "exec"
        c.pause()
        with pytest.raises(pc.ContainerPausedError):
            await c.start_async(P("true"))
        c.resume()
        assert _fds() == fds_before
        c.signal(signal.SIGKILL)
        assert await asyncio.wait_for(exit_future, 10) == -signal.SIGKILL
        assert len(fds_before - _fds()) == 1 and _fds() < fds_before   # the init's pidfd
    try:
        run(main())
    finally:
        c.destroy()


def test_events_async_lifecycle_in_order(factory, busybox_rootfs, run):
    c = factory.create("a6", pc.Config(rootfs=busybox_rootfs))

    async def main():
        fds_before = _fds()
        stream = c.events_async(interval=60, stats=False)
        next_event = lambda: asyncio.wait_for(anext(stream), 10)    # noqa: E731
        pid, exit_future = await c.start_async(P("sleep", "1000"))
        c.pause()
        ev = await next_event()
        assert (ev.type, ev.id) == ("paused", "a6")
        c.resume()
        assert (await next_event()).type == "resumed"
        c.signal(signal.SIGKILL)
        ev = await next_event()
        assert (ev.type, ev.pid, ev.data) == ("exit", pid, -signal.SIGKILL)
        assert await exit_future == -signal.SIGKILL
        # An init that exits at once (reaped by this loop maybe before the stream looks).
        pid, exit_future = await c.start_async(P("sh", "-c", "exit 3"))
        ev = await next_event()
        assert (ev.type, ev.pid, ev.data) == ("exit", pid, 3)
        await c.start_async(P("sleep", "1000"))
        await asyncio.sleep(0.05)     # the loop runs the stream's readers (it sees the init)
        c.destroy()
        assert [e.type async for e in stream] == ["exit", "destroyed"]
        assert _fds() == fds_before
    try:
        run(main())
    finally:
        c.destroy()


def test_events_async_stats_and_oom(factory, busybox_rootfs, run):
    c = factory.create("a7", pc.Config(rootfs=busybox_rootfs, resources=pc.Resources(
        memory_limit=32 << 20, memory_swap=32 << 20)))

    async def main():
        await c.start_async(P("sleep", "1000"))
        async with c.events_async(interval=0.1) as stream:
            t0 = time.monotonic()
            got = [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
            assert [e.type for e in got] == ["stats"] * 3
            assert isinstance(got[0].data, ContainerStats)
            assert time.monotonic() - t0 >= 0.25
            pid, exit_future = await c.start_async(
                P("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"))
            assert await asyncio.wait_for(exit_future, 20) == -signal.SIGKILL
            kinds = []
            while "oom" not in kinds:
                kinds.append((await asyncio.wait_for(anext(stream), 10)).type)
    try:
        run(main())
    finally:
        c.destroy()


def test_events_async_closed_or_dropped_leaves_nothing(factory, busybox_rootfs, run):
    c = factory.create("a8", pc.Config(rootfs=busybox_rootfs))

    async def main():
        await c.start_async(P("sleep", "1000"))
        c.stats()                 # the handle caches a pidfd of the init (closed by destroy)
        fds_before = _fds()
        stream = c.events_async(interval=0.02)
        assert (await anext(stream)).type == "stats"
        await stream.aclose()
        assert _fds() == fds_before
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        # Abandoned after one event: the finalizer removes the readers and closes.
        async for ev in c.events_async(interval=0.02):
            break
        gc.collect()
        assert _fds() == fds_before
        # Never iterated.
        stream = c.events_async()
        del stream
        gc.collect()
        assert _fds() == fds_before
        # The loop keeps running fine afterwards (no stale reader on a reused fd).
        pid, exit_future = await c.start_async(P("sh", "-c", "exit 4"))
        assert await asyncio.wait_for(exit_future, 10) == 4
    try:
        run(main())
    finally:
        c.destroy()

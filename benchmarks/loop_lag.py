#!/usr/bin/env python3
"""Event-loop lag while containers start: a 1 ms ticker's lateness (p50, p99, max) during
N concurrent container lifecycles (Factory.create_async, start_async, the exit, destroy_async),
against the same ticker during N asyncio.create_subprocess_exec runs of the same program.

    python benchmarks/loop_lag.py [-n 50] [--rounds 5] [--uvloop]

Target (issue 14): the ticker's p99 lag ≤ 2 ms during 50 concurrent starts on an idle
machine. Needs root (containers on a busybox rootfs the script builds in a temp dir).
"""
import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pycontainer as pc  # noqa: E402

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def busybox_rootfs(tmp):
    root = os.path.join(tmp, "rootfs")
    for d in ("bin", "proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(root, d))
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    os.symlink("busybox", os.path.join(root, "bin", "true"))
    return root


async def ticker(lags, stop):
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)


async def measure(work):
    lags, stop = [], asyncio.Event()
    tick = asyncio.create_task(ticker(lags, stop))
    await asyncio.sleep(0.02)
    lags.clear()
    await work()
    stop.set()
    await tick
    lags.sort()
    return [lags[int(q * (len(lags) - 1))] * 1e3 for q in (0.5, 0.99, 1.0)]


async def containers(factory, config, n, round_):
    async def one(i):
        c = await factory.create_async(f"lag-{os.getpid()}-{round_}-{i}", config)
        try:
            p = await c.start_async(pc.ProcessConfig(args=["/bin/true"]))
            await p.wait_async(30)
        finally:
            await c.destroy_async()
    await asyncio.gather(*(one(i) for i in range(n)))


async def subprocesses(n):
    async def one():
        p = await asyncio.create_subprocess_exec(BUSYBOX, "true")
        await p.wait()
    await asyncio.gather(*(one() for _ in range(n)))


async def main(args):
    with tempfile.TemporaryDirectory() as tmp:
        factory = pc.Factory(root=os.path.join(tmp, "state"))
        config = pc.Config(rootfs=busybox_rootfs(tmp))
        rows = {"pycontainer": [], "create_subprocess_exec": []}
        for r in range(args.rounds):
            rows["pycontainer"].append(await measure(lambda: containers(factory, config,
                                                                         args.n, r)))
            rows["create_subprocess_exec"].append(await measure(lambda: subprocesses(args.n)))
    print(f"ticker lag (ms) during {args.n} concurrent starts, median of {args.rounds} rounds")
    print(f"{'':24} {'p50':>7} {'p99':>7} {'max':>7}")
    for name, results in rows.items():
        cols = [sorted(r[i] for r in results)[len(results) // 2] for i in range(3)]
        print(f"{name:24} " + " ".join(f"{v:7.2f}" for v in cols))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--uvloop", action="store_true")
    a = ap.parse_args()
    if a.uvloop:
        import uvloop
        uvloop.install()
    asyncio.run(main(a))

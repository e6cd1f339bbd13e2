#!/usr/bin/env python3
"""Soak: run N container lifecycles in one process and show that nothing accumulates.

    python benchmarks/soak.py [-n 10000] [--warmup 50] [--every 1000] [--json FILE]

One cycle, on a busybox rootfs in a private state root:
    create -> start an init that exits by itself (`sh -c "exit K"`, K = cycle % 100)
           -> its status K from the queue (the container is now STOPPED)
           -> start a new init (`sleep 100`) -> join `/bin/true`, status 0
           -> destroy (the init's queue yields -9)
so each cycle makes one container, three processes (two inits, one join) and reads
three statuses.

Printed: open descriptors, threads and RSS before (after the warm-up cycles, which load
the per-process caches: cgroup detection, the seccomp profile, the device eBPF program, the
exit-watcher thread and its epoll set) and after; RSS and descriptors every --every cycles;
and per-cycle wall time (mean, p50, p90, p99, max). The exit status is 1 if descriptors or
threads differ, or RSS grew by more than --rss-limit MiB, or anything was left behind.

tests/reliability/test_soak.py runs the same cycle (300 of them) in CI.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import pycontainer as pc  # noqa: E402
from _common import percentile  # noqa: E402  (nearest rank, as c_limit.c)


def fd_table():
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return fds


def status_field(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def snapshot():
    gc.collect()
    return {"fds": fd_table(), "threads": status_field("Threads"),
            "python_threads": threading.active_count(), "rss_kib": status_field("VmRSS")}


def cycle(factory, config, i):
    c = factory.create(f"soak-{i}", config)
    _, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", f"exit {i % 100}"]))
    status = exits.get(timeout=30)
    if status != i % 100:
        raise AssertionError(f"cycle {i}: init status {status}, expected {i % 100}")
    _, init_exits = c.start(pc.ProcessConfig(args=["sleep", "100"]))
    _, exits = c.start(pc.ProcessConfig(args=["/bin/true"]))
    status = exits.get(timeout=30)
    if status != 0:
        raise AssertionError(f"cycle {i}: join status {status}")
    c.destroy()
    status = init_exits.get(timeout=30)
    if status != -signal.SIGKILL:
        raise AssertionError(f"cycle {i}: init status after destroy {status}")


def cgroup_leftovers(root):
    """cgroup directories of this root's containers ('<scope>-soak-...') still there."""
    scope = hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:8]
    found = []
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        if os.path.basename(dirpath).startswith(f"{scope}-"):
            found.append(dirpath)
            dirnames[:] = []
        elif dirpath.count("/") > 12:
            dirnames[:] = []
    return found


def run(n, rootfs, root, warmup=50, every=0, log=None):
    """Run warmup + n cycles; a dict of what was measured."""
    factory = pc.Factory(root)
    config = pc.Config(rootfs=rootfs)
    for i in range(warmup):
        cycle(factory, config, -1 - i)
    before = snapshot()
    samples = []
    progress = []
    t_start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        cycle(factory, config, i)
        samples.append(time.perf_counter() - t0)
        if every and (i + 1) % every == 0:
            s = snapshot()
            progress.append({"cycle": i + 1, "rss_kib": s["rss_kib"], "fds": len(s["fds"]),
                             "threads": s["threads"]})
            if log:
                log(f"  {i + 1:>6} cycles: rss {s['rss_kib']} KiB, {len(s['fds'])} fds, "
                    f"{s['threads']} threads, {(time.perf_counter() - t_start) / (i + 1) * 1e3:.2f} ms/cycle")
    total = time.perf_counter() - t_start
    after = snapshot()
    samples.sort()
    left = {"state dirs": factory.list(), "broken": factory.list_broken(),
            "cgroups": cgroup_leftovers(factory.root)}
    return {
        "cycles": n, "warmup": warmup, "seconds": total,
        "before": before, "after": after, "progress": progress,
        "cycle_ms": {"mean": total / n * 1e3 if n else 0.0,
                     **{f"p{p}": percentile(samples, p / 100) * 1e3 for p in (50, 90, 99)},
                     "max": samples[-1] * 1e3 if samples else 0.0},
        "left": left,
    }


def fd_diff(before, after):
    b = set(before["fds"].items())
    a = set(after["fds"].items())
    return sorted(a - b), sorted(b - a)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--cycles", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--every", type=int, default=1000, help="print progress every N cycles")
    ap.add_argument("--rss-limit", type=float, default=5.0, help="MiB of RSS growth allowed")
    ap.add_argument("--json", help="also write the measurements to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("soak.py needs root (it runs real containers)")

    from _common import build_busybox_rootfs
    tmp = tempfile.mkdtemp(prefix="pc-soak-")
    try:
        rootfs = build_busybox_rootfs(os.path.join(tmp, "rootfs"))
        os.chmod(tmp, 0o755)
        log = lambda *a: print(*a, flush=True)       # noqa: E731
        log(f"soak: {args.cycles} cycles (+{args.warmup} warm-up), pid {os.getpid()}, "
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
        r = run(args.cycles, rootfs, os.path.join(tmp, "run"), args.warmup, args.every, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    b, a = r["before"], r["after"]
    new, gone = fd_diff(b, a)
    growth = (a["rss_kib"] - b["rss_kib"]) / 1024
    print(f"\n{'':14}{'before':>10}{'after':>10}")
    print(f"{'fds':14}{len(b['fds']):>10}{len(a['fds']):>10}")
    print(f"{'threads':14}{b['threads']:>10}{a['threads']:>10}")
    print(f"{'py threads':14}{b['python_threads']:>10}{a['python_threads']:>10}")
    print(f"{'RSS KiB':14}{b['rss_kib']:>10}{a['rss_kib']:>10}   ({growth:+.2f} MiB)")
    if new or gone:
        print(f"descriptors opened: {new}; closed: {gone}")
    m = r["cycle_ms"]
    print(f"\n{r['cycles']} cycles in {r['seconds']:.1f} s: per cycle mean {m['mean']:.2f} ms, "
          f"p50 {m['p50']:.2f}, p90 {m['p90']:.2f}, p99 {m['p99']:.2f}, max {m['max']:.2f} ms")
    print(f"left behind: {r['left']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**r, "before": {**b, "fds": len(b["fds"])},
                       "after": {**a, "fds": len(a["fds"])}}, f, indent=1)
    ok = (not new and not gone and a["threads"] == b["threads"] and growth < args.rss_limit
          and not any(r["left"].values()))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

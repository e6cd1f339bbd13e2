"""pycontainer alone: median, p90, p99 of the full lifecycle (create + start(/bin/true) +
exit status + destroy) and of a join (start(/bin/true) into a running container + exit
status), each over N runs, on a busybox rootfs with the default Config.

    python benchmarks/pycontainer_only.py [--runs 1000]

The side-by-side comparison with runc, crun and the C limit is start_latency.py; this
one is for quick before/after numbers when touching the spawn path.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RUN_TAG, build_busybox_rootfs, percentile  # noqa: E402

import pycontainer as pc  # noqa: E402


def measure(fn, runs):
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    return {p: percentile(samples, p / 100) for p in (50, 90, 99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix=f"{RUN_TAG}-")
    try:
        rootfs = os.path.join(tmp, "rootfs")
        build_busybox_rootfs(rootfs)
        factory = pc.Factory(root=os.path.join(tmp, "state"))
        config = pc.Config(rootfs=rootfs)
        true = pc.ProcessConfig(args=["/bin/true"])

        def lifecycle():
            c = factory.create(f"{RUN_TAG}-life", config)
            _, exits = c.start(true)
            exits.get()
            c.destroy()

        box = factory.create(f"{RUN_TAG}-join", config)
        try:
            box.start(pc.ProcessConfig(args=["sleep", "100000"]))

            def join():
                _, exits = box.start(true)
                exits.get()

            for name, fn in (("full lifecycle", lifecycle), ("join", join)):
                measure(fn, max(10, args.runs // 20))          # warm up
                q = measure(fn, args.runs)
                print(f"{name:15s} runs {args.runs}  median {q[50]:8.0f} us  "
                      f"p90 {q[90]:8.0f} us  p99 {q[99]:8.0f} us", flush=True)
        finally:
            box.destroy()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

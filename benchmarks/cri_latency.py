#!/usr/bin/env python3
"""Pod start and stop through Kubernetes' CRI: a private containerd (tests/cri/testbed.py)
with a `runc` and a `pycontainer` runtime handler, driven by our CRI client
(tests/cri/client.py), as the kubelet drives a node.

    python benchmarks/cri_latency.py [--rounds 30] [--burst 20] [--json FILE]

Per round and handler, one pod: RunPodSandbox, CreateContainer (busybox `sleep`),
StartContainer, ContainerStatus until RUNNING ("start" = the sum: a pod with its
container running), then StopContainer (grace 0), RemoveContainer, StopPodSandbox,
RemovePodSandbox ("stop"). Handlers alternate in a shuffled order each round so drift and
a neighbour's load hit both alike. The burst: `--burst` pods with one container each
started at once (one thread per pod) per handler, the time until all run, and the time
until all are removed. Medians and p90 in milliseconds. Root only; the test bed removes
everything it made (also on Ctrl-C)."""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "cri"))

import images  # noqa: E402
from client import CONTAINER_STATE  # noqa: E402
from testbed import HANDLERS, TestBed  # noqa: E402

PHASES = ("runp", "create", "start", "running", "start total", "stop total")


def pct(values, q):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))]


def one_pod(bed, handler, name):
    """{phase: ms} of one pod with one container, started and then removed."""
    c = bed.client
    t = {}
    t0 = time.perf_counter()
    config = bed.pod_config(name)
    pod = c.RunPodSandbox(config=config, runtime_handler=handler)["pod_sandbox_id"]
    t1 = time.perf_counter()
    cid = c.CreateContainer(pod_sandbox_id=pod, sandbox_config=config, config={
        "metadata": {"name": "c"}, "image": {"image": images.BUSYBOX_IMAGE},
        "command": ["sleep", "1000"], "log_path": "c.log"})["container_id"]
    t2 = time.perf_counter()
    c.StartContainer(container_id=cid)
    t3 = time.perf_counter()
    while CONTAINER_STATE[c.ContainerStatus(container_id=cid)["status"].get("state", 0)] \
            != "RUNNING":
        time.sleep(0.001)
    t4 = time.perf_counter()
    c.StopContainer(container_id=cid, timeout=0)
    c.RemoveContainer(container_id=cid)
    c.StopPodSandbox(pod_sandbox_id=pod)
    c.RemovePodSandbox(pod_sandbox_id=pod)
    t5 = time.perf_counter()
    ms = lambda a, b: (b - a) * 1000  # noqa: E731
    t.update({"runp": ms(t0, t1), "create": ms(t1, t2), "start": ms(t2, t3),
              "running": ms(t3, t4), "start total": ms(t0, t4), "stop total": ms(t4, t5)})
    return t


def burst(bed, handler, n, tag):
    """(ms until all n pods run their container, ms until all are removed)."""
    c = bed.client

    def up(i):
        config = bed.pod_config(f"{tag}-{i}")
        pod = c.RunPodSandbox(config=config, runtime_handler=handler)["pod_sandbox_id"]
        cid = c.CreateContainer(pod_sandbox_id=pod, sandbox_config=config, config={
            "metadata": {"name": "c"}, "image": {"image": images.BUSYBOX_IMAGE},
            "command": ["sleep", "1000"], "log_path": "c.log"})["container_id"]
        c.StartContainer(container_id=cid)
        return pod, cid

    def down(ids):
        pod, cid = ids
        c.StopContainer(container_id=cid, timeout=0)
        c.RemoveContainer(container_id=cid)
        c.StopPodSandbox(pod_sandbox_id=pod)
        c.RemovePodSandbox(pod_sandbox_id=pod)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        t0 = time.perf_counter()
        made = list(pool.map(up, range(n)))
        t1 = time.perf_counter()
        list(pool.map(down, made))
        t2 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--json", help="write the samples here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("cri_latency: needs root")
    samples = {h: [] for h in HANDLERS}
    bursts = {}
    with TestBed() as bed:
        for h in HANDLERS:                              # warm-up, not counted
            one_pod(bed, h, f"warm-{h}")
        for r in range(args.rounds):
            order = list(HANDLERS)
            random.shuffle(order)
            for h in order:
                samples[h].append(one_pod(bed, h, f"r{r}-{h}"))
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        if args.burst:
            for h in HANDLERS:
                bursts[h] = burst(bed, h, args.burst, f"burst-{h}")
    print(f"CRI pod latency, ms (median / p90 of {args.rounds} rounds, interleaved)")
    print(f"{'phase':<14}" + "".join(f"{h:>22}" for h in HANDLERS))
    for phase in PHASES:
        cells = ""
        for h in HANDLERS:
            v = [s[phase] for s in samples[h]]
            cells += f"{pct(v, 0.5):>12.1f} / {pct(v, 0.9):>7.1f}"
        print(f"{phase:<14}{cells}")
    if bursts:
        print(f"\nburst of {args.burst} pods (one container each), ms")
        print(f"{'':<14}" + "".join(f"{h:>22}" for h in HANDLERS))
        print(f"{'all running':<14}" + "".join(f"{bursts[h][0]:>22.0f}" for h in HANDLERS))
        print(f"{'all removed':<14}" + "".join(f"{bursts[h][1]:>22.0f}" for h in HANDLERS))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rounds": samples, "burst": {h: list(v) for h, v in bursts.items()},
                       "burst_size": args.burst}, f, indent=1)


if __name__ == "__main__":
    main()

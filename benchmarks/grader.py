#!/usr/bin/env python3
"""A grader: 200 short jobs (`sh -c 'echo $((1+2))'` on a busybox rootfs), each in a fresh
sandbox with a memory and a pids limit and a 5 s timeout, output and status collected,
with 1 and 2 workers. The same grader written with pc.run (grade_pycontainer: the
version a user writes, 25 lines), bwrap --unshare-all, crun run and runc run (an OCI
bundle with the same image and limits), and plain subprocess.run (no isolation: the
floor). Interleaved rounds (each round runs a slice of the jobs with every contender,
in a shuffled order); median per job and the total.

    python benchmarks/grader.py [--jobs 200] [--rounds 10] [--workers 1 2]

Needs root; bubblewrap, crun and runc where installed (a missing one is a skipped row).
bwrap has no cgroup limits: its jobs get the same limits as rlimits (ulimit -v / -u).
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402
import pycontainer as pc  # noqa: E402

JOB = ["sh", "-c", "echo $((1+2))"]
MEMORY, PIDS = 64 << 20, 32


# --- the grader, as a user writes it with pc.run (25 lines) ------------------------------
def grade_pycontainer(rootfs, jobs, workers, factory=None):
    config = pc.Config(rootfs=rootfs, resources=pc.Resources(memory_limit=MEMORY,
                                                             pids_limit=PIDS))

    def job(i):
        t = time.perf_counter()
        try:
            r = pc.run(JOB, config=config, capture_output=True, text=True, timeout=5,
                       factory=factory)
            result = (r.returncode, r.stdout, r.oom_killed)
        except subprocess.TimeoutExpired:
            result = ("timeout", "", False)
        return result, time.perf_counter() - t

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(job, range(jobs)))
# ------------------------------------------------------------------------------------------


def grade_with(argv_of, jobs, workers):
    """The same grader through subprocess.run of a command line per job."""
    def job(i):
        t = time.perf_counter()
        try:
            r = subprocess.run(argv_of(i), capture_output=True, text=True, timeout=5)
            result = (r.returncode, r.stdout, False)
        except subprocess.TimeoutExpired:
            result = ("timeout", "", False)
        return result, time.perf_counter() - t
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(job, range(jobs)))


def bwrap_argv(rootfs):
    ulimits = f"ulimit -v {MEMORY >> 10}; ulimit -u {PIDS}; exec {JOB[0]} -c '{JOB[2]}'"
    return lambda i: ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", rootfs, "/",
                      "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                      "/bin/sh", "-c", ulimits]


class Oci:
    """crun/runc run with a bundle per job (the runtimes take the id from the command
    line; the config.json is shared by jobs of one runtime through a fresh copy each)."""

    def __init__(self, name, tools, cgroups, cleanup, root):
        self.rt = C.OciRuntime(name, tools, cgroups, cleanup, root=root)
        self.tools, self.cgroups, self.n = tools, cgroups, 0
        self.skip = self.rt.skip

    def argv(self, i):
        self.n += 1
        cid = f"{C.RUN_TAG}-{self.rt.name}-g{self.n}"
        bundle = C.write_oci_bundle(os.path.join(self.tools.tmp, "bundles", cid),
                                    self.tools.rootfs, JOB, self.cgroups.path(cid))
        path = os.path.join(bundle, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["linux"]["resources"] = {"memory": {"limit": MEMORY}, "pids": {"limit": PIDS}}
        with open(path, "w") as f:
            json.dump(spec, f)
        return self.rt.cmd("run", "--bundle", bundle, cid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    cleanup = C.Cleanup()
    C.Cleanup.install_signal_handlers()
    try:
        tools = C.Tools(cleanup)
        state = C.StateRoots(tools, cleanup)
        cgroups = C.RuntimeCgroups()
        cleanup.push(cgroups.remove_created)
        contenders = {"pc.run": None, "subprocess.run (no isolation)":
                      lambda j, w: grade_with(lambda i: [C.BUSYBOX, *JOB], j, w)}
        factory = pc.Factory(root=state.pycontainer)      # on the same tmpfs as theirs
        contenders["pc.run"] = lambda j, w: grade_pycontainer(tools.rootfs, j, w, factory)
        if shutil.which("bwrap"):
            contenders["bwrap --unshare-all"] = \
                lambda j, w: grade_with(bwrap_argv(tools.rootfs), j, w)
        for name in ("crun", "runc"):
            oci = Oci(name, tools, cgroups, cleanup, state.runtime_root(name))
            if oci.skip:
                C.log(f"{name}: skipped: {oci.skip}")
                continue
            contenders[f"{name} run"] = lambda j, w, oci=oci: grade_with(oci.argv, j, w)
        per_round = max(1, args.jobs // args.rounds)
        for workers in args.workers:
            times = {n: [] for n in contenders}
            total = {n: 0.0 for n in contenders}
            wrong = {n: 0 for n in contenders}
            for name, grade in contenders.items():       # warm-up
                grade(2, workers)
            for r in range(args.rounds):
                order = list(contenders)
                random.Random(r).shuffle(order)
                for name in order:
                    t = time.perf_counter()
                    results = contenders[name](per_round, workers)
                    total[name] += time.perf_counter() - t
                    times[name] += [dt for _, dt in results]
                    wrong[name] += sum(res[:2] != (0, "3\n") for res, _ in results)
            floor = statistics.median(times["subprocess.run (no isolation)"])
            print(f"\n{args.rounds * per_round} jobs, {workers} worker(s): median per job "
                  f"(ms), total (s), vs the subprocess floor")
            print(f"| {'':32} | per job | total | x floor | wrong |")
            print(f"|{'-' * 34}|--------:|------:|--------:|------:|")
            for name in sorted(contenders, key=lambda n: statistics.median(times[n])):
                med = statistics.median(times[name])
                print(f"| {name:32} | {med * 1e3:7.2f} | {total[name]:5.2f} | "
                      f"{med / floor:7.2f} | {wrong[name]:5d} |")
    finally:
        cleanup.run()


if __name__ == "__main__":
    main()

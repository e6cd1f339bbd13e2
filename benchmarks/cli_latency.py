#!/usr/bin/env python3
"""Wall time of the command line: `pycontainer run` of /bin/true against `runc run` on the
same bundle, `pycontainer state` against `runc state`, and how much of ours is the
interpreter starting. (crun 1.8 refuses hybrid cgroup hosts without start_latency.py's
nsumount wrapper, so it is not here.)

    python benchmarks/cli_latency.py [--runs 30] [--json FILE]

Every contender runs once per round, in a shuffled order (so drift and a neighbour's load
hit all of them alike); the table shows median and p90 in milliseconds and each row's
ratio to `pycontainer run`. The bundle is `pycontainer spec`'s config.json on a busybox
rootfs with process.args = ["/bin/true"], used as is by every runtime. Root only; every
container, state root and temp dir made is removed at the end (and on Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, REPO)

import _common as C  # noqa: E402


def timed(argv, env=None, cwd=None):
    t0 = time.perf_counter_ns()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env, cwd=cwd)
    dt = (time.perf_counter_ns() - t0) / 1e6
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.decode().strip()}")
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")

    from pycontainer.oci.spec import default_spec

    tmp = tempfile.mkdtemp(prefix="pyc-cli-bench-")
    cleanup = C.Cleanup()
    C.Cleanup.install_signal_handlers()
    cleanup.push(shutil.rmtree, tmp, ignore_errors=True)
    try:
        rootfs = C.build_busybox_rootfs(os.path.join(tmp, "rootfs"))
        bundle = os.path.join(tmp, "bundle")
        os.mkdir(bundle)
        spec = default_spec()
        spec["root"]["path"] = rootfs
        spec["process"]["args"] = ["/bin/true"]
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        env = dict(os.environ, PYTHONPATH=REPO)
        import site
        env_s = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + site.getsitepackages()))
        py = sys.executable
        pyc = [py, "-m", "pycontainer", "--root", os.path.join(tmp, "pyc-state")]
        # A long-lived container for `state`.
        subprocess.run(pyc + ["run", "-d", "-b", bundle, "idle", "--", "sleep", "1000"],
                       check=True, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
        cleanup.push(subprocess.run, pyc + ["delete", "--force", "idle"], env=env)

        counter = [0]

        def next_id():
            counter[0] += 1
            return f"clibench-{os.getpid()}-{counter[0]}"

        contenders = {
            "pycontainer run /bin/true": lambda: timed(pyc + ["run", "-b", bundle, next_id()],
                                                      env=env),
            "pycontainer state": lambda: timed(pyc + ["state", "idle"], env=env),
            "python -I -S -c pass": lambda: timed([py, "-I", "-S", "-c", "pass"]),
            "python -c pass": lambda: timed([py, "-c", "pass"]),
            "python -c 'import pycontainer'": lambda: timed([py, "-c", "import pycontainer"],
                                                            env=env),
            # Without site's .pth files (an environment's own start-up work, not ours):
            # site-packages on PYTHONPATH instead, for pyseccomp.
            "python -S -m pycontainer state": lambda: timed(
                [py, "-S", "-m", "pycontainer", "--root", pyc[4], "state", "idle"], env=env_s),
        }
        # crun 1.8 cannot run on this project's hybrid-cgroup machine without the
        # start_latency harness's nsumount wrapper: runc only here.
        for name in ("runc",):
            binary = shutil.which(name)
            if not binary:
                C.log(f"{name} not installed: skipped")
                continue
            root = os.path.join(tmp, f"{name}-state")
            contenders[f"{name} run /bin/true"] = \
                (lambda b=binary, r=root: timed([b, "--root", r, "run", "-b", bundle,
                                                next_id()]))
            subprocess.run([binary, "--root", root, "run", "-d", "-b", bundle, "idle"],
                           check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            cleanup.push(subprocess.run, [binary, "--root", root, "delete", "--force", "idle"],
                         stderr=subprocess.DEVNULL)
            contenders[f"{name} state"] = \
                (lambda b=binary, r=root: timed([b, "--root", r, "state", "idle"]))

        samples = {name: [] for name in contenders}
        names = list(contenders)
        for fn in contenders.values():          # warm caches once
            fn()
        rng = random.Random(1)
        for i in range(args.runs):
            rng.shuffle(names)
            for name in names:
                samples[name].append(contenders[name]())
            if (i + 1) % 10 == 0:
                C.log(f"round {i + 1}/{args.runs}")

        ref = C.percentile(sorted(samples["pycontainer run /bin/true"]), 0.5)
        print(f"\nCLI wall time, {args.runs} interleaved rounds, milliseconds")
        print(f"{'':34} {'median':>8} {'p90':>8} {'vs pycontainer run':>20}")
        summary = {}
        for name in contenders:
            s = sorted(samples[name])
            med, p90 = C.percentile(s, 0.5), C.percentile(s, 0.9)
            summary[name] = {"median_ms": med, "p90_ms": p90, "samples_ms": samples[name]}
            print(f"{name:34} {med:8.1f} {p90:8.1f} {med / ref:19.2f}x")
        interp = summary["python -I -S -c pass"]["median_ms"]
        full = summary["python -c pass"]["median_ms"]
        print(f"\ninterpreter start: {interp:.1f} ms bare (-I -S), {full:.1f} ms with site; "
              f"pycontainer run is {ref:.1f} ms, of which the bare interpreter is "
              f"{100 * interp / ref:.0f}% and the interpreter with site "
              f"{100 * full / ref:.0f}%")
        if args.json:
            C.write_json(args.json, {"runs": args.runs, "summary": summary,
                                     "machine": C.machine_context()})
    finally:
        cleanup.run()


if __name__ == "__main__":
    main()

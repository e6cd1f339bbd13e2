"""Flake hunt: run the reliability tests N times in a row beside a CPU and I/O load, and
count the failures of each test.

    python benchmarks/flake_hunt.py [--runs 5] [--no-load] [--load "--cpu 2 --io 1"]
                                    [PYTEST_ARG ...]

The load is stress-ng (Debian's `stress-ng`), started here before the first run and
stopped after the last, also on an error or Ctrl-C. Each run is a separate
`python -m pytest -q -p no:randomly` over tests/reliability (or the PYTEST_ARGs given),
read back from its JUnit XML. Prints one line per test that failed or errored at least
once (its count out of the runs) and the total; the exit status is 1 when anything failed.
Root only, like the tests it runs (PYCONTAINER_REQUIRE_ROOT is set).
"""
from __future__ import annotations

import argparse
import collections
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_load(args):
    """stress-ng in a session of its own, so that its workers are stopped with it. (Its
    stderr only warns that they "finished prematurely" when stopped.)"""
    return subprocess.Popen(["stress-ng", *shlex.split(args), "--quiet"],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_load(p):
    if p is None or p.poll() is not None:
        return
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def failed_tests(junit_path):
    """The node ids of the tests of one run's JUnit XML that failed or errored."""
    failed = []
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            path = case.get("classname", "").replace(".", "/")
            failed.append(f"{path}.py::{case.get('name')}")
    return failed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs in a row (default 5)")
    ap.add_argument("--load", default="--cpu 2 --io 1", help="stress-ng's arguments")
    ap.add_argument("--no-load", action="store_true", help="run without the load")
    ap.add_argument("pytest_args", nargs="*", default=["tests/reliability"])
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("flake_hunt: run as root (the tests start containers)")

    failures = collections.Counter()
    runs_failed = 0
    load = None
    signal.signal(signal.SIGTERM, _interrupted)   # as Ctrl-C: the finally stops the load
    with tempfile.TemporaryDirectory(prefix="flake-hunt-") as tmp:
        try:
            if not args.no_load:
                load = start_load(args.load)
            env = dict(os.environ, PYCONTAINER_REQUIRE_ROOT="1")
            for n in range(1, args.runs + 1):
                junit = os.path.join(tmp, f"run{n}.xml")
                t0 = time.monotonic()
                rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                                     "-p", "no:cacheprovider", f"--junitxml={junit}",
                                     *args.pytest_args],
                                    cwd=REPO, env=env, stdout=subprocess.DEVNULL).returncode
                if load is not None and load.poll() is not None:
                    sys.exit(f"flake_hunt: stress-ng ended early (status {load.returncode})")
                failed = failed_tests(junit) if os.path.exists(junit) else ["<no report>"]
                if rc not in (0, 1) and not failed:
                    failed = [f"<pytest exit status {rc}>"]
                failures.update(failed)
                runs_failed += bool(failed)
                print(f"run {n}/{args.runs}: {len(failed)} failed "
                      f"({time.monotonic() - t0:.0f} s){': ' if failed else ''}"
                      f"{', '.join(failed)}", flush=True)
        finally:
            stop_load(load)

    print(f"\nload: {'none' if args.no_load else 'stress-ng ' + args.load}; "
          f"{args.runs} runs of {' '.join(args.pytest_args)}")
    for test, count in failures.most_common():
        print(f"  {count}/{args.runs}  {test}")
    print(f"failures: {sum(failures.values())} in {runs_failed} of {args.runs} runs")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

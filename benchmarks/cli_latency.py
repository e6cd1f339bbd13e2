#!/usr/bin/env python3
"""Wall time and peak RSS of the command line, per command, against runc and crun on the
same bundle, next to the floor of a bare interpreter (`python -I -S -c pass`).

    python benchmarks/cli_latency.py [--runs 30] [--json FILE] [--lean]
        [--pycontainer "CMD ..."]...   (default: this interpreter -m pycontainer)

--lean adds the launcher a packager should install (LEAN_SCRIPT: `python -I -S`, the
package's directories put on sys.path by the script itself, so no site and no .pth file
runs), written for this checkout and interpreter.

Rows: `run` of /bin/true; containerd's shim sequence on a fresh container of
`sleep 1000` (create, start, state, kill KILL, delete: each step a row, and their total;
the wait for the killed init to exit, which the shim does between kill and delete, is
not timed); `state` and `exec /bin/true` of a long-lived container; `list` of a root
holding it; `pause` and `resume` of it. Every runtime's state root is on a private tmpfs
(_common.StateRoots). crun 1.8 refuses a hybrid cgroup host unless it runs under the
`nsumount` wrapper (one unshare and exec more: its own row says what that costs).

Every contender runs once per round, in a shuffled order (so drift and a neighbour's load
hit all of them alike); the table shows median and p90 in milliseconds and the median
peak RSS (/usr/bin/time's %M: the command's own peak, or that of a child it waited for
if larger), from 3 rounds under /usr/bin/time that are not timed. Each `--pycontainer` adds a pycontainer column (e.g. the
installed console script, or `python -I -m pycontainer`). Root only; every container,
state root and temp dir made is removed at the end (and on Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
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

STEPS = ("run /bin/true", "create", "start", "state (shim)", "kill", "delete", "shim total",
         "state", "list", "exec /bin/true", "pause", "resume")


TIME = "/usr/bin/time"
RSS_MODE = []      # [path]: commands run under /usr/bin/time, which writes the peak RSS there


LEAN_SCRIPT = """#!{python} -IS
import sys
sys.path[:0] = {path!r}
from pycontainer.cli import entry
entry()
"""


def lean_script(path):
    """LEAN_SCRIPT for this interpreter, with this checkout and its site-packages (where
    pyseccomp is) on the path."""
    import site
    with open(path, "w") as f:
        f.write(LEAN_SCRIPT.format(python=sys.executable,
                                   path=[REPO, *site.getsitepackages()]))
    os.chmod(path, 0o755)
    return path


def timed(argv, env=None, check=True):
    """(wall ms, peak RSS KiB) of argv, its output discarded. The RSS is only known in
    RSS_MODE (a process forked from this one starts with our peak as its own, so it is
    measured from /usr/bin/time, a small parent, in rounds that are not timed)."""
    if RSS_MODE:
        argv = [TIME, "-f", "%M", "-o", RSS_MODE[0], *argv]
    with tempfile.TemporaryFile() as err:       # a file: a detached container keeps it
        t0 = time.perf_counter_ns()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=env)
        _, status = os.waitpid(p.pid, 0)
        dt = (time.perf_counter_ns() - t0) / 1e6
        p.returncode = os.waitstatus_to_exitcode(status)
        if check and p.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}: "
                             f"{err.read().decode(errors='replace').strip()[:300]}")
    if RSS_MODE:
        with open(RSS_MODE[0]) as f:
            return None, int(f.read().split()[-1])
    return dt, None


class Runtime:
    """One command line under test: `prefix` (binary and --root), its environment."""

    def __init__(self, name, prefix, env=None):
        self.name, self.prefix, self.env = name, prefix, env
        self.ids = []

    def cmd(self, *args):
        return [*self.prefix, *args]

    def call(self, *args, check=True):
        return timed(self.cmd(*args), env=self.env, check=check)

    def new_id(self):
        cid = f"{C.RUN_TAG}-{len(self.ids)}"
        self.ids.append(cid)
        return cid

    def pid(self, cid):
        out = subprocess.run(self.cmd("state", cid), capture_output=True, env=self.env)
        return json.loads(out.stdout)["pid"] if out.returncode == 0 else 0

    def remove(self, cid):
        subprocess.run(self.cmd("delete", "--force", cid), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)


def wait_exit(pid):
    """Until `pid` has exited (a zombie counts): the shim's wait between kill and delete."""
    if not pid:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        import select
        select.select([fd], [], [], 10)
    finally:
        os.close(fd)


def scenarios(rt, bundles, idle):
    """{row: function() -> {row: (ms, rss)}} of one runtime."""
    def run_true():
        return {"run /bin/true": rt.call("run", "-b", bundles["true"], rt.new_id())}

    def shim():
        cid = rt.new_id()
        out = {"create": rt.call("create", "-b", bundles["sleep"], cid)}
        try:
            out["start"] = rt.call("start", cid)
            out["state (shim)"] = rt.call("state", cid)
            pid = rt.pid(cid)
            out["kill"] = rt.call("kill", cid, "KILL")
            wait_exit(pid)
            out["delete"] = rt.call("delete", cid)
        except BaseException:
            rt.remove(cid)
            raise
        steps = [out[k] for k in ("create", "start", "state (shim)", "kill", "delete")]
        out["shim total"] = (None if RSS_MODE else sum(ms for ms, _ in steps),
                             max(rss for _, rss in steps) if RSS_MODE else None)
        return out

    def pause_resume():
        return {"pause": rt.call("pause", idle), "resume": rt.call("resume", idle)}

    return {
        "run": run_true, "shim": shim, "pause+resume": pause_resume,
        "state": lambda: {"state": rt.call("state", idle)},
        "list": lambda: {"list": rt.call("list")},
        "exec": lambda: {"exec /bin/true": rt.call("exec", idle, "/bin/true")},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--lean", action="store_true", help="add the lean launcher (LEAN_SCRIPT)")
    ap.add_argument("--pycontainer", action="append", default=[],
                    help="a pycontainer command line to measure (repeatable)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root")

    from pycontainer.oci.spec import default_spec
    import compileall
    # What an install does (PYTHONDONTWRITEBYTECODE would otherwise have every run compile).
    compileall.compile_dir(os.path.join(REPO, "pycontainer"), quiet=1)

    cleanup = C.Cleanup()
    C.Cleanup.install_signal_handlers()
    tools = type("Tools", (), {})()
    tools.tmp = tempfile.mkdtemp(prefix=f"{C.RUN_TAG}-")
    cleanup.push(shutil.rmtree, tools.tmp, ignore_errors=True)
    try:
        rootfs = C.build_busybox_rootfs(os.path.join(tools.tmp, "rootfs"))
        bundles = {}
        for name, argv in (("true", ["/bin/true"]), ("sleep", ["sleep", "1000"])):
            bundles[name] = os.path.join(tools.tmp, f"bundle-{name}")
            os.mkdir(bundles[name])
            spec = default_spec()
            spec["root"]["path"] = rootfs
            spec["process"]["args"] = argv
            with open(os.path.join(bundles[name], "config.json"), "w") as f:
                json.dump(spec, f)
        state = C.StateRoots(tools, cleanup)

        runtimes = []
        env = dict(os.environ, PYTHONPATH=REPO)
        pyc_cmds = args.pycontainer or [f"{shlex.quote(sys.executable)} -m pycontainer"]
        if args.lean:
            pyc_cmds.append(lean_script(os.path.join(tools.tmp, "pycontainer-lean")))
        for i, text in enumerate(pyc_cmds):
            root = os.path.join(state.tmpfs, f"pycontainer-{i}")
            name = "pycontainer" if len(pyc_cmds) == 1 else f"pycontainer[{i}]"
            runtimes.append(Runtime(name, [*shlex.split(text), "--root", root], env))
        for name in ("runc", "crun"):
            binary = shutil.which(name)
            if not binary:
                C.log(f"{name} not installed: skipped")
                continue
            prefix = [binary]
            if name == "crun" and C.hybrid_unified_mount():
                nsumount = C.compile_c(C.NSUMOUNT_C, os.path.join(tools.tmp, "nsumount"))
                prefix = [nsumount, C.hybrid_unified_mount(), binary]
            runtimes.append(Runtime(name, prefix + ["--root", state.runtime_root(name)]))

        contenders = {}          # (runtime name, scenario) -> function
        floor = [sys.executable, "-I", "-S", "-c", "pass"]
        contenders[("python -I -S -c pass", "floor")] = \
            lambda: {"floor": timed(floor)}
        if any(r.prefix[0].endswith("nsumount") for r in runtimes):
            nsu = next(r.prefix[:2] for r in runtimes if r.prefix[0].endswith("nsumount"))
            contenders[("nsumount /bin/true", "floor")] = \
                lambda: {"nsumount": timed([*nsu, "/bin/true"])}
        for rt in runtimes:
            idle = f"{C.RUN_TAG}-idle"
            cleanup.push(rt.remove, idle)
            rt.call("run", "-d", "-b", bundles["sleep"], idle)
            for name, fn in scenarios(rt, bundles, idle).items():
                contenders[(rt.name, name)] = fn

        samples = {}             # (runtime, row) -> [(ms, rss)]
        keys = list(contenders)
        for k in keys:           # warm caches once
            contenders[k]()
        if os.path.exists(TIME):
            RSS_MODE.append(os.path.join(tools.tmp, "rss"))
            for _ in range(3):
                for k in keys:
                    for row, value in contenders[k]().items():
                        samples.setdefault((k[0], row), []).append(value)
            RSS_MODE.clear()
        rng = random.Random(1)
        for i in range(args.runs):
            rng.shuffle(keys)
            for k in keys:
                for row, value in contenders[k]().items():
                    samples.setdefault((k[0], row), []).append(value)
            if (i + 1) % 10 == 0:
                C.log(f"round {i + 1}/{args.runs}")
        report(args, runtimes, samples)
    finally:
        cleanup.run()


def stats(values):
    ms = sorted(v[0] for v in values if v[0] is not None)
    rss = sorted(v[1] for v in values if v[1] is not None)
    return C.percentile(ms, 0.5), C.percentile(ms, 0.9), C.percentile(rss, 0.5) / 1024


def report(args, runtimes, samples):
    floor = stats(samples[("python -I -S -c pass", "floor")])
    print(f"\nCLI wall time, {args.runs} interleaved rounds: median / p90 ms, median peak "
          f"RSS MiB; 'x floor' is the fastest pycontainer column's median over "
          "python -I -S -c pass's")
    names = [r.name for r in runtimes]
    head = f"{'':16}" + "".join(f"{n:>26}" for n in names) + f"{'x floor':>9}"
    print(head)
    summary = {"floor": dict(zip(("median_ms", "p90_ms", "rss_mib"), floor))}
    for row in STEPS:
        cells, line = {}, f"{row:16}"
        for n in names:
            if (n, row) not in samples:
                line += f"{'-':>26}"
                continue
            med, p90, rss = stats(samples[(n, row)])
            cells[n] = {"median_ms": med, "p90_ms": p90, "rss_mib": rss,
                        "samples": samples[(n, row)]}
            line += f"{med:9.1f} /{p90:7.1f} /{rss:6.1f}"
        best = min((cells[n]["median_ms"] for n in names
                    if n.startswith("pycontainer") and n in cells), default=None)
        line += f"{best / floor[0]:8.2f}x" if best is not None else ""
        print(line)
        summary[row] = cells
    print(f"{'python -I -S':16}{floor[0]:9.1f} /{floor[1]:7.1f} /{floor[2]:6.1f}")
    if ("nsumount /bin/true", "nsumount") in samples:
        med, p90, rss = stats(samples[("nsumount /bin/true", "nsumount")])
        print(f"{'nsumount true':16}{med:9.1f} /{p90:7.1f} /{rss:6.1f}   (crun's wrapper "
              "alone: part of every crun row)")
    if args.json:
        C.write_json(args.json, {"runs": args.runs, "summary": summary,
                                 "commands": {r.name: r.prefix for r in runtimes},
                                 "machine": C.machine_context()})


if __name__ == "__main__":
    main()

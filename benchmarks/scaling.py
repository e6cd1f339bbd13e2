#!/usr/bin/env python3
"""How pycontainer's costs scale. Also run by `start_latency.py --scaling` (both through _driver.py).

    python benchmarks/scaling.py [--quick] [--json FILE] [--plot FILE.png]

(a) heap: full-lifecycle latency while the calling Python process holds 0, 1 and 4 GiB of
    live, touched heap. One worker process per heap size holds its heap for the whole run
    and the workers take turns (interleaved rounds), so drift hits every size alike.
    os.fork() + exit + wait and subprocess.run(/bin/true) are timed in the same workers
    as references (fork copies page tables: it shows what a heap-sensitive start costs).
(b) containers: join latency and processes()/stats() cost with 0, 100 and 500 other
    containers running (`sleep` inits, started by this process), then 0 again after
    destroying them (a drift check).
(c) exits: 1000 processes joined into one container block reading a pipe; closing the
    write end makes them all exit at once. Measured: from the close to the last exit (the
    kernel's view: a C helper polls pidfds of all 1000), and from the last exit until
    every status is in its queue; and the threads of this process.
(d) memory per idle container in this process: RSS and open descriptors per container
    over (b)'s 0 -> 500, and tracemalloc's traced Python memory per container for 100
    more.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import select
import subprocess
import sys
import threading
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common as C  # noqa: E402

GiB = 1 << 30


def plan(args):
    if args.quick:
        return {"heap_rounds": 8, "heap_k": 4, "levels": [0, 100, 500], "level_rounds": 5,
                "level_k": 4, "exit_n": 1000, "exit_reps": 1, "trace_n": 50}
    return {"heap_rounds": 60, "heap_k": 8, "levels": [0, 100, 500], "level_rounds": 40,
            "level_k": 8, "exit_n": 1000, "exit_reps": 3, "trace_n": 100}


# --- (a) heap workers ---------------------------------------------------------------------

def heap_levels():
    """[0, 1, 4] GiB unless our memory cgroup or the machine cannot hold all three workers
    at once (plus 2 GiB of slack): then scaled down, with a note."""
    want = [0, 1 * GiB, 4 * GiB]
    limit = C.memory_limit_bytes()
    avail = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    room = min(x for x in (limit, avail) if x is not None) if (limit or avail) else None
    need = sum(want) + 2 * GiB
    note = (f"memory limit of our cgroup: {'none' if limit is None else f'{limit / GiB:.1f} GiB'}, "
            f"MemAvailable {avail / GiB:.1f} GiB")
    if room is not None and room < need:
        scale = max(room - 2 * GiB, 0) / sum(want)
        want = [int(w * scale) // (64 << 20) * (64 << 20) for w in want]
        note += f"; scaled the heaps down to {[round(w / GiB, 2) for w in want]} GiB to fit"
    return want, note


def worker_main(heap_bytes, rootfs, root, tag):
    """A heap worker: hold `heap_bytes` of touched bytearrays, then serve "run K" lines
    with JSON timings on stdout until "quit" or EOF. Its containers are destroyed on exit."""
    import pycontainer as pc
    C.Cleanup.install_signal_handlers()
    heap = []
    chunk = 64 << 20
    for _ in range(heap_bytes // chunk):
        b = bytearray(chunk)
        b[::4096] = b"\x01" * (chunk // 4096)        # touch every page
        heap.append(b)
    factory = pc.Factory(root=root)
    config = pc.Config(rootfs=rootfs)
    proc = pc.ProcessConfig(args=["/bin/true"])
    n = 0
    out = sys.stdout
    out.write(json.dumps({"ready": True, "rss": C.rss_bytes(), "heap": heap_bytes}) + "\n")
    out.flush()
    T = time.perf_counter_ns
    try:
        while True:
            cmd = sys.stdin.readline().split()
            if not cmd or cmd[0] == "quit":
                break
            k = int(cmd[1])
            life, sub, fork = [], [], []
            if cmd[0] == "life":
                for _ in range(k):
                    cid = f"{tag}-{n}"
                    n += 1
                    t0 = T()
                    c = factory.create(cid, config)
                    try:
                        _, q = c.start(proc)
                        st = q.get(timeout=30)
                    finally:
                        c.destroy()
                    life.append((T() - t0) / 1e3)
                    if st != 0:
                        raise RuntimeError(f"/bin/true exited {st}")
            elif cmd[0] == "ref":
                for _ in range(k):
                    t0 = T()
                    subprocess.run(["/bin/true"])
                    sub.append((T() - t0) / 1e3)
                for _ in range(max(1, k // 4)):
                    t0 = T()
                    pid = os.fork()
                    if pid == 0:
                        os._exit(0)
                    os.waitpid(pid, 0)
                    fork.append((T() - t0) / 1e3)
            out.write(json.dumps({"lifecycle": life, "subprocess": sub, "fork": fork}) + "\n")
            out.flush()
    finally:
        for cid in factory.list():
            if cid.startswith(tag):
                try:
                    factory.load(cid).destroy()
                except Exception as exc:
                    C.log(f"worker cleanup {cid}: {exc!r}")


class Worker:
    def __init__(self, heap, tools, root, cleanup, index):
        self.heap = heap
        self.tag = f"{C.RUN_TAG}-heap{index}"
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker-heap", str(heap),
             "--worker-rootfs", tools.rootfs, "--worker-root", root, "--worker-tag", self.tag],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={**os.environ, "PYTHONPATH": C.REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
        cleanup.push(self.stop)
        self.samples = {"lifecycle": [], "subprocess": [], "fork": []}
        self.info = None

    def wait_ready(self, timeout=300):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if r else ""
        if not line:
            raise RuntimeError(f"heap worker ({self.heap} bytes) did not start "
                               f"(exit {self.p.poll()})")
        self.info = json.loads(line)

    def _cmd(self, what, k):
        self.p.stdin.write(f"{what} {k}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"heap worker ({self.heap} bytes) died (exit {self.p.poll()})")
        return json.loads(line)

    # (samples, raw): the Contender keeps raw only for kept (non-warm-up) chunks
    def chunk(self, k):
        d = self._cmd("life", k)
        return d["lifecycle"], d

    def ref_chunk(self, k):
        d = self._cmd("ref", k)
        return d["subprocess"] + d["fork"], d

    def collect(self, contenders):
        for c in contenders:
            for d in c.raw:
                for key in self.samples:
                    self.samples[key].extend(d[key])

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.terminate()
                try:
                    self.p.wait(30)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait()


def run_heap(args, ctx, p):
    tools, cleanup, factory = ctx["tools"], ctx["cleanup"], ctx["factory"]
    levels, note = heap_levels()
    C.log(f"(a) heap: workers holding {[round(x / GiB, 2) for x in levels]} GiB")
    workers = [Worker(h, tools, factory.root, cleanup, i) for i, h in enumerate(levels)]
    try:
        for w in workers:
            w.wait_ready()
        # Lifecycle chunks back to back (no idle gap between them: see README on the
        # cgroup v1 migration's RCU grace period), then the references in their own rounds.
        contenders = [C.Contender(f"{w.heap / GiB:g} GiB", w.chunk, p["heap_k"]) for w in workers]
        C.interleave(contenders, p["heap_rounds"], seed=4)
        refs = [C.Contender(f"ref {w.heap / GiB:g} GiB", w.ref_chunk, p["heap_k"]) for w in workers]
        C.interleave(refs, max(2, p["heap_rounds"] // 4), seed=5)
        for w, c, r in zip(workers, contenders, refs):
            w.collect([c, r])
    finally:
        for w in workers:
            w.stop()
    rows = []
    res = {"note": note, "levels": []}
    for w in workers:
        lv = {"heap_bytes": w.heap, "worker_rss": w.info["rss"],
              **{k: {"summary": C.summarize(v), "samples_us": v} for k, v in w.samples.items()}}
        res["levels"].append(lv)
    for key, label in (("lifecycle", "pycontainer lifecycle"), ("subprocess", "subprocess.run"),
                       ("fork", "os.fork+exit+wait")):
        for w, lv in zip(workers, res["levels"]):
            rows.append((f"{label} @ {w.heap / GiB:g} GiB", lv[key]["summary"], ""))
    text = C.table("(a) full lifecycle vs heap of the calling process (us); " + note, rows,
                   reference=f"pycontainer lifecycle @ {levels[0] / GiB:g} GiB")
    return res, text


# --- (b) + (d) other containers -----------------------------------------------------------

def fd_count():
    return len(os.listdir("/proc/self/fd"))


def run_levels(args, ctx, p):
    pc, factory, tools, cleanup = ctx["pc"], ctx["factory"], ctx["tools"], ctx["cleanup"]
    config = pc.Config(rootfs=tools.rootfs)
    sleeper = pc.ProcessConfig(args=["/bin/sleep", "100000"])
    true = pc.ProcessConfig(args=["/bin/true"])
    target = factory.create(f"{C.RUN_TAG}-target", config)
    cleanup.push(target.destroy)
    target.start(sleeper)
    others = []

    def destroy_others():
        while others:
            others.pop().destroy()
    cleanup.push(destroy_others)

    def add_others(n, prefix="other"):
        base = len(others)
        for i in range(n):
            c = factory.create(f"{C.RUN_TAG}-{prefix}-{base + i}", config)
            others.append(c)
            c.start(sleeper)

    def join(k):
        out = []
        for _ in range(k):
            t0 = time.perf_counter_ns()
            _, q = target.start(true)
            st = q.get(timeout=30)
            out.append((time.perf_counter_ns() - t0) / 1e3)
            if st != 0:
                raise RuntimeError(f"/bin/true exited {st}")
        return out

    def timed(fn):
        def chunk(k):
            out = []
            for _ in range(k):
                t0 = time.perf_counter_ns()
                fn()
                out.append((time.perf_counter_ns() - t0) / 1e3)
            return out
        return chunk

    res = {"levels": []}
    mem = {}
    gc.collect()
    rss0, fd0 = C.rss_bytes(), fd_count()
    schedule = [(n, f"{n}") for n in p["levels"]] + [(0, "0 (after)")]
    for n, label in schedule:
        if n > len(others):
            t0 = time.monotonic()
            add_others(n - len(others))
            C.log(f"(b) {n} other containers running (started in {time.monotonic() - t0:.1f} s)")
            if n == max(p["levels"]):
                gc.collect()
                mem["rss_per_container_bytes"] = (C.rss_bytes() - rss0) / n
                mem["fds_per_container"] = (fd_count() - fd0) / n
                mem["containers"] = n
        elif n < len(others):
            t0 = time.monotonic()
            # (d) tracemalloc on 100 more before tearing down
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            add_others(p["trace_n"], prefix="traced")
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            mem["tracemalloc_per_container_bytes"] = (after - before) / p["trace_n"]
            mem["tracemalloc_containers"] = p["trace_n"]
            destroy_others()
            C.log(f"(b) destroyed the others in {time.monotonic() - t0:.1f} s")
        contenders = [C.Contender("join", join, p["level_k"]),
                      C.Contender("processes()", timed(target.processes), p["level_k"]),
                      C.Contender("stats()", timed(target.stats), p["level_k"])]
        C.interleave(contenders, p["level_rounds"], seed=5 + n)
        res["levels"].append({"others": n, "label": label, **{
            c.name: {"summary": C.summarize(c.samples), "samples_us": c.samples}
            for c in contenders}})
    rows = []
    for name in ("join", "processes()", "stats()"):
        for lv in res["levels"]:
            rows.append((f"{name} @ {lv['label']} others", lv[name]["summary"], ""))
    text = C.table("(b) cost with other containers running (us)", rows, reference="join @ 0 others")
    res["memory"] = mem
    mtext = ("(d) memory per idle container in this process: RSS "
             f"{mem.get('rss_per_container_bytes', 0) / 1024:.1f} KiB, "
             f"{mem.get('fds_per_container', 0):.2f} fds (over 0 -> {mem.get('containers')}); "
             f"tracemalloc {mem.get('tracemalloc_per_container_bytes', 0) / 1024:.1f} KiB "
             f"(over {mem.get('tracemalloc_containers')} more)")
    print(mtext, flush=True)
    return res, text + "\n" + mtext


# --- (c) simultaneous exits ---------------------------------------------------------------

def threads_now():
    return {"active_count": threading.active_count(),
            "os_threads": int(C.proc_status("Threads")),
            "names": sorted(t.name for t in threading.enumerate())}


def run_exits(args, ctx, p):
    pc, factory, tools, cleanup = ctx["pc"], ctx["factory"], ctx["tools"], ctx["cleanup"]
    from pycontainer import exits as pc_exits
    reps = []
    n = p["exit_n"]
    for rep in range(p["exit_reps"]):
        c = factory.create(f"{C.RUN_TAG}-exits-{rep}", pc.Config(rootfs=tools.rootfs))
        entry = cleanup.push(c.destroy)
        r = w = -1
        watch = None
        try:
            c.start(pc.ProcessConfig(args=["/bin/sleep", "100000"]))
            threads_before = threads_now()
            r, w = os.pipe()
            reader = pc.ProcessConfig(args=["/bin/cat"], stdin=r)
            pids, queues = [], []
            t0 = time.monotonic()
            for _ in range(n):
                pid, q = c.start(reader)
                pids.append(pid)
                queues.append(q)
            start_s = time.monotonic() - t0
            os.close(r)
            r = -1
            threads_running = threads_now()
            watch = subprocess.Popen([tools.exitwatch], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
            watch.stdin.write("".join(f"{x}\n" for x in pids) + "\n")
            watch.stdin.flush()
            if watch.stdout.readline().strip() != "ready":
                raise RuntimeError("exitwatch did not start")
            arrivals = []
            t_close = time.monotonic_ns()
            os.close(w)
            w = -1
            statuses = []
            for q in queues:
                statuses.append(q.get(timeout=120))
                arrivals.append(time.monotonic_ns())
            t_done = arrivals[-1]
            threads_after = threads_now()
            kern = json.loads(watch.communicate(timeout=120)[0])
            watch = None
            last_exit = max(kern["times_ns"])
            first_exit = min(kern["times_ns"])
            rec = {
                "n": n, "start_all_s": start_s, "statuses_nonzero": sum(1 for s in statuses if s != 0),
                "close_to_first_exit_ms": (first_exit - t_close) / 1e6,
                "close_to_last_exit_ms": (last_exit - t_close) / 1e6,
                "close_to_all_delivered_ms": (t_done - t_close) / 1e6,
                "last_exit_to_all_delivered_ms": (t_done - last_exit) / 1e6,
                "exitwatch_realtime": bool(kern.get("rt")),
                "exit_times_ms": [(t - t_close) / 1e6 for t in kern["times_ns"]],
                "exit_counts": kern["counts"],
                "arrival_ms": [(t - t_close) / 1e6 for t in arrivals],
                "threads_before": threads_before, "threads_running": threads_running,
                "threads_after": threads_after, "watcher_threads": pc_exits.WATCHER.thread_count(),
            }
            reps.append(rec)
            C.log(f"(c) rep {rep + 1}: {n} started in {start_s:.2f} s; last exit "
                  f"{rec['close_to_last_exit_ms']:.1f} ms after the close, all delivered "
                  f"{rec['last_exit_to_all_delivered_ms']:.1f} ms after the last exit")
        finally:
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
            if watch is not None:
                watch.kill()
                watch.wait()
            c.destroy()
            cleanup.discard(entry)
    worst = max(reps, key=lambda x: x["last_exit_to_all_delivered_ms"])
    lines = [f"\n== (c) {n} processes exiting at once ({len(reps)} reps) =="]
    for i, x in enumerate(reps):
        lines.append(
            f"rep {i + 1}: start {n}: {x['start_all_s']:.2f} s; close -> last exit "
            f"{x['close_to_last_exit_ms']:.1f} ms; close -> all {n} statuses in queues "
            f"{x['close_to_all_delivered_ms']:.1f} ms; last exit -> all delivered "
            f"{x['last_exit_to_all_delivered_ms']:.1f} ms; non-zero statuses {x['statuses_nonzero']}"
            f"{'' if x['exitwatch_realtime'] else ' (exitwatch without SCHED_FIFO: exit times late)'}")
        lines.append(
            f"       threads (os / threading): before {x['threads_before']['os_threads']}/"
            f"{x['threads_before']['active_count']}, {n} running "
            f"{x['threads_running']['os_threads']}/{x['threads_running']['active_count']}, after "
            f"{x['threads_after']['os_threads']}/{x['threads_after']['active_count']} "
            f"{x['threads_after']['names']}; exit-watcher threads {x['watcher_threads']}")
    text = "\n".join(lines)
    print(text, flush=True)
    return {"reps": reps, "worst_delivery_ms": worst["last_exit_to_all_delivered_ms"]}, text


# --- all of it ----------------------------------------------------------------------------

def run_scaling(args, ctx):
    p = plan(args)
    out, texts = {"plan": p}, []
    C.log("scaling (a) heap")
    out["heap"], t = run_heap(args, ctx, p)
    texts.append(t)
    C.log("scaling (b)/(d) other containers")
    out["containers"], t = run_levels(args, ctx, p)
    texts.append(t)
    C.log("scaling (c) simultaneous exits")
    out["exits"], t = run_exits(args, ctx, p)
    texts.append(t)
    out["targets"] = targets(out)
    return out, texts


def targets(s):
    rows = []
    lv = s["heap"]["levels"]
    base, top = lv[0]["lifecycle"]["summary"], lv[-1]["lifecycle"]["summary"]
    r = top["median_us"] / base["median_us"]
    rows.append((f"lifecycle @ {lv[-1]['heap_bytes'] / GiB:g} GiB heap <= 1.2x @ 0",
                 f"{r:.2f}x (median {top['median_us']:.0f} vs {base['median_us']:.0f} us; "
                 f"p90 ratio {top['p90_us'] / base['p90_us']:.2f}x)", r <= 1.2))
    levels = s["containers"]["levels"]
    j0 = next(x for x in levels if x["label"] == "0")["join"]["summary"]
    jmax_lv = max((x for x in levels if x["label"] != "0 (after)"), key=lambda x: x["others"])
    jm = jmax_lv["join"]["summary"]
    after = next(x for x in levels if x["label"] == "0 (after)")["join"]["summary"]
    r = jm["median_us"] / j0["median_us"]
    rows.append((f"join @ {jmax_lv['others']} containers <= 1.5x @ 0",
                 f"{r:.2f}x (median {jm['median_us']:.0f} vs {j0['median_us']:.0f} us; "
                 f"0 again after: {after['median_us']:.0f} us)", r <= 1.5))
    reps = s["exits"]["reps"]
    counts = {x["threads_running"]["os_threads"] for x in reps} | \
        {x["threads_before"]["os_threads"] for x in reps}
    watchers = {x["watcher_threads"] for x in reps}
    ok = watchers == {1} and len(counts) == 1
    rows.append(("one exit-watcher thread regardless of count",
                 f"watcher threads {sorted(watchers)}; process threads {sorted(counts)} with 1 "
                 f"and {reps[0]['n']} processes", ok))
    worst = s["exits"]["worst_delivery_ms"]
    rows.append((f"{reps[0]['n']} exits delivered <= 100 ms after the last",
                 f"{worst:.1f} ms (worst of {len(reps)})", worst <= 100))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json")
    ap.add_argument("--plot")
    ap.add_argument("--state-on-disk", action="store_true",
                    help="pycontainer's state root in /run/<tag> (default: a private tmpfs)")
    ap.add_argument("--worker-heap", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--worker-rootfs", help=argparse.SUPPRESS)
    ap.add_argument("--worker-root", help=argparse.SUPPRESS)
    ap.add_argument("--worker-tag", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_heap is not None:
        return worker_main(args.worker_heap, args.worker_rootfs, args.worker_root, args.worker_tag)
    import _driver as D
    return D.run(args, [("scaling", run_scaling)], lambda data: data["scaling"].get("targets", []))

if __name__ == "__main__":
    sys.exit(main())

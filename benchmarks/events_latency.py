"""Event latencies: from an OOM kill to its notification, and from a process exit to its
awaited status, each over N runs (median, p90, p99 in µs).

    python benchmarks/events_latency.py [--runs 100] [--json FILE]

Root only. One container (busybox rootfs, memory limit 32 MiB, memory+swap 32 MiB) runs
`sleep`; every run starts a second process in it and measures one delivery path. Runs of
the different paths are interleaved (one of each per round), so drift and neighbours' load
hit every path alike.

How the kernel's side is timed:

- process exit: `exitwatch` (the harness's C helper, benchmarks/_common.py) holds a pidfd of
  the process and waits in epoll at SCHED_FIFO priority; its CLOCK_MONOTONIC reading on
  wake-up is the exit as the kernel reports it (its own wake-up costs a few µs and is
  included in that reference, not in our latency). The process is `sh -c 'read x; ...'`,
  released by a write to its stdin once exitwatch is ready.
- OOM kill: the kernel log. Every OOM report carries printk timestamps (local_clock) of
  "<comm> invoked oom-killer" (cgroup v1 signals the OOM eventfd just before printing it) and
  of "Killed process <pid>" (the SIGKILL). Each run first writes a marker record to
  /dev/kmsg between two CLOCK_MONOTONIC readings, which maps that run's kernel timestamps to
  CLOCK_MONOTONIC (error: half the write's duration, printed). The victim (`dd bs=64M` in
  the 32 MiB cgroup) is also watched by exitwatch: its exit comes after the kill, once its
  memory is freed. The report itself (dump_header, printed to the console) takes
  milliseconds between "invoked" and "Killed"; notification does not wait for it.

Paths: OOM -> Container.notify_oom() queue item (one thread), -> Container.events() "oom"
event (one thread), -> Container.events_async() "oom" event (asyncio loop); exit ->
Container.start_async() future on asyncio's loop and on uvloop (the awaiting coroutine's
wake-up), and -> Container.start()'s exit queue (the exit watcher thread), for reference.
Our side is time.monotonic_ns() in the consumer right after it got the item. The floor for
the OOM paths is "C eventfd waiter": a C program doing only the kernel's part (its own
eventfd on memory.oom_control, poll, clock_gettime), scheduled like our threads.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import EXITWATCH_C, RUN_TAG, build_busybox_rootfs, compile_c, log, \
    machine_context, summarize, write_json  # noqa: E402

import pycontainer as pc  # noqa: E402

OOM_VICTIM = "read x; exec dd if=/dev/zero of=/dev/null bs=64M count=1"

# The floor for OOM delivery: a C program (normal scheduling class, as our threads) that
# registers its own eventfd on memory.oom_control, prints "ready", and on wake-up prints
# its CLOCK_MONOTONIC reading in ns.
OOMWATCH_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char path[4096], line[64];
	if (argc != 2) return 2;
	int efd = eventfd(0, EFD_CLOEXEC);
	snprintf(path, sizeof path, "%s/memory.oom_control", argv[1]);
	int ofd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof path, "%s/cgroup.event_control", argv[1]);
	int cfd = open(path, O_WRONLY | O_CLOEXEC);
	if (efd < 0 || ofd < 0 || cfd < 0) { perror("oomwatch: open"); return 1; }
	int n = snprintf(line, sizeof line, "%d %d", efd, ofd);
	if (write(cfd, line, n) != n) { perror("oomwatch: event_control"); return 1; }
	printf("ready\n"); fflush(stdout);
	struct pollfd p = { .fd = efd, .events = POLLIN };
	if (poll(&p, 1, 60000) != 1) { fprintf(stderr, "oomwatch: timeout\n"); return 1; }
	struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
	printf("%lld\n", t.tv_sec * 1000000000LL + t.tv_nsec);
	return 0;
}
"""


class Kmsg:
    """/dev/kmsg from now on: records as (kernel µs, text); marks to calibrate."""

    def __init__(self):
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.seq = 0

    def records(self):
        out = []
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return out
            except BrokenPipeError:          # overwritten while we read: skip ahead
                continue
            head, _, text = rec.partition(";")
            fields = head.split(",")
            out.append((int(fields[2]), text.split("\n")[0]))

    def mark(self):
        """(kernel µs - CLOCK_MONOTONIC µs) for this moment, and its uncertainty in µs."""
        self.records()                       # drain
        self.seq += 1
        tag = f"{RUN_TAG} calibration {self.seq}"
        # A descriptor of its own: writes to /dev/kmsg are rate-limited per open file
        # (printk_devkmsg=ratelimit: 10 per 5 s).
        wfd = os.open("/dev/kmsg", os.O_WRONLY | os.O_CLOEXEC)
        try:
            t0 = time.monotonic_ns()
            os.write(wfd, f"<6>{tag}\n".encode())
            t1 = time.monotonic_ns()
        finally:
            os.close(wfd)
        for ts, text in self.records():
            if text.endswith(tag):
                return ts - (t0 + t1) / 2000, (t1 - t0) / 2000
        raise RuntimeError("calibration record not found in /dev/kmsg")

    def close(self):
        os.close(self.fd)


class ExitWatch:
    """exitwatch on one pid: started before the process is released."""

    def __init__(self, binary, pid):
        self.p = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.p.stdin.write(f"{pid}\n\n")
        self.p.stdin.flush()
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("exitwatch did not start")

    def exit_time_us(self):
        out, _ = self.p.communicate(timeout=30)
        data = json.loads(out)
        if data.get("left"):
            raise RuntimeError("exitwatch saw no exit")
        return data["times_ns"][0] / 1000


def _held(c, script):
    """Start `sh -c script` (reads a line first) in c: (pid, exits, write end)."""
    r, w = os.pipe()
    try:
        pid, exits = c.start(pc.ProcessConfig(args=["sh", "-c", script], stdin=r))
    finally:
        os.close(r)
    return pid, exits, w


def _release(w):
    os.write(w, b"go\n")
    os.close(w)


def _oom_report(kmsg, offset, pid):
    """Kernel times (µs, CLOCK_MONOTONIC) of 'invoked oom-killer' and 'Killed process pid'."""
    invoked = killed = None
    for ts, text in kmsg.records():
        if "invoked oom-killer" in text and invoked is None:
            invoked = ts - offset
        m = re.search(r"Killed process (\d+)", text)
        if m and int(m.group(1)) == pid:
            killed = ts - offset
    if killed is None:
        raise RuntimeError(f"no 'Killed process {pid}' in /dev/kmsg")
    return invoked, killed        # invoked: None when the kernel rate-limited the report


def oom_run(c, kmsg, exitwatch_bin, path, runner, oomwatch_bin=None):
    """One OOM, delivered through `path`; latencies in µs against three kernel times."""
    pid, exits, w = _held(c, OOM_VICTIM)
    watch = ExitWatch(exitwatch_bin, pid)
    offset, err = kmsg.mark()
    if path == "C eventfd waiter":
        memcg = c.internal.cgroups.v1["memory"]     # a hybrid or v1 host (memory.oom_control)
        p = subprocess.Popen([oomwatch_bin, memcg], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "ready"
            _release(w)
            t_event = int(p.stdout.readline()) / 1000
        finally:
            p.wait()
    elif path == "events_async":
        async def run():
            stream = c.events_async(interval=3600, stats=False)

            async def receive():
                async for ev in stream:
                    if ev.type == "oom":
                        return time.monotonic_ns() / 1000
            try:
                task = asyncio.ensure_future(receive())
                await asyncio.sleep(0.01)      # the loop now waits in epoll on the readers
                _release(w)
                return await asyncio.wait_for(task, 30)
            finally:
                await stream.aclose()
        t_event = runner.run(run())
    else:
        sub = c.notify_oom() if path == "notify_oom" else c.events(interval=3600, stats=False)
        try:
            _release(w)                        # the consumer blocks below before the OOM
            if path == "notify_oom":
                assert sub.get(timeout=30) == 1
            else:
                assert next(ev for ev in sub if ev.type == "oom")
            t_event = time.monotonic_ns() / 1000
        finally:
            sub.close()
    assert exits.get(timeout=30) == -9
    t_exit = watch.exit_time_us()
    invoked, killed = _oom_report(kmsg, offset, pid)
    return {"from_invoked": None if invoked is None else t_event - invoked,
            "from_killed": t_event - killed, "from_exit": t_event - t_exit,
            "invoked_to_killed": None if invoked is None else killed - invoked,
            "killed_to_exit": t_exit - killed, "calibration_err": err}


def exit_run(c, exitwatch_bin, path, runners):
    """One exit (`exit 7`), its status delivered through `path`; µs after the exit."""
    if path == "start+queue":
        pid, exits, w = _held(c, "read x; exit 7")
        watch = ExitWatch(exitwatch_bin, pid)
        _release(w)
        assert exits.get(timeout=30) == 7
        t = time.monotonic_ns() / 1000
        return t - watch.exit_time_us()

    async def one():
        r, w = os.pipe()
        try:
            pid, future = await c.start_async(pc.ProcessConfig(
                args=["sh", "-c", "read x; exit 7"], stdin=r))
        finally:
            os.close(r)
        watch = ExitWatch(exitwatch_bin, pid)
        _release(w)
        assert await asyncio.wait_for(future, 30) == 7
        t = time.monotonic_ns() / 1000
        return t - watch.exit_time_us()
    return runners[path].run(one())


def table(title, rows):
    print(f"\n{title}")
    print(f"  {'':46s} {'n':>4s} {'median':>9s} {'p90':>9s} {'p99':>9s}")
    for name, s in rows:
        if not s["n"]:
            print(f"  {name:46s}    0")
            continue
        print(f"  {name:46s} {s['n']:4d} {s['median_us']:9.0f} {s['p90_us']:9.0f} "
              f"{s['p99_us']:9.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--json", help="write every sample and summary here")
    ap.add_argument("--pace", type=float, default=0.0, metavar="S",
                    help="sleep S seconds after each OOM: the kernel prints the full OOM "
                         "report (with 'invoked oom-killer') at most 10 times per 5 s")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("root only")
    try:
        import uvloop
    except ImportError:
        uvloop = None
        log("uvloop is not installed: its rows are skipped")
    tmp = tempfile.mkdtemp(prefix=f"{RUN_TAG}-")
    factory = pc.Factory(root=os.path.join(tmp, "state"))
    c = None
    kmsg = Kmsg()
    runners = {"start_async (asyncio)": asyncio.Runner(loop_factory=asyncio.new_event_loop)}
    if uvloop is not None:
        runners["start_async (uvloop)"] = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    before = machine_context()
    try:
        rootfs = build_busybox_rootfs(os.path.join(tmp, "rootfs"))
        exitwatch = compile_c(EXITWATCH_C, os.path.join(tmp, "exitwatch"))
        oomwatch = compile_c(OOMWATCH_C, os.path.join(tmp, "oomwatch"))
        c = factory.create(f"{RUN_TAG}-ev", pc.Config(rootfs=rootfs, resources=pc.Resources(
            memory_limit=32 << 20, memory_swap=32 << 20)))
        c.start(pc.ProcessConfig(args=["sleep", "1000000"]))
        oom_paths = ["notify_oom", "events", "events_async", "C eventfd waiter"]
        exit_paths = ["start+queue", *runners]
        oom = {p: [] for p in oom_paths}
        exits = {p: [] for p in exit_paths}
        oom_runner = runners["start_async (asyncio)"]
        for i in range(args.runs + 1):             # round 0 warms up, not counted
            for p in oom_paths:
                sample = oom_run(c, kmsg, exitwatch, p, oom_runner, oomwatch)
                if i:
                    oom[p].append(sample)
                time.sleep(args.pace)
            for p in exit_paths:
                sample = exit_run(c, exitwatch, p, runners)
                if i:
                    exits[p].append(sample)
            if i % 10 == 0:
                log(f"round {i}/{args.runs}")
    finally:
        for r in runners.values():
            r.close()
        kmsg.close()
        if c is not None:
            c.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    after = machine_context()

    summaries = {"oom": {}, "exit": {}}
    rows = []
    for p in oom_paths:
        for ref, label in (("from_invoked", "'invoked oom-killer'"),
                           ("from_killed", "'Killed process'"),
                           ("from_exit", "victim's exit (pidfd)")):
            s = summarize([x[ref] for x in oom[p] if x[ref] is not None])
            summaries["oom"][f"{p} {ref}"] = s
            rows.append((f"{p}, after {label}", s))
    table("OOM kill -> notification, µs (negative: before it; 'invoked' only in runs whose "
          "report the kernel did not rate-limit)", rows)
    kernel = [(k, summarize([x[k] for p in oom_paths for x in oom[p] if x[k] is not None]))
              for k in ("invoked_to_killed", "killed_to_exit", "calibration_err")]
    table("the kernel's side of an OOM kill, µs (all runs)", kernel)
    summaries["oom"].update(dict(kernel))
    rows = []
    for p in exit_paths:
        s = summarize(exits[p])
        summaries["exit"][p] = s
        rows.append((p, s))
    table("process exit (pidfd readable, SCHED_FIFO watcher) -> status in hand, µs", rows)
    print(f"\nload average before {before['loadavg']}, after {after['loadavg']}; "
          f"{os.cpu_count()} CPUs, Linux {os.uname().release}")
    if args.json:
        write_json(args.json, {"summaries": summaries, "oom_samples": oom,
                               "exit_samples": exits, "before": before, "after": after})


if __name__ == "__main__":
    main()

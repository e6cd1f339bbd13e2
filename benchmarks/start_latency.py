#!/usr/bin/env python3
"""Start latency of pycontainer against runc, crun, plain subprocess and the C limit.

    python benchmarks/start_latency.py [--quick] [--runs N] [--json FILE] [--plot FILE.png]
                                       [--scaling] [--state-on-disk] [--sustained]

Scenarios (every one in interleaved rounds: each round runs one chunk of every contender,
in a shuffled order, so drift and a neighbour's load hit all of them alike):

1. full lifecycle: Factory.create + start(/bin/true) + exit status from the queue +
   destroy, default Config on a busybox rootfs; against `crun run`, `runc run` (an OCI
   bundle with the same image, namespaces and mounts), subprocess.run(["/bin/true"]) and
   `c_limit full` (the kernel work alone, including the kernel work of the default
   Config's security settings: masked/read-only paths, device policy, capability drop,
   no_new_privs, seccomp); `c_limit full (bare)` (none of the security work) is an
   information row for `pycontainer (no seccomp/caps/masks)`.
2. join: start(/bin/true) into a running container + its exit status; against
   `crun exec`, `runc exec`, `nsenter -a -t <init pid> /bin/true`, `c_limit join` and
   `c_limit join (bare)`.
   `pycontainer pooled`: the same lifecycle with create from a Pool (prepared sandboxes,
   pycontainer.pool), against the same subprocess.run row.
3. pause + resume: pause(), poll run_state() until PAUSED, resume(); against
   `crun pause` + `crun resume`, `runc pause` + `runc resume`, and the bare cgroup2
   writes (cgroup.freeze 1, read cgroup.events until "frozen 1", cgroup.freeze 0).
   Joins and pause/resume also run on a container Pool.create made.
4. throughput: containers/s (create + start(/bin/true) + exit + destroy) with 1, 2 and 8
   threads, unpooled and pooled; with 1, 2 and 8 asyncio tasks (create_async, start_async);
   next to `crun run` / `runc run` by as many parallel workers.
   --sustained: also pooled for 10 s (pool sizes 64 and 512, 2 and 8 threads) with the
   refill running, whether the refill keeps up (misses), and the refill's own cost per
   sandbox split into its parts (state + cgroups, the clone with its namespaces and
   mounts, the park), with the idle cost of a parked sandbox.

The state roots of pycontainer, runc and crun are on a private tmpfs mounted for the run
(--state-on-disk: /run/<tag> and the runtimes' default roots, as before). --scaling also
runs benchmarks/scaling.py's measurements. Needs root. Everything made is removed on
success, on error and on Ctrl-C (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common as C  # noqa: E402
import _driver as D  # noqa: E402

TARGETS = {             # from the issue
    "full_vs_c_limit": 1.3,
    "join_vs_c_limit": 1.3,
    "pause_vs_bare": 3.0,
    "heap_4g_vs_0": 1.2,
    "join_500_vs_0": 1.5,
    "exit_delivery_ms": 100.0,
    "pooled_vs_subprocess": 1.0,
}


def plan(args):
    """(rounds, samples per round for in-process/fast contenders, for runc/crun)."""
    if args.quick:
        rounds, k, k_rt = 30, 5, 2
    else:
        rounds, k, k_rt = 200, 10, 4
    if args.runs:
        rounds = args.runs
    return rounds, k, k_rt


# --- the contenders -----------------------------------------------------------------------

class PyLifecycle:
    """create + start(/bin/true) + status + destroy, with a per-phase split. With `pool`,
    create is pool.create (a prepared sandbox): the chunk first waits, untimed, until the
    pool is full again, so every timed create is a hit and the refill runs between chunks
    (beside the other contenders' chunks, as a server's idle time would)."""

    def __init__(self, pc, factory, config, tag="full", pool=None):
        self.pc, self.factory = pc, factory
        self.config = config                             # built once: a Config is reusable
        self.proc = pc.ProcessConfig(args=["/bin/true"])
        self.tag = tag
        self.pool = pool
        self.n = 0

    def chunk(self, k):
        out, phases = [], []
        T = time.perf_counter_ns
        if self.pool is not None:
            self.pool.wait_ready()
        create = self.pool.create if self.pool is not None else \
            (lambda cid: self.factory.create(cid, self.config))
        for _ in range(k):
            cid = f"{C.RUN_TAG}-{self.tag}-{self.n}"
            self.n += 1
            t0 = T()
            c = create(cid)
            t1 = T()
            try:
                _, q = c.start(self.proc)
                t2 = T()
                status = q.get(timeout=30)
                t3 = T()
            finally:
                c.destroy()
            t4 = T()
            if status != 0:
                raise RuntimeError(f"pycontainer /bin/true exited {status}")
            out.append((t4 - t0) / 1e3)
            phases.append([(t1 - t0) / 1e3, (t2 - t1) / 1e3, (t3 - t2) / 1e3, (t4 - t3) / 1e3])
        return out, phases


POOLED_NAME = "pycontainer pooled"
BARE_NAME = "pycontainer (no seccomp/caps/masks)"


def remove_pool_root(factory):
    """The pools' state root (<root>/.pool), empty once they are closed."""
    from pycontainer.pool import POOL_ROOT, remove_leftovers
    remove_leftovers(factory)
    try:
        os.rmdir(os.path.join(factory.root, POOL_ROOT))
    except FileNotFoundError:
        pass


def parked_cost(pool):
    """The idle cost of one parked init: its resident memory (of which most is shared
    with the process that forked it, copy-on-write) and its open descriptors."""
    pool.wait_ready()
    rss, private, fds = _memory_and_fds(pool.parked_pids()[0])
    return f"RSS {rss} KiB ({private} KiB private), {fds} descriptor(s)"


def _memory_and_fds(pid):
    """(RSS KiB, private KiB, open descriptors) of pid."""
    rss = private = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                private += int(line.split()[1])
    return rss, private, len(os.listdir(f"/proc/{pid}/fd"))
BARE_NOTE = ("Config(seccomp=None, capabilities=None, no_new_privileges=False, masked_paths=(), "
             "readonly_paths=()): about c_limit's work (the device policy stays)")


def bare_config(pc, rootfs):
    """A Config doing about what c_limit does: no seccomp filter, no capability drop, no
    masked/read-only paths. (config, None) or (None, why not)."""
    try:
        return pc.Config(rootfs=rootfs, seccomp=None, capabilities=None, no_new_privileges=False,
                         masked_paths=(), readonly_paths=()), None
    except (TypeError, ValueError) as exc:
        return None, f"this Config cannot turn the security features off: {exc}"


def timed_cmd(cmd, expect=0):
    """A chunk function running `cmd` k times, each timed around subprocess.run."""
    def chunk(k):
        out = []
        for _ in range(k):
            t0 = time.perf_counter_ns()
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            t1 = time.perf_counter_ns()
            if r.returncode != expect:
                raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: "
                                   f"{r.stderr.decode(errors='replace').strip()[:300]}")
            out.append((t1 - t0) / 1e3)
        return out
    return chunk


def timed_cmds(cmds):
    """Like timed_cmd, for a sequence of commands timed together (pause + resume)."""
    def chunk(k):
        out = []
        for _ in range(k):
            t0 = time.perf_counter_ns()
            for cmd in cmds:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
                if r.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: "
                                       f"{r.stderr.decode(errors='replace').strip()[:300]}")
            out.append((time.perf_counter_ns() - t0) / 1e3)
        return out
    return chunk


class BareFreezer:
    """A cgroup2 dir of our own (below our cgroup, in the `pycontainer` parent) holding one
    sleeping process; a cycle is the three bare writes/reads on pre-opened files."""

    def __init__(self, cleanup):
        own = C.unified_own_dir()
        if own is None:
            raise RuntimeError("no cgroup2 hierarchy")
        self.dir = os.path.join(own, "pycontainer", f"{C.RUN_TAG}-freezer")
        os.makedirs(os.path.dirname(self.dir), exist_ok=True)
        os.mkdir(self.dir)
        cleanup.push(C.rmdir_tree, self.dir)
        self.proc = subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL)
        cleanup.push(self._stop)
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(self.proc.pid))
        self.freeze_fd = os.open(os.path.join(self.dir, "cgroup.freeze"), os.O_WRONLY | os.O_CLOEXEC)
        self.events_fd = os.open(os.path.join(self.dir, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)

    def _stop(self):
        for fd in (self.freeze_fd, self.events_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        with open(os.path.join(self.dir, "cgroup.freeze"), "w") as f:
            f.write("0")
        self.proc.kill()
        self.proc.wait()

    def chunk(self, k):
        out = []
        w, pread, ffd, efd = os.write, os.pread, self.freeze_fd, self.events_fd
        for _ in range(k):
            t0 = time.perf_counter_ns()
            w(ffd, b"1")
            while b"frozen 1" not in pread(efd, 256, 0):
                pass
            w(ffd, b"0")
            out.append((time.perf_counter_ns() - t0) / 1e3)
        return out


def py_join_chunk(pc, c):
    proc = pc.ProcessConfig(args=["/bin/true"])

    def chunk(k):
        out = []
        for _ in range(k):
            t0 = time.perf_counter_ns()
            _, q = c.start(proc)
            status = q.get(timeout=30)
            out.append((time.perf_counter_ns() - t0) / 1e3)
            if status != 0:
                raise RuntimeError(f"joined /bin/true exited {status}")
        return out
    return chunk


def py_pause_chunk(pc, c):
    PAUSED = pc.RunState.PAUSED

    def chunk(k):
        out = []
        for _ in range(k):
            t0 = time.perf_counter_ns()
            c.pause()
            while c.run_state() is not PAUSED:
                pass
            c.resume()
            out.append((time.perf_counter_ns() - t0) / 1e3)
        return out
    return chunk


# --- the run ------------------------------------------------------------------------------

def progress(name):
    def p(done, total):
        C.log(f"  {name}: round {done}/{total}")
    return p


def run_scenarios(args, ctx):
    """The three scenarios. ctx: dict with pc, factory, tools, cleanup, results."""
    pc, factory, tools, cleanup = ctx["pc"], ctx["factory"], ctx["tools"], ctx["cleanup"]
    rounds, k, k_rt = plan(args)
    cg = C.RuntimeCgroups()
    cleanup.push(cg.remove_created)
    state = ctx["state"]
    runtimes = {n: C.OciRuntime(n, tools, cg, cleanup, root=state.runtime_root(n))
                for n in ("crun", "runc")}
    climit = C.CLimit(tools, cleanup) if tools.c_limit else None
    results, texts = {}, []

    def crun_note(rt):
        if rt.name == "crun" and rt.wrapped:
            return (f"runs under nsumount (unshare(CLONE_NEWNS) + umount {rt.wrapped} + exec "
                    f"crun): crun 1.8 refuses hybrid cgroups; see the nsumount row for that cost")
        return ""

    def skipped(name, why):
        c = C.Contender(name, None, 0, note=why)
        return c

    # 1. full lifecycle
    C.log(f"[1/4] full lifecycle: {rounds} rounds")
    py = PyLifecycle(pc, factory, pc.Config(rootfs=tools.rootfs))
    contenders = [C.Contender("pycontainer", py.chunk, k, note="default Config")]
    cleanup.push(remove_pool_root, factory)      # runs after every pool's close
    pool = factory.pool(pc.Config(rootfs=tools.rootfs), size=2 * k, refill_below=k)
    cleanup.push(pool.close)
    pooled = PyLifecycle(pc, factory, pool.config, "pooled", pool=pool)
    contenders.append(C.Contender(POOLED_NAME, pooled.chunk, k, note=(
        f"default Config, Pool(size={2 * k}, refill_below={k}): every create a hit, the "
        "refill between chunks (untimed), as in a server's idle moments; the throughput "
        "rows count the refill")))
    extra_rows = []
    bare_cfg, why = bare_config(pc, tools.rootfs)
    if bare_cfg is not None:
        contenders.append(C.Contender(BARE_NAME, PyLifecycle(pc, factory, bare_cfg, "bare").chunk,
                                      k, note=BARE_NOTE))
    else:
        extra_rows.append(skipped(BARE_NAME, why))
    for rt in runtimes.values():
        if rt.skip:
            extra_rows.append(skipped(f"{rt.name} run", rt.skip))
            continue
        cid, b = rt.bundle("run", ["/bin/true"])
        cleanup.push(rt.delete, cid)
        contenders.append(C.Contender(f"{rt.name} run", timed_cmd(rt.cmd("run", "-b", b, cid)),
                                      k_rt, note=crun_note(rt)))
    contenders.append(C.Contender("subprocess.run(/bin/true)", timed_cmd(["/bin/true"]), k))
    if runtimes["crun"].wrapped:
        contenders.append(C.Contender(
            "nsumount /bin/true", timed_cmd([tools.nsumount, runtimes["crun"].wrapped, "/bin/true"]),
            k, note="crun's wrapper alone: subtract its excess over subprocess.run from the crun rows"))
    add_climit(contenders, extra_rows, climit, "full", k)
    orders = C.interleave(contenders, rounds, seed=1, progress=progress("full"))
    texts.append(C.table("1. full lifecycle: create + start(/bin/true) + exit status + destroy (us)",
                         contenders + extra_rows, reference="pycontainer"))
    phase_names = ["create", "start", "wait exit", "destroy"]
    phases = [p for chunk in contenders[0].raw for p in chunk]
    split = {n: C.summarize([p[i] for p in phases]) for i, n in enumerate(phase_names)}
    line = "    pycontainer phases (median / p90 us): " + ", ".join(
        f"{n} {s['median_us']:.0f} / {s['p90_us']:.0f}" for n, s in split.items())
    print(line)
    texts.append(line)
    pooled_phases = [p for chunk in contenders[1].raw for p in chunk]
    pooled_split = {n: C.summarize([p[i] for p in pooled_phases])
                    for i, n in enumerate(phase_names)}
    line = "    pooled phases (median / p90 us): " + ", ".join(
        f"{n} {s['median_us']:.0f} / {s['p90_us']:.0f}" for n, s in pooled_split.items())
    ps = pool.stats()
    line += (f"\n    pool: {ps.hits} hits, {ps.misses} misses, {ps.refills} refills, "
             f"refill {ps.refill_mean_seconds * 1e6:.0f} us per sandbox (refill thread's "
             f"wall time); parked init: {parked_cost(pool)}")
    print(line)
    texts.append(line)
    # A pooled long-lived container for 2 and 3: the same interface once it runs.
    pooled_init = pool.create(f"{C.RUN_TAG}-longlived-pooled")
    cleanup.push(pooled_init.destroy)
    pooled_init.start(pc.ProcessConfig(args=["/bin/sleep", "100000"]))
    pool.close()
    results["full"] = scenario_record(contenders + extra_rows, orders, {
        "pycontainer_phases": split, "pooled_phases": pooled_split,
        "pool": {n: getattr(ps, n) for n in ("hits", "misses", "refills", "refill_seconds")}})

    # long-lived containers for 2 and 3
    init = factory.create(f"{C.RUN_TAG}-longlived", pc.Config(rootfs=tools.rootfs))
    cleanup.push(init.destroy)
    init_pid, _ = init.start(pc.ProcessConfig(args=["/bin/sleep", "100000"]))
    bare_init = None
    if bare_cfg is not None:
        bare_init = factory.create(f"{C.RUN_TAG}-longlived-bare", bare_cfg)
        cleanup.push(bare_init.destroy)
        bare_init.start(pc.ProcessConfig(args=["/bin/sleep", "100000"]))
    rt_ids = {}
    for rt in runtimes.values():
        if not rt.skip:
            rt_ids[rt.name] = rt.start_detached("sleep", ["/bin/sleep", "100000"])

    # 2. join
    C.log(f"[2/4] join: {rounds} rounds")
    contenders = [C.Contender("pycontainer", py_join_chunk(pc, init), k, note="default Config"),
                  C.Contender(POOLED_NAME, py_join_chunk(pc, pooled_init), k,
                              note="into a container Pool.create made")]
    extra_rows = []
    if bare_init is not None:
        contenders.append(C.Contender(BARE_NAME, py_join_chunk(pc, bare_init), k, note=BARE_NOTE))
    else:
        extra_rows.append(skipped(BARE_NAME, why))
    for rt in runtimes.values():
        if rt.skip:
            extra_rows.append(skipped(f"{rt.name} exec", rt.skip))
            continue
        contenders.append(C.Contender(f"{rt.name} exec",
                                      timed_cmd(rt.cmd("exec", rt_ids[rt.name], "/bin/true")),
                                      k_rt, note=crun_note(rt)))
    contenders.append(C.Contender("nsenter -a", timed_cmd(
        ["nsenter", "-a", "-t", str(init_pid), "/bin/true"]), k,
        note="joins the namespaces only, not the cgroups"))
    add_climit(contenders, extra_rows, climit, "join", k)
    orders = C.interleave(contenders, rounds, seed=2, progress=progress("join"))
    texts.append(C.table("2. join: start(/bin/true) into a running container + exit status (us)",
                         contenders + extra_rows, reference="pycontainer"))
    results["join"] = scenario_record(contenders + extra_rows, orders)

    # 3. pause + resume
    C.log(f"[3/4] pause + resume: {rounds} rounds")
    contenders = [C.Contender("pycontainer", py_pause_chunk(pc, init), k,
                              note="cgroup2 cgroup.freeze (hybrid host: pycontainer freezes on v2)"),
                  C.Contender(POOLED_NAME, py_pause_chunk(pc, pooled_init), k,
                              note="a container Pool.create made")]
    extra_rows = []
    for rt in runtimes.values():
        if rt.skip:
            extra_rows.append(skipped(f"{rt.name} pause+resume", rt.skip))
            continue
        cid = rt_ids[rt.name]
        contenders.append(C.Contender(f"{rt.name} pause+resume", timed_cmds(
            [rt.cmd("pause", cid), rt.cmd("resume", cid)]), k_rt,
            note="; ".join(x for x in ("v1 freezer" + (" (crun sees no cgroup2)" if rt.wrapped else ""),
                                       crun_note(rt)) if x)))
    try:
        bare = BareFreezer(cleanup)
        contenders.append(C.Contender("bare cgroup.freeze writes", bare.chunk, k,
                                      note="write 1, pread cgroup.events until 'frozen 1', write 0"))
    except (OSError, RuntimeError) as exc:
        extra_rows.append(skipped("bare cgroup.freeze writes", str(exc)))
    orders = C.interleave(contenders, rounds, seed=3, progress=progress("pause"))
    texts.append(C.table("3. pause + resume: pause, until PAUSED, resume (us)",
                         contenders + extra_rows, reference="pycontainer"))
    results["pause"] = scenario_record(contenders + extra_rows, orders)

    # 4. throughput
    seconds = 2.0 if args.quick else 10.0
    C.log(f"[4/4] throughput: {seconds:.0f} s per row")
    rows, text = throughput(pc, factory, tools.rootfs, seconds, cleanup, runtimes)
    print(text)
    texts.append(text)
    results["throughput"] = rows
    if args.sustained:
        C.log("[+] sustained pooled throughput, 10 s per row, and the refill's cost")
        rows, text = sustained(pc, factory, tools.rootfs, cleanup)
        print(text)
        texts.append(text)
        results["sustained"] = rows
        prof, text = refill_profile(pc, factory, tools.rootfs)
        print(text)
        texts.append(text)
        results["refill_profile"] = prof
    return results, texts


def _in_threads(n, seconds, one):
    """n threads, each calling one(i, j) for j = 0, 1, ... until `seconds` are up.
    Returns (calls, elapsed); the first error of any thread is raised."""
    import threading
    counts, errors = [0] * n, []
    stop = time.monotonic() + seconds

    def worker(i):
        try:
            while time.monotonic() < stop:
                one(i, counts[i])
                counts[i] += 1
        except Exception as exc:      # reported below, not lost in the thread
            errors.append(exc)
    began = time.monotonic()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts), time.monotonic() - began


def _lifecycles(pc, create, proc, prefix, n, seconds):
    """n threads, each: create + start + exit + destroy until `seconds` are up. Returns
    (containers, elapsed)."""
    def one(i, j):
        c = create(f"{prefix}-{i}-{j}")
        try:
            _, q = c.start(proc)
            if q.get(timeout=30) != 0:
                raise RuntimeError("/bin/true failed")
        finally:
            c.destroy()
    return _in_threads(n, seconds, one)


def _lifecycles_async(pc, create_async, proc, prefix, n, seconds):
    """The same with n asyncio tasks in one loop: create_async, start_async, await the
    exit future, destroy."""
    import asyncio
    counts = [0] * n

    async def task(i, stop):
        j = 0
        while time.monotonic() < stop:
            c = await create_async(f"{prefix}-{i}-{j}")
            j += 1
            try:
                _, exited = await c.start_async(proc)
                if await exited != 0:
                    raise RuntimeError("/bin/true failed")
            finally:
                c.destroy()
            counts[i] += 1

    async def main():
        stop = time.monotonic() + seconds
        await asyncio.gather(*(task(i, stop) for i in range(n)))
    began = time.monotonic()
    asyncio.run(main())
    return sum(counts), time.monotonic() - began


def _runtime_runs(rt, n, seconds, cleanup):
    """n workers each running `<rt> run -b <its bundle> <its id>` (/bin/true) in a loop
    for `seconds`: the OCI runtime's containers/s at that parallelism."""
    bundles = []
    for i in range(n):
        cid, b = rt.bundle(f"tp{n}x{i}", ["/bin/true"])
        cleanup.push(rt.delete, cid)
        bundles.append((cid, b))

    def one(i, j):
        cid, b = bundles[i]
        cmd = rt.cmd("run", "-b", b, cid)
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: "
                               f"{r.stderr.decode(errors='replace').strip()[:300]}")
    return _in_threads(n, seconds, one)


def throughput(pc, factory, rootfs, seconds, cleanup, runtimes=None, threads=(1, 2, 8),
               pool_size=64):
    """Containers created, started (/bin/true), run to exit and destroyed per second by N
    threads (or N asyncio tasks) for `seconds`, unpooled and from one Pool(size=pool_size)
    whose refill thread runs meanwhile (its work counts: the rate is what the machine
    sustains, misses included); and `crun run` / `runc run` by N parallel workers."""
    config = pc.Config(rootfs=rootfs)
    proc = pc.ProcessConfig(args=["/bin/true"])
    rows, lines = [], [f"== 4. throughput: containers/s, create + start(/bin/true) + exit + "
                       f"destroy, N threads (tasks, workers) for {seconds:.0f} s =="]
    lines.append(f"{'mode':<18}{'N':>4}{'containers/s':>15}{'hits':>8}{'misses':>8}")
    modes = ["unpooled", "pooled", "asyncio unpooled", "asyncio pooled"]
    modes += [f"{rt.name} run" for rt in (runtimes or {}).values() if not rt.skip]
    for mode in modes:
        for n in threads:
            pool = None
            if "pooled" in mode and "unpooled" not in mode:
                pool = factory.pool(config, size=pool_size)
                cleanup.push(pool.close)
                pool.wait_ready()
            prefix = f"{C.RUN_TAG}-tp-{mode.replace(' ', '_')}-{n}"
            if mode.endswith(" run"):
                count, elapsed = _runtime_runs(runtimes[mode.split()[0]], n, seconds, cleanup)
            elif mode.startswith("asyncio"):
                create = pool.create_async if pool is not None else \
                    (lambda cid: factory.create_async(cid, config))
                count, elapsed = _lifecycles_async(pc, create, proc, prefix, n, seconds)
            else:
                create = pool.create if pool is not None else \
                    (lambda cid: factory.create(cid, config))
                count, elapsed = _lifecycles(pc, create, proc, prefix, n, seconds)
            hits = misses = None
            if pool is not None:
                st = pool.stats()
                hits, misses = st.hits, st.misses
                pool.close()
            rate = count / elapsed
            rows.append({"mode": mode, "threads": n, "per_s": rate, "hits": hits,
                         "misses": misses, "seconds": elapsed})
            lines.append(f"{mode:<18}{n:>4}{rate:>15.0f}{'' if hits is None else hits:>8}"
                         f"{'' if misses is None else misses:>8}")
    return rows, "\n".join(lines)


def sustained(pc, factory, rootfs, cleanup, seconds=10.0, sizes=(64, 512), threads=(2, 8)):
    """Pooled lifecycles for `seconds` from a full Pool(size) with its refill running: the
    rate, the misses (creates the refill could not serve: 0 means it kept up) and what
    the refill thread did meanwhile."""
    config = pc.Config(rootfs=rootfs)
    proc = pc.ProcessConfig(args=["/bin/true"])
    rows = []
    lines = [f"== sustained pooled throughput, {seconds:.0f} s a row (refill running) ==",
             f"{'size':>6}{'threads':>8}{'containers/s':>14}{'hits':>8}{'misses':>8}"
             f"{'refills':>9}{'refill us/sandbox':>19}{'ready at end':>14}"]
    for size in sizes:
        for n in threads:
            pool = factory.pool(config, size=size)
            cleanup.push(pool.close)
            t0 = time.monotonic()
            pool.wait_ready()
            fill = time.monotonic() - t0
            before = pool.stats()
            count, elapsed = _lifecycles(pc, pool.create, proc,
                                         f"{C.RUN_TAG}-sus-{size}-{n}", n, seconds)
            st = pool.stats()
            pool.close()
            refills = st.refills - before.refills
            mean = ((st.refill_seconds - before.refill_seconds) / refills * 1e6) if refills else 0
            row = {"size": size, "threads": n, "per_s": count / elapsed, "hits": st.hits,
                   "misses": st.misses, "refills": refills, "refill_us": mean,
                   "ready_at_end": st.ready, "fill_s": fill, "seconds": elapsed}
            rows.append(row)
            lines.append(f"{size:>6}{n:>8}{row['per_s']:>14.0f}{st.hits:>8}{st.misses:>8}"
                         f"{refills:>9}{mean:>19.0f}{st.ready:>14}")
    return rows, "\n".join(lines)


def refill_profile(pc, factory, rootfs, n=40):
    """Where a refill's time goes, one sandbox at a time on the calling thread (no other
    work beside it): Factory.create in the pool root (state.json, the cgroups made and
    configured) and park (the clone with its namespaces, the init's mounts and the rest of
    its setup, the exec of the parked helper), for the default Config and for variants
    without a network namespace and without mounts besides the root (no /proc, /sys, /dev,
    masked or read-only paths): their differences are those parts' costs. And the idle
    cost of a parked sandbox: its init's memory and descriptors, its memory cgroup's
    usage (kernel objects: namespaces, mounts, page tables)."""
    import socket
    import statistics
    from pycontainer.container import build_security, derived
    variants = [
        ("default Config", pc.Config(rootfs=rootfs)),
        ("no network namespace", pc.Config(rootfs=rootfs,
                                           namespaces=("mount", "pid", "uts", "ipc"))),
        ("no network namespace, no mounts but the root",
         pc.Config(rootfs=rootfs, namespaces=("mount", "pid", "uts", "ipc"),
                   default_mounts=False, masked_paths=(), readonly_paths=())),
    ]
    sandboxes = type(factory)(os.path.join(factory.root, ".refill-profile"))
    out, lines = {}, ["== the refill's cost per sandbox (alone, median us) =="]
    lines.append(f"{'variant':<48}{'create (state+cgroups)':>24}{'park':>8}{'total':>8}")
    idle = None
    for label, config in variants:
        created, parked = [], []
        for i in range(n):
            t0 = time.perf_counter_ns()
            c = sandboxes.create(f"pool-{i:016x}", config)
            t1 = time.perf_counter_ns()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                with theirs:
                    pid, pidfd = c.internal.park(
                        theirs.fileno(), derived(c.config, "security", build_security))
                t2 = time.perf_counter_ns()
                if idle is None:
                    idle = _idle_cost(c, pid)
                os.close(pidfd)
            finally:
                ours.close()
                c.destroy()
            created.append((t1 - t0) / 1e3)
            parked.append((t2 - t1) / 1e3)
        a, b = statistics.median(created), statistics.median(parked)
        out[label] = {"create_us": a, "park_us": b}
        lines.append(f"{label:<48}{a:>24.0f}{b:>8.0f}{a + b:>8.0f}")
    try:
        os.rmdir(sandboxes.root)
    except OSError:
        pass
    d, nn, nm = (out[v[0]]["park_us"] for v in variants)
    out["split"] = {"network namespace": d - nn, "mounts but the root": nn - nm,
                    "clone, other namespaces, root, helper exec, park": nm,
                    "state + cgroups": out[variants[0][0]]["create_us"]}
    lines.append("    split of the default: " + ", ".join(
        f"{k} {v:.0f}" for k, v in out["split"].items()))
    out["idle"] = idle
    lines.append(f"    a parked sandbox idle: {idle}")
    return out, "\n".join(lines)


def _idle_cost(container, pid):
    rss, private, fds = _memory_and_fds(pid)
    try:
        usage = container.stats().cgroup_stats.memory_stats.usage.usage // 1024
        cg = f", memory cgroup {usage} KiB"
    except Exception as exc:     # noqa: BLE001 - informational
        cg = f", memory cgroup: {exc}"
    return f"init RSS {rss} KiB ({private} KiB private), {fds} descriptor(s){cg}"


CLIMIT_SECURE_NOTE = f"c_limit does the default Config's security work: {C.CLIMIT_SECURITY_WORK}"
CLIMIT_BARE_NOTE = ("no security work (c_limit without SECURITY_FILE): compare with "
                    f"'{BARE_NAME}'")


def add_climit(contenders, extra_rows, climit, mode, k):
    """`c_limit <mode>` with the security file (the target's reference) and
    `c_limit <mode> (bare)` without it, as contenders of the same interleaved rounds."""
    secure, bare = f"c_limit {mode}", f"c_limit {mode} (bare)"
    if not climit:
        for name in (secure, bare):
            extra_rows.append(C.Contender(name, None, 0, note="not built (gcc missing)"))
        return
    how = "in-C loop; pooled from per-chunk quantiles"
    missing = [n for n in climit.tools.notes if n.startswith("c_limit security file")]
    note = f"{CLIMIT_SECURE_NOTE}; {how}" + (f" (but: {'; '.join(missing)})" if missing else "")
    contenders.append(C.Contender(secure, lambda n: climit.chunk(mode, n, secure=True), k,
                                  note=note))
    contenders.append(C.Contender(bare, lambda n: climit.chunk(mode, n, secure=False), k,
                                  note=f"{CLIMIT_BARE_NOTE}; {how}"))


def scenario_record(contenders, orders, extra=None):
    rec = {"contenders": {}, "orders": orders}
    for c in contenders:
        rec["contenders"][c.name] = {"summary": C.summarize(c.samples), "note": c.note,
                                     "samples_us": c.samples, "per_round": c.per_round,
                                     "raw": c.raw}
    rec.update(extra or {})
    return rec


def median_of(results, scenario, name):
    try:
        s = results[scenario]["contenders"][name]["summary"]
        return s["median_us"] if s.get("n") else None
    except KeyError:
        return None


def p90_of(results, scenario, name):
    try:
        s = results[scenario]["contenders"][name]["summary"]
        return s["p90_us"] if s.get("n") else None
    except KeyError:
        return None


def evaluate_targets(results, scaling):
    """[(target, measured text, met or None)]"""
    out = []

    def ratio_row(label, scenario, num, den, limit):
        a, b = median_of(results, scenario, num), median_of(results, scenario, den)
        if a is None or b is None:
            out.append((label, "not measured", None))
            return
        a9, b9 = p90_of(results, scenario, num), p90_of(results, scenario, den)
        r = a / b
        out.append((label, f"{r:.2f}x (median {a:.0f} vs {b:.0f} us; p90 ratio {a9 / b9:.2f}x)",
                    r <= limit))

    if results:
        ratio_row("full lifecycle <= 1.3x c_limit full", "full", "pycontainer", "c_limit full",
                  TARGETS["full_vs_c_limit"])
        ratio_row("pooled full lifecycle <= 1.0x subprocess.run(/bin/true)", "full", POOLED_NAME,
                  "subprocess.run(/bin/true)", TARGETS["pooled_vs_subprocess"])
        for scen in ("join", "pause"):
            a, b = median_of(results, scen, POOLED_NAME), median_of(results, scen, "pycontainer")
            if a and b:
                out.append((f"  (info) {scen}, pooled container vs unpooled",
                            f"{a / b:.2f}x (median {a:.0f} vs {b:.0f} us)", "info"))
        ratio_row("join <= 1.3x c_limit join", "join", "pycontainer", "c_limit join",
                  TARGETS["join_vs_c_limit"])
        if median_of(results, "full", "c_limit full") or median_of(results, "join", "c_limit join"):
            out.append(("  c_limit full/join do the Config's security work:",
                        C.CLIMIT_SECURITY_WORK, "info"))
        ratio_row("pause+resume <= 3x bare freezer writes", "pause", "pycontainer",
                  "bare cgroup.freeze writes", TARGETS["pause_vs_bare"])
        for scen, what in (("full", "full lifecycle"), ("join", "join")):
            a = median_of(results, scen, BARE_NAME)
            b = median_of(results, scen, f"c_limit {scen} (bare)")
            if a and b:
                out.append((f"  (info) {what}, no seccomp/caps/masks, vs c_limit (bare)",
                            f"{a / b:.2f}x (median {a:.0f} vs {b:.0f} us)", "info"))
    if scaling:
        out.extend(scaling.get("targets", []))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds: under a minute")
    ap.add_argument("--runs", type=int, help="rounds per scenario (default 100, --quick 10)")
    ap.add_argument("--json", help="write every sample and summary here")
    ap.add_argument("--plot", help="draw the distributions and scaling curves into this PNG")
    ap.add_argument("--scaling", action="store_true", help="also run benchmarks/scaling.py")
    ap.add_argument("--sustained", action="store_true",
                    help="also 10 s of pooled throughput per row and the refill's cost split")
    ap.add_argument("--state-on-disk", action="store_true",
                    help="state roots as before: /run/<tag> for pycontainer, the default roots of "
                         "runc and crun (default: a private tmpfs for all three)")
    args = ap.parse_args(argv)
    import scaling as S
    parts = [("scenarios", run_scenarios)] + ([("scaling", S.run_scaling)] if args.scaling else [])
    return D.run(args, parts, lambda data: evaluate_targets(data.get("scenarios") or {},
                                                             data.get("scaling")))


if __name__ == "__main__":
    sys.exit(main())

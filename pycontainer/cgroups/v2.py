"""cgroup v2: the unified hierarchy.

On a pure v2 host the container's v2 dir carries everything. On a hybrid host (v1
controllers plus a controller-less cgroup2) it carries placement, freeze and kill only;
the limit writers and statistics readers here then never run (tests/unit covers the
writers on fake directories).
"""
from __future__ import annotations

import errno
import math
import os
import select
import signal
import time

from ..errors import ContainerSystemError
from . import fs
from ..stats import BlkioStatEntry, BlkioStats, CpuUsage, MemoryData, MemoryStats, PidsStats, \
    ThrottlingData
from .fs import MAX, list_procs, parse_keyed, read_int, read_optional, read_text, \
    write_text

# Controllers a container's limits and statistics use, as cgroup.controllers spells them.
CONTROLLERS = ("cpu", "cpuset", "hugetlb", "io", "memory", "pids")


def enable_controllers(d):
    """Delegate our controllers to the children of `d` (a parent this package made).
    Only controllers `d` has itself can be enabled; the ones the host binds to v1 or the
    caller's cgroup does not delegate are simply absent, and writing a limit of one of
    them later fails naming the missing file."""
    available = read_text(os.path.join(d, "cgroup.controllers")).split()
    enabled = read_text(os.path.join(d, "cgroup.subtree_control")).split()
    wanted = [c for c in CONTROLLERS if c in available and c not in enabled]
    if wanted:
        write_text(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))


# --- limits ---------------------------------------------------------------------------

def _write(d, name, value):
    controller = name.partition(".")[0]
    write_text(os.path.join(d, name), value,
               missing_hint=f" (the '{controller}' controller is not enabled for this cgroup: "
                            f"see {os.path.dirname(d)}/cgroup.subtree_control)")


def write_memory(d, r):
    """memory.max and memory.swap.max. v2 limits swap alone, so the memory+swap total of
    Resources (runc's convention) becomes swap = total - memory."""
    if r.memory_reservation is not None:
        _write(d, "memory.low", str(r.memory_reservation))
    if r.memory_limit is not None:
        _write(d, "memory.max", str(r.memory_limit))
    if r.memory_swap is None:
        return
    if r.memory_swap == -1:
        if os.path.exists(os.path.join(d, "memory.swap.max")):   # absent: no swap accounting
            _write(d, "memory.swap.max", "max")
        return
    path = os.path.join(d, "memory.swap.max")
    value = str(r.memory_swap - r.memory_limit)
    write_text(path, value, missing_hint=" (swap accounting is off: leave memory_swap unset "
                                         "or boot with swapaccount=1)")


def cpu_weight(shares):
    """cpu.weight for cpu.shares: the mapping runc (opencontainers/cgroups, since runc
    PR 4785) and crun (since 1.23) both use now, so the weight matches what users compare
    against. A quadratic in log2(shares) through the ends of both ranges ([2, 262144] ->
    [1, 10000]) and the defaults (1024 -> 100); the linear map both used before gave 39
    for the default, so a container with default shares lost weight to its neighbours."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    exp2 = math.log2(shares)
    return math.ceil(10 ** ((exp2 * exp2 + 125 * exp2) / 612 - 7 / 34))


def write_cpu(d, r):
    """cpu.weight from cpu.shares (cpu_weight), and cpu.max "quota period" ("max" for no
    quota; period alone keeps the kernel's)."""
    if r.cpu_shares is not None:
        _write(d, "cpu.weight", str(cpu_weight(r.cpu_shares)))
    if r.cpu_quota is not None or r.cpu_period is not None:
        value = "max" if r.cpu_quota in (None, -1) else str(r.cpu_quota)
        if r.cpu_period is not None:
            value += f" {r.cpu_period}"
        _write(d, "cpu.max", value)


def write_cpuset(d, r):
    # Unlike v1, an empty cpuset.cpus/mems in v2 means "the parent's": no copying needed.
    if r.cpuset_cpus is not None:
        _write(d, "cpuset.cpus", r.cpuset_cpus)
    if r.cpuset_mems is not None:
        _write(d, "cpuset.mems", r.cpuset_mems)


def write_pids(d, r):
    if r.pids_limit is not None:
        _write(d, "pids.max", "max" if r.pids_limit == -1 else str(r.pids_limit))


def write_io(d, r):
    """io.bfq.weight (BFQ, the v1 range) or io.weight, converted as runc does
    ([10, 1000] -> [1, 10000])."""
    if r.blkio_weight is None:
        return
    if os.path.exists(os.path.join(d, "io.bfq.weight")):
        _write(d, "io.bfq.weight", str(r.blkio_weight))
    else:
        _write(d, "io.weight", str(1 + (r.blkio_weight - 10) * 9999 // 990))


def write_hugetlb(d, r):
    for size, limit in r.hugepage_limits:
        _write(d, f"hugetlb.{size}.max", str(limit))


WRITERS = {"memory": write_memory, "cpu": write_cpu, "cpuset": write_cpuset, "pids": write_pids,
           "blkio": write_io, "hugetlb": write_hugetlb}


# --- freezer and kill -----------------------------------------------------------------

def freeze(d):
    write_text(os.path.join(d, "cgroup.freeze"), "1")


def freezer_state(d):
    return fs.freezer_state(d, v2=True)


freezer_state_of = fs.freezer_state_of


def frozen(d):
    """The 'frozen' field of cgroup.events: whether the kernel reports the cgroup frozen."""
    return parse_keyed(read_text(os.path.join(d, "cgroup.events"))).get("frozen") == 1


def kill_all(d, timeout):
    """cgroup.kill (Linux 5.14+) SIGKILLs the whole subtree atomically, frozen tasks
    included; then wait for 'populated 0'."""
    deadline = time.monotonic() + timeout
    try:
        write_text(os.path.join(d, "cgroup.kill"), "1")
    except ContainerSystemError as exc:
        if exc.errno != errno.ENOENT or not os.path.isdir(d):
            raise
        _kill_without_cgroup_kill(d, deadline)
    wait_empty(d, deadline)


def _kill_without_cgroup_kill(d, deadline):
    """Kernels before 5.14: freeze so nothing forks, SIGKILL every listed task (v2 lets a
    fatal signal through to frozen tasks), and leave the cgroup frozen; it is about to be
    removed."""
    freeze(d)
    _wait_events(d, deadline, lambda ev: ev.get("frozen") == 1, raise_on_timeout=False)
    for pid in list_procs(d):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_empty(d, deadline):
    """Block until no live task is left in `d` or below (zombies do not count)."""
    _wait_events(d, deadline, lambda ev: ev.get("populated") == 0, raise_on_timeout=True)


def _wait_events(d, deadline, done, raise_on_timeout):
    """Wait for a condition on cgroup.events without busy looping: kernfs signals every
    change of the file as POLLPRI (with POLLERR) to poll(); a read re-arms it."""
    path = os.path.join(d, "cgroup.events")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"open {path}") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI)
        while True:
            try:
                events = parse_keyed(os.pread(fd, 4096, 0).decode())
            except OSError as exc:
                raise ContainerSystemError(exc.errno, f"read {path}") from None
            if done(events):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if raise_on_timeout:
                    raise ContainerSystemError(errno.ETIMEDOUT,
                                               f"wait for {path} to change: still {events}")
                return
            poller.poll(max(1, int(remaining * 1000)))
    finally:
        os.close(fd)


# --- statistics (a missing file reads as 0) --------------------------------------------

def cpu_usage(d):
    """cpu.stat counts microseconds; the API counts nanoseconds. cpu.stat exists even
    without the cpu controller; v2 has no per-cpu numbers."""
    s = parse_keyed(read_optional(os.path.join(d, "cpu.stat")))
    return CpuUsage(total_usage=s.get("usage_usec", 0) * 1000,
                    usage_in_kernelmode=s.get("system_usec", 0) * 1000,
                    usage_in_usermode=s.get("user_usec", 0) * 1000)


def throttling(d):
    s = parse_keyed(read_optional(os.path.join(d, "cpu.stat")))
    return ThrottlingData(periods=s.get("nr_periods", 0),
                          throttled_periods=s.get("nr_throttled", 0),
                          throttled_time=s.get("throttled_usec", 0) * 1000)


def memory(d):
    """memory.current/peak/max and the 'max' count of memory.events (times the limit was
    hit: v1's failcnt). swap_usage adds memory to swap, as v1's memsw files count and
    libcontainer reports for v2."""
    def path(name):
        return os.path.join(d, name)
    events = parse_keyed(read_optional(path("memory.events")))
    usage = MemoryData(usage=read_int(path("memory.current")),
                       max_usage=read_int(path("memory.peak")),
                       failcnt=events.get("max", 0),
                       limit=read_int(path("memory.max")))
    swap_events = parse_keyed(read_optional(path("memory.swap.events")))
    swap_limit = read_int(path("memory.swap.max"))
    swap = MemoryData(usage=read_int(path("memory.swap.current")) + usage.usage,
                      max_usage=read_int(path("memory.swap.peak")),
                      failcnt=swap_events.get("max", 0),
                      limit=min(MAX, swap_limit + usage.limit) if swap_limit != MAX else MAX)
    return MemoryStats(usage=usage, swap_usage=swap,
                       stats=parse_keyed(read_optional(path("memory.stat"))),
                       oom_kills=events.get("oom_kill", 0))


def oom_kills(d):
    return parse_keyed(read_optional(os.path.join(d, "memory.events"))).get("oom_kill", 0)


class OomWatch:
    """The OOM kills of a cgroup, for pycontainer.events: the kernel modifies memory.events
    (`path`: inotify IN_MODIFY) when a counter in it changes, its oom_kill counter among
    them, and update() reports the increase of that counter. The kill is counted and
    notified at once, so nothing needs reading again later. kernfs tells nobody when the
    cgroup is removed: the caller learns that elsewhere (the state directory)."""

    fd = None
    ends_with_cgroup = False

    def __init__(self, d):
        self._dir = d
        self.path = os.path.join(d, "memory.events")
        self._kills = oom_kills(d)

    def update(self):
        """(kills since the last call, False)."""
        try:
            kills = oom_kills(self._dir)
        except ContainerSystemError:
            return 0, False               # the cgroup is going: the caller learns it elsewhere
        new, self._kills = kills - self._kills, max(kills, self._kills)
        return max(0, new), False

    def recheck_at(self):
        return None

    def close(self):
        pass


def pids_stats(d):
    return PidsStats(current=read_int(os.path.join(d, "pids.current")),
                     limit=read_int(os.path.join(d, "pids.max")))


def blkio(d):
    """io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device, as
    libcontainer's Read/Write entries."""
    entries = []
    for line in (read_optional(os.path.join(d, "io.stat")) or "").splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        values = dict(p.split("=", 1) for p in pairs if "=" in p)
        for key, op in (("rbytes", "Read"), ("wbytes", "Write")):
            if key in values:
                entries.append(BlkioStatEntry(int(major), int(minor), op, int(values[key])))
    return BlkioStats(io_service_bytes_recursive=entries)

"""cgroup v1: one directory per controller (or per group of co-mounted controllers).

Limits and statistics of pure-v1 and hybrid hosts, and on pure v1 also freeze and kill
through the freezer controller. Every function takes the container's dir of the
controller concerned; the manager (manager.py) picks the dir.
"""
from __future__ import annotations

import errno
import os
import signal
import time

from ..errors import ContainerSystemError
from . import fs
from ..stats import BlkioStatEntry, BlkioStats, CpuUsage, MemoryData, MemoryStats, PidsStats, \
    ThrottlingData
from .fs import FROZEN, THAWED, list_procs, parse_keyed, read_int, read_optional, read_text, \
    write_text

_NS_PER_TICK = 10**9 // os.sysconf("SC_CLK_TCK")   # cpuacct.stat counts USER_HZ ticks


# --- limits ---------------------------------------------------------------------------

def write_memory(d, r):
    """memory.limit_in_bytes and memory.memsw.limit_in_bytes (memory + swap).

    The kernel keeps limit <= memsw limit at every step, so the order depends on the
    current memsw limit (runc's rule): raising memsw goes first, lowering it goes last."""
    if r.memory_reservation is not None:
        write_text(os.path.join(d, "memory.soft_limit_in_bytes"), str(r.memory_reservation))
    limit_path = os.path.join(d, "memory.limit_in_bytes")
    if r.memory_swap is None:
        if r.memory_limit is not None:
            write_text(limit_path, str(r.memory_limit))
        return
    memsw_path = os.path.join(d, "memory.memsw.limit_in_bytes")
    current = read_optional(memsw_path)
    if current is None:
        # No swap accounting (CONFIG_MEMCG_SWAP off or swapaccount=0).
        if r.memory_swap != -1:
            raise ContainerSystemError(
                errno.ENOENT, f"write {str(r.memory_swap)!r} to {memsw_path} (swap accounting "
                              f"is off: leave memory_swap unset or boot with swapaccount=1)")
        if r.memory_limit is not None:     # -1 asks for what there already is: no swap limit
            write_text(limit_path, str(r.memory_limit))
        return
    writes = [(memsw_path, str(r.memory_swap))]
    if r.memory_limit is not None:
        writes.insert(0, (limit_path, str(r.memory_limit)))
        if r.memory_swap == -1 or int(current) < r.memory_swap:
            writes.reverse()
    for path, value in writes:
        write_text(path, value)


def write_cpu(d, r):
    """cpu.shares, cpu.cfs_period_us then cpu.cfs_quota_us."""
    if r.cpu_shares is not None:
        write_text(os.path.join(d, "cpu.shares"), str(r.cpu_shares))
    period_pending = False
    if r.cpu_period is not None:
        try:
            write_text(os.path.join(d, "cpu.cfs_period_us"), str(r.cpu_period))
        except ContainerSystemError as exc:
            # A shorter period can make old_quota/new_period exceed the parent's quota
            # (EINVAL); when a quota comes too, retry the period after it (runc does).
            if exc.errno != errno.EINVAL or r.cpu_quota is None:
                raise
            period_pending = True
    if r.cpu_quota is not None:
        write_text(os.path.join(d, "cpu.cfs_quota_us"), str(r.cpu_quota))
        if period_pending:
            write_text(os.path.join(d, "cpu.cfs_period_us"), str(r.cpu_period))


def write_cpuset(d, r):
    if r.cpuset_cpus is not None:
        write_text(os.path.join(d, "cpuset.cpus"), r.cpuset_cpus)
    if r.cpuset_mems is not None:
        write_text(os.path.join(d, "cpuset.mems"), r.cpuset_mems)


def write_pids(d, r):
    if r.pids_limit is not None:
        write_text(os.path.join(d, "pids.max"), "max" if r.pids_limit == -1 else str(r.pids_limit))


def write_blkio(d, r):
    """blkio.weight (CFQ) or blkio.bfq.weight (BFQ), whichever the kernel offers."""
    if r.blkio_weight is None:
        return
    for name in ("blkio.weight", "blkio.bfq.weight"):
        path = os.path.join(d, name)
        if os.path.exists(path):
            write_text(path, str(r.blkio_weight))
            return
    raise ContainerSystemError(errno.ENOTSUP, f"blkio_weight: {d} has neither blkio.weight nor "
                                              "blkio.bfq.weight (no CFQ or BFQ I/O scheduler)")


def write_hugetlb(d, r):
    for size, limit in r.hugepage_limits:
        write_text(os.path.join(d, f"hugetlb.{size}.limit_in_bytes"), str(limit),
                   missing_hint=f" (the kernel has no {size} huge pages)")


WRITERS = {"memory": write_memory, "cpu": write_cpu, "cpuset": write_cpuset, "pids": write_pids,
           "blkio": write_blkio, "hugetlb": write_hugetlb}


def fill_cpuset(d):
    """A new cpuset dir has empty cpuset.cpus/mems and refuses tasks (ENOSPC) until they
    are set: copy the parent's (cgroup.clone_children would do it, but is off by default
    and not ours to change on the parent)."""
    parent = os.path.dirname(d)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if read_text(os.path.join(d, name)).strip():
            continue
        value = read_text(os.path.join(parent, name)).strip()
        if value:
            write_text(os.path.join(d, name), value)


_cloning = set()    # cpuset dirs of ours known to have cgroup.clone_children = 1


def cpuset_inherited(parent):
    """Whether a new child of `parent` (a cpuset dir of ours) got its cpus/mems from it at
    mkdir. Turns cgroup.clone_children on for the next ones: fewer writes per container."""
    if parent in _cloning:
        return True
    path = os.path.join(parent, "cgroup.clone_children")
    if read_text(path).strip() != "1":
        write_text(path, "1")
    _cloning.add(parent)
    return False


def forget_cloning(dirs):
    """Dirs just made (a parent removed and made again): not known to clone any more."""
    _cloning.difference_update(dirs)


# --- freezer and kill -----------------------------------------------------------------

def freeze(d):
    # The kernel starts freezing and returns; freezer.state says FREEZING until every
    # task is frozen.
    write_text(os.path.join(d, "freezer.state"), FROZEN)


def thaw(d):
    write_text(os.path.join(d, "freezer.state"), THAWED)


def freezer_state(d):
    return fs.freezer_state(d, v2=False)


def kill_all(d, freezer_dir, timeout):
    """SIGKILL every process in `d` and below, then wait (short sleeps with backoff: v1
    has no populated notification that poll() can wait on) until none is listed.

    With a freezer the tasks are frozen first, so none can fork between the listing and
    the kill, then thawed so the SIGKILL takes effect. New pids seen later (a freeze that
    did not complete in time) get another round."""
    deadline = time.monotonic() + timeout
    killed = set()
    delay = 0.001
    while True:
        pids = list_procs(d)
        if not pids:
            return
        if not killed.issuperset(pids):
            killed.update(_freeze_and_kill(d, freezer_dir, deadline))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ContainerSystemError(errno.ETIMEDOUT,
                                       f"{d}: processes {sorted(pids)} still there after SIGKILL")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _freeze_and_kill(d, freezer_dir, deadline):
    if freezer_dir:
        freeze(freezer_dir)
        delay = 0.0005
        while freezer_state(freezer_dir) != FROZEN and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    try:
        pids = list_procs(d)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        if freezer_dir:
            thaw(freezer_dir)
    return pids


# --- statistics (a missing file reads as 0) --------------------------------------------

def cpu_usage(d):
    """From the cpuacct dir: cpuacct.usage (ns), usage_percpu (ns), stat (USER_HZ ticks)."""
    percpu = read_optional(os.path.join(d, "cpuacct.usage_percpu")) or ""
    ticks = parse_keyed(read_optional(os.path.join(d, "cpuacct.stat")))
    return CpuUsage(total_usage=read_int(os.path.join(d, "cpuacct.usage")),
                    percpu_usage=[int(x) for x in percpu.split()],
                    usage_in_kernelmode=ticks.get("system", 0) * _NS_PER_TICK,
                    usage_in_usermode=ticks.get("user", 0) * _NS_PER_TICK)


def throttling(d):
    """From the cpu dir's cpu.stat; throttled_time is already ns in v1."""
    s = parse_keyed(read_optional(os.path.join(d, "cpu.stat")))
    return ThrottlingData(periods=s.get("nr_periods", 0),
                          throttled_periods=s.get("nr_throttled", 0),
                          throttled_time=s.get("throttled_time", 0))


def _memory_data(d, prefix):
    def value(name):
        return read_int(os.path.join(d, f"{prefix}.{name}"))
    return MemoryData(usage=value("usage_in_bytes"), max_usage=value("max_usage_in_bytes"),
                      failcnt=value("failcnt"), limit=value("limit_in_bytes"))


def memory(d):
    return MemoryStats(usage=_memory_data(d, "memory"),
                       swap_usage=_memory_data(d, "memory.memsw"),
                       stats=parse_keyed(read_optional(os.path.join(d, "memory.stat"))),
                       oom_kills=oom_kills(d))


def oom_kills(d):
    return parse_keyed(read_optional(os.path.join(d, "memory.oom_control"))).get("oom_kill", 0)


# After an OOM signal, memory.oom_control's counter is read again at these growing
# intervals until it moves (the kill is counted after the signal) or _RECHECK_FOR seconds
# pass without a signal or a kill (the OOM path ended without one: its victim was already
# exiting). Between, nothing is read.
_RECHECK_FIRST, _RECHECK_MAX, _RECHECK_FOR = 0.001, 0.25, 5.0


class OomWatch:
    """The OOM kills of a memory cgroup, for pycontainer.events.

    The kernel signals an eventfd registered on memory.oom_control (cgroup.event_control)
    each time its OOM path runs for the cgroup: before the OOM killer picks and kills a
    victim, again at every charge that fails while a victim is still exiting (so several
    times per kill on a busy machine), and once when the cgroup is removed. So the eventfd
    (`fd`) is only the wake-up. What update() reports is the increase of memory.oom_control's
    `oom_kill` counter (Linux 4.13+), read through a descriptor kept open from the start:
    once the cgroup is removed that read fails (ENODEV), which is how its removal is told
    from an OOM. Since the signal comes before the kill is counted, the counter is read
    again a few times after each signal (recheck_at) until it moves.

    Without the counter (kernels before 4.13) each signal but the removal's counts as one
    kill, which overcounts when the OOM path runs more than once for a victim."""

    path = None                 # no file to watch: `fd` is the wake-up
    ends_with_cgroup = True     # `fd` is signalled when the cgroup is removed

    def __init__(self, d):
        self.fd = self._ctl = None
        try:
            self._ctl = os.open(os.path.join(d, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            write_text(os.path.join(d, "cgroup.event_control"), f"{self.fd} {self._ctl}")
            self._kills = self._read()
        except OSError as exc:            # ContainerSystemError too
            self.close()
            raise ContainerSystemError(exc.errno, f"register an OOM eventfd for {d}") from None
        self._recheck = None            # (when, delay, until) while a kill may be uncounted

    def _read(self):
        """The oom_kill counter, None when the kernel has none; OSError once removed."""
        return parse_keyed(os.pread(self._ctl, 4096, 0).decode()).get("oom_kill")

    def update(self):
        """(kills since the last call, whether the cgroup is gone)."""
        try:
            signals = os.eventfd_read(self.fd)
        except BlockingIOError:
            signals = 0
        try:
            kills = self._read()
        except OSError:
            self._recheck = None
            # Removed. Without the counter, the last signal was the removal's.
            return (max(0, signals - 1) if self._kills is None else 0), True
        if kills is None:
            return signals, False
        new, self._kills = kills - self._kills, kills
        now = time.monotonic()
        if signals or new > 0:
            self._recheck = (now + _RECHECK_FIRST, _RECHECK_FIRST, now + _RECHECK_FOR)
        elif self._recheck is not None:
            when, delay, until = self._recheck
            if now >= until:
                self._recheck = None
            elif now >= when:
                delay = min(delay * 2, _RECHECK_MAX)
                self._recheck = (min(now + delay, until), delay, until)
        return max(0, new), False

    def recheck_at(self):
        """time.monotonic() at which update() should run even if `fd` stays quiet; None."""
        return None if self._recheck is None else self._recheck[0]

    def close(self):
        for name in ("fd", "_ctl"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)


def pids_stats(d):
    return PidsStats(current=read_int(os.path.join(d, "pids.current")),
                     limit=read_int(os.path.join(d, "pids.max")))


def blkio(d):
    """blkio.throttle.io_service_bytes_recursive ("8:0 Read 4096" lines and a final
    "Total n"); the CFQ/BFQ-era blkio.io_service_bytes_recursive if that is missing."""
    text = read_optional(os.path.join(d, "blkio.throttle.io_service_bytes_recursive"))
    if text is None:
        text = read_optional(os.path.join(d, "blkio.io_service_bytes_recursive")) or ""
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or ":" not in fields[0]:
            continue          # "Total n"
        major, _, minor = fields[0].partition(":")
        entries.append(BlkioStatEntry(int(major), int(minor), fields[1], int(fields[2])))
    return BlkioStats(io_service_bytes_recursive=entries)

"""ContainerStats and friends: what Container.stats() returns.

The shape is libcontainer's (runc's `Stats`), so tools written against runc's numbers read
ours the same way. Every value is an int; a value the kernel does not report is 0.
Times are nanoseconds whatever the source (cgroup v2 and cpuacct.stat count in other units;
the readers in pycontainer.cgroups convert).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import ContainerSystemError

__all__ = ["ContainerStats", "CgroupStats", "CpuStats", "CpuUsage", "ThrottlingData",
           "MemoryStats", "MemoryData", "PidsStats", "BlkioStats", "BlkioStatEntry",
           "NetworkInterface", "read_interfaces"]


@dataclass
class CpuUsage:
    total_usage: int = 0
    percpu_usage: list = field(default_factory=list)   # list[int]; empty on cgroup v2
    usage_in_kernelmode: int = 0
    usage_in_usermode: int = 0


@dataclass
class ThrottlingData:
    periods: int = 0
    throttled_periods: int = 0
    throttled_time: int = 0


@dataclass
class CpuStats:
    cpu_usage: CpuUsage = field(default_factory=CpuUsage)
    throttling_data: ThrottlingData = field(default_factory=ThrottlingData)


@dataclass
class MemoryData:
    usage: int = 0
    max_usage: int = 0
    failcnt: int = 0
    limit: int = 0


@dataclass
class MemoryStats:
    usage: MemoryData = field(default_factory=MemoryData)
    # memory + swap, as cgroup v1's memory.memsw.* count it (v2 numbers are summed to match).
    swap_usage: MemoryData = field(default_factory=MemoryData)
    stats: dict = field(default_factory=dict)          # memory.stat, name -> int
    oom_kills: int = 0


@dataclass
class PidsStats:
    current: int = 0
    limit: int = 0                                     # 2**63-1 when unlimited


@dataclass
class BlkioStatEntry:
    major: int
    minor: int
    op: str                                            # "Read", "Write", ...
    value: int


@dataclass
class BlkioStats:
    io_service_bytes_recursive: list = field(default_factory=list)   # list[BlkioStatEntry]


@dataclass
class CgroupStats:
    cpu_stats: CpuStats = field(default_factory=CpuStats)
    memory_stats: MemoryStats = field(default_factory=MemoryStats)
    pids_stats: PidsStats = field(default_factory=PidsStats)
    blkio_stats: BlkioStats = field(default_factory=BlkioStats)


@dataclass
class NetworkInterface:
    name: str
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


@dataclass
class ContainerStats:
    cgroup_stats: CgroupStats = field(default_factory=CgroupStats)
    interfaces: list = field(default_factory=list)     # list[NetworkInterface]


def read_interfaces(pid):
    """The interfaces of the network namespace `pid` is in, from /proc/<pid>/net/dev
    (procfs shows that file through the namespace of the pid, not of the reader)."""
    path = f"/proc/{int(pid)}/net/dev"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ContainerSystemError(exc.errno, f"read {path}") from None
    return parse_net_dev(b"".join(chunks).decode())


def parse_net_dev(text):
    """Parse /proc/net/dev. Two header lines, then `name: 8 receive and 8 transmit counters`;
    a long counter can touch the colon ("eth0:123"), so split on the colon, not on spaces."""
    interfaces = []
    for line in text.splitlines()[2:]:
        name, sep, counters = line.partition(":")
        if not sep:
            continue
        v = [int(x) for x in counters.split()]
        if len(v) < 16:
            continue
        interfaces.append(NetworkInterface(
            name=name.strip(),
            rx_bytes=v[0], rx_packets=v[1], rx_errors=v[2], rx_dropped=v[3],
            tx_bytes=v[8], tx_packets=v[9], tx_errors=v[10], tx_dropped=v[11]))
    return interfaces

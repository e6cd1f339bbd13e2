"""ContainerStats and friends: what Container.stats() returns.

The shape is libcontainer's (runc's `Stats`), so tools written against runc's numbers read
ours the same way. Every value is an int; a value the kernel does not report is 0.
Times are nanoseconds whatever the source (cgroup v2 and cpuacct.stat count in other units;
the readers in pycontainer.cgroups convert).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from .errors import ContainerSystemError

__all__ = ["ContainerStats", "CgroupStats", "CpuStats", "CpuUsage", "ThrottlingData",
           "MemoryStats", "MemoryData", "PidsStats", "BlkioStats", "BlkioStatEntry",
           "NetworkInterface", "read_interfaces", "read_host_interfaces"]


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
    # The container's own interfaces (lo, eth0 ...), as counted inside its namespace.
    interfaces: list = field(default_factory=list)     # list[NetworkInterface]
    # The host ends of its veths (named by their host-side names), as libcontainer
    # reported them: rx and tx swapped, so that rx is what the container received.
    host_interfaces: list = field(default_factory=list)   # list[NetworkInterface]


def read_interfaces(pid):
    """The interfaces of the network namespace `pid` is in (or "thread-self": the calling
    thread's), from /proc/<pid>/net/dev (procfs shows that file through the namespace of
    the pid, not of the reader)."""
    path = f"/proc/{pid if pid == 'thread-self' else int(pid)}/net/dev"
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


def read_host_interfaces(veths):
    """The host ends of a container's veths ([{"name", "ifindex"}]), rx and tx swapped to
    the container's point of view, as libcontainer reported them. Read in the calling
    thread's network namespace (where start made them), from /proc/thread-self/net/dev:
    /sys/class/net would show the namespace its sysfs was mounted in instead. A veth that
    is gone, or whose name now belongs to another interface, is left out."""
    if not veths:
        return []
    wanted = set()
    for veth in veths:
        try:
            if socket.if_nametoindex(veth["name"]) == veth["ifindex"]:
                wanted.add(veth["name"])
        except OSError:
            pass                                  # ENODEV: gone with its namespace
    found = {i.name: i for i in read_interfaces("thread-self") if i.name in wanted}
    return [_swapped(found[v["name"]]) for v in veths if v["name"] in found]


def _swapped(i):
    """A veth's host end counted from the other end: what it sent, the container got."""
    return NetworkInterface(
        name=i.name, rx_bytes=i.tx_bytes, rx_packets=i.tx_packets, rx_errors=i.tx_errors,
        rx_dropped=i.tx_dropped, tx_bytes=i.rx_bytes, tx_packets=i.rx_packets,
        tx_errors=i.rx_errors, tx_dropped=i.rx_dropped)


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

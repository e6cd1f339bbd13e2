"""runc's `events` JSON: {"type": "stats", "id": ..., "data": {...}} with runc's field names
(runc/types/events.go), made from a ContainerStats."""
from __future__ import annotations

from ..stats import ContainerStats

__all__ = ["stats_event", "stats_data", "to_oci_event"]


def _nz(d):
    """Go's omitempty: drop zero, empty and None values."""
    return {k: v for k, v in d.items() if v not in (0, None, [], {}, "")}


def stats_data(stats):
    cg = stats.cgroup_stats
    cpu = cg.cpu_stats
    usage = cpu.cpu_usage
    thr = cpu.throttling_data
    mem = cg.memory_stats
    raw = dict(mem.stats)

    def entry(m):
        return {"limit": m.limit, **_nz({"usage": m.usage, "max": m.max_usage}),
                "failcnt": m.failcnt}

    data = {
        "cpu": {"usage": {**_nz({"total": usage.total_usage, "percpu": usage.percpu_usage}),
                          "kernel": usage.usage_in_kernelmode,
                          "user": usage.usage_in_usermode},
                "throttling": _nz({"periods": thr.periods,
                                   "throttledPeriods": thr.throttled_periods,
                                   "throttledTime": thr.throttled_time})},
        "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                   "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                   "memory_pressure": 0, "sched_load_balance": 0,
                   "sched_relax_domain_level": 0},
        "memory": {**_nz({"cache": raw.get("cache", raw.get("file", 0))}),
                   "usage": entry(mem.usage), "swap": entry(mem.swap_usage),
                   "kernel": {"limit": 0, "failcnt": 0},
                   "kernelTCP": {"limit": 0, "failcnt": 0},
                   **_nz({"raw": raw}),
                   "event_count": {"oom_kill": mem.oom_kills} if mem.oom_kills else {}},
        "pids": _nz({"current": cg.pids_stats.current, "limit": cg.pids_stats.limit}),
        "blkio": _nz({"ioServiceBytesRecursive": [
            _nz({"major": e.major, "minor": e.minor, "op": e.op, "value": e.value})
            for e in cg.blkio_stats.io_service_bytes_recursive]}),
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": [
            {"Name": i.name, "RxBytes": i.rx_bytes, "RxPackets": i.rx_packets,
             "RxErrors": i.rx_errors, "RxDropped": i.rx_dropped, "TxBytes": i.tx_bytes,
             "TxPackets": i.tx_packets, "TxErrors": i.tx_errors, "TxDropped": i.tx_dropped}
            for i in stats.interfaces] or None,
    }
    return data


def stats_event(container_id, stats):
    return {"type": "stats", "id": container_id, "data": stats_data(stats)}


def to_oci_event(container_id, event):
    """An event of Container.events() in runc's shape: stats objects become "stats"
    events; dicts with a "type" pass through; objects with .type and .data are mapped."""
    if isinstance(event, ContainerStats):
        return stats_event(container_id, event)
    if isinstance(event, dict):
        return {"id": container_id, **event}
    kind = getattr(event, "type", None) or type(event).__name__.lower()
    data = getattr(event, "data", None)
    if isinstance(data, ContainerStats):
        return stats_event(container_id, data)
    out = {"type": str(kind), "id": container_id}
    if data is not None:
        out["data"] = data
    return out

"""Parsing of cgroup and proc files: /proc/self/cgroup, /proc/self/mountinfo, cpu.stat,
memory.stat, blkio/io files, /proc/<pid>/net/dev.

These are the ONLY tests allowed to use a fake cgroupfs: small trees of plain files under
tmp_path that mimic what the kernel prints, so the parsers can be checked against host
layouts this machine does not have (pure v2, co-mounted cpu,cpuacct, containers). They
never create a real cgroup; tests/integration/test_cgroups.py does that, as root.
"""
import errno
import json
import os

import pytest

from pycontainer import cgroups
from pycontainer.cgroups import MAX, build_host, cgroup_name, load_manager, parse_mountinfo, \
    parse_proc_cgroup
from pycontainer.config import Resources
from pycontainer.errors import ContainerSystemError
from pycontainer.stats import BlkioStatEntry, parse_net_dev, read_interfaces

HYBRID_MOUNTINFO = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/3d5f
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""

# Debian/Ubuntu-style v1: cpu and cpuacct co-mounted, optional fields, a container's
# cgroup bind-mounted (root field /docker/abc) at the memory mountpoint.
COMOUNTED_MOUNTINFO = """\
25 20 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:9 - cgroup cgroup rw,xattr,name=systemd
27 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 master:3 - cgroup cgroup rw,cpu,cpuacct
28 25 0:26 /docker/abc /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
"""
COMOUNTED_CGROUP = """\
5:net_cls,net_prio:/docker/abc
4:memory:/docker/abc
3:cpu,cpuacct:/docker/abc
1:name=systemd:/docker/abc
"""

PURE_V2_MOUNTINFO = """\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""
PURE_V2_CGROUP = "0::/user.slice/user-1000.slice/session-2.scope\n"


def fake_host(monkeypatch, mountinfo, proc_cgroup, mode="auto"):
    host = build_host(mountinfo, proc_cgroup, mode)
    monkeypatch.setattr(cgroups.host, "detect", lambda: host)   # where the manager looks
    return host


def write_tree(root, files):
    os.makedirs(root, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    return str(root)


# --- /proc/self/cgroup and mountinfo ---------------------------------------------------

def test_parse_proc_cgroup():
    lines = parse_proc_cgroup(HYBRID_CGROUP + "10:cpu,cpuacct:/a:b\n")
    assert lines[0] == (9, ("name=systemd",), "/")
    assert (4, ("memory",), "/process_api/3d5f") in lines
    assert (0, (), "/") in lines
    assert lines[-1] == (10, ("cpu", "cpuacct"), "/a:b")     # ':' in a path survives


def test_parse_mountinfo_keeps_cgroup_mounts_and_unescapes():
    text = HYBRID_MOUNTINFO + r"50 31 0:40 /a\040b /mnt/with\040space rw - cgroup2 none rw" + "\n"
    mounts = parse_mountinfo(text)
    assert all(m[2] in ("cgroup", "cgroup2") for m in mounts)
    assert ("/sys/fs/cgroup/cpu", "/", "cgroup", ("rw", "cpu")) in mounts
    assert ("/sys/fs/cgroup/unified", "/", "cgroup2", ("rw",)) in mounts
    assert mounts[-1][:2] == ("/mnt/with space", "/a b")


def test_parse_mountinfo_optional_fields():
    mounts = parse_mountinfo(COMOUNTED_MOUNTINFO)
    assert ("/sys/fs/cgroup/cpu,cpuacct", "/", "cgroup", ("rw", "cpu", "cpuacct")) in mounts


def test_hybrid_host_separate_cpu_and_cpuacct():
    host = build_host(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert host.unified.mountpoint == "/sys/fs/cgroup/unified"
    assert host.v1["cpu"].mountpoint == "/sys/fs/cgroup/cpu"
    assert host.v1["cpuacct"].mountpoint == "/sys/fs/cgroup/cpuacct"
    assert host.v1["memory"].own_dir == "/sys/fs/cgroup/memory/process_api/3d5f"
    assert "name=systemd" not in host.v1 and "systemd" not in host.v1


def test_mode_v1_ignores_unified():
    host = build_host(HYBRID_MOUNTINFO, HYBRID_CGROUP, "v1")
    assert host.unified is None
    assert host.v1["freezer"].mountpoint == "/sys/fs/cgroup/freezer"


def test_comounted_controllers_share_a_hierarchy_and_root_field_counts():
    host = build_host(COMOUNTED_MOUNTINFO, COMOUNTED_CGROUP)
    assert host.v1["cpu"] is host.v1["cpuacct"]
    assert host.v1["cpu"].own_dir == "/sys/fs/cgroup/cpu,cpuacct/docker/abc"
    # The memory mount shows cgroup /docker/abc at its mountpoint.
    assert host.v1["memory"].own_dir == "/sys/fs/cgroup/memory"
    assert host.v1["memory"].dir_of("/docker/abc/pycontainer") == "/sys/fs/cgroup/memory/pycontainer"
    assert host.unified is None


def test_hierarchy_whose_mount_does_not_show_our_cgroup_is_skipped():
    mountinfo = "28 25 0:26 /docker/other /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    host = build_host(mountinfo, "4:memory:/docker/abc\n")
    assert "memory" not in host.v1


def test_pure_v2_host():
    host = build_host(PURE_V2_MOUNTINFO, PURE_V2_CGROUP)
    assert host.v1 == {}
    assert host.unified.own_dir == "/sys/fs/cgroup/user.slice/user-1000.slice/session-2.scope"


def test_dir_of_rejects_dot_dot_and_paths_outside_the_mount():
    host = build_host(COMOUNTED_MOUNTINFO, COMOUNTED_CGROUP)
    with pytest.raises(ContainerSystemError) as e:
        host.v1["cpu"].dir_of("/a/../b")
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ContainerSystemError) as e:
        host.v1["memory"].dir_of("/elsewhere")
    assert e.value.errno == errno.ENOENT and "/sys/fs/cgroup/memory" in str(e.value)


def test_detect_rejects_unknown_mode(monkeypatch):
    monkeypatch.setenv("PYCONTAINER_CGROUP_MODE", "v3")
    with pytest.raises(ContainerSystemError) as e:
        cgroups.detect()
    assert "PYCONTAINER_CGROUP_MODE" in str(e.value)


# --- names, managers, records ---------------------------------------------------------

def test_cgroup_name():
    assert cgroup_name("box_1+a-b") == "box_1+a-b"
    assert cgroup_name("a" * 200) == "a" * 200
    for hashed in ("a" * 201, "memory.max", "x" * 1024, "a.b"):
        name = cgroup_name(hashed)
        assert name.startswith("pc-") and len(name) == 43 and "." not in name
    assert cgroup_name("a.b") != cgroup_name("a.c")


def test_new_manager_paths_hybrid(monkeypatch):
    fake_host(monkeypatch, HYBRID_MOUNTINFO, HYBRID_CGROUP)
    m = cgroups.new_manager("box.1")
    name = cgroup_name("box.1")
    assert m.unified == f"/sys/fs/cgroup/unified/pycontainer/{name}"
    assert m.v1["memory"] == f"/sys/fs/cgroup/memory/process_api/3d5f/pycontainer/{name}"
    assert "freezer" not in m.v1            # v2 freezes on a hybrid host
    assert "devices" in m.v1                # the v1 device policy applies too
    m = cgroups.new_manager("box1", parent="/process_api/3d5f/mine")
    assert m.v1["memory"] == "/sys/fs/cgroup/memory/process_api/3d5f/mine/box1"
    assert m.v1["pids"] == "/sys/fs/cgroup/pids/process_api/3d5f/mine/box1"


def test_new_manager_exact_paths(monkeypatch):
    """Config.cgroup_path: the cgroup itself, named by its last component, neither by the
    id nor the scope; absolute from each hierarchy's root, relative below our own."""
    fake_host(monkeypatch, HYBRID_MOUNTINFO, HYBRID_CGROUP)
    m = cgroups.new_manager("box.1", scope="ab12", path="/kubepods/pod1/ctr")
    assert (m.name, m.exact, m.default_parent) == ("ctr", True, False)
    assert m.unified == "/sys/fs/cgroup/unified/kubepods/pod1/ctr"
    assert m.v1["memory"] == "/sys/fs/cgroup/memory/kubepods/pod1/ctr"
    assert cgroups.new_manager("x", path="/ctr").v1["pids"] == "/sys/fs/cgroup/pids/ctr"
    m = cgroups.new_manager("x", path="pod1/ctr")
    assert m.v1["memory"] == "/sys/fs/cgroup/memory/process_api/3d5f/pod1/ctr"
    assert m.v1["pids"] == "/sys/fs/cgroup/pids/pod1/ctr"
    assert cgroups.new_manager("x", path="ctr").v1["memory"] == \
        "/sys/fs/cgroup/memory/process_api/3d5f/ctr"
    assert m.to_record()["exact"] is True
    assert "exact" not in cgroups.new_manager("x").to_record()


def test_new_manager_v1_mode_uses_freezer(monkeypatch):
    fake_host(monkeypatch, HYBRID_MOUNTINFO, HYBRID_CGROUP, "v1")
    m = cgroups.new_manager("box1")
    assert m.unified is None
    assert m.v1["freezer"] == "/sys/fs/cgroup/freezer/pycontainer/box1"


def test_new_manager_comounted_controllers_share_a_dir(monkeypatch):
    fake_host(monkeypatch, COMOUNTED_MOUNTINFO, COMOUNTED_CGROUP)
    m = cgroups.new_manager("box1")
    assert m.v1["cpu"] == m.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/docker/abc/pycontainer/box1"
    assert m.v1["memory"] == "/sys/fs/cgroup/memory/pycontainer/box1"
    # One mkdir, one rmdir and one cgroup.procs fd per dir, not per controller (a second
    # mkdir of the shared dir would fail with EEXIST).
    assert m.dirs() == [m.v1["cpu"], m.v1["memory"]]


def test_new_manager_without_hierarchies(monkeypatch):
    fake_host(monkeypatch, PURE_V2_MOUNTINFO, PURE_V2_CGROUP, "v1")
    with pytest.raises(ContainerSystemError) as e:
        cgroups.new_manager("box1")
    assert e.value.errno == errno.ENOENT


def test_record_round_trip(monkeypatch):
    fake_host(monkeypatch, HYBRID_MOUNTINFO, HYBRID_CGROUP)
    res = Resources(memory_limit=1 << 26, pids_limit=-1)
    m = cgroups.new_manager("box1", resources=res)
    record = json.loads(json.dumps(m.to_record()))
    assert "resources" not in record        # the Config stores them; the loader passes them
    again = load_manager(record, resources=res)
    assert again.to_record() == m.to_record()
    assert again.resources == res
    # A record of the earlier format repeated the limits: they are ignored, it still loads.
    legacy = load_manager({**record, "resources": {"memory_limit": 1}}, resources=res)
    assert legacy.to_record() == m.to_record() and legacy.resources == res
    for bad in ({"version": 99}, {"version": 1}, None):
        with pytest.raises(ContainerSystemError) as e:
            load_manager(bad)
        assert e.value.errno == errno.EINVAL


# --- statistics from fake trees ---------------------------------------------------------

def v1_tree(tmp_path):
    d = tmp_path / "v1"
    return write_tree(d, {
        "cpuacct.usage": "3000000000\n",
        "cpuacct.usage_percpu": "1000000000 2000000000 \n",
        "cpuacct.stat": "user 150\nsystem 50\n",
        "cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\n",
        "memory.usage_in_bytes": "4096000\n",
        "memory.max_usage_in_bytes": "8192000\n",
        "memory.failcnt": "2\n",
        "memory.limit_in_bytes": "9223372036854771712\n",
        "memory.memsw.usage_in_bytes": "4100000\n",
        "memory.memsw.max_usage_in_bytes": "8200000\n",
        "memory.memsw.failcnt": "0\n",
        "memory.memsw.limit_in_bytes": "67108864\n",
        "memory.stat": "cache 4096\nrss 8192\ntotal_rss 8192\n",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        "pids.current": "5\n",
        "pids.max": "max\n",
        "blkio.throttle.io_service_bytes_recursive":
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n"
            "8:0 Total 12288\n253:1 Read 1\nTotal 12289\n",
    })


def v1_manager(d):
    ctls = ("cpu", "cpuacct", "memory", "pids", "blkio", "freezer")
    return load_manager({"version": 1, "id": "x", "name": "x", "unified": None,
                         "v1": {c: d for c in ctls}})


def test_v1_stats(tmp_path):
    s = v1_manager(v1_tree(tmp_path)).stats()
    tick = 10**9 // os.sysconf("SC_CLK_TCK")
    cpu = s.cpu_stats.cpu_usage
    assert cpu.total_usage == 3 * 10**9
    assert cpu.percpu_usage == [10**9, 2 * 10**9]
    assert cpu.usage_in_usermode == 150 * tick and cpu.usage_in_kernelmode == 50 * tick
    t = s.cpu_stats.throttling_data
    assert (t.periods, t.throttled_periods, t.throttled_time) == (10, 4, 123456)
    mem = s.memory_stats
    assert (mem.usage.usage, mem.usage.max_usage, mem.usage.failcnt) == (4096000, 8192000, 2)
    assert mem.usage.limit == 9223372036854771712
    assert (mem.swap_usage.usage, mem.swap_usage.limit) == (4100000, 67108864)
    assert mem.stats == {"cache": 4096, "rss": 8192, "total_rss": 8192}
    assert mem.oom_kills == 3
    assert (s.pids_stats.current, s.pids_stats.limit) == (5, MAX)
    entries = s.blkio_stats.io_service_bytes_recursive
    assert entries[0] == BlkioStatEntry(8, 0, "Read", 4096)
    assert entries[-1] == BlkioStatEntry(253, 1, "Read", 1)
    assert len(entries) == 7                                 # the bare "Total" line is skipped


def test_v1_oom_kill_count(tmp_path):
    assert v1_manager(v1_tree(tmp_path)).oom_kill_count() == 3


def test_v1_blkio_falls_back_to_cfq_file(tmp_path):
    d = write_tree(tmp_path / "cfq", {"blkio.io_service_bytes_recursive": "8:16 Write 512\nTotal 512\n"})
    entries = v1_manager(d).stats().blkio_stats.io_service_bytes_recursive
    assert entries == [BlkioStatEntry(8, 16, "Write", 512)]


def test_missing_files_read_as_zeros(tmp_path):
    d = write_tree(tmp_path / "empty", {})
    s = v1_manager(d).stats()
    assert s.cpu_stats.cpu_usage.total_usage == 0 and s.cpu_stats.cpu_usage.percpu_usage == []
    assert s.memory_stats.usage.usage == 0 and s.memory_stats.stats == {}
    assert s.pids_stats.limit == 0 and s.blkio_stats.io_service_bytes_recursive == []
    s2 = load_manager({"version": 1, "id": "x", "name": "x", "unified": d, "v1": {}}).stats()
    assert s2.memory_stats.swap_usage.usage == 0 and s2.cpu_stats.throttling_data.periods == 0


def test_garbage_in_an_integer_file_names_the_file(tmp_path):
    d = write_tree(tmp_path / "bad", {"pids.current": "lots\n"})
    with pytest.raises(ContainerSystemError) as e:
        v1_manager(d).stats()
    assert "pids.current" in str(e.value) and "'lots'" in str(e.value)


def v2_manager(tmp_path, **extra):
    d = write_tree(tmp_path / "v2", {
        "cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 7\n"
                    "nr_throttled 3\nthrottled_usec 40\nnr_bursts 0\nburst_usec 0\n",
        "memory.current": "1048576\n",
        "memory.peak": "2097152\n",
        "memory.max": "max\n",
        "memory.events": "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n",
        "memory.swap.current": "4096\n",
        "memory.swap.peak": "8192\n",
        "memory.swap.max": "max\n",
        "memory.swap.events": "high 0\nmax 0\nfail 0\n",
        "memory.stat": "anon 1000\nfile 2000\n",
        "pids.current": "3\n",
        "pids.max": "64\n",
        "io.stat": "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n"
                   "253:0 rbytes=10 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        "cgroup.freeze": "0\n",
        "cgroup.events": "populated 1\nfrozen 0\n",
        **extra,
    })
    return d, load_manager({"version": 1, "id": "x", "name": "x", "unified": d, "v1": {}})


def test_v2_stats(tmp_path):
    _, m = v2_manager(tmp_path)
    s = m.stats()
    cpu = s.cpu_stats.cpu_usage
    assert (cpu.total_usage, cpu.usage_in_usermode, cpu.usage_in_kernelmode) == (2500000, 2000000, 500000)
    assert cpu.percpu_usage == []
    t = s.cpu_stats.throttling_data
    assert (t.periods, t.throttled_periods, t.throttled_time) == (7, 3, 40000)
    mem = s.memory_stats
    assert (mem.usage.usage, mem.usage.max_usage, mem.usage.limit, mem.usage.failcnt) == \
        (1048576, 2097152, MAX, 9)
    assert mem.swap_usage.usage == 1048576 + 4096 and mem.swap_usage.limit == MAX
    assert mem.stats == {"anon": 1000, "file": 2000} and mem.oom_kills == 1
    assert (s.pids_stats.current, s.pids_stats.limit) == (3, 64)
    assert s.blkio_stats.io_service_bytes_recursive == [
        BlkioStatEntry(8, 0, "Read", 1024), BlkioStatEntry(8, 0, "Write", 2048),
        BlkioStatEntry(253, 0, "Read", 10), BlkioStatEntry(253, 0, "Write", 0)]
    assert m.oom_kill_count() == 1


def test_v2_swap_limit_is_reported_with_memory(tmp_path):
    _, m = v2_manager(tmp_path, **{"memory.max": "1000\n", "memory.swap.max": "500\n"})
    assert m.stats().memory_stats.swap_usage.limit == 1500


@pytest.mark.parametrize("freeze, events, state", [
    ("0\n", "populated 1\nfrozen 0\n", "THAWED"),
    ("1\n", "populated 1\nfrozen 0\n", "FREEZING"),
    ("1\n", "populated 1\nfrozen 1\n", "FROZEN"),
])
def test_v2_freezer_state(tmp_path, freeze, events, state):
    _, m = v2_manager(tmp_path, **{"cgroup.freeze": freeze, "cgroup.events": events})
    assert m.freezer_state() == state


def test_v1_freezer_state(tmp_path):
    d = write_tree(tmp_path / "f", {"freezer.state": "FREEZING\n"})
    assert v1_manager(d).freezer_state() == "FREEZING"


# --- /proc/<pid>/net/dev -------------------------------------------------------------

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0
  eth0:123456789012  900    1    2    0     0          0         0  5000000    800    3    4    0     0       0          0
"""


def test_parse_net_dev():
    lo, eth0 = parse_net_dev(NET_DEV)
    assert (lo.name, lo.rx_bytes, lo.tx_packets) == ("lo", 1234, 10)
    assert eth0.name == "eth0"
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors, eth0.rx_dropped) == (123456789012, 900, 1, 2)
    assert (eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors, eth0.tx_dropped) == (5000000, 800, 3, 4)


def test_read_interfaces_of_this_process():
    names = [i.name for i in read_interfaces(os.getpid())]
    assert names == [line.split(":")[0].strip()
                     for line in open("/proc/self/net/dev").read().splitlines()[2:]]


def test_read_interfaces_of_a_missing_process_names_the_file():
    with pytest.raises(ContainerSystemError) as e:
        read_interfaces(2**22 + 1)                 # above pid_max's ceiling
    assert e.value.errno == errno.ENOENT and "/proc/4194305/net/dev" in str(e.value)

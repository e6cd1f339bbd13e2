"""The cgroup v2 limit writers and controller delegation, on a fake tree for writer tests:
plain files in a temporary directory stand in for a cgroup's control files, so what is
tested is which file each writer writes and what it writes there (what the kernel then
accepts is the integration tests' part, on a host whose cgroup2 has the controllers)."""
import errno

import pytest

import pycontainer as pc
from pycontainer.cgroups import v2
from pycontainer.errors import ContainerSystemError

MB = 1 << 20


def fake_cgroup(d, files):
    """The files a v2 cgroup dir would have: those the kernel fills with their contents,
    those a writer writes empty (a write(2) to a regular file does not truncate it)."""
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def read(d, name):
    return (d / name).read_text()


# --- memory.max and memory.swap.max ------------------------------------------------------

def test_memory_limit_and_swap_is_the_total_minus_memory(tmp_path):
    d = fake_cgroup(tmp_path, {"memory.max": "", "memory.swap.max": ""})
    v2.write_memory(str(d), pc.Resources(memory_limit=64 * MB, memory_swap=96 * MB))
    assert read(d, "memory.max") == str(64 * MB)
    assert read(d, "memory.swap.max") == str(32 * MB)


def test_memory_swap_equal_to_memory_means_no_swap(tmp_path):
    d = fake_cgroup(tmp_path, {"memory.max": "", "memory.swap.max": ""})
    v2.write_memory(str(d), pc.Resources(memory_limit=64 * MB, memory_swap=64 * MB))
    assert read(d, "memory.swap.max") == "0"


def test_memory_swap_unlimited(tmp_path):
    d = fake_cgroup(tmp_path, {"memory.max": "", "memory.swap.max": ""})
    v2.write_memory(str(d), pc.Resources(memory_limit=64 * MB, memory_swap=-1))
    assert read(d, "memory.max") == str(64 * MB)
    assert read(d, "memory.swap.max") == "max"


def test_memory_swap_unlimited_without_swap_accounting_writes_nothing(tmp_path):
    d = fake_cgroup(tmp_path, {"memory.max": ""})
    v2.write_memory(str(d), pc.Resources(memory_limit=64 * MB, memory_swap=-1))
    assert read(d, "memory.max") == str(64 * MB)
    assert not (d / "memory.swap.max").exists()


def test_memory_swap_limit_without_swap_accounting_says_why(tmp_path):
    d = fake_cgroup(tmp_path, {"memory.max": ""})
    with pytest.raises(ContainerSystemError) as e:
        v2.write_memory(str(d), pc.Resources(memory_limit=64 * MB, memory_swap=96 * MB))
    assert e.value.errno == errno.ENOENT
    assert "memory.swap.max" in str(e.value) and "swap accounting is off" in str(e.value)


def test_memory_limit_without_the_controller_names_subtree_control(tmp_path):
    with pytest.raises(ContainerSystemError) as e:
        v2.write_memory(str(tmp_path), pc.Resources(memory_limit=64 * MB))
    assert e.value.errno == errno.ENOENT
    assert "'memory' controller is not enabled" in str(e.value)
    assert "cgroup.subtree_control" in str(e.value)


# --- cpu.weight and cpu.max --------------------------------------------------------------

@pytest.mark.parametrize("shares,weight", [
    (2, 1),                         # the v1 minimum -> the v2 minimum
    (1024, 100),                    # the v1 default -> the v2 default
    (262144, 10000),                # the v1 maximum -> the v2 maximum
    (3, 2), (512, 59), (2048, 174), (100000, 4340),
])
def test_cpu_weight_from_shares(tmp_path, shares, weight):
    d = fake_cgroup(tmp_path, {"cpu.weight": ""})
    v2.write_cpu(str(d), pc.Resources(cpu_shares=shares))
    assert read(d, "cpu.weight") == str(weight)


def test_cpu_weight_grows_with_shares():
    weights = [v2.cpu_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights) and 1 <= weights[0] and weights[-1] <= 10000


@pytest.mark.parametrize("quota,period,written", [
    (50000, 100000, "50000 100000"),
    (50000, None, "50000"),          # the period the kernel has stays
    (None, 20000, "max 20000"),      # a period alone: no quota
    (-1, None, "max"),
    (-1, 100000, "max 100000"),
])
def test_cpu_max(tmp_path, quota, period, written):
    d = fake_cgroup(tmp_path, {"cpu.max": ""})
    v2.write_cpu(str(d), pc.Resources(cpu_quota=quota, cpu_period=period))
    assert read(d, "cpu.max") == written
    assert not (d / "cpu.weight").exists()       # no shares: no weight written


def test_cpu_shares_and_quota_write_both(tmp_path):
    d = fake_cgroup(tmp_path, {"cpu.weight": "", "cpu.max": ""})
    v2.write_cpu(str(d), pc.Resources(cpu_shares=1024, cpu_quota=25000, cpu_period=50000))
    assert (read(d, "cpu.weight"), read(d, "cpu.max")) == ("100", "25000 50000")


# --- cpuset (a fake cgroup directory: the writer's files, not the kernel) -------------------

def test_cpuset_cpus_and_mems(tmp_path):
    d = fake_cgroup(tmp_path, {"cpuset.cpus": "", "cpuset.mems": ""})
    v2.write_cpuset(str(d), pc.Resources(cpuset_cpus="0-1,3", cpuset_mems="0"))
    assert (read(d, "cpuset.cpus"), read(d, "cpuset.mems")) == ("0-1,3", "0")


def test_cpuset_mems_alone_leaves_cpus(tmp_path):
    d = fake_cgroup(tmp_path, {"cpuset.cpus": "", "cpuset.mems": ""})
    v2.write_cpuset(str(d), pc.Resources(cpuset_mems="0-1"))
    assert (read(d, "cpuset.cpus"), read(d, "cpuset.mems")) == ("", "0-1")


# --- pids.max ------------------------------------------------------------------------------

@pytest.mark.parametrize("limit,written", [(10, "10"), (1, "1"), (-1, "max")])
def test_pids_max(tmp_path, limit, written):
    d = fake_cgroup(tmp_path, {"pids.max": ""})
    v2.write_pids(str(d), pc.Resources(pids_limit=limit))
    assert read(d, "pids.max") == written


def test_pids_limit_without_the_controller(tmp_path):
    with pytest.raises(ContainerSystemError) as e:
        v2.write_pids(str(tmp_path), pc.Resources(pids_limit=10))
    assert "'pids' controller is not enabled" in str(e.value)


# --- enable_controllers --------------------------------------------------------------------

def test_enable_controllers_delegates_ours_that_the_parent_has(tmp_path):
    # rdma and misc are not ours; io is ours but already enabled; hugetlb is not available.
    d = fake_cgroup(tmp_path, {"cgroup.controllers": "cpuset cpu io memory pids rdma misc\n",
                               "cgroup.subtree_control": "io\n"})
    v2.enable_controllers(str(d))
    # One write, as the kernel takes it: "+a +b" enables all or none.
    assert read(d, "cgroup.subtree_control") == "+cpu +cpuset +memory +pids"


def test_enable_controllers_writes_nothing_when_all_are_enabled(tmp_path):
    d = fake_cgroup(tmp_path, {"cgroup.controllers": "cpu memory pids\n",
                               "cgroup.subtree_control": "cpu memory pids\n"})
    v2.enable_controllers(str(d))
    assert read(d, "cgroup.subtree_control") == "cpu memory pids\n"


def test_enable_controllers_on_a_cgroup2_without_controllers(tmp_path):
    """A hybrid host's cgroup2: nothing to enable, nothing written."""
    d = fake_cgroup(tmp_path, {"cgroup.controllers": "", "cgroup.subtree_control": ""})
    v2.enable_controllers(str(d))
    assert read(d, "cgroup.subtree_control") == ""


def test_enable_controllers_names_the_missing_file(tmp_path):
    with pytest.raises(ContainerSystemError) as e:
        v2.enable_controllers(str(tmp_path))
    assert "cgroup.controllers" in str(e.value) and e.value.errno == errno.ENOENT

"""The cgroup writers of the Resources knobs the OCI layer added (memory reservation, block
I/O weight, hugetlb limits), on fake cgroup directories: what file each writes, and the
error when the kernel offers none. (This host has no hugetlb controller for containers and
no blkio weight file, so these are the only tests of those writes here.)"""
import errno

import pytest

import pycontainer as pc
from pycontainer.cgroups import v1, v2
from pycontainer.errors import ContainerSystemError


def files(d, *names):
    for name in names:
        (d / name).write_text("")
    return d


def test_v1_memory_reservation(tmp_path):
    d = files(tmp_path, "memory.limit_in_bytes", "memory.soft_limit_in_bytes")
    v1.write_memory(str(d), pc.Resources(memory_limit=1 << 26, memory_reservation=1 << 25))
    assert (d / "memory.soft_limit_in_bytes").read_text() == str(1 << 25)
    assert (d / "memory.limit_in_bytes").read_text() == str(1 << 26)


def test_v2_memory_reservation_is_memory_low(tmp_path):
    d = files(tmp_path, "memory.low")
    v2.write_memory(str(d), pc.Resources(memory_reservation=1 << 25))
    assert (d / "memory.low").read_text() == str(1 << 25)


@pytest.mark.parametrize("name", ["blkio.weight", "blkio.bfq.weight"])
def test_v1_blkio_weight(tmp_path, name):
    d = files(tmp_path, name)
    v1.write_blkio(str(d), pc.Resources(blkio_weight=300))
    assert (d / name).read_text() == "300"


def test_v1_blkio_weight_without_a_weight_file(tmp_path):
    with pytest.raises(ContainerSystemError) as e:
        v1.write_blkio(str(tmp_path), pc.Resources(blkio_weight=300))
    assert e.value.errno == errno.ENOTSUP and "blkio_weight" in str(e.value)


@pytest.mark.parametrize("weight,written", [(1000, "10000"), (10, "1"), (500, "4950")])
def test_v2_io_weight(tmp_path, weight, written):
    d = files(tmp_path, "io.weight")
    v2.write_io(str(d), pc.Resources(blkio_weight=weight))
    assert (d / "io.weight").read_text() == written


def test_v2_io_bfq_weight_takes_the_v1_range(tmp_path):
    d = files(tmp_path, "io.weight", "io.bfq.weight")
    v2.write_io(str(d), pc.Resources(blkio_weight=500))
    assert (d / "io.bfq.weight").read_text() == "500"
    assert (d / "io.weight").read_text() == ""


def test_hugetlb(tmp_path):
    limits = (("2MB", 1 << 22), ("1GB", 0))
    d = files(tmp_path, "hugetlb.2MB.limit_in_bytes", "hugetlb.1GB.limit_in_bytes")
    v1.write_hugetlb(str(d), pc.Resources(hugepage_limits=limits))
    assert (d / "hugetlb.2MB.limit_in_bytes").read_text() == str(1 << 22)
    assert (d / "hugetlb.1GB.limit_in_bytes").read_text() == "0"
    d2 = tmp_path / "b"
    d2.mkdir()
    files(d2, "hugetlb.2MB.max", "hugetlb.1GB.max")
    v2.write_hugetlb(str(d2), pc.Resources(hugepage_limits=limits))
    assert (d2 / "hugetlb.2MB.max").read_text() == str(1 << 22)
    with pytest.raises(ContainerSystemError) as e:
        v1.write_hugetlb(str(d2), pc.Resources(hugepage_limits=(("64KB", 1),)))
    assert "no 64KB huge pages" in str(e.value)


@pytest.mark.parametrize("bad", [5, 1001, "100"])
def test_blkio_weight_range(bad):
    with pytest.raises(pc.ConfigInvalidError):
        pc.Resources(blkio_weight=bad)


@pytest.mark.parametrize("bad", [[("2 MB", 1)], [("2MB",)], [("2MB", -1)], "2MB",
                                 [("2MB", 1), ("2MB", 2)]])
def test_hugepage_limits_validation(bad):
    with pytest.raises(pc.ConfigInvalidError):
        pc.Resources(hugepage_limits=bad)


def test_resources_record_round_trip():
    """Through the cgroup record (JSON: tuples come back as lists)."""
    import json
    r = pc.Resources(memory_reservation=1 << 20, blkio_weight=100,
                     hugepage_limits=(("2MB", 1 << 21),))
    again = pc.Resources(**json.loads(json.dumps(r.to_dict())))
    assert again == r

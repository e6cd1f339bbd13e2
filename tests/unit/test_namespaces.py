"""pycontainer.namespaces, the one table of namespace kinds, against the kernel: each
flag is what ioctl(NS_GET_NSTYPE) answers for the /proc/self/ns file the table names
(no root needed: the files are the test process's own)."""
import fcntl
import os

import pytest

from pycontainer import config, namespaces

NS_GET_NSTYPE = 0xb703


@pytest.mark.parametrize("ns", namespaces.TABLE, ids=lambda ns: ns.name)
def test_flag_and_proc_file_agree_with_the_kernel(ns):
    fd = os.open(f"/proc/self/ns/{ns.proc}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert fcntl.ioctl(fd, NS_GET_NSTYPE) == ns.clone_flag
    finally:
        os.close(fd)
    namespaces.check_file(ns.name, f"/proc/self/ns/{ns.proc}")


def test_one_table():
    assert len({ns.clone_flag for ns in namespaces.TABLE}) == len(namespaces.TABLE)
    assert config.NAMESPACES == tuple(ns.name for ns in namespaces.TABLE)
    assert config.JOINABLE_NAMESPACES == ("mount", "pid", "uts", "ipc", "net", "cgroup")
    assert set(config.DEFAULT_NAMESPACES) <= set(config.NAMESPACES)
    # Docker's mask of every namespace flag
    assert namespaces.clone_flags(config.NAMESPACES) == 0x7E020000
    assert namespaces.clone_flags(["net", "mount"]) == 0x40020000

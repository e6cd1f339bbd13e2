"""Soak (issue 6.4): 300 full lifecycles in the test process (benchmarks/soak.py's cycle:
create, an init that exits by itself, a new init, a join, destroy) leave the open
descriptors and threads exactly as they were and RSS within 5 MiB.
`python benchmarks/soak.py` runs the long version (10000 cycles by default)."""
import os
import sys

import pytest

from reliability_helpers import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import soak  # noqa: E402


def check(r):
    b, a = r["before"], r["after"]
    new, gone = soak.fd_diff(b, a)
    growth_kib = a["rss_kib"] - b["rss_kib"]
    print(f"\nsoak: {r['cycles']} cycles, {r['cycle_ms']['mean']:.2f} ms/cycle; fds "
          f"{len(b['fds'])} -> {len(a['fds'])}, threads {b['threads']} -> {a['threads']}, "
          f"RSS {b['rss_kib']} -> {a['rss_kib']} KiB ({growth_kib:+d})")
    assert (new, gone) == ([], []), f"descriptors opened {new}, closed {gone}"
    assert a["threads"] == b["threads"]
    assert a["python_threads"] == b["python_threads"]
    assert growth_kib < 5 * 1024
    assert not any(r["left"].values()), r["left"]


def test_soak_300_cycles(factory, busybox_rootfs):
    check(soak.run(300, busybox_rootfs, factory.root, warmup=30))


@pytest.mark.slow
def test_soak_3000_cycles(factory, busybox_rootfs):
    check(soak.run(3000, busybox_rootfs, factory.root, warmup=30))

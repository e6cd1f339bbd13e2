"""Fixtures of the attack tests: a hostile program for inside containers, built from
tests/security/attacker.c (static, so the busybox rootfs can run it)."""
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def attacker_rootfs(busybox_rootfs, tmp_path_factory):
    """A copy of the busybox rootfs with /attacker in it (see attacker.c)."""
    root = tmp_path_factory.mktemp("attacker") / "rootfs"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    subprocess.run(["cc", "-O2", "-static", "-o", str(root / "attacker"),
                    os.path.join(HERE, "attacker.c")], check=True)
    return str(root)

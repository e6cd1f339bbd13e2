"""config.json mounts as Kubernetes and the OCI conformance tools write them, checked inside
real containers through the CLI (create, start, state, delete) and the library: a read-only
root made read-only only after every mount point is made (containerd binds resolv.conf,
hosts and hostname into a root that lacks them), errors that name config.json's own
index of a mount. Root required."""
import os
import shutil

import pytest

import pycontainer as pc
from test_cli import oci, wait_status  # noqa: F401  (pytest fixtures)
from test_oci_kernel import lifecycle, run_lib
from helpers import write_bundle


@pytest.fixture
def own_rootfs(busybox_rootfs, tmp_path):
    """A copy of the busybox rootfs: these tests make mount points in it."""
    root = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, root, symlinks=True)
    shutil.rmtree(root / "etc")          # as the pause image: no /etc at all
    return str(root)


@pytest.fixture
def own_bundle(own_rootfs, tmp_path):
    count = [0]

    def make(args=("sleep", "1000"), mutate=None):
        count[0] += 1
        return write_bundle(tmp_path / f"bundle{count[0]}", own_rootfs, args, mutate)
    return make


def resolv_conf(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 192.0.2.53\n")
    return {"destination": "/etc/resolv.conf", "type": "bind", "source": str(host),
            "options": ["rbind", "ro"]}


# --- a read-only root gets its mount points first ------------------------------------

def test_readonly_root_with_a_bind_onto_a_missing_file(oci, own_bundle, own_rootfs, tmp_path):
    def mutate(s):
        s["root"]["readonly"] = True
        s["mounts"].append(resolv_conf(tmp_path))
    log = lifecycle(oci, own_bundle, tmp_path, "cat /etc/resolv.conf; "
                    "touch /x 2>/dev/null && echo root-writable; "
                    "touch /dev/x /run/y && echo dev-run-writable", mutate)
    assert log == "nameserver 192.0.2.53\ndev-run-writable\n"
    assert os.path.isfile(os.path.join(own_rootfs, "etc", "resolv.conf"))   # the mount point
    assert not os.path.exists(os.path.join(own_rootfs, "x"))


def test_readonly_root_with_a_bind_onto_a_missing_file_library(factory, own_rootfs, tmp_path):
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    out = run_lib(factory, "cat /etc/hosts; touch /x 2>/dev/null || echo ro; "
                  "grep -c ' /proc/sys ro,' /proc/self/mountinfo", rootfs=own_rootfs,
                  readonly_rootfs=True,
                  mounts=[pc.Mount("/etc/hosts", str(tmp_path / "hosts"), options=("ro",))])
    assert out == "127.0.0.1 localhost\nro\n1\n"     # read-only paths still made read-only


def test_a_failing_mount_names_its_config_json_index(oci, own_bundle, tmp_path):
    def mutate(s):
        s["root"]["readonly"] = True
        s["mounts"].append(resolv_conf(tmp_path))
        s["mounts"].append({"destination": "/bad", "type": "tmpfs", "source": "tmpfs",
                            "options": ["size=bogus"]})
    b = own_bundle(["true"], mutate=mutate)
    index = len(write_spec(b)["mounts"]) - 1
    r = oci.fails("create", "-b", b, "bad")
    assert f"mount: mounts[{index}] /bad: Invalid argument (EINVAL)" in r.err, r.err
    assert oci.ids() == []


def write_spec(bundle):
    import json
    with open(os.path.join(bundle, "config.json")) as f:
        return json.load(f)

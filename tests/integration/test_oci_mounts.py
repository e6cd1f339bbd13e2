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


# --- every config.json mount in its listed position ----------------------------------

# mountinfo's mount points and sources below / in order (the root itself left out).
MOUNTS_IN_ORDER = ("awk '$5 != \"/\" { for (i = 7; $i != \"-\"; i++); print $5, $(i + 2) }' "
                   "/proc/self/mountinfo")


def test_mounts_follow_the_config_json_order(oci, own_bundle, tmp_path):
    """/sys listed first, a tmpfs between /proc and /dev: mountinfo shows them in that
    order, with the config's sources."""
    def mutate(s):
        mounts = {m["destination"]: m for m in s["mounts"]}
        s["mounts"] = [dict(mounts["/sys"], source="sysfs-src"),
                       dict(mounts["/proc"], source="proc-src"),
                       {"destination": "/mnt", "type": "tmpfs", "source": "between",
                        "options": ["size=1m"]},
                       mounts["/dev"], mounts["/dev/pts"], mounts["/dev/shm"],
                       mounts["/dev/mqueue"], mounts["/run"]]
    log = lifecycle(oci, own_bundle, tmp_path, MOUNTS_IN_ORDER, mutate)
    seen = [line for line in log.splitlines() if not line.startswith(("/proc/", "/sys/", "/run"))]
    assert seen == ["/sys sysfs-src", "/proc proc-src", "/mnt between", "/dev tmpfs",
                    "/dev/pts devpts", "/dev/shm shm", "/dev/mqueue mqueue"], log


def test_a_config_json_without_sys_and_dev_gets_none(oci, own_bundle, tmp_path):
    """No /sys and no /dev in config.json: none is made (runc's behaviour); the default
    device nodes and /dev links still are, in the image's own /dev."""
    def mutate(s):
        s["mounts"] = [m for m in s["mounts"] if m["destination"] in ("/proc", "/run")]
    log = lifecycle(oci, own_bundle, tmp_path,
                    "ls /sys | wc -l; ls /dev; readlink /dev/ptmx; readlink /dev/fd; "
                    "grep -c ' /dev ' /proc/self/mountinfo", mutate)
    assert log.split() == ["0", "fd", "full", "null", "ptmx", "random", "stderr",
                           "stdin", "stdout", "tty", "urandom", "zero", "pts/ptmx",
                           "/proc/self/fd", "0"], log


def test_a_staged_init_without_proc_fails_at_create(oci, own_bundle):
    """The go reopens exec.fifo through /proc/self/fd (as runc's does): without a /proc
    create fails, naming it, instead of an init that dies unseen after it."""
    b = own_bundle(["true"], mutate=lambda s: s.__setitem__(
        "mounts", [m for m in s["mounts"] if m["destination"] != "/proc"]))
    r = oci.fails("create", "-b", b, "noproc")
    assert "stage: exec_fifo: No such file or directory (ENOENT)" in r.err, r.err
    assert oci.ids() == []


def test_library_default_mounts(factory, own_rootfs):
    """A library Config keeps its own kernel filesystems; default_mounts=False leaves
    them to its mounts."""
    out = run_lib(factory, MOUNTS_IN_ORDER, rootfs=own_rootfs)
    assert sorted(line for line in out.splitlines() if line.count("/") == 1 or "/dev/" in
                  line) == ["/dev tmpfs", "/dev/mqueue mqueue", "/dev/pts devpts",
                            "/dev/shm shm", "/proc proc", "/sys sysfs"], out
    out = run_lib(factory, MOUNTS_IN_ORDER, rootfs=own_rootfs, default_mounts=False, mounts=[
        pc.Mount("/sys", "sys", "sysfs", ("ro", "nosuid")),
        pc.Mount("/proc", "p", "proc")])
    assert [line for line in out.splitlines() if line.count("/") == 1] == \
        ["/sys sys", "/proc p"], out

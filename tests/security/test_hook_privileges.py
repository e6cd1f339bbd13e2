"""startContainer hooks run with the container's security settings (issue 18, item 6).

A startContainer hook comes from the image (its path resolves in the container), so it is
the container's code: runc runs it from the init after the capabilities are dropped,
no_new_privs is set and the seccomp filter is in place. It ran with every capability, no
no_new_privs and no filter here, so it could mount, load modules, or anything root on
the host can do from the container's namespaces. createContainer hooks (a host program
named by the caller's config.json, run before any of the container's code) stay
privileged, as in runc.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

import pycontainer as pc
from pycontainer.security import CAP_NUMBER, DEFAULT_CAPS, kernel_last_cap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO)

# What the hook reports, and an attempt at what only a privileged process may do.
PROBE = ("grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status >&2; "
         "if mount -t tmpfs none /mnt 2>/dev/null; then echo MOUNTED >&2; fi")


def _mask(names):
    return sum(1 << CAP_NUMBER[n] for n in names if CAP_NUMBER[n] <= kernel_last_cap())


def _report(err):
    fields = dict(line.split(":", 1) for line in err.decode().splitlines() if ":" in line)
    return {k: v.strip() for k, v in fields.items()}, "MOUNTED" in err.decode()


@pytest.fixture
def staged(factory, busybox_rootfs):
    c = factory.create("hooked", pc.Config(rootfs=busybox_rootfs))
    pid, exits = c.stage(pc.ProcessConfig(args=["true"]))
    yield c
    c.destroy()
    exits.get(timeout=10)


def test_start_container_hook_gets_the_containers_security(staged):
    status, err = staged.run_hook(["/bin/sh", "-c", PROBE], mount=True)
    assert status == 0, err
    fields, mounted = _report(err)
    assert int(fields["CapEff"], 16) == _mask(DEFAULT_CAPS), fields
    assert int(fields["CapBnd"], 16) == _mask(DEFAULT_CAPS), fields
    assert fields["NoNewPrivs"] == "1", fields
    assert fields["Seccomp"] == "2", fields
    assert not mounted, "the startContainer hook could mount"


def test_create_container_hook_stays_privileged(staged):
    """The host's program, named by whoever made the container: as runc, privileged."""
    status, err = staged.run_hook(["/bin/sh", "-c", PROBE.replace("/mnt", "/proc/self/fdinfo")],
                                  mount=False)
    assert status == 0, err
    fields, _ = _report(err)
    with open("/proc/self/status") as f:
        ours, _ = _report(f.read().encode())
    assert fields["CapEff"] == ours["CapEff"], fields
    assert fields["NoNewPrivs"] == "0" and fields["Seccomp"] == "0", fields


def test_cli_start_container_hook_cannot_mount(root, tmp_path, busybox_rootfs):
    """Through `pycontainer create/start` (runc's default spec: three capabilities,
    noNewPrivileges, no filter): the hook fails (exit 3) if it has more capabilities,
    lacks no_new_privs or can mount; start then fails with its status."""
    from pycontainer.oci.spec import default_spec
    spec = default_spec()
    cap_eff = f"{_mask(spec['process']['capabilities']['effective']):016x}"
    hook = {"path": "/bin/sh", "args": ["sh", "-c",
            f"grep -q '^CapEff:[[:space:]]*{cap_eff}$' /proc/self/status || exit 3; "
            "grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || exit 3; "
            "mount -t tmpfs none /mnt 2>/dev/null && exit 3; exit 0"]}
    spec["root"]["path"] = busybox_rootfs
    spec["process"]["args"] = ["true"]
    spec["hooks"] = {"startContainer": [hook]}
    (tmp_path / "config.json").write_text(json.dumps(spec))

    def cli(*args):
        # Files, not pipes: the staged init keeps its stdio open after create returns.
        with tempfile.TemporaryFile() as err:
            p = subprocess.run([sys.executable, "-m", "pycontainer", "--root",
                                str(tmp_path / "state"), *args], stdout=subprocess.DEVNULL,
                               stderr=err, cwd=REPO, env=ENV, timeout=60,
                               stdin=subprocess.DEVNULL)
            err.seek(0)
            return p.returncode, err.read().decode()
    try:
        assert cli("create", "-b", str(tmp_path), "hk") == (0, "")
        rc, err = cli("start", "hk")
        assert rc == 0, err
    finally:
        cli("delete", "--force", "hk")

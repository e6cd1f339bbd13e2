"""A sysctl key cannot climb out of the namespace it was checked against (issue 18, item 5).

`net.//.kernel.core_pattern` passed the `net.` check, and the '/' -> '.' spelling of
sysctl(8) made it /proc/sys/net/../kernel/core_pattern, which the still-privileged init
wrote on the host. Two layers stop it: the Config refuses any key whose components are
not names, and the init opens the file with a resolver that cannot leave /proc/sys.

The attack is aimed at kernel.printk_ratelimit, a host-wide sysctl whose change is
harmless; the test puts its value back whatever happens.
"""
import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

import pycontainer as pc
from pycontainer.oci.reader import SpecError
from pycontainer.oci.spec import default_spec, parse_spec

from helpers import run  # noqa: E402  (tests/helpers.py)

HOST_FILE = "/proc/sys/kernel/printk_ratelimit"
CLIMB = "net.//.kernel.printk_ratelimit"          # /proc/sys/net/../kernel/printk_ratelimit
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read_host():
    with open(HOST_FILE) as f:
        return f.read().strip()


@contextmanager
def host_sysctl_guarded():
    """Yields a value different from the host's current one; afterwards the host value
    must be unchanged (it is restored either way)."""
    saved = _read_host()
    new = str(int(saved) + 7)
    try:
        yield new
        assert _read_host() == saved, "the container changed a host sysctl"
    finally:
        if _read_host() != saved:
            with open(HOST_FILE, "w") as f:
                f.write(saved)


@pytest.mark.parametrize("key", [
    CLIMB,
    "net.//.kernel.core_pattern",
    "net.ipv4.//.//.kernel.core_pattern",
    "net./.ipv4.ip_forward",               # a '.' component
    "net..ipv4.ip_forward",                # an empty component
    "net.ipv4.ip_forward.",
    "net.ipv4.ip forward",
    "net.ipv4.conf.all\x00.forwarding",
    "net.ipv4.conf.all\n.forwarding",
    "net.ipv4.conf./lo.rp_filter",         # a component starting with '.'
])
def test_config_refuses_a_key_that_is_not_names(key):
    with pytest.raises(pc.ConfigInvalidError) as info:
        pc.Config(sysctl={key: "1"})
    assert info.value.field.startswith("sysctl"), info.value
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("key", ["net.ipv4.ip_forward", "net.ipv4.conf.eth0/100.rp_filter",
                                 "net.ipv4.conf.br-1_a.forwarding", "kernel.shmmax",
                                 "fs.mqueue.msg_max"])
def test_config_keeps_real_names(key):
    assert key in pc.Config(sysctl={key: "1"}).sysctl


def test_config_json_refuses_the_key_naming_its_path(busybox_rootfs):
    spec = default_spec()
    spec["root"]["path"] = busybox_rootfs
    spec["linux"]["sysctl"] = {"net.//.kernel.core_pattern": "|/tmp/x"}
    with pytest.raises(SpecError) as info:
        parse_spec(spec, "/")
    assert info.value.field.startswith("linux.sysctl")


def test_climbing_key_is_refused_and_the_host_is_untouched(factory, busybox_rootfs):
    with host_sysctl_guarded() as new:
        try:
            config = pc.Config(rootfs=busybox_rootfs, sysctl={CLIMB: new})
        except pc.ConfigInvalidError as exc:
            assert exc.field.startswith("sysctl") and repr(CLIMB) in str(exc)
        else:
            c = factory.create("climb", config)
            try:
                run(c, ["true"])
            finally:
                c.destroy()
            pytest.fail(f"Config accepted {CLIMB!r}")


def test_the_inits_resolver_alone_stays_in_proc_sys(factory, busybox_rootfs):
    """Validation bypassed: the key is changed after the Config checked it (a Config's dict
    is not to be changed, but nothing stops it). The init must still refuse to leave
    /proc/sys, failing the start at the sysctl stage, before the program runs."""
    with host_sysctl_guarded() as new:
        config = pc.Config(rootfs=busybox_rootfs, sysctl={"net.ipv4.ip_forward": "1"})
        config.sysctl.clear()
        config.sysctl[CLIMB] = new
        c = factory.create("bypass", config)
        try:
            with pytest.raises(pc.ContainerSystemError) as info:
                run(c, ["true"])
            assert info.value.stage == "sysctl", info.value
            assert "printk_ratelimit" in str(info.value)
        finally:
            c.destroy()


def test_namespaced_sysctls_still_apply(factory, busybox_rootfs):
    config = pc.Config(rootfs=busybox_rootfs, sysctl={"net.ipv4.ip_forward": "1",
                                                       "net.ipv4.conf.lo.forwarding": "1",
                                                       "kernel.shmmni": "1234"})
    c = factory.create("ok", config)
    try:
        status, out, err, _ = run(c, ["cat", "/proc/sys/net/ipv4/ip_forward",
                                      "/proc/sys/net/ipv4/conf/lo/forwarding",
                                      "/proc/sys/kernel/shmmni"])
        assert status == 0, err
        assert out.split() == ["1", "1", "1234"]
    finally:
        c.destroy()


def test_cli_refuses_the_key_with_one_line(root, tmp_path, busybox_rootfs):
    spec = default_spec()
    spec["root"]["path"] = busybox_rootfs
    spec["process"]["args"] = ["true"]
    spec["linux"]["sysctl"] = {CLIMB: "9"}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    with host_sysctl_guarded():
        p = subprocess.run([sys.executable, "-m", "pycontainer", "--root",
                            str(tmp_path / "state"), "run", "-b", str(tmp_path), "climb"],
                           capture_output=True, text=True, cwd=REPO, timeout=60,
                           env=dict(os.environ, PYTHONPATH=REPO), stdin=subprocess.DEVNULL)
        if p.returncode == 0:
            subprocess.run([sys.executable, "-m", "pycontainer", "--root",
                            str(tmp_path / "state"), "delete", "--force", "climb"],
                           cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert p.returncode == 1, p
    assert "linux.sysctl" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr

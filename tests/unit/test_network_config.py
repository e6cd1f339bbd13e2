"""Config.networks and namespaces joined by path: validation and round trips. No root
needed (the namespace files checked are the test process's own). The kernel side is in
tests/integration/test_network.py."""
import json

import pytest

import pycontainer as pc
from pycontainer.factory import rootless_config
from pycontainer.security import IdMap


# --- validation -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,field", [
    (dict(namespaces={"mount": None, "pid": "relative/ns/pid"}), "namespaces.pid"),
    (dict(namespaces={"mount": "/proc/self/ns/mnt", "pid": None, "user": None}),
     "namespaces.mount"),
    (dict(namespaces={"mount": None, "pid": None, "user": "/proc/self/ns/user"}),
     "namespaces.user"),
    # (A path that is not a namespace file of its kind: Factory.create refuses it,
    # tests/unit/test_config.py:test_create_checks_the_host.)
    (dict(namespaces={"mount": None, "pid": None, "net": "relative"}), "namespaces.net"),
    (dict(namespaces={"mount": None, "pid": None, "ipc": 5}), "namespaces.ipc"),
    (dict(namespace_paths={"net": "/proc/self/ns/net"}, namespaces=("mount", "pid")),
     "namespaces.net"),
    (dict(namespace_paths="x"), "namespace_paths"),
    # A joined uts namespace takes a hostname, except from a new user namespace.
    (dict(namespaces={"mount": None, "pid": None, "user": None, "uts": "/proc/self/ns/uts"},
          uid_mappings=[IdMap(0, 100000, 65536)], gid_mappings=[IdMap(0, 100000, 65536)],
          hostname="box"), "hostname"),
    (dict(namespaces={"mount": None, "pid": None, "net": "/proc/self/ns/net"},
          sysctl={"net.ipv4.ip_forward": "1"}), "sysctl['net.ipv4.ip_forward']"),
    (dict(networks="veth"), "networks"),
    (dict(networks=[5]), "networks[0]"),
    (dict(networks=[{"type": "tap"}]), "networks[0].type"),
    (dict(networks=[{"type": "veth", "colour": "red"}]), "networks[0].colour"),
    (dict(networks=[{"type": "loopback"}, {"type": "veth", "address": "10.0.0.2"}]),
     "networks[1].address"),
    (dict(networks=[{"type": "veth", "address": "10.0.0.0/24"}]), "networks[0].address"),
    (dict(networks=[{"type": "veth", "address": "10.0.0.2/33"}]), "networks[0].address"),
    (dict(networks=[{"type": "veth", "address": "224.0.0.1/4"}]), "networks[0].address"),
    (dict(networks=[{"type": "veth", "address": ["10.0.0.2/24", 5]}]), "networks[0].address"),
    (dict(networks=[{"type": "veth", "address": "10.0.0.2/24", "gateway": "10.1.0.1"}]),
     "networks[0].gateway"),
    (dict(networks=[{"type": "veth", "address": "10.0.0.2/24", "gateway": "fd00::1"}]),
     "networks[0].gateway"),
    (dict(networks=[{"type": "veth", "address": "10.0.0.2/24", "gateway": "10.0.0.2"}]),
     "networks[0].gateway"),
    (dict(networks=[{"type": "veth", "address": "10.0.0.2/24",
                     "gateway": ["10.0.0.1", "10.0.0.3"]}]), "networks[0].gateway"),
    (dict(networks=[{"type": "veth", "gateway": "nope"}]), "networks[0].gateway"),
    (dict(networks=[{"type": "veth", "mtu": 67}]), "networks[0].mtu"),
    (dict(networks=[{"type": "veth", "mtu": 70000}]), "networks[0].mtu"),
    (dict(networks=[{"type": "veth", "mtu": 1000, "address": "fd00::2/64"}]),
     "networks[0].mtu"),
    (dict(networks=[{"type": "veth", "mac": "01:00:00:00:00:01"}]), "networks[0].mac"),
    (dict(networks=[{"type": "veth", "mac": "00:00:00:00:00:00"}]), "networks[0].mac"),
    (dict(networks=[{"type": "veth", "mac": "02:00:00:00:00"}]), "networks[0].mac"),
    (dict(networks=[{"type": "veth", "name": "a" * 16}]), "networks[0].name"),
    (dict(networks=[{"type": "veth", "name": "lo"}]), "networks[0].name"),
    (dict(networks=[{"type": "veth", "name": "eth/0"}]), "networks[0].name"),
    (dict(networks=[{"type": "veth", "name": "eth 0"}]), "networks[0].name"),
    (dict(networks=[{"type": "veth", "host_name": "veth%d"}]), "networks[0].host_name"),
    (dict(networks=[{"type": "veth", "host_name": "a" * 12 + "*"}]), "networks[0].host_name"),
    (dict(networks=[{"type": "veth", "host_name": "*"}]), "networks[0].host_name"),
    (dict(networks=[{"type": "veth", "bridge": ""}]), "networks[0].bridge"),
    (dict(networks=[{"type": "veth", "host_name": "pcta"},
                    {"type": "veth", "name": "eth1", "host_name": "pcta"}]),
     "networks[1].host_name"),
    (dict(networks=[{"type": "veth"}, {"type": "veth"}]), "networks[1].name"),
    (dict(networks=[{"type": "loopback", "address": "127.0.0.2/8"}]), "networks[0].address"),
    (dict(networks=[{"type": "loopback", "name": "eth0"}]), "networks[0].name"),
    (dict(networks=[{"type": "veth"}], namespaces=("mount", "pid")), "networks[0].type"),
    (dict(networks=[{"type": "veth"}],
          namespaces={"mount": None, "pid": None, "net": "/proc/self/ns/net"}),
     "networks[0].type"),
    (dict(networks=[{"type": "veth"}], namespaces=("user", "mount", "pid", "net"),
          uid_mappings=[pc.security.IdMap(0, 100000, 65536)],
          gid_mappings=[pc.security.IdMap(0, 100000, 65536)]), "networks[0].type"),
    (dict(namespaces={"mount": None, "pid": None, "cgroup": "/proc/self/ns/cgroup",
                      "user": None},
          uid_mappings=[pc.security.IdMap(0, 100000, 65536)],
          gid_mappings=[pc.security.IdMap(0, 100000, 65536)]), "namespaces.cgroup"),
])
def test_validation_names_the_field(kwargs, field):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(**kwargs)
    assert ei.value.field == field, str(ei.value)
    assert field in str(ei.value)


@pytest.mark.parametrize("kwargs,field", [
    (dict(type="veth", address="nope"), "networks.address"),
    (dict(type="veth", mtu=True), "networks.mtu"),
    (dict(type="nope"), "networks.type"),
])
def test_network_alone_names_the_field(kwargs, field):
    """A Network made on its own does not know its place in a list yet."""
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Network(**kwargs)
    assert ei.value.field == field


def test_config_round_trip():
    c = pc.Config(namespaces={"mount": None, "pid": None, "ipc": None,
                              "net": "/proc/self/ns/net", "uts": "/proc/self/ns/uts"})
    assert c.namespaces == ("mount", "pid", "uts", "ipc", "net")
    assert c.namespace_paths == {"uts": "/proc/self/ns/uts", "net": "/proc/self/ns/net"}
    assert pc.Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    v = pc.Config(networks=[pc.Network("loopback"), pc.Network("veth", bridge="br0", address=["10.0.0.2/24",
                                                                      "FD00::2/64"],
                                       gateway=["10.0.0.1", "fd00::1"], mtu=1500,
                                       mac="02:AA:00:00:00:01")])
    assert v.networks[0].name == "lo"
    assert v.networks[1].name == "eth0" and v.networks[1].host_name == "veth*"
    assert v.networks[1].address == ("10.0.0.2/24", "fd00::2/64")
    assert v.networks[1].mac == "02:aa:00:00:00:01"
    assert pc.Config.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_rootless_refuses_a_veth():
    """What Factory.create does for an unprivileged caller (tests/integration/
    test_rootless.py runs the rest as a real one)."""
    with pytest.raises(pc.ConfigInvalidError) as ei:
        rootless_config(pc.Config(networks=[pc.Network("veth")]), "c", None)
    assert ei.value.field == "networks[0].type"

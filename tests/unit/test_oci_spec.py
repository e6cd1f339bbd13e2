"""OCI config.json <-> Config: runc's generated specs, round trips, every error path with its
JSON path, warnings, hooks, the state and features documents, and the CLI's parsers.

No root needed: nothing here touches the kernel (hooks run as plain subprocesses)."""
import dataclasses
import json
import os
import signal

import pytest

import pycontainer as pc
from pycontainer import cli
from pycontainer.devices import DEFAULT_RULES, DeviceRule
from pycontainer.oci import hooks as oci_hooks
from pycontainer.oci import runtime as oci_runtime
from pycontainer.oci.events import stats_event
from pycontainer.oci.features import features
from pycontainer.oci.reader import SpecError
from pycontainer.oci.runtime import check_host, load_bundle
from pycontainer.oci.spec import (BUILTIN_MOUNTS, Bundle, default_spec, parse_process,
                                  parse_spec, to_oci)
from pycontainer.oci.state import rfc3339, state_document
from pycontainer.security import Capabilities, Device, IdMap, Rlimit

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "oci")


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def write(bundle_dir, doc):
    with open(os.path.join(bundle_dir, "config.json"), "w") as f:
        json.dump(doc, f)


# --- runc's generated specs ---------------------------------------------------------------

def test_runc_spec_parses(bundle):
    """`runc spec` (runc 1.1.5, saved as a fixture) loads; what cannot be applied as written
    is a warning naming its JSON path."""
    b = parse_spec(fixture("runc-1.1.5-spec.json"), bundle)
    c = b.config
    assert b.oci_version == "1.0.2-dev"
    assert c.rootfs == os.path.join(bundle, "rootfs") and c.readonly_rootfs
    assert c.hostname == "runc"
    assert set(c.namespaces) == {"pid", "net", "ipc", "uts", "mount"}
    # every entry, in its order, the kernel filesystems included (none is made otherwise)
    assert not c.default_mounts
    assert [(m.destination, m.type, m.source, m.label) for m in c.mounts] == [
        (m["destination"], m["type"], m["source"], f"mounts[{i}]")
        for i, m in enumerate(fixture("runc-1.1.5-spec.json")["mounts"])
        if m["type"] != "cgroup"]         # not mounted (a warning)
    assert c.capabilities.bounding == ("CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE")
    assert c.capabilities.ambient == ()
    assert c.rlimits == (Rlimit("RLIMIT_NOFILE", 1024, 1024),)
    assert c.no_new_privileges is True
    assert c.seccomp is None                    # runc spec has no seccomp section
    assert c.device_rules is None               # deny all + the standard nodes = default
    assert "/proc/kcore" in c.masked_paths and "/proc/sys" in c.readonly_paths
    assert c.env == ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                     "TERM=xterm")
    assert b.process == pc.ProcessConfig(args=("sh",))
    assert b.terminal is True
    assert b.rootfs == os.path.join(bundle, "rootfs")
    paths = sorted(w.split(":")[0] for w in b.warnings)
    assert paths == ["mounts[6]", "process.capabilities.ambient"], b.warnings


def test_runc_rootless_spec_parses(bundle):
    b = parse_spec(fixture("runc-1.1.5-spec-rootless.json"), bundle)
    c = b.config
    assert "user" in c.namespaces and "net" not in c.namespaces
    assert c.uid_mappings == (IdMap(0, 0, 1),) and c.gid_mappings == (IdMap(0, 0, 1),)
    assert c.mounts[5] == pc.Mount("/sys", "/sys", "bind",      # the host's, rbind
                                   ("nosuid", "noexec", "nodev", "ro"))
    devpts = c.mounts[2]      # gid=5 left out: the user namespace does not map it
    assert devpts.type == "devpts" and not any(o.startswith("gid=") for o in devpts.options)
    assert c.resources is None and c.device_rules is None


@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_parses_without_warnings(bundle, rootless):
    b = parse_spec(default_spec(rootless=rootless), bundle)
    assert b.warnings == []
    assert b.terminal is False
    assert b.config.hostname == "pycontainer"
    json.dumps(default_spec(rootless))          # plain JSON


def test_containerd_style_spec_parses(bundle):
    """The shape `ctr run` writes (written by hand after containerd's default Unix spec):
    zero-valued cpu fields, an empty memory object, a /run tmpfs, cgroupsPath /<ns>/<id>."""
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
            "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    doc = {
        "ociVersion": "1.1.0",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/",
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs"},
        "mounts": default_spec()["mounts"] + [
            {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}],
        "linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}], "memory": {},
                                "cpu": {"shares": 0, "quota": 0, "period": 0,
                                        "realtimeRuntime": 0, "realtimePeriod": 0}},
                  "cgroupsPath": "/default/ctr1",
                  "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount",
                                                       "network")],
                  "maskedPaths": list(pc.Config().masked_paths),
                  "readonlyPaths": list(pc.Config().readonly_paths)}}
    b = parse_spec(doc, bundle)
    assert b.warnings == []
    c = b.config
    assert c.capabilities == Capabilities() and c.resources is None
    assert c.cgroup_path == "/default/ctr1" and c.device_rules is None
    assert c.mounts[-1] == pc.Mount("/run", "tmpfs", "tmpfs",
                                    ("nosuid", "strictatime", "mode=755", "size=65536k"))
    assert len(c.mounts) == len(doc["mounts"]) and not c.default_mounts


def test_default_spec_is_runcs_adapted():
    ours = default_spec()
    runcs = fixture("runc-1.1.5-spec.json")
    assert ours["process"]["args"] == runcs["process"]["args"]
    assert ours["process"]["env"] == runcs["process"]["env"]
    assert ours["process"]["rlimits"] == runcs["process"]["rlimits"]
    assert ours["root"] == runcs["root"]
    assert [m["destination"] for m in ours["mounts"]] == \
        [m["destination"] for m in runcs["mounts"] if m["type"] != "cgroup"]
    assert ours["linux"]["namespaces"] == runcs["linux"]["namespaces"]
    assert set(runcs["linux"]["maskedPaths"]) <= set(ours["linux"]["maskedPaths"])
    assert ours["linux"]["readonlyPaths"] == runcs["linux"]["readonlyPaths"]
    assert "ambient" not in ours["process"]["capabilities"]


def test_load_bundle(bundle):
    write(bundle, default_spec())
    assert parse_spec(default_spec(), bundle).config == load_bundle(bundle).config
    b = load_bundle(bundle, args=["echo", "hi"])
    assert isinstance(b, Bundle) and b.process.args == ("echo", "hi")
    assert b.path == bundle


def test_missing_config_json(tmp_path):
    with pytest.raises(SpecError) as e:
        load_bundle(str(tmp_path))
    assert str(e.value).startswith("config.json: no config.json in bundle")
    b = load_bundle(str(tmp_path), args=["echo", "hi"], missing_ok=True)
    assert b.config == pc.Config()              # the built-in: host root, locked down
    assert b.process.args == ("echo", "hi") and b.rootfs == "/"


def test_invalid_json(bundle):
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.0.2",')
    with pytest.raises(SpecError) as e:
        load_bundle(bundle)
    assert str(e.value).startswith("config.json: not valid JSON")


# --- round trips ----------------------------------------------------------------------------

def _configs(rootfs):
    yield pc.Config(rootfs=rootfs, seccomp=None)
    yield pc.Config(seccomp=None, capabilities=None, masked_paths=(), readonly_paths=())
    yield pc.Config(
        rootfs=rootfs, hostname="box1", domainname="example.org", readonly_rootfs=True,
        namespaces=("mount", "pid", "uts", "ipc", "net", "cgroup"),
        mounts=(pc.Mount("/data", source="/srv/data", options=("ro",)),
                pc.Mount("/scratch", source="/srv/s", options=("bind", "nosuid")),
                pc.Mount("/tmp", type="tmpfs", source="tmpfs", options=("size=16m", "nodev"))),
        env=("PATH=/bin", "A=1"), cwd="/tmp",
        resources=pc.Resources(memory_limit=64 << 20, memory_swap=128 << 20, cpu_shares=512,
                               cpu_quota=50000, cpu_period=100000, cpuset_cpus="0",
                               cpuset_mems="0", pids_limit=64, memory_reservation=32 << 20),
        cgroup_path="/some/parent/box1",
        capabilities=Capabilities(bounding=("CAP_KILL", "CAP_CHOWN"),
                                  effective=("CAP_KILL",), permitted=("CAP_KILL",),
                                  inheritable=("CAP_KILL",), ambient=("CAP_KILL",)),
        no_new_privileges=False,
        seccomp={"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]},
        masked_paths=("/proc/kcore",), readonly_paths=("/proc/sys",),
        devices=(Device("/dev/fuse", "c", 10, 229),),
        device_rules=(DeviceRule(False), DeviceRule(True, "c", 10, 229, "rw")) +
        DEFAULT_RULES[1:],
        rlimits=(Rlimit("RLIMIT_NOFILE", 1024, 2048), Rlimit("RLIMIT_CORE", 0, None)),
        oom_score_adj=500, sysctl={"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536"},
        umask=0o077, pdeathsig=signal.SIGKILL)
    yield pc.Config(rootfs=rootfs, seccomp=None,
                    namespaces=("user", "mount", "pid", "uts", "ipc", "net"),
                    uid_mappings=(IdMap(0, 100000, 65536),),
                    gid_mappings=(IdMap(0, 100000, 65536),))


@pytest.mark.parametrize("index", range(4))
def test_round_trip_config(bundle, index):
    rootfs = os.path.join(bundle, "rootfs")
    config = list(_configs(rootfs))[index]
    process = pc.ProcessConfig(args=("/bin/sh", "-c", "exit 3"), user="1000:1000",
                               additional_gids=(5, 6))
    doc = to_oci(config, process, container_id="box1")
    json.dumps(doc)
    b = parse_spec(json.loads(json.dumps(doc)), "/")
    assert b.warnings == []
    # The built-in mounts come back as the config.json entries they were written as.
    assert b.config == dataclasses.replace(config, default_mounts=False, mounts=b.config.mounts)
    assert b.config.mounts[len(BUILTIN_MOUNTS):] == config.mounts
    assert [m.destination for m in b.config.mounts[:len(BUILTIN_MOUNTS)]] == list(BUILTIN_MOUNTS)
    assert b.process == process
    # and the document is a fixed point
    assert to_oci(b.config, b.process, container_id="box1") == doc


def test_round_trip_default_seccomp_writes_the_profile(bundle):
    """"default" has no OCI spelling: it is written out as the profile it stands for."""
    from pycontainer.seccomp import DEFAULT_PROFILE, validate_profile
    config = pc.Config(rootfs=os.path.join(bundle, "rootfs"))
    b = parse_spec(to_oci(config), "/")
    assert b.config.seccomp == validate_profile(DEFAULT_PROFILE)
    assert b.config == pc.Config(rootfs=config.rootfs, seccomp=b.config.seccomp,
                                 default_mounts=False, mounts=b.config.mounts)


def test_round_trip_joined_namespaces(bundle):
    """config.json -> Config -> config.json -> Config with a path for every namespace a
    container can join: each stays a joined one (to_oci writes its path), none becomes a
    new one. The paths are this process's own namespace files (Config asks the kernel
    that each is a namespace of its type)."""
    from pycontainer.config import JOINABLE_NAMESPACES
    from pycontainer.oci.spec import OCI_NAMESPACE_TYPES
    paths = {name: f"/proc/{os.getpid()}/ns/{name}" for name in JOINABLE_NAMESPACES
             if name not in ("mount", "pid")}       # those: test_joined_pid_and_mount
    doc = default_spec()
    del doc["hostname"]                          # a hostname needs a uts namespace of its own
    doc["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}] + [
        {"type": OCI_NAMESPACE_TYPES[name], "path": path} for name, path in paths.items()]
    config = parse_spec(doc, bundle).config
    assert config.namespace_paths == paths and config.new_namespaces == ("mount", "pid")
    written = to_oci(config)
    assert {(ns["type"], ns.get("path")) for ns in written["linux"]["namespaces"]} == \
        {("pid", None), ("mount", None)} | {(OCI_NAMESPACE_TYPES[n], p) for n, p in paths.items()}
    again = parse_spec(json.loads(json.dumps(written)), bundle).config
    assert again == config and again.namespace_paths == paths


@pytest.mark.parametrize("version", ["1.0.0", "1.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1",
                                     "1.3.0", "1.10.0+build.5"])
def test_every_1x_oci_version_is_read(bundle, version):
    """runc reads any 1.x: the 1.x releases only add optional fields, and one this runtime
    does not know is still refused by its JSON path."""
    doc = default_spec()
    doc["ociVersion"] = version
    b = parse_spec(doc, bundle)
    assert b.oci_version == version and b.warnings == []
    doc["process"]["frobnicate"] = True
    with pytest.raises(SpecError) as e:
        parse_spec(doc, bundle)
    assert str(e.value).startswith("process.frobnicate: unknown field")


def test_round_trip_runc_spec(bundle):
    """runc's spec -> Config -> config.json -> the same Config."""
    first = parse_spec(fixture("runc-1.1.5-spec.json"), bundle)
    again = parse_spec(to_oci(first.config, first.process), bundle)
    assert again.config == first.config and again.process == first.process


def test_hooks_and_annotations_round_trip(bundle):
    doc = default_spec()
    doc["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true", "x"],
                                  "env": ["A=1"], "timeout": 5}],
                    "poststop": [{"path": "/bin/false"}]}
    doc["annotations"] = {"org.example/a": "b"}
    b = parse_spec(doc, bundle)
    assert b.hooks.prestart == (oci_hooks.Hook("/bin/true", ("true", "x"), ("A=1",), 5),)
    assert b.hooks.poststop == (oci_hooks.Hook("/bin/false"),)
    assert b.annotations == {"org.example/a": "b"}
    out = to_oci(b.config, b.process, hooks=b.hooks, annotations=b.annotations)
    assert out["hooks"] == doc["hooks"] and out["annotations"] == doc["annotations"]


# --- mapping details --------------------------------------------------------------------------

def test_relative_paths_are_the_bundles(bundle):
    doc = default_spec()
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": "data",
                          "options": ["rbind", "ro"]})
    doc["mounts"].append({"destination": "/d2", "source": "/srv", "options": ["bind"]})
    c = parse_spec(doc, bundle).config
    assert c.mounts[-2] == pc.Mount("/data", os.path.join(bundle, "data"), "bind", ("ro",))
    assert c.mounts[-2].flags()[0] & 0x4000     # MS_REC: the library's binds are recursive
    assert c.mounts[-1] == pc.Mount("/d2", "/srv", "bind", ("bind",))


def test_the_kernel_filesystems_get_the_configs_options(bundle):
    """/dev/shm's size is the config's (it was the built-in's, with a warning)."""
    doc = default_spec()
    doc["mounts"][3]["options"].append("size=1g")
    b = parse_spec(doc, bundle)
    assert b.warnings == []
    assert b.config.mounts[3].destination == "/dev/shm"
    assert b.config.mounts[3].flags()[2].endswith("size=65536k,size=1g")


def test_bind_type_alone_is_not_recursive(bundle):
    doc = default_spec()
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv"})
    m = parse_spec(doc, bundle).config.mounts[-1]
    assert m.options == ("bind",)
    assert not m.flags()[0] & 0x4000            # no MS_REC


def test_host_root_is_the_host_image(bundle):
    doc = default_spec()
    doc["root"] = {"path": "/", "readonly": True}
    b = parse_spec(doc, bundle)
    assert b.config.rootfs is None and b.rootfs == "/"


def test_absent_sections_mean_what_runc_does(bundle):
    doc = {"ociVersion": "1.0.0", "root": {"path": "rootfs"},
           "process": {"args": ["sh"], "cwd": "/"},
           "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}
    c = parse_spec(doc, bundle).config
    assert c.capabilities is None               # keep every capability
    assert c.seccomp is None and c.masked_paths == () and c.readonly_paths == ()
    assert c.no_new_privileges is False
    assert c.namespaces == ("mount", "pid")
    assert c.env == ()


def test_resources(bundle):
    doc = default_spec()
    doc["linux"]["resources"] = {
        "memory": {"limit": 1 << 26, "swap": -1, "kernel": -1, "reservation": 1 << 25},
        "cpu": {"shares": 1024, "quota": -1, "period": 100000, "cpus": "0", "mems": ""},
        "pids": {"limit": -1},
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]}
    b = parse_spec(doc, bundle)
    assert b.config.resources == pc.Resources(memory_limit=1 << 26, memory_swap=-1,
                                              memory_reservation=1 << 25,
                                              cpu_shares=1024, cpu_quota=-1,
                                              cpu_period=100000, cpuset_cpus="0",
                                              pids_limit=-1)
    assert b.config.device_rules == (DeviceRule(False), DeviceRule(True, "c", 10, 200)) + \
        DEFAULT_RULES[1:]
    assert b.warnings == []


def host_checked(doc, bundle_dir):
    """What load_bundle makes of `doc`: parsed, then checked against the host."""
    b = parse_spec(doc, bundle_dir)
    check_host(b)
    return b


@pytest.mark.parametrize("supported", [True, False])
def test_blkio_weight_where_the_host_can(bundle, monkeypatch, supported):
    monkeypatch.setattr(oci_runtime, "_host_supports", lambda knob: supported)
    doc = default_spec()
    doc["linux"]["resources"]["blockIO"] = {"weight": 500}
    assert parse_spec(doc, bundle).config.resources == pc.Resources(blkio_weight=500)
    if supported:
        assert host_checked(doc, bundle).config.resources == pc.Resources(blkio_weight=500)
        assert to_oci(parse_spec(doc, bundle).config)["linux"]["resources"]["blockIO"] == \
            {"weight": 500}
    else:
        with pytest.raises(SpecError) as e:
            host_checked(doc, bundle)
        assert str(e.value).startswith("linux.resources.blockIO.weight: this host cannot")


@pytest.mark.parametrize("supported", [True, False])
def test_hugepage_limits_where_the_host_has_them(bundle, monkeypatch, supported):
    monkeypatch.setattr(oci_runtime, "_host_supports", lambda knob: supported)
    monkeypatch.setattr(oci_runtime, "_host_page_size", lambda kb: kb in (2048, 1 << 20))
    doc = default_spec()
    doc["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 1 << 22},
                                                   {"pageSize": "1GB", "limit": 0}]
    if supported:
        c = host_checked(doc, bundle).config
        assert c.resources.hugepage_limits == (("2MB", 1 << 22), ("1GB", 0))
        assert parse_spec(to_oci(c), "/").config == c
        doc["linux"]["resources"]["hugepageLimits"][1]["pageSize"] = "16GB"
        parse_spec(doc, bundle)                 # the translation does not ask the host
        with pytest.raises(SpecError) as e:
            host_checked(doc, bundle)
        assert str(e.value).startswith("linux.resources.hugepageLimits[1].pageSize: the host "
                                       "has no huge pages of this size")
    else:
        with pytest.raises(SpecError) as e:
            host_checked(doc, bundle)
        assert str(e.value).startswith("linux.resources.hugepageLimits: the host has no "
                                       "hugetlb cgroup controller")


def test_this_hosts_answer_is_one_of_the_two(bundle):
    """Whatever this host is, hugepageLimits either pass the host check or name the JSON
    path."""
    from pycontainer import cgroups
    doc = default_spec()
    doc["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 1 << 21}]
    if cgroups.supports("hugepage_limits") and os.path.isdir(
            "/sys/kernel/mm/hugepages/hugepages-2048kB"):
        assert host_checked(doc, bundle).config.resources.hugepage_limits == \
            (("2MB", 1 << 21),)
    else:
        with pytest.raises(SpecError) as e:
            host_checked(doc, bundle)
        assert str(e.value).startswith("linux.resources.hugepageLimits")


def test_root_path_must_be_a_directory_on_this_host(bundle):
    """A missing root directory is the host check's error, by JSON path."""
    doc = default_spec()
    doc["root"]["path"] = "nope"
    with pytest.raises(SpecError) as e:
        host_checked(doc, bundle)
    assert str(e.value).startswith("root.path: is not a directory")
    write(bundle, doc)
    with pytest.raises(SpecError) as e:
        load_bundle(bundle)
    assert e.value.field == "root.path"


def test_zero_values_mean_unset(bundle):
    doc = default_spec()
    doc["linux"]["resources"] = {"memory": {"limit": 0}, "cpu": {"shares": 0, "quota": 0},
                                 "pids": {"limit": 0}}
    assert parse_spec(doc, bundle).config.resources is None


def test_cgroups_path(bundle):
    """cgroupsPath is the container's cgroup exactly, as runc and crun take it; relative
    ones are below the runtime's own cgroup (host.container_dirs)."""
    doc = default_spec()
    for given, path in (("/default/box1", "/default/box1"), ("//a//b/", "/a/b"),
                        ("/box", "/box"), ("relative/box1", "relative/box1"),
                        ("box1", "box1")):
        doc["linux"]["cgroupsPath"] = given
        b = parse_spec(doc, bundle)
        assert (b.config.cgroup_path, b.config.cgroup_parent, b.warnings) == (path, None, [])
    doc["linux"]["cgroupsPath"] = ""
    assert parse_spec(doc, bundle).config.cgroup_path is None


def test_builtin_nodes_in_devices_are_absorbed(bundle):
    doc = default_spec()
    doc["linux"]["devices"] = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
                               {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                "fileMode": 0o600, "uid": 0, "gid": 0}]
    assert parse_spec(doc, bundle).config.devices == (Device("/dev/fuse", "c", 10, 229, 0o600),)


def test_null_lists_are_empty(bundle):
    """Go's encoder writes nil slices as null."""
    doc = default_spec()
    doc["process"]["env"] = None
    doc["linux"]["maskedPaths"] = None
    doc["mounts"] = None
    c = parse_spec(doc, bundle).config
    assert c.env == () and c.masked_paths == () and c.mounts == ()


@pytest.mark.parametrize("mutate,where", [
    (lambda d: d["linux"].__setitem__("mountLabel", "system_u:object_r:x"), "linux.mountLabel"),
    (lambda d: d["process"].__setitem__("apparmorProfile", "docker-default"),
     "process.apparmorProfile"),
    (lambda d: d["process"].__setitem__("selinuxLabel", "x"), "process.selinuxLabel"),
    (lambda d: d["linux"].__setitem__("resources", {"memory": {"kernel": 1 << 20}}),
     "linux.resources.memory.kernel"),
    (lambda d: d["process"]["capabilities"]["bounding"].append("CAP_FUTURE"),
     "process.capabilities.bounding[3]"),
    (lambda d: d["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup",
                                   "source": "cgroup"}), "mounts[6]"),
])
def test_warnings(bundle, mutate, where):
    doc = default_spec()
    mutate(doc)
    b = parse_spec(doc, bundle)
    assert [w.split(": ")[0] for w in b.warnings] == [where], b.warnings


# --- errors: each with its JSON path ------------------------------------------------------------

def _set(path, value):
    """A mutation setting the value at a dotted path (creating objects on the way)."""
    def mutate(doc):
        keys = path.split(".")
        node = doc
        for k in keys[:-1]:
            if isinstance(node, list):
                node = node[int(k)]
            else:
                node = node.setdefault(k, {})
        if isinstance(node, list):
            node[int(keys[-1])] = value
        else:
            node[keys[-1]] = value
    return mutate


def _del(path):
    def mutate(doc):
        keys = path.split(".")
        node = doc
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        del node[keys[-1]]
    return mutate


ERRORS = [
    # (mutation, JSON path the message starts with, a fragment of the reason)
    (_set("linux.resources.memory.limit", "1g"), "linux.resources.memory.limit",
     'expected an integer, got "1g"'),
    (_set("frobnicate", 1), "frobnicate", "unknown field"),
    (_del("ociVersion"), "ociVersion", "required field missing"),
    (_set("ociVersion", "2.0.0"), "ociVersion", "unsupported runtime-spec version"),
    (_set("ociVersion", "0.9.0"), "ociVersion", "unsupported runtime-spec version"),
    (_set("ociVersion", "latest"), "ociVersion", "not a runtime-spec version"),
    (_set("ociVersion", "1.x"), "ociVersion", "not a runtime-spec version"),
    (_set("ociVersion", 1), "ociVersion", "expected a string"),
    (_set("windows", {"layerFolders": []}), "windows", "not a Linux container"),
    (_del("root"), "root", "required field missing"),
    (_set("root.path", 7), "root.path", "expected a string"),
    (_set("root.readonly", "yes"), "root.readonly", "expected true or false"),
    (_set("root.extra", 1), "root.extra", "unknown field"),
    (_set("process.args", []), "process.args", "at least the program"),
    (_set("process.args", "sh"), "process.args", "expected an array"),
    (_set("process.args", ["sh", 3]), "process.args[1]", "expected a string"),
    (_set("process.args", [""]), "process.args[0]", "program name is empty"),
    (_set("process.env", ["NOEQUALS"]), "process.env[0]", "NAME=value"),
    (_set("process.cwd", "tmp"), "process.cwd", "absolute path"),
    (_set("process.terminal", "yes"), "process.terminal", "expected true or false"),
    (_set("process.user.uid", -1), "process.user.uid", "expected an integer in 0"),
    (_set("process.user.gid", "0"), "process.user.gid", "expected an integer"),
    (_set("process.user.additionalGids", [1, "x"]), "process.user.additionalGids[1]", "gid"),
    (_set("process.user.umask", 0o1000), "process.user.umask", "expected an integer in 0..511"),
    (_set("process.user.username", "bob"), "process.user.username", "Windows"),
    (_set("process.capabilities.bounding", "CAP_KILL"), "process.capabilities.bounding",
     "expected an array"),
    (_set("process.capabilities.everything", []), "process.capabilities.everything",
     "unknown field"),
    (_set("process.rlimits", [{"type": "RLIMIT_NOPE", "hard": 1, "soft": 1}]),
     "process.rlimits[0].type", "unknown rlimit type"),
    (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "hard": 1, "soft": 2}]),
     "process.rlimits[0].soft", "greater than the hard limit"),
    (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2}]),
     "process.rlimits[0].hard", "required field missing"),
    (_set("process.rlimits", [{"type": "RLIMIT_CORE", "hard": 1, "soft": 1}] * 2),
     "process.rlimits[1].type", "duplicate"),
    (_set("process.oomScoreAdj", 2000), "process.oomScoreAdj", "-1000..1000"),
    (_set("process.scheduler", {"policy": "SCHED_FIFO"}), "process.scheduler", "not supported"),
    (_set("process.ioPriority", {"class": "IOPRIO_CLASS_RT", "priority": 1}),
     "process.ioPriority", "not supported"),
    (_set("process.consoleSize", {"height": 1}), "process.consoleSize.width", "required"),
    (_set("hostname", "bad_name!"), "hostname", "host name"),
    (_set("hostname", 5), "hostname", "expected a string"),
    (_set("mounts", {}), "mounts", "expected an array"),
    (_set("mounts.0.destination", "proc"), "mounts[0].destination", "absolute path"),
    (_set("mounts.0.bogus", 1), "mounts[0].bogus", "unknown field"),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "tmpfs",
                                   "options": ["rro"]}), "mounts[6].options[0]", "recursive"),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "bind", "source": "/srv",
                                   "options": ["idmap"]}), "mounts[6].options[0]",
     "not supported"),
    (lambda d: d["mounts"].append({"destination": "/x", "source": "/srv",
                                   "options": ["rbind", "mode=755,uid=0"]}),
     "mounts[6].options[1]", "not a mount option"),
    (lambda d: d["mounts"].append({"destination": "/x", "source": "/srv"}), "mounts[6].type",
     "required unless"),
    (lambda d: d["mounts"].append({"destination": "/x", "type": "bind", "source": "/srv",
                                   "uidMappings": [{"containerID": 0, "hostID": 1,
                                                    "size": 1}]}),
     "mounts[6].uidMappings", "id-mapped"),
    (_set("hooks", {"prestart": [{"path": "hook"}]}), "hooks.prestart[0].path",
     "absolute path"),
    (_set("hooks", {"poststart": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststart[0].timeout", "expected an integer in 1"),
    (_set("hooks", {"onCrash": []}), "hooks.onCrash", "unknown field"),
    (_set("annotations", {"a": 1}), "annotations.a", "expected a string"),
    (_set("annotations", {"org.pycontainer.pdeathsig": "SIGNOPE"}),
     "annotations.org.pycontainer.pdeathsig", "signal"),
    (_set("linux.namespaces", [{"type": "pid"}, {"type": "mount"}, {"type": "nest"}]),
     "linux.namespaces[2].type", "unknown namespace type"),
    (_set("linux.namespaces", [{"type": "pid"}, {"type": "mount"}, {"type": "pid"}]),
     "linux.namespaces[2].type", "duplicate"),
    (_set("linux.namespaces", [{"type": "pid"}, {"type": "mount"}, {"type": "time"}]),
     "linux.namespaces[2].type", "time namespaces"),
    (_set("linux.namespaces", [{"type": "pid"}]), "linux.namespaces",
     "needs a mount namespace"),
    (_set("linux.namespaces", [{"type": "user", "path": "/proc/1/ns/user"}, {"type": "mount"}]),
     "linux.namespaces[0].path", "joining an existing user namespace is not supported"),
    (_set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 0}]),
     "linux.uidMappings[0].size", "at least 1"),
    (_set("linux.uidMappings", [{"containerID": 0, "hostID": 1000, "size": 1}]),
     "linux.uidMappings", "need the 'user' namespace"),
    (_set("linux.devices", [{"path": "/dev/p", "type": "f"}]), "linux.devices[0].type",
     "expected c, b, u or p"),
    (_set("linux.devices", [{"path": "/dev/x", "type": "c", "minor": 1}]),
     "linux.devices[0].major", "required"),
    (_set("linux.devices", [{"path": "/dev/x", "type": "c", "major": 1, "minor": 1,
                             "fileMode": 0o170000}]), "linux.devices[0].fileMode",
     "expected an integer in 0..4095"),
    (_set("linux.devices", [{"path": "/tmp/x", "type": "c", "major": 1, "minor": 1}]),
     "linux.devices[0].path", "below /dev/"),
    (_set("linux.devices", [{"path": "/dev/null", "type": "c", "major": 1, "minor": 4}]),
     "linux.devices[0]", "standard numbers"),
    (_set("linux.cgroupsPath", "system.slice:pyc:box"), "linux.cgroupsPath", "systemd"),
    (_set("linux.cgroupsPath", "/a/../b"), "linux.cgroupsPath", "cgroup path"),
    (_set("linux.resources.cpu.cpus", "zero"), "linux.resources.cpu.cpus", "cpu list"),
    (_set("linux.resources.cpu.shares", -2), "linux.resources.cpu.shares",
     "expected an integer in 0"),
    (_set("linux.resources.cpu.mems", "0-"), "linux.resources.cpu.mems", "memory node list"),
    (_set("linux.resources.cpu.realtimeRuntime", 1000), "linux.resources.cpu.realtimeRuntime",
     "not supported"),
    (_set("linux.resources.memory", {"limit": 1 << 26, "swap": 1 << 20}),
     "linux.resources.memory.swap", "at least memory_limit"),
    (_set("linux.resources.memory", {"limit": 100}), "linux.resources.memory.limit",
     "expected 4096"),
    (_set("linux.resources.memory.swappiness", 10), "linux.resources.memory.swappiness",
     "not supported"),
    (_set("linux.resources.pids", {"limit": "10"}), "linux.resources.pids.limit",
     "expected an integer"),
    (_set("linux.resources.blockIO", {"weight": 5}), "linux.resources.blockIO.weight",
     "expected 10..1000"),
    (_set("linux.resources.blockIO", {"throttleReadBpsDevice": [{"major": 8, "minor": 0,
                                                                 "rate": 1}]}),
     "linux.resources.blockIO.throttleReadBpsDevice", "not supported"),
    (_set("linux.resources.hugepageLimits", [{"pageSize": "2 MB", "limit": 1 << 21}]),
     "linux.resources.hugepageLimits[0].pageSize", "2MB or 1GB"),
    (_set("linux.resources.hugepageLimits", [{"pageSize": "2MB"}]),
     "linux.resources.hugepageLimits[0].limit", "required"),
    (_set("linux.resources.unified", {"memory.high": "1"}), "linux.resources.unified",
     "not supported"),
    (_set("linux.resources.network", {"classID": 1}), "linux.resources.network",
     "not supported"),
    (_set("linux.resources.devices", [{"allow": True, "access": "rwx"}]),
     "linux.resources.devices[0].access", "subset of 'rwm'"),
    (_set("linux.resources.devices", [{"access": "rwm"}]), "linux.resources.devices[0].allow",
     "required"),
    (_set("linux.sysctl", {"kernel.panic": "1"}), "linux.sysctl.kernel.panic",
     "not a namespaced sysctl"),
    (_set("linux.sysctl", {"net.ipv4.ip_forward": 1}), "linux.sysctl.net.ipv4.ip_forward",
     "expected a string"),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_MAYBE"}), "linux.seccomp.defaultAction",
     "unknown"),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                          "args": [{"index": 9, "value": 0,
                                                    "op": "SCMP_CMP_EQ"}]}]}),
     "linux.seccomp.syscalls[0].args[0].index", "0..5"),
    (_set("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths[0]", "absolute"),
    (_set("linux.readonlyPaths", [1]), "linux.readonlyPaths[0]", "expected a string"),
    (_set("linux.rootfsPropagation", "sideways"), "linux.rootfsPropagation",
     "expected shared, slave, private or unbindable"),
    (_set("linux.timeOffsets", {"monotonic": {"secs": 1}}), "linux.timeOffsets",
     "not supported"),
    (_set("linux.intelRdt", {"closID": "x"}), "linux.intelRdt", "not supported"),
    (_set("linux.personality", {"domain": "LINUX32"}), "linux.personality", "LINUX domain"),
    (_set("linux.netDevices", {"eth0": {}}), "linux.netDevices", "not supported"),
    (_set("linux.bogus", 1), "linux.bogus", "unknown field"),
]


@pytest.mark.parametrize("mutate,where,reason", ERRORS,
                         ids=[f"{i}-{e[1]}" for i, e in enumerate(ERRORS)])
def test_errors_name_the_json_path(bundle, mutate, where, reason):
    doc = default_spec()
    mutate(doc)
    with pytest.raises(SpecError) as e:
        parse_spec(doc, bundle)
    err = e.value
    assert isinstance(err, pc.ConfigInvalidError) and isinstance(err, ValueError)
    assert str(err).startswith(where + ": "), str(err)
    assert err.field == where
    assert reason in str(err), str(err)
    assert "\n" not in str(err)


def test_the_issue_example(bundle):
    doc = default_spec()
    doc["linux"]["resources"]["memory"] = {"limit": "1g"}
    with pytest.raises(SpecError) as e:
        parse_spec(doc, bundle)
    assert str(e.value) == 'linux.resources.memory.limit: expected an integer, got "1g"'


def test_spec_error_pickles():
    import pickle
    err = SpecError("a.b", "x", "bad")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == 'a.b: bad, got "x"'


def test_hostname_needs_uts(bundle):
    doc = default_spec()
    doc["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}]
    with pytest.raises(SpecError) as e:
        parse_spec(doc, bundle)
    assert str(e.value).startswith("hostname: ")


# --- namespaces by path ----------------------------------------------------------------------

def test_namespace_path_parses_into_the_configs_paths(bundle):
    """A path joins that namespace (the library checks it is one, of that type)."""
    doc = default_spec()
    doc["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"},
                                  {"type": "network", "path": "/proc/self/ns/net"}]
    doc["hostname"] = ""
    c = parse_spec(doc, bundle).config
    assert set(c.namespaces) == {"pid", "mount", "net"}
    assert c.namespace_paths == {"net": "/proc/self/ns/net"}


# --- exec's process.json ---------------------------------------------------------------------

def test_parse_process():
    spec = parse_process({"args": ["ls", "-l"], "cwd": "/tmp", "env": ["A=1"],
                          "user": {"uid": 5, "gid": 6, "additionalGids": [7]},
                          "terminal": False, "noNewPrivileges": True})
    assert spec.process_config() == pc.ProcessConfig(args=("ls", "-l"), user="5:6",
                                                     additional_gids=(7,))
    assert spec.env == ("A=1",) and spec.cwd == "/tmp" and spec.no_new_privileges
    with pytest.raises(SpecError) as e:
        parse_process({"args": ["ls"]})
    assert str(e.value) == "process.cwd: required field missing"


# --- hooks -----------------------------------------------------------------------------------

def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_run_hooks_in_order_with_state_on_stdin(tmp_path):
    out = tmp_path / "out"
    # args is the whole argv (argv[0] included), env the whole environment.
    script = f'tr "\\0" " " < /proc/$$/cmdline >> {out}; echo "$1 $X $HOME $(cat)" >> {out}'
    a = oci_hooks.Hook("/bin/sh", ("renamed-sh", "-c", script, "zero", "one"), ("X=ex",))
    b = oci_hooks.Hook(_script(tmp_path, "b", f'echo "b" >> {out}\n'))
    oci_hooks.run_hooks((a, b), '{"id": "c1"}', "prestart")
    assert out.read_text() == f'renamed-sh -c {script} zero one one ex  {{"id": "c1"}}\nb\n'


def test_failing_hook(tmp_path):
    bad = _script(tmp_path, "bad", "echo nope >&2; exit 3\n")
    after = tmp_path / "after"
    ok = _script(tmp_path, "ok", f"touch {after}\n")
    hooks = (oci_hooks.Hook(bad), oci_hooks.Hook(ok))
    with pytest.raises(oci_hooks.HookError) as e:
        oci_hooks.run_hooks(hooks, "{}", "createRuntime")
    assert "createRuntime[0]" in str(e.value) and "exit status 3: nope" in str(e.value)
    assert not after.exists()
    warned = []
    oci_hooks.run_hooks(hooks, "{}", "poststop", warn=warned.append)
    assert len(warned) == 1 and after.exists()


def test_hook_timeout_kills_it(tmp_path):
    slow = _script(tmp_path, "slow", "sleep 30 & wait\n")
    with pytest.raises(oci_hooks.HookError) as e:
        oci_hooks.run_hooks((oci_hooks.Hook(slow, timeout=1),), "{}", "prestart")
    assert "timed out after 1s" in str(e.value)


def test_missing_hook_program(tmp_path):
    with pytest.raises(oci_hooks.HookError) as e:
        oci_hooks.run_hooks((oci_hooks.Hook(str(tmp_path / "nope")),), "{}", "poststart")
    assert "No such file or directory" in str(e.value)


# --- state, events, features -------------------------------------------------------------------

class FakeContainer:
    id = "c1"

    def __init__(self, state, pid, extra):
        self._state, self._pid, self._extra = state, pid, extra

    def run_state(self):
        return self._state

    def init_pid(self):
        return self._pid

    def extra(self):
        return self._extra


def test_state_document(tmp_path):
    from pycontainer.oci.state import oci_extra
    b = load_bundle(str(tmp_path), args=["true"], missing_ok=True)
    b.annotations = {"a": "b"}
    extra = oci_extra(b)
    doc = state_document(FakeContainer(pc.RunState.RUNNING, 42, extra))
    assert doc == {"ociVersion": "1.2.0", "id": "c1", "pid": 42, "status": "running",
                   "bundle": str(tmp_path), "rootfs": "/",
                   "created": extra["oci"]["created"], "owner": extra["oci"]["owner"],
                   "annotations": {"a": "b"}}
    stopped = state_document(FakeContainer(pc.RunState.STOPPED, None, extra))
    assert stopped["status"] == "stopped" and stopped["pid"] == 0
    assert state_document(FakeContainer(pc.RunState.PAUSING, 42, extra))["status"] == "pausing"


def test_rfc3339():
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_500_000_000_120_000_000) == "2017-07-14T02:40:00.12Z"


def test_stats_event_shape():
    from pycontainer.stats import (CgroupStats, ContainerStats, CpuStats, CpuUsage,
                                   NetworkInterface)
    stats = ContainerStats(cgroup_stats=CgroupStats(cpu_stats=CpuStats(
        cpu_usage=CpuUsage(total_usage=10, percpu_usage=[4, 6], usage_in_kernelmode=3,
                           usage_in_usermode=7))), interfaces=[NetworkInterface("lo", 1, 2)])
    ev = stats_event("c1", stats)
    assert ev["type"] == "stats" and ev["id"] == "c1"
    data = ev["data"]
    assert data["cpu"]["usage"] == {"total": 10, "percpu": [4, 6], "kernel": 3, "user": 7}
    assert data["memory"]["usage"] == {"limit": 0, "failcnt": 0}
    assert data["network_interfaces"][0]["Name"] == "lo"
    assert data["network_interfaces"][0]["RxBytes"] == 1
    json.dumps(ev)


def test_features_document():
    f = features()
    json.dumps(f)
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"] == "1.2.0"
    assert f["annotations"]["org.pycontainer.ociVersions"] == "1.x (1.0.0 and newer)"
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                          "poststart", "poststop"]
    assert "network" in f["linux"]["namespaces"] and "net" not in f["linux"]["namespaces"]
    assert f["linux"]["cgroup"]["systemd"] is False
    assert "SCMP_ACT_ERRNO" in f["linux"]["seccomp"]["actions"]
    assert "rbind" in f["mountOptions"]


# --- the command line's own parsing --------------------------------------------------------------

FLAGS = cli.COMMANDS["run"][0]


@pytest.mark.parametrize("argv,bundle,detach,pos", [
    (["-bundle", "/b", "id"], "/b", False, ["id"]),
    (["--bundle=/b", "-d", "id"], "/b", True, ["id"]),
    (["-b", "/b", "id", "--detach"], "/b", True, ["id"]),
    (["id", "--", "-d", "--bundle=x"], None, False, ["id", "-d", "--bundle=x"]),
    (["--detach=false", "id", "echo", "hi"], None, False, ["id", "echo", "hi"]),
])
def test_runc_option_syntax(argv, bundle, detach, pos):
    opts, args = cli.parse(argv, FLAGS)
    assert opts.bundle == bundle and opts.detach is detach and args == pos


def test_parse_stops_at_the_command_for_exec():
    flags, _, stop = cli.COMMANDS["exec"]
    opts, pos = cli.parse(["-e", "A=1", "--env=B=2", "-t", "box", "sh", "-c", "x"], flags, stop)
    assert opts.env == ["A=1", "B=2"] and opts.tty is True
    assert pos == ["box", "sh", "-c", "x"]


@pytest.mark.parametrize("argv,message", [
    (["--nope", "id"], "flag provided but not defined: --nope"),
    (["-nope=1"], "flag provided but not defined: -nope"),
    (["id", "--pid-file"], "flag needs an argument: --pid-file"),
    (["--detach=maybe", "id"], "invalid boolean value"),
])
def test_bad_flags(argv, message):
    with pytest.raises(cli.UsageError) as e:
        cli.parse(argv, FLAGS)
    assert message in str(e.value)


@pytest.mark.parametrize("text,num", [("KILL", 9), ("SIGKILL", 9), ("9", 9), ("term", 15),
                                      ("SIGRTMIN+1", signal.SIGRTMIN + 1), ("USR1", 10)])
def test_parse_signal(text, num):
    assert cli.parse_signal(text) == num


@pytest.mark.parametrize("text", ["SIGNOPE", "0", "999", "-9", ""])
def test_parse_signal_rejects(text):
    with pytest.raises(cli.Failure):
        cli.parse_signal(text)


@pytest.mark.parametrize("text,seconds", [("5s", 5), ("500ms", 0.5), ("1m30s", 90), ("2", 2),
                                          ("1h", 3600)])
def test_parse_duration(text, seconds):
    assert cli.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text,value", [("1024", 1024), ("64m", 64 << 20), ("1g", 1 << 30),
                                        ("64MiB", 64 << 20), ("64MB", 64 << 20), ("-1", -1),
                                        ("1.5k", 1536)])
def test_parse_bytes(text, value):
    assert oci_runtime.parse_bytes(text, "memory") == value


def test_parse_bytes_rejects():
    with pytest.raises(cli.Failure):
        oci_runtime.parse_bytes("lots", "memory")


def test_joined_pid_and_mount_namespaces_and_no_pid_namespace(bundle):
    """CRI puts /proc/<pause>/ns/pid into every container of a pod; hostPID pods leave
    "pid" out; a joined mount namespace is used as it is (warnings for what is not
    applied). What features says agrees."""
    own = f"/proc/{os.getpid()}/ns"
    doc = default_spec()
    del doc["hostname"]                          # a hostname needs a uts namespace
    doc["linux"]["namespaces"] = [{"type": "pid", "path": f"{own}/pid"}, {"type": "mount"}]
    c = parse_spec(doc, bundle).config
    assert c.namespaces == ("mount", "pid") and c.namespace_paths == {"pid": f"{own}/pid"}
    assert sorted(to_oci(c)["linux"]["namespaces"], key=str) == \
        sorted(doc["linux"]["namespaces"], key=str)
    doc["linux"]["namespaces"] = [{"type": "mount"}, {"type": "network"}]
    c = parse_spec(doc, bundle).config
    assert c.namespaces == ("mount", "net") and c.new_namespaces == ("mount", "net")
    assert {ns["type"] for ns in to_oci(c)["linux"]["namespaces"]} == {"mount", "network"}
    doc["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount", "path": f"{own}/mnt"}]
    doc["root"]["readonly"] = True
    b = parse_spec(doc, bundle)
    assert b.config.namespace_paths == {"mount": f"{own}/mnt"}
    assert b.config.mounts == () and not b.config.readonly_rootfs
    assert [w.split(":")[0] for w in b.warnings] == ["mounts", "root.readonly"]
    doc["linux"]["namespaces"] = [{"type": "pid"}]
    with pytest.raises(SpecError) as e:
        parse_spec(doc, bundle)
    assert str(e.value).startswith("linux.namespaces: ")
    notes = features()["annotations"]
    assert notes["org.pycontainer.joinableNamespaces"] == "mount,pid,uts,ipc,network,cgroup"


def test_a_joined_mount_namespace_refuses_what_it_cannot_apply():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(namespaces={"mount": "/proc/self/ns/mnt", "pid": None},
                  mounts=[pc.Mount("/x", type="tmpfs")])
    assert ei.value.field == "mounts"
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(namespaces={"mount": "/proc/self/ns/mnt", "user": None})
    assert ei.value.field == "namespaces.mount"

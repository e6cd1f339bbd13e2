"""Config, ProcessConfig, Mount and Resources: validation, defaults, round trips, ids.

No root needed: every check here happens before anything touches the kernel."""
import json
import os

import pytest

import pycontainer as pc
from pycontainer.config import DEFAULT_ENV, DEFAULT_NAMESPACES, NAMESPACES
from pycontainer.security import IdMap


@pytest.fixture
def rootfs(tmp_path):
    d = tmp_path / "rootfs"
    d.mkdir()
    return str(d)


def bad(exc_info, field):
    """The error is a ConfigInvalidError (and a ValueError) naming `field`."""
    err = exc_info.value
    assert isinstance(err, pc.ConfigInvalidError)
    assert isinstance(err, ValueError)
    assert isinstance(err, pc.ContainerError)
    assert err.field == field, (err.field, str(err))
    assert field in str(err)
    assert err.code == "ConfigInvalid"
    return err


# --- Config -----------------------------------------------------------------------------

def test_config_defaults():
    c = pc.Config()
    assert c.rootfs is None
    assert c.image_is_host
    assert c.hostname is None and c.domainname is None
    assert c.namespaces == DEFAULT_NAMESPACES
    assert set(c.namespaces) == {"mount", "pid", "uts", "ipc", "net"}
    assert c.mounts == ()
    assert c.readonly_rootfs is False
    assert c.env == DEFAULT_ENV
    assert any(e.startswith("PATH=") for e in c.env)
    assert "HOME=/root" in c.env
    assert c.cwd == "/"
    assert c.resources is None
    assert c.cgroup_parent is None


def test_config_is_immutable(rootfs):
    c = pc.Config(rootfs=rootfs)
    with pytest.raises(Exception):
        c.hostname = "x"


def test_config_accepts_good_values(rootfs):
    c = pc.Config(rootfs=rootfs, hostname="box1", domainname="example.org",
                  namespaces=["net", "pid", "mount", "uts", "ipc", "cgroup"],
                  mounts=[pc.Mount("/data", "/tmp"), {"destination": "/t", "type": "tmpfs"}],
                  readonly_rootfs=True, env=["A=1", "B="], cwd="/tmp",
                  resources={"memory_limit": 1 << 20, "pids_limit": 10},
                  cgroup_parent="/a/b")
    assert not c.image_is_host
    # namespaces are normalised to the canonical order, as a tuple
    assert c.namespaces == tuple(n for n in NAMESPACES if n in
                                 {"net", "pid", "mount", "uts", "ipc", "cgroup"})
    assert c.mounts == (pc.Mount("/data", "/tmp"), pc.Mount("/t", type="tmpfs"))
    assert c.env == ("A=1", "B=")
    assert c.resources == pc.Resources(memory_limit=1 << 20, pids_limit=10)


@pytest.mark.parametrize("value", [5, b"/x", "", "relative/path", "/with\0nul", "/" + "a" * 5000])
def test_config_rootfs_rejects(value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(rootfs=value)
    bad(ei, "rootfs")


def _host_cases(tmp_path):
    (tmp_path / "file").write_text("x")
    ns = {"mount": None, "pid": None}
    return [
        (dict(rootfs=str(tmp_path / "missing")), "rootfs", "is not a directory"),
        (dict(rootfs=str(tmp_path / "file")), "rootfs", "is not a directory"),
        (dict(namespaces=dict(ns, net="/nonexistent/ns")), "namespaces.net", "cannot open"),
        (dict(namespaces=dict(ns, net="/etc/passwd")), "namespaces.net", "not a namespace file"),
        (dict(namespaces=dict(ns, net="/proc/self/ns/uts")), "namespaces.net",
         "not a net namespace"),
    ]


def test_config_does_not_look_at_the_host(tmp_path):
    """A Config is a pure value: a rootfs or namespace file that is not there is accepted
    (and round-trips), so that a stored one always loads back."""
    for kwargs, _, _ in _host_cases(tmp_path):
        c = pc.Config(**kwargs)
        assert pc.Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_create_checks_the_host(tmp_path):
    """Factory.create asks the host before it makes anything: not even the state root."""
    root = tmp_path / "state"
    factory = pc.Factory(root=str(root))
    for kwargs, field, reason in _host_cases(tmp_path):
        with pytest.raises(pc.ConfigInvalidError) as ei:
            factory.create("c", pc.Config(**kwargs))
        err = bad(ei, field)
        assert err.value == (kwargs.get("rootfs") or kwargs["namespaces"]["net"])
        assert reason in str(err)
        assert err.container_id == "c" and err.operation == "create"
        assert not os.path.exists(root)


@pytest.mark.parametrize("name", ["hostname", "domainname"])
@pytest.mark.parametrize("value", ["", "-a", "a-", "a b", "a" * 65, "é", 5, "a..b", "x\0", "a!"])
def test_config_hostname_rejects(name, value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(**{name: value})
    err = bad(ei, name)
    assert err.value == value


@pytest.mark.parametrize("value", ["a", "box1", "a-b.c-d", "A" * 63, "a.b.c", "a_b", "_x.my_host"])
def test_config_hostname_accepts(value):
    assert pc.Config(hostname=value).hostname == value


@pytest.mark.parametrize("value", [
    "mount,pid",                      # a string, not a list
    5,
    ["mount", "pid", "user"],          # not supported
    ["mount", "pid", "nope"],
    ["pid", "uts"],                    # a container needs a mount namespace
    [],
])
def test_config_namespaces_rejects(value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(namespaces=value)
    bad(ei, "namespaces")


def test_config_hostname_needs_uts():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(hostname="box", namespaces=("mount", "pid"))
    bad(ei, "hostname")


def test_config_hostname_with_a_joined_uts_namespace():
    c = pc.Config(hostname="box", namespaces={"mount": None, "pid": None,
                                              "uts": "/proc/1/ns/uts"})
    assert c.hostname == "box" and c.namespace_paths == {"uts": "/proc/1/ns/uts"}
    # From a new user namespace the init could not set it: refused, saying what to do.
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(domainname="lan", namespaces={"mount": None, "pid": None, "user": None,
                                                "uts": "/proc/1/ns/uts"},
                  uid_mappings=[IdMap(0, 100000, 65536)],
                  gid_mappings=[IdMap(0, 100000, 65536)])
    bad(ei, "domainname")
    assert "joined uts namespace" in str(ei.value)


@pytest.mark.parametrize("value,field", [("/data", "mounts"), (5, "mounts"),
                                         (["not a mount"], "mounts[0]"), ([5], "mounts[0]")])
def test_config_mounts_rejects(value, field):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(mounts=value)
    bad(ei, field)


def test_config_mounts_dict_with_unknown_key():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(mounts=[{"destination": "/x", "type": "tmpfs", "flavour": "mint"}])
    bad(ei, "mounts[0].flavour")


def test_config_mounts_dict_with_bad_value():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(mounts=[{"destination": "x", "type": "tmpfs"}])
    bad(ei, "mounts.destination")


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_config_readonly_rootfs_rejects(value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(readonly_rootfs=value)
    bad(ei, "readonly_rootfs")


@pytest.mark.parametrize("value,field", [
    ("PATH=/bin", "env"),
    (5, "env"),
    ([5], "env[0]"),
    (["NOEQUALS"], "env[0]"),
    (["A=1", "=x"], "env[1]"),
    (["A=\0"], "env[0]"),
])
def test_config_env_rejects(value, field):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(env=value)
    bad(ei, field)


@pytest.mark.parametrize("value", ["", "tmp", "./x", 5, None, "/a\0b"])
def test_config_cwd_rejects(value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(cwd=value)
    bad(ei, "cwd")


@pytest.mark.parametrize("value", [5, "64m", [1]])
def test_config_resources_rejects(value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(resources=value)
    bad(ei, "resources")


def test_config_resources_dict_is_validated():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(resources={"memory_limit": 5})
    bad(ei, "resources.memory_limit")
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(resources={"memory": 1 << 20})
    bad(ei, "resources.memory")


@pytest.mark.parametrize("value", ["/a/../b", "/a/./b", "/..", "", 5, "a/../b", ".."])
def test_config_cgroup_parent_rejects(value):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(cgroup_parent=value)
    bad(ei, "cgroup_parent")


@pytest.mark.parametrize("kwargs", [
    dict(cgroup_path="/"), dict(cgroup_path="//"), dict(cgroup_path=""),
    dict(cgroup_path="/a/../b"), dict(cgroup_path="a/./b"), dict(cgroup_path=5),
    dict(cgroup_path="/a/b", cgroup_parent="/a"),
])
def test_config_cgroup_path_rejects(kwargs):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config(**kwargs)
    bad(ei, "cgroup_path")


def test_config_cgroup_path_round_trips():
    for path in ("/a/b/c", "c", "a/c"):
        c = pc.Config(cgroup_path=path)
        assert pc.Config.from_dict(json.loads(json.dumps(c.to_dict()))).cgroup_path == path


def test_config_cgroup_parent_relative_is_accepted():
    """Relative: below the caller's own cgroup (tests/integration/test_cgroups.py)."""
    assert pc.Config(cgroup_parent="a/b").cgroup_parent == "a/b"


def test_config_round_trip(rootfs):
    c = pc.Config(rootfs=rootfs, hostname="h", domainname="d.example", readonly_rootfs=True,
                  namespaces=("mount", "pid", "uts", "ipc", "net", "cgroup"),
                  mounts=(pc.Mount("/data", "/srv", options=("ro", "nosuid")),
                          pc.Mount("/tmp", type="tmpfs", options=("size=1m", "mode=1777"))),
                  env=("A=1", "PATH=/bin"), cwd="/data",
                  resources=pc.Resources(memory_limit=64 << 20, memory_swap=128 << 20,
                                         cpu_shares=512, cpu_quota=50000, cpu_period=100000,
                                         cpuset_cpus="0", pids_limit=64),
                  cgroup_parent="/my/parent")
    d = c.to_dict()
    assert pc.Config.from_dict(d) == c
    # and through JSON, as state.json stores it (tuples come back as lists)
    assert pc.Config.from_dict(json.loads(json.dumps(d))) == c


def test_config_round_trip_defaults():
    c = pc.Config()
    assert pc.Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_config_from_dict_rejects_unknown_field():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config.from_dict({"hostname": "a", "colour": "blue"})
    bad(ei, "config.colour")


def test_config_from_dict_validates():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Config.from_dict({"hostname": "a b"})
    bad(ei, "hostname")


# --- Mount ------------------------------------------------------------------------------

def test_mount_defaults():
    m = pc.Mount("/data", "/srv")
    assert m.type == "bind"
    assert m.options == ()
    t = pc.Mount("/tmp", type="tmpfs")
    assert t.source == ""


@pytest.mark.parametrize("kwargs,field", [
    (dict(destination="relative", source="/x"), "mounts.destination"),
    (dict(destination="", source="/x"), "mounts.destination"),
    (dict(destination=5, source="/x"), "mounts.destination"),
    (dict(destination="/a\0", source="/x"), "mounts.destination"),
    (dict(destination="/x", source=""), "mounts.source"),             # a bind needs a source
    (dict(destination="/x", source="relative"), "mounts.source"),
    (dict(destination="/x", source=None), "mounts.source"),
    (dict(destination="/x", source=5, type="tmpfs"), "mounts.source"),
    (dict(destination="/x", type="Bind", source="/y"), "mounts.type"),
    (dict(destination="/x", type="", source="/y"), "mounts.type"),
    (dict(destination="/x", type="tmp fs"), "mounts.type"),
    (dict(destination="/x", type=None), "mounts.type"),
    (dict(destination="/x", type="a" * 33), "mounts.type"),
    (dict(destination="/x", source="/y", options=["ro,nosuid"]), "mounts.options"),
    (dict(destination="/x", source="/y", options=[""]), "mounts.options"),
    (dict(destination="/x", source="/y", options=[5]), "mounts.options[0]"),
])
def test_mount_rejects(kwargs, field):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Mount(**kwargs)
    bad(ei, field)


@pytest.mark.parametrize("options", ["ro", "ro,nosuid", None, 5])
def test_mount_options_must_be_a_list(options):
    # A string is not a list of options: "ro" must not become ("r", "o").
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Mount("/x", "/y", options=options)
    bad(ei, "mounts.options")


def test_mount_flags():
    ro = pc.Mount("/x", "/y", options=("ro", "nosuid", "rprivate"))
    flags, prop, data = ro.flags()
    assert flags & 0x1 and flags & 0x2 and flags & 0x1000
    assert prop & (1 << 18)
    assert data == ""
    tmp = pc.Mount("/t", type="tmpfs", options=("size=1m", "noexec", "mode=755"))
    flags, prop, data = tmp.flags()
    assert flags & 0x8 and not flags & 0x1000
    assert data == "size=1m,mode=755"


# --- Resources --------------------------------------------------------------------------

def test_resources_defaults():
    r = pc.Resources()
    assert all(getattr(r, f) is None for f in ("memory_limit", "memory_swap", "cpu_shares",
                                                "cpu_quota", "cpu_period", "cpuset_cpus",
                                                "pids_limit"))
    assert r.to_dict() == {}


@pytest.mark.parametrize("kwargs,field", [
    (dict(memory_limit=0), "resources.memory_limit"),
    (dict(memory_limit=-1), "resources.memory_limit"),
    (dict(memory_limit=4095), "resources.memory_limit"),
    (dict(memory_limit=True), "resources.memory_limit"),
    (dict(memory_limit="64m"), "resources.memory_limit"),
    (dict(memory_limit=1.5e6), "resources.memory_limit"),
    (dict(memory_limit=1 << 63), "resources.memory_limit"),
    (dict(memory_swap=1 << 20), "resources.memory_swap"),                   # no memory_limit
    (dict(memory_limit=2 << 20, memory_swap=1 << 20), "resources.memory_swap"),  # below limit
    (dict(memory_limit=2 << 20, memory_swap=-2), "resources.memory_swap"),
    (dict(memory_swap="max"), "resources.memory_swap"),
    (dict(cpu_shares=1), "resources.cpu_shares"),
    (dict(cpu_shares=262145), "resources.cpu_shares"),
    (dict(cpu_shares="1024"), "resources.cpu_shares"),
    (dict(cpu_quota=0), "resources.cpu_quota"),
    (dict(cpu_quota=999), "resources.cpu_quota"),
    (dict(cpu_quota=-2), "resources.cpu_quota"),
    (dict(cpu_period=999), "resources.cpu_period"),
    (dict(cpu_period=1000001), "resources.cpu_period"),
    (dict(cpuset_cpus=""), "resources.cpuset_cpus"),
    (dict(cpuset_cpus="a"), "resources.cpuset_cpus"),
    (dict(cpuset_cpus="0-"), "resources.cpuset_cpus"),
    (dict(cpuset_cpus="0,,1"), "resources.cpuset_cpus"),
    (dict(cpuset_cpus=0), "resources.cpuset_cpus"),
    (dict(cpuset_mems=""), "resources.cpuset_mems"),
    (dict(cpuset_mems="0-"), "resources.cpuset_mems"),
    (dict(cpuset_mems=0), "resources.cpuset_mems"),
    (dict(pids_limit=0), "resources.pids_limit"),
    (dict(pids_limit=-2), "resources.pids_limit"),
    (dict(pids_limit=False), "resources.pids_limit"),
])
def test_resources_rejects(kwargs, field):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.Resources(**kwargs)
    err = bad(ei, field)
    assert err.value == next(iter(kwargs.values())) if len(kwargs) == 1 else True


@pytest.mark.parametrize("kwargs", [
    dict(memory_limit=4096), dict(memory_limit=64 << 20, memory_swap=-1),
    dict(memory_limit=64 << 20, memory_swap=64 << 20), dict(memory_swap=-1),
    dict(cpu_shares=2), dict(cpu_shares=262144), dict(cpu_quota=-1), dict(cpu_quota=1000),
    dict(cpu_period=1000), dict(cpu_period=1000000), dict(cpuset_cpus="0"),
    dict(cpuset_cpus="0-1,3"), dict(cpuset_mems="0"), dict(cpuset_mems="0-1,3"),
    dict(pids_limit=-1), dict(pids_limit=1),
])
def test_resources_accepts(kwargs):
    r = pc.Resources(**kwargs)
    assert r.to_dict() == kwargs


# --- ProcessConfig ----------------------------------------------------------------------

def test_process_config_defaults():
    p = pc.ProcessConfig(args=["/bin/true"])
    assert p.args == ("/bin/true",)
    assert p.env is None and p.cwd is None and p.user is None
    assert p.additional_gids == ()
    assert p.uid_gid() == (0, 0)
    assert p.stdio_fds() == (-1, -1, -1)      # None means /dev/null


def test_process_config_user_and_stdio(tmp_path):
    assert pc.ProcessConfig(args=["x"], user="1000").uid_gid() == (1000, 0)
    assert pc.ProcessConfig(args=["x"], user="1000:1001").uid_gid() == (1000, 1001)
    with open(tmp_path / "f", "w") as f:
        p = pc.ProcessConfig(args=["x"], stdin=0, stdout=f, stderr=None)
        assert p.stdio_fds() == (0, f.fileno(), -1)


@pytest.mark.parametrize("kwargs,field", [
    (dict(args="/bin/sh"), "args"),
    (dict(args=b"/bin/sh"), "args"),
    (dict(args=[]), "args"),
    (dict(args=None), "args"),
    (dict(args=[5]), "args[0]"),
    (dict(args=["/bin/sh", None]), "args[1]"),
    (dict(args=[""]), "args[0]"),
    (dict(args=["a\0b"]), "args[0]"),
    (dict(args=["x"], env="A=1"), "env"),
    (dict(args=["x"], env=["A"]), "env[0]"),
    (dict(args=["x"], env=["A=1", 2]), "env[1]"),
    (dict(args=["x"], cwd="tmp"), "cwd"),
    (dict(args=["x"], cwd=""), "cwd"),
    (dict(args=["x"], user="-root"), "user"),
    (dict(args=["x"], user="ro ot"), "user"),
    (dict(args=["x"], stdout=-2), "stdout"),                  # subprocess.STDOUT: stderr's
    (dict(args=["x"], env={"A": 1}), "env['A']"),
    (dict(args=["x"], user="1000:"), "user"),
    (dict(args=["x"], user=":1000"), "user"),
    (dict(args=["x"], user="-1"), "user"),
    (dict(args=["x"], user="1:2:3"), "user"),
    (dict(args=["x"], user=1000), "user"),
    (dict(args=["x"], user="4294967295"), "user"),            # (uid_t)-1 is not a uid
    (dict(args=["x"], user="0:4294967295"), "user"),
    (dict(args=["x"], user="12345678901"), "user"),
    (dict(args=["x"], additional_gids="5"), "additional_gids"),
    (dict(args=["x"], additional_gids=5), "additional_gids"),
    (dict(args=["x"], additional_gids=[-1]), "additional_gids"),
    (dict(args=["x"], additional_gids=["5"]), "additional_gids"),
    (dict(args=["x"], additional_gids=[True]), "additional_gids"),
    (dict(args=["x"], additional_gids=[1 << 32]), "additional_gids"),
    (dict(args=["x"], stdin="0"), "stdin"),
    (dict(args=["x"], stdout=-4), "stdout"),
    (dict(args=["x"], stderr=True), "stderr"),
    (dict(args=["x"], stderr=1.0), "stderr"),
])
def test_process_config_rejects(kwargs, field):
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.ProcessConfig(**kwargs)
    bad(ei, field)


def test_process_config_rejects_closed_file(tmp_path):
    f = open(tmp_path / "f", "w")
    f.close()
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.ProcessConfig(args=["x"], stdout=f)
    bad(ei, "stdout")


def test_process_config_too_many_groups():
    with pytest.raises(pc.ConfigInvalidError) as ei:
        pc.ProcessConfig(args=["x"], additional_gids=[1] * 65537)
    bad(ei, "additional_gids")


# --- ids --------------------------------------------------------------------------------

BAD_IDS = ["", "../x", "..", ".", "a/b", "/abs", ".x", ".hidden", "a\0b", "a b", "a\nb", "a\n",
           "x" * 1025, "café", "ü", "日本", "a:b", "a*", "a\\b", "~x", None, 5, b"abc"]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=lambda v: repr(v)[:20])
def test_invalid_id_creates_nothing(tmp_path, bad_id):
    root = tmp_path / "run"
    factory = pc.Factory(root=str(root))
    with pytest.raises(pc.InvalidIdError) as ei:
        factory.create(bad_id, pc.Config())
    assert isinstance(ei.value, ValueError)
    assert ei.value.code == "InvalidIdFormat"
    assert not root.exists() or list(root.iterdir()) == []
    assert list(tmp_path.iterdir()) in ([], [root])
    with pytest.raises(pc.InvalidIdError):
        factory.load(bad_id)
    assert not root.exists() or list(root.iterdir()) == []


@pytest.mark.parametrize("good_id", ["a", "A-Z_a.z+0-9", "x" * 1024, "a.", "a..b", "-", "+",
                                     "_", "0", "box1"])
def test_check_id_accepts(good_id):
    from pycontainer.state import check_id
    assert check_id(good_id) == good_id


def test_load_missing_container(tmp_path):
    factory = pc.Factory(root=str(tmp_path / "run"))
    with pytest.raises(pc.ContainerNotExistError) as ei:
        factory.load("nobody")
    assert "nobody" in str(ei.value)
    assert factory.list() == []


def test_create_rejects_a_non_config_before_anything_exists(tmp_path):
    root = tmp_path / "run"
    factory = pc.Factory(root=str(root))
    for not_a_config in (None, {"hostname": "x"}, "config", pc.ProcessConfig(args=["x"])):
        with pytest.raises(pc.ConfigInvalidError) as ei:
            factory.create("box", not_a_config)
        assert ei.value.field == "config"
        assert "box" in str(ei.value)
        assert not root.exists()

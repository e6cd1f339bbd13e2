"""Hostile and malformed input (issue 6.6).

- hypothesis generates Configs and ProcessConfigs whose fields take random types and
  values (strings with NULs, huge and negative ints, floats, bytes, nested junk) mixed with
  plausible ones: the library accepts them or raises ConfigInvalidError naming a field it
  was given; never another exception. An accepted Config survives the trip through the
  state file (to_dict -> JSON -> from_dict), and create() with it either works (then
  destroy) or raises a ContainerError and leaves nothing. An accepted ProcessConfig starts
  (or start raises a ContainerError) and leaves nothing.
- Corrupt state files: load() raises StateInvalidError, and Factory.destroy(id) removes
  the container, its running init and its cgroups included.
- Ids with path tricks, NUL bytes, 1024 and 1025 characters, unicode: InvalidIdError, and
  nothing is created.

The number of inputs each hypothesis test tried is printed (run with -s to see it)."""
import collections
import dataclasses
import errno
import json
import math
import os
import re
import signal

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import pycontainer as pc
from pycontainer.config import NAMESPACES
from pycontainer.state import STATE_FILE
from reliability_helpers import (cgroup_dirs, force_remove, processes_in_cgroups, scope_of,
                                 settle, stable_fds)

TRIED = collections.Counter()
CONFIG_FIELDS = [f.name for f in dataclasses.fields(pc.Config)]
PROCESS_FIELDS = [f.name for f in dataclasses.fields(pc.ProcessConfig)]
ALIASES = {"id_mappings": {"uid_mappings", "gid_mappings"}, "devices": {"devices", "device_rules"},
           "namespaces": {"namespaces", "namespace_paths"}}
SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


class Weird:
    """An object no validator expects: unhashable, equal to nothing, a failing fileno()."""

    def __eq__(self, other):
        return False

    __hash__ = None

    def fileno(self):
        raise OSError(errno.EBADF, "no fileno")

    def __repr__(self):
        return "<Weird>"


# --- strategies ------------------------------------------------------------------------------

nul_text = st.text(alphabet=st.sampled_from(["a", "/", "\x00", ".", "é", "-", "=", " ", "\n",
                                             "容", "\udcff"]), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([-1, 0, 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, -2**63, 10**30,
                     -10**30]),
    st.floats(), st.sampled_from([math.nan, math.inf]),
    st.text(max_size=12), nul_text, st.binary(max_size=8),
    st.builds(object), st.builds(Weird))
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3),
                            st.frozensets(st.integers(), max_size=3)),
    max_leaves=8)

paths = st.one_of(st.sampled_from(["/", "/tmp", "/data", "/proc/x", "/../..", "//x", "/a b",
                                   "relative", "", "/\x00", "/" + "a" * 5000, "/dev/null"]),
                  st.text(max_size=10).map(lambda s: "/" + s), nul_text)
names = st.sampled_from(["box", "a.b", "-bad", "x" * 64, "x" * 65, "ok-1", "é", "", "a..b"])


def plausible_config(rootfs):
    ints = st.one_of(st.integers(-5, 5), st.integers(-2**64, 2**64),
                     st.sampled_from([4096, 1 << 20, 32 << 20, 2**63 - 1, -1, 1000, 1000000]))
    mount = st.fixed_dictionaries(
        {"destination": paths},
        optional={"source": st.one_of(paths, st.just(rootfs)),
                  "type": st.sampled_from(["bind", "tmpfs", "proc", "BAD", "a" * 40, "mqueue"]),
                  "options": st.lists(st.sampled_from(["ro", "rbind", "size=1m", "nosuid", "",
                                                       "a,b", "mode=0755", "x\x00"]), max_size=3)})
    resources = st.fixed_dictionaries(
        {}, optional={k: ints for k in ("memory_limit", "memory_swap", "cpu_shares",
                                        "cpu_quota", "cpu_period", "pids_limit")}
        | {"cpuset_cpus": st.sampled_from(["0", "0-1", "1", "5", "0-", "a", "0,1"])})
    caps = st.lists(st.sampled_from(["CAP_KILL", "cap_chown", "CAP_SYS_ADMIN", "CAP_NOPE", "",
                                     "CAP_NET_RAW"]), max_size=3)
    capabilities = st.one_of(st.none(), st.fixed_dictionaries(
        {}, optional={k: caps for k in ("bounding", "effective", "permitted", "inheritable",
                                        "ambient")}))
    seccomp = st.one_of(st.sampled_from(["default", None, "weird"]), st.fixed_dictionaries(
        {"defaultAction": st.sampled_from(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_NOPE"])},
        optional={"syscalls": st.lists(st.fixed_dictionaries(
            {"names": st.lists(st.sampled_from(["mkdir", "bad name", "getpid", "nosuchcall"]),
                               max_size=2),
             "action": st.sampled_from(["SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "x"])},
            optional={"errnoRet": ints, "args": st.lists(st.fixed_dictionaries(
                {"index": ints, "value": ints, "op": st.sampled_from(["SCMP_CMP_EQ", "EQ"])}),
                max_size=1)}), max_size=2),
            "architectures": st.lists(st.sampled_from(["SCMP_ARCH_X86_64", "SCMP_ARCH_NOPE"]),
                                      max_size=2),
            "flags": st.lists(st.sampled_from(["SECCOMP_FILTER_FLAG_LOG", "NOPE"]), max_size=1)}))
    device = st.fixed_dictionaries(
        {"path": st.sampled_from(["/dev/fuse", "/dev/../etc/x", "/etc/x", "/dev/null"])},
        optional={"type": st.sampled_from(["c", "b", "u", "a", "x"]), "major": ints,
                  "minor": ints, "file_mode": ints, "uid": ints, "gid": ints})
    rule = st.fixed_dictionaries(
        {"allow": st.one_of(st.booleans(), ints)},
        optional={"type": st.sampled_from(["a", "c", "b", "u"]), "major": ints, "minor": ints,
                  "access": st.sampled_from(["rwm", "r", "", "rr", "x", "mwr"])})
    rlimit = st.fixed_dictionaries(
        {"type": st.sampled_from(["RLIMIT_NOFILE", "rlimit_nproc", "RLIMIT_CPU", "RLIMIT_NOPE"])},
        optional={"soft": ints, "hard": ints})
    idmap = st.fixed_dictionaries({"container_id": ints, "host_id": ints, "size": ints})
    ns_path = st.sampled_from([f"/proc/self/ns/{n}" for n in ("net", "uts", "ipc", "cgroup",
                                                              "pid", "mnt")]
                              + ["/nonexistent", "/etc/passwd", "rel", "/proc/self/ns/net\x00"])
    ns_names = st.sampled_from(NAMESPACES + ("bogus",))
    ifname = st.sampled_from(["eth0", "eth1", "lo", "veth*", "pcfuzz*", "a" * 16, "a/b", "",
                              "x%d", "pcfuzz0"])
    # Create never starts: a veth is validated and stored, never made.
    network = st.fixed_dictionaries(
        {"type": st.sampled_from(["veth", "veth", "loopback", "tap"])},
        optional={"name": ifname, "host_name": ifname, "bridge": ifname,
                  "address": st.one_of(st.sampled_from(["10.0.0.2/24", "fd00::2/64", "10.0.0.0/24",
                                                        "10.0.0.2", "nope", "::1/128"]),
                                       st.lists(st.sampled_from(["10.0.0.2/24", "fd00::2/64"]),
                                                max_size=2)),
                  "gateway": st.sampled_from(["10.0.0.1", "fd00::1", "10.9.0.1", "x",
                                              ["10.0.0.1", "fd00::1"]]),
                  "mtu": ints, "mac": st.sampled_from(["02:00:00:00:00:01", "01:00:00:00:00:01",
                                                       "nope", None])})
    return {
        "rootfs": st.sampled_from([None, rootfs, "/nonexistent", "relative", "/etc/passwd",
                                   rootfs + "\x00", rootfs + "/"]),
        "hostname": names, "domainname": names,
        "namespaces": st.one_of(st.lists(st.sampled_from(NAMESPACES + ("bogus",)), max_size=8),
                                st.sets(st.sampled_from(NAMESPACES)), st.sampled_from(["pid"]),
                                st.dictionaries(ns_names, st.one_of(st.none(), ns_path),
                                                max_size=8)),
        "namespace_paths": st.dictionaries(ns_names, ns_path, max_size=3),
        "networks": st.lists(network, max_size=3),
        "mounts": st.lists(mount, max_size=3),
        "readonly_rootfs": st.booleans(),
        "default_mounts": st.booleans(),
        "rootfs_propagation": st.sampled_from([None, "rslave", "shared", "ro", "bind", ""]),
        "env": st.lists(st.sampled_from(["A=1", "B=", "=x", "noeq", "C=\x00", "D=é"]), max_size=3),
        "cwd": paths,
        "resources": resources,
        "cgroup_parent": st.sampled_from(["/a/b", "/a/../b", "rel", "/x/./y", None]),
        "cgroup_path": st.sampled_from(["/a/b", "/a/../b", "rel", "/x/./y", "/", None]),
        "capabilities": capabilities,
        "no_new_privileges": st.booleans(),
        "seccomp": seccomp,
        "masked_paths": st.lists(paths, max_size=2),
        "readonly_paths": st.lists(paths, max_size=2),
        "devices": st.lists(device, max_size=2),
        "device_rules": st.one_of(st.none(), st.lists(rule, max_size=3)),
        "rlimits": st.lists(rlimit, max_size=2),
        "oom_score_adj": ints,
        "sysctl": st.dictionaries(st.sampled_from(["net.ipv4.ip_forward", "kernel.shmmax",
                                                   "vm.swappiness", "bad name", "fs.mqueue.x"]),
                                  st.one_of(st.sampled_from(["1", "", "\x00"]), ints), max_size=2),
        "umask": ints,
        "uid_mappings": st.lists(idmap, max_size=2),
        "gid_mappings": st.lists(idmap, max_size=2),
        "pdeathsig": ints,
        # An image's dict as state.json holds it; the busybox rootfs stands for its tree.
        "image": st.one_of(st.none(), st.sampled_from(["busybox", 3]), st.fixed_dictionaries(
            {"rootfs": st.sampled_from([rootfs, "/nonexistent", "relative", rootfs + "\x00"]),
             "chain_id": st.sampled_from(["sha256:" + "0" * 64, "sha256:x", "", 7])},
            optional={"config": st.sampled_from([{}, {"env": ["A=1"], "working_dir": "/tmp"},
                                                 {"bogus": 1}, "x"]),
                      "name": st.sampled_from(["", "busybox:1", 3])})),
        "rootfs_overlay": st.booleans(),
    }


@st.composite
def config_kwargs(draw, rootfs):
    plausible = plausible_config(rootfs)
    chosen = draw(st.lists(st.sampled_from(CONFIG_FIELDS), max_size=6, unique=True))
    kw = {}
    for name in chosen:
        # Mostly plausible (to get past the first check, and to make valid configs), often
        # pure junk.
        kw[name] = draw(st.one_of(plausible[name], plausible[name], junk))
    if "rootfs" not in kw and draw(st.booleans()):
        kw["rootfs"] = rootfs
    return kw


@st.composite
def process_kwargs(draw):
    ints = st.one_of(st.integers(-5, 70000), st.sampled_from([2**32, 2**63, -1]))
    plausible = {
        "args": st.one_of(st.lists(st.text(max_size=6), max_size=3), st.lists(nul_text, max_size=2)),
        "env": st.one_of(st.none(), st.lists(st.sampled_from(["A=1", "=x", "noeq", "C=\x00"]),
                                             max_size=3)),
        "cwd": st.one_of(st.none(), paths),
        "user": st.sampled_from([None, "0", "1000:1000", "65534", "4294967295", "4294967294:0",
                                 "-1", "a:b", "1:2:3", "", "01", "9" * 11]),
        "additional_gids": st.lists(ints, max_size=3),
        "stdin": st.one_of(st.none(), ints), "stdout": st.one_of(st.none(), ints),
        "stderr": st.one_of(st.none(), ints),
        "rlimits": st.lists(st.fixed_dictionaries(
            {"type": st.sampled_from(["RLIMIT_NOFILE", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_X"])},
            optional={"soft": ints, "hard": ints}), max_size=2),
        "terminal": st.booleans(),
        "extra_files": st.lists(ints, max_size=2),
    }
    chosen = draw(st.lists(st.sampled_from(PROCESS_FIELDS), max_size=5, unique=True))
    kw = {name: draw(st.one_of(plausible[name], plausible[name], junk)) for name in chosen}
    if "args" not in kw:
        kw["args"] = draw(st.one_of(st.just(["/bin/true"]), plausible["args"], junk))
    return kw


def names_a_given_field(err, given):
    root = re.split(r"[.\[]", str(err.field))[0]
    return bool(ALIASES.get(root, {root}) & set(given))


def build(cls, kw):
    """cls(**kw): the instance, or the ConfigInvalidError (checked to name a given field)."""
    try:
        return cls(**kw)
    except pc.ConfigInvalidError as err:
        assert names_a_given_field(err, kw), (err.field, str(err), kw)
        assert str(err.field) in str(err)
        return err
    # anything else propagates: a failure


def nothing_left(factory, cid):
    scope = scope_of(factory.root)
    assert not os.path.exists(os.path.join(factory.root, cid)), os.listdir(factory.root)
    assert cid not in factory.list() and factory.list_broken() == {}
    assert not cgroup_dirs([f"{scope}-"])


# --- Config ---------------------------------------------------------------------------------

def check_config(factory, kw):
    TRIED["Config inputs"] += 1
    cfg = build(pc.Config, kw)
    if isinstance(cfg, pc.ConfigInvalidError):
        TRIED["Config rejected"] += 1
        return
    TRIED["Config accepted"] += 1
    # What create persists must load back as the same Config.
    again = pc.Config.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg, (again, cfg)
    for name in ("cgroup_parent", "cgroup_path"):
        if getattr(cfg, name) is not None:
            # A parent outside the `pycontainer` one would be made on the host and stay
            # (the shared parents of a destroyed container stay by design): not created.
            TRIED[f"not created: {name}"] += 1
            return
    try:
        c = factory.create("gen", cfg)
    except pc.ContainerError as exc:
        TRIED[f"create raised {type(exc).__name__}"] += 1
        nothing_left(factory, "gen")
        return
    TRIED["created"] += 1
    assert pc.Factory(factory.root).load("gen").config == cfg
    c.destroy()
    nothing_left(factory, "gen")


def run_config_fuzz(factory, busybox_rootfs, n):
    @settings(max_examples=n, **SETTINGS)
    @given(config_kwargs(busybox_rootfs))
    def inner(kw):
        check_config(factory, kw)
    TRIED.clear()
    try:
        inner()
    finally:
        print(f"\nConfig: {dict(TRIED)}")
    assert TRIED["created"] > 0 and TRIED["Config rejected"] > 0


def test_generated_configs(factory, busybox_rootfs):
    run_config_fuzz(factory, busybox_rootfs, 400)


@pytest.mark.slow
def test_generated_configs_long(factory, busybox_rootfs):
    run_config_fuzz(factory, busybox_rootfs, 5000)


# Inputs hypothesis finds (kept here so that each has a test of its own, whatever the
# order hypothesis meets them in): dict items missing a required field, and strings with
# a lone surrogate (what os.fsdecode gives for a non-UTF-8 byte: a legitimate path).
HOSTILE = {
    "mount without destination": (pc.Config, dict(mounts=[{}])),
    "device without path": (pc.Config, dict(devices=[{}])),
    "device rule without allow": (pc.Config, dict(device_rules=[{}])),
    "rlimit without type": (pc.Config, dict(rlimits=[{}])),
    "id map without fields": (pc.Config, dict(namespaces=["user", "mount", "pid"],
                                              uid_mappings=[{}], gid_mappings=[{}])),
    "process rlimit without type": (pc.ProcessConfig, dict(args=["/bin/true"], rlimits=[{}])),
    "surrogate in cwd": (pc.Config, dict(cwd="/tmp/\udcff")),
    "surrogate in a masked path": (pc.Config, dict(masked_paths=["/proc/\udcff"])),
    "surrogate in a process cwd": (pc.ProcessConfig, dict(args=["/bin/true"], cwd="/\udcff")),
}


@pytest.mark.parametrize("cls, kw", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_values(cls, kw):
    """Accepted, or ConfigInvalidError naming the field; never another exception."""
    build(cls, kw)


SURROGATE_STARTS = {
    "argument": dict(args=["/bin/echo", "\udcff"]),
    "program": dict(args=["/bin/true\udcff"]),
    "environment": dict(args=["/bin/true"], env=["A=\udcff"]),
}


@pytest.mark.parametrize("kw", list(SURROGATE_STARTS.values()), ids=list(SURROGATE_STARTS))
def test_start_with_a_surrogate_string(factory, busybox_rootfs, kw):
    """ProcessConfig accepts these strings, so start must run them (as the bytes they
    stand for) or raise a ContainerError; nothing is left either way."""
    c = factory.create("sur", pc.Config(rootfs=busybox_rootfs))
    try:
        pcfg = pc.ProcessConfig(**kw)
        try:
            _, exits = c.start(pcfg)
        except pc.ContainerError:
            pass
        else:
            assert isinstance(exits.get(timeout=10), int)
        assert settle(c.processes) == []
    finally:
        c.destroy()


# --- ProcessConfig --------------------------------------------------------------------------

def check_process(c, init_pid, kw):
    TRIED["ProcessConfig inputs"] += 1
    pcfg = build(pc.ProcessConfig, kw)
    if isinstance(pcfg, pc.ConfigInvalidError):
        TRIED["ProcessConfig rejected"] += 1
        return
    TRIED["ProcessConfig accepted"] += 1
    # Started for real, with its own argv after a known program (a generated argv[0] could
    # name any busybox applet, `yes` included) and /dev/null stdio (a generated fd could be
    # any of pytest's).
    pcfg = dataclasses.replace(pcfg, args=("/bin/true",) + pcfg.args[1:], stdin=None,
                               stdout=None, stderr=None, extra_files=())
    fds = stable_fds()
    try:
        started = c.start(pcfg)
    except pc.ContainerError as exc:
        TRIED[f"start raised {type(exc).__name__}"] += 1
    else:
        status = started.exits.get(timeout=10)
        if started.console is not None:         # terminal=True: the pty master is ours
            os.close(started.console)
        TRIED["started" if status == 0 else "started, nonzero status"] += 1
    assert settle(lambda: c.processes() != [init_pid]) is False, c.processes()
    assert stable_fds() == fds
    assert c.run_state() == pc.RunState.RUNNING


def run_process_fuzz(factory, busybox_rootfs, n):
    c = factory.create("procs", pc.Config(rootfs=busybox_rootfs))
    init_pid, init_exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    c.run_state()       # caches the init's pidfd before the first descriptor count

    @settings(max_examples=n, **SETTINGS)
    @given(process_kwargs())
    def inner(kw):
        check_process(c, init_pid, kw)
    TRIED.clear()
    try:
        inner()
    finally:
        print(f"\nProcessConfig: {dict(TRIED)}")
        c.destroy()
    assert init_exits.get(timeout=10) == -signal.SIGKILL
    assert TRIED["started"] > 0 and TRIED["ProcessConfig rejected"] > 0


def test_generated_process_configs(factory, busybox_rootfs):
    run_process_fuzz(factory, busybox_rootfs, 400)


@pytest.mark.slow
def test_generated_process_configs_long(factory, busybox_rootfs):
    run_process_fuzz(factory, busybox_rootfs, 5000)


# --- ids ------------------------------------------------------------------------------------

BAD_IDS = ["", ".", "..", ".hidden", "../x", "../../etc", "a/b", "/abs", "a\x00b", "\x00",
           "x" * 1025, "é", "容器", "a b", "a\nb", "*", "~", "a:b", "%2e%2e", "x/" * 10,
           ".long-" + "a" * 64, "-" * 1025, b"abc", 5, None, ["a"], 1.5]
GOOD_IDS = ["a", "A.b+c_d-e", "x" * 255, "y" * 256, "z" * 1024, "-", "+", "_", "0"]


def check_bad_id(factory, cid):
    before = sorted(os.listdir(factory.root)) if os.path.isdir(factory.root) else []
    with pytest.raises(pc.InvalidIdError) as ei:
        factory.create(cid, pc.Config())
    assert isinstance(ei.value, ValueError) and ei.value.code == "InvalidIdFormat"
    with pytest.raises(pc.InvalidIdError):
        factory.load(cid)
    with pytest.raises(pc.InvalidIdError):
        factory.destroy(cid)
    after = sorted(os.listdir(factory.root)) if os.path.isdir(factory.root) else []
    assert after == before
    assert not cgroup_dirs([f"{scope_of(factory.root)}-"])


@pytest.mark.parametrize("cid", BAD_IDS, ids=[repr(i)[:20] for i in BAD_IDS])
def test_invalid_ids_create_nothing(factory, cid):
    check_bad_id(factory, cid)
    assert not os.path.exists(os.path.join(os.path.dirname(factory.root), "etc"))


def test_valid_ids_up_to_1024(factory, busybox_rootfs):
    for cid in GOOD_IDS:
        c = factory.create(cid, pc.Config(rootfs=busybox_rootfs))
        assert cid in factory.list()
        same = pc.Factory(factory.root).load(cid)
        assert same.id == cid
        _, exits = same.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 9"]))
        assert exits.get(timeout=10) == 9
        c.destroy()
        nothing_left(factory, cid)


def run_id_fuzz(factory, n):
    valid = re.compile(r"[A-Za-z0-9_.+-]{1,1024}")

    @settings(max_examples=n, **SETTINGS)
    @given(st.one_of(st.text(max_size=30), nul_text,
                     st.text(alphabet="abc./-_+\x00", min_size=1000, max_size=1030)))
    def inner(cid):
        TRIED["ids"] += 1
        if valid.fullmatch(cid) and not cid.startswith("."):
            TRIED["valid ids"] += 1
            factory.create(cid, pc.Config()).destroy()
            nothing_left(factory, cid)
        else:
            check_bad_id(factory, cid)
    TRIED.clear()
    try:
        inner()
    finally:
        print(f"\nids: {dict(TRIED)}")


def test_generated_ids(factory):
    run_id_fuzz(factory, 300)


# --- corrupt state files ----------------------------------------------------------------------

def _rewrite(fn):
    def corrupt(path):
        with open(path) as f:
            d = json.load(f)
        d = fn(d)
        with open(path, "w") as f:
            f.write(d if isinstance(d, str) else json.dumps(d))
    return corrupt


def _raw(data):
    def corrupt(path):
        with open(path, "wb") as f:
            f.write(data)
    return corrupt


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])


def _directory(path):
    os.unlink(path)
    os.mkdir(path)


def _symlink_to_passwd(path):
    os.unlink(path)
    os.symlink("/etc/passwd", path)


def _set(key, value):
    return _rewrite(lambda d: {**d, key: value})


def _drop(key):
    return _rewrite(lambda d: {k: v for k, v in d.items() if k != key})


CORRUPTIONS = {
    "truncated": _truncate,
    "empty": _raw(b""),
    "not json": _raw(b"\x00\xff not json {"),
    "json list": _raw(b"[1, 2, 3]"),
    "json string": _raw(b'"state"'),
    "json null": _raw(b"null"),
    "other shape": _raw(b'{"foo": 1, "bar": [2]}'),
    "missing nonce": _drop("nonce"),
    "missing config": _drop("config"),
    "unknown field": _set("zzz", 1),
    "version 99": _set("version", 99),
    "version string": _set("version", "1"),
    "version missing": _drop("version"),
    "init_pid string": _set("init_pid", "abc"),
    "init_pid negative": _set("init_pid", -5),
    "init_pid huge": _set("init_pid", 2**80),
    "init_pid float": _set("init_pid", 1.5),
    "init_start_time string": _set("init_start_time", "x"),
    "nonce number": _set("nonce", 5),
    "id of another container": _set("id", "someone-else"),
    "id invalid": _set("id", "../x"),
    "config a string": _set("config", "junk"),
    "config bad field": _rewrite(lambda d: {**d, "config": {**d["config"], "rootfs": 5}}),
    "config unknown field": _rewrite(lambda d: {**d, "config": {**d["config"], "zzz": 1}}),
    "cgroups a string": _set("cgroups", "junk"),
    "cgroups empty": _set("cgroups", {}),
    "cgroups version 2": _rewrite(lambda d: {**d, "cgroups": {**d["cgroups"], "version": 2}}),
    "created string": _set("created", "yesterday"),
    "extra not a dict": _set("extra", [1]),
    "is a directory": _directory,
    "symlink to /etc/passwd": _symlink_to_passwd,
    "huge": _raw(b" " * (8 << 20) + b"{}"),
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_corrupt_state_file(factory, busybox_rootfs, corrupt):
    """A running container whose state.json is then damaged: load() raises
    StateInvalidError naming the container; list_broken() reports it; Factory.destroy(id)
    kills its init and removes its cgroups and state directory."""
    scope = scope_of(factory.root)
    c = factory.create("bad", pc.Config(rootfs=busybox_rootfs))
    init, init_exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
    corrupt(os.path.join(factory.root, "bad", STATE_FILE))
    f = pc.Factory(factory.root)
    try:
        with pytest.raises(pc.StateInvalidError) as ei:
            f.load("bad")
        assert "bad" in str(ei.value)
        assert "bad" in f.list_broken()
        f.destroy("bad")
    finally:
        if os.path.exists(os.path.join(factory.root, "bad")):
            force_remove(factory.root, "bad")
    assert init_exits.get(timeout=10) == -signal.SIGKILL
    assert f.list() == [] and f.list_broken() == {}
    assert os.listdir(factory.root) == []
    assert not settle(lambda: cgroup_dirs([f"{scope}-"]))
    assert not settle(lambda: processes_in_cgroups([f"{scope}-"]))

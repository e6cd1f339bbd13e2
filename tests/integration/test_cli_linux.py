"""config.json shapes of linux.* that runc and crun run, through the CLI: a hostname in a
joined uts namespace, cpuset memory nodes, an exact linux.cgroupsPath."""
import os
import subprocess

import pytest

from test_cli import _cgroup_file, make_bundle, oci  # noqa: F401  (the CLI tests' fixtures)


@pytest.fixture
def uts_namespace():
    """A uts namespace of its own, held by a sleeping process: its /proc ns path."""
    p = subprocess.Popen(["unshare", "--uts", "sh", "-c", "echo ready; exec sleep 1000"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        yield p.pid
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def test_hostname_in_a_joined_uts_namespace(oci, make_bundle, uts_namespace):
    def mutate(s):
        s["hostname"] = "joined-box"
        for ns in s["linux"]["namespaces"]:
            if ns["type"] == "uts":
                ns["path"] = f"/proc/{uts_namespace}/ns/uts"
    b = make_bundle(["hostname"], mutate=mutate)
    assert oci.ok("run", "-b", b, "uts").out == "joined-box\n"
    # Set in the namespace joined, as runc does: its other processes see it.
    seen = subprocess.run(["nsenter", f"--uts=/proc/{uts_namespace}/ns/uts", "hostname"],
                          capture_output=True, text=True, check=True).stdout
    assert seen == "joined-box\n"
    assert subprocess.run(["hostname"], capture_output=True, text=True).stdout != seen


def test_cpuset_memory_nodes(oci, make_bundle):
    """linux.resources.cpu.mems goes to cpuset.mems (this host's cpuset is cgroup v1; the
    v2 writer: tests/unit/test_v2_writers.py). Node 0 is the one every host has, so the
    value equals the parent's here: what is checked is that it is written and applies."""
    def mutate(s):
        s["linux"]["resources"]["cpu"] = {"cpus": "0", "mems": "0"}
    b = make_bundle(mutate=mutate)
    oci.ok("create", "-b", b, "--pid-file", str(oci.tmp / "pid"), "mems")
    oci.ok("start", "mems")
    pid = int((oci.tmp / "pid").read_text())
    assert oci.state("mems")["status"] == "running"
    assert (_cgroup_file(pid, "cpuset", "cpuset.cpus"),
            _cgroup_file(pid, "cpuset", "cpuset.mems")) == ("0", "0")
    status = oci.ok("exec", "mems", "grep", "_allowed_list:", "/proc/self/status").out
    assert status.split() == ["Cpus_allowed_list:", "0", "Mems_allowed_list:", "0"]
    oci.ok("update", "--cpuset-mems", "0", "mems")        # runc's flag, as runc takes it
    oci.fails("update", "--cpuset-mems", "0-", "mems")
    oci.ok("delete", "--force", "mems")
    assert oci.ids() == []


# --- linux.cgroupsPath: the container's cgroup exactly ------------------------------------

def _cgroups_of(pid):
    """{controller or "" for cgroup2: path} of /proc/<pid>/cgroup, for the hierarchies a
    container's cgroups are in."""
    from pycontainer.cgroups import detect
    from pycontainer.cgroups.host import V1_CONTROLLERS
    host = detect()
    # (The v1 freezer only when there is no cgroup2 to freeze with.)
    used = set(V1_CONTROLLERS + (("",) if host.unified else ("freezer",))) & \
        (set(host.v1) | {""})
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            for ctl in ctls.split(",") if ctls else [""]:
                if ctl in used:
                    out[ctl] = path
    return out


def _dir_in(ctl, path):
    from pycontainer.cgroups import detect
    host = detect()
    return (host.unified if ctl == "" else host.v1[ctl]).dir_of(path)


@pytest.fixture
def cgroup_tops(oci):
    """Removes the cgroup parents a test's cgroupsPaths made (destroy leaves parents, as
    for Config.cgroup_parent): register (controller, path of the topmost) pairs. After
    `oci` has deleted what a failed test left."""
    tops = []
    yield tops.append
    for ctl, path in tops:
        for dirpath, _, _ in sorted(os.walk(_dir_in(ctl, path)), reverse=True):
            os.rmdir(dirpath)


@pytest.mark.parametrize("absolute", [True, False], ids=["absolute-nested", "relative"])
def test_cgroups_path_is_the_containers_cgroup(oci, make_bundle, cgroup_tops, absolute):
    """Absolute (with --nest-cgroups, as the clients' tests run us: below our own cgroup)
    and relative (below the runtime's own cgroup) cgroupsPaths are the container's cgroup
    in every hierarchy, exactly; delete removes it."""
    top = f"pc-exact-{os.getpid()}"
    given = f"{'/' if absolute else ''}{top}/pod1/ctr-{absolute:d}"
    flags = ["--nest-cgroups"] if absolute else []
    b = make_bundle(mutate=lambda s: s["linux"].update(cgroupsPath=given))
    own = _cgroups_of(os.getpid())
    for ctl, path in own.items():
        cgroup_tops((ctl, f"{path.rstrip('/')}/{top}"))
    oci.ok(*flags, "create", "-b", b, "--pid-file", str(oci.tmp / "pid"), "exact")
    oci.ok(*flags, "start", "exact")
    assert oci.state("exact")["status"] == "running"
    pid = int((oci.tmp / "pid").read_text())
    want = {ctl: f"{path.rstrip('/')}/{given.strip('/')}" for ctl, path in own.items()}
    assert _cgroups_of(pid) == want
    oci.ok(*flags, "delete", "--force", "exact")
    assert not any(os.path.exists(_dir_in(ctl, path)) for ctl, path in want.items())
    assert all(os.path.isdir(os.path.dirname(_dir_in(ctl, path))) for ctl, path in want.items())


def test_a_cgroups_path_in_use_is_refused(oci, make_bundle, cgroup_tops):
    """A second container at the cgroupsPath of a live one is refused before anything is
    made, naming the first; once the first is deleted the path is free again. A cgroup
    that exists but is no container's is refused too (never taken over), and left alone."""
    top = f"pc-busy-{os.getpid()}"
    given = f"{top}/ctr"
    own = _cgroups_of(os.getpid())
    for ctl, path in own.items():
        cgroup_tops((ctl, f"{path.rstrip('/')}/{top}"))
    b = make_bundle(mutate=lambda s: s["linux"].update(cgroupsPath=given))
    oci.ok("create", "-b", b, "first")
    oci.ok("start", "first")
    r = oci.fails("create", "-b", b, "second")
    assert "'first'" in r.err and given in r.err and "EBUSY" in r.err, r.err
    assert oci.ids() == ["first"] and oci.state("first")["status"] == "running"
    oci.ok("delete", "--force", "first")
    oci.ok("create", "-b", b, "second")
    oci.ok("delete", "second")

    # Not a container's: a cgroup someone else made at the path (in one hierarchy).
    theirs = _dir_in(*next(iter(own.items())))
    theirs = os.path.join(theirs, given)
    os.mkdir(theirs)
    r = oci.fails("create", "-b", b, "third")
    assert "exists already" in r.err and "EBUSY" in r.err, r.err
    assert oci.ids() == [] and os.path.isdir(theirs)
    # Nothing was made in the other hierarchies either.
    assert [ctl for ctl, path in own.items()
            if os.path.exists(_dir_in(ctl, f"{path.rstrip('/')}/{given}"))] == \
        [next(iter(own))]

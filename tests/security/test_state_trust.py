"""Issue 18, items 3, 4 and 10: state records are not trusted, the state root is ours.

A forged state.json must never let signal(), destroy() or the CLI's kill/delete reach a
host process or a cgroup this runtime did not make; a symlink planted as a state
directory is never followed; the state root is 0700 and ours, else refused; an
unprivileged delete of root's containers fails (EACCES); concurrent `delete --force` of
one id all succeed; start() racing its init's exit says the container is not running.

Every attack here is real: the victims are a host `sleep` and a cgroup with a `sleep` in
it, and each test checks they survive."""
import collections
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

import pycontainer as pc
from pycontainer import cgroups
from pycontainer.state import STATE_FILE, StateInvalidError, pidns_of, process_start_time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
NOBODY = 65534


def cli(root, *args, timeout=60, **kw):
    """`python -m pycontainer --root ROOT args...` -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "pycontainer", "--root", root, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=ENV,
                          stdin=subprocess.DEVNULL, **kw)


@pytest.fixture
def host_sleep():
    """A host process (in our own cgroup and pid namespace): the victim."""
    p = subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL)
    yield p
    p.kill()
    p.wait()


def alive(p):
    return p.poll() is None


def state_path(factory, cid):
    return os.path.join(factory.root, cid, STATE_FILE)


def rewrite(factory, cid, change):
    """Replace the container's state.json by change(its JSON)."""
    path = state_path(factory, cid)
    with open(path) as f:
        d = json.load(f)
    change(d)
    with open(path, "w") as f:
        json.dump(d, f)


def name_host_process(p, pidns):
    """A change naming host process p as the init; pidns: "missing" (no init_pidns) or
    "host" (the host's, as it reads: what a record must not be believed for)."""
    def change(d):
        d["init_pid"] = p.pid
        d["init_start_time"] = process_start_time(p.pid)
        d["extra"].pop("init_pidns", None)
        if pidns == "host":
            d["extra"]["init_pidns"] = pidns_of(p.pid)
    return change


# --- a record naming a host process -------------------------------------------------------

@pytest.mark.parametrize("pidns", ["missing", "host"])
def test_record_naming_a_host_process_library(factory, busybox_rootfs, host_sleep, pidns):
    factory.create("forged", pc.Config(rootfs=busybox_rootfs))
    rewrite(factory, "forged", name_host_process(host_sleep, pidns))
    c = pc.Factory(factory.root).load("forged")
    with pytest.raises(pc.ContainerNotRunningError):
        c.signal(signal.SIGKILL)
    c.signal(signal.SIGKILL, all=True)         # the cgroup's processes: none
    assert alive(host_sleep)
    assert c.init_pid() is None
    assert c.run_state() == pc.RunState.STOPPED
    c.destroy()
    assert alive(host_sleep)
    assert os.listdir(factory.root) == []


@pytest.mark.parametrize("pidns", ["missing", "host"])
def test_record_naming_a_host_process_cli(factory, busybox_rootfs, host_sleep, pidns):
    factory.create("forged", pc.Config(rootfs=busybox_rootfs))
    rewrite(factory, "forged", name_host_process(host_sleep, pidns))
    r = cli(factory.root, "kill", "forged", "KILL")
    assert r.returncode != 0 and "not running" in r.stderr, r
    assert alive(host_sleep)
    r = cli(factory.root, "state", "forged")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "stopped", r
    r = cli(factory.root, "delete", "--force", "forged")
    assert r.returncode == 0, r
    assert alive(host_sleep)
    assert os.listdir(factory.root) == []


def test_record_without_cgroups_naming_a_host_process(factory, busybox_rootfs, host_sleep):
    """A record claiming the container has no cgroups (as rootless ones may) would make
    destroy() SIGKILL the init it names. As root no container is made so: refused, and
    destroy removes the cgroups create made where create made them."""
    factory.create("forged", pc.Config(rootfs=busybox_rootfs))

    def change(d):
        name_host_process(host_sleep, "host")(d)
        d["cgroups"] = {"version": 1, "id": "forged", "none": True}
    rewrite(factory, "forged", change)
    f = pc.Factory(factory.root)
    f.destroy("forged")
    assert alive(host_sleep)
    assert os.listdir(factory.root) == []
    factory.create("forged", pc.Config(rootfs=busybox_rootfs))
    rewrite(factory, "forged", change)
    with pytest.raises(StateInvalidError):
        f.load("forged")
    r = cli(factory.root, "delete", "--force", "forged")
    assert r.returncode == 0, r
    assert alive(host_sleep)
    assert os.listdir(factory.root) == []


# --- a record naming a cgroup we did not make --------------------------------------------

class Victim:
    """A cgroup the runtime did not make, with a sleep in it."""

    def __init__(self, path):
        self.path = path
        self.made = []                     # what we made, top-down
        d = path
        while not os.path.isdir(d):
            self.made.insert(0, d)
            d = os.path.dirname(d)
        for d in self.made:
            os.mkdir(d)
        self.proc = subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL)
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(self.proc.pid))

    def intact(self):
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return alive(self.proc) and str(self.proc.pid) in f.read().split()

    def remove(self):
        self.proc.kill()
        self.proc.wait()
        for d in reversed(self.made):
            os.rmdir(d)


def default_parent(hierarchy):
    """<hierarchy>/<our cgroup>/pycontainer, where the runtime puts containers by default."""
    return os.path.join(hierarchy.own_dir, "pycontainer")


@pytest.fixture
def victims():
    made = []
    yield lambda path: made.append(Victim(path)) or made[-1]
    for v in made:
        v.remove()


def scoped(factory, cid):
    m = cgroups.new_manager(cid, scope=factory._cgroup_scope)
    return m.name


def unified():
    host = cgroups.detect()
    if host.unified is None:
        pytest.skip("no cgroup2 hierarchy")
    return host.unified


def v1_freezer():
    host = cgroups.detect()
    if "freezer" not in host.v1:
        pytest.skip("no v1 freezer hierarchy")
    return host.v1["freezer"]


def victim_cases(factory, cid):
    """(label, hierarchy, victim path) for records naming cgroups we did not make."""
    name = scoped(factory, cid)
    for label, h in (("v2", unified()), ("v1", v1_freezer())):
        base = default_parent(h)
        tag = f"sec-victim-{os.getpid()}"
        yield label + " other name", h, os.path.join(base, tag)
        # Our name for the id, below a parent that is not ours.
        yield label + " our name elsewhere", h, os.path.join(base, tag + "-p", name)
        yield label + " our name deeper", h, os.path.join(base, tag + "-q", "pycontainer", "x",
                                                          name)


def _cgroup_record(d, h, victim, unified_dir):
    cg = d["cgroups"]
    if h.controllers:            # a v1 hierarchy: the freezer is what kill uses without v2
        cg["unified"] = None
        cg["v1"] = {"freezer": victim}
    else:
        cg["unified"] = victim


@pytest.mark.parametrize("case", range(6))
def test_record_naming_an_unrelated_cgroup(factory, busybox_rootfs, victims, case):
    cid = "forged"
    label, h, path = list(victim_cases(factory, cid))[case]
    v = victims(path)
    c = factory.create(cid, pc.Config(rootfs=busybox_rootfs))
    real = c.internal.cgroups.to_record()
    rewrite(factory, cid, lambda d: _cgroup_record(d, h, path, None))
    f = pc.Factory(factory.root)
    with pytest.raises(StateInvalidError) as ei:
        f.load(cid)
    assert cid in str(ei.value)
    assert cid in f.list_broken()
    f.destroy(cid)
    assert v.intact(), label
    # destroy removed the container's real cgroups (where create put them).
    assert not any(os.path.exists(p) for p in [real["unified"], *real["v1"].values()] if p)
    r = cli(factory.root, "delete", "--force", cid)     # gone already: fine
    assert r.returncode == 0, r
    assert v.intact(), label
    assert os.listdir(factory.root) == []


def test_record_naming_the_parent_or_a_hierarchy_root(factory, busybox_rootfs):
    """Never destroyed: load refuses them before anything could act on them."""
    h = unified()
    c = factory.create("forged", pc.Config(rootfs=busybox_rootfs))
    good = c.internal.cgroups.to_record()
    f = pc.Factory(factory.root)
    bad = [default_parent(h), h.mountpoint, h.mountpoint + "/", good["unified"] + "/..",
           good["unified"] + "/", good["unified"] + "/sub", "/tmp/" + scoped(factory, "forged"),
           "relative/" + scoped(factory, "forged"), 5, ["x"], None]
    try:
        for path in bad:
            rewrite(factory, "forged", lambda d: d["cgroups"].update(unified=path, v1={}))
            with pytest.raises(StateInvalidError):
                f.load("forged")
        for change in (lambda cg: cg.update(v1={"nosuch": good["unified"]}),
                       lambda cg: cg.update(v1={"memory": good["unified"]}),
                       lambda cg: cg.update(id="other"),
                       lambda cg: cg.update(name="other"),
                       lambda cg: cg.update(v1="junk")):
            # (The cgroup record holds no limits: the config's are checked on their own.)
            def forge(d, change=change):
                d["cgroups"] = json.loads(json.dumps(good))
                change(d["cgroups"])
            rewrite(factory, "forged", forge)
            with pytest.raises(StateInvalidError):
                f.load("forged")
        # The record as written loads.
        rewrite(factory, "forged", lambda d: d.update(cgroups=good))
        assert f.load("forged").run_state() == pc.RunState.CREATED
    finally:
        rewrite(factory, "forged", lambda d: d.update(cgroups=good))
        c.destroy()


def test_cgroup_parent_records_load_and_are_checked(factory, busybox_rootfs):
    """Containers under an absolute and a relative Config.cgroup_parent load; a record
    moving them below another parent does not."""
    own = unified().own.rstrip("/")
    tag = f"sec-parent-{os.getpid()}"
    for parent in (f"{own}/pycontainer/{tag}", f"pycontainer/{tag}"):
        c = factory.create("p", pc.Config(rootfs=busybox_rootfs, cgroup_parent=parent))
        good = c.internal.cgroups.to_record()
        dirs = {d for d in [good["unified"], *good["v1"].values()] if d}
        try:
            assert pc.Factory(factory.root).load("p").run_state() == pc.RunState.CREATED
            for moved in (good["unified"].replace(f"/{tag}/", f"/{tag}-x/"),
                          good["unified"].replace(f"/{tag}/", "/")):
                rewrite(factory, "p", lambda d: d["cgroups"].update(unified=moved))
                with pytest.raises(StateInvalidError):
                    pc.Factory(factory.root).load("p")
        finally:
            rewrite(factory, "p", lambda d: d.update(cgroups=good))
            c.destroy()
            for d in dirs:               # the parent stays after destroy (shared): ours
                os.rmdir(os.path.dirname(d))


def test_cgroup_path_records_load_and_are_checked(factory, busybox_rootfs):
    """Containers at an exact absolute and relative Config.cgroup_path load; a record
    moving them elsewhere, or disagreeing with the config on being at an exact path,
    does not."""
    own = unified().own.rstrip("/")
    tag = f"sec-path-{os.getpid()}"
    for path in (f"{own}/{tag}/ctr", f"{tag}/ctr"):
        c = factory.create("p", pc.Config(rootfs=busybox_rootfs, cgroup_path=path))
        good = c.internal.cgroups.to_record()
        assert good["unified"] == unified().dir_of(f"{own}/{tag}/ctr")
        try:
            assert pc.Factory(factory.root).load("p").run_state() == pc.RunState.CREATED
            for forge in (lambda d: d["cgroups"].update(unified=good["unified"] + "x"),
                          lambda d: d["cgroups"].update(
                              unified=good["unified"].replace(f"/{tag}/", "/")),
                          lambda d: d["cgroups"].pop("exact"),
                          lambda d: d["config"].pop("cgroup_path")):
                rewrite(factory, "p", lambda d: d.update(cgroups=json.loads(json.dumps(good))))
                rewrite(factory, "p", forge)
                with pytest.raises(StateInvalidError):
                    pc.Factory(factory.root).load("p")
        finally:
            rewrite(factory, "p", lambda d: (d.update(cgroups=good),
                                             d["config"].update(cgroup_path=path)))
            c.destroy()
            for h in [cgroups.detect().unified, *cgroups.detect().v1.values()]:
                d = h.dir_of(f"{h.own.rstrip('/')}/{tag}" if not path.startswith("/")
                             else f"{own}/{tag}")
                if os.path.isdir(d):
                    os.rmdir(d)


def test_cgroup_path_of_someone_elses_cgroup(factory, busybox_rootfs, victims):
    """A cgroup the runtime did not make is never taken over at an exact path: create
    refuses it (EBUSY) before making anything, and a manager whose create() lost the
    race to it leaves it alone when destroyed."""
    h = unified()
    path = f"{h.own.rstrip('/')}/sec-exact-{os.getpid()}"
    v = victims(h.dir_of(path))
    with pytest.raises(pc.ContainerSystemError) as ei:
        factory.create("taker", pc.Config(rootfs=busybox_rootfs, cgroup_path=path))
    assert ei.value.errno == errno.EBUSY and path in str(ei.value)
    assert factory.list() == [] and v.intact()
    m = cgroups.new_manager("taker", path=path)
    with pytest.raises(pc.ContainerSystemError) as ei:
        m.create()
    assert ei.value.errno == errno.EBUSY
    m.destroy()
    assert v.intact()


# --- a symlink planted as a state directory ---------------------------------------------

def plant(root, cid, target):
    os.makedirs(root, mode=0o700, exist_ok=True)
    os.symlink(target, os.path.join(root, cid))


def bait(tmp_path):
    """A directory that looks like a state directory: state.json a file, and a directory."""
    target = tmp_path / "bait"
    target.mkdir()
    (target / STATE_FILE).write_text('{"id": "planted"}')
    (target / "sub").mkdir()
    (target / "sub" / "keep").write_text("keep")
    return target


def bait_intact(target):
    return (target / STATE_FILE).read_text() == '{"id": "planted"}' and \
        (target / "sub" / "keep").read_text() == "keep"


def test_planted_symlink_library(factory, tmp_path):
    target = bait(tmp_path)
    plant(factory.root, "planted", str(target))
    f = pc.Factory(factory.root)
    with pytest.raises(StateInvalidError) as ei:
        f.load("planted")
    assert "planted" in str(ei.value) and "symlink" in str(ei.value)
    assert "planted" in f.list_broken()
    f.destroy("planted")
    assert bait_intact(target)
    assert not os.path.lexists(os.path.join(factory.root, "planted"))


def test_planted_symlink_to_a_state_json_directory(factory, tmp_path):
    """The link's target holds state.json as a directory (once removed recursively)."""
    target = tmp_path / "bait2"
    (target / STATE_FILE).mkdir(parents=True)
    (target / STATE_FILE / "keep").write_text("keep")
    plant(factory.root, "planted", str(target))
    pc.Factory(factory.root).destroy("planted")
    assert (target / STATE_FILE / "keep").read_text() == "keep"


def test_planted_symlink_cli(factory, tmp_path):
    target = bait(tmp_path)
    plant(factory.root, "planted", str(target))
    r = cli(factory.root, "state", "planted")
    assert r.returncode != 0 and "planted" in r.stderr and "symlink" in r.stderr, r
    r = cli(factory.root, "list")
    assert r.returncode == 0 and "planted" in r.stderr, r       # a warning, not a row
    r = cli(factory.root, "delete", "--force", "planted")
    assert r.returncode == 0, r
    assert bait_intact(target)
    assert os.listdir(factory.root) == []


def test_state_directory_owned_by_someone_else_is_refused(factory, busybox_rootfs):
    factory.create("theirs", pc.Config(rootfs=busybox_rootfs))
    os.chown(os.path.join(factory.root, "theirs"), NOBODY, NOBODY)
    f = pc.Factory(factory.root)
    with pytest.raises(StateInvalidError) as ei:
        f.load("theirs")
    assert "owned by uid 65534" in str(ei.value)
    f.destroy("theirs")
    assert os.listdir(factory.root) == []


# --- the state root ------------------------------------------------------------------------

def test_new_state_root_is_0700_and_ours(tmp_path, leak_check, busybox_rootfs):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    old = os.umask(0)                   # a permissive umask must not widen it
    try:
        f = pc.Factory(str(tmp_path / "a" / "run"))
        f.create("x", pc.Config(rootfs=busybox_rootfs)).destroy()
    finally:
        os.umask(old)
    st = os.stat(f.root)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "sticky 1777",
                                 "owned by nobody", "a symlink"])
def test_unsafe_state_root_is_refused(tmp_path, busybox_rootfs, leak_check, how):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = str(tmp_path / "run")
    if how == "a symlink":
        os.mkdir(tmp_path / "real", 0o700)
        os.symlink(tmp_path / "real", root)
    else:
        os.mkdir(root, 0o700)
        if how == "owned by nobody":
            os.chown(root, NOBODY, NOBODY)
        else:
            os.chmod(root, {"group-writable": 0o770, "world-writable": 0o777,
                            "sticky 1777": 0o1777}[how])
    f = pc.Factory(root)
    for op in (lambda: f.create("x", pc.Config(rootfs=busybox_rootfs)), lambda: f.load("x"),
               f.list, lambda: f.destroy("x")):
        with pytest.raises(pc.ContainerSystemError) as ei:
            op()
        assert root in str(ei.value), str(ei.value)
    assert os.listdir(os.path.realpath(root)) == []
    r = cli(root, "list")
    assert r.returncode != 0 and root in r.stderr, r
    r = cli(root, "delete", "--force", "x")
    assert r.returncode != 0 and root in r.stderr, r


# --- item 10: unprivileged delete, concurrent deletes, start racing exit ------------------

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.fixture
def public_package():
    """The package (and pyseccomp) copied where nobody can read it: the interpreter
    running the tests may live under /root."""
    base = tempfile.mkdtemp(prefix="pyc-sec-state-")
    try:
        os.chmod(base, 0o755)
        shutil.copytree(os.path.join(REPO, "pycontainer"), os.path.join(base, "pycontainer"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        import pyseccomp
        shutil.copy2(pyseccomp.__file__, base)
        subprocess.run(["chmod", "-R", "a+rX", base], check=True)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(pkg, *args):
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-i",
         f"PYTHONPATH={pkg}", "PATH=/usr/bin:/bin", PY, "-m", "pycontainer", *args],
        capture_output=True, text=True, timeout=60, cwd="/", stdin=subprocess.DEVNULL)


def test_unprivileged_delete_of_roots_container_fails(busybox_rootfs, leak_check,
                                                       public_package):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    probe = as_nobody(public_package, "--version")
    if probe.returncode != 0:
        pytest.skip(f"{PY} cannot import the package as nobody: {probe.stderr[-300:]}")
    base = tempfile.mkdtemp(prefix="pyc-sec-root-")
    try:
        os.chmod(base, 0o755)             # nobody may reach the root, not into it
        f = pc.Factory(os.path.join(base, "run"))
        c = f.create("mine", pc.Config(rootfs=busybox_rootfs))
        try:
            for args in (["delete", "--force", "mine"], ["delete", "mine"], ["kill", "mine"],
                         ["state", "mine"], ["list"]):
                r = as_nobody(public_package, "--root", f.root, *args)
                assert r.returncode != 0, (args, r)
                assert "Permission denied" in r.stderr or "EACCES" in r.stderr, (args, r)
                assert f.root in r.stderr, (args, r)
            assert f.load("mine").run_state() == pc.RunState.CREATED
        finally:
            c.destroy()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_concurrent_force_deletes_all_succeed(factory, busybox_rootfs):
    for _ in range(6):
        c = factory.create("busy", pc.Config(rootfs=busybox_rootfs))
        _, exits = c.start(pc.ProcessConfig(args=["sleep", "1000"]))
        procs = [subprocess.Popen([sys.executable, "-m", "pycontainer", "--root", factory.root,
                                   "delete", "--force", "busy"], cwd=REPO, env=ENV, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL) for _ in range(8)]
        results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert [r for r in results if r[0] != 0] == []
        assert exits.get(timeout=10) == -signal.SIGKILL
        assert factory.list() == [] and os.listdir(factory.root) == []


def _join_start(c):
    _, exits = c.start(pc.ProcessConfig(args=["/bin/true"]))
    return exits.get(timeout=10)


def _join_hook(c):
    return c.run_hook(["/bin/true"])[0]


@pytest.mark.parametrize("join", [_join_start, _join_hook], ids=["start", "run_hook"])
def test_join_racing_the_inits_exit(factory, busybox_rootfs, join):
    """A join (a process, or a hook) that loses the race with the init's exit is
    ContainerNotRunningError, never a raw setns/clone error (or a TypeError). Inits that
    live from 0 to 10 ms sweep the join across the exit; both outcomes must happen for the
    test to mean anything."""
    c = factory.create("race", pc.Config(rootfs=busybox_rootfs))
    seen = collections.Counter()
    try:
        for i in range(400):
            life = f"{(i % 20) * 0.0005:.4f}"
            _, init_exits = c.start(pc.ProcessConfig(args=["/bin/sleep", life]))
            try:
                status = join(c)
            except pc.ContainerNotRunningError as exc:
                assert "race" in str(exc)
                seen["not running"] += 1
            else:
                # Started in time; the init's exit may then end the pid namespace, and it.
                assert status in (0, -signal.SIGKILL)
                seen["joined"] += 1
            init_exits.get(timeout=10)
            if seen["not running"] >= 5 and seen["joined"] >= 5:
                break
    finally:
        c.destroy()
    assert seen["joined"] > 0 and seen["not running"] > 0, dict(seen)

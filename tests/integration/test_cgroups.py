"""CgroupManager against the real kernel, as root, with real processes.

Every test runs twice: mode "auto" (on the test host: hybrid, v1 dirs for limits and
stats, the cgroup2 dir for placement, freeze and kill) and mode "v1"
(PYCONTAINER_CGROUP_MODE=v1: the cgroup2 mount is ignored, so the v1 freezer, the
freeze + SIGKILL + thaw kill and cgroup.procs of a v1 dir are exercised).

Container ids carry a per-test prefix; the `cg` fixture destroys every manager and
process a test made, even when it fails, then asserts no cgroup with that prefix is left
below any `pycontainer` parent. (Other tests may use the shared parents concurrently, so
only this test's names are checked.)
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from pycontainer import cgroups
from pycontainer.config import Resources
from pycontainer.errors import ContainerSystemError
from helpers import wait_for  # noqa: E402  (tests/helpers.py)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")

PY = sys.executable
MB = 1 << 20


# --- fixtures and helpers -------------------------------------------------------------

@pytest.fixture(params=["auto", "v1"])
def mode(request, monkeypatch):
    monkeypatch.setenv("PYCONTAINER_CGROUP_MODE", request.param)
    cgroups.detect.cache_clear()
    yield request.param
    cgroups.detect.cache_clear()


class Harness:
    """What one test made: managers, processes, extra dirs; cleanup() removes them all."""

    def __init__(self):
        self.prefix = f"t-{uuid.uuid4().hex[:12]}"
        self.managers, self.procs, self.extra_dirs = [], [], []

    def manager(self, suffix="c", resources=None, container_id=None):
        m = cgroups.new_manager(container_id or f"{self.prefix}-{suffix}", resources=resources)
        self.managers.append(m)
        return m

    def spawn(self, code, *args, pass_fds=()):
        """A Python child running `code`, with pipes to talk to it."""
        p = subprocess.Popen([PY, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, pass_fds=pass_fds, text=True)
        self.procs.append(p)
        return p

    def sleeper(self):
        p = subprocess.Popen(["sleep", "100"])
        self.procs.append(p)
        return p

    def cleanup(self):
        problems = []
        for m in self.managers:
            try:
                m.destroy()
            except Exception as exc:        # keep going: report every failure at the end
                problems.append(f"destroy {m}: {exc}")
        for p in self.procs:
            if p.poll() is None:
                problems.append(f"process {p.args} still running after destroy")
                p.kill()
            p.wait(timeout=10)
            for f in (p.stdin, p.stdout):
                if f:
                    f.close()
        for d in reversed(self.extra_dirs):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
        left = self.leftover_dirs()
        for d in sorted(left, key=len, reverse=True):
            os.rmdir(d)
        assert not problems and not left, (problems, left)

    def leftover_dirs(self):
        """Dirs below the `pycontainer` parents named after this test's containers."""
        names = {m.name for m in self.managers}
        found = []
        for parent in default_parents():
            if not os.path.isdir(parent):
                continue
            for entry in os.listdir(parent):
                top = os.path.join(parent, entry)
                if (entry.startswith(self.prefix) or entry in names) and os.path.isdir(top):
                    found += [root for root, _, _ in os.walk(top)]
        return found


def auto_host():
    """The host as mode "auto" sees it: every v1 hierarchy and the cgroup2."""
    return cgroups.build_host(open("/proc/self/mountinfo").read(),
                              open("/proc/self/cgroup").read(), "auto")


def default_parents():
    """The `pycontainer` parent of every hierarchy of this host, whatever the mode."""
    host = auto_host()
    hierarchies = set(host.v1.values()) | ({host.unified} if host.unified else set())
    return [h.dir_of(f"{h.own}/{cgroups.DEFAULT_PARENT}") for h in hierarchies]


@pytest.fixture
def cg(mode):
    h = Harness()
    yield h
    h.cleanup()


def place(m, pid):
    """Move `pid` into the container the way a new process joins it: through the fds of
    placement() (cgroup.procs accepts any pid, not only 0 = the writer)."""
    v2_fd, fds = m.placement()
    try:
        if v2_fd >= 0:
            fd = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=v2_fd)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        for fd in fds:
            os.write(fd, str(pid).encode())
    finally:
        for fd in fds + ([v2_fd] if v2_fd >= 0 else []):
            os.close(fd)


def all_dirs(m):
    """Every container dir, from the record (which must hold every path)."""
    rec = m.to_record()
    dirs = [rec["unified"]] if rec["unified"] else []
    return dirs + [d for d in dict.fromkeys(rec["v1"].values()) if d not in dirs]


def placement_dir(m):
    """Where the container's processes are counted: the cgroup2 dir, else the v1 freezer."""
    rec = m.to_record()
    return rec["unified"] or rec["v1"]["freezer"]


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])        # utime + stime


def read(path):
    return open(path).read().strip()


# Child programs. Each waits for a line on stdin, sent once the parent placed it.
BUSY = "import sys\nsys.stdin.readline()\nwhile True: pass\n"
WORK = """\
import sys, time
sys.stdin.readline()
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
data = b"\\1" * (24 << 20)            # touched pages: charged to the memory cgroup
print("ready", flush=True)
time.sleep(100)
"""
FORKER = """\
import os, sys, time
sys.stdin.readline()
made, err = 0, 0
for _ in range(5):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(100)
        os._exit(0)
    made += 1
print(made, err, flush=True)
time.sleep(100)
"""
HOG = """\
import sys
sys.stdin.readline()
chunks = []
while True:
    chunks.append(b"\\1" * (1 << 20))
"""
# Joins the cgroups itself by writing "0" (= the writer) to the placement fds, then forks.
SELF_JOIN = """\
import os, sys, time
v2_fd, fds = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
if v2_fd >= 0:
    fd = os.open("cgroup.procs", os.O_WRONLY, dir_fd=v2_fd)
    os.write(fd, b"0")
    os.close(fd)
for fd in fds:
    os.write(fd, b"0")
for _ in range(3):
    if os.fork() == 0:
        time.sleep(100)
        os._exit(0)
print("ready", flush=True)
time.sleep(100)
"""


def start(h, m, code):
    p = h.spawn(code)
    place(m, p.pid)
    p.stdin.write("go\n")
    p.stdin.flush()
    return p


# --- lifecycle ------------------------------------------------------------------------

def test_create_place_destroy(cg, mode):
    m = cg.manager()
    m.create()
    rec = m.to_record()
    assert (rec["unified"] is not None) == (mode == "auto")
    assert ("freezer" in rec["v1"]) == (mode == "v1")
    for d in all_dirs(m):
        assert os.path.isdir(d)
    assert read(os.path.join(m.v1["cpuset"], "cpuset.cpus")) == \
        read(os.path.join(os.path.dirname(m.v1["cpuset"]), "cpuset.cpus"))
    p = cg.sleeper()
    place(m, p.pid)
    assert m.pids() == [p.pid]
    proc_cgroup = open(f"/proc/{p.pid}/cgroup").read()
    assert proc_cgroup.count(f"/pycontainer/{m.name}\n") == len(all_dirs(m))
    m.destroy()
    assert p.wait(timeout=5) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in all_dirs(m))
    m.destroy()                                              # idempotent


def test_destroy_never_created(cg, mode):
    m = cg.manager()
    m.destroy()
    m.destroy()


def test_record_round_trip_manages_the_same_cgroups(cg, mode):
    m = cg.manager(resources=Resources(pids_limit=50))
    m.create()
    p = cg.sleeper()
    place(m, p.pid)
    again = cgroups.load_manager(json.loads(json.dumps(m.to_record())))
    assert again.pids() == [p.pid]
    assert again.stats().pids_stats.limit == 50
    again.destroy()
    assert p.wait(timeout=5) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in all_dirs(m))


def test_id_with_dots_is_hashed(cg, mode):
    m = cg.manager(container_id=f"{cg.prefix}.with.dots")
    assert m.name.startswith("pc-")
    m.create()
    assert all(os.path.basename(d) == m.name for d in all_dirs(m))
    m.destroy()
    assert not any(os.path.exists(d) for d in all_dirs(m))


def test_process_joins_by_writing_zero(cg, mode):
    m = cg.manager()
    m.create()
    v2_fd, fds = m.placement()
    try:
        p = cg.spawn(SELF_JOIN, v2_fd, *fds, pass_fds=fds + ([v2_fd] if v2_fd >= 0 else []))
    finally:
        for fd in fds + ([v2_fd] if v2_fd >= 0 else []):
            os.close(fd)
    assert p.stdout.readline() == "ready\n"
    pids = m.pids()
    assert len(pids) == 4 and p.pid in pids                 # the child and its 3 forks
    m.kill_all(timeout=5)
    assert m.pids() == []
    assert p.wait(timeout=5) == -signal.SIGKILL


# --- freezer --------------------------------------------------------------------------

def test_freeze_and_thaw(cg, mode):
    m = cg.manager()
    m.create()
    assert m.freezer_state() == "THAWED"
    p = start(cg, m, BUSY)
    assert wait_for(lambda: cpu_ticks(p.pid) > 0)
    m.freeze()
    assert m.freezer_state() in ("FREEZING", "FROZEN")
    assert wait_for(lambda: m.freezer_state() == "FROZEN")
    before = cpu_ticks(p.pid)
    time.sleep(0.1)
    assert cpu_ticks(p.pid) == before                       # frozen: no cpu time at all
    m.freeze()                                               # no-op when frozen
    assert m.freezer_state() == "FROZEN"
    m.thaw()
    assert m.freezer_state() == "THAWED"
    assert wait_for(lambda: cpu_ticks(p.pid) > before)
    m.thaw()
    assert m.freezer_state() == "THAWED"


def test_freeze_of_missing_cgroup_names_the_file(cg, mode):
    m = cg.manager()
    with pytest.raises(ContainerSystemError) as e:
        m.freeze()
    assert e.value.errno == errno.ENOENT
    assert ("cgroup.freeze" if mode == "auto" else "freezer.state") in str(e.value)
    assert m.name in str(e.value)


# --- kill -----------------------------------------------------------------------------

def test_kill_all_includes_sub_cgroups(cg, mode):
    m = cg.manager()
    m.create()
    ps = [cg.sleeper() for _ in range(3)]
    for p in ps:
        place(m, p.pid)
    # A container may make cgroups of its own below its cgroup.
    sub = os.path.join(placement_dir(m), "sub")
    os.mkdir(sub)
    with open(os.path.join(sub, "cgroup.procs"), "w") as f:
        f.write(str(ps[0].pid))
    assert m.pids() == sorted(p.pid for p in ps)
    start_time = time.monotonic()
    m.kill_all(timeout=5)
    assert time.monotonic() - start_time < 2
    assert m.pids() == []
    assert [p.wait(timeout=5) for p in ps] == [-signal.SIGKILL] * 3
    m.kill_all(timeout=0)                                    # empty: returns at once
    m.destroy()
    assert not os.path.exists(sub)


def test_kill_all_of_a_frozen_container(cg, mode):
    m = cg.manager()
    m.create()
    p = start(cg, m, BUSY)
    m.freeze()
    assert wait_for(lambda: m.freezer_state() == "FROZEN")
    m.kill_all(timeout=5)
    assert m.pids() == []
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_kill_all_times_out_on_an_unkillable_process(cg, mode):
    """A task frozen by a v1 freezer cgroup outside the container's control cannot act on
    SIGKILL until thawed. auto: the freezer hierarchy is not the manager's; v1: a frozen
    sub-cgroup of the container's freezer dir stays frozen when the manager thaws."""
    m = cg.manager()
    m.create()
    p = cg.sleeper()
    place(m, p.pid)
    if mode == "auto":
        os.makedirs(default_freezer_parent(), exist_ok=True)   # a parent that may stay
        hold = os.path.join(default_freezer_parent(), f"{cg.prefix}-hold")
        os.mkdir(hold)
        cg.extra_dirs.append(hold)
    else:
        hold = os.path.join(m.v1["freezer"], "hold")
        os.mkdir(hold)
    with open(os.path.join(hold, "cgroup.procs"), "w") as f:
        f.write(str(p.pid))
    with open(os.path.join(hold, "freezer.state"), "w") as f:
        f.write("FROZEN")
    try:
        with pytest.raises(ContainerSystemError) as e:
            m.kill_all(timeout=0.2)
        assert e.value.errno == errno.ETIMEDOUT
        assert placement_dir(m) in str(e.value)
        assert m.pids() == [p.pid]
    finally:
        with open(os.path.join(hold, "freezer.state"), "w") as f:
            f.write("THAWED")
    assert p.wait(timeout=5) == -signal.SIGKILL              # the pending SIGKILL lands
    m.destroy()


def default_freezer_parent():
    h = auto_host().v1["freezer"]
    return h.dir_of(f"{h.own}/{cgroups.DEFAULT_PARENT}")


# --- resources ------------------------------------------------------------------------

def test_resources_are_written(cg, mode):
    res = Resources(memory_limit=64 * MB, memory_swap=128 * MB, cpu_shares=512,
                    cpu_quota=50000, cpu_period=100000, cpuset_cpus="0", pids_limit=10)
    m = cg.manager(resources=res)
    m.create()
    mem, cpu = m.v1["memory"], m.v1["cpu"]
    assert read(f"{mem}/memory.limit_in_bytes") == str(64 * MB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(128 * MB)
    assert read(f"{cpu}/cpu.shares") == "512"
    assert read(f"{cpu}/cpu.cfs_quota_us") == "50000"
    assert read(f"{cpu}/cpu.cfs_period_us") == "100000"
    assert read(f"{m.v1['cpuset']}/cpuset.cpus") == "0"
    assert read(f"{m.v1['pids']}/pids.max") == "10"
    # Lowering memsw below the current memory limit needs limit-first ...
    m.set_resources(Resources(memory_limit=32 * MB, memory_swap=48 * MB))
    assert read(f"{mem}/memory.limit_in_bytes") == str(32 * MB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(48 * MB)
    # ... raising the limit above the current memsw needs memsw-first.
    m.set_resources(Resources(memory_limit=256 * MB, memory_swap=512 * MB))
    assert read(f"{mem}/memory.limit_in_bytes") == str(256 * MB)
    assert read(f"{mem}/memory.memsw.limit_in_bytes") == str(512 * MB)
    m.set_resources(Resources(memory_swap=-1, cpu_quota=-1, pids_limit=-1))
    assert int(read(f"{mem}/memory.memsw.limit_in_bytes")) > 1 << 60
    assert read(f"{cpu}/cpu.cfs_quota_us") == "-1"
    assert read(f"{m.v1['pids']}/pids.max") == "max"
    # The manager keeps the last limits (pids_full) but does not record them: the Config does.
    assert m.resources == Resources(memory_swap=-1, cpu_quota=-1, pids_limit=-1)
    assert "resources" not in m.to_record()


def test_bad_value_fails_create_and_leaves_nothing(cg, mode):
    # cpuset comes after blkio, cpu and cpuacct (and the cgroup2 dir): those are made
    # before the failing write and must be removed again.
    m = cg.manager(resources=Resources(pids_limit=5, cpuset_cpus="0-4095"))
    with pytest.raises(ContainerSystemError) as e:
        m.create()
    assert e.value.errno in (errno.EINVAL, errno.ERANGE)    # 6.x says ERANGE for cpus >= nr_cpu_ids
    msg = str(e.value)
    assert f"write '0-4095' to {m.v1['cpuset']}/cpuset.cpus" in msg and m.container_id in msg
    assert not any(os.path.exists(d) for d in all_dirs(m))


def test_bad_value_in_set_resources_names_the_file(cg, mode):
    m = cg.manager(resources=Resources(cpuset_cpus="0"))
    m.create()
    with pytest.raises(ContainerSystemError) as e:
        m.set_resources(Resources(cpuset_cpus="0-4095"))
    assert e.value.errno in (errno.EINVAL, errno.ERANGE) and "cpuset.cpus" in str(e.value)
    assert read(f"{m.v1['cpuset']}/cpuset.cpus") == "0"
    assert m.resources == Resources(cpuset_cpus="0")


def test_create_twice_is_eexist_and_keeps_the_first(cg, mode):
    m = cg.manager()
    m.create()
    p = cg.sleeper()
    place(m, p.pid)
    twin = cgroups.new_manager(m.container_id)
    with pytest.raises(ContainerSystemError) as e:
        twin.create()
    assert e.value.errno == errno.EEXIST and all_dirs(m)[0] in str(e.value)
    assert all(os.path.isdir(d) for d in all_dirs(m))
    assert m.pids() == [p.pid]


def test_pids_limit_is_enforced(cg, mode):
    m = cg.manager(resources=Resources(pids_limit=3))
    m.create()
    p = start(cg, m, FORKER)
    made, err = map(int, p.stdout.readline().split())
    assert (made, err) == (2, errno.EAGAIN)                  # the child itself is the third
    assert m.stats().pids_stats.current == 3
    assert m.stats().pids_stats.limit == 3


def test_oom_kill_is_counted(cg, mode):
    # No memory_swap: with memsw == limit, 6.18 charges memsw first, fails there and
    # counts no failcnt at all (neither memory.failcnt nor memory.memsw.failcnt).
    m = cg.manager(resources=Resources(memory_limit=32 * MB))
    m.create()
    assert m.oom_kill_count() == 0
    p = start(cg, m, HOG)
    assert p.wait(timeout=10) == -signal.SIGKILL
    assert m.oom_kill_count() >= 1
    assert m.stats().memory_stats.oom_kills >= 1
    mem = m.stats().memory_stats
    assert mem.usage.max_usage == 32 * MB and mem.usage.failcnt > 0


# --- placement ------------------------------------------------------------------------

def test_placement_of_missing_cgroup_fails_and_leaks_no_fd(cg, mode):
    m = cg.manager()
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ContainerSystemError) as e:
        m.placement()
    assert e.value.errno == errno.ENOENT and all_dirs(m)[0] in str(e.value)
    # Half-made: the first dir exists, a later one is missing.
    os.mkdir(all_dirs(m)[0])
    cg.extra_dirs.append(all_dirs(m)[0])
    with pytest.raises(ContainerSystemError) as e:
        m.placement()
    assert all_dirs(m)[1] in str(e.value)
    assert set(os.listdir("/proc/self/fd")) == before


def test_placement_fds(cg, mode):
    m = cg.manager()
    m.create()
    v2_fd, fds = m.placement()
    try:
        assert (v2_fd >= 0) == (mode == "auto")
        expected = [d for d in all_dirs(m) if d != m.unified]
        assert [os.readlink(f"/proc/self/fd/{fd}") for fd in fds] == \
            [f"{d}/cgroup.procs" for d in expected]
        for fd in fds + ([v2_fd] if v2_fd >= 0 else []):
            assert os.get_inheritable(fd) is False
        if v2_fd >= 0:
            assert os.readlink(f"/proc/self/fd/{v2_fd}") == m.unified
    finally:
        for fd in fds + ([v2_fd] if v2_fd >= 0 else []):
            os.close(fd)


# --- statistics -----------------------------------------------------------------------

def test_stats_of_a_busy_process(cg, mode):
    m = cg.manager(resources=Resources(memory_limit=256 * MB))
    m.create()
    p = start(cg, m, WORK)
    assert p.stdout.readline() == "ready\n"
    s = m.stats()
    cpu = s.cpu_stats.cpu_usage
    assert cpu.total_usage >= 0.25e9
    assert cpu.usage_in_usermode > 0
    assert len(cpu.percpu_usage) == os.cpu_count()
    assert abs(sum(cpu.percpu_usage) - cpu.total_usage) < 0.01e9
    mem = s.memory_stats
    assert mem.usage.usage >= 24 * MB and mem.usage.max_usage >= mem.usage.usage
    assert mem.usage.limit == 256 * MB
    assert mem.stats["rss"] >= 24 * MB or mem.stats.get("total_rss", 0) >= 24 * MB
    assert s.pids_stats.current == 1 and s.pids_stats.limit == cgroups.MAX
    assert isinstance(s.blkio_stats.io_service_bytes_recursive, list)


def test_cpu_quota_throttles(cg, mode):
    m = cg.manager(resources=Resources(cpu_quota=5000, cpu_period=50000))
    m.create()
    p = start(cg, m, BUSY)
    assert wait_for(lambda: m.stats().cpu_stats.throttling_data.throttled_periods >= 2)
    t = m.stats().cpu_stats.throttling_data
    assert t.periods >= t.throttled_periods and t.throttled_time > 0
    m.kill_all(timeout=5)
    assert p.wait(timeout=5) == -signal.SIGKILL


def test_relative_cgroup_parent_is_below_the_callers_own_cgroup(factory, busybox_rootfs):
    """Config(cgroup_parent="a/b"): <own cgroup>/a/b/<name> in every hierarchy, as runc
    takes a relative cgroupsPath (the CLI's --nest-cgroups makes absolute ones so)."""
    import pycontainer as pc
    from pycontainer.cgroups import detect
    parent = f"pc-test-rel-{os.getpid()}/sub"
    c = factory.create("rel", pc.Config(rootfs=busybox_rootfs, cgroup_parent=parent))
    host = detect()
    try:
        pid, _ = c.start(pc.ProcessConfig(args=["sleep", "100"]))
        own = {ctl: path for _, ctls, path in
               (line.rstrip("\n").split(":", 2) for line in open("/proc/self/cgroup"))
               for ctl in ctls.split(",")}
        theirs = {ctl: path for _, ctls, path in
                  (line.rstrip("\n").split(":", 2) for line in open(f"/proc/{pid}/cgroup"))
                  for ctl in ctls.split(",")}
        for ctl in ("memory", "pids", "freezer" if host.unified is None else ""):
            if ctl in host.v1:
                want = f"{own[ctl].rstrip('/')}/{parent}/"
                assert theirs[ctl].startswith(want), (ctl, theirs[ctl], want)
        if host.unified:
            assert theirs[""].startswith(f"{own[''].rstrip('/')}/{parent}/")
    finally:
        c.destroy()
        for h in [*host.v1.values(), *([host.unified] if host.unified else [])]:
            for d in (f"{h.own.rstrip('/')}/{parent}", f"{h.own.rstrip('/')}/{parent.split('/')[0]}"):
                try:
                    os.rmdir(h.dir_of(d))
                except FileNotFoundError:
                    pass


RECREATED_PARENT = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import helpers
assert helpers.isolate_cgroups()          # cgroups of this process's own: pytest-<pid>
import pycontainer as pc
factory = pc.Factory(sys.argv[2])

def once(cid):
    c = factory.create(cid, pc.Config())
    try:
        _, exits = c.start(pc.ProcessConfig(args=["/bin/true"]))
        assert exits.get(timeout=30) == 0
    finally:
        c.destroy()

try:
    once("a")
    removed = 0
    for h in helpers._hierarchies():      # an admin's cleanup: every default parent gone
        try:
            os.rmdir(h.dir_of(helpers._default_parent(h)))
            removed += 1
        except FileNotFoundError:         # a hierarchy this mode does not use
            pass
    assert removed
    once("b")                             # made again: its cpuset filled again
    print("ok")
finally:
    helpers.restore_cgroups()
"""


def test_a_default_parent_removed_and_made_again_takes_processes(mode, tmp_path):
    """The process-wide caches of prepared parents (their cpuset filled, clone_children
    on) must not outlive the directory: a `pycontainer` parent removed between two
    creates is made again, and a v1 cpuset made without its cpus and mems refuses every
    process (ENOSPC). In a process of its own, in cgroups of its own."""
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-c", RECREATED_PARENT, tests, str(tmp_path / "state")],
                       capture_output=True, text=True, timeout=120, cwd=os.path.dirname(tests))
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr

"""A hypothesis state machine over the whole Container interface, with a second Python
process that loads the same containers and starts, pauses, resumes and destroys them.

The model is the RunState each id should have (PAUSING counts as PAUSED once it settled),
how many processes each running container holds, and which ids are destroyed; after every
step the real containers must agree with it."""
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, rule,
                                 run_state_machine_as_test)

import pycontainer as pc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = st.sampled_from(["a", "b", "c"])
RS = pc.RunState
PR_SET_CHILD_SUBREAPER = 36

OTHER = r"""
import sys, pycontainer as pc
root, cid, op, program = sys.argv[1:5]
try:
    c = pc.Factory(root=root).load(cid)
    if op == "start":
        pid, exits = c.start(pc.ProcessConfig(args=program.split()))
        if program == "/bin/true":
            print("ok", exits.get(timeout=10))
        else:
            print("ok")          # an init: it outlives us
    else:
        getattr(c, op)()
        print("ok")
except pc.ContainerError as exc:
    print(type(exc).__name__, exc)
"""


def other_process(root, cid, op, program="-"):
    """Run one operation from another Python process; its first output word."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", OTHER, root, cid, op, program],
                       capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert p.returncode == 0, (p.stdout, p.stderr)
    return p.stdout.split()


def wait_state(c, state, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        now = c.run_state()
        if now == state:
            return
        assert time.monotonic() < deadline, f"{c.id}: {now}, expected {state}"
        time.sleep(0.002)


def reap_orphans(timeout=10.0):
    """Inits started by the helper process outlive it and are re-parented to us (we are a
    subreaper); reap them once they died. Returns when we have no such child left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


@contextlib.contextmanager
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        reap_orphans()


class Lifecycle(RuleBasedStateMachine):
    rootfs = None           # set by the test
    root = None

    def __init__(self):
        super().__init__()
        self.factory = pc.Factory(root=self.root)
        self.config = pc.Config(rootfs=self.rootfs, hostname="sm")
        self.objs = {}       # id -> Container, for ids the model says exist
        self.state = {}      # id -> expected RunState
        self.count = {}      # id -> expected number of processes
        self.queues = {}     # id -> exit queues of long-running processes we started
        self.gone = []       # Container objects of destroyed containers
        self.pool = None     # a Pool of self.config (create_two)
        self.parked = set()  # ids of pooled containers whose init is parked (not started)

    # -- helpers --

    def _expect_missing(self, cid, call):
        """The id does not exist: through a stale object or a fresh load, NotExist."""
        with pytest.raises(pc.ContainerNotExistError):
            obj = self._stale(cid)
            call(obj)

    def _stale(self, cid):
        for obj in reversed(self.gone):
            if obj.id == cid:
                return obj
        return self.factory.load(cid)       # raises ContainerNotExistError

    def _destroyed(self, cid):
        self.parked.discard(cid)
        self.gone.append(self.objs.pop(cid))
        del self.state[cid]
        del self.count[cid]
        for exits in self.queues.pop(cid):
            assert exits.get(timeout=10) == -signal.SIGKILL

    # -- rules --

    @initialize()
    def create_two(self):
        """Start with two containers so most steps act on one, "b" from a full pool; "c"
        waits for `create` or `create_pooled`."""
        self.pool = self.factory.pool(self.config, size=2)
        self.pool.wait_ready()
        self.create("a")
        self.create_pooled("b")
        assert "b" in self.parked

    @rule(cid=IDS)
    def create(self, cid):
        if cid in self.state:
            with pytest.raises(pc.IdInUseError):
                self.factory.create(cid, self.config)
            return
        c = self.factory.create(cid, self.config)
        assert c.id == cid
        assert c.run_state() == RS.CREATED
        self.objs[cid], self.state[cid], self.count[cid], self.queues[cid] = c, RS.CREATED, 0, []

    @rule(cid=IDS)
    def create_pooled(self, cid):
        """Pool.create: CREATED with its parked init as its one process; an empty pool
        makes it unpooled (then no process)."""
        if cid in self.state:
            with pytest.raises(pc.IdInUseError):
                self.pool.create(cid)
            return
        hits = self.pool.stats().hits
        c = self.pool.create(cid)
        assert c.id == cid and c.run_state() == RS.CREATED
        parked = self.pool.stats().hits > hits
        self.objs[cid], self.state[cid], self.queues[cid] = c, RS.CREATED, []
        self.count[cid] = 1 if parked else 0
        if parked:
            self.parked.add(cid)

    def _started(self, cid):
        self.parked.discard(cid)

    @rule(cid=IDS)
    def start_sleep(self, cid):
        """`sleep 1000`: the init of a created or stopped container, else a joined process."""
        process = pc.ProcessConfig(args=["sleep", "1000"])
        if cid not in self.state:
            self._expect_missing(cid, lambda c: c.start(process))
            return
        c, state = self.objs[cid], self.state[cid]
        if state == RS.PAUSED:
            with pytest.raises(pc.ContainerPausedError):
                c.start(process)
            return
        pid, exits = c.start(process)
        self._started(cid)
        self.queues[cid].append(exits)
        if state in (RS.CREATED, RS.STOPPED):
            self.state[cid], self.count[cid] = RS.RUNNING, 1
        else:
            self.count[cid] += 1
        assert pid in c.processes()

    @rule(cid=IDS)
    def start_true(self, cid):
        """`/bin/true`: joins a running container; as an init it exits and leaves STOPPED."""
        process = pc.ProcessConfig(args=["/bin/true"])
        if cid not in self.state:
            self._expect_missing(cid, lambda c: c.start(process))
            return
        c, state = self.objs[cid], self.state[cid]
        if state == RS.PAUSED:
            with pytest.raises(pc.ContainerPausedError):
                c.start(process)
            return
        pid, exits = c.start(process)
        self._started(cid)
        assert exits.get(timeout=10) == 0
        if state in (RS.CREATED, RS.STOPPED):
            wait_state(c, RS.STOPPED)
            self.state[cid], self.count[cid] = RS.STOPPED, 0

    @rule(cid=IDS)
    def pause(self, cid):
        if cid not in self.state:
            self._expect_missing(cid, lambda c: c.pause())
            return
        c, state = self.objs[cid], self.state[cid]
        if state in (RS.CREATED, RS.STOPPED):
            with pytest.raises(pc.ContainerNotRunningError):
                c.pause()
            return
        c.pause()
        assert c.run_state() in (RS.PAUSING, RS.PAUSED)
        wait_state(c, RS.PAUSED)
        self.state[cid] = RS.PAUSED

    @rule(cid=IDS)
    def resume(self, cid):
        if cid not in self.state:
            self._expect_missing(cid, lambda c: c.resume())
            return
        c, state = self.objs[cid], self.state[cid]
        if state in (RS.CREATED, RS.STOPPED):
            with pytest.raises(pc.ContainerNotRunningError):
                c.resume()
            return
        c.resume()
        assert c.run_state() == RS.RUNNING
        self.state[cid] = RS.RUNNING

    @rule(cid=IDS)
    def processes(self, cid):
        if cid not in self.state:
            self._expect_missing(cid, lambda c: c.processes())
            return
        pids = self.objs[cid].processes()
        assert len(pids) == self.count[cid]
        for pid in pids:
            assert os.path.exists(f"/proc/{pid}")

    @rule(cid=IDS)
    def stats(self, cid):
        if cid not in self.state:
            self._expect_missing(cid, lambda c: c.stats())
            return
        s = self.objs[cid].stats()
        assert isinstance(s, pc.ContainerStats)
        assert s.cgroup_stats.pids_stats.current == self.count[cid]
        if self.state[cid] in (RS.RUNNING, RS.PAUSED):
            assert [i.name for i in s.interfaces] == ["lo"]

    @rule(cid=IDS)
    def destroy(self, cid):
        if cid not in self.state:
            with contextlib.suppress(pc.ContainerNotExistError):
                self._stale(cid).destroy()       # a no-op, never an error
            return
        self.objs[cid].destroy()
        self._destroyed(cid)

    @rule(cid=IDS, op=st.sampled_from(["start", "pause", "resume", "destroy"]))
    def another_process(self, cid, op):
        state = self.state.get(cid)
        if op == "start" and state in (RS.CREATED, RS.STOPPED):
            program = "sleep 1000"
        elif op == "start":
            program = "/bin/true"
        else:
            program = "-"
        out = other_process(self.root, cid, op, program)
        if state is None:
            assert out[:1] == ["ContainerNotExistError"], out     # load() finds nothing
            return
        c = self.objs[cid]
        if op == "start":
            if state == RS.PAUSED:
                assert out[0] == "ContainerPausedError", out
            elif cid in self.parked:
                # Only the handle Pool.create returned holds the parked init's socket.
                assert out[0] == "ContainerNotRunningError", out
            elif program == "/bin/true":
                assert out == ["ok", "0"], out
            else:
                assert out == ["ok"], out
                self.state[cid], self.count[cid] = RS.RUNNING, 1
        elif op == "pause":
            if state in (RS.CREATED, RS.STOPPED):
                assert out[0] == "ContainerNotRunningError", out
            else:
                assert out == ["ok"], out
                wait_state(c, RS.PAUSED)
                self.state[cid] = RS.PAUSED
        elif op == "resume":
            if state in (RS.CREATED, RS.STOPPED):
                assert out[0] == "ContainerNotRunningError", out
            else:
                assert out == ["ok"], out
                self.state[cid] = RS.RUNNING
        else:
            assert out == ["ok"], out
            self._destroyed(cid)

    # -- invariants --

    @invariant()
    def states_match(self):
        for cid, c in self.objs.items():
            assert c.run_state() == self.state[cid], cid
            n = len(c.processes())
            assert n == self.count[cid], (cid, n, self.count[cid])
            if self.state[cid] in (RS.RUNNING, RS.PAUSED):
                assert n >= 1
            # another object for the same container agrees
            assert self.factory.load(cid).run_state() == self.state[cid]

    @invariant()
    def destroyed_is_gone_everywhere(self):
        assert sorted(self.factory.list()) == sorted(self.state)
        for c in self.gone[-4:]:
            if c.id in self.state:
                # a new container has the id; the old object still sees nothing
                assert self.objs[c.id] is not c
            with pytest.raises(pc.ContainerNotExistError):
                c.run_state()
            with pytest.raises(pc.ContainerNotExistError):
                c.processes()
            with pytest.raises(pc.ContainerNotExistError):
                c.pause()
            with pytest.raises(pc.ContainerNotExistError):
                c.start(pc.ProcessConfig(args=["/bin/true"]))
            c.destroy()                          # fine, and leaves a newer one alone

    @invariant()
    def no_state_dir_for_destroyed_ids(self):
        for cid in {"a", "b", "c"} - set(self.state):
            assert not os.path.exists(os.path.join(self.root, cid))

    @invariant()
    def nothing_broken(self):
        """The pool's parked sandboxes and the destroys its thread has yet to finish (in
        its root, .pool) are a live pool's, not leftovers."""
        assert self.factory.list_broken() == {}

    def teardown(self):
        for cid in list(self.objs):
            self.objs[cid].destroy()
            self._destroyed(cid)
        assert self.factory.list() == []
        self.pool.close()
        # close() destroyed the sandboxes and finished the destroys of pooled containers.
        assert os.listdir(os.path.join(self.root, ".pool")) == []
        assert self.factory.list_broken() == {}
        reap_orphans()


def test_lifecycle(factory, busybox_rootfs):
    Lifecycle.rootfs = busybox_rootfs
    Lifecycle.root = factory.root
    with subreaper():
        run_state_machine_as_test(Lifecycle, settings=settings(
            max_examples=15, stateful_step_count=15, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))
    assert factory.list() == []

"""The cgroup v2 OOM path of pycontainer.events (inotify IN_MODIFY on memory.events, count
the increases of oom_kill, end when the state directory goes), which the hybrid test host
cannot exercise for real (its cgroup2 has no memory controller). A regular file stands in
for memory.events: inotify reports its writes the same way; what the kernel writes into
the real file is not tested here."""
import os
import threading
import time

import pytest

from pycontainer import events
from pycontainer.cgroups import v2
from pycontainer.state import STATE_FILE, StateRecord, read_state, write_state


class _Cgroups:
    """The manager's event interface over the fake dir, with the real v2 OOM watch."""

    def __init__(self, d):
        self.d = d

    def oom_watch(self):
        return v2.OomWatch(self.d)

    def freezer_watch(self):
        return None


class _Internal:
    """Container.internal (the protocol events uses) over a state dir and a fake cgroup dir."""

    def __init__(self, state_dir, cgroup_dir):
        self.state_dir = state_dir
        self.cgroups = _Cgroups(cgroup_dir)

    def record(self, operation):
        return read_state(self.state_dir, "fake")

    def is_current(self, record):
        return record.nonce == "n1"


class _Container:
    def __init__(self, state_dir, cgroup_dir):
        self.id = "fake"
        self.internal = _Internal(state_dir, cgroup_dir)
        write_state(state_dir, StateRecord(id="fake", nonce="n1", created=0.0, config={},
                                           cgroups={}))


def _write_events(d, oom_kill):
    # As the kernel rewrites it: the whole file, in place (IN_MODIFY).
    with open(os.path.join(d, "memory.events"), "r+" if os.path.exists(
            os.path.join(d, "memory.events")) else "w") as f:
        f.seek(0)
        f.write(f"low 0\nhigh 0\nmax 3\noom 2\noom_kill {oom_kill}\noom_group_kill 0\n")
        f.truncate()


@pytest.fixture
def fake(tmp_path):
    state, cg = tmp_path / "state", tmp_path / "cg"
    state.mkdir()
    cg.mkdir()
    _write_events(str(cg), 5)             # kills before the subscription do not count
    return _Container(str(state), str(cg)), str(state), str(cg)


def _remove_state(state):
    os.unlink(os.path.join(state, STATE_FILE))
    os.rmdir(state)


def test_v2_notify_oom_counts_increases_and_ends_with_the_state_dir(fake):
    c, state, cg = fake
    q = events.notify_oom(c)
    _write_events(cg, 5)                  # a change of another field: no item
    _write_events(cg, 6)
    assert q.get(timeout=5) == 1
    _write_events(cg, 9)                  # three kills between two reads: three items
    assert [q.get(timeout=5) for _ in range(3)] == [2, 3, 4]
    _remove_state(state)                  # destroy removes the state dir last
    assert q.get(timeout=5) is None
    deadline = time.monotonic() + 5
    while any(t.name.startswith("pycontainer-oom") for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_v2_oom_in_the_event_stream(fake):
    c, state, cg = fake
    stream = events.EventStream(c, interval=60, stats=False)
    _write_events(cg, 7)
    assert [(e.type, e.data) for e in (next(stream), next(stream))] == [("oom", 1), ("oom", 2)]
    _remove_state(state)
    assert [e.type for e in stream] == ["destroyed"]

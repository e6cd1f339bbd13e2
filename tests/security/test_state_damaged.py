"""Issue 18, item 9: a damaged state entry never hangs or crashes a command.

A FIFO as state.json, a symlink to /dev/zero, deeply nested JSON and wrong-type cgroup
records (tests/reliability/test_hostile_input.py covers truncated, non-JSON and wrong-field
records through the library): `pycontainer list` lists the other containers and warns
about the damaged one on stderr, `pycontainer state ID` fails with an error naming the
container, and `pycontainer delete --force ID` removes the entry; Factory.list / load /
list_broken / destroy likewise. Each CLI call runs with a timeout, a guard only: the
assertions are on its result."""
import json
import os
import signal
import subprocess
import sys

import pytest

import pycontainer as pc
from pycontainer.state import STATE_FILE, StateInvalidError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
GUARD = 60          # seconds; a hang would be forever


def cli(root, *args):
    try:
        return subprocess.run([sys.executable, "-m", "pycontainer", "--root", root, *args],
                              capture_output=True, text=True, timeout=GUARD, cwd=REPO, env=ENV,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pycontainer {' '.join(args)} hung on a damaged state entry")


def _fifo(path):
    os.unlink(path)
    os.mkfifo(path, 0o600)


def _dev_zero(path):
    os.unlink(path)
    os.symlink("/dev/zero", path)


def _char_device(path):
    # Not reachable through a symlink: a device node itself (read until memory runs out).
    os.unlink(path)
    os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))      # /dev/zero's numbers


def _nested(path):
    with open(path, "w") as f:
        f.write("[" * 200000 + "]" * 200000)


def _cgroup_types(change):
    def corrupt(path):
        with open(path) as f:
            d = json.load(f)
        change(d["cgroups"])
        with open(path, "w") as f:
            json.dump(d, f)
    return corrupt


DAMAGE = {
    "fifo": _fifo,
    "symlink to /dev/zero": _dev_zero,
    "char device": _char_device,
    "deeply nested json": _nested,
    "cgroup unified a number": _cgroup_types(lambda cg: cg.update(unified=5)),
    "cgroup v1 a list of paths": _cgroup_types(lambda cg: cg.update(v1={"memory": ["/x"]})),
    "cgroup names none": _cgroup_types(lambda cg: cg.update(unified=None, v1={})),
}


@pytest.fixture
def damaged(factory, busybox_rootfs, request):
    """Two containers, "good" and "bad" (both with a running init); bad's state damaged."""
    good = factory.create("good", pc.Config(rootfs=busybox_rootfs))
    _, good_exits = good.start(pc.ProcessConfig(args=["sleep", "1000"]))
    bad = factory.create("bad", pc.Config(rootfs=busybox_rootfs))
    _, bad_exits = bad.start(pc.ProcessConfig(args=["sleep", "1000"]))
    DAMAGE[request.param](os.path.join(factory.root, "bad", STATE_FILE))
    yield factory, bad_exits
    good.destroy()
    assert good_exits.get(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_damaged_entry_cli(damaged):
    factory, bad_exits = damaged
    r = cli(factory.root, "list", "--format", "json")
    assert r.returncode == 0, r
    assert [d["id"] for d in json.loads(r.stdout)] == ["good"]
    assert "'bad'" in r.stderr, r.stderr                       # warned, not listed
    r = cli(factory.root, "list")
    assert r.returncode == 0 and "good" in r.stdout and "'bad'" in r.stderr, r
    r = cli(factory.root, "state", "bad")
    assert r.returncode == 1, r
    assert "container 'bad'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli(factory.root, "delete", "bad")
    assert r.returncode == 1 and "'bad'" in r.stderr and "Traceback" not in r.stderr, r
    r = cli(factory.root, "delete", "--force", "bad")
    assert r.returncode == 0, r
    assert sorted(os.listdir(factory.root)) == ["good"]
    # Its init went with its cgroups (create put them where a damaged record cannot hide).
    assert bad_exits.get(timeout=10) == -signal.SIGKILL
    r = cli(factory.root, "list", "-q")
    assert r.returncode == 0 and r.stdout.split() == ["good"] and not r.stderr, r


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_damaged_entry_library(damaged):
    factory, bad_exits = damaged
    f = pc.Factory(factory.root)
    assert f.list() == ["bad", "good"]
    with pytest.raises(StateInvalidError) as ei:
        f.load("bad")
    assert "'bad'" in str(ei.value)
    assert list(f.list_broken()) == ["bad"]
    f.destroy("bad")
    assert bad_exits.get(timeout=10) == -signal.SIGKILL
    assert f.list() == ["good"] and f.list_broken() == {}
    f.destroy("bad")                                   # idempotent


def test_state_file_size_is_capped(factory, busybox_rootfs):
    """A record over the cap is refused on write (create fails and leaves nothing), and a
    file over it is not read."""
    from pycontainer.state import STATE_MAX
    big = pc.Config(rootfs=busybox_rootfs, env=("A=" + "x" * (STATE_MAX + 1),))
    with pytest.raises(pc.ContainerError) as ei:
        factory.create("big", big)
    assert "big" in str(ei.value)
    assert os.listdir(factory.root) == []
    factory.create("big", pc.Config(rootfs=busybox_rootfs))
    with open(os.path.join(factory.root, "big", STATE_FILE), "r+b") as f:
        f.truncate(STATE_MAX + 1)
    with pytest.raises(StateInvalidError) as ei:
        factory.load("big")
    assert "limit" in str(ei.value)
    factory.destroy("big")
    assert os.listdir(factory.root) == []

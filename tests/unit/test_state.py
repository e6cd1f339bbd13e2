"""state.py: the on-disk state record and process start times. No root needed."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import pycontainer as pc
from pycontainer.state import (STATE_FILE, STATE_VERSION, RunState, StateRecord,
                               process_start_time, read_state, write_state)


def record(**kw):
    base = dict(id="box1", nonce="00ff", created=1700000000.5,
                config=json.loads(json.dumps(pc.Config().to_dict())), cgroups={"version": 1, "name": "box1"},
                init_pid=1234, init_start_time=98765, extra={"k": [1, 2]})
    base.update(kw)
    return StateRecord(**base)


def test_run_state_values():
    assert {s.value for s in RunState} == {"created", "running", "pausing", "paused", "stopped"}
    assert str(RunState.PAUSED) == "paused"


def test_round_trip(tmp_path):
    r = record()
    write_state(str(tmp_path), r)
    back = read_state(str(tmp_path), "box1")
    assert back == r
    assert back.version == STATE_VERSION
    assert pc.Config.from_dict(back.config) == pc.Config()


def test_round_trip_without_init(tmp_path):
    r = record(init_pid=None, init_start_time=None, extra={})
    write_state(str(tmp_path), r)
    assert read_state(str(tmp_path), "box1") == r


def test_write_replaces_and_leaves_no_temp_file(tmp_path):
    write_state(str(tmp_path), record(init_pid=1))
    write_state(str(tmp_path), record(init_pid=2))
    assert os.listdir(tmp_path) == [STATE_FILE]
    assert read_state(str(tmp_path), "box1").init_pid == 2
    # the file is written whole, as JSON
    with open(tmp_path / STATE_FILE) as f:
        assert json.load(f)["init_pid"] == 2


def test_write_is_atomic_rename(tmp_path):
    """A reader holding the old file keeps seeing the old record (a new inode replaced it)."""
    write_state(str(tmp_path), record(init_pid=1))
    with open(tmp_path / STATE_FILE, "rb") as old:
        ino = os.fstat(old.fileno()).st_ino
        write_state(str(tmp_path), record(init_pid=2))
        assert json.loads(old.read())["init_pid"] == 1
    assert os.stat(tmp_path / STATE_FILE).st_ino != ino


def test_state_file_mode(tmp_path):
    write_state(str(tmp_path), record())
    assert os.stat(tmp_path / STATE_FILE).st_mode & 0o777 == 0o600


def test_write_failure_leaves_no_temp_file(tmp_path):
    # STATE_FILE is a non-empty directory: the rename fails, and the temp file goes
    (tmp_path / STATE_FILE).mkdir()
    (tmp_path / STATE_FILE / "x").write_text("x")
    with pytest.raises(OSError):
        write_state(str(tmp_path), record())
    assert sorted(os.listdir(tmp_path)) == [STATE_FILE]


def test_missing_state_is_not_exist(tmp_path):
    with pytest.raises(pc.ContainerNotExistError) as ei:
        read_state(str(tmp_path), "box1")
    assert "box1" in str(ei.value)


def _full_json(tmp_path):
    write_state(str(tmp_path), record())
    return (tmp_path / STATE_FILE).read_bytes()


@pytest.mark.parametrize("mangle", [
    lambda b: b[: len(b) // 2],                                 # truncated
    lambda b: b"",                                              # empty
    lambda b: b"not json at all",
    lambda b: b"\xff\xfe\x00garbage",
    lambda b: b"[1, 2, 3]",                                     # JSON, not an object
    lambda b: b"null",
    lambda b: json.dumps({**json.loads(b), "version": STATE_VERSION + 1}).encode(),
    lambda b: json.dumps({**json.loads(b), "version": "1"}).encode(),
    lambda b: json.dumps({k: v for k, v in json.loads(b).items() if k != "nonce"}).encode(),
], ids=["truncated", "empty", "not-json", "binary", "list", "null", "newer-version",
        "string-version", "missing-field"])
def test_bad_state_file(tmp_path, mangle):
    data = mangle(_full_json(tmp_path))
    (tmp_path / STATE_FILE).write_bytes(data)
    with pytest.raises(pc.StateInvalidError) as ei:
        read_state(str(tmp_path), "box1")
    err = ei.value
    assert isinstance(err, pc.ContainerError)
    assert str(tmp_path / STATE_FILE) in str(err)
    assert "box1" in str(err)


def test_newer_version_message_says_so(tmp_path):
    data = json.loads(_full_json(tmp_path))
    data["version"] = STATE_VERSION + 1
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    with pytest.raises(pc.StateInvalidError) as ei:
        read_state(str(tmp_path), "box1")
    assert "newer" in str(ei.value)


def _stat_field_22(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2:].split()[19])


def test_process_start_time_of_self():
    t = process_start_time(os.getpid())
    assert isinstance(t, int)
    assert t == _stat_field_22("self")
    assert t > 0


def test_process_start_time_of_a_child_is_later():
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                         stdin=subprocess.PIPE)
    try:
        assert process_start_time(p.pid) >= process_start_time(os.getpid())
    finally:
        p.stdin.close()
        p.wait()


def test_process_start_time_with_parentheses_in_comm(tmp_path):
    """comm may hold ') ' and digits: the fields are counted after the last ')'."""
    sleep = shutil.which("sleep")
    weird = tmp_path / "a) 1 2 3 ("        # comm keeps 15 characters of this
    shutil.copy(sleep, weird)
    p = subprocess.Popen([str(weird), "30"])
    try:
        deadline = time.monotonic() + 10
        while True:                      # Popen returns before the child has exec'd
            with open(f"/proc/{p.pid}/comm") as f:
                if ")" in f.read():
                    break
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.005)
        t = process_start_time(p.pid)
        assert t is not None and t >= process_start_time(os.getpid())
        with open(f"/proc/{p.pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        assert t == int(fields[19])
    finally:
        p.kill()
        p.wait()


def test_process_start_time_of_missing_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    assert process_start_time(pid_max + 1) is None


def test_veths_round_trip(tmp_path):
    r = record(extra={"veths": [{"name": "veth0a1b2c3d4e5", "ifindex": 42}]})
    write_state(str(tmp_path), r)
    assert read_state(str(tmp_path), "box1") == r


@pytest.mark.parametrize("veths", [
    "veth0", [{"name": "veth0"}], [{"name": "a/b", "ifindex": 3}], [{"name": "x" * 16, "ifindex": 3}],
    [{"name": "veth0", "ifindex": 0}], [{"name": "veth0", "ifindex": "3"}],
    [{"name": "veth0", "ifindex": 3, "more": 1}],
])
def test_bad_veths_are_invalid_state(tmp_path, veths):
    """destroy deletes what the record names: a bad entry is refused when it is read."""
    write_state(str(tmp_path), record(extra={"veths": veths}))
    with pytest.raises(pc.StateInvalidError):
        read_state(str(tmp_path), "box1")

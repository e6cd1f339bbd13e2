"""The exception hierarchy: what a user catches and reads. No root needed."""
import errno
import os
import pickle

import pytest

import pycontainer as pc
from pycontainer.errors import in_context, system_error_from

ALL_ERRORS = [pc.ContainerError, pc.IdInUseError, pc.InvalidIdError, pc.ContainerNotExistError,
              pc.ContainerPausedError, pc.ContainerNotRunningError, pc.ConfigInvalidError,
              pc.ContainerSystemError, pc.StateInvalidError]


def test_hierarchy():
    for cls in ALL_ERRORS:
        assert issubclass(cls, pc.ContainerError)
        assert issubclass(cls, Exception)
    assert issubclass(pc.ConfigInvalidError, ValueError)
    assert issubclass(pc.InvalidIdError, ValueError)
    assert issubclass(pc.ContainerSystemError, OSError)


def test_codes_are_distinct():
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize("cls", [pc.IdInUseError, pc.ContainerNotExistError,
                                 pc.ContainerPausedError, pc.ContainerNotRunningError,
                                 pc.InvalidIdError, pc.StateInvalidError])
def test_message_names_container_operation_cause(cls):
    e = cls("the cause", container_id="box1", operation="start")
    s = str(e)
    assert "box1" in s and "start" in s and "the cause" in s
    assert e.container_id == "box1"
    assert e.operation == "start"


def test_message_without_container():
    e = pc.ContainerNotExistError("no such container")
    assert str(e) == "no such container"
    assert e.container_id is None


def test_config_invalid_error():
    e = pc.ConfigInvalidError("resources.memory_limit", -5, "expected 4096..",
                              container_id="box1", operation="create")
    assert isinstance(e, ValueError)
    assert e.field == "resources.memory_limit"
    assert e.value == -5
    assert e.reason == "expected 4096.."
    s = str(e)
    for part in ("box1", "create", "resources.memory_limit", "-5", "expected 4096.."):
        assert part in s


def test_system_error_is_an_oserror():
    e = pc.ContainerSystemError(errno.ENOENT, "/bin/nope", stage="exec", container_id="box1",
                                operation="start")
    assert isinstance(e, OSError)
    assert e.errno == errno.ENOENT
    assert e.strerror == os.strerror(errno.ENOENT)
    assert e.stage == "exec"
    s = str(e)
    for part in ("box1", "start", "exec", "/bin/nope", os.strerror(errno.ENOENT), "ENOENT"):
        assert part in s, (part, s)
    with pytest.raises(OSError) as ei:
        raise e
    assert ei.value.errno == errno.ENOENT


def test_system_error_without_stage():
    e = pc.ContainerSystemError(errno.EINVAL, "write '999' to /sys/fs/cgroup/x/cpuset.cpus")
    assert e.stage is None
    assert "cpuset.cpus" in str(e)
    assert "Invalid argument" in str(e)


def test_system_error_from_oserror():
    try:
        os.open("/nonexistent/pycontainer-test", os.O_RDONLY)
    except OSError as exc:
        e = system_error_from(exc, container_id="box1", operation="create")
    assert isinstance(e, pc.ContainerSystemError)
    assert e.errno == errno.ENOENT
    assert "/nonexistent/pycontainer-test" in str(e)
    assert "box1" in str(e) and "create" in str(e)


def test_in_context_adds_container_and_operation():
    e = in_context(pc.ContainerSystemError(errno.EACCES, "/etc/passwd", stage="exec"),
                   "box1", "start")
    assert isinstance(e, pc.ContainerSystemError)
    assert e.errno == errno.EACCES and e.stage == "exec"
    assert "box1" in str(e) and "start" in str(e)
    e = in_context(pc.ConfigInvalidError("args", [], "empty"), "box1", "start")
    assert isinstance(e, pc.ConfigInvalidError) and e.field == "args"
    assert "box1" in str(e)
    e = in_context(PermissionError(errno.EPERM, "nope", "/x"), "box1", "pause")
    assert isinstance(e, pc.ContainerSystemError) and e.errno == errno.EPERM
    assert "box1" in str(e) and "pause" in str(e)
    # an error already in context is left alone
    original = pc.ContainerPausedError("paused", container_id="box1", operation="start")
    assert in_context(original, "other", "x") is original


def _errors():
    return [
        pc.ContainerError("plain", container_id="box1", operation="op"),
        pc.IdInUseError("exists", container_id="box1", operation="create"),
        pc.InvalidIdError("bad id", operation="check id"),
        pc.ContainerNotExistError("gone", container_id="box1", operation="run_state"),
        pc.ContainerPausedError("paused", container_id="box1", operation="start"),
        pc.ContainerNotRunningError("created", container_id="box1", operation="pause"),
        pc.StateInvalidError("/x/state.json: bad", container_id="box1", operation="read state"),
        pc.ConfigInvalidError("hostname", "a_b", "bad host name", container_id="box1",
                              operation="create"),
        pc.ContainerSystemError(errno.ENOENT, "/bin/nope", stage="exec", container_id="box1",
                                operation="start"),
    ]


@pytest.mark.parametrize("err", _errors(), ids=lambda e: type(e).__name__)
def test_pickle_round_trip(err):
    """Errors cross process boundaries (multiprocessing, concurrent.futures) intact."""
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert back.container_id == err.container_id
    assert back.operation == err.operation
    assert back.code == err.code
    if isinstance(err, pc.ContainerSystemError):
        assert back.errno == err.errno and back.stage == err.stage
    if isinstance(err, pc.ConfigInvalidError):
        assert (back.field, back.value, back.reason) == (err.field, err.value, err.reason)


def test_death_before_the_program_is_told_as_the_kernel_gave_it():
    """The `died` stage's index (csrc/spawn.h, PC_STAGE_DIED) in words: a signal by name,
    an exit code, or nothing known (the status could not be taken)."""
    from pycontainer import _core
    assert _core._death(31) == ("the init was killed by SIGSYS (Bad system call) before "
                                "its program ran")
    assert _core._death(256 + 3) == "the init exited with status 3 before its program ran"
    assert _core._death(256) == "the init exited with status 0 before its program ran"
    assert _core._death(-1) == "the init died before its program ran"
    assert _core._death(40) == "the init was killed by signal 40 before its program ran"
    assert _core._death(200) == "the init was killed by signal 200 before its program ran"

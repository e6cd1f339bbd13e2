"""The --log file when stderr cannot be written: containerd's shim gives a task without
stdio a read-only /dev/null as stderr and reads the error from --log only, so the log must
be written whatever stderr does, and the exit status must stay the error's. Root required;
the failing create leaves nothing behind (leak_check)."""
import json
import os
import subprocess
import sys

import pytest

from helpers import write_bundle  # noqa: E402  (tests/helpers.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_with_readonly_stderr(*args):
    """The exit status of `pycontainer args` whose stderr is /dev/null opened O_RDONLY (as
    the shim opens it): every write to it fails with EBADF."""
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        p = subprocess.run([sys.executable, "-m", "pycontainer", *args], env=ENV, cwd=REPO,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fd,
                           timeout=60)
    finally:
        os.close(fd)
    return p.returncode


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_failing_create_logs_its_error_without_stderr(tmp_path, busybox_rootfs, root,
                                                        leak_check, fmt):
    # The program does not exist in the rootfs: the staged init fails in the kernel's exec.
    bundle = write_bundle(tmp_path / "bundle", busybox_rootfs, args=["/no/such/program"])
    log = tmp_path / "log"
    state = str(tmp_path / "state")
    rc = run_with_readonly_stderr("--root", state, "--log", str(log), "--log-format", fmt,
                                  "create", "-b", bundle, "c1")
    assert rc == 1
    text = log.read_text()
    if fmt == "json":
        (entry,) = [json.loads(line) for line in text.splitlines()]
        assert entry["level"] == "error"
        msg = entry["msg"]
    else:
        assert text.count("\n") == 1 and "level=error" in text
        msg = text
    assert "c1" in msg and "/no/such/program" in msg and "No such file" in msg
    assert os.listdir(state) == []              # the failed create removed the container


def test_warnings_and_usage_errors_without_stderr(tmp_path):
    # Without --log, stderr is all there is: the failing write is ignored and the exit
    # status is still the command's.
    assert run_with_readonly_stderr("--root", str(tmp_path), "state", "nope") == 1
    assert run_with_readonly_stderr("--root", str(tmp_path), "nosuchcommand") == 2
    assert run_with_readonly_stderr("--root", str(tmp_path), "--criu", "x", "list") == 0
    log = tmp_path / "log"
    assert run_with_readonly_stderr("--root", str(tmp_path), "--log", str(log),
                                    "nosuchcommand") == 2
    assert "no such command" in log.read_text()

"""The command line against hostile files and paths (issue 18, items 8 and 10).

--pid-file: the pid file is written through a temporary file of a random name made with
O_EXCL | O_NOFOLLOW in its directory and renamed over the target, so a symlink planted at
the old predictable temporary name (.<name>.<pid>) or at the target makes nothing else be
written; a directory that others may write to without the sticky bit is refused.

JSON from the user (config.json, exec --process, update --resources): too deeply nested,
or with a lone surrogate in a string, is one clear line and exit status 1, naming the file
and the problem, never a traceback or an "internal error".
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from pycontainer import cli
from pycontainer.oci.spec import default_spec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO)


class Cli:
    def __init__(self, root):
        self.root = root

    def __call__(self, *args, input=None):
        """(exit status, stderr). Files, not pipes: a detached container keeps its stdio."""
        with tempfile.TemporaryFile() as err:
            p = subprocess.run([sys.executable, "-m", "pycontainer", "--root", self.root,
                                *args], stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
                               env=ENV, timeout=60, input=input,
                               stdin=None if input is not None else subprocess.DEVNULL)
            err.seek(0)
            return p.returncode, err.read().decode(errors="replace")

    def ids(self):
        p = subprocess.run([sys.executable, "-m", "pycontainer", "--root", self.root, "list",
                            "-q"], capture_output=True, text=True, cwd=REPO, env=ENV,
                           timeout=60, stdin=subprocess.DEVNULL)
        return p.stdout.split()


@pytest.fixture
def oci(tmp_path, root, leak_check):
    c = Cli(str(tmp_path / "state"))
    yield c
    left = c.ids() if os.path.isdir(c.root) else []
    for cid in left:
        c("delete", "--force", cid)
    assert not left, f"test left containers behind: {left}"


@pytest.fixture
def bundle(tmp_path, busybox_rootfs):
    """bundle(args, spec=None) -> a bundle directory running `args` on busybox."""
    count = [0]

    def make(args=("true",), raw=None):
        count[0] += 1
        d = tmp_path / f"bundle{count[0]}"
        d.mkdir()
        spec = default_spec()
        spec["root"]["path"] = busybox_rootfs
        spec["process"]["args"] = list(args)
        (d / "config.json").write_text(raw(spec) if raw else json.dumps(spec))
        return str(d)
    return make


def one_line_error(rc, err, *needles):
    assert rc == 1, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)


# --- --pid-file ------------------------------------------------------------------------------

@pytest.fixture
def victim(tmp_path):
    v = tmp_path / "victim"
    v.write_text("precious\n")
    return v


def test_pid_file_ignores_a_symlink_at_the_old_temporary_name(root, tmp_path, bundle, victim,
                                                             leak_check):
    """The old code opened .<name>.<our pid> without O_EXCL | O_NOFOLLOW. Run in this
    process so that pid is known: the planted link names the victim."""
    piddir = tmp_path / "pids"
    piddir.mkdir()
    os.symlink(victim, piddir / f".pid.{os.getpid()}")
    rc = cli.main(["--root", str(tmp_path / "state"), "run", "-b", bundle(),
                   "--pid-file", str(piddir / "pid"), "p1"])
    assert rc == 0
    assert victim.read_text() == "precious\n"
    assert not (piddir / "pid").is_symlink() and int((piddir / "pid").read_text()) > 0
    assert sorted(os.listdir(piddir)) == [f".pid.{os.getpid()}", "pid"]


def test_pid_file_replaces_a_symlink_at_the_target(oci, tmp_path, bundle, victim):
    piddir = tmp_path / "pids"
    piddir.mkdir()
    os.symlink(victim, piddir / "pid")
    assert oci("run", "-b", bundle(), "--pid-file", str(piddir / "pid"), "p2") == (0, "")
    assert victim.read_text() == "precious\n"
    assert not (piddir / "pid").is_symlink() and int((piddir / "pid").read_text()) > 0
    assert os.listdir(piddir) == ["pid"]


def test_pid_file_in_a_directory_others_may_write_is_refused(oci, tmp_path, bundle):
    piddir = tmp_path / "open"
    piddir.mkdir()
    os.chmod(piddir, 0o777)
    rc, err = oci("create", "-b", bundle(["sleep", "100"]), "--pid-file",
                  str(piddir / "pid"), "p3")
    one_line_error(rc, err, "--pid-file", str(piddir), "sticky")
    assert oci.ids() == [] and os.listdir(piddir) == []


def test_pid_file_in_a_sticky_shared_directory_is_fine(oci, tmp_path, bundle):
    piddir = tmp_path / "sticky"
    piddir.mkdir()
    os.chmod(piddir, 0o1777)
    assert oci("run", "-b", bundle(), "--pid-file", str(piddir / "pid"), "p4") == (0, "")
    assert int((piddir / "pid").read_text()) > 0


# --- JSON from the user ---------------------------------------------------------------------

DEEP = "[" * 100000 + "]" * 100000
SOMEWHAT_DEEP = "[" * 900 + "]" * 900          # parses; then must not crash what reads it


def _with_args(value_json):
    """config.json text with process.args replaced by raw JSON text."""
    def raw(spec):
        spec["process"]["args"] = ["@ARGS@"]
        return json.dumps(spec).replace('["@ARGS@"]', value_json)
    return raw


@pytest.mark.parametrize("value, needle", [
    (DEEP, "nested"), (SOMEWHAT_DEEP, "nested"),
    ('["\\ud800"]', "surrogate"), ('["sh", "\\udc80"]', "surrogate"),
])
def test_config_json_hostile(oci, bundle, value, needle):
    rc, err = oci("run", "-b", bundle(raw=_with_args(value)), "j1")
    one_line_error(rc, err, "config.json", needle)
    assert oci.ids() == []


@pytest.fixture
def running(oci, bundle):
    assert oci("run", "-d", "-b", bundle(["sleep", "1000"]), "r1") == (0, "")
    yield "r1"
    oci("delete", "--force", "r1")


@pytest.mark.parametrize("text, needle", [
    (DEEP, "nested"),
    ('{"args": ' + SOMEWHAT_DEEP + ', "cwd": "/", "noNewPrivileges": true}', "nested"),
    ('{"args": ["\\ud800"], "cwd": "/", "noNewPrivileges": true}', "surrogate"),
])
def test_exec_process_file_hostile(oci, running, tmp_path, text, needle):
    f = tmp_path / "process.json"
    f.write_text(text)
    one_line_error(*oci("exec", "--process", str(f), running), "--process", needle)
    one_line_error(*oci("exec", "--process", "-", running, input=text.encode()),
                   "--process", needle)


@pytest.mark.parametrize("text, needle", [
    (DEEP, "nested"), ('{"cpu": {"cpus": ' + SOMEWHAT_DEEP + '}}', "nested"),
    ('{"cpu": {"cpus": "\\ud800"}}', "surrogate"),
])
def test_update_resources_file_hostile(oci, running, tmp_path, text, needle):
    f = tmp_path / "resources.json"
    f.write_text(text)
    one_line_error(*oci("update", "--resources", str(f), running), "--resources", needle)
    one_line_error(*oci("update", "--resources", "-", running, input=text.encode()),
                   "--resources", needle)

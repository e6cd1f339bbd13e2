"""What the command line's read commands load: `state` and `list` take the lean path
(pycontainer.oci.lean: state.json and the init's liveness, no Config or Container), which
must give the documents the full path (Factory.load) gives, in every run state; and they
import none of the library's heavy modules (checked with -X importtime, not timed).
Root required; every test deletes what it made."""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from pycontainer.oci.runtime import Runtime
from pycontainer.oci.state import state_document
from helpers import write_bundle  # noqa: E402  (tests/helpers.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))

# What `state`, `list`, `kill` (of the init), `pause`, `resume` and `delete` (of a stopped
# container) must not import: json, re and enum (the
# state record is read and the documents written through pycontainer.cjson), the seccomp
# compiler (pyseccomp's import runs ldconfig twice through ctypes.util), the OCI spec
# parser, Config and its dataclasses, the container and factory machinery, the network
# and asyncio stacks.
HEAVY = ("pyseccomp", "ctypes", "ctypes.util", "asyncio", "pyroute2", "dataclasses",
         "inspect", "typing", "signal", "hashlib", "shutil", "json", "re", "enum",
         "reprlib", "pycontainer.oci.spec", "pycontainer.seccomp",
         "pycontainer.config", "pycontainer.container", "pycontainer.factory",
         "pycontainer.cgroups.manager", "pycontainer.cgroups.host",
         "pycontainer.cgroups.v1", "pycontainer.cgroups.v2", "pycontainer.stats",
         "pycontainer.network", "pycontainer.events")


def cli(root, *args, check=True, importtime=False):
    # importtime: as the packager's launcher runs it (README: no site, no runpy), so that
    # what site, the .pth files of an install and `-m` import is not counted as the
    # command's.
    how = ["-X", "importtime", "-S", "-c", LAUNCHER] if importtime else ["-m", "pycontainer"]
    argv = [sys.executable, *how, "--root", root, *args]
    # Files, not pipes: a detached container keeps its stdio open after we return.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(argv, env=ENV, stdout=out, stderr=err, cwd=REPO,
                           stdin=subprocess.DEVNULL, timeout=60)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read().decode(), err.read().decode()
    if check:
        assert p.returncode == 0, (args, p.stderr)
    return p


LAUNCHER = "from pycontainer.cli import entry; entry()"


def imported(stderr):
    """The modules an -X importtime run imported."""
    return {line.split("|")[-1].strip() for line in stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.fixture
def box(tmp_path, busybox_rootfs, root, leak_check):
    """(state root, bundle of `sleep 1000`); every container made under it is deleted."""
    state_root = str(tmp_path / "state")
    yield state_root, write_bundle(tmp_path / "bundle", busybox_rootfs)
    if os.path.isdir(state_root):
        for cid in cli(state_root, "list", "-q").stdout.split():
            cli(state_root, "delete", "--force", cid)


def full_state(root, cid):
    return state_document(Runtime(root).load(cid))


def full_list(root):
    rt = Runtime(root)
    return [state_document(rt.load(cid)) for cid in rt.factory.list()]


def wait_exit(pid):
    fd = os.pidfd_open(pid)
    try:
        import select
        assert select.select([fd], [], [], 30)[0], f"pid {pid} did not exit"
    finally:
        os.close(fd)


def check_same(root, cid, status):
    lean = Runtime(root).state(cid)
    assert lean == full_state(root, cid)
    assert lean["status"] == status
    out = cli(root, "state", cid).stdout
    assert out == json.dumps(full_state(root, cid), indent=2) + "\n"
    assert Runtime(root).list() == full_list(root)


def test_lean_state_and_list_are_the_full_paths_in_every_state(box):
    root, bundle = box
    cli(root, "create", "-b", bundle, "a")
    cli(root, "run", "-d", "-b", bundle, "b")       # company for list
    check_same(root, "a", "created")
    cli(root, "start", "a")
    check_same(root, "a", "running")
    cli(root, "pause", "a")
    check_same(root, "a", "paused")
    cli(root, "resume", "a")
    check_same(root, "a", "running")
    pid = Runtime(root).state("a")["pid"]
    cli(root, "kill", "a", "KILL")
    wait_exit(pid)
    check_same(root, "a", "stopped")
    out = cli(root, "list", "--format", "json").stdout
    assert json.loads(out) == full_list(root)


def test_lean_errors_are_the_full_paths(box, tmp_path):
    root, bundle = box
    missing_root = str(tmp_path / "nowhere")
    p = cli(missing_root, "state", "x", check=False)
    assert (p.returncode, p.stderr) == (1, "container 'x': no such container\n")
    cli(root, "run", "-d", "-b", bundle, "c")
    p = cli(root, "state", "nosuch", check=False)
    assert (p.returncode, p.stderr) == (1, "container 'nosuch': load: no such container\n")
    p = cli(root, "state", ".bad", check=False)
    assert p.returncode == 1 and "invalid container id" in p.stderr
    # A damaged state.json: read_state's error, for state; a warning and no row, for list.
    os.mkdir(os.path.join(root, "broken"), 0o700)
    with open(os.path.join(root, "broken", "state.json"), "w") as f:
        f.write("{not json")
    p = cli(root, "state", "broken", check=False)
    assert p.returncode == 1 and "state.json" in p.stderr
    with pytest.raises(Exception) as full:
        full_state(root, "broken")
    assert p.stderr == str(full.value) + "\n"
    p = cli(root, "list", "-q")
    assert p.stdout == "c\n" and "skipped container 'broken'" in p.stderr
    os.unlink(os.path.join(root, "broken", "state.json"))
    os.rmdir(os.path.join(root, "broken"))


@pytest.mark.parametrize("args", [("state", "X"), ("state", "idle"), ("list",),
                                  ("list", "--format", "json"), ("kill", "idle", "CONT"),
                                  ("kill", "idle", "SIGCONT"), ("pause", "idle"),
                                  ("resume", "idle")])
def test_read_commands_import_nothing_heavy(box, args):
    root, bundle = box
    cli(root, "run", "-d", "-b", bundle, "idle")
    p = cli(root, *args, importtime=True, check=args != ("state", "X"))
    assert p.returncode == (1 if args == ("state", "X") else 0), p.stderr
    assert "pycontainer.oci.lean" in imported(p.stderr)
    assert sorted(imported(p.stderr) & set(HEAVY)) == []


# What the commands that change a container load (they build it from its record) must
# still not import: the seccomp compiler (compiled at create, or at exec), the spec parser,
# the network and asyncio stacks.
HEAVY_FOR_CHANGES = ("pyseccomp", "ctypes.util", "asyncio", "pyroute2",
                     "pycontainer.oci.spec", "pycontainer.seccomp")


def test_changing_commands_do_not_import_the_seccomp_compiler(box):
    root, bundle = box
    cli(root, "create", "-b", bundle, "w")
    for args in (("start", "w"), ("pause", "w"), ("resume", "w"), ("kill", "w", "KILL"),
                 ("delete", "--force", "w")):
        p = cli(root, *args, importtime=True)
        assert sorted(imported(p.stderr) & set(HEAVY_FOR_CHANGES)) == [], args


def test_lean_kill_is_the_full_kill(box):
    """kill of the init through oci.lean: the init gets the signal in every state it can
    get one in; the errors (no such container, not running, a bad signal) are the full
    path's."""
    root, bundle = box
    cli(root, "create", "-b", bundle, "k")
    pid = Runtime(root).state("k")["pid"]
    cli(root, "kill", "k", "STOP")                  # the staged init is signalled too
    with open(f"/proc/{pid}/stat") as f:
        assert f.read().rsplit(")", 1)[1].split()[0] == "T"
    cli(root, "kill", "k", "CONT")
    cli(root, "kill", "k", "KILL")
    wait_exit(pid)
    p = cli(root, "kill", "k", "KILL", check=False)
    assert (p.returncode, p.stderr) == (1, "container 'k': kill: container not running "
                                           "(stopped)\n")
    p = cli(root, "kill", "nosuch", check=False)
    assert (p.returncode, p.stderr) == (1, "container 'nosuch': load: no such container\n")
    p = cli(root, "kill", "k", "NOSUCHSIG", check=False)
    assert (p.returncode, p.stderr) == (1, "unknown signal 'NOSUCHSIG'\n")
    cli(root, "delete", "k")


def cgroups_of(root, cid):
    with open(os.path.join(root, cid, "state.json")) as f:
        record = json.load(f)["cgroups"]
    return [d for d in [record.get("unified"), *record.get("v1", {}).values()] if d]


def test_lean_delete_removes_what_the_full_delete_removes(box):
    """delete of a stopped container (the shim's delete after the killed init exited)
    through oci.lean: its cgroups and state directory go, nothing heavy is imported; a
    live one is refused as before, and a missing one is the full path's error."""
    root, bundle = box
    cli(root, "run", "-d", "-b", bundle, "d")
    dirs = cgroups_of(root, "d")
    assert dirs and all(os.path.isdir(d) for d in dirs)
    p = cli(root, "delete", "d", check=False)
    assert (p.returncode, p.stderr) == (1, "container 'd': delete: cannot delete a "
                                           "container that is running (use --force)\n")
    pid = Runtime(root).state("d")["pid"]
    cli(root, "kill", "d", "KILL")
    wait_exit(pid)
    p = cli(root, "delete", "d", importtime=True)
    assert "pycontainer.oci.lean" in imported(p.stderr)
    assert sorted(imported(p.stderr) & set(HEAVY)) == []
    assert not os.path.exists(os.path.join(root, "d"))
    assert not any(os.path.exists(d) for d in dirs)
    p = cli(root, "delete", "d", check=False)
    assert (p.returncode, p.stderr) == (1, "container 'd': load: no such container\n")
    cli(root, "delete", "--force", "d")
    # A created container (a live staged init) is killed and deleted the full way.
    cli(root, "create", "-b", bundle, "e")
    dirs = cgroups_of(root, "e")
    cli(root, "delete", "e")
    assert not os.path.exists(os.path.join(root, "e"))
    assert not any(os.path.exists(d) for d in dirs)


def test_lean_delete_and_pause_of_an_exact_cgroups_path(box, tmp_path, busybox_rootfs):
    """A config.json's cgroupsPath (containerd's, used exactly: here relative, below the
    runtime's own cgroup) takes the lean path too: pause, resume and the delete after
    the init exited import nothing heavy, and the delete removes the container's cgroups
    (not the parents the path named, which runc leaves too)."""
    root, _ = box
    parent = "pytest-lean-" + os.urandom(4).hex()
    bundle = write_bundle(tmp_path / "exact", busybox_rootfs, mutate=lambda s: s["linux"].
                          __setitem__("cgroupsPath", f"{parent}/x"))
    cli(root, "run", "-d", "-b", bundle, "x")
    dirs = cgroups_of(root, "x")
    try:
        assert dirs and all(d.endswith(f"/{parent}/x") and os.path.isdir(d) for d in dirs)
        for command in ("pause", "resume"):
            p = cli(root, command, "x", importtime=True)
            assert "pycontainer.oci.lean" in imported(p.stderr)
            assert sorted(imported(p.stderr) & set(HEAVY)) == []
        assert Runtime(root).state("x")["status"] == "running"
        pid = Runtime(root).state("x")["pid"]
        cli(root, "kill", "x", "KILL")
        wait_exit(pid)
        p = cli(root, "delete", "x", importtime=True)
        assert "pycontainer.oci.lean" in imported(p.stderr)
        assert sorted(imported(p.stderr) & set(HEAVY)) == []
        assert not os.path.exists(os.path.join(root, "x"))
        assert not any(os.path.exists(d) for d in dirs)
    finally:
        for d in dirs:
            try:
                os.rmdir(os.path.dirname(d))
            except OSError:
                pass


def test_lean_pause_and_resume_are_the_full_ones(box):
    """pause and resume through oci.lean: the kernel's freezer says paused and running
    (check_same compares every document with the full path's), a second pause or resume
    changes nothing, and a created container's errors are the full path's."""
    root, bundle = box
    cli(root, "run", "-d", "-b", bundle, "f")
    for op, status in (("pause", "paused"), ("resume", "running")):
        cli(root, op, "f")
        cli(root, op, "f")
        check_same(root, "f", status)
    cli(root, "create", "-b", bundle, "g")
    for op in ("pause", "resume"):
        p = cli(root, op, "g", check=False)
        assert (p.returncode, p.stderr) == (1, f"container 'g': {op}: the container is "
                                               "created\n")


def test_lean_start_runs_the_program_and_reports_a_late_failure(box, tmp_path,
                                                                busybox_rootfs):
    """start through oci.lean: nothing heavy imported, the program runs; a start whose
    exec fails after the go (the program removed between create and start) gives the
    full path's error, naming the program and errno, and the container has stopped."""
    root, bundle = box
    cli(root, "create", "-b", bundle, "s")
    p = cli(root, "start", "s", importtime=True)
    assert "pycontainer.oci.lean" in imported(p.stderr)
    assert sorted(imported(p.stderr) & set(HEAVY)) == []
    check_same(root, "s", "running")
    p = cli(root, "start", "s", check=False)
    assert (p.returncode, p.stderr) == (1, "container 's': start: cannot start a container "
                                           "that is running\n")
    program = os.path.join(busybox_rootfs, "data", "late-sleep")
    os.symlink("/bin/busybox", program)
    try:
        late = write_bundle(tmp_path / "late", busybox_rootfs,
                            args=["/data/late-sleep", "1000"])
        cli(root, "create", "-b", late, "t")
    finally:
        os.unlink(program)
    p = cli(root, "start", "t", check=False)
    assert (p.returncode, p.stderr) == (1, "container 't': exec: exec: /data/late-sleep: "
                                           "No such file or directory (ENOENT)\n")
    check_same(root, "t", "stopped")

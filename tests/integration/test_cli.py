"""The `pycontainer` command line, run as a subprocess (`python -m pycontainer --root <tmp>`)
on a bundle of the busybox rootfs: every command, its output shapes and its error paths.
Root required. Every test deletes what it made; the `oci` fixture fails a test that leaves
a container behind (and leak_check one that leaves a process or cgroup)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import pytest

from pycontainer.oci.spec import default_spec
from helpers import converse, write_bundle  # noqa: E402  (tests/helpers.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Cli:
    def __init__(self, root, tmp_path):
        self.root = root
        self.tmp = tmp_path

    def __call__(self, *args, cwd=None, input=None, timeout=60, root=True):
        argv = [sys.executable, "-m", "pycontainer"]
        if root:
            argv += ["--root", self.root]
        # Files, not pipes: a detached container keeps its stdio open after we return.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(argv + list(args), cwd=cwd or REPO, env=ENV, stdout=out,
                               stderr=err, timeout=timeout,
                               input=input.encode() if input is not None else None,
                               stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            return Result(p.returncode, out.read().decode(), err.read().decode())

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.rc == 0, (args, r)
        return r

    def fails(self, *args, rc=None, **kw):
        r = self(*args, **kw)
        assert r.rc != 0, (args, r)
        if rc is not None:
            assert r.rc == rc, (args, r)
        assert r.err.strip() and len(r.err.strip().splitlines()) == 1, r.err
        return r

    def state(self, cid):
        return self.ok("state", cid).json()

    def ids(self):
        return self.ok("list", "-q").out.split()


@pytest.fixture
def oci(tmp_path, root, leak_check):
    cli = Cli(str(tmp_path / "state"), tmp_path)
    yield cli
    left = cli.ids() if os.path.isdir(cli.root) else []
    for cid in left:
        cli("delete", "--force", cid)
    assert not left, f"test left containers behind: {left}"


@pytest.fixture
def make_bundle(busybox_rootfs, tmp_path):
    """make_bundle(args, **changes) -> a bundle dir whose config.json is our default spec on
    the busybox rootfs running `args`."""
    count = [0]

    def make(args=("sleep", "1000"), mutate=None):
        count[0] += 1
        return write_bundle(tmp_path / f"bundle{count[0]}", busybox_rootfs, args, mutate)
    return make


def _cgroup_file(pid, controller, name):
    """A v1 cgroup file of the cgroup `pid` is in (this host's limits are v1)."""
    from pycontainer.cgroups import detect
    h = detect().v1[controller]
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if controller in ctls.split(","):
                with open(os.path.join(h.dir_of(path), name)) as g:
                    return g.read().strip()
    raise AssertionError(f"{pid} has no {controller} cgroup")


def wait_status(oci, cid, status, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        st = oci.state(cid)["status"]
        if st == status:
            return
        assert time.monotonic() < deadline, f"{cid} stayed {st}, wanted {status}"
        time.sleep(0.02)


# --- run ----------------------------------------------------------------------------------

def test_run_foreground_passes_exit_code_and_output(oci, make_bundle):
    b = make_bundle(["sh", "-c", "echo out $(hostname); echo err >&2; exit 7"])
    r = oci("run", "-b", b, "fg")
    assert r.rc == 7, r
    assert r.out == "out pycontainer\n" and r.err == "err\n"
    assert oci.ids() == []                       # deleted after it exited


def test_run_in_an_empty_directory_uses_the_builtin_spec(oci, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = oci.ok("run", "--rm", "demo", "--", "echo", "hi", cwd=str(empty))
    assert r.out == "hi\n"
    assert oci.ids() == []


def test_run_trailing_args_replace_process_args(oci, make_bundle):
    b = make_bundle(["false"])
    assert oci.ok("run", "-bundle", b, "t1", "--", "sh", "-c", "echo $0", "x").out == "x\n"


def test_run_signal_death_is_128_plus(oci, make_bundle):
    p = subprocess.Popen([sys.executable, "-m", "pycontainer", "--root", oci.root, "run",
                          "-b", make_bundle(), "sig"], env=ENV, cwd=REPO,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while "sig" not in oci.ids() or oci.state("sig")["status"] != "running":
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.02)
    oci.ok("kill", "sig", "KILL")
    assert p.wait(timeout=20) == 128 + signal.SIGKILL
    assert oci.ids() == []


def test_run_keep_leaves_a_stopped_container(oci, make_bundle):
    b = make_bundle(["true"])
    oci.ok("run", "--keep", "-b", b, "kept")
    st = oci.state("kept")
    assert st["status"] == "stopped" and st["pid"] == 0
    oci.ok("delete", "kept")
    assert oci.ids() == []


def test_run_forwards_signals(oci, make_bundle, tmp_path):
    b = make_bundle(["sh", "-c", "trap 'echo got TERM; exit 42' TERM; echo ready; "
                                 "while :; do sleep 0.05; done"])
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "w") as f, open(err, "w") as g:
        p = subprocess.Popen([sys.executable, "-m", "pycontainer", "--root", oci.root, "run",
                              "-b", b, "fwd"], stdout=f, stderr=g, env=ENV,
                             cwd=REPO, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "ready" not in out.read_text():
            assert p.poll() is None, (p.returncode, err.read_text())
            assert time.monotonic() < deadline, ("no 'ready'", err.read_text())
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=20) == 42, err.read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
            oci("delete", "--force", "fwd")
    assert "got TERM" in out.read_text()


def test_run_detached_and_the_commands_on_it(oci, make_bundle, tmp_path):
    b = make_bundle()
    pid_file = tmp_path / "pid"
    oci.ok("run", "-d", "--pid-file", str(pid_file), "-b", b, "box")
    pid = int(pid_file.read_text())
    st = oci.state("box")
    assert st["status"] == "running" and st["pid"] == pid and st["id"] == "box"
    assert st["bundle"] == b and st["rootfs"] == json.load(open(f"{b}/config.json"))["root"]["path"]
    assert st["ociVersion"] == "1.0.2" and st["owner"] == "root"
    assert st["created"].endswith("Z") and st["created"][:4].isdigit()

    # list
    assert oci.ids() == ["box"]
    listed = oci.ok("list", "--format", "json").json()
    assert [d["id"] for d in listed] == ["box"] and listed[0]["pid"] == pid
    table = oci.ok("list").out.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert table[1].split()[:3] == ["box", str(pid), "running"]

    # ps
    assert oci.ok("ps", "--format=json", "box").json() == [pid]
    lines = oci.ok("ps", "box").out.splitlines()
    assert "PID" in lines[0].split() and len(lines) == 2 and str(pid) in lines[1].split()

    # exec: output, exit code, env, cwd, user
    r = oci("exec", "box", "sh", "-c", "echo $$ $A $(pwd) $(id -u):$(id -g); exit 5")
    assert r.rc == 5 and r.out.split()[1:] == ["/", "0:0"], r
    r = oci.ok("exec", "-e", "A=1", "--cwd", "/tmp", "-u", "65534:65534", "box",
               "sh", "-c", "echo $A $(pwd) $(id -u):$(id -g)")
    assert r.out == "1 /tmp 65534:65534\n"
    exec_pid = tmp_path / "exec.pid"
    oci.ok("exec", "-d", "--pid-file", str(exec_pid), "box", "sleep", "1000")
    sleeper = int(exec_pid.read_text())
    assert sorted(oci.ok("ps", "-f", "json", "box").json()) == sorted([pid, sleeper])

    # exec --process
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh", "-c", "echo $B $(pwd)"], "cwd": "/root",
                                "env": ["B=2"], "user": {"uid": 0, "gid": 0},
                                "noNewPrivileges": True}))
    assert oci.ok("exec", "--process", str(proc), "box").out == "2 /root\n"

    # pause / resume
    oci.ok("pause", "box")
    assert oci.state("box")["status"] == "paused"
    r = oci.fails("exec", "box", "true")
    assert "paused" in r.err
    oci.ok("resume", "box")
    assert oci.state("box")["status"] == "running"

    # events --stats
    ev = oci.ok("events", "--stats", "box").json()
    assert ev["type"] == "stats" and ev["id"] == "box"
    assert ev["data"]["pids"]["current"] == 2
    assert ev["data"]["memory"]["usage"]["usage"] > 0
    assert {"cpu", "memory", "pids", "blkio", "network_interfaces"} <= set(ev["data"])
    assert any(i["Name"] == "lo" for i in ev["data"]["network_interfaces"])

    # update
    oci.ok("update", "--memory", "64m", "--pids-limit", "50", "--cpu-share", "512", "box")
    from pycontainer import Factory
    res = Factory(oci.root).load("box").config.resources
    assert (res.memory_limit, res.pids_limit, res.cpu_shares) == (64 << 20, 50, 512)
    resources = tmp_path / "res.json"
    resources.write_text(json.dumps({"memory": {"limit": 32 << 20}, "pids": {"limit": 40}}))
    oci.ok("update", "-r", str(resources), "box")
    res = Factory(oci.root).load("box").config.resources
    assert (res.memory_limit, res.pids_limit, res.cpu_shares) == (32 << 20, 40, 512)
    oci.ok("update", "-r", "-", "box", input=json.dumps({"pids": {"limit": 30}}))
    assert Factory(oci.root).load("box").config.resources.pids_limit == 30
    oci.ok("update", "--memory-reservation", "16m", "box")
    assert _cgroup_file(pid, "memory", "memory.soft_limit_in_bytes") == str(16 << 20)
    assert _cgroup_file(pid, "memory", "memory.limit_in_bytes") == str(32 << 20)
    r = oci.fails("update", "--cpu-rt-runtime", "100", "box")
    assert "not supported" in r.err

    # kill --all, then the init
    oci.ok("kill", "--all", "box", "KILL")
    wait_status(oci, "box", "stopped")
    r = oci.fails("kill", "box")
    assert "not running" in r.err
    oci.ok("delete", "box")
    assert oci.ids() == []


def test_events_stream_and_ps_options(oci, make_bundle, tmp_path):
    oci.ok("run", "-d", "-b", make_bundle(), "ev")
    out = tmp_path / "events"
    with open(out, "w") as f:
        p = subprocess.Popen([sys.executable, "-m", "pycontainer", "--root", oci.root,
                              "events", "--interval", "100ms", "ev"], stdout=f,
                             stderr=subprocess.DEVNULL, env=ENV, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while len(out.read_text().splitlines()) < 2:
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        p.terminate()
        p.wait()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(e["type"] == "stats" and e["id"] == "ev" for e in events)
    # ps passes what follows the id to ps(1)
    lines = oci.ok("ps", "ev", "-o", "pid,comm").out.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and lines[1].split()[1] == "sleep"
    # exec --process may not ask for other capabilities than the container's
    proc = tmp_path / "p.json"
    proc.write_text(json.dumps({"args": ["true"], "cwd": "/",
                                "capabilities": {"bounding": ["CAP_SYS_ADMIN"]}}))
    r = oci.fails("exec", "-p", str(proc), "ev")
    assert r.err.startswith("process.capabilities: differs from the container's")
    oci.ok("delete", "--force", "ev")


def test_kill_default_is_sigterm_and_names_or_numbers(oci, make_bundle):
    b = make_bundle(["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"])
    oci.ok("run", "-d", "-b", b, "k1")
    oci.ok("kill", "k1")
    wait_status(oci, "k1", "stopped")
    oci.ok("delete", "k1")
    oci.ok("run", "-d", "-b", make_bundle(), "k2")
    oci.ok("kill", "k2", "9")
    wait_status(oci, "k2", "stopped")
    oci.ok("delete", "k2")
    oci.ok("run", "-d", "-b", make_bundle(), "k3")
    r = oci.fails("kill", "k3", "SIGNOPE")
    assert "unknown signal" in r.err
    oci.ok("kill", "k3", "SIGKILL")
    wait_status(oci, "k3", "stopped")
    oci.ok("delete", "k3")


def test_delete_running_needs_force(oci, make_bundle):
    oci.ok("run", "-d", "-b", make_bundle(), "d1")
    r = oci.fails("delete", "d1")
    assert "running" in r.err and "--force" in r.err
    assert oci.state("d1")["status"] == "running"
    oci.ok("delete", "-f", "d1")
    assert oci.ids() == []
    oci.ok("delete", "--force", "d1")            # a missing container is fine with --force


def test_paused_container_delete_force(oci, make_bundle):
    oci.ok("run", "-d", "-b", make_bundle(), "p1")
    oci.ok("pause", "p1")
    oci.fails("delete", "p1")
    oci.ok("delete", "--force", "p1")


# --- hooks ----------------------------------------------------------------------------------

def _hook(tmp_path, name):
    """A hook that appends its stdin (the state document) to <tmp>/<name>.log."""
    log = tmp_path / f"{name}.log"
    return {"path": "/bin/sh", "args": ["sh", "-c", f"cat >> {log}; echo >> {log}"]}, log


def _read_states(log):
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_poststart_and_poststop_hooks_with_run(oci, make_bundle, tmp_path):
    poststart, start_log = _hook(tmp_path, "poststart")
    poststop, stop_log = _hook(tmp_path, "poststop")
    b = make_bundle(["true"], mutate=lambda s: s.update(
        hooks={"poststart": [poststart], "poststop": [poststop]},
        annotations={"org.example": "x"}))
    oci.ok("run", "-b", b, "h1")
    (started,) = _read_states(start_log)
    (stopped,) = _read_states(stop_log)
    assert started["id"] == "h1" and started["bundle"] == b
    assert started["annotations"] == {"org.example": "x"}
    assert stopped["status"] == "stopped" and stopped["pid"] == 0


@pytest.mark.parametrize("how", ["run", "create+start"])
def test_poststart_sees_the_process_as_started_even_when_it_exited(oci, make_bundle, tmp_path,
                                                                   how):
    """poststart gets the state as it was when the program was started: status running
    and the init's pid, even when the program (`true`) has exited before the hook runs.
    The hook waits for that exit first, so what it is told cannot be a live re-read."""
    log = tmp_path / "poststart.log"
    waits = ('state=$(cat); pid=$(echo "$state" | sed \'s/.*"pid": *\\([0-9]*\\).*/\\1/\'); '
             'while [ -d /proc/$pid ] && ! grep -q "^State:.*Z" /proc/$pid/status; do '
             'sleep 0.01; done; echo "$state" >> ' + str(log))
    hook = {"path": "/bin/sh", "args": ["sh", "-c", waits]}
    b = make_bundle(["true"], mutate=lambda s: s.update(hooks={"poststart": [hook]}))
    pid_file = tmp_path / "pid"
    if how == "run":
        oci.ok("run", "--keep", "--pid-file", str(pid_file), "-b", b, "ps1")
    else:
        oci.ok("create", "--pid-file", str(pid_file), "-b", b, "ps1")
        oci.ok("start", "ps1")
    (doc,) = _read_states(log)
    assert doc["status"] == "running" and doc["pid"] == int(pid_file.read_text())
    assert doc["id"] == "ps1" and doc["bundle"] == b
    wait_status(oci, "ps1", "stopped")
    oci.ok("delete", "ps1")


def test_failing_poststart_hook_is_a_warning(oci, make_bundle):
    b = make_bundle(["true"], mutate=lambda s: s.update(
        hooks={"poststart": [{"path": "/bin/false"}]}))
    r = oci.ok("run", "-b", b, "h2")
    assert "warning" in r.err and "poststart[0]" in r.err


def test_create_start_and_runtime_hooks(oci, make_bundle, tmp_path):
    hooks = {}
    logs = {}
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        hooks[kind], logs[kind] = _hook(tmp_path, kind)
        hooks[kind] = [hooks[kind]]
    b = make_bundle(["sh", "-c", f"echo ran >> {tmp_path}/ran; sleep 1000"],
                    mutate=lambda s: s.update(hooks=hooks))
    pid_file = tmp_path / "pid"
    oci.ok("create", "--bundle", b, "--pid-file", str(pid_file), "cs")
    st = oci.state("cs")
    assert st["status"] == "created" and st["pid"] == int(pid_file.read_text())
    for kind in ("prestart", "createRuntime"):
        (doc,) = _read_states(logs[kind])
        assert doc["status"] == "creating" and doc["pid"] == st["pid"]
    assert not (tmp_path / "ran").exists() and not logs["poststart"].exists()
    r = oci.fails("exec", "cs", "true")
    assert "created" in r.err
    oci.ok("start", "cs")
    assert oci.state("cs")["status"] == "running"
    (doc,) = _read_states(logs["poststart"])
    assert doc["status"] == "running"
    r = oci.fails("start", "cs")
    assert "running" in r.err
    oci.ok("delete", "--force", "cs")
    (doc,) = _read_states(logs["poststop"])
    assert doc["status"] == "stopped"


def test_container_hooks_run_in_the_containers_namespaces(oci, make_bundle, tmp_path):
    """createContainer: path on the host, run in the container's namespaces (its uts:
    the container's hostname); startContainer: path and all inside the container (it
    writes to the container's /dev/shm), before the program runs."""
    log = tmp_path / "createContainer.log"
    create = {"path": "/bin/sh",
              "args": ["sh", "-c", f"cat > {log}; echo >> {log}; hostname >> {log}"]}
    start = {"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/shm/sc.json"]}
    b = make_bundle(["sh", "-c", "sleep 1000"], mutate=lambda s: s.update(
        hostname="hooked", hooks={"createContainer": [create], "startContainer": [start]}))
    oci.ok("create", "-b", b, "ch")
    state_doc, hostname = log.read_text().splitlines()
    assert json.loads(state_doc)["status"] == "creating" and hostname == "hooked"
    oci.ok("start", "ch")
    doc = json.loads(oci.ok("exec", "ch", "cat", "/dev/shm/sc.json").out)
    assert doc["id"] == "ch" and doc["pid"] == oci.state("ch")["pid"]
    oci.ok("delete", "--force", "ch")


def test_failing_start_container_hook_stops_the_container(oci, make_bundle):
    b = make_bundle(mutate=lambda s: s.update(
        hooks={"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}))
    oci.ok("create", "-b", b, "sf")
    r = oci.fails("start", "sf")
    assert "startContainer[0]" in r.err and "exit status 3" in r.err
    assert oci.state("sf")["status"] == "stopped"
    oci.ok("delete", "sf")


def test_failing_create_container_hook_removes_the_container(oci, make_bundle):
    b = make_bundle(mutate=lambda s: s.update(
        hooks={"createContainer": [{"path": "/bin/false", "timeout": 5}]}))
    r = oci.fails("create", "-b", b, "cf")
    assert "createContainer[0]" in r.err and "exit status 1" in r.err
    assert oci.ids() == []


def test_failing_prestart_hook_removes_the_container(oci, make_bundle):
    b = make_bundle(mutate=lambda s: s.update(hooks={"prestart": [{"path": "/bin/false"}]}))
    r = oci.fails("create", "-b", b, "bad")
    assert "prestart[0]" in r.err
    assert oci.ids() == []


def test_delete_of_a_created_container(oci, make_bundle):
    oci.ok("create", "-b", make_bundle(), "c1")
    oci.ok("delete", "c1")
    assert oci.ids() == []


# --- error paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["state", "nope"], ["start", "nope"], ["kill", "nope"], ["delete", "nope"],
    ["exec", "nope", "true"], ["ps", "nope"], ["pause", "nope"], ["resume", "nope"],
    ["events", "--stats", "nope"], ["update", "--memory", "64m", "nope"],
])
def test_unknown_id(oci, argv):
    r = oci.fails(*argv, rc=1)
    assert "container 'nope'" in r.err and "no such container" in r.err


def test_wrong_state_for_the_operation(oci, make_bundle):
    oci.ok("run", "--keep", "-b", make_bundle(["true"]), "st")
    for argv, word in ((["kill", "st"], "not running"), (["exec", "st", "true"], "stopped"),
                       (["pause", "st"], "stopped"), (["start", "st"], "stopped"),
                       (["resume", "st"], "stopped")):
        r = oci.fails(*argv)
        assert word in r.err, (argv, r)
    oci.ok("delete", "st")
    oci.ok("run", "-d", "-b", make_bundle(), "rn")
    r = oci.fails("start", "rn")
    assert "running" in r.err
    r = oci.fails("run", "-d", "-b", make_bundle(), "rn")
    assert "exists" in r.err
    oci.ok("delete", "-f", "rn")


def test_invalid_config_json_names_the_json_path(oci, make_bundle, tmp_path):
    def bad(s):
        s["linux"]["resources"]["memory"] = {"limit": "1g"}
    r = oci.fails("run", "-b", make_bundle(mutate=bad), "bad")
    assert r.err.strip() == 'linux.resources.memory.limit: expected an integer, got "1g"'
    r = oci.fails("run", "-b", make_bundle(mutate=lambda s: s["process"].update(cwd="tmp")),
                  "bad")
    assert r.err.startswith("process.cwd: expected an absolute path")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    r = oci.fails("run", "-b", str(broken), "bad")
    assert r.err.startswith("config.json: not valid JSON")
    assert oci.ids() == []


def test_failed_start_leaves_nothing(oci, make_bundle):
    r = oci.fails("run", "-b", make_bundle(["/bin/nope"]), "nope")
    assert "exec" in r.err and "/bin/nope" in r.err
    assert oci.ids() == []


@pytest.mark.parametrize("argv,needle", [
    (["frobnicate"], "no such command"),
    (["list", "--bogus"], "flag provided but not defined: --bogus"),
    (["--bogus", "list"], "flag provided but not defined: --bogus"),
    (["run", "-b"], "flag needs an argument"),
    (["state"], "missing <container-id>"),
    (["list", "--format", "yaml"], "invalid format"),
    (["--log-format", "xml", "list"], "log-format"),
    (["--systemd-cgroup", "list"], "--systemd-cgroup: not supported"),
    (["run", "--console-socket", "/tmp/s", "x"], "terminal"),
    (["exec", "-t", "x", "sh"], None),
    ([], "missing command"),
])
def test_usage_errors(oci, argv, needle):
    r = oci.fails(*argv)
    if needle:
        assert needle in r.err, r


# --- terminals ------------------------------------------------------------------------------

class ConsoleSocket:
    """What conmon and containerd's shim do: listen on a unix socket and take the pty
    master the runtime sends (SCM_RIGHTS)."""

    def __init__(self, path):
        import socket
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(30)

    def master(self):
        import socket
        conn, _ = self.sock.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        self.sock.close()
        assert len(fds) == 1
        return fds[0]


TTY = lambda s: s["process"].update(terminal=True)    # noqa: E731


def test_create_with_a_console_socket(oci, make_bundle, tmp_path):
    console = ConsoleSocket(tmp_path / "console.sock")
    oci.ok("create", "-b", make_bundle(["sh"], mutate=TTY), "--console-socket", console.path,
           "t1")
    master = console.master()
    assert oci.state("t1")["status"] == "created"
    oci.ok("start", "t1")
    out = converse(master, "tty; [ -t 0 ] && echo on-a-tty; exit 3\n")
    assert "/dev/pts/0" in out and "on-a-tty" in out
    oci.ok("delete", "--force", "t1")


def test_exec_tty_with_a_console_socket(oci, make_bundle, tmp_path):
    oci.ok("run", "-d", "-b", make_bundle(), "t2")
    console = ConsoleSocket(tmp_path / "console.sock")
    oci.ok("exec", "-t", "-d", "--console-socket", console.path, "t2", "sh")
    out = converse(console.master(), "tty; exit 0\n")
    assert "/dev/pts/" in out
    oci.ok("delete", "--force", "t2")


def test_foreground_run_relays_its_terminal(oci, make_bundle):
    r = oci("run", "-b", make_bundle(["sh"], mutate=TTY), "t3",
            input="[ -t 1 ] && echo on-a-tty; exit 4\n")
    assert r.rc == 4, r
    assert "on-a-tty" in r.out
    assert oci.ids() == []


def test_a_detached_terminal_needs_a_console_socket(oci, make_bundle):
    r = oci.fails("create", "-b", make_bundle(mutate=TTY), "t4")
    assert "cannot allocate a terminal" in r.err and "--console-socket" in r.err
    r = oci.fails("run", "-d", "-b", make_bundle(mutate=TTY), "t4")
    assert "cannot allocate a terminal" in r.err
    assert oci.ids() == []


def test_an_unreachable_console_socket_removes_the_container(oci, make_bundle, tmp_path):
    r = oci.fails("create", "-b", make_bundle(mutate=TTY), "--console-socket",
                  str(tmp_path / "nobody-listens"), "t5")
    assert "--console-socket" in r.err and "No such file" in r.err
    assert oci.ids() == []


def test_json_log(oci, tmp_path):
    log = tmp_path / "log.json"
    r = oci("--log", str(log), "--log-format", "json", "state", "nope")
    assert r.rc == 1 and "no such container" in r.err
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["level"] == "error" and "no such container" in entry["msg"]
    assert entry["time"].endswith("Z")


def test_warnings_go_to_the_log(oci, make_bundle, tmp_path):
    b = make_bundle(["true"], mutate=lambda s: s["linux"].update(mountLabel="x"))
    r = oci.ok("run", "-b", b, "w1")
    assert "linux.mountLabel" in r.err
    log = tmp_path / "log"
    r = oci.ok("-log", str(log), "run", "-b", b, "w1")
    assert "linux.mountLabel" not in r.err and "level=warning" in log.read_text()


# --- spec, features, version ------------------------------------------------------------------

def test_spec(oci, tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    oci.ok("spec", "--bundle", str(d))
    assert json.loads((d / "config.json").read_text()) == default_spec()
    r = oci.fails("spec", "-b", str(d))
    assert "exists" in r.err
    d2 = tmp_path / "b2"
    d2.mkdir()
    oci.ok("spec", "--rootless", cwd=str(d2))
    assert json.loads((d2 / "config.json").read_text()) == default_spec(rootless=True)


def test_features_and_version(oci):
    f = oci.ok("features").json()
    assert f["ociVersionMax"] == "1.2.0" and "poststop" in f["hooks"]
    r = oci.ok("--version", root=False)
    assert r.out.startswith("pycontainer version ") and "spec: 1.2.0" in r.out
    assert oci.ok("-v", root=False).out == r.out


def test_spec_bundle_runs(oci, busybox_rootfs, tmp_path):
    """`pycontainer spec`'s output, pointed at a rootfs, runs as is."""
    d = tmp_path / "b"
    d.mkdir()
    os.symlink(busybox_rootfs, d / "rootfs")
    oci.ok("spec", "-b", str(d))
    r = oci.ok("run", "-b", str(d), "sp", "--", "sh", "-c", "echo $(hostname) $(id -u)")
    assert r.out == "pycontainer 0\n"


def test_mounts_and_resources_apply(oci, make_bundle, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("host file\n")

    def mutate(s):
        # Existing mount points: the rootfs is read-only (see the report on mount points).
        s["mounts"] += [{"destination": "/data", "type": "bind", "source": str(data),
                         "options": ["rbind", "ro"]},
                        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                         "options": ["size=1m"]}]
        s["linux"]["resources"]["pids"] = {"limit": 20}
        s["linux"]["resources"]["memory"] = {"limit": 1 << 28, "reservation": 1 << 27}
        s["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    b = make_bundle(["sh", "-c", "cat /data/f; touch /data/x 2>/dev/null || echo ro; "
                                 "touch /tmp/y && echo rw; "
                                 "cat /proc/sys/net/ipv4/ip_forward"], mutate=mutate)
    r = oci.ok("run", "-b", b, "mr")
    assert r.out == "host file\nro\nrw\n1\n"


def test_preserve_fds(oci, make_bundle, tmp_path):
    """--preserve-fds N: our 3 .. 3+N-1 are the process's 3, 4 ... (and nothing else is)."""
    out = tmp_path / "fd3"
    cmd = (f"exec 3>{out}; {sys.executable} -m pycontainer --root {oci.root} run "
           f"--preserve-fds 1 -b {{b}} {{cid}}")
    b = make_bundle(["sh", "-c", "echo via-3 >&3; ls /proc/self/fd | tr '\\n' ' '"])
    p = subprocess.run(["sh", "-c", cmd.format(b=b, cid="pf")], env=ENV, cwd=REPO,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert out.read_text() == "via-3\n"
    assert p.stdout.split() == ["0", "1", "2", "3", "4"]      # 4: ls's directory
    r = oci.fails("run", "--preserve-fds", "2", "-b", b, "pf2")
    assert "descriptor" in r.err and "not open" in r.err
    assert oci.ids() == []

"""Containers that are not pid 1 of a pid namespace of their own: one that joins another
container's pid namespace by path (a Kubernetes pod's containers join the pause
container's), one with no pid namespace of its own (hostPID), and one that joins a mount
namespace by path. Each sees what it shares, and destroy / `delete --force` / `kill --all`
find and kill every process of it through its cgroups. Through the library and the CLI.
Root required."""
import json
import os
import select
import signal
import time

import pycontainer as pc
from helpers import load_factor, read_pipes
from test_cli import make_bundle, oci, wait_status  # noqa: F401  (pytest fixtures)


def run(c, script):
    """Start `script` in container c; (output, status)."""
    r, w = os.pipe()
    try:
        _, exits = c.start(pc.ProcessConfig(args=["sh", "-c", script], stdout=w, stderr=w))
    finally:
        os.close(w)
    out = read_pipes([r])[0]
    return out, exits.get(timeout=10)


def gone(pid):
    """Whether pid has exited (a zombie of ours counts: the exit watcher reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    while not all(gone(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if not gone(p)]
        time.sleep(0.02)


def wait_count(c, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(c.processes()) < n:
        assert time.monotonic() < deadline, c.processes()
        time.sleep(0.02)
    return c.processes()


# --- the library ------------------------------------------------------------------------

def test_joining_another_containers_pid_namespace(factory, busybox_rootfs):
    a = factory.create("pod", pc.Config(rootfs=busybox_rootfs))
    a_pid, _ = a.start(pc.ProcessConfig(args=["sleep", "1000"]))
    b = factory.create("ctr", pc.Config(rootfs=busybox_rootfs, namespaces={
        "mount": None, "pid": f"/proc/{a_pid}/ns/pid", "uts": None, "ipc": None, "net": None}))
    out, status = run(b, "tr '\\0' ' ' </proc/1/cmdline; echo; echo $$")
    assert status == 0
    *first, own = out.split()
    assert first == ["sleep", "1000"] and int(own) > 1        # the pod's init is pid 1, not we
    b_pid, b_exits = b.start(pc.ProcessConfig(args=["sh", "-c", "sleep 1000 & sleep 1000"]))
    assert os.readlink(f"/proc/{b_pid}/ns/pid") == os.readlink(f"/proc/{a_pid}/ns/pid")
    pids = wait_count(b, 2)
    assert b_pid in pids and a_pid not in pids
    b.signal(signal.SIGKILL, all=True)          # kill --all: every one of b's, none of a's
    assert b_exits.get(timeout=10) == -signal.SIGKILL
    wait_gone(pids)
    assert a.run_state() == pc.RunState.RUNNING
    b_pid, b_exits = b.start(pc.ProcessConfig(args=["sh", "-c", "sleep 1000 & sleep 1000"]))
    pids = wait_count(b, 2)
    a.destroy()                                  # the namespace's pid 1: all of it goes
    assert b_exits.get(timeout=10) == -signal.SIGKILL
    wait_gone(pids)
    b.destroy()


def test_no_pid_namespace_of_its_own(factory, busybox_rootfs):
    """hostPID: the container sees the host's processes; destroy kills all of its own
    (the init is not pid 1 of anything: its cgroup finds them)."""
    c = factory.create("host-pid", pc.Config(rootfs=busybox_rootfs,
                                             namespaces=("mount", "uts", "ipc", "net")))
    out, status = run(c, f"cat /proc/{os.getpid()}/comm; echo $$")
    assert status == 0
    comm, own = out.split()
    with open("/proc/self/comm") as f:
        assert comm == f.read().strip()        # our own process, seen from inside
    assert int(own) > 1
    pid, exits = c.start(pc.ProcessConfig(args=["sh", "-c", "sleep 1000 & sleep 1000"]))
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    pids = wait_count(c, 2)
    assert pid in pids
    # a handle loaded afresh trusts the recorded init (in our own pid namespace)
    again = factory.load("host-pid")
    assert again.run_state() == pc.RunState.RUNNING and again.processes() == pids
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    wait_gone(pids)


def test_joining_a_mount_namespace(factory, busybox_rootfs, tmp_path):
    """The joined mount namespace is used as it is: the other container's root and
    mounts (here a host directory bound at /data)."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "marker").write_text("from the pod\n")
    a = factory.create("pod", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/data", str(tmp_path / "shared"), options=("ro",))]))
    a_pid, _ = a.start(pc.ProcessConfig(args=["sleep", "1000"]))
    b = factory.create("ctr", pc.Config(rootfs=busybox_rootfs, namespaces={
        "mount": f"/proc/{a_pid}/ns/mnt", "pid": f"/proc/{a_pid}/ns/pid"}))
    out, status = run(b, "cat /data/marker; tr '\\0' ' ' </proc/1/cmdline")
    assert (out, status) == ("from the pod\nsleep 1000 ", 0)
    b.destroy()
    a.destroy()


# --- the CLI ----------------------------------------------------------------------------

def namespaces(spec, **paths):
    spec["linux"]["namespaces"] = [
        dict({"type": t}, **({"path": paths[t]} if t in paths else {}))
        for t in ("pid", "mount", "ipc", "uts", "network") if paths.get(t) != "absent"]


def test_cli_joining_a_pods_pid_namespace(oci, make_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "log")      # read below until the container's write end closes
    oci.ok("run", "-d", "-b", make_bundle(["sleep", "1000"]), "pause")
    pause = oci.state("pause")["pid"]

    def shape(s):
        namespaces(s, pid=f"/proc/{pause}/ns/pid")
        s["mounts"].append({"destination": "/run", "type": "bind", "source": str(out),
                            "options": ["rbind"]})
    b = make_bundle(["sh", "-c", "tr '\\0' ' ' </proc/1/cmdline >/run/log; "
                     "sleep 1000 & sleep 1000"],
                    mutate=shape)
    oci.ok("create", "-b", b, "app")
    oci.ok("start", "app")
    assert (out / "log").read_text() == "sleep 1000 "
    pids = [int(p) for p in oci.ok("ps", "--format", "json", "app").json()]
    assert len(pids) >= 1 and oci.state("app")["pid"] in pids
    oci.ok("kill", "--all", "app", "KILL")      # only the app's processes
    wait_status(oci, "app", "stopped")
    assert oci.state("pause")["status"] == "running"
    oci.ok("delete", "app")
    oci.ok("create", "-b", b, "app")
    oci.ok("start", "app")
    oci.ok("delete", "--force", "pause")        # the pod's pid 1: its containers go with it
    wait_status(oci, "app", "stopped")
    oci.ok("delete", "app")


def test_cli_host_pid(oci, make_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "log")      # read below until the container's write end closes

    def shape(s):
        namespaces(s, pid="absent")
        s["mounts"].append({"destination": "/run", "type": "bind", "source": str(out),
                            "options": ["rbind"]})
    b = make_bundle(["sh", "-c", f"cat /proc/{os.getpid()}/comm >/run/log; "
                     "sleep 1000 & sleep 1000"], mutate=shape)
    oci.ok("create", "-b", b, "hostpid")
    oci.ok("start", "hostpid")
    with open("/proc/self/comm") as f:
        assert (out / "log").read_text() == f.read()
    pids = [int(p) for p in oci.ok("ps", "--format", "json", "hostpid").json()]
    assert oci.state("hostpid")["pid"] in pids
    oci.ok("delete", "--force", "hostpid")
    wait_gone(pids)
    assert oci.ids() == []


def test_features_lists_the_joinable_namespaces(oci):
    notes = json.loads(oci.ok("features", root=False).out)["annotations"]
    assert notes["org.pycontainer.joinableNamespaces"].split(",") == [
        "mount", "pid", "uts", "ipc", "network", "cgroup"]


def test_cli_kill_all_after_the_init_exited(oci, make_bundle, tmp_path):
    """The init of a container in a pod's pid namespace exits and leaves a process
    running; `kill --all` (what containerd's shim then sends) ends it and succeeds, as
    runc's; plain `kill` still says the container is not running."""
    oci.ok("run", "-d", "-b", make_bundle(["sleep", "1000"]), "pause")
    pause = oci.state("pause")["pid"]
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "log")

    def shape(s):
        namespaces(s, pid=f"/proc/{pause}/ns/pid")
        s["mounts"].append({"destination": "/run", "type": "bind", "source": str(out),
                            "options": ["rbind"]})
    oci.ok("create", "-b", make_bundle(["sh", "-c", "sleep 1000 </dev/null >/dev/null 2>&1 & "
                                        "echo $! >/run/log"], mutate=shape), "app")
    oci.ok("start", "app")
    (out / "log").read_text()                  # the init wrote it and exits
    wait_status(oci, "app", "stopped")
    left = [int(p) for p in oci.ok("ps", "--format", "json", "app").json()]
    assert len(left) == 1
    fd = os.pidfd_open(left[0])
    try:
        assert "not running" in oci.fails("kill", "app", "KILL").err
        oci.ok("kill", "--all", "app", "KILL")
        assert select.select([fd], [], [], 10 * load_factor())[0], "kill --all left it running"
    finally:
        os.close(fd)
    oci.ok("delete", "app")
    oci.ok("kill", "--all", "pause", "KILL")
    wait_status(oci, "pause", "stopped")
    oci.ok("delete", "pause")

"""Real containers on a busybox rootfs (root required): the Container interface as a user
sees it. Every test destroys what it made; the `factory` fixture fails a test that leaves
a process, cgroup, descriptor or state directory behind."""
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

import pycontainer as pc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEV_ENTRIES = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
               "mqueue", "fd", "stdin", "stdout", "stderr"}
NS = ("ipc", "uts", "mnt", "net", "pid", "cgroup")


# --- helpers ----------------------------------------------------------------------------

from helpers import read_pipes, run, sh, sh_ok, start_bg, wait_for  # noqa: E402  (tests/helpers.py)


def wait_state(c, *states, timeout=5.0):
    wait_for(lambda: c.run_state() in states, timeout, f"run_state in {states}")
    return c.run_state()


def host_ns(name, pid="self"):
    return os.readlink(f"/proc/{pid}/ns/{name}")


def ppid_of(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2:].split()[1])


def children_in_cgroup(name):
    """Our child processes whose cgroup path names `name`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if ppid_of(entry) != os.getpid():
                continue
            with open(f"/proc/{entry}/cgroup") as f:
                if f"/{name}" in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read()


def python_env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_python(code, *args, timeout=60):
    """Run `code` in a fresh Python process (another user of the same root)."""
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, cwd=REPO, env=python_env())
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout.strip()


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper():
    """Make this process the subreaper of its descendants for a while: processes orphaned by
    a helper process come to us (this machine's pid 1 does not reap), and are reaped at the
    end. Container processes are never reaped here: they have no exit signal, and
    waitpid() without __WALL does not see them."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)


@pytest.fixture
def box(factory, busybox_rootfs):
    c = factory.create("box1", pc.Config(rootfs=busybox_rootfs, hostname="box1"))
    yield c
    c.destroy()


@pytest.fixture
def running(box):
    """box1 with `sleep 100` as its init: (container, init pid, init exits)."""
    pid, exits = start_bg(box, ["sleep", "100"])
    yield box, pid, exits
    box.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


@pytest.fixture
def rootfs_copy(busybox_rootfs, tmp_path):
    """A private copy of the busybox rootfs, for tests that change it."""
    dst = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dst, symlinks=True)
    os.chmod(dst, 0o755)      # the shared one is a 0700 pytest temp dir: other users need x
    return str(dst)


@pytest.fixture
def running_755(factory, rootfs_copy):
    """Like `running`, on a rootfs whose / non-root users may traverse."""
    c = factory.create("box1", pc.Config(rootfs=rootfs_copy, hostname="box1"))
    pid, exits = start_bg(c, ["sleep", "100"])
    yield c, pid, exits
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


# --- the user story ---------------------------------------------------------------------

def test_user_story(factory, busybox_rootfs):
    c = factory.create("box1", pc.Config(rootfs=busybox_rootfs, hostname="box1"))
    r, w = os.pipe()
    pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "echo $$ $(hostname)"],
                                          stdout=w))
    os.close(w)
    (out,) = read_pipes([r])
    assert out == "1 box1\n"
    assert exits.get(timeout=10) == 0
    assert pid > 1
    c.destroy()


def test_exit_code(box):
    assert sh(box, "exit 3")[0] == 3


def test_exit_code_of_a_joined_process(running):
    c, _, _ = running
    assert sh(c, "exit 7")[0] == 7
    assert sh(c, "exit 0")[0] == 0
    assert sh(c, "exit 255")[0] == 255
    assert sh(c, "exit 137")[0] == 137       # an exit code, not a signal


def test_program_found_on_the_default_path(running):
    """Without PATH in the environment a bare name is searched as execvp does."""
    c, _, _ = running
    status, out, _, _ = run(c, ["env"], env=["A=1"])
    assert (status, out) == (0, "A=1\n")


def test_signal_death_is_negative_signum(running):
    c, _, _ = running
    assert sh(c, "kill -9 $$")[0] == -signal.SIGKILL
    assert sh(c, "kill -TERM $$")[0] == -signal.SIGTERM


def test_init_killed_from_the_host(box):
    pid, exits = start_bg(box, ["sleep", "100"])
    os.kill(pid, signal.SIGKILL)
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert wait_state(box, pc.RunState.STOPPED) == pc.RunState.STOPPED


def test_pid_is_the_callers_child(box):
    pid, exits = start_bg(box, ["sleep", "100"])
    assert ppid_of(pid) == os.getpid()
    # the init of a new pid namespace: its own view is pid 1
    with open(f"/proc/{pid}/status") as f:
        nspid = next(l for l in f if l.startswith("NSpid:")).split()[1:]
    assert nspid == [str(pid), "1"]
    box.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_state_directory(factory, box):
    state_dir = os.path.join(factory.root, "box1")
    assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
    assert "state.json" in os.listdir(state_dir)
    assert not [n for n in os.listdir(state_dir) if n.endswith(".tmp")]
    assert factory.list() == ["box1"]


# --- joining ----------------------------------------------------------------------------

def test_second_start_joins(running):
    c, init_pid, _ = running
    out = sh_ok(c, "echo $$; hostname; readlink /proc/self/ns/pid; readlink /proc/1/ns/pid;"
                   "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -E '^[0-9]+$'")
    lines = out.splitlines()
    own_pid, hostname, own_pidns, init_pidns, init_cmdline = lines[:5]
    pids = set(lines[5:])
    assert own_pid != "1"
    assert hostname == "box1"
    assert own_pidns == init_pidns == host_ns("pid", init_pid)
    assert init_cmdline.strip() == "sleep 100"
    assert "1" in pids and own_pid in pids
    assert len(pids) < 10     # a fresh /proc: only the container's processes


def test_joined_process_shares_every_namespace_of_init(running):
    c, init_pid, _ = running
    out = sh_ok(c, "for n in ipc uts mnt net pid; do readlink /proc/self/ns/$n; done")
    assert out.split() == [host_ns(n, init_pid) for n in ("ipc", "uts", "mnt", "net", "pid")]


def test_joined_pid_is_the_callers_child(running):
    c, init_pid, _ = running
    pid, exits = start_bg(c, ["sleep", "100"])
    assert ppid_of(pid) == os.getpid()
    assert sorted(c.processes()) == sorted([init_pid, pid])
    os.kill(pid, signal.SIGKILL)
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert c.processes() == [init_pid]


def test_processes_lists_host_pids(running):
    c, init_pid, _ = running
    assert c.processes() == [init_pid]
    started = [start_bg(c, ["sleep", "100"]) for _ in range(3)]
    assert sorted(c.processes()) == sorted([init_pid] + [p for p, _ in started])
    for p, _ in started:
        assert os.path.exists(f"/proc/{p}")


def test_joined_user_and_groups(running_755):
    c, _, _ = running_755
    out = sh_ok(c, "id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
                user="1000:1000", additional_gids=[5, 6])
    lines = out.splitlines()
    assert lines[0] == "1000"
    assert lines[1] == "1000"
    assert set(lines[2].split()) <= {"1000", "5", "6"} and {"5", "6"} <= set(lines[2].split())
    status = dict(l.split(":", 1) for l in lines[3:])
    assert status["Uid"].split() == ["1000"] * 4
    assert status["Gid"].split() == ["1000"] * 4
    assert sorted(status["Groups"].split()) == ["5", "6"]


def test_init_user(factory, rootfs_copy):
    box = factory.create("user", pc.Config(rootfs=rootfs_copy))
    out = sh_ok(box, "id -u; id -g; grep Groups: /proc/self/status", user="65534:65534")
    assert out.splitlines()[:2] == ["65534", "65534"]
    assert out.splitlines()[2].split(":")[1].split() == []
    box.destroy()


def test_default_user_is_root_without_groups(running):
    c, _, _ = running
    out = sh_ok(c, "id -u; id -g; grep Groups: /proc/self/status")
    assert out.splitlines()[:2] == ["0", "0"]
    assert out.splitlines()[2].split(":")[1].split() == []


def test_env_default_and_explicit(running):
    c, _, _ = running
    status, out, _, _ = run(c, ["/bin/env"])
    assert status == 0
    assert sorted(out.splitlines()) == sorted(pc.Config().env)
    status, out, _, _ = run(c, ["/bin/env"], env=["FOO=bar", "X=1=2"])
    assert sorted(out.splitlines()) == ["FOO=bar", "X=1=2"]
    # PATH from the process env is what finds a bare program name
    status, out, _, _ = run(c, ["env"], env=["PATH=/bin"])
    assert (status, out) == (0, "PATH=/bin\n")


def test_env_from_config(factory, busybox_rootfs):
    c = factory.create("envbox", pc.Config(rootfs=busybox_rootfs, env=["A=1", "PATH=/bin"],
                                           cwd="/etc"))
    try:
        status, out, _, _ = run(c, ["env"])
        assert (status, sorted(out.splitlines())) == (0, ["A=1", "PATH=/bin"])
        assert run(c, ["pwd"])[1] == "/etc\n"
        assert run(c, ["pwd"], cwd="/tmp")[1] == "/tmp\n"
    finally:
        c.destroy()


def test_cwd_default_and_explicit(running):
    c, _, _ = running
    assert run(c, ["/bin/pwd"])[:2] == (0, "/\n")
    assert run(c, ["/bin/pwd"], cwd="/tmp")[:2] == (0, "/tmp\n")
    assert run(c, ["/bin/pwd"], cwd="/etc/")[1] in ("/etc\n", "/etc/\n")


def test_stdin_from_a_pipe(running):
    c, _, _ = running
    r, w = os.pipe()
    os.write(w, b"hello through stdin\n")
    os.close(w)
    try:
        status, out, _, _ = run(c, ["cat"], stdin=r)
    finally:
        os.close(r)
    assert (status, out) == (0, "hello through stdin\n")


def test_stdout_stderr_to_files(running, tmp_path):
    c, _, _ = running
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "echo to-out; echo to-err >&2"],
                                              stdout=out, stderr=err))
        assert exits.get(timeout=10) == 0
    assert (tmp_path / "out").read_text() == "to-out\n"
    assert (tmp_path / "err").read_text() == "to-err\n"


def test_stdio_none_is_dev_null(running, tmp_path):
    c, _, _ = running
    with open(tmp_path / "out", "w") as out:
        pid, exits = c.start(pc.ProcessConfig(
            args=["/bin/sh", "-c", "readlink /proc/self/fd/0; readlink /proc/self/fd/2; cat; echo end"],
            stdout=out))
        assert exits.get(timeout=10) == 0
    assert (tmp_path / "out").read_text() == "/dev/null\n/dev/null\nend\n"


def test_stdio_same_fd_for_out_and_err(running):
    c, _, _ = running
    r, w = os.pipe()
    try:
        pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "echo a; echo b >&2"],
                                              stdout=w, stderr=w))
    finally:
        os.close(w)
    (out,) = read_pipes([r])
    assert exits.get(timeout=10) == 0
    assert out == "a\nb\n"


def test_stdio_low_fd_numbers_are_not_clobbered(running, tmp_path):
    """stdout=2 and stderr=1 swap the caller's own stdout and stderr."""
    c, _, _ = running
    saved = os.dup(1), os.dup(2)
    try:
        with open(tmp_path / "one", "w") as one, open(tmp_path / "two", "w") as two:
            os.dup2(one.fileno(), 1)
            os.dup2(two.fileno(), 2)
            pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "echo O; echo E >&2"],
                                                  stdout=2, stderr=1))
            status = exits.get(timeout=10)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    assert status == 0
    assert (tmp_path / "two").read_text() == "O\n"
    assert (tmp_path / "one").read_text() == "E\n"


def test_init_exit_kills_joined_processes(box):
    init_pid, init_exits = start_bg(box, ["sleep", "100"])
    joined = [start_bg(box, ["sleep", "100"]) for _ in range(3)]
    os.kill(init_pid, signal.SIGKILL)
    assert init_exits.get(timeout=10) == -signal.SIGKILL
    for _, exits in joined:
        assert exits.get(timeout=10) == -signal.SIGKILL
    assert wait_state(box, pc.RunState.STOPPED) == pc.RunState.STOPPED
    assert box.processes() == []


def test_init_exiting_by_itself_kills_joined_processes(box):
    r, w = os.pipe()
    # init waits for a line on stdin, then exits 0
    pid, init_exits = box.start(pc.ProcessConfig(args=["/bin/sh", "-c", "read x"], stdin=r))
    os.close(r)
    joined = start_bg(box, ["sleep", "100"])
    os.write(w, b"go\n")
    os.close(w)
    assert init_exits.get(timeout=10) == 0
    assert joined[1].get(timeout=10) == -signal.SIGKILL
    assert wait_state(box, pc.RunState.STOPPED) == pc.RunState.STOPPED


def test_clean_signal_state_and_umask(running):
    """Python blocks nothing but ignores SIGPIPE and SIGXFSZ; a container process starts
    with no signal blocked or ignored, and the default umask."""
    c, init_pid, _ = running
    with open(f"/proc/{init_pid}/status") as f:
        init_sig = {l.split(":")[0]: l.split()[1] for l in f if l.startswith(("SigBlk", "SigIgn"))}
    assert init_sig == {"SigBlk": "0000000000000000", "SigIgn": "0000000000000000"}
    status, out, _, _ = run(c, ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
    assert status == 0
    assert out.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]
    assert sh_ok(c, "umask") == "0022\n"


def test_signals_the_caller_ignores_are_not_inherited(factory, busybox_rootfs):
    """A caller thread ignoring SIGINT and SIGQUIT (as system() does while it waits) gives
    neither to a container's init nor to a joined process."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGQUIT)}
    c = factory.create("ign", pc.Config(rootfs=busybox_rootfs))
    try:
        init_pid, _ = start_bg(c, ["sleep", "100"])
        with open(f"/proc/{init_pid}/status") as f:
            assert "SigIgn:\t0000000000000000\n" in f.read()
        status, out, _, _ = run(c, ["grep", "SigIgn", "/proc/self/status"])
        assert (status, out) == (0, "SigIgn:\t0000000000000000\n")
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        c.destroy()


# --- namespaces -------------------------------------------------------------------------

def test_hostname_and_domainname(factory, busybox_rootfs):
    """An underscore too, as runc and crun set it (no DNS name's, but the kernel's)."""
    c = factory.create("named", pc.Config(rootfs=busybox_rootfs, hostname="h_1",
                                          domainname="example.org"))
    try:
        out = sh_ok(c, "hostname; cat /proc/sys/kernel/domainname")
        assert out == "h_1\nexample.org\n"
        assert socket.gethostname() != "h_1"
    finally:
        c.destroy()


def test_hostname_unset_keeps_a_copy_of_the_hosts(factory, busybox_rootfs):
    c = factory.create("noname", pc.Config(rootfs=busybox_rootfs))
    try:
        assert sh_ok(c, "hostname") == socket.gethostname() + "\n"
    finally:
        c.destroy()


def test_network_namespace_has_only_lo_up(box):
    out = sh_ok(box, "cat /proc/net/dev; echo ---; ip link")
    dev, links = out.split("---\n")
    names = [l.split(":")[0].strip() for l in dev.splitlines()[2:]]
    assert names == ["lo"]
    link_lines = [l for l in links.splitlines() if not l.startswith(" ")]
    assert len(link_lines) == 1
    assert ": lo:" in link_lines[0] and "UP" in link_lines[0]


def test_namespaces_differ_from_the_host(box):
    out = sh_ok(box, "for n in ipc uts mnt net pid; do readlink /proc/self/ns/$n; done")
    inside = out.split()
    for name, value in zip(("ipc", "uts", "mnt", "net", "pid"), inside):
        assert value.startswith(f"{name}:[")
        assert value != host_ns(name), name
    # not asked for: the cgroup namespace is the host's
    assert sh_ok(box, "readlink /proc/self/ns/cgroup").strip() == host_ns("cgroup")


def test_without_net_namespace_the_host_network_is_shared(factory, busybox_rootfs):
    c = factory.create("hostnet", pc.Config(rootfs=busybox_rootfs,
                                            namespaces=("mount", "pid", "uts", "ipc")))
    try:
        out = sh_ok(c, "readlink /proc/self/ns/net; readlink /proc/self/ns/uts")
        net, uts = out.split()
        assert net == host_ns("net")
        assert uts != host_ns("uts")
        # and stats() has no interfaces of its own to report
        start_bg(c, ["sleep", "100"])
        assert c.stats().interfaces == []
    finally:
        c.destroy()


def test_cgroup_namespace_on_request(factory, busybox_rootfs):
    c = factory.create("cgns", pc.Config(
        rootfs=busybox_rootfs, namespaces=("mount", "pid", "uts", "ipc", "net", "cgroup")))
    try:
        out = sh_ok(c, "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup")
        ns, *lines = out.splitlines()
        assert ns != host_ns("cgroup")
        assert lines and all(l.rsplit(":", 1)[1] == "/" for l in lines), lines
        init_pid, _ = start_bg(c, ["sleep", "100"])
        # a joined process enters the same cgroup namespace
        out = sh_ok(c, "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup")
        ns, *lines = out.splitlines()
        assert ns == host_ns("cgroup", init_pid)
        assert lines and all(l.rsplit(":", 1)[1] == "/" for l in lines), lines
    finally:
        c.destroy()


def test_processes_are_in_the_containers_cgroup(running):
    c, init_pid, _ = running
    with open(f"/proc/{init_pid}/cgroup") as f:
        init_cgroups = f.read()
    pid, exits = start_bg(c, ["sleep", "100"])
    with open(f"/proc/{pid}/cgroup") as f:
        assert f.read() == init_cgroups
    assert "/pycontainer/" in init_cgroups


# --- mounts -----------------------------------------------------------------------------

def test_proc_is_fresh(box):
    out = sh_ok(box, "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -E '^[0-9]+$'")
    first, *pids = out.splitlines()
    assert first.startswith("/bin/sh -c")
    assert "1" in pids and len(pids) < 10


def test_sys_is_read_only(box):
    status, out, err = sh(box, "grep ' /sys ' /proc/self/mountinfo; echo 1 > /sys/kernel/profiling")
    assert status != 0
    assert "Read-only" in err
    assert " ro," in out.splitlines()[0] or " ro " in out.splitlines()[0]


def test_dev(box):
    out = sh_ok(box, "ls -A /dev; echo ---; echo hi > /dev/null && wc -c < /dev/null;"
                     "head -c 4 /dev/zero | wc -c; head -c 8 /dev/urandom | wc -c;"
                     "[ -c /dev/null ] && [ -c /dev/zero ] && [ -c /dev/full ] && echo chars;"
                     "readlink /dev/fd; readlink /dev/stdin; readlink /dev/ptmx")
    listing, rest = out.split("---\n")
    assert set(listing.split()) == DEV_ENTRIES
    assert rest.split() == ["0", "4", "8", "chars", "/proc/self/fd", "/proc/self/fd/0",
                            "pts/ptmx"]
    status, _, err = sh(box, "echo x > /dev/full")
    assert status != 0 and "space" in err.lower()


def test_readonly_rootfs_with_a_tmpfs(factory, busybox_rootfs):
    c = factory.create("ro", pc.Config(rootfs=busybox_rootfs, readonly_rootfs=True,
                                       mounts=[pc.Mount("/tmp", type="tmpfs")]))
    try:
        status, _, err = sh(c, "touch /x")
        assert status != 0 and "Read-only" in err
        assert sh_ok(c, "touch /tmp/x && echo ok > /tmp/x && cat /tmp/x") == "ok\n"
        assert not os.path.exists(os.path.join(busybox_rootfs, "x"))
        assert not os.path.exists(os.path.join(busybox_rootfs, "tmp", "x"))
    finally:
        c.destroy()


def test_writable_rootfs_writes_through(factory, rootfs_copy):
    c = factory.create("rw", pc.Config(rootfs=rootfs_copy))
    try:
        sh_ok(c, "echo written > /root/file")
        with open(os.path.join(rootfs_copy, "root", "file")) as f:
            assert f.read() == "written\n"
    finally:
        c.destroy()


def test_bind_mounts(factory, busybox_rootfs, tmp_path):
    rw = tmp_path / "rw"
    ro = tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (rw / "host-file").write_text("from the host\n")
    (ro / "host-file").write_text("read only\n")
    c = factory.create("binds", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/data", str(rw)),
        pc.Mount("/tmp", str(ro), options=("ro",)),
    ]))
    try:
        assert sh_ok(c, "cat /data/host-file; echo from-container > /data/c-file;"
                        "cat /tmp/host-file") == "from the host\nread only\n"
        assert (rw / "c-file").read_text() == "from-container\n"
        status, _, err = sh(c, "touch /tmp/nope")
        assert status != 0 and "Read-only" in err
        assert not (ro / "nope").exists()
    finally:
        c.destroy()


def test_bind_mount_of_a_single_file(factory, rootfs_copy, tmp_path):
    f = tmp_path / "motd"
    f.write_text("one file\n")
    c = factory.create("filebind", pc.Config(rootfs=rootfs_copy, mounts=[
        pc.Mount("/etc/motd", str(f)),                       # destination made by the runtime
        pc.Mount("/etc/passwd", str(f), options=("ro",)),    # over an existing file
    ]))
    try:
        assert sh_ok(c, "cat /etc/motd; cat /etc/passwd; [ -f /etc/motd ] && echo file") == \
            "one file\none file\nfile\n"
        sh_ok(c, "echo changed > /etc/motd")
        assert f.read_text() == "changed\n"
        assert sh(c, "echo x > /etc/passwd")[0] != 0
    finally:
        c.destroy()
    # the rootfs's own /etc/passwd was never touched
    with open(os.path.join(rootfs_copy, "etc", "passwd")) as p:
        assert p.read().startswith("root:")


def test_tmpfs_with_size(factory, busybox_rootfs):
    c = factory.create("tmpfs", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/tmp", type="tmpfs", options=("size=1m", "mode=1777"))]))
    try:
        out = sh_ok(c, "grep ' /tmp ' /proc/self/mountinfo; stat -c %a /tmp;"
                       "dd if=/dev/zero of=/tmp/small bs=1k count=512 2>/dev/null && echo fits")
        line, mode, fits = out.splitlines()
        assert "tmpfs" in line and "size=1024k" in line
        assert mode == "1777"
        assert fits == "fits"
        status, _, err = sh(c, "dd if=/dev/zero of=/tmp/big bs=1k count=2048")
        assert status != 0 and "space" in err.lower()
    finally:
        c.destroy()


def test_mount_destination_symlink_to_root_stays_inside(factory, rootfs_copy, tmp_path):
    """etc/evil -> / : the bind must land inside the container (or fail), never on the host."""
    os.symlink("/", os.path.join(rootfs_copy, "etc", "evil"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "MARKER").write_text("marker\n")
    host_root = sorted(os.listdir("/"))
    host_mounts = mountinfo()
    c = factory.create("evil", pc.Config(rootfs=rootfs_copy,
                                         mounts=[pc.Mount("/etc/evil", str(src))]))
    try:
        try:
            pid, exits = start_bg(c, ["sleep", "100"])
        except pc.ContainerSystemError as exc:
            # refusing is fine: a mount over the container's own root is not supported
            assert exc.stage == "mount" and "/etc/evil" in str(exc)
            assert c.run_state() == pc.RunState.CREATED
        else:
            assert mountinfo() == host_mounts
            assert sorted(os.listdir("/")) == host_root
            assert "MARKER" not in os.listdir("/")
        assert sorted(os.listdir("/")) == host_root
        assert mountinfo() == host_mounts
    finally:
        c.destroy()
    assert sorted(os.listdir("/")) == host_root


def test_mount_destination_absolute_symlink_resolves_in_the_container(factory, rootfs_copy,
                                                                      tmp_path):
    """etc/link -> <an absolute path that exists on the host too>: the bind goes to the
    container's copy of that path, not the host's."""
    host_victim = tmp_path / "victim"
    host_victim.mkdir()
    (host_victim / "untouched").write_text("host\n")
    inside = os.path.join(rootfs_copy, str(host_victim).lstrip("/"))
    os.makedirs(inside)
    os.symlink(str(host_victim), os.path.join(rootfs_copy, "etc", "link"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "MARKER").write_text("marker\n")
    c = factory.create("link", pc.Config(rootfs=rootfs_copy,
                                         mounts=[pc.Mount("/etc/link", str(src))]))
    try:
        out = sh_ok(c, f"ls {host_victim}; echo ---; ls /etc/link/")
        assert out == "MARKER\n---\nMARKER\n"
        assert sorted(os.listdir(host_victim)) == ["untouched"]
        assert os.listdir(inside) == []
    finally:
        c.destroy()


def test_container_mounts_are_invisible_to_the_host(factory, busybox_rootfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    before = mountinfo()
    c = factory.create("mounts", pc.Config(rootfs=busybox_rootfs, readonly_rootfs=True, mounts=[
        pc.Mount("/data", str(src)), pc.Mount("/tmp", type="tmpfs")]))
    try:
        pid, exits = start_bg(c, ["sleep", "100"])
        sh_ok(c, "touch /data/x /tmp/y")
        assert mountinfo() == before
        # the container does see its mounts
        with open(f"/proc/{pid}/mountinfo") as f:
            theirs = f.read()
        assert " /data " in theirs and " /tmp " in theirs and " /proc " in theirs
    finally:
        c.destroy()
    assert mountinfo() == before


# --- the host image (rootfs=None) -------------------------------------------------------

def test_host_image(factory):
    c = factory.create("hostimg", pc.Config())
    host_mounts = mountinfo()
    try:
        status, out, err, _ = run(c, ["/bin/sh", "-c", "echo hello from $(hostname) as pid $$"])
        assert (status, out) == (0, f"hello from {socket.gethostname()} as pid 1\n"), err
        status, _, err = sh(c, "touch /pycontainer-should-not-exist")
        assert status != 0
        assert not os.path.exists("/pycontainer-should-not-exist")
        out = sh_ok(c, "ls -A /tmp; ls -A /run; echo ---; touch /tmp/a /run/b && echo ok;"
                       "ls /proc | grep -E '^[0-9]+$' | wc -l; cat /proc/1/cmdline | tr '\\0' ' '")
        empty, rest = out.split("---\n")
        assert empty == ""
        ok, nprocs, cmdline = rest.splitlines()
        assert ok == "ok"
        assert int(nprocs) < 10
        assert cmdline.startswith("/bin/sh -c")
        assert not os.path.exists("/run/b")
        assert mountinfo() == host_mounts
    finally:
        c.destroy()


# --- descriptors and cwd ----------------------------------------------------------------

def test_inheritable_fds_do_not_reach_the_container(box, tmp_path, monkeypatch):
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    f = open(tmp_path / "open-file", "w")
    os.set_inheritable(f.fileno(), True)
    monkeypatch.chdir(tmp_path)
    try:
        status, out, err = sh(box, "ls /proc/self/fd; echo ---; readlink /proc/self/cwd; ls")
        fds, rest = out.split("---\n")
        # 0 1 2 and the directory ls itself opened
        assert set(fds.split()) <= {"0", "1", "2", "3"} and {"0", "1", "2"} <= set(fds.split())
        cwd, *listing = rest.splitlines()
        assert cwd == "/"
        assert "bin" in listing and "open-file" not in listing
        # the joined path too
        start_bg(box, ["sleep", "100"])
        out = sh_ok(box, "ls /proc/self/fd")
        assert set(out.split()) <= {"0", "1", "2", "3"}
    finally:
        os.close(r)
        os.close(w)
        f.close()


# --- run states -------------------------------------------------------------------------

def test_run_state_transitions(factory, busybox_rootfs):
    c = factory.create("states", pc.Config(rootfs=busybox_rootfs))
    assert c.run_state() == pc.RunState.CREATED
    with pytest.raises(pc.ContainerNotRunningError) as ei:
        c.pause()
    assert "states" in str(ei.value) and "pause" in str(ei.value)
    with pytest.raises(pc.ContainerNotRunningError):
        c.resume()
    assert c.processes() == []

    pid, exits = start_bg(c, ["sleep", "100"])
    assert c.run_state() == pc.RunState.RUNNING
    c.resume()                                   # no-op when running
    assert c.run_state() == pc.RunState.RUNNING

    c.pause()
    assert c.run_state() in (pc.RunState.PAUSING, pc.RunState.PAUSED)
    assert wait_state(c, pc.RunState.PAUSED) == pc.RunState.PAUSED
    c.pause()                                    # no-op when paused
    assert c.run_state() == pc.RunState.PAUSED
    with pytest.raises(pc.ContainerPausedError) as ei:
        c.start(pc.ProcessConfig(args=["/bin/true"]))
    assert "states" in str(ei.value) and "start" in str(ei.value)
    assert c.processes() == [pid]
    assert c.stats().cgroup_stats.pids_stats.current == 1
    c.resume()
    assert c.run_state() == pc.RunState.RUNNING
    c.resume()
    assert c.run_state() == pc.RunState.RUNNING

    os.kill(pid, signal.SIGKILL)
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert wait_state(c, pc.RunState.STOPPED) == pc.RunState.STOPPED
    with pytest.raises(pc.ContainerNotRunningError):
        c.pause()
    with pytest.raises(pc.ContainerNotRunningError):
        c.resume()
    c.destroy()


FROZEN_STOPPED = r"""
import os, signal, sys, time, pycontainer as pc
root, rootfs = sys.argv[1:3]
c = pc.Factory(root=root).create("frozen-stop", pc.Config(rootfs=rootfs))
pid, exits = c.start(pc.ProcessConfig(args=["sleep", "100"]))
c.pause()
while c.run_state() != pc.RunState.PAUSED:
    time.sleep(0.005)
os.kill(pid, signal.SIGKILL)              # SIGKILL reaches frozen tasks
assert exits.get(timeout=10) == -signal.SIGKILL
while c.run_state() != pc.RunState.STOPPED:
    time.sleep(0.005)
print("stopped", flush=True)
r, w = os.pipe()
pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "echo $$"], stdout=w))
os.close(w)
print(os.read(r, 100).decode().strip(), exits.get(timeout=10), flush=True)
c.destroy()
"""


def test_start_after_init_died_while_paused(factory, busybox_rootfs):
    """A paused container whose init is killed is STOPPED; a start there must start a fresh
    init (or refuse), never block. Run in a helper process so a hang cannot hang the suite;
    this process is its subreaper, so anything the helper leaves is ours to clean up."""
    with subreaper():
        p = subprocess.Popen([sys.executable, "-c", FROZEN_STOPPED, factory.root, busybox_rootfs],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=REPO, env=python_env())
        try:
            out, err = p.communicate(timeout=20)
            hung = False
        except subprocess.TimeoutExpired:
            hung = True
            p.kill()
            p.wait()
            # The helper's child, frozen before exec, is ours now. It holds the helper's
            # descriptors (the container's lock among them, so destroy() would block, and
            # the helper's output pipes): kill it first, then destroy.
            for pid in children_in_cgroup("frozen-stop"):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            out, err = p.communicate()
        finally:
            if "frozen-stop" in factory.list():
                factory.load("frozen-stop").destroy()
    assert not hung, f"start() on a STOPPED container with a frozen cgroup hung; output {out!r}"
    assert p.returncode == 0, err
    assert out.split() == ["stopped", "1", "0"]


def test_start_on_stopped_creates_fresh_namespaces(box):
    first = sh_ok(box, "echo $$; readlink /proc/self/ns/pid; readlink /proc/self/ns/net")
    assert box.run_state() == pc.RunState.STOPPED
    second = sh_ok(box, "echo $$; readlink /proc/self/ns/pid; readlink /proc/self/ns/net")
    assert box.run_state() == pc.RunState.STOPPED
    stopped = box.stats()
    assert stopped.cgroup_stats.pids_stats.current == 0
    assert box.processes() == []
    pid1, pidns1, netns1 = first.split()
    pid2, pidns2, netns2 = second.split()
    assert pid1 == pid2 == "1"
    assert pidns1 != pidns2
    assert netns1 != netns2


def test_destroy(factory, busybox_rootfs):
    c = factory.create("gone", pc.Config(rootfs=busybox_rootfs))
    pid, exits = start_bg(c, ["sleep", "100"])
    joined, jexits = start_bg(c, ["sleep", "100"])
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert jexits.get(timeout=10) == -signal.SIGKILL
    assert factory.list() == []
    assert not os.path.exists(os.path.join(factory.root, "gone"))
    calls = {
        "run_state": lambda: c.run_state(),
        "start": lambda: c.start(pc.ProcessConfig(args=["/bin/true"])),
        "processes": lambda: c.processes(),
        "stats": lambda: c.stats(),
        "pause": lambda: c.pause(),
        "resume": lambda: c.resume(),
    }
    for name, call in calls.items():
        with pytest.raises(pc.ContainerNotExistError) as ei:
            call()
        assert "gone" in str(ei.value), name
    c.destroy()        # twice is fine
    c.destroy()
    with pytest.raises(pc.ContainerNotExistError):
        factory.load("gone")
    assert not os.path.exists(os.path.join(factory.root, "gone"))


def test_destroy_of_a_created_and_of_a_paused_container(factory, busybox_rootfs):
    created = factory.create("created", pc.Config(rootfs=busybox_rootfs))
    created.destroy()
    assert factory.list() == []
    paused = factory.create("paused", pc.Config(rootfs=busybox_rootfs))
    pid, exits = start_bg(paused, ["sleep", "100"])
    joined, jexits = start_bg(paused, ["sleep", "100"])
    paused.pause()
    wait_state(paused, pc.RunState.PAUSED)
    paused.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert jexits.get(timeout=10) == -signal.SIGKILL
    assert factory.list() == []


def test_same_id_after_destroy_is_a_new_container(factory, busybox_rootfs):
    old = factory.create("reuse", pc.Config(rootfs=busybox_rootfs, hostname="old"))
    start_bg(old, ["sleep", "100"])
    old.destroy()
    new = factory.create("reuse", pc.Config(rootfs=busybox_rootfs, hostname="new"))
    try:
        assert new.run_state() == pc.RunState.CREATED
        for call in (old.run_state, old.processes, old.stats, old.pause, old.resume,
                     lambda: old.start(pc.ProcessConfig(args=["/bin/true"]))):
            with pytest.raises(pc.ContainerNotExistError):
                call()
        pid, exits = start_bg(new, ["sleep", "100"])
        old.destroy()                     # must not touch the new container
        assert new.run_state() == pc.RunState.RUNNING
        assert new.processes() == [pid]
        assert sh_ok(new, "hostname") == "new\n"
        assert factory.load("reuse").config.hostname == "new"
    finally:
        new.destroy()


def test_a_handle_that_paused_sees_another_handle_destroy_and_reuse_the_id(factory,
                                                                          busybox_rootfs):
    """A handle that has paused keeps its freezer files open and answers run_state, pause
    and resume without re-reading state.json while they still read: after another handle
    destroys the container and a new one takes the id, none of its answers may be the
    old container's, or touch the new one. Each call gets a handle left paused, so each
    fast path (resume's has no init check: the freezer files are its only guard) meets
    the removed cgroup's files first."""
    def paused_handle():
        c = factory.load("kept")
        c.resume()                 # a pause or resume that writes opens the kept files
        c.pause()
        wait_state(c, pc.RunState.PAUSED)
        assert c.internal.cgroups.kept_freezer_state() is not None   # the fast path's precondition
        return c

    first = factory.create("kept", pc.Config(rootfs=busybox_rootfs))
    try:
        start_bg(first, ["sleep", "100"])
        olds = {"resume": paused_handle(), "run_state": paused_handle(),
                "pause": paused_handle()}
    finally:
        factory.load("kept").destroy()
    new = factory.create("kept", pc.Config(rootfs=busybox_rootfs))
    try:
        start_bg(new, ["sleep", "100"])
        new.pause()
        wait_state(new, pc.RunState.PAUSED)
        for name, old in olds.items():
            with pytest.raises(pc.ContainerNotExistError):
                getattr(old, name)()
            assert new.run_state() == pc.RunState.PAUSED    # not thawed by an old handle
        new.resume()
        assert new.run_state() == pc.RunState.RUNNING
    finally:
        new.destroy()


def test_a_handle_that_paused_sees_its_init_exit(factory, busybox_rootfs):
    """The kept-freezer answers still ask the kernel whether the init lives."""
    c = factory.create("kept-stop", pc.Config(rootfs=busybox_rootfs))
    try:
        pid, exits = start_bg(c, ["sleep", "100"])
        c.pause()
        wait_state(c, pc.RunState.PAUSED)
        c.resume()
        os.kill(pid, signal.SIGKILL)
        assert exits.get(timeout=10) == -signal.SIGKILL
        assert c.run_state() == pc.RunState.STOPPED
        with pytest.raises(pc.ContainerNotRunningError):
            c.pause()
    finally:
        c.destroy()


def test_paused_processes_are_frozen(factory, busybox_rootfs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    counter = data / "counter"
    c = factory.create("frozen", pc.Config(rootfs=busybox_rootfs,
                                           mounts=[pc.Mount("/data", str(data))]))
    try:
        start_bg(c, ["/bin/sh", "-c", "while true; do echo x >> /data/counter; done"])
        size = lambda: counter.stat().st_size if counter.exists() else 0
        wait_for(lambda: size() > 0, what="the counter to start")
        c.pause()
        wait_state(c, pc.RunState.PAUSED)
        frozen_at = size()
        time.sleep(0.2)
        assert size() == frozen_at
        c.resume()
        wait_for(lambda: size() > frozen_at, what="the counter to advance after resume")
    finally:
        c.destroy()


# --- Factory ----------------------------------------------------------------------------

def test_create_existing_id(factory, box, busybox_rootfs):
    with pytest.raises(pc.IdInUseError) as ei:
        factory.create("box1", pc.Config(rootfs=busybox_rootfs))
    assert "box1" in str(ei.value)
    assert box.run_state() == pc.RunState.CREATED     # the existing one is untouched


def test_extra_is_what_state_json_gives_back(factory, busybox_rootfs):
    """The creating handle's extra() says what a loaded one says (JSON's types), and
    what JSON cannot hold is refused before anything is made."""
    c = factory.create("extra", pc.Config(rootfs=busybox_rootfs), extra={1: (2, "x")})
    try:
        assert c.extra() == {"1": [2, "x"]}
        assert factory.load("extra").extra() == {"1": [2, "x"]}
    finally:
        c.destroy()
    with pytest.raises(pc.ConfigInvalidError) as ei:
        factory.create("bad-extra", pc.Config(rootfs=busybox_rootfs), extra={"a": object()})
    assert "extra" in str(ei.value) and "bad-extra" in str(ei.value)
    assert factory.list() == []
    assert not os.path.exists(os.path.join(factory.root, "bad-extra"))


def test_list_and_load(factory, busybox_rootfs):
    made = [factory.create(cid, pc.Config(rootfs=busybox_rootfs, hostname="h"))
            for cid in ("b", "a", "c.d", "x+y")]
    try:
        assert factory.list() == ["a", "b", "c.d", "x+y"]
        loaded = factory.load("c.d")
        assert loaded.id == "c.d"
        assert loaded.config == made[2].config
        assert loaded.run_state() == pc.RunState.CREATED
        pid, exits = start_bg(made[2], ["sleep", "100"])
        assert loaded.run_state() == pc.RunState.RUNNING
        assert loaded.processes() == [pid]
        # a start through the loaded object joins the same container
        assert sh_ok(loaded, "echo $$; hostname").split()[1] == "h"
        assert sh_ok(loaded, "echo $$").strip() != "1"
    finally:
        for c in made:
            c.destroy()
    assert factory.list() == []


@pytest.mark.parametrize("cid", ["x" * 255, "x" * 256, "y" * 1024, "a.b" * 100])
def test_long_valid_ids(factory, busybox_rootfs, cid):
    """Any id check_id accepts (up to 1024 characters) names a container."""
    c = factory.create(cid, pc.Config(rootfs=busybox_rootfs))
    try:
        assert factory.list() == [cid]
        assert factory.load(cid).id == cid
        assert sh_ok(c, "echo $$") == "1\n"
    finally:
        c.destroy()
    assert factory.list() == []


CROSS = r"""
import sys, pycontainer as pc
root, cid, op = sys.argv[1:4]
c = pc.Factory(root=root).load(cid)
if op == "state":
    print(c.run_state().value)
elif op == "join":
    import os
    r, w = os.pipe()
    pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", "echo $$ $(hostname)"], stdout=w))
    os.close(w)
    out = os.read(r, 100).decode().strip()
    print(out, exits.get(timeout=10))
elif op == "processes":
    print(" ".join(map(str, c.processes())))
else:
    getattr(c, op)()
    print(c.run_state().value if op != "destroy" else "destroyed")
"""


def test_another_process(factory, busybox_rootfs):
    c = factory.create("shared", pc.Config(rootfs=busybox_rootfs, hostname="shared"))
    root = factory.root
    try:
        assert run_python(CROSS, root, "shared", "state") == "created"
        pid, exits = start_bg(c, ["sleep", "100"])
        assert run_python(CROSS, root, "shared", "state") == "running"
        assert run_python(CROSS, root, "shared", "processes") == str(pid)
        joined_pid, host, status = run_python(CROSS, root, "shared", "join").split()
        assert joined_pid != "1" and host == "shared" and status == "0"
        assert run_python(CROSS, root, "shared", "pause") in ("pausing", "paused")
        assert wait_state(c, pc.RunState.PAUSED) == pc.RunState.PAUSED
        assert run_python(CROSS, root, "shared", "state") == "paused"
        assert run_python(CROSS, root, "shared", "resume") == "running"
        assert c.run_state() == pc.RunState.RUNNING
        assert run_python(CROSS, root, "shared", "destroy") == "destroyed"
        assert exits.get(timeout=10) == -signal.SIGKILL
        with pytest.raises(pc.ContainerNotExistError):
            c.run_state()
        assert factory.list() == []
    finally:
        c.destroy()


def test_concurrent_starts_make_one_init(factory, busybox_rootfs):
    c = factory.create("race", pc.Config(rootfs=busybox_rootfs))
    results, errors = [], []

    def starter():
        r, w = os.pipe()
        try:
            pid, exits = c.start(pc.ProcessConfig(
                args=["/bin/sh", "-c", "echo $$; exec sleep 100"], stdout=w))
            os.close(w)
            w = None
            with os.fdopen(r, "rb") as f:
                r = None
                results.append((f.readline().strip().decode(), pid, exits))
        except BaseException as exc:      # reported below
            errors.append(exc)
        finally:
            for fd in (r, w):
                if fd is not None:
                    os.close(fd)

    threads = [threading.Thread(target=starter) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        assert sorted(x[0] for x in results).count("1") == 1
        assert sorted(c.processes()) == sorted(x[1] for x in results)
    finally:
        c.destroy()
    for _, _, exits in results:
        assert exits.get(timeout=10) == -signal.SIGKILL


def test_concurrent_creates_of_one_id(factory, busybox_rootfs):
    results = []
    barrier = threading.Barrier(6)

    def creator():
        barrier.wait()
        try:
            results.append(factory.create("contested", pc.Config(rootfs=busybox_rootfs)))
        except pc.IdInUseError as exc:
            results.append(exc)

    threads = [threading.Thread(target=creator) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    made = [r for r in results if isinstance(r, pc.Container)]
    try:
        assert len(results) == 6
        assert len(made) == 1
        assert factory.list() == ["contested"]
        assert sh_ok(made[0], "echo $$") == "1\n"
    finally:
        for c in made:
            c.destroy()


def test_containers_are_isolated_from_each_other(factory, busybox_rootfs):
    a = factory.create("a", pc.Config(rootfs=busybox_rootfs, hostname="a"))
    b = factory.create("b", pc.Config(rootfs=busybox_rootfs, hostname="b"))
    try:
        pa, _ = start_bg(a, ["sleep", "100"])
        pb, _ = start_bg(b, ["sleep", "100"])
        assert a.processes() == [pa] and b.processes() == [pb]
        assert sh_ok(a, "hostname; ls /proc | grep -E '^[0-9]+$' | wc -l").split()[0] == "a"
        assert sh_ok(b, "hostname").strip() == "b"
        for n in ("pid", "net", "uts", "ipc", "mnt"):
            assert host_ns(n, pa) != host_ns(n, pb)
        b.pause()
        wait_state(b, pc.RunState.PAUSED)
        assert a.run_state() == pc.RunState.RUNNING
        assert sh_ok(a, "echo alive") == "alive\n"
        b.destroy()
        assert a.run_state() == pc.RunState.RUNNING
    finally:
        a.destroy()
        b.destroy()


# --- stats ------------------------------------------------------------------------------

def test_stats(running):
    c, init_pid, _ = running
    sh_ok(c, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
    s = c.stats()
    assert isinstance(s, pc.ContainerStats)
    cg = s.cgroup_stats
    assert cg.cpu_stats.cpu_usage.total_usage > 0
    assert cg.memory_stats.usage.usage > 0
    assert cg.pids_stats.current == len(c.processes()) == 1
    for _ in range(2):
        start_bg(c, ["sleep", "100"])
    assert c.stats().cgroup_stats.pids_stats.current == len(c.processes()) == 3
    assert [i.name for i in s.interfaces] == ["lo"]


def test_stats_interfaces_count_traffic(running):
    c, _, _ = running
    lo = lambda: next(i for i in c.stats().interfaces if i.name == "lo")
    before = lo()
    status, out, err = sh(c, "ping -c1 127.0.0.1")
    assert status == 0, (out, err)
    after = lo()
    assert after.rx_bytes > before.rx_bytes
    assert after.tx_bytes > before.tx_bytes
    assert after.rx_packets > before.rx_packets


def test_stats_of_a_created_container(box):
    s = box.stats()
    assert s.cgroup_stats.pids_stats.current == 0
    assert s.interfaces == []


def test_resources_are_visible_and_enforced(factory, busybox_rootfs):
    c = factory.create("limited", pc.Config(rootfs=busybox_rootfs, resources=pc.Resources(
        memory_limit=64 << 20, pids_limit=5)))
    try:
        s = c.stats().cgroup_stats
        assert s.memory_stats.usage.limit == 64 << 20
        assert s.pids_stats.limit == 5
        start_bg(c, ["sleep", "100"])
        status, out, err = sh(c, "for i in 1 2 3 4 5 6 7 8 9 10; do "
                                 "sleep 100 </dev/null >/dev/null 2>&1 & done; echo forked")
        assert "fork" in err.lower(), (status, out, err)
        assert len(c.processes()) <= 5
        assert c.stats().cgroup_stats.pids_stats.current <= 5
    finally:
        c.destroy()


def test_memory_limit_is_enforced(factory, busybox_rootfs):
    c = factory.create("mem", pc.Config(rootfs=busybox_rootfs, mounts=[
        pc.Mount("/tmp", type="tmpfs")], resources=pc.Resources(memory_limit=16 << 20,
                                                                memory_swap=16 << 20)))
    try:
        # tmpfs pages are charged to the writer's cgroup: 32 MiB cannot fit in 16 MiB
        status, out, err = sh(c, "dd if=/dev/zero of=/tmp/big bs=1M count=32")
        assert status != 0
        assert c.run_state() == pc.RunState.STOPPED
    finally:
        c.destroy()


# --- exit statuses are not stolen -------------------------------------------------------

def test_waitpid_elsewhere_does_not_steal_statuses(factory, busybox_rootfs):
    stop = threading.Event()
    reaped = []

    def reaper():
        while not stop.is_set():
            try:
                reaped.append(os.waitpid(-1, 0))
            except ChildProcessError:
                time.sleep(0.001)

    t = threading.Thread(target=reaper, daemon=True)
    t.start()
    c = factory.create("steal", pc.Config(rootfs=busybox_rootfs))
    quick = factory.create("quick", pc.Config(rootfs=busybox_rootfs))
    try:
        init_pid, init_exits = start_bg(c, ["sleep", "100"])
        queues = []
        children = []
        got = []
        for i in range(30):
            children.append(subprocess.Popen(["true"]))
            pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", f"exit {i % 7}"]))
            queues.append((i % 7, pid, exits))
            if i % 5 == 0:
                # quick's init, waited for here: the next start must find it gone (one
                # that finds it still exiting joins it, and fails as it exits).
                pid, exits = quick.start(pc.ProcessConfig(args=["/bin/sh", "-c", "exit 9"]))
                got.append((9, pid, exits.get(timeout=10)))
        got += [(expected, pid, exits.get(timeout=10)) for expected, pid, exits in queues]
        for p in children:
            p.wait()
        # Since execve resets exit_signal to SIGCHLD, os.waitpid(-1) may reap container
        # processes; their statuses must reach their queues all the same (the pidfd keeps
        # them: PIDFD_INFO_EXIT).
        wrong = [(pid, expected, status) for expected, pid, status in got if status != expected]
        assert not wrong, f"{len(wrong)} of {len(got)} exit statuses lost: {wrong[:5]}"
        assert {p.pid for p in children} & {pid for pid, _ in reaped}   # the thread did work
    finally:
        stop.set()
        c.destroy()
        quick.destroy()
        t.join(10)
    assert init_exits.get(timeout=10) == -signal.SIGKILL


def test_status_reaped_by_someone_else_still_reaches_the_queue(running):
    """A waitpid() for the pid elsewhere in the program, already blocked when the process
    exits, usually reaps it before the exit watcher: the queue still gets the status."""
    c, _, _ = running
    for code in (5, 6, 7):
        r, w = os.pipe()
        pid, exits = c.start(pc.ProcessConfig(args=["/bin/sh", "-c", f"read x; exit {code}"],
                                              stdin=r))
        os.close(r)
        taken = []

        def wait_for_it():
            try:
                taken.append(os.waitpid(pid, 0))
            except ChildProcessError:
                pass             # the watcher was first: fine too

        t = threading.Thread(target=wait_for_it)
        t.start()
        time.sleep(0.05)         # let it block in waitpid
        os.write(w, b"go\n")
        os.close(w)
        t.join(10)
        assert exits.get(timeout=10) == code
        if taken:
            assert taken[0] == (pid, code << 8)


def test_many_exits_in_flight(running):
    c, _, _ = running
    started = [c.start(pc.ProcessConfig(args=["/bin/sh", "-c", f"exit {i % 50}"]))
               for i in range(100)]
    assert [e.get(timeout=10) for _, e in started] == [i % 50 for i in range(100)]


def test_extra_files_become_3_4_and_nothing_else_leaks(factory, busybox_rootfs):
    """ProcessConfig(extra_files=...): the process gets them as 3, 4 (whatever their
    numbers here), for an init, a joined and a staged process; every other descriptor
    of ours stays out."""
    c = factory.create("extra", pc.Config(rootfs=busybox_rootfs))
    pipes = [os.pipe() for _ in range(2)]
    script = "echo three >&3; echo four >&4; ls /proc/self/fd | sort -n | tr '\\n' ' '"
    try:
        for how in ("start", "join", "stage"):
            if how == "join":
                start_bg(c, ["sleep", "100"])
            r, w = os.pipe()
            started = getattr(c, "stage" if how == "stage" else "start")(pc.ProcessConfig(
                args=["sh", "-c", script], stdout=w,
                extra_files=[pipes[0][1], pipes[1][1]]))
            os.close(w)
            if how == "stage":
                c.exec()
            assert read_pipes([r])[0] == "0 1 2 3 4 5 ", how   # 5: ls's own directory fd
            assert started.exits.get(timeout=10) == 0
            assert os.read(pipes[0][0], 100) == b"three\n"
            assert os.read(pipes[1][0], 100) == b"four\n"
            if how == "join":
                c.signal(signal.SIGKILL)
                wait_for(lambda: c.run_state() == pc.RunState.STOPPED, what="STOPPED")
    finally:
        for p in pipes:
            os.close(p[0])
            os.close(p[1])
        c.destroy()


def test_extra_files_bad_descriptor_fails_at_stdio(factory, busybox_rootfs):
    c = factory.create("extra-bad", pc.Config(rootfs=busybox_rootfs))
    try:
        with pytest.raises(pc.ContainerSystemError) as info:    # no such descriptor here
            c.start(pc.ProcessConfig(args=["true"], extra_files=[999_999]))
        assert (info.value.stage, info.value.errno) == ("stdio", 9)
        assert c.processes() == []
        with pytest.raises(pc.ConfigInvalidError, match="extra_files"):
            pc.ProcessConfig(args=["true"], extra_files=[None])
    finally:
        c.destroy()

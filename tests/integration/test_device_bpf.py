"""The eBPF device program in the real kernel.

Each test makes a cgroup2 directory below this process's own v2 cgroup
(<cgroup2 mount><own path>/pycontainer/t-dev-<uuid>), attaches a program, starts a child
that blocks on its stdin, moves it into the cgroup through cgroup.procs, lets it go, and
reads {probe: errno} as JSON from its stdout. A control child outside the cgroup runs the
same probes, so an EPERM can only be the program's. The child is killed, the cgroup removed
(the program goes with it) and the test checks that no directory of its own is left.
"""
import errno
import json
import os
import stat
import subprocess
import sys
import uuid

import pytest

from pycontainer.cgroups.fs import remove_cgroup
from pycontainer.devices import DEFAULT_RULES, DeviceRule, bpf_program, detach, \
    load_and_attach
from pycontainer.errors import ContainerSystemError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bpf, cgroups, mknod)")

CHILD = r"""
import json, os, sys
probes = json.loads(sys.argv[1])
sys.stdin.readline()                    # wait until the parent has moved us
out = {}
for name, (op, path, *rest) in probes.items():
    try:
        if op == "open":
            os.close(os.open(path, getattr(os, rest[0]) | os.O_NONBLOCK | os.O_NOCTTY))
        elif op == "mknod":
            kind = {"c": 0o020000, "b": 0o060000}[rest[0]]
            os.mknod(path, kind | 0o600, os.makedev(rest[1], rest[2]))
        out[name] = 0
    except OSError as exc:
        out[name] = exc.errno
print(json.dumps(out), flush=True)
"""


def _cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    return None


def _own_v2_path():
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip()
    return None


def _parent_dir():
    mount, own = _cgroup2_mount(), _own_v2_path()
    if mount is None or own is None:
        pytest.skip("no cgroup2 hierarchy")
    return os.path.join(mount, own.lstrip("/"), "pycontainer")


@pytest.fixture
def make_cgroup():
    """make_cgroup(rules) -> path of a new cgroup with bpf_program(rules) attached."""
    parent = _parent_dir()
    os.makedirs(parent, exist_ok=True)       # shared with the runtime: never removed here
    made, fds_before = [], set(os.listdir("/proc/self/fd"))

    def make(rules):
        path = os.path.join(parent, f"t-dev-{uuid.uuid4().hex[:12]}")
        os.mkdir(path)
        made.append(path)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.close(load_and_attach(bpf_program(rules), fd))
        finally:
            os.close(fd)
        return path

    yield make
    for path in made:
        remove_cgroup(path)
    left = [p for p in made if os.path.exists(p)]
    assert not left, f"cgroups left behind: {left}"
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, f"descriptors left open: {leaked}"


def run_probes(probes, cgroup=None):
    """Start the child, move it into `cgroup` (None: stay here), let it run the probes."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(probes)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if cgroup is not None:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(child.pid))
            with open(f"/proc/{child.pid}/cgroup") as f:
                assert any(line.startswith("0::") and line.strip().endswith(
                    os.path.basename(cgroup)) for line in f)
        out, _ = child.communicate("go\n", timeout=30)
        assert child.returncode == 0
        return json.loads(out)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream and not stream.closed:
                stream.close()


def _block_device():
    """(path, major, minor) of a block device node in /dev that this (root) process can
    open for reading: a disk if the host lets us (a sandbox may not), else zram or loop."""
    names = sorted(os.listdir("/sys/block"),
                   key=lambda n: (n.startswith(("loop", "ram")), n.startswith("zram"), n))
    for name in names:
        path = f"/dev/{name}"
        try:
            st = os.stat(path)
            if not stat.S_ISBLK(st.st_mode):
                continue
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError:
            continue
        return path, os.major(st.st_rdev), os.minor(st.st_rdev)
    pytest.skip("no block device node in /dev that opens for reading")


@pytest.fixture
def nodes_dir(tmp_path):
    if os.statvfs(tmp_path).f_flag & os.ST_NODEV:
        pytest.skip(f"{tmp_path} is on a nodev filesystem")
    return tmp_path


def test_default_rules(make_cgroup, nodes_dir):
    disk, major, minor = _block_device()
    probes = {
        "null rw": ["open", "/dev/null", "O_RDWR"],
        "zero r": ["open", "/dev/zero", "O_RDONLY"],
        "full rw": ["open", "/dev/full", "O_RDWR"],
        "mknod c 1:1": ["mknod", str(nodes_dir / "mem"), "c", 1, 1],
        "open c 1:1": ["open", str(nodes_dir / "mem-outside"), "O_RDONLY"],
        "mknod disk": ["mknod", str(nodes_dir / "disk"), "b", major, minor],
        "disk r": ["open", disk, "O_RDONLY"],
        "kmsg r": ["open", "/dev/kmsg", "O_RDONLY"],
    }
    control = run_probes(probes)
    assert all(v != errno.EPERM for v in control.values()), control
    for node in ("mem", "disk"):
        os.unlink(nodes_dir / node)
    # the "open c 1:1" probe needs a node to refuse: made outside the cgroup
    os.mknod(nodes_dir / "mem-outside", stat.S_IFCHR | 0o600, os.makedev(1, 1))
    got = run_probes(probes, make_cgroup(DEFAULT_RULES))
    assert got == {
        "null rw": 0, "zero r": 0, "full rw": 0,
        # unlike runc's default, not even making other nodes ...
        "mknod c 1:1": errno.EPERM, "mknod disk": errno.EPERM,
        # ... nor using them (the node does not exist: ENOENT)
        "open c 1:1": errno.EPERM, "disk r": errno.EPERM, "kmsg r": errno.EPERM,
    }


def test_mknod_denied_without_the_m_wildcard(make_cgroup, nodes_dir):
    rules = [DeviceRule(False), DeviceRule(True, "c", 1, 3, "rwm")]
    probes = {"mknod c 1:1": ["mknod", str(nodes_dir / "mem"), "c", 1, 1],
              "mknod c 1:3": ["mknod", str(nodes_dir / "null"), "c", 1, 3],
              "null rw": ["open", "/dev/null", "O_RDWR"]}
    got = run_probes(probes, make_cgroup(rules))
    assert got == {"mknod c 1:1": errno.EPERM, "mknod c 1:3": 0, "null rw": 0}


def test_allowing_the_disk_for_reading(make_cgroup):
    disk, major, _ = _block_device()
    rules = list(DEFAULT_RULES) + [DeviceRule(True, "b", major, -1, "r")]
    probes = {"disk r": ["open", disk, "O_RDONLY"], "disk rw": ["open", disk, "O_RDWR"],
              "null rw": ["open", "/dev/null", "O_RDWR"],
              "kmsg r": ["open", "/dev/kmsg", "O_RDONLY"]}
    got = run_probes(probes, make_cgroup(rules))
    assert got == {"disk r": 0, "disk rw": errno.EPERM, "null rw": 0, "kmsg r": errno.EPERM}


def test_deny_list(make_cgroup):
    """allow a, then deny c 1:5 w: reading /dev/zero works, O_RDWR does not (it overlaps the
    denied access, as in cgroup v1), and everything else is open."""
    rules = [DeviceRule(True), DeviceRule(False, "c", 1, 5, "w")]
    probes = {"zero r": ["open", "/dev/zero", "O_RDONLY"],
              "zero w": ["open", "/dev/zero", "O_WRONLY"],
              "zero rw": ["open", "/dev/zero", "O_RDWR"],
              "kmsg r": ["open", "/dev/kmsg", "O_RDONLY"]}
    got = run_probes(probes, make_cgroup(rules))
    assert got == {"zero r": 0, "zero w": errno.EPERM, "zero rw": errno.EPERM, "kmsg r": 0}


def test_programs_stack_and_detach(make_cgroup):
    """BPF_F_ALLOW_MULTI: every attached program must allow; detaching one lifts it."""
    path = make_cgroup([DeviceRule(True)])                 # allow everything
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        prog = load_and_attach(bpf_program([DeviceRule(False),
                                            DeviceRule(True, "c", 1, 3)]), fd)
        try:
            probes = {"null": ["open", "/dev/null", "O_RDWR"],
                      "zero": ["open", "/dev/zero", "O_RDONLY"]}
            assert run_probes(probes, path) == {"null": 0, "zero": errno.EPERM}
            detach(prog, fd)
            assert run_probes(probes, path) == {"null": 0, "zero": 0}
            with pytest.raises(ContainerSystemError) as exc:
                detach(prog, fd)
            assert exc.value.errno == errno.ENOENT
        finally:
            os.close(prog)
    finally:
        os.close(fd)


def test_verifier_log_in_the_error(make_cgroup):
    path = make_cgroup([DeviceRule(True)])
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(ContainerSystemError) as exc:
            load_and_attach(b"\x95" + b"\0" * 7, fd)           # exit without setting r0
        assert exc.value.errno == errno.EACCES
        assert "bpf(BPF_PROG_LOAD)" in str(exc.value) and "R0 !read_ok" in str(exc.value)
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)   # not a cgroup
        try:
            with pytest.raises(ContainerSystemError) as exc:
                load_and_attach(bpf_program([DeviceRule(True)]), root)
            assert "bpf(BPF_PROG_ATTACH)" in str(exc.value)
        finally:
            os.close(root)
    finally:
        os.close(fd)

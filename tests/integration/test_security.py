"""Security defaults and the attacks they stop, in real containers (root required).

A default container gets Docker's 14 capabilities, no_new_privs, the default seccomp
profile, runc's masked and read-only paths, and a device cgroup that allows only the
standard nodes. Each check comes with a control where one makes sense: the same probe in a
container without that protection succeeds, so a refusal cannot come from somewhere else.

Syscalls busybox has no applet for (keyctl, kexec_load, clone3) go through a tiny static C
helper, `probe`, built with gcc into a private copy of the busybox rootfs; it prints
"<name> <errno>" per probe (0: the call succeeded).
"""
import ctypes
import errno
import os
import resource
import shutil
import signal
import subprocess
import tempfile

import pytest

import pycontainer as pc
from pycontainer.security import (CAP_NUMBER, DEFAULT_CAPS, DEFAULT_MASKED_PATHS,
                                  DEFAULT_READONLY_PATHS, Capabilities, Device, IdMap, Rlimit)

# --- helpers ----------------------------------------------------------------------------


from helpers import pooled_create, run, sh, sh_ok, start_bg  # noqa: E402  (tests/helpers.py)


def mountinfo(pid="self"):
    with open(f"/proc/{pid}/mountinfo") as f:
        return f.read()


def mounts_of(pid):
    """{mount point: (per-mount options, filesystem type)} as process `pid` sees them
    (the last mount on a point wins: it is the one on top)."""
    out = {}
    for line in mountinfo(pid).splitlines():
        fields = line.split()
        sep = fields.index("-")
        out[fields[4]] = (set(fields[5].split(",")), fields[sep + 1])
    return out


def status_fields(text):
    """/proc/<pid>/status text -> {field: value}."""
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def cap_mask(names):
    return sum(1 << CAP_NUMBER[n] for n in names)


def caps_of(text):
    """The five capability sets of a /proc/<pid>/status text, as ints."""
    f = status_fields(text)
    return {k: int(f[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def my_status():
    with open("/proc/self/status") as f:
        return status_fields(f.read())


def probes(out):
    """`probe` output -> {name: errno}."""
    return {name: int(e) for name, e in (line.split() for line in out.splitlines())}


def no_state(factory):
    """Nothing of any container exists under the factory's root."""
    return not os.path.exists(factory.root) or os.listdir(factory.root) == []


STATUS = "cat /proc/self/status"
DEFAULT_MASK = cap_mask(DEFAULT_CAPS)

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
/* For each probe named in argv: "<name> <errno>" (0 when the call succeeded). */
static int probe(const char *name)
{
    long r = -1;
    errno = 0;
    if (!strcmp(name, "keyctl"))        /* KEYCTL_GET_KEYRING_ID of the session keyring */
        r = syscall(SYS_keyctl, 0, -3, 1, 0, 0);
    else if (!strcmp(name, "kexec_load"))
        r = syscall(SYS_kexec_load, 0, 0, NULL, 0);
    else if (!strcmp(name, "mount"))
        r = mount("x", "/mnt", "tmpfs", 0, NULL);
    else if (!strcmp(name, "unshare_user"))
        r = unshare(CLONE_NEWUSER);
    else if (!strcmp(name, "clone3"))   /* NULL args: EFAULT or EINVAL when not filtered */
        r = syscall(SYS_clone3, NULL, 0);
    else
        return -1;
    return r < 0 ? errno : 0;
}
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        printf("%s %d\n", argv[i], probe(argv[i]));
    return 0;
}
"""


def build_probe(rootfs, workdir):
    """Compile the probe helper into rootfs/bin/probe: static if gcc can, else dynamic with
    the libraries ldd names copied into the rootfs."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the syscall probe (apt-get install -y gcc)")
    src = os.path.join(workdir, "probe.c")
    with open(src, "w") as f:
        f.write(PROBE_C)
    dst = os.path.join(rootfs, "bin", "probe")
    static = subprocess.run(["gcc", "-static", "-O1", "-o", dst, src], capture_output=True,
                            text=True)
    if static.returncode == 0:
        return
    subprocess.run(["gcc", "-O1", "-o", dst, src], check=True, capture_output=True)
    libs = subprocess.run(["ldd", dst], capture_output=True, text=True, check=True).stdout
    for line in libs.splitlines():
        path = next((w for w in line.split() if w.startswith("/")), None)
        if path:
            target = os.path.join(rootfs, path.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(path, target)


@pytest.fixture(scope="module")
def public_dir():
    """A directory under /tmp that every user may traverse (pytest's are 0700): what a
    container whose root is not the host's root must be able to reach."""
    path = tempfile.mkdtemp(prefix="pyc-sec-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def rootfs(busybox_rootfs, public_dir):
    """The busybox rootfs plus /bin/probe, /mnt, and /root/secret (root's, mode 0600)."""
    dst = os.path.join(public_dir, "rootfs")
    shutil.copytree(busybox_rootfs, dst, symlinks=True)
    os.chmod(dst, 0o755)
    os.mkdir(os.path.join(dst, "mnt"))
    os.chmod(os.path.join(dst, "root"), 0o755)
    secret = os.path.join(dst, "root", "secret")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    os.chown(secret, 0, 0)
    os.chmod(secret, 0o600)
    build_probe(dst, public_dir)
    return dst


@pytest.fixture
def rootfs_copy(rootfs, public_dir, request):
    """A private copy for tests that change the image."""
    dst = os.path.join(public_dir, "copy-" + request.node.name.replace("[", "-").rstrip("]"))
    shutil.copytree(rootfs, dst, symlinks=True)
    yield dst
    shutil.rmtree(dst, ignore_errors=True)


@pytest.fixture
def public_factory(public_dir, leak_check, request):
    """A Factory whose root every user may traverse (for user-namespace containers, whose
    root is not the host's root and so is bound by DAC like anyone else)."""
    root = os.path.join(public_dir, "run-" + request.node.name.replace("[", "-").rstrip("]"))
    f = pc.Factory(root=root)
    yield f
    leftovers = f.list()
    for cid in leftovers:
        try:
            f.load(cid).destroy()
        except Exception:
            pass
    shutil.rmtree(root, ignore_errors=True)
    if leftovers:
        pytest.fail(f"test left containers behind: {leftovers}")


@pytest.fixture(params=["unpooled", "pooled"])
def container(factory, rootfs, request):
    """Create containers that are destroyed at the end of the test: made by the Factory,
    or taken from a Pool of their Config (a prepared sandbox whose init is parked: the
    same isolation is expected of it)."""
    made = []

    def make(cid="sec", **kw):
        # a /tmp of its own: the image is shared by the tests of this module
        kw.setdefault("mounts", [pc.Mount("/tmp", type="tmpfs")])
        config = pc.Config(rootfs=kw.pop("rootfs", rootfs), **kw)
        if request.param == "unpooled":
            c = factory.create(cid, config)
        else:
            c = pooled_create(factory, cid, config)
        made.append(c)
        return c
    yield make
    for c in made:
        c.destroy()


# --- the default container --------------------------------------------------------------

def test_default_capabilities_no_new_privs_and_seccomp(container):
    c = container()
    f = status_fields(sh_ok(c, STATUS))
    assert f["NoNewPrivs"] == "1"
    assert f["Seccomp"] == "2"
    caps = caps_of(sh_ok(c, STATUS))
    assert len(DEFAULT_CAPS) == 14
    assert caps == {"CapInh": 0, "CapPrm": DEFAULT_MASK, "CapEff": DEFAULT_MASK,
                    "CapBnd": DEFAULT_MASK, "CapAmb": 0}, {k: hex(v) for k, v in caps.items()}


def test_default_joined_process_is_confined_too(container):
    c = container()
    pid, exits = start_bg(c, ["sleep", "100"])
    with open(f"/proc/{pid}/status") as f:
        init = status_fields(f.read())
    joined = status_fields(sh_ok(c, STATUS))
    for f in (init, joined):
        assert (f["NoNewPrivs"], f["Seccomp"]) == ("1", "2")
        assert int(f["CapEff"], 16) == int(f["CapBnd"], 16) == DEFAULT_MASK
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_proc_sys_is_read_only(container):
    c = container(hostname="box")
    status, _, err = sh(c, "echo evil > /proc/sys/kernel/hostname")
    assert status != 0 and "Read-only file system" in err
    assert sh_ok(c, "hostname") == "box\n"
    # the control: without read-only paths the same write goes through (to the
    # container's own uts namespace)
    c2 = container("writable", hostname="box", readonly_paths=())
    assert sh_ok(c2, "echo ctl > /proc/sys/kernel/hostname; hostname") == "ctl\n"


def test_readonly_paths_are_read_only_mounts(container):
    c = container()
    pid, exits = start_bg(c, ["sleep", "100"])
    theirs = mounts_of(pid)
    present = [p for p in DEFAULT_READONLY_PATHS if os.path.exists(p)]
    assert present, "no read-only path exists on this host: nothing tested"
    for path in present:
        assert path in theirs, (path, sorted(theirs))
        assert "ro" in theirs[path][0], (path, theirs[path])
    # ...and writes through them fail (a kernel.* knob we could otherwise change)
    status, _, err = sh(c, "echo 1 > /proc/sys/kernel/ns_last_pid")
    assert status != 0 and "Read-only file system" in err
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_masked_files_read_empty(container):
    files = [p for p in ("/proc/timer_list", "/proc/keys") if os.path.exists(p)]
    assert files, "neither /proc/timer_list nor /proc/keys exists here: nothing tested"
    for path in files:
        assert path in DEFAULT_MASKED_PATHS
        with open(path, "rb") as f:
            assert f.read(), f"{path} is empty on the host: the check would prove nothing"
    c = container()
    out = sh_ok(c, " ".join(f"echo {p} $(cat {p} | wc -c);" for p in files))
    assert out == "".join(f"{p} 0\n" for p in files)
    # the control: a container without masked paths sees their content
    c2 = container("unmasked", masked_paths=())
    out = sh_ok(c2, " ".join(f"echo $(cat {p} | wc -c);" for p in files))
    assert all(int(n) > 0 for n in out.split()), out


def test_masked_directory_is_empty(container):
    assert os.listdir("/sys/firmware"), "the check needs a non-empty /sys/firmware"
    c = container()
    assert sh_ok(c, "ls -A /sys/firmware") == ""
    # the control: the container's own sysfs does have content there
    c2 = container("unmasked", masked_paths=())
    assert sh_ok(c2, "ls -A /sys/firmware") != ""


def test_mknod_of_a_disallowed_device_is_refused(container):
    c = container()
    status, _, err = sh(c, "mknod /tmp/mem c 1 1")
    assert status != 0 and "Operation not permitted" in err, err
    # CAP_MKNOD is held: a node of the default set may be made (so the refusal above is
    # the device policy's)
    out = sh_ok(c, "mknod /tmp/null2 c 1 3 && echo hi > /tmp/null2 && stat -c '%t:%T' /tmp/null2")
    assert out == "1:3\n"


def test_dev_has_only_the_default_nodes(container):
    c = container()
    out = sh_ok(c, "ls -A /dev")
    assert set(out.split()) == {"null", "zero", "full", "random", "urandom", "tty", "ptmx",
                                "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr"}
    for name in ("kmsg", "mem", "kmem", "port", "sda", "fuse", "console"):
        assert name not in out.split()
    # the host's /dev/kmsg cannot be reached another way either
    status, _, err = sh(c, "mknod /tmp/kmsg c 1 11 || exit 3; cat /tmp/kmsg")
    assert status == 3 and "Operation not permitted" in err


def test_mount_and_user_namespace_are_refused_by_busybox(container):
    c = container()
    status, _, err = sh(c, "mount -t tmpfs x /mnt")
    assert status != 0 and ("permission denied" in err.lower()
                            or "not permitted" in err.lower()), err
    status, _, err = sh(c, "unshare -U true")
    assert status != 0 and "Operation not permitted" in err, err


def test_privileged_syscalls_fail(container):
    c = container()
    out = sh_ok(c, "probe keyctl kexec_load mount unshare_user clone3")
    assert probes(out) == {"keyctl": errno.EPERM, "kexec_load": errno.EPERM,
                           "mount": errno.EPERM, "unshare_user": errno.EPERM,
                           "clone3": errno.ENOSYS}


def test_privileged_syscalls_control_without_confinement(container):
    """The same probes where nothing confines them: they succeed (kexec_load is not
    probed here: with CAP_SYS_BOOT it would act on the host's kernel)."""
    c = container(seccomp=None, capabilities=None, no_new_privileges=False)
    got = probes(sh_ok(c, "probe keyctl mount unshare_user clone3"))
    assert got["keyctl"] != errno.EPERM
    assert got["mount"] == 0
    assert got["unshare_user"] == 0
    assert got["clone3"] in (errno.EFAULT, errno.EINVAL)


# --- seccomp, capabilities, no_new_privs, users ---------------------------------------

def test_seccomp_none(container):
    c = container(seccomp=None)
    f = status_fields(sh_ok(c, STATUS))
    assert f["Seccomp"] == "0"
    assert probes(sh_ok(c, "probe clone3"))["clone3"] != errno.ENOSYS


MKDIR_PROFILE = {"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                               "errnoRet": 1}]}


def test_custom_seccomp_profile(container):
    c = container(seccomp=MKDIR_PROFILE)
    status, _, err = sh(c, "mkdir /tmp/x")
    assert status != 0 and "Operation not permitted" in err, err
    assert sh_ok(c, "touch /tmp/y && echo made") == "made\n"
    # only what the profile names: clone3 is not refused as the default profile would
    assert probes(sh_ok(c, "probe clone3"))["clone3"] != errno.ENOSYS
    # the control: the default profile lets mkdir through
    c2 = container("control")
    assert sh_ok(c2, "mkdir /tmp/x && echo made") == "made\n"


def test_extra_capability(container):
    caps = DEFAULT_CAPS + ("CAP_NET_ADMIN",)
    c = container(capabilities=Capabilities(bounding=caps, effective=caps, permitted=caps))
    got = caps_of(sh_ok(c, STATUS))
    assert got["CapEff"] == got["CapBnd"] == cap_mask(caps)
    assert got["CapEff"] & (1 << CAP_NUMBER["CAP_NET_ADMIN"])
    # what it is for: configuring the container's own interfaces
    assert sh_ok(c, "ifconfig lo mtu 1280 && cat /sys/class/net/lo/mtu") == "1280\n"
    c2 = container("without")
    status, _, err = sh(c2, "ifconfig lo mtu 1280")
    assert status != 0 and "Operation not permitted" in err, err


def test_capabilities_none_keeps_every_capability(container):
    c = container(capabilities=None)
    got = caps_of(sh_ok(c, STATUS))
    mine = int(my_status()["CapEff"], 16)
    assert mine & ~DEFAULT_MASK, "the caller has no capability beyond the default set"
    assert got["CapEff"] == got["CapPrm"] == got["CapBnd"] == mine


def test_no_new_privileges_false(container):
    c = container(no_new_privileges=False)
    f = status_fields(sh_ok(c, STATUS))
    assert f["NoNewPrivs"] == "0"
    assert f["Seccomp"] == "2"       # the filter is still loaded (before the caps drop)
    assert probes(sh_ok(c, "probe keyctl clone3")) == {"keyctl": errno.EPERM,
                                                        "clone3": errno.ENOSYS}


def test_non_root_user_has_no_capabilities(container):
    c = container()
    assert sh_ok(c, "cat /root/secret") == "s3cret\n"      # root may read it
    status, out, err = sh(c, STATUS + "; id -u; cat /root/secret", user="1000:1000")
    assert status != 0 and "Permission denied" in err, (out, err)
    caps = caps_of(out)
    assert (caps["CapEff"], caps["CapPrm"], caps["CapInh"], caps["CapAmb"]) == (0, 0, 0, 0)
    assert "s3cret" not in out
    assert out.splitlines()[-1] == "1000"
    # a joined process as well
    pid, exits = start_bg(c, ["sleep", "100"])
    status, out, err = sh(c, STATUS + "; cat /root/secret", user="1000:1000")
    assert status != 0 and "Permission denied" in err
    assert caps_of(out)["CapEff"] == 0
    with open(f"/proc/{pid}/status") as f:
        assert caps_of(f.read())["CapEff"] == DEFAULT_MASK       # init is root
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_ambient_capability_for_a_non_root_user(container):
    nbs = ("CAP_NET_BIND_SERVICE",)
    c = container(capabilities=Capabilities(bounding=DEFAULT_CAPS, effective=nbs,
                                            permitted=nbs, inheritable=nbs, ambient=nbs))
    status, out, err = sh(c, STATUS + "; id -u", user="1000:1000")
    assert status == 0, err
    caps = caps_of(out)
    bit = 1 << CAP_NUMBER["CAP_NET_BIND_SERVICE"]
    assert caps["CapAmb"] == caps["CapEff"] == caps["CapPrm"] == caps["CapInh"] == bit
    assert out.splitlines()[-1] == "1000"
    # without ambient, the same user keeps nothing across exec
    c2 = container("noamb", capabilities=Capabilities(bounding=DEFAULT_CAPS, effective=nbs,
                                                       permitted=nbs, inheritable=nbs))
    caps = caps_of(sh_ok(c2, STATUS, user="1000:1000"))
    assert caps["CapEff"] == caps["CapAmb"] == 0


# --- mounts through symlinks ------------------------------------------------------------

def test_bind_through_a_symlink_to_root_lands_inside(container, rootfs_copy, public_dir):
    """etc/evil -> / : /etc/evil/x is the container's /x, never the host's /x."""
    os.symlink("/", os.path.join(rootfs_copy, "etc", "evil"))
    src = tempfile.mkdtemp(dir=public_dir)
    with open(os.path.join(src, "MARKER"), "w") as f:
        f.write("marker\n")
    host_root = sorted(os.listdir("/"))
    host_mounts = mountinfo()
    c = container(rootfs=rootfs_copy, mounts=[pc.Mount("/etc/evil/x", src)])
    pid, exits = start_bg(c, ["sleep", "100"])
    assert sh_ok(c, "ls /x; ls /etc/evil/x") == "MARKER\nMARKER\n"
    assert "/x" in mounts_of(pid)
    assert sorted(os.listdir("/")) == host_root and not os.path.exists("/x")
    assert mountinfo() == host_mounts
    assert os.path.isdir(os.path.join(rootfs_copy, "x"))     # resolved inside the copy
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert sorted(os.listdir("/")) == host_root and mountinfo() == host_mounts
    shutil.rmtree(src)


def test_tmpfs_and_bind_through_a_symlink_to_root_never_reach_the_host(container,
                                                                      rootfs_copy,
                                                                      public_dir):
    """etc/evil -> / with a tmpfs on /etc/evil and a bind on /etc/evil/x: both resolve
    inside the container's root. The host's / gains nothing, no mount appears on the host,
    and the container sees the tmpfs on its own root (or the start is refused, naming the
    mount)."""
    os.symlink("/", os.path.join(rootfs_copy, "etc", "evil"))
    src = tempfile.mkdtemp(dir=public_dir)
    with open(os.path.join(src, "MARKER"), "w") as f:
        f.write("marker\n")
    host_root = sorted(os.listdir("/"))
    host_mounts = mountinfo()
    c = container(rootfs=rootfs_copy, mounts=[pc.Mount("/etc/evil", type="tmpfs"),
                                              pc.Mount("/etc/evil/x", src)])
    try:
        pid, exits = start_bg(c, ["/bin/sleep", "100"])
    except pc.ContainerSystemError as exc:
        assert sorted(os.listdir("/")) == host_root and mountinfo() == host_mounts
        assert c.run_state() == pc.RunState.CREATED and c.processes() == []
        # the cause a user needs: the tmpfs on /etc/evil covered the container's root
        assert exc.stage == "mount" and "/etc/evil" in str(exc), str(exc)
    else:
        theirs = mounts_of(pid)
        assert theirs.get("/", (None, None))[1] == "tmpfs", theirs
        c.destroy()
        assert exits.get(timeout=10) == -signal.SIGKILL
    finally:
        assert sorted(os.listdir("/")) == host_root and not os.path.exists("/x")
        assert mountinfo() == host_mounts
        assert os.listdir(src) == ["MARKER"]
        shutil.rmtree(src)


# --- descriptors and cwd ----------------------------------------------------------------

def rootfs_of(c):
    return c.config.rootfs


def test_callers_descriptors_and_cwd_do_not_reach_the_container(container, public_dir,
                                                              monkeypatch):
    c = container()
    secret_dir = tempfile.mkdtemp(dir=public_dir)
    path = os.path.join(secret_dir, "host-open-file")
    f = open(path, "w")
    os.set_inheritable(f.fileno(), True)
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    monkeypatch.chdir(secret_dir)
    script = "ls -l /proc/self/fd/; echo ---; readlink /proc/self/cwd"
    try:
        for kind in ("init", "joined"):
            out = sh_ok(c, script)
            fds, cwd = out.split("---\n")
            assert "host-open-file" not in fds, (kind, fds)
            links = dict(line.split()[-3::2] for line in fds.splitlines() if "->" in line)
            # 0 is /dev/null, 1 and 2 our pipes; 3 (ls's own directory) may show up
            assert set(links) <= {"0", "1", "2"}, (kind, fds)
            assert links["0"] == "/dev/null", (kind, fds)
            assert cwd == "/\n", kind
            if kind == "init":
                pid, exits = start_bg(c, ["sleep", "100"])
        # the init (sleep opens nothing of its own) has exactly its stdio
        assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
        # its cwd is the image's root directory, not the caller's
        cwd, image = os.stat(f"/proc/{pid}/cwd"), os.stat(rootfs_of(c))
        assert (cwd.st_dev, cwd.st_ino) == (image.st_dev, image.st_ino)
        c.destroy()
        assert exits.get(timeout=10) == -signal.SIGKILL
    finally:
        f.close()
        os.close(r)
        os.close(w)
        shutil.rmtree(secret_dir)


# --- devices ----------------------------------------------------------------------------

def cgroup_dirs(pid):
    """(v1 devices dir, cgroup2 dir) of process pid."""
    v1 = v2 = None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "devices" in controllers.split(","):
                v1 = "/sys/fs/cgroup/devices" + path
            elif controllers == "":
                for line2 in mountinfo().splitlines():
                    fields = line2.split()
                    if fields[fields.index("-") + 1] == "cgroup2":
                        v2 = fields[4] + path
    return v1, v2


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_bpf = 321
BPF_PROG_DETACH, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 9, 13, 15, 16
BPF_CGROUP_DEVICE = 6


def _bpf(cmd, attr):
    r = _libc.syscall(ctypes.c_long(SYS_bpf), ctypes.c_long(cmd), attr,
                      ctypes.c_long(len(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"bpf({cmd}): {os.strerror(e)}")
    return r


def device_programs(cgroup_dir):
    """[(prog id, name)] of the BPF_CGROUP_DEVICE programs attached to a cgroup2 dir."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ids = (ctypes.c_uint32 * 16)()
        attr = ctypes.create_string_buffer(120)
        ctypes.c_uint32.from_buffer(attr, 0).value = fd
        ctypes.c_uint32.from_buffer(attr, 4).value = BPF_CGROUP_DEVICE
        ctypes.c_uint64.from_buffer(attr, 16).value = ctypes.addressof(ids)
        ctypes.c_uint32.from_buffer(attr, 24).value = 16
        _bpf(BPF_PROG_QUERY, attr)
        count = ctypes.c_uint32.from_buffer(attr, 24).value
    finally:
        os.close(fd)
    out = []
    for prog_id in ids[:count]:
        pfd = prog_fd(prog_id)
        try:
            info = ctypes.create_string_buffer(256)
            attr = ctypes.create_string_buffer(16)
            ctypes.c_uint32.from_buffer(attr, 0).value = pfd
            ctypes.c_uint32.from_buffer(attr, 4).value = len(info)
            ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)
            _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
            out.append((prog_id, info.raw[64:80].rstrip(b"\0").decode()))
        finally:
            os.close(pfd)
    return out


def prog_fd(prog_id):
    attr = ctypes.create_string_buffer(12)
    ctypes.c_uint32.from_buffer(attr, 0).value = prog_id
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def detach_program(cgroup_dir, prog_id):
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    pfd = prog_fd(prog_id)
    try:
        attr = ctypes.create_string_buffer(20)
        ctypes.c_uint32.from_buffer(attr, 0).value = fd
        ctypes.c_uint32.from_buffer(attr, 4).value = pfd
        ctypes.c_uint32.from_buffer(attr, 8).value = BPF_CGROUP_DEVICE
        _bpf(BPF_PROG_DETACH, attr)
    finally:
        os.close(pfd)
        os.close(fd)


DEFAULT_DEVICES_LIST = ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                        "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"]


def test_extra_device_node(container):
    c = container(devices=[Device("/dev/fuse", "c", 10, 229)])
    out = sh_ok(c, "stat -c '%F %t:%T %a' /dev/fuse; ls -A /dev")
    first, *rest = out.splitlines()
    assert first == "character special file a:e5 666"        # 10:229 in hex
    assert "fuse" in rest
    # openable: the device cgroup allows it (without the fuse module it is ENXIO/ENODEV,
    # never EPERM)
    status, out, err = sh(c, "exec 3</dev/fuse && echo opened")
    assert status == 0 or "Operation not permitted" not in err, err
    assert "not permitted" not in err.lower()
    pid, exits = start_bg(c, ["sleep", "100"])
    v1, _ = cgroup_dirs(pid)
    with open(os.path.join(v1, "devices.list")) as f:
        assert f.read().split("\n")[:-1] == DEFAULT_DEVICES_LIST + ["c 10:229 rwm"]
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_fuse_is_refused_without_the_device(container):
    c = container()
    status, _, err = sh(c, "mknod /dev/fuse c 10 229")
    assert status != 0 and "Operation not permitted" in err


def test_device_cgroup_v1_list_and_bpf_program_both_enforce(container):
    c = container()
    pid, exits = start_bg(c, ["sleep", "100"])
    v1, v2 = cgroup_dirs(pid)
    assert v1 and "/pycontainer/" in v1, v1
    assert v2 and "/pycontainer/" in v2, v2
    with open(os.path.join(v1, "devices.list")) as f:
        assert f.read().split("\n")[:-1] == DEFAULT_DEVICES_LIST
    progs = device_programs(v2)
    assert len(progs) == 1 and progs[0][1] == "pyc_devices", progs
    mknod = "mknod /tmp/mem$$ c 1 1 && echo made"
    status, _, err = sh(c, mknod)
    assert status != 0 and "Operation not permitted" in err
    # open v1 wide: the bpf program still refuses
    with open(os.path.join(v1, "devices.allow"), "w") as f:
        f.write("a")
    with open(os.path.join(v1, "devices.list")) as f:
        assert f.read() == "a *:* rwm\n"
    status, _, err = sh(c, mknod)
    assert status != 0 and "Operation not permitted" in err, "the bpf program does not enforce"
    # detach the program too: now nothing refuses (the control)
    detach_program(v2, progs[0][0])
    assert sh_ok(c, mknod) == "made\n"
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def test_device_cgroup_v1_enforces_without_the_bpf_program(container):
    c = container()
    pid, exits = start_bg(c, ["sleep", "100"])
    v1, v2 = cgroup_dirs(pid)
    (prog_id, _), = device_programs(v2)
    detach_program(v2, prog_id)
    assert device_programs(v2) == []
    status, _, err = sh(c, "mknod /tmp/mem c 1 1")
    assert status != 0 and "Operation not permitted" in err, "devices.list does not enforce"
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


# --- rlimits ----------------------------------------------------------------------------

def test_rlimits(container):
    c = container(rlimits=[Rlimit("RLIMIT_NOFILE", 100, 200)])
    assert sh_ok(c, "ulimit -n; ulimit -Hn") == "100\n200\n"
    pid, exits = start_bg(c, ["sleep", "100"])
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (100, 200)
    # a process of its own overrides that one limit, for itself only
    out = sh_ok(c, "ulimit -n; ulimit -Hn",
                rlimits=[Rlimit("RLIMIT_NOFILE", 50, 200)])
    assert out == "50\n200\n"
    assert sh_ok(c, "ulimit -n") == "100\n"
    assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (100, 200)
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


def _cannot_raise_hard_nofile():
    """A hard RLIMIT_NOFILE this process may not set: one above its own when it lacks
    CAP_SYS_RESOURCE; else above fs.nr_open, which nobody may exceed."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if not int(my_status()["CapEff"], 16) & (1 << CAP_NUMBER["CAP_SYS_RESOURCE"]):
        return hard + 1
    with open("/proc/sys/fs/nr_open") as f:
        return int(f.read()) + 1


def test_raising_a_hard_rlimit_fails_clearly(factory, container):
    hard = _cannot_raise_hard_nofile()
    c = container(rlimits=[Rlimit("RLIMIT_NOFILE", 100, hard)])
    with pytest.raises(pc.ContainerSystemError) as info:
        start_bg(c, ["sleep", "100"])
    exc = info.value
    assert exc.stage == "rlimits" and exc.errno == errno.EPERM
    assert "RLIMIT_NOFILE" in str(exc) and "'sec'" in str(exc) and "start" in str(exc)
    assert c.run_state() == pc.RunState.CREATED and c.processes() == []
    # the same, for a process that brings the limit itself to a running container
    ok = container("ok")
    pid, exits = start_bg(ok, ["sleep", "100"])
    with pytest.raises(pc.ContainerSystemError) as info:
        sh(ok, "true", rlimits=[Rlimit("RLIMIT_NOFILE", 10, hard)])
    assert info.value.stage == "rlimits" and "RLIMIT_NOFILE" in str(info.value)
    assert ok.processes() == [pid]
    ok.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL


# --- oom_score_adj, sysctl, umask -------------------------------------------------------

def test_oom_score_adj(container):
    c = container(oom_score_adj=500)
    assert sh_ok(c, "cat /proc/self/oom_score_adj") == "500\n"


def test_sysctl_is_the_containers_own(container):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host = f.read()
    value = "0" if host.strip() == "1" else "1"
    c = container(sysctl={"net.ipv4.ip_forward": value})
    assert sh_ok(c, "cat /proc/sys/net/ipv4/ip_forward") == value + "\n"
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host


def test_host_sysctl_is_refused_before_anything_exists(factory):
    with pytest.raises(pc.ConfigInvalidError) as info:
        factory.create("sysctl", pc.Config(sysctl={"vm.swappiness": "10"}))
    assert "sysctl" in info.value.field and "vm.swappiness" in str(info.value)
    assert no_state(factory)


def test_umask(container):
    c = container(umask=0o077)
    assert sh_ok(c, "touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d") == "600\n700\n"
    c2 = container("default-umask")
    assert sh_ok(c2, "touch /tmp/f; stat -c %a /tmp/f") == "644\n"


# --- errors before anything exists ------------------------------------------------------

BAD_CONFIGS = {
    "unknown capability": (lambda: pc.Config(capabilities=Capabilities(
        bounding=DEFAULT_CAPS + ("CAP_NOPE",))), "capabilities.bounding", "CAP_NOPE"),
    "unknown capability in a dict": (lambda: pc.Config(capabilities={"effective": ["CAP_NOPE"]}),
                                     "capabilities.effective", "CAP_NOPE"),
    "bad rlimit name": (lambda: pc.Config(rlimits=[Rlimit("RLIMIT_NOPE", 1, 2)]),
                        "rlimits.type", "RLIMIT_NOPE"),
    "bad rlimit name in a dict": (lambda: pc.Config(rlimits=[{"type": "NOFILE", "soft": 1}]),
                                  "rlimits.type", "NOFILE"),
    "bad process rlimit": (lambda: pc.ProcessConfig(args=["true"],
                                                    rlimits=[Rlimit("RLIMIT_X", 1, 2)]),
                           "rlimits.type", "RLIMIT_X"),
    "soft above hard": (lambda: pc.Config(rlimits=[Rlimit("RLIMIT_NOFILE", 3, 2)]),
                        "rlimits.soft", "3"),
    "device outside /dev": (lambda: pc.Config(devices=[Device("/etc/fuse", "c", 10, 229)]),
                            "devices.path", "/etc/fuse"),
    "device escaping /dev": (lambda: pc.Config(devices=[Device("/dev/../etc/x", "c", 1, 1)]),
                             "devices.path", "/dev/../etc/x"),
    "relative device": (lambda: pc.Config(devices=[Device("dev/fuse", "c", 10, 229)]),
                        "devices.path", "dev/fuse"),
    "ambient not permitted": (lambda: pc.Config(capabilities=Capabilities(
        ambient=("CAP_NET_BIND_SERVICE",))), "capabilities.ambient", "CAP_NET_BIND_SERVICE"),
    "seccomp bad action": (lambda: pc.Config(seccomp={
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]}),
        "seccomp.syscalls[0].action", "SCMP_ACT_BOGUS"),
    "seccomp bad default": (lambda: pc.Config(seccomp={"defaultAction": "SCMP_ACT_NOPE"}),
                            "seccomp.defaultAction", "SCMP_ACT_NOPE"),
    "uid map without userns": (lambda: pc.Config(uid_mappings=[IdMap(0, 100000, 65536)]),
                               "uid_mappings", "user"),
    "gid map without userns": (lambda: pc.Config(gid_mappings=[IdMap(0, 100000, 65536)]),
                               "gid_mappings", "user"),
    "userns without maps": (lambda: pc.Config(namespaces=("user", "mount", "pid")),
                            "namespaces", "uid_mappings"),
    "userns with uid map only": (lambda: pc.Config(namespaces=("user", "mount", "pid"),
                                                   uid_mappings=[IdMap(0, 100000, 65536)]),
                                 "namespaces", "gid_mappings"),
    "net sysctl without net ns": (lambda: pc.Config(namespaces=("mount", "pid"),
                                                    sysctl={"net.ipv4.ip_forward": "1"}),
                                  "sysctl['net.ipv4.ip_forward']", "net"),
    "host sysctl": (lambda: pc.Config(sysctl={"vm.swappiness": "10"}),
                    "sysctl['vm.swappiness']", "host"),
    "oom_score_adj out of range": (lambda: pc.Config(oom_score_adj=1001), "oom_score_adj",
                                   "1001"),
    "umask out of range": (lambda: pc.Config(umask=0o1000), "umask", "512"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_invalid_security_config(factory, case):
    build, field, word = BAD_CONFIGS[case]
    with pytest.raises(pc.ConfigInvalidError) as info:
        factory.create("bad", build())
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.field == field, (exc.field, str(exc))
    assert field in str(exc) and word in str(exc), str(exc)
    assert no_state(factory)
    assert factory.list() == []


# --- user namespaces --------------------------------------------------------------------

USERNS = ("user", "mount", "pid", "uts", "ipc", "net")
MAP = [IdMap(0, 100000, 65536)]


@pytest.mark.parametrize("pooled", [False, True], ids=["unpooled", "pooled"])
def test_user_namespace(public_factory, rootfs, pooled):
    config = pc.Config(rootfs=rootfs, namespaces=USERNS, uid_mappings=MAP, gid_mappings=MAP)
    c = pooled_create(public_factory, "userns", config) if pooled else \
        public_factory.create("userns", config)
    status, out, err = sh(c, "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["0", "0"]
    assert [line.split() for line in lines[2:]] == [["0", "100000", "65536"]] * 2
    pid, exits = start_bg(c, ["sleep", "100"])
    with open(f"/proc/{pid}/status") as f:
        f = status_fields(f.read())
    assert f["Uid"].split() == ["100000"] * 4 and f["Gid"].split() == ["100000"] * 4
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    # a joined process is in the same user namespace, as its root
    status, out, err, jpid = run(c, ["/bin/sh", "-c", "id -u; cat /proc/self/uid_map; "
                                     "readlink /proc/self/ns/user"])
    assert status == 0, err
    uid, umap, userns = out.splitlines()
    assert uid == "0" and umap.split() == ["0", "100000", "65536"]
    assert userns == os.readlink(f"/proc/{pid}/ns/user")
    # root in the container is nobody on the host: the host's root-only files stay closed
    status, _, err = sh(c, "cat /root/secret")
    assert status != 0 and "Permission denied" in err
    c.destroy()
    assert exits.get(timeout=10) == -signal.SIGKILL
    assert public_factory.list() == []
    assert not os.path.exists(f"/proc/{pid}")


def test_user_namespace_with_the_host_image(public_factory):
    c = public_factory.create("userns-host", pc.Config(namespaces=USERNS, uid_mappings=MAP,
                                                       gid_mappings=MAP))
    status, out, err = sh(c, "id -u; cat /proc/self/uid_map; ls -d /usr /etc; echo $$")
    assert status == 0, err
    assert out.split("\n") == ["0", out.split("\n")[1], "/etc", "/usr", "1", ""]
    assert out.split("\n")[1].split() == ["0", "100000", "65536"]
    status, _, _ = sh(c, "touch /pyc-userns-should-not-exist")
    assert status != 0 and not os.path.exists("/pyc-userns-should-not-exist")
    c.destroy()
    assert public_factory.list() == []


def test_user_namespace_with_the_host_image_in_a_private_root(factory):
    """The factory fixture's root is inside pytest's 0700 temporary directory: the host
    image must still be reachable by the container's (unprivileged on the host) root."""
    c = factory.create("userns-host", pc.Config(namespaces=USERNS, uid_mappings=MAP,
                                                gid_mappings=MAP))
    try:
        status, out, err = sh(c, "id -u; echo $$")
        assert (status, out) == (0, "0\n1\n"), err
    finally:
        c.destroy()

"""config.json shapes that runc and crun run, checked inside real containers: a seccomp
profile that denies what it does not list, mount sources in mountinfo, bind mounts with
data options, FIFO device nodes, the rootfs propagation; and a staged init that dies
before its program runs failing `start`. Each through the CLI (create, start, state,
delete: the container writes what it saw to a host directory bound at /run) and, where
the library has the knob, through the library. Root required."""
import os
import subprocess

import pytest

import pycontainer as pc
from pycontainer.security import Device
from helpers import read_pipes
from test_cli import make_bundle, oci, wait_status  # noqa: F401  (pytest fixtures)

# What `busybox sh` needs to run the commands below (strace -f -c), and what every
# launcher must do once a filter is loaded before the user switch (runc too): the ids,
# the capability sets, the cwd, exec. Not close_range, getrlimit, rt_sigprocmask: a
# profile generated for a program lists that program's syscalls, and the default action
# refuses the rest.
BUSYBOX_SYSCALLS = (
    "arch_prctl brk clock_nanosleep clone close dup2 execve exit exit_group fcntl "
    "getdents64 getegid geteuid getgid getpid getppid getrandom getuid ioctl mmap mprotect "
    "munmap newfstatat openat prctl prlimit64 read readlink rseq rt_sigaction rt_sigreturn "
    "sendfile set_robust_list set_tid_address uname wait4 write "
    "setgroups setresgid setresuid capset chdir getcwd umask").split()


def deny_unlisted(names=BUSYBOX_SYSCALLS):
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": list(names), "action": "SCMP_ACT_ALLOW"}]}


def lifecycle(oci, make_bundle, tmp_path, script, mutate=None, cid="k"):
    """create, start, wait for stopped, state, delete; what `script` wrote to /run/log."""
    out = tmp_path / f"out-{cid}"
    out.mkdir()

    def shape(spec):
        spec["mounts"].append({"destination": "/run", "type": "bind", "source": str(out),
                               "options": ["rbind"]})
        if mutate:
            mutate(spec)
    b = make_bundle(["sh", "-c", f"exec >/run/log 2>&1; {script}"], mutate=shape)
    oci.ok("create", "-b", b, cid)
    assert oci.state(cid)["status"] == "created"
    oci.ok("start", cid)
    wait_status(oci, cid, "stopped")
    oci.ok("delete", cid)
    return (out / "log").read_text()


def run_lib(factory, script, cid="k", **config):
    c = factory.create(cid, pc.Config(**config))
    r, w = os.pipe()
    try:
        try:
            _, exits = c.start(pc.ProcessConfig(args=["sh", "-c", script], stdout=w, stderr=w))
        finally:
            os.close(w)
        out = read_pipes([r])[0]        # closes r
        assert exits.get(timeout=10) == 0, out
        return out
    finally:
        c.destroy()


# --- seccomp: nothing of ours after an early filter needs what the profile may deny ----

def test_a_profile_without_close_range_runs_the_program(factory, busybox_rootfs):
    out = run_lib(factory, "echo ran; grep Seccomp: /proc/self/status", rootfs=busybox_rootfs,
                  seccomp=deny_unlisted(), no_new_privileges=False)
    assert out == "ran\nSeccomp:\t2\n"


def test_a_profile_without_close_range_through_the_cli(oci, make_bundle, tmp_path):
    def mutate(s):
        s["process"].pop("noNewPrivileges", None)
        s["linux"]["seccomp"] = deny_unlisted()
    log = lifecycle(oci, make_bundle, tmp_path, "echo ran; grep Seccomp: /proc/self/status",
                    mutate)
    assert log == "ran\nSeccomp:\t2\n"


# --- a staged init that dies before its program runs fails `create` or `start` ------------
# It waits for the go once it is its process (runc's order): what fails in its setup
# fails `create`; after the go only no_new_privs, the late filter and the exec remain.

def _kill_unlisted(names):
    return {"defaultAction": "SCMP_ACT_KILL_PROCESS", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": list(names), "action": "SCMP_ACT_ALLOW"}]}


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s["process"].__setitem__("cwd", "/nowhere"),
     "stage: cwd: /nowhere: No such file or directory (ENOENT)"),
    # The filter is loaded before the user switch (no noNewPrivileges): the switch is
    # the profile's to deny.
    (lambda s: (s["process"].pop("noNewPrivileges", None),
                s["linux"].__setitem__("seccomp", deny_unlisted(
                    n for n in BUSYBOX_SYSCALLS if n != "setresuid"))),
     "stage: setuid: Operation not permitted (EPERM)"),
    # ... or to kill for: the init dies without a report, and `create` says how.
    (lambda s: (s["process"].pop("noNewPrivileges", None),
                s["linux"].__setitem__("seccomp", _kill_unlisted(
                    n for n in BUSYBOX_SYSCALLS if n != "chdir"))),
     "stage: died: the init was killed by SIGSYS (Bad system call) before its program "
     "ran: Operation canceled (ECANCELED)"),
], ids=["cwd", "seccomp-denies-setresuid", "seccomp-kills-chdir"])
def test_create_fails_with_the_stage_of_a_staged_init(oci, make_bundle, tmp_path, mutate,
                                                      message):
    out = tmp_path / "out"
    out.mkdir()

    def shape(s):
        s["mounts"].append({"destination": "/run", "type": "bind", "source": str(out),
                            "options": ["rbind"]})
        mutate(s)
    b = make_bundle(["sh", "-c", "echo ran >/run/log"], mutate=shape)
    r = oci.fails("create", "-b", b, "early")
    assert r.err.strip().endswith(f"container 'early': {message}"), r.err
    assert not (out / "log").exists()
    assert oci.ids() == []      # and leak_check: no process, no cgroup


def test_start_fails_with_the_stage_of_a_staged_init(oci, make_bundle, tmp_path):
    """The program removed between `create` and `start`: the exec after the go fails, and
    `start` says so (its end of the exec fifo carries the report)."""
    out = tmp_path / "out"
    out.mkdir()
    prog = out / "prog"
    prog.write_text("#!/bin/sh\necho ran >/run/log\n")
    prog.chmod(0o755)

    def shape(s):
        s["mounts"].append({"destination": "/run", "type": "bind", "source": str(out),
                            "options": ["rbind"]})
    b = make_bundle(["/run/prog"], mutate=shape)
    oci.ok("create", "-b", b, "late")
    prog.unlink()
    r = oci.fails("start", "late")
    assert r.err.strip().endswith(
        "container 'late': exec: exec: /run/prog: No such file or directory (ENOENT)"), r.err
    assert oci.state("late")["status"] == "stopped"
    assert not (out / "log").exists()
    oci.ok("delete", "late")
    assert oci.ids() == []      # and leak_check: no process, no cgroup


# --- mount sources ---------------------------------------------------------------------

MOUNT_SOURCES = ("awk '$5 == \"/proc\" || $5 == \"/sys\" || $5 == \"/tmp\" "
                 "{ for (i = 7; $i != \"-\"; i++); print $5, $(i + 2) }' /proc/self/mountinfo")


def test_mountinfo_names_the_sources(oci, make_bundle, tmp_path):
    """proc and sysfs (the built-in ones) and a typed mount with no source: its type."""
    def mutate(s):
        s["mounts"].append({"destination": "/tmp", "type": "tmpfs",
                            "options": ["size=1m"]})
    log = lifecycle(oci, make_bundle, tmp_path, MOUNT_SOURCES, mutate)
    assert sorted(log.splitlines()) == ["/proc proc", "/sys sysfs", "/tmp tmpfs"]


def test_mountinfo_names_the_sources_library(factory, busybox_rootfs):
    out = run_lib(factory, MOUNT_SOURCES, rootfs=busybox_rootfs,
                  mounts=[pc.Mount("/tmp", type="tmpfs", options=("size=1m",))])
    assert sorted(out.splitlines()) == ["/proc proc", "/sys sysfs", "/tmp tmpfs"]


# --- bind mounts with data options -----------------------------------------------------

def test_a_bind_mount_with_data_options(oci, make_bundle, tmp_path, factory, busybox_rootfs):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("host file\n")

    def mutate(s):
        s["mounts"].append({"destination": "/data", "type": "bind", "source": str(data),
                            "options": ["rbind", "ro", "mode=755", "uid=0"]})
    log = lifecycle(oci, make_bundle, tmp_path, "cat /data/f; touch /data/x || echo ro",
                    mutate)
    assert log.splitlines()[0] == "host file" and log.splitlines()[-1] == "ro"
    out = run_lib(factory, "cat /data/f", rootfs=busybox_rootfs,
                  mounts=[pc.Mount("/data", str(data), options=("mode=755",))])
    assert out == "host file\n"


# --- FIFO device nodes -----------------------------------------------------------------

FIFO_CHECK = "test -p /dev/myfifo && stat -c '%a %u' /dev/myfifo"


def test_fifo_device_nodes(oci, make_bundle, tmp_path):
    def mutate(s):
        s["linux"]["devices"] = [{"path": "/dev/myfifo", "type": "p", "fileMode": 0o640,
                                  "uid": 7}]
    assert lifecycle(oci, make_bundle, tmp_path, FIFO_CHECK, mutate) == "640 7\n"


def test_fifo_device_nodes_library(factory, busybox_rootfs):
    out = run_lib(factory, FIFO_CHECK, rootfs=busybox_rootfs,
                  devices=[Device("/dev/myfifo", "p", file_mode=0o640, uid=7)])
    assert out == "640 7\n"


# --- linux.rootfsPropagation -----------------------------------------------------------

ROOT_FIELDS = ("awk '$5 == \"/\" { f = \"\"; for (i = 7; $i != \"-\"; i++) "
               "{ sub(/:.*/, \"\", $i); f = f $i \" \" }; print f \"end\" }' "
               "/proc/self/mountinfo")


@pytest.fixture
def shared_rootfs(busybox_rootfs, tmp_path):
    """The busybox rootfs bound at a mount of its own made shared on the host (this
    host's / is private): a slave of it has a master to follow."""
    where = tmp_path / "shared-root"
    where.mkdir()
    subprocess.run(["mount", "--bind", busybox_rootfs, str(where)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(where)], check=True)
        yield str(where)
    finally:
        subprocess.run(["umount", "-R", "-l", str(where)], check=True)


@pytest.mark.parametrize("prop,fields", [
    ("shared", "shared"), ("rshared", "shared"), ("slave", "master"),
    ("rslave", "master"), ("private", ""), ("rprivate", ""),
    ("unbindable", "unbindable"), ("runbindable", "unbindable"),
])
def test_rootfs_propagation(oci, make_bundle, tmp_path, shared_rootfs, prop, fields):
    def mutate(s):
        s["root"]["path"] = shared_rootfs
        s["linux"]["rootfsPropagation"] = prop
    log = lifecycle(oci, make_bundle, tmp_path, ROOT_FIELDS, mutate)
    assert log == (fields + " " if fields else "") + "end\n"


def test_a_slave_rootfs_sees_host_mounts_made_later(factory, shared_rootfs):
    """rslave: what the host mounts below the rootfs after the start reaches the
    container; what the container mounts does not reach the host."""
    c = factory.create("slave", pc.Config(rootfs=shared_rootfs, rootfs_propagation="rslave",
                                          capabilities=None, seccomp=None))
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    try:
        try:
            _, exits = c.start(pc.ProcessConfig(
                args=["sh", "-c", "mount -t tmpfs mine /tmp; read x; cat /data/f"],
                stdin=go_r, stdout=w, stderr=w))
        finally:
            os.close(go_r)
            os.close(w)
        subprocess.run(["mount", "-t", "tmpfs", "later", os.path.join(shared_rootfs, "data")],
                       check=True)
        with open(os.path.join(shared_rootfs, "data", "f"), "w") as f:
            f.write("from the host\n")
        os.write(go_w, b"\n")
        assert read_pipes([r])[0] == "from the host\n"
        assert exits.get(timeout=10) == 0
        with open("/proc/self/mountinfo") as f:
            assert " mine " not in f.read()
    finally:
        os.close(go_w)
        c.destroy()


def test_rootfs_propagation_is_checked(busybox_rootfs):
    with pytest.raises(pc.ConfigInvalidError, match="rootfs_propagation"):
        pc.Config(rootfs=busybox_rootfs, rootfs_propagation="sideways")
    with pytest.raises(pc.ConfigInvalidError, match="rootfs_propagation"):
        pc.Config(rootfs=busybox_rootfs, rootfs_propagation="ro")
    with pytest.raises(pc.ConfigInvalidError, match="rootfs_propagation"):
        pc.Config(rootfs=busybox_rootfs, rootfs_propagation=["shared"])

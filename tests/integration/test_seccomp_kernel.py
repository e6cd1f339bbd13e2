"""Compiled profiles loaded into the real kernel.

Each check runs in a forked child: it sets no_new_privs, loads the program with
seccomp(SECCOMP_SET_MODE_FILTER), makes its syscalls through ctypes and reports
{check: errno or result} as JSON on a pipe (write(2) and exit_group are allowed by every
profile here). The parent never loads a filter. A "control" child runs the same probes
without a filter, so a probe that would fail anyway cannot pass by accident.
"""
import ctypes
import errno
import json
import os
import signal
import socket

import pytest

pytest.importorskip("pyseccomp")

from pycontainer.seccomp import DEFAULT_PROFILE, compile_profile  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers are x86_64's"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the control probes need root"),
]

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_void_p]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.adjtimex.argtypes = [ctypes.c_void_p]

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
NR = {"read": 0, "write": 1, "dup": 32, "getpid": 39, "clone": 56, "kexec_load": 246,
      "keyctl": 250, "getppid": 110, "ptrace": 101, "personality": 135, "unshare": 272,
      "dup3": 292, "bpf": 321, "io_uring_setup": 425, "clone3": 435, "get_mempolicy": 239,
      "kcmp": 312}
C = ctypes.c_ulong
CLONE_NS = {"NEWNS": 0x00020000, "NEWCGROUP": 0x02000000, "NEWUTS": 0x04000000,
            "NEWIPC": 0x08000000, "NEWUSER": 0x10000000, "NEWPID": 0x20000000,
            "NEWNET": 0x40000000}


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def sys_call(name, *args):
    """(result, errno) of a raw syscall; errno 0 on success."""
    ctypes.set_errno(0)
    r = libc.syscall(C(NR[name]), *[C(a & ((1 << 64) - 1)) for a in args])
    return (r, ctypes.get_errno() if r == -1 else 0)


def load(program):
    buf = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.syscall(C(317), C(SECCOMP_SET_MODE_FILTER), C(0), ctypes.byref(prog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")


def in_child(program, probe):
    """Run probe() in a forked child under `program` (None: no filter). Returns
    (probe's JSON-able result, wait status)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                               # the child: never returns into pytest
        code = 0
        try:
            os.close(r)
            if program is not None:
                load(program)
            out = json.dumps(probe()).encode()
            os.write(w, out)
        except BaseException as exc:          # noqa: BLE001 - report anything
            try:
                os.write(w, json.dumps({"child-error": repr(exc)}).encode())
            except BaseException:             # noqa: BLE001
                pass
            code = 3
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(data) if data else None
    assert not (isinstance(result, dict) and "child-error" in result), result
    return result, status


# -------------------------------------------------------------------- the default profile

def default_probes():
    out = {}
    out["mount"] = ctypes.get_errno() if libc.mount(
        b"none", b"/nonexistent-pycontainer-test/x", b"tmpfs", 0, None) else 0
    out["keyctl"] = sys_call("keyctl", 0, -3, 0)[1]           # KEYCTL_GET_KEYRING_ID, session
    out["bpf"] = sys_call("bpf", 5, 0, 0)[1]                  # BPF_PROG_LOAD, NULL attr
    out["kexec_load"] = sys_call("kexec_load", 0, 0, 0, 0xDEAD0000)[1]   # bad flags: EINVAL
    out["ptrace"] = sys_call("ptrace", 12, 0, 0, 0)[1]        # PTRACE_GETREGS of pid 0
    out["io_uring_setup"] = sys_call("io_uring_setup", 1, 0)[1]
    out["get_mempolicy"] = sys_call("get_mempolicy", 0, 0, 0, 0, 0)[1]
    out["clone3"] = sys_call("clone3", 0, 0)[1]
    try:
        socket.socket(40, socket.SOCK_STREAM).close()          # AF_VSOCK
        out["vsock"] = 0
    except OSError as exc:
        out["vsock"] = exc.errno
    name = socket.gethostname().encode()
    out["sethostname"] = ctypes.get_errno() if libc.sethostname(name, len(name)) else 0
    timex = ctypes.create_string_buffer(256)                   # modes = 0: read only
    out["adjtimex"] = ctypes.get_errno() if libc.adjtimex(timex) == -1 else 0
    # personality: the allowed values work, others fail (restore PER_LINUX after each)
    for value in (0xFFFFFFFF, 0x0, 0x8, 0x20000, 0x20008, 0x0400000, 0x0040000, 0x1,
                  0x1_0000_0000):
        out[f"personality {value:#x}"] = sys_call("personality", value)[1]
        sys_call("personality", 0)
    # file I/O
    path = f"/tmp/pycontainer-seccomp-{os.getpid()}"
    with open(path, "w") as f:
        f.write("hello")
    with open(path) as f:
        out["file"] = f.read()
    os.unlink(path)
    # fork still works
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return out


def unshare_and_clone_probes():
    """Probes that, without a filter, would create namespaces: only run under the filter."""
    out = {"unshare NEWUSER": sys_call("unshare", CLONE_NS["NEWUSER"])[1]}
    for name, flag in CLONE_NS.items():
        r, err = sys_call("clone", flag | signal.SIGCHLD, 0, 0, 0, 0)
        if r == 0:                                 # the filter failed: a child; leave at once
            os._exit(0)
        if r > 0:
            os.waitpid(r, 0)
        out[f"clone {name}"] = err
    # plain clone(SIGCHLD) - fork - is allowed
    r, err = sys_call("clone", signal.SIGCHLD, 0, 0, 0, 0)
    if r == 0:
        os._exit(5)
    out["clone plain"] = os.waitstatus_to_exitcode(os.waitpid(r, 0)[1]) if r > 0 else -err
    return out


def test_default_profile_in_the_kernel():
    program = compile_profile(DEFAULT_PROFILE)
    control, status = in_child(None, default_probes)
    assert status == 0
    got, status = in_child(program, default_probes)
    assert status == 0, status
    # without the filter these are not EPERM ...
    for name in ("mount", "keyctl", "bpf", "kexec_load", "ptrace", "io_uring_setup", "clone3"):
        assert control[name] != errno.EPERM, (name, control[name])
    assert control["clone3"] != errno.ENOSYS
    # ... with it they are
    for name in ("mount", "keyctl", "bpf", "kexec_load", "ptrace", "io_uring_setup",
                 "get_mempolicy", "vsock", "sethostname"):
        assert got[name] == errno.EPERM, (name, got[name])
    assert got["clone3"] == errno.ENOSYS
    assert got["adjtimex"] == 0                     # read-only adjtimex stays allowed
    for value in ("0xffffffff", "0x0", "0x8", "0x20000", "0x20008"):
        assert got[f"personality {value}"] == 0, value
    for value in ("0x400000", "0x40000", "0x1", "0x100000000"):
        assert got[f"personality {value}"] == errno.EPERM, value
        assert control[f"personality {value}"] == 0 or value == "0x100000000"
    assert got["file"] == "hello"
    assert got["fork"] == 7


def test_default_profile_namespaces_in_the_kernel():
    got, status = in_child(compile_profile(DEFAULT_PROFILE), unshare_and_clone_probes)
    assert status == 0, status
    assert got.pop("clone plain") == 5
    assert got == {"unshare NEWUSER": errno.EPERM,
                   **{f"clone {name}": errno.EPERM for name in CLONE_NS}}
    # and without the filter, unshare(CLONE_NEWUSER) works (so EPERM above is the filter's)
    control, status = in_child(None, lambda: {"unshare": sys_call("unshare",
                                                                  CLONE_NS["NEWUSER"])[1]})
    assert control == {"unshare": 0}


# -------------------------------------------------------------------- custom profiles

def test_default_deny_profile_returns_its_errno():
    keep = os.open("/dev/null", os.O_RDONLY)
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            # what the child needs to report and leave, and what CPython may do meanwhile
            {"names": ["write", "exit", "exit_group", "rt_sigreturn", "rt_sigprocmask",
                       "brk", "mmap", "munmap", "mremap", "madvise", "mprotect", "futex",
                       "close", "getpid", "gettid"],
             "action": "SCMP_ACT_ALLOW"},
            {"names": ["dup"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": keep, "op": "SCMP_CMP_EQ"}]},
        ]}

    def probe():
        out = {"getppid": sys_call("getppid")[1]}
        try:
            os.open("/tmp", os.O_RDONLY)
            out["open"] = 0
        except OSError as exc:
            out["open"] = exc.errno
        r, err = sys_call("dup", keep)
        out["dup allowed fd"] = err
        if r >= 0:
            os.close(r)
        out["dup other fd"] = sys_call("dup", 1)[1]
        return out

    try:
        got, status = in_child(compile_profile(profile), probe)
    finally:
        os.close(keep)
    assert status == 0, status
    assert got == {"getppid": errno.EACCES, "open": errno.EACCES, "dup allowed fd": 0,
                   "dup other fd": errno.EACCES}


def test_allow_profile_rules_and_args():
    a, b, c = 50, 51, 52
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            # two different arguments: ANDed
            {"names": ["dup3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
             "args": [{"index": 0, "value": a, "op": "SCMP_CMP_EQ"},
                      {"index": 2, "value": os.O_CLOEXEC, "op": "SCMP_CMP_EQ"}]},
            # the same argument twice: one rule per comparison, ORed (as runc)
            {"names": ["dup"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOTTY,
             "args": [{"index": 0, "value": a, "op": "SCMP_CMP_EQ"},
                      {"index": 0, "value": b, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_TRACE"},    # no tracer: ENOSYS
            {"names": ["getpid"], "action": "SCMP_ACT_LOG"},       # logged, allowed
            {"names": ["not_a_syscall_at_all", "kcmp"], "action": "SCMP_ACT_ERRNO",
             "errnoRet": errno.ESRCH},
        ]}

    def probe():
        for fd in (a, b, c):
            os.dup2(0, fd)
        out = {}
        out["dup3 a cloexec"] = sys_call("dup3", a, 60, os.O_CLOEXEC)[1]
        out["dup3 a 0"] = sys_call("dup3", a, 60, 0)[1]
        out["dup3 c cloexec"] = sys_call("dup3", c, 60, os.O_CLOEXEC)[1]
        out["dup a"] = sys_call("dup", a)[1]
        out["dup b"] = sys_call("dup", b)[1]
        out["dup c"] = sys_call("dup", c)[1]
        out["getppid"] = sys_call("getppid")[1]
        out["getpid"] = sys_call("getpid")[0] == os.getpid()
        out["kcmp"] = sys_call("kcmp", 0, 0, 0, 0, 0)
        return out

    got, status = in_child(compile_profile(profile), probe)
    assert status == 0, status
    assert got["dup3 a cloexec"] == errno.EXDEV
    assert got["dup3 a 0"] == 0 and got["dup3 c cloexec"] == 0
    assert got["dup a"] == errno.ENOTTY and got["dup b"] == errno.ENOTTY and got["dup c"] == 0
    assert got["getppid"] == errno.ENOSYS
    assert got["getpid"] is True
    assert got["kcmp"] == [-1, errno.ESRCH]


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_killing_actions(action):
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["getppid"], "action": action}]}

    def probe():
        sys_call("getppid")
        return {"survived": True}

    got, status = in_child(compile_profile(profile), probe)
    assert got is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, status


def test_filter_does_not_set_no_new_privs_itself():
    """The program loads only where the caller set NNP (or holds CAP_SYS_ADMIN): libseccomp
    is not asked to set it. Here: no NNP, but root -> loads; NNP stays off."""
    program = compile_profile(DEFAULT_PROFILE)

    def child():
        buf = ctypes.create_string_buffer(program, len(program))
        prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
        r = libc.syscall(C(317), C(SECCOMP_SET_MODE_FILTER), C(0), ctypes.byref(prog))
        return {"load": r, "nnp": libc.prctl(39, 0, 0, 0, 0)}    # PR_GET_NO_NEW_PRIVS

    got, status = in_child(None, child)
    assert got == {"load": 0, "nnp": 0}

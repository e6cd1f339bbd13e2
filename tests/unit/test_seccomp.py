"""seccomp.py: profile validation, compilation to BPF, the default profile's construction."""
import copy
import errno
import random

import pytest

from pycontainer.errors import ConfigInvalidError
from pycontainer.seccomp import (DEFAULT_PROFILE, compile_profile, filter_flags,
                                 validate_profile)

pytest.importorskip("pyseccomp")


def _profile(**over):
    p = {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]}
    p.update(over)
    return p


@pytest.mark.parametrize("profile, path", [
    ("nope", "seccomp"),
    ({}, "seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "seccomp.defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "seccomp.defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EPERM"}, "seccomp.defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}, "seccomp.defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
     "seccomp.architectures[0]"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86_64"},
     "seccomp.architectures"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]},
     "seccomp.flags[0]"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultaction": "x"}, "seccomp.defaultaction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "archMap": []}, "seccomp.archMap"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}, "seccomp.listenerPath"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": ["x"]}}, "seccomp.syscalls"),
])
def test_top_level_errors_name_the_path(profile, path):
    with pytest.raises(ConfigInvalidError) as exc:
        validate_profile(profile)
    assert exc.value.field == path
    assert str(exc.value).startswith(path + "=")


def _rule_error(rule, index=3):
    rules = [{"names": ["read"], "action": "SCMP_ACT_LOG"}] * index + [rule]
    with pytest.raises(ConfigInvalidError) as exc:
        validate_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules})
    return exc.value


@pytest.mark.parametrize("rule, path", [
    ("mount", "seccomp.syscalls[3]"),
    ({"action": "SCMP_ACT_ERRNO"}, "seccomp.syscalls[3].names"),
    ({"names": [], "action": "SCMP_ACT_ERRNO"}, "seccomp.syscalls[3].names"),
    ({"names": "mount", "action": "SCMP_ACT_ERRNO"}, "seccomp.syscalls[3].names"),
    ({"names": ["read", "mount, umount"], "action": "SCMP_ACT_ERRNO"},
     "seccomp.syscalls[3].names[1]"),
    ({"names": ["read", 7], "action": "SCMP_ACT_ERRNO"}, "seccomp.syscalls[3].names[1]"),
    ({"names": ["mount"]}, "seccomp.syscalls[3].action"),
    ({"names": ["mount"], "action": "SCMP_ACT_DENY"}, "seccomp.syscalls[3].action"),
    ({"names": ["mount"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1},
     "seccomp.syscalls[3].errnoRet"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": True},
     "seccomp.syscalls[3].errnoRet"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1},
     "seccomp.syscalls[3].errnoRet"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "bogus": 1}, "seccomp.syscalls[3].bogus"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "includes": {}},
     "seccomp.syscalls[3].includes"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "args": {"index": 0}},
     "seccomp.syscalls[3].args"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "args": [5]},
     "seccomp.syscalls[3].args[0]"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
               {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]},
     "seccomp.syscalls[3].args[1].index"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": -1, "value": 1, "op": "SCMP_CMP_EQ"}]},
     "seccomp.syscalls[3].args[0].index"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": "0", "value": 1, "op": "SCMP_CMP_EQ"}]},
     "seccomp.syscalls[3].args[0].index"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"}]},
     "seccomp.syscalls[3].args[0].value"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]},
     "seccomp.syscalls[3].args[0].value"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 0, "value": 1, "valueTwo": "2", "op": "SCMP_CMP_MASKED_EQ"}]},
     "seccomp.syscalls[3].args[0].valueTwo"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO",
      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]},
     "seccomp.syscalls[3].args[0].op"),
    ({"names": ["mount"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1}]},
     "seccomp.syscalls[3].args[0].op"),
])
def test_rule_errors_name_the_path(rule, path):
    err = _rule_error(rule)
    assert err.field == path, str(err)


def test_normalised_copy():
    src = {"defaultAction": "SCMP_ACT_ERRNO",
           "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86_64"],
           "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW"},
                        {"names": ["dup"], "action": "SCMP_ACT_TRACE",
                         "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]}]}
    before = copy.deepcopy(src)
    out = validate_profile(src)
    assert src == before
    assert out == {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
        "architectures": ["SCMP_ARCH_X86_64"], "flags": [],
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": None, "args": []},
            {"names": ["dup"], "action": "SCMP_ACT_TRACE", "errnoRet": errno.EPERM,
             "args": [{"index": 0, "value": 3, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}]}
    assert validate_profile(out) == out


def test_field_prefix():
    with pytest.raises(ConfigInvalidError) as exc:
        validate_profile({"defaultAction": 3}, field="linux.seccomp")
    assert exc.value.field == "linux.seccomp.defaultAction"


def test_filter_flags():
    assert filter_flags(_profile()) == 0
    assert filter_flags(_profile(flags=["SECCOMP_FILTER_FLAG_TSYNC",
                                        "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])) == 5


def test_compile_gives_sock_filter_bytes():
    prog = compile_profile(_profile())
    assert isinstance(prog, bytes) and len(prog) > 0 and len(prog) % 8 == 0
    assert len(prog) // 8 <= 4096                     # BPF_MAXINSNS
    default = compile_profile(DEFAULT_PROFILE)
    assert len(default) % 8 == 0 and len(default) // 8 <= 4096


def test_cache_returns_the_same_object():
    a = compile_profile(_profile())
    b = compile_profile(copy.deepcopy(_profile()))
    assert a is b
    assert compile_profile(DEFAULT_PROFILE) is compile_profile(copy.deepcopy(DEFAULT_PROFILE))
    assert compile_profile(_profile(defaultAction="SCMP_ACT_LOG")) is not a


def test_compile_validates():
    with pytest.raises(ConfigInvalidError) as exc:
        compile_profile(_profile(syscalls=[{"names": ["mount"], "action": "SCMP_ACT_X"}]))
    assert exc.value.field == "seccomp.syscalls[0].action"
    with pytest.raises(ConfigInvalidError):
        compile_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {1, 2}})


def test_unknown_names_are_skipped():
    plain = compile_profile(_profile())
    with_unknown = compile_profile(_profile(syscalls=[
        {"names": ["no_such_syscall_x", "mount", "also_not_a_syscall"],
         "action": "SCMP_ACT_ERRNO"}]))
    assert with_unknown == plain
    only_unknown = compile_profile(_profile(syscalls=[
        {"names": ["no_such_syscall_x"], "action": "SCMP_ACT_ERRNO"}]))
    assert only_unknown == compile_profile(_profile(syscalls=[]))


def test_rule_equal_to_default_is_skipped():
    assert compile_profile(_profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ALLOW"}])) \
        == compile_profile(_profile(syscalls=[]))
    err = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES}
    same = dict(err, syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                "errnoRet": errno.EACCES}])
    other = dict(err, syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO"}])
    assert compile_profile(same) == compile_profile(dict(err, syscalls=[]))
    assert compile_profile(other) != compile_profile(dict(err, syscalls=[]))


def test_repeated_index_becomes_separate_rules():
    # libseccomp refuses two comparisons of one argument in a rule; runc then ORs them.
    prog = compile_profile(_profile(syscalls=[
        {"names": ["dup"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 6, "op": "SCMP_CMP_EQ"}]}]))
    assert len(prog) % 8 == 0


def test_libseccomp_rejection_names_the_syscall():
    # Conflicting actions for the very same condition: libseccomp refuses the second rule.
    bad = _profile(syscalls=[
        {"names": ["dup"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]},
        {"names": ["dup"], "action": "SCMP_ACT_KILL_PROCESS",
         "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}]}])
    with pytest.raises(ConfigInvalidError) as exc:
        compile_profile(bad)
    assert exc.value.field == "seccomp.syscalls[1]"
    assert "'dup'" in str(exc.value)


# ------------------------------------------------------------------ the default profile

def _denied_names():
    return {n for r in DEFAULT_PROFILE["syscalls"] if not r["args"]
            and r["action"] == "SCMP_ACT_ERRNO" and r["errnoRet"] == errno.EPERM
            for n in r["names"]}


def test_default_profile_is_valid_and_default_allow():
    assert validate_profile(DEFAULT_PROFILE)["defaultAction"] == "SCMP_ACT_ALLOW"


@pytest.mark.parametrize("name", [
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "get_kernel_syms", "query_module", "mount", "umount", "umount2",
    "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr", "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "ptrace",
    "process_vm_readv", "process_vm_writev", "kcmp", "reboot", "swapon", "swapoff", "acct",
    "settimeofday", "stime", "clock_settime", "syslog", "vhangup", "lookup_dcookie",
    "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old", "iopl", "ioperm",
    "quotactl", "quotactl_fd", "open_by_handle_at", "name_to_handle_at", "userfaultfd",
    "setns", "unshare", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "fanotify_init", "mbind", "set_mempolicy", "move_pages", "get_mempolicy",
    "sethostname", "setdomainname", "pidfd_getfd", "process_madvise"])
def test_default_denies(name):
    assert name in _denied_names()


@pytest.mark.parametrize("name", ["adjtimex", "clock_adjtime", "chroot", "mknod", "read",
                                  "personality", "clone", "clone3"])
def test_default_does_not_deny_outright(name):
    assert name not in _denied_names()


def test_default_clone3_enosys():
    rules = [r for r in DEFAULT_PROFILE["syscalls"] if "clone3" in r["names"]]
    assert rules == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": errno.ENOSYS, "args": []}]


def _matches(arg, x):
    v, v2, op = arg["value"], arg["valueTwo"], arg["op"]
    return {"SCMP_CMP_NE": x != v, "SCMP_CMP_LT": x < v, "SCMP_CMP_LE": x <= v,
            "SCMP_CMP_EQ": x == v, "SCMP_CMP_GE": x >= v, "SCMP_CMP_GT": x > v,
            "SCMP_CMP_MASKED_EQ": x & v == v2}[op]


def _denied(name, x):
    """Whether the default profile's argument rules for `name` deny first argument x."""
    for rule in DEFAULT_PROFILE["syscalls"]:
        if name in rule["names"] and rule["args"]:
            assert rule["action"] == "SCMP_ACT_ERRNO"
            assert len({a["index"] for a in rule["args"]}) == len(rule["args"])
            if all(_matches(a, x) for a in rule["args"]):
                return True
    return False


ALLOWED_PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def test_personality_construction():
    for x in ALLOWED_PERSONALITIES:
        assert not _denied("personality", x), hex(x)
    samples = {0x0400000, 0x0040000, 0x1, 0x9, 0x20009, 0x28, 0xFFFFFFFE, 0x7FFFFFFF,
               0x1_0000_0000, 0x1_FFFF_FFFF, (1 << 64) - 1, 0x20000 | (1 << 31),
               0xFFFFFFFF & ~(1 << 3), 0xFFFFFFFF & ~(1 << 17), 0xFFFFFFFF & ~0x20008}
    samples |= {1 << b for b in range(64)} - set(ALLOWED_PERSONALITIES)
    samples |= {0xFFFFFFFF & ~(1 << b) for b in range(32)}
    samples |= {(1 << b) | 0x20008 for b in range(64) if b not in (3, 17)}
    rnd = random.Random(1234)
    for _ in range(20000):
        samples.add(rnd.getrandbits(rnd.choice((8, 18, 32, 33, 64))))
    for x in samples - set(ALLOWED_PERSONALITIES):
        assert _denied("personality", x), hex(x)


def test_clone_namespace_flags():
    sigchld = 17
    fork_flags = 0x01000000 | 0x00200000 | sigchld     # CHILD_SETTID|CHILD_CLEARTID|SIGCHLD
    thread_flags = 0x3D0F00                             # glibc pthread_create
    for ok in (sigchld, fork_flags, thread_flags, 0x80 | sigchld):
        assert not _denied("clone", ok)
    flags = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
             0x40000000)
    for f in flags:
        assert _denied("clone", f | sigchld)
        assert _denied("clone", f | fork_flags)
    assert _denied("clone", 0x7E020000 | sigchld)

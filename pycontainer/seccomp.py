"""Seccomp profiles in the OCI runtime-spec shape (``linux.seccomp``), compiled to classic BPF.

``validate_profile`` checks a profile and returns a normalised copy; ``compile_profile``
turns it into the bytes of a ``struct sock_filter`` array with libseccomp (through the
``pyseccomp`` ctypes binding), ready for ``seccomp(SECCOMP_SET_MODE_FILTER)``. Compiling
happens once per distinct profile (an LRU cache keyed by the profile's canonical JSON), never
on the start path.

Semantics follow runc:

- syscall names that libseccomp does not know are skipped (a profile written for a newer
  kernel still loads);
- a rule whose action equals the default action is skipped (libseccomp refuses it and it
  could never change the outcome);
- the ``args`` of one rule are ANDed, except that when two of them compare the same argument
  index every comparison becomes a rule of its own (ORed): libseccomp cannot compare one
  argument twice in a rule, and runc falls back the same way;
- the filter does not set no_new_privs itself (``SCMP_FLTATR_CTL_NNP`` = 0): the runtime
  decides; ``flags`` (``SECCOMP_FILTER_FLAG_*``) are load-time flags, see ``filter_flags``;
- the filter covers the native architecture plus the listed ones; a syscall made through any
  other architecture's entry point gets libseccomp's bad-arch action, KILL_THREAD.
"""
from __future__ import annotations

import errno as _errno
import functools
import json
import os
import platform
import re

from . import namespaces
from .errors import ConfigInvalidError, ContainerSystemError

# libseccomp (through pyseccomp) is loaded at the first compile, not with this module:
# finding it runs `ldconfig -p` twice (ctypes.util.find_library), which commands that
# compile nothing (`state`, `kill`, ...) must not pay. See _libseccomp().
_scmp = []          # [the pyseccomp module], once loaded


def _out_of_descriptors():
    """Whether this process is near its descriptor limit: finding libseccomp takes several
    at once (subprocess's pipes and /dev/null for ldconfig, then dlopen's)."""
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        return True
    return soft != resource.RLIM_INFINITY and soft - in_use < 16


def _libseccomp():
    """The pyseccomp module, loaded on first use. Finding libseccomp needs descriptors
    that may have run out: that is a ContainerSystemError (EMFILE); any failure is tried
    again at the next compile. Returns (module, None) or (None, why it cannot be loaded)."""
    if _scmp:
        return _scmp[0], None
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as exc:   # pragma: no cover - the host
        if _out_of_descriptors():
            raise ContainerSystemError(_errno.EMFILE, f"load libseccomp: {exc}") from None
        return None, exc
    _scmp.append(pyseccomp)
    return pyseccomp, None


__all__ = ["DEFAULT_PROFILE", "validate_profile", "compile_profile", "filter_flags",
           "ACTIONS", "OPERATORS", "ARCHITECTURES", "FLAGS"]

# Action names -> libseccomp action values (errno/trace data is ORed in at compile time).
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,            # = KILL_THREAD, as in libseccomp
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_UNSUPPORTED_ACTIONS = {
    "SCMP_ACT_NOTIFY": "seccomp user notification (listenerPath) is not supported",
}
OPERATORS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
# AUDIT_ARCH_* tokens, as libseccomp's SCMP_ARCH_* macros.
_LE, _64, _N32 = 0x40000000, 0x80000000, 0x20000000
ARCHITECTURES = {
    "SCMP_ARCH_NATIVE": 0,
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _64,
    "SCMP_ARCH_MIPS64N32": 8 | _64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _64,
    "SCMP_ARCH_PPC64LE": 21 | _64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _64,
    "SCMP_ARCH_RISCV64": 243 | _64 | _LE,
}
# seccomp(2) SECCOMP_FILTER_FLAG_* (load-time flags; not part of the BPF program).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
_TOP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "flags", "syscalls",
             "listenerPath", "listenerMetadata", "comment"}
_RULE_KEYS = {"names", "name", "action", "errnoRet", "args", "comment"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}
_DOCKER_KEYS = {"archMap", "includes", "excludes", "defaultErrno"}
_MAX_U64 = (1 << 64) - 1
_MAX_ERRNO = 4095          # the kernel clamps SECCOMP_RET_ERRNO data to MAX_ERRNO
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_NR_SCMP_ERROR = -1        # libseccomp's "no such syscall" from resolve_name


# ---------------------------------------------------------------------------- validation

def _bad(path, value, reason):
    raise ConfigInvalidError(path, value, reason)


def _int(path, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(path, value, "expected an integer")
    if not lo <= value <= hi:
        _bad(path, value, f"expected {lo}..{hi}")
    return value


def _list(path, value, what):
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        _bad(path, value, f"expected a list of {what}")
    return list(value)


def _keys(path, d, allowed):
    for k in d:
        if k in _DOCKER_KEYS:
            _bad(f"{path}.{k}", d[k], "a Docker profile key, not OCI: convert the profile to the "
                 "OCI runtime-spec form (linux.seccomp) first")
        if k not in allowed:
            _bad(f"{path}.{k}", d[k], "unknown field")


def _action(path, name):
    if not isinstance(name, str):
        _bad(path, name, "expected an action name string")
    if name in _UNSUPPORTED_ACTIONS:
        _bad(path, name, _UNSUPPORTED_ACTIONS[name])
    if name not in ACTIONS:
        _bad(path, name, f"unknown action; expected one of {sorted(ACTIONS)}")
    return name


def _errno_ret(path, action, value):
    """The action's data: errno for ERRNO (default EPERM, as the OCI spec says), the tracer's
    message for TRACE (default EPERM, as runc); None for actions that carry none."""
    if action not in _WITH_DATA:
        if value is not None:
            _bad(path, value, f"errnoRet is only meaningful for {' and '.join(_WITH_DATA)}")
        return None
    if value is None:
        return _errno.EPERM
    return _int(path, value, 0, _MAX_ERRNO if action == "SCMP_ACT_ERRNO" else 0xFFFF)


def validate_profile(profile, field="seccomp"):
    """Check an OCI ``linux.seccomp`` dict; return a normalised copy.

    Every error is a ConfigInvalidError naming the exact place, e.g.
    ``seccomp.syscalls[3].args[0].op``. Unknown syscall names are not errors (they are
    skipped at compile time, as runc does)."""
    if not isinstance(profile, dict):
        _bad(field, profile, "expected a dict in the OCI linux.seccomp shape")
    _keys(field, profile, _TOP_KEYS)
    if "listenerPath" in profile and profile["listenerPath"] not in (None, ""):
        _bad(f"{field}.listenerPath", profile["listenerPath"],
             "seccomp user notification is not supported")
    if "defaultAction" not in profile:
        _bad(f"{field}.defaultAction", None, "required")
    default = _action(f"{field}.defaultAction", profile["defaultAction"])
    default_ret = _errno_ret(f"{field}.defaultErrnoRet", default, profile.get("defaultErrnoRet"))

    arches = []
    for i, arch in enumerate(_list(f"{field}.architectures", profile.get("architectures") or [],
                                   "SCMP_ARCH_* names")):
        if not isinstance(arch, str) or arch not in ARCHITECTURES:
            _bad(f"{field}.architectures[{i}]", arch,
                 f"unknown architecture; expected one of {sorted(ARCHITECTURES)}")
        if arch not in arches:
            arches.append(arch)

    flags = []
    for i, flag in enumerate(_list(f"{field}.flags", profile.get("flags") or [],
                                   "SECCOMP_FILTER_FLAG_* names")):
        if not isinstance(flag, str) or flag not in FLAGS:
            _bad(f"{field}.flags[{i}]", flag, f"unknown flag; expected one of {sorted(FLAGS)}")
        if flag not in flags:
            flags.append(flag)

    rules = []
    for i, rule in enumerate(_list(f"{field}.syscalls", profile.get("syscalls") or [],
                                   "syscall rules")):
        rules.append(_validate_rule(f"{field}.syscalls[{i}]", rule))
    return {"defaultAction": default, "defaultErrnoRet": default_ret,
            "architectures": arches, "flags": flags, "syscalls": rules}


def _validate_rule(path, rule):
    if not isinstance(rule, dict):
        _bad(path, rule, "expected a dict with names, action and optional args")
    _keys(path, rule, _RULE_KEYS)
    if "names" in rule:
        names = _list(f"{path}.names", rule["names"], "syscall names")
    elif "name" in rule:            # the pre-1.0 OCI spelling
        names = [rule["name"]]
    else:
        _bad(f"{path}.names", None, "required")
    if not names:
        _bad(f"{path}.names", names, "must name at least one syscall")
    for j, name in enumerate(names):
        if not isinstance(name, str) or not _NAME.match(name):
            _bad(f"{path}.names[{j}]", name, "expected a syscall name ([A-Za-z0-9_]+)")
    if "action" not in rule:
        _bad(f"{path}.action", None, "required")
    action = _action(f"{path}.action", rule["action"])
    ret = _errno_ret(f"{path}.errnoRet", action, rule.get("errnoRet"))
    args = []
    for k, arg in enumerate(_list(f"{path}.args", rule.get("args") or [], "argument comparisons")):
        apath = f"{path}.args[{k}]"
        if not isinstance(arg, dict):
            _bad(apath, arg, "expected a dict with index, value, valueTwo and op")
        _keys(apath, arg, _ARG_KEYS)
        for key in ("index", "value", "op"):
            if key not in arg:
                _bad(f"{apath}.{key}", None, "required")
        index = _int(f"{apath}.index", arg["index"], 0, 5)
        value = _int(f"{apath}.value", arg["value"], 0, _MAX_U64)
        value_two = _int(f"{apath}.valueTwo", arg.get("valueTwo", 0) or 0, 0, _MAX_U64)
        op = arg["op"]
        if not isinstance(op, str) or op not in OPERATORS:
            _bad(f"{apath}.op", op, f"unknown operator; expected one of {sorted(OPERATORS)}")
        args.append({"index": index, "value": value, "valueTwo": value_two, "op": op})
    return {"names": list(names), "action": action, "errnoRet": ret, "args": args}


def filter_flags(profile):
    """The ``flags`` of a profile as the seccomp(2) flags word (for the loader)."""
    flags = 0
    for name in validate_profile(profile)["flags"]:
        flags |= FLAGS[name]
    return flags


# ---------------------------------------------------------------------------- compilation

def compile_profile(profile):
    """The profile as classic-BPF bytes (``struct sock_filter[]``, 8 bytes an instruction).

    Cached: the same profile (by canonical JSON) gives the same bytes object. Raises
    ConfigInvalidError for a bad profile or a rule libseccomp refuses."""
    if profile is DEFAULT_PROFILE:
        return _compile_default()
    try:
        key = json.dumps(profile, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        key = json.dumps(validate_profile(profile), sort_keys=True)
    return _compile_json(key)


@functools.lru_cache(maxsize=1)
def _compile_default():
    # Every default Config shares this: no canonical JSON of the profile per container.
    return _compile_json(json.dumps(DEFAULT_PROFILE, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _compile_json(key):
    return _compile(validate_profile(json.loads(key)))


def _action_value(action, ret):
    value = ACTIONS[action]
    if action in _WITH_DATA:
        value |= ret & 0xFFFF
    return value


def _optimize(scmp, flt, rules):
    """A binary search over syscall numbers instead of a linear list, for filters of 8 rules
    or more (as runc): the kernel emulates a filter for every syscall number when it loads
    it (the constant-action cache), so the default profile loads in about 115 us instead
    of 210 (benchmarks/README.md). libseccomp 2.5.0-2.5.3 kill every syscall of a tree
    filter without rules (libseccomp#370): a short filter gains nothing and keeps the list,
    as does a libseccomp before 2.5, which has no such attribute."""
    if rules < 8:
        return
    try:
        flt.set_attr(scmp.Attr.CTL_OPTIMIZE, 2)
    except (OSError, ValueError, AttributeError):
        pass


def _compile(p, field="seccomp"):
    scmp, missing = _libseccomp()
    if scmp is None:             # pragma: no cover - depends on the host
        raise ConfigInvalidError(field, "seccomp", f"needs the pyseccomp package and libseccomp "
                                 f"({missing})")
    default = _action_value(p["defaultAction"], p["defaultErrnoRet"])
    try:
        flt = scmp.SyscallFilter(default)
    except OSError as exc:
        raise ConfigInvalidError(f"{field}.defaultAction", p["defaultAction"],
                                 f"libseccomp refused it: {exc.strerror}") from None
    flt.set_attr(scmp.Attr.CTL_NNP, 0)
    for i, arch in enumerate(p["architectures"]):
        token = ARCHITECTURES[arch]
        if token == 0 or flt.exist_arch(token):
            continue
        try:
            flt.add_arch(token)
        except OSError as exc:
            raise ConfigInvalidError(f"{field}.architectures[{i}]", arch,
                                     f"libseccomp refused it: {exc.strerror}") from None
    rules = 0
    for i, rule in enumerate(p["syscalls"]):
        action = _action_value(rule["action"], rule["errnoRet"])
        if action == default:
            continue
        conds = [scmp.Arg(a["index"], OPERATORS[a["op"]], a["value"], a["valueTwo"])
                 for a in rule["args"]]
        indexes = [a["index"] for a in rule["args"]]
        if len(set(indexes)) != len(indexes):
            groups = [[c] for c in conds]       # runc: one rule per comparison, ORed
        else:
            groups = [conds]
        for name in rule["names"]:
            nr = scmp.resolve_syscall(scmp.Arch.NATIVE, name)
            if nr == _NR_SCMP_ERROR:
                continue                        # unknown to libseccomp: skipped, as runc
            for group in groups:
                try:
                    flt.add_rule(action, nr, *group)
                except OSError as exc:
                    raise ConfigInvalidError(f"{field}.syscalls[{i}]", name,
                                             f"libseccomp refused the rule for syscall "
                                             f"{name!r}: {exc.strerror}") from None
                rules += 1
    _optimize(scmp, flt, rules)
    fd = os.memfd_create("pycontainer-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as fh:
        try:
            flt.export_bpf(fh)
        except OSError as exc:
            raise ConfigInvalidError(field, p["defaultAction"],
                                     f"libseccomp could not export the filter: "
                                     f"{exc.strerror}") from None
        fh.seek(0)
        program = fh.read()
    if not program or len(program) % 8:
        raise ConfigInvalidError(field, len(program), "libseccomp exported a malformed program")
    return program


# ---------------------------------------------------------------------------- the default

# The architectures a native binary's compat entry points use (Docker's archMap).
_ARCH_MAP = {
    # x32 left out: rarely built, off in most kernels, and each architecture adds a copy
    # of every rule to the filter the kernel must JIT at each start. Its syscalls get
    # the bad-architecture action (killed), which is the safe side.
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "mips64": ["SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    "mips64el": ["SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
}

# Syscalls the default profile answers with EPERM. The default action is ALLOW, so the list
# must cover at least everything Docker's default profile (moby profiles/seccomp/default.json,
# a default-deny allowlist) refuses a container holding Docker's default capabilities.
# Grouped; choices that differ from Docker are marked.
_DENY = [
    # kernel modules, kexec, reboot (CAP_SYS_MODULE / CAP_SYS_BOOT in Docker)
    "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
    "query_module", "kexec_load", "kexec_file_load", "reboot",
    # mounts and the new mount API (CAP_SYS_ADMIN in Docker). chroot stays allowed, as in
    # Docker (CAP_SYS_CHROOT is a default capability).
    "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    # namespaces (CAP_SYS_ADMIN in Docker); clone's namespace flags and clone3 are below.
    # sethostname/setdomainname are CAP_SYS_ADMIN-only in Docker too: the runtime sets the
    # hostname before the filter is loaded.
    "setns", "unshare", "sethostname", "setdomainname",
    # the kernel keyring is not namespaced
    "keyctl", "add_key", "request_key",
    # tracing and inspecting other processes. DIFFERS: Docker allows ptrace,
    # process_vm_readv and process_vm_writev on kernels >= 4.8; we deny them: a container's
    # processes have no business reading each other's memory, and ptrace is the classic
    # way around a seccomp filter on older kernels. kcmp, pidfd_getfd and process_madvise
    # need CAP_SYS_PTRACE in Docker.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "process_madvise",
    # BPF, perf, fanotify, dcookies (CAP_SYS_ADMIN / CAP_BPF / CAP_PERFMON in Docker)
    "bpf", "perf_event_open", "fanotify_init", "lookup_dcookie",
    # userfaultfd: a favourite of kernel exploits for winning races (CAP_SYS_PTRACE in Docker)
    "userfaultfd",
    # io_uring: a large attack surface that seccomp cannot see into; Docker >= 25 denies it
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # setting the clock (CAP_SYS_TIME in Docker). adjtimex, clock_adjtime and
    # clock_adjtime64 stay ALLOWED, as in Docker: read-only use (modes = 0) is common
    # (ntp_gettime, chrony/ntpd status), the kernel demands CAP_SYS_TIME for any change,
    # and glibc >= 2.32 implements adjtimex() itself with the clock_adjtime syscall, so
    # denying clock_adjtime would break the adjtimex() we mean to allow.
    "settimeofday", "stime", "clock_settime", "clock_settime64",
    # raw I/O ports and vm86 (CAP_SYS_RAWIO in Docker; vm86 not allowed at all)
    "iopl", "ioperm", "vm86", "vm86old",
    # accounting, swap, quotas, the kernel log, terminals (each cap-gated in Docker)
    "acct", "swapon", "swapoff", "quotactl", "quotactl_fd", "syslog", "vhangup",
    # obsolete interfaces (absent from Docker's allowlist)
    "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
    # file handles: open_by_handle_at escapes a bind mount ("shocker"; CAP_DAC_READ_SEARCH
    # in Docker). DIFFERS: Docker allows name_to_handle_at; we deny it with its partner.
    "open_by_handle_at", "name_to_handle_at",
    # NUMA policy and page migration (CAP_SYS_NICE in Docker; get_mempolicy is read-only but
    # Docker gates it the same way, and libnuma treats EPERM as "no NUMA")
    "mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node", "move_pages",
    "migrate_pages",
    # PCI config space on the architectures that have these syscalls
    "pciconfig_iobase", "pciconfig_read", "pciconfig_write",
]
# Not denied although Docker's allowlist leaves them out: syscalls the kernel no longer
# implements (afs_syscall, break, ftime, getpmsg, gtty, lock, mpx, prof, profil, putpmsg,
# security, stty, tuxcall, ulimit, vserver, bdflush: ENOSYS either way), and legacy x86-32
# entry points (signal, sigaction, sgetmask, ssetmask, nice, oldstat, olduname, readdir ...)
# that grant nothing their allowed modern equivalents do not. Syscalls newer than the host's
# libseccomp cannot be named at all (their names are skipped): a default-ALLOW profile
# allows them.

# clone's namespace flags: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
# (Docker's mask 0x7E020000). CLONE_NEWTIME (0x80) cannot be passed to clone(): that bit is
# part of the exit signal there.
_CLONE_NS_FLAGS = tuple(sorted(ns.clone_flag for ns in namespaces.TABLE))
# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
# and 0xffffffff (query).
_PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _clone_rules():
    """clone with any namespace flag -> EPERM. Comparisons in one rule are ANDed, so "any of
    the flags" is one rule per flag: ``flags & F == F`` (rules for one syscall are ORed)."""
    index = 1 if platform.machine() in ("s390x", "s390") else 0   # s390 swaps the arguments
    return [{"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": _errno.EPERM,
             "args": [{"index": index, "value": flag, "valueTwo": flag,
                       "op": "SCMP_CMP_MASKED_EQ"}]}
            for flag in _CLONE_NS_FLAGS]


def _personality_rules():
    """personality(x) -> EPERM unless x is one of _PERSONALITY_ALLOWED.

    With a default of ALLOW, "ALLOW if x == v" rules do nothing; we need ERRNO rules whose
    union is exactly the complement of the allowed set. "x != v1 AND x != v2 ..." in one rule
    is what we would like, but libseccomp refuses two comparisons of the same argument in a
    rule (EINVAL), so the complement is written as a union of single-comparison rules:

    - ``x > 0xffffffff`` covers every value above 32 bits;
    - for x < 2**32 outside the allowed set: x has some bit b set outside {3, 17} (else x is
      0, 8, 0x20000 or 0x20008) and some bit c < 32 clear (else x is 0xffffffff). The rule
      "bit b set and bit c clear" is one MASKED_EQ (mask = b|c, datum = b), and it can never
      match an allowed value. Taking the pairs (b, next b) around a cycle of the 30 bits
      outside {3, 17}, plus (first, 3) and (first, 17), covers every such x: if some bit
      outside {3, 17} is clear, the cycle passes from a set bit to a clear one somewhere;
      otherwise all 30 are set and bit 3 or 17 is the clear one.

    33 rules in all; tests/unit/test_seccomp.py checks the construction value by value."""
    special = (3, 17)
    ring = [b for b in range(32) if b not in special]
    pairs = [(b, ring[(i + 1) % len(ring)]) for i, b in enumerate(ring)]
    pairs += [(ring[0], s) for s in special]
    rules = [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": _errno.EPERM,
              "args": [{"index": 0, "value": 0xFFFFFFFF, "valueTwo": 0, "op": "SCMP_CMP_GT"}]}]
    for set_bit, clear_bit in pairs:
        rules.append({"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": _errno.EPERM,
                      "args": [{"index": 0, "value": (1 << set_bit) | (1 << clear_bit),
                                "valueTwo": 1 << set_bit, "op": "SCMP_CMP_MASKED_EQ"}]})
    return rules


def _default_profile():
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(_ARCH_MAP.get(platform.machine(), [])),
        "flags": [],
        "syscalls": [
            {"names": list(_DENY), "action": "SCMP_ACT_ERRNO", "errnoRet": _errno.EPERM,
             "args": []},
            # clone3's flags live in memory that seccomp cannot read: ENOSYS makes glibc
            # (>= 2.34) fall back to clone, whose flags the rules below can see (as Docker).
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": _errno.ENOSYS,
             "args": []},
            *_clone_rules(),
            *_personality_rules(),
            # AF_VSOCK sockets reach the hypervisor's host, past any network namespace
            # (Docker denies them too). socketcall(2) on x86-32 is not inspected, as in Docker.
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": _errno.EPERM,
             "args": [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
        ],
    }


#: The profile applied when a Config says ``seccomp="default"``. Treat it as read-only
#: (``copy.deepcopy`` it to make a variant).
DEFAULT_PROFILE = _default_profile()

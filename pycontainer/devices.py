"""The device-cgroup policy, as runc applies it.

A policy is a list of DeviceRule (the OCI ``linux.resources.devices`` entries), applied in
order with cgroup v1's semantics, which runc emulates for cgroup v2 too:

- a rule of type ``a`` (every device, every access) resets the policy: ``deny a`` gives
  an allow-list (default deny), ``allow a`` a deny-list (default allow);
- before any ``a`` rule the policy is an allow-list (default deny), as runc's emulator;
- in an allow-list, an allow rule adds an exception (accesses for the same type:major:minor
  merge) and a deny rule takes accesses away from the exception with exactly the same
  type:major:minor; it may not punch a hole in a wildcard exception (cgroup v1 would silently
  ignore it, so runc refuses it and so do we). Symmetrically for a deny-list.

``v1_writes`` gives the writes for a v1 ``devices`` cgroup; ``bpf_program`` the eBPF
``BPF_PROG_TYPE_CGROUP_DEVICE`` program for a v2 cgroup, and ``load_and_attach`` loads and
attaches it. An access is allowed when one exception matches its type, major, minor and
covers every access it asks for (the kernel asks for read and write together on O_RDWR);
otherwise the default applies.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
from dataclasses import dataclass

from .errors import ConfigInvalidError, ContainerSystemError

__all__ = ["DeviceRule", "DEFAULT_RULES", "v1_writes", "bpf_program", "load", "attach",
           "load_and_attach", "attach_cached", "DevicePolicy",
           "detach", "effective_rules"]

_MAX_U32 = (1 << 32) - 1


@dataclass(frozen=True)
class DeviceRule:
    """One device-cgroup rule. ``type``: 'a' (all), 'c' (char) or 'b' (block); ``major`` and
    ``minor``: a number or -1 for any; ``access``: a non-empty subset of "rwm".
    ``DeviceRule(False)`` denies everything."""

    allow: bool
    type: str = "a"
    major: int = -1
    minor: int = -1
    access: str = "rwm"

    def __post_init__(self):
        if not isinstance(self.allow, bool):
            _bad("devices.allow", self.allow, "expected True or False")
        if self.type not in ("a", "c", "b"):
            _bad("devices.type", self.type, "expected 'a', 'c' or 'b'")
        for name in ("major", "minor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not -1 <= value <= _MAX_U32:
                _bad(f"devices.{name}", value, f"expected -1 (any) or 0..{_MAX_U32}")
        access = self.access
        if not isinstance(access, str) or not access or set(access) - set("rwm") \
                or len(set(access)) != len(access):
            _bad("devices.access", access, "expected a non-empty subset of 'rwm'")
        # Canonical order, so equal rules compare equal.
        object.__setattr__(self, "access", "".join(c for c in "rwm" if c in access))
        if self.type == "a" and (self.major != -1 or self.minor != -1 or self.access != "rwm"):
            # cgroup v1 and runc read any 'a' rule as "every device, every access": a rule
            # that looks narrower would silently allow (or deny) everything.
            _bad("devices.type", self.type,
                 "an 'a' rule means every device with every access: it takes no major, "
                 "minor or access other than -1, -1, 'rwm'")

    def cgroup_string(self):
        """The rule as devices.allow / devices.deny take it: "c 1:3 rwm" (or "a")."""
        if self.type == "a":
            return "a"
        major = "*" if self.major == -1 else str(self.major)
        minor = "*" if self.minor == -1 else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def _bad(field, value, reason):
    raise ConfigInvalidError(field, value, reason)


def _c(major, minor, access="rwm"):
    return DeviceRule(True, "c", major, minor, access)


#: runc's default policy: deny everything, then allow mknod of any node and the standard
#: character devices (null, zero, full, random, urandom, tty, console, ptmx, pts/*).
# runc's default, less its "c *:* m" and "b *:* m": a container may not even create a
# node it is not allowed to use.
DEFAULT_RULES = (
    DeviceRule(False, "a", -1, -1, "rwm"),
    _c(1, 3),        # /dev/null
    _c(1, 5),        # /dev/zero
    _c(1, 7),        # /dev/full
    _c(1, 8),        # /dev/random
    _c(1, 9),        # /dev/urandom
    _c(5, 0),        # /dev/tty
    _c(5, 1),        # /dev/console
    _c(5, 2),        # /dev/ptmx
    _c(136, -1),     # /dev/pts/*
)


# ---------------------------------------------------------------------------- emulation

def _check_rules(rules):
    if isinstance(rules, (str, bytes, dict, DeviceRule)) or not hasattr(rules, "__iter__"):
        _bad("devices", rules, "expected a list of DeviceRule")
    rules = list(rules)
    for i, rule in enumerate(rules):
        if not isinstance(rule, DeviceRule):
            _bad(f"devices[{i}]", rule, "expected a DeviceRule")
    return rules


def _emulate(rules):
    """(default_allow, {(type, major, minor): access set}) after applying rules in order, as
    runc's devices emulator. Exceptions keep their first-insertion order."""
    rules = _check_rules(rules)
    default_allow = False
    exceptions = {}
    for i, rule in enumerate(rules):
        if rule.type == "a":
            default_allow, exceptions = rule.allow, {}
            continue
        key = (rule.type, rule.major, rule.minor)
        access = set(rule.access)
        if rule.allow != default_allow:          # adds an exception
            exceptions[key] = exceptions.get(key, set()) | access
            continue
        # Takes accesses away from the exact exception; a wildcard exception that covers
        # this one cannot be narrowed.
        t, major, minor = key
        for wider in ((t, -1, minor), (t, major, -1), (t, -1, -1)):
            if wider != key and exceptions.get(wider, set()) & access:
                held = "".join(c for c in "rwm" if c in exceptions[wider])
                wide = DeviceRule(not rule.allow, t, wider[1], wider[2], held)
                _bad(f"devices[{i}]", rule.cgroup_string(),
                     f"cannot punch a hole in the wider rule {wide.cgroup_string()} "
                     f"(cgroup v1 would ignore it)")
        left = exceptions.get(key, set()) - access
        if left:
            exceptions[key] = left
        else:
            exceptions.pop(key, None)
    return default_allow, exceptions


def effective_rules(rules):
    """The minimal equivalent policy: the disruptive 'a' rule, then one rule per exception."""
    default_allow, exceptions = _emulate(rules)
    out = [DeviceRule(default_allow)]
    for (t, major, minor), access in exceptions.items():
        out.append(DeviceRule(not default_allow, t, major, minor,
                              "".join(c for c in "rwm" if c in access)))
    return out


def v1_writes(rules):
    """[(file, line)] to write, in order, into a v1 devices cgroup directory:
    ``[("devices.deny", "a"), ("devices.allow", "c 1:3 rwm"), ...]``."""
    return [("devices.allow" if r.allow else "devices.deny", r.cgroup_string())
            for r in effective_rules(rules)]


# ---------------------------------------------------------------------------- eBPF

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
# access_type = (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*
_DEV_TYPE = {"b": 1, "c": 2}                          # BPF_DEVCG_DEV_BLOCK / _CHAR
_ACC = {"m": 1, "r": 2, "w": 4}                       # BPF_DEVCG_ACC_MKNOD / READ / WRITE

# Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
_LDX_MEM_W = 0x61         # BPF_LDX | BPF_MEM | BPF_W
_ALU32_AND_K = 0x54       # BPF_ALU | BPF_AND | BPF_K
_ALU32_RSH_K = 0x74       # BPF_ALU | BPF_RSH | BPF_K
_ALU32_MOV_K = 0xB4       # BPF_ALU | BPF_MOV | BPF_K
_ALU32_MOV_X = 0xBC       # BPF_ALU | BPF_MOV | BPF_X
_JMP_JNE_K = 0x55         # BPF_JMP | BPF_JNE | BPF_K (64-bit compare, imm sign-extended)
_JMP32_JNE_K = 0x56       # BPF_JMP32 | BPF_JNE | BPF_K (32-bit compare; Linux >= 5.1)
_JMP_JNE_X = 0x5D         # BPF_JMP | BPF_JNE | BPF_X
_JMP_JEQ_K = 0x15         # BPF_JMP | BPF_JEQ | BPF_K
_JMP_EXIT = 0x95          # BPF_JMP | BPF_EXIT
R0, R1, R2, R3, R4, R5 = range(6)


def _insn(code, dst=0, src=0, off=0, imm=0):
    if imm > 0x7FFFFFFF:
        imm -= 1 << 32
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _jne_imm(reg, value, off):
    """if (reg != value) goto +off. reg holds a zero-extended u32; a value >= 2**31 needs
    a 32-bit compare (a 64-bit one would see the immediate sign-extended)."""
    code = _JMP_JNE_K if value <= 0x7FFFFFFF else _JMP32_JNE_K
    return _insn(code, reg, off=off, imm=value)


def bpf_program(rules):
    """The policy as a BPF_PROG_TYPE_CGROUP_DEVICE program: little-endian ``struct bpf_insn``
    bytes (8 each). Returns 1 (allow) or 0 (deny). The layout is runc's (and crun's); the
    access test of a deny-list follows the kernel's v1 controller, which refuses an access
    that overlaps a deny exception at all (runc's program uses the subset test there too, so
    a "deny w" rule would let an O_RDWR open through):

        r2 = ctx->access_type & 0xffff   (device type)
        r3 = ctx->access_type >> 16      (requested access)
        r4 = ctx->major; r5 = ctx->minor
        for each exception:              (a block; any mismatch jumps to the next block)
            if r2 != type: next
            allow-list: if (r3 & access) != r3: next   (omitted when access is rwm)
            deny-list:  if (r3 & access) == 0: next    (omitted when access is rwm)
            if r4 != major: next              (omitted for *)
            if r5 != minor: next              (omitted for *)
            return !default
        return default
    """
    default_allow, exceptions = _emulate(rules)
    insns = [
        _insn(_LDX_MEM_W, R2, R1, 0),
        _insn(_ALU32_AND_K, R2, imm=0xFFFF),
        _insn(_LDX_MEM_W, R3, R1, 0),
        _insn(_ALU32_RSH_K, R3, imm=16),
        _insn(_LDX_MEM_W, R4, R1, 4),
        _insn(_LDX_MEM_W, R5, R1, 8),
    ]
    verdict = 0 if default_allow else 1
    for (t, major, minor), access in exceptions.items():
        mask = sum(_ACC[c] for c in access)
        checks = 1 + (3 if mask != 7 else 0) + (major != -1) + (minor != -1)
        # A jump's offset counts from the instruction after it: from the check about to be
        # appended as block[k], the next block starts (length - k - 1) instructions on.
        length = checks + 2
        block = []

        def skip():
            return length - len(block) - 1
        block.append(_insn(_JMP_JNE_K, R2, off=skip(), imm=_DEV_TYPE[t]))
        if mask != 7:
            block.append(_insn(_ALU32_MOV_X, R1, R3))
            block.append(_insn(_ALU32_AND_K, R1, imm=mask))
            if default_allow:       # a deny exception: any access it names is refused
                block.append(_insn(_JMP_JEQ_K, R1, off=skip(), imm=0))
            else:                   # an allow exception must cover every access asked for
                block.append(_insn(_JMP_JNE_X, R1, R3, off=skip()))
        if major != -1:
            block.append(_jne_imm(R4, major, skip()))
        if minor != -1:
            block.append(_jne_imm(R5, minor, skip()))
        block.append(_insn(_ALU32_MOV_K, R0, imm=verdict))
        block.append(_insn(_JMP_EXIT))
        assert len(block) == length
        insns += block
    insns.append(_insn(_ALU32_MOV_K, R0, imm=1 if default_allow else 0))
    insns.append(_insn(_JMP_EXIT))
    return b"".join(insns)


# ---------------------------------------------------------------------------- bpf(2)

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351,
           "i686": 357, "armv7l": 386}
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH = 5, 8, 9
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
_LICENSE = b"Apache"       # the project's; the program calls no GPL-only helper
_PROG_NAME = b"pyc_devices"
_LOG_SIZE = 1 << 20

_libc = None


def _syscall_bpf(cmd, attr):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise ContainerSystemError(_errno.ENOSYS, f"bpf: unknown syscall number on "
                                   f"{os.uname().machine}")
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr),
                      ctypes.c_uint(ctypes.sizeof(attr)))
    return r, ctypes.get_errno()


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32)]


class _ProgAttachAttr(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32),
                ("replace_bpf_fd", ctypes.c_uint32)]


def _load(program, log_size=0):
    insns = ctypes.create_string_buffer(bytes(program), len(program))
    license_ = ctypes.create_string_buffer(_LICENSE)
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(program) // 8,
                         insns=ctypes.addressof(insns), license=ctypes.addressof(license_),
                         log_level=1 if log else 0, log_size=log_size,
                         log_buf=ctypes.addressof(log) if log else 0, prog_name=_PROG_NAME,
                         expected_attach_type=BPF_CGROUP_DEVICE)
    fd, err = _syscall_bpf(BPF_PROG_LOAD, attr)
    return fd, err, (log.value.decode(errors="replace").strip() if log else "")


def load(program):
    """Load ``program`` (bytes of ``bpf_program``) as a BPF_PROG_TYPE_CGROUP_DEVICE program;
    returns its fd. Failures raise ContainerSystemError; a rejected program's message
    carries the verifier's log."""
    if not isinstance(program, (bytes, bytearray)) or not program or len(program) % 8:
        raise ConfigInvalidError("devices", program, "expected eBPF program bytes "
                                 "(a non-empty multiple of 8)")
    for _ in range(5):
        fd, err, _ = _load(program)
        if fd >= 0 or err != _errno.EAGAIN:
            break      # EAGAIN: a signal was pending during verification; libbpf retries too
    if fd < 0:
        if err in (_errno.EACCES, _errno.EINVAL):
            # Reload with a log to say why (libbpf does the same: logs cost time).
            fd2, err2, log = _load(program, _LOG_SIZE)
            if fd2 >= 0:                      # pragma: no cover - flaky verifier, loaded now
                return fd2
            tail = log[-2000:] if log else "no verifier log"
            raise ContainerSystemError(err, f"bpf(BPF_PROG_LOAD) [verifier: {tail}]")
        raise ContainerSystemError(err, "bpf(BPF_PROG_LOAD)")
    return fd


def attach(prog_fd, cgroup_dir_fd):
    """Attach a loaded program to the v2 cgroup open at ``cgroup_dir_fd``
    (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI); the attachment keeps it alive until the cgroup
    goes or it is detached."""
    attr = _ProgAttachAttr(target_fd=cgroup_dir_fd, attach_bpf_fd=prog_fd,
                           attach_type=BPF_CGROUP_DEVICE, attach_flags=BPF_F_ALLOW_MULTI)
    r, err = _syscall_bpf(BPF_PROG_ATTACH, attr)
    if r < 0:
        raise ContainerSystemError(err, "bpf(BPF_PROG_ATTACH)")


def load_and_attach(program, cgroup_dir_fd):
    """load() then attach(); returns the program's fd, which the caller closes."""
    fd = load(program)
    try:
        attach(fd, cgroup_dir_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


_loaded = {}     # rules -> fd of their loaded program, for the life of the process


def loaded_program_fds():
    """The descriptors of the device programs loaded so far: kept for the life of the
    process by design (leak checks name them)."""
    return set(_loaded.values())


class DevicePolicy:
    """A device policy in the forms the kernel takes, made once and shared by every
    container with that policy: the v1 devices-file writes, and the eBPF program (loaded
    and verified on the first attach)."""

    __slots__ = ("rules", "v1_writes")

    def __init__(self, rules):
        self.rules = tuple(rules)
        self.v1_writes = v1_writes(self.rules)

    def attach(self, cgroup_dir_fd):
        attach_cached(self.rules, cgroup_dir_fd)


def attach_cached(rules, cgroup_dir_fd):
    """Attach the program of ``rules`` (a tuple), loading and verifying it only the first
    time: one program serves every container with the same policy."""
    fd = _loaded.get(rules)
    if fd is None:
        fd = _loaded[rules] = load(bpf_program(rules))
    attach(fd, cgroup_dir_fd)


def detach(prog_fd, cgroup_dir_fd):
    """Detach the program ``prog_fd`` from the cgroup at ``cgroup_dir_fd`` (for replacing a
    policy: attach the new program first, then detach the old one)."""
    attr = _ProgAttachAttr(target_fd=cgroup_dir_fd, attach_bpf_fd=prog_fd,
                           attach_type=BPF_CGROUP_DEVICE)
    r, err = _syscall_bpf(BPF_PROG_DETACH, attr)
    if r < 0:
        raise ContainerSystemError(err, "bpf(BPF_PROG_DETACH)")

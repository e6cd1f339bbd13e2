"""devices.py: rule validation, v1 writes, and the eBPF program (run in a tiny interpreter)."""
import struct

import pytest

from pycontainer.devices import DEFAULT_RULES, DeviceRule, bpf_program, effective_rules, \
    v1_writes
from pycontainer.errors import ConfigInvalidError


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("kwargs, field", [
    (dict(allow=1), "devices.allow"),
    (dict(allow=True, type="x"), "devices.type"),
    (dict(allow=True, type="C"), "devices.type"),
    (dict(allow=True, type="c", major=-2), "devices.major"),
    (dict(allow=True, type="c", major=1 << 32), "devices.major"),
    (dict(allow=True, type="c", major="1"), "devices.major"),
    (dict(allow=True, type="c", major=True), "devices.major"),
    (dict(allow=True, type="c", minor=1.0), "devices.minor"),
    (dict(allow=True, type="c", access=""), "devices.access"),
    (dict(allow=True, type="c", access="rx"), "devices.access"),
    (dict(allow=True, type="c", access="rr"), "devices.access"),
    (dict(allow=True, type="c", access=None), "devices.access"),
    (dict(allow=True, type="a", major=1), "devices.type"),
    (dict(allow=False, type="a", access="r"), "devices.type"),
])
def test_rule_validation(kwargs, field):
    with pytest.raises(ConfigInvalidError) as exc:
        DeviceRule(**kwargs)
    assert exc.value.field == field


def test_rule_defaults_and_canonical_access():
    assert DeviceRule(False) == DeviceRule(False, "a", -1, -1, "rwm")
    assert DeviceRule(True, "c", 1, 3, "mwr").access == "rwm"
    assert DeviceRule(True, "c", 1, 3, "wr") == DeviceRule(True, "c", 1, 3, "rw")
    assert DeviceRule(True, "b", 8, -1, "r").cgroup_string() == "b 8:* r"
    assert DeviceRule(True, "c", -1, -1, "m").cgroup_string() == "c *:* m"
    assert DeviceRule(True).cgroup_string() == "a"
    with pytest.raises(Exception):
        DeviceRule(True).allow = False            # frozen


def test_default_rules():
    assert DEFAULT_RULES[0] == DeviceRule(False, "a", -1, -1, "rwm")
    allowed = {(r.type, r.major, r.minor, r.access) for r in DEFAULT_RULES[1:]}
    # runc's default less "c *:* m" and "b *:* m": no creating nodes one may not use
    assert allowed == {("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"),
                       ("c", 1, 8, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"),
                       ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, -1, "rwm")}
    assert all(r.allow for r in DEFAULT_RULES[1:])


# ------------------------------------------------------------------ v1

def test_v1_writes_default():
    writes = v1_writes(DEFAULT_RULES)
    assert writes[0] == ("devices.deny", "a")
    assert writes[1:] == [("devices.allow", r.cgroup_string()) for r in DEFAULT_RULES[1:]]
    assert ("devices.allow", "c 1:3 rwm") in writes
    assert ("devices.allow", "c 136:* rwm") in writes
    assert ("devices.allow", "c *:* m") not in writes


def test_v1_writes_merge_and_remove():
    rules = [DeviceRule(False), DeviceRule(True, "c", 1, 3, "r"), DeviceRule(True, "c", 1, 3, "w"),
             DeviceRule(True, "b", 8, 0, "rwm"), DeviceRule(False, "b", 8, 0, "m"),
             DeviceRule(True, "c", 4, 1, "r"), DeviceRule(False, "c", 4, 1, "r")]
    assert v1_writes(rules) == [("devices.deny", "a"), ("devices.allow", "c 1:3 rw"),
                                ("devices.allow", "b 8:0 rw")]


def test_no_a_rule_means_default_deny_and_a_resets():
    assert v1_writes([DeviceRule(True, "c", 1, 3)]) == [("devices.deny", "a"),
                                                          ("devices.allow", "c 1:3 rwm")]
    assert v1_writes([DeviceRule(True, "c", 1, 3), DeviceRule(True)]) == \
        [("devices.allow", "a")]
    assert v1_writes([DeviceRule(True), DeviceRule(False, "b", -1, -1, "w")]) == \
        [("devices.allow", "a"), ("devices.deny", "b *:* w")]
    assert v1_writes([]) == [("devices.deny", "a")]


def test_hole_in_wildcard_is_refused():
    with pytest.raises(ConfigInvalidError) as exc:
        v1_writes([DeviceRule(False), DeviceRule(True, "c", 136, -1),
                   DeviceRule(False, "c", 136, 2, "r")])
    assert exc.value.field == "devices[2]"
    assert "136:*" in str(exc.value)
    # no overlap in access: fine
    v1_writes([DeviceRule(False), DeviceRule(True, "c", -1, -1, "m"),
               DeviceRule(False, "c", 1, 1, "r")])


def test_bad_rule_lists():
    with pytest.raises(ConfigInvalidError):
        v1_writes("a")
    with pytest.raises(ConfigInvalidError) as exc:
        bpf_program([DeviceRule(False), ("c", 1, 3)])
    assert exc.value.field == "devices[1]"


def test_effective_rules_round_trip():
    eff = effective_rules(DEFAULT_RULES)
    assert effective_rules(eff) == eff
    assert bpf_program(eff) == bpf_program(DEFAULT_RULES)


# ------------------------------------------------------------------ the eBPF program

def decode(prog):
    assert len(prog) % 8 == 0
    out = []
    for i in range(0, len(prog), 8):
        code, regs, off, imm = struct.unpack("<BBhi", prog[i:i + 8])
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def run(prog, kind, acc, major, minor):
    """Run the program on one access with a minimal interpreter of the instructions
    bpf_program emits. kind: 'b' or 'c'; acc: a string of 'rwm'."""
    insns = decode(prog)
    t = {"b": 1, "c": 2}[kind]
    a = sum({"m": 1, "r": 2, "w": 4}[c] for c in acc)
    ctx = [(a << 16) | t, major, minor]
    reg = [0] * 11
    reg[1] = "ctx"                         # r1 holds the context pointer at entry
    pc = 0
    m64, m32 = (1 << 64) - 1, (1 << 32) - 1
    for _ in range(10000):
        code, dst, src, off, imm = insns[pc]
        pc += 1
        if code == 0x61:                   # ldx w
            assert reg[src] == "ctx" and off in (0, 4, 8)
            reg[dst] = ctx[off // 4]
        elif code == 0x54:                 # and32 k
            reg[dst] = (reg[dst] & imm) & m32
        elif code == 0x74:                 # rsh32 k
            reg[dst] = (reg[dst] & m32) >> imm
        elif code == 0xB4:                 # mov32 k
            reg[dst] = imm & m32
        elif code == 0xBC:                 # mov32 x
            reg[dst] = reg[src] & m32
        elif code == 0x55:                 # jne k (64-bit, imm sign-extended)
            if reg[dst] != imm & m64:
                pc += off
        elif code == 0x56:                 # jne32 k
            if reg[dst] & m32 != imm & m32:
                pc += off
        elif code == 0x15:                 # jeq k
            if reg[dst] == imm & m64:
                pc += off
        elif code == 0x5D:                 # jne x
            if reg[dst] != reg[src]:
                pc += off
        elif code == 0x95:                 # exit
            return reg[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        assert 0 <= pc < len(insns), "jump out of the program"
    raise AssertionError("no exit")


def test_program_shape():
    prog = bpf_program(DEFAULT_RULES)
    insns = decode(prog)
    # 6 loads/shifts, then per exception: the 8 exact rwm devices (type, major, minor + 2)
    # = 5 each, 136:* (type, major + 2) = 4, then the default (2).
    assert len(insns) == 6 + 8 * 5 + 4 + 2
    assert insns[-1][0] == 0x95 and insns[-2][0] == 0xB4 and insns[-2][4] == 0   # deny
    assert all(i[0] in (0x61, 0x54, 0x74, 0xB4, 0xBC, 0x55, 0x56, 0x5D, 0x15, 0x95) for i in insns)
    assert bpf_program([]) == bpf_program([DeviceRule(False)])
    assert len(decode(bpf_program([DeviceRule(False)]))) == 8
    allow_all = decode(bpf_program([DeviceRule(True)]))
    assert allow_all[-2][4] == 1


@pytest.mark.parametrize("kind, acc, major, minor, expected", [
    ("c", "rw", 1, 3, 1),       # /dev/null
    ("c", "r", 1, 5, 1),        # /dev/zero
    ("c", "w", 1, 9, 1),
    ("c", "rw", 136, 7, 1),     # /dev/pts/7
    ("c", "rw", 5, 2, 1),
    ("c", "m", 1, 1, 0),        # mknod of a node one may not use: denied
    ("b", "m", 8, 0, 0),
    ("c", "m", 1, 3, 1),        # ... of an allowed one: fine
    ("c", "r", 1, 1, 0),        # /dev/mem
    ("c", "rm", 1, 1, 0),
    ("b", "r", 253, 0, 0),      # a disk
    ("b", "r", 1, 3, 0),        # block 1:3 is not char 1:3
    ("c", "rw", 5, 3, 0),
    ("c", "rw", 137, 0, 0),
])
def test_default_program_semantics(kind, acc, major, minor, expected):
    assert run(bpf_program(DEFAULT_RULES), kind, acc, major, minor) == expected


def test_program_partial_access_and_large_numbers():
    big = (1 << 32) - 2
    rules = [DeviceRule(False), DeviceRule(True, "c", 10, 200, "r"),
             DeviceRule(True, "b", big, 1 << 31, "rw")]
    prog = bpf_program(rules)
    assert run(prog, "c", "r", 10, 200) == 1
    assert run(prog, "c", "rw", 10, 200) == 0
    assert run(prog, "c", "w", 10, 200) == 0
    assert run(prog, "b", "rw", big, 1 << 31) == 1
    assert run(prog, "b", "r", big, 1 << 31) == 1
    assert run(prog, "b", "m", big, 1 << 31) == 0
    assert run(prog, "b", "r", big, 0) == 0
    assert run(prog, "b", "r", 0xFFFFFFFE & 0x7FFFFFFF, 1 << 31) == 0


def test_program_deny_list():
    rules = [DeviceRule(True), DeviceRule(False, "b", 253, -1, "w")]
    prog = bpf_program(rules)
    assert run(prog, "b", "r", 253, 0) == 1
    assert run(prog, "b", "w", 253, 0) == 0
    assert run(prog, "b", "rw", 253, 0) == 0           # overlaps the deny: refused (as v1)
    assert run(prog, "b", "rm", 253, 0) == 1
    assert run(prog, "c", "rw", 1, 1) == 1


def test_program_last_a_rule_wins_and_deny_removes():
    assert run(bpf_program([DeviceRule(True, "c", 1, 3), DeviceRule(False)]),
               "c", "r", 1, 3) == 0
    rules = [DeviceRule(False), DeviceRule(True, "c", 1, 3), DeviceRule(False, "c", 1, 3, "w")]
    prog = bpf_program(rules)
    assert run(prog, "c", "r", 1, 3) == 1
    assert run(prog, "c", "w", 1, 3) == 0

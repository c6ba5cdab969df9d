"""Compiling OCI device rules into a cgroup v2 device program, checked without root.

A small interpreter runs the compiled program the way the kernel would (it
refuses what the verifier refuses: unknown instructions, backward or
out-of-range jumps, reading unset registers, falling off the end, returning
anything but 0 or 1), and a property test compares it with a reference
implementation of the rules' meaning written straight from the module's
docstring.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.runtime.linux import devices_bpf as bpf
from agent.runtime.linux.cgroups import DEFAULT_DEVICE_RULES, with_default_devices

ROOT = Path(__file__).resolve().parents[2]
Rule = Mapping[str, object]

DENY_ALL: dict[str, object] = {"allow": False, "access": "rwm"}  # `runc spec`'s first rule
ALLOW_ALL: dict[str, object] = {"allow": True, "type": "a", "access": "rwm"}


def rule(allow: bool, kind: str, major: int | None, minor: int | None, access: str) -> Rule:
    return {"allow": allow, "type": kind, "major": major, "minor": minor, "access": access}


# -- an interpreter for the instructions the compiler emits -------------------------

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
CTX = object()  # r1 on entry: the pointer to struct bpf_cgroup_dev_ctx


def decode(program: bytes) -> list[tuple[int, int, int, int, int]]:
    """(code, dst, src, off, imm) per instruction (this machine is little-endian)."""
    assert sys.byteorder == "little"
    out = []
    for i in range(0, len(program), 8):
        code, regs, off, imm = struct.unpack("<BBhi", program[i : i + 8])
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def run(program: bytes, dev_type: str, major: int, minor: int, access: str) -> bool:
    """The program's verdict on one access, as the kernel computes it."""
    kind = bpf.DEVICE_TYPES[dev_type]
    bits = sum(bpf.ACCESS_BITS[c] for c in access)
    ctx = {0: bits << 16 | kind, 4: major, 8: minor}
    regs: dict[int, object] = {1: CTX}
    insns = decode(program)
    pc = 0
    while True:
        assert 0 <= pc < len(insns), f"fell off the program at {pc}"
        code, dst, src, off, imm = insns[pc]
        if code == bpf.EXIT:
            assert regs.get(0) in (0, 1), f"returns {regs.get(0)!r}"
            return regs[0] == 1
        if code == bpf.LDX_W:
            assert regs.get(src) is CTX and off in ctx, f"bad load at {pc}"
            regs[dst] = ctx[off]
        elif code == bpf.MOV32_K:
            regs[dst] = imm & _U32
        elif code == bpf.MOV32_X:
            regs[dst] = _value(regs, src, pc) & _U32
        elif code == bpf.AND32_K:
            regs[dst] = _value(regs, dst, pc) & imm & _U32
        elif code == bpf.RSH32_K:
            regs[dst] = (_value(regs, dst, pc) & _U32) >> (imm & 31)
        elif code in (bpf.JNE_K, bpf.JNE_X):
            assert off >= 0, f"backward jump at {pc}"
            # 64-bit compare; an immediate is sign-extended.
            other = imm & _U64 if code == bpf.JNE_K else _value(regs, src, pc)
            if _value(regs, dst, pc) != other:
                pc += off
        else:
            raise AssertionError(f"unexpected instruction {code:#x} at {pc}")
        pc += 1


def _value(regs: dict[int, object], reg: int, pc: int) -> int:
    value = regs.get(reg)
    assert isinstance(value, int), f"r{reg} read before it is set, at {pc}"
    return value


# -- the reference: what the rules mean ----------------------------------------------


def reference(rules: Sequence[Rule], dev_type: str, major: int, minor: int, access: str) -> bool:
    default = False
    rest = list(rules)
    for i, r in enumerate(rules):
        if r.get("type") in (None, "a"):
            default, rest = bool(r["allow"]), list(rules[i + 1 :])

    def matches(r: Rule) -> bool:
        return (
            r.get("type") == dev_type
            and r.get("major") in (None, -1, major)
            and r.get("minor") in (None, -1, minor)
        )

    if not access:
        return next((bool(r["allow"]) for r in reversed(rest) if matches(r)), default)
    for bit in access:
        decided = default
        for r in reversed(rest):
            if matches(r) and bit in str(r.get("access") or "rwm"):
                decided = bool(r["allow"])
                break
        if not decided:
            return False
    return True


# -- structure -------------------------------------------------------------------


def test_instruction_encoding() -> None:
    assert bpf.insn(bpf.JNE_K, bpf.R4, 0, 3, 7) == bytes([0x55, 0x04, 3, 0, 7, 0, 0, 0])
    assert bpf.insn(bpf.MOV32_X, bpf.R1, bpf.R3) == bytes([0xBC, 0x31, 0, 0, 0, 0, 0, 0])
    assert bpf.insn(bpf.AND32_K, bpf.R3, imm=~2) == bytes(
        [0x54, 0x03, 0, 0, 0xFD, 0xFF, 0xFF, 0xFF]
    )


def test_default_rules_compile_to_whole_instructions_ending_in_exit() -> None:
    rules = with_default_devices({"devices": [DENY_ALL]})["devices"]
    assert isinstance(rules, list)
    program = bpf.compile_rules(rules)
    assert len(program) % bpf.INSN_SIZE == 0
    insns = decode(program)
    assert insns[-1][0] == bpf.EXIT
    assert insns[-2] == (bpf.MOV32_K, bpf.R0, 0, 0, 0)  # default deny
    # Every jump lands inside the program, forward.
    for pc, (code, _, _, off, _) in enumerate(insns):
        if code in (bpf.JNE_K, bpf.JNE_X):
            assert off >= 0 and pc + 1 + off < len(insns)
    assert run(program, "c", 1, 3, "rw")  # null
    assert run(program, "c", 136, 4, "rw")  # a pty
    assert run(program, "c", 99, 99, "m")  # mknod of anything
    assert run(program, "b", 8, 0, "m")
    assert not run(program, "c", 99, 99, "r")
    assert not run(program, "b", 8, 0, "r")  # a disk


def test_no_rules_deny_everything() -> None:
    program = bpf.compile_rules([])
    assert decode(program) == [(bpf.MOV32_K, 0, 0, 0, 0), (bpf.EXIT, 0, 0, 0, 0)]


def test_the_last_a_rule_sets_the_default_and_drops_the_rules_before_it() -> None:
    rules = [rule(True, "c", 1, 3, "rwm"), ALLOW_ALL, rule(False, "c", 1, 5, "rwm"), DENY_ALL]
    assert decode(bpf.compile_rules(rules)) == [(bpf.MOV32_K, 0, 0, 0, 0), (bpf.EXIT, 0, 0, 0, 0)]
    allow = bpf.compile_rules([DENY_ALL, rule(False, "c", 1, 5, "r"), ALLOW_ALL])
    assert decode(allow) == [(bpf.MOV32_K, 0, 0, 0, 1), (bpf.EXIT, 0, 0, 0, 0)]
    # An "a" rule resets whatever its access: v1 and our v1 path do the same.
    assert bpf.compile_rules([{"allow": True, "type": "a", "access": "r"}]) == allow


def test_rules_that_agree_with_the_default_right_after_it_are_dropped() -> None:
    only_default = bpf.compile_rules([DENY_ALL])
    assert bpf.compile_rules([DENY_ALL, rule(False, "c", 1, 3, "rw")]) == only_default
    # Numbers no device can have match nothing.
    assert bpf.compile_rules([DENY_ALL, rule(True, "c", 2**32 - 1, 3, "rw")]) == only_default


def test_later_rules_win() -> None:
    rules = [DENY_ALL, rule(True, "c", 1, -1, "rw"), rule(False, "c", 1, 5, "w")]
    program = bpf.compile_rules(rules)
    assert run(program, "c", 1, 6, "w")
    assert run(program, "c", 1, 5, "r")
    assert not run(program, "c", 1, 5, "w")
    assert not run(program, "c", 1, 5, "rw")  # O_RDWR: no hole through the read bit


def test_a_deny_rule_stops_any_requested_bit_it_lists() -> None:
    program = bpf.compile_rules([ALLOW_ALL, rule(False, "c", 1, 5, "w")])
    assert run(program, "c", 1, 5, "r")
    assert not run(program, "c", 1, 5, "w")
    assert not run(program, "c", 1, 5, "rw")
    assert run(program, "c", 1, 3, "rw")


def test_access_bits_add_up_across_rules() -> None:
    program = bpf.compile_rules([DENY_ALL, rule(True, "c", 1, 5, "r"), rule(True, "c", 1, 5, "w")])
    assert run(program, "c", 1, 5, "rw")
    assert not run(program, "c", 1, 5, "rwm")


def test_an_access_with_no_bits_follows_the_last_rule_for_the_device() -> None:
    program = bpf.compile_rules(
        [DENY_ALL, rule(True, "c", 1, -1, "r"), rule(False, "c", 1, 5, "w")]
    )
    assert run(program, "c", 1, 3, "")
    assert not run(program, "c", 1, 5, "")
    assert not run(program, "c", 2, 3, "")


def test_missing_fields_take_the_oci_defaults() -> None:
    # No type: all devices. No numbers: any. No access: rwm (as on our v1 path).
    assert bpf.compile_rules([{"allow": False}]) == bpf.compile_rules([DENY_ALL])
    explicit = bpf.compile_rules([DENY_ALL, rule(True, "c", -1, -1, "rwm")])
    assert bpf.compile_rules([DENY_ALL, {"allow": True, "type": "c"}]) == explicit
    assert bpf.compile_rules([DENY_ALL, {"allow": True, "type": "c", "access": ""}]) == explicit


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"allow": True, "type": "x"}, "linux.resources.devices[2].type: unknown device type 'x'"),
        ({"allow": True, "type": "p"}, "devices[2].type: unknown device type 'p'"),
        ({"allow": "yes", "type": "c"}, "devices[2].allow: must be true or false"),
        ({"allow": True, "type": "c", "access": "rx"}, "devices[2].access: unknown access 'x'"),
        ({"allow": True, "type": "c", "access": "RW"}, "devices[2].access: unknown access 'R'"),
        ({"allow": True, "type": "c", "access": 7}, "devices[2].access: must be a string"),
        ({"allow": True, "type": "c", "major": -2}, "devices[2].major: -2 is not"),
        ({"allow": True, "type": "c", "minor": 2**32}, "devices[2].minor: 4294967296 is not"),
        ({"allow": True, "type": "c", "major": True}, "devices[2].major: True is not"),
        ({"allow": True, "type": "c", "major": "1"}, "devices[2].major: '1' is not"),
    ],
)
def test_bad_rules_are_named(bad: Rule, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        bpf.compile_rules([DENY_ALL, rule(True, "c", 1, 3, "rwm"), bad])


def test_default_device_rules_are_valid() -> None:
    for i, r in enumerate(DEFAULT_DEVICE_RULES):
        bpf.parse_rule(i, r)


def test_the_module_stays_import_light() -> None:
    code = (
        "import sys; import agent.runtime.linux; before = set(sys.modules); "
        "import agent.runtime.linux.devices_bpf; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    assert not {"typing", "re", "json", "enum", "dataclasses"} & set(out), out


# -- the program against the reference --------------------------------------------------

# Few distinct numbers, so rules and accesses collide often.
_NUMBERS = [0, 1, 5, 2**31 - 1]
rules_strategy = st.lists(
    st.builds(
        rule,
        allow=st.booleans(),
        kind=st.sampled_from(["a", "b", "c", "c", "c"]),
        major=st.sampled_from([None, -1, *_NUMBERS, 2**31, 2**32 - 1]),
        minor=st.sampled_from([None, -1, *_NUMBERS]),
        access=st.sampled_from(["", "r", "w", "m", "rw", "rm", "wm", "rwm", "mwr", "rr"]),
    ),
    max_size=8,
)
QUERIES = [
    (t, ma, mi, "".join(a))
    for t, ma, mi in product("bc", _NUMBERS, _NUMBERS)
    for a in ("", "r", "w", "m", "rw", "rm", "wm", "rwm")
]


@settings(max_examples=300, deadline=None)
@given(rules_strategy)
def test_the_program_decides_as_the_rules_say(rules: list[Rule]) -> None:
    program = bpf.compile_rules(rules)
    for query in QUERIES:
        assert run(program, *query) == reference(rules, *query), query


@settings(max_examples=100, deadline=None)
@given(rules_strategy)
def test_the_config_rules_come_before_the_defaults(rules: list[Rule]) -> None:
    combined = with_default_devices({"devices": [DENY_ALL, *rules]})["devices"]
    assert isinstance(combined, list)
    program = bpf.compile_rules(combined)
    for query in [("c", 1, 3, "rw"), ("c", 1, 5, "r"), ("c", 5, 1, "w"), ("b", 1, 1, "m")]:
        assert run(program, *query) == reference(combined, *query)
        assert run(program, *query)  # the defaults come last, so they win

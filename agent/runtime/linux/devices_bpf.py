"""OCI device cgroup rules on cgroup v2: an eBPF program on the container's cgroup.

cgroup v2 has no devices.allow/devices.deny files. The kernel instead runs every
BPF_PROG_TYPE_CGROUP_DEVICE program attached to a process's cgroup (and to its
ancestors) when the process opens or mknods a device node; the access is allowed
only if every program returns 1. runc does the same (libcontainer/cgroups/
devices/devicefilter.go, after crun's ebpf.c); this is our own, written in Python.

Two steps, like seccomp.py:

- `compile_rules(rules)` is pure: OCI `linux.resources.devices` rules in, the raw
  program out (`struct bpf_insn` records). Bad rules raise ValueError naming
  the rule (`linux.resources.devices[3].type: ...`).
- `load_and_attach(program, cgroup_dir)` is the privileged edge: BPF_PROG_LOAD,
  then BPF_PROG_ATTACH to the cgroup directory with BPF_F_ALLOW_MULTI. It
  returns the program's fd; closing it is fine, the attachment keeps the
  program alive until it is detached or the cgroup is removed.

What the rules mean (checked against a reference implementation by the unit
tests, through an interpreter of the program):

- An `a` rule (or one without `type`) is "allow all" / "deny all" whatever its
  numbers and access: it sets the default and drops every rule before it, as
  the v1 kernel, runc and our v1 path (`cgroups.device_rule_v1`) do. With no
  such rule the default is deny.
- Otherwise the last rule wins, per access bit: for each requested bit (r, w,
  m) the last rule matching the device (type, major, minor; -1 or a missing
  number matches any) and listing that bit decides; a bit no rule lists gets
  the default. The request is allowed when every requested bit is. A request
  with no bits (access(2) with X_OK on a device node) is decided by the last
  rule matching the device, else the default.
- A missing or empty `access` means "rwm", as on our v1 path.

Where v1 differs, ours follows the list order instead: v1 cannot "punch a
hole" into a wildcard rule (`allow c 1:* rw`, then `deny c 1:5 w` leaves 1:5
writable; runc refuses such lists), and it needs one exception to cover all the
requested bits (`allow c 1:* r` + `allow c 1:5 w` do not allow O_RDWR on 1:5).
Unlike runc's program, a deny rule matches when it lists *any* requested bit,
so a `deny ... w` also stops O_RDWR opens (as on v1).

The program (r1 = struct bpf_cgroup_dev_ctx {u32 access_type, major, minor}):

    r2 = ctx.access_type & 0xffff      device type: 1 block, 2 char
    r3 = ctx.access_type >> 16         requested bits not decided yet: 1 m, 2 r, 4 w
    r4 = ctx.major; r5 = ctx.minor
    one block per rule, the last rule first; each starts with
      if r2 != type goto next; [if r4 != major goto next;] [if r5 != minor goto next;]
    allow block:  r3 &= ~access; if r3 != 0 goto next; return 1
    deny block:   [if (r3 & access) == 0 and r3 != 0 goto next;] return 0
    next: ...
    return default

Import-light (os and ctypes only): it sits on the container start path.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # typing costs start-up time; mypy still sees the block
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Literal

# linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4

LICENSE = "Apache"  # the kernel's MODULE_LICENSE strings; runc uses the same
PROG_NAME = b"orchestr_dev"  # what bpftool shows (at most 15 bytes)

DEVICE_TYPES = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}
ACCESS_BITS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
ALL_ACCESS = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE
ANY = -1  # a wildcard major or minor
_U32_MAX = 0xFFFFFFFF

# The instructions the program uses (linux/bpf_common.h, linux/bpf.h).
LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K: dst = (u32)(dst & imm)
RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
MOV32_K = 0xB4  # BPF_ALU | BPF_MOV | BPF_K
MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X: dst = (u32)src
JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm: pc += off
JNE_X = 0x5D  # BPF_JMP | BPF_JNE | BPF_X: if dst != src: pc += off
EXIT = 0x95  # BPF_JMP | BPF_EXIT: return r0
INSN_SIZE = 8

R0, R1, R2, R3, R4, R5 = range(6)
_NEXT = None  # a jump's offset before it is resolved: "to the next block"

# struct bpf_insn's layout: u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm.
# Bit-fields fill a byte from its low bits on little-endian machines.
_ORDER: Literal["little", "big"] = "little" if bytes(ctypes.c_uint16(1)) == b"\x01\x00" else "big"


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One `struct bpf_insn`, in this machine's byte order."""
    regs = (src << 4 | dst) if _ORDER == "little" else (dst << 4 | src)
    return (
        bytes((code, regs))
        + off.to_bytes(2, _ORDER, signed=True)
        + imm.to_bytes(4, _ORDER, signed=True)
    )


# -- compiling (pure) -------------------------------------------------------------

# A parsed rule: (allow, device type or 0 for "a", major or ANY, minor or ANY, access bits).
_Rule = tuple[bool, int, int, int, int]


def compile_rules(rules: Sequence[Mapping[str, object]]) -> bytes:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program enforcing OCI device rules (pure)."""
    default, kept = effective_rules([parse_rule(i, r) for i, r in enumerate(rules)])
    out: list[bytes] = []
    if kept:
        out += [
            insn(LDX_W, R2, R1, 0),
            insn(AND32_K, R2, imm=0xFFFF),
            insn(LDX_W, R3, R1, 0),
            insn(RSH32_K, R3, imm=16),
            insn(LDX_W, R4, R1, 4),
            insn(LDX_W, R5, R1, 8),
        ]
    for rule in reversed(kept):
        out += _block(rule)
    out += [insn(MOV32_K, R0, imm=int(default)), insn(EXIT)]
    return b"".join(out)


def parse_rule(index: int, rule: Mapping[str, object]) -> _Rule:
    """Check one OCI rule and turn it into numbers; errors name the rule."""
    where = f"linux.resources.devices[{index}]"
    allow = rule.get("allow")
    if not isinstance(allow, bool):
        raise ValueError(f"{where}.allow: must be true or false, not {allow!r}")
    kind = rule.get("type")
    if kind is None or kind == "a":
        dev_type = 0
    elif isinstance(kind, str) and kind in DEVICE_TYPES:
        dev_type = DEVICE_TYPES[kind]
    else:
        raise ValueError(f"{where}.type: unknown device type {kind!r} (want a, b or c)")
    numbers = []
    for field in ("major", "minor"):
        value = rule.get(field)
        if value is None or value == ANY:
            numbers.append(ANY)
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U32_MAX:
            numbers.append(value)
        else:
            raise ValueError(f"{where}.{field}: {value!r} is not a device number or -1")
    access = rule.get("access")
    if access is None or access == "":
        bits = ALL_ACCESS
    elif isinstance(access, str):
        bits = 0
        for letter in access:
            if letter not in ACCESS_BITS:
                raise ValueError(
                    f"{where}.access: unknown access {letter!r} in {access!r} (want r, w, m)"
                )
            bits |= ACCESS_BITS[letter]
    else:
        raise ValueError(f"{where}.access: must be a string like 'rwm', not {access!r}")
    return allow, dev_type, numbers[0], numbers[1], bits


def effective_rules(rules: Sequence[_Rule]) -> tuple[bool, list[_Rule]]:
    """(default, the rules that can change a decision), in list order.

    The last "a" rule sets the default and drops the rules before it. Rules
    right after it that agree with the default change nothing. A number above
    2^31 - 1 matches no device (dev_t majors have 12 bits, minors 20), and the
    program compares sign-extended immediates, so such rules go too.
    """
    default = False
    start = 0
    for i, (allow, dev_type, *_) in enumerate(rules):
        if dev_type == 0:
            default, start = allow, i + 1
    kept = [r for r in rules[start:] if r[2] <= 0x7FFFFFFF and r[3] <= 0x7FFFFFFF]
    while kept and kept[0][0] == default:
        kept.pop(0)
    return default, kept


def _block(rule: _Rule) -> list[bytes]:
    allow, dev_type, major, minor, bits = rule
    code: list[tuple[int, int, int, int | None, int]] = [(JNE_K, R2, 0, _NEXT, dev_type)]
    if major != ANY:
        code.append((JNE_K, R4, 0, _NEXT, major))
    if minor != ANY:
        code.append((JNE_K, R5, 0, _NEXT, minor))
    if allow:
        # Bits this rule lists are decided (allowed); the rest go on to earlier rules.
        code += [(AND32_K, R3, 0, 0, ~bits), (JNE_K, R3, 0, _NEXT, 0)]
    elif bits != ALL_ACCESS:
        # Deny when the rule lists any undecided bit, or when none was requested.
        code += [
            (MOV32_X, R1, R3, 0, 0),
            (AND32_K, R1, 0, 0, bits),
            (JNE_K, R1, 0, 1, 0),
            (JNE_K, R3, 0, _NEXT, 0),
        ]
    code += [(MOV32_K, R0, 0, 0, int(allow)), (EXIT, 0, 0, 0, 0)]
    end = len(code)
    return [
        insn(op, dst, src, end - i - 1 if off is _NEXT else off, imm)
        for i, (op, dst, src, off, imm) in enumerate(code)
    ]


# -- loading and attaching (privileged edge) ------------------------------------

# bpf(2)'s number where it is not in libc's headers for us.
_SYS_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
    "armv7l": 386,
    "i686": 357,
}
_LOG_SIZE = 1 << 20  # the verifier log buffer, used only to explain a refused program


class _ProgLoadAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_LOAD, up to prog_name (the kernel zero-fills the rest)."""

    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


class _ProgAttachAttr(ctypes.Structure):
    """union bpf_attr for BPF_PROG_ATTACH."""

    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("replace_bpf_fd", ctypes.c_uint32),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    nr = _SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"bpf: no syscall number known for {os.uname().machine}")  # ENOSYS
    ret: int = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_long(cmd),
        ctypes.byref(attr),
        ctypes.c_long(ctypes.sizeof(attr)),
    )
    return ret


def load_and_attach(program: bytes, cgroup_dir: str) -> int:
    """Load a device program and attach it to a cgroup v2 directory; its fd.

    The program joins those already on the cgroup (BPF_F_ALLOW_MULTI); all of
    them, and those of the ancestors, must allow an access.
    """
    if not program or len(program) % INSN_SIZE:
        raise ValueError(
            f"a BPF program is whole {INSN_SIZE}-byte instructions, not {len(program)} bytes"
        )
    prog_fd = load(program)
    try:
        attach(prog_fd, cgroup_dir)
    except BaseException:
        os.close(prog_fd)
        raise
    return prog_fd


def load(program: bytes) -> int:
    """BPF_PROG_LOAD as a cgroup device program; on refusal, the verifier's log."""
    insns = ctypes.create_string_buffer(program, len(program))
    lic = ctypes.create_string_buffer(LICENSE.encode())
    attr = _ProgLoadAttr(
        prog_type=BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt=len(program) // INSN_SIZE,
        insns=ctypes.addressof(insns),
        license=ctypes.addressof(lic),
        prog_name=PROG_NAME,
    )
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    # Load again with the verifier's log on (slower, so only to explain the failure).
    log = ctypes.create_string_buffer(_LOG_SIZE)
    attr.log_level, attr.log_size, attr.log_buf = 1, _LOG_SIZE, ctypes.addressof(log)
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:  # refused only the first time (memory?): keep the program
        return fd
    text = log.value.decode(errors="replace").strip()
    hint = ""
    if err == 1:  # EPERM
        hint = " (needs CAP_SYS_ADMIN or CAP_BPF; before Linux 5.11 also RLIMIT_MEMLOCK)"
    msg = f"bpf(BPF_PROG_LOAD) of the device cgroup program: {os.strerror(err)}{hint}"
    raise OSError(err, msg + (f"; verifier log:\n{text}" if text else ""))


def attach(prog_fd: int, cgroup_dir: str) -> None:
    """BPF_PROG_ATTACH a loaded device program to a cgroup v2 directory."""
    dir_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attr = _ProgAttachAttr(
            target_fd=dir_fd,
            attach_bpf_fd=prog_fd,
            attach_type=BPF_CGROUP_DEVICE,
            attach_flags=BPF_F_ALLOW_MULTI,
        )
        if _bpf(BPF_PROG_ATTACH, attr) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"bpf(BPF_PROG_ATTACH) to {cgroup_dir}: {os.strerror(err)}")
    finally:
        os.close(dir_fd)

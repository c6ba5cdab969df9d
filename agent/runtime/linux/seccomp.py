"""Load an OCI `linux.seccomp` object into the kernel (privileged edge).

Two steps, so a bad profile is reported before the container process commits:

- `compile_filter(seccomp)` runs before the fork (libseccomp cannot be loaded
  after pivot_root). It checks every name and number, builds a libseccomp
  filter context, has libseccomp generate the BPF program from it
  (seccomp_export_bpf(3)) and releases the context: unknown actions, operators,
  flags and architectures, bad `errnoRet` values and programs longer than the
  kernel takes (BPF_MAXINSNS) raise ValueError; libseccomp refusing a rule
  raises OSError.
- `Filter.load()` runs in the container's init right before execve: it only
  hands the program to the kernel, seccomp(SECCOMP_SET_MODE_FILTER, flags,
  &prog), as runc does. Generating the program is the slow part (~10 ms for
  Docker's profile), so it stays out of the container's start path.

Programs are cached per profile in this process (the `_CACHE_SIZE` most recent
profiles, keyed by the profile's value, not its key order): a daemon starting
many containers with the same profile generates the program once. Every call
still returns its own `Filter`.

What follows runc (libcontainer/seccomp/seccomp_linux.go), so profiles written
for Docker and runc behave the same here:

- Syscall names libseccomp does not know are skipped: profiles list syscalls of
  newer kernels and other architectures. They are kept in `Filter.skipped`.
- A rule whose action (with its errno) equals the default action is skipped;
  libseccomp would refuse it with EACCES.
- ERRNO and TRACE without `errnoRet` (or `defaultErrnoRet`) return EPERM.
- Loading does not set no_new_privs: the caller honours
  `process.noNewPrivileges`. Without no_new_privs the kernel allows loading the
  filter only while CAP_SYS_ADMIN is still held, so load it before dropping
  capabilities in that case (runc does the same).
- SECCOMP_FILTER_FLAG_TSYNC, _LOG and _SPEC_ALLOW are passed to the kernel at
  load; compiling also sets them as libseccomp attributes, which checks that
  libseccomp and the kernel support them. WAIT_KILLABLE_RECV needs libseccomp
  >= 2.6 and is never passed to the kernel: it only applies to a notify
  listener, and the kernel refuses it without one.
- SCMP_ACT_NOTIFY is refused: it needs a seccomp agent at `listenerPath`.

Unlike runc, libseccomp's binary-tree optimisation (SCMP_FLTATR_CTL_OPTIMIZE=2)
stays off. With libseccomp 2.5.4 and Docker's profile it makes generating the
program 4-8 ms slower but `load()` ~0.7 ms faster (1.25 -> 0.55 ms on Linux
6.18: at load the kernel runs the filter once per syscall number to cache the
verdict of every syscall allowed unconditionally, and the tree shortens each
run). That trade pays only when the cache hits, i.e. in a long-lived process;
one-shot `orchestr runtime` commands generate every time. Not ported either:
runc's patchbpf stub that answers ENOSYS instead of the default errno for
syscalls newer than the profile.

Kept import-light (os, ctypes and the built-in _thread only): it sits on the
container start path.
"""

from __future__ import annotations

import _thread
import ctypes
import os

TYPE_CHECKING = False  # typing costs start-up time; mypy still sees the block
if TYPE_CHECKING:
    from collections.abc import Mapping

LIBSECCOMP = "libseccomp.so.2"

# Action values from libseccomp's seccomp.h. ERRNO and TRACE carry a 16-bit
# value in the low bits: SCMP_ACT_ERRNO(x) = 0x00050000 | (x & 0xffff).
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
NOTIFY = "SCMP_ACT_NOTIFY"
DEFAULT_ERRNO = 1  # EPERM, as runc

# enum scmp_compare.
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr.
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_WAITKILL = 10  # libseccomp >= 2.6

# The libseccomp attribute of every OCI flag (setting it checks the support).
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _ATTR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _ATTR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _ATTR_CTL_SSB,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": _ATTR_CTL_WAITKILL,
}

# linux/seccomp.h: the operation and the flags of seccomp(2).
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
# What each OCI flag passes to the kernel (WAIT_KILLABLE_RECV: nothing, see above).
KERNEL_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 0,
}
BPF_MAXINSNS = 4096  # the longest program the kernel takes

_ARCH_PREFIX = "SCMP_ARCH_"
_NR_SCMP_ERROR = -1
_MAX_ARGS = 6
_U64 = 1 << 64
_CACHE_SIZE = 32


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _Version(ctypes.Structure):
    """struct scmp_version."""

    _fields_ = (
        ("major", ctypes.c_uint),
        ("minor", ctypes.c_uint),
        ("micro", ctypes.c_uint),
    )


class _SockFilter(ctypes.Structure):
    """struct sock_filter: one classic BPF instruction (8 bytes, host byte order)."""

    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: what seccomp(SECCOMP_SET_MODE_FILTER) reads."""

    _fields_ = (
        ("len", ctypes.c_ushort),
        ("filter", ctypes.POINTER(_SockFilter)),
    )


_lib: ctypes.CDLL | None = None
# libc's syscall(2) and the native number of seccomp(2), set with _lib.
_syscall: ctypes._NamedFuncPointer | None = None
_nr_seccomp = -1

# One argument condition, as struct scmp_arg_cmp: (index, op, datum_a, datum_b).
_Cond = tuple[int, int, int, int]


def libseccomp() -> ctypes.CDLL:
    """libseccomp.so.2 with the prototypes this module uses (loaded once)."""
    global _lib, _syscall, _nr_seccomp
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(LIBSECCOMP, use_errno=True)
    except OSError:
        raise OSError(f"seccomp: {LIBSECCOMP} not found (install libseccomp2)") from None
    vp, u32, c_int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    lib.seccomp_init.argtypes = [u32]
    lib.seccomp_init.restype = vp
    lib.seccomp_release.argtypes = [vp]
    lib.seccomp_release.restype = None
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = u32
    lib.seccomp_arch_add.argtypes = [vp, u32]
    lib.seccomp_arch_add.restype = c_int
    lib.seccomp_attr_set.argtypes = [vp, c_int, u32]
    lib.seccomp_attr_set.restype = c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = c_int
    lib.seccomp_rule_add_array.argtypes = [vp, u32, c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_rule_add_array.restype = c_int
    lib.seccomp_export_bpf.argtypes = [vp, c_int]
    lib.seccomp_export_bpf.restype = c_int
    lib.seccomp_version.argtypes = []
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    # The native architecture's number (x86_64 317, aarch64 277), as libseccomp knows it.
    nr = lib.seccomp_syscall_resolve_name(b"seccomp")
    if nr < 0:
        raise OSError(f"seccomp: libseccomp {_version_str(lib)} has no seccomp(2) here")
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_ulong, ctypes.c_void_p]
    syscall.restype = ctypes.c_long
    _syscall, _nr_seccomp = syscall, nr
    _lib = lib
    return lib


def version() -> tuple[int, int, int]:
    """The loaded libseccomp's version, e.g. (2, 5, 4)."""
    return _version(libseccomp())


def _version(lib: ctypes.CDLL) -> tuple[int, int, int]:
    v = lib.seccomp_version().contents
    return (int(v.major), int(v.minor), int(v.micro))


class _Program:
    """A generated BPF program and what it was made from; shared through the cache."""

    __slots__ = ("code", "flags", "fprog", "insns", "rules", "skipped")

    def __init__(self, code: bytes, flags: int, rules: int, skipped: tuple[str, ...]) -> None:
        n = len(code) // 8
        self.code = code
        self.flags = flags
        self.rules = rules
        self.skipped = skipped
        self.insns = (_SockFilter * n).from_buffer_copy(code)
        self.fprog = _SockFprog(n, self.insns)  # points into insns: both live here


class Filter:
    """A compiled seccomp filter (a BPF program and its flags), ready to load.

    It is plain memory: compile it before fork, load it in the child. The
    program may be shared with other filters compiled from the same profile.
    """

    __slots__ = ("_program", "flags", "program", "rules", "skipped")

    def __init__(self, program: _Program) -> None:
        self._program: _Program | None = program
        self.program = program.code
        """The BPF program: struct sock_filter[], in host byte order."""
        self.flags = program.flags
        """The SECCOMP_FILTER_FLAG_* bits passed to the kernel at load."""
        self.rules = program.rules
        """How many rules were added (per syscall, before per-architecture expansion)."""
        self.skipped = program.skipped
        """Syscall names libseccomp does not know; their rules were skipped."""

    def load(self) -> None:
        """Install the filter in this process; it applies from now on.

        Only the seccomp(2) call: nothing is generated, allocated or loaded from disk.
        """
        p = self._program
        if p is None or _syscall is None:
            raise ValueError("seccomp: the filter was released")
        rc = _syscall(_nr_seccomp, SECCOMP_SET_MODE_FILTER, p.flags, ctypes.addressof(p.fprog))
        if rc == 0:
            return
        if rc > 0:  # TSYNC: the thread that cannot take the filter
            raise OSError(
                3,  # ESRCH, as libseccomp reports it
                f"seccomp: thread {rc} cannot take the filter (SECCOMP_FILTER_FLAG_TSYNC):"
                " its seccomp filters are not this thread's",
            )
        err = ctypes.get_errno()
        msg = f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}"
        if err == 13:  # EACCES
            msg += " (needs no_new_privs or CAP_SYS_ADMIN)"
        raise OSError(err, msg)

    def release(self) -> None:
        """Drop this filter's reference to its program; idempotent. Loading it then fails.

        Nothing needs freeing (the libseccomp context went away at compile time),
        so callers that skip it leak nothing.
        """
        self._program = None


def load_seccomp(seccomp: Mapping[str, object]) -> None:
    """Compile `seccomp` and install it in this process."""
    f = compile_filter(seccomp)
    try:
        f.load()
    finally:
        f.release()


# Profile (see _cache_key) -> program, least recently used first.
_cache: dict[object, _Program] = {}
_cache_lock = _thread.allocate_lock()


def clear_cache() -> None:
    """Forget every cached program."""
    with _cache_lock:
        _cache.clear()


def compile_filter(seccomp: Mapping[str, object]) -> Filter:
    """Turn an OCI `linux.seccomp` object into a BPF program, not yet loaded.

    Programs are cached per profile (equal values in any key order share one).
    Raises ValueError for anything wrong in `seccomp`, OSError if libseccomp is
    missing or refuses a rule.
    """
    key = _cache_key(seccomp)
    if key is not None:
        with _cache_lock:
            program = _cache.pop(key, None)
            if program is not None:
                _cache[key] = program  # now the most recently used
                return Filter(program)
    program = _compile(seccomp)
    if key is not None:
        with _cache_lock:
            _cache.pop(key, None)
            while len(_cache) >= _CACHE_SIZE:
                del _cache[next(iter(_cache))]
            _cache[key] = program
    return Filter(program)


class _Uncacheable(Exception):
    pass


def _cache_key(seccomp: object) -> object:
    """A hashable value equal for equal profiles, whatever their key order; None if
    the profile holds anything but JSON's types (dict with str keys, list, str,
    int, float, bool, None).

    The types stay part of the key: 1, 1.0 and True are different keys (only
    one of them is a valid errnoRet), and so are a list and a tuple.
    """
    try:
        return _canonical(seccomp)
    except (_Uncacheable, RecursionError):
        return None


def _canonical(value: object) -> object:
    t = type(value)
    if t is str or t is int or value is None:
        return value
    if type(value) is dict:
        items = []
        for k, v in value.items():
            if type(k) is not str:
                raise _Uncacheable
            items.append((k, _canonical(v)))
        items.sort()  # keys are unique: values are never compared
        return (dict, *items)
    if type(value) is list:
        return (list, *map(_canonical, value))
    if t is bool or t is float:
        return (t, value)  # 1 == 1.0 == True: keep them apart
    raise _Uncacheable


def _compile(seccomp: Mapping[str, object]) -> _Program:
    default = action_value(
        seccomp.get("defaultAction"),
        seccomp.get("defaultErrnoRet"),
        "defaultAction",
        "defaultErrnoRet",
    )
    arches = _strings(seccomp.get("architectures"), "architectures")
    for a in arches:
        if not a.startswith(_ARCH_PREFIX):
            raise ValueError(f'architectures: unknown architecture "{a}"')
    flags = _strings(seccomp.get("flags"), "flags")
    for f in flags:
        if f not in FLAGS:
            raise ValueError(f'flags: unknown flag "{f}"')
    rules = _rules(seccomp.get("syscalls"), default)

    lib = libseccomp()
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise ValueError(f"defaultAction: libseccomp {_version_str(lib)} refuses it")
    try:
        added, skipped = _build(lib, ctx, arches, flags, rules)
        code = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    kernel_flags = 0
    for f in flags:
        kernel_flags |= KERNEL_FLAGS[f]
    return _Program(code, kernel_flags, added, skipped)


def _build(
    lib: ctypes.CDLL,
    ctx: int,
    arches: list[str],
    flags: list[str],
    rules: list[tuple[str, int, list[list[_Cond]]]],
) -> tuple[int, tuple[str, ...]]:
    """Add the architectures, flags and rules to `ctx`: (rules added, names skipped)."""
    for a in arches:
        token = lib.seccomp_arch_resolve_name(a[len(_ARCH_PREFIX) :].lower().encode())
        if token == 0:
            raise ValueError(f'architectures: "{a}" is not known to libseccomp {_version_str(lib)}')
        rc = lib.seccomp_arch_add(ctx, token)
        if rc == -33:  # EDOM
            raise ValueError(
                f'architectures: "{a}" cannot share a filter with the native architecture'
                " (different byte order)"
            )
        if rc < 0 and rc != -17:  # EEXIST: the native architecture is always there
            raise OSError(-rc, f"seccomp: adding architecture {a}: {os.strerror(-rc)}")
    for f in flags:
        rc = lib.seccomp_attr_set(ctx, FLAGS[f], 1)
        if rc < 0:
            raise ValueError(
                f"flags: {f} is not supported by libseccomp {_version_str(lib)}"
                f" or this kernel ({os.strerror(-rc)})"
            )
    added = 0
    skipped: list[str] = []
    for name, action, conditions in rules:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == _NR_SCMP_ERROR:
            skipped.append(name)
            continue
        for conds in conditions:
            arr = (_ArgCmp * len(conds))(*(_ArgCmp(*c) for c in conds)) if conds else None
            rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds), arr)
            if rc < 0:
                why = os.strerror(-rc)
                if rc == -17:  # EEXIST
                    why = "it conflicts with an earlier rule"
                raise OSError(-rc, f"seccomp: adding the rule for {name}: {why}")
            added += 1
    return added, tuple(skipped)


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    """The BPF program libseccomp generates for `ctx` (seccomp_export_bpf into a memfd)."""
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise OSError(-rc, f"seccomp: generating the BPF program: {os.strerror(-rc)}")
        size = os.fstat(fd).st_size
        code = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    n, odd = divmod(len(code), 8)
    if len(code) != size or odd or n == 0:
        raise OSError(f"seccomp: libseccomp exported {size} bytes, not a BPF program")
    if n > BPF_MAXINSNS:
        raise ValueError(
            f"the profile makes a BPF program of {n} instructions;"
            f" the kernel takes at most {BPF_MAXINSNS}"
        )
    return code


def action_value(
    name: object,
    errno_ret: object,
    where: str = "action",
    errno_where: str = "errnoRet",
) -> int:
    """The libseccomp action for an OCI action name and its optional errnoRet.

    `where` and `errno_where` name the two fields in error messages.
    """
    if name == NOTIFY:
        raise ValueError(
            f"{where}: {NOTIFY} is not supported (it needs a seccomp agent at listenerPath)"
        )
    if name is None:
        raise ValueError(f"{where}: missing")
    if not isinstance(name, str) or name not in ACTIONS:
        raise ValueError(f'{where}: unknown action "{name}"')
    value = ACTIONS[name]
    if name not in ERRNO_ACTIONS:
        if errno_ret is not None:
            raise ValueError(f"{errno_where}: {name} takes no errno")
        return value
    if errno_ret is None:
        errno_ret = DEFAULT_ERRNO
    if (
        isinstance(errno_ret, bool)
        or not isinstance(errno_ret, int)
        or not 0 <= errno_ret <= 0xFFFF
    ):
        raise ValueError(f"{errno_where}: bad errno {errno_ret!r} (want 0..65535)")
    return value | errno_ret


def _rules(syscalls: object, default: int) -> list[tuple[str, int, list[list[_Cond]]]]:
    """(name, action, one condition list per rule) for every rule to add."""
    if syscalls is None:
        return []
    if not isinstance(syscalls, list):
        raise ValueError("syscalls: expected a list")
    out: list[tuple[str, int, list[list[_Cond]]]] = []
    for i, entry in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected an object")
        names = _strings(entry.get("names"), f"{where}.names")
        if not names:
            raise ValueError(f"{where}.names: must name at least one syscall")
        action = action_value(
            entry.get("action"), entry.get("errnoRet"), f"{where}.action", f"{where}.errnoRet"
        )
        conds = _conditions(entry.get("args"), f"{where}.args")
        if action == default:
            continue  # redundant; libseccomp would refuse it (EACCES), runc skips it
        # Like runc: when two conditions test the same argument, each becomes
        # a rule of its own (so they OR, e.g. Docker's personality values);
        # otherwise all conditions form one rule (they AND).
        indexes = [c[0] for c in conds]
        per_rule = [[c] for c in conds] if len(set(indexes)) < len(indexes) else [conds]
        out.extend((name, action, per_rule) for name in names)
    return out


def _conditions(args: object, where: str) -> list[_Cond]:
    if args is None:
        return []
    if not isinstance(args, list):
        raise ValueError(f"{where}: expected a list")
    conds: list[_Cond] = []
    for j, arg in enumerate(args):
        w = f"{where}[{j}]"
        if not isinstance(arg, dict):
            raise ValueError(f"{w}: expected an object")
        index = _uint(arg.get("index"), f"{w}.index", _MAX_ARGS)
        op = arg.get("op")
        if not isinstance(op, str) or op not in OPERATORS:
            raise ValueError(f'{w}.op: unknown operator "{op}"')
        value = _uint(arg.get("value"), f"{w}.value", _U64)
        two = arg.get("valueTwo")
        value_two = 0 if two is None else _uint(two, f"{w}.valueTwo", _U64)
        conds.append((index, OPERATORS[op], value, value_two))
    return conds


def _uint(value: object, where: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"{where}: bad value {value!r} (want 0..{limit - 1})")
    return value


def _strings(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: expected a list of strings")
    return value


def _version_str(lib: ctypes.CDLL) -> str:
    return ".".join(map(str, _version(lib)))

"""Compiling OCI seccomp objects: every mistake is caught before anything is loaded.

compile_filter() needs libseccomp.so.2 but no privileges: nothing here loads a
filter. The default profile's shape is checked as plain data.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from agent.runtime.linux import seccomp
from agent.runtime.linux.seccomp import action_value, compile_filter
from agent.runtime.linux.seccomp_default import DOCKER_DEFAULT_CAPS, default_profile

ROOT = Path(__file__).resolve().parents[2]


def _has_libseccomp() -> bool:
    try:
        ctypes.CDLL(seccomp.LIBSECCOMP)
    except OSError:
        return False
    return True


needs_lib = pytest.mark.skipif(not _has_libseccomp(), reason="libseccomp.so.2 not installed")


def allow_all(**extra: object) -> dict[str, object]:
    return {"defaultAction": "SCMP_ACT_ALLOW", **extra}


def compile_errors(profile: dict[str, object]) -> str:
    with pytest.raises(ValueError) as e:
        compile_filter(profile).release()
    return str(e.value)


# -- actions and errno ---------------------------------------------------------------


def test_action_values_are_libseccomps() -> None:
    assert action_value("SCMP_ACT_ALLOW", None) == 0x7FFF0000
    assert action_value("SCMP_ACT_KILL", None) == 0
    assert action_value("SCMP_ACT_KILL_THREAD", None) == 0
    assert action_value("SCMP_ACT_KILL_PROCESS", None) == 0x80000000
    assert action_value("SCMP_ACT_TRAP", None) == 0x00030000
    assert action_value("SCMP_ACT_LOG", None) == 0x7FFC0000
    assert action_value("SCMP_ACT_ERRNO", 38) == 0x00050026
    assert action_value("SCMP_ACT_ERRNO", None) == 0x00050001  # EPERM, as runc
    assert action_value("SCMP_ACT_TRACE", None) == 0x7FF00001
    assert action_value("SCMP_ACT_TRACE", 0xFFFF) == 0x7FF0FFFF


def test_unknown_action_is_named() -> None:
    message = compile_errors(
        allow_all(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}])
    )
    assert "SCMP_ACT_EXPLODE" in message
    assert "syscalls[0].action" in message
    assert "SCMP_ACT_NOPE" in compile_errors({"defaultAction": "SCMP_ACT_NOPE"})
    assert "defaultAction" in compile_errors({})


def test_notify_is_refused_clearly() -> None:
    message = compile_errors(
        allow_all(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])
    )
    assert "SCMP_ACT_NOTIFY is not supported" in message
    assert "not supported" in compile_errors({"defaultAction": "SCMP_ACT_NOTIFY"})


@pytest.mark.parametrize("bad", [-1, 0x10000, True, "1", 1.0])
def test_bad_errno_ret(bad: object) -> None:
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": bad}
    assert "syscalls[0].errnoRet" in compile_errors(allow_all(syscalls=[rule]))
    default = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": bad}
    assert "defaultErrnoRet" in compile_errors(default)


def test_errno_ret_only_with_errno_or_trace() -> None:
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}
    assert "takes no errno" in compile_errors(allow_all(syscalls=[rule]))
    assert "defaultErrnoRet" in compile_errors(allow_all(defaultErrnoRet=1))


# -- arguments, architectures, flags ---------------------------------------------------


def _rule_with(**arg: object) -> dict[str, object]:
    return allow_all(
        syscalls=[
            {
                "names": ["kill"],
                "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ", **arg}],
            }
        ]
    )


def test_unknown_operator_is_named() -> None:
    message = compile_errors(_rule_with(op="SCMP_CMP_ALMOST"))
    assert "SCMP_CMP_ALMOST" in message
    assert "syscalls[0].args[0].op" in message


@pytest.mark.parametrize(
    ("field", "bad"), [("index", 6), ("index", -1), ("value", 1 << 64), ("valueTwo", -1)]
)
def test_bad_argument_numbers(field: str, bad: int) -> None:
    assert f"syscalls[0].args[0].{field}" in compile_errors(_rule_with(**{field: bad}))


def test_same_argument_twice_makes_one_rule_each_like_runc() -> None:
    eq = seccomp.OPERATORS["SCMP_CMP_EQ"]
    same = [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"} for v in (1, 2)]
    rules = seccomp._rules([{"names": ["p"], "action": "SCMP_ACT_ALLOW", "args": same}], 0)
    assert rules == [("p", 0x7FFF0000, [[(0, eq, 1, 0)], [(0, eq, 2, 0)]])]
    both = [{"index": i, "value": 7, "op": "SCMP_CMP_EQ"} for i in (0, 1)]
    rules = seccomp._rules([{"names": ["p"], "action": "SCMP_ACT_ALLOW", "args": both}], 0)
    assert rules == [("p", 0x7FFF0000, [[(0, eq, 7, 0), (1, eq, 7, 0)]])]


@needs_lib
@pytest.mark.parametrize("name", ["SCMP_ARCH_FOO", "x86_64", "SCMP_ARCH_"])
def test_unknown_architecture_is_named(name: str) -> None:
    message = compile_errors(allow_all(architectures=[name]))
    assert name in message
    assert "architectures" in message


@needs_lib
def test_architectures_newer_than_libseccomp_are_refused() -> None:
    if seccomp.version() >= (2, 6, 0):
        pytest.skip("this libseccomp knows loongarch64")
    message = compile_errors(allow_all(architectures=["SCMP_ARCH_LOONGARCH64"]))
    assert "not known to libseccomp 2." in message


@needs_lib
def test_x86_family_architectures() -> None:
    arches = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    compile_filter(allow_all(architectures=arches)).release()


def test_unknown_flag_is_named() -> None:
    assert "SECCOMP_FILTER_FLAG_FAST" in compile_errors(
        allow_all(flags=["SECCOMP_FILTER_FLAG_FAST"])
    )


@needs_lib
def test_known_flags_compile() -> None:
    flags = [
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ]
    compile_filter(allow_all(flags=flags)).release()


@needs_lib
def test_wait_killable_recv_needs_libseccomp_2_6() -> None:
    if seccomp.version() >= (2, 6, 0):
        pytest.skip("this libseccomp has SCMP_FLTATR_CTL_WAITKILL")
    message = compile_errors(allow_all(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))
    assert "not supported by libseccomp" in message


# -- rules ---------------------------------------------------------------------------


@needs_lib
def test_unknown_syscalls_are_skipped_and_listed() -> None:
    rule = {"names": ["mkdir", "not_a_syscall_at_all"], "action": "SCMP_ACT_ERRNO"}
    f = compile_filter(allow_all(syscalls=[rule]))
    try:
        assert f.skipped == ("not_a_syscall_at_all",)
        assert f.rules == 1
    finally:
        f.release()


@needs_lib
def test_rules_with_the_default_action_are_skipped() -> None:
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},  # same: EPERM
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},  # same
            {"names": ["unlink"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2},  # differs
        ],
    }
    f = compile_filter(profile)
    try:
        assert f.rules == 1
    finally:
        f.release()


@needs_lib
def test_release_is_idempotent_and_final() -> None:
    f = compile_filter(allow_all())
    f.release()
    f.release()
    with pytest.raises(ValueError, match="released"):
        f.load()


@pytest.mark.parametrize(
    "bad",
    [
        {"syscalls": {"names": ["mkdir"]}},
        {"syscalls": ["mkdir"]},
        {"syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
        {"syscalls": [{"names": "mkdir", "action": "SCMP_ACT_ERRNO"}]},
        {"architectures": "SCMP_ARCH_X86"},
    ],
)
def test_malformed_objects(bad: dict[str, object]) -> None:
    compile_errors(allow_all(**bad))


# -- the default profile ------------------------------------------------------------


def _allowed(profile: dict[str, object]) -> list[str]:
    first = profile["syscalls"][0]  # type: ignore[index]
    assert first["action"] == "SCMP_ACT_ALLOW" and "args" not in first
    return list(first["names"])


def _rules_for(profile: dict[str, object], name: str) -> list[dict[str, object]]:
    return [s for s in profile["syscalls"] if name in s["names"]]  # type: ignore[attr-defined]


def test_default_profile_is_an_allow_list() -> None:
    p = default_profile(DOCKER_DEFAULT_CAPS, machine="x86_64")
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = _allowed(p)
    assert len(allowed) == len(set(allowed))
    for name in ("read", "execve", "fork", "wait4", "mkdir", "arch_prctl", "chroot"):
        assert name in allowed
    for name in ("mount", "unshare", "setns", "reboot", "bpf", "clone", "clone3"):
        assert name not in allowed


def test_default_profile_without_sys_admin_limits_clone() -> None:
    p = default_profile(DOCKER_DEFAULT_CAPS, machine="x86_64")
    (clone,) = _rules_for(p, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    (clone3,) = _rules_for(p, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert len(_rules_for(p, "personality")) == 5
    s390 = default_profile(DOCKER_DEFAULT_CAPS, machine="s390x")
    assert _rules_for(s390, "clone")[0]["args"][0]["index"] == 1  # type: ignore[index]


def test_default_profile_with_caps() -> None:
    p = default_profile(DOCKER_DEFAULT_CAPS | {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}, "x86_64")
    allowed = _allowed(p)
    for name in ("mount", "unshare", "setns", "clone", "clone3", "kcmp"):
        assert name in allowed
    assert _rules_for(p, "clone3") == [p["syscalls"][0]]  # type: ignore[index]
    assert "chroot" not in _allowed(default_profile(set(), "x86_64"))


def test_default_profile_per_machine() -> None:
    arm = default_profile(DOCKER_DEFAULT_CAPS, machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "set_tls" in _allowed(arm)
    assert "arch_prctl" not in _allowed(arm)
    assert "architectures" not in default_profile(DOCKER_DEFAULT_CAPS, machine="ppc64le")


@needs_lib
def test_default_profile_compiles() -> None:
    f = compile_filter(default_profile(DOCKER_DEFAULT_CAPS))
    try:
        assert f.rules > 300
    finally:
        f.release()


def test_import_is_light() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "import agent.runtime.linux.seccomp, agent.runtime.linux.seccomp_default; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    assert "agent.runtime.linux.seccomp_default" in out
    heavy = {"re", "json", "typing", "enum", "dataclasses", "inspect", "signal"}
    assert not heavy & set(out)


# -- the generated program and the cache --------------------------------------------


def _reordered(value: object) -> object:
    """`value` with every object's keys in reverse order (an equal profile)."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def _mkdir_errno(n: int) -> dict[str, object]:
    return allow_all(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": n}])


@needs_lib
def test_program_is_classic_bpf_checking_the_architecture_first() -> None:
    f = compile_filter(allow_all(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    assert isinstance(f.program, bytes)
    assert len(f.program) % 8 == 0
    assert 0 < len(f.program) // 8 <= seccomp.BPF_MAXINSNS
    # struct sock_filter {u16 code; u8 jt, jf; u32 k}: BPF_LD|BPF_W|BPF_ABS of
    # seccomp_data.arch (offset 4), as every libseccomp filter starts.
    assert struct.unpack("=HBBI", f.program[:8]) == (0x20, 0, 0, 4)
    f.release()
    f.release()
    assert f.program  # the bytes stay readable; only load() is refused


@needs_lib
def test_seccomp_syscall_number_is_the_native_one() -> None:
    seccomp.libseccomp()
    expected = {"x86_64": 317, "aarch64": 277}.get(os.uname().machine)
    if expected is None:
        pytest.skip("no known seccomp(2) number for this machine")
    assert seccomp._nr_seccomp == expected


@needs_lib
def test_flags_become_kernel_flag_bits() -> None:
    def flags_of(*names: str) -> int:
        return compile_filter(allow_all(flags=list(names))).flags

    assert flags_of() == 0
    assert flags_of("SECCOMP_FILTER_FLAG_TSYNC") == seccomp.SECCOMP_FILTER_FLAG_TSYNC == 1
    assert flags_of("SECCOMP_FILTER_FLAG_LOG") == seccomp.SECCOMP_FILTER_FLAG_LOG == 2
    assert flags_of("SECCOMP_FILTER_FLAG_SPEC_ALLOW") == 4
    # Only a notify listener takes it (the kernel refuses it alone): never passed.
    assert seccomp.KERNEL_FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] == 0
    everything = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"]
    assert flags_of(*everything, "SECCOMP_FILTER_FLAG_SPEC_ALLOW") == 7


@needs_lib
def test_cache_shares_the_program_of_an_equal_profile() -> None:
    seccomp.clear_cache()
    profile = default_profile(DOCKER_DEFAULT_CAPS)
    same = _reordered(profile)
    assert isinstance(same, dict)
    assert list(same) == list(reversed(list(profile)))
    first = compile_filter(profile)
    again = compile_filter(same)
    assert again is not first
    assert again.program is first.program
    assert (again.rules, again.skipped, again.flags) == (first.rules, first.skipped, first.flags)
    first.release()  # releasing one filter leaves the other loadable
    assert again._program is not None

    other = compile_filter(default_profile(DOCKER_DEFAULT_CAPS | {"CAP_SYS_ADMIN"}))
    assert other.program != first.program
    logged = compile_filter({**profile, "flags": ["SECCOMP_FILTER_FLAG_LOG"]})
    assert logged.program == first.program  # the same BPF, ...
    assert logged.program is not first.program  # ... cached apart with its flag
    assert logged.flags == 2 and first.flags == 0
    assert len(seccomp._cache) == 3


@needs_lib
def test_cache_keeps_types_apart() -> None:
    seccomp.clear_cache()
    compile_filter(_mkdir_errno(1))
    for bad in (True, 1.0):  # equal to 1 in Python, yet no errno
        assert "errnoRet" in compile_errors(_mkdir_errno(bad))  # type: ignore[arg-type]
    as_tuple = allow_all(syscalls=[{"names": ("mkdir",), "action": "SCMP_ACT_ERRNO"}])
    compile_filter(allow_all(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    assert "expected a list of strings" in compile_errors(as_tuple)
    keys = [seccomp._cache_key(v) for v in (1, True, 1.0, "1", [1], (1,), {"a": 1})]
    assert keys[:5] == [1, (bool, True), (float, 1.0), "1", (list, 1)]
    assert keys[5:] == [None, (dict, ("a", 1))]


@needs_lib
def test_profiles_beyond_json_types_compile_uncached() -> None:
    seccomp.clear_cache()
    odd: dict[object, object] = {"defaultAction": "SCMP_ACT_ALLOW", 1: "ignored"}
    assert seccomp._cache_key(odd) is None
    compile_filter(odd).release()  # type: ignore[arg-type]
    assert not seccomp._cache


@needs_lib
def test_cache_is_bounded_and_keeps_the_recently_used() -> None:
    seccomp.clear_cache()
    size = seccomp._CACHE_SIZE
    for n in range(size):
        compile_filter(_mkdir_errno(n + 2))
    assert len(seccomp._cache) == size
    compile_filter(_mkdir_errno(2))  # used again: now the most recent
    compile_filter(_mkdir_errno(size + 2))  # evicts the least recently used
    assert len(seccomp._cache) == size
    assert seccomp._cache_key(_mkdir_errno(2)) in seccomp._cache
    assert seccomp._cache_key(_mkdir_errno(3)) not in seccomp._cache
    seccomp.clear_cache()
    assert not seccomp._cache


@needs_lib
def test_program_longer_than_the_kernel_takes_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seccomp.clear_cache()
    monkeypatch.setattr(seccomp, "BPF_MAXINSNS", 4)
    message = compile_errors(_mkdir_errno(2))
    assert "the kernel takes at most 4" in message
    assert not seccomp._cache

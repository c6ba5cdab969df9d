"""Seccomp filters loaded into real processes.

Each test forks a child that loads a filter, tries syscalls and reports what
happened on a pipe (or dies by SIGSYS); the parent always waits for it. The
filter is compiled in the parent, before the fork, as the runtime does.
Children leave by os._exit only, and never dump core.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.runtime.linux import flags, libc, seccomp
from agent.runtime.linux.seccomp import Filter, compile_filter, load_seccomp
from agent.runtime.linux.seccomp_default import DOCKER_DEFAULT_CAPS, default_profile

pytestmark = pytest.mark.root

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.personality.argtypes = [ctypes.c_ulong]
_libc.personality.restype = ctypes.c_int
_libc.umask.argtypes = [ctypes.c_uint]
_libc.umask.restype = ctypes.c_int

PR_SET_DUMPABLE = 4
NR_CLONE3 = 435  # the same on every architecture (asm-generic numbering)
NOBODY = 65534


def in_child(
    load: Callable[[], None],
    body: Callable[[], str],
    setup: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """Fork; the child runs setup(), load(), body() and reports body's result.

    Returns (wait status, report). A child that fails reports "failed: <error>".
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only ever leaves through os._exit
        code, out = 1, "failed: before the body"
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            libc.prctl(PR_SET_DUMPABLE, 0)  # SIGSYS would dump core
            if setup is not None:
                setup()
            load()
            out = body()
            code = 0
        except BaseException as e:
            out = f"failed: {e!r}"
        finally:
            try:
                os.write(w, out.encode())
            finally:
                os._exit(code)
    os.close(w)
    reaped = False
    try:
        _, status = os.waitpid(pid, 0)
        reaped = True
        with os.fdopen(r, "rb") as f:
            return status, f.read().decode()
    finally:
        if not reaped:  # interrupted: never leave the child behind
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def errno_of(fn: Callable[..., object], *args: object) -> int:
    """0 if fn(*args) succeeds, else its errno."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno or -1
    return 0


@pytest.fixture
def compiled() -> Iterator[Callable[[dict[str, object]], Filter]]:
    """compile_filter() whose results are released after the test."""
    made: list[Filter] = []

    def make(profile: dict[str, object]) -> Filter:
        f = compile_filter(profile)
        made.append(f)
        return f

    yield make
    for f in made:
        f.release()


def allow_all_but(*syscalls: dict[str, object], **extra: object) -> dict[str, object]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(syscalls), **extra}


MKDIR_ENOSYS = {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


# -- actions ----------------------------------------------------------------------------


def test_errno_rule_returns_its_errno(
    compiled: Callable[[dict[str, object]], Filter], tmp_path: Path
) -> None:
    f = compiled(allow_all_but(MKDIR_ENOSYS))
    status, out = in_child(f.load, lambda: f"mkdir={errno_of(os.mkdir, tmp_path / 'd')}")
    assert (status, out) == (0, "mkdir=38")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL"])
def test_kill_actions_end_the_process_by_sigsys(
    compiled: Callable[[dict[str, object]], Filter], action: str
) -> None:
    f = compiled(allow_all_but({"names": ["getppid"], "action": action}))
    status, out = in_child(f.load, lambda: f"survived getppid: {os.getppid()}")
    assert os.WIFSIGNALED(status), out
    assert os.WTERMSIG(status) == signal.SIGSYS


@pytest.mark.parametrize(
    "flags",
    [
        ["SECCOMP_FILTER_FLAG_TSYNC"],
        ["SECCOMP_FILTER_FLAG_LOG"],
        ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
    ],
)
def test_flags_load(
    compiled: Callable[[dict[str, object]], Filter], tmp_path: Path, flags: list[str]
) -> None:
    f = compiled(allow_all_but(MKDIR_ENOSYS, flags=flags))
    status, out = in_child(f.load, lambda: f"mkdir={errno_of(os.mkdir, tmp_path / 'd')}")
    assert (status, out) == (0, "mkdir=38")


def _seccomp_mode(tid: int) -> str:
    """The Seccomp: field of a thread of this process (0 none, 2 filter)."""
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return line.split()[1]
    return "?"


def _in_thread(target: Callable[[], object]) -> tuple[threading.Thread, threading.Event]:
    """Start a thread running target() once the returned event is set."""
    go = threading.Event()

    def run() -> None:
        go.wait()
        target()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, go


@pytest.mark.parametrize(
    ("oci_flags", "expected"), [([], "0 mkdir=0"), (["SECCOMP_FILTER_FLAG_TSYNC"], "2 mkdir=38")]
)
def test_tsync_reaches_the_kernel(
    compiled: Callable[[dict[str, object]], Filter],
    tmp_path: Path,
    oci_flags: list[str],
    expected: str,
) -> None:
    f = compiled(allow_all_but(MKDIR_ENOSYS, flags=oci_flags))
    seen: list[str] = []

    def body() -> str:
        t, go = _in_thread(lambda: seen.append(str(errno_of(os.mkdir, tmp_path / "d"))))
        assert t.native_id is not None
        f.load()  # the filter goes on the other thread only with TSYNC
        mode = _seccomp_mode(t.native_id)
        go.set()
        t.join()
        return f"{mode} mkdir={seen[0]}"

    status, out = in_child(lambda: None, body)
    assert (status, out) == (0, expected)


def test_tsync_fails_when_a_thread_has_another_filter(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    own = compiled(allow_all_but(MKDIR_ENOSYS))
    synced = compiled(allow_all_but(MKDIR_ENOSYS, flags=["SECCOMP_FILTER_FLAG_TSYNC"]))

    def body() -> str:
        loaded = threading.Event()
        stop = threading.Event()

        def run() -> None:
            own.load()
            loaded.set()
            stop.wait()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        try:
            loaded.wait()
            try:
                synced.load()
            except OSError as e:
                return f"errno={e.errno} names thread={str(t.native_id) in str(e)}"
            return "loaded"
        finally:
            stop.set()
            t.join()

    status, out = in_child(lambda: None, body)
    assert (status, out) == (0, f"errno={errno.ESRCH} names thread=True")


def test_kernel_refuses_unknown_flag_bits(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    f = compiled(allow_all_but(MKDIR_ENOSYS))
    bogus = Filter(seccomp._Program(f.program, 1 << 30, f.rules, f.skipped))
    status, out = in_child(bogus.load, lambda: "loaded")
    assert os.waitstatus_to_exitcode(status) == 1  # load() raised
    assert "OSError(22, 'seccomp(SECCOMP_SET_MODE_FILTER): Invalid argument')" in out


def test_a_cached_program_loads_and_denies(tmp_path: Path) -> None:
    seccomp.clear_cache()
    profile = allow_all_but(MKDIR_ENOSYS)
    first = compile_filter(profile)
    again = compile_filter(dict(reversed(list(profile.items()))))
    assert again.program is first.program
    first.release()
    try:
        status, out = in_child(again.load, lambda: f"mkdir={errno_of(os.mkdir, tmp_path / 'd')}")
    finally:
        again.release()
    assert (status, out) == (0, "mkdir=38")
    with pytest.raises(ValueError, match="released"):
        first.load()


def test_unknown_syscall_names_are_skipped(
    compiled: Callable[[dict[str, object]], Filter], tmp_path: Path
) -> None:
    rule = {**MKDIR_ENOSYS, "names": ["no_such_syscall", "mkdir", "mkdirat", "listmount2"]}
    f = compiled(allow_all_but(rule))
    assert f.skipped == ("no_such_syscall", "listmount2")
    status, out = in_child(f.load, lambda: f"mkdir={errno_of(os.mkdir, tmp_path / 'd')}")
    assert (status, out) == (0, "mkdir=38")


# -- argument conditions -------------------------------------------------------------------


def _ignore_usr_signals() -> None:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def _kills() -> str:
    me = os.getpid()
    usr1 = errno_of(os.kill, me, signal.SIGUSR1)
    usr2 = errno_of(os.kill, me, signal.SIGUSR2)
    probe = errno_of(os.kill, os.getppid(), 0)
    return f"usr1={usr1} usr2={usr2} probe={probe}"


def _kill_rule(*args: dict[str, object]) -> dict[str, object]:
    return {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": list(args)}


def _arg(index: int, value: int, op: str = "SCMP_CMP_EQ") -> dict[str, object]:
    return {"index": index, "value": value, "op": op}


def test_argument_condition(compiled: Callable[[dict[str, object]], Filter]) -> None:
    f = compiled(allow_all_but(_kill_rule(_arg(1, signal.SIGUSR1))))
    status, out = in_child(f.load, _kills, setup=_ignore_usr_signals)
    assert (status, out) == (0, "usr1=1 usr2=0 probe=0")


def test_conditions_on_one_argument_are_separate_rules_like_runc(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    rule = _kill_rule(_arg(1, signal.SIGUSR1), _arg(1, signal.SIGUSR2))
    f = compiled(allow_all_but(rule))
    status, out = in_child(f.load, _kills, setup=_ignore_usr_signals)
    assert (status, out) == (0, "usr1=1 usr2=1 probe=0")  # either value matches


def test_conditions_on_different_arguments_all_must_match() -> None:
    def load() -> None:  # needs the child's own pid, so it compiles in the child
        load_seccomp(allow_all_but(_kill_rule(_arg(0, os.getpid()), _arg(1, signal.SIGUSR1))))

    def body() -> str:
        other = os.fork()  # ignores SIGUSR1 too (inherited)
        if other == 0:
            try:
                while True:
                    signal.pause()
            finally:
                os._exit(0)
        try:
            to_other = errno_of(os.kill, other, signal.SIGUSR1)
        finally:
            os.kill(other, signal.SIGKILL)
            os.waitpid(other, 0)
        return _kills() + f" usr1-to-other={to_other}"

    status, out = in_child(load, body, setup=_ignore_usr_signals)
    assert (status, out) == (0, "usr1=1 usr2=0 probe=0 usr1-to-other=0")


def test_full_width_values_and_masked_equality(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    query = 0xFFFFFFFF  # personality(0xffffffff) only reads the persona
    f = compiled(
        allow_all_but(
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EOPNOTSUPP,
                "args": [_arg(0, query)],
            },
            {
                "names": ["umask"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EDOM,
                "args": [
                    {"index": 0, "value": 0o700, "valueTwo": 0o200, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
        )
    )

    def body() -> str:
        rc = _libc.personality(query)
        denied = ctypes.get_errno() if rc == -1 else 0
        allowed = _libc.personality(0)  # PER_LINUX: a different value passes
        # umask never fails by itself, and glibc hands back its raw result: -errno.
        masked = [-min(_libc.umask(mask), 0) for mask in (0o277, 0o022)]
        return f"personality={denied},{allowed} umask={masked}"

    status, out = in_child(f.load, body)
    assert (status, out) == (0, f"personality={errno.EOPNOTSUPP},0 umask=[{errno.EDOM}, 0]")


# -- loading needs privilege; no_new_privs stays the caller's choice --------------------------


def _become_nobody() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)  # drops every capability


def _no_new_privs() -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("NoNewPrivs:"):
                return line.split()[1]
    return "?"


def test_loading_leaves_no_new_privs_alone(compiled: Callable[[dict[str, object]], Filter]) -> None:
    f = compiled(allow_all_but(MKDIR_ENOSYS))
    status, out = in_child(f.load, lambda: f"nnp={_no_new_privs()}")
    assert (status, out) == (0, "nnp=0")


def test_loading_without_cap_sys_admin_needs_no_new_privs(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    f = compiled(allow_all_but(MKDIR_ENOSYS))
    status, out = in_child(f.load, lambda: "loaded", setup=_become_nobody)
    assert "needs no_new_privs or CAP_SYS_ADMIN" in out

    def nobody_with_nnp() -> None:
        _become_nobody()
        libc.prctl(flags.PR_SET_NO_NEW_PRIVS, 1)

    status, out = in_child(f.load, lambda: "loaded", setup=nobody_with_nnp)
    assert (status, out) == (0, "loaded")


# -- the default profile ---------------------------------------------------------------------


def _spawn(*argv: str) -> int:
    """posix_spawn (glibc tries clone3 first, then clone) and wait: the exit code."""
    pid = os.posix_spawn(argv[0], list(argv), {"PATH": "/usr/bin:/bin"})
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _fork_exec_true() -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_default_profile_runs_a_shell_workload(
    compiled: Callable[[dict[str, object]], Filter], tmp_path: Path
) -> None:
    f = compiled(default_profile(DOCKER_DEFAULT_CAPS))
    script = (
        "mkdir d && echo hi > d/f && cat d/f >/dev/null && ls d >/dev/null && rm -r d && sleep 0"
    )

    def body() -> str:
        os.chdir(tmp_path)
        true = _fork_exec_true()
        shell = _spawn("/bin/sh", "-c", script)
        return f"fork+exec={true} sh={shell}"

    status, out = in_child(f.load, body)
    assert (status, out) == (0, "fork+exec=0 sh=0")


def _privileged_calls() -> str:
    unshare = errno_of(libc.unshare, flags.CLONE_NEWUTS)
    # Unfiltered, root would get ENOENT: the target does not exist.
    mount = errno_of(libc.mount, "none", "/nonexistent-orchestr-seccomp", "tmpfs")
    clone3 = 0 if _libc.syscall(NR_CLONE3, None, 0) == 0 else ctypes.get_errno()
    return f"unshare={unshare} mount={mount} clone3={clone3}"


def test_default_profile_denies_namespaces_and_mounts(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    f = compiled(default_profile(DOCKER_DEFAULT_CAPS))
    status, out = in_child(f.load, _privileged_calls)
    assert (status, out) == (0, "unshare=1 mount=1 clone3=38")


def test_default_profile_with_cap_sys_admin_allows_them(
    compiled: Callable[[dict[str, object]], Filter],
) -> None:
    f = compiled(default_profile(DOCKER_DEFAULT_CAPS | {"CAP_SYS_ADMIN"}))
    status, out = in_child(f.load, _privileged_calls)
    # clone3 now reaches the kernel, which refuses the NULL argument.
    assert (status, out) == (0, "unshare=0 mount=2 clone3=22")

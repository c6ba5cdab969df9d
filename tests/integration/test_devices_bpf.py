"""Device rules enforced by a BPF program on a real cgroup2 directory.

On this v1/v2 hybrid the cgroup2 hierarchy at /sys/fs/cgroup/unified has no
resource controllers, but device programs attach to any cgroup2 directory and
apply to the processes in it. The test processes sit in the root of the v1
devices hierarchy (everything allowed), so what is refused here is refused by
our program. Each test makes its own cgroup and removes it afterwards.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.runtime.linux import devices_bpf as bpf
from agent.runtime.linux.cgroups import with_default_devices
from tests.conftest import unique

pytestmark = pytest.mark.root

DENY_ALL: dict[str, object] = {"allow": False, "access": "rwm"}
NULL = {"allow": True, "type": "c", "major": 1, "minor": 3}
ZERO = {"allow": True, "type": "c", "major": 1, "minor": 5}


def cgroup2_root() -> str | None:
    """Where a cgroup2 hierarchy is mounted: /sys/fs/cgroup (pure v2) or .../unified."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            mounts[fields[4]] = fstype
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if mounts.get(path) == "cgroup2":
            return path
    return None


@pytest.fixture
def cgroup_dir() -> Iterator[str]:
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified")
    path = os.path.join(root, f"{unique('t')}-devbpf")  # the leak check knows t-<run>-
    os.mkdir(path)
    try:
        yield path
    finally:
        # The probes are reaped before this runs; move anything left to the root anyway.
        with open(os.path.join(path, "cgroup.procs")) as f:
            left = f.read().split()
        for pid in left:
            with open(os.path.join(root, "cgroup.procs"), "w") as f:
                f.write(pid)
        os.rmdir(path)


def probe(cgroup: str, ops: dict[str, Callable[[], object]]) -> dict[str, int]:
    """Run each op in a child in `cgroup`; the errno each failed with (0: it worked)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 0
        try:
            os.close(r)
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            results = []
            for op in ops.values():
                try:
                    op()
                    results.append(0)
                except OSError as e:
                    results.append(e.errno or -1)
            os.write(w, ",".join(map(str, results)).encode())
        except BaseException:
            code = 99
        finally:
            os._exit(code)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            out = f.read().decode()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the probe failed before reporting"
    return dict(zip(ops, map(int, out.split(",")), strict=True))


def opens(path: str, flags: int) -> Callable[[], object]:
    return lambda: os.close(os.open(path, flags))


def mknods(path: Path, kind: int, major: int, minor: int) -> Callable[[], object]:
    return lambda: os.mknod(path, 0o600 | kind, os.makedev(major, minor))


def attach(rules: list[dict[str, object]], cgroup: str) -> None:
    fd = bpf.load_and_attach(bpf.compile_rules(rules), cgroup)
    os.close(fd)  # the attachment keeps the program


def test_rules_are_enforced(cgroup_dir: str, tmp_path: Path) -> None:
    attach([DENY_ALL, {**NULL, "access": "rw"}, {**ZERO, "access": "r"}], cgroup_dir)
    got = probe(
        cgroup_dir,
        {
            "write /dev/null": opens("/dev/null", os.O_WRONLY),
            "read-write /dev/null": opens("/dev/null", os.O_RDWR),
            "read /dev/zero": opens("/dev/zero", os.O_RDONLY),
            "write /dev/zero": opens("/dev/zero", os.O_WRONLY),
            "read-write /dev/zero": opens("/dev/zero", os.O_RDWR),
            "read /dev/full": opens("/dev/full", os.O_RDONLY),
            "mknod c 1:3": mknods(tmp_path / "null", stat.S_IFCHR, 1, 3),
        },
    )
    assert got == {
        "write /dev/null": 0,
        "read-write /dev/null": 0,
        "read /dev/zero": 0,
        "write /dev/zero": errno.EPERM,
        "read-write /dev/zero": errno.EPERM,
        "read /dev/full": errno.EPERM,
        "mknod c 1:3": errno.EPERM,
    }
    # Outside the cgroup nothing changed.
    os.close(os.open("/dev/full", os.O_RDONLY))


def test_mknod_is_allowed_by_m(cgroup_dir: str, tmp_path: Path) -> None:
    attach([DENY_ALL, {**NULL, "access": "rwm"}], cgroup_dir)
    got = probe(
        cgroup_dir,
        {
            "mknod c 1:3": mknods(tmp_path / "null", stat.S_IFCHR, 1, 3),
            "write it": opens(str(tmp_path / "null"), os.O_WRONLY),
            "mknod c 1:5": mknods(tmp_path / "zero", stat.S_IFCHR, 1, 5),
        },
    )
    assert got == {"mknod c 1:3": 0, "write it": 0, "mknod c 1:5": errno.EPERM}


def test_runtime_default_rules(cgroup_dir: str, tmp_path: Path) -> None:
    rules = with_default_devices({"devices": [DENY_ALL]})["devices"]
    assert isinstance(rules, list)
    attach(rules, cgroup_dir)
    got = probe(
        cgroup_dir,
        {
            "read-write /dev/null": opens("/dev/null", os.O_RDWR),
            "read-write /dev/full": opens("/dev/full", os.O_RDWR),
            "read /dev/urandom": opens("/dev/urandom", os.O_RDONLY),
            "mknod b 7:0": mknods(tmp_path / "loop", stat.S_IFBLK, 7, 0),
            "read b 7:0": opens(str(tmp_path / "loop"), os.O_RDONLY),
        },
    )
    assert got == {
        "read-write /dev/null": 0,
        "read-write /dev/full": 0,
        "read /dev/urandom": 0,
        "mknod b 7:0": 0,  # "b *:* m"
        "read b 7:0": errno.EPERM,  # no rule gives access to block devices
    }


def test_a_refused_program_reports_the_verifier_log(cgroup_dir: str) -> None:
    no_return_value = bpf.insn(bpf.EXIT)
    with pytest.raises(OSError, match=r"BPF_PROG_LOAD.*verifier log:\n(.|\n)*R0 !read_ok"):
        bpf.load_and_attach(no_return_value, cgroup_dir)


def test_attaching_to_a_directory_that_is_no_cgroup_fails(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=f"BPF_PROG_ATTACH\\) to {tmp_path}"):
        bpf.load_and_attach(bpf.compile_rules([DENY_ALL]), str(tmp_path))

"""spec.resolve: what the schema cannot check, and the values the init executes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from agent.runtime.errors import BundleError, NotSupportedError
from agent.runtime.linux import flags
from agent.runtime.spec import (
    RLIM_INFINITY,
    load_bundle,
    parse_mount_options,
    resolve_rlimits,
)


def write_bundle(tmp_path: Path, *opts: so.SpecOpt) -> Path:
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    config = so.build(so.default_spec(), so.with_terminal(False), *opts)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def edit(fn):  # type: ignore[no-untyped-def]
    return fn


def test_default_spec_resolves(tmp_path: Path) -> None:
    b = load_bundle(str(write_bundle(tmp_path)))
    assert b.rootfs == str(tmp_path / "rootfs")
    assert b.args == ["sh"]
    new = b.new_namespaces
    for f in (
        flags.CLONE_NEWPID,
        flags.CLONE_NEWNET,
        flags.CLONE_NEWNS,
        flags.CLONE_NEWUTS,
        flags.CLONE_NEWIPC,
        flags.CLONE_NEWCGROUP,
    ):
        assert new & f
    assert [m.destination for m in b.mounts][:2] == ["/proc", "/dev"]


def test_mount_options_split_into_flags_propagation_and_data() -> None:
    mflags, prop, data = parse_mount_options(
        ["nosuid", "noexec", "ro", "rw", "mode=755", "size=64k", "rbind", "rslave"]
    )
    assert mflags == flags.MS_NOSUID | flags.MS_NOEXEC | flags.MS_BIND | flags.MS_REC
    assert prop == flags.MS_SLAVE | flags.MS_REC
    assert data == "mode=755,size=64k"


def test_bind_mount_source_is_relative_to_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    b = load_bundle(str(write_bundle(tmp_path, so.with_mount("/data", "bind", "data", ["ro"]))))
    m = b.mounts[-1]
    assert m.is_bind and m.source == str(tmp_path / "data")
    assert m.flags & flags.MS_RDONLY


@pytest.mark.parametrize(
    ("opt", "message"),
    [
        (so.with_namespace("mount", None), None),
        (so.with_mount("/x", "bind", "missing-dir"), "mounts[7].source"),
        (so.with_mount("relative", "tmpfs", "tmpfs"), "is not an absolute path"),
        (so.with_cwd("relative"), "process.cwd"),
        (so.with_args([]), "process.args: empty"),
        (so.without_namespace("uts"), "hostname: set, but the container has no UTS namespace"),
    ],
)
def test_semantic_errors_name_the_field(tmp_path: Path, opt: so.SpecOpt, message: str | None):
    bundle = write_bundle(tmp_path, opt)
    if message is None:
        load_bundle(str(bundle))
        return
    with pytest.raises(BundleError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_bundle(str(bundle))


def test_namespace_given_twice(tmp_path: Path) -> None:
    def twice(config: dict[str, object]) -> None:
        linux = config["linux"]
        assert isinstance(linux, dict)
        linux["namespaces"] = [*linux["namespaces"], {"type": "pid"}]

    with pytest.raises(BundleError, match=r"namespace 'pid' given twice"):
        load_bundle(str(write_bundle(tmp_path, twice)))


def test_user_namespace_is_not_supported_yet(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="user namespaces"):
        load_bundle(str(write_bundle(tmp_path, so.with_namespace("user"))))


def test_no_mount_namespace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotSupportedError, match="without a mount namespace"):
        load_bundle(str(write_bundle(tmp_path, so.without_namespace("mount"))))


def test_namespace_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"linux.namespaces\[5\].path"):
        load_bundle(str(write_bundle(tmp_path, so.with_namespace("network", "/nope/net"))))


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("net.ipv4.ip_forward", True),
        ("kernel.shmmax", True),
        ("fs.mqueue.msg_max", True),
        ("kernel.domainname", True),
        ("vm.swappiness", False),
        ("kernel.panic", False),
    ],
)
def test_only_namespaced_sysctls(tmp_path: Path, key: str, ok: bool) -> None:
    def sysctl(config: dict[str, object]) -> None:
        linux = config["linux"]
        assert isinstance(linux, dict)
        linux["sysctl"] = {key: "1"}

    bundle = write_bundle(tmp_path, sysctl)
    if ok:
        load_bundle(str(bundle))
    else:
        with pytest.raises(BundleError, match="is not namespaced"):
            load_bundle(str(bundle))


def test_sysctl_needs_its_namespace(tmp_path: Path) -> None:
    def sysctl(config: dict[str, object]) -> None:
        linux = config["linux"]
        assert isinstance(linux, dict)
        linux["sysctl"] = {"net.ipv4.ip_forward": "1"}

    with pytest.raises(BundleError, match="needs the container's own network namespace"):
        load_bundle(str(write_bundle(tmp_path, sysctl, so.without_namespace("network"))))


def test_rlimits_are_clamped_to_the_hard_limit_with_a_warning() -> None:
    warnings: list[str] = []
    out = resolve_rlimits(
        [
            {"type": "RLIMIT_NOFILE", "soft": 1048576, "hard": 1048576},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": RLIM_INFINITY},
        ],
        {7: 20000, 4: RLIM_INFINITY},
        warnings,
    )
    assert out == [(7, 20000, 20000), (4, 0, RLIM_INFINITY)]
    assert len(warnings) == 1 and "RLIMIT_NOFILE" in warnings[0] and "20000" in warnings[0]


def test_rlimit_soft_above_hard_is_an_error() -> None:
    with pytest.raises(BundleError, match="soft limit"):
        resolve_rlimits([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}], None, [])


def test_unknown_capability_is_a_warning(tmp_path: Path) -> None:
    b = load_bundle(str(write_bundle(tmp_path, so.with_capabilities(["CAP_KILL", "CAP_MAGIC"]))))
    assert any("CAP_MAGIC" in w for w in b.warnings)


def test_other_platforms_are_refused(tmp_path: Path) -> None:
    def windows(config: dict[str, object]) -> None:
        config["windows"] = {"layerFolders": ["C:\\\\x"]}

    with pytest.raises(BundleError):
        load_bundle(str(write_bundle(tmp_path, windows)))

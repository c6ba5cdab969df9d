"""Image config + overrides -> OCI runtime config, with Docker's merge rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.images.bundle import (
    DOCKER_DEFAULT_CAPS,
    Overrides,
    UserError,
    merge_env,
    process_args,
    resolve_user,
    runtime_config,
)

IMAGE = {"Entrypoint": ["/entry.sh"], "Cmd": ["serve", "--port", "80"]}


@pytest.mark.parametrize(
    ("image", "overrides", "args"),
    [
        (IMAGE, Overrides(), ["/entry.sh", "serve", "--port", "80"]),
        (IMAGE, Overrides(cmd=["shell"]), ["/entry.sh", "shell"]),
        (IMAGE, Overrides(entrypoint=["sh"]), ["sh"]),  # --entrypoint drops the image's Cmd
        (IMAGE, Overrides(entrypoint=["sh"], cmd=["-c", "x"]), ["sh", "-c", "x"]),
        ({"Cmd": ["sh"]}, Overrides(), ["sh"]),
        ({"Cmd": ["sh"]}, Overrides(cmd=[]), []),
    ],
)
def test_entrypoint_and_cmd(
    image: dict[str, object], overrides: Overrides, args: list[str]
) -> None:
    if not args:
        with pytest.raises(ValueError, match="no command specified"):
            process_args(image, overrides)
    else:
        assert process_args(image, overrides) == args


def test_env_overrides_by_name_and_keeps_order() -> None:
    assert merge_env(["PATH=/bin", "A=1", "B=2"], ["B=3", "C=4"]) == [
        "PATH=/bin",
        "A=1",
        "B=3",
        "C=4",
    ]
    assert merge_env([], ["X=1"])[0].startswith("PATH=")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
    )
    (etc / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nvideo:x:44:app\n")
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, (0, 0, [])),
        ("app", (1000, 1000, [44, 50])),
        ("1000", (1000, 1000, [44, 50])),
        ("app:staff", (1000, 50, [44])),
        ("app:7", (1000, 7, [44, 50])),
        ("4242", (4242, 0, [])),
        ("4242:4343", (4242, 4343, [])),
    ],
)
def test_resolve_user(rootfs: Path, spec: str | None, expected: tuple[int, int, list[int]]):
    assert resolve_user(spec, str(rootfs)) == expected


@pytest.mark.parametrize(("spec", "what"), [("nobody", "user nobody"), ("app:ghosts", "group")])
def test_unknown_user_or_group(rootfs: Path, spec: str, what: str) -> None:
    with pytest.raises(UserError, match=f"unable to find {what}"):
        resolve_user(spec, str(rootfs))


def test_passwd_symlink_out_of_the_rootfs_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(UserError):
        resolve_user("root", str(tmp_path))  # the host's root is not the image's


def test_runtime_config_is_dockers_default_container(rootfs: Path) -> None:
    image_config = {
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
            "Cmd": ["sh"],
            "WorkingDir": "/srv",
            "User": "app",
        }
    }
    config = runtime_config(
        image_config, Overrides(env=["LANG=C.UTF-8"], hostname="web-1", tty=True), str(rootfs)
    )
    proc = config["process"]
    assert isinstance(proc, dict)
    assert proc["args"] == ["sh"]
    assert proc["env"] == ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TERM=xterm"]
    assert proc["cwd"] == "/srv"
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [44, 50]}
    assert proc["terminal"] is True
    assert proc["capabilities"]["bounding"] == DOCKER_DEFAULT_CAPS  # type: ignore[index]
    assert config["hostname"] == "web-1"
    assert config["root"] == {"path": "rootfs", "readonly": False}

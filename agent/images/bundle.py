"""From an image's config (plus what `docker run` may override) to an OCI runtime config.

The image config's `config` object (Env, Entrypoint, Cmd, WorkingDir, User, ...)
and the overrides merge as Docker merges them:

- `--entrypoint` replaces the image's Entrypoint *and* drops its Cmd; a command
  alone replaces Cmd and keeps the Entrypoint.
- Environment variables override the image's by name, keeping the image's order.
- The user is `name`, `uid`, `name:group` or `uid:gid`, resolved against the
  container's own /etc/passwd and /etc/group; its supplementary groups come
  from /etc/group, as Docker does.

The rest of the config is Docker's default container: its 14 capabilities, its
masked and read-only paths, and its mounts. Pure but for reading the rootfs's
passwd and group files.
"""

from __future__ import annotations

import os

from agent.runtime import specopts as so

DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
DOCKER_MASKED_PATHS = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]
DOCKER_READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


class UserError(ValueError):
    """A user or group that the container's files do not know."""


class Overrides:
    """What a container may set over its image (the `docker run` flags that matter here)."""

    __slots__ = (
        "cmd",
        "entrypoint",
        "env",
        "hostname",
        "readonly_rootfs",
        "tty",
        "user",
        "working_dir",
    )

    def __init__(
        self,
        *,
        cmd: list[str] | None = None,
        entrypoint: list[str] | None = None,
        env: list[str] | None = None,
        working_dir: str | None = None,
        user: str | None = None,
        hostname: str | None = None,
        tty: bool = False,
        readonly_rootfs: bool = False,
    ) -> None:
        self.cmd = cmd
        self.entrypoint = entrypoint
        self.env = env or []
        self.working_dir = working_dir
        self.user = user
        self.hostname = hostname
        self.tty = tty
        self.readonly_rootfs = readonly_rootfs


def process_args(image: dict[str, object], o: Overrides) -> list[str]:
    """Entrypoint + Cmd after Docker's override rules; ValueError if nothing is left."""
    if o.entrypoint is not None:
        entrypoint = list(o.entrypoint)
        cmd = list(o.cmd) if o.cmd is not None else []
    else:
        entrypoint = _strs(image.get("Entrypoint"))
        cmd = list(o.cmd) if o.cmd is not None else _strs(image.get("Cmd"))
    args = entrypoint + cmd
    if not args:
        raise ValueError("no command specified: the image has no Entrypoint or Cmd, and none given")
    return args


def merge_env(image_env: list[str], overrides: list[str]) -> list[str]:
    """The image's variables with the overrides laid over them by name."""
    out = list(image_env)
    index = {e.partition("=")[0]: i for i, e in enumerate(out)}
    for entry in overrides:
        key = entry.partition("=")[0]
        if key in index:
            out[index[key]] = entry
        else:
            index[key] = len(out)
            out.append(entry)
    if "PATH" not in index:
        out.insert(0, so.DEFAULT_PATH)
    return out


def _read_db(rootfs: str, name: str) -> list[list[str]]:
    path = os.path.join(rootfs, "etc", name)
    # The file belongs to the image: never follow a link out of the rootfs.
    if os.path.islink(path) or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip() and line[0] != "#"]


def resolve_user(spec: str | None, rootfs: str) -> tuple[int, int, list[int]]:
    """(uid, gid, supplementary gids) for `user[:group]`, as Docker resolves it."""
    if not spec:
        spec = "0"
    user, _, group = spec.partition(":")
    passwd = _read_db(rootfs, "passwd")
    groups = _read_db(rootfs, "group")
    entry = next((p for p in passwd if len(p) >= 4 and (p[0] == user or p[2] == user)), None)
    if entry is not None:
        uid, gid, name = int(entry[2]), int(entry[3]), entry[0]
    elif user.isdigit():
        uid, gid, name = int(user), 0, ""
    else:
        raise UserError(f"unable to find user {user}: no matching entries in passwd file")
    if group:
        g = next((g for g in groups if len(g) >= 3 and (g[0] == group or g[2] == group)), None)
        if g is not None:
            gid = int(g[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise UserError(f"unable to find group {group}: no matching entries in group file")
    extra = sorted(
        {int(g[2]) for g in groups if len(g) >= 4 and name and name in g[3].split(",")} - {gid}
    )
    return uid, gid, extra


def runtime_config(
    image_config: dict[str, object],
    overrides: Overrides,
    rootfs_dir: str,
    root_path: str = "rootfs",
) -> dict[str, object]:
    """The OCI runtime config for a container of this image.

    `rootfs_dir` is the container's root directory, read for its users and
    groups; `root_path` is what config.json calls it (relative to the bundle).
    """
    image = image_config.get("config")
    image = image if isinstance(image, dict) else {}
    uid, gid, extra = resolve_user(
        overrides.user if overrides.user is not None else _str(image.get("User")), rootfs_dir
    )
    env = merge_env(_strs(image.get("Env")), overrides.env)
    if overrides.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    config = so.build(
        so.default_spec(),
        so.with_args(process_args(image, overrides)),
        so.with_terminal(overrides.tty),
        so.with_rootfs(root_path, readonly=overrides.readonly_rootfs),
        so.with_user(uid, gid, extra),
        so.with_cwd(overrides.working_dir or _str(image.get("WorkingDir")) or "/"),
        so.with_capabilities(DOCKER_DEFAULT_CAPS),
    )
    proc = config["process"]
    assert isinstance(proc, dict)
    proc["env"] = env
    proc["noNewPrivileges"] = False  # Docker's default; --security-opt no-new-privileges sets it
    proc.pop("rlimits", None)  # Docker leaves the daemon's limits in place by default
    if overrides.hostname:
        config["hostname"] = overrides.hostname
    else:
        config.pop("hostname", None)
    linux = config["linux"]
    assert isinstance(linux, dict)
    linux["maskedPaths"] = list(DOCKER_MASKED_PATHS)
    linux["readonlyPaths"] = list(DOCKER_READONLY_PATHS)
    return config


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []

"""Building OCI runtime configs from small composable options (pure).

    config = build(default_spec(), with_args(["sh"]), with_env({"A": "1"}))

The image layer turns an image config plus overrides into a bundle this way;
`orchestr runtime spec` writes `default_spec()` like `runc spec` does.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from collections.abc import Callable

    SpecOpt = Callable[[dict[str, object]], None]

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
]
READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


def default_spec() -> dict[str, object]:
    """The same defaults `runc spec` writes: a shell, a few caps, the usual mounts."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
                "ambient": list(DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "orchestr",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
            ],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def build(base: dict[str, object], *opts: SpecOpt) -> dict[str, object]:
    for opt in opts:
        opt(base)
    return base


def _process(config: dict[str, object]) -> dict[str, object]:
    proc = config.setdefault("process", {})
    assert isinstance(proc, dict)
    return proc


def _linux(config: dict[str, object]) -> dict[str, object]:
    linux = config.setdefault("linux", {})
    assert isinstance(linux, dict)
    return linux


def _resources(config: dict[str, object]) -> dict[str, object]:
    res = _linux(config).setdefault("resources", {})
    assert isinstance(res, dict)
    return res


def with_args(args: list[str]) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        _process(config)["args"] = list(args)

    return opt


def with_terminal(on: bool) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        _process(config)["terminal"] = on

    return opt


def with_env(env: dict[str, str]) -> SpecOpt:
    """Set variables, replacing ones of the same name and keeping the order."""

    def opt(config: dict[str, object]) -> None:
        proc = _process(config)
        current = proc.get("env")
        items = [e for e in current if isinstance(e, str)] if isinstance(current, list) else []
        keys = {e.partition("=")[0]: i for i, e in enumerate(items)}
        for key, value in env.items():
            if key in keys:
                items[keys[key]] = f"{key}={value}"
            else:
                keys[key] = len(items)
                items.append(f"{key}={value}")
        proc["env"] = items

    return opt


def with_cwd(cwd: str) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        _process(config)["cwd"] = cwd

    return opt


def with_user(uid: int, gid: int, additional_gids: list[int] | None = None) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        user: dict[str, object] = {"uid": uid, "gid": gid}
        if additional_gids:
            user["additionalGids"] = list(additional_gids)
        _process(config)["user"] = user

    return opt


def with_hostname(name: str) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        config["hostname"] = name

    return opt


def with_rootfs(path: str, readonly: bool = False) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        config["root"] = {"path": path, "readonly": readonly}

    return opt


def with_capabilities(caps: list[str]) -> SpecOpt:
    """The same set as bounding, effective, permitted and ambient (runc's shape)."""

    def opt(config: dict[str, object]) -> None:
        _process(config)["capabilities"] = {
            k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")
        }

    return opt


def with_memory_limit(limit: int, swap: int | None = None) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        mem = {"limit": limit}
        if swap is not None:
            mem["swap"] = swap
        _resources(config)["memory"] = mem

    return opt


def with_pids_limit(limit: int) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        _resources(config)["pids"] = {"limit": limit}

    return opt


def with_cpu(
    shares: int | None = None,
    quota: int | None = None,
    period: int | None = None,
    cpus: str | None = None,
) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        cpu: dict[str, object] = {}
        for key, value in (
            ("shares", shares),
            ("quota", quota),
            ("period", period),
            ("cpus", cpus),
        ):
            if value is not None:
                cpu[key] = value
        _resources(config)["cpu"] = cpu

    return opt


def with_namespace(kind: str, path: str | None = None) -> SpecOpt:
    """Add or replace a namespace (a path joins an existing one)."""

    def opt(config: dict[str, object]) -> None:
        linux = _linux(config)
        current = linux.get("namespaces")
        nss = [n for n in current if isinstance(n, dict)] if isinstance(current, list) else []
        nss = [n for n in nss if n.get("type") != kind]
        entry: dict[str, object] = {"type": kind}
        if path:
            entry["path"] = path
        nss.append(entry)
        linux["namespaces"] = nss

    return opt


def without_namespace(kind: str) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        linux = _linux(config)
        current = linux.get("namespaces")
        if isinstance(current, list):
            linux["namespaces"] = [
                n for n in current if not (isinstance(n, dict) and n.get("type") == kind)
            ]

    return opt


def with_mount(
    destination: str, type: str, source: str, options: list[str] | None = None
) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        mounts = config.setdefault("mounts", [])
        assert isinstance(mounts, list)
        entry: dict[str, object] = {"destination": destination, "type": type, "source": source}
        if options:
            entry["options"] = list(options)
        mounts.append(entry)

    return opt


def with_cgroups_path(path: str) -> SpecOpt:
    def opt(config: dict[str, object]) -> None:
        _linux(config)["cgroupsPath"] = path

    return opt

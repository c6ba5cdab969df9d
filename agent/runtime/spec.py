"""Reading an OCI bundle and turning its config into decisions (pure).

`load_bundle()` reads config.json, validates it against the runtime-spec JSON
schema, then checks what the schema cannot (rootfs exists, namespaces make
sense, sysctls are namespaced) and resolves the config into plain values the
privileged edge (`linux/init.py`) executes without deciding anything:
namespace flags, mount flags, capability masks, rlimits already clamped.

Import-light on purpose: this is on the `orchestr runtime create` start-up path
(no re, json, typing, dataclasses, enum at run time).
"""

from __future__ import annotations

import os
import stat

from agent.runtime import fastjson
from agent.runtime.errors import BundleError, NotSupportedError
from agent.runtime.linux import caps as capsmod
from agent.runtime.linux import flags, mountopts

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from collections.abc import Iterable

OCI_VERSION = "1.3.0"

NAMESPACE_FLAGS = {
    "pid": flags.CLONE_NEWPID,
    "network": flags.CLONE_NEWNET,
    "mount": flags.CLONE_NEWNS,
    "ipc": flags.CLONE_NEWIPC,
    "uts": flags.CLONE_NEWUTS,
    "cgroup": flags.CLONE_NEWCGROUP,
    "user": flags.CLONE_NEWUSER,
    "time": flags.CLONE_NEWTIME,
}
# /proc/<pid>/ns/<file> for each namespace type.
NAMESPACE_FILES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "cgroup": "cgroup",
    "user": "user",
    "time": "time",
}
# Order in which namespaces given by path are joined: user first (it grants
# rights over the others), mount last but one so paths still resolve.
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")

# Options that only make sense to the runtime (idmap, tmpcopyup, ...).
_UNSUPPORTED_MOUNT_OPTIONS = frozenset({"idmap", "ridmap", "tmpcopyup"})

RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}
RLIM_INFINITY = 0xFFFFFFFFFFFFFFFF

# Sysctls a container may set, and the namespace that makes each safe.
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_UTS_SYSCTLS = frozenset({"kernel.hostname", "kernel.domainname"})


class Mount:
    """One entry of config.mounts, resolved: flags split from data."""

    __slots__ = ("data", "destination", "flags", "options", "propagation", "source", "type")

    def __init__(
        self,
        destination: str,
        type: str,
        source: str,
        flags: int,
        propagation: int,
        data: str,
        options: list[str],
    ) -> None:
        self.destination = destination
        self.type = type
        self.source = source
        self.flags = flags
        self.propagation = propagation
        self.data = data
        self.options = options

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & flags.MS_BIND)

    def __repr__(self) -> str:
        return f"Mount({self.type} {self.source} on {self.destination} flags={self.flags:#x})"


class Bundle:
    """A validated bundle: the raw config plus the values derived from it."""

    __slots__ = (
        "config",
        "join_namespaces",
        "mounts",
        "new_namespaces",
        "path",
        "rlimits",
        "rootfs",
        "warnings",
    )

    def __init__(self, path: str, config: dict[str, object]) -> None:
        self.path = path
        self.config = config
        self.rootfs = ""
        self.new_namespaces = 0
        self.join_namespaces: list[tuple[str, str]] = []
        self.mounts: list[Mount] = []
        self.rlimits: list[tuple[int, int, int]] = []
        self.warnings: list[str] = []

    # Typed views of the parts of the config the runtime reads.
    @property
    def process(self) -> dict[str, object]:
        return _obj(self.config.get("process"))

    @property
    def linux(self) -> dict[str, object]:
        return _obj(self.config.get("linux"))

    @property
    def args(self) -> list[str]:
        return _strs(self.process.get("args"))

    @property
    def env(self) -> list[str]:
        return _strs(self.process.get("env"))

    @property
    def terminal(self) -> bool:
        return bool(self.process.get("terminal", False))

    @property
    def readonly_root(self) -> bool:
        return bool(_obj(self.config.get("root")).get("readonly", False))

    @property
    def hostname(self) -> str | None:
        value = self.config.get("hostname")
        return value if isinstance(value, str) else None

    @property
    def annotations(self) -> dict[str, str]:
        raw = _obj(self.config.get("annotations"))
        return {k: v for k, v in raw.items() if isinstance(v, str)}

    def has_new_namespace(self, kind: str) -> bool:
        return bool(self.new_namespaces & NAMESPACE_FLAGS[kind])


def _obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _strs(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def read_config(bundle: str) -> dict[str, object]:
    """config.json of a bundle, parsed and schema-validated."""
    from agent.runtime import schema

    path = os.path.join(bundle, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise BundleError(f"{path}: no such file (a bundle needs a config.json)") from None
    except IsADirectoryError:
        raise BundleError(f"{path}: is a directory, not a file") from None
    try:
        doc = fastjson.loads(text)
    except ValueError as e:
        raise BundleError(f"{path}: invalid JSON: {e}") from None
    try:
        schema.validate_config(doc)
    except schema.SchemaError as e:
        raise BundleError(f"{path}: {e.path or 'config'}: {e.reason}") from None
    assert isinstance(doc, dict)
    return doc


def load_bundle(bundle: str, hard_limits: Iterable[tuple[int, int]] | None = None) -> Bundle:
    """Read, validate and resolve a bundle; raises BundleError naming the problem."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise BundleError(f"bundle {bundle}: no such directory")
    result = Bundle(bundle, read_config(bundle))
    resolve(result, hard_limits)
    return result


def resolve(b: Bundle, hard_limits: Iterable[tuple[int, int]] | None = None) -> None:
    """Check and derive everything the schema does not; pure but for the rootfs stat."""
    config = b.config
    for kind, entries in _obj(config.get("hooks")).items():
        for i, hook in enumerate(_list(entries)):
            if not str(hook.get("path", "")).startswith("/"):
                raise BundleError(f"hooks.{kind}[{i}].path: {hook.get('path')!r} is not absolute")
    for other in ("windows", "solaris", "vm", "zos", "freebsd"):
        if other in config:
            raise NotSupportedError(f"config.{other}: only Linux containers are supported")
    root = _obj(config.get("root"))
    root_path = str(root.get("path", ""))
    if not root_path:
        raise BundleError("root.path: missing (the container's root filesystem)")
    b.rootfs = os.path.normpath(os.path.join(b.path, root_path))
    if not os.path.isdir(b.rootfs):
        raise BundleError(f"root.path: {b.rootfs}: no such directory")
    proc = b.process
    if not proc:
        raise BundleError("process: missing (nothing to run)")
    if not b.args:
        raise BundleError("process.args: empty (nothing to run)")
    if "cwd" in proc and not str(proc["cwd"]).startswith("/"):
        raise BundleError(f"process.cwd: {proc['cwd']!r} is not an absolute path")
    resolve_namespaces(b)
    b.mounts = [resolve_mount(m, i, b.path) for i, m in enumerate(_list(config.get("mounts")))]
    check_sysctls(b)
    if b.hostname and not b.has_new_namespace("uts"):
        raise BundleError("hostname: set, but the container has no UTS namespace of its own")
    linux = b.linux
    if linux.get("uidMappings") or linux.get("gidMappings"):
        raise NotSupportedError("linux.uidMappings: user namespaces are not supported yet")
    if linux.get("intelRdt"):
        raise NotSupportedError("linux.intelRdt: not supported")
    seccomp = _obj(linux.get("seccomp"))
    if seccomp.get("listenerPath"):
        raise NotSupportedError("linux.seccomp.listenerPath: seccomp notify is not supported")
    caps = _obj(proc.get("capabilities"))
    for field in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        for name in _strs(caps.get(field)):
            if name not in capsmod.CAPABILITIES:
                b.warnings.append(f"process.capabilities.{field}: unknown capability {name}")
    b.rlimits = resolve_rlimits(
        _list(proc.get("rlimits")), dict(hard_limits) if hard_limits else None, b.warnings
    )


def _list(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def resolve_namespaces(b: Bundle) -> None:
    seen: set[str] = set()
    for i, ns in enumerate(_list(b.linux.get("namespaces"))):
        kind = str(ns.get("type"))
        where = f"linux.namespaces[{i}]"
        if kind not in NAMESPACE_FLAGS:
            raise BundleError(f"{where}.type: unknown namespace type {kind!r}")
        if kind in seen:
            raise BundleError(f"{where}.type: namespace {kind!r} given twice")
        seen.add(kind)
        if kind == "user":
            raise NotSupportedError(f"{where}: user namespaces are not supported yet")
        if kind == "time":
            raise NotSupportedError(f"{where}: time namespaces are not supported yet")
        path = str(ns.get("path") or "")
        if path:
            if not os.path.exists(path):
                raise BundleError(f"{where}.path: {path}: no such namespace file")
            b.join_namespaces.append((kind, path))
        else:
            b.new_namespaces |= NAMESPACE_FLAGS[kind]
    b.join_namespaces.sort(key=lambda item: JOIN_ORDER.index(item[0]))
    if "mount" not in seen:
        # Without a mount namespace the runtime would mount over the host.
        raise NotSupportedError("linux.namespaces: a container without a mount namespace")


def parse_mount_options(options: list[str]) -> tuple[int, int, str]:
    """(flags, propagation flags, data string) from OCI mount options."""
    for opt in options:
        if opt in _UNSUPPORTED_MOUNT_OPTIONS:
            raise NotSupportedError(f"mount option {opt!r} is not supported")
    mflags, propagation, data = mountopts.parse(options)
    return mflags, propagation, ",".join(data)


def resolve_mount(m: dict[str, object], index: int, bundle: str) -> Mount:
    where = f"mounts[{index}]"
    dest = str(m.get("destination", ""))
    if not dest.startswith("/"):
        raise BundleError(f"{where}.destination: {dest!r} is not an absolute path")
    options = _strs(m.get("options"))
    mflags, propagation, data = parse_mount_options(options)
    mtype = str(m.get("type") or "")
    if mtype in ("bind", "rbind"):
        mflags |= flags.MS_BIND
    if not mtype and not mflags & flags.MS_BIND:
        raise BundleError(f"{where}.type: missing for a mount that is not a bind mount")
    source = str(m.get("source") or "")
    if mflags & flags.MS_BIND:
        if not source:
            raise BundleError(f"{where}.source: missing for a bind mount")
        source = os.path.normpath(os.path.join(bundle, source))
        if not os.path.exists(source):
            raise BundleError(f"{where}.source: {source}: no such file or directory")
        mtype = "bind"
    return Mount(dest, mtype, source or mtype, mflags, propagation, data, options)


def check_sysctls(b: Bundle) -> None:
    for key in _obj(b.linux.get("sysctl")):
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            needs = "ipc"
        elif key in _UTS_SYSCTLS:
            needs = "uts"
        elif key.startswith("net."):
            needs = "network"
        else:
            raise BundleError(f"linux.sysctl: {key} is not namespaced; a container may not set it")
        if not b.has_new_namespace(needs):
            raise BundleError(f"linux.sysctl: {key} needs the container's own {needs} namespace")


def resolve_rlimits(
    rlimits: list[dict[str, object]],
    hard_limits: dict[int, int] | None,
    warnings: list[str],
) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) with hard clamped to what the caller may raise to.

    Without CAP_SYS_RESOURCE no process may raise a hard limit; rather than
    failing every container on such a machine, lower it and say so.
    """
    out: list[tuple[int, int, int]] = []
    for i, rl in enumerate(rlimits):
        name = str(rl.get("type"))
        if name not in RLIMITS:
            raise BundleError(f"process.rlimits[{i}].type: unknown rlimit {name}")
        res = RLIMITS[name]
        soft = _rlim(rl.get("soft"))
        hard = _rlim(rl.get("hard"))
        if soft > hard:
            raise BundleError(f"process.rlimits[{i}]: soft limit {soft} above hard limit {hard}")
        limit = (hard_limits or {}).get(res)
        if limit is not None and hard > limit:
            warnings.append(
                f"{name}: hard limit {hard} clamped to {limit}, the most this runtime may set"
            )
            hard = limit
            soft = min(soft, hard)
        out.append((res, soft, hard))
    return out


def _rlim(value: object) -> int:
    n = int(value) if isinstance(value, int) else 0
    return RLIM_INFINITY if n >= RLIM_INFINITY or n < 0 else n


def is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False

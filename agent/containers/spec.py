"""A container's desired configuration: Docker's create body (Config + HostConfig)
checked into a `ContainerSpec`, and the spec + image config turned into the
OCI runtime config (config.json) of its bundle. Pure, apart from reading the
image's /etc/passwd and /etc/group to resolve the user.

Docker's create body carries every field, most of them zero; an option that
orchestr does not have yet is refused (SpecError -> 400) only when it asks
for something, never silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.images.bundle import DOCKER_DEFAULT_CAPS, Overrides, runtime_config
from agent.network import Endpoint, driver_for
from agent.runtime import specopts as so
from orchestr.api.limits import ULIMITS

__all__ = [
    "INIT_BINARY",
    "INIT_IN_CONTAINER",
    "ContainerSpec",
    "Mount",
    "RestartPolicy",
    "SpecError",
    "Ulimit",
    "oci_config",
    "parse_create",
]

# `--init`: Debian's tini (package `tini`), bind-mounted read-only where Docker puts its
# docker-init, which is tini too.
INIT_BINARY = "/usr/bin/tini-static"
INIT_PACKAGE = "tini"
INIT_IN_CONTAINER = "/sbin/docker-init"

# Docker's pattern needs two characters; one is allowed here (`--name w` works).
_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_RESTART = ("", "no", "always", "unless-stopped", "on-failure")
# Capabilities as Docker names them (without CAP_), plus ALL.
_CAP = re.compile(r"^(CAP_)?[A-Z_]+$")


class SpecError(ValueError):
    """A create request orchestr cannot honour; the message says which field and why."""


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"  # no | always | unless-stopped | on-failure
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class Mount:
    """A mount of the container: bind (host path), volume (named) or tmpfs."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    options: tuple[str, ...] = ()  # tmpfs: size=…, mode=…


@dataclass(frozen=True)
class Ulimit:
    name: str  # nofile, nproc, … (see orchestr.api.limits.ULIMITS)
    soft: int
    hard: int


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    exposed_ports: dict[str, Any] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)
    # HostConfig
    restart: RestartPolicy = RestartPolicy()
    auto_remove: bool = False
    network_mode: str = "default"
    port_bindings: dict[str, Any] = field(default_factory=dict)
    publish_all: bool = False
    dns: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    endpoints: dict[str, Any] = field(default_factory=dict)  # NetworkingConfig.EndpointsConfig
    readonly_rootfs: bool = False
    mounts: tuple[Mount, ...] = ()
    memory: int = 0
    memory_swap: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    pids_limit: int = 0
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    seccomp: bool = True
    no_new_privileges: bool = False
    log_max_size: int | None = None
    log_max_files: int = 1
    init: bool = False
    ulimits: tuple[Ulimit, ...] = ()
    healthcheck: dict[str, Any] | None = None  # Config.Healthcheck as sent (checked)
    health_on_failure: str = "none"  # the org.orchestr.health.on-failure label
    raw: dict[str, Any] = field(default_factory=dict)  # the body as sent (for inspect)


def _strs(value: object, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SpecError(f"{where}: expected a list of strings")


def _int(value: object, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}: expected an integer")
    return value


def parse_size(text: str, where: str) -> int:
    """Docker's RAMInBytes: 100m, 1g, 512k, 1024 (binary units)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?", text.strip().lower())
    if m is None:
        raise SpecError(f"{where}: invalid size {text!r}")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
    return int(float(m.group(1)) * scale[m.group(2)])


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise SpecError(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.lstrip("/")


def _unsupported(host: dict[str, Any]) -> None:
    """Options Docker has and orchestr does not yet: refused when they ask for anything."""
    refused = {
        "Privileged": "privileged containers",
        "Devices": "device mappings",
        "Links": "links",
        "VolumesFrom": "volumes-from",
        "Sysctls": "sysctls",
        "DeviceRequests": "device requests (GPUs)",
        "IpcMode": "ipc modes",
        "PidMode": "pid modes",
        "UsernsMode": "user namespace modes",
        "Runtime": "other runtimes",
        "DnsSearch": "DNS settings",
        "DnsOptions": "DNS settings",
        "CpusetCpus": "cpuset",
        "CpusetMems": "cpuset",
        "BlkioWeight": "block I/O limits",
        "GroupAdd": "supplementary groups",
        "OomKillDisable": "oom-kill-disable",
    }
    for key, what in refused.items():
        value = host.get(key)
        if key in ("IpcMode", "PidMode") and value in (None, "", "private", "shareable"):
            continue
        if key == "Runtime" and value in (None, "", "orchestr", "runc"):
            continue
        if value not in (None, "", False, 0, [], {}):
            raise SpecError(f"HostConfig.{key}: {what} are not supported yet")


def _mounts(host: dict[str, Any], config: dict[str, Any]) -> list[Mount]:
    out: list[Mount] = []
    for i, bind in enumerate(_strs(host.get("Binds"), "HostConfig.Binds") or []):
        parts = bind.split(":")
        if len(parts) < 2 or len(parts) > 3:
            raise SpecError(f"HostConfig.Binds[{i}]: {bind!r} is not SRC:DEST[:OPTIONS]")
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) == 3 else []
        for option in options:
            if option not in ("ro", "rw", "z", "Z", "private", "rprivate", "shared", "slave"):
                raise SpecError(f"HostConfig.Binds[{i}]: unknown option {option!r}")
        if not target.startswith("/"):
            raise SpecError(f"HostConfig.Binds[{i}]: {target!r} is not an absolute path")
        kind = "bind" if source.startswith("/") else "volume"
        if kind == "volume" and not _NAME.match(source):
            raise SpecError(f"HostConfig.Binds[{i}]: {source!r} is not a volume name")
        out.append(Mount(kind, target, source, read_only="ro" in options))
    for i, m in enumerate(host.get("Mounts") or []):
        if not isinstance(m, dict):
            raise SpecError(f"HostConfig.Mounts[{i}]: expected an object")
        kind = m.get("Type") or "volume"
        target = m.get("Target") or ""
        if not isinstance(target, str) or not target.startswith("/"):
            raise SpecError(f"HostConfig.Mounts[{i}].Target: an absolute path is required")
        if kind not in ("bind", "volume", "tmpfs"):
            raise SpecError(f"HostConfig.Mounts[{i}].Type: {kind} mounts are not supported yet")
        tmpfs_options: list[str] = []
        if kind == "tmpfs":
            tmpfs = m.get("TmpfsOptions") or {}
            if tmpfs.get("SizeBytes"):
                tmpfs_options.append(f"size={int(tmpfs['SizeBytes'])}")
            if tmpfs.get("Mode"):
                tmpfs_options.append(f"mode={int(tmpfs['Mode']):o}")
        source = m.get("Source") or ""
        if kind == "bind" and not str(source).startswith("/"):
            raise SpecError(f"HostConfig.Mounts[{i}].Source: an absolute host path is required")
        out.append(Mount(kind, target, str(source), bool(m.get("ReadOnly")), tuple(tmpfs_options)))
    tmpfs = host.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise SpecError("HostConfig.Tmpfs: expected an object")
    for target, opts in tmpfs.items():
        out.append(Mount("tmpfs", target, "", False, tuple(o for o in str(opts).split(",") if o)))
    targets = [m.target.rstrip("/") or "/" for m in out]
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        raise SpecError(f"Duplicate mount point: {dupes[0]}")
    return out


def _caps(values: object, where: str) -> tuple[str, ...]:
    out = []
    for cap in _strs(values, where) or []:
        upper = cap.upper()
        if upper != "ALL" and not _CAP.match(upper):
            raise SpecError(f"{where}: invalid capability {cap!r}")
        out.append(upper if upper == "ALL" or upper.startswith("CAP_") else "CAP_" + upper)
    return tuple(out)


def _ulimits(values: object) -> tuple[Ulimit, ...]:
    """HostConfig.Ulimits [{Name, Soft, Hard}], with go-units' checks and messages."""
    if values is None:
        return ()
    if not isinstance(values, list):
        raise SpecError("HostConfig.Ulimits: expected a list")
    out: list[Ulimit] = []
    for i, u in enumerate(values):
        if not isinstance(u, dict):
            raise SpecError(f"HostConfig.Ulimits[{i}]: expected an object")
        name = u.get("Name")
        if not isinstance(name, str) or name not in ULIMITS:
            raise SpecError(f"invalid ulimit type: {name}")
        soft = _int(u.get("Soft"), f"HostConfig.Ulimits[{i}].Soft")
        hard = _int(u.get("Hard"), f"HostConfig.Ulimits[{i}].Hard")
        if soft > hard:
            raise SpecError(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )
        if soft < 0:
            raise SpecError(f"invalid ulimit argument: {name}={soft}:{hard}")
        if any(o.name == name for o in out):
            raise SpecError(f"HostConfig.Ulimits: {name} is given twice")
        out.append(Ulimit(name, soft, hard))
    return tuple(out)


def _health(body: dict[str, Any], labels: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    from agent.health import ON_FAILURE_ACTIONS, ON_FAILURE_LABEL, HealthConfigError, check

    try:
        healthcheck = check(body.get("Healthcheck"))
    except HealthConfigError as e:
        raise SpecError(str(e)) from None
    action = labels.get(ON_FAILURE_LABEL, "none") or "none"
    if action not in ON_FAILURE_ACTIONS:
        raise SpecError(
            f"invalid value {action!r} for label {ON_FAILURE_LABEL}: "
            f"must be one of {', '.join(ON_FAILURE_ACTIONS)}"
        )
    return healthcheck, action


def parse_create(body: object) -> ContainerSpec:
    """Docker's POST /containers/create body -> ContainerSpec (SpecError if refused)."""
    if not isinstance(body, dict):
        raise SpecError("the body must be a JSON object")
    image = body.get("Image")
    if not isinstance(image, str) or not image:
        raise SpecError("Config.Image: an image is required")
    host = body.get("HostConfig") or {}
    if not isinstance(host, dict):
        raise SpecError("HostConfig: expected an object")
    _unsupported(host)
    restart = host.get("RestartPolicy") or {}
    name = restart.get("Name") or "no"
    if name not in _RESTART:
        raise SpecError(f"HostConfig.RestartPolicy.Name: invalid restart policy {name!r}")
    retries = _int(restart.get("MaximumRetryCount"), "HostConfig.RestartPolicy.MaximumRetryCount")
    if retries and name != "on-failure":
        raise SpecError(f"maximum retry count cannot be used with restart policy '{name}'")
    auto_remove = bool(host.get("AutoRemove"))
    if auto_remove and name not in ("", "no"):
        raise SpecError("can't create 'AutoRemove' container with restart policy")
    network = host.get("NetworkMode") or "default"
    if not isinstance(network, str):
        raise SpecError("HostConfig.NetworkMode: expected a string")
    if network.startswith("container:") and not network.partition(":")[2]:
        raise SpecError("HostConfig.NetworkMode: container: needs a container name or ID")
    bindings = host.get("PortBindings") or {}
    if not isinstance(bindings, dict) or not all(
        isinstance(v, list | None) for v in bindings.values()
    ):
        raise SpecError("HostConfig.PortBindings: expected an object of lists")
    networking = body.get("NetworkingConfig") or {}
    endpoints = (networking.get("EndpointsConfig") if isinstance(networking, dict) else None) or {}
    if not isinstance(endpoints, dict) or not all(
        isinstance(v, dict | None) for v in endpoints.values()
    ):
        raise SpecError("NetworkingConfig.EndpointsConfig: expected an object of objects")
    if network.startswith("container:") and any(bindings.values()):
        raise SpecError("conflicting options: port publishing and the container type network mode")
    log = host.get("LogConfig") or {}
    log_type = log.get("Type") or "json-file"
    if log_type not in ("json-file", "local"):
        raise SpecError(f"HostConfig.LogConfig.Type: the {log_type} log driver is not supported")
    log_opts = log.get("Config") or {}
    max_size = parse_size(log_opts["max-size"], "max-size") if "max-size" in log_opts else None
    max_files = int(log_opts.get("max-file", "1") or 1)
    if max_files < 1:
        raise SpecError("max-file: must be at least 1")
    seccomp = True
    no_new_privileges = False
    for opt in _strs(host.get("SecurityOpt"), "HostConfig.SecurityOpt") or []:
        key, _, value = opt.replace("=", ":", 1).partition(":")
        if key == "seccomp" and value == "unconfined":
            seccomp = False
        elif key == "no-new-privileges" and value in ("", "true"):
            no_new_privileges = True
        elif key == "no-new-privileges" and value == "false":
            pass
        else:
            raise SpecError(f"HostConfig.SecurityOpt: {opt!r} is not supported yet")
    stop_timeout = body.get("StopTimeout")
    labels = {str(k): str(v) for k, v in (body.get("Labels") or {}).items()}
    healthcheck, on_failure = _health(body, labels)
    init = host.get("Init")
    if init is not None and not isinstance(init, bool):
        raise SpecError("HostConfig.Init: expected a boolean")
    return ContainerSpec(
        image=image,
        cmd=_strs(body.get("Cmd"), "Config.Cmd"),
        entrypoint=_strs(body.get("Entrypoint"), "Config.Entrypoint"),
        env=_strs(body.get("Env"), "Config.Env") or [],
        working_dir=body.get("WorkingDir") or "",
        user=body.get("User") or "",
        hostname=body.get("Hostname") or "",
        labels=labels,
        tty=bool(body.get("Tty")),
        open_stdin=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")),
        stop_signal=body.get("StopSignal") or "",
        stop_timeout=stop_timeout if isinstance(stop_timeout, int) else None,
        exposed_ports=dict(body.get("ExposedPorts") or {}),
        volumes=dict(body.get("Volumes") or {}),
        restart=RestartPolicy("no" if name == "" else name, retries),
        auto_remove=auto_remove,
        network_mode=network,
        port_bindings={str(k): v for k, v in bindings.items() if v},
        publish_all=bool(host.get("PublishAllPorts")),
        dns=tuple(_strs(host.get("Dns"), "HostConfig.Dns") or ()),
        extra_hosts=tuple(_strs(host.get("ExtraHosts"), "HostConfig.ExtraHosts") or ()),
        endpoints={str(k): dict(v or {}) for k, v in endpoints.items()},
        readonly_rootfs=bool(host.get("ReadonlyRootfs")),
        mounts=tuple(_mounts(host, body)),
        memory=_int(host.get("Memory"), "HostConfig.Memory"),
        memory_swap=_int(host.get("MemorySwap"), "HostConfig.MemorySwap"),
        nano_cpus=_int(host.get("NanoCpus"), "HostConfig.NanoCpus"),
        cpu_shares=_int(host.get("CpuShares"), "HostConfig.CpuShares"),
        cpu_quota=_int(host.get("CpuQuota"), "HostConfig.CpuQuota"),
        cpu_period=_int(host.get("CpuPeriod"), "HostConfig.CpuPeriod"),
        pids_limit=_int(host.get("PidsLimit"), "HostConfig.PidsLimit"),
        cap_add=_caps(host.get("CapAdd"), "HostConfig.CapAdd"),
        cap_drop=_caps(host.get("CapDrop"), "HostConfig.CapDrop"),
        seccomp=seccomp,
        no_new_privileges=no_new_privileges,
        log_max_size=max_size,
        log_max_files=max_files,
        init=bool(init),
        ulimits=_ulimits(host.get("Ulimits")),
        healthcheck=healthcheck,
        health_on_failure=on_failure,
        raw=body,
    )


def capabilities(spec: ContainerSpec) -> list[str]:
    """Docker's default set with CapAdd and CapDrop applied (ALL works both ways)."""
    from agent.runtime.linux.caps import CAPABILITIES

    everything = sorted(CAPABILITIES)
    caps = list(DOCKER_DEFAULT_CAPS)
    if "ALL" in spec.cap_add:
        caps = list(everything)
    else:
        caps += [c for c in spec.cap_add if c not in caps]
    if "ALL" in spec.cap_drop:
        caps = [c for c in caps if c in spec.cap_add]
    else:
        caps = [c for c in caps if c not in spec.cap_drop]
    return caps


def oci_config(
    spec: ContainerSpec,
    image_config: dict[str, Any],
    rootfs: str,
    *,
    hostname: str,
    mounts: list[dict[str, Any]],
    cgroups_path: str,
    endpoint: Endpoint | None = None,
    init_binary: str = INIT_BINARY,
) -> dict[str, Any]:
    """The bundle's config.json: the image config under the spec, Docker's defaults,
    and the network its driver described (`endpoint`; default: the spec's mode's).
    `--init` runs `init_binary` (bind-mounted read-only) as /sbin/docker-init -- ARGV."""
    endpoint = endpoint or driver_for(spec.network_mode).endpoint("", hostname)
    overrides = Overrides(
        cmd=spec.cmd,
        entrypoint=spec.entrypoint,
        env=[*spec.env, f"HOSTNAME={hostname}"],
        working_dir=spec.working_dir or None,
        user=spec.user or None,
        hostname=hostname,
        tty=spec.tty,
        readonly_rootfs=spec.readonly_rootfs,
    )
    config: dict[str, Any] = runtime_config(image_config, overrides, rootfs, root_path=rootfs)
    caps = capabilities(spec)
    opts: list[so.SpecOpt] = [so.with_capabilities(caps), so.with_cgroups_path(cgroups_path)]
    if endpoint.namespace == "host":
        opts.append(so.without_namespace("network"))
    elif endpoint.namespace != "new":
        opts.append(so.with_namespace("network", endpoint.namespace))
    if endpoint.share_uts:
        opts.append(so.without_namespace("uts"))
    if spec.memory:
        swap = spec.memory_swap if spec.memory_swap else spec.memory * 2
        opts.append(so.with_memory_limit(spec.memory, None if swap < 0 else swap))
    if spec.pids_limit > 0:
        opts.append(so.with_pids_limit(spec.pids_limit))
    if spec.nano_cpus or spec.cpu_shares or spec.cpu_quota:
        period = spec.cpu_period or 100_000
        quota = spec.cpu_quota or (spec.nano_cpus * period // 1_000_000_000 or None)
        opts.append(
            so.with_cpu(
                shares=spec.cpu_shares or None,
                quota=quota,
                period=period if quota else None,
            )
        )
    for m in mounts:
        opts.append(so.with_mount(m["destination"], m["type"], m["source"], m.get("options")))
    if spec.init:
        opts.append(so.with_mount(INIT_IN_CONTAINER, "bind", init_binary, ["bind", "ro"]))
    config = dict(so.build(config, *opts))
    process: dict[str, Any] = config["process"]
    process["noNewPrivileges"] = spec.no_new_privileges
    if spec.init:
        process["args"] = [INIT_IN_CONTAINER, "--", *process.get("args", [])]
    if spec.ulimits:
        process["rlimits"] = [
            {"type": "RLIMIT_" + u.name.upper(), "soft": u.soft, "hard": u.hard}
            for u in spec.ulimits
        ]
    if endpoint.share_uts:
        config.pop("hostname", None)
    if spec.seccomp:
        from agent.runtime.linux.seccomp_default import default_profile

        linux: dict[str, Any] = config["linux"]
        linux["seccomp"] = default_profile(caps)
    return config

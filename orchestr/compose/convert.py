"""A Compose service as Docker Engine API objects (pure: no daemon is asked anything).

Names and labels are Docker Compose v2's, so `docker ps` and Compose itself recognise what
orchestr made: containers `<project>-<service>-<n>`, networks and volumes
`<project>_<key>` (or their `name:`), labels `com.docker.compose.*`.

`config_hash(service, files)` is the drift detector: a digest of the service's normalised
definition (without what does not change a container: scale, replicas, build, profiles,
pull policy) and of the content of the secrets and configs it mounts. `up` recreates a
container only when its label differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from orchestr.errors import NotSupportedError, OrchestrError
from orchestr.stack.model import Project, Resource, Service, ServiceFile
from orchestr.stack.units import parse_duration

__all__ = [
    "LABEL_CONFIG_HASH",
    "LABEL_NUMBER",
    "LABEL_ONEOFF",
    "LABEL_PROJECT",
    "LABEL_SERVICE",
    "config_hash",
    "container_body",
    "container_name",
    "image_of",
    "network_body",
    "secret_mounts",
    "volume_body",
]

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_DEPENDS_ON = "com.docker.compose.depends_on"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"
LABEL_VERSION = "com.docker.compose.version"
LABEL_HEALTH_ON_FAILURE = "org.orchestr.health.on-failure"
COMPOSE_VERSION = "2.30.0"  # what `docker compose` would write; orchestr speaks its format

# Service attributes `up` acts on; any other attribute in a service is refused by name.
SUPPORTED = {
    "name", "image", "build", "command", "entrypoint", "environment", "labels", "ports",
    "expose", "volumes", "tmpfs", "depends_on", "networks", "network_mode", "healthcheck",
    "restart", "container_name", "hostname", "domainname", "extra_hosts", "dns", "init",
    "user", "working_dir", "stop_grace_period", "stop_signal", "read_only", "cap_add",
    "cap_drop", "ulimits", "mem_limit", "cpus", "pids_limit", "tty", "stdin_open",
    "security_opt", "secrets", "configs", "profiles", "scale", "deploy", "pull_policy",
    "platform", "logging", "x-orchestr", "annotations",
}  # fmt: skip
_IGNORED_DEPLOY = {"mode", "replicas", "update_config", "rollback_config", "placement",
                   "endpoint_mode", "labels", "restart_policy", "resources"}  # fmt: skip


def container_name(project: str, service: Service, number: int) -> str:
    if service.container_name:
        return service.container_name
    return f"{project}-{service.name}-{number}"


def image_of(project: str, service: Service) -> str:
    """The image a service runs: its `image`, else the one `build` makes."""
    return service.image or f"{project}-{service.name}"


def unsupported(service: Service) -> list[str]:
    """The service's attributes that orchestr does not run yet (names, sorted); an
    attribute set to nothing (false, empty) asks for nothing and passes."""
    values = {
        **service.model_dump(exclude_unset=True, by_alias=True),
        **(service.model_extra or {}),
    }
    return sorted(
        name
        for name, value in values.items()
        if (name not in SUPPORTED or name == "links")
        and not name.startswith("x-")
        and value not in (None, False, [], {}, "")
    )


def config_hash(service: Service, files: Mapping[str, bytes] | None = None) -> str:
    """The digest of what makes a container of this service what it is."""
    doc = service.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    for key in ("scale", "build", "profiles", "pull_policy", "depends_on"):
        doc.pop(key, None)
    if isinstance(doc.get("deploy"), dict):
        doc["deploy"] = {k: v for k, v in doc["deploy"].items() if k != "replicas"}
    doc["files"] = {k: hashlib.sha256(v).hexdigest() for k, v in sorted((files or {}).items())}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _secret_target(kind: str, ref: ServiceFile) -> str:
    target = ref.target or ref.source
    if kind == "secrets":
        return target if target.startswith("/") else f"/run/secrets/{target}"
    return target if target.startswith("/") else f"/{target}"


def secret_mounts(project: Project, service: Service) -> list[tuple[str, str, str]]:
    """(host file, container path, what) for each secret and config the service mounts."""
    out = []
    for kind in ("secrets", "configs"):
        declared: dict[str, Resource] = getattr(project, kind)
        for ref in getattr(service, kind):
            resource = declared[ref.source]
            what = f"{kind[:-1]} {ref.source!r}"
            if resource.external:
                raise NotSupportedError(f"external {what}s need the cluster stage (swarm)")
            if resource.file is None:
                raise NotSupportedError(
                    f"{what}: only file-based {kind} are supported yet (not environment: or"
                    " content:)"
                )
            out.append((resource.file, _secret_target(kind, ref), what))
    return out


def _labels(project: Project, service: Service, number: int, digest: str) -> dict[str, str]:
    labels = dict(service.labels)
    depends = ",".join(
        f"{name}:{dep.condition}:{str(dep.restart).lower()}"
        for name, dep in sorted(service.depends_on.items())
    )
    labels.update(
        {
            LABEL_PROJECT: project.name,
            LABEL_SERVICE: service.name,
            LABEL_NUMBER: str(number),
            LABEL_ONEOFF: "False",
            LABEL_CONFIG_HASH: digest,
            LABEL_WORKING_DIR: project.working_dir,
            LABEL_DEPENDS_ON: depends,
            LABEL_VERSION: COMPOSE_VERSION,
        }
    )
    policy = (service.x_orchestr or {}).get("health_on_failure")
    if policy:
        labels[LABEL_HEALTH_ON_FAILURE] = str(policy)
    return labels


def _restart(policy: str | None) -> dict[str, Any]:
    if not policy or policy == "no":
        return {"Name": "no"}
    name, _, count = policy.partition(":")
    out: dict[str, Any] = {"Name": name}
    if count:
        out["MaximumRetryCount"] = int(count)
    return out


def _ports(service: Service) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in service.ports:
        if port.mode != "ingress" and port.mode != "host":
            raise NotSupportedError(f"port mode {port.mode!r}")
        key = f"{port.target}/{port.protocol}"
        exposed[key] = {}
        bindings.setdefault(key, []).append(
            {"HostIp": port.host_ip or "", "HostPort": port.published or ""}
        )
    for item in service.expose:
        number, _, proto = item.partition("/")
        exposed.setdefault(f"{number}/{proto or 'tcp'}", {})
    return exposed, bindings


def _mounts(project: Project, service: Service) -> tuple[list[str], list[dict[str, Any]]]:
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    for volume in service.volumes:
        if volume.type == "bind":
            create = (volume.bind or {}).get("create_host_path", False)
            if create:
                binds.append(
                    f"{volume.source}:{volume.target}" + (":ro" if volume.read_only else "")
                )
            else:
                mounts.append(
                    {"Type": "bind", "Source": volume.source, "Target": volume.target,
                     "ReadOnly": volume.read_only}
                )  # fmt: skip
        elif volume.type == "volume":
            mount: dict[str, Any] = {"Type": "volume", "Target": volume.target,
                                     "ReadOnly": volume.read_only}  # fmt: skip
            if volume.source:
                mount["Source"] = project.volumes[volume.source].name
            mounts.append(mount)
        elif volume.type == "tmpfs":
            options = volume.tmpfs or {}
            mount = {"Type": "tmpfs", "Target": volume.target}
            if options:
                mount["TmpfsOptions"] = {
                    k: v
                    for k, v in (("SizeBytes", options.get("size")), ("Mode", options.get("mode")))
                    if v is not None
                }
            mounts.append(mount)
        else:
            raise NotSupportedError(f"{volume.type} volumes")
    for host, target, _what in secret_mounts(project, service):
        binds.append(f"{host}:{target}:ro")
    return binds, mounts


def container_body(
    project: Project,
    service: Service,
    number: int,
    digest: str,
    *,
    network_mode: str | None = None,
) -> dict[str, Any]:
    """POST /containers/create body for container `number` of `service`.

    `network_mode` is the resolved mode when the service's is `service:x` (the daemon
    knows containers, not services); the first of the service's networks is joined at
    create, the others by /networks/{id}/connect before start (`extra_networks`).
    """
    missing = unsupported(service)
    if missing:
        raise NotSupportedError(f"service {service.name!r}: {', '.join(missing)} not supported yet")
    name = container_name(project.name, service, number)
    exposed, bindings = _ports(service)
    binds, mounts = _mounts(project, service)
    limits = ((service.deploy or {}).get("resources") or {}).get("limits") or {}
    memory = service.mem_limit or limits.get("memory")
    cpus = service.cpus or (float(limits["cpus"]) if limits.get("cpus") else None)
    pids = service.pids_limit or limits.get("pids")
    host: dict[str, Any] = {
        "Binds": binds,
        "Mounts": mounts,
        "PortBindings": bindings,
        "RestartPolicy": _restart(service.restart),
        "NetworkMode": network_mode or service.network_mode or "",
        "ExtraHosts": [h.replace("=", ":", 1) for h in service.extra_hosts],
        "Dns": service.dns,
        "ReadonlyRootfs": service.read_only,
        "CapAdd": service.cap_add,
        "CapDrop": service.cap_drop,
        "SecurityOpt": service.security_opt,
        "Tmpfs": {
            t.split(":", 1)[0]: t.split(":", 1)[1] if ":" in t else "" for t in service.tmpfs
        },
        "Ulimits": [
            {"Name": n, "Soft": v.get("soft", 0), "Hard": v.get("hard", 0)}
            for n, v in sorted(service.ulimits.items())
        ],
    }
    if service.init is not None:
        host["Init"] = service.init
    if memory:
        host["Memory"] = int(memory)
    if cpus:
        host["NanoCpus"] = int(cpus * 1e9)
    if pids:
        host["PidsLimit"] = int(pids)
    if service.logging:
        host["LogConfig"] = {
            "Type": service.logging.get("driver") or "json-file",
            "Config": service.logging.get("options") or {},
        }
    body: dict[str, Any] = {
        "Image": image_of(project.name, service),
        "Env": [f"{k}={v}" for k, v in service.environment.items() if v is not None],
        "Labels": _labels(project, service, number, digest),
        "ExposedPorts": exposed,
        "Tty": service.tty,
        "OpenStdin": service.stdin_open,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": host,
    }
    if service.command is not None:
        body["Cmd"] = service.command
    if service.entrypoint is not None:
        body["Entrypoint"] = service.entrypoint
    for key, value in (
        ("Hostname", service.hostname),
        ("Domainname", service.domainname),
        ("User", service.user),
        ("WorkingDir", service.working_dir),
        ("StopSignal", service.stop_signal),
    ):
        if value:
            body[key] = value
    if service.stop_grace_period is not None:
        body["StopTimeout"] = parse_duration(service.stop_grace_period) // 1_000_000_000
    if service.healthcheck is not None:
        body["Healthcheck"] = service.healthcheck.engine()
    networks = service_networks(project, service)
    if networks and not (network_mode or service.network_mode):
        first_key, first_name = networks[0]
        host["NetworkMode"] = first_name
        body["NetworkingConfig"] = {
            "EndpointsConfig": {first_name: endpoint_config(service, first_key, name)}
        }
    return body


def service_networks(project: Project, service: Service) -> list[tuple[str, str]]:
    """(key, engine name) of the networks a service joins, highest priority first."""
    if service.network_mode:
        return []
    keys = sorted(
        service.networks,
        key=lambda k: (-((service.networks[k] or _NO_ATTACHMENT).priority), k),
    )
    return [(k, project.networks[k].name) for k in keys]


class _NoAttachment:
    priority = 0
    aliases: list[str] = []
    ipv4_address = None
    ipv6_address = None


_NO_ATTACHMENT = _NoAttachment()


def endpoint_config(service: Service, key: str, container: str) -> dict[str, Any]:
    """EndpointSettings for joining network `key`: aliases (the service's name) and IPs."""
    attachment = service.networks.get(key) or _NO_ATTACHMENT
    config: dict[str, Any] = {"Aliases": [service.name, *attachment.aliases]}
    ipam = {}
    if attachment.ipv4_address:
        ipam["IPv4Address"] = attachment.ipv4_address
    if attachment.ipv6_address:
        ipam["IPv6Address"] = attachment.ipv6_address
    if ipam:
        config["IPAMConfig"] = ipam
    return config


def network_body(project: Project, key: str, network: Resource) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Name": network.name,
        "Driver": network.driver or "bridge",
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Options": network.driver_opts,
        "Labels": {
            **network.labels,
            LABEL_PROJECT: project.name,
            LABEL_NETWORK: key,
            LABEL_VERSION: COMPOSE_VERSION,
        },
        "CheckDuplicate": True,
    }
    if network.enable_ipv6 is not None:
        body["EnableIPv6"] = network.enable_ipv6
    if network.ipam:
        body["IPAM"] = {
            "Driver": network.ipam.get("driver") or "default",
            "Config": [
                {
                    out: item[src]
                    for src, out in (
                        ("subnet", "Subnet"),
                        ("ip_range", "IPRange"),
                        ("gateway", "Gateway"),
                        ("aux_addresses", "AuxiliaryAddresses"),
                    )
                    if src in item
                }
                for item in network.ipam.get("config") or []
            ],
            "Options": network.ipam.get("options") or {},
        }
    return body


def volume_body(project: Project, key: str, volume: Resource) -> dict[str, Any]:
    return {
        "Name": volume.name,
        "Driver": volume.driver or "local",
        "DriverOpts": volume.driver_opts,
        "Labels": {
            **volume.labels,
            LABEL_PROJECT: project.name,
            LABEL_VOLUME: key,
            LABEL_VERSION: COMPOSE_VERSION,
        },
    }


def file_contents(project: Project, service: Service) -> dict[str, bytes]:
    """The secrets and configs a service mounts, by container path (for the config hash)."""
    out = {}
    for host, target, what in secret_mounts(project, service):
        try:
            with open(host, "rb") as f:
                out[target] = f.read()
        except OSError as exc:
            raise OrchestrError(f"{what}: cannot read {host}: {exc.strerror}") from None
    return out

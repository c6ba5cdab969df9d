"""A Compose project as Swarm objects, as `docker stack deploy` makes them (pure).

The cluster stage's converter: the loaded `Project` in, Docker Engine API v1.41 bodies out
(`POST /services/create`, `/networks/create`, `/secrets/create`, `/configs/create`), with
the names and labels docker/cli's `cli/compose/convert` gives them, so that `docker stack
ps`/`docker service ls` and orchestr agree about what belongs to which stack:

- everything a stack creates is named `<project>_<key>` (or its `name:`) and labelled
  `com.docker.stack.namespace=<project>`; services also carry `com.docker.stack.image`;
- a field docker/cli leaves out is left out here too; what Swarm then applies by itself is
  filled in by `with_defaults`, which the daemon runs on every spec it stores;
- what Swarm cannot do is ignored with a warning (`warnings`), as docker/cli does, and
  what is wrong (or would silently change the meaning of the file) is refused with a
  `StackError` naming the service and the field.

docs/design/deploy.md has the mapping table and the deviations from docker/cli.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from orchestr.stack.errors import PathPart, StackError
from orchestr.stack.model import Project, Resource, Service, ServiceFile, VolumeMount
from orchestr.stack.units import UnitError, parse_bytes, parse_duration

__all__ = [
    "DEFAULT_NETWORK_DRIVER",
    "LABEL_IMAGE",
    "LABEL_NAMESPACE",
    "StackSpecs",
    "config_specs",
    "external_networks",
    "network_specs",
    "restart_policy",
    "secret_specs",
    "service_dependencies",
    "service_spec",
    "service_specs",
    "stack_specs",
    "warnings",
    "with_defaults",
]

LABEL_NAMESPACE = "com.docker.stack.namespace"
LABEL_IMAGE = "com.docker.stack.image"
DEFAULT_NETWORK = "default"
DEFAULT_NETWORK_DRIVER = "overlay"
SECOND = 1_000_000_000
FILE_MODE = 0o444

# Service attributes the converter turns into ServiceSpec fields.
HANDLED = {
    "name", "image", "command", "entrypoint", "environment", "labels", "ports", "volumes",
    "tmpfs", "depends_on", "networks", "healthcheck", "restart", "hostname", "extra_hosts",
    "dns", "dns_search", "dns_opt", "init", "user", "working_dir", "stop_grace_period",
    "stop_signal", "read_only", "cap_add", "cap_drop", "ulimits", "sysctls", "tty",
    "stdin_open", "secrets", "configs", "deploy", "logging", "group_add", "isolation",
    "mem_limit", "mem_reservation", "cpus", "pids_limit", "scale", "profiles",
}  # fmt: skip
# Refused, as docker/cli refuses them ("forbidden properties"), with its advice.
FORBIDDEN = {
    "volumes_from": "share a volume by declaring it under the top-level volumes",
    "volume_driver": "set the driver on the top-level volume",
    "cpu_quota": "use deploy.resources",
    "cpu_shares": "use deploy.resources",
    "cpuset": "use deploy.resources",
    "memswap_limit": "use deploy.resources",
}
_DEPLOY_KEYS = {
    "mode",
    "replicas",
    "endpoint_mode",
    "labels",
    "placement",
    "resources",
    "restart_policy",
    "update_config",
    "rollback_config",
}
_NOT_USER_DEFINED = {"default", "bridge", "host", "none"}
_RESTART_CONDITIONS = ("none", "on-failure", "any")
_UPDATE_ACTIONS = ("continue", "pause", "rollback")
_ROLLBACK_ACTIONS = ("continue", "pause")
_ORDERS = ("stop-first", "start-first")
_MODES = ("replicated", "global", "replicated-job", "global-job")

Spec = dict[str, Any]
Where = tuple[PathPart, ...]


# -- the whole stack ----------------------------------------------------------------------


@dataclass(frozen=True)
class StackSpecs:
    """Everything `stack deploy` sends for a project, in creation order."""

    networks: list[Spec]
    external_networks: list[str]
    secrets: list[Spec]
    configs: list[Spec]
    services: list[Spec]
    dependencies: dict[str, dict[str, str]]
    warnings: list[str] = field(default_factory=list)


def stack_specs(
    project: Project,
    *,
    environ: Mapping[str, str] | None = None,
    read: Callable[[str], bytes] | None = None,
) -> StackSpecs:
    """All of a project's Swarm objects; `environ` and `read` feed secrets and configs
    (`environment:` and `file:` sources)."""
    notes: list[str] = []
    services = [service_spec(project, s, notes) for s in project.services.values()]
    return StackSpecs(
        networks=network_specs(project),
        external_networks=external_networks(project),
        secrets=secret_specs(project, environ=environ, read=read),
        configs=config_specs(project, environ=environ, read=read),
        services=services,
        dependencies=service_dependencies(project),
        warnings=notes,
    )


def scoped(project: Project, name: str) -> str:
    """`<project>_<name>`, docker/cli's `Namespace.Scope`."""
    return f"{project.name}_{name}"


def _stack_labels(project: Project, labels: Mapping[str, str | None]) -> dict[str, str]:
    out = {k: v or "" for k, v in labels.items()}
    out[LABEL_NAMESPACE] = project.name
    return out


# -- services -----------------------------------------------------------------------------


def service_specs(project: Project) -> list[Spec]:
    """One ServiceSpec per service of the project, in the project's order."""
    return [service_spec(project, s) for s in project.services.values()]


def warnings(project: Project) -> list[str]:
    """What `service_specs` ignores, one line per service: `service 'web': Ignoring
    unsupported options: build, container_name`."""
    notes: list[str] = []
    for service in project.services.values():
        service_spec(project, service, notes)
    return notes


def service_spec(project: Project, service: Service, notes: list[str] | None = None) -> Spec:
    """The `POST /services/create` body of one service; ignored fields go to `notes`."""
    where: Where = ("services", service.name)
    ignored = _check_attributes(service, where)
    deploy = service.deploy or {}
    ignored += [f"deploy.{k}" for k in sorted(deploy) if k not in _DEPLOY_KEYS]
    if service.restart and deploy.get("restart_policy") is not None:
        ignored.append("restart (deploy.restart_policy is set)")
    template: Spec = {"ContainerSpec": _container_spec(project, service, ignored)}
    resources = _resources(service, (*where, "deploy", "resources"), ignored)
    if resources:
        template["Resources"] = resources
    policy = restart_policy(service)
    if policy is not None:
        template["RestartPolicy"] = policy
    placement = _placement(deploy.get("placement") or {}, (*where, "deploy", "placement"))
    if placement:
        template["Placement"] = placement
    template["Networks"] = _attachments(project, service, ignored)
    if service.logging:
        template["LogDriver"] = _log_driver(service.logging)
    spec: Spec = {
        "Name": scoped(project, service.name),
        "Labels": {
            **_stack_labels(project, deploy.get("labels") or {}),
            LABEL_IMAGE: service.image or "",
        },
        "TaskTemplate": template,
        "Mode": _mode(service, where),
    }
    jobs = "ReplicatedJob" in spec["Mode"] or "GlobalJob" in spec["Mode"]
    for key, name in (("update_config", "UpdateConfig"), ("rollback_config", "RollbackConfig")):
        config = deploy.get(key)
        if config is not None and jobs:
            raise StackError(
                "update and rollback configuration is not supported for jobs",
                path=(*where, "deploy", key),
            )
        if config is not None:
            spec[name] = _update_config(config, (*where, "deploy", key))
    endpoint = _endpoint_spec(service, where)
    if endpoint:
        spec["EndpointSpec"] = endpoint
    if ignored and notes is not None:
        notes.append(
            f"service {service.name!r}: Ignoring unsupported options: " + ", ".join(ignored)
        )
    return spec


def _check_attributes(service: Service, where: Where) -> list[str]:
    """The service's set attributes that are ignored (sorted); refuses the forbidden."""
    values = {
        **service.model_dump(exclude_unset=True, by_alias=True),
        **(service.model_extra or {}),
    }
    ignored: list[str] = []
    for name, value in sorted(values.items()):
        if name.startswith("x-") or value in (None, False, [], {}, ""):
            continue
        if name in FORBIDDEN:
            raise StackError(
                f"not supported by swarm services: {FORBIDDEN[name]}", path=(*where, name)
            )
        if name == "build" and not service.image:
            raise StackError(
                "image is required: swarm services cannot build, build and push the image first",
                path=(*where, "build"),
            )
        if name not in HANDLED:
            ignored.append(name)
    if not service.image:
        raise StackError("image is required", path=(*where, "image"))
    return ignored


def _extra(service: Service, key: str) -> Any:
    return (service.model_extra or {}).get(key)


def _container_spec(project: Project, service: Service, ignored: list[str]) -> Spec:
    where: Where = ("services", service.name)
    spec: Spec = {
        "Image": service.image,
        "Labels": _stack_labels(project, service.labels),
    }
    optional: list[tuple[str, Any]] = [
        ("Command", service.entrypoint),
        ("Args", service.command),
        ("Hostname", service.hostname),
        ("Env", _environment(service.environment)),
        ("Dir", service.working_dir),
        ("User", service.user),
        ("Groups", [str(g) for g in _extra(service, "group_add") or []]),
        ("StopSignal", service.stop_signal),
        ("TTY", service.tty),
        ("OpenStdin", service.stdin_open),
        ("ReadOnly", service.read_only),
        ("Mounts", _mounts(project, service, ignored)),
        ("Hosts", _hosts(service.extra_hosts)),
        ("DNSConfig", _dns_config(service)),
        ("Secrets", _file_refs(project, service, "secrets")),
        ("Configs", _file_refs(project, service, "configs")),
        ("Isolation", _extra(service, "isolation")),
        ("Sysctls", {k: v or "" for k, v in (_extra(service, "sysctls") or {}).items()}),
        ("Ulimits", _ulimits(service.ulimits)),
    ]
    spec.update((k, v) for k, v in optional if v)
    if service.init is not None:
        spec["Init"] = service.init
    if service.stop_grace_period is not None:
        spec["StopGracePeriod"] = _ns(service.stop_grace_period, (*where, "stop_grace_period"))
    if service.healthcheck is not None:
        check = service.healthcheck.engine()
        spec["Healthcheck"] = {k: v for k, v in check.items() if v not in (0, None, [])}
    cap_add, cap_drop = effective_capabilities(service.cap_add, service.cap_drop)
    if cap_add:
        spec["CapabilityAdd"] = cap_add
    if cap_drop:
        spec["CapabilityDrop"] = cap_drop
    return spec


def _environment(environment: Mapping[str, str | None]) -> list[str]:
    """`K=V`, sorted as strings (docker/cli's order); unset variables are left out."""
    return sorted(f"{k}={v}" for k, v in environment.items() if v is not None)


def _hosts(extra_hosts: Iterable[str]) -> list[str]:
    """The loader's `host=ip` as SwarmKit's `/etc/hosts` form, `IP host`, in order."""
    out = []
    for item in extra_hosts:
        host, _, address = item.partition("=")
        out.append(f"{address} {host}")
    return out


def _dns_config(service: Service) -> Spec:
    out: Spec = {}
    for key, value in (
        ("Nameservers", service.dns),
        ("Search", _extra(service, "dns_search")),
        ("Options", _extra(service, "dns_opt")),
    ):
        if value:
            out[key] = [value] if isinstance(value, str) else list(value)
    return out


def _ulimits(ulimits: Mapping[str, Mapping[str, int]]) -> list[Spec]:
    return [
        {"Name": name, "Soft": int(limit.get("soft", 0)), "Hard": int(limit.get("hard", 0))}
        for name, limit in sorted(ulimits.items())
    ]


def effective_capabilities(add: Iterable[str], drop: Iterable[str]) -> tuple[list[str], list[str]]:
    """docker/cli's `EffectiveCapAddCapDrop`: `CAP_`-prefixed upper case, sorted, without
    duplicates; `ALL` stands alone, and adding wins over dropping."""

    def normal(items: Iterable[str]) -> set[str]:
        out = set()
        for item in items:
            name = item.strip().upper()
            out.add(name if name in ("ALL", "RESET") or name.startswith("CAP_") else f"CAP_{name}")
        return {"ALL"} if "ALL" in out else out - {"RESET"}

    added, dropped = normal(add), normal(drop)
    return sorted(added), sorted(dropped - added)


def _log_driver(logging: Mapping[str, Any]) -> Spec:
    out: Spec = {}
    if logging.get("driver"):
        out["Name"] = logging["driver"]
    if logging.get("options"):
        out["Options"] = dict(logging["options"])
    return out


# -- mounts -------------------------------------------------------------------------------


def _mounts(project: Project, service: Service, ignored: list[str]) -> list[Spec]:
    """Mount objects: the service's volumes, in order, then its `tmpfs` entries."""
    where: Where = ("services", service.name)
    out = [
        _mount(project, volume, (*where, "volumes", i), ignored)
        for i, volume in enumerate(service.volumes)
    ]
    for i, item in enumerate(service.tmpfs):
        out.append(_tmpfs_entry(item, (*where, "tmpfs", i), ignored))
    return out


def _mount(project: Project, volume: VolumeMount, where: Where, ignored: list[str]) -> Spec:
    mount: Spec = {"Type": volume.type, "Target": volume.target}
    if volume.read_only:
        mount["ReadOnly"] = True
    if volume.consistency:
        mount["Consistency"] = volume.consistency
    if volume.type == "volume":
        return _volume_mount(project, volume, mount, where)
    if volume.type == "bind":
        if not volume.source:
            raise StackError("a bind mount needs a source", path=where)
        mount["Source"] = volume.source
        bind = volume.bind or {}
        if bind.get("propagation"):
            mount["BindOptions"] = {"Propagation": bind["propagation"]}
        if bind.get("selinux"):
            ignored.append(f"volumes[{where[-1]}].bind.selinux")
        return mount
    if volume.type == "tmpfs":
        if volume.source:
            raise StackError("a tmpfs mount takes no source", path=where)
        options = _tmpfs_options(volume.tmpfs or {}, (*where, "tmpfs"))
        if options:
            mount["TmpfsOptions"] = options
        return mount
    raise StackError(
        f"{volume.type} mounts are not supported by swarm services (API v1.41)", path=where
    )


def _volume_mount(project: Project, volume: VolumeMount, mount: Spec, where: Where) -> Spec:
    if not volume.source:
        return mount  # anonymous: a new volume per task
    declared = project.volumes.get(volume.source)
    if declared is None:
        raise StackError(f"undefined volume {volume.source!r}", path=where)
    mount["Source"] = declared.name
    options: Spec = {}
    extra = volume.volume or {}
    if extra.get("nocopy"):
        options["NoCopy"] = True
    if extra.get("subpath"):
        options["Subpath"] = extra["subpath"]
    if not declared.external:
        options["Labels"] = _stack_labels(project, declared.labels)
        driver: Spec = {}
        if declared.driver:
            driver["Name"] = declared.driver
        if declared.driver_opts:
            driver["Options"] = dict(declared.driver_opts)
        if driver:
            options["DriverConfig"] = driver
    mount["VolumeOptions"] = options
    return mount


def _tmpfs_options(options: Mapping[str, Any], where: Where) -> Spec:
    out: Spec = {}
    if options.get("size") is not None:
        out["SizeBytes"] = _bytes(options["size"], (*where, "size"))
    if options.get("mode") is not None:
        mode = options["mode"]
        out["Mode"] = int(mode, 8) if isinstance(mode, str) else int(mode)
    return out


def _tmpfs_entry(item: str, where: Where, ignored: list[str]) -> Spec:
    """A `tmpfs: /run:size=64m,mode=1777` entry as a tmpfs Mount."""
    target, _, text = item.partition(":")
    mount: Spec = {"Type": "tmpfs", "Target": target}
    options: dict[str, str] = {}
    for option in filter(None, text.split(",")):
        key, _, value = option.partition("=")
        if key in ("size", "mode") and value:
            options[key] = value
        else:
            ignored.append(f"tmpfs[{where[-1]}].{key}")
    parsed = _tmpfs_options(options, where)
    if parsed:
        mount["TmpfsOptions"] = parsed
    return mount


# -- secrets and configs ------------------------------------------------------------------


def _file_refs(project: Project, service: Service, kind: str) -> list[Spec]:
    """SecretReference/ConfigReference objects, sorted by name; the IDs are left for the
    daemon to resolve from the names."""
    declared: dict[str, Resource] = getattr(project, kind)
    noun = "Secret" if kind == "secrets" else "Config"
    refs: list[Spec] = []
    for i, ref in enumerate(getattr(service, kind)):
        resource = declared.get(ref.source)
        if resource is None:
            raise StackError(
                f"undefined {kind[:-1]} {ref.source!r}", path=("services", service.name, kind, i)
            )
        refs.append({"File": _file_target(ref), f"{noun}ID": "", f"{noun}Name": resource.name})
    return sorted(refs, key=lambda r: str(r[f"{noun}Name"]))


def _file_target(ref: ServiceFile) -> Spec:
    return {
        "Name": ref.target or ref.source,
        "UID": ref.uid or "0",
        "GID": ref.gid or "0",
        "Mode": FILE_MODE if ref.mode is None else ref.mode,
    }


def secret_specs(
    project: Project,
    *,
    environ: Mapping[str, str] | None = None,
    read: Callable[[str], bytes] | None = None,
) -> list[Spec]:
    """SecretSpec bodies for the stack's own (not external) secrets, sorted by name."""
    return _object_specs(project, "secrets", environ, read)


def config_specs(
    project: Project,
    *,
    environ: Mapping[str, str] | None = None,
    read: Callable[[str], bytes] | None = None,
) -> list[Spec]:
    """ConfigSpec bodies for the stack's own (not external) configs, sorted by name."""
    return _object_specs(project, "configs", environ, read)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _object_specs(
    project: Project,
    kind: str,
    environ: Mapping[str, str] | None,
    read: Callable[[str], bytes] | None,
) -> list[Spec]:
    out = []
    for key, resource in getattr(project, kind).items():
        if resource.external:
            continue
        extras = resource.model_extra or {}
        spec: Spec = {"Name": resource.name, "Labels": _stack_labels(project, resource.labels)}
        if extras.get("driver") and kind == "secrets":
            spec["Driver"] = {"Name": extras["driver"], **_options(extras.get("driver_opts"))}
        else:
            data = _object_data(resource, (kind, key), environ, read or _read_file)
            spec["Data"] = base64.b64encode(data).decode("ascii")
        if extras.get("template_driver"):
            spec["Templating"] = {"Name": extras["template_driver"]}
        out.append(spec)
    return sorted(out, key=lambda s: str(s["Name"]))


def _options(options: Any) -> Spec:
    return {"Options": dict(options)} if options else {}


def _object_data(
    resource: Resource,
    where: Where,
    environ: Mapping[str, str] | None,
    read: Callable[[str], bytes],
) -> bytes:
    if resource.file is not None:
        try:
            return read(resource.file)
        except OSError as exc:
            raise StackError(f"cannot read {resource.file}: {exc.strerror}", path=where) from None
    if resource.content is not None:
        return resource.content.encode()
    if resource.environment is not None:
        value = (environ if environ is not None else os.environ).get(resource.environment)
        if value is None:
            raise StackError(
                f"environment variable {resource.environment} is not set",
                path=(*where, "environment"),
            )
        return value.encode()
    raise StackError("one of file, environment or content is required", path=where)


# -- networks -----------------------------------------------------------------------------


def _network_keys(service: Service) -> list[str]:
    """The networks a service joins: its own, or the stack's `default` when it names none
    (also with a `network_mode`, which swarm ignores)."""
    return sorted(service.networks) or [DEFAULT_NETWORK]


def _network(project: Project, key: str) -> Resource:
    if key in project.networks:
        return project.networks[key]
    if key == DEFAULT_NETWORK:
        return Resource(name=scoped(project, DEFAULT_NETWORK))
    raise StackError(f"undefined network {key!r}", path=("networks", key))


def _attachments(project: Project, service: Service, ignored: list[str]) -> list[Spec]:
    """NetworkAttachmentConfig objects sorted by target; the service's name is an alias on
    every user-defined network, after the ones it gives."""
    out = []
    for key in _network_keys(service):
        if key not in project.networks and key != DEFAULT_NETWORK:
            raise StackError(
                f"undefined network {key!r}", path=("services", service.name, "networks", key)
            )
        target = _network(project, key).name
        attachment = service.networks.get(key)
        config: Spec = {"Target": target}
        aliases = list(attachment.aliases) if attachment else []
        if target not in _NOT_USER_DEFINED and not target.startswith("container:"):
            aliases.append(service.name)
        if aliases:
            config["Aliases"] = aliases
        extras = (attachment.model_extra or {}) if attachment else {}
        if extras.get("driver_opts"):
            config["DriverOpts"] = {k: str(v) for k, v in extras["driver_opts"].items()}
        if attachment is not None:
            for name in ("ipv4_address", "ipv6_address", "link_local_ips", "mac_address"):
                if getattr(attachment, name, None) or extras.get(name):
                    ignored.append(f"networks.{key}.{name}")
        out.append(config)
    return sorted(out, key=lambda c: str(c["Target"]))


def _used_networks(project: Project) -> list[str]:
    keys = {key for s in project.services.values() for key in _network_keys(s)}
    return sorted(keys)


def network_specs(project: Project) -> list[Spec]:
    """`POST /networks/create` bodies for the networks the services use and the stack
    creates (not the external ones), sorted by name; the driver defaults to `overlay`."""
    out = []
    for key in _used_networks(project):
        network = _network(project, key)
        if not network.external:
            out.append(_network_body(project, network))
    return sorted(out, key=lambda n: str(n["Name"]))


def external_networks(project: Project) -> list[str]:
    """The names of the external networks the services use (they must exist, swarm-wide)."""
    names = {
        _network(project, key).name
        for key in _used_networks(project)
        if _network(project, key).external
    }
    return sorted(names)


def _network_body(project: Project, network: Resource) -> Spec:
    body: Spec = {
        "Name": network.name,
        "CheckDuplicate": True,
        "Driver": network.driver or DEFAULT_NETWORK_DRIVER,
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Options": dict(network.driver_opts),
        "Labels": _stack_labels(project, network.labels),
    }
    if network.enable_ipv6 is not None:
        body["EnableIPv6"] = network.enable_ipv6
    ipam = network.ipam or {}
    if ipam.get("driver") or ipam.get("config"):
        body["IPAM"] = _ipam(ipam)
    return body


def _ipam(ipam: Mapping[str, Any]) -> Spec:
    names = (
        ("subnet", "Subnet"),
        ("ip_range", "IPRange"),
        ("gateway", "Gateway"),
        ("aux_addresses", "AuxiliaryAddresses"),
    )
    out: Spec = {
        "Driver": ipam.get("driver") or "default",
        "Config": [
            {api: item[key] for key, api in names if key in item}
            for item in ipam.get("config") or []
        ],
    }
    if ipam.get("options"):
        out["Options"] = dict(ipam["options"])
    return out


# -- deploy -------------------------------------------------------------------------------


def _replicas(service: Service, where: Where) -> int | None:
    deploy = service.deploy or {}
    replicas = deploy.get("replicas")
    if replicas is not None and service.scale is not None and int(replicas) != service.scale:
        raise StackError("scale and deploy.replicas differ", path=(*where, "scale"))
    if replicas is None:
        return service.scale
    return _int(replicas, (*where, "deploy", "replicas"))


def _mode(service: Service, where: Where) -> Spec:
    """Replicated (Replicas left out when not given: swarm makes it 1), global, or a job."""
    mode = (service.deploy or {}).get("mode") or "replicated"
    replicas = _replicas(service, where)
    if mode not in _MODES:
        raise StackError(
            f"unknown mode {mode!r} (one of {', '.join(_MODES)})", path=(*where, "deploy", "mode")
        )
    if mode.startswith("global"):
        if replicas is not None:
            raise StackError(
                "replicas can only be used with replicated or replicated-job mode",
                path=(*where, "deploy", "replicas"),
            )
        return {"Global": {}} if mode == "global" else {"GlobalJob": {}}
    if mode == "replicated-job":
        job = {} if replicas is None else {"MaxConcurrent": replicas, "TotalCompletions": replicas}
        return {"ReplicatedJob": job}
    return {"Replicated": {} if replicas is None else {"Replicas": replicas}}


def _endpoint_spec(service: Service, where: Where) -> Spec:
    out: Spec = {}
    mode = (service.deploy or {}).get("endpoint_mode")
    if mode:
        mode = str(mode).lower()
        if mode not in ("vip", "dnsrr"):
            raise StackError(
                f"unknown endpoint_mode {mode!r} (vip or dnsrr)",
                path=(*where, "deploy", "endpoint_mode"),
            )
        out["Mode"] = mode
    ports = [_port(service, i, (*where, "ports", i)) for i in range(len(service.ports))]
    if mode == "dnsrr" and any(p.get("PublishMode") == "ingress" for p in ports):
        raise StackError(
            "ports published through the ingress cannot be used with endpoint_mode dnsrr"
            " (use mode: host)",
            path=(*where, "deploy", "endpoint_mode"),
        )
    if ports:
        out["Ports"] = sorted(ports, key=_port_order)
    return out


def _port(service: Service, index: int, where: Where) -> Spec:
    port = service.ports[index]
    if port.host_ip:
        raise StackError(
            f"host_ip {port.host_ip}: swarm publishes ports on every address of the node",
            path=(*where, "host_ip"),
        )
    if port.mode not in ("ingress", "host"):
        raise StackError(
            f"unknown port mode {port.mode!r} (ingress or host)", path=(*where, "mode")
        )
    out: Spec = {"Protocol": port.protocol, "TargetPort": port.target}
    try:
        published = int(port.published or 0)
    except ValueError:
        raise StackError(
            f"published {port.published!r}: swarm publishes single ports, not ranges",
            path=(*where, "published"),
        ) from None
    if published:
        out["PublishedPort"] = published
    out["PublishMode"] = port.mode
    if port.name:
        out["Name"] = port.name
    return out


def _port_order(port: Spec) -> tuple[int, int, str, str]:
    """docker/cli's `PortConfig.Compare`: published, target, protocol, publish mode."""
    return (
        int(port.get("PublishedPort", 0)),
        int(port["TargetPort"]),
        str(port["Protocol"]),
        str(port["PublishMode"]),
    )


def _placement(placement: Mapping[str, Any], where: Where) -> Spec:
    out: Spec = {}
    if placement.get("constraints"):
        out["Constraints"] = list(placement["constraints"])
    preferences = []
    for i, preference in enumerate(placement.get("preferences") or []):
        if set(preference) != {"spread"}:
            raise StackError(
                "only spread preferences are supported", path=(*where, "preferences", i)
            )
        preferences.append({"Spread": {"SpreadDescriptor": preference["spread"]}})
    if preferences:
        out["Preferences"] = preferences
    per_node = placement.get("max_replicas_per_node")
    if per_node:
        out["MaxReplicas"] = _int(per_node, (*where, "max_replicas_per_node"))
    return out


def _resources(service: Service, where: Where, ignored: list[str]) -> Spec:
    """Limits and Reservations; `cpus`, `mem_limit`, `pids_limit` and `mem_reservation` of
    the service stand in for the deploy ones they equal (differing values are refused)."""
    resources = (service.deploy or {}).get("resources") or {}
    limits = dict(resources.get("limits") or {})
    reservations = dict(resources.get("reservations") or {})
    service_where: Where = where[:2]
    for section, key, value, name in (
        (limits, "cpus", service.cpus, "cpus"),
        (limits, "memory", service.mem_limit, "mem_limit"),
        (limits, "pids", service.pids_limit, "pids_limit"),
        (reservations, "memory", _extra(service, "mem_reservation"), "mem_reservation"),
    ):
        if value is None:
            continue
        if section.get(key) is not None and float(section[key]) != float(value):
            raise StackError(f"differs from deploy.resources.*.{key}", path=(*service_where, name))
        section[key] = value
    out: Spec = {}
    if "limits" in resources or limits:
        out["Limits"] = _limit(limits, (*where, "limits"))
    if "reservations" in resources or reservations:
        out["Reservations"] = _reservation(reservations, (*where, "reservations"), ignored)
    return out


def _limit(limits: Mapping[str, Any], where: Where) -> Spec:
    out: Spec = {}
    if limits.get("cpus") is not None:
        out["NanoCPUs"] = nano_cpus(limits["cpus"], (*where, "cpus"))
    if limits.get("memory"):
        out["MemoryBytes"] = _bytes(limits["memory"], (*where, "memory"))
    if limits.get("pids"):
        out["Pids"] = _int(limits["pids"], (*where, "pids"))
    return {k: v for k, v in out.items() if v}


def _reservation(reservations: Mapping[str, Any], where: Where, ignored: list[str]) -> Spec:
    out = _limit({k: v for k, v in reservations.items() if k in ("cpus", "memory")}, where)
    generic = []
    for item in reservations.get("generic_resources") or []:
        discrete = item.get("discrete_resource_spec") or {}
        generic.append(
            {"DiscreteResourceSpec": {"Kind": discrete.get("kind"), "Value": discrete.get("value")}}
        )
    if generic:
        out["GenericResources"] = generic
    if reservations.get("devices"):
        ignored.append("deploy.resources.reservations.devices")
    return out


def nano_cpus(value: Any, where: Where = ()) -> int:
    """`0.5` cores → 500000000, exactly (docker/cli's `ParseCPUs`)."""
    try:
        nanos = Fraction(str(value)) * SECOND
    except (ValueError, ZeroDivisionError):
        raise StackError(f"{value!r} is not a number of CPUs", path=where) from None
    if nanos.denominator != 1:
        raise StackError(f"{value!r}: value is too precise", path=where)
    return int(nanos)


def restart_policy(service: Service) -> Spec | None:
    """The task's RestartPolicy: `deploy.restart_policy`, else the service's `restart`
    (`no` → none, `always`/`unless-stopped` → any, `on-failure[:N]` → on-failure with
    MaxAttempts N), else None (swarm's default applies, see `with_defaults`)."""
    where: Where = ("services", service.name)
    policy = (service.deploy or {}).get("restart_policy")
    if policy is not None:
        return _deploy_restart(policy, (*where, "deploy", "restart_policy"))
    if not service.restart:
        return None
    name, colon, count = service.restart.partition(":")
    attempts = _int(count, (*where, "restart")) if count else 0
    if colon and (not count or attempts < 0):
        raise StackError(
            f"{service.restart!r}: the retry count must be a number ≥ 0", path=(*where, "restart")
        )
    if name == "on-failure":
        return {"Condition": "on-failure", **({"MaxAttempts": attempts} if attempts else {})}
    if colon:
        raise StackError(
            "a maximum retry count can only be used with on-failure", path=(*where, "restart")
        )
    if name == "no":
        return {"Condition": "none"}
    if name in ("always", "unless-stopped"):
        return {"Condition": "any"}
    raise StackError(
        f"unknown restart policy {name!r} (no, always, on-failure or unless-stopped)",
        path=(*where, "restart"),
    )


def _deploy_restart(policy: Mapping[str, Any], where: Where) -> Spec:
    out: Spec = {}
    condition = policy.get("condition")
    if condition is not None:
        if condition not in _RESTART_CONDITIONS:
            raise StackError(
                f"unknown condition {condition!r} (none, on-failure or any)",
                path=(*where, "condition"),
            )
        out["Condition"] = condition
    if policy.get("delay") is not None:
        out["Delay"] = _ns(policy["delay"], (*where, "delay"))
    if policy.get("max_attempts") is not None:
        out["MaxAttempts"] = _int(policy["max_attempts"], (*where, "max_attempts"))
    if policy.get("window") is not None:
        out["Window"] = _ns(policy["window"], (*where, "window"))
    return out


def _update_config(config: Mapping[str, Any], where: Where) -> Spec:
    """UpdateConfig/RollbackConfig as docker/cli sends it: Parallelism (1 when not given)
    and MaxFailureRatio always, the zero-valued Delay and Monitor left out."""
    actions = _ROLLBACK_ACTIONS if where[-1] == "rollback_config" else _UPDATE_ACTIONS
    parallelism = config.get("parallelism")
    out: Spec = {
        "Parallelism": 1 if parallelism is None else _int(parallelism, (*where, "parallelism"))
    }
    for key, name in (("delay", "Delay"), ("monitor", "Monitor")):
        nanos = _ns(config[key], (*where, key)) if config.get(key) is not None else 0
        if nanos:
            out[name] = nanos
    action = config.get("failure_action")
    if action:
        if action not in actions:
            raise StackError(
                f"unknown failure_action {action!r} ({' or '.join(actions)})",
                path=(*where, "failure_action"),
            )
        out["FailureAction"] = action
    try:
        out["MaxFailureRatio"] = float(config.get("max_failure_ratio") or 0)
    except (TypeError, ValueError):
        raise StackError("not a number", path=(*where, "max_failure_ratio")) from None
    order = config.get("order")
    if order:
        if order not in _ORDERS:
            raise StackError(
                f"unknown order {order!r} (stop-first or start-first)", path=(*where, "order")
            )
        out["Order"] = order
    return out


# -- depends_on ---------------------------------------------------------------------------


def service_dependencies(project: Project) -> dict[str, dict[str, str]]:
    """Service name → {dependency: condition}, all by stack-scoped name, from
    `depends_on` (which swarm ignores and orchestr honours by ordering); every service of
    the project is a key. A dependency on a service not in the project is left out."""
    return {
        scoped(project, name): {
            scoped(project, dep): d.condition
            for dep, d in sorted(service.depends_on.items())
            if dep in project.services
        }
        for name, service in project.services.items()
    }


# -- swarm's defaults ---------------------------------------------------------------------

DEFAULT_UPDATE: Spec = {
    "Parallelism": 1,
    "Delay": 0,
    "FailureAction": "pause",
    "Monitor": 5 * SECOND,
    "MaxFailureRatio": 0.0,
    "Order": "stop-first",
}
DEFAULT_RESTART: Spec = {"Condition": "any", "Delay": 5 * SECOND, "MaxAttempts": 0, "Window": 0}
DEFAULT_STOP_GRACE_PERIOD = 10 * SECOND


def with_defaults(spec: Mapping[str, Any]) -> Spec:
    """The ServiceSpec with what swarm applies when a field is absent filled in (a new
    dict; what is given is kept), so that `service inspect` shows what actually applies.

    These are the *effective* SwarmKit defaults (`api/defaults/service.go`), which differ
    from what the Compose spec's deploy.md states in two places: compose-spec says
    `update_config.monitor`/`rollback_config.monitor` default to 0s and
    `restart_policy.delay` to 0, but the Engine drops a zero Monitor (`if Monitor != 0`)
    and SwarmKit then monitors for 5s, and a restart policy without a Delay waits 5s.
    orchestr follows what Swarm does, not what the spec says.

    Filled: Mode (Replicated, Replicas 1); UpdateConfig and RollbackConfig (parallelism 1,
    delay 0, failure_action pause, monitor 5s, max_failure_ratio 0, order stop-first);
    RestartPolicy (condition any, delay 5s, max_attempts 0 = unlimited, window 0 =
    unbounded); StopGracePeriod 10s; EndpointSpec.Mode vip and each port's Protocol
    tcp and PublishMode ingress. Jobs get neither UpdateConfig nor RollbackConfig (swarm
    refuses them) and restart on-failure: a job's `any` means on-failure (a completed
    job is never restarted).
    """
    out: Spec = dict(spec)
    mode = dict(out.get("Mode") or {"Replicated": {}})
    if "Replicated" in mode:
        mode["Replicated"] = {"Replicas": 1, **(mode["Replicated"] or {})}
    out["Mode"] = mode
    job = "ReplicatedJob" in mode or "GlobalJob" in mode
    if not job:
        for key in ("UpdateConfig", "RollbackConfig"):
            out[key] = {**DEFAULT_UPDATE, **(out.get(key) or {})}
    template = dict(out.get("TaskTemplate") or {})
    restart = {**DEFAULT_RESTART, **(template.get("RestartPolicy") or {})}
    if job and "Condition" not in (template.get("RestartPolicy") or {}):
        restart["Condition"] = "on-failure"
    template["RestartPolicy"] = restart
    container = dict(template.get("ContainerSpec") or {})
    container.setdefault("StopGracePeriod", DEFAULT_STOP_GRACE_PERIOD)
    template["ContainerSpec"] = container
    out["TaskTemplate"] = template
    endpoint = dict(out.get("EndpointSpec") or {})
    endpoint.setdefault("Mode", "vip")
    if endpoint.get("Ports"):
        endpoint["Ports"] = [
            {"Protocol": "tcp", "PublishMode": "ingress", **port} for port in endpoint["Ports"]
        ]
    out["EndpointSpec"] = endpoint
    return out


# -- units --------------------------------------------------------------------------------


def _ns(value: Any, where: Where) -> int:
    try:
        return parse_duration(value)
    except UnitError as exc:
        raise StackError(str(exc), path=where) from None


def _bytes(value: Any, where: Where) -> int:
    try:
        return parse_bytes(value)
    except UnitError as exc:
        raise StackError(str(exc), path=where) from None


def _int(value: Any, where: Where) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StackError(f"{value!r} is not a whole number", path=where) from None

"""The normalised Compose model: pydantic objects over the canonical document.

`Project.from_document(doc)` reads what `normalize` produced; every attribute the rest of
orchestr acts on is typed here. Attributes Compose defines that are not modelled are kept
in each object's extras (`model_extra`) so that `orchestr config` loses nothing and the
engine can refuse what it does not support by name (`Service.unsupported`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestr.stack.units import parse_duration

__all__ = [
    "Build",
    "Dependency",
    "Healthcheck",
    "NetworkAttachment",
    "Port",
    "Project",
    "Resource",
    "Service",
    "ServiceFile",
    "VolumeMount",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class Build(_Model):
    context: str
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    args: dict[str, str | None] = {}
    target: str | None = None
    labels: dict[str, str | None] = {}


class Port(_Model):
    target: int
    published: str | None = None
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str | None = None
    app_protocol: str | None = None


class VolumeMount(_Model):
    type: Literal["bind", "volume", "tmpfs", "npipe", "cluster", "image"]
    target: str
    source: str | None = None
    read_only: bool = False
    bind: dict[str, Any] | None = None
    volume: dict[str, Any] | None = None
    tmpfs: dict[str, Any] | None = None
    consistency: str | None = None


class Dependency(_Model):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"]
    required: bool = True
    restart: bool = False


class Healthcheck(_Model):
    test: list[str] | None = None
    interval: str | None = None
    timeout: str | None = None
    retries: int | None = None
    start_period: str | None = None
    start_interval: str | None = None

    def engine(self) -> dict[str, Any]:
        """The Engine API's HealthConfig (durations in ns; 0 = the image's or default)."""
        out: dict[str, Any] = {}
        if self.test is not None:
            out["Test"] = self.test
        for key, name in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start_period", "StartPeriod"),
            ("start_interval", "StartInterval"),
        ):
            value = getattr(self, key)
            if value is not None:
                out[name] = parse_duration(value)
        if self.retries is not None:
            out["Retries"] = self.retries
        return out


class NetworkAttachment(_Model):
    aliases: list[str] = []
    ipv4_address: str | None = None
    ipv6_address: str | None = None
    priority: int = 0


class ServiceFile(_Model):
    """A service's reference to a secret or a config."""

    source: str
    target: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        """`mode: "0440"` is octal, as compose-go reads a string mode (a YAML integer
        0440 is octal already, by YAML's own rule)."""
        if isinstance(value, str):
            try:
                return int(value, 8)
            except ValueError:
                raise ValueError(f"{value!r} is not an octal file mode") from None
        return value


class Service(_Model):
    name: str = ""
    image: str | None = None
    build: Build | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str | None] = {}
    labels: dict[str, str] = {}
    ports: list[Port] = []
    expose: list[str] = []
    volumes: list[VolumeMount] = []
    volumes_from: list[str] = []
    tmpfs: list[str] = []
    depends_on: dict[str, Dependency] = {}
    links: list[str] = []
    networks: dict[str, NetworkAttachment | None] = {}
    network_mode: str | None = None
    healthcheck: Healthcheck | None = None
    restart: str | None = None
    container_name: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    extra_hosts: list[str] = []
    dns: list[str] = []
    init: bool | None = None
    user: str | None = None
    working_dir: str | None = None
    stop_grace_period: str | None = None
    stop_signal: str | None = None
    read_only: bool = False
    cap_add: list[str] = []
    cap_drop: list[str] = []
    ulimits: dict[str, dict[str, int]] = {}
    mem_limit: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    tty: bool = False
    stdin_open: bool = False
    privileged: bool = False
    security_opt: list[str] = []
    secrets: list[ServiceFile] = []
    configs: list[ServiceFile] = []
    profiles: list[str] = []
    scale: int | None = None
    deploy: dict[str, Any] | None = None
    pull_policy: str | None = None
    platform: str | None = None
    logging: dict[str, Any] | None = None
    x_orchestr: dict[str, Any] | None = Field(default=None, alias="x-orchestr")

    @property
    def replicas(self) -> int:
        """`scale`, else `deploy.replicas`, else 1."""
        if self.scale is not None:
            return self.scale
        replicas = (self.deploy or {}).get("replicas")
        return 1 if replicas is None else int(replicas)

    def dependencies(self) -> dict[str, Dependency]:
        """depends_on, plus what network_mode, volumes_from and links imply."""
        deps = dict(self.depends_on)
        implied = Dependency(condition="service_started")
        mode = self.network_mode or ""
        if mode.startswith("service:"):
            deps.setdefault(mode.partition(":")[2], implied)
        for item in self.volumes_from:
            if not item.startswith("container:"):
                deps.setdefault(item.partition(":")[0], implied)
        for link in self.links:
            deps.setdefault(link.partition(":")[0], implied)
        return deps


class Resource(_Model):
    """A top-level network, volume, secret or config."""

    name: str
    external: bool = False
    driver: str | None = None
    driver_opts: dict[str, str] = {}
    labels: dict[str, str] = {}
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool | None = None
    ipam: dict[str, Any] | None = None
    file: str | None = None
    environment: str | None = None
    content: str | None = None


class Project(_Model):
    name: str
    working_dir: str = ""
    services: dict[str, Service] = {}
    networks: dict[str, Resource] = {}
    volumes: dict[str, Resource] = {}
    secrets: dict[str, Resource] = {}
    configs: dict[str, Resource] = {}
    disabled: dict[str, Service] = {}
    """Services left out by profiles (or not asked for), kept for `config --profiles`."""

    @classmethod
    def from_document(
        cls,
        doc: dict[str, Any],
        *,
        working_dir: str = "",
        disabled: dict[str, Any] | None = None,
    ) -> Project:
        def services(items: dict[str, Any]) -> dict[str, Service]:
            return {
                name: Service.model_validate({**(spec or {}), "name": name})
                for name, spec in items.items()
            }

        return cls(
            name=doc["name"],
            working_dir=working_dir,
            services=services(doc.get("services") or {}),
            networks=dict(doc.get("networks") or {}),
            volumes=dict(doc.get("volumes") or {}),
            secrets=dict(doc.get("secrets") or {}),
            configs=dict(doc.get("configs") or {}),
            disabled=services(disabled or {}),
        )

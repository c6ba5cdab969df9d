"""`orchestr run`'s options and the create body they make, without click.

One table (`RUN_OPTIONS`) is the source of the click command's options
(orchestr/cli/containers.py) and of the lean parser of the fast path
(orchestr/cli/fast.py), so both accept the same flags with the same defaults.
Everything here is pure and imports nothing heavy: the fast path runs before
click, httpx and pydantic are loaded.
"""

from __future__ import annotations

import os

from orchestr.api.limits import ULIMITS
from orchestr.errors import OrchestrError

TYPE_CHECKING = False  # typing and dataclasses cost ~20 ms of start-up; mypy sees the block
if TYPE_CHECKING:
    from typing import Any

    Body = dict[str, Any]


class Option:
    """One option of `run`: its spellings, where its value goes, and its kind:
    "flag", "one" (takes a value) or "many" (takes a value, repeatable)."""

    __slots__ = ("default", "dest", "help", "kind", "metavar", "names", "type")

    def __init__(
        self,
        names: tuple[str, ...],
        dest: str,
        kind: str = "one",
        default: object = None,
        help: str | None = None,
        metavar: str | None = None,
        type: type = str,
    ) -> None:
        self.names = names
        self.dest = dest
        self.kind = kind
        self.default = default
        self.help = help
        self.metavar = metavar
        self.type = type


RESTART_HELP = "no | always | unless-stopped | on-failure[:N]"
RUN_OPTIONS: tuple[Option, ...] = (
    Option(("-d", "--detach"), "detach", "flag", False, "Run in the background; print the ID."),
    Option(("--rm",), "remove", "flag", False, "Remove the container when it exits."),
    Option(("-i", "--interactive"), "interactive", "flag", False, "Keep stdin open."),
    Option(("-t", "--tty"), "tty", "flag", False, "Give the container a terminal."),
    Option(("--name",), "name", help="Name of the container."),
    Option(("-e", "--env"), "env", "many", metavar="KEY=VALUE"),
    Option(("-v", "--volume"), "volumes", "many", metavar="SRC:DEST[:ro]"),
    Option(("--mount",), "mounts", "many", metavar="type=…,source=…,target=…"),
    Option(("--tmpfs",), "tmpfs", "many", metavar="PATH[:OPTIONS]"),
    Option(("-m", "--memory"), "memory", help="Memory limit (e.g. 64m)."),
    Option(("--cpus",), "cpus", help="CPUs (e.g. 0.5).", type=float),
    Option(("--pids-limit",), "pids_limit", help="Process limit.", type=int),
    Option(("--restart",), "restart", default="no", help=RESTART_HELP),
    Option(("-u", "--user"), "user", help="USER[:GROUP]."),
    Option(("-w", "--workdir"), "workdir", help="Working directory inside the container."),
    Option(("--entrypoint",), "entrypoint", help="Overrides the image's entrypoint."),
    Option(("--read-only",), "read_only", "flag", False, "A read-only root file system."),
    Option(
        ("--network", "--net"),
        "network",
        default="default",
        help="default | none | host | container:NAME | a network's name",
    ),
    Option(("--network-alias",), "network_aliases", "many", metavar="ALIAS"),
    Option(("--ip",), "ip", help="IPv4 address on the network (a user-defined subnet)."),
    Option(("-p", "--publish"), "publish", "many", metavar="[IP:]HOST:CONTAINER[/PROTO]"),
    Option(("-P", "--publish-all"), "publish_all", "flag", False, "Publish exposed ports."),
    Option(("--expose",), "expose", "many", metavar="PORT[/PROTO]"),
    Option(("--dns",), "dns", "many", metavar="IP", help="DNS servers."),
    Option(("--add-host",), "add_host", "many", metavar="HOST:IP", help="An /etc/hosts line."),
    Option(("-l", "--label"), "labels", "many", metavar="KEY=VALUE"),
    Option(("--cap-add",), "cap_add", "many"),
    Option(("--cap-drop",), "cap_drop", "many"),
    Option(("--hostname", "-h"), "hostname", help="Container host name."),
    Option(("--health-cmd",), "health_cmd", help="Command to run to check health."),
    Option(("--health-interval",), "health_interval", help="Time between checks (e.g. 30s)."),
    Option(("--health-timeout",), "health_timeout", help="Maximum time a check may run."),
    Option(("--health-retries",), "health_retries", help="Failures before unhealthy.", type=int),
    Option(("--health-start-period",), "health_start_period", help="Start-up grace period."),
    Option(("--health-start-interval",), "health_start_interval", help="Time between checks then."),
    Option(("--no-healthcheck",), "no_healthcheck", "flag", False, "Disable any HEALTHCHECK."),
    Option(("--init",), "init", "flag", False, "Run an init (tini) as PID 1."),
    Option(("--ulimit",), "ulimits", "many", metavar="NAME=SOFT[:HARD]"),
)


def defaults() -> dict[str, Any]:
    """Every option's value when it is not given (click's shapes: tuples for "many")."""
    return {o.dest: () if o.kind == "many" else o.default for o in RUN_OPTIONS}


def env_pairs(items: tuple[str, ...] | list[str]) -> list[str]:
    """`-e` values: KEY=VALUE as given; a bare NAME takes its value from here, as docker
    does (and is dropped when it is not set)."""
    out = []
    for item in items:
        if "=" in item:
            out.append(item)
        elif item in os.environ:
            out.append(f"{item}={os.environ[item]}")
    return out


def byte_size(text: str | None) -> int:
    """`64m`, `1g`, `512k`, `100` (bytes) -> bytes; empty -> 0."""
    if not text:
        return 0
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    try:
        if t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except (ValueError, IndexError):
        raise OrchestrError(f"{text!r} is not a size (e.g. 64m, 1g, 512k)") from None


def restart_policy(policy: str) -> dict[str, Any]:
    name, _, count = policy.partition(":")
    if count and not count.isdigit():
        raise OrchestrError(f"--restart {policy!r}: the retry count must be a number")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def mounts(specs: tuple[str, ...]) -> list[dict[str, Any]]:
    """`--mount type=…,source=…,target=…[,readonly]` -> Engine API Mounts."""
    out = []
    for spec in specs:
        fields: dict[str, str] = {}
        for kv in spec.split(","):
            if kv:
                key, eq, value = kv.partition("=")
                fields[key] = value if eq else "true"
        kind = fields.get("type", "volume")
        target = fields.get("target") or fields.get("destination") or fields.get("dst")
        if not target:
            raise OrchestrError(f"--mount {spec!r}: target is required")
        mount: dict[str, Any] = {"Type": kind, "Target": target}
        source = fields.get("source") or fields.get("src")
        if source:
            mount["Source"] = source
        if fields.get("readonly") in ("true", "1") or fields.get("ro") in ("true", "1"):
            mount["ReadOnly"] = True
        if kind == "tmpfs" and "tmpfs-size" in fields:
            mount["TmpfsOptions"] = {"SizeBytes": byte_size(fields["tmpfs-size"])}
        out.append(mount)
    return out


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def duration_ns(text: str, flag: str) -> int:
    """Go's time.ParseDuration (300ms, 1.5s, 1m30s, 0) -> nanoseconds."""
    import re

    t = text.strip()
    if t in ("0", "+0", "-0"):
        return 0
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)", t.lstrip("+-"))
    joined = "".join(n + u for n, u in parts)
    if not parts or joined != t.lstrip("+-"):
        raise OrchestrError(f'invalid argument "{text}" for "{flag}" flag: time: invalid duration')
    ns = round(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))
    if t.startswith("-"):
        raise OrchestrError(f"{flag} cannot be negative")
    return ns


def healthcheck(o: dict[str, Any]) -> dict[str, Any] | None:
    """The --health-* and --no-healthcheck flags -> Config.Healthcheck (the docker CLI's)."""
    durations = {
        "Interval": ("health_interval", "--health-interval"),
        "Timeout": ("health_timeout", "--health-timeout"),
        "StartPeriod": ("health_start_period", "--health-start-period"),
        "StartInterval": ("health_start_interval", "--health-start-interval"),
    }
    given = (
        o.get("health_cmd")
        or o.get("health_retries") is not None
        or any(o.get(dest) for dest, _ in durations.values())
    )
    if o.get("no_healthcheck"):
        if given:
            raise OrchestrError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not given:
        return None
    retries = o.get("health_retries") or 0
    if retries < 0:
        raise OrchestrError("--health-retries cannot be negative")
    check: dict[str, Any] = {"Test": ["CMD-SHELL", o["health_cmd"]] if o.get("health_cmd") else []}
    for key, (dest, flag) in durations.items():
        check[key] = duration_ns(o[dest], flag) if o.get(dest) else 0
    check["Retries"] = retries
    return check


def ulimits(specs: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """`--ulimit nofile=1024[:2048]` -> HostConfig.Ulimits (go-units' parser)."""
    out = []
    for spec in specs:
        name, eq, limits = spec.partition("=")
        if not eq:
            raise OrchestrError(f"invalid ulimit argument: {spec}")
        if name not in ULIMITS:
            raise OrchestrError(f"invalid ulimit type: {name}")
        soft_text, colon, hard_text = limits.partition(":")
        try:
            soft = int(soft_text)
            hard = int(hard_text) if colon else soft
        except ValueError:
            raise OrchestrError(f"invalid ulimit argument: {spec}") from None
        if soft > hard:
            raise OrchestrError(
                f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )
        out.append({"Name": name, "Soft": soft, "Hard": hard})
    return out


def create_body(image: str, command: tuple[str, ...] | list[str], o: dict[str, Any]) -> Body:
    """The body of POST /containers/create for `run` with options `o` (see RUN_OPTIONS)."""
    if o["detach"] and o["remove"] and o["restart"] != "no":
        raise OrchestrError("--rm and --restart cannot be combined")
    body: dict[str, Any] = {
        "Image": image,
        "Cmd": list(command) or None,
        "Env": env_pairs(o["env"]),
        "User": o["user"] or "",
        "WorkingDir": o["workdir"] or "",
        "Hostname": o["hostname"] or "",
        "Labels": dict(
            label.split("=", 1) if "=" in label else (label, "") for label in o["labels"]
        ),
        "Tty": o["tty"],
        "OpenStdin": o["interactive"],
        "StdinOnce": o["interactive"],
        "AttachStdin": o["interactive"] and not o["detach"],
        "AttachStdout": not o["detach"],
        "AttachStderr": not o["detach"],
        "HostConfig": {
            "Binds": list(o["volumes"]) or None,
            "Mounts": mounts(o["mounts"]) or None,
            "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in o["tmpfs"]} or None,
            "AutoRemove": o["remove"],
            "RestartPolicy": restart_policy(o["restart"]),
            "Memory": byte_size(o["memory"]),
            "NanoCpus": int((o["cpus"] or 0) * 1e9),
            "PidsLimit": o["pids_limit"],
            "ReadonlyRootfs": o["read_only"],
            "NetworkMode": o["network"],
            "CapAdd": list(o["cap_add"]) or None,
            "CapDrop": list(o["cap_drop"]) or None,
        },
    }
    if o["entrypoint"] is not None:
        body["Entrypoint"] = [o["entrypoint"]] if o["entrypoint"] else []
    check = healthcheck(o)
    if check is not None:
        body["Healthcheck"] = check
    if o.get("init"):
        body["HostConfig"]["Init"] = True
    if o.get("ulimits"):
        body["HostConfig"]["Ulimits"] = ulimits(o["ulimits"])
    _network_options(body, o)
    return body


def _network_options(body: Body, o: dict[str, Any]) -> None:
    """-p, -P, --expose, --dns, --add-host, --network-alias, --ip into the body."""
    host = body["HostConfig"]
    exposed: dict[str, dict[str, object]] = {}
    if o["publish"]:
        from orchestr.api.ports import PortError, parse_publish

        try:
            exposed, host["PortBindings"] = parse_publish(o["publish"])
        except PortError as e:
            raise OrchestrError(f"-p: {e}") from None
    for spec in o["expose"]:
        port, _, proto = spec.partition("/")
        first, _, last = port.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise OrchestrError(f"--expose {spec!r}: expected PORT[-PORT][/PROTO]")
        for n in range(int(first), int(last or first) + 1):
            exposed[f"{n}/{proto or 'tcp'}"] = {}
    if exposed:
        body["ExposedPorts"] = exposed
    if o["publish_all"]:
        host["PublishAllPorts"] = True
    if o["dns"]:
        host["Dns"] = list(o["dns"])
    if o["add_host"]:
        host["ExtraHosts"] = list(o["add_host"])
    if o["network_aliases"] or o["ip"]:
        endpoint: dict[str, Any] = {"Aliases": list(o["network_aliases"]) or None}
        if o["ip"]:
            endpoint["IPAMConfig"] = {"IPv4Address": o["ip"]}
        body["NetworkingConfig"] = {"EndpointsConfig": {o["network"]: endpoint}}

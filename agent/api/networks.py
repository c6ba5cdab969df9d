"""The Engine API's network endpoints (v1.41), over the node's network service.

    POST   /networks/create           201 {"Id", "Warning"}  body: NetworkCreateRequest
                                      409 name taken, 400 bad body or not supported
    GET    /networks                  [Network]              filters: name, id, driver,
                                                             label, type, scope, dangling
    GET    /networks/{id}             Network                404 "network X not found"
    DELETE /networks/{id}             204                    403 predefined or in use, 404
    POST   /networks/{id}/connect     200                    body: {Container, EndpointConfig}
    POST   /networks/{id}/disconnect  200                    body: {Container, Force}
    POST   /networks/prune            {"NetworksDeleted"}    filters: until, label, label!

The container side is a `NetworkUsers` (the container service): which containers
are on a network, and connecting or disconnecting one.

What counts as "in use" (rm, prune, `dangling`): any container whose config names
the network, running or not. dockerd counts only live endpoints (running
containers), so it removes a network a stopped container still names, and that
container then fails to start; orchestr refuses instead.

Like dockerd's: `name` and `id` filters match as regular expressions (so a part
of the name or ID), `label` filters must all match, the list leaves `Containers`
empty (only inspect fills it, as since API 1.28), and the request body's keys
match case-insensitively (Go's encoding/json).

The pure parts, unit-tested: `network_doc`, `create_args`, `endpoint_config`,
`matches`, `prune_matches` and `until_cutoff`.
"""

from __future__ import annotations

import asyncio
import calendar
import ipaddress
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from agent.containers.service import Conflict as ContainerConflict
from agent.network import NetworkError
from agent.network.service import (
    BRIDGE_OPTION,
    ICC_OPTION,
    MASQ_OPTION,
    MTU_OPTION,
    Conflict,
    Network,
    NetworkService,
    NotFound,
)
from orchestr.api.filters import parse_filters
from orchestr.api.http import HttpError, Request, Response, Router, json_response, off_loop

__all__ = [
    "NetworkUsers",
    "NetworksApi",
    "Users",
    "create_args",
    "endpoint_config",
    "list_filters",
    "matches",
    "network_doc",
    "prune_matches",
    "until_cutoff",
]

log = logging.getLogger("orchestr.api")

Users = list[tuple[str, str, dict[str, Any]]]
"""(container id, name without "/", its EndpointSettings on the network)."""

Filters = Mapping[str, Any]  # the `filters` parameter: {key: [values]} or {key: {value: true}}

LIST_FILTERS = frozenset({"dangling", "driver", "id", "label", "name", "scope", "type"})
PRUNE_FILTERS = frozenset({"until", "label", "label!"})


class NetworkUsers(Protocol):
    """The container service, as the network endpoints see it.

    `connect` and `disconnect` raise LookupError (no such container: 404),
    ValueError (a bad request: 400; "already …"/"… in use": 403), the network
    service's Conflict (403: already connected, not connected) or the container
    service's Conflict (409: not in a state that allows it).
    """

    def network_users(self, network_id: str) -> Users: ...

    def is_task(self, container_id: str) -> bool:
        """Whether the container runs a service's task (the worker stops it)."""
        ...

    def connect(self, container: str, network: Network, settings: dict[str, Any]) -> None: ...

    def disconnect(self, container: str, network: Network, force: bool) -> None: ...


# -- the network document ------------------------------------------------------------------


def _bridge_options(network: Network) -> dict[str, str]:
    """The options dockerd shows on its default bridge."""
    return {
        "com.docker.network.bridge.default_bridge": "true",
        ICC_OPTION: "true",
        MASQ_OPTION: "true" if network.masquerade else "false",
        "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
        BRIDGE_OPTION: network.bridge,
        MTU_OPTION: str(network.mtu),
    }


def _ipam_config(network: Network) -> list[dict[str, Any]]:
    config: list[dict[str, Any]] = []
    if network.driver != "bridge":
        return config
    if network.subnet:
        entry: dict[str, Any] = {"Subnet": network.subnet, "Gateway": network.gateway or ""}
        if network.ip_range:
            entry["IPRange"] = network.ip_range
        if network.aux_addresses:
            entry["AuxiliaryAddresses"] = dict(network.aux_addresses)
        config.append(entry)
    if network.subnet6:
        config.append({"Subnet": network.subnet6, "Gateway": network.gateway6 or ""})
    return config


def _container_entry(name: str, settings: Mapping[str, Any]) -> dict[str, str]:
    return {
        "Name": name,
        "EndpointID": str(settings.get("EndpointID") or ""),
        "MacAddress": str(settings.get("MacAddress") or ""),
        "IPv4Address": f"{settings['IPAddress']}/{settings.get('IPPrefixLen') or 0}",
        "IPv6Address": (
            f"{settings['GlobalIPv6Address']}/{settings.get('GlobalIPv6PrefixLen') or 0}"
            if settings.get("GlobalIPv6Address")
            else ""
        ),
    }


def network_doc(network: Network, users: Users) -> dict[str, Any]:
    """A network as `GET /networks/{id}` shows it; `Containers` holds the users that
    have an address on it (the running ones)."""
    options = dict(network.options)
    if network.name == "bridge" and network.predefined:
        options = {**_bridge_options(network), **options}
    return {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": network.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": {}, "Config": _ipam_config(network)},
        "Internal": network.internal,
        "Attachable": network.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": {
            cid: _container_entry(name, settings)
            for cid, name, settings in users
            if settings.get("IPAddress")
        },
        "Options": options,
        "Labels": dict(network.labels),
    }


# -- request bodies ------------------------------------------------------------------------


def _field(doc: Mapping[str, Any], name: str) -> Any:
    """Go's encoding/json matches keys case-insensitively (exact match first)."""
    if name in doc:
        return doc[name]
    lowered = name.lower()
    for key, value in doc.items():
        if key.lower() == lowered:
            return value
    return None


def _str(doc: Mapping[str, Any], name: str, where: str = "") -> str:
    value = _field(doc, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HttpError(400, f"{where}{name}: expected a string, got {_kind(value)}")
    return value


def _bool(doc: Mapping[str, Any], name: str, where: str = "") -> bool:
    value = _field(doc, name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise HttpError(400, f"{where}{name}: expected a boolean, got {_kind(value)}")
    return value


def _object(doc: Mapping[str, Any], name: str, where: str = "") -> dict[str, Any]:
    value = _field(doc, name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HttpError(400, f"{where}{name}: expected an object, got {_kind(value)}")
    return value


def _str_map(doc: Mapping[str, Any], name: str, where: str = "") -> dict[str, str]:
    value = _object(doc, name, where)
    for key, item in value.items():
        if not isinstance(item, str):
            raise HttpError(400, f"{where}{name}.{key}: expected a string, got {_kind(item)}")
    return dict(value)


def _str_list(doc: Mapping[str, Any], name: str, where: str = "") -> list[str]:
    value = _field(doc, name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HttpError(400, f"{where}{name}: expected a list of strings")
    return list(value)


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", str: "a string", int: "a number", float: "a number"}
    kinds.update({list: "a list", dict: "an object", type(None): "null"})
    return kinds.get(type(value), type(value).__name__)


def _ip(text: str, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise HttpError(400, f"{where}: invalid IP address {text}") from None


def _cidr(text: str, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
        if "/" not in text:
            raise ValueError(text)
    except ValueError:
        raise HttpError(400, f"{where}: invalid CIDR address: {text}") from None
    if net.network_address != ipaddress.ip_address(text.split("/")[0]):
        raise HttpError(400, f"{where}: invalid subnet {text}: it should be {net}")
    return net


def _ipam_entry(config: object, where: str) -> tuple[int, dict[str, Any]] | None:
    """One IPAM.Config entry -> (its family, the service's arguments for it)."""
    if not isinstance(config, dict):
        raise HttpError(400, f"{where}: expected an object, got {_kind(config)}")
    subnet = _str(config, "Subnet", f"{where}.")
    gateway = _str(config, "Gateway", f"{where}.")
    ip_range = _str(config, "IPRange", f"{where}.")
    aux = _str_map(config, "AuxiliaryAddresses", f"{where}.")
    if not subnet:
        if gateway or ip_range or aux:
            raise HttpError(
                400, f"{where}: every ip-range, gateway or auxiliary address needs a subnet"
            )
        return None  # an empty entry: the service picks a subnet
    net = _cidr(subnet, f"{where}.Subnet")
    if gateway and _ip(gateway, f"{where}.Gateway").version != net.version:
        raise HttpError(400, f"{where}.Gateway: {gateway} is not an IPv{net.version} address")
    if ip_range and _cidr(ip_range, f"{where}.IPRange").version != net.version:
        raise HttpError(400, f"{where}.IPRange: {ip_range} is not an IPv{net.version} range")
    for device, address in aux.items():
        if _ip(address, f"{where}.AuxiliaryAddresses.{device}").version != net.version:
            raise HttpError(
                400, f"{where}.AuxiliaryAddresses.{device}: {address} is not IPv{net.version}"
            )
    if net.version == 6:
        if ip_range or aux:
            raise HttpError(
                400, f"{where}: IPRange and AuxiliaryAddresses are not supported for IPv6"
            )
        return 6, {"subnet6": subnet, "gateway6": gateway or None}
    return 4, {
        "subnet": subnet,
        "gateway": gateway or None,
        "ip_range": ip_range or None,
        "aux_addresses": aux,
    }


TASKS_LEAVE = 60.0  # seconds a network's removal waits for stopping tasks to leave it
ENCRYPTED_OPTION = "encrypted"  # the overlay driver's IPsec between nodes


def create_args(body: object) -> dict[str, Any]:
    """`POST /networks/create`'s body -> `NetworkService.create`'s keyword arguments
    (`name` among them). Raises HttpError(400) naming the field that is wrong."""
    if not isinstance(body, dict):
        raise HttpError(400, "the request body must be a JSON object (NetworkCreateRequest)")
    name = _str(body, "Name")
    if not name:
        raise HttpError(400, "Name: a network needs a name")
    driver = _str(body, "Driver") or "bridge"
    _bool(body, "CheckDuplicate")  # names are always unique here
    if _bool(body, "Ingress"):
        raise HttpError(400, "Ingress: ingress networks are not supported (they need a swarm)")
    if _bool(body, "ConfigOnly"):
        raise HttpError(400, "ConfigOnly: configuration-only networks are not supported")
    if _str(_object(body, "ConfigFrom"), "Network", "ConfigFrom."):
        raise HttpError(400, "ConfigFrom: configuration-only networks are not supported")
    scope = _str(body, "Scope")
    if driver == "overlay":
        # This daemon is a cluster of one: an overlay network joins the containers of
        # its one node, which a bridge does (`docker stack deploy` asks for overlay
        # networks). VXLAN between nodes comes with clusters of several nodes.
        if _str_map(body, "Options").get(ENCRYPTED_OPTION) is not None:
            raise HttpError(400, "Options: encrypted overlay networks are not supported yet")
        driver, scope = "bridge", ""
    if scope not in ("", "local", "swarm"):
        raise HttpError(400, f"Scope: {scope} networks are not supported")
    args: dict[str, Any] = {
        "name": name,
        "driver": driver,
        "internal": _bool(body, "Internal"),
        "attachable": _bool(body, "Attachable"),
        "enable_ipv6": _bool(body, "EnableIPv6"),
        "labels": _str_map(body, "Labels"),
        "options": _str_map(body, "Options"),
    }
    ipam = _object(body, "IPAM")
    ipam_driver = _str(ipam, "Driver", "IPAM.") or "default"
    if ipam_driver != "default":
        raise HttpError(400, f"IPAM.Driver: the {ipam_driver} IPAM driver is not supported")
    _str_map(ipam, "Options", "IPAM.")  # the default driver has none that matter here
    configs = _field(ipam, "Config")
    if configs is None:
        configs = []
    if not isinstance(configs, list):
        raise HttpError(400, f"IPAM.Config: expected a list, got {_kind(configs)}")
    families: set[int] = set()
    for i, config in enumerate(configs):
        entry = _ipam_entry(config, f"IPAM.Config[{i}]")
        if entry is None:
            continue
        family, entry_args = entry
        if family in families:
            raise HttpError(400, f"IPAM.Config[{i}]: only one IPv{family} subnet per network")
        families.add(family)
        args.update(entry_args)
    return args


def endpoint_config(body: object) -> dict[str, Any]:
    """`POST /networks/{id}/connect`'s EndpointConfig -> the settings handed to the
    container service: `Aliases` and `IPAMConfig` (only what is set). The docker
    CLI always sends every field, empty; set ones orchestr cannot honour are 400."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HttpError(400, f"EndpointConfig: expected an object, got {_kind(body)}")
    where = "EndpointConfig."
    for name in ("Links", "DriverOpts", "MacAddress", "NetworkID", "EndpointID"):
        if _field(body, name):
            raise HttpError(400, f"{where}{name}: not supported when connecting a container")
    settings: dict[str, Any] = {}
    aliases = _str_list(body, "Aliases", where)
    if aliases:
        settings["Aliases"] = aliases
    ipam = _object(body, "IPAMConfig", where)
    where += "IPAMConfig."
    ipv4 = _str(ipam, "IPv4Address", where)
    if _str(ipam, "IPv6Address", where):
        raise HttpError(400, f"{where}IPv6Address: static IPv6 addresses are not supported")
    if _str_list(ipam, "LinkLocalIPs", where):
        raise HttpError(400, f"{where}LinkLocalIPs: link-local addresses are not supported")
    if ipv4:
        if _ip(ipv4, f"{where}IPv4Address").version != 4:
            raise HttpError(400, f"{where}IPv4Address: {ipv4} is not an IPv4 address")
        settings["IPAMConfig"] = {"IPv4Address": ipv4}
    return settings


# -- filters -------------------------------------------------------------------------------


def _regex_search(pattern: str, text: str) -> bool:
    """dockerd's filters.Match: the value is a regular expression searched in the text."""
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _labels_match(labels: Mapping[str, str], wanted: list[str]) -> bool:
    """dockerd's MatchKVList: every `key` or `key=value` holds (true when none given)."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _dangling(values: list[str]) -> bool | None:
    if not values:
        return None
    if len(values) > 1:
        raise HttpError(400, 'got more than one value for filter key "dangling"')
    if values[0] in ("1", "true"):
        return True
    if values[0] in ("0", "false"):
        return False
    raise HttpError(
        400, 'invalid value for filter \'dangling\', must be "true" (or "1"), or "false" (or "0")'
    )


def list_filters(raw: object) -> dict[str, list[str]]:
    """`GET /networks`'s filters, checked (keys, `type` and `dangling` values)."""
    parsed = parse_filters(raw, LIST_FILTERS)
    for kind in parsed.get("type", []):
        if kind not in ("custom", "builtin"):
            raise HttpError(400, f"invalid filter: 'type'='{kind}'")
    _dangling(parsed.get("dangling", []))
    return parsed


def matches(network: Network, users: Users, filters: Filters) -> bool:
    """Whether `GET /networks` lists the network under `filters` (dockerd's rules: any
    value of a key may match, but every key must; all `label`s must hold; a network
    is dangling when it is user-defined and no container uses it)."""
    parsed = list_filters(dict(filters))
    checks: dict[str, Callable[[str], bool]] = {
        "name": lambda v: _regex_search(v, network.name),
        "id": lambda v: _regex_search(v, network.id),
        "driver": lambda v: v == network.driver,
        "scope": lambda v: v == "local",
        "type": lambda v: (v == "builtin") == network.predefined,
    }
    for key, check in checks.items():
        values = parsed.get(key)
        if values and not any(check(v) for v in values):
            return False
    if not _labels_match(network.labels, parsed.get("label", [])):
        return False
    dangling = _dangling(parsed.get("dangling", []))
    if dangling is not None:
        unused = not network.predefined and not users
        return unused == dangling
    return True


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d")
_ZONE = re.compile(r"(Z|[+-]\d\d:\d\d)$")
_FRACTION = re.compile(r"\.(\d{1,9})")


def _go_duration(text: str) -> float | None:
    """Go's time.ParseDuration ("1h30m", "10s", "-2h"), in seconds; None if it is not one."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body:
        return None
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_PART.match(body, pos)
        if m is None:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total


def _timestamp(text: str) -> float | None:
    """Docker's date forms (RFC 3339 with or without zone, down to a bare date); no
    zone means the daemon's local time, as dockerd reads them."""
    zone = _ZONE.search(text)
    rest = text[: zone.start()] if zone else text
    fraction = 0.0
    m = _FRACTION.search(rest)
    if m is not None and m.end() == len(rest):
        fraction = float("0." + m.group(1))
        rest = rest[: m.start()]
    for fmt in _TIME_FORMATS:
        try:
            parsed = time.strptime(rest, fmt)
        except ValueError:
            continue
        if zone is None:
            return time.mktime(parsed) + fraction
        offset = 0
        if zone.group(1) != "Z":
            hours, minutes = zone.group(1)[1:].split(":")
            offset = (int(hours) * 3600 + int(minutes) * 60) * (-1 if text[-6] == "-" else 1)
        return calendar.timegm(parsed) + fraction - offset
    return None


def until_cutoff(value: str, now: float) -> float:
    """The `until` filter (a Go duration before `now`, a Unix timestamp with optional
    fraction, or a date) as Unix seconds."""
    duration = _go_duration(value) if value != "0" else None
    if duration is not None:
        return now - duration
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    stamp = _timestamp(value)
    if stamp is None:
        raise HttpError(400, f"invalid value for filter 'until': {value!r} is not a timestamp")
    return stamp


def created_seconds(created: str) -> float:
    """A network's `Created` ("2006-01-02T15:04:05.999999999Z") as Unix seconds."""
    stamp = _timestamp(created)
    return 0.0 if stamp is None else stamp


def prune_matches(network: Network, users: Users, filters: Filters, now: float) -> bool:
    """Whether `POST /networks/prune` removes the network: user-defined, unused, older
    than `until`, every `label` holds and not every `label!` does (dockerd's rules)."""
    parsed = parse_filters(dict(filters), PRUNE_FILTERS)
    if network.predefined or users:
        return False
    until = parsed.get("until", [])
    if len(until) > 1:
        raise HttpError(400, "more than one until filter specified")
    if until and created_seconds(network.created) > until_cutoff(until[0], now):
        return False
    if not _labels_match(network.labels, parsed.get("label", [])):
        return False
    excluded = parsed.get("label!", [])
    return not (excluded and _labels_match(network.labels, excluded))


# -- the routes ----------------------------------------------------------------------------


class NetworksApi:
    """Routes for /networks/*."""

    def __init__(self, networks: NetworkService, containers: NetworkUsers) -> None:
        self.networks = networks
        self.containers = containers
        # The names of the services using a network (given its ID and name): set by the
        # daemon once its control plane runs.
        self.services_using: Callable[[list[str]], list[str]] | None = None
        self.router = Router()
        r = self.router
        r.route("GET", "/networks")(self.list_networks)
        r.route("POST", "/networks/create")(self.create)
        r.route("POST", "/networks/prune")(self.prune)
        r.route("GET", "/networks/{id}")(self.inspect)
        r.route("DELETE", "/networks/{id}")(self.remove)
        r.route("POST", "/networks/{id}/connect")(self.connect)
        r.route("POST", "/networks/{id}/disconnect")(self.disconnect)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Blocking service code off the loop, its errors as HTTP answers."""
        return await off_loop(
            ((NotFound, 404), (Conflict, 409), (NetworkError, 400)), fn, *args, **kwargs
        )

    async def _container_call(self, fn: Callable[..., Any], *args: Any) -> None:
        """connect/disconnect, their errors as dockerd answers them (see NetworkUsers)."""
        try:
            await asyncio.to_thread(fn, *args)
        except LookupError as e:
            raise HttpError(404, _unquoted(e)) from None
        except ValueError as e:
            status = 403 if "already" in str(e) or "in use" in str(e) else 400
            raise HttpError(status, str(e)) from None
        except Conflict as e:
            raise HttpError(403, str(e)) from None
        except ContainerConflict as e:
            raise HttpError(409, str(e)) from None

    def _users(self, network_id: str) -> list[str]:
        return [name for _, name, _ in self.containers.network_users(network_id)]

    async def create(self, request: Request) -> Response:
        args = create_args(await request.json())
        network: Network = await self._call(self.networks.create, **args)
        return json_response({"Id": network.id, "Warning": ""}, 201)

    async def list_networks(self, request: Request) -> Response:
        filters = list_filters(request.json_arg("filters"))

        def listed() -> list[dict[str, Any]]:
            out = []
            for network in self.networks.all():
                wanted = "dangling" in filters
                users = self.containers.network_users(network.id) if wanted else []
                if matches(network, users, filters):
                    out.append(network_doc(network, []))  # Containers: only inspect fills it
            return out

        return json_response(await self._call(listed))

    async def inspect(self, request: Request) -> Response:
        ref = request.params["id"]
        scope = request.arg("scope") or "local"
        if scope not in ("local", "swarm"):
            raise HttpError(404, f"network {ref} not found")

        def doc() -> dict[str, Any]:
            network = self.networks.get(ref)
            # The docker CLI checks a service's networks with scope=swarm. On a cluster
            # of one, the node's user-defined bridge networks serve services (the
            # overlay driver comes with several nodes); the predefined ones do not, as
            # with Swarm.
            if scope == "swarm" and (network.predefined or network.driver != "bridge"):
                raise NotFound(f"network {ref} not found")
            return network_doc(network, self.containers.network_users(network.id))

        return json_response(await self._call(doc))

    async def remove(self, request: Request) -> Response:
        """As Swarm's: a network no service uses goes, even while the tasks of services
        that used it are still stopping (`docker stack rm` removes the services, then at
        once their networks): it waits for them, up to TASKS_LEAVE seconds."""
        ref = request.params["id"]
        deadline = time.monotonic() + TASKS_LEAVE
        while True:
            try:
                network = await asyncio.to_thread(self.networks.get, ref)
                if self.services_using is not None and not network.predefined:
                    using = await asyncio.to_thread(self.services_using, [network.id, network.name])
                    if using:
                        raise HttpError(
                            409, f"network {network.name} is in use by service {', '.join(using)}"
                        )
                await asyncio.to_thread(self.networks.remove, ref, self._users)
                return Response(204, b"", None)
            except NotFound as e:
                raise HttpError(404, str(e)) from None
            except Conflict as e:  # pre-defined, or active endpoints
                if self.services_using is None or time.monotonic() > deadline:
                    raise HttpError(403, str(e)) from None
                users = self.containers.network_users(network.id)
                leaving = users and all(self.containers.is_task(u[0]) for u in users)
                if network.predefined or not leaving:
                    raise HttpError(403, str(e)) from None
                await asyncio.sleep(0.2)  # tasks of removed services, stopping
            except NetworkError as e:
                raise HttpError(400, str(e)) from None

    async def _target(self, request: Request) -> tuple[Network, dict[str, Any], str]:
        body = await request.json()
        if not isinstance(body, dict):
            raise HttpError(400, "the request body must be a JSON object")
        container = _str(body, "Container")
        if not container:
            raise HttpError(400, "Container: the container's name or ID is required")
        network: Network = await self._call(self.networks.get, request.params["id"])
        return network, body, container

    async def connect(self, request: Request) -> Response:
        network, body, container = await self._target(request)
        settings = endpoint_config(_field(body, "EndpointConfig"))
        await self._container_call(self.containers.connect, container, network, settings)
        return Response(200, b"", None)

    async def disconnect(self, request: Request) -> Response:
        network, body, container = await self._target(request)
        force = _bool(body, "Force")
        await self._container_call(self.containers.disconnect, container, network, force)
        return Response(200, b"", None)

    async def prune(self, request: Request) -> Response:
        filters = parse_filters(request.json_arg("filters"), PRUNE_FILTERS)
        now = time.time()
        until = filters.get("until", [])
        if len(until) > 1:
            raise HttpError(400, "more than one until filter specified")
        for value in until:
            until_cutoff(value, now)  # a bad value is a 400 even with nothing to prune

        def prune() -> list[str]:
            deleted = []
            for network in self.networks.all():
                users = self.containers.network_users(network.id)
                if not prune_matches(network, users, filters, now):
                    continue
                try:
                    self.networks.remove(network.id, self._users)
                except (NotFound, Conflict) as e:  # gone, or taken meanwhile: leave it
                    log.info("prune: network %s kept: %s", network.name, e)
                    continue
                deleted.append(network.name)
            return deleted

        return json_response({"NetworksDeleted": await self._call(prune)})


def _unquoted(e: LookupError) -> str:
    """KeyError's str() quotes its message."""
    text = str(e)
    return text[1:-1] if isinstance(e, KeyError) and len(text) > 1 else text

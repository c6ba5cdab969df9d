"""The network endpoints' pure parts (documents, request bodies, filters) and their
routes over in-memory fakes of the network and container services."""

from __future__ import annotations

import asyncio
import calendar
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.api.networks import (
    NetworksApi,
    Users,
    create_args,
    endpoint_config,
    list_filters,
    matches,
    network_doc,
    prune_matches,
    until_cutoff,
)
from agent.containers.service import Conflict as ContainerConflict
from agent.network.base import NetworkError
from agent.network.service import Conflict, Network, NotFound
from orchestr.api.http import HttpError, Response
from orchestr.cli.networks import ipam_configs
from orchestr.errors import OrchestrError

pytestmark = pytest.mark.unit

SWAGGER = Path(__file__).resolve().parents[1] / "data" / "docker-engine-api-v1.41.yaml"
CREATED = "2026-01-02T03:04:05.000000000Z"
CREATED_AT = calendar.timegm((2026, 1, 2, 3, 4, 5, 0, 0, 0))
NET_ID = "7d86d31b1478e7cca9ebed7e73aa0fdeec46c5ca29497431d3007d2d9e15ed99"
CID = "19a4d5d687db25203351ed79d478946f861258f018fe384f229f2efa4b23513c"


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found: dict[str, Any] = yaml.load(SWAGGER.read_text(), Loader=loader)["definitions"]
    return found


def user_net(**kw: Any) -> Network:
    fields: dict[str, Any] = {
        "id": NET_ID,
        "name": "net01",
        "driver": "bridge",
        "created": CREATED,
        "subnet": "172.19.0.0/16",
        "gateway": "172.19.0.1",
        "bridge": "br-7d86d31b1478",
    }
    fields.update(kw)
    return Network(**fields)


def builtin(name: str) -> Network:
    driver = {"bridge": "bridge", "host": "host", "none": "null"}[name]
    if name == "bridge":
        return Network(
            "b" * 64,
            "bridge",
            "bridge",
            CREATED,
            subnet="172.17.0.0/16",
            gateway="172.17.0.1",
            bridge="orchestr0",
            options={"com.docker.network.bridge.name": "orchestr0"},
        )
    return Network(name[0] * 64, name, driver, CREATED)


def running(ip: str = "172.19.0.2") -> dict[str, Any]:
    return {
        "NetworkID": NET_ID,
        "EndpointID": "e" * 64,
        "IPAddress": ip,
        "IPPrefixLen": 16,
        "Gateway": "172.19.0.1",
        "MacAddress": "02:42:ac:13:00:02",
        "Aliases": ["web"],
        "IPAMConfig": None,
    }


def stopped() -> dict[str, Any]:
    return {"NetworkID": NET_ID, "Aliases": None, "IPAMConfig": None}


# -- the document --------------------------------------------------------------------------


def check_against(doc: dict[str, Any], definitions: dict[str, Any]) -> None:
    """Every key the swagger's Network has, with its JSON type."""
    types = {"string": str, "boolean": bool, "object": dict, "array": list}
    network = definitions["Network"]["properties"]
    for key, schema in network.items():
        assert key in doc, key
        if "type" in schema:
            assert isinstance(doc[key], types[schema["type"]]), key
    ipam = definitions["IPAM"]["properties"]
    assert set(doc["IPAM"]) == set(ipam)
    assert isinstance(doc["IPAM"]["Config"], list)
    for entry in doc["IPAM"]["Config"]:
        assert set(entry) <= {"Subnet", "IPRange", "Gateway", "AuxiliaryAddresses"}
    container = definitions["NetworkContainer"]["properties"]
    for entry in doc["Containers"].values():
        assert set(entry) == set(container)
        assert all(isinstance(v, str) for v in entry.values())
    assert all(isinstance(v, str) for v in doc["Options"].values())
    assert all(isinstance(v, str) for v in doc["Labels"].values())


def test_a_bridge_network_without_users_has_the_swagger_shape(
    definitions: dict[str, Any],
) -> None:
    doc = network_doc(user_net(labels={"a": "b"}), [])
    check_against(doc, definitions)
    assert doc["Name"] == "net01" and doc["Id"] == NET_ID and doc["Created"] == CREATED
    assert doc["Scope"] == "local" and doc["Driver"] == "bridge"
    assert doc["IPAM"] == {
        "Driver": "default",
        "Options": {},
        "Config": [{"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"}],
    }
    assert doc["Containers"] == {} and doc["Options"] == {} and doc["Labels"] == {"a": "b"}
    assert doc["Ingress"] is False and doc["ConfigOnly"] is False
    assert doc["ConfigFrom"] == {"Network": ""}


def test_running_users_are_listed_with_their_addresses_and_stopped_ones_not(
    definitions: dict[str, Any],
) -> None:
    users: Users = [(CID, "test", running()), ("c" * 64, "idle", stopped())]
    doc = network_doc(user_net(), users)
    check_against(doc, definitions)
    assert doc["Containers"] == {
        CID: {
            "Name": "test",
            "EndpointID": "e" * 64,
            "MacAddress": "02:42:ac:13:00:02",
            "IPv4Address": "172.19.0.2/16",
            "IPv6Address": "",
        }
    }


def test_ip_range_aux_addresses_and_ipv6_show_in_the_ipam_config() -> None:
    net = user_net(
        ip_range="172.19.1.0/24",
        aux_addresses={"router": "172.19.0.5"},
        enable_ipv6=True,
        subnet6="fd00:1::/64",
        gateway6="fd00:1::1",
    )
    doc = network_doc(net, [])
    assert doc["EnableIPv6"] is True
    assert doc["IPAM"]["Config"] == [
        {
            "Subnet": "172.19.0.0/16",
            "Gateway": "172.19.0.1",
            "IPRange": "172.19.1.0/24",
            "AuxiliaryAddresses": {"router": "172.19.0.5"},
        },
        {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"},
    ]


@pytest.mark.parametrize("name", ["host", "none"])
def test_host_and_none_have_no_ipam_config(name: str, definitions: dict[str, Any]) -> None:
    doc = network_doc(builtin(name), [])
    check_against(doc, definitions)
    assert doc["Driver"] == ("null" if name == "none" else "host")
    assert doc["IPAM"]["Config"] == [] and doc["Options"] == {}


def test_the_default_bridge_shows_dockers_bridge_options(definitions: dict[str, Any]) -> None:
    doc = network_doc(builtin("bridge"), [])
    check_against(doc, definitions)
    example = definitions["Network"]["example"]["Options"]
    assert set(doc["Options"]) == set(example)
    assert doc["Options"]["com.docker.network.bridge.name"] == "orchestr0"
    assert doc["Options"]["com.docker.network.driver.mtu"] == "1500"
    unmasqueraded = builtin("bridge")
    unmasqueraded.masquerade = False
    options = network_doc(unmasqueraded, [])["Options"]
    assert options["com.docker.network.bridge.enable_ip_masquerade"] == "false"


def test_user_network_options_are_its_own() -> None:
    net = user_net(options={"com.docker.network.driver.mtu": "1400"})
    assert network_doc(net, [])["Options"] == {"com.docker.network.driver.mtu": "1400"}


# -- create bodies -------------------------------------------------------------------------


def status_and_message(body: object) -> tuple[int, str]:
    with pytest.raises(HttpError) as raised:
        create_args(body)
    return raised.value.status, raised.value.message


def test_the_docker_cli_create_body_maps_to_the_service_arguments() -> None:
    body = {
        "Name": "net01",
        "CheckDuplicate": True,
        "Driver": "bridge",
        "Scope": "",
        "EnableIPv6": True,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": [
                {
                    "Subnet": "172.20.0.0/16",
                    "IPRange": "172.20.10.0/24",
                    "Gateway": "172.20.10.11",
                    "AuxiliaryAddresses": {"host1": "172.20.0.5"},
                },
                {"Subnet": "2001:db8:abcd::/64", "Gateway": "2001:db8:abcd::1011"},
            ],
        },
        "Internal": True,
        "Attachable": False,
        "Ingress": False,
        "ConfigOnly": False,
        "ConfigFrom": None,
        "Options": {"com.docker.network.driver.mtu": "1400"},
        "Labels": {"k": "v"},
    }
    assert create_args(body) == {
        "name": "net01",
        "driver": "bridge",
        "internal": True,
        "attachable": False,
        "enable_ipv6": True,
        "labels": {"k": "v"},
        "options": {"com.docker.network.driver.mtu": "1400"},
        "subnet": "172.20.0.0/16",
        "gateway": "172.20.10.11",
        "ip_range": "172.20.10.0/24",
        "aux_addresses": {"host1": "172.20.0.5"},
        "subnet6": "2001:db8:abcd::/64",
        "gateway6": "2001:db8:abcd::1011",
    }


def test_a_bare_name_gets_the_defaults() -> None:
    assert create_args({"Name": "n"}) == {
        "name": "n",
        "driver": "bridge",
        "internal": False,
        "attachable": False,
        "enable_ipv6": False,
        "labels": {},
        "options": {},
    }


def test_keys_match_case_insensitively_as_go_decodes_them() -> None:
    args = create_args(
        {"name": "n", "driver": "bridge", "ipam": {"config": [{"subnet": "10.9.0.0/24"}]}}
    )
    assert args["name"] == "n" and args["subnet"] == "10.9.0.0/24"


def test_an_empty_ipam_entry_leaves_the_subnet_to_the_pools() -> None:
    assert "subnet" not in create_args({"Name": "n", "IPAM": {"Config": [{}]}})


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "JSON object"),
        ({}, "Name"),
        ({"Name": ""}, "Name"),
        ({"Name": 5}, "Name: expected a string"),
        ({"Name": "n", "Driver": 1}, "Driver"),
        ({"Name": "n", "Internal": "yes"}, "Internal: expected a boolean"),
        ({"Name": "n", "EnableIPv6": 1}, "EnableIPv6"),
        ({"Name": "n", "Labels": ["a"]}, "Labels: expected an object"),
        ({"Name": "n", "Labels": {"a": 1}}, "Labels.a"),
        ({"Name": "n", "Options": {"o": True}}, "Options.o"),
        ({"Name": "n", "IPAM": []}, "IPAM: expected an object"),
        ({"Name": "n", "IPAM": {"Driver": "dhcp"}}, "IPAM.Driver: the dhcp IPAM driver"),
        ({"Name": "n", "IPAM": {"Config": {}}}, "IPAM.Config: expected a list"),
        ({"Name": "n", "IPAM": {"Config": ["x"]}}, "IPAM.Config[0]"),
        ({"Name": "n", "IPAM": {"Config": [{"Subnet": "nope"}]}}, "IPAM.Config[0].Subnet"),
        ({"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0"}]}}, "invalid CIDR"),
        (
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.1.2.3/16"}]}},
            "it should be 10.1.0.0/16",
        ),
        ({"Name": "n", "IPAM": {"Config": [{"Gateway": "10.0.0.1"}]}}, "needs a subnet"),
        (
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "fd00::1"}]}},
            "IPAM.Config[0].Gateway",
        ),
        (
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "x"}]}},
            "invalid IP address x",
        ),
        (
            {"Name": "n", "IPAM": {"Config": [{"Subnet": "fd00::/64", "IPRange": "fd00::/80"}]}},
            "not supported for IPv6",
        ),
        ({"Name": "n", "Ingress": True}, "Ingress"),
        ({"Name": "n", "ConfigOnly": True}, "ConfigOnly"),
        ({"Name": "n", "ConfigFrom": {"Network": "cfg"}}, "ConfigFrom"),
        ({"Name": "n", "Scope": "global"}, "Scope"),
        ({"Name": "n", "Driver": "overlay", "Options": {"encrypted": ""}}, "encrypted"),
    ],
)
def test_bad_create_bodies_are_400_naming_the_field(body: object, words: str) -> None:
    status, message = status_and_message(body)
    assert status == 400
    assert words in message


def test_an_overlay_network_on_a_cluster_of_one_is_a_bridge() -> None:
    # What `docker stack deploy` sends for a stack's default network.
    body = {"Name": "st_default", "Driver": "overlay", "Scope": "swarm", "Attachable": False}
    args = create_args({**body, "Labels": {"com.docker.stack.namespace": "st"}})
    assert args["driver"] == "bridge" and args["labels"] == {"com.docker.stack.namespace": "st"}
    assert create_args({"Name": "b", "Scope": "swarm"})["driver"] == "bridge"


def test_two_subnets_of_one_family_are_refused() -> None:
    two_v4 = [{"Subnet": "10.1.0.0/24"}, {"Subnet": "10.2.0.0/24"}]
    status, message = status_and_message({"Name": "n", "IPAM": {"Config": two_v4}})
    assert (status, message) == (400, "IPAM.Config[1]: only one IPv4 subnet per network")
    two_v6 = [{"Subnet": "fd00:1::/64"}, {"Subnet": "fd00:2::/64"}]
    _, message = status_and_message({"Name": "n", "IPAM": {"Config": two_v6}})
    assert "only one IPv6 subnet" in message


# -- connect bodies ------------------------------------------------------------------------


def test_the_docker_cli_connect_body_keeps_only_what_is_set() -> None:
    sent: dict[str, Any] = {
        "IPAMConfig": {"IPv4Address": "", "IPv6Address": "", "LinkLocalIPs": None},
        "Links": None,
        "Aliases": None,
        "DriverOpts": None,
        "NetworkID": "",
        "EndpointID": "",
        "Gateway": "",
        "IPAddress": "",
        "MacAddress": "",
    }
    assert endpoint_config(sent) == {}
    assert endpoint_config(None) == {}
    sent["IPAMConfig"] = {"IPv4Address": "172.19.0.9"}
    sent["Aliases"] = ["db", "sql"]
    assert endpoint_config(sent) == {
        "Aliases": ["db", "sql"],
        "IPAMConfig": {"IPv4Address": "172.19.0.9"},
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "EndpointConfig: expected an object"),
        ({"Aliases": "db"}, "EndpointConfig.Aliases"),
        ({"IPAMConfig": {"IPv4Address": "10.0.0.300"}}, "invalid IP address"),
        ({"IPAMConfig": {"IPv4Address": "fd00::2"}}, "not an IPv4 address"),
        ({"IPAMConfig": {"IPv6Address": "fd00::2"}}, "IPv6Address"),
        ({"IPAMConfig": {"LinkLocalIPs": ["169.254.0.2"]}}, "LinkLocalIPs"),
        ({"Links": ["a:b"]}, "EndpointConfig.Links: not supported"),
        ({"MacAddress": "02:42:ac:13:00:09"}, "MacAddress"),
    ],
)
def test_bad_endpoint_configs_are_400(body: object, words: str) -> None:
    with pytest.raises(HttpError) as raised:
        endpoint_config(body)
    assert raised.value.status == 400 and words in raised.value.message


# -- filters -------------------------------------------------------------------------------


def listed(filters: dict[str, Any], users: Users | None = None, net: Network | None = None) -> bool:
    return matches(net or user_net(labels={"env": "prod", "team": "a"}), users or [], filters)


def test_name_and_id_match_parts_as_regular_expressions() -> None:
    assert listed({"name": ["net"]}) and listed({"name": ["t0"]}) and listed({"name": ["^net0"]})
    assert not listed({"name": ["^et"]}) and not listed({"name": ["other"]})
    assert listed({"name": {"other": True, "net01": True}})  # any value of a key
    assert not listed({"name": ["("]})  # not a regular expression: no match
    assert listed({"id": ["7d86d3"]}) and listed({"id": [NET_ID]})
    assert not listed({"id": ["ffff"]})


def test_driver_scope_and_type() -> None:
    assert listed({"driver": ["bridge"]}) and not listed({"driver": ["host"]})
    assert listed({"scope": ["local"]}) and not listed({"scope": ["swarm"]})
    assert listed({"type": ["custom"]}) and not listed({"type": ["builtin"]})
    assert listed({"type": ["builtin"]}, net=builtin("host"))
    assert listed({"type": ["custom", "builtin"]}, net=builtin("none"))


def test_every_label_filter_must_hold() -> None:
    assert listed({"label": ["env"]}) and listed({"label": ["env=prod"]})
    assert listed({"label": ["env=prod", "team"]})
    assert not listed({"label": ["env=prod", "team=b"]})
    assert not listed({"label": ["env=dev"]}) and not listed({"label": ["other"]})


def test_dangling_means_user_defined_and_unused() -> None:
    users: Users = [(CID, "test", stopped())]
    assert listed({"dangling": ["true"]}) and listed({"dangling": ["1"]})
    assert not listed({"dangling": ["true"]}, users)
    assert listed({"dangling": ["false"]}, users) and not listed({"dangling": ["0"]})
    assert not listed({"dangling": ["true"]}, net=builtin("bridge"))
    assert listed({"dangling": ["false"]}, net=builtin("host"))


def test_every_key_must_match() -> None:
    assert listed({"name": ["net01"], "driver": ["bridge"]})
    assert not listed({"name": ["net01"], "driver": ["host"]})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"bogus": ["x"]}, "invalid filter 'bogus'"),
        ({"type": ["other"]}, "'type'='other'"),
        ({"dangling": ["maybe"]}, "invalid value for filter 'dangling'"),
        ({"dangling": ["true", "false"]}, "more than one value"),
        ({"name": "net"}, "expected a list"),
        (["name"], "expected a JSON object"),
    ],
)
def test_bad_list_filters_are_400(raw: object, words: str) -> None:
    with pytest.raises(HttpError) as raised:
        list_filters(raw)
    assert raised.value.status == 400 and words in raised.value.message


def test_until_takes_durations_timestamps_and_dates() -> None:
    now = 1_800_000_000.0
    assert until_cutoff("24h", now) == now - 86400
    assert until_cutoff("1h30m", now) == now - 5400
    assert until_cutoff("1.5s", now) == now - 1.5
    assert until_cutoff("1700000000", now) == 1_700_000_000
    assert until_cutoff("1700000000.5", now) == 1_700_000_000.5
    assert until_cutoff("0", now) == 0
    assert until_cutoff("2026-01-02T03:04:05Z", now) == CREATED_AT
    assert until_cutoff("2026-01-02T03:04:05.25Z", now) == CREATED_AT + 0.25
    assert until_cutoff("2026-01-02T05:04:05+02:00", now) == CREATED_AT
    assert until_cutoff("2026-01-02T01:04:05-02:00", now) == CREATED_AT
    with pytest.raises(HttpError) as raised:
        until_cutoff("yesterday", now)
    assert raised.value.status == 400 and "until" in raised.value.message


def test_prune_takes_unused_user_networks_under_the_filters() -> None:
    now = CREATED_AT + 3600
    net = user_net(labels={"env": "dev"})
    assert prune_matches(net, [], {}, now)
    assert not prune_matches(net, [(CID, "test", stopped())], {}, now)
    for name in ("bridge", "host", "none"):
        assert not prune_matches(builtin(name), [], {}, now)
    assert prune_matches(net, [], {"until": ["30m"]}, now)
    assert not prune_matches(net, [], {"until": ["2h"]}, now)
    assert prune_matches(net, [], {"label": ["env=dev"]}, now)
    assert not prune_matches(net, [], {"label": ["env=prod"]}, now)
    assert not prune_matches(net, [], {"label!": ["env"]}, now)
    assert prune_matches(net, [], {"label!": ["env=prod"]}, now)
    with pytest.raises(HttpError):
        prune_matches(net, [], {"name": ["x"]}, now)


# -- the CLI's IPAM config -----------------------------------------------------------------


def test_cli_ipam_config_puts_each_gateway_and_range_on_its_subnet() -> None:
    assert ipam_configs([]) == []
    configs = ipam_configs(
        ["10.1.0.0/16", "fd00:1::/64"],
        ["10.1.2.0/24"],
        ["fd00:1::1", "10.1.0.254"],
        {"r": "10.1.0.5"},
    )
    assert configs == [
        {
            "Subnet": "10.1.0.0/16",
            "IPRange": "10.1.2.0/24",
            "Gateway": "10.1.0.254",
            "AuxiliaryAddresses": {"r": "10.1.0.5"},
        },
        {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"},
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (([], [], ["10.0.0.1"]), "corresponding subnet"),
        ((["10.0.0.0/16", "10.0.1.0/24"],), "overlapping"),
        ((["10.0.0.0/24"], [], ["10.9.0.1"]), "no matching subnet for gateway"),
        ((["10.0.0.0/24"], ["10.9.0.0/28"]), "no matching subnet for range"),
        ((["10.0.0.0/24"], [], [], {"x": "10.9.0.1"}), "aux-address"),
        ((["10.0.0.0/24", "10.1.0.0/24"], [], ["10.0.0.1", "10.0.0.2"]), "multiple gateways"),
        ((["10.0.0.0/24"], [], ["nope"]), "invalid address"),
    ],
)
def test_cli_ipam_config_errors(args: tuple[Any, ...], words: str) -> None:
    with pytest.raises(OrchestrError) as raised:
        ipam_configs(*args)
    assert words in str(raised.value)


# -- the routes, over fakes ----------------------------------------------------------------


class FakeRequest:
    def __init__(self, body: object = None, **query: str) -> None:
        self._body = body
        self.query = query
        self.params: dict[str, str] = {}

    async def json(self, *, required: bool = True) -> Any:
        if self._body is None and required:
            raise HttpError(400, "the request needs a JSON body")
        return self._body

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, default)

    def json_arg(self, name: str) -> Any:
        value = self.query.get(name)
        return json.loads(value) if value else None


class FakeNetworks:
    """NetworkService's record keeping without the kernel."""

    def __init__(self, *networks: Network) -> None:
        self.networks = {n.id: n for n in networks}

    def get(self, ref: str) -> Network:
        for n in self.networks.values():
            if ref in (n.id, n.name) or n.id.startswith(ref):
                return n
        raise NotFound(f"network {ref} not found")

    def all(self) -> list[Network]:
        return list(self.networks.values())

    def create(self, name: str, **kw: Any) -> Network:
        if kw["driver"] != "bridge":
            raise NetworkError(f"the {kw['driver']} driver is not supported")
        if any(n.name == name for n in self.networks.values()):
            raise Conflict(f"network with name {name} already exists")
        net = user_net(id=f"{len(self.networks):064x}", name=name)
        self.networks[net.id] = net
        return net

    def remove(self, ref: str, users: Any) -> Network:
        net = self.get(ref)
        if net.predefined:
            raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
        if users(net.id):
            raise Conflict(f"error while removing network: network {net.name} has active endpoints")
        return self.networks.pop(net.id)


class FakeContainers:
    def __init__(self, users: dict[str, Users] | None = None) -> None:
        self.users = users or {}
        self.calls: list[tuple[Any, ...]] = []
        self.error: Exception | None = None

    def network_users(self, network_id: str) -> Users:
        return self.users.get(network_id, [])

    def is_task(self, container_id: str) -> bool:
        return False

    def connect(self, container: str, network: Network, settings: dict[str, Any]) -> None:
        self.calls.append(("connect", container, network.name, settings))
        if self.error is not None:
            raise self.error

    def disconnect(self, container: str, network: Network, force: bool) -> None:
        self.calls.append(("disconnect", container, network.name, force))
        if self.error is not None:
            raise self.error


def api(*networks: Network, users: dict[str, Users] | None = None) -> NetworksApi:
    fakes: Any = FakeNetworks(*(networks or (builtin("bridge"), builtin("host"), user_net())))
    return NetworksApi(fakes, FakeContainers(users))


def call(api_: NetworksApi, method: str, path: str, request: FakeRequest) -> Response:
    found = api_.router.match(method, path)
    assert found is not None, path
    handler, params = found
    request.params = params
    response: Response | None = asyncio.run(handler(request))  # type: ignore[arg-type]
    assert response is not None
    return response


def status_of(api_: NetworksApi, method: str, path: str, request: FakeRequest) -> int:
    try:
        return call(api_, method, path, request).status
    except HttpError as e:
        return e.status


def test_create_answers_201_with_the_id_and_409_on_a_taken_name() -> None:
    a = api()
    response = call(a, "POST", "/networks/create", FakeRequest({"Name": "new"}))
    assert response.status == 201
    assert set(json.loads(response.body)) == {"Id", "Warning"}
    assert status_of(a, "POST", "/networks/create", FakeRequest({"Name": "new"})) == 409
    bad_driver = FakeRequest({"Name": "x", "Driver": "macvlan"})
    assert status_of(a, "POST", "/networks/create", bad_driver) == 400
    assert status_of(a, "POST", "/networks/create", FakeRequest()) == 400


def test_the_list_filters_and_leaves_containers_to_inspect() -> None:
    a = api(users={NET_ID: [(CID, "test", running())]})
    docs = json.loads(call(a, "GET", "/networks", FakeRequest()).body)
    assert [d["Name"] for d in docs] == ["bridge", "host", "net01"]
    assert all(d["Containers"] == {} for d in docs)
    custom = FakeRequest(filters=json.dumps({"type": {"custom": True}}))
    assert [d["Name"] for d in json.loads(call(a, "GET", "/networks", custom).body)] == ["net01"]
    dangling = FakeRequest(filters=json.dumps({"dangling": ["true"]}))
    assert json.loads(call(a, "GET", "/networks", dangling).body) == []
    bogus = FakeRequest(filters=json.dumps({"bogus": ["x"]}))
    assert status_of(a, "GET", "/networks", bogus) == 400
    inspected = json.loads(call(a, "GET", "/networks/net01", FakeRequest()).body)
    assert list(inspected["Containers"]) == [CID]


def test_inspect_and_remove_answer_404_for_unknown_networks() -> None:
    a = api()
    with pytest.raises(HttpError) as raised:
        call(a, "GET", "/networks/nope", FakeRequest())
    assert (raised.value.status, raised.value.message) == (404, "network nope not found")
    assert status_of(a, "GET", "/networks/net01", FakeRequest(scope="global")) == 404
    assert status_of(a, "DELETE", "/networks/nope", FakeRequest()) == 404


def test_user_bridge_networks_serve_services_on_a_cluster_of_one() -> None:
    """The docker CLI checks `service create --network N` with scope=swarm."""
    a = api()
    assert status_of(a, "GET", "/networks/net01", FakeRequest(scope="swarm")) == 200
    assert status_of(a, "GET", "/networks/bridge", FakeRequest(scope="swarm")) == 404


def test_remove_is_204_and_403_for_predefined_or_used_networks() -> None:
    a = api(users={NET_ID: [(CID, "test", stopped())]})
    assert status_of(a, "DELETE", "/networks/bridge", FakeRequest()) == 403
    with pytest.raises(HttpError) as raised:
        call(a, "DELETE", "/networks/net01", FakeRequest())
    assert raised.value.status == 403 and "has active endpoints" in raised.value.message
    b = api()
    assert call(b, "DELETE", "/networks/net01", FakeRequest()).status == 204


def test_connect_and_disconnect_pass_the_settings_and_map_errors() -> None:
    a = api()
    containers: FakeContainers = a.containers  # type: ignore[assignment]
    body = {"Container": "web", "EndpointConfig": {"Aliases": ["w"], "IPAMConfig": {}}}
    assert call(a, "POST", "/networks/net01/connect", FakeRequest(body)).status == 200
    disconnect = FakeRequest({"Container": "web", "Force": True})
    assert call(a, "POST", "/networks/net01/disconnect", disconnect).status == 200
    assert containers.calls == [
        ("connect", "web", "net01", {"Aliases": ["w"]}),
        ("disconnect", "web", "net01", True),
    ]
    assert status_of(a, "POST", "/networks/nope/connect", FakeRequest(body)) == 404
    assert status_of(a, "POST", "/networks/net01/connect", FakeRequest({})) == 400
    for error, status in [
        (LookupError("No such container: web"), 404),
        (ValueError("bad alias"), 400),
        (NetworkError("Address already in use"), 403),
        (Conflict("endpoint with name web already exists in network net01"), 403),
        (ContainerConflict("container web is paused"), 409),
    ]:
        containers.error = error
        assert status_of(a, "POST", "/networks/net01/connect", FakeRequest(body)) == status
    bad_force = FakeRequest({"Container": "web", "Force": "yes"})
    assert status_of(a, "POST", "/networks/net01/disconnect", bad_force) == 400


def test_prune_removes_unused_user_networks_only() -> None:
    used = user_net(id="1" * 64, name="used")
    a = api(
        builtin("bridge"),
        user_net(),
        used,
        user_net(id="2" * 64, name="kept", labels={"keep": "1"}),
        users={used.id: [(CID, "test", stopped())]},
    )
    keep = FakeRequest(filters=json.dumps({"label!": ["keep"]}))
    deleted = json.loads(call(a, "POST", "/networks/prune", keep).body)
    assert deleted == {"NetworksDeleted": ["net01"]}
    assert status_of(a, "POST", "/networks/prune", FakeRequest(filters='{"name": ["x"]}')) == 400
    until = FakeRequest(filters=json.dumps({"until": ["nope"]}))
    assert status_of(a, "POST", "/networks/prune", until) == 400

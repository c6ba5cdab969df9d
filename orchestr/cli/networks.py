"""`orchestr network …`: create, ls, inspect, rm, connect, disconnect and prune,
through the daemon's Engine API (the same calls `docker network` makes).

`create` takes several --subnet (one IPv4, one IPv6 with --ipv6) and hands each
--gateway, --ip-range and --aux-address to the subnet that holds it, as the
docker CLI does (`ipam_configs`).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from orchestr.cli.common import client_of, format_option, grouped_filters, key_values
from orchestr.cli.output import print_json, print_table
from orchestr.client import ApiError
from orchestr.errors import OrchestrError


def _contains(subnet: str, item: str) -> bool:
    """Whether `item` (an address or a range) lies inside `subnet`."""
    try:
        net = ipaddress.ip_network(subnet, strict=False)
        if "/" in item:
            other = ipaddress.ip_network(item, strict=False)
            return other.version == net.version and other.subnet_of(net)  # type: ignore[arg-type]
        address = ipaddress.ip_address(item)
    except ValueError as e:
        raise OrchestrError(f"invalid address or subnet: {e}") from None
    return address.version == net.version and address in net


def ipam_configs(
    subnets: Sequence[str],
    ip_ranges: Sequence[str] = (),
    gateways: Sequence[str] = (),
    aux_addresses: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The IPAM.Config of `network create`: one entry per subnet, each range, gateway
    and auxiliary address on the subnet that holds it (the docker CLI's rules)."""
    if len(subnets) < len(ip_ranges) or len(subnets) < len(gateways):
        raise OrchestrError("every ip-range or gateway must have a corresponding subnet")
    configs: dict[str, dict[str, Any]] = {}
    for subnet in subnets:
        for other in configs:
            if _contains(subnet, other) or _contains(other, subnet):
                raise OrchestrError("multiple overlapping subnet configuration is not supported")
        configs[subnet] = {"Subnet": subnet}
    for key, kind, values in (
        ("IPRange", "range", ip_ranges),
        ("Gateway", "gateway", gateways),
    ):
        for value in values:
            holders = [s for s in subnets if _contains(s, value)]
            if not holders:
                raise OrchestrError(f"no matching subnet for {kind} {value}")
            for subnet in holders:
                if key in configs[subnet]:
                    raise OrchestrError(
                        f"cannot configure multiple {kind}s ({value}, {configs[subnet][key]}) "
                        f"on the same subnet ({subnet})"
                    )
                configs[subnet][key] = value
    for name, address in (aux_addresses or {}).items():
        holders = [s for s in subnets if _contains(s, address)]
        if not holders:
            raise OrchestrError(f"no matching subnet for aux-address {address}")
        for subnet in holders:
            configs[subnet].setdefault("AuxiliaryAddresses", {})[name] = address
    return list(configs.values())


@click.group("network")
def network() -> None:
    """Manage networks (create, ls, inspect, rm, connect, disconnect, prune)."""


@network.command("create")
@click.argument("name")
@click.option("-d", "--driver", default="bridge", show_default=True, help="Network driver.")
@click.option(
    "--subnet", "subnets", multiple=True, help="Subnet in CIDR form (default: from the pools)."
)
@click.option("--gateway", "gateways", multiple=True, help="Gateway of a subnet.")
@click.option("--ip-range", "ip_ranges", multiple=True, help="Give containers addresses from it.")
@click.option("--aux-address", "aux", multiple=True, metavar="NAME=IP", help="Reserved address.")
@click.option("--internal", is_flag=True, help="No traffic in or out of the network.")
@click.option("--attachable", is_flag=True, help="Containers may join it.")
@click.option("--ipv6", is_flag=True, help="Enable IPv6 (give an IPv6 --subnet too).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label.")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Driver option.")
@click.pass_context
def network_create(
    ctx: click.Context,
    name: str,
    driver: str,
    subnets: tuple[str, ...],
    gateways: tuple[str, ...],
    ip_ranges: tuple[str, ...],
    aux: tuple[str, ...],
    internal: bool,
    attachable: bool,
    ipv6: bool,
    labels: tuple[str, ...],
    opts: tuple[str, ...],
) -> None:
    """Create a network; prints its ID."""
    aux_addresses = key_values(aux, "--aux-address", bare=False)
    body = {
        "Name": name,
        "CheckDuplicate": True,
        "Driver": driver,
        "Internal": internal,
        "Attachable": attachable,
        "EnableIPv6": ipv6,
        "IPAM": {
            "Driver": "default",
            "Config": ipam_configs(subnets, ip_ranges, gateways, aux_addresses),
            "Options": {},
        },
        "Options": key_values(opts, "-o/--opt", bare=False),
        "Labels": key_values(labels, "--label", bare=True),
    }
    with client_of(ctx) as client:
        created = client.json("POST", "/networks/create", json=body)
    if created.get("Warning"):
        click.echo(f"WARNING: {created['Warning']}", err=True)
    click.echo(created["Id"])


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only show network IDs.")
@click.option("--no-trunc", is_flag=True, help="Show full network IDs.")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin, scope=, dangling=.",
)
@format_option
@click.pass_context
def network_ls(
    ctx: click.Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...], fmt: str
) -> None:
    """List networks."""
    params = {"filters": json.dumps(grouped_filters(filters))} if filters else {}
    with client_of(ctx) as client:
        networks = client.json("GET", "/networks", params=params) or []
    networks.sort(key=lambda n: n["Name"])

    def short(network_id: str) -> str:
        return network_id if no_trunc else network_id[:12]

    if fmt == "json":
        print_json(networks)
    elif quiet:
        for n in networks:
            click.echo(short(n["Id"]))
    else:
        print_table(
            ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
            [[short(n["Id"]), n["Name"], n["Driver"], n["Scope"]] for n in networks],
        )


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def network_inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show networks' details as JSON."""
    docs, failed = [], []
    with client_of(ctx) as client:
        for name in names:
            try:
                docs.append(client.json("GET", f"/networks/{name}"))
            except ApiError as e:
                if e.status != 404:
                    raise
                failed.append(str(e))
    print_json(docs)
    if failed:
        for message in failed:
            click.echo(f"orchestr: {message}", err=True)
        sys.exit(1)


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Do not complain about missing networks.")
@click.pass_context
def network_rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove networks no container uses (prints each one removed)."""
    failed = []
    with client_of(ctx) as client:
        for name in names:
            try:
                client.request("DELETE", f"/networks/{name}")
            except ApiError as e:
                if force and e.status == 404:
                    continue
                click.echo(f"orchestr: {e}", err=True)
                failed.append(name)
                continue
            click.echo(name)
    if failed:
        sys.exit(1)


@network.command("connect")
@click.argument("name")
@click.argument("container")
@click.option("--alias", "aliases", multiple=True, help="A name for it on this network.")
@click.option("--ip", help="Its IPv4 address on this network.")
@click.pass_context
def network_connect(
    ctx: click.Context, name: str, container: str, aliases: tuple[str, ...], ip: str | None
) -> None:
    """Connect a container to a network."""
    endpoint: dict[str, Any] = {
        "IPAMConfig": {"IPv4Address": ip or ""},
        "Aliases": list(aliases),
    }
    with client_of(ctx) as client:
        client.request(
            "POST",
            f"/networks/{name}/connect",
            json={"Container": container, "EndpointConfig": endpoint},
        )


@network.command("disconnect")
@click.argument("name")
@click.argument("container")
@click.option("-f", "--force", is_flag=True, help="Force the container to disconnect.")
@click.pass_context
def network_disconnect(ctx: click.Context, name: str, container: str, force: bool) -> None:
    """Disconnect a container from a network."""
    with client_of(ctx) as client:
        client.request(
            "POST",
            f"/networks/{name}/disconnect",
            json={"Container": container, "Force": force},
        )


@network.command("prune")
@click.option(
    "--filter", "filters", multiple=True, metavar="KEY=VALUE", help="until=, label=, label!="
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def network_prune(ctx: click.Context, filters: tuple[str, ...], force: bool) -> None:
    """Remove the user-defined networks no container uses."""
    if not force:
        click.confirm(
            "WARNING! This will remove all custom networks not used by at least one "
            "container.\nAre you sure you want to continue?",
            abort=True,
        )
    params = {"filters": json.dumps(grouped_filters(filters))} if filters else {}
    with client_of(ctx, timeout=None) as client:
        result = client.json("POST", "/networks/prune", params=params)
    deleted = result.get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)
        click.echo()

"""`orchestr volume …`: create, ls, inspect, rm and prune, through the daemon's Engine
API (the same calls `docker volume` makes)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from orchestr.cli.common import client_of, format_option, grouped_filters, key_values
from orchestr.cli.output import human_size, print_json, print_table
from orchestr.errors import OrchestrError


@click.group("volume")
def volume() -> None:
    """Manage volumes (create, ls, inspect, rm, prune)."""


@volume.command("create")
@click.argument("name", required=False)
@click.option(
    "-d", "--driver", default="local", show_default=True, help="Volume driver (only local)."
)
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Driver option.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label.")
@click.pass_context
def volume_create(
    ctx: click.Context,
    name: str | None,
    driver: str,
    opts: tuple[str, ...],
    labels: tuple[str, ...],
) -> None:
    """Create a volume (no NAME: an anonymous one with a generated name)."""
    body: dict[str, Any] = {
        "Name": name or "",
        "Driver": driver,
        "DriverOpts": key_values(opts, "-o/--opt", bare=False),
        "Labels": key_values(labels, "--label", bare=True),
    }
    with client_of(ctx) as client:
        created = client.json("POST", "/volumes/create", json=body)
    click.echo(created["Name"])


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only show volume names.")
@click.option(
    "-f",
    "--filter",
    "filters",
    multiple=True,
    metavar="KEY=VALUE",
    help="name=, label=KEY[=VALUE], dangling=true|false, driver=.",
)
@format_option
@click.pass_context
def volume_ls(ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List volumes."""
    params = {"filters": json.dumps(grouped_filters(filters))} if filters else {}
    with client_of(ctx) as client:
        volumes = client.json("GET", "/volumes", params=params)["Volumes"] or []
    volumes.sort(key=lambda v: v["Name"])
    if fmt == "json":
        print_json(volumes)
    elif quiet:
        for v in volumes:
            click.echo(v["Name"])
    else:
        print_table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in volumes])


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def volume_inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show volumes' details as JSON."""
    with client_of(ctx) as client:
        print_json([client.json("GET", f"/volumes/{name}") for name in names])


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Do not complain about missing volumes.")
@click.pass_context
def volume_rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove volumes (never one a container uses)."""
    failed = []
    with client_of(ctx) as client:
        for name in names:
            try:
                client.request("DELETE", f"/volumes/{name}", params={"force": int(force)})
            except OrchestrError as e:
                click.echo(f"orchestr: {e}", err=True)
                failed.append(name)
                continue
            click.echo(name)
    if failed:
        sys.exit(1)


@volume.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Named volumes too, not only anonymous.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="label=…, label!=…")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def volume_prune(ctx: click.Context, all_: bool, filters: tuple[str, ...], force: bool) -> None:
    """Remove the volumes no container uses (anonymous ones only, unless -a)."""
    if not force:
        what = "all local volumes" if all_ else "anonymous local volumes"
        click.confirm(
            f"WARNING! This will remove {what} not used by at least one container.\n"
            "Are you sure you want to continue?",
            abort=True,
        )
    grouped = grouped_filters(filters)
    if "all" in grouped:
        raise click.BadParameter("use -a/--all instead of a filter", param_hint="--filter")
    grouped["all"] = ["true" if all_ else "false"]
    with client_of(ctx, timeout=None) as client:
        result = client.json("POST", "/volumes/prune", params={"filters": json.dumps(grouped)})
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        click.echo("Deleted Volumes:")
        for name in deleted:
            click.echo(name)
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")

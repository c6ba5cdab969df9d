"""`orchestr node ls|inspect|update` and `orchestr secret create|ls|inspect|rm`: the
cluster's nodes and secrets, as `docker node` and `docker secret` show them (the daemon
is a cluster of one; see docs/design/control-plane.md). Configs have no command of
their own here: `orchestr config` is Compose's (`docker compose config`); `docker
config` manages them, and stacks bring their own."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import click

from orchestr.cli.common import client_of, key_values
from orchestr.cli.output import print_json, print_table, stamp_age


def _q(name: str) -> str:
    return quote(name, safe="")


# -- nodes --------------------------------------------------------------------------------


@click.group("node")
def node() -> None:
    """The cluster's nodes (docker node)."""


@node.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.pass_context
def node_ls(ctx: click.Context, quiet: bool) -> None:
    """List the nodes."""
    with client_of(ctx) as client:
        nodes = client.json("GET", "/nodes") or []
    if quiet:
        click.echo("\n".join(n["ID"] for n in nodes))
        return
    rows = []
    for n in nodes:
        manager = n.get("ManagerStatus") or {}
        status = "Leader" if manager.get("Leader") else manager.get("Reachability", "")
        rows.append(
            [
                n["ID"],
                n["Description"]["Hostname"],
                n["Status"]["State"].title(),
                n["Spec"]["Availability"].title(),
                str(status).title(),
            ]
        )
    print_table(["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"], rows)


@node.command("inspect")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def node_inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Details of nodes as JSON (`self` is this one)."""
    with client_of(ctx) as client:
        print_json([client.json("GET", f"/nodes/{_q(r)}") for r in refs])


@node.command("update")
@click.argument("ref")
@click.option("--availability", type=click.Choice(["active", "pause", "drain"]))
@click.option("--role", type=click.Choice(["manager", "worker"]))
@click.option("--label-add", multiple=True, metavar="KEY=VALUE")
@click.option("--label-rm", multiple=True, metavar="KEY")
@click.pass_context
def node_update(
    ctx: click.Context,
    ref: str,
    availability: str | None,
    role: str | None,
    label_add: tuple[str, ...],
    label_rm: tuple[str, ...],
) -> None:
    """Change a node's availability, role or labels."""
    with client_of(ctx) as client:
        current = client.json("GET", f"/nodes/{_q(ref)}")
        spec = dict(current["Spec"])
        labels = {k: v for k, v in (spec.get("Labels") or {}).items() if k not in label_rm}
        labels.update(key_values(label_add, "--label-add", bare=True))
        spec["Labels"] = labels
        if availability:
            spec["Availability"] = availability
        if role:
            spec["Role"] = role
        client.request(
            "POST",
            f"/nodes/{current['ID']}/update",
            params={"version": current["Version"]["Index"]},
            json=spec,
        )
    click.echo(ref)


# -- secrets and configs ------------------------------------------------------------------


def _files(kind: str) -> click.Group:
    @click.group(kind, help=f"The cluster's {kind}s (docker {kind}).")
    def group() -> None:
        pass

    @group.command("create")
    @click.argument("name")
    @click.argument("file", type=click.File("rb"))
    @click.option("-l", "--label", multiple=True, metavar="KEY=VALUE")
    @click.pass_context
    def create(ctx: click.Context, name: str, file: Any, label: tuple[str, ...]) -> None:
        """Make one from FILE (- for standard input)."""
        data = file.read()
        body = {
            "Name": name,
            "Labels": key_values(label, "--label", bare=True),
            "Data": base64.b64encode(data).decode("ascii"),
        }
        with client_of(ctx) as client:
            click.echo(client.json("POST", f"/{kind}s/create", json=body)["ID"])

    @group.command("ls")
    @click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
    @click.pass_context
    def ls(ctx: click.Context, quiet: bool) -> None:
        """List them."""
        with client_of(ctx) as client:
            found = client.json("GET", f"/{kind}s") or []
        if quiet:
            click.echo("\n".join(f["ID"] for f in found))
            return
        rows = [
            [f["ID"], f["Spec"]["Name"], stamp_age(f["CreatedAt"]), stamp_age(f["UpdatedAt"])]
            for f in found
        ]
        print_table(["ID", "NAME", "CREATED", "UPDATED"], rows)

    @group.command("inspect")
    @click.argument("refs", nargs=-1, required=True)
    @click.pass_context
    def inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
        """Details as JSON (a secret's content is never shown)."""
        with client_of(ctx) as client:
            print_json([client.json("GET", f"/{kind}s/{_q(r)}") for r in refs])

    @group.command("rm")
    @click.argument("refs", nargs=-1, required=True)
    @click.pass_context
    def rm(ctx: click.Context, refs: tuple[str, ...]) -> None:
        """Remove them (not while a service uses one)."""
        with client_of(ctx) as client:
            for ref in refs:
                client.request("DELETE", f"/{kind}s/{_q(ref)}")
                click.echo(ref)

    return group


secret = _files("secret")

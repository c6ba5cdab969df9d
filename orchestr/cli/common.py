"""What every command module shares, kept light (no rich, no heavy imports): the
client for the daemon the user named, and name parsing."""

from __future__ import annotations

from typing import Any

import click

from orchestr.cli.fast import FrameSplitter
from orchestr.client import Client, connect

DEFAULT_HOST = "unix:///run/orchestr/orchestr.sock"


def client_of(ctx: click.Context, timeout: float | None = 60.0) -> Client:
    """A client of the daemon of `-H`/ORCHESTR_HOST, starting a local one if that is wanted."""
    obj = ctx.find_root().obj
    return connect(obj.host, DEFAULT_HOST, timeout=timeout)


def lean_client_of(ctx: click.Context, timeout: float | None = 60.0) -> Any:
    """client_of's lean twin for unix sockets (no httpx to import): for the Compose
    commands, whose start-up time is part of every `up`."""
    import os

    from orchestr.client import AUTOSTART_ENV, DaemonUnreachable, _start_daemon
    from orchestr.unixclient import UnixClient

    host = ctx.find_root().obj.host
    if not host.startswith("unix://"):
        return client_of(ctx, timeout)
    client = UnixClient(host, timeout=timeout)
    if host == DEFAULT_HOST and os.geteuid() == 0 and os.environ.get(AUTOSTART_ENV) != "1":
        try:
            client.request("GET", "/_ping")
        except DaemonUnreachable:
            _start_daemon(client.socket)
    return client


def split_tag(name: str) -> tuple[str, str | None]:
    """`repo[:tag]` -> (repo, tag); a colon in a registry's host:port is not a tag."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def filters_param(filters: tuple[str, ...]) -> dict[str, str]:
    """`-f KEY=VALUE…` as the Engine API's `filters` parameter ({} when none)."""
    import json

    grouped: dict[str, dict[str, bool]] = {}
    for f in filters:
        key, eq, value = f.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{f!r}: expected KEY=VALUE", param_hint="--filter")
        grouped.setdefault(key, {})[value] = True
    return {"filters": json.dumps(grouped)} if grouped else {}


def key_values(values: tuple[str, ...], flag: str, *, bare: bool) -> dict[str, str]:
    """KEY=VALUE options into a dict; `bare` lets KEY alone mean an empty value."""
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key or (not eq and not bare):
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=flag)
        out[key] = value
    return out


def grouped_filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key or not eq:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--filter")
        grouped.setdefault(key, []).append(value)
    return grouped


class Demux(FrameSplitter):
    """Docker's multiplexed frames written to our stdout and stderr as they arrive."""

    def __init__(self) -> None:
        import sys

        outputs = {1: sys.stdout.buffer, 2: sys.stderr.buffer}

        def write(stream: int, data: bytes) -> None:
            target = outputs.get(stream, outputs[1])
            target.write(data)
            target.flush()

        super().__init__(write)

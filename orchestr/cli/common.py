"""What every command module shares, kept light (no rich, no heavy imports): the
client for the daemon the user named, and name parsing."""

from __future__ import annotations

import click

from orchestr.client import Client, connect

DEFAULT_HOST = "unix:///run/orchestr/orchestr.sock"


def client_of(ctx: click.Context, timeout: float | None = 60.0) -> Client:
    """A client of the daemon of `-H`/ORCHESTR_HOST, starting a local one if that is wanted."""
    obj = ctx.find_root().obj
    return connect(obj.host, DEFAULT_HOST, timeout=timeout)


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


class Demux:
    """Docker's multiplexed frames (stream byte, 3 zero bytes, big-endian length, data)
    written to our stdout and stderr as they arrive."""

    def __init__(self) -> None:
        import sys

        self.out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        import struct

        self.buffer += data
        while len(self.buffer) >= 8:
            stream, length = struct.unpack(">BxxxI", self.buffer[:8])
            if len(self.buffer) < 8 + length:
                return
            target = self.out.get(stream, self.out[1])
            target.write(self.buffer[8 : 8 + length])
            target.flush()
            self.buffer = self.buffer[8 + length :]

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

"""The click application: global options and the commands.

Global conventions every command shares:
- `-H/--host URL` (env ORCHESTR_HOST, default unix:///run/orchestr/orchestr.sock)
  names the daemon to talk to;
- `--debug` shows the traceback behind an error; without it an error is one line.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from orchestr import __version__
from orchestr.errors import NotSupportedError, OrchestrError

DEFAULT_HOST = "unix:///run/orchestr/orchestr.sock"
HOST_ENV = "ORCHESTR_HOST"

# Commands users know from Docker/Compose that later stages build; until then
# they say so plainly instead of pretending to work.
_PLANNED: dict[str, str] = {
    "swarm": "clusters of several nodes (each daemon is a cluster of one until then)",
}


class Context:
    """What every command gets: where the daemon is and whether to show detail."""

    def __init__(self, host: str, debug: bool) -> None:
        self.host = host
        self.debug = debug


def resolve_host(flag: str | None, environ: dict[str, str] | None = None) -> str:
    """-H beats ORCHESTR_HOST beats the built-in default; a bare path means unix://."""
    env = os.environ if environ is None else environ
    host = flag or env.get(HOST_ENV) or DEFAULT_HOST
    if host.startswith("/"):
        host = "unix://" + host
    if not host.startswith(("unix://", "tcp://", "https://", "http://")):
        raise click.BadParameter(
            f"{host!r}: expected unix:///path/to.sock, tcp://HOST:PORT or https://HOST:PORT",
            param_hint="-H/--host",
        )
    return host


# Commands whose modules load only when used, so `orchestr --version` or a typo
# does not pay for httpx and rich: name -> "module:attribute".
_LAZY = {
    "build": "orchestr.cli.images:build",
    "compose": "orchestr.cli.compose:compose",
    "service": "orchestr.cli.stack:service",
    "node": "orchestr.cli.swarm:node",
    "secret": "orchestr.cli.swarm:secret",
    "stack": "orchestr.cli.stack:stack",
    "config": "orchestr.cli.compose:config",
    "down": "orchestr.cli.compose:down",
    "graph": "orchestr.cli.compose:graph",
    "up": "orchestr.cli.compose:up",
    "exec": "orchestr.cli.containers:exec_",
    "info": "orchestr.cli.system:info",
    "pause": "orchestr.cli.system:pause",
    "stats": "orchestr.cli.system:stats",
    "system": "orchestr.cli.system:system",
    "top": "orchestr.cli.system:top",
    "unpause": "orchestr.cli.system:unpause",
    "inspect": "orchestr.cli.containers:inspect",
    "kill": "orchestr.cli.containers:kill",
    "logs": "orchestr.cli.containers:logs",
    "network": "orchestr.cli.networks:network",
    "ps": "orchestr.cli.containers:ps",
    "restart": "orchestr.cli.containers:restart",
    "rm": "orchestr.cli.containers:rm",
    "run": "orchestr.cli.containers:run",
    "start": "orchestr.cli.containers:start",
    "stop": "orchestr.cli.containers:stop",
    "volume": "orchestr.cli.volumes:volume",
    "wait": "orchestr.cli.containers:wait",
    "daemon": "orchestr.cli.daemon:daemon",
    "image": "orchestr.cli.images:image",
    "pull": "orchestr.cli.images:pull",
    "push": "orchestr.cli.images:push",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _LAZY.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-H", "--host", "host", metavar="URL", help=f"Daemon to talk to [env {HOST_ENV}].")
@click.option("--debug", is_flag=True, help="Show the detail (traceback) behind errors.")
@click.version_option(__version__, "--version", prog_name="orchestr")
@click.pass_context
def cli(ctx: click.Context, host: str | None, debug: bool) -> None:
    """orchestr: Compose-format stacks on one machine or a cluster."""
    ctx.obj = Context(resolve_host(host), debug)


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
def runtime() -> None:
    """The OCI runtime (runc-compatible: create, start, run, exec, kill, delete, ...)."""
    # Dispatched in orchestr.__main__ before click loads; reached only via run().
    from agent.runtime.cli import main as runtime_main

    sys.exit(runtime_main(sys.argv[sys.argv.index("runtime") + 1 :]))


@cli.command()
@click.pass_obj
def version(obj: Context) -> None:
    """The client's version and the daemon's (as `docker version`: fails without one)."""
    click.echo(f"orchestr {__version__}")
    click.echo(f"host: {obj.host}")
    from orchestr.client import Client

    with Client(obj.host, timeout=5) as client:  # never starts a daemon: it only asks
        server = client.json("GET", "/version")
    click.echo(
        f"server: {server.get('Platform', {}).get('Name', '?')} {server.get('Version', '?')} "
        f"(API {server.get('ApiVersion', '?')}, minimum {server.get('MinAPIVersion', '?')}, "
        f"{server.get('Os', '?')}/{server.get('Arch', '?')}, kernel {server.get('KernelVersion')})"
    )


def _planned(name: str, stage: str) -> click.Command:
    @click.command(
        name=name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"Not built yet: comes with {stage}.",
    )
    def command() -> None:
        raise NotSupportedError(f"`orchestr {name}` is not supported yet: it comes with {stage}")

    return command


for _name, _stage in _PLANNED.items():
    cli.add_command(_planned(_name, _stage))


def run(argv: list[str]) -> int:
    """Run the CLI; errors become one line on stderr (a traceback with --debug)."""
    debug = "--debug" in argv
    try:
        cli.main(args=argv, prog_name="orchestr", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except OrchestrError as e:
        click.echo(f"orchestr: {e}", err=True)
        if debug:
            traceback.print_exc()
        return 1
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int | None) else 1
    return 0

"""The Compose commands: `orchestr compose …` as `docker compose …`, with `up`, `down`,
`config` and `graph` also at the top level (`orchestr up -f stack.yml`).

Project options (`-f`, `-p`, `--project-directory`, `--env-file`, `--profile`) are taken
by the `compose` group, as docker compose takes them, and by each subcommand, so both
`orchestr compose -f s.yml ps` and `orchestr up -f s.yml` work. `ps`, `logs`, `exec`,
`start`, `stop`, `restart`, `pull`, `build`, `top`, `run` and `ls` are under `compose`
only, since the top-level ones are the docker CLI's container commands.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import click

from orchestr.cli.common import lean_client_of as client_of
from orchestr.cli.output import human_age, print_table
from orchestr.client import ApiError
from orchestr.compose import convert
from orchestr.compose.engine import ApiClient, Engine, UpOptions
from orchestr.errors import OrchestrError
from orchestr.graph.deps import build_graph, render
from orchestr.stack.errors import StackError
from orchestr.stack.loader import LoadOptions, load_project
from orchestr.stack.model import Project

__all__ = ["compose", "config", "down", "graph", "up"]


# -- project options -----------------------------------------------------------------------

_PROJECT_KEYS = ("files", "project_name", "project_directory", "env_files", "profiles")


def project_options(fn: Callable[..., Any], *, short_file: bool = True) -> Callable[..., Any]:
    """-f/-p/--project-directory/--env-file/--profile on a command (or the group);
    `short_file=False` for commands whose -f is something else (logs -f: follow)."""
    names = ("-f", "--file") if short_file else ("--file",)
    options = [
        click.option(*names, "files", multiple=True, metavar="FILE", help="Compose file(s)."),
        click.option("-p", "--project-name", "project_name", metavar="NAME"),
        click.option("--project-directory", metavar="DIR"),
        click.option("--env-file", "env_files", multiple=True, metavar="FILE"),
        click.option("--profile", "profiles", multiple=True, metavar="PROFILE"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _project_args(ctx: click.Context, /, kwargs: dict[str, Any]) -> dict[str, Any]:
    """This command's project options, falling back on the `compose` group's."""
    group: dict[str, Any] = (ctx.parent.meta.get("compose") if ctx.parent else None) or {}
    out = {}
    for key in _PROJECT_KEYS:
        value = kwargs.pop(key, None)
        out[key] = (
            value or group.get(key) or (() if key in ("files", "env_files", "profiles") else None)
        )
    return out


def _warn(message: str) -> None:
    click.secho(f"WARN: {message}", fg="yellow", err=True)


def load(ctx: click.Context, /, kwargs: dict[str, Any], services: tuple[str, ...] = ()) -> Project:
    args = _project_args(ctx, kwargs)
    return load_project(
        LoadOptions(
            files=args["files"],
            project_name=args["project_name"],
            project_directory=args["project_directory"],
            env_files=args["env_files"],
            profiles=args["profiles"],
            services=services,
            warn=_warn,
            cache_dir=_cache_dir(),
        )
    )


def _cache_dir() -> str:
    """$ORCHESTR_CACHE_DIR, else $XDG_CACHE_HOME/orchestr, else ~/.cache/orchestr:
    where the loader remembers documents it found valid."""
    explicit = os.environ.get("ORCHESTR_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "orchestr", "valid-stacks")


def _project_or_name(ctx: click.Context, /, kwargs: dict[str, Any]) -> Project:
    """The project from its files, or, when there are none and -p names one, an empty
    project of that name (down, ps, logs, stop work from the containers' labels)."""
    args = dict(kwargs)
    try:
        return load(ctx, kwargs)
    except StackError as exc:
        name = _project_args(ctx, args)["project_name"] or os.environ.get("COMPOSE_PROJECT_NAME")
        if name and "no configuration file provided" in str(exc):
            return Project(name=name)
        raise


# -- progress ----------------------------------------------------------------------------


class ProgressReport:
    """Compose v2's view: a line per network, volume, image and container, updated live
    on a terminal (rich); each change on its own plain line otherwise (rich is not even
    imported then: it costs ~70 ms of every scripted `up`)."""

    _ICONS = {"working": "⠿", "done": "✔", "warning": "!", "error": "✘"}
    _COLOURS = {"working": "blue", "done": "green", "warning": "yellow", "error": "red"}

    def __init__(self, title: str) -> None:
        self.live_view = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self.console: Any = None
        if self.live_view:
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
        self.title = title
        self.lines: dict[tuple[str, str], list[Any]] = {}
        self.lock = threading.Lock()
        self.live: Any = None

    def __enter__(self) -> ProgressReport:
        if self.live_view:
            from rich.live import Live

            self.live = Live(self._render(), console=self.console, refresh_per_second=10)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)

    def __call__(self, kind: str, name: str, status: str, state: str = "working") -> None:
        with self.lock:
            now = time.monotonic()
            line = self.lines.setdefault((kind, name), [status, state, now, now])
            line[0], line[1], line[3] = status, state, now
            if self.live is not None:
                self.live.update(self._render())
            else:
                sys.stderr.write(f" {kind} {name}  {status}\n")
                sys.stderr.flush()

    def _render(self) -> Any:
        from rich.table import Table

        done = sum(1 for line in self.lines.values() if line[1] != "working")
        table = Table.grid(padding=(0, 1))
        table.add_row(f"[bold][+] {self.title} {done}/{len(self.lines)}[/]")
        for (kind, name), (status, state, start, end) in self.lines.items():
            icon = self._ICONS.get(state, "?")
            colour = self._COLOURS.get(state, "white")
            elapsed = (end if state != "working" else time.monotonic()) - start
            table.add_row(
                f" [{colour}]{icon}[/] {kind} {name}  [{colour}]{status}[/]  [dim]{elapsed:.1f}s[/]"
            )
        return table


# -- the group -----------------------------------------------------------------------------


@click.group("compose")
@project_options
@click.pass_context
def compose(ctx: click.Context, /, **kwargs: Any) -> None:
    """Compose-format stacks on this node (as `docker compose`)."""
    ctx.meta["compose"] = kwargs


def _both(fn: click.Command) -> click.Command:
    compose.add_command(fn)
    return fn


# -- config, graph --------------------------------------------------------------------------


@click.command("config")
@project_options
@click.option("--services", "list_services", is_flag=True, help="Only the service names.")
@click.option("--volumes", "list_volumes", is_flag=True, help="Only the volume names.")
@click.option("--networks", "list_networks", is_flag=True, help="Only the network names.")
@click.option("--profiles", "list_profiles", is_flag=True, help="Only the profile names.")
@click.option("--images", "list_images", is_flag=True, help="Only the images.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.option("-q", "--quiet", is_flag=True, help="Only check the files.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")
@click.argument("services", nargs=-1)
@click.pass_context
def config(
    ctx: click.Context,
    /,
    list_services: bool,
    list_volumes: bool,
    list_networks: bool,
    list_profiles: bool,
    list_images: bool,
    fmt: str,
    quiet: bool,
    output: str | None,
    services: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Check the stack and print it normalised (as `docker compose config`)."""
    project = load(ctx, kwargs, services)
    if quiet:
        return
    if list_services:
        click.echo("\n".join(project.services))
        return
    if list_volumes:
        click.echo("\n".join(project.volumes))
        return
    if list_networks:
        click.echo("\n".join(project.networks))
        return
    if list_profiles:
        names = {
            p for s in (*project.services.values(), *project.disabled.values()) for p in s.profiles
        }
        click.echo("\n".join(sorted(names)))
        return
    if list_images:
        click.echo("\n".join(convert.image_of(project.name, s) for s in project.services.values()))
        return
    doc = project_document(project)
    if fmt == "json":
        text = json.dumps(doc, indent=2) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)


def project_document(project: Project) -> dict[str, Any]:
    """The normalised project as Compose prints it (without orchestr's defaults)."""
    doc: dict[str, Any] = {"name": project.name, "services": {}}
    for name, service in project.services.items():
        body = service.model_dump(mode="json", by_alias=True, exclude_unset=True)
        body.pop("name", None)
        doc["services"][name] = body
    for section in ("networks", "volumes", "secrets", "configs"):
        items = getattr(project, section)
        if items:
            doc[section] = {
                k: v.model_dump(mode="json", exclude_unset=True) for k, v in items.items()
            }
    return doc


@click.command("graph")
@project_options
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text")
@click.pass_context
def graph(ctx: click.Context, /, fmt: str, **kwargs: Any) -> None:
    """Draw the services' dependency graph (start order; mermaid or dot)."""
    project = load(ctx, kwargs)
    click.echo(render(build_graph(project), fmt), nl=False)


# -- up, down -----------------------------------------------------------------------------------


def _scale(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for item in values:
        name, eq, number = item.partition("=")
        if not eq or not number.isdigit():
            raise click.BadParameter(f"{item!r}: expected SERVICE=NUMBER", param_hint="--scale")
        out[name] = int(number)
    return out


@click.command("up")
@project_options
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.option("--wait", is_flag=True, help="Return once every service is running and healthy.")
@click.option("--wait-timeout", type=float, default=0, help="Seconds --wait waits (0: no limit).")
@click.option("--build", "build_", is_flag=True, help="Build images before starting.")
@click.option(
    "--pull",
    type=click.Choice(["always", "missing", "never"]),
    default="missing",
    show_default=True,
)
@click.option("--force-recreate", is_flag=True)
@click.option("--no-recreate", is_flag=True)
@click.option("--remove-orphans", is_flag=True)
@click.option("--no-deps", is_flag=True, help="Do not start the services' dependencies.")
@click.option("--scale", multiple=True, metavar="SERVICE=NUM")
@click.option("-t", "--timeout", type=int, help="Stop timeout (seconds) when recreating.")
@click.option(
    "--services/--containers",
    "as_services",
    default=None,
    help="Deploy as services on the control plane (deploy: honoured), as `stack deploy`;"
    " or as containers on this node, as `docker compose up`. Default: containers on a"
    " cluster of one, services on a cluster of several nodes (`orchestr compose up`:"
    " containers).",
)
@click.argument("services", nargs=-1)
@click.pass_context
def up(
    ctx: click.Context,
    /,
    detach: bool,
    wait: bool,
    wait_timeout: float,
    build_: bool,
    pull: str,
    force_recreate: bool,
    no_recreate: bool,
    remove_orphans: bool,
    no_deps: bool,
    scale: tuple[str, ...],
    timeout: int | None,
    as_services: bool | None,
    services: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Create and start the stack's services (as `docker compose up`).

    On a cluster of one, as containers (`docker compose up`); on a cluster of several
    nodes, as services. With --services the stack runs as services and tasks on the
    daemon's control plane,
    as `orchestr stack deploy` does: replicas, update and rollback policies, placement and
    restart policies of `deploy:` are honoured, and a second `up --services` rolls the
    changed services forward. It returns once every service has converged."""
    if force_recreate and no_recreate:
        raise click.UsageError("--force-recreate and --no-recreate cannot be combined")
    project = load(ctx, kwargs, services)  # a stack that does not load fails first
    with client_of(ctx, timeout=None) as client:
        if as_services is None and not _under_compose(ctx):
            as_services = deploys_as_services(client.json("GET", "/info") or {})
        if as_services:
            if services or scale or build_ or no_deps or force_recreate or no_recreate:
                raise click.UsageError(
                    "--services deploys the whole stack: SERVICE, --scale, --build,"
                    " --no-deps, --force-recreate and --no-recreate do not apply"
                )
            from orchestr.cli.stack import deploy_project, wait_converged

            names = deploy_project(client, project, prune=remove_orphans)
            if not detach or wait:
                wait_converged(client, names, wait_timeout)
            return
        options = UpOptions(
            services=list(services),
            no_deps=no_deps,
            force_recreate=force_recreate,
            no_recreate=no_recreate,
            remove_orphans=remove_orphans,
            scale=_scale(scale),
            build=build_,
            pull=pull,
            wait=wait,
            wait_timeout=wait_timeout,
            timeout=timeout,
        )
        with ProgressReport("Running") as report:
            engine = Engine(client, project, report)
            decided = engine.up(options)
        if detach or wait:
            return
        _attach(client, engine, list(decided.services), timeout)


def deploys_as_services(info: dict[str, Any]) -> bool:
    """DESIGN.md's rule for `orchestr up`: on one node this is Compose (containers, as
    `docker compose up`), on many it is Swarm (services, as `docker stack deploy`)."""
    return int((info.get("Swarm") or {}).get("Nodes") or 1) > 1


def _under_compose(ctx: click.Context) -> bool:
    """Called as `orchestr compose up`: Compose's command, containers on this node."""
    return ctx.parent is not None and ctx.parent.info_name == "compose"


def _attach(client: ApiClient, engine: Engine, services: list[str], timeout: int | None) -> None:
    """Without -d: follow the containers' logs until they all stop; Ctrl-C stops them."""
    containers = [c for c in engine.containers() if _service(c) in services]
    click.echo("Attaching to " + ", ".join(_name(c) for c in containers), err=True)
    try:
        _follow_logs(client, containers, follow=True, tail="all", timestamps=False)
    except KeyboardInterrupt:
        click.echo("Gracefully stopping... (press Ctrl+C again to force)", err=True)
        with ProgressReport("Stopping") as report:
            engine.report = report
            engine.each_container(
                services, lambda c: _stop(client, c, timeout, report), reverse=True
            )


@click.command("down")
@project_options
@click.option("-v", "--volumes", is_flag=True, help="Also remove named and anonymous volumes.")
@click.option("--rmi", type=click.Choice(["local", "all"]), help="Also remove images.")
@click.option("--remove-orphans", is_flag=True)
@click.option("-t", "--timeout", type=int, help="Seconds to wait for each container to stop.")
@click.pass_context
def down(
    ctx: click.Context,
    /,
    volumes: bool,
    rmi: str | None,
    remove_orphans: bool,
    timeout: int | None,
    **kwargs: Any,
) -> None:
    """Stop and remove the stack's containers and networks (as `docker compose down`);
    a stack deployed as services (`up --services`) loses its services too."""
    from orchestr.cli.stack import remove_stack

    project = _project_or_name(ctx, kwargs)
    with client_of(ctx, timeout=None) as client:
        remove_stack(client, project.name)
    with client_of(ctx, timeout=None) as client, ProgressReport("Running") as report:
        Engine(client, project, report).down(
            volumes=volumes, remove_orphans=remove_orphans or not project.services,
            timeout=timeout, rmi=rmi,
        )  # fmt: skip


for _command in (config, graph, up, down):
    compose.add_command(_command)


# -- ps, ls, logs ------------------------------------------------------------------------------


def _service(container: dict[str, Any]) -> str:
    return str(container["Labels"].get(convert.LABEL_SERVICE, ""))


def _name(container: dict[str, Any]) -> str:
    return str(container["Names"][0]).lstrip("/")


def _ports(container: dict[str, Any]) -> str:
    out = []
    for p in container.get("Ports") or []:
        if p.get("PublicPort"):
            out.append(
                f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
            )
        else:
            out.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(out)


@compose.command("ps")
@project_options
@click.option("-a", "--all", "all_", is_flag=True, help="Also stopped containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("--services", "only_services", is_flag=True, help="Only service names.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("services", nargs=-1)
@click.pass_context
def ps(
    ctx: click.Context,
    /,
    all_: bool,
    quiet: bool,
    only_services: bool,
    fmt: str,
    services: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """List the stack's containers."""
    project = _project_or_name(ctx, kwargs)
    with client_of(ctx) as client:
        containers = Engine(client, project).containers(all_=all_)
    if services:
        containers = [c for c in containers if _service(c) in services]
    if quiet:
        click.echo("\n".join(c["Id"] for c in containers))
        return
    if only_services:
        click.echo("\n".join(sorted({_service(c) for c in containers})))
        return
    if fmt == "json":
        click.echo(json.dumps(containers, indent=2))
        return
    rows = [
        [
            _name(c),
            c["Image"],
            f'"{c["Command"][:20]}"',
            _service(c),
            human_age(c["Created"]),
            c["Status"],
            _ports(c),
        ]
        for c in containers
    ]
    print_table(["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"], rows)


@compose.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Also stopped projects.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def ls(ctx: click.Context, /, all_: bool, fmt: str, quiet: bool) -> None:
    """List the projects on this node."""
    with client_of(ctx) as client:
        containers = client.json(
            "GET",
            "/containers/json",
            params={"all": 1, "filters": json.dumps({"label": [convert.LABEL_PROJECT]})},
        )
    projects: dict[str, dict[str, Any]] = {}
    for c in containers:
        name = c["Labels"][convert.LABEL_PROJECT]
        entry = projects.setdefault(name, {"Name": name, "states": {}, "ConfigFiles": ""})
        entry["states"][c["State"]] = entry["states"].get(c["State"], 0) + 1
        entry["ConfigFiles"] = c["Labels"].get(convert.LABEL_WORKING_DIR, "")
    rows = []
    for name in sorted(projects):
        states = projects[name]["states"]
        if not all_ and "running" not in states:
            continue
        status = ", ".join(f"{s}({n})" for s, n in sorted(states.items()))
        rows.append({"Name": name, "Status": status, "WorkingDir": projects[name]["ConfigFiles"]})
    if quiet:
        click.echo("\n".join(r["Name"] for r in rows))
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(["NAME", "STATUS", "WORKING DIR"], [list(r.values()) for r in rows])


_PALETTE = ("cyan", "yellow", "green", "magenta", "blue", "bright_cyan", "bright_yellow",
            "bright_green", "bright_magenta", "bright_blue")  # fmt: skip


def _follow_logs(
    client: ApiClient,
    containers: list[dict[str, Any]],
    *,
    follow: bool,
    tail: str,
    timestamps: bool,
    prefix: bool = True,
) -> None:
    from orchestr.cli.fast import FrameSplitter

    width = max((len(_name(c)) for c in containers), default=0)
    out_lock = threading.Lock()
    colour = sys.stdout.isatty()

    def stream(index: int, container: dict[str, Any]) -> None:
        label = _name(container).ljust(width) + "  | "
        if colour:
            label = click.style(label, fg=_PALETTE[index % len(_PALETTE)])
        pending = {1: b"", 2: b""}

        def write(fd: int, data: bytes) -> None:
            text = pending.get(fd, b"") + data
            *lines, pending[fd] = text.split(b"\n")
            with out_lock:
                for line in lines:
                    head = label if prefix else ""
                    sys.stdout.write(head + line.decode("utf-8", "replace") + "\n")
                sys.stdout.flush()

        params = {"stdout": 1, "stderr": 1, "follow": int(follow), "tail": tail,
                  "timestamps": int(timestamps)}  # fmt: skip
        splitter = FrameSplitter(write)
        try:
            with client.stream("GET", f"/containers/{container['Id']}/logs", params=params) as r:
                for chunk in r.iter_bytes():
                    splitter.feed(chunk)
        except (ApiError, OrchestrError):
            return
        for fd, rest in pending.items():
            if rest:
                write(fd, b"\n")

    threads = [
        threading.Thread(target=stream, args=(i, c), daemon=True) for i, c in enumerate(containers)
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)


@compose.command("logs")
@partial(project_options, short_file=False)
@click.option("-f", "--follow", is_flag=True)
@click.option("-t", "--timestamps", is_flag=True)
@click.option("-n", "--tail", default="all")
@click.option("--no-log-prefix", is_flag=True)
@click.argument("services", nargs=-1)
@click.pass_context
def logs(
    ctx: click.Context,
    /,
    follow: bool,
    timestamps: bool,
    tail: str,
    no_log_prefix: bool,
    services: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Show the services' output, each line prefixed with its container."""
    project = _project_or_name(ctx, kwargs)
    with client_of(ctx, timeout=None) as client:
        containers = Engine(client, project).containers()
        if services:
            containers = [c for c in containers if _service(c) in services]
        _follow_logs(
            client, containers, follow=follow, tail=tail, timestamps=timestamps,
            prefix=not no_log_prefix,
        )  # fmt: skip


# -- start, stop, restart, pull, build, top, exec, run --------------------------------------------


def _stop(client: ApiClient, container: dict[str, Any], timeout: int | None, report: Any) -> None:
    name = _name(container)
    report("Container", name, "Stopping")
    params = {} if timeout is None else {"t": timeout}
    try:
        client.request("POST", f"/containers/{container['Id']}/stop", params=params)
    except ApiError as exc:
        if exc.status != 304:
            raise
    report("Container", name, "Stopped", "done")


@contextmanager
def _engine(ctx: click.Context, /, kwargs: dict[str, Any], title: str) -> Iterator[Engine]:
    project = _project_or_name(ctx, kwargs)
    with client_of(ctx, timeout=None) as client, ProgressReport(title) as report:
        yield Engine(client, project, report)


@compose.command("stop")
@project_options
@click.option("-t", "--timeout", type=int)
@click.argument("services", nargs=-1)
@click.pass_context
def stop(
    ctx: click.Context, /, timeout: int | None, services: tuple[str, ...], **kwargs: Any
) -> None:
    """Stop the services' containers (dependents first)."""
    with _engine(ctx, kwargs, "Stopping") as engine:
        engine.each_container(
            services, lambda c: _stop(engine.client, c, timeout, engine.report), reverse=True
        )


@compose.command("start")
@project_options
@click.argument("services", nargs=-1)
@click.pass_context
def start(ctx: click.Context, /, services: tuple[str, ...], **kwargs: Any) -> None:
    """Start the services' existing containers (dependencies first)."""
    with _engine(ctx, kwargs, "Starting") as engine:

        def start_one(c: dict[str, Any]) -> None:
            engine.report("Container", _name(c), "Starting")
            try:
                engine.client.request("POST", f"/containers/{c['Id']}/start")
            except ApiError as exc:
                if exc.status != 304:
                    raise
            engine.report("Container", _name(c), "Started", "done")

        engine.each_container(services, start_one, reverse=False)


@compose.command("restart")
@project_options
@click.option("-t", "--timeout", type=int)
@click.argument("services", nargs=-1)
@click.pass_context
def restart(
    ctx: click.Context, /, timeout: int | None, services: tuple[str, ...], **kwargs: Any
) -> None:
    """Restart the services' containers."""
    with _engine(ctx, kwargs, "Restarting") as engine:

        def restart_one(c: dict[str, Any]) -> None:
            engine.report("Container", _name(c), "Restarting")
            params = {} if timeout is None else {"t": timeout}
            engine.client.request("POST", f"/containers/{c['Id']}/restart", params=params)
            engine.report("Container", _name(c), "Started", "done")

        engine.each_container(services, restart_one, reverse=False)


@compose.command("pull")
@project_options
@click.argument("services", nargs=-1)
@click.pass_context
def pull(ctx: click.Context, /, services: tuple[str, ...], **kwargs: Any) -> None:
    """Pull the services' images."""
    with _engine(ctx, kwargs, "Pulling") as engine:
        for name in services or engine.project.services:
            service = engine.project.services[name]
            if service.image:
                engine.pull(service)


@compose.command("build")
@project_options
@click.argument("services", nargs=-1)
@click.pass_context
def build(ctx: click.Context, /, services: tuple[str, ...], **kwargs: Any) -> None:
    """Build the services' images."""
    with _engine(ctx, kwargs, "Building") as engine:
        for name in services or engine.project.services:
            service = engine.project.services[name]
            if service.build is not None:
                engine.build(service)


def _container_of(engine: Engine, service: str, index: int) -> dict[str, Any]:
    for c in engine.containers(all_=False):
        if _service(c) == service and c["Labels"].get(convert.LABEL_NUMBER) == str(index):
            return c
    raise OrchestrError(f"service {service!r} has no running container number {index}")


@compose.command("top")
@project_options
@click.argument("services", nargs=-1)
@click.pass_context
def top(ctx: click.Context, /, services: tuple[str, ...], **kwargs: Any) -> None:
    """The processes running in the services' containers."""
    project = _project_or_name(ctx, kwargs)
    with client_of(ctx) as client:
        for c in Engine(client, project).containers(all_=False):
            if services and _service(c) not in services:
                continue
            found = client.json("GET", f"/containers/{c['Id']}/top")
            click.echo(_name(c))
            print_table(found["Titles"], found["Processes"])
            click.echo()


@compose.command("exec", context_settings={"allow_interspersed_args": False})
@project_options
@click.option("-d", "--detach", is_flag=True)
@click.option("-T", "--no-TTY", "no_tty", is_flag=True, help="No terminal (the default here).")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE")
@click.option("-u", "--user")
@click.option("-w", "--workdir")
@click.option("--index", type=int, default=1, help="Which container of the service.")
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(
    ctx: click.Context,
    /,
    detach: bool,
    no_tty: bool,
    env: tuple[str, ...],
    user: str | None,
    workdir: str | None,
    index: int,
    service: str,
    command: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Run a command in a service's running container."""
    from orchestr.cli.containers import exec_ as container_exec

    project = _project_or_name(ctx, kwargs)
    with client_of(ctx) as client:
        target = _container_of(Engine(client, project), service, index)
    tty = sys.stdin.isatty() and sys.stdout.isatty() and not no_tty and not detach
    ctx.invoke(
        container_exec,
        container=target["Id"],
        command=command,
        detach=detach,
        interactive=tty,
        tty=tty,
        env=env,
        user=user,
        workdir=workdir,
    )


@compose.command("run", context_settings={"allow_interspersed_args": False})
@project_options
@click.option("--rm", is_flag=True, help="Remove the container when it exits.")
@click.option("-d", "--detach", is_flag=True)
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE")
@click.option("--no-deps", is_flag=True)
@click.option("--name")
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    /,
    rm: bool,
    detach: bool,
    env: tuple[str, ...],
    no_deps: bool,
    name: str | None,
    service: str,
    command: tuple[str, ...],
    **kwargs: Any,
) -> None:
    """Run a one-off command in a new container of a service (its dependencies up first)."""
    import uuid

    project = load(ctx, kwargs, (service,))
    if service not in project.services:
        raise OrchestrError(f"no such service: {service}")
    with client_of(ctx, timeout=None) as client:
        engine = Engine(client, project, ProgressReport("Running"))
        deps = sorted(set(engine.selected([service], False)) - {service})
        if deps and not no_deps:
            with ProgressReport("Running") as report:
                engine.report = report
                engine.up(UpOptions(services=deps, no_deps=True))
        svc = project.services[service]
        update: dict[str, Any] = {"ports": [], "restart": None}
        if command:
            update["command"] = list(command)
        if env:
            update["environment"] = {**svc.environment, **dict(e.partition("=")[::2] for e in env)}
        svc = svc.model_copy(update=update)
        container = name or f"{project.name}-{service}-run-{uuid.uuid4().hex[:12]}"
        body = convert.container_body(project, svc, 1, "")
        body["Labels"][convert.LABEL_ONEOFF] = "True"
        body["AttachStdout"] = body["AttachStderr"] = not detach
        created = client.json("POST", "/containers/create", params={"name": container}, json=body)
        for key, network in convert.service_networks(project, svc)[1:]:
            client.json(
                "POST",
                f"/networks/{network}/connect",
                json={"Container": created["Id"],
                      "EndpointConfig": convert.endpoint_config(svc, key, container)},
            )  # fmt: skip
        if detach:
            client.request("POST", f"/containers/{created['Id']}/start")
            click.echo(container)
            return
        client.request("POST", f"/containers/{created['Id']}/start")
        _follow_logs(client, [{"Id": created["Id"], "Names": [container]}], follow=True,
                     tail="all", timestamps=False, prefix=False)  # fmt: skip
        result = client.json("POST", f"/containers/{created['Id']}/wait")
        if rm:
            client.request("DELETE", f"/containers/{created['Id']}", params={"force": 1})
    sys.exit(int(result.get("StatusCode", 1)))

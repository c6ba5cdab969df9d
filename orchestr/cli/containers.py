"""Container commands: run, ps, logs, start, stop, restart, kill, rm, inspect, wait —
through the daemon's Engine API, as the docker CLI does them."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import click

from orchestr.cli.common import Demux, client_of, filters_param, format_option, split_tag
from orchestr.cli.output import human_age, print_json, print_table
from orchestr.cli.runspec import RUN_OPTIONS, create_body, env_pairs
from orchestr.client import ApiError, Client, hijack, json_stream
from orchestr.errors import OrchestrError


def _run_options(command: Callable[..., None]) -> Callable[..., None]:
    """The click options of `run`, from the table the fast path parses too."""
    for o in reversed(RUN_OPTIONS):
        if o.kind == "flag":
            command = click.option(*o.names, o.dest, is_flag=True, help=o.help)(command)
        else:
            command = click.option(
                *o.names,
                o.dest,
                multiple=o.kind == "many",
                default=o.default,
                help=o.help,
                metavar=o.metavar,
                type=o.type,
            )(command)
    return command


@click.command("run", context_settings={"allow_interspersed_args": False})
@_run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, /, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create and start a container from IMAGE (and wait for it, unless -d)."""
    body = create_body(image, command, o)
    with client_of(ctx, timeout=None) as client:
        container_id = _create(client, body, o["name"])
        if o["detach"]:
            client.request("POST", f"/containers/{container_id}/start")
            click.echo(container_id)
            return
        code = _run_attached(client, container_id, o["interactive"], o["remove"], o["tty"])
    sys.exit(code)


def _create(client: Client, body: dict[str, Any], name: str | None) -> str:
    params = {"name": name} if name else {}
    try:
        answer = client.json("POST", "/containers/create", params=params, json=body)
    except ApiError as e:
        if e.status != 404 or "No such image" not in str(e):
            raise
        from orchestr.cli.output import ProgressView

        click.echo(f"Unable to find image '{body['Image']}' locally", err=True)
        repo, tag = split_tag(body["Image"])
        with (
            client.stream(
                "POST", "/images/create", params={"fromImage": repo, "tag": tag or "latest"}
            ) as response,
            ProgressView() as view,
        ):
            view.show(json_stream(response))
        answer = client.json("POST", "/containers/create", params=params, json=body)
    for warning in answer.get("Warnings") or []:
        click.echo(f"WARNING: {warning}", err=True)
    return str(answer["Id"])


def _run_attached(
    client: Client, container_id: str, stdin: bool, remove: bool, tty: bool = False
) -> int:
    params = {"stream": "1", "stdout": "1", "stderr": "1", **({"stdin": "1"} if stdin else {})}
    sock, rest = hijack(client, f"/containers/{container_id}/attach", params)
    result: dict[str, Any] = {}

    def wait() -> None:
        condition = "removed" if remove else "next-exit"
        try:
            result.update(
                client.json(
                    "POST", f"/containers/{container_id}/wait", params={"condition": condition}
                )
            )
        except ApiError as e:
            result["error"] = str(e)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    try:
        client.request("POST", f"/containers/{container_id}/start")
    except ApiError:
        sock.close()
        if remove:
            client.request("DELETE", f"/containers/{container_id}", params={"force": "1"})
        raise
    with _terminal(client, f"/containers/{container_id}/resize", tty and stdin):
        if stdin:
            threading.Thread(target=_pump_stdin, args=(sock, not tty), daemon=True).start()
        _copy_out(sock, rest, tty)
    sock.close()
    waiter.join()
    if "error" in result:
        raise OrchestrError(result["error"])
    error = result.get("Error")
    if error and error.get("Message"):
        click.echo(f"orchestr: {error['Message']}", err=True)
    return int(result.get("StatusCode", 0))


@contextlib.contextmanager
def _terminal(client: Client, resize_path: str, on: bool) -> Iterator[None]:
    """Our terminal in raw mode (keys go to the container as typed), its size sent to
    the container now and on every SIGWINCH; restored afterwards."""
    if not on or not sys.stdin.isatty():
        yield
        return
    import signal
    import termios
    import tty as tty_mode

    fd = sys.stdin.fileno()

    def resize(*_: object) -> None:
        size = os.get_terminal_size(fd)
        with contextlib.suppress(Exception):
            client.request("POST", resize_path, params={"h": size.lines, "w": size.columns})

    saved = termios.tcgetattr(fd)
    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        tty_mode.setraw(fd)
        resize()
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def _copy_out(sock: Any, pending: bytes, tty: bool) -> None:
    if not tty:
        _demux(sock, pending)
        return
    out = sys.stdout.buffer
    if pending:
        out.write(pending)
        out.flush()
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        out.write(chunk)
        out.flush()


def _pump_stdin(sock: Any, half_close: bool = True) -> None:
    import socket

    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        return
    if not half_close:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _demux(sock: Any, pending: bytes) -> None:
    """Docker's multiplexed frames to our stdout and stderr."""
    demux = Demux()
    demux.feed(pending)
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError:
            return
        if not chunk:
            return
        demux.feed(chunk)


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run it in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Give it a terminal.")
@click.option("-e", "--env", "env", multiple=True, metavar="KEY=VALUE")
@click.option("-u", "--user", help="USER[:GROUP].")
@click.option("-w", "--workdir", help="Working directory.")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(
    ctx: click.Context,
    /,
    container: str,
    command: tuple[str, ...],
    detach: bool,
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    user: str | None,
    workdir: str | None,
) -> None:
    """Run a command in a running container."""
    body = {
        "Cmd": list(command),
        "Env": env_pairs(env),
        "User": user or "",
        "WorkingDir": workdir or "",
        "Tty": tty,
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
    }
    with client_of(ctx, timeout=None) as client:
        exec_id = client.json("POST", f"/containers/{container}/exec", json=body)["Id"]
        if detach:
            client.request("POST", f"/exec/{exec_id}/start", json={"Detach": True})
            return
        sock, rest = _hijack_exec(client, exec_id, tty)
        with _terminal(client, f"/exec/{exec_id}/resize", tty and interactive):
            if interactive:
                threading.Thread(target=_pump_stdin, args=(sock, not tty), daemon=True).start()
            _copy_out(sock, rest, tty)
        sock.close()
        code = client.json("GET", f"/exec/{exec_id}/json").get("ExitCode")
    sys.exit(int(code) if isinstance(code, int) else 126)


def _hijack_exec(client: Client, exec_id: str, tty: bool) -> tuple[Any, bytes]:
    return hijack(client, f"/exec/{exec_id}/start", {}, body={"Detach": False, "Tty": tty})


@click.command("ps")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers, not only running.")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE")
@click.option("--no-trunc", is_flag=True)
@format_option
@click.pass_context
def ps(
    ctx: click.Context, all_: bool, quiet: bool, filters: tuple[str, ...], no_trunc: bool, fmt: str
) -> None:
    """List containers."""
    params = {"all": int(all_), **filters_param(filters)}
    with client_of(ctx) as client:
        containers = client.json("GET", "/containers/json", params=params)
    if fmt == "json":
        print_json(containers)
        return
    if quiet:
        click.echo("\n".join(c["Id"] if no_trunc else c["Id"][:12] for c in containers))
        return
    rows = []
    for c in containers:
        command = c["Command"] if no_trunc or len(c["Command"]) <= 20 else c["Command"][:19] + "…"
        rows.append(
            [
                c["Id"] if no_trunc else c["Id"][:12],
                c["Image"],
                f'"{command}"',
                human_age(c["Created"]),
                c["Status"],
                "",
                ",".join(n.lstrip("/") for n in c["Names"]),
            ]
        )
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)


@click.command("logs")
@click.argument("container")
@click.option("-f", "--follow", is_flag=True)
@click.option("-t", "--timestamps", is_flag=True)
@click.option("-n", "--tail", default="all")
@click.option("--since")
@click.option("--until")
@click.pass_context
def logs(
    ctx: click.Context,
    container: str,
    follow: bool,
    timestamps: bool,
    tail: str,
    since: str | None,
    until: str | None,
) -> None:
    """Show a container's output (stdout here, stderr to stderr)."""
    params = {
        "stdout": "1",
        "stderr": "1",
        "follow": int(follow),
        "timestamps": int(timestamps),
        "tail": tail,
        **({"since": since} if since else {}),
        **({"until": until} if until else {}),
    }
    with (
        client_of(ctx, timeout=None) as client,
        client.stream("GET", f"/containers/{container}/logs", params=params) as response,
    ):
        demux = Demux()
        for chunk in response.iter_bytes():
            demux.feed(chunk)


def _each(
    ctx: click.Context,
    containers: tuple[str, ...],
    method: str,
    path: str,
    params: dict[str, Any] | None = None,
) -> None:
    failed = False
    with client_of(ctx, timeout=None) as client:
        for c in containers:
            try:
                client.request(method, path.format(c), params=params or {})
                click.echo(c)
            except ApiError as e:
                click.echo(f"orchestr: {e}", err=True)
                failed = True
    if failed:
        sys.exit(1)


@click.command("start")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Start stopped containers."""
    _each(ctx, containers, "POST", "/containers/{}/start")


@click.command("stop")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing.")
@click.option("-s", "--signal", "sig", help="Signal to send first.")
@click.pass_context
def stop(
    ctx: click.Context, containers: tuple[str, ...], timeout: int | None, sig: str | None
) -> None:
    """Stop containers: the stop signal, then SIGKILL after the grace period."""
    params = {**({"t": timeout} if timeout is not None else {}), **({"signal": sig} if sig else {})}
    _each(ctx, containers, "POST", "/containers/{}/stop", params)


@click.command("restart")
@click.argument("containers", nargs=-1, required=True)
@click.option("-t", "--time", "timeout", type=int)
@click.pass_context
def restart(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Restart containers."""
    _each(
        ctx,
        containers,
        "POST",
        "/containers/{}/restart",
        {"t": timeout} if timeout is not None else {},
    )


@click.command("kill")
@click.argument("containers", nargs=-1, required=True)
@click.option("-s", "--signal", "sig", default="KILL")
@click.pass_context
def kill(ctx: click.Context, containers: tuple[str, ...], sig: str) -> None:
    """Send a signal to containers (default SIGKILL)."""
    _each(ctx, containers, "POST", "/containers/{}/kill", {"signal": sig})


@click.command("rm")
@click.argument("containers", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", is_flag=True, help="Also remove its anonymous volumes.")
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove containers."""
    _each(ctx, containers, "DELETE", "/containers/{}", {"force": int(force), "v": int(volumes)})


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Details of containers (or images) as JSON."""
    out = []
    with client_of(ctx) as client:
        for name in names:
            try:
                out.append(client.json("GET", f"/containers/{name}/json"))
            except ApiError as e:
                if e.status != 404:
                    raise
                out.append(client.json("GET", f"/images/{name}/json"))
    print_json(out)


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Wait for containers to stop; print their exit codes."""
    with client_of(ctx, timeout=None) as client:
        for c in containers:
            click.echo(client.json("POST", f"/containers/{c}/wait")["StatusCode"])

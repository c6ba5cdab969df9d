"""`orchestr stack deploy|ls|ps|rm` and `orchestr service ls|ps|inspect|scale|update|
rollback|rm`: a Compose file as Swarm services, as `docker stack` and `docker service`
do it, against the daemon's control plane (a cluster of one).

`stack deploy` converts the file as `docker stack deploy` does (orchestr/compose/
deploy.py), creates the stack's networks (an `overlay` network is a bridge on a cluster
of one: the overlay driver comes with several nodes), then creates each service or
updates it (a rolling update when its task template changed). The file's `depends_on`
goes with each service (label `org.orchestr.depends-on`), and the control plane starts a
service's first tasks only once its dependencies' conditions hold — Swarm ignores
`depends_on`. `--prune` removes the stack's services the file no longer has.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any
from urllib.parse import quote

import click

from orchestr.cli.common import client_of
from orchestr.cli.output import print_json, print_table, stamp_age
from orchestr.errors import OrchestrError

NAMESPACE = "com.docker.stack.namespace"
DEPENDS_LABEL = "org.orchestr.depends-on"  # orchestr.orchestrator.dependencies.LABEL
UPDATE_DONE = {"completed", "paused", "rollback_completed", "rollback_paused"}


def _q(name: str) -> str:
    return quote(name, safe="")


def _missing(e: Exception) -> bool:
    return getattr(e, "status", 0) == 404


# -- stack ------------------------------------------------------------------------------


@click.group("stack")
def stack() -> None:
    """Stacks of services (docker stack)."""


@stack.command("deploy")
@click.option("-c", "--compose-file", "files", multiple=True, required=True, metavar="FILE")
@click.option("--prune", is_flag=True, help="Remove the stack's services no longer in the file.")
@click.argument("name")
@click.pass_context
def deploy(ctx: click.Context, files: tuple[str, ...], prune: bool, name: str) -> None:
    """Deploy a stack: its networks and services, created or updated."""
    from orchestr.stack.loader import LoadOptions, load_project

    project = load_project(
        LoadOptions(
            files=files,
            project_name=name,
            warn=lambda m: click.echo(f"warning: {m}", err=True),
        )
    )
    with client_of(ctx) as client:
        deploy_project(client, project, prune=prune)


def deploy_project(client: Any, project: Any, *, prune: bool = False) -> list[str]:
    """Create or update the stack's networks and services; the services' names."""
    import os

    from orchestr.compose import deploy as convert

    name = project.name
    specs = convert.stack_specs(project, environ=dict(os.environ))
    for line in specs.warnings:
        click.echo(line, err=True)
    for kind, bodies in (("secret", specs.secrets), ("config", specs.configs)):
        for body in bodies:
            _create_or_label(client, kind, body)
    for network in specs.external_networks:
        try:
            client.json("GET", f"/networks/{_q(network)}")
        except OrchestrError as e:
            if _missing(e):
                raise OrchestrError(
                    f"network {network} is declared as external, but could not be found"
                ) from None
            raise
    for body in specs.networks:
        try:
            client.json("GET", f"/networks/{_q(body['Name'])}")
            continue
        except OrchestrError as e:
            if not _missing(e):
                raise
        click.echo(f"Creating network {body['Name']}")
        client.json("POST", "/networks/create", json=_local_network(body))
    deployed = []
    for spec in specs.services:
        spec = _with_dependencies(spec, specs.dependencies.get(spec["Name"], {}))
        deployed.append(spec["Name"])
        try:
            current = client.json("GET", f"/services/{_q(spec['Name'])}")
        except OrchestrError as e:
            if not _missing(e):
                raise
            click.echo(f"Creating service {spec['Name']}")
            client.json("POST", "/services/create", json=spec)
            continue
        click.echo(f"Updating service {spec['Name']} (id: {current['ID']})")
        client.json(
            "POST",
            f"/services/{current['ID']}/update",
            params={"version": current["Version"]["Index"]},
            json=spec,
        )
    if prune:
        for service in _stack_services(client, name):
            if service["Spec"]["Name"] not in deployed:
                click.echo(f"Removing service {service['Spec']['Name']}")
                client.json("DELETE", f"/services/{service['ID']}")
    return deployed


def _create_or_label(client: Any, kind: str, body: dict[str, Any]) -> None:
    """Create a stack's secret or config, or bring its labels up to date (its data cannot
    change: the daemon says so, naming it)."""
    try:
        current = client.json("GET", f"/{kind}s/{_q(body['Name'])}")
    except OrchestrError as e:
        if not _missing(e):
            raise
        click.echo(f"Creating {kind} {body['Name']}")
        client.json("POST", f"/{kind}s/create", json=body)
        return
    if kind == "config" and current["Spec"].get("Data") != body.get("Data"):
        raise OrchestrError(
            f"config {body['Name']} exists with other content: a config cannot change"
            " (give the new content another name)"
        )
    client.request(
        "POST",
        f"/{kind}s/{current['ID']}/update",
        params={"version": current["Version"]["Index"]},
        json=body,
    )


def wait_converged(client: Any, names: list[str], timeout: float = 0) -> None:
    """Until every service runs as many tasks as it wants (a one-shot job: until it has
    completed) and no update is under way; an update that paused or rolled back fails."""
    start = time.monotonic()
    while True:
        pending = []
        listed = client.json("GET", "/services", params={"status": "true"}) or []
        by_name = {str(s["Spec"]["Name"]): s for s in listed}
        for name in names:
            found = by_name.get(name)
            if found is None:
                raise OrchestrError(f"service {name} is gone")
            status = found.get("ServiceStatus") or {}
            update = (found.get("UpdateStatus") or {}).get("State", "")
            if update in ("paused", "rollback_paused", "rollback_completed"):
                raise OrchestrError(
                    f"service {name}: update {update}: {found['UpdateStatus'].get('Message', '')}"
                )
            running, desired = status.get("RunningTasks", 0), status.get("DesiredTasks", 0)
            if running < desired and not _completed(client, found):
                pending.append(f"{name} {running}/{desired}")
            elif update in ("updating", "rollback_started"):
                pending.append(f"{name} {update}")
        if not pending:
            return
        if timeout and time.monotonic() - start > timeout:
            raise OrchestrError(f"not converged after {timeout:g} s: {', '.join(pending)}")
        time.sleep(0.2)


def _completed(client: Any, service: dict[str, Any]) -> bool:
    """A one-shot job (restart condition none or on-failure) whose tasks completed."""
    condition = (service["Spec"]["TaskTemplate"].get("RestartPolicy") or {}).get("Condition")
    if condition == "any":
        return False
    tasks = client.json(
        "GET",
        "/tasks",
        params={"filters": json.dumps({"service": [service["ID"]], "desired-state": ["running"]})},
    )
    return bool(tasks) and all(t["Status"]["State"] == "complete" for t in tasks)


def remove_stack(client: Any, name: str) -> bool:
    """Remove a stack's services, then its secrets, configs and networks, as `docker
    stack rm` does; whether there was anything."""
    services = _stack_services(client, name)
    labelled = {"filters": json.dumps({"label": [f"{NAMESPACE}={name}"]})}
    networks = client.json("GET", "/networks", params=labelled)
    files = {k: client.json("GET", f"/{k}s", params=labelled) for k in ("secret", "config")}
    for s in services:
        click.echo(f"Removing service {s['Spec']['Name']}")
        client.json("DELETE", f"/services/{s['ID']}")
    for kind, found in files.items():
        for f in found or []:
            click.echo(f"Removing {kind} {f['Spec']['Name']}")
            client.request("DELETE", f"/{kind}s/{f['ID']}")
    for n in networks or []:
        _remove_network(client, n["Name"])
    return bool(services or networks or any(files.values()))


def _local_network(body: dict[str, Any]) -> dict[str, Any]:
    """On a cluster of one an overlay network is a bridge (labelled as the stack's)."""
    out = {k: v for k, v in body.items() if k not in ("Attachable", "Scope", "Ingress")}
    if out.get("Driver") in (None, "", "overlay"):
        out["Driver"] = "bridge"
    return out


def _with_dependencies(spec: dict[str, Any], deps: dict[str, str]) -> dict[str, Any]:
    if not deps:
        return spec
    labels = {**(spec.get("Labels") or {}), DEPENDS_LABEL: json.dumps(deps, sort_keys=True)}
    return {**spec, "Labels": labels}


def _stack_services(client: Any, name: str) -> list[dict[str, Any]]:
    services = client.json(
        "GET", "/services", params={"filters": json.dumps({"label": [f"{NAMESPACE}={name}"]})}
    )
    return list(services or [])


@stack.command("ls")
@click.pass_context
def stack_ls(ctx: click.Context) -> None:
    """List the stacks."""
    with client_of(ctx) as client:
        services = client.json("GET", "/services") or []
    counts: dict[str, int] = {}
    for s in services:
        ns = (s["Spec"].get("Labels") or {}).get(NAMESPACE)
        if ns:
            counts[ns] = counts.get(ns, 0) + 1
    print_table(["NAME", "SERVICES"], [[n, str(c)] for n, c in sorted(counts.items())])


@stack.command("ps")
@click.argument("name")
@click.pass_context
def stack_ps(ctx: click.Context, name: str) -> None:
    """List the tasks of a stack."""
    with client_of(ctx) as client:
        services = _stack_services(client, name)
        if not services:
            raise OrchestrError(f"nothing found in stack: {name}")
        tasks = client.json(
            "GET",
            "/tasks",
            params={"filters": json.dumps({"service": [s["ID"] for s in services]})},
        )
    _print_tasks(tasks or [], {s["ID"]: s["Spec"]["Name"] for s in services})


@stack.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def stack_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove stacks: their services and networks."""
    with client_of(ctx) as client:
        for name in names:
            if not remove_stack(client, name):
                raise OrchestrError(f"nothing found in stack: {name}")


def _remove_network(client: Any, name: str, timeout: float = 60) -> None:
    """Networks go once their tasks' containers have (the worker stops them first)."""
    click.echo(f"Removing network {name}")
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.json("DELETE", f"/networks/{_q(name)}")
            return
        except OrchestrError as e:
            if getattr(e, "status", 0) != 403 and getattr(e, "status", 0) != 409:
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _print_tasks(tasks: list[dict[str, Any]], names: dict[str, str]) -> None:
    rows = []
    for t in sorted(tasks, key=lambda t: (names.get(t["ServiceID"], ""), t.get("Slot", 0))):
        status = t["Status"]
        when = stamp_age(status.get("Timestamp", ""))
        service = names.get(t["ServiceID"], t["ServiceID"])
        rows.append(
            [
                t["ID"][:12],
                f"{service}.{t.get('Slot') or t.get('NodeID', '')}",
                t["Spec"].get("ContainerSpec", {}).get("Image", ""),
                t["DesiredState"].capitalize(),
                f"{status['State'].capitalize()} {when}",
                status.get("Err", ""),
            ]
        )
    print_table(["ID", "NAME", "IMAGE", "DESIRED STATE", "CURRENT STATE", "ERROR"], rows)


# -- service -------------------------------------------------------------------------------


@click.group("service")
def service() -> None:
    """Services (docker service)."""


@service.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@click.pass_context
def service_ls(ctx: click.Context, quiet: bool) -> None:
    """List the services."""
    with client_of(ctx) as client:
        services = client.json("GET", "/services", params={"status": "true"}) or []
    if quiet:
        click.echo("\n".join(s["ID"] for s in services))
        return
    rows = []
    for s in services:
        spec, status = s["Spec"], s.get("ServiceStatus") or {}
        mode = "global" if "Global" in (spec.get("Mode") or {}) else "replicated"
        rows.append(
            [
                s["ID"][:12],
                spec["Name"],
                mode,
                f"{status.get('RunningTasks', 0)}/{status.get('DesiredTasks', 0)}",
                spec["TaskTemplate"]["ContainerSpec"]["Image"],
                _ports(s),
                ((s.get("UpdateStatus") or {}).get("State") or ""),
            ]
        )
    print_table(["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS", "UPDATE"], rows)


def _ports(service: dict[str, Any]) -> str:
    """Its published ports as `docker service ls` shows them: `*:8080->80/tcp`."""
    ports = (service.get("Endpoint") or {}).get("Ports") or []
    return ", ".join(
        f"*:{p.get('PublishedPort', '')}->{p['TargetPort']}/{p.get('Protocol', 'tcp')}"
        for p in ports
    )


@service.command("ps")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def service_ps(ctx: click.Context, names: tuple[str, ...]) -> None:
    """List the tasks of services."""
    with client_of(ctx) as client:
        found = [client.json("GET", f"/services/{_q(n)}") for n in names]
        tasks = client.json(
            "GET", "/tasks", params={"filters": json.dumps({"service": [s["ID"] for s in found]})}
        )
    _print_tasks(tasks or [], {s["ID"]: s["Spec"]["Name"] for s in found})


@service.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def service_inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show services as the Engine API does."""
    with client_of(ctx) as client:
        print_json([client.json("GET", f"/services/{_q(n)}") for n in names])


@service.command("scale")
@click.option("-d", "--detach", is_flag=True, help="Do not wait for the tasks.")
@click.argument("pairs", nargs=-1, required=True, metavar="SERVICE=REPLICAS...")
@click.pass_context
def service_scale(ctx: click.Context, detach: bool, pairs: tuple[str, ...]) -> None:
    """Set the replicas of services."""
    wanted: dict[str, int] = {}
    for pair in pairs:
        key, eq, number = pair.partition("=")
        if not eq or not number.isdigit():
            raise OrchestrError(f"invalid scale specifier {pair!r}: want SERVICE=REPLICAS")
        wanted[key] = int(number)
    with client_of(ctx) as client:
        for name, replicas in wanted.items():
            _change(client, name, functools.partial(_set_replicas, n=replicas))
            click.echo(f"{name} scaled to {replicas}")
        if not detach:
            for name, replicas in wanted.items():
                _wait_running(client, name, replicas)


def _set_replicas(spec: dict[str, Any], n: int) -> dict[str, Any]:
    if "Replicated" not in (spec.get("Mode") or {}):
        raise OrchestrError(f"{spec['Name']}: scale can only be used with replicated mode")
    return {**spec, "Mode": {"Replicated": {"Replicas": n}}}


@service.command("update")
@click.option("-d", "--detach", is_flag=True, help="Do not wait for the update.")
@click.option("--image", help="The new image.")
@click.option("--replicas", type=int, help="The number of tasks.")
@click.option("--env-add", multiple=True, metavar="KEY=VALUE")
@click.option("--env-rm", multiple=True, metavar="KEY")
@click.option("--force", is_flag=True, help="Replace the tasks even if nothing changed.")
@click.argument("name")
@click.pass_context
def service_update(
    ctx: click.Context,
    detach: bool,
    image: str | None,
    replicas: int | None,
    env_add: tuple[str, ...],
    env_rm: tuple[str, ...],
    force: bool,
    name: str,
) -> None:
    """Change a service: a rolling update of its tasks when their template changes."""

    def change(spec: dict[str, Any]) -> dict[str, Any]:
        template = dict(spec["TaskTemplate"])
        container = dict(template["ContainerSpec"])
        if image:
            container["Image"] = image
        if env_add or env_rm:
            env = {e.partition("=")[0]: e for e in container.get("Env") or []}
            for key in env_rm:
                env.pop(key, None)
            for item in env_add:
                env[item.partition("=")[0]] = item
            container["Env"] = sorted(env.values())
        template["ContainerSpec"] = container
        if force:
            template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
        out = {**spec, "TaskTemplate": template}
        return _set_replicas(out, replicas) if replicas is not None else out

    with client_of(ctx) as client:
        _change(client, name, change)
        click.echo(name)
        if not detach:
            _wait_update(client, name)


@service.command("rollback")
@click.option("-d", "--detach", is_flag=True, help="Do not wait for the rollback.")
@click.argument("name")
@click.pass_context
def service_rollback(ctx: click.Context, detach: bool, name: str) -> None:
    """Bring back a service's previous spec."""
    with client_of(ctx) as client:
        current = client.json("GET", f"/services/{_q(name)}")
        client.json(
            "POST",
            f"/services/{current['ID']}/update",
            params={"version": current["Version"]["Index"], "rollback": "previous"},
            json=current["Spec"],
        )
        click.echo(name)
        if not detach:
            _wait_update(client, name, rollback=True)


@service.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def service_rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove services."""
    with client_of(ctx) as client:
        for name in names:
            client.json("DELETE", f"/services/{_q(name)}")
            click.echo(name)


@service.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Follow the output (and new tasks').")
@click.option("-t", "--timestamps", is_flag=True)
@click.option("-n", "--tail", default="all", help="Lines per task from the end (or all).")
@click.option("--since", help="RFC 3339 time or UNIX seconds.")
@click.option("--raw", is_flag=True, help="The lines alone, without their task.")
@click.option("--no-task-ids", is_flag=True, help="Tasks named without their ID.")
@click.option("--no-trunc", is_flag=True, help="Task IDs in full.")
@click.pass_context
def service_logs(
    ctx: click.Context,
    name: str,
    follow: bool,
    timestamps: bool,
    tail: str,
    since: str | None,
    raw: bool,
    no_task_ids: bool,
    no_trunc: bool,
) -> None:
    """A service's (or one task's) output, each line after the task that wrote it:
    `name.slot.id@node | line`, as `docker service logs` shows it."""
    from orchestr.cli.common import Demux
    from orchestr.cli.fast import FrameSplitter

    params = {
        "stdout": "1",
        "stderr": "1",
        "follow": int(follow),
        "timestamps": int(timestamps),
        "details": int(not raw),
        "tail": tail,
        **({"since": since} if since else {}),
    }
    with client_of(ctx, timeout=None) as client:
        try:
            target = client.json("GET", f"/services/{_q(name)}")
            path, spec = f"/services/{target['ID']}/logs", target["Spec"]["TaskTemplate"]
        except Exception as e:
            if not _missing(e):
                raise
            try:
                target = client.json("GET", f"/tasks/{_q(name)}")
            except Exception as e2:
                if _missing(e2):
                    raise OrchestrError(f"no such service or task: {name}") from None
                raise
            path, spec = f"/tasks/{target['ID']}/logs", target["Spec"]
        tty = bool((spec.get("ContainerSpec") or {}).get("TTY"))
        if tty and not raw:
            raise OrchestrError(f"{name}: a TTY's output cannot be told apart by task; use --raw")
        names = _TaskNames(client, no_task_ids=no_task_ids, no_trunc=no_trunc)
        demux = Demux()

        def by_task(stream: int, data: bytes) -> None:
            demux.write(stream, names.line(data, timestamps))

        splitter = demux if raw else FrameSplitter(by_task)
        feed = functools.partial(demux.write, 1) if tty else splitter.feed
        with client.stream("GET", path, params=params) as response:
            for chunk in response.iter_bytes():
                feed(chunk)


class _TaskNames:
    """A log line's context (its details: node, service and task IDs) as the task's
    name, `service.slot.id@node`, looked up once per task."""

    def __init__(self, client: Any, *, no_task_ids: bool, no_trunc: bool) -> None:
        self.client = client
        self.no_task_ids = no_task_ids
        self.no_trunc = no_trunc
        self._names: dict[str, str] = {}

    def line(self, data: bytes, timestamps: bool) -> bytes:
        from orchestr.api.logstream import split_line

        stamp, attrs, message = split_line(data, timestamps=timestamps)
        task_id = attrs.get("com.docker.swarm.task.id", "")
        return (stamp + b" " if stamp else b"") + self.name(task_id).encode() + b"    | " + message

    def name(self, task_id: str) -> str:
        if task_id not in self._names:
            try:
                task = self.client.json("GET", f"/tasks/{_q(task_id)}")
                service = self.client.json("GET", f"/services/{task['ServiceID']}")
                node = self.client.json("GET", f"/nodes/{task['NodeID']}")
                where = task.get("Slot") or task["NodeID"]
                name = f"{service['Spec']['Name']}.{where}"
                if not self.no_task_ids:
                    name += "." + (task_id if self.no_trunc else task_id[:12])
                name += "@" + node["Description"]["Hostname"]
            except Exception:
                name = task_id  # the task was removed meanwhile
            self._names[task_id] = name
        return self._names[task_id]


def _change(client: Any, name: str, change: Any) -> None:
    current = client.json("GET", f"/services/{_q(name)}")
    client.json(
        "POST",
        f"/services/{current['ID']}/update",
        params={"version": current["Version"]["Index"]},
        json=change(current["Spec"]),
    )


def _wait_running(client: Any, name: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        [found] = client.json(
            "GET", "/services", params={"status": "true", "filters": json.dumps({"name": [name]})}
        ) or [None]
        status = (found or {}).get("ServiceStatus") or {}
        if status.get("RunningTasks") == n and status.get("DesiredTasks") == n:
            return
        if time.monotonic() > deadline:
            raise OrchestrError(
                f"{name}: {status.get('RunningTasks')}/{n} running after {timeout:g} s"
            )
        time.sleep(0.2)


def _wait_update(client: Any, name: str, rollback: bool = False, timeout: float = 1800) -> None:
    """Follow the update status until it ends. An update that pauses, or is rolled back,
    fails the command (exit 1), as does a rollback that pauses."""
    success = "rollback_completed" if rollback else "completed"
    start = time.monotonic()
    seen = ""
    while time.monotonic() - start < timeout:
        doc = client.json("GET", f"/services/{_q(name)}")
        status = doc.get("UpdateStatus") or {}
        state = status.get("State", "")
        if state != seen:
            message = f": {status['Message']}" if status.get("Message") else ""
            click.echo(f"{name}: {state}{message}", err=True)
            seen = state
        if state == success:
            return
        if state in UPDATE_DONE:
            sys.exit(1)
        if not state and time.monotonic() - start > 2:
            return  # nothing to roll: the task template did not change
        time.sleep(0.2)
    raise OrchestrError(f"{name}: the update did not end in {timeout:g} s")

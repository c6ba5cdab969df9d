"""`orchestr info`, `system df|events|prune`, and pause, unpause, top and stats."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from orchestr.cli.common import client_of, filters_param, format_option
from orchestr.cli.containers import _each
from orchestr.cli.output import human_size, print_json, print_table
from orchestr.client import json_stream


@click.command("info")
@format_option
@click.pass_context
def info(ctx: click.Context, fmt: str) -> None:
    """What the daemon says of itself and the node."""
    with client_of(ctx) as client:
        doc = client.json("GET", "/info")
    if fmt == "json":
        print_json(doc)
        return
    rows = [
        ("Server Version", doc["ServerVersion"]),
        (
            "Containers",
            f"{doc['Containers']} (running {doc['ContainersRunning']}, "
            f"paused {doc['ContainersPaused']}, stopped {doc['ContainersStopped']})",
        ),
        ("Images", str(doc["Images"])),
        ("Storage Driver", doc["Driver"]),
        ("Cgroup Version", doc["CgroupVersion"]),
        ("Kernel Version", doc["KernelVersion"]),
        ("Operating System", doc["OperatingSystem"]),
        ("CPUs", str(doc["NCPU"])),
        ("Total Memory", human_size(doc["MemTotal"])),
        ("Root Dir", doc["DockerRootDir"]),
    ]
    for key, value in rows:
        click.echo(f"{key}: {value}")


@click.group("system")
def system() -> None:
    """Disk usage, events and pruning."""


@system.command("df")
@format_option
@click.pass_context
def df(ctx: click.Context, fmt: str) -> None:
    """Disk usage of images, containers and volumes."""
    with client_of(ctx) as client:
        doc = client.json("GET", "/system/df")
    if fmt == "json":
        print_json(doc)
        return
    images = doc.get("Images") or []
    containers = doc.get("Containers") or []
    volumes = doc.get("Volumes") or []
    active_images = {c["ImageID"] for c in containers}
    rows = [
        [
            "Images",
            str(len(images)),
            str(sum(1 for i in images if i["Id"] in active_images)),
            human_size(doc.get("LayersSize", 0)),
            human_size(sum(i["Size"] for i in images if i["Id"] not in active_images)),
        ],
        [
            "Containers",
            str(len(containers)),
            str(sum(1 for c in containers if c["State"] == "running")),
            human_size(sum(c.get("SizeRw", 0) for c in containers)),
            human_size(sum(c.get("SizeRw", 0) for c in containers if c["State"] != "running")),
        ],
        [
            "Local Volumes",
            str(len(volumes)),
            str(sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount", 0) > 0)),
            human_size(sum(max(0, (v.get("UsageData") or {}).get("Size", 0)) for v in volumes)),
            human_size(
                sum(
                    max(0, (v.get("UsageData") or {}).get("Size", 0))
                    for v in volumes
                    if (v.get("UsageData") or {}).get("RefCount", 0) == 0
                )
            ),
        ],
    ]
    print_table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows)


@system.command("events")
@click.option("--since")
@click.option("--until")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE")
@format_option
@click.pass_context
def events(
    ctx: click.Context, since: str | None, until: str | None, filters: tuple[str, ...], fmt: str
) -> None:
    """Show the daemon's events as they happen."""
    params: dict[str, Any] = {
        **({"since": since} if since else {}),
        **({"until": until} if until else {}),
        **filters_param(filters),
    }
    with (
        client_of(ctx, timeout=None) as client,
        client.stream("GET", "/events", params=params) as response,
    ):
        for event in json_stream(response):
            if fmt == "json":
                click.echo(json.dumps(event))
                continue
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event["time"]))
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(event["Actor"]["Attributes"].items()))
            click.echo(f"{when} {event['Type']} {event['Action']} {event['Actor']['ID']} ({attrs})")
            sys.stdout.flush()


@system.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Also images no container uses.")
@click.option("--volumes", is_flag=True, help="Also volumes no container uses.")
@click.option("-f", "--force", is_flag=True)
@click.pass_context
def prune(ctx: click.Context, all_: bool, volumes: bool, force: bool) -> None:
    """Remove stopped containers, unused images (and volumes) and unreferenced content."""
    if not force:
        click.confirm(
            "This will remove all stopped containers and unused data. Continue?", abort=True
        )
    reclaimed = 0
    with client_of(ctx, timeout=None) as client:
        answer = client.json("POST", "/containers/prune")
        for cid in answer.get("ContainersDeleted") or []:
            click.echo(f"Deleted container: {cid}")
        if volumes:
            answer = client.json("POST", "/volumes/prune")
            reclaimed += answer.get("SpaceReclaimed", 0)
            for name in answer.get("VolumesDeleted") or []:
                click.echo(f"Deleted volume: {name}")
        filters = json.dumps({"dangling": {"false": True}}) if all_ else None
        answer = client.json(
            "POST", "/images/prune", params={"filters": filters} if filters else {}
        )
        reclaimed += answer.get("SpaceReclaimed", 0)
        for item in answer.get("ImagesDeleted") or []:
            for key, value in item.items():
                click.echo(f"{key}: {value}")
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Freeze every process of containers."""
    _each(ctx, containers, "POST", "/containers/{}/pause")


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    _each(ctx, containers, "POST", "/containers/{}/unpause")


@click.command("top")
@click.argument("container")
@click.argument("ps_args", nargs=-1)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """The processes of a container (ps on the node)."""
    params = {"ps_args": " ".join(ps_args)} if ps_args else {}
    with client_of(ctx) as client:
        doc = client.json("GET", f"/containers/{container}/top", params=params)
    print_table(doc["Titles"], doc["Processes"])


@click.command("stats")
@click.argument("containers", nargs=-1)
@click.option("--no-stream", is_flag=True, help="One reading, then exit.")
@format_option
@click.pass_context
def stats(ctx: click.Context, containers: tuple[str, ...], no_stream: bool, fmt: str) -> None:
    """CPU, memory and process counts of containers (one reading with --no-stream)."""
    with client_of(ctx, timeout=None) as client:
        if not containers:
            containers = tuple(c["Id"][:12] for c in client.json("GET", "/containers/json"))
        while True:
            rows = []
            docs = []
            for c in containers:
                doc = client.json("GET", f"/containers/{c}/stats", params={"stream": "0"})
                docs.append(doc)
                cpu = doc["cpu_stats"]
                pre = doc["precpu_stats"]
                delta = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
                system = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
                percent = delta / system * cpu.get("online_cpus", 1) * 100 if system > 0 else 0.0
                mem = doc.get("memory_stats") or {}
                usage, limit = mem.get("usage", 0), mem.get("limit", 0) or 1
                rows.append(
                    [
                        doc["id"][:12],
                        doc["name"].lstrip("/"),
                        f"{percent:.2f}%",
                        f"{human_size(usage)} / {human_size(limit)}",
                        f"{usage / limit * 100:.2f}%",
                        str((doc.get("pids_stats") or {}).get("current", 0)),
                    ]
                )
            if fmt == "json":
                print_json(docs)
            else:
                print_table(
                    ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"], rows
                )
            if no_stream:
                return

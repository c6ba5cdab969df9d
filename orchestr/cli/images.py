"""`orchestr image …`, `pull`, `push` and `build`: the image commands, through the
daemon's Engine API (the same calls the docker CLI makes)."""

from __future__ import annotations

import base64
import json
import os
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any

import click

from orchestr.cli.common import client_of, filters_param, format_option, split_tag
from orchestr.cli.output import (
    ProgressView,
    human_age,
    human_size,
    print_json,
    print_table,
    short_id,
)
from orchestr.client import json_stream
from orchestr.errors import OrchestrError


@click.group("image")
def image() -> None:
    """Manage images (ls, inspect, rm, tag, prune, history, import, load, save)."""


# -- reading -------------------------------------------------------------------------------


@image.command("ls")
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (the same here).")
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True, help="Show digests.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE")
@format_option
@click.pass_context
def image_ls(
    ctx: click.Context,
    all_: bool,
    quiet: bool,
    digests: bool,
    filters: tuple[str, ...],
    fmt: str,
) -> None:
    """List images."""
    query: dict[str, Any] = filters_param(filters)
    with client_of(ctx) as client:
        images = client.json("GET", "/images/json", params=query)
    if fmt == "json":
        print_json(images)
        return
    if quiet:
        seen: dict[str, None] = {}
        for i in images:
            seen[short_id(i["Id"])] = None
        click.echo("\n".join(seen))
        return
    rows = []
    for i in images:
        tags = i.get("RepoTags") or ["<none>:<none>"]
        digest_of = {d.split("@")[0]: d.split("@")[1] for d in i.get("RepoDigests") or []}
        for tag in tags:
            repo, _, name = tag.rpartition(":")
            row = [repo, name]
            if digests:
                row.append(digest_of.get(repo, "<none>"))
            row += [short_id(i["Id"]), human_age(i["Created"]), human_size(i["Size"])]
            rows.append(row)
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED"]
    print_table([*headers, "SIZE"], rows)


@image.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def image_inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show images' details as JSON."""
    out = []
    with client_of(ctx) as client:
        for name in names:
            out.append(client.json("GET", f"/images/{name}/json"))
    print_json(out)


@image.command("history")
@click.argument("name")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@format_option
@click.pass_context
def image_history(ctx: click.Context, name: str, no_trunc: bool, fmt: str) -> None:
    """Show the layers an image was made of, newest first."""
    with client_of(ctx) as client:
        history = client.json("GET", f"/images/{name}/history")
    if fmt == "json":
        print_json(history)
        return
    rows = []
    for h in history:
        created_by = (
            h["CreatedBy"] if no_trunc or len(h["CreatedBy"]) <= 45 else h["CreatedBy"][:44] + "…"
        )
        ident = h["Id"] if h["Id"] == "<missing>" or no_trunc else short_id(h["Id"])
        rows.append(
            [ident, human_age(h["Created"]), created_by, human_size(h["Size"]), h["Comment"]]
        )
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], rows)


# -- names ---------------------------------------------------------------------------------


@image.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def image_tag(ctx: click.Context, source: str, target: str) -> None:
    """Give SOURCE the name TARGET."""
    repo, tag = split_tag(target)
    params = {"repo": repo, **({"tag": tag} if tag else {})}
    with client_of(ctx) as client:
        client.request("POST", f"/images/{source}/tag", params=params)


@image.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Remove even when several names point at it.")
@click.pass_context
def image_rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove images (untag; delete when no name is left)."""
    failed = []
    with client_of(ctx) as client:
        for name in names:
            try:
                answer = client.json("DELETE", f"/images/{name}", params={"force": int(force)})
            except OrchestrError as e:
                click.echo(f"orchestr: {e}", err=True)
                failed.append(name)
                continue
            for item in answer:
                for key, value in item.items():
                    click.echo(f"{key}: {value}")
    if failed:
        sys.exit(1)


@image.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="Remove every image no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def image_prune(ctx: click.Context, all_: bool, force: bool) -> None:
    """Remove unused images and the content nothing refers to."""
    if not force:
        what = "all images without at least one container" if all_ else "dangling images"
        click.confirm(f"This will remove {what}. Are you sure you want to continue?", abort=True)
    filters = json.dumps({"dangling": {"false": True}}) if all_ else None
    with client_of(ctx, timeout=None) as client:
        result = client.json(
            "POST", "/images/prune", params={"filters": filters} if filters else {}
        )
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        click.echo("Deleted Images:")
        for item in deleted:
            for key, value in item.items():
                click.echo(f"{key.lower()}: {value}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed', 0))}")


# -- archives ------------------------------------------------------------------------------


def _tar_directory(directory: str, out: IO[bytes], extra: dict[str, str] | None = None) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, name), arcname=name)
        for arcname, path in (extra or {}).items():
            tar.add(path, arcname=arcname)


def _file_chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(1 << 20):
        yield chunk


@image.command("import")
@click.argument("source")
@click.argument("name")
@click.pass_context
def image_import(ctx: click.Context, source: str, name: str) -> None:
    """Make a one-layer image NAME[:TAG] from a root file system (a tarball, a directory,
    or - for a tarball on stdin)."""
    repo, tag = split_tag(name)
    params = {"fromSrc": "-", "repo": repo, **({"tag": tag} if tag else {})}
    with tempfile.TemporaryFile() as spool:
        if source == "-":
            f: IO[bytes] = sys.stdin.buffer
        elif os.path.isdir(source):
            _tar_directory(source, spool)
            spool.seek(0)
            f = spool
        elif os.path.isfile(source):
            f = open(source, "rb")  # noqa: SIM115 - closed below
        else:
            raise OrchestrError(f"{source}: no such file or directory")
        try:
            with (
                client_of(ctx, timeout=None) as client,
                client.stream(
                    "POST", "/images/create", params=params, content=_file_chunks(f)
                ) as response,
            ):
                for message in json_stream(response):
                    if message.get("status"):
                        click.echo(message["status"])
        finally:
            if f not in (spool, sys.stdin.buffer):
                f.close()


@image.command("load")
@click.option("-i", "--input", "path", type=click.Path(dir_okay=False), help="Archive to read.")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def image_load(ctx: click.Context, path: str | None, quiet: bool) -> None:
    """Load images from a docker-save or OCI archive (default: stdin)."""
    if path is None and sys.stdin.isatty():
        raise OrchestrError("requested load from stdin, but stdin is empty; use -i FILE")
    f = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115
    try:
        with (
            client_of(ctx, timeout=None) as client,
            client.stream(
                "POST", "/images/load", params={"quiet": int(quiet)}, content=_file_chunks(f)
            ) as response,
            ProgressView(quiet) as view,
        ):
            view.show(json_stream(response))
    finally:
        if path:
            f.close()


@image.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", "path", type=click.Path(dir_okay=False), help="File to write.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker-save archive, or OCI image layout archive.",
)
@click.pass_context
def image_save(ctx: click.Context, names: tuple[str, ...], path: str | None, fmt: str) -> None:
    """Write images to an archive (default: stdout) that `docker load` and skopeo read."""
    if path is None and sys.stdout.isatty():
        raise OrchestrError("refusing to write an archive to a terminal; use -o FILE")
    with (
        client_of(ctx, timeout=None) as client,
        client.stream(
            "GET", "/images/get", params={"names": list(names), "format": fmt}
        ) as response,
    ):
        if path is None:
            for chunk in response.iter_bytes():
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


# -- registries ----------------------------------------------------------------------------


def _auth_header(username: str | None, password: str | None) -> dict[str, str]:
    if not username:
        return {}
    doc = json.dumps({"username": username, "password": password or ""}).encode()
    return {"X-Registry-Auth": base64.urlsafe_b64encode(doc).decode()}


_username = click.option("-u", "--username", envvar="ORCHESTR_REGISTRY_USER", help="Registry user.")
_password = click.option(
    "--password", envvar="ORCHESTR_REGISTRY_PASSWORD", help="Registry password."
)
_quiet = click.option("-q", "--quiet", is_flag=True, help="Only print the name when done.")
_insecure = click.option(
    "--insecure", is_flag=True, help="Plain HTTP to the registry (loopback ones always are)."
)


@click.command("pull")
@click.argument("name")
@_username
@_password
@_quiet
@_insecure
@click.pass_context
def pull(
    ctx: click.Context,
    name: str,
    username: str | None,
    password: str | None,
    quiet: bool,
    insecure: bool,
) -> None:
    """Pull an image from a registry (by tag or digest)."""
    repo, tag = _split_digest_or_tag(name)
    params = {"fromImage": repo, **({"tag": tag} if tag else {})}
    if insecure:
        params["insecure"] = "1"
    with (
        client_of(ctx, timeout=None) as client,
        client.stream(
            "POST", "/images/create", params=params, headers=_auth_header(username, password)
        ) as response,
        ProgressView(quiet) as view,
    ):
        view.show(json_stream(response))
    if quiet:
        click.echo(name)


def _split_digest_or_tag(name: str) -> tuple[str, str | None]:
    if "@" in name:
        repo, _, digest = name.partition("@")
        return repo, digest
    return split_tag(name)


@click.command("push")
@click.argument("name")
@_username
@_password
@_quiet
@_insecure
@click.pass_context
def push(
    ctx: click.Context,
    name: str,
    username: str | None,
    password: str | None,
    quiet: bool,
    insecure: bool,
) -> None:
    """Push an image to its registry."""
    repo, tag = split_tag(name)
    with (
        client_of(ctx, timeout=None) as client,
        client.stream(
            "POST",
            f"/images/{repo}/push",
            params={**({"tag": tag} if tag else {}), **({"insecure": "1"} if insecure else {})},
            headers=_auth_header(username, password),
        ) as response,
        ProgressView(quiet) as view,
    ):
        view.show(json_stream(response))
    if quiet:
        click.echo(name)


# -- build ---------------------------------------------------------------------------------


@click.command("build")
@click.argument("context", type=click.Path(exists=True, file_okay=False))
@click.option("-t", "--tag", "tags", multiple=True, help="Name (and tag) of the image.")
@click.option("-f", "--file", "dockerfile", help="The Dockerfile (default: CONTEXT/Dockerfile).")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE")
@click.option("--target", help="The stage to build.")
@click.option("--no-cache", is_flag=True, help="Do not use the layer cache.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE")
@click.option("--network", type=click.Choice(["default", "host", "none"]), default="default")
@click.option("-q", "--quiet", is_flag=True, help="Only print the image ID.")
@click.pass_context
def build(
    ctx: click.Context,
    context: str,
    tags: tuple[str, ...],
    dockerfile: str | None,
    build_args: tuple[str, ...],
    target: str | None,
    no_cache: bool,
    labels: tuple[str, ...],
    network: str,
    quiet: bool,
) -> None:
    """Build an image from a Dockerfile and a context directory."""
    extra: dict[str, str] = {}
    dockerfile_name = "Dockerfile"
    if dockerfile is not None:
        relative = os.path.relpath(os.path.abspath(dockerfile), os.path.abspath(context))
        if relative.startswith(".."):  # outside the context: sent along, as docker does
            dockerfile_name = f".orchestr-dockerfile-{uuid.uuid4().hex[:12]}"
            extra[dockerfile_name] = dockerfile
        else:
            dockerfile_name = relative
    params: dict[str, Any] = {
        "t": list(tags),
        "dockerfile": dockerfile_name,
        "buildargs": json.dumps(_pairs(build_args, "--build-arg")),
        "labels": json.dumps(_pairs(labels, "--label")),
        "networkmode": network,
        "nocache": int(no_cache),
        "q": int(quiet),
        **({"target": target} if target else {}),
    }
    with tempfile.TemporaryFile() as spool:
        _tar_directory(context, spool, extra)
        spool.seek(0)
        with (
            client_of(ctx, timeout=None) as client,
            client.stream(
                "POST",
                "/build",
                params=params,
                content=_file_chunks(spool),
                headers={"Content-Type": "application/x-tar"},
            ) as response,
        ):
            view = ProgressView(quiet=False)
            messages = json_stream(response)
            if quiet:
                for m in messages:
                    if "aux" in m:
                        click.echo(m["aux"].get("ID", ""))
                return
            view.show(messages)


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint=flag)
        out[key] = value if eq else os.environ.get(key, "")
    return out

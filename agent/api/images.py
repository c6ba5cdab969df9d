"""The Engine API's image endpoints, over the node's image service.

Paths and shapes are dockerd's (v1.41): list, inspect, history, tag, remove,
prune, create (pull with `fromImage`, import with `fromSrc=-`), push, load,
get (save) and build. Progress is streamed as the JSON messages the docker
CLI renders (`status`/`progressDetail`/`id` for pull and push, `stream` and
`aux` for build and load). Blocking work runs in worker threads.

Registries on loopback (localhost, 127.0.0.0/8, ::1) are reached over plain
HTTP as dockerd does without configuration; others need TLS unless listed in
the daemon's `insecure_registries` or the request says `insecure=1` (orchestr's
own parameter, behind `orchestr pull/push --insecure`). `GET /images/get` also
takes `format=oci` (orchestr's own) for an OCI archive.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from agent.events import EventBus
from agent.images import archive, registry
from agent.images.build.builder import Builder, BuildError, BuildOptions
from agent.images.importer import import_rootfs
from agent.images.reference import Reference, parse
from agent.images.service import ImageConflict, ImageService
from agent.images.store import ImageNotFound
from orchestr.api.http import HttpError, Request, Response, Router, json_response
from orchestr.api.http import stream_from_thread as stream

Emit = Callable[[object], None]


def _reference(text: str) -> str:
    try:
        return str(parse(text))
    except ValueError as e:
        raise HttpError(400, str(e)) from None


def _loopback(domain: str) -> bool:
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    host = host.strip("[]")
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _auth(request: Request) -> tuple[str, str] | None:
    """X-Registry-Auth: base64url JSON {username, password} (empty: anonymous)."""
    header = request.headers.get("x-registry-auth", "").strip()
    if not header:
        return None
    try:
        padded = header + "=" * (-len(header) % 4)
        doc = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        raise HttpError(400, "X-Registry-Auth: not base64-encoded JSON") from None
    if not isinstance(doc, dict) or not doc.get("username"):
        return None
    return str(doc["username"]), str(doc.get("password", ""))


class _Progress:
    """Registry progress callbacks as Docker's JSON progress messages (throttled)."""

    def __init__(self, emit: Emit, verb: str, done_status: str, heading: object) -> None:
        self.emit = emit
        self.verb = verb
        self.done_status = done_status
        self._heading: object | None = heading  # sent with the first progress, not before
        self._last: dict[str, float] = {}
        self._finished: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._heading is not None:
                self.emit(self._heading)
                self._heading = None

    def __call__(self, digest: str, done: int, total: int) -> None:
        self.start()
        short = digest.split(":", 1)[-1][:12]
        now = time.monotonic()
        with self._lock:
            if short in self._finished:
                return
            if done >= total:
                self._finished.add(short)
                self.emit({"status": self.done_status, "progressDetail": {}, "id": short})
                return
            if now - self._last.get(short, 0.0) < 0.1:
                return
            self._last[short] = now
        self.emit(
            {
                "status": self.verb,
                "progressDetail": {"current": done, "total": total},
                "progress": _bar(done, total),
                "id": short,
            }
        )


def _bar(done: int, total: int, width: int = 50) -> str:
    filled = int(width * done / total) if total else 0
    arrow = ">" if filled < width else ""
    return f"[{'=' * filled}{arrow}{' ' * (width - filled - len(arrow))}] {done}/{total}"


class ImagesApi:
    """Routes for /images/* and /build."""

    def __init__(
        self,
        service: ImageService,
        *,
        runtime_root: str,
        insecure_registries: frozenset[str] = frozenset(),
        events: EventBus | None = None,
    ) -> None:
        self.events = events or EventBus()
        self.service = service
        self.runtime_root = runtime_root
        self.insecure_registries = insecure_registries
        self.tmp_dir = os.path.join(service.data_root, "tmp")
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        self.router = Router()
        r = self.router
        r.route("GET", "/images/json")(self.list_images)
        r.route("POST", "/images/create")(self.create)
        r.route("POST", "/images/load")(self.load)
        r.route("GET", "/images/get")(self.save_many)
        r.route("POST", "/images/prune")(self.prune)
        r.route("POST", "/build")(self.build)
        r.route("GET", "/images/{name:path}/json")(self.inspect)
        r.route("GET", "/images/{name:path}/history")(self.history)
        r.route("GET", "/images/{name:path}/get")(self.save_one)
        r.route("POST", "/images/{name:path}/tag")(self.tag)
        r.route("POST", "/images/{name:path}/push")(self.push)
        r.route("DELETE", "/images/{name:path}")(self.remove)

    # -- helpers

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ImageNotFound as e:
            raise HttpError(404, str(e)) from None
        except ImageConflict as e:
            raise HttpError(409, str(e)) from None

    def _insecure(self, reference: str) -> bool:
        domain = parse(reference).domain
        return _loopback(domain) or domain in self.insecure_registries

    @contextlib.contextmanager
    def _spooled(self) -> Iterator[str]:
        fd, path = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
        os.close(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _receive(self, request: Request, path: str) -> int:
        """The request body into `path` (never whole in memory); returns its size."""
        size = 0
        with open(path, "wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
                size += len(chunk)
        return size

    # -- reading

    async def list_images(self, request: Request) -> Response:
        filters = request.json_arg("filters") or {}
        if not isinstance(filters, dict):
            raise HttpError(400, "filters: expected a JSON object")
        for key in filters:
            if key not in ("reference", "label", "dangling"):
                raise HttpError(400, f"invalid filter '{key}'")

        def summaries() -> list[dict[str, Any]]:
            out = []
            for record in self.service.records():
                if not _matches(record.repo_tags, record.config, filters):
                    continue
                out.append(self.service.summary(record))
            return out

        return json_response(await self._call(summaries))

    async def inspect(self, request: Request) -> Response:
        name = request.params["name"]
        record = await self._call(self.service.find, name)
        return json_response(await self._call(self.service.inspect, record))

    async def history(self, request: Request) -> Response:
        record = await self._call(self.service.find, request.params["name"])
        return json_response(await self._call(self.service.history, record))

    # -- names

    async def tag(self, request: Request) -> Response:
        repo = request.arg("repo")
        if not repo:
            raise HttpError(400, "repository name (repo) is required")
        try:
            name = await self._call(
                self.service.tag, request.params["name"], repo, request.arg("tag")
            )
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        self.events.publish("image", "tag", request.params["name"], {"name": name})
        return Response(201, b"", None)

    async def remove(self, request: Request) -> Response:
        answer = await self._call(
            self.service.remove, request.params["name"], force=request.flag("force")
        )
        if any("Deleted" in a for a in answer) and not request.flag("noprune"):
            await self._call(self.service.collect)
        for item in answer:
            for key, actor in item.items():  # Docker's actions: untag, delete
                action = {"Untagged": "untag", "Deleted": "delete"}.get(key, key.lower())
                self.events.publish("image", action, actor, {"name": actor})
        return json_response(answer)

    async def prune(self, request: Request) -> Response:
        filters = request.json_arg("filters") or {}
        dangling = filters.get("dangling", ["true"]) if isinstance(filters, dict) else ["true"]
        if isinstance(dangling, dict):
            dangling = [k for k, v in dangling.items() if v]
        all_images = "false" in dangling or "0" in dangling
        return json_response(await self._call(self.service.prune, all_images=all_images))

    # -- pull, import, push

    async def create(self, request: Request) -> Response | None:
        source = request.arg("fromSrc")
        if source is not None:
            return await self._import(request, source)
        image = request.arg("fromImage")
        if not image:
            raise HttpError(400, "fromImage or fromSrc is required")
        tag = request.arg("tag")
        if tag:
            image = f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
        reference = parse_or_400(image)
        platform = request.arg("platform")
        if platform and platform not in ("linux", f"linux/{_arch()}"):
            raise HttpError(400, f"platform {platform}: only linux/{_arch()} is supported here")
        auth = _auth(request)
        insecure = self._insecure(str(reference)) or request.flag("insecure")

        def pull(emit: Emit) -> None:
            label = reference.tag or reference.digest or "latest"
            heading = {"status": f"Pulling from {reference.path}", "id": label}
            progress = _Progress(emit, "Downloading", "Pull complete", heading)
            before = _target(self.service, str(reference))
            pulled = registry.pull(
                self.service.content,
                self.service.images,
                str(reference),
                insecure=insecure,
                auth=auth,
                progress=progress,
                leases=self.service.leases,
            )
            progress.start()
            emit({"status": f"Digest: {pulled.repo_digest or pulled.target.digest}"})
            self.events.publish(
                "image", "pull", reference.familiar(), {"name": reference.familiar()}
            )
            fresh = before != str(pulled.target.digest)
            verb = "Downloaded newer image for" if fresh else "Image is up to date for"
            emit({"status": f"Status: {verb} {reference.familiar()}"})

        await stream(request, _registry_errors(pull))
        return None

    async def _import(self, request: Request, source: str) -> Response | None:
        if source != "-":
            raise HttpError(400, f"fromSrc={source}: only an uploaded archive (-) is supported")
        if request.args("changes") and any(request.args("changes")):
            raise HttpError(400, "changes: Dockerfile instructions on import are not supported yet")
        repo = request.arg("repo")
        tag = request.arg("tag")
        if not repo:
            raise HttpError(400, "repo is required to import an image")
        reference = parse_or_400(f"{repo}:{tag}" if tag else repo)
        with self._spooled() as path:
            await self._receive(request, path)

            def run(emit: Emit) -> None:
                try:
                    image = import_rootfs(
                        self.service.content, self.service.images, path, reference
                    )
                except ValueError as e:
                    raise HttpError(400, str(e)) from None
                record = self.service.find(str(image.reference))
                emit({"status": record.id})

            await stream(request, run)
        return None

    async def push(self, request: Request) -> Response | None:
        name = request.params["name"]
        tag = request.arg("tag")
        reference = parse_or_400(f"{name}:{tag}" if tag else name)
        await self._call(self.service.find, str(reference))
        auth = _auth(request)
        insecure = self._insecure(str(reference)) or request.flag("insecure")

        def push(emit: Emit) -> None:
            emit({"status": f"The push refers to repository [{reference.name}]"})
            pushed = registry.push(
                self.service.content,
                self.service.images,
                str(reference),
                insecure=insecure,
                auth=auth,
            )
            emit(
                {
                    "status": f"{reference.tag or 'latest'}: digest: {pushed.digest} "
                    f"size: {pushed.size}"
                }
            )
            emit({"progressDetail": {}, "aux": {"Tag": reference.tag, "Digest": pushed.digest}})

        await stream(request, _registry_errors(push))
        return None

    # -- archives

    async def load(self, request: Request) -> Response | None:
        with self._spooled() as path:
            await self._receive(request, path)

            def run(emit: Emit) -> None:
                try:
                    result = archive.load(
                        self.service.content,
                        self.service.images,
                        path,
                        leases=self.service.leases,
                    )
                except archive.ArchiveError as e:
                    raise HttpError(400, f"invalid archive: {e}") from None
                for image in result:
                    emit({"stream": f"Loaded image: {image.reference.familiar()}\n"})
                    name = image.reference.familiar()
                    self.events.publish("image", "load", name, {"name": name})
                for desc in result.untagged:
                    emit({"stream": f"Loaded image ID: {desc.digest}\n"})

            await stream(request, run)
        return None

    async def save_one(self, request: Request) -> Response | None:
        return await self._save(request, [request.params["name"]])

    async def save_many(self, request: Request) -> Response | None:
        names = request.args("names")
        if not names:
            raise HttpError(400, "names is required")
        return await self._save(request, names)

    async def _save(self, request: Request, names: list[str]) -> Response | None:
        fmt = request.arg("format") or "docker"  # orchestr's own: docker (default) or oci
        if fmt not in ("docker", "oci"):
            raise HttpError(400, f"format {fmt}: docker or oci")

        def resolve() -> list[str]:
            refs = []
            for name in names:
                record = self.service.find(name)
                named = [n for n in record.names if _same_name(name, n.reference)]
                refs += [str(n.reference) for n in (named or record.names[:1])]
            return refs

        refs = await self._call(resolve)
        with self._spooled() as path:
            with open(path, "wb") as out:
                await self._call(
                    archive.save,
                    self.service.content,
                    self.service.images,
                    refs,
                    out,
                    "oci" if fmt == "oci" else "docker",
                )
            await request.start_stream(200, "application/x-tar")
            with open(path, "rb") as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    await request.write(chunk)
            await request.end()
        return None

    # -- build

    async def build(self, request: Request) -> Response | None:
        if request.arg("remote"):
            raise HttpError(400, "remote build contexts are not supported yet")
        tags = [t for t in request.args("t") if t]
        for tag in tags:
            parse_or_400(tag)
        build_args = request.json_arg("buildargs") or {}
        labels = request.json_arg("labels") or {}
        if not isinstance(build_args, dict) or not isinstance(labels, dict):
            raise HttpError(400, "buildargs and labels must be JSON objects")
        network = request.arg("networkmode") or "default"
        if network not in ("default", "host", "none"):
            raise HttpError(400, f"networkmode {network}: only default, host and none")
        options_base = {
            "tags": tags,
            "build_args": {k: str(v) for k, v in build_args.items() if v is not None},
            "target": request.arg("target") or None,
            "no_cache": request.flag("nocache"),
            "network": "none" if network == "none" else "host",
            "labels": {str(k): str(v) for k, v in labels.items()},
        }
        dockerfile = request.arg("dockerfile") or "Dockerfile"
        quiet = request.flag("q")
        context = tempfile.mkdtemp(prefix="context-", dir=self.tmp_dir)
        try:
            with self._spooled() as path:
                await self._receive(request, path)
                await asyncio.to_thread(_unpack_context, path, context)
            dockerfile_path = os.path.join(context, dockerfile)
            if os.path.relpath(dockerfile_path, context).startswith(".."):
                raise HttpError(400, f"dockerfile {dockerfile}: outside the build context")

            def run(emit: Emit) -> None:
                builder = Builder(
                    self.service.content,
                    self.service.images,
                    self.service.snapshots,
                    os.path.join(self.service.data_root, "build"),
                    runtime_root=self.runtime_root,
                    emit=(lambda _line: None) if quiet else (lambda line: emit({"stream": line})),
                    leases=self.service.leases,
                )
                try:
                    result = builder.build(
                        BuildOptions(context, dockerfile_path, **options_base)  # type: ignore[arg-type]
                    )
                except BuildError as e:
                    emit({"errorDetail": {"message": str(e)}, "error": str(e)})
                    return
                emit({"aux": {"ID": result.image_id}})
                if quiet:
                    emit({"stream": result.image_id + "\n"})

            await stream(request, run)
        finally:
            await asyncio.to_thread(shutil.rmtree, context, True)
        return None


def parse_or_400(text: str) -> Any:
    try:
        return parse(text)
    except ValueError as e:
        raise HttpError(400, str(e)) from None


def _same_name(asked: str, reference: Reference) -> bool:
    try:
        return str(parse(asked)) == str(reference)
    except ValueError:
        return False


def _arch() -> str:
    from agent.images.importer import platform_architecture

    return platform_architecture()


def _target(service: ImageService, name: str) -> str | None:
    try:
        return str(service.images.get(name).target.digest)
    except (ImageNotFound, ValueError):
        return None


def _registry_errors(work: Callable[[Emit], None]) -> Callable[[Emit], None]:
    """Registry failures as HTTP errors: the status when nothing was streamed yet,
    the stream's error message after (see stream_from_thread)."""

    def run(emit: Emit) -> None:
        try:
            work(emit)
        except registry.NotFound as e:
            raise HttpError(404, str(e)) from None
        except registry.Unauthorized as e:
            raise HttpError(401, str(e)) from None
        except registry.RegistryError as e:
            raise HttpError(500, str(e)) from None
        except ImageNotFound as e:
            raise HttpError(404, str(e)) from None

    return run


def _unpack_context(archive_path: str, dest: str) -> None:
    """A build context tar (plain or compressed) into `dest`, refusing escapes."""
    import tarfile

    try:
        with tarfile.open(archive_path, "r:*") as tar:
            tar.extractall(dest, filter="tar")
    except (tarfile.TarError, EOFError) as e:
        if os.path.getsize(archive_path) == 0:
            return  # an empty context (a Dockerfile-only build sends nothing else)
        raise HttpError(400, f"the build context is not a tar archive: {e}") from None


def _matches(tags: list[str], config: dict[str, Any], filters: dict[str, Any]) -> bool:
    def values(key: str) -> list[str]:
        v = filters.get(key, [])
        return [k for k, on in v.items() if on] if isinstance(v, dict) else list(v)

    import fnmatch

    if "dangling" in filters and any(v in ("true", "1") for v in values("dangling")):
        return False  # every image here has a name
    refs = values("reference")
    if refs and not any(
        fnmatch.fnmatchcase(tag, pattern) or fnmatch.fnmatchcase(tag.split(":")[0], pattern)
        for tag in tags
        for pattern in refs
    ):
        return False
    labels = (config.get("config") or {}).get("Labels") or {}
    for want in values("label"):
        key, eq, value = want.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True

"""The Engine API's secrets and configs (v1.41), over the store, and how services
reference them.

    POST   /secrets/create          {"ID"}        409 name taken, 400 bad spec
    GET    /secrets                 [Secret]      filters: id, label, name, names
    GET    /secrets/{id}            Secret        by ID, name or unique ID prefix
    POST   /secrets/{id}/update     200           ?version=N; only Labels may change
    DELETE /secrets/{id}            204           400 while a service uses it
    … and the same under /configs.

A secret's data is never shown; a config's is. Names follow swarmkit's rule (letters,
digits, `-`, `_`, `.`, at most 64) and data its limits (500 KiB for a secret, 1000 KiB
for a config). External secret drivers and templating are refused by name.

A service's ContainerSpec names its secrets and configs by ID, as the docker CLI sends
them, or by name alone (orchestr's `stack deploy` leaves the IDs to the manager):
`resolve` fills in both and checks each exists, in the same transaction that writes the
service.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestr.api.filters import parse_filters
from orchestr.api.http import HttpError, Request, Response, Router, json_response, off_loop
from orchestr.api.swarm import Config, Secret, Service, file_refs, file_target
from orchestr.api.swarm_json import secret_json
from orchestr.manager.controller import new_object_id
from orchestr.manager.repo import CONFIGS, SECRETS, SERVICES, Repo, encode, lookup
from orchestr.state.base import Compare, Delete, Put, Store

NAME = re.compile(r"^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")
NAME_MAX = 64
FILTERS = frozenset({"id", "label", "name", "names"})


@dataclass(frozen=True)
class Kind:
    noun: str  # "secret" | "config"
    prefix: str
    model: type[Secret]
    max_size: int
    shows_data: bool

    @property
    def field(self) -> str:  # in a ContainerSpec: Secrets | Configs
        return self.noun.title() + "s"


SECRET = Kind("secret", SECRETS, Secret, 500 * 1024, shows_data=False)
CONFIG = Kind("config", CONFIGS, Config, 1000 * 1024, shows_data=True)
KINDS = {"secret": SECRET, "config": CONFIG}


class NotFound(LookupError):
    pass


class Conflict(Exception):
    pass


_STATUSES = ((NotFound, 404), (Conflict, 409), (ValueError, 400))


def check_spec(kind: Kind, body: Any) -> dict[str, Any]:
    """A SecretSpec or ConfigSpec this manager keeps, or ValueError naming the field."""
    if not isinstance(body, dict):
        raise ValueError(f"the request body must be a JSON object ({kind.noun.title()}Spec)")
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"Name: a {kind.noun} needs a name")
    if len(name) > NAME_MAX or not NAME.match(name):
        raise ValueError(
            f"Name: invalid name {name!r}: letters, digits, '-', '_' and '.' (at most"
            f" {NAME_MAX}), starting and ending with a letter or digit"
        )
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("Labels: an object of strings")
    if (body.get("Driver") or {}).get("Name"):
        raise ValueError(f"Driver: external {kind.noun} drivers are not supported")
    if (body.get("Templating") or {}).get("Name"):
        raise ValueError(f"Templating: templated {kind.noun}s are not supported")
    data = body.get("Data")
    if not isinstance(data, str):
        raise ValueError("Data: the content, base64-encoded, is required")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Data: not valid base64") from None
    if len(raw) > kind.max_size:
        raise ValueError(f"Data: {len(raw)} bytes; a {kind.noun} holds at most {kind.max_size}")
    return {"Name": name, "Labels": dict(labels), "Data": data}


def read_all(store: Store, kind: Kind) -> tuple[dict[str, Secret], dict[str, int]]:
    """Every object of a kind, by ID, and each key's mod revision."""
    kvs, _ = store.range(kind.prefix)
    objects: dict[str, Secret] = {}
    mods: dict[str, int] = {}
    for kv in kvs:
        obj = kind.model.model_validate_json(kv.value)
        objects[obj.id] = obj
        mods[obj.id] = kv.mod_revision
    return objects, mods


def find(objects: dict[str, Secret], ref: str, kind: Kind) -> Secret:
    found = lookup(objects, ref)
    if found is None:
        raise NotFound(f"{kind.noun} {ref} not found")
    return found


def resolve(store: Store, spec: dict[str, Any]) -> tuple[dict[str, Any], list[Compare]]:
    """The service spec with each secret and config reference's ID and name filled in,
    and the compares that hold them to what was read (none may go before the service is
    written). ValueError names a reference that is wrong."""
    template = dict(spec.get("TaskTemplate") or {})
    container = dict(template.get("ContainerSpec") or {})
    compares: list[Compare] = []
    targets: dict[str, str] = {}
    for kind in (SECRET, CONFIG):
        refs = container.get(kind.field)
        if not refs:
            continue
        if not isinstance(refs, list):
            raise ValueError(f"ContainerSpec.{kind.field}: a list")
        objects, mods = read_all(store, kind)
        noun = kind.noun.title()
        out = []
        for i, ref in enumerate(refs):
            where = f"ContainerSpec.{kind.field}[{i}]"
            if not isinstance(ref, dict):
                raise ValueError(f"{where}: an object")
            wanted = ref.get(f"{noun}ID") or ref.get(f"{noun}Name")
            if not wanted:
                raise ValueError(f"{where}: {noun}ID or {noun}Name is required")
            found = objects.get(wanted) or next(
                (o for o in objects.values() if o.name == wanted), None
            )
            if found is None:
                raise ValueError(f"{where}: {kind.noun} not found: {wanted}")
            file = ref.get("File")
            if not isinstance(file, dict) or not file.get("Name"):
                raise ValueError(f"{where}.File.Name: the file's name or path is required")
            mode = file.get("Mode", 0o444)
            if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
                raise ValueError(f"{where}.File.Mode: a file mode (0 to 0o7777)")
            for id_field in ("UID", "GID"):
                if not str(file.get(id_field, "0") or "0").isdigit():
                    raise ValueError(f"{where}.File.{id_field}: a number")
            resolved = {**ref, f"{noun}ID": found.id, f"{noun}Name": found.name}
            target = file_target(kind.noun, resolved)
            if target in targets:
                raise ValueError(f"{where}: {target} is also the target of {targets[target]}")
            targets[target] = f"{kind.noun} {found.name}"
            out.append(resolved)
            compares.append(Compare.mod_revision(kind.prefix + found.id, "==", mods[found.id]))
        container[kind.field] = out
    if not compares:
        return spec, []
    return {**spec, "TaskTemplate": {**template, "ContainerSpec": container}}, compares


def users(services: list[Service], kind: Kind, object_id: str) -> list[str]:
    """The names of the services whose tasks get this secret or config."""
    return sorted(
        s.name
        for s in services
        if any(
            k == kind.noun and ref.get(f"{kind.noun.title()}ID") == object_id
            for k, ref in file_refs(s.template.get("ContainerSpec") or {})
        )
    )


class FilesApi:
    def __init__(self, repo: Repo, kind: Kind, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.kind = kind
        self.clock = clock
        self.router = Router()
        base = f"/{kind.noun}s"
        self.router.route("POST", f"{base}/create")(self.create)
        self.router.route("GET", base)(self.list)
        self.router.route("GET", f"{base}/{{id}}")(self.inspect)
        self.router.route("POST", f"{base}/{{id}}/update")(self.update)
        self.router.route("DELETE", f"{base}/{{id}}")(self.remove)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await off_loop(_STATUSES, fn, *args)

    def _json(self, obj: Secret, index: int) -> dict[str, Any]:
        return secret_json(obj, index, with_data=self.kind.shows_data)

    async def create(self, request: Request) -> Response:
        try:
            spec = check_spec(self.kind, await request.json())
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        return json_response({"ID": await self._call(self._create, spec)}, 201)

    def _create(self, spec: dict[str, Any]) -> str:
        store = self.repo.store
        while True:
            objects, mods = read_all(store, self.kind)
            name = spec["Name"]
            if any(o.name == name for o in objects.values()):
                raise Conflict(f"{self.kind.noun} {name} already exists")
            now = self.clock()
            obj = self.kind.model(id=new_object_id(), spec=spec, created_at=now, updated_at=now)
            key = self.kind.prefix + obj.id
            compares = [Compare.absent(key)] + [
                Compare.mod_revision(self.kind.prefix + i, "==", mod) for i, mod in mods.items()
            ]
            if store.txn(compares, [Put(key, encode(obj))], []).succeeded:
                return obj.id
            # another one came meanwhile: look at the names again

    async def list(self, request: Request) -> Response:
        filters = parse_filters(request.json_arg("filters"), FILTERS)

        def listed() -> list[dict[str, Any]]:
            objects, mods = read_all(self.repo.store, self.kind)
            out = []
            for obj in sorted(objects.values(), key=lambda o: o.created_at):
                if _matches(obj, filters):
                    out.append(self._json(obj, mods[obj.id]))
            return out

        return json_response(await self._call(listed))

    async def inspect(self, request: Request) -> Response:
        def one() -> dict[str, Any]:
            objects, mods = read_all(self.repo.store, self.kind)
            obj = find(objects, request.params["id"], self.kind)
            return self._json(obj, mods[obj.id])

        return json_response(await self._call(one))

    async def update(self, request: Request) -> Response:
        try:
            spec = check_spec(self.kind, await request.json())
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        version = request.int_arg("version")
        await self._call(self._update, request.params["id"], spec, version)
        return Response(200, b"", None)

    def _update(self, ref: str, spec: dict[str, Any], version: int | None) -> None:
        objects, mods = read_all(self.repo.store, self.kind)
        obj = find(objects, ref, self.kind)
        if version is not None and version != mods[obj.id]:
            raise Conflict(
                f"update out of sequence: {self.kind.noun} {obj.name} is at version"
                f" {mods[obj.id]}, not {version} (inspect it again)"
            )
        if spec["Name"] != obj.name or spec["Data"] != obj.spec.get("Data"):
            raise ValueError(f"only updates to Labels are allowed ({self.kind.noun} {obj.name})")
        new = obj.model_copy(update={"spec": {**obj.spec, "Labels": spec["Labels"]}})
        new = new.model_copy(update={"updated_at": self.clock()})
        key = self.kind.prefix + obj.id
        result = self.repo.store.txn(
            [Compare.mod_revision(key, "==", mods[obj.id])], [Put(key, encode(new))], []
        )
        if not result.succeeded:
            raise Conflict(f"update out of sequence: {self.kind.noun} {obj.name} changed")

    async def remove(self, request: Request) -> Response:
        await self._call(self._remove, request.params["id"])
        return Response(204, b"", None)

    def _remove(self, ref: str) -> None:
        while True:
            objects, mods = read_all(self.repo.store, self.kind)
            obj = find(objects, ref, self.kind)
            read = self.repo.snapshot()
            using = users(list(read.services.values()), self.kind, obj.id)
            if using:
                raise ValueError(
                    f"{self.kind.noun} '{obj.name}' is in use by the following service"
                    f"{'s' if len(using) > 1 else ''}: {', '.join(using)}"
                )
            key = self.kind.prefix + obj.id
            # No service may come to use it meanwhile: the services are as read.
            compares = [Compare.mod_revision(key, "==", mods[obj.id])] + [
                Compare.mod_revision(SERVICES + s, "==", read.mod_of(SERVICES + s))
                for s in read.services
            ]
            if self.repo.store.txn(compares, [Delete(key)], []).succeeded:
                return


def _matches(obj: Secret, filters: dict[str, list[str]]) -> bool:
    if filters.get("id") and not any(obj.id.startswith(v) for v in filters["id"]):
        return False
    if filters.get("name") and not any(obj.name.startswith(v) for v in filters["name"]):
        return False
    if filters.get("names") and obj.name not in filters["names"]:
        return False
    labels = obj.spec.get("Labels") or {}
    for item in filters.get("label", []):
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True

"""The Engine API's volume endpoints (v1.41), over the local driver's store.

    POST   /volumes/create   201 Volume              body: {Name, Driver, DriverOpts, Labels}
    GET    /volumes          {"Volumes", "Warnings"} filters: name, driver, label, dangling
    GET    /volumes/{name}   Volume                  404 "get NAME: no such volume"
    DELETE /volumes/{name}   204                     409 in use (even with force=1)
    POST   /volumes/prune    {"VolumesDeleted", "SpaceReclaimed"}  filters: label, label!, all

Prune follows dockerd's version rule: from API 1.42 only anonymous volumes are
pruned unless the `all` filter says otherwise; requests of older versions
(1.41 and below, which is everything this daemon serves) prune every unused
volume, as the docker CLI's warning for them says. An explicit `all` filter
wins either way (orchestr's CLI always sends one).

`volume_doc` and `df_volumes` give the shapes `GET /system/df` needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.volumes.local import (
    NoSuchVolume,
    Volume,
    VolumeConflict,
    VolumeFilters,
    VolumeInUse,
    VolumeStore,
    VolumeUsage,
)
from orchestr.api.http import (
    API_VERSION,
    HttpError,
    Request,
    Response,
    Router,
    json_response,
    off_loop,
)

_ANONYMOUS_BY_DEFAULT_FROM = (1, 42)
_STATUSES = ((ValueError, 400), (NoSuchVolume, 404), (VolumeInUse, 409), (VolumeConflict, 409))


def volume_doc(volume: Volume, usage: VolumeUsage | None = None) -> dict[str, Any]:
    """A volume as the Engine API shows it (`UsageData` only for /system/df)."""
    doc: dict[str, Any] = {
        "CreatedAt": volume.created_at,
        "Driver": volume.driver,
        "Labels": dict(volume.labels),
        "Mountpoint": volume.mountpoint,
        "Name": volume.name,
        "Options": dict(volume.options),
        "Scope": volume.scope,
    }
    if usage is not None:
        doc["UsageData"] = {"Size": usage.size, "RefCount": usage.ref_count}
    return doc


def df_volumes(store: VolumeStore) -> list[dict[str, Any]]:
    """The `Volumes` of `GET /system/df` (blocking: it walks every volume)."""
    return [volume_doc(u.volume, u) for u in store.usage()]


def _field(doc: dict[str, Any], name: str) -> Any:
    """Go's encoding/json matches keys case-insensitively (exact match first)."""
    if name in doc:
        return doc[name]
    lowered = name.lower()
    for key, value in doc.items():
        if key.lower() == lowered:
            return value
    return None


def _string_map(doc: dict[str, Any], name: str) -> dict[str, str]:
    value = _field(doc, name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise HttpError(400, f"{name}: expected an object of strings")
    return {str(k): v for k, v in value.items()}


def _version(request: Request) -> tuple[int, ...]:
    return tuple(int(p) for p in (request.version or API_VERSION).split("."))


class VolumesApi:
    """Routes for /volumes/*."""

    def __init__(self, store: VolumeStore) -> None:
        self.store = store
        self.router = Router()
        r = self.router
        r.route("GET", "/volumes")(self.list_volumes)
        r.route("POST", "/volumes/create")(self.create)
        r.route("POST", "/volumes/prune")(self.prune)
        r.route("GET", "/volumes/{name}")(self.inspect)
        r.route("DELETE", "/volumes/{name}")(self.remove)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await off_loop(_STATUSES, fn, *args, **kwargs)

    def _filters(self, request: Request, allowed: frozenset[str]) -> VolumeFilters:
        try:
            return VolumeFilters.parse(request.json_arg("filters"), allowed)
        except ValueError as e:
            raise HttpError(400, str(e)) from None

    async def create(self, request: Request) -> Response:
        doc = await request.json(required=False)
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise HttpError(400, "the request body must be a JSON object (VolumeCreateOptions)")
        name = _field(doc, "Name") or ""
        driver = _field(doc, "Driver") or "local"
        if not isinstance(name, str) or not isinstance(driver, str):
            raise HttpError(400, "Name and Driver must be strings")
        if driver != "local":
            raise HttpError(400, f"volume driver {driver} is not supported")
        labels = _string_map(doc, "Labels")
        options = _string_map(doc, "DriverOpts")
        volume = await self._call(
            self.store.create, name or None, driver=driver, labels=labels, options=options
        )
        return json_response(volume_doc(volume), 201)

    async def list_volumes(self, request: Request) -> Response:
        filters = self._filters(request, VolumeFilters.LIST_KEYS)
        volumes = await self._call(self.store.list, filters)
        return json_response({"Volumes": [volume_doc(v) for v in volumes], "Warnings": []})

    async def inspect(self, request: Request) -> Response:
        volume = await self._call(self.store.get, request.params["name"])
        return json_response(volume_doc(volume))

    async def remove(self, request: Request) -> Response:
        await self._call(self.store.remove, request.params["name"], force=request.flag("force"))
        return Response(204, b"", None)

    async def prune(self, request: Request) -> Response:
        filters = self._filters(request, VolumeFilters.PRUNE_KEYS)
        if filters.all is None and _version(request) < _ANONYMOUS_BY_DEFAULT_FROM:
            filters = VolumeFilters(
                label=filters.label, not_label=filters.not_label, dangling=None, all=True
            )
        removed, reclaimed = await self._call(self.store.prune, filters)
        return json_response({"VolumesDeleted": removed, "SpaceReclaimed": reclaimed})

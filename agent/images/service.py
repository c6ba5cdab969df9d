"""The image service of a node: the stores under one data root, and the image
operations of the Engine API in Docker's shapes (what `docker images`, `docker
image inspect`, `docker history`, `docker rmi` and `docker image prune` read).

An image, as Docker shows it, is one config: its ID is the config's digest,
and every name whose manifest (or whose index's manifest for this platform)
has that config is one of its RepoTags. Images are found as Docker finds them:
by name (`busybox`, `busybox:1`, `name@sha256:...`), by full ID, or by a
unique prefix of the ID's hex digits (`sha256:` optional).

Every method is blocking (file I/O, hashing); the daemon calls them from
worker threads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from agent.content import ContentStore, Descriptor, NotFound
from agent.images import gc, media
from agent.images.leases import LeaseManager, leases_for
from agent.images.platform import missing_platform, pick_manifest
from agent.images.reference import Reference, parse
from agent.images.store import Image, ImageNotFound, ImageStore
from agent.snapshots import OverlaySnapshotter, SnapshotNotFound, chain_id

__all__ = ["ImageConflict", "ImageRecord", "ImageService"]

_ID_PREFIX = re.compile(r"(?:sha256:)?([0-9a-f]{1,64})")


class ImageConflict(Exception):
    """An image that cannot be removed as asked (in use, or several names and no force)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image: its config and manifest, and every name that points at it."""

    id: str  # the config digest
    manifest: Descriptor  # this platform's manifest
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]
    names: tuple[Image, ...]  # name order

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.config.get("rootfs") or {}
        ids = rootfs.get("diff_ids") or []
        return [str(d) for d in ids]

    @property
    def repo_tags(self) -> list[str]:
        return [n.reference.familiar() for n in self.names if n.reference.digest is None]

    @property
    def repo_digests(self) -> list[str]:
        digests: dict[str, None] = {}
        for n in self.names:
            base = dataclasses.replace(n.reference, tag=None, digest=None).familiar()
            if n.reference.digest is not None:
                digests[f"{base}@{n.reference.digest}"] = None
            elif n.repo_digest is not None:
                digests[f"{base}@{n.repo_digest}"] = None
        return list(digests)

    def created(self) -> float:
        text = self.config.get("created")
        if not isinstance(text, str):
            return 0.0
        return _parse_time(text)


def _parse_time(text: str) -> float:
    """RFC 3339 (with or without fractions, Z or an offset) as a UNIX time."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text)
        if m is None:
            return 0.0
        base = datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
        return base.timestamp() + float("0." + (m.group(2) or "0"))


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e9):09d}Z"


def unpack_layers(
    content: ContentStore,
    snapshots: OverlaySnapshotter,
    layers: Sequence[tuple[str, str]],
    diff_ids: Sequence[str],
) -> str | None:
    """The snapshot chain of an image's layers ((digest, media type) pairs, bottom
    first), unpacking the ones not unpacked yet; None for an image without layers."""
    chain: str | None = None
    for (digest, media_type), diff_id in zip(layers, diff_ids, strict=True):
        with content.open(digest) as blob:
            chain = snapshots.unpack(chain, blob, media_type, diff_id)
    return chain


class ImageService:
    """The content store, names, snapshots and leases under `<data_root>`."""

    def __init__(self, data_root: str) -> None:
        self.data_root = os.path.abspath(data_root)
        self.content = ContentStore(os.path.join(self.data_root, "content"))
        self.images = ImageStore(os.path.join(self.data_root, "images"), self.content)
        self.snapshots = OverlaySnapshotter(os.path.join(self.data_root, "snapshots"))
        self.leases: LeaseManager = leases_for(self.content)
        # What containers use (their images' chains), asked at removal and collection.
        self.in_use: Callable[[], Collection[str]] = frozenset

    # -- reading -------------------------------------------------------------------------

    def _json(self, digest: str) -> dict[str, Any]:
        doc = json.loads(self.content.read(digest))
        if not isinstance(doc, dict):
            raise ValueError(f"{digest}: not a JSON object")
        return doc

    def _platform_manifest(self, image: Image) -> Descriptor:
        target = image.target
        for _ in range(4):
            if target.media_type not in media.INDEXES:
                return target
            children = [
                Descriptor.model_validate(m) for m in self._json(target.digest)["manifests"]
            ]
            chosen = pick_manifest(children)
            if chosen is None:
                raise ImageNotFound(f"{image.reference.familiar()}: {missing_platform(children)}")
            target = chosen
        raise ImageNotFound(f"{image.reference.familiar()}: indexes nested too deeply")

    def records(self) -> list[ImageRecord]:
        """Every image, newest first (as `docker images` lists them)."""
        grouped: dict[str, tuple[Descriptor, dict[str, Any], list[Descriptor], list[Image]]] = {}
        for image in self.images.list():
            try:
                manifest_desc = self._platform_manifest(image)
                manifest = self._json(manifest_desc.digest)
                config_id = str(manifest["config"]["digest"])
                if config_id not in grouped:
                    layers = [Descriptor.model_validate(d) for d in manifest.get("layers", [])]
                    grouped[config_id] = (manifest_desc, self._json(config_id), layers, [])
            except (NotFound, ImageNotFound, ValueError, KeyError, TypeError):
                continue  # a name whose content is gone or broken is not an image to list
            grouped[config_id][3].append(image)
        records = [
            ImageRecord(cid, m, c, tuple(layers), tuple(names))
            for cid, (m, c, layers, names) in grouped.items()
        ]
        return sorted(records, key=lambda r: (-r.created(), r.id))

    def find(self, name_or_id: str) -> ImageRecord:
        """The image a name, an ID or an ID prefix names (ImageNotFound if none)."""
        records = self.records()
        try:
            reference: Reference | None = parse(name_or_id)
        except ValueError:
            reference = None
        if reference is not None:
            for record in records:
                if any(str(n.reference) == str(reference) for n in record.names):
                    return record
            if reference.digest is not None:  # name@digest: a manifest or index we hold
                for record in records:
                    if record.manifest.digest == reference.digest or any(
                        n.repo_digest == reference.digest for n in record.names
                    ):
                        return record
        m = _ID_PREFIX.fullmatch(name_or_id)
        if m is not None:
            hits = [r for r in records if r.id.split(":", 1)[1].startswith(m.group(1))]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise ImageNotFound(f"{name_or_id}: ambiguous image ID prefix")
        raise ImageNotFound(f"No such image: {name_or_id}")

    def unpack(self, record: ImageRecord) -> str | None:
        """The image's snapshot chain, unpacked where needed."""
        layers = [(str(layer.digest), layer.media_type) for layer in record.layers]
        return unpack_layers(self.content, self.snapshots, layers, record.diff_ids)

    # -- Docker's shapes -----------------------------------------------------------------

    def size(self, record: ImageRecord) -> int:
        """The image's size unpacked (its snapshots), or its layers as stored."""
        total = 0
        for chain, layer in zip(chain_id(record.diff_ids), record.layers, strict=False):
            try:
                total += self.snapshots.stat(chain).size
            except SnapshotNotFound:
                total += layer.size
        return total

    def summary(self, record: ImageRecord) -> dict[str, Any]:
        """An ImageSummary (GET /images/json)."""
        size = self.size(record)
        inner = record.config.get("config") or {}
        return {
            "Id": record.id,
            "ParentId": "",
            "RepoTags": record.repo_tags,
            "RepoDigests": record.repo_digests,
            "Created": int(record.created()),
            "Size": size,
            "SharedSize": -1,
            "VirtualSize": size,
            "Labels": inner.get("Labels") or {},
            "Containers": -1,
        }

    def inspect(self, record: ImageRecord) -> dict[str, Any]:
        """An ImageInspect (GET /images/{name}/json)."""
        inner = record.config.get("config") or {}
        size = self.size(record)
        last_tag = max((n.created for n in record.names), default=0.0)
        return {
            "Id": record.id,
            "RepoTags": record.repo_tags,
            "RepoDigests": record.repo_digests,
            "Parent": "",
            "Comment": record.config.get("comment", ""),
            "Created": record.config.get("created", _rfc3339(0)),
            "Container": "",
            "ContainerConfig": _container_config({}),
            "DockerVersion": record.config.get("docker_version", ""),
            "Author": record.config.get("author", ""),
            "Config": _container_config(inner),
            "Architecture": record.config.get("architecture", ""),
            **({"Variant": record.config["variant"]} if record.config.get("variant") else {}),
            "Os": record.config.get("os", ""),
            "Size": size,
            "VirtualSize": size,
            "GraphDriver": {"Name": "overlay", "Data": {}},
            "RootFS": {"Type": "layers", "Layers": record.diff_ids},
            "Metadata": {"LastTagTime": _rfc3339(last_tag) if last_tag else _rfc3339(0)},
        }

    def history(self, record: ImageRecord) -> list[dict[str, Any]]:
        """The image's history, newest first (GET /images/{name}/history)."""
        entries = record.config.get("history") or []
        layers = list(zip(record.layers, chain_id(record.diff_ids), strict=False))
        out: list[dict[str, Any]] = []
        for entry in entries:
            size = 0
            if not entry.get("empty_layer") and layers:
                layer, chain = layers.pop(0)
                try:
                    size = self.snapshots.stat(chain).size
                except SnapshotNotFound:
                    size = layer.size
            out.append(
                {
                    "Id": "<missing>",
                    "Created": int(_parse_time(str(entry.get("created", "")))),
                    "CreatedBy": entry.get("created_by", ""),
                    "Tags": None,
                    "Size": size,
                    "Comment": entry.get("comment", ""),
                }
            )
        out.reverse()
        if out:
            out[0]["Id"] = record.id
            out[0]["Tags"] = record.repo_tags or None
        return out

    # -- changing ------------------------------------------------------------------------

    def tag(self, name_or_id: str, repo: str, tag: str | None) -> str:
        """Give an image another name (POST /images/{name}/tag); returns the new name."""
        record = self.find(name_or_id)
        target = parse(f"{repo}:{tag}" if tag else repo)
        if target.digest is not None:
            raise ValueError(f"{repo}: refusing to create a tag with a digest reference")
        source = record.names[0].target if record.names else record.manifest
        self.images.tag(target, source)
        return target.familiar()

    def remove(self, name_or_id: str, *, force: bool = False) -> list[dict[str, str]]:
        """DELETE /images/{name}: untag, and delete the image when no name is left.

        Removing by ID an image that has several names needs `force`; an image
        whose layers a container uses is not deleted (ImageConflict).
        """
        record = self.find(name_or_id)
        by_name = [n for n in record.names if _names(n, name_or_id)]
        doomed = by_name or list(record.names)
        if not by_name and len({n.reference.name for n in record.names}) > 1 and not force:
            raise ImageConflict(
                f"conflict: unable to delete {_short(record.id)} (must be forced) - image is "
                "referenced in multiple repositories"
            )
        deleting = len(doomed) == len(record.names)
        if deleting and record.diff_ids:
            top = chain_id(record.diff_ids)[-1]
            if top in self.in_use() and not force:
                raise ImageConflict(
                    f"conflict: unable to delete {_short(record.id)} (cannot be forced) - "
                    "image is being used by a container"
                )
        answer = []
        for name in doomed:
            self.images.untag(name.reference)
            answer.append({"Untagged": _untagged(name)})
        if deleting:
            answer.append({"Deleted": record.id})
        return answer

    def prune(self, *, all_images: bool = False) -> dict[str, Any]:
        """POST /images/prune: with `all_images`, every image no container uses is
        removed; then unreferenced blobs and snapshots are collected. (Images here
        always have a name, so there are no dangling ones to remove by default.)"""
        deleted: list[dict[str, str]] = []
        if all_images:
            in_use = set(self.in_use())
            for record in self.records():
                if record.diff_ids and chain_id(record.diff_ids)[-1] in in_use:
                    continue
                for name in record.names:
                    self.images.untag(name.reference)
                    deleted.append({"Untagged": _untagged(name)})
                deleted.append({"Deleted": record.id})
        result = self.collect()
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": result.freed}

    def collect(self) -> gc.GcResult:
        return gc.collect(
            self.content, self.images, self.snapshots, self.in_use(), leases=self.leases
        )

    def disk_usage(self) -> gc.DiskUsage:
        return gc.disk_usage(
            self.content, self.images, self.snapshots, self.in_use(), leases=self.leases
        )


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


def _names(image: Image, asked: str) -> bool:
    try:
        return str(parse(asked)) == str(image.reference)
    except ValueError:
        return False


def _untagged(image: Image) -> str:
    return image.reference.familiar()


def _container_config(inner: dict[str, Any]) -> dict[str, Any]:
    """Docker's container config of an image (the keys the CLI reads, always present)."""
    return {
        "Hostname": "",
        "Domainname": "",
        "User": inner.get("User", ""),
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": inner.get("ExposedPorts"),
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": inner.get("Env"),
        "Cmd": inner.get("Cmd"),
        "Healthcheck": inner.get("Healthcheck"),
        "Image": "",
        "Volumes": inner.get("Volumes"),
        "WorkingDir": inner.get("WorkingDir", ""),
        "Entrypoint": inner.get("Entrypoint"),
        "OnBuild": inner.get("OnBuild"),
        "Labels": inner.get("Labels"),
        **({"StopSignal": inner["StopSignal"]} if inner.get("StopSignal") else {}),
        **({"Shell": inner["Shell"]} if inner.get("Shell") else {}),
    }

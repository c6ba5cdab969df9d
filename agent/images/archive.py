"""`docker save` / `docker load`: images to and from archives.

Three shapes come in, two go out:

    OCI layout (image-layout.md)      oci-layout, index.json, blobs/<alg>/<hex>;
                                      a directory, or a tar of one ("oci-archive")
    docker-save, Docker 25+           the OCI layout plus manifest.json whose
                                      Config/Layers point into blobs/sha256
    docker-save, older                manifest.json, <id>.json configs and
                                      <id>/layer.tar layers (no index.json)

`save` writes the OCI layout, and for `format="docker"` also manifest.json
over the same blobs (both views, as Docker 25+ does). Layers stay as they are
in the content store (gzip); `docker load` and skopeo's docker-archive
transport decompress them. The tar is deterministic: sorted names, mtime 0,
numeric owner 0, fixed modes.

`load` writes every blob through the content store, verified against the digest
it is named by (and uncompressed docker layers against the config's diff_ids),
and tags only once everything is in: a refused archive tags nothing, and the
blobs that did go in are whole and verified, so `fsck()` stays clean. An image
index is resolved to this machine's platform; that manifest is tagged and the
index blob kept. An old docker-save image gets an OCI manifest built for it
(its config is stored as it is). Names come from `io.containerd.image.name`,
`org.opencontainers.image.ref.name` (a bare tag needs the caller's `name`) or
RepoTags; entries without one are reported in `LoadResult.untagged`. A lease
(`agent.images.leases`) holds every blob from before it is written until the
names are tagged, so a concurrent `gc.collect` cannot take them meanwhile.

Errors:

    ArchiveError(ValueError)    not an archive we read, malformed JSON, missing files
     ├─ UnsafePath              a member name or a referenced path leaves the archive
     ├─ UnknownMediaType        a descriptor of a type we do not load
     └─ CorruptBlob             bytes that do not match their digest, size or diff_id
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal

from pydantic import ValidationError

from agent.content import (
    ContentStore,
    Descriptor,
    Digest,
    DigestMismatch,
    NotFound,
    SizeMismatch,
)
from agent.images import media
from agent.images.leases import Lease, LeaseManager, leases_for
from agent.images.platform import missing_platform, pick_manifest
from agent.images.reference import Reference, ReferenceError_, parse
from agent.images.store import Image, ImageStore

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_VERSION = "1.0.0"

_CHUNK = 1 << 20
_MAX_LINKS = 16
_MAX_DEPTH = 4  # index → index → … → manifest


class ArchiveError(ValueError):
    """An archive we cannot load (or an image we cannot save); one readable line."""


class UnsafePath(ArchiveError):
    pass


class UnknownMediaType(ArchiveError):
    pass


class CorruptBlob(ArchiveError):
    pass


class LoadResult(list[Image]):
    """The images tagged, plus the manifests loaded that had no name to tag."""

    def __init__(self, tagged: list[Image], untagged: list[Descriptor]) -> None:
        super().__init__(tagged)
        self.untagged = untagged


# ============================================================================ save


def save(
    content: ContentStore,
    images: ImageStore,
    refs: list[str],
    out: BinaryIO,
    format: Literal["docker", "oci"] = "docker",
) -> None:
    """Write the images named by `refs` to `out` as a docker-save or OCI archive."""
    if format not in ("docker", "oci"):
        raise ValueError(f"unknown archive format {format!r} (docker or oci)")
    blobs: dict[Digest, int] = {}
    index_entries: list[dict[str, Any]] = []
    docker_entries: dict[Digest, dict[str, Any]] = {}
    seen: set[str] = set()
    for text in refs:
        image = images.get(text)
        if str(image.reference) in seen:
            continue
        seen.add(str(image.reference))
        _collect(content, image.target, blobs, depth=0)
        annotations = {CONTAINERD_NAME: str(image.reference)}
        if image.reference.tag is not None:
            annotations[REF_NAME] = image.reference.tag
        entry = image.target.model_dump(mode="json", exclude_none=True)
        entry["annotations"] = {**entry.get("annotations", {}), **annotations}
        index_entries.append(entry)
        if format == "docker":
            manifest_desc = _resolve_platform(content, image.target, depth=0)
            manifest = _read_json(content, manifest_desc.digest)
            docker = docker_entries.setdefault(
                manifest_desc.digest,
                {
                    "Config": _blob_name(manifest["config"]["digest"]),
                    "RepoTags": [],
                    "Layers": [_blob_name(layer["digest"]) for layer in manifest["layers"]],
                },
            )
            if image.reference.tag is not None:
                docker["RepoTags"].append(image.reference.familiar())

    files: dict[str, bytes] = {
        "oci-layout": _json_bytes({"imageLayoutVersion": LAYOUT_VERSION}),
        "index.json": _json_bytes(
            {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": index_entries}
        ),
    }
    if format == "docker":
        files["manifest.json"] = _json_bytes(list(docker_entries.values()))
    _write_tar(content, blobs, files, out)


def _collect(content: ContentStore, desc: Descriptor, blobs: dict[Digest, int], depth: int) -> None:
    """Every blob `desc` needs; children of an index are kept only when complete."""
    if depth > _MAX_DEPTH:
        raise ArchiveError(f"{desc.digest}: indexes nested deeper than {_MAX_DEPTH}")
    if desc.media_type in media.INDEXES:
        index = _read_json(content, desc.digest)
        for child in _descriptors(index.get("manifests"), f"index {desc.digest}"):
            found: dict[Digest, int] = {}
            try:
                _collect(content, child, found, depth + 1)
            except NotFound:
                continue  # a platform we never pulled
            blobs.update(found)
    elif desc.media_type in media.MANIFESTS:
        manifest = _read_json(content, desc.digest)
        for d in [manifest.get("config"), *manifest.get("layers", [])]:
            part = Descriptor.model_validate(d)
            blobs[part.digest] = content.size(part.digest)
    else:
        raise UnknownMediaType(f"{desc.digest}: cannot save a {desc.media_type}")
    blobs[desc.digest] = content.size(desc.digest)


def _blob_name(digest: str) -> str:
    d = Digest(digest)
    return f"blobs/{d.algorithm}/{d.encoded}"


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _write_tar(
    content: ContentStore, blobs: dict[Digest, int], files: dict[str, bytes], out: BinaryIO
) -> None:
    entries: dict[str, Digest | bytes | None] = {"blobs": None}
    for digest in blobs:
        entries[f"blobs/{digest.algorithm}"] = None
        entries[_blob_name(digest)] = digest
    entries.update(files)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            item = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if item is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(item, bytes):
                info.mode = 0o644
                info.size = len(item)
                tar.addfile(info, io.BytesIO(item))
            else:
                info.mode = 0o644
                info.size = blobs[item]
                with content.open(item) as f:
                    tar.addfile(info, f)


# ============================================================================ load


def load(
    content: ContentStore,
    images: ImageStore,
    source: BinaryIO | str | os.PathLike[str],
    name: str | None = None,
    *,
    leases: LeaseManager | None = None,
) -> LoadResult:
    """Load every image in a docker-save archive, an OCI archive or an OCI layout directory.

    `name` names the entries that carry no full name of their own: an entry with
    only a tag (`ref.name` = `v1`) becomes `name` with that tag, one with none
    becomes `name` itself. `leases` defaults to `leases_for(content)`.
    """
    manager = leases if leases is not None else leases_for(content)
    with manager.lease() as lease:
        with ExitStack() as stack:
            src = _open_source(source, stack)
            if src.exists("index.json"):
                if not src.exists("oci-layout"):
                    raise ArchiveError("index.json without oci-layout: not an OCI image layout")
                _check_layout_version(src)
                loaded = _load_layout(content, src, lease)
                if src.exists("manifest.json"):
                    _add_repo_tags(content, loaded, _docker_manifest(src))
            elif src.exists("manifest.json"):
                loaded = _load_docker_legacy(content, src, _docker_manifest(src), lease)
            else:
                raise ArchiveError("neither index.json nor manifest.json: not an image archive")
        return _tag_all(images, loaded, name)


@dataclass
class _Loaded:
    """One image brought in, and the names it came with (full, or bare tags)."""

    target: Descriptor
    config: Digest
    names: list[Reference]
    tag_only: str | None = None


# -- tagging


def _tag_all(images: ImageStore, loaded: list[_Loaded], name: str | None) -> LoadResult:
    plan: list[tuple[Reference, Descriptor]] = []
    untagged: list[Descriptor] = []
    base = _parse_name(name, "the name given") if name is not None else None
    for item in loaded:
        refs = list(item.names)
        if not refs and base is not None:
            refs = [base.with_tag(item.tag_only) if item.tag_only else base]
        if not refs:
            untagged.append(item.target)
        plan.extend((ref, item.target) for ref in refs)
    targets: dict[str, Digest] = {}
    for ref, target in plan:
        if targets.setdefault(str(ref), target.digest) != target.digest:
            raise ArchiveError(f"{ref.familiar()}: named for two different images in the archive")
    tagged: list[Image] = []
    done: set[str] = set()
    for ref, target in plan:
        if str(ref) not in done:
            done.add(str(ref))
            tagged.append(images.tag(ref, target))
    return LoadResult(tagged, untagged)


def _parse_name(text: str, where: str) -> Reference:
    try:
        return parse(text)
    except ReferenceError_ as e:
        raise ArchiveError(f"{where}: {e}") from None


def _names_from(
    annotations: dict[str, str] | None, where: str
) -> tuple[list[Reference], str | None]:
    """Full names from the annotations, or else the bare tag of `ref.name`."""
    annotations = annotations or {}
    if CONTAINERD_NAME in annotations:
        return [_parse_name(annotations[CONTAINERD_NAME], where)], None
    ref_name = annotations.get(REF_NAME)
    if not ref_name:
        return [], None
    if "/" in ref_name or ":" in ref_name or "@" in ref_name:
        return [_parse_name(ref_name, where)], None
    try:
        parse(f"x:{ref_name}")
    except ReferenceError_:
        raise ArchiveError(
            f"{where}: {REF_NAME} {ref_name!r} is neither a tag nor a name"
        ) from None
    return [], ref_name


# -- sources: a tar or a directory, read by member name


class _Source:
    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError


def _safe_name(name: str, where: str = "archive member") -> str:
    """`name` as a clean relative path; refuses absolute paths and `..`."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise UnsafePath(f"{where} {name!r}: not a usable path")
    if name.startswith("/"):
        raise UnsafePath(f"{where} {name!r}: absolute paths are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"{where} {name!r}: '..' would leave the archive")
    return "/".join(parts)


class _TarSource(_Source):
    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        self._members: dict[str, tarfile.TarInfo] = {}
        for info in tar.getmembers():
            name = _safe_name(info.name)
            if info.issym():
                target = posixpath.join(posixpath.dirname(name), info.linkname)
                _safe_name(posixpath.normpath(target), f"symlink {name} ->")
            elif info.islnk():
                _safe_name(info.linkname, f"hard link {name} ->")
            elif not (info.isreg() or info.isdir()):
                raise ArchiveError(f"archive member {name!r}: unexpected file type")
            if name:
                self._members[name] = info

    def _resolve(self, name: str) -> tarfile.TarInfo | None:
        name = _safe_name(name, "path")
        for _ in range(_MAX_LINKS):
            info = self._members.get(name)
            if info is None or not (info.issym() or info.islnk()):
                return info
            if info.issym():
                name = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
            else:
                name = _safe_name(info.linkname)
        raise ArchiveError(f"archive member {name!r}: too many links")

    def exists(self, name: str) -> bool:
        info = self._resolve(name)
        return info is not None and info.isreg()

    def open(self, name: str) -> IO[bytes]:
        info = self._resolve(name)
        f = self._tar.extractfile(info) if info is not None and info.isreg() else None
        if f is None:
            raise ArchiveError(f"{name}: not in the archive")
        return f


class _DirSource(_Source):
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _path(self, name: str) -> Path:
        path = (self._root / _safe_name(name, "path")).resolve()
        if not path.is_relative_to(self._root):
            raise UnsafePath(f"{name!r}: a symlink leads out of the layout directory")
        return path

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def open(self, name: str) -> IO[bytes]:
        try:
            return open(self._path(name), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ArchiveError(f"{name}: not in the layout directory") from None


def _open_source(source: BinaryIO | str | os.PathLike[str], stack: ExitStack) -> _Source:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            return _DirSource(path)
        fileobj: IO[bytes] = stack.enter_context(open(path, "rb"))  # noqa: SIM115 (closed by the stack)
    else:
        fileobj = source
        if not fileobj.seekable():
            spool = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            shutil.copyfileobj(fileobj, spool, _CHUNK)
            spool.seek(0)
            fileobj = spool
    try:
        tar = stack.enter_context(tarfile.open(fileobj=fileobj, mode="r:*"))  # noqa: SIM115
    except tarfile.TarError as e:
        raise ArchiveError(f"not a tar archive ({e})") from None
    return _TarSource(tar)


def _read_member_json(src: _Source, name: str) -> Any:
    with src.open(name) as f:
        data = f.read()
    try:
        return json.loads(data)
    except ValueError as e:
        raise ArchiveError(f"{name}: not valid JSON ({e})") from None


def _check_layout_version(src: _Source) -> None:
    layout = _read_member_json(src, "oci-layout")
    version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else None
    if version != LAYOUT_VERSION:
        raise ArchiveError(f"oci-layout: imageLayoutVersion {version!r}, expected {LAYOUT_VERSION}")


# -- OCI layouts (and the OCI view of Docker 25+ archives)


def _load_layout(content: ContentStore, src: _Source, lease: Lease) -> list[_Loaded]:
    index = _read_member_json(src, "index.json")
    if not isinstance(index, dict):
        raise ArchiveError("index.json: not a JSON object")
    if index.get("mediaType", media.OCI_INDEX) != media.OCI_INDEX:
        raise UnknownMediaType(f"index.json: mediaType {index['mediaType']!r} is not an index")
    loaded = []
    for i, desc in enumerate(_descriptors(index.get("manifests"), "index.json")):
        where = f"index.json manifests[{i}]"
        target = _ingest_image(content, src, desc, where, lease, depth=0)
        config = Descriptor.model_validate(_read_json(content, target.digest)["config"])
        names, tag_only = _names_from(desc.annotations, where)
        loaded.append(_Loaded(target, config.digest, names, tag_only))
    return loaded


def _ingest_image(
    content: ContentStore, src: _Source, desc: Descriptor, where: str, lease: Lease, depth: int
) -> Descriptor:
    """Bring in `desc` (index or manifest); returns the manifest for this platform."""
    if depth > _MAX_DEPTH:
        raise ArchiveError(f"{where}: indexes nested deeper than {_MAX_DEPTH}")
    if desc.media_type in media.INDEXES:
        _ingest_blob(content, src, desc, lease)
        index = _read_json(content, desc.digest)
        child = _pick_platform(desc, _descriptors(index.get("manifests"), f"index {desc.digest}"))
        return _ingest_image(content, src, child, f"index {desc.digest}", lease, depth + 1)
    if desc.media_type not in media.MANIFESTS:
        raise UnknownMediaType(f"{where}: {desc.media_type} is not an image manifest or index")
    _ingest_blob(content, src, desc, lease)
    manifest = _read_json(content, desc.digest)
    try:
        config = Descriptor.model_validate(manifest.get("config"))
        layers = _descriptors(manifest.get("layers", []), f"manifest {desc.digest}")
    except ValidationError as e:
        raise ArchiveError(f"manifest {desc.digest}: bad config descriptor ({e})") from None
    if config.media_type not in media.CONFIGS:
        raise UnknownMediaType(
            f"manifest {desc.digest}: config of type {config.media_type} is not an image config"
        )
    for layer in layers:
        if layer.media_type not in media.LAYERS:
            raise UnknownMediaType(
                f"manifest {desc.digest}: layer {layer.digest} has unknown type {layer.media_type}"
            )
    for part in [config, *layers]:
        _ingest_blob(content, src, part, lease)
    return desc


def _ingest_blob(content: ContentStore, src: _Source, desc: Descriptor, lease: Lease) -> None:
    lease.add_blob(desc.digest, desc.media_type)  # before has(): see agent.images.leases
    if content.has(desc.digest):
        return
    name = _blob_name(desc.digest)
    if not src.exists(name):
        raise ArchiveError(f"{name}: blob missing from the archive")
    try:
        with src.open(name) as f, content.writer(desc.digest, desc.size) as w:
            while chunk := f.read(_CHUNK):
                w.write(chunk)
            w.commit()
    except (DigestMismatch, SizeMismatch) as e:
        raise CorruptBlob(f"{name}: corrupt ({e})") from None


def _pick_platform(index: Descriptor, children: list[Descriptor]) -> Descriptor:
    child = pick_manifest(children)
    if child is None:
        raise ArchiveError(f"index {index.digest}: {missing_platform(children)}")
    return child


def _descriptors(items: object, where: str) -> list[Descriptor]:
    if not isinstance(items, list):
        raise ArchiveError(f"{where}: expected a list of descriptors")
    try:
        return [Descriptor.model_validate(item) for item in items]
    except ValidationError as e:
        raise ArchiveError(f"{where}: bad descriptor ({e.errors()[0]['msg']})") from None


def _read_json(content: ContentStore, digest: str) -> Any:
    try:
        doc = json.loads(content.read(digest))
    except ValueError as e:
        raise ArchiveError(f"{digest}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ArchiveError(f"{digest}: not a JSON object")
    return doc


def _resolve_platform(content: ContentStore, desc: Descriptor, depth: int) -> Descriptor:
    if desc.media_type in media.MANIFESTS:
        return desc
    if depth > _MAX_DEPTH or desc.media_type not in media.INDEXES:
        raise ArchiveError(f"{desc.digest}: cannot resolve a {desc.media_type} to a manifest")
    index = _read_json(content, desc.digest)
    child = _pick_platform(desc, _descriptors(index.get("manifests"), f"index {desc.digest}"))
    return _resolve_platform(content, child, depth + 1)


# -- docker-save archives


@dataclass
class _DockerEntry:
    config: str
    repo_tags: list[Reference]
    layers: list[str]


def _docker_manifest(src: _Source) -> list[_DockerEntry]:
    doc = _read_member_json(src, "manifest.json")
    if not isinstance(doc, list):
        raise ArchiveError("manifest.json: expected a list of images")
    entries = []
    for i, item in enumerate(doc):
        where = f"manifest.json[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise ArchiveError(f"{where}: no Config")
        layers = item.get("Layers") or []
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise ArchiveError(f"{where}: Layers must be a list of paths")
        tags = [_parse_name(t, f"{where} RepoTags") for t in item.get("RepoTags") or []]
        entries.append(
            _DockerEntry(
                _safe_name(item["Config"], f"{where} Config"),
                tags,
                [_safe_name(layer, f"{where} Layers") for layer in layers],
            )
        )
    return entries


def _add_repo_tags(
    content: ContentStore, loaded: list[_Loaded], entries: list[_DockerEntry]
) -> None:
    by_config = {entry.config: entry.repo_tags for entry in entries}
    for item in loaded:
        for ref in by_config.get(_blob_name(item.config), []):
            if str(ref) not in {str(n) for n in item.names}:
                item.names.append(ref)


def _load_docker_legacy(
    content: ContentStore, src: _Source, entries: list[_DockerEntry], lease: Lease
) -> list[_Loaded]:
    loaded = []
    for entry in entries:
        config = _ingest_config(content, src, entry.config, lease)
        doc = _read_json(content, config.digest)
        diff_ids = (
            doc.get("rootfs", {}).get("diff_ids") if isinstance(doc.get("rootfs"), dict) else None
        )
        if not isinstance(diff_ids, list) or len(diff_ids) != len(entry.layers):
            raise ArchiveError(
                f"{entry.config}: rootfs.diff_ids does not match the {len(entry.layers)} layers"
            )
        layers = [
            _ingest_docker_layer(content, src, path, Digest(diff_id), lease)
            for path, diff_id in zip(entry.layers, diff_ids, strict=True)
        ]
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": config.model_dump(mode="json", exclude_none=True),
            "layers": [layer.model_dump(mode="json", exclude_none=True) for layer in layers],
        }
        data = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        lease.add_blob(Digest.of(data), media.OCI_MANIFEST)
        target = content.put(data).model_copy(update={"media_type": media.OCI_MANIFEST})
        loaded.append(_Loaded(target, config.digest, list(entry.repo_tags)))
    return loaded


def _expected_from_name(path: str) -> Digest | None:
    """The digest a docker-save file name promises: blobs/sha256/<hex> or <hex>.json."""
    if path.startswith("blobs/"):
        _, algorithm, encoded = [*path.split("/"), "", ""][:3]
        try:
            return Digest(f"{algorithm}:{encoded}")
        except ValueError:
            return None
    stem = path[: -len(".json")] if path.endswith(".json") else None
    if stem and "/" not in stem:
        try:
            return Digest(f"sha256:{stem}")
        except ValueError:
            return None
    return None


def _ingest_config(content: ContentStore, src: _Source, path: str, lease: Lease) -> Descriptor:
    with src.open(path) as f:
        data = f.read()
    expected = _expected_from_name(path)
    actual = Digest.of(data, expected.algorithm if expected else "sha256")
    if expected is not None and actual != expected:
        raise CorruptBlob(f"{path}: corrupt (expected {expected}, got {actual})")
    lease.add_blob(Digest.of(data), media.OCI_CONFIG)
    return content.put(data).model_copy(update={"media_type": media.OCI_CONFIG})


def _ingest_docker_layer(
    content: ContentStore, src: _Source, path: str, diff_id: Digest, lease: Lease
) -> Descriptor:
    """A layer file (tar or gzipped tar) into the store, checked against its diff_id."""
    with src.open(path) as f:
        magic = f.read(2)
    compressed = magic == b"\x1f\x8b"
    expected = _expected_from_name(path)
    uncompressed = hashlib.new(diff_id.algorithm)
    with src.open(path) as f, content.writer() as w:
        inflate = zlib.decompressobj(wbits=47) if compressed else None
        try:
            for chunk in _chunks(f):
                w.write(chunk)
                if inflate is None:
                    uncompressed.update(chunk)
                    continue
                uncompressed.update(inflate.decompress(chunk))
                while inflate.eof and inflate.unused_data:  # concatenated gzip members
                    rest = inflate.unused_data
                    inflate = zlib.decompressobj(wbits=47)
                    uncompressed.update(inflate.decompress(rest))
        except zlib.error as e:
            raise CorruptBlob(f"{path}: corrupt gzip ({e})") from None
        actual = Digest(f"{diff_id.algorithm}:{uncompressed.hexdigest()}")
        if actual != diff_id:
            raise CorruptBlob(f"{path}: corrupt (config says diff_id {diff_id}, got {actual})")
        desc = w.commit(before=lease.add_blob)
    if expected is not None and desc.digest != expected:
        raise CorruptBlob(f"{path}: corrupt (expected {expected}, got {desc.digest})")
    media_type = media.OCI_LAYER_GZIP if compressed else media.OCI_LAYER
    return desc.model_copy(update={"media_type": media_type})


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


__all__ = [
    "CONTAINERD_NAME",
    "REF_NAME",
    "ArchiveError",
    "CorruptBlob",
    "LoadResult",
    "UnknownMediaType",
    "UnsafePath",
    "load",
    "save",
]

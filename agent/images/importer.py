"""`docker import`: a root filesystem (a directory or a tarball) becomes a
one-layer image in the content store.

The layer is the directory as a tar (sorted, numeric owners, so the same tree
gives the same diff_id), stored gzip-compressed; the config records its
diff_id and the manifest points at both, OCI media types throughout.

Every blob is recorded in a lease before it is written, and the lease ends
after the name is tagged, so a concurrent `gc.collect` cannot take them
(`agent.images.leases`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from typing import IO, cast

from agent.content import ContentStore, Descriptor, Digest
from agent.images import media
from agent.images.leases import Lease, LeaseManager, leases_for
from agent.images.reference import Reference
from agent.images.store import Image, ImageStore

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def platform_architecture() -> str:
    machine = os.uname().machine
    return _ARCH.get(machine, machine)


def _tar_directory(src: str, out: IO[bytes]) -> None:
    """The tree under `src` as a tar: depth-first in name order, numeric ids, mtimes kept."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_tree(tar, src, "")


def _add_tree(tar: tarfile.TarFile, src: str, rel_dir: str) -> None:
    for name in sorted(os.listdir(os.path.join(src, rel_dir))):
        arcname = os.path.join(rel_dir, name) if rel_dir else name
        path = os.path.join(src, arcname)
        info = tar.gettarinfo(path, arcname)
        info.uname = info.gname = ""
        if info.isreg():
            with open(path, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)
        if info.isdir():
            _add_tree(tar, src, arcname)


def _sha256_file(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    f.seek(0)
    while chunk := f.read(1 << 20):
        h.update(chunk)
    return "sha256:" + h.hexdigest()


def import_rootfs(
    content: ContentStore,
    images: ImageStore,
    source: str,
    reference: Reference,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    *,
    leases: LeaseManager | None = None,
) -> Image:
    """Import a directory or a (gzipped) tarball of a root filesystem as `reference`.

    `leases` defaults to `leases_for(content)`, the directory `gc.collect` reads.
    """
    manager = leases if leases is not None else leases_for(content)
    with manager.lease() as lease:
        return _import(content, images, source, reference, cmd, env, lease)


def _import(
    content: ContentStore,
    images: ImageStore,
    source: str,
    reference: Reference,
    cmd: list[str] | None,
    env: list[str] | None,
    lease: Lease,
) -> Image:
    with tempfile.TemporaryFile() as raw:
        if os.path.isdir(source):
            _tar_directory(source, raw)
        elif os.path.isfile(source):
            with open(source, "rb") as f:
                magic = f.read(2)
                f.seek(0)
                stream = cast(IO[bytes], gzip.GzipFile(fileobj=f) if magic == b"\x1f\x8b" else f)
                shutil.copyfileobj(stream, raw, 1 << 20)
            raw.seek(0)
            try:
                with tarfile.open(fileobj=raw, mode="r|") as tar:
                    for _ in tar:
                        pass
            except tarfile.TarError as e:
                raise ValueError(f"{source}: not a tar archive ({e})") from None
        else:
            raise FileNotFoundError(f"{source}: no such file or directory")
        diff_id = _sha256_file(raw)
        raw.seek(0)
        with content.writer(media_type=media.OCI_LAYER_GZIP) as w:
            # mtime=0: the same tree compresses to the same blob.
            with gzip.GzipFile(fileobj=w, mode="wb", mtime=0, compresslevel=6) as gz:
                shutil.copyfileobj(raw, gz, 1 << 20)
            layer = w.commit(before=lambda d: lease.add_blob(d, media.OCI_LAYER_GZIP))
    layer = layer.model_copy(update={"media_type": media.OCI_LAYER_GZIP})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = {
        "created": now,
        "architecture": platform_architecture(),
        "os": "linux",
        "config": {"Env": env or list(DEFAULT_ENV), **({"Cmd": cmd} if cmd else {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": now, "created_by": "orchestr image import"}],
    }
    config_desc = _put_json(content, lease, config, media.OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": media.OCI_MANIFEST,
        "config": config_desc.model_dump(mode="json", exclude_none=True),
        "layers": [layer.model_dump(mode="json", exclude_none=True)],
    }
    manifest_desc = _put_json(content, lease, manifest, media.OCI_MANIFEST)
    return images.tag(reference, manifest_desc)


def _put_json(content: ContentStore, lease: Lease, doc: object, media_type: str) -> Descriptor:
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    lease.add_blob(Digest.of(data), media_type)  # before the blob can be (or is found) there
    desc = content.put(data)
    return desc.model_copy(update={"media_type": media_type})

"""Snapshots: image layers unpacked once, stacked into containers' root filesystems.

Data flows as in containerd: a layer blob from the content store is applied
by `archive.apply_layer` into a snapshot keyed by its chain ID; a snapshotter
*describes* a container's root filesystem as `Mount`s; `mount_all` (the only
privileged part) performs them.

    snapshotter = OverlaySnapshotter(f"{data_root}/snapshots")
    parent = None
    for layer, diff_id in zip(layers, config["rootfs"]["diff_ids"]):
        with open(blob_path(layer.digest), "rb") as blob:
            parent = snapshotter.unpack(parent, blob, layer.media_type, diff_id)
    mount_all(snapshotter.mounts(parent, container_dir), rootfs)
    ...
    unmount(rootfs)

Exceptions:

    ValueError
     └─ ArchiveError            a layer that cannot be applied
         ├─ UnsupportedMediaType  not a layer media type, or zstd without zstandard
         ├─ UnsafeArchive         a member escaping the destination (named in the message)
         └─ DiffIDMismatch        the layer is not the one the image config names
    Exception
     └─ SnapshotError
         ├─ SnapshotNotFound      (also a KeyError) no snapshot has that chain ID
         ├─ SnapshotInUse         removing a snapshot another one is built on
         └─ MountOptionsTooLong   a layer stack that no mount(2) can take
    OSError                     from the file system and mount(2), as they come
"""

from __future__ import annotations

from agent.snapshots.archive import (
    LAYER_MEDIA_TYPES,
    ApplyResult,
    ArchiveError,
    Compression,
    DiffIDMismatch,
    UnsafeArchive,
    UnsupportedMediaType,
    apply_layer,
    compression_of,
    unpack_to_snapshot,
)
from agent.snapshots.base import (
    Mount,
    MountOptionsTooLong,
    SnapshotError,
    SnapshotInfo,
    SnapshotInUse,
    SnapshotNotFound,
    Snapshotter,
    Usage,
)
from agent.snapshots.mount import mount_all, unmount
from agent.snapshots.overlay import OverlaySnapshotter, chain_id, next_chain_id, overlay_mounts

__all__ = [
    "LAYER_MEDIA_TYPES",
    "ApplyResult",
    "ArchiveError",
    "Compression",
    "DiffIDMismatch",
    "Mount",
    "MountOptionsTooLong",
    "OverlaySnapshotter",
    "SnapshotError",
    "SnapshotInUse",
    "SnapshotInfo",
    "SnapshotNotFound",
    "Snapshotter",
    "UnsafeArchive",
    "UnsupportedMediaType",
    "Usage",
    "apply_layer",
    "chain_id",
    "compression_of",
    "mount_all",
    "next_chain_id",
    "overlay_mounts",
    "unmount",
    "unpack_to_snapshot",
]

"""What a snapshotter is: the Snapshotter protocol, the Mount it returns, its records.

A snapshotter keeps the unpacked layers of images, one snapshot per chain ID,
and *describes* how to stack them into a container's root filesystem as a list
of `Mount`s. It never mounts anything itself: `agent.snapshots.mount` is the
privileged edge that executes those descriptions (containerd's split between
its snapshotters and its mount package).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Mount:
    """One mount(2) to perform on a target, described.

    `type` is the filesystem type ("overlay") or "bind"; `source` the device or
    directory; `options` mount(8)-style options, both flags ("ro", "rbind",
    "nosuid") and filesystem data ("lowerdir=...").

    `cwd`, when set, is the directory the mount must be performed from: the
    relative paths in `options` are relative to it. It is set when the
    absolute form of the options would not fit in the one page of data that
    mount(2) accepts (see `overlay.overlay_mounts`).
    """

    type: str
    source: str
    options: list[str] = field(default_factory=list)
    cwd: str | None = None


class SnapshotInfo(BaseModel):
    """A committed snapshot: one layer unpacked on top of its parent chain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chain_id: str
    id: int  # the directory name under <root>/snapshots
    parent: str | None  # chain ID of the snapshot below, None for a base layer
    diff_id: str  # sha256 of the layer's uncompressed tar
    size: int  # bytes on disk of this snapshot alone (not its parents)
    inodes: int
    created: float  # seconds since the epoch


class Usage(BaseModel):
    """Disk usage: bytes (allocated blocks, hard links counted once) and inodes."""

    model_config = ConfigDict(frozen=True)

    size: int = 0
    inodes: int = 0


class SnapshotError(Exception):
    """A snapshot operation that cannot be done (see the subclasses)."""


class SnapshotNotFound(SnapshotError, KeyError):
    """No snapshot has that chain ID."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SnapshotInUse(SnapshotError):
    """A snapshot other snapshots are built on cannot be removed."""


class MountOptionsTooLong(SnapshotError):
    """Even the compact form of the mount options does not fit in one page."""


class Snapshotter(Protocol):
    """Unpacked layers keyed by chain ID, and the mounts that stack them.

    - `unpack` applies one layer on top of `parent_chain` and returns the new
      chain ID; a chain ID already unpacked is not unpacked again.
    - `mounts` describes a container's root filesystem: the snapshots of
      `chain_id` (read-only lower layers) under a writable layer kept in
      `container_dir` (none when `readonly`). `chain_id` None is an image
      without layers.
    - `remove` refuses (SnapshotInUse) while another snapshot has it as parent.
    """

    def unpack(
        self,
        parent_chain: str | None,
        layer: BinaryIO,
        media_type: str,
        expected_diff_id: str | None = None,
    ) -> str: ...

    def mounts(
        self, chain_id: str | None, container_dir: str, *, readonly: bool = False
    ) -> builtins.list[Mount]: ...

    def stat(self, chain_id: str) -> SnapshotInfo: ...

    def remove(self, chain_id: str) -> None: ...

    def usage(self, chain_id: str | None = None) -> Usage: ...

    def list(self) -> builtins.list[SnapshotInfo]: ...

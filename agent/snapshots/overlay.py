"""The overlay snapshotter: each layer unpacked once, stacked with overlayfs.

On disk, under the snapshotter's root (`<data-root>/snapshots` in the daemon):

    metadata.json          chain ID -> SnapshotInfo (id, parent, diff ID, size)
    metadata.lock          flock(2) held while metadata.json is rewritten
    snapshots/<id>/fs      the layer, applied in overlayfs form (whiteouts are
                           0:0 character devices, opaque directories carry
                           trusted.overlay.opaque=y)
    snapshots/new-*        a layer being unpacked (renamed to <id> when done)

A container's root filesystem is an overlay of the snapshots of its image's
chain (top first) under `<container_dir>/upper`, with `<container_dir>/work`
as overlayfs's work directory. `mounts` only describes that mount;
`agent.snapshots.mount.mount_all` performs it.

The page-size limit: mount(2) takes at most one page (4096 bytes) of option
data, and 40 layers under a long data root need more. When the absolute form
does not fit, `overlay_mounts` does what containerd does: it makes every path
relative to the snapshots directory (`lowerdir=12/fs:11/fs:...`) and says in
`Mount.cwd` that the mount must be performed from there. Each lower layer then
costs a few bytes whatever the data root, which keeps images up to
overlayfs's own limit of 500 layers mountable. The mount edge honours `cwd`
on a short-lived thread that has its own working directory (unshare
CLONE_FS), so the daemon's other threads never see the directory change.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from pydantic import BaseModel, Field

from agent.snapshots.archive import compression_of, remove_tree, unpack_to_snapshot
from agent.snapshots.base import (
    Mount,
    MountOptionsTooLong,
    SnapshotInfo,
    SnapshotInUse,
    SnapshotNotFound,
    Usage,
)

PAGE_SIZE = 4096
# Head-room kept below the page when choosing the absolute form, as containerd
# does (room for options a caller or an LSM adds).
MOUNT_DATA_MARGIN = 512
MAX_LOWER_LAYERS = 500  # overlayfs's OVL_MAX_STACK

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


# -- pure: identifiers and mount descriptions --------------------------------------------


def check_digest(digest: str, what: str = "digest") -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"{what} {digest!r} is not sha256:<64 lowercase hex digits>")
    return digest


def next_chain_id(parent_chain: str | None, diff_id: str) -> str:
    """ChainID(L0..Ln) from ChainID(L0..Ln-1) and DiffID(Ln) (image-spec config.md)."""
    check_digest(diff_id, "diff ID")
    if parent_chain is None:
        return diff_id
    check_digest(parent_chain, "chain ID")
    return "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()


def chain_id(diff_ids: Sequence[str]) -> builtins.list[str]:
    """The chain ID of every prefix of an image's layers, bottom first."""
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(next_chain_id(chains[-1] if chains else None, diff_id))
    return chains


def _check_option_path(path: str) -> str:
    if not os.path.isabs(path):
        raise ValueError(f"overlay paths must be absolute: {path!r}")
    if any(c in path for c in ",:\\"):
        raise ValueError(f"overlay mount options cannot carry ',', ':' or '\\' in {path!r}")
    return path


def _shorter(path: str, base_dir: str) -> str:
    relative = os.path.relpath(path, base_dir)
    return relative if len(relative) < len(path) else path


def _overlay_data(lowers: Sequence[str], upper: str | None, work: str | None) -> list[str]:
    data = ["lowerdir=" + ":".join(lowers)]
    if upper is not None and work is not None:
        data += [f"upperdir={upper}", f"workdir={work}"]
    return data


def overlay_mounts(
    lowers: Sequence[str],
    upper: str | None,
    work: str | None,
    *,
    base_dir: str,
    page_size: int = PAGE_SIZE,
) -> builtins.list[Mount]:
    """The mounts of a root filesystem: `lowers` (top first) under `upper` (pure).

    - no lowers: a bind mount of `upper` (an image without layers);
    - read-only (`upper` None) with one layer: a read-only bind of it;
    - otherwise an overlay. Its options use absolute paths when they fit in a
      page (less MOUNT_DATA_MARGIN); if not, paths relative to `base_dir` (the
      snapshots directory) and `cwd=base_dir`. MountOptionsTooLong if even
      that does not fit.
    """
    if (upper is None) != (work is None):
        raise ValueError("upper and work directories go together")
    if not lowers:
        if upper is None:
            raise ValueError("a read-only root filesystem needs at least one layer")
        return [Mount("bind", upper, ["rw", "rbind"])]
    if upper is None and len(lowers) == 1:
        return [Mount("bind", lowers[0], ["ro", "rbind"])]
    if len(lowers) > MAX_LOWER_LAYERS:
        raise MountOptionsTooLong(
            f"{len(lowers)} layers: overlayfs stacks at most {MAX_LOWER_LAYERS}"
        )
    for path in (*lowers, upper, work):
        if path is not None:
            _check_option_path(path)
    _check_option_path(base_dir)
    flags = ["ro"] if upper is None else []

    data = _overlay_data(lowers, upper, work)
    if len(",".join(data)) < page_size - MOUNT_DATA_MARGIN:
        return [Mount("overlay", "overlay", [*flags, *data])]

    compact = _overlay_data(
        [_shorter(p, base_dir) for p in lowers],
        None if upper is None else _shorter(upper, base_dir),
        None if work is None else _shorter(work, base_dir),
    )
    size = len(",".join(compact))
    if size >= page_size:
        raise MountOptionsTooLong(
            f"overlay options for {len(lowers)} layers need {size} bytes even relative to "
            f"{base_dir}; mount(2) takes {page_size - 1}"
        )
    return [Mount("overlay", "overlay", [*flags, *compact], cwd=base_dir)]


# -- the snapshotter ---------------------------------------------------------------------


class _Metadata(BaseModel):
    version: int = 1
    next_id: int = 1
    snapshots: dict[str, SnapshotInfo] = Field(default_factory=dict)


def disk_usage(path: str) -> Usage:
    """Allocated bytes and inodes under path, hard links counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    pending = [path]
    while pending:
        directory = pending.pop()
        st = os.lstat(directory)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            size += st.st_blocks * 512
        with os.scandir(directory) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    pending.append(entry.path)
                elif (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    size += st.st_blocks * 512
    return Usage(size=size, inodes=len(seen))


class OverlaySnapshotter:
    """Snapshots keyed by chain ID under `root`, mounted with overlayfs.

    Safe to share between threads and processes: metadata changes are made
    under an flock and written atomically; unpacking happens outside the lock
    in a private staging directory, and the first unpack of a chain ID to
    finish wins.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.snapshots_dir = os.path.join(self.root, "snapshots")
        self._metadata_path = os.path.join(self.root, "metadata.json")
        self._lock_path = os.path.join(self.root, "metadata.lock")
        os.makedirs(self.snapshots_dir, mode=0o700, exist_ok=True)
        self._flights: dict[str, threading.Lock] = {}  # chain ID -> its unpacking
        self._flights_lock = threading.Lock()

    # -- metadata

    def _load(self) -> _Metadata:
        try:
            with open(self._metadata_path, "rb") as f:
                return _Metadata.model_validate_json(f.read())
        except FileNotFoundError:
            return _Metadata()

    def _save(self, metadata: _Metadata) -> None:
        tmp = self._metadata_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(metadata.model_dump_json(indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._metadata_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Metadata]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self._load()
        finally:
            os.close(fd)

    def _fs_dir(self, info: SnapshotInfo) -> str:
        return os.path.join(self.snapshots_dir, str(info.id), "fs")

    def _chain(self, metadata: _Metadata, chain_id: str) -> builtins.list[SnapshotInfo]:
        """The snapshots of a chain, top first."""
        chain: list[SnapshotInfo] = []
        current: str | None = chain_id
        while current is not None:
            info = metadata.snapshots.get(current)
            if info is None:
                missing = "snapshot" if current == chain_id else f"parent {current} of snapshot"
                raise SnapshotNotFound(f"{missing} {chain_id} not found")
            chain.append(info)
            if len(chain) > len(metadata.snapshots):
                raise ValueError(f"{self._metadata_path}: the parents of {chain_id} form a loop")
            current = info.parent
        return chain

    # -- the Snapshotter protocol

    def unpack(
        self,
        parent_chain: str | None,
        layer: BinaryIO,
        media_type: str,
        expected_diff_id: str | None = None,
    ) -> str:
        """Apply `layer` on top of `parent_chain`; returns the new chain ID.

        With `expected_diff_id` a chain already unpacked is found without
        reading the layer. A layer whose diff ID differs from the expected one
        is refused (DiffIDMismatch) and leaves nothing behind.
        """
        compression_of(media_type)  # an unsupported media type fails before any I/O
        if expected_diff_id is None:
            return self._unpack_new(parent_chain, layer, media_type, None)
        known = next_chain_id(parent_chain, expected_diff_id)
        if known in self._load().snapshots:
            return known
        # One unpacking per layer: the containers of a new service all ask for its image
        # at once, and would each unpack it (their CPU shared) to keep one.
        with self._flights_lock:
            flight = self._flights.setdefault(known, threading.Lock())
        with flight:
            if known in self._load().snapshots:
                return known
            return self._unpack_new(parent_chain, layer, media_type, expected_diff_id)

    def _unpack_new(
        self,
        parent_chain: str | None,
        layer: BinaryIO,
        media_type: str,
        expected_diff_id: str | None,
    ) -> str:
        metadata = self._load()
        parents = (
            [self._fs_dir(s) for s in self._chain(metadata, parent_chain)]
            if parent_chain is not None
            else []
        )
        staging = tempfile.mkdtemp(prefix="new-", dir=self.snapshots_dir)
        try:
            result = unpack_to_snapshot(
                layer,
                os.path.join(staging, "fs"),
                media_type,
                expected_diff_id=expected_diff_id,
                parents=parents,
            )
            usage = disk_usage(os.path.join(staging, "fs"))
            new_chain = next_chain_id(parent_chain, result.diff_id)
            with self._locked() as metadata:
                if new_chain in metadata.snapshots:
                    remove_tree(staging)  # unpacked meanwhile by someone else
                    return new_chain
                if parent_chain is not None and parent_chain not in metadata.snapshots:
                    raise SnapshotNotFound(f"parent snapshot {parent_chain} was removed")
                snapshot_id = metadata.next_id
                final = os.path.join(self.snapshots_dir, str(snapshot_id))
                os.rename(staging, final)
                staging = final
                metadata.next_id = snapshot_id + 1
                metadata.snapshots[new_chain] = SnapshotInfo(
                    chain_id=new_chain,
                    id=snapshot_id,
                    parent=parent_chain,
                    diff_id=result.diff_id,
                    size=usage.size,
                    inodes=usage.inodes,
                    created=time.time(),
                )
                self._save(metadata)
        except BaseException:
            remove_tree(staging)
            raise
        return new_chain

    def commit(self, parent_chain: str | None, upper_dir: str, diff_id: str) -> str:
        """Make a container's upper directory a snapshot on `parent_chain` (containerd's
        Commit); returns the new chain ID.

        The upper directory is already in the snapshot form (overlayfs whiteouts),
        so it is moved, not copied: it must be on this snapshotter's file system
        (OSError EXDEV otherwise) and unmounted. `diff_id` is the diff ID of the
        layer made from it. When the chain exists already, the directory is removed.
        """
        check_digest(diff_id, "diff ID")
        new_chain = next_chain_id(parent_chain, diff_id)
        usage = disk_usage(upper_dir)
        with self._locked() as metadata:
            if new_chain in metadata.snapshots:
                remove_tree(upper_dir)
                return new_chain
            if parent_chain is not None and parent_chain not in metadata.snapshots:
                raise SnapshotNotFound(f"parent snapshot {parent_chain} was removed")
            snapshot_id = metadata.next_id
            final = os.path.join(self.snapshots_dir, str(snapshot_id))
            os.mkdir(final, 0o700)
            try:
                os.rename(upper_dir, os.path.join(final, "fs"))
            except BaseException:
                os.rmdir(final)
                raise
            metadata.next_id = snapshot_id + 1
            metadata.snapshots[new_chain] = SnapshotInfo(
                chain_id=new_chain,
                id=snapshot_id,
                parent=parent_chain,
                diff_id=diff_id,
                size=usage.size,
                inodes=usage.inodes,
                created=time.time(),
            )
            self._save(metadata)
        return new_chain

    def mounts(
        self, chain_id: str | None, container_dir: str, *, readonly: bool = False
    ) -> builtins.list[Mount]:
        """The mounts of a container's root filesystem on the snapshots of `chain_id`.

        Unless `readonly`, makes `container_dir/upper` and `container_dir/work`
        (the container's writable layer) if they do not exist yet.
        """
        lowers = (
            [self._fs_dir(s) for s in self._chain(self._load(), chain_id)]
            if chain_id is not None
            else []
        )
        upper = work = None
        if not readonly:
            container_dir = os.path.abspath(container_dir)
            upper = os.path.join(container_dir, "upper")
            work = os.path.join(container_dir, "work")
            os.makedirs(upper, mode=0o755, exist_ok=True)
            os.makedirs(work, mode=0o700, exist_ok=True)
        return overlay_mounts(lowers, upper, work, base_dir=self.snapshots_dir)

    def stat(self, chain_id: str) -> SnapshotInfo:
        info = self._load().snapshots.get(chain_id)
        if info is None:
            raise SnapshotNotFound(f"snapshot {chain_id} not found")
        return info

    def remove(self, chain_id: str) -> None:
        """Remove one snapshot; SnapshotInUse while another is built on it."""
        with self._locked() as metadata:
            info = metadata.snapshots.get(chain_id)
            if info is None:
                raise SnapshotNotFound(f"snapshot {chain_id} not found")
            children = sorted(c for c, s in metadata.snapshots.items() if s.parent == chain_id)
            if children:
                raise SnapshotInUse(
                    f"snapshot {chain_id} is the parent of {', '.join(children)}: "
                    "remove those first"
                )
            doomed = os.path.join(self.snapshots_dir, f"rm-{info.id}")
            os.rename(os.path.join(self.snapshots_dir, str(info.id)), doomed)
            del metadata.snapshots[chain_id]
            self._save(metadata)
        remove_tree(doomed)

    def usage(self, chain_id: str | None = None) -> Usage:
        """Disk usage of one snapshot (without its parents), or of all of them."""
        if chain_id is not None:
            info = self.stat(chain_id)
            return Usage(size=info.size, inodes=info.inodes)
        snapshots = self._load().snapshots.values()
        return Usage(size=sum(s.size for s in snapshots), inodes=sum(s.inodes for s in snapshots))

    def cleanup(self) -> builtins.list[str]:
        """Remove what interrupted unpacks and removals left; returns the names removed.

        Call it when nothing else uses this root (at daemon start): it removes
        every directory under snapshots/ that the metadata does not name,
        in-progress unpacks included.
        """
        removed: list[str] = []
        with self._locked() as metadata:
            known = {str(s.id) for s in metadata.snapshots.values()}
            for name in sorted(os.listdir(self.snapshots_dir)):
                if name not in known:
                    remove_tree(os.path.join(self.snapshots_dir, name))
                    removed.append(name)
        return removed

    def list(self) -> builtins.list[SnapshotInfo]:
        """Every snapshot, oldest first."""
        return sorted(self._load().snapshots.values(), key=lambda s: s.id)

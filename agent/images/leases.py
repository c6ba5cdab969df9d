"""Leases: what an import, load or pull has written but not yet named, kept from GC.

containerd's idea, simply. A writer opens a lease, records in it every blob
(and snapshot chain ID) it is about to rely on, and tags its image name before
the lease ends; `gc.collect` treats the blobs and snapshots of every active
lease as roots, as it does the targets of image names (a leased index or
manifest keeps what it references, when its media type was recorded).

    <root>/<id>.json    {"id", "created", "expires", "blobs": {digest: mediaType|null},
                         "snapshots": [chain IDs]}, rewritten atomically on each change
    <root>/.lock        flock: shared while a lease records something, exclusive
                        while `collect` reads the leases and deletes

A lease that outlives its expiry time (a writer that crashed) counts for
nothing and is removed by the next `active()`.

Why there is no window (the order `collect` and the writers follow):

- A writer records a digest in its lease *before* it writes the blob or checks
  that the blob is already there (`Lease.add_blob` returns only once the lease
  file is renamed into place), and ends the lease only *after* tagging.
- `collect` lists the blobs, then, holding the exclusive lock, reads the
  leases, then the names, plans and deletes, and only then lets go.
- A blob in the listing was written before it, so its digest was recorded
  before it. Either that record was made before `collect` took the lock, and
  `collect` reads the lease (kept) or finds it already ended, in which case the
  name was tagged before the leases were read, hence before the names were
  read (kept through the name). Or the record waited for the lock, so the
  writer's `has()` check or write comes after every deletion, and sees them.
- A blob written after the listing is not in the plan at all.

The lock is needed for the blobs that are *already there*: without it, a
writer could record a digest just after `collect` read the leases, see the
blob, skip writing it, and lose it to the deletion that follows.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.content import ContentStore, Digest

__all__ = ["DEFAULT_EXPIRY", "Lease", "LeaseManager", "leases_for"]

DEFAULT_EXPIRY = 24 * 3600.0  # containerd's client leases expire after 24 h too
_LOCK = ".lock"


class Lease:
    """One lease: what it holds, and (for the one being written) how to add to it.

    `LeaseManager.active()` returns read-only copies: adding to them raises.
    """

    def __init__(
        self,
        manager: LeaseManager | None,
        id: str,
        created: float,
        expires: float,
        blobs: Mapping[str, str | None] | None = None,
        snapshots: set[str] | None = None,
    ) -> None:
        self.id = id
        self.created = created
        self.expires = expires
        self._blobs: dict[str, str | None] = dict(blobs or {})
        self._snapshots: set[str] = set(snapshots or ())
        self._manager = manager
        self._mutex = threading.Lock()

    @property
    def blobs(self) -> Mapping[str, str | None]:
        """digest -> media type (None when the writer did not know it)."""
        return dict(self._blobs)

    @property
    def snapshots(self) -> frozenset[str]:
        return frozenset(self._snapshots)

    def add_blob(self, digest: str, media_type: str | None = None) -> None:
        """Hold `digest`; persisted before this returns. Call it before writing the blob."""
        d = str(Digest(digest))
        with self._mutex:
            if d in self._blobs and (media_type is None or self._blobs[d] == media_type):
                return
            self._blobs[d] = media_type or self._blobs.get(d)
            self._save()

    def add_snapshot(self, chain_id: str) -> None:
        """Hold the snapshot `chain_id` (and so its parents); persisted before this returns."""
        with self._mutex:
            if chain_id in self._snapshots:
                return
            self._snapshots.add(chain_id)
            self._save()

    def __repr__(self) -> str:
        return f"Lease({self.id}, {len(self._blobs)} blobs, {len(self._snapshots)} snapshots)"

    def _doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "expires": self.expires,
            "blobs": dict(sorted(self._blobs.items())),
            "snapshots": sorted(self._snapshots),
        }

    def _save(self) -> None:
        if self._manager is None:
            raise ValueError(f"lease {self.id}: a copy read by active() cannot be changed")
        self._manager._write(self)


class LeaseManager:
    """Leases as files under `root` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def lease(self, *, expires_in: float = DEFAULT_EXPIRY) -> Iterator[Lease]:
        """A new lease, written before it is handed out and removed on exit."""
        now = time.time()
        lease = Lease(self, uuid.uuid4().hex, now, now + expires_in)
        self._write(lease)
        try:
            yield lease
        finally:
            self._path(lease.id).unlink(missing_ok=True)

    def active(self, now: float | None = None) -> list[Lease]:
        """The leases not expired at `now` (default: the clock), by id; expired ones are removed."""
        now = time.time() if now is None else now
        found: list[Lease] = []
        for path in sorted(self.root.glob("*.json")):
            lease = self._read(path)
            if lease is None:
                continue
            if lease.expires <= now:
                path.unlink(missing_ok=True)
                continue
            found.append(lease)
        return found

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold off every `add_blob`/`add_snapshot` meanwhile (what `collect` holds)."""
        with self._locked(fcntl.LOCK_EX):
            yield

    # -- internals

    def _path(self, lease_id: str) -> Path:
        return self.root / f"{lease_id}.json"

    @contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        fd = os.open(self.root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, lease: Lease) -> None:
        data = json.dumps(lease._doc(), separators=(",", ":")).encode()
        with self._locked(fcntl.LOCK_SH):
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".lease-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path(lease.id))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _read(self, path: Path) -> Lease | None:
        try:
            doc = json.loads(path.read_bytes())
            blobs = doc["blobs"]
            snapshots = doc["snapshots"]
            if not isinstance(blobs, dict) or not isinstance(snapshots, list):
                raise ValueError("blobs or snapshots of the wrong type")
            return Lease(
                None,
                str(doc["id"]),
                float(doc["created"]),
                float(doc["expires"]),
                {str(Digest(d)): (str(m) if m else None) for d, m in blobs.items()},
                {str(s) for s in snapshots},
            )
        except FileNotFoundError:
            return None  # ended meanwhile
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # written atomically, so not ours half-written: a stray, ignored


def leases_for(content: ContentStore) -> LeaseManager:
    """The default lease directory: `leases/` beside the content store (`<data-root>/leases`)."""
    return LeaseManager(content.root.parent / "leases")

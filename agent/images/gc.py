"""Garbage collection and disk accounting of the content store and the snapshots.

Mark and sweep, as containerd's GC does, split nomad-style into a pure decision
and a thin applier:

- `plan_gc(roots, index, snapshots, in_use_chains, leases)` is pure. The roots
  are the descriptors the image names point at, plus the blobs of the active
  leases (`agent.images.leases`; a leased index or manifest whose media type
  the lease records keeps what it references, as a name does); `index` is what
  was read of the content store beforehand (every blob with its size, and the
  parsed JSON of the indexes, manifests and configs reachable from the roots).
  It marks, from each root: an index's manifests (and nested indexes), a
  manifest's config and layers, and the chain IDs of the snapshots a config's
  `rootfs.diff_ids` make; then the snapshots in use by containers or held by a
  lease and, for every snapshot kept, its parents. Everything else is to be
  deleted: blobs by digest, snapshots by chain ID, children before their
  parents.
- `collect(content, images, snapshots, in_use_chains, dry_run, leases=...)`
  drops stale ingests, then reads (blobs first; then, holding the leases'
  exclusive lock, the leases, the names and the documents), plans and applies
  the plan in order before letting the lock go. Why that order leaves no
  window for an import, load or pull: see `agent.images.leases`.
- `disk_usage(...)` is what `system df` shows: per image its size, the part of
  it shared with other images and the unique rest; the store's totals with
  shared blobs counted once; and what `collect()` would free.

Safety: a blob reachable from a name is never deleted, nor a snapshot in use or
below one kept. When a document reachable from a name cannot be read (missing
from `index.documents`, not JSON, not the shape the spec gives it), what it
references is unknown, so the plan deletes nothing at all and says why in
`problems`.

Stale ingests: partial writes not touched for `ingest_max_age` (24 h by
default: what containerd gives a client's lease, and so the ingests under it)
and held by no writer are removed first; a pull that broke off resumes from its
ingest only within that time.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.content import OCTET_STREAM, ContentStore, Descriptor, Digest, NotFound
from agent.images import media
from agent.images.leases import Lease, LeaseManager, leases_for
from agent.images.store import ImageStore
from agent.snapshots import (
    SnapshotInfo,
    SnapshotInUse,
    SnapshotNotFound,
    Snapshotter,
    Usage,
    chain_id,
)

__all__ = [
    "INGEST_MAX_AGE",
    "ContentIndex",
    "DiskUsage",
    "GcPlan",
    "GcResult",
    "ImageUsage",
    "collect",
    "disk_usage",
    "lease_roots",
    "plan_gc",
    "plan_usage",
    "read_index",
]

_DOCUMENTS = media.INDEXES | media.MANIFESTS | media.CONFIGS
INGEST_MAX_AGE = 24 * 3600.0
"""Seconds without a write after which `collect` drops an unlocked ingest."""


# -- inputs and results ------------------------------------------------------------------


@dataclass(frozen=True)
class ContentIndex:
    """What the planner knows of the content store, read beforehand.

    `blobs`: every blob in the store, digest -> size. `documents`: the parsed
    JSON of the indexes, manifests and configs reachable from the roots, by
    digest (None for one that could not be parsed).
    """

    blobs: Mapping[str, int]
    documents: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GcPlan:
    """What to delete, and what is kept (for explanation and tests)."""

    delete_blobs: tuple[str, ...]  # digest order
    delete_snapshots: tuple[str, ...]  # chain IDs, children before parents
    keep_blobs: frozenset[str]
    keep_snapshots: frozenset[str]
    reclaimable: int  # bytes: deleted blobs plus deleted snapshots' own sizes
    problems: tuple[str, ...] = ()  # non-empty: nothing is deleted, and this says why


@dataclass(frozen=True)
class GcResult:
    plan: GcPlan
    dry_run: bool
    removed_blobs: tuple[str, ...]
    removed_snapshots: tuple[str, ...]
    freed: int  # bytes
    skipped: tuple[str, ...]  # what could not be removed, and why
    removed_ingests: tuple[str, ...] = ()  # refs of the stale ingests dropped


@dataclass(frozen=True)
class ImageUsage:
    """One image (a manifest or index digest, whatever names point at it)."""

    digest: str
    names: tuple[str, ...]
    size: int  # every blob reachable from it, compressed as stored
    shared_size: int  # the part of `size` also reachable from another image
    unique_size: int  # size - shared_size


@dataclass(frozen=True)
class DiskUsage:
    images: tuple[ImageUsage, ...]
    images_size: int  # blobs reachable from any name, each counted once
    content_size: int  # every blob in the store
    reclaimable: int  # bytes collect() would free now (blobs and snapshots)
    reclaimable_blobs: int
    reclaimable_snapshots: int
    snapshots: Usage  # all snapshots, from the snapshotter
    snapshots_count: int
    snapshots_in_use: int  # kept for containers (with their parents)


# -- pure: marking -------------------------------------------------------------------------


@dataclass
class _Reach:
    blobs: set[str] = field(default_factory=set)
    chains: set[str] = field(default_factory=set)
    unread: set[str] = field(default_factory=set)  # documents to read that are in the store
    problems: list[str] = field(default_factory=list)


def _descriptors(doc: Mapping[str, Any], key: str, where: str, out: _Reach) -> list[Descriptor]:
    raw = doc.get(key, [])
    items = raw if key != "config" else [raw]
    if not isinstance(items, list):
        out.problems.append(f"{where}: {key} is not a list")
        return []
    found: list[Descriptor] = []
    for item in items:
        try:
            found.append(Descriptor.model_validate(item))
        except ValueError as e:
            out.problems.append(f"{where}: a {key} descriptor is invalid ({_first_line(e)})")
    return found


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0]


def _reach(roots: Iterable[Descriptor], index: ContentIndex) -> _Reach:
    """Mark everything reachable from `roots` (pure)."""
    out = _Reach()
    pending = list(roots)
    seen: set[str] = set()
    while pending:
        desc = pending.pop()
        digest = str(desc.digest)
        if digest in seen:
            continue
        seen.add(digest)
        if digest not in index.blobs:
            continue  # not here (another platform's manifest, a foreign layer): nothing to keep
        out.blobs.add(digest)
        if desc.media_type not in _DOCUMENTS:
            continue
        if digest not in index.documents:
            out.unread.add(digest)
            out.problems.append(f"{digest}: {desc.media_type} not read")
            continue
        doc = index.documents[digest]
        if not isinstance(doc, Mapping):
            out.problems.append(f"{digest}: {desc.media_type} is not a JSON object")
            continue
        if desc.media_type in media.INDEXES:
            pending.extend(_descriptors(doc, "manifests", digest, out))
        elif desc.media_type in media.MANIFESTS:
            if "config" not in doc:
                out.problems.append(f"{digest}: manifest without a config")
            else:
                pending.extend(_descriptors(doc, "config", digest, out))
            pending.extend(_descriptors(doc, "layers", digest, out))
        else:
            rootfs = doc.get("rootfs")
            diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, Mapping) else None
            if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
                out.problems.append(f"{digest}: config without a list of rootfs.diff_ids")
                continue
            try:
                out.chains.update(chain_id(diff_ids))
            except ValueError as e:
                out.problems.append(f"{digest}: {e}")
    return out


def _with_parents(chains: Iterable[str], parents: Mapping[str, str | None]) -> set[str]:
    kept: set[str] = set()
    pending = list(chains)
    while pending:
        current = pending.pop()
        if current in kept:
            continue
        kept.add(current)
        parent = parents.get(current)
        if parent is not None:
            pending.append(parent)
    return kept


def _depth(chain: str, parents: Mapping[str, str | None]) -> int:
    depth = 0
    current = parents.get(chain)
    while current is not None and depth <= len(parents):  # a loop in the metadata stops here
        depth += 1
        current = parents.get(current)
    return depth


def lease_roots(leases: Iterable[Lease]) -> list[Descriptor]:
    """The leases' blobs as roots; one whose media type is unknown keeps only itself."""
    return [
        Descriptor(media_type=media_type or OCTET_STREAM, digest=Digest(digest), size=0)
        for lease in leases
        for digest, media_type in sorted(lease.blobs.items())
    ]


def plan_gc(
    roots: Sequence[Descriptor],
    content_index: ContentIndex,
    snapshots: Sequence[SnapshotInfo],
    in_use_chains: Collection[str] = frozenset(),
    leases: Sequence[Lease] = (),
) -> GcPlan:
    """Decide what to delete (pure): see the module docstring."""
    reach = _reach([*roots, *lease_roots(leases)], content_index)
    held = set(in_use_chains).union(*(lease.snapshots for lease in leases))
    parents = {s.chain_id: s.parent for s in snapshots}
    keep_snapshots = _with_parents(reach.chains | held, parents) & parents.keys()
    keep_blobs = frozenset(reach.blobs)
    if reach.problems:
        return GcPlan(
            delete_blobs=(),
            delete_snapshots=(),
            keep_blobs=frozenset(content_index.blobs),
            keep_snapshots=frozenset(parents),
            reclaimable=0,
            problems=tuple(sorted(set(reach.problems))),
        )
    delete_blobs = tuple(sorted(d for d in content_index.blobs if d not in keep_blobs))
    doomed = [s for s in snapshots if s.chain_id not in keep_snapshots]
    doomed.sort(key=lambda s: (-_depth(s.chain_id, parents), s.chain_id))
    return GcPlan(
        delete_blobs=delete_blobs,
        delete_snapshots=tuple(s.chain_id for s in doomed),
        keep_blobs=keep_blobs,
        keep_snapshots=frozenset(keep_snapshots),
        reclaimable=sum(content_index.blobs[d] for d in delete_blobs) + sum(s.size for s in doomed),
    )


def plan_usage(
    names: Mapping[str, Descriptor],
    content_index: ContentIndex,
    snapshots: Sequence[SnapshotInfo],
    in_use_chains: Collection[str],
    snapshot_usage: Usage,
    leases: Sequence[Lease] = (),
) -> DiskUsage:
    """The `system df` figures from what was read (pure). `names`: name -> target."""
    by_target: dict[str, tuple[Descriptor, list[str]]] = {}
    for name, target in sorted(names.items()):
        by_target.setdefault(str(target.digest), (target, []))[1].append(name)
    reached = {d: _reach([t], content_index).blobs for d, (t, _) in by_target.items()}
    holders: dict[str, int] = {}
    for blobs in reached.values():
        for digest in blobs:
            holders[digest] = holders.get(digest, 0) + 1
    images: list[ImageUsage] = []
    for digest, (_, image_names) in sorted(by_target.items()):
        blobs = reached[digest]
        size = sum(content_index.blobs[b] for b in blobs)
        shared = sum(content_index.blobs[b] for b in blobs if holders[b] > 1)
        images.append(ImageUsage(digest, tuple(image_names), size, shared, size - shared))
    roots = [t for t, _ in by_target.values()]
    plan = plan_gc(roots, content_index, snapshots, in_use_chains, leases)
    parents = {s.chain_id: s.parent for s in snapshots}
    in_use = _with_parents(in_use_chains, parents) & parents.keys()
    sizes = {s.chain_id: s.size for s in snapshots}
    reclaimable_blobs = sum(content_index.blobs[d] for d in plan.delete_blobs)
    return DiskUsage(
        images=tuple(images),
        images_size=sum(content_index.blobs[b] for b in holders),
        content_size=sum(content_index.blobs.values()),
        reclaimable=plan.reclaimable,
        reclaimable_blobs=reclaimable_blobs,
        reclaimable_snapshots=sum(sizes[c] for c in plan.delete_snapshots),
        snapshots=snapshot_usage,
        snapshots_count=len(snapshots),
        snapshots_in_use=len(in_use),
    )


# -- the edge: reading and applying --------------------------------------------------------


def read_index(
    content: ContentStore,
    roots: Sequence[Descriptor],
    blobs: Mapping[str, int] | None = None,
) -> ContentIndex:
    """Every blob with its size, and the documents reachable from `roots`, parsed.

    List the blobs (`blobs`, from `content.walk()`) before reading the names the
    roots come from: a blob written after the listing is then never deleted by
    a plan made from this index.
    """
    listed = dict(blobs) if blobs is not None else _walk(content)
    documents: dict[str, Any] = {}
    while True:
        unread = _reach(roots, ContentIndex(listed, documents)).unread
        if not unread:
            return ContentIndex(listed, documents)
        for digest in unread:
            try:
                documents[digest] = json.loads(content.read(digest))
            except NotFound:
                del listed[digest]  # deleted meanwhile: as if never there
            except ValueError:
                documents[digest] = None  # the planner reports it and deletes nothing


def _walk(content: ContentStore) -> dict[str, int]:
    return {str(d): size for d, size in content.walk()}


def _roots(images: ImageStore) -> dict[str, Descriptor]:
    return {str(image.reference): image.target for image in images.list()}


def collect(
    content: ContentStore,
    images: ImageStore,
    snapshots: Snapshotter,
    in_use_chains: Collection[str] = frozenset(),
    dry_run: bool = False,
    *,
    leases: LeaseManager | None = None,
    ingest_max_age: float | None = INGEST_MAX_AGE,
) -> GcResult:
    """Read, plan, and (unless `dry_run`) delete what nothing needs.

    `leases` defaults to `leases_for(content)`, where the importers write
    theirs. `ingest_max_age=None` keeps every ingest.
    """
    manager = leases if leases is not None else leases_for(content)
    stale: list[str] = []
    if not dry_run and ingest_max_age is not None:
        stale = content.prune_ingests(ingest_max_age)
    blobs = _walk(content)  # first: see read_index and agent.images.leases
    with manager.exclusive():
        held = manager.active()  # after the listing, before the names
        roots = list(_roots(images).values())
        index = read_index(content, [*roots, *lease_roots(held)], blobs)
        plan = plan_gc(roots, index, snapshots.list(), in_use_chains, held)
        if dry_run:
            return GcResult(plan, True, (), (), 0, ())
        result = _apply(plan, index, content, snapshots)
    return dataclasses.replace(result, removed_ingests=tuple(stale))


def _apply(
    plan: GcPlan, index: ContentIndex, content: ContentStore, snapshots: Snapshotter
) -> GcResult:
    removed_blobs: list[str] = []
    removed_snapshots: list[str] = []
    skipped: list[str] = []
    freed = 0
    for chain in plan.delete_snapshots:
        try:
            size = snapshots.stat(chain).size
            snapshots.remove(chain)
        except SnapshotNotFound:
            continue  # removed meanwhile
        except SnapshotInUse as e:
            skipped.append(str(e))  # built on meanwhile: it stays
            continue
        removed_snapshots.append(chain)
        freed += size
    for digest in plan.delete_blobs:
        try:
            content.delete(digest)
        except NotFound:
            continue
        removed_blobs.append(digest)
        freed += index.blobs[digest]
    return GcResult(
        plan, False, tuple(removed_blobs), tuple(removed_snapshots), freed, tuple(skipped)
    )


def disk_usage(
    content: ContentStore,
    images: ImageStore,
    snapshots: Snapshotter,
    in_use_chains: Collection[str] = frozenset(),
    *,
    leases: LeaseManager | None = None,
) -> DiskUsage:
    """What `system df` shows, read now (see DiskUsage); leased blobs are not reclaimable."""
    blobs = _walk(content)  # before the leases and the names: see read_index
    held = (leases if leases is not None else leases_for(content)).active()
    names = _roots(images)
    index = read_index(content, [*names.values(), *lease_roots(held)], blobs)
    return plan_usage(names, index, snapshots.list(), in_use_chains, snapshots.usage(), leases=held)

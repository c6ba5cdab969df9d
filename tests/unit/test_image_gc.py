"""The pure garbage-collection planner and `system df` accounting (no I/O, no root)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.content import Descriptor, Digest
from agent.images import media
from agent.images.gc import ContentIndex, GcPlan, plan_gc, plan_usage
from agent.images.leases import Lease
from agent.snapshots import SnapshotInfo, Usage, chain_id


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class World:
    """A content store and snapshotter described as plain data."""

    blobs: dict[str, int] = field(default_factory=dict)
    documents: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, SnapshotInfo] = field(default_factory=dict)
    # what the test knows independently of the planner: what each blob references
    children: dict[str, set[str]] = field(default_factory=dict)

    def index(self) -> ContentIndex:
        return ContentIndex(dict(self.blobs), dict(self.documents))

    def blob(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type=media_type, digest=Digest.of(data), size=len(data))
        self.blobs[str(desc.digest)] = len(data)
        self.children.setdefault(str(desc.digest), set())
        return desc

    def doc(self, doc: dict[str, Any], media_type: str, refs: list[Descriptor]) -> Descriptor:
        desc = self.blob(json.dumps(doc, sort_keys=True).encode(), media_type)
        self.documents[str(desc.digest)] = doc
        self.children[str(desc.digest)] |= {str(r.digest) for r in refs}
        return desc

    def layer(self, n: int) -> tuple[Descriptor, str]:
        """Layer n (gzip-compressed bytes, as stored) and its diff ID."""
        return self.blob(b"layer %d" % n * (n + 1), media.OCI_LAYER_GZIP), _sha(b"diff %d" % n)

    def image(self, layers: list[int], tag: str = "") -> Descriptor:
        descs, diff_ids = zip(*(self.layer(n) for n in layers), strict=True)
        config = self.doc(
            {"rootfs": {"type": "layers", "diff_ids": list(diff_ids)}, "tag": tag},
            media.OCI_CONFIG,
            [],
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": media.OCI_MANIFEST,
            "config": _json(config),
            "layers": [_json(d) for d in descs],
        }
        return self.doc(manifest, media.OCI_MANIFEST, [config, *descs])

    def index_of(self, manifests: list[Descriptor]) -> Descriptor:
        doc = {
            "schemaVersion": 2,
            "mediaType": media.OCI_INDEX,
            "manifests": [_json(m) for m in manifests],
        }
        return self.doc(doc, media.OCI_INDEX, manifests)

    def unpack(self, layers: list[int]) -> list[str]:
        """The snapshots of an image's layers, as the snapshotter would make them."""
        chains = chain_id([self.layer(n)[1] for n in layers])
        parent = None
        for chain, n in zip(chains, layers, strict=True):
            if chain not in self.snapshots:
                self.snapshots[chain] = SnapshotInfo(
                    chain_id=chain,
                    id=len(self.snapshots) + 1,
                    parent=parent,
                    diff_id=self.layer(n)[1],
                    size=1000 * (n + 1),
                    inodes=1,
                    created=0.0,
                )
            parent = chain
        return chains

    def plan(self, roots: list[Descriptor], in_use: set[str] | None = None) -> GcPlan:
        return plan_gc(roots, self.index(), list(self.snapshots.values()), in_use or set())

    def reachable(self, roots: list[Descriptor]) -> set[str]:
        seen: set[str] = set()
        pending = [str(r.digest) for r in roots]
        while pending:
            d = pending.pop()
            if d in seen or d not in self.blobs:
                continue
            seen.add(d)
            pending.extend(self.children[d])
        return seen


def _json(desc: Descriptor) -> dict[str, Any]:
    return desc.model_dump(mode="json", exclude_none=True)


def _blobs_of(world: World, manifest: Descriptor) -> set[str]:
    return world.reachable([manifest])


# -- examples ---------------------------------------------------------------------------


def test_shared_layer_survives_untagging_one_of_two_images() -> None:
    w = World()
    a = w.image([0, 1], "a")
    b = w.image([0, 2], "b")
    w.unpack([0, 1])
    w.unpack([0, 2])
    shared = str(w.layer(0)[0].digest)

    plan = w.plan([b])  # `a` untagged

    assert shared in plan.keep_blobs
    assert _blobs_of(w, b) <= plan.keep_blobs
    assert set(plan.delete_blobs) == _blobs_of(w, a) - _blobs_of(w, b)
    only_a = chain_id([w.layer(0)[1], w.layer(1)[1]])[1]
    assert plan.delete_snapshots == (only_a,)
    assert w.layer(0)[1] in plan.keep_snapshots  # the shared base snapshot
    assert plan.problems == ()


def test_untagging_both_frees_everything_children_before_parents() -> None:
    w = World()
    w.image([0, 1], "a")
    w.image([0, 2], "b")
    a_chains = w.unpack([0, 1])
    b_chains = w.unpack([0, 2])

    plan = w.plan([])

    assert set(plan.delete_blobs) == set(w.blobs)
    assert plan.keep_blobs == frozenset()
    assert set(plan.delete_snapshots) == set(a_chains) | set(b_chains)
    assert plan.delete_snapshots[-1] == a_chains[0]  # the base goes last
    assert plan.reclaimable == sum(w.blobs.values()) + sum(s.size for s in w.snapshots.values())


def test_an_index_keeps_its_child_manifests_and_their_blobs() -> None:
    w = World()
    amd64 = w.image([0], "amd64")
    arm64 = w.image([1], "arm64")
    idx = w.index_of([amd64, arm64])
    w.image([2], "stray")

    plan = w.plan([idx])

    assert _blobs_of(w, amd64) | _blobs_of(w, arm64) | {str(idx.digest)} == plan.keep_blobs
    assert str(w.layer(2)[0].digest) in plan.delete_blobs


def test_index_children_missing_from_the_store_are_not_a_problem() -> None:
    w = World()
    amd64 = w.image([0], "amd64")
    other = Descriptor(media_type=media.OCI_MANIFEST, digest=Digest.of(b"elsewhere"), size=9)
    idx = w.index_of([amd64, other])

    plan = w.plan([idx])

    assert plan.problems == ()
    assert plan.keep_blobs == _blobs_of(w, amd64) | {str(idx.digest)}


def test_snapshots_in_use_survive_with_their_parents() -> None:
    w = World()
    w.image([0, 1, 2], "a")
    chains = w.unpack([0, 1, 2])
    w.unpack([3])

    plan = w.plan([], in_use={chains[-1]})

    assert set(chains) <= plan.keep_snapshots
    assert plan.delete_snapshots == (w.layer(3)[1],)
    assert set(plan.delete_blobs) == set(w.blobs)  # blobs are not kept by snapshots


def test_a_parent_of_a_kept_snapshot_is_kept_even_if_its_image_is_gone() -> None:
    w = World()
    b = w.image([0, 1], "b")
    w.image([0], "a")
    chains = w.unpack([0, 1])

    plan = w.plan([b])

    assert set(chains) == plan.keep_snapshots
    assert plan.delete_snapshots == ()


def test_an_unreadable_manifest_stops_all_deletion() -> None:
    w = World()
    a = w.image([0], "a")
    w.image([1], "b")
    w.unpack([1])
    del w.documents[str(a.digest)]

    plan = w.plan([a])

    assert plan.delete_blobs == () and plan.delete_snapshots == ()
    assert plan.keep_blobs == frozenset(w.blobs)
    assert plan.problems == (f"{a.digest}: {media.OCI_MANIFEST} not read",)


def test_a_config_that_is_not_json_stops_all_deletion() -> None:
    w = World()
    a = w.image([0], "a")
    config = w.documents[str(a.digest)]["config"]["digest"]
    w.documents[config] = None
    w.image([1], "b")

    plan = w.plan([a])

    assert plan.delete_blobs == ()
    assert plan.problems == (f"{config}: {media.OCI_CONFIG} is not a JSON object",)


def test_usage_counts_shared_layers_once() -> None:
    w = World()
    a = w.image([5, 1], "a")
    b = w.image([5, 2], "b")
    stray = w.image([3], "stray")
    w.unpack([5, 1])
    w.unpack([3])
    size = dict(w.blobs)

    usage = plan_usage(
        {"docker.io/library/a:latest": a, "docker.io/library/b:latest": b, "x:1": a},
        w.index(),
        list(w.snapshots.values()),
        set(),
        Usage(size=123, inodes=4),
    )

    shared = size[str(w.layer(5)[0].digest)]
    by_digest = {i.digest: i for i in usage.images}
    assert by_digest[str(a.digest)].names == ("docker.io/library/a:latest", "x:1")
    for image in (a, b):
        u = by_digest[str(image.digest)]
        assert u.size == sum(size[d] for d in _blobs_of(w, image))
        assert u.shared_size == shared
        assert u.unique_size == u.size - shared
    assert usage.images_size == sum(size[d] for d in _blobs_of(w, a) | _blobs_of(w, b))
    assert usage.content_size == sum(size.values())
    assert usage.reclaimable_blobs == sum(size[d] for d in _blobs_of(w, stray))
    assert usage.reclaimable_snapshots == w.snapshots[w.layer(3)[1]].size
    assert usage.reclaimable == usage.reclaimable_blobs + usage.reclaimable_snapshots
    assert usage.snapshots == Usage(size=123, inodes=4)
    assert (usage.snapshots_count, usage.snapshots_in_use) == (3, 0)


# -- the safety property ----------------------------------------------------------------

layer_lists = st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)


@settings(max_examples=200, deadline=None)
@given(
    images=st.lists(layer_lists, min_size=1, max_size=5),
    indexes=st.lists(st.sets(st.integers(0, 4), min_size=1), max_size=2),
    unpacked=st.sets(st.integers(0, 4)),
    named=st.sets(st.integers(0, 6)),
    in_use=st.sets(st.integers(0, 4)),
)
def test_plan_keeps_exactly_what_names_and_containers_need(
    images: list[list[int]],
    indexes: list[set[int]],
    unpacked: set[int],
    named: set[int],
    in_use: set[int],
) -> None:
    w = World()
    manifests = [w.image(layers, f"i{i}") for i, layers in enumerate(images)]
    tops = [
        w.index_of([manifests[i] for i in sorted(members) if i < len(manifests)])
        for members in indexes
        if any(i < len(manifests) for i in members)
    ]
    chains = {i: w.unpack(images[i]) for i in sorted(unpacked) if i < len(images)}
    candidates = manifests + tops
    roots = [candidates[i] for i in sorted(named) if i < len(candidates)]
    used = {chains[i][-1] for i in in_use if i in chains}

    plan = w.plan(roots, used)

    assert plan.problems == ()
    # blobs: exactly the reachable ones are kept
    reachable = w.reachable(roots)
    assert plan.keep_blobs == reachable
    assert set(plan.delete_blobs) == set(w.blobs) - reachable
    # snapshots: kept are exactly those of named images' layers and those in use, with parents
    needed: set[str] = set(used)
    for root in roots:
        for d in w.reachable([root]):
            doc = w.documents.get(d)
            if isinstance(doc, dict) and "rootfs" in doc:
                needed |= set(chain_id(doc["rootfs"]["diff_ids"]))
    closure: set[str] = set()
    for c in needed & w.snapshots.keys():
        current: str | None = c
        while current is not None:
            closure.add(current)
            current = w.snapshots[current].parent
    assert plan.keep_snapshots == closure
    assert set(plan.delete_snapshots) == set(w.snapshots) - closure
    # order: a snapshot is deleted before its parent, and never while a child is kept
    position = {c: i for i, c in enumerate(plan.delete_snapshots)}
    for c in plan.delete_snapshots:
        parent = w.snapshots[c].parent
        if parent is not None and parent in position:
            assert position[c] < position[parent]
    for kept in plan.keep_snapshots:
        parent = w.snapshots[kept].parent
        assert parent is None or parent in plan.keep_snapshots


def test_leases_are_roots_like_names() -> None:
    w = World()
    tagged = w.image([0], "tagged")
    pulling = w.image([1, 2], "pulling")  # leased as a manifest: keeps its config and layers
    untyped = w.image([3], "untyped")  # leased without a media type: keeps only itself
    loose = w.layer(7)[0]  # a layer written before its manifest
    garbage = w.image([4], "garbage")
    kept_chains = w.unpack([5, 6])
    gone_chains = w.unpack([4])
    absent = Digest.of(b"not written yet")
    lease = Lease(
        None,
        "l1",
        created=0.0,
        expires=1e12,
        blobs={
            str(pulling.digest): media.OCI_MANIFEST,
            str(untyped.digest): None,
            str(loose.digest): media.OCI_LAYER_GZIP,
            str(absent): None,
        },
        snapshots={kept_chains[-1]},  # the top one: its parent stays with it
    )
    plan = plan_gc([tagged], w.index(), list(w.snapshots.values()), leases=[lease])
    assert plan.problems == ()
    assert plan.keep_blobs == w.reachable([tagged, pulling]) | {
        str(untyped.digest),
        str(loose.digest),
    }
    assert set(kept_chains) <= plan.keep_snapshots
    assert set(plan.delete_snapshots) == set(gone_chains)
    assert w.reachable([garbage]) <= set(plan.delete_blobs)
    untyped_parts = w.reachable([untyped]) - {str(untyped.digest)}
    assert untyped_parts <= set(plan.delete_blobs)
    assert str(absent) not in plan.delete_blobs
    # without the lease, the same world loses all of it
    bare = plan_gc([tagged], w.index(), list(w.snapshots.values()))
    assert w.reachable([pulling]) | {str(loose.digest)} <= set(bare.delete_blobs)
    assert set(kept_chains) <= set(bare.delete_snapshots)

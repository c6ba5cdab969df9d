"""Garbage collection over real stores: imported images, unpacked overlay snapshots."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agent.content import ContentStore, Descriptor
from agent.images import media
from agent.images.gc import INGEST_MAX_AGE, collect, disk_usage
from agent.images.importer import import_rootfs
from agent.images.leases import LeaseManager
from agent.images.reference import parse
from agent.images.store import ImageStore
from agent.snapshots import OverlaySnapshotter, SnapshotNotFound


def _tree(root: Path, name: str) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / name).write_text(f"{name}\n" * 1000)
    return root


def _put(content: ContentStore, doc: object, media_type: str) -> Descriptor:
    desc = content.put(json.dumps(doc, sort_keys=True).encode())
    return desc.model_copy(update={"media_type": media_type})


def _json(content: ContentStore, digest: str) -> dict[str, object]:
    doc = json.loads(content.read(digest))
    assert isinstance(doc, dict)
    return doc


class Stores:
    def __init__(self, root: Path) -> None:
        self.content = ContentStore(root / "content")
        self.images = ImageStore(root / "images", self.content)
        self.snapshots = OverlaySnapshotter(str(root / "snapshots"))

    def parts(self, name: str) -> tuple[str, str, list[dict[str, str]], list[str]]:
        """manifest digest, config digest, layer descriptors, diff IDs of an image."""
        target = self.images.get(name).target
        manifest = _json(self.content, target.digest)
        config_desc = manifest["config"]
        assert isinstance(config_desc, dict)
        config = _json(self.content, config_desc["digest"])
        rootfs = config["rootfs"]
        layers = manifest["layers"]
        assert isinstance(rootfs, dict) and isinstance(layers, list)
        return target.digest, config_desc["digest"], layers, rootfs["diff_ids"]

    def tag_by_hand(self, name: str, layers: list[dict[str, str]], diff_ids: list[str]) -> str:
        """A manifest reusing existing layer blobs; returns its digest."""
        config = _put(
            self.content,
            {"architecture": "amd64", "os": "linux", "created": name,
             "rootfs": {"type": "layers", "diff_ids": diff_ids}},
            media.OCI_CONFIG,
        )  # fmt: skip
        manifest = _put(
            self.content,
            {
                "schemaVersion": 2,
                "mediaType": media.OCI_MANIFEST,
                "config": config.model_dump(mode="json", exclude_none=True),
                "layers": layers,
            },
            media.OCI_MANIFEST,
        )
        self.images.tag(name, manifest)
        return manifest.digest

    def unpack(self, name: str) -> list[str]:
        _, _, layers, diff_ids = self.parts(name)
        chains: list[str] = []
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            with self.content.open(layer["digest"]) as blob:
                parent = chains[-1] if chains else None
                chains.append(self.snapshots.unpack(parent, blob, layer["mediaType"], diff_id))
        return chains

    def blobs(self) -> set[str]:
        return {str(d) for d, _ in self.content.walk()}

    def chains(self) -> set[str]:
        return {s.chain_id for s in self.snapshots.list()}


def test_collect_frees_what_no_name_or_container_needs(tmp_path: Path) -> None:
    s = Stores(tmp_path / "data")
    import_rootfs(s.content, s.images, str(_tree(tmp_path / "a", "a")), parse("a"))
    import_rootfs(s.content, s.images, str(_tree(tmp_path / "b", "b")), parse("b"))
    manifest_a, config_a, (layer_a,), (diff_a,) = s.parts("a")
    manifest_b, config_b, (layer_b,), (diff_b,) = s.parts("b")
    manifest_c = s.tag_by_hand("c", [layer_a], [diff_a])  # shares a's layer
    manifest_d = s.tag_by_hand("d", [layer_a, layer_b], [diff_a, diff_b])  # two layers
    config_c, config_d = s.parts("c")[1], s.parts("d")[1]
    assert s.unpack("a") == s.unpack("c") == [diff_a]
    (chain_b,) = s.unpack("b")
    d_base, d_top = s.unpack("d")
    assert d_base == diff_a
    everything = s.blobs()

    # all named: nothing to collect; a, c and d share a's layer
    usage = disk_usage(s.content, s.images, s.snapshots)
    by_name = {i.names[0]: i for i in usage.images}
    size_a = s.content.size(layer_a["digest"])
    assert by_name["docker.io/library/a:latest"].shared_size == size_a
    assert by_name["docker.io/library/d:latest"].shared_size == size_a + s.content.size(
        layer_b["digest"]
    )
    assert usage.images_size == usage.content_size == sum(s.content.size(d) for d in everything)
    assert usage.reclaimable == 0
    assert usage.snapshots == s.snapshots.usage() and usage.snapshots_count == 3
    result = collect(s.content, s.images, s.snapshots)
    assert (result.removed_blobs, result.removed_snapshots) == ((), ())

    # untag a: its manifest and config go, its layer and snapshot stay (c and d use them)
    s.images.untag("a")
    result = collect(s.content, s.images, s.snapshots)
    assert set(result.removed_blobs) == {manifest_a, config_a}
    assert result.removed_snapshots == ()
    assert s.blobs() == everything - {manifest_a, config_a}
    assert s.content.fsck() == []

    # untag c and d while a container runs on d: d's blobs go, its snapshots stay
    s.images.untag("c")
    s.images.untag("d")
    result = collect(s.content, s.images, s.snapshots, in_use_chains={d_top})
    assert set(result.removed_blobs) == {
        manifest_c,
        config_c,
        manifest_d,
        config_d,
        layer_a["digest"],
    }
    assert s.blobs() == {manifest_b, config_b, layer_b["digest"]}
    assert s.chains() == {d_base, d_top, chain_b}
    assert s.content.fsck() == []

    # the container is gone: a dry run says what would go and removes nothing
    usage = disk_usage(s.content, s.images, s.snapshots)
    dry = collect(s.content, s.images, s.snapshots, dry_run=True)
    assert dry.plan.delete_snapshots == (d_top, d_base)  # the child first
    assert dry.removed_snapshots == () and s.chains() == {d_base, d_top, chain_b}
    assert (
        usage.reclaimable
        == dry.plan.reclaimable
        == sum(s.snapshots.stat(c).size for c in (d_top, d_base))
    )

    result = collect(s.content, s.images, s.snapshots)
    assert result.removed_snapshots == (d_top, d_base)
    assert result.freed == dry.plan.reclaimable
    assert s.chains() == {chain_b}
    with pytest.raises(SnapshotNotFound):
        s.snapshots.stat(d_base)

    # untag b: the store ends empty
    s.images.untag("b")
    result = collect(s.content, s.images, s.snapshots)
    assert set(result.removed_blobs) == {manifest_b, config_b, layer_b["digest"]}
    assert s.blobs() == set() and s.chains() == set()
    assert s.content.fsck() == []
    assert disk_usage(s.content, s.images, s.snapshots).content_size == 0


def test_leased_snapshots_and_blobs_survive_collect_until_the_lease_ends(tmp_path: Path) -> None:
    s = Stores(tmp_path / "data")
    import_rootfs(s.content, s.images, str(_tree(tmp_path / "a", "a")), parse("a"))
    (chain,) = s.unpack("a")
    manifest, config, (layer,), _ = s.parts("a")
    s.images.untag("a")
    manager = LeaseManager(tmp_path / "data" / "leases")
    with manager.lease() as lease:
        lease.add_snapshot(chain)  # say, an unpack that is not yet a container
        lease.add_blob(manifest, media.OCI_MANIFEST)  # keeps its config and layer
        result = collect(s.content, s.images, s.snapshots, leases=manager)
        assert (result.removed_blobs, result.removed_snapshots) == ((), ())
        assert disk_usage(s.content, s.images, s.snapshots, leases=manager).reclaimable == 0
    result = collect(s.content, s.images, s.snapshots, leases=manager)
    assert set(result.removed_blobs) == {manifest, config, layer["digest"]}
    assert result.removed_snapshots == (chain,)


def test_collect_drops_stale_ingests_but_not_fresh_or_held_ones(tmp_path: Path) -> None:
    s = Stores(tmp_path / "data")
    for ref in ("stale", "fresh", "held"):
        with s.content.writer(ref=ref) as w:
            w.write(b"partial")
    day_ago = time.time() - INGEST_MAX_AGE - 60
    for ref in ("stale", "held"):
        os.utime(s.content.ingest_dir(ref) / "data", (day_ago, day_ago))
    with s.content.writer(ref="held"):
        dry = collect(s.content, s.images, s.snapshots, dry_run=True)
        assert dry.removed_ingests == () and len(s.content.ingests()) == 3
        result = collect(s.content, s.images, s.snapshots)
    assert result.removed_ingests == ("stale",)
    assert [i.ref for i in s.content.ingests()] == ["fresh", "held"]
    kept = collect(s.content, s.images, s.snapshots, ingest_max_age=None)
    assert kept.removed_ingests == () and len(s.content.ingests()) == 2

"""Leases: the files themselves, and `collect` run between "blobs written" and "tagged".

The race tests are deterministic: an image store whose `tag()` first runs
`gc.collect` puts the collection exactly in the window a lease has to cover
(every blob of the image written, its name not yet there). Each has a control
that runs the same collection without seeing the lease, to show that the
window is real and the test would catch its return.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import pytest

from agent.content import ContentStore, Descriptor, Digest
from agent.images.archive import load, save
from agent.images.gc import GcResult, collect
from agent.images.importer import import_rootfs
from agent.images.leases import LeaseManager, leases_for
from agent.images.reference import Reference, parse
from agent.images.store import Image, ImageNotFound, ImageStore
from agent.snapshots import OverlaySnapshotter

BLOB = str(Digest.of(b"blob"))
OTHER = str(Digest.of(b"other"))


# -- the lease files -------------------------------------------------------------------


def test_a_lease_is_on_disk_while_held_and_gone_after(tmp_path: Path) -> None:
    manager = LeaseManager(tmp_path / "leases")
    with manager.lease() as lease:
        lease.add_blob(BLOB, "application/vnd.oci.image.manifest.v1+json")
        lease.add_snapshot("sha256:" + "c" * 64)
        # persisted when add_* returned: another manager (another process) sees it
        [seen] = LeaseManager(tmp_path / "leases").active()
        assert seen.id == lease.id
        assert seen.blobs == {BLOB: "application/vnd.oci.image.manifest.v1+json"}
        assert seen.snapshots == {"sha256:" + "c" * 64}
        doc = json.loads((tmp_path / "leases" / f"{lease.id}.json").read_text())
        assert doc["blobs"] == {BLOB: "application/vnd.oci.image.manifest.v1+json"}
    assert manager.active() == []
    assert list((tmp_path / "leases").glob("*.json")) == []


def test_a_lease_ends_also_when_the_block_fails(tmp_path: Path) -> None:
    manager = LeaseManager(tmp_path)
    with pytest.raises(RuntimeError), manager.lease() as lease:
        lease.add_blob(BLOB)
        raise RuntimeError("import failed")
    assert manager.active() == []


def test_expired_leases_count_for_nothing_and_are_removed(tmp_path: Path) -> None:
    manager = LeaseManager(tmp_path)
    with manager.lease(expires_in=60) as short, manager.lease() as long:
        short.add_blob(BLOB)
        long.add_blob(OTHER)
        assert {x.id for x in manager.active()} == {short.id, long.id}
        later = time.time() + 120
        assert [x.id for x in manager.active(now=later)] == [long.id]
        assert not (tmp_path / f"{short.id}.json").exists()


def test_a_media_type_learnt_later_is_recorded(tmp_path: Path) -> None:
    manager = LeaseManager(tmp_path)
    with manager.lease() as lease:
        lease.add_blob(BLOB)
        lease.add_blob(BLOB, "application/vnd.oci.image.index.v1+json")
        lease.add_blob(BLOB)  # no type given: the known one stays
        [seen] = manager.active()
        assert seen.blobs == {BLOB: "application/vnd.oci.image.index.v1+json"}


def test_copies_read_by_active_are_read_only_and_digests_are_checked(tmp_path: Path) -> None:
    manager = LeaseManager(tmp_path)
    with manager.lease() as lease:
        with pytest.raises(ValueError, match="invalid digest"):
            lease.add_blob("md5:abc")
        [copy] = manager.active()
        with pytest.raises(ValueError, match="cannot be changed"):
            copy.add_blob(BLOB)


def test_strays_in_the_lease_directory_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "junk.json").write_text("not json")
    (tmp_path / "half.json").write_text('{"id": "x"}')
    assert LeaseManager(tmp_path).active() == []


def test_adding_to_a_lease_waits_while_collect_holds_the_leases(tmp_path: Path) -> None:
    manager = LeaseManager(tmp_path)
    with manager.lease() as lease:
        done = threading.Event()

        def add() -> None:
            lease.add_blob(BLOB)
            done.set()

        with manager.exclusive():
            worker = threading.Thread(target=add)
            worker.start()
            assert not done.wait(0.2)  # blocked behind collect's lock
            assert manager.active()[0].blobs == {}
        worker.join(5)
        assert done.is_set()
        assert manager.active()[0].blobs == {BLOB: None}


def test_default_lease_directory_is_beside_the_content_store(tmp_path: Path) -> None:
    content = ContentStore(tmp_path / "data" / "content")
    assert leases_for(content).root == tmp_path / "data" / "leases"


# -- collect in the window ---------------------------------------------------------------


class CollectBeforeTag(ImageStore):
    """Runs `gc.collect` right before each tag: every blob written, no name yet.

    `gc_leases` is what collect reads (default: where the writers write theirs);
    `collecting` off makes it a plain image store.
    """

    def __init__(self, root: Path, gc_leases: LeaseManager | None = None) -> None:
        content = ContentStore(root / "content")
        super().__init__(root / "images", content)
        self.snapshots = OverlaySnapshotter(str(root / "snapshots"))
        self.gc_leases = gc_leases
        self.collecting = True
        self.results: list[GcResult] = []

    def tag(
        self, ref: Reference | str, target: Descriptor, *, repo_digest: str | None = None
    ) -> Image:
        if self.collecting:
            gc = collect(self.content, self, self.snapshots, leases=self.gc_leases)
            self.results.append(gc)
        return super().tag(ref, target, repo_digest=repo_digest)


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("box\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(bytes(range(256)) * 64)
    return root


def _parts(content: ContentStore, manifest_digest: str) -> set[str]:
    manifest = json.loads(content.read(manifest_digest))
    return {
        manifest_digest,
        manifest["config"]["digest"],
        *(layer["digest"] for layer in manifest["layers"]),
    }


def _intact(images: ImageStore, name: str) -> set[str]:
    """The blobs of `name`, asserting every one is in the store."""
    content = images.content
    parts = _parts(content, images.get(name).target.digest)
    assert all(content.has(d) for d in parts)
    assert content.fsck() == []
    return parts


def test_import_keeps_its_blobs_from_a_collect_before_the_tag(tmp_path: Path) -> None:
    images = CollectBeforeTag(tmp_path / "data")
    import_rootfs(images.content, images, str(_tree(tmp_path / "rootfs")), parse("app"))
    [during] = images.results
    assert during.removed_blobs == ()
    parts = _intact(images, "app")
    assert parts <= during.plan.keep_blobs  # kept as leased, not by luck
    assert leases_for(images.content).active() == []  # the lease ended after the tag
    after = collect(images.content, images, images.snapshots)
    assert after.removed_blobs == () and _intact(images, "app") == parts


def test_without_the_lease_the_same_collect_takes_the_import(tmp_path: Path) -> None:
    # The control: collect that does not see the importer's lease deletes everything.
    images = CollectBeforeTag(tmp_path / "data", gc_leases=LeaseManager(tmp_path / "elsewhere"))
    with pytest.raises(ImageNotFound, match="not in the content store"):
        import_rootfs(images.content, images, str(_tree(tmp_path / "rootfs")), parse("app"))
    [during] = images.results
    assert len(during.removed_blobs) == 3  # layer, config, manifest: nothing left to tag
    assert list(images.content.walk()) == []


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_load_keeps_its_blobs_from_a_collect_before_the_tag(tmp_path: Path, fmt: str) -> None:
    src = ImageStore(tmp_path / "src" / "images", ContentStore(tmp_path / "src" / "content"))
    import_rootfs(src.content, src, str(_tree(tmp_path / "rootfs")), parse("app:v1"))
    archive = io.BytesIO()
    save(src.content, src, ["app:v1"], archive, format=fmt)  # type: ignore[arg-type]

    dst = CollectBeforeTag(tmp_path / "dst")
    [image] = load(dst.content, dst, io.BytesIO(archive.getvalue()))
    assert [r.removed_blobs for r in dst.results] == [()]
    assert _intact(dst, "app:v1") == _parts(src.content, image.target.digest)
    assert leases_for(dst.content).active() == []


def test_load_keeps_a_blob_that_was_already_there_and_unreferenced(tmp_path: Path) -> None:
    # The layer is in the store already, garbage (its image was untagged): load
    # does not write it again, so only the lease stands between it and collect.
    tree = str(_tree(tmp_path / "rootfs"))
    src = ImageStore(tmp_path / "src" / "images", ContentStore(tmp_path / "src" / "content"))
    import_rootfs(src.content, src, tree, parse("app:v1"), cmd=["tool"])
    archive = io.BytesIO()
    save(src.content, src, ["app:v1"], archive, format="oci")

    dst = CollectBeforeTag(tmp_path / "dst")
    dst.collecting = False
    old = import_rootfs(dst.content, dst, tree, parse("old"))  # same layer, other config
    dst.untag("old")
    old_parts = _parts(dst.content, old.target.digest)
    layer = old_parts & _parts(src.content, src.get("app:v1").target.digest)
    assert len(layer) == 1 and dst.content.has(next(iter(layer)))
    dst.collecting = True
    load(dst.content, dst, io.BytesIO(archive.getvalue()))
    during = dst.results[-1]
    assert layer <= during.plan.keep_blobs
    assert set(during.removed_blobs) == old_parts - layer  # the old config and manifest
    _intact(dst, "app:v1")

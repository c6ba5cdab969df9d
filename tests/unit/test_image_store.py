"""Image names over the content store, and `import` of a root filesystem."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from agent.content import ContentStore, Descriptor, Digest
from agent.images import media
from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.store import ImageNotFound, ImageStore


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ContentStore, ImageStore]:
    content = ContentStore(tmp_path / "content")
    return content, ImageStore(tmp_path / "images", content)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc" / "hostname").write_text("box\n")
    (root / "bin" / "link").symlink_to("tool")
    return root


def _manifest(content: ContentStore, desc: Descriptor) -> dict[str, object]:
    doc = json.loads(content.read(desc.digest))
    assert isinstance(doc, dict)
    return doc


def test_import_directory(stores: tuple[ContentStore, ImageStore], tree: Path) -> None:
    content, images = stores
    image = import_rootfs(content, images, str(tree), parse("box:1"), cmd=["sh"])
    assert image.reference.familiar() == "box:1"
    assert image.target.media_type == media.OCI_MANIFEST
    manifest = _manifest(content, image.target)
    layer = manifest["layers"][0]  # type: ignore[index]
    assert layer["mediaType"] == media.OCI_LAYER_GZIP
    config = json.loads(content.read(manifest["config"]["digest"]))  # type: ignore[index]
    assert config["config"]["Cmd"] == ["sh"]
    raw = gzip.decompress(content.read(layer["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
    assert names == ["bin", "bin/link", "bin/tool", "etc", "etc/hostname"]
    assert content.fsck() == []


def test_same_tree_same_layer(stores: tuple[ContentStore, ImageStore], tree: Path) -> None:
    content, images = stores
    a = _manifest(content, import_rootfs(content, images, str(tree), parse("a")).target)
    b = _manifest(content, import_rootfs(content, images, str(tree), parse("b")).target)
    assert a["layers"] == b["layers"]


def test_import_tarball(stores: tuple[ContentStore, ImageStore], tmp_path: Path) -> None:
    content, images = stores
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"hello\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    (tmp_path / "fs.tar.gz").write_bytes(gzip.compress(raw))
    image = import_rootfs(content, images, str(tmp_path / "fs.tar.gz"), parse("t:gz"))
    manifest = _manifest(content, image.target)
    config = json.loads(content.read(manifest["config"]["digest"]))  # type: ignore[index]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]


def test_import_refuses_what_is_not_a_tarball(
    stores: tuple[ContentStore, ImageStore], tmp_path: Path
) -> None:
    content, images = stores
    (tmp_path / "junk").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ValueError, match="not a tar archive"):
        import_rootfs(content, images, str(tmp_path / "junk"), parse("junk"))
    assert list(content.walk()) == []  # nothing half-stored
    with pytest.raises(FileNotFoundError):
        import_rootfs(content, images, str(tmp_path / "missing"), parse("m"))


def test_tag_get_list_untag(stores: tuple[ContentStore, ImageStore], tree: Path) -> None:
    content, images = stores
    image = import_rootfs(content, images, str(tree), parse("box"))
    images.tag("localhost:5000/box:v2", image.target)
    assert images.get("box:latest").target == image.target
    assert images.get("docker.io/library/box").target == image.target
    assert [i.reference.familiar() for i in images.list()] == [
        "box:latest",
        "localhost:5000/box:v2",
    ]
    assert len(images.names_of(image.target.digest)) == 2
    images.untag("box")
    with pytest.raises(ImageNotFound, match="no such image: box:latest"):
        images.get("box")


def test_tag_needs_a_stored_manifest(stores: tuple[ContentStore, ImageStore]) -> None:
    _, images = stores
    ghost = Descriptor(media_type=media.OCI_MANIFEST, digest=Digest.of(b"ghost"), size=5)
    with pytest.raises(ImageNotFound, match="not in the content store"):
        images.tag("ghost", ghost)
    layer = Descriptor(media_type=media.OCI_LAYER, digest=Digest.of(b"x"), size=1)
    with pytest.raises(ValueError, match="is not a manifest or index"):
        images.tag("layer", layer)


def test_busybox_image_command(tmp_path: Path) -> None:
    import shutil

    from agent.images import busybox

    if not Path(busybox.BUSYBOX).exists() or shutil.which("busybox") is None:
        pytest.skip("busybox-static is not installed")
    assert busybox.main(["--image", "--data-root", str(tmp_path), "--name", "bb:1"]) == 0
    content = ContentStore(tmp_path / "content")
    image = ImageStore(tmp_path / "images", content).get("bb:1")
    manifest = json.loads(content.read(image.target.digest))
    config = json.loads(content.read(manifest["config"]["digest"]))
    assert config["config"]["Cmd"] == ["sh"]
    assert content.fsck() == []
    assert busybox.main(["--image", "--bogus", "x"]) == 2

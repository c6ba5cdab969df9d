"""Our `save` beside skopeo: it reads our archives, and we read its layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agent.content import ContentStore
from agent.images.archive import load, save
from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.store import ImageStore
from tests.conftest import skopeo

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


@pytest.fixture
def image(tmp_path: Path) -> tuple[ContentStore, ImageStore, dict[str, object]]:
    tree = tmp_path / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("box\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "tool").write_bytes(bytes(range(256)) * 64)
    content = ContentStore(tmp_path / "src" / "content")
    images = ImageStore(tmp_path / "src" / "images", content)
    img = import_rootfs(content, images, str(tree), parse("example.com/app:v1"), cmd=["tool"])
    manifest = json.loads(content.read(img.target.digest))
    return content, images, manifest


def saved(src: tuple[ContentStore, ImageStore, object], path: Path, fmt: str) -> Path:
    with open(path, "wb") as f:
        save(src[0], src[1], ["example.com/app:v1"], f, format=fmt)  # type: ignore[arg-type]
    return path


def config_of(raw: str) -> str:
    return str(json.loads(raw)["config"]["digest"])


def test_skopeo_inspects_our_docker_archive(image: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, _, manifest = image
    archive = saved(image, tmp_path / "d.tar", "docker")
    raw = skopeo("inspect", "--raw", f"docker-archive:{archive}")
    assert config_of(raw) == manifest["config"]["digest"]
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}"))
    # docker-archive presents layers uncompressed: their digests are the diff_ids.
    assert [d["digest"] for d in json.loads(raw)["layers"]] == config["rootfs"]["diff_ids"]
    tagged = json.loads(skopeo("inspect", f"docker-archive:{archive}:example.com/app:v1"))
    assert tagged["Layers"] == config["rootfs"]["diff_ids"]


def test_skopeo_inspects_our_oci_archive(image: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    content, images, manifest = image
    archive = saved(image, tmp_path / "o.tar", "oci")
    raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:v1")
    assert json.loads(raw) == manifest  # the very manifest, byte for byte as JSON
    info = json.loads(skopeo("inspect", f"oci-archive:{archive}:v1"))
    assert info["Digest"] == images.get("example.com/app:v1").target.digest
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert content.fsck() == []


def test_skopeo_copy_to_oci_layout_loads_back(image: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    content, _, manifest = image
    archive = saved(image, tmp_path / "d.tar", "docker")
    layout = tmp_path / "layout"
    skopeo("copy", "-q", f"docker-archive:{archive}", f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())

    dst = ContentStore(tmp_path / "dst" / "content")
    dst_images = ImageStore(tmp_path / "dst" / "images", dst)
    result = load(dst, dst_images, layout, name="example.com/app")
    [img] = result
    assert str(img.reference) == "example.com/app:v1"
    assert img.target.digest == index["manifests"][0]["digest"]
    loaded = json.loads(dst.read(img.target.digest))
    # Converting docker-archive to OCI, skopeo re-serialises the config (other key
    # order, so another digest) and uncompresses the layer: same content, same diff_ids.
    ours = json.loads(content.read(manifest["config"]["digest"]))
    assert json.loads(dst.read(loaded["config"]["digest"])) == ours
    for layer, diff_id in zip(loaded["layers"], ours["rootfs"]["diff_ids"], strict=True):
        assert dst.has(layer["digest"])
        if layer["mediaType"].endswith(".tar"):
            assert layer["digest"] == diff_id
    assert dst.fsck() == []


def test_skopeo_copy_of_our_oci_archive_keeps_the_manifest(image: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, images, _ = image
    archive = saved(image, tmp_path / "o.tar", "oci")
    layout = tmp_path / "layout"
    skopeo("copy", "-q", f"oci-archive:{archive}:v1", f"oci:{layout}:v1")
    dst = ContentStore(tmp_path / "dst" / "content")
    dst_images = ImageStore(tmp_path / "dst" / "images", dst)
    [img] = load(dst, dst_images, layout, name="example.com/app")
    assert img.target.digest == images.get("example.com/app:v1").target.digest
    # and our own save of what we loaded is readable by skopeo again
    again = tmp_path / "again.tar"
    with open(again, "wb") as f:
        save(dst, dst_images, ["example.com/app:v1"], f, format="docker")
    assert config_of(skopeo("inspect", "--raw", f"docker-archive:{again}"))

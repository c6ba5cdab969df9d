"""`save`/`load` of docker-save and OCI archives, through the content store."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from agent.content import ContentStore, Digest
from agent.images import media
from agent.images.archive import (
    ArchiveError,
    CorruptBlob,
    UnknownMediaType,
    UnsafePath,
    load,
    save,
)
from agent.images.importer import import_rootfs, platform_architecture
from agent.images.reference import parse
from agent.images.store import ImageNotFound, ImageStore

Stores = tuple[ContentStore, ImageStore]


def stores(root: Path) -> Stores:
    content = ContentStore(root / "content")
    return content, ImageStore(root / "images", content)


@pytest.fixture
def source(tmp_path: Path) -> Stores:
    tree = tmp_path / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("box\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "tool").write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    content, images = stores(tmp_path / "src")
    image = import_rootfs(content, images, str(tree), parse("example.com/app:v1"), cmd=["tool"])
    images.tag("busybox:latest", image.target)
    return content, images


def saved(src: Stores, fmt: str, refs: list[str] | None = None) -> bytes:
    out = io.BytesIO()
    save(*src, refs or ["example.com/app:v1", "busybox"], out, format=fmt)  # type: ignore[arg-type]
    return out.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def make_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- save


def test_oci_save_is_a_layout_with_named_entries(source: Stores) -> None:
    files = members(saved(source, "oci"))
    target = source[1].get("busybox").target
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert [m["annotations"] for m in index["manifests"]] == [
        {
            "io.containerd.image.name": "example.com/app:v1",
            "org.opencontainers.image.ref.name": "v1",
        },
        {
            "io.containerd.image.name": "docker.io/library/busybox:latest",
            "org.opencontainers.image.ref.name": "latest",
        },
    ]
    assert {m["digest"] for m in index["manifests"]} == {target.digest}
    manifest = json.loads(files[f"blobs/sha256/{target.digest.encoded}"])
    blobs = {n for n in files if n.startswith("blobs/")}
    wanted = [target.digest, manifest["config"]["digest"], manifest["layers"][0]["digest"]]
    assert blobs == {f"blobs/sha256/{Digest(d).encoded}" for d in wanted}
    for name in blobs:
        assert sha(files[name]) == name.rsplit("/", 1)[1]
    assert "manifest.json" not in files


def test_docker_save_has_both_views_over_the_same_blobs(source: Stores) -> None:
    files = members(saved(source, "docker"))
    manifest = json.loads(files[f"blobs/sha256/{source[1].get('busybox').target.digest.encoded}"])
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": f"blobs/sha256/{Digest(manifest['config']['digest']).encoded}",
            "RepoTags": ["example.com/app:v1", "busybox:latest"],
            "Layers": [f"blobs/sha256/{Digest(manifest['layers'][0]['digest']).encoded}"],
        }
    ]
    assert "index.json" in files and "oci-layout" in files


def test_save_is_deterministic(source: Stores) -> None:
    data = saved(source, "docker")
    assert data == saved(source, "docker")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(i.name for i in infos)
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}


def test_save_of_an_unknown_image_is_refused(source: Stores) -> None:
    with pytest.raises(ImageNotFound):
        saved(source, "oci", ["nothere"])


# -- round trips


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_round_trip_keeps_digests_and_tags(source: Stores, tmp_path: Path, fmt: str) -> None:
    content, images = stores(tmp_path / "dst")
    loaded = load(content, images, io.BytesIO(saved(source, fmt)))
    want = {str(i.reference): i.target for i in source[1].list()}
    assert {str(i.reference): i.target.digest for i in loaded} == {
        k: v.digest for k, v in want.items()
    }
    assert {str(i.reference): i.target.digest for i in images.list()} == {
        k: v.digest for k, v in want.items()
    }
    assert loaded.untagged == []
    assert {d for d, _ in content.walk()} == {d for d, _ in source[0].walk()}
    assert content.fsck() == []


def test_load_from_a_path_and_from_a_layout_directory(source: Stores, tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    archive.write_bytes(saved(source, "oci"))
    content, images = stores(tmp_path / "a")
    assert len(load(content, images, archive)) == 2
    layout = tmp_path / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    content, images = stores(tmp_path / "b")
    loaded = load(content, images, layout)
    assert sorted(i.reference.familiar() for i in loaded) == [
        "busybox:latest",
        "example.com/app:v1",
    ]


def test_load_of_a_gzipped_archive(source: Stores, tmp_path: Path) -> None:
    import gzip

    content, images = stores(tmp_path / "dst")
    assert len(load(content, images, io.BytesIO(gzip.compress(saved(source, "docker"))))) == 2


def test_bare_tag_needs_a_name(source: Stores, tmp_path: Path) -> None:
    files = members(saved(source, "oci", ["example.com/app:v1"]))
    index = json.loads(files["index.json"])
    del index["manifests"][0]["annotations"]["io.containerd.image.name"]
    files["index.json"] = json.dumps(index).encode()
    data = make_tar(files)
    content, images = stores(tmp_path / "dst")
    result = load(content, images, io.BytesIO(data))
    assert list(result) == [] and len(result.untagged) == 1
    assert images.list() == []
    named = load(content, images, io.BytesIO(data), name="registry.local/thing")
    assert [str(i.reference) for i in named] == ["registry.local/thing:v1"]


# -- old docker-save archives


def old_docker_archive(source: Stores, compress: bool = False) -> tuple[bytes, str]:
    content, images = source
    target = images.get("busybox").target
    manifest = json.loads(content.read(target.digest))
    config = content.read(manifest["config"]["digest"])
    layer = content.read(manifest["layers"][0]["digest"])
    if not compress:
        import gzip

        layer = gzip.decompress(layer)
    files = {
        "manifest.json": json.dumps(
            [
                {
                    "Config": f"{sha(config)}.json",
                    "RepoTags": ["busybox:latest"],
                    "Layers": ["abc123/layer.tar"],
                }
            ]
        ).encode(),
        f"{sha(config)}.json": config,
        "abc123/layer.tar": layer,
        "abc123/VERSION": b"1.0",
        "repositories": b"{}",
    }
    return make_tar(files), manifest["config"]["digest"]


@pytest.mark.parametrize("compress", [False, True])
def test_old_docker_archive_gets_an_oci_manifest(
    source: Stores, tmp_path: Path, compress: bool
) -> None:
    data, config_digest = old_docker_archive(source, compress)
    content, images = stores(tmp_path / "dst")
    [image] = load(content, images, io.BytesIO(data))
    assert image.reference.familiar() == "busybox:latest"
    assert image.target.media_type == media.OCI_MANIFEST
    manifest = json.loads(content.read(image.target.digest))
    assert manifest["config"] == {
        "mediaType": media.OCI_CONFIG,
        "digest": config_digest,
        "size": source[0].size(config_digest),
    }
    [layer] = manifest["layers"]
    assert layer["mediaType"] == (media.OCI_LAYER_GZIP if compress else media.OCI_LAYER)
    diff_id = json.loads(content.read(config_digest))["rootfs"]["diff_ids"][0]
    if not compress:
        assert layer["digest"] == diff_id
    assert content.fsck() == []


def test_old_docker_layer_that_does_not_match_its_diff_id_is_refused(
    source: Stores, tmp_path: Path
) -> None:
    data, _ = old_docker_archive(source)
    files = members(data)
    tar = bytearray(files["abc123/layer.tar"])
    tar[600] ^= 0xFF
    files["abc123/layer.tar"] = bytes(tar)
    content, images = stores(tmp_path / "dst")
    with pytest.raises(CorruptBlob, match="diff_id"):
        load(content, images, io.BytesIO(make_tar(files)))
    assert images.list() == [] and content.fsck() == [] and content.ingests() == []


# -- refusals


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_flipped_byte_in_a_blob_is_refused_and_nothing_is_tagged(
    source: Stores, tmp_path: Path, fmt: str
) -> None:
    data = bytearray(saved(source, fmt))
    config = json.loads(source[0].read(source[1].get("busybox").target.digest))["config"]
    blob = source[0].read(config["digest"])
    at = bytes(data).index(blob)
    data[at + 10] ^= 0x01
    content, images = stores(tmp_path / "dst")
    with pytest.raises(CorruptBlob, match=Digest(config["digest"]).encoded):
        load(content, images, io.BytesIO(bytes(data)))
    assert images.list() == []
    assert content.fsck() == [] and content.ingests() == []
    assert not content.has(config["digest"])


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "blobs/../../evil", "a/../../b"])
def test_traversal_in_member_names_is_refused(tmp_path: Path, name: str) -> None:
    data = make_tar({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', name: b"x"})
    content, images = stores(tmp_path / "dst")
    with pytest.raises(UnsafePath):
        load(content, images, io.BytesIO(data))


def test_symlink_out_of_the_archive_is_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tar.addfile(info)
    content, images = stores(tmp_path / "dst")
    with pytest.raises(UnsafePath):
        load(content, images, io.BytesIO(out.getvalue()))


def test_traversal_in_docker_manifest_paths_is_refused(tmp_path: Path) -> None:
    doc = [{"Config": "../../etc/passwd", "RepoTags": [], "Layers": []}]
    data = make_tar({"manifest.json": json.dumps(doc).encode()})
    content, images = stores(tmp_path / "dst")
    with pytest.raises(UnsafePath, match="Config"):
        load(content, images, io.BytesIO(data))


def test_layout_directory_symlink_out_is_refused(source: Stores, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with tarfile.open(fileobj=io.BytesIO(saved(source, "oci"))) as tar:
        tar.extractall(layout, filter="data")
    (tmp_path / "outside").write_text("{}")
    (layout / "index.json").unlink()
    (layout / "index.json").symlink_to(tmp_path / "outside")
    content, images = stores(tmp_path / "dst")
    with pytest.raises(UnsafePath):
        load(content, images, layout)


def test_unknown_layer_media_type_is_refused(source: Stores, tmp_path: Path) -> None:
    files = members(saved(source, "oci", ["busybox"]))
    index = json.loads(files["index.json"])
    manifest = json.loads(files[f"blobs/sha256/{Digest(index['manifests'][0]['digest']).encoded}"])
    manifest["layers"][0]["mediaType"] = "application/x-mystery"
    data = json.dumps(manifest).encode()
    files[f"blobs/sha256/{sha(data)}"] = data
    index["manifests"][0].update(digest=f"sha256:{sha(data)}", size=len(data))
    files["index.json"] = json.dumps(index).encode()
    content, images = stores(tmp_path / "dst")
    with pytest.raises(UnknownMediaType, match="application/x-mystery"):
        load(content, images, io.BytesIO(make_tar(files)))
    assert images.list() == []


def test_not_an_archive(tmp_path: Path) -> None:
    content, images = stores(tmp_path / "dst")
    with pytest.raises(ArchiveError, match="not a tar"):
        load(content, images, io.BytesIO(b"hello" * 200))
    with pytest.raises(ArchiveError, match="neither"):
        load(content, images, io.BytesIO(make_tar({"x": b""})))


# -- indexes


def test_index_resolves_to_this_platform(source: Stores, tmp_path: Path) -> None:
    content, images = source
    target = images.get("busybox").target
    other = b'{"schemaVersion":2}'
    index = {
        "schemaVersion": 2,
        "mediaType": media.OCI_INDEX,
        "manifests": [
            {
                "mediaType": media.OCI_MANIFEST,
                "digest": f"sha256:{sha(other)}",
                "size": len(other),
                "platform": {"os": "linux", "architecture": "mips"},
            },
            {
                **target.model_dump(mode="json", exclude_none=True),
                "platform": {"os": "linux", "architecture": platform_architecture()},
            },
        ],
    }
    data = json.dumps(index).encode()
    desc = content.put(data).model_copy(update={"media_type": media.OCI_INDEX})
    images.tag("multi:1", desc)
    archive = saved(source, "oci", ["multi:1"])
    dst_content, dst_images = stores(tmp_path / "dst")
    [image] = load(dst_content, dst_images, io.BytesIO(archive))
    assert str(image.reference) == "docker.io/library/multi:1"
    assert image.target.digest == target.digest
    assert dst_content.has(desc.digest)  # the index is kept
    assert not dst_content.has(f"sha256:{sha(other)}")
    docker = members(saved(source, "docker", ["multi:1"]))
    assert json.loads(docker["manifest.json"])[0]["RepoTags"] == ["multi:1"]

"""Our pull and push beside a real registry (Debian's docker-registry) and skopeo.

The registry listens on 127.0.0.1 only, on a free port, with its storage in the
test's temporary directory; it is killed and waited for when the test ends.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.content import ContentStore
from agent.images.archive import save
from agent.images.importer import import_rootfs
from agent.images.reference import parse
from agent.images.registry import pull, push
from agent.images.store import ImageStore
from tests.conftest import MARKER, skopeo

REGISTRY = "/usr/bin/docker-registry"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not Path(REGISTRY).exists(), reason="docker-registry is not installed"),
    pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """`127.0.0.1:<port>` of a registry that lives as long as the test."""
    root = tmp_path / MARKER / "registry"  # the marker lets the leak check see strays
    root.mkdir(parents=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(root / "log", "wb")  # noqa: SIM115 (closed in the finally)
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (root / "log").read_text()
            assert time.monotonic() < deadline, "registry did not answer /v2/"
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.fixture
def src(tmp_path: Path) -> tuple[ContentStore, ImageStore]:
    tree = tmp_path / "rootfs"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("box\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "tool").write_bytes(bytes(range(256)) * 4096)
    content = ContentStore(tmp_path / "src" / "content")
    images = ImageStore(tmp_path / "src" / "images", content)
    import_rootfs(content, images, str(tree), parse("example.com/app:v1"), cmd=["tool"])
    return content, images


def test_skopeo_inspects_what_we_push(registry: str, src: tuple[ContentStore, ImageStore]) -> None:
    content, images = src
    image = images.get("example.com/app:v1")
    images.tag(f"{registry}/x:tag", image.target)
    desc = push(content, images, f"{registry}/x:tag", insecure=True)
    assert desc.digest == image.target.digest
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/x:tag"))
    assert info["Digest"] == image.target.digest
    manifest = json.loads(content.read(image.target.digest))
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    # pushing again finds every blob there and changes nothing
    assert push(content, images, f"{registry}/x:tag", insecure=True) == desc


def test_we_pull_what_skopeo_copies(
    registry: str, src: tuple[ContentStore, ImageStore], tmp_path: Path
) -> None:
    content, images = src
    archive = tmp_path / "o.tar"
    with open(archive, "wb") as f:
        save(content, images, ["example.com/app:v1"], f, format="oci")
    skopeo(
        "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{archive}:v1",
        f"docker://{registry}/y:1",
    )  # fmt: skip
    dst = ContentStore(tmp_path / "dst" / "content")
    dst_images = ImageStore(tmp_path / "dst" / "images", dst)
    progress: dict[str, tuple[int, int]] = {}
    image = pull(
        dst,
        dst_images,
        f"{registry}/y:1",
        insecure=True,
        progress=lambda d, done, total: progress.__setitem__(d, (done, total)),
    )
    assert image.target.digest == images.get("example.com/app:v1").target.digest
    for digest, size in content.walk():
        assert dst.has(digest) and dst.size(digest) == size
        if digest != image.target.digest:
            assert progress[digest] == (size, size)
    assert dst.fsck() == [] and dst.ingests() == []
    # and by digest, through the registry's own Docker-Content-Digest
    again = pull(dst, dst_images, f"{registry}/y@{image.target.digest}", insecure=True)
    assert again.target == image.target

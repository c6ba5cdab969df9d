"""Pull time of a multi-layer image from a registry on loopback: orchestr beside skopeo.

    .venv/bin/python bench/image_pull.py [-n RUNS] [--mb MB] [--layers N]

Starts Debian's docker-registry on 127.0.0.1 (a free port, storage in a temporary
directory), pushes a generated image of N layers totalling about MB megabytes of
incompressible data with orchestr, then times, into a fresh store each run:
orchestr's `pull` (content store, verified, 4 layers at a time) and
`skopeo copy docker://… dir:…` (blobs to a directory). Prints medians and the ratio.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.content import ContentStore, Descriptor  # noqa: E402
from agent.images.importer import import_rootfs  # noqa: E402
from agent.images.reference import parse  # noqa: E402
from agent.images.registry import pull, push  # noqa: E402
from agent.images.store import ImageStore  # noqa: E402

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_registry(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = work / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {work / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                return proc, f"127.0.0.1:{port}"
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise SystemExit("bench: the registry did not start")


def make_image(work: Path, mb: int, layers: int) -> tuple[ContentStore, ImageStore, Descriptor]:
    """An image of `layers` layers, each one imported tree stacked by hand."""
    content = ContentStore(work / "src" / "content")
    images = ImageStore(work / "src" / "images", content)
    per_layer = mb * (1 << 20) // layers
    descs: list[dict[str, object]] = []
    diff_ids: list[str] = []
    import json

    for i in range(layers):
        tree = work / f"tree{i}"
        tree.mkdir()
        for j in range(8):
            (tree / f"f{i}-{j}").write_bytes(os.urandom(per_layer // 8))
        part = import_rootfs(content, images, str(tree), parse(f"part{i}"))
        manifest = json.loads(content.read(part.target.digest))
        config = json.loads(content.read(manifest["config"]["digest"]))
        descs.append(manifest["layers"][0])
        diff_ids.append(config["rootfs"]["diff_ids"][0])
        shutil.rmtree(tree)
    config_doc = {
        "architecture": config["architecture"],
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = content.put(json.dumps(config_doc).encode())
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {**config_desc.model_dump(mode="json", exclude_none=True),
                   "mediaType": "application/vnd.oci.image.config.v1+json"},
        "layers": descs,
    }  # fmt: skip
    data = json.dumps(manifest_doc).encode()
    target = content.put(data).model_copy(
        update={"media_type": "application/vnd.oci.image.manifest.v1+json"}
    )
    return content, images, target


def main() -> int:
    args = sys.argv[1:]
    runs = int(args[args.index("-n") + 1]) if "-n" in args else 3
    mb = int(args[args.index("--mb") + 1]) if "--mb" in args else 100
    layers = int(args[args.index("--layers") + 1]) if "--layers" in args else 5
    if not Path(REGISTRY).exists() or shutil.which("skopeo") is None:
        print("bench: needs docker-registry and skopeo (scripts/setup.sh)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-pull-"))
    proc, host = start_registry(work)
    try:
        content, images, target = make_image(work, mb, layers)
        images.tag(f"{host}/bench/big:1", target)
        push(content, images, f"{host}/bench/big:1", insecure=True)
        ours, theirs = [], []
        for i in range(runs):
            dest = work / f"pull{i}"
            c = ContentStore(dest / "content")
            start = time.perf_counter()
            pull(c, ImageStore(dest / "images", c), f"{host}/bench/big:1", insecure=True)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(
                ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                 f"docker://{host}/bench/big:1", f"dir:{work / f'skopeo{i}'}"],
                check=True,
            )  # fmt: skip
            theirs.append(time.perf_counter() - start)
            shutil.rmtree(dest)
            shutil.rmtree(work / f"skopeo{i}")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"image: {layers} layers, {mb} MB (incompressible); median of {runs}")
    print(
        f"  orchestr pull            {a * 1000:8.0f} ms   {mb / a:6.1f} MB/s   {a / b:.2f}x skopeo"
    )
    print(f"  skopeo copy dir:         {b * 1000:8.0f} ms   {mb / b:6.1f} MB/s   1.00x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The daemon's image endpoints, judged by real clients: the docker CLI, docker-py
and orchestr's own CLI, against an `orchestr daemon` of the test's own (and a
registry on loopback for pull and push)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import Daemon, skopeo
from tests.integration.test_registry_interop import registry  # noqa: F401 - a fixture
from tests.integration.test_runtime import ORCHESTR

DOCKERFILE = """\
FROM busybox AS build
RUN echo compiled > /artifact
FROM busybox
COPY --from=build /artifact /app/artifact
COPY greeting.txt /app/
CMD ["cat", "/app/artifact", "/app/greeting.txt"]
"""


def run(d: Daemon, *args: str, check: bool = True, **kw: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        list(args), capture_output=True, text=True, env=d.env(**kw), timeout=120, check=False
    )
    if check:
        assert out.returncode == 0, f"{args}: {out.stderr}"
    return out


def docker_cli(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(d, "docker", *args, check=check)


def orchestr(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(d, ORCHESTR, *args, check=check)


@pytest.fixture
def rootfs_tar(busybox_rootfs: Path, state_dir: Path) -> Path:
    tar = state_dir / "busybox.tar"
    subprocess.run(["tar", "-C", str(busybox_rootfs), "-cf", str(tar), "."], check=True)
    return tar


@pytest.fixture
def context(state_dir: Path) -> Path:
    ctx = state_dir / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "greeting.txt").write_text("hello from the context\n")
    return ctx


def test_docker_cli_manages_images(daemon: Daemon, rootfs_tar: Path, context: Path) -> None:
    version = json.loads(docker_cli(daemon, "version", "--format", "{{json .}}").stdout)
    assert version["Server"]["ApiVersion"] == "1.41"
    assert "Images: 0" in docker_cli(daemon, "info").stdout

    image_id = docker_cli(daemon, "import", str(rootfs_tar), "busybox:latest").stdout.strip()
    assert image_id.startswith("sha256:")
    docker_cli(daemon, "tag", "busybox", "example.com/team/bb:v1")
    listing = docker_cli(daemon, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert sorted(listing.stdout.split("\n")[:-1]) == [
        f"busybox:latest {image_id[7:19]}",
        f"example.com/team/bb:v1 {image_id[7:19]}",
    ]
    inspect = json.loads(docker_cli(daemon, "image", "inspect", "busybox").stdout)
    assert inspect[0]["Id"] == image_id
    assert sorted(inspect[0]["RepoTags"]) == ["busybox:latest", "example.com/team/bb:v1"]

    first = docker_cli(daemon, "build", "-t", "app:1", str(context)).stdout
    assert "Successfully tagged app:1" in first and "Using cache" not in first
    again = docker_cli(daemon, "build", "-t", "app:1", str(context)).stdout
    assert again.count("Using cache") == 4  # RUN, both COPYs, CMD
    history = docker_cli(daemon, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "app:1")
    assert history.stdout.splitlines()[0] == 'CMD ["cat", "/app/artifact", "/app/greeting.txt"]'

    archive = daemon.state_dir / "saved.tar"
    docker_cli(daemon, "save", "-o", str(archive), "app:1")
    assert json.loads(skopeo("inspect", f"docker-archive:{archive}"))["Layers"]
    docker_cli(daemon, "rmi", "app:1")
    assert "app" not in docker_cli(daemon, "images").stdout
    assert "Loaded image: app:1" in docker_cli(daemon, "load", "-i", str(archive)).stdout

    missing = docker_cli(daemon, "rmi", "nosuch:image", check=False)
    assert missing.returncode == 1 and "No such image: nosuch:image" in missing.stderr
    conflict = docker_cli(daemon, "rmi", image_id, check=False)
    assert conflict.returncode == 1 and "must be forced" in conflict.stderr


def test_pull_and_push_through_the_daemon(
    daemon: Daemon,
    registry: str,  # noqa: F811 - the fixture
    rootfs_tar: Path,
) -> None:
    docker_cli(daemon, "import", str(rootfs_tar), f"{registry}/team/bb:1")
    pushed = docker_cli(daemon, "push", f"{registry}/team/bb:1").stdout
    assert "digest: sha256:" in pushed
    remote = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry}/team/bb:1"))
    docker_cli(daemon, "rmi", f"{registry}/team/bb:1")

    pulled = docker_cli(daemon, "pull", f"{registry}/team/bb:1").stdout
    assert f"Digest: {remote['Digest']}" in pulled
    assert "Downloaded newer image" in pulled
    digests = docker_cli(daemon, "images", "--digests", "--format", "{{.Digest}}").stdout
    assert digests.strip() == remote["Digest"]
    assert "up to date" in docker_cli(daemon, "pull", f"{registry}/team/bb:1").stdout

    unknown = docker_cli(daemon, "pull", f"{registry}/team/nothere:1", check=False)
    assert unknown.returncode == 1 and "manifest unknown" in unknown.stderr

    # orchestr's own CLI, through the same daemon
    orchestr(daemon, "image", "rm", f"{registry}/team/bb:1")
    out = orchestr(daemon, "pull", f"{registry}/team/bb:1").stdout
    assert "Status: Downloaded newer image" in out
    assert "digest: sha256:" in orchestr(daemon, "push", f"{registry}/team/bb:1").stdout


def test_orchestr_cli_manages_images(daemon: Daemon, busybox_rootfs: Path, context: Path) -> None:
    orchestr(daemon, "image", "import", str(busybox_rootfs), "busybox")
    orchestr(daemon, "image", "tag", "busybox", "other:2")
    table = orchestr(daemon, "image", "ls").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert sorted(line.split()[0] for line in table[1:]) == ["busybox", "other"]
    listing = json.loads(orchestr(daemon, "image", "ls", "--format", "json").stdout)
    assert len(listing) == 1 and sorted(listing[0]["RepoTags"]) == ["busybox:latest", "other:2"]

    built = orchestr(daemon, "build", "-t", "app:2", str(context)).stdout
    assert "Successfully tagged app:2" in built
    image_id = orchestr(daemon, "build", "-q", "-t", "app:2", str(context)).stdout.strip()
    inspect = json.loads(orchestr(daemon, "image", "inspect", "app:2").stdout)
    assert inspect[0]["Id"] == image_id
    history = json.loads(orchestr(daemon, "image", "history", "app:2", "--format", "json").stdout)
    assert history[0]["Id"] == image_id

    archive = daemon.state_dir / "app.tar"
    orchestr(daemon, "image", "save", "-o", str(archive), "app:2")
    oci = daemon.state_dir / "app-oci.tar"
    orchestr(daemon, "image", "save", "--format", "oci", "-o", str(oci), "app:2")
    # skopeo names a docker archive's layers by diff ID, an OCI archive's by blob digest
    diff_ids = json.loads(skopeo("inspect", f"docker-archive:{archive}"))["Layers"]
    assert diff_ids == inspect[0]["RootFS"]["Layers"]
    assert len(json.loads(skopeo("inspect", f"oci-archive:{oci}"))["Layers"]) == len(diff_ids)
    assert "Untagged: app:2" in orchestr(daemon, "image", "rm", "app:2").stdout
    assert "Loaded image: app:2" in orchestr(daemon, "image", "load", "-i", str(archive)).stdout

    bad = orchestr(daemon, "image", "inspect", "nosuch", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "orchestr: No such image: nosuch"
    pruned = orchestr(daemon, "image", "prune", "-a", "-f").stdout
    assert "Total reclaimed space" in pruned
    assert json.loads(orchestr(daemon, "image", "ls", "--format", "json").stdout) == []


def test_docker_py_lists_builds_and_removes(
    daemon: Daemon, rootfs_tar: Path, context: Path
) -> None:
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        with rootfs_tar.open("rb") as f:
            client.api.import_image_from_data(f.read(), repository="busybox", tag="latest")
        image, logs = client.images.build(path=str(context), tag="pyapp:1")
        assert "pyapp:1" in image.tags
        assert any("Successfully built" in entry.get("stream", "") for entry in logs)
        assert {t for i in client.images.list() for t in i.tags} == {"busybox:latest", "pyapp:1"}
        assert client.images.get("pyapp:1").id == image.id
        client.images.remove("pyapp:1")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("pyapp:1")
    finally:
        client.close()


def test_bad_requests_get_4xx_and_the_daemon_lives_on(daemon: Daemon) -> None:
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    with httpx.Client(transport=transport, base_url="http://d") as http:
        cases = [
            ("GET", "/v1.41/images/json?filters={not json", 400, "invalid JSON"),
            ("GET", '/v1.41/images/json?filters={"color":["red"]}', 400, "invalid filter"),
            ("GET", "/v1.41/images/nosuch/json", 404, "No such image: nosuch"),
            ("POST", "/v1.41/images/create", 400, "fromImage or fromSrc"),
            ("POST", "/v1.41/images/create?fromImage=Bad..Name", 400, "must be lowercase"),
            ("POST", "/v1.41/images/busybox/tag?repo=x", 404, "No such image"),
            ("POST", "/v1.41/images/load", 400, "archive"),
            ("GET", "/v1.99/version", 400, "too new"),
            ("GET", "/v1.41/no/such/path", 404, "page not found"),
        ]
        for method, path, status, message in cases:
            response = http.request(method, path)
            assert response.status_code == status, (path, response.text)
            assert message in response.json()["message"], (path, response.text)
        assert http.get("/_ping").text == "OK"
    assert daemon.proc.poll() is None

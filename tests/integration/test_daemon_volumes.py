"""The volume endpoints, judged by real clients: the docker CLI, docker-py and orchestr's
own CLI, against an `orchestr.api.http.Server` serving only VolumesApi (plus /_ping and
/version, which the docker CLI asks first) on a unix socket of the test's own."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import httpx
import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from agent.api.volumes import VolumesApi, df_volumes
from agent.volumes import VolumeStore, copy_up
from orchestr.api.http import API_VERSION, Request, Response, Router, Server, json_response
from orchestr.cli.volumes import volume as volume_cli
from tests.conftest import MARKER
from tests.unit.test_image_service import (
    SWAGGER,
    swagger_definitions,
    swagger_schema,
    without_nulls,
)


def _system_router() -> Router:
    router = Router()

    @router.route("GET", "/_ping")
    async def ping(request: Request) -> Response:
        return Response(200, b"OK", "text/plain; charset=utf-8", [("Builder-Version", "1")])

    @router.route("GET", "/version")
    async def version(request: Request) -> Response:
        return json_response(
            {"Version": "0.0-test", "ApiVersion": API_VERSION, "MinAPIVersion": "1.12"}
        )

    return router


class VolumeServer:
    """A Server on its own asyncio loop in a thread; `stop()` closes it."""

    def __init__(self, store: VolumeStore, socket_path: str) -> None:
        self.store = store
        self.socket = socket_path
        self.host = f"unix://{socket_path}"
        router = Router()
        router.include(_system_router())
        router.include(VolumesApi(store).router)
        self.server = Server(router)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.listen_unix(self.socket), self.loop).result(10)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        self.loop.close()


@pytest.fixture
def served(state_dir: Path) -> Iterator[VolumeServer]:
    sock_dir = tempfile.mkdtemp(prefix=f"{MARKER}-vol-", dir="/tmp")
    sock = os.path.join(sock_dir, "d.sock")
    assert len(sock.encode()) < 108
    server = VolumeServer(VolumeStore(str(state_dir / "volumes")), sock)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


def docker_cli(
    s: VolumeServer, state_dir: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    config = state_dir / "docker-config"
    config.mkdir(exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": s.host, "DOCKER_CONFIG": str(config)}
    out = subprocess.run(
        ["docker", "-H", s.host, *args], capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert out.returncode == 0, f"{args}: {out.stderr}"
    return out


def api(s: VolumeServer) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=s.socket), base_url="http://d/v1.41")


def check_volume(doc: Any) -> None:
    jsonschema.validate(without_nulls(doc), swagger_schema("Volume"))
    assert isinstance(doc["Labels"], dict) and isinstance(doc["Options"], dict)
    assert "Status" not in doc and "UsageData" not in doc


@functools.cache
def swagger_paths() -> dict[str, Any]:
    paths: dict[str, Any] = yaml.safe_load(SWAGGER.read_text())["paths"]
    return paths


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    paths = swagger_paths()
    schema: dict[str, Any] = paths[path][method]["responses"][status]["schema"]
    return {"definitions": swagger_definitions(), **schema}


def test_docker_cli_manages_volumes(served: VolumeServer, state_dir: Path) -> None:
    assert docker_cli(served, state_dir, "volume", "create", "v1").stdout.strip() == "v1"
    assert "v1" in docker_cli(served, state_dir, "volume", "ls").stdout.split()
    quiet = docker_cli(served, state_dir, "volume", "ls", "-q").stdout.split()
    assert quiet == ["v1"]
    [inspect] = json.loads(docker_cli(served, state_dir, "volume", "inspect", "v1").stdout)
    assert inspect["Name"] == "v1" and inspect["Driver"] == "local"
    assert inspect["Mountpoint"] == str(state_dir / "volumes" / "v1" / "_data")
    assert inspect["Scope"] == "local"
    check_volume(inspect)

    tmpfs = ["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m"]
    docker_cli(served, state_dir, "volume", "create", "--label", "app=web", *tmpfs, "t1")
    [t1] = json.loads(docker_cli(served, state_dir, "volume", "inspect", "t1").stdout)
    assert t1["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert t1["Labels"] == {"app": "web"}
    labelled = docker_cli(served, state_dir, "volume", "ls", "-q", "--filter", "label=app=web")
    assert labelled.stdout.split() == ["t1"]
    bad = docker_cli(served, state_dir, "volume", "create", "-o", "size=1m", "t2", check=False)
    assert bad.returncode != 0 and 'invalid option key: "size"' in bad.stderr
    short = docker_cli(served, state_dir, "volume", "create", "x", check=False)
    assert short.returncode != 0 and "volume name is too short" in short.stderr

    served.store.in_use = lambda: {"v1": ["c0ffee"]}
    busy = docker_cli(served, state_dir, "volume", "rm", "-f", "v1", check=False)
    assert busy.returncode != 0 and "remove v1: volume is in use - [c0ffee]" in busy.stderr
    in_use = docker_cli(served, state_dir, "volume", "ls", "-q", "--filter", "dangling=false")
    assert in_use.stdout.split() == ["v1"]

    missing = docker_cli(served, state_dir, "volume", "inspect", "nope", check=False)
    assert missing.returncode != 0 and "no such volume" in missing.stderr.lower()
    docker_cli(served, state_dir, "volume", "rm", "-f", "nope")  # force: missing is fine

    # API 1.41: prune takes every unused volume, named ones too (the CLI warns so)
    anonymous = docker_cli(served, state_dir, "volume", "create").stdout.strip()
    pruned = docker_cli(served, state_dir, "volume", "prune", "-f").stdout
    assert "t1" in pruned and anonymous in pruned and "v1" not in pruned.split()
    assert "Total reclaimed space" in pruned
    served.store.in_use = dict
    assert docker_cli(served, state_dir, "volume", "rm", "v1").stdout.strip() == "v1"
    assert docker_cli(served, state_dir, "volume", "ls", "-q").stdout.strip() == ""


def test_docker_py_manages_volumes(served: VolumeServer) -> None:
    client = docker.DockerClient(base_url=served.host, version="1.41")
    try:
        v = client.volumes.create(name="pyvol", driver="local", labels={"k": "v"}, driver_opts={})
        assert v.name == "pyvol" and v.attrs["Labels"] == {"k": "v"}
        check_volume(v.attrs)
        assert [x.name for x in client.volumes.list()] == ["pyvol"]
        assert [x.name for x in client.volumes.list(filters={"label": "k=v"})] == ["pyvol"]
        assert client.volumes.list(filters={"name": "zzz"}) == []
        assert client.volumes.get("pyvol").attrs == v.attrs
        with pytest.raises(docker.errors.NotFound, match="get nope: no such volume"):
            client.volumes.get("nope")
        with pytest.raises(docker.errors.APIError) as e:
            client.volumes.create(name="pyvol", driver_opts={"type": "tmpfs", "device": "x"})
        assert e.value.status_code == 409
        with pytest.raises(docker.errors.APIError) as e:
            client.volumes.create(name="other", driver="nfs")
        assert e.value.status_code == 400 and "volume driver nfs is not supported" in str(e.value)
        served.store.in_use = lambda: {"pyvol": ["abc"]}
        with pytest.raises(docker.errors.APIError) as e:
            v.remove(force=True)
        assert e.value.status_code == 409
        served.store.in_use = dict
        client.volumes.create(name="keep")
        v.remove()
        assert client.volumes.prune() == {"VolumesDeleted": ["keep"], "SpaceReclaimed": 0}
        assert client.volumes.list() == []
    finally:
        client.close()


def test_shapes_and_codes_match_the_swagger(served: VolumeServer) -> None:
    with api(served) as c:
        created = c.post("/volumes/create", json={"Name": "shape", "Labels": {"a": "b"}})
        assert created.status_code == 201
        check_volume(created.json())
        # Go decodes JSON keys case-insensitively; so does the daemon
        lower = c.post("/volumes/create", json={"name": "lower", "labels": {"x": "y"}})
        assert lower.status_code == 201 and lower.json()["Labels"] == {"x": "y"}
        anon = c.post("/volumes/create", content=b"")
        assert anon.status_code == 201
        assert anon.json()["Labels"] == {"com.docker.volume.anonymous": ""}

        listing = c.get("/volumes")
        assert listing.status_code == 200
        jsonschema.validate(listing.json(), response_schema("/volumes", "get", 200))
        assert listing.json()["Warnings"] == []
        for doc in listing.json()["Volumes"]:
            check_volume(doc)

        assert c.post("/volumes/create", content=b"{nope").status_code == 400
        assert c.post("/volumes/create", json=["x"]).status_code == 400
        assert c.post("/volumes/create", json={"Name": "a/b"}).status_code in (400, 404)
        assert c.post("/volumes/create", json={"Labels": {"a": 1}}).status_code == 400
        bad_filter = c.get("/volumes", params={"filters": json.dumps({"colour": ["red"]})})
        assert bad_filter.status_code == 400 and bad_filter.json()["message"]
        missing = c.get("/volumes/nope")
        assert missing.status_code == 404
        assert missing.json() == {"message": "get nope: no such volume"}
        assert c.delete("/volumes/nope").status_code == 404
        assert c.delete("/volumes/nope", params={"force": "1"}).status_code == 204

        served.store.in_use = lambda: {"shape": ["c1", "c2"]}
        busy = c.delete("/volumes/shape", params={"force": "true"})
        assert busy.status_code == 409
        assert busy.json() == {"message": "remove shape: volume is in use - [c1, c2]"}

        # an explicit all=false: Docker 23+'s default, only anonymous volumes
        pruned = c.post("/volumes/prune", params={"filters": json.dumps({"all": ["false"]})})
        assert pruned.status_code == 200
        jsonschema.validate(pruned.json(), response_schema("/volumes/prune", "post", 200))
        assert pruned.json() == {"VolumesDeleted": [anon.json()["Name"]], "SpaceReclaimed": 0}
        Path(served.store.get("lower").mountpoint, "f").write_bytes(b"z" * 123)
        pruned = c.post("/volumes/prune", params={"filters": json.dumps({"label": ["x=y"]})})
        assert pruned.json() == {"VolumesDeleted": ["lower"], "SpaceReclaimed": 123}

        deleted = c.delete("/volumes/shape")
        assert deleted.status_code == 409
        served.store.in_use = dict
        deleted = c.delete("/volumes/shape")
        assert deleted.status_code == 204 and deleted.content == b""

    # what /system/df shows for volumes
    served.store.create("dfvol")
    Path(served.store.get("dfvol").mountpoint, "f").write_bytes(b"q" * 50)
    served.store.in_use = lambda: {"dfvol": ["c9"]}
    [doc] = df_volumes(served.store)
    jsonschema.validate(doc, swagger_schema("Volume"))
    assert doc["UsageData"] == {"Size": 50, "RefCount": 1}


def test_orchestr_cli_manages_volumes(served: VolumeServer) -> None:
    runner = CliRunner()

    def cli(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(
            volume_cli, list(args), obj=SimpleNamespace(host=served.host, debug=False)
        )
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    assert cli("create", "--label", "team=a", "-o", "type=tmpfs", "-o", "device=tmpfs", "cv1")
    assert cli("create", "cv2").output.strip() == "cv2"
    anonymous = cli("create").output.strip()
    assert len(anonymous) == 64
    table = cli("ls").output.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert sorted(line.split()[1] for line in table[1:]) == sorted(["cv1", "cv2", anonymous])
    assert cli("ls", "-q", "--filter", "label=team").output.split() == ["cv1"]
    listing = json.loads(cli("ls", "--format", "json").output)
    assert {v["Name"] for v in listing} == {"cv1", "cv2", anonymous}
    [doc] = json.loads(cli("inspect", "cv1").output)
    assert doc["Options"] == {"type": "tmpfs", "device": "tmpfs"}
    missing = cli("inspect", "nope", ok=False)
    assert missing.exit_code != 0 and "get nope: no such volume" in str(missing.exception)

    # without -a only anonymous volumes go (the CLI says all=false explicitly)
    pruned = cli("prune", "-f").output
    assert anonymous in pruned and "cv1" not in pruned
    assert "Total reclaimed space: 0B" in pruned
    refused = cli("prune", ok=False)  # asks first; no answer: aborted
    assert refused.exit_code != 0
    served.store.in_use = lambda: {"cv1": ["c1"]}
    rm = cli("rm", "cv1", "cv2", ok=False)
    assert rm.exit_code == 1 and "cv2" in rm.output
    assert "remove cv1: volume is in use - [c1]" in rm.output
    assert cli("prune", "-a", "-f").output.split()[:2] == ["Total", "reclaimed"]
    served.store.in_use = dict
    assert "cv1" in cli("prune", "-a", "-f").output
    assert cli("ls", "-q").output == ""


def test_copy_up_keeps_owners(tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "home").mkdir(parents=True)
    (image / "home" / "f").write_text("owned")
    (image / "home" / "l").symlink_to("f")
    os.mknod(image / "null", 0o020666, os.makedev(1, 3))
    os.lchown(image / "home" / "f", 1234, 5678)
    os.lchown(image / "home" / "l", 4321, 8765)
    os.chown(image / "home", 1000, 1000)
    os.chmod(image / "home" / "f", 0o4755)  # setuid survives the chown order
    os.chown(image, 33, 33)
    store = VolumeStore(str(tmp_path / "volumes"))
    data = Path(store.create("owned").mountpoint)
    assert copy_up(str(image), str(data))
    st = os.lstat(data / "home" / "f")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 5678, 0o4755)
    assert (os.lstat(data / "home" / "l").st_uid, os.lstat(data / "home" / "l").st_gid) == (
        4321,
        8765,
    )
    assert (os.stat(data / "home").st_uid, os.stat(data).st_uid) == (1000, 33)
    assert os.stat(data / "null").st_rdev == os.makedev(1, 3)

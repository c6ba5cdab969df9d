"""Pull and push against an in-memory registry behind `httpx.MockTransport`."""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.content import ContentStore, Digest
from agent.images import media, registry
from agent.images.importer import import_rootfs, platform_architecture
from agent.images.leases import LeaseManager, leases_for
from agent.images.reference import parse
from agent.images.registry import (
    DigestMismatch,
    NotFound,
    RegistryClient,
    RegistryError,
    Unauthorized,
    Unavailable,
    pull,
    push,
)
from agent.images.store import ImageNotFound, ImageStore
from tests.unit.test_image_leases import CollectBeforeTag

TOKEN_URL = "http://auth.test/token"
_ROUTE = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)$")


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errors": [{"code": code, "message": message}]})


class _BreaksOff(httpx.SyncByteStream):
    """Sends the first half of the bytes, then the connection drops."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: len(self.data) // 2]
        raise httpx.ReadError("connection reset by peer")


class FakeRegistry:
    """Just enough of the distribution API, plus knobs to misbehave."""

    def __init__(self, auth: str | None = None, credentials: tuple[str, str] | None = None):
        self.auth = auth  # None, "bearer" or "basic"
        self.credentials = credentials
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.break_off: dict[str, int] = {}  # digest -> how many more GETs break off
        self.corrupt: dict[str, bytes] = {}  # digest -> the wrong bytes sent for it
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.token_requests: list[dict[str, str]] = []
        self.tokens: set[str] = set()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _basic_ok(self, header: str) -> bool:
        if self.credentials is None:
            return True
        raw = base64.b64encode(":".join(self.credentials).encode()).decode()
        return header == f"Basic {raw}"

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        path = request.url.path
        self.log.append((request.method, path, dict(request.headers)))
        if request.url.host == "auth.test":
            self.token_requests.append(dict(request.url.params))
            if not self._basic_ok(request.headers.get("authorization", "")):
                return _error(401, "UNAUTHORIZED", "bad credentials")
            token = f"tok-{uuid.uuid4().hex[:8]}"
            self.tokens.add(token)
            return httpx.Response(200, json={"token": token})
        denied = self._challenge(request)
        if denied is not None:
            return denied
        if path == "/v2/":
            return httpx.Response(200, json={})
        if m := _UPLOAD.match(path):
            return self._upload(request, m["repo"], m["id"])
        m = _ROUTE.match(path)
        if m is None:
            return _error(404, "NAME_UNKNOWN", "no route")
        if m["kind"] == "manifests":
            return self._manifest(request, m["repo"], m["ref"])
        return self._blob(request, m["ref"])

    def _challenge(self, request: httpx.Request) -> httpx.Response | None:
        header = request.headers.get("authorization", "")
        if self.auth == "bearer" and header.removeprefix("Bearer ") not in self.tokens:
            repo = _ROUTE.match(request.url.path) or _UPLOAD.match(request.url.path)
            scope = f"repository:{repo['repo']}:pull,push" if repo else ""
            value = f'Bearer realm="{TOKEN_URL}",service="fake",scope="{scope}"'
            response = _error(401, "UNAUTHORIZED", "authentication required")
            response.headers["WWW-Authenticate"] = value
            return response
        if self.auth == "basic" and not (header and self._basic_ok(header)):
            response = _error(401, "UNAUTHORIZED", "authentication required")
            response.headers["WWW-Authenticate"] = 'Basic realm="fake"'
            return response
        return None

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if request.method == "PUT":
            data = request.content
            digest = Digest.of(data)
            media_type = request.headers["content-type"]
            self.manifests[(repo, ref)] = self.manifests[(repo, digest)] = (data, media_type)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        found = self.manifests.get((repo, ref))
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {ref}")
        data, media_type = found
        headers = {"Content-Type": media_type, "Docker-Content-Digest": Digest.of(data)}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=data)

    def _blob(self, request: httpx.Request, digest: str) -> httpx.Response:
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", f"blob unknown: {digest}")
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        data = self.corrupt.get(digest, data)
        start = 0
        if m := re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", "")):
            start = int(m[1])
        body = data[start:]
        headers = {"Docker-Content-Digest": digest}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if self.break_off.get(digest, 0) > 0:
            self.break_off[digest] -= 1
            return httpx.Response(status, headers=headers, stream=_BreaksOff(body))
        return httpx.Response(status, headers=headers, content=body)

    def _upload(self, request: httpx.Request, repo: str, upload: str) -> httpx.Response:
        if request.method == "POST":
            upload = uuid.uuid4().hex
            self.uploads[upload] = bytearray()
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}"})
        buffer = self.uploads[upload]
        if request.method == "PATCH":
            start = int(request.headers["content-range"].partition("-")[0])
            assert start == len(buffer)
            buffer += request.content
            return httpx.Response(202, headers={"Location": f"/v2/{repo}/blobs/uploads/{upload}"})
        buffer += request.content  # PUT
        digest = request.url.params["digest"]
        if Digest.of(bytes(buffer)) != digest:
            return _error(400, "DIGEST_INVALID", "digest did not match content")
        self.blobs[digest] = bytes(buffer)
        del self.uploads[upload]
        return httpx.Response(201, headers={"Docker-Content-Digest": digest})

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for m, p, _ in self.log if m == method and fragment in p)


# -- fixtures


Stores = tuple[ContentStore, ImageStore]


def stores(root: Path) -> Stores:
    content = ContentStore(root / "content")
    return content, ImageStore(root / "images", content)


@pytest.fixture
def src(tmp_path: Path) -> Stores:
    tree = tmp_path / "rootfs"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(os.urandom(300_000))  # incompressible: a big layer
    (tree / "etc").mkdir()
    (tree / "etc" / "hostname").write_text("box\n")
    content, images = stores(tmp_path / "src")
    import_rootfs(content, images, str(tree), parse("reg.test/team/app:v1"), cmd=["tool"])
    return content, images


@pytest.fixture
def dst(tmp_path: Path) -> Stores:
    return stores(tmp_path / "dst")


def manifest_of(content: ContentStore, digest: str) -> dict[str, object]:
    doc = json.loads(content.read(digest))
    assert isinstance(doc, dict)
    return doc


def layer_digest(stores: Stores) -> str:
    content, images = stores
    doc = manifest_of(content, images.get("reg.test/team/app:v1").target.digest)
    layers = doc["layers"]
    assert isinstance(layers, list)
    return str(layers[0]["digest"])


def pushed(src: Stores, fake: FakeRegistry, **kw: object) -> str:
    desc = push(*src, "reg.test/team/app:v1", insecure=True, transport=fake.transport(), **kw)  # type: ignore[arg-type]
    return str(desc.digest)


# -- round trips


def test_push_then_pull_round_trip(src: Stores, dst: Stores) -> None:
    fake = FakeRegistry()
    digest = pushed(src, fake)
    assert digest == src[1].get("reg.test/team/app:v1").target.digest
    assert src[1].get("reg.test/team/app:v1").repo_digest == digest  # recorded by the push
    assert fake.manifests[("team/app", "v1")][1] == media.OCI_MANIFEST

    seen: dict[str, tuple[int, int]] = {}
    image = pull(
        *dst,
        "reg.test/team/app:v1",
        insecure=True,
        transport=fake.transport(),
        progress=lambda d, done, total: seen.__setitem__(d, (done, total)),
    )
    assert image.target.digest == digest
    assert dst[1].get("reg.test/team/app:v1").target.digest == digest
    for blob, size in src[0].walk():
        assert dst[0].read(blob) == src[0].read(blob)
        if blob != digest:
            assert seen[blob] == (size, size)
    assert dst[0].fsck() == [] and dst[0].ingests() == []
    assert fake.count("GET", "/blobs/") == 2  # config and layer, once each


def test_push_skips_blobs_the_registry_has(src: Stores) -> None:
    fake = FakeRegistry()
    pushed(src, fake)
    posts = fake.count("POST", "/uploads/")
    assert posts == 2
    pushed(src, fake)
    assert fake.count("POST", "/uploads/") == posts  # HEAD said they are there


def test_chunked_upload(src: Stores) -> None:
    fake = FakeRegistry()
    pushed(src, fake, chunk_size=64 * 1024)
    assert fake.count("PATCH", "/uploads/") >= 4
    assert layer_digest(src) in fake.blobs


def test_pull_by_digest_and_index_resolves_to_this_platform(src: Stores, dst: Stores) -> None:
    fake = FakeRegistry()
    digest = pushed(src, fake)
    manifest = src[0].read(digest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": media.OCI_MANIFEST,
                    "digest": Digest.of(b"other"),
                    "size": 5,
                    "platform": {"os": "linux", "architecture": "s390x-not-this"},
                },
                {
                    "mediaType": media.OCI_MANIFEST,
                    "digest": digest,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": platform_architecture()},
                },
            ],
        }
    ).encode()
    index_digest = Digest.of(index)
    fake.manifests[("team/app", "multi")] = (index, media.OCI_INDEX)
    fake.manifests[("team/app", index_digest)] = (index, media.OCI_INDEX)

    image = pull(*dst, "reg.test/team/app:multi", insecure=True, transport=fake.transport())
    assert image.target.digest == digest  # the name points at the platform manifest
    assert dst[0].read(index_digest) == index  # and the index is kept
    # ...as the repo digest, what `docker images --digests` shows for a multi-platform pull
    assert image.repo_digest == index_digest
    assert dst[1].get("reg.test/team/app:multi").repo_digest == index_digest
    dst[1].tag("reg.test/team/app:multi", image.target)  # a re-tag to the same target keeps it
    assert dst[1].get("reg.test/team/app:multi").repo_digest == index_digest

    by_digest = pull(
        *dst, f"reg.test/team/app@{index_digest}", insecure=True, transport=fake.transport()
    )
    assert by_digest.target.digest == digest
    assert dst[0].fsck() == []


def test_a_manifest_that_does_not_match_its_digest_is_refused(src: Stores, dst: Stores) -> None:
    fake = FakeRegistry()
    digest = pushed(src, fake)
    fake.manifests[("team/app", digest)] = (b'{"schemaVersion": 2}', media.OCI_MANIFEST)
    with pytest.raises(DigestMismatch, match=r"reg\.test/team/app"):
        pull(*dst, f"reg.test/team/app@{digest}", insecure=True, transport=fake.transport())
    assert list(dst[0].walk()) == []


# -- errors


def test_unknown_manifest_names_the_reference_and_code(dst: Stores) -> None:
    fake = FakeRegistry()
    with pytest.raises(NotFound, match=r"reg.test/team/app:nope.*MANIFEST_UNKNOWN") as info:
        pull(*dst, "reg.test/team/app:nope", insecure=True, transport=fake.transport())
    assert info.value.code == "MANIFEST_UNKNOWN"
    assert isinstance(info.value, RegistryError)


def test_wrong_blob_is_refused_and_leaves_the_store_clean(src: Stores, dst: Stores) -> None:
    fake = FakeRegistry()
    pushed(src, fake)
    layer = layer_digest(src)
    fake.corrupt[layer] = os.urandom(len(fake.blobs[layer]))
    with pytest.raises(DigestMismatch, match=layer):
        pull(*dst, "reg.test/team/app:v1", insecure=True, transport=fake.transport())
    assert not dst[0].has(layer)
    assert dst[0].fsck() == [] and dst[0].ingests() == []
    with pytest.raises(ImageNotFound):
        dst[1].get("reg.test/team/app:v1")  # nothing tagged


def test_wrong_docker_content_digest_header_is_refused(dst: Stores) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        data = b'{"schemaVersion":2}'
        headers = {"Content-Type": media.OCI_MANIFEST, "Docker-Content-Digest": Digest.of(b"x")}
        return httpx.Response(200, headers=headers, content=data)

    with pytest.raises(DigestMismatch, match="Docker-Content-Digest"):
        pull(*dst, "reg.test/a:v1", insecure=True, transport=httpx.MockTransport(handler))


# -- resume


def test_a_broken_download_resumes_with_range(src: Stores, dst: Stores) -> None:
    fake = FakeRegistry()
    pushed(src, fake)
    layer = layer_digest(src)
    fake.break_off[layer] = 1
    pull(*dst, "reg.test/team/app:v1", insecure=True, transport=fake.transport())
    gets = [h for m, p, h in fake.log if m == "GET" and p.endswith(layer)]
    assert len(gets) == 2
    assert "range" not in gets[0]
    assert gets[1]["range"] == f"bytes={len(fake.blobs[layer]) // 2}-"
    assert dst[0].read(layer) == fake.blobs[layer]
    assert dst[0].fsck() == [] and dst[0].ingests() == []


def test_when_retries_run_out_the_partial_ingest_stays_for_the_next_pull(
    src: Stores, dst: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "ATTEMPTS", 1)
    fake = FakeRegistry()
    pushed(src, fake)
    layer = layer_digest(src)
    size = len(fake.blobs[layer])
    fake.break_off[layer] = 1
    with pytest.raises(Unavailable, match="broke off"):
        pull(*dst, "reg.test/team/app:v1", insecure=True, transport=fake.transport())
    [ingest] = dst[0].ingests()
    assert (ingest.ref, ingest.offset) == (f"pull-{layer}", size // 2)
    assert dst[0].fsck() == []

    pull(*dst, "reg.test/team/app:v1", insecure=True, transport=fake.transport())
    last = [h for m, p, h in fake.log if m == "GET" and p.endswith(layer)][-1]
    assert last["range"] == f"bytes={size // 2}-"
    assert dst[0].ingests() == [] and dst[0].fsck() == []


def test_pull_keeps_its_blobs_from_a_collect_before_the_tag(src: Stores, tmp_path: Path) -> None:
    fake = FakeRegistry()
    digest = pushed(src, fake)
    dst = CollectBeforeTag(tmp_path / "gc")
    pull(dst.content, dst, "reg.test/team/app:v1", insecure=True, transport=fake.transport())
    [during] = dst.results  # ran with every blob in and the name not yet there
    assert during.removed_blobs == ()
    for blob, _ in src[0].walk():
        assert dst.content.read(blob) == src[0].read(blob)
    assert dst.get("reg.test/team/app:v1").target.digest == digest
    assert leases_for(dst.content).active() == [] and dst.content.fsck() == []

    # the control: the same collect, blind to the pull's lease, takes everything
    blind = CollectBeforeTag(tmp_path / "blind", gc_leases=LeaseManager(tmp_path / "none"))
    with pytest.raises(ImageNotFound):
        pull(
            blind.content, blind, "reg.test/team/app:v1", insecure=True, transport=fake.transport()
        )
    assert list(blind.content.walk()) == []


# -- auth


def test_bearer_token_flow_with_credentials_and_caching(src: Stores, dst: Stores) -> None:
    fake = FakeRegistry(auth="bearer", credentials=("alice", "s3cret"))
    pushed(src, fake, auth=("alice", "s3cret"))
    pull(
        *dst,
        "reg.test/team/app:v1",
        insecure=True,
        auth=("alice", "s3cret"),
        transport=fake.transport(),
    )
    assert dst[0].fsck() == []
    # one token per scope and client: push (pull,push) and pull (pull)
    assert len(fake.token_requests) == 2
    assert all(r["service"] == "fake" for r in fake.token_requests)
    assert fake.token_requests[0]["scope"] == "repository:team/app:pull,push"


def test_bearer_with_wrong_credentials_is_unauthorized(dst: Stores) -> None:
    fake = FakeRegistry(auth="bearer", credentials=("alice", "s3cret"))
    with pytest.raises(Unauthorized, match="UNAUTHORIZED"):
        pull(
            *dst,
            "reg.test/team/app:v1",
            insecure=True,
            auth=("bob", "x"),
            transport=fake.transport(),
        )


def test_basic_auth(src: Stores) -> None:
    fake = FakeRegistry(auth="basic", credentials=("alice", "s3cret"))
    with pytest.raises(Unauthorized, match=r"reg.test/team/app.*UNAUTHORIZED"):
        pushed(src, fake)
    pushed(src, fake, auth=("alice", "s3cret"))
    assert layer_digest(src) in fake.blobs


def test_client_ping_and_https_by_default() -> None:
    urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, json={})

    with RegistryClient("docker.io", transport=httpx.MockTransport(handler)) as client:
        client.ping()
    assert urls == ["https://registry-1.docker.io/v2/"]


def test_registry_error_tree() -> None:
    for kind in (NotFound, Unauthorized, DigestMismatch, Unavailable):
        assert issubclass(kind, RegistryError)
    assert issubclass(RegistryError, Exception)
    assert set(registry.__all__) >= {"RegistryClient", "pull", "push", "RegistryError"}

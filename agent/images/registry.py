"""`docker pull` / `docker push`: images to and from a registry (OCI distribution spec).

`RegistryClient` speaks the distribution API over httpx: `GET /v2/`, manifests
(GET/HEAD/PUT by tag or digest, with an Accept header for the OCI and Docker
manifest and index types), blobs (GET with `Range: bytes=N-` to resume, HEAD)
and uploads (POST then one monolithic PUT, or PATCH chunks then PUT). Every
`Docker-Content-Digest` the registry sends is cross-checked against what we
hashed. On a 401 it follows the challenge: `Bearer realm=…,service=…,scope=…`
fetches a token (with the basic credentials, if any) that is cached per scope;
`Basic` sends the credentials. `insecure=True` means plain HTTP.

`pull` resolves a reference (tag or digest), verifies every manifest against its
digest, resolves an index to this machine's platform (the index blob is kept),
fetches the config and layers four at a time through the content store and tags
the name only once everything is in, holding a lease (`agent.images.leases`)
on every blob from before it is written until then, so a concurrent
`gc.collect` cannot take them. The name points at the *platform
manifest*, as `archive.load` does; the index digest (Docker's RepoDigest) is
not recorded yet.

Blob ingests are named `pull-<digest>`: a download that breaks off is retried
(tenacity, exponential backoff) and continues at the writer's `offset` with a
Range request. When the retries run out the partial ingest stays, so the next
pull of the same blob resumes it (containerd's choice; stale ingests are for a
cleaner to drop by age). Bytes that do not match their digest or size are
refused and leave nothing behind: the content store discards the ingest.

`push` uploads the blobs the registry lacks (HEAD first), then the manifest (for
an index: each child manifest first) by tag, and returns its descriptor.

Errors name the reference and the registry's error code (from its JSON body):

    RegistryError(Exception)    anything else the registry refused
     ├─ NotFound                MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN, 404
     ├─ Unauthorized            401/403, a failed token request, UNAUTHORIZED, DENIED
     ├─ DigestMismatch          bytes, or a Docker-Content-Digest, that do not match
     └─ Unavailable             5xx, 429, connection errors (retried before raised)
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, BinaryIO

import httpx
import tenacity
from pydantic import ValidationError

from agent.content import ContentStore, Descriptor, Digest, IngestLocked, SizeMismatch, Writer
from agent.content import DigestMismatch as CorruptBlob
from agent.content import NotFound as NoIngest
from agent.images import media
from agent.images.leases import LeaseManager, leases_for
from agent.images.platform import missing_platform, pick_manifest
from agent.images.reference import Reference, parse
from agent.images.store import Image, ImageStore

Progress = Callable[[str, int, int], None]
"""`progress(digest, done_bytes, total_bytes)`; called from the download threads."""

ACCEPT = ", ".join([media.OCI_MANIFEST, media.OCI_INDEX, media.DOCKER_MANIFEST, media.DOCKER_LIST])
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
PARALLEL = 4
ATTEMPTS = 5

_CHUNK = 1 << 20
_MAX_MANIFEST = 4 << 20  # the spec's suggested limit for manifests
_MAX_DEPTH = 4  # index → index → … → manifest
_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"})
_AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
_PARAM = re.compile(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


# ============================================================================ errors


class RegistryError(Exception):
    """The registry refused, or sent something we refuse; names the reference."""

    def __init__(
        self, reference: str, message: str, *, code: str | None = None, status: int | None = None
    ) -> None:
        self.reference = reference
        self.code = code
        self.status = status
        detail = f" ({code})" if code else (f" (HTTP {status})" if status else "")
        super().__init__(f"{reference}: {message}{detail}")


class NotFound(RegistryError):
    pass


class Unauthorized(RegistryError):
    pass


class DigestMismatch(RegistryError):
    pass


class Unavailable(RegistryError):
    pass


def _error_from(response: httpx.Response, reference: str, what: str) -> RegistryError:
    """The error for a failed response, with the first code of its JSON error body."""
    code: str | None = None
    message = ""
    try:
        errors = json.loads(response.read()).get("errors") or []
        if errors and isinstance(errors[0], dict):
            code = str(errors[0].get("code") or "") or None
            message = str(errors[0].get("message") or "")
    except (ValueError, AttributeError, httpx.StreamError):
        pass
    status = response.status_code
    text = f"{what}: {message}" if message else f"{what} failed"
    kind: type[RegistryError]
    if code in _NOT_FOUND_CODES or status == 404:
        kind = NotFound
    elif code in _AUTH_CODES or status in (401, 403):
        kind = Unauthorized
    elif code == "DIGEST_INVALID":
        kind = DigestMismatch
    elif status >= 500 or status == 429:
        kind = Unavailable
    else:
        kind = RegistryError
    return kind(reference, text, code=code, status=status)


# ============================================================================ the client


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…"` → ("bearer", {"realm": …, "service": …})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


class RegistryClient:
    """One registry host; thread-safe (httpx's client is, the token cache is locked)."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.base = f"{'http' if insecure else 'https'}://{self.host}"
        self._credentials = auth
        self._client = httpx.Client(
            transport=transport, timeout=timeout, follow_redirects=True, trust_env=False
        )
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._lock = threading.Lock()
        self._fetching = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests and auth

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        scope: str,
        what: str,
        headers: dict[str, str] | None = None,
        body: bytes | Iterator[bytes] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send, answering one auth challenge; the caller checks the status."""
        for attempt in range(2):
            used = self._auth_header(scope)
            request = self._client.build_request(
                method, url, headers={**(headers or {}), **used}, content=body
            )
            try:
                response = self._client.send(request, stream=stream)
            except httpx.TransportError as e:
                raise Unavailable(what, f"{method} {request.url}: {e}") from e
            if response.status_code != 401 or attempt == 1:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.read()
            response.close()
            with self._fetching:  # one token request per scope, not one per thread
                if self._auth_header(scope) == used and not self._answer(challenge, scope, what):
                    return response
            if body is not None and not isinstance(body, bytes):
                return response  # a stream cannot be sent twice; the caller retries
        raise AssertionError("unreachable")

    def _auth_header(self, scope: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(scope)
            basic = self._basic
        if token:
            return {"Authorization": f"Bearer {token}"}
        if basic and self._credentials:
            raw = ":".join(self._credentials).encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}

    def _answer(self, challenge: str, scope: str, what: str) -> bool:
        """Get what the challenge asks for; False when we have nothing to offer."""
        scheme, params = _challenge(challenge)
        if scheme == "basic":
            if self._credentials is None or self._basic:
                return False
            with self._lock:
                self._basic = True
            return True
        if scheme != "bearer" or "realm" not in params:
            return False
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            response = self._client.get(params["realm"], params=query, auth=self._credentials)
        except httpx.TransportError as e:
            raise Unavailable(what, f"token request to {params['realm']}: {e}") from e
        if response.status_code != 200:
            error = _error_from(response, what, f"token request to {params['realm']}")
            raise Unauthorized(what, str(error).partition(": ")[2], code=error.code)
        try:
            doc = response.json()
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unauthorized(what, f"token endpoint {params['realm']} sent no token")
        with self._lock:
            self._tokens[scope] = token
        return True

    def _url(self, repo: str, kind: str, ref: str) -> str:
        return f"{self.base}/v2/{repo}/{kind}/{ref}"

    # -- the API

    def ping(self) -> None:
        """`GET /v2/`: the registry speaks the API (and our credentials, if any, work)."""
        response = self._send("GET", f"{self.base}/v2/", scope="", what=self.host)
        if response.status_code != 200:
            raise _error_from(response, self.host, "GET /v2/")

    def get_manifest(
        self, repo: str, ref: str, scope: str | None = None
    ) -> tuple[Descriptor, bytes]:
        """A manifest or index by tag or digest, verified against the digest we asked for."""
        what = f"{self.host}/{repo}{'@' if ref.startswith('sha') else ':'}{ref}"
        response = self._send(
            "GET",
            self._url(repo, "manifests", ref),
            scope=scope or f"repository:{repo}:pull",
            what=what,
            headers={"Accept": ACCEPT},
        )
        if response.status_code != 200:
            raise _error_from(response, what, "manifest")
        data = response.content
        if len(data) > _MAX_MANIFEST:
            raise RegistryError(what, f"manifest of {len(data)} bytes is too large")
        media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if media_type not in media.MANIFESTS | media.INDEXES:
            try:
                media_type = str(json.loads(data).get("mediaType") or media_type)
            except (ValueError, AttributeError):
                pass
        if media_type not in media.MANIFESTS | media.INDEXES:
            raise RegistryError(what, f"unsupported manifest type {media_type or 'none'!r}")
        expected = Digest(ref) if ":" in ref else None
        header = response.headers.get("docker-content-digest")
        actual = Digest.of(data, expected.algorithm if expected else "sha256")
        if expected is not None and actual != expected:
            raise DigestMismatch(what, f"manifest hashes to {actual}")
        if header and Digest.of(data, Digest(header).algorithm) != header:
            raise DigestMismatch(
                what, f"manifest does not hash to its Docker-Content-Digest {header}"
            )
        return Descriptor(media_type=media_type, digest=actual, size=len(data)), data

    def head_manifest(self, repo: str, ref: str) -> Descriptor | None:
        """The registry's descriptor of a manifest, or None when it has none."""
        what = f"{self.host}/{repo}:{ref}"
        response = self._send(
            "HEAD",
            self._url(repo, "manifests", ref),
            scope=f"repository:{repo}:pull",
            what=what,
            headers={"Accept": ACCEPT},
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _error_from(response, what, "manifest HEAD")
        digest = response.headers.get("docker-content-digest")
        if not digest:
            return None  # the spec lets a registry omit it; a GET would tell
        return Descriptor(
            media_type=response.headers.get("content-type", media.OCI_MANIFEST).partition(";")[0],
            digest=Digest(digest),
            size=int(response.headers.get("content-length", "0")),
        )

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> Descriptor:
        """Upload a manifest under a tag (or its digest); the registry's digest is checked."""
        what = f"{self.host}/{repo}:{ref}"
        response = self._send(
            "PUT",
            self._url(repo, "manifests", ref),
            scope=f"repository:{repo}:pull,push",
            what=what,
            headers={"Content-Type": media_type},
            body=data,
        )
        if response.status_code not in (200, 201, 202):
            raise _error_from(response, what, "manifest upload")
        desc = Descriptor(media_type=media_type, digest=Digest.of(data), size=len(data))
        header = response.headers.get("docker-content-digest")
        if header and header != desc.digest:
            raise DigestMismatch(what, f"registry stored {header}, we sent {desc.digest}")
        return desc

    def head_blob(self, repo: str, digest: str, *, for_push: bool = False) -> int | None:
        """The size of a blob the registry has, or None (`for_push`: with the push token)."""
        what = f"{self.host}/{repo}@{digest}"
        actions = "pull,push" if for_push else "pull"
        response = self._send(
            "HEAD",
            self._url(repo, "blobs", digest),
            scope=f"repository:{repo}:{actions}",
            what=what,
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _error_from(response, what, "blob HEAD")
        return int(response.headers.get("content-length", "-1"))

    def fetch_blob(
        self,
        repo: str,
        desc: Descriptor,
        writer: Writer,
        progress: Progress | None = None,
    ) -> None:
        """Stream a blob into `writer`, from its `offset` on (a Range request)."""
        what = f"{self.host}/{repo}@{desc.digest}"
        offset = writer.offset
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._send(
            "GET",
            self._url(repo, "blobs", desc.digest),
            scope=f"repository:{repo}:pull",
            what=what,
            headers=headers,
            stream=True,
        )
        try:
            if response.status_code == 416 and offset:
                writer.reset()  # what we have cannot be the start of this blob
                raise Unavailable(what, f"registry refused Range bytes={offset}-", status=416)
            if response.status_code not in (200, 206):
                raise _error_from(response, what, "blob")
            header = response.headers.get("docker-content-digest")
            if header and header != desc.digest:
                raise DigestMismatch(what, f"registry sent blob {header}")
            if response.status_code == 206:
                start = _range_start(response.headers.get("content-range", ""))
                if start != offset:
                    writer.reset()
                    raise Unavailable(what, f"asked for bytes {offset}-, got {start}-", status=206)
            elif offset:
                writer.reset()  # the registry ignored the Range: the whole blob again
            if progress:
                progress(desc.digest, writer.offset, desc.size)
            try:
                for chunk in response.iter_bytes():
                    writer.write(chunk)
                    if progress:
                        progress(desc.digest, writer.offset, desc.size)
            except httpx.TransportError as e:
                raise Unavailable(what, f"broke off at byte {writer.offset}: {e}") from e
        finally:
            response.close()

    def upload_blob(
        self, repo: str, desc: Descriptor, source: BinaryIO, chunk_size: int | None = None
    ) -> None:
        """POST an upload, then PUT it whole, or PATCH it in `chunk_size` pieces and PUT."""
        what = f"{self.host}/{repo}@{desc.digest}"
        scope = f"repository:{repo}:pull,push"
        response = self._send(
            "POST", f"{self.base}/v2/{repo}/blobs/uploads/", scope=scope, what=what, body=b""
        )
        if response.status_code != 202:
            raise _error_from(response, what, "upload start")
        location = self._location(response, what)
        if chunk_size is None:
            url = location.copy_merge_params({"digest": desc.digest})
            response = self._send(
                "PUT",
                url,
                scope=scope,
                what=what,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(desc.size),
                },
                body=_chunks(source),
            )
        else:
            offset = 0
            while chunk := source.read(chunk_size):
                response = self._send(
                    "PATCH",
                    location,
                    scope=scope,
                    what=what,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                    body=chunk,
                )
                if response.status_code != 202:
                    raise _error_from(response, what, f"upload chunk at byte {offset}")
                location = self._location(response, what)
                offset += len(chunk)
            url = location.copy_merge_params({"digest": desc.digest})
            response = self._send("PUT", url, scope=scope, what=what, body=b"")
        if response.status_code != 201:
            raise _error_from(response, what, "upload")
        header = response.headers.get("docker-content-digest")
        if header and header != desc.digest:
            raise DigestMismatch(what, f"registry stored {header}, we sent {desc.digest}")

    def _location(self, response: httpx.Response, what: str) -> httpx.URL:
        location = response.headers.get("location")
        if not location:
            raise RegistryError(what, "upload response has no Location")
        return httpx.URL(self.base).join(location)


def _range_start(header: str) -> int:
    match = re.match(r"bytes\s+(\d+)-", header)
    return int(match.group(1)) if match else -1


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(_CHUNK):
        yield chunk


def _retrying() -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type((Unavailable, IngestLocked)),
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=0.1, max=5),
        reraise=True,
    )


# ============================================================================ pull


def pull(
    content: ContentStore,
    images: ImageStore,
    ref: str,
    *,
    insecure: bool = False,
    auth: tuple[str, str] | None = None,
    progress: Progress | None = None,
    transport: httpx.BaseTransport | None = None,
    leases: LeaseManager | None = None,
) -> Image:
    """Fetch `ref` (tag or digest) and tag it; the name points at this platform's manifest.

    `leases` defaults to `leases_for(content)`, the directory `gc.collect` reads.
    """
    reference = parse(ref)
    repo = reference.path
    manager = leases if leases is not None else leases_for(content)
    with (
        manager.lease() as lease,
        RegistryClient(
            reference.domain, insecure=insecure, auth=auth, transport=transport
        ) as client,
    ):
        target = reference.digest or reference.tag
        assert target is not None  # parse gives a bare name the tag "latest"
        desc, data = client.get_manifest(repo, target)
        lease.add_blob(desc.digest, desc.media_type)
        content.put(data, desc)
        repo_digest = str(desc.digest)  # the index's, for a multi-platform image
        for _ in range(_MAX_DEPTH):
            if desc.media_type in media.MANIFESTS:
                break
            child = _pick_platform(str(reference), desc, data)
            desc, data = client.get_manifest(repo, child.digest)
            if desc.size != child.size:
                raise DigestMismatch(
                    str(reference), f"{child.digest}: size {desc.size}, index says {child.size}"
                )
            lease.add_blob(desc.digest, desc.media_type)
            content.put(data, desc)
        else:
            raise RegistryError(str(reference), f"indexes nested deeper than {_MAX_DEPTH}")
        blobs = _manifest_blobs(str(reference), data)
        for b in blobs:
            lease.add_blob(b.digest, b.media_type)  # before has(): see agent.images.leases
        missing = list({b.digest: b for b in blobs if not content.has(b.digest)}.values())
        for b in blobs:
            if b not in missing and progress:
                progress(b.digest, b.size, b.size)
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            futures = [
                pool.submit(_fetch, client, content, repo, b, progress, str(reference))
                for b in missing
            ]
            for future in futures:
                future.result()  # the first failure, after the others finished
        return images.tag(reference, desc, repo_digest=repo_digest)


def _fetch(
    client: RegistryClient,
    content: ContentStore,
    repo: str,
    desc: Descriptor,
    progress: Progress | None,
    reference: str,
) -> None:
    """One blob into the store, retried; see the module docstring for what stays behind."""
    ingest = f"pull-{desc.digest}"
    for attempt in _retrying():
        with attempt:
            if content.has(desc.digest):
                return  # another pull finished it
            writer = content.writer(
                desc.digest, desc.size, ref=ingest, media_type=desc.media_type
            )  # IngestLocked (another pull has it) is retried
            try:
                with writer as w:
                    if w.offset < desc.size:
                        client.fetch_blob(repo, desc, w, progress)
                    w.commit()
            except (CorruptBlob, SizeMismatch) as e:  # the store dropped the ingest
                raise DigestMismatch(reference, f"blob {desc.digest}: {e}") from e
            except Unavailable:
                if writer.offset == 0:
                    _abort(content, ingest)
                raise  # retried from the offset; the partial ingest stays for a later pull
            except BaseException:
                _abort(content, ingest)  # refused, not found, unauthorized: keep nothing
                raise


def _abort(content: ContentStore, ingest: str) -> None:
    try:
        content.abort(ingest)
    except NoIngest:
        pass


def _pick_platform(reference: str, index: Descriptor, data: bytes) -> Descriptor:
    children = _descriptors(
        reference, _json(reference, data).get("manifests"), f"index {index.digest}"
    )
    child = pick_manifest(children)
    if child is None:
        raise NotFound(reference, missing_platform(children))
    return child


def _manifest_blobs(reference: str, data: bytes) -> list[Descriptor]:
    doc = _json(reference, data)
    if not isinstance(doc.get("config"), dict):
        raise RegistryError(reference, "manifest has no config")
    return _descriptors(reference, [doc["config"], *(doc.get("layers") or [])], "manifest")


def _json(reference: str, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise RegistryError(reference, f"manifest is not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise RegistryError(reference, "manifest is not a JSON object")
    return doc


def _descriptors(reference: str, items: object, where: str) -> list[Descriptor]:
    if not isinstance(items, list):
        raise RegistryError(reference, f"{where}: expected a list of descriptors")
    try:
        return [Descriptor.model_validate(item) for item in items]
    except ValidationError as e:
        raise RegistryError(
            reference, f"{where}: bad descriptor ({e.errors()[0]['msg']})"
        ) from None


# ============================================================================ push


def push(
    content: ContentStore,
    images: ImageStore,
    ref: str,
    *,
    insecure: bool = False,
    auth: tuple[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    chunk_size: int | None = None,
) -> Descriptor:
    """Upload the image named `ref` to its registry; returns the manifest's descriptor."""
    reference = parse(ref)
    image = images.get(reference)
    with RegistryClient(
        reference.domain, insecure=insecure, auth=auth, transport=transport
    ) as client:
        pushed = _push_manifest(client, content, reference, image.target, chunk_size, depth=0)
    images.tag(reference, image.target, repo_digest=str(pushed.digest))
    return pushed


def _push_manifest(
    client: RegistryClient,
    content: ContentStore,
    reference: Reference,
    desc: Descriptor,
    chunk_size: int | None,
    depth: int,
) -> Descriptor:
    name = str(reference)
    data = content.read(desc.digest)
    if desc.media_type in media.INDEXES and depth < _MAX_DEPTH:
        for child in _descriptors(name, _json(name, data).get("manifests"), f"index {desc.digest}"):
            if not content.has(child.digest):
                raise NotFound(name, f"index {desc.digest}: child {child.digest} is not here")
            _push_manifest(client, content, reference, child, chunk_size, depth + 1)
    elif desc.media_type in media.MANIFESTS:
        blobs = list({b.digest: b for b in _manifest_blobs(name, data)}.values())
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            futures = [
                pool.submit(_push_blob, client, content, reference.path, b, chunk_size)
                for b in blobs
            ]
            for future in futures:
                future.result()
    else:
        raise RegistryError(name, f"cannot push a {desc.media_type}")
    tag = reference.tag if depth == 0 and reference.tag else desc.digest
    pushed = client.put_manifest(reference.path, tag, data, desc.media_type)
    if pushed.digest != desc.digest:
        raise DigestMismatch(name, f"pushed {pushed.digest}, expected {desc.digest}")
    return desc


def _push_blob(
    client: RegistryClient,
    content: ContentStore,
    repo: str,
    desc: Descriptor,
    chunk_size: int | None,
) -> None:
    for attempt in _retrying():
        with attempt:
            if client.head_blob(repo, desc.digest, for_push=True) is not None:
                return
            with content.open(desc.digest) as f:
                client.upload_blob(repo, desc, f, chunk_size)


__all__ = [
    "ACCEPT",
    "DigestMismatch",
    "NotFound",
    "Progress",
    "RegistryClient",
    "RegistryError",
    "Unauthorized",
    "Unavailable",
    "pull",
    "push",
]

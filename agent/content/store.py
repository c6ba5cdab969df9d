"""A content-addressed blob store laid out like an OCI image layout's `blobs/`.

    <root>/blobs/sha256/<hex>     committed blobs, read-only, named by their digest
    <root>/ingest/<key>/ref       the ingest's ref (key = sha256 of the ref)
    <root>/ingest/<key>/data      bytes received so far

Writes go to an ingest and become a blob only after their size and digest are
verified, by one rename: a reader never sees a partial or unverified blob, and a
failed verification leaves nothing behind. The data file is fsynced before the
rename and the blob directory after it; nothing else is synced.

Resumable downloads: an ingest named by a `ref` outlives its writer. A new
writer with the same ref re-hashes what is already there and continues at
`offset`, so a pull that broke off can ask the registry for
`Range: bytes=<offset>-` and append the rest (or call `reset()` when the server
sends the whole blob again). Stale partial data is harmless: it fails
verification at commit, which discards it. Only one writer per ref at a time;
a second one gets `IngestLocked`. Writers without a ref are discarded unless
committed. Ingests nobody resumes (a pull given up on, a writer killed) are
dropped by `prune_ingests(max_age)`, which `gc.collect` calls; a locked ingest
is never dropped.

Errors (`ValueError` for a malformed digest, otherwise):

    ContentError
     ├─ NotFound         no blob with that digest, or no ingest with that ref
     ├─ SizeMismatch     the bytes written are not the expected size
     ├─ DigestMismatch   the bytes written do not hash to the expected digest
     └─ IngestLocked     another writer holds this ref
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NoReturn

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import CoreSchema, core_schema

OCTET_STREAM = "application/octet-stream"
# Algorithms we can verify, with the length of their lowercase-hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------- digests


class Digest(str):
    """A validated `algorithm:encoded` digest; a `str`, so it serialises as one.

    Only the algorithms the store can verify are accepted (sha256, sha512), with
    exactly their length of lowercase hex. The OCI spec asks implementations to
    let unknown well-formed algorithms pass; we refuse them instead, naming them
    as unsupported, because a blob we cannot verify cannot enter the store.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if isinstance(value, Digest):
            return value
        problem = _digest_problem(value)
        if problem:
            raise ValueError(f"invalid digest {value!r}: {problem}")
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def encoded(self) -> str:
        return self.partition(":")[2]

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of `data`."""
        return cls(f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> CoreSchema:
        return core_schema.no_info_after_validator_function(cls, core_schema.str_schema())


def _digest_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if ":" not in value:
        return "missing the '<algorithm>:' prefix"
    if not _GRAMMAR.fullmatch(value):
        return "not of the form <algorithm>:<encoded> (OCI descriptor grammar)"
    algorithm, _, encoded = value.partition(":")
    if algorithm not in ALGORITHMS:
        supported = ", ".join(ALGORITHMS)
        return f"unsupported algorithm {algorithm!r} (supported: {supported})"
    length = ALGORITHMS[algorithm]
    if len(encoded) != length:
        return f"{algorithm} needs {length} hex characters, got {len(encoded)}"
    if not re.fullmatch(r"[0-9a-f]+", encoded):
        return f"{algorithm} needs lowercase hex (0-9, a-f)"
    return None


def _hash_file(path: Path, algorithm: str) -> Digest:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return Digest(f"{algorithm}:{h.hexdigest()}")


# ---------------------------------------------------------------------------- descriptors


def _alias(name: str) -> Any:
    """An optional field named `name` in JSON; Python code uses the snake_case name."""
    return Field(default=None, validation_alias=name, serialization_alias=name)


class Platform(BaseModel):
    """The platform an image manifest is for (image-index.md)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    architecture: str
    os: str
    os_version: str | None = _alias("os.version")
    os_features: tuple[str, ...] | None = _alias("os.features")
    variant: str | None = None
    features: tuple[str, ...] | None = None


class Descriptor(BaseModel):
    """An OCI content descriptor (descriptor.md); JSON names as in the spec.

    Unknown fields are ignored, as the spec requires of readers. Dump with
    `model_dump_json(exclude_none=True)` for the spec's shape. Hashable on
    (digest, size, mediaType) so descriptors can key dicts and sets.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, serialize_by_alias=True)

    media_type: str = Field(
        min_length=1, validation_alias="mediaType", serialization_alias="mediaType"
    )
    digest: Digest
    size: int = Field(ge=0)
    urls: tuple[str, ...] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifact_type: str | None = _alias("artifactType")

    def __hash__(self) -> int:
        return hash((self.digest, self.size, self.media_type))


# ---------------------------------------------------------------------------- errors


class ContentError(Exception):
    """Base of the store's errors; the message is one readable line."""


class NotFound(ContentError):
    pass


class SizeMismatch(ContentError):
    pass


class DigestMismatch(ContentError):
    pass


class IngestLocked(ContentError):
    pass


# ---------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Ingest:
    """A partial ingest: how far it got, when it started, when it last grew."""

    ref: str
    offset: int
    started_at: float
    updated_at: float
    age: float  # seconds since the last write, at the `now` given to ingests()


class ContentStore:
    """Blobs under `<root>/blobs`, partial writes under `<root>/ingest`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._ingest = self.root / "ingest"
        (self._blobs / "sha256").mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(exist_ok=True)

    # -- reading

    def path(self, digest: str) -> Path:
        """Where the blob lives (whether or not it exists)."""
        d = Digest(digest)
        return self._blobs / d.algorithm / d.encoded

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def walk(self) -> Iterator[tuple[Digest, int]]:
        """Every well-named blob with its size, in digest order; strays are skipped."""
        for algorithm in sorted(ALGORITHMS):
            directory = self._blobs / algorithm
            if not directory.is_dir():
                continue
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False) and not _digest_problem(
                    f"{algorithm}:{entry.name}"
                ):
                    yield Digest(f"{algorithm}:{entry.name}"), entry.stat().st_size

    # -- writing

    def put(self, data: bytes, expected: Descriptor | None = None) -> Descriptor:
        """Store `data`, verified against `expected` when given; returns its descriptor."""
        algorithm = expected.digest.algorithm if expected else "sha256"
        actual = Descriptor(
            media_type=expected.media_type if expected else OCTET_STREAM,
            digest=Digest.of(data, algorithm),
            size=len(data),
        )
        if expected is not None:
            _verify(expected.digest, expected.size, actual.digest, actual.size)
        if not self.has(actual.digest):
            with self.writer(actual.digest, actual.size) as w:
                w.write(data)
                w.commit()
        return expected if expected is not None else actual

    def writer(
        self,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        ref: str | None = None,
        media_type: str = OCTET_STREAM,
    ) -> Writer:
        """A writer into a new ingest, or the existing one named `ref` (resumed)."""
        if ref is not None and not ref:
            raise ValueError("ingest ref must not be empty")
        if expected_size is not None and expected_size < 0:
            raise ValueError(f"expected size must be >= 0, got {expected_size}")
        return Writer(
            store=self,
            ref=ref or f"anonymous-{uuid.uuid4().hex}",
            keep_partial=ref is not None,
            expected_digest=Digest(expected_digest) if expected_digest else None,
            expected_size=expected_size,
            media_type=media_type,
        )

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    # -- ingests

    def ingest_dir(self, ref: str) -> Path:
        return self._ingest / hashlib.sha256(ref.encode()).hexdigest()

    def ingests(self, now: float | None = None) -> list[Ingest]:
        """The partial ingests, by ref; `age` counts from `now` (default: the clock)."""
        now = time.time() if now is None else now
        found = []
        for directory in self._ingest.iterdir():
            try:
                ref = (directory / "ref").read_text()
                started = (directory / "ref").stat().st_mtime
                data = (directory / "data").stat()
            except (FileNotFoundError, NotADirectoryError):
                continue  # not an ingest, or one finishing right now; fsck reports strays
            updated = data.st_mtime
            found.append(Ingest(ref, data.st_size, started, updated, now - updated))
        return sorted(found, key=lambda i: i.ref)

    def abort(self, ref: str) -> None:
        """Drop the partial ingest `ref`; refuses while a writer holds it."""
        directory = self.ingest_dir(ref)
        try:
            fd = os.open(directory / "data", os.O_RDONLY)
        except FileNotFoundError:
            if not directory.is_dir():
                raise NotFound(f"no ingest with ref {ref!r}") from None
            shutil.rmtree(directory, ignore_errors=True)
            return
        try:
            _lock(fd, ref)
            shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(fd)

    def prune_ingests(self, max_age: float, now: float | None = None) -> list[str]:
        """Drop the ingests not written to for more than `max_age` seconds; their refs.

        An ingest a writer holds is left alone, however old (its lock is tried,
        never waited for), and the age is checked again under the lock, so an
        ingest resumed meanwhile stays. Directories without a data file (a
        writer that died while creating one) go by the age of the directory.
        """
        now = time.time() if now is None else now
        removed: list[str] = []
        for directory in sorted(self._ingest.iterdir()):
            if not _is_real_dir(directory):
                continue  # a stray; fsck reports it
            try:
                ref = (directory / "ref").read_text()
            except (FileNotFoundError, NotADirectoryError):
                ref = directory.name
            try:
                fd = os.open(directory / "data", os.O_RDONLY)
            except FileNotFoundError:
                try:
                    stale = now - directory.stat().st_mtime > max_age
                except FileNotFoundError:
                    continue
                if stale:
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(ref)
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer has it
                if now - os.fstat(fd).st_mtime > max_age and (directory / "data").exists():
                    shutil.rmtree(directory, ignore_errors=True)
                    removed.append(ref)
            finally:
                os.close(fd)
        return removed

    # -- checking

    def fsck(self) -> list[str]:
        """Problems found, as readable lines: corrupt blobs, stray files. Empty is good."""
        problems: list[str] = []
        for entry in sorted(self.root.iterdir()):
            if entry.name not in ("blobs", "ingest") or not _is_real_dir(entry):
                problems.append(f"{entry.name}: stray entry in the store root")
        for directory in sorted(self._blobs.iterdir()):
            rel = directory.relative_to(self.root)
            if directory.name not in ALGORITHMS or not _is_real_dir(directory):
                problems.append(f"{rel}: stray entry (not a supported digest algorithm)")
                continue
            for blob in sorted(directory.iterdir()):
                problems.extend(self._check_blob(directory.name, blob))
        for directory in sorted(self._ingest.iterdir()):
            rel = directory.relative_to(self.root)
            if not _is_real_dir(directory):
                problems.append(f"{rel}: stray entry (not an ingest directory)")
            elif not ((directory / "ref").is_file() and (directory / "data").is_file()):
                problems.append(f"{rel}: incomplete ingest (no ref or no data file)")
            else:
                for extra in sorted({p.name for p in directory.iterdir()} - {"ref", "data"}):
                    problems.append(f"{rel}/{extra}: stray file in an ingest")
        return problems

    def _check_blob(self, algorithm: str, blob: Path) -> list[str]:
        rel = blob.relative_to(self.root)
        if blob.is_symlink() or not blob.is_file():
            return [f"{rel}: stray entry (not a regular file)"]
        name = f"{algorithm}:{blob.name}"
        if _digest_problem(name):
            return [f"{rel}: stray file (name is not a {algorithm} digest)"]
        actual = _hash_file(blob, algorithm)
        if actual != name:
            return [f"{rel}: corrupt, content hashes to {actual}"]
        return []


# ---------------------------------------------------------------------------- the writer


class Writer:
    """Streams one blob into an ingest; `commit()` verifies it and makes it a blob.

    Use as a context manager. Leaving the block without committing keeps a named
    ingest (for a later resume) and discards an anonymous one. A size or digest
    mismatch always discards the ingest.
    """

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        keep_partial: bool,
        expected_digest: Digest | None,
        expected_size: int | None,
        media_type: str,
    ) -> None:
        self.ref = ref
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self._store = store
        self._keep_partial = keep_partial
        self._media_type = media_type
        self._dir = store.ingest_dir(ref)
        self._data = self._dir / "data"
        self._file = self._open_locked()
        self._closed = False
        self._hash = hashlib.new(expected_digest.algorithm if expected_digest else "sha256")
        self._offset = 0
        self._resume()

    @property
    def offset(self) -> int:
        """Bytes in the ingest so far: where a resumed download continues."""
        return self._offset

    def flush(self) -> None:
        """Nothing to do (commit() flushes): lets a Writer be a file for GzipFile."""

    def write(self, chunk: bytes | bytearray | memoryview) -> int:
        self._check_open()
        n = memoryview(chunk).nbytes
        if self.expected_size is not None and self._offset + n > self.expected_size:
            self._fail(
                SizeMismatch(
                    f"ingest {self.ref!r}: expected {self.expected_size} bytes, "
                    f"got at least {self._offset + n}"
                )
            )
        self._file.write(chunk)
        self._hash.update(chunk)
        self._offset += n
        return n

    def reset(self) -> None:
        """Start over from byte 0 (a server that ignored our Range request)."""
        self._check_open()
        self._file.truncate(0)
        self._hash = hashlib.new(self._hash.name)
        self._offset = 0

    def commit(self, before: Callable[[Digest], None] | None = None) -> Descriptor:
        """Verify size and digest, then move the data into `blobs/` (idempotent).

        `before(digest)` is called once the digest is verified and before the
        blob can appear in the store (or is found already there): a lease
        records it there, for a writer that learns the digest only now.
        """
        self._check_open()
        self._file.flush()
        actual = Digest(f"{self._hash.name}:{self._hash.hexdigest()}")
        try:
            _verify(self.expected_digest, self.expected_size, actual, self._offset)
        except ContentError as e:
            self._fail(e)
        if before is not None:
            try:
                before(actual)
            except BaseException:
                self.close()
                raise
        target = self._store.path(actual)
        if not target.is_file():
            os.fchmod(self._file.fileno(), 0o444)
            os.fsync(self._file.fileno())
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._data, target)
            _fsync_dir(target.parent)
        self._discard()
        return Descriptor(media_type=self._media_type, digest=actual, size=self._offset)

    def close(self) -> None:
        if self._closed:
            return
        if self._keep_partial:
            self._closed = True
            self._file.close()  # releases the lock; the partial data stays
        else:
            self._discard()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals

    def _open_locked(self) -> BinaryIO:
        """Open and lock the ingest's data file, creating the ingest if needed.

        A committing writer removes the directory while holding the lock, so
        after locking we check that the file we hold is still the one at the
        path; if not, we raced with a commit and try again on a fresh ingest.
        """
        for _ in range(10):
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                ref_file = self._dir / "ref"
                if not ref_file.exists():
                    ref_file.write_text(self.ref)
                f = open(self._data, "a+b")  # noqa: SIM115 (kept open: it holds the lock)
            except (FileNotFoundError, FileExistsError):
                # the directory went away under us (mkdir's exist_ok re-checks
                # is_dir() after EEXIST and raises if a commit removed it meanwhile)
                continue
            try:
                _lock(f.fileno(), self.ref)
                held, there = os.fstat(f.fileno()), os.stat(self._data)
            except FileNotFoundError:
                f.close()
                continue
            except BaseException:
                f.close()
                raise
            if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
                return f
            f.close()
        raise IngestLocked(f"ingest {self.ref!r} keeps changing under us; try again")

    def _resume(self) -> None:
        """Re-hash what a previous writer left, so that we continue after it."""
        size = os.fstat(self._file.fileno()).st_size
        if self.expected_size is not None and size > self.expected_size:
            self._file.truncate(0)  # longer than the blob can be: start over
            return
        self._file.seek(0)
        while chunk := self._file.read(_CHUNK):
            self._hash.update(chunk)
            self._offset += len(chunk)

    def _fail(self, error: ContentError) -> NoReturn:
        self._discard()
        raise error

    def _discard(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)  # under the lock
        self._closed = True
        self._file.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"ingest {self.ref!r}: writer is closed")


def _verify(
    expected_digest: Digest | None, expected_size: int | None, actual: Digest, size: int
) -> None:
    if expected_size is not None and size != expected_size:
        raise SizeMismatch(f"expected {expected_size} bytes, got {size} ({actual})")
    if expected_digest is not None and actual != expected_digest:
        raise DigestMismatch(f"expected {expected_digest}, got {actual}")


def _lock(fd: int, ref: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise IngestLocked(f"ingest {ref!r} is being written by another writer") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()

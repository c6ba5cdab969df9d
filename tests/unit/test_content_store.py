"""The content store: digests, descriptors, verified writes, resumable ingests, fsck."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import agent.content
from agent.content import (
    ContentError,
    ContentStore,
    Descriptor,
    Digest,
    DigestMismatch,
    IngestLocked,
    NotFound,
    SizeMismatch,
)

# From the OCI image spec: `{}` is the empty descriptor's blob (manifest.md).
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def leftovers(store: ContentStore) -> list[str]:
    """Everything in the store that is not a committed, good blob."""
    return [str(p.relative_to(store.root)) for p in (store.root / "ingest").iterdir()]


# -------------------------------------------------------------------------- digests

# descriptor.md, "Digests": the example table and the example descriptors.
SPEC_ACCEPTED = [
    "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
    "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
    "sha256:87923725d74f4bfb94c9e86d64170f7521aad8221a5de834851470ca142da630",
    EMPTY_JSON_DIGEST,
]
SPEC_REJECTED = [
    # shown elided in the table: not 128 hex characters as written
    ("sha512:401b09eab3c013d4ca54922bb802bec8fd5318192b0a75f201d8b372742...", "grammar"),
    # well-formed but unregistered, or registered but not one we can verify
    ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", "unsupported algorithm"),
    ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", "unsupported algorithm"),
    (
        "blake3:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
        "unsupported algorithm 'blake3'",
    ),
    # "Note that [A-F] MUST NOT be used here."
    ("sha256:6C3C624B58DBBCD3C0DD82B4C53F04194D1247C6EEBDAAB7C610CF7D66709B3B", "lowercase"),
]
OTHER_REJECTED = [
    ("", "missing the '<algorithm>:' prefix"),
    ("6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b", "prefix"),
    ("sha256:", "grammar"),
    ("SHA256:" + "a" * 64, "grammar"),
    ("sha256:" + "a" * 63, "needs 64 hex characters, got 63"),
    ("sha256:" + "a" * 65, "got 65"),
    ("sha256:" + "g" * 64, "lowercase hex"),
    ("sha512:" + "a" * 64, "sha512 needs 128"),
    ("sha256:../../../etc/passwd", "grammar"),
    ("sha256:" + "a" * 62 + "/x", "grammar"),
]


@pytest.mark.parametrize("digest", SPEC_ACCEPTED)
def test_spec_example_digests_are_accepted(digest: str) -> None:
    d = Digest(digest)
    assert d == digest
    assert (d.algorithm, d.encoded) == ("sha256", digest[7:])


@pytest.mark.parametrize(("digest", "problem"), SPEC_REJECTED + OTHER_REJECTED)
def test_bad_digests_are_rejected(digest: str, problem: str) -> None:
    with pytest.raises(ValueError) as exc:
        Digest(digest)
    assert repr(digest) in str(exc.value)  # names the digest...
    assert problem in str(exc.value)  # ...and what is wrong with it


def test_digest_of_bytes() -> None:
    assert Digest.of(EMPTY_JSON) == EMPTY_JSON_DIGEST
    d512 = Digest.of(b"x", "sha512")
    assert d512 == "sha512:" + hashlib.sha512(b"x").hexdigest()
    assert d512.algorithm == "sha512"
    assert Digest(d512) is d512


# -------------------------------------------------------------------------- descriptors

SPEC_DESCRIPTOR = """{
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "size": 7682,
  "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
  "urls": ["https://example.com/example-manifest"]
}"""


def test_descriptor_reads_and_writes_the_spec_shape() -> None:
    d = Descriptor.model_validate_json(SPEC_DESCRIPTOR)
    assert d.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert d.size == 7682
    assert isinstance(d.digest, Digest)
    assert d.urls == ("https://example.com/example-manifest",)
    out = d.model_dump(mode="json", exclude_none=True)
    assert out == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 7682,
        "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
        "urls": ["https://example.com/example-manifest"],
    }
    assert Descriptor.model_validate_json(d.model_dump_json(exclude_none=True)) == d


def test_descriptor_platform_and_unknown_fields() -> None:
    d = Descriptor.model_validate(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": EMPTY_JSON_DIGEST,
            "size": 2,
            "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.1"},
            "artifactType": "application/vnd.example.sbom.v1",
            "annotations": {"org.opencontainers.image.title": "x"},
            "somethingNew": True,  # readers must ignore unknown properties
        }
    )
    assert d.platform is not None and d.platform.os_version == "10.0.1"
    assert d.artifact_type == "application/vnd.example.sbom.v1"
    dumped = d.model_dump(mode="json", exclude_none=True)
    assert dumped["platform"]["os.version"] == "10.0.1"
    assert "somethingNew" not in dumped
    assert len({d, d}) == 1  # hashable despite the annotations dict


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("size", -1, "greater than or equal to 0"),
        ("digest", "sha256:abc", "needs 64 hex characters"),
        ("digest", "md5:" + "a" * 32, "unsupported algorithm"),
        ("mediaType", "", "at least 1 character"),
    ],
)
def test_descriptor_validation(field: str, value: object, problem: str) -> None:
    raw = {"mediaType": "application/octet-stream", "digest": EMPTY_JSON_DIGEST, "size": 2}
    with pytest.raises(ValidationError, match=problem):
        Descriptor.model_validate({**raw, field: value})


def test_descriptor_is_frozen() -> None:
    d = Descriptor(media_type="a/b", digest=Digest(EMPTY_JSON_DIGEST), size=2)
    with pytest.raises(ValidationError):
        d.size = 3


# -------------------------------------------------------------------------- the store


def test_round_trip_and_layout(store: ContentStore) -> None:
    data = b"hello, layers"
    desc = store.put(data)
    assert desc == Descriptor(
        media_type="application/octet-stream", digest=Digest(sha256(data)), size=len(data)
    )
    blob = store.root / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    assert store.path(desc.digest) == blob
    assert blob.read_bytes() == data
    assert store.has(desc.digest)
    assert store.size(desc.digest) == len(data)
    assert store.read(desc.digest) == data
    with store.open(desc.digest) as f:
        assert f.read() == data
    assert list(store.walk()) == [(desc.digest, len(data))]
    assert store.fsck() == []
    assert leftovers(store) == []


def test_put_keeps_the_expected_descriptor(store: ContentStore) -> None:
    expected = Descriptor(
        media_type="application/vnd.oci.empty.v1+json",
        digest=Digest(EMPTY_JSON_DIGEST),
        size=2,
        annotations={"a": "b"},
    )
    assert store.put(EMPTY_JSON, expected) is expected
    assert store.put(EMPTY_JSON, expected) is expected  # again: idempotent
    assert store.read(EMPTY_JSON_DIGEST) == EMPTY_JSON


def test_sha512_blobs(store: ContentStore) -> None:
    expected = Descriptor(media_type="a/b", digest=Digest.of(b"x" * 10, "sha512"), size=10)
    store.put(b"x" * 10, expected)
    assert store.path(expected.digest).parent.name == "sha512"
    assert list(store.walk()) == [(expected.digest, 10)]
    assert store.fsck() == []


def test_streaming_writer(store: ContentStore) -> None:
    chunks = [os.urandom(1000) for _ in range(5)]
    data = b"".join(chunks)
    with store.writer(sha256(data), len(data), media_type="application/x-tar") as w:
        for chunk in chunks:
            w.write(chunk)
        assert w.offset == len(data)
        desc = w.commit()
    assert desc.media_type == "application/x-tar"
    assert (desc.digest, desc.size) == (sha256(data), len(data))
    assert store.read(desc.digest) == data
    assert leftovers(store) == []


def test_committing_existing_content_is_fine(store: ContentStore) -> None:
    first = store.put(b"same")
    with store.writer(ref="again") as w:
        w.write(b"same")
        assert w.commit() == first
    assert list(store.walk()) == [(first.digest, 4)]
    assert leftovers(store) == []


def test_missing_blobs(store: ContentStore) -> None:
    missing = sha256(b"nope")
    assert not store.has(missing)
    for call in (store.size, store.open, store.read, store.delete):
        with pytest.raises(NotFound, match=missing):
            call(missing)


def test_delete(store: ContentStore) -> None:
    desc = store.put(b"bye")
    store.delete(desc.digest)
    assert not store.has(desc.digest)
    assert list(store.walk()) == []


def test_malformed_digests_never_reach_the_file_system(store: ContentStore) -> None:
    for bad in ("sha256:../../../../etc/passwd", "sha256/../x", "../x"):
        with pytest.raises(ValueError, match="invalid digest"):
            store.path(bad)
        with pytest.raises(ValueError):
            store.has(bad)
        with pytest.raises(ValueError):
            store.writer(expected_digest=bad)


# -------------------------------------------------------------------------- verification


def assert_nothing_left(store: ContentStore) -> None:
    assert list(store.walk()) == []
    assert store.ingests() == []
    assert leftovers(store) == []
    assert store.fsck() == []


@pytest.mark.parametrize("ref", [None, "layer-1"])
def test_digest_mismatch_leaves_nothing(store: ContentStore, ref: str | None) -> None:
    with store.writer(sha256(b"good"), ref=ref) as w:
        w.write(b"evil")
        with pytest.raises(DigestMismatch) as exc:
            w.commit()
    assert str(exc.value) == f"expected {sha256(b'good')}, got {sha256(b'evil')}"
    assert isinstance(exc.value, ContentError)
    assert_nothing_left(store)


@pytest.mark.parametrize("ref", [None, "layer-1"])
def test_short_content_leaves_nothing(store: ContentStore, ref: str | None) -> None:
    with store.writer(sha256(b"good"), 4, ref=ref) as w:
        w.write(b"goo")
        with pytest.raises(SizeMismatch, match="expected 4 bytes, got 3"):
            w.commit()
    assert_nothing_left(store)


def test_too_much_content_is_refused_as_it_arrives(store: ContentStore) -> None:
    with store.writer(sha256(b"good"), 4, ref="x") as w:
        w.write(b"go")
        with pytest.raises(SizeMismatch, match="expected 4 bytes, got at least 7"):
            w.write(b"odbad")
        with pytest.raises(ValueError, match="closed"):
            w.write(b"more")
    assert_nothing_left(store)


def test_put_with_wrong_expectations_stores_nothing(store: ContentStore) -> None:
    wrong_digest = Descriptor(media_type="a/b", digest=Digest(sha256(b"good")), size=4)
    with pytest.raises(DigestMismatch):
        store.put(b"evil", wrong_digest)
    wrong_size = Descriptor(media_type="a/b", digest=Digest(sha256(b"good")), size=5)
    with pytest.raises(SizeMismatch):
        store.put(b"good", wrong_size)
    assert_nothing_left(store)


def test_anonymous_writer_left_uncommitted_is_discarded(store: ContentStore) -> None:
    with store.writer() as w:
        w.write(b"partial")
    assert_nothing_left(store)


# -------------------------------------------------------------------------- resumable ingest


def test_resume_after_a_broken_download(store: ContentStore) -> None:
    data = os.urandom(10_000)
    ref = "layer-" + sha256(data)

    with pytest.raises(ConnectionError), store.writer(sha256(data), len(data), ref=ref) as w:
        w.write(data[:4096])
        raise ConnectionError("registry went away")

    [ingest] = store.ingests(now=1e12)
    assert (ingest.ref, ingest.offset) == (ref, 4096)
    assert ingest.started_at <= ingest.updated_at
    assert ingest.age == pytest.approx(1e12 - ingest.updated_at)
    assert store.fsck() == []  # a partial ingest is not a problem

    with store.writer(sha256(data), len(data), ref=ref) as w:
        assert w.offset == 4096  # ask for Range: bytes=4096-
        w.write(data[w.offset :])
        desc = w.commit()
    assert store.read(desc.digest) == data
    assert store.ingests() == []
    assert leftovers(store) == []


def test_resume_with_a_wrong_partial_fails_verification(store: ContentStore) -> None:
    with store.writer(ref="r") as w:
        w.write(b"XXXX")
    with store.writer(sha256(b"good data"), ref="r") as w:
        w.write(b" data")
        with pytest.raises(DigestMismatch):
            w.commit()
    assert_nothing_left(store)


def test_partial_longer_than_expected_starts_over(store: ContentStore) -> None:
    with store.writer(ref="r") as w:
        w.write(b"much too long")
    with store.writer(sha256(b"ok"), 2, ref="r") as w:
        assert w.offset == 0
        w.write(b"ok")
        w.commit()
    assert store.read(sha256(b"ok")) == b"ok"


def test_reset_starts_over(store: ContentStore) -> None:
    with store.writer(ref="r") as w:
        w.write(b"ab")
    with store.writer(sha256(b"abc"), 3, ref="r") as w:
        assert w.offset == 2
        w.reset()  # the server ignored our Range header and sends everything
        w.write(b"abc")
        w.commit()
    assert store.read(sha256(b"abc")) == b"abc"


def test_one_writer_per_ref(store: ContentStore) -> None:
    with store.writer(ref="r") as first:
        first.write(b"a")
        with pytest.raises(IngestLocked, match="'r'"):
            store.writer(ref="r")
        with pytest.raises(IngestLocked):
            store.abort("r")
    with store.writer(ref="r") as second:  # free again once the first is closed
        assert second.offset == 1


def test_abort(store: ContentStore) -> None:
    with store.writer(ref="r") as w:
        w.write(b"abc")
    assert [i.ref for i in store.ingests()] == ["r"]
    store.abort("r")
    assert_nothing_left(store)
    with pytest.raises(NotFound, match="'r'"):
        store.abort("r")


def test_empty_ref_is_refused(store: ContentStore) -> None:
    with pytest.raises(ValueError, match="ref"):
        store.writer(ref="")


# -------------------------------------------------------------------------- concurrency


def test_concurrent_writers_of_the_same_content(store: ContentStore) -> None:
    data = os.urandom(256 * 1024)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            barrier.wait()
            with store.writer(sha256(data), len(data)) as w:
                for i in range(0, len(data), 8192):
                    w.write(data[i : i + 8192])
                w.commit()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list(store.walk()) == [(sha256(data), len(data))]
    assert store.read(sha256(data)) == data
    assert_nothing_left_but(store, sha256(data))


def test_concurrent_writers_of_one_ref(store: ContentStore) -> None:
    data = b"x" * 1000
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def write() -> None:
        barrier.wait()
        try:
            with store.writer(sha256(data), len(data), ref="shared") as w:
                w.write(data[w.offset :])
                w.commit()
            outcomes.append("committed")
        except IngestLocked:
            outcomes.append("locked")

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "committed" in outcomes
    assert set(outcomes) <= {"committed", "locked"}
    assert store.read(sha256(data)) == data
    assert_nothing_left_but(store, sha256(data))


def assert_nothing_left_but(store: ContentStore, digest: str) -> None:
    assert [d for d, _ in store.walk()] == [digest]
    assert leftovers(store) == []
    assert store.fsck() == []


# -------------------------------------------------------------------------- fsck


def test_fsck_catches_a_corrupted_blob(store: ContentStore) -> None:
    desc = store.put(b"precious bytes")
    blob = store.path(desc.digest)
    blob.chmod(0o644)  # committed blobs are read-only
    raw = bytearray(blob.read_bytes())
    raw[3] ^= 0x01
    blob.write_bytes(bytes(raw))
    [problem] = store.fsck()
    assert problem.startswith(f"blobs/sha256/{desc.digest.encoded}: corrupt")
    assert sha256(bytes(raw)) in problem


def test_fsck_catches_stray_files(store: ContentStore) -> None:
    store.put(b"good")
    root = store.root
    (root / "junk").write_text("x")
    (root / "blobs" / "README").write_text("x")
    (root / "blobs" / "md5").mkdir()
    (root / "blobs" / "sha256" / "not-a-digest").write_text("x")
    (root / "blobs" / "sha256" / ("a" * 64)).mkdir()
    (root / "blobs" / "sha256" / ("b" * 64)).symlink_to("/etc/hostname")
    (root / "ingest" / "loose-file").write_text("x")
    (root / "ingest" / "half-made").mkdir()
    problems = store.fsck()
    assert problems == [
        "junk: stray entry in the store root",
        "blobs/README: stray entry (not a supported digest algorithm)",
        "blobs/md5: stray entry (not a supported digest algorithm)",
        f"blobs/sha256/{'a' * 64}: stray entry (not a regular file)",
        f"blobs/sha256/{'b' * 64}: stray entry (not a regular file)",
        "blobs/sha256/not-a-digest: stray file (name is not a sha256 digest)",
        "ingest/half-made: incomplete ingest (no ref or no data file)",
        "ingest/loose-file: stray entry (not an ingest directory)",
    ]
    assert [d for d, _ in store.walk()] == [sha256(b"good")]  # strays are never listed
    assert store.ingests() == []


# -------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=4096), chunk=st.integers(min_value=1, max_value=1024))
def test_put_read_round_trip(data: bytes, chunk: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = ContentStore(tmp)
        desc = store.put(data)
        assert desc.digest == sha256(data) and desc.size == len(data)
        assert store.read(desc.digest) == data
        with store.writer(desc.digest, desc.size) as w:  # chunked, same blob
            for i in range(0, len(data), chunk):
                w.write(data[i : i + chunk])
            assert w.commit().digest == desc.digest
        assert list(store.walk()) == [(desc.digest, len(data))]
        assert store.fsck() == []


def test_public_api() -> None:
    for name in agent.content.__all__:
        assert getattr(agent.content, name) is not None
    public = {n for n in vars(agent.content) if not n.startswith("_")} - {"annotations", "store"}
    assert public == set(agent.content.__all__)


# -------------------------------------------------------------------------- stale ingests


def _aged(store: ContentStore, ref: str, seconds: float) -> None:
    """Make the ingest `ref` look as if last written `seconds` ago."""
    data = store.ingest_dir(ref) / "data"
    then = data.stat().st_mtime - seconds
    os.utime(data, (then, then))


def _partial(store: ContentStore, ref: str, data: bytes = b"partial") -> None:
    with store.writer(sha256(data * 2), len(data) * 2, ref=ref) as w:
        w.write(data)  # not committed: a named ingest stays for a resume


def test_prune_ingests_drops_old_unlocked_keeps_fresh_and_locked(store: ContentStore) -> None:
    _partial(store, "old")
    _partial(store, "fresh")
    _partial(store, "old-but-held")
    _aged(store, "old", 3600)
    _aged(store, "old-but-held", 3600)
    with store.writer(ref="old-but-held") as held:  # a live writer holds its lock
        _aged(store, "old-but-held", 3600)  # and has not written for an hour
        removed = store.prune_ingests(max_age=600)
        assert held.offset == len(b"partial")
    assert removed == ["old"]
    assert [i.ref for i in store.ingests()] == ["fresh", "old-but-held"]
    assert not store.ingest_dir("old").exists()
    assert store.fsck() == []


def test_prune_ingests_age_is_counted_from_now(store: ContentStore) -> None:
    _partial(store, "pull-x")
    [ingest] = store.ingests()
    assert store.prune_ingests(max_age=100, now=ingest.updated_at + 99) == []
    assert store.prune_ingests(max_age=100, now=ingest.updated_at + 101) == ["pull-x"]
    assert store.ingests() == []


def test_prune_ingests_drops_an_old_ingest_without_data(store: ContentStore) -> None:
    directory = store.ingest_dir("crashed")
    directory.mkdir()
    (directory / "ref").write_text("crashed")
    old = directory.stat().st_mtime - 3600
    os.utime(directory, (old, old))
    fresh = store.ingest_dir("starting")
    fresh.mkdir()
    (fresh / "ref").write_text("starting")
    assert store.prune_ingests(max_age=600) == ["crashed"]
    assert fresh.is_dir() and not directory.exists()


def test_a_pruned_ingest_is_started_afresh_by_the_next_writer(store: ContentStore) -> None:
    data = b"0123456789"
    _partial(store, "pull-y", data[:4])
    _aged(store, "pull-y", 3600)
    assert store.prune_ingests(max_age=600) == ["pull-y"]
    with store.writer(sha256(data), len(data), ref="pull-y") as w:
        assert w.offset == 0
        w.write(data)
        assert w.commit().digest == sha256(data)
    assert store.fsck() == []

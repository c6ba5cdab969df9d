"""Layer extraction, chain IDs and mount descriptions, without root.

What needs root (owners, devices, whiteouts, the opaque xattr, mounting) is in
tests/integration/test_snapshots_overlay.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agent.snapshots as snapshots
from agent.runtime.linux import flags
from agent.snapshots import (
    ArchiveError,
    Compression,
    DiffIDMismatch,
    Mount,
    MountOptionsTooLong,
    OverlaySnapshotter,
    SnapshotInUse,
    SnapshotNotFound,
    UnsafeArchive,
    UnsupportedMediaType,
    apply_layer,
    archive,
    chain_id,
    compression_of,
    overlay_mounts,
    unpack_to_snapshot,
)
from agent.snapshots.mount import MountCall, parse_options, plan

TAR = "application/vnd.oci.image.layer.v1.tar"
TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


# -- building layers ---------------------------------------------------------------------


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, attrs: dict[str, object] | None = None
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_000_000_000
    for key, value in (attrs or {}).items():
        setattr(info, key, value)
    return info


def file(name: str, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.REGTYPE, attrs)
    info.size = len(data)
    return info, data


def directory(name: str, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, attrs), b""


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.SYMTYPE, {"linkname": target}), b""


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.LNKTYPE, {"linkname": target}), b""


def device(name: str, major: int = 1, minor: int = 3) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.CHRTYPE, {"devmajor": major, "devminor": minor}), b""


def make_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Every entry under root: 'd', 'f:<content>', 'l:<target>' or 'p' (a fifo)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if stat.S_ISFIFO(path.lstat().st_mode):
            found[rel] = "p"
        elif path.is_symlink():
            found[rel] = "l:" + os.readlink(path)
        elif path.is_dir():
            found[rel] = "d"
        else:
            found[rel] = "f:" + path.read_text()
    return found


# -- the public surface --------------------------------------------------------------------


def test_public_api_is_what_all_says() -> None:
    for name in snapshots.__all__:
        assert hasattr(snapshots, name), name
    public = {n for n in vars(snapshots) if not n.startswith("_")}
    modules = {"archive", "base", "mount", "overlay", "annotations"}
    assert public - modules == set(snapshots.__all__)
    assert issubclass(UnsafeArchive, ValueError)
    assert issubclass(SnapshotNotFound, KeyError)


def conforms(s: OverlaySnapshotter) -> snapshots.Snapshotter:
    return s  # mypy checks that OverlaySnapshotter is a Snapshotter


# -- chain IDs -------------------------------------------------------------------------------


def test_chain_ids_follow_the_spec_formula() -> None:
    a, b, c = (sha256(x) for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert chain_id([a, b, c]) == [a, ab, abc]
    assert chain_id([a]) == [a]
    assert chain_id([]) == []
    # The order of the layers matters.
    assert chain_id([b, a])[1] != ab


def test_chain_id_known_vector() -> None:
    # Two real diff IDs (sha256 of b"" and of b"abc") and their chain, worked out by hand.
    empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256(b"") == empty and sha256(b"abc") == abc
    expected = "sha256:" + hashlib.sha256((empty + " " + abc).encode()).hexdigest()
    assert chain_id([empty, abc]) == [empty, expected]


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "SHA256:" + "0" * 64, ""])
def test_chain_id_refuses_what_is_not_a_sha256_digest(bad: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        chain_id([sha256(b"a"), bad])


# -- media types and diff IDs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (TAR, Compression.NONE),
        (TGZ, Compression.GZIP),
        (ZSTD, Compression.ZSTD),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar", Compression.NONE),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", Compression.ZSTD),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression.GZIP),
    ],
)
def test_media_type_dispatch(media_type: str, compression: Compression) -> None:
    assert compression_of(media_type) is compression


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        "",
    ],
)
def test_unknown_media_types_are_refused(media_type: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaType, match="not a supported layer media type"):
        apply_layer(io.BytesIO(make_tar()), str(tmp_path), media_type)


@pytest.mark.parametrize(
    "media_type",
    [TAR, TGZ, "application/vnd.docker.image.rootfs.diff.tar.gzip"],
)
def test_diff_id_is_sha256_of_the_uncompressed_tar(media_type: str, tmp_path: Path) -> None:
    raw = make_tar(directory("etc"), file("etc/hostname", b"box\n"), file("big", b"x" * 300_000))
    blob = gzip.compress(raw) if compression_of(media_type) is Compression.GZIP else raw
    result = apply_layer(io.BytesIO(blob), str(tmp_path), media_type)
    assert result.diff_id == sha256(raw)
    assert result.size == len(raw)  # the tar's end-of-archive padding included
    assert (tmp_path / "etc/hostname").read_text() == "box\n"
    assert (tmp_path / "big").stat().st_size == 300_000


def test_multi_member_gzip_is_read_whole(tmp_path: Path) -> None:
    raw = make_tar(file("a", b"1"), file("b", b"2"))
    blob = gzip.compress(raw[:1024]) + gzip.compress(raw[1024:])
    assert apply_layer(io.BytesIO(blob), str(tmp_path), TGZ).diff_id == sha256(raw)
    assert tree(tmp_path) == {"a": "f:1", "b": "f:2"}


def test_zstd_without_zstandard_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard -> ImportError
    with pytest.raises(UnsupportedMediaType, match="not supported: install zstandard"):
        apply_layer(io.BytesIO(b"\x28\xb5\x2f\xfd"), str(tmp_path), ZSTD)


def test_zstd_layers_with_zstandard(tmp_path: Path) -> None:
    zstandard = pytest.importorskip("zstandard")
    raw = make_tar(file("z", b"zstd"))
    blob = zstandard.ZstdCompressor().compress(raw)
    assert apply_layer(io.BytesIO(blob), str(tmp_path), ZSTD).diff_id == sha256(raw)
    assert (tmp_path / "z").read_text() == "zstd"


@pytest.mark.parametrize(
    ("blob", "media_type"),
    [
        (b"", TAR),
        (b"this is not a tar archive" * 40, TAR),
        (b"not gzip at all", TGZ),
        (gzip.compress(b"x" * 5000, mtime=0)[:-20], TGZ),  # truncated
    ],
    ids=["empty", "not-a-tar", "not-gzip", "truncated-gzip"],
)
def test_malformed_layers_are_archive_errors(blob: bytes, media_type: str, tmp_path: Path) -> None:
    with pytest.raises(ArchiveError):
        apply_layer(io.BytesIO(blob), str(tmp_path), media_type)


# -- extraction (what needs no root) -------------------------------------------------------


def test_extracts_files_dirs_links_modes_and_times(tmp_path: Path) -> None:
    raw = make_tar(
        directory("usr", mode=0o750, mtime=1_500_000_000),
        directory("usr/bin"),
        file("usr/bin/tool", b"#!/bin/sh\n", mode=0o755, mtime=1_600_000_000),
        file("usr/bin/conf", b"c", mode=0o600),
        symlink("bin", "usr/bin"),
        symlink("abs", "/usr/bin/tool"),  # a link may point anywhere; it is never followed
        hardlink("usr/bin/tool2", "usr/bin/tool"),
        (_info("fifo", tarfile.FIFOTYPE, {"mode": 0o640}), b""),
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(raw), str(dest), TAR, same_owner=False)
    assert tree(dest) == {
        "abs": "l:/usr/bin/tool",
        "bin": "l:usr/bin",
        "fifo": "p",
        "usr": "d",
        "usr/bin": "d",
        "usr/bin/conf": "f:c",
        "usr/bin/tool": "f:#!/bin/sh\n",
        "usr/bin/tool2": "f:#!/bin/sh\n",
    }
    assert stat.S_IMODE((dest / "usr").stat().st_mode) == 0o750
    assert (dest / "usr").stat().st_mtime == 1_500_000_000  # set after its contents
    assert stat.S_IMODE((dest / "usr/bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "usr/bin/conf").stat().st_mode) == 0o600
    assert (dest / "usr/bin/tool").stat().st_mtime == 1_600_000_000
    assert (dest / "usr/bin/tool").stat().st_ino == (dest / "usr/bin/tool2").stat().st_ino
    assert stat.S_IMODE((dest / "fifo").lstat().st_mode) == 0o640
    assert os.lstat(dest / "bin").st_mtime == 1_000_000_000


def test_user_xattrs_are_applied_and_overlay_xattrs_are_not(tmp_path: Path) -> None:
    info, data = file("f", b"x")
    info.pax_headers = {
        "SCHILY.xattr.user.comment": "hello",
        "SCHILY.xattr.trusted.overlay.opaque": "y",
        "SCHILY.xattr.user.overlay.redirect": "/etc",
    }
    apply_layer(io.BytesIO(make_tar((info, data))), str(tmp_path), TAR, same_owner=False)
    try:
        names = os.listxattr(tmp_path / "f")
    except OSError:
        pytest.skip("no xattrs on this file system")
    assert os.getxattr(tmp_path / "f", "user.comment") == b"hello"
    assert "trusted.overlay.opaque" not in names
    assert "user.overlay.redirect" not in names


def test_missing_parents_take_their_attributes_from_the_layers_below(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "srv/www").mkdir(parents=True)
    os.chmod(lower / "srv", 0o711)
    os.utime(lower / "srv", (1_234_567_890, 1_234_567_890))
    dest = tmp_path / "dest"
    dest.mkdir()
    raw = make_tar(file("srv/www/index.html", b"hi"), file("new/dir/f", b"n"))
    apply_layer(io.BytesIO(raw), str(dest), TAR, parents=[str(lower)], same_owner=False)
    assert stat.S_IMODE((dest / "srv").stat().st_mode) == 0o711
    assert (dest / "srv").stat().st_mtime == 1_234_567_890
    assert stat.S_IMODE((dest / "new/dir").stat().st_mode) == 0o755  # in no layer below


def test_a_later_member_replaces_an_earlier_one(tmp_path: Path) -> None:
    raw = make_tar(
        file("x", b"file"),
        directory("x"),
        file("x/inside", b"i"),
        directory("y"),
        file("y/old", b"o"),
        file("y", b"now a file"),
    )
    apply_layer(io.BytesIO(raw), str(tmp_path), TAR, same_owner=False)
    assert tree(tmp_path) == {"x": "d", "x/inside": "f:i", "y": "f:now a file"}


def test_a_file_over_a_symlink_replaces_the_link_not_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("untouched")
    dest = tmp_path / "dest"
    dest.mkdir()
    raw = make_tar(symlink("link", str(outside)), file("link", b"evil"))
    apply_layer(io.BytesIO(raw), str(dest), TAR, same_owner=False)
    assert outside.read_text() == "untouched"
    assert not (dest / "link").is_symlink()
    assert (dest / "link").read_text() == "evil"


# -- refusals ---------------------------------------------------------------------------------

Layer = Callable[[Path], bytes]


def _evil_cases() -> list[tuple[str, Layer, str]]:
    """(id, layer builder given the outside directory, the member the error must name)."""
    return [
        ("dotdot", lambda o: make_tar(file("../evil", b"x")), "../evil"),
        ("dotdot-inside", lambda o: make_tar(directory("a"), file("a/../../evil")), "a/../../evil"),
        ("absolute", lambda o: make_tar(file("/abs", b"x")), "/abs"),
        (
            "through-symlink-to-root",
            lambda o: make_tar(symlink("a", "/"), file("a/etc/passwd", b"x")),
            "a/etc/passwd",
        ),
        (
            "through-symlink-outside",
            lambda o: make_tar(symlink("a", str(o)), file("a/victim", b"x")),
            "a/victim",
        ),
        (
            "nested-symlink-chain",
            lambda o: make_tar(
                symlink("a", "b"), symlink("b", "c"), symlink("c", str(o)), file("a/x", b"x")
            ),
            "a/x",
        ),
        (
            "relative-symlink-up",
            lambda o: make_tar(directory("d"), symlink("d/l", "../.."), file("d/l/x", b"x")),
            "d/l/x",
        ),
        (
            "directory-through-symlink",
            lambda o: make_tar(symlink("a", str(o)), directory("a/sub")),
            "a/sub",
        ),
        ("hardlink-dotdot", lambda o: make_tar(hardlink("h", "../../x")), "h"),
        ("hardlink-absolute", lambda o: make_tar(hardlink("h", str(o / "victim"))), "h"),
        (
            "hardlink-through-symlink",
            lambda o: make_tar(symlink("l", str(o)), hardlink("h", "l/victim")),
            "h",
        ),
        (
            "whiteout-through-symlink",
            lambda o: make_tar(symlink("l", str(o)), file("l/.wh.victim")),
            "l/.wh.victim",
        ),
        (
            "opaque-through-symlink",
            lambda o: make_tar(symlink("l", str(o)), file("l/.wh..wh..opq")),
            "l/.wh..wh..opq",
        ),
        ("whiteout-of-dotdot", lambda o: make_tar(file("a/.wh..."), file("b")), "a/.wh..."),
        ("device-as-non-root", lambda o: make_tar(file("ok"), device("dev/null")), "dev/null"),
    ]


@pytest.mark.parametrize(
    ("builder", "member"),
    [pytest.param(b, m, id=i) for i, b, m in _evil_cases()],
)
def test_malicious_layers_are_refused_and_leave_nothing(
    builder: Layer, member: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    snapshots_dir = tmp_path / "snapshots"
    snapshots_dir.mkdir()
    dest = snapshots_dir / "1"
    with pytest.raises(UnsafeArchive) as refused:
        unpack_to_snapshot(
            io.BytesIO(builder(outside)), str(dest), TAR, same_owner=False, allow_devices=False
        )
    assert repr(member) in str(refused.value)
    assert os.listdir(snapshots_dir) == []  # neither dest nor a temporary directory
    assert os.listdir(outside) == ["victim"]
    assert (outside / "victim").read_text() == "untouched"


def test_a_hardlink_to_a_file_of_another_layer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="'h' links to 'etc/passwd'"):
        apply_layer(io.BytesIO(make_tar(hardlink("h", "etc/passwd"))), str(tmp_path), TAR)


def test_a_whiteout_of_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="whiteout of nothing"):
        apply_layer(io.BytesIO(make_tar(file("dir/.wh."))), str(tmp_path), TAR)


def test_diff_id_mismatch_leaves_nothing(tmp_path: Path) -> None:
    raw = make_tar(file("a", b"1"))
    with pytest.raises(DiffIDMismatch, match="the image says"):
        unpack_to_snapshot(
            io.BytesIO(raw), str(tmp_path / "s"), TAR, expected_diff_id=sha256(b"other")
        )
    assert os.listdir(tmp_path) == []


# -- the streaming reader: chunks, headers, data ----------------------------------------------


def _varied_layer() -> tuple[bytes, dict[str, str]]:
    """A layer of members of every kind and size, with the tree it makes."""
    long_dir = "d" * 90 + "/" + "e" * 60  # > 100 characters: a ustar prefix
    long_name = "long/" + "n" * 200  # > 255: a PAX path
    big = bytes(range(256)) * 9000 + b"tail"  # > 2 MiB, not a multiple of 512
    members = [
        directory("a"),
        file("a/empty"),
        file("a/big", big),
        file("a/after-big", b"after"),  # the member after a long one
        hardlink("a/big-link", "a/big"),  # a hard link to an earlier member
        directory("long"),
        file(long_name, b"pax path"),
        directory(long_dir.split("/")[0]),
        directory(long_dir),
        file(long_dir + "/f", b"prefixed"),
        symlink("a/sym", "big"),
        file("a/odd", b"x" * 513),
        hardlink("a/odd-link", "a/odd"),
    ]
    want = {
        "a": "d",
        "a/empty": "f:",
        "a/big": "f:" + big.decode("latin-1"),
        "a/after-big": "f:after",
        "a/big-link": "f:" + big.decode("latin-1"),
        "long": "d",
        long_name: "f:pax path",
        long_dir.split("/")[0]: "d",
        long_dir: "d",
        long_dir + "/f": "f:prefixed",
        "a/sym": "l:big",
        "a/odd": "f:" + "x" * 513,
        "a/odd-link": "f:" + "x" * 513,
    }
    return make_tar(*members), want


def latin1_tree(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "l:" + os.readlink(path)
        elif path.is_dir():
            found[rel] = "d"
        else:
            found[rel] = "f:" + path.read_bytes().decode("latin-1")
    return found


@pytest.mark.parametrize("chunk", [1 << 20, 4096, 700, 511])
@pytest.mark.parametrize("media_type", [TAR, TGZ])
def test_members_across_chunk_boundaries(
    chunk: int, media_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small and odd chunk sizes put headers and file data across chunks.
    monkeypatch.setattr(archive, "_CHUNK", chunk)
    monkeypatch.setattr(archive, "_READ_CHUNK", max(chunk // 3, 1))
    raw, want = _varied_layer()
    blob = gzip.compress(raw) if media_type == TGZ else raw
    result = apply_layer(io.BytesIO(blob), str(tmp_path), media_type, same_owner=False)
    assert result == (sha256(raw), len(raw))
    assert latin1_tree(tmp_path) == want
    assert (tmp_path / "a/big").stat().st_ino == (tmp_path / "a/big-link").stat().st_ino


def test_gnu_format_long_names_and_links(tmp_path: Path) -> None:
    name, target = "g/" + "x" * 150, "t" * 120
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in (directory("g"), file(name, b"gnu"), symlink("g/l", target)):
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    raw = out.getvalue()
    assert apply_layer(io.BytesIO(raw), str(tmp_path), TAR, same_owner=False).diff_id == sha256(raw)
    assert latin1_tree(tmp_path) == {"g": "d", name: "f:gnu", "g/l": "l:" + target}


def test_global_pax_headers_apply_to_later_members(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"mtime": "1234567890"}
    ) as tar:
        info, data = file("f", b"g")
        tar.addfile(info, io.BytesIO(data))
    apply_layer(io.BytesIO(out.getvalue()), str(tmp_path), TAR, same_owner=False)
    assert (tmp_path / "f").stat().st_mtime == 1_234_567_890


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_sparse_files_from_gnu_tar(fmt: str, tmp_path: Path) -> None:
    if shutil.which("tar") is None:
        pytest.skip("no tar")
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"head")
        f.seek(3 << 20)
        f.write(b"middle")
        f.truncate(5 << 20)  # ends in a hole
    layer = tmp_path / "layer.tar"
    subprocess.run(
        ["tar", "--sparse", f"--format={fmt}", "-cf", str(layer), "-C", str(src), "sparse"],
        check=True,
    )
    raw = layer.read_bytes()
    dest = tmp_path / "dest"
    dest.mkdir()
    assert apply_layer(io.BytesIO(raw), str(dest), TAR, same_owner=False).diff_id == sha256(raw)
    assert (dest / "sparse").read_bytes() == (src / "sparse").read_bytes()


def test_truncated_file_data_is_an_archive_error(tmp_path: Path) -> None:
    raw = make_tar(file("f", b"x" * 5000))
    with pytest.raises(ArchiveError, match="unexpected end of data"):
        apply_layer(io.BytesIO(raw[:2048]), str(tmp_path), TAR)


def test_gzip_zero_padding_is_skipped_and_garbage_refused(tmp_path: Path) -> None:
    raw = make_tar(file("a", b"1"))
    padded = gzip.compress(raw) + b"\0" * 1000
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    assert apply_layer(io.BytesIO(padded), str(tmp_path / "1"), TGZ).diff_id == sha256(raw)
    with pytest.raises(ArchiveError, match="not valid"):
        apply_layer(io.BytesIO(gzip.compress(raw) + b"junk"), str(tmp_path / "2"), TGZ)


def test_a_refusal_mid_layer_stops_the_reader(tmp_path: Path) -> None:
    before = threading.active_count()
    raw = make_tar(file("big", b"b" * (3 << 20)), file("../evil", b"x"), file("more", b"m" * 100))
    with pytest.raises(UnsafeArchive):
        apply_layer(io.BytesIO(raw), str(tmp_path), TAR, same_owner=False)
    assert threading.active_count() == before


def _header_fields(info: tarfile.TarInfo) -> tuple[object, ...]:
    return tuple(
        getattr(info, a)
        for a in (
            "name", "mode", "uid", "gid", "size", "mtime", "chksum", "type", "linkname",
            "uname", "gname", "devmajor", "devminor", "offset", "offset_data", "sparse",
            "pax_headers",
        )
    )  # fmt: skip


class _Chunks:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self) -> bytes:
        data, self.data = self.data, b""
        return data


@settings(max_examples=300, deadline=None)
@given(
    name=st.text(min_size=1, max_size=120).filter(lambda n: "\0" not in n),
    kind=st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]),
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 0o7777777),
    size=st.integers(0, 3000),
    fmt=st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
    patch=st.one_of(
        st.none(),
        st.tuples(st.integers(100, 156), st.binary(min_size=1, max_size=3)),
    ),
)
def test_plain_headers_are_read_as_tarfile_reads_them(
    name: str,
    kind: bytes,
    mode: int,
    uid: int,
    size: int,
    fmt: int,
    patch: tuple[int, bytes] | None,
) -> None:
    info = _info(name, kind, {"mode": mode, "uid": uid, "linkname": "t" if kind in (
        tarfile.SYMTYPE, tarfile.LNKTYPE) else ""})  # fmt: skip
    info.size = size if kind == tarfile.REGTYPE else 0
    out = io.BytesIO()
    try:
        with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
            tar.addfile(info, io.BytesIO(b"d" * info.size) if info.isreg() else None)
    except ValueError:
        return  # not representable in this format
    raw = bytearray(out.getvalue())
    if patch is not None:  # damage a numeric field (or the checksum) of the first header
        at, data = patch
        raw[at : at + len(data)] = data
    fast = archive._TarStream(_Chunks(bytes(raw)))  # type: ignore[arg-type]
    slow = archive._TarStream(_Chunks(bytes(raw)))  # type: ignore[arg-type]
    slow.plain_header = lambda: None  # type: ignore[method-assign]
    outcomes = []
    for stream in (fast, slow):
        try:
            outcomes.append([_header_fields(m) for m in stream.members()])
        except ArchiveError as e:
            outcomes.append([str(e)])
    assert outcomes[0] == outcomes[1]
    assert fast.tell() == slow.tell()


# -- the snapshotter, as far as it needs no root ---------------------------------------------


class Unreadable(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the layer was read")


def test_snapshotter_unpacks_a_chain_once(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    base = make_tar(directory("etc"), file("etc/a", b"a"))
    top = make_tar(file("etc/b", b"b"))
    c1 = s.unpack(None, io.BytesIO(base), TAR)
    c2 = s.unpack(c1, io.BytesIO(top), TAR)
    assert [c1, c2] == chain_id([sha256(base), sha256(top)])
    # Again: by diff ID without reading, and by reading when no diff ID is given.
    assert s.unpack(c1, Unreadable(), TAR, expected_diff_id=sha256(top)) == c2  # type: ignore[arg-type]
    assert s.unpack(c1, io.BytesIO(top), TAR) == c2
    assert [(i.id, i.parent) for i in s.list()] == [(1, None), (2, c1)]
    assert sorted(os.listdir(tmp_path / "root/snapshots")) == ["1", "2"]
    assert s.stat(c2).diff_id == sha256(top)
    assert s.usage(c1).inodes == 3  # fs, etc, etc/a
    assert s.usage().size == s.usage(c1).size + s.usage(c2).size
    # A fresh instance reads the same metadata.
    assert OverlaySnapshotter(str(tmp_path / "root")).list() == s.list()


def test_concurrent_unpacks_of_one_layer_make_one_snapshot(tmp_path: Path) -> None:
    import threading

    raw = make_tar(*(file(f"f{n}", b"x" * 1000) for n in range(200)))
    results: list[str] = []

    def unpack() -> None:
        s = OverlaySnapshotter(str(tmp_path / "root"))  # one instance each, as two processes
        results.append(s.unpack(None, io.BytesIO(raw), TAR))

    threads = [threading.Thread(target=unpack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [sha256(raw)] * 4
    assert len(OverlaySnapshotter(str(tmp_path / "root")).list()) == 1
    assert os.listdir(tmp_path / "root/snapshots") == ["1"]


def test_snapshotter_refuses_a_diff_id_mismatch_and_keeps_nothing(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    with pytest.raises(DiffIDMismatch):
        s.unpack(None, io.BytesIO(make_tar(file("a"))), TAR, expected_diff_id=sha256(b"x"))
    assert s.list() == []
    assert os.listdir(tmp_path / "root/snapshots") == []


def test_snapshotter_refuses_an_unsafe_layer_and_keeps_nothing(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    with pytest.raises(UnsafeArchive, match=re.escape("'../x'")):
        s.unpack(None, io.BytesIO(make_tar(file("ok"), file("../x"))), TAR)
    assert s.list() == []
    assert os.listdir(tmp_path / "root/snapshots") == []


def test_snapshotter_remove_refuses_while_a_child_exists(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    c1 = s.unpack(None, io.BytesIO(make_tar(file("a"))), TAR)
    c2 = s.unpack(c1, io.BytesIO(make_tar(file("b"))), TAR)
    with pytest.raises(SnapshotInUse, match=c2):
        s.remove(c1)
    s.remove(c2)
    s.remove(c1)
    assert s.list() == []
    assert os.listdir(tmp_path / "root/snapshots") == []
    with pytest.raises(SnapshotNotFound):
        s.remove(c1)


def test_snapshotter_unknown_parent(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    with pytest.raises(SnapshotNotFound, match="not found"):
        s.unpack(sha256(b"nope"), io.BytesIO(make_tar(file("a"))), TAR)
    with pytest.raises(SnapshotNotFound):
        s.mounts(sha256(b"nope"), str(tmp_path / "c"))


def test_snapshotter_mounts_describe_the_chain_top_first(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    c1 = s.unpack(None, io.BytesIO(make_tar(file("a"))), TAR)
    c2 = s.unpack(c1, io.BytesIO(make_tar(file("b"))), TAR)
    snaps = tmp_path / "root/snapshots"
    container = tmp_path / "c"
    assert s.mounts(c2, str(container)) == [
        Mount(
            "overlay",
            "overlay",
            [
                f"lowerdir={snaps}/2/fs:{snaps}/1/fs",
                f"upperdir={container}/upper",
                f"workdir={container}/work",
            ],
        )
    ]
    assert (container / "upper").is_dir() and (container / "work").is_dir()
    assert s.mounts(c1, str(tmp_path / "ro"), readonly=True) == [
        Mount("bind", f"{snaps}/1/fs", ["ro", "rbind"])
    ]
    assert not (tmp_path / "ro").exists()


def test_cleanup_removes_interrupted_work(tmp_path: Path) -> None:
    s = OverlaySnapshotter(str(tmp_path / "root"))
    s.unpack(None, io.BytesIO(make_tar(file("a"))), TAR)
    (tmp_path / "root/snapshots/new-abc/fs").mkdir(parents=True)
    (tmp_path / "root/snapshots/rm-7").mkdir()
    assert s.cleanup() == ["new-abc", "rm-7"]
    assert os.listdir(tmp_path / "root/snapshots") == ["1"]


# -- mount descriptions (pure) ---------------------------------------------------------------


def test_overlay_options_are_absolute_when_they_fit() -> None:
    [m] = overlay_mounts(["/s/2/fs", "/s/1/fs"], "/c/upper", "/c/work", base_dir="/s")
    assert m == Mount(
        "overlay", "overlay", ["lowerdir=/s/2/fs:/s/1/fs", "upperdir=/c/upper", "workdir=/c/work"]
    )


def test_overlay_options_go_relative_when_a_page_is_too_small() -> None:
    base = "/data" + "/long-directory-name" * 40  # an 805-character data root
    snaps = base + "/snapshots"
    lowers = [f"{snaps}/{n}/fs" for n in range(40, 0, -1)]
    [m] = overlay_mounts(
        lowers, f"{base}/containers/c1/upper", f"{base}/containers/c1/work", base_dir=snaps
    )
    assert m.cwd == snaps
    assert m.options[0] == "lowerdir=" + ":".join(f"{n}/fs" for n in range(40, 0, -1))
    assert m.options[1:] == ["upperdir=../containers/c1/upper", "workdir=../containers/c1/work"]
    assert len(",".join(m.options)) < 4096
    # The absolute form would not have fit.
    assert len(",".join(lowers)) > 4096


def test_overlay_keeps_absolute_paths_that_are_shorter() -> None:
    snaps = "/" + "d" * 250 + "/" + "e" * 250 + "/snapshots"
    lowers = [f"{snaps}/{n}/fs" for n in range(10, 0, -1)]
    [m] = overlay_mounts(lowers, "/c/upper", "/c/work", base_dir=snaps)
    assert m.cwd == snaps
    assert m.options[1:] == ["upperdir=/c/upper", "workdir=/c/work"]


def test_overlay_options_too_long_even_relative() -> None:
    snaps = "/s"
    lowers = [f"/s/{n:07d}/fs" for n in range(400)]
    with pytest.raises(MountOptionsTooLong, match="400 layers"):
        overlay_mounts(lowers, "/c/u", "/c/w", base_dir=snaps)
    with pytest.raises(MountOptionsTooLong, match="at most 500"):
        overlay_mounts([f"/s/{n}" for n in range(501)], "/c/u", "/c/w", base_dir=snaps)


def test_read_only_and_layerless_forms() -> None:
    assert overlay_mounts(["/s/1/fs"], None, None, base_dir="/s") == [
        Mount("bind", "/s/1/fs", ["ro", "rbind"])
    ]
    assert overlay_mounts(["/s/2/fs", "/s/1/fs"], None, None, base_dir="/s") == [
        Mount("overlay", "overlay", ["ro", "lowerdir=/s/2/fs:/s/1/fs"])
    ]
    assert overlay_mounts([], "/c/upper", "/c/work", base_dir="/s") == [
        Mount("bind", "/c/upper", ["rw", "rbind"])
    ]
    with pytest.raises(ValueError, match="at least one layer"):
        overlay_mounts([], None, None, base_dir="/s")


@pytest.mark.parametrize("bad", ["/s/a,b/fs", "/s/a:b/fs", "relative/fs"])
def test_overlay_paths_that_options_cannot_carry(bad: str) -> None:
    with pytest.raises(ValueError, match="overlay"):
        overlay_mounts([bad, "/s/1/fs"], "/c/u", "/c/w", base_dir="/s")


def test_plans_of_mount_calls() -> None:
    assert plan(Mount("bind", "/src", ["ro", "rbind"]), "/t") == [
        MountCall("/src", "/t", None, flags.MS_BIND | flags.MS_REC, None),
        MountCall(None, "/t", None, flags.MS_REMOUNT | flags.MS_BIND | flags.MS_RDONLY, None),
    ]
    assert plan(Mount("bind", "/src", ["rw", "rbind"]), "/t") == [
        MountCall("/src", "/t", None, flags.MS_BIND | flags.MS_REC, None)
    ]
    overlay = Mount("overlay", "overlay", ["nosuid", "lowerdir=a:b", "upperdir=u", "private"])
    assert plan(overlay, "/t") == [
        MountCall("overlay", "/t", "overlay", flags.MS_NOSUID, "lowerdir=a:b,upperdir=u"),
        MountCall(None, "/t", None, flags.MS_PRIVATE, None),
    ]
    assert parse_options(["ro", "rw", "nodev", "dev"]).flags == 0

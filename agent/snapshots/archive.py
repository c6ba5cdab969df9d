"""Applying an image layer (an OCI changeset tar) to a directory, safely.

`apply_layer` streams one layer blob: it decompresses by media type, hashes
the uncompressed tar as it goes (the layer's diff ID), both on threads beside
the extraction, and extracts each member itself (never `extractall`; headers
are parsed as tarfile parses them), in overlayfs form:

- a whiteout `.wh.NAME` becomes a character device 0:0 called NAME, and the
  opaque whiteout `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
  directory; whiteout files themselves are not written;
- modes, owners (as root), times, and the PAX `SCHILY.xattr.*` extended
  attributes that are safe to set (see `SAFE_XATTR`).

Safety: the whole layer is refused (`UnsafeArchive`, naming the member) for an
absolute path, a `..` component, a path that would pass through a symbolic
link (every parent is checked with lstat, and files are created with
O_EXCL | O_NOFOLLOW, so nothing is ever written through a link), a hard link
whose target is not a file of this layer, and device files unless running as
root. `apply_layer` leaves a half-written directory behind on error;
`unpack_to_snapshot` extracts into a temporary sibling and renames it into
place only when everything, diff ID included, checked out.

Parent directories a layer does not carry are created with the attributes
they have in the layers below (`parents`, top first), as containerd does, so
that an upper layer does not change a lower directory's mode or owner.
"""

from __future__ import annotations

import enum
import errno
import gzip
import hashlib
import importlib
import os
import queue
import shutil
import stat
import struct
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, NamedTuple, TypeVar, cast

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
# Extended attributes a layer may set. Never the overlay's own (trusted.overlay.*,
# user.overlay.*): a layer must not be able to forge whiteouts or redirects.
SAFE_XATTR_PREFIXES = ("user.", "trusted.", "security.capability")
UNSAFE_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_CHUNK = 1 << 20  # the uncompressed tar is handed over in pieces of this size
_READ_CHUNK = 1 << 18  # read from a compressed blob at a time
_QUEUED_CHUNKS = 8  # read ahead of the extraction at most
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib reads (and checks) the gzip wrapper
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_T = TypeVar("_T")

# A ustar header: name, mode, uid, gid, size, mtime, chksum, typeflag, linkname,
# magic+version, uname, gname, devmajor, devminor, prefix (and 12 unused bytes).
_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12x")
_USTAR_TEXT = (0, 8, 10, 11, 14)  # name, linkname, uname, gname, prefix
_USTAR_NUMBERS = (1, 2, 3, 4, 5, 6, 12, 13)  # mode, uid, gid, size, mtime, chksum, devices
_BLOCK = tarfile.BLOCKSIZE
_PLAIN_TYPES = (
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
)


def _tarfile_errors(*names: str) -> tuple[type[Exception], ...]:
    """tarfile's kinds of header error, by name (typeshed does not declare them)."""
    return tuple(getattr(tarfile, name) for name in names)


_EOF_HEADER = _tarfile_errors("EOFHeaderError")  # the end-of-archive zero block
_EMPTY_HEADER = _tarfile_errors("EmptyHeaderError")  # no data left
_BAD_HEADER = _tarfile_errors("InvalidHeaderError", "TruncatedHeaderError")


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


# OCI (media-types.md) and Docker (image manifest v2 schema 2) layer media types.
LAYER_MEDIA_TYPES: dict[str, Compression] = {
    "application/vnd.oci.image.layer.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar": Compression.NONE,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": Compression.GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": Compression.ZSTD,
    "application/vnd.docker.image.rootfs.diff.tar": Compression.NONE,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": Compression.GZIP,
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": Compression.GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": Compression.ZSTD,
}


class ArchiveError(ValueError):
    """A layer that cannot be applied: malformed, unsupported or unsafe."""


class UnsupportedMediaType(ArchiveError):
    """A media type that is not a layer, or a compression this host cannot read."""


class UnsafeArchive(ArchiveError):
    """A member that would write outside the destination (or a device, as non-root)."""


class DiffIDMismatch(ArchiveError):
    """The uncompressed layer does not hash to the diff ID the image config names."""


class _Missing(ArchiveError):
    """A path the layer does not have (turned into a message naming the member)."""


class ApplyResult(NamedTuple):
    diff_id: str  # "sha256:<hex>" of the uncompressed tar
    size: int  # bytes of the uncompressed tar


def compression_of(media_type: str) -> Compression:
    """The compression a layer media type names (pure)."""
    try:
        return LAYER_MEDIA_TYPES[media_type]
    except KeyError:
        raise UnsupportedMediaType(f"not a supported layer media type: {media_type!r}") from None


def decompressed(stream: BinaryIO, media_type: str) -> BinaryIO:
    """A reader of the uncompressed tar inside a layer blob."""
    compression = compression_of(media_type)
    if compression is Compression.NONE:
        return stream
    if compression is Compression.GZIP:
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        raise UnsupportedMediaType(
            f"{media_type}: zstd layers are not supported: install zstandard"
        ) from None
    reader = zstandard.ZstdDecompressor().stream_reader(
        stream, read_across_frames=True, closefd=False
    )
    return cast(BinaryIO, reader)


def _decode_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [zlib.error, EOFError, gzip.BadGzipFile]
    try:
        errors.append(importlib.import_module("zstandard").ZstdError)
    except ImportError:
        pass
    return tuple(errors)


def _gunzip(stream: BinaryIO) -> Iterator[bytes]:
    """The uncompressed bytes of a gzip stream, `_CHUNK` at most at a time.

    zlib itself, in large pieces, rather than `gzip.GzipFile` (which feeds
    zlib 8 KiB at a time): each call releases the GIL for longer, so that
    decompressing overlaps with the extraction. Like `gzip`, it reads every
    member of a multi-member file, skips zero padding between members, and
    checks each member's CRC and length (zlib does, in gzip mode).
    """
    inflater = zlib.decompressobj(_GZIP_WBITS)
    started = False  # some of the current member was read
    while data := stream.read(_READ_CHUNK):
        while data:
            if inflater.eof:  # between members
                data = data.lstrip(b"\0")
                if not data:
                    break
                inflater = zlib.decompressobj(_GZIP_WBITS)
            started = True
            if out := inflater.decompress(data, _CHUNK):
                yield out
            data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    if started and not inflater.eof:
        if out := inflater.flush():
            yield out
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")


def _blob_chunks(stream: BinaryIO, media_type: str) -> Iterator[bytes]:
    """The uncompressed tar of a layer blob, in chunks of up to about `_CHUNK` bytes."""
    if compression_of(media_type) is Compression.GZIP:
        return _gunzip(stream)
    source = decompressed(stream, media_type)
    return iter(lambda: source.read(_CHUNK), b"")


class _Pipeline:
    """Reads and decompresses the layer on one thread, hashes it on another.

    The uncompressed tar comes out of `get` in chunks of about 1 MiB, in
    order, and each chunk also goes to the hashing thread (the diff ID, ready
    once `digest` has joined both threads). zlib, zstd and sha256 release the
    GIL while they work on a large buffer, so this runs beside the extraction
    (as `gzip -d` does beside `tar -x`) instead of adding to it; hashing apart
    from reading keeps sha256, the slowest step on a CPU without SHA
    extensions, busy all the time. An error of the reading thread (a corrupt
    compressed stream, a failing read) is raised by `get`.
    """

    _END = object()

    def __init__(self, chunks: Iterator[bytes], media_type: str) -> None:
        self._chunks = chunks
        self._media_type = media_type
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._to_hash: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED_CHUNKS)
        self._stop = False
        self._done = False
        self.size = 0
        self._hasher = threading.Thread(target=self._run_hash, name="layer-sha256", daemon=True)
        self._hasher.start()
        self._thread = threading.Thread(target=self._run, name="layer-reader", daemon=True)
        self._thread.start()

    def _run_hash(self) -> None:
        while chunk := self._to_hash.get():
            self._hash.update(chunk)

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if self._stop:
                    return
                self._to_hash.put(chunk)
                self.size += len(chunk)
                self._queue.put(chunk)
            self._queue.put(self._END)
        except BaseException as e:  # handed to the extracting thread
            self._queue.put(e)
        finally:
            self._to_hash.put(None)

    def get(self) -> bytes:
        """The next chunk, or b"" at the end of the layer."""
        if self._done:
            return b""
        item = self._queue.get()
        if isinstance(item, bytes):
            return item
        self._done = True
        if item is self._END:
            return b""
        assert isinstance(item, BaseException)
        if isinstance(item, _decode_errors()):
            raise ArchiveError(f"layer is not valid {self._media_type}: {item}") from item
        raise item

    def drain(self) -> None:
        """Read to the end: the diff ID covers the padding after the tar's end marker."""
        while self.get():
            pass

    def digest(self) -> str:
        self.close()
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        """Stop the thread (at once if the layer is not read to its end)."""
        self._stop = True
        while self._thread.is_alive():
            try:  # unblock a put
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()
        self._hasher.join()


class _TarStream:
    """The uncompressed tar, as `tarfile.TarInfo.fromtarfile` reads headers from it.

    That parser (PAX and GNU extensions, long names, sparse maps, checksums)
    wants an object with `fileobj` (read, tell), `offset` (it sets it to
    where the next header starts), `encoding`, `errors` and `pax_headers`
    (the global PAX headers), as a `TarFile` has. The members' data does not
    go through tarfile at all: `view` hands out slices of the 1 MiB chunks,
    which are written to the files as they are, without copying.
    """

    encoding = tarfile.ENCODING
    errors = "surrogateescape"

    def __init__(self, source: _Pipeline) -> None:
        self.fileobj = self
        self.offset = 0
        self.pax_headers: dict[str, str] = {}
        self._source = source
        self._chunk = b""
        self._view = memoryview(self._chunk)
        self._pos = 0  # in _chunk
        self._base = 0  # the offset of _chunk in the tar

    def tell(self) -> int:
        return self._base + self._pos

    def _fill(self) -> bool:
        """Make the current chunk have unread bytes; False at the end of the tar."""
        while self._pos >= len(self._chunk):
            chunk = self._source.get()
            if not chunk:
                return False
            self._base += len(self._chunk)
            self._chunk, self._view, self._pos = chunk, memoryview(chunk), 0
        return True

    def read(self, n: int) -> bytes:
        """n bytes (fewer at the end of the tar), copied."""
        end = self._pos + n
        if end <= len(self._chunk):  # the usual case: a header inside the chunk
            data = self._chunk[self._pos : end]
            self._pos = end
            return data
        parts = []
        while n > 0 and self._fill():
            part = self._chunk[self._pos : self._pos + n]
            self._pos += len(part)
            n -= len(part)
            parts.append(part)
        return b"".join(parts)

    def view(self, n: int) -> memoryview:
        """Up to n bytes from the current chunk, not copied; empty at the end of the tar."""
        if not self._fill():
            return self._view[:0]
        data = self._view[self._pos : self._pos + n]
        self._pos += len(data)
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            if not self._fill():
                raise ArchiveError("layer is not a valid tar archive: unexpected end of data")
            step = min(n, len(self._chunk) - self._pos)
            self._pos += step
            n -= step

    def members(self) -> Iterator[tarfile.TarInfo]:
        """The archive's members, as `TarFile`'s streaming iteration finds them.

        As tarfile does, a malformed first header is an error, a malformed
        later one ends the archive (the diff ID still covers every byte).
        """
        while True:
            # Skip what the caller left of the previous member's data, and its padding.
            if self.offset < self.tell():
                raise ArchiveError("layer is not a valid tar archive: overlapping members")
            self.skip(self.offset - self.tell())
            first = self.offset == 0
            try:
                member = self.plain_header()
                if member is None:
                    member = tarfile.TarInfo.fromtarfile(cast(tarfile.TarFile, self))
            except _EOF_HEADER:
                return
            except _EMPTY_HEADER:
                if first:
                    raise ArchiveError("layer is not a valid tar archive: empty file") from None
                return
            except _BAD_HEADER as e:
                if first:
                    raise ArchiveError(f"layer is not a valid tar archive: {e}") from None
                return
            except (tarfile.TarError, ValueError) as e:
                raise ArchiveError(f"layer is not a valid tar archive: {e}") from None
            yield member

    def plain_header(self) -> tarfile.TarInfo | None:
        """The next member, if its header is a plain one; None (nothing read) if not.

        Most members of a layer are files, directories and links with a
        single ustar header and no PAX or GNU extension: for those this does
        what `TarInfo.fromtarfile` does, three times as fast. Anything else
        (an extension, a base-256 number, a field tarfile would read in a way
        of its own, global PAX headers in force, a header across two chunks)
        is left to tarfile.
        """
        if self.pax_headers or not self._fill():
            return None
        pos = self._pos
        if pos + _BLOCK > len(self._chunk):
            return None
        buf = self._chunk[pos : pos + _BLOCK]
        kind = buf[156:157]
        if kind not in _PLAIN_TYPES:
            return None
        fields = _USTAR.unpack(buf)
        name, linkname, uname, gname, prefix = (fields[i] for i in _USTAR_TEXT)
        try:
            # tarfile's nti(): up to the first NUL, octal, blank means 0.
            mode, uid, gid, size, mtime, checksum, major, minor = (
                int(fields[i].split(b"\0", 1)[0].strip() or b"0", 8) for i in _USTAR_NUMBERS
            )
        except ValueError:
            return None
        if min(mode, uid, gid, size, mtime, major, minor) < 0:
            return None
        if checksum != 256 + sum(buf) - sum(fields[6]):  # else tarfile tries a signed sum
            return None
        member = tarfile.TarInfo(_nts(name))
        member.mode, member.uid, member.gid, member.size, member.mtime = mode, uid, gid, size, mtime
        member.chksum, member.devmajor, member.devminor = checksum, major, minor
        member.type = kind
        member.linkname, member.uname, member.gname = _nts(linkname), _nts(uname), _nts(gname)
        # What frombuf() does to names.
        if kind == tarfile.AREGTYPE and member.name.endswith("/"):
            member.type = tarfile.DIRTYPE
        if member.type == tarfile.DIRTYPE:
            member.name = member.name.rstrip("/")
        if prefix[:1] != b"\0" and (full_prefix := _nts(prefix)):
            member.name = full_prefix + "/" + member.name
        self._pos = pos + _BLOCK
        member.offset = self._base + pos
        member.offset_data = self._base + self._pos
        self.offset = member.offset_data
        if member.isreg():
            self.offset += -(-size // _BLOCK) * _BLOCK
        return member


def _nts(field: bytes) -> str:
    """tarfile's nts(): a string field, up to its first NUL."""
    return field.split(b"\0", 1)[0].decode(tarfile.ENCODING, "surrogateescape")


def _has_data(member: tarfile.TarInfo) -> bool:
    """Whether the member's data is file content (tarfile's `extractfile` rule)."""
    return member.isreg() or member.type not in tarfile.SUPPORTED_TYPES


def apply_layer(
    stream: BinaryIO,
    dest: str,
    media_type: str,
    *,
    parents: Sequence[str] = (),
    same_owner: bool | None = None,
    allow_devices: bool | None = None,
) -> ApplyResult:
    """Apply one layer blob to the existing directory `dest`; returns its diff ID and size.

    `parents` are the directories of the layers below, top first (only read,
    for the attributes of parent directories this layer omits). `same_owner`
    (default: running as root) keeps the archive's uid/gid; `allow_devices`
    (default: running as root) permits character and block devices.

    On error `dest` is left half-written: the caller removes it (or use
    `unpack_to_snapshot`).
    """
    is_root = os.geteuid() == 0
    pipeline = _Pipeline(_blob_chunks(stream, media_type), media_type)
    applier = _Applier(
        dest,
        parents,
        same_owner=is_root if same_owner is None else same_owner,
        allow_devices=is_root if allow_devices is None else allow_devices,
    )
    try:
        tar = _TarStream(pipeline)
        for member in tar.members():
            applier.apply(tar, member)
        applier.finish()
        pipeline.drain()
        return ApplyResult(pipeline.digest(), pipeline.size)
    finally:
        pipeline.close()


def unpack_to_snapshot(
    stream: BinaryIO,
    dest: str,
    media_type: str,
    *,
    expected_diff_id: str | None = None,
    parents: Sequence[str] = (),
    same_owner: bool | None = None,
    allow_devices: bool | None = None,
) -> ApplyResult:
    """Apply a layer into the new directory `dest`, all or nothing.

    Extracts into a temporary sibling of `dest` and renames it to `dest` only
    when the layer applied cleanly and (if given) matched `expected_diff_id`;
    otherwise the temporary directory is removed and the error raised.
    """
    if os.path.lexists(dest):
        raise FileExistsError(f"{dest}: already exists")
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(os.path.abspath(dest)))
    try:
        result = apply_layer(
            stream,
            tmp,
            media_type,
            parents=parents,
            same_owner=same_owner,
            allow_devices=allow_devices,
        )
        if expected_diff_id is not None and result.diff_id != expected_diff_id:
            raise DiffIDMismatch(
                f"layer diff ID is {result.diff_id}, the image says {expected_diff_id}"
            )
        os.chmod(tmp, 0o755)
        os.rename(tmp, dest)
    except BaseException:
        remove_tree(tmp)
        raise
    return result


def remove_tree(path: str) -> None:
    """Remove a directory tree, including read-only directories when not root."""
    if not os.path.lexists(path):
        return
    if os.geteuid() != 0:
        for top, dirs, _ in os.walk(path):
            for d in dirs:
                full = os.path.join(top, d)
                if not os.path.islink(full):
                    os.chmod(full, 0o700)
    shutil.rmtree(path)


# -- the member-by-member extraction -----------------------------------------------------


def clean_name(name: str, member: str) -> tuple[str, ...]:
    """The components of a member path, or UnsafeArchive for one that escapes (pure)."""
    if name.startswith("/"):
        raise UnsafeArchive(f"refusing layer: member {member!r} has an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"refusing layer: member {member!r} has a '..' component")
    return parts


def safe_xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    """The member's PAX xattrs a layer may set (pure)."""
    found: list[tuple[str, bytes]] = []
    for key, value in member.pax_headers.items():
        if not key.startswith(PAX_XATTR):
            continue
        name = key[len(PAX_XATTR) :]
        if name.startswith(UNSAFE_XATTR_PREFIXES) or not name.startswith(SAFE_XATTR_PREFIXES):
            continue
        found.append((name, value.encode("utf-8", "surrogateescape")))
    return found


def _times_ns(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(member.mtime) * 1_000_000_000)
    atime_text = member.pax_headers.get("atime")
    try:
        atime = int(float(atime_text) * 1_000_000_000) if atime_text else mtime
    except ValueError:
        atime = mtime
    return atime, mtime


class _Applier:
    """The state of one extraction: which directories are verified, what is left to do."""

    def __init__(
        self, dest: str, parents: Sequence[str], *, same_owner: bool, allow_devices: bool
    ) -> None:
        self.dest = dest
        self.parents = list(parents)
        self.same_owner = same_owner
        self.allow_devices = allow_devices
        # Relative paths known to be real directories of dest (not links); "" is dest.
        self.known_dirs: set[str] = {""}
        # Directory attributes applied last, after their contents: rel -> (mode, times).
        self.pending_dirs: dict[str, tuple[int, tuple[int, int] | None]] = {}

    # -- paths

    def parent_dir(self, parts: tuple[str, ...], member: str, *, create: bool) -> str:
        """The real directory holding parts[-1], each component checked with lstat."""
        parent = "/".join(parts[:-1])
        if parent in self.known_dirs:
            return os.path.join(self.dest, parent) if parent else self.dest
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            if rel in self.known_dirs:
                continue
            path = os.path.join(self.dest, rel)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise _Missing(rel) from None
                self.make_parent(parts[:i])
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchive(
                    f"refusing layer: member {member!r} passes through the symlink {rel!r}"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise ArchiveError(f"refusing layer: member {member!r}: {rel!r} is not a directory")
            self.known_dirs.add(rel)
        return os.path.join(self.dest, parent)

    def make_parent(self, parts: tuple[str, ...]) -> None:
        """Create a directory the layer omits, with its attributes in the layers below."""
        rel = "/".join(parts)
        path = os.path.join(self.dest, rel)
        os.mkdir(path, 0o700)
        below = self.lower_dir(parts)
        if below is None:
            self.pending_dirs[rel] = (0o755, None)
        else:
            if self.same_owner:
                os.lchown(path, below.st_uid, below.st_gid)
            times = (below.st_atime_ns, below.st_mtime_ns)
            self.pending_dirs[rel] = (stat.S_IMODE(below.st_mode), times)
        self.known_dirs.add(rel)

    def lower_dir(self, parts: tuple[str, ...]) -> os.stat_result | None:
        """The stat of a directory as the layers below show it, or None."""
        for lower in self.parents:
            path = lower
            for i, part in enumerate(parts):
                path = os.path.join(path, part)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    if any(_is_opaque(os.path.join(lower, *parts[:j])) for j in range(1, i + 1)):
                        return None  # an opaque directory hides the layers further down
                    break  # not in this layer: look in the next one down
                if not stat.S_ISDIR(st.st_mode):
                    return None  # a whiteout, a file or a link hides it
                if i == len(parts) - 1:
                    return st
        return None

    def remove(self, path: str, rel: str) -> None:
        """Remove whatever is at path (a directory with its contents)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            remove_tree(path)
            prefix = rel + "/"
            self.known_dirs = {d for d in self.known_dirs if d != rel and not d.startswith(prefix)}
            self.pending_dirs = {
                d: v for d, v in self.pending_dirs.items() if d != rel and not d.startswith(prefix)
            }
        else:
            os.unlink(path)

    # -- members

    def apply(self, tar: _TarStream, member: tarfile.TarInfo) -> None:
        parts = clean_name(member.name, member.name)
        if not parts:
            return  # the layer's root: its attributes belong to the snapshot, not the layer
        base = parts[-1]
        if base == OPAQUE_WHITEOUT:
            self.opaque(parts, member)
        elif base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, member)
        elif member.isdir():
            self.directory(parts, member)
        elif member.islnk():
            self.hardlink(parts, member)
        else:
            self.non_directory(tar, parts, member)

    def opaque(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        directory = self.parent_dir(parts, member.name, create=True)
        os.setxattr(directory, OPAQUE_XATTR, b"y", follow_symlinks=False)

    def whiteout(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        name = parts[-1][len(WHITEOUT_PREFIX) :]
        if not name:
            raise ArchiveError(f"refusing layer: member {member.name!r} is a whiteout of nothing")
        if name in (".", ".."):
            raise UnsafeArchive(f"refusing layer: member {member.name!r} whites out {name!r}")
        if self.under_non_directory(parts):
            return  # redundant: a file this layer put there hides everything below it
        directory = self.parent_dir(parts, member.name, create=True)
        path = os.path.join(directory, name)
        self.remove(path, "/".join((*parts[:-1], name)))
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))

    def under_non_directory(self, parts: tuple[str, ...]) -> bool:
        """Whether a parent of parts[-1] is, in dest, something other than a directory.

        umoci writes `data/swap` (a file replacing a full directory) and then
        `data/swap/.wh.inner`; nothing below a non-directory can be seen, so such a
        whiteout changes nothing. Only an entry of this layer can be in the way
        (dest starts empty), so nothing outside the snapshot is looked at.
        """
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            if rel in self.known_dirs:
                continue
            try:
                st = os.lstat(os.path.join(self.dest, rel))
            except FileNotFoundError:
                return False
            if stat.S_ISLNK(st.st_mode):
                return False  # not skipped: parent_dir refuses a path through a link
            if not stat.S_ISDIR(st.st_mode):
                return True
        return False

    def directory(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        rel = "/".join(parts)
        path = os.path.join(self.parent_dir(parts, member.name, create=True), parts[-1])
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            if st is not None:
                self.remove(path, rel)
            os.mkdir(path, 0o700)
        self.known_dirs.add(rel)
        if self.same_owner:
            os.lchown(path, member.uid, member.gid)
        self.set_xattrs(path, member)
        self.pending_dirs[rel] = (member.mode & 0o7777, _times_ns(member))

    def hardlink(self, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        try:
            target_parts = clean_name(member.linkname, member.name)
        except UnsafeArchive as e:
            raise UnsafeArchive(
                f"refusing layer: member {member.name!r} is a hard link out of the layer "
                f"({member.linkname!r})"
            ) from e
        if not target_parts:
            raise UnsafeArchive(
                f"refusing layer: member {member.name!r} is a hard link to the layer's root"
            )
        try:
            target_dir = self.parent_dir(target_parts, member.name, create=False)
            target = os.path.join(target_dir, target_parts[-1])
            target_st = os.lstat(target)
        except (FileNotFoundError, _Missing):
            raise ArchiveError(
                f"refusing layer: member {member.name!r} links to {member.linkname!r}, "
                "which is not in this layer"
            ) from None
        if stat.S_ISDIR(target_st.st_mode):
            raise UnsafeArchive(
                f"refusing layer: member {member.name!r} is a hard link to a directory"
            )
        path = os.path.join(self.parent_dir(parts, member.name, create=True), parts[-1])
        if target_parts == parts:
            return
        self.remove(path, "/".join(parts))
        os.link(target, path, follow_symlinks=False)

    def non_directory(
        self, tar: _TarStream, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        if (member.ischr() or member.isblk()) and not self.allow_devices:
            raise UnsafeArchive(
                f"refusing layer: member {member.name!r} is a device file (only root may "
                "create devices)"
            )
        path = os.path.join(self.parent_dir(parts, member.name, create=True), parts[-1])
        if member.issym():
            self.make(path, parts, lambda: os.symlink(member.linkname, path))
            if self.same_owner:
                os.lchown(path, member.uid, member.gid)
            self.set_xattrs(path, member)
            atime, mtime = _times_ns(member)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
            return
        if member.ischr() or member.isblk() or member.isfifo():
            if member.isfifo():
                self.make(path, parts, lambda: os.mkfifo(path, 0o600))
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                device = os.makedev(member.devmajor, member.devminor)
                self.make(path, parts, lambda: os.mknod(path, kind | 0o600, device))
            self.set_attributes(path, member)
            return
        # A regular file (tar's unknown types are regular files too). O_EXCL and
        # O_NOFOLLOW: whatever is in the way (a link included) is removed, not followed.
        fd = self.make(path, parts, lambda: os.open(path, _CREATE_FLAGS, 0o600))
        try:
            if _has_data(member):
                if member.sparse is None:
                    _copy(tar, fd, member.size, member.name)
                else:
                    for offset, size in cast(list[tuple[int, int]], member.sparse):
                        os.lseek(fd, offset, os.SEEK_SET)
                        _copy(tar, fd, size, member.name)
                    os.ftruncate(fd, member.size)
            self.set_attributes(fd, member)
        finally:
            os.close(fd)

    def make(self, path: str, parts: tuple[str, ...], create: Callable[[], _T]) -> _T:
        """create() a new node at path, first removing whatever is in its way."""
        try:
            return create()
        except FileExistsError:
            self.remove(path, "/".join(parts))
            return create()

    # -- attributes

    def set_attributes(self, target: int | str, member: tarfile.TarInfo) -> None:
        """Owner, then mode (chown clears set-id bits), xattrs, times.

        `target` is the open file, or the path of a node this extraction just
        made (a device or fifo, which cannot be opened without side effects).
        """
        if self.same_owner:
            os.chown(target, member.uid, member.gid)
        os.chmod(target, member.mode & 0o7777)
        self.set_xattrs(target, member)
        atime, mtime = _times_ns(member)
        os.utime(target, ns=(atime, mtime))

    def set_xattrs(self, target: int | str, member: tarfile.TarInfo) -> None:
        for name, value in safe_xattrs(member):
            try:
                os.setxattr(target, name, value, follow_symlinks=isinstance(target, int))
            except OSError as e:
                # Not supported by this filesystem or for this file type (user.* on a
                # symlink), or not permitted (trusted.* as non-root): skipped, as tar does.
                if e.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise

    def finish(self) -> None:
        """Directory modes and times, deepest first, now that their contents are written."""
        for rel in sorted(self.pending_dirs, key=lambda r: r.count("/"), reverse=True):
            mode, times = self.pending_dirs[rel]
            path = os.path.join(self.dest, rel)
            os.chmod(path, mode)
            if times is not None:
                os.utime(path, ns=times, follow_symlinks=False)


def _copy(tar: _TarStream, fd: int, size: int, member: str) -> None:
    """Write the next size bytes of the tar to fd, straight from the tar's chunks."""
    while size > 0:
        data = tar.view(size)
        if not data:
            raise ArchiveError(
                f"layer is not a valid tar archive: unexpected end of data in {member!r}"
            )
        size -= len(data)
        while data:
            data = data[os.write(fd, data) :]


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False

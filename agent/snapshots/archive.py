"""Applying an image layer (an OCI changeset tar) to a directory, safely.

`apply_layer` streams one layer blob: it decompresses by media type, hashes
the uncompressed tar as it goes (the layer's diff ID), and extracts each member
itself (never `extractall`), in overlayfs form:

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
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Sequence
from typing import IO, BinaryIO, NamedTuple, cast

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
# Extended attributes a layer may set. Never the overlay's own (trusted.overlay.*,
# user.overlay.*): a layer must not be able to forge whiteouts or redirects.
SAFE_XATTR_PREFIXES = ("user.", "trusted.", "security.capability")
UNSAFE_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")

_COPY_CHUNK = 1 << 20
_TAR_BUFSIZE = 1 << 16


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


class _Hasher:
    """sha256 on a thread of its own, fed in order through a bounded queue.

    hashlib releases the GIL on large updates, so hashing (about 380 MB/s on
    a CPU without SHA extensions) overlaps with writing the files instead of
    adding to it.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="layer-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def update(self, data: bytes) -> None:
        if data:
            self._queue.put(data)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


class _DigestReader:
    """Reads the uncompressed tar, hashing and counting every byte that passes."""

    def __init__(self, source: BinaryIO, media_type: str) -> None:
        self._source = source
        self._media_type = media_type
        self._hash = _Hasher()
        self._errors = _decode_errors()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._source.read(n)
        except self._errors as e:
            raise ArchiveError(f"layer is not valid {self._media_type}: {e}") from e
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Read to the end: the diff ID covers the padding after the tar's end marker."""
        while self.read(_COPY_CHUNK):
            pass

    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        self._hash.close()


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
    reader = _DigestReader(decompressed(stream, media_type), media_type)
    applier = _Applier(
        dest,
        parents,
        same_owner=is_root if same_owner is None else same_owner,
        allow_devices=is_root if allow_devices is None else allow_devices,
    )
    try:
        with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|", bufsize=_TAR_BUFSIZE) as tar:
            for member in tar:
                applier.apply(tar, member)
        applier.finish()
        reader.drain()
        return ApplyResult(reader.digest(), reader.size)
    except tarfile.TarError as e:
        raise ArchiveError(f"layer is not a valid tar archive: {e}") from e
    finally:
        reader.close()


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

    def apply(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
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
        directory = self.parent_dir(parts, member.name, create=True)
        path = os.path.join(directory, name)
        self.remove(path, "/".join((*parts[:-1], name)))
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))

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
        self, tar: tarfile.TarFile, parts: tuple[str, ...], member: tarfile.TarInfo
    ) -> None:
        if (member.ischr() or member.isblk()) and not self.allow_devices:
            raise UnsafeArchive(
                f"refusing layer: member {member.name!r} is a device file (only root may "
                "create devices)"
            )
        path = os.path.join(self.parent_dir(parts, member.name, create=True), parts[-1])
        self.remove(path, "/".join(parts))
        if member.issym():
            os.symlink(member.linkname, path)
            if self.same_owner:
                os.lchown(path, member.uid, member.gid)
            self.set_xattrs(path, member)
            atime, mtime = _times_ns(member)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
            return
        if member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            if member.isfifo():
                os.mkfifo(path, 0o600)
            else:
                os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            self.set_attributes(path, member)
            return
        # A regular file (tar's unknown types are regular files too).
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            source = tar.extractfile(member)
            if source is not None:
                with source:
                    while chunk := source.read(_COPY_CHUNK):
                        _write_all(fd, chunk)
            self.set_attributes(fd, member)
        finally:
            os.close(fd)

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False

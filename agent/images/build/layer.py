"""An overlay upper directory turned into an OCI layer (the diff of one build step).

After a step ran over `lowers + upper`, the upper directory holds exactly
what the step changed, in overlayfs's own form: a deleted entry is a 0:0
character device, a directory that replaced one below is marked
`trusted.overlay.opaque=y`. The layer is that tree as a tar with the OCI
forms instead: `.wh.NAME` for a deletion, `.wh..wh..opq` inside an opaque
directory. Entries are written depth-first in name order with numeric owners
and without user/group names, so the same change gives the same diff ID.

Overlay features that would make the upper directory incomplete (redirected
directories, metadata-only copy-ups) are refused: their upper entries do not
hold the whole change. The builder mounts with them off.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from typing import IO

from agent.content import ContentStore, Descriptor, Writer
from agent.images import media
from agent.images.leases import Lease

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_REFUSED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
# Extended attributes carried into the layer (as PAX SCHILY.xattr records).
_KEPT_XATTR_PREFIXES = ("user.", "security.capability")


class LayerError(ValueError):
    """An upper directory that cannot be expressed as a layer."""


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    kept: dict[str, str] = {}
    for name in names:
        if name.startswith(_REFUSED_XATTRS):
            raise LayerError(f"{path}: overlay {name} is not supported in a build step")
        if name.startswith(_KEPT_XATTR_PREFIXES):
            value = os.getxattr(path, name, follow_symlinks=False)
            kept["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return kept


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class _TarOut:
    """Hashes the uncompressed tar (the diff ID) while passing it on to gzip."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self._out.write(data)

    def flush(self) -> None:
        pass


def write_diff(upper: str, out: IO[bytes]) -> int:
    """Write the upper directory's change as a tar to `out`; returns the entries written."""
    written = 0
    hard_links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add(info: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
            nonlocal written
            info.uname = info.gname = ""
            tar.addfile(info, data)
            written += 1

        def walk(rel_dir: str) -> None:
            directory = os.path.join(upper, rel_dir)
            if rel_dir and _is_opaque(directory):
                marker = tarfile.TarInfo(f"{rel_dir}/{OPAQUE_MARKER}")
                marker.mtime = int(os.lstat(directory).st_mtime)
                add(marker)
            for name in sorted(os.listdir(directory)):
                arcname = f"{rel_dir}/{name}" if rel_dir else name
                path = os.path.join(upper, arcname)
                st = os.lstat(path)
                if name.startswith(WHITEOUT_PREFIX):
                    raise LayerError(f"{arcname}: a file name starting with .wh. cannot be stored")
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    whiteout = tarfile.TarInfo(
                        f"{rel_dir}/{WHITEOUT_PREFIX}{name}" if rel_dir else WHITEOUT_PREFIX + name
                    )
                    whiteout.mtime = int(st.st_mtime)
                    add(whiteout)
                    continue
                info = tar.gettarinfo(path, arcname)
                info.pax_headers = _xattrs(path)
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    first = hard_links.get(key)
                    if first is not None:
                        info.type = tarfile.LNKTYPE
                        info.linkname = first
                        info.size = 0
                        add(info)
                        continue
                    hard_links[key] = arcname
                if info.isreg():
                    with open(path, "rb") as f:
                        add(info, f)
                else:
                    add(info)
                if stat.S_ISDIR(st.st_mode):
                    walk(arcname)

        walk("")
    return written


def commit_layer(
    content: ContentStore, upper: str, lease: Lease | None = None
) -> tuple[Descriptor, str, int]:
    """Store the upper directory's change as a gzip layer blob (recorded in `lease`
    before it can appear in the store).

    Returns (the layer's descriptor, its diff ID, the number of entries).
    """
    writer: Writer
    with content.writer(media_type=media.OCI_LAYER_GZIP) as writer:
        # mtime=0: the same change compresses to the same blob.
        with gzip.GzipFile(fileobj=writer, mode="wb", mtime=0, compresslevel=6) as gz:
            tar_out = _TarOut(gz)  # type: ignore[arg-type]
            entries = write_diff(upper, tar_out)  # type: ignore[arg-type]
        layer = writer.commit(
            before=None if lease is None else lambda d: lease.add_blob(d, media.OCI_LAYER_GZIP)
        )
    diff_id = "sha256:" + tar_out.hash.hexdigest()
    return layer.model_copy(update={"media_type": media.OCI_LAYER_GZIP}), diff_id, entries

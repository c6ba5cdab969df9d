"""COPY and ADD: sources picked from the build context (or a stage's root
filesystem), checksummed for the cache, and copied into the image.

Docker's rules, as followed here:
- a source is a path or a wildcard pattern (Go's filepath.Match per path
  component, as fnmatch does it) relative to its root; paths are resolved with
  every symlink taken as if the root were `/`, so nothing outside the context
  or the stage's file system can be named; entries that .dockerignore excludes
  do not exist for COPY;
- a directory source copies its contents, not itself; a file source lands at
  the destination, or inside it when the destination ends with `/` or is an
  existing directory; several sources need a destination ending with `/`;
- a relative destination is relative to the image's WorkingDir; missing
  parent directories are made (0755);
- files keep their mode and mtime; the owner is 0:0 unless `--chown` names one,
  and `--chmod` sets the mode of what is copied; symbolic links below a
  source directory are copied as links;
- ADD also unpacks a local tar archive (plain, gzip, bzip2 or xz) into the
  destination, keeping the archive's owners (unless `--chown`); an archive
  member that would land outside the destination is refused. URLs and git
  sources are not supported.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from agent.images.build.ignore import IgnoreRules
from agent.runtime.linux.rootfs import secure_join

_WILDCARDS = frozenset("*?[")


class CopyError(ValueError):
    """A COPY or ADD that cannot be done (the message says which path and why)."""


@dataclass(frozen=True)
class Source:
    """One matched source: `rel` under `root` ('/'-separated, '' for the root itself)."""

    root: str
    rel: str
    path: str  # the resolved host path
    is_dir: bool


def _clean(pattern: str) -> list[str]:
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


def _excluded(ignore: IgnoreRules | None, rel: str) -> bool:
    return ignore is not None and rel != "" and ignore.excluded(rel)


def find_sources(root: str, patterns: list[str], ignore: IgnoreRules | None) -> list[Source]:
    """The sources `patterns` name under `root`; CopyError for one that matches nothing."""
    found: list[Source] = []
    for pattern in patterns:
        if "://" in pattern:
            raise CopyError(f"{pattern}: URL sources are not supported yet")
        candidates = [""]
        for part in _clean(pattern):
            if _WILDCARDS.isdisjoint(part):
                candidates = [f"{c}/{part}" if c else part for c in candidates]
                continue
            expanded: list[str] = []
            for c in candidates:
                directory = secure_join(root, c)
                try:
                    names = sorted(os.listdir(directory))
                except (NotADirectoryError, FileNotFoundError):
                    continue
                expanded += [f"{c}/{n}" if c else n for n in names if fnmatch.fnmatchcase(n, part)]
            candidates = expanded
        matched = False
        for rel in candidates:
            if _excluded(ignore, rel):
                continue
            path = secure_join(root, rel)
            try:
                st = os.stat(path)  # the source itself is followed (within the root)
            except FileNotFoundError:
                continue
            found.append(Source(root, rel, path, stat.S_ISDIR(st.st_mode)))
            matched = True
        if not matched:
            raise CopyError(
                f"{pattern}: not found (no such file in the build context, or excluded by "
                ".dockerignore)"
                if ignore is not None
                else f"{pattern}: no such file or directory"
            )
    return found


def _entries(source: Source, ignore: IgnoreRules | None) -> Iterator[tuple[str, str]]:
    """(host path, path relative to the copy's destination) of a directory source's
    contents, parents before children, in name order; (path, '') for a file."""
    if not source.is_dir:
        yield source.path, ""
        return

    def walk(rel: str) -> Iterator[tuple[str, str]]:
        directory = os.path.join(source.path, rel)
        for name in sorted(os.listdir(directory)):
            child = f"{rel}/{name}" if rel else name
            context_rel = f"{source.rel}/{child}" if source.rel else child
            if _excluded(ignore, context_rel):
                continue
            path = os.path.join(source.path, child)
            yield path, child
            if os.path.isdir(path) and not os.path.islink(path):
                yield from walk(child)

    yield from walk("")


def checksum(sources: list[Source], ignore: IgnoreRules | None) -> str:
    """A digest of what the sources would copy: names, types, modes, link targets
    and file contents (not owners or times, as Docker's cache does)."""
    h = hashlib.sha256()
    for source in sources:
        h.update(f"source {source.rel}\0".encode())
        for path, rel in _entries(source, ignore):
            st = os.lstat(path)
            h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(path).encode() + b"\0")
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
    return "sha256:" + h.hexdigest()


@dataclass(frozen=True)
class Ownership:
    uid: int = 0
    gid: int = 0
    keep: bool = False  # ADD of an archive without --chown keeps the archive's owners


def _make_dirs(rootfs: str, rel: str, owner: Ownership) -> str:
    """Resolve `rel` inside rootfs, making missing directories (0755, owned by `owner`)."""
    path = secure_join(rootfs, rel)
    missing: list[str] = []
    probe = path
    while not os.path.lexists(probe) and probe != rootfs:
        missing.append(probe)
        probe = os.path.dirname(probe)
    if os.path.lexists(probe) and not os.path.isdir(probe):
        raise CopyError(f"{rel}: {os.path.relpath(probe, rootfs)} is not a directory")
    for directory in reversed(missing):
        os.mkdir(directory, 0o755)
        os.chmod(directory, 0o755)
        os.chown(directory, owner.uid, owner.gid)
    return path


def _place(src: str, dst: str, owner: Ownership, chmod: int | None) -> None:
    st = os.lstat(src)
    if os.path.lexists(dst):
        if os.path.isdir(dst) and not os.path.islink(dst):
            if not stat.S_ISDIR(st.st_mode):
                raise CopyError(f"cannot overwrite directory {dst} with a non-directory")
        else:
            os.unlink(dst)
    if stat.S_ISDIR(st.st_mode):
        if not os.path.isdir(dst):
            os.mkdir(dst)
        os.chmod(dst, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
        os.chmod(dst, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    else:
        raise CopyError(f"{src}: only files, directories and symbolic links can be copied")
    os.chown(dst, owner.uid, owner.gid, follow_symlinks=False)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_into(
    rootfs: str,
    sources: list[Source],
    dest: str,
    *,
    workdir: str,
    ignore: IgnoreRules | None,
    owner: Ownership,
    chmod: int | None = None,
    unpack_archives: bool = False,
) -> None:
    """Copy `sources` to `dest` inside the mounted root filesystem `rootfs`."""
    dest_abs = dest if dest.startswith("/") else os.path.join(workdir or "/", dest)
    dest_rel = "/".join(_clean(dest_abs))
    into_dir = dest.endswith("/") or dest.endswith("/.") or dest in (".", "")
    if len(sources) > 1 and not into_dir:
        raise CopyError(
            f"{dest}: when copying more than one source, the destination must be a "
            "directory and end with a /"
        )
    for source in sources:
        if unpack_archives and not source.is_dir and _is_archive(source.path):
            target = _make_dirs(rootfs, dest_rel, owner)
            _unpack_archive(source.path, target, owner)
            continue
        if source.is_dir:
            target = _make_dirs(rootfs, dest_rel, owner)
            for path, rel in _entries(source, ignore):
                parent = os.path.dirname(rel)
                inside = "/".join(p for p in (dest_rel, parent) if p)
                where = secure_join(rootfs, inside) if parent else target
                _place(path, os.path.join(where, os.path.basename(rel)), owner, chmod)
            continue
        existing = secure_join(rootfs, dest_rel)
        if into_dir or os.path.isdir(existing):
            target = os.path.join(_make_dirs(rootfs, dest_rel, owner), os.path.basename(source.rel))
        else:
            parent = _make_dirs(rootfs, os.path.dirname(dest_rel), owner)
            target = os.path.join(parent, os.path.basename(dest_rel))
        _place(source.path, target, owner, chmod)


def _is_archive(path: str) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def _unpack_archive(path: str, target: str, owner: Ownership) -> None:
    def keep_inside(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        try:
            member = tarfile.tar_filter(member, dest)
        except tarfile.FilterError as e:
            raise CopyError(f"{os.path.basename(path)}: refusing archive member: {e}") from None
        # Owners by number: the names would be looked up in this host's user database.
        if owner.keep:
            return member.replace(uname="", gname="", deep=False)
        return member.replace(uid=owner.uid, gid=owner.gid, uname="", gname="", deep=False)

    with tarfile.open(path, "r:*") as tar:
        tar.extractall(target, filter=keep_inside)

"""Docker's `local` volume driver: named directories under the store's root.

Layout (as dockerd's `/var/lib/docker/volumes`, with JSON instead of boltdb):

    <root>/<name>/_data         what containers see (the Mountpoint)
    <root>/<name>/volume.json   name, driver, labels, options, created_at, scope

`volume.json` is written last and atomically (temp file, fsync, rename): a
directory without it is a create that did not finish, invisible and finished
by the next create of that name. Removal renames the volume's directory to a
hidden `.removing-*` name first (a dot never starts a volume name), so a
volume is either there or gone; leftovers are swept when the store opens.

Which volumes are in use is not this module's knowledge: the daemon sets
`VolumeStore.in_use` (volume name -> IDs of the containers that mount it).
Mounting, including the `type`/`device`/`o` options, is the container side's
job; this module records and validates them.
"""

from __future__ import annotations

import builtins
import datetime
import errno
import json
import os
import re
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ANONYMOUS_LABEL",
    "NoSuchVolume",
    "Volume",
    "VolumeConflict",
    "VolumeError",
    "VolumeFilters",
    "VolumeInUse",
    "VolumeStore",
    "VolumeUsage",
    "copy_up",
    "validate_name",
    "validate_options",
]

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
DRIVER = "local"
DATA = "_data"
METADATA = "volume.json"
_REMOVING = ".removing-"
RESTRICTED_NAME_CHARS = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_NAME = re.compile(rf"^{RESTRICTED_NAME_CHARS}+$")
_VALID_OPTIONS = ("type", "device", "o")
# An option that needs others with it, as the local driver's mandatoryOpts.
_MANDATORY = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
_TRUE = ("true", "1")
_FALSE = ("false", "0")


class VolumeError(Exception):
    """Base of the volume errors that are not bad input (that is ValueError)."""


class NoSuchVolume(VolumeError):
    def __init__(self, name: str, op: str = "get") -> None:
        super().__init__(f"{op} {name}: no such volume")
        self.name = name


class VolumeInUse(VolumeError):
    def __init__(self, name: str, refs: list[str]) -> None:
        super().__init__(f"remove {name}: volume is in use - [{', '.join(refs)}]")
        self.name = name
        self.refs = refs


class VolumeConflict(VolumeError):
    """A create under an existing name that asks for something else."""


def validate_name(name: str) -> None:
    """Docker's rule for local volume names; ValueError with dockerd's message."""
    if len(name) == 1:
        raise ValueError(
            "volume name is too short, names should be at least two alphanumeric characters"
        )
    if not _NAME.match(name):
        raise ValueError(
            f'"{name}" includes invalid characters for a local volume name, only '
            f'"{RESTRICTED_NAME_CHARS}" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )


def validate_options(options: Mapping[str, str]) -> None:
    """The local driver's options: `type`, `device`, `o`, each with its companions."""
    for key in options:
        if key not in _VALID_OPTIONS:
            raise ValueError(f'invalid option key: "{key}"')
    for key, needed in _MANDATORY.items():
        if key in options:
            for other in needed:
                if other not in options:
                    raise ValueError(f'missing required option: "{other}"')


def _now_rfc3339() -> str:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Volume:
    name: str
    mountpoint: str
    created_at: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    driver: str = DRIVER
    scope: str = "local"

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "labels": self.labels,
            "options": self.options,
            "created_at": self.created_at,
            "scope": self.scope,
        }


@dataclass(frozen=True)
class VolumeUsage:
    volume: Volume
    size: int
    ref_count: int


def _bool_filter(key: str, values: list[str]) -> bool:
    if len(values) != 1 or values[0].lower() not in (*_TRUE, *_FALSE):
        raise ValueError(f"invalid filter '{key}={','.join(values)}'")
    return values[0].lower() in _TRUE


def _labels_match(wanted: list[str], labels: Mapping[str, str]) -> bool:
    """Every `key` or `key=value` of `wanted` holds (Docker's MatchKVList)."""
    for item in wanted:
        key, eq, value = item.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


@dataclass(frozen=True)
class VolumeFilters:
    """Docker's volume filters (`map[string][]string`), parsed and checked.

    For listing: `name` (substring, any of), `driver` (exact, any of), `label`
    (`key` or `key=value`, all of), `dangling` (true: not in use). For prune:
    `label`, `label!` (volumes with all these labels are kept) and `all`
    (false: only anonymous volumes).
    """

    name: tuple[str, ...] = ()
    driver: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    not_label: tuple[str, ...] = ()
    dangling: bool | None = None
    all: bool | None = None

    LIST_KEYS = frozenset({"name", "driver", "label", "dangling"})
    PRUNE_KEYS = frozenset({"label", "label!", "all"})

    @classmethod
    def parse(cls, doc: object, allowed: frozenset[str]) -> VolumeFilters:
        """From the decoded `filters` parameter: {"k": ["v"]} or the older {"k": {"v": true}}."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ValueError("filters: expected a JSON object")
        grouped: dict[str, list[str]] = {}
        for key, values in doc.items():
            if key not in allowed:
                raise ValueError(f"invalid filter '{key}'")
            if isinstance(values, dict):
                items = [str(v) for v, on in values.items() if on]
            elif isinstance(values, list):
                items = [str(v) for v in values]
            else:
                raise ValueError(f"invalid filter '{key}': expected a list of values")
            grouped[key] = items
        return cls(
            name=tuple(grouped.get("name", ())),
            driver=tuple(grouped.get("driver", ())),
            label=tuple(grouped.get("label", ())),
            not_label=tuple(grouped.get("label!", ())),
            dangling=_bool_filter("dangling", grouped["dangling"])
            if grouped.get("dangling")
            else None,
            all=_bool_filter("all", grouped["all"]) if grouped.get("all") else None,
        )

    def matches(self, volume: Volume, in_use: bool) -> bool:
        if self.name and not any(n in volume.name for n in self.name):
            return False
        if self.driver and volume.driver not in self.driver:
            return False
        if self.label and not _labels_match(list(self.label), volume.labels):
            return False
        if self.not_label and _labels_match(list(self.not_label), volume.labels):
            return False
        return self.dangling is None or self.dangling == (not in_use)


def _nothing_in_use() -> dict[str, list[str]]:
    return {}


class VolumeStore:
    """The local driver's volumes under `root`. Thread-safe (one lock for changes)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.in_use: Callable[[], dict[str, list[str]]] = _nothing_in_use
        self._lock = threading.Lock()
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self._sweep()

    def _sweep(self) -> None:
        for entry in os.listdir(self.root):
            if entry.startswith(_REMOVING):
                shutil.rmtree(os.path.join(self.root, entry), ignore_errors=True)

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _read(self, name: str) -> Volume | None:
        try:
            with open(os.path.join(self._dir(name), METADATA)) as f:
                doc = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Volume(
            name=name,
            mountpoint=os.path.join(self._dir(name), DATA),
            created_at=str(doc.get("created_at", "")),
            labels={str(k): str(v) for k, v in (doc.get("labels") or {}).items()},
            options={str(k): str(v) for k, v in (doc.get("options") or {}).items()},
            driver=str(doc.get("driver", DRIVER)),
            scope=str(doc.get("scope", "local")),
        )

    def _write(self, volume: Volume) -> None:
        path = os.path.join(self._dir(volume.name), METADATA)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(volume.metadata(), f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- the driver's operations

    def create(
        self,
        name: str | None = None,
        *,
        driver: str = DRIVER,
        labels: Mapping[str, str] | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Volume:
        """Create a volume, or return the one of that name made with the same options.

        No name makes an anonymous volume: a random 64-hex name and the
        `com.docker.volume.anonymous` label. An existing name with other
        options is a VolumeConflict; other labels are ignored (the existing
        volume is returned), as dockerd does.
        """
        if driver not in ("", DRIVER):
            raise ValueError(f"volume driver {driver} is not supported")
        wanted_labels = dict(labels or {})
        wanted_options = dict(options or {})
        if not name:
            name = secrets.token_hex(32)
            wanted_labels.setdefault(ANONYMOUS_LABEL, "")
        validate_name(name)
        validate_options(wanted_options)
        with self._lock:
            existing = self._read(name)
            if existing is not None:
                if existing.driver != DRIVER:
                    raise VolumeConflict(
                        f"create {name}: driver '{existing.driver}' already has volume "
                        f"'{name}': volume name must be unique"
                    )
                if existing.options != wanted_options:
                    raise VolumeConflict(
                        f"create {name}: volume already exists with different options "
                        f"({_options_text(existing.options)}; asked for "
                        f"{_options_text(wanted_options)})"
                    )
                return existing
            os.makedirs(os.path.join(self._dir(name), DATA), mode=0o755, exist_ok=True)
            volume = Volume(
                name=name,
                mountpoint=os.path.join(self._dir(name), DATA),
                created_at=_now_rfc3339(),
                labels=wanted_labels,
                options=wanted_options,
            )
            self._write(volume)
            return volume

    # -- what the container side calls when it mounts

    def get_or_create(self, name: str) -> Volume:
        """The volume a mount names, made (without options) if missing; an existing one
        is used whatever its options, as dockerd does for `-v NAME:/path`."""
        try:
            return self.get(name)
        except NoSuchVolume:
            validate_name(name)
        try:
            return self.create(name)
        except VolumeConflict:  # made meanwhile, with options
            return self.get(name)

    def create_anonymous(self) -> Volume:
        return self.create(None)

    @staticmethod
    def copy_up(image_dir: str, volume_data_dir: str) -> bool:
        return copy_up(image_dir, volume_data_dir)

    def get(self, name: str) -> Volume:
        if not _NAME.match(name):
            raise NoSuchVolume(name)
        volume = self._read(name)
        if volume is None:
            raise NoSuchVolume(name)
        return volume

    def list(self, filters: VolumeFilters | None = None) -> list[Volume]:
        filters = filters or VolumeFilters()
        used = self.in_use() if filters.dangling is not None else {}
        out = []
        for entry in sorted(os.listdir(self.root)):
            if not _NAME.match(entry):
                continue
            volume = self._read(entry)
            if volume is not None and filters.matches(volume, bool(used.get(entry))):
                out.append(volume)
        return out

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove a volume no container uses. `force` only makes a missing volume fine:
        a volume in use is refused even then, as dockerd does."""
        with self._lock:
            try:
                self.get(name)
            except NoSuchVolume:
                if force:
                    return
                raise
            refs = self.in_use().get(name)
            if refs:
                raise VolumeInUse(name, list(refs))
            self._remove(name)

    def _remove(self, name: str) -> None:
        doomed = os.path.join(self.root, f"{_REMOVING}{name}-{secrets.token_hex(4)}")
        os.rename(self._dir(name), doomed)
        shutil.rmtree(doomed)

    def prune(self, filters: VolumeFilters | None = None) -> tuple[builtins.list[str], int]:
        """Remove the unused volumes the filters select: only anonymous ones unless the
        `all` filter is true (Docker 23+). Returns the names removed and the bytes freed."""
        filters = filters or VolumeFilters()
        removed: list[str] = []
        reclaimed = 0
        with self._lock:
            used = self.in_use()
            for volume in self.list(filters):
                if used.get(volume.name):
                    continue
                if not filters.all and not volume.anonymous:
                    continue
                size = _tree_size(volume.mountpoint)
                self._remove(volume.name)
                removed.append(volume.name)
                reclaimed += size
        return removed, reclaimed

    def usage(self) -> builtins.list[VolumeUsage]:
        """Every volume with its size on disk and how many containers use it."""
        used = self.in_use()
        return [
            VolumeUsage(v, _tree_size(v.mountpoint), len(used.get(v.name, []))) for v in self.list()
        ]


def _options_text(options: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "no options"


def _tree_size(path: str) -> int:
    """Bytes of everything under `path` but directories, each hard-linked inode once."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for top, dirs, files in os.walk(path):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]:
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


# -- copy-up -----------------------------------------------------------------------------


def copy_up(image_dir: str, volume_data_dir: str) -> bool:
    """Fill an empty volume from the image's content at its mount point, as dockerd
    does on a named volume's first mount.

    Only when `volume_data_dir` is empty; then everything under `image_dir`
    is copied (files, directories, symlinks, hard links, fifos and device
    nodes) with owners, modes, times and extended attributes, and the
    volume's root takes the owner and mode of `image_dir`. Symlinks are
    copied as links, never followed. Returns whether anything was done
    (False: the volume was not empty, or the image has nothing there).
    """
    try:
        if os.listdir(volume_data_dir):
            return False
        source = os.lstat(image_dir)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(source.st_mode):
        return False
    links: dict[tuple[int, int], str] = {}
    _copy_children(image_dir, volume_data_dir, links)
    _copy_attributes(image_dir, volume_data_dir, source)
    return True


def _copy_children(src_dir: str, dst_dir: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src_dir) as entries:
        children = sorted(entries, key=lambda e: e.name)
    for entry in children:
        src = entry.path
        dst = os.path.join(dst_dir, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(dst, 0o700)
            _copy_children(src, dst, links)
            _copy_attributes(src, dst, st)
            continue
        if not stat.S_ISLNK(mode) and st.st_nlink > 1:
            first = links.get((st.st_dev, st.st_ino))
            if first is not None:
                os.link(first, dst)
                continue
            links[(st.st_dev, st.st_ino)] = dst
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISREG(mode):
            _copy_file(src, dst)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
        else:
            continue  # sockets belong to a running process, not to content
        _copy_attributes(src, dst, st)


def _copy_file(src: str, dst: str) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(
            dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            with open(fd_in, "rb", closefd=False) as fin, open(fd_out, "wb", closefd=False) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_attributes(src: str, dst: str, st: os.stat_result) -> None:
    """Extended attributes, owner, mode, then times (last: the others touch ctime only)."""
    link = stat.S_ISLNK(st.st_mode)
    _copy_xattrs(src, dst)
    try:
        os.lchown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        if os.geteuid() == 0:
            raise  # root may give anything away; not being able to is a real failure
    if not link:
        os.chmod(dst, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid bits
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names: Iterable[str] = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as e:
            # user.* on a symlink, or trusted.*/security.* without the privilege
            if e.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                raise

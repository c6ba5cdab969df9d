"""Image names: which manifest each `name:tag` (or `name@digest`) points at.

The blobs themselves live in the content store; this is the small table of
names above them, one JSON file written atomically (temp file, fsync, rename),
so a crash leaves either the old table or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

from agent.content import ContentStore, Descriptor, Digest
from agent.images import media
from agent.images.reference import Reference, parse

References = list[Reference]  # `ImageStore.list` shadows the builtin inside the class


class ImageNotFound(LookupError):
    pass


class Image:
    """A named image: its reference, the descriptor of its manifest, and the digest
    a registry gave for it (`repo_digest`: what the tag resolved to when pulled, an
    index for a multi-platform image, or what a push stored), if any."""

    __slots__ = ("created", "reference", "repo_digest", "target")

    def __init__(
        self,
        reference: Reference,
        target: Descriptor,
        created: float,
        repo_digest: str | None = None,
    ) -> None:
        self.reference = reference
        self.target = target
        self.created = created
        self.repo_digest = repo_digest

    def __repr__(self) -> str:
        return f"Image({self.reference.familiar()} -> {self.target.digest})"


class ImageStore:
    """Names to manifests, over a content store."""

    def __init__(self, root: str | os.PathLike[str], content: ContentStore) -> None:
        self.root = Path(root)
        self.content = content
        self._file = self.root / "images.json"
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            doc = json.loads(self._file.read_text())
        except FileNotFoundError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def _save(self, table: dict[str, dict[str, object]]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".images-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(table, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self._file)
        except BaseException:
            os.unlink(tmp)
            raise

    def tag(
        self, ref: Reference | str, target: Descriptor, *, repo_digest: str | None = None
    ) -> Image:
        """Point `ref` at a manifest (or index) already in the content store.

        `repo_digest` records the registry's digest for it (see Image); without one,
        a digest recorded before for the same name and target is kept.
        """
        reference = parse(ref) if isinstance(ref, str) else ref
        if target.media_type not in media.MANIFESTS | media.INDEXES:
            raise ValueError(f"{target.digest}: {target.media_type} is not a manifest or index")
        if not self.content.has(target.digest):
            raise ImageNotFound(f"{target.digest}: not in the content store")
        with self._lock:
            table = self._load()
            created = time.time()
            previous = table.get(str(reference)) or {}
            before = previous.get("target")
            same = isinstance(before, dict) and before.get("digest") == target.digest
            if repo_digest is None and same:
                kept = previous.get("repo_digest")
                repo_digest = kept if isinstance(kept, str) else None
            entry: dict[str, object] = {
                "target": target.model_dump(mode="json", exclude_none=True),
                "created": created,
            }
            if repo_digest is not None:
                entry["repo_digest"] = repo_digest
            table[str(reference)] = entry
            self._save(table)
        return Image(reference, target, created, repo_digest)

    def get(self, ref: Reference | str) -> Image:
        reference = parse(ref) if isinstance(ref, str) else ref
        entry = self._load().get(str(reference))
        if entry is None:
            raise ImageNotFound(f"no such image: {reference.familiar()}")
        return _image(str(reference), entry)

    def list(self) -> list[Image]:
        return [_image(name, entry) for name, entry in sorted(self._load().items())]

    def untag(self, ref: Reference | str) -> Image:
        reference = parse(ref) if isinstance(ref, str) else ref
        with self._lock:
            table = self._load()
            entry = table.pop(str(reference), None)
            if entry is None:
                raise ImageNotFound(f"no such image: {reference.familiar()}")
            self._save(table)
        return _image(str(reference), entry)

    def names_of(self, digest: Digest | str) -> References:
        return [i.reference for i in self.list() if i.target.digest == digest]


def _image(name: str, entry: dict[str, object]) -> Image:
    created = entry.get("created")
    repo_digest = entry.get("repo_digest")
    return Image(
        parse(name),
        Descriptor.model_validate(entry["target"]),
        float(created) if isinstance(created, int | float) else 0.0,
        repo_digest if isinstance(repo_digest, str) else None,
    )

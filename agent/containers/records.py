"""Container records: what the daemon knows of each container, one JSON file each
(`<data-root>/containers/<id>/container.json`), written atomically, so a crash at any
point leaves the old record or the new one. Names are unique (`/name`)."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

ADJECTIVES = ("brave", "calm", "eager", "fond", "keen", "lucid", "quirky", "tender", "wise")
NAMES = ("curie", "hopper", "lovelace", "noether", "ritchie", "thompson", "torvalds", "turing")


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class Record:
    id: str
    name: str
    created: str
    image: str  # as asked
    image_id: str  # the config digest
    chain: str | None  # the image's top snapshot
    body: dict[str, Any]  # the create body (Config + HostConfig), for inspect and start
    hostname: str
    log_path: str
    status: str = "created"  # created | running | exited | restarting | removing | dead
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    exits: int = 0  # exits seen (for wait condition next-exit)
    manually_stopped: bool = False
    mounts: list[dict[str, Any]] = field(default_factory=list)  # as inspect shows them
    # network name -> Docker's EndpointSettings (NetworkID, Aliases, IPAMConfig; while it
    # runs also EndpointID, IPAddress, IPPrefixLen, Gateway, MacAddress)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: list[list[Any]] = field(default_factory=list)  # [host ip, host port, port, proto]
    # Docker's State.Health {Status, FailingStreak, Log} once started with a health
    # check; None without one (agent/health)
    health: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused")


class NameConflict(Exception):
    pass


REMOVED = ".removed-"  # the prefix of a removed container's directory until it is deleted


class NotFound(LookupError):
    pass


class Records:
    """The records under `<root>`, cached in memory, guarded by one lock."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o711, exist_ok=True)
        self.lock = threading.RLock()
        self._by_id: dict[str, Record] = {}
        self._discarded: set[str] = set()  # ids removed while this daemon runs
        for entry in sorted(os.listdir(root)):
            if entry.startswith(REMOVED):
                continue
            path = os.path.join(root, entry, "container.json")
            try:
                with open(path) as f:
                    doc = json.load(f)
                self._by_id[doc["id"]] = Record(**doc)
            except (OSError, ValueError, TypeError, KeyError):
                continue  # a half-made container directory: not a container

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def save(self, record: Record, *, durable: bool = False) -> None:
        """Write the record atomically (temp file, rename): whole through any crash.

        `durable` also fsyncs, for what cannot be found again (a new container's
        configuration). State changes (running, exited, pid) are not fsynced: after a
        power loss they may be older than the truth, and the daemon's start brings them
        up to date from the supervisor anyway (`ContainerService.recover`).
        """
        if record.id in self._discarded:
            return  # removed: a late writer must not bring it back
        directory = self.dir(record.id)
        os.makedirs(directory, mode=0o710, exist_ok=True)
        path = os.path.join(directory, "container.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dataclasses.asdict(record), f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        with self.lock:
            self._by_id[record.id] = record

    def forget(self, container_id: str) -> None:
        with self.lock:
            self._by_id.pop(container_id, None)

    def discard(self, container_id: str) -> str:
        """Forget the record and move its directory aside (one rename): the container
        is gone for everyone at once; the caller deletes the directory afterwards
        (`removed` finds what a crash left)."""
        aside = os.path.join(self.root, REMOVED + container_id)
        with self.lock:
            try:
                os.rename(self.dir(container_id), aside)
            except FileNotFoundError:
                pass
            self._by_id.pop(container_id, None)
            self._discarded.add(container_id)
        return aside

    def removed(self) -> list[str]:
        """Directories of removed containers not deleted yet."""
        return [
            os.path.join(self.root, entry)
            for entry in sorted(os.listdir(self.root))
            if entry.startswith(REMOVED)
        ]

    def all(self) -> list[Record]:
        with self.lock:
            return sorted(self._by_id.values(), key=lambda r: r.created, reverse=True)

    def get(self, ref: str) -> Record:
        """By full ID, by name (with or without /), or by a unique ID prefix."""
        with self.lock:
            if ref in self._by_id:
                return self._by_id[ref]
            name = ref.lstrip("/")
            for record in self._by_id.values():
                if record.name == name:
                    return record
            hits = [r for r in self._by_id.values() if ref and r.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise NotFound(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def new_id(self) -> str:
        while True:
            candidate = secrets.token_hex(32)
            if not candidate[:12].isdigit() and candidate not in self._by_id:
                return candidate

    def claim_name(self, name: str | None, container_id: str) -> str:
        with self.lock:
            taken = {r.name: r.id for r in self._by_id.values()}
            if name:
                if name in taken:
                    raise NameConflict(
                        f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{taken[name]}". You have to remove (or rename) that container to be '
                        "able to reuse that name."
                    )
                return name
            while True:
                candidate = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NAMES)}"
                if candidate not in taken:
                    return candidate
                candidate += str(secrets.randbelow(10))
                if candidate not in taken:
                    return candidate

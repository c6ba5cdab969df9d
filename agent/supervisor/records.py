"""A container's record as the supervisor keeps it, and its state transitions.

created → running → exited, or created → exited (killed before start). A
record found `running` by a restarted supervisor is `adopted`: its process is
not the supervisor's child, so its output and exit status cannot be observed;
when it ends it becomes `exited` with exit_code None and `lost` True.
"""

from __future__ import annotations

import os

from agent.runtime import fastjson

CREATED = "created"
RUNNING = "running"
EXITED = "exited"


class TransitionError(ValueError):
    """A state change the record's current status does not allow."""


class Record:
    __slots__ = (
        "adopted",
        "created_at",
        "exit_code",
        "finished_at",
        "id",
        "log_path",
        "lost",
        "oom_killed",
        "pid",
        "pid_start_time",
        "started_at",
        "status",
        "stdin",
        "tty",
    )

    def __init__(
        self,
        container_id: str,
        pid: int,
        pid_start_time: int,
        log_path: str,
        created_at: str,
        stdin: bool = False,
        tty: bool = False,
    ) -> None:
        self.id = container_id
        self.pid = pid
        self.pid_start_time = pid_start_time  # /proc/<pid>/stat field 22, against pid reuse
        self.log_path = log_path
        self.stdin = stdin
        self.tty = tty  # its pid 1 has a pty, whose master the supervisor holds
        self.status = CREATED
        self.exit_code: int | None = None
        self.oom_killed = False
        self.created_at = created_at
        self.started_at = ""
        self.finished_at = ""
        self.adopted = False
        self.lost = False

    # -- transitions --------------------------------------------------------------

    def mark_started(self, now: str) -> None:
        if self.status != CREATED:
            raise TransitionError(f"container {self.id} is {self.status}, not created")
        self.status = RUNNING
        self.started_at = now

    def mark_exited(self, exit_code: int, oom_killed: bool, now: str) -> None:
        if self.status == EXITED:
            raise TransitionError(f"container {self.id} has exited already")
        self.status = EXITED
        self.exit_code = exit_code
        self.oom_killed = oom_killed
        self.finished_at = now

    def mark_lost(self, now: str) -> None:
        """The process is gone and nobody saw how it ended."""
        if self.status == EXITED:
            raise TransitionError(f"container {self.id} has exited already")
        self.status = EXITED
        self.exit_code = None
        self.oom_killed = False
        self.finished_at = now
        self.lost = True

    def adopt(self) -> None:
        """Found alive by a supervisor that is not its parent."""
        if self.status == EXITED:
            raise TransitionError(f"container {self.id} has exited already")
        self.adopted = True

    # -- JSON -----------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "pid": self.pid,
            "pid_start_time": self.pid_start_time,
            "status": self.status,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "log_path": self.log_path,
            "stdin": self.stdin,
            "tty": self.tty,
            "adopted": self.adopted,
            "lost": self.lost,
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> Record:
        r = cls(
            str(doc["id"]),
            _int(doc.get("pid")),
            _int(doc.get("pid_start_time")),
            str(doc.get("log_path") or ""),
            str(doc.get("created_at") or ""),
            bool(doc.get("stdin")),
            bool(doc.get("tty")),
        )
        status = doc.get("status")
        if status not in (CREATED, RUNNING, EXITED):
            raise ValueError(f"container {r.id}: unknown status {status!r}")
        r.status = str(status)
        code = doc.get("exit_code")
        r.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        r.oom_killed = bool(doc.get("oom_killed"))
        r.started_at = str(doc.get("started_at") or "")
        r.finished_at = str(doc.get("finished_at") or "")
        r.adopted = bool(doc.get("adopted"))
        r.lost = bool(doc.get("lost"))
        return r


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def save(path: str, doc: dict[str, object]) -> None:
    """Write JSON atomically: temp file, rename. No fsync: this is runtime state under
    the exec root (a tmpfs on most machines, gone at reboot with the containers it
    describes); the rename keeps it whole through a crash of any process, and an fsync
    per state change cost ~5 ms each on ext4 with discard (docs/benchmarks.md)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        data = fastjson.dumps(doc).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.rename(tmp, path)


def load(path: str) -> Record:
    with open(path, encoding="utf-8") as f:
        doc = fastjson.loads(f.read())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a JSON object")
    return Record.from_json(doc)

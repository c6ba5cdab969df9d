"""SqliteStore: the embedded store, one SQLite file (`store.db` under the data root).

- **Durability**: WAL journal, `synchronous=FULL`: the WAL is fsync'ed at every commit,
  so a write acknowledged (a `txn` that returned) survives `kill -9` of the process and a
  power loss. A transaction is one SQLite transaction, so half of one is never seen.
- **Threads**: one writer connection behind a lock (`BEGIN IMMEDIATE` … `COMMIT`); reads
  take a connection from a pool (WAL readers do not wait for the writer) and read in one
  SQLite read transaction, so `range()` and its revision are one snapshot.
  `check_same_thread=False` is safe because a connection is used by one thread at a time.
- **Watches** in this process are woken by the committing thread through a condition;
  they read the `history` table. (A watcher in another process would have to poll the
  `revision` row; there is none today.)
- **History** is bounded: each commit drops the revisions older than the last
  `history_limit` (default 10 000), and `compact()` drops more on request.
- **Leases**: ids and TTLs are rows; deadlines are in memory, by the injected clock, and
  every lease found at open starts again with its full TTL (etcd does so at a leader
  change). Expiry is driven by the owner: call `expire_leases()` periodically (once a
  second is plenty; the daemon's leader loop does it).

The schema, the measurements and what is not done: docs/design/store.md.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from orchestr.state._core import (
    LeaseTimers,
    apply_ops,
    check_compares,
    check_ops,
    check_revision,
    check_ttl,
    choose_branch,
    deleted_count,
    leases_of,
    prefix_end,
)
from orchestr.state._watch import LocalWatch
from orchestr.state.base import (
    Compare,
    Delete,
    Event,
    EventType,
    Get,
    KeyValue,
    Op,
    Put,
    TxnResult,
)
from orchestr.state.errors import Closed, Compacted, FutureRevision, LeaseNotFound, StoreError

__all__ = ["STORE_FILE", "SqliteStore", "open_store"]

STORE_FILE = "store.db"
SCHEMA_VERSION = 1
Synchronous = Literal["FULL", "NORMAL", "OFF"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key             TEXT PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS history (
    revision             INTEGER NOT NULL,
    seq                  INTEGER NOT NULL,
    type                 TEXT NOT NULL,
    key                  TEXT NOT NULL,
    value                BLOB NOT NULL,
    create_revision      INTEGER NOT NULL,
    version              INTEGER NOT NULL,
    lease                INTEGER NOT NULL,
    prev_value           BLOB,
    prev_create_revision INTEGER,
    prev_mod_revision    INTEGER,
    prev_version         INTEGER,
    prev_lease           INTEGER,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id  INTEGER PRIMARY KEY,
    ttl REAL NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES
    ('schema', 1), ('revision', 0), ('compact_revision', 0), ('next_lease', 1);
"""

_KV_COLUMNS = "key, value, create_revision, mod_revision, version, lease"
_HISTORY_COLUMNS = (
    "revision, seq, type, key, value, create_revision, version, lease,"
    " prev_value, prev_create_revision, prev_mod_revision, prev_version, prev_lease"
)


def open_store(
    data_root: str | os.PathLike[str],
    *,
    history_limit: int = 10_000,
    synchronous: Synchronous = "FULL",
    clock: Callable[[], float] = time.monotonic,
) -> SqliteStore:
    """The store of a data root: `<data_root>/store.db` (made if missing)."""
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    return SqliteStore(
        root / STORE_FILE, history_limit=history_limit, synchronous=synchronous, clock=clock
    )


class SqliteStore:
    """A Store (see orchestr.state.base) in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_limit: int = 10_000,
        synchronous: Synchronous = "FULL",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        self.path = Path(path)
        self._history_limit = history_limit
        self._synchronous = synchronous
        self._write_lock = threading.RLock()
        self._pool_lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._changed = threading.Condition(threading.Lock())
        self._closed = False
        self._timers = LeaseTimers(clock)
        self._writer = self._connect()
        try:
            self._writer.executescript(SCHEMA)
            self._check_schema()
            self._head = self._meta(self._writer, "revision")
            for lease_id, ttl in self._writer.execute("SELECT id, ttl FROM leases"):
                self._timers.start(lease_id, ttl)
        except BaseException:
            self._writer.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use the WAL journal (got {mode!r})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_schema(self) -> None:
        version = self._meta(self._writer, "schema")
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version}, this orchestr reads {SCHEMA_VERSION}"
            )

    # -- reads -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._reader() as conn:
            return self._meta(conn, "revision")

    @property
    def compact_revision(self) -> int:
        with self._reader() as conn:
            return self._meta(conn, "compact_revision")

    def get(self, key: str) -> KeyValue | None:
        with self._reader() as conn:
            return _get(conn, key)

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._reader() as conn, _snapshot(conn):
            return _range(conn, prefix), self._meta(conn, "revision")

    # -- writes ------------------------------------------------------------------------

    def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Op],
        on_failure: Sequence[Op] = (),
    ) -> TxnResult:
        check_compares(compares)
        check_ops(on_success)
        check_ops(on_failure)
        with self._writing() as conn:
            view = _SqlView(conn)
            succeeded, ops = choose_branch(view, compares, on_success, on_failure)
            for lease_id in leases_of(ops):
                if not _lease_exists(conn, lease_id):
                    raise LeaseNotFound(lease_id)
            revision = self._meta(conn, "revision")
            responses, events = apply_ops(view, ops, revision + 1)
            if events:
                revision = self._record(conn, events)
            return TxnResult(succeeded, revision, responses)

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return self.txn([], [Put(key, value, lease)]).revision

    def delete(self, key: str, *, prefix: bool = False) -> int:
        return deleted_count(self.txn([], [Delete(key, prefix)]))

    def cas(self, key: str, value: bytes, *, mod_revision: int, lease: int = 0) -> TxnResult:
        return self.txn(
            [Compare.mod_revision(key, "==", mod_revision)], [Put(key, value, lease)], [Get(key)]
        )

    def _record(self, conn: sqlite3.Connection, events: list[Event]) -> int:
        """Write the events of a new revision to the history, and the new revision."""
        revision = events[0].revision
        conn.executemany(
            f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [_history_row(seq, event) for seq, event in enumerate(events)],
        )
        self._set_meta(conn, "revision", revision)
        floor = revision - self._history_limit + 1
        if floor > self._meta(conn, "compact_revision"):
            self._drop_history(conn, floor)
        return revision

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; watches hear of the new revision once it is committed."""
        with self._write_lock:
            self._check_open()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            revision = self._meta(conn, "revision")
            with self._changed:
                if revision != self._head:
                    self._head = revision
                    self._changed.notify_all()

    # -- history -----------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int = 0) -> LocalWatch:
        check_revision(start_revision)
        with self._reader() as conn, _snapshot(conn):
            if start_revision == 0:
                start_revision = self._meta(conn, "revision") + 1
            else:
                compact_revision = self._meta(conn, "compact_revision")
                if start_revision < compact_revision:
                    raise Compacted(start_revision, compact_revision)
        return LocalWatch(self, prefix, start_revision)

    def compact(self, revision: int) -> None:
        check_revision(revision)
        with self._writing() as conn:
            current = self._meta(conn, "revision")
            compact_revision = self._meta(conn, "compact_revision")
            if revision > current:
                raise FutureRevision(revision, current)
            if revision <= compact_revision:
                raise Compacted(revision, compact_revision)
            self._drop_history(conn, revision)

    def _drop_history(self, conn: sqlite3.Connection, floor: int) -> None:
        conn.execute("DELETE FROM history WHERE revision < ?", (floor,))
        self._set_meta(conn, "compact_revision", floor)

    # WatchSource

    @property
    def changed(self) -> threading.Condition:
        return self._changed

    def head(self) -> int:
        return self._head

    @property
    def closed(self) -> bool:
        return self._closed

    def events_between(self, prefix: str, first: int, last: int) -> list[Event]:
        where, args = _prefix_clause(prefix)
        with self._reader() as conn, _snapshot(conn):
            compact_revision = self._meta(conn, "compact_revision")
            if first < compact_revision:
                raise Compacted(first, compact_revision)
            rows = conn.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM history"
                f" WHERE revision BETWEEN ? AND ? AND {where} ORDER BY revision, seq",
                (first, last, *args),
            ).fetchall()
        return [_event(row) for row in rows]

    # -- leases ------------------------------------------------------------------------

    def grant(self, ttl: float) -> int:
        check_ttl(ttl)
        with self._writing() as conn:
            lease_id = self._meta(conn, "next_lease")
            self._set_meta(conn, "next_lease", lease_id + 1)
            conn.execute("INSERT INTO leases (id, ttl) VALUES (?, ?)", (lease_id, float(ttl)))
        self._timers.start(lease_id, ttl)
        return lease_id

    def keepalive(self, lease_id: int) -> float:
        with self._write_lock:
            self._check_open()
            return self._timers.refresh(lease_id)

    def revoke(self, lease_id: int) -> int:
        with self._writing() as conn:
            if not _lease_exists(conn, lease_id):
                raise LeaseNotFound(lease_id)
            keys = [
                row[0]
                for row in conn.execute(
                    "SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,)
                )
            ]
            revision = self._meta(conn, "revision")
            _, events = apply_ops(_SqlView(conn), [Delete(k) for k in keys], revision + 1)
            if events:
                revision = self._record(conn, events)
            conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
        self._timers.forget(lease_id)
        return revision

    def expire_leases(self) -> list[int]:
        expired = []
        with self._write_lock:
            for lease_id in self._timers.lapsed():
                try:
                    self.revoke(lease_id)
                except LeaseNotFound:
                    self._timers.forget(lease_id)
                    continue
                expired.append(lease_id)
        return expired

    # -- life --------------------------------------------------------------------------

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        with self._changed:
            self._changed.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("the store is closed")

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection from the pool (made when none is idle)."""
        self._check_open()
        with self._pool_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._pool_lock:
                keep = not self._closed
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    @staticmethod
    def _meta(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"the store has no {name!r} row: not an orchestr store?")
        value: int = row[0]
        return value

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, name: str, value: int) -> None:
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: the statements inside it see one state of the file."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


class _SqlView:
    """The keys as the open write transaction sees them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get(self, key: str) -> KeyValue | None:
        return _get(self._conn, key)

    def range(self, prefix: str) -> list[KeyValue]:
        return _range(self._conn, prefix)

    def set(self, kv: KeyValue) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO kv ({_KV_COLUMNS}) VALUES (?,?,?,?,?,?)",
            (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        )

    def remove(self, key: str) -> None:
        self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))


def _get(conn: sqlite3.Connection, key: str) -> KeyValue | None:
    row = conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else KeyValue(*row)


def _range(conn: sqlite3.Connection, prefix: str) -> list[KeyValue]:
    where, args = _prefix_clause(prefix)
    rows = conn.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE {where} ORDER BY key", args)
    return [KeyValue(*row) for row in rows]


def _prefix_clause(prefix: str) -> tuple[str, tuple[str, ...]]:
    """`key` starts with `prefix`, as a range the primary key's index answers."""
    end = prefix_end(prefix)
    if end is None:
        return "key >= ?", (prefix,)
    return "key >= ? AND key < ?", (prefix, end)


def _lease_exists(conn: sqlite3.Connection, lease_id: int) -> bool:
    return conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease_id,)).fetchone() is not None


# The columns of _HISTORY_COLUMNS, in order (the prev_* ones are NULL for a create).
HistoryRow = tuple[
    int, int, str, str, bytes, int, int, int, bytes | None, int | None, int | None, int | None,
    int | None,
]  # fmt: skip


def _history_row(seq: int, event: Event) -> HistoryRow:
    kv, prev = event.kv, event.prev
    return (
        kv.mod_revision,
        seq,
        event.type.value,
        kv.key,
        kv.value,
        kv.create_revision,
        kv.version,
        kv.lease,
        None if prev is None else prev.value,
        None if prev is None else prev.create_revision,
        None if prev is None else prev.mod_revision,
        None if prev is None else prev.version,
        None if prev is None else prev.lease,
    )


def _event(row: HistoryRow) -> Event:
    revision, _, kind, key, value, create, version, lease = row[:8]
    kv = KeyValue(key, value, create, revision, version, lease)
    prev = None
    if row[8] is not None:
        p_create, p_mod, p_version, p_lease = row[9:13]
        assert p_create is not None and p_mod is not None
        assert p_version is not None and p_lease is not None
        prev = KeyValue(key, row[8], p_create, p_mod, p_version, p_lease)
    return Event(EventType(kind), kv, prev)

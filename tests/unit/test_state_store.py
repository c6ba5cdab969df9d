"""The state store: the conformance suite against every implementation, and what only
the SQLite store has (a file that outlives the object, its settings, threads)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import orchestr.state
from orchestr.state import (
    STORE_FILE,
    KeyValue,
    MemoryStore,
    SqliteStore,
    Store,
    StoreError,
    open_store,
)
from tests.conformance.store_suite import FakeClock, StoreFactory, StoreSuite, drain

IMPLEMENTATIONS = ["memory", "sqlite"]


@pytest.fixture(params=IMPLEMENTATIONS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    stores: list[Store] = []

    def make(*, history_limit: int = 10_000, clock: Callable[[], float] = time.monotonic) -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(history_limit=history_limit, clock=clock)
        else:
            path = tmp_path / f"store-{len(stores)}.db"
            store = SqliteStore(path, history_limit=history_limit, clock=clock)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


class TestStore(StoreSuite):
    """Every case of tests/conformance/store_suite.py, for each implementation."""


def test_public_api() -> None:
    assert sorted(orchestr.state.__all__) == sorted(
        name
        for name in dir(orchestr.state)
        if not name.startswith("_")
        and name not in {"base", "errors", "memory", "sqlite", "annotations"}
    )
    for name in orchestr.state.__all__:
        assert getattr(orchestr.state, name) is not None


# -- SQLite only -------------------------------------------------------------------------


def test_the_file_is_in_the_data_root_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(tmp_path / "root")
    try:
        assert store.path == tmp_path / "root" / STORE_FILE
        store.put("a", b"1")
        conn = sqlite3.connect(store.path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
        writer = store._writer  # the setting is per connection
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_reopened_store_has_keys_history_and_leases(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / STORE_FILE
    store = SqliteStore(path, clock=clock)
    lease = store.grant(10)
    store.put("a", b"1", lease=lease)
    store.put("b", b"2")
    store.delete("b")
    store.compact(2)
    store.close()

    clock.advance(9)
    store = SqliteStore(path, clock=clock)  # the lease starts again with its full TTL
    try:
        assert store.revision == 3
        assert store.compact_revision == 2
        assert store.get("a") == KeyValue("a", b"1", 1, 1, 1, lease)
        with store.watch("", 2) as watch:
            assert [(e.type.value, e.kv.key) for e in drain(watch)] == [
                ("PUT", "b"),
                ("DELETE", "b"),
            ]
        clock.advance(9)
        assert store.expire_leases() == []
        assert store.grant(1) == lease + 1  # ids are not reused
        clock.advance(1)
        assert lease in store.expire_leases()
        assert store.get("a") is None
        assert store.put("c", b"") == 5
    finally:
        store.close()


def test_a_foreign_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 99 WHERE name = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)


def test_readers_and_writers_in_many_threads(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / STORE_FILE, synchronous="NORMAL")
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(n: int) -> None:
        try:
            for i in range(30):
                store.txn(
                    [],
                    [
                        orchestr.state.Put(f"w{n}/{i}", b"x"),
                        orchestr.state.Put(f"last/{n}", b"%d" % i),
                    ],
                )
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def read() -> None:
        try:
            while not stop.is_set():
                kvs, revision = store.range("")
                # one snapshot: every key it holds is at or below its revision
                assert all(kv.mod_revision <= revision for kv in kvs)
                assert len([kv for kv in kvs if kv.key.startswith("w")]) == revision
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(30)
    stop.set()
    for t in readers:
        t.join(30)
    store.close()
    assert not errors

"""The conformance suite every Store implementation passes (containerd's SnapshotterSuite).

Use it by subclassing `StoreSuite` in a test module that provides a `make_store` fixture
(a `StoreFactory`): a new, empty store per call, closed by the fixture at the end.

The property tests compare the store with `Model`, a plain dict that spells etcd v3's
rules out again, independently of orchestr.state's own code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestr.state import (
    Closed,
    Compacted,
    Compare,
    Delete,
    DeleteResponse,
    Event,
    EventType,
    FutureRevision,
    Get,
    GetResponse,
    InvalidTxn,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
    PutResponse,
    Store,
    TxnResult,
    Watch,
)


class StoreFactory(Protocol):
    def __call__(
        self, *, history_limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> Store: ...


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(watch: Watch) -> list[Event]:
    """Every event the watch has now, without waiting."""
    events = []
    while (event := watch.get(timeout=0)) is not None:
        events.append(event)
    return events


def brief(events: list[Event]) -> list[tuple[int, str, str, bytes]]:
    return [(e.revision, e.type.value, e.kv.key, e.kv.value) for e in events]


KEYS = st.sampled_from(["a", "a/1", "a/2", "a/1/x", "ab", "b/1", "b/2"])
PREFIXES = st.sampled_from(["", "a", "a/", "b/", "c"])
VALUES = st.sampled_from([b"", b"x", b"y", b"z"])

PUTS = st.builds(Put, KEYS, VALUES)
OPS: st.SearchStrategy[Op] = st.one_of(
    PUTS,
    PUTS,  # twice as likely: a history worth checking needs writes
    st.builds(Delete, KEYS),
    st.builds(Delete, PREFIXES, st.just(True)),
    st.builds(Get, KEYS),
    st.builds(Get, PREFIXES, st.just(True)),
)
BRANCH = st.lists(OPS, min_size=1, max_size=3)
OPERATORS = st.sampled_from(["==", "!=", "<", ">"])
COMPARES: st.SearchStrategy[Compare] = st.one_of(
    st.builds(Compare.value, KEYS, OPERATORS, VALUES),
    st.builds(Compare.version, KEYS, OPERATORS, st.integers(0, 3)),
    st.builds(Compare.create_revision, KEYS, OPERATORS, st.integers(0, 6)),
    st.builds(Compare.mod_revision, KEYS, OPERATORS, st.integers(0, 6)),
)
TXNS = st.lists(st.tuples(st.lists(COMPARES, max_size=2), BRANCH, BRANCH), min_size=8, max_size=40)

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class StoreSuite:
    """Semantics of orchestr.state.base.Store, for any implementation."""

    # -- reads and writes --------------------------------------------------------------

    def test_is_a_store(self, make_store: StoreFactory) -> None:
        assert isinstance(make_store(), Store)

    def test_empty_store(self, make_store: StoreFactory) -> None:
        store = make_store()
        assert store.revision == 0
        assert store.compact_revision == 0
        assert store.get("a") is None
        assert store.range("") == ([], 0)

    def test_put_sets_revisions_and_version(self, make_store: StoreFactory) -> None:
        store = make_store()
        assert store.put("a", b"1") == 1
        assert store.put("b", b"2") == 2
        assert store.put("a", b"3") == 3
        assert store.get("a") == KeyValue("a", b"3", 1, 3, 2)
        assert store.get("b") == KeyValue("b", b"2", 2, 2, 1)
        assert store.revision == 3

    def test_put_of_the_same_value_is_still_a_write(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a", b"1")
        assert store.put("a", b"1") == 2
        assert store.get("a") == KeyValue("a", b"1", 1, 2, 2)

    def test_empty_value_is_a_value(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a", b"")
        kv = store.get("a")
        assert kv is not None and kv.value == b""
        assert store.txn([Compare.value("a", "==", b"")], []).succeeded

    def test_range_is_by_prefix_and_sorted(self, make_store: StoreFactory) -> None:
        store = make_store()
        for key in ["b/2", "a", "b/1", "b", "b0", "c", "b/\u00e9", "b/1/x"]:
            store.put(key, key.encode())
        kvs, revision = store.range("b/")
        assert [kv.key for kv in kvs] == ["b/1", "b/1/x", "b/2", "b/\u00e9"]
        assert revision == 8
        assert [kv.key for kv in store.range("")[0]] == sorted(
            ["b/2", "a", "b/1", "b", "b0", "c", "b/\u00e9", "b/1/x"]
        )
        assert store.range("zz")[0] == []

    def test_range_at_the_top_of_unicode(self, make_store: StoreFactory) -> None:
        store = make_store()
        top = "\U0010ffff"
        for key in [f"x{top}", f"x{top}a", "y", f"x{top}{top}"]:
            store.put(key, b"")
        assert [kv.key for kv in store.range(f"x{top}")[0]] == [
            f"x{top}",
            f"x{top}a",
            f"x{top}{top}",
        ]

    def test_delete(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a/1", b"")
        store.put("a/2", b"")
        store.put("b", b"")
        assert store.delete("a/1") == 1
        assert store.revision == 4
        assert store.delete("a/1") == 0
        assert store.revision == 4  # nothing deleted, no revision
        store.put("a/3", b"")
        assert store.delete("a/", prefix=True) == 2
        assert store.revision == 6
        assert [kv.key for kv in store.range("")[0]] == ["b"]

    def test_a_key_created_again_starts_over(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a", b"1")
        store.put("a", b"2")
        store.delete("a")
        store.put("a", b"3")
        assert store.get("a") == KeyValue("a", b"3", 4, 4, 1)

    def test_bad_keys_and_values(self, make_store: StoreFactory) -> None:
        store = make_store()
        with pytest.raises(ValueError):
            store.put("", b"x")
        with pytest.raises(TypeError):
            store.put("a", "text")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Compare.version("a", "==", b"1")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Compare("a", Compare.absent("a").target, "<=", 0)  # type: ignore[arg-type]
        assert store.revision == 0

    # -- transactions ------------------------------------------------------------------

    def test_txn_is_one_revision(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("gone", b"")
        result = store.txn([], [Put("a", b"1"), Put("b", b"2"), Delete("gone")])
        assert result == TxnResult(
            True,
            2,
            [
                PutResponse(None),
                PutResponse(None),
                DeleteResponse([KeyValue("gone", b"", 1, 1, 1)]),
            ],
        )
        assert {kv.mod_revision for kv in store.range("")[0]} == {2}

    def test_txn_branches(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("k", b"v1")
        ok = store.txn([Compare.value("k", "==", b"v1")], [Put("k", b"v2")], [Put("x", b"no")])
        assert ok.succeeded and ok.revision == 2
        failed = store.txn([Compare.value("k", "==", b"v1")], [Put("k", b"v3")], [Get("k")])
        assert not failed.succeeded
        assert failed.revision == 2  # a read-only branch commits nothing
        assert failed.responses == [GetResponse([KeyValue("k", b"v2", 1, 2, 2)])]
        assert store.get("x") is None

    def test_ops_see_the_earlier_ops_of_their_txn(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a/1", b"old")
        result = store.txn(
            [], [Get("a/", prefix=True), Put("a/2", b"new"), Get("a/", prefix=True), Get("a/2")]
        )
        first, _, second, single = result.responses
        assert isinstance(first, GetResponse) and isinstance(second, GetResponse)
        assert [kv.key for kv in first.kvs] == ["a/1"]
        assert [kv.key for kv in second.kvs] == ["a/1", "a/2"]
        assert single == GetResponse([KeyValue("a/2", b"new", 2, 2, 1)])

    def test_compares(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("x", b"other")
        store.put("k", b"m")
        store.put("k", b"m")  # k: create 2, mod 3, version 2

        def holds(compare: Compare) -> bool:
            return store.txn([compare], []).succeeded

        assert holds(Compare.value("k", "==", b"m"))
        assert holds(Compare.value("k", "!=", b"n"))
        assert holds(Compare.value("k", "<", b"n"))
        assert holds(Compare.value("k", ">", b"l"))
        assert not holds(Compare.value("k", ">", b"m"))
        assert holds(Compare.version("k", "==", 2))
        assert holds(Compare.version("k", ">", 1))
        assert not holds(Compare.version("k", "<", 2))
        assert holds(Compare.create_revision("k", "==", 2))
        assert holds(Compare.mod_revision("k", "==", 3))
        assert holds(Compare.mod_revision("k", "!=", 2))
        assert holds(Compare.exists("k"))
        assert not holds(Compare.absent("k"))
        # a missing key: revisions and version 0; a compare on its value never holds
        assert holds(Compare.absent("nope"))
        assert holds(Compare.version("nope", "==", 0))
        assert holds(Compare.mod_revision("nope", "<", 1))
        assert not holds(Compare.value("nope", "==", b""))
        assert not holds(Compare.value("nope", "!=", b"x"))
        # every compare must hold
        assert not store.txn([Compare.exists("k"), Compare.exists("nope")], []).succeeded
        assert store.revision == 3

    def test_txn_that_writes_a_key_twice_is_refused(self, make_store: StoreFactory) -> None:
        store = make_store()
        with pytest.raises(InvalidTxn):
            store.txn([], [Put("a", b"1"), Put("a", b"2")])
        with pytest.raises(InvalidTxn):
            store.txn([], [Put("a/b", b"1"), Delete("a/", prefix=True)])
        with pytest.raises(InvalidTxn):
            store.txn([], [], [Delete("a"), Put("a", b"1")])  # the other branch too
        assert store.revision == 0
        store.txn([], [Delete("a"), Delete("a"), Get("a"), Put("b", b""), Get("b")])

    def test_cas(self, make_store: StoreFactory) -> None:
        store = make_store()
        assert store.cas("k", b"1", mod_revision=0).succeeded  # create if absent
        assert not store.cas("k", b"x", mod_revision=0).succeeded
        kv = store.get("k")
        assert kv is not None
        assert store.cas("k", b"2", mod_revision=kv.mod_revision).revision == 2
        stale = store.cas("k", b"3", mod_revision=kv.mod_revision)
        assert not stale.succeeded
        assert stale.responses == [GetResponse([KeyValue("k", b"2", 1, 2, 2)])]

    def test_concurrent_cas_loses_no_update(self, make_store: StoreFactory) -> None:
        store = make_store()
        threads, increments = 8, 25
        errors: list[BaseException] = []

        def increment() -> None:
            try:
                for _ in range(increments):
                    while True:
                        kv = store.get("counter")
                        count = int(kv.value) if kv else 0
                        revision = kv.mod_revision if kv else 0
                        if store.cas(
                            "counter", b"%d" % (count + 1), mod_revision=revision
                        ).succeeded:
                            break
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        workers = [threading.Thread(target=increment) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert not errors
        kv = store.get("counter")
        assert kv is not None
        assert kv.value == b"%d" % (threads * increments)
        assert kv.version == threads * increments
        assert store.revision == threads * increments

    # -- watches -----------------------------------------------------------------------

    def test_watch_from_now(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a/old", b"")
        with store.watch("a/") as watch:
            assert watch.next_revision == 2
            assert watch.get(timeout=0) is None
            store.put("a/new", b"1")
            store.put("b/other", b"")
            store.delete("a/old")
            events = drain(watch)
        assert brief(events) == [(2, "PUT", "a/new", b"1"), (4, "DELETE", "a/old", b"")]
        assert events[0].prev is None
        assert events[1].prev == KeyValue("a/old", b"", 1, 1, 1)
        assert events[1].kv == KeyValue("a/old", b"", 0, 4, 0)

    def test_watch_replays_history_from_a_revision(self, make_store: StoreFactory) -> None:
        store = make_store()
        for i in range(5):
            store.put(f"k/{i % 2}", b"%d" % i)
        with store.watch("k/", 3) as watch:
            events = drain(watch)
        assert brief(events) == [
            (3, "PUT", "k/0", b"2"),
            (4, "PUT", "k/1", b"3"),
            (5, "PUT", "k/0", b"4"),
        ]
        assert events[0].prev == KeyValue("k/0", b"0", 1, 1, 1)
        assert events[2].kv.version == 3

    def test_list_then_watch_has_no_gap(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("s/1", b"")
        _, revision = store.range("s/")
        store.put("s/2", b"")  # between the listing and the watch
        with store.watch("s/", revision + 1) as watch:
            assert brief(drain(watch)) == [(2, "PUT", "s/2", b"")]

    def test_watch_events_of_one_txn_share_a_revision(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a/1", b"")
        with store.watch("a/") as watch:
            store.txn([], [Delete("a/1"), Put("a/2", b"x"), Put("a/0", b"y")])
            assert brief(drain(watch)) == [
                (2, "DELETE", "a/1", b""),
                (2, "PUT", "a/2", b"x"),
                (2, "PUT", "a/0", b"y"),
            ]

    def test_watch_from_a_future_revision_waits_for_it(self, make_store: StoreFactory) -> None:
        store = make_store()
        with store.watch("", 3) as watch:
            store.put("a", b"")
            store.put("b", b"")
            assert watch.get(timeout=0) is None
            store.put("c", b"")
            assert brief(drain(watch)) == [(3, "PUT", "c", b"")]

    def test_blocked_watch_is_woken_by_a_write(self, make_store: StoreFactory) -> None:
        store = make_store()
        watch = store.watch("a/")
        got: list[Event | None] = []
        reader = threading.Thread(target=lambda: got.append(watch.get(timeout=10)))
        reader.start()
        time.sleep(0.05)
        started = time.monotonic()
        store.put("a/x", b"1")
        reader.join(10)
        assert time.monotonic() - started < 1  # woken, not polled
        assert got and got[0] is not None and got[0].kv.key == "a/x"
        watch.close()

    def test_watch_keeps_up_with_concurrent_writers(self, make_store: StoreFactory) -> None:
        store = make_store()
        writers, writes = 4, 30
        watch = store.watch("w/")
        seen: list[Event] = []

        def read() -> None:
            for event in watch:
                seen.append(event)
                if len(seen) == writers * writes:
                    return

        def write(n: int) -> None:
            for i in range(writes):
                store.txn([], [Put(f"w/{n}", b"%d" % i), Put(f"other/{n}", b"")])

        reader = threading.Thread(target=read)
        reader.start()
        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        reader.join(30)
        watch.close()
        # every write, once, in revision order, with no revision skipped
        assert [e.revision for e in seen] == list(range(1, writers * writes + 1))
        for n in range(writers):
            mine = [e.kv.value for e in seen if e.kv.key == f"w/{n}"]
            assert mine == [b"%d" % i for i in range(writes)]

    def test_closing_a_watch_ends_its_iteration(self, make_store: StoreFactory) -> None:
        store = make_store()
        watch = store.watch("")
        seen: list[Event] = []
        reader = threading.Thread(target=lambda: seen.extend(watch))
        reader.start()
        store.put("a", b"")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        watch.close()
        reader.join(5)
        assert not reader.is_alive()
        assert [e.kv.key for e in seen] == ["a"]
        with pytest.raises(Closed):
            watch.get(timeout=0)
        watch.close()  # idempotent

    def test_closing_the_store_ends_its_watches(self, make_store: StoreFactory) -> None:
        store = make_store()
        watch = store.watch("")
        reader = threading.Thread(target=lambda: list(watch))
        reader.start()
        time.sleep(0.05)
        store.close()
        reader.join(5)
        assert not reader.is_alive()

    def test_async_watch(self, make_store: StoreFactory) -> None:
        store = make_store()

        async def main() -> list[tuple[int, str, str, bytes]]:
            watch = store.watch("a/")
            events: list[Event] = []

            async def consume() -> None:
                async for event in watch:
                    events.append(event)
                    if len(events) == 3:
                        break

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.02)
            for i in range(3):
                await asyncio.to_thread(store.put, f"a/{i}", b"")
            await asyncio.wait_for(task, 5)
            watch.close()
            return brief(events)

        assert asyncio.run(main()) == [
            (1, "PUT", "a/0", b""),
            (2, "PUT", "a/1", b""),
            (3, "PUT", "a/2", b""),
        ]

    def test_cancelled_async_wait_loses_no_event(self, make_store: StoreFactory) -> None:
        store = make_store()

        async def main() -> list[str]:
            watch = store.watch("")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(watch), 0.05)
            store.put("a", b"")
            store.put("b", b"")
            keys = [(await asyncio.wait_for(anext(watch), 5)).kv.key for _ in range(2)]
            watch.close()
            with pytest.raises(StopAsyncIteration):
                await anext(watch)
            return keys

        assert asyncio.run(main()) == ["a", "b"]

    # -- compaction --------------------------------------------------------------------

    def test_compact(self, make_store: StoreFactory) -> None:
        store = make_store()
        for i in range(5):
            store.put("k", b"%d" % i)
        store.compact(3)
        assert store.compact_revision == 3
        with pytest.raises(Compacted) as raised:
            store.watch("", 2)
        assert raised.value.compact_revision == 3
        with store.watch("", 3) as watch:
            assert [e.revision for e in drain(watch)] == [3, 4, 5]
        with pytest.raises(Compacted):
            store.compact(3)
        with pytest.raises(FutureRevision):
            store.compact(6)
        assert store.get("k") == KeyValue("k", b"4", 1, 5, 5)  # keys are not history

    def test_history_is_bounded(self, make_store: StoreFactory) -> None:
        store = make_store(history_limit=3)
        lagging = store.watch("", 1)
        for i in range(10):
            store.put("k", b"%d" % i)
        assert store.compact_revision == 8  # revisions 8, 9, 10 are kept
        with store.watch("", 8) as watch:
            assert [e.revision for e in drain(watch)] == [8, 9, 10]
        with pytest.raises(Compacted) as raised:
            lagging.get(timeout=0)
        assert raised.value.compact_revision == 8

    # -- leases ------------------------------------------------------------------------

    def test_revoke_deletes_the_keys_of_a_lease_in_one_revision(
        self, make_store: StoreFactory
    ) -> None:
        store = make_store()
        lease = store.grant(10)
        other = store.grant(10)
        store.txn([], [Put("n/1", b"", lease), Put("n/2", b"", lease), Put("n/3", b"", other)])
        store.put("n/4", b"", lease=lease)
        store.put("n/4", b"")  # a put without a lease detaches the key
        assert store.get("n/1") == KeyValue("n/1", b"", 1, 1, 1, lease)
        with store.watch("n/") as watch:
            assert store.revoke(lease) == 4
            assert brief(drain(watch)) == [(4, "DELETE", "n/1", b""), (4, "DELETE", "n/2", b"")]
        assert [kv.key for kv in store.range("n/")[0]] == ["n/3", "n/4"]
        with pytest.raises(LeaseNotFound):
            store.revoke(lease)
        with pytest.raises(LeaseNotFound):
            store.keepalive(lease)

    def test_put_with_an_unknown_lease_changes_nothing(self, make_store: StoreFactory) -> None:
        store = make_store()
        with pytest.raises(LeaseNotFound) as raised:
            store.txn([], [Put("a", b""), Put("b", b"", 999)])
        assert raised.value.lease_id == 999
        assert store.range("") == ([], 0)

    def test_lease_without_keys(self, make_store: StoreFactory) -> None:
        store = make_store()
        lease = store.grant(5)
        assert store.revoke(lease) == 0

    def test_leases_expire_by_the_clock(self, make_store: StoreFactory) -> None:
        clock = FakeClock()
        store = make_store(clock=clock)
        short, long = store.grant(5), store.grant(30)
        store.put("s", b"", lease=short)
        store.put("l", b"", lease=long)
        with pytest.raises(ValueError):
            store.grant(0)
        watch = store.watch("")
        clock.advance(4)
        assert store.keepalive(short) == 5  # lapses at 4 + 5 now
        clock.advance(4)
        assert store.expire_leases() == []
        clock.advance(1)
        with pytest.raises(LeaseNotFound):
            store.keepalive(short)  # lapsed (its keys go at the next expiry)
        assert store.expire_leases() == [short]
        assert store.get("s") is None
        assert store.get("l") is not None
        assert brief(drain(watch)) == [(3, "DELETE", "s", b"")]
        clock.advance(30)
        assert store.expire_leases() == [long]
        assert store.range("") == ([], 4)
        with pytest.raises(LeaseNotFound):
            store.put("x", b"", lease=long)
        watch.close()

    # -- life --------------------------------------------------------------------------

    def test_a_closed_store_refuses_calls(self, make_store: StoreFactory) -> None:
        store = make_store()
        store.put("a", b"")
        store.close()
        store.close()
        with pytest.raises(Closed):
            store.get("a")
        with pytest.raises(Closed):
            store.put("a", b"")
        with pytest.raises(Closed):
            store.watch("")
        with pytest.raises(Closed):
            store.grant(1)
        with pytest.raises(Closed):
            _ = store.revision

    # -- properties --------------------------------------------------------------------

    @PROPERTY
    @given(steps=TXNS)
    def test_random_txns_match_the_model(
        self,
        make_store: StoreFactory,
        steps: list[tuple[list[Compare], list[Op], list[Op]]],
    ) -> None:
        store = make_store()
        model = Model()
        for compares, on_success, on_failure in steps:
            before = model.revision
            if not (model.valid(on_success) and model.valid(on_failure)):
                with pytest.raises(InvalidTxn):
                    store.txn(compares, on_success, on_failure)
                continue
            result = store.txn(compares, on_success, on_failure)
            expected = model.txn(compares, on_success, on_failure)
            assert result.succeeded == expected
            assert result.revision == model.revision
            assert model.revision in (before, before + 1)  # one txn, at most one revision
            assert store.range("") == (model.kvs(""), model.revision)
        for prefix in ["", "a", "a/", "b/"]:
            assert store.range(prefix) == (model.kvs(prefix), model.revision)
        for start in range(1, model.revision + 2):
            for prefix in ["", "a/"]:
                with store.watch(prefix, start) as watch:
                    assert drain(watch) == model.events_from(prefix, start)
        store.close()


# -- the model -------------------------------------------------------------------------------


@dataclass
class Model:
    """etcd v3's key space as a dict, written out again without orchestr.state's code."""

    data: dict[str, KeyValue] = field(default_factory=dict)
    revision: int = 0
    log: list[Event] = field(default_factory=list)

    def kvs(self, prefix: str) -> list[KeyValue]:
        return [self.data[k] for k in sorted(self.data) if k.startswith(prefix)]

    def events_from(self, prefix: str, start: int) -> list[Event]:
        return [e for e in self.log if e.revision >= start and e.kv.key.startswith(prefix)]

    @staticmethod
    def valid(ops: list[Op]) -> bool:
        puts = [op.key for op in ops if isinstance(op, Put)]
        if len(puts) != len(set(puts)):
            return False
        return not any(
            k == op.key or (op.prefix and k.startswith(op.key))
            for op in ops
            if isinstance(op, Delete)
            for k in puts
        )

    def holds(self, c: Compare) -> bool:
        kv = self.data.get(c.key)
        if c.target.value == "value":
            if kv is None:
                return False
            actual: bytes | int = kv.value
        else:
            actual = getattr(kv, c.target.value) if kv else 0
        ops: dict[str, Callable[[bytes | int, bytes | int], bool]] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "<": lambda a, b: a < b,  # type: ignore[operator]
            ">": lambda a, b: a > b,  # type: ignore[operator]
        }
        return ops[c.op](actual, c.operand)

    def txn(self, compares: list[Compare], on_success: list[Op], on_failure: list[Op]) -> bool:
        succeeded = all(self.holds(c) for c in compares)
        revision = self.revision + 1
        changed = False
        for op in on_success if succeeded else on_failure:
            if isinstance(op, Put):
                prev = self.data.get(op.key)
                create = prev.create_revision if prev else revision
                version = prev.version + 1 if prev else 1
                kv = KeyValue(op.key, op.value, create, revision, version)
                self.data[op.key] = kv
                self.log.append(Event(EventType.PUT, kv, prev))
                changed = True
            elif isinstance(op, Delete):
                keys = [
                    k
                    for k in sorted(self.data)
                    if k == op.key or (op.prefix and k.startswith(op.key))
                ]
                for key in keys:
                    prev = self.data.pop(key)
                    gone = KeyValue(key, b"", 0, revision, 0)
                    self.log.append(Event(EventType.DELETE, gone, prev))
                    changed = True
        if changed:
            self.revision = revision
        return succeeded

"""MemoryStore: the store in memory, for fast tests of the code above it.

The same semantics as the SQLite store (both run tests/conformance/store_suite.py), and
nothing survives the object. One lock serialises writes and reads; watches wait on a
condition that every commit notifies.

Leases lapse by the injected clock and are expired by `expire_leases()`, which the owner
calls (a test after moving its fake clock on).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence

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
)
from orchestr.state._watch import LocalWatch
from orchestr.state.base import (
    Compare,
    Delete,
    Event,
    Get,
    KeyValue,
    Op,
    Put,
    TxnResult,
)
from orchestr.state.errors import Closed, Compacted, FutureRevision, LeaseNotFound

__all__ = ["MemoryStore"]


class _Staged:
    """The keys as one transaction sees them: its writes on top of the committed keys."""

    def __init__(self, data: dict[str, KeyValue]) -> None:
        self._data = data
        self.changes: dict[str, KeyValue | None] = {}

    def get(self, key: str) -> KeyValue | None:
        if key in self.changes:
            return self.changes[key]
        return self._data.get(key)

    def range(self, prefix: str) -> list[KeyValue]:
        keys = {k for k in self._data if k.startswith(prefix)}
        keys.update(k for k in self.changes if k.startswith(prefix))
        found = (self.get(k) for k in sorted(keys))
        return [kv for kv in found if kv is not None]

    def set(self, kv: KeyValue) -> None:
        self.changes[kv.key] = kv

    def remove(self, key: str) -> None:
        self.changes[key] = None


class MemoryStore:
    """An in-memory Store (see orchestr.state.base)."""

    def __init__(
        self, *, history_limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self._history_limit = history_limit
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._data: dict[str, KeyValue] = {}
        self._history: list[Event] = []
        self._revision = 0
        self._head = 0  # the revision watches know of; follows _revision
        self._compact_revision = 0
        self._leases: set[int] = set()
        self._next_lease = 1
        self._timers = LeaseTimers(clock)
        self._closed = False

    # -- reads -------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._lock:
            self._check_open()
            return self._revision

    @property
    def compact_revision(self) -> int:
        with self._lock:
            self._check_open()
            return self._compact_revision

    def get(self, key: str) -> KeyValue | None:
        with self._lock:
            self._check_open()
            return self._data.get(key)

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._lock:
            self._check_open()
            return _Staged(self._data).range(prefix), self._revision

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
        with self._lock:
            self._check_open()
            staged = _Staged(self._data)
            succeeded, ops = choose_branch(staged, compares, on_success, on_failure)
            for lease_id in leases_of(ops):
                if lease_id not in self._leases:
                    raise LeaseNotFound(lease_id)
            responses, events = apply_ops(staged, ops, self._revision + 1)
            if events:
                self._commit(staged, events)
            return TxnResult(succeeded, self._revision, responses)

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return self.txn([], [Put(key, value, lease)]).revision

    def delete(self, key: str, *, prefix: bool = False) -> int:
        result = self.txn([], [Delete(key, prefix)])
        return deleted_count(result)

    def cas(self, key: str, value: bytes, *, mod_revision: int, lease: int = 0) -> TxnResult:
        return self.txn(
            [Compare.mod_revision(key, "==", mod_revision)], [Put(key, value, lease)], [Get(key)]
        )

    def _commit(self, staged: _Staged, events: list[Event]) -> None:
        for key, kv in staged.changes.items():
            if kv is None:
                self._data.pop(key, None)
            else:
                self._data[key] = kv
        self._revision += 1
        self._history.extend(events)
        floor = self._revision - self._history_limit + 1
        if floor > self._compact_revision:
            self._drop_history(floor)
        with self._changed:
            self._head = self._revision
            self._changed.notify_all()

    # -- history -----------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int = 0) -> LocalWatch:
        check_revision(start_revision)
        with self._lock:
            self._check_open()
            if start_revision == 0:
                start_revision = self._revision + 1
            elif start_revision < self._compact_revision:
                raise Compacted(start_revision, self._compact_revision)
            return LocalWatch(self, prefix, start_revision)

    def compact(self, revision: int) -> None:
        check_revision(revision)
        with self._lock:
            self._check_open()
            if revision > self._revision:
                raise FutureRevision(revision, self._revision)
            if revision <= self._compact_revision:
                raise Compacted(revision, self._compact_revision)
            self._drop_history(revision)

    def _drop_history(self, floor: int) -> None:
        cut = bisect.bisect_left(self._history, floor, key=lambda e: e.revision)
        del self._history[:cut]
        self._compact_revision = floor

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
        with self._lock:
            if first < self._compact_revision:
                raise Compacted(first, self._compact_revision)
            start = bisect.bisect_left(self._history, first, key=lambda e: e.revision)
            end = bisect.bisect_right(self._history, last, key=lambda e: e.revision)
            return [e for e in self._history[start:end] if e.kv.key.startswith(prefix)]

    # -- leases ------------------------------------------------------------------------

    def grant(self, ttl: float) -> int:
        check_ttl(ttl)
        with self._lock:
            self._check_open()
            lease_id = self._next_lease
            self._next_lease += 1
            self._leases.add(lease_id)
            self._timers.start(lease_id, ttl)
            return lease_id

    def keepalive(self, lease_id: int) -> float:
        with self._lock:
            self._check_open()
            if lease_id not in self._leases:
                raise LeaseNotFound(lease_id)
            return self._timers.refresh(lease_id)

    def revoke(self, lease_id: int) -> int:
        with self._lock:
            self._check_open()
            if lease_id not in self._leases:
                raise LeaseNotFound(lease_id)
            keys = sorted(k for k, kv in self._data.items() if kv.lease == lease_id)
            staged = _Staged(self._data)
            _, events = apply_ops(staged, [Delete(k) for k in keys], self._revision + 1)
            if events:
                self._commit(staged, events)
            self._leases.discard(lease_id)
            self._timers.forget(lease_id)
            return self._revision

    def expire_leases(self) -> list[int]:
        expired = []
        with self._lock:
            for lease_id in self._timers.lapsed():
                if lease_id in self._leases:
                    self.revoke(lease_id)
                    expired.append(lease_id)
        return expired

    # -- life --------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True
        with self._changed:
            self._changed.notify_all()

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("the store is closed")

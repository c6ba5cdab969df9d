"""What every backend shares: prefix ranges, compares, applying a branch of a
transaction to a view of the keys, and lease timers.

A backend gives `apply_ops` a `TxnView` (its keys as the transaction sees them, writes
included) and gets back the responses and the events; it then commits the writes and the
events as one revision, or nothing when there are no events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from orchestr.state.base import (
    Compare,
    CompareTarget,
    Delete,
    DeleteResponse,
    Event,
    EventType,
    Get,
    GetResponse,
    KeyValue,
    Op,
    Put,
    PutResponse,
    Response,
    TxnResult,
)
from orchestr.state.errors import InvalidTxn, LeaseNotFound

_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with `prefix`; None when
    there is none (the empty prefix: every key)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= _MAX_CHAR:
            chars[-1] = chr(0xE000 if code in _SURROGATES else code)
            return "".join(chars)
        chars.pop()
    return None


def deleted(key: str, revision: int) -> KeyValue:
    """The `kv` of a DELETE event: the key and the deleting revision."""
    return KeyValue(key, b"", 0, revision, 0, 0)


def compare_holds(compare: Compare, kv: KeyValue | None) -> bool:
    """Whether `compare` holds for `kv` (None: the key does not exist)."""
    actual: bytes | int
    if compare.target is CompareTarget.VALUE:
        if kv is None:
            return False  # etcd: a missing key has no value, not an empty one
        actual = kv.value
    elif compare.target is CompareTarget.VERSION:
        actual = kv.version if kv else 0
    elif compare.target is CompareTarget.CREATE:
        actual = kv.create_revision if kv else 0
    else:
        actual = kv.mod_revision if kv else 0
    return _holds(compare.op, actual, compare.operand)


def _holds(op: str, actual: bytes | int, operand: bytes | int) -> bool:
    if op == "==":
        return actual == operand
    if op == "!=":
        return actual != operand
    if isinstance(actual, bytes) and isinstance(operand, bytes):
        return actual < operand if op == "<" else actual > operand
    if isinstance(actual, int) and isinstance(operand, int):
        return actual < operand if op == "<" else actual > operand
    raise TypeError(f"cannot compare {actual!r} with {operand!r}")


def check_compares(compares: Sequence[Compare]) -> None:
    for compare in compares:
        if not isinstance(compare, Compare):
            raise TypeError(f"not a Compare: {compare!r}")
        _check_key(compare.key)


def check_ops(ops: Sequence[Op]) -> None:
    """Refuse what etcd refuses: a key put twice, or put and deleted, in one branch."""
    puts: set[str] = set()
    deletes: list[Delete] = []
    for op in ops:
        if isinstance(op, Put):
            _check_key(op.key)
            if not isinstance(op.value, bytes):
                raise TypeError(f"the value of {op.key!r} is not bytes")
            if op.key in puts:
                raise InvalidTxn(f"duplicate key given in txn request: {op.key!r}")
            puts.add(op.key)
        elif isinstance(op, Delete):
            if not op.prefix:
                _check_key(op.key)
            deletes.append(op)
        elif isinstance(op, Get):
            if not op.prefix:
                _check_key(op.key)
        else:
            raise TypeError(f"not a Put, Delete or Get: {op!r}")
    for delete in deletes:
        for key in puts:
            if key == delete.key or (delete.prefix and key.startswith(delete.key)):
                raise InvalidTxn(f"key {key!r} is both put and deleted in one txn request")


def deleted_count(result: TxnResult) -> int:
    """How many keys the DELETE ops of a transaction deleted."""
    return sum(len(r.deleted) for r in result.responses if isinstance(r, DeleteResponse))


def leases_of(ops: Iterable[Op]) -> set[int]:
    return {op.lease for op in ops if isinstance(op, Put) and op.lease}


def _check_key(key: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"keys are str, not {type(key).__name__}")
    if not key:
        raise ValueError("the empty key is not a key (use a prefix op for every key)")


class TxnView(Protocol):
    """The keys as one transaction sees them, its own writes included."""

    def get(self, key: str) -> KeyValue | None: ...

    def range(self, prefix: str) -> list[KeyValue]:
        """Keys starting with `prefix`, sorted."""
        ...

    def set(self, kv: KeyValue) -> None: ...

    def remove(self, key: str) -> None: ...


def choose_branch(
    view: TxnView, compares: Sequence[Compare], on_success: Sequence[Op], on_failure: Sequence[Op]
) -> tuple[bool, Sequence[Op]]:
    succeeded = all(compare_holds(c, view.get(c.key)) for c in compares)
    return succeeded, on_success if succeeded else on_failure


def apply_ops(
    view: TxnView, ops: Sequence[Op], revision: int
) -> tuple[list[Response], list[Event]]:
    """Run `ops` in order as revision `revision`; the responses and the events.

    No events means nothing changed: the backend then commits no revision.
    """
    responses: list[Response] = []
    events: list[Event] = []
    for op in ops:
        if isinstance(op, Put):
            prev = view.get(op.key)
            if prev is None:
                kv = KeyValue(op.key, op.value, revision, revision, 1, op.lease)
            else:
                kv = KeyValue(
                    op.key, op.value, prev.create_revision, revision, prev.version + 1, op.lease
                )
            view.set(kv)
            events.append(Event(EventType.PUT, kv, prev))
            responses.append(PutResponse(prev))
        elif isinstance(op, Delete):
            found = _lookup(view, op.key, op.prefix)
            for kv in found:
                view.remove(kv.key)
                events.append(Event(EventType.DELETE, deleted(kv.key, revision), kv))
            responses.append(DeleteResponse(found))
        else:
            responses.append(GetResponse(_lookup(view, op.key, op.prefix)))
    return responses, events


def _lookup(view: TxnView, key: str, prefix: bool) -> list[KeyValue]:
    if prefix:
        return view.range(key)
    kv = view.get(key)
    return [] if kv is None else [kv]


class LeaseTimers:
    """When each live lease lapses, by an injectable clock (seconds, monotonic).

    Deadlines live in memory only: a store opened anew starts every lease it finds with
    its full TTL, as etcd does when a new leader takes over.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ttls: dict[int, float] = {}
        self._deadlines: dict[int, float] = {}

    def start(self, lease_id: int, ttl: float) -> None:
        with self._lock:
            self._ttls[lease_id] = ttl
            self._deadlines[lease_id] = self._clock() + ttl

    def refresh(self, lease_id: int) -> float:
        """Restart the TTL; LeaseNotFound when unknown or lapsed already."""
        with self._lock:
            deadline = self._deadlines.get(lease_id)
            now = self._clock()
            if deadline is None or now >= deadline:
                raise LeaseNotFound(lease_id)
            ttl = self._ttls[lease_id]
            self._deadlines[lease_id] = now + ttl
            return ttl

    def lapsed(self) -> list[int]:
        with self._lock:
            now = self._clock()
            return sorted(i for i, deadline in self._deadlines.items() if now >= deadline)

    def forget(self, lease_id: int) -> None:
        with self._lock:
            self._ttls.pop(lease_id, None)
            self._deadlines.pop(lease_id, None)


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"a lease's TTL must be positive, not {ttl!r}")


def check_revision(revision: int) -> None:
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise ValueError(f"a revision is an int >= 0, not {revision!r}")

"""The cluster state store: its interface and value types (semantics of etcd v3).

Keys are strings, paths such as `services/<id>`; values are bytes (callers store JSON).

- **One revision counter** for the whole store. Every transaction that changes
  something commits as one new revision; every key it writes gets that revision as its
  `mod_revision`. A key also has a `create_revision` (the revision that created it, since
  it was last deleted) and a `version` (writes since it was created, 1 after creation).
  Reads and transactions that change nothing leave the revision where it is.
- **Reads**: `get(key)`; `range(prefix)` → every key under it, sorted, and the revision
  that snapshot is at.
- **Transactions**: `txn(compares, on_success, on_failure)`: if every compare holds the
  success ops run, else the failure ops; all at once, as one revision. Ops run in order
  and a `Get` sees the writes made before it in the same branch. A branch may not write a
  key twice (InvalidTxn). `put`, `delete` and `cas` are one-op transactions.
- **Compares** on a key's value, version, create_revision or mod_revision with `==`,
  `!=`, `<`, `>`. A missing key has version, create_revision and mod_revision 0, so
  `Compare.absent(key)` is `create_revision == 0`; a compare on the value of a missing
  key is always false (etcd's rule: "no value" is not "empty value").
- **Watches**: `watch(prefix, start_revision)` yields the events of every revision from
  `start_revision` on (inclusive), in revision order, then blocks for the next ones.
  `start_revision=0` means "from the next write". Listing then watching without a gap is
  `kvs, rev = store.range(p); store.watch(p, rev + 1)`. History before the compact
  revision is gone: asking for it raises Compacted (re-list, watch anew).
- **Leases**: `grant(ttl)` → lease id; a put may attach a key to a lease; `keepalive`
  restarts its TTL; `revoke`, or expiry, deletes its keys in one revision (watchers see the
  DELETE events). How expiry is driven is the implementation's to say (see its docstring).
- **Compaction**: `compact(revision)` forgets the history before `revision`.

Errors: see orchestr.state.errors.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteResponse",
    "Event",
    "EventType",
    "Get",
    "GetResponse",
    "KeyValue",
    "Op",
    "Put",
    "PutResponse",
    "Response",
    "Store",
    "TxnResult",
    "Watch",
]

CompareOp = Literal["==", "!=", "<", ">"]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key as stored: its value, the revisions that made it, and its lease (0: none)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


class EventType(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change to one key.

    PUT: `kv` is the key as written. DELETE: `kv` carries the key and the deleting
    revision as `mod_revision` (value b"", the other fields 0). `prev` is the key as it
    was before the change, None when a PUT created it.
    """

    type: EventType
    kv: KeyValue
    prev: KeyValue | None = None

    @property
    def revision(self) -> int:
        """The revision of the transaction that made the change."""
        return self.kv.mod_revision


class CompareTarget(enum.Enum):
    VALUE = "value"
    VERSION = "version"
    CREATE = "create_revision"
    MOD = "mod_revision"


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction: `target(key) op operand`."""

    key: str
    target: CompareTarget
    op: CompareOp
    operand: bytes | int

    def __post_init__(self) -> None:
        if self.op not in ("==", "!=", "<", ">"):
            raise ValueError(f"unknown compare operator {self.op!r}")
        wants_bytes = self.target is CompareTarget.VALUE
        if wants_bytes != isinstance(self.operand, bytes):
            kind = "bytes" if wants_bytes else "an int"
            raise ValueError(f"a compare on {self.target.value} takes {kind}")

    @classmethod
    def value(cls, key: str, op: CompareOp, operand: bytes) -> Compare:
        return cls(key, CompareTarget.VALUE, op, operand)

    @classmethod
    def version(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, CompareTarget.VERSION, op, operand)

    @classmethod
    def create_revision(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, CompareTarget.CREATE, op, operand)

    @classmethod
    def mod_revision(cls, key: str, op: CompareOp, operand: int) -> Compare:
        return cls(key, CompareTarget.MOD, op, operand)

    @classmethod
    def absent(cls, key: str) -> Compare:
        """The key does not exist (`create_revision == 0`)."""
        return cls(key, CompareTarget.CREATE, "==", 0)

    @classmethod
    def exists(cls, key: str) -> Compare:
        """The key exists (`create_revision > 0`)."""
        return cls(key, CompareTarget.CREATE, ">", 0)


@dataclass(frozen=True, slots=True)
class Put:
    """Write `value` at `key`, attached to `lease` (0: no lease; a put without a lease
    detaches the key from the one it had)."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete `key`, or every key that starts with it when `prefix` is set."""

    key: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    """Read `key`, or every key that starts with it when `prefix` is set."""

    key: str
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class PutResponse:
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResponse:
    deleted: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GetResponse:
    kvs: list[KeyValue] = field(default_factory=list)


Response = PutResponse | DeleteResponse | GetResponse


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Which branch ran, the store's revision after it, and one response per op."""

    succeeded: bool
    revision: int
    responses: list[Response] = field(default_factory=list)


@runtime_checkable
class Watch(Protocol):
    """A stream of events under a prefix, in revision order.

    A blocking iterator for threads (`for event in watch`: ends once the watch or the
    store is closed) and an async one for asyncio (`async for event in watch`: waits in a
    worker thread; a cancelled wait loses no event). Events of one transaction share a
    revision and come one after the other. If the watch falls behind the compaction it
    raises Compacted.
    """

    @property
    def prefix(self) -> str: ...

    @property
    def next_revision(self) -> int:
        """The revision the next event will have at least."""
        ...

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` seconds (None: for ever); None on
        timeout. Raises Closed once closed, Compacted when left behind."""
        ...

    def close(self) -> None:
        """Stop the watch; a thread blocked in it returns. Idempotent."""
        ...

    def __iter__(self) -> Iterator[Event]: ...

    def __next__(self) -> Event: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...

    def __enter__(self) -> Watch: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Store(Protocol):
    """Keys with revisions, transactions, watches from a revision, leases.

    Every method is safe to call from several threads at once.
    """

    @property
    def revision(self) -> int:
        """The revision of the last committed change (0 for an empty, new store)."""
        ...

    @property
    def compact_revision(self) -> int:
        """History is kept from this revision on (0: all of it)."""
        ...

    def get(self, key: str) -> KeyValue | None: ...

    def range(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key that starts with `prefix`, sorted, and the revision they are at."""
        ...

    def txn(
        self,
        compares: Sequence[Compare],
        on_success: Sequence[Op],
        on_failure: Sequence[Op] = (),
    ) -> TxnResult: ...

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write one key; returns the revision of the write."""
        ...

    def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or a prefix); returns how many keys were deleted."""
        ...

    def cas(self, key: str, value: bytes, *, mod_revision: int, lease: int = 0) -> TxnResult:
        """Write `key` if its mod_revision is still `mod_revision` (0: it must not exist).

        On failure the result's one response is a GetResponse with the key as it is now.
        """
        ...

    def watch(self, prefix: str, start_revision: int = 0) -> Watch:
        """Events under `prefix` from `start_revision` (inclusive; 0: from the next write).

        Raises Compacted when `start_revision` is older than the kept history.
        """
        ...

    def grant(self, ttl: float) -> int:
        """A new lease that expires `ttl` seconds from now unless kept alive."""
        ...

    def keepalive(self, lease_id: int) -> float:
        """Restart the lease's TTL; returns the TTL. LeaseNotFound once it has lapsed."""
        ...

    def revoke(self, lease_id: int) -> int:
        """End the lease and delete its keys in one revision; returns the store revision."""
        ...

    def expire_leases(self) -> list[int]:
        """End every lapsed lease (deleting its keys); returns their ids."""
        ...

    def compact(self, revision: int) -> None:
        """Forget the history before `revision` (watches from before it raise Compacted)."""
        ...

    def close(self) -> None:
        """Release the store; open watches end. Idempotent."""
        ...

"""Errors of the cluster state store.

OrchestrError
 └─ StoreError            the store refused a call or could not carry it out
     ├─ Closed            the store, or the watch, has been closed
     ├─ Compacted         the history asked for is gone (`.compact_revision` says from
     │                    where it is kept): re-list with `range()`, then watch anew
     ├─ FutureRevision    `compact()` past the current revision
     ├─ LeaseNotFound     a lease that was never granted, or is revoked or expired
     └─ InvalidTxn        also a ValueError: a transaction that writes one key twice

The names and the conditions follow etcd v3's (ErrCompacted, ErrFutureRev,
ErrLeaseNotFound, "duplicate key given in txn request"), so the etcd backend maps its
errors one to one.
"""

from __future__ import annotations

from orchestr.errors import OrchestrError

__all__ = [
    "Closed",
    "Compacted",
    "FutureRevision",
    "InvalidTxn",
    "LeaseNotFound",
    "StoreError",
]


class StoreError(OrchestrError):
    """The store refused a call or could not carry it out."""


class Closed(StoreError):
    """The store, or the watch, has been closed."""


class Compacted(StoreError):
    """History older than `compact_revision` is gone; re-list and watch from there."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        self.requested = requested
        self.compact_revision = compact_revision
        super().__init__(
            f"revision {requested} has been compacted; history starts at {compact_revision}"
            " (re-list, then watch from the listing's revision + 1)"
        )


class FutureRevision(StoreError):
    """`compact(revision)` with a revision the store has not reached."""

    def __init__(self, requested: int, current: int) -> None:
        self.requested = requested
        self.current = current
        super().__init__(f"revision {requested} is in the future (current revision {current})")


class LeaseNotFound(StoreError):
    """A lease that was never granted, or has been revoked or has expired."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"lease {lease_id} not found (never granted, revoked or expired)")


class InvalidTxn(StoreError, ValueError):
    """A transaction etcd would refuse: one key written twice in the same branch."""

"""The cluster state store: keys with revisions, transactions, watches, leases.

The interface is `Store` (orchestr.state.base), with etcd v3's semantics so that the HA
backend can be etcd; `SqliteStore` is the embedded backend (the default, `store.db` under
the data root) and `MemoryStore` the in-memory one for tests. Both pass the same
conformance suite (tests/conformance/store_suite.py). Design: docs/design/store.md.

    store = open_store("/var/lib/orchestr")
    kvs, revision = store.range("services/")
    with store.watch("services/", revision + 1) as watch:
        for event in watch:
            ...

Errors (orchestr.state.errors):

OrchestrError
 └─ StoreError            the store refused a call or could not carry it out
     ├─ Closed            the store, or the watch, has been closed
     ├─ Compacted         the history asked for is gone: re-list, then watch anew
     ├─ FutureRevision    `compact()` past the current revision
     ├─ LeaseNotFound     a lease that was never granted, or is revoked or expired
     └─ InvalidTxn        also a ValueError: a transaction that writes one key twice
"""

from orchestr.state.base import (
    Compare,
    CompareOp,
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
    Store,
    TxnResult,
    Watch,
)
from orchestr.state.errors import (
    Closed,
    Compacted,
    FutureRevision,
    InvalidTxn,
    LeaseNotFound,
    StoreError,
)
from orchestr.state.memory import MemoryStore
from orchestr.state.sqlite import STORE_FILE, SqliteStore, open_store

__all__ = [
    "STORE_FILE",
    "Closed",
    "Compacted",
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteResponse",
    "Event",
    "EventType",
    "FutureRevision",
    "Get",
    "GetResponse",
    "InvalidTxn",
    "KeyValue",
    "LeaseNotFound",
    "MemoryStore",
    "Op",
    "Put",
    "PutResponse",
    "Response",
    "SqliteStore",
    "Store",
    "StoreError",
    "TxnResult",
    "Watch",
    "open_store",
]

"""The control plane's objects in the store: where each lives and how it is written.

Keys: `services/<id>`, `tasks/<id>`, `nodes/<id>`, `secrets/<id>`, `configs/<id>`,
`cluster`; values: the pydantic objects as
JSON. A `snapshot()` reads the three prefixes in one transaction (one revision), and
remembers each key's mod_revision; `commit(snapshot, …)` writes objects only if none of
the keys it writes changed since that snapshot (and a new key is still absent) — one
writer's decision never overwrites another's. The manager writes services and tasks'
desired states, the node agent tasks' statuses, each by `update_task`'s read-modify-write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pydantic import BaseModel

from orchestr.api.swarm import Node, Service, Task
from orchestr.manager.decide import Snapshot
from orchestr.state.base import Compare, Delete, Op, Put, Store

SERVICES, TASKS, NODES = "services/", "tasks/", "nodes/"
CLUSTER = "cluster"  # the SwarmCluster
SECRETS, CONFIGS = "secrets/", "configs/"  # orchestr.manager.files

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Read(Snapshot):
    revision: int = 0
    mod: dict[str, int] | None = None  # key -> mod_revision, as read

    def mod_of(self, key: str) -> int:
        return (self.mod or {}).get(key, 0)


class Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def lookup(objects: Mapping[str, N], ref: str) -> N | None:
    """An object by ID, by name, or by a unique ID prefix, as dockerd looks them up."""
    if ref in objects:
        return objects[ref]
    for candidates in (
        [o for o in objects.values() if o.name == ref],
        [o for o in objects.values() if o.id.startswith(ref)],
    ):
        if len(candidates) == 1:
            return candidates[0]
    return None


def key_of(obj: Service | Task | Node) -> str:
    prefix = SERVICES if isinstance(obj, Service) else TASKS if isinstance(obj, Task) else NODES
    return prefix + obj.id


def encode(obj: BaseModel) -> bytes:
    return obj.model_dump_json().encode()


class Repo:
    def __init__(self, store: Store) -> None:
        self.store = store
        # key -> (mod_revision, object): a key is parsed again only when it changed
        self._parsed: dict[str, tuple[int, BaseModel]] = {}

    def snapshot(self) -> Read:
        """Every service, task and node at one revision (one read of the store)."""
        kvs, revision = self.store.range("")
        mod: dict[str, int] = {}
        services: dict[str, Service] = {}
        tasks: dict[str, Task] = {}
        nodes: dict[str, Node] = {}
        parsed: dict[str, tuple[int, BaseModel]] = {}
        for kv in kvs:
            if not kv.key.startswith((TASKS, SERVICES, NODES)):
                continue
            cached = self._parsed.get(kv.key)
            if cached is not None and cached[0] == kv.mod_revision:
                obj = cached[1]
            elif kv.key.startswith(TASKS):
                obj = Task.model_validate_json(kv.value)
            elif kv.key.startswith(SERVICES):
                obj = Service.model_validate_json(kv.value)
            else:
                obj = Node.model_validate_json(kv.value)
            parsed[kv.key] = (kv.mod_revision, obj)
            mod[kv.key] = kv.mod_revision
            if isinstance(obj, Task):
                tasks[obj.id] = obj
            elif isinstance(obj, Service):
                services[obj.id] = obj
            elif isinstance(obj, Node):
                nodes[obj.id] = obj
        self._parsed = parsed
        return Read(services=services, tasks=tasks, nodes=nodes, revision=revision, mod=mod)

    def commit(
        self,
        read: Read,
        objects: Iterable[Service | Task | Node],
        deleted: Iterable[str] = (),
    ) -> bool:
        """Write `objects` and delete the keys `deleted` if none of them changed since
        `read`; False (nothing written) when one did."""
        compares: list[Compare] = []
        ops: list[Op] = []
        for obj in objects:
            key = key_of(obj)
            compares.append(Compare.mod_revision(key, "==", read.mod_of(key)))
            ops.append(Put(key, encode(obj)))
        for key in deleted:
            compares.append(Compare.mod_revision(key, "==", read.mod_of(key)))
            ops.append(Delete(key))
        if not ops:
            return True
        return self.store.txn(compares, ops, []).succeeded

    def get(self, model: type[M], key: str) -> tuple[M, int] | None:
        kv = self.store.get(key)
        if kv is None:
            return None
        return model.model_validate_json(kv.value), kv.mod_revision

    def update(self, model: type[M], key: str, change: Callable[[M], M | None]) -> M | None:
        """Read-modify-write of one object, retried until no other writer came between;
        `change` returns None to leave it as it is. None when the key is gone."""
        while True:
            found = self.get(model, key)
            if found is None:
                return None
            obj, mod = found
            new = change(obj)
            if new is None:
                return obj
            result = self.store.txn(
                [Compare.mod_revision(key, "==", mod)], [Put(key, encode(new))], []
            )
            if result.succeeded:
                return new

    def create(self, obj: Service | Task | Node) -> bool:
        """Write `obj` only if its key is free."""
        key = key_of(obj)
        return self.store.txn([Compare.absent(key)], [Put(key, encode(obj))], []).succeeded

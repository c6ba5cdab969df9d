"""A cluster of one: this daemon as its own manager and its own worker.

`Cluster.start()` registers this node in the store and runs the manager's controller in
a thread, plus the loops it is given — the node agent's worker, which the daemon (the
composition root: orchestr never imports agent) makes with `Cluster.tasks` as its source
of tasks. The worker reads its tasks from the store directly and writes their status
there; with several nodes a dispatcher will stand between them. `Cluster.router` serves
the service, task and node endpoints.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from orchestr.api.logstream import ContainerLogs
from orchestr.api.swarm import (
    Node,
    Resources,
    Service,
    SwarmCluster,
    Task,
    TaskFile,
    TaskState,
    TaskStatus,
    file_refs,
    file_target,
)
from orchestr.manager.api import ServicesApi
from orchestr.manager.controller import Controller, new_object_id
from orchestr.manager.files import KINDS
from orchestr.manager.repo import CLUSTER, NODES, TASKS, Repo, encode
from orchestr.state.base import Compare, Put, Store
from orchestr.state.errors import Closed, StoreError

log = logging.getLogger("orchestr.manager")


def this_node(node_id: str) -> Node:
    """This machine as a node: its hostname, CPUs and memory."""
    memory = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    machine = os.uname().machine
    return Node(
        id=node_id,
        hostname=socket.gethostname(),
        arch=machine,
        resources=Resources(nano_cpus=(os.cpu_count() or 1) * 1_000_000_000, memory_bytes=memory),
    )


class StoreTasks:
    """The worker's TaskSource on a node that holds the store itself."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.repo = Repo(store)
        self._wakers: list[Callable[[], None]] = []

    def assigned(self, node_id: str) -> list[tuple[Task, Service]]:
        read = self.repo.snapshot()
        out = []
        for task in read.tasks.values():
            if task.node_id != node_id or task.state < TaskState.ASSIGNED:
                continue
            service = read.services.get(task.service_id) or Service(
                id=task.service_id, spec={"Name": task.service_id}
            )
            out.append((task, service))
        return out

    def report(self, task_id: str, status: TaskStatus) -> None:
        def change(task: Task) -> Task | None:
            if status.state < task.status.state:
                return None  # states only move forward
            return task.model_copy(update={"status": status})

        self.repo.update(Task, TASKS + task_id, change)

    def files(self, task: Task) -> list[TaskFile]:
        """The task's secrets and configs, read from the store, as files."""
        out = []
        container = task.spec.get("ContainerSpec") or {}
        for kind, ref in file_refs(container):
            noun = kind.title()
            found = self.store.get(KINDS[kind].prefix + str(ref.get(f"{noun}ID") or ""))
            if found is None:
                raise LookupError(
                    f"{kind} {ref.get(f'{noun}Name') or ref.get(f'{noun}ID')} is gone"
                )
            obj = KINDS[kind].model.model_validate_json(found.value)
            file = ref.get("File") or {}
            out.append(
                TaskFile(
                    target=file_target(kind, ref),
                    data=obj.data,
                    uid=int(file.get("UID") or 0),
                    gid=int(file.get("GID") or 0),
                    mode=int(file.get("Mode", 0o444)),
                )
            )
        return out

    def on_change(self, wake: Callable[[], None]) -> None:
        self._wakers.append(wake)

    def wake_all(self) -> None:
        for wake in self._wakers:
            wake()

    def watch(self, stop: threading.Event) -> None:
        """Wake the worker on every change of a task (a thread)."""
        watch = self.store.watch(TASKS, 0)
        try:
            while not stop.is_set():
                try:
                    event = watch.get(1.0)
                except Closed:
                    return
                if event is not None:
                    self.wake_all()
        finally:
            watch.close()


Loop = Callable[[threading.Event], None]


class Cluster:
    def __init__(self, store: Store, node_id: str, logs: ContainerLogs | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.controller = Controller(store)
        self.tasks = StoreTasks(store)
        self.api = ServicesApi(Repo(store), node_id, logs=logs)
        self.router = self.api.router
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, loops: dict[str, Loop] | None = None) -> None:
        """Register this node; run the controller, the task watch and `loops` (name →
        a function of the stop event) in threads."""
        node = this_node(self.node_id)
        key = NODES + node.id
        found = Repo(self.store).get(Node, key)
        if found is not None:  # keep what was set on it (labels, availability)
            old = found[0]
            node = node.model_copy(
                update={"labels": old.labels, "availability": old.availability, "role": old.role}
            )
        self.store.txn([], [Put(key, encode(node))], [])
        now = time.time()
        cluster = SwarmCluster(id=new_object_id(), created_at=now, updated_at=now)
        self.store.txn([Compare.absent(CLUSTER)], [Put(CLUSTER, encode(cluster))], [])
        for name, target in {
            "manager": self.controller.run,
            "task-watch": self.tasks.watch,
            **(loops or {}),
        }.items():
            thread = threading.Thread(target=_logged(target), args=(self._stop,), name=name)
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the loops (closing the store wakes those waiting on its watches)."""
        self._stop.set()
        self.tasks.wake_all()
        self.store.close()
        for thread in self._threads:
            thread.join(15)


RESTART_DELAY = 1.0  # a control loop that failed runs again after this


def _logged(target: Loop) -> Loop:
    """Run a control loop until the cluster stops; one that fails (a bug, a store error)
    is logged and started again, so the control plane never stops quietly."""

    def run(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                target(stop)
                return
            except Closed:
                return  # the store closed: the cluster is stopping
            except StoreError as e:
                if stop.is_set():
                    return
                log.error("cluster: %s; the loop starts again", e)
            except Exception:
                log.exception("cluster: a control loop failed; it starts again")
            stop.wait(RESTART_DELAY)

    return run

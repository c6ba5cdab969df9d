"""The node agent's worker: runs the tasks assigned to its node as containers.

A thin loop around the pure step (steps.py): for each task of this node, look at its
container, take one step, report the new status. It wakes when its source of tasks says
something changed, when a container event comes (start, die, health_status), and every
`POLL` seconds in any case, so a missed wake-up costs at most that.

A task's container is found by its `com.docker.swarm.task.id` label, so a restarted
agent picks up where it left off. A container whose task is no longer known (deleted by
the task reaper, or its service removed) is removed. The agent alone writes a task's
status; the control plane alone its desired state.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from agent.exec.container import (
    LABEL_TASK_ID,
    container_name,
    create_body,
    endpoint_mode,
    ingress_ports,
    networks_of,
    service_names,
)
from agent.exec.steps import Action, Observed, Step, next_step
from orchestr.api.swarm import Service, Task, TaskFile, TaskState, TaskStatus

log = logging.getLogger("orchestr.agent.worker")

POLL = 1.0
PARALLEL = 16  # container actions at once (a stop may wait out a grace period)


class TaskSource(Protocol):
    """Where the worker gets its tasks and sends their status (the store, on a node
    that is also a manager; the dispatcher's session later)."""

    def assigned(self, node_id: str) -> list[tuple[Task, Service]]:
        """This node's tasks (every state), each with its service."""
        ...

    def report(self, task_id: str, status: TaskStatus) -> None: ...

    def files(self, task: Task) -> list[TaskFile]:
        """The task's secrets and configs as files (LookupError names one gone)."""
        ...

    def on_change(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever tasks may have changed."""
        ...


class Containers(Protocol):
    """What the worker needs of the node's container service."""

    def create(self, body: object, name: str | None) -> tuple[Any, list[str]]: ...

    def start(self, ref: str) -> Any: ...

    def stop(self, ref: str, timeout: int | None = None) -> bool: ...

    def remove(self, ref: str, *, force: bool = False) -> None: ...

    def all_records(self) -> list[Any]: ...

    def connect(self, ref: str, network: str) -> None: ...

    def set_service(
        self, network: str, key: str, names: list[str], mode: str, backends: list[str]
    ) -> None: ...

    def drop_service(self, network_id: str, key: str) -> None: ...

    def service_keys(self) -> list[tuple[str, str]]:
        """(network id, service key) of every service endpoint on the node."""
        ...

    def network_id(self, ref: str) -> str: ...

    def set_published(
        self, key: str, ports: list[tuple[int, str, int]], backends: list[str]
    ) -> None: ...

    def drop_published(self, key: str) -> None: ...

    def published_keys(self) -> list[str]: ...


DRAIN = 0.5  # seconds between leaving the load balancer and the stop signal


class Worker:
    def __init__(
        self, node_id: str, source: TaskSource, containers: Containers, files_root: str
    ) -> None:
        self.node_id = node_id
        self.source = source
        self.containers = containers
        self.files = TaskFiles(files_root)
        self.wakeup = threading.Event()
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="task")
        self.busy: set[str] = set()  # tasks with an action under way
        self.lock = threading.Lock()
        self.endpoints: dict[tuple[str, str], tuple[list[str], str, list[str]]] = {}
        # service id -> (its ingress ports, the containers behind them), as set on the node
        self.published: dict[str, tuple[list[tuple[int, str, int]], list[str]]] = {}
        self.refused: dict[str, str] = {}  # service id -> why the node refused its ports
        source.on_change(self.wakeup.set)

    def wake(self) -> None:
        self.wakeup.set()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.wakeup.wait(POLL)
                self.wakeup.clear()
                if stop.is_set():
                    return
                try:
                    while self.sync():
                        pass  # a step was taken: the next one may follow at once
                except Exception:
                    if stop.is_set():
                        return
                    log.exception("worker: a round failed; trying again")
                    time.sleep(POLL)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def sync(self) -> bool:
        """One round over this node's tasks; whether any task moved."""
        # Busy before the reads: a task whose action ends after they were made is seen
        # stale in this round, and must wait for the next (its end wakes one).
        with self.lock:
            was_busy = set(self.busy)
        records = {
            r.body.get("Labels", {}).get(LABEL_TASK_ID): r
            for r in self.containers.all_records()
            if r.body.get("Labels", {}).get(LABEL_TASK_ID)
        }
        moved = False
        known = set()
        assigned = self.source.assigned(self.node_id)
        # The load balancer first: a task wanted stopped leaves it (and DNS) before the
        # stop below; a task joins it once running (healthy, if it has a health check).
        self._sync_endpoints(assigned, records)
        for task, service in assigned:
            known.add(task.id)
            with self.lock:
                if task.id in was_busy or task.id in self.busy:
                    continue
            record = records.get(task.id)
            seen = _observe(record)
            # Steps that need no action are taken at once, and reported as one.
            step = next_step(task, seen)
            passed: Step | None = None
            while step.action == Action.NONE and step.state is not None:
                passed = step
                task = _in_state(task, step.state)
                if step.state.terminal:
                    break
                step = next_step(task, seen)
            if passed is not None:
                self._take(task, service, record, passed)
                moved = True
            if step.action == Action.NONE:
                continue
            with self.lock:
                self.busy.add(task.id)
            self.pool.submit(self._in_background, task, service, record, step)
        for task_id, record in records.items():
            if task_id not in known and task_id not in was_busy:
                log.info("worker: removing container %s of a task gone", record.name)
                self.containers.remove(record.id, force=True)
        self.files.keep_only(known | was_busy)
        return moved

    def _sync_endpoints(
        self, assigned: list[tuple[Task, Service]], records: dict[Any, Any]
    ) -> None:
        """Each service's names and virtual IP on its networks, with the addresses of its
        running tasks that are wanted running as the backends."""
        wanted: dict[tuple[str, str], tuple[list[str], str, list[str]]] = {}
        services = {service.id: service for _, service in assigned if service.spec}
        for service in services.values():
            for network, names in service_names(service).items():
                wanted[(network, service.id)] = (names, endpoint_mode(service), [])
        for task, service in assigned:
            if task.state != TaskState.RUNNING or task.desired_state != TaskState.RUNNING:
                continue
            record = records.get(task.id)
            if record is None:
                continue
            for network in networks_of(task):
                entry = wanted.get((network, service.id))
                ip = _address_on(record, network)
                if entry is not None and ip:
                    entry[2].append(ip)
        for where, (names, mode, backends) in wanted.items():
            backends.sort()
            if self.endpoints.get(where) != (names, mode, backends):
                try:
                    self.containers.set_service(where[0], where[1], names, mode, backends)
                    self.endpoints[where] = (names, mode, backends)
                except Exception as e:
                    log.warning("worker: service %s on %s: %s", where[1], where[0], e)
        keep: set[tuple[str, str]] = set()
        for network, service_id in wanted:
            try:
                keep.add((self.containers.network_id(network), service_id))
            except Exception:
                continue
        for network_id, service_id in self.containers.service_keys():
            if (network_id, service_id) not in keep:
                self.containers.drop_service(network_id, service_id)
        self.endpoints = {k: v for k, v in self.endpoints.items() if k in wanted}
        self._sync_published(services, assigned, records)

    def _sync_published(
        self,
        services: dict[str, Service],
        assigned: list[tuple[Task, Service]],
        records: dict[Any, Any],
    ) -> None:
        """The ports each service publishes on the node (ingress mode), balanced over its
        running tasks that are wanted running."""
        wanted: dict[str, tuple[list[tuple[int, str, int]], list[str]]] = {}
        for service in services.values():
            ports = ingress_ports(service)
            if ports:
                wanted[service.id] = (ports, [])
        for task, service in assigned:
            entry = wanted.get(service.id)
            record = records.get(task.id)
            if entry is None or record is None:
                continue
            if task.state == TaskState.RUNNING and task.desired_state == TaskState.RUNNING:
                entry[1].append(record.id)
        for key, (ports, backends) in wanted.items():
            backends.sort()
            if self.published.get(key) != (ports, backends):
                try:
                    self.containers.set_published(key, ports, backends)
                    self.published[key] = (ports, backends)
                    self.refused.pop(key, None)
                except Exception as e:
                    if self.refused.get(key) != str(e):  # once, not at every round
                        log.warning("worker: the ports of service %s: %s", key, e)
                    self.refused[key] = str(e)
        for key in self.containers.published_keys():
            if key not in wanted:
                self.containers.drop_published(key)
        self.published = {k: v for k, v in self.published.items() if k in wanted}
        self.refused = {k: v for k, v in self.refused.items() if k in wanted}

    def _in_background(self, task: Task, service: Service, record: Any, step: Step) -> None:
        try:
            self._take(task, service, record, step)
        except Exception:
            log.exception("worker: task %s", task.id)
        finally:
            with self.lock:
                self.busy.discard(task.id)
            self.wakeup.set()

    def _take(self, task: Task, service: Service, record: Any, step: Step) -> None:
        status = task.status
        container_id = status.container_id or (record.id if record is not None else "")
        state, message, err = step.state, step.message, step.err
        try:
            if step.action == Action.CREATE:
                mounts = self.files.write(task.id, self.source.files(task))
                made, _warnings = self.containers.create(
                    create_body(service, task, mounts), container_name(service, task)
                )
                container_id = made.id
                for network in networks_of(task)[1:]:
                    self.containers.connect(container_id, network)
                if task.desired_state == TaskState.RUNNING:  # and start it, in one go
                    started = self.containers.start(container_id)
                    state, message = _after_start(task, started)
            elif step.action == Action.START:
                state, message = _after_start(task, self.containers.start(container_id))
            elif step.action == Action.STOP:
                balanced = networks_of(task) or ingress_ports(service)
                if balanced and step.state == TaskState.SHUTDOWN:
                    time.sleep(DRAIN)  # out of the balancer already: let requests finish
                grace = (task.spec.get("ContainerSpec") or {}).get("StopGracePeriod")
                timeout = -(-grace // 1_000_000_000) if isinstance(grace, int) else None
                self.containers.stop(container_id, timeout)
        except Exception as e:  # the container service's refusal, as the task's error
            failed = TaskState.REJECTED if step.action == Action.CREATE else TaskState.FAILED
            state, message, err = failed, failed.api, _one_line(e)
        if state is None:
            return
        now = time.time()
        exit_code = status.exit_code
        if record is not None and state in (TaskState.COMPLETE, TaskState.FAILED):
            exit_code = record.exit_code if not record.running else exit_code
        self.source.report(
            task.id,
            TaskStatus(
                state=state,
                timestamp=now,
                message=message,
                err=err,
                container_id=container_id,
                exit_code=exit_code,
                started_at=status.started_at or (now if state == TaskState.RUNNING else 0.0),
            ),
        )


class TaskFiles:
    """The files of the tasks' secrets and configs, one directory per task under `root`
    (the exec root: a tmpfs, so a secret is never written to disk), bind-mounted
    read-only into the task's container. A task's directory goes with the task."""

    def __init__(self, root: str) -> None:
        self.root = root

    def write(self, task_id: str, files: list[TaskFile]) -> list[dict[str, Any]]:
        """Write a task's files; the container's mounts of them."""
        if not files:
            return []
        directory = os.path.join(self.root, task_id)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, mode=0o700)
        mounts = []
        for i, f in enumerate(files):
            path = os.path.join(directory, str(i))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, f.data)
                os.fchown(fd, f.uid, f.gid)
                os.fchmod(fd, f.mode)
            finally:
                os.close(fd)
            mounts.append({"Type": "bind", "Source": path, "Target": f.target, "ReadOnly": True})
        return mounts

    def keep_only(self, task_ids: set[str]) -> None:
        """Remove the directories of tasks no longer known."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in names:
            if name not in task_ids:
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)


def _in_state(task: Task, state: TaskState) -> Task:
    return task.model_copy(update={"status": task.status.model_copy(update={"state": state})})


def _address_on(record: Any, network: str) -> str:
    """The container's IPv4 address on `network` (by name, or by ID)."""
    settings = record.networks.get(network)
    if settings is None:
        settings = next(
            (
                s
                for s in record.networks.values()
                if str(s.get("NetworkID", "")).startswith(network)
            ),
            None,
        )
    return str((settings or {}).get("IPAddress") or "")


def _after_start(task: Task, record: Any) -> tuple[TaskState, str]:
    """Starting, or already running: a container without a health check runs once
    started (one status write instead of two, and no round in between)."""
    after = next_step(_in_state(task, TaskState.STARTING), _observe(record))
    if after.action == Action.NONE and after.state == TaskState.RUNNING:
        return TaskState.RUNNING, after.message
    return TaskState.STARTING, "starting"


def _observe(record: Any) -> Observed | None:
    if record is None:
        return None
    health = (record.health or {}).get("Status", "") if record.health else ""
    return Observed(
        container_id=record.id,
        running=record.status in ("running", "restarting"),
        exited=record.status in ("exited", "dead") and record.started_at[:4] != "0001",
        exit_code=record.exit_code,
        health=str(health),
    )


def _one_line(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())


class ServiceContainers:
    """`Containers` over the node's ContainerService."""

    def __init__(self, containers: Any) -> None:
        self.containers = containers

    def create(self, body: object, name: str | None) -> tuple[Any, list[str]]:
        record, warnings = self.containers.create(body, name)
        return record, warnings

    def start(self, ref: str) -> Any:
        return self.containers.start(ref)

    def stop(self, ref: str, timeout: int | None = None) -> bool:
        return bool(self.containers.stop(ref, timeout))

    def remove(self, ref: str, *, force: bool = False) -> None:
        self.containers.remove(ref, force=force)

    def all_records(self) -> list[Any]:
        return list(self.containers.records.all())

    def connect(self, ref: str, network: str) -> None:
        self.containers.connect(ref, self.containers.network.get(network), {})

    def set_service(
        self, network: str, key: str, names: list[str], mode: str, backends: list[str]
    ) -> None:
        self.containers.network.set_service(network, key, names, mode, backends)

    def drop_service(self, network_id: str, key: str) -> None:
        self.containers.network.drop_service(network_id, key)

    def service_keys(self) -> list[tuple[str, str]]:
        network = self.containers.network
        return list(network.service_keys()) if network is not None else []

    def network_id(self, ref: str) -> str:
        return str(self.containers.network.get(ref).id)

    def set_published(
        self, key: str, ports: list[tuple[int, str, int]], backends: list[str]
    ) -> None:
        self.containers.network.set_published(key, ports, backends)

    def drop_published(self, key: str) -> None:
        self.containers.network.drop_published(key)

    def published_keys(self) -> list[str]:
        network = self.containers.network
        return list(network.published_keys()) if network is not None else []

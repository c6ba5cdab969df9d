"""The node's container logs as the manager reads them for service and task logs
(orchestr.api.logstream.ContainerLogs), from the json-file logs the supervisor writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from agent.containers import logs
from orchestr.api.logstream import LogLine


class NodeLogs:
    def __init__(self, containers: Any) -> None:
        self.containers = containers  # the node's ContainerService

    def history(
        self, container_id: str, *, since: float, until: float, tail: int | None
    ) -> list[LogLine]:
        record = self.containers.get(container_id)  # NotFound is a LookupError
        lines = logs.select(
            logs.read(record.log_path),
            stdout=True,
            stderr=True,
            since=since,
            until=until,
            tail=tail,
        )
        return list(lines)

    def follow(
        self, container_id: str, more: Callable[[], bool], *, from_start: bool = False
    ) -> Iterator[LogLine]:
        record = self.containers.get(container_id)
        running = lambda: more() and record.running  # noqa: E731
        return logs.follow(record.log_path, running, from_start=from_start)

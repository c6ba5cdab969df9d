"""Service and task logs: the lines of a service's (or one task's) containers as one
Engine API log stream.

    GET /services/{id}/logs   GET /tasks/{id}/logs
        stdout, stderr (one at least), since, timestamps, tail (per task), details,
        follow

Past lines come first, every task's merged in time order; with `follow`, new lines as
they are written, and — for a service — those of tasks that start while the client
watches (a scale-up, an update), as `docker service logs -f` shows them. Every task of
the service whose container still exists is read, failed and replaced ones too: their
output is what explains a crash loop. With `details`, each line carries its context
(node, service and task IDs), which the docker CLI turns into `name.slot.id@node`.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestr.api.http import HttpError, Request, in_thread
from orchestr.api.logstream import (
    MULTIPLEXED,
    RAW,
    ContainerLogs,
    LogLine,
    details,
    parse_since,
    render,
)
from orchestr.api.swarm import Task
from orchestr.manager.repo import Read, Repo

POLL = 0.5  # seconds between looks for new tasks while following a service

# The tasks whose logs are wanted, in a snapshot; None once the service is gone.
Select = Callable[[Read], list[Task] | None]


@dataclass(frozen=True)
class Options:
    stdout: bool
    stderr: bool
    since: float
    tail: int | None
    timestamps: bool
    details: bool
    follow: bool

    @staticmethod
    def of(request: Request) -> Options:
        stdout, stderr = request.flag("stdout"), request.flag("stderr")
        if not stdout and not stderr:
            raise HttpError(400, "you must choose at least one stream")
        tail_arg = request.arg("tail") or "all"
        tail: int | None = None  # all
        if tail_arg != "all":
            try:
                tail = int(tail_arg)
            except ValueError:
                raise HttpError(400, f"tail: a number or 'all', not {tail_arg!r}") from None
            if tail < 0:
                tail = None  # dockerd: a negative tail means all
        try:
            since = parse_since(request.arg("since"))
        except ValueError as e:
            raise HttpError(400, f"since: {e}") from None
        return Options(
            stdout=stdout,
            stderr=stderr,
            since=since,
            tail=tail,
            timestamps=request.flag("timestamps"),
            details=request.flag("details"),
            follow=request.flag("follow"),
        )

    def wants(self, line: LogLine) -> bool:
        return self.stdout if line.stream == 1 else self.stderr


def context(task: Task) -> str:
    return details(
        {
            "com.docker.swarm.node.id": task.node_id,
            "com.docker.swarm.service.id": task.service_id,
            "com.docker.swarm.task.id": task.id,
        }
    )


class LogStream:
    """One client's log stream."""

    def __init__(
        self, request: Request, repo: Repo, source: ContainerLogs, options: Options, tty: bool
    ) -> None:
        self.request = request
        self.repo = repo
        self.source = source
        self.options = options
        self.tty = tty

    def _render(self, task: Task, line: LogLine) -> bytes:
        attrs = context(task) if self.options.details else None
        return render(line, timestamps=self.options.timestamps, tty=self.tty, attrs=attrs)

    async def run(self, select: Select, *, more_tasks: bool) -> None:
        await self.request.start_stream(200, RAW if self.tty else MULTIPLEXED)
        read = await asyncio.to_thread(self.repo.snapshot)
        tasks = [t for t in select(read) or [] if t.status.container_id]
        for chunk in await asyncio.to_thread(self._history, tasks):
            await self.request.write(chunk)
        if self.options.follow:
            await self._follow(tasks, select if more_tasks else None)
        await self.request.end()

    def _history(self, tasks: list[Task]) -> list[bytes]:
        o = self.options
        per_task = []
        for task in tasks:
            try:
                lines = self.source.history(
                    task.status.container_id, since=o.since, until=0.0, tail=None
                )
            except LookupError:
                continue  # its container is gone
            wanted = [line for line in lines if o.wants(line)]
            if o.tail is not None:
                wanted = wanted[-o.tail :] if o.tail else []  # all, when fewer
            per_task.append([(line.timestamp(), i, task, line) for i, line in enumerate(wanted)])
        merged = heapq.merge(*per_task, key=lambda item: (item[0], item[1]))
        return [self._render(task, line) for _, _, task, line in merged]

    async def _follow(self, tasks: list[Task], select: Select | None) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        stop = threading.Event()
        followed: dict[str, asyncio.Future[None]] = {}

        def tail(task: Task, from_start: bool) -> None:
            more = lambda: not stop.is_set()  # noqa: E731
            try:
                for line in self.source.follow(
                    task.status.container_id, more, from_start=from_start
                ):
                    if self.options.wants(line):
                        loop.call_soon_threadsafe(queue.put_nowait, self._render(task, line))
            except LookupError:
                pass  # gone before we came

        def start(new: list[Task], *, later: bool) -> None:
            for task in new:
                if task.status.container_id and task.id not in followed:
                    # a task whose container came after the client: all its lines
                    followed[task.id] = in_thread(tail, task, later)

        async def watch_tasks() -> None:
            assert select is not None
            while not stop.is_set():
                await asyncio.sleep(POLL)
                read = await asyncio.to_thread(self.repo.snapshot)
                now = select(read)
                if now is None:
                    return  # the service was removed: the stream ends
                start(now, later=True)

        async def pump() -> None:
            while (data := await queue.get()) is not None:
                await self.request.write(data)

        start(tasks, later=False)
        gone = asyncio.ensure_future(self.request.client_gone())
        pumping = asyncio.ensure_future(pump())
        if select is not None:  # a service: until the client leaves
            ending: asyncio.Future[Any] = asyncio.ensure_future(watch_tasks())
        else:  # one task: until its container stopped and was read to the end
            ending = asyncio.ensure_future(asyncio.gather(*followed.values()))
        try:
            await asyncio.wait({gone, pumping, ending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            ending.cancel()
            await asyncio.gather(ending, *followed.values(), return_exceptions=True)
            if gone.done():
                pumping.cancel()
            else:
                gone.cancel()
                queue.put_nowait(None)  # after the followers' last lines
            await asyncio.gather(gone, pumping, return_exceptions=True)

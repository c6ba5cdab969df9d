"""The node's probe loop: one scheduler thread for every container with a health
check, and a few worker threads that run the probes (each blocks on its exec for up to
its timeout). Nothing polls: the scheduler sleeps until the earliest due probe or a
change (watch, unwatch, a probe done).

The monitor knows no containers: `watch` hands it a `Target` (the container's id, its
probe settings and start time); `probe(target)` runs one probe and `report(target,
result)` applies the result and answers the new state (None when the container no
longer wants probes). A target replaced or unwatched while its probe runs has its
result dropped, as dockerd drops results that come after the stop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.health.config import HealthConfig
from agent.health.state import HealthState, Result, next_delay

__all__ = ["Monitor", "Target"]

log = logging.getLogger("orchestr.health")


@dataclass(frozen=True, eq=False)
class Target:
    """One watch of one container (a new one per start)."""

    container_id: str
    config: HealthConfig
    started_at: float  # UNIX seconds: the start period counts from here


class Monitor:
    def __init__(
        self,
        probe: Callable[[Target], Result | None],
        report: Callable[[Target, Result], HealthState | None],
        *,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._probe = probe
        self._report = report
        self._clock = clock
        self._max_workers = workers
        self._lock = threading.Condition()
        self._targets: dict[str, Target] = {}  # container id -> its current watch
        self._due: list[tuple[float, int, Target]] = []  # (monotonic time, seq, target)
        self._ready: deque[Target] = deque()  # due now, waiting for a worker
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def watch(
        self, container_id: str, config: HealthConfig, started_at: float, state: HealthState
    ) -> None:
        """Probe `container_id` from now on (replacing any earlier watch); the first
        probe comes one interval (start interval) from now."""
        target = Target(container_id, config, started_at)
        delay = next_delay(config, state, self._clock(), started_at)
        with self._lock:
            if self._closed:
                return
            self._targets[container_id] = target
            self._schedule(target, delay)
            self._ensure_scheduler()

    def unwatch(self, container_id: str) -> None:
        with self._lock:
            self._targets.pop(container_id, None)
            self._lock.notify_all()

    def watching(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self._targets

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._targets.clear()
            self._due.clear()
            self._ready.clear()
            self._lock.notify_all()

    # -- inside

    def _schedule(self, target: Target, delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + max(delay, 0.0), next(self._seq), target))
        self._lock.notify_all()

    def _current(self, target: Target) -> bool:
        return self._targets.get(target.container_id) is target

    def _ensure_scheduler(self) -> None:
        if not self._threads:
            t = threading.Thread(target=self._scheduler, name="health-scheduler", daemon=True)
            self._threads.append(t)
            t.start()

    def _scheduler(self) -> None:
        with self._lock:
            while not self._closed:
                while self._due and not self._current(self._due[0][2]):
                    heapq.heappop(self._due)  # unwatched or replaced meanwhile
                if not self._due:
                    self._lock.wait()
                    continue
                left = self._due[0][0] - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                _, _, target = heapq.heappop(self._due)
                self._ready.append(target)
                if self._idle == 0 and len(self._threads) - 1 < self._max_workers:
                    t = threading.Thread(target=self._worker, name="health-probe", daemon=True)
                    self._threads.append(t)
                    t.start()
                self._lock.notify_all()

    def _worker(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
                while not self._ready and not self._closed:
                    self._lock.wait()
                self._idle -= 1
                if self._closed:
                    return
                target = self._ready.popleft()
                if not self._current(target):
                    continue
            state = self._run(target)
            with self._lock:
                if state is not None and self._current(target):
                    end = self._clock()
                    self._schedule(target, next_delay(target.config, state, end, target.started_at))
                elif self._current(target):
                    del self._targets[target.container_id]

    def _run(self, target: Target) -> HealthState | None:
        try:
            result = self._probe(target)
            if result is None:
                return None
            with self._lock:
                if not self._current(target):
                    return None  # stopped while probing: dropped, as dockerd does
            return self._report(target, result)
        except Exception as e:  # a bug or a lost supervisor: try again next interval
            log.warning("health check of %s: %s", target.container_id[:12], e)
            return HealthState()

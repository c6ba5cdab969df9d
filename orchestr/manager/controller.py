"""The manager's loop: a round of decisions whenever the store changes or a decider
asked to be woken (a restart delay, an update's delay or monitor window ending).

Each round reads a snapshot, runs `decide` and commits what changed in one transaction,
conditioned on the keys it writes being as read; when another writer (the API, a node
agent) came between, the round is simply run again. Rounds repeat until one changes
nothing; then the loop sleeps on the store's watch.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from orchestr.manager.decide import decide
from orchestr.manager.repo import TASKS, Repo
from orchestr.state.base import Store
from orchestr.state.errors import Closed, Compacted

log = logging.getLogger("orchestr.manager")

MAX_SLEEP = 5.0  # a round at least this often, whatever happens
SETTLE = 0.005  # a change this close behind the last one joins its round
BURST = 0.05  # but a round waits no longer than this for a burst to end
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def new_object_id() -> str:
    """25 characters of [a-z0-9], as swarmkit's identifiers look."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(25))


class Controller:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_object_id,
    ) -> None:
        self.store = store
        self.repo = Repo(store)
        self.clock = clock
        self.new_id = new_id

    def run(self, stop: threading.Event) -> None:
        watch = self.store.watch("", 0)
        try:
            while not stop.is_set():
                wake_at = self._settle()
                timeout = MAX_SLEEP
                if wake_at is not None:
                    timeout = max(0.0, min(MAX_SLEEP, wake_at - self.clock()))
                try:
                    if watch.get(timeout) is not None:
                        # One round covers a burst: wait for the writes that come close
                        # behind (a node reporting several tasks) before reading.
                        settle = self.clock() + BURST
                        while watch.get(SETTLE) is not None and self.clock() < settle:
                            pass
                except Compacted:
                    watch.close()
                    watch = self.store.watch("", 0)
                except Closed:
                    return
        finally:
            watch.close()

    def _settle(self) -> float | None:
        """Rounds until one changes nothing; when to wake for the next."""
        while True:
            read = self.repo.snapshot()
            changes = decide(read, self.clock(), self.new_id)
            if not changes:
                return changes.wake_at
            for note in changes.notes:
                log.debug("%s", note)
            written = self.repo.commit(
                read,
                [*changes.services.values(), *changes.tasks.values()],
                [TASKS + task_id for task_id in changes.deleted_tasks],
            )
            if not written:
                log.debug("a round met another writer; again")

"""The watch of the in-process backends (memory and SQLite).

A watch keeps the next revision it wants and a buffer. When the store's head (the last
revision committed by this process) has reached that revision it reads the events up to
the head from the store's history into the buffer; otherwise it waits on the store's
condition, which every commit (and close) notifies. No polling.

The async side waits in a worker thread (`asyncio.to_thread`) but takes the event from the
buffer in the event loop's thread, so a cancelled `__anext__` loses nothing: the worker is
told to give up, and whatever it read stays buffered for the next call.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Protocol

from orchestr.state.base import Event
from orchestr.state.errors import Closed

__all__ = ["LocalWatch", "WatchSource"]

# Revisions read from the history per round trip: bounds the memory a far-behind watch takes.
BATCH = 1000


class WatchSource(Protocol):
    """What a store offers its watches."""

    @property
    def changed(self) -> threading.Condition:
        """Notified after every commit and at close."""
        ...

    def head(self) -> int:
        """The last revision committed (called with `changed` held)."""
        ...

    @property
    def closed(self) -> bool: ...

    def events_between(self, prefix: str, first: int, last: int) -> list[Event]:
        """The events under `prefix` of revisions first..last (committed ones), in order.

        Raises Compacted when `first` is older than the kept history.
        """
        ...


class LocalWatch:
    """Events under `prefix` from `start_revision` on; see orchestr.state.base.Watch."""

    def __init__(self, source: WatchSource, prefix: str, start_revision: int) -> None:
        self._source = source
        self._prefix = prefix
        self._next = start_revision
        self._buffer: deque[Event] = deque()
        self._closed = False
        self._fill_lock = threading.Lock()

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def next_revision(self) -> int:
        try:
            return self._buffer[0].revision
        except IndexError:
            return self._next

    def get(self, timeout: float | None = None) -> Event | None:
        with self._fill_lock:
            if self._fill(timeout, None):
                return self._buffer.popleft()
            return None

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        """Wake the threads blocked in this watch (and the store's other watches)."""
        with self._source.changed:
            self._source.changed.notify_all()

    # -- iteration ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            event = self.get(None)
        except Closed:
            raise StopIteration from None
        assert event is not None  # no timeout, no giving up
        return event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed or self._source.closed:
                raise StopAsyncIteration
            try:
                return self._buffer.popleft()
            except IndexError:
                pass
            give_up = threading.Event()
            try:
                await asyncio.to_thread(self._fill_locked, give_up)
            except Closed:
                raise StopAsyncIteration from None
            except asyncio.CancelledError:
                give_up.set()
                self._wake()
                raise

    def __enter__(self) -> LocalWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- filling the buffer ------------------------------------------------------------

    def _fill_locked(self, give_up: threading.Event) -> bool:
        with self._fill_lock:
            return self._fill(None, give_up)

    def _fill(self, timeout: float | None, give_up: threading.Event | None) -> bool:
        """Make the buffer non-empty; False on timeout or when given up. Lock held."""
        deadline = None if timeout is None else time.monotonic() + timeout
        source = self._source
        while True:
            if self._closed or source.closed:
                raise Closed("the watch is closed" if self._closed else "the store is closed")
            if self._buffer:
                return True
            with source.changed:
                head = source.head()
                while head < self._next:
                    if self._closed or source.closed or (give_up and give_up.is_set()):
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    source.changed.wait(remaining)
                    head = source.head()
            if give_up is not None and give_up.is_set():
                return False
            if head < self._next:
                continue  # closed: raised at the top of the loop
            last = min(head, self._next + BATCH - 1)
            self._buffer.extend(source.events_between(self._prefix, self._next, last))
            self._next = last + 1

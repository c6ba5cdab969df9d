"""The node's event stream (GET /events, `docker events`): what happened to
containers, images and volumes, in Docker's message shape.

Publishers call `publish` from any thread; the last events are kept for
`since`, and every subscriber (an API stream) gets new ones through a callback
that must not block (the API hands them to its event loop).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

Event = dict[str, Any]
KEEP = 1024


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[Event] = deque(maxlen=KEEP)
        self._subscribers: dict[int, Callable[[Event], None]] = {}
        self._next = 0

    def publish(
        self,
        kind: str,
        action: str,
        actor: str,
        attributes: Mapping[str, str] | None = None,
    ) -> Event:
        now = time.time_ns()
        attrs = {k: str(v) for k, v in (attributes or {}).items()}
        event: Event = {
            "Type": kind,
            "Action": action,
            "Actor": {"ID": actor, "Attributes": attrs},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if kind == "container":  # the old fields, which the docker CLI still reads
            event.update({"status": action, "id": actor, "from": attrs.get("image", "")})
        with self._lock:
            self._recent.append(event)
            subscribers = list(self._subscribers.values())
        for deliver in subscribers:
            deliver(event)
        return event

    def recent(self, since_ns: int = 0) -> Iterator[Event]:
        with self._lock:
            events = list(self._recent)
        return (e for e in events if e["timeNano"] >= since_ns)

    def subscribe(self, deliver: Callable[[Event], None]) -> int:
        with self._lock:
            self._next += 1
            self._subscribers[self._next] = deliver
            return self._next

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)


def matches(event: Event, filters: Mapping[str, list[str]]) -> bool:
    """Docker's event filters: type, event (action), container, image, volume, label."""
    actor = event["Actor"]
    attrs = actor["Attributes"]
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "type" and event["Type"] not in wanted:
            return False
        if key == "event" and event["Action"].split(":")[0] not in wanted:
            return False
        if key == "container" and (
            event["Type"] != "container"
            or not any(actor["ID"].startswith(w) or attrs.get("name") == w for w in wanted)
        ):
            return False
        if key == "image" and not any(
            attrs.get("image") == w or actor["ID"] == w or attrs.get("name") == w for w in wanted
        ):
            return False
        if key == "volume" and (event["Type"] != "volume" or actor["ID"] not in wanted):
            return False
        if key == "label":
            for want in wanted:
                k, eq, v = want.partition("=")
                if k not in attrs or (eq and attrs[k] != v):
                    return False
    return True

"""A container's health: the state machine of dockerd's daemon/health.go, pure, with
time passed in.

- A container with a check starts `starting`, FailingStreak 0 (also after a restart).
- A probe that exits 0 resets the streak and makes it `healthy`; any other exit (or a
  timeout, ExitCode -1) adds one to the streak, and at `retries` it is `unhealthy`.
- Inside the start period, failures of a container still `starting` do not count.
- The next probe comes one interval after the last one ended (the first, one interval
  after the start); while the container is `starting` inside its start period, one
  start interval.
- The last five results are kept, each one's output capped at 4096 bytes ("..." marks
  a cut).
- When the container stops (or is paused) the probes stop and it shows `unhealthy`, as
  dockerd's CloseMonitorChannel sets it; its streak and log stay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from agent.health.config import HealthConfig, format_duration

__all__ = [
    "HEALTHY",
    "MAX_LOG",
    "MAX_OUTPUT",
    "NONE",
    "STARTING",
    "UNHEALTHY",
    "HealthState",
    "Result",
    "apply",
    "capped",
    "next_delay",
    "stopped",
    "timed_out",
]

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
NONE = "none"  # no check: what the list filter and the summary call it
MAX_OUTPUT = 4096
MAX_LOG = 5


@dataclass(frozen=True)
class Result:
    """One probe run: times are UNIX seconds."""

    start: float
    end: float
    exit_code: int
    output: str

    def to_api(self) -> dict[str, Any]:
        return {
            "Start": rfc3339(self.start),
            "End": rfc3339(self.end),
            "ExitCode": self.exit_code,
            "Output": self.output,
        }

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> Result:
        return cls(
            parse_rfc3339(str(doc.get("Start") or "")),
            parse_rfc3339(str(doc.get("End") or "")),
            int(doc.get("ExitCode") or 0),
            str(doc.get("Output") or ""),
        )


@dataclass(frozen=True)
class HealthState:
    status: str = STARTING
    failing_streak: int = 0
    log: tuple[Result, ...] = field(default_factory=tuple)

    def to_api(self) -> dict[str, Any]:
        """Docker's State.Health."""
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": [r.to_api() for r in self.log],
        }

    @classmethod
    def from_api(cls, doc: object) -> HealthState | None:
        if not isinstance(doc, dict):
            return None
        return cls(
            str(doc.get("Status") or UNHEALTHY),
            int(doc.get("FailingStreak") or 0),
            tuple(Result.from_api(r) for r in doc.get("Log") or [] if isinstance(r, dict)),
        )

    def restarted(self) -> HealthState:
        """A (re)started container: `starting`, no streak; the log stays (dockerd)."""
        return replace(self, status=STARTING, failing_streak=0)


def apply(
    state: HealthState, config: HealthConfig, result: Result, started_at: float
) -> HealthState:
    """The state after one probe's `result` (dockerd's handleProbeResult)."""
    log = (*state.log, result)[-MAX_LOG:]
    if result.exit_code == 0:
        return HealthState(HEALTHY, 0, log)
    streak = state.failing_streak
    status = state.status
    in_start_period = result.start - started_at < config.start_period
    if not (status == STARTING and in_start_period):
        streak += 1
        if streak >= config.retries:
            status = UNHEALTHY
    return HealthState(status, streak, log)


def next_delay(config: HealthConfig, state: HealthState, now: float, started_at: float) -> float:
    """Seconds from `now` (the start, or the end of the last probe) to the next probe."""
    if now - started_at < config.start_period and state.status == STARTING:
        return config.start_interval
    return config.interval


def stopped(state: HealthState) -> HealthState:
    """The probes stopped (the container stopped or was paused)."""
    return replace(state, status=UNHEALTHY)


def capped(data: bytes) -> str:
    """Probe output as dockerd's limitedBuffer keeps it."""
    if len(data) <= MAX_OUTPUT:
        return data.decode("utf-8", errors="replace")
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace") + "..."


def timed_out(config: HealthConfig, output: str) -> str:
    """The Output of a probe killed at its timeout, as dockerd writes it."""
    text = f"Health check exceeded timeout ({format_duration(config.timeout)})"
    return f"{text}: {output}" if output else text


def rfc3339(t: float) -> str:
    """RFC 3339 with nanoseconds, UTC (how the engine's JSON shows times)."""
    ns = round(t * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def parse_rfc3339(text: str) -> float:
    import calendar

    if not text:
        return 0.0
    base, _, frac = text.rstrip("Z").partition(".")
    try:
        whole = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0.0
    return whole + (float("0." + frac) if frac.isdigit() else 0.0)

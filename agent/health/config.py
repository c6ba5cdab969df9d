"""A container's health check configuration, as Docker's `Config.Healthcheck` carries
it (pure).

- `check` validates the create body's Healthcheck with dockerd's messages.
- `merge` lays the create body's Healthcheck over the image's as dockerd does at
  create time: the body's non-zero fields win, an empty Test inherits the image's,
  `["NONE"]` disables the image's check.
- `HealthConfig.from_api` reads the merged one, with dockerd's defaults for the zero
  fields (interval 30 s, timeout 30 s, start period 0, start interval 5 s, retries 3);
  None when there is nothing to probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_RETRIES",
    "DEFAULT_START_INTERVAL",
    "DEFAULT_TIMEOUT",
    "MIN_DURATION_NS",
    "HealthConfig",
    "HealthConfigError",
    "check",
    "format_duration",
    "merge",
]

NS = 1_000_000_000
MIN_DURATION_NS = 1_000_000  # Docker's containertypes.MinimumDuration (1ms)
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


class HealthConfigError(ValueError):
    """A Healthcheck dockerd would refuse (400); the message is dockerd's."""


@dataclass(frozen=True)
class HealthConfig:
    """What the probe loop needs, durations in seconds, defaults applied."""

    test: tuple[str, ...]  # ("CMD", arg, …) or ("CMD-SHELL", command)
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    start_period: float = DEFAULT_START_PERIOD
    start_interval: float = DEFAULT_START_INTERVAL
    retries: int = DEFAULT_RETRIES

    @property
    def argv(self) -> list[str]:
        """The probe's command line: CMD's arguments as given, CMD-SHELL's through
        /bin/sh -c (dockerd's getShell on Linux)."""
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", *self.test[1:]]
        return list(self.test[1:])

    @classmethod
    def from_api(cls, doc: object) -> HealthConfig | None:
        """The merged Healthcheck of a container -> its probe settings; None when it has
        no check, NONE, or a kind dockerd does not run (it warns and skips those)."""
        if not isinstance(doc, dict):
            return None
        test = doc.get("Test") or []
        if not isinstance(test, list) or len(test) < 2 or test[0] not in ("CMD", "CMD-SHELL"):
            return None

        def seconds(key: str, default: float) -> float:
            value = doc.get(key) or 0
            return value / NS if isinstance(value, int) and value > 0 else default

        retries = doc.get("Retries") or 0
        return cls(
            test=tuple(str(t) for t in test),
            interval=seconds("Interval", DEFAULT_INTERVAL),
            timeout=seconds("Timeout", DEFAULT_TIMEOUT),
            start_period=seconds("StartPeriod", DEFAULT_START_PERIOD),
            start_interval=seconds("StartInterval", DEFAULT_START_INTERVAL),
            retries=retries if isinstance(retries, int) and retries > 0 else DEFAULT_RETRIES,
        )


def check(doc: object) -> dict[str, Any] | None:
    """The create body's Healthcheck, checked as dockerd's validateHealthCheck does;
    a copy, or None when absent."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise HealthConfigError("Config.Healthcheck: expected an object")
    test = doc.get("Test")
    if test is not None and (
        not isinstance(test, list) or not all(isinstance(t, str) for t in test)
    ):
        raise HealthConfigError("Config.Healthcheck.Test: expected a list of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        # dockerd accepts it and never probes; a typo is better refused
        raise HealthConfigError(
            f"Config.Healthcheck.Test: unknown type {test[0]!r} (expected CMD, CMD-SHELL or NONE)"
        )
    for key in (*_DURATIONS, "Retries"):
        value = doc.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise HealthConfigError(f"Config.Healthcheck.{key}: expected an integer")
    for key in ("Interval", "Timeout"):
        value = doc.get(key) or 0
        if value != 0 and value < MIN_DURATION_NS:
            raise HealthConfigError(f"{key} in Healthcheck cannot be less than 1ms")
    if (doc.get("Retries") or 0) < 0:
        raise HealthConfigError("Retries in Healthcheck cannot be negative")
    for key in ("StartPeriod", "StartInterval"):
        value = doc.get(key) or 0
        if value != 0 and value < MIN_DURATION_NS:
            raise HealthConfigError(f"{key} in Healthcheck cannot be less than 1ms")
    return dict(doc)


def merge(user: dict[str, Any] | None, image: object) -> dict[str, Any] | None:
    """dockerd's merge (daemon/commit.go): the image's Healthcheck under the body's."""
    if not isinstance(image, dict) or not image:
        return dict(user) if user is not None else None
    if user is None:
        return dict(image)
    out = dict(user)
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in (*_DURATIONS, "Retries"):
        if not out.get(key):
            out[key] = image.get(key) or 0
    return out


def format_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the durations a healthcheck uses: 30s, 1m0s,
    200ms, 1.5s, 2m30s."""
    ns = round(seconds * NS)
    if ns == 0:
        return "0s"
    if ns < NS:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * NS)
    minutes, rest = divmod(rest, 60 * NS)
    text = _trim(rest / NS) + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")

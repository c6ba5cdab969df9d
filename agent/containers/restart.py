"""Restart policies, as dockerd applies them (pure).

- `no`: never; `always`: after every exit; `unless-stopped`: like always, but not
  after the user stopped it (and not at daemon start then); `on-failure[:N]`: after a
  non-zero exit, at most N times (0: no limit).
- A stop by the user (`docker stop`/`kill`) is never followed by a restart.
- The delay grows as Docker's does: 100 ms, doubled after each restart, at most one
  minute; back to 100 ms once the container had run for at least 10 s.
"""

from __future__ import annotations

from agent.containers.spec import RestartPolicy

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def next_delay(previous: float, ran_for: float) -> float:
    """The wait before the next restart, given the last one and how long it ran."""
    if ran_for >= RESET_AFTER or previous <= 0:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


def should_restart(
    policy: RestartPolicy,
    exit_code: int,
    restart_count: int,
    manually_stopped: bool,
) -> bool:
    """Whether a container that just exited is started again."""
    if manually_stopped:
        return False
    if policy.name in ("always", "unless-stopped"):
        return True
    if policy.name == "on-failure":
        if exit_code == 0:
            return False
        return policy.maximum_retry_count == 0 or restart_count < policy.maximum_retry_count
    return False


def start_at_boot(policy: RestartPolicy, manually_stopped: bool) -> bool:
    """Whether the daemon starts a container that is not running when it comes up:
    `always` ones even after a manual stop (Docker's rule), `unless-stopped` ones
    only when the user did not stop them."""
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not manually_stopped
    return False

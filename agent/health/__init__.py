"""Container health checks as dockerd runs them (see docs/design/health.md).

- `config`: Docker's Config.Healthcheck: validation, the merge with the image's, and
  the probe settings with dockerd's defaults (pure).
- `state`: the health state machine, time passed in (pure).
- `probe`: one probe as an exec through the supervisor.
- `monitor`: the node's probe loop (one scheduler thread, a few probe workers).
"""

from agent.health.config import HealthConfig, HealthConfigError, check, merge
from agent.health.monitor import Monitor, Target
from agent.health.probe import ON_FAILURE_ACTIONS, ON_FAILURE_LABEL, run_exec_probe
from agent.health.state import (
    HEALTHY,
    NONE,
    STARTING,
    UNHEALTHY,
    HealthState,
    Result,
    apply,
    next_delay,
    stopped,
)

__all__ = [
    "HEALTHY",
    "NONE",
    "ON_FAILURE_ACTIONS",
    "ON_FAILURE_LABEL",
    "STARTING",
    "UNHEALTHY",
    "HealthConfig",
    "HealthConfigError",
    "HealthState",
    "Monitor",
    "Result",
    "Target",
    "apply",
    "check",
    "merge",
    "next_delay",
    "run_exec_probe",
    "stopped",
]

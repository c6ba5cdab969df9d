"""The restart policy's decision for a slot whose task has ended (pure).

Swarm's `deploy.restart_policy`: `condition` none | on-failure | any (default any),
`delay` between the end and the new task (default 5 s), `max_attempts` (0: no limit)
counted over the last `window` seconds (0: over the slot's whole history).

A task *ended on its own* when its state is complete, failed, rejected or orphaned;
shutdown is a stop someone asked for and never counts. The attempts made so far are
the slot's earlier tasks that ended on their own (within the window): each was
followed by a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestr.api.swarm import RestartPolicy, Task, TaskState

ENDED_ON_ITS_OWN = (TaskState.COMPLETE, TaskState.FAILED, TaskState.REJECTED, TaskState.ORPHANED)
FAILURES = (TaskState.FAILED, TaskState.REJECTED, TaskState.ORPHANED)


@dataclass(frozen=True)
class RestartDecision:
    at: float | None  # when to make the new task; None: never
    reason: str


def decide_restart(
    policy: RestartPolicy, ended: Task, history: list[Task], now: float
) -> RestartDecision:
    """Whether and when the slot of `ended` (which has ended) gets a new task.

    `history`: every task of the slot, `ended` included."""
    state = ended.state
    if state == TaskState.SHUTDOWN:
        return RestartDecision(None, "it was shut down on purpose")
    if policy.condition == "none":
        return RestartDecision(None, "restart condition none")
    if policy.condition == "on-failure" and state not in FAILURES:
        return RestartDecision(None, f"it ended {state.api} (restart condition on-failure)")
    if policy.max_attempts > 0:
        since = now - policy.window if policy.window > 0 else float("-inf")
        attempts = sum(
            1
            for t in history
            if t.id != ended.id and t.state in ENDED_ON_ITS_OWN and t.status.timestamp >= since
        )
        if attempts >= policy.max_attempts:
            scope = f" in {policy.window:g} s" if policy.window > 0 else ""
            return RestartDecision(None, f"{attempts} restarts{scope}: max_attempts reached")
    at = ended.status.timestamp + policy.delay
    return RestartDecision(at, f"it ended {state.api}, restart condition {policy.condition}")

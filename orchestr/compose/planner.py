"""What `up` must do to make the node match the project: a pure decision.

`plan(desired, observed, options)` compares, per service, the wanted containers (a
number of replicas, each with the service's config hash) with the containers the node
has (from their Compose labels), and returns actions; it asks no daemon anything.

Per service, containers are taken in container-number order:

- wanted and the same hash → `keep` (or `start` when it is not running — unless it is a
  one-shot container, not restarted by the engine, that exited 0: it has done its job);
- wanted with another hash, or `--force-recreate` → `recreate` (unless `--no-recreate`);
- beyond the wanted number → `remove`; missing numbers → `create`;
- a service whose `network_mode: service:x` or `volumes_from: x` points at a recreated
  service is recreated too (its namespace or mounts are gone with the old container);
- a service depending on a recreated one with `restart: true` is restarted (unless it
  is itself recreated);
- containers of services the project no longer has are orphans: reported, removed with
  `--remove-orphans`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Action", "Desired", "Observed", "Options", "Plan", "plan"]

ActionKind = Literal["create", "recreate", "start", "keep", "remove", "restart"]


@dataclass(frozen=True)
class Observed:
    """A container the node has, as its labels and state describe it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    running: bool
    exit_code: int | None = None  # of an exited container


@dataclass(frozen=True)
class Desired:
    """What one service wants: how many containers, with which hash, tied to whom."""

    replicas: int
    config_hash: str
    shares_with: tuple[str, ...] = ()  # network_mode service:x, volumes_from x
    restart_with: tuple[str, ...] = ()  # depends_on x with restart: true
    one_shot: bool = False  # not restarted by the engine: exiting 0 means done


@dataclass(frozen=True)
class Options:
    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    service: str
    number: int
    container: Observed | None = None


@dataclass
class Plan:
    services: dict[str, list[Action]] = field(default_factory=dict)
    orphans: list[Observed] = field(default_factory=list)
    remove_orphans: bool = False

    def kinds(self, service: str) -> list[ActionKind]:
        return [a.kind for a in self.services.get(service, [])]

    def changes(self, service: str) -> bool:
        return any(k in ("create", "recreate", "restart") for k in self.kinds(service))


def plan(
    desired: Mapping[str, Desired],
    observed: Sequence[Observed],
    options: Options = Options(),
    *,
    all_services: Sequence[str] | None = None,
) -> Plan:
    """Actions per service of `desired` (services not named are left alone).

    `all_services` names every service of the project (selected or not), so that only
    containers of services that are gone count as orphans.
    """
    known = set(all_services if all_services is not None else desired)
    result = Plan(remove_orphans=options.remove_orphans)
    by_service: dict[str, list[Observed]] = {}
    for container in observed:
        if container.service not in known:
            result.orphans.append(container)
        else:
            by_service.setdefault(container.service, []).append(container)
    result.orphans.sort(key=lambda c: c.name)

    recreated: set[str] = set()
    for name in _dependency_order(desired):
        want = desired[name]
        mine = sorted(by_service.get(name, []), key=lambda c: (c.number, c.name))
        force = options.force_recreate or any(s in recreated for s in want.shares_with)
        actions: list[Action] = []
        kept: list[Observed] = []
        seen_numbers: set[int] = set()
        for container in mine:
            if len(kept) >= want.replicas or container.number in seen_numbers:
                actions.append(Action("remove", name, container.number, container))
                continue
            seen_numbers.add(container.number)
            kept.append(container)
            stale = container.config_hash != want.config_hash
            if (stale or force) and not options.no_recreate:
                actions.append(Action("recreate", name, container.number, container))
            elif not container.running and not (want.one_shot and container.exit_code == 0):
                actions.append(Action("start", name, container.number, container))
            else:
                actions.append(Action("keep", name, container.number, container))
        number = 1
        for _ in range(want.replicas - len(kept)):
            while number in seen_numbers:
                number += 1
            seen_numbers.add(number)
            actions.append(Action("create", name, number))
        if any(a.kind == "recreate" for a in actions):
            recreated.add(name)
        elif any(d in recreated for d in want.restart_with):
            actions = [
                Action("restart", name, a.number, a.container) if a.kind == "keep" else a
                for a in actions
            ]
        result.services[name] = actions
    return result


def _dependency_order(desired: Mapping[str, Desired]) -> list[str]:
    """Services after those they share with or restart with (ties by name)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting or name not in desired:
            return
        visiting.add(name)
        for dep in (*desired[name].shares_with, *desired[name].restart_with):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in sorted(desired):
        visit(name)
    return order

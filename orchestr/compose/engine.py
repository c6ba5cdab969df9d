"""Bringing a project up and down on one node through the Docker Engine API.

The edge that carries out decisions made elsewhere: the planner says which containers to
create, recreate, start, restart or remove; this module does it, service by service, as
soon as each service's dependencies meet their conditions — independent services run in
parallel (one thread per service; they talk to the daemon over one pooled client).

Conditions (depends_on): `service_started` — the dependency's containers were started;
`service_healthy` — each is `healthy` (an `unhealthy` one, or one without a health
check, fails the `up`); `service_completed_successfully` — each exited 0 (another exit
fails the `up`). A dependency with `required: false` that fails only warns.

Progress goes to a `Reporter` (the CLI draws it with rich), one line per object as
Compose v2 shows them: `Network demo_default  Created`, `Container demo-web-1  Healthy`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from orchestr.client import ApiError, json_stream
from orchestr.compose import convert
from orchestr.compose.planner import Action, Desired, Observed, Options, Plan, plan
from orchestr.errors import OrchestrError
from orchestr.graph.deps import build_graph, stop_waves, with_dependencies
from orchestr.stack.model import Project, Service

__all__ = ["ApiClient", "ComposeError", "Engine", "Reporter", "UpOptions"]

_POLL = 0.1  # seconds between looks at a dependency's state


class ComposeError(OrchestrError):
    """An `up` or `down` that could not do what it was asked (one line, names what)."""


class ApiClient(Protocol):
    """The Engine API client the engine needs (orchestr.client.Client or the lean
    orchestr.unixclient.UnixClient)."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any: ...
    def json(self, method: str, path: str, **kwargs: Any) -> Any: ...
    def stream(self, method: str, path: str, **kwargs: Any) -> AbstractContextManager[Any]: ...


class Reporter(Protocol):
    def __call__(self, kind: str, name: str, status: str, state: str = "working") -> None:
        """`state` is working, done, warning or error."""


def _silent(kind: str, name: str, status: str, state: str = "working") -> None:
    pass


@dataclass
class UpOptions:
    services: list[str] = field(default_factory=list)
    no_deps: bool = False
    force_recreate: bool = False
    no_recreate: bool = False
    remove_orphans: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    build: bool = False
    pull: str = "missing"  # always, missing, never
    wait: bool = False
    wait_timeout: float = 0.0
    timeout: int | None = None  # stop timeout when recreating


def _filters(**items: list[str]) -> dict[str, str]:
    import json

    return {"filters": json.dumps(items)}


class Engine:
    """`up`, `down` and friends for one project against one daemon."""

    def __init__(self, client: ApiClient, project: Project, report: Reporter = _silent) -> None:
        self.client = client
        self.project = project
        self.report = report
        self.graph = build_graph(project)
        self._lock = threading.Lock()

    # -- observation ----------------------------------------------------------------------

    def containers(self, *, all_: bool = True, oneoff: bool = False) -> list[dict[str, Any]]:
        labels = [f"{convert.LABEL_PROJECT}={self.project.name}"]
        if not oneoff:
            labels.append(f"{convert.LABEL_ONEOFF}=False")
        found: list[dict[str, Any]] = self.client.json(
            "GET", "/containers/json", params={"all": int(all_), **_filters(label=labels)}
        )
        return sorted(found, key=lambda c: (c["Labels"].get(convert.LABEL_SERVICE, ""), _number(c)))

    def observed(self) -> list[Observed]:
        return [
            Observed(
                id=c["Id"],
                name=c["Names"][0].lstrip("/"),
                service=c["Labels"].get(convert.LABEL_SERVICE, ""),
                number=_number(c),
                config_hash=c["Labels"].get(convert.LABEL_CONFIG_HASH, ""),
                running=c.get("State") == "running",
                exit_code=_exit_code(c),
            )
            for c in self.containers()
        ]

    # -- up ---------------------------------------------------------------------------------

    def selected(self, names: Iterable[str], no_deps: bool) -> list[str]:
        names = list(names)
        if not names:
            return sorted(self.project.services)
        for name in names:
            if name not in self.project.services:
                raise ComposeError(f"no such service: {name}")
        return sorted(names if no_deps else with_dependencies(self.graph, names))

    def plan(self, options: UpOptions) -> tuple[Plan, dict[str, str]]:
        selected = self.selected(options.services, options.no_deps)
        digests: dict[str, str] = {}
        desired: dict[str, Desired] = {}
        for name in selected:
            service = self.project.services[name]
            digests[name] = convert.config_hash(
                service, convert.file_contents(self.project, service)
            )
            shares = []
            mode = service.network_mode or ""
            if mode.startswith("service:"):
                shares.append(mode[8:])
            shares += [v.partition(":")[0] for v in service.volumes_from]
            desired[name] = Desired(
                replicas=options.scale.get(name, service.replicas),
                config_hash=digests[name],
                shares_with=tuple(s for s in shares if s in self.project.services),
                restart_with=tuple(d for d, spec in service.depends_on.items() if spec.restart),
                one_shot=(service.restart or "no").partition(":")[0] in ("no", "on-failure"),
            )
        decided = plan(
            desired,
            self.observed(),
            Options(options.force_recreate, options.no_recreate, options.remove_orphans),
            all_services=list(self.project.services),
        )
        return decided, digests

    def up(self, options: UpOptions) -> Plan:
        decided, digests = self.plan(options)
        for name in decided.services:
            missing = convert.unsupported(self.project.services[name])
            if missing:
                raise ComposeError(f"service {name!r}: {', '.join(missing)} not supported yet")
        if decided.orphans and not options.remove_orphans:
            names = ", ".join(sorted({c.service for c in decided.orphans}))
            self.report(
                "Project",
                self.project.name,
                f"found orphan containers of {names}; --remove-orphans removes them",
                "warning",
            )
        self._images(list(decided.services), options)  # first: a missing one creates nothing
        self._networks()
        self._volumes()
        for orphan in decided.orphans if options.remove_orphans else []:
            self._remove(orphan.id, orphan.name, options.timeout)
        self._run_services(decided, digests, options)
        if options.wait:
            self.wait_ready(list(decided.services), options.wait_timeout)
        return decided

    def _networks(self) -> None:
        used = {k for s in self.project.services.values() for k in s.networks}
        for key, network in sorted(self.project.networks.items()):
            if key not in used:
                continue
            found = self._find(f"/networks/{quote(network.name, safe='')}")
            if network.external:
                if found is None:
                    raise ComposeError(
                        f"network {network.name} declared as external, but could not be found"
                    )
                continue
            if found is not None:
                owner = (found.get("Labels") or {}).get(convert.LABEL_PROJECT)
                if owner != self.project.name:
                    self.report(
                        "Network",
                        network.name,
                        "exists but was not created for this project",
                        "warning",
                    )
                continue
            self.report("Network", network.name, "Creating")
            body = convert.network_body(self.project, key, network)
            self.client.json("POST", "/networks/create", json=body)
            self.report("Network", network.name, "Created", "done")

    def _find(self, path: str) -> Any:
        """GET path's object, or None when the daemon has none (404)."""
        try:
            return self.client.json("GET", path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return None

    def _volumes(self) -> None:
        used = {
            v.source
            for s in self.project.services.values()
            for v in s.volumes
            if v.type == "volume" and v.source
        }
        for key, volume in sorted(self.project.volumes.items()):
            if key not in used:
                continue
            found = self._find(f"/volumes/{quote(volume.name, safe='')}")
            if volume.external:
                if found is None:
                    raise ComposeError(f"external volume {volume.name!r} not found")
                continue
            if found is None:
                self.report("Volume", volume.name, "Creating")
                self.client.json(
                    "POST", "/volumes/create", json=convert.volume_body(self.project, key, volume)
                )
                self.report("Volume", volume.name, "Created", "done")

    def _images(self, names: list[str], options: UpOptions) -> None:
        """Build or pull what is needed; each image is looked at, pulled or built once."""
        done: set[str] = set()
        for name in names:
            service = self.project.services[name]
            image = convert.image_of(self.project.name, service)
            if image in done:
                continue
            done.add(image)
            present = self._has_image(image)
            policy = service.pull_policy or options.pull
            if service.build is not None and (options.build or not present or policy == "build"):
                self.build(service)
                continue
            if policy == "always" or (not present and policy in ("missing", "if_not_present")):
                self.pull(service)
            elif not present:
                raise ComposeError(
                    f"service {name!r}: image {image} not found (pull_policy: {policy})"
                )

    def _has_image(self, image: str) -> bool:
        return self._find(f"/images/{quote(image, safe='')}/json") is not None

    def pull(self, service: Service) -> None:
        image = convert.image_of(self.project.name, service)
        repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        self.report("Image", image, "Pulling")
        try:
            with self.client.stream(
                "POST", "/images/create", params={"fromImage": repo, "tag": tag or "latest"}
            ) as response:
                for _ in json_stream(response):
                    pass
        except ApiError as exc:
            self.report("Image", image, "Error", "error")
            raise ComposeError(f"service {service.name!r}: pulling {image}: {exc}") from None
        self.report("Image", image, "Pulled", "done")

    def build(self, service: Service) -> None:
        import json
        import tempfile

        from orchestr.compose.context import INLINE_DOCKERFILE, tar_context

        assert service.build is not None
        build = service.build
        image = convert.image_of(self.project.name, service)
        self.report("Image", image, "Building")
        params: dict[str, Any] = {
            "t": image,
            "dockerfile": build.dockerfile or "Dockerfile",
            "buildargs": json.dumps({k: v for k, v in build.args.items() if v is not None}),
            "labels": json.dumps({k: v for k, v in build.labels.items() if v is not None}),
            **({"target": build.target} if build.target else {}),
        }
        with tempfile.TemporaryFile() as spool:
            tar_context(build.context, spool, build.dockerfile_inline)
            spool.seek(0)
            if build.dockerfile_inline is not None:
                params["dockerfile"] = INLINE_DOCKERFILE
            try:
                with self.client.stream(
                    "POST",
                    "/build",
                    params=params,
                    content=iter(lambda: spool.read(1 << 20), b""),
                    headers={"Content-Type": "application/x-tar"},
                ) as response:
                    for _ in json_stream(response):
                        pass
            except ApiError as exc:
                self.report("Image", image, "Error", "error")
                raise ComposeError(f"service {service.name!r}: build failed: {exc}") from None
        self.report("Image", image, "Built", "done")

    # -- running the plan ----------------------------------------------------------------------

    def _run_services(self, decided: Plan, digests: Mapping[str, str], options: UpOptions) -> None:
        names = list(decided.services)
        done: dict[str, Future[None]] = {name: Future() for name in names}

        def task(name: str) -> None:
            try:
                self._converge(name, decided, digests, done, options)
            except BaseException as exc:
                done[name].set_exception(exc)
            else:
                done[name].set_result(None)

        with ThreadPoolExecutor(max_workers=max(1, min(32, len(names)))) as pool:
            for name in names:
                pool.submit(task, name)
        failures = [exc for name in names if (exc := done[name].exception()) is not None]
        # a service's own failure first; else the first dependency failure it caused
        failures.sort(key=lambda exc: isinstance(exc, _DependencyFailed))
        if failures:
            raise failures[0]

    def _converge(
        self,
        name: str,
        decided: Plan,
        digests: Mapping[str, str],
        done: Mapping[str, Future[None]],
        options: UpOptions,
    ) -> None:
        service = self.project.services[name]
        for dep, spec in service.dependencies().items():
            if dep not in done:
                continue  # not part of this up (--no-deps): taken as it is
            try:
                done[dep].result()
                self._wait_condition(dep, spec.condition, name)
            except Exception as exc:
                if not spec.required:
                    self.report(
                        "Service", name, f"optional dependency {dep} failed: {exc}", "warning"
                    )
                    continue
                if isinstance(exc, _DependencyFailed):
                    raise
                raise _DependencyFailed(str(exc)) from exc
        actions = decided.services[name]
        for action in actions:
            if action.kind == "remove":
                assert action.container is not None
                self._remove(action.container.id, action.container.name, options.timeout)
        work = [a for a in actions if a.kind != "remove"]
        if len(work) == 1:
            self._apply(service, work[0], digests[name], options)
            return
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(work)))) as pool:
            for future in [
                pool.submit(self._apply, service, a, digests[name], options) for a in work
            ]:
                future.result()

    def _apply(self, service: Service, action: Action, digest: str, options: UpOptions) -> None:
        name = convert.container_name(self.project.name, service, action.number)
        if action.kind == "keep":
            assert action.container is not None
            self.report(
                "Container", name, "Running" if action.container.running else "Exited", "done"
            )
            return
        if action.kind == "restart":
            assert action.container is not None
            self.report("Container", name, "Restarting")
            self.client.request("POST", f"/containers/{action.container.id}/restart")
            self.report("Container", name, "Restarted", "done")
            return
        if action.kind == "start":
            assert action.container is not None
            self.report("Container", name, "Starting")
            self._start(action.container.id, name)
            self.report("Container", name, "Started", "done")
            return
        if action.kind == "recreate":
            assert action.container is not None
            self.report("Container", name, "Recreate")
            self._remove(action.container.id, action.container.name, options.timeout, quiet=True)
        else:
            self.report("Container", name, "Creating")
        container_id = self._create(service, action.number, digest, name)
        self.report("Container", name, "Starting")
        self._start(container_id, name)
        self.report("Container", name, "Started", "done")

    def _create(self, service: Service, number: int, digest: str, name: str) -> str:
        mode = None
        if (service.network_mode or "").startswith("service:"):
            other = service.network_mode[8:]  # type: ignore[index]
            running = [c for c in self.containers(all_=False) if _service_of(c) == other]
            if not running:
                raise ComposeError(f"service {service.name!r}: {other} has no running container")
            mode = f"container:{running[0]['Id']}"
        body = convert.container_body(self.project, service, number, digest, network_mode=mode)
        try:
            created = self.client.json(
                "POST", "/containers/create", params={"name": name}, json=body
            )
        except ApiError as exc:
            self.report("Container", name, "Error", "error")
            raise ComposeError(f"service {service.name!r}: creating {name}: {exc}") from None
        container_id: str = created["Id"]
        for key, network in convert.service_networks(self.project, service)[1:]:
            self.client.json(
                "POST",
                f"/networks/{quote(network, safe='')}/connect",
                json={
                    "Container": container_id,
                    "EndpointConfig": convert.endpoint_config(service, key, name),
                },
            )
        return container_id

    def _start(self, container_id: str, name: str) -> None:
        try:
            self.client.request("POST", f"/containers/{container_id}/start")
        except ApiError as exc:
            self.report("Container", name, "Error", "error")
            raise ComposeError(f"starting {name}: {exc}") from None

    def _remove(
        self,
        container_id: str,
        name: str,
        timeout: int | None,
        *,
        quiet: bool = False,
        volumes: bool = False,
    ) -> None:
        """Stop and remove a container (with its anonymous volumes when `volumes`)."""
        if not quiet:
            self.report("Container", name, "Stopping")
        params = {} if timeout is None else {"t": timeout}
        try:
            self.client.request("POST", f"/containers/{container_id}/stop", params=params)
        except ApiError as exc:
            if exc.status not in (304, 404):
                raise
        try:
            self.client.request(
                "DELETE", f"/containers/{container_id}", params={"force": 1, "v": int(volumes)}
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
        if not quiet:
            self.report("Container", name, "Removed", "done")

    def _inspect_service(self, name: str) -> list[dict[str, Any]]:
        out = []
        for c in self.containers():
            if _service_of(c) == name:
                out.append(self.client.json("GET", f"/containers/{c['Id']}/json"))
        return out

    def _wait_condition(self, dep: str, condition: str, waiter: str) -> None:
        if condition == "service_started":
            return
        while True:
            states = self._inspect_service(dep)
            if not states:
                raise ComposeError(f"dependency {dep} of {waiter} has no container")
            done = True
            for info in states:
                state = info["State"]
                cname = info["Name"].lstrip("/")
                if condition == "service_healthy":
                    health = state.get("Health")
                    if health is None:
                        raise ComposeError(
                            f"dependency {dep} of {waiter} has no health check"
                            " (condition service_healthy needs one)"
                        )
                    if health["Status"] == "unhealthy":
                        self.report("Container", cname, "Unhealthy", "error")
                        raise ComposeError(
                            f"dependency failed to start: container {cname} is unhealthy"
                        )
                    if not state.get("Running"):
                        raise ComposeError(
                            f"dependency failed to start: container {cname} exited"
                            f" ({state.get('ExitCode')})"
                        )
                    if health["Status"] != "healthy":
                        done = False
                    else:
                        self.report("Container", cname, "Healthy", "done")
                elif condition == "service_completed_successfully":
                    if state.get("Running") or state.get("Status") in ("created", "restarting"):
                        done = False
                    elif state.get("ExitCode") != 0:
                        self.report(
                            "Container", cname, f"Exited ({state.get('ExitCode')})", "error"
                        )
                        raise ComposeError(
                            f"service {dep!r} didn't complete successfully:"
                            f" exit {state.get('ExitCode')}"
                        )
                    else:
                        self.report("Container", cname, "Exited", "done")
            if done:
                return
            time.sleep(_POLL)

    def wait_ready(self, names: list[str], timeout: float) -> None:
        """--wait: every container running (and healthy when it has a health check).

        A container that exited 0 and is not meant to restart (`restart` unset, `no` or
        `on-failure`) has done its job and counts as ready — Compose's --wait fails on
        such one-shot services (docker/compose#10596); any other exit fails the wait."""
        deadline = time.monotonic() + timeout if timeout else None
        pending = set(names)
        while pending:
            for name in sorted(pending):
                if self._ready(name):
                    pending.discard(name)
            if not pending:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise ComposeError(
                    f"timed out after {timeout:g}s waiting for {', '.join(sorted(pending))}"
                )
            time.sleep(_POLL)

    def _ready(self, name: str) -> bool:
        policy = (self.project.services[name].restart or "no").partition(":")[0]
        one_shot = policy in ("no", "on-failure")
        for info in self._inspect_service(name):
            state = info["State"]
            cname = info["Name"].lstrip("/")
            if not state.get("Running"):
                status = state.get("Status")
                if status in ("exited", "dead"):
                    code = state.get("ExitCode")
                    if code == 0 and one_shot:
                        self.report("Container", cname, "Exited (0)", "done")
                        continue
                    if (code != 0 and policy == "on-failure") or policy in (
                        "always",
                        "unless-stopped",
                    ):
                        return False  # the engine restarts it
                    self.report("Container", cname, f"Exited ({code})", "error")
                    raise ComposeError(f"container {cname} exited ({code})")
                return False
            health = state.get("Health")
            if health is not None:
                if health["Status"] == "unhealthy":
                    self.report("Container", cname, "Unhealthy", "error")
                    raise ComposeError(f"container {cname} is unhealthy")
                if health["Status"] != "healthy":
                    return False
                self.report("Container", cname, "Healthy", "done")
        return True

    # -- down, stop, start ------------------------------------------------------------

    def down(
        self,
        *,
        volumes: bool = False,
        remove_orphans: bool = False,
        timeout: int | None = None,
        rmi: str | None = None,
    ) -> None:
        """Stop and remove the project's containers (dependents first, each wave in
        parallel; orphans only with `remove_orphans`, one-off `run` containers always),
        then its networks, and its volumes (`volumes`) and images (`rmi`) when asked."""
        containers = self.containers(oneoff=True)
        known = set(self.project.services)
        by_service: dict[str, list[dict[str, Any]]] = {}
        for c in containers:
            service = _service_of(c)
            if (
                service not in known
                and not remove_orphans
                and c["Labels"].get(convert.LABEL_ONEOFF) != "True"
            ):
                continue
            by_service.setdefault(service, []).append(c)
        waves = [[s] for s in by_service if s not in known]
        waves += [[s for s in wave if s in by_service] for wave in stop_waves(self.graph)]
        _in_waves(
            ([c for s in wave for c in by_service.get(s, [])] for wave in waves),
            lambda c: self._remove(c["Id"], c["Names"][0].lstrip("/"), timeout, volumes=volumes),
        )
        for _key, network in sorted(self.project.networks.items()):
            if network.external:
                continue
            self._delete("Network", network.name, f"/networks/{quote(network.name, safe='')}")
        if volumes:
            for _key, volume in sorted(self.project.volumes.items()):
                if not volume.external:
                    self._delete("Volume", volume.name, f"/volumes/{quote(volume.name, safe='')}")
        if rmi:
            for svc in self.project.services.values():
                if rmi == "local" and svc.image:
                    continue
                image = convert.image_of(self.project.name, svc)
                self._delete("Image", image, f"/images/{quote(image, safe='')}")

    def _delete(self, kind: str, name: str, path: str) -> None:
        try:
            self.client.request("GET", path + ("/json" if kind == "Image" else ""))
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        self.report(kind, name, "Removing")
        try:
            self.client.request("DELETE", path)
        except ApiError as exc:
            if exc.status == 404:
                return
            self.report(kind, name, f"Error: {exc}", "error")
            raise ComposeError(f"removing {kind.lower()} {name}: {exc}") from None
        self.report(kind, name, "Removed", "done")

    def each_container(
        self, names: Iterable[str], action: Callable[[dict[str, Any]], None], *, reverse: bool
    ) -> None:
        """Call `action` on the project's containers of `names` (all when empty), in
        dependency order (reversed for stopping), a wave at a time, in parallel."""
        wanted = set(names) or set(self.project.services)
        waves = stop_waves(self.graph) if reverse else list(reversed(stop_waves(self.graph)))
        containers = self.containers()
        _in_waves(
            (
                [c for c in containers if _service_of(c) in wanted and _service_of(c) in wave]
                for wave in waves
            ),
            action,
        )


def _in_waves(
    waves: Iterable[list[dict[str, Any]]], action: Callable[[dict[str, Any]], None]
) -> None:
    """`action` on each container, a wave at a time, the members of a wave in parallel;
    the first error stops before the next wave."""
    for members in waves:
        if not members:
            continue
        with ThreadPoolExecutor(max_workers=min(16, len(members))) as pool:
            for future in [pool.submit(action, c) for c in members]:
                future.result()


class _DependencyFailed(ComposeError):
    """A service not started because a dependency failed (reported once, by the first)."""


def _number(container: Mapping[str, Any]) -> int:
    try:
        return int(container["Labels"].get(convert.LABEL_NUMBER, "0"))
    except ValueError:
        return 0


def _exit_code(container: Mapping[str, Any]) -> int | None:
    """The exit code in /containers/json's Status: `Exited (0) 3 seconds ago`."""
    status = str(container.get("Status") or "")
    if container.get("State") != "exited" or "(" not in status:
        return None
    try:
        return int(status.split("(", 1)[1].split(")", 1)[0])
    except ValueError:
        return None


def _service_of(container: Mapping[str, Any]) -> str:
    return str(container["Labels"].get(convert.LABEL_SERVICE, ""))

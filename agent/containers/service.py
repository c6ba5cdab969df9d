"""The node's containers: records on disk, processes in the supervisor.

- `create` checks the body into a ContainerSpec, finds the image (404 when it is
  not here: the docker CLI then pulls), unpacks its layers into snapshots, and
  records the container (`created`).
- `prepare_start` mounts the root filesystem (an overlay of the image's snapshots
  under the container's own upper directory), writes /etc/hostname, /etc/hosts and
  /etc/resolv.conf and the bundle's config.json, and has the supervisor create the
  container (its init waits); `finish_start` lets it run. Between the two, the API
  connects the clients that attached before start (as `docker run` does).
- The supervisor reports exits on its event stream; `on_exit` records them,
  unmounts the root filesystem, and applies the restart policy (restart.py) or
  AutoRemove.
- A daemon that starts again (`recover`) finds the supervisor still running the
  containers it left: records are brought up to date from the supervisor, exits
  that happened meanwhile are applied, and `always`/`unless-stopped` containers
  that are not running are started.
- Health checks (agent/health): a container whose merged Healthcheck has a command is
  watched by the node's probe monitor from each start until it stops; probes are
  execs through the supervisor; results land in `Record.health` (Docker's
  State.Health), status changes are `health_status: …` events, and the
  `org.orchestr.health.on-failure` label acts on `unhealthy` (restart, stop, kill).

Every method blocks (mounts, files, the supervisor's socket); the API calls them
from worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal as signals
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from agent import health
from agent.containers import restart
from agent.containers.records import NameConflict, NotFound, Record, Records, now_rfc3339
from agent.containers.spec import (
    INIT_BINARY,
    INIT_PACKAGE,
    ContainerSpec,
    SpecError,
    check_name,
    oci_config,
    parse_create,
)
from agent.events import EventBus
from agent.images.service import ImageService
from agent.network import Endpoint, driver_for
from agent.network.ports import PortMapping
from agent.network.service import Network, NetworkService
from agent.network.service import NotFound as NetworkNotFound
from agent.network.simple import BRIDGE_NOT_YET
from agent.runtime.runtime import Runtime
from agent.snapshots import mount_all, unmount

log = logging.getLogger("orchestr.containers")

__all__ = ["Conflict", "ContainerService", "NameConflict", "NotFound", "SpecError"]

DEFAULT_STOP_TIMEOUT = 10
ALIASES_ON_BRIDGE = "network-scoped aliases are only supported for user-defined networks"


class Conflict(Exception):
    """The container is not in a state that allows this (409)."""


def _signal_number(value: str | int | None, default: int = signals.SIGTERM) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    name = str(value).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signals.Signals[name])
    except KeyError:
        raise SpecError(f"invalid signal: {value}") from None


def _no_work() -> None:
    pass


class ContainerService:
    def __init__(
        self,
        data_root: str,
        exec_root: str,
        images: ImageService,
        supervisor: Any,
        *,
        volumes: Any = None,
        network: NetworkService | None = None,
        cgroup_parent: str = "/orchestr",
        events: EventBus | None = None,
    ) -> None:
        self.events = events or EventBus()
        self.runtime = Runtime(os.path.join(exec_root, "runtime"), warn=log.warning)
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        self.data_root = data_root
        self.exec_root = exec_root
        self.images = images
        self.supervisor = supervisor
        self.volumes = volumes
        self.network = network
        self.records = Records(os.path.join(data_root, "containers"))
        self.changed = threading.Condition(self.records.lock)
        self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="start-work")
        self._delays: dict[str, float] = {}
        self._removing = 0  # exits and removals whose clean-up (after the answer) is not done
        self._timers: dict[str, threading.Timer] = {}
        self._shutting_down = False  # the daemon stops: no container restarts any more
        self.health = health.Monitor(self._probe, self._health_result)
        self._unhealthy_restarts: set[str] = set()  # killed to be restarted (on-failure)
        self.init_binary = INIT_BINARY
        images.in_use = self.chains_in_use

    def _event(self, record: Record, action: str, **extra: str) -> None:
        attributes = {"image": record.image, "name": record.name, **extra}
        labels = record.body.get("Labels") or {}
        attributes.update({str(k): str(v) for k, v in labels.items()})
        self.events.publish("container", action, record.id, attributes)

    # -- reading

    def get(self, ref: str) -> Record:
        return self.records.get(ref)

    def volumes_in_use(self) -> dict[str, list[str]]:
        """Volume name -> the containers that mount it (running or not, as Docker counts)."""
        used: dict[str, list[str]] = {}
        for record in self.records.all():
            try:
                spec = self.spec(record)
            except SpecError:
                continue
            names = {m.source for m in spec.mounts if m.type == "volume" and m.source}
            names |= {
                str(m["Name"]) for m in record.mounts if m.get("Type") == "volume" and m.get("Name")
            }
            for name in names:
                used.setdefault(name, []).append(record.id)
        return used

    def chains_in_use(self) -> set[str]:
        return {r.chain for r in self.records.all() if r.chain}

    def spec(self, record: Record) -> ContainerSpec:
        return parse_create(record.body)

    # -- create

    def create(self, body: object, name: str | None) -> tuple[Record, list[str]]:
        spec = parse_create(body)
        if name:
            name = check_name(name)
        image = self.images.find(spec.image)
        if spec.init:
            self._check_init()
        body = dict(spec.raw)
        inner = image.config.get("config") or {}
        healthcheck = health.merge(spec.healthcheck, inner.get("Healthcheck"))
        if healthcheck is not None:
            body["Healthcheck"] = healthcheck  # merged at create, as dockerd stores it
        networks, warnings = self._networks_of(spec)
        chain = self.images.unpack(image)
        with self.records.lock:
            container_id = self.records.new_id()
            final_name = self.records.claim_name(name, container_id)
            directory = self.records.dir(container_id)
            record = Record(
                id=container_id,
                name=final_name,
                created=now_rfc3339(),
                image=spec.image,
                image_id=image.id,
                chain=chain,
                body=body,
                hostname=spec.hostname or container_id[:12],
                log_path=os.path.join(directory, f"{container_id}-json.log"),
                networks=networks,
            )
            self.records.save(record, durable=True)
        self._event(record, "create")
        return record, warnings

    def _check_init(self) -> None:
        if not os.path.isfile(self.init_binary):
            raise SpecError(
                f"--init: {self.init_binary} is not on this host; install the Debian package "
                f"{INIT_PACKAGE} (apt-get install {INIT_PACKAGE})"
            )

    def _networks_of(self, spec: ContainerSpec) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """The networks a new container joins (name -> EndpointSettings) and warnings."""
        mode = spec.network_mode
        if mode in ("host", "none") or mode.startswith("container:"):
            warnings = []
            if spec.port_bindings and mode != "none":
                warnings.append(f"Published ports are discarded when using {mode} network mode")
            return {}, warnings
        if self.network is None:
            if mode not in ("default", "bridge"):
                raise SpecError(f"network {mode} not found")
            return {}, [BRIDGE_NOT_YET]
        name = "bridge" if mode == "default" else mode
        try:
            network = self.network.get(name)
        except NetworkNotFound as e:
            if mode == "default":
                return {}, []  # --bridge none: containers get a namespace with lo only
            # 400, not 404: the docker CLI takes any 404 of a create for a missing image
            raise SpecError(str(e)) from None
        if network.driver != "bridge":  # host and none by name or ID
            return {}, []
        settings = spec.endpoints.get(mode) or spec.endpoints.get(name) or {}
        return {network.name: _endpoint(network, settings)}, []

    # -- networks (the network API's view of containers)

    def is_task(self, container_id: str) -> bool:
        try:
            labels = self.records.get(container_id).body.get("Labels") or {}
        except NotFound:
            return False
        return "com.docker.swarm.task.id" in labels

    def network_users(self, network_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, name, EndpointSettings) of each container on the network."""
        out = []
        for record in self.records.all():
            for settings in record.networks.values():
                if settings.get("NetworkID") == network_id:
                    out.append((record.id, record.name.lstrip("/"), dict(settings)))
        return out

    def connect(self, ref: str, network: Network, settings: dict[str, Any]) -> None:
        """`docker network connect`: a container that is not running joins at its next
        start; a running one gets its new interface at once."""
        with self.changed:
            record = self.records.get(ref)
            if network.driver != "bridge":
                raise SpecError(
                    f"container cannot be disconnected from or connected to {network.name}"
                    " (host and none networks are modes, not attachments)"
                )
            if network.name in record.networks:
                raise Conflict(
                    f"endpoint with name {record.name} already exists in network {network.name}"
                )
            mode = self.spec(record).network_mode
            if mode in ("host", "none") or mode.startswith("container:"):
                raise SpecError(
                    f"container sharing network namespace with another container or host "
                    f"cannot be connected to any other network ({record.name})"
                )
            endpoint = _endpoint(network, settings)
            if record.running:
                assert self.network is not None
                self.network.connect_live(record.id, record.name, endpoint)
            record.networks[network.name] = endpoint
            self.records.save(record)

    def disconnect(self, ref: str, network: Network, force: bool) -> None:
        with self.changed:
            record = self.records.get(ref)
            endpoint = record.networks.get(network.name)
            if endpoint is None:
                raise Conflict(f"container {record.id} is not connected to network {network.name}")
            if record.running and self.network is not None:
                self.network.disconnect_live(record.id, endpoint)
            del record.networks[network.name]
            self.records.save(record)

    # -- start

    def prepare_start(self, ref: str, *, restarting: bool = False) -> Record:
        """Mount, write the bundle and create the container in the supervisor (its
        process waits); `finish_start` starts it."""
        with self.records.lock:
            record = self.records.get(ref)
            if record.status in ("running", "paused") or (
                record.status == "restarting" and not restarting
            ):
                raise Conflict(f"container {record.id[:12]} is already running")
            if record.status == "removing":
                raise Conflict(f"container {record.id[:12]} is being removed")
            record.status = "starting"
            record.started_at = now_rfc3339()
        try:
            spec = self.spec(record)
            if spec.init:
                self._check_init()
            directory = self.records.dir(record.id)
            bundle = os.path.join(directory, "bundle")
            rootfs = os.path.join(bundle, "rootfs")
            os.makedirs(rootfs, mode=0o755, exist_ok=True)
            self._mount_rootfs(record, directory, rootfs)
            image = self.images.find(record.image_id)
            endpoint, wire = self._attach_network(record, spec, image.config)
            wiring = self._background(wire)  # while the container is made below
            mounts = self._mounts(record, spec, directory, image.config, endpoint)
            config = oci_config(
                spec,
                image.config,
                rootfs,
                hostname=record.hostname,
                mounts=mounts,
                cgroups_path=f"{self.cgroup_parent}/{record.id}",
                endpoint=endpoint,
                init_binary=self.init_binary,
            )
            import json

            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(config, f)
            with contextlib.suppress(Exception):
                self.supervisor.delete(record.id, force=True)  # a leftover of an earlier run
            try:
                record.pid = self.supervisor.create(
                    record.id,
                    bundle,
                    record.log_path,
                    log_max_size=spec.log_max_size,
                    log_max_files=spec.log_max_files,
                    stdin=spec.open_stdin,
                    tty=spec.tty,
                )
            finally:
                wiring.result()  # its error first: a container without its network never runs
            return record
        except BaseException:
            record.status = "exited" if record.exits else "created"
            if record.pid:
                with contextlib.suppress(Exception):
                    self.supervisor.delete(record.id, force=True)
                record.pid = 0
            self._detach_network(record)
            self._unmount_rootfs(record)
            self.records.save(record)
            self._remove_if_auto(record)
            raise

    def _remove_if_auto(self, record: Record) -> None:
        """A container that could not start is removed when it asked for AutoRemove
        (Docker's rule: `docker run --rm` waits for the removal)."""
        with contextlib.suppress(Exception):
            if self.spec(record).auto_remove:
                self.remove(record.id, force=True)

    def _background(self, fn: Callable[[], None]) -> Future[None]:
        if fn is _no_work:
            done: Future[None] = Future()
            done.set_result(None)
            return done
        return self._workers.submit(fn)

    def _attach_network(
        self, record: Record, spec: ContainerSpec, image_config: dict[str, Any]
    ) -> tuple[Endpoint, Callable[[], None]]:
        """Make the container's network namespace and plan its wiring (see
        agent.network.service): (what the runtime joins, the kernel work to do)."""
        mode = spec.network_mode
        if mode.startswith("container:"):
            return self._joined(mode.partition(":")[2], record.hostname), _no_work
        if not record.networks:  # host, none, or the default one with --bridge none
            simple = mode if mode == "host" or self.network is None else "none"
            return driver_for(simple).endpoint(record.id, record.hostname), _no_work
        assert self.network is not None  # networks are recorded only with one
        exposed = list(((image_config.get("config") or {}).get("ExposedPorts") or {}).keys())
        exposed += list(spec.exposed_ports)
        endpoint, ports, wire = self.network.attach(
            record.id,
            name=record.name,
            hostname=record.hostname,
            endpoints=record.networks,
            port_bindings=spec.port_bindings,
            publish_all=sorted(set(exposed)) if spec.publish_all else (),
            dns=spec.dns,
            extra_hosts=spec.extra_hosts,
        )
        record.ports = [[m.host_ip, m.host_port, m.container_port, m.proto] for m in ports]
        return endpoint, wire

    def _joined(self, ref: str, hostname: str) -> Endpoint:
        """`container:<ref>`: that running container's namespace and name files."""
        try:
            other = self.records.get(ref)
        except NotFound:
            raise NotFound(f"No such container: {ref}") from None
        if other.status not in ("running", "paused") or not other.pid:
            raise Conflict(f"cannot join network of a non running container: {other.id}")
        path = f"/proc/{other.pid}/ns/net"
        if self.network is not None and os.path.exists(self.network.namespace_path(other.id)):
            path = self.network.namespace_path(other.id)
        etc = os.path.join(self.records.dir(other.id), "etc")
        return Endpoint(
            namespace=path,
            hostname=hostname,
            hosts=_read(os.path.join(etc, "hosts")),
            resolv_conf=_read(os.path.join(etc, "resolv.conf")),
        )

    def _detach_network(self, record: Record) -> None:
        if self.network is not None:
            try:
                self.network.detach(record.id, record.networks)
            except Exception as e:
                log.warning("container %s: network clean-up: %s", record.id[:12], e)
        record.ports = []

    def finish_start(self, record: Record) -> None:
        try:
            self.supervisor.start(record.id)
        except BaseException:
            with contextlib.suppress(Exception):
                self.supervisor.delete(record.id, force=True)
            record.status = "exited" if record.exits else "created"
            self._detach_network(record)
            self._unmount_rootfs(record)
            self.records.save(record)
            self._remove_if_auto(record)
            raise
        with self.changed:
            if record.status != "starting":
                return  # it exited already: on_exit has recorded it
            record.status = "running"
            record.manually_stopped = False
            record.exit_code = 0
            record.oom_killed = False
            record.error = ""
            self._start_health(record)
            self.records.save(record)
            self.changed.notify_all()
        self._event(record, "start")

    def start(self, ref: str, *, restarting: bool = False) -> Record:
        record = self.prepare_start(ref, restarting=restarting)
        self.finish_start(record)
        return record

    def _mount_rootfs(self, record: Record, directory: str, rootfs: str) -> None:
        if os.path.ismount(rootfs):
            return
        mounts = self.images.snapshots.mounts(record.chain, directory)
        mount_all(mounts, rootfs)

    def _unmount_rootfs(self, record: Record) -> None:
        rootfs = os.path.join(self.records.dir(record.id), "bundle", "rootfs")
        if os.path.ismount(rootfs):
            try:
                unmount(rootfs)
            except OSError:
                unmount(rootfs, detach=True)

    def _mounts(
        self,
        record: Record,
        spec: ContainerSpec,
        directory: str,
        image_config: dict[str, Any],
        endpoint: Endpoint,
    ) -> list[dict[str, Any]]:
        """The container's own mounts: /etc files, binds, volumes, tmpfs."""
        etc = os.path.join(directory, "etc")
        os.makedirs(etc, exist_ok=True)
        _write(os.path.join(etc, "hostname"), endpoint.hostname + "\n")
        _write(os.path.join(etc, "hosts"), endpoint.hosts)
        _write(os.path.join(etc, "resolv.conf"), endpoint.resolv_conf)
        out: list[dict[str, Any]] = []
        shown: list[dict[str, Any]] = []
        for name in ("hostname", "hosts", "resolv.conf"):
            out.append(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": os.path.join(etc, name),
                    "options": ["rbind", "rprivate"],
                }
            )
        covered = set()
        for m in spec.mounts:
            covered.add(m.target.rstrip("/") or "/")
            if m.type == "bind":
                if not os.path.exists(m.source):
                    from_binds = any(
                        b.split(":")[0] == m.source
                        for b in record.body.get("HostConfig", {}).get("Binds") or []
                    )
                    if not from_binds:
                        raise SpecError(
                            f'invalid mount config for type "bind": bind source path does not '
                            f"exist: {m.source}"
                        )
                    os.makedirs(m.source, exist_ok=True)  # -v makes a missing source, as Docker
                out.append(
                    {
                        "destination": m.target,
                        "type": "bind",
                        "source": m.source,
                        "options": ["rbind", "ro" if m.read_only else "rw"],
                    }
                )
                shown.append(_shown("bind", m.source, m.target, not m.read_only))
            elif m.type == "tmpfs":
                options = ["nosuid", "nodev", "noexec", *m.options]
                out.append(
                    {
                        "destination": m.target,
                        "type": "tmpfs",
                        "source": "tmpfs",
                        "options": options,
                    }
                )
                shown.append(_shown("tmpfs", "", m.target, True))
            else:
                name, source = self._volume(m.source, m.target, record)
                out.append(
                    {
                        "destination": m.target,
                        "type": "bind",
                        "source": source,
                        "options": ["rbind", "ro" if m.read_only else "rw"],
                    }
                )
                shown.append(
                    {
                        **_shown("volume", source, m.target, not m.read_only),
                        "Name": name,
                        "Driver": "local",
                    }
                )
        image_volumes = (image_config.get("config") or {}).get("Volumes") or {}
        for target in {**image_volumes, **spec.volumes}:
            if (target.rstrip("/") or "/") in covered:
                continue
            name, source = self._volume("", target, record)
            out.append(
                {
                    "destination": target,
                    "type": "bind",
                    "source": source,
                    "options": ["rbind", "rw"],
                }
            )
            shown.append(
                {**_shown("volume", source, target, True), "Name": name, "Driver": "local"}
            )
        record.mounts = shown
        return out

    def _volume(self, name: str, target: str, record: Record) -> tuple[str, str]:
        """(name, host directory) of a named (or, with no name, anonymous) volume; an
        anonymous volume made for this container before is used again on restart."""
        if self.volumes is None:
            raise SpecError(f"{target}: volumes are not supported yet")
        if not name:
            earlier = [m for m in record.mounts if m.get("Destination") == target and m.get("Name")]
            if earlier:
                name = str(earlier[0]["Name"])
        volume = self.volumes.get_or_create(name) if name else self.volumes.create_anonymous()
        data = str(volume.mountpoint)
        rootfs = os.path.join(self.records.dir(record.id), "bundle", "rootfs")
        from agent.runtime.linux.rootfs import secure_join

        inside = secure_join(rootfs, target)
        if os.path.isdir(inside) and not os.listdir(data):
            self.volumes.copy_up(inside, data)
        return str(volume.name), data

    # -- exits

    def on_exit(self, container_id: str, exit_code: int | None, oom_killed: bool) -> None:
        """The supervisor saw the container's init exit."""
        with self.changed:
            try:
                record = self.records.get(container_id)
            except NotFound:
                return
            if record.status not in ("running", "starting"):
                return  # seen already (an event and a catch-up both report it)
            self._removing += 1  # clean-up in progress until the end of on_exit
        try:
            self._exited(record, exit_code, oom_killed)
        finally:
            with self.changed:
                self._removing -= 1
                self.changed.notify_all()

    def _exited(self, record: Record, exit_code: int | None, oom_killed: bool) -> None:
        container_id = record.id
        self._detach_network(record)  # its names and ports go before anyone hears of it
        with self.changed:
            if record.status not in ("running", "starting"):
                return
            started = _parse_time(record.started_at)
            spec = self.spec(record)
            record.status = "exited"
            record.pid = 0
            record.exit_code = exit_code if exit_code is not None else 255
            record.oom_killed = oom_killed
            record.finished_at = now_rfc3339()
            record.exits += 1
            self._stop_health(record)
            unhealthy = container_id in self._unhealthy_restarts
            self._unhealthy_restarts.discard(container_id)
            if not spec.auto_remove:  # removed next (after a crash, recover() does it)
                self.records.save(record)
            self.changed.notify_all()
        if oom_killed:
            self._event(record, "oom")
        self._event(record, "die", exitCode=str(record.exit_code))
        if spec.auto_remove:
            with contextlib.suppress(Exception):
                self.remove(container_id, force=True)
            return
        with contextlib.suppress(Exception):
            self.supervisor.delete(container_id, force=True)
        self._unmount_rootfs(record)
        if self._shutting_down:
            return  # its policy applies when the daemon starts again
        if (unhealthy and not record.manually_stopped) or restart.should_restart(
            spec.restart, record.exit_code, record.restart_count, record.manually_stopped
        ):
            delay = restart.next_delay(self._delays.get(container_id, 0.0), time.time() - started)
            self._delays[container_id] = delay
            with self.changed:
                record.status = "restarting"
                self.records.save(record)
            timer = threading.Timer(delay, self._restart, args=(container_id,))
            timer.daemon = True
            self._timers[container_id] = timer
            timer.start()

    def _restart(self, container_id: str) -> None:
        self._timers.pop(container_id, None)
        try:
            record = self.records.get(container_id)
        except NotFound:
            return
        with self.changed:
            if record.status != "restarting":
                return  # stopped or removed meanwhile
            record.restart_count += 1  # still "restarting" until it runs: never seen as done
            self.records.save(record)
        try:
            self.start(container_id, restarting=True)
        except Exception as e:
            log.warning("restarting %s failed: %s", container_id[:12], e)
            with self.changed:
                record.status = "exited"
                record.error = str(e)
                self.records.save(record)
                self.changed.notify_all()

    # -- health checks

    def _start_health(self, record: Record) -> None:
        """A container (re)started: `starting`, and probes from one interval on.
        Called with the records' lock held."""
        config = health.HealthConfig.from_api(record.body.get("Healthcheck"))
        if config is None:
            record.health = None
            return
        state = (health.HealthState.from_api(record.health) or health.HealthState()).restarted()
        record.health = state.to_api()
        self.health.watch(record.id, config, _parse_time(record.started_at), state)

    def _stop_health(self, record: Record) -> None:
        """Probes stop; the container shows `unhealthy` (dockerd's rule). Lock held."""
        self.health.unwatch(record.id)
        state = health.HealthState.from_api(record.health)
        if state is not None:
            record.health = health.stopped(state).to_api()

    def exec_process(
        self,
        record: Record,
        cmd: list[str],
        *,
        env: list[str] | None = None,
        user: str = "",
        working_dir: str = "",
        tty: bool = False,
    ) -> dict[str, Any]:
        """An exec's OCI process: the container's (env, cwd, user, capabilities) with
        the exec's command, env, user, working directory and tty over it."""
        import json

        from agent.images.bundle import merge_env, resolve_user

        bundle = os.path.join(self.records.dir(record.id), "bundle")
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        base = config["process"]
        process: dict[str, Any] = {
            "args": list(cmd),
            "env": merge_env(list(base.get("env") or []), list(env or [])),
            "cwd": working_dir or base.get("cwd") or "/",
            "user": dict(base.get("user") or {"uid": 0, "gid": 0}),
            "terminal": tty,
            "noNewPrivileges": bool(base.get("noNewPrivileges")),
        }
        if base.get("capabilities"):
            process["capabilities"] = base["capabilities"]
        if user:
            try:
                uid, gid, extra = resolve_user(user, os.path.join(bundle, "rootfs"))
            except ValueError as e:
                raise SpecError(str(e)) from None
            process["user"] = {"uid": uid, "gid": gid, "additionalGids": extra}
        return process

    def _probe(self, target: health.Target) -> health.Result | None:
        """One probe of a running container (the monitor's worker thread)."""
        try:
            record = self.records.get(target.container_id)
        except NotFound:
            return None
        if record.status != "running":
            return None
        argv = target.config.argv
        try:
            process = self.exec_process(record, argv)
        except (OSError, ValueError, KeyError) as e:
            now = time.time()
            return health.Result(now, now, -1, str(e))
        exec_id = secrets.token_hex(32)
        command = " ".join(argv)
        self._event(record, f"exec_create: {command}", execID=exec_id)
        result = health.run_exec_probe(
            self.supervisor,
            record.id,
            exec_id,
            process,
            target.config,
            started=lambda: self._event(record, f"exec_start: {command}", execID=exec_id),
        )
        self._event(record, "exec_die", execID=exec_id, exitCode=str(result.exit_code))
        return result

    def _health_result(
        self, target: health.Target, result: health.Result
    ) -> health.HealthState | None:
        """Apply a probe's result; the new state (None: the container is not running)."""
        with self.changed:
            try:
                record = self.records.get(target.container_id)
            except NotFound:
                return None
            before = health.HealthState.from_api(record.health)
            if (
                record.status != "running"
                or before is None
                or abs(_parse_time(record.started_at) - target.started_at) > 0.001
            ):
                return None  # stopped, or started again since this probe began
            after = health.apply(before, target.config, result, target.started_at)
            record.health = after.to_api()
            if after.status != before.status:
                self.records.save(record)  # probes alone stay in memory, as dockerd's
        if after.status != before.status:
            self._event(record, f"health_status: {after.status}")
            if after.status == health.UNHEALTHY:
                action = self.spec(record).health_on_failure
                if action != "none":
                    self._workers.submit(self._on_unhealthy, record.id, action)
                    return None  # no more probes: it is being acted on
        return after

    def _on_unhealthy(self, container_id: str, action: str) -> None:
        """The org.orchestr.health.on-failure label's action on an unhealthy container."""
        try:
            record = self.records.get(container_id)
            if record.status != "running":
                return
            log.info("container %s is unhealthy: %s", container_id[:12], action)
            if action == "restart":
                self._unhealthy_restarts.add(container_id)
                self._terminate(record, None)
            elif action == "stop":
                self.stop(container_id)
            elif action == "kill":
                self.kill(container_id)
        except Exception as e:
            log.warning("unhealthy %s: %s failed: %s", container_id[:12], action, e)

    # -- stop, kill, remove

    def stop(
        self, ref: str, timeout: int | None = None, sig: str | None = None, *, manual: bool = True
    ) -> bool:
        """SIGTERM (or the stop signal), then SIGKILL after the grace period; False when
        it was not running (304). A stop that is not `manual` (the daemon shutting down)
        leaves an `unless-stopped` container to start again with the daemon."""
        record = self.records.get(ref)
        self._cancel_restart(record)
        if not record.running:
            return False
        record.manually_stopped = manual
        self.records.save(record)
        self._terminate(record, timeout, sig)
        self._event(record, "stop")
        return True

    def _terminate(self, record: Record, timeout: int | None, sig: str | None = None) -> None:
        """The stop signal, the grace period, then SIGKILL; until it exited."""
        spec = self.spec(record)
        number = _signal_number(sig or spec.stop_signal or None)
        grace = timeout if timeout is not None else (spec.stop_timeout or DEFAULT_STOP_TIMEOUT)
        self._thaw(record)
        exits = record.exits
        with contextlib.suppress(Exception):
            self.supervisor.kill(record.id, number, False)
        if not self._wait_exit(record, exits, grace):
            with contextlib.suppress(Exception):
                self.supervisor.kill(record.id, signals.SIGKILL, True)
            self._wait_exit(record, exits, 30)

    def _wait_exit(self, record: Record, exits: int, timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0)
        with self.changed:
            while record.exits == exits and record.running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True

    def pause(self, ref: str) -> None:
        record = self.records.get(ref)
        if record.status == "paused":
            raise Conflict(f"Container {record.id} is already paused")
        if record.status != "running":
            raise Conflict(f"Container {record.id} is not running")
        self.runtime.pause(record.id)
        with self.changed:
            record.status = "paused"
            self._stop_health(record)  # dockerd probes only running, unpaused containers
            self.records.save(record)
        self._event(record, "pause")

    def unpause(self, ref: str) -> None:
        record = self.records.get(ref)
        if record.status != "paused":
            raise Conflict(f"Container {record.id} is not paused")
        self._thaw(record)
        config = health.HealthConfig.from_api(record.body.get("Healthcheck"))
        state = health.HealthState.from_api(record.health)
        if config is not None and state is not None and record.status == "running":
            self.health.watch(record.id, config, _parse_time(record.started_at), state)
        self._event(record, "unpause")

    def _thaw(self, record: Record) -> None:
        if record.status != "paused":
            return
        with contextlib.suppress(Exception):
            self.runtime.resume(record.id)
        with self.changed:
            record.status = "running"
            self.records.save(record)

    def kill(self, ref: str, sig: str | None = None) -> None:
        record = self.records.get(ref)
        if not record.running:
            raise Conflict(f"Container {record.id} is not running")
        number = _signal_number(sig, signals.SIGKILL)
        self._event(record, "kill", signal=str(number))
        if number == signals.SIGKILL:
            self._thaw(record)  # a frozen process dies only once thawed
        if number in (signals.SIGKILL, signals.SIGTERM, signals.SIGINT):
            record.manually_stopped = True
            self.records.save(record)
        self.supervisor.kill(record.id, number, False)

    def shutting_down(self) -> None:
        """The daemon stops: no restart from now on, and those waiting are called off
        (not as a user's stop: their policies apply when the daemon starts again)."""
        self._shutting_down = True
        for container_id, timer in list(self._timers.items()):
            timer.cancel()
            self._timers.pop(container_id, None)
        with self.changed:
            for record in self.records.all():
                if record.status == "restarting":
                    record.status = "exited"
                    self.records.save(record)
            self.changed.notify_all()

    def _cancel_restart(self, record: Record) -> None:
        timer = self._timers.pop(record.id, None)
        if timer is not None:
            timer.cancel()
        if record.status == "restarting":
            with self.changed:
                record.status = "exited"
                record.manually_stopped = True
                self.records.save(record)
                self.changed.notify_all()

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> None:
        record = self.records.get(ref)
        self._cancel_restart(record)
        if record.running:
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {record.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            self._event(record, "kill", signal=str(int(signals.SIGKILL)))
            self._thaw(record)
            with contextlib.suppress(Exception):
                self.supervisor.kill(record.id, signals.SIGKILL, True)
            self._wait_exit(record, record.exits, 30)
        with self.changed:
            record.status = "removing"
            aside = self.records.discard(record.id)
            self._removing += 1
            self.changed.notify_all()
        try:
            self._event(record, "destroy")
            # Gone for the user now (name free, waiters answered); the node's part follows.
            self._detach_network(record)
            with contextlib.suppress(Exception):
                self.supervisor.delete(record.id, force=True)
            self._delete_removed(aside)
            if volumes and self.volumes is not None:
                for m in record.mounts:
                    if m.get("Type") == "volume" and m.get("Name"):
                        with contextlib.suppress(Exception):
                            if self.volumes.get(str(m["Name"])).anonymous:
                                self.volumes.remove(str(m["Name"]), force=True)
        finally:
            with self.changed:
                self._removing -= 1
                self.changed.notify_all()

    def wait_removals(self, timeout: float = 30) -> None:
        """Until the node's part of every exit and removal in progress is done (daemon
        exit: the containers' cgroups must be gone before their parent is removed)."""
        with self.changed:
            self.changed.wait_for(lambda: self._removing == 0, timeout)

    def _delete_removed(self, directory: str) -> None:
        """Unmount a removed container's root and delete its directory."""
        rootfs = os.path.join(directory, "bundle", "rootfs")
        if os.path.ismount(rootfs):
            try:
                unmount(rootfs)
            except OSError:
                unmount(rootfs, detach=True)
        shutil.rmtree(directory, ignore_errors=True)

    def wait(
        self, ref: str, condition: str = "not-running", cancel: threading.Event | None = None
    ) -> tuple[int, str]:
        """Block until `condition` (not-running | next-exit | removed) or `cancel`;
        (exit code, error)."""
        record = self.records.get(ref)
        exits = record.exits
        with self.changed:
            while cancel is None or not cancel.is_set():
                gone = record.id not in {r.id for r in self.records.all()}
                if condition == "removed":
                    if gone:
                        return record.exit_code, record.error
                elif condition == "next-exit":
                    if record.exits > exits or gone:
                        return record.exit_code, record.error
                elif (not record.running and record.status != "starting") or gone:
                    return record.exit_code, record.error
                self.changed.wait(0.5)
        return record.exit_code, "cancelled"

    def rename(self, ref: str, name: str) -> None:
        name = check_name(name)
        with self.records.lock:
            record = self.records.get(ref)
            if record.name == name:
                return
            self.records.claim_name(name, record.id)
            old = record.name
            record.name = name
            self.records.save(record)
        self._event(record, "rename", oldName="/" + old)

    # -- the supervisor's events

    def watch(self, stop: threading.Event, recovered: threading.Event | None = None) -> None:
        """Apply the supervisor's exit events until `stop`. Each time it subscribes
        (at start, and after a lost connection) it first catches up with what the
        supervisor did meanwhile (`recover`), then sets `recovered`: no exit falls
        between the two."""
        while not stop.is_set():
            try:
                events = self.supervisor.events()  # subscribed when this returns
                try:
                    self.recover()
                    if recovered is not None:
                        recovered.set()
                    for event in events:
                        if stop.is_set():
                            return
                        if event.get("event") == "exit":
                            code = event.get("exit_code")
                            self.on_exit(
                                str(event.get("id")),
                                code if isinstance(code, int) else None,
                                bool(event.get("oom_killed")),
                            )
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()
            except Exception as e:  # the supervisor went away: try again shortly
                if not stop.is_set():
                    log.warning("supervisor events: %s", e)
            stop.wait(0.5)

    def make_cgroup_parent(self) -> None:
        """Make the containers' parent cgroup once, at daemon start: a parent the runtime
        finds already there is not made again and removed for every container (11
        mkdir/rmdir pairs per container on cgroup v1)."""
        from agent.runtime.linux.cgroups import Cgroup

        try:
            Cgroup.at(self.cgroup_parent).create({})
        except OSError as e:
            log.warning("cgroup parent %s: %s", self.cgroup_parent, e)

    def remove_cgroup_parent(self) -> None:
        """Remove the (empty) parent cgroup of the containers, in every hierarchy."""
        for root, dirs, _ in os.walk("/sys/fs/cgroup"):
            if root.count("/") > 4:
                dirs[:] = []
                continue
            path = root + self.cgroup_parent
            if os.path.isdir(path):
                with contextlib.suppress(OSError):
                    os.rmdir(path)

    # -- after a daemon restart

    def recover(self) -> None:
        """Bring records up to date with the supervisor (live restore)."""
        try:
            known = {c["id"]: c for c in self.supervisor.list()}
        except Exception as e:
            log.warning("the supervisor did not answer: %s", e)
            known = {}
        for directory in self.records.removed():  # removals a crash cut short
            self._delete_removed(directory)
        was_restarting: set[str] = set()
        for cid in known.keys() - {record.id for record in self.records.all()}:
            with contextlib.suppress(Exception):  # the container of a cut-short removal
                self.supervisor.delete(cid, force=True)
        for record in self.records.all():
            state = known.get(record.id)
            if record.status == "restarting" and not (state and state.get("status") == "running"):
                # waiting to restart when the daemon stopped: it starts with it below
                record.status = "exited"
                self.records.save(record)
                was_restarting.add(record.id)
            if record.status in ("running", "starting", "restarting"):
                if state is not None and state.get("status") == "running":
                    record.status = "running"
                    record.pid = int(state.get("pid") or 0)
                    self._start_health(record)  # as dockerd's restore: starting again
                    self.records.save(record)
                    if self.network is not None:
                        self.network.restore(
                            record.id,
                            record.name,
                            record.networks,
                            [
                                PortMapping(str(h), int(p), int(c), str(t))
                                for h, p, c, t in record.ports
                            ],
                        )
                    continue
                code = state.get("exit_code") if state else None
                self.on_exit(
                    record.id,
                    code if isinstance(code, int) else None,
                    bool(state and state.get("oom_killed")),
                )
            elif record.status == "removing":
                with contextlib.suppress(Exception):
                    self.remove(record.id, force=True)
        if self.network is not None:
            self.network.sweep()
        for record in self.records.all():
            if record.running:
                continue
            try:
                spec = self.spec(record)
            except SpecError:
                continue
            if record.exits and (
                restart.start_at_boot(spec.restart, record.manually_stopped)
                or (
                    record.id in was_restarting
                    and restart.should_restart(
                        spec.restart, record.exit_code, record.restart_count, False
                    )
                )
            ):
                try:
                    self.start(record.id)
                except Exception as e:
                    log.warning("starting %s at boot failed: %s", record.id[:12], e)


def _shown(kind: str, source: str, target: str, rw: bool) -> dict[str, Any]:
    return {
        "Type": kind,
        "Source": source,
        "Destination": target,
        "Mode": "",
        "RW": rw,
        "Propagation": "rprivate" if kind == "bind" else "",
    }


def _endpoint(network: Network, settings: dict[str, Any]) -> dict[str, Any]:
    """What a container's record keeps of a network it is on, from the request's
    EndpointConfig (the addresses come when it starts)."""
    aliases = settings.get("Aliases") or []
    if aliases and network.name == "bridge":
        raise SpecError(ALIASES_ON_BRIDGE)
    return {
        "NetworkID": network.id,
        "Aliases": [str(a) for a in aliases],
        "IPAMConfig": settings.get("IPAMConfig") or None,
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _parse_time(text: str) -> float:
    from agent.containers.logs import parse_time

    try:
        return parse_time(text)
    except ValueError:
        return 0.0

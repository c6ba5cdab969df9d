"""`orchestr daemon`: the node's daemon in the foreground — the composition root
that puts the API server in front of the node's services.

All paths are settable so that several daemons share one machine:
`--data-root` (images, snapshots, state; default /var/lib/orchestr),
`--exec-root` (runtime state of running containers; default /run/orchestr),
`--host` (API sockets, repeatable; default unix:///run/orchestr/orchestr.sock).
The pid file is `<data-root>/orchestr.pid`; the process logs to stderr (the
CLI's autostart sends that to `<data-root>/daemon.log`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from agent.network.service import Config as NetworkConfig
from orchestr import __version__
from orchestr.errors import OrchestrError

DEFAULT_DATA_ROOT = "/var/lib/orchestr"
DEFAULT_EXEC_ROOT = "/run/orchestr"

log = logging.getLogger("orchestr.daemon")


def _node_id(data_root: str) -> str:
    path = os.path.join(data_root, "node-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        node_id = uuid.uuid4().hex
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(node_id + "\n")
        os.replace(tmp, path)
        return node_id


def _clean_interrupted_work(data_root: str) -> None:
    """What a killed daemon left: build steps (unmounted here) and spooled uploads."""
    import shutil

    from agent.runtime.linux import flags, libc

    build = os.path.join(data_root, "build")
    if os.path.isdir(build):
        for name in os.listdir(build):
            if name.startswith(("step-", "from-")):
                rootfs = os.path.join(build, name, "rootfs")
                with contextlib.suppress(OSError):
                    libc.umount2(rootfs, flags.MNT_DETACH)
                shutil.rmtree(os.path.join(build, name), ignore_errors=True)
    shutil.rmtree(os.path.join(data_root, "tmp"), ignore_errors=True)


def _stop_everything(containers: Any, supervisor_root: str) -> None:
    """A clean shutdown without --live-restore stops the containers (Docker's default)
    and then the supervisor; after a crash (kill -9) both keep running instead."""

    def stop(record_id: str) -> None:
        try:  # with its own grace period; not a user's stop (unless-stopped comes back)
            containers.stop(record_id, manual=False)
        except Exception as e:
            log.warning("stopping %s: %s", record_id[:12], e)

    containers.shutting_down()
    running = [r.id for r in containers.records.all() if r.running]
    if running:
        with ThreadPoolExecutor(max_workers=min(32, len(running))) as pool:
            list(pool.map(stop, running))
    containers.wait_removals()
    try:
        with open(os.path.join(supervisor_root, "supervisor.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child when we started it
                    break
            os.kill(pid, 0)
            time.sleep(0.02)
    except (OSError, ValueError):
        pass
    containers.remove_cgroup_parent()


API_THREADS = 64


class Daemon:
    def __init__(
        self,
        data_root: str,
        exec_root: str,
        hosts: list[str],
        insecure_registries: frozenset[str] = frozenset(),
        live_restore: bool = False,
        cgroup_parent: str = "/orchestr",
        tls: tuple[str, str, str] | None = None,
        network: NetworkConfig | None = None,
    ) -> None:
        self.network_config = network or NetworkConfig()
        self.tls = tls  # (CA, certificate, key) for TCP listeners
        self.live_restore = live_restore
        self.cgroup_parent = cgroup_parent
        self.data_root = os.path.abspath(data_root)
        self.exec_root = os.path.abspath(exec_root)
        self.hosts = hosts
        self.insecure_registries = insecure_registries
        self._pid_fd: int | None = None

    def _lock_pid_file(self) -> None:
        path = os.path.join(self.data_root, "orchestr.pid")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode().strip()
            os.close(fd)
            raise OrchestrError(
                f"another daemon (pid {other or '?'}) is using the data root {self.data_root}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pid_fd = fd

    def _check_socket_paths(self) -> None:
        """Before anything starts: every unix socket this daemon will make must fit in
        sun_path (107 bytes), or it would fail half-way with the supervisor running."""
        for host in self.hosts:
            if host.startswith("tcp://") and self.tls is None:
                raise OrchestrError(
                    f"{host}: a TCP listener needs mutual TLS: give --tlsverify "
                    "--tlscacert CA --tlscert CERT --tlskey KEY"
                )
        paths = [h[len("unix://") :] for h in self.hosts if h.startswith("unix://")]
        paths.append(os.path.join(self.exec_root, "supervisor.sock"))
        if any(h.startswith("tcp://") for h in self.hosts):
            paths.append(os.path.join(self.exec_root, "tls-backend.sock"))
        for path in paths:
            if len(os.fsencode(path)) > 107:
                raise OrchestrError(
                    f"{path}: a unix socket path can have at most 107 bytes; choose a shorter "
                    "--exec-root or --host"
                )

    async def run(self) -> None:
        from agent.api.containers import ContainersApi
        from agent.api.images import ImagesApi
        from agent.api.networks import NetworksApi
        from agent.api.system import SystemApi
        from agent.api.volumes import VolumesApi
        from agent.containers.service import ContainerService
        from agent.events import EventBus
        from agent.exec.logs import NodeLogs
        from agent.exec.worker import ServiceContainers, Worker
        from agent.images.service import ImageService
        from agent.network import NetworkError
        from agent.network.service import NetworkService
        from agent.runtime.linux import flags, libc
        from agent.supervisor.client import SupervisorClient, start_supervisor
        from agent.volumes import VolumeStore
        from orchestr.api.http import Router, Server
        from orchestr.manager.local import Cluster
        from orchestr.state.sqlite import open_store

        self._check_socket_paths()
        # The API's blocking calls run in the loop's executor, and some block for long (a
        # stop waits out a grace period): more threads than asyncio's default (CPUs + 4),
        # so that a few slow calls do not hold up every other request.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(API_THREADS, thread_name_prefix="api")
        )
        os.makedirs(self.data_root, mode=0o711, exist_ok=True)
        os.makedirs(self.exec_root, mode=0o711, exist_ok=True)
        self._lock_pid_file()
        # Containers started here (build steps, later every container's supervisor
        # chain) are re-parented to the daemon and reaped by it.
        libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
        _clean_interrupted_work(self.data_root)
        service = ImageService(self.data_root)
        service.snapshots.cleanup()
        runtime_root = os.path.join(self.exec_root, "runtime")
        # The supervisor parents every container and outlives this process: a daemon
        # that is killed finds it (and the containers) again when it comes back.
        supervisor_socket = os.path.join(self.exec_root, "supervisor.sock")
        supervisor_root = os.path.join(self.exec_root, "supervisor")
        await asyncio.to_thread(start_supervisor, supervisor_root, supervisor_socket, runtime_root)
        supervisor = SupervisorClient(supervisor_socket)
        events = EventBus()
        volumes = VolumeStore(os.path.join(self.data_root, "volumes"))
        network = NetworkService(self.data_root, self.exec_root, self.network_config)
        try:
            await asyncio.to_thread(network.start, asyncio.get_running_loop())
        except NetworkError as e:
            raise OrchestrError(f"networking: {e}") from None
        containers = ContainerService(
            self.data_root,
            self.exec_root,
            service,
            supervisor,
            volumes=volumes,
            network=network,
            cgroup_parent=self.cgroup_parent,
            events=events,
        )
        volumes.in_use = containers.volumes_in_use
        containers.make_cgroup_parent()
        watching = threading.Event()
        recovered = threading.Event()
        watcher = threading.Thread(
            target=containers.watch,
            args=(watching, recovered),
            name="supervisor-events",
            daemon=True,
        )
        watcher.start()
        await asyncio.to_thread(recovered.wait, 30)
        router = Router()
        system = SystemApi(
            service,
            node_id=_node_id(self.data_root),
            exec_root=self.exec_root,
            version=__version__,
            volumes=volumes,
            events=events,
            containers=containers,
        )
        router.include(system.router)
        router.include(
            ImagesApi(
                service,
                runtime_root=runtime_root,
                insecure_registries=self.insecure_registries,
                events=events,
            ).router
        )
        router.include(ContainersApi(containers).router)
        router.include(VolumesApi(volumes).router)
        networks_api = NetworksApi(network, containers)
        router.include(networks_api.router)
        # A cluster of one: the store, the manager's controller and this node's worker.
        store = await asyncio.to_thread(open_store, self.data_root)
        node_id = _node_id(self.data_root)
        cluster = Cluster(store, node_id, logs=NodeLogs(containers))
        files_root = os.path.join(self.exec_root, "tasks")  # secrets: not on disk
        worker = Worker(node_id, cluster.tasks, ServiceContainers(containers), files_root)
        await asyncio.to_thread(cluster.start, {"worker": worker.run})
        system.swarm = cluster.api.swarm_info
        networks_api.services_using = cluster.api.services_using
        cluster.api.node_ports = network.container_ports
        cluster.api.vips = network.service_vips
        router.include(cluster.router)
        server = Server(router)
        sockets = []
        for host in self.hosts:
            if host.startswith("tcp://"):
                if self.tls is None:
                    raise OrchestrError(
                        f"{host}: a TCP listener needs mutual TLS: give --tlsverify "
                        "--tlscacert CA --tlscert CERT --tlskey KEY"
                    )
                from orchestr.api.http import server_tls

                address, _, port = host[len("tcp://") :].rpartition(":")
                if not port.isdigit():
                    raise OrchestrError(f"{host}: expected tcp://ADDRESS:PORT")
                backend = os.path.join(self.exec_root, "tls-backend.sock")
                if backend not in sockets:
                    await server.listen_unix(backend, mode=0o600)
                    sockets.append(backend)
                await server.listen_tcp(
                    address.strip("[]"), int(port), server_tls(*self.tls), backend
                )
                continue
            if not host.startswith("unix://"):
                raise OrchestrError(f"{host}: expected unix:///path or tcp://ADDRESS:PORT")
            path = host[len("unix://") :]
            await server.listen_unix(path)
            sockets.append(path)
        log.info("orchestr daemon (pid %d) serving on %s", os.getpid(), ", ".join(self.hosts))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await server.close()
            await asyncio.to_thread(cluster.stop)
            for path in sockets:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            if not self.live_restore:  # while the watcher still sees their exits
                await asyncio.to_thread(_stop_everything, containers, supervisor_root)
            watching.set()
            await asyncio.to_thread(network.stop, keep_running=self.live_restore)


@click.command()
@click.option(
    "--data-root",
    default=DEFAULT_DATA_ROOT,
    show_default=True,
    help="Where images, snapshots and state live.",
)
@click.option(
    "--exec-root",
    default=DEFAULT_EXEC_ROOT,
    show_default=True,
    help="Runtime state of running containers.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="URL",
    help="API socket to serve (repeatable) [default: the CLI's -H].",
)
@click.option(
    "--insecure-registry",
    "insecure",
    multiple=True,
    metavar="HOST[:PORT]",
    help="A registry to reach over plain HTTP (loopback ones always are).",
)
@click.option(
    "--cgroup-parent",
    default="/orchestr",
    show_default=True,
    help="Parent cgroup of the containers.",
)
@click.option("--tlsverify", is_flag=True, help="TCP listeners with mutual TLS (required for TCP).")
@click.option("--tlscacert", type=click.Path(exists=True, dir_okay=False), help="CA of clients.")
@click.option("--tlscert", type=click.Path(exists=True, dir_okay=False), help="Our certificate.")
@click.option("--tlskey", type=click.Path(exists=True, dir_okay=False), help="Our key.")
@click.option(
    "--live-restore",
    is_flag=True,
    help="Keep containers running when the daemon stops (they always survive a crash).",
)
@click.option(
    "-b",
    "--bridge",
    default="",
    metavar="none",
    help="`none`: no default bridge network (containers get only a loopback by default).",
)
@click.option(
    "--default-address-pool",
    "pools",
    multiple=True,
    metavar="base=CIDR,size=N",
    help="Where network subnets come from (Docker's defaults when not given).",
)
@click.option("--dns", multiple=True, metavar="IP[:PORT]", help="Upstream resolvers of the DNS.")
@click.option(
    "--ip-masq",
    type=click.BOOL,
    default=True,
    is_flag=False,
    flag_value=True,
    help="Masquerade traffic leaving bridges (--ip-masq=false: off, as dockerd).",
)
@click.option(
    "--ip-forward",
    type=click.BOOL,
    default=True,
    is_flag=False,
    flag_value=True,
    help="Set net.ipv4.ip_forward (--ip-forward=false: leave it).",
)
@click.option("--mtu", type=int, default=1500, show_default=True, help="MTU of bridge networks.")
@click.pass_obj
def daemon(
    obj: object,
    data_root: str,
    exec_root: str,
    hosts: tuple[str, ...],
    insecure: tuple[str, ...],
    live_restore: bool,
    cgroup_parent: str,
    tlsverify: bool,
    tlscacert: str | None,
    tlscert: str | None,
    tlskey: str | None,
    bridge: str,
    pools: tuple[str, ...],
    dns: tuple[str, ...],
    ip_masq: bool,
    ip_forward: bool,
    mtu: int,
) -> None:
    """Run the node's daemon in the foreground."""
    debug = bool(getattr(obj, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        raise OrchestrError("the daemon needs root (it mounts, makes namespaces and cgroups)")
    default_host = str(getattr(obj, "host", "unix:///run/orchestr/orchestr.sock"))
    tls = None
    if tlsverify:
        if not (tlscacert and tlscert and tlskey):
            raise OrchestrError("--tlsverify needs --tlscacert, --tlscert and --tlskey")
        tls = (tlscacert, tlscert, tlskey)
    d = Daemon(
        data_root,
        exec_root,
        list(hosts) or [default_host],
        frozenset(insecure),
        live_restore=live_restore,
        cgroup_parent=cgroup_parent,
        tls=tls,
        network=_network_config(bridge, pools, dns, ip_masq, ip_forward, mtu),
    )
    try:
        asyncio.run(d.run())
    except ValueError as e:  # a path or address the kernel will not take
        raise OrchestrError(str(e)) from None


def _network_config(
    bridge: str,
    pools: tuple[str, ...],
    dns: tuple[str, ...],
    ip_masq: bool,
    ip_forward: bool,
    mtu: int,
) -> NetworkConfig:
    from agent.network.dns import parse_upstream
    from agent.network.ipam import DEFAULT_POOLS, IPAMError, parse_pool

    if bridge not in ("", "none"):
        raise OrchestrError(f"--bridge {bridge}: only `none` is supported (no default bridge)")
    try:
        parsed = tuple(parse_pool(p) for p in pools) or DEFAULT_POOLS
        for server in dns:
            parse_upstream(server)
    except (IPAMError, ValueError) as e:
        raise OrchestrError(str(e)) from None
    return NetworkConfig(
        pools=parsed,
        bridge=bridge != "none",
        ip_masq=ip_masq,
        ip_forward=ip_forward,
        dns=dns,
        mtu=mtu,
    )

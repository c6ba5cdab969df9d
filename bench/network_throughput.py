"""TCP throughput through orchestr's bridge networking, beside the bare kernel and a proxy.

    .venv/bin/python bench/network_throughput.py [-n RUNS] [--seconds S]   # as root

Each figure is the mean of RUNS runs of `iperf3 -c ADDR -t S -J` (the host's iperf3,
end.sum_received.bits_per_second), client and server each in the network namespace of
its row. Every link, address, route and nftables rule the bench makes lives in network
namespaces it makes itself (`ip netns add ob-PID-…`); nothing is changed in the root
namespace. Namespaces are entered with `nsenter --net=…` only.

The bare kernel (the ceiling), in namespaces ob-PID-kh ("host"), ob-PID-k1, ob-PID-k2:

- container to container: k1 and k2 on one Linux bridge of kh (a veth pair each,
  10.211.0.0/24), iperf3 from k2 to k1;
- host to container through a DNAT written by hand: in kh, one table of our own
  (`table ip ob_bench`) whose output chain DNATs port 15201 of 10.211.0.1 (the bridge's
  address) and of 127.0.0.1 to 10.211.0.2:5201 (k1); for 127.0.0.1 the bridge also has
  route_localnet on and the table a masquerade of 127.0.0.0/8 leaving it, as orchestr's
  table does;
- the same host to container path through a Python asyncio proxy (a small one, the
  `--serve-proxy` mode of this file, in its own process) on 127.0.0.1:15202.

orchestr: its own daemon (data root, exec root, socket in a temporary directory; cgroup
parent /orchestr-bench-net; `--ip-masq=false --dns 127.0.0.1`) runs in the namespace
ob-PID-d, so its bridges, veths and nftables table are made there. The busybox root
filesystem of agent.images.busybox is imported as `busybox`. Then:

- container to container: `srv` and `cli` (`busybox sleep 600`) on a user-defined
  bridge network `n1`, iperf3 run in their network namespaces (EXEC_ROOT/netns/ID);
- host to container through a published port: `pub` with `-p 15201:5201` on the
  default bridge, iperf3 server in its namespace, client in the daemon's namespace to
  127.0.0.1:15201 and to the bridge's gateway address;
- the asyncio proxy again, in the daemon's namespace, forwarding 127.0.0.1:15202 to
  pub's address.

No Docker engine runs on these machines (MACHINE-NOTES.md: its proxy and IPVS paths do
not work here either), so the figures the issue quotes are printed for reference.
Everything is removed at the end, also on failure or Ctrl-C: iperf3 servers and
proxies (by pid), the daemon (SIGTERM: it stops the containers), the cgroups, the
mounts under the work directory, the namespaces and the temporary directory.
Needs root, iperf3, nft and the docker CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cleanup import remove_cgroups, stop_daemon, unmount_under

ROOT = Path(__file__).resolve().parents[1]
ORCHESTR = str(Path(sys.executable).parent / "orchestr")
CGROUP_PARENT = "/orchestr-bench-net"
NETNS_DIR = "/run/netns"
SERVER_PORT = 5201
PUBLISHED_PORT = 15201
PROXY_PORT = 15202
SUBNET = "10.211.0"  # the bare-kernel bridge: .1 the bridge, .2 k1, .3 k2
# What the issue quotes (Gbit/s, measured on this machine kind earlier).
ISSUE = [
    ("issue: bare bridge", 14.6),
    ("issue: iptables DNAT", 12.0),
    ("issue: Python asyncio proxy", 2.6),
]


def run(*cmd: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, **kw)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def nsenter(netns: str, *cmd: str) -> list[str]:
    return ["nsenter", f"--net={netns}", *cmd]


# -- the userland proxy (runs as `network_throughput.py --serve-proxy LISTEN TARGET`)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def _serve_proxy(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            t_reader, t_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, t_writer), _pipe(t_reader, writer))
        t_writer.close()
        writer.close()

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def serve_proxy(listen: str, target: str) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_proxy(_address(listen), _address(target)))
    return 0


# -- the bench


class Bench:
    def __init__(self, work: Path, runs: int, seconds: int) -> None:
        self.work = work
        self.runs = runs
        self.seconds = seconds
        self.tag = f"ob-{os.getpid()}"
        self.namespaces: list[str] = []  # names under /run/netns we made
        # `ip netns add` makes /run/netns (a mount of itself) when it is not there.
        self.made_netns_dir = not os.path.exists(NETNS_DIR)
        self.made_netns_mount = not os.path.ismount(NETNS_DIR)
        self.children: list[subprocess.Popen[Any]] = []  # iperf3 servers, proxies
        self.socket = str(work / "d.sock")
        self.host = f"unix://{self.socket}"
        self.data_root = work / "data"
        self.exec_root = work / "exec"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "DOCKER_CONFIG": str(work / "docker-config"),
            "ORCHESTR_NO_AUTOSTART": "1",
        }

    # -- namespaces and processes

    def netns(self, suffix: str) -> str:
        name = f"{self.tag}-{suffix}"
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        path = f"{NETNS_DIR}/{name}"
        run(*nsenter(path, "ip", "link", "set", "lo", "up"))
        return path

    def spawn(self, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.children:
            self.children.remove(proc)

    # -- measurement

    def iperf3(
        self, server_ns: str, client_ns: str, addr: str, port: int = SERVER_PORT
    ) -> list[float]:
        """Gbit/s of RUNS iperf3 runs from client_ns to addr:port; the server listens on
        SERVER_PORT in server_ns."""
        server = self.spawn(
            nsenter(server_ns, "iperf3", "-s", "-p", str(SERVER_PORT)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(server_ns, SERVER_PORT, server)
            out = []
            for _ in range(self.runs):
                cmd = nsenter(client_ns, "iperf3", "-c", addr, "-p", str(port))
                cmd += ["-t", str(self.seconds), "-J"]
                done = subprocess.run(
                    cmd, text=True, capture_output=True, timeout=self.seconds + 30
                )
                try:
                    result = json.loads(done.stdout)
                except ValueError:
                    raise RuntimeError(f"iperf3 to {addr}:{port}: {done.stderr.strip()}") from None
                if "error" in result:
                    raise RuntimeError(f"iperf3 to {addr}:{port}: {result['error']}")
                out.append(result["end"]["sum_received"]["bits_per_second"] / 1e9)
            return out
        finally:
            self.stop(server)

    def through_proxy(self, host_ns: str, server_ns: str, target: str) -> list[float]:
        proxy = self.spawn(
            nsenter(host_ns, sys.executable, "-I", "-S", __file__, "--serve-proxy",
                    f"127.0.0.1:{PROXY_PORT}", f"{target}:{SERVER_PORT}"),
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proxy.stdout is not None
            if proxy.stdout.readline().strip() != "ready":
                raise RuntimeError("the asyncio proxy did not start")
            return self.iperf3(server_ns, host_ns, "127.0.0.1", PROXY_PORT)
        finally:
            self.stop(proxy)

    # -- the bare kernel

    def bare(self, rows: dict[str, list[float]]) -> None:
        kh = self.netns("kh")
        k1 = self.netns("k1")
        k2 = self.netns("k2")
        in_kh = ["nsenter", f"--net={kh}"]
        run(*in_kh, "ip", "link", "add", "ob-br", "type", "bridge")
        run(*in_kh, "ip", "addr", "add", f"{SUBNET}.1/24", "dev", "ob-br")
        run(*in_kh, "ip", "link", "set", "ob-br", "up")
        for i, ns in ((1, k1), (2, k2)):
            peer = f"ob-v{i}"
            run(*in_kh, "ip", "link", "add", peer, "type", "veth", "peer", "name", "eth0",
                "netns", os.path.basename(ns))  # fmt: skip
            run(*in_kh, "ip", "link", "set", peer, "master", "ob-br", "up")
            run(*nsenter(ns, "ip", "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0"))
            run(*nsenter(ns, "ip", "link", "set", "eth0", "up"))
            run(*nsenter(ns, "ip", "route", "add", "default", "via", f"{SUBNET}.1"))
        run(*in_kh, "sysctl", "-qw", "net.ipv4.conf.ob-br.route_localnet=1")
        ruleset = f"""table ip ob_bench {{
    chain output {{
        type nat hook output priority -100; policy accept;
        ip daddr {{ {SUBNET}.1, 127.0.0.1 }} tcp dport {PUBLISHED_PORT} \
dnat to {SUBNET}.2:{SERVER_PORT}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "ob-br" ip saddr 127.0.0.0/8 masquerade
    }}
}}
"""
        run(*in_kh, "nft", "-f", "-", input=ruleset)
        k1_ip = f"{SUBNET}.2"
        print("bench: bare kernel rows", file=sys.stderr)
        rows["bare kernel: container -> container, one bridge"] = self.iperf3(k1, k2, k1_ip)
        rows[f"bare kernel: host -> nft DNAT -> container ({SUBNET}.1)"] = self.iperf3(
            k1, kh, f"{SUBNET}.1", PUBLISHED_PORT
        )
        rows["bare kernel: host -> nft DNAT -> container (127.0.0.1)"] = self.iperf3(
            k1, kh, "127.0.0.1", PUBLISHED_PORT
        )
        rows["bare kernel: host -> asyncio proxy -> container"] = self.through_proxy(kh, k1, k1_ip)

    # -- orchestr

    def docker(self, *args: str) -> str:
        return run("docker", "-H", self.host, *args, env=self.env).stdout.strip()

    def start_daemon(self, netns: str) -> None:
        os.makedirs(self.env["DOCKER_CONFIG"], exist_ok=True)
        log = open(self.work / "daemon.log", "wb")  # noqa: SIM115 (the daemon keeps it)
        self.daemon = subprocess.Popen(
            nsenter(netns, ORCHESTR, "daemon", "--data-root", str(self.data_root),
                    "--exec-root", str(self.exec_root), "--host", self.host,
                    "--cgroup-parent", CGROUP_PARENT, "--ip-masq=false", "--dns", "127.0.0.1"),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
            start_new_session=True,  # Ctrl-C reaches us; we stop it with SIGTERM
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.daemon_log()}")
            if os.path.exists(self.socket):
                done = subprocess.run(
                    ["docker", "-H", self.host, "version"], env=self.env, capture_output=True
                )
                if done.returncode == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the daemon did not answer in 60 s:\n{self.daemon_log()}")

    def daemon_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.work / "daemon.log").read_text()[-3000:]
        return ""

    def container_netns(self, name: str) -> tuple[str, dict[str, Any]]:
        info = json.loads(self.docker("inspect", name))[0]
        path = str(self.exec_root / "netns" / info["Id"])
        if not os.path.exists(path):
            raise RuntimeError(f"{name}: no network namespace file {path}")
        return path, info

    def orchestr(self, rows: dict[str, list[float]]) -> None:
        sys.path.insert(0, str(ROOT))
        from agent.images.busybox import make_rootfs

        d = self.netns("d")
        self.start_daemon(d)
        make_rootfs(str(self.work / "rootfs"))
        run(ORCHESTR, "-H", self.host, "image", "import", str(self.work / "rootfs"), "busybox",
            env=self.env)  # fmt: skip
        self.docker("network", "create", "n1")
        for name in ("srv", "cli"):
            self.docker("run", "-d", "--network", "n1", "--name", name, "busybox", "sleep", "600")
        self.docker("run", "-d", "-p", f"{PUBLISHED_PORT}:{SERVER_PORT}", "--name", "pub",
                    "busybox", "sleep", "600")  # fmt: skip
        srv, srv_info = self.container_netns("srv")
        cli, _ = self.container_netns("cli")
        pub, pub_info = self.container_netns("pub")
        srv_ip = srv_info["NetworkSettings"]["Networks"]["n1"]["IPAddress"]
        pub_ip = pub_info["NetworkSettings"]["IPAddress"]
        gateway = pub_info["NetworkSettings"]["Gateway"]
        print("bench: orchestr rows", file=sys.stderr)
        rows["orchestr: container -> container, network n1"] = self.iperf3(srv, cli, srv_ip)
        rows[f"orchestr: host -> published port ({gateway})"] = self.iperf3(
            pub, d, gateway, PUBLISHED_PORT
        )
        rows["orchestr: host -> published port (127.0.0.1)"] = self.iperf3(
            pub, d, "127.0.0.1", PUBLISHED_PORT
        )
        rows["orchestr: host -> asyncio proxy -> container"] = self.through_proxy(d, pub, pub_ip)

    # -- tear-down (also after a failure or Ctrl-C)

    def cleanup(self) -> None:
        for proc in list(self.children):
            with contextlib.suppress(Exception):
                self.stop(proc)
        if self.daemon is not None:
            stop_daemon(self.daemon, self.exec_root, CGROUP_PARENT)
        remove_cgroups(CGROUP_PARENT)
        unmount_under(self.work)
        for name in reversed(self.namespaces):
            done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"bench: ip netns del {name}: {done.stderr.strip()}", file=sys.stderr)
        if os.path.isdir(NETNS_DIR) and not os.listdir(NETNS_DIR):
            if self.made_netns_mount and os.path.ismount(NETNS_DIR):
                subprocess.run(["umount", NETNS_DIR], capture_output=True)
            if self.made_netns_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(NETNS_DIR)


def wait_listening(netns: str, port: int, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the iperf3 server exited")
        out = run(*nsenter(netns, "ss", "-Hltn", f"sport = :{port}")).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"the iperf3 server did not listen on port {port}")


def report(
    rows: dict[str, list[float]],
    runs: int,
    seconds: int,
    load: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    ceiling = statistics.mean(next(iter(rows.values()))) if rows else 0.0
    print(f"\nTCP throughput, Gbit/s: mean ± sd of {runs} runs of `iperf3 -t {seconds}`")
    print(f"load average {load[0]:.2f} before, {load_after[0]:.2f} after, {os.cpu_count()} CPUs")
    print(f"  {'what':58} {'Gbit/s':>14} {'vs bare bridge':>15}")
    for name, values in rows.items():
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        ratio = f"{mean / ceiling:.2f}x" if ceiling else "-"
        print(f"  {name:58} {mean:6.2f} ± {sd:5.2f} {ratio:>15}")
    for name, value in ISSUE:
        print(f"  {name + ' (not measurable here)':58} {value:6.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=3, help="iperf3 runs per row (default 3)")
    ap.add_argument("--seconds", type=int, default=3, help="seconds per iperf3 run (default 3)")
    ap.add_argument("--skip-orchestr", action="store_true", help="only the bare-kernel rows")
    ap.add_argument("--serve-proxy", nargs=2, metavar=("LISTEN", "TARGET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_proxy:
        return serve_proxy(*args.serve_proxy)
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    for tool in ("iperf3", "nft", "nsenter", "ss", "docker"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 1
    # SIGTERM (and SIGHUP) tear down like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-net-"))
    bench = Bench(work, args.runs, args.seconds)
    rows: dict[str, list[float]] = {}
    failed = ""
    load = os.getloadavg()
    try:
        bench.bare(rows)
        if not args.skip_orchestr:
            bench.orchestr(rows)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        failed = str(e)
    finally:
        load_after = os.getloadavg()
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, args.runs, args.seconds, load, load_after)
    if failed:
        print(f"\nbench: stopped early: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`orchestr up -d` and `orchestr down` of generated 10- and 30-service stacks.

    .venv/bin/python bench/stack_up.py [-n RUNS] [--services 10,30] [--profile]

Starts its own `orchestr daemon` inside a network namespace of the bench's own (data
root, exec root, socket and cgroup parent in a temporary directory), imports busybox,
and for each stack size times, RUNS times: `orchestr up -d` of N services (busybox
`sleep`, one project network, no ports) from nothing; `up -d` again with nothing
changed; and `down -t 0`. Each is the whole CLI command, start-up included, as a user
runs it. Medians with min-max.

When dockerd and docker-compose (Debian's docker.io and docker-compose) are both on
the machine, the same stacks are timed with docker-compose against a dockerd of the
bench's own, started in the same network namespace as MACHINE-NOTES.md says (no
iptables, no forwarding, its own data and exec roots), and printed beside. The bench
installs neither. Without them — the usual case here: the docker CLI only — the
figures of issue 6, measured elsewhere on the same kind of machine, are printed beside
ours: docker-compose brings up 10 services in 2.1-3.2 s and 30 in 5.4-7.7 s. The goal
is three times faster.

`--profile` adds, once per size, where the time of one `up -d` goes: the CLI's
start-up (`orchestr --help`), loading the stack (`orchestr config -q`), and the rest
(talking to the daemon).

Everything is removed at the end, also on failure or Ctrl-C. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cleanup import remove_cgroups, stop_daemon, unmount_under  # noqa: E402

ORCHESTR = str(Path(sys.executable).parent / "orchestr")
CGROUP_PARENT = "/orchestr-bench-stack"
DOCKER_CGROUP_PARENT = "/orchestr-bench-stack-docker"
COMPOSE_FIGURES = {10: (2.1, 3.2), 30: (5.4, 7.7)}  # docker-compose on dockerd, issue 6
GOAL = 3.0  # times faster than docker-compose


def stack(n: int) -> str:
    """N busybox services on the project's default network (the project name is -p)."""
    lines = ["services:"]
    for i in range(n):
        lines += [
            f"  s{i:02d}:",
            "    image: busybox:latest",
            "    command: [sleep, '600']",
        ]
    return "\n".join(lines) + "\n"


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.netns = f"ob-stack-{os.getpid()}"
        self.socket = work / "d.sock"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "ORCHESTR_HOST": f"unix://{self.socket}",
            "ORCHESTR_NO_AUTOSTART": "1",
            "ORCHESTR_CACHE_DIR": str(work / "cache"),
            "DOCKER_HOST": f"unix://{self.socket}",  # the docker CLI, for checks
            "DOCKER_CONFIG": str(work / "docker-config"),
        }
        self.docker_env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{work / 'docker.sock'}",
            "DOCKER_CONFIG": str(work / "docker-config"),
            "COMPOSE_INTERACTIVE_NO_CLI": "1",
        }

    def in_ns(self, *cmd: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", *cmd]

    def start(self) -> None:
        (self.work / "docker-config").mkdir(exist_ok=True)
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [sys.executable, "-m", "agent.images.busybox", "--image", "--data-root",
             str(self.work / "data")],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        log = (self.work / "daemon.log").open("ab")
        self.daemon = subprocess.Popen(
            self.in_ns(
                ORCHESTR, "daemon", "--host", f"unix://{self.socket}",
                "--data-root", str(self.work / "data"), "--exec-root", str(self.work / "exec"),
                "--cgroup-parent", CGROUP_PARENT, "--ip-masq=false",
            ),
            stdout=log, stderr=log,
        )  # fmt: skip
        wait_for(self.socket, self.daemon, self.work / "daemon.log")

    def timed(self, *args: str) -> float:
        start = time.perf_counter()
        subprocess.run(
            self.in_ns(ORCHESTR, *args),
            env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        return time.perf_counter() - start

    # -- the peer, when the machine has it ---------------------------------------------

    def start_dockerd(self) -> None:
        """A dockerd of the bench's own in its namespace, with busybox imported."""
        sock = self.work / "docker.sock"
        (self.work / "docker-config").mkdir(exist_ok=True)
        log = (self.work / "dockerd.log").open("ab")
        self.dockerd = subprocess.Popen(
            self.in_ns(
                "dockerd", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none", "--data-root", str(self.work / "docker-data"),
                "--exec-root", str(self.work / "docker-exec"), "-H", f"unix://{sock}",
                "-p", str(self.work / "dockerd.pid"), "--cgroup-parent", DOCKER_CGROUP_PARENT,
            ),
            stdout=log, stderr=log,
        )  # fmt: skip
        wait_for(sock, self.dockerd, self.work / "dockerd.log", timeout=60)
        tar = self.work / "busybox.tar"
        rootfs = self.work / "busybox-rootfs"
        subprocess.run(
            [sys.executable, "-m", "agent.images.busybox", str(rootfs)],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        subprocess.run(
            ["docker", "import", str(tar), "busybox:latest"],
            env=self.docker_env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def timed_compose(self, *args: str) -> float:
        """docker-compose (v1) takes -f and -p before the command: moved there."""
        cut = args.index("-f")
        start = time.perf_counter()
        subprocess.run(
            self.in_ns("docker-compose", *args[cut:], *args[:cut]),
            env=self.docker_env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        return time.perf_counter() - start

    def running(self, env: dict[str, str]) -> int:
        """How many containers run on the daemon `env` points the docker CLI at."""
        out = subprocess.run(
            ["docker", "ps", "-a", "--format", "{{.Names}} {{.Status}}"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        up = [line for line in out.splitlines() if " Up " in f" {line} "]
        if len(up) != len(out.splitlines()):
            print(f"bench: not running on {env['DOCKER_HOST']}:\n{out}", file=sys.stderr)
        return len(up)

    def cleanup(self) -> None:
        if self.dockerd is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                ids = subprocess.run(
                    ["docker", "ps", "-aq"], env=self.docker_env, capture_output=True,
                    text=True, timeout=30,
                ).stdout.split()  # fmt: skip
                if ids:
                    subprocess.run(
                        ["docker", "rm", "-f", *ids], env=self.docker_env,
                        capture_output=True, timeout=60,
                    )  # fmt: skip
            if self.dockerd.poll() is None:
                self.dockerd.send_signal(signal.SIGTERM)
                try:
                    self.dockerd.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.dockerd.kill()
                    self.dockerd.wait()
        if self.daemon is not None:
            stop_daemon(self.daemon, self.work / "exec", CGROUP_PARENT)
        remove_cgroups(CGROUP_PARENT)
        remove_cgroups(DOCKER_CGROUP_PARENT)
        unmount_under(self.work)
        subprocess.run(["ip", "netns", "delete", self.netns], stderr=subprocess.DEVNULL)


def wait_for(sock: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"bench: the daemon did not start; see {log}")
        time.sleep(0.05)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s ({min(values):.2f}-{max(values):.2f})"


def measure(
    run: Callable[..., float],
    path: Path,
    project: str,
    runs: int,
    running: Callable[[], int] | None = None,
    n: int = 0,
) -> dict[str, list[float]]:
    """up -d from nothing, up -d again (no change), down -t 0; RUNS times, after a warm-up.
    `run` is Bench.timed (orchestr) or Bench.timed_compose (docker-compose)."""
    f = ("-f", str(path), "-p", project)
    figures: dict[str, list[float]] = {"up": [], "up again": [], "down": []}
    run("up", "-d", *f)  # warm-up: caches, the first network
    if running is not None and running() != n:
        raise SystemExit(f"bench: {project}: {running()} containers running, not {n}")
    run("down", "-t", "0", *f)
    for _ in range(runs):
        figures["up"].append(run("up", "-d", *f))
        figures["up again"].append(run("up", "-d", *f))
        figures["down"].append(run("down", "-t", "0", *f))
    return figures


def profile(bench: Bench, path: Path, project: str) -> dict[str, float]:
    """Where the time of one `up -d` goes: medians of 5 of each step, each step the
    one before plus something: the interpreter and the CLI's entry (`--version`), the
    Compose CLI's imports and the loader (`config -q`), the daemon's work (`up -d`)."""
    f = ("-f", str(path), "-p", project)

    def median(*args: str) -> float:
        return statistics.median(bench.timed(*args) for _ in range(5))

    entry = median("--version")
    load = median("config", "-q", *f)
    ups = []
    for _ in range(5):
        ups.append(bench.timed("up", "-d", *f))
        bench.timed("down", "-t", "0", *f)
    up = statistics.median(ups)
    return {
        "interpreter + entry": entry,
        "+ imports + load": load - entry,
        "+ the daemon": up - load,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per figure (default 5)")
    ap.add_argument("--services", default="10,30", help="stack sizes (default 10,30)")
    ap.add_argument("--profile", action="store_true", help="where the time of `up` goes")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    peer = bool(shutil.which("dockerd") and shutil.which("docker-compose"))
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-stack-"))
    bench = Bench(work)
    sizes = sorted(int(x) for x in args.services.split(",") if x)
    ours: dict[int, dict[str, list[float]]] = {}
    theirs: dict[int, dict[str, list[float]]] = {}
    profiles: dict[int, dict[str, float]] = {}
    try:
        bench.start()
        if peer:
            bench.start_dockerd()
        for n in sizes:
            path = work / f"stack{n}.yaml"
            path.write_text(stack(n))
            ours[n] = measure(
                bench.timed, path, f"bench{n}", args.runs, partial(bench.running, bench.env), n
            )
            if args.profile:
                profiles[n] = profile(bench, path, f"bench{n}")
            if peer:
                theirs[n] = measure(
                    bench.timed_compose, path, f"bench{n}", args.runs,
                    partial(bench.running, bench.docker_env), n,
                )  # fmt: skip
    except subprocess.CalledProcessError as e:
        print(f"bench: {e.cmd[2:]} failed: {(e.stderr or b'').decode()[-2000:]}", file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"up -d / down of N busybox services, one network ({args.runs} runs; load {load:.1f})")
    for n in sizes:
        figures = ours[n]
        print(f"  {n:3d} services   orchestr up -d {summary(figures['up'])}")
        print(f"                 up -d again (no change) {summary(figures['up again'])}")
        print(f"                 down -t 0 {summary(figures['down'])}")
        median = statistics.median(figures["up"])
        if n in theirs:
            print(f"                 docker-compose up -d {summary(theirs[n]['up'])}")
            print(f"                 docker-compose up -d again {summary(theirs[n]['up again'])}")
            print(f"                 docker-compose down {summary(theirs[n]['down'])}")
            ratio = statistics.median(theirs[n]["up"]) / median
            print(f"                 {ratio:.1f}x faster than docker-compose here (goal {GOAL:g}x)")
        if n in COMPOSE_FIGURES:
            low, high = COMPOSE_FIGURES[n]
            print(
                f"                 issue 6, docker-compose up -d (measured elsewhere): "
                f"{low}-{high} s -> {low / median:.1f}x-{high / median:.1f}x faster "
                f"(goal {GOAL:g}x)"
            )
        if n in profiles:
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in profiles[n].items())
            print(f"                 one up -d: {steps}")
    if not peer:
        print("  (no dockerd + docker-compose on this machine: the peer is not measured)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

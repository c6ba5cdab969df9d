"""`orchestr up -d` and `orchestr down` of generated 10- and 30-service stacks.

    .venv/bin/python bench/stack_up.py [-n RUNS] [--services 10,30]

Starts its own `orchestr daemon` inside a network namespace of the bench's own (data
root, exec root, socket and cgroup parent in a temporary directory), imports busybox,
and for each stack size times, RUNS times: `orchestr up -d` of N services (busybox
`sleep`, one project network, no ports) from nothing; `up -d` again with nothing
changed; and `down -t 0`. Each is the whole CLI command, start-up included, as a user
runs it. Medians with min-max.

No Docker engine runs on these machines (the docker CLI only), so docker-compose on
dockerd is not measured here; the figures of issue 6, measured elsewhere on the same
kind of machine, are printed beside ours: docker-compose brings up 10 services in
2.1-3.2 s and 30 in 5.4-7.7 s. The goal is three times faster. Everything is removed
at the end, also on failure or Ctrl-C. Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cleanup import remove_cgroups, stop_daemon, unmount_under  # noqa: E402

ORCHESTR = str(Path(sys.executable).parent / "orchestr")
CGROUP_PARENT = "/orchestr-bench-stack"
COMPOSE_FIGURES = {10: (2.1, 3.2), 30: (5.4, 7.7)}  # docker-compose on dockerd, issue 6


def stack(n: int) -> str:
    lines = [f"name: bench{n}", "services:"]
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
        self.env = {
            **os.environ,
            "ORCHESTR_HOST": f"unix://{self.socket}",
            "ORCHESTR_NO_AUTOSTART": "1",
            "ORCHESTR_CACHE_DIR": str(work / "cache"),
        }

    def start(self) -> None:
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [sys.executable, "-m", "agent.images.busybox", "--image", "--data-root",
             str(self.work / "data")],
            check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        log = (self.work / "daemon.log").open("ab")
        self.daemon = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", ORCHESTR, "daemon",
             "--host", f"unix://{self.socket}", "--data-root", str(self.work / "data"),
             "--exec-root", str(self.work / "exec"), "--cgroup-parent", CGROUP_PARENT,
             "--ip-masq=false"],
            stdout=log, stderr=log,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not self.socket.exists():
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                raise SystemExit(f"the daemon did not start; see {self.work / 'daemon.log'}")
            time.sleep(0.05)

    def timed(self, *args: str) -> float:
        start = time.perf_counter()
        subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.netns}", ORCHESTR, *args],
            env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return time.perf_counter() - start

    def cleanup(self) -> None:
        if self.daemon is not None:
            stop_daemon(self.daemon, self.work / "exec", CGROUP_PARENT)
        remove_cgroups(CGROUP_PARENT)
        unmount_under(self.work)
        subprocess.run(["ip", "netns", "delete", self.netns], stderr=subprocess.DEVNULL)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=5, help="runs per figure (default 5)")
    ap.add_argument("--services", default="10,30", help="stack sizes (default 10,30)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-stack-"))
    bench = Bench(work)
    results: dict[int, dict[str, list[float]]] = {}
    try:
        bench.start()
        for n in sorted(int(x) for x in args.services.split(",") if x):
            path = work / f"stack{n}.yaml"
            path.write_text(stack(n))
            figures: dict[str, list[float]] = {"up": [], "up again": [], "down": []}
            bench.timed("up", "-d", "-f", str(path))  # warm-up: caches, first network
            bench.timed("down", "-t", "0", "-f", str(path))
            for _ in range(args.runs):
                figures["up"].append(bench.timed("up", "-d", "-f", str(path)))
                figures["up again"].append(bench.timed("up", "-d", "-f", str(path)))
                figures["down"].append(bench.timed("down", "-t", "0", "-f", str(path)))
            results[n] = figures
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(f"orchestr up -d / down of N busybox services ({args.runs} runs; load {load:.1f})")
    for n, figures in results.items():
        low, high = COMPOSE_FIGURES.get(n, (None, None))
        peer = f"docker-compose: {low}-{high} s (issue 6)" if low else ""
        print(f"  {n:3d} services  up {summary(figures['up'])}   {peer}")
        print(f"               up again (no change) {summary(figures['up again'])}")
        print(f"               down {summary(figures['down'])}")
        if low:
            median = statistics.median(figures["up"])
            print(f"               {(low + high) / 2 / median:.1f}x faster than docker-compose's"
                  " midpoint")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

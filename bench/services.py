"""A 50-replica service: time to converge, and a full rolling update of it.

    .venv/bin/python bench/services.py [-n RUNS] [--replicas 50] [--parallelism 5]

Starts its own `orchestr daemon` in a network namespace of the bench's own (as
bench/stack_up.py does), and times with the docker CLI against it, RUNS times:

- converge: from `docker service create --detach --replicas N` until `docker service ls`
  shows N/N running;
- update: from `docker service update --detach --image busybox:v2` (parallelism P,
  delay 0, monitor 5 s, stop-first) until the service's UpdateStatus is `completed`
  (the last batch's monitor window included, as Swarm counts it).

The tasks run `sleep` under `--init`, so a stop is a SIGTERM that ends them at once
rather than a 10 s grace period.

Then, when dockerd is installed (Debian's docker.io), the same commands are timed
against Docker Swarm: orchestr's daemon is stopped first (the two never share the
CPUs), a dockerd of the bench's own is started in the same namespace (no iptables, its
own data and exec roots, as stack_up's), busybox is imported into it, and it is made a
one-node swarm advertising 127.0.0.1 (the namespace has only `lo`; dockerd accepts it).
This kernel has no IPVS, but these services attach to no network and publish no port,
so their tasks run; each task's pull of busybox fails at once (no route, no registry)
and the local image is used, as Swarm does when a registry is down. If Swarm cannot be
run, the bench says why in one line and prints issue 7's figures (measured elsewhere
on the same kind of machine: 11.8 s to converge, 27.3 s to roll), labelled as quoted.
The goals: under 4 s and under 15 s. Everything is removed at the end (the swarm left,
the containers, both daemons, their data, mounts, cgroups and the namespace). Needs
root.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from cleanup import stop_daemon  # noqa: E402
from stack_up import CGROUP_PARENT, Bench  # noqa: E402

SWARM_QUOTED = {"converge": 11.8, "update": 27.3}  # issue 7, one-node swarm on dockerd
GOALS = {"converge": 4.0, "update": 15.0}
ADVERTISE = "127.0.0.1"

Docker = Callable[..., str]


class ServiceBench(Bench):
    swarm = False

    def docker(self, env: dict[str, str], *args: str) -> str:
        done = subprocess.run(self.in_ns("docker", *args), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench: docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def orchestr(self, *args: str) -> str:
        return self.docker(self.env, *args)

    def dockerd_cli(self, *args: str) -> str:
        return self.docker(self.docker_env, *args)

    def stop_orchestr(self) -> None:
        if self.daemon is not None:
            stop_daemon(self.daemon, self.work / "exec", CGROUP_PARENT)
            self.daemon = None

    def start_swarm(self) -> str:
        """A one-node swarm on a dockerd of the bench's own; '' or why there is none."""
        if not shutil.which("dockerd"):
            return "dockerd is not installed (Debian's docker.io)"
        try:
            self.start_dockerd()
        except SystemExit:
            log = (self.work / "dockerd.log").read_text(errors="replace").splitlines()
            return f"dockerd did not start: {(log or ['no log'])[-1]}"
        except subprocess.CalledProcessError as e:
            return f"importing busybox into dockerd: {' '.join(map(str, e.cmd))} failed"
        done = subprocess.run(
            self.in_ns("docker", "swarm", "init", "--advertise-addr", ADVERTISE),
            env=self.docker_env, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] or ["no message"]
            return f"docker swarm init --advertise-addr {ADVERTISE}: {why[0]}"
        self.swarm = True
        return ""

    def cleanup(self) -> None:
        """Leave the swarm first: its agent would restart the containers removed."""
        if self.swarm:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["docker", "swarm", "leave", "--force"],
                    env=self.docker_env, capture_output=True, timeout=60,
                )  # fmt: skip
            self.swarm = False
        super().cleanup()


def until(what: str, check: Callable[[], bool], timeout: float = 300) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter() - start


def measure(docker: Docker, runs: int, n: int, parallelism: int) -> dict[str, list[float]]:
    """RUNS times: create the service and wait for n/n, roll it and wait for completed,
    remove it and wait for its containers to go. The same CLI commands for both peers."""

    def replicas(name: str) -> str:
        return docker(
            "service", "ls", "--filter", f"name={name}", "--format", "{{.Replicas}}"
        ).strip()  # fmt: skip

    def update_state(name: str) -> str:
        doc = json.loads(docker("service", "inspect", name))[0]
        return str((doc.get("UpdateStatus") or {}).get("State", ""))

    docker("tag", "busybox:latest", "busybox:v2")
    figures: dict[str, list[float]] = {"converge": [], "update": []}
    for run in range(runs):
        name = f"s{run}"
        start = time.perf_counter()
        docker(
            "service", "create", "--detach", "--name", name, "--replicas", str(n), "--init",
            "--update-parallelism", str(parallelism), "--update-delay", "0s",
            "--update-monitor", "5s", "--update-order", "stop-first",
            "busybox:latest", "sleep", "3600",
        )  # fmt: skip
        until("convergence", lambda: replicas(name) == f"{n}/{n}")  # noqa: B023
        figures["converge"].append(time.perf_counter() - start)
        start = time.perf_counter()
        docker("service", "update", "--detach", "--image", "busybox:v2", name)
        until("the update", lambda: update_state(name) == "completed")  # noqa: B023
        figures["update"].append(time.perf_counter() - start)
        docker("service", "rm", name)
        until("removal", lambda: docker("ps", "-aq").strip() == "", timeout=120)
    return figures


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):5.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=50)
    ap.add_argument("--parallelism", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-services-"))
    bench = ServiceBench(work)
    n = args.replicas
    load_before = os.getloadavg()[0]
    swarm: dict[str, list[float]] = {}
    version = why_not = ""
    try:
        bench.start()
        ours = measure(bench.orchestr, args.runs, n, args.parallelism)
        bench.stop_orchestr()
        why_not = bench.start_swarm()
        if not why_not:
            version = bench.dockerd_cli("version", "--format", "{{.Server.Version}}").strip()
            try:
                swarm = measure(bench.dockerd_cli, args.runs, n, args.parallelism)
            except SystemExit as e:
                why_not = f"it failed: {e}"
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"a {n}-replica service, parallelism {args.parallelism} ({args.runs} runs; "
        f"1-min load {load_before:.1f} before, {load:.1f} after)"
    )
    peer = f"Swarm (dockerd {version})" if swarm else "Swarm (issue 7, quoted)"
    print(f"  {'':9s} {'orchestr':21s} {peer:32s} goal")
    for key, values in ours.items():
        theirs = summary(swarm[key]) if swarm else f"{SWARM_QUOTED[key]:5.2f} s"
        print(f"  {key:9s} {summary(values):21s} {theirs:32s} < {GOALS[key]:g} s")
    if not swarm:
        print(f"  Swarm not measured here: {why_not}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

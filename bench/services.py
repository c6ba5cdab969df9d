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
rather than a 10 s grace period. Docker Swarm is not measured here (a one-node swarm
needs a dockerd of its own with an advertise address); issue 7's figures, measured on
the same kind of machine, are printed beside: 11.8 s to converge, 27.3 s to roll. The
goals: under 4 s and under 15 s. Everything is removed at the end. Needs root.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from stack_up import Bench  # noqa: E402

SWARM = {"converge": 11.8, "update": 27.3}  # issue 7, one-node swarm on dockerd
GOALS = {"converge": 4.0, "update": 15.0}


class ServiceBench(Bench):
    def docker(self, *args: str) -> str:
        done = subprocess.run(
            self.in_ns("docker", *args), env=self.env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"bench: docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def replicas(self, name: str) -> str:
        return self.docker(
            "service", "ls", "--filter", f"name={name}", "--format", "{{.Replicas}}"
        ).strip()

    def update_state(self, name: str) -> str:
        doc = json.loads(self.docker("service", "inspect", name))[0]
        return str((doc.get("UpdateStatus") or {}).get("State", ""))

    def until(self, what: str, check: object, timeout: float = 300) -> float:
        start = time.perf_counter()
        while not check():  # type: ignore[operator]
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"bench: timed out waiting for {what}")
            time.sleep(0.05)
        return time.perf_counter() - start


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
    figures: dict[str, list[float]] = {"converge": [], "update": []}
    try:
        bench.start()
        bench.docker("tag", "busybox:latest", "busybox:v2")
        for run in range(args.runs):
            name = f"s{run}"
            start = time.perf_counter()
            bench.docker(
                "service", "create", "--detach", "--name", name, "--replicas", str(n), "--init",
                "--update-parallelism", str(args.parallelism), "--update-delay", "0s",
                "--update-monitor", "5s", "--update-order", "stop-first",
                "busybox:latest", "sleep", "3600",
            )  # fmt: skip
            bench.until("convergence", lambda: bench.replicas(name) == f"{n}/{n}")  # noqa: B023
            figures["converge"].append(time.perf_counter() - start)
            start = time.perf_counter()
            bench.docker("service", "update", "--detach", "--image", "busybox:v2", name)
            bench.until("the update", lambda: bench.update_state(name) == "completed")  # noqa: B023
            figures["update"].append(time.perf_counter() - start)
            bench.docker("service", "rm", name)
            bench.until(
                "removal",
                lambda: bench.docker("ps", "-aq").strip() == "",
                timeout=120,
            )
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"a {n}-replica service, parallelism {args.parallelism} ({args.runs} runs; load {load:.1f})"
    )
    for key, values in figures.items():
        median = statistics.median(values)
        print(
            f"  {key:9s} {median:6.2f} s ({min(values):.2f}-{max(values):.2f})"
            f"   Swarm (issue 7): {SWARM[key]} s   goal < {GOALS[key]:g} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

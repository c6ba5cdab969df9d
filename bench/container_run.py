"""`run --rm busybox true` end to end, and the daemon's memory: orchestr beside podman.

    .venv/bin/python bench/container_run.py [-n RUNS] [--containers 10,50]

Starts its own `orchestr daemon` (data root, exec root, socket and cgroup parent
of its own, in a temporary directory), imports a busybox root filesystem as the
image `busybox`, saves it with `orchestr image save` and loads that archive into
a podman whose storage lives in the same temporary directory. Then:

- with hyperfine (warm-up 3, RUNS runs, no shell): `orchestr run --rm busybox
  true` (on the default bridge network: the daemon runs in a network namespace of
  the bench's own), the same with `--network none`; the docker CLI doing the same
  against orchestr's socket; `podman run
  --rm --network none busybox true` on the same image; and, to show what the
  CLI's start-up costs, the venv's `python -I -S -c pass` and `orchestr ps -q`
  (interpreter, imports and one request to the daemon);
- the in-process floor: the same API calls as `orchestr run --rm` (create,
  attach, wait, start; the daemon removes the container) made RUNS times
  through orchestr's own client in this process, timed call by call;
- VmRSS of the daemon and of the supervisor, fresh, idle after the runs above,
  and with N running containers (`orchestr run -d busybox sleep 300`, for each
  N of --containers), then after removing them; and the RSS of podman's conmon
  for one `podman run -d` (podman has no daemon; conmon is its per-container
  process).

No Docker engine runs on these machines, so dockerd is not measured; the
figures of issue 4 are quoted beside ours. Installs podman (Debian) if it is
missing. Everything is removed at the end, also on failure or Ctrl-C:
containers, mounts, cgroups, the daemon, the supervisor and podman's storage.
Needs root.
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
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cleanup import remove_cgroups, stop_daemon, unmount_under  # noqa: E402

from agent.images.busybox import make_rootfs  # noqa: E402
from orchestr.client import Client, hijack  # noqa: E402

PYTHON = sys.executable
ORCHESTR = str(Path(sys.executable).parent / "orchestr")
CGROUP_PARENT = "/orchestr-bench"
PODMAN_CGROUP_PARENT = "/orchestr-bench-podman"
# Issue 4's figures for the peers that cannot run here (ms; MiB).
ISSUE_DOCKER_MS = 250
ISSUE_PODMAN_MS = "220-260"
Row = tuple[str, float, float]


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.socket = str(work / "d.sock")
        self.host = f"unix://{self.socket}"
        self.data_root = work / "data"
        self.exec_root = work / "exec"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.netns = f"ob-run-{os.getpid()}"
        self.podman_base = [
            "podman",
            "--root", str(work / "podman"),
            "--runroot", str(work / "podman-run"),
            "--tmpdir", str(work / "podman-tmp"),
            "--network-config-dir", str(work / "podman-net"),
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--log-level", "error",
        ]  # fmt: skip
        # The default rlimits of podman (nofile 1048576, nproc 32768) are refused here:
        # root lacks CAP_SYS_RESOURCE (MACHINE-NOTES.md). `true` needs neither.
        self.podman_run = [
            "run", "--rm", "--network", "none", "--cgroup-parent", PODMAN_CGROUP_PARENT,
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        ]  # fmt: skip
        self.have_podman = False
        # Directories podman makes outside its --root (if they were not there before).
        self.podman_made = [
            p for p in ("/run/containers/networks", "/run/containers") if not os.path.exists(p)
        ]

    # -- set-up

    def orchestr(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ORCHESTR, "-H", self.host, *args], check=True, text=True, capture_output=True, **kw
        )

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.podman_base, *args], check=True, text=True, capture_output=True
        )

    def start_daemon(self) -> None:
        log = open(self.work / "daemon.log", "wb")  # noqa: SIM115 (the daemon keeps it)
        # In a network namespace of its own: the default bridge network (the one `run`
        # uses) is made there, not on this machine.
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        self.daemon = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", ORCHESTR, "daemon", "--ip-masq=false",
             "--data-root", str(self.data_root),
             "--exec-root", str(self.exec_root), "--host", self.host,
             "--cgroup-parent", CGROUP_PARENT],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,  # Ctrl-C reaches us; we stop it with SIGTERM
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise SystemExit(f"bench: the daemon exited:\n{self.daemon_log()}")
            if os.path.exists(self.socket):
                with contextlib.suppress(Exception), Client(self.host, timeout=2) as c:
                    c.request("GET", "/_ping")
                    return
            time.sleep(0.05)
        raise SystemExit(f"bench: the daemon did not answer in 30 s:\n{self.daemon_log()}")

    def daemon_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.work / "daemon.log").read_text()[-3000:]
        return ""

    def make_image(self) -> None:
        make_rootfs(str(self.work / "rootfs"))
        self.orchestr("image", "import", str(self.work / "rootfs"), "busybox")
        self.orchestr("image", "save", "-o", str(self.work / "busybox.tar"), "busybox")
        if self.have_podman:
            self.podman("load", "-i", str(self.work / "busybox.tar"))

    # -- measurements

    def hyperfine(self, runs: int) -> dict[str, tuple[float, float]]:
        podman = " ".join([*self.podman_base, *self.podman_run, "busybox", "true"])
        commands = {
            "python -I -S -c pass (the venv's)": f"{PYTHON} -I -S -c pass",
            "orchestr ps -q (CLI start-up + 1 request)": f"{ORCHESTR} -H {self.host} ps -q",
            "orchestr run --rm busybox true": f"{ORCHESTR} -H {self.host} run --rm busybox true",
            "orchestr run --rm --network none busybox true": (
                f"{ORCHESTR} -H {self.host} run --rm --network none busybox true"
            ),
            "docker CLI -> orchestr: run --rm busybox true": (
                f"docker -H {self.host} run --rm busybox true"
            ),
        }
        if self.have_podman:
            commands["podman run --rm busybox true"] = podman
        results: dict[str, tuple[float, float]] = {}
        for name, command in commands.items():
            out = self.work / "hyperfine.json"
            cmd = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--style", "none",
                   "--export-json", str(out), "-n", name, command]  # fmt: skip
            # A run that hangs (see docs/benchmarks.md) must not hang the bench: hyperfine
            # and its child are killed as a group after a generous limit.
            proc = subprocess.Popen(cmd, start_new_session=True)
            try:
                proc.wait(timeout=60 + (runs + 3) * 10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"bench: {name}: a run hung; left out", file=sys.stderr)
                continue
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            if proc.returncode != 0:
                print(f"bench: {name}: failed; left out", file=sys.stderr)
                continue
            r = json.loads(out.read_text())["results"][0]
            results[name] = (r["mean"] * 1000, (r["stddev"] or 0) * 1000)
        return results

    def in_process(self, runs: int) -> tuple[list[float], dict[str, float]]:
        """What `orchestr run --rm` asks of the daemon, through the CLI's own client."""
        body = {
            "Image": "busybox",
            "Cmd": ["true"],
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": {"AutoRemove": True, "NetworkMode": "default"},
        }
        params = {"stream": "1", "stdout": "1", "stderr": "1"}
        phases: dict[str, list[float]] = {
            k: [] for k in ("client", "create", "attach", "start", "exit+output", "removed")
        }
        totals = []
        for i in range(runs + 3):  # 3 warm-up runs, as hyperfine's
            t0 = time.perf_counter()
            with Client(self.host, timeout=None) as client:
                t1 = time.perf_counter()
                cid = client.json("POST", "/containers/create", json=body)["Id"]
                t2 = time.perf_counter()
                sock, _ = hijack(client, f"/containers/{cid}/attach", params)
                t3 = time.perf_counter()
                answer: dict[str, Any] = {}
                waiter = threading.Thread(target=wait_removed, args=(client, cid, answer))
                waiter.start()
                client.request("POST", f"/containers/{cid}/start")
                t4 = time.perf_counter()
                while sock.recv(65536):
                    pass
                sock.close()
                t5 = time.perf_counter()
                waiter.join()
                t6 = time.perf_counter()
            if answer.get("StatusCode") != 0:
                raise SystemExit(f"bench: in-process run ended with {answer}")
            if i < 3:
                continue
            totals.append((t6 - t0) * 1000)
            for name, (a, b) in zip(
                phases, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)], strict=True
            ):
                phases[name].append((b - a) * 1000)
        return totals, {k: statistics.median(v) for k, v in phases.items()}

    def rss(self) -> tuple[float, float]:
        """VmRSS (MiB) of the daemon and of the supervisor."""
        assert self.daemon is not None
        supervisor = int((self.exec_root / "supervisor" / "supervisor.pid").read_text())
        return vm_rss(self.daemon.pid), vm_rss(supervisor)

    def memory(self, counts: list[int], fresh: tuple[float, float]) -> list[Row]:
        rows = [("fresh (just started)", *fresh), ("idle (after the runs above)", *self.rss())]
        ids: list[str] = []
        for n in counts:
            while len(ids) < n:
                ids.append(self.orchestr("run", "-d", "busybox", "sleep", "300").stdout.strip())
            time.sleep(1)
            rows.append((f"{n} running containers", *self.rss()))
        if ids:
            self.orchestr("rm", "-f", *ids)
            time.sleep(1)
            rows.append(("after removing them", *self.rss()))
        return rows

    def conmon_rss(self) -> float | None:
        if not self.have_podman:
            return None
        run = [a for a in self.podman_run if a != "--rm"]
        cid = self.podman(*run, "-d", "busybox", "sleep", "300").stdout.strip()
        try:
            time.sleep(1)
            pid = int(self.podman("inspect", "--format", "{{.State.ConmonPid}}", cid).stdout)
            return vm_rss(pid)
        finally:
            self.podman("rm", "-f", "-t", "0", cid)

    # -- tear-down (also after a failure or Ctrl-C)

    def cleanup(self) -> None:
        if self.have_podman and (self.work / "podman").exists():
            with contextlib.suppress(Exception):
                subprocess.run([*self.podman_base, "rm", "-a", "-f", "-t", "0"],
                               capture_output=True, timeout=60)  # fmt: skip
        if self.daemon is not None:
            stop_daemon(self.daemon, self.exec_root, CGROUP_PARENT)
        for parent in (CGROUP_PARENT, PODMAN_CGROUP_PARENT):
            remove_cgroups(parent)
        unmount_under(self.work)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True)
        for path in self.podman_made:  # podman makes these whatever its flags say
            with contextlib.suppress(OSError):
                os.rmdir(path)


def wait_removed(client: Client, cid: str, answer: dict[str, Any]) -> None:
    path = f"/containers/{cid}/wait"
    answer.update(client.json("POST", path, params={"condition": "removed"}))


def vm_rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ensure_podman() -> bool:
    if shutil.which("podman") is None:
        print("bench: installing podman (apt-get install podman)", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run(
            ["apt-get", "install", "-y", "-qq", "podman"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            print(f"bench: podman could not be installed; its rows are left out:\n"
                  f"{done.stderr[-1000:]}", file=sys.stderr)  # fmt: skip
    return shutil.which("podman") is not None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--runs", type=int, default=20, help="hyperfine runs (default 20)")
    ap.add_argument("--containers", default="10,50", help="running containers for memory")
    args = ap.parse_args()
    counts = sorted(int(n) for n in args.containers.split(",") if n)
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    for tool in ("hyperfine", "docker"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed (scripts/setup.sh)", file=sys.stderr)
            return 1
    os.environ["ORCHESTR_NO_AUTOSTART"] = "1"
    # SIGTERM (and SIGHUP) tear down like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-run-"))
    bench = Bench(work)
    try:
        bench.have_podman = ensure_podman()
        bench.start_daemon()
        time.sleep(1)
        fresh = bench.rss()
        bench.make_image()
        load = os.getloadavg()
        timed = bench.hyperfine(args.runs)
        floor, phases = bench.in_process(args.runs)
        memory = bench.memory(counts, fresh)
        conmon = bench.conmon_rss()
        load_after = os.getloadavg()
    finally:
        bench.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    report(args.runs, timed, floor, phases, memory, conmon, load, load_after)
    return 0


def report(
    runs: int,
    timed: dict[str, tuple[float, float]],
    floor: list[float],
    phases: dict[str, float],
    memory: list[Row],
    conmon: float | None,
    load: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> None:
    podman = timed.get("podman run --rm busybox true", (0.0, 0.0))[0]
    print(f"\nrun --rm busybox true: mean ± sd of {runs} runs (hyperfine, 3 warm-up)")
    print(f"load average {load[0]:.2f} before, {load_after[0]:.2f} after, {os.cpu_count()} CPUs")
    rows = list(timed.items())
    rows.append(
        (
            "in-process: create+attach+wait+start(+rm)",
            (statistics.mean(floor), statistics.stdev(floor) if len(floor) > 1 else 0.0),
        )
    )
    print(f"  {'what':48} {'ms':>16} {'vs podman':>10}")
    for name, (mean, sd) in rows:
        ratio = f"{mean / podman:.2f}x" if podman else "-"
        print(f"  {name:48} {mean:8.1f} ± {sd:5.1f} {ratio:>10}")
    print(f"  {'dockerd 20.10 (issue 4, not measurable here)':48} {ISSUE_DOCKER_MS:>8}")
    print(f"  {'podman (issue 4)':48} {ISSUE_PODMAN_MS:>8}")
    calls = ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
    print(f"\nin-process, median ms per call: {calls}")
    print("\nVmRSS (MiB)")
    print(f"  {'state':32} {'daemon':>8} {'supervisor':>10} {'both':>8} {'per container':>14}")
    idle = memory[1][1] + memory[1][2]
    for name, daemon, sup in memory:
        per = ""
        n = int(name.split()[0]) if name.split()[0].isdigit() else 0
        if n:
            per = f"{(daemon + sup - idle) * 1024 / n:10.0f} KiB"
        print(f"  {name:32} {daemon:8.1f} {sup:10.1f} {daemon + sup:8.1f} {per:>14}")
    if conmon is not None:
        print(f"  podman: conmon of one `podman run -d`: {conmon:.1f} MiB (no daemon)")
    print("  issue 4: dockerd + containerd idle 110-126 MiB; containerd-shim 13 MiB per container")


if __name__ == "__main__":
    sys.exit(main())

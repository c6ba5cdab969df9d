"""The full lifecycle of /bin/true: orchestr's runtime beside runc, on one bundle.

    .venv/bin/python bench/runtime_lifecycle.py [-n RUNS]

Measures, with the same busybox bundle (made by `runc spec`, args /bin/true,
terminal off) for every contender:

- create+start+wait+delete as separate commands (how containerd drives runc):
  the benchmark is a child subreaper, so it waits for the container's pid 1
  itself, the same way for both runtimes;
- `run` (one command doing all four);
- orchestr's library in-process (what the daemon does: no interpreter start);
- the bare floor: `unshare --fork --pid --mount --net --uts --ipc chroot rootfs /bin/true`.

Prints medians (ms) and the ratio to runc. Needs root.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.images.busybox import make_rootfs  # noqa: E402
from agent.runtime.linux import flags, libc  # noqa: E402
from agent.runtime.runtime import Runtime  # noqa: E402

ORCHESTR = str(Path(sys.executable).parent / "orchestr")


def make_bundle(dest: Path) -> Path:
    dest.mkdir(parents=True)
    make_rootfs(str(dest / "rootfs"))
    subprocess.run(["runc", "spec"], cwd=dest, check=True)
    config = json.loads((dest / "config.json").read_text())
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def lifecycle(tool: list[str], bundle: Path, work: Path) -> Callable[[], None]:
    """create, start, wait (as subreaper), delete — four steps, as containerd does."""

    def once() -> None:
        cid = "b" + uuid.uuid4().hex[:10]
        pid_file = work / f"{cid}.pid"
        quiet([*tool, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid])
        pid = int(pid_file.read_text())
        quiet([*tool, "start", cid])
        os.waitpid(pid, 0)
        quiet([*tool, "delete", cid])
        pid_file.unlink()

    return once


def run_command(tool: list[str], bundle: Path) -> Callable[[], None]:
    def once() -> None:
        quiet([*tool, "run", "--bundle", str(bundle), "b" + uuid.uuid4().hex[:10]])

    return once


def library(root: Path, bundle: Path) -> Callable[[], None]:
    rt = Runtime(str(root))

    def once() -> None:
        cid = "b" + uuid.uuid4().hex[:10]
        c = rt.create(cid, str(bundle))
        rt.start(cid)
        rt.wait(c)
        rt.delete(cid)

    return once


def floor(bundle: Path) -> Callable[[], None]:
    cmd = ["unshare", "--fork", "--pid", "--mount", "--net", "--uts", "--ipc",
           "chroot", str(bundle / "rootfs"), "/bin/true"]  # fmt: skip

    def once() -> None:
        quiet(cmd)

    return once


def measure(fn: Callable[[], None], runs: int) -> list[float]:
    fn()  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> int:
    runs = int(sys.argv[sys.argv.index("-n") + 1]) if "-n" in sys.argv else 30
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    if shutil.which("runc") is None:
        print("bench: runc is not installed (apt-get install runc)", file=sys.stderr)
        return 1
    libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
    work = Path(tempfile.mkdtemp(prefix="orchestr-bench-"))
    try:
        bundle = make_bundle(work / "bundle")
        runc = ["runc", "--root", str(work / "runc-root")]
        ours = [ORCHESTR, "runtime", "--root", str(work / "orchestr-root")]
        cases = [
            ("floor: unshare + chroot /bin/true", floor(bundle)),
            ("runc: create+start+wait+delete", lifecycle(runc, bundle, work)),
            ("orchestr: create+start+wait+delete", lifecycle(ours, bundle, work)),
            ("runc: run", run_command(runc, bundle)),
            ("orchestr: run", run_command(ours, bundle)),
            ("orchestr: in-process library", library(work / "lib-root", bundle)),
        ]
        results = {name: statistics.median(measure(fn, runs)) for name, fn in cases}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, runs)
    return 0


def report(results: dict[str, float], runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    runc_lifecycle = results["runc: create+start+wait+delete"]
    runc_run = results["runc: run"]
    table = Table(title=f"Lifecycle of /bin/true, median of {runs} runs")
    table.add_column("what")
    table.add_column("median ms", justify="right")
    table.add_column("vs runc", justify="right")
    for name, ms in results.items():
        peer = runc_run if name.endswith(": run") else runc_lifecycle
        table.add_row(name, f"{ms:.1f}", f"{ms / peer:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())

"""Looking into running containers: `top` (ps over the container's processes) and
`stats` (from its cgroup), in the Engine API's shapes."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from agent.runtime.runtime import Runtime

NS = 1_000_000_000


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                    out[parts[0]] = int(parts[1])
    except OSError:
        pass
    return out


def top(runtime: Runtime, container_id: str, ps_args: str = "-ef") -> dict[str, Any]:
    """`ps ps_args` on the host, keeping the rows of the container's processes."""
    pids = set(runtime.processes(container_id))
    args = ps_args.split() if ps_args else ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ValueError(f"ps {ps_args}: {out.stderr.strip() or 'failed'}")
    lines = out.stdout.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise ValueError(f"ps {ps_args}: its output has no PID column")
    pid_col = titles.index("PID")
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}


def _system_cpu_ns() -> int:
    """Host CPU time (all CPUs) in nanoseconds, as Docker reports system_cpu_usage."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    ticks = sum(int(x) for x in fields)
    return ticks * NS // os.sysconf("SC_CLK_TCK")


def sample(runtime: Runtime, container_id: str) -> dict[str, Any]:
    """One reading of the container's cgroup counters."""
    c = runtime.load(container_id)
    cg = c.cgroup
    cpu_total = 0
    user = kernel = 0
    memory: dict[str, Any] = {}
    pids = 0
    if cg is not None:
        cpuacct = cg._dir("cpuacct")
        unified = cg._dir("") if cg.unified else None
        if cpuacct and os.path.exists(os.path.join(cpuacct, "cpuacct.usage")):
            cpu_total = _read_int(os.path.join(cpuacct, "cpuacct.usage")) or 0
            stat = _read_kv(os.path.join(cpuacct, "cpuacct.stat"))
            tick = NS // os.sysconf("SC_CLK_TCK")
            user, kernel = stat.get("user", 0) * tick, stat.get("system", 0) * tick
        elif unified:
            stat = _read_kv(os.path.join(unified, "cpu.stat"))
            cpu_total = stat.get("usage_usec", 0) * 1000
            user, kernel = stat.get("user_usec", 0) * 1000, stat.get("system_usec", 0) * 1000
        mem = cg._dir("memory")
        if mem and os.path.exists(os.path.join(mem, "memory.usage_in_bytes")):
            stats = _read_kv(os.path.join(mem, "memory.stat"))
            memory = {
                "usage": _read_int(os.path.join(mem, "memory.usage_in_bytes")) or 0,
                "max_usage": _read_int(os.path.join(mem, "memory.max_usage_in_bytes")) or 0,
                "limit": min(
                    _read_int(os.path.join(mem, "memory.limit_in_bytes")) or 0,
                    os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                ),
                "stats": stats,
                "failcnt": _read_int(os.path.join(mem, "memory.failcnt")) or 0,
            }
        elif unified:
            limit_text = ""
            try:
                with open(os.path.join(unified, "memory.max")) as f:
                    limit_text = f.read().strip()
            except OSError:
                pass
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            memory = {
                "usage": _read_int(os.path.join(unified, "memory.current")) or 0,
                "limit": int(limit_text) if limit_text.isdigit() else total,
                "stats": _read_kv(os.path.join(unified, "memory.stat")),
            }
        pids = len(cg.pids())
    return {
        "read": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % NS:09d}Z",
        "pids_stats": {"current": pids},
        "blkio_stats": {
            "io_service_bytes_recursive": None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu_total,
                "usage_in_kernelmode": kernel,
                "usage_in_usermode": user,
            },
            "system_cpu_usage": _system_cpu_ns(),
            "online_cpus": os.cpu_count() or 1,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": memory,
    }


EMPTY_CPU = {
    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
}

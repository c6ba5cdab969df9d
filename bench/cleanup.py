"""What every bench needs to leave the machine as it found it: stop a daemon it
started (and what a stuck one leaves), remove its cgroups, unmount its mounts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.runtime.linux import flags, libc


def stop_daemon(daemon: subprocess.Popen[bytes], exec_root: Path, cgroup_parent: str) -> None:
    """SIGTERM stops the containers and the supervisor; what survives a stuck daemon
    is killed by pid (the supervisor) and by cgroup (the containers)."""
    pid_file = exec_root / "supervisor" / "supervisor.pid"
    supervisor = int(pid_file.read_text()) if pid_file.exists() else 0
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    if supervisor:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGKILL)
    for path in cgroup_dirs(cgroup_parent):
        for root, _, _ in os.walk(path):
            with contextlib.suppress(OSError), open(os.path.join(root, "cgroup.procs")) as f:
                for pid in f.read().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)


def cgroup_dirs(parent: str) -> list[str]:
    """`parent` in every mounted cgroup hierarchy (v1 controllers, the v2 tree)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            if fstype in ("cgroup", "cgroup2"):
                path = fields[4] + parent
                if os.path.isdir(path):
                    out.append(path)
    return out


def remove_cgroups(parent: str) -> None:
    for path in cgroup_dirs(parent):
        for _ in range(50):  # killed processes leave their cgroups a moment later
            for root, _, _ in os.walk(path, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(root)
            if not os.path.isdir(path):
                break
            time.sleep(0.1)


def unmount_under(work: Path) -> None:
    prefix = str(work) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [
            line.split()[4].encode().decode("unicode_escape")
            for line in f
            if line.split()[4].startswith(prefix)
        ]
    for point in sorted(points, key=len, reverse=True):
        with contextlib.suppress(OSError):
            libc.umount2(point, flags.MNT_DETACH)

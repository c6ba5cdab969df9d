"""One probe: the check's command as an exec in the container, through the
supervisor (as `docker exec` runs), its stdout and stderr together, capped; killed at
its timeout (ExitCode -1, dockerd's "Health check exceeded timeout (…)").

The timeout counts from the exec's start, not from its creation (dockerd's rule:
starting an exec is not the probe's time).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.health.config import HealthConfig
from agent.health.state import MAX_OUTPUT, Result, capped, timed_out

__all__ = ["ON_FAILURE_ACTIONS", "ON_FAILURE_LABEL", "run_exec_probe"]

# orchestr's extension (podman's --health-on-failure names): what an unhealthy
# container gets.
ON_FAILURE_LABEL = "org.orchestr.health.on-failure"
ON_FAILURE_ACTIONS = ("none", "restart", "stop", "kill")

_DRAIN_AFTER_KILL = 5.0  # seconds to wait for a killed probe's output to end


def run_exec_probe(
    supervisor: Any,
    container_id: str,
    exec_id: str,
    process: dict[str, object],
    config: HealthConfig,
    *,
    started: Callable[[], None] = lambda: None,
    kill: Callable[[int, int], None] = os.kill,
) -> Result:
    """Run `process` (an OCI process object) in the container; its Result."""
    start = time.time()
    try:
        supervisor.exec_create(container_id, exec_id, process, stdin=False, tty=False)
        sock: socket.socket = supervisor.exec_attach(exec_id, False, True, True)
    except Exception as e:
        return Result(start, time.time(), -1, str(e))
    try:
        try:
            pid = supervisor.exec_start(exec_id)
        except Exception as e:
            return Result(start, time.time(), -1, str(e))
        started()
        output, finished = _read(sock, time.monotonic() + config.timeout)
        if not finished:
            with contextlib.suppress(OSError):
                kill(pid, signal.SIGKILL)
            more, _ = _read(sock, time.monotonic() + _DRAIN_AFTER_KILL)
            output += more
            with contextlib.suppress(Exception):
                supervisor.exec_wait(exec_id, timeout=_DRAIN_AFTER_KILL)
            return Result(start, time.time(), -1, timed_out(config, capped(output)))
        try:
            code = supervisor.exec_wait(exec_id, timeout=_DRAIN_AFTER_KILL)
        except Exception as e:
            return Result(start, time.time(), -1, str(e))
        return Result(start, time.time(), int(code), capped(output))
    finally:
        sock.close()
        with contextlib.suppress(Exception):  # a probe's record is not kept (as dockerd)
            supervisor.exec_forget(exec_id)


def _read(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """The payload of the exec's frames until the stream ends (True) or the deadline
    (False); only the first MAX_OUTPUT + 1 bytes are kept."""
    from agent.supervisor.frames import FrameDecoder

    decoder = FrameDecoder()
    kept = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(kept), False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return bytes(kept), False
        except OSError:
            return bytes(kept), True
        if not data:
            return bytes(kept), True
        for _stream, payload in decoder.feed(data):
            if len(kept) <= MAX_OUTPUT:
                kept += payload[: MAX_OUTPUT + 1 - len(kept)]

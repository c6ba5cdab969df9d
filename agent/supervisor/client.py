"""A blocking client of the node supervisor, and `start_supervisor`.

Every call opens its own connection, so one `SupervisorClient` may be used from
several threads at once (the daemon calls it from asyncio worker threads).

    SupervisorError (RuntimeError)   the supervisor refused a request (its one-line
                                     reason), or cannot be reached
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from agent.runtime import fastjson

__all__ = ["SupervisorClient", "SupervisorError", "start_supervisor"]

START_TIMEOUT = 10.0


class SupervisorError(RuntimeError):
    """A request the supervisor refused, or a supervisor that does not answer."""


class SupervisorClient:
    def __init__(self, socket_path: str, timeout: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout  # for ordinary requests; wait/attach/events have their own

    # -- plumbing ------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise SupervisorError(f"supervisor at {self.socket_path}: {e.strerror or e}") from None
        return sock

    def _open(self, request: dict[str, object], timeout: float | None) -> socket.socket:
        """Send `request` and read the one-line answer byte by byte (nothing after it)."""
        sock = self._connect(timeout)
        try:
            sock.sendall(fastjson.dumps(request).encode() + b"\n")
            line = bytearray()
            while not line.endswith(b"\n"):
                b = sock.recv(1)
                if not b:
                    raise SupervisorError("the supervisor closed the connection")
                line += b
            _check(_parse(bytes(line)))
        except BaseException:
            sock.close()
            raise
        return sock

    def call(self, request: dict[str, object]) -> dict[str, object]:
        """One request, one answer; `SupervisorError` when it is not ok."""
        return self._call(request, self.timeout)

    def _call(self, request: dict[str, object], timeout: float | None) -> dict[str, object]:
        sock = self._connect(timeout)
        try:
            sock.sendall(fastjson.dumps(request).encode() + b"\n")
            buf = bytearray()
            while b"\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise SupervisorError("the supervisor closed the connection")
                buf += data
        except TimeoutError:
            raise
        except OSError as e:
            raise SupervisorError(f"supervisor: {e.strerror or e}") from None
        finally:
            sock.close()
        return _check(_parse(bytes(buf[: buf.index(b"\n")])))

    # -- the operations ---------------------------------------------------------------

    def ping(self) -> dict[str, object]:
        return self.call({"op": "ping"})

    def create(
        self,
        container_id: str,
        bundle: str,
        log_path: str,
        *,
        log_max_size: int | None = None,
        log_max_files: int = 1,
        stdin: bool = False,
        tty: bool = False,
    ) -> int:
        """Create the container (not started); returns its pid.

        `tty`: its pid 1 gets a pty (the bundle's process.terminal must be true);
        its output is logged as stdout and attached as raw bytes."""
        answer = self.call(
            {
                "op": "create",
                "id": container_id,
                "bundle": bundle,
                "log_path": log_path,
                "log_max_size": log_max_size,
                "log_max_files": log_max_files,
                "stdin": stdin,
                "tty": tty,
            }
        )
        return int(str(answer["pid"]))

    def start(self, container_id: str) -> None:
        self.call({"op": "start", "id": container_id})

    def kill(self, container_id: str, signal: int, all: bool = False) -> None:
        self.call({"op": "kill", "id": container_id, "signal": signal, "all": all})

    def delete(self, container_id: str, force: bool = False) -> None:
        self.call({"op": "delete", "id": container_id, "force": force})

    def state(self, container_id: str) -> dict[str, object]:
        answer = self.call({"op": "state", "id": container_id})
        answer.pop("ok", None)
        return answer

    def list(self) -> list[dict[str, object]]:
        containers = self.call({"op": "list"}).get("containers")
        if not isinstance(containers, list):
            return []
        return [c for c in containers if isinstance(c, dict)]

    def wait(self, container_id: str, timeout: float | None = None) -> dict[str, object]:
        """Block until the container has exited: {exit_code, oom_killed, finished_at[, lost]}.

        TimeoutError when `timeout` seconds pass first.
        """
        answer = self._call({"op": "wait", "id": container_id}, timeout)
        answer.pop("ok", None)
        return answer

    def attach(
        self, container_id: str, stdin: bool = False, stdout: bool = True, stderr: bool = True
    ) -> socket.socket:
        """The raw connection after the ok line: multiplexed frames to read, stdin to
        write; `shutdown(SHUT_WR)` closes the container's stdin."""
        request: dict[str, object] = {
            "op": "attach",
            "id": container_id,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
        }
        sock = self._open(request, self.timeout)
        sock.settimeout(None)
        return sock

    def resize(self, container_id: str, height: int, width: int) -> None:
        """Set the window size of a tty container's pty."""
        self.call({"op": "resize", "id": container_id, "height": height, "width": width})

    # -- exec -----------------------------------------------------------------------------

    def exec_create(
        self,
        container_id: str,
        exec_id: str,
        process: dict[str, object],
        *,
        stdin: bool = False,
        tty: bool = False,
    ) -> None:
        """Record an exec (an OCI process object) in a running container; nothing runs yet."""
        self.call(
            {
                "op": "exec_create",
                "id": container_id,
                "exec_id": exec_id,
                "process": process,
                "stdin": stdin,
                "tty": tty,
            }
        )

    def exec_attach(self, exec_id: str, stdin: bool, stdout: bool, stderr: bool) -> socket.socket:
        """Like `attach`, for an exec (before or after `exec_start`): frames without a
        tty, raw bytes with one; closed once the exec has exited and its output is sent."""
        request: dict[str, object] = {
            "op": "exec_attach",
            "exec_id": exec_id,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
        }
        sock = self._open(request, self.timeout)
        sock.settimeout(None)
        return sock

    def exec_start(self, exec_id: str) -> int:
        """Run the exec; returns its pid (on the host)."""
        return int(str(self.call({"op": "exec_start", "exec_id": exec_id})["pid"]))

    def exec_state(self, exec_id: str) -> dict[str, object]:
        """{running: bool, exit_code: int | None, pid: int}."""
        answer = self.call({"op": "exec_state", "exec_id": exec_id})
        answer.pop("ok", None)
        return answer

    def exec_wait(self, exec_id: str, timeout: float | None = None) -> int:
        """Block until the exec has exited; its exit code. TimeoutError after `timeout` s."""
        answer = self._call({"op": "exec_wait", "exec_id": exec_id}, timeout)
        code = answer.get("exit_code")
        if not isinstance(code, int):
            raise SupervisorError(f"exec {exec_id}: no exit code")
        return code

    def exec_forget(self, exec_id: str) -> None:
        """Drop a finished exec's record (an error while it still runs)."""
        self.call({"op": "exec_forget", "exec_id": exec_id})

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self.call({"op": "exec_resize", "exec_id": exec_id, "height": height, "width": width})

    def events(self) -> Iterator[dict[str, object]]:
        """Every start and exit from now on, as long as the iterator is consumed."""
        sock = self._open({"op": "events"}, self.timeout)  # subscribed from this call on
        sock.settimeout(None)
        return _event_lines(sock)


def _event_lines(sock: socket.socket) -> Iterator[dict[str, object]]:
    try:
        with sock.makefile("rb") as f:
            for line in f:
                yield _parse(line)
    finally:
        sock.close()


def _parse(line: bytes) -> dict[str, object]:
    try:
        doc = fastjson.loads(line.decode("utf-8", errors="replace"))
    except ValueError:
        raise SupervisorError(f"the supervisor sent a malformed line: {line[:200]!r}") from None
    if not isinstance(doc, dict):
        raise SupervisorError(f"the supervisor sent a malformed line: {line[:200]!r}")
    return doc


def _check(answer: dict[str, object]) -> dict[str, object]:
    if answer.get("ok") is not True:
        raise SupervisorError(str(answer.get("error") or "the supervisor refused the request"))
    return answer


# -- starting one ----------------------------------------------------------------------


def start_supervisor(root: str, socket_path: str, runtime_root: str) -> int:
    """The pid of the supervisor answering `socket_path`, started (detached) if none does.

    It runs in its own session with stdout and stderr in <root>/supervisor.log;
    SupervisorError (with the log's last lines) when it does not answer in 10 s.
    """
    client = SupervisorClient(socket_path, timeout=2.0)
    try:
        return int(str(client.ping()["pid"]))
    except SupervisorError:
        pass
    os.makedirs(root, mode=0o700, exist_ok=True)
    log_path = os.path.join(root, "supervisor.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.supervisor",
                "--root",
                root,
                "--socket",
                socket_path,
                "--runtime-root",
                runtime_root,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return int(str(client.ping()["pid"]))
        except SupervisorError:
            pass
        code = proc.poll()
        if code is not None:
            raise SupervisorError(f"the supervisor exited with status {code}: {_tail(log_path)}")
        if time.monotonic() > deadline:
            raise SupervisorError(
                f"the supervisor did not answer on {socket_path} within "
                f"{START_TIMEOUT:.0f} s: {_tail(log_path)}"
            )
        time.sleep(0.02)


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, "rb") as f:
            text = f.read()[-4096:].decode(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

"""process.terminal: a pty for the container, through --console-socket or `run`'s proxy."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from agent.runtime import specopts as so
from agent.runtime.runtime import Runtime
from tests.conftest import BundleFactory, unique
from tests.integration.test_runtime import run_cli


def test_run_in_the_foreground_proxies_a_terminal(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    bundle = make_bundle(
        so.with_args(["sh", "-c", "tty; [ -t 0 ] && echo stdin-is-a-tty; exit 3"]),
        so.with_terminal(True),
    )
    out = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert out.returncode == 3, out.stderr
    lines = out.stdout.replace("\r", "").splitlines()
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] == "stdin-is-a-tty"


def test_console_socket_receives_the_pty_master(
    runtime: Runtime, make_bundle: BundleFactory, state_dir: Path
) -> None:
    bundle = make_bundle(
        so.with_args(["sh", "-c", "echo via-the-pty; sleep 30"]), so.with_terminal(True)
    )
    path = str(state_dir / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    received: list[int] = []

    def accept() -> None:
        conn, _ = server.accept()
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        received.extend(fds)
        conn.close()

    t = threading.Thread(target=accept)
    t.start()
    cid = unique()
    runtime.create(cid, str(bundle), console_socket=path)
    t.join(timeout=10)
    server.close()
    assert len(received) == 1
    master = received[0]
    runtime.start(cid)
    data = b""
    while b"via-the-pty" not in data:
        chunk = os.read(master, 1024)
        if not chunk:
            break
        data += chunk
    assert b"via-the-pty" in data
    runtime.delete(cid, force=True)
    os.close(master)


def test_terminal_without_console_socket_is_refused_by_create(
    make_bundle: BundleFactory, state_dir: Path
) -> None:
    bundle = make_bundle(so.with_args(["true"]), so.with_terminal(True))
    out = run_cli(state_dir / "root", "create", "-b", str(bundle), unique())
    assert out.returncode == 1
    assert "--console-socket" in out.stderr


def test_exec_with_a_terminal(runtime: Runtime, make_bundle: BundleFactory, state_dir: Path):
    cid = unique()
    runtime.run(cid, str(make_bundle(so.with_args(["sleep", "60"]))), detach=True)
    out = run_cli(state_dir / "runtime-root", "exec", "-t", cid, "sh", "-c", "tty; exit 6")
    assert out.returncode == 6, out.stderr
    assert out.stdout.replace("\r", "").strip().startswith("/dev/pts/")
    runtime.delete(cid, force=True)

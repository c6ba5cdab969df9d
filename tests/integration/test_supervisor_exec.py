"""The node supervisor's exec processes and tty containers, with real containers."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from agent.supervisor.client import SupervisorError
from tests.conftest import BundleFactory, unique
from tests.integration.test_supervisor import Node, node, read_frames, read_log, sh

__all__ = ["node"]  # the fixture, imported for this module's tests

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def process(*args: str, env: list[str] | None = None) -> dict[str, object]:
    return {
        "args": list(args),
        "env": [PATH, *(env or [])],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
    }


def read_raw(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything until the supervisor closes the connection."""
    sock.settimeout(timeout)
    out = b""
    while data := sock.recv(65536):
        out += data
    return out


def read_until(sock: socket.socket, needle: bytes, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while needle not in out:
        data = sock.recv(65536)
        if not data:
            break
        out += data
    return out


def running(node: Node, make_bundle: BundleFactory, *opts: so.SpecOpt) -> str:
    opts = opts or (so.with_args(["sleep", "60"]),)
    return node.run(make_bundle(*opts, shared_rootfs=True))


def tty_bundle(make_bundle: BundleFactory, *args: str) -> Path:
    return make_bundle(so.with_args(list(args)), so.with_terminal(True), shared_rootfs=True)


# -- exec -------------------------------------------------------------------------------


def test_exec_output_goes_to_its_attach_client_not_the_log(
    node: Node, make_bundle: BundleFactory
) -> None:
    node.start()
    bundle = make_bundle(sh("echo from-pid-1; sleep 60"), so.with_hostname("exechost"))
    hostname_file = (bundle / "rootfs" / "etc" / "hostname").read_bytes()
    cid = node.run(bundle)
    eid = unique("e")
    # the container's files, and its UTS namespace
    node.client.exec_create(cid, eid, process("sh", "-c", "cat /etc/hostname; hostname"))
    assert node.client.exec_state(eid) == {"running": False, "exit_code": None, "pid": 0}
    conn = node.client.exec_attach(eid, stdin=False, stdout=True, stderr=True)
    pid = node.client.exec_start(eid)
    assert pid > 0
    frames = read_frames(conn)  # attached before the start: all of it
    conn.close()
    assert b"".join(d for _, d in frames) == hostname_file + b"exechost\n"
    assert {s for s, _ in frames} == {1}
    assert node.client.exec_wait(eid, timeout=20) == 0
    assert node.client.exec_state(eid) == {"running": False, "exit_code": 0, "pid": pid}

    eid2 = unique("e")
    node.client.exec_create(cid, eid2, process("sh", "-c", "echo out; echo err >&2; exit 5"))
    conn = node.client.exec_attach(eid2, stdin=False, stdout=True, stderr=True)
    node.client.exec_start(eid2)
    frames = read_frames(conn)
    conn.close()
    assert sorted(frames) == [(1, b"out\n"), (2, b"err\n")]
    assert node.client.exec_wait(eid2, timeout=20) == 5
    assert node.client.exec_wait(eid2, timeout=5) == 5  # again: at once
    # the container's own output only
    assert [e["log"] for e in read_log(node.log(cid))] == ["from-pid-1\n"]
    assert node.client.state(cid)["status"] == "running"


def test_exec_stdin_is_fed_and_half_close_ends_it(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    cid = running(node, make_bundle)
    eid = unique("e")
    node.client.exec_create(cid, eid, process("cat"), stdin=True)
    conn = node.client.exec_attach(eid, stdin=True, stdout=True, stderr=True)
    conn.sendall(b"before start\n")  # kept until the process has its stdin
    node.client.exec_start(eid)
    conn.sendall(b"hello\n")
    conn.shutdown(socket.SHUT_WR)
    frames = read_frames(conn)
    conn.close()
    assert b"".join(d for s, d in frames if s == 1) == b"before start\nhello\n"
    assert node.client.exec_wait(eid, timeout=20) == 0


def test_exec_refusals(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    with pytest.raises(SupervisorError, match="no such container"):
        node.client.exec_create("nope", unique("e"), process("true"))
    created = node.create(make_bundle(so.with_args(["true"]), shared_rootfs=True))
    with pytest.raises(SupervisorError, match="not running"):
        node.client.exec_create(created, unique("e"), process("true"))
    cid = running(node, make_bundle)
    with pytest.raises(SupervisorError, match=r"process\.args"):
        node.client.exec_create(cid, unique("e"), {"args": []})
    with pytest.raises(SupervisorError, match="no such exec"):
        node.client.exec_start("nope")
    eid = unique("e")
    node.client.exec_create(cid, eid, process("true"))
    with pytest.raises(SupervisorError, match="already exists"):
        node.client.exec_create(cid, eid, process("true"))
    node.client.exec_start(eid)
    with pytest.raises(SupervisorError, match="started already"):
        node.client.exec_start(eid)
    assert node.client.exec_wait(eid, timeout=20) == 0
    # a command that is not there: the start fails, the exec ends with 126
    bad = unique("e")
    node.client.exec_create(cid, bad, process("/no/such/command"))
    with pytest.raises(SupervisorError, match="no/such/command"):
        node.client.exec_start(bad)
    assert node.client.exec_wait(bad, timeout=5) == 126
    # a stopped container
    node.client.kill(cid, 9)
    node.client.wait(cid, timeout=20)
    with pytest.raises(SupervisorError, match="not running"):
        node.client.exec_create(cid, unique("e"), process("true"))
    assert node.client.ping()["containers"] == 2


def test_a_finished_exec_can_be_forgotten(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    cid = running(node, make_bundle)
    done, still = unique("e"), unique("e")
    node.client.exec_create(cid, still, process("sleep", "60"))
    node.client.exec_start(still)
    with pytest.raises(SupervisorError, match="still running"):
        node.client.exec_forget(still)
    node.client.exec_create(cid, done, process("true"))
    node.client.exec_start(done)
    assert node.client.exec_wait(done, timeout=20) == 0
    node.client.exec_forget(done)
    with pytest.raises(SupervisorError, match="no such exec"):
        node.client.exec_state(done)
    assert node.client.exec_state(still)["running"] is True
    node.client.delete(cid, force=True)


def test_execs_go_with_their_container(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    cid = running(node, make_bundle)
    done, still = unique("e"), unique("e")
    node.client.exec_create(cid, done, process("true"))
    node.client.exec_start(done)
    assert node.client.exec_wait(done, timeout=20) == 0
    node.client.exec_create(cid, still, process("sleep", "60"))
    conn = node.client.exec_attach(still, stdin=False, stdout=True, stderr=True)
    node.client.exec_start(still)
    assert node.client.exec_state(still)["running"] is True
    t0 = time.monotonic()
    node.client.delete(cid, force=True)
    assert time.monotonic() - t0 < 5
    assert read_frames(conn) == []
    conn.close()
    for eid in (done, still):
        with pytest.raises(SupervisorError, match="no such exec"):
            node.client.exec_state(eid)
    assert node.client.list() == []


def test_an_exec_that_outlives_nothing_stops_with_its_container(
    node: Node, make_bundle: BundleFactory
) -> None:
    node.start()
    cid = running(node, make_bundle, sh("sleep 1"))
    eid = unique("e")
    node.client.exec_create(cid, eid, process("sleep", "60"))
    node.client.exec_start(eid)
    assert node.client.wait(cid, timeout=20)["exit_code"] == 0
    assert node.client.exec_wait(eid, timeout=20) == 137  # the pid namespace went
    assert node.client.exec_state(eid)["running"] is False


def test_exec_with_a_tty(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    cid = running(node, make_bundle)
    eid = unique("e")
    node.client.exec_create(cid, eid, process("sh", env=["TERM=xterm"]), stdin=True, tty=True)
    conn = node.client.exec_attach(eid, stdin=True, stdout=True, stderr=True)
    node.client.exec_start(eid)
    node.client.exec_resize(eid, 33, 111)
    conn.sendall(b"tty; stty size; echo $TERM\n")
    out = read_until(conn, b"xterm\r\n")
    conn.sendall(b"exit 7\n")
    out += read_raw(conn)  # raw bytes, no frames; closed at the exit
    conn.close()
    assert b"/dev/pts/" in out and b"33 111\r\n" in out, out
    assert node.client.exec_wait(eid, timeout=20) == 7
    with pytest.raises(SupervisorError, match="not running"):
        node.client.exec_resize(eid, 10, 10)
    with pytest.raises(SupervisorError, match="no tty"):
        other = unique("e")
        node.client.exec_create(cid, other, process("true"))
        node.client.exec_resize(other, 10, 10)


# -- tty containers -----------------------------------------------------------------------


def test_tty_container_prints_its_terminal(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    bundle = tty_bundle(make_bundle, "sh", "-c", "tty; echo $TERM; stty size")
    cid = node.create(bundle, tty=True)
    node.client.resize(cid, 30, 100)
    conn = node.client.attach(cid, stdin=False, stdout=True, stderr=True)
    node.client.start(cid)
    out = read_raw(conn)  # raw bytes: no frame headers
    conn.close()
    assert node.client.wait(cid, timeout=20)["exit_code"] == 0
    lines = out.decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/"), out
    assert lines[1:] == ["xterm", "30 100", ""], out
    entries = read_log(node.log(cid))
    assert {e["stream"] for e in entries} == {"stdout"}
    assert "".join(e["log"] for e in entries).encode() == out
    assert node.client.state(cid)["tty"] is True


def test_tty_container_takes_keystrokes(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    cid = node.create(tty_bundle(make_bundle, "sh"), tty=True, stdin=True)
    conn = node.client.attach(cid, stdin=True, stdout=True, stderr=True)
    node.client.start(cid)
    conn.sendall(b"echo h''i\n")
    out = read_until(conn, b"hi\r\n")
    conn.shutdown(socket.SHUT_WR)  # a tty stays open when a client leaves
    time.sleep(0.3)
    assert node.client.state(cid)["status"] == "running"
    conn.close()
    conn = node.client.attach(cid, stdin=True, stdout=True, stderr=True)
    conn.sendall(b"exit 3\n")
    out += read_raw(conn)
    conn.close()
    assert node.client.wait(cid, timeout=20)["exit_code"] == 3
    assert b"hi\r\n" in out
    assert "hi\r\n" in "".join(e["log"] for e in read_log(node.log(cid)))


def test_a_flooding_tty_stalls_nothing(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    bundle = tty_bundle(make_bundle, "sh", "-c", "yes 0123456789 | head -c 4000000; echo; echo end")
    cid = node.create(bundle, tty=True)
    conn = node.client.attach(cid)  # never read
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    node.client.start(cid)
    t0 = time.monotonic()
    while node.client.state(cid)["status"] == "running":
        assert node.client.ping()["containers"] == 1
        assert time.monotonic() - t0 < 30
        time.sleep(0.05)
    assert node.client.wait(cid, timeout=5)["exit_code"] == 0
    assert read_log(node.log(cid))[-1]["log"] == "end\r\n"
    conn.close()


def test_tty_must_match_the_bundle(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    with pytest.raises(SupervisorError, match=r"process\.terminal must be true"):
        node.create(make_bundle(so.with_args(["true"]), shared_rootfs=True), tty=True)
    with pytest.raises(SupervisorError, match="create the container with tty"):
        node.create(tty_bundle(make_bundle, "true"))
    cid = running(node, make_bundle)
    with pytest.raises(SupervisorError, match="no tty"):
        node.client.resize(cid, 10, 10)
    assert node.client.ping()["containers"] == 1

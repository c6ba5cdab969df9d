"""The node supervisor with real containers: logs, exits, attach, surviving its client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.runtime import specopts as so
from agent.supervisor.client import SupervisorClient, SupervisorError, start_supervisor
from agent.supervisor.frames import FrameDecoder
from tests.conftest import MARKER, BundleFactory, unique

ROOT = Path(__file__).resolve().parents[2]
RFC3339_NANO = "%Y-%m-%dT%H:%M:%S"


class Node:
    """Where one test's supervisor lives; `start()` launches it."""

    def __init__(self, state_dir: Path, sock_dir: Path) -> None:
        self.root = state_dir / "supervisor"
        self.runtime_root = state_dir / "runtime"
        self.logs = state_dir / "logs"
        self.logs.mkdir()
        self.socket = sock_dir / "s.sock"
        self.client = SupervisorClient(str(self.socket))

    def start(self) -> int:
        return start_supervisor(str(self.root), str(self.socket), str(self.runtime_root))

    def pid(self) -> int:
        try:
            return int((self.root / "supervisor.pid").read_text())
        except (OSError, ValueError):
            return 0

    def log(self, cid: str) -> Path:
        return self.logs / f"{cid}.json"

    def create(self, bundle: Path, cid: str | None = None, **kwargs: object) -> str:
        cid = cid or unique()
        self.client.create(cid, str(bundle), str(self.log(cid)), **kwargs)  # type: ignore[arg-type]
        return cid

    def run(self, bundle: Path, **kwargs: object) -> str:
        cid = self.create(bundle, None, **kwargs)
        self.client.start(cid)
        return cid


def _is_supervisor(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"agent.supervisor" in f.read()
    except OSError:
        return False


def _stop(node: Node) -> None:
    """Delete every container through the supervisor, then kill it (also on failure)."""
    try:
        for c in node.client.list():
            try:
                node.client.delete(str(c["id"]), force=True)
            except (SupervisorError, OSError):
                pass
    except (SupervisorError, OSError):
        pass
    pid = node.pid()
    if pid and _is_supervisor(pid):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _is_supervisor(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.01)


@pytest.fixture
def node(state_dir: Path) -> Iterator[Node]:
    sock_dir = Path(tempfile.mkdtemp(prefix=f"{MARKER}-", dir="/tmp"))
    n = Node(state_dir, sock_dir)
    try:
        yield n
    finally:
        _stop(n)
        shutil.rmtree(sock_dir, ignore_errors=True)


def sh(script: str) -> so.SpecOpt:
    return so.with_args(["sh", "-c", script])


def read_log(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_time(value: str) -> None:
    assert value.endswith("Z") and len(value) == len("2024-01-01T00:00:00.123456789Z"), value
    time.strptime(value[:19], RFC3339_NANO)


def read_frames(sock: socket.socket, timeout: float = 10) -> list[tuple[int, bytes]]:
    """Every frame until the supervisor closes the connection."""
    sock.settimeout(timeout)
    decoder = FrameDecoder()
    frames: list[tuple[int, bytes]] = []
    while True:
        data = sock.recv(65536)
        if not data:
            assert decoder.buffer == b""
            return frames
        frames.extend(decoder.feed(data))


# -- logs -----------------------------------------------------------------------------


def test_output_goes_to_the_json_log(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    bundle = make_bundle(sh("echo out1; echo err1 >&2; echo out2; printf 'no newline'"))
    cid = node.run(bundle)
    assert node.client.wait(cid, timeout=20)["exit_code"] == 0
    entries = read_log(node.log(cid))
    by_stream = {s: [e["log"] for e in entries if e["stream"] == s] for s in ("stdout", "stderr")}
    assert by_stream == {"stdout": ["out1\n", "out2\n", "no newline"], "stderr": ["err1\n"]}
    for e in entries:
        assert set(e) == {"log", "stream", "time"}
        assert_time(e["time"])
    state = node.client.state(cid)
    assert state["status"] == "exited" and state["exit_code"] == 0
    assert state["log_path"] == str(node.log(cid))
    for key in ("created_at", "started_at", "finished_at"):
        assert_time(str(state[key]))
    on_disk = json.loads((node.root / "containers" / cid / "state.json").read_text())
    assert on_disk["status"] == "exited"


def test_long_lines_are_split_at_16k(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    # 40000 x's and a newline: 16384 + 16384 + 7232 (with the newline)
    cid = node.run(make_bundle(sh("yes x | head -c 80000 | tr -d '\\n'; echo")))
    node.client.wait(cid, timeout=20)
    pieces = [e["log"] for e in read_log(node.log(cid))]
    assert [len(p) for p in pieces] == [16384, 16384, 40000 - 32768 + 1]
    assert pieces[-1].endswith("\n")


def test_rotation_keeps_max_files(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i-aaaaaaaaaaaaaaaaaaaaaaaa; i=$((i+1)); done"
    cid = node.run(make_bundle(sh(script)), log_max_size=2000, log_max_files=3)
    node.client.wait(cid, timeout=20)
    log = node.log(cid)
    files = sorted(p.name for p in node.logs.iterdir() if p.name.startswith(log.name))
    assert files == [log.name, f"{log.name}.1", f"{log.name}.2"]
    for path in (log, Path(f"{log}.1"), Path(f"{log}.2")):
        assert 0 < path.stat().st_size <= 2000
    # the newest lines are in the current file, in order across the rotated ones
    lines = [e["log"] for p in (f"{log}.2", f"{log}.1", str(log)) for e in read_log(Path(p))]
    assert lines[-1] == "line-299-aaaaaaaaaaaaaaaaaaaaaaaa\n"
    numbers = [int(line.split("-")[1]) for line in lines]
    assert numbers == list(range(numbers[0], 300))


# -- exits ----------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "code"), [("true", 0), ("exit 3", 3)])
def test_wait_returns_the_exit_code(
    node: Node, make_bundle: BundleFactory, script: str, code: int
) -> None:
    node.start()
    cid = node.run(make_bundle(sh(script), shared_rootfs=True))
    answer = node.client.wait(cid, timeout=20)
    assert answer["exit_code"] == code
    assert answer["oom_killed"] is False
    assert_time(str(answer["finished_at"]))
    assert node.client.wait(cid, timeout=5) == answer  # again: at once


def test_creates_run_side_by_side(node: Node, make_bundle: BundleFactory, state_dir: Path) -> None:
    """A create whose set-up is slow (a createRuntime hook that waits) holds up
    nobody: the supervisor answers, creates and runs other containers meanwhile."""
    node.start()
    entered, release = state_dir / "entered", state_dir / "release"
    hook = (
        f"touch {entered}; i=0; while [ ! -e {release} ] && [ $i -lt 2000 ]; "
        "do sleep 0.01; i=$((i+1)); done"
    )
    slow = make_bundle(
        so.with_args(["true"]),
        lambda config: config.update(
            hooks={"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]}
        ),
        shared_rootfs=True,
    )
    slow_id = unique()
    outcome: list[object] = []

    def create_slow() -> None:
        try:
            outcome.append(node.create(slow, slow_id))
        except Exception as e:
            outcome.append(e)

    thread = threading.Thread(target=create_slow)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not entered.exists():
            assert time.monotonic() < deadline, "the hook never ran"
            time.sleep(0.01)
        assert node.client.ping()["ok"] is True
        with pytest.raises(SupervisorError, match="already exists"):
            node.create(slow, slow_id)
        quick = node.run(make_bundle(sh("echo quick"), shared_rootfs=True))
        assert node.client.wait(quick, timeout=20)["exit_code"] == 0
        assert not outcome, "the slow create answered before its hook was let go"
    finally:
        release.touch()
        thread.join(30)
    assert outcome == [slow_id]
    node.client.start(slow_id)
    assert node.client.wait(slow_id, timeout=20)["exit_code"] == 0


def test_kill_gives_137(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    events = node.client.events()
    cid = node.run(make_bundle(so.with_args(["sleep", "60"]), shared_rootfs=True))
    assert node.client.state(cid)["status"] == "running"
    with pytest.raises(TimeoutError):
        node.client.wait(cid, timeout=0.3)
    node.client.kill(cid, 9, all=True)
    answer = node.client.wait(cid, timeout=20)
    assert (answer["exit_code"], answer["oom_killed"]) == (137, False)
    start, exit_ = next(events), next(events)
    assert (start["id"], start["event"]) == (cid, "start")
    assert (exit_["id"], exit_["event"], exit_["exit_code"]) == (cid, "exit", 137)
    node.client.delete(cid)
    assert not (node.root / "containers" / cid).exists()
    assert not (node.runtime_root / cid).exists()
    with pytest.raises(SupervisorError, match="no such container"):
        node.client.state(cid)


def test_delete_force_of_a_running_container_answers_its_waiters(
    node: Node, make_bundle: BundleFactory
) -> None:
    node.start()
    cid = node.run(make_bundle(so.with_args(["sleep", "60"]), shared_rootfs=True))
    with pytest.raises(SupervisorError, match="running"):
        node.client.delete(cid)
    node.client.delete(cid, force=True)
    assert node.client.list() == []


# -- attach ---------------------------------------------------------------------------


def test_attach_streams_output_and_feeds_stdin(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    bundle = make_bundle(sh("echo ready; cat; echo bye >&2"))
    cid = node.create(bundle, stdin=True)
    conn = node.client.attach(cid, stdin=True, stdout=True, stderr=True)
    node.client.start(cid)
    conn.sendall(b"hello\n")
    conn.sendall(b"world\n")
    conn.shutdown(socket.SHUT_WR)  # StdinOnce: the container's stdin closes
    frames = read_frames(conn)
    conn.close()
    out = b"".join(d for s, d in frames if s == 1)
    err = b"".join(d for s, d in frames if s == 2)
    assert out == b"ready\nhello\nworld\n"
    assert err == b"bye\n"
    assert node.client.wait(cid, timeout=20)["exit_code"] == 0
    assert [e["log"] for e in read_log(node.log(cid))] == [
        "ready\n",
        "hello\n",
        "world\n",
        "bye\n",
    ]


def test_attach_only_sees_what_comes_after_it(node: Node, make_bundle: BundleFactory) -> None:
    node.start()
    cid = node.run(make_bundle(sh("echo early; sleep 1; echo late >&2; echo late-out")))
    time.sleep(0.5)
    conn = node.client.attach(cid, stdout=False, stderr=True)
    frames = read_frames(conn)
    conn.close()
    assert frames == [(2, b"late\n")]


def test_a_slow_attach_client_is_dropped_not_waited_for(
    node: Node, make_bundle: BundleFactory
) -> None:
    node.start()
    # ~8 MiB of output, fast; the attach client never reads
    cid = node.create(make_bundle(sh("yes 0123456789abcdef | head -c 8000000; echo; echo end")))
    conn = node.client.attach(cid)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    node.client.start(cid)
    assert node.client.wait(cid, timeout=30)["exit_code"] == 0
    assert read_log(node.log(cid))[-1]["log"] == "end\n"
    conn.close()
    assert node.client.ping()["containers"] == 1


# -- robustness -----------------------------------------------------------------------


def test_second_supervisor_on_the_same_root_refuses(node: Node) -> None:
    pid = node.start()
    other = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.supervisor",
            "--root",
            str(node.root),
            "--socket",
            f"{node.socket}.2",
            "--runtime-root",
            str(node.runtime_root),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=ROOT,
    )
    assert other.returncode == 1
    assert f"another supervisor (pid {pid}) already runs" in other.stderr
    assert node.client.ping()["pid"] == pid
    assert start_supervisor(str(node.root), str(node.socket), str(node.runtime_root)) == pid


def test_bad_requests_get_errors_and_the_supervisor_lives_on(node: Node) -> None:
    pid = node.start()

    def raw(data: bytes) -> list[dict[str, object]]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(node.socket))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            buf = b""
            while chunk := s.recv(65536):
                buf += chunk
        return [json.loads(line) for line in buf.splitlines()]

    answers = raw(b'{not json\n[1,2]\n{"op": "nope"}\n{"op": "state"}\n{"op": "ping"}\n')
    assert [a["ok"] for a in answers] == [False, False, False, False, True]
    assert "malformed request" in str(answers[0]["error"])
    assert "unknown op" in str(answers[2]["error"])
    assert "id" in str(answers[3]["error"])
    with pytest.raises(SupervisorError, match=r"process\.terminal must be true"):
        node.client.call({"op": "create", "id": "x", "bundle": "/b", "log_path": "/l", "tty": True})
    with pytest.raises(SupervisorError, match="invalid container id"):
        node.client.call({"op": "create", "id": "../x", "bundle": "/b", "log_path": "/l"})
    with pytest.raises(SupervisorError):
        node.create(Path("/nonexistent-bundle"))
    # a client that disconnects mid-request, and one that disconnects while waiting
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(node.socket))
        s.sendall(b'{"op": "pi')
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(node.socket))
        s.sendall(b'{"op": "events"}\n')
    assert node.client.ping() == {"ok": True, "pid": pid, "containers": 0}


# -- surviving the daemon ----------------------------------------------------------------

DAEMON = """
import socket, sys, time
from agent.supervisor.client import SupervisorClient, start_supervisor
root, sock, runtime_root, cid, bundle, log = sys.argv[1:]
start_supervisor(root, sock, runtime_root)
c = SupervisorClient(sock)
c.create(cid, bundle, log)
a = c.attach(cid)
w = socket.socket(socket.AF_UNIX)
w.connect(sock)
w.sendall(b'{"op": "wait", "id": "%s"}\\n' % cid.encode())
c.start(cid)
a.recv(100)  # the first frame arrived: attached and streaming
print("ready", flush=True)
time.sleep(600)
"""


def test_supervisor_outlives_a_killed_daemon(node: Node, make_bundle: BundleFactory) -> None:
    cid = unique()
    script = "i=0; while [ $i -lt 30 ]; do echo tick-$i; i=$((i+1)); sleep 0.05; done; exit 7"
    bundle = make_bundle(sh(script))
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DAEMON,
            str(node.root),
            str(node.socket),
            str(node.runtime_root),
            cid,
            str(bundle),
            str(node.log(cid)),
        ],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline() == b"ready\n"
    finally:
        daemon.kill()  # mid-attach and mid-wait
        daemon.wait()
    pid = node.pid()
    assert _is_supervisor(pid)
    assert node.client.ping()["pid"] == pid
    assert node.client.state(cid)["status"] == "running"
    assert node.client.wait(cid, timeout=20)["exit_code"] == 7
    assert [e["log"] for e in read_log(node.log(cid))] == [f"tick-{i}\n" for i in range(30)]


def test_restarted_supervisor_adopts_and_loses_honestly(
    node: Node, make_bundle: BundleFactory
) -> None:
    pid = node.start()
    bundle = make_bundle(so.with_args(["sleep", "60"]), shared_rootfs=True)
    alive = node.run(bundle)
    done = node.run(make_bundle(sh("exit 2"), shared_rootfs=True))
    node.client.wait(done, timeout=20)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    node.start()
    assert node.client.state(done)["exit_code"] == 2
    state = node.client.state(alive)
    assert (state["status"], state["adopted"], state["lost"]) == ("running", True, False)
    node.client.kill(alive, 9, all=True)
    answer = node.client.wait(alive, timeout=20)
    assert answer["exit_code"] is None and answer["lost"] is True
    assert node.client.state(alive)["status"] == "exited"


# -- memory --------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_fifty_containers_cost_little_memory(
    node: Node, make_bundle: BundleFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = node.start()
    idle = rss_kib(pid)
    bundle = make_bundle(sh("echo hi; sleep 30"), shared_rootfs=True)
    warm = node.run(bundle)
    node.client.kill(warm, 9, all=True)
    node.client.wait(warm, timeout=20)
    node.client.delete(warm)
    before = rss_kib(pid)
    ids = [node.run(bundle) for _ in range(50)]
    states = node.client.list()
    assert [s["status"] for s in states] == ["running"] * 50
    with_50 = rss_kib(pid)
    per_container = (with_50 - before) / 50
    with capsys.disabled():
        print(
            f"\nsupervisor RSS: idle {idle} KiB, after one container {before} KiB, "
            f"with 50 running {with_50} KiB: {per_container:.1f} KiB per container"
        )
    for cid in ids:
        node.client.kill(cid, 9, all=True)
    for cid in ids:
        assert node.client.wait(cid, timeout=20)["exit_code"] == 137
        node.client.delete(cid)
    assert per_container < 2048

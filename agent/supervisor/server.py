"""The supervisor's event loop: containers' pipes, their exits, the protocol socket.

One thread, one `selectors` loop. What it waits on:

- the listening socket and its client connections (one JSON request per line);
- each container's stdout and stderr pipes (→ json-file log + attach frames),
  or its pty master (tty: → the log as stdout + raw attach bytes);
- each exec process's pipes or pty master (→ its exec_attach clients only), and
  the answer channel of an exec_start helper;
- a wake-up pipe that SIGCHLD writes to (→ waitpid(-1, WNOHANG) until empty);
- a timeout, while something must be polled (adopted containers, an exited
  container whose pipes are still held open by a straggler).

A container's exit is published (state "exited", wait answers, the exit event)
once its process is reaped *and* its pipes are drained, so that whoever learns
of the exit finds the whole log already written.

Containers are created in a short-lived forked helper whose only open file
descriptors are the container's stdio: the container's init runs from fork to
`start` without exec, and would otherwise hold a copy of every descriptor the
supervisor has (other containers' stdin pipes, client connections, the lock).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time

from agent.runtime import fastjson
from agent.runtime.runtime import ExitStatus, Runtime, preload, process_start_time, valid_id
from agent.supervisor import records
from agent.supervisor.execs import (
    InvalidRequest,
    bundle_config,
    bundle_terminal,
    check_process,
    window_size,
    winsize,
)
from agent.supervisor.frames import STDERR, STDIN, STDOUT, encode_frame
from agent.supervisor.logs import JsonFileLog, LineSplitter, rfc3339_nano
from agent.supervisor.records import CREATED, EXITED, RUNNING, Record

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.runtime.linux.cgroups import Cgroup

READ_SIZE = 65536
MAX_REQUEST = 1 << 20  # a request line longer than this is refused
MAX_CONN_BUFFER = 1 << 20  # an attach/events client this far behind is dropped
MAX_STDIN_BUFFER = 1 << 20  # stop reading attach input while this much waits for the container
PIPE_GRACE = 2.0  # seconds to wait for pipe EOF after the container's pid 1 was reaped
POLL_INTERVAL = 0.5
KILL_WAIT = 10.0
SIGKILL = 9

Response = dict[str, object]


class RequestError(Exception):
    """A request refused with a one-line reason."""


# -- connections ---------------------------------------------------------------------


class Conn:
    """A client connection. Modes: request (default), wait, attach, events, and
    pending (a create or an exec_start waiting for its helper; later requests wait
    too)."""

    __slots__ = (
        "close_when_flushed",
        "closed",
        "fd",
        "mask",
        "mode",
        "paused",
        "proc",
        "rbuf",
        "read_eof",
        "sock",
        "want_stderr",
        "want_stdin",
        "want_stdout",
        "wbuf",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.mode = "request"
        self.mask = 0
        self.read_eof = False
        self.paused = False
        self.closed = False
        self.close_when_flushed = False
        self.proc: Proc | None = None  # the container or exec it waits for or attaches to
        self.want_stdin = self.want_stdout = self.want_stderr = False


class Proc:
    """A process whose output the supervisor reads: a container's pid 1 or an exec.

    Without a tty: stdout/stderr pipes (and a stdin pipe if asked for). With a
    tty: the pty master, read as stdout, and a dup of it written as stdin.
    """

    __slots__ = (
        "attachers",
        "exit",
        "master",
        "open_stdin",
        "pipes",
        "reaped_at",
        "stdin_buf",
        "stdin_close",
        "stdin_fd",
        "tty",
        "waiters",
        "winsize",
    )

    def __init__(self, tty: bool, open_stdin: bool) -> None:
        self.tty = tty
        self.open_stdin = open_stdin or tty  # whether attach input is taken at all
        self.pipes: dict[int, int] = {}  # fd -> stream
        self.master = -1  # the pty master (tty only), while open
        self.winsize: tuple[int, int] | None = None  # asked for before the pty existed
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_close = False
        self.exit: ExitStatus | None = None  # reaped, not yet published
        self.reaped_at = 0.0
        self.waiters: list[Conn] = []
        self.attachers: list[Conn] = []

    @property
    def finished(self) -> bool:
        raise NotImplementedError

    @property
    def name(self) -> str:
        raise NotImplementedError


class Box(Proc):
    """A container the supervisor holds: its record plus its live plumbing."""

    __slots__ = ("cgroup", "dir", "execs", "log", "rec", "splitters")

    def __init__(self, rec: Record, container_dir: str) -> None:
        super().__init__(rec.tty, rec.stdin)
        self.rec = rec
        self.dir = container_dir
        self.cgroup: Cgroup | None = None
        self.log: JsonFileLog | None = None
        self.splitters: dict[int, LineSplitter] = {}
        self.execs: dict[str, Exec] = {}

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, "state.json")

    @property
    def finished(self) -> bool:
        return self.rec.status == EXITED

    @property
    def name(self) -> str:
        return f"container {self.rec.id}"


EXEC_CREATED = "created"
EXEC_STARTING = "starting"
EXEC_RUNNING = "running"
EXEC_EXITED = "exited"


class Exec(Proc):
    """A process run in a container by `exec_start`; kept until the container goes.

    Its output goes to its attach clients only, never to the container's log.
    """

    __slots__ = ("box", "exec_id", "exit_code", "pid", "process", "start_conn", "status")

    def __init__(
        self, exec_id: str, box: Box, process: dict[str, object], stdin: bool, tty: bool
    ) -> None:
        super().__init__(tty, stdin)
        self.exec_id = exec_id
        self.box = box
        self.process = process
        self.status = EXEC_CREATED
        self.pid = 0
        self.exit_code: int | None = None
        self.start_conn: Conn | None = None

    @property
    def finished(self) -> bool:
        return self.status == EXEC_EXITED

    @property
    def name(self) -> str:
        return f"exec {self.exec_id}"


class Helper:
    """A forked helper at work (a container's create or an exec's start): its
    answer channel, the one-line answer as it comes, and the descriptors sent."""

    __slots__ = ("buf", "chan", "fds", "pid")

    def __init__(self, chan: socket.socket, pid: int) -> None:
        self.chan = chan
        self.pid = pid
        self.buf = bytearray()
        self.fds: list[int] = []


class ExecHelper(Helper):
    """An exec_start in progress: what waits for it (pipes not yet registered)."""

    __slots__ = ("ex", "parent_fds")

    def __init__(self, ex: Exec, chan: socket.socket, pid: int, parent_fds: dict[int, int]) -> None:
        super().__init__(chan, pid)
        self.ex = ex
        self.parent_fds = parent_fds  # fd -> stream (STDOUT, STDERR, or STDIN for its input)


class CreateHelper(Helper):
    """A create in progress: the container to be, its log and our ends of its stdio."""

    __slots__ = ("conn", "console", "log", "parent_fds", "rec")

    def __init__(
        self,
        rec: Record,
        chan: socket.socket,
        pid: int,
        log: JsonFileLog,
        parent_fds: dict[int, int],
        console: socket.socket | None,
        conn: Conn,
    ) -> None:
        super().__init__(chan, pid)
        self.rec = rec  # its pid and start time are filled in from the answer
        self.log = log
        self.parent_fds = parent_fds  # fd -> stream, as for ExecHelper
        self.console = console  # a tty's: the container's init sends its pty master here
        self.conn: Conn | None = conn


# -- the supervisor ---------------------------------------------------------------------


class Supervisor:
    def __init__(self, root: str, socket_path: str, runtime_root: str) -> None:
        self.root = root
        self.socket_path = socket_path
        self.runtime = Runtime(runtime_root, warn=_warn)
        self.containers_dir = os.path.join(root, "containers")
        self.sel = selectors.DefaultSelector()
        self.boxes: dict[str, Box] = {}
        self.by_pid: dict[int, Proc] = {}
        self.pipe_owner: dict[int, Proc] = {}  # stdout/stderr read end or stdin write end
        self.execs: dict[str, Exec] = {}
        self.helpers: dict[int, Helper] = {}  # helpers at work, by their channel's fd
        self.helper_pids: set[int] = set()  # reaped silently
        self.creating: dict[str, CreateHelper] = {}  # by container id
        self.orphan_exits: dict[int, int] = {}  # reaped while a helper had not said its pid
        self.conns: dict[int, Conn] = {}
        self.events: list[Conn] = []
        self.running = True
        self.listener: socket.socket | None = None
        self.wake_r = self.wake_w = -1

    # -- set-up --------------------------------------------------------------------

    def setup(self) -> None:
        from agent.runtime.linux import flags, libc

        libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
        os.makedirs(self.containers_dir, mode=0o700, exist_ok=True)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, _noop)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_wake)
        self.recover()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(self.socket_path)
        finally:
            os.umask(old)
        listener.listen(128)
        listener.setblocking(False)
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ, self._on_accept)

    def _stop(self, _sig: int, _frame: object) -> None:
        self.running = False

    def recover(self) -> None:
        """Load the records a previous supervisor left; adopt what still runs."""
        now = rfc3339_nano()
        for name in sorted(os.listdir(self.containers_dir)):
            d = os.path.join(self.containers_dir, name)
            try:
                rec = records.load(os.path.join(d, "state.json"))
            except (OSError, ValueError, KeyError) as e:
                _warn(f"container {name}: unreadable record, skipped: {e}")
                continue
            box = Box(rec, d)
            box.open_stdin = False  # its stdin pipe or pty went with the old supervisor
            if rec.status != EXITED:
                if rec.pid > 0 and process_start_time(rec.pid) == rec.pid_start_time:
                    rec.adopt()
                else:
                    rec.mark_lost(now)
                records.save(box.state_path, rec.to_json())
            self.boxes[rec.id] = box

    # -- the loop --------------------------------------------------------------------

    def serve(self) -> None:
        while self.running:
            timeout = POLL_INTERVAL if self._must_poll() else None
            for key, mask in self.sel.select(timeout):
                callback: Callable[[object, int], None] = key.data
                try:
                    callback(key.fileobj, mask)
                except Exception as e:  # one bad event never takes the supervisor down
                    _warn(f"internal error: {type(e).__name__}: {e}")
            self._reap()
            self._poll()

    def close(self) -> None:
        for conn in list(self.conns.values()):
            self._close_conn(conn)
        for h in list(self.helpers.values()):
            self._drop_helper(h)
            for fd in h.fds:
                os.close(fd)
            if isinstance(h, CreateHelper):
                self._discard_create(h)
        if self.listener is not None:
            self.listener.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass

    def _must_poll(self) -> bool:
        return any(
            not b.finished and (b.rec.adopted or b.exit is not None) for b in self.boxes.values()
        ) or any(not e.finished and e.exit is not None for e in self.execs.values())

    def _on_wake(self, _fileobj: object, _mask: int) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is not None:
                self._exited(proc, ExitStatus.from_wait(status))
            elif pid in self.helper_pids:
                self.helper_pids.discard(pid)
            elif self.helpers:  # perhaps a process whose helper has not answered yet
                self.orphan_exits[pid] = status

    def _exited(self, proc: Proc, result: ExitStatus) -> None:
        if isinstance(proc, Box) and proc.cgroup is not None and result.signal == SIGKILL:
            result.oom_killed = proc.cgroup.oom_killed()
        proc.exit = result
        proc.reaped_at = time.monotonic()
        if not proc.pipes:
            self._publish(proc)

    def _publish(self, proc: Proc) -> None:
        if isinstance(proc, Box):
            self._finish(proc)
        elif isinstance(proc, Exec):
            self._finish_exec(proc)

    def _poll(self) -> None:
        now = time.monotonic()
        procs: list[Proc] = [*self.boxes.values(), *self.execs.values()]
        for proc in procs:
            if proc.finished:
                continue
            if proc.exit is not None and now - proc.reaped_at >= PIPE_GRACE:
                # A straggler holds the pipes open: take what is there and stop.
                for fd in list(proc.pipes):
                    self._drain_pipe(proc, fd)
                    self._close_pipe(proc, fd)
                self._publish(proc)
            elif (
                isinstance(proc, Box)
                and proc.rec.adopted
                and process_start_time(proc.rec.pid) != proc.rec.pid_start_time
            ):
                self._finish(proc)

    def _finish(self, box: Box) -> None:
        """Publish the exit: record, waiters, event, attach connections."""
        if box.finished:
            return
        now = rfc3339_nano()
        if box.exit is not None:
            box.rec.mark_exited(box.exit.code, box.exit.oom_killed, now)
        else:
            box.rec.mark_lost(now)
        self._save(box)
        if box.log is not None:
            box.log.close()
            box.log = None
        self._close_stdin(box)
        answer = _wait_answer(box.rec)
        for conn in box.waiters:
            conn.mode = "request"
            self._send(conn, answer)
            self._process_requests(conn)
        box.waiters.clear()
        event: Response = {
            "id": box.rec.id,
            "event": "exit",
            "exit_code": box.rec.exit_code,
            "oom_killed": box.rec.oom_killed,
            "time": now,
        }
        if box.rec.lost:
            event["lost"] = True
        self._emit(event)
        for conn in box.attachers:
            conn.close_when_flushed = True
            self._update(conn)
        box.attachers.clear()

    def _save(self, box: Box) -> None:
        records.save(box.state_path, box.rec.to_json())

    def _emit(self, event: Response) -> None:
        line = fastjson.dumps(event).encode() + b"\n"
        for conn in list(self.events):
            self._queue(conn, line, limit=MAX_CONN_BUFFER)

    # -- container output ------------------------------------------------------------

    def _on_pipe(self, fileobj: object, _mask: int) -> None:
        fd = fileobj if isinstance(fileobj, int) else -1
        proc = self.pipe_owner.get(fd)
        if proc is None:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO from a pty master: the last holder of its slave is gone
            data = b""
        if data:
            self._output(proc, proc.pipes[fd], data)
        else:
            self._close_pipe(proc, fd)
            if not proc.pipes and proc.exit is not None:
                self._publish(proc)

    def _output(self, proc: Proc, stream: int, data: bytes) -> None:
        if isinstance(proc, Box) and proc.log is not None:
            try:
                proc.log.write(proc.splitters[stream].feed(data), stream)
            except OSError as e:
                _warn(f"container {proc.rec.id}: log {proc.rec.log_path}: {e}")
        frame = b""
        for conn in list(proc.attachers):
            if (conn.want_stdout if stream == STDOUT else conn.want_stderr) and not conn.closed:
                # A tty's output goes raw, as Docker sends it; pipes' output in frames.
                frame = frame or (data if proc.tty else encode_frame(stream, data))
                self._queue(conn, frame, limit=MAX_CONN_BUFFER)

    def _drain_pipe(self, proc: Proc, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self._output(proc, proc.pipes[fd], data)

    def _close_pipe(self, proc: Proc, fd: int) -> None:
        stream = proc.pipes.pop(fd)
        self.pipe_owner.pop(fd, None)
        self.sel.unregister(fd)
        os.close(fd)
        if fd == proc.master:
            proc.master = -1
        if not isinstance(proc, Box):
            return
        rest = proc.splitters[stream].flush()
        if rest and proc.log is not None:
            try:
                proc.log.write(rest, stream)
            except OSError as e:
                _warn(f"container {proc.rec.id}: log {proc.rec.log_path}: {e}")

    def _add_output(self, proc: Proc, fd: int, stream: int) -> None:
        os.set_blocking(fd, False)
        proc.pipes[fd] = stream
        self.pipe_owner[fd] = proc
        if isinstance(proc, Box):
            proc.splitters[stream] = LineSplitter()
        self.sel.register(fd, selectors.EVENT_READ, self._on_pipe)

    def _add_stdin(self, proc: Proc, fd: int) -> None:
        os.set_blocking(fd, False)
        proc.stdin_fd = fd
        self.pipe_owner[fd] = proc
        if proc.stdin_buf or proc.stdin_close:  # what attach clients sent before it started
            self._flush_stdin(proc)

    def _add_master(self, proc: Proc, master: int) -> None:
        """The pty master: read as stdout, written (through a dup) as stdin."""
        self._add_output(proc, master, STDOUT)
        proc.master = master
        self._add_stdin(proc, os.dup(master))
        if proc.winsize is not None:
            try:
                _set_winsize(master, *proc.winsize)
            except OSError as e:
                _warn(f"{proc.name}: resize: {e}")

    # -- container input -----------------------------------------------------------------

    def _feed_stdin(self, proc: Proc, data: bytes) -> None:
        """Attach input: kept until the process has its stdin (an exec not yet started)."""
        if not proc.open_stdin or proc.stdin_close:
            return
        proc.stdin_buf += data
        self._flush_stdin(proc)

    def _flush_stdin(self, proc: Proc) -> None:
        if proc.stdin_fd >= 0:
            while proc.stdin_buf:
                try:
                    n = os.write(proc.stdin_fd, proc.stdin_buf)
                except BlockingIOError:
                    break
                except OSError:  # EPIPE/EIO: the process closed its stdin, or is gone
                    self._close_stdin(proc)
                    break
                del proc.stdin_buf[:n]
        if proc.stdin_fd >= 0:
            registered = proc.stdin_fd in self.sel.get_map()
            if proc.stdin_buf and not registered:
                self.sel.register(proc.stdin_fd, selectors.EVENT_WRITE, self._on_stdin_writable)
            elif not proc.stdin_buf and registered:
                self.sel.unregister(proc.stdin_fd)
            if not proc.stdin_buf and proc.stdin_close:
                self._close_stdin(proc)
        for conn in proc.attachers:  # pause/resume the attach clients that feed it
            if conn.want_stdin:
                conn.paused = len(proc.stdin_buf) > MAX_STDIN_BUFFER
                self._update(conn)

    def _on_stdin_writable(self, fileobj: object, _mask: int) -> None:
        proc = self.pipe_owner.get(fileobj if isinstance(fileobj, int) else -1)
        if proc is not None:
            self._flush_stdin(proc)

    def _close_stdin(self, proc: Proc) -> None:
        """Close it for good: later input is dropped."""
        proc.stdin_close = True
        proc.stdin_buf.clear()
        if proc.stdin_fd < 0:
            return
        if proc.stdin_fd in self.sel.get_map():
            self.sel.unregister(proc.stdin_fd)
        self.pipe_owner.pop(proc.stdin_fd, None)
        os.close(proc.stdin_fd)
        proc.stdin_fd = -1

    # -- client connections ------------------------------------------------------------

    def _on_accept(self, _fileobj: object, _mask: int) -> None:
        assert self.listener is not None
        for _ in range(64):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: keep serving the others
                _warn(f"accept: {e}")
                return
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns[conn.fd] = conn
            self._update(conn)

    def _update(self, conn: Conn) -> None:
        """Register the connection for what it needs now; close it when it is done."""
        if conn.closed:
            return
        if conn.close_when_flushed and not conn.wbuf:
            self._close_conn(conn)
            return
        mask = 0
        if not conn.read_eof and not conn.paused and not conn.close_when_flushed:
            mask |= selectors.EVENT_READ
        if conn.wbuf:
            mask |= selectors.EVENT_WRITE
        if mask == conn.mask:
            return
        if conn.mask == 0:
            self.sel.register(conn.sock, mask, self._on_conn)
        elif mask == 0:
            self.sel.unregister(conn.sock)
        else:
            self.sel.modify(conn.sock, mask, self._on_conn)
        conn.mask = mask

    def _close_conn(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.mask:
            self.sel.unregister(conn.sock)
            conn.mask = 0
        self.conns.pop(conn.fd, None)
        if conn in self.events:
            self.events.remove(conn)
        proc = conn.proc
        if proc is not None:
            if conn in proc.waiters:
                proc.waiters.remove(conn)
            if conn in proc.attachers:
                proc.attachers.remove(conn)
            if isinstance(proc, Exec) and proc.start_conn is conn:
                proc.start_conn = None
        for h in self.creating.values():
            if h.conn is conn:
                h.conn = None
        conn.sock.close()

    def _on_conn(self, fileobj: object, mask: int) -> None:
        if not isinstance(fileobj, socket.socket):
            return
        conn = self.conns.get(fileobj.fileno())
        if conn is None:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if mask & selectors.EVENT_READ and not conn.closed:
            self._read(conn)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_conn(conn)
            return
        if not data:
            conn.read_eof = True
            self._on_eof(conn)
            return
        if conn.mode == "attach":
            proc = conn.proc
            if conn.want_stdin and proc is not None:
                self._feed_stdin(proc, data)
            return
        if conn.mode == "events":
            return
        conn.rbuf += data
        self._process_requests(conn)

    def _on_eof(self, conn: Conn) -> None:
        if conn.mode == "attach":
            proc = conn.proc
            # StdinOnce: the first client to end closes it; never a tty's (Docker keeps it).
            if conn.want_stdin and proc is not None and not proc.tty:
                proc.stdin_close = True
                self._flush_stdin(proc)
            self._update(conn)
        elif conn.mode == "pending":  # the answer to create or exec_start still comes
            self._update(conn)
        elif conn.mode == "request" and not conn.rbuf.strip():
            conn.close_when_flushed = True
            self._update(conn)
        elif conn.mode == "request":
            self._process_requests(conn)
            conn.close_when_flushed = True
            self._update(conn)
        else:  # a waiter or an events listener that left
            self._close_conn(conn)

    def _process_requests(self, conn: Conn) -> None:
        while conn.mode == "request" and not conn.closed:
            nl = conn.rbuf.find(b"\n")
            if nl < 0:
                if len(conn.rbuf) > MAX_REQUEST:
                    self._send(conn, _error("request too long"))
                    conn.close_when_flushed = True
                    self._update(conn)
                elif conn.read_eof and conn.rbuf.strip():
                    line = bytes(conn.rbuf)
                    conn.rbuf.clear()
                    self._handle_line(conn, line)
                return
            line = bytes(conn.rbuf[:nl])
            del conn.rbuf[: nl + 1]
            if line.strip():
                self._handle_line(conn, line)

    def _handle_line(self, conn: Conn, line: bytes) -> None:
        try:
            req = fastjson.loads(line.decode("utf-8", errors="replace"))
        except ValueError as e:
            self._send(conn, _error(f"malformed request: {e}"))
            return
        if not isinstance(req, dict):
            self._send(conn, _error("malformed request: not a JSON object"))
            return
        op = req.get("op")
        handler = self.HANDLERS.get(op) if isinstance(op, str) else None
        if handler is None:
            self._send(conn, _error(f"unknown op {op!r}"))
            return
        try:
            response = handler(self, conn, req)
        except RequestError as e:
            response = _error(str(e))
        except Exception as e:  # runtime errors and the unforeseen: one line back
            response = _error(_one_line(e))
        if response is not None:
            self._send(conn, response)

    def _send(self, conn: Conn, doc: Response) -> None:
        self._queue(conn, fastjson.dumps(doc).encode() + b"\n")

    def _queue(self, conn: Conn, data: bytes, limit: int | None = None) -> None:
        if conn.closed:
            return
        conn.wbuf += data
        self._flush(conn)
        if limit is not None and len(conn.wbuf) > limit:
            _warn(f"dropping a {conn.mode} client that is {len(conn.wbuf)} bytes behind")
            self._close_conn(conn)

    def _flush(self, conn: Conn) -> None:
        while conn.wbuf and not conn.closed:
            try:
                n = conn.sock.send(conn.wbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close_conn(conn)
                return
            del conn.wbuf[:n]
        self._update(conn)

    # -- requests -------------------------------------------------------------------

    def _box(self, req: dict[str, object]) -> Box:
        cid = _str(req, "id")
        box = self.boxes.get(cid)
        if box is None:
            raise RequestError(f"no such container: {cid}")
        return box

    def op_ping(self, _conn: Conn, _req: dict[str, object]) -> Response:
        return {"ok": True, "pid": os.getpid(), "containers": len(self.boxes)}

    def op_create(self, conn: Conn, req: dict[str, object]) -> Response | None:
        """Fork the create helper and answer when it does: the event loop goes on
        meanwhile, so containers are set up in parallel."""
        cid = _str(req, "id")
        if not valid_id(cid):
            raise RequestError(f"invalid container id {cid!r}")
        if cid in self.boxes or cid in self.creating:
            raise RequestError(f"container {cid} already exists")
        bundle = _str(req, "bundle")
        log_path = _str(req, "log_path")
        max_size = req.get("log_max_size")
        if max_size is not None and (not isinstance(max_size, int) or max_size <= 0):
            raise RequestError("log_max_size: a positive integer or null")
        max_files = req.get("log_max_files", 1)
        if not isinstance(max_files, int) or max_files < 1:
            raise RequestError("log_max_files: an integer ≥ 1")
        want_stdin = bool(req.get("stdin"))
        tty = bool(req.get("tty"))
        config = bundle_config(bundle)
        preload(config)  # the helper forked below finds it all loaded
        if tty != bundle_terminal(config):
            raise RequestError(
                "tty: the bundle's process.terminal must be true"
                if tty
                else "the bundle's process.terminal is true: create the container with tty"
            )
        try:
            parent = os.path.dirname(log_path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            log = JsonFileLog(log_path, max_size, max_files)
        except OSError as e:
            raise RequestError(f"log {log_path}: {e.strerror or e}") from None
        parent_fds: dict[int, int] = {}  # ours: fd -> stream
        child_fds: list[int] = []  # the helper's (and the container's) stdio
        console: socket.socket | None = None
        chan, chan_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child_fds.append(chan_child.detach())
            if tty:
                # The container's init makes the pty and sends its master through
                # the console socket; its stdio before that is /dev/null.
                console, console_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                console_fd = console_child.detach()
                child_fds.append(console_fd)
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                child_fds.append(null)
                stdio = (null, null, null)
            else:
                console_fd = -1
                out_r, out_w = os.pipe()
                parent_fds[out_r] = STDOUT
                child_fds.append(out_w)
                err_r, err_w = os.pipe()
                parent_fds[err_r] = STDERR
                child_fds.append(err_w)
                if want_stdin:
                    in_r, in_w = os.pipe()
                    parent_fds[in_w] = STDIN
                else:
                    in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                child_fds.append(in_r)
                stdio = (in_r, out_w, err_w)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                _helper_main(self.runtime, cid, bundle, stdio, child_fds[0], console_fd)
        except BaseException:
            log.close()
            chan.close()
            if console is not None:
                console.close()
            for fd in parent_fds:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        rec = Record(cid, 0, 0, log_path, rfc3339_nano(), want_stdin, tty)
        h = CreateHelper(rec, chan, pid, log, parent_fds, console, conn)
        self._watch_helper(h)
        self.creating[cid] = h
        conn.mode = "pending"
        return None

    def _watch_helper(self, h: Helper) -> None:
        h.chan.setblocking(False)
        self.helpers[h.chan.fileno()] = h
        self.helper_pids.add(h.pid)
        self.sel.register(h.chan, selectors.EVENT_READ, self._on_helper)

    def _drop_helper(self, h: Helper) -> None:
        self.helpers.pop(h.chan.fileno(), None)
        self.sel.unregister(h.chan)
        h.chan.close()

    def _created(self, h: CreateHelper, doc: dict[str, object] | None) -> None:
        cid = h.rec.id
        self.creating.pop(cid, None)
        if doc is not None:
            for warning in _strs(doc.get("warnings")):
                _warn(f"container {cid}: {warning}")
        pid = doc.get("pid") if doc is not None else None
        master = -1
        try:
            if doc is None:
                raise RequestError(f"create container {cid}: the helper died without an answer")
            if "error" in doc or not isinstance(pid, int) or pid <= 0:
                raise RequestError(str(doc.get("error") or f"create container {cid}: no pid"))
            container = self.runtime.load(cid)
            if h.console is not None:
                master = _receive_master(h.console, cid)
        except Exception as e:
            self._discard_create(h)
            if h.conn is not None:
                self._answer_pending(h.conn, _error(_one_line(e)))
            return
        finally:
            for fd in h.fds:
                os.close(fd)
            if h.console is not None:
                h.console.close()
        rec = h.rec
        rec.pid = pid
        rec.pid_start_time = container.start_time or process_start_time(pid) or 0
        d = os.path.join(self.containers_dir, cid)
        os.makedirs(d, mode=0o700, exist_ok=True)
        box = Box(rec, d)
        box.cgroup = container.cgroup
        box.log = h.log
        if rec.tty:
            self._add_master(box, master)
        else:
            for fd, stream in h.parent_fds.items():
                if stream == STDIN:
                    self._add_stdin(box, fd)
                else:
                    self._add_output(box, fd, stream)
        self.boxes[cid] = box
        self._save(box)
        status = self._orphan_exit(pid)
        if status is None:
            self.by_pid[pid] = box
        else:
            self._exited(box, ExitStatus.from_wait(status))
        if h.conn is not None:
            self._answer_pending(h.conn, {"ok": True, "pid": pid})

    def _discard_create(self, h: CreateHelper) -> None:
        """A create that failed, or the supervisor stops before it was answered."""
        self.creating.pop(h.rec.id, None)
        h.log.close()
        for fd in h.parent_fds:
            os.close(fd)
        h.parent_fds = {}

    def _orphan_exit(self, pid: int) -> int | None:
        """The wait status of `pid` if it was reaped before its helper said it was
        ours; forgets the others once no helper is at work."""
        status = self.orphan_exits.pop(pid, None)
        if not self.helpers:
            self.orphan_exits.clear()
        return status

    def op_start(self, _conn: Conn, req: dict[str, object]) -> Response:
        box = self._box(req)
        if box.rec.status != CREATED:
            raise RequestError(f"cannot start container {box.rec.id}: it is {box.rec.status}")
        self.runtime.start(box.rec.id)
        now = rfc3339_nano()
        box.rec.mark_started(now)
        self._save(box)
        self._emit({"id": box.rec.id, "event": "start", "time": now})
        return {"ok": True}

    def op_kill(self, _conn: Conn, req: dict[str, object]) -> Response:
        box = self._box(req)
        sig = req.get("signal", 15)
        if not isinstance(sig, int) or isinstance(sig, bool) or not 0 < sig <= 64:
            raise RequestError(f"invalid signal {sig!r}")
        if box.finished or box.exit is not None:
            raise RequestError(f"cannot kill container {box.rec.id}: it is not running")
        self.runtime.kill(box.rec.id, sig, bool(req.get("all")))
        return {"ok": True}

    def op_delete(self, _conn: Conn, req: dict[str, object]) -> Response:
        box = self._box(req)
        force = bool(req.get("force"))
        if box.rec.status == RUNNING and not force and not box.finished:
            raise RequestError(
                f"cannot delete container {box.rec.id}: it is running (stop it or use force)"
            )
        if not box.finished and box.exit is None and box.rec.pid in self.by_pid:
            self._kill_and_reap(box)
        if not box.finished:
            for fd in list(box.pipes):
                self._drain_pipe(box, fd)
                self._close_pipe(box, fd)
            self._finish(box)
        try:
            self.runtime.delete(box.rec.id, force=True)
        except Exception as e:
            from agent.runtime.errors import ContainerNotFound

            if not isinstance(e, ContainerNotFound):
                raise
        self._forget(box)
        return {"ok": True}

    def _kill_and_reap(self, box: Box) -> None:
        """SIGKILL the container and reap its pid 1 here, to keep its exit status."""
        pid = box.rec.pid
        if box.cgroup is not None:
            box.cgroup.kill_all(SIGKILL)
            if box.cgroup.frozen():
                box.cgroup.thaw()
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + KILL_WAIT
        delay = 0.0005
        while True:
            # The exec processes too: a pid namespace's init does not finish exiting
            # while processes that joined the namespace wait to be reaped (by us).
            self._reap()
            if self.by_pid.get(pid) is not box:
                return
            try:
                # Only to learn whether it is ours at all (WNOWAIT: _reap collects it).
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self.by_pid.pop(pid, None)
                return
            if time.monotonic() > deadline:
                raise RequestError(f"container {box.rec.id}: did not die after SIGKILL")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _forget(self, box: Box) -> None:
        self.boxes.pop(box.rec.id, None)
        self.by_pid.pop(box.rec.pid, None)
        for ex in list(box.execs.values()):
            self._forget_exec(ex)
        for conn in list(box.attachers) + list(box.waiters):
            conn.close_when_flushed = True
            self._update(conn)
        try:
            for name in os.listdir(box.dir):
                os.unlink(os.path.join(box.dir, name))
            os.rmdir(box.dir)
        except FileNotFoundError:
            pass

    def op_state(self, _conn: Conn, req: dict[str, object]) -> Response:
        return {"ok": True, **self._box(req).rec.to_json()}

    def op_list(self, _conn: Conn, _req: dict[str, object]) -> Response:
        return {"ok": True, "containers": [b.rec.to_json() for b in self.boxes.values()]}

    def op_wait(self, conn: Conn, req: dict[str, object]) -> Response | None:
        box = self._box(req)
        if box.finished:
            return _wait_answer(box.rec)
        conn.mode = "wait"
        conn.proc = box
        box.waiters.append(conn)
        return None

    def op_attach(self, conn: Conn, req: dict[str, object]) -> Response | None:
        self._attach(conn, self._box(req), req)
        return None

    def _attach(self, conn: Conn, proc: Proc, req: dict[str, object]) -> None:
        self._send(conn, {"ok": True})
        conn.mode = "attach"
        conn.proc = proc
        conn.want_stdin = bool(req.get("stdin")) and proc.open_stdin
        conn.want_stdout = bool(req.get("stdout"))
        conn.want_stderr = bool(req.get("stderr"))
        conn.rbuf.clear()
        if proc.finished:
            conn.close_when_flushed = True
        else:
            proc.attachers.append(conn)
        self._update(conn)

    def op_resize(self, _conn: Conn, req: dict[str, object]) -> Response:
        box = self._box(req)
        self._resize(box, req)
        return {"ok": True}

    def _resize(self, proc: Proc, req: dict[str, object]) -> None:
        try:
            height, width = window_size(req)
        except InvalidRequest as e:
            raise RequestError(str(e)) from None
        if not proc.tty:
            raise RequestError(f"{proc.name} has no tty")
        if proc.finished or proc.exit is not None:
            raise RequestError(f"cannot resize {proc.name}: it is not running")
        fd = proc.master if proc.master >= 0 else proc.stdin_fd
        if fd < 0:  # an exec not started yet: applied when its pty comes
            proc.winsize = (height, width)
            return
        try:
            _set_winsize(fd, height, width)
        except OSError as e:
            raise RequestError(f"resize {proc.name}: {e.strerror or e}") from None

    # -- exec -------------------------------------------------------------------------

    def _exec(self, req: dict[str, object]) -> Exec:
        exec_id = _str(req, "exec_id")
        ex = self.execs.get(exec_id)
        if ex is None:
            raise RequestError(f"no such exec: {exec_id}")
        return ex

    def _check_running(self, box: Box) -> None:
        if box.rec.status != RUNNING or box.exit is not None or box.rec.adopted:
            why = (
                "is not running"
                if not box.rec.adopted
                else "was adopted (its processes are not ours)"
            )
            raise RequestError(f"cannot exec in container {box.rec.id}: it {why}")

    def op_exec_create(self, _conn: Conn, req: dict[str, object]) -> Response:
        box = self._box(req)
        exec_id = _str(req, "exec_id")
        if not valid_id(exec_id):
            raise RequestError(f"invalid exec id {exec_id!r}")
        if exec_id in self.execs:
            raise RequestError(f"exec {exec_id} already exists")
        self._check_running(box)
        tty = bool(req.get("tty"))
        try:
            process = check_process(req.get("process"), tty)
        except InvalidRequest as e:
            raise RequestError(str(e)) from None
        ex = Exec(exec_id, box, process, bool(req.get("stdin")), tty)
        self.execs[exec_id] = ex
        box.execs[exec_id] = ex
        return {"ok": True}

    def op_exec_attach(self, conn: Conn, req: dict[str, object]) -> Response | None:
        self._attach(conn, self._exec(req), req)
        return None

    def op_exec_start(self, conn: Conn, req: dict[str, object]) -> Response | None:
        ex = self._exec(req)
        if ex.status != EXEC_CREATED:
            raise RequestError(f"exec {ex.exec_id} has been started already")
        box = ex.box
        self._check_running(box)
        parent_fds: dict[int, int] = {}  # ours: fd -> stream
        child_fds: list[int] = []  # the helper's (and the process's) stdio
        chan, chan_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child_fds.append(chan_child.detach())
            if ex.tty:
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                child_fds.append(null)
                stdio = (null, null, null)
            else:
                out_r, out_w = os.pipe()
                parent_fds[out_r] = STDOUT
                child_fds.append(out_w)
                err_r, err_w = os.pipe()
                parent_fds[err_r] = STDERR
                child_fds.append(err_w)
                if ex.open_stdin:
                    in_r, in_w = os.pipe()
                    parent_fds[in_w] = STDIN
                else:
                    in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                child_fds.append(in_r)
                stdio = (in_r, out_w, err_w)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                _exec_helper_main(
                    self.runtime.root, self.root, box.rec.id, ex.process, stdio, child_fds[0]
                )
        except BaseException:
            chan.close()
            for fd in parent_fds:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        self._watch_helper(ExecHelper(ex, chan, pid, parent_fds))
        ex.status = EXEC_STARTING
        ex.start_conn = conn
        conn.mode = "pending"
        conn.proc = ex
        return None

    def _on_helper(self, fileobj: object, _mask: int) -> None:
        if not isinstance(fileobj, socket.socket):
            return
        h = self.helpers.get(fileobj.fileno())
        if h is None:
            return
        try:
            data, fds, _flags, _addr = socket.recv_fds(h.chan, READ_SIZE, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds = b"", []
        h.fds.extend(fds)
        h.buf += data
        if data and b"\n" not in h.buf:
            return
        self._drop_helper(h)
        try:
            doc = fastjson.loads(bytes(h.buf).decode(errors="replace")) if b"\n" in h.buf else None
        except ValueError:
            doc = None
        answer = doc if isinstance(doc, dict) else None
        if isinstance(h, CreateHelper):
            self._created(h, answer)
        elif isinstance(h, ExecHelper):
            self._exec_started(h, answer)

    def _exec_started(self, h: ExecHelper, doc: dict[str, object] | None) -> None:
        ex = h.ex
        conn = ex.start_conn
        ex.start_conn = None
        pid = doc.get("pid") if doc is not None else None
        gone = self.execs.get(ex.exec_id) is not ex  # its container was removed meanwhile
        if doc is None:
            error = f"exec {ex.exec_id}: the helper died without an answer"
        elif "error" in doc or not isinstance(pid, int) or pid <= 0:
            error = str(doc.get("error") or f"exec {ex.exec_id}: no pid")
        elif gone:
            error = f"exec {ex.exec_id}: its container was removed"
        else:
            error = ""
        if doc is not None:
            for warning in _strs(doc.get("warnings")):
                _warn(f"{ex.name}: {warning}")
        if error:
            for fd in list(h.parent_fds) + h.fds:
                os.close(fd)
            if not gone:
                # Docker reports a process that could not be started as exit code 126.
                ex.exit = ExitStatus(126)
                self._finish_exec(ex)
            if conn is not None:
                self._answer_pending(conn, _error(error))
            return
        assert isinstance(pid, int)
        ex.pid = pid
        ex.status = EXEC_RUNNING
        if ex.tty:
            for extra in h.fds[1:]:
                os.close(extra)
            if h.fds:
                self._add_master(ex, h.fds[0])
        else:
            for fd in h.fds:
                os.close(fd)
            for fd, stream in h.parent_fds.items():
                if stream == STDIN:
                    self._add_stdin(ex, fd)
                else:
                    self._add_output(ex, fd, stream)
        status = self._orphan_exit(pid)
        if status is None:
            self.by_pid[pid] = ex
        else:
            self._exited(ex, ExitStatus.from_wait(status))
        if conn is not None:
            self._answer_pending(conn, {"ok": True, "pid": pid})

    def _answer_pending(self, conn: Conn, answer: Response) -> None:
        conn.mode = "request"
        conn.proc = None
        self._send(conn, answer)
        self._process_requests(conn)
        if conn.read_eof and conn.mode == "request":
            conn.close_when_flushed = True
            self._update(conn)

    def _finish_exec(self, ex: Exec) -> None:
        """Publish an exec's exit: exec_wait answers, attach connections end."""
        if ex.finished:
            return
        ex.status = EXEC_EXITED
        ex.exit_code = ex.exit.code if ex.exit is not None else None
        self._close_stdin(ex)
        answer: Response = {"ok": True, "exit_code": ex.exit_code}
        for conn in ex.waiters:
            conn.mode = "request"
            conn.proc = None
            self._send(conn, answer)
            self._process_requests(conn)
        ex.waiters.clear()
        for conn in ex.attachers:
            conn.close_when_flushed = True
            self._update(conn)
        ex.attachers.clear()

    def _forget_exec(self, ex: Exec) -> None:
        """Its container is being removed: the exec goes, its clients are let go."""
        self.execs.pop(ex.exec_id, None)
        ex.box.execs.pop(ex.exec_id, None)
        if ex.pid and self.by_pid.get(ex.pid) is ex:
            del self.by_pid[ex.pid]
        for fd in list(ex.pipes):
            self._drain_pipe(ex, fd)
            self._close_pipe(ex, fd)
        self._close_stdin(ex)
        if ex.exit is not None:
            self._finish_exec(ex)
        for conn in ex.waiters:
            conn.mode = "request"
            conn.proc = None
            self._send(conn, _error(f"exec {ex.exec_id}: its container was removed"))
            self._process_requests(conn)
        ex.waiters.clear()
        for conn in ex.attachers:
            conn.close_when_flushed = True
            self._update(conn)
        ex.attachers.clear()

    def op_exec_state(self, _conn: Conn, req: dict[str, object]) -> Response:
        ex = self._exec(req)
        return {
            "ok": True,
            "running": ex.status in (EXEC_STARTING, EXEC_RUNNING),
            "exit_code": ex.exit_code,
            "pid": ex.pid,
        }

    def op_exec_wait(self, conn: Conn, req: dict[str, object]) -> Response | None:
        ex = self._exec(req)
        if ex.finished:
            return {"ok": True, "exit_code": ex.exit_code}
        conn.mode = "wait"
        conn.proc = ex
        ex.waiters.append(conn)
        return None

    def op_exec_resize(self, _conn: Conn, req: dict[str, object]) -> Response:
        self._resize(self._exec(req), req)
        return {"ok": True}

    def op_exec_forget(self, _conn: Conn, req: dict[str, object]) -> Response:
        """Drop a finished exec's record (health probes: dockerd forgets them too)."""
        ex = self._exec(req)
        if not ex.finished:
            raise RequestError(f"exec {ex.exec_id} is still running")
        self._forget_exec(ex)
        return {"ok": True}

    def op_events(self, conn: Conn, _req: dict[str, object]) -> Response | None:
        self._send(conn, {"ok": True})
        conn.mode = "events"
        conn.rbuf.clear()
        self.events.append(conn)
        return None

    HANDLERS: dict[str, Callable[[Supervisor, Conn, dict[str, object]], Response | None]] = {
        "ping": op_ping,
        "create": op_create,
        "start": op_start,
        "kill": op_kill,
        "delete": op_delete,
        "state": op_state,
        "list": op_list,
        "wait": op_wait,
        "attach": op_attach,
        "events": op_events,
        "resize": op_resize,
        "exec_create": op_exec_create,
        "exec_attach": op_exec_attach,
        "exec_start": op_exec_start,
        "exec_forget": op_exec_forget,
        "exec_state": op_exec_state,
        "exec_wait": op_exec_wait,
        "exec_resize": op_exec_resize,
    }


# -- creating a container in a clean helper -----------------------------------------------


def _helper_main(
    runtime: Runtime, cid: str, bundle: str, stdio: tuple[int, int, int], w: int, console_fd: int
) -> None:  # pragma: no cover - runs in the child
    """runtime.create with `stdio`; tells the supervisor on `w` the container's pid
    (one JSON line: the container's init holds a copy of `w` until it execs, so
    there is no EOF to wait for). The init is then re-parented to the supervisor,
    the nearest child subreaper, when this helper exits."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        _close_all_but({0, 1, 2, w, console_fd, *stdio})
        warnings: list[str] = []
        helper_runtime = Runtime(runtime.root, warn=warnings.append)
        try:
            c = helper_runtime.create(
                cid, bundle, stdio=stdio, console_fd=console_fd if console_fd >= 0 else None
            )
            doc: dict[str, object] = {"pid": c.pid, "warnings": warnings}
        except Exception as e:
            doc = {"error": _one_line(e), "warnings": warnings}
        _write_all(w, fastjson.dumps(doc).encode() + b"\n")
    except BaseException as e:
        code = 1
        try:
            _write_all(w, fastjson.dumps({"error": _one_line(e)}).encode() + b"\n")
        except BaseException:
            pass
    os._exit(code)


def _write_all(fd: int, data: bytes) -> None:  # pragma: no cover - runs in the child
    while data:
        data = data[os.write(fd, data) :]


def _close_all_but(keep: set[int]) -> None:  # pragma: no cover - runs in the child
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _receive_master(console: socket.socket, cid: str) -> int:
    """The pty master the container's init sent (before it said it was ready)."""
    console.settimeout(5.0)
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(console, 4096, 4)
    except OSError as e:
        raise RequestError(f"create container {cid}: no terminal came: {e}") from None
    if not fds:
        raise RequestError(f"create container {cid}: the container sent no terminal")
    for extra in fds[1:]:
        os.close(extra)
    return fds[0]


def _set_winsize(fd: int, height: int, width: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, winsize(height, width))


# -- running an exec in a clean helper ------------------------------------------------------


def _exec_helper_main(
    runtime_root: str,
    root: str,
    cid: str,
    process: dict[str, object],
    stdio: tuple[int, int, int],
    chan_fd: int,
) -> None:  # pragma: no cover - runs in the child
    """Runtime.exec (detached) with `stdio` as the process's 0, 1, 2; tells the
    supervisor on `chan_fd` its pid (one JSON line), with the pty master
    attached (SCM_RIGHTS) when process.terminal is set."""
    code = 0
    chan = socket.socket(fileno=chan_fd)
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        _close_all_but({0, 1, 2, chan_fd, *stdio})
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in set(stdio) - {0, 1, 2}:
            os.close(fd)
        warnings: list[str] = []
        fds: list[int] = []
        doc: dict[str, object]
        try:
            pid, fds = _run_exec(runtime_root, root, cid, process, warnings)
            doc = {"pid": pid, "warnings": warnings}
        except Exception as e:
            doc = {"error": _one_line(e), "warnings": warnings}
        socket.send_fds(chan, [fastjson.dumps(doc).encode() + b"\n"], fds)
    except BaseException as e:
        code = 1
        try:
            chan.sendall(fastjson.dumps({"error": _one_line(e)}).encode() + b"\n")
        except BaseException:
            pass
    os._exit(code)


def _run_exec(
    runtime_root: str, root: str, cid: str, process: dict[str, object], warnings: list[str]
) -> tuple[int, list[int]]:  # pragma: no cover - runs in the helper
    import secrets

    runtime = Runtime(runtime_root, warn=warnings.append)
    pid_file = os.path.join(root, f"exec-{os.getpid()}.pid")
    listener = None
    console_socket = None
    if process.get("terminal"):
        # The runtime wants a socket to connect to; an abstract one leaves no file
        # behind and has no path length limit.
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console_socket = f"\0orchestr-exec-{os.getpid()}-{secrets.token_hex(8)}"
        listener.bind(console_socket)
        listener.listen(1)
    try:
        runtime.exec(cid, process, detach=True, pid_file=pid_file, console_socket=console_socket)
        with open(pid_file) as f:
            pid = int(f.read().strip())
        fds: list[int] = []
        if listener is not None:
            listener.settimeout(5.0)
            conn, _ = listener.accept()
            with conn:
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
            if not fds:
                raise RuntimeError("the exec's process sent no terminal")
        return pid, fds
    finally:
        if listener is not None:
            listener.close()
        try:
            os.unlink(pid_file)
        except FileNotFoundError:
            pass


# -- helpers ---------------------------------------------------------------------------


def _noop(_sig: int, _frame: object) -> None:
    pass


def _warn(msg: str) -> None:
    print(f"supervisor: {msg}", file=sys.stderr, flush=True)


def _error(message: str) -> Response:
    return {"ok": False, "error": message}


def _one_line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())


def _str(req: dict[str, object], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise RequestError(f"{key}: a non-empty string is required")
    return value


def _strs(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _wait_answer(rec: Record) -> Response:
    answer: Response = {
        "ok": True,
        "exit_code": rec.exit_code,
        "oom_killed": rec.oom_killed,
        "finished_at": rec.finished_at,
    }
    if rec.lost:
        answer["lost"] = True
    return answer

"""The supervisor's event loop: containers' pipes, their exits, the protocol socket.

One thread, one `selectors` loop. What it waits on:

- the listening socket and its client connections (one JSON request per line);
- each container's stdout and stderr pipes (→ json-file log + attach frames);
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
from agent.runtime.runtime import ExitStatus, Runtime, process_start_time, valid_id
from agent.supervisor import records
from agent.supervisor.frames import STDERR, STDOUT, encode_frame
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
    """A client connection. Modes: request (default), wait, attach, events."""

    __slots__ = (
        "box",
        "close_when_flushed",
        "closed",
        "fd",
        "mask",
        "mode",
        "paused",
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
        self.box: Box | None = None
        self.want_stdin = self.want_stdout = self.want_stderr = False


class Box:
    """A container the supervisor holds: its record plus its live plumbing."""

    __slots__ = (
        "attachers",
        "cgroup",
        "dir",
        "exit",
        "log",
        "pipes",
        "reaped_at",
        "rec",
        "splitters",
        "stdin_buf",
        "stdin_close",
        "stdin_fd",
        "waiters",
    )

    def __init__(self, rec: Record, container_dir: str) -> None:
        self.rec = rec
        self.dir = container_dir
        self.cgroup: Cgroup | None = None
        self.log: JsonFileLog | None = None
        self.pipes: dict[int, int] = {}  # fd -> stream
        self.splitters: dict[int, LineSplitter] = {}
        self.stdin_fd = -1
        self.stdin_buf = bytearray()
        self.stdin_close = False
        self.exit: ExitStatus | None = None  # reaped, not yet published
        self.reaped_at = 0.0
        self.waiters: list[Conn] = []
        self.attachers: list[Conn] = []

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, "state.json")

    @property
    def finished(self) -> bool:
        return self.rec.status == EXITED


# -- the supervisor ---------------------------------------------------------------------


class Supervisor:
    def __init__(self, root: str, socket_path: str, runtime_root: str) -> None:
        self.root = root
        self.socket_path = socket_path
        self.runtime = Runtime(runtime_root, warn=_warn)
        self.containers_dir = os.path.join(root, "containers")
        self.sel = selectors.DefaultSelector()
        self.boxes: dict[str, Box] = {}
        self.by_pid: dict[int, Box] = {}
        self.pipe_owner: dict[int, Box] = {}  # stdout/stderr read end or stdin write end
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
        if self.listener is not None:
            self.listener.close()
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass

    def _must_poll(self) -> bool:
        return any(
            not b.finished and (b.rec.adopted or b.exit is not None) for b in self.boxes.values()
        )

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
            box = self.by_pid.pop(pid, None)
            if box is not None:
                self._exited(box, ExitStatus.from_wait(status))

    def _exited(self, box: Box, result: ExitStatus) -> None:
        if box.cgroup is not None and result.signal == SIGKILL:
            result.oom_killed = box.cgroup.oom_killed()
        box.exit = result
        box.reaped_at = time.monotonic()
        if not box.pipes:
            self._finish(box)

    def _poll(self) -> None:
        now = time.monotonic()
        for box in list(self.boxes.values()):
            if box.finished:
                continue
            if box.exit is not None and now - box.reaped_at >= PIPE_GRACE:
                # A straggler holds the pipes open: take what is there and stop.
                for fd in list(box.pipes):
                    self._drain_pipe(box, fd)
                    self._close_pipe(box, fd)
                self._finish(box)
            elif box.rec.adopted and process_start_time(box.rec.pid) != box.rec.pid_start_time:
                self._finish(box)

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
        box = self.pipe_owner.get(fd)
        if box is None:
            return
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._output(box, box.pipes[fd], data)
        else:
            self._close_pipe(box, fd)
            if not box.pipes and box.exit is not None:
                self._finish(box)

    def _output(self, box: Box, stream: int, data: bytes) -> None:
        if box.log is not None:
            try:
                box.log.write(box.splitters[stream].feed(data), stream)
            except OSError as e:
                _warn(f"container {box.rec.id}: log {box.rec.log_path}: {e}")
        frame = b""
        for conn in list(box.attachers):
            if (conn.want_stdout if stream == STDOUT else conn.want_stderr) and not conn.closed:
                frame = frame or encode_frame(stream, data)
                self._queue(conn, frame, limit=MAX_CONN_BUFFER)

    def _drain_pipe(self, box: Box, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                return
            if not data:
                return
            self._output(box, box.pipes[fd], data)

    def _close_pipe(self, box: Box, fd: int) -> None:
        stream = box.pipes.pop(fd)
        self.pipe_owner.pop(fd, None)
        self.sel.unregister(fd)
        os.close(fd)
        rest = box.splitters[stream].flush()
        if rest and box.log is not None:
            try:
                box.log.write(rest, stream)
            except OSError as e:
                _warn(f"container {box.rec.id}: log {box.rec.log_path}: {e}")

    # -- container input -----------------------------------------------------------------

    def _feed_stdin(self, box: Box, data: bytes) -> None:
        if box.stdin_fd < 0 or box.stdin_close:
            return
        box.stdin_buf += data
        self._flush_stdin(box)

    def _flush_stdin(self, box: Box) -> None:
        if box.stdin_fd < 0:
            return
        while box.stdin_buf:
            try:
                n = os.write(box.stdin_fd, box.stdin_buf)
            except BlockingIOError:
                break
            except OSError:  # EPIPE: the container closed its stdin, or is gone
                box.stdin_buf.clear()
                self._close_stdin(box)
                return
            del box.stdin_buf[:n]
        registered = box.stdin_fd in self.sel.get_map()
        if box.stdin_buf and not registered:
            self.sel.register(box.stdin_fd, selectors.EVENT_WRITE, self._on_stdin_writable)
        elif not box.stdin_buf and registered:
            self.sel.unregister(box.stdin_fd)
        if not box.stdin_buf and box.stdin_close:
            self._close_stdin(box)
        for conn in box.attachers:  # pause/resume the attach clients that feed it
            if conn.want_stdin:
                conn.paused = len(box.stdin_buf) > MAX_STDIN_BUFFER
                self._update(conn)

    def _on_stdin_writable(self, fileobj: object, _mask: int) -> None:
        box = self.pipe_owner.get(fileobj if isinstance(fileobj, int) else -1)
        if box is not None:
            self._flush_stdin(box)

    def _close_stdin(self, box: Box) -> None:
        if box.stdin_fd < 0:
            return
        if box.stdin_fd in self.sel.get_map():
            self.sel.unregister(box.stdin_fd)
        self.pipe_owner.pop(box.stdin_fd, None)
        os.close(box.stdin_fd)
        box.stdin_fd = -1
        box.stdin_buf.clear()

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
        box = conn.box
        if box is not None:
            if conn in box.waiters:
                box.waiters.remove(conn)
            if conn in box.attachers:
                box.attachers.remove(conn)
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
            box = conn.box
            if conn.want_stdin and box is not None:
                self._feed_stdin(box, data)
            return
        if conn.mode == "events":
            return
        conn.rbuf += data
        self._process_requests(conn)

    def _on_eof(self, conn: Conn) -> None:
        if conn.mode == "attach":
            box = conn.box
            if conn.want_stdin and box is not None:  # StdinOnce: the first client to end closes it
                box.stdin_close = True
                self._flush_stdin(box)
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

    def op_create(self, _conn: Conn, req: dict[str, object]) -> Response:
        cid = _str(req, "id")
        if not valid_id(cid):
            raise RequestError(f"invalid container id {cid!r}")
        if req.get("tty"):
            raise RequestError("tty: not supported yet")
        if cid in self.boxes:
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
        d = os.path.join(self.containers_dir, cid)
        try:
            parent = os.path.dirname(log_path)
            if parent:
                os.makedirs(parent, exist_ok=True)
            log = JsonFileLog(log_path, max_size, max_files)
        except OSError as e:
            raise RequestError(f"log {log_path}: {e.strerror or e}") from None
        parent_fds: list[int] = []
        child_fds: list[int] = []
        try:
            out_r, out_w = os.pipe()
            parent_fds.append(out_r)
            child_fds.append(out_w)
            err_r, err_w = os.pipe()
            parent_fds.append(err_r)
            child_fds.append(err_w)
            if want_stdin:
                in_r, in_w = os.pipe()
                parent_fds.append(in_w)
            else:
                in_r = in_w = -1
                in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            child_fds.append(in_r)
            pid, start_time, cgroup = create_in_helper(
                self.runtime, cid, bundle, (in_r, out_w, err_w)
            )
        except BaseException:
            log.close()
            for fd in parent_fds:
                os.close(fd)
            raise
        finally:
            for fd in child_fds:
                os.close(fd)
        os.makedirs(d, mode=0o700, exist_ok=True)
        rec = Record(cid, pid, start_time, log_path, rfc3339_nano(), want_stdin)
        box = Box(rec, d)
        box.cgroup = cgroup
        box.log = log
        for fd, stream in ((out_r, STDOUT), (err_r, STDERR)):
            os.set_blocking(fd, False)
            box.pipes[fd] = stream
            self.pipe_owner[fd] = box
            box.splitters[stream] = LineSplitter()
            self.sel.register(fd, selectors.EVENT_READ, self._on_pipe)
        if want_stdin:
            os.set_blocking(in_w, False)
            box.stdin_fd = in_w
            self.pipe_owner[in_w] = box
        self.boxes[cid] = box
        self.by_pid[pid] = box
        self._save(box)
        return {"ok": True, "pid": pid}

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
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.by_pid.pop(pid, None)
                return
            if done:
                self.by_pid.pop(pid, None)
                self._exited(box, ExitStatus.from_wait(status))
                return
            if time.monotonic() > deadline:
                raise RequestError(f"container {box.rec.id}: did not die after SIGKILL")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _forget(self, box: Box) -> None:
        self.boxes.pop(box.rec.id, None)
        self.by_pid.pop(box.rec.pid, None)
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
        conn.box = box
        box.waiters.append(conn)
        return None

    def op_attach(self, conn: Conn, req: dict[str, object]) -> Response | None:
        box = self._box(req)
        if req.get("tty"):
            raise RequestError("tty: not supported yet")
        self._send(conn, {"ok": True})
        conn.mode = "attach"
        conn.box = box
        conn.want_stdin = bool(req.get("stdin")) and box.rec.stdin
        conn.want_stdout = bool(req.get("stdout"))
        conn.want_stderr = bool(req.get("stderr"))
        conn.rbuf.clear()
        if box.finished:
            conn.close_when_flushed = True
        else:
            box.attachers.append(conn)
        self._update(conn)
        return None

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
    }


# -- creating a container in a clean helper -----------------------------------------------


def create_in_helper(
    runtime: Runtime, cid: str, bundle: str, stdio: tuple[int, int, int]
) -> tuple[int, int, Cgroup | None]:
    """runtime.create in a forked helper that holds only the container's stdio.

    Returns (pid, its start time, its cgroup). The helper exits once the
    container is set up; the container's pid 1 is then re-parented to us, the
    nearest child subreaper.
    """
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:  # pragma: no cover - runs in the child
        _helper_main(runtime, cid, bundle, stdio, w)
    os.close(w)
    # One line, not EOF: the container's init holds a copy of `w` until it execs.
    chunks: list[bytes] = []
    try:
        while not chunks or not chunks[-1].endswith(b"\n"):
            try:
                data = os.read(r, 65536)
            except InterruptedError:
                continue
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
        while True:
            try:
                os.waitpid(helper, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
    text = b"".join(chunks).decode(errors="replace")
    try:
        doc = fastjson.loads(text) if text else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise RequestError(f"create container {cid}: the helper died without an answer")
    for warning in doc.get("warnings") or []:
        _warn(f"container {cid}: {warning}")
    if "error" in doc:
        raise RequestError(str(doc["error"]))
    pid = int(doc["pid"])
    container = runtime.load(cid)
    return pid, container.start_time or process_start_time(pid) or 0, container.cgroup


def _helper_main(
    runtime: Runtime, cid: str, bundle: str, stdio: tuple[int, int, int], w: int
) -> None:  # pragma: no cover - runs in the child
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        keep = {0, 1, 2, w, *stdio}
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        warnings: list[str] = []
        helper_runtime = Runtime(runtime.root, warn=warnings.append)
        try:
            c = helper_runtime.create(cid, bundle, stdio=stdio)
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

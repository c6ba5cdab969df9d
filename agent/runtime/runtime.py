"""The OCI runtime lifecycle: create, start, state, kill, delete, run, exec, list.

`Runtime` is the library the daemon calls in-process (no interpreter start per
container) and the `orchestr runtime` command line drives. Each container has
a state directory under the runtime root:

    <root>/<id>/state.json   what `state` reports, plus what later calls need
    <root>/<id>/exec.fifo    exists from create until start

Process tree of `create` (P = the caller):

    P ── fork ──► C1: join cgroups, setns(paths), unshare(new namespaces)
                   └─ fork ──► C2 (pid 1 of the new pid namespace): contain()
    C1 reports C2's pid and exits, so C2 is re-parented to the nearest child
    subreaper (the caller during `run`, the node supervisor in the daemon).
    C2 reports `ready` once set up, then blocks on exec.fifo until `start`.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from agent.runtime import fastjson, hooks, spec
from agent.runtime.errors import (
    BundleError,
    ContainerExists,
    ContainerNotFound,
    RuntimeError_,
    StateError,
)
from agent.runtime.linux import flags
from agent.runtime.linux.cgroups import Cgroup, with_default_devices

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_ROOT = "/run/orchestr/runtime"
Pids = list[int]  # `Runtime.list` shadows the builtin inside the class
DEFAULT_CGROUP_PARENT = "/orchestr"
SIGKILL = 9
SIGTERM = 15

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}  # fmt: skip


def parse_signal(value: str) -> int:
    """'KILL', 'SIGKILL', '9' or 'RTMIN+3' to a number; ValueError names a bad one."""
    text = value.strip().upper()
    if text.isdigit():
        n = int(text)
        if 0 < n <= 64:
            return n
    else:
        name = text[3:] if text.startswith("SIG") else text
        if name in SIGNALS:
            return SIGNALS[name]
        if name.startswith("RTMIN"):
            off = name[5:].lstrip("+")
            if not off or off.isdigit():
                n = 34 + int(off or 0)
                if n <= 64:
                    return n
    raise ValueError(f"unknown signal {value!r}")


def preload(config: object = None) -> None:
    """Load now what creating a container needs, so that processes forked later
    (the supervisor's create helpers) inherit it instead of loading it each
    time: the set-up modules, the schema files, libseccomp, and the compiled
    filter of `config`'s linux.seccomp (programs are cached per profile; the
    default profile alone takes ~20 ms to compile). Errors are left for the
    create itself to report."""
    from agent.runtime import schema
    from agent.runtime.linux import init, rootfs  # noqa: F401 - loaded for the children

    schema.preload()
    linux = config.get("linux") if isinstance(config, dict) else None
    seccomp = linux.get("seccomp") if isinstance(linux, dict) else None
    if isinstance(seccomp, dict):
        try:
            init.prepare(seccomp, False)
        except Exception:
            pass


def valid_id(container_id: str) -> bool:
    """runc's rule: letters, digits, and _ + - . ; not . or .. alone."""
    if not container_id or container_id in (".", "..") or len(container_id) > 1024:
        return False
    return all(c.isascii() and (c.isalnum() or c in "_+-.") for c in container_id)


def _now_rfc3339() -> str:
    t = time.time()
    tm = time.gmtime(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + f".{int((t % 1) * 1e9):09d}Z"


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat; None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rpartition(b")")[2].split()
    if not fields or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Container:
    """A container's record on disk, and its live status."""

    __slots__ = (
        "bundle",
        "cgroup",
        "config",
        "created",
        "dir",
        "id",
        "owner",
        "pid",
        "rootfs",
        "start_time",
    )

    def __init__(self, container_dir: str, doc: dict[str, object]) -> None:
        self.dir = container_dir
        self.id = str(doc["id"])
        self.pid = int(str(doc.get("pid") or 0))
        self.start_time = int(str(doc.get("startTime") or 0))
        self.bundle = str(doc.get("bundle") or "")
        self.rootfs = str(doc.get("rootfs") or "")
        self.created = str(doc.get("created") or "")
        self.owner = str(doc.get("owner") or "")
        config = doc.get("config")
        self.config: dict[str, object] = config if isinstance(config, dict) else {}
        cg = doc.get("cgroup")
        self.cgroup = Cgroup.from_json(cg) if isinstance(cg, dict) else None

    @property
    def fifo(self) -> str:
        return os.path.join(self.dir, "exec.fifo")

    def alive(self) -> bool:
        return self.pid > 0 and process_start_time(self.pid) == self.start_time

    def status(self) -> str:
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo):
            return "created"
        if self.cgroup is not None and self.cgroup.frozen():
            return "paused"
        return "running"

    def annotations(self) -> dict[str, str]:
        raw = self.config.get("annotations")
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "pid": self.pid,
            "startTime": self.start_time,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "config": self.config,
            "cgroup": self.cgroup.to_json() if self.cgroup else None,
        }

    def state(self) -> dict[str, object]:
        """The runtime-spec state, with runc's extra fields (rootfs, created, owner)."""
        status = self.status()
        out: dict[str, object] = {
            "ociVersion": spec.OCI_VERSION,
            "id": self.id,
            "pid": self.pid if status != "stopped" else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        }
        annotations = self.annotations()
        if annotations:
            out["annotations"] = annotations
        return out


class ExitStatus:
    """How a container's process ended."""

    __slots__ = ("code", "oom_killed", "signal")

    def __init__(self, code: int, signal: int = 0, oom_killed: bool = False) -> None:
        self.code = code  # 128+signal for a process killed by a signal
        self.signal = signal
        self.oom_killed = oom_killed

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            return cls(128 + sig, sig)
        return cls(os.WEXITSTATUS(status))

    def __repr__(self) -> str:
        return f"ExitStatus(code={self.code}, signal={self.signal}, oom={self.oom_killed})"


class Runtime:
    """Containers under one root directory."""

    def __init__(self, root: str = DEFAULT_ROOT, warn: Callable[[str], None] | None = None):
        self.root = root
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))

    # -- records ---------------------------------------------------------------

    def _dir(self, container_id: str) -> str:
        if not valid_id(container_id):
            raise BundleError(f"invalid container id {container_id!r}")
        return os.path.join(self.root, container_id)

    def load(self, container_id: str) -> Container:
        d = self._dir(container_id)
        try:
            with open(os.path.join(d, "state.json"), encoding="utf-8") as f:
                doc = fastjson.loads(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(f"container {container_id} does not exist") from None
        if not isinstance(doc, dict):
            raise StateError(f"container {container_id}: state file is corrupt")
        return Container(d, doc)

    def _save(self, c: Container) -> None:
        path = os.path.join(c.dir, "state.json")
        tmp = path + ".tmp"
        # Atomic (rename) but not fsynced: the runtime root belongs on tmpfs
        # (/run), whose contents a crash takes with the containers anyway.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, fastjson.dumps(c.to_json()).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def list(self) -> list[Container]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append(self.load(name))
            except (ContainerNotFound, StateError, BundleError, ValueError):
                continue
        return out

    def state(self, container_id: str) -> dict[str, object]:
        return self.load(container_id).state()

    # -- create / start ----------------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        console_fd: int | None = None,
        stdio: tuple[int, int, int] | None = None,
    ) -> Container:
        """Make the container and leave its process waiting for `start`."""
        d = self._dir(container_id)
        b = spec.load_bundle(bundle, _hard_limits())
        for w in b.warnings:
            self.warn(w)
        if b.terminal and console_socket is None and console_fd is None:
            raise BundleError("process.terminal is true: give --console-socket, or set it to false")
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            raise ContainerExists(f"container {container_id} already exists") from None
        cgroup: Cgroup | None = None
        own_console = False
        try:
            cgroup = self._make_cgroup(container_id, b)
            os.mkfifo(os.path.join(d, "exec.fifo"), 0o600)
            if console_socket is not None:
                console_fd = _connect_unix(console_socket)
                own_console = True
            pid = self._spawn_init(b, d, cgroup, console_fd, stdio)
            c = Container(
                d,
                {
                    "id": container_id,
                    "pid": pid,
                    "startTime": process_start_time(pid) or 0,
                    "bundle": b.path,
                    "rootfs": b.rootfs,
                    "created": _now_rfc3339(),
                    "owner": "",
                    "config": b.config,
                },
            )
            c.cgroup = cgroup
            self._save(c)
            if pid_file:
                _write_pid_file(pid_file, pid)
            return c
        except BaseException:
            if cgroup is not None:
                cgroup.kill_all(SIGKILL)
                try:
                    cgroup.destroy()
                except OSError as e:
                    self.warn(str(e))
            _remove_dir(d)
            raise
        finally:
            if own_console and console_fd is not None:
                os.close(console_fd)

    def _make_cgroup(self, container_id: str, b: spec.Bundle) -> Cgroup:
        path = b.linux.get("cgroupsPath")
        if isinstance(path, str) and path:
            if ":" in path:
                raise BundleError(
                    f"linux.cgroupsPath: {path!r} is a systemd slice; only cgroupfs is supported"
                )
            cg = Cgroup.at(path)
        else:
            cg = Cgroup.at(f"{DEFAULT_CGROUP_PARENT}/{container_id}")
            # The shared parent is ours too: remove it once empty.
            cg.created.extend(os.path.dirname(p) for p in cg.paths.values())
        resources = b.linux.get("resources")
        try:
            cg.create(with_default_devices(resources if isinstance(resources, dict) else {}))
        except ValueError as e:
            raise BundleError(str(e)) from None
        except OSError as e:
            raise RuntimeError_(f"create cgroup {cg.path}: {e.strerror or e}") from None
        return cg

    def _spawn_init(
        self,
        b: spec.Bundle,
        container_dir: str,
        cgroup: Cgroup,
        console_fd: int | None,
        stdio: tuple[int, int, int] | None,
    ) -> int:
        """Fork the container's pid 1 and wait until it is set up (or failed).

        The container's process joins its cgroups while it is already mounting:
        a first cgroup v1 migration waits for an RCU grace period (~5 ms here),
        so the caller does it for the child instead of the child for itself.
        """
        from agent.runtime.linux import init, libc  # ctypes: only where containers start

        fifo = os.path.join(container_dir, "exec.fifo")
        try:
            seccomp_filter = init.prepare(b.linux.get("seccomp"), b.terminal)
        except init.InitError as e:
            raise BundleError(str(e)) from None
        r, w = os.pipe()  # children -> caller: "pid N", "ready", "error ..."
        ctl_r, ctl_w = os.pipe()  # caller -> container: "cgroup" once it joined

        def enter_namespaces() -> None:  # in C1
            os.close(r)
            os.close(ctl_w)
            if stdio is not None:
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
            for kind, path in b.join_namespaces:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    libc.setns(fd, spec.NAMESPACE_FLAGS[kind], f"{kind} {path}")
                finally:
                    os.close(fd)
            # The cgroup namespace comes after the cgroups are joined (in contain).
            libc.unshare(b.new_namespaces & ~flags.CLONE_NEWCGROUP)

        def run_init() -> None:  # in C2, pid 1 of the new pid namespace
            fifo_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
            init.contain(b, w, ctl_r, fifo_fd, cgroup, console_fd, seccomp_filter)

        c1 = _fork_twice(w, enter_namespaces, run_init, failed=1)
        os.close(w)
        os.close(ctl_r)
        # Start the (slow) first migration at once, with C1: if C2 is forked after
        # it, C2 is born in the cgroups; either way C2's own move below is quick.
        try:
            cgroup.add(c1)
        except OSError:
            pass  # C1 may have exited already
        reader = _LineReader(r)
        pid = 0
        try:
            for line in reader:
                kind, _, rest = line.partition(" ")
                if kind == "pid":
                    pid = int(rest)
                    try:
                        cgroup.add(pid)
                    except OSError as e:
                        raise RuntimeError_(f"create container: join cgroup: {e}") from None
                    os.write(ctl_w, b"cgroup\n")
                elif kind == "hooks":
                    state = self._hook_state(b, container_dir, "creating", pid)
                    try:
                        for hook_kind in hooks.BEFORE_PIVOT:
                            hooks.run_all(b.config, hook_kind, state)
                    except hooks.HookError as e:
                        raise RuntimeError_(f"create container: {e}") from None
                    os.write(ctl_w, b"go " + state + b"\n")
                elif kind == "error":
                    raise RuntimeError_(f"create container: {rest}")
                elif kind == "ready":
                    return pid
            raise RuntimeError_("create container: the container's init exited during set-up")
        except BaseException:
            if pid:
                _kill_quietly(pid)
                _reap_quietly(pid)
            raise
        finally:
            os.close(r)
            os.close(ctl_w)
            os.waitpid(c1, 0)
            if seccomp_filter is not None:
                seccomp_filter.release()

    def _hook_state(self, b: spec.Bundle, container_dir: str, status: str, pid: int) -> bytes:
        return hooks.state_json(
            os.path.basename(container_dir), status, pid, b.path, b.annotations, spec.OCI_VERSION
        )

    def start(self, container_id: str) -> None:
        """Let a created container's process exec."""
        c = self.load(container_id)
        status = c.status()
        if status != "created":
            raise StateError(f"cannot start container {container_id}: it is {status}, not created")
        try:
            fd = os.open(c.fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENOENT):
                raise StateError(f"cannot start container {container_id}: it is stopped") from None
            raise
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
        os.unlink(c.fifo)
        if hooks.hooks_of(c.config, "poststart"):
            self._run_warning_hooks(c, "poststart", "running")

    def _run_warning_hooks(self, c: Container, kind: str, status: str) -> None:
        """poststart/poststop: a failure is a warning, and the rest still run."""
        state = hooks.state_json(c.id, status, c.pid, c.bundle, c.annotations(), spec.OCI_VERSION)
        for i, hook in enumerate(hooks.hooks_of(c.config, kind)):
            try:
                hooks.run_hook(hook, state, f"hooks.{kind}[{i}]")
            except hooks.HookError as e:
                self.warn(str(e))

    # -- signals, delete -------------------------------------------------------------

    def kill(self, container_id: str, sig: int = SIGTERM, all_processes: bool = False) -> None:
        c = self.load(container_id)
        status = c.status()
        if status == "stopped":
            raise StateError(f"cannot kill container {container_id}: it is not running")
        if all_processes and c.cgroup is not None:
            c.cgroup.kill_all(sig)
            if c.cgroup.frozen():
                c.cgroup.thaw()
        else:
            os.kill(c.pid, sig)

    def processes(self, container_id: str) -> Pids:
        """The host pids of every process in the container (its cgroup)."""
        c = self.load(container_id)
        if c.cgroup is None:
            return [c.pid] if c.alive() else []
        return c.cgroup.pids()

    def update(self, container_id: str, resources: dict[str, object]) -> None:
        """Change a live container's limits, and remember them in its record."""
        c = self.load(container_id)
        status = c.status()
        if status == "stopped" or c.cgroup is None:
            raise StateError(f"cannot update container {container_id}: it is {status}")
        try:
            c.cgroup.apply(resources)
        except ValueError as e:
            raise BundleError(str(e)) from None
        except OSError as e:
            raise RuntimeError_(f"update container {container_id}: {e}") from None
        linux = c.config.setdefault("linux", {})
        if isinstance(linux, dict):
            current = linux.get("resources")
            merged = dict(current) if isinstance(current, dict) else {}
            for key, value in resources.items():
                old = merged.get(key)
                merged[key] = (
                    {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
                )
            linux["resources"] = merged
        self._save(c)

    def pause(self, container_id: str) -> None:
        c = self.load(container_id)
        if c.status() != "running" or c.cgroup is None:
            raise StateError(f"cannot pause container {container_id}: it is {c.status()}")
        c.cgroup.freeze()

    def resume(self, container_id: str) -> None:
        c = self.load(container_id)
        if c.status() != "paused" or c.cgroup is None:
            raise StateError(f"cannot resume container {container_id}: it is {c.status()}")
        c.cgroup.thaw()

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped container (a created one, or any with force, is killed first)."""
        c = self.load(container_id)
        status = c.status()
        if status not in ("stopped", "created") and not force:
            raise StateError(
                f"cannot delete container {container_id} that is not stopped: {status}"
            )
        if status != "stopped":
            self._kill_and_wait(c)
        if c.cgroup is not None:
            c.cgroup.kill_all(SIGKILL)  # stragglers outside the pid namespace
            try:
                c.cgroup.destroy()
            except OSError as e:
                raise RuntimeError_(f"delete container {container_id}: {e}") from None
        _remove_dir(c.dir)
        if hooks.hooks_of(c.config, "poststop"):
            self._run_warning_hooks(c, "poststop", "stopped")

    def _kill_and_wait(self, c: Container, timeout: float = 10.0) -> None:
        if c.cgroup is not None:
            if c.cgroup.frozen():
                c.cgroup.kill_all(SIGKILL)
                c.cgroup.thaw()
            c.cgroup.kill_all(SIGKILL)
        try:
            os.kill(c.pid, SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while c.alive() or (c.cgroup is not None and c.cgroup.pids()):
            _reap_quietly(c.pid, block=False)
            if time.monotonic() > deadline:
                raise RuntimeError_(f"container {c.id}: processes did not die after SIGKILL")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    # -- run / wait ------------------------------------------------------------------

    def wait(self, c: Container) -> ExitStatus:
        """Wait for the container's pid 1 to exit and say how it ended.

        The caller must be its reaper: the process that ran `create` with
        PR_SET_CHILD_SUBREAPER set (as `run` does), or the node's supervisor.
        Only that pid is waited for, so other children of the caller are left
        to their owners.
        """
        while True:
            try:
                _, status = os.waitpid(c.pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                raise StateError(
                    f"container {c.id}: its process is not a child of this process, so its "
                    "exit status cannot be read (make the caller a child subreaper)"
                ) from None
        result = ExitStatus.from_wait(status)
        if c.cgroup is not None and result.signal == SIGKILL:
            result.oom_killed = c.cgroup.oom_killed()
        return result

    def run(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        detach: bool = False,
        keep: bool = False,
    ) -> ExitStatus:
        """create + start + wait + delete; the exit status is the container's."""
        from agent.runtime import terminal
        from agent.runtime.linux import libc

        if not detach:
            libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
        console = None
        if console_socket is None and not detach and _wants_terminal(bundle):
            console = terminal.ConsolePair()
        c = self.create(
            container_id,
            bundle,
            pid_file=pid_file,
            console_socket=console_socket,
            console_fd=console.child_fd if console else None,
        )
        if detach:
            self.start(container_id)
            return ExitStatus(0)
        forwarder = terminal.SignalForwarder(c.pid)
        proxy = None
        try:
            if console is not None:
                proxy = console.proxy()
            self.start(container_id)
            result = self.wait(c)
            _reap_orphans()  # of a container without its own pid namespace
        except BaseException:
            self.delete(container_id, force=True)
            raise
        finally:
            forwarder.restore()
            if proxy is not None:
                proxy.finish()
            if console is not None:
                console.close()
        if not keep:
            self.delete(container_id, force=True)
        return result

    # -- exec ----------------------------------------------------------------------------

    def exec(
        self,
        container_id: str,
        process: dict[str, object],
        *,
        detach: bool = False,
        pid_file: str | None = None,
        console_socket: str | None = None,
    ) -> ExitStatus:
        """Run another process inside a running container."""
        from agent.runtime import terminal
        from agent.runtime.linux import init, libc

        c = self.load(container_id)
        status = c.status()
        if status not in ("running", "created"):
            raise StateError(f"cannot exec in container {container_id}: it is {status}")
        if not _strs(process.get("args")):
            raise BundleError("exec: no command given")
        console = None
        console_fd = None
        if process.get("terminal"):
            if console_socket is not None:
                console_fd = _connect_unix(console_socket)
            elif not detach:
                console = terminal.ConsolePair()
                console_fd = console.child_fd
            else:
                raise BundleError("exec --tty --detach needs --console-socket")
        if not detach:
            libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
        linux = c.config.get("linux")
        try:
            seccomp_filter = init.prepare(
                linux.get("seccomp") if isinstance(linux, dict) else None,
                bool(process.get("terminal")),
            )
        except init.InitError as e:
            raise BundleError(str(e)) from None
        r, w = os.pipe()

        def join_container() -> None:  # in C1
            os.close(r)
            if c.cgroup is not None:
                c.cgroup.add(os.getpid())
            for fd, nstype in _container_namespaces(c.pid):
                libc.setns(fd, nstype, "container namespace")
                os.close(fd)

        c1 = _fork_twice(
            w, join_container, lambda: init.enter(process, w, console_fd, seccomp_filter), 127
        )
        os.close(w)
        if console_socket is not None and console_fd is not None:
            os.close(console_fd)
        forwarder = None
        proxy = None
        try:
            if console is not None:
                proxy = console.proxy()
            messages = _read_all(r)
            os.close(r)
            os.waitpid(c1, 0)
            pid = 0
            for line in messages:
                kind, _, rest = line.partition(" ")
                if kind == "pid":
                    pid = int(rest)
                elif kind == "error":
                    if pid:
                        _reap_quietly(pid)
                    raise RuntimeError_(f"exec in container {container_id}: {rest}")
            if pid_file:
                _write_pid_file(pid_file, pid)
            if detach:
                return ExitStatus(0)
            forwarder = terminal.SignalForwarder(pid)
            while True:
                try:
                    return ExitStatus.from_wait(os.waitpid(pid, 0)[1])
                except InterruptedError:
                    continue
        finally:
            if forwarder is not None:
                forwarder.restore()
            if proxy is not None:
                proxy.finish()
            if console is not None:
                console.close()
            if seccomp_filter is not None:
                seccomp_filter.release()


def _fork_twice(w: int, first: Callable[[], None], second: Callable[[], None], failed: int) -> int:
    """Fork C1, which runs `first` (join or make namespaces) and forks C2, which
    runs `second` (it execs, or fails). C1 reports C2's pid on `w` and exits;
    a failure in either is reported there as `error <message>`, never raised
    into the caller's copy of the stack. Returns C1's pid."""
    from agent.runtime.linux import init

    c1 = os.fork()
    if c1 != 0:
        return c1
    code = 1
    try:
        first()
        c2 = os.fork()
        if c2 == 0:
            try:
                second()
            except init.InitError as e:
                init.report(w, f"error {e}")
            except BaseException as e:  # report anything, never unwind into the caller
                init.report(w, f"error {type(e).__name__}: {e}")
            os._exit(failed)
        init.report(w, f"pid {c2}")
        code = 0
    except BaseException as e:
        try:
            init.report(w, f"error {e}")
        except OSError:
            pass
    os._exit(code)


def _container_namespaces(pid: int) -> list[tuple[int, int]]:
    """Open the namespaces of `pid` that differ from ours, in the order to join them."""
    out = []
    for kind in ("ipc", "uts", "network", "pid", "cgroup", "mount"):
        name = spec.NAMESPACE_FILES[kind]
        theirs = f"/proc/{pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
            out.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), spec.NAMESPACE_FLAGS[kind]))
        except FileNotFoundError:
            continue
    return out


def _wants_terminal(bundle: str) -> bool:
    try:
        return spec.load_bundle(bundle).terminal
    except RuntimeError_:
        return False


def _strs(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _read_all(fd: int) -> list[str]:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace").splitlines()


class _LineReader:
    """Lines from a pipe as they arrive, until EOF."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def __iter__(self) -> _LineReader:
        return self

    def __next__(self) -> str:
        while b"\n" not in self.buffer:
            try:
                data = os.read(self.fd, 65536)
            except InterruptedError:
                continue
            if not data:
                if self.buffer:
                    line, self.buffer = self.buffer, b""
                    return line.decode(errors="replace")
                raise StopIteration
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")


def _reap_orphans() -> None:
    """Reap whatever exited children a foreground `run` inherited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass


def _reap_quietly(pid: int, block: bool = True) -> None:
    try:
        os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        pass


def _hard_limits() -> list[tuple[int, int]] | None:
    """Current hard rlimits when this process cannot raise them, else None."""
    from agent.runtime.linux import caps

    if caps.has_capability(caps.CAP_SYS_RESOURCE):
        return None
    import resource

    out = []
    for res in spec.RLIMITS.values():
        hard = resource.getrlimit(res)[1]
        out.append((res, spec.RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard))
    return out


def _write_pid_file(path: str, pid: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _connect_unix(path: str) -> int:
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise RuntimeError_(f"console socket {path}: {e.strerror or e}") from None
    return sock.detach()


def _remove_dir(d: str) -> None:
    try:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)
    except FileNotFoundError:
        pass

"""The test harness every layer reuses.

- Markers: tests under tests/unit/ are `unit` (no root, run anywhere:
  `pytest -m unit`); tests under tests/integration/ are `root` and are skipped
  when not run as root. `netns` marks tests that make test hosts.
- `testhost`: a throwaway network namespace with only `lo` (up), removed after
  the test, also on failure. Processes join it with nsenter/setns.
- `busybox_rootfs` / `make_bundle`: a busybox root filesystem built once per
  worker from Debian's busybox-static, copied per bundle; bundles are
  `specopts`-built configs.
- `runtime`: an agent.runtime.Runtime with its own root directory; whatever
  the test leaves is force-deleted after it.
- Every pytest process is a child subreaper, so containers it starts are
  re-parented to it and reaped (this machine's pid 1 reaps nobody).
- At the end of the run, a leak check fails the session if anything the tests
  made is left: network namespaces, mounts, cgroups, processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from agent.snapshots import Mount

RUN_ENV = "ORCHESTR_TEST_RUN"
NETNS_PREFIX = "ot-"
MARKER = "orchestr-test"


def pytest_configure(config: pytest.Config) -> None:
    # The controller picks one id per run; xdist workers inherit it.
    os.environ.setdefault(RUN_ENV, uuid.uuid4().hex[:8])
    if not hasattr(config, "workerinput"):
        config.stash[_LINKS_BEFORE] = root_links()


_LINKS_BEFORE = pytest.StashKey[set[str]]()


def root_links() -> set[str]:
    """Names of the links in the root network namespace."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    skip_root = pytest.mark.skip(reason="needs root")
    for item in items:
        path = str(item.path)
        if "/tests/unit/" in path:
            item.add_marker(pytest.mark.unit)
        elif "/tests/integration/" in path:
            item.add_marker(pytest.mark.root)
        if item.get_closest_marker("root") and not is_root:
            item.add_marker(skip_root)


def run_id() -> str:
    return os.environ[RUN_ENV]


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{run_id()}-{uuid.uuid4().hex[:8]}"


# -- processes ------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _subreaper() -> Iterator[None]:
    if os.geteuid() == 0:
        from agent.runtime.linux import flags, libc

        libc.prctl(flags.PR_SET_CHILD_SUBREAPER, 1)
    yield


@pytest.fixture(scope="session", autouse=True)
def _no_daemon_of_the_machine() -> Iterator[None]:
    """No test may start the machine's own daemon (the CLI starts one on the default
    socket when none answers): that one would work in the root namespace, on
    /var/lib/orchestr. Tests talk to daemons of their own, in test hosts."""
    old = os.environ.get("ORCHESTR_NO_AUTOSTART")
    os.environ["ORCHESTR_NO_AUTOSTART"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ORCHESTR_NO_AUTOSTART", None)


@pytest.fixture(scope="session", autouse=True)
def _cache_dir() -> Iterator[None]:
    """The CLI's cache of valid stacks in a directory of the test session's own."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix=f"{MARKER}-cache-")
    os.environ["ORCHESTR_CACHE_DIR"] = directory
    try:
        yield
    finally:
        os.environ.pop("ORCHESTR_CACHE_DIR", None)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _reap_orphans() -> Iterator[None]:
    yield
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break


# -- directories, rootfs, bundles -------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory only this test uses (runtime roots, data roots, sockets).

    Containers left in any runtime root below it (orchestr's or runc's) are
    force-deleted afterwards, also when the test failed half-way.
    """
    d = tmp_path / MARKER
    d.mkdir()
    yield d
    remove_containers_under(d)


def remove_containers_under(d: Path) -> None:
    import json

    from agent.runtime.runtime import Runtime

    for state in list(d.glob("**/state.json")):
        root, cid = state.parent.parent, state.parent.name
        try:
            doc = json.loads(state.read_text())
        except (OSError, ValueError):
            continue  # gone already (deleted with an earlier one), or not a record
        if "init_process_pid" in doc:  # runc's record
            subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], check=False)
        elif "startTime" in doc:
            Runtime(str(root), warn=lambda _msg: None).delete(cid, force=True)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox rootfs template, built once per worker. Copy it before writing."""
    from agent.images.busybox import make_rootfs

    dest = tmp_path_factory.mktemp("busybox") / "rootfs"
    make_rootfs(str(dest))
    return dest


BundleFactory = Callable[..., Path]


@pytest.fixture
def make_bundle(state_dir: Path, busybox_rootfs: Path) -> BundleFactory:
    """make_bundle(*specopts, name=...) -> a bundle dir with a fresh busybox rootfs.

    The base config is `runc spec`'s default with terminal off; options apply
    on top of it.
    """
    from agent.runtime import fastjson
    from agent.runtime.specopts import build, default_spec, with_terminal

    def factory(*opts: object, name: str | None = None, shared_rootfs: bool = False) -> Path:
        bundle = state_dir / (name or uuid.uuid4().hex[:8])
        bundle.mkdir()
        if shared_rootfs:
            (bundle / "rootfs").symlink_to(busybox_rootfs)
        else:
            shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True)
        config = build(default_spec(), with_terminal(False), *opts)  # type: ignore[arg-type]
        (bundle / "config.json").write_text(fastjson.dumps(config, indent=2))
        return bundle

    return factory


@pytest.fixture
def runtime(state_dir: Path) -> object:
    """A Runtime rooted in the test's state_dir (cleaned up with it)."""
    from agent.runtime.runtime import Runtime

    return Runtime(str(state_dir / "runtime-root"), warn=lambda _msg: None)


# -- peers -----------------------------------------------------------------------------


def skopeo(*args: str) -> str:
    """Run skopeo (no signature policy); its stdout, or the test fails with its stderr."""
    done = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- mounts ----------------------------------------------------------------------------

Mounter = Callable[[list["Mount"], Path], Path]


@pytest.fixture
def mounter() -> Iterator[Mounter]:
    """mounter(mounts, target): snapshot mounts made, and undone after the test."""
    from agent.snapshots import mount_all, unmount

    targets: list[Path] = []

    def mount(mounts: list[Mount], target: Path) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        targets.append(target)
        mount_all(mounts, str(target))
        return target

    try:
        yield mount
    finally:
        for target in reversed(targets):
            unmount(str(target), detach=True)


# -- test hosts --------------------------------------------------------------------


class TestHost:
    __test__ = False
    """A network namespace standing for one machine; only `lo`, no route out."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"

    def run(self, *cmd: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a command in this host's network namespace (only the netns changes)."""
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            ["nsenter", f"--net={self.path}", *cmd], capture_output=True, text=True, **kwargs
        )


@pytest.fixture
def testhost() -> Iterator[TestHost]:
    name = NETNS_PREFIX + uuid.uuid4().hex[:10]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield TestHost(name)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


# -- leak check at the end of the run ---------------------------------------------------


def find_leaks(links_before: set[str] | None = None) -> list[str]:
    """What tests of this run left behind on the machine."""
    leaks: list[str] = []
    if links_before is not None:
        leaks.extend(
            f"link {name} in the root network namespace"
            for name in sorted(root_links() - links_before)
        )
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(NETNS_PREFIX):
            leaks.append(f"network namespace {name}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4]
            if MARKER in mountpoint or "/pytest-of-" in mountpoint:
                leaks.append(f"mount {mountpoint}")
    for root, dirs, _ in os.walk("/sys/fs/cgroup"):
        depth = root.count("/") - 3
        for d in dirs:
            if d == "orchestr" or d.startswith(f"t-{run_id()}"):
                leaks.append(f"cgroup {os.path.join(root, d)}")
        if depth >= 2:
            dirs[:] = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                cgroup = f.read()
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state == "Z":
            continue
        if "/orchestr/" in cgroup:
            leaks.append(f"process {entry} in an orchestr cgroup: {cmdline[:120]}")
        elif MARKER in cmdline:
            leaks.append(f"process {entry} started by a test: {cmdline[:120]}")
    return leaks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or os.geteuid() != 0:
        return  # only the controller checks, after every worker is done
    leaks = find_leaks(session.config.stash.get(_LINKS_BEFORE, None))
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = "\n".join(f"  - {leak}" for leak in leaks)
        if reporter is not None:
            reporter.write_line(f"LEAK CHECK FAILED: the tests left behind:\n{lines}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- daemons ---------------------------------------------------------------------------


class Daemon:
    """An `orchestr daemon` of the test's own: data root under its state dir, socket
    in a short directory (sun_path holds 108 bytes)."""

    __test__ = False

    def __init__(self, state_dir: Path, proc: subprocess.Popen[bytes], sock: Path) -> None:
        self.state_dir = state_dir
        self.proc = proc
        self.socket = sock
        self.host = f"unix://{sock}"
        self.data_root = state_dir / "data"
        self.log = state_dir / "daemon.log"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for docker and orchestr clients of this daemon."""
        config = self.state_dir / "docker-config"
        config.mkdir(exist_ok=True)
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(config),
            "DOCKER_BUILDKIT": "0",
            "ORCHESTR_HOST": self.host,
            "ORCHESTR_NO_AUTOSTART": "1",
            "ORCHESTR_CACHE_DIR": str(self.state_dir / "cache"),
            **extra,
        }


@contextlib.contextmanager
def start_daemon(
    state_dir: Path, sock: Path, *, host: TestHost | None = None, args: Sequence[str] = ()
) -> Iterator[Daemon]:
    """An `orchestr daemon` on `sock` with its roots under `state_dir`, stopped (SIGTERM:
    its containers and supervisor stop too) when the block ends, also on failure.

    Without a test `host` it runs in this machine's network namespace and makes no
    links there (`--bridge none`: no default bridge network); with one, it runs in that
    host's namespace (only the network namespace changes) with the default bridge,
    masquerade off, and `args` added."""
    import time

    log = (state_dir / "daemon.log").open("ab")
    where = ["nsenter", f"--net={host.path}"] if host is not None else []
    network = ["--ip-masq=false", *args] if host is not None else ["--bridge", "none", *args]
    proc = subprocess.Popen(
        [
            *where,
            str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "orchestr"),
            "daemon",
            "--data-root",
            str(state_dir / "data"),
            "--exec-root",
            str(sock.parent / "exec"),  # short: sockets live there (sun_path: 107 bytes)
            "--host",
            f"unix://{sock}",
            "--cgroup-parent",
            f"/t-{run_id()}-{state_dir.parent.name[-40:]}",  # the leak check knows t-<run>
            *network,
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    d = Daemon(state_dir, proc, sock)
    try:
        deadline = time.monotonic() + 15
        while not _answers(sock):
            assert proc.poll() is None, (state_dir / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon did not open its socket"
            time.sleep(0.02)
        yield d
    finally:
        if proc.poll() is None:
            _kill_containers(d)  # a clean stop would give each its grace period (10 s)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _kill_containers(d: Daemon) -> None:
    """Remove the daemon's containers at once (SIGKILL), as the test is over."""
    try:
        listed = subprocess.run(
            ["docker", "ps", "-aq"], env=d.env(), capture_output=True, text=True, timeout=30
        )
        ids = listed.stdout.split()
        if ids:
            subprocess.run(
                ["docker", "rm", "-f", *ids], env=d.env(), capture_output=True, timeout=60
            )
    except subprocess.TimeoutExpired:
        pass  # the daemon's own stop does the rest


def _answers(sock: Path) -> bool:
    import socket

    if not sock.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _stop_supervisor(state_dir: Path, exec_root: Path | None = None) -> None:
    """After a test that killed its daemon: stop what the supervisor still runs."""
    import signal
    import time

    exec_root = exec_root or state_dir / "exec"
    pid_file = exec_root / "supervisor" / "supervisor.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    remove_containers_under(exec_root)
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            with contextlib.suppress(ChildProcessError):  # ours (subreaper) once orphaned
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            os.kill(pid, 0)
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


@pytest.fixture
def daemon(state_dir: Path) -> Iterator[Daemon]:
    import tempfile

    sock_dir = Path(tempfile.mkdtemp(prefix=f"{MARKER}-", dir="/tmp"))
    try:
        with start_daemon(state_dir, sock_dir / "d.sock") as d:
            yield d
    finally:
        _stop_supervisor(state_dir, sock_dir / "exec")
        _unmount_under(state_dir)
        _unmount_under(sock_dir)
        shutil.rmtree(sock_dir, ignore_errors=True)


def _unmount_under(d: Path) -> None:
    """Mounts a killed daemon left (container root file systems), deepest first."""
    from agent.snapshots import unmount

    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(str(d))), reverse=True):
        try:
            unmount(point, detach=True)
        except OSError:
            pass

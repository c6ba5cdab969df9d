"""The container's first process, from fork to execve (privileged edge).

`contain()` is the whole set-up as a straight list of named steps; it makes
no decisions — those were made by `spec.resolve()` before the fork. It runs
in the forked child that is already inside the new namespaces (pid 1 of the
new pid namespace). It reports `ready` or `error <message>` on the sync pipe,
then blocks until `start` writes to the exec fifo, then execs the process.

`enter()` is the same for `exec`: join a running container and run a process.
"""

from __future__ import annotations

import fcntl
import os
import resource as res
import stat

from agent.runtime import hooks
from agent.runtime.linux import caps, flags, libc, rootfs

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from agent.runtime.linux.cgroups import Cgroup
    from agent.runtime.linux.seccomp import Filter
    from agent.runtime.spec import Bundle

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TIOCSCTTY = 0x540E


class InitError(Exception):
    """A set-up step failed; the message names the step."""


def report(sync_fd: int, message: str) -> None:
    os.write(sync_fd, (message.replace("\n", " ") + "\n").encode())


def prepare(seccomp: object, terminal: bool) -> Filter | None:
    """Everything that needs the host's files, done by the caller before fork:
    after pivot_root or setns(mnt) neither modules nor libraries can be loaded."""
    caps.prime()
    if terminal:
        import socket  # noqa: F401 - used by setup_terminal
    if not isinstance(seccomp, dict):
        return None
    from agent.runtime.linux.seccomp import compile_filter

    try:
        return compile_filter(seccomp)
    except OSError as e:
        raise InitError(str(e)) from None
    except ValueError as e:
        raise InitError(f"linux.seccomp: {e}") from None


def contain(
    b: Bundle,
    sync_fd: int,
    ctl_fd: int,
    fifo_fd: int,
    cgroup: Cgroup | None,
    console_fd: int | None,
    seccomp_filter: Filter | None,
) -> None:
    """Set up the container around this process, wait for `start`, exec."""
    linux = b.linux
    process = b.process
    os.setsid()
    if b.has_new_namespace("network"):
        _step("bring up lo", libc.set_link_up, "lo")
    oom = process.get("oomScoreAdj")
    if isinstance(oom, int):
        _step("set oom_score_adj", set_oom_score_adj, oom)
    _step("make the root private", rootfs.prepare_root, b.rootfs, _root_propagation(linux))
    in_cgroup = False
    for m in b.mounts:
        if m.type == "cgroup" and not in_cgroup:
            _step("join the cgroup", join_cgroup, ctl_fd, b.has_new_namespace("cgroup"))
            in_cgroup = True
        _step(
            f"mount {m.type} on {m.destination}",
            rootfs.mount_one,
            b.rootfs,
            m,
            cgroup,
            b.has_new_namespace("cgroup"),
        )
    if not in_cgroup:
        _step("join the cgroup", join_cgroup, ctl_fd, b.has_new_namespace("cgroup"))
    if not any(m.destination == "/dev" and m.is_bind for m in b.mounts):
        _step("create devices", rootfs.create_devices, b.rootfs, _dicts(linux.get("devices")))
    state = b""
    if any(hooks.hooks_of(b.config, kind) for kind in hooks.IN_CONTAINER_OR_BEFORE):
        # The caller runs prestart/createRuntime hooks now and sends the state.
        report(sync_fd, "hooks")
        state = _step("wait for the createRuntime hooks", read_line, ctl_fd).encode()
        _step("run createContainer hooks", hooks.run_all, b.config, "createContainer", state)
    os.close(ctl_fd)
    _step("create the working directory", rootfs.ensure_dir, b.rootfs, _cwd(process))
    _step("pivot_root", rootfs.pivot_root, b.rootfs)
    if b.terminal:
        _step("set up the terminal", setup_terminal, console_fd)
    if b.hostname is not None:
        _step("set the hostname", libc.sethostname, b.hostname)
    domainname = b.config.get("domainname")
    if isinstance(domainname, str):
        _step("set the domain name", libc.setdomainname, domainname)
    for key, value in _strmap(linux.get("sysctl")).items():
        _step(f"sysctl {key}", write_sysctl, key, value)
    for path in _strs(linux.get("readonlyPaths")):
        _step(f"make {path} read-only", rootfs.readonly_path, path)
    for path in _strs(linux.get("maskedPaths")):
        _step(f"mask {path}", rootfs.mask_path, path)
    if b.readonly_root:
        _step("make the root read-only", rootfs.readonly_root)
    for resource, soft, hard in b.rlimits:
        _step(f"set rlimit {resource}", set_rlimit, resource, soft, hard)
    env = environment(b.env)
    user = _obj(process.get("user"))
    uid, gid = _int(user.get("uid")), _int(user.get("gid"))
    env.setdefault("HOME", home_of(uid))
    cwd = _cwd(process)
    cwd_ok = _try_chdir(cwd)
    executable = _step("find the executable", find_executable, b.args[0], env)
    drop_privileges(process, uid, gid, user, cwd, cwd_ok, seccomp_filter)
    report(sync_fd, "ready")
    os.close(sync_fd)
    _wait_for_start(fifo_fd)
    if hooks.hooks_of(b.config, "startContainer"):
        try:
            hooks.run_all(b.config, "startContainer", state)
        except hooks.HookError as e:
            os.write(2, f"orchestr runtime: {e}\n".encode())
            os._exit(1)  # spec: a failing startContainer hook stops the container
    libc.close_range_cloexec(3)
    os.execve(executable, b.args, env)


def enter(
    process: dict[str, object],
    sync_fd: int,
    console_fd: int | None,
    seccomp_filter: Filter | None,
) -> None:
    """Run `process` in the container this process already joined (for `exec`)."""
    os.setsid()
    if process.get("terminal"):
        _step("set up the terminal", setup_terminal, console_fd)
    env = environment(_strs(process.get("env")))
    user = _obj(process.get("user"))
    uid, gid = _int(user.get("uid")), _int(user.get("gid"))
    env.setdefault("HOME", home_of(uid))
    args = _strs(process.get("args"))
    cwd = str(process.get("cwd") or "/")
    cwd_ok = _try_chdir(cwd)
    executable = _step("find the executable", find_executable, args[0], env)
    for rl in _dicts(process.get("rlimits")):
        from agent.runtime.spec import RLIMITS, _rlim

        name = str(rl.get("type"))
        _step(
            f"set rlimit {name}",
            set_rlimit,
            RLIMITS[name],
            _rlim(rl.get("soft")),
            _rlim(rl.get("hard")),
        )
    drop_privileges(process, uid, gid, user, cwd, cwd_ok, seccomp_filter)
    report(sync_fd, "ready")
    libc.close_range_cloexec(3)
    os.execve(executable, args, env)


def _step(what: str, fn, *args):  # type: ignore[no-untyped-def]
    """Run one set-up step; a failure becomes an InitError naming the step."""
    try:
        return fn(*args)
    except InitError:
        raise
    except OSError as e:
        raise InitError(f"{what}: {e.strerror or e}") from None
    except (ValueError, KeyError) as e:
        raise InitError(f"{what}: {e}") from None


def read_line(fd: int) -> str:
    """One message from the caller (it sends the next only after our reply)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 4096)
        if not chunk:
            raise InitError("the runtime went away")
        data += chunk
    line = data.decode().rstrip("\n")
    word, _, rest = line.partition(" ")
    if word == "abort":
        raise InitError(rest or "aborted by the runtime")
    return rest


def join_cgroup(ctl_fd: int, new_namespace: bool) -> None:
    """Wait until the caller moved us into the container's cgroups; then, if
    asked, make them the root of a new cgroup namespace."""
    read_line(ctl_fd)
    if new_namespace:
        libc.unshare(flags.CLONE_NEWCGROUP)


def drop_privileges(
    process: dict[str, object],
    uid: int,
    gid: int,
    user: dict[str, object],
    cwd: str,
    cwd_ok: bool,
    seccomp_filter: Filter | None,
) -> None:
    """User, capabilities, no_new_privs and seccomp, in the order that works.

    Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, so it goes in
    before the capabilities are dropped; with it, the filter goes in last so
    the fewest of our own syscalls run under it (runc's order). Either way it
    is loaded before `ready`, so a failure is reported by `create`.
    """
    nnp = bool(process.get("noNewPrivileges"))
    if seccomp_filter is not None and not nnp:
        _step("load the seccomp filter", seccomp_filter.load)
    _become_user(process, uid, gid, user)
    if not cwd_ok:
        _step(f"chdir {cwd}", os.chdir, cwd)
    if nnp:
        _step("set no_new_privs", libc.prctl, flags.PR_SET_NO_NEW_PRIVS, 1)
        if seccomp_filter is not None:
            _step("load the seccomp filter", seccomp_filter.load)


def _become_user(process: dict[str, object], uid: int, gid: int, user: dict[str, object]) -> None:
    gids = user.get("additionalGids")
    groups = [g for g in gids if isinstance(g, int)] if isinstance(gids, list) else []
    capabilities = {k: _strs(v) for k, v in _obj(process.get("capabilities")).items()}
    if "capabilities" in process:
        _step("set user and capabilities", caps.apply, capabilities, uid, gid, groups)
    else:
        _step("set user", caps.switch_user, uid, gid, groups)


def _cwd(process: dict[str, object]) -> str:
    return str(process.get("cwd") or "/")


def _try_chdir(cwd: str) -> bool:
    try:
        os.chdir(cwd)
        return True
    except PermissionError:
        return False  # may work once we are the container's user
    except OSError as e:
        raise InitError(f"chdir {cwd}: {e.strerror}") from None


def _wait_for_start(fifo_fd: int) -> None:
    """Block until `start` writes to the exec fifo (we hold it open read-write)."""
    while True:
        try:
            data = os.read(fifo_fd, 1)
        except InterruptedError:
            continue
        if data:
            break
    os.close(fifo_fd)


def _root_propagation(linux: dict[str, object]) -> int:
    from agent.runtime.linux.mountopts import PROPAGATION_FLAGS

    value = linux.get("rootfsPropagation")
    return PROPAGATION_FLAGS.get(str(value), 0) if value else 0


def environment(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if sep and key:
            out[key] = value
    return out


def find_executable(name: str, env: dict[str, str]) -> str:
    """The file execve will run: `name` itself if it has a slash, else looked up in PATH."""
    if "/" in name:
        _check_executable(name, name)
        return name
    for directory in (env.get("PATH") or DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    raise InitError(f'exec: "{name}": executable file not found in $PATH')


def _check_executable(path: str, name: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InitError(f'exec: "{name}": no such file or directory') from None
    if stat.S_ISDIR(st.st_mode):
        raise InitError(f'exec: "{name}": is a directory')
    if not st.st_mode & 0o111:
        raise InitError(f'exec: "{name}": permission denied')


def home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def set_oom_score_adj(value: int) -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except PermissionError:
        # Lowering it needs CAP_SYS_RESOURCE; keep the inherited value.
        pass


def write_sysctl(key: str, value: str) -> None:
    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def set_rlimit(resource: int, soft: int, hard: int) -> None:
    inf = 0xFFFFFFFFFFFFFFFF
    res.setrlimit(
        resource,
        (res.RLIM_INFINITY if soft == inf else soft, res.RLIM_INFINITY if hard == inf else hard),
    )


def setup_terminal(console_fd: int | None) -> None:
    """A pty whose slave becomes stdio and the controlling terminal; its master
    goes to whoever holds the console socket."""
    if console_fd is None:
        raise InitError("process.terminal is true but no console socket was given")
    import socket

    master, slave = os.openpty()
    slave_path = os.ttyname(slave)
    rootfs.bind_console("", slave_path)
    sock = socket.socket(fileno=console_fd)
    try:
        socket.send_fds(sock, [slave_path.encode()], [master])
    finally:
        sock.detach()
        os.close(console_fd)
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, _TIOCSCTTY, 0)


def _obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _strs(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _strmap(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _dicts(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0

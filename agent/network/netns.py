"""Network namespaces as files, made and entered without forking.

A container's network namespace is made by the daemon *before* the container
starts and kept alive by a file: an nsfs bind mount of the namespace onto an
empty file (what `ip netns add`, CNI and podman do). The runtime then joins it
by path, and the daemon can wire it completely beforehand.

`create(path)` makes the namespace in a short-lived thread: Linux lets one
thread `unshare(CLONE_NEWNET)` on its own (the network namespace is per
thread, unlike the mount or user namespace), so the process never forks and
its other threads stay where they are. The thread binds
/proc/thread-self/ns/net onto the file, brings `lo` up, and ends; the mount
keeps the namespace alive. `remove(path)` detaches the mount and unlinks the
file; the kernel frees the namespace once nothing else holds it.

Mount propagation: a bind mount made under a *shared* mount propagates to its
peers and slaves (other mount namespaces), which would then hold copies of
the namespace file. Unmounting propagates too, so `create`/`remove` work on
any directory, but the daemon's own namespace directory should be isolated:
`prepare_dir(dir)` makes it a private bind mount of itself (as `ip netns`
does for /run/netns, except that `ip netns` makes it *shared* so that
namespaces show up in mount namespaces cloned later; orchestr wants the
opposite: containers never see the daemon's namespace files).

`run_in(path, fn)` runs `fn` in a fresh thread that has joined the namespace,
for work that must happen inside it (opening sockets, writing
/proc/sys/net/..., which follows the writer's network namespace). The thread
is thrown away afterwards, so no thread of the process is ever moved back.

Only the C library and the standard library are used: this sits on the
container start path and must import fast.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from agent.network.base import NetworkError
from agent.runtime.linux import libc
from agent.runtime.linux.flags import CLONE_NEWNET, MNT_DETACH, MS_BIND, MS_PRIVATE

__all__ = ["create", "inode", "prepare_dir", "release_dir", "remove", "run_in"]

T = TypeVar("T")

_OWN_NETNS = "/proc/thread-self/ns/net"


def _error(action: str, path: str, exc: OSError) -> NetworkError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return NetworkError(f"{action} {path}: {reason}")


def _in_thread(fn: Callable[[], T], name: str) -> T:
    """Run fn in a new thread and return its result (or raise its exception)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def create(path: str) -> None:
    """Make a new network namespace (with `lo` up) kept alive by the file `path`.

    The file must not exist yet; its directory must. On failure nothing is left.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    except OSError as exc:
        raise _error("create network namespace file", path, exc) from None
    os.close(fd)

    def make() -> None:
        libc.unshare(CLONE_NEWNET)
        libc.mount(_OWN_NETNS, path, None, MS_BIND)
        libc.set_link_up("lo")

    try:
        _in_thread(make, "orchestr-netns-create")
    except OSError as exc:
        remove(path)
        raise _error("create network namespace", path, exc) from None


def remove(path: str) -> None:
    """Detach the namespace mount on `path` and delete the file; idempotent."""
    try:
        libc.umount2(path, MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise _error("unmount network namespace", path, exc) from None
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _error("remove network namespace file", path, exc) from None


def run_in(path: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a new thread that has joined the network namespace at `path`."""

    def entered() -> T:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _error("open network namespace", path, exc) from None
        try:
            libc.setns(fd, CLONE_NEWNET, path)
        except OSError as exc:
            reason = "not a network namespace" if exc.errno == errno.EINVAL else None
            raise NetworkError(
                f"enter network namespace {path}: {reason or os.strerror(exc.errno or 0)}"
            ) from None
        finally:
            os.close(fd)
        return fn()

    return _in_thread(entered, "orchestr-netns")


def inode(path: str = _OWN_NETNS) -> int:
    """The namespace's identity (its nsfs inode); by default the calling thread's."""
    try:
        return os.stat(path).st_ino
    except OSError as exc:
        raise _error("stat network namespace", path, exc) from None


def _is_mount_point(directory: str) -> bool:
    real = os.path.realpath(directory)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def prepare_dir(directory: str) -> None:
    """Make `directory` (created if missing) a private bind mount of itself; idempotent.

    Namespace files made in it then stay in this mount namespace: nothing
    propagates to other mount namespaces.
    """
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        if not _is_mount_point(directory):
            libc.mount(directory, directory, None, MS_BIND)
        libc.mount(None, directory, None, MS_PRIVATE)
    except OSError as exc:
        raise _error("prepare network namespace directory", directory, exc) from None


def release_dir(directory: str) -> None:
    """Undo `prepare_dir` (detach the directory's self bind mount); idempotent."""
    try:
        libc.umount2(directory, MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise _error("unmount network namespace directory", directory, exc) from None

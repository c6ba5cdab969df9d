"""Performing Mount descriptions: the privileged edge of the snapshotters.

`plan` turns one `Mount` into the mount(2) calls it takes (pure: options
split into flags and filesystem data as mount(8) does, a read-only bind as a
bind plus a remount, propagation as a call of its own). `mount_all` executes
the plans in order, and undoes what it did if a call fails; `unmount`
removes every mount stacked on a target.

A Mount with a `cwd` (relative paths in its options, see
`overlay.overlay_mounts`) is performed on a short-lived thread that first
unshares its filesystem context (CLONE_FS: its own working directory) and
changes into `cwd`; the calling thread's and the process's working directory
never change.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

from agent.runtime.linux import flags, libc, mountopts
from agent.snapshots.base import Mount

# unshare(2): a private fs_struct (root, cwd, umask) for the calling thread.
# Not in agent/runtime/linux/flags.py (yet).

_BUSY_RETRIES = 20
_BUSY_DELAY = 0.05


class MountCall(NamedTuple):
    """The arguments of one mount(2) call."""

    source: str | None
    target: str
    fstype: str | None
    flags: int
    data: str | None


class Options(NamedTuple):
    flags: int
    propagation: int
    data: list[str]


def parse_options(options: Sequence[str]) -> Options:
    """Split mount(8)-style options into mount flags, propagation and data (pure)."""
    return Options(*mountopts.parse(tuple(options)))


def plan(mount: Mount, target: str) -> list[MountCall]:
    """The mount(2) calls that perform `mount` on `target`, in order (pure)."""
    options = parse_options(mount.options)
    bind_flags = flags.MS_BIND | flags.MS_REC
    if mount.type == "bind" or options.flags & flags.MS_BIND:
        if options.data:
            raise ValueError(f"bind mount of {mount.source}: unknown options {options.data}")
        calls = [MountCall(mount.source, target, None, options.flags & bind_flags, None)]
        # A bind ignores the other flags: they take a remount of the new mount.
        others = options.flags & ~bind_flags
        if others:
            calls.append(
                MountCall(None, target, None, flags.MS_REMOUNT | flags.MS_BIND | others, None)
            )
    else:
        data = ",".join(options.data) or None
        calls = [MountCall(mount.source, target, mount.type, options.flags, data)]
    if options.propagation:
        calls.append(MountCall(None, target, None, options.propagation, None))
    return calls


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Perform `mounts` on `target`, in order; on failure, undo them and raise."""
    target = os.path.abspath(target)
    done = 0
    try:
        for mount in mounts:
            _perform(plan(mount, target), mount.cwd)
            done += 1
    except BaseException:
        for _ in range(done):
            libc.umount2(target, flags.MNT_DETACH)
        raise


def unmount(target: str, *, detach: bool = False) -> None:
    """Unmount everything mounted on `target`; nothing mounted there is fine.

    EBUSY is retried for a second before it is raised (a process may still
    be leaving the tree); `detach` unmounts lazily instead (MNT_DETACH).
    """
    umount_flags = flags.MNT_DETACH if detach else 0
    busy = 0
    while True:
        try:
            libc.umount2(target, umount_flags)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return  # not (or no longer) a mount point
            if e.errno == errno.EBUSY and busy < _BUSY_RETRIES:
                busy += 1
                time.sleep(_BUSY_DELAY)
                continue
            raise


def _perform(calls: Sequence[MountCall], cwd: str | None) -> None:
    if cwd is None:
        _call_all(calls)
    else:
        _in_directory(cwd, calls)


def _call_all(calls: Sequence[MountCall]) -> None:
    """Step by step; if a later call fails, the first (the mount itself) is undone."""
    for index, call in enumerate(calls):
        try:
            libc.mount(call.source, call.target, call.fstype, call.flags, call.data)
        except OSError:
            if index > 0:
                libc.umount2(call.target, flags.MNT_DETACH)
            raise


def _in_directory(cwd: str, calls: Sequence[MountCall]) -> None:
    """Run the calls from `cwd` on a thread with its own working directory."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            libc.unshare(flags.CLONE_FS)
            os.chdir(cwd)
            _call_all(calls)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=run, name="snapshots-mount", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]

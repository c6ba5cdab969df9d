"""The container's filesystem view: mounts, devices, pivot_root, masks (privileged edge).

Runs inside the container's new mount namespace, before pivot_root. Every
destination is resolved with `secure_join` so a symlink inside the rootfs can
never send a mount outside it.
"""

from __future__ import annotations

import errno
import os
import stat

from agent.runtime.linux import cgroups, flags, libc

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from agent.runtime.spec import Mount

# Locked flags a bind mount inherits and a remount must repeat (statvfs f_flag bits).
_ST_TO_MS = (
    (1, flags.MS_RDONLY),
    (2, flags.MS_NOSUID),
    (4, flags.MS_NODEV),
    (8, flags.MS_NOEXEC),
    (1024, flags.MS_NOATIME),
    (2048, flags.MS_NODIRATIME),
    (4096, flags.MS_RELATIME),
)
_ATIME_FLAGS = flags.MS_NOATIME | flags.MS_RELATIME | flags.MS_STRICTATIME | flags.MS_NODIRATIME

# The devices every container gets (runc's set): name, major, minor, mode.
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)
DEFAULT_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)


def secure_join(root: str, unsafe: str) -> str:
    """root + unsafe, with every symlink resolved as if root were '/'."""
    pending = [p for p in unsafe.split("/") if p]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join([*resolved, part])
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise OSError(errno.ELOOP, f"{unsafe}: too many levels of symbolic links")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending = [p for p in target.split("/") if p] + pending
        else:
            resolved.append(part)
    return root + ("/" + "/".join(resolved) if resolved else "")


def ensure_dir(rootfs: str, path: str) -> None:
    """Create `path` inside the rootfs if it is missing (the working directory,
    as runc does); a read-only rootfs is left alone and chdir reports it later."""
    target = secure_join(rootfs, path)
    if os.path.isdir(target):
        return
    try:
        os.makedirs(target, 0o755, exist_ok=True)
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise


def prepare_root(rootfs: str, propagation: int) -> None:
    """Stop mounts leaking back to the host, and make the rootfs a mount point."""
    libc.mount(None, "/", None, flags.MS_REC | (propagation or flags.MS_SLAVE))
    libc.mount(rootfs, rootfs, None, flags.MS_BIND | flags.MS_REC)


def _ensure_target(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, exist_ok=True)
    elif not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def remount(path: str, extra: int) -> None:
    """Remount a bind mount with `extra` flags, keeping the flags the kernel locked."""
    try:
        libc.mount(None, path, None, flags.MS_REMOUNT | flags.MS_BIND | extra)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        locked = 0
        f_flag = os.statvfs(path).f_flag
        for st_bit, ms_bit in _ST_TO_MS:
            if f_flag & st_bit:
                locked |= ms_bit
        if extra & _ATIME_FLAGS:
            locked &= ~_ATIME_FLAGS
        libc.mount(None, path, None, flags.MS_REMOUNT | flags.MS_BIND | extra | locked)


def mount_one(rootfs: str, m: Mount, cgroup: cgroups.Cgroup | None, new_cgroupns: bool) -> None:
    dest = secure_join(rootfs, m.destination)
    if m.is_bind:
        _ensure_target(dest, os.path.isdir(m.source))
        libc.mount(m.source, dest, None, m.flags & (flags.MS_BIND | flags.MS_REC))
        extra = m.flags & ~(flags.MS_BIND | flags.MS_REC | flags.MS_REMOUNT)
        if extra:
            remount(dest, extra)
    elif m.type == "cgroup":
        mount_cgroups(dest, m, cgroup, new_cgroupns)
    elif m.type == "sysfs":
        _ensure_target(dest, True)
        try:
            libc.mount(m.source, dest, "sysfs", m.flags, m.data or None)
        except OSError as e:
            if e.errno != errno.EPERM:
                raise
            # sysfs of the host's network namespace cannot be mounted anew: bind it.
            libc.mount("/sys", dest, None, flags.MS_BIND | flags.MS_REC)
            remount(dest, m.flags)
    else:
        if m.type == "proc" and os.path.islink(dest):
            raise OSError(errno.EINVAL, f"mount proc on {m.destination}: is a symlink")
        _ensure_target(dest, True)
        libc.mount(m.source, dest, m.type, m.flags, m.data or None)
    if m.propagation:
        libc.mount(None, dest, None, m.propagation)


def mount_cgroups(dest: str, m: Mount, cgroup: cgroups.Cgroup | None, new_ns: bool) -> None:
    """/sys/fs/cgroup inside the container, showing the container's own cgroups."""
    _ensure_target(dest, True)
    rw = m.flags & ~flags.MS_RDONLY
    if cgroups.is_unified():
        if new_ns or cgroup is None:
            libc.mount("cgroup2", dest, "cgroup2", m.flags)
        else:
            libc.mount(cgroup.paths[cgroups.CGROUP_ROOT], dest, None, flags.MS_BIND | flags.MS_REC)
            remount(dest, m.flags)
        return
    libc.mount("tmpfs", dest, "tmpfs", rw, "mode=755")
    for h in cgroups.hierarchies():
        if h.version == 2:
            continue  # a hybrid's unified tree holds no controller worth showing (runc agrees)
        sub = os.path.join(dest, os.path.relpath(h.mountpoint, cgroups.CGROUP_ROOT))
        os.makedirs(sub, exist_ok=True)
        if new_ns or cgroup is None:
            libc.mount("cgroup", sub, "cgroup", m.flags, h.options)
        else:
            libc.mount(cgroup.paths[h.mountpoint], sub, None, flags.MS_BIND | flags.MS_REC)
            remount(sub, m.flags)
    if m.flags & flags.MS_RDONLY:
        libc.mount(None, dest, None, flags.MS_REMOUNT | rw | flags.MS_RDONLY, "mode=755")


def create_devices(rootfs: str, devices: list[dict[str, object]]) -> None:
    """The default device nodes, the config's linux.devices, and /dev's symlinks."""
    for path, major, minor in DEFAULT_DEVICES:
        _mknod(secure_join(rootfs, path), stat.S_IFCHR | 0o666, major, minor, 0, 0)
    for dev in devices:
        kind = str(dev.get("type"))
        mode = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
        perm = dev.get("fileMode")
        _mknod(
            secure_join(rootfs, str(dev.get("path"))),
            mode | (perm if isinstance(perm, int) else 0o666),
            _int(dev.get("major")),
            _int(dev.get("minor")),
            _int(dev.get("uid")),
            _int(dev.get("gid")),
        )
    for target, link in DEFAULT_SYMLINKS:
        path = secure_join(rootfs, link)
        try:
            os.symlink(target, path)
        except FileExistsError:
            pass


def _int(v: object) -> int:
    return v if isinstance(v, int) else 0


def _mknod(path: str, mode: int, major: int, minor: int, uid: int, gid: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mknod(path, mode, os.makedev(major, minor))
    os.chmod(path, mode & 0o7777)
    os.chown(path, uid, gid)


def bind_console(rootfs: str, slave_path: str) -> None:
    """The container's terminal also shows as /dev/console, as runc does it."""
    dest = secure_join(rootfs, "/dev/console")
    _ensure_target(dest, False)
    libc.mount(slave_path, dest, None, flags.MS_BIND)


def pivot_root(rootfs: str) -> None:
    """Make rootfs '/', and detach the old root so nothing of the host stays visible."""
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.chdir(rootfs)
        libc.pivot_root(".", ".")
        os.fchdir(old_root)
        libc.mount(None, ".", None, flags.MS_SLAVE | flags.MS_REC)
        libc.umount2(".", flags.MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")


def mask_path(path: str) -> None:
    """Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            libc.mount("tmpfs", path, "tmpfs", flags.MS_RDONLY)
        else:
            libc.mount("/dev/null", path, None, flags.MS_BIND)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise


def readonly_path(path: str) -> None:
    try:
        libc.mount(path, path, None, flags.MS_BIND | flags.MS_REC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    remount(path, flags.MS_RDONLY | flags.MS_REC)


def readonly_root() -> None:
    remount("/", flags.MS_RDONLY)

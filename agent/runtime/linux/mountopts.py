"""mount(8)-style options to mount(2) arguments (pure), shared by the runtime's
config.json mounts and the snapshotters' mount descriptions."""

from __future__ import annotations

from agent.runtime.linux import flags

# Options that are flags; the value is (sets it?, flag). `defaults` changes nothing.
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "defaults": (True, 0),
    "ro": (True, flags.MS_RDONLY),
    "rw": (False, flags.MS_RDONLY),
    "nosuid": (True, flags.MS_NOSUID),
    "suid": (False, flags.MS_NOSUID),
    "nodev": (True, flags.MS_NODEV),
    "dev": (False, flags.MS_NODEV),
    "noexec": (True, flags.MS_NOEXEC),
    "exec": (False, flags.MS_NOEXEC),
    "sync": (True, flags.MS_SYNCHRONOUS),
    "async": (False, flags.MS_SYNCHRONOUS),
    "dirsync": (True, flags.MS_DIRSYNC),
    "remount": (True, flags.MS_REMOUNT),
    "mand": (True, flags.MS_MANDLOCK),
    "nomand": (False, flags.MS_MANDLOCK),
    "atime": (False, flags.MS_NOATIME),
    "noatime": (True, flags.MS_NOATIME),
    "diratime": (False, flags.MS_NODIRATIME),
    "nodiratime": (True, flags.MS_NODIRATIME),
    "bind": (True, flags.MS_BIND),
    "rbind": (True, flags.MS_BIND | flags.MS_REC),
    "relatime": (True, flags.MS_RELATIME),
    "norelatime": (False, flags.MS_RELATIME),
    "strictatime": (True, flags.MS_STRICTATIME),
    "nostrictatime": (False, flags.MS_STRICTATIME),
    "lazytime": (True, flags.MS_LAZYTIME),
    "nolazytime": (False, flags.MS_LAZYTIME),
    "nosymfollow": (True, flags.MS_NOSYMFOLLOW),
    "symfollow": (False, flags.MS_NOSYMFOLLOW),
}
PROPAGATION_FLAGS = {
    "private": flags.MS_PRIVATE,
    "rprivate": flags.MS_PRIVATE | flags.MS_REC,
    "shared": flags.MS_SHARED,
    "rshared": flags.MS_SHARED | flags.MS_REC,
    "slave": flags.MS_SLAVE,
    "rslave": flags.MS_SLAVE | flags.MS_REC,
    "unbindable": flags.MS_UNBINDABLE,
    "runbindable": flags.MS_UNBINDABLE | flags.MS_REC,
}


def parse(options: list[str] | tuple[str, ...]) -> tuple[int, int, list[str]]:
    """(mount flags, propagation flags, data options) from a list of options."""
    mount_flags = 0
    propagation = 0
    data: list[str] = []
    for option in options:
        if option in MOUNT_FLAGS:
            sets, flag = MOUNT_FLAGS[option]
            mount_flags = mount_flags | flag if sets else mount_flags & ~flag
        elif option in PROPAGATION_FLAGS:
            propagation |= PROPAGATION_FLAGS[option]
        else:
            data.append(option)
    return mount_flags, propagation, data

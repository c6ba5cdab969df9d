"""Linux capabilities: names, masks and applying a process's sets (privileged edge)."""

from __future__ import annotations

import os

from agent.runtime.linux import flags

CAPABILITIES = {
    name: i
    for i, name in enumerate(
        (
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}
CAP_SYS_RESOURCE = CAPABILITIES["CAP_SYS_RESOURCE"]


_last_cap: int | None = None
_bounding: int | None = None


def last_cap() -> int:
    """The highest capability this kernel knows (read once, before any pivot_root)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except OSError:
            _last_cap = max(CAPABILITIES.values())
    return _last_cap


def mask(names: list[str], available: int) -> int:
    """The mask of the known names, limited to what this process may grant."""
    m = 0
    for name in names:
        bit = CAPABILITIES.get(name)
        if bit is not None:
            m |= 1 << bit
    return m & available


def bounding_set() -> int:
    """The runtime's own bounding set as a mask (read once, before any pivot_root)."""
    global _bounding
    if _bounding is None:
        _bounding = (1 << (last_cap() + 1)) - 1
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    _bounding = int(line.split()[1], 16)
    return _bounding


def prime() -> None:
    """Read what `apply` needs from the host's /proc while it is still visible."""
    last_cap()
    bounding_set()


def has_capability(bit: int) -> bool:
    from agent.runtime.linux import libc  # ctypes: only where a syscall is made

    effective, _, _ = libc.capget()
    return bool(effective & (1 << bit))


def apply(capabilities: dict[str, list[str]], uid: int, gid: int, groups: list[int]) -> None:
    """Drop the bounding set, switch user keeping capabilities, then set the rest.

    Order matters: the bounding set can only shrink while we still hold
    CAP_SETPCAP; KEEPCAPS carries the permitted set across setuid; the
    effective set is set again after it, and ambient last.
    """
    from agent.runtime.linux import libc  # imported before fork by init.prepare

    available = bounding_set()
    bounding = mask(capabilities.get("bounding", []), available)
    for bit in range(last_cap() + 1):
        if not bounding & (1 << bit) and available & (1 << bit):
            libc.prctl(flags.PR_CAPBSET_DROP, bit)
    libc.prctl(flags.PR_SET_KEEPCAPS, 1)
    switch_user(uid, gid, groups)
    libc.prctl(flags.PR_SET_KEEPCAPS, 0)
    libc.capset(
        mask(capabilities.get("effective", []), available),
        mask(capabilities.get("permitted", []), available),
        mask(capabilities.get("inheritable", []), available),
    )
    libc.prctl(flags.PR_CAP_AMBIENT, flags.PR_CAP_AMBIENT_CLEAR_ALL)
    ambient = mask(capabilities.get("ambient", []), available)
    for bit in range(last_cap() + 1):
        if ambient & (1 << bit):
            # The kernel refuses a cap that is not both permitted and inheritable;
            # runc ignores that too (its `runc spec` sets ambient, not inheritable).
            try:
                libc.prctl(flags.PR_CAP_AMBIENT, flags.PR_CAP_AMBIENT_RAISE, bit)
            except PermissionError:
                pass


def switch_user(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)

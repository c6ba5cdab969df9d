"""A busybox root filesystem from Debian's busybox-static, without any registry.

    python -m agent.images.busybox DEST

makes DEST a small but complete rootfs: /bin/busybox with a symlink per
applet, /etc/passwd and /etc/group, and the glibc pieces busybox's applets
need to resolve host names through NSS at run time (see MACHINE-NOTES).
The test suite's image factory and the examples build on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

BUSYBOX = "/bin/busybox"
_LIBDIR = "/lib/x86_64-linux-gnu" if os.uname().machine == "x86_64" else "/lib/aarch64-linux-gnu"
NSS_LIBS = ("libc.so.6", "libnss_dns.so.2", "libnss_files.so.2", "libresolv.so.2")
LOADERS = {"x86_64": "ld-linux-x86-64.so.2", "aarch64": "ld-linux-aarch64.so.1"}

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
nogroup:x:65534:
"""
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"


class BusyboxMissing(RuntimeError):
    pass


def applets(busybox: str = BUSYBOX) -> list[str]:
    """Paths (relative to /) busybox installs its applets at."""
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def make_rootfs(dest: str, busybox: str = BUSYBOX, with_nss: bool = True) -> str:
    """Fill `dest` with a busybox rootfs; returns dest."""
    if not os.path.exists(busybox):
        raise BusyboxMissing(f"{busybox} not found: apt-get install busybox-static")
    for d in (
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "root",
        "tmp",
        "proc",
        "sys",
        "dev",
        "var",
        "home",
    ):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(dest, "bin/busybox"))
    for path in applets(busybox):
        link = os.path.join(dest, path)
        if path == "bin/busybox" or os.path.lexists(link):
            continue
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/bin/busybox", link)
    _write(dest, "etc/passwd", PASSWD)
    _write(dest, "etc/group", GROUP)
    _write(dest, "etc/nsswitch.conf", NSSWITCH)
    _write(dest, "etc/hostname", "busybox\n")
    _write(dest, "etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n")
    if with_nss:
        libdir = os.path.join(dest, _LIBDIR.lstrip("/"))
        os.makedirs(libdir, exist_ok=True)
        for lib in (*NSS_LIBS, LOADERS.get(os.uname().machine, "")):
            src = os.path.join(_LIBDIR, lib)
            if lib and os.path.exists(src):
                shutil.copy2(os.path.realpath(src), os.path.join(libdir, lib))
        loader = LOADERS.get(os.uname().machine)
        if loader and os.uname().machine == "x86_64":
            os.makedirs(os.path.join(dest, "lib64"), exist_ok=True)
            link = os.path.join(dest, "lib64", loader)
            if not os.path.lexists(link):
                os.symlink(os.path.join(_LIBDIR, loader), link)
    return dest


def _write(root: str, rel: str, text: str) -> None:
    with open(os.path.join(root, rel), "w") as f:
        f.write(text)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m agent.images.busybox DEST", file=sys.stderr)
        return 2
    try:
        make_rootfs(args[0])
    except (BusyboxMissing, OSError) as e:
        print(f"busybox rootfs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

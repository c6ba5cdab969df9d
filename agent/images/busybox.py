"""A busybox root filesystem from Debian's busybox-static, without any registry.

    python -m agent.images.busybox DEST
    python -m agent.images.busybox --image [--data-root DIR] [--name NAME]

makes DEST a small but complete rootfs (or imports one as busybox:latest):
/bin/busybox with a symlink per applet, /etc/passwd and /etc/group, and the
glibc pieces busybox's applets need to resolve host names through NSS at run
time (see MACHINE-NOTES).
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


def make_image(data_root: str, name: str = "busybox:latest") -> str:
    """Build the rootfs in a temporary directory and import it as `name` into the
    image stores under `data_root`; returns the manifest digest."""
    import tempfile

    from agent.content import ContentStore
    from agent.images.importer import import_rootfs
    from agent.images.reference import parse
    from agent.images.store import ImageStore

    content = ContentStore(os.path.join(data_root, "content"))
    images = ImageStore(os.path.join(data_root, "images"), content)
    with tempfile.TemporaryDirectory(prefix="busybox-") as tmp:
        rootfs = make_rootfs(os.path.join(tmp, "rootfs"))
        image = import_rootfs(content, images, rootfs, parse(name), cmd=["sh"])
    return str(image.target.digest)


USAGE = """usage: python -m agent.images.busybox DEST
       python -m agent.images.busybox --image [--data-root DIR] [--name NAME]

The first form writes a busybox root filesystem to DEST; the second imports one as
the image NAME (default busybox:latest) into the stores under DIR (default
/var/lib/orchestr), the base image the examples and tests build on.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] == "--image":
            opts = dict(zip(args[1::2], args[2::2], strict=False))
            unknown = set(opts) - {"--data-root", "--name"}
            if unknown or len(args[1:]) % 2:
                print(USAGE, end="", file=sys.stderr)
                return 2
            name = opts.get("--name", "busybox:latest")
            digest = make_image(opts.get("--data-root", "/var/lib/orchestr"), name)
            print(f"{name}: {digest}")
            return 0
        if len(args) != 1 or args[0].startswith("-"):
            print(USAGE, end="", file=sys.stderr)
            return 2
        make_rootfs(args[0])
    except (BusyboxMissing, OSError, ValueError) as e:
        print(f"busybox: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

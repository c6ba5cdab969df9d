"""The overlay snapshotter for real: layers unpacked as root, mounted with overlayfs.

Every mount a test makes goes through the `mounter` fixture, which unmounts it
afterwards, also when the test failed half-way (the session's leak check fails
the run on a mount left under a pytest directory).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

from agent.runtime import specopts as so
from agent.snapshots import Mount, OverlaySnapshotter, mount_all, unmount
from agent.snapshots.archive import OPAQUE_XATTR
from tests.conftest import Mounter, unique
from tests.integration.test_runtime import run_cli

TAR = "application/vnd.oci.image.layer.v1.tar"
TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"

Member = tuple[tarfile.TarInfo, bytes]


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: Any) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_000_000_000
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def f(name: str, text: str = "", **attrs: Any) -> Member:
    info, _ = member(name, **attrs)
    info.size = len(text.encode())
    return info, text.encode()


def d(name: str, **attrs: Any) -> Member:
    return member(name, tarfile.DIRTYPE, **attrs)


def layer(*members: Member) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    out.seek(0)
    return out


def tree(root: Path) -> dict[str, str]:
    """Every entry under root: 'd', 'f:<content>', 'l:<target>', or 'c:<maj>:<min>'."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            found[rel] = "l:" + os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            found[rel] = "d"
        elif stat.S_ISCHR(st.st_mode):
            found[rel] = f"c:{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        else:
            found[rel] = "f:" + path.read_text()
    return found


BASE = [
    d("etc"),
    f("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
    f("etc/hosts", "127.0.0.1 localhost\n"),
    d("usr"),
    d("usr/share"),
    d("usr/share/doc"),
    f("usr/share/doc/readme", "old docs"),
    f("usr/share/old.txt", "old"),
    d("opt"),
    f("opt/app", "a file that becomes a directory"),
    d("var"),
    d("var/lib"),
    f("var/lib/state", "a directory that becomes a file"),
    member("bin", tarfile.SYMTYPE, linkname="usr/bin"),
]
UPPER = [
    f("etc/.wh.hosts"),  # delete a file
    d("usr/share"),
    f("usr/share/.wh..wh..opq"),  # hide everything below, then new contents
    f("usr/share/new.txt", "new"),
    d("opt/app"),  # a file replaced by a directory
    f("opt/app/config", "cfg"),
    f("var/lib", "now a file"),  # a directory replaced by a file
]
MERGED = {
    "bin": "l:usr/bin",
    "etc": "d",
    "etc/passwd": "f:root:x:0:0::/root:/bin/sh\n",
    "opt": "d",
    "opt/app": "d",
    "opt/app/config": "f:cfg",
    "usr": "d",
    "usr/share": "d",
    "usr/share/new.txt": "f:new",
    "var": "d",
    "var/lib": "f:now a file",
}


def two_layers(root: Path) -> tuple[OverlaySnapshotter, str]:
    s = OverlaySnapshotter(str(root))
    base = s.unpack(None, layer(*BASE), TAR)
    return s, s.unpack(base, layer(*UPPER), TAR)


def test_whiteouts_become_overlayfs_whiteouts(state_dir: Path) -> None:
    s, top = two_layers(state_dir / "data")
    fs = state_dir / "data/snapshots" / str(s.stat(top).id) / "fs"
    assert tree(fs) == {
        "etc": "d",
        "etc/hosts": "c:0:0",
        "opt": "d",
        "opt/app": "d",
        "opt/app/config": "f:cfg",
        "usr": "d",
        "usr/share": "d",
        "usr/share/new.txt": "f:new",
        "var": "d",
        "var/lib": "f:now a file",
    }
    assert os.getxattr(fs / "usr/share", OPAQUE_XATTR) == b"y"
    assert OPAQUE_XATTR not in os.listxattr(fs / "usr")


def test_two_layers_merge_through_the_overlay(state_dir: Path, mounter: Mounter) -> None:
    s, top = two_layers(state_dir / "data")
    container = state_dir / "containers/c1"
    target = mounter(s.mounts(top, str(container)), state_dir / "rootfs")
    assert tree(target) == MERGED

    # Writes land in the container's upper directory, deletes become whiteouts there.
    (target / "etc/motd").write_text("written through the mount")
    (target / "etc/passwd").unlink()
    upper = container / "upper"
    assert (upper / "etc/motd").read_text() == "written through the mount"
    st = (upper / "etc/passwd").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    # The snapshots themselves are untouched.
    assert not any(p.name == "motd" for p in (state_dir / "data/snapshots").rglob("*"))


def test_read_only_views(state_dir: Path, mounter: Mounter) -> None:
    s, top = two_layers(state_dir / "data")
    base = s.stat(top).parent
    assert base is not None
    one = mounter(s.mounts(base, str(state_dir / "c1"), readonly=True), state_dir / "one")
    assert (one / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
    with pytest.raises(OSError, match="Read-only file system"):
        (one / "x").write_text("x")
    both = mounter(s.mounts(top, str(state_dir / "c2"), readonly=True), state_dir / "both")
    assert tree(both) == MERGED
    with pytest.raises(OSError, match="Read-only file system"):
        (both / "x").write_text("x")


def test_attributes_owners_devices_and_xattrs(state_dir: Path, mounter: Mounter) -> None:
    xattr = member("etc/tagged", data=b"t")
    xattr[0].pax_headers = {
        "SCHILY.xattr.user.origin": "layer",
        "SCHILY.xattr.trusted.overlay.redirect": "/etc",  # never from a layer
    }
    s = OverlaySnapshotter(str(state_dir / "data"))
    chain = s.unpack(
        None,
        layer(
            d("etc", mode=0o751, uid=0, gid=0),
            f("etc/suid", "s", mode=0o4755, uid=1000, gid=1001, mtime=1_234_567_890),
            xattr,
            member("etc/link", tarfile.SYMTYPE, linkname="suid", uid=7, gid=8, mtime=42),
            member("etc/hard", tarfile.LNKTYPE, linkname="etc/suid"),
            d("dev"),
            member("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666),
            member("dev/loop9", tarfile.BLKTYPE, devmajor=7, devminor=9, mode=0o660),
            member("run.fifo", tarfile.FIFOTYPE, mode=0o600, uid=5, gid=5),
        ),
        TAR,
    )
    root = mounter(s.mounts(chain, str(state_dir / "c")), state_dir / "rootfs")
    suid = (root / "etc/suid").stat()
    assert (suid.st_uid, suid.st_gid, stat.S_IMODE(suid.st_mode)) == (1000, 1001, 0o4755)
    assert suid.st_mtime == 1_234_567_890
    assert (root / "etc/hard").stat().st_ino == suid.st_ino
    assert stat.S_IMODE((root / "etc").stat().st_mode) == 0o751
    link = (root / "etc/link").lstat()
    assert (link.st_uid, link.st_gid, link.st_mtime) == (7, 8, 42)
    assert os.getxattr(root / "etc/tagged", "user.origin") == b"layer"
    fs = state_dir / "data/snapshots/1/fs"
    assert "trusted.overlay.redirect" not in os.listxattr(fs / "etc/tagged")
    null = (root / "dev/null").stat()
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (root / "dev/loop9").stat()
    assert stat.S_ISBLK(loop.st_mode) and os.minor(loop.st_rdev) == 9
    fifo = (root / "run.fifo").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and fifo.st_uid == 5


def _forty_layers(data_root: Path) -> tuple[OverlaySnapshotter, str]:
    s = OverlaySnapshotter(str(data_root))
    chain: str | None = None
    for n in range(40):
        chain = s.unpack(chain, layer(d("layers"), f(f"layers/{n:02d}", f"layer {n}")), TAR)
    assert chain is not None
    return s, chain


@pytest.mark.parametrize("root_kind", ["short", "pytest", "deep"])
def test_forty_layers_mount(state_dir: Path, mounter: Mounter, root_kind: str) -> None:
    """40 layers, each adding one file, under data roots of three lengths.

    short: /tmp/osnap-XXXX, the absolute options fit in a page; pytest: the
    test's own directory (~100 bytes a lowerdir, 40 of them do not fit);
    deep: a ~2 KiB data root (absolute options would take ~80 KiB).
    """
    short = tempfile.mkdtemp(prefix="osnap-", dir="/tmp")
    target = state_dir / "rootfs"
    try:
        data_root = {
            "short": Path(short),
            "pytest": state_dir / "data",
            "deep": state_dir.joinpath("data", *["d" * 200] * 10),
        }[root_kind]
        s, chain = _forty_layers(data_root)
        mounts = s.mounts(chain, str(data_root / "containers/c1"))
        assert len(s.list()) == 40
        assert (mounts[0].cwd is None) == (root_kind == "short")
        assert len(",".join(mounts[0].options)) < 4096
        cwd = os.getcwd()
        root = mounter(mounts, target)
        assert os.getcwd() == cwd  # the mount's cwd never leaks into the process
        assert sorted(os.listdir(root / "layers")) == [f"{n:02d}" for n in range(40)]
        assert (root / "layers/00").read_text() == "layer 0"
        assert (root / "layers/39").read_text() == "layer 39"
        (root / "layers/new").write_text("rw")
        assert (data_root / "containers/c1/upper/layers/new").read_text() == "rw"
    finally:
        unmount(str(target), detach=True)
        shutil.rmtree(short)


def test_a_failed_mount_leaves_nothing_mounted(state_dir: Path) -> None:
    target = state_dir / "rootfs"
    target.mkdir()
    bad = [
        Mount("bind", str(state_dir), ["rbind"]),
        Mount("overlay", "overlay", [f"lowerdir={state_dir}/missing:{state_dir}/missing2"]),
    ]
    with pytest.raises(OSError, match="mount"):
        mount_all(bad, str(target))
    with open("/proc/self/mountinfo") as mountinfo:
        assert f" {target} " not in mountinfo.read()


def test_busybox_image_runs_on_its_snapshots(
    state_dir: Path, busybox_rootfs: Path, mounter: Mounter
) -> None:
    """The real path: a busybox image as two gzip layers, a container on the overlay."""
    import gzip

    base = io.BytesIO()
    with tarfile.open(fileobj=base, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(busybox_rootfs, arcname=".")
    s = OverlaySnapshotter(str(state_dir / "data"))
    chain = s.unpack(None, io.BytesIO(gzip.compress(base.getvalue(), 1)), TGZ)
    top = layer(f("etc/greeting", "hello from the top layer\n"), f("etc/.wh.group"))
    chain = s.unpack(chain, io.BytesIO(gzip.compress(top.getvalue())), TGZ)

    bundle = state_dir / "bundle"
    bundle.mkdir()
    rootfs = mounter(s.mounts(chain, str(state_dir / "container")), bundle / "rootfs")
    script = "cat /etc/greeting; test -e /etc/group || echo no-group; echo hi > /tmp/w"
    config = so.build(
        so.default_spec(),
        so.with_terminal(False),
        so.with_rootfs("rootfs", readonly=False),
        so.with_args(["sh", "-c", script]),
    )
    import json

    (bundle / "config.json").write_text(json.dumps(config))
    out = run_cli(state_dir / "root", "run", "-b", str(bundle), unique())
    assert out.returncode == 0, out.stderr
    assert out.stdout == "hello from the top layer\nno-group\n"
    assert (state_dir / "container/upper/tmp/w").read_text() == "hi\n"
    assert (rootfs / "tmp/w").exists()


def test_a_layer_asked_for_at_once_is_unpacked_once(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tasks of a new service all create their containers at once: one unpacking of
    # the image's layer, the others wait for it (they used to each unpack it, to keep one).
    import hashlib
    import threading

    from agent.snapshots import overlay

    data = layer(d("etc"), f("etc/greeting", "hello")).getvalue()
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    snapshots = OverlaySnapshotter(str(state_dir / "snapshots"))
    calls = []
    real = overlay.unpack_to_snapshot

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(overlay, "unpack_to_snapshot", counted)
    chains: list[str] = []
    go = threading.Barrier(8)

    def create() -> None:
        go.wait()
        chains.append(snapshots.unpack(None, io.BytesIO(data), TAR, diff_id))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(chains)) == 1 and len(chains) == 8
    assert sorted(os.listdir(snapshots.snapshots_dir)) == ["1"]  # no staging left

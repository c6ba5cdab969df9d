"""An overlay upper directory as an OCI layer: whiteouts, opaque directories,
hard links and symlinks come out in the OCI form, and unpacking the layer
gives the same tree back (needs root: whiteouts are 0:0 character devices and
opaque directories carry a trusted.* attribute)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from agent.images.build.layer import LayerError, write_diff
from agent.snapshots.archive import OPAQUE_XATTR, unpack_to_snapshot


def make_upper(upper: Path) -> None:
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "app.conf").write_text("x=1\n")
    os.mknod(upper / "etc" / "hostname", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (upper / "var" / "spool").mkdir(parents=True)
    os.setxattr(upper / "var" / "spool", OPAQUE_XATTR, b"y")
    (upper / "var" / "spool" / "new").write_text("fresh\n")
    os.link(upper / "etc" / "app.conf", upper / "etc" / "app.link")
    os.symlink("../etc/app.conf", upper / "var" / "conf")
    os.chown(upper / "etc" / "app.conf", 1, 2)


def test_upper_directory_becomes_an_oci_layer(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    make_upper(upper)
    buf = io.BytesIO()
    write_diff(str(upper), buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == [
        "etc",
        "etc/app.conf",
        "etc/app.link",
        "etc/.wh.hostname",
        "var",
        "var/conf",
        "var/spool",
        "var/spool/.wh..wh..opq",
        "var/spool/new",
    ]
    assert members["etc/app.link"].islnk() and members["etc/app.link"].linkname == "etc/app.conf"
    assert (members["etc/app.conf"].uid, members["etc/app.conf"].gid) == (1, 2)
    assert members["etc/app.conf"].uname == ""
    assert members["var/conf"].issym() and members["var/conf"].linkname == "../etc/app.conf"

    # Applied again, the layer gives the upper directory back.
    buf.seek(0)
    unpack_to_snapshot(buf, str(tmp_path / "again"), "application/vnd.oci.image.layer.v1.tar")
    again = tmp_path / "again"
    assert stat.S_ISCHR(os.lstat(again / "etc" / "hostname").st_mode)
    assert os.getxattr(again / "var" / "spool", OPAQUE_XATTR) == b"y"
    assert (again / "var" / "spool" / "new").read_text() == "fresh\n"
    assert os.stat(again / "etc" / "app.link").st_ino == os.stat(again / "etc" / "app.conf").st_ino


def test_the_same_change_gives_the_same_diff(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        upper = tmp_path / name
        make_upper(upper)
        for path in sorted(upper.rglob("*")):
            os.utime(path, (0, 0), follow_symlinks=False)
        buf = io.BytesIO()
        write_diff(str(upper), buf)
        digests.append(buf.getvalue())
    assert digests[0] == digests[1]


def test_a_redirected_directory_is_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/old")
    with pytest.raises(LayerError, match=r"trusted\.overlay\.redirect"):
        write_diff(str(upper), io.BytesIO())

"""A build context as the tar stream POST /build takes (as `docker build` sends it)."""

from __future__ import annotations

import io
import os
import tarfile
from typing import IO

__all__ = ["INLINE_DOCKERFILE", "tar_context"]

INLINE_DOCKERFILE = ".orchestr-dockerfile-inline"


def tar_context(directory: str, out: IO[bytes], dockerfile_inline: str | None = None) -> None:
    """Write `directory` (and an inline Dockerfile, if given) to `out` as a tar stream."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"build context {directory} is not a directory")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, name), arcname=name)
        if dockerfile_inline is not None:
            data = dockerfile_inline.encode()
            info = tarfile.TarInfo(INLINE_DOCKERFILE)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

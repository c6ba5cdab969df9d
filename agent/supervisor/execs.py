"""Pure parts of exec and tty support: request validation, the window size.

`check_process` validates the OCI process object of an `exec_create`;
`window_size` validates a resize request and `winsize` packs it for
TIOCSWINSZ; `bundle_config` reads a bundle's config.json.
"""

from __future__ import annotations

import os
import struct

from agent.runtime import fastjson

MAX_DIMENSION = 65535  # struct winsize holds unsigned shorts


class InvalidRequest(ValueError):
    """A field of a request that cannot be used; the message is one line."""


def check_process(process: object, tty: bool) -> dict[str, object]:
    """A copy of the exec's OCI process object, checked; `terminal` follows `tty`."""
    if not isinstance(process, dict):
        raise InvalidRequest("process: an object is required")
    args = process.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise InvalidRequest("process.args: a non-empty list of strings is required")
    if not args[0]:
        raise InvalidRequest("process.args: the command is empty")
    env = process.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise InvalidRequest("process.env: a list of strings is required")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidRequest("process.cwd: an absolute path is required")
    user = process.get("user", {})
    if not isinstance(user, dict):
        raise InvalidRequest("process.user: an object is required")
    for key in ("uid", "gid"):
        value = user.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"process.user.{key}: a non-negative integer is required")
    out = dict(process)
    out["terminal"] = bool(tty)
    out.setdefault("cwd", "/")
    return out


def window_size(req: dict[str, object]) -> tuple[int, int]:
    """(height, width) of a resize request."""
    out = []
    for key in ("height", "width"):
        value = req.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_DIMENSION:
            raise InvalidRequest(f"{key}: an integer from 0 to {MAX_DIMENSION} is required")
        out.append(value)
    return out[0], out[1]


def winsize(height: int, width: int) -> bytes:
    """struct winsize {ws_row, ws_col, ws_xpixel, ws_ypixel} for TIOCSWINSZ."""
    return struct.pack("HHHH", height, width, 0, 0)


def bundle_config(bundle: str) -> dict[str, object]:
    """The bundle's config.json ({} when it cannot be read: the runtime then says
    what is wrong with it)."""
    try:
        with open(os.path.join(bundle, "config.json"), encoding="utf-8") as f:
            config = fastjson.loads(f.read())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def bundle_terminal(config: dict[str, object]) -> bool:
    """A bundle config's process.terminal."""
    process = config.get("process")
    return isinstance(process, dict) and process.get("terminal") is True

"""python -m agent.supervisor --root DIR --socket PATH --runtime-root DIR

Runs the node supervisor in the foreground (the daemon starts it detached).
"""

from __future__ import annotations

import fcntl
import os
import sys

USAGE = "usage: python -m agent.supervisor --root DIR --socket PATH [--runtime-root DIR]"


def parse_args(argv: list[str]) -> dict[str, str]:
    """--name value or --name=value for root, socket, runtime-root; ValueError otherwise."""
    known = {"--root", "--socket", "--runtime-root"}
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name not in known:
            raise ValueError(f"unknown argument {arg!r}")
        if not eq:
            i += 1
            if i >= len(argv):
                raise ValueError(f"{name} needs a value")
            value = argv[i]
        out[name[2:]] = value
        i += 1
    for needed in ("root", "socket"):
        if needed not in out:
            raise ValueError(f"--{needed} is required")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"supervisor: {e}\n{USAGE}", file=sys.stderr)
        return 2
    from agent.runtime.runtime import DEFAULT_ROOT

    root = os.path.abspath(args["root"])
    os.makedirs(root, mode=0o700, exist_ok=True)
    lock_fd = os.open(os.path.join(root, "supervisor.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = _read_pid(os.path.join(root, "supervisor.pid"))
        who = f" (pid {other})" if other else ""
        print(f"supervisor: another supervisor{who} already runs with root {root}", file=sys.stderr)
        return 1
    pid_path = os.path.join(root, "supervisor.pid")
    tmp = pid_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, pid_path)

    from agent.supervisor.server import Supervisor

    sup = Supervisor(root, os.path.abspath(args["socket"]), args.get("runtime-root", DEFAULT_ROOT))
    sup.setup()
    print(f"supervisor: pid {os.getpid()} serving {sup.socket_path}", file=sys.stderr, flush=True)
    try:
        sup.serve()
    finally:
        sup.close()
    return 0


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())

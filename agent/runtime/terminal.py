"""Foreground plumbing for `run` and `exec`: signal forwarding and a pty proxy."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal without its enum import
import os

TYPE_CHECKING = False  # typing costs ~10 ms of start-up; mypy still sees the block

if TYPE_CHECKING:
    from typing import Any

# The signals a foreground runtime passes on to the container, as runc does.
FORWARDED = (1, 2, 3, 10, 12, 14, 15, 28)  # HUP INT QUIT USR1 USR2 ALRM TERM WINCH


class SignalForwarder:
    """While alive, signals sent to us go to the container's process instead."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._old: dict[int, object] = {}
        for sig in FORWARDED:
            self._old[sig] = _signal.signal(sig, self._forward)

    def _forward(self, signum: int, _frame: object) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def restore(self) -> None:
        for sig, handler in self._old.items():
            _signal.signal(sig, handler)


class ConsolePair:
    """A socket pair standing in for runc's --console-socket: the container's init
    sends the pty master through `child_fd`; we receive it and proxy our stdio."""

    def __init__(self) -> None:
        import socket

        self._socket = socket
        self.parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = child.detach()

    def proxy(self) -> Proxy:
        os.close(self.child_fd)
        self.child_fd = -1
        _, fds, _, _ = self._socket.recv_fds(self.parent, 4096, 1)
        if not fds:
            raise OSError("the container sent no terminal")
        return Proxy(fds[0])

    def close(self) -> None:
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1
        self.parent.close()


class Proxy:
    """Copies our stdin to the pty master and the master to our stdout."""

    def __init__(self, master: int) -> None:
        self.master = master
        self._restore: list[Any] | None = None
        if os.isatty(0):
            import termios
            import tty

            self._restore = termios.tcgetattr(0)
            tty.setraw(0)
        import threading

        self._out = threading.Thread(target=self._copy_out, daemon=True)
        self._in = threading.Thread(target=self._copy_in, daemon=True)
        self._out.start()
        self._in.start()

    def _copy_out(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the last holder of the slave side exited
                return
            if not data:
                return
            os.write(1, data)

    def _copy_in(self) -> None:
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                return
            if not data:
                return
            try:
                os.write(self.master, data)
            except OSError:
                return

    def finish(self) -> None:
        self._out.join(timeout=2)
        if self._restore is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._restore)
        os.close(self.master)

"""Docker's multiplexed attach stream: 8-byte header, then the payload.

Header: stream (1 stdout, 2 stderr), three zero bytes, payload length as a
4-byte big-endian integer.
"""

from __future__ import annotations

STDIN = 0
STDOUT = 1
STDERR = 2
HEADER_SIZE = 8


def encode_frame(stream: int, data: bytes) -> bytes:
    return bytes((stream, 0, 0, 0)) + len(data).to_bytes(4, "big") + data


class FrameDecoder:
    """Feed it bytes as they come; it returns the complete (stream, payload) frames."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buffer += data
        out: list[tuple[int, bytes]] = []
        while len(self.buffer) >= HEADER_SIZE:
            size = int.from_bytes(self.buffer[4:8], "big")
            end = HEADER_SIZE + size
            if len(self.buffer) < end:
                break
            out.append((self.buffer[0], self.buffer[HEADER_SIZE:end]))
            self.buffer = self.buffer[end:]
        return out

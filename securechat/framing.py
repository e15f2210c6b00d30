"""Length-prefixed wire framing: each frame is a 4-byte big-endian length, then that many bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from securechat.errors import InvalidFrame

LENGTH_PREFIX = struct.Struct(">I")
DEFAULT_MAX_FRAME_BYTES = 1 << 20


def encode_frame(payload: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    if not 0 < len(payload) <= max_frame_bytes:
        raise InvalidFrame("frame size out of range")
    return LENGTH_PREFIX.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole frames; ``close`` checks nothing is left."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= LENGTH_PREFIX.size:
            (length,) = LENGTH_PREFIX.unpack_from(self._buffer)
            if not 0 < length <= self._max_frame_bytes:
                raise InvalidFrame("frame size out of range")
            end = LENGTH_PREFIX.size + length
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[LENGTH_PREFIX.size : end]))
            del self._buffer[:end]
        return frames

    def close(self) -> None:
        """The stream ended: any buffered bytes are a short frame or trailing garbage."""
        if self._buffer:
            raise InvalidFrame("stream ended inside a frame")

    def iter_frames(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield from self.feed(chunk)
        self.close()


def decode_frames(data: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> list[bytes]:
    """Split a whole buffer into frames, refusing short, oversize and trailing-garbage input."""
    decoder = FrameDecoder(max_frame_bytes)
    frames = decoder.feed(data)
    decoder.close()
    return frames

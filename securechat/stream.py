"""The encrypted response stream (envelope protocol v4): fixed-size AES-256-GCM frames, bound to request and position.

Frame layout (the payload inside a length-prefixed wire frame)::

    start  0x03 | salt (32 bytes): the worker's fresh random salt for this run; always the first frame of an
           answer. Every run of an envelope (a retry, or a host replaying it) gets a new salt, hence a new key:
           a replay can never reuse a key and nonce pair, so it reveals nothing about an earlier answer.
    data   0x01 | seq:u32 BE | AES-256-GCM(response_key, nonce=seq as 12 bytes BE, aad) -> ct || tag
    final  0x04 | seq:u32 BE | input_tokens:u32 BE | output_tokens:u32 BE | AES-256-GCM(...) -> ct || tag
           aad = "securechat/v2/frame" | request_id | every byte before the ciphertext. The final frame's token
           counts are readable by the host (for limits and billing) and authenticated like everything else;
           they are rounded up to a multiple of the worker's bucket (``usage_bucket_tokens``, 64 by default),
           so the host learns an answer's length only to that grain. The exact counts are in the sealed trailer.
    error  0x02 | JSON {"code": ErrorCode, "request_id": str}: unauthenticated, for failures where no response
           key is held (e.g. the worker replica died). It can only end a stream, never complete it.

Every sealed plaintext is exactly ``frame_bytes`` long, so every data frame of an answer has one size and the
final frame another (8 bytes more)::

    plaintext = kind:u8 | length:u16 BE | body (length bytes) | zero padding up to frame_bytes

``kind`` TEXT carries UTF-8 answer text (split only at character boundaries; text beyond one frame continues in
the next); ``kind`` EVENTS carries an extended answer's deltas (``securechat.deltas``: several choices, log
probabilities, tool calls), newline-delimited JSON split anywhere across frames; ``kind`` TRAILER carries the
JSON trailer {"metrics": {...}, "error": code | null, "usage": {"input_tokens", "output_tokens"}, ...}:
numbers for the client (the exact token counts among them), an optional error code, and what a mode adds (a
RAG answer's "citations", a search's "result", a refused request's "detail"); it ends in the final frame and
may begin in data frames before it.
Padding is inside the AEAD, so it is authenticated; readers refuse non-zero padding and frames of another size.

response_key = HKDF-SHA256(DEK, salt=run salt, info="securechat/v2/response" | request_id). Counter nonces
are safe because the key is unique per run. The start frame itself is not authenticated, but a wrong salt only
yields a key under which no data frame verifies. A reader that reaches the end without an authenticated final
frame has a truncated stream.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securechat.deltas import Delta, encode_deltas
from securechat.errors import ErrorCode, InvalidCiphertext

DATA_FRAME: Final = 0x01
ERROR_FRAME: Final = 0x02
START_FRAME: Final = 0x03
FINAL_FRAME: Final = 0x04
SALT_BYTES: Final = 32
TAG_BYTES: Final = 16

KIND_TEXT: Final = 0x01
KIND_TRAILER: Final = 0x02
KIND_EVENTS: Final = 0x03
_RECORD_HEADER = struct.Struct(">BH")  # kind, body length
_DATA_PREFIX = struct.Struct(">BI")  # type, seq
_FINAL_PREFIX = struct.Struct(">BIII")  # type, seq, input_tokens, output_tokens
_MAX_SEQ = 2**32 - 1
_MAX_COUNT = 2**32 - 1

#: Bounds on the sealed plaintext size. The lower bound keeps the largest metrics trailer a worker writes inside
#: one frame (tests/test_stream.py checks it), so an answer always ends with exactly one trailer frame.
MIN_FRAME_BYTES: Final = 512
MAX_FRAME_BYTES: Final = _RECORD_HEADER.size + 0xFFFF
#: Holds what a GPU stream makes in one flush interval (~1,400 tok/s x 250 ms x ~4 bytes): one frame per tick.
DEFAULT_FRAME_BYTES: Final = 2048
#: The grain of the token counts the host sees (the final frame's clear counts, worker metrics and logs).
DEFAULT_USAGE_BUCKET_TOKENS: Final = 64


def wire_frame_sizes(frame_bytes: int) -> tuple[int, int]:
    """(data, final) frame payload sizes on the wire for a given ``frame_bytes``: all the host sees of them."""
    return _DATA_PREFIX.size + frame_bytes + TAG_BYTES, _FINAL_PREFIX.size + frame_bytes + TAG_BYTES


def derive_response_key(dek: bytes, request_id: str, salt: bytes) -> bytes:
    if len(salt) != SALT_BYTES:
        raise InvalidCiphertext()
    info = b"securechat/v2/response\x00" + request_id.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(dek)


def _nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")


def _aad(request_id: str, prefix: bytes) -> bytes:
    return b"securechat/v2/frame\x00" + request_id.encode() + b"\x00" + prefix


def make_error_frame(code: ErrorCode, request_id: str) -> bytes:
    """An unauthenticated, content-free error frame for failures outside the worker's key."""
    return bytes([ERROR_FRAME]) + json.dumps({"code": code.value, "request_id": request_id}).encode()


def split_utf8(data: bytes, capacity: int) -> list[bytes]:
    """``data`` (valid UTF-8) in pieces of at most ``capacity`` bytes, never cutting a character."""
    pieces: list[bytes] = []
    start = 0
    while len(data) - start > capacity:
        end = start + capacity
        while data[end] & 0xC0 == 0x80:  # a continuation byte: the character began before ``end``
            end -= 1
        pieces.append(data[start:end])
        start = end
    pieces.append(data[start:])
    return pieces


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one answer: exact in the sealed trailer, rounded up to buckets in the clear."""

    input_tokens: int = 0
    output_tokens: int = 0

    def rounded_up(self, bucket_tokens: int) -> Usage:
        """The counts the host may see: each rounded up to a multiple of ``bucket_tokens`` (0 stays 0)."""
        return Usage(round_up(self.input_tokens, bucket_tokens), round_up(self.output_tokens, bucket_tokens))

    def to_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


def round_up(count: int, bucket: int) -> int:
    return -(-count // bucket) * bucket


class ResponseSealer:
    """Worker side: a start frame (``start_frame``), then text in order, then exactly one trailer (``seal_final``).

    Every sealed frame's plaintext is padded to ``frame_bytes``.
    """

    def __init__(
        self,
        dek: bytes,
        request_id: str,
        frame_bytes: int = DEFAULT_FRAME_BYTES,
        usage_bucket_tokens: int = DEFAULT_USAGE_BUCKET_TOKENS,
        *,
        _salt: bytes | None = None,
    ) -> None:
        """``_salt`` exists for known-answer tests; a worker always draws a fresh one."""
        if not MIN_FRAME_BYTES <= frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"frame_bytes must be in [{MIN_FRAME_BYTES}, {MAX_FRAME_BYTES}]")
        if usage_bucket_tokens < 1:
            raise ValueError("usage_bucket_tokens must be positive")
        self._usage_bucket_tokens = usage_bucket_tokens
        self._salt = _salt if _salt is not None else os.urandom(SALT_BYTES)
        self._aead = AESGCM(derive_response_key(dek, request_id, self._salt))
        self._request_id = request_id
        self._frame_bytes = frame_bytes
        self._capacity = frame_bytes - _RECORD_HEADER.size
        self._seq = 0
        self._finished = False

    @property
    def start_frame(self) -> bytes:
        return bytes([START_FRAME]) + self._salt

    def seal_text(self, text: str) -> list[bytes]:
        """One frame per ``frame_bytes`` of text (at least one: empty text gives one all-padding frame)."""
        return [self._seal(KIND_TEXT, piece, None) for piece in split_utf8(text.encode(), self._capacity)]

    def seal_deltas(self, deltas: list[Delta]) -> list[bytes]:
        """An extended answer's deltas, one frame per ``frame_bytes`` of their JSON lines (at least one)."""
        raw = encode_deltas(deltas)
        pieces = [raw[i : i + self._capacity] for i in range(0, len(raw), self._capacity)] or [b""]
        return [self._seal(KIND_EVENTS, piece, None) for piece in pieces]

    def seal_final(
        self,
        metrics: dict[str, Any],
        error: ErrorCode | None = None,
        usage: Usage | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[bytes]:
        """The trailer: data frames while it does not fit, then the final frame. ``usage`` goes into the sealed
        trailer exactly and into the final frame's clear counts rounded up to the bucket."""
        usage = usage or Usage()
        trailer = {
            **(extra or {}),
            "metrics": metrics,
            "error": error.value if error else None,
            "usage": usage.to_dict(),
        }
        body = json.dumps(trailer, ensure_ascii=False, separators=(",", ":"))
        raw = body.encode()
        pieces = [raw[i : i + self._capacity] for i in range(0, len(raw), self._capacity)]
        frames = [self._seal(KIND_TRAILER, piece, None) for piece in pieces[:-1]]
        frames.append(self._seal(KIND_TRAILER, pieces[-1], usage.rounded_up(self._usage_bucket_tokens)))
        return frames

    def _seal(self, kind: int, body: bytes, usage: Usage | None) -> bytes:
        if self._finished or self._seq > _MAX_SEQ:
            raise RuntimeError("stream already finished")
        if usage is None:
            prefix = _DATA_PREFIX.pack(DATA_FRAME, self._seq)
        else:
            counts = (min(usage.input_tokens, _MAX_COUNT), min(usage.output_tokens, _MAX_COUNT))
            prefix = _FINAL_PREFIX.pack(FINAL_FRAME, self._seq, *counts)
        plaintext = _RECORD_HEADER.pack(kind, len(body)) + body
        plaintext += bytes(self._frame_bytes - len(plaintext))
        ciphertext = self._aead.encrypt(_nonce(self._seq), plaintext, _aad(self._request_id, prefix))
        self._seq += 1
        self._finished = usage is not None
        return prefix + ciphertext


def read_usage(frame: bytes) -> Usage | None:
    """The clear, bucketed token counts of a final frame (unauthenticated here: the host's own accounting, for
    limits and billing); else None."""
    if frame[:1] != bytes([FINAL_FRAME]) or len(frame) < _FINAL_PREFIX.size:
        return None
    _, _, input_tokens, output_tokens = _FINAL_PREFIX.unpack_from(frame)
    return Usage(input_tokens, output_tokens)


@dataclass(frozen=True, slots=True)
class StartEvent:
    """The worker's start frame: the stream's key is now known. Carries nothing for the reader."""


@dataclass(frozen=True, slots=True)
class TextEvent:
    text: str  # may be empty: a frame of padding only (a constant-rate stream with nothing new)


@dataclass(frozen=True, slots=True)
class DeltasEvent:
    """The deltas an EVENTS frame completed (none when it holds only the start of a line, or padding)."""

    deltas: tuple[Delta, ...] = ()


@dataclass(frozen=True, slots=True)
class TrailerPartEvent:
    """A data frame holding the start of a long trailer; the final frame completes it. Nothing for the reader."""


@dataclass(frozen=True, slots=True)
class FinalEvent:
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    usage: Usage = field(default_factory=Usage)  # exact, from the sealed trailer
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # a mode's additions (citations, result)
    billed: Usage = field(default_factory=Usage)  # the clear counts the host saw: rounded up to buckets


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An unauthenticated error frame: the stream failed on the host side."""

    code: str
    request_id: str | None = None


ResponseEvent = StartEvent | TextEvent | DeltasEvent | TrailerPartEvent | FinalEvent | ErrorEvent


class ResponseOpener:
    """Client side: checks order, position, request binding, size, padding and completeness of every frame."""

    def __init__(self, dek: bytes, request_id: str) -> None:
        self._dek = dek
        self._aead: AESGCM | None = None  # keyed by the start frame
        self._request_id = request_id
        self._next_seq = 0
        self._frame_bytes: int | None = None  # fixed by the first sealed frame; every later one must match
        self._trailer = bytearray()
        self._events = bytearray()  # an EVENTS line not yet complete
        self._finished = False

    @classmethod
    def for_request(cls, dek: bytes, request_id: str) -> ResponseOpener:
        return cls(dek, request_id)

    @property
    def finished(self) -> bool:
        return self._finished

    def open(self, frame: bytes) -> ResponseEvent:
        if self._finished or not frame:
            raise InvalidCiphertext()
        kind = frame[0]
        if kind == ERROR_FRAME:
            self._finished = True
            return _parse_error_frame(frame)
        if kind == START_FRAME and self._aead is None:
            self._aead = AESGCM(derive_response_key(self._dek, self._request_id, frame[1:]))
            return StartEvent()
        if kind not in (DATA_FRAME, FINAL_FRAME) or self._aead is None:
            raise InvalidCiphertext()
        final = kind == FINAL_FRAME
        prefix_size = _FINAL_PREFIX.size if final else _DATA_PREFIX.size
        frame_bytes = len(frame) - prefix_size - TAG_BYTES
        if frame_bytes < MIN_FRAME_BYTES or frame_bytes != (self._frame_bytes or frame_bytes):
            raise InvalidCiphertext()
        self._frame_bytes = frame_bytes
        (seq,) = struct.unpack_from(">I", frame, 1)
        if seq != self._next_seq:
            raise InvalidCiphertext()
        prefix = frame[:prefix_size]
        try:
            plaintext = self._aead.decrypt(_nonce(seq), frame[prefix_size:], _aad(self._request_id, prefix))
        except InvalidTag:
            raise InvalidCiphertext() from None
        self._next_seq += 1
        record_kind, body = _parse_record(plaintext)
        if record_kind == KIND_TEXT and not final and not self._trailer:
            try:
                return TextEvent(body.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidCiphertext() from None
        if record_kind == KIND_EVENTS and not final and not self._trailer:
            return self._deltas(body)
        if record_kind != KIND_TRAILER or self._events:  # a trailer never starts inside an EVENTS line
            raise InvalidCiphertext()
        self._trailer += body
        if not final:
            return TrailerPartEvent()
        self._finished = True
        billed = read_usage(frame)
        assert billed is not None
        try:
            trailer = json.loads(self._trailer)
            extra = {k: v for k, v in trailer.items() if k not in ("metrics", "error", "usage")}
            metrics = dict(trailer.get("metrics") or {})
            usage = Usage(_count(trailer["usage"]["input_tokens"]), _count(trailer["usage"]["output_tokens"]))
        except (ValueError, TypeError, AttributeError, KeyError):
            raise InvalidCiphertext() from None
        return FinalEvent(metrics=metrics, error=trailer.get("error"), usage=usage, extra=extra, billed=billed)

    def _deltas(self, body: bytes) -> DeltasEvent:
        self._events += body
        *lines, rest = bytes(self._events).split(b"\n")
        self._events = bytearray(rest)
        try:
            return DeltasEvent(tuple(Delta.from_json(json.loads(line)) for line in lines))
        except (ValueError, TypeError):
            raise InvalidCiphertext() from None

    def finish(self) -> None:
        """Call at end of input: a stream without its final frame was truncated."""
        if not self._finished:
            raise InvalidCiphertext()


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_COUNT:
        raise ValueError("invalid token count")
    return value


def _parse_record(plaintext: bytes) -> tuple[int, bytes]:
    kind, length = _RECORD_HEADER.unpack_from(plaintext)
    end = _RECORD_HEADER.size + length
    if end > len(plaintext) or plaintext[end:].count(0) != len(plaintext) - end:
        raise InvalidCiphertext()  # a length past the frame, or padding that is not all zeros
    return kind, plaintext[_RECORD_HEADER.size : end]


def _parse_error_frame(frame: bytes) -> ErrorEvent:
    try:
        body = json.loads(frame[1:])
        code = str(body["code"])
        request_id = body.get("request_id")
    except (ValueError, KeyError, TypeError):
        return ErrorEvent(code=ErrorCode.INTERNAL.value)
    # Unauthenticated: keep only a known code, never echo arbitrary text.
    known = {item.value for item in ErrorCode}
    return ErrorEvent(
        code=code if code in known else ErrorCode.INTERNAL.value,
        request_id=request_id if isinstance(request_id, str) else None,
    )

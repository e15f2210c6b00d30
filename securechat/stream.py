"""The encrypted response stream: one AES-256-GCM frame per token chunk, bound to request and position.

Frame layout (the payload inside a length-prefixed wire frame)::

    start  0x03 | salt (32 bytes): the worker's fresh random salt for this run; always the first frame of an
           answer. Every run of an envelope (a retry, or a host replaying it) gets a new salt, hence a new key:
           a replay can never reuse a key and nonce pair, so it reveals nothing about an earlier answer.
    data   0x01 | flags:u8 | seq:u32 BE | AES-256-GCM(response_key, nonce=seq as 12 bytes BE, aad) -> ct || tag
           aad = "securechat/v1/frame" | request_id | the 6 bytes before the ciphertext
           flags bit 0 = final. A chunk's plaintext is UTF-8 text; the final frame's is JSON
           {"metrics": {...}, "error": code | null}: content-free numbers and an optional error code.
    error  0x02 | JSON {"code": ErrorCode, "request_id": str}: unauthenticated, for failures where no response
           key is held (e.g. the worker replica died). It can only end a stream, never complete it.

response_key = HKDF-SHA256(DEK, salt=run salt, info="securechat/v1/response" | request_id). Counter nonces
are safe because the key is unique per run. The start frame itself is not authenticated, but a wrong salt only
yields a key under which no data frame verifies. A reader that reaches the end without an authenticated final
frame has a truncated stream.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securechat.errors import ErrorCode, InvalidCiphertext

DATA_FRAME = 0x01
ERROR_FRAME = 0x02
START_FRAME = 0x03
SALT_BYTES = 32
FLAG_FINAL = 0x01
_DATA_PREFIX = struct.Struct(">BBI")  # type, flags, seq
_MAX_SEQ = 2**32 - 1


def derive_response_key(dek: bytes, request_id: str, salt: bytes) -> bytes:
    if len(salt) != SALT_BYTES:
        raise InvalidCiphertext()
    info = b"securechat/v1/response\x00" + request_id.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(dek)


def _nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")


def _aad(request_id: str, prefix: bytes) -> bytes:
    return b"securechat/v1/frame\x00" + request_id.encode() + b"\x00" + prefix


def make_error_frame(code: ErrorCode, request_id: str) -> bytes:
    """An unauthenticated, content-free error frame for failures outside the worker's key."""
    return bytes([ERROR_FRAME]) + json.dumps({"code": code.value, "request_id": request_id}).encode()


class ResponseSealer:
    """Worker side: a start frame (``start_frame``), then chunks in order, then exactly one final frame."""

    def __init__(self, dek: bytes, request_id: str, *, _salt: bytes | None = None) -> None:
        """``_salt`` exists for known-answer tests; a worker always draws a fresh one."""
        self._salt = _salt if _salt is not None else os.urandom(SALT_BYTES)
        self._aead = AESGCM(derive_response_key(dek, request_id, self._salt))
        self._request_id = request_id
        self._seq = 0
        self._finished = False

    @property
    def start_frame(self) -> bytes:
        return bytes([START_FRAME]) + self._salt

    def _seal(self, plaintext: bytes, final: bool) -> bytes:
        if self._finished or self._seq > _MAX_SEQ:
            raise RuntimeError("stream already finished")
        prefix = _DATA_PREFIX.pack(DATA_FRAME, FLAG_FINAL if final else 0, self._seq)
        ciphertext = self._aead.encrypt(_nonce(self._seq), plaintext, _aad(self._request_id, prefix))
        self._seq += 1
        self._finished = final
        return prefix + ciphertext

    def seal_chunk(self, text: str) -> bytes:
        return self._seal(text.encode(), final=False)

    def seal_final(self, metrics: dict[str, Any], error: ErrorCode | None = None) -> bytes:
        body = {"metrics": metrics, "error": error.value if error else None}
        return self._seal(json.dumps(body, separators=(",", ":")).encode(), final=True)


@dataclass(frozen=True, slots=True)
class StartEvent:
    """The worker's start frame: the stream's key is now known. Carries nothing for the reader."""


@dataclass(frozen=True, slots=True)
class TextEvent:
    text: str


@dataclass(frozen=True, slots=True)
class FinalEvent:
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An unauthenticated error frame: the stream failed on the host side."""

    code: str
    request_id: str | None = None


ResponseEvent = StartEvent | TextEvent | FinalEvent | ErrorEvent


class ResponseOpener:
    """Client side: checks order, position, request binding and completeness of every frame."""

    def __init__(self, dek: bytes, request_id: str) -> None:
        self._dek = dek
        self._aead: AESGCM | None = None  # keyed by the start frame
        self._request_id = request_id
        self._next_seq = 0
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
        if frame[0] == ERROR_FRAME:
            self._finished = True
            return _parse_error_frame(frame)
        if frame[0] == START_FRAME and self._aead is None:
            self._aead = AESGCM(derive_response_key(self._dek, self._request_id, frame[1:]))
            return StartEvent()
        if frame[0] != DATA_FRAME or self._aead is None or len(frame) < _DATA_PREFIX.size + 16:
            raise InvalidCiphertext()
        _, flags, seq = _DATA_PREFIX.unpack_from(frame)
        if seq != self._next_seq or flags & ~FLAG_FINAL:
            raise InvalidCiphertext()
        prefix = frame[: _DATA_PREFIX.size]
        try:
            plaintext = self._aead.decrypt(_nonce(seq), frame[_DATA_PREFIX.size :], _aad(self._request_id, prefix))
        except InvalidTag:
            raise InvalidCiphertext() from None
        self._next_seq += 1
        if not flags & FLAG_FINAL:
            return TextEvent(plaintext.decode("utf-8", errors="replace"))
        self._finished = True
        body = json.loads(plaintext)
        return FinalEvent(metrics=dict(body.get("metrics") or {}), error=body.get("error"))

    def finish(self) -> None:
        """Call at end of input: a stream without its final frame was truncated."""
        if not self._finished:
            raise InvalidCiphertext()


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

"""C2SP signed notes (https://c2sp.org/signed-note): text, a blank line, then ``— <name> <base64>`` lines.

Parsing is strict and total: UTF-8 only, no control characters but newline, a non-empty signature block, key
names without spaces or ``+``, canonical base64. What the signatures mean (which key, which algorithm) is
``note_keys``' business; here a signature is a key name, a 4-byte key id and opaque bytes.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

MAX_NOTE_BYTES: Final = 64 * 1024
MAX_SIGNATURES: Final = 100  # the spec asks verifiers to accept at least 16
KEY_ID_BYTES: Final = 4

_SIGNATURE_PREFIX: Final = "\u2014 "  # em dash, space


class InvalidNote(ValueError):
    """A note, key or signature is malformed, or a signature by a known key does not verify; no detail."""

    def __init__(self) -> None:
        super().__init__("invalid signed note")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_id: int  # uint32, big-endian on the wire
    signature: bytes  # what follows the key id: algorithm-specific

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name) or not 0 <= self.key_id < 2**32 or not self.signature:
            raise InvalidNote()

    def to_line(self) -> str:
        encoded = base64.b64encode(struct.pack(">I", self.key_id) + self.signature).decode()
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True, slots=True)
class Note:
    text: str  # ends with a newline; signed exactly as is
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        return format_note(self.text, self.signatures)


def is_valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(char.isspace() for char in name) and _no_controls(name)


def format_note(text: str, signatures: Iterable[NoteSignature]) -> str:
    lines = [signature.to_line() for signature in signatures]
    if not lines or not text.endswith("\n") or not _no_controls(text.replace("\n", "")):
        raise InvalidNote()
    return text + "\n" + "".join(lines)


def parse_note(data: str | bytes) -> Note:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_NOTE_BYTES:
        raise InvalidNote()
    try:
        message = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidNote() from None
    if not message.endswith("\n") or not _no_controls(message.replace("\n", "")):
        raise InvalidNote()
    split = message.rfind("\n\n")  # the text may hold blank lines; the last one starts the signatures
    if split < 0:
        raise InvalidNote()
    text, block = message[: split + 1], message[split + 2 :]
    lines = block.split("\n")[:-1]  # block ends with a newline, so the last piece is empty
    if not 0 < len(lines) <= MAX_SIGNATURES:
        raise InvalidNote()
    return Note(text, tuple(parse_signature_line(line) for line in lines))


def parse_signature_line(line: str) -> NoteSignature:
    """One signature line, without its newline."""
    if not line.startswith(_SIGNATURE_PREFIX):
        raise InvalidNote()
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise InvalidNote()
    blob = strict_b64decode(encoded)
    if len(blob) <= KEY_ID_BYTES:
        raise InvalidNote()
    (key_id,) = struct.unpack(">I", blob[:KEY_ID_BYTES])
    return NoteSignature(name, key_id, blob[KEY_ID_BYTES:])


def parse_signature_lines(text: str) -> tuple[NoteSignature, ...]:
    """A block of signature lines, as a witness returns them; each ends with a newline."""
    if not text.endswith("\n") or len(text.encode()) > MAX_NOTE_BYTES:
        raise InvalidNote()
    lines = text.split("\n")[:-1]
    if not 0 < len(lines) <= MAX_SIGNATURES:
        raise InvalidNote()
    return tuple(parse_signature_line(line) for line in lines)


def strict_b64decode(value: str) -> bytes:
    """Standard base64 with padding, in its one canonical spelling (so a signature line re-encodes exactly)."""
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidNote() from None
    if base64.b64encode(decoded).decode() != value:
        raise InvalidNote()
    return decoded


def _no_controls(text: str) -> bool:
    return not any(ord(char) < 0x20 for char in text)  # the spec bans controls below U+0020 only

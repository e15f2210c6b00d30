"""The checkpoint body (https://c2sp.org/tlog-checkpoint): origin, tree size, base64 root hash, extensions.

A checkpoint is the text of a signed note; this module only reads and writes that text. Parsing is strict, so
one tree head has one spelling: no leading zeros in the size, canonical base64, no empty extension lines.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Final

from securechat.transparency.merkle import HASH_BYTES
from securechat.transparency.note import InvalidNote, strict_b64decode

MAX_TREE_SIZE: Final = 2**63 - 1
_SIZE: Final = re.compile(r"^(0|[1-9][0-9]{0,18})$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str  # the log's identity; also the name of the log's signing key
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or not 0 <= self.size <= MAX_TREE_SIZE:
            raise InvalidNote()
        if len(self.root_hash) != HASH_BYTES or any(not line or "\n" in line for line in self.extensions):
            raise InvalidNote()

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise InvalidNote()
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not _SIZE.match(lines[1]):
            raise InvalidNote()
        return cls(lines[0], int(lines[1]), strict_b64decode(lines[2]), tuple(lines[3:]))

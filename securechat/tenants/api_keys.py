"""API key format and verification digests: pure functions, no storage.

A key reads ``sc_<key_id>_<secret>``: ``key_id`` is 16 hex digits (8 random bytes) that the store looks up by
primary key, so authentication never scans; ``secret`` is 64 hex digits (32 random bytes from ``secrets``).
Hex rather than base64url so that a double click selects the whole key and ``_`` stays a clean separator.

Why HMAC-SHA256 under a server secret and not scrypt/argon2: slow hashes protect low-entropy passwords from
offline guessing. A 256-bit random secret cannot be guessed at any hash speed, so a slow hash would only add
~50 ms of CPU to every request (and a cheap way to exhaust the gateway). Keying the HMAC with a server secret that
lives outside the database means a stolen database alone does not even let an attacker test candidate keys.
The key id is bound into the MAC, so swapping digests between rows does not move a key to another tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

KEY_PREFIX: Final = "sc"
KEY_ID_BYTES: Final = 8
SECRET_BYTES: Final = 32
DIGEST_BYTES: Final = 32

_KEY = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{2 * KEY_ID_BYTES}}})_([0-9a-f]{{{2 * SECRET_BYTES}}})")
_KEY_ID = re.compile(rf"[0-9a-f]{{{2 * KEY_ID_BYTES}}}")
_DOMAIN: Final = b"securechat-api-key-v1"
MAX_KEY_CHARS: Final = len(KEY_PREFIX) + 2 + 2 * KEY_ID_BYTES + 2 * SECRET_BYTES


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A presented key split into its lookup id and its secret part. ``repr`` never shows the secret."""

    key_id: str
    secret: bytes

    def __repr__(self) -> str:
        return f"ParsedKey(key_id={self.key_id!r}, secret=<redacted>)"


def new_key() -> tuple[str, ParsedKey]:
    """A fresh key: the string to hand out once, and its parts."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = secrets.token_bytes(SECRET_BYTES)
    return f"{KEY_PREFIX}_{key_id}_{secret.hex()}", ParsedKey(key_id, secret)


def parse_key(presented: str) -> ParsedKey | None:
    """The key's parts, or None when it is not in the ``sc_<key_id>_<secret>`` format."""
    if len(presented) != MAX_KEY_CHARS:  # cheap bound before the regex
        return None
    match = _KEY.fullmatch(presented)
    if match is None:
        return None
    return ParsedKey(match.group(1), bytes.fromhex(match.group(2)))


def is_key_id(value: str) -> bool:
    return _KEY_ID.fullmatch(value) is not None


def key_digest(server_secret: bytes, key_id: str, secret: bytes) -> bytes:
    """HMAC-SHA256(server_secret, domain ‖ key_id ‖ secret): the only thing stored about a key."""
    message = b"\x00".join([_DOMAIN, key_id.encode("ascii"), secret])
    return hmac.new(server_secret, message, hashlib.sha256).digest()


def digests_match(expected: bytes, presented: bytes) -> bool:
    """Constant-time comparison, so response timing does not reveal how many digest bytes matched."""
    return hmac.compare_digest(expected, presented)

"""Canonical JSON and strict field readers shared by the signed attestation objects.

Signed objects are re-encoded from their parsed fields, never from the bytes that arrived: the verifier checks a
signature over ``canonical(parsed)``, so what it acts on is exactly what was signed. That needs an injective
encoding (sorted keys, no spaces, ASCII only, ints not floats) and parsers that refuse anything it cannot encode.
Every parse failure is a ``ValueError`` with a fixed message: attacker bytes never reach a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

_HEX = re.compile(r"^[0-9a-f]+$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def signed_bytes(domain: bytes, body: Mapping[str, Any]) -> bytes:
    """Domain tag + NUL + canonical JSON: a signature over one kind of object never verifies as another."""
    return domain + b"\x00" + canonical_json(body)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64decode(value: object, *, max_bytes: int) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * (max_bytes // 3 + 1):
        raise ValueError("invalid base64 field")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64 field") from None
    if b64encode(data) != value:  # one spelling per value, so re-encoding is exact
        raise ValueError("invalid base64 field")
    return data


def exact_keys(data: object, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping) or set(data) != keys:
        raise ValueError("unexpected or missing fields")
    return data


def read_int(value: object) -> int:
    # bool is an int subclass; 2**53 keeps values exact for JSON readers in other languages.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise ValueError("invalid integer field")
    return value


def read_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("invalid boolean field")
    return value


def read_hex(value: object, *, min_chars: int, max_chars: int) -> str:
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars or not _HEX.match(value):
        raise ValueError("invalid hex field")
    return value


def read_name(value: object) -> str:
    """Register names: short lowercase identifiers (they may appear in error messages and logs)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError("invalid name field")
    return value
